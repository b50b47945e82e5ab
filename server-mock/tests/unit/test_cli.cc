// Unit tests for src/cli.c, ota-server's command line as a library call:
// the exit codes of help, bad usage and a server that cannot start, without
// a server ever listening.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

extern "C" {
#include "otasrv/cli.h"
}

namespace
{

int run(std::vector<std::string> args)
{
    std::vector<char *> argv;
    args.insert(args.begin(), "ota-server");
    for (auto &a : args)
        argv.push_back(&a[0]);
    argv.push_back(nullptr);
    return otasrv_cli_main((int)args.size(), argv.data());
}

TEST(ServerCli, HelpAndUsage)
{
    testing::internal::CaptureStdout();
    EXPECT_EQ(run({"--help"}), 0);
    std::string out = testing::internal::GetCapturedStdout();
    EXPECT_NE(out.find("usage: ota-server serve"), std::string::npos);
    EXPECT_NE(out.find("release"), std::string::npos); // the admin commands' usage too
    testing::internal::CaptureStdout();
    EXPECT_EQ(run({"serve", "--help"}), 0);
    EXPECT_NE(testing::internal::GetCapturedStdout().find("--faults FILE"), std::string::npos);
    testing::internal::CaptureStderr();
    EXPECT_EQ(run({}), 2);
    testing::internal::GetCapturedStderr();
}

TEST(ServerCli, BadUsageExits2)
{
    testing::internal::CaptureStderr();
    EXPECT_EQ(run({"frobnicate"}), 2);
    EXPECT_EQ(run({"serve", "--port", "65536"}), 2);
    EXPECT_EQ(run({"serve", "--threads", "0"}), 2);
    EXPECT_EQ(run({"serve", "--no-such-option"}), 2);
    EXPECT_EQ(run({"serve", "extra"}), 2);
    EXPECT_EQ(run({"serve", "--faults", "/nonexistent/plan.yaml"}), 2);
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("unknown command frobnicate"), std::string::npos);
    EXPECT_NE(err.find("bad value for --port: 65536"), std::string::npos);
    EXPECT_NE(err.find("unexpected argument extra"), std::string::npos);
    EXPECT_NE(err.find("--faults /nonexistent/plan.yaml"), std::string::npos);
}

TEST(ServerCli, ServerThatCannotStartExits1)
{
    char tmpl[] = "/tmp/srvcli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    testing::internal::CaptureStderr();
    EXPECT_EQ(run({"serve", "--listen", "not-an-address", "--port", "0", "--db", dir + "/db",
                   "--data-dir", dir + "/data"}),
              1);
    EXPECT_NE(testing::internal::GetCapturedStderr().find("not an IPv4 or IPv6 address"),
              std::string::npos);
    std::string cmd = "rm -rf '" + dir + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
}

} // namespace
