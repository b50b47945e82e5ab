// End-to-end tests of the ota-pack binary (agent/pack): keygen, build, sign
// and verify, run as a user would, checked with the library the agent uses.
#include <gtest/gtest.h>

#include "testutil.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/manifest.h"
}

namespace
{

const std::string kPack = OTA_BINARY_DIR "/agent/pack/ota-pack";

std::string sha_hex(const std::string &path)
{
    uint8_t d[OTA_SHA256_LEN];
    char hex[OTA_SHA256_HEX];
    ota_err err = {};
    EXPECT_EQ(ota_sha256_file(path.c_str(), UINT64_MAX, d, &err), 0) << err.reason;
    ota_hex_encode(d, sizeof(d), hex);
    return hex;
}

class Pack : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        struct stat st;
        ASSERT_EQ(stat(kPack.c_str(), &st), 0)
            << kPack << " is not built (cmake --build BUILD --target ota-pack)";
        char tmpl[] = "/tmp/ota-test-pack-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        ASSERT_EQ(run("keygen --private " + p("key.pem") + " --public " + p("pub.pem")), 0)
            << err_text;
        // An app package: a small tree with files of known sizes.
        ASSERT_EQ(mkdir(p("tree").c_str(), 0755), 0);
        ASSERT_EQ(mkdir(p("tree/bin").c_str(), 0755), 0);
        write_file(p("tree/bin/video-app"), std::string(5000, 'x'));
        write_file(p("tree/VERSION"), "2.0.0\n");
        ASSERT_EQ(symlink("bin/video-app", p("tree/current").c_str()), 0);
        ASSERT_EQ(sh("tar -C " + p("tree") + " -czf " + p("video-app_2.0.0.tar.gz") + " ."), 0);
    }
    void TearDown() override
    {
        ota_err err = {};
        EXPECT_EQ(ota_fs_remove_tree(dir.c_str(), &err), 0) << err.reason;
    }
    std::string p(const std::string &name) const
    {
        return dir + "/" + name;
    }
    static int sh(const std::string &cmd)
    {
        int st = system(cmd.c_str());
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    // Runs ota-pack; its exit status, stdout in out_text, stderr in err_text.
    int run(const std::string &args)
    {
        int r = sh(kPack + " " + args + " >" + p("stdout") + " 2>" + p("stderr"));
        out_text = read_file(p("stdout"));
        err_text = read_file(p("stderr"));
        return r;
    }
    std::string build_app(const std::string &extra = "")
    {
        return "build --key " + p("key.pem") + " --payload " + p("video-app_2.0.0.tar.gz") +
               " --kind app --name video-app --version 2.0.0 --device-type rpi3b --out " +
               p("rel") + " " + extra;
    }
    std::string dir, out_text, err_text;
};

} // namespace

TEST_F(Pack, BuildWritesASignedRelease)
{
    ASSERT_EQ(run(build_app("--device-type virt --created 1795000000")), 0) << err_text;
    EXPECT_EQ(err_text, "");

    // The payload, copied byte for byte.
    EXPECT_EQ(read_file(p("rel/video-app_2.0.0.tar.gz")), read_file(p("video-app_2.0.0.tar.gz")));
    std::string hex = sha_hex(p("video-app_2.0.0.tar.gz"));
    EXPECT_EQ(read_file(p("rel/video-app_2.0.0.tar.gz.sha256")),
              hex + "  video-app_2.0.0.tar.gz\n");
    EXPECT_EQ(sh("cd " + p("rel") + " && sha256sum --quiet -c video-app_2.0.0.tar.gz.sha256"), 0);

    // The manifest: exact bytes, no newline, what the library formats.
    std::string text = read_file(p("rel/manifest.json"));
    ASSERT_FALSE(text.empty());
    EXPECT_NE(text.back(), '\n');
    ota_manifest m;
    ota_err err = {};
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, &err), 0) << err.reason;
    char *again = nullptr;
    ASSERT_EQ(ota_manifest_format(&m, &again), 0);
    EXPECT_EQ(std::string(again), text);
    free(again);
    EXPECT_STREQ(m.name, "video-app");
    EXPECT_STREQ(m.version, "2.0.0");
    EXPECT_EQ(m.kind, OTA_KIND_APP);
    EXPECT_EQ(m.format, OTA_FORMAT_TARGZ); // from the suffix
    EXPECT_STREQ(m.payload, "video-app_2.0.0.tar.gz");
    struct stat st;
    ASSERT_EQ(stat(p("video-app_2.0.0.tar.gz").c_str(), &st), 0);
    EXPECT_EQ(m.size, static_cast<uint64_t>(st.st_size));
    char mhex[OTA_SHA256_HEX];
    ota_hex_encode(m.sha256, OTA_SHA256_LEN, mhex);
    EXPECT_EQ(std::string(mhex), hex);
    EXPECT_EQ(m.installed_size, 5000u + 6u); // regular files only
    ASSERT_EQ(m.n_device_types, 2);
    EXPECT_STREQ(m.device_types[0], "rpi3b");
    EXPECT_STREQ(m.device_types[1], "virt");
    EXPECT_STREQ(m.min_version, "");
    EXPECT_EQ(m.rollback, 0);
    EXPECT_EQ(m.created, 1795000000);

    // The signature: 88 base64 characters, nothing else, verifying.
    std::string sig = read_file(p("rel/manifest.json.sig"));
    EXPECT_EQ(sig.size(), 88u);
    std::string pub = read_file(p("pub.pem"));
    EXPECT_EQ(ota_manifest_verify(text.data(), text.size(), sig.c_str(), pub.c_str(), &err), 0)
        << err.reason;

    // No temp files left behind.
    EXPECT_EQ(sh("test -z \"$(ls -A " + p("rel") +
                 " | grep -v -x -e manifest.json -e manifest.json.sig -e "
                 "video-app_2.0.0.tar.gz -e video-app_2.0.0.tar.gz.sha256)\""),
              0);
}

TEST_F(Pack, BuildOptions)
{
    ASSERT_EQ(run(build_app("--min-version 1.5.0 --rollback --rollback-from 3.0.0 "
                            "--rollback-from 3.1.0 --rollback-expires +7d --created 1000 "
                            "--installed-size 123")),
              0)
        << err_text;
    std::string text = read_file(p("rel/manifest.json"));
    ota_manifest m;
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, nullptr), 0);
    EXPECT_STREQ(m.min_version, "1.5.0");
    EXPECT_EQ(m.rollback, 1);
    EXPECT_EQ(m.rollback_expires, 1000 + 7 * 86400);
    ASSERT_EQ(m.n_rollback_from, 2);
    EXPECT_STREQ(m.rollback_from[1], "3.1.0");
    EXPECT_EQ(m.installed_size, 123u);
    ASSERT_EQ(run(build_app("--rollback --rollback-from 3.0.0 --rollback-expires 5000 "
                            "--created 1000")),
              0)
        << err_text;
    text = read_file(p("rel/manifest.json"));
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, nullptr), 0);
    EXPECT_EQ(m.rollback_expires, 5000);

    // SOURCE_DATE_EPOCH gives reproducible manifests.
    ASSERT_EQ(run("--help"), 0);
    ASSERT_EQ(sh("SOURCE_DATE_EPOCH=1234 " + kPack + " " + build_app() + " >/dev/null"), 0);
    text = read_file(p("rel/manifest.json"));
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, nullptr), 0);
    EXPECT_EQ(m.created, 1234);
}

// ota-pack keys: a release whose manifest carries the keyring; keyid prints
// a key's id; --revoke takes an id or a key file; a keyring that says
// nothing, an id both added and revoked, or keys without a version are refused.
TEST_F(Pack, KeysBuildsARotationRelease)
{
    ASSERT_EQ(run("keygen --private " + p("new.pem") + " --public " + p("new.pub")), 0);
    ASSERT_EQ(run("keyid --public " + p("pub.pem")), 0) << err_text;
    std::string old_id = out_text.substr(0, out_text.size() - 1);
    ASSERT_EQ(old_id.size(), 16u) << out_text;
    std::string keys = "keys" + build_app().substr(5);
    ASSERT_EQ(run(keys + "--keyring-version 7 --add " + p("new.pub") + " --revoke " + p("pub.pem") +
                  " --revoke 0011223344556677"),
              0)
        << err_text;
    std::string text = read_file(p("rel/manifest.json"));
    ota_manifest m;
    ota_err err = {};
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, &err), 0) << err.reason;
    EXPECT_EQ(m.keyring.version, 7);
    ASSERT_EQ(m.keyring.n_keys, 1);
    char id[OTA_KEY_ID_HEX];
    ota_key_id(m.keyring.keys[0], id);
    ASSERT_EQ(run("keyid --public " + p("new.pub")), 0);
    EXPECT_EQ(std::string(id) + "\n", out_text);
    ASSERT_EQ(m.keyring.n_revoked, 2);
    EXPECT_EQ(std::string(m.keyring.revoked[0]), old_id);
    EXPECT_STREQ(m.keyring.revoked[1], "0011223344556677");
    ASSERT_EQ(run("verify --public " + p("pub.pem") + " --manifest " + p("rel/manifest.json")), 0)
        << err_text;

    EXPECT_EQ(run(keys + "--add " + p("new.pub")), 2); // no --keyring-version
    EXPECT_NE(err_text.find("--keyring-version"), std::string::npos) << err_text;
    EXPECT_EQ(run(keys + "--keyring-version 1"), 2); // neither --add nor --revoke
    EXPECT_EQ(run(keys + "--keyring-version 0 --add " + p("new.pub")), 2);
    EXPECT_EQ(run(keys + "--keyring-version 1 --add " + p("new.pub") + " --revoke " + p("new.pub")),
              1);
    EXPECT_NE(err_text.find("both trusted and revoked"), std::string::npos) << err_text;
    EXPECT_EQ(run(keys + "--keyring-version 1 --add " + p("nope.pub")), 1);
    EXPECT_EQ(run(build_app("--keyring-version 1")), 2); // build makes no rotation
    EXPECT_EQ(run("keyid"), 2);
}

TEST_F(Pack, BuildRawRootfsImage)
{
    write_file(p("rootfs-1.1.0.img"), std::string(1 << 20, '\x5a'));
    ASSERT_EQ(run("build --key " + p("key.pem") + " --payload " + p("rootfs-1.1.0.img") +
                  " --kind rootfs --name rootfs --version 1.1.0 --device-type rpi3b --out " +
                  p("rrel")),
              0)
        << err_text;
    std::string text = read_file(p("rrel/manifest.json"));
    ota_manifest m;
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, nullptr), 0);
    EXPECT_EQ(m.kind, OTA_KIND_ROOTFS);
    EXPECT_EQ(m.format, OTA_FORMAT_RAW);
    EXPECT_EQ(m.installed_size, 1u << 20);
    EXPECT_EQ(m.size, 1u << 20);
}

TEST_F(Pack, BuildCompressedRootfsImage)
{
    write_file(p("rootfs.img"), std::string(3 << 20, '\x11'));
    ASSERT_EQ(sh("gzip -c " + p("rootfs.img") + " >" + p("rootfs-1.1.0.img.gz")), 0);
    ASSERT_EQ(run("build --key " + p("key.pem") + " --payload " + p("rootfs-1.1.0.img.gz") +
                  " --kind rootfs --name rootfs --version 1.1.0 --device-type rpi3b --out " +
                  p("rrel")),
              0)
        << err_text;
    std::string text = read_file(p("rrel/manifest.json"));
    ota_manifest m;
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, nullptr), 0);
    EXPECT_EQ(m.format, OTA_FORMAT_GZ);
    EXPECT_EQ(m.installed_size, 3u << 20); // decompressed size
    EXPECT_LT(m.size, 3u << 20);
    EXPECT_EQ(sh("test $(ls -A " + p("rrel") + " | wc -l) -eq 4"), 0) << "scratch file left";
}

TEST_F(Pack, VerifyAcceptsAndRejects)
{
    ASSERT_EQ(run(build_app()), 0) << err_text;
    std::string verify =
        "verify --public " + p("pub.pem") + " --manifest " + p("rel/manifest.json");
    EXPECT_EQ(run(verify), 0) << err_text;
    EXPECT_EQ(run(verify + " --payload " + p("rel/video-app_2.0.0.tar.gz")), 0) << err_text;
    EXPECT_EQ(run(verify + " --sig " + p("rel/manifest.json.sig")), 0) << err_text;

    // Another payload: size differs.
    write_file(p("other.tar.gz"), "not it");
    EXPECT_EQ(run(verify + " --payload " + p("other.tar.gz")), 1);
    // Same size, other bytes.
    std::string payload = read_file(p("rel/video-app_2.0.0.tar.gz"));
    payload[payload.size() / 2] ^= 0x01;
    write_file(p("flipped.tar.gz"), payload);
    EXPECT_EQ(run(verify + " --payload " + p("flipped.tar.gz")), 1);
    EXPECT_NE(err_text.find("SHA-256"), std::string::npos) << err_text;

    // A tampered manifest (a newer version claimed) is refused, one line.
    std::string text = read_file(p("rel/manifest.json"));
    std::string tampered = text;
    tampered.replace(tampered.find("\"2.0.0\""), 7, "\"2.0.1\"");
    write_file(p("rel/manifest.json"), tampered);
    EXPECT_EQ(run(verify), 1);
    EXPECT_EQ(err_text.rfind("ota-pack: ", 0), 0u) << err_text;
    EXPECT_EQ(std::count(err_text.begin(), err_text.end(), '\n'), 1) << err_text;
    // ... until it is signed again.
    EXPECT_EQ(run("sign --key " + p("key.pem") + " --manifest " + p("rel/manifest.json")), 0)
        << err_text;
    EXPECT_EQ(run(verify), 0) << err_text;
    write_file(p("rel/manifest.json"), text);

    // A signature by another key.
    ASSERT_EQ(run("keygen --private " + p("k2.pem") + " --public " + p("p2.pem")), 0);
    EXPECT_EQ(run("verify --public " + p("p2.pem") + " --manifest " + p("rel/manifest.json")), 1);
}

TEST_F(Pack, SignRefusesInvalidManifestUnlessForced)
{
    write_file(p("bad.json"), "{\"schema\":1,\"extra\":true}");
    EXPECT_EQ(run("sign --key " + p("key.pem") + " --manifest " + p("bad.json")), 1);
    EXPECT_NE(err_text.find("unknown field"), std::string::npos) << err_text;
    EXPECT_EQ(run("sign --force --key " + p("key.pem") + " --manifest " + p("bad.json") +
                  " --out " + p("bad.sig")),
              0)
        << err_text;
    std::string sig = read_file(p("bad.sig"));
    std::string pub = read_file(p("pub.pem"));
    std::string text = read_file(p("bad.json"));
    EXPECT_EQ(ota_manifest_verify(text.data(), text.size(), sig.c_str(), pub.c_str(), nullptr), 0);
}

TEST_F(Pack, Failures)
{
    // Keys are not replaced by accident.
    EXPECT_EQ(run("keygen --private " + p("key.pem") + " --public " + p("p9.pem")), 1);
    EXPECT_EQ(run("keygen --force --private " + p("key.pem") + " --public " + p("pub.pem")), 0);
    // Format does not fit the kind.
    EXPECT_EQ(run(build_app("--format raw")), 1);
    EXPECT_NE(err_text.find("does not fit"), std::string::npos) << err_text;
    EXPECT_NE(access(p("rel").c_str(), F_OK), 0) << "output made for a refused build";
    // Not an archive.
    write_file(p("junk.tar.gz"), "junk");
    EXPECT_EQ(run("build --key " + p("key.pem") + " --payload " + p("junk.tar.gz") +
                  " --kind app --name a --version 1.0.0 --device-type t --out " + p("rel")),
              1);
    // A public key cannot sign.
    EXPECT_EQ(run("build --key " + p("pub.pem") + " --payload " + p("video-app_2.0.0.tar.gz") +
                  " --kind app --name a --version 1.0.0 --device-type t --out " + p("rel")),
              1);
    EXPECT_NE(err_text.find("private key"), std::string::npos) << err_text;
    // Unknown suffix and no --format.
    write_file(p("payload.bin"), "x");
    EXPECT_EQ(run("build --key " + p("key.pem") + " --payload " + p("payload.bin") +
                  " --kind rootfs --name a --version 1.0.0 --device-type t --out " + p("rel")),
              1);
    EXPECT_NE(err_text.find("--format"), std::string::npos) << err_text;
    // A bad name.
    EXPECT_EQ(run(build_app("--name 'a b'")), 1);
}

TEST_F(Pack, UsageErrors)
{
    EXPECT_EQ(run(""), 2);
    EXPECT_EQ(run("frobnicate"), 2);
    EXPECT_EQ(run("build --no-such-option"), 2);
    EXPECT_EQ(run("keygen --private " + p("x.pem")), 2); // --public missing
    EXPECT_EQ(run("verify --manifest m"), 2);
    EXPECT_EQ(run("sign --key k"), 2);
    EXPECT_EQ(run("sign --key k --manifest m --payload p"), 2); // not a sign option
    EXPECT_EQ(run(build_app("--kind firmware")), 2);
    EXPECT_EQ(run(build_app("--format zip")), 2);
    EXPECT_EQ(run(build_app("--version 2.0")), 2);
    EXPECT_EQ(run(build_app("--installed-size -1")), 2);
    EXPECT_EQ(run(build_app("--installed-size 12k")), 2);
    EXPECT_EQ(run(build_app("extra-argument")), 2);
    // a rollback order needs its binding, and only a rollback order has one
    EXPECT_EQ(run(build_app("--rollback")), 2);
    EXPECT_NE(err_text.find("--rollback-from"), std::string::npos) << err_text;
    EXPECT_EQ(run(build_app("--rollback --rollback-from 3.0.0")), 2);
    EXPECT_NE(err_text.find("--rollback-expires"), std::string::npos) << err_text;
    EXPECT_EQ(run(build_app("--rollback --rollback-from 3.0 --rollback-expires +1d")), 2);
    EXPECT_EQ(run(build_app("--rollback --rollback-from 3.0.0 --rollback-expires +1w")), 2);
    EXPECT_EQ(run(build_app("--rollback-from 3.0.0")), 2);
    EXPECT_EQ(run(build_app("--rollback-expires +1d")), 2);
    EXPECT_EQ(run(build_app("--device-type a --device-type b --device-type c --device-type d "
                            "--device-type e --device-type f --device-type g --device-type h")),
              2); // 9 with rpi3b
    EXPECT_EQ(run("build --key " + p("key.pem") + " --out " + p("rel")), 2);
    EXPECT_NE(access(p("rel").c_str(), F_OK), 0);
}

TEST_F(Pack, HelpDocumentsEveryOption)
{
    for (const char *args : {"--help", "-h", "help", "build --help"}) {
        ASSERT_EQ(run(args), 0) << args;
        EXPECT_EQ(err_text, "");
        for (const char *word : {"keygen",
                                 "keys",
                                 "keyid",
                                 "--keyring-version",
                                 "--add",
                                 "--revoke",
                                 "build",
                                 "sign",
                                 "verify",
                                 "--private",
                                 "--public",
                                 "--force",
                                 "--key",
                                 "--payload",
                                 "--kind",
                                 "--format",
                                 "--name",
                                 "--version",
                                 "--device-type",
                                 "--min-version",
                                 "--rollback",
                                 "--rollback-from",
                                 "--rollback-expires",
                                 "--installed-size",
                                 "--created",
                                 "--out",
                                 "--manifest",
                                 "--sig",
                                 "SOURCE_DATE_EPOCH",
                                 "Exit status"})
            EXPECT_NE(out_text.find(word), std::string::npos) << word;
    }
}
