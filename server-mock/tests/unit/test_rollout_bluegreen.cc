// The rollout engine's blue_green strategy (src/rollout_bluegreen.c and its
// hooks in rollout.c): installs in stages, devices wait in standby, one
// activation (operator or activate_at_ms) switches them, cancel makes them
// abandon. Plain integers as the clock.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <jansson.h>

extern "C" {
#include "otasrv/rollout.h"
}

namespace
{

const int64_t kT0 = 1795000000000;

struct RolloutFree {
    void operator()(otasrv_rollout *r) const
    {
        otasrv_rollout_free(r);
    }
};
using Rollout = std::unique_ptr<otasrv_rollout, RolloutFree>;

struct BlueGreen {
    Rollout r;
    std::vector<otasrv_rollout_device> rows;

    explicit BlueGreen(const std::string &extra = "", size_t n = 10)
    {
        std::string text = R"({"id":"bg","release_id":"app-2.0.0","previous_release_id":"app-1.0.0",
            "strategy":"blue_green","stages":[{"percent":50},{"percent":100}])" +
                           extra + "}";
        json_error_t jerr;
        json_t *j = json_loads(text.c_str(), 0, &jerr);
        EXPECT_NE(j, nullptr) << jerr.text;
        otasrv_rollout_def def;
        memset(&def, 0, sizeof(def));
        ota_err err = {};
        otasrv_rollout *ro = nullptr;
        EXPECT_EQ(otasrv_rollout_from_json(j, &def, &err), 0) << err.reason;
        json_decref(j);
        EXPECT_EQ(otasrv_rollout_new(&def, kT0, &ro, &err), 0) << err.reason;
        otasrv_rollout_def_clear(&def);
        r.reset(ro);
        for (size_t i = 0; i < n; i++) {
            char id[32];
            snprintf(id, sizeof(id), "dev-%03zu", i);
            otasrv_rollout_device d;
            EXPECT_EQ(otasrv_rollout_device_init("bg", id, &d, &err), 0);
            rows.push_back(d);
        }
        EXPECT_EQ(otasrv_rollout_act(ro, OTASRV_OP_APPROVE, nullptr, 0, kT0, &err), 0);
        EXPECT_EQ(otasrv_rollout_act(ro, OTASRV_OP_START, rows.data(), rows.size(), kT0, &err), 0)
            << err.reason;
    }

    otasrv_rollout_decision checkin(size_t i, int64_t now)
    {
        otasrv_rollout_decision d;
        otasrv_rollout_checkin(r.get(), nullptr, &rows[i], now, &d);
        return d;
    }
    void tick(int64_t now)
    {
        otasrv_rollout_tick(r.get(), rows.data(), rows.size(), now, nullptr);
    }

    // Every device checks in; one offered installs and reports standby.
    void install_pass(int64_t now)
    {
        for (size_t i = 0; i < rows.size(); i++) {
            otasrv_rollout_decision d = checkin(i, now);
            if (d.offer == OTASRV_OFFER_RELEASE) {
                ota_err err = {};
                ASSERT_EQ(otasrv_rollout_on_report(r.get(), &rows[i], 0, OTASRV_REPORT_IN_PROGRESS,
                                                   now, &err),
                          0);
                ASSERT_EQ(otasrv_rollout_on_standby(r.get(), &rows[i], now, &err), 0) << err.reason;
            }
        }
        tick(now);
    }

    uint32_t count(otasrv_rdev_state s) const
    {
        uint32_t n = 0;
        for (auto &d : rows)
            n += d.state == s;
        return n;
    }
};

} // namespace

TEST(RolloutBlueGreen, EveryDeviceInstallsAndWaitsThenTheOperatorActivates)
{
    BlueGreen bg;
    bg.install_pass(kT0 + 1000); // stage 0
    EXPECT_EQ(bg.r->stage, 1) << "devices in standby pass their stage";
    bg.install_pass(kT0 + 2000); // stage 1
    ASSERT_EQ(bg.count(OTASRV_RDEV_STANDBY), bg.rows.size());
    EXPECT_EQ(bg.r->state, OTASRV_ROLLOUT_RUNNING) << "waiting devices are not done";
    // Waiting: no answer but "standby".
    otasrv_rollout_decision d = bg.checkin(0, kT0 + 3000);
    EXPECT_EQ(d.offer, OTASRV_OFFER_NONE);
    EXPECT_EQ(d.why, OTASRV_WHY_STANDBY);
    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(bg.r.get(), bg.rows.data(), bg.rows.size(), &m), 0);
    EXPECT_EQ(m.standby, bg.rows.size());
    EXPECT_EQ(m.in_flight, 0u);
    EXPECT_LT(m.progress, 0.01);

    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(bg.r.get(), OTASRV_OP_ACTIVATE, bg.rows.data(), bg.rows.size(),
                                 kT0 + 4000, &err),
              0)
        << err.reason;
    EXPECT_EQ(bg.r->activated_ms, kT0 + 4000);
    EXPECT_EQ(otasrv_rollout_act(bg.r.get(), OTASRV_OP_ACTIVATE, nullptr, 0, kT0 + 4500, &err),
              -EALREADY);
    for (size_t i = 0; i < bg.rows.size(); i++) {
        d = bg.checkin(i, kT0 + 5000);
        EXPECT_EQ(d.offer, OTASRV_OFFER_ACTIVATE);
        EXPECT_EQ(d.why, OTASRV_WHY_ACTIVATED);
        EXPECT_EQ(bg.rows[i].state, OTASRV_RDEV_ACTIVATED);
        d = bg.checkin(i, kT0 + 5100); // the answer lost: told again
        EXPECT_EQ(d.offer, OTASRV_OFFER_ACTIVATE);
        ASSERT_EQ(otasrv_rollout_on_report(bg.r.get(), &bg.rows[i], 0, OTASRV_REPORT_IN_PROGRESS,
                                           kT0 + 6000, &err),
                  0);
        ASSERT_EQ(otasrv_rollout_on_report(bg.r.get(), &bg.rows[i], 0, OTASRV_REPORT_SUCCESS,
                                           kT0 + 7000, &err),
                  0);
    }
    bg.tick(kT0 + 8000);
    EXPECT_EQ(bg.r->state, OTASRV_ROLLOUT_COMPLETED);
    EXPECT_EQ(bg.count(OTASRV_RDEV_SUCCESS), bg.rows.size());
}

TEST(RolloutBlueGreen, ActivationAtASetTime)
{
    BlueGreen bg(R"(,"activate_at_ms":1795000010000,"not_after_ms":1795000020000)");
    bg.install_pass(kT0 + 1000);
    bg.install_pass(kT0 + 2000);
    bg.tick(kT0 + 9999);
    EXPECT_EQ(bg.r->activated_ms, 0);
    EXPECT_EQ(bg.checkin(0, kT0 + 9999).offer, OTASRV_OFFER_NONE);
    otasrv_rollout_tick_result res;
    otasrv_rollout_tick(bg.r.get(), bg.rows.data(), bg.rows.size(), kT0 + 10000, &res);
    EXPECT_TRUE(res.activated);
    EXPECT_TRUE(res.changed);
    EXPECT_EQ(bg.r->activated_ms, kT0 + 10000);
    EXPECT_EQ(bg.checkin(0, kT0 + 10001).offer, OTASRV_OFFER_ACTIVATE);
    // The status keeps the activation across a restart.
    json_t *st = nullptr;
    ASSERT_EQ(otasrv_rollout_status_to_json(bg.r.get(), &st), 0);
    EXPECT_EQ(json_integer_value(json_object_get(st, "activated_ms")), kT0 + 10000);
    BlueGreen again(R"(,"activate_at_ms":1795000010000,"not_after_ms":1795000020000)");
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_status_from_json(st, again.r.get(), &err), 0) << err.reason;
    EXPECT_EQ(again.r->activated_ms, kT0 + 10000);
    json_decref(st);
    // The definition round-trips its blue_green fields.
    json_t *def = nullptr;
    ASSERT_EQ(otasrv_rollout_to_json(&bg.r->def, &def), 0);
    EXPECT_EQ(json_integer_value(json_object_get(def, "activate_at_ms")), 1795000010000);
    EXPECT_EQ(json_integer_value(json_object_get(def, "not_after_ms")), 1795000020000);
    json_decref(def);
}

TEST(RolloutBlueGreen, CancelMakesWaitingDevicesAbandon)
{
    BlueGreen bg;
    bg.install_pass(kT0 + 1000);
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(bg.r.get(), OTASRV_OP_CANCEL, bg.rows.data(), bg.rows.size(),
                                 kT0 + 2000, &err),
              0);
    size_t waiting = 0;
    for (size_t i = 0; i < bg.rows.size(); i++) {
        bool standby = bg.rows[i].state == OTASRV_RDEV_STANDBY;
        otasrv_rollout_decision d = bg.checkin(i, kT0 + 3000);
        EXPECT_EQ(d.offer, standby ? OTASRV_OFFER_ABANDON : OTASRV_OFFER_NONE) << i;
        if (!standby)
            continue;
        waiting++;
        ASSERT_EQ(otasrv_rollout_on_report(bg.r.get(), &bg.rows[i], 0, OTASRV_REPORT_FAILURE,
                                           kT0 + 4000, &err),
                  0);
        EXPECT_EQ(bg.rows[i].state, OTASRV_RDEV_FAILURE);
    }
    EXPECT_GT(waiting, 0u);
    EXPECT_EQ(otasrv_rollout_act(bg.r.get(), OTASRV_OP_ACTIVATE, nullptr, 0, kT0 + 5000, &err),
              -EINVAL);
}

TEST(RolloutBlueGreen, StaleReportsKeepStandbyAndOtherStrategiesRefuse)
{
    BlueGreen bg;
    bg.install_pass(kT0 + 1000);
    size_t i = 0;
    while (bg.rows[i].state != OTASRV_RDEV_STANDBY)
        i++;
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_on_report(bg.r.get(), &bg.rows[i], 0, OTASRV_REPORT_IN_PROGRESS,
                                       kT0 + 2000, &err),
              0);
    EXPECT_EQ(bg.rows[i].state, OTASRV_RDEV_STANDBY);
    ASSERT_EQ(otasrv_rollout_on_standby(bg.r.get(), &bg.rows[i], kT0 + 2000, &err), 0);
    EXPECT_EQ(bg.rows[i].state, OTASRV_RDEV_STANDBY);
    // A standby device has no report timeout.
    bg.r->def.report_timeout_ms = 1000;
    bg.tick(kT0 + 100000);
    EXPECT_EQ(bg.rows[i].state, OTASRV_RDEV_STANDBY);
    // A pending device cannot be in standby.
    size_t p = 0;
    while (bg.rows[p].state != OTASRV_RDEV_PENDING)
        p++;
    EXPECT_EQ(otasrv_rollout_on_standby(bg.r.get(), &bg.rows[p], kT0, &err), -EINVAL);
}
