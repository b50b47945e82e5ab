// Unit tests for src/rollout.c: the rollout engine, driven by a virtual clock
// (plain integers) over simulated fleets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <jansson.h>

extern "C" {
#include "ota/json.h"
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

struct JsonFree {
    void operator()(json_t *j) const
    {
        json_decref(j);
    }
};
using Json = std::unique_ptr<json_t, JsonFree>;

Json load(const std::string &text)
{
    json_error_t jerr;
    json_t *j = json_loads(text.c_str(), JSON_DECODE_ANY, &jerr);
    EXPECT_NE(j, nullptr) << text << ": " << jerr.text;
    return Json(j);
}

std::string dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s ? s : "";
    free(s);
    return out;
}

// Parses a definition; on failure returns the error code and reason.
int parse_def(const std::string &text, otasrv_rollout_def *def, ota_err *err)
{
    Json j = load(text);
    return otasrv_rollout_from_json(j.get(), def, err);
}

Rollout make_rollout(const std::string &text, int64_t now = kT0)
{
    otasrv_rollout_def def;
    ota_err err = {};
    otasrv_rollout *r = nullptr;

    memset(&def, 0, sizeof(def));
    EXPECT_EQ(parse_def(text, &def, &err), 0) << err.reason;
    EXPECT_EQ(otasrv_rollout_new(&def, now, &r, &err), 0) << err.reason;
    otasrv_rollout_def_clear(&def);
    return Rollout(r);
}

struct Dev {
    std::string id, type = "rpi3b", group = "lab", version = "1.0.0";
    std::vector<std::string> tags;
    std::vector<const char *> tagp;
};

// A fleet of devices and the rollout's table of those it targets.
struct Fleet {
    std::vector<Dev> devs;
    std::vector<otasrv_rollout_device> rows;
    std::vector<size_t> dev_of_row;

    explicit Fleet(size_t n, const char *prefix = "dev-")
    {
        char id[64];
        for (size_t i = 0; i < n; i++) {
            snprintf(id, sizeof(id), "%s%05zu", prefix, i);
            Dev d;
            d.id = id;
            devs.push_back(d);
        }
    }

    otasrv_device_info info(size_t dev)
    {
        Dev &d = devs[dev];
        d.tagp.clear();
        for (auto &t : d.tags)
            d.tagp.push_back(t.c_str());
        otasrv_device_info in = {};
        in.device_id = d.id.c_str();
        in.device_type = d.type.c_str();
        in.group = d.group.c_str();
        in.tags = d.tagp.data();
        in.n_tags = d.tagp.size();
        in.version = d.version.c_str();
        return in;
    }

    otasrv_device_info row_info(size_t row)
    {
        return info(dev_of_row[row]);
    }

    // Rows for the devices that match r's filters, in fleet order.
    void target(const otasrv_rollout *r)
    {
        rows.clear();
        dev_of_row.clear();
        for (size_t i = 0; i < devs.size(); i++) {
            otasrv_device_info in = info(i);
            if (!otasrv_rollout_matches(&r->def, &in, nullptr))
                continue;
            otasrv_rollout_device row;
            ota_err err = {};
            EXPECT_EQ(otasrv_rollout_device_init(r->def.id, devs[i].id.c_str(), &row, &err), 0);
            rows.push_back(row);
            dev_of_row.push_back(i);
        }
    }

    size_t row_of(const std::string &id) const
    {
        for (size_t i = 0; i < rows.size(); i++)
            if (id == rows[i].device_id)
                return i;
        return SIZE_MAX;
    }
};

void approve_start(otasrv_rollout *r, Fleet &f, int64_t now = kT0)
{
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_APPROVE, nullptr, 0, now, &err), 0) << err.reason;
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_START, f.rows.data(), f.rows.size(), now, &err), 0)
        << err.reason;
}

std::vector<uint32_t> stage_sizes(const otasrv_rollout *r, const Fleet &f)
{
    std::vector<uint32_t> n(r->def.n_stages + 1, 0); // last slot: not selected
    for (auto &row : f.rows)
        n[row.stage < 0 ? r->def.n_stages : row.stage]++;
    return n;
}

std::set<std::string> ids_in_stage(const Fleet &f, int stage)
{
    std::set<std::string> s;
    for (auto &row : f.rows)
        if (row.stage == stage)
            s.insert(row.device_id);
    return s;
}

uint32_t count_state(const Fleet &f, otasrv_rdev_state st)
{
    uint32_t n = 0;
    for (auto &row : f.rows)
        n += row.state == st;
    return n;
}

void report(otasrv_rollout *r, otasrv_rollout_device *d, otasrv_report st, int64_t now,
            int rollback = 0)
{
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_on_report(r, d, rollback, st, now, &err), 0) << err.reason;
}

otasrv_rollout_decision checkin(otasrv_rollout *r, Fleet &f, size_t row, int64_t now)
{
    otasrv_device_info in = f.row_info(row);
    otasrv_rollout_decision d;
    otasrv_rollout_checkin(r, &in, &f.rows[row], now, &d);
    return d;
}

// The fleet on a virtual clock: every step, each device checks in; a device
// in flight reports in_progress, and work_ms after its offer its outcome
// (1 success, 0 failure, -1 silent for ever).
struct Sim {
    otasrv_rollout *r;
    Fleet &f;
    int64_t now = kT0;
    int64_t work_ms = 5000;
    std::function<int(size_t row)> outcome = [](size_t) { return 1; };
    uint32_t max_in_flight_seen = 0;

    Sim(otasrv_rollout *r_, Fleet &f_) : r(r_), f(f_) {}

    void step(int64_t dt = 1000)
    {
        now += dt;
        for (size_t i = 0; i < f.rows.size(); i++) {
            otasrv_rollout_device &d = f.rows[i];
            otasrv_rollout_decision dec = checkin(r, f, i, now);
            uint32_t fl = r->total[OTASRV_RDEV_OFFERED] + r->total[OTASRV_RDEV_IN_PROGRESS];
            max_in_flight_seen = std::max(max_in_flight_seen, fl);
            if (dec.offer == OTASRV_OFFER_ROLLBACK) {
                report(r, &d, OTASRV_REPORT_SUCCESS, now, 1);
                continue;
            }
            if (d.state != OTASRV_RDEV_OFFERED && d.state != OTASRV_RDEV_IN_PROGRESS)
                continue;
            int o = outcome(i);
            if (o < 0)
                continue;
            if (now - d.offered_ms >= work_ms)
                report(r, &d, o ? OTASRV_REPORT_SUCCESS : OTASRV_REPORT_FAILURE, now);
            else
                report(r, &d, OTASRV_REPORT_IN_PROGRESS, now);
        }
        otasrv_rollout_tick(r, f.rows.data(), f.rows.size(), now, nullptr);
    }

    // Steps until the rollout reaches a terminal or paused state.
    void run(int max_steps = 1000)
    {
        for (int i = 0; i < max_steps; i++) {
            step();
            if (r->state != OTASRV_ROLLOUT_RUNNING && r->state != OTASRV_ROLLOUT_SCHEDULED)
                return;
        }
    }
};

const char *kCanary10 =
    R"({"id":"r-canary","release_id":"app-2.0.0","previous_release_id":"app-1.0.0",
        "strategy":"canary","stages":[{"percent":10},{"percent":100}]})";

// ---- names, hash ----

TEST(RolloutNames, TablesAreCompleteAndIndexed)
{
    struct {
        const char *const *names;
        int n;
    } tables[] = {
        {otasrv_strategy_names, OTASRV_STRATEGY_MAX},
        {otasrv_vop_names, OTASRV_VOP_MAX},
        {otasrv_rollout_state_names, OTASRV_ROLLOUT_STATE_MAX},
        {otasrv_rdev_state_names, OTASRV_RDEV_MAX},
        {otasrv_op_names, OTASRV_OP_MAX},
        {otasrv_offer_names, OTASRV_OFFER_MAX},
        {otasrv_why_names, OTASRV_WHY_MAX},
        {otasrv_report_names, OTASRV_REPORT_MAX},
    };
    for (auto &t : tables)
        for (int i = 0; i < t.n; i++) {
            ASSERT_NE(t.names[i], nullptr) << i;
            EXPECT_EQ(otasrv_rollout_name_index(t.names, t.n, t.names[i]), i);
        }
    EXPECT_EQ(otasrv_rollout_name_index(otasrv_op_names, OTASRV_OP_MAX, "explode"), -1);
    EXPECT_EQ(otasrv_rollout_name_index(otasrv_op_names, OTASRV_OP_MAX, nullptr), -1);
    EXPECT_STREQ(otasrv_report_names[OTASRV_REPORT_IN_PROGRESS], "in_progress");
    EXPECT_STREQ(otasrv_rollout_state_names[OTASRV_ROLLOUT_ROLLED_BACK], "rolled_back");
}

// The formula written in rollout.h, independently: what other languages
// (pytest, the fleet runner) reimplement.
uint32_t reference_bucket(const std::string &rollout, const std::string &device)
{
    std::string bytes = rollout + std::string(1, '\0') + device;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h % 10000);
}

TEST(RolloutBucket, MatchesTheDocumentedFormula)
{
    const char *ids[] = {"dev-0001", "dev-0002", "a", "", "rpi-lab-17", "x/y z"};
    for (const char *rid : {"r1", "r7", "canary-2026"})
        for (const char *id : ids)
            EXPECT_EQ(otasrv_rollout_bucket(rid, id), reference_bucket(rid, id)) << rid << id;
    EXPECT_NE(otasrv_rollout_bucket("r1", "dev-0001"), otasrv_rollout_bucket("r2", "dev-0001"));
}

TEST(RolloutBucket, SpreadsEvenly)
{
    std::vector<int> deciles(10, 0);
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "dev-%05d", i);
        uint32_t b = otasrv_rollout_bucket("r7", id);
        ASSERT_LT(b, 10000u);
        deciles[b / 1000]++;
    }
    for (int d = 0; d < 10; d++)
        EXPECT_NEAR(deciles[d], 1000, 100) << "decile " << d;
}

// ---- strategies over 1,000 devices ----

TEST(RolloutStrategy, ImmediateOffersEveryDevice)
{
    Rollout r = make_rollout(R"({"id":"r-imm","release_id":"app-2.0.0","strategy":"immediate"})");
    Fleet f(1000);
    f.target(r.get());
    ASSERT_EQ(f.rows.size(), 1000u);
    approve_start(r.get(), f);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
    for (size_t i = 0; i < f.rows.size(); i++) {
        otasrv_rollout_decision d = checkin(r.get(), f, i, kT0 + 1);
        ASSERT_EQ(d.offer, OTASRV_OFFER_RELEASE) << i;
        EXPECT_EQ(d.why, OTASRV_WHY_NEW);
        EXPECT_STREQ(d.release_id, "app-2.0.0");
    }
    EXPECT_EQ(r->total[OTASRV_RDEV_OFFERED], 1000u);
    Sim sim(r.get(), f);
    sim.now = kT0 + 1;
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), 1000u);
}

TEST(RolloutStrategy, CanarySelectsTenPercentDeterministically)
{
    Rollout r1 = make_rollout(kCanary10);
    Fleet f1(1000);
    f1.target(r1.get());
    approve_start(r1.get(), f1);
    std::vector<uint32_t> n = stage_sizes(r1.get(), f1);
    EXPECT_NEAR(n[0], 100, 30);
    EXPECT_EQ(n[0] + n[1], 1000u);
    EXPECT_EQ(n[2], 0u);
    EXPECT_EQ(r1->count[0][OTASRV_RDEV_PENDING], n[0]);

    // A second run, another process's worth of state, rows in another order.
    Rollout r2 = make_rollout(kCanary10);
    Fleet f2(1000);
    f2.target(r2.get());
    std::mt19937 rng(42);
    std::shuffle(f2.rows.begin(), f2.rows.end(), rng);
    approve_start(r2.get(), f2);
    EXPECT_EQ(ids_in_stage(f1, 0), ids_in_stage(f2, 0));

    // Another rollout id picks another canary.
    std::string other = kCanary10;
    other.replace(other.find("r-canary"), 8, "r-other1");
    Rollout r3 = make_rollout(other);
    Fleet f3(1000);
    f3.target(r3.get());
    approve_start(r3.get(), f3);
    std::set<std::string> a = ids_in_stage(f1, 0), b = ids_in_stage(f3, 0), both;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(),
                          std::inserter(both, both.begin()));
    EXPECT_LT(both.size(), a.size() / 2);
}

TEST(RolloutStrategy, CanaryOffersTheCanaryFirstThenTheRest)
{
    Rollout r = make_rollout(kCanary10);
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    std::set<std::string> canary = ids_in_stage(f, 0);
    for (size_t i = 0; i < f.rows.size(); i++) {
        otasrv_rollout_decision d = checkin(r.get(), f, i, kT0 + 1);
        bool in_canary = canary.count(f.rows[i].device_id) > 0;
        EXPECT_EQ(d.offer, in_canary ? OTASRV_OFFER_RELEASE : OTASRV_OFFER_NONE);
        if (!in_canary)
            EXPECT_EQ(d.why, OTASRV_WHY_LATER_STAGE);
    }
    Sim sim(r.get(), f);
    sim.now = kT0 + 1;
    // Until the canary finishes, nobody else is offered.
    for (int i = 0; i < 4; i++) {
        sim.step();
        EXPECT_EQ(r->stage, 0);
        EXPECT_EQ(r->total[OTASRV_RDEV_OFFERED] + r->total[OTASRV_RDEV_IN_PROGRESS],
                  (uint32_t)canary.size());
    }
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), 1000u);
    // The canary finished before anyone else was offered.
    int64_t last_canary = 0, first_rest = INT64_MAX;
    for (auto &row : f.rows)
        if (row.stage == 0)
            last_canary = std::max(last_canary, row.finished_ms);
        else
            first_rest = std::min(first_rest, row.offered_ms);
    EXPECT_LE(last_canary, first_rest);
}

TEST(RolloutStrategy, StagedPercentagesAreCumulative)
{
    const char *def = R"({"id":"r-staged","release_id":"app-2.0.0","strategy":"staged",
        "stages":[{"percent":10},{"percent":50},{"percent":100}]})";
    Rollout r = make_rollout(def);
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    std::vector<uint32_t> n = stage_sizes(r.get(), f);
    EXPECT_NEAR(n[0], 100, 30);
    EXPECT_NEAR(n[0] + n[1], 500, 30);
    EXPECT_EQ(n[0] + n[1] + n[2], 1000u);
    for (auto &row : f.rows) {
        int want = row.bucket < 1000 ? 0 : row.bucket < 5000 ? 1 : 2;
        EXPECT_EQ(row.stage, want);
    }
    // Deterministic across runs and independent of order.
    Rollout r2 = make_rollout(def);
    Fleet f2(1000);
    f2.target(r2.get());
    std::reverse(f2.rows.begin(), f2.rows.end());
    approve_start(r2.get(), f2);
    for (int s = 0; s < 3; s++)
        EXPECT_EQ(ids_in_stage(f, s), ids_in_stage(f2, s));

    Sim sim(r.get(), f);
    std::vector<int64_t> opened;
    int stage = 0;
    for (int i = 0; i < 100 && r->state == OTASRV_ROLLOUT_RUNNING; i++) {
        sim.step();
        if (r->stage != stage) {
            stage = r->stage;
            opened.push_back(sim.now);
        }
    }
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(opened.size(), 2u);
}

TEST(RolloutStrategy, PartialStagedLeavesTheRestOut)
{
    Rollout r = make_rollout(R"({"id":"r-part","release_id":"app-2.0.0","strategy":"staged",
        "stages":[{"percent":20}]})");
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    std::vector<uint32_t> n = stage_sizes(r.get(), f);
    EXPECT_NEAR(n[0], 200, 30);
    EXPECT_EQ(n[1], 1000u - n[0]);
    size_t out = 0;
    while (f.rows[out].stage >= 0)
        out++;
    otasrv_rollout_decision d = checkin(r.get(), f, out, kT0);
    EXPECT_EQ(d.offer, OTASRV_OFFER_NONE);
    EXPECT_EQ(d.why, OTASRV_WHY_NOT_SELECTED);
    Sim sim(r.get(), f);
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), n[0]);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_PENDING), n[1]);
}

TEST(RolloutStrategy, RollingBatchesTakeExactCountsInBucketOrder)
{
    const char *def = R"({"id":"r-roll","release_id":"app-2.0.0","strategy":"rolling",
        "stages":[{"batch_size":50},{"batch_size":200},{"percent":100}]})";
    Rollout r = make_rollout(def);
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    std::vector<uint32_t> n = stage_sizes(r.get(), f);
    EXPECT_EQ(n[0], 50u);
    EXPECT_EQ(n[1], 200u);
    EXPECT_EQ(n[2], 750u);
    // Bucket order: every batch-1 bucket is <= every batch-2 bucket.
    uint32_t max0 = 0, min1 = UINT32_MAX, max1 = 0, min2 = UINT32_MAX;
    for (auto &row : f.rows) {
        if (row.stage == 0)
            max0 = std::max(max0, row.bucket);
        if (row.stage == 1) {
            min1 = std::min(min1, row.bucket);
            max1 = std::max(max1, row.bucket);
        }
        if (row.stage == 2)
            min2 = std::min(min2, row.bucket);
    }
    EXPECT_LE(max0, min1);
    EXPECT_LE(max1, min2);

    Rollout r2 = make_rollout(def);
    Fleet f2(1000);
    f2.target(r2.get());
    std::mt19937 rng(7);
    std::shuffle(f2.rows.begin(), f2.rows.end(), rng);
    approve_start(r2.get(), f2);
    for (int s = 0; s < 3; s++)
        EXPECT_EQ(ids_in_stage(f, s), ids_in_stage(f2, s));

    Sim sim(r.get(), f);
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
}

TEST(RolloutStrategy, BatchesBeyondTheFleetAdmitWhatThereIs)
{
    Rollout r = make_rollout(R"({"id":"r-small","release_id":"app-2.0.0","strategy":"rolling",
        "stages":[{"batch_size":3},{"batch_size":100}]})");
    Fleet f(10);
    f.target(r.get());
    approve_start(r.get(), f);
    std::vector<uint32_t> n = stage_sizes(r.get(), f);
    EXPECT_EQ(n[0], 3u);
    EXPECT_EQ(n[1], 7u);
    EXPECT_EQ(n[2], 0u);
}

TEST(RolloutStrategy, ManualOffersOnlyListedDevices)
{
    std::string list;
    std::set<std::string> listed;
    char id[32];
    for (int i = 0; i < 1000; i += 50) {
        snprintf(id, sizeof(id), "dev-%05d", i);
        list += std::string(list.empty() ? "" : ",") + "\"" + id + "\"";
        listed.insert(id);
    }
    list += ",\"not-registered\"";
    Rollout r = make_rollout(R"({"id":"r-man","release_id":"app-2.0.0","strategy":"manual",
        "devices":[)" + list +
                             "]}");
    Fleet f(1000);
    f.target(r.get());
    ASSERT_EQ(f.rows.size(), listed.size());
    for (auto &row : f.rows)
        EXPECT_TRUE(listed.count(row.device_id)) << row.device_id;
    otasrv_device_info in = f.info(1);
    const char *why = nullptr;
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, &why), 0);
    EXPECT_NE(std::string(why).find("not listed"), std::string::npos);
    approve_start(r.get(), f);
    Sim sim(r.get(), f);
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), listed.size());
    // A device outside the table gets nothing.
    otasrv_rollout_decision d;
    otasrv_rollout_decide(r.get(), &in, nullptr, sim.now, &d);
    EXPECT_EQ(d.offer, OTASRV_OFFER_NONE);
    EXPECT_EQ(d.why, OTASRV_WHY_NOT_TARGETED);
}

TEST(RolloutStrategy, ScheduledOffersNothingBeforeStartAt)
{
    const int64_t start_at = kT0 + 3600000;
    Rollout r = make_rollout(R"({"id":"r-sched","release_id":"app-2.0.0","strategy":"scheduled",
        "start_at_ms":)" + std::to_string(start_at) +
                             "}");
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_SCHEDULED);
    EXPECT_EQ(r->started_ms, 0);
    for (int64_t t : {kT0, start_at - 60000, start_at - 1}) {
        otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), t, nullptr);
        EXPECT_EQ(r->state, OTASRV_ROLLOUT_SCHEDULED);
        for (size_t i = 0; i < f.rows.size(); i++) {
            otasrv_rollout_decision d = checkin(r.get(), f, i, t);
            ASSERT_EQ(d.offer, OTASRV_OFFER_NONE);
            ASSERT_EQ(d.why, OTASRV_WHY_SCHEDULED);
        }
    }
    otasrv_rollout_tick_result res;
    otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), start_at, &res);
    EXPECT_TRUE(res.changed);
    EXPECT_EQ(res.from_state, OTASRV_ROLLOUT_SCHEDULED);
    EXPECT_EQ(res.to_state, OTASRV_ROLLOUT_RUNNING);
    EXPECT_EQ(r->started_ms, start_at);
    otasrv_rollout_decision d = checkin(r.get(), f, 0, start_at);
    EXPECT_EQ(d.offer, OTASRV_OFFER_RELEASE);
}

TEST(RolloutStrategy, ScheduledCombinesWithCanary)
{
    const int64_t start_at = kT0 + 60000;
    Rollout r = make_rollout(R"({"id":"r-cs","release_id":"app-2.0.0","strategy":"canary",
        "start_at_ms":)" + std::to_string(start_at) +
                             R"(,"stages":[{"percent":10},{"percent":100}]})");
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_SCHEDULED);
    Sim sim(r.get(), f);
    for (int i = 0; i < 59; i++)
        sim.step();
    EXPECT_EQ(count_state(f, OTASRV_RDEV_PENDING), 1000u);
    sim.step();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED);
    for (auto &row : f.rows)
        EXPECT_GE(row.offered_ms, start_at);
}

// ---- filters ----

TEST(RolloutFilter, DeviceTypeGroupAndTags)
{
    Rollout r = make_rollout(R"({"id":"r-f","release_id":"app-2.0.0","strategy":"immediate",
        "filters":{"device_type":"rpi3b","group":"lab","tags":["eu","indoor"]}})");
    Dev d;
    d.id = "dev-1";
    d.tags = {"indoor", "eu", "spare"};
    Fleet f(0);
    f.devs.push_back(d);
    const char *why = nullptr;
    otasrv_device_info in = f.info(0);
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, &why), 1);

    f.devs[0].type = "rpi4";
    in = f.info(0);
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, &why), 0);
    EXPECT_NE(std::string(why).find("device type"), std::string::npos);

    f.devs[0].type = "rpi3b";
    f.devs[0].group = "field";
    in = f.info(0);
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, &why), 0);
    EXPECT_NE(std::string(why).find("group"), std::string::npos);

    f.devs[0].group = "lab";
    f.devs[0].tags = {"indoor"}; // all of the tags, not any
    in = f.info(0);
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, &why), 0);
    EXPECT_NE(std::string(why).find("tag"), std::string::npos);

    in.device_type = nullptr; // unknown type never matches a type filter
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, nullptr), 0);

    Rollout any = make_rollout(R"({"id":"r-any","release_id":"app-2.0.0","strategy":"immediate",
        "filters":{"device_type":"","group":""}})");
    f.devs[0].type = "anything";
    in = f.info(0);
    EXPECT_EQ(otasrv_rollout_matches(&any->def, &in, nullptr), 1);
}

TEST(RolloutFilter, VersionOperators)
{
    struct {
        const char *op, *filter, *device;
        int match;
    } cases[] = {
        {"<", "2.0.0", "1.9.9", 1},
        {"<", "2.0.0", "2.0.0", 0},
        {"<", "2.0.0", "2.0.0-rc.1", 1},
        {"<", "2.0.0", "10.0.0", 0},
        {"<=", "2.0.0", "2.0.0", 1},
        {"<=", "2.0.0", "2.0.1", 0},
        {"==", "2.0.0", "v2.0.0", 1},
        {"==", "2.0.0", "2.0.1", 0},
        {"!=", "2.0.0", "2.0.1", 1},
        {"!=", "2.0.0", "2.0.0", 0},
        {">=", "1.2.0", "1.2.0", 1},
        {">=", "1.2.0", "1.1.99", 0},
        {">", "1.2.0", "1.10.0", 1},
        {">", "1.2.0", "1.2.0", 0},
        {"<", "2.0.0", "garbage", 0},
        {"!=", "2.0.0", "", 0},
        {"<", "2.0.0-beta", "2.0.0-alpha", 1},
    };
    for (auto &c : cases) {
        Rollout r = make_rollout(std::string(R"({"id":"r-v","release_id":"app-2.0.0",
            "strategy":"immediate","filters":{"current_version":")") +
                                 c.filter + R"(","version_operator":")" + c.op + "\"}}");
        Fleet f(1);
        f.devs[0].version = c.device;
        otasrv_device_info in = f.info(0);
        EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, nullptr), c.match)
            << c.device << " " << c.op << " " << c.filter;
    }
    // The operator defaults to ==.
    Rollout r = make_rollout(R"({"id":"r-v","release_id":"app-2.0.0","strategy":"immediate",
        "filters":{"current_version":"1.0.0"}})");
    EXPECT_EQ(r->def.filter.version_op, OTASRV_VOP_EQ);
    Fleet f(1);
    otasrv_device_info in = f.info(0);
    in.version = nullptr;
    EXPECT_EQ(otasrv_rollout_matches(&r->def, &in, nullptr), 0);
}

TEST(RolloutFilter, FleetTargetingAndSkipOnCheckin)
{
    Rollout r = make_rollout(R"({"id":"r-ft","release_id":"app-2.0.0","strategy":"immediate",
        "filters":{"group":"lab","current_version":"2.0.0","version_operator":"<"}})");
    Fleet f(1000);
    for (size_t i = 0; i < f.devs.size(); i++) {
        f.devs[i].group = i % 2 ? "lab" : "field";
        f.devs[i].version = i % 4 == 3 ? "2.0.0" : "1.5.0";
    }
    f.target(r.get());
    EXPECT_EQ(f.rows.size(), 250u); // odd, and not 3 mod 4
    for (size_t i = 0; i < f.rows.size(); i++)
        EXPECT_EQ(f.dev_of_row[i] % 4, 1u);
    approve_start(r.get(), f);
    // A device updated by other means before it checks in is skipped.
    f.devs[f.dev_of_row[0]].version = "2.0.0";
    otasrv_rollout_decision d = checkin(r.get(), f, 0, kT0 + 1);
    EXPECT_EQ(d.offer, OTASRV_OFFER_NONE);
    EXPECT_EQ(d.why, OTASRV_WHY_FILTERED);
    EXPECT_EQ(f.rows[0].state, OTASRV_RDEV_SKIPPED);
    Sim sim(r.get(), f);
    sim.run();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), 249u);
    EXPECT_NE(std::string(r->reason).find("1 skipped"), std::string::npos) << r->reason;
}

// ---- concurrency, thresholds ----

TEST(RolloutLimits, MaxConcurrentIsNeverExceeded)
{
    Rollout r = make_rollout(R"({"id":"r-mc","release_id":"app-2.0.0","strategy":"immediate",
        "max_concurrent":25})");
    Fleet f(1000);
    f.target(r.get());
    approve_start(r.get(), f);
    uint32_t offered = 0;
    for (size_t i = 0; i < f.rows.size(); i++) {
        otasrv_rollout_decision d = checkin(r.get(), f, i, kT0 + 1);
        if (d.offer == OTASRV_OFFER_RELEASE)
            offered++;
        else
            EXPECT_EQ(d.why, OTASRV_WHY_MAX_CONCURRENT);
    }
    EXPECT_EQ(offered, 25u);
    // The in-flight devices are offered again (same release) without
    // taking another slot.
    for (size_t i = 0; i < f.rows.size(); i++)
        if (f.rows[i].state == OTASRV_RDEV_OFFERED) {
            otasrv_rollout_decision d = checkin(r.get(), f, i, kT0 + 2);
            EXPECT_EQ(d.offer, OTASRV_OFFER_RELEASE);
            EXPECT_EQ(d.why, OTASRV_WHY_IN_FLIGHT);
        }
    EXPECT_EQ(r->total[OTASRV_RDEV_OFFERED], 25u);
    Sim sim(r.get(), f);
    sim.now = kT0 + 2;
    sim.run(10000);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_EQ(sim.max_in_flight_seen, 25u);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_SUCCESS), 1000u);
}

// A canary of exactly 100 devices (a batch), driven by hand.
struct CanaryFixture : ::testing::Test {
    Rollout r;
    Fleet f{1000};
    std::vector<size_t> canary, rest;

    void SetUp() override
    {
        setup(R"({"id":"r-th","release_id":"app-2.0.0","previous_release_id":"app-1.0.0",
            "strategy":"canary","stages":[{"batch_size":100,"success_threshold":80,
            "failure_threshold":10},{"percent":100,"failure_threshold":10}]})");
    }

    void setup(const std::string &def)
    {
        r = make_rollout(def);
        f.target(r.get());
        approve_start(r.get(), f);
        canary.clear();
        rest.clear();
        for (size_t i = 0; i < f.rows.size(); i++)
            (f.rows[i].stage == 0 ? canary : rest).push_back(i);
        ASSERT_EQ(canary.size(), 100u);
        for (size_t i : canary)
            ASSERT_EQ(checkin(r.get(), f, i, kT0 + 1).offer, OTASRV_OFFER_RELEASE);
    }

    void finish(size_t from, size_t to, otasrv_report st, int64_t now = kT0 + 10)
    {
        for (size_t k = from; k < to; k++)
            report(r.get(), &f.rows[canary[k]], st, now);
    }

    otasrv_rollout_tick_result tick(int64_t now = kT0 + 20)
    {
        otasrv_rollout_tick_result res;
        otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), now, &res);
        return res;
    }
};

TEST_F(CanaryFixture, StageAdvancesOnTheSuccessThreshold)
{
    finish(0, 79, OTASRV_REPORT_SUCCESS);
    finish(79, 100, OTASRV_REPORT_IN_PROGRESS);
    otasrv_rollout_tick_result res = tick();
    EXPECT_FALSE(res.changed);
    EXPECT_EQ(r->stage, 0);
    EXPECT_EQ(checkin(r.get(), f, rest[0], kT0 + 21).why, OTASRV_WHY_LATER_STAGE);

    finish(79, 80, OTASRV_REPORT_SUCCESS); // 80 of 100
    res = tick();
    EXPECT_TRUE(res.changed);
    EXPECT_EQ(res.from_stage, 0);
    EXPECT_EQ(res.to_stage, 1);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
    EXPECT_NE(std::string(r->reason).find("stage 1 opened"), std::string::npos) << r->reason;
    EXPECT_EQ(checkin(r.get(), f, rest[0], kT0 + 21).offer, OTASRV_OFFER_RELEASE);
}

TEST_F(CanaryFixture, StageAdvancesWhenAllFinishedWithinTheFailureAllowance)
{
    setup(R"({"id":"r-th2","release_id":"app-2.0.0","strategy":"canary",
        "stages":[{"batch_size":100,"success_threshold":95,"failure_threshold":5},
        {"percent":100}]})");
    finish(0, 94, OTASRV_REPORT_SUCCESS);
    finish(94, 99, OTASRV_REPORT_FAILURE); // 5 failures: not more than 5%
    EXPECT_FALSE(tick().changed);
    finish(99, 100, OTASRV_REPORT_SUCCESS); // 95 succeeded
    EXPECT_EQ(tick().to_stage, 1);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
}

TEST_F(CanaryFixture, AutoPauseOnTheFailureThreshold)
{
    setup(R"({"id":"r-ap","release_id":"app-2.0.0","strategy":"canary","auto_pause":true,
        "stages":[{"batch_size":100,"success_threshold":80,"failure_threshold":10},
        {"percent":100,"failure_threshold":10}]})");
    finish(0, 10, OTASRV_REPORT_FAILURE); // 10%: allowed
    EXPECT_FALSE(tick().changed);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
    finish(10, 11, OTASRV_REPORT_FAILURE); // 11%: trips
    otasrv_rollout_tick_result res = tick();
    EXPECT_TRUE(res.changed);
    EXPECT_EQ(res.to_state, OTASRV_ROLLOUT_PAUSED);
    EXPECT_NE(std::string(r->reason).find("stage 0: 11 of 100 devices failed (more than 10%)"),
              std::string::npos)
        << r->reason;
    EXPECT_EQ(checkin(r.get(), f, rest[0], kT0 + 30).why, OTASRV_WHY_PAUSED);
    // Devices in flight may ask again for their release while paused.
    otasrv_rollout_decision d = checkin(r.get(), f, canary[50], kT0 + 30);
    EXPECT_EQ(d.offer, OTASRV_OFFER_RELEASE);
    EXPECT_EQ(d.why, OTASRV_WHY_IN_FLIGHT);
    // Still paused at the next tick; no rollback without auto_rollback.
    EXPECT_FALSE(tick(kT0 + 40).changed);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_ROLLBACK_ORDERED), 0u);

    // Resume accepts the 11 failures; 10 more are within the allowance again.
    ota_err err = {};
    ASSERT_EQ(
        otasrv_rollout_act(r.get(), OTASRV_OP_RESUME, f.rows.data(), f.rows.size(), kT0 + 50, &err),
        0)
        << err.reason;
    EXPECT_EQ(r->fail_ack[0], 11u);
    finish(11, 21, OTASRV_REPORT_FAILURE, kT0 + 60);
    EXPECT_EQ(tick(kT0 + 70).to_state, OTASRV_ROLLOUT_RUNNING);
    finish(21, 22, OTASRV_REPORT_FAILURE, kT0 + 80);
    EXPECT_EQ(tick(kT0 + 90).to_state, OTASRV_ROLLOUT_PAUSED);
    EXPECT_NE(std::string(r->reason).find("since the resume"), std::string::npos) << r->reason;
}

TEST_F(CanaryFixture, FailsWithoutAutoPauseOrRollback)
{
    setup(R"({"id":"r-fail","release_id":"app-2.0.0","strategy":"canary",
        "stages":[{"batch_size":100,"failure_threshold":10,"max_failures":2},
        {"percent":100}]})");
    finish(0, 2, OTASRV_REPORT_FAILURE);
    EXPECT_FALSE(tick().changed);
    finish(2, 3, OTASRV_REPORT_FAILURE); // 3 > max_failures 2, though only 3%
    otasrv_rollout_tick_result res = tick();
    EXPECT_EQ(res.to_state, OTASRV_ROLLOUT_FAILED);
    EXPECT_NE(std::string(r->reason).find("(more than 2)"), std::string::npos) << r->reason;
    EXPECT_EQ(r->finished_ms, kT0 + 20);
    EXPECT_EQ(checkin(r.get(), f, rest[0], kT0 + 30).why, OTASRV_WHY_ENDED);
    EXPECT_EQ(checkin(r.get(), f, canary[50], kT0 + 30).why, OTASRV_WHY_ENDED);
}

TEST_F(CanaryFixture, StrictDefaultsTripOnTheFirstFailure)
{
    setup(R"({"id":"r-strict","release_id":"app-2.0.0","strategy":"canary",
        "stages":[{"batch_size":100},{"percent":100}]})");
    EXPECT_EQ(r->def.stages[0].success_threshold, 100u);
    EXPECT_EQ(r->def.stages[0].failure_threshold, 0u);
    finish(0, 99, OTASRV_REPORT_SUCCESS);
    EXPECT_FALSE(tick().changed);
    finish(99, 100, OTASRV_REPORT_FAILURE);
    EXPECT_EQ(tick().to_state, OTASRV_ROLLOUT_FAILED);
}

TEST_F(CanaryFixture, AutoRollbackOrdersExactlyTheAffectedDevices)
{
    setup(R"({"id":"r-rb","release_id":"app-2.0.0","previous_release_id":"app-1.0.0",
        "strategy":"canary","auto_rollback":true,"auto_pause":true,"report_timeout_ms":60000,
        "stages":[{"batch_size":100,"success_threshold":80,"failure_threshold":10},
        {"percent":100}]})");
    // Canary: 40 succeed, 20 in progress, 20 offered (silent so far),
    // 5 failed, 15 silent past the timeout.
    finish(0, 40, OTASRV_REPORT_SUCCESS);
    finish(40, 60, OTASRV_REPORT_IN_PROGRESS, kT0 + 50000);
    finish(60, 65, OTASRV_REPORT_FAILURE);
    for (size_t k = 65; k < 80; k++)
        report(r.get(), &f.rows[canary[k]], OTASRV_REPORT_IN_PROGRESS, kT0 + 2);
    for (size_t k = 80; k < 100; k++)
        f.rows[canary[k]].last_ms = kT0 + 30000; // re-offered later, say
    std::set<std::string> affected;
    for (size_t k = 0; k < 60; k++)
        affected.insert(f.rows[canary[k]].device_id);
    for (size_t k = 80; k < 100; k++)
        affected.insert(f.rows[canary[k]].device_id);

    // At +60002 the 15 silent ones time out: 5 + 15 = 20% > 10%.
    otasrv_rollout_tick_result res = tick(kT0 + 60002);
    EXPECT_EQ(res.timed_out, 15u);
    EXPECT_EQ(res.to_state, OTASRV_ROLLOUT_ROLLED_BACK);
    EXPECT_EQ(res.rollback_ordered, 80u);
    EXPECT_NE(std::string(r->reason).find("rolled back"), std::string::npos) << r->reason;

    std::set<std::string> ordered;
    for (auto &row : f.rows)
        if (row.state == OTASRV_RDEV_ROLLBACK_ORDERED) {
            ordered.insert(row.device_id);
            EXPECT_EQ(row.rollback_ms, kT0 + 60002);
            EXPECT_TRUE(row.dirty);
        }
    EXPECT_EQ(ordered, affected);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_FAILURE), 5u);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_TIMED_OUT), 15u);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_PENDING), 900u);

    // The ordered devices are told to install the previous release; the
    // others get nothing.
    for (size_t i = 0; i < f.rows.size(); i++) {
        otasrv_rollout_decision d = checkin(r.get(), f, i, kT0 + 70000);
        if (affected.count(f.rows[i].device_id)) {
            EXPECT_EQ(d.offer, OTASRV_OFFER_ROLLBACK);
            EXPECT_EQ(d.why, OTASRV_WHY_ROLLBACK_ORDERED);
            EXPECT_STREQ(d.release_id, "app-1.0.0");
        } else {
            EXPECT_EQ(d.offer, OTASRV_OFFER_NONE);
        }
    }
    // Reports about the rollback.
    report(r.get(), &f.rows[canary[0]], OTASRV_REPORT_IN_PROGRESS, kT0 + 71000, 1);
    EXPECT_EQ(f.rows[canary[0]].state, OTASRV_RDEV_ROLLBACK_ORDERED);
    report(r.get(), &f.rows[canary[0]], OTASRV_REPORT_SUCCESS, kT0 + 72000, 1);
    EXPECT_EQ(f.rows[canary[0]].state, OTASRV_RDEV_ROLLED_BACK);
    report(r.get(), &f.rows[canary[0]], OTASRV_REPORT_SUCCESS, kT0 + 72001, 1); // duplicate
    report(r.get(), &f.rows[canary[1]], OTASRV_REPORT_FAILURE, kT0 + 72000, 1);
    EXPECT_EQ(f.rows[canary[1]].state, OTASRV_RDEV_ROLLBACK_FAILED);
    EXPECT_EQ(checkin(r.get(), f, canary[0], kT0 + 73000).why, OTASRV_WHY_DONE);
    // A late release report from an ordered device changes nothing.
    report(r.get(), &f.rows[canary[2]], OTASRV_REPORT_SUCCESS, kT0 + 73000);
    EXPECT_EQ(f.rows[canary[2]].state, OTASRV_RDEV_ROLLBACK_ORDERED);
    // A timed-out device that turns out to have the release goes back too.
    report(r.get(), &f.rows[canary[70]], OTASRV_REPORT_SUCCESS, kT0 + 74000);
    EXPECT_EQ(f.rows[canary[70]].state, OTASRV_RDEV_ROLLBACK_ORDERED);
    // ... but not one that reports it failed.
    report(r.get(), &f.rows[canary[71]], OTASRV_REPORT_FAILURE, kT0 + 74000);
    EXPECT_EQ(f.rows[canary[71]].state, OTASRV_RDEV_FAILURE);
    // Rollback reports from a device never ordered back are refused.
    ota_err err = {};
    EXPECT_EQ(otasrv_rollout_on_report(r.get(), &f.rows[canary[61]], 1, OTASRV_REPORT_SUCCESS,
                                       kT0 + 75000, &err),
              -EINVAL);
    EXPECT_NE(std::string(err.reason).find("no rollback was ordered"), std::string::npos);
}

TEST_F(CanaryFixture, AutoRollbackAlsoFiresWhilePaused)
{
    setup(R"({"id":"r-rbp","release_id":"app-2.0.0","previous_release_id":"app-1.0.0",
        "strategy":"canary","auto_rollback":true,
        "stages":[{"batch_size":100,"success_threshold":80,"failure_threshold":10},
        {"percent":100}]})");
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_PAUSE, nullptr, 0, kT0 + 5, &err), 0);
    finish(0, 30, OTASRV_REPORT_FAILURE);
    finish(30, 50, OTASRV_REPORT_SUCCESS);
    otasrv_rollout_tick_result res = tick();
    EXPECT_EQ(res.to_state, OTASRV_ROLLOUT_ROLLED_BACK);
    EXPECT_EQ(res.rollback_ordered, 70u); // 20 succeeded + 50 still offered
}

TEST_F(CanaryFixture, ReportTimeoutCountsSilentDevicesAsFailed)
{
    setup(R"({"id":"r-to","release_id":"app-2.0.0","strategy":"canary","auto_pause":true,
        "report_timeout_ms":30000,
        "stages":[{"batch_size":100,"success_threshold":50,"failure_threshold":50},
        {"percent":100}]})");
    // 60 devices keep reporting, 40 stay silent after the offer at +1.
    for (int64_t t = kT0 + 10000; t <= kT0 + 40000; t += 10000) {
        finish(0, 60, OTASRV_REPORT_IN_PROGRESS, t);
        otasrv_rollout_tick_result res = tick(t);
        EXPECT_EQ(res.timed_out, t < kT0 + 30001 ? 0u : 40u) << t - kT0;
    }
    // Exactly at offer + timeout: +30001.
    EXPECT_EQ(count_state(f, OTASRV_RDEV_TIMED_OUT), 40u);
    for (size_t k = 60; k < 100; k++)
        EXPECT_EQ(f.rows[canary[k]].finished_ms, kT0 + 40000);
    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(r.get(), f.rows.data(), f.rows.size(), &m), 0);
    EXPECT_EQ(m.failed, 40u);
    EXPECT_EQ(m.in_flight, 60u);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING); // 40% is within 50%
    // The reporting ones go silent too: 100 failed > 50%: auto-pause.
    otasrv_rollout_tick_result res = tick(kT0 + 70000);
    EXPECT_EQ(res.timed_out, 60u);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_PAUSED);
    // A late report revives a timed-out device; it may still succeed.
    report(r.get(), &f.rows[canary[99]], OTASRV_REPORT_IN_PROGRESS, kT0 + 71000);
    EXPECT_EQ(f.rows[canary[99]].state, OTASRV_RDEV_IN_PROGRESS);
    EXPECT_EQ(f.rows[canary[99]].finished_ms, 0);
    report(r.get(), &f.rows[canary[99]], OTASRV_REPORT_SUCCESS, kT0 + 72000);
    EXPECT_EQ(f.rows[canary[99]].state, OTASRV_RDEV_SUCCESS);
}

TEST(RolloutTimeout, NoTimeoutWhenZeroAndNoneBeforeTheLimit)
{
    Rollout r = make_rollout(R"({"id":"r-nt","release_id":"app-2.0.0","strategy":"immediate"})");
    Fleet f(10);
    f.target(r.get());
    approve_start(r.get(), f);
    for (size_t i = 0; i < f.rows.size(); i++)
        checkin(r.get(), f, i, kT0);
    otasrv_rollout_tick_result res;
    otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), kT0 + 1000LL * 86400 * 365, &res);
    EXPECT_EQ(res.timed_out, 0u);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_OFFERED), 10u);
}

// ---- reports ----

TEST(RolloutReport, DuplicatesAndStaleReportsChangeNothing)
{
    Rollout r = make_rollout(R"({"id":"r-rep","release_id":"app-2.0.0","strategy":"immediate",
        "stages":[{"percent":100,"failure_threshold":100}]})");
    Fleet f(3);
    f.target(r.get());
    approve_start(r.get(), f);
    ota_err err = {};
    // Never offered: refused.
    EXPECT_EQ(otasrv_rollout_on_report(r.get(), &f.rows[0], 0, OTASRV_REPORT_SUCCESS, kT0, &err),
              -EINVAL);
    EXPECT_NE(std::string(err.reason).find("was not offered"), std::string::npos) << err.reason;
    ota_err_clear(&err);
    EXPECT_EQ(otasrv_rollout_on_report(r.get(), &f.rows[0], 0, OTASRV_REPORT_MAX, kT0, &err),
              -EINVAL);

    checkin(r.get(), f, 0, kT0 + 1);
    EXPECT_EQ(f.rows[0].state, OTASRV_RDEV_OFFERED);
    EXPECT_EQ(f.rows[0].offered_ms, kT0 + 1);
    report(r.get(), &f.rows[0], OTASRV_REPORT_IN_PROGRESS, kT0 + 2);
    report(r.get(), &f.rows[0], OTASRV_REPORT_IN_PROGRESS, kT0 + 3);
    EXPECT_EQ(f.rows[0].started_ms, kT0 + 2);
    EXPECT_EQ(f.rows[0].last_ms, kT0 + 3);
    report(r.get(), &f.rows[0], OTASRV_REPORT_SUCCESS, kT0 + 4);
    otasrv_rollout_device before = f.rows[0];
    report(r.get(), &f.rows[0], OTASRV_REPORT_SUCCESS, kT0 + 5);     // duplicate
    report(r.get(), &f.rows[0], OTASRV_REPORT_IN_PROGRESS, kT0 + 6); // stale
    report(r.get(), &f.rows[0], OTASRV_REPORT_FAILURE, kT0 + 7);     // stale
    EXPECT_EQ(memcmp(&before, &f.rows[0], sizeof(before)), 0);
    EXPECT_EQ(r->total[OTASRV_RDEV_SUCCESS], 1u);

    checkin(r.get(), f, 1, kT0 + 1);
    report(r.get(), &f.rows[1], OTASRV_REPORT_FAILURE, kT0 + 2);
    report(r.get(), &f.rows[1], OTASRV_REPORT_SUCCESS, kT0 + 3); // stale
    EXPECT_EQ(f.rows[1].state, OTASRV_RDEV_FAILURE);
    EXPECT_EQ(checkin(r.get(), f, 1, kT0 + 4).why, OTASRV_WHY_DONE);
    // The incremental counts equal a recount.
    otasrv_rollout copy = *r;
    otasrv_rollout_recount(&copy, f.rows.data(), f.rows.size());
    EXPECT_EQ(memcmp(copy.count, r->count, sizeof(copy.count)), 0);
    EXPECT_EQ(memcmp(copy.total, r->total, sizeof(copy.total)), 0);
    copy.def.devices = nullptr; // owned by r
}

// ---- lifecycle ----

// Brings a fresh rollout (with a small fleet) into state s by legal steps.
Rollout rollout_in(otasrv_rollout_state s, Fleet &f)
{
    std::string start_at = s == OTASRV_ROLLOUT_SCHEDULED ? std::to_string(kT0 + 3600000) : "0";
    Rollout r = make_rollout(R"({"id":"r-life","release_id":"app-2.0.0",
        "previous_release_id":"app-1.0.0","strategy":"immediate","start_at_ms":)" +
                             start_at + "}");
    ota_err err = {};
    f.target(r.get());
    auto act = [&](otasrv_op op) {
        EXPECT_EQ(otasrv_rollout_act(r.get(), op, f.rows.data(), f.rows.size(), kT0, &err), 0)
            << err.reason;
    };
    auto all_report = [&](otasrv_report st) {
        for (size_t i = 0; i < f.rows.size(); i++) {
            checkin(r.get(), f, i, kT0);
            report(r.get(), &f.rows[i], st, kT0);
        }
        otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), kT0, nullptr);
    };
    switch (s) {
    case OTASRV_ROLLOUT_DRAFT:
        break;
    case OTASRV_ROLLOUT_APPROVED:
        act(OTASRV_OP_APPROVE);
        break;
    case OTASRV_ROLLOUT_SCHEDULED:
    case OTASRV_ROLLOUT_RUNNING:
        act(OTASRV_OP_APPROVE);
        act(OTASRV_OP_START);
        break;
    case OTASRV_ROLLOUT_PAUSED:
        act(OTASRV_OP_APPROVE);
        act(OTASRV_OP_START);
        act(OTASRV_OP_PAUSE);
        break;
    case OTASRV_ROLLOUT_COMPLETED:
        act(OTASRV_OP_APPROVE);
        act(OTASRV_OP_START);
        all_report(OTASRV_REPORT_SUCCESS);
        break;
    case OTASRV_ROLLOUT_FAILED:
        act(OTASRV_OP_APPROVE);
        act(OTASRV_OP_START);
        all_report(OTASRV_REPORT_FAILURE);
        break;
    case OTASRV_ROLLOUT_CANCELLED:
        act(OTASRV_OP_CANCEL);
        break;
    case OTASRV_ROLLOUT_ROLLED_BACK:
        act(OTASRV_OP_APPROVE);
        act(OTASRV_OP_START);
        act(OTASRV_OP_ROLLBACK);
        break;
    default:
        ADD_FAILURE();
    }
    EXPECT_EQ(r->state, s) << otasrv_rollout_state_names[s];
    return r;
}

TEST(RolloutLifecycle, EveryActionFromEveryState)
{
    // Each cell: 0 with the state it leads to, or the refusal and a piece of
    // its reason.
    struct Cell {
        int rc;
        otasrv_rollout_state to;
        const char *reason;
    };
    const Cell ok_approved = {0, OTASRV_ROLLOUT_APPROVED, ""};
    const Cell ok_running = {0, OTASRV_ROLLOUT_RUNNING, ""};
    const Cell ok_paused = {0, OTASRV_ROLLOUT_PAUSED, ""};
    const Cell ok_cancelled = {0, OTASRV_ROLLOUT_CANCELLED, ""};
    const Cell ok_rolled = {0, OTASRV_ROLLOUT_ROLLED_BACK, ""};
    auto refuse = [](int rc, const char *why) { return Cell{rc, OTASRV_ROLLOUT_STATE_MAX, why}; };
    // Rows in the order of enum otasrv_rollout_state; columns: approve,
    // start, pause, resume, cancel, rollback.
    // activate: a blue_green action, refused here (RolloutBlueGreen tests it).
    const Cell not_bg = refuse(-EINVAL, "not blue_green");
    const Cell table[OTASRV_ROLLOUT_STATE_MAX][OTASRV_OP_ACTIVATE] = {
        /* draft */ {ok_approved, refuse(-EINVAL, "not approved"), refuse(-EINVAL, "not started"),
                     refuse(-EINVAL, "not started"), ok_cancelled,
                     refuse(-EINVAL, "has not started")},
        /* approved */
        {refuse(-EALREADY, "already approved"), ok_running, refuse(-EINVAL, "not started"),
         refuse(-EINVAL, "not started"), ok_cancelled, refuse(-EINVAL, "has not started")},
        /* scheduled */
        {refuse(-EALREADY, "already approved"), refuse(-EALREADY, "already started"), ok_paused,
         refuse(-EALREADY, "not paused"), ok_cancelled, refuse(-EINVAL, "has not started")},
        /* running */
        {refuse(-EALREADY, "already approved"), refuse(-EALREADY, "already started"), ok_paused,
         refuse(-EALREADY, "not paused"), ok_cancelled, ok_rolled},
        /* paused */
        {refuse(-EALREADY, "already approved"), refuse(-EINVAL, "paused: resume it"),
         refuse(-EALREADY, "already paused"), ok_running, ok_cancelled, ok_rolled},
        /* completed */
        {refuse(-EINVAL, "rollout is completed"), refuse(-EINVAL, "rollout is completed"),
         refuse(-EINVAL, "rollout is completed"), refuse(-EINVAL, "rollout is completed"),
         refuse(-EINVAL, "rollout is completed"), ok_rolled},
        /* failed */
        {refuse(-EINVAL, "rollout is failed"), refuse(-EINVAL, "rollout is failed"),
         refuse(-EINVAL, "rollout is failed"), refuse(-EINVAL, "rollout is failed"),
         refuse(-EINVAL, "rollout is failed"), ok_rolled},
        /* cancelled */
        {refuse(-EINVAL, "rollout is cancelled"), refuse(-EINVAL, "rollout is cancelled"),
         refuse(-EINVAL, "rollout is cancelled"), refuse(-EINVAL, "rollout is cancelled"),
         refuse(-EALREADY, "already cancelled"), ok_rolled},
        /* rolled_back */
        {refuse(-EINVAL, "rollout is rolled_back"), refuse(-EINVAL, "rollout is rolled_back"),
         refuse(-EINVAL, "rollout is rolled_back"), refuse(-EINVAL, "rollout is rolled_back"),
         refuse(-EINVAL, "rollout is rolled_back"), refuse(-EALREADY, "already rolled back")},
    };
    for (int s = 0; s < OTASRV_ROLLOUT_STATE_MAX; s++)
        for (int op = 0; op < OTASRV_OP_MAX; op++) {
            const Cell &c = op == OTASRV_OP_ACTIVATE ? not_bg : table[s][op];
            Fleet f(20);
            Rollout r = rollout_in((otasrv_rollout_state)s, f);
            json_t *before = nullptr;
            ASSERT_EQ(otasrv_rollout_status_to_json(r.get(), &before), 0);
            Json before_j(before);
            ota_err err = {};
            int rc = otasrv_rollout_act(r.get(), (otasrv_op)op, f.rows.data(), f.rows.size(),
                                        kT0 + 1000, &err);
            const char *where = otasrv_op_names[op];
            EXPECT_EQ(rc, c.rc) << where << " from " << otasrv_rollout_state_names[s] << ": "
                                << err.reason;
            if (c.rc == 0) {
                EXPECT_EQ(r->state, c.to) << where << " from " << otasrv_rollout_state_names[s];
                EXPECT_EQ(r->changed_ms, kT0 + 1000);
            } else {
                EXPECT_NE(std::string(err.reason).find(c.reason), std::string::npos)
                    << where << " from " << otasrv_rollout_state_names[s] << ": " << err.reason;
                json_t *after = nullptr;
                ASSERT_EQ(otasrv_rollout_status_to_json(r.get(), &after), 0);
                Json after_j(after);
                EXPECT_EQ(dump(before), dump(after)) << where;
            }
        }
}

TEST(RolloutLifecycle, StartACancelledRolloutIsRefusedWithItsReason)
{
    Fleet f(5);
    Rollout r = rollout_in(OTASRV_ROLLOUT_CANCELLED, f);
    ota_err err = {};
    EXPECT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_START, f.rows.data(), f.rows.size(), kT0, &err),
              -EINVAL);
    EXPECT_STREQ(err.reason, "rollout is cancelled");
}

TEST(RolloutLifecycle, RefusalsOfStartAndRollback)
{
    ota_err err = {};
    Rollout r = make_rollout(R"({"id":"r-e","release_id":"app-2.0.0","strategy":"immediate"})");
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_APPROVE, nullptr, 0, kT0, &err), 0);
    EXPECT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_START, nullptr, 0, kT0, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("no device"), std::string::npos) << err.reason;
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_APPROVED);
    Fleet f(5);
    f.target(r.get());
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_START, f.rows.data(), f.rows.size(), kT0, &err),
              0);
    ota_err_clear(&err);
    EXPECT_EQ(
        otasrv_rollout_act(r.get(), OTASRV_OP_ROLLBACK, f.rows.data(), f.rows.size(), kT0, &err),
        -EINVAL);
    EXPECT_NE(std::string(err.reason).find("no previous_release_id"), std::string::npos);
    ota_err_clear(&err);
    EXPECT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_MAX, nullptr, 0, kT0, &err), -EINVAL);
}

TEST(RolloutLifecycle, PauseAndResumeAScheduledRollout)
{
    Fleet f(5);
    Rollout r = rollout_in(OTASRV_ROLLOUT_SCHEDULED, f);
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_PAUSE, nullptr, 0, kT0 + 1, &err), 0);
    otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), kT0 + 7200000, nullptr);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_PAUSED); // the start time passes while paused
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_RESUME, nullptr, 0, kT0 + 7200001, &err), 0);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_RUNNING);
    EXPECT_EQ(r->started_ms, kT0 + 7200001);

    Fleet g(5);
    Rollout s = rollout_in(OTASRV_ROLLOUT_SCHEDULED, g);
    ASSERT_EQ(otasrv_rollout_act(s.get(), OTASRV_OP_PAUSE, nullptr, 0, kT0 + 1, &err), 0);
    ASSERT_EQ(otasrv_rollout_act(s.get(), OTASRV_OP_RESUME, nullptr, 0, kT0 + 2, &err), 0);
    EXPECT_EQ(s->state, OTASRV_ROLLOUT_SCHEDULED); // still before start_at
}

TEST(RolloutLifecycle, DecisionsPerRolloutState)
{
    struct {
        otasrv_rollout_state s;
        otasrv_why why;
    } cases[] = {
        {OTASRV_ROLLOUT_DRAFT, OTASRV_WHY_NOT_STARTED},
        {OTASRV_ROLLOUT_APPROVED, OTASRV_WHY_NOT_STARTED},
        {OTASRV_ROLLOUT_SCHEDULED, OTASRV_WHY_SCHEDULED},
        {OTASRV_ROLLOUT_RUNNING, OTASRV_WHY_NEW},
        {OTASRV_ROLLOUT_PAUSED, OTASRV_WHY_PAUSED},
        {OTASRV_ROLLOUT_CANCELLED, OTASRV_WHY_ENDED},
    };
    for (auto &c : cases) {
        Fleet f(3);
        Rollout r = rollout_in(c.s, f);
        otasrv_rollout_decision d;
        otasrv_device_info in = f.row_info(0);
        otasrv_rollout_decide(r.get(), &in, &f.rows[0], kT0 + 1, &d);
        EXPECT_EQ(d.why, c.why) << otasrv_rollout_state_names[c.s];
        EXPECT_EQ(d.offer, c.why == OTASRV_WHY_NEW ? OTASRV_OFFER_RELEASE : OTASRV_OFFER_NONE);
        EXPECT_EQ(f.rows[0].state, OTASRV_RDEV_PENDING); // decide changes nothing
    }
}

TEST(RolloutLifecycle, CancelStopsOffersButKeepsReports)
{
    Fleet f(10);
    Rollout r = rollout_in(OTASRV_ROLLOUT_RUNNING, f);
    checkin(r.get(), f, 0, kT0 + 1);
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_CANCEL, nullptr, 0, kT0 + 2, &err), 0);
    EXPECT_EQ(r->finished_ms, kT0 + 2);
    EXPECT_EQ(checkin(r.get(), f, 1, kT0 + 3).why, OTASRV_WHY_ENDED);
    EXPECT_EQ(checkin(r.get(), f, 0, kT0 + 3).why, OTASRV_WHY_ENDED);
    report(r.get(), &f.rows[0], OTASRV_REPORT_SUCCESS, kT0 + 4);
    EXPECT_EQ(f.rows[0].state, OTASRV_RDEV_SUCCESS);
    otasrv_rollout_tick(r.get(), f.rows.data(), f.rows.size(), kT0 + 5, nullptr);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_CANCELLED);
}

TEST(RolloutLifecycle, ManualRollbackOfACompletedRollout)
{
    Fleet f(20);
    Rollout r = rollout_in(OTASRV_ROLLOUT_COMPLETED, f);
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_ROLLBACK, f.rows.data(), f.rows.size(), kT0 + 9,
                                 &err),
              0);
    EXPECT_EQ(count_state(f, OTASRV_RDEV_ROLLBACK_ORDERED), 20u);
    EXPECT_STREQ(r->reason, "rolled back by the operator");
    otasrv_rollout_decision d = checkin(r.get(), f, 3, kT0 + 10);
    EXPECT_EQ(d.offer, OTASRV_OFFER_ROLLBACK);
    EXPECT_STREQ(d.release_id, "app-1.0.0");
}

// ---- metrics ----

TEST(RolloutMetrics, CountsRatesAndDurations)
{
    Rollout r = make_rollout(R"({"id":"r-m","release_id":"app-2.0.0","strategy":"staged",
        "stages":[{"batch_size":12},{"batch_size":4}],"report_timeout_ms":100000})");
    Fleet f(20);
    f.target(r.get());
    approve_start(r.get(), f);
    std::vector<size_t> s0;
    for (size_t i = 0; i < f.rows.size(); i++)
        if (f.rows[i].stage == 0)
            s0.push_back(i);
    ASSERT_EQ(s0.size(), 12u);
    // Stage 0: 10 successes taking 100, 200, ... 1000 ms; 1 failure; 1
    // in flight. Stage 1 and the 4 left out: pending.
    for (size_t k = 0; k < 12; k++)
        checkin(r.get(), f, s0[k], kT0);
    for (size_t k = 0; k < 10; k++)
        report(r.get(), &f.rows[s0[k]], OTASRV_REPORT_SUCCESS, kT0 + 100 * (int64_t)(k + 1));
    report(r.get(), &f.rows[s0[10]], OTASRV_REPORT_FAILURE, kT0 + 50);

    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(r.get(), f.rows.data(), f.rows.size(), &m), 0);
    EXPECT_EQ(m.devices, 20u);
    EXPECT_EQ(m.selected, 16u);
    EXPECT_EQ(m.by_state[OTASRV_RDEV_SUCCESS], 10u);
    EXPECT_EQ(m.by_state[OTASRV_RDEV_FAILURE], 1u);
    EXPECT_EQ(m.by_state[OTASRV_RDEV_OFFERED], 1u);
    EXPECT_EQ(m.by_state[OTASRV_RDEV_PENDING], 8u);
    EXPECT_EQ(m.in_flight, 1u);
    EXPECT_EQ(m.succeeded, 10u);
    EXPECT_EQ(m.failed, 1u);
    EXPECT_DOUBLE_EQ(m.success_rate, 10.0 / 11);
    EXPECT_DOUBLE_EQ(m.failure_rate, 1.0 / 11);
    EXPECT_DOUBLE_EQ(m.progress, 11.0 / 16);
    EXPECT_EQ(m.n_durations, 10u);
    EXPECT_DOUBLE_EQ(m.mean_ms, 550.0);
    EXPECT_EQ(m.p50_ms, 500);
    EXPECT_EQ(m.p95_ms, 1000);
    ASSERT_EQ(m.n_stages, 2);
    EXPECT_EQ(m.stages[0].devices, 12u);
    EXPECT_EQ(m.stages[0].success, 10u);
    EXPECT_EQ(m.stages[0].failed, 1u);
    EXPECT_EQ(m.stages[0].in_flight, 1u);
    EXPECT_EQ(m.stages[0].pending, 0u);
    EXPECT_EQ(m.stages[1].devices, 4u);
    EXPECT_EQ(m.stages[1].pending, 4u);

    json_t *j = nullptr;
    ASSERT_EQ(otasrv_rollout_metrics_to_json(&m, &j), 0);
    Json jj(j);
    EXPECT_EQ(json_integer_value(json_object_get(j, "selected")), 16);
    EXPECT_EQ(json_integer_value(json_object_get(json_object_get(j, "by_state"), "pending")), 8);
    EXPECT_DOUBLE_EQ(json_real_value(json_object_get(j, "success_rate")), 10.0 / 11);
    json_t *dur = json_object_get(j, "duration_ms");
    EXPECT_EQ(json_integer_value(json_object_get(dur, "p95")), 1000);
    EXPECT_DOUBLE_EQ(json_real_value(json_object_get(dur, "mean")), 550.0);
    EXPECT_EQ(json_array_size(json_object_get(j, "stages")), 2u);
    EXPECT_EQ(json_integer_value(
                  json_object_get(json_array_get(json_object_get(j, "stages"), 1), "pending")),
              4);
}

TEST(RolloutMetrics, EmptyTable)
{
    Rollout r = make_rollout(R"({"id":"r-m0","release_id":"app-2.0.0","strategy":"immediate"})");
    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(r.get(), nullptr, 0, &m), 0);
    EXPECT_EQ(m.devices, 0u);
    EXPECT_EQ(m.success_rate, 0.0);
    EXPECT_EQ(m.progress, 1.0);
    EXPECT_EQ(m.p95_ms, 0);
}

// ---- JSON ----

const char *kFull =
    R"({"id":"r7","name":"video-app 2.0 to lab","release_id":"video-app-2.0.0",)"
    R"("previous_release_id":"video-app-1.0.0","strategy":"canary","stages":[)"
    R"({"percent":10,"success_threshold":90,"failure_threshold":5,"max_failures":3},)"
    R"({"percent":100,"success_threshold":100,"failure_threshold":0}],)"
    R"("filters":{"device_type":"rpi3b","group":"lab","tags":["eu","indoor"],)"
    R"("current_version":"1.0.0","version_operator":"<"},"max_concurrent":50,)"
    R"("report_timeout_ms":600000,"start_at_ms":0,"auto_pause":true,"auto_rollback":false})";

std::string round_trip(const std::string &text)
{
    otasrv_rollout_def def;
    ota_err err = {};
    memset(&def, 0, sizeof(def));
    EXPECT_EQ(parse_def(text, &def, &err), 0) << err.reason;
    json_t *j = nullptr;
    EXPECT_EQ(otasrv_rollout_to_json(&def, &j), 0);
    std::string out = dump(j);
    json_decref(j);
    otasrv_rollout_def_clear(&def);
    return out;
}

TEST(RolloutJson, CanonicalDefinitionRoundTripsByteForByte)
{
    EXPECT_EQ(round_trip(kFull), kFull);
    otasrv_rollout_def def;
    ota_err err = {};
    memset(&def, 0, sizeof(def));
    ASSERT_EQ(parse_def(kFull, &def, &err), 0) << err.reason;
    EXPECT_STREQ(def.id, "r7");
    EXPECT_EQ(def.strategy, OTASRV_STRATEGY_CANARY);
    EXPECT_EQ(def.n_stages, 2);
    EXPECT_EQ(def.stages[0].percent, 10u);
    EXPECT_EQ(def.stages[0].max_failures, 3);
    EXPECT_EQ(def.stages[1].max_failures, -1);
    EXPECT_EQ(def.filter.n_tags, 2);
    EXPECT_EQ(def.filter.version_op, OTASRV_VOP_LT);
    EXPECT_EQ(def.max_concurrent, 50u);
    EXPECT_EQ(def.report_timeout_ms, 600000);
    EXPECT_TRUE(def.auto_pause);
    otasrv_rollout_def_clear(&def);
    otasrv_rollout_def_clear(nullptr);
}

TEST(RolloutJson, DefaultsAreFilledInAndStable)
{
    std::string out = round_trip(R"({"release_id":"a-1","strategy":"immediate"})");
    EXPECT_EQ(out, R"({"id":"","name":"","release_id":"a-1","previous_release_id":"",)"
                   R"("strategy":"immediate","stages":[{"percent":100,"success_threshold":100,)"
                   R"("failure_threshold":0}],"filters":{},"max_concurrent":0,)"
                   R"("report_timeout_ms":0,"start_at_ms":0,"auto_pause":false,)"
                   R"("auto_rollback":false})");
    // Every strategy round-trips: parse(dump(parse(x))) == parse(x).
    const char *defs[] = {
        kFull,
        R"({"id":"m","release_id":"a-1","strategy":"manual","devices":["z-9","a-1","m:3"]})",
        R"({"id":"s","release_id":"a-1","strategy":"scheduled","start_at_ms":1795000000000,)"
        R"("stages":[{"percent":100,"failure_threshold":20}]})",
        R"({"id":"g","release_id":"a-1","strategy":"staged","stages":[{"percent":1},)"
        R"({"percent":5,"success_threshold":50},{"percent":25,"failure_threshold":10,)"
        R"("max_failures":0},{"percent":100}]})",
        R"({"id":"ro","release_id":"a-1","strategy":"rolling","stages":[{"batch_size":10},)"
        R"({"batch_size":100},{"percent":100}],"filters":{"tags":["x"]}})",
        R"({"id":"c","release_id":"a-1","strategy":"canary","stages":[{"batch_size":5},)"
        R"({"percent":100}],"filters":{"current_version":"v1.0.0-rc.1","version_operator":"!="}})",
    };
    for (const char *d : defs) {
        std::string once = round_trip(d);
        EXPECT_EQ(round_trip(once), once) << d;
    }
    // The manual list comes back sorted.
    std::string m = round_trip(defs[1]);
    EXPECT_NE(m.find(R"("devices":["a-1","m:3","z-9"])"), std::string::npos) << m;
}

TEST(RolloutJson, EveryValidationError)
{
    struct {
        std::string json;
        int rc;
        const char *reason;
    } cases[] = {
        {"[]", -EINVAL, "not a JSON object"},
        {R"({"release_id":"a","strategy":"immediate","foo":1})", -EINVAL, "unknown field 'foo'"},
        {R"({"strategy":"immediate"})", -EINVAL, "missing field 'release_id'"},
        {R"({"release_id":"a/b","strategy":"immediate"})", -EINVAL, "release_id: want"},
        {R"({"release_id":"","strategy":"immediate"})", -EINVAL, "release_id: want"},
        {R"({"release_id":7,"strategy":"immediate"})", -EINVAL, "'release_id' is not a string"},
        {R"({"id":"r 7","release_id":"a","strategy":"immediate"})", -EINVAL, "id: want"},
        {R"({"id":")" + std::string(70, 'x') + R"(","release_id":"a","strategy":"immediate"})",
         -ENAMETOOLONG, "'id' is too long"},
        {R"({"name":5,"release_id":"a","strategy":"immediate"})", -EINVAL,
         "'name' is not a string"},
        {R"({"release_id":"a"})", -EINVAL, "missing field 'strategy'"},
        {R"({"release_id":"a","strategy":"green"})", -EINVAL, "unknown strategy 'green'"},
        {R"({"release_id":"a","strategy":"blue_green"})", -EINVAL,
         "a blue_green rollout needs stages"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":100}],"activate_at_ms":5})",
         -EINVAL, "activate_at_ms: only blue_green"},
        {R"({"release_id":"a","strategy":"immediate","not_after_ms":5})", -EINVAL,
         "not_after_ms: only blue_green"},
        {R"({"release_id":"a","strategy":"blue_green","stages":[{"percent":100}],"activate_at_ms":9,"not_after_ms":5})",
         -EINVAL, "give up before activate_at_ms"},
        {R"({"release_id":"a","strategy":"blue_green","stages":[{"percent":100}],"activate_at_ms":-1})",
         -EINVAL, "activate_at_ms"},
        {R"({"release_id":"a","strategy":5})", -EINVAL, "'strategy' is not a string"},
        {R"({"release_id":"a","previous_release_id":"a","strategy":"immediate"})", -EINVAL,
         "same as release_id"},
        {R"({"release_id":"a","previous_release_id":"b c","strategy":"immediate"})", -EINVAL,
         "previous_release_id: want"},
        // stages
        {R"({"release_id":"a","strategy":"staged","stages":{}})", -EINVAL, "stages: not an array"},
        {R"({"release_id":"a","strategy":"staged","stages":[]})", -EINVAL, "stages: 0 stages"},
        {R"({"release_id":"a","strategy":"staged"})", -EINVAL, "a staged rollout needs stages"},
        {R"({"release_id":"a","strategy":"canary"})", -EINVAL, "a canary rollout needs stages"},
        {R"({"release_id":"a","strategy":"staged","stages":[5]})", -EINVAL,
         "stages[0]: not an object"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"pct":5}]})", -EINVAL,
         "stages[0]: unknown field 'pct'"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":5,"batch_size":5}]})",
         -EINVAL, "stages[0]: needs exactly one of percent and batch_size"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"success_threshold":5}]})", -EINVAL,
         "stages[0]: needs exactly one of percent and batch_size"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":0}]})", -EINVAL,
         "stages[0].percent: 0 is not within 1..100"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":120}]})", -EINVAL,
         "stages[0].percent: 120 is not within 1..100"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":"10"}]})", -EINVAL,
         "stages[0]: field 'percent' is not an integer"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":10.5}]})", -EINVAL,
         "stages[0]: field 'percent' is not an integer"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":50},{"percent":20}]})",
         -EINVAL, "stages[1].percent: 20 is not above the previous stage's 50"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":50},{"batch_size":9},)"
         R"({"percent":50}]})",
         -EINVAL, "stages[2].percent: 50 is not above the previous stage's 50"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"batch_size":0}]})", -EINVAL,
         "stages[0].batch_size: 0 is not within 1.."},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":9,)"
         R"("success_threshold":101}]})",
         -EINVAL, "stages[0].success_threshold: 101 is not within 0..100"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":9,)"
         R"("failure_threshold":-1}]})",
         -EINVAL, "stages[0].failure_threshold: -1 is not within 0..100"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":9,)"
         R"("success_threshold":95,"failure_threshold":10}]})",
         -EINVAL, "stages[0]: success_threshold 95 + failure_threshold 10 exceeds 100"},
        {R"({"release_id":"a","strategy":"staged","stages":[{"percent":9,"max_failures":-1}]})",
         -EINVAL, "stages[0].max_failures: -1 is not within"},
        {R"({"release_id":"a","strategy":"canary","stages":[{"percent":10}]})", -EINVAL,
         "a canary rollout has two stages"},
        {R"({"release_id":"a","strategy":"canary","stages":[{"percent":10},{"percent":50}]})",
         -EINVAL, "a canary rollout has two stages"},
        {R"({"release_id":"a","strategy":"canary","stages":[{"percent":10},{"percent":50},)"
         R"({"percent":100}]})",
         -EINVAL, "a canary rollout has two stages"},
        {R"({"release_id":"a","strategy":"canary","stages":[{"percent":100},{"percent":100}]})",
         -EINVAL, "stages[1].percent: 100 is not above the previous stage's 100"},
        {R"({"release_id":"a","strategy":"immediate","stages":[{"percent":50}]})", -EINVAL,
         "immediate rollouts have one stage, at percent 100"},
        {R"({"release_id":"a","strategy":"manual","devices":["d"],"stages":[{"batch_size":5}]})",
         -EINVAL, "manual rollouts have one stage"},
        // devices
        {R"({"release_id":"a","strategy":"manual"})", -EINVAL,
         "devices: a manual rollout lists 1.."},
        {R"({"release_id":"a","strategy":"manual","devices":[]})", -EINVAL,
         "devices: a manual rollout lists 1.."},
        {R"({"release_id":"a","strategy":"manual","devices":"d1"})", -EINVAL,
         "devices: not an array"},
        {R"({"release_id":"a","strategy":"immediate","devices":["d1"]})", -EINVAL,
         "devices: only a manual rollout lists devices"},
        {R"({"release_id":"a","strategy":"manual","devices":["d1","d2","d1"]})", -EINVAL,
         "devices: 'd1' is listed twice"},
        {R"({"release_id":"a","strategy":"manual","devices":["d1","d 2"]})", -EINVAL,
         "devices[1]: want 1..63 printable bytes"},
        {R"({"release_id":"a","strategy":"manual","devices":[""]})", -EINVAL,
         "devices[0]: want 1..63"},
        {R"({"release_id":"a","strategy":"manual","devices":[3]})", -EINVAL,
         "devices[0]: not a string"},
        // timing, limits, flags
        {R"({"release_id":"a","strategy":"scheduled"})", -EINVAL,
         "a scheduled rollout needs a start time"},
        {R"({"release_id":"a","strategy":"scheduled","start_at_ms":0})", -EINVAL,
         "a scheduled rollout needs a start time"},
        {R"({"release_id":"a","strategy":"immediate","start_at_ms":-5})", -EINVAL,
         "start_at_ms: -5 is not within 0.."},
        {R"({"release_id":"a","strategy":"immediate","report_timeout_ms":-1})", -EINVAL,
         "report_timeout_ms: -1 is not within 0.."},
        {R"({"release_id":"a","strategy":"immediate","report_timeout_ms":"1s"})", -EINVAL,
         "'report_timeout_ms' is not an integer"},
        {R"({"release_id":"a","strategy":"immediate","max_concurrent":-1})", -EINVAL,
         "max_concurrent: -1 is not within 0..4294967295"},
        {R"({"release_id":"a","strategy":"immediate","max_concurrent":4294967296})", -EINVAL,
         "max_concurrent: 4294967296 is not within"},
        {R"({"release_id":"a","strategy":"immediate","auto_pause":1})", -EINVAL,
         "'auto_pause' is not a boolean"},
        {R"({"release_id":"a","strategy":"immediate","auto_rollback":true})", -EINVAL,
         "auto_rollback: needs previous_release_id"},
        // filters
        {R"({"release_id":"a","strategy":"immediate","filters":[]})", -EINVAL,
         "filters: not an object"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"os":"linux"}})", -EINVAL,
         "filters: unknown field 'os'"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"current_version":"1.0.0",)"
         R"("version_operator":"~"}})",
         -EINVAL, "unknown operator '~'"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"version_operator":"<"}})", -EINVAL,
         "version_operator: needs current_version"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"current_version":"latest"}})",
         -EINVAL, "'latest' is not a version"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"current_version":1}})", -EINVAL,
         "filters: field 'current_version' is not a string"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"tags":"eu"}})", -EINVAL,
         "filters.tags: not an array"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"tags":)"
         R"(["1","2","3","4","5","6","7","8","9"]}})",
         -EINVAL, "filters.tags: 9 tags, at most 8"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"tags":[1]}})", -EINVAL,
         "filters.tags[0]: not a string"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"tags":[""]}})", -EINVAL,
         "filters.tags[0]: not a non-empty"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"tags":[")" + std::string(40, 't') +
             R"("]}})",
         -ENAMETOOLONG, "filters.tags[0]: longer than 31 bytes"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"device_type":"rpi 3"}})", -EINVAL,
         "filters.device_type: not printable"},
        {R"({"release_id":"a","strategy":"immediate","filters":{"group":"a\tb"}})", -EINVAL,
         "filters.group: not printable"},
    };
    for (auto &c : cases) {
        otasrv_rollout_def def;
        memset(&def, 0x5a, sizeof(def));
        otasrv_rollout_def untouched = def;
        ota_err err = {};
        EXPECT_EQ(parse_def(c.json, &def, &err), c.rc) << c.json << ": " << err.reason;
        EXPECT_NE(std::string(err.reason).find(c.reason), std::string::npos)
            << c.json << "\n  want: " << c.reason << "\n  got:  " << err.reason;
        EXPECT_EQ(memcmp(&def, &untouched, sizeof(def)), 0) << c.json;
    }
}

TEST(RolloutJson, NewRefusesADefinitionWithoutIdOrInvalid)
{
    otasrv_rollout_def def;
    ota_err err = {};
    otasrv_rollout *r = nullptr;
    memset(&def, 0, sizeof(def));
    ASSERT_EQ(parse_def(R"({"release_id":"a-1","strategy":"immediate"})", &def, &err), 0);
    EXPECT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("no id"), std::string::npos);
    ota_strlcpy(def.id, "r1", sizeof(def.id));
    def.stages[0].percent = 0; // built in code, invalid
    ota_err_clear(&err);
    EXPECT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("exactly one of percent"), std::string::npos);
    def.stages[0].percent = 100;
    ASSERT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), 0);
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_DRAFT);
    EXPECT_EQ(r->created_ms, kT0);
    otasrv_rollout_free(r);
    otasrv_rollout_free(nullptr);

    // A code-built manual list with duplicates.
    memset(&def, 0, sizeof(def));
    ota_strlcpy(def.id, "r2", sizeof(def.id));
    ota_strlcpy(def.release_id, "a-1", sizeof(def.release_id));
    def.strategy = OTASRV_STRATEGY_MANUAL;
    def.n_stages = 1;
    def.stages[0] = {100, 0, 100, 0, -1};
    def.devices = (char **)calloc(2, sizeof(char *));
    def.devices[0] = strdup("d1");
    def.devices[1] = strdup("d1");
    def.n_devices = 2;
    ota_err_clear(&err);
    EXPECT_EQ(otasrv_rollout_new(&def, kT0, &r, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("listed twice"), std::string::npos);
    otasrv_rollout_def_clear(&def);
}

TEST(RolloutJson, StatusRoundTripsAndIsValidated)
{
    Fleet f(100);
    Rollout r = make_rollout(kCanary10);
    f.target(r.get());
    approve_start(r.get(), f);
    ota_err perr = {};
    ASSERT_EQ(otasrv_rollout_act(r.get(), OTASRV_OP_PAUSE, nullptr, 0, kT0 + 5, &perr), 0);
    r->fail_ack[1] = 4;
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_rollout_status_to_json(r.get(), &j), 0);
    Json jj(j);
    std::string text = dump(j);
    EXPECT_EQ(text, R"({"state":"paused","stage":0,"created_ms":1795000000000,)"
                    R"("approved_ms":1795000000000,"started_ms":1795000000000,"finished_ms":0,)"
                    R"("changed_ms":1795000000005,"reason":"paused by the operator",)"
                    R"("fail_ack":[0,4]})");

    // A restarted server: definition, status, table.
    Rollout r2 = make_rollout(kCanary10, kT0 + 99);
    ota_err err = {};
    ASSERT_EQ(otasrv_rollout_status_from_json(j, r2.get(), &err), 0) << err.reason;
    otasrv_rollout_recount(r2.get(), f.rows.data(), f.rows.size());
    json_t *j2 = nullptr;
    ASSERT_EQ(otasrv_rollout_status_to_json(r2.get(), &j2), 0);
    Json jj2(j2);
    EXPECT_EQ(dump(j2), text);
    EXPECT_EQ(memcmp(r->count, r2->count, sizeof(r->count)), 0);

    struct {
        const char *json, *reason;
    } bad[] = {
        {R"([])", "status: not a JSON object"},
        {R"({"state":"running","x":1})", "status: unknown field 'x'"},
        {R"({"stage":0})", "missing field 'state'"},
        {R"({"state":"exploded"})", "unknown state 'exploded'"},
        {R"({"state":"running","stage":2})", "status.stage: 2 is not within 0..1"},
        {R"({"state":"running","started_ms":-1})", "status.started_ms: -1"},
        {R"({"state":"running","fail_ack":[1,2,3]})", "status.fail_ack: want an array"},
        {R"({"state":"running","fail_ack":[-1]})", "status.fail_ack[0]: not a count"},
    };
    for (auto &b : bad) {
        Json in = load(b.json);
        ota_err e = {};
        EXPECT_EQ(otasrv_rollout_status_from_json(in.get(), r2.get(), &e), -EINVAL) << b.json;
        EXPECT_NE(std::string(e.reason).find(b.reason), std::string::npos)
            << b.json << ": " << e.reason;
    }
    EXPECT_EQ(r2->state, OTASRV_ROLLOUT_PAUSED); // unchanged by the refusals
}

TEST(RolloutDevice, InitValidatesTheId)
{
    otasrv_rollout_device d;
    ota_err err = {};
    EXPECT_EQ(otasrv_rollout_device_init("r1", "", &d, &err), -EINVAL);
    EXPECT_EQ(otasrv_rollout_device_init("r1", std::string(64, 'x').c_str(), &d, &err), -EINVAL);
    ASSERT_EQ(otasrv_rollout_device_init("r1", "dev-1", &d, &err), 0);
    EXPECT_EQ(d.bucket, otasrv_rollout_bucket("r1", "dev-1"));
    EXPECT_EQ(d.stage, -1);
    EXPECT_EQ(d.state, OTASRV_RDEV_PENDING);
}

// ---- scale ----

TEST(RolloutScale, TenThousandDevices)
{
    Rollout r = make_rollout(R"({"id":"r-big","release_id":"app-2.0.0","strategy":"rolling",
        "max_concurrent":500,"report_timeout_ms":60000,"auto_pause":true,
        "stages":[{"batch_size":100,"success_threshold":90,"failure_threshold":10},
        {"percent":25,"success_threshold":90,"failure_threshold":10},
        {"percent":100,"success_threshold":90,"failure_threshold":10}]})");
    Fleet f(10000);
    f.target(r.get());
    auto t0 = std::chrono::steady_clock::now();
    approve_start(r.get(), f);
    Sim sim(r.get(), f);
    // 2% fail, 1% go silent (time out): within the 10% allowance.
    sim.outcome = [&](size_t row) {
        uint32_t b = f.rows[row].bucket % 100;
        return b < 2 ? 0 : b < 3 ? -1 : 1;
    };
    sim.run(2000);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r->state, OTASRV_ROLLOUT_COMPLETED) << r->reason;
    EXPECT_LE(sim.max_in_flight_seen, 500u);
    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(r.get(), f.rows.data(), f.rows.size(), &m), 0);
    EXPECT_EQ(m.succeeded + m.failed, 10000u);
    EXPECT_NEAR(m.failure_rate, 0.03, 0.01);
    EXPECT_EQ(m.by_state[OTASRV_RDEV_TIMED_OUT] + m.by_state[OTASRV_RDEV_FAILURE], m.failed);
    EXPECT_GT(m.by_state[OTASRV_RDEV_TIMED_OUT], 0u);
    EXPECT_LT(secs, 60.0); // a few hundred full ticks over 10,000 rows, under ASan
}

} // namespace
