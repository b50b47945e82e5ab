// Per-device token buckets: N per period with a burst of N, refilled
// continuously, one bucket per device id; the Retry-After in whole seconds.
#include <gtest/gtest.h>

#include <cstdint>

#include "otasrv/devlimit.h"

TEST(DevLimit, Parse)
{
    unsigned n = 0;
    int64_t p = 0;
    EXPECT_EQ(otasrv_devlimit_parse("10/s", &n, &p), 0);
    EXPECT_EQ(n, 10u);
    EXPECT_EQ(p, 1000);
    EXPECT_EQ(otasrv_devlimit_parse("3/m", &n, &p), 0);
    EXPECT_EQ(p, 60000);
    EXPECT_EQ(otasrv_devlimit_parse("1/h", &n, &p), 0);
    EXPECT_EQ(p, 3600000);
    for (const char *bad : {"", "0/s", "3", "3/", "3/d", "3/ss", "-1/s", "x/m", "1000001/s"})
        EXPECT_LT(otasrv_devlimit_parse(bad, &n, &p), 0) << bad;
}

TEST(DevLimit, BurstThenRefillPerDevice)
{
    otasrv_devlimit *l = nullptr;
    ota_err err{};
    ASSERT_EQ(otasrv_devlimit_new(3, 60000, &l, &err), 0) << err.reason;
    int64_t retry = 0, t = 1000000;
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(otasrv_devlimit_take(l, "a", t, &retry), 1);
    EXPECT_EQ(otasrv_devlimit_take(l, "a", t, &retry), 0);
    EXPECT_EQ(retry, 20); // one token every 20 s
    EXPECT_EQ(otasrv_devlimit_take(l, "b", t, &retry), 1) << "b has its own bucket";
    EXPECT_EQ(otasrv_devlimit_take(l, "a", t + 19000, &retry), 0);
    EXPECT_EQ(retry, 1);
    EXPECT_EQ(otasrv_devlimit_take(l, "a", t + 20000, &retry), 1);
    // a long silence refills up to the burst, not beyond
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(otasrv_devlimit_take(l, "a", t + 3600000, &retry), 1);
    EXPECT_EQ(otasrv_devlimit_take(l, "a", t + 3600000, &retry), 0);
    otasrv_devlimit_free(l);
}

TEST(DevLimit, ManyDevicesGrowTheTable)
{
    otasrv_devlimit *l = nullptr;
    ota_err err{};
    ASSERT_EQ(otasrv_devlimit_new(1, 1000, &l, &err), 0) << err.reason;
    int64_t retry = 0;
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "dev-%05d", i);
        ASSERT_EQ(otasrv_devlimit_take(l, id, 0, &retry), 1) << id;
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "dev-%05d", i);
        ASSERT_EQ(otasrv_devlimit_take(l, id, 0, &retry), 0) << id << " forgot its bucket";
    }
    otasrv_devlimit_free(l);
}
