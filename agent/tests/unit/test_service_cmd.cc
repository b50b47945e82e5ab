// Service control by commands. The COMMAND kind runs for real; the SYSTEMD
// kind is only constructed (there is no systemd in CI).
#include <gtest/gtest.h>

#include "testutil.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/drivers.h"

namespace fs = std::filesystem;

namespace
{

class ServiceTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-service-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        memset(&cfg, 0, sizeof(cfg));
        cfg.kind = OTA_SERVICE_COMMAND;
        snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "true");
        snprintf(cfg.is_active_cmd, sizeof(cfg.is_active_cmd), "true");
        ota_err_clear(&err);
    }
    void TearDown() override
    {
        ota_service_free(s);
        fs::remove_all(dir);
    }

    void make()
    {
        ota_service_free(s);
        s = nullptr;
        ota_err_clear(&err);
        ASSERT_EQ(ota_service_new(&cfg, &s, &err), 0) << err.reason;
    }
    int restart()
    {
        ota_err_clear(&err);
        return ota_service_ops.restart(s, &err);
    }
    int is_active(int *active)
    {
        ota_err_clear(&err);
        return ota_service_ops.is_active(s, active, &err);
    }
    int reboot()
    {
        ota_err_clear(&err);
        return ota_service_ops.reboot(s, &err);
    }

    std::string dir;
    struct ota_service_config cfg;
    struct ota_service *s = nullptr;
    struct ota_err err;
};

TEST_F(ServiceTest, KindNames)
{
    EXPECT_STREQ(ota_service_kind_names[OTA_SERVICE_SYSTEMD], "systemd");
    EXPECT_STREQ(ota_service_kind_names[OTA_SERVICE_COMMAND], "command");
}

TEST_F(ServiceTest, RestartTrueSucceeds)
{
    make();
    EXPECT_EQ(restart(), 0) << err.reason;
}

TEST_F(ServiceTest, RestartFalseFailsWithStatus)
{
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "false");
    make();
    EXPECT_EQ(restart(), -EIO);
    EXPECT_NE(strstr(err.reason, "false"), nullptr) << err.reason;
    EXPECT_NE(strstr(err.reason, "status 1"), nullptr) << err.reason;
}

TEST_F(ServiceTest, ExitStatusIsInTheReason)
{
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "exit 3");
    make();
    EXPECT_EQ(restart(), -EIO);
    EXPECT_NE(strstr(err.reason, "status 3"), nullptr) << err.reason;
}

TEST_F(ServiceTest, MissingCommandIsEnoent)
{
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "/no/such/program --flag");
    make();
    EXPECT_EQ(restart(), -ENOENT);
    EXPECT_NE(strstr(err.reason, "127"), nullptr) << err.reason;
}

TEST_F(ServiceTest, KilledCommandIsAnError)
{
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "kill -TERM $$");
    make();
    EXPECT_LT(restart(), 0);
    EXPECT_NE(strstr(err.reason, "signal 15"), nullptr) << err.reason;
}

TEST_F(ServiceTest, RestartRunsTheCommandThroughTheShell)
{
    std::string marker = dir + "/restarted";
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "echo one >> '%s' && echo two >> '%s'",
             marker.c_str(), marker.c_str());
    make();
    ASSERT_EQ(restart(), 0) << err.reason;
    EXPECT_EQ(read_file(marker), "one\ntwo\n");
    ASSERT_EQ(restart(), 0) << err.reason;
    EXPECT_EQ(read_file(marker), "one\ntwo\none\ntwo\n");
}

// A command that is one program named by a path with plain words runs
// without `sh -c` (the agent is its parent); anything with shell syntax
// (here quotes) still goes through the shell, which is then the parent.
TEST_F(ServiceTest, SimpleCommandRunsWithoutAShell)
{
    std::string rec = dir + "/rec", out = dir + "/ppid";
    {
        std::ofstream f(rec);
        f << "#!/bin/sh\necho $PPID > \"$1\"\n";
    }
    ASSERT_EQ(chmod(rec.c_str(), 0755), 0);
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "%s %s", rec.c_str(), out.c_str());
    make();
    ASSERT_EQ(restart(), 0) << err.reason;
    EXPECT_EQ(read_file(out), std::to_string(getpid()) + "\n");

    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "%s '%s'", rec.c_str(), out.c_str());
    make();
    ASSERT_EQ(restart(), 0) << err.reason;
    EXPECT_NE(read_file(out), std::to_string(getpid()) + "\n");
}

TEST_F(ServiceTest, HangingCommandIsKilledWithItsChildren)
{
    cfg.timeout_s = 2;
    std::string pidfile = dir + "/bg.pid";
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "sleep 1000 & echo $! > '%s'; sleep 1000",
             pidfile.c_str());
    make();
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(restart(), -ETIMEDOUT);
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, std::chrono::seconds(2));
    EXPECT_LT(took, std::chrono::seconds(10));
    EXPECT_NE(strstr(err.reason, "2 s"), nullptr) << err.reason;
    // The background sleep was in the command's process group: killed too
    // (gone, or a zombie waiting for init to reap it).
    int bg = atoi(read_file(pidfile).c_str());
    ASSERT_GT(bg, 0);
    for (int i = 0; i < 100; i++) {
        std::string stat = read_file("/proc/" + std::to_string(bg) + "/stat");
        size_t paren = stat.rfind(')');
        if (stat.empty() || (paren != std::string::npos && stat[paren + 2] == 'Z'))
            break;
        usleep(10000);
        if (i == 99)
            ADD_FAILURE() << "background child " << bg << " still runs: " << stat;
    }
}

TEST_F(ServiceTest, IsActiveFollowsTheCheck)
{
    std::string flag = dir + "/active";
    snprintf(cfg.is_active_cmd, sizeof(cfg.is_active_cmd), "test -e '%s'", flag.c_str());
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "touch '%s'", flag.c_str());
    make();
    int active = -1;
    ASSERT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 0);
    ASSERT_EQ(restart(), 0) << err.reason;
    ASSERT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 1);
    fs::remove(flag);
    ASSERT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 0);
}

TEST_F(ServiceTest, IsActiveAnyNonZeroIsInactive)
{
    snprintf(cfg.is_active_cmd, sizeof(cfg.is_active_cmd), "exit 3");
    make();
    int active = -1;
    ASSERT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 0);
}

TEST_F(ServiceTest, IsActiveCheckThatCannotRunIsAnError)
{
    snprintf(cfg.is_active_cmd, sizeof(cfg.is_active_cmd), "/no/such/check");
    make();
    int active = -1;
    EXPECT_EQ(is_active(&active), -ENOENT);
    EXPECT_EQ(active, -1);
}

TEST_F(ServiceTest, RebootRunsItsCommand)
{
    std::string marker = dir + "/reboot";
    snprintf(cfg.reboot_cmd, sizeof(cfg.reboot_cmd), "touch '%s'", marker.c_str());
    make();
    ASSERT_EQ(reboot(), 0) << err.reason;
    EXPECT_TRUE(fs::exists(marker));
}

TEST_F(ServiceTest, RebootWithoutACommandIsUnsupported)
{
    make();
    EXPECT_EQ(reboot(), -EOPNOTSUPP);
}

TEST_F(ServiceTest, ChildGetsDevNullAsStdinAndNoAgentFds)
{
    std::string out = dir + "/out";
    // A read from stdin must see EOF at once, not hang on the test's stdin.
    // fd 9 is open in the agent without CLOEXEC: the child must not have it.
    int fd = open("/dev/null", O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(dup2(fd, 9), 9);
    close(fd);
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd),
             "cat > '%s'; if [ -e /proc/self/fd/9 ]; then echo leaked >> '%s'; fi", out.c_str(),
             out.c_str());
    make();
    ASSERT_EQ(restart(), 0) << err.reason;
    close(9);
    EXPECT_EQ(read_file(out), "");
}

TEST_F(ServiceTest, CommandKindNeedsRestartAndIsActive)
{
    struct ota_service *x = nullptr;
    cfg.restart_cmd[0] = '\0';
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    snprintf(cfg.restart_cmd, sizeof(cfg.restart_cmd), "true");
    cfg.is_active_cmd[0] = '\0';
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    EXPECT_EQ(x, nullptr);
}

TEST_F(ServiceTest, SystemdKindIsConstructed)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.kind = OTA_SERVICE_SYSTEMD;
    snprintf(cfg.unit, sizeof(cfg.unit), "video-app.service");
    make();
    EXPECT_NE(s, nullptr);
}

// A stand-in systemctl first on PATH: it logs its arguments and exits with
// the status written in a file. This checks the argv the driver builds.
TEST_F(ServiceTest, SystemdKindRunsSystemctl)
{
    std::string fake = dir + "/systemctl", log = dir + "/log", code = dir + "/code";
    {
        std::ofstream f(fake);
        f << "#!/bin/sh\necho \"$*\" >> '" << log << "'\nexit $(cat '" << code << "')\n";
    }
    fs::permissions(fake, fs::perms::owner_all);
    std::ofstream(code) << "0";
    const char *old_path = getenv("PATH");
    std::string saved = old_path ? old_path : "";
    setenv("PATH", (dir + ":" + saved).c_str(), 1);

    memset(&cfg, 0, sizeof(cfg));
    cfg.kind = OTA_SERVICE_SYSTEMD;
    snprintf(cfg.unit, sizeof(cfg.unit), "video-app.service");
    make();
    EXPECT_EQ(restart(), 0) << err.reason;
    int active = -1;
    EXPECT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 1);
    std::ofstream(code) << "3";
    EXPECT_EQ(is_active(&active), 0) << err.reason;
    EXPECT_EQ(active, 0);
    EXPECT_EQ(restart(), -EIO);
    EXPECT_NE(strstr(err.reason, "systemctl restart video-app.service"), nullptr) << err.reason;
    EXPECT_NE(strstr(err.reason, "status 3"), nullptr) << err.reason;
    std::ofstream(code) << "0";
    EXPECT_EQ(reboot(), 0) << err.reason;

    setenv("PATH", saved.c_str(), 1);
    EXPECT_EQ(read_file(log), "restart video-app.service\n"
                              "is-active --quiet video-app.service\n"
                              "is-active --quiet video-app.service\n"
                              "restart video-app.service\n"
                              "reboot\n");
}

TEST_F(ServiceTest, SystemdKindNeedsAUnit)
{
    struct ota_service *x = nullptr;
    memset(&cfg, 0, sizeof(cfg));
    cfg.kind = OTA_SERVICE_SYSTEMD;
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    snprintf(cfg.unit, sizeof(cfg.unit), "--force");
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    EXPECT_EQ(x, nullptr);
}

TEST_F(ServiceTest, BadConfigIsRefused)
{
    struct ota_service *x = nullptr;
    cfg.kind = OTA_SERVICE_KIND_MAX;
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    cfg.kind = OTA_SERVICE_COMMAND;
    memset(cfg.reboot_cmd, 'x', sizeof(cfg.reboot_cmd)); // unterminated
    EXPECT_EQ(ota_service_new(&cfg, &x, &err), -EINVAL);
    EXPECT_EQ(ota_service_new(nullptr, &x, &err), -EINVAL);
    EXPECT_EQ(x, nullptr);
}

TEST_F(ServiceTest, FreeAcceptsNull)
{
    ota_service_free(nullptr);
}

} // namespace
