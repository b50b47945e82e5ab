// Unit tests for src/clock.c (the server's virtual clock: timers, advances,
// blocking sleeps, close, the process's clock) and for
// otasrv_rollout_next_deadline (src/rollout.c), the rollouts' part of what an
// advance answers as the next deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <jansson.h>

extern "C" {
#include "otasrv/clock.h"
#include "otasrv/rollout.h"
}

namespace
{

const int64_t kT0 = 1795000000000; // unix ms

struct Clock {
    otasrv_clock *c = nullptr;
    explicit Clock(int64_t start = kT0)
    {
        ota_err err = {};
        EXPECT_EQ(otasrv_clock_new(start, &c, &err), 0) << err.reason;
    }
    ~Clock()
    {
        otasrv_clock_close(c);
        otasrv_clock_free(c);
    }
};

void count(void *ctx)
{
    ++*static_cast<int *>(ctx);
}

int advance_to(otasrv_clock *c, int64_t to, size_t *fired = nullptr)
{
    ota_err err = {};
    return otasrv_clock_advance_to(c, to, nullptr, nullptr, fired, &err);
}

template <typename F> bool eventually(F cond)
{
    for (int i = 0; i < 2000 && !cond(); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return cond();
}

// ---- the clock ----

TEST(Clock, NowStartsAtStartAndOnlyMovesForward)
{
    Clock k;
    ota_err err = {};
    EXPECT_EQ(otasrv_clock_now(k.c), kT0);
    EXPECT_EQ(advance_to(k.c, kT0 + 5), 0);
    EXPECT_EQ(otasrv_clock_now(k.c), kT0 + 5);
    EXPECT_EQ(otasrv_clock_advance_to(k.c, kT0 + 4, nullptr, nullptr, nullptr, &err), -ERANGE);
    EXPECT_NE(std::string(err.reason).find("only moves forward"), std::string::npos) << err.reason;
    EXPECT_EQ(otasrv_clock_now(k.c), kT0 + 5); // nothing changed
    EXPECT_EQ(advance_to(k.c, kT0 + 5), 0);    // staying put is an advance of 0
    int64_t now = 0;
    EXPECT_EQ(otasrv_clock_advance_by(k.c, 1000, nullptr, nullptr, nullptr, &now, &err), 0);
    EXPECT_EQ(now, kT0 + 1005);
    EXPECT_EQ(otasrv_clock_now(k.c), kT0 + 1005);
    EXPECT_EQ(otasrv_clock_advance_by(k.c, -1, nullptr, nullptr, nullptr, &now, &err), -ERANGE);
    EXPECT_EQ(otasrv_clock_now(k.c), kT0 + 1005);
    otasrv_clock *bad = nullptr;
    EXPECT_EQ(otasrv_clock_new(-1, &bad, &err), -EINVAL);
}

TEST(Clock, AdvanceFiresTheTimersDueAndNotTheOthers)
{
    Clock k;
    otasrv_clock_timer t[4] = {};
    int n[4] = {};
    const int64_t at[4] = {kT0 + 300, kT0 + 100, kT0 + 200, kT0 + 201};
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(otasrv_clock_timer_arm(k.c, &t[i], at[i], count, &n[i]), OTASRV_TIMER_ARMED);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 4u);
    EXPECT_EQ(otasrv_clock_next_deadline(k.c), kT0 + 100);

    size_t fired = 99;
    EXPECT_EQ(advance_to(k.c, kT0 + 99, &fired), 0);
    EXPECT_EQ(fired, 0u);
    EXPECT_EQ(n[1], 0);
    EXPECT_EQ(advance_to(k.c, kT0 + 200, &fired), 0); // 100 and exactly 200
    EXPECT_EQ(fired, 2u);
    EXPECT_EQ(n[0], 0);
    EXPECT_EQ(n[1], 1);
    EXPECT_EQ(n[2], 1);
    EXPECT_EQ(n[3], 0);
    EXPECT_EQ(otasrv_clock_timer_state(k.c, &t[1]), OTASRV_TIMER_FIRED);
    EXPECT_EQ(otasrv_clock_timer_state(k.c, &t[3]), OTASRV_TIMER_ARMED);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 2u);
    EXPECT_EQ(otasrv_clock_next_deadline(k.c), kT0 + 201);

    EXPECT_EQ(advance_to(k.c, kT0 + 10000, &fired), 0);
    EXPECT_EQ(fired, 2u);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(n[i], 1) << i; // each once
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 0u);
    EXPECT_EQ(otasrv_clock_next_deadline(k.c), INT64_MAX);
}

TEST(Clock, ArmingAtOrBeforeNowFiresAtOnceAndDisarmForgets)
{
    Clock k;
    otasrv_clock_timer a = {}, b = {}, c = {};
    int na = 0, nb = 0, nc = 0;
    EXPECT_EQ(otasrv_clock_timer_arm(k.c, &a, kT0, count, &na), OTASRV_TIMER_FIRED);
    EXPECT_EQ(na, 1);
    EXPECT_EQ(otasrv_clock_timer_arm(k.c, &b, kT0 + 10, count, &nb), OTASRV_TIMER_ARMED);
    EXPECT_EQ(otasrv_clock_timer_arm(k.c, &c, kT0 + 20, count, &nc), OTASRV_TIMER_ARMED);
    otasrv_clock_timer_disarm(k.c, &b);
    EXPECT_EQ(otasrv_clock_timer_state(k.c, &b), OTASRV_TIMER_IDLE);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 1u);
    EXPECT_EQ(otasrv_clock_next_deadline(k.c), kT0 + 20);
    EXPECT_EQ(advance_to(k.c, kT0 + 100), 0);
    EXPECT_EQ(nb, 0);
    EXPECT_EQ(nc, 1);
    otasrv_clock_timer_disarm(k.c, &c); // after it fired: harmless
    EXPECT_EQ(otasrv_clock_timer_state(k.c, &c), OTASRV_TIMER_FIRED);
    // A fired timer may be armed again.
    EXPECT_EQ(otasrv_clock_timer_arm(k.c, &c, kT0 + 150, count, &nc), OTASRV_TIMER_ARMED);
    EXPECT_EQ(advance_to(k.c, kT0 + 150), 0);
    EXPECT_EQ(nc, 2);
}

struct StepLog {
    std::vector<int64_t> at;
    int fail = 0;
};

int step(void *ctx, int64_t now, ota_err *err)
{
    auto *log = static_cast<StepLog *>(ctx);
    log->at.push_back(now);
    return log->fail ? ota_err_set(err, EIO, "the step failed") : 0;
}

TEST(Clock, TheStepRunsAtTheNewNowBeforeTheAdvanceReturns)
{
    Clock k;
    StepLog log;
    ota_err err = {};
    ASSERT_EQ(otasrv_clock_advance_to(k.c, kT0 + 7, step, &log, nullptr, &err), 0);
    ASSERT_EQ(log.at.size(), 1u);
    EXPECT_EQ(log.at[0], kT0 + 7);
    log.fail = 1;
    EXPECT_EQ(otasrv_clock_advance_by(k.c, 3, step, &log, nullptr, nullptr, &err), -EIO);
    EXPECT_STREQ(err.reason, "the step failed");
    EXPECT_EQ(otasrv_clock_now(k.c), kT0 + 10); // the clock moved all the same
    // A refused advance runs no step.
    EXPECT_EQ(otasrv_clock_advance_to(k.c, kT0, step, &log, nullptr, &err), -ERANGE);
    EXPECT_EQ(log.at.size(), 2u);
}

TEST(Clock, BlockingSleepEndsOnlyWhenTheClockGetsThere)
{
    Clock k;
    std::atomic<int> done{0}, rc{1};
    std::thread th([&] {
        rc = otasrv_clock_sleep_until(k.c, kT0 + 500);
        done = 1;
    });
    ASSERT_TRUE(eventually([&] { return otasrv_clock_sleepers(k.c) == 1; }));
    EXPECT_EQ(otasrv_clock_next_deadline(k.c), kT0 + 500);
    EXPECT_EQ(advance_to(k.c, kT0 + 499), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // real time changes nothing
    EXPECT_EQ(done.load(), 0);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 1u);
    EXPECT_EQ(advance_to(k.c, kT0 + 500), 0);
    th.join();
    EXPECT_EQ(rc.load(), 0);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 0u);
    // Already there: no wait.
    EXPECT_EQ(otasrv_clock_sleep_until(k.c, kT0 + 500), 0);
}

TEST(Clock, CloseCancelsEverySleeperAndWhatComesAfter)
{
    Clock k;
    otasrv_clock_timer t = {};
    int n = 0;
    std::atomic<int> rc{1};
    ASSERT_EQ(otasrv_clock_timer_arm(k.c, &t, kT0 + 1000000, count, &n), OTASRV_TIMER_ARMED);
    std::thread th([&] { rc = otasrv_clock_sleep_until(k.c, kT0 + 1000000); });
    ASSERT_TRUE(eventually([&] { return otasrv_clock_sleepers(k.c) == 2; }));
    otasrv_clock_close(k.c);
    th.join();
    EXPECT_EQ(rc.load(), -ECANCELED);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(otasrv_clock_timer_state(k.c, &t), OTASRV_TIMER_CANCELLED);
    EXPECT_EQ(otasrv_clock_sleepers(k.c), 0u);
    otasrv_clock_timer u = {};
    EXPECT_EQ(otasrv_clock_timer_arm(k.c, &u, kT0 + 5, count, &n), OTASRV_TIMER_CANCELLED);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(otasrv_clock_sleep_until(k.c, kT0 + 5), -ECANCELED);
    ota_err err = {};
    EXPECT_EQ(otasrv_clock_advance_to(k.c, kT0 + 5, nullptr, nullptr, nullptr, &err), -ESHUTDOWN);
}

TEST(Clock, OneInstalledClockMakesTheProcessNow)
{
    Clock a, b(kT0 + 1);
    ota_err err = {};
    int64_t real = otasrv_real_now_ms();
    EXPECT_EQ(otasrv_clock_installed(), nullptr);
    EXPECT_LE(std::llabs(otasrv_now_ms() - real), 5000);
    ASSERT_EQ(otasrv_clock_install(a.c, &err), 0);
    EXPECT_EQ(otasrv_clock_install(b.c, &err), -EBUSY);
    EXPECT_EQ(otasrv_now_ms(), kT0);
    EXPECT_EQ(advance_to(a.c, kT0 + 42), 0);
    EXPECT_EQ(otasrv_now_ms(), kT0 + 42);
    otasrv_clock_uninstall(b.c); // not the installed one: nothing
    EXPECT_EQ(otasrv_clock_installed(), a.c);
    otasrv_clock_uninstall(a.c);
    EXPECT_EQ(otasrv_clock_installed(), nullptr);
    EXPECT_LE(std::llabs(otasrv_now_ms() - real), 5000);
}

// ---- the rollouts' next deadline ----

struct R {
    otasrv_rollout *r = nullptr;
    std::vector<otasrv_rollout_device> rows;

    R(const std::string &def_json, size_t n)
    {
        json_error_t jerr;
        json_t *j = json_loads(def_json.c_str(), 0, &jerr);
        otasrv_rollout_def def;
        ota_err err = {};
        memset(&def, 0, sizeof(def));
        EXPECT_NE(j, nullptr) << jerr.text;
        EXPECT_EQ(otasrv_rollout_from_json(j, &def, &err), 0) << err.reason;
        json_decref(j);
        EXPECT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), 0) << err.reason;
        otasrv_rollout_def_clear(&def);
        rows.resize(n);
        for (size_t i = 0; i < n; i++)
            EXPECT_EQ(otasrv_rollout_device_init(
                          r->def.id, ("dev-" + std::to_string(100000 + i)).c_str(), &rows[i], &err),
                      0);
    }
    ~R()
    {
        otasrv_rollout_free(r);
    }
    int64_t next(int64_t now)
    {
        return otasrv_rollout_next_deadline(r, rows.data(), rows.size(), now);
    }
    void act(otasrv_op op, int64_t now)
    {
        ota_err err = {};
        ASSERT_EQ(otasrv_rollout_act(r, op, rows.data(), rows.size(), now, &err), 0) << err.reason;
    }
    otasrv_rollout_decision checkin(size_t i, int64_t now)
    {
        otasrv_rollout_decision d;
        otasrv_rollout_checkin(r, nullptr, &rows[i], now, &d);
        return d;
    }
    otasrv_rollout_tick_result tick(int64_t now)
    {
        otasrv_rollout_tick_result res;
        otasrv_rollout_tick(r, rows.data(), rows.size(), now, &res);
        return res;
    }
};

TEST(RolloutNextDeadline, AScheduledRolloutIsDueAtItsStart)
{
    const int64_t start = kT0 + 3600000;
    R ro(R"({"id":"s1","release_id":"app-2","strategy":"scheduled","start_at_ms":)" +
             std::to_string(start) + "}",
         10);
    EXPECT_EQ(ro.next(kT0), INT64_MAX); // draft
    ro.act(OTASRV_OP_APPROVE, kT0);
    EXPECT_EQ(ro.next(kT0), INT64_MAX); // approved: only an operator starts it
    ro.act(OTASRV_OP_START, kT0);
    ASSERT_EQ(ro.r->state, OTASRV_ROLLOUT_SCHEDULED);
    EXPECT_EQ(ro.next(kT0), start);
    ro.tick(start - 1);
    EXPECT_EQ(ro.r->state, OTASRV_ROLLOUT_SCHEDULED);
    // Advancing to the deadline and ticking there is what starts it.
    ro.tick(ro.next(start - 1));
    EXPECT_EQ(ro.r->state, OTASRV_ROLLOUT_RUNNING);
    EXPECT_EQ(ro.next(start), INT64_MAX); // no report timeout
}

TEST(RolloutNextDeadline, InFlightDevicesAreDueAtTheirReportTimeout)
{
    R ro(R"({"id":"t1","release_id":"app-2","strategy":"immediate","report_timeout_ms":30000})",
         10);
    ro.act(OTASRV_OP_APPROVE, kT0);
    ro.act(OTASRV_OP_START, kT0);
    EXPECT_EQ(ro.next(kT0), INT64_MAX); // nothing in flight
    for (size_t i = 0; i < 10; i++)
        ASSERT_EQ(ro.checkin(i, kT0 + 1000 * (int64_t)i).offer, OTASRV_OFFER_RELEASE);
    EXPECT_EQ(ro.next(kT0 + 9000), kT0 + 30000);
    // A report restarts a device's timeout; finished devices have none.
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_on_report(ro.r, &ro.rows[0], 0, OTASRV_REPORT_IN_PROGRESS, kT0 + 20000,
                                       &err),
              0);
    ASSERT_EQ(
        otasrv_rollout_on_report(ro.r, &ro.rows[1], 0, OTASRV_REPORT_SUCCESS, kT0 + 20000, &err),
        0);
    EXPECT_EQ(ro.next(kT0 + 20000), kT0 + 32000);
    // Advance to each deadline: exactly the device due times out, and the
    // next deadline is later than now.
    int64_t now = kT0 + 20000;
    int timed_out = 0;
    while (ro.next(now) != INT64_MAX && timed_out < 20) {
        int64_t t = ro.next(now);
        ASSERT_GT(t, now);
        now = t;
        otasrv_rollout_tick_result res = ro.tick(now);
        ASSERT_EQ(res.timed_out, 1u) << now - kT0;
        timed_out++;
        if (ro.r->state != OTASRV_ROLLOUT_RUNNING && ro.r->state != OTASRV_ROLLOUT_PAUSED)
            break;
    }
    // Device 2 (due at +32000) trips the strict default threshold: failed.
    EXPECT_EQ(ro.r->state, OTASRV_ROLLOUT_FAILED);
    EXPECT_EQ(ro.next(now), INT64_MAX); // ended: nothing is due
}

TEST(RolloutNextDeadline, APausedRolloutStillTimesOutAndIsQuickOnAHugeTable)
{
    R ro(R"({"id":"p1","release_id":"app-2","strategy":"immediate","report_timeout_ms":600000,
        "stages":[{"percent":100,"failure_threshold":100}]})",
         OTASRV_ROLLOUT_MAX_DEVICES);
    ro.act(OTASRV_OP_APPROVE, kT0);
    ro.act(OTASRV_OP_START, kT0);
    for (size_t i = 0; i < ro.rows.size(); i += 1000)
        ro.checkin(i, kT0 + (int64_t)i);
    ro.act(OTASRV_OP_PAUSE, kT0 + 200000);
    auto t0 = std::chrono::steady_clock::now();
    int64_t next = ro.next(kT0 + 200000);
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(next, kT0 + 600000);
    EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), 200);
    EXPECT_EQ(ro.tick(next).timed_out, 1u);
    EXPECT_EQ(ro.next(next), kT0 + 601000);
}

} // namespace
