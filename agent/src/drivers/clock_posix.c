/* Clocks over clock_gettime. Both go through libc, so libfaketime (the
 * simulator's clock jumps and acceleration) shifts what the agent sees.
 * random() is for jitter only: xorshift64*, not for anything secret. */
#include "ota/drivers.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;

    if (clock_gettime(id, &ts) < 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ota_clock_posix_init(struct ota_clock_posix *c)
{
    uint64_t seed = 0;

    /* Early in boot the pool may not be ready: do not block the agent for
     * jitter; mix time and pid instead, which still differ per device. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec << 20 ^
               (uint64_t)getpid();
    }
    c->rng = seed ? seed : 0x9e3779b97f4a7c15ull; /* xorshift never leaves 0 */
}

static int64_t posix_wall_ms(void *ctx)
{
    return clock_ms(CLOCK_REALTIME);
}

static int64_t posix_mono_ms(void *ctx)
{
    return clock_ms(CLOCK_MONOTONIC);
}

static uint32_t posix_random(void *ctx)
{
    struct ota_clock_posix *c = ctx;
    uint64_t x = c->rng;

    if (x == 0)
        x = 0x9e3779b97f4a7c15ull; /* not initialised: still never stuck */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

const struct ota_clock_ops ota_clock_posix_ops = {
    .wall_ms = posix_wall_ms,
    .mono_ms = posix_mono_ms,
    .random = posix_random,
};
