// Unit tests for common/src/keyring.c and a manifest's "keyring" field: key
// ids, the strict JSON, the round trip, merging (revocations are for good).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
#include "ota/crypto.h"
#include "ota/keyring.h"
#include "ota/manifest.h"
}

namespace
{

const std::string kKey0(64, 'a'), kKey1(64, 'b');

const std::string kManifest =
    "{\"schema\":1,\"name\":\"video-app\",\"version\":\"2.0.0\",\"kind\":\"app\","
    "\"format\":\"deb\",\"payload\":\"p.deb\",\"size\":1,\"sha256\":\"" +
    std::string(64, '0') +
    "\",\"installed_size\":1,\"device_types\":[\"rpi3b\"],\"min_version\":\"\","
    "\"rollback\":false,\"created\":1795000000";

std::string ring(const std::string &body)
{
    return "{" + body + "}";
}

int parse(const std::string &text, ota_keyring *kr, ota_err *err)
{
    return ota_keyring_parse(text.data(), text.size(), kr, err);
}

} // namespace

// The id: the first 8 bytes of SHA-256 over the raw key, as hex (a fixed
// vector: bytes 0..31).
TEST(Keyring, KeyIdIsShortSha256OfTheRawKey)
{
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    ota_key_id(raw, id);
    EXPECT_STREQ(id, "630dcd2966c43366");
}

// A raw key back to PEM reads as the same key.
TEST(Keyring, RawKeyPemRoundTrip)
{
    uint8_t raw[OTA_ED25519_PUB_LEN], again[OTA_ED25519_PUB_LEN];
    char pem[OTA_ED25519_PEM_LEN];
    ota_err err{};
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(7 * i + 1);
    ota_ed25519_pub_pem(raw, pem);
    ASSERT_EQ(ota_ed25519_pub_raw(pem, again, &err), 0) << err.reason;
    EXPECT_EQ(memcmp(raw, again, sizeof(raw)), 0);
    EXPECT_EQ(ota_ed25519_pub_raw("not a key", again, &err), -EINVAL);
}

TEST(Keyring, ParsesAndFormatsTheSameText)
{
    std::string text = ring("\"version\":3,\"keys\":[\"" + kKey0 + "\",\"" + kKey1 +
                            "\"],\"revoked\":[\"0011223344556677\"]");
    ota_keyring kr;
    ota_err err{};
    char *out = nullptr;
    ASSERT_EQ(parse(text, &kr, &err), 0) << err.reason;
    EXPECT_EQ(kr.version, 3);
    EXPECT_EQ(kr.n_keys, 2);
    EXPECT_EQ(kr.n_revoked, 1);
    ASSERT_EQ(ota_keyring_format(&kr, &out), 0);
    EXPECT_EQ(std::string(out), text);
    free(out);
}

struct Bad {
    const char *name;
    std::string body;
    const char *reason;
};

class KeyringRefuses : public ::testing::TestWithParam<Bad>
{
};

TEST_P(KeyringRefuses, WithTheReason)
{
    ota_keyring kr;
    ota_err err{};
    EXPECT_EQ(parse(ring(GetParam().body), &kr, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find(GetParam().reason), std::string::npos) << err.reason;
}

INSTANTIATE_TEST_SUITE_P(
    Keyring, KeyringRefuses,
    ::testing::Values(
        Bad{"version_zero", "\"version\":0,\"keys\":[\"" + kKey0 + "\"],\"revoked\":[]",
            "keyring version 0"},
        Bad{"empty", "\"version\":1,\"keys\":[],\"revoked\":[]", "holds no key and revokes none"},
        Bad{"upper_hex", "\"version\":1,\"keys\":[\"" + std::string(64, 'A') + "\"],\"revoked\":[]",
            "keys[0] is not 64 lower-case hex"},
        Bad{"short_id", "\"version\":1,\"keys\":[],\"revoked\":[\"00112233\"]",
            "revoked[0] is not 16 lower-case hex"},
        Bad{"unknown", "\"version\":1,\"keys\":[],\"revoked\":[],\"x\":1", "unknown field 'x'"},
        Bad{"missing", "\"version\":1,\"keys\":[]", "missing field 'revoked'"},
        Bad{"twice", "\"version\":1,\"keys\":[\"" + kKey0 + "\",\"" + kKey0 + "\"],\"revoked\":[]",
            "listed twice"}),
    [](const ::testing::TestParamInfo<Bad> &i) { return std::string(i.param.name); });

// A key both trusted and revoked is refused.
TEST(Keyring, TrustedAndRevokedIsRefused)
{
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    ota_keyring kr;
    ota_err err{};
    ASSERT_EQ(ota_hex_decode(kKey0.c_str(), raw, sizeof(raw)), 0);
    ota_key_id(raw, id);
    EXPECT_EQ(parse(ring("\"version\":1,\"keys\":[\"" + kKey0 + "\"],\"revoked\":[\"" +
                         std::string(id) + "\"]"),
                    &kr, &err),
              -EINVAL);
    EXPECT_NE(std::string(err.reason).find("both trusted and revoked"), std::string::npos);
}

// Merging: the newer keyring's keys, both keyrings' revocations; an older or
// equal version is refused; a key revoked before cannot come back.
TEST(Keyring, MergeKeepsRevocations)
{
    ota_keyring cur, next, out;
    ota_err err{};
    ASSERT_EQ(
        parse(ring("\"version\":1,\"keys\":[\"" + kKey0 + "\"],\"revoked\":[\"0011223344556677\"]"),
              &cur, &err),
        0);
    ASSERT_EQ(parse(ring("\"version\":2,\"keys\":[\"" + kKey1 + "\"],\"revoked\":[]"), &next, &err),
              0);
    ASSERT_EQ(ota_keyring_merge(&cur, &next, &out, &err), 0) << err.reason;
    EXPECT_EQ(out.version, 2);
    EXPECT_EQ(out.n_keys, 1);
    EXPECT_TRUE(ota_keyring_is_revoked(&out, "0011223344556677"));
    EXPECT_EQ(ota_keyring_merge(&next, &cur, &out, &err), -EINVAL);
    EXPECT_EQ(ota_keyring_merge(&next, &next, &out, &err), -EINVAL);
}

// In a manifest: parsed, formatted after the other fields; refused when bad.
TEST(Keyring, ManifestCarriesIt)
{
    std::string text =
        kManifest + ",\"keyring\":{\"version\":1,\"keys\":[\"" + kKey0 + "\"],\"revoked\":[]}}";
    ota_manifest m;
    ota_err err{};
    char *out = nullptr;
    ASSERT_EQ(ota_manifest_parse(text.data(), text.size(), &m, &err), 0) << err.reason;
    EXPECT_EQ(m.keyring.version, 1);
    ASSERT_EQ(ota_manifest_format(&m, &out), 0);
    EXPECT_EQ(std::string(out), text);
    free(out);

    std::string plain = kManifest + "}";
    ASSERT_EQ(ota_manifest_parse(plain.data(), plain.size(), &m, &err), 0) << err.reason;
    EXPECT_EQ(m.keyring.version, 0);
    ASSERT_EQ(ota_manifest_format(&m, &out), 0);
    EXPECT_EQ(std::string(out), plain); // no keyring field when there is none
    free(out);

    std::string bad = kManifest + ",\"keyring\":{\"version\":1,\"keys\":[],\"revoked\":[]}}";
    EXPECT_EQ(ota_manifest_parse(bad.data(), bad.size(), &m, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("holds no key"), std::string::npos) << err.reason;
}
