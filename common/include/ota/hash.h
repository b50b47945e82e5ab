/* FNV-1a of a NUL-terminated string (or, 64 bit, of bytes added in steps): stable,
 * non-cryptographic hashes for hash tables and for values the harness derives from names. */
#ifndef OTA_HASH_H
#define OTA_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t ota_fnv1a32(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

#define OTA_FNV1A64_INIT 1469598103934665603ull

/* h (OTA_FNV1A64_INIT to start) carried on over n bytes at p. */
static inline uint64_t ota_fnv1a64_add(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t ota_fnv1a64(const char *s)
{
    uint64_t h = OTA_FNV1A64_INIT;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

#endif
