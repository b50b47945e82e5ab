// The plain service supervisor, running the real video-app in a temp
// device tree: start/is-active/restart/stop, crashes, early deaths, the
// process group and what the app inherits.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "otasim/svc.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

const char kVideoApp[] = OTA_BINARY_DIR "/agent/video-app/video-app";

int free_port()
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    socklen_t len = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

// One GET on 127.0.0.1:port; the whole response, "" if none.
std::string http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (fd < 0)
        return out;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        std::string req = std::string("GET ") + path +
                          " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == (ssize_t)req.size()) {
            char buf[4096];
            ssize_t n;
            while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                out.append(buf, (size_t)n);
        }
    }
    close(fd);
    return out;
}

// Retries while the app comes up.
std::string http_get_retry(int port, const char *path)
{
    for (int i = 0; i < 100; i++) {
        std::string r = http_get(port, path);
        if (!r.empty())
            return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return "";
}

class SvcTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/otasim-svc-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root = tmpl;
        fs::create_directories(root + "/opt/app/a/bin");
        fs::create_directories(root + "/run");
        fs::create_symlink("a", root + "/opt/app/current");
        ASSERT_TRUE(fs::exists(kVideoApp)) << kVideoApp << " not built";
        fs::copy_file(kVideoApp, root + "/opt/app/a/bin/video-app");
        port = free_port();
        ASSERT_GT(port, 0);
        write_all(root + "/run/app.port", std::to_string(port) + "\n");
    }
    void TearDown() override
    {
        struct ota_err e = {};
        EXPECT_EQ(otasim_svc_run(root.c_str(), OTASIM_SVC_STOP, &e), 0) << e.reason;
        while (waitpid(-1, nullptr, WNOHANG) > 0)
            ;
        fs::remove_all(root);
    }

    int run(enum otasim_svc_cmd cmd)
    {
        ota_err_clear(&err);
        return otasim_svc_run(root.c_str(), cmd, &err);
    }

    // The pid recorded in run/app.pid (0 if none); its start time in *start.
    pid_t recorded(unsigned long long *start = nullptr)
    {
        long pid = 0;
        unsigned long long st = 0;
        std::string text = read_all(root + "/run/app.pid");
        if (sscanf(text.c_str(), "%ld %llu", &pid, &st) != 2)
            return 0;
        if (start)
            *start = st;
        return (pid_t)pid;
    }

    // A script standing in for the app.
    void app_script(const std::string &body)
    {
        std::string bin = root + "/opt/app/a/bin/video-app";
        fs::remove(bin);
        write_all(bin, "#!/bin/sh\n" + body);
        fs::permissions(bin, fs::perms::owner_all);
    }

    bool wait_inactive()
    {
        for (int i = 0; i < 200; i++) {
            if (run(OTASIM_SVC_IS_ACTIVE) == 3)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

    std::string root;
    int port = 0;
    struct ota_err err = {};
};

// Field 22 of /proc/PID/stat.
unsigned long long proc_start(pid_t pid)
{
    std::string s = read_all("/proc/" + std::to_string(pid) + "/stat");
    size_t p = s.rfind(')');
    if (p == std::string::npos)
        return 0;
    std::istringstream in(s.substr(p + 2));
    std::string field;
    for (int i = 3; i <= 22 && (in >> field); i++)
        ;
    return std::stoull(field);
}

TEST_F(SvcTest, StartIsActiveRestartStop)
{
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 0);
    unsigned long long start = 0;
    pid_t pid = recorded(&start);
    ASSERT_GT(pid, 0);
    EXPECT_EQ(start, proc_start(pid));
    EXPECT_NE(http_get_retry(port, "/health").find("\"status\":\"ok\""), std::string::npos);
    EXPECT_NE(http_get(port, "/version").find("\"version\""), std::string::npos);
    EXPECT_NE(read_all(root + "/run/app.log").find("listening on"), std::string::npos);

    // Already running: nothing new.
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    EXPECT_EQ(recorded(), pid);

    ASSERT_EQ(run(OTASIM_SVC_RESTART), 0) << err.reason;
    pid_t pid2 = recorded();
    EXPECT_GT(pid2, 0);
    EXPECT_NE(pid2, pid);
    EXPECT_EQ(kill(pid, 0), -1); // stopped and reaped, no zombie
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 0);
    EXPECT_NE(http_get_retry(port, "/health").find("\"status\":\"ok\""), std::string::npos);

    ASSERT_EQ(run(OTASIM_SVC_STOP), 0) << err.reason;
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);
    EXPECT_FALSE(fs::exists(root + "/run/app.pid"));
    EXPECT_EQ(kill(pid2, 0), -1);
    EXPECT_EQ(http_get(port, "/health"), "");
    EXPECT_EQ(run(OTASIM_SVC_STOP), 0); // stopping a stopped app is fine
}

// The simulator's settle time covers a slow start: an app that takes 300 ms to
// listen (an ASan build on a loaded machine can) is started once /health
// answers, because the agent probes it as soon as the restart returns (no start
// grace in the simulator's config). The old bound, 50 ms, returned before the
// app listened: the agent rolled a good update back ("Failed to connect").
TEST_F(SvcTest, SimulatorSettleCoversASlowStart)
{
    app_script(std::string("sleep 0.3\nexec ") + kVideoApp + "\n");
    setenv("OTASIM_SVC_SETTLE_MS", std::to_string(OTASIM_SVC_SIM_SETTLE_MS).c_str(), 1);
    auto t0 = std::chrono::steady_clock::now();
    int r = run(OTASIM_SVC_START);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    unsetenv("OTASIM_SVC_SETTLE_MS");
    ASSERT_EQ(r, 0) << err.reason;
    EXPECT_NE(http_get(port, "/health").find("\"status\":\"ok\""), std::string::npos);
    EXPECT_GE(ms, 300);
    EXPECT_LT(ms, OTASIM_SVC_SIM_SETTLE_MS); // it returned once listening, not at the bound

    // The old bound: started, but nothing answers yet.
    setenv("OTASIM_SVC_SETTLE_MS", "50", 1);
    r = run(OTASIM_SVC_RESTART);
    unsetenv("OTASIM_SVC_SETTLE_MS");
    ASSERT_EQ(r, 0) << err.reason;
    EXPECT_EQ(http_get(port, "/health"), "");
}

// The simulator reserves each device's app port for the device's life (device.c
// reserve_port: bound with SO_REUSEADDR, never listening), so nothing else takes
// it while the app is down. The app must still start on it, and another socket
// must not get it.
TEST_F(SvcTest, AppStartsOnAReservedPort)
{
    int res = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {};
    socklen_t len = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_GE(res, 0);
    ASSERT_EQ(setsockopt(res, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    ASSERT_EQ(bind(res, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(getsockname(res, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    write_all(root + "/run/app.port", std::to_string(port) + "\n");

    // the app is down (not started yet, so no TIME_WAIT holds the port
    // either): another socket cannot take the port
    int other = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(other, 0);
    EXPECT_EQ(bind(other, (struct sockaddr *)&a, sizeof(a)), -1);
    EXPECT_EQ(errno, EADDRINUSE);
    close(other);
    // yet the app starts on it, and again after a stop
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    EXPECT_NE(http_get_retry(port, "/health").find("\"status\":\"ok\""), std::string::npos);
    ASSERT_EQ(run(OTASIM_SVC_STOP), 0) << err.reason;
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    EXPECT_NE(http_get_retry(port, "/health").find("\"status\":\"ok\""), std::string::npos);
    close(res);
}

TEST_F(SvcTest, KilledAppIsInactive)
{
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    pid_t pid = recorded();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_TRUE(wait_inactive()); // as a zombie already
    EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);

    // No restart on its own; a start brings it back.
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    EXPECT_NE(recorded(), 0);
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 0);
}

// A live process that is not the app and whose start time differs from `not_start`:
// what a pid reused after the app's exit looks like. Start times count 10 ms clock
// ticks, so a process forked in the app's tick (the test process itself, often) would
// look like the app: fork again, a tick later, until the start time differs.
pid_t other_process(unsigned long long not_start)
{
    for (int i = 0; i < 200; i++) {
        pid_t c = fork();
        if (c < 0)
            return -1;
        if (c == 0) {
            pause();
            _exit(0);
        }
        if (proc_start(c) != not_start)
            return c;
        kill(c, SIGKILL);
        waitpid(c, nullptr, 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
}

TEST_F(SvcTest, RecycledPidIsNotTheApp)
{
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    unsigned long long start = 0;
    pid_t pid = recorded(&start);
    // Another live process's pid, with the app's start time: a pid reused by another process.
    pid_t other = other_process(start);
    ASSERT_GT(other, 0) << "no process with a start time other than the app's";
    ASSERT_NE(proc_start(other), start);
    write_all(root + "/run/app.pid", std::to_string(other) + " " + std::to_string(start) + "\n");
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);
    kill(other, SIGKILL);
    waitpid(other, nullptr, 0);
    write_all(root + "/run/app.pid", std::to_string(pid) + " " + std::to_string(start) + "\n");
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 0);
}

TEST_F(SvcTest, BinaryThatExitsAtOnceFailsStart)
{
    app_script("echo 'app: cannot start' >&2\nexit 3\n");
    EXPECT_EQ(run(OTASIM_SVC_START), 1);
    EXPECT_NE(std::string(err.reason).find("exit status 3"), std::string::npos) << err.reason;
    std::string log = read_all(root + "/run/app.log");
    EXPECT_NE(log.find("app: cannot start"), std::string::npos) << log;
    EXPECT_NE(log.find("died at start: exit status 3"), std::string::npos) << log;
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);
    EXPECT_EQ(run(OTASIM_SVC_RESTART), 1);
}

TEST_F(SvcTest, MissingBinaryOrPortFailsStart)
{
    fs::remove(root + "/opt/app/current");
    fs::create_symlink("b", root + "/opt/app/current"); // an empty slot
    EXPECT_EQ(run(OTASIM_SVC_START), 1);
    EXPECT_NE(std::string(err.reason).find("not executable"), std::string::npos) << err.reason;

    fs::remove(root + "/opt/app/current");
    fs::create_symlink("a", root + "/opt/app/current");
    fs::remove(root + "/run/app.port");
    EXPECT_EQ(run(OTASIM_SVC_START), 1);
    EXPECT_NE(std::string(err.reason).find("app.port"), std::string::npos) << err.reason;
    EXPECT_EQ(run(OTASIM_SVC_IS_ACTIVE), 3);
}

TEST_F(SvcTest, ChildInheritsNoPipesAndHasDevNullStdin)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0); // deliberately not close-on-exec
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    close(p[1]);
    // Had the app inherited the write end, this would block.
    struct pollfd pfd = {p[0], POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 2000), 1);
    char c;
    EXPECT_EQ(read(p[0], &c, 1), 0);
    close(p[0]);

    pid_t pid = recorded();
    std::string fd = "/proc/" + std::to_string(pid) + "/fd/";
    EXPECT_EQ(fs::read_symlink(fd + "0"), "/dev/null");
    EXPECT_EQ(fs::read_symlink(fd + "1"), fs::path(root + "/run/app.log"));
    EXPECT_EQ(fs::read_symlink(fd + "2"), fs::path(root + "/run/app.log"));
    for (auto &ent : fs::directory_iterator(fd)) {
        int n = std::stoi(ent.path().filename().string());
        if (n > 2) { // only what the app opened itself: its sockets
            EXPECT_EQ(fs::read_symlink(ent.path()).string().rfind("socket:", 0), 0u)
                << n << " -> " << fs::read_symlink(ent.path());
        }
    }
    // The port came from run/app.port.
    std::string env = read_all("/proc/" + std::to_string(pid) + "/environ");
    EXPECT_NE(env.find("VIDEO_APP_PORT=" + std::to_string(port) + '\0'), std::string::npos);
}

TEST_F(SvcTest, ProcessGroup)
{
    unsetenv("OTASIM_PGID");
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    pid_t pid = recorded();
    EXPECT_EQ(getpgid(pid), getpgrp()); // the caller's group
    EXPECT_EQ(getsid(pid), getsid(0));  // never a session of its own
    ASSERT_EQ(run(OTASIM_SVC_STOP), 0);

    // A "device" group: a process leading its own group.
    pid_t leader = fork();
    ASSERT_GE(leader, 0);
    if (leader == 0) {
        setpgid(0, 0);
        pause();
        _exit(0);
    }
    setpgid(leader, leader);
    setenv("OTASIM_PGID", std::to_string(leader).c_str(), 1);
    int r = run(OTASIM_SVC_START);
    unsetenv("OTASIM_PGID");
    EXPECT_EQ(r, 0) << err.reason;
    pid = recorded();
    EXPECT_EQ(getpgid(pid), leader);

    // A power cut of the device's group takes the app with it.
    ASSERT_EQ(kill(-leader, SIGKILL), 0);
    EXPECT_TRUE(wait_inactive());
    waitpid(leader, nullptr, 0);
    waitpid(pid, nullptr, 0);

    // A group that does not exist: start fails, saying why.
    setenv("OTASIM_PGID", std::to_string(leader).c_str(), 1);
    r = run(OTASIM_SVC_START);
    unsetenv("OTASIM_PGID");
    EXPECT_EQ(r, 1);
    EXPECT_NE(std::string(err.reason).find("OTASIM_PGID"), std::string::npos) << err.reason;
}

TEST_F(SvcTest, StopKillsAnAppThatIgnoresSigterm)
{
    app_script("trap '' TERM\nwhile :; do sleep 0.1; done\n");
    ASSERT_EQ(run(OTASIM_SVC_START), 0) << err.reason;
    pid_t pid = recorded();
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(run(OTASIM_SVC_STOP), 0) << err.reason;
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_GE(ms, 2900);
    EXPECT_LT(ms, 5000);
    EXPECT_EQ(kill(pid, 0), -1);
    EXPECT_NE(read_all(root + "/run/app.log").find("SIGKILL"), std::string::npos);
}

} // namespace
