// Release keys through the fakes (DESIGN.md, "Release keys"): several trusted
// keys, a key-rotation release that adds and revokes keys, no replay of an
// older rotation, a release signed by a revoked key refused before any
// download with the reason in the check, the history and the report.
#include <gtest/gtest.h>

#include <cstring>

#include "fakes.h"
#include "ota/core.h"
#include "ota/crypto.h"

namespace
{

// Three key pairs: "old" (the config's), "new" and "other".
const TestKeys &key(int i)
{
    static TestKeys k[3];
    return k[i];
}
const TestKeys &old_key()
{
    return key(0);
}
const TestKeys &new_key()
{
    return key(1);
}
const TestKeys &other_key()
{
    return key(2);
}

std::string raw_hex(const TestKeys &k)
{
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char hex[2 * OTA_ED25519_PUB_LEN + 1];
    ota_err err{};
    if (ota_ed25519_pub_raw(k.pub_pem.c_str(), raw, &err) < 0)
        throw std::runtime_error(err.reason);
    ota_hex_encode(raw, sizeof(raw), hex);
    return hex;
}

std::string id_of(const TestKeys &k)
{
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    ota_err err{};
    if (ota_ed25519_pub_raw(k.pub_pem.c_str(), raw, &err) < 0)
        throw std::runtime_error(err.reason);
    ota_key_id(raw, id);
    return id;
}

std::string quoted_list(const std::vector<std::string> &v)
{
    std::string s = "[";
    for (size_t i = 0; i < v.size(); i++)
        s += (i ? ",\"" : "\"") + v[i] + "\"";
    return s + "]";
}

// A manifest of version carrying keyring {version, keys, revoked}.
std::string rotation(const std::string &version, const std::string &payload, int ring,
                     const std::vector<std::string> &keys, const std::vector<std::string> &revoked)
{
    std::string m = make_manifest(version, "app", payload);
    m.pop_back();
    return m + ",\"keyring\":{\"version\":" + std::to_string(ring) +
           ",\"keys\":" + quoted_list(keys) + ",\"revoked\":" + quoted_list(revoked) + "}}";
}

std::string payload_of(size_t n)
{
    return std::string(n, 'k');
}

struct KeyAgent {
    FakeWorld w;
    ota_agent_config cfg{};
    ota_agent_ops ops{};
    ota_agent *a = nullptr;

    explicit KeyAgent(const std::string &pubkey_pem = old_key().pub_pem)
    {
        ota_agent_config_defaults(&cfg);
        strcpy(cfg.server_url, "http://srv");
        strcpy(cfg.device_id, "dev-1");
        strcpy(cfg.pubkey_pem, pubkey_pem.c_str());
        cfg.health_window_ms = 2000;
        cfg.checkpoint_interval_ms = 0;
        ops = w.ops();
    }
    ~KeyAgent()
    {
        ota_agent_free(a);
    }

    // Offers manifest m signed by k.
    void offer(const std::string &m, const TestKeys &k, const std::string &payload)
    {
        w.offer_json =
            make_offer("u-" + std::to_string(w.history.size()), m, k.sign(m), w.payload_url);
        w.payload = payload;
    }

    // One pass in a new process: start, check, run until IDLE.
    void update(int dry_run = 0)
    {
        ota_agent_free(a);
        a = ota_agent_new(&cfg, &ops);
        ota_err err{};
        ASSERT_EQ(ota_agent_start(a, &err), 0) << err.reason;
        ASSERT_EQ(ota_agent_check(a, dry_run, &err), 0) << err.reason;
        for (int i = 0; i < 10000; i++) {
            ota_step st{};
            ASSERT_EQ(ota_agent_step(a, &st, &err), 0) << err.reason;
            if (st.result == OTA_STEP_IDLE)
                return;
            ASSERT_NE(st.result, OTA_STEP_REBOOT);
            if (st.result == OTA_STEP_WAIT && st.wake_ms > w.mono)
                w.mono = st.wake_ms;
        }
        FAIL() << "agent did not settle";
    }

    std::string check_reason(ota_check_result want)
    {
        const char *why = "";
        EXPECT_EQ(ota_agent_last_check(a, &why), want) << why;
        return why;
    }

    void expect_installed(const std::string &version)
    {
        EXPECT_EQ(ota_agent_last_outcome(a, nullptr), OTA_STATUS_SUCCESS);
        EXPECT_EQ(w.slot_version[w.current], version);
    }

    // Refused with `reason` before any download: check, history, report;
    // the running slot untouched.
    void expect_refused(const std::string &reason)
    {
        size_t downloads = w.download_offsets.size();
        int current = w.current;
        std::string running = w.slot_version[current];
        update();
        EXPECT_NE(check_reason(OTA_CHECK_REFUSED).find(reason), std::string::npos);
        EXPECT_EQ(w.download_offsets.size(), downloads);
        EXPECT_EQ(w.current, current);
        EXPECT_EQ(w.slot_version[current], running);
        ASSERT_FALSE(w.history.empty());
        EXPECT_STREQ(w.history.back().status, "failure");
        EXPECT_NE(std::string(w.history.back().reason).find(reason), std::string::npos)
            << w.history.back().reason;
        ASSERT_FALSE(w.all_reports.empty());
        EXPECT_STREQ(w.all_reports.back().status, "failure");
        EXPECT_NE(std::string(w.all_reports.back().reason).find(reason), std::string::npos)
            << w.all_reports.back().reason;
    }
};

} // namespace

// [agent] public_key naming several files: their PEM texts one after the
// other. A release signed by any of them installs; by another key, refused
// with the ids of the trusted ones. Today's agent read the first key only.
TEST(CoreKeys, ConfigWithSeveralKeysTrustsEach)
{
    KeyAgent k(old_key().pub_pem + new_key().pub_pem);
    std::string p2 = payload_of(3000), p3 = payload_of(4000);

    k.offer(make_manifest("2.0.0", "app", p2), new_key(), p2);
    k.update();
    k.expect_installed("2.0.0");
    k.offer(make_manifest("3.0.0", "app", p3), old_key(), p3);
    k.update();
    k.expect_installed("3.0.0");
    k.offer(make_manifest("4.0.0", "app", p3), other_key(), p3);
    k.expect_refused("the signature does not verify with any trusted key (" + id_of(old_key()) +
                     ", " + id_of(new_key()) + ")");
}

// The operator's procedure: a rotation signed by the old key adds the new
// one; releases signed by the new key install; a rotation signed by the new
// key revokes the old one; a release signed by the old key is then refused
// before any download.
TEST(CoreKeys, RotationAddsThenRevokes)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 1, {raw_hex(new_key())}, {}), old_key(), p);
    k.update();
    k.expect_installed("2.0.0");
    ASSERT_EQ(k.w.kv.count("keys.ring"), 1u);

    k.offer(make_manifest("3.0.0", "app", p), new_key(), p);
    k.update();
    k.expect_installed("3.0.0");

    k.offer(rotation("4.0.0", p, 2, {raw_hex(new_key())}, {id_of(old_key())}), new_key(), p);
    k.update();
    k.expect_installed("4.0.0");

    k.offer(make_manifest("5.0.0", "app", p), old_key(), p);
    k.expect_refused("signed by revoked key " + id_of(old_key()));
    EXPECT_EQ(k.w.slot_version[k.w.current], "4.0.0");
}

// A rotation that revokes the very key that signs it is taken; the keyring
// version only goes up: an older rotation (a replay, here signed by a key
// still trusted) neither un-revokes nor replaces anything.
TEST(CoreKeys, OlderRotationIsNotTaken)
{
    KeyAgent k(old_key().pub_pem + other_key().pub_pem);
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 5, {raw_hex(new_key())}, {id_of(old_key())}), old_key(), p);
    k.update();
    k.expect_installed("2.0.0");
    std::string ring = k.w.kv["keys.ring"];

    k.offer(rotation("3.0.0", p, 4, {raw_hex(old_key())}, {}), other_key(), p);
    k.update();
    k.expect_installed("3.0.0"); // the release itself is fine
    EXPECT_EQ(k.w.kv["keys.ring"], ring);

    k.offer(make_manifest("4.0.0", "app", p), old_key(), p);
    k.expect_refused("signed by revoked key " + id_of(old_key()));
}

// A later rotation that leaves a revoked id out does not un-revoke it.
TEST(CoreKeys, RevocationsAreForGood)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 1, {raw_hex(new_key())}, {id_of(old_key())}), old_key(), p);
    k.update();
    k.expect_installed("2.0.0");
    k.offer(rotation("3.0.0", p, 2, {raw_hex(new_key()), raw_hex(other_key())}, {}), new_key(), p);
    k.update();
    k.expect_installed("3.0.0");
    k.offer(make_manifest("4.0.0", "app", p), old_key(), p);
    k.expect_refused("signed by revoked key " + id_of(old_key()));
    k.offer(make_manifest("4.0.0", "app", p), other_key(), p);
    k.update();
    k.expect_installed("4.0.0");
}

// A rotation signed by a key the device does not trust changes nothing.
TEST(CoreKeys, RotationByUntrustedKeyIsRefused)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 1, {raw_hex(other_key())}, {id_of(old_key())}), other_key(), p);
    k.expect_refused("the signature does not verify");
    EXPECT_EQ(k.w.kv.count("keys.ring"), 0u);
}

// A rotation that would leave no trusted key is refused, nothing stored.
TEST(CoreKeys, RotationLeavingNoTrustedKeyIsRefused)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 1, {}, {id_of(old_key())}), old_key(), p);
    k.expect_refused("key rotation to keyring 1: it would leave no trusted key");
    EXPECT_EQ(k.w.kv.count("keys.ring"), 0u);
}

// A damaged stored keyring: every release refused with the reason (its
// revocations are not known, so the config's keys are not trusted instead).
TEST(CoreKeys, DamagedKeyringRefusesEveryRelease)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.w.kv["keys.ring"] = "{\"version\":1,\"keys\":[\"zz\"]";
    k.offer(make_manifest("2.0.0", "app", p), old_key(), p);
    k.expect_refused("the stored keyring is damaged");
}

// ota-agent check (a dry run) only looks: the rotation is not stored.
TEST(CoreKeys, DryRunStoresNoKeyring)
{
    KeyAgent k;
    std::string p = payload_of(3000);

    k.offer(rotation("2.0.0", p, 1, {raw_hex(new_key())}, {}), old_key(), p);
    k.update(1);
    k.check_reason(OTA_CHECK_OFFERED);
    EXPECT_EQ(k.w.kv.count("keys.ring"), 0u);
}

// What `ota-agent status` shows: the keyring's version, the trusted and the
// revoked ids; a damaged keyring says so.
TEST(CoreKeys, AgentKeysTellsTheTrustedAndRevoked)
{
    KeyAgent k;
    std::string p = payload_of(3000);
    char trusted[256], revoked[256];
    int64_t ring = -1;
    ota_err err{};

    k.a = ota_agent_new(&k.cfg, &k.ops);
    ASSERT_EQ(ota_agent_keys(k.a, &ring, trusted, sizeof(trusted), revoked, sizeof(revoked), &err),
              0)
        << err.reason;
    EXPECT_EQ(ring, 0);
    EXPECT_EQ(std::string(trusted), id_of(old_key()));
    EXPECT_EQ(std::string(revoked), "");

    k.offer(rotation("2.0.0", p, 3, {raw_hex(new_key())}, {id_of(old_key())}), old_key(), p);
    k.update();
    k.expect_installed("2.0.0");
    ASSERT_EQ(ota_agent_keys(k.a, &ring, trusted, sizeof(trusted), revoked, sizeof(revoked), &err),
              0)
        << err.reason;
    EXPECT_EQ(ring, 3);
    EXPECT_EQ(std::string(trusted), id_of(new_key()));
    EXPECT_EQ(std::string(revoked), id_of(old_key()));

    k.w.kv["keys.ring"] = "not json";
    EXPECT_EQ(ota_agent_keys(k.a, &ring, trusted, sizeof(trusted), revoked, sizeof(revoked), &err),
              -EPERM);
    EXPECT_NE(std::string(err.reason).find("the stored keyring is damaged"), std::string::npos);
}
