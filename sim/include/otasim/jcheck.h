/* Strict readers of a jansson tree, shared by the scenario and fleet file
 * parsers: each returns 0 when the key is absent (leaving *inout), 0 with
 * the value set, or -EINVAL with "WHERE.KEY: why". */
#ifndef OTASIM_JCHECK_H
#define OTASIM_JCHECK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Index of s in names[0..n), -1 if absent. */
int otasim_lookup(const char *const *names, size_t n, const char *s);
/* Every key of obj must be in allowed (NULL-terminated). */
int otasim_only_keys(const json_t *obj, const char *where, const char *const *allowed,
                     struct ota_err *err) OTA_MUST;
int otasim_opt_str(const json_t *obj, const char *where, const char *key, char *buf, size_t cap,
                   struct ota_err *err) OTA_MUST;
int otasim_opt_int(const json_t *obj, const char *where, const char *key, long long min,
                   long long max, long long *inout, struct ota_err *err) OTA_MUST;
int otasim_opt_num(const json_t *obj, const char *where, const char *key, double min, double max,
                   double *inout, struct ota_err *err) OTA_MUST;
int otasim_opt_bool(const json_t *obj, const char *where, const char *key, int *inout,
                    struct ota_err *err) OTA_MUST;
/* "500ms", "30s", "5m", "1h", "2d", or a plain number of seconds; -EINVAL for anything else,
 * NaN, infinities and durations of OTASIM_DURATION_MAX_MS or more (~73 million years: room left
 * for sums with clock times). */
#define OTASIM_DURATION_MAX_MS (INT64_MAX / 4)
int otasim_parse_duration(const char *text, int64_t *ret_ms) OTA_MUST;
int otasim_opt_duration(const json_t *obj, const char *where, const char *key, int64_t *inout,
                        struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
