/* FNV-1a of a NUL-terminated string: stable, non-cryptographic hashes for
 * hash tables and for values the harness derives from names. */
#ifndef OTA_HASH_H
#define OTA_HASH_H

#include <stdint.h>

static inline uint32_t ota_fnv1a32(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static inline uint64_t ota_fnv1a64(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

#endif
