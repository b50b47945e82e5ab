/* A JSON text writer for hot paths: the text jansson's compact dump writes
 * (strings escaped as jansson escapes them: \" \\ \b \f \n \r \t, other
 * control characters as \u00XX, the rest as is; invalid UTF-8 refused, as
 * jansson refuses it), written straight into one growing buffer instead of
 * built as objects and dumped. Used where a request or answer is sent at
 * every poll of every device (the agent's check-in body, the server's
 * inventory text). Keys are written in the caller's order. */
#ifndef OTA_JSONW_H
#define OTA_JSONW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ota_jw {
    char *buf; /* NUL-terminated text so far (malloc'ed; the caller frees it) */
    size_t len, cap;
    int err; /* the first failure: -ENOMEM, or -EINVAL for a string that is not UTF-8 */
};

/* n bytes of JSON text as they are (punctuation, a nested object's brace). */
void ota_jw_raw(struct ota_jw *w, const char *s, size_t n);
/* s as a JSON string ("" for NULL). */
void ota_jw_str(struct ota_jw *w, const char *s);
/* lead (e.g. "{" or ","), then "key":"value". */
void ota_jw_member(struct ota_jw *w, const char *lead, const char *key, const char *value);
/* The text in *ret (the caller frees it) and 0, or the first failure (the
 * buffer freed). */
int ota_jw_finish(struct ota_jw *w, char **ret);

#ifdef __cplusplus
}
#endif
#endif
