// Unit tests for common/src/manifest.c: parse, format, device checks and the
// signature over the exact bytes.
#include <gtest/gtest.h>

#include "testutil.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <jansson.h>

extern "C" {
#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/manifest.h"
}

namespace
{

const std::string kSha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// Exactly what ota-pack writes (docs/protocol.md, "The release manifest").
const std::string kGood =
    "{\"schema\":1,\"name\":\"video-app\",\"version\":\"2.0.0\",\"kind\":\"app\","
    "\"format\":\"deb\",\"payload\":\"video-app_2.0.0_arm64.deb\",\"size\":123456,"
    "\"sha256\":\"" +
    kSha +
    "\",\"installed_size\":456789,\"device_types\":[\"rpi3b\"],\"min_version\":\"\","
    "\"rollback\":false,\"created\":1795000000}";

const char *const kKeys[] = {"schema",      "name",     "version", "kind",           "format",
                             "payload",     "size",     "sha256",  "installed_size", "device_types",
                             "min_version", "rollback", "created"};

int parse(const std::string &text, ota_manifest *m, ota_err *err)
{
    return ota_manifest_parse(text.data(), text.size(), m, err);
}

// kGood with one field replaced by a JSON value (or removed, if value is
// nullptr), in place so the key order stays.
std::string with_field(const char *key, const char *value_json)
{
    json_error_t jerr;
    json_t *obj = json_loads(kGood.c_str(), 0, &jerr);
    EXPECT_NE(obj, nullptr);
    if (value_json) {
        json_t *v = json_loads(value_json, JSON_DECODE_ANY, &jerr);
        EXPECT_NE(v, nullptr) << value_json;
        json_object_set_new(obj, key, v);
    } else {
        json_object_del(obj, key);
    }
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s;
    free(s);
    json_decref(obj);
    return out;
}

void expect_refused(const std::string &text, const std::string &reason_part)
{
    ota_manifest m;
    memset(&m, 0x5a, sizeof(m));
    ota_manifest before = m;
    ota_err err = {};
    EXPECT_EQ(parse(text, &m, &err), -EINVAL) << text;
    EXPECT_NE(std::string(err.reason).find(reason_part), std::string::npos)
        << "reason '" << err.reason << "' lacks '" << reason_part << "' for " << text;
    EXPECT_EQ(memcmp(&m, &before, sizeof(m)), 0) << "ret written on failure";
}

ota_manifest good()
{
    ota_manifest m;
    ota_err err = {};
    EXPECT_EQ(parse(kGood, &m, &err), 0) << err.reason;
    return m;
}

std::string format(const ota_manifest &m)
{
    char *text = nullptr;
    EXPECT_EQ(ota_manifest_format(&m, &text), 0);
    std::string out = text ? text : "";
    free(text);
    return out;
}

} // namespace

TEST(Manifest, NamesTables)
{
    EXPECT_STREQ(ota_kind_names[OTA_KIND_APP], "app");
    EXPECT_STREQ(ota_kind_names[OTA_KIND_ROOTFS], "rootfs");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_DEB], "deb");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_TARGZ], "tar.gz");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_RAW], "raw");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_GZ], "gz");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_XZ], "xz");
    EXPECT_STREQ(ota_format_names[OTA_FORMAT_ZST], "zst");
}

TEST(Manifest, ParsesTheDocumentedExample)
{
    ota_manifest m = good();
    EXPECT_EQ(m.schema, 1);
    EXPECT_STREQ(m.name, "video-app");
    EXPECT_STREQ(m.version, "2.0.0");
    EXPECT_EQ(m.kind, OTA_KIND_APP);
    EXPECT_EQ(m.format, OTA_FORMAT_DEB);
    EXPECT_STREQ(m.payload, "video-app_2.0.0_arm64.deb");
    EXPECT_EQ(m.size, 123456u);
    char hex[OTA_SHA256_HEX];
    ota_hex_encode(m.sha256, OTA_SHA256_LEN, hex);
    EXPECT_EQ(std::string(hex), kSha);
    EXPECT_EQ(m.installed_size, 456789u);
    ASSERT_EQ(m.n_device_types, 1);
    EXPECT_STREQ(m.device_types[0], "rpi3b");
    EXPECT_STREQ(m.min_version, "");
    EXPECT_EQ(m.rollback, 0);
    EXPECT_EQ(m.created, 1795000000);
}

TEST(Manifest, KeysInAnyOrderAndWhitespaceParse)
{
    // The signature covers the bytes; the parser does not insist on our order.
    std::string text = "{ \"created\": 5, \"rollback\": true, \"min_version\": \"v1.0.0\", "
                       "\"device_types\": [\"rpi3b\", \"virt\"], \"installed_size\": 10, "
                       "\"sha256\": \"" +
                       kSha +
                       "\", \"size\": 7, \"payload\": \"root.img.zst\", \"format\": \"zst\", "
                       "\"kind\": \"rootfs\", \"version\": \"v1.2.3-rc.1\", \"name\": \"rootfs\","
                       " \"rollback_from\": [\"2.0.0\"], \"rollback_expires\": 99,"
                       " \"schema\": 1 }\n";
    ota_manifest m;
    ota_err err = {};
    ASSERT_EQ(parse(text, &m, &err), 0) << err.reason;
    EXPECT_EQ(m.kind, OTA_KIND_ROOTFS);
    EXPECT_EQ(m.format, OTA_FORMAT_ZST);
    EXPECT_EQ(m.rollback, 1);
    ASSERT_EQ(m.n_device_types, 2);
    EXPECT_STREQ(m.device_types[1], "virt");
    EXPECT_STREQ(m.min_version, "v1.0.0");
    EXPECT_EQ(m.created, 5);
    EXPECT_EQ(m.rollback_expires, 99);
    ASSERT_EQ(m.n_rollback_from, 1);
    EXPECT_STREQ(m.rollback_from[0], "2.0.0");
}

TEST(Manifest, FormatParseRoundTripIsByteIdentical)
{
    EXPECT_EQ(format(good()), kGood);

    ota_manifest m = good();
    m.kind = OTA_KIND_ROOTFS;
    m.format = OTA_FORMAT_XZ;
    strcpy(m.payload, "rootfs-2.0.0.img.xz");
    strcpy(m.min_version, "1.5.0");
    m.rollback = 1;
    m.rollback_expires = m.created + 86400;
    m.n_rollback_from = 2;
    strcpy(m.rollback_from[0], "2.0.0");
    strcpy(m.rollback_from[1], "2.1.0-rc.1");
    m.n_device_types = OTA_MANIFEST_MAX_TYPES;
    for (int i = 0; i < m.n_device_types; i++)
        snprintf(m.device_types[i], sizeof(m.device_types[i]), "type-%d", i);
    m.size = 1ull << 40;
    m.installed_size = (1ull << 62) + 1;
    for (int i = 0; i < OTA_SHA256_LEN; i++)
        m.sha256[i] = static_cast<uint8_t>(255 - i);
    std::string text = format(m);

    ota_manifest back;
    ota_err err = {};
    ASSERT_EQ(parse(text, &back, &err), 0) << err.reason << "\n" << text;
    EXPECT_EQ(format(back), text);
    EXPECT_EQ(back.size, m.size);
    EXPECT_EQ(back.installed_size, m.installed_size);
    EXPECT_EQ(memcmp(back.sha256, m.sha256, OTA_SHA256_LEN), 0);
    EXPECT_EQ(back.n_device_types, OTA_MANIFEST_MAX_TYPES);
    EXPECT_STREQ(back.device_types[7], "type-7");
    EXPECT_EQ(back.rollback_expires, m.rollback_expires);
    ASSERT_EQ(back.n_rollback_from, 2);
    EXPECT_STREQ(back.rollback_from[1], "2.1.0-rc.1");
    // the binding keys come last, and only in a rollback order
    EXPECT_NE(text.find(R"("created":1795000000,"rollback_expires":1795086400,)"
                        R"("rollback_from":["2.0.0","2.1.0-rc.1"]})"),
              std::string::npos)
        << text;
    EXPECT_EQ(format(good()).find("rollback_"), std::string::npos);
    EXPECT_EQ(text.find('\n'), std::string::npos);
    EXPECT_EQ(text.rfind("{\"schema\":1,\"name\":", 0), 0u) << text;
}

TEST(Manifest, FormatRefusesWhatParseWouldRefuse)
{
    char *text = nullptr;
    ota_manifest m = good();
    m.format = OTA_FORMAT_RAW; // does not fit "app"
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    m = good();
    strcpy(m.version, "2.0");
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    m = good();
    strcpy(m.payload, "../evil");
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    m = good();
    m.n_device_types = 0;
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    m = good();
    m.kind = OTA_KIND_MAX;
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    m = good();
    m.size = UINT64_MAX;
    EXPECT_EQ(ota_manifest_format(&m, &text), -EINVAL);
    EXPECT_EQ(text, nullptr);
}

TEST(Manifest, EachMissingFieldIsRefused)
{
    for (const char *key : kKeys)
        expect_refused(with_field(key, nullptr), std::string("'") + key + "'");
}

TEST(Manifest, WrongTypesAreRefused)
{
    const std::pair<const char *, const char *> cases[] = {
        {"schema", "\"1\""},
        {"schema", "1.0"},
        {"name", "5"},
        {"version", "2"},
        {"kind", "null"},
        {"format", "[\"deb\"]"},
        {"payload", "{}"},
        {"size", "\"123\""},
        {"size", "-1"},
        {"size", "1.5"},
        {"sha256", "0"},
        {"installed_size", "true"},
        {"device_types", "\"rpi3b\""},
        {"device_types", "[1]"},
        {"device_types", "[null]"},
        {"min_version", "null"},
        {"rollback", "0"},
        {"rollback", "\"false\""},
        {"created", "\"now\""},
        {"created", "-5"},
    };
    for (const auto &[key, value] : cases)
        expect_refused(with_field(key, value), key);
}

TEST(Manifest, UnknownKeyIsRefused)
{
    std::string text = kGood.substr(0, kGood.size() - 1) + ",\"extra\":1}";
    expect_refused(text, "unknown field 'extra'");
}

TEST(Manifest, BadValuesAreRefused)
{
    expect_refused(with_field("schema", "2"), "schema");
    expect_refused(with_field("kind", "\"firmware\""), "unknown kind 'firmware'");
    expect_refused(with_field("format", "\"zip\""), "unknown format 'zip'");
    expect_refused(with_field("format", "\"TAR.GZ\""), "unknown format");
    expect_refused(with_field("version", "\"2.0\""), "version");
    expect_refused(with_field("version", "\"\""), "version");
    expect_refused(with_field("min_version", "\"latest\""), "min_version");
    expect_refused(with_field("name", "\"\""), "name");
    expect_refused(with_field("name", "\"../x\""), "name");
    expect_refused(with_field("name", "\"a b\""), "name");
    expect_refused(with_field("device_types", "[]"), "device_types");
    expect_refused(
        with_field("device_types", "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]"),
        "device_types");
    expect_refused(with_field("device_types", "[\"\"]"), "device type");
    expect_refused(with_field("device_types", "[\"rpi 3b\"]"), "device type");
    std::string long_name(64, 'a');
    expect_refused(with_field("name", ("\"" + long_name + "\"").c_str()), "name");
}

TEST(Manifest, KindFormatMismatchIsRefused)
{
    const std::pair<const char *, const char *> bad[] = {
        {"\"app\"", "\"raw\""}, {"\"app\"", "\"gz\""},     {"\"app\"", "\"xz\""},
        {"\"app\"", "\"zst\""}, {"\"rootfs\"", "\"deb\""}, {"\"rootfs\"", "\"tar.gz\""},
    };
    for (const auto &[kind, fmt] : bad) {
        std::string text = with_field("kind", kind);
        json_error_t jerr;
        json_t *obj = json_loads(text.c_str(), 0, &jerr);
        json_object_set_new(obj, "format", json_loads(fmt, JSON_DECODE_ANY, &jerr));
        char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        expect_refused(s, "does not fit kind");
        free(s);
        json_decref(obj);
    }
    // And every fitting pair parses.
    const std::pair<const char *, const char *> fit[] = {
        {"\"app\"", "\"deb\""},   {"\"app\"", "\"tar.gz\""}, {"\"rootfs\"", "\"raw\""},
        {"\"rootfs\"", "\"gz\""}, {"\"rootfs\"", "\"xz\""},  {"\"rootfs\"", "\"zst\""},
    };
    for (const auto &[kind, fmt] : fit) {
        std::string text = with_field("kind", kind);
        json_error_t jerr;
        json_t *obj = json_loads(text.c_str(), 0, &jerr);
        json_object_set_new(obj, "format", json_loads(fmt, JSON_DECODE_ANY, &jerr));
        char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        ota_manifest m;
        ota_err err = {};
        EXPECT_EQ(ota_manifest_parse(s, strlen(s), &m, &err), 0) << err.reason;
        free(s);
        json_decref(obj);
    }
}

TEST(Manifest, PayloadNameRules)
{
    for (const char *p : {"\"a/b.deb\"", "\"/abs.deb\"", "\".\"", "\"..\"", "\"\"",
                          "\"x\\u0001.deb\"", "\"x\\n.deb\"", "\"x\\u007f.deb\""})
        expect_refused(with_field("payload", p), "payload");
    // jansson itself refuses an escaped NUL.
    std::string nul = kGood;
    nul.replace(nul.find("arm64"), 5, "\\u0000");
    expect_refused(nul, "JSON");
    std::string ok = with_field("payload", "\"..deb\"");
    ota_manifest m;
    EXPECT_EQ(parse(ok, &m, nullptr), 0);
}

TEST(Manifest, BadShaIsRefused)
{
    std::string upper = kSha;
    for (auto &c : upper)
        c = static_cast<char>(toupper(c));
    expect_refused(with_field("sha256", ("\"" + upper + "\"").c_str()), "sha256");
    expect_refused(with_field("sha256", ("\"" + kSha.substr(1) + "\"").c_str()), "sha256");
    expect_refused(with_field("sha256", ("\"" + kSha + "0\"").c_str()), "sha256");
    expect_refused(with_field("sha256", ("\"" + kSha.substr(1) + "g\"").c_str()), "sha256");
    expect_refused(with_field("sha256", "\"\""), "sha256");
}

TEST(Manifest, MalformedJsonIsRefused)
{
    expect_refused("", "JSON");
    expect_refused("not json", "JSON");
    expect_refused("[1,2]", "object");
    expect_refused(kGood + "x", "JSON");
    expect_refused(kGood.substr(0, kGood.size() - 1), "JSON");
    // The length is what counts, not a NUL terminator.
    std::string with_nul = kGood;
    with_nul.push_back('\0');
    ota_manifest m;
    EXPECT_EQ(parse(with_nul, &m, nullptr), -EINVAL);
    EXPECT_EQ(ota_manifest_parse(nullptr, 0, &m, nullptr), -EINVAL);
}

TEST(Manifest, DuplicateKeysAreRefused)
{
    expect_refused("{\"schema\":1," + kGood.substr(1), "duplicate");
    std::string text = kGood.substr(0, kGood.size() - 1) + ",\"version\":\"9.9.9\"}";
    expect_refused(text, "duplicate");
}

TEST(Manifest, SizeLimit)
{
    ASSERT_EQ(OTA_MANIFEST_MAX_BYTES, 8192); // docs/protocol.md: at most 8 KiB
    std::string at_limit = kGood + std::string(OTA_MANIFEST_MAX_BYTES - kGood.size(), ' ');
    ASSERT_EQ(at_limit.size(), 8192u);
    ota_manifest m;
    ota_err err = {};
    EXPECT_EQ(parse(at_limit, &m, &err), 0) << err.reason;
    expect_refused(at_limit + " ", "8192");
}

TEST(Manifest, CheckDevice)
{
    ota_manifest m = good(); // 2.0.0 for rpi3b
    ota_err err = {};

    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.0.0", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "v1.9.9", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "2.0.0-rc.1", &err), 0) << err.reason;
    // Nothing installed yet: any version is an upgrade.
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", nullptr, &err), 0) << err.reason;

    err = {};
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi4", "1.0.0", &err), -EPERM);
    EXPECT_NE(std::string(err.reason).find("rpi4"), std::string::npos) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "RPI3B", "1.0.0", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "", "1.0.0", nullptr), -EPERM);

    // Downgrade and reinstall refused.
    err = {};
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "2.0.0", &err), -EPERM);
    EXPECT_NE(std::string(err.reason).find("not newer"), std::string::npos) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "v2.0.0", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "2.0.1", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "3.0.0", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "garbage", nullptr), -EPERM);

    // A rollback order may go anywhere.
    m.rollback = 1;
    err = {};
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "3.0.0", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "2.0.0", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.0.0", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "garbage", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi4", "3.0.0", nullptr), -EPERM);

    // min_version.
    m.rollback = 0;
    strcpy(m.min_version, "1.5.0");
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.5.0", &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.9.0", &err), 0) << err.reason;
    err = {};
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.4.9", &err), -EPERM);
    EXPECT_NE(std::string(err.reason).find("min_version"), std::string::npos) << err.reason;
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.5.0-rc.1", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "", nullptr), -EPERM);
    m.rollback = 1; // a rollback order still honours min_version
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "1.4.9", nullptr), -EPERM);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi3b", "3.0.0", nullptr), 0);

    // Several device types.
    m = good();
    m.n_device_types = 3;
    strcpy(m.device_types[1], "rpi4");
    strcpy(m.device_types[2], "virt");
    EXPECT_EQ(ota_manifest_check_device(&m, "virt", "1.0.0", nullptr), 0);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi4", "1.0.0", nullptr), 0);
    EXPECT_EQ(ota_manifest_check_device(&m, "rpi5", "1.0.0", nullptr), -EPERM);
}

class ManifestSig : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-test-manifest-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        ota_err err = {};
        ASSERT_EQ(ota_ed25519_keygen((dir + "/key.pem").c_str(), (dir + "/pub.pem").c_str(), &err),
                  0)
            << err.reason;
        pub = read_file(dir + "/pub.pem");
        sig = sign(kGood);
    }
    void TearDown() override
    {
        ota_err err = {};
        EXPECT_EQ(ota_fs_remove_tree(dir.c_str(), &err), 0) << err.reason;
    }
    std::string sign(const std::string &text)
    {
        uint8_t s[OTA_ED25519_SIG_LEN];
        char b64[89];
        ota_err err = {};
        EXPECT_EQ(ota_ed25519_sign((dir + "/key.pem").c_str(), text.data(), text.size(), s, &err),
                  0)
            << err.reason;
        ota_b64_encode(s, sizeof(s), b64);
        return b64;
    }
    int verify(const std::string &text, const std::string &s, ota_err *err = nullptr)
    {
        return ota_manifest_verify(text.data(), text.size(), s.c_str(), pub.c_str(), err);
    }
    std::string dir, pub, sig;
};

TEST_F(ManifestSig, VerifiesExactBytes)
{
    ota_err err = {};
    ASSERT_EQ(sig.size(), 88u);
    EXPECT_EQ(verify(kGood, sig, &err), 0) << err.reason;
    // A signature file with a trailing newline is still the same signature.
    EXPECT_EQ(verify(kGood, sig + "\n", &err), 0) << err.reason;
    EXPECT_EQ(verify(kGood, sig + "\r\n", &err), 0) << err.reason;
}

TEST_F(ManifestSig, RefusesTampering)
{
    // Same meaning, other bytes: still refused (no re-serialisation).
    std::string spaced = kGood;
    spaced.insert(1, " ");
    EXPECT_EQ(verify(spaced, sig), -EBADMSG);
    std::string tampered = kGood;
    tampered.replace(tampered.find("2.0.0"), 5, "9.0.0");
    ota_err err = {};
    EXPECT_EQ(verify(tampered, sig, &err), -EBADMSG);
    EXPECT_EQ(err.code, EBADMSG);
    EXPECT_EQ(verify(kGood + "\n", sig), -EBADMSG);

    // Signature damaged, short, long, not base64.
    std::string bad = sig;
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    EXPECT_EQ(verify(kGood, bad), -EBADMSG);
    EXPECT_EQ(verify(kGood, sig.substr(0, 84)), -EBADMSG);
    EXPECT_EQ(verify(kGood, sig + "AAAA"), -EBADMSG);
    EXPECT_EQ(verify(kGood, ""), -EBADMSG);
    EXPECT_EQ(verify(kGood, " " + sig), -EBADMSG);
    std::string notb64 = sig;
    notb64[3] = '!';
    EXPECT_EQ(verify(kGood, notb64), -EBADMSG);

    // A signature by another key.
    ota_err kerr = {};
    ASSERT_EQ(ota_ed25519_keygen((dir + "/k2.pem").c_str(), (dir + "/p2.pem").c_str(), &kerr), 0);
    std::string other = read_file(dir + "/p2.pem");
    EXPECT_EQ(ota_manifest_verify(kGood.data(), kGood.size(), sig.c_str(), other.c_str(), nullptr),
              -EBADMSG);
}

TEST_F(ManifestSig, UnreadableKeyOrTooLarge)
{
    EXPECT_EQ(ota_manifest_verify(kGood.data(), kGood.size(), sig.c_str(), "junk", nullptr),
              -EINVAL);
    EXPECT_EQ(ota_manifest_verify(kGood.data(), kGood.size(), sig.c_str(), nullptr, nullptr),
              -EINVAL);
    std::string big = kGood + std::string(OTA_MANIFEST_MAX_BYTES, ' ');
    EXPECT_EQ(verify(big, sign(big)), -EINVAL);
}

// A rollback order is bound (issue 15): an expiry after its creation and
// the versions it goes from, both required with rollback: true and refused
// without; a signed order without them (today's format) is refused.
TEST(Manifest, RollbackOrderNeedsItsBinding)
{
    auto with = [](const std::string &rb, const std::string &more) {
        std::string t = kGood;
        t.replace(t.find("\"rollback\":false"), 16, "\"rollback\":" + rb);
        t.insert(t.size() - 1, more);
        return t;
    };
    ota_manifest m;
    ota_err err = {};
    ASSERT_EQ(parse(with("true", R"(,"rollback_expires":1795086400,"rollback_from":["2.0.0"])"), &m,
                    &err),
              0)
        << err.reason;
    expect_refused(with("true", ""), "needs field 'rollback_expires'");
    expect_refused(with("true", R"(,"rollback_expires":1795086400)"),
                   "needs field 'rollback_from'");
    expect_refused(with("true", R"(,"rollback_expires":1795000000,"rollback_from":["2.0.0"])"),
                   "rollback_expires after created");
    expect_refused(with("true", R"(,"rollback_expires":1795086400,"rollback_from":[])"),
                   "1..8 allowed");
    expect_refused(with("true", R"(,"rollback_expires":1795086400,"rollback_from":["x"])"),
                   "bad rollback_from version");
    expect_refused(with("false", R"(,"rollback_expires":1795086400)"),
                   "'rollback_expires' without rollback: true");
    expect_refused(with("false", R"(,"rollback_from":["2.0.0"])"),
                   "'rollback_from' without rollback: true");
}

TEST(Manifest, RollbackOrderCheckedAgainstVersionAndClock)
{
    ota_manifest m = good();
    ota_err err = {};
    EXPECT_EQ(ota_manifest_check_rollback(&m, "9.9.9", 0, &err), 0); // not an order
    m.rollback = 1;
    m.rollback_expires = m.created + 3600;
    m.n_rollback_from = 2;
    strcpy(m.rollback_from[0], "3.0.0");
    strcpy(m.rollback_from[1], "3.1.0");
    EXPECT_EQ(ota_manifest_check_rollback(&m, "3.1.0", m.created + 10, &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_rollback(&m, "v3.0.0", m.created + 3600, &err), 0) << err.reason;
    EXPECT_EQ(ota_manifest_check_rollback(&m, "2.5.0", m.created + 10, &err), -OTA_E_REFUSED);
    EXPECT_NE(std::string(err.reason).find("for devices running 3.0.0 (or others), not 2.5.0"),
              std::string::npos)
        << err.reason;
    err = {};
    EXPECT_EQ(ota_manifest_check_rollback(&m, "3.0.0", m.created + 3601, &err), -OTA_E_REFUSED);
    EXPECT_NE(std::string(err.reason).find("expired at 1795003600"), std::string::npos)
        << err.reason;
    err = {};
    EXPECT_EQ(ota_manifest_check_rollback(&m, "3.0.0", 1000, &err), -OTA_E_REFUSED);
    EXPECT_NE(std::string(err.reason).find("the clock is wrong"), std::string::npos) << err.reason;
}
