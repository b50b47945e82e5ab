/* ota-sim fleet-merge (otasim_fleet_merge, otasim/fleet.h): the shards of a
 * fleet run (`--shard I/N`, each with its own run database) made one fleet
 * run again. What is merged how (docs/fleet.md "Merging shards"):
 *
 * - devices: the union of the shards' fleet_devices rows;
 * - the time series: the shards sample at the same virtual times (every
 *   poll_interval / 12 from 0), so the samples of one time are summed
 *   (states, versions, down, in pass); rollout and stage from the first;
 * - counts of devices and of work (requests, passes, bytes, power cuts, ...)
 *   summed; the server's own counters (faults applied) are the server's,
 *   the same in every shard: the largest; times (virtual, rollout, wall) the
 *   largest; seed 003's figures recomputed from the device rows;
 * - the verdict recomputed: the fleet-wide expectations (the rollout's end
 *   state, bad_installed_max_percent, bricked_max, inconsistent_max,
 *   stuck_max, on_target_min_percent) on the summed counts against the fleet
 *   file (a shard can pass bricked_max: 1 with one bricked device while the
 *   fleet has two); the per-device ones (committed_within,
 *   switch_in_window) and the faults' rates as the shards found them (one
 *   device failing fails its shard, and so the fleet). Without the fleet
 *   file (another machine's path), the shards' verdicts combined: ok only
 *   if every shard passed. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/json.h"
#include "otasim/fleet.h"
#include "otasim/rundb.h"

struct shard {
    struct otasim_rundb *db;
    struct otasim_rundb_fleet_run run; /* its last fleet run */
    json_t *stats;                     /* run.stats parsed */
};

struct merged {
    json_t *stats;
    char state[16];
    char failed[4096];
    int ok;
    double *down, *bytes, *rec;
    size_t n_down, n_bytes, n_rec, cap;
};

static int shard_open(const char *path, struct shard *s, struct ota_err *err)
{
    int r;

    if (access(path, R_OK) != 0)
        return ota_err_set(err, errno, "%s: cannot read it", path);
    if ((r = otasim_rundb_open(path, &s->db, err)) < 0 ||
        (r = otasim_rundb_fleet_last(s->db, &s->run, err)) < 0)
        return ota_err_prefix(err, r, "%s", path);
    s->stats = json_loads(s->run.stats, 0, NULL);
    if (!s->stats)
        return ota_err_set(err, EBADMSG, "%s: fleet run %lld: its stats are not JSON", path,
                           (long long)s->run.id);
    return 0;
}

static void fail_line(struct merged *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail_line(struct merged *m, const char *fmt, ...)
{
    va_list ap;

    m->ok = 0;
    va_start(ap, fmt);
    otasim_vline(m->failed, sizeof(m->failed), fmt, ap);
    va_end(ap);
}

static int64_t geti(json_t *o, const char *k)
{
    return (int64_t)json_number_value(json_object_get(o, k));
}

/* The stats of the merged run from the shards' (counts, maxima). */
static void merge_stats(struct merged *m, struct shard *s, size_t n)
{
    static const char *const sums[] = {
        "devices",      "online",     "on_target",        "bad_installed", "rolled_back", "bricked",
        "inconsistent", "stuck",      "never_checked_in", "requests",      "passes",      "steps",
        "bytes_down",   "power_cuts", "agent_crashes",    "cut_chances",   NULL};
    static const char *const maxima[] = {"virtual_ms",   "rollout_ms",       "srv_faults_applied",
                                         "peak_rss_kib", "srv_peak_rss_kib", NULL};
    static const char *const rmax[] = {"wall_s", NULL};
    static const char *const rsum[] = {"cpu_user_s", "cpu_sys_s", NULL};
    size_t last = 0;

    m->stats = json_deep_copy(s[0].stats);
    for (size_t k = 0; sums[k]; k++) {
        int64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v += geti(s[i].stats, sums[k]);
        json_object_set_new(m->stats, sums[k], json_integer(v));
    }
    for (size_t k = 0; maxima[k]; k++) {
        int64_t v = 0;
        for (size_t i = 0; i < n; i++)
            if (geti(s[i].stats, maxima[k]) > v)
                v = geti(s[i].stats, maxima[k]);
        json_object_set_new(m->stats, maxima[k], json_integer(v));
    }
    for (size_t k = 0; rmax[k]; k++) {
        double v = 0;
        for (size_t i = 0; i < n; i++)
            v = fmax(v, json_number_value(json_object_get(s[i].stats, rmax[k])));
        json_object_set_new(m->stats, rmax[k], json_real(v));
    }
    for (size_t k = 0; rsum[k]; k++) {
        double v = 0;
        for (size_t i = 0; i < n; i++)
            v += json_number_value(json_object_get(s[i].stats, rsum[k]));
        json_object_set_new(m->stats, rsum[k], json_real(v));
    }
    /* the rollout as the shard that looked last saw it */
    for (size_t i = 1; i < n; i++)
        if (geti(s[i].stats, "virtual_ms") >= geti(s[last].stats, "virtual_ms"))
            last = i;
    ota_strlcpy(m->state, s[last].run.rollout_state, sizeof(m->state));
    json_object_set(m->stats, "rollout_state", json_object_get(s[last].stats, "rollout_state"));
    json_object_set(m->stats, "rollout_reason", json_object_get(s[last].stats, "rollout_reason"));
    json_object_set(m->stats, "stage", json_object_get(s[last].stats, "stage"));
    json_object_set_new(m->stats, "shards", json_integer((json_int_t)n));
    json_object_del(m->stats, "bytes_per_idle_device");
}

struct copy {
    struct merged *m;
    struct otasim_rundb *out;
    int64_t id;
    struct ota_err *err;
};

static int copy_device(void *ctx, const struct otasim_rundb_fleet_device *d)
{
    struct copy *c = ctx;
    struct merged *m = c->m;

    if (m->n_bytes == m->cap) { /* every array has room for every device row */
        size_t cap = m->cap ? m->cap * 2 : 1024;
        double *a = realloc(m->down, cap * sizeof(double));
        double *b = a ? realloc(m->bytes, cap * sizeof(double)) : NULL;
        double *r = b ? realloc(m->rec, cap * sizeof(double)) : NULL;
        if (a)
            m->down = a;
        if (b)
            m->bytes = b;
        if (!r)
            return ota_err_set(c->err, ENOMEM, "out of memory");
        m->rec = r;
        m->cap = cap;
    }
    if (strcmp(d->outcome, "offline") != 0) { /* the figures count online devices */
        m->bytes[m->n_bytes++] = (double)d->bytes;
        if (d->updates > 0 && d->downtime_ms >= 0)
            m->down[m->n_down++] = (double)d->downtime_ms / (double)d->updates;
        if (d->recovery_ms >= 0)
            m->rec[m->n_rec++] = (double)d->recovery_ms;
    }
    return otasim_rundb_fleet_device(c->out, c->id, d, c->err);
}

/* Copies a shard's device rows into the merged run; collects the figures. */
static int copy_devices(struct shard *s, const char *path, struct otasim_rundb *out, int64_t id,
                        struct merged *m, struct ota_err *err)
{
    struct copy c = {m, out, id, err};
    int r = otasim_rundb_fleet_devices_each(s->db, s->run.id, copy_device, &c, err);

    return r < 0 ? ota_err_prefix(err, r, "%s", path) : 0;
}

static void figures(struct merged *m)
{
    double mean, p95;

    otasim_mean_p95(m->down, m->n_down, &mean, &p95);
    json_object_set_new(m->stats, "downtime_mean_ms", json_real(mean));
    json_object_set_new(m->stats, "downtime_p95_ms", json_real(p95));
    otasim_mean_p95(m->bytes, m->n_bytes, &mean, &p95);
    json_object_set_new(m->stats, "bytes_mean", json_real(mean));
    json_object_set_new(m->stats, "bytes_max",
                        json_real(m->n_bytes ? m->bytes[m->n_bytes - 1] : 0));
    otasim_mean_p95(m->rec, m->n_rec, &mean, &p95);
    json_object_set_new(m->stats, "recovered", json_integer((json_int_t)m->n_rec));
    json_object_set_new(m->stats, "recovery_mean_ms", json_real(mean));
    json_object_set_new(m->stats, "recovery_p95_ms", json_real(p95));
}

/* ---- the time series ---- */

struct sample {
    int64_t t;
    size_t shard, seq; /* seq: the order read (a shard's, by time) */
    char rollout[16];
    int stage;
    json_t *counts;
};

static int cmp_sample(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Adds the numbers of b into a (objects recursively). */
/* Adds b's counts into a; at the top (top set) not "rollout": every shard
 * reads the one server's rollout figures, which are the fleet's already. */
static void add_counts(json_t *a, json_t *b, int top)
{
    const char *k;
    json_t *v;

    json_object_foreach(b, k, v)
    {
        if (top && strcmp(k, "rollout") == 0)
            continue;
        json_t *cur = json_object_get(a, k);
        if (json_is_object(v)) {
            if (!cur)
                json_object_set_new(a, k, json_deep_copy(v));
            else
                add_counts(cur, v, 0);
        } else if (json_is_integer(v)) {
            json_object_set_new(a, k,
                                json_integer(json_integer_value(cur) + json_integer_value(v)));
        }
    }
}

struct samples {
    struct sample *v;
    size_t n, cap, shard;
};

static int read_sample(void *ctx, int64_t t, const char *rollout, int stage, const char *counts)
{
    struct samples *S = ctx;
    struct sample *x;

    if (S->n == S->cap) {
        size_t c = S->cap ? S->cap * 2 : 256;
        struct sample *nv = realloc(S->v, c * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        S->v = nv;
        S->cap = c;
    }
    x = &S->v[S->n];
    x->t = t;
    x->shard = S->shard;
    x->seq = S->n++;
    ota_strlcpy(x->rollout, rollout, sizeof(x->rollout));
    x->stage = stage;
    x->counts = json_loads(counts, 0, NULL);
    if (!x->counts)
        x->counts = json_object();
    return 0;
}

/* At every time some shard sampled, the sum over the shards of each one's
 * latest sample at or before it (a shard that ended earlier counts as it
 * ended; of two samples of one shard at one time, the later); the server's
 * rollout figures (counts.rollout) from the first shard that sampled then. */
static int merge_samples(struct shard *s, size_t n, const char *const *paths,
                         struct otasim_rundb *out, int64_t id, struct ota_err *err)
{
    struct samples S = {0};
    struct sample **cur = calloc(n ? n : 1, sizeof(*cur)), *v;
    size_t nv;
    int r = cur ? 0 : ota_err_set(err, ENOMEM, "out of memory");

    for (size_t i = 0; r == 0 && i < n; i++) {
        S.shard = i;
        r = otasim_rundb_fleet_samples_each(s[i].db, s[i].run.id, read_sample, &S, err);
        if (r == -ENOMEM && !err->code)
            r = ota_err_set(err, ENOMEM, "out of memory");
        else if (r < 0)
            r = ota_err_prefix(err, r, "%s", paths[i]);
    }
    v = S.v;
    nv = S.n;
    if (r == 0 && nv)
        qsort(v, nv, sizeof(*v), cmp_sample);
    for (size_t i = 0; r == 0 && i < nv;) {
        int64_t t = v[i].t;
        json_t *sum = json_object();
        const struct sample *first = NULL;
        char *text;
        for (; i < nv && v[i].t == t; i++)
            cur[v[i].shard] = &v[i]; /* the later of one shard's samples at t wins */
        for (size_t k = 0; k < n; k++) {
            if (!cur[k])
                continue;
            add_counts(sum, cur[k]->counts, 1);
            if (!first || (cur[k]->t == t && first->t != t))
                first = cur[k]; /* rollout and stage: the first shard that sampled at t */
        }
        if (json_object_get(first->counts, "rollout")) /* the server's: not summed */
            json_object_set_new(sum, "rollout",
                                json_deep_copy(json_object_get(first->counts, "rollout")));
        text = json_dumps(sum, JSON_COMPACT);
        json_decref(sum);
        r = text ? otasim_rundb_fleet_sample(out, id, t, first->rollout, first->stage, text, err)
                 : ota_err_set(err, ENOMEM, "out of memory");
        free(text);
    }
    for (size_t i = 0; i < nv; i++)
        json_decref(v[i].counts);
    free(v);
    free(cur);
    return r;
}

/* ---- the verdict ---- */

static double pct(int64_t a, int64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0;
}

/* The fleet-wide expectations on the summed counts (as fleet.c checks a
 * whole run's). */
static void fleet_wide(struct merged *m, const struct otasim_fleet_def *def)
{
    json_t *st = m->stats;
    int64_t devices = geti(st, "devices"), online = geti(st, "online");

    if (def->n_expect_rollout) {
        int ok = 0;
        for (size_t i = 0; i < def->n_expect_rollout; i++)
            ok |= strcmp(def->expect_rollout[i], m->state) == 0;
        if (!ok)
            fail_line(m, "rollout: ended '%s', expected %s%s", m->state, def->expect_rollout[0],
                      def->n_expect_rollout > 1 ? " or another listed" : "");
    }
    if (def->expect_bad_max_percent >= 0 &&
        pct(geti(st, "bad_installed"), devices) > def->expect_bad_max_percent)
        fail_line(m, "bad_installed_max_percent: %lld devices (%.2f%% of %lld), at most %.2f%%",
                  (long long)geti(st, "bad_installed"), pct(geti(st, "bad_installed"), devices),
                  (long long)devices, def->expect_bad_max_percent);
    if (def->expect_bricked_max >= 0 && geti(st, "bricked") > def->expect_bricked_max)
        fail_line(m, "bricked_max: %lld devices bricked, at most %ld",
                  (long long)geti(st, "bricked"), def->expect_bricked_max);
    if (def->expect_inconsistent_max >= 0 &&
        geti(st, "inconsistent") > def->expect_inconsistent_max)
        fail_line(m, "inconsistent_max: %lld devices failed an invariant, at most %ld",
                  (long long)geti(st, "inconsistent"), def->expect_inconsistent_max);
    if (def->expect_stuck_max >= 0 && geti(st, "stuck") > def->expect_stuck_max)
        fail_line(m, "stuck_max: %lld devices did not settle, at most %ld",
                  (long long)geti(st, "stuck"), def->expect_stuck_max);
    if (def->expect_min_on_target_percent >= 0 &&
        pct(geti(st, "on_target"), online) < def->expect_min_on_target_percent)
        fail_line(m, "on_target_min_percent: %lld of %lld online devices (%.2f%%), at least %.2f%%",
                  (long long)geti(st, "on_target"), (long long)online,
                  pct(geti(st, "on_target"), online), def->expect_min_on_target_percent);
}

/* Keeps the shards' per-device and fault lines (their keys below). */
static void shard_lines(struct merged *m, struct shard *s, size_t n, int all)
{
    static const char *const keys[] = {"committed_within:", "switch_in_window:", "faults:", NULL};

    for (size_t i = 0; i < n; i++) {
        const char *p = s[i].run.failed;
        while (*p) {
            const char *nl = strchr(p, '\n');
            int len = nl ? (int)(nl - p) : (int)strlen(p), keep = all;
            for (size_t k = 0; !keep && keys[k]; k++)
                keep = strncmp(p, keys[k], strlen(keys[k])) == 0;
            if (keep && len > 0)
                fail_line(m, "shard %zu: %.*s", i, len, p);
            p += len + (nl ? 1 : 0);
        }
        if (all && !s[i].run.ok && !s[i].run.failed[0])
            fail_line(m, "shard %zu failed", i);
    }
}

static int verdict(struct merged *m, struct shard *s, size_t n, FILE *report)
{
    struct otasim_fleet_def def;
    struct ota_err e = {0};

    m->ok = 1;
    if (otasim_fleet_load(s[0].run.file, &def, &e) < 0) {
        if (report)
            fprintf(report,
                    "fleet-merge: the fleet file %s: %s; the verdict is the shards' combined\n",
                    s[0].run.file, e.reason);
        shard_lines(m, s, n, 1);
        json_object_set_new(m->stats, "verdict", json_string("combined"));
        return 0;
    }
    fleet_wide(m, &def);
    shard_lines(m, s, n, 0);
    json_object_set_new(m->stats, "verdict", json_string("recomputed"));
    otasim_fleet_def_free(&def);
    return 0;
}

/* ---- the merge ---- */

static int check_same(struct shard *s, size_t n, const char *const *in, struct ota_err *err)
{
    for (size_t i = 1; i < n; i++)
        if (strcmp(s[i].run.name, s[0].run.name) != 0 || s[i].run.seed != s[0].run.seed)
            return ota_err_set(err, EINVAL,
                               "%s is fleet %s seed %lld, %s is fleet %s seed %lld: not shards "
                               "of one run",
                               in[0], s[0].run.name, (long long)s[0].run.seed, in[i], s[i].run.name,
                               (long long)s[i].run.seed);
    return 0;
}

static int write_out(struct otasim_rundb *db, struct shard *s, size_t n, const char *const *in,
                     struct merged *m, int64_t *ret_id, FILE *report, struct ota_err *err)
{
    char cmd[1024], *stats;
    int64_t run_id, id;
    size_t k;
    int r;

    k = (size_t)snprintf(cmd, sizeof(cmd), "ota-sim fleet-merge OUT.db");
    for (size_t i = 0; i < n && k < sizeof(cmd); i++)
        k += (size_t)snprintf(cmd + k, sizeof(cmd) - k, " %s", in[i]);
    if ((r = otasim_rundb_begin(db, cmd, "otacore (in-process fleet, merged shards)", &run_id,
                                err)) < 0 ||
        (r = otasim_rundb_gaps(db, run_id, "not-modelled", "fleet", otasim_fleet_gaps, err)) < 0 ||
        (r = otasim_rundb_fleet_begin(db, run_id, s[0].run.name, s[0].run.file,
                                      (uint64_t)s[0].run.seed, &id, err)) < 0 ||
        (r = otasim_rundb_end(db, run_id, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if ((r = copy_devices(&s[i], in[i], db, id, m, err)) < 0)
            return r;
    if ((r = merge_samples(s, n, in, db, id, err)) < 0)
        return r;
    figures(m);
    verdict(m, s, n, report);
    json_object_set_new(m->stats, "ok", json_boolean(m->ok));
    json_object_set_new(m->stats, "failed", json_string(m->failed));
    /* the rerun: the shards' command without its --shard (one process runs it all) */
    ota_strlcpy(cmd, json_string_value(json_object_get(s[0].stats, "rerun")) ?: "", sizeof(cmd));
    if (strstr(cmd, " --shard "))
        *strstr(cmd, " --shard ") = '\0';
    json_object_set_new(m->stats, "rerun", json_string(cmd));
    stats = json_dumps(m->stats, JSON_COMPACT);
    r = otasim_rundb_fleet_end(db, id, m->ok, m->state, stats ? stats : "{}", m->failed, cmd, err);
    free(stats);
    *ret_id = id;
    return r;
}

int otasim_fleet_merge(const char *out, const char *const *in, size_t n, int *ret_ok,
                       int64_t *ret_id, FILE *report, struct ota_err *err)
{
    struct shard *s = calloc(n ? n : 1, sizeof(*s));
    struct otasim_rundb *db = NULL;
    struct merged m;
    int r = 0;

    memset(&m, 0, sizeof(m));
    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < n; i++)
        r = shard_open(in[i], &s[i], err);
    if (r == 0 && n == 0)
        r = ota_err_set(err, EINVAL, "no shard database");
    if (r == 0)
        r = check_same(s, n, in, err);
    if (r == 0) {
        merge_stats(&m, s, n);
        r = otasim_rundb_open(out, &db, err);
    }
    if (r == 0)
        r = write_out(db, s, n, in, &m, ret_id, report, err);
    if (r == 0) {
        *ret_ok = m.ok;
        if (report)
            fprintf(report,
                    "fleet %s (seed %lld): %zu shards merged: %lld devices (%lld online), "
                    "rollout %s; on target %lld, took a bad release %lld, bricked %lld, "
                    "inconsistent %lld, stuck %lld (verdict %s)\n%s",
                    s[0].run.name, (long long)s[0].run.seed, n, (long long)geti(m.stats, "devices"),
                    (long long)geti(m.stats, "online"), m.state,
                    (long long)geti(m.stats, "on_target"),
                    (long long)geti(m.stats, "bad_installed"), (long long)geti(m.stats, "bricked"),
                    (long long)geti(m.stats, "inconsistent"), (long long)geti(m.stats, "stuck"),
                    json_string_value(json_object_get(m.stats, "verdict")), m.failed);
    }
    otasim_rundb_close(db);
    for (size_t i = 0; i < n; i++) {
        otasim_rundb_close(s[i].db);
        json_decref(s[i].stats);
        otasim_rundb_fleet_run_free(&s[i].run);
    }
    free(s);
    json_decref(m.stats);
    free(m.down);
    free(m.bytes);
    free(m.rec);
    return r;
}
