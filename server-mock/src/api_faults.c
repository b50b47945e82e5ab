/* Fault plans in the server: the live plan lives in srv->faults for the
 * server's lifetime; a new plan is swapped into it (otasrv_faultplan_swap),
 * so a request in flight holds no pointer into the plan, only its copied
 * decision. srv->faults_on lets requests skip the plan (and the token
 * lookup for the device id) when it has no rules. */
#include "otasrv/api_faults.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ota/fsutil.h"

int otasrv_api_faults_load(const char *path, struct otasrv_faultplan **ret, struct ota_err *err)
{
    char *text = NULL;
    size_t n = 0;
    int r;

    r = ota_fs_read_all(path, OTASRV_FAULTPLAN_MAX + 1, &text, &n, err);
    if (r < 0)
        return r;
    r = otasrv_faultplan_parse(text, n, otasrv_faultplan_format_from_name(path), ret, err);
    free(text);
    return r;
}

static int plan_has_rules(struct otasrv_faultplan *plan)
{
    json_t *d = NULL;
    int on = 1; /* when in doubt, ask the plan */

    if (otasrv_faultplan_describe(plan, &d, NULL) == 0)
        on = json_array_size(json_object_get(d, "rules")) > 0;
    json_decref(d);
    return on;
}

int otasrv_api_faults_init(struct otasrv_srv *srv, struct ota_err *err)
{
    int r;

    if (!srv->faults && (r = otasrv_faultplan_new(&srv->faults, err)) < 0)
        return r;
    atomic_store(&srv->faults_on, plan_has_rules(srv->faults));
    return 0;
}

/* ---- matching ---- */

static int seg_is(const struct otasrv_req *req, int i, const char *s)
{
    return i < req->nseg && strcmp(req->seg[i], s) == 0;
}

/* The admin face, as route() in server.c tells it: /api/v1/... except the
 * device calls. Admin calls are never faulted (a test must always be able to
 * read and change the plan), nor is GET /metrics (a scrape must see the
 * faults it counts). */
static int is_admin(const struct otasrv_req *req)
{
    if (req->nseg == 1 && seg_is(req, 0, "metrics")) /* GET /metrics: admin token */
        return 1;
    if (!seg_is(req, 0, "api") || !seg_is(req, 1, "v1"))
        return 0;
    if (seg_is(req, 2, "devices"))
        return !((req->nseg == 4 && seg_is(req, 3, "register")) ||
                 (req->nseg == 5 && (seg_is(req, 4, "checkin") || seg_is(req, 4, "status"))));
    if (seg_is(req, 2, "releases") && req->nseg == 5)
        return !(strcmp(req->method, "GET") == 0 || req->is_head);
    return 1;
}

/* The device id and release id the request is about (NULL when none). */
static void request_subjects(struct otasrv_req *req, char *dev, size_t cap, const char **ret_dev,
                             const char **ret_rel)
{
    char sha[65];
    int download = 0;

    *ret_dev = NULL;
    *ret_rel = NULL;
    if (seg_is(req, 0, "api") && seg_is(req, 2, "devices") && req->nseg == 4 &&
        seg_is(req, 3, "register") && req->body) {
        /* registration: the device_id of the body, if it is readable */
        json_t *o = json_loadb(req->body, req->body_len, 0, NULL);
        const char *id = json_string_value(json_object_get(o, "device_id"));

        if (id && strlen(id) < cap) {
            snprintf(dev, cap, "%s", id);
            *ret_dev = dev;
        }
        json_decref(o);
    } else if (seg_is(req, 0, "api") && seg_is(req, 2, "devices") && req->nseg == 5) {
        *ret_dev = req->seg[3];
    } else if (seg_is(req, 0, "api") && seg_is(req, 2, "releases") && req->nseg == 5) {
        *ret_rel = req->seg[3];
        download = 1;
    } else if (req->nseg == 6 && seg_is(req, 2, "releases") && seg_is(req, 3, "download")) {
        *ret_rel = req->seg[4];
        download = 1;
    } else if (seg_is(req, 0, "repos") && req->nseg == 6 && seg_is(req, 4, "tags")) {
        *ret_rel = req->seg[5];
    } else if (req->nseg >= 4 && seg_is(req, 1, "controller") && seg_is(req, 2, "v1")) {
        /* hawkBit DDI: the controller id; an artifact names its release */
        *ret_dev = req->seg[3];
        if (req->nseg == 8 && seg_is(req, 4, "softwaremodules"))
            *ret_rel = req->seg[5];
    }
    /* downloads: the device is the token's */
    if (download && otasrv_bearer_sha(req, sha) == 0 &&
        otasrv_store_device_by_token(req->srv->store, sha, dev, cap, NULL) == 0)
        *ret_dev = dev;
}

static void log_fault(struct otasrv_req *req, const struct otasrv_fault_decision *d, uint64_t seq,
                      const struct otasrv_request_info *info)
{
    struct otasrv_srv *srv = req->srv;
    FILE *out = srv->log ? srv->log : stderr;
    char *line = NULL;

    if (otasrv_faultplan_log_json(d, seq, info, &line) < 0 || line[0] != '{')
        goto out;
    /* the X-Request-Id too, so a log line can be matched to an answer */
    pthread_mutex_lock(&srv->log_lock);
    fprintf(out, "{\"fault\":true,\"x_request_id\":\"%s\",%s\n", req->id, line + 1);
    fflush(out);
    pthread_mutex_unlock(&srv->log_lock);
out:
    free(line);
}

/* A fault applied but not stored: the request goes on (the fault is the
 * test's), the log says why the per-device count will miss it. */
static void store_failed(struct otasrv_req *req, const char *rule, const char *why)
{
    struct otasrv_srv *srv = req->srv;
    FILE *out = srv->log ? srv->log : stderr;
    json_t *o = json_pack("{s:b, s:s, s:s, s:s}", "fault_not_stored", 1, "x_request_id", req->id,
                          "rule", rule, "reason", why);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;

    if (line) {
        pthread_mutex_lock(&srv->log_lock);
        fprintf(out, "%s\n", line);
        fflush(out);
        pthread_mutex_unlock(&srv->log_lock);
    }
    free(line);
    json_decref(o);
}

static uint64_t request_seq(const struct otasrv_req *req)
{
    const char *dash = strchr(req->id, '-');
    return dash ? strtoull(dash + 1, NULL, 10) : 0;
}

static void resume_conn(void *ctx)
{
    otasrv_resume(ctx);
}

/* A delay on the virtual clock: suspends the connection until the clock
 * reaches deadline (on_request calls us again then). */
static void wait_virtual(struct otasrv_req *req, int64_t deadline)
{
    req->fault_waiting = 1;
    otasrv_suspend(req->conn);
    otasrv_clock_timer_arm(req->srv->clock, &req->fault_timer, deadline, resume_conn, req->conn);
}

/* redirect: the fault's code with Location (a relative one as given: the
 * client resolves it against the request's URL). */
static enum otasrv_result answer_redirect(struct otasrv_req *req,
                                          const struct otasrv_fault_decision *d)
{
    struct otasrv_resp *resp = otasrv_resp_json(json_pack("{s:s}", "location", d->fault.text));

    if (!resp || otasrv_resp_header(resp, "Location", d->fault.text) < 0) {
        otasrv_resp_free(resp);
        return OTASRV_DROP;
    }
    return otasrv_reply(req, (unsigned)d->fault.code, resp);
}

/* A value that is not UTF-8 (or a "?key" without one) shows as null. */
static void echo_set(json_t *o, const char *key, const char *value)
{
    json_t *v = value ? json_string(value) : NULL;

    json_object_set_new(o, key, v ? v : json_null());
}

static int echo_header(void *ctx, const char *name, const char *value)
{
    char low[128];
    size_t i;

    for (i = 0; name[i] && i + 1 < sizeof(low); i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    low[i] = '\0';
    echo_set(ctx, low, value); /* a repeated header: the last one */
    return 0;
}

static int echo_query(void *ctx, const char *key, const char *value)
{
    echo_set(ctx, key, value);
    return 0;
}

/* echo: 200 with the request as the server saw it, for tests of a client
 * (what headers, token and body it really sends). The answer goes to the
 * sender only, so it shows nothing the sender did not have. */
static enum otasrv_result answer_echo(struct otasrv_req *req)
{
    json_t *o = json_object(), *h = json_object(), *q = json_object();
    json_t *body = req->body ? json_stringn(req->body, req->body_len) : json_string("");

    if (!o || !h || !q) {
        json_decref(o), json_decref(h), json_decref(q), json_decref(body);
        return OTASRV_DROP;
    }
    otasrv_header_each(req, echo_header, h);
    otasrv_query_each(req, echo_query, q);
    json_object_set_new(o, "method", json_string(req->method));
    json_object_set_new(o, "path", json_string(req->path));
    json_object_set_new(o, "query", q);
    json_object_set_new(o, "headers", h);
    json_object_set_new(o, "body", body ? body : json_null()); /* null: not UTF-8 */
    json_object_set_new(o, "body_bytes", json_integer((json_int_t)req->body_len));
    return otasrv_reply_json(req, 200, o);
}

/* The answer of d once its delay is over: 1 with *ret when answered or
 * dropped here, else 0 (req->fault set for a body fault). */
static int answer(struct otasrv_req *req, const struct otasrv_fault_decision *d,
                  const struct otasrv_fault_response *fr, enum otasrv_result *ret)
{
    struct otasrv_resp *resp;
    char ra[32];

    if (fr->reset) {
        *ret = OTASRV_DROP; /* the connection closes, nothing sent */
        return 1;
    }
    if (fr->status) {
        char detail[160];

        snprintf(detail, sizeof(detail), "fault injected by rule %s", d->rule);
        resp = otasrv_resp_json(json_pack("{s:s}", "detail", detail));
        if (!resp) {
            *ret = OTASRV_DROP;
            return 1;
        }
        if (fr->retry_after >= 0) {
            snprintf(ra, sizeof(ra), "%d", fr->retry_after);
            otasrv_resp_header(resp, "Retry-After", ra);
        }
        *ret = otasrv_reply(req, (unsigned)fr->status, resp);
        return 1;
    }
    if (fr->redirect) {
        *ret = answer_redirect(req, d);
        return 1;
    }
    if (fr->echo) {
        *ret = answer_echo(req);
        return 1;
    }
    req->fault = *d;
    req->has_fault = 1;
    return 0;
}

int otasrv_api_faults_before(struct otasrv_req *req, enum otasrv_result *ret)
{
    struct otasrv_request_info info = {0};
    struct otasrv_fault_decision d;
    struct otasrv_fault_response fr;
    struct ota_err err = {0};
    char dev[129];
    uint64_t seq;

    if (req->fault_waiting) { /* resumed: the virtual clock reached the delay, or closed */
        req->fault_waiting = 0;
        if (otasrv_clock_timer_state(req->srv->clock, &req->fault_timer) != OTASRV_TIMER_FIRED) {
            *ret = OTASRV_DROP; /* shutting down */
            return 1;
        }
        otasrv_fault_headers(&req->fault, &fr);
        return answer(req, &req->fault, &fr, ret);
    }
    if (!atomic_load(&req->srv->faults_on) || req->nseg == 0 || is_admin(req))
        return 0;
    info.method = req->method;
    info.path = req->path;
    info.now_ms = (uint64_t)otasrv_now_ms();
    request_subjects(req, dev, sizeof(dev), &info.device, &info.release);
    seq = request_seq(req);
    if (otasrv_faultplan_match(req->srv->faults, &info, seq, &d) != 1)
        return 0;
    log_fault(req, &d, seq, &info);
    /* kept per device and rule in the database: GET /api/v1/faults/devices */
    if (otasrv_store_fault_applied(req->srv->store, info.device, d.rule,
                                   otasrv_fault_kind_name(d.fault.kind), (int64_t)info.now_ms,
                                   &err) < 0)
        store_failed(req, d.rule, err.reason);
    otasrv_fault_headers(&d, &fr);
    if (fr.delay_ms && req->srv->clock) {
        req->fault = d; /* kept for the answer after the wait */
        wait_virtual(req, (int64_t)info.now_ms + fr.delay_ms); /* from its arrival */
        *ret = OTASRV_OK;
        return 1;
    }
    if (fr.delay_ms) {
        struct timespec ts = {fr.delay_ms / 1000, (long)(fr.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    return answer(req, &d, &fr, ret);
}

/* ---- admin endpoints ---- */

/* Unknown query parameters are 400, as on the other admin endpoints. */
struct query_check {
    int paging; /* limit and offset allowed */
    char bad[64];
};

static int query_iter(void *cls, const char *key, const char *value)
{
    struct query_check *q = cls;

    (void)value;
    if (q->paging && (strcmp(key, "limit") == 0 || strcmp(key, "offset") == 0))
        return 0;
    snprintf(q->bad, sizeof(q->bad), "%s", key);
    return 1;
}

static int bad_query(struct otasrv_req *req, int paging, enum otasrv_result *ret)
{
    struct query_check q = {paging, ""};

    otasrv_query_each(req, query_iter, &q);
    if (!q.bad[0])
        return 0;
    *ret = otasrv_reply_error(req, 400, "unknown query parameter \"%s\"", q.bad);
    return 1;
}

static enum otasrv_result reply_plan(struct otasrv_req *req, unsigned status)
{
    struct ota_err err = {0};
    json_t *o = NULL;

    if (otasrv_faultplan_describe(req->srv->faults, &o, &err) < 0)
        return otasrv_reply_error(req, 500, "%s", err.reason);
    return otasrv_reply_json(req, status, o);
}

static enum otasrv_result put_plan(struct otasrv_req *req)
{
    const char *ct = otasrv_header(req, "Content-Type");
    enum otasrv_plan_format fmt = OTASRV_PLAN_AUTO;
    struct otasrv_faultplan *next = NULL;
    struct ota_err err = {0};
    int r;

    if (ct && strncasecmp(ct, "application/json", 16) == 0)
        fmt = OTASRV_PLAN_JSON;
    else if (ct && (strncasecmp(ct, "application/yaml", 16) == 0 ||
                    strncasecmp(ct, "application/x-yaml", 18) == 0 ||
                    strncasecmp(ct, "text/yaml", 9) == 0))
        fmt = OTASRV_PLAN_YAML;
    r = otasrv_faultplan_parse(req->body ? req->body : "", req->body_len, fmt, &next, &err);
    if (r == -ENOMEM)
        return otasrv_reply_error(req, 500, "out of memory");
    if (r < 0)
        return otasrv_reply_error(req, r == -EFBIG ? 413 : 400, "bad fault plan: %s", err.reason);
    otasrv_faultplan_swap(req->srv->faults, next);
    otasrv_faultplan_free(next);
    atomic_store(&req->srv->faults_on, plan_has_rules(req->srv->faults));
    return reply_plan(req, 200);
}

static enum otasrv_result delete_plan(struct otasrv_req *req)
{
    struct otasrv_faultplan *empty = NULL;
    struct ota_err err = {0};

    if (otasrv_faultplan_new(&empty, &err) < 0)
        return otasrv_reply_error(req, 500, "%s", err.reason);
    otasrv_faultplan_swap(req->srv->faults, empty);
    otasrv_faultplan_free(empty);
    atomic_store(&req->srv->faults_on, 0);
    return reply_plan(req, 200);
}

static enum otasrv_result list_applied(struct otasrv_req *req)
{
    struct ota_err err = {0};
    int64_t limit, offset;
    uint64_t total = 0;
    json_t *all = NULL, *page, *e;
    size_t i, n;
    char rid[64];

    if (otasrv_query_int(req, "limit", OTASRV_FAULTLOG_CAP, 1, OTASRV_FAULTLOG_CAP, &limit, &err) <
            0 ||
        otasrv_query_int(req, "offset", 0, 0, OTASRV_FAULTLOG_CAP, &offset, &err) < 0)
        return otasrv_reply_error(req, 400, "%s", err.reason);
    if (otasrv_faultplan_log_list(req->srv->faults, &all, &total, &err) < 0)
        return otasrv_reply_error(req, 500, "%s", err.reason);
    page = json_array();
    n = json_array_size(all);
    for (i = (size_t)offset; page && i < n && i < (size_t)(offset + limit); i++) {
        e = json_array_get(all, i);
        snprintf(rid, sizeof(rid), "%s-%llu", req->srv->boot,
                 (unsigned long long)json_integer_value(json_object_get(e, "request_id")));
        json_object_set_new(e, "x_request_id", json_string(rid));
        json_array_append(page, e);
    }
    json_decref(all);
    if (!page)
        return otasrv_reply_error(req, 500, "out of memory");
    return otasrv_reply_json(req, 200,
                             json_pack("{s:o, s:I, s:I, s:I, s:I}", "applied", page, "kept",
                                       (json_int_t)n, "total", (json_int_t)total, "limit",
                                       (json_int_t)limit, "offset", (json_int_t)offset));
}

/* GET /api/v1/faults/devices[/ID]: what the database kept of applied
 * faults, per device and rule. One device: {"device", "rules"}, with an
 * empty rules list for a device nothing was applied to. */
static enum otasrv_result list_by_device(struct otasrv_req *req, const char *device)
{
    struct ota_err err = {0};
    json_t *all = NULL, *one;

    if (otasrv_store_faults_applied(req->srv->store, device, &all, &err) < 0)
        return otasrv_reply_error(req, 500, "%s", err.reason);
    if (!device)
        return otasrv_reply_json(req, 200, json_pack("{s:o}", "devices", all));
    one = json_incref(json_array_get(all, 0));
    json_decref(all);
    if (!one)
        one = json_pack("{s:s, s:[]}", "device", device, "rules");
    return otasrv_reply_json(req, 200, one);
}

enum otasrv_result otasrv_api_faults_handle(struct otasrv_req *req)
{
    const char *m = req->method;
    int get = strcmp(m, "GET") == 0, del = strcmp(m, "DELETE") == 0;
    enum otasrv_result ret;

    if (bad_query(req, req->nseg == 4 && get && strcmp(req->seg[3], "applied") == 0, &ret))
        return ret;

    if (req->nseg == 3) {
        if (get)
            return reply_plan(req, 200);
        if (strcmp(m, "PUT") == 0 || strcmp(m, "POST") == 0)
            return put_plan(req);
        if (del)
            return delete_plan(req);
    } else if (req->nseg == 4 && strcmp(req->seg[3], "applied") == 0) {
        if (get)
            return list_applied(req);
        if (del) {
            otasrv_faultplan_log_clear(req->srv->faults);
            return otasrv_reply_json(req, 200, json_pack("{s:b}", "cleared", 1));
        }
    } else if (req->nseg >= 4 && req->nseg <= 5 && strcmp(req->seg[3], "devices") == 0) {
        if (get)
            return list_by_device(req, req->nseg == 5 ? req->seg[4] : NULL);
        if (del && req->nseg == 4) {
            struct ota_err err = {0};
            if (otasrv_store_faults_applied_clear(req->srv->store, &err) < 0)
                return otasrv_reply_error(req, 500, "%s", err.reason);
            return otasrv_reply_json(req, 200, json_pack("{s:b}", "cleared", 1));
        }
    } else {
        return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    }
    return otasrv_reply_error(req, 405, "method %s not allowed on %s", m, req->path);
}
