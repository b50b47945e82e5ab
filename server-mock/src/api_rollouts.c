/* Rollouts in the server: the engine's calls, their persistence, the admin
 * endpoints and the device face's offers. All rollouts (terminal ones too:
 * a rolled-back rollout still serves its rollback orders) live in memory,
 * each with its device table sorted by device id; one mutex serialises
 * everything, and every engine call is followed by a write of what changed
 * before anyone is answered. */
#include "otasrv/api_rollouts.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/manifest.h"
#include "otasrv/events.h"
#include "otasrv/rollout.h"
#include "otasrv/rollout_store.h"
#include "api_rollouts_impl.h"

struct ro {
    struct otasrv_rollout *r;
    struct otasrv_rollout_device *devs; /* sorted by device id */
    size_t n;
    char kind[16];         /* the release's kind: which version the filters look at */
    char prev_version[64]; /* the rollback order's version ("" without one) */
};

struct otasrv_rollouts {
    struct otasrv_srv *srv;
    struct otasrv_rstore *st;
    pthread_mutex_t lock;
    struct ro *v; /* creation order */
    size_t n, cap;
    pthread_t timer;
    int timer_started;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stop;
};

static int terminal(enum otasrv_rollout_state s)
{
    return s == OTASRV_ROLLOUT_COMPLETED || s == OTASRV_ROLLOUT_FAILED ||
           s == OTASRV_ROLLOUT_CANCELLED || s == OTASRV_ROLLOUT_ROLLED_BACK;
}

static struct otasrv_rollout_device *find_dev(struct ro *ro, const char *id)
{
    struct otasrv_rollout_device key;

    if (!ro->n || strlen(id) >= sizeof(key.device_id))
        return NULL;
    strcpy(key.device_id, id);
    return bsearch(&key, ro->devs, ro->n, sizeof(*ro->devs), otasrv_rdev_cmp);
}

static struct ro *find_ro(struct otasrv_rollouts *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].r->def.id, id) == 0)
            return &m->v[i];
    return NULL;
}

/* The rollback order's version of ro's rollout. */
static void ro_prev_version(struct otasrv_srv *srv, struct ro *ro)
{
    char kind[16];

    otasrv_release_kind(srv, ro->r->def.previous_release_id, kind, sizeof(kind), ro->prev_version);
}

/* ---- events ---- */

static json_t *metrics_json(const struct ro *ro)
{
    struct otasrv_rollout_metrics m;
    json_t *j = NULL;

    if (otasrv_rollout_measure(ro->r, ro->devs, ro->n, &m) < 0 ||
        otasrv_rollout_metrics_to_json(&m, &j) < 0)
        return json_object();
    return j;
}

static void emit_state(struct otasrv_rollouts *m, const struct ro *ro)
{
    const struct otasrv_rollout *r = ro->r;

    otasrv_events_publish(m->srv->events, r->def.id, "rollout_state",
                          json_pack("{s:s, s:s, s:i, s:s}", "id", r->def.id, "state",
                                    otasrv_rollout_state_names[r->state], "stage", r->stage,
                                    "reason", r->reason));
}

/* Metrics are computed over the whole table (O(n log n)): only for a
 * subscriber. */
static void emit_metrics(struct otasrv_rollouts *m, const struct ro *ro)
{
    json_t *j;

    if (!otasrv_events_wanted(m->srv->events, ro->r->def.id))
        return;
    j = metrics_json(ro);

    json_object_set_new(j, "id", json_string(ro->r->def.id));
    otasrv_events_publish(m->srv->events, ro->r->def.id, "rollout_metrics", j);
}

/* Tick ro at now and emit what changed. Locked. 1 if something changed. */
static int tick(struct otasrv_rollouts *m, struct ro *ro, int64_t now)
{
    struct otasrv_rollout_tick_result res = {0};

    otasrv_rollout_tick(ro->r, ro->devs, ro->n, now, &res);
    if (res.from_stage != res.to_stage && res.to_state == OTASRV_ROLLOUT_RUNNING)
        otasrv_events_publish(m->srv->events, ro->r->def.id, "stage_advanced",
                              json_pack("{s:s, s:i, s:i}", "id", ro->r->def.id, "from",
                                        res.from_stage, "to", res.to_stage));
    if (res.from_state != res.to_state)
        emit_state(m, ro);
    if (res.changed || res.timed_out || res.rollback_ordered)
        emit_metrics(m, ro);
    return res.changed || res.timed_out || res.rollback_ordered;
}

static int any_dirty(const struct ro *ro)
{
    const uint32_t *rows;
    ssize_t k = otasrv_rollout_dirty_rows(ro->r, ro->devs, ro->n, &rows);

    if (k >= 0)
        return k > 0;
    for (size_t i = 0; i < ro->n; i++)
        if (ro->devs[i].dirty)
            return 1;
    return 0;
}

/* The status and the rows that changed: the ones the engine lists, or,
 * when it cannot (replace, a table it has not indexed), every dirty row. */
static int save(struct otasrv_rollouts *m, struct ro *ro, int replace, struct ota_err *err)
{
    const uint32_t *rows;
    ssize_t k = replace ? -1 : otasrv_rollout_dirty_rows(ro->r, ro->devs, ro->n, &rows);
    int r;

    if (k >= 0)
        r = otasrv_rstore_save_rows(m->st, ro->r, ro->devs, rows, (size_t)k, err);
    else
        r = otasrv_rstore_save(m->st, ro->r, ro->devs, ro->n, replace, err);
    if (r == 0)
        otasrv_rollout_dirty_clear(ro->r);
    return r;
}

/* ---- timer ---- */

static int ticking(const struct ro *ro)
{
    return !terminal(ro->r->state) && ro->r->state != OTASRV_ROLLOUT_DRAFT &&
           ro->r->state != OTASRV_ROLLOUT_APPROVED;
}

/* One pass of the timer at now: ticks every started, unfinished rollout and
 * writes what changed. The first write failure, or 0 (rows that failed stay
 * dirty: the next pass writes them). */
static int tick_all(struct otasrv_rollouts *m, int64_t now, struct ota_err *err)
{
    int r = 0, e;

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        struct ro *ro = &m->v[i];
        if (!ticking(ro))
            continue;
        if ((tick(m, ro, now) || any_dirty(ro)) && (e = save(m, ro, 0, r < 0 ? NULL : err)) < 0 &&
            r == 0)
            r = e;
    }
    pthread_mutex_unlock(&m->lock);
    otasrv_events_tick(m->srv->events, now);
    return r;
}

/* Every real second: the rollouts under real time; under a virtual clock
 * only the event stream's keepalive (advances tick the rollouts). */
static void *timer_main(void *arg)
{
    struct otasrv_rollouts *m = arg;
    struct timespec ts;

    pthread_mutex_lock(&m->stop_lock);
    while (!m->stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&m->stop_cond, &m->stop_lock, &ts);
        if (m->stop)
            break;
        pthread_mutex_unlock(&m->stop_lock);
        if (m->srv->clock)
            otasrv_events_tick(m->srv->events, otasrv_now_ms());
        else
            ota_ignore(tick_all(m, otasrv_now_ms(), NULL)); /* retried next second */
        pthread_mutex_lock(&m->stop_lock);
    }
    pthread_mutex_unlock(&m->stop_lock);
    return NULL;
}

int otasrv_rollouts_step(struct otasrv_srv *srv, int64_t now_ms, struct ota_err *err)
{
    return tick_all(srv->rollouts, now_ms, err);
}

int64_t otasrv_rollouts_next_deadline(struct otasrv_srv *srv, int64_t now_ms)
{
    struct otasrv_rollouts *m = srv->rollouts;
    int64_t min = INT64_MAX;

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        const struct ro *ro = &m->v[i];
        int64_t t = otasrv_rollout_next_deadline(ro->r, ro->devs, ro->n, now_ms);
        if (t < min)
            min = t;
    }
    pthread_mutex_unlock(&m->lock);
    return min;
}

/* ---- open / close ---- */

static void on_loaded(void *ctx, struct otasrv_rollout *r, struct otasrv_rollout_device *devs,
                      size_t n)
{
    struct otasrv_rollouts *m = ctx;
    struct ro *nv;

    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        nv = realloc(m->v, cap * sizeof(*nv));
        if (!nv) {
            otasrv_rollout_free(r);
            free(devs);
            return;
        }
        m->v = nv;
        m->cap = cap;
    }
    nv = &m->v[m->n++];
    nv->r = r;
    nv->devs = devs;
    nv->n = n;
    otasrv_release_kind(m->srv, r->def.release_id, nv->kind, sizeof(nv->kind), NULL);
    ro_prev_version(m->srv, nv);
}

static int in_use(void *ctx, const char *rid)
{
    struct otasrv_rollouts *m = ctx;
    int used = 0;

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n && !used; i++) {
        const struct otasrv_rollout *r = m->v[i].r;
        used = !terminal(r->state) && (strcmp(r->def.release_id, rid) == 0 ||
                                       strcmp(r->def.previous_release_id, rid) == 0);
    }
    pthread_mutex_unlock(&m->lock);
    return used;
}

int otasrv_rollouts_open(struct otasrv_srv *srv, struct ota_err *err)
{
    struct otasrv_rollouts *m = calloc(1, sizeof(*m));
    int r;

    if (!m)
        return ota_err_set(err, ENOMEM, "out of memory");
    m->srv = srv;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->stop_lock, NULL);
    pthread_cond_init(&m->stop_cond, NULL);
    srv->rollouts = m;
    if ((r = otasrv_events_new(&srv->events, err)) < 0 ||
        (r = otasrv_rstore_open(srv->cfg.db_path, &m->st, err)) < 0)
        return r;
    if ((r = otasrv_rstore_load(m->st, on_loaded, m, err)) < 0 && r != -EINVAL)
        return r;
    srv->release_in_use = in_use;
    srv->hook_ctx = m;
    if (pthread_create(&m->timer, NULL, timer_main, m) != 0)
        return ota_err_set(err, EAGAIN, "cannot start the rollout timer");
    m->timer_started = 1;
    return 0;
}

void otasrv_rollouts_shutdown(struct otasrv_srv *srv)
{
    struct otasrv_rollouts *m = srv->rollouts;

    if (m && m->timer_started) {
        pthread_mutex_lock(&m->stop_lock);
        m->stop = 1;
        pthread_cond_signal(&m->stop_cond);
        pthread_mutex_unlock(&m->stop_lock);
        pthread_join(m->timer, NULL);
        m->timer_started = 0;
    }
    otasrv_events_shutdown(srv->events);
}

void otasrv_rollouts_free(struct otasrv_srv *srv)
{
    struct otasrv_rollouts *m = srv->rollouts;

    otasrv_rollouts_shutdown(srv);
    otasrv_events_free(srv->events);
    srv->events = NULL;
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        otasrv_rollout_free(m->v[i].r);
        free(m->v[i].devs);
    }
    free(m->v);
    otasrv_rstore_close(m->st);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->stop_lock);
    pthread_cond_destroy(&m->stop_cond);
    free(m);
    srv->rollouts = NULL;
}

/* ---- the device face ---- */

/* The update object for release rid (update id uid) of rollout; NULL if
 * the release is gone or has no payload. */
static json_t *offer_json(struct otasrv_req *req, const char *rollout, const char *rid,
                          const char *uid)
{
    struct otasrv_release *rel = NULL;
    char base[512], url[1200];
    json_t *o = NULL;

    if (otasrv_store_release_get(req->srv->store, rid, &rel, NULL) < 0 || !rel->payload_path[0]) {
        otasrv_release_free(rel);
        return NULL;
    }
    otasrv_base_url(req, base, sizeof(base));
    snprintf(url, sizeof(url), "%s/api/v1/releases/%s/payload", base, rid);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "update_id", uid, "rollout_id", rollout,
                  "release_id", rid, "manifest", rel->manifest, "signature", rel->signature, "url",
                  url);
    otasrv_release_free(rel);
    return o;
}

/* blue_green: the offer asks the agent to wait in STANDBY after the install. */
static void add_activation(const struct otasrv_rollout *r, json_t *offer)
{
    json_t *act;

    if (!offer || r->def.strategy != OTASRV_STRATEGY_BLUE_GREEN)
        return;
    act = json_pack("{s:s}", "mode", "wait");
    if (act && r->def.not_after_ms)
        json_object_set_new(act, "not_after_ms", json_integer(r->def.not_after_ms));
    json_object_set_new(offer, "activation", act);
}

/* blue_green: the whole answer to a device in standby: {"update": null,
 * "activate"|"abandon": uid}. */
static json_t *standby_answer(enum otasrv_offer offer, const char *uid)
{
    return json_pack("{s:n, s:s}", "update",
                     offer == OTASRV_OFFER_ACTIVATE ? "activate" : "abandon", uid);
}

int otasrv_rollouts_offer(struct otasrv_req *req, const char *id, json_t **ret, struct ota_err *err)
{
    struct otasrv_rollouts *m = req->srv->rollouts;
    json_t *dev = NULL, *offer = NULL;
    int r = 0, any, told = 0, changed;

    pthread_mutex_lock(&m->lock);
    any = m->n > 0;
    pthread_mutex_unlock(&m->lock);
    /* The device is read outside the lock: other check-ins go on meanwhile. */
    if (any && (r = otasrv_store_device_view(req->srv->store, id, &dev, err)) < 0)
        return r;
    pthread_mutex_lock(&m->lock);
    if (!any)
        goto out;
    /* Newest rollout first: a newer rollout supersedes an older one. */
    for (size_t i = m->n; i-- > 0 && !offer;) {
        struct ro *ro = &m->v[i];
        struct otasrv_rollout_device *d = find_dev(ro, id);
        struct otasrv_rollout_decision dec;
        struct otasrv_device_info info;
        struct otasrv_info_room room;
        char uid[160];
        int64_t now = otasrv_now_ms();

        if (!d || ro->r->state == OTASRV_ROLLOUT_DRAFT || ro->r->state == OTASRV_ROLLOUT_APPROVED)
            continue;
        otasrv_rdev_info(dev, ro->kind, &room, &info);
        changed = tick(m, ro, now);
        /* A device ordered back that already runs the rollback order's version (it never
         * installed the release, or went back on its own): the agent has nothing to install and
         * reports nothing ("up to date"), so its check-in is the report (docs/protocol.md). */
        if (d->state == OTASRV_RDEV_ROLLBACK_ORDERED && ro->prev_version[0] && info.version &&
            strcmp(info.version, ro->prev_version) == 0 &&
            (r = otasrv_rollout_on_report(ro->r, d, 1, OTASRV_REPORT_SUCCESS, now, err)) < 0)
            goto out; /* not reached: the device's rollback was ordered */
        otasrv_rollout_checkin(ro->r, &info, d, now, &dec);
        if (dec.offer != OTASRV_OFFER_NONE) {
            snprintf(uid, sizeof(uid), "%s-%s%s", ro->r->def.id, id,
                     dec.offer == OTASRV_OFFER_ROLLBACK ? "-rollback" : "");
            if (dec.offer == OTASRV_OFFER_ACTIVATE || dec.offer == OTASRV_OFFER_ABANDON) {
                offer = standby_answer(dec.offer, uid);
            } else {
                offer = offer_json(req, ro->r->def.id, dec.release_id, uid);
                if (dec.offer == OTASRV_OFFER_RELEASE)
                    add_activation(ro->r, offer);
            }
        }
        changed |= tick(m, ro, now);
        /* The engine changes the status only with a row (dirty) or in a tick:
         * a check-in that changed neither has nothing to write. */
        if ((changed || d->dirty) && (r = save(m, ro, 0, err)) < 0) {
            json_decref(offer);
            offer = NULL;
            goto out;
        }
        told = 1;
        if (otasrv_events_wanted(req->srv->events, ro->r->def.id)) /* else not even packed */
            otasrv_events_publish(
                req->srv->events, ro->r->def.id, "checkin",
                json_pack("{s:s, s:s, s:s, s:s, s:s?}", "device", id, "rollout", ro->r->def.id,
                          "offer", otasrv_offer_names[dec.offer], "why", otasrv_why_names[dec.why],
                          "update_id",
                          offer ? json_string_value(json_object_get(offer, "update_id")) : NULL));
    }
out:
    pthread_mutex_unlock(&m->lock);
    json_decref(dev);
    if (r < 0)
        return r;
    if (!told && otasrv_events_wanted(req->srv->events, NULL))
        otasrv_events_publish(req->srv->events, NULL, "checkin",
                              json_pack("{s:s, s:n}", "device", id, "rollout"));
    *ret = offer;
    return any;
}

int otasrv_rollouts_report(struct otasrv_srv *srv, const char *id, const char *update_id,
                           const char *rollout_id, const char *state, const char *status,
                           struct ota_err *err)
{
    struct otasrv_rollouts *m = srv->rollouts;
    struct otasrv_rollout_device *d;
    struct ro *ro;
    char uid[160], uid_rb[170];
    int rep, rollback, r = 0;
    int64_t now = otasrv_now_ms();

    otasrv_events_publish(srv->events, rollout_id && rollout_id[0] ? rollout_id : NULL, "report",
                          json_pack("{s:s, s:s, s:s, s:s, s:s?}", "device", id, "update_id",
                                    update_id, "state", state, "status", status, "rollout",
                                    rollout_id && rollout_id[0] ? rollout_id : NULL));
    if (!rollout_id || !rollout_id[0])
        return 0;
    rep = otasrv_rollout_name_index(otasrv_report_names, OTASRV_REPORT_MAX, status);
    if (rep < 0)
        return 0;
    pthread_mutex_lock(&m->lock);
    ro = find_ro(m, rollout_id);
    d = ro ? find_dev(ro, id) : NULL;
    if (!d)
        goto out;
    snprintf(uid, sizeof(uid), "%s-%s", rollout_id, id);
    snprintf(uid_rb, sizeof(uid_rb), "%s-%s-rollback", rollout_id, id);
    if (strcmp(update_id, uid) == 0)
        rollback = 0;
    else if (strcmp(update_id, uid_rb) == 0)
        rollback = 1;
    else
        goto out;
    tick(m, ro, now);
    /* A report the engine refuses (never offered) is stored all the same. */
    if (!rollback && rep == OTASRV_REPORT_IN_PROGRESS && state && strcmp(state, "STANDBY") == 0)
        ota_ignore(otasrv_rollout_on_standby(ro->r, d, now, NULL)); /* blue_green: installed */
    else
        ota_ignore(
            otasrv_rollout_on_report(ro->r, d, rollback, (enum otasrv_report)rep, now, NULL));
    tick(m, ro, now);
    emit_metrics(m, ro);
    r = save(m, ro, 0, err);
out:
    pthread_mutex_unlock(&m->lock);
    return r;
}

int otasrv_rollouts_state(struct otasrv_srv *srv, const char *rollout_id)
{
    struct otasrv_rollouts *m = srv->rollouts;
    struct ro *ro;
    int st;

    pthread_mutex_lock(&m->lock);
    ro = find_ro(m, rollout_id);
    st = ro ? (int)ro->r->state : -ENOENT;
    pthread_mutex_unlock(&m->lock);
    return st;
}

/* ---- admin ---- */

static json_t *rollout_json(const struct ro *ro, int with_metrics)
{
    json_t *def = NULL, *st = NULL, *o;

    if (otasrv_rollout_to_json(&ro->r->def, &def) < 0 ||
        otasrv_rollout_status_to_json(ro->r, &st) < 0) {
        json_decref(def);
        return NULL;
    }
    o = json_pack("{s:s, s:o, s:o, s:i}", "id", ro->r->def.id, "definition", def, "status", st,
                  "devices", (int)ro->n);
    if (o && with_metrics)
        json_object_set_new(o, "metrics", metrics_json(ro));
    return o;
}

static enum otasrv_result reply_err(struct otasrv_req *req, int r, const struct ota_err *err)
{
    return otasrv_reply_store_error(req, r, err);
}

static int release_ok(struct otasrv_srv *srv, const char *rid)
{
    struct otasrv_release *rel = NULL;
    int ok = otasrv_store_release_get(srv->store, rid, &rel, NULL) == 0;

    otasrv_release_free(rel);
    return ok;
}

static enum otasrv_result create(struct otasrv_req *req)
{
    struct otasrv_rollouts *m = req->srv->rollouts;
    struct otasrv_rollout_def def = {0};
    struct otasrv_rollout_device *devs = NULL;
    struct otasrv_rollout *r = NULL;
    struct ota_err err = {0};
    struct ro *ro, *nv;
    enum otasrv_result ret;
    json_t *o = NULL;
    char kind[16];
    size_t n = 0;
    int e;

    if (otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (otasrv_rollout_from_json(o, &def, &err) < 0) {
        json_decref(o);
        return otasrv_reply_error(req, 400, "%s", err.reason);
    }
    json_decref(o);
    pthread_mutex_lock(&m->lock);
    if (!def.id[0]) {
        char hex[9];
        do {
            if (otasrv_random_hex(hex, 4) < 0) {
                ret = otasrv_reply_error(req, 500, "cannot make an id");
                goto out;
            }
            snprintf(def.id, sizeof(def.id), "r%s", hex);
        } while (find_ro(m, def.id));
    }
    if (find_ro(m, def.id)) {
        ret = otasrv_reply_error(req, 409, "rollout %s exists", def.id);
        goto out;
    }
    if (!release_ok(req->srv, def.release_id)) {
        ret = otasrv_reply_error(req, 400, "field release_id: no release %s", def.release_id);
        goto out;
    }
    if (def.previous_release_id[0] && !release_ok(req->srv, def.previous_release_id)) {
        ret = otasrv_reply_error(req, 400, "field previous_release_id: no release %s",
                                 def.previous_release_id);
        goto out;
    }
    if (def.previous_release_id[0] &&
        otasrv_rollback_target_check(req->srv, def.release_id, def.previous_release_id, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "field previous_release_id: %s", err.reason);
        goto out;
    }
    otasrv_release_kind(req->srv, def.release_id, kind, sizeof(kind), NULL);
    if ((e = otasrv_rollout_table(req->srv, &def, kind, &devs, &n, &err)) < 0) {
        ret = reply_err(req, e, &err);
        goto out;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        nv = realloc(m->v, cap * sizeof(*nv));
        if (!nv) {
            ret = otasrv_reply_error(req, 500, "out of memory");
            goto out;
        }
        m->v = nv;
        m->cap = cap;
    }
    if ((e = otasrv_rollout_new(&def, otasrv_now_ms(), &r, &err)) < 0) {
        ret = otasrv_reply_error(req, e == -EINVAL ? 400 : 500, "%s", err.reason);
        goto out;
    }
    otasrv_rollout_recount(r, devs, n);
    ro = &m->v[m->n];
    ro->r = r;
    ro->devs = devs;
    ro->n = n;
    ota_strlcpy(ro->kind, kind, sizeof(ro->kind));
    ro_prev_version(req->srv, ro);
    if ((e = save(m, ro, 1, &err)) < 0) {
        ret = reply_err(req, e, &err);
        goto out;
    }
    m->n++;
    r = NULL;
    devs = NULL;
    emit_state(m, ro);
    ret = otasrv_reply_json(req, 201, rollout_json(ro, 1));
out:
    pthread_mutex_unlock(&m->lock);
    otasrv_rollout_free(r);
    free(devs);
    otasrv_rollout_def_clear(&def);
    return ret;
}

static enum otasrv_result act(struct otasrv_req *req, struct ro *ro, const char *action)
{
    struct otasrv_rollouts *m = req->srv->rollouts;
    struct ota_err err = {0};
    enum otasrv_rollout_state before = ro->r->state;
    int op = otasrv_rollout_name_index(otasrv_op_names, OTASRV_OP_MAX, action);
    int e, replace = 0;

    if (op < 0)
        return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    if (req->body_len) {
        json_t *o = NULL;
        enum otasrv_result ret;
        if (otasrv_body_object(req, &o, &ret) < 0)
            return ret;
        e = json_object_size(o);
        json_decref(o);
        if (e)
            return otasrv_reply_error(req, 400, "%s takes no fields", action);
    }
    if (op == OTASRV_OP_START && ro->r->state == OTASRV_ROLLOUT_APPROVED) {
        /* The devices registered now are the rollout's targets. */
        struct otasrv_rollout_device *devs = NULL;
        size_t n = 0;
        if ((e = otasrv_rollout_table(req->srv, &ro->r->def, ro->kind, &devs, &n, &err)) < 0)
            return reply_err(req, e, &err);
        free(ro->devs);
        ro->devs = devs;
        ro->n = n;
        replace = 1;
    }
    e = otasrv_rollout_act(ro->r, (enum otasrv_op)op, ro->devs, ro->n, otasrv_now_ms(), &err);
    if (e == -EINVAL)
        return otasrv_reply_error(req, 409, "%s", err.reason);
    if (e < 0 && e != -EALREADY)
        return otasrv_reply_error(req, 500, "%s", err.reason);
    if (e == 0 || replace) {
        if ((e = save(m, ro, replace, &err)) < 0)
            return reply_err(req, e, &err);
    }
    if (ro->r->state != before)
        emit_state(m, ro);
    return otasrv_reply_json(req, 200, rollout_json(ro, 1));
}

static enum otasrv_result devices(struct otasrv_req *req, struct ro *ro)
{
    struct ota_err err = {0};
    const char *sname = otasrv_query(req, "state");
    int state = -1;
    int64_t limit, offset, total = 0;
    json_t *arr = json_array();

    if (otasrv_query_int(req, "limit", 100, 1, 10000, &limit, &err) < 0 ||
        otasrv_query_int(req, "offset", 0, 0, INT64_MAX, &offset, &err) < 0) {
        json_decref(arr);
        return otasrv_reply_error(req, 400, "%s", err.reason);
    }
    if (sname &&
        (state = otasrv_rollout_name_index(otasrv_rdev_state_names, OTASRV_RDEV_MAX, sname)) < 0) {
        json_decref(arr);
        return otasrv_reply_error(req, 400, "query parameter state: a device state");
    }
    for (size_t i = 0; i < ro->n; i++) {
        const struct otasrv_rollout_device *d = &ro->devs[i];
        if (state >= 0 && (int)d->state != state)
            continue;
        if (total >= offset && total < offset + limit)
            json_array_append_new(
                arr,
                json_pack("{s:s, s:i, s:i, s:s, s:I, s:I, s:I, s:I, s:I}", "device_id",
                          d->device_id, "bucket", (int)d->bucket, "stage", d->stage, "state",
                          otasrv_rdev_state_names[d->state], "offered_ms",
                          (json_int_t)d->offered_ms, "started_ms", (json_int_t)d->started_ms,
                          "last_ms", (json_int_t)d->last_ms, "finished_ms",
                          (json_int_t)d->finished_ms, "rollback_ms", (json_int_t)d->rollback_ms));
        total++;
    }
    return otasrv_reply_json(req, 200,
                             json_pack("{s:o, s:I, s:I, s:I}", "devices", arr, "total",
                                       (json_int_t)total, "limit", (json_int_t)limit, "offset",
                                       (json_int_t)offset));
}

void otasrv_rollouts_count(struct otasrv_srv *srv, int counts[OTASRV_ROLLOUT_STATE_MAX],
                           int *ret_total)
{
    struct otasrv_rollouts *m = srv->rollouts;

    memset(counts, 0, sizeof(int) * OTASRV_ROLLOUT_STATE_MAX);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++)
        counts[m->v[i].r->state]++;
    *ret_total = (int)m->n;
    pthread_mutex_unlock(&m->lock);
}

json_t *otasrv_rollouts_recent(struct otasrv_srv *srv, int64_t since_ms)
{
    struct otasrv_rollouts *m = srv->rollouts;
    json_t *arr = json_array();
    size_t n;

    pthread_mutex_lock(&m->lock);
    n = m->n; /* rollouts are only ever added */
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; arr && i < n; i++) {
        struct ro *ro;
        json_t *o = NULL;
        pthread_mutex_lock(&m->lock); /* one at a time: device calls go in between */
        ro = &m->v[i];
        if (!terminal(ro->r->state) || ro->r->finished_ms >= since_ms)
            o = rollout_json(ro, 1);
        pthread_mutex_unlock(&m->lock);
        if (o && json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

enum otasrv_result otasrv_api_rollouts_handle(struct otasrv_req *req)
{
    struct otasrv_rollouts *m = req->srv->rollouts;
    const char *const *s = req->seg;
    int n = req->nseg, get = strcmp(req->method, "GET") == 0,
        post = strcmp(req->method, "POST") == 0;
    enum otasrv_result ret;
    struct ro *ro;

    if (strcmp(s[2], "events") == 0) {
        if (n != 3)
            return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
        if (!get)
            return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
        return otasrv_events_serve(req->srv->events, req, NULL);
    }
    if (strcmp(s[2], "stats") == 0) {
        if (n != 3)
            return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
        if (!get)
            return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
        return otasrv_api_stats(req);
    }
    if (n == 3) {
        if (post)
            return create(req);
        if (get) {
            json_t *arr = json_array();
            pthread_mutex_lock(&m->lock);
            for (size_t i = 0; i < m->n; i++)
                json_array_append_new(arr, rollout_json(&m->v[i], 0));
            pthread_mutex_unlock(&m->lock);
            return otasrv_reply_json(
                req, 200,
                json_pack("{s:o, s:i}", "rollouts", arr, "total", (int)json_array_size(arr)));
        }
        return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
    }
    if (n > 5)
        return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    if (n == 5 && strcmp(s[4], "events") == 0 && get) {
        pthread_mutex_lock(&m->lock);
        ro = find_ro(m, s[3]);
        pthread_mutex_unlock(&m->lock);
        if (!ro)
            return otasrv_reply_error(req, 404, "no rollout %s", s[3]);
        return otasrv_events_serve(req->srv->events, req, s[3]);
    }
    pthread_mutex_lock(&m->lock);
    ro = find_ro(m, s[3]);
    if (!ro)
        ret = otasrv_reply_error(req, 404, "no rollout %s", s[3]);
    else if (n == 4 && get)
        ret = otasrv_reply_json(req, 200, rollout_json(ro, 1));
    else if (n == 5 && get && strcmp(s[4], "metrics") == 0)
        ret = otasrv_reply_json(req, 200, metrics_json(ro));
    else if (n == 5 && get && strcmp(s[4], "devices") == 0)
        ret = devices(req, ro);
    else if (n == 5 && post)
        ret = act(req, ro, s[4]);
    else if (n == 4 || (n == 5 && (strcmp(s[4], "metrics") == 0 || strcmp(s[4], "devices") == 0)))
        ret = otasrv_reply_error(req, 405, "method %s not allowed on %s", req->method, req->path);
    else
        ret = otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    pthread_mutex_unlock(&m->lock);
    return ret;
}
