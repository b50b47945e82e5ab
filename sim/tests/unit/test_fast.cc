// The cheaper trial steps (otasim/fast.h): the in-process tree copy keeps
// what `cp -a` keeps, and ota-sim-svc behaves as `ota-sim svc`.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "otasim/fast.h"

namespace fs = std::filesystem;

namespace
{

const char kSvc[] = OTA_BINARY_DIR "/sim/ota-sim-svc";

struct Tmp {
    fs::path dir;
    Tmp()
    {
        char t[] = "/tmp/otasim-fast-XXXXXX";
        dir = mkdtemp(t);
    }
    ~Tmp()
    {
        fs::remove_all(dir);
    }
};

std::string read_all(const fs::path &p)
{
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write(const fs::path &p, const std::string &s, mode_t mode)
{
    std::ofstream(p, std::ios::binary) << s;
    ASSERT_EQ(chmod(p.c_str(), mode), 0);
}

int run(const std::string &cmd)
{
    int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

} // namespace

TEST(FastTest, CopyTreeKeepsContentModesLinksAndTimes)
{
    Tmp t;
    fs::path src = t.dir / "src", dst = t.dir / "dst";
    fs::create_directories(src / "bin" / "deep");
    write(src / "bin" / "app", std::string(200000, 'x') + "end", 0755);
    write(src / "bin" / "deep" / "ro", "read only", 0444);
    write(src / "empty", "", 0600);
    ASSERT_EQ(symlink("bin/app", (src / "link").c_str()), 0);
    ASSERT_EQ(chmod((src / "bin" / "deep").c_str(), 0750), 0);
    struct timespec ts[2] = {{1000, 0}, {123456, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, (src / "bin" / "app").c_str(), ts, 0), 0);

    struct ota_err e = {};
    ASSERT_EQ(otasim_copy_tree(src.c_str(), dst.c_str(), &e), 0) << e.reason;
    EXPECT_EQ(read_all(dst / "bin" / "app"), read_all(src / "bin" / "app"));
    EXPECT_EQ(read_all(dst / "bin" / "deep" / "ro"), "read only");
    EXPECT_EQ(fs::file_size(dst / "empty"), 0u);
    struct stat a, b;
    for (const char *p : {"bin/app", "bin/deep/ro", "empty", "bin/deep", "bin"}) {
        ASSERT_EQ(lstat((src / p).c_str(), &a), 0);
        ASSERT_EQ(lstat((dst / p).c_str(), &b), 0);
        EXPECT_EQ(a.st_mode, b.st_mode) << p;
        EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec) << p;
        EXPECT_NE(a.st_ino, b.st_ino) << p;
    }
    EXPECT_EQ(fs::read_symlink(dst / "link"), "bin/app");
    EXPECT_EQ(b.st_mode & 07777, 0755u); // "bin", checked last
}

TEST(FastTest, CopyTreeRefusesAnExistingTargetAndAMissingSource)
{
    Tmp t;
    fs::create_directories(t.dir / "src");
    fs::create_directories(t.dir / "dst");
    struct ota_err e = {};
    EXPECT_LT(otasim_copy_tree((t.dir / "src").c_str(), (t.dir / "dst").c_str(), &e), 0);
    EXPECT_NE(std::string(e.reason).find("dst"), std::string::npos) << e.reason;
    e = {};
    EXPECT_LT(otasim_copy_tree((t.dir / "nope").c_str(), (t.dir / "new").c_str(), &e), 0);
    EXPECT_NE(std::string(e.reason).find("nope"), std::string::npos) << e.reason;
    EXPECT_FALSE(fs::exists(t.dir / "new"));
}

TEST(FastTest, SvcProgramIsStaticAndSpeaksTheSvcCommands)
{
    ASSERT_TRUE(fs::exists(kSvc)) << kSvc;
    // no interpreter: nothing for ld.so to resolve at every health check
    EXPECT_NE(run(std::string("file ") + kSvc + " | grep -q 'statically linked'"), 1)
        << "ota-sim-svc is not static (fine where the toolchain cannot link statically)";
    Tmp t;
    fs::create_directories(t.dir / "run");
    // no app installed: is-active says inactive (3), start fails (1), bad use is 2
    EXPECT_EQ(run(std::string(kSvc) + " --dev " + t.dir.string() + " is-active"), 3);
    write(t.dir / "run" / "app.port", "1\n", 0644);
    EXPECT_EQ(run(std::string(kSvc) + " --dev " + t.dir.string() + " start 2>/dev/null"), 1);
    EXPECT_EQ(run(std::string(kSvc) + " --dev " + t.dir.string() + " frobnicate 2>/dev/null"), 2);
    EXPECT_EQ(run(std::string(kSvc) + " 2>/dev/null"), 2);
}
