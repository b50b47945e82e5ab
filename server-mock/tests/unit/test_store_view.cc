// Unit tests for otasrv_store_device_view (src/store_devices.c, the cache in
// src/store_cache.c): what the rollout engine reads of a device at each
// check-in comes from the cache, and follows every inventory change: a
// check-in's new versions, a re-enrollment, a process that never saw the
// device (the row is read). A view handed out earlier is never changed. And
// otasrv_store_devices_tally, the fleet statistics' read.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include <jansson.h>
#include <unistd.h>

extern "C" {
#include "otasrv/store.h"
}

#include "tmpdb.h"

namespace
{

std::string field(const json_t *v, const char *key, const char *sub = nullptr)
{
    const json_t *x = json_object_get(v, key);
    if (sub)
        x = json_object_get(x, sub);
    return json_is_string(x) ? json_string_value(x) : "?";
}

std::string view_of(otasrv_store *s, const char *id, json_t **keep = nullptr)
{
    json_t *v = nullptr;
    ota_err err{};
    EXPECT_EQ(otasrv_store_device_view(s, id, &v, &err), 0) << err.reason;
    if (!v)
        return "none";
    std::string out = field(v, "device_id") + " " + field(v, "device_type") + " " +
                      field(v, "group") + " app=" + field(v, "versions", "app") +
                      " tz=" + field(v, "timezone") +
                      " region=" + field(v, "attributes", "region") +
                      " tags=" + std::to_string(json_array_size(json_object_get(v, "tags")));
    if (keep)
        *keep = v;
    else
        json_decref(v);
    return out;
}

TEST(StoreView, FollowsEveryInventoryChange)
{
    std::string path = temp_db();
    otasrv_store *s = nullptr;
    ota_err err{};
    int created = 0;
    ASSERT_EQ(otasrv_store_open(path.c_str(), 2, &s, &err), 0) << err.reason;
    otasrv_device_inv inv{"rpi3b",
                          "lab",
                          "[\"x\"]",
                          "{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"}",
                          "{}",
                          "IDLE",
                          "{\"region\":\"eu\"}",
                          "Europe/Berlin"};
    ASSERT_EQ(otasrv_store_device_register(s, "d1", "sha1", &inv, 1000, &created, &err), 0)
        << err.reason;
    // Before any check-in: read from the row.
    EXPECT_EQ(view_of(s, "d1"), "d1 rpi3b lab app=1.0.0 tz=Europe/Berlin region=eu tags=1");
    ASSERT_EQ(otasrv_store_device_checkin(s, "d1", &inv, 2000, nullptr, &err), 0) << err.reason;
    json_t *old = nullptr;
    EXPECT_EQ(view_of(s, "d1", &old), "d1 rpi3b lab app=1.0.0 tz=Europe/Berlin region=eu tags=1");
    // A check-in with new versions: the next view has them, the old one is as it was.
    otasrv_device_inv upd{nullptr, nullptr, nullptr, "{\"app\":\"2.0.0\",\"rootfs\":\"1.0.0\"}",
                          nullptr, nullptr, nullptr, nullptr};
    ASSERT_EQ(otasrv_store_device_checkin(s, "d1", &upd, 3000, nullptr, &err), 0) << err.reason;
    EXPECT_EQ(view_of(s, "d1"), "d1 rpi3b lab app=2.0.0 tz=Europe/Berlin region=eu tags=1");
    EXPECT_EQ(field(old, "versions", "app"), "1.0.0");
    json_decref(old);
    // Re-enrollment with another inventory.
    otasrv_device_inv re{"cm4", "field", "[]", "{\"app\":\"2.0.0\",\"rootfs\":\"1.0.0\"}",
                         "{}",  "IDLE",  "{}", ""};
    ASSERT_EQ(otasrv_store_device_register(s, "d1", "sha2", &re, 4000, &created, &err), 0)
        << err.reason;
    EXPECT_EQ(created, 0);
    EXPECT_EQ(view_of(s, "d1"), "d1 cm4 field app=2.0.0 tz= region=? tags=0");
    // A store that never saw the device (another process: the row).
    otasrv_store_close(s);
    ASSERT_EQ(otasrv_store_open(path.c_str(), 2, &s, &err), 0) << err.reason;
    EXPECT_EQ(view_of(s, "d1"), "d1 cm4 field app=2.0.0 tz= region=? tags=0");
    json_t *v = nullptr;
    EXPECT_EQ(otasrv_store_device_view(s, "nobody", &v, &err), -ENOENT);
    otasrv_store_close(s);
    remove_db(path);
}

// The fleet statistics' one read (GET /api/v1/stats, GET /metrics): one
// call per (type, group, state, app, rootfs) with its count; a version or
// state never sent is "" (registration stores no state: the first check-in
// does), whatever a check-in changed is counted as it is now.
TEST(StoreView, TallyCountsEachCombinationOnce)
{
    std::string path = temp_db();
    otasrv_store *s = nullptr;
    ota_err err{};
    int created = 0;
    ASSERT_EQ(otasrv_store_open(path.c_str(), 2, &s, &err), 0) << err.reason;
    otasrv_device_inv a{"rpi3b", "lab",  "[]", "{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"}",
                        "{}",    "IDLE", "{}", ""};
    otasrv_device_inv bare{"cm4", "", "[]", "{}", "{}", "", "{}", ""};
    for (const char *id : {"d1", "d2", "d3"})
        ASSERT_EQ(otasrv_store_device_register(s, id, id, &a, 1000, &created, &err), 0)
            << err.reason;
    ASSERT_EQ(otasrv_store_device_register(s, "d4", "d4", &bare, 1000, &created, &err), 0)
        << err.reason;
    otasrv_device_inv upd{
        nullptr, nullptr,       nullptr, "{\"app\":\"2.0.0\",\"rootfs\":\"1.0.0\"}",
        nullptr, "DOWNLOADING", nullptr, nullptr};
    ASSERT_EQ(otasrv_store_device_checkin(s, "d3", &upd, 2000, nullptr, &err), 0) << err.reason;
    std::map<std::string, int64_t> got;
    auto fn = [](void *ctx, const char *const cols[5], int64_t n) {
        auto *m = static_cast<std::map<std::string, int64_t> *>(ctx);
        std::string key;
        for (int i = 0; i < 5; i++)
            key += std::string(i ? "|" : "") + cols[i];
        EXPECT_EQ(m->count(key), 0u) << key;
        (*m)[key] = n;
    };
    ASSERT_EQ(otasrv_store_devices_tally(s, fn, &got, &err), 0) << err.reason;
    std::map<std::string, int64_t> want{
        {"rpi3b|lab||1.0.0|1.0.0", 2}, {"rpi3b|lab|DOWNLOADING|2.0.0|1.0.0", 1}, {"cm4||||", 1}};
    EXPECT_EQ(got, want);
    otasrv_store_close(s);
    remove_db(path);
}

} // namespace
