// STANDBY (blue-green) through the fakes: an offer that asks to wait installs
// and waits; the wait survives power cuts; the server's "activate" goes on to
// SWITCHING and the commit; "abandon", the offer's not_after_ms and the
// configured maximum wait end it with the running slot untouched.
#include <gtest/gtest.h>

#include <cstring>
#include <jansson.h>

#include "fakes.h"
#include "ota/core.h"

namespace
{

const TestKeys &keys()
{
    static TestKeys k;
    return k;
}

const int64_t kHour = 3600 * 1000;

struct Standby {
    FakeWorld w;
    ota_agent_config cfg{};
    ota_agent_ops ops{};
    ota_agent *a = nullptr;
    std::string payload = std::string(20000, 'p');

    Standby()
    {
        ota_agent_config_defaults(&cfg);
        strcpy(cfg.server_url, "http://srv");
        strcpy(cfg.device_id, "dev-1");
        strcpy(cfg.pubkey_pem, keys().pub_pem.c_str());
        cfg.health_window_ms = 2000;
        cfg.checkpoint_interval_ms = 0;
        ops = w.ops();
    }
    ~Standby()
    {
        ota_agent_free(a);
    }

    // A blue-green offer of 2.0.0: "activation": {"mode": "wait", ...}.
    void offer(int64_t not_after_ms = 0)
    {
        std::string m = make_manifest("2.0.0", "app", payload);
        json_t *o =
            json_loads(make_offer("u-2", m, keys().sign(m), w.payload_url).c_str(), 0, nullptr);
        json_t *act = json_pack("{s:s}", "mode", "wait");
        if (not_after_ms)
            json_object_set_new(act, "not_after_ms", json_integer(not_after_ms));
        json_object_set_new(json_object_get(o, "update"), "activation", act);
        char *s = json_dumps(o, JSON_COMPACT);
        w.offer_json = s;
        free(s);
        json_decref(o);
        w.payload = payload;
    }

    // A new process (after a power cut or reboot): start and one pass.
    ota_step_result boot_pass()
    {
        ota_agent_free(a);
        a = ota_agent_new(&cfg, &ops);
        ota_err err{};
        EXPECT_EQ(ota_agent_start(a, &err), 0) << err.reason;
        ota_step_result r = run();
        if (r == OTA_STEP_IDLE && state() == OTA_STATE_IDLE &&
            ota_agent_last_outcome(a, nullptr) == OTA_STATUS_IN_PROGRESS) {
            EXPECT_EQ(ota_agent_check(a, 0, &err), 0) << err.reason;
            r = run();
        }
        return r;
    }

    ota_step_result run()
    {
        for (int i = 0; i < 10000; i++) {
            ota_step st{};
            ota_err err{};
            int r = ota_agent_step(a, &st, &err);
            EXPECT_EQ(r, 0) << err.reason;
            if (r < 0)
                return OTA_STEP_MAX;
            if (st.result == OTA_STEP_IDLE || st.result == OTA_STEP_REBOOT)
                return st.result;
            if (st.result == OTA_STEP_WAIT && st.wake_ms > w.mono)
                w.mono = st.wake_ms;
        }
        ADD_FAILURE() << "agent did not settle";
        return OTA_STEP_MAX;
    }

    ota_state state() const
    {
        return w.journal ? w.journal->state : OTA_STATE_IDLE;
    }

    std::string last_report() const
    {
        if (w.all_reports.empty())
            return "";
        const ota_report &r = w.all_reports.back();
        return std::string(r.state) + ":" + r.status;
    }
};

// Installed, waiting: slot b holds 2.0.0, `current` still points at a.
void expect_waiting(Standby &t)
{
    ASSERT_EQ(t.state(), OTA_STATE_STANDBY);
    EXPECT_EQ(t.w.current, 0);
    EXPECT_EQ(t.w.slot_version[1], "2.0.0");
    EXPECT_EQ(t.w.restarts, 0);
    EXPECT_EQ(t.last_report(), "STANDBY:in_progress");
}

// Abandoned: IDLE, failure reported with why, nothing switched.
void expect_abandoned(Standby &t, const std::string &why)
{
    const char *reason = nullptr;
    EXPECT_EQ(t.state(), OTA_STATE_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(t.a, &reason), OTA_STATUS_FAILURE);
    EXPECT_NE(std::string(reason).find(why), std::string::npos) << reason;
    EXPECT_EQ(t.last_report(), "IDLE:failure");
    EXPECT_EQ(t.w.current, 0);
    EXPECT_EQ(t.w.restarts, 0);
    EXPECT_EQ(t.w.slots_written, std::vector<int>{1}); // the running slot never written
    EXPECT_EQ(t.w.slot_version[1], "2.0.0");           // the installed one left as it is
}

} // namespace

TEST(CoreStandby, OfferWithActivationWaitsInStandby)
{
    Standby t;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_waiting(t);
    EXPECT_EQ(t.w.journal->wait_activation, 1);
    EXPECT_EQ(t.w.journal->standby_since_ms, t.w.wall);
    // Entering STANDBY checked in at once, with the state and the update id.
    json_t *o = json_loads(t.w.checkins.back().c_str(), 0, nullptr);
    ASSERT_TRUE(o);
    EXPECT_STREQ(json_string_value(json_object_get(o, "state")), "STANDBY");
    EXPECT_STREQ(json_string_value(json_object_get(o, "update_id")), "u-2");
    json_decref(o);
}

TEST(CoreStandby, OfferWithoutActivationSwitchesAsBefore)
{
    Standby t;
    t.offer();
    t.w.offer_json.replace(t.w.offer_json.find("\"wait\""), 6, "\"now\"");
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    EXPECT_EQ(t.state(), OTA_STATE_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(t.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(t.w.current, 1);
}

TEST(CoreStandby, EachPassChecksInOnceAndKeepsWaiting)
{
    Standby t;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null}";
    size_t n = t.w.checkins.size();
    ota_err err{};
    ASSERT_EQ(ota_agent_check(t.a, 0, &err), 0) << err.reason;
    ASSERT_EQ(t.run(), OTA_STEP_IDLE);
    EXPECT_EQ(t.w.checkins.size(), n + 1);
    ASSERT_EQ(t.run(), OTA_STEP_IDLE); // no new pass asked: no check-in
    EXPECT_EQ(t.w.checkins.size(), n + 1);
    EXPECT_EQ(ota_agent_check(t.a, 1, &err), -EBUSY); // a dry run has nothing to look at
    expect_waiting(t);
}

TEST(CoreStandby, PowerCutInStandbyStaysThenActivationCommits)
{
    Standby t;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null}";
    for (int i = 0; i < 8; i++) { // more reboots than max_resumes: waiting is not a loop
        t.w.power_cut();
        t.w.wall += kHour;
        ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
        expect_waiting(t);
    }
    EXPECT_EQ(t.w.journal->resumes, 0u);
    t.w.offer_json = "{\"update\":null,\"activate\":\"u-1-other\"}"; // not ours: wait on
    t.w.power_cut();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_waiting(t);
    t.w.offer_json = "{\"update\":null,\"activate\":\"u-2\"}";
    t.w.power_cut();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    EXPECT_EQ(t.state(), OTA_STATE_IDLE);
    EXPECT_EQ(ota_agent_last_outcome(t.a, nullptr), OTA_STATUS_SUCCESS);
    EXPECT_EQ(t.w.current, 1);
    EXPECT_EQ(t.w.kv["app.version"], "2.0.0");
    std::vector<ota_state> tail;
    for (ota_state s : t.w.saved_states)
        if (tail.empty() || tail.back() != s)
            tail.push_back(s);
    std::vector<ota_state> want = {OTA_STATE_INSTALLING, OTA_STATE_STANDBY,
                                   OTA_STATE_SWITCHING,  OTA_STATE_HEALTH_CHECK,
                                   OTA_STATE_COMMITTING, OTA_STATE_IDLE};
    ASSERT_GE(tail.size(), want.size());
    EXPECT_EQ(std::vector<ota_state>(tail.end() - want.size(), tail.end()), want);
}

TEST(CoreStandby, CancelledRolloutAbandons)
{
    Standby t;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null,\"abandon\":\"u-2\"}";
    t.w.power_cut();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_abandoned(t, "activation cancelled");
}

TEST(CoreStandby, NotAfterEndsTheWait)
{
    Standby t;
    t.offer(t.w.wall + 2 * kHour);
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null}";
    t.w.wall += kHour;
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_waiting(t);
    t.w.wall += kHour;
    t.w.server_down = true; // the bound holds without the server
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_abandoned(t, "not_after_ms");
}

TEST(CoreStandby, MaxWaitEndsTheWait)
{
    Standby t;
    t.cfg.standby_max_wait_ms = 24 * kHour;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null}";
    t.w.wall += 23 * kHour;
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_waiting(t);
    t.w.wall += kHour;
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_abandoned(t, "maximum wait");
}

TEST(CoreStandby, ClockGoneBackRestartsTheMaxWait)
{
    Standby t;
    t.cfg.standby_max_wait_ms = 24 * kHour;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    t.w.offer_json = "{\"update\":null}";
    t.w.wall = 1000; // an RTC back at its epoch
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_waiting(t);
    EXPECT_EQ(t.w.journal->standby_since_ms, 1000);
    t.w.wall += 24 * kHour;
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    expect_abandoned(t, "maximum wait");
}

TEST(CoreStandby, OperatorRollbackInStandbyAbandons)
{
    Standby t;
    t.offer();
    ASSERT_EQ(t.boot_pass(), OTA_STEP_IDLE);
    ota_err err{};
    ASSERT_EQ(ota_agent_rollback(t.a, &err), 0) << err.reason;
    expect_abandoned(t, "cancelled by the operator");
}
