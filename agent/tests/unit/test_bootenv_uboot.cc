// U-Boot env over libubootenv, checked against the real tools: envs made by
// mkenvimage (u-boot-tools), results read back with fw_printenv
// (libubootenv-tool), corrupt CRCs, and a redundant env in two files.
#include <gtest/gtest.h>

#include "testutil.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "ota/drivers.h"

namespace fs = std::filesystem;

namespace
{

const char kEnvText[] = "bootcmd=run ab_select; bootm\n"
                        "boot_part=a\n"
                        "bootcount=0\n"
                        "bootlimit=3\n"
                        "upgrade_available=0\n";

// Flips one byte of the env data (after CRC and flags) so its CRC is wrong.
void corrupt(const std::string &path)
{
    std::string data = read_file(path);
    data[12] ^= 0x20;
    write_file(path, data);
}

std::string shell(const std::string &cmd, int *status = nullptr)
{
    std::string out;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p)
        return out;
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        out.append(buf, n);
    int st = pclose(p);
    if (status)
        *status = st;
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    return out;
}

class BootenvTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-bootenv-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        ota_err_clear(&err);
        write_file(dir + "/env.txt", kEnvText);
    }
    void TearDown() override
    {
        ota_ubootenv_close(e);
        fs::remove_all(dir);
    }

    // One env file (redundant: two, made with mkenvimage -r) and its config.
    void make_env(bool redundant)
    {
        std::string r = redundant ? "-r " : "";
        env1 = dir + "/uboot.env";
        env2 = dir + "/uboot-redund.env";
        config = dir + "/fw_env.config";
        ASSERT_EQ(
            system(("mkenvimage " + r + "-s 0x4000 -o " + env1 + " " + dir + "/env.txt").c_str()),
            0);
        std::string cfg = "# device offset size\n" + env1 + " 0x0 0x4000\n";
        if (redundant) {
            ASSERT_EQ(
                system(("mkenvimage -r -s 0x4000 -o " + env2 + " " + dir + "/env.txt").c_str()), 0);
            cfg += env2 + " 0x0 0x4000\n";
        }
        write_file(config, cfg);
    }

    void open_env()
    {
        ota_err_clear(&err);
        ASSERT_EQ(ota_ubootenv_open(config.c_str(), &e, &err), 0) << err.reason;
    }

    int get(const char *name, std::string *value)
    {
        char buf[256];
        ota_err_clear(&err);
        int r = ota_ubootenv_ops.get(e, name, buf, sizeof(buf), &err);
        if (r == 0)
            *value = buf;
        return r;
    }

    int set(std::initializer_list<const char *> names, std::initializer_list<const char *> values)
    {
        ota_err_clear(&err);
        return ota_ubootenv_ops.set(e, names.begin(), values.begin(), names.size(), &err);
    }

    // The value as fw_printenv sees it; "<unset>" if it is not in the env.
    // (fw_printenv 0.3.2 prints an unset variable as empty, with status 0:
    // so read the whole listing.)
    std::string printenv(const std::string &name)
    {
        int status = 0;
        std::string out = shell("fw_printenv -c " + config + " 2>/dev/null", &status);
        if (status != 0)
            return "<error>";
        std::string key = name + "=";
        size_t pos = 0;
        while (pos < out.size()) {
            size_t end = out.find('\n', pos);
            if (end == std::string::npos)
                end = out.size();
            std::string line = out.substr(pos, end - pos);
            if (line.compare(0, key.size(), key) == 0)
                return line.substr(key.size());
            pos = end + 1;
        }
        return "<unset>";
    }

    std::string dir, env1, env2, config;
    struct ota_ubootenv *e = nullptr;
    struct ota_err err;
};

TEST_F(BootenvTest, ToolsAreThere)
{
    make_env(false);
    EXPECT_EQ(printenv("boot_part"), "a");
}

TEST_F(BootenvTest, GetReadsTheEnv)
{
    make_env(false);
    open_env();
    std::string v;
    ASSERT_EQ(get("boot_part", &v), 0) << err.reason;
    EXPECT_EQ(v, "a");
    ASSERT_EQ(get("bootcmd", &v), 0) << err.reason;
    EXPECT_EQ(v, "run ab_select; bootm");
}

TEST_F(BootenvTest, MissingVariableIsEnoent)
{
    make_env(false);
    open_env();
    std::string v = "untouched";
    EXPECT_EQ(get("no_such_var", &v), -ENOENT);
    EXPECT_EQ(v, "untouched");
    EXPECT_NE(strstr(err.reason, "no_such_var"), nullptr) << err.reason;
    EXPECT_EQ(get("", &v), -EINVAL);
}

TEST_F(BootenvTest, SmallBufferIsErange)
{
    make_env(false);
    open_env();
    char buf[4] = "xyz";
    EXPECT_EQ(ota_ubootenv_ops.get(e, "bootcmd", buf, sizeof(buf), &err), -ERANGE);
    EXPECT_STREQ(buf, "xyz");
    char two[2];
    EXPECT_EQ(ota_ubootenv_ops.get(e, "boot_part", two, sizeof(two), &err), 0);
    EXPECT_STREQ(two, "a");
}

TEST_F(BootenvTest, SetWritesAllVariablesAndKeepsTheRest)
{
    make_env(false);
    open_env();
    ASSERT_EQ(set({"boot_part", "upgrade_available", "bootcount"}, {"b", "1", "0"}), 0)
        << err.reason;
    EXPECT_EQ(printenv("boot_part"), "b");
    EXPECT_EQ(printenv("upgrade_available"), "1");
    EXPECT_EQ(printenv("bootcount"), "0");
    EXPECT_EQ(printenv("bootcmd"), "run ab_select; bootm");
    EXPECT_EQ(printenv("bootlimit"), "3");
    std::string v;
    ASSERT_EQ(get("boot_part", &v), 0) << err.reason;
    EXPECT_EQ(v, "b");
    // A new variable, then removed again with a NULL value.
    ASSERT_EQ(set({"ota_note"}, {"hello world"}), 0) << err.reason;
    EXPECT_EQ(printenv("ota_note"), "hello world");
    const char *names[] = {"ota_note"};
    const char *values[] = {nullptr};
    ASSERT_EQ(ota_ubootenv_ops.set(e, names, values, 1, &err), 0) << err.reason;
    EXPECT_EQ(printenv("ota_note"), "<unset>");
    EXPECT_EQ(get("ota_note", &v), -ENOENT);
}

TEST_F(BootenvTest, SetNothingWritesNothing)
{
    make_env(false);
    open_env();
    std::string before = read_file(env1);
    EXPECT_EQ(ota_ubootenv_ops.set(e, nullptr, nullptr, 0, &err), 0);
    EXPECT_EQ(read_file(env1), before);
}

TEST_F(BootenvTest, RefusedNameWritesNothing)
{
    make_env(false);
    open_env();
    std::string before = read_file(env1);
    EXPECT_EQ(set({"boot_part", "bad=name"}, {"b", "x"}), -EINVAL);
    EXPECT_NE(strstr(err.reason, "bad=name"), nullptr) << err.reason;
    EXPECT_EQ(read_file(env1), before);
    EXPECT_EQ(printenv("boot_part"), "a");
}

TEST_F(BootenvTest, SeesChangesMadeByOthers)
{
    make_env(false);
    open_env();
    std::string v;
    ASSERT_EQ(get("bootcount", &v), 0);
    EXPECT_EQ(v, "0");
    // U-Boot (or fw_setenv) counts a boot while the agent runs.
    ASSERT_EQ(system(("fw_setenv -c " + config + " bootcount 2").c_str()), 0);
    ASSERT_EQ(get("bootcount", &v), 0);
    EXPECT_EQ(v, "2");
    // And a set() does not write back the stale value.
    ASSERT_EQ(set({"upgrade_available"}, {"1"}), 0) << err.reason;
    EXPECT_EQ(printenv("bootcount"), "2");
}

TEST_F(BootenvTest, BadCrcIsEbadmsg)
{
    make_env(false);
    corrupt(env1);
    ASSERT_NE(system(("fw_printenv -c " + config + " >/dev/null 2>&1").c_str()), 0);
    // The agent still starts: open() succeeds, the ops say what is wrong.
    open_env();
    std::string v;
    EXPECT_EQ(get("boot_part", &v), -EBADMSG);
    EXPECT_NE(strstr(err.reason, "CRC"), nullptr) << err.reason;
    EXPECT_NE(strstr(err.reason, env1.c_str()), nullptr) << err.reason;
    // set() must not write an env made only of its own variables.
    std::string before = read_file(env1);
    EXPECT_EQ(set({"boot_part"}, {"b"}), -EBADMSG);
    EXPECT_EQ(read_file(env1), before);
}

TEST_F(BootenvTest, CorruptionAfterOpenIsSeen)
{
    make_env(false);
    open_env();
    std::string v;
    ASSERT_EQ(get("boot_part", &v), 0);
    corrupt(env1);
    EXPECT_EQ(get("boot_part", &v), -EBADMSG);
}

TEST_F(BootenvTest, MissingConfigOrDeviceFailsOpen)
{
    make_env(false);
    std::string missing = dir + "/none.config";
    EXPECT_EQ(ota_ubootenv_open(missing.c_str(), &e, &err), -EINVAL);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(strstr(err.reason, "none.config"), nullptr) << err.reason;

    // libubootenv 0.3.2 checks the device in read_config (EINVAL) or in
    // open (EIO): either way open() fails and says which config.
    fs::remove(env1);
    ota_err_clear(&err);
    EXPECT_LT(ota_ubootenv_open(config.c_str(), &e, &err), 0);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(err.reason[0], '\0');
}

TEST_F(BootenvTest, ShortDeviceFailsOpenWithEio)
{
    make_env(false);
    fs::resize_file(env1, 100);
    EXPECT_EQ(ota_ubootenv_open(config.c_str(), &e, &err), -EIO);
    EXPECT_EQ(e, nullptr);
    EXPECT_NE(strstr(err.reason, env1.c_str()), nullptr) << err.reason;
}

TEST_F(BootenvTest, RedundantEnvAlternatesCopies)
{
    make_env(true);
    open_env();
    std::string v;
    ASSERT_EQ(get("boot_part", &v), 0) << err.reason;
    EXPECT_EQ(v, "a");
    std::string r1 = read_file(env1), r2 = read_file(env2);
    ASSERT_EQ(set({"boot_part", "upgrade_available"}, {"b", "1"}), 0) << err.reason;
    EXPECT_EQ(printenv("boot_part"), "b");
    EXPECT_EQ(printenv("upgrade_available"), "1");
    // Exactly one copy was written: the other still holds the previous env.
    bool wrote1 = read_file(env1) != r1, wrote2 = read_file(env2) != r2;
    EXPECT_NE(wrote1, wrote2);

    // The newest copy is cut: the library falls back to the older one.
    corrupt(wrote1 ? env1 : env2);
    ASSERT_EQ(get("boot_part", &v), 0) << err.reason;
    EXPECT_EQ(v, "a");
    EXPECT_EQ(get("upgrade_available", &v), 0);
    EXPECT_EQ(v, "0");
    EXPECT_EQ(printenv("boot_part"), "a");

    // Writing again goes over the broken copy and makes it the newest.
    ASSERT_EQ(set({"boot_part"}, {"b"}), 0) << err.reason;
    EXPECT_EQ(printenv("boot_part"), "b");

    // Both copies bad: -EBADMSG naming both files.
    corrupt(env1);
    corrupt(env2);
    EXPECT_EQ(get("boot_part", &v), -EBADMSG);
    EXPECT_NE(strstr(err.reason, env1.c_str()), nullptr) << err.reason;
    EXPECT_NE(strstr(err.reason, env2.c_str()), nullptr) << err.reason;
}

TEST_F(BootenvTest, CloseAcceptsNull)
{
    ota_ubootenv_close(nullptr);
}

} // namespace
