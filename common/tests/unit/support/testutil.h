// Small file and shell helpers shared by the unit tests.
#pragma once

#include <string>

// Whole file as bytes ("" if it cannot be read).
std::string read_file(const std::string &path);
// Replaces path's content with data.
void write_file(const std::string &path, const std::string &data);
// lstat() succeeds: the path exists (a dangling symlink counts).
bool file_exists(const std::string &path);
// Runs cmd with /bin/sh; its exit status, or -1 if it did not exit.
int sh(const std::string &cmd);
