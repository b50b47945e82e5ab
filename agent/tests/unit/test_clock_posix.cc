// POSIX clocks and the jitter generator.
#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <set>
#include <unistd.h>

#include "ota/drivers.h"

namespace
{

TEST(ClockPosix, WallIsUnixMilliseconds)
{
    struct ota_clock_posix c;
    ota_clock_posix_init(&c);
    int64_t before = (int64_t)time(nullptr) * 1000;
    int64_t wall = ota_clock_posix_ops.wall_ms(&c);
    int64_t after = (int64_t)time(nullptr) * 1000 + 1000;
    EXPECT_GE(wall, before);
    EXPECT_LE(wall, after);
}

TEST(ClockPosix, MonoMovesForward)
{
    struct ota_clock_posix c;
    ota_clock_posix_init(&c);
    int64_t a = ota_clock_posix_ops.mono_ms(&c);
    usleep(20000);
    int64_t b = ota_clock_posix_ops.mono_ms(&c);
    EXPECT_GE(b - a, 19);
    EXPECT_LT(b - a, 5000);
}

TEST(ClockPosix, RandomIsSeededAndSpread)
{
    struct ota_clock_posix a, b;
    ota_clock_posix_init(&a);
    ota_clock_posix_init(&b);
    EXPECT_NE(a.rng, 0u);
    EXPECT_NE(a.rng, b.rng); // getrandom: two devices do not share jitter
    std::set<uint32_t> seen;
    uint64_t sum = 0;
    int high = 0;
    const int n = 10000;
    for (int i = 0; i < n; i++) {
        uint32_t v = ota_clock_posix_ops.random(&a);
        seen.insert(v);
        sum += v;
        high += (v >> 31) & 1;
    }
    EXPECT_GT(seen.size(), (size_t)n - 5);
    double mean = (double)sum / n / 4294967296.0;
    EXPECT_GT(mean, 0.45);
    EXPECT_LT(mean, 0.55);
    EXPECT_GT(high, n * 45 / 100);
    EXPECT_LT(high, n * 55 / 100);
}

TEST(ClockPosix, ZeroStateDoesNotStick)
{
    struct ota_clock_posix c = {0};
    uint32_t x = ota_clock_posix_ops.random(&c);
    uint32_t y = ota_clock_posix_ops.random(&c);
    EXPECT_NE(c.rng, 0u);
    EXPECT_NE(x, y);
}

} // namespace
