// The cheaper trial steps (otasim/fast.h): the in-process tree copy keeps
// what `cp -a` keeps, and ota-sim-svc behaves as `ota-sim svc`.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ota/json.h"
#include "otasim/fast.h"
#include "otasim/proc.h"
#include "files.h"

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

TEST(FastTest, SvcRebootAsksForAReboot)
{
    Tmp t;
    EXPECT_EQ(run(std::string(kSvc) + " --dev " + t.dir.string() + " reboot"), 0);
    EXPECT_TRUE(fs::exists(t.dir / "run" / "reboot-requested"));
}

// ---- the agent zygote (otasim/fast.h) ----
// The test program is otasim-callseq (a C program that makes file-system
// calls), under the interposer: each request must run as its own process with
// its own environment, the interposer set up from that environment.

namespace
{

struct Zygote : ::testing::Test {
    Tmp t;
    struct otasim_tools tools = {};
    void SetUp() override
    {
        ota_strlcpy(tools.agent, OTASIM_CALLSEQ, sizeof(tools.agent));
        ota_strlcpy(tools.interpose, OTASIM_INTERPOSE_LIB, sizeof(tools.interpose));
        tools.target = OTASIM_TARGET_NATIVE;
    }
    void TearDown() override
    {
        otasim_zygote_stop();
    }
    // argv through the zygote, env exactly envs; the exit status, stdout in *out
    int spawn(std::vector<std::string> args, std::vector<std::string> envs, std::string *out,
              pid_t *ret_pid = nullptr)
    {
        std::vector<const char *> argv{OTASIM_CALLSEQ};
        std::vector<char *> env;
        for (auto &a : args)
            argv.push_back(a.c_str());
        argv.push_back(nullptr);
        for (auto &e : envs)
            env.push_back(const_cast<char *>(e.c_str()));
        env.push_back(nullptr);
        fs::path o = t.dir / "out";
        int fd = open(o.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), st = -1;
        pid_t pid = -1;
        int r = otasim_zygote_spawn(argv.data(), env.data(), -1, fd, -1, &pid);
        close(fd);
        if (r != 0)
            return 1000 + r;
        if (ret_pid)
            *ret_pid = pid;
        EXPECT_EQ(otasim_wait(pid, 20000, &st), 0);
        if (out)
            *out = read_all(o);
        return st;
    }
};

} // namespace

TEST_F(Zygote, EachRequestRunsWithItsOwnEnvironmentAndInterposer)
{
    struct ota_err e = {};
    ASSERT_EQ(otasim_zygote_start(&tools, &e), 1) << e.reason;
    std::string root = t.dir.string(), pre = std::string("LD_PRELOAD=") + OTASIM_INTERPOSE_LIB;
    fs::create_directories(t.dir / ".sim");
    for (int i = 1; i <= 2; i++) {
        std::string f = root + "/file" + std::to_string(i), out;
        std::string j = root + "/.sim/journal-" + std::to_string(i) + ".bin";
        int st = spawn({"open " + f + " wc", "write " + f + " hello", "fsync " + f, "close " + f,
                        "unlink " + root + "/missing"},
                       {pre, "OTASIM_ROOT=" + root, "OTASIM_JOURNAL=" + j}, &out);
        // one failed command: exit 1, its line on the stdout given
        EXPECT_EQ(st, 1) << out;
        EXPECT_NE(out.find("ERR"), std::string::npos) << out;
        EXPECT_EQ(read_all(f), "hello");
        // the interposer journaled this request's calls into this request's file
        ASSERT_TRUE(fs::exists(j)) << j;
        EXPECT_GT(fs::file_size(j), 0u);
    }
    EXPECT_EQ(fs::file_size(t.dir / ".sim/journal-1.bin"),
              fs::file_size(t.dir / ".sim/journal-2.bin"));
    // a power cut at call 2 (the write): killed, as an exec'd program would be
    std::string f = root + "/file3";
    int st = spawn({"open " + f + " wc", "write " + f + " hello", "close " + f},
                   {pre, "OTASIM_ROOT=" + root, "OTASIM_JOURNAL=" + root + "/.sim/j3.bin",
                    "OTASIM_CRASH_AT=2", "OTASIM_CRASH_MODE=process"},
                   nullptr);
    EXPECT_EQ(st, 128 + SIGKILL);
    // without OTASIM_ROOT the interposer stays out of the way
    st = spawn({"open " + root + "/file4 wc", "close " + root + "/file4"}, {pre}, nullptr);
    EXPECT_EQ(st, 0);
    EXPECT_TRUE(fs::exists(t.dir / "file4"));
}

TEST_F(Zygote, ServesOnlyItsProgramAndPreload)
{
    struct ota_err e = {};
    ASSERT_EQ(otasim_zygote_start(&tools, &e), 1) << e.reason;
    const char *other[] = {"/bin/true", nullptr};
    char *env[] = {nullptr};
    char faketime[] = "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    char *env2[] = {faketime, nullptr};
    const char *me[] = {OTASIM_CALLSEQ, "sync", nullptr};
    pid_t pid;
    EXPECT_EQ(otasim_zygote_spawn(other, env, -1, -1, -1, &pid), -ENOSYS);
    EXPECT_EQ(otasim_zygote_spawn(me, env2, -1, -1, -1, &pid), -ENOSYS);
    // not one of its children: otasim_wait waits for its own
    int raw;
    EXPECT_EQ(otasim_zygote_wait(getpid(), 0, &raw), -ESRCH);
}

TEST_F(Zygote, AScriptAgentIsExecedNotServed)
{
    // an interpreter would run its own main for every request: refused
    fs::path script = t.dir / "agent";
    write(script, "#!/bin/sh\nexit 0\n", 0755);
    ota_strlcpy(tools.agent, script.c_str(), sizeof(tools.agent));
    struct ota_err e = {};
    int64_t t0 = otasim_now_ms();
    EXPECT_EQ(otasim_zygote_start(&tools, &e), 0) << e.reason;
    EXPECT_LT(otasim_now_ms() - t0, 5000);
    // and off in baseline mode is otasim_baseline's (read once per process)
}
