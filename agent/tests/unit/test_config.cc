// ota-agent's config file: defaults, every section, strict errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "ota/config.h"

class ConfigTest : public ::testing::Test
{
  protected:
    std::string dir, pub, path;
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-config-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        pub = dir + "/key.pub";
        write(pub, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n");
        path = dir + "/agent.conf";
    }
    void TearDown() override
    {
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    static void write(const std::string &p, const std::string &text)
    {
        FILE *f = fopen(p.c_str(), "w");
        fputs(text.c_str(), f);
        fclose(f);
    }
    int load(const std::string &text, ota_config *c, ota_err *err)
    {
        write(path, text);
        return ota_config_load(path.c_str(), c, err);
    }
    std::string base()
    {
        return "[agent]\nserver = http://127.0.0.1:8080/\npublic_key = " + pub + "\n";
    }
};

TEST_F(ConfigTest, DefaultsAndEveryKey)
{
    ota_config c;
    ota_err err{};
    std::string text =
        base() + "# a comment\n; another\n\n"
                 "source = github\nrepo = me/app\ndevice_id = d1\ndevice_type = rpi4\n"
                 "max_attempts = 3\ncheckpoint_bytes = 65536\n"
                 "[transport]\nca_file = /etc/ca.pem\nmax_bytes_per_s = 1000\n"
                 "[app]\nroot = /srv/app\n[download]\ndir = /data/dl\n"
                 "[rootfs]\nenv_config = /etc/fw_env.config\ndevice_a = /dev/mmcblk0p2\n"
                 "[health]\nwindow = 12\nurl = http://127.0.0.1:8081/health\n"
                 "[service]\nkind = command\nrestart_cmd = r\nis_active_cmd = a\ntimeout = 5\n";
    ASSERT_EQ(load(text, &c, &err), 0) << err.reason;
    EXPECT_STREQ(c.agent.server_url, "http://127.0.0.1:8080"); // trailing slash dropped
    EXPECT_EQ(c.agent.source, OTA_SOURCE_GITHUB);
    EXPECT_STREQ(c.agent.repo, "me/app");
    EXPECT_STREQ(c.agent.device_type, "rpi4");
    EXPECT_EQ(c.agent.max_attempts, 3u);
    EXPECT_EQ(c.agent.max_resumes, 5u); // default kept
    EXPECT_EQ(c.agent.checkpoint_bytes, 65536u);
    EXPECT_EQ(c.agent.health_window_ms, 12000);
    EXPECT_STREQ(c.curl.ca_file, "/etc/ca.pem");
    EXPECT_EQ(c.curl.max_bytes_per_s, 1000);
    EXPECT_STREQ(c.install.app_root, "/srv/app");
    EXPECT_STREQ(c.install.rootfs_dev[0], "/dev/mmcblk0p2");
    EXPECT_STREQ(c.env_config, "/etc/fw_env.config");
    EXPECT_EQ(c.service.kind, OTA_SERVICE_COMMAND);
    EXPECT_EQ(c.service.timeout_s, 5);
    EXPECT_NE(std::string(c.agent.pubkey_pem).find("BEGIN PUBLIC KEY"), std::string::npos);
}

TEST_F(ConfigTest, ErrorsNameFileAndLine)
{
    struct {
        std::string text, want;
    } cases[] = {
        {base() + "frobnicate = 1\n", ":4: unknown key 'frobnicate'"},
        {base() + "[nosuch]\nx = 1\n", "unknown key 'x' in [nosuch]"},
        {base() + "max_attempts = 0\n", "max_attempts wants a number >= 1"},
        {base() + "max_attempts = 3x\n", "max_attempts wants a number"},
        {base() + "source = ftp\n", "source must be fleet or github"},
        {base() + "just words\n", "expected 'key = value'"},
        {"x = 1\n", "inside a [section]"},
        {base() + "[agent\n", "bad section header"},
        {"[agent]\npublic_key = " + pub + "\n", "server is required"},
        {base() + "source = github\n", "repo = OWNER/REPO is required"},
        {"[agent]\nserver = http://x\npublic_key = /nonexistent/key.pub\n", "key.pub"},
        {base() + "[service]\nkind = upstart\n", "systemd or command"},
    };
    for (auto &tc : cases) {
        ota_config c;
        ota_err err{};
        EXPECT_LT(load(tc.text, &c, &err), 0) << tc.text;
        EXPECT_NE(std::string(err.reason).find(tc.want), std::string::npos)
            << "reason: " << err.reason << "\nwant: " << tc.want;
    }
}

TEST_F(ConfigTest, AttributesAndTimezone)
{
    ota_config c;
    ota_err err{};
    ASSERT_EQ(load(base() + "attributes = region=eu,  network = lte ,hw=rev 2\n"
                            "timezone = Europe/Berlin\n",
                   &c, &err),
              0)
        << err.reason;
    ASSERT_EQ(c.agent.n_attributes, 3);
    EXPECT_STREQ(c.agent.attributes[0].key, "region");
    EXPECT_STREQ(c.agent.attributes[0].value, "eu");
    EXPECT_STREQ(c.agent.attributes[1].key, "network");
    EXPECT_STREQ(c.agent.attributes[1].value, "lte");
    EXPECT_STREQ(c.agent.attributes[2].value, "rev 2");
    EXPECT_STREQ(c.agent.timezone, "Europe/Berlin");
    ASSERT_EQ(load(base() + "timezone = +05:30\nattributes =\n", &c, &err), 0) << err.reason;
    EXPECT_EQ(c.agent.n_attributes, 0);
    EXPECT_STREQ(c.agent.timezone, "+05:30");
    ASSERT_EQ(load(base(), &c, &err), 0) << err.reason; // defaults: none
    EXPECT_EQ(c.agent.n_attributes, 0);
    EXPECT_STREQ(c.agent.timezone, "");

    std::string many = "attributes = ";
    for (int i = 0; i < 17; i++)
        many += "k" + std::to_string(i) + "=v,";
    struct {
        std::string text, want;
    } cases[] = {
        {base() + "attributes = Region=eu\n", ":4: attributes: key 'Region'"},
        {base() + "attributes = region\n", "is not key=value"},
        {base() + "attributes = a=1, a=2\n", "a is given twice"},
        {base() + many + "\n", "more than 16"},
        {base() + "attributes = k=" + std::string(65, 'x') + "\n", "the value of k"},
        {base() + "timezone = Europe/../etc\n", "timezone must be"},
        {base() + "timezone = +25:00\n", "timezone must be"},
    };
    for (auto &tc : cases) {
        err = {};
        EXPECT_LT(load(tc.text, &c, &err), 0) << tc.text;
        EXPECT_NE(std::string(err.reason).find(tc.want), std::string::npos)
            << "reason: " << err.reason << "\nwant: " << tc.want;
    }
}

TEST_F(ConfigTest, MissingFile)
{
    ota_config c;
    ota_err err{};
    EXPECT_EQ(ota_config_load((dir + "/nope.conf").c_str(), &c, &err), -ENOENT);
    EXPECT_NE(std::string(err.reason).find("nope.conf"), std::string::npos) << err.reason;
}

TEST_F(ConfigTest, ProductPerKindDefaultsToNone)
{
    ota_config c;
    ota_err err{};
    ASSERT_EQ(load(base(), &c, &err), 0) << err.reason;
    EXPECT_STREQ(c.agent.product, "");
    EXPECT_STREQ(c.agent.rootfs_product, "");
    ASSERT_EQ(load(base() + "product = video-app\n[rootfs]\nproduct = pi-os\n", &c, &err), 0)
        << err.reason;
    EXPECT_STREQ(c.agent.product, "video-app");
    EXPECT_STREQ(c.agent.rootfs_product, "pi-os");
}

// [transport] client_cert / client_key (mutual TLS): read as given, a key
// alone or a file that cannot be read is an error at load, naming the key.
TEST_F(ConfigTest, ClientCertificate)
{
    ota_config c;
    ota_err err{};
    std::string crt = dir + "/dev.pem", key = dir + "/dev.key";
    write(crt, "cert");
    write(key, "key");
    ASSERT_EQ(load(base(), &c, &err), 0) << err.reason;
    EXPECT_STREQ(c.curl.client_cert, "");
    EXPECT_STREQ(c.curl.client_key, "");
    ASSERT_EQ(load(base() + "[transport]\nclient_cert = " + crt + "\nclient_key = " + key + "\n",
                   &c, &err),
              0)
        << err.reason;
    EXPECT_STREQ(c.curl.client_cert, crt.c_str());
    EXPECT_STREQ(c.curl.client_key, key.c_str());
    ASSERT_EQ(load(base() + "[transport]\nclient_cert = " + crt + "\n", &c, &err), 0)
        << err.reason; // certificate and key in one file
    EXPECT_STREQ(c.curl.client_key, "");

    EXPECT_EQ(load(base() + "[transport]\nclient_key = " + key + "\n", &c, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("client_key needs client_cert"), std::string::npos)
        << err.reason;
    ota_err_clear(&err);
    EXPECT_EQ(load(base() + "[transport]\nclient_cert = " + dir + "/nope.pem\n", &c, &err),
              -ENOENT);
    EXPECT_NE(std::string(err.reason).find("client_cert " + dir + "/nope.pem"), std::string::npos)
        << err.reason;
    ota_err_clear(&err);
    EXPECT_EQ(
        load(base() + "[transport]\nclient_cert = " + crt + "\nclient_key = " + dir + "/nope.key\n",
             &c, &err),
        -ENOENT);
    EXPECT_NE(std::string(err.reason).find("client_key " + dir + "/nope.key"), std::string::npos)
        << err.reason;
}

// [agent] public_key may name several key files, separated by commas: their
// texts one after the other (the trusted release keys); a missing one is an
// error that names it. One file reads as it always did.
TEST_F(ConfigTest, PublicKeyTakesSeveralFiles)
{
    ota_config c;
    ota_err err{};
    std::string pub2 = dir + "/key2.pub";
    write(pub2, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEB\n-----END PUBLIC KEY-----");
    ASSERT_EQ(
        load("[agent]\nserver = http://h\npublic_key = " + pub + " , " + pub2 + "\n", &c, &err), 0)
        << err.reason;
    EXPECT_EQ(std::string(c.agent.pubkey_pem),
              "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
              "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEB\n-----END PUBLIC KEY-----");
    ASSERT_EQ(load(base(), &c, &err), 0) << err.reason;
    EXPECT_EQ(std::string(c.agent.pubkey_pem),
              "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n");
    err = {};
    EXPECT_EQ(
        load("[agent]\nserver = http://h\npublic_key = " + pub + "," + dir + "/nope\n", &c, &err),
        -ENOENT);
    EXPECT_NE(std::string(err.reason).find(dir + "/nope"), std::string::npos) << err.reason;
}
