/* Rollout engine (contract and JSON schema in otasrv/rollout.h).
 *
 * Why it looks like this:
 * - The per-device table is the caller's (the server keeps it in SQLite), so
 *   the engine keeps only counts per stage and per device state, updated on
 *   every change it makes and recomputed from the table on every tick. That
 *   makes decide O(1) and lets a restarted server rebuild everything from
 *   the rows it persisted.
 * - Selection hashes (rollout id, device id): the same device lands in
 *   different canaries for different rollouts, and nothing depends on the
 *   order rows come back from the database.
 * - One validator serves code-built and JSON definitions, so to_json never
 *   writes what from_json would refuse.
 * - Threshold sums are bounded (success + failure <= 100) so a stage that
 *   has not tripped can always pass once its devices finish. */
#include "otasrv/rollout.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const otasrv_strategy_names[OTASRV_STRATEGY_MAX] = {
    [OTASRV_STRATEGY_IMMEDIATE] = "immediate", [OTASRV_STRATEGY_MANUAL] = "manual",
    [OTASRV_STRATEGY_CANARY] = "canary",       [OTASRV_STRATEGY_STAGED] = "staged",
    [OTASRV_STRATEGY_ROLLING] = "rolling",     [OTASRV_STRATEGY_SCHEDULED] = "scheduled",
};

const char *const otasrv_vop_names[OTASRV_VOP_MAX] = {
    [OTASRV_VOP_LT] = "<",  [OTASRV_VOP_LE] = "<=", [OTASRV_VOP_EQ] = "==",
    [OTASRV_VOP_NE] = "!=", [OTASRV_VOP_GE] = ">=", [OTASRV_VOP_GT] = ">",
};

const char *const otasrv_rollout_state_names[OTASRV_ROLLOUT_STATE_MAX] = {
    [OTASRV_ROLLOUT_DRAFT] = "draft",
    [OTASRV_ROLLOUT_APPROVED] = "approved",
    [OTASRV_ROLLOUT_SCHEDULED] = "scheduled",
    [OTASRV_ROLLOUT_RUNNING] = "running",
    [OTASRV_ROLLOUT_PAUSED] = "paused",
    [OTASRV_ROLLOUT_COMPLETED] = "completed",
    [OTASRV_ROLLOUT_FAILED] = "failed",
    [OTASRV_ROLLOUT_CANCELLED] = "cancelled",
    [OTASRV_ROLLOUT_ROLLED_BACK] = "rolled_back",
};

const char *const otasrv_rdev_state_names[OTASRV_RDEV_MAX] = {
    [OTASRV_RDEV_PENDING] = "pending",         [OTASRV_RDEV_OFFERED] = "offered",
    [OTASRV_RDEV_IN_PROGRESS] = "in_progress", [OTASRV_RDEV_SUCCESS] = "success",
    [OTASRV_RDEV_FAILURE] = "failure",         [OTASRV_RDEV_TIMED_OUT] = "timed_out",
    [OTASRV_RDEV_SKIPPED] = "skipped",         [OTASRV_RDEV_ROLLBACK_ORDERED] = "rollback_ordered",
    [OTASRV_RDEV_ROLLED_BACK] = "rolled_back", [OTASRV_RDEV_ROLLBACK_FAILED] = "rollback_failed",
};

const char *const otasrv_op_names[OTASRV_OP_MAX] = {
    [OTASRV_OP_APPROVE] = "approve", [OTASRV_OP_START] = "start",
    [OTASRV_OP_PAUSE] = "pause",     [OTASRV_OP_RESUME] = "resume",
    [OTASRV_OP_CANCEL] = "cancel",   [OTASRV_OP_ROLLBACK] = "rollback",
};

const char *const otasrv_offer_names[OTASRV_OFFER_MAX] = {
    [OTASRV_OFFER_NONE] = "none",
    [OTASRV_OFFER_RELEASE] = "release",
    [OTASRV_OFFER_ROLLBACK] = "rollback",
};

const char *const otasrv_why_names[OTASRV_WHY_MAX] = {
    [OTASRV_WHY_NEW] = "new",
    [OTASRV_WHY_IN_FLIGHT] = "in_flight",
    [OTASRV_WHY_ROLLBACK_ORDERED] = "rollback_ordered",
    [OTASRV_WHY_NOT_TARGETED] = "not_targeted",
    [OTASRV_WHY_FILTERED] = "filtered",
    [OTASRV_WHY_NOT_SELECTED] = "not_selected",
    [OTASRV_WHY_LATER_STAGE] = "later_stage",
    [OTASRV_WHY_NOT_STARTED] = "not_started",
    [OTASRV_WHY_SCHEDULED] = "scheduled",
    [OTASRV_WHY_PAUSED] = "paused",
    [OTASRV_WHY_ENDED] = "ended",
    [OTASRV_WHY_MAX_CONCURRENT] = "max_concurrent",
    [OTASRV_WHY_DONE] = "done",
};

const char *const otasrv_report_names[OTASRV_REPORT_MAX] = {
    [OTASRV_REPORT_IN_PROGRESS] = "in_progress",
    [OTASRV_REPORT_SUCCESS] = "success",
    [OTASRV_REPORT_FAILURE] = "failure",
};

int otasrv_rollout_name_index(const char *const *names, int n, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* ---- device states ---- */

static int in_flight(enum otasrv_rdev_state s)
{
    return s == OTASRV_RDEV_OFFERED || s == OTASRV_RDEV_IN_PROGRESS;
}

static int open_state(enum otasrv_rdev_state s)
{
    return s == OTASRV_RDEV_PENDING || in_flight(s);
}

static int has_stage(const struct otasrv_rollout *r, const struct otasrv_rollout_device *d)
{
    return d->stage >= 0 && d->stage < r->def.n_stages;
}

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
    d->dirty = 1;
}

static int terminal(enum otasrv_rollout_state s)
{
    return s == OTASRV_ROLLOUT_COMPLETED || s == OTASRV_ROLLOUT_FAILED ||
           s == OTASRV_ROLLOUT_CANCELLED || s == OTASRV_ROLLOUT_ROLLED_BACK;
}

/* ---- validation ---- */

/* Rollout and release ids end up in URLs and update ids (the server's
 * release ids use the same alphabet). */
static int plain_id(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

/* Device ids, types, groups and tags: printable ASCII, no spaces. */
static int printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static int terminated(const char *buf, size_t cap)
{
    return memchr(buf, '\0', cap) != NULL;
}

static int validate_stage(const struct otasrv_rollout_stage *st, int i, uint32_t *last_percent,
                          struct ota_err *err)
{
    if ((st->percent == 0) == (st->batch_size == 0))
        return ota_err_set(err, EINVAL, "stages[%d]: needs exactly one of percent and batch_size",
                           i);
    if (st->percent) {
        if (st->percent > 100)
            return ota_err_set(err, EINVAL, "stages[%d].percent: %" PRIu32 " is not within 1..100",
                               i, st->percent);
        if (st->percent <= *last_percent)
            return ota_err_set(err, EINVAL,
                               "stages[%d].percent: %" PRIu32
                               " is not above the previous stage's %" PRIu32,
                               i, st->percent, *last_percent);
        *last_percent = st->percent;
    }
    if (st->success_threshold > 100)
        return ota_err_set(err, EINVAL,
                           "stages[%d].success_threshold: %" PRIu32 " is not within 0..100", i,
                           st->success_threshold);
    if (st->failure_threshold > 100)
        return ota_err_set(err, EINVAL,
                           "stages[%d].failure_threshold: %" PRIu32 " is not within 0..100", i,
                           st->failure_threshold);
    if (st->success_threshold + st->failure_threshold > 100)
        return ota_err_set(err, EINVAL,
                           "stages[%d]: success_threshold %" PRIu32 " + failure_threshold %" PRIu32
                           " exceeds 100 (the stage could neither pass nor fail)",
                           i, st->success_threshold, st->failure_threshold);
    if (st->max_failures < -1)
        return ota_err_set(err, EINVAL, "stages[%d].max_failures: %" PRId64 " is negative", i,
                           st->max_failures);
    return 0;
}

static int validate_stages(const struct otasrv_rollout_def *def, struct ota_err *err)
{
    const char *strategy = otasrv_strategy_names[def->strategy];
    uint32_t last_percent = 0;
    int r;

    if (def->n_stages < 1 || def->n_stages > OTASRV_ROLLOUT_MAX_STAGES)
        return ota_err_set(err, EINVAL, "stages: %d stages, want 1..%d", def->n_stages,
                           OTASRV_ROLLOUT_MAX_STAGES);
    for (int i = 0; i < def->n_stages; i++) {
        r = validate_stage(&def->stages[i], i, &last_percent, err);
        if (r < 0)
            return r;
    }
    switch (def->strategy) {
    case OTASRV_STRATEGY_IMMEDIATE:
    case OTASRV_STRATEGY_SCHEDULED:
    case OTASRV_STRATEGY_MANUAL:
        if (def->n_stages != 1 || def->stages[0].percent != 100)
            return ota_err_set(err, EINVAL, "stages: %s rollouts have one stage, at percent 100",
                               strategy);
        break;
    case OTASRV_STRATEGY_CANARY:
        if (def->n_stages != 2 || def->stages[1].percent != 100)
            return ota_err_set(err, EINVAL,
                               "stages: a canary rollout has two stages: the canary (a percent "
                               "below 100 or a batch_size), then percent 100");
        break;
    default:
        break;
    }
    return 0;
}

static int validate_filter(const struct otasrv_rollout_filter *f, struct ota_err *err)
{
    if (!terminated(f->device_type, sizeof(f->device_type)) || !printable(f->device_type))
        return ota_err_set(err, EINVAL, "filters.device_type: not printable text without spaces");
    if (!terminated(f->group, sizeof(f->group)) || !printable(f->group))
        return ota_err_set(err, EINVAL, "filters.group: not printable text without spaces");
    if (f->n_tags < 0 || f->n_tags > OTASRV_ROLLOUT_MAX_TAGS)
        return ota_err_set(err, EINVAL, "filters.tags: %d tags, at most %d", f->n_tags,
                           OTASRV_ROLLOUT_MAX_TAGS);
    for (int i = 0; i < f->n_tags; i++)
        if (!terminated(f->tags[i], sizeof(f->tags[i])) || !f->tags[i][0] || !printable(f->tags[i]))
            return ota_err_set(err, EINVAL,
                               "filters.tags[%d]: not a non-empty printable tag without spaces", i);
    if (!terminated(f->version, sizeof(f->version)))
        return ota_err_set(err, EINVAL, "filters.current_version: too long");
    if (f->version[0] && !ota_version_valid(f->version))
        return ota_err_set(err, EINVAL, "filters.current_version: '%s' is not a version",
                           f->version);
    if ((unsigned)f->version_op >= OTASRV_VOP_MAX)
        return ota_err_set(err, EINVAL, "filters.version_operator: unknown operator");
    return 0;
}

int otasrv_rollout_def_validate(const struct otasrv_rollout_def *def, struct ota_err *err)
{
    int r;

    if (!terminated(def->id, sizeof(def->id)) || (def->id[0] && !plain_id(def->id)))
        return ota_err_set(err, EINVAL, "id: want 1..63 of [A-Za-z0-9._+-]");
    if (!terminated(def->name, sizeof(def->name)))
        return ota_err_set(err, EINVAL, "name: too long");
    if (!terminated(def->release_id, sizeof(def->release_id)) || !plain_id(def->release_id))
        return ota_err_set(err, EINVAL, "release_id: want 1..127 of [A-Za-z0-9._+-]");
    if (!terminated(def->previous_release_id, sizeof(def->previous_release_id)) ||
        (def->previous_release_id[0] && !plain_id(def->previous_release_id)))
        return ota_err_set(err, EINVAL, "previous_release_id: want 1..127 of [A-Za-z0-9._+-]");
    if (strcmp(def->previous_release_id, def->release_id) == 0)
        return ota_err_set(err, EINVAL, "previous_release_id: same as release_id");
    if ((unsigned)def->strategy >= OTASRV_STRATEGY_MAX)
        return ota_err_set(err, EINVAL, "strategy: unknown strategy");
    r = validate_stages(def, err);
    if (r < 0)
        return r;
    r = validate_filter(&def->filter, err);
    if (r < 0)
        return r;
    if (def->strategy == OTASRV_STRATEGY_MANUAL) {
        if (def->n_devices < 1 || def->n_devices > OTASRV_ROLLOUT_MAX_DEVICES || !def->devices)
            return ota_err_set(err, EINVAL, "devices: a manual rollout lists 1..%d devices",
                               OTASRV_ROLLOUT_MAX_DEVICES);
        for (size_t i = 0; i < def->n_devices; i++) {
            const char *d = def->devices[i];
            if (!d || !d[0] || strlen(d) >= OTASRV_ROLLOUT_ID_MAX || !printable(d))
                return ota_err_set(err, EINVAL,
                                   "devices[%zu]: want 1..63 printable bytes without spaces", i);
        }
    } else if (def->n_devices) {
        return ota_err_set(err, EINVAL, "devices: only a manual rollout lists devices");
    }
    if (def->report_timeout_ms < 0)
        return ota_err_set(err, EINVAL, "report_timeout_ms: negative");
    if (def->start_at_ms < 0)
        return ota_err_set(err, EINVAL, "start_at_ms: negative");
    if (def->strategy == OTASRV_STRATEGY_SCHEDULED && def->start_at_ms == 0)
        return ota_err_set(err, EINVAL, "start_at_ms: a scheduled rollout needs a start time");
    if (def->auto_rollback && !def->previous_release_id[0])
        return ota_err_set(err, EINVAL, "auto_rollback: needs previous_release_id");
    return 0;
}

void otasrv_rollout_def_clear(struct otasrv_rollout_def *def)
{
    if (!def)
        return;
    for (size_t i = 0; def->devices && i < def->n_devices; i++)
        free(def->devices[i]);
    free(def->devices);
    memset(def, 0, sizeof(*def));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the manual list (bsearch in matches) and refuses duplicates. */
static int sort_devices(struct otasrv_rollout_def *def, struct ota_err *err)
{
    if (def->n_devices < 2)
        return 0;
    qsort(def->devices, def->n_devices, sizeof(def->devices[0]), cmp_str);
    for (size_t i = 1; i < def->n_devices; i++)
        if (strcmp(def->devices[i - 1], def->devices[i]) == 0)
            return ota_err_set(err, EINVAL, "devices: '%s' is listed twice", def->devices[i]);
    return 0;
}

/* ---- definition JSON ---- */

static const char *const def_keys[] = {
    "id",          "name",       "release_id",    "previous_release_id", "strategy",
    "stages",      "devices",    "filters",       "max_concurrent",      "report_timeout_ms",
    "start_at_ms", "auto_pause", "auto_rollback",
};
static const char *const stage_keys[] = {
    "percent", "batch_size", "success_threshold", "failure_threshold", "max_failures",
};
static const char *const filter_keys[] = {
    "device_type", "group", "tags", "current_version", "version_operator",
};

#define N_KEYS(a) (sizeof(a) / sizeof((a)[0]))

static int check_keys(const json_t *obj, const char *const *keys, size_t n, const char *where,
                      struct ota_err *err)
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
static int placed(int r, const char *where, const struct ota_err *tmp, struct ota_err *err)
{
    if (r >= 0)
        return r;
    if (*where)
        return ota_err_set(err, -r, "%s: %s", where, tmp->reason);
    return ota_err_set(err, -r, "%s", tmp->reason);
}

/* Optional string: absent leaves buf as it is. */
static int opt_str(const json_t *obj, const char *where, const char *key, char *buf, size_t cap,
                   struct ota_err *err)
{
    struct ota_err tmp = {0};

    if (!json_object_get(obj, key))
        return 0;
    return placed(ota_json_str(obj, key, buf, cap, &tmp), where, &tmp, err);
}

/* Optional integer within lo..hi: absent leaves *ret as it is. */
static int opt_int(const json_t *obj, const char *where, const char *key, int64_t lo, int64_t hi,
                   int64_t *ret, struct ota_err *err)
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

static int opt_bool(const json_t *obj, const char *key, int *ret, struct ota_err *err)
{
    struct ota_err tmp = {0};

    if (!json_object_get(obj, key))
        return 0;
    return placed(ota_json_bool(obj, key, ret, &tmp), "", &tmp, err);
}

static int parse_stage(const json_t *v, int i, struct otasrv_rollout_stage *st, struct ota_err *err)
{
    char where[32];
    int64_t percent = 0, batch = 0, success = -1, failure = -1, maxf = -1;
    int r;

    snprintf(where, sizeof(where), "stages[%d]", i);
    if (!json_is_object(v))
        return ota_err_set(err, EINVAL, "%s: not an object", where);
    r = check_keys(v, stage_keys, N_KEYS(stage_keys), where, err);
    if (r >= 0)
        r = opt_int(v, where, "percent", 1, 100, &percent, err);
    if (r >= 0)
        r = opt_int(v, where, "batch_size", 1, OTASRV_ROLLOUT_MAX_DEVICES * 100LL, &batch, err);
    if (r >= 0)
        r = opt_int(v, where, "success_threshold", 0, 100, &success, err);
    if (r >= 0)
        r = opt_int(v, where, "failure_threshold", 0, 100, &failure, err);
    if (r >= 0)
        r = opt_int(v, where, "max_failures", 0, INT64_MAX, &maxf, err);
    if (r < 0)
        return r;
    /* Strict by default: any failure trips, and a stage passes when all its
     * devices that may still fail have succeeded. */
    if (failure < 0)
        failure = 0;
    if (success < 0)
        success = 100 - failure;
    st->percent = (uint32_t)percent;
    st->batch_size = (uint32_t)batch;
    st->success_threshold = (uint32_t)success;
    st->failure_threshold = (uint32_t)failure;
    st->max_failures = maxf;
    return 0;
}

static int parse_stages(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err)
{
    const json_t *arr = json_object_get(obj, "stages");
    size_t i;
    json_t *v;

    if (!arr) {
        if (def->strategy == OTASRV_STRATEGY_CANARY || def->strategy == OTASRV_STRATEGY_STAGED ||
            def->strategy == OTASRV_STRATEGY_ROLLING)
            return ota_err_set(err, EINVAL, "stages: a %s rollout needs stages",
                               otasrv_strategy_names[def->strategy]);
        def->n_stages = 1;
        def->stages[0] = (struct otasrv_rollout_stage){
            .percent = 100, .success_threshold = 100, .max_failures = -1};
        return 0;
    }
    if (!json_is_array(arr))
        return ota_err_set(err, EINVAL, "stages: not an array");
    if (json_array_size(arr) < 1 || json_array_size(arr) > OTASRV_ROLLOUT_MAX_STAGES)
        return ota_err_set(err, EINVAL, "stages: %zu stages, want 1..%d", json_array_size(arr),
                           OTASRV_ROLLOUT_MAX_STAGES);
    json_array_foreach(arr, i, v)
    {
        int r = parse_stage(v, (int)i, &def->stages[i], err);
        if (r < 0)
            return r;
    }
    def->n_stages = (int)json_array_size(arr);
    return 0;
}

static int parse_devices(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err)
{
    const json_t *arr = json_object_get(obj, "devices");
    size_t i;
    json_t *v;

    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return ota_err_set(err, EINVAL, "devices: not an array");
    if (json_array_size(arr) > OTASRV_ROLLOUT_MAX_DEVICES)
        return ota_err_set(err, EINVAL, "devices: %zu devices, at most %d", json_array_size(arr),
                           OTASRV_ROLLOUT_MAX_DEVICES);
    if (json_array_size(arr) == 0)
        return 0;
    def->devices = calloc(json_array_size(arr), sizeof(def->devices[0]));
    if (!def->devices)
        return ota_err_set(err, ENOMEM, "out of memory");
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return ota_err_set(err, EINVAL, "devices[%zu]: not a string", i);
        def->devices[i] = strdup(json_string_value(v));
        if (!def->devices[i])
            return ota_err_set(err, ENOMEM, "out of memory");
        def->n_devices = i + 1;
    }
    return 0;
}

static int parse_filters(const json_t *obj, struct otasrv_rollout_filter *f, struct ota_err *err)
{
    const json_t *fo = json_object_get(obj, "filters");
    const json_t *tags;
    char op[8] = "";
    size_t i;
    json_t *v;
    int r;

    f->version_op = OTASRV_VOP_EQ;
    if (!fo)
        return 0;
    if (!json_is_object(fo))
        return ota_err_set(err, EINVAL, "filters: not an object");
    r = check_keys(fo, filter_keys, N_KEYS(filter_keys), "filters", err);
    if (r >= 0)
        r = opt_str(fo, "filters", "device_type", f->device_type, sizeof(f->device_type), err);
    if (r >= 0)
        r = opt_str(fo, "filters", "group", f->group, sizeof(f->group), err);
    if (r >= 0)
        r = opt_str(fo, "filters", "current_version", f->version, sizeof(f->version), err);
    if (r >= 0)
        r = opt_str(fo, "filters", "version_operator", op, sizeof(op), err);
    if (r < 0)
        return r;
    if (json_object_get(fo, "version_operator")) {
        int k = otasrv_rollout_name_index(otasrv_vop_names, OTASRV_VOP_MAX, op);
        if (k < 0)
            return ota_err_set(err, EINVAL,
                               "filters.version_operator: unknown operator '%s' (want < <= == != "
                               ">= >)",
                               op);
        if (!f->version[0])
            return ota_err_set(err, EINVAL, "filters.version_operator: needs current_version");
        f->version_op = (enum otasrv_vop)k;
    }
    tags = json_object_get(fo, "tags");
    if (!tags)
        return 0;
    if (!json_is_array(tags))
        return ota_err_set(err, EINVAL, "filters.tags: not an array");
    if (json_array_size(tags) > OTASRV_ROLLOUT_MAX_TAGS)
        return ota_err_set(err, EINVAL, "filters.tags: %zu tags, at most %d", json_array_size(tags),
                           OTASRV_ROLLOUT_MAX_TAGS);
    json_array_foreach(tags, i, v)
    {
        if (!json_is_string(v))
            return ota_err_set(err, EINVAL, "filters.tags[%zu]: not a string", i);
        if (json_string_length(v) >= OTASRV_ROLLOUT_TAG_MAX)
            return ota_err_set(err, ENAMETOOLONG, "filters.tags[%zu]: longer than %d bytes", i,
                               OTASRV_ROLLOUT_TAG_MAX - 1);
        ota_strlcpy(f->tags[i], json_string_value(v), sizeof(f->tags[i]));
        if (strlen(f->tags[i]) != json_string_length(v))
            return ota_err_set(err, EINVAL, "filters.tags[%zu]: holds a NUL byte", i);
    }
    f->n_tags = (int)json_array_size(tags);
    return 0;
}

static int parse_def(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err)
{
    struct ota_err tmp = {0};
    char strategy[32];
    int64_t v;
    int k, r;

    if (!json_is_object(obj))
        return ota_err_set(err, EINVAL, "rollout: not a JSON object");
    r = check_keys(obj, def_keys, N_KEYS(def_keys), "", err);
    if (r < 0)
        return r;
    r = opt_str(obj, "", "id", def->id, sizeof(def->id), err);
    if (r >= 0)
        r = opt_str(obj, "", "name", def->name, sizeof(def->name), err);
    if (r >= 0)
        r = placed(ota_json_str(obj, "release_id", def->release_id, sizeof(def->release_id), &tmp),
                   "", &tmp, err);
    if (r >= 0)
        r = opt_str(obj, "", "previous_release_id", def->previous_release_id,
                    sizeof(def->previous_release_id), err);
    if (r >= 0)
        r = placed(ota_json_str(obj, "strategy", strategy, sizeof(strategy), &tmp), "", &tmp, err);
    if (r < 0)
        return r;
    k = otasrv_rollout_name_index(otasrv_strategy_names, OTASRV_STRATEGY_MAX, strategy);
    if (k < 0)
        return ota_err_set(err, EINVAL,
                           "strategy: unknown strategy '%s' (want immediate, manual, canary, "
                           "staged, rolling or scheduled)",
                           strategy);
    def->strategy = (enum otasrv_strategy)k;
    r = parse_stages(obj, def, err);
    if (r >= 0)
        r = parse_devices(obj, def, err);
    if (r >= 0)
        r = parse_filters(obj, &def->filter, err);
    if (r < 0)
        return r;
    v = 0;
    r = opt_int(obj, "", "max_concurrent", 0, UINT32_MAX, &v, err);
    def->max_concurrent = (uint32_t)v;
    if (r >= 0)
        r = opt_int(obj, "", "report_timeout_ms", 0, INT64_MAX, &def->report_timeout_ms, err);
    if (r >= 0)
        r = opt_int(obj, "", "start_at_ms", 0, INT64_MAX, &def->start_at_ms, err);
    if (r >= 0)
        r = opt_bool(obj, "auto_pause", &def->auto_pause, err);
    if (r >= 0)
        r = opt_bool(obj, "auto_rollback", &def->auto_rollback, err);
    if (r >= 0)
        r = otasrv_rollout_def_validate(def, err);
    if (r >= 0)
        r = sort_devices(def, err);
    return r;
}

int otasrv_rollout_from_json(const json_t *obj, struct otasrv_rollout_def *ret, struct ota_err *err)
{
    struct otasrv_rollout_def def;
    int r;

    memset(&def, 0, sizeof(def));
    r = parse_def(obj, &def, err);
    if (r < 0)
        goto out;
    *ret = def;
    return 0;
out:
    otasrv_rollout_def_clear(&def);
    return r;
}

/* Collects jansson's failures: any NULL or -1 turns into -ENOMEM once. */
static void put(json_t *obj, const char *key, json_t *v, int *bad)
{
    if (!v || json_object_set_new(obj, key, v) < 0)
        *bad = 1;
}

static void append(json_t *arr, json_t *v, int *bad)
{
    if (!v || json_array_append_new(arr, v) < 0)
        *bad = 1;
}

int otasrv_rollout_to_json(const struct otasrv_rollout_def *def, json_t **ret)
{
    const struct otasrv_rollout_filter *f = &def->filter;
    json_t *obj = json_object();
    json_t *stages = json_array();
    json_t *filters = json_object();
    int bad = !obj || !stages || !filters;

    if (bad)
        goto fail;
    put(obj, "id", json_string(def->id), &bad);
    put(obj, "name", json_string(def->name), &bad);
    put(obj, "release_id", json_string(def->release_id), &bad);
    put(obj, "previous_release_id", json_string(def->previous_release_id), &bad);
    put(obj, "strategy", json_string(otasrv_strategy_names[def->strategy]), &bad);
    for (int i = 0; i < def->n_stages; i++) {
        const struct otasrv_rollout_stage *st = &def->stages[i];
        json_t *s = json_object();
        if (!s) {
            bad = 1;
            break;
        }
        if (st->percent)
            put(s, "percent", json_integer(st->percent), &bad);
        else
            put(s, "batch_size", json_integer(st->batch_size), &bad);
        put(s, "success_threshold", json_integer(st->success_threshold), &bad);
        put(s, "failure_threshold", json_integer(st->failure_threshold), &bad);
        if (st->max_failures >= 0)
            put(s, "max_failures", json_integer(st->max_failures), &bad);
        append(stages, s, &bad);
    }
    put(obj, "stages", stages, &bad);
    stages = NULL;
    if (def->strategy == OTASRV_STRATEGY_MANUAL) {
        json_t *devs = json_array();
        for (size_t i = 0; devs && i < def->n_devices; i++)
            append(devs, json_string(def->devices[i]), &bad);
        put(obj, "devices", devs, &bad);
    }
    if (f->device_type[0])
        put(filters, "device_type", json_string(f->device_type), &bad);
    if (f->group[0])
        put(filters, "group", json_string(f->group), &bad);
    if (f->n_tags) {
        json_t *tags = json_array();
        for (int i = 0; tags && i < f->n_tags; i++)
            append(tags, json_string(f->tags[i]), &bad);
        put(filters, "tags", tags, &bad);
    }
    if (f->version[0]) {
        put(filters, "current_version", json_string(f->version), &bad);
        put(filters, "version_operator", json_string(otasrv_vop_names[f->version_op]), &bad);
    }
    put(obj, "filters", filters, &bad);
    filters = NULL;
    put(obj, "max_concurrent", json_integer(def->max_concurrent), &bad);
    put(obj, "report_timeout_ms", json_integer(def->report_timeout_ms), &bad);
    put(obj, "start_at_ms", json_integer(def->start_at_ms), &bad);
    put(obj, "auto_pause", json_boolean(def->auto_pause), &bad);
    put(obj, "auto_rollback", json_boolean(def->auto_rollback), &bad);
    if (bad)
        goto fail;
    *ret = obj;
    return 0;
fail:
    json_decref(obj);
    json_decref(stages);
    json_decref(filters);
    return -ENOMEM;
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
        !bsearch(&info->device_id, def->devices, def->n_devices, sizeof(def->devices[0]), cmp_str))
        return no(ret_reason, "the device is not listed in the manual rollout");
    if (f->device_type[0] && (!info->device_type || strcmp(f->device_type, info->device_type)))
        return no(ret_reason, "the device type differs from the filter's");
    if (f->group[0] && (!info->group || strcmp(f->group, info->group)))
        return no(ret_reason, "the group differs from the filter's");
    for (int i = 0; i < f->n_tags; i++)
        if (!has_tag(info, f->tags[i]))
            return no(ret_reason, "the device lacks a tag the filter requires");
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
    rc = sort_devices(def, err);
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
    free(r);
}

void otasrv_rollout_recount(struct otasrv_rollout *r, const struct otasrv_rollout_device *devs,
                            size_t n)
{
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
static int cmp_rank(const void *a, const void *b, void *ctx)
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
    qsort_r(order, n, sizeof(*order), cmp_rank, devs);
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
           r->count[k][OTASRV_RDEV_IN_PROGRESS];
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

static int stage_passed(const struct otasrv_rollout *r, int k)
{
    const struct otasrv_rollout_stage *st = &r->def.stages[k];
    uint64_t ok = r->count[k][OTASRV_RDEV_SUCCESS];

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
        change(r, OTASRV_ROLLOUT_RUNNING, now_ms, "");
    }
    return 0;
}

int otasrv_rollout_act(struct otasrv_rollout *r, enum otasrv_op op,
                       struct otasrv_rollout_device *devs, size_t n, int64_t now_ms,
                       struct ota_err *err)
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
    if (ret_decision->why == OTASRV_WHY_NEW) {
        set_state(r, d, OTASRV_RDEV_OFFERED);
        d->offered_ms = now_ms;
        d->last_ms = now_ms;
    } else if (ret_decision->why == OTASRV_WHY_FILTERED) {
        set_state(r, d, OTASRV_RDEV_SKIPPED);
        d->finished_ms = now_ms;
    }
}

static int report_release(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                          enum otasrv_report status, int64_t now_ms, struct ota_err *err)
{
    enum otasrv_rdev_state to;

    switch (d->state) {
    case OTASRV_RDEV_OFFERED:
    case OTASRV_RDEV_IN_PROGRESS:
    case OTASRV_RDEV_TIMED_OUT: /* a late report: the device lives */
        break;
    case OTASRV_RDEV_PENDING:
    case OTASRV_RDEV_SKIPPED:
        return ota_err_set(err, EINVAL, "device %s was not offered release %s", d->device_id,
                           r->def.release_id);
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
    d->dirty = 1;
    if (to == OTASRV_RDEV_IN_PROGRESS) {
        if (!d->started_ms)
            d->started_ms = now_ms;
        d->finished_ms = 0;
    } else {
        d->finished_ms = now_ms;
    }
    if (d->state != to)
        set_state(r, d, to);
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
    d->dirty = 1;
    if (status == OTASRV_REPORT_SUCCESS) {
        d->finished_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_ROLLED_BACK);
    } else if (status == OTASRV_REPORT_FAILURE) {
        d->finished_ms = now_ms;
        set_state(r, d, OTASRV_RDEV_ROLLBACK_FAILED);
    }
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

    if (limit <= 0)
        return 0;
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

    while (r->stage < r->def.n_stages - 1 && stage_passed(r, r->stage)) {
        r->stage++;
        r->changed_ms = now_ms;
        snprintf(reason, sizeof(reason), "stage %d passed: stage %d opened", r->stage - 1,
                 r->stage);
        ota_strlcpy(r->reason, reason, sizeof(r->reason));
    }
    for (int k = 0; k < r->def.n_stages; k++)
        open += stage_open(r, k);
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
    otasrv_rollout_recount(r, devs, n);
    if (r->state == OTASRV_ROLLOUT_SCHEDULED && now_ms >= r->def.start_at_ms) {
        r->started_ms = now_ms;
        change(r, OTASRV_ROLLOUT_RUNNING, now_ms, "start time reached");
    }
    if (r->state == OTASRV_ROLLOUT_RUNNING || r->state == OTASRV_ROLLOUT_PAUSED)
        res.timed_out = time_out(r, devs, n, now_ms);
    if (r->state == OTASRV_ROLLOUT_RUNNING ||
        (r->state == OTASRV_ROLLOUT_PAUSED && r->def.auto_rollback))
        check_trips(r, devs, n, now_ms, &res);
    if (r->state == OTASRV_ROLLOUT_RUNNING)
        advance(r, now_ms);
    res.to_state = r->state;
    res.to_stage = r->stage;
    res.changed = res.from_state != res.to_state || res.from_stage != res.to_stage;
    if (ret_result)
        *ret_result = res;
}

/* ---- status JSON ---- */

static const char *const status_keys[] = {
    "state",       "stage",      "created_ms", "approved_ms", "started_ms",
    "finished_ms", "changed_ms", "reason",     "fail_ack",
};

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
    put(obj, "reason", json_string(r->reason), &bad);
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
    int64_t stage = 0, t[5] = {0};
    static const char *const times[5] = {"created_ms", "approved_ms", "started_ms", "finished_ms",
                                         "changed_ms"};
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
    for (int j = 0; j < 5 && rc >= 0; j++)
        rc = opt_int(obj, "status", times[j], 0, INT64_MAX, &t[j], err);
    if (rc >= 0)
        rc = opt_str(obj, "status", "reason", reason, sizeof(reason), err);
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
    m.in_flight = m.by_state[OTASRV_RDEV_OFFERED] + m.by_state[OTASRV_RDEV_IN_PROGRESS];
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
