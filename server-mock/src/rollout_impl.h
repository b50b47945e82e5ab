/* What the rollout engine's files share (rollout.c: the engine,
 * rollout_def.c: definitions and their JSON, rollout_status.c: status and
 * metrics JSON). Private to server-mock/src. */
#ifndef OTASRV_ROLLOUT_IMPL_H
#define OTASRV_ROLLOUT_IMPL_H

#include "otasrv/rollout.h"

/* Offered, in progress, or (blue_green) told to switch: the device has the
 * release in hand. */
static inline int in_flight(enum otasrv_rdev_state s)
{
    return s == OTASRV_RDEV_OFFERED || s == OTASRV_RDEV_IN_PROGRESS || s == OTASRV_RDEV_ACTIVATED;
}

/* Not finished: pending, in flight, or waiting in standby. */
static inline int open_state(enum otasrv_rdev_state s)
{
    return s == OTASRV_RDEV_PENDING || in_flight(s) || s == OTASRV_RDEV_STANDBY;
}

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ota/json.h"

#define N_KEYS(a) (sizeof(a) / sizeof((a)[0]))

static inline int has_stage(const struct otasrv_rollout *r, const struct otasrv_rollout_device *d)
{
    return d->stage >= 0 && d->stage < r->def.n_stages;
}

static inline int check_keys(const json_t *obj, const char *const *keys, size_t n,
                             const char *where, struct ota_err *err)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (i < n && strcmp(key, keys[i]) != 0)
            i++;
        if (i == n)
            return ota_err_set(err, EINVAL, "%s%sunknown field '%s'", where, *where ? ": " : "",
                               key);
    }
    return 0;
}

/* Runs an ota_json_* getter into a scratch error, then reports its reason
 * under the field's place in the document ("stages[1]: ..."). */
static inline int placed(int r, const char *where, const struct ota_err *tmp, struct ota_err *err)
{
    if (r >= 0)
        return r;
    if (*where)
        return ota_err_set(err, -r, "%s: %s", where, tmp->reason);
    return ota_err_set(err, -r, "%s", tmp->reason);
}

/* Optional string: absent leaves buf as it is. */
static inline int opt_str(const json_t *obj, const char *where, const char *key, char *buf,
                          size_t cap, struct ota_err *err)
{
    struct ota_err tmp = {0};

    if (!json_object_get(obj, key))
        return 0;
    return placed(ota_json_str(obj, key, buf, cap, &tmp), where, &tmp, err);
}

/* Optional integer within lo..hi: absent leaves *ret as it is. */
static inline int opt_int(const json_t *obj, const char *where, const char *key, int64_t lo,
                          int64_t hi, int64_t *ret, struct ota_err *err)
{
    struct ota_err tmp = {0};
    int64_t v = 0;
    int r;

    if (!json_object_get(obj, key))
        return 0;
    r = placed(ota_json_int(obj, key, &v, &tmp), where, &tmp, err);
    if (r < 0)
        return r;
    if (v < lo || v > hi)
        return ota_err_set(err, EINVAL, "%s%s%s: %" PRId64 " is not within %" PRId64 "..%" PRId64,
                           where, *where ? "." : "", key, v, lo, hi);
    *ret = v;
    return 0;
}

static inline int opt_bool(const json_t *obj, const char *key, int *ret, struct ota_err *err)
{
    struct ota_err tmp = {0};

    if (!json_object_get(obj, key))
        return 0;
    return placed(ota_json_bool(obj, key, ret, &tmp), "", &tmp, err);
}

/* Collects jansson's failures: any NULL or -1 turns into -ENOMEM once. */
static inline void put(json_t *obj, const char *key, json_t *v, int *bad)
{
    if (!v || json_object_set_new(obj, key, v) < 0)
        *bad = 1;
}

static inline void append(json_t *arr, json_t *v, int *bad)
{
    if (!v || json_array_append_new(arr, v) < 0)
        *bad = 1;
}

/* rollout_canary.c: the "canary" and "window" fields and
 * filters.attributes (parse into def, validate, write into obj/filters), and
 * the first stage's make-up. */
int otasrv_rollout_has_canary(const struct otasrv_rollout_def *def);
int otasrv_rollout_extras_parse(const json_t *obj, struct otasrv_rollout_def *def,
                                struct ota_err *err);
int otasrv_rollout_attrs_parse(const json_t *fo, struct otasrv_rollout_filter *f,
                               struct ota_err *err);
int otasrv_rollout_extras_validate(const struct otasrv_rollout_def *def, struct ota_err *err);
void otasrv_rollout_extras_to_json(const struct otasrv_rollout_def *def, json_t *obj,
                                   json_t *filters, int *bad);
int otasrv_rollout_plan_canary(struct otasrv_rollout *r, struct otasrv_rollout_device *devs,
                               size_t n, struct ota_err *err);

/* rollout.c: qsort_r order of row indices (ctx: the rows) by bucket, ties by
 * device id: the same ranks whatever the table's order. */
int otasrv_rollout_cmp_rank(const void *a, const void *b, void *ctx);

/* rollout.c: stage k has enough successes, or nothing left open. */
int otasrv_rollout_stage_passed(const struct otasrv_rollout *r, int k);

/* ---- the index over the caller's table (rollout_index.c) ----
 * Every change the engine makes to a row goes through ridx_note (set_state
 * calls it; so must any new code that changes a row): it sets the row's
 * dirty flag, lists the row for the caller's next write and keeps the
 * in-flight heap (report timeouts) in order. */
void ridx_free(struct otasrv_rollout_index *x);
/* 1 if the index is bound to exactly this table. */
int ridx_bound(const struct otasrv_rollout *r, const struct otasrv_rollout_device *devs, size_t n);
/* Binds to devs (rebuilds the heap; the dirty list becomes "scan all").
 * Call after a recount. Without memory it stays unbound. */
void ridx_bind(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n);
void ridx_unbind(const struct otasrv_rollout *r);
void ridx_note(struct otasrv_rollout *r, struct otasrv_rollout_device *d);
/* Bound only. 1 and *ret = the in-flight row with the oldest last_ms if
 * it is due at now_ms (silent for report_timeout_ms), else 0. */
int ridx_due(const struct otasrv_rollout *r, int64_t now_ms, struct otasrv_rollout_device **ret);
/* Bound only. The oldest last_ms of the in-flight rows, INT64_MAX if none. */
int64_t ridx_earliest(const struct otasrv_rollout *r);

/* strcmp for qsort/bsearch over a definition's device ids. */
int otasrv_rollout_cmp_str(const void *a, const void *b);

/* Sorts def->devices and refuses duplicates. */
int otasrv_rollout_sort_devices(struct otasrv_rollout_def *def, struct ota_err *err);

/* rollout_bluegreen.c: the blue_green strategy's parts. */
int otasrv_bg_parse(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err);
int otasrv_bg_validate(const struct otasrv_rollout_def *def, struct ota_err *err);
void otasrv_bg_to_json(const struct otasrv_rollout_def *def, json_t *obj, int *bad);
/* The decision for a device in standby or activated. */
void otasrv_bg_decide(const struct otasrv_rollout *r, const struct otasrv_rollout_device *d,
                      struct otasrv_rollout_decision *ret);
/* OTASRV_OP_ACTIVATE: 0, or -EINVAL / -EALREADY with the reason. */
int otasrv_bg_activate(struct otasrv_rollout *r, int64_t now_ms, const char *reason,
                       struct ota_err *err);
/* activate_at_ms reached: activates; 1 if it did. */
int otasrv_bg_tick(struct otasrv_rollout *r, int64_t now_ms);

#endif
