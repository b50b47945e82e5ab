// The state machine through fakes: every transition, every recovery rule of
// DESIGN.md's table, resume logic, the loop breaker, reports and the outbox.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>

#include "fakes.h"
#include "ota/core.h"

namespace
{

const TestKeys &keys()
{
    static TestKeys k;
    return k;
}

std::string payload_of(size_t n, char seed = 'x')
{
    std::string p(n, '\0');
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(seed + i * 131 % 251);
    return p;
}

struct Agent {
    FakeWorld &w;
    ota_agent_config cfg{};
    ota_agent_ops ops{};
    ota_agent *a = nullptr;
    std::vector<std::pair<ota_state, ota_state>> transitions;
    ota_state stop_at = OTA_STATE_MAX; // "crash" right after entering this state
    bool stopped = false;

    explicit Agent(FakeWorld &world, bool with_health_url = false) : w(world)
    {
        ota_agent_config_defaults(&cfg);
        strcpy(cfg.server_url, "http://srv");
        strcpy(cfg.device_id, "dev-1");
        strcpy(cfg.pubkey_pem, keys().pub_pem.c_str());
        cfg.health_window_ms = 5000;
        cfg.health_interval_ms = 1000;
        cfg.checkpoint_bytes = 64 * 1024;
        cfg.checkpoint_interval_ms = 0; // the fake clock stands still during a download
        if (with_health_url)
            strcpy(cfg.health_url, "http://app/health");
        ops = w.ops();
        ops.on_transition = [](void *ctx, const ota_transition *t) {
            Agent *self = static_cast<Agent *>(ctx);
            self->transitions.emplace_back(t->from, t->to);
            if (t->to == self->stop_at)
                self->stopped = true;
        };
        ops.transition_ctx = this;
        a = ota_agent_new(&cfg, &ops);
    }
    ~Agent()
    {
        ota_agent_free(a);
    }
    void reopen()
    {
        ota_agent_free(a);
        a = ota_agent_new(&cfg, &ops);
    }

    int start()
    {
        ota_err err{};
        int r = ota_agent_start(a, &err);
        EXPECT_EQ(r, 0) << err.reason;
        return r;
    }

    // Steps until IDLE, a reboot, or the stop state; WAIT advances the clock.
    ota_step_result run()
    {
        for (int i = 0; i < 10000; i++) {
            ota_step st{};
            ota_err err{};
            if (stopped)
                return OTA_STEP_MAX;
            int r = ota_agent_step(a, &st, &err);
            EXPECT_EQ(r, 0) << err.reason;
            if (r < 0)
                return OTA_STEP_MAX;
            if (stopped)
                return OTA_STEP_MAX;
            if (st.result == OTA_STEP_IDLE || st.result == OTA_STEP_REBOOT)
                return st.result;
            if (st.result == OTA_STEP_WAIT) {
                if (st.wake_ms > w.mono)
                    w.mono = st.wake_ms;
                if (w.crash_after_restart && w.current != 0)
                    w.active = false;
            }
        }
        ADD_FAILURE() << "agent did not settle";
        return OTA_STEP_MAX;
    }

    ota_step_result update()
    {
        ota_err err{};
        if (start() < 0)
            return OTA_STEP_MAX;
        ota_step_result r = run();
        if (r != OTA_STEP_IDLE || ota_agent_last_outcome(a, nullptr) != OTA_STATUS_IN_PROGRESS)
            return r;
        EXPECT_EQ(ota_agent_check(a, 0, &err), 0) << err.reason;
        return run();
    }
};

void offer(FakeWorld &w, const std::string &version, const std::string &payload,
           const std::string &kind = "app", const std::string &device_type = "rpi3b",
           bool rollback = false, const std::string &served = "")
{
    std::string m = make_manifest(version, kind, payload, device_type, rollback);
    w.offer_json = make_offer("u-" + version, m, keys().sign(m), w.payload_url);
    w.payload = served.empty() ? payload : served;
}

std::vector<std::string> statuses(const FakeWorld &w)
{
    std::vector<std::string> out;
    for (auto &r : w.all_reports)
        out.push_back(std::string(r.state) + ":" + r.status);
    return out;
}

bool any_success(const FakeWorld &w)
{
    for (auto &r : w.all_reports)
        if (std::string(r.status) == "success")
            return true;
    return false;
}

const std::vector<ota_state> kAppPath = {
    OTA_STATE_CHECKING,  OTA_STATE_DOWNLOADING,  OTA_STATE_VERIFYING,  OTA_STATE_INSTALLING,
    OTA_STATE_SWITCHING, OTA_STATE_HEALTH_CHECK, OTA_STATE_COMMITTING, OTA_STATE_IDLE,
};

} // namespace

TEST(Core, StateNamesRoundTrip)
{
    for (int i = 0; i < OTA_STATE_MAX; i++) {
        ota_state s;
        ASSERT_EQ(ota_state_from_name(ota_state_names[i], &s), 0);
        EXPECT_EQ(s, i);
    }
    ota_state s;
    EXPECT_EQ(ota_state_from_name("NOPE", &s), -EINVAL);
}

TEST(Core, AppUpdateHappyPath)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(300000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    std::vector<ota_state> saved;
    for (auto s : w.saved_states)
        if (saved.empty() || saved.back() != s)
            saved.push_back(s);
    EXPECT_EQ(saved, kAppPath);
    EXPECT_EQ(w.current, 1);
    EXPECT_EQ(w.slot_version[1], "2.0.0");
    EXPECT_EQ(w.kv["app.version"], "2.0.0");
    EXPECT_EQ(w.kv["app.prev.version"], "1.0.0");
    EXPECT_EQ(w.slots_written, std::vector<int>{1}); // last-known-good never written
    EXPECT_EQ(w.restarts, 1);
    // success is reported once, last, after COMMITTING
    auto st = statuses(w);
    ASSERT_FALSE(st.empty());
    EXPECT_EQ(st.back(), "IDLE:success");
    EXPECT_EQ(st[st.size() - 2], "COMMITTING:in_progress");
    EXPECT_TRUE(w.outbox.empty());
    EXPECT_EQ(w.delivered.size(), w.all_reports.size());
    ASSERT_EQ(w.history.size(), 1u);
    EXPECT_STREQ(w.history[0].status, "success");
    EXPECT_FALSE(w.dl_exists);
}

// The device token goes with a download only to the configured server's
// origin (scheme, host, port; host case and default port do not matter); an
// offer naming a payload elsewhere gets it without the token. Today's agent
// sent the token to every payload URL.
TEST(Core, DeviceTokenOnlyToTheServersOrigin)
{
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"http://srv/payload", "tok-1"},    {"HTTP://SRV:80/payload?x=1", "tok-1"},
        {"http://cdn.example/payload", ""}, {"https://srv/payload", ""},
        {"http://srv:8080/payload", ""},    {"http://srv.evil/payload", ""},
        {"http://srv@evil/payload", ""},
    };
    for (const auto &c : cases) {
        FakeWorld w;
        w.payload_url = c.first;
        Agent ag(w);
        offer(w, "2.0.0", payload_of(1000));
        ASSERT_EQ(ag.update(), OTA_STEP_IDLE) << c.first;
        EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS) << c.first;
        ASSERT_FALSE(w.download_bearers.empty()) << c.first;
        for (const auto &b : w.download_bearers)
            EXPECT_EQ(b, c.second) << c.first;
        // the check-in and the reports still carry it (they go to the server)
        EXPECT_NE(std::find(w.bearers.begin(), w.bearers.end(), "tok-1"), w.bearers.end());
    }
}

TEST(Core, NothingOffered)
{
    FakeWorld w;
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_check(ag.a, nullptr), OTA_CHECK_UP_TO_DATE);
    EXPECT_TRUE(w.all_reports.empty());
}

TEST(Core, AlreadyInstalledIsUpToDate)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "1.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_check(ag.a, nullptr), OTA_CHECK_UP_TO_DATE);
    EXPECT_TRUE(w.download_offsets.empty());
}

TEST(Core, ServerUnreachableChangesNothing)
{
    FakeWorld w;
    w.server_down = true;
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_check(ag.a, nullptr), OTA_CHECK_UNREACHABLE);
    EXPECT_EQ(w.current, 0);
    EXPECT_TRUE(w.slots_written.empty());
}

TEST(Core, DryRunCheckDownloadsNothing)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag.a, &err), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 1, &err), 0);
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_check(ag.a, nullptr), OTA_CHECK_OFFERED);
    EXPECT_TRUE(w.download_offsets.empty());
    EXPECT_TRUE(w.history.empty());
}

// A dry run sends no report, not even one queued by an earlier update.
TEST(Core, DryRunCheckLeavesTheOutbox)
{
    FakeWorld w;
    ota_report rep{};
    snprintf(rep.update_id, sizeof(rep.update_id), "old-update");
    snprintf(rep.status, sizeof(rep.status), "failure");
    w.outbox.emplace_back(w.next_id++, rep);
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag.a, &err), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 1, &err), 0);
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_check(ag.a, nullptr), OTA_CHECK_OFFERED);
    EXPECT_EQ(w.outbox.size(), 1u);
    EXPECT_TRUE(w.delivered.empty());
}

struct Refusal {
    const char *name;
    std::function<void(FakeWorld &)> setup;
    const char *reason_part;
};

class Refused : public ::testing::TestWithParam<Refusal>
{
};

TEST_P(Refused, NothingInstalledAndFailureReported)
{
    FakeWorld w;
    Agent ag(w);
    GetParam().setup(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_REFUSED);
    EXPECT_NE(std::string(why).find(GetParam().reason_part), std::string::npos) << why;
    EXPECT_TRUE(w.download_offsets.empty());
    EXPECT_TRUE(w.slots_written.empty());
    EXPECT_EQ(w.current, 0);
    ASSERT_EQ(w.all_reports.size(), 1u);
    EXPECT_STREQ(w.all_reports[0].status, "failure");
    EXPECT_FALSE(any_success(w));
}

// ota-agent check is a dry run and changes nothing: a refused offer is told
// (last_check), not recorded - no history, no report. The update that meets
// it records and reports it as before.
TEST_P(Refused, DryRunTellsButRecordsNothing)
{
    FakeWorld w;
    Agent ag(w);
    GetParam().setup(w);
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag.a, &err), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 1, &err), 0);
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_REFUSED);
    EXPECT_NE(std::string(why).find(GetParam().reason_part), std::string::npos) << why;
    EXPECT_TRUE(w.history.empty());
    EXPECT_TRUE(w.all_reports.empty());
    EXPECT_TRUE(w.delivered.empty());
    ASSERT_TRUE(w.journal.has_value());
    EXPECT_EQ(w.journal->state, OTA_STATE_IDLE);
    EXPECT_STREQ(w.journal->update_id, "");

    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(w.history.size(), 1u);
    ASSERT_EQ(w.all_reports.size(), 1u);
    EXPECT_STREQ(w.all_reports[0].status, "failure");
}

INSTANTIATE_TEST_SUITE_P(
    Core, Refused,
    ::testing::Values(
        Refusal{"bad_signature",
                [](FakeWorld &w) {
                    offer(w, "2.0.0", payload_of(100));
                    // re-sign another text: the signature no longer covers the manifest
                    std::string m = make_manifest("2.0.0", "app", payload_of(100));
                    std::string other = make_manifest("2.0.1", "app", payload_of(100));
                    w.offer_json = make_offer("u", m, keys().sign(other), w.payload_url);
                },
                "signature"},
        Refusal{"wrong_device_type",
                [](FakeWorld &w) { offer(w, "2.0.0", payload_of(100), "app", "rpi4"); },
                "device type"},
        Refusal{"downgrade",
                [](FakeWorld &w) {
                    w.slot_version[0] = "3.0.0";
                    offer(w, "2.0.0", payload_of(100));
                },
                "newer"},
        Refusal{"malformed_manifest",
                [](FakeWorld &w) {
                    std::string m = "{\"schema\":1,\"version\":";
                    w.offer_json = make_offer("u", m, keys().sign(m), w.payload_url);
                },
                "JSON"},
        Refusal{"no_space",
                [](FakeWorld &w) {
                    w.dl_free = 10;
                    offer(w, "2.0.0", payload_of(100));
                },
                "space"}),
    [](const ::testing::TestParamInfo<Refusal> &i) { return std::string(i.param.name); });

TEST(Core, SignedRollbackOrderMayDowngrade)
{
    FakeWorld w;
    w.slot_version[0] = "3.0.0";
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000), "app", "rpi3b", true);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.slot_version[1], "2.0.0");
}

// A rollback order is bound (issue 15): to the version the device runs, to a
// time window, and to the version it installs - an order for the version
// already installed is "up to date", not a reinstall on every poll. Today's
// agent took any signed order, from any version, at any time, again and
// again.
TEST(Core, RollbackOrderForTheInstalledVersionIsUpToDate)
{
    FakeWorld w;
    w.slot_version[0] = "2.0.0";
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000), "app", "rpi3b", true, "3.0.0");
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_UP_TO_DATE) << why;
    EXPECT_TRUE(w.download_offsets.empty());
    EXPECT_TRUE(w.all_reports.empty());
    EXPECT_TRUE(w.history.empty());
}

struct RollbackRefusal {
    const char *name;
    const char *running;
    int64_t wall_ms;
    const char *reason_part;
};

class RollbackRefused : public ::testing::TestWithParam<RollbackRefusal>
{
};

TEST_P(RollbackRefused, NothingInstalledAndTheReasonKept)
{
    const RollbackRefusal &c = GetParam();
    FakeWorld w;
    w.slot_version[0] = c.running;
    w.wall = c.wall_ms;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000), "app", "rpi3b", true, "3.0.0");
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_REFUSED);
    EXPECT_NE(std::string(why).find(c.reason_part), std::string::npos) << why;
    EXPECT_TRUE(w.download_offsets.empty());
    EXPECT_TRUE(w.slots_written.empty());
    EXPECT_EQ(w.current, 0);
    EXPECT_EQ(w.slot_version[0], c.running);
    ASSERT_EQ(w.history.size(), 1u);
    EXPECT_STREQ(w.history[0].status, "failure");
    EXPECT_NE(std::string(w.history[0].reason).find(c.reason_part), std::string::npos);
    ASSERT_EQ(w.all_reports.size(), 1u);
    EXPECT_NE(std::string(w.all_reports[0].reason).find(c.reason_part), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Core, RollbackRefused,
    ::testing::Values(RollbackRefusal{"not_from_this_version", "4.0.0", 1795000000000,
                                      "for devices running 3.0.0, not 4.0.0"},
                      RollbackRefusal{"expired", "3.0.0", 1795086401000, "expired at 1795086400"},
                      RollbackRefusal{"clock_before_creation", "3.0.0", 1000,
                                      "the clock is wrong"}),
    [](const ::testing::TestParamInfo<RollbackRefusal> &i) { return std::string(i.param.name); });

// A release of another product signed by the same key: refused with the
// reason in the check, the report and the history; nothing downloaded, the
// running slot untouched. Today's agent installed it (the name was never read).
static void offer_named(FakeWorld &w, const std::string &name, const std::string &version,
                        const std::string &payload)
{
    std::string m = make_manifest(version, "app", payload);
    m.replace(m.find("\"video-app\""), 11, "\"" + name + "\"");
    w.offer_json = make_offer("u-" + version, m, keys().sign(m), w.payload_url);
    w.payload = payload;
}

static void expect_refused_product(FakeWorld &w, Agent &ag, const char *want)
{
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_REFUSED);
    EXPECT_NE(std::string(why).find("another product"), std::string::npos) << why;
    EXPECT_NE(std::string(why).find(want), std::string::npos) << why;
    EXPECT_TRUE(w.download_offsets.empty());
    ASSERT_FALSE(w.history.empty());
    EXPECT_STREQ(w.history.back().status, "failure");
    EXPECT_NE(std::string(w.history.back().reason).find("another product"), std::string::npos);
    ASSERT_FALSE(w.all_reports.empty());
    EXPECT_STREQ(w.all_reports.back().status, "failure");
    EXPECT_NE(std::string(w.all_reports.back().reason).find("another product"), std::string::npos);
}

TEST(Core, ConfiguredProductRefusesAnotherProduct)
{
    FakeWorld w;
    Agent ag(w);
    strcpy(ag.cfg.product, "video-app");
    ag.reopen();
    offer_named(w, "camera-app", "2.0.0", payload_of(500));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    expect_refused_product(w, ag, "'video-app' ([agent] product)");
    EXPECT_TRUE(w.slots_written.empty());
    EXPECT_EQ(w.current, 0);

    offer_named(w, "video-app", "2.0.0", payload_of(500)); // its own product installs
    ag.reopen();
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.slot_version[1], "2.0.0");
}

TEST(Core, WithoutProductSettingTheFirstInstallNamesTheProduct)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(500));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    ASSERT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.kv["app.name"], "video-app");
    int current = w.current;
    w.download_offsets.clear();

    offer_named(w, "camera-app", "3.0.0", payload_of(600));
    ag.reopen();
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    expect_refused_product(w, ag, "'video-app' (the first install)");
    EXPECT_EQ(w.current, current);
    EXPECT_EQ(w.slot_version[current], "2.0.0");
}

TEST(Core, ChecksumMismatchRetriedThenRefusedNothingInstalled)
{
    FakeWorld w;
    Agent ag(w);
    std::string good = payload_of(5000);
    std::string bad = good;
    bad[100] ^= 1;
    offer(w, "2.0.0", good, "app", "rpi3b", false, bad);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("checksum"), std::string::npos) << why;
    EXPECT_EQ(w.download_offsets.size(), (size_t)ag.cfg.max_attempts);
    EXPECT_TRUE(w.slots_written.empty());
    EXPECT_EQ(w.current, 0);
    EXPECT_FALSE(w.dl_exists);
    EXPECT_FALSE(any_success(w));
}

TEST(Core, CutDownloadResumesWithRange)
{
    FakeWorld w;
    Agent ag(w);
    std::string p = payload_of(500000);
    offer(w, "2.0.0", p);
    w.cut_after = 200000;
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    ASSERT_EQ(w.download_offsets.size(), 2u);
    EXPECT_EQ(w.download_offsets[0], 0u);
    EXPECT_EQ(w.download_offsets[1], 200000u);
}

TEST(Core, ServerIgnoringRangeRestartsFromZero)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(500000));
    w.cut_after = 200000;
    w.ignore_range = true;
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.download_offsets.size(), 2u);
}

TEST(Core, GarbageContentRangeStartsAgainFromZero)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(500000));
    w.cut_after = 200000;
    w.content_range_override = "bytes garbage";
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    ASSERT_EQ(w.download_offsets.size(), 3u);
    EXPECT_EQ(w.download_offsets[1], 200000u);
    EXPECT_EQ(w.download_offsets[2], 0u);
}

TEST(Core, LengthChangedMidwayStartsAgainFromZero)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(500000));
    w.cut_after = 200000;
    w.content_range_override = "bytes 200000-499999/600000";
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.download_offsets.back(), 0u);
}

TEST(Core, OversizedDownloadAborted)
{
    FakeWorld w;
    Agent ag(w);
    std::string p = payload_of(10000);
    offer(w, "2.0.0", p, "app", "rpi3b", false, p + "trailing junk");
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_FAILURE);
    EXPECT_TRUE(w.slots_written.empty());
}

TEST(Core, RestartInDownloadResumesFromDurablePrefix)
{
    FakeWorld w;
    Agent ag(w);
    std::string p = payload_of(1000000);
    offer(w, "2.0.0", p);
    ag.stop_at = OTA_STATE_VERIFYING; // never reached: we stop by cutting the connection
    w.cut_after = 700000;
    // Run one download attempt by hand.
    ota_err err{};
    ASSERT_EQ(ag.start(), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 0, &err), 0);
    ota_step st{};
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0); // CHECKING -> DOWNLOADING
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0); // attempt, cut at 700000
    ASSERT_EQ(st.result, OTA_STEP_WAIT);
    ASSERT_EQ(w.journal->state, OTA_STATE_DOWNLOADING);
    uint64_t durable = w.journal->durable_len;
    ASSERT_GT(durable, 0u);
    ASSERT_LE(durable, 700000u);
    w.power_cut();
    // New process.
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag2.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.download_offsets.back(), durable);
}

TEST(Core, CheckpointsAreSpacedInTime)
{
    FakeWorld w;
    Agent ag(w);
    ag.cfg.checkpoint_interval_ms = 1000;
    ag.reopen();
    offer(w, "2.0.0", payload_of(1000000));
    w.cut_after = 700000;
    ota_err err{};
    ASSERT_EQ(ag.start(), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 0, &err), 0);
    ota_step st{};
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0);
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0);
    // 700000 bytes at a standing clock: one checkpoint at 64 KiB, none after.
    EXPECT_EQ(w.journal->durable_len, 65536u);
}

TEST(Core, RestartInDownloadWithCorruptPrefixStartsFromZero)
{
    FakeWorld w;
    Agent ag(w);
    std::string p = payload_of(1000000);
    offer(w, "2.0.0", p);
    w.cut_after = 700000;
    ota_err err{};
    ASSERT_EQ(ag.start(), 0);
    ASSERT_EQ(ota_agent_check(ag.a, 0, &err), 0);
    ota_step st{};
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0);
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0);
    ASSERT_GT(w.journal->durable_len, 1000u);
    w.dl[500] ^= 0x55; // what is on disk is not what was hashed
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag2.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.download_offsets.back(), 0u);
}

// Crash right after each state was entered, restart, and check the recovery
// rule's outcome: before HEALTH_CHECK the update goes on to success; an
// interrupted HEALTH_CHECK rolls back; COMMITTING finishes.
class CrashInState : public ::testing::TestWithParam<ota_state>
{
};

TEST_P(CrashInState, RecoveryFollowsTheTable)
{
    FakeWorld w;
    ota_state s = GetParam();
    std::string p = payload_of(200000);
    offer(w, "2.0.0", p);
    {
        Agent ag(w);
        ag.stop_at = s;
        ag.update();
        ASSERT_TRUE(ag.stopped);
        ASSERT_EQ(w.journal->state, s);
    }
    w.power_cut();
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    ota_status out = ota_agent_last_outcome(ag2.a, nullptr);
    if (s == OTA_STATE_CHECKING) {
        EXPECT_EQ(out, OTA_STATUS_IN_PROGRESS); // start over: nothing had begun
        EXPECT_EQ(w.current, 0);
        return;
    }
    if (s == OTA_STATE_HEALTH_CHECK) {
        EXPECT_EQ(out, OTA_STATUS_FAILURE);
        EXPECT_EQ(w.current, 0);
        EXPECT_FALSE(any_success(w));
        EXPECT_EQ(statuses(w).back(), "IDLE:failure");
    } else {
        EXPECT_EQ(out, OTA_STATUS_SUCCESS);
        EXPECT_EQ(w.current, 1);
        EXPECT_EQ(w.slot_version[1], "2.0.0");
        EXPECT_EQ(statuses(w).back(), "IDLE:success");
    }
    for (int slot : w.slots_written)
        EXPECT_EQ(slot, 1) << "the last-known-good slot was written";
}

// The fleet runner renews one core per pass slot (ota_agent_renew) instead of
// a new one per pass: a core renewed right after a crash in any state must
// recover exactly as a new core does (same moves, reports, outcome, slot).
TEST_P(CrashInState, ARenewedCoreRecoversAsANewOne)
{
    struct Seen {
        std::vector<std::pair<ota_state, ota_state>> moves;
        std::vector<std::string> reports;
        ota_status outcome;
        ota_check_result check;
        int current;
    };
    auto run = [&](bool renew) {
        FakeWorld w;
        offer(w, "2.0.0", payload_of(200000));
        Agent ag(w);
        ag.stop_at = GetParam();
        ag.update();
        EXPECT_TRUE(ag.stopped);
        w.power_cut();
        w.all_reports.clear();
        if (renew) {
            ag.transitions.clear();
            ag.stop_at = OTA_STATE_MAX;
            ag.stopped = false;
            ota_agent_renew(ag.a, nullptr, &ag.ops); // keeps its config, as the fleet does
            EXPECT_STREQ(ota_agent_cfg(ag.a)->device_id, ag.cfg.device_id);
        } else {
            ag.reopen();
            ag.transitions.clear();
            ag.stop_at = OTA_STATE_MAX;
            ag.stopped = false;
        }
        EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_IN_PROGRESS);
        EXPECT_EQ(ota_agent_journal(ag.a)->state, OTA_STATE_IDLE); // nothing loaded yet
        ag.update();
        return Seen{ag.transitions, statuses(w), ota_agent_last_outcome(ag.a, nullptr),
                    ota_agent_last_check(ag.a, nullptr), w.current};
    };
    Seen fresh = run(false), renewed = run(true);
    EXPECT_EQ(renewed.moves, fresh.moves);
    EXPECT_EQ(renewed.reports, fresh.reports);
    EXPECT_EQ(renewed.outcome, fresh.outcome);
    EXPECT_EQ(renewed.check, fresh.check);
    EXPECT_EQ(renewed.current, fresh.current);
    EXPECT_FALSE(fresh.moves.empty());
}

// The journal's manifest is cleared and copied as text (8 KiB of which a
// manifest uses a few hundred bytes); every other byte as bytes.
TEST(Core, JournalClearAndCopyReadAsZeroedAndStructCopies)
{
    auto src = std::make_unique<ota_journal>();
    auto dst = std::make_unique<ota_journal>();
    std::memset(src.get(), 0x5a, sizeof(*src));
    src->manifest[sizeof(src->manifest) - 1] = '\0'; // a manifest of the largest size
    src->update_id[3] = '\0';
    std::memset(dst.get(), 0xa5, sizeof(*dst));
    ota_journal_copy(dst.get(), src.get());
    EXPECT_EQ(std::memcmp(dst.get(), src.get(), offsetof(ota_journal, manifest)), 0);
    EXPECT_STREQ(dst->manifest, src->manifest);
    ota_journal_clear(dst.get());
    auto zero = std::make_unique<ota_journal>();
    std::memset(zero.get(), 0, sizeof(*zero));
    EXPECT_EQ(std::memcmp(dst.get(), zero.get(), offsetof(ota_journal, manifest)), 0);
    EXPECT_STREQ(dst->manifest, "");
    EXPECT_EQ(dst->state, OTA_STATE_IDLE);
}

INSTANTIATE_TEST_SUITE_P(Core, CrashInState,
                         ::testing::Values(OTA_STATE_CHECKING, OTA_STATE_DOWNLOADING,
                                           OTA_STATE_VERIFYING, OTA_STATE_INSTALLING,
                                           OTA_STATE_SWITCHING, OTA_STATE_HEALTH_CHECK,
                                           OTA_STATE_COMMITTING),
                         [](const ::testing::TestParamInfo<ota_state> &i) {
                             return std::string(ota_state_names[i.param]);
                         });

TEST(Core, CrashInRollingBackFinishesTheRollback)
{
    FakeWorld w;
    w.crash_after_restart = true;
    offer(w, "2.0.0", payload_of(1000));
    {
        Agent ag(w);
        ag.stop_at = OTA_STATE_ROLLING_BACK;
        ag.update();
        ASSERT_TRUE(ag.stopped);
    }
    EXPECT_EQ(w.current, 1);
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag2.a, nullptr), OTA_STATUS_FAILURE);
    EXPECT_EQ(w.current, 0);
    EXPECT_FALSE(any_success(w));
}

TEST(Core, LoopBreakerGivesUpAfterMaxResumes)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000));
    {
        Agent ag(w);
        ag.stop_at = OTA_STATE_SWITCHING;
        ag.update();
    }
    // Every start "crashes" again before making progress.
    for (int i = 0; i < 5; i++) {
        Agent ag(w);
        ASSERT_EQ(ag.start(), 0);
        ASSERT_EQ(w.journal->state, OTA_STATE_SWITCHING);
    }
    Agent ag(w);
    ASSERT_EQ(ag.start(), 0);
    EXPECT_EQ(w.journal->state, OTA_STATE_ROLLING_BACK);
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("resumptions"), std::string::npos) << why;
    EXPECT_EQ(w.current, 0);
}

TEST(Core, LoopBreakerBeforeSwitchFailsWithoutRollback)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000));
    {
        Agent ag(w);
        ag.stop_at = OTA_STATE_INSTALLING;
        ag.update();
    }
    for (int i = 0; i < 5; i++) {
        Agent ag(w);
        ASSERT_EQ(ag.start(), 0);
    }
    Agent ag(w);
    ASSERT_EQ(ag.start(), 0);
    EXPECT_EQ(w.journal->state, OTA_STATE_IDLE);
    EXPECT_EQ(w.current, 0);
    EXPECT_STREQ(w.history.back().status, "failure");
}

TEST(Core, ServiceCrashAfterSwitchRollsBack)
{
    FakeWorld w;
    w.crash_after_restart = true;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("not active"), std::string::npos) << why;
    EXPECT_EQ(w.current, 0);
    EXPECT_EQ(w.restarts, 2); // new release, then the old one again
    EXPECT_FALSE(any_success(w));
    EXPECT_EQ(statuses(w).back(), "IDLE:failure");
    EXPECT_EQ(w.kv.count("app.version"), 0u);
}

TEST(Core, HealthUrlFailureRollsBack)
{
    FakeWorld w;
    w.health_status = 500;
    Agent ag(w, true);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("500"), std::string::npos) << why;
    EXPECT_EQ(w.current, 0);
}

TEST(Core, HealthStartGraceWaitsForAServiceStillStarting)
{
    FakeWorld w;
    w.health_starting = 3; // 503 for the first three probes, then healthy
    Agent ag(w, true);
    ag.cfg.health_grace_ms = 10000;
    ag.reopen();
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_SUCCESS) << why;
    EXPECT_EQ(w.current, 1);
}

TEST(Core, HealthStartGraceWithoutGraceTheFirstFailureRollsBack)
{
    FakeWorld w;
    w.health_starting = 1;
    Agent ag(w, true);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, NULL), OTA_STATUS_FAILURE);
    EXPECT_EQ(w.current, 0);
}

TEST(Core, HealthStartGraceEndsARollbackIfNeverHealthy)
{
    FakeWorld w;
    w.health_status = 500;
    Agent ag(w, true);
    ag.cfg.health_grace_ms = 8000; // longer than the 5 s window
    ag.reopen();
    offer(w, "2.0.0", payload_of(1000));
    int64_t t0 = w.mono;
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("500"), std::string::npos) << why;
    EXPECT_GE(w.mono - t0, 8000); // not committed at the end of the window
    EXPECT_EQ(w.current, 0);
    EXPECT_FALSE(any_success(w));
}

TEST(Core, HealthStartGraceDoesNotForgiveAFailureAfterHealthy)
{
    FakeWorld w;
    Agent ag(w, true);
    ag.cfg.health_grace_ms = 10000;
    ag.reopen();
    offer(w, "2.0.0", payload_of(1000));
    ag.stop_at = OTA_STATE_HEALTH_CHECK;
    ASSERT_EQ(ag.update(), OTA_STEP_MAX);
    ag.stopped = false;
    ag.stop_at = OTA_STATE_MAX;
    ota_step st{};
    ota_err err{};
    ASSERT_EQ(ota_agent_step(ag.a, &st, &err), 0) << err.reason; // the first probe: healthy
    w.health_status = 500;                                       // then not, within the grace
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, NULL), OTA_STATUS_FAILURE);
    EXPECT_EQ(w.current, 0);
}

TEST(Core, HealthWindowLastsTheConfiguredTime)
{
    FakeWorld w;
    Agent ag(w, true);
    offer(w, "2.0.0", payload_of(1000));
    int64_t t0 = w.mono;
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_GE(w.mono - t0, ag.cfg.health_window_ms);
    int probes = 0;
    for (auto &r : w.requests)
        probes += r.find("/health") != std::string::npos;
    EXPECT_GE(probes, 5);
}

TEST(Core, InstallDiskFullFailsAndKeepsActiveSlot)
{
    FakeWorld w;
    w.install_error = ENOSPC;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("install"), std::string::npos);
    EXPECT_EQ(w.current, 0);
    EXPECT_EQ(w.restarts, 0);
}

TEST(Core, RestartFailureRollsBack)
{
    FakeWorld w;
    w.restart_fails = true;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_FAILURE);
    EXPECT_EQ(w.current, 0);
}

TEST(Core, StoreFailureStopsTheStepAndChangesNothing)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.start(), 0);
    ota_err err{};
    ASSERT_EQ(ota_agent_check(ag.a, 0, &err), 0);
    w.save_fail = EIO;
    ota_step st{};
    EXPECT_LT(ota_agent_step(ag.a, &st, &err), 0);
    EXPECT_EQ(ota_agent_journal(ag.a)->state, OTA_STATE_CHECKING);
    EXPECT_EQ(w.journal->state, OTA_STATE_CHECKING);
}

TEST(Core, ReportsWaitInTheOutboxUntilTheServerAnswers)
{
    FakeWorld w;
    w.report_status = 503;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_TRUE(w.delivered.empty());
    size_t queued = w.outbox.size();
    ASSERT_GE(queued, 7u);
    // A new process, the server is back.
    w.report_status = 200;
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ota_err err{};
    EXPECT_EQ(ota_agent_flush_outbox(ag2.a, &err), (int)queued);
    EXPECT_TRUE(w.outbox.empty());
    ASSERT_EQ(w.delivered.size(), queued);
    EXPECT_STREQ(w.delivered.back().status, "success"); // in order: success last
}

TEST(Core, RejectedReportIsDroppedNotRetriedForever)
{
    FakeWorld w;
    w.report_status = 400;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_TRUE(w.outbox.empty());
}

TEST(Core, ManualRollbackGoesBackToThePreviousRelease)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000));
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    ASSERT_EQ(w.current, 1);
    Agent ag2(w);
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag2.a, &err), 0);
    ASSERT_EQ(ota_agent_rollback(ag2.a, &err), 0) << err.reason;
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    EXPECT_EQ(w.current, 0);
    EXPECT_EQ(w.kv["app.version"], "1.0.0");
    EXPECT_EQ(w.kv["app.prev.version"], "2.0.0");
    // and once more: back to 2.0.0
    Agent ag3(w);
    ASSERT_EQ(ota_agent_load(ag3.a, &err), 0);
    ASSERT_EQ(ota_agent_rollback(ag3.a, &err), 0) << err.reason;
    ASSERT_EQ(ag3.run(), OTA_STEP_IDLE);
    EXPECT_EQ(w.current, 1);
}

TEST(Core, ManualRollbackWithoutHistoryIsRefused)
{
    FakeWorld w;
    Agent ag(w);
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag.a, &err), 0);
    EXPECT_EQ(err.code, 0) << "a new store is not an error: " << err.reason;
    EXPECT_EQ(ota_agent_rollback(ag.a, &err), -ENOENT);
    EXPECT_NE(std::string(err.reason).find("no previous release"), std::string::npos) << err.reason;
    EXPECT_EQ(w.current, 0);
}

TEST(Core, ManualCommitDuringHealthCheck)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000));
    {
        Agent ag(w);
        ag.stop_at = OTA_STATE_HEALTH_CHECK;
        ag.update();
    }
    Agent ag(w);
    ota_err err{};
    ASSERT_EQ(ota_agent_load(ag.a, &err), 0);
    ASSERT_EQ(ota_agent_commit(ag.a, &err), 0) << err.reason;
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.current, 1);
}

// ---- rootfs: trial boot, bootloader fallback

static void boot(FakeWorld &w)
{
    // The bootloader model: count, fall back past bootlimit.
    if (w.env["upgrade_available"] == "1") {
        int n = std::stoi(w.env["bootcount"]) + 1;
        w.env["bootcount"] = std::to_string(n);
        if (n > std::stoi(w.env["bootlimit"])) {
            w.env["boot_part"] = w.env["boot_part"] == "A" ? "B" : "A";
            w.env["upgrade_available"] = "0";
        }
    }
    w.booted = w.env["boot_part"] == "A" ? 0 : 1;
}

TEST(Core, RootfsUpdateRebootsAndCommitsAfterTheBoot)
{
    FakeWorld w;
    std::string img = payload_of(300000);
    offer(w, "2.0.0", img, "rootfs");
    {
        Agent ag(w);
        ASSERT_EQ(ag.update(), OTA_STEP_REBOOT);
        EXPECT_EQ(w.reboots, 1);
        EXPECT_EQ(w.env["boot_part"], "B");
        EXPECT_EQ(w.env["upgrade_available"], "1");
        EXPECT_EQ(w.rootfs_image[1], img);
        EXPECT_FALSE(any_success(w)); // not before the reboot
    }
    boot(w);
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(w.env["upgrade_available"], "0");
    EXPECT_EQ(w.env["bootcount"], "0");
    EXPECT_EQ(w.env["boot_part"], "B");
    EXPECT_EQ(w.kv["rootfs.version"], "2.0.0");
    EXPECT_EQ(statuses(w).back(), "IDLE:success");
}

TEST(Core, RootfsBootFailureFallsBackAndIsReported)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    {
        Agent ag(w);
        ASSERT_EQ(ag.update(), OTA_STEP_REBOOT);
    }
    // The new rootfs never reaches userspace: U-Boot counts past bootlimit.
    for (int i = 0; i < 4; i++)
        boot(w);
    ASSERT_EQ(w.booted, 0);
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("fell back"), std::string::npos) << why;
    EXPECT_EQ(w.env["boot_part"], "A");
    EXPECT_EQ(w.env["upgrade_available"], "0");
    EXPECT_FALSE(any_success(w));
}

TEST(Core, RootfsCrashBeforeTheRebootRebootsAgain)
{
    FakeWorld w;
    w.booted_known = false; // the driver cannot tell; the env's bootcount decides
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    {
        Agent ag(w);
        ag.stop_at = OTA_STATE_REBOOTING;
        ag.update();
    }
    EXPECT_EQ(w.reboots, 0);
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_REBOOT);
    EXPECT_EQ(w.reboots, 1);
}

TEST(Core, RootfsUnhealthyAfterBootRollsBackWithAReboot)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    {
        Agent ag(w);
        ASSERT_EQ(ag.update(), OTA_STEP_REBOOT);
    }
    boot(w);
    w.active = false;
    w.crash_after_restart = true;
    {
        Agent ag(w);
        ASSERT_EQ(ag.update(), OTA_STEP_REBOOT); // rollback needs the old slot booted
        EXPECT_EQ(w.env["boot_part"], "A");
        EXPECT_EQ(w.env["upgrade_available"], "0");
    }
    boot(w);
    w.active = true;
    Agent ag(w);
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_FAILURE);
    EXPECT_FALSE(any_success(w));
}

TEST(Core, RootfsCorruptEnvAfterRebootWaitsForTheOldSlot)
{
    FakeWorld w;
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    {
        Agent ag(w);
        ASSERT_EQ(ag.update(), OTA_STEP_REBOOT);
    }
    boot(w);
    ASSERT_EQ(w.booted, 1);
    w.env_corrupt = true;
    {
        // Running the new slot, and the env cannot be read or written: the
        // agent cannot commit nor set the old slot. It stays in ROLLING_BACK
        // and says why; it never reports success.
        Agent ag(w);
        ASSERT_EQ(ag.start(), 0);
        ota_step st{};
        ota_err err{};
        EXPECT_EQ(ota_agent_step(ag.a, &st, &err), 0); // REBOOTING -> ROLLING_BACK
        EXPECT_EQ(ota_agent_step(ag.a, &st, &err), -EBADMSG);
        EXPECT_NE(std::string(err.reason).find("boot env"), std::string::npos) << err.reason;
        EXPECT_EQ(w.journal->state, OTA_STATE_ROLLING_BACK);
    }
    // U-Boot, finding a bad CRC, boots its default env: the old slot.
    w.booted = 0;
    Agent ag(w);
    ASSERT_EQ(ag.start(), 0);
    ASSERT_EQ(ag.run(), OTA_STEP_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(ag.a, nullptr), OTA_STATUS_FAILURE);
    EXPECT_FALSE(any_success(w));
}

TEST(Core, RootfsCorruptEnvRefusedBeforeDownload)
{
    FakeWorld w;
    w.env_corrupt = true;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    ASSERT_EQ(ag.update(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_check(ag.a, &why), OTA_CHECK_REFUSED);
    EXPECT_NE(std::string(why).find("CRC"), std::string::npos) << why;
    EXPECT_TRUE(w.download_offsets.empty());
    EXPECT_TRUE(w.rootfs_image.empty());
    EXPECT_TRUE(w.env_corrupt); // never rewritten
}

TEST(Core, RootfsEnvBrokenAtSwitchFinishesOnTheOldSlot)
{
    FakeWorld w;
    Agent ag(w);
    offer(w, "2.0.0", payload_of(1000), "rootfs");
    ag.stop_at = OTA_STATE_SWITCHING;
    ag.update();
    w.env_corrupt = true; // the env goes bad between the check and the switch
    Agent ag2(w);
    ASSERT_EQ(ag2.start(), 0);
    ASSERT_EQ(ag2.run(), OTA_STEP_IDLE);
    const char *why;
    EXPECT_EQ(ota_agent_last_outcome(ag2.a, &why), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(why).find("boot env"), std::string::npos) << why;
    EXPECT_EQ(w.booted, 0);
    EXPECT_FALSE(any_success(w));
}
