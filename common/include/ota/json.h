/* JSON helpers over jansson (the only file that maps jansson's errors).
 * Strict getters: a missing or mistyped field is -EINVAL with its name. */
#ifndef OTA_JSON_H
#define OTA_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses n bytes of a JSON object. *ret is a new reference. */
int ota_json_parse(const char *text, size_t n, json_t **ret, struct ota_err *err) OTA_MUST;
/* String field copied into buf (NUL-terminated); -ENAMETOOLONG if it does not fit. */
int ota_json_str(const json_t *obj, const char *key, char *buf, size_t cap,
                 struct ota_err *err) OTA_MUST;
/* Integer field >= 0. */
int ota_json_u64(const json_t *obj, const char *key, uint64_t *ret, struct ota_err *err) OTA_MUST;
int ota_json_int(const json_t *obj, const char *key, int64_t *ret, struct ota_err *err) OTA_MUST;
int ota_json_bool(const json_t *obj, const char *key, int *ret, struct ota_err *err) OTA_MUST;
/* Compact dump; malloc'ed text in *ret. */
int ota_json_dump(const json_t *v, char **ret) OTA_MUST;
/* Copies src into dst (cap bytes), truncating; always NUL-terminates. */
void ota_strlcpy(char *dst, const char *src, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
