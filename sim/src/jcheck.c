/* Strict readers of a jansson tree (scenario and fleet files): every key
 * known, every value of its type and range, errors that name the key. */
#include "otasim/jcheck.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"

int otasim_lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

/* Every key of obj must be in allowed (NULL-terminated). */
int otasim_only_keys(const json_t *obj, const char *where, const char *const *allowed,
                     struct ota_err *err)
{
    const char *k;
    json_t *v;

    if (!json_is_object(obj))
        return ota_err_set(err, EINVAL, "%s: must be a mapping", where);
    json_object_foreach((json_t *)obj, k, v)
    {
        size_t i = 0;
        (void)v;
        while (allowed[i] && strcmp(allowed[i], k) != 0)
            i++;
        if (!allowed[i])
            return ota_err_set(err, EINVAL, "%s: unknown key '%s'", where, k);
    }
    return 0;
}

int otasim_opt_str(const json_t *obj, const char *where, const char *key, char *buf, size_t cap,
                   struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);
    const char *s;

    if (!v)
        return 0;
    /* YAML scalars like 2.0 or 1 arrive typed; a version is text. */
    if (json_is_string(v))
        s = json_string_value(v);
    else
        return ota_err_set(err, EINVAL, "%s.%s: must be a string (quote it)", where, key);
    if (strlen(s) >= cap)
        return ota_err_set(err, ENAMETOOLONG, "%s.%s: longer than %zu", where, key, cap - 1);
    ota_strlcpy(buf, s, cap);
    return 0;
}

int otasim_opt_int(const json_t *obj, const char *where, const char *key, long long min,
                   long long max, long long *inout, struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return ota_err_set(err, EINVAL, "%s.%s: must be an integer in [%lld, %lld]", where, key,
                           min, max);
    *inout = json_integer_value(v);
    return 0;
}

int otasim_opt_bool(const json_t *obj, const char *where, const char *key, int *inout,
                    struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return ota_err_set(err, EINVAL, "%s.%s: must be true or false", where, key);
    *inout = json_is_true(v);
    return 0;
}

int otasim_opt_num(const json_t *obj, const char *where, const char *key, double min, double max,
                   double *inout, struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max)
        return ota_err_set(err, EINVAL, "%s.%s: must be a number in [%g, %g]", where, key, min,
                           max);
    *inout = json_number_value(v);
    return 0;
}

int otasim_parse_duration(const char *text, int64_t *ret)
{
    char *end;
    double v = strtod(text, &end);
    int64_t unit = 1;

    if (end == text || v < 0)
        return -EINVAL;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0 || *end == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return -EINVAL;
    /* NaN, infinities and durations from OTASIM_DURATION_MAX_MS on are refused, not
     * converted (undefined behaviour; found by fuzzing, docs/fuzzing.md) */
    if (!(v * (double)unit < (double)OTASIM_DURATION_MAX_MS))
        return -EINVAL;
    *ret = (int64_t)(v * (double)unit + 0.5);
    return 0;
}

int otasim_opt_duration(const json_t *obj, const char *where, const char *key, int64_t *inout,
                        struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);
    int64_t ms;

    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= OTASIM_DURATION_MAX_MS / 1000) {
        *inout = json_integer_value(v) * 1000;
        return 0;
    }
    if (!json_is_string(v) || otasim_parse_duration(json_string_value(v), &ms) < 0)
        return ota_err_set(err, EINVAL,
                           "%s.%s: must be a duration (seconds, or 500ms, 30s, 5m, 1h, 2d)", where,
                           key);
    *inout = ms;
    return 0;
}
