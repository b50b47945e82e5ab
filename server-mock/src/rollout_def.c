/* Rollout definitions (contract and JSON schema in otasrv/rollout.h): the
 * names tables, the one validator that serves code-built and JSON
 * definitions (so to_json never writes what from_json would refuse), and
 * the definition JSON. The engine is rollout.c; its status and metrics
 * JSON are rollout_status.c. */
#include "otasrv/rollout.h"
#include "rollout_impl.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const otasrv_strategy_names[OTASRV_STRATEGY_MAX] = {
    [OTASRV_STRATEGY_IMMEDIATE] = "immediate",   [OTASRV_STRATEGY_MANUAL] = "manual",
    [OTASRV_STRATEGY_CANARY] = "canary",         [OTASRV_STRATEGY_STAGED] = "staged",
    [OTASRV_STRATEGY_ROLLING] = "rolling",       [OTASRV_STRATEGY_SCHEDULED] = "scheduled",
    [OTASRV_STRATEGY_BLUE_GREEN] = "blue_green",
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
    [OTASRV_RDEV_STANDBY] = "standby",         [OTASRV_RDEV_ACTIVATED] = "activated",
};

const char *const otasrv_op_names[OTASRV_OP_MAX] = {
    [OTASRV_OP_APPROVE] = "approve",   [OTASRV_OP_START] = "start",
    [OTASRV_OP_PAUSE] = "pause",       [OTASRV_OP_RESUME] = "resume",
    [OTASRV_OP_CANCEL] = "cancel",     [OTASRV_OP_ROLLBACK] = "rollback",
    [OTASRV_OP_ACTIVATE] = "activate",
};

const char *const otasrv_offer_names[OTASRV_OFFER_MAX] = {
    [OTASRV_OFFER_NONE] = "none",         [OTASRV_OFFER_RELEASE] = "release",
    [OTASRV_OFFER_ROLLBACK] = "rollback", [OTASRV_OFFER_ACTIVATE] = "activate",
    [OTASRV_OFFER_ABANDON] = "abandon",
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
    [OTASRV_WHY_OUTSIDE_WINDOW] = "outside_window",
    [OTASRV_WHY_STANDBY] = "standby",
    [OTASRV_WHY_ACTIVATED] = "activated",
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
    if (st->delay_ms < 0 || st->delay_ms > INT64_MAX / 2)
        return ota_err_set(err, EINVAL, "stages[%d].delay_ms: %" PRId64 " is out of range", i,
                           st->delay_ms);
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
    r = otasrv_rollout_extras_validate(def, err);
    if (r < 0)
        return r;
    return otasrv_bg_validate(def, err);
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

int otasrv_rollout_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the manual list (bsearch in matches) and refuses duplicates. */
int otasrv_rollout_sort_devices(struct otasrv_rollout_def *def, struct ota_err *err)
{
    if (def->n_devices < 2)
        return 0;
    qsort(def->devices, def->n_devices, sizeof(def->devices[0]), otasrv_rollout_cmp_str);
    for (size_t i = 1; i < def->n_devices; i++)
        if (strcmp(def->devices[i - 1], def->devices[i]) == 0)
            return ota_err_set(err, EINVAL, "devices: '%s' is listed twice", def->devices[i]);
    return 0;
}

/* ---- definition JSON ---- */

static const char *const def_keys[] = {
    "id",
    "name",
    "release_id",
    "previous_release_id",
    "strategy",
    "stages",
    "devices",
    "filters",
    "max_concurrent",
    "report_timeout_ms",
    "start_at_ms",
    "auto_pause",
    "auto_rollback",
    "canary",
    "window",
    "activate_at_ms",
    "not_after_ms",
};
static const char *const stage_keys[] = {
    "percent", "batch_size", "success_threshold", "failure_threshold", "max_failures", "delay_ms",
};
static const char *const filter_keys[] = {
    "device_type", "group", "tags", "current_version", "version_operator", "attributes",
};

static int parse_stage(const json_t *v, int i, struct otasrv_rollout_stage *st, struct ota_err *err)
{
    char where[32];
    int64_t percent = 0, batch = 0, success = -1, failure = -1, maxf = -1, delay = 0;
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
    if (r >= 0)
        r = opt_int(v, where, "delay_ms", 0, INT64_MAX / 2, &delay, err);
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
    st->delay_ms = delay;
    return 0;
}

static int parse_stages(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err)
{
    const json_t *arr = json_object_get(obj, "stages");
    size_t i;
    json_t *v;

    if (!arr) {
        if (def->strategy == OTASRV_STRATEGY_CANARY || def->strategy == OTASRV_STRATEGY_STAGED ||
            def->strategy == OTASRV_STRATEGY_ROLLING || def->strategy == OTASRV_STRATEGY_BLUE_GREEN)
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
    if (r >= 0)
        r = otasrv_rollout_attrs_parse(fo, f, err);
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
                           "staged, rolling, scheduled or blue_green)",
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
        r = otasrv_rollout_extras_parse(obj, def, err);
    if (r >= 0)
        r = otasrv_bg_parse(obj, def, err);
    if (r >= 0)
        r = otasrv_rollout_def_validate(def, err);
    if (r >= 0)
        r = otasrv_rollout_sort_devices(def, err);
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
        if (st->delay_ms > 0)
            put(s, "delay_ms", json_integer(st->delay_ms), &bad);
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
    otasrv_rollout_extras_to_json(def, obj, filters, &bad);
    put(obj, "filters", filters, &bad);
    filters = NULL;
    put(obj, "max_concurrent", json_integer(def->max_concurrent), &bad);
    put(obj, "report_timeout_ms", json_integer(def->report_timeout_ms), &bad);
    put(obj, "start_at_ms", json_integer(def->start_at_ms), &bad);
    put(obj, "auto_pause", json_boolean(def->auto_pause), &bad);
    put(obj, "auto_rollback", json_boolean(def->auto_rollback), &bad);
    otasrv_bg_to_json(def, obj, &bad);
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
