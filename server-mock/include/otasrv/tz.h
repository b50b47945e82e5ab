/* Time zone offsets for the rollout engine's maintenance windows, safe in a
 * threaded server.
 *
 * The C library converts times with the process's TZ: setenv + tzset +
 * localtime_r, all process-global. This module is the one place that does
 * it, under one mutex, and keeps what it learned in a cache keyed by
 * (zone, 15-minute slot of UTC time): zone offsets change only at
 * transitions, which fall on quarter hours of UTC, so a slot has one
 * offset. A hit costs a hash and a compare under the mutex; a miss re-reads
 * the zone file. TZ is restored after every miss (to ":/etc/localtime" when
 * it was unset, which is what the C library does without TZ), and the rest
 * of the server converts only with gmtime_r, so nothing else sees the swap.
 * otasrv_tz_init puts TZ into the environment once, before any thread runs,
 * so later setenv calls replace its value in place and never move environ
 * under a concurrent getenv. */
#ifndef OTASRV_TZ_H
#define OTASRV_TZ_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Call once before the first thread (the server does); later calls do
 * nothing. Calls made before it are still correct in a single thread. */
void otasrv_tz_init(void);

/* 1 if tz is a zone this system knows: "", "UTC", "Z", "+HH:MM"/"-HH:MM",
 * or an IANA name with a file under $TZDIR (default /usr/share/zoneinfo). */
int otasrv_tz_known(const char *tz);

/* Seconds east of UTC of zone tz at at_ms (unix ms). NULL, "" and unknown
 * zones are UTC (0). Thread-safe. */
int32_t otasrv_tz_offset(const char *tz, int64_t at_ms);

/* A stable pointer for zone tz (the same for equal strings, valid until
 * the process ends): what a rollout's row keeps of its device's zone. NULL
 * for NULL, "" and invalid zones (UTC), and once 4096 distinct zones are
 * interned (more than the world has: UTC for the rest). Thread-safe. */
const char *otasrv_tz_intern(const char *tz);

/* Cache statistics since the start (for the benchmark test). */
void otasrv_tz_stats(uint64_t *ret_hits, uint64_t *ret_misses);

#ifdef __cplusplus
}
#endif
#endif
