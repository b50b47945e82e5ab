// Whole-file helpers shared by the simulator's unit tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

// The bytes of path ("" if it cannot be read).
inline std::string read_all(const std::filesystem::path &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// data as the whole of path (created or truncated; its directory too).
inline void write_all(const std::filesystem::path &path, const std::string &data)
{
    if (path.has_parent_path())
        std::filesystem::create_directories(path.parent_path());
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(data.data(), (std::streamsize)data.size());
}
