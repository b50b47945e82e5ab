/* jansson wrapper: strict typed access, errors mapped to -EINVAL + reason. */
#include "ota/json.h"

#include <errno.h>
#include <string.h>

void ota_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n;

    if (cap == 0)
        return;
    n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

int ota_json_parse(const char *text, size_t n, json_t **ret, struct ota_err *err)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);

    if (!v)
        return ota_err_set(err, EINVAL, "malformed JSON at line %d column %d: %s", jerr.line,
                           jerr.column, jerr.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return ota_err_set(err, EINVAL, "JSON is not an object");
    }
    *ret = v;
    return 0;
}

static const json_t *field(const json_t *obj, const char *key, struct ota_err *err)
{
    const json_t *v = json_object_get(obj, key);

    if (!v)
        ota_err_set(err, EINVAL, "missing field '%s'", key);
    return v;
}

int ota_json_str(const json_t *obj, const char *key, char *buf, size_t cap, struct ota_err *err)
{
    const json_t *v = field(obj, key, err);
    size_t n;

    if (!v)
        return -EINVAL;
    if (!json_is_string(v))
        return ota_err_set(err, EINVAL, "field '%s' is not a string", key);
    n = json_string_length(v);
    if (n >= cap)
        return ota_err_set(err, ENAMETOOLONG, "field '%s' is too long (%zu bytes)", key, n);
    if (strlen(json_string_value(v)) != n)
        return ota_err_set(err, EINVAL, "field '%s' holds a NUL byte", key);
    memcpy(buf, json_string_value(v), n + 1);
    return 0;
}

int ota_json_int(const json_t *obj, const char *key, int64_t *ret, struct ota_err *err)
{
    const json_t *v = field(obj, key, err);

    if (!v)
        return -EINVAL;
    if (!json_is_integer(v))
        return ota_err_set(err, EINVAL, "field '%s' is not an integer", key);
    *ret = json_integer_value(v);
    return 0;
}

int ota_json_u64(const json_t *obj, const char *key, uint64_t *ret, struct ota_err *err)
{
    int64_t v = 0;
    int r = ota_json_int(obj, key, &v, err);

    if (r < 0)
        return r;
    if (v < 0)
        return ota_err_set(err, EINVAL, "field '%s' is negative", key);
    *ret = (uint64_t)v;
    return 0;
}

int ota_json_bool(const json_t *obj, const char *key, int *ret, struct ota_err *err)
{
    const json_t *v = field(obj, key, err);

    if (!v)
        return -EINVAL;
    if (!json_is_boolean(v))
        return ota_err_set(err, EINVAL, "field '%s' is not a boolean", key);
    *ret = json_is_true(v);
    return 0;
}

int ota_json_dump(const json_t *v, char **ret)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}
