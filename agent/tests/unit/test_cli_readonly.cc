// ota-agent's commands that only look (ota_cli_main, in process): `status`
// reads the database and never creates, moves aside or changes it; a database
// it cannot read is reported (exit 5) and left for `update` to repair. `init`
// only makes the database.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ota/cli.h"

namespace fs = std::filesystem;

namespace
{

class CliReadOnly : public ::testing::Test
{
  protected:
    std::string dir, conf, db;

    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-cli-ro-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        conf = dir + "/agent.conf";
        db = dir + "/agent.db";
        fs::create_directories(dir + "/app");
        Write(dir + "/key.pub",
              "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n");
        // Nothing listens on port 1: a command that tried the server would fail.
        Write(conf, "[agent]\nserver = http://127.0.0.1:1/\npublic_key = " + dir +
                        "/key.pub\ndatabase = " + db + "\n[app]\nroot = " + dir +
                        "/app\n[download]\ndir = " + dir + "/dl\n");
    }
    void TearDown() override
    {
        fs::remove_all(dir);
    }
    static void Write(const std::string &p, const std::string &text)
    {
        std::ofstream(p, std::ios::binary) << text;
    }
    static std::string Read(const std::string &p)
    {
        std::ifstream f(p, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
    // Runs ota-agent --config conf ARGS...; returns its exit code.
    int Agent(std::vector<std::string> args, std::string *out = nullptr,
              std::string *errout = nullptr)
    {
        args.insert(args.begin(), {"ota-agent", "--config", conf});
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        optind = 1; // getopt again
        ::testing::internal::CaptureStdout();
        ::testing::internal::CaptureStderr();
        int rc = ota_cli_main((int)args.size(), argv.data());
        fflush(stdout);
        std::string o = ::testing::internal::GetCapturedStdout();
        std::string e = ::testing::internal::GetCapturedStderr();
        if (out)
            *out = o;
        if (errout)
            *errout = e;
        return rc;
    }
};

TEST_F(CliReadOnly, StatusWithoutADatabaseCreatesNone)
{
    std::string out;
    ASSERT_EQ(Agent({"status", "--json"}, &out), 0);
    EXPECT_NE(out.find("\"state\":\"IDLE\""), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(db));
    EXPECT_FALSE(fs::exists(db + "-wal"));
}

TEST_F(CliReadOnly, StatusReportsABrokenDatabaseAndMovesNothing)
{
    std::string garbage(8192, '\0');
    for (size_t i = 0; i < garbage.size(); i++)
        garbage[i] = (char)(i * 7919 % 251);
    Write(db, garbage);
    std::string out, err;
    EXPECT_EQ(Agent({"status"}, &out, &err), 5);
    EXPECT_NE(err.find("cannot be read"), std::string::npos) << err;
    EXPECT_NE(err.find("left as it is"), std::string::npos) << err;
    EXPECT_EQ(Read(db), garbage);
    EXPECT_FALSE(fs::exists(db + ".broken"));

    // update repairs it: moved aside, a new one started (the server is not
    // there, so the pass ends unreachable, exit 3).
    EXPECT_EQ(Agent({"update"}, &out, &err), 3) << err;
    EXPECT_EQ(Read(db + ".broken"), garbage);
    EXPECT_NE(err.find("moved aside"), std::string::npos) << err;
    ASSERT_EQ(Agent({"status", "--json"}, &out, &err), 0) << err;
    EXPECT_NE(out.find("agent database was unusable"), std::string::npos) << out; // its history
}

// `init` makes the database an image ships (images/rootfs/build-rootfs): the schema and WAL mode,
// no journal, report or history, the WAL merged at exit; a second init changes no byte of it.
TEST_F(CliReadOnly, InitCreatesTheDatabaseAndWritesNothingElse)
{
    std::string out, err;
    ASSERT_EQ(Agent({"init"}, &out, &err), 0) << err;
    ASSERT_TRUE(fs::exists(db));
    EXPECT_FALSE(fs::exists(db + "-wal") && fs::file_size(db + "-wal") > 0);
    EXPECT_EQ(err.find("OTA-STATE"), std::string::npos) << err; // no state machine ran
    std::string first = Read(db);
    EXPECT_EQ(first.compare(0, 16, std::string("SQLite format 3\0", 16)), 0);
    EXPECT_EQ(first[18], 2) << "not in WAL mode";
    ASSERT_EQ(Agent({"init"}, &out, &err), 0) << err;
    EXPECT_EQ(Read(db), first);
    ASSERT_EQ(Agent({"status", "--json"}, &out, &err), 0) << err;
    EXPECT_NE(out.find("\"state\":\"IDLE\""), std::string::npos) << out;
    EXPECT_EQ(out.find("unusable"), std::string::npos) << out;
}

} // namespace
