/* Rollout engine (contract and JSON schema in otasrv/rollout.h).
 *
 * Why it looks like this:
 * - The per-device table is the caller's (the server keeps it in SQLite), so
 *   the engine keeps only counts per stage and per device state, updated on
 *   every change it makes (set_state), and an index (rollout_index.c: the
 *   in-flight rows by last_ms, the rows changed since the last write),
 *   rebuilt from the table when the engine is handed a table it has not
 *   indexed. That makes decide O(1), a tick O(stages) when no timeout is
 *   due, and lets a restarted server rebuild everything from the rows it
 *   persisted.
 * - Selection hashes (rollout id, device id): the same device lands in
 *   different canaries for different rollouts, and nothing depends on the
 *   order rows come back from the database.
 * - One validator serves code-built and JSON definitions, so to_json never
 *   writes what from_json would refuse.
 * - Threshold sums are bounded (success + failure <= 100) so a stage that
 *   has not tripped can always pass once its devices finish. */
#include "otasrv/rollout.h"
#include "rollout_impl.h"
#include "otasrv/tz.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- device states ---- */

/* The one place a row changes state: keeps the counts exact. */
static void set_state(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                      enum otasrv_rdev_state to)
{
    if (has_stage(r, d)) {
        r->count[d->stage][d->state]--;
        r->count[d->stage][to]++;
    }
    r->total[d->state]--;
    r->total[to]++;
    d->state = to;
    ridx_note(r, d);
}

static int terminal(enum otasrv_rollout_state s)
{
    return s == OTASRV_ROLLOUT_COMPLETED || s == OTASRV_ROLLOUT_FAILED ||
           s == OTASRV_ROLLOUT_CANCELLED || s == OTASRV_ROLLOUT_ROLLED_BACK;
}

/* ---- selection ---- */

uint32_t otasrv_rollout_bucket(const char *rollout_id, const char *device_id)
{
    const uint64_t prime = 0x100000001b3ULL;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (const unsigned char *p = (const unsigned char *)rollout_id; *p; p++)
        h = (h ^ *p) * prime;
    h *= prime; /* the 0x00 separator: h ^ 0 == h */
    for (const unsigned char *p = (const unsigned char *)device_id; *p; p++)
        h = (h ^ *p) * prime;
    /* FNV alone leaves the last bytes weakly mixed ("dev-0001" vs
     * "dev-0002"); fmix64 spreads them over all bits. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)(h % OTASRV_ROLLOUT_BUCKETS);
}

static int vop_holds(enum otasrv_vop op, int cmp)
{
    switch (op) {
    case OTASRV_VOP_LT:
        return cmp < 0;
    case OTASRV_VOP_LE:
        return cmp <= 0;
    case OTASRV_VOP_EQ:
        return cmp == 0;
    case OTASRV_VOP_NE:
        return cmp != 0;
    case OTASRV_VOP_GE:
        return cmp >= 0;
    case OTASRV_VOP_GT:
        return cmp > 0;
    default:
        return 0;
    }
}

static int has_tag(const struct otasrv_device_info *info, const char *tag)
{
    for (size_t i = 0; i < info->n_tags; i++)
        if (info->tags[i] && strcmp(info->tags[i], tag) == 0)
            return 1;
    return 0;
}

static int no(const char **ret_reason, const char *reason)
{
    if (ret_reason)
        *ret_reason = reason;
    return 0;
}

int otasrv_rollout_matches(const struct otasrv_rollout_def *def,
                           const struct otasrv_device_info *info, const char **ret_reason)
{
    const struct otasrv_rollout_filter *f = &def->filter;

    if (!info || !info->device_id)
        return no(ret_reason, "no device");
    if (def->strategy == OTASRV_STRATEGY_MANUAL &&
        !bsearch(&info->device_id, def->devices, def->n_devices, sizeof(def->devices[0]),
                 otasrv_rollout_cmp_str))
        return no(ret_reason, "the device is not listed in the manual rollout");
    if (f->device_type[0] && (!info->device_type || strcmp(f->device_type, info->device_type)))
        return no(ret_reason, "the device type differs from the filter's");
    if (f->group[0] && (!info->group || strcmp(f->group, info->group)))
        return no(ret_reason, "the group differs from the filter's");
    for (int i = 0; i < f->n_tags; i++)
        if (!has_tag(info, f->tags[i]))
            return no(ret_reason, "the device lacks a tag the filter requires");
    for (int i = 0; i < f->n_attrs; i++) {
        const char *v = otasrv_device_attr(info, f->attr_keys[i]);
        if (!v || strcmp(v, f->attr_values[i]) != 0)
            return no(ret_reason, "an attribute differs from the filter's");
    }
    if (f->version[0]) {
        int cmp = 0;
        if (!info->version || ota_version_cmp(info->version, f->version, &cmp) < 0)
            return no(ret_reason, "the device's version is unknown or not a version");
        if (!vop_holds(f->version_op, cmp))
            return no(ret_reason, "the device's version does not satisfy the version filter");
    }
    return 1;
}

int otasrv_rollout_device_init(const char *rollout_id, const char *device_id,
                               struct otasrv_rollout_device *ret, struct ota_err *err)
{
    struct otasrv_rollout_device d;

    if (!device_id || !device_id[0] || strlen(device_id) >= sizeof(d.device_id))
        return ota_err_set(err, EINVAL, "device id: want 1..%d bytes", OTASRV_ROLLOUT_ID_MAX - 1);
    memset(&d, 0, sizeof(d));
    memcpy(d.device_id, device_id, strlen(device_id) + 1);
    d.bucket = otasrv_rollout_bucket(rollout_id, device_id);
    d.stage = -1;
    d.state = OTASRV_RDEV_PENDING;
    d.dirty = 1;
    *ret = d;
    return 0;
}

/* ---- the rollout ---- */

int otasrv_rollout_new(struct otasrv_rollout_def *def, int64_t now_ms, struct otasrv_rollout **ret,
                       struct ota_err *err)
{
    struct otasrv_rollout *r;
    int rc;

    rc = otasrv_rollout_def_validate(def, err);
    if (rc < 0)
        return rc;
    if (!def->id[0])
        return ota_err_set(err, EINVAL, "id: the rollout has no id");
    rc = otasrv_rollout_sort_devices(def, err);
    if (rc < 0)
        return rc;
    r = calloc(1, sizeof(*r));
    if (!r)
        return ota_err_set(err, ENOMEM, "out of memory");
    r->def = *def;
    memset(def, 0, sizeof(*def));
    r->state = OTASRV_ROLLOUT_DRAFT;
    r->created_ms = now_ms;
    r->changed_ms = now_ms;
    *ret = r;
    return 0;
}

void otasrv_rollout_free(struct otasrv_rollout *r)
{
    if (!r)
        return;
    otasrv_rollout_def_clear(&r->def);
    ridx_free(r->idx);
    free(r);
}

void otasrv_rollout_recount(struct otasrv_rollout *r, const struct otasrv_rollout_device *devs,
                            size_t n)
{
    ridx_unbind(r); /* the caller may have changed rows: index again */
    memset(r->count, 0, sizeof(r->count));
    memset(r->total, 0, sizeof(r->total));
    r->n_devices = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        if ((unsigned)d->state >= OTASRV_RDEV_MAX)
            continue;
        r->total[d->state]++;
        if (has_stage(r, d))
            r->count[d->stage][d->state]++;
    }
}

/* Bucket order, ties broken by device id: the same ranks whatever the
 * table's order. */
int otasrv_rollout_cmp_rank(const void *a, const void *b, void *ctx)
{
    const struct otasrv_rollout_device *devs = ctx;
    const struct otasrv_rollout_device *x = &devs[*(const size_t *)a];
    const struct otasrv_rollout_device *y = &devs[*(const size_t *)b];

    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return strcmp(x->device_id, y->device_id);
}

static void set_stage(struct otasrv_rollout_device *d, int stage)
{
    if (d->stage != stage) {
        d->stage = stage;
        d->dirty = 1;
    }
}

int otasrv_rollout_plan(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                        struct ota_err *err)
{
    const struct otasrv_rollout_def *def = &r->def;
    int batches = 0;
    size_t *order;
    int k = 0;
    uint64_t in_k = 0;

    for (int i = 0; i < def->n_stages; i++)
        batches |= def->stages[i].batch_size != 0;
    for (size_t i = 0; i < n; i++)
        devs[i].bucket = otasrv_rollout_bucket(def->id, devs[i].device_id);
    if (otasrv_rollout_has_canary(def))
        return otasrv_rollout_plan_canary(r, devs, n, err);
    if (!batches) {
        /* Percent stages only: a device's stage is a function of its bucket. */
        for (size_t i = 0; i < n; i++) {
            int stage = -1;
            for (int s = 0; s < def->n_stages && stage < 0; s++)
                if (devs[i].bucket < def->stages[s].percent * 100)
                    stage = s;
            set_stage(&devs[i], stage);
        }
        otasrv_rollout_recount(r, devs, n);
        return 0;
    }
    order = malloc((n ? n : 1) * sizeof(*order));
    if (!order)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(*order), otasrv_rollout_cmp_rank, devs);
    /* Walk the ranks: a batch stage takes the next batch_size devices, a
     * percent stage the next ones whose bucket is under its cut. */
    for (size_t i = 0; i < n; i++) {
        struct otasrv_rollout_device *d = &devs[order[i]];
        while (k < def->n_stages) {
            const struct otasrv_rollout_stage *st = &def->stages[k];
            if (st->batch_size ? in_k < st->batch_size : d->bucket < st->percent * 100)
                break;
            k++;
            in_k = 0;
        }
        set_stage(d, k < def->n_stages ? k : -1);
        in_k++;
    }
    free(order);
    otasrv_rollout_recount(r, devs, n);
    return 0;
}

static uint32_t stage_size(const struct otasrv_rollout *r, int k)
{
    uint32_t n = 0;

    for (int s = 0; s < OTASRV_RDEV_MAX; s++)
        n += r->count[k][s];
    return n - r->count[k][OTASRV_RDEV_SKIPPED];
}

static uint32_t stage_failed(const struct otasrv_rollout *r, int k)
{
    return r->count[k][OTASRV_RDEV_FAILURE] + r->count[k][OTASRV_RDEV_TIMED_OUT];
}

static uint32_t stage_open(const struct otasrv_rollout *r, int k)
{
    return r->count[k][OTASRV_RDEV_PENDING] + r->count[k][OTASRV_RDEV_OFFERED] +
           r->count[k][OTASRV_RDEV_IN_PROGRESS] + r->count[k][OTASRV_RDEV_ACTIVATED];
}

/* 1 (and the reason) if stage k has more failures than it allows. */
static int stage_tripped(const struct otasrv_rollout *r, int k, char *why, size_t cap)
{
    const struct otasrv_rollout_stage *st = &r->def.stages[k];
    uint32_t n = stage_size(r, k);
    uint32_t f = stage_failed(r, k);
    uint32_t fresh = f > r->fail_ack[k] ? f - r->fail_ack[k] : 0;
    const char *since = r->fail_ack[k] ? " since the resume" : "";

    if ((uint64_t)fresh * 100 > (uint64_t)st->failure_threshold * n) {
        snprintf(why, cap,
                 "stage %d: %" PRIu32 " of %" PRIu32 " devices failed%s (more than %" PRIu32 "%%)",
                 k, fresh, n, since, st->failure_threshold);
        return 1;
    }
    if (st->max_failures >= 0 && (int64_t)fresh > st->max_failures) {
        snprintf(why, cap,
                 "stage %d: %" PRIu32 " of %" PRIu32 " devices failed%s (more than %" PRId64 ")", k,
                 fresh, n, since, st->max_failures);
        return 1;
    }
    return 0;
}

int otasrv_rollout_stage_passed(const struct otasrv_rollout *r, int k)
{
    const struct otasrv_rollout_stage *st = &r->def.stages[k];
    /* blue_green: installed and waiting passes the stage (the switch comes later). */
    uint64_t ok = r->count[k][OTASRV_RDEV_SUCCESS] + r->count[k][OTASRV_RDEV_STANDBY] +
                  r->count[k][OTASRV_RDEV_ACTIVATED];

    return ok * 100 >= (uint64_t)st->success_threshold * stage_size(r, k) || stage_open(r, k) == 0;
}

static void change(struct otasrv_rollout *r, enum otasrv_rollout_state to, int64_t now_ms,
                   const char *reason)
{
    r->state = to;
    r->changed_ms = now_ms;
    if (terminal(to))
        r->finished_ms = now_ms;
    ota_strlcpy(r->reason, reason, sizeof(r->reason));
}

static void order_rollback(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                           int64_t now_ms)
{
    set_state(r, d, OTASRV_RDEV_ROLLBACK_ORDERED);
    d->rollback_ms = now_ms;
    d->last_ms = now_ms;
    ridx_note(r, d);
}

/* Orders back every device that got the release: offered (it may be
 * installing it), in progress, succeeded. Failed ones are back on their old
 * slot already; timed-out ones come back through on_report if they speak. */
static uint32_t roll_back(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                          int64_t now_ms, const char *reason)
{
    uint32_t ordered = 0;

    for (size_t i = 0; i < n; i++) {
        enum otasrv_rdev_state s = devs[i].state;
        if (in_flight(s) || s == OTASRV_RDEV_SUCCESS) {
            order_rollback(r, &devs[i], now_ms);
            ordered++;
        }
    }
    change(r, OTASRV_ROLLOUT_ROLLED_BACK, now_ms, reason);
    return ordered;
}

static int refuse_terminal(const struct otasrv_rollout *r, struct ota_err *err)
{
    return ota_err_set(err, EINVAL, "rollout is %s", otasrv_rollout_state_names[r->state]);
}

static int act_start(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                     int64_t now_ms, struct ota_err *err)
{
    int rc;

    switch (r->state) {
    case OTASRV_ROLLOUT_APPROVED:
        break;
    case OTASRV_ROLLOUT_DRAFT:
        return ota_err_set(err, EINVAL, "rollout is not approved");
    case OTASRV_ROLLOUT_SCHEDULED:
    case OTASRV_ROLLOUT_RUNNING:
        return ota_err_set(err, EALREADY, "rollout is already started (%s)",
                           otasrv_rollout_state_names[r->state]);
    case OTASRV_ROLLOUT_PAUSED:
        return ota_err_set(err, EINVAL, "rollout is paused: resume it");
    default:
        return refuse_terminal(r, err);
    }
    if (!devs || n == 0)
        return ota_err_set(err, EINVAL, "no device is targeted by the rollout");
    rc = otasrv_rollout_plan(r, devs, n, err);
    if (rc < 0)
        return rc;
    r->stage = 0;
    memset(r->fail_ack, 0, sizeof(r->fail_ack));
    if (r->def.start_at_ms > now_ms) {
        change(r, OTASRV_ROLLOUT_SCHEDULED, now_ms, "");
    } else {
        r->started_ms = now_ms;
        r->stage_opened_ms = now_ms;
        change(r, OTASRV_ROLLOUT_RUNNING, now_ms, "");
    }
    return 0;
}

static int act_on(struct otasrv_rollout *r, enum otasrv_op op, struct otasrv_rollout_device *devs,
                  size_t n, int64_t now_ms, struct ota_err *err)
{
    enum otasrv_rollout_state s = r->state;

    if (devs)
        otasrv_rollout_recount(r, devs, n);
    switch (op) {
    case OTASRV_OP_APPROVE:
        if (s == OTASRV_ROLLOUT_DRAFT) {
            r->approved_ms = now_ms;
            change(r, OTASRV_ROLLOUT_APPROVED, now_ms, "");
            return 0;
        }
        if (terminal(s))
            return refuse_terminal(r, err);
        return ota_err_set(err, EALREADY, "rollout is already approved");
    case OTASRV_OP_START:
        return act_start(r, devs, n, now_ms, err);
    case OTASRV_OP_PAUSE:
        if (s == OTASRV_ROLLOUT_RUNNING || s == OTASRV_ROLLOUT_SCHEDULED) {
            change(r, OTASRV_ROLLOUT_PAUSED, now_ms, "paused by the operator");
            return 0;
        }
        if (s == OTASRV_ROLLOUT_PAUSED)
            return ota_err_set(err, EALREADY, "rollout is already paused");
        if (terminal(s))
            return refuse_terminal(r, err);
        return ota_err_set(err, EINVAL, "rollout is not started");
    case OTASRV_OP_RESUME:
        if (s == OTASRV_ROLLOUT_PAUSED) {
            for (int k = 0; k < r->def.n_stages; k++)
                r->fail_ack[k] = stage_failed(r, k);
            if (!r->started_ms && r->def.start_at_ms > now_ms) {
                change(r, OTASRV_ROLLOUT_SCHEDULED, now_ms, "");
            } else {
                if (!r->started_ms)
                    r->started_ms = now_ms;
                change(r, OTASRV_ROLLOUT_RUNNING, now_ms, "");
            }
            return 0;
        }
        if (s == OTASRV_ROLLOUT_RUNNING || s == OTASRV_ROLLOUT_SCHEDULED)
            return ota_err_set(err, EALREADY, "rollout is not paused (%s)",
                               otasrv_rollout_state_names[s]);
        if (terminal(s))
            return refuse_terminal(r, err);
        return ota_err_set(err, EINVAL, "rollout is not started");
    case OTASRV_OP_CANCEL:
        if (s == OTASRV_ROLLOUT_CANCELLED)
            return ota_err_set(err, EALREADY, "rollout is already cancelled");
        if (terminal(s))
            return refuse_terminal(r, err);
        change(r, OTASRV_ROLLOUT_CANCELLED, now_ms, "cancelled by the operator");
        return 0;
    case OTASRV_OP_ACTIVATE:
        return otasrv_bg_activate(r, now_ms, "activated by the operator", err);
    case OTASRV_OP_ROLLBACK:
        if (s == OTASRV_ROLLOUT_ROLLED_BACK)
            return ota_err_set(err, EALREADY, "rollout is already rolled back");
        if (s == OTASRV_ROLLOUT_DRAFT || s == OTASRV_ROLLOUT_APPROVED ||
            s == OTASRV_ROLLOUT_SCHEDULED)
            return ota_err_set(err, EINVAL, "rollout has not started: nothing to roll back");
        if (!r->def.previous_release_id[0])
            return ota_err_set(err, EINVAL, "rollout has no previous_release_id to roll back to");
        if (!devs && n)
            return ota_err_set(err, EINVAL, "rollback needs the device table");
        roll_back(r, devs, n, now_ms, "rolled back by the operator");
        return 0;
    default:
        return ota_err_set(err, EINVAL, "unknown rollout action %d", (int)op);
    }
}

int otasrv_rollout_act(struct otasrv_rollout *r, enum otasrv_op op,
                       struct otasrv_rollout_device *devs, size_t n, int64_t now_ms,
                       struct ota_err *err)
{
    int rc = act_on(r, op, devs, n, now_ms, err);

    if (devs)
        ridx_bind(r, devs, n); /* recounted (and maybe planned): index it */
    return rc;
}

/* ---- devices ---- */

static void decide_into(const struct otasrv_rollout *r, const struct otasrv_device_info *info,
                        const struct otasrv_rollout_device *d, int64_t now_ms,
                        struct otasrv_rollout_decision *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->offer = OTASRV_OFFER_NONE;
    if (!d) {
        ret->why = OTASRV_WHY_NOT_TARGETED;
        return;
    }
    switch (d->state) {
    case OTASRV_RDEV_ROLLBACK_ORDERED:
        ret->offer = OTASRV_OFFER_ROLLBACK;
        ret->why = OTASRV_WHY_ROLLBACK_ORDERED;
        ota_strlcpy(ret->release_id, r->def.previous_release_id, sizeof(ret->release_id));
        return;
    case OTASRV_RDEV_OFFERED:
    case OTASRV_RDEV_IN_PROGRESS:
        /* An agent that lost its offer (crash before it persisted it) asks
         * again: give it the same release; it already holds its slot. */
        if (r->state == OTASRV_ROLLOUT_RUNNING || r->state == OTASRV_ROLLOUT_PAUSED) {
            ret->offer = OTASRV_OFFER_RELEASE;
            ret->why = OTASRV_WHY_IN_FLIGHT;
            ota_strlcpy(ret->release_id, r->def.release_id, sizeof(ret->release_id));
        } else {
            ret->why = OTASRV_WHY_ENDED;
        }
        return;
    case OTASRV_RDEV_STANDBY:
    case OTASRV_RDEV_ACTIVATED:
        otasrv_bg_decide(r, d, ret);
        /* the switch, too, only inside the device's maintenance window */
        if (ret->offer == OTASRV_OFFER_ACTIVATE &&
            !otasrv_rollout_window_open(&r->def.window, info ? info->timezone : NULL, now_ms)) {
            ret->offer = OTASRV_OFFER_NONE;
            ret->why = OTASRV_WHY_OUTSIDE_WINDOW;
            ret->release_id[0] = '\0';
        }
        return;
    case OTASRV_RDEV_PENDING:
        break;
    default:
        ret->why = OTASRV_WHY_DONE;
        return;
    }
    switch (r->state) {
    case OTASRV_ROLLOUT_DRAFT:
    case OTASRV_ROLLOUT_APPROVED:
        ret->why = OTASRV_WHY_NOT_STARTED;
        return;
    case OTASRV_ROLLOUT_SCHEDULED:
        ret->why = OTASRV_WHY_SCHEDULED;
        return;
    case OTASRV_ROLLOUT_PAUSED:
        ret->why = OTASRV_WHY_PAUSED;
        return;
    case OTASRV_ROLLOUT_RUNNING:
        break;
    default:
        ret->why = OTASRV_WHY_ENDED;
        return;
    }
    if (now_ms < r->def.start_at_ms)
        ret->why = OTASRV_WHY_SCHEDULED;
    else if (d->stage < 0 || d->stage >= r->def.n_stages)
        ret->why = OTASRV_WHY_NOT_SELECTED;
    else if (d->stage > r->stage)
        ret->why = OTASRV_WHY_LATER_STAGE;
    else if (info && !otasrv_rollout_matches(&r->def, info, NULL))
        ret->why = OTASRV_WHY_FILTERED;
    else if (!otasrv_rollout_window_open(&r->def.window, info ? info->timezone : NULL, now_ms))
        ret->why = OTASRV_WHY_OUTSIDE_WINDOW;
    else if (r->def.max_concurrent &&
             r->total[OTASRV_RDEV_OFFERED] + r->total[OTASRV_RDEV_IN_PROGRESS] >=
                 r->def.max_concurrent)
        ret->why = OTASRV_WHY_MAX_CONCURRENT;
    else {
        ret->offer = OTASRV_OFFER_RELEASE;
        ret->why = OTASRV_WHY_NEW;
        ota_strlcpy(ret->release_id, r->def.release_id, sizeof(ret->release_id));
    }
}

void otasrv_rollout_decide(const struct otasrv_rollout *r, const struct otasrv_device_info *info,
                           const struct otasrv_rollout_device *d, int64_t now_ms,
                           struct otasrv_rollout_decision *ret_decision)
{
    decide_into(r, info, d, now_ms, ret_decision);
}

void otasrv_rollout_checkin(struct otasrv_rollout *r, const struct otasrv_device_info *info,
                            struct otasrv_rollout_device *d, int64_t now_ms,
                            struct otasrv_rollout_decision *ret_decision)
{
    decide_into(r, info, d, now_ms, ret_decision);
    if (!d)
        return;
    if (info)
        d->tz = otasrv_tz_intern(info->timezone); /* for the window's deadlines */
    if (ret_decision->why == OTASRV_WHY_NEW) {
        d->offered_ms = now_ms;
        d->last_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_OFFERED);
    } else if (ret_decision->why == OTASRV_WHY_FILTERED) {
        d->finished_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_SKIPPED);
    } else if (ret_decision->why == OTASRV_WHY_ACTIVATED && d->state == OTASRV_RDEV_STANDBY) {
        d->last_ms = now_ms; /* the report timeout runs from here (the heap's key: first) */
        set_state(r, d, OTASRV_RDEV_ACTIVATED);
    }
}

int otasrv_rollout_on_standby(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                              int64_t now_ms, struct ota_err *err)
{
    if (r->def.strategy != OTASRV_STRATEGY_BLUE_GREEN)
        return ota_err_set(err, EINVAL, "rollout %s is not blue_green: no standby", r->def.id);
    switch (d->state) {
    case OTASRV_RDEV_OFFERED:
    case OTASRV_RDEV_IN_PROGRESS:
    case OTASRV_RDEV_TIMED_OUT:
        break;
    case OTASRV_RDEV_PENDING:
    case OTASRV_RDEV_SKIPPED:
        return ota_err_set(err, EINVAL, "device %s was not offered release %s", d->device_id,
                           r->def.release_id);
    default:
        return 0; /* a repeat, or overtaken by the activation or a rollback order */
    }
    if (!d->started_ms)
        d->started_ms = now_ms;
    d->last_ms = now_ms;
    d->finished_ms = 0;
    set_state(r, d, OTASRV_RDEV_STANDBY);
    return 0;
}

static int report_release(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                          enum otasrv_report status, int64_t now_ms, struct ota_err *err)
{
    enum otasrv_rdev_state to;

    switch (d->state) {
    case OTASRV_RDEV_OFFERED:
    case OTASRV_RDEV_IN_PROGRESS:
    case OTASRV_RDEV_TIMED_OUT: /* a late report: the device lives */
    case OTASRV_RDEV_ACTIVATED:
        break;
    case OTASRV_RDEV_STANDBY:
        if (status == OTASRV_REPORT_IN_PROGRESS)
            return 0; /* stale: a device leaves standby only when activated */
        break;
    case OTASRV_RDEV_PENDING:
    case OTASRV_RDEV_SKIPPED:
        return ota_err_set(err, EINVAL, "device %s was not offered release %s", d->device_id,
                           r->def.release_id);
    case OTASRV_RDEV_ROLLED_BACK:
        /* Counted back by a check-in at the old version (api_rollouts.c), it now reports
         * having (or installing) the release after all: ordered back again. */
        if (r->state == OTASRV_ROLLOUT_ROLLED_BACK && status != OTASRV_REPORT_FAILURE)
            order_rollback(r, d, now_ms);
        return 0;
    default:
        return 0; /* a duplicate or stale report, or one overtaken by a rollback order */
    }
    to = status == OTASRV_REPORT_SUCCESS   ? OTASRV_RDEV_SUCCESS
         : status == OTASRV_REPORT_FAILURE ? OTASRV_RDEV_FAILURE
                                           : OTASRV_RDEV_IN_PROGRESS;
    if (r->state == OTASRV_ROLLOUT_ROLLED_BACK && to != OTASRV_RDEV_FAILURE) {
        /* It has the release (or is installing it): it goes back too. */
        order_rollback(r, d, now_ms);
        return 0;
    }
    d->last_ms = now_ms;
    if (to == OTASRV_RDEV_IN_PROGRESS) {
        if (!d->started_ms)
            d->started_ms = now_ms;
        d->finished_ms = 0;
    } else {
        d->finished_ms = now_ms;
    }
    if (d->state != to)
        set_state(r, d, to);
    ridx_note(r, d);
    return 0;
}

static int report_rollback(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                           enum otasrv_report status, int64_t now_ms, struct ota_err *err)
{
    switch (d->state) {
    case OTASRV_RDEV_ROLLBACK_ORDERED:
        break;
    case OTASRV_RDEV_ROLLED_BACK:
    case OTASRV_RDEV_ROLLBACK_FAILED:
        return 0;
    default:
        return ota_err_set(err, EINVAL, "no rollback was ordered for device %s", d->device_id);
    }
    d->last_ms = now_ms;
    if (status == OTASRV_REPORT_SUCCESS) {
        d->finished_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_ROLLED_BACK);
    } else if (status == OTASRV_REPORT_FAILURE) {
        d->finished_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_ROLLBACK_FAILED);
    }
    ridx_note(r, d);
    return 0;
}

int otasrv_rollout_on_report(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                             int rollback, enum otasrv_report status, int64_t now_ms,
                             struct ota_err *err)
{
    if ((unsigned)status >= OTASRV_REPORT_MAX)
        return ota_err_set(err, EINVAL, "unknown report status %d", (int)status);
    if (rollback)
        return report_rollback(r, d, status, now_ms, err);
    return report_release(r, d, status, now_ms, err);
}

/* ---- time ---- */

static uint32_t time_out(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                         int64_t now_ms)
{
    int64_t limit = r->def.report_timeout_ms;
    uint32_t timed_out = 0;
    struct otasrv_rollout_device *due;

    if (limit <= 0)
        return 0;
    if (ridx_bound(r, devs, n)) {
        /* Only the rows whose timeout is due, oldest first. */
        while (ridx_due(r, now_ms, &due)) {
            due->finished_ms = now_ms;
            set_state(r, due, OTASRV_RDEV_TIMED_OUT);
            timed_out++;
        }
        return timed_out;
    }
    for (size_t i = 0; i < n; i++) {
        struct otasrv_rollout_device *d = &devs[i];
        if (in_flight(d->state) && now_ms - d->last_ms >= limit) {
            d->finished_ms = now_ms;
            set_state(r, d, OTASRV_RDEV_TIMED_OUT);
            timed_out++;
        }
    }
    return timed_out;
}

/* Trips of the open stages; 1 if the rollout changed state. */
static int check_trips(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                       int64_t now_ms, struct otasrv_rollout_tick_result *res)
{
    char why[OTASRV_ROLLOUT_REASON_MAX - 32];
    char reason[OTASRV_ROLLOUT_REASON_MAX];

    for (int k = 0; k <= r->stage && k < r->def.n_stages; k++) {
        if (!stage_tripped(r, k, why, sizeof(why)))
            continue;
        if (r->def.auto_rollback && r->def.previous_release_id[0]) {
            snprintf(reason, sizeof(reason), "%s: rolled back", why);
            res->rollback_ordered += roll_back(r, devs, n, now_ms, reason);
        } else if (r->state != OTASRV_ROLLOUT_RUNNING) {
            return 0; /* paused already; the trip will be seen on resume */
        } else if (r->def.auto_pause) {
            snprintf(reason, sizeof(reason), "%s: paused", why);
            change(r, OTASRV_ROLLOUT_PAUSED, now_ms, reason);
        } else {
            snprintf(reason, sizeof(reason), "%s: failed", why);
            change(r, OTASRV_ROLLOUT_FAILED, now_ms, reason);
        }
        return 1;
    }
    return 0;
}

static void advance(struct otasrv_rollout *r, int64_t now_ms)
{
    uint32_t open = 0;
    char reason[OTASRV_ROLLOUT_REASON_MAX];

    while (r->stage < r->def.n_stages - 1 && otasrv_rollout_stage_passed(r, r->stage) &&
           now_ms >= r->stage_opened_ms + r->def.stages[r->stage].delay_ms) {
        r->stage++;
        r->changed_ms = now_ms;
        r->stage_opened_ms = now_ms;
        snprintf(reason, sizeof(reason), "stage %d passed: stage %d opened", r->stage - 1,
                 r->stage);
        ota_strlcpy(r->reason, reason, sizeof(r->reason));
    }
    for (int k = 0; k < r->def.n_stages; k++)
        open += stage_open(r, k) + r->count[k][OTASRV_RDEV_STANDBY]; /* waiting: not done */
    if (r->stage == r->def.n_stages - 1 && open == 0) {
        uint32_t ok = 0, failed = 0, skipped = 0;
        for (int k = 0; k < r->def.n_stages; k++) {
            ok += r->count[k][OTASRV_RDEV_SUCCESS];
            failed += stage_failed(r, k);
            skipped += r->count[k][OTASRV_RDEV_SKIPPED];
        }
        snprintf(reason, sizeof(reason),
                 "all devices finished: %" PRIu32 " succeeded, %" PRIu32 " failed, %" PRIu32
                 " skipped",
                 ok, failed, skipped);
        change(r, OTASRV_ROLLOUT_COMPLETED, now_ms, reason);
    }
}

void otasrv_rollout_tick(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                         int64_t now_ms, struct otasrv_rollout_tick_result *ret_result)
{
    struct otasrv_rollout_tick_result res;

    memset(&res, 0, sizeof(res));
    res.from_state = r->state;
    res.from_stage = r->stage;
    if (!ridx_bound(r, devs, n)) {
        /* A table the engine has not indexed (or changed behind it). */
        otasrv_rollout_recount(r, devs, n);
        ridx_bind(r, devs, n);
    }
    if (r->state == OTASRV_ROLLOUT_SCHEDULED && now_ms >= r->def.start_at_ms) {
        r->started_ms = now_ms;
        r->stage_opened_ms = now_ms;
        change(r, OTASRV_ROLLOUT_RUNNING, now_ms, "start time reached");
    }
    res.activated = otasrv_bg_tick(r, now_ms);
    if (r->state == OTASRV_ROLLOUT_RUNNING || r->state == OTASRV_ROLLOUT_PAUSED)
        res.timed_out = time_out(r, devs, n, now_ms);
    if (r->state == OTASRV_ROLLOUT_RUNNING ||
        (r->state == OTASRV_ROLLOUT_PAUSED && r->def.auto_rollback))
        check_trips(r, devs, n, now_ms, &res);
    if (r->state == OTASRV_ROLLOUT_RUNNING)
        advance(r, now_ms);
    res.to_state = r->state;
    res.to_stage = r->stage;
    res.changed = res.from_state != res.to_state || res.from_stage != res.to_stage || res.activated;
    if (ret_result)
        *ret_result = res;
}

int64_t otasrv_rollout_next_deadline(const struct otasrv_rollout *r,
                                     const struct otasrv_rollout_device *devs, size_t n,
                                     int64_t now_ms)
{
    int64_t min = INT64_MAX, limit = r->def.report_timeout_ms, t;

    if (r->state == OTASRV_ROLLOUT_SCHEDULED)
        return r->def.start_at_ms;
    if (r->state != OTASRV_ROLLOUT_RUNNING && r->state != OTASRV_ROLLOUT_PAUSED)
        return INT64_MAX;
    if ((t = otasrv_rollout_delay_next(r, now_ms)) >= 0)
        min = t;
    if (r->def.strategy == OTASRV_STRATEGY_BLUE_GREEN && !r->activated_ms &&
        r->def.activate_at_ms > now_ms && r->def.activate_at_ms < min)
        min = r->def.activate_at_ms;
    if (devs && (t = otasrv_rollout_window_next(r, devs, n, now_ms)) >= 0 && t < min)
        min = t;
    if (limit <= 0 || !devs)
        return min;
    if (ridx_bound(r, devs, n)) {
        t = ridx_earliest(r);
        return t != INT64_MAX && t + limit < min ? t + limit : min;
    }
    for (size_t i = 0; i < n; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        if (in_flight(d->state) && d->last_ms + limit < min)
            min = d->last_ms + limit;
    }
    return min;
}
