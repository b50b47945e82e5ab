/* The runner's cases (runner.h): a scenario's cases, and for the
 * persistence-point enumeration the recording run that counts the points and
 * finds which crash points can differ. */
#include "otasim/fast.h"
#include "otasim/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"
#include "otasim/rundb.h"
#include "runner_impl.h"

/* ---- persistence points ------------------------------------------------- */

/* Cached per scenario file + agent binary, so `--list` and the run agree.
 * OTASIM_RECORD_FAILED: the agent failed the run, *failed holds its trial. */
static int recording(struct otasim_runner *r, size_t si, struct otasim_recording *ret,
                     struct otasim_trial *failed, struct ota_err *err)
{
    struct scen *s = &r->scens[si];
    char key[PATH_MAX * 2 + 64], hex[65], path[PATH_MAX + 128], *text = NULL;
    uint8_t d[32];
    struct stat sa, ss;
    struct ota_sha256 *h;
    size_t n;
    int rc;

    if (stat(r->t.agent, &sa) < 0 || stat(s->sc.path, &ss) < 0)
        return ota_err_set(err, errno, "stat: %s", strerror(errno));
    snprintf(key, sizeof(key), "%s|%lld|%lld|%s|%lld|%s", r->t.agent, (long long)sa.st_mtime,
             (long long)sa.st_size, s->sc.path, (long long)ss.st_mtime,
             otasim_fault_kind_names[s->sc.fault.kind]);
    /* another agent's device side is ota-sim's own driver (agent.h) */
    if (s->sc.agent[0] && strcmp(s->sc.agent, "ota-agent") != 0 && stat(r->t.self, &sa) == 0)
        snprintf(key + strlen(key), sizeof(key) - strlen(key), "|%s|%s|%lld|%lld", s->sc.agent,
                 r->t.self, (long long)sa.st_mtime, (long long)sa.st_size);
    h = ota_sha256_new();
    if (!h || ota_sha256_update(h, key, strlen(key)) < 0 || ota_sha256_final(h, d) < 0) {
        ota_sha256_free(h);
        return ota_err_set(err, EIO, "sha256 failed");
    }
    ota_sha256_free(h);
    ota_hex_encode(d, 16, hex);
    snprintf(path, sizeof(path), "%s/cache/recordings/%s", r->t.work, hex);
    if (ota_fs_read_all(path, 1 << 24, &text, &n, NULL) == 0 && n > 8) {
        uint64_t calls;
        memcpy(&calls, text, 8);
        if (n == 8 + calls + 2) {
            ret->calls = calls;
            ret->distinct = malloc(calls + 2);
            if (!ret->distinct) {
                free(text);
                return ota_err_set(err, ENOMEM, "out of memory");
            }
            memcpy(ret->distinct, text + 8, calls + 2);
            ret->n_distinct = 0;
            for (uint64_t i = 1; i <= calls; i++)
                ret->n_distinct += ret->distinct[i];
            free(text);
            return 0;
        }
    }
    free(text);
    {
        struct otasim_trial tr;
        char dir[PATH_MAX + 64];
        struct rcase tmpc;
        memset(&tmpc, 0, sizeof(tmpc));
        if ((rc = otasim_runner_ensure_server(r, si, err)) < 0)
            return rc;
        memset(&tr, 0, sizeof(tr));
        tr.sc = &s->sc;
        tr.seed = r->o.seed;
        snprintf(tr.device_id, sizeof(tr.device_id), "rec-%.8s-%d", hex, (int)getpid());
        snprintf(dir, sizeof(dir), "%s/record-%zu", r->run_dir, si);
        ota_strlcpy(tr.dir, dir, sizeof(tr.dir));
        tr.srv = &s->srv;
        tr.built = s->built;
        ota_strlcpy(tr.pub, s->pub, sizeof(tr.pub));
        rc = otasim_record(&r->t, &tr, ret, err);
        if (rc == OTASIM_RECORD_FAILED) {
            *failed = tr;
            return rc;
        }
        otasim_trial_free(&tr);
        if (rc < 0)
            return rc;
    }
    {
        size_t len = 8 + ret->calls + 2;
        char *buf = malloc(len), dir[PATH_MAX + 64];
        if (buf) {
            memcpy(buf, &ret->calls, 8);
            memcpy(buf + 8, ret->distinct, ret->calls + 2);
            snprintf(dir, sizeof(dir), "%s/cache/recordings", r->t.work);
            if (ota_fs_mkdirs(dir, NULL) == 0)
                ota_ignore(ota_fs_write_atomic(path, buf, len, 0644, NULL));
            free(buf);
        }
    }
    return 0;
}

/* A case the QEMU tier cannot run is left out, with a note. */
static int qemu_skips(struct otasim_runner *r, size_t si, const struct otasim_fault *f)
{
    const struct otasim_scenario *sc = &r->scens[si].sc;
    struct ota_err e = {0};
    char label[160], id[sizeof(sc->name) + sizeof(label) + 2];

    if (r->t.target != OTASIM_TARGET_QEMU)
        return 0;
    if (f->all_points)
        ota_ignore(ota_err_set(&e, ENOTSUP, "persistence points need the native tier"));
    else if (otasim_runner_subsets_of(f))
        ota_ignore(ota_err_set(&e, ENOTSUP,
                               "crash model %s needs the native tier (a QEMU disk "
                               "loses what its file system loses)",
                               otasim_crash_model_names[f->crash_model]));
    else if (otasim_qemu_supports(sc, f, &e) == 0)
        return 0;
    otasim_fault_label(f, label, sizeof(label));
    snprintf(id, sizeof(id), "%s/%s", sc->name, label);
    otasim_runner_tell(
        r, &(struct otasim_run_event){.kind = OTASIM_RUN_SKIPPED, .id = id, .detail = e.reason});
    char **more = realloc(r->skips, (r->n_skips + 1) * sizeof(*more)), *note = NULL;
    if (more) /* out of memory: the note for the run database goes, the run does not */
        r->skips = more;
    if (more && asprintf(&note, "%s\t%s", id, e.reason) >= 0)
        r->skips[r->n_skips++] = note;
    r->skipped++;
    return 1;
}

/* --case: whether id is asked for (everything without the option). */
static int case_wanted(const struct otasim_runner *r, const char *id)
{
    if (!r->o.n_only_cases)
        return 1;
    for (size_t i = 0; i < r->o.n_only_cases; i++)
        if (strcmp(r->o.only_cases[i], id) == 0)
            return 1;
    return 0;
}

/* Whether any asked-for case id starts with prefix. */
static int prefix_wanted(const struct otasim_runner *r, const char *prefix)
{
    if (!r->o.n_only_cases)
        return 1;
    for (size_t i = 0; i < r->o.n_only_cases; i++)
        if (strncmp(r->o.only_cases[i], prefix, strlen(prefix)) == 0)
            return 1;
    return 0;
}

/* --case: the asked-for cases run (each on its own, not by equivalence);
 * failed recording runs stay (the points asked for depend on them). */
int otasim_runner_select_cases(struct otasim_runner *r, struct otasim_run_stats *s,
                               struct ota_err *err)
{
    s->cases = 0;
    for (size_t i = 0; i < r->n_cases; i++) {
        struct rcase *c = &r->cases[i];
        if (c->prerun) {
            s->cases++;
        } else if (case_wanted(r, c->id)) {
            c->equivalent_to = -1;
            s->cases++;
        } else {
            c->done = 1;
        }
    }
    return otasim_runner_check_cases(r, err);
}

int otasim_runner_check_cases(const struct otasim_runner *r, struct ota_err *err)
{
    for (size_t k = 0; k < r->o.n_only_cases; k++) {
        int found = 0;
        for (size_t i = 0; i < r->n_cases && !found; i++)
            found = strcmp(r->cases[i].id, r->o.only_cases[k]) == 0;
        for (size_t i = 0; i < r->n_cases && !found; i++)
            found =
                r->cases[i].prerun && strncmp(r->cases[i].id, r->o.only_cases[k],
                                              strlen(r->cases[i].id) - strlen("recording")) == 0;
        if (!found)
            return ota_err_set(err, ENOENT, "no case '%s' (see --list)", r->o.only_cases[k]);
    }
    return 0;
}

/* "SCENARIO/KIND@point:": what the case ids of a points: all entry start with. */
static void points_prefix(const struct otasim_runner *r, size_t si, const struct otasim_fault *f,
                          char *buf, size_t cap)
{
    char label[160];
    struct otasim_fault g = *f;

    g.trigger.point = 1;
    otasim_fault_label(&g, label, sizeof(label));
    if (strrchr(label, ':'))
        strrchr(label, ':')[1] = '\0';
    snprintf(buf, cap, "%s/%s", r->scens[si].sc.name, label);
}

/* The agent under test failed the no-fault recording run of a points: all
 * entry: that is a failed trial of the agent (its invariants, its reproduce
 * command), not a harness error; the points cannot be enumerated. */
static int recording_failed(struct otasim_runner *r, size_t si, const struct otasim_fault *f,
                            const char *prefix, struct otasim_trial *failed, struct ota_err *err)
{
    struct rcase *c = otasim_runner_new_case(r, si, f, err);

    if (!c) {
        otasim_trial_free(failed);
        return -ENOMEM;
    }
    snprintf(c->id, sizeof(c->id), "%srecording", prefix);
    c->tr = *failed;
    c->seed = failed->seed;
    ota_strlcpy(c->device_id, failed->device_id, sizeof(c->device_id));
    c->prerun = 1;
    c->done = 1;
    r->scens[si].cases_left--; /* it never runs: no server to wait for */
    return 0;
}

static int expand(struct otasim_runner *r, size_t si, struct ota_err *err)
{
    struct scen *s = &r->scens[si];
    struct otasim_fault f = s->sc.fault;

    if (f.n_states == 0 && qemu_skips(r, si, &f))
        return 0;
    if (s->sc.mix_ota + s->sc.mix_swupdate > 0) {
        for (int k = 0; k < s->sc.mix_ota + s->sc.mix_swupdate; k++) {
            struct rcase *c = otasim_runner_new_case(r, si, &f, err);
            const char *ag = k < s->sc.mix_ota ? "ota-agent" : "swupdate";
            char id[200];
            if (!c)
                return -ENOMEM;
            snprintf(id, sizeof(id), "%s/%s-%d", s->sc.name, ag,
                     k < s->sc.mix_ota ? k + 1 : k - s->sc.mix_ota + 1);
            otasim_runner_case_id(c, id);
            ota_strlcpy(c->agent, ag, sizeof(c->agent));
        }
        return 0;
    }

    if (f.n_states > 0) {
        for (size_t i = 0; i < f.n_states; i++) {
            struct otasim_fault g = f;
            g.trigger.kind = OTASIM_TRIGGER_STATE;
            ota_strlcpy(g.trigger.state, f.states[i], sizeof(g.trigger.state));
            g.trigger.nth = 1;
            if (qemu_skips(r, si, &g))
                continue;
            if (!otasim_runner_new_case(r, si, &g, err))
                return -ENOMEM;
        }
        return 0;
    }
    if (f.all_points) {
        struct otasim_recording rec = {0};
        struct otasim_trial failed;
        char prefix[200];
        long rep = -1;
        int rc;
        f.trigger.kind = OTASIM_TRIGGER_POINT;
        f.trigger.point = 0;
        points_prefix(r, si, &f, prefix, sizeof(prefix));
        if (!prefix_wanted(r, prefix))
            return 0; /* --case names none of these points: no recording run */
        rc = recording(r, si, &rec, &failed, err);
        if (rc == OTASIM_RECORD_FAILED)
            return recording_failed(r, si, &f, prefix, &failed, err);
        if (rc < 0)
            return rc;
        for (uint64_t n = 1; n <= rec.calls; n++) {
            struct otasim_fault g = f;
            struct rcase *c;
            g.trigger.kind = OTASIM_TRIGGER_POINT;
            g.trigger.point = n;
            c = otasim_runner_new_case(r, si, &g, err);
            if (!c) {
                otasim_recording_free(&rec);
                return -ENOMEM;
            }
            /* Points with no fsync or message between them leave the same
             * durable state, but not the same unsynced operations: under reorder
             * or torn each point is its own trial. */
            if (rec.distinct[n] || r->o.exhaustive || rep < 0 || otasim_runner_subsets_of(&g))
                rep = (long)(c - r->cases);
            else
                c->equivalent_to = rep;
        }
        otasim_recording_free(&rec);
        return 0;
    }
    return otasim_runner_new_case(r, si, &f, err) ? 0 : -ENOMEM;
}

/* --crash-model and --crash-subsets over the scenario's own, for power cuts. */
static void apply_crash_opts(const struct otasim_runner *r, struct otasim_fault *f)
{
    if (f->kind != OTASIM_FAULT_POWER_CUT)
        return;
    if (r->o.crash_model >= 0)
        f->crash_model = (enum otasim_crash_model)r->o.crash_model;
    if (r->o.crash_subsets > 0)
        f->crash_subsets = r->o.crash_subsets;
}

int otasim_runner_add(struct otasim_runner *r, struct otasim_scenario *sc,
                      const struct otasim_fault *override, struct ota_err *err)
{
    struct scen *n = realloc(r->scens, (r->n_scens + 1) * sizeof(*n));
    int rc;

    if (!n)
        return ota_err_set(err, ENOMEM, "out of memory");
    r->scens = n;
    memset(&n[r->n_scens], 0, sizeof(n[0]));
    n[r->n_scens].sc = *sc;
    if (override) {
        n[r->n_scens].sc.fault.kind = override->kind;
        n[r->n_scens].sc.fault.trigger = override->trigger;
        n[r->n_scens].sc.fault.n_states = 0;
        n[r->n_scens].sc.fault.all_points = 0;
    }
    apply_crash_opts(r, &n[r->n_scens].sc.fault);
    memset(sc, 0, sizeof(*sc));
    r->n_scens++;
    if ((rc = ota_fs_mkdirs(r->run_dir, err)) < 0)
        return rc;
    return expand(r, r->n_scens - 1, err);
}
