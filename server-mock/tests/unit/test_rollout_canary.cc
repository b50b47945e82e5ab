// Unit tests for src/rollout_canary.c and src/tz.c: the stratified canary
// (docs/protocol.md "Selection"), attribute filters and maintenance windows
// in the device's local time ("Maintenance windows").
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <jansson.h>

extern "C" {
#include "otasrv/rollout.h"
#include "otasrv/tz.h"
}

namespace
{

// 2026-12-05 00:00:00 UTC (a Saturday; Europe/Berlin is UTC+1 then).
const int64_t kMidnight = 1796428800000;
const int64_t kHour = 3600 * 1000;

struct RolloutFree {
    void operator()(otasrv_rollout *r) const
    {
        otasrv_rollout_free(r);
    }
};
using Rollout = std::unique_ptr<otasrv_rollout, RolloutFree>;

int parse(const std::string &text, otasrv_rollout_def *def, ota_err *err)
{
    json_error_t jerr;
    json_t *j = json_loads(text.c_str(), 0, &jerr);
    EXPECT_NE(j, nullptr) << text << ": " << jerr.text;
    memset(def, 0, sizeof(*def));
    int r = otasrv_rollout_from_json(j, def, err);
    json_decref(j);
    return r;
}

Rollout make(const std::string &text)
{
    otasrv_rollout_def def;
    ota_err err = {};
    otasrv_rollout *r = nullptr;
    EXPECT_EQ(parse(text, &def, &err), 0) << err.reason;
    EXPECT_EQ(otasrv_rollout_new(&def, kMidnight, &r, &err), 0) << err.reason;
    otasrv_rollout_def_clear(&def);
    return Rollout(r);
}

struct Dev {
    std::string id, type = "rpi3b", group = "lab", tz;
    std::vector<std::string> tags;
    std::map<std::string, std::string> attrs;
    // borrowed arrays of the info
    std::vector<const char *> tagp, keyp, valp;

    otasrv_device_info info()
    {
        tagp.clear();
        keyp.clear();
        valp.clear();
        for (auto &t : tags)
            tagp.push_back(t.c_str());
        for (auto &kv : attrs) {
            keyp.push_back(kv.first.c_str());
            valp.push_back(kv.second.c_str());
        }
        otasrv_device_info in = {};
        in.device_id = id.c_str();
        in.device_type = type.c_str();
        in.group = group.c_str();
        in.tags = tagp.data();
        in.n_tags = tagp.size();
        in.version = "1.0.0";
        in.attr_keys = keyp.data();
        in.attr_values = valp.data();
        in.n_attrs = keyp.size();
        in.timezone = tz.c_str();
        return in;
    }
};

// Rows for the devices that match r, prepared and started.
std::vector<otasrv_rollout_device> start(otasrv_rollout *r, std::vector<Dev> &devs)
{
    std::vector<otasrv_rollout_device> rows;
    ota_err err = {};
    for (auto &d : devs) {
        otasrv_device_info in = d.info();
        if (!otasrv_rollout_matches(&r->def, &in, nullptr))
            continue;
        otasrv_rollout_device row;
        EXPECT_EQ(otasrv_rollout_device_init(r->def.id, d.id.c_str(), &row, &err), 0);
        otasrv_rollout_canary_prep(&r->def, &in, &row);
        rows.push_back(row);
    }
    EXPECT_EQ(otasrv_rollout_act(r, OTASRV_OP_APPROVE, nullptr, 0, kMidnight, &err), 0);
    EXPECT_EQ(otasrv_rollout_act(r, OTASRV_OP_START, rows.data(), rows.size(), kMidnight, &err), 0)
        << err.reason;
    return rows;
}

// 1,000 devices of 4 types; "rare" is 2% of the fleet.
std::vector<Dev> mixed_fleet()
{
    std::vector<Dev> devs;
    char id[32];
    for (int i = 0; i < 1000; i++) {
        Dev d;
        snprintf(id, sizeof(id), "dev-%04d", i);
        d.id = id;
        d.type = i % 50 == 7 ? "rare" : i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
        d.attrs["region"] = i % 5 == 0 ? "us" : "eu";
        d.attrs["network"] = i % 7 == 0 ? "lte" : "wifi";
        devs.push_back(d);
    }
    return devs;
}

std::set<std::string> types_in_stage(const std::vector<otasrv_rollout_device> &rows,
                                     const std::vector<Dev> &devs, int stage)
{
    std::map<std::string, std::string> type_of;
    for (auto &d : devs)
        type_of[d.id] = d.type;
    std::set<std::string> s;
    for (auto &row : rows)
        if (row.stage == stage)
            s.insert(type_of[row.device_id]);
    return s;
}

uint32_t in_stage(const std::vector<otasrv_rollout_device> &rows, int stage)
{
    uint32_t n = 0;
    for (auto &row : rows)
        n += row.stage == stage;
    return n;
}

std::string canary_def(const std::string &id, const std::string &canary)
{
    return "{\"id\":\"" + id +
           "\",\"release_id\":\"app-2.0.0\",\"strategy\":\"canary\","
           "\"stages\":[{\"percent\":1},{\"percent\":100}]" +
           (canary.empty() ? "" : ",\"canary\":" + canary) + "}";
}

// The point of the issue: a hardware-specific bad release is caught by
// design. A 1% uniform canary (~10 of 1,000) misses the 2% type in most
// rollouts; the stratified one has it in every rollout.
TEST(RolloutCanary, StratifiedCanaryAlwaysHoldsTheRareType)
{
    int uniform_missed = 0;
    for (int k = 0; k < 100; k++) {
        std::string id = "r" + std::to_string(k);
        std::vector<Dev> devs = mixed_fleet();
        Rollout u = make(canary_def(id, ""));
        auto rows = start(u.get(), devs);
        uniform_missed += types_in_stage(rows, devs, 0).count("rare") == 0;

        Rollout s = make(canary_def(id, "{\"strata\":[\"device_type\"]}"));
        auto srows = start(s.get(), devs);
        auto types = types_in_stage(srows, devs, 0);
        EXPECT_EQ(types.count("rare"), 1u) << id;
        EXPECT_EQ(types.size(), 4u) << id;
        // Only the make-up differs: the canary keeps its nominal size when
        // the strata fit in it.
        EXPECT_EQ(in_stage(srows, 0), std::max(in_stage(rows, 0), 4u)) << id;
    }
    // (1 - 0.02)^10 ~ 0.82 of the rollouts miss it; say at least half.
    EXPECT_GT(uniform_missed, 50);
}

TEST(RolloutCanary, FirstTagsThenEveryStratumThenBuckets)
{
    std::vector<Dev> devs = mixed_fleet();
    devs[500].tags = {"internal"};
    devs[501].tags = {"internal", "x"};
    Rollout r = make("{\"id\":\"r1\",\"release_id\":\"app-2.0.0\",\"strategy\":\"staged\","
                     "\"stages\":[{\"batch_size\":2},{\"batch_size\":10},{\"percent\":100}],"
                     "\"canary\":{\"strata\":[\"device_type\",\"attributes.region\"],"
                     "\"per_stratum\":1,\"first_tags\":[\"internal\"]}}");
    auto rows = start(r.get(), devs);
    std::set<std::pair<std::string, std::string>> strata, seen;
    for (auto &d : devs)
        strata.insert({d.type, d.attrs["region"]});
    std::map<std::string, const Dev *> by_id;
    for (auto &d : devs)
        by_id[d.id] = &d;
    for (auto &row : rows)
        if (row.stage == 0) {
            const Dev *d = by_id[row.device_id];
            seen.insert({d->type, d->attrs.at("region")});
        }
    EXPECT_EQ(seen, strata);
    // Both internal devices, and the canary grew past its batch of 2.
    for (auto &row : rows)
        if (row.device_id == std::string("dev-0500") || row.device_id == std::string("dev-0501"))
            EXPECT_EQ(row.stage, 0);
    uint32_t n0 = in_stage(rows, 0);
    EXPECT_GE(n0, (uint32_t)strata.size());
    EXPECT_LE(n0, (uint32_t)strata.size() + 2);
    EXPECT_EQ(in_stage(rows, 1), 10u); // the next stage is untouched
    EXPECT_EQ(in_stage(rows, 2), rows.size() - n0 - 10);
    otasrv_rollout_metrics m;
    ASSERT_EQ(otasrv_rollout_measure(r.get(), rows.data(), rows.size(), &m), 0);
    EXPECT_EQ(m.stages[0].devices, n0); // the real canary size
}

TEST(RolloutCanary, SameIdsSameCanaryWhateverTheOrder)
{
    std::vector<Dev> devs = mixed_fleet();
    std::string def = "{\"id\":\"r9\",\"release_id\":\"app-2.0.0\",\"strategy\":\"canary\","
                      "\"stages\":[{\"batch_size\":3},{\"percent\":100}],"
                      "\"canary\":{\"strata\":[\"device_type\",\"attributes.network\"],"
                      "\"per_stratum\":2}}";
    Rollout a = make(def);
    auto rows_a = start(a.get(), devs);
    std::shuffle(devs.begin(), devs.end(), std::mt19937(42));
    Rollout b = make(def);
    auto rows_b = start(b.get(), devs);
    std::map<std::string, int> sa, sb;
    for (auto &row : rows_a)
        sa[row.device_id] = row.stage;
    for (auto &row : rows_b)
        sb[row.device_id] = row.stage;
    EXPECT_EQ(sa, sb);
    EXPECT_EQ(in_stage(rows_a, 0), 16u); // 8 strata x 2: more than the batch of 3
}

TEST(RolloutCanary, AttributeFilterIsAnExactMatch)
{
    std::vector<Dev> devs = mixed_fleet();
    devs.push_back(Dev{});
    devs.back().id = "no-attrs";
    Rollout r = make("{\"id\":\"r2\",\"release_id\":\"app-2.0.0\",\"strategy\":\"immediate\","
                     "\"filters\":{\"attributes\":{\"region\":\"us\",\"network\":\"lte\"}}}");
    auto rows = start(r.get(), devs);
    size_t want = 0;
    for (auto &d : devs)
        want += d.attrs.count("region") && d.attrs["region"] == "us" && d.attrs["network"] == "lte";
    EXPECT_EQ(rows.size(), want);
    EXPECT_GT(want, 0u);
}

TEST(RolloutCanary, DefinitionJsonRoundTripAndRefusals)
{
    otasrv_rollout_def def;
    ota_err err = {};
    std::string text = "{\"id\":\"r3\",\"release_id\":\"app-2.0.0\",\"strategy\":\"canary\","
                       "\"stages\":[{\"percent\":5},{\"percent\":100}],"
                       "\"filters\":{\"attributes\":{\"hw\":\"rev2\"}},"
                       "\"canary\":{\"strata\":[\"group\"],\"per_stratum\":3,"
                       "\"first_tags\":[\"internal\"]},"
                       "\"window\":{\"start\":\"22:30\",\"end\":\"02:00\"}}";
    ASSERT_EQ(parse(text, &def, &err), 0) << err.reason;
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_rollout_to_json(&def, &j), 0);
    char *s = json_dumps(j, JSON_COMPACT);
    std::string out = s;
    free(s);
    json_decref(j);
    EXPECT_NE(out.find("\"attributes\":{\"hw\":\"rev2\"}"), std::string::npos) << out;
    EXPECT_NE(out.find("\"canary\":{\"strata\":[\"group\"],\"per_stratum\":3,"
                       "\"first_tags\":[\"internal\"]}"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("\"window\":{\"start\":\"22:30\",\"end\":\"02:00\"}"), std::string::npos)
        << out;
    otasrv_rollout_def_clear(&def);

    struct {
        const char *def, *reason;
    } bad[] = {
        {"\"strategy\":\"immediate\",\"canary\":{\"strata\":[\"group\"]}", "canary: only"},
        {"\"strategy\":\"canary\",\"stages\":[{\"percent\":1},{\"percent\":100}],"
         "\"canary\":{\"strata\":[\"colour\"]}",
         "canary.strata[0]"},
        {"\"strategy\":\"canary\",\"stages\":[{\"percent\":1},{\"percent\":100}],"
         "\"canary\":{\"strata\":[\"group\"],\"per_stratum\":0}",
         "per_stratum"},
        {"\"strategy\":\"immediate\",\"window\":{\"start\":\"24:00\",\"end\":\"02:00\"}",
         "window.start"},
        {"\"strategy\":\"immediate\",\"window\":{\"start\":\"02:00\",\"end\":\"02:00\"}",
         "window:"},
        {"\"strategy\":\"immediate\",\"filters\":{\"attributes\":{\"Region\":\"eu\"}}",
         "filters.attributes"},
    };
    for (auto &b : bad) {
        std::string t = std::string("{\"id\":\"r4\",\"release_id\":\"app-2.0.0\",") + b.def + "}";
        err = {};
        EXPECT_EQ(parse(t, &def, &err), -EINVAL) << t;
        EXPECT_NE(std::string(err.reason).find(b.reason), std::string::npos) << err.reason;
    }
}

TEST(RolloutWindow, OffersOnlyInsideTheLocalWindow)
{
    std::vector<Dev> devs(3);
    devs[0].id = "berlin";
    devs[0].tz = "Europe/Berlin"; // UTC+1 in December
    devs[1].id = "utc";           // no zone: UTC
    devs[2].id = "india";
    devs[2].tz = "+05:30";
    Rollout r = make("{\"id\":\"w1\",\"release_id\":\"app-2.0.0\",\"strategy\":\"immediate\","
                     "\"window\":{\"start\":\"02:00\",\"end\":\"06:00\"}}");
    auto rows = start(r.get(), devs);
    ASSERT_EQ(rows.size(), 3u);
    auto decide = [&](size_t i, int64_t now) {
        otasrv_device_info in = devs[i].info();
        otasrv_rollout_decision d;
        otasrv_rollout_decide(r.get(), &in, &rows[i], now, &d);
        return d.why;
    };
    // 00:30 UTC: 01:30 Berlin, 00:30 UTC, 06:00 India: all outside.
    int64_t t = kMidnight + kHour / 2;
    EXPECT_EQ(decide(0, t), OTASRV_WHY_OUTSIDE_WINDOW);
    EXPECT_EQ(decide(1, t), OTASRV_WHY_OUTSIDE_WINDOW);
    EXPECT_EQ(decide(2, t), OTASRV_WHY_OUTSIDE_WINDOW);
    // 01:00 UTC: 02:00 Berlin opens; 23:59 UTC the day before for India's end.
    EXPECT_EQ(decide(0, kMidnight + kHour), OTASRV_WHY_NEW);
    EXPECT_EQ(decide(1, kMidnight + kHour), OTASRV_WHY_OUTSIDE_WINDOW);
    EXPECT_EQ(decide(1, kMidnight + 2 * kHour), OTASRV_WHY_NEW);
    EXPECT_EQ(decide(0, kMidnight + 5 * kHour), OTASRV_WHY_OUTSIDE_WINDOW);  // 06:00 Berlin
    EXPECT_EQ(decide(2, kMidnight - 3 * kHour - kHour / 2), OTASRV_WHY_NEW); // 02:00 India
    // The next window opening: from 00:30 UTC, Berlin's (01:00 UTC); from
    // 01:00 UTC, Berlin's is open (nothing due for it until tomorrow) and
    // UTC's 02:00 comes before India's 20:30 UTC.
    EXPECT_EQ(otasrv_rollout_window_next(r.get(), rows.data(), 3, t), kMidnight + kHour);
    EXPECT_EQ(otasrv_rollout_window_next(r.get(), rows.data(), 3, kMidnight + kHour - 1),
              kMidnight + kHour);
    EXPECT_EQ(otasrv_rollout_window_next(r.get(), rows.data(), 3, kMidnight + kHour),
              kMidnight + 2 * kHour);
    // Berlin offered and gone: UTC's 02:00 is next.
    otasrv_device_info in = devs[0].info();
    otasrv_rollout_decision d;
    otasrv_rollout_checkin(r.get(), &in, &rows[0], kMidnight + kHour, &d);
    EXPECT_EQ(d.why, OTASRV_WHY_NEW);
    EXPECT_EQ(otasrv_rollout_window_next(r.get(), rows.data(), 3, kMidnight + kHour + 1),
              kMidnight + 2 * kHour);
    EXPECT_EQ(otasrv_rollout_next_deadline(r.get(), rows.data(), 3, kMidnight + kHour + 1),
              kMidnight + 2 * kHour);
    // The zone a device checks in with is the one its row keeps: UTC moves
    // to +05:30, whose window (20:30 UTC) is the next opening now.
    devs[1].tz = "+05:30";
    in = devs[1].info();
    otasrv_rollout_checkin(r.get(), &in, &rows[1], kMidnight + kHour + 2, &d);
    EXPECT_EQ(d.why, OTASRV_WHY_OUTSIDE_WINDOW);
    EXPECT_EQ(otasrv_rollout_window_next(r.get(), rows.data(), 3, kMidnight + kHour + 3),
              kMidnight + 20 * kHour + kHour / 2);
}

TEST(RolloutWindow, CrossesMidnightAndFollowsDaylightSaving)
{
    otasrv_rollout_window w = {1, 22 * 60, 2 * 60};
    EXPECT_TRUE(otasrv_rollout_window_open(&w, "UTC", kMidnight - kHour));      // 23:00
    EXPECT_TRUE(otasrv_rollout_window_open(&w, "UTC", kMidnight + kHour));      // 01:00
    EXPECT_FALSE(otasrv_rollout_window_open(&w, "UTC", kMidnight + 2 * kHour)); // 02:00
    EXPECT_EQ(otasrv_rollout_window_opens(&w, "UTC", kMidnight + 2 * kHour),
              kMidnight + 22 * kHour);
    // New York: UTC-4 on 2026-07-01, UTC-5 on 2026-12-05.
    const int64_t kJuly = 1782864000000; // 2026-07-01 00:00 UTC
    EXPECT_EQ(otasrv_tz_offset("America/New_York", kJuly), -4 * 3600);
    EXPECT_EQ(otasrv_tz_offset("America/New_York", kMidnight), -5 * 3600);
    otasrv_rollout_window w2 = {1, 2 * 60, 6 * 60};
    EXPECT_EQ(otasrv_rollout_window_opens(&w2, "America/New_York", kJuly), kJuly + 6 * kHour);
    EXPECT_EQ(otasrv_rollout_window_opens(&w2, "America/New_York", kMidnight),
              kMidnight + 7 * kHour);
    // Unknown zones and no zone are UTC.
    EXPECT_EQ(otasrv_tz_offset("Nowhere/Atlantis", kJuly), 0);
    EXPECT_EQ(otasrv_tz_offset(nullptr, kJuly), 0);
    EXPECT_TRUE(otasrv_tz_known("Europe/Berlin"));
    EXPECT_TRUE(otasrv_tz_known("-03:30"));
    EXPECT_FALSE(otasrv_tz_known("Nowhere/Atlantis"));
    EXPECT_FALSE(otasrv_tz_known("../etc/passwd"));
}

// 100,000 devices over 12 zones, as the server sees them during an hour of
// check-ins: the cache makes a lookup cheap. Also from 4 threads at once.
TEST(RolloutWindow, OffsetsAreCheapAtAHundredThousandDevices)
{
    const char *zones[] = {
        "Europe/Berlin",    "America/New_York",  "Asia/Tokyo",     "Asia/Kolkata",
        "Australia/Sydney", "America/Sao_Paulo", "Europe/London",  "UTC",
        "Africa/Cairo",     "Asia/Shanghai",     "America/Denver", "+05:45"};
    auto t0 = std::chrono::steady_clock::now();
    int64_t sum = 0;
    for (int i = 0; i < 100000; i++)
        sum += otasrv_tz_offset(zones[i % 12], kMidnight + (int64_t)i * 36); // 1 h in all
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    uint64_t hits, misses;
    otasrv_tz_stats(&hits, &misses);
    printf("100000 offsets in %.1f ms (cache hits %llu, misses %llu so far)\n", ms,
           (unsigned long long)hits, (unsigned long long)misses);
    EXPECT_NE(sum, 0);
    EXPECT_LT(ms, 500.0);
    std::vector<std::thread> th;
    std::vector<int> wrong(4, 0);
    for (int k = 0; k < 4; k++)
        th.emplace_back([&, k] {
            for (int i = 0; i < 20000; i++) {
                int64_t at = kMidnight + (int64_t)(i % 100) * 900000 * 7 * (k + 1);
                int32_t a = otasrv_tz_offset("Europe/Berlin", at);
                int32_t b = otasrv_tz_offset("America/New_York", at);
                wrong[k] += (a != 3600 && a != 7200) || (b != -5 * 3600 && b != -4 * 3600);
            }
        });
    for (auto &t : th)
        t.join();
    for (int k = 0; k < 4; k++)
        EXPECT_EQ(wrong[k], 0);
}

// A stage's delay_ms holds the next stage back even when it passed, and
// next_deadline tells a virtual clock when to come back.
TEST(RolloutDelay, NextStageWaitsForTheDelayAndDueNextSaysWhen)
{
    std::vector<Dev> devs(10);
    for (size_t i = 0; i < devs.size(); i++)
        devs[i].id = "d" + std::to_string(i);
    Rollout r = make("{\"id\":\"dl\",\"release_id\":\"app-2.0.0\",\"strategy\":\"staged\","
                     "\"stages\":[{\"batch_size\":2,\"delay_ms\":3600000},{\"percent\":100}]}");
    auto rows = start(r.get(), devs);
    ota_err err = {};
    int64_t t = kMidnight + 60000;
    EXPECT_EQ(otasrv_rollout_next_deadline(r.get(), rows.data(), rows.size(), t), INT64_MAX);
    for (auto &row : rows) {
        if (row.stage != 0)
            continue;
        otasrv_device_info in = devs[0].info();
        in.device_id = row.device_id;
        otasrv_rollout_decision d;
        otasrv_rollout_checkin(r.get(), &in, &row, t, &d);
        ASSERT_EQ(d.why, OTASRV_WHY_NEW);
        ASSERT_EQ(otasrv_rollout_on_report(r.get(), &row, 0, OTASRV_REPORT_SUCCESS, t, &err), 0);
    }
    otasrv_rollout_tick(r.get(), rows.data(), rows.size(), t + 60000, nullptr);
    EXPECT_EQ(r->stage, 0); // passed, but the delay runs from the start
    EXPECT_EQ(otasrv_rollout_next_deadline(r.get(), rows.data(), rows.size(), t + 60000),
              kMidnight + kHour);
    // the status keeps the opening time across a restart
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_rollout_status_to_json(r.get(), &j), 0);
    Rollout r2 = make("{\"id\":\"dl\",\"release_id\":\"app-2.0.0\",\"strategy\":\"staged\","
                      "\"stages\":[{\"batch_size\":2,\"delay_ms\":3600000},{\"percent\":100}]}");
    ASSERT_EQ(otasrv_rollout_status_from_json(j, r2.get(), &err), 0) << err.reason;
    json_decref(j);
    EXPECT_EQ(r2->stage_opened_ms, kMidnight);
    otasrv_rollout_tick(r2.get(), rows.data(), rows.size(), kMidnight + kHour - 1, nullptr);
    EXPECT_EQ(r2->stage, 0);
    otasrv_rollout_tick(r2.get(), rows.data(), rows.size(), kMidnight + kHour, nullptr);
    EXPECT_EQ(r2->stage, 1);
    EXPECT_EQ(r2->stage_opened_ms, kMidnight + kHour);
    EXPECT_EQ(otasrv_rollout_next_deadline(r2.get(), rows.data(), rows.size(), kMidnight + kHour),
              INT64_MAX);

    // Without a delay the stage opens at the first tick after it passed.
    Rollout r3 = make("{\"id\":\"dl\",\"release_id\":\"app-2.0.0\",\"strategy\":\"staged\","
                      "\"stages\":[{\"batch_size\":2},{\"percent\":100}]}");
    auto rows3 = start(r3.get(), devs);
    for (auto &row : rows3)
        if (row.stage == 0) {
            otasrv_device_info in = devs[0].info();
            in.device_id = row.device_id;
            otasrv_rollout_decision d;
            otasrv_rollout_checkin(r3.get(), &in, &row, t, &d);
            ASSERT_EQ(otasrv_rollout_on_report(r3.get(), &row, 0, OTASRV_REPORT_SUCCESS, t, &err),
                      0);
        }
    otasrv_rollout_tick(r3.get(), rows3.data(), rows3.size(), t + 60000, nullptr);
    EXPECT_EQ(r3->stage, 1);
}

// next_deadline also answers the window.
TEST(RolloutDelay, NextDeadlineHasTheWindowsOpening)
{
    std::vector<Dev> devs(4);
    for (size_t i = 0; i < devs.size(); i++)
        devs[i].id = "w" + std::to_string(i);
    Rollout r = make("{\"id\":\"dw\",\"release_id\":\"app-2.0.0\",\"strategy\":\"immediate\","
                     "\"window\":{\"start\":\"03:00\",\"end\":\"04:00\"}}");
    auto rows = start(r.get(), devs);
    EXPECT_EQ(otasrv_rollout_next_deadline(r.get(), rows.data(), rows.size(), kMidnight),
              kMidnight + 3 * kHour);
    // open now: the next opening is tomorrow's (an offline device never
    // keeps the deadline at now)
    EXPECT_EQ(
        otasrv_rollout_next_deadline(r.get(), rows.data(), rows.size(), kMidnight + 3 * kHour + 5),
        kMidnight + 27 * kHour);
    // with a report timeout too: the earliest of both
    Rollout r2 = make("{\"id\":\"dw\",\"release_id\":\"app-2.0.0\",\"strategy\":\"immediate\","
                      "\"report_timeout_ms\":600000,"
                      "\"window\":{\"start\":\"03:00\",\"end\":\"04:00\"}}");
    auto rows2 = start(r2.get(), devs);
    otasrv_device_info in = devs[0].info();
    otasrv_rollout_decision d;
    otasrv_rollout_checkin(r2.get(), &in, &rows2[0], kMidnight + 3 * kHour, &d);
    ASSERT_EQ(d.why, OTASRV_WHY_NEW);
    EXPECT_EQ(
        otasrv_rollout_next_deadline(r2.get(), rows2.data(), rows2.size(), kMidnight + 4 * kHour),
        kMidnight + 3 * kHour + 600000); // overdue timeout before the next day's window
}

} // namespace
