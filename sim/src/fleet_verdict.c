/* A fleet run's end (otasim/fleet.h): every device's outcome through the
 * invariant table, seed 003's figures, the faults seen to fire against their
 * rates, and the fleet file's expectations. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet_impl.h"
#include "ota/json.h"
#include "otasim/rundb.h"

static void switches_in_window(struct run *R);

/* ---- the end: outcomes, figures, expectations ----------------------------------- */

static void expect_fail(struct otasim_fleet_stats *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void expect_fail(struct otasim_fleet_stats *st, const char *fmt, ...)
{
    va_list ap;

    st->ok = 0;
    va_start(ap, fmt);
    otasim_vline(st->failed, sizeof(st->failed), fmt, ap);
    va_end(ap);
}

static double pct(uint32_t a, uint32_t b)
{
    return b ? 100.0 * a / b : 0;
}

void fleet_expectations(struct run *R)
{
    const struct otasim_fleet_def *def = R->fl.def;
    struct otasim_fleet_stats *st = R->fl.st;
    int64_t late_commit = 0;
    uint32_t committed = 0;

    if (def->n_expect_rollout) {
        int ok = 0;
        for (size_t i = 0; i < def->n_expect_rollout; i++)
            ok |= strcmp(def->expect_rollout[i], st->rollout_state) == 0;
        if (!ok)
            expect_fail(st, "rollout: ended '%s' (%s), expected %s%s", st->rollout_state,
                        st->rollout_reason, def->expect_rollout[0],
                        def->n_expect_rollout > 1 ? " or another listed" : "");
    }
    if (def->expect_bad_max_percent >= 0 &&
        pct(st->bad_installed, st->devices) > def->expect_bad_max_percent)
        expect_fail(st,
                    "bad_installed_max_percent: %u devices (%.2f%% of %u) took a bad release, "
                    "at most %.2f%% allowed",
                    st->bad_installed, pct(st->bad_installed, st->devices), st->devices,
                    def->expect_bad_max_percent);
    if (def->expect_bricked_max >= 0 && st->bricked > (uint32_t)def->expect_bricked_max)
        expect_fail(st, "bricked_max: %u devices bricked (service not up), at most %ld",
                    st->bricked, def->expect_bricked_max);
    if (def->expect_inconsistent_max >= 0 &&
        st->inconsistent > (uint32_t)def->expect_inconsistent_max)
        expect_fail(st, "inconsistent_max: %u devices failed an invariant, at most %ld",
                    st->inconsistent, def->expect_inconsistent_max);
    if (def->expect_stuck_max >= 0 && st->stuck > (uint32_t)def->expect_stuck_max)
        expect_fail(st, "stuck_max: %u devices did not settle, at most %ld", st->stuck,
                    def->expect_stuck_max);
    if (def->expect_min_on_target_percent >= 0 &&
        pct(st->on_target, st->online) < def->expect_min_on_target_percent)
        expect_fail(st,
                    "on_target_min_percent: %u of %u online devices (%.2f%%) run %s, at least "
                    "%.2f%% expected",
                    st->on_target, st->online, pct(st->on_target, st->online),
                    def->expect_target_version[0] ? def->expect_target_version
                                                  : def->rollout_release,
                    def->expect_min_on_target_percent);
    if (def->expect_switch_in_window)
        switches_in_window(R);
    if (def->expect_committed_within_ms >= 0) {
        for (uint32_t i = 0; i < R->fl.n_dev; i++) {
            const struct fdev *d = &R->fl.dev[i];
            if (d->committed_ms < 0 || d->offered_ms < 0)
                continue;
            committed++;
            if (d->committed_ms - d->offered_ms > late_commit)
                late_commit = d->committed_ms - d->offered_ms;
        }
        if (late_commit > def->expect_committed_within_ms)
            expect_fail(st,
                        "committed_within: the slowest of %u commits took %.2f h from the "
                        "offer, at most %.2f h",
                        committed, late_commit / 3600000.0,
                        def->expect_committed_within_ms / 3600000.0);
    }
}

static const char *outcome_of(const struct fleet *fl, const struct fdev *d, int ok,
                              const char *target)
{
    if (d->offline)
        return "offline";
    if (!fleet_dev_service_up(fl, d))
        return "bricked";
    if (d->pass || (d->j && d->j->state != OTA_STATE_IDLE) || d->outbox)
        return "stuck";
    if (!ok)
        return "inconsistent";
    if (d->running && strcmp(d->running, target) == 0)
        return "on_target";
    return d->rollbacks ? "rolled_back" : "other_version";
}

static int device_row(struct run *R, struct otasim_rundb *db, const struct fdev *d,
                      const char *outcome, const char *failed, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_rundb_fleet_device row;
    char id[16];

    snprintf(id, sizeof(id), "d%06u", d->idx);
    memset(&row, 0, sizeof(row));
    row.device = id;
    row.type = fl->def->types[d->type].value;
    row.group = fl->def->groups[d->group].value;
    row.version = d->running ? d->running : "";
    row.state = ota_state_names[d->j ? d->j->state : OTA_STATE_IDLE];
    row.outcome = outcome;
    row.bytes = d->bytes_down;
    row.downtime_ms = d->updates ? d->downtime_ms : -1;
    row.recovery_ms = d->recovered_ms >= 0 ? d->recovered_ms - d->fail_ms : -1;
    row.updates = d->updates;
    row.rollbacks = d->rollbacks;
    row.cuts = d->cuts;
    row.checks = failed;
    return otasim_rundb_fleet_device(db, fl->st->fleet_id, &row, err);
}

struct figures {
    double *down, *bytes, *rec;
    size_t n_down, n_bytes, n_rec;
};

static void figure(struct figures *f, const struct fdev *d)
{
    f->bytes[f->n_bytes++] = (double)d->bytes_down;
    if (d->updates)
        f->down[f->n_down++] = (double)d->downtime_ms / d->updates;
    if (d->recovered_ms >= 0 && d->fail_ms >= 0)
        f->rec[f->n_rec++] = (double)(d->recovered_ms - d->fail_ms);
}

static void figures_done(struct figures *f, struct otasim_fleet_stats *st)
{
    double unused;

    otasim_mean_p95(f->down, f->n_down, &st->downtime_mean_ms, &st->downtime_p95_ms);
    otasim_mean_p95(f->bytes, f->n_bytes, &st->bytes_mean, &unused);
    st->bytes_max = f->n_bytes ? f->bytes[f->n_bytes - 1] : 0;
    otasim_mean_p95(f->rec, f->n_rec, &st->recovery_mean_ms, &st->recovery_p95_ms);
    st->recovered = (uint32_t)f->n_rec;
}

/* Minutes after local midnight of unix time ms in zone tz ("" UTC). The
 * runner is one thread: TZ is switched around localtime_r and restored. */
static int local_minute(const char *tz, int64_t ms)
{
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    setenv("TZ", tz && tz[0] ? tz : "UTC", 1);
    tzset();
    localtime_r(&t, &tm);
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return tm.tm_hour * 60 + tm.tm_min;
}

/* Every switch inside the rollout definition's window (local time). */
static void switches_in_window(struct run *R)
{
    struct fleet *fl = &R->fl;
    json_t *def = json_loads(fl->def->rollout_json, 0, NULL);
    json_t *w = json_object_get(def, "window");
    int sh, sm, eh, em, start, end;
    uint32_t switched = 0, outside = 0;
    char first[160] = "";

    if (!w ||
        sscanf(json_string_value(json_object_get(w, "start")) ?: "", "%d:%d", &sh, &sm) != 2 ||
        sscanf(json_string_value(json_object_get(w, "end")) ?: "", "%d:%d", &eh, &em) != 2) {
        expect_fail(fl->st, "switch_in_window: the rollout definition has no window");
        json_decref(def);
        return;
    }
    json_decref(def);
    start = sh * 60 + sm;
    end = eh * 60 + em;
    for (uint32_t i = 0; i < fl->n_dev; i++) {
        const struct fdev *d = &fl->dev[i];
        const char *tz = fl->def->n_zones ? fl->def->zones[d->zone].value : "UTC";
        int m, in;
        if (d->switch_ms < 0)
            continue;
        switched++;
        m = local_minute(tz, fl->def->start_ms + d->switch_ms);
        in = start < end ? (m >= start && m < end) : (m >= start || m < end);
        if (!in && !outside++)
            snprintf(first, sizeof(first), "d%06u (%s) switched at %02d:%02d local", d->idx, tz,
                     m / 60, m % 60);
    }
    if (outside || !switched)
        expect_fail(fl->st, "switch_in_window: %u of %u switches outside %02d:%02d-%02d:%02d%s%s",
                    outside, switched, sh, sm, eh, em, first[0] ? ", first: " : "", first);
}

int fleet_outcomes(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    const char *target = fl->def->expect_target_version[0] ? fl->def->expect_target_version
                                                           : fl->def->rollout_release;
    json_t **reports = calloc(fl->n_dev ? fl->n_dev : 1, sizeof(*reports));
    struct figures f = {0};
    size_t n = fl->n_dev ? fl->n_dev : 1;
    int r = 0;

    f.down = calloc(n, sizeof(double));
    f.bytes = calloc(n, sizeof(double));
    f.rec = calloc(n, sizeof(double));
    if (!reports || !f.down || !f.bytes || !f.rec) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = fleet_final_reports(fl, reports, err)) < 0)
        goto out;
    for (uint32_t i = 0; i < fl->n_dev; i++) {
        struct fdev *d = &fl->dev[i];
        const char *oc;
        char failed[512] = "";
        int ok = 1;
        st->devices++;
        if (!d->offline) {
            st->online++;
            st->bytes_down += d->bytes_down;
            st->bad_installed += d->bad_seen;
            st->rolled_back += d->rollbacks > 0;
            st->never_checked_in += !d->checked_in;
            figure(&f, d);
            if ((r = fleet_check_device(fl, d, reports[i], failed, sizeof(failed), &ok)) < 0)
                goto out;
            if (!fleet_dev_service_up(fl, d))
                st->bricked++;
            if (d->pass || (d->j && d->j->state != OTA_STATE_IDLE) || d->outbox)
                st->stuck++;
            if (!ok) {
                st->inconsistent++;
                if (fl->o->verbose && st->inconsistent <= 10 && fl->o->progress)
                    fprintf(fl->o->progress, "fleet: d%06u: %s\n", d->idx, failed);
            }
            if (d->running && strcmp(d->running, target) == 0 &&
                (!d->j || d->j->state == OTA_STATE_IDLE))
                st->on_target++;
        }
        oc = outcome_of(fl, d, ok, target);
        if (fl->o->calib) /* the calibration (fleet_native.c) */
            fleet_calib_record(fl, d, reports[i]);
        if (db && (r = device_row(R, db, d, oc, failed, err)) < 0)
            goto out;
    }
    figures_done(&f, st);
out:
    for (uint32_t i = 0; reports && i < fl->n_dev; i++)
        json_decref(reports[i]);
    free(reports);
    free(f.down);
    free(f.bytes);
    free(f.rec);
    return r;
}

/* ---- faults at rates, seen to fire --------------------------------------------- */

/* k fired of n draws at rate p: fired at all when it should have (n p >= 3),
 * and the rate inside a 99.9% Wilson interval of k/n. */
static int rate_ok(uint64_t k, uint64_t n, double p, char *why, size_t cap)
{
    double lo, hi;

    if (n == 0 || p <= 0) {
        snprintf(why, cap, "no draws");
        return 1;
    }
    otasim_wilson((uint32_t)k, (uint32_t)n, 3.29, &lo, &hi);
    snprintf(why, cap, "%llu of %llu (%.4f, 99.9%% interval %.4f..%.4f) at a configured %.4f",
             (unsigned long long)k, (unsigned long long)n, (double)k / (double)n, lo, hi, p);
    if ((double)n * p >= 3 && k == 0)
        return 0;
    return lo <= p && p <= hi;
}

static void fault_line(struct otasim_fleet_stats *st, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fault_line(struct otasim_fleet_stats *st, int ok, const char *fmt, ...)
{
    size_t k = strlen(st->faults);
    va_list ap;

    if (k + 8 >= sizeof(st->faults))
        return;
    snprintf(st->faults + k, sizeof(st->faults) - k, "%s ", ok ? "ok" : "FAILED");
    va_start(ap, fmt);
    otasim_vline(st->faults, sizeof(st->faults), fmt, ap);
    va_end(ap);
}

int fleet_faults_fired(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    const struct otasim_fleet_def *def = fl->def;
    char why[200];
    json_t *plan = NULL, *rule;
    size_t i;
    int r, ok;

    if (def->power_cut > 0) {
        ok = rate_ok(st->power_cuts, st->cut_chances, def->power_cut, why, sizeof(why));
        fault_line(st, ok, "power_cut: %s", why);
        if (!ok)
            expect_fail(st, "faults: power cuts fired %s", why);
    }
    if (def->agent_crash > 0) {
        /* a crash is drawn only where no cut was */
        uint64_t n = st->cut_chances - st->power_cuts;
        ok = rate_ok(st->agent_crashes, n, def->agent_crash, why, sizeof(why));
        fault_line(st, ok, "agent_crash: %s", why);
        if (!ok)
            expect_fail(st, "faults: agent crashes fired %s", why);
    }
    if (!def->server_faults_json)
        return 0;
    if ((r = fleet_admin_get(fl, "/api/v1/faults", &plan, err)) < 0)
        return ota_err_prefix(err, r, "reading the server's fault counters");
    json_array_foreach(json_object_get(plan, "rules"), i, rule)
    {
        json_t *m = json_object_get(rule, "match");
        const char *id = json_string_value(json_object_get(rule, "id"));
        uint64_t matched = (uint64_t)json_integer_value(json_object_get(rule, "matched"));
        uint64_t applied = (uint64_t)json_integer_value(json_object_get(rule, "applied"));
        json_t *p = json_object_get(m, "probability");
        int counted = json_object_get(m, "nth") || json_object_get(m, "after") ||
                      json_object_get(m, "every") || json_object_get(rule, "count");
        st->srv_faults_applied += applied;
        if (counted) { /* not a rate: seen to fire at all */
            ok = applied > 0;
            snprintf(why, sizeof(why), "applied %llu of %llu matches", (unsigned long long)applied,
                     (unsigned long long)matched);
        } else {
            ok = rate_ok(applied, matched, p ? json_number_value(p) : 1.0, why, sizeof(why));
        }
        fault_line(st, ok, "server rule %s (%s): %s", id ? id : "?",
                   json_string_value(json_object_get(json_object_get(rule, "fault"), "kind")), why);
        if (!ok)
            expect_fail(st, "faults: server rule %s: %s", id ? id : "?", why);
    }
    json_decref(plan);
    return 0;
}
