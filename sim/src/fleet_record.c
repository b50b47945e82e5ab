/* A fleet run's record: its resources (CPU, RSS from /proc), the canary
 * statistics, its figures as JSON, and its rows in the run database. */
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

void fleet_rerun_cmd(const struct run *R, char *buf, size_t cap)
{
    const struct otasim_fleet_opts *o = R->fl.o;
    int n = snprintf(buf, cap, "ota-sim fleet %s --seed %llu", R->fl.def->path,
                     (unsigned long long)R->fl.seed);

    if (o->count && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, " --devices %u", o->count);
    if (o->shards > 1 && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " --shard %u/%u", o->shard, o->shards);
}

/* ---- figures -------------------------------------------------------------------- */

long fleet_rss_kib(pid_t pid, const char *field)
{
    char p[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    f = fopen(p, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field), NULL, 10);
    fclose(f);
    return v;
}

double fleet_proc_cpu_s(pid_t pid)
{
    char p[64], buf[1024], *c;
    unsigned long ut = 0, stt = 0;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    f = fopen(p, "r");
    if (!f)
        return -1;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = 0;
    fclose(f);
    c = strrchr(buf, ')');
    /* fields after the name: state(3) ... utime(14) stime(15) */
    if (!c || sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

void otasim_wilson(uint32_t k, uint32_t n, double z, double *ret_lo, double *ret_hi)
{
    double p, den, mid, half;

    if (n == 0) {
        *ret_lo = 0;
        *ret_hi = 1;
        return;
    }
    p = (double)k / n;
    den = 1 + z * z / n;
    mid = (p + z * z / (2.0 * n)) / den;
    half = z * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / den;
    *ret_lo = mid - half < 0 ? 0 : mid - half;
    *ret_hi = mid + half > 1 ? 1 : mid + half;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void otasim_vline(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t k = strlen(buf);

    if (k + 2 >= cap)
        return;
    vsnprintf(buf + k, cap - k, fmt, ap);
    k = strlen(buf);
    if (k + 1 < cap) {
        buf[k] = '\n';
        buf[k + 1] = 0;
    }
}

void otasim_mean_p95(double *v, size_t n, double *ret_mean, double *ret_p95)
{
    double sum = 0;

    *ret_mean = *ret_p95 = 0;
    if (!n)
        return;
    qsort(v, n, sizeof(*v), cmp_dbl);
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    *ret_mean = sum / (double)n;
    *ret_p95 = v[(size_t)ceil(0.95 * (double)n) - 1];
}

double otasim_fleet_catch_probability(double p, uint32_t n)
{
    return 1 - pow(1 - p, (double)n);
}

/* ---- the run's record ----------------------------------------------------------- */

char *otasim_fleet_stats_json(const struct otasim_fleet_def *def,
                              const struct otasim_fleet_stats *s, uint64_t seed)
{
    json_t *o = json_object();
    char *text;

#define I(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
#define R(k, v) json_object_set_new(o, k, json_real(v))
#define S(k, v) json_object_set_new(o, k, json_string(v))
    S("name", def->name);
    I("seed", seed);
    I("devices", s->devices);
    I("online", s->online);
    S("rollout_state", s->rollout_state);
    S("rollout_reason", s->rollout_reason);
    I("stage", s->stage);
    I("on_target", s->on_target);
    I("bad_installed", s->bad_installed);
    I("rolled_back", s->rolled_back);
    I("bricked", s->bricked);
    I("inconsistent", s->inconsistent);
    I("stuck", s->stuck);
    I("never_checked_in", s->never_checked_in);
    I("requests", s->requests);
    I("passes", s->passes);
    I("steps", s->steps);
    I("bytes_down", s->bytes_down);
    I("power_cuts", s->power_cuts);
    I("agent_crashes", s->agent_crashes);
    I("cut_chances", s->cut_chances);
    I("srv_faults_applied", s->srv_faults_applied);
    S("faults", s->faults);
    R("downtime_mean_ms", s->downtime_mean_ms);
    R("downtime_p95_ms", s->downtime_p95_ms);
    R("bytes_mean", s->bytes_mean);
    R("bytes_max", s->bytes_max);
    I("recovered", s->recovered);
    R("recovery_mean_ms", s->recovery_mean_ms);
    R("recovery_p95_ms", s->recovery_p95_ms);
    I("virtual_ms", s->virtual_ms);
    I("rollout_ms", s->rollout_ms);
    R("wall_s", s->wall_s);
    R("cpu_user_s", s->cpu_user_s);
    R("cpu_sys_s", s->cpu_sys_s);
    R("srv_cpu_s", s->srv_cpu_s);
    I("peak_rss_kib", s->peak_rss_kib);
    I("srv_peak_rss_kib", s->srv_peak_rss_kib);
    I("bytes_per_idle_device", s->rss_per_idle_device_bytes);
    json_object_set_new(o, "ok", json_boolean(s->ok));
    S("failed", s->failed);
    S("rerun", s->rerun);
#undef I
#undef R
#undef S
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static int record_samples(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    const struct fleet *fl = &R->fl;

    for (size_t i = 0; i < R->n_samples; i++) {
        const struct sample *s = &R->samples[i];
        json_t *o = json_object(), *st = json_object(), *ver = json_object();
        char *text;
        int r;
        for (int k = 0; k < OTA_STATE_MAX; k++)
            if (s->by_state[k])
                json_object_set_new(st, ota_state_names[k], json_integer(s->by_state[k]));
        for (size_t k = 0; k <= OTASIM_FLEET_MAX_RELEASES; k++)
            if (s->by_version[k])
                json_object_set_new(ver, k < fl->def->n_rel ? fl->def->rel[k].version : "other",
                                    json_integer(s->by_version[k]));
        json_object_set_new(o, "states", st);
        json_object_set_new(o, "versions", ver);
        json_object_set_new(o, "down", json_integer(s->down));
        json_object_set_new(o, "in_pass", json_integer(s->in_pass));
        if (s->server)
            json_object_set_new(o, "rollout", json_loads(s->server, 0, NULL));
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text)
            return ota_err_set(err, ENOMEM, "out of memory");
        r = otasim_rundb_fleet_sample(db, fl->st->fleet_id, s->t, s->rollout, s->stage, text, err);
        free(text);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The run database: --db, else WORK/runs.db as for `ota-sim run`. */
/* docs/fleet.md "In-memory devices", the invariants on in-memory devices,
 * "Virtual time". */
const char *const otasim_fleet_gaps[] = {
    "In-memory devices: the agent's core with in-memory store, slots and service that keep the "
    "real drivers' durability rules; no agent process, no files, no interposer, so crash models "
    "and persistence points do not apply.",
    "The invariants that read files (tree digests, journals, the database file, temp files, the "
    "boot env file) do not apply to in-memory devices.",
    "Virtual time: the devices' and the server's clocks jump to the next event; durations are "
    "the model's (poll intervals, health windows, stage delays), not a device's.",
    NULL,
};

int fleet_db_open(struct run *R, struct otasim_rundb **ret, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    char path[PATH_MAX + 16];
    int64_t run_id;
    char cmd[1024];
    int r;

    *ret = NULL;
    snprintf(path, sizeof(path), "%s/runs.db", R->t.work);
    if ((r = otasim_rundb_open(fl->o->db ? fl->o->db : path, ret, err)) < 0)
        return r;
    fleet_rerun_cmd(R, cmd, sizeof(cmd));
    if ((r = otasim_rundb_begin(*ret, cmd, "otacore (in-process fleet)", &run_id, err)) < 0 ||
        (r = otasim_rundb_gaps(*ret, run_id, "not-modelled", "fleet", otasim_fleet_gaps, err)) <
            0 ||
        (r = otasim_rundb_fleet_begin(*ret, run_id, fl->def->name, fl->def->path, fl->seed,
                                      &fl->st->fleet_id, err)) < 0 ||
        (r = otasim_rundb_end(*ret, run_id, err)) < 0)
        return r;
    return 0;
}

int fleet_db_close(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    const struct otasim_fleet_stats *st = R->fl.st;
    char *stats;
    int r;

    if (!db)
        return 0;
    if ((r = record_samples(R, db, err)) < 0)
        return r;
    stats = otasim_fleet_stats_json(R->fl.def, st, R->fl.seed);
    r = otasim_rundb_fleet_end(db, st->fleet_id, st->ok, st->rollout_state, stats ? stats : "{}",
                               st->failed, st->rerun, err);
    free(stats);
    return r;
}
