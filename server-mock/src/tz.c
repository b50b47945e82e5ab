/* Time zone offsets (otasrv/tz.h): the C library under one mutex, with a
 * cache per (zone, 15-minute slot). */
#include "otasrv/tz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ota/inventory.h"

#define SLOT_S 900
#define NCACHE 4096 /* direct-mapped entries */

struct entry {
    char zone[OTA_TZ_MAX + 1];
    int64_t slot;
    int32_t off;
    int used;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry cache[NCACHE];
static char saved_tz[256];
static int inited;
static uint64_t hits, misses;

static void init_locked(void)
{
    const char *tz;

    if (inited)
        return;
    tz = getenv("TZ");
    snprintf(saved_tz, sizeof(saved_tz), "%s", tz ? tz : ":/etc/localtime");
    setenv("TZ", saved_tz, 1);
    tzset();
    inited = 1;
}

void otasrv_tz_init(void)
{
    pthread_mutex_lock(&lock);
    init_locked();
    pthread_mutex_unlock(&lock);
}

int otasrv_tz_known(const char *tz)
{
    const char *dir = getenv("TZDIR");
    char path[512];
    int off;

    if (!tz || !tz[0] || ota_timezone_fixed(tz, &off))
        return 1;
    if (!ota_timezone_valid(tz))
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir && dir[0] ? dir : "/usr/share/zoneinfo", tz);
    return access(path, R_OK) == 0;
}

static uint64_t hash(const char *zone, int64_t slot)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (const unsigned char *p = (const unsigned char *)zone; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h ^= (uint64_t)slot;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int32_t otasrv_tz_offset(const char *tz, int64_t at_ms)
{
    int64_t slot = floor_div(floor_div(at_ms, 1000), SLOT_S);
    struct entry *e;
    char spec[OTA_TZ_MAX + 2];
    time_t t = (time_t)(slot * SLOT_S);
    struct tm tm;
    int off;

    if (!tz || !tz[0] || strlen(tz) > OTA_TZ_MAX)
        return 0;
    if (ota_timezone_fixed(tz, &off))
        return off;
    if (!ota_timezone_valid(tz))
        return 0;
    e = &cache[hash(tz, slot) % NCACHE];
    pthread_mutex_lock(&lock);
    if (e->used && e->slot == slot && strcmp(e->zone, tz) == 0) {
        off = e->off;
        hits++;
        pthread_mutex_unlock(&lock);
        return off;
    }
    init_locked();
    misses++;
    snprintf(spec, sizeof(spec), ":%s", tz);
    setenv("TZ", spec, 1);
    tzset();
    off = localtime_r(&t, &tm) ? (int)tm.tm_gmtoff : 0;
    setenv("TZ", saved_tz, 1);
    tzset();
    memcpy(e->zone, tz, strlen(tz) + 1);
    e->slot = slot;
    e->off = off;
    e->used = 1;
    pthread_mutex_unlock(&lock);
    return off;
}

#define NINTERN 4096

const char *otasrv_tz_intern(const char *tz)
{
    static char *interned[NINTERN];
    static size_t n_interned;
    const char *ret = NULL;

    if (!tz || !tz[0] || !ota_timezone_valid(tz))
        return NULL;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_interned && !ret; i++)
        if (strcmp(interned[i], tz) == 0)
            ret = interned[i];
    if (!ret && n_interned < NINTERN && (interned[n_interned] = strdup(tz)) != NULL)
        ret = interned[n_interned++];
    pthread_mutex_unlock(&lock);
    return ret;
}

void otasrv_tz_stats(uint64_t *ret_hits, uint64_t *ret_misses)
{
    pthread_mutex_lock(&lock);
    *ret_hits = hits;
    *ret_misses = misses;
    pthread_mutex_unlock(&lock);
}
