/* The rollout engine's status and metrics as JSON (contract in
 * otasrv/rollout.h; the engine is rollout.c). */
#include "otasrv/rollout.h"
#include "rollout_impl.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- status JSON ---- */

static const char *const status_keys[] = {
    "state",      "stage",  "created_ms", "approved_ms",     "started_ms",   "finished_ms",
    "changed_ms", "reason", "fail_ack",   "stage_opened_ms", "activated_ms",
};

/* A stage with a delay: the open stage's opening time matters (written only
 * then, so the status of a rollout without delays reads as it always did). */
static int has_delay(const struct otasrv_rollout_def *def)
{
    for (int k = 0; k < def->n_stages; k++)
        if (def->stages[k].delay_ms > 0)
            return 1;
    return 0;
}

int otasrv_rollout_status_to_json(const struct otasrv_rollout *r, json_t **ret)
{
    json_t *obj = json_object();
    json_t *ack = json_array();
    int bad = !obj || !ack;

    if (bad)
        goto fail;
    put(obj, "state", json_string(otasrv_rollout_state_names[r->state]), &bad);
    put(obj, "stage", json_integer(r->stage), &bad);
    put(obj, "created_ms", json_integer(r->created_ms), &bad);
    put(obj, "approved_ms", json_integer(r->approved_ms), &bad);
    put(obj, "started_ms", json_integer(r->started_ms), &bad);
    put(obj, "finished_ms", json_integer(r->finished_ms), &bad);
    put(obj, "changed_ms", json_integer(r->changed_ms), &bad);
    if (has_delay(&r->def))
        put(obj, "stage_opened_ms", json_integer(r->stage_opened_ms), &bad);
    put(obj, "reason", json_string(r->reason), &bad);
    if (r->def.strategy == OTASRV_STRATEGY_BLUE_GREEN)
        put(obj, "activated_ms", json_integer(r->activated_ms), &bad);
    for (int k = 0; k < r->def.n_stages; k++)
        append(ack, json_integer(r->fail_ack[k]), &bad);
    put(obj, "fail_ack", ack, &bad);
    ack = NULL;
    if (bad)
        goto fail;
    *ret = obj;
    return 0;
fail:
    json_decref(obj);
    json_decref(ack);
    return -ENOMEM;
}

int otasrv_rollout_status_from_json(const json_t *obj, struct otasrv_rollout *r,
                                    struct ota_err *err)
{
    struct ota_err tmp = {0};
    char state[32], reason[OTASRV_ROLLOUT_REASON_MAX] = "";
    int64_t stage = 0, t[6] = {0}, activated = 0;
    static const char *const times[6] = {"created_ms",  "approved_ms", "started_ms",
                                         "finished_ms", "changed_ms",  "stage_opened_ms"};
    uint32_t ack[OTASRV_ROLLOUT_MAX_STAGES] = {0};
    const json_t *arr;
    size_t i;
    json_t *v;
    int k, rc;

    if (!json_is_object(obj))
        return ota_err_set(err, EINVAL, "status: not a JSON object");
    rc = check_keys(obj, status_keys, N_KEYS(status_keys), "status", err);
    if (rc >= 0)
        rc = placed(ota_json_str(obj, "state", state, sizeof(state), &tmp), "status", &tmp, err);
    if (rc >= 0)
        rc = opt_int(obj, "status", "stage", 0, r->def.n_stages - 1, &stage, err);
    for (int j = 0; j < 6 && rc >= 0; j++)
        rc = opt_int(obj, "status", times[j], 0, INT64_MAX, &t[j], err);
    if (rc >= 0)
        rc = opt_str(obj, "status", "reason", reason, sizeof(reason), err);
    if (rc >= 0)
        rc = opt_int(obj, "status", "activated_ms", 0, INT64_MAX, &activated, err);
    if (rc < 0)
        return rc;
    k = otasrv_rollout_name_index(otasrv_rollout_state_names, OTASRV_ROLLOUT_STATE_MAX, state);
    if (k < 0)
        return ota_err_set(err, EINVAL, "status.state: unknown state '%s'", state);
    arr = json_object_get(obj, "fail_ack");
    if (arr) {
        if (!json_is_array(arr) || json_array_size(arr) > (size_t)r->def.n_stages)
            return ota_err_set(err, EINVAL, "status.fail_ack: want an array of up to %d counts",
                               r->def.n_stages);
        json_array_foreach(arr, i, v)
        {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > UINT32_MAX)
                return ota_err_set(err, EINVAL, "status.fail_ack[%zu]: not a count", i);
            ack[i] = (uint32_t)json_integer_value(v);
        }
    }
    r->state = (enum otasrv_rollout_state)k;
    r->stage = (int)stage;
    r->created_ms = t[0];
    r->approved_ms = t[1];
    r->started_ms = t[2];
    r->finished_ms = t[3];
    r->changed_ms = t[4];
    r->stage_opened_ms = t[5];
    r->activated_ms = activated;
    memcpy(r->fail_ack, ack, sizeof(ack));
    ota_strlcpy(r->reason, reason, sizeof(r->reason));
    return 0;
}

/* ---- metrics ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p% of the values at or
 * below it. */
static int64_t percentile(const int64_t *sorted, uint32_t n, uint32_t p)
{
    uint64_t rank = ((uint64_t)n * p + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

int otasrv_rollout_measure(const struct otasrv_rollout *r, const struct otasrv_rollout_device *devs,
                           size_t n, struct otasrv_rollout_metrics *ret)
{
    struct otasrv_rollout_metrics m;
    int64_t *dur = NULL;
    uint32_t done = 0;
    double sum = 0;

    memset(&m, 0, sizeof(m));
    m.n_stages = r->def.n_stages;
    dur = malloc((n ? n : 1) * sizeof(*dur));
    if (!dur)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        enum otasrv_rdev_state s = d->state;
        if ((unsigned)s >= OTASRV_RDEV_MAX)
            continue;
        m.devices++;
        m.by_state[s]++;
        if (s == OTASRV_RDEV_SUCCESS && d->offered_ms && d->finished_ms >= d->offered_ms)
            dur[m.n_durations++] = d->finished_ms - d->offered_ms;
        if (!has_stage(r, d))
            continue;
        struct otasrv_rollout_stage_metrics *st = &m.stages[d->stage];
        m.selected++;
        if (!open_state(s))
            done++;
        if (s != OTASRV_RDEV_SKIPPED)
            st->devices++;
        if (s == OTASRV_RDEV_PENDING)
            st->pending++;
        else if (in_flight(s))
            st->in_flight++;
        else if (s == OTASRV_RDEV_SUCCESS)
            st->success++;
        else if (s == OTASRV_RDEV_FAILURE || s == OTASRV_RDEV_TIMED_OUT)
            st->failed++;
        else if (s == OTASRV_RDEV_SKIPPED)
            st->skipped++;
    }
    m.in_flight = m.by_state[OTASRV_RDEV_OFFERED] + m.by_state[OTASRV_RDEV_IN_PROGRESS] +
                  m.by_state[OTASRV_RDEV_ACTIVATED];
    m.standby = m.by_state[OTASRV_RDEV_STANDBY];
    m.succeeded = m.by_state[OTASRV_RDEV_SUCCESS];
    m.failed = m.by_state[OTASRV_RDEV_FAILURE] + m.by_state[OTASRV_RDEV_TIMED_OUT];
    if (m.succeeded + m.failed) {
        m.success_rate = (double)m.succeeded / (m.succeeded + m.failed);
        m.failure_rate = (double)m.failed / (m.succeeded + m.failed);
    }
    m.progress = m.selected ? (double)done / m.selected : 1.0;
    if (m.n_durations) {
        qsort(dur, m.n_durations, sizeof(*dur), cmp_i64);
        for (uint32_t i = 0; i < m.n_durations; i++)
            sum += (double)dur[i];
        m.mean_ms = sum / m.n_durations;
        m.p50_ms = percentile(dur, m.n_durations, 50);
        m.p95_ms = percentile(dur, m.n_durations, 95);
    }
    free(dur);
    *ret = m;
    return 0;
}

int otasrv_rollout_metrics_to_json(const struct otasrv_rollout_metrics *m, json_t **ret)
{
    json_t *obj = json_object();
    json_t *by = json_object();
    json_t *dur = json_object();
    json_t *stages = json_array();
    int bad = !obj || !by || !dur || !stages;

    if (bad)
        goto fail;
    put(obj, "devices", json_integer(m->devices), &bad);
    put(obj, "selected", json_integer(m->selected), &bad);
    for (int s = 0; s < OTASRV_RDEV_MAX; s++)
        put(by, otasrv_rdev_state_names[s], json_integer(m->by_state[s]), &bad);
    put(obj, "by_state", by, &bad);
    by = NULL;
    put(obj, "in_flight", json_integer(m->in_flight), &bad);
    put(obj, "standby", json_integer(m->standby), &bad);
    put(obj, "succeeded", json_integer(m->succeeded), &bad);
    put(obj, "failed", json_integer(m->failed), &bad);
    put(obj, "success_rate", json_real(m->success_rate), &bad);
    put(obj, "failure_rate", json_real(m->failure_rate), &bad);
    put(obj, "progress", json_real(m->progress), &bad);
    put(dur, "n", json_integer(m->n_durations), &bad);
    put(dur, "mean", json_real(m->mean_ms), &bad);
    put(dur, "p50", json_integer(m->p50_ms), &bad);
    put(dur, "p95", json_integer(m->p95_ms), &bad);
    put(obj, "duration_ms", dur, &bad);
    dur = NULL;
    for (int k = 0; k < m->n_stages; k++) {
        const struct otasrv_rollout_stage_metrics *st = &m->stages[k];
        json_t *s = json_object();
        if (!s) {
            bad = 1;
            break;
        }
        put(s, "devices", json_integer(st->devices), &bad);
        put(s, "pending", json_integer(st->pending), &bad);
        put(s, "in_flight", json_integer(st->in_flight), &bad);
        put(s, "success", json_integer(st->success), &bad);
        put(s, "failed", json_integer(st->failed), &bad);
        put(s, "skipped", json_integer(st->skipped), &bad);
        append(stages, s, &bad);
    }
    put(obj, "stages", stages, &bad);
    stages = NULL;
    if (bad)
        goto fail;
    *ret = obj;
    return 0;
fail:
    json_decref(obj);
    json_decref(by);
    json_decref(dur);
    json_decref(stages);
    return -ENOMEM;
}
