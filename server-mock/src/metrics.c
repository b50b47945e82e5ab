/* GET /metrics: the Prometheus text exposition (contract in otasrv/metrics.h,
 * names and labels in docs/protocol.md "Prometheus metrics"). The fleet,
 * rollout and fault families are read off the JSON objects the admin API
 * answers; the request families off the counters bumped in server.c's
 * completion callback. Label values come from bounded sets (route and status
 * classes, state names) or from the operator's own names (versions, types,
 * groups, rollout and rule ids), never from device ids or raw paths; a label
 * over the operator's names keeps its OTASRV_METRICS_MAX_VALUES largest
 * values and sums the rest under "(other)". */
#include "otasrv/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otasrv/api.h"
#include "otasrv/api_rollouts.h"
#include "otasrv/db.h"
#include "otasrv/faultplan.h"
#include "otasrv/server.h"

#define OTASRV_METRICS_MAX_VALUES 50
/* Scrapes computed at once; more are answered 503. */
#define OTASRV_METRICS_MAX_JOBS 4
/* A final rollout stays in the exposition this long after it finished. */
#define RECENT_MS (24LL * 3600 * 1000)

static const char *const route_names[OTASRV_ROUTE_MAX] = {
    "register", "checkin", "status", "download", "admin",
    "events",   "ddi",     "github", "metrics",  "other",
};
static const char *const code_names[OTASRV_CODE_CLASSES] = {"none", "1xx", "2xx",
                                                            "3xx",  "4xx", "5xx"};
static const int64_t bucket_us[OTASRV_LATENCY_BUCKETS] = {
    500,    1000,    2500,    5000,    10000,    25000,    50000,    100000,   250000,
    500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 300000000};

/* ---- request counters ---- */

static int seg_is(const struct otasrv_req *req, int i, const char *s)
{
    return i < req->nseg && strcmp(req->seg[i], s) == 0;
}

enum otasrv_route_class otasrv_route_class_of(const struct otasrv_req *req)
{
    int n = req->nseg, get = strcmp(req->method, "GET") == 0 || req->is_head;

    if (seg_is(req, 0, "api") && seg_is(req, 1, "v1")) {
        if (seg_is(req, 2, "devices") && n == 4 && seg_is(req, 3, "register"))
            return OTASRV_ROUTE_REGISTER;
        if (seg_is(req, 2, "devices") && n == 5 && seg_is(req, 4, "checkin"))
            return OTASRV_ROUTE_CHECKIN;
        if (seg_is(req, 2, "devices") && n == 5 && seg_is(req, 4, "status"))
            return OTASRV_ROUTE_STATUS;
        if (seg_is(req, 2, "releases") && n == 5 && get)
            return OTASRV_ROUTE_DOWNLOAD;
        if ((n == 3 && seg_is(req, 2, "events")) ||
            (n == 5 && seg_is(req, 2, "rollouts") && seg_is(req, 4, "events")))
            return OTASRV_ROUTE_EVENTS;
        return OTASRV_ROUTE_ADMIN;
    }
    if (n >= 4 && seg_is(req, 1, "controller") && seg_is(req, 2, "v1"))
        return OTASRV_ROUTE_DDI;
    if (seg_is(req, 0, "repos") || (seg_is(req, 2, "releases") && seg_is(req, 3, "download")))
        return OTASRV_ROUTE_GITHUB;
    if (n == 1 && seg_is(req, 0, "metrics"))
        return OTASRV_ROUTE_METRICS;
    return OTASRV_ROUTE_OTHER;
}

void otasrv_http_stats_observe(struct otasrv_http_stats *st, enum otasrv_route_class route,
                               unsigned status, int64_t us)
{
    unsigned c = status >= 100 && status <= 599 ? status / 100 : 0;
    int b = 0;

    if ((unsigned)route >= OTASRV_ROUTE_MAX)
        route = OTASRV_ROUTE_OTHER;
    if (us < 0)
        us = 0;
    while (b < OTASRV_LATENCY_BUCKETS && us > bucket_us[b])
        b++;
    atomic_fetch_add(&st->sum_us[route][c], (unsigned long long)us);
    atomic_fetch_add(&st->bucket[route][c][b], 1);
}

/* ---- the text ---- */

struct out {
    char *buf;
    size_t len, cap;
    int oom;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void outf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            o->oom = 1;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped. */
static void label_value(struct out *o, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            outf(o, "\\\\");
        else if (*p == '"')
            outf(o, "\\\"");
        else if (*p == '\n')
            outf(o, "\\n");
        else
            outf(o, "%c", *p);
    }
}

static void number(struct out *o, double v)
{
    if (isnan(v))
        outf(o, "NaN");
    else if (isinf(v))
        outf(o, v > 0 ? "+Inf" : "-Inf");
    else if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v)
        outf(o, "%.0f", v);
    else
        outf(o, "%.17g", v);
}

/* name{k1="v1",...} value: nl label pairs follow as (key, value) strings. */
static void sample(struct out *o, const char *name, double v, int nl, ...)
{
    va_list ap;

    outf(o, "%s", name);
    va_start(ap, nl);
    for (int i = 0; i < nl; i++) {
        const char *k = va_arg(ap, const char *);
        const char *lv = va_arg(ap, const char *);
        outf(o, "%s%s=\"", i ? "," : "{", k);
        label_value(o, lv);
        outf(o, "\"");
    }
    va_end(ap);
    outf(o, "%s ", nl ? "}" : "");
    number(o, v);
    outf(o, "\n");
}

static double num(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : 0;
}

/* ---- fleet ---- */

struct kv {
    const char *key;
    double n;
};

static int kv_cmp(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;

    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return strcmp(x->key, y->key);
}

/* One sample per key of obj ({value: count}), label k (and a fixed label
 * k0=v0 first when k0): the largest OTASRV_METRICS_MAX_VALUES values, the
 * rest summed under "(other)". */
static void by_label(struct out *o, const char *name, const json_t *obj, const char *k0,
                     const char *v0, const char *k)
{
    size_t n = json_object_size(obj), i = 0, keep;
    struct kv *v = calloc(n ? n : 1, sizeof(*v));
    const char *key;
    json_t *val;
    double rest = 0;

    if (!v) {
        o->oom = 1;
        return;
    }
    json_object_foreach((json_t *)obj, key, val)
    {
        v[i].key = key;
        v[i++].n = num(val);
    }
    qsort(v, n, sizeof(*v), kv_cmp);
    keep = n > OTASRV_METRICS_MAX_VALUES ? OTASRV_METRICS_MAX_VALUES - 1 : n;
    for (i = 0; i < n; i++) {
        if (i >= keep) {
            rest += v[i].n;
            continue;
        }
        if (k0)
            sample(o, name, v[i].n, 2, k0, v0, k, v[i].key);
        else
            sample(o, name, v[i].n, 1, k, v[i].key);
    }
    if (keep < n) {
        if (k0)
            sample(o, name, rest, 2, k0, v0, k, "(other)");
        else
            sample(o, name, rest, 1, k, "(other)");
    }
    free(v);
}

static void fleet(struct out *o, const json_t *stats)
{
    const json_t *d = json_object_get(stats, "devices");
    const json_t *ver = json_object_get(d, "by_version");
    const json_t *ro = json_object_get(stats, "rollouts");

    family(o, "ota_server_devices", "gauge", "Registered devices.");
    sample(o, "ota_server_devices", num(json_object_get(d, "total")), 0);
    family(o, "ota_server_devices_by_state", "gauge",
           "Registered devices by the agent state of their last check-in.");
    by_label(o, "ota_server_devices_by_state", json_object_get(d, "by_state"), NULL, NULL, "state");
    family(o, "ota_server_devices_by_version", "gauge",
           "Registered devices by their version of each kind (app, rootfs).");
    by_label(o, "ota_server_devices_by_version", json_object_get(ver, "app"), "kind", "app",
             "version");
    by_label(o, "ota_server_devices_by_version", json_object_get(ver, "rootfs"), "kind", "rootfs",
             "version");
    family(o, "ota_server_devices_by_type", "gauge", "Registered devices by device type.");
    by_label(o, "ota_server_devices_by_type", json_object_get(d, "by_type"), NULL, NULL, "type");
    family(o, "ota_server_devices_by_group", "gauge", "Registered devices by group.");
    by_label(o, "ota_server_devices_by_group", json_object_get(d, "by_group"), NULL, NULL, "group");
    family(o, "ota_server_rollouts", "gauge", "Rollouts by state.");
    by_label(o, "ota_server_rollouts", json_object_get(ro, "by_state"), NULL, NULL, "state");
}

/* ---- rollouts ---- */

/* One family over every rollout object of arr: fn prints its samples. */
typedef void (*ro_fn)(struct out *o, const char *name, const char *id, const json_t *ro);

static void ro_family(struct out *o, const json_t *arr, const char *name, const char *type,
                      const char *help, ro_fn fn)
{
    size_t i;
    json_t *ro;

    family(o, name, type, help);
    json_array_foreach((json_t *)arr, i, ro)
        fn(o, name, json_string_value(json_object_get(ro, "id")), ro);
}

static const json_t *ro_metrics(const json_t *ro, const char *key)
{
    return json_object_get(json_object_get(ro, "metrics"), key);
}

static void ro_info(struct out *o, const char *name, const char *id, const json_t *ro)
{
    const json_t *def = json_object_get(ro, "definition");
    const json_t *st = json_object_get(ro, "status");

    sample(o, name, 1, 4, "rollout", id, "release",
           json_string_value(json_object_get(def, "release_id")), "strategy",
           json_string_value(json_object_get(def, "strategy")), "state",
           json_string_value(json_object_get(st, "state")));
}

static void ro_stage(struct out *o, const char *name, const char *id, const json_t *ro)
{
    sample(o, name, num(json_object_get(json_object_get(ro, "status"), "stage")), 1, "rollout", id);
}

static void ro_devices(struct out *o, const char *name, const char *id, const json_t *ro)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)ro_metrics(ro, "by_state"), key, v)
        sample(o, name, num(v), 2, "rollout", id, "state", key);
}

static void ro_selected(struct out *o, const char *name, const char *id, const json_t *ro)
{
    sample(o, name, num(ro_metrics(ro, "selected")), 1, "rollout", id);
}

static void ro_progress(struct out *o, const char *name, const char *id, const json_t *ro)
{
    sample(o, name, num(ro_metrics(ro, "progress")), 1, "rollout", id);
}

static void ro_success(struct out *o, const char *name, const char *id, const json_t *ro)
{
    sample(o, name, num(ro_metrics(ro, "success_rate")), 1, "rollout", id);
}

static void ro_failure(struct out *o, const char *name, const char *id, const json_t *ro)
{
    sample(o, name, num(ro_metrics(ro, "failure_rate")), 1, "rollout", id);
}

static void ro_stages(struct out *o, const char *name, const char *id, const json_t *ro)
{
    static const char *const keys[] = {"pending", "in_flight", "success", "failed", "skipped"};
    size_t k;
    json_t *st;

    json_array_foreach(ro_metrics(ro, "stages"), k, st)
    {
        char stage[16];
        snprintf(stage, sizeof(stage), "%zu", k);
        for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
            sample(o, name, num(json_object_get(st, keys[i])), 3, "rollout", id, "stage", stage,
                   "state", keys[i]);
    }
}

/* The offer-to-success times as a summary: the engine's nearest-rank p50
 * and p95, and mean x n as the sum. */
static void ro_duration(struct out *o, const char *name, const char *id, const json_t *ro)
{
    const json_t *d = ro_metrics(ro, "duration_ms");
    char sum[128], count[128];
    double n = num(json_object_get(d, "n"));

    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    sample(o, name, num(json_object_get(d, "p50")) / 1000, 2, "rollout", id, "quantile", "0.5");
    sample(o, name, num(json_object_get(d, "p95")) / 1000, 2, "rollout", id, "quantile", "0.95");
    sample(o, sum, num(json_object_get(d, "mean")) * n / 1000, 1, "rollout", id);
    sample(o, count, n, 1, "rollout", id);
}

static void rollouts(struct out *o, const json_t *arr)
{
    ro_family(o, arr, "ota_server_rollout_info", "gauge",
              "A rollout (not final, or final for less than a day): 1, with its release, "
              "strategy and state.",
              ro_info);
    ro_family(o, arr, "ota_server_rollout_stage", "gauge", "The rollout's highest open stage.",
              ro_stage);
    ro_family(o, arr, "ota_server_rollout_devices", "gauge",
              "Devices of the rollout's table by their state in it.", ro_devices);
    ro_family(o, arr, "ota_server_rollout_selected_devices", "gauge",
              "Devices of the rollout's table in some stage.", ro_selected);
    ro_family(o, arr, "ota_server_rollout_stage_devices", "gauge",
              "Devices of each stage of the rollout, by state class.", ro_stages);
    ro_family(o, arr, "ota_server_rollout_progress_ratio", "gauge",
              "Share of the selected devices no longer pending or in flight (0..1).", ro_progress);
    ro_family(o, arr, "ota_server_rollout_success_ratio", "gauge",
              "Successes over the devices that finished (0 when none did).", ro_success);
    ro_family(o, arr, "ota_server_rollout_failure_ratio", "gauge",
              "Failures and timeouts over the devices that finished (0 when none did).",
              ro_failure);
    ro_family(o, arr, "ota_server_rollout_update_duration_seconds", "summary",
              "Offer-to-success time of the rollout's succeeded devices (nearest rank).",
              ro_duration);
}

/* ---- requests ---- */

/* One snapshot of the counters, so that the two families agree: a
 * request's count is its bucket (read once), the sum may lag by the
 * requests being counted right now. */
struct http_snap {
    unsigned long long bucket[OTASRV_ROUTE_MAX][OTASRV_CODE_CLASSES][OTASRV_LATENCY_BUCKETS + 1];
    unsigned long long n[OTASRV_ROUTE_MAX][OTASRV_CODE_CLASSES];
    unsigned long long sum_us[OTASRV_ROUTE_MAX][OTASRV_CODE_CLASSES];
};

static void requests(struct out *o, struct otasrv_http_stats *st)
{
    const char *total = "ota_server_http_requests_total";
    const char *hist = "ota_server_http_request_duration_seconds";
    struct http_snap *s = calloc(1, sizeof(*s));

    if (!s) {
        o->oom = 1;
        return;
    }
    for (int r = 0; r < OTASRV_ROUTE_MAX; r++)
        for (int c = 0; c < OTASRV_CODE_CLASSES; c++) {
            s->sum_us[r][c] = atomic_load(&st->sum_us[r][c]);
            for (int b = 0; b <= OTASRV_LATENCY_BUCKETS; b++)
                s->n[r][c] += s->bucket[r][c][b] = atomic_load(&st->bucket[r][c][b]);
        }
    family(o, total, "counter", "HTTP requests completed, by route class and status class.");
    for (int r = 0; r < OTASRV_ROUTE_MAX; r++)
        for (int c = 0; c < OTASRV_CODE_CLASSES; c++)
            if (s->n[r][c])
                sample(o, total, (double)s->n[r][c], 2, "route", route_names[r], "code",
                       code_names[c]);
    family(o, hist, "histogram",
           "Time from a request's arrival to its completion (the access log's ms), by route "
           "class and status class.");
    for (int r = 0; r < OTASRV_ROUTE_MAX; r++)
        for (int c = 0; c < OTASRV_CODE_CLASSES; c++) {
            unsigned long long cum = 0;
            char le[32];
            if (!s->n[r][c])
                continue;
            for (int b = 0; b <= OTASRV_LATENCY_BUCKETS; b++) {
                cum += s->bucket[r][c][b];
                if (b < OTASRV_LATENCY_BUCKETS)
                    snprintf(le, sizeof(le), "%g", (double)bucket_us[b] / 1e6);
                else
                    snprintf(le, sizeof(le), "+Inf");
                sample(o, "ota_server_http_request_duration_seconds_bucket", (double)cum, 3,
                       "route", route_names[r], "code", code_names[c], "le", le);
            }
            sample(o, "ota_server_http_request_duration_seconds_sum", (double)s->sum_us[r][c] / 1e6,
                   2, "route", route_names[r], "code", code_names[c]);
            sample(o, "ota_server_http_request_duration_seconds_count", (double)s->n[r][c], 2,
                   "route", route_names[r], "code", code_names[c]);
        }
    free(s);
}

/* ---- faults ---- */

static void faults(struct out *o, const json_t *plan, uint64_t applied_total)
{
    static const char *const keys[2] = {"matched", "applied"};
    static const char *const names[2] = {"ota_server_fault_rule_matched_total",
                                         "ota_server_fault_rule_applied_total"};
    static const char *const helps[2] = {
        "Requests the rule of the running fault plan matched (since the plan was set).",
        "Faults the rule of the running fault plan applied (since the plan was set)."};
    const json_t *rules = json_object_get(plan, "rules");

    family(o, "ota_server_fault_rules", "gauge", "Rules of the running fault plan.");
    sample(o, "ota_server_fault_rules", (double)json_array_size(rules), 0);
    for (int k = 0; k < 2; k++) {
        size_t i;
        json_t *rule;
        family(o, names[k], "counter", helps[k]);
        json_array_foreach((json_t *)rules, i, rule)
            sample(o, names[k], num(json_object_get(rule, keys[k])), 2, "rule",
                   json_string_value(json_object_get(rule, "id")), "kind",
                   json_string_value(json_object_get(json_object_get(rule, "fault"), "kind")));
    }
    family(o, "ota_server_faults_applied_total", "counter",
           "Faults applied since the log of applied faults was last cleared.");
    sample(o, "ota_server_faults_applied_total", (double)applied_total, 0);
}

/* ---- the handler ---- */

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void header(struct out *o, struct otasrv_srv *srv)
{
    char jv[32];

    snprintf(jv, sizeof(jv), "%d.%d.%d", JANSSON_MAJOR_VERSION, JANSSON_MINOR_VERSION,
             JANSSON_MICRO_VERSION);
    family(o, "ota_server_build_info", "gauge",
           "1, with the versions of the libraries ota-server runs on.");
    sample(o, "ota_server_build_info", 1, 3, "libmicrohttpd", otasrv_http_lib_version(), "sqlite",
           otasrv_db_lib_version(), "jansson", jv);
    family(o, "ota_server_start_time_seconds", "gauge",
           "When the server started (unix time, real clock).");
    sample(o, "ota_server_start_time_seconds", (double)srv->started_s, 0);
}

/* A scrape being computed on its own thread while its connection is
 * suspended: the worker threads of the daemon go on serving the other
 * connections (a connection stays on the thread that accepted it, so a
 * scrape computed there would hold up every device on that thread). */
struct otasrv_metrics_job {
    struct otasrv_srv *srv;
    struct otasrv_conn *conn;
    struct out o;
    int r; /* 0, or the store's failure (err) */
    struct ota_err err;
};

/* The exposition into job->o (o.oom on a failure to allocate). */
static void render(struct otasrv_metrics_job *job)
{
    struct otasrv_srv *srv = job->srv;
    struct out *o = &job->o;
    json_t *stats = NULL, *ros = NULL, *plan = NULL, *log = NULL;
    uint64_t applied = 0;
    double t0 = mono_s();

    o->cap = 65536;
    o->buf = malloc(o->cap);
    if ((job->r = otasrv_fleet_stats(srv, &stats, &job->err)) < 0)
        return;
    ros = otasrv_rollouts_recent(srv, otasrv_now_ms() - RECENT_MS);
    if (!o->buf || !ros || otasrv_faultplan_describe(srv->faults, &plan, &job->err) < 0 ||
        otasrv_faultplan_log_list(srv->faults, &log, &applied, &job->err) < 0)
        o->oom = 1;
    header(o, srv);
    fleet(o, stats);
    rollouts(o, ros);
    requests(o, &srv->http);
    faults(o, plan, applied);
    family(o, "ota_server_metrics_render_seconds", "gauge",
           "How long this exposition took to compute, up to this line.");
    sample(o, "ota_server_metrics_render_seconds", mono_s() - t0, 0);
    json_decref(stats);
    json_decref(ros);
    json_decref(plan);
    json_decref(log);
}

/* Renders, then resumes the connection: on_request calls the handler
 * again, which answers. The request may be gone once resumed. */
static void *job_main(void *arg)
{
    struct otasrv_metrics_job *job = arg;
    struct otasrv_srv *srv = job->srv;

    render(job);
    otasrv_resume(job->conn);
    atomic_fetch_sub(&srv->metrics_jobs, 1);
    return NULL;
}

/* The answer of a finished job (freed here). */
static enum otasrv_result answer(struct otasrv_req *req, struct otasrv_metrics_job *job)
{
    struct out o = job->o;
    struct ota_err err = job->err;
    int r = job->r;

    free(job);
    if (r < 0) {
        free(o.buf);
        return otasrv_reply_store_error(req, r, &err);
    }
    if (o.oom) {
        free(o.buf);
        return otasrv_reply_error(req, 500, "out of memory");
    }
    return otasrv_reply(req, 200,
                        otasrv_resp_text(o.buf, o.len, "text/plain; version=0.0.4; charset=utf-8"));
}

void otasrv_metrics_job_free(struct otasrv_metrics_job *job)
{
    if (job)
        free(job->o.buf);
    free(job);
}

enum otasrv_result otasrv_api_metrics(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_metrics_job *job = req->metrics_job;
    enum otasrv_result ret;
    pthread_attr_t attr;
    pthread_t t;

    if (job) { /* resumed: the job is done */
        req->metrics_job = NULL;
        return answer(req, job);
    }
    if (strcmp(req->method, "GET") != 0 && !req->is_head)
        return otasrv_reply_error(req, 405, "method %s not allowed on /metrics", req->method);
    if (otasrv_require_admin(req, &ret) < 0)
        return ret;
    if (atomic_fetch_add(&srv->metrics_jobs, 1) >= OTASRV_METRICS_MAX_JOBS) {
        atomic_fetch_sub(&srv->metrics_jobs, 1);
        return otasrv_reply_error(req, 503, "%d scrapes are being computed: try again",
                                  OTASRV_METRICS_MAX_JOBS);
    }
    job = calloc(1, sizeof(*job));
    if (!job) {
        atomic_fetch_sub(&srv->metrics_jobs, 1);
        return otasrv_reply_error(req, 500, "out of memory");
    }
    job->srv = srv;
    job->conn = req->conn;
    req->metrics_job = job;
    otasrv_suspend(req->conn); /* before the job can resume it */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, job_main, job) != 0)
        job_main(job); /* no thread: here, resumed all the same */
    pthread_attr_destroy(&attr);
    return OTASRV_OK;
}
