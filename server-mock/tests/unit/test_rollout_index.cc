// Unit tests for the rollout engine's incremental bookkeeping (src/rollout.c
// set_state, src/rollout_index.c): after every call of a randomized run of
// check-ins, reports, ticks and actions, the counts equal a recount, the
// next deadline equals a scan of the in-flight rows, every row with its
// dirty flag set is listed for the next write, and the run equals a twin
// run whose table is recounted and re-indexed from scratch before every call.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <jansson.h>

extern "C" {
#include "otasrv/rollout.h"
}

namespace
{

const int64_t kT0 = 1795000000000; // virtual clock origin (unix ms)

struct RolloutFree {
    void operator()(otasrv_rollout *r) const
    {
        otasrv_rollout_free(r);
    }
};
using Rollout = std::unique_ptr<otasrv_rollout, RolloutFree>;

Rollout make_rollout(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    otasrv_rollout_def def;
    ota_err err = {};
    otasrv_rollout *r = nullptr;

    EXPECT_NE(j, nullptr) << jerr.text;
    memset(&def, 0, sizeof(def));
    EXPECT_EQ(otasrv_rollout_from_json(j, &def, &err), 0) << err.reason;
    json_decref(j);
    EXPECT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), 0) << err.reason;
    return Rollout(r);
}

// One side of the run: a rollout and its table.
struct Side {
    Rollout r;
    std::vector<otasrv_rollout_device> rows;
};

Side make_side(const char *def, size_t n)
{
    Side s{make_rollout(def), {}};
    ota_err err = {};

    s.rows.resize(n);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "dev-%04zu", i);
        EXPECT_EQ(otasrv_rollout_device_init(s.r->def.id, id, &s.rows[i], &err), 0);
    }
    EXPECT_EQ(otasrv_rollout_act(s.r.get(), OTASRV_OP_APPROVE, s.rows.data(), n, kT0, &err), 0);
    EXPECT_EQ(otasrv_rollout_act(s.r.get(), OTASRV_OP_START, s.rows.data(), n, kT0, &err), 0);
    return s;
}

// The counts, from scratch (without otasrv_rollout_recount, which would
// make the engine index the table again).
void expect_counts(const Side &s, const std::string &at)
{
    uint32_t count[OTASRV_ROLLOUT_MAX_STAGES][OTASRV_RDEV_MAX] = {};
    uint32_t total[OTASRV_RDEV_MAX] = {};

    for (const auto &d : s.rows) {
        total[d.state]++;
        if (d.stage >= 0 && d.stage < s.r->def.n_stages)
            count[d.stage][d.state]++;
    }
    EXPECT_EQ(memcmp(total, s.r->total, sizeof(total)), 0) << at;
    EXPECT_EQ(memcmp(count, s.r->count, sizeof(count)), 0) << at;
}

// The next deadline, from scratch.
void expect_deadline(const Side &s, int64_t now, const std::string &at)
{
    const otasrv_rollout *r = s.r.get();
    int64_t want = INT64_MAX;

    if (r->state == OTASRV_ROLLOUT_RUNNING || r->state == OTASRV_ROLLOUT_PAUSED)
        for (const auto &d : s.rows)
            if (d.state == OTASRV_RDEV_OFFERED || d.state == OTASRV_RDEV_IN_PROGRESS)
                want = std::min(want, d.last_ms + r->def.report_timeout_ms);
    EXPECT_EQ(otasrv_rollout_next_deadline(r, s.rows.data(), s.rows.size(), now), want) << at;
}

// What the server does after a call: writes the listed rows (or, when the
// engine does not know, every dirty one) and clears the flags. Every row
// with its flag set must be listed.
void expect_listed_and_write(Side &s, const std::string &at)
{
    const uint32_t *rows = nullptr;
    ssize_t k = otasrv_rollout_dirty_rows(s.r.get(), s.rows.data(), s.rows.size(), &rows);

    if (k >= 0) {
        std::set<uint32_t> listed(rows, rows + k);
        for (size_t i = 0; i < s.rows.size(); i++)
            if (s.rows[i].dirty)
                EXPECT_TRUE(listed.count((uint32_t)i)) << at << ": row " << i << " not listed";
    }
    for (auto &d : s.rows)
        d.dirty = 0;
    otasrv_rollout_dirty_clear(s.r.get());
}

void expect_same(const Side &a, const Side &b, const std::string &at)
{
    ASSERT_EQ(a.r->state, b.r->state) << at;
    ASSERT_EQ(a.r->stage, b.r->stage) << at;
    ASSERT_STREQ(a.r->reason, b.r->reason) << at;
    for (size_t i = 0; i < a.rows.size(); i++) {
        const auto &x = a.rows[i], &y = b.rows[i];
        ASSERT_TRUE(x.state == y.state && x.offered_ms == y.offered_ms &&
                    x.started_ms == y.started_ms && x.last_ms == y.last_ms &&
                    x.finished_ms == y.finished_ms && x.rollback_ms == y.rollback_ms)
            << at << ": row " << i;
    }
}

// One random step on a side; the same rng draws give the same step on both.
void step(Side &s, int op, size_t dev, int what, int64_t now)
{
    otasrv_rollout *r = s.r.get();
    otasrv_rollout_device *d = &s.rows[dev];
    otasrv_rollout_decision dec;
    ota_err err = {};
    int rc = 0;

    switch (op) {
    case 0: // a check-in, as the server makes it
        otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), now, nullptr);
        otasrv_rollout_checkin(r, nullptr, d, now, &dec);
        otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), now, nullptr);
        break;
    case 1: // a report (refused ones change nothing)
        otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), now, nullptr);
        rc = otasrv_rollout_on_report(r, d, d->state >= OTASRV_RDEV_ROLLBACK_ORDERED,
                                      (otasrv_report)(what % OTASRV_REPORT_MAX), now, &err);
        otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), now, nullptr);
        break;
    case 2: // the timer
        otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), now, nullptr);
        break;
    default: { // an operator (refusals are fine)
        static const otasrv_op ops[] = {OTASRV_OP_PAUSE, OTASRV_OP_RESUME, OTASRV_OP_RESUME,
                                        OTASRV_OP_RESUME};
        otasrv_op o = what == 19 ? OTASRV_OP_ROLLBACK : ops[what % 4];
        rc = otasrv_rollout_act(r, o, o == OTASRV_OP_ROLLBACK ? s.rows.data() : nullptr,
                                o == OTASRV_OP_ROLLBACK ? s.rows.size() : 0, now, &err);
        break;
    }
    }
    (void)rc; // refusals are part of the run
}

// What the runs went through (so that a run that never times out or never
// trips does not pass for a test of those).
struct Seen {
    std::set<int> rollout_states, row_states;
    int max_stage = 0;
};

void run(const char *def, size_t n, unsigned seed, int steps, Seen *seen)
{
    Side inc = make_side(def, n), ref = make_side(def, n);
    std::mt19937 rng(seed);
    int64_t now = kT0;

    for (int i = 0; i < steps && !::testing::Test::HasFatalFailure(); i++) {
        now += (int64_t)(rng() % 400);
        unsigned x = rng() % 1000;
        int op = x < 550 ? 0 : x < 950 ? 1 : x < 990 ? 2 : 3;
        size_t dev = rng() % n;
        int what = (int)(rng() % 20);
        if (op == 1 && what < 16) {
            // Mostly a device that has the release in hand reports.
            std::vector<size_t> busy;
            for (size_t j = 0; j < n; j++)
                if (inc.rows[j].state == OTASRV_RDEV_OFFERED ||
                    inc.rows[j].state == OTASRV_RDEV_IN_PROGRESS ||
                    inc.rows[j].state == OTASRV_RDEV_ROLLBACK_ORDERED)
                    busy.push_back(j);
            if (!busy.empty())
                dev = busy[rng() % busy.size()];
        }
        // The report mostly succeeds: stages pass and the run goes on.
        if (op == 1)
            what = what < 12   ? OTASRV_REPORT_SUCCESS
                   : what < 18 ? OTASRV_REPORT_IN_PROGRESS
                               : OTASRV_REPORT_FAILURE;
        std::string at = "seed " + std::to_string(seed) + " step " + std::to_string(i) + " op " +
                         std::to_string(op);
        step(inc, op, dev, what, now);
        otasrv_rollout_recount(ref.r.get(), ref.rows.data(), ref.rows.size()); // from scratch
        step(ref, op, dev, what, now);
        expect_counts(inc, at);
        expect_deadline(inc, now, at);
        expect_listed_and_write(inc, at);
        expect_same(inc, ref, at);
        seen->rollout_states.insert(inc.r->state);
        seen->max_stage = std::max(seen->max_stage, inc.r->stage);
        for (const auto &d : inc.rows)
            seen->row_states.insert(d.state);
    }
}

const char kStaged[] = R"({"id":"r-idx","release_id":"app-2.0.0",
    "previous_release_id":"app-1.0.0","strategy":"staged","max_concurrent":25,
    "report_timeout_ms":9000,"auto_pause":true,
    "stages":[{"batch_size":20,"success_threshold":50,"failure_threshold":40},
              {"percent":40,"success_threshold":60,"failure_threshold":30},
              {"percent":100,"success_threshold":50,"failure_threshold":50}]})";

const char kRollback[] = R"({"id":"r-idx-rb","release_id":"app-2.0.0",
    "previous_release_id":"app-1.0.0","strategy":"canary","report_timeout_ms":3000,
    "auto_rollback":true,
    "stages":[{"percent":30,"success_threshold":70,"failure_threshold":20},
              {"percent":100,"failure_threshold":30}]})";

TEST(RolloutIndex, IncrementalEqualsRecountStaged)
{
    Seen seen;
    for (unsigned seed = 1; seed <= 6; seed++)
        run(kStaged, 200, seed, 5000, &seen);
    EXPECT_EQ(seen.max_stage, 2);
    EXPECT_TRUE(seen.row_states.count(OTASRV_RDEV_TIMED_OUT));
    EXPECT_TRUE(seen.rollout_states.count(OTASRV_ROLLOUT_PAUSED));
    EXPECT_TRUE(seen.rollout_states.count(OTASRV_ROLLOUT_COMPLETED));
}

TEST(RolloutIndex, IncrementalEqualsRecountRollback)
{
    Seen seen;
    for (unsigned seed = 1; seed <= 6; seed++)
        run(kRollback, 200, seed, 2000, &seen);
    EXPECT_TRUE(seen.row_states.count(OTASRV_RDEV_TIMED_OUT));
    EXPECT_TRUE(seen.row_states.count(OTASRV_RDEV_ROLLED_BACK));
    EXPECT_TRUE(seen.rollout_states.count(OTASRV_ROLLOUT_ROLLED_BACK));
}

// A row changed behind the engine's back (a later last_ms) is not timed out
// by its old heap key, and the deadline follows it.
TEST(RolloutIndex, RowChangedByTheCallerIsCheckedAgain)
{
    Side s = make_side(kRollback, 50);
    otasrv_rollout *r = s.r.get();
    otasrv_rollout_decision dec;
    otasrv_rollout_tick_result res = {};
    size_t i = 0;

    while (s.rows[i].stage != 0)
        i++;
    otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), kT0 + 1, nullptr);
    otasrv_rollout_checkin(r, nullptr, &s.rows[i], kT0 + 1, &dec);
    ASSERT_EQ(dec.offer, OTASRV_OFFER_RELEASE);
    EXPECT_EQ(otasrv_rollout_next_deadline(r, s.rows.data(), s.rows.size(), kT0), kT0 + 3001);
    s.rows[i].last_ms = kT0 + 2000;
    otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), kT0 + 3001, &res);
    EXPECT_EQ(res.timed_out, 0u);
    EXPECT_EQ(otasrv_rollout_next_deadline(r, s.rows.data(), s.rows.size(), kT0), kT0 + 5000);
    otasrv_rollout_tick(r, s.rows.data(), s.rows.size(), kT0 + 5000, &res);
    EXPECT_EQ(res.timed_out, 1u);
    EXPECT_EQ(s.rows[i].state, OTASRV_RDEV_TIMED_OUT);
}

} // namespace
