/* The fleet calibration (docs/fleet.md "Calibration"): the same fleet file
 * and seed run twice, once with in-process devices (otasim_fleet_run) and
 * once with every device a real `ota-agent` process on a simulated device of
 * the native tier (device.c: its tree, `ota-sim svc`, the agent's config),
 * against a server of its own on the same virtual clock; then every device's
 * final outcome is compared.
 *
 * The native run takes its devices from the in-process run's record (the
 * same ids, types, groups and bad-release draws: fleet_bad_for), the same
 * releases (in both runs the payloads carry the video-app build of their
 * version; a bad release is video-app-v2-health-500-quirk, whose /health
 * fails on a device that has the quirk file ROOT/etc/video-app-quirk-VERSION,
 * which this file writes on the devices the draw picked), the same rollout,
 * and the same poll schedule: a device's first pass at the same virtual time,
 * then every poll_interval after its pass. The server's clock is advanced to
 * a batch's first wake; the passes of the devices due in [T, T + batch) run
 * in parallel (-j), the clock held at T; a batch never spans a server
 * deadline nor the rollout's start. The agent's own waits (health window,
 * backoff) take real time. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet_impl.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/device.h"
#include "otasim/fast.h"
#include "otasim/proc.h"
#include "otasim/scenario.h"
#include "otasim/sim.h"

#define SEC 1000LL

struct calib_dev {
    int seen;
    char type[64], group[64];
    uint8_t bad[OTASIM_FLEET_MAX_RELEASES]; /* fleet_bad_for of each release */
    uint8_t offline, late;                  /* the device's draws (fleet.c devices()) */
    char version[32];                       /* running ("": down) */
    char state[24];                         /* the agent's */
    int rolled_back;
    char report[16]; /* the last final report on the rollout's release: success, failure, none */
};

struct otasim_fleet_calib {
    char app_dir[PATH_MAX];
    struct calib_dev *dev;
    uint32_t n;
    char rollout[16]; /* the rollout's end state */
};

struct otasim_fleet_calib *otasim_fleet_calib_new(uint32_t n, const char *app_dir)
{
    struct otasim_fleet_calib *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->dev = calloc(n ? n : 1, sizeof(*c->dev));
    if (!c->dev) {
        free(c);
        return NULL;
    }
    c->n = n;
    ota_strlcpy(c->app_dir, app_dir, sizeof(c->app_dir));
    return c;
}

void otasim_fleet_calib_free(struct otasim_fleet_calib *c)
{
    if (!c)
        return;
    free(c->dev);
    free(c);
}

/* The last final report on `version` among the device's reports. */
static void last_report(json_t *reports, const char *version, char *buf, size_t cap)
{
    json_t *rep;
    size_t i;

    ota_strlcpy(buf, "none", cap);
    json_array_foreach(reports, i, rep)
    {
        const char *v = json_string_value(json_object_get(rep, "version"));
        const char *st = json_string_value(json_object_get(rep, "status"));
        if (v && st && strcmp(v, version) == 0)
            ota_strlcpy(buf, st, cap);
    }
}

void fleet_calib_record(struct fleet *fl, const struct fdev *d, json_t *reports)
{
    struct otasim_fleet_calib *c = fl->o->calib;
    struct calib_dev *cd;

    if (d->idx >= c->n)
        return;
    cd = &c->dev[d->idx];
    cd->seen = 1;
    ota_strlcpy(cd->type, fl->def->types[d->type].value, sizeof(cd->type));
    ota_strlcpy(cd->group, fl->def->groups[d->group].value, sizeof(cd->group));
    for (size_t i = 0; i < fl->def->n_rel; i++)
        cd->bad[i] = (uint8_t)fleet_bad_for(fl, d, &fl->def->rel[i]);
    cd->offline = d->offline;
    cd->late = d->late;
    ota_strlcpy(cd->version, d->running ? d->running : "", sizeof(cd->version));
    ota_strlcpy(cd->state, ota_state_names[d->j ? d->j->state : OTA_STATE_IDLE], sizeof(cd->state));
    cd->rolled_back = d->rollbacks > 0;
    last_report(reports, fl->def->rollout_release, cd->report, sizeof(cd->report));
}

int fleet_calib_app_bin(const struct fleet *fl, const struct otasim_fleet_release *rel, char *buf,
                        size_t cap, struct ota_err *err)
{
    const struct otasim_fleet_calib *c = fl->o->calib;
    char major = rel->version[0];

    buf[0] = 0;
    if (!c)
        return 0;
    if (rel->version[1] != '.' || major < '1' || major > '3' ||
        (rel->bad != OTASIM_BAD_NONE && major != '2'))
        return ota_err_set(err, EINVAL,
                           "calibration: release %s has no video-app build (versions 1.x, 2.x "
                           "and 3.x; a bad one 2.x)",
                           rel->version);
    if (major == '1')
        snprintf(buf, cap, "%s/video-app", c->app_dir);
    else
        snprintf(buf, cap, "%s/video-app-v%c%s", c->app_dir, major,
                 rel->bad != OTASIM_BAD_NONE ? "-health-500-quirk" : "");
    if (access(buf, X_OK) != 0)
        return ota_err_set(err, ENOENT, "calibration: %s not built", buf);
    return 0;
}

/* ---- the native run ------------------------------------------------------ */

struct ndev {
    uint32_t idx;
    struct otasim_device dev;
    struct otasim_trial tr;
    struct otasim_scenario *sc;
    struct otasim_built built;
    int64_t wake;
    int passes, created;
    int64_t took_ms; /* the last pass, real */
    int failed;
    struct ota_err err;
};

struct native {
    struct fleet fl;
    struct otasim_fleet_stats st;
    struct otasim_tools t;
    struct otasim_server srv;
    struct otasim_fleet_opts o;
    const struct otasim_fleet_calib *ref;
    struct ndev *dev;
    uint32_t n;
    char pub[PATH_MAX];
    char work[PATH_MAX + 16]; /* WORK/native: its run dir is not the in-process run's */
    /* a batch */
    struct ndev **batch;
    uint32_t n_batch, next;
    pthread_mutex_t lock;
};

/* What the native tier cannot reproduce of a fleet file (0: nothing). */
static int supported(const struct otasim_fleet_def *def, struct ota_err *err)
{
    if (def->n_zones || def->n_attrs || def->bandwidth || def->power_cut > 0 ||
        def->agent_crash > 0 || def->server_faults_json || def->rollout_activate_at_ms >= 0 ||
        def->rootfs)
        return ota_err_set(err, ENOTSUP,
                           "calibration: %s uses what the native run does not reproduce "
                           "(timezones, attributes, bandwidth, faults, blue_green activate_at, "
                           "a rootfs fleet)",
                           def->path);
    for (size_t i = 0; i < def->n_rel; i++)
        if (def->rel[i].bad == OTASIM_BAD_CRASH || def->rel[i].bad == OTASIM_BAD_BOOT ||
            (def->rel[i].bad == OTASIM_BAD_HEALTH && def->rel[i].fail_after_ms > 0))
            return ota_err_set(err, ENOTSUP,
                               "calibration: release %s: only bad: {mode: health, fail_after: 0}",
                               def->rel[i].version);
    return 0;
}

static int put(const char *path, const char *text, struct ota_err *err)
{
    return ota_fs_write_atomic(path, text, strlen(text), 0644, err);
}

static int device_new(struct native *N, struct ndev *nd, uint32_t idx, struct ota_err *err)
{
    const struct otasim_fleet_def *def = N->fl.def;
    const struct calib_dev *cd = &N->ref->dev[idx];
    const char *fac = NULL;
    char p[PATH_MAX + 64];
    int r;

    for (size_t i = 0; i < def->n_rel; i++)
        if (def->rel[i].factory)
            fac = def->rel[i].version;
    nd->idx = idx;
    nd->sc = calloc(1, sizeof(*nd->sc));
    if (!nd->sc || !fac)
        return ota_err_set(err, ENOMEM, "out of memory");
    nd->sc->profile = OTASIM_PROFILE_APP;
    ota_strlcpy(nd->sc->source, "fleet", sizeof(nd->sc->source));
    ota_strlcpy(nd->sc->device_type, cd->type, sizeof(nd->sc->device_type));
    nd->sc->health_window_ms = (int)def->health_window_ms;
    nd->sc->health_interval_ms = (int)def->health_interval_ms;
    nd->sc->n_rel = 1;
    ota_strlcpy(nd->sc->rel[0].version, fac, sizeof(nd->sc->rel[0].version));
    ota_strlcpy(nd->sc->rel[0].variant, "video-app", sizeof(nd->sc->rel[0].variant));
    ota_strlcpy(nd->sc->rel[0].format, "tar.gz", sizeof(nd->sc->rel[0].format));
    nd->sc->rel[0].factory = 1;
    /* the factory tree: the factory release's package dir (fleet_setup.c) */
    snprintf(nd->built.ref_tree, sizeof(nd->built.ref_tree), "%s/releases/%s/pkg", N->fl.dir, fac);
    nd->tr.sc = nd->sc;
    nd->tr.srv = &N->srv;
    nd->tr.built = &nd->built;
    nd->tr.seed = N->fl.seed;
    snprintf(nd->tr.device_id, sizeof(nd->tr.device_id), "d%06u", idx);
    ota_strlcpy(nd->tr.group, cd->group, sizeof(nd->tr.group));
    ota_strlcpy(nd->tr.pub, N->pub, sizeof(nd->tr.pub));
    snprintf(nd->tr.dir, sizeof(nd->tr.dir), "%s/native/d%06u", N->fl.dir, idx);
    if ((r = ota_fs_mkdirs(nd->tr.dir, err)) < 0 ||
        (r = otasim_device_create(&nd->dev, &N->t, &nd->tr, err)) < 0)
        return ota_err_prefix(err, r, "device d%06u", idx);
    nd->created = 1;
    /* the quirk a bad release trips on, where its draw says so */
    for (size_t i = 0; i < def->n_rel; i++) {
        if (!cd->bad[i])
            continue;
        snprintf(p, sizeof(p), "%s/etc/video-app-quirk-%s", nd->dev.root, def->rel[i].version);
        if ((r = put(p, "the bad release's draw (fleet calibration)\n", err)) < 0)
            return r;
    }
    if ((r = otasim_device_boot(&nd->dev, err)) < 0)
        return ota_err_prefix(err, r, "booting d%06u", idx);
    /* the same first wake as the in-process run (fleet.c devices(), its
     * default grain of a second) */
    nd->wake = (int64_t)(fleet_hash(N->fl.seed, idx, 5) % (uint64_t)def->poll_ms);
    nd->wake = (nd->wake + SEC - 1) / SEC * SEC;
    return 0;
}

static void *worker(void *arg)
{
    struct native *N = arg;

    for (;;) {
        struct ndev *nd;
        struct otasim_pass ps;
        int64_t t0;
        pthread_mutex_lock(&N->lock);
        nd = N->next < N->n_batch ? N->batch[N->next++] : NULL;
        pthread_mutex_unlock(&N->lock);
        if (!nd)
            return NULL;
        t0 = otasim_now_ms();
        memset(&ps, 0, sizeof(ps));
        if (otasim_device_pass(&nd->dev, ++nd->passes, NULL, &ps, &nd->err) < 0) {
            nd->failed = 1;
            continue;
        }
        if (ps.reboot_asked) { /* an app update asks for none; a reboot is a boot */
            otasim_device_kill(&nd->dev);
            if (otasim_device_boot(&nd->dev, &nd->err) < 0)
                nd->failed = 1;
        }
        nd->took_ms = otasim_now_ms() - t0;
    }
}

/* As fleet.c pass_ended: an offline device registered and is never heard
 * of again; a late one is silent until `late.after`; the others poll again
 * after the pass; each with the same jitter draw (the device's pass count). */
static void native_next_wake(struct native *N, struct ndev *nd)
{
    const struct otasim_fleet_def *def = N->fl.def;
    const struct calib_dev *cd = &N->ref->dev[nd->idx];
    int64_t ended = nd->wake + nd->took_ms, jitter = 0;

    if (cd->offline) {
        nd->wake = INT64_MAX;
        return;
    }
    if (def->jitter_ms > 0)
        jitter = (int64_t)(fleet_hash(N->fl.seed ^ 0x717, nd->idx, (uint64_t)nd->passes) %
                           (uint64_t)def->jitter_ms);
    if (cd->late && ended < def->late_ms)
        nd->wake = def->late_ms + jitter;
    else
        nd->wake = ended + def->poll_ms + jitter;
    nd->wake = (nd->wake + SEC - 1) / SEC * SEC;
}

/* Runs the batch's passes on `jobs` threads. */
static int run_batch(struct native *N, unsigned jobs, struct ota_err *err)
{
    pthread_t th[64];
    unsigned k = 0;

    N->next = 0;
    if (jobs > 64)
        jobs = 64;
    if (jobs > N->n_batch)
        jobs = N->n_batch;
    for (; k < jobs; k++)
        if (pthread_create(&th[k], NULL, worker, N) != 0)
            break;
    if (k == 0)
        worker(N);
    for (unsigned i = 0; i < k; i++)
        pthread_join(th[i], NULL);
    for (uint32_t i = 0; i < N->n_batch; i++) {
        struct ndev *nd = N->batch[i];
        if (nd->failed) {
            *err = nd->err;
            return ota_err_prefix(err, -(nd->err.code ? nd->err.code : EIO), "d%06u pass %d",
                                  nd->idx, nd->passes);
        }
        native_next_wake(N, nd);
    }
    return 0;
}

static int rollout_over(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0 ||
           strcmp(s, "rolled_back") == 0 || strcmp(s, "paused") == 0;
}

static int loop(struct native *N, unsigned jobs, int64_t batch_ms, FILE *progress,
                struct ota_err *err)
{
    struct fleet *fl = &N->fl;
    const struct otasim_fleet_def *def = fl->def;
    int64_t start_at = def->poll_ms + def->jitter_ms + SEC, end = def->duration_ms, settle = 0;
    int r;

    for (;;) {
        int64_t t = INT64_MAX, until;
        for (uint32_t i = 0; i < N->n; i++)
            if (N->dev[i].wake < t)
                t = N->dev[i].wake;
        if (!fl->rollout_started && start_at <= t) {
            if ((r = fleet_clock_advance(fl, start_at / SEC * SEC, err)) < 0)
                return r;
            fl->vnow = start_at;
            if ((r = fleet_rollout_start(fl, err)) < 0)
                return r;
            continue;
        }
        if (t > end)
            return 0;
        if (t / SEC * SEC > fl->srv_now && (r = fleet_clock_advance(fl, t / SEC * SEC, err)) < 0)
            return r;
        fl->vnow = t;
        until = t + batch_ms;
        if (fl->srv_next != INT64_MAX && fl->srv_next > t && fl->srv_next < until)
            until = fl->srv_next;
        if (!fl->rollout_started && start_at < until)
            until = start_at;
        if (until <= t)
            until = t + 1;
        N->n_batch = 0;
        for (uint32_t i = 0; i < N->n; i++)
            if (N->dev[i].wake < until)
                N->batch[N->n_batch++] = &N->dev[i];
        if ((r = run_batch(N, jobs, err)) < 0)
            return r;
        if (fl->rollout_started && (r = fleet_rollout_status(fl, NULL, err)) < 0)
            return r;
        if (progress)
            fprintf(progress, "native %s: t=%6.2fh rollout %-10s %u passes\n", def->name,
                    (double)t / 3600000.0, fl->rollout_started ? fl->rollout_state : "-",
                    N->n_batch);
        if (fl->rollout_started && rollout_over(fl->rollout_state) && !settle) {
            /* as fleet.c: one more poll for the devices to act on the end */
            settle =
                fl->vnow + def->poll_ms + def->jitter_ms + 2 * def->health_window_ms + def->off_ms;
            if (settle < end)
                end = settle;
        }
    }
}

static void native_outcome(struct native *N, struct ndev *nd, json_t *reports, struct calib_dev *cd)
{
    char *text = NULL;
    long status = 0;
    json_t *o = NULL;

    *cd = N->ref->dev[nd->idx]; /* id, type, group, draws */
    cd->version[0] = 0;
    ota_strlcpy(cd->state, "?", sizeof(cd->state));
    if (otasim_device_app_get(&nd->dev, "/version", &status, &text, NULL) == 0 && status == 200 &&
        ota_json_parse(text, strlen(text), &o, NULL) == 0)
        ota_ignore(ota_json_str(o, "version", cd->version, sizeof(cd->version), NULL));
    json_decref(o);
    o = NULL;
    free(text);
    text = NULL;
    if (otasim_device_status(&nd->dev, &text, NULL) == 0 &&
        ota_json_parse(text, strlen(text), &o, NULL) == 0)
        ota_ignore(ota_json_str(o, "state", cd->state, sizeof(cd->state), NULL));
    json_decref(o);
    free(text);
    cd->rolled_back = nd->tr.state_lines && strstr(nd->tr.state_lines, "\"ROLLING_BACK\"") != NULL;
    last_report(reports, N->fl.def->rollout_release, cd->report, sizeof(cd->report));
}

static int outcomes(struct native *N, struct otasim_fleet_calib *out, struct ota_err *err)
{
    json_t **reports = calloc(N->n ? N->n : 1, sizeof(*reports));
    int r;

    if (!reports)
        return ota_err_set(err, ENOMEM, "out of memory");
    N->fl.n_dev = N->n;
    if ((r = fleet_final_reports(&N->fl, reports, err)) == 0 &&
        (r = fleet_rollout_status(&N->fl, NULL, err)) == 0) {
        for (uint32_t i = 0; i < N->n; i++)
            native_outcome(N, &N->dev[i], reports[i], &out->dev[N->dev[i].idx]);
        ota_strlcpy(out->rollout, N->fl.rollout_state, sizeof(out->rollout));
    }
    for (uint32_t i = 0; i < N->n; i++)
        json_decref(reports[i]);
    free(reports);
    return r;
}

static void native_free(struct native *N)
{
    for (uint32_t i = 0; N->dev && i < N->n; i++) {
        if (N->dev[i].created)
            otasim_device_destroy(&N->dev[i].dev);
        free(N->dev[i].tr.state_lines);
        free(N->dev[i].sc);
    }
    free(N->dev);
    free(N->batch);
    fleet_net_free(N->fl.net);
    if (N->srv.pid > 0)
        otasim_server_stop(&N->srv);
    if (N->fl.dir[0] && !N->o.keep)
        ota_ignore(ota_fs_remove_tree(N->fl.dir, NULL));
    pthread_mutex_destroy(&N->lock);
}

static int native_run(struct native *N, const struct otasim_fleet_def *def, unsigned jobs,
                      int64_t batch_ms, struct otasim_fleet_calib *out, struct ota_err *err)
{
    struct fleet *fl = &N->fl;
    char priv[PATH_MAX], rogue[PATH_MAX];
    int r;

    fl->def = def;
    fl->o = &N->o;
    fl->st = &N->st;
    fl->seed = N->o.seed ? N->o.seed : def->seed;
    fl->srv_next = INT64_MAX;
    (void)otasim_baseline(); /* read once, before the threads */
    if ((r = otasim_tools_find(&N->t, NULL, N->o.work, err)) < 0 ||
        (r = otasim_keys(&N->t, priv, N->pub, rogue, sizeof(priv), err)) < 0 ||
        (r = fleet_setup(fl, &N->t, &N->srv, err)) < 0 ||
        (r = fleet_net_new(fl, 4, &fl->net, err)) < 0 ||
        (r = fleet_clock_advance(fl, 0, err)) < 0 || (r = fleet_rollout_create(fl, err)) < 0)
        return r;
    N->n = N->ref->n;
    N->dev = calloc(N->n ? N->n : 1, sizeof(*N->dev));
    N->batch = calloc(N->n ? N->n : 1, sizeof(*N->batch));
    if (!N->dev || !N->batch)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (uint32_t i = 0; i < N->n; i++)
        if ((r = device_new(N, &N->dev[i], i, err)) < 0)
            return r;
    if ((r = loop(N, jobs, batch_ms, N->o.progress, err)) < 0)
        return r;
    return outcomes(N, out, err);
}

/* ---- the comparison ---------------------------------------------------------- */

static int bad_draw(const struct calib_dev *x)
{
    int bad = 0;

    for (size_t k = 0; k < OTASIM_FLEET_MAX_RELEASES; k++)
        bad |= x->bad[k];
    return bad;
}

int otasim_fleet_calib_compare(const struct otasim_fleet_calib *a,
                               const struct otasim_fleet_calib *b, FILE *out)
{
    int diffs = 0;

    if (strcmp(a->rollout, b->rollout) != 0) {
        fprintf(out, "rollout: in-process %s, native %s\n", a->rollout, b->rollout);
        diffs++;
    }
    for (uint32_t i = 0; i < a->n && i < b->n; i++) {
        const struct calib_dev *x = &a->dev[i], *y = &b->dev[i];
        if (strcmp(x->version, y->version) == 0 && strcmp(x->state, y->state) == 0 &&
            x->rolled_back == y->rolled_back && strcmp(x->report, y->report) == 0)
            continue;
        diffs++;
        fprintf(out, "d%06u (%s, %s%s): in-process %s %s%s report %s | native %s %s%s report %s\n",
                i, x->type, x->group, bad_draw(x) ? ", bad draw" : "",
                x->version[0] ? x->version : "down", x->state, x->rolled_back ? " rolled-back" : "",
                x->report, y->version[0] ? y->version : "down", y->state,
                y->rolled_back ? " rolled-back" : "", y->report);
    }
    return diffs;
}

/* The per-device table, one line each (for the record and the test); the
 * draw column: off(line), late, bad (the bad release's draw) or -. */
void otasim_fleet_calib_print(const struct otasim_fleet_calib *c, FILE *out)
{
    for (uint32_t i = 0; i < c->n; i++) {
        const struct calib_dev *x = &c->dev[i];
        const char *draw = x->offline ? "off" : x->late ? "late" : bad_draw(x) ? "bad" : "-";
        fprintf(out, "  d%06u %-8s %-6s %-4s %-6s %-5s %-11s %s\n", i, x->type, x->group, draw,
                x->version[0] ? x->version : "down", x->state, x->rolled_back ? "rolled-back" : "-",
                x->report);
    }
}

int otasim_fleet_calibrate(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                           unsigned jobs, int64_t batch_ms, struct otasim_fleet_calib_result *ret,
                           struct ota_err *err)
{
    struct otasim_fleet_opts oi = *o;
    struct otasim_tools t;
    struct native *N = NULL;
    uint32_t n = o->count ? o->count : def->count;
    int64_t t0;
    int r;

    memset(ret, 0, sizeof(*ret));
    if ((r = supported(def, err)) < 0)
        return r;
    if (o->shards > 1)
        return ota_err_set(err, ENOTSUP, "calibration: no shards");
    if ((r = otasim_tools_find(&t, NULL, o->work, err)) < 0)
        return r;
    ret->inproc = otasim_fleet_calib_new(n, t.app_dir);
    ret->native = otasim_fleet_calib_new(n, t.app_dir);
    N = calloc(1, sizeof(*N));
    if (!ret->inproc || !ret->native || !N) {
        free(N);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    /* 1: in-process */
    oi.calib = ret->inproc;
    t0 = otasim_now_ms();
    if ((r = otasim_fleet_run(def, &oi, &ret->inproc_stats, err)) < 0) {
        free(N);
        return ota_err_prefix(err, r, "the in-process run");
    }
    ret->inproc_wall_s = (double)(otasim_now_ms() - t0) / 1000.0;
    ota_strlcpy(ret->inproc->rollout, ret->inproc_stats.rollout_state,
                sizeof(ret->inproc->rollout));
    /* 2: native, the devices of the in-process run */
    N->o = *o;
    N->o.calib = ret->native;
    snprintf(N->work, sizeof(N->work), "%s/native", t.work);
    N->o.work = N->work;
    N->ref = ret->inproc;
    pthread_mutex_init(&N->lock, NULL);
    t0 = otasim_now_ms();
    r = native_run(N, def, jobs ? jobs : 4, batch_ms > 0 ? batch_ms : def->poll_ms / 12,
                   ret->native, err);
    ret->native_wall_s = (double)(otasim_now_ms() - t0) / 1000.0;
    native_free(N);
    free(N);
    if (r < 0)
        return ota_err_prefix(err, r, "the native run");
    return 0;
}

void otasim_fleet_calib_result_free(struct otasim_fleet_calib_result *r)
{
    otasim_fleet_calib_free(r->inproc);
    otasim_fleet_calib_free(r->native);
    r->inproc = r->native = NULL;
}
