/* The canary's make-up and the maintenance window (contract in
 * otasrv/rollout.h, rules in docs/protocol.md "Selection" and "Maintenance
 * windows"): their definition JSON, validation, the stratified first stage
 * of otasrv_rollout_plan, and the window's clock arithmetic. */
#include "otasrv/rollout.h"
#include "otasrv/tz.h"
#include "rollout_impl.h"
#include "ota/inventory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *otasrv_device_attr(const struct otasrv_device_info *info, const char *key)
{
    for (size_t i = 0; info && i < info->n_attrs; i++)
        if (info->attr_keys[i] && strcmp(info->attr_keys[i], key) == 0)
            return info->attr_values[i];
    return NULL;
}

int otasrv_rollout_has_canary(const struct otasrv_rollout_def *def)
{
    return def->canary.n_strata > 0 || def->canary.n_first_tags > 0;
}

/* ---- definition JSON and validation ---- */

static int parse_hhmm(const char *s, int *ret)
{
    if (strlen(s) != 5 || s[2] != ':' || s[0] < '0' || s[0] > '2' || s[1] < '0' || s[1] > '9' ||
        s[3] < '0' || s[3] > '5' || s[4] < '0' || s[4] > '9')
        return -1;
    *ret = ((s[0] - '0') * 10 + (s[1] - '0')) * 60 + (s[3] - '0') * 10 + (s[4] - '0');
    return *ret < 1440 ? 0 : -1;
}

static int str_array(const json_t *arr, const char *where, char *base, size_t stride, int max,
                     int *ret_n, struct ota_err *err)
{
    size_t i;
    json_t *v;

    if (!json_is_array(arr))
        return ota_err_set(err, EINVAL, "%s: not an array", where);
    if (json_array_size(arr) > (size_t)max)
        return ota_err_set(err, EINVAL, "%s: %zu entries, at most %d", where, json_array_size(arr),
                           max);
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) >= stride ||
            strlen(json_string_value(v)) != json_string_length(v))
            return ota_err_set(err, EINVAL, "%s[%zu]: not a string of at most %zu bytes", where, i,
                               stride - 1);
        memcpy(base + i * stride, json_string_value(v), json_string_length(v) + 1);
    }
    *ret_n = (int)json_array_size(arr);
    return 0;
}

static int parse_canary(const json_t *c, struct otasrv_rollout_canary *ret, struct ota_err *err)
{
    static const char *const keys[] = {"strata", "per_stratum", "first_tags"};
    int64_t per = 1;
    int r;

    if (!json_is_object(c))
        return ota_err_set(err, EINVAL, "canary: not an object");
    r = check_keys(c, keys, N_KEYS(keys), "canary", err);
    if (r >= 0 && json_object_get(c, "strata"))
        r = str_array(json_object_get(c, "strata"), "canary.strata", ret->strata[0],
                      sizeof(ret->strata[0]), OTASRV_ROLLOUT_MAX_STRATA, &ret->n_strata, err);
    if (r >= 0 && json_object_get(c, "first_tags"))
        r = str_array(json_object_get(c, "first_tags"), "canary.first_tags", ret->first_tags[0],
                      sizeof(ret->first_tags[0]), OTASRV_ROLLOUT_MAX_TAGS, &ret->n_first_tags, err);
    if (r >= 0)
        r = opt_int(c, "canary", "per_stratum", 1, 1000, &per, err);
    ret->per_stratum = (uint32_t)per;
    return r;
}

static int parse_window(const json_t *w, struct otasrv_rollout_window *ret, struct ota_err *err)
{
    static const char *const keys[] = {"start", "end"};
    char start[8] = "", end[8] = "";
    struct ota_err tmp = {0};
    int r;

    if (!json_is_object(w))
        return ota_err_set(err, EINVAL, "window: not an object");
    r = check_keys(w, keys, N_KEYS(keys), "window", err);
    if (r >= 0)
        r = placed(ota_json_str(w, "start", start, sizeof(start), &tmp), "window", &tmp, err);
    if (r >= 0)
        r = placed(ota_json_str(w, "end", end, sizeof(end), &tmp), "window", &tmp, err);
    if (r < 0)
        return r;
    if (parse_hhmm(start, &ret->start_min) < 0)
        return ota_err_set(err, EINVAL, "window.start: '%s' is not HH:MM (00:00..23:59)", start);
    if (parse_hhmm(end, &ret->end_min) < 0)
        return ota_err_set(err, EINVAL, "window.end: '%s' is not HH:MM (00:00..23:59)", end);
    ret->enabled = 1;
    return 0;
}

int otasrv_rollout_extras_parse(const json_t *obj, struct otasrv_rollout_def *def,
                                struct ota_err *err)
{
    int r = 0;

    if (json_object_get(obj, "canary"))
        r = parse_canary(json_object_get(obj, "canary"), &def->canary, err);
    if (r >= 0 && json_object_get(obj, "window"))
        r = parse_window(json_object_get(obj, "window"), &def->window, err);
    return r;
}

int otasrv_rollout_attrs_parse(const json_t *fo, struct otasrv_rollout_filter *f,
                               struct ota_err *err)
{
    const json_t *a = json_object_get(fo, "attributes");
    const char *k;
    json_t *v;

    if (!a)
        return 0;
    if (!json_is_object(a) || json_object_size(a) > OTASRV_ROLLOUT_MAX_ATTRS)
        return ota_err_set(err, EINVAL, "filters.attributes: an object of at most %d strings",
                           OTASRV_ROLLOUT_MAX_ATTRS);
    f->n_attrs = 0;
    json_object_foreach((json_t *)a, k, v)
    {
        if (strlen(k) >= OTASRV_ROLLOUT_ATTR_KEY || !json_is_string(v) ||
            json_string_length(v) >= OTASRV_ROLLOUT_ATTR_VALUE ||
            strlen(json_string_value(v)) != json_string_length(v))
            return ota_err_set(err, EINVAL, "filters.attributes.%.40s: not a short string", k);
        ota_strlcpy(f->attr_keys[f->n_attrs], k, sizeof(f->attr_keys[0]));
        ota_strlcpy(f->attr_values[f->n_attrs], json_string_value(v), sizeof(f->attr_values[0]));
        f->n_attrs++;
    }
    return 0;
}

int otasrv_rollout_extras_validate(const struct otasrv_rollout_def *def, struct ota_err *err)
{
    const struct otasrv_rollout_canary *c = &def->canary;
    const struct otasrv_rollout_filter *f = &def->filter;
    const struct otasrv_rollout_window *w = &def->window;

    if (f->n_attrs < 0 || f->n_attrs > OTASRV_ROLLOUT_MAX_ATTRS)
        return ota_err_set(err, EINVAL, "filters.attributes: at most %d", OTASRV_ROLLOUT_MAX_ATTRS);
    for (int i = 0; i < f->n_attrs; i++)
        if (!ota_attr_key_valid(f->attr_keys[i]) || !ota_attr_value_valid(f->attr_values[i]))
            return ota_err_set(err, EINVAL,
                               "filters.attributes: key '%.40s' or its value is not an attribute "
                               "(key 1..32 of [a-z0-9_], value <= 64 printable)",
                               f->attr_keys[i]);
    if (c->n_strata < 0 || c->n_strata > OTASRV_ROLLOUT_MAX_STRATA || c->n_first_tags < 0 ||
        c->n_first_tags > OTASRV_ROLLOUT_MAX_TAGS)
        return ota_err_set(err, EINVAL, "canary: too many strata or first_tags");
    for (int i = 0; i < c->n_strata; i++) {
        const char *s = c->strata[i];
        if (strcmp(s, "device_type") != 0 && strcmp(s, "group") != 0 &&
            !(strncmp(s, "attributes.", 11) == 0 && ota_attr_key_valid(s + 11)))
            return ota_err_set(err, EINVAL,
                               "canary.strata[%d]: '%s' is not device_type, group or "
                               "attributes.KEY",
                               i, s);
        for (int j = 0; j < i; j++)
            if (strcmp(c->strata[j], s) == 0)
                return ota_err_set(err, EINVAL, "canary.strata[%d]: '%s' is listed twice", i, s);
    }
    for (int i = 0; i < c->n_first_tags; i++)
        if (!c->first_tags[i][0] || memchr(c->first_tags[i], ' ', strlen(c->first_tags[i])))
            return ota_err_set(err, EINVAL, "canary.first_tags[%d]: not a tag", i);
    if (c->n_strata && (c->per_stratum < 1 || c->per_stratum > 1000))
        return ota_err_set(err, EINVAL, "canary.per_stratum: not within 1..1000");
    if (otasrv_rollout_has_canary(def) && def->strategy != OTASRV_STRATEGY_CANARY &&
        def->strategy != OTASRV_STRATEGY_STAGED && def->strategy != OTASRV_STRATEGY_ROLLING)
        return ota_err_set(err, EINVAL,
                           "canary: only canary, staged and rolling rollouts have one");
    if (w->enabled && (w->start_min < 0 || w->start_min >= 1440 || w->end_min < 0 ||
                       w->end_min >= 1440 || w->start_min == w->end_min))
        return ota_err_set(err, EINVAL, "window: start and end are distinct times of day");
    return 0;
}

static json_t *hhmm(int min)
{
    char buf[8];

    snprintf(buf, sizeof(buf), "%02d:%02d", min / 60, min % 60);
    return json_string(buf);
}

void otasrv_rollout_extras_to_json(const struct otasrv_rollout_def *def, json_t *obj,
                                   json_t *filters, int *bad)
{
    const struct otasrv_rollout_canary *c = &def->canary;

    if (def->filter.n_attrs) {
        json_t *a = json_object();
        for (int i = 0; a && i < def->filter.n_attrs; i++)
            put(a, def->filter.attr_keys[i], json_string(def->filter.attr_values[i]), bad);
        put(filters, "attributes", a, bad);
    }
    if (otasrv_rollout_has_canary(def)) {
        json_t *o = json_object(), *strata = json_array(), *tags = json_array();
        for (int i = 0; strata && i < c->n_strata; i++)
            append(strata, json_string(c->strata[i]), bad);
        for (int i = 0; tags && i < c->n_first_tags; i++)
            append(tags, json_string(c->first_tags[i]), bad);
        if (o) {
            put(o, "strata", strata, bad);
            put(o, "per_stratum", json_integer(c->per_stratum ? c->per_stratum : 1), bad);
            put(o, "first_tags", tags, bad);
        } else {
            json_decref(strata);
            json_decref(tags);
        }
        put(obj, "canary", o, bad);
    }
    if (def->window.enabled) {
        json_t *w = json_object();
        if (w) {
            put(w, "start", hhmm(def->window.start_min), bad);
            put(w, "end", hhmm(def->window.end_min), bad);
        }
        put(obj, "window", w, bad);
    }
}

/* ---- make-up of the first stage ---- */

static uint64_t fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return (h ^ 0x1f) * 0x100000001b3ULL; /* a separator after each value */
}

static const char *stratum_value(const struct otasrv_device_info *info, const char *stratum)
{
    if (strcmp(stratum, "device_type") == 0)
        return info->device_type;
    if (strcmp(stratum, "group") == 0)
        return info->group;
    return otasrv_device_attr(info, stratum + strlen("attributes."));
}

void otasrv_rollout_canary_prep(const struct otasrv_rollout_def *def,
                                const struct otasrv_device_info *info,
                                struct otasrv_rollout_device *d)
{
    const struct otasrv_rollout_canary *c = &def->canary;
    uint64_t h = 0xcbf29ce484222325ULL;

    d->first = 0;
    for (int i = 0; i < c->n_first_tags && !d->first; i++)
        for (size_t k = 0; k < info->n_tags; k++)
            if (info->tags[k] && strcmp(info->tags[k], c->first_tags[i]) == 0)
                d->first = 1;
    for (int i = 0; i < c->n_strata; i++)
        h = fnv(h, stratum_value(info, c->strata[i]));
    d->stratum = h;
    d->tz = otasrv_tz_intern(info->timezone);
}

static int cmp_stratum(const void *a, const void *b, void *ctx)
{
    const struct otasrv_rollout_device *devs = ctx;
    uint64_t x = devs[*(const size_t *)a].stratum, y = devs[*(const size_t *)b].stratum;

    if (x != y)
        return x < y ? -1 : 1;
    return otasrv_rollout_cmp_rank(a, b, ctx);
}

/* Marks (stage 0) the first-tag devices, then per_stratum devices of every
 * stratum (counting those already in). order: ranks; by: a scratch index. */
static uint32_t pick_canary(const struct otasrv_rollout_def *def,
                            struct otasrv_rollout_device *devs, size_t n, size_t *by)
{
    uint32_t picked = 0;

    for (size_t i = 0; i < n; i++) {
        devs[i].stage = devs[i].first ? 0 : -1;
        picked += devs[i].first != 0;
    }
    if (def->canary.n_strata == 0)
        return picked;
    for (size_t i = 0; i < n; i++)
        by[i] = i;
    qsort_r(by, n, sizeof(*by), cmp_stratum, devs);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint32_t in = 0;
        while (j < n && devs[by[j]].stratum == devs[by[i]].stratum)
            in += devs[by[j++]].stage == 0;
        for (size_t k = i; k < j && in < def->canary.per_stratum; k++)
            if (devs[by[k]].stage != 0) {
                devs[by[k]].stage = 0;
                in++;
                picked++;
            }
        i = j;
    }
    return picked;
}

int otasrv_rollout_plan_canary(struct otasrv_rollout *r, struct otasrv_rollout_device *devs,
                               size_t n, struct ota_err *err)
{
    const struct otasrv_rollout_def *def = &r->def;
    const struct otasrv_rollout_stage *st0 = &def->stages[0];
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    size_t *by = malloc((n ? n : 1) * sizeof(*by));
    int *old = malloc((n ? n : 1) * sizeof(*old));
    uint64_t size0 = 0, in0, in_k = 0;
    int k = 1;

    if (!order || !by || !old) {
        free(order);
        free(by);
        free(old);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        old[i] = devs[i].stage;
        order[i] = i;
        if (st0->percent && devs[i].bucket < st0->percent * 100)
            size0++;
    }
    if (st0->batch_size)
        size0 = st0->batch_size;
    qsort_r(order, n, sizeof(*order), otasrv_rollout_cmp_rank, devs);
    in0 = pick_canary(def, devs, n, by);
    /* The rest of the canary by rank, then the later stages as without a
     * make-up, over the devices not in the canary. */
    for (size_t i = 0; i < n; i++) {
        struct otasrv_rollout_device *d = &devs[order[i]];
        if (d->stage == 0)
            continue;
        if (in0 < size0) {
            d->stage = 0;
            in0++;
            continue;
        }
        while (k < def->n_stages) {
            const struct otasrv_rollout_stage *st = &def->stages[k];
            if (st->batch_size ? in_k < st->batch_size : d->bucket < st->percent * 100)
                break;
            k++;
            in_k = 0;
        }
        d->stage = k < def->n_stages ? k : -1;
        in_k++;
    }
    for (size_t i = 0; i < n; i++)
        if (devs[i].stage != old[i])
            devs[i].dirty = 1;
    free(order);
    free(by);
    free(old);
    otasrv_rollout_recount(r, devs, n);
    return 0;
}

/* ---- maintenance window ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int inside(const struct otasrv_rollout_window *w, int minute)
{
    if (w->start_min < w->end_min)
        return minute >= w->start_min && minute < w->end_min;
    return minute >= w->start_min || minute < w->end_min; /* crosses midnight */
}

static int local_minute(const char *tz, int64_t at_ms)
{
    int64_t local_s = floor_div(at_ms, 1000) + otasrv_tz_offset(tz, at_ms);
    return (int)(floor_div(local_s, 60) - floor_div(local_s, 86400) * 1440);
}

int otasrv_rollout_window_open(const struct otasrv_rollout_window *w, const char *tz,
                               int64_t now_ms)
{
    return !w->enabled || inside(w, local_minute(tz, now_ms));
}

int64_t otasrv_rollout_window_opens(const struct otasrv_rollout_window *w, const char *tz,
                                    int64_t now_ms)
{
    int64_t t = now_ms;

    if (otasrv_rollout_window_open(w, tz, now_ms))
        return now_ms;
    /* Step to the next local start by the offset at hand; an offset change
     * on the way (DST) moves it, so step again from there (twice is
     * enough: offsets change at most twice a year). */
    for (int i = 0; i < 4; i++) {
        int m = local_minute(tz, t);
        int64_t wait_min = (w->start_min - m + 1440) % 1440;
        int64_t next = floor_div(t, 60000) * 60000 + wait_min * 60000;
        if (next <= t)
            next = t;
        t = next;
        if (otasrv_rollout_window_open(w, tz, t))
            return t;
        t += 60000; /* a skipped local hour: try again from just after */
    }
    return t;
}

/* The first instant after now_ms at which the window opens in zone tz: a
 * window open at now_ms opens next after it closes. */
static int64_t opens_after(const struct otasrv_rollout_window *w, const char *tz, int64_t now_ms)
{
    int64_t t = now_ms;

    for (int i = 0; i < 4 && otasrv_rollout_window_open(w, tz, t); i++) {
        int m = local_minute(tz, t);
        t = floor_div(t, 60000) * 60000 + (int64_t)((w->end_min - m + 1440) % 1440) * 60000;
    }
    return otasrv_rollout_window_opens(w, tz, t == now_ms ? now_ms + 1 : t);
}

int64_t otasrv_rollout_window_next(const struct otasrv_rollout *r,
                                   const struct otasrv_rollout_device *devs, size_t n,
                                   int64_t now_ms)
{
    /* Rows keep interned zones: one computation per zone (a fleet has few). */
    enum { NSEEN = 64 };
    const char *seen[NSEEN];
    int n_seen = 0;
    int64_t best = -1;

    if (!r->def.window.enabled || r->state != OTASRV_ROLLOUT_RUNNING)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        int known = 0;
        int64_t t;
        /* pending devices of open stages wait for an offer; blue-green devices
         * in standby, once the fleet is activated, for the switch */
        int waits = (d->state == OTASRV_RDEV_PENDING && d->stage >= 0 && d->stage <= r->stage) ||
                    (d->state == OTASRV_RDEV_STANDBY && r->activated_ms);
        if (!waits)
            continue;
        for (int k = 0; k < n_seen && !known; k++)
            known = seen[k] == d->tz;
        if (known)
            continue;
        if (n_seen < NSEEN)
            seen[n_seen++] = d->tz;
        t = opens_after(&r->def.window, d->tz, now_ms);
        if (best < 0 || t < best)
            best = t;
    }
    return best;
}

int64_t otasrv_rollout_delay_next(const struct otasrv_rollout *r, int64_t now_ms)
{
    int k = r->stage;
    int64_t at;

    if (r->state != OTASRV_ROLLOUT_RUNNING || k >= r->def.n_stages - 1 ||
        r->def.stages[k].delay_ms <= 0 || !otasrv_rollout_stage_passed(r, k))
        return -1;
    at = r->stage_opened_ms + r->def.stages[k].delay_ms;
    return at < now_ms ? now_ms : at;
}
