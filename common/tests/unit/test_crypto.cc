// Unit tests for common/src/crypto.c: SHA-256, hex, base64, Ed25519.
#include <gtest/gtest.h>

#include "testutil.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "ota/crypto.h"
#include "ota/fsutil.h"
}

namespace
{

std::string hex_of(const uint8_t *b, size_t n)
{
    std::vector<char> s(2 * n + 1);
    ota_hex_encode(b, n, s.data());
    return s.data();
}

std::string sha_hex(const std::string &data)
{
    ota_sha256 *h = ota_sha256_new();
    uint8_t d[OTA_SHA256_LEN];
    EXPECT_NE(h, nullptr);
    EXPECT_EQ(ota_sha256_update(h, data.data(), data.size()), 0);
    EXPECT_EQ(ota_sha256_final(h, d), 0);
    ota_sha256_free(h);
    return hex_of(d, sizeof(d));
}

std::vector<uint8_t> from_hex(const std::string &hex)
{
    std::vector<uint8_t> out(hex.size() / 2);
    EXPECT_EQ(ota_hex_decode(hex.c_str(), out.data(), out.size()), 0);
    return out;
}

std::string b64_of(const std::vector<uint8_t> &b)
{
    std::vector<char> s(4 * ((b.size() + 2) / 3) + 1);
    ota_b64_encode(b.data(), b.size(), s.data());
    return s.data();
}

class TempDir : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-test-crypto-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override
    {
        ota_err err = {};
        EXPECT_EQ(ota_fs_remove_tree(dir.c_str(), &err), 0) << err.reason;
    }
    std::string path(const std::string &name) const
    {
        return dir + "/" + name;
    }
    std::string dir;
};

std::vector<uint8_t> random_bytes(size_t n, unsigned seed)
{
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto &b : v)
        b = static_cast<uint8_t>(rng());
    return v;
}

} // namespace

// ---- SHA-256 ----

TEST(Sha256, KnownVectors)
{
    EXPECT_EQ(sha_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha_hex(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingInChunksEqualsOneShot)
{
    std::vector<uint8_t> data = random_bytes(100003, 1);
    std::string want = sha_hex(std::string(data.begin(), data.end()));
    ota_sha256 *h = ota_sha256_new();
    ASSERT_NE(h, nullptr);

    for (size_t chunk : {1u, 7u, 63u, 64u, 65u, 4096u, 100003u}) {
        uint8_t d[OTA_SHA256_LEN];
        ASSERT_EQ(ota_sha256_reset(h), 0);
        for (size_t off = 0; off < data.size(); off += chunk) {
            size_t n = std::min(chunk, data.size() - off);
            ASSERT_EQ(ota_sha256_update(h, data.data() + off, n), 0);
        }
        ASSERT_EQ(ota_sha256_update(h, nullptr, 0), 0); // empty update is fine
        ASSERT_EQ(ota_sha256_final(h, d), 0);
        EXPECT_EQ(hex_of(d, sizeof(d)), want) << "chunk " << chunk;
    }
    ota_sha256_free(h);
    ota_sha256_free(nullptr);
}

TEST(Sha256, ResetForgetsEarlierInput)
{
    ota_sha256 *h = ota_sha256_new();
    uint8_t d[OTA_SHA256_LEN];
    ASSERT_NE(h, nullptr);
    ASSERT_EQ(ota_sha256_update(h, "junk", 4), 0);
    ASSERT_EQ(ota_sha256_reset(h), 0);
    ASSERT_EQ(ota_sha256_update(h, "abc", 3), 0);
    ASSERT_EQ(ota_sha256_final(h, d), 0);
    EXPECT_EQ(hex_of(d, sizeof(d)),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ota_sha256_free(h);
}

// The digest is set up at the first use (crypto.c): a hasher that has seen
// nothing yet, fresh or reset, still peeks and finishes as SHA-256 of "",
// and a finished one refuses more input until reset, as OpenSSL does.
TEST(Sha256, UntouchedHasherIsTheEmptyDigestAndFinishedOneNeedsAReset)
{
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    ota_sha256 *h = ota_sha256_new();
    uint8_t d[OTA_SHA256_LEN];
    ASSERT_NE(h, nullptr);
    ASSERT_EQ(ota_sha256_peek(h, d), 0);
    EXPECT_EQ(hex_of(d, sizeof(d)), empty);
    ASSERT_EQ(ota_sha256_final(h, d), 0);
    EXPECT_EQ(hex_of(d, sizeof(d)), empty);
    EXPECT_EQ(ota_sha256_update(h, "abc", 3), -EIO);
    EXPECT_EQ(ota_sha256_final(h, d), -EIO);
    EXPECT_EQ(ota_sha256_peek(h, d), -EIO);
    ASSERT_EQ(ota_sha256_reset(h), 0);
    ASSERT_EQ(ota_sha256_peek(h, d), 0);
    EXPECT_EQ(hex_of(d, sizeof(d)), empty);
    ASSERT_EQ(ota_sha256_update(h, "abc", 3), 0);
    ASSERT_EQ(ota_sha256_peek(h, d), 0);
    EXPECT_EQ(hex_of(d, sizeof(d)),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ota_sha256_free(h);
}

TEST_F(TempDir, Sha256FileWholeAndPrefix)
{
    std::vector<uint8_t> data = random_bytes(300000, 2);
    std::string s(data.begin(), data.end());
    std::string p = path("blob");
    uint8_t d[OTA_SHA256_LEN];
    ota_err err = {};
    write_file(p, s);

    ASSERT_EQ(ota_sha256_file(p.c_str(), UINT64_MAX, d, &err), 0) << err.reason;
    EXPECT_EQ(hex_of(d, sizeof(d)), sha_hex(s));
    ASSERT_EQ(ota_sha256_file(p.c_str(), s.size(), d, &err), 0) << err.reason;
    EXPECT_EQ(hex_of(d, sizeof(d)), sha_hex(s));
    ASSERT_EQ(ota_sha256_file(p.c_str(), 70000, d, &err), 0) << err.reason;
    EXPECT_EQ(hex_of(d, sizeof(d)), sha_hex(s.substr(0, 70000)));
    ASSERT_EQ(ota_sha256_file(p.c_str(), 0, d, &err), 0) << err.reason;
    EXPECT_EQ(hex_of(d, sizeof(d)), sha_hex(""));
}

TEST_F(TempDir, FileDigestsKnownAnswers)
{
    std::string p = path("abc");
    char sha1[41], md5[33], sha256[65];
    ota_err err = {};
    write_file(p, "abc");

    ASSERT_EQ(ota_file_digests(p.c_str(), sha1, md5, sha256, &err), 0) << err.reason;
    EXPECT_STREQ(sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
    EXPECT_STREQ(md5, "900150983cd24fb0d6963f7d28e17f72");
    EXPECT_STREQ(sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(ota_file_digests(path("missing").c_str(), sha1, md5, sha256, &err), -ENOENT);
    EXPECT_NE(std::string(err.reason).find("missing"), std::string::npos) << err.reason;
}

TEST_F(TempDir, Sha256FileErrors)
{
    std::string p = path("short");
    uint8_t d[OTA_SHA256_LEN];
    uint8_t untouched[OTA_SHA256_LEN];
    ota_err err = {};
    write_file(p, "12345");
    memset(d, 0xAA, sizeof(d));
    memcpy(untouched, d, sizeof(d));

    EXPECT_EQ(ota_sha256_file(p.c_str(), 6, d, &err), -ENODATA);
    EXPECT_NE(std::string(err.reason).find("short"), std::string::npos) << err.reason;
    EXPECT_EQ(memcmp(d, untouched, sizeof(d)), 0) << "output written on failure";
    ota_err_clear(&err);
    EXPECT_EQ(ota_sha256_file(path("missing").c_str(), UINT64_MAX, d, &err), -ENOENT);
    EXPECT_EQ(err.code, ENOENT);
    EXPECT_EQ(ota_sha256_file(path("missing").c_str(), UINT64_MAX, d, nullptr), -ENOENT);
    // A directory cannot be read: an I/O failure, not a hash.
    EXPECT_EQ(ota_sha256_file(dir.c_str(), UINT64_MAX, d, nullptr), -EIO);
}

// ---- hex ----

TEST(Hex, EncodeDecodeRoundTrip)
{
    const uint8_t b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char s[2 * sizeof(b) + 1];
    uint8_t back[sizeof(b)];

    ota_hex_encode(b, sizeof(b), s);
    EXPECT_STREQ(s, "00017f80abff");
    ASSERT_EQ(ota_hex_decode(s, back, sizeof(back)), 0);
    EXPECT_EQ(memcmp(b, back, sizeof(b)), 0);
    ASSERT_EQ(ota_hex_decode("00017F80ABFF", back, sizeof(back)), 0);
    EXPECT_EQ(memcmp(b, back, sizeof(b)), 0);

    ota_hex_encode(b, 0, s);
    EXPECT_STREQ(s, "");
    EXPECT_EQ(ota_hex_decode("", back, 0), 0);
}

TEST(Hex, BadInput)
{
    uint8_t out[3] = {1, 2, 3};

    EXPECT_EQ(ota_hex_decode("0011", out, 3), -EINVAL);     // too short
    EXPECT_EQ(ota_hex_decode("00112233", out, 3), -EINVAL); // too long
    EXPECT_EQ(ota_hex_decode("00112", out, 3), -EINVAL);    // odd
    EXPECT_EQ(ota_hex_decode("0011zz", out, 3), -EINVAL);   // not hex
    EXPECT_EQ(ota_hex_decode("00 122", out, 3), -EINVAL);
    EXPECT_EQ(ota_hex_decode("-01122", out, 3), -EINVAL);
    EXPECT_EQ(ota_hex_decode(nullptr, out, 3), -EINVAL);
    EXPECT_EQ(out[0], 1); // untouched on failure
    EXPECT_EQ(out[1], 2);
    EXPECT_EQ(out[2], 3);
}

// ---- base64 ----

TEST(Base64, Rfc4648Vectors)
{
    const std::pair<std::string, std::string> v[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (const auto &[plain, enc] : v) {
        std::vector<uint8_t> b(plain.begin(), plain.end());
        EXPECT_EQ(b64_of(b), enc);
        std::vector<uint8_t> out(plain.size() + 1);
        size_t n = 99;
        ASSERT_EQ(ota_b64_decode(enc.c_str(), out.data(), out.size(), &n), 0) << enc;
        EXPECT_EQ(n, plain.size());
        EXPECT_EQ(std::string(out.begin(), out.begin() + n), plain);
    }
}

TEST(Base64, RoundTripAllLengths)
{
    for (size_t len = 0; len < 100; len++) {
        std::vector<uint8_t> b = random_bytes(len, static_cast<unsigned>(len));
        std::string enc = b64_of(b);
        EXPECT_EQ(enc.size(), 4 * ((len + 2) / 3));
        std::vector<uint8_t> out(len);
        size_t n = 0;
        ASSERT_EQ(ota_b64_decode(enc.c_str(), out.data(), out.size(), &n), 0) << enc;
        ASSERT_EQ(n, len);
        EXPECT_EQ(out, b);
    }
}

TEST(Base64, BadInput)
{
    uint8_t out[16] = {0};
    size_t n = 77;
    const char *bad[] = {
        "Zg=",      // length not a multiple of 4
        "Zg",       // unpadded
        "Zm9v\n",   // whitespace
        "Zm 9",     // whitespace
        "Zg=a",     // data after padding
        "Z===",     // too much padding
        "====",     // padding only
        "Zm=v",     // padding in the middle
        "Zh==",     // non-canonical: unused bits set
        "Zm9=",     // non-canonical
        "Zm9v-_==", // URL-safe alphabet is not ours
        "Zm9v*abc",
    };
    for (const char *s : bad) {
        EXPECT_EQ(ota_b64_decode(s, out, sizeof(out), &n), -EINVAL) << s;
        EXPECT_EQ(n, 77u) << s;
    }
    EXPECT_EQ(ota_b64_decode(nullptr, out, sizeof(out), &n), -EINVAL);
    // Too long for the buffer.
    EXPECT_EQ(ota_b64_decode("Zm9vYmFy", out, 5, &n), -ENOSPC);
    EXPECT_EQ(ota_b64_decode("Zm9vYmFy", out, 6, &n), 0);
    EXPECT_EQ(n, 6u);
}

// ---- Ed25519 ----

// RFC 8032, section 7.1, TEST 1 (empty message), as PEM files in the
// standard wrappings (PKCS#8 and SubjectPublicKeyInfo DER prefixes).
static const char rfc_secret[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_public[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc_sig[] = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8"
                              "821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

static std::string pem(const char *label, const std::string &der_hex)
{
    return std::string("-----BEGIN ") + label + "-----\n" + b64_of(from_hex(der_hex)) +
           "\n-----END " + label + "-----\n";
}

TEST_F(TempDir, Ed25519Rfc8032Vector)
{
    std::string priv = path("rfc.pem");
    std::string pub_pem = pem("PUBLIC KEY", std::string("302a300506032b6570032100") + rfc_public);
    write_file(priv,
               pem("PRIVATE KEY", std::string("302e020100300506032b657004220420") + rfc_secret));
    uint8_t sig[OTA_ED25519_SIG_LEN];
    ota_err err = {};

    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), "", 0, sig, &err), 0) << err.reason;
    EXPECT_EQ(hex_of(sig, sizeof(sig)), rfc_sig); // Ed25519 is deterministic
    EXPECT_EQ(ota_ed25519_verify(pub_pem.c_str(), "", 0, sig, &err), 0) << err.reason;
    EXPECT_EQ(ota_ed25519_verify(pub_pem.c_str(), "x", 1, sig, &err), -EBADMSG);
}

// The plain Ed25519 PEM is read without OpenSSL's decoder; the other forms
// still go through it and give the same answers.
TEST_F(TempDir, Ed25519PublicKeyForms)
{
    std::string priv = path("rfc.pem");
    std::string der = std::string("302a300506032b6570032100") + rfc_public;
    std::string b64 = b64_of(from_hex(der));
    write_file(priv,
               pem("PRIVATE KEY", std::string("302e020100300506032b657004220420") + rfc_secret));
    uint8_t sig[OTA_ED25519_SIG_LEN];
    ota_err err = {};
    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), "", 0, sig, &err), 0) << err.reason;

    // CRLF, leading blank lines, the base64 split over lines, trailing space
    std::string crlf = "\r\n\n-----BEGIN PUBLIC KEY-----\r\n" + b64.substr(0, 30) + "\r\n" +
                       b64.substr(30) + "\r\n-----END PUBLIC KEY-----\r\n  \n";
    EXPECT_EQ(ota_ed25519_verify(crlf.c_str(), "", 0, sig, &err), 0) << err.reason;
    EXPECT_EQ(ota_ed25519_verify(crlf.c_str(), "x", 1, sig, &err), -EBADMSG);
    // text before the block, or a second block: the general reader
    std::string lead = "key of the fleet\n" + pem("PUBLIC KEY", der);
    EXPECT_EQ(ota_ed25519_verify(lead.c_str(), "", 0, sig, &err), 0) << err.reason;
    std::string two = pem("PUBLIC KEY", der) + pem("PUBLIC KEY", der);
    EXPECT_EQ(ota_ed25519_verify(two.c_str(), "", 0, sig, &err), 0) << err.reason;
    // X25519's OID (1.3.101.110) in the same frame: not an Ed25519 key
    std::string x = pem("PUBLIC KEY", std::string("302a300506032b656e032100") + rfc_public);
    err = {};
    EXPECT_EQ(ota_ed25519_verify(x.c_str(), "", 0, sig, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("not an Ed25519 key"), std::string::npos) << err.reason;
    // a key cut short, and bad base64
    std::string cut = pem("PUBLIC KEY", der.substr(0, der.size() - 2));
    EXPECT_EQ(ota_ed25519_verify(cut.c_str(), "", 0, sig, nullptr), -EINVAL);
    std::string junk = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
    EXPECT_EQ(ota_ed25519_verify(junk.c_str(), "", 0, sig, nullptr), -EINVAL);
}

TEST_F(TempDir, Ed25519KeygenSignVerify)
{
    std::string priv = path("key.pem"), pub = path("pub.pem");
    std::string msg = "{\"schema\":1,\"name\":\"video-app\"}";
    uint8_t sig[OTA_ED25519_SIG_LEN], sig2[OTA_ED25519_SIG_LEN];
    struct stat st;
    ota_err err = {};

    ASSERT_EQ(ota_ed25519_keygen(priv.c_str(), pub.c_str(), &err), 0) << err.reason;
    std::string priv_text = read_file(priv), pub_text = read_file(pub);
    EXPECT_EQ(priv_text.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << priv_text;
    EXPECT_EQ(pub_text.rfind("-----BEGIN PUBLIC KEY-----\n", 0), 0u) << pub_text;
    ASSERT_EQ(stat(priv.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(stat(pub.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);

    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), msg.data(), msg.size(), sig, &err), 0) << err.reason;
    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), msg.data(), msg.size(), sig2, &err), 0);
    EXPECT_EQ(memcmp(sig, sig2, sizeof(sig)), 0);
    EXPECT_EQ(ota_ed25519_verify(pub_text.c_str(), msg.data(), msg.size(), sig, &err), 0)
        << err.reason;

    // A flipped bit anywhere in the message.
    for (size_t i = 0; i < msg.size(); i++) {
        std::string bad = msg;
        bad[i] ^= 0x01;
        EXPECT_EQ(ota_ed25519_verify(pub_text.c_str(), bad.data(), bad.size(), sig, nullptr),
                  -EBADMSG)
            << i;
    }
    // Truncated or extended message.
    EXPECT_EQ(ota_ed25519_verify(pub_text.c_str(), msg.data(), msg.size() - 1, sig, nullptr),
              -EBADMSG);
    std::string longer = msg + " ";
    EXPECT_EQ(ota_ed25519_verify(pub_text.c_str(), longer.data(), longer.size(), sig, nullptr),
              -EBADMSG);
    // A flipped bit anywhere in the signature.
    for (size_t i = 0; i < sizeof(sig); i++) {
        uint8_t bad[OTA_ED25519_SIG_LEN];
        memcpy(bad, sig, sizeof(bad));
        bad[i] ^= 0x80;
        err = {};
        EXPECT_EQ(ota_ed25519_verify(pub_text.c_str(), msg.data(), msg.size(), bad, &err), -EBADMSG)
            << i;
        EXPECT_EQ(err.code, EBADMSG);
    }
    // Another key.
    std::string priv2 = path("key2.pem"), pub2 = path("pub2.pem");
    ASSERT_EQ(ota_ed25519_keygen(priv2.c_str(), pub2.c_str(), &err), 0) << err.reason;
    std::string pub2_text = read_file(pub2);
    EXPECT_NE(pub2_text, pub_text);
    EXPECT_EQ(ota_ed25519_verify(pub2_text.c_str(), msg.data(), msg.size(), sig, nullptr),
              -EBADMSG);
}

TEST_F(TempDir, Ed25519KeyErrors)
{
    std::string priv = path("key.pem"), pub = path("pub.pem");
    uint8_t sig[OTA_ED25519_SIG_LEN];
    ota_err err = {};

    ASSERT_EQ(ota_ed25519_keygen(priv.c_str(), pub.c_str(), &err), 0) << err.reason;
    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), "m", 1, sig, &err), 0) << err.reason;

    // Unreadable public keys are -EINVAL, not "bad signature".
    err = {};
    EXPECT_EQ(ota_ed25519_verify("not a key", "m", 1, sig, &err), -EINVAL);
    EXPECT_EQ(err.code, EINVAL);
    EXPECT_EQ(ota_ed25519_verify("", "m", 1, sig, nullptr), -EINVAL);
    EXPECT_EQ(ota_ed25519_verify(read_file(priv).c_str(), "m", 1, sig, nullptr), -EINVAL);
    EXPECT_EQ(ota_ed25519_verify(nullptr, "m", 1, sig, nullptr), -EINVAL);

    // Signing: missing key file, a public key, garbage.
    uint8_t untouched[OTA_ED25519_SIG_LEN];
    memset(sig, 0x55, sizeof(sig));
    memcpy(untouched, sig, sizeof(sig));
    err = {};
    EXPECT_EQ(ota_ed25519_sign(path("missing.pem").c_str(), "m", 1, sig, &err), -ENOENT);
    EXPECT_EQ(ota_ed25519_sign(pub.c_str(), "m", 1, sig, nullptr), -EINVAL);
    write_file(path("junk.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    EXPECT_EQ(ota_ed25519_sign(path("junk.pem").c_str(), "m", 1, sig, nullptr), -EINVAL);
    EXPECT_EQ(memcmp(sig, untouched, sizeof(sig)), 0);

    // Keygen into a directory that does not exist.
    EXPECT_LT(ota_ed25519_keygen(path("no/such/key.pem").c_str(), pub.c_str(), nullptr), 0);
}

TEST_F(TempDir, Ed25519ReadsOpensslCliKeys)
{
    // Interoperability with the keys `openssl genpkey` writes, when the tool
    // is installed (it is not a build dependency).
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "openssl CLI not installed";
    std::string priv = path("cli.pem"), pub = path("cli.pub");
    std::string cmd = "openssl genpkey -algorithm ed25519 -out " + priv +
                      " 2>/dev/null && openssl pkey -in " + priv + " -pubout -out " + pub +
                      " 2>/dev/null";
    ASSERT_EQ(system(cmd.c_str()), 0);
    uint8_t sig[OTA_ED25519_SIG_LEN];
    ota_err err = {};
    ASSERT_EQ(ota_ed25519_sign(priv.c_str(), "hello", 5, sig, &err), 0) << err.reason;
    EXPECT_EQ(ota_ed25519_verify(read_file(pub).c_str(), "hello", 5, sig, &err), 0) << err.reason;
}
