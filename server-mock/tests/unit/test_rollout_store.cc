// Unit tests for src/rollout_store.c: a rollout and its table survive a
// close and a reopen, only dirty rows are written, replace drops the old
// table, and a second database connection (the server's store) coexists.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <jansson.h>
#include <unistd.h>

extern "C" {
#include "otasrv/rollout.h"
#include "otasrv/rollout_store.h"
}

#include "tmpdb.h"

namespace
{

struct Loaded {
    std::vector<otasrv_rollout *> r;
    std::vector<std::vector<otasrv_rollout_device>> devs;
    ~Loaded()
    {
        for (auto *x : r)
            otasrv_rollout_free(x);
    }
};

void on_load(void *ctx, otasrv_rollout *r, otasrv_rollout_device *devs, size_t n)
{
    auto *l = static_cast<Loaded *>(ctx);
    l->r.push_back(r);
    l->devs.emplace_back(devs, devs + n);
    free(devs);
}

otasrv_rollout *make_rollout(const char *id)
{
    const std::string text = std::string("{\"id\":\"") + id +
                             "\",\"release_id\":\"v2\",\"strategy\":\"canary\","
                             "\"stages\":[{\"percent\":50},{\"percent\":100}]}";
    json_t *j = json_loads(text.c_str(), 0, nullptr);
    otasrv_rollout_def def{};
    ota_err err{};
    otasrv_rollout *r = nullptr;
    EXPECT_EQ(otasrv_rollout_from_json(j, &def, &err), 0) << err.reason;
    EXPECT_EQ(otasrv_rollout_new(&def, 1000, &r, &err), 0) << err.reason;
    json_decref(j);
    return r;
}

std::vector<otasrv_rollout_device> make_devs(const char *rid, int n)
{
    std::vector<otasrv_rollout_device> v(n);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "dev-%03d", i);
        EXPECT_EQ(otasrv_rollout_device_init(rid, id, &v[i], nullptr), 0);
    }
    return v;
}

TEST(RolloutStore, SaveAndLoadRoundTrip)
{
    std::string db = temp_db();
    ota_err err{};
    otasrv_rstore *s = nullptr;
    ASSERT_EQ(otasrv_rstore_open(db.c_str(), &s, &err), 0) << err.reason;
    otasrv_rollout *r = make_rollout("r1");
    auto devs = make_devs("r1", 20);
    ASSERT_EQ(otasrv_rstore_save(s, r, devs.data(), devs.size(), 1, &err), 0) << err.reason;
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_APPROVE, devs.data(), devs.size(), 2000, &err), 0);
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_START, devs.data(), devs.size(), 3000, &err), 0);
    ASSERT_EQ(otasrv_rstore_save(s, r, devs.data(), devs.size(), 0, &err), 0) << err.reason;
    for (auto &d : devs)
        EXPECT_EQ(d.dirty, 0);
    // one offer, then only that row is dirty
    otasrv_rollout_decision dec{};
    otasrv_rollout_device *first = nullptr;
    for (auto &d : devs)
        if (d.stage == 0 && !first)
            first = &d;
    ASSERT_NE(first, nullptr);
    otasrv_rollout_checkin(r, nullptr, first, 4000, &dec);
    EXPECT_EQ(dec.offer, OTASRV_OFFER_RELEASE);
    ASSERT_EQ(otasrv_rstore_save(s, r, devs.data(), devs.size(), 0, &err), 0) << err.reason;
    otasrv_rstore_close(s);

    ASSERT_EQ(otasrv_rstore_open(db.c_str(), &s, &err), 0) << err.reason;
    Loaded l;
    ASSERT_EQ(otasrv_rstore_load(s, on_load, &l, &err), 0) << err.reason;
    ASSERT_EQ(l.r.size(), 1u);
    EXPECT_STREQ(l.r[0]->def.id, "r1");
    EXPECT_EQ(l.r[0]->state, OTASRV_ROLLOUT_RUNNING);
    EXPECT_EQ(l.r[0]->started_ms, 3000);
    ASSERT_EQ(l.devs[0].size(), 20u);
    EXPECT_EQ(l.r[0]->total[OTASRV_RDEV_OFFERED], 1u);
    for (size_t i = 0; i < 20; i++) {
        const auto &a = l.devs[0][i];
        const auto *b = &devs[0];
        for (const auto &d : devs)
            if (strcmp(d.device_id, a.device_id) == 0)
                b = &d;
        EXPECT_STREQ(a.device_id, b->device_id);
        EXPECT_EQ(a.bucket, b->bucket);
        EXPECT_EQ(a.stage, b->stage);
        EXPECT_EQ(a.state, b->state);
        EXPECT_EQ(a.offered_ms, b->offered_ms);
        EXPECT_EQ(a.last_ms, b->last_ms);
        if (i > 0)
            EXPECT_LT(strcmp(l.devs[0][i - 1].device_id, a.device_id), 0);
    }
    // replace drops the old table
    auto fewer = make_devs("r1", 5);
    ASSERT_EQ(otasrv_rstore_save(s, r, fewer.data(), fewer.size(), 1, &err), 0) << err.reason;
    Loaded l2;
    ASSERT_EQ(otasrv_rstore_load(s, on_load, &l2, &err), 0) << err.reason;
    ASSERT_EQ(l2.devs.size(), 1u);
    EXPECT_EQ(l2.devs[0].size(), 5u);
    otasrv_rstore_close(s);
    otasrv_rollout_free(r);
    unlink(db.c_str());
    unlink((db + "-wal").c_str());
    unlink((db + "-shm").c_str());
}

// save_rows writes the status and the rows the engine listed, nothing else.
TEST(RolloutStore, SaveRowsWritesTheListedRowsAndTheStatus)
{
    std::string db = temp_db();
    ota_err err{};
    otasrv_rstore *s = nullptr;
    ASSERT_EQ(otasrv_rstore_open(db.c_str(), &s, &err), 0) << err.reason;
    otasrv_rollout *r = make_rollout("r2");
    auto devs = make_devs("r2", 20);
    const uint32_t *rows = nullptr;
    ASSERT_EQ(otasrv_rstore_save(s, r, devs.data(), devs.size(), 1, &err), 0) << err.reason;
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_APPROVE, devs.data(), devs.size(), 2000, &err), 0);
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_START, devs.data(), devs.size(), 3000, &err), 0);
    // Just indexed: the engine does not know which rows changed.
    EXPECT_EQ(otasrv_rollout_dirty_rows(r, devs.data(), devs.size(), &rows), -1);
    ASSERT_EQ(otasrv_rstore_save(s, r, devs.data(), devs.size(), 0, &err), 0) << err.reason;
    otasrv_rollout_dirty_clear(r);
    EXPECT_EQ(otasrv_rollout_dirty_rows(r, devs.data(), devs.size(), &rows), 0);

    size_t first = 0, other = 0;
    while (devs[first].stage != 0)
        first++;
    other = first == 0 ? 1 : 0;
    otasrv_rollout_decision dec{};
    otasrv_rollout_checkin(r, nullptr, &devs[first], 4000, &dec);
    ASSERT_EQ(dec.offer, OTASRV_OFFER_RELEASE);
    devs[other].last_ms = 777; // changed behind the engine's back: not listed
    devs[other].dirty = 1;
    ASSERT_EQ(otasrv_rollout_act(r, OTASRV_OP_PAUSE, nullptr, 0, 5000, &err), 0);
    ASSERT_EQ(otasrv_rollout_dirty_rows(r, devs.data(), devs.size(), &rows), 1);
    EXPECT_EQ(rows[0], first);
    ASSERT_EQ(otasrv_rstore_save_rows(s, r, devs.data(), rows, 1, &err), 0) << err.reason;
    EXPECT_EQ(devs[first].dirty, 0);
    otasrv_rollout_dirty_clear(r);
    otasrv_rstore_close(s);

    ASSERT_EQ(otasrv_rstore_open(db.c_str(), &s, &err), 0) << err.reason;
    Loaded l;
    ASSERT_EQ(otasrv_rstore_load(s, on_load, &l, &err), 0) << err.reason;
    ASSERT_EQ(l.r.size(), 1u);
    EXPECT_EQ(l.r[0]->state, OTASRV_ROLLOUT_PAUSED);
    EXPECT_EQ(l.r[0]->def.stages[0].percent, 50u); // the definition is still there
    ASSERT_EQ(l.devs[0].size(), 20u);
    for (const auto &d : l.devs[0]) {
        if (strcmp(d.device_id, devs[first].device_id) == 0) {
            EXPECT_EQ(d.state, OTASRV_RDEV_OFFERED);
            EXPECT_EQ(d.offered_ms, 4000);
        }
        if (strcmp(d.device_id, devs[other].device_id) == 0)
            EXPECT_EQ(d.last_ms, 0);
    }
    otasrv_rstore_close(s);
    otasrv_rollout_free(r);
    unlink(db.c_str());
    unlink((db + "-wal").c_str());
    unlink((db + "-shm").c_str());
}

TEST(RolloutStore, BadPathFails)
{
    ota_err err{};
    otasrv_rstore *s = nullptr;
    EXPECT_LT(otasrv_rstore_open("/nonexistent-dir/x.db", &s, &err), 0);
    EXPECT_NE(err.reason[0], '\0');
    otasrv_rstore_close(nullptr);
}

} // namespace
