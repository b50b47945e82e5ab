/* The runner (runner.h). Each case runs in a child process of its own, so a
 * trial's processes, signals and proxy thread never meet another's; the
 * parent is the only writer of the run database. A child leaves its result
 * in CASE_DIR.result (the trial struct's plain fields, then the state
 * lines) and exits. */
#include "otasim/fast.h"
#include "otasim/runner.h"

#include <dirent.h>
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
#include "otasim/runstop.h"

#include "otasim/agent.h"
#include "runner_impl.h"

/* The runner prints nothing: what a person should see goes to the sink. */
void otasim_runner_tell(const struct otasim_runner *r, const struct otasim_run_event *ev)
{
    if (r->o.sink.fn)
        r->o.sink.fn(r->o.sink.user, ev);
}

int otasim_runner_new(const struct otasim_tools *t, const struct otasim_run_opts *o,
                      struct otasim_runner **ret, struct ota_err *err)
{
    struct otasim_runner *r = calloc(1, sizeof(*r));
    int rc;

    if (!r)
        return ota_err_set(err, ENOMEM, "out of memory");
    r->t = *t;
    r->o = *o;
    r->fault_points = -2;
    if (r->o.jobs < 1)
        r->o.jobs = 2;
    /* Trial trees and servers live on a RAM file system when there is one:
     * the power model does not need a real disk (it rebuilds from its own
     * journal), and thousands of fsyncs per minute on a real disk would be
     * the slowest part of a run. --trees (OTASIM_TREES) chooses. */
    {
        const char *trees = o->trees_dir ? o->trees_dir : getenv("OTASIM_TREES");
        if (!trees || !*trees)
            trees = access("/dev/shm", W_OK) == 0 && t->target != OTASIM_TARGET_QEMU ? "/dev/shm"
                                                                                     : t->work;
        /* unique, not just by pid: a failed run's dir is kept, and pids come round again */
        snprintf(r->run_dir, sizeof(r->run_dir), "%s/ota-sim-run-%d-XXXXXX", trees, (int)getpid());
        if (ota_fs_mkdirs(trees, NULL) < 0 || !mkdtemp(r->run_dir)) {
            int e = errno;
            free(r);
            return ota_err_set(err, e, "cannot make a run dir in %s: %s", trees, strerror(e));
        }
    }
    /* before any process of the run starts: all of them come back to us */
    if (o->stop_on_signal && (rc = otasim_runstop_arm(r->run_dir, t->keep, err)) < 0) {
        rmdir(r->run_dir);
        free(r);
        return rc;
    }
    otasim_prefork_init();
    if ((rc = otasim_zygote_start(t, err)) < 0) {
        otasim_runstop_disarm();
        rmdir(r->run_dir);
        free(r);
        return rc;
    }
    *ret = r;
    return 0;
}

void otasim_runner_free(struct otasim_runner *r)
{
    if (!r)
        return;
    otasim_zygote_stop();
    for (size_t i = 0; i < r->n_scens; i++) {
        otasim_server_stop(&r->scens[i].srv);
        otasim_scenario_release(&r->scens[i].sc);
    }
    for (size_t i = 0; i < r->n_cases; i++)
        otasim_trial_free(&r->cases[i].tr);
    free(r->scens);
    free(r->cases);
    for (size_t i = 0; i < r->n_skips; i++)
        free(r->skips[i]);
    free(r->skips);
    otasim_rundb_close(r->db);
    otasim_runstop_disarm(); /* what is left of the run's processes */
    /* A run that ended before its trials (--list, whose recording runs start
     * servers; an error) still has its servers' dirs: they go too, unless
     * kept (the end of a run removed the rest already). */
    if (r->t.keep || r->t.target == OTASIM_TARGET_QEMU)
        rmdir(r->run_dir); /* if nothing was kept in it */
    else
        ota_ignore(ota_fs_remove_tree(r->run_dir, NULL));
    free(r);
}

void otasim_runner_case_id(struct rcase *c, const char *id)
{
    if (id != c->id)
        snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->device_id, sizeof(c->device_id), "sim-%08x-%llu", otasim_hash32(c->id),
             (unsigned long long)c->seed);
}

void otasim_runner_mix_group(const struct otasim_runner *r, size_t si, char *buf, size_t cap)
{
    snprintf(buf, cap, "mix-%08x-%zu", otasim_hash32(r->run_dir), si);
}

/* A case; subset >= 0: the subset-th seeded rebuild of a power cut under a
 * crash model other than minimal ("/reorder-2" ends its id). */
static struct rcase *new_case_sub(struct otasim_runner *r, size_t scen,
                                  const struct otasim_fault *f, int subset, struct ota_err *err)
{
    struct rcase *c;
    char label[160];

    if (r->n_cases == r->cap_cases) {
        size_t cap = r->cap_cases ? r->cap_cases * 2 : 64;
        struct rcase *n = realloc(r->cases, cap * sizeof(*n));
        if (!n) {
            ota_ignore(ota_err_set(err, ENOMEM, "out of memory"));
            return NULL;
        }
        r->cases = n;
        r->cap_cases = cap;
    }
    c = &r->cases[r->n_cases];
    memset(c, 0, sizeof(*c));
    c->scen = scen;
    c->fault = *f;
    c->fault.n_states = 0;
    c->fault.all_points = 0;
    c->seed = r->o.seed + r->n_cases;
    c->equivalent_to = -1;
    otasim_fault_label(&c->fault, label, sizeof(label));
    if (c->fault.kind == OTASIM_FAULT_NONE && c->fault.trigger.kind == OTASIM_TRIGGER_NONE)
        snprintf(c->id, sizeof(c->id), "%s", r->scens[scen].sc.name);
    else
        snprintf(c->id, sizeof(c->id), "%s/%s", r->scens[scen].sc.name, label);
    if (subset >= 0) {
        size_t l = strlen(c->id);
        snprintf(c->id + l, sizeof(c->id) - l, "/%s-%d",
                 otasim_crash_model_names[c->fault.crash_model], subset + 1);
    }
    otasim_runner_case_id(c, c->id);
    r->scens[scen].cases_left++;
    r->n_cases++;
    return c;
}

/* Whether f's cuts become several trials, one per seeded subset. */
int otasim_runner_subsets_of(const struct otasim_fault *f)
{
    if (f->kind != OTASIM_FAULT_POWER_CUT || f->crash_model == OTASIM_CRASH_MINIMAL)
        return 0;
    return f->crash_subsets > 0 ? f->crash_subsets : 1;
}

/* The case(s) of fault f: one, or one per subset of its crash model (each its
 * own seed). Returns the first. */
struct rcase *otasim_runner_new_case(struct otasim_runner *r, size_t scen,
                                     const struct otasim_fault *f, struct ota_err *err)
{
    size_t first = r->n_cases; /* an index: the array moves as it grows */
    int n = otasim_runner_subsets_of(f);

    if (n == 0)
        return new_case_sub(r, scen, f, -1, err);
    for (int k = 0; k < n; k++)
        if (!new_case_sub(r, scen, f, k, err))
            return NULL;
    return &r->cases[first];
}

static int ensure_built(struct otasim_runner *r, struct scen *s, struct ota_err *err)
{
    char priv[PATH_MAX], rogue[PATH_MAX];
    int rc;

    if (s->built_ok)
        return 0;
    if ((rc = otasim_keys(&r->t, priv, s->pub, rogue, sizeof(priv), err)) < 0)
        return ota_err_prefix(err, rc, "release keys");
    for (size_t i = 0; i < s->sc.n_rel; i++)
        if ((rc = otasim_build_release(&r->t, &s->sc, &s->sc.rel[i], &s->built[i], err)) < 0)
            return ota_err_prefix(err, rc, "release %s", s->sc.rel[i].version);
    s->built_ok = 1;
    return 0;
}

/* A fault plan with the scenario's rules once per case device. */
static int put_plan(struct otasim_runner *r, size_t si, struct ota_err *err)
{
    struct scen *s = &r->scens[si];
    json_t *plan = json_pack("{s:I, s:[]}", "seed", (json_int_t)r->o.seed, "rules");
    json_t *rules = json_object_get(plan, "rules");
    char *text = NULL;
    int rc = 0;

    for (size_t i = 0; i < r->n_cases; i++) {
        size_t k;
        json_t *rule;
        if (r->cases[i].scen != si)
            continue;
        json_array_foreach(s->sc.server_faults, k, rule)
        {
            json_t *copy = json_deep_copy(rule), *match;
            char id[160];
            const char *base = json_string_value(json_object_get(rule, "id"));
            otasim_fault_rule_id(base, i, id, sizeof(id));
            json_object_set_new(copy, "id", json_string(id));
            match = json_object_get(copy, "match");
            if (!match) {
                match = json_object();
                json_object_set_new(copy, "match", match);
            }
            json_object_set_new(match, "device", json_string(r->cases[i].device_id));
            json_array_append_new(rules, copy);
        }
    }
    if (ota_json_dump(plan, &text) < 0)
        rc = ota_err_set(err, ENOMEM, "out of memory");
    else
        rc = otasim_server_put_faults(&s->srv, text, err);
    free(text);
    json_decref(plan);
    return rc;
}

/* A mix (scenario.h): the target as one .swu for the swupdate devices, every
 * device of the mix enrolled in its group, and one rollout of the target's
 * ota-pack release for the group: the DDI face gives the swupdate devices
 * the .swu of that version (docs/protocol.md), the others the release. */
static int mix_setup(struct otasim_runner *r, size_t si, struct ota_err *err)
{
    struct scen *s = &r->scens[si];
    const struct otasim_release *tgt = otasim_scenario_target(&s->sc);
    char group[64], dir[PATH_MAX + 32], id[64], rid[32], rel[160] = "";
    json_t *o;
    uint32_t h;
    int rc;

    if (!tgt)
        return ota_err_set(err, EINVAL, "mix: the scenario offers no release");
    otasim_runner_mix_group(r, si, group, sizeof(group));
    h = otasim_hash32(group);
    if (s->sc.mix_swupdate > 0) {
        snprintf(dir, sizeof(dir), "%s/mix-%zu", r->run_dir, si);
        snprintf(id, sizeof(id), "swu-mx-%08x", h);
        if ((rc = otasim_swupdate_add_release(&r->t, &s->srv, &s->sc, s->built, dir, id, err)) < 0)
            return ota_err_prefix(err, rc, "mix: the .swu");
    }
    for (size_t k = 0; k < r->n_cases; k++)
        if (r->cases[k].scen == si &&
            (rc = otasim_server_enroll_device(&s->srv, r->cases[k].device_id, s->sc.device_type,
                                              group, NULL, 0, err)) < 0)
            return ota_err_prefix(err, rc, "mix");
    if ((rc = otasim_server_release_of(&s->srv, tgt->version, rel, sizeof(rel), err)) < 0)
        return ota_err_prefix(err, rc, "mix");
    snprintf(rid, sizeof(rid), "mx-%08x", h);
    o = json_pack("{s:s, s:s, s:s, s:{s:s}}", "id", rid, "release_id", rel, "strategy", "immediate",
                  "filters", "group", group);
    if (!o)
        return ota_err_set(err, ENOMEM, "out of memory");
    rc = otasim_server_rollout_start(&s->srv, o, err);
    json_decref(o);
    return rc;
}

int otasim_runner_ensure_server(struct otasim_runner *r, size_t si, struct ota_err *err)
{
    struct scen *s = &r->scens[si];
    char dir[PATH_MAX + 64];
    int rc;

    if (s->srv_up)
        return 0;
    if ((rc = ensure_built(r, s, err)) < 0)
        return rc;
    snprintf(dir, sizeof(dir), "%s/server-%zu", r->run_dir, si);
    if ((rc = otasim_server_start(&r->t, dir, &s->srv, err)) < 0)
        return rc;
    s->srv_up = 1;
    for (size_t i = 0; i < s->sc.n_rel; i++) {
        const struct otasim_release *rel = &s->sc.rel[i];
        char out[PATH_MAX + 8];
        if (rel->factory)
            continue;
        snprintf(out, sizeof(out), "%s/out", s->built[i].dir);
        if ((rc = otasim_server_add_release(&r->t, &s->srv, out, NULL, rel->publish, err)) < 0)
            return rc;
    }
    if (s->sc.server_faults && (rc = put_plan(r, si, err)) < 0)
        return rc;
    if (s->sc.mix_ota + s->sc.mix_swupdate > 0 && (rc = mix_setup(r, si, err)) < 0)
        return rc;
    return 0;
}

static void setup_trial(struct otasim_runner *r, size_t ci)
{
    struct rcase *c = &r->cases[ci];
    struct scen *s = &r->scens[c->scen];
    struct otasim_trial *tr = &c->tr;

    memset(tr, 0, sizeof(*tr));
    tr->sc = &s->sc;
    tr->fault = c->fault;
    tr->seed = c->seed;
    ota_strlcpy(tr->device_id, c->device_id, sizeof(tr->device_id));
    snprintf(tr->dir, sizeof(tr->dir), "%s/case-%zu", r->run_dir, ci);
    tr->srv = &s->srv;
    tr->built = s->built;
    ota_strlcpy(tr->pub, s->pub, sizeof(tr->pub));
    if (s->sc.mix_ota + s->sc.mix_swupdate > 0) { /* one group, one rollout */
        ota_strlcpy(tr->agent, c->agent, sizeof(tr->agent));
        otasim_runner_mix_group(r, c->scen, tr->group, sizeof(tr->group));
    }
    /* the ids put_plan gave this case's copies of the server rules */
    if (s->sc.server_faults) {
        size_t k;
        json_t *rule;
        json_array_foreach(s->sc.server_faults, k, rule)
        {
            if (tr->n_srv_rules == OTASIM_MAX_SERVER_RULES)
                break;
            otasim_fault_rule_id(json_string_value(json_object_get(rule, "id")), ci,
                                 tr->srv_rules[tr->n_srv_rules].rule,
                                 sizeof(tr->srv_rules[0].rule));
            tr->srv_rules[tr->n_srv_rules++].applied = -1;
        }
    }
}

/* ---- running ------------------------------------------------------------- */

static int save_result(const struct otasim_trial *tr, const char *path)
{
    size_t sl = tr->state_lines ? strlen(tr->state_lines) : 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int ok;

    if (fd < 0)
        return -errno;
    ok = write(fd, tr, sizeof(*tr)) == (ssize_t)sizeof(*tr) &&
         write(fd, &sl, sizeof(sl)) == (ssize_t)sizeof(sl) &&
         (sl == 0 || write(fd, tr->state_lines, sl) == (ssize_t)sl);
    close(fd);
    return ok ? 0 : -EIO;
}

static void load_result(struct rcase *c, const char *path)
{
    struct otasim_trial keep = c->tr;
    char *text = NULL;
    size_t n = 0, sl;

    if (ota_fs_read_all(path, 1 << 26, &text, &n, NULL) < 0 || n < sizeof(c->tr) + sizeof(sl)) {
        c->tr.outcome = OTASIM_ERROR;
        snprintf(c->tr.detail, sizeof(c->tr.detail), "harness: the trial process left no result");
        free(text);
        return;
    }
    memcpy(&c->tr, text, sizeof(c->tr));
    memcpy(&sl, text + sizeof(c->tr), sizeof(sl));
    /* pointers are the parent's own */
    c->tr.sc = keep.sc;
    c->tr.srv = keep.srv;
    c->tr.built = keep.built;
    c->tr.state_lines = NULL;
    if (sl && sizeof(c->tr) + sizeof(sl) + sl <= n) {
        c->tr.state_lines = malloc(sl + 1);
        if (c->tr.state_lines) {
            memcpy(c->tr.state_lines, text + sizeof(c->tr) + sizeof(sl), sl);
            c->tr.state_lines[sl] = '\0';
        }
    }
    free(text);
}

static void child_main(struct otasim_runner *r, size_t ci)
{
    struct rcase *c = &r->cases[ci];
    struct ota_err e = {0};
    char path[PATH_MAX + 16];

    signal(SIGINT, SIG_DFL);
    if ((r->t.target == OTASIM_TARGET_QEMU ? otasim_qemu_trial_run(&r->t, &c->tr, &e)
                                           : otasim_trial_run(&r->t, &c->tr, &e)) < 0) {
        c->tr.outcome = OTASIM_ERROR;
        snprintf(c->tr.detail, sizeof(c->tr.detail), "harness: %s", e.reason);
    }
    snprintf(path, sizeof(path), "%s.result", c->tr.dir);
    _exit(save_result(&c->tr, path) == 0 ? 0 : 3);
}

static void progress(struct otasim_runner *r, const struct otasim_run_stats *s, int64_t t0,
                     int final)
{
    otasim_runner_tell(r, &(struct otasim_run_event){.kind = OTASIM_RUN_PROGRESS,
                                                     .stats = s,
                                                     .elapsed_ms = otasim_now_ms() - t0,
                                                     .final = final});
}

/* WORK/failed keeps the failed trials' trees of this many runs. */
#define KEEP_FAILED_RUNS 5

struct aged {
    int64_t t; /* mtime, ns */
    char name[256];
};

static int newest_first(const void *a, const void *b)
{
    const struct aged *x = a, *y = b;
    return x->t < y->t ? 1 : x->t > y->t ? -1 : strcmp(x->name, y->name);
}

/* Removes all but the newest keep-1 run dirs of WORK/failed. */
static void prune_failed(const char *failed, size_t keep)
{
    struct aged *v = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(failed);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char p[PATH_MAX + 300];
        struct stat st;
        if (strncmp(de->d_name, "ota-sim-run-", 12) != 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", failed, de->d_name);
        if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (n == cap) {
            void *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        v[n].t = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        ota_strlcpy(v[n++].name, de->d_name, sizeof(v[0].name));
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), newest_first);
    for (size_t i = keep > 0 ? keep - 1 : 0; i < n; i++) {
        char p[PATH_MAX + 300];
        snprintf(p, sizeof(p), "%s/%s", failed, v[i].name);
        ota_ignore(ota_fs_remove_tree(p, NULL));
    }
    free(v);
}

/* A failed trial's tree, out of the trees dir (a RAM file system shared by
 * every run) into WORK/failed/RUN/case-N, where the last KEEP_FAILED_RUNS
 * runs' are kept: its path in out, "" when it has none. */
static int keep_failed(struct otasim_runner *r, struct rcase *c, char *out, size_t cap,
                       struct ota_err *err)
{
    char failed[PATH_MAX], dir[PATH_MAX + 300], dst[PATH_MAX * 2], log[PATH_MAX + 320];
    const char *slash = strrchr(c->tr.dir, '/');
    struct stat st;
    int rc;

    out[0] = '\0';
    if (!slash || lstat(c->tr.dir, &st) < 0)
        return 0;
    snprintf(failed, sizeof(failed), "%s/failed", r->t.work);
    snprintf(dir, sizeof(dir), "%s/%s", failed, strrchr(r->run_dir, '/') + 1);
    if (!r->failed_made) {
        prune_failed(failed, KEEP_FAILED_RUNS);
        if ((rc = ota_fs_mkdirs(dir, err)) < 0)
            return ota_err_prefix(err, rc, "keeping %s", c->tr.dir);
        r->failed_made = 1;
    }
    snprintf(dst, sizeof(dst), "%s%s", dir, slash);
    if (rename(c->tr.dir, dst) < 0) {
        /* another file system (/dev/shm to WORK): a copy */
        const char *argv[] = {"cp", "-a", "--", c->tr.dir, dst, NULL};
        if (errno != EXDEV)
            return ota_err_set(err, errno, "keeping %s: %s", c->tr.dir, strerror(errno));
        snprintf(log, sizeof(log), "%s/cp.log", dir);
        if ((rc = otasim_run_checked(argv, log, err)) < 0)
            return ota_err_prefix(err, rc, "keeping %s", c->tr.dir);
        ota_ignore(ota_fs_remove_tree(c->tr.dir, NULL));
    }
    snprintf(out, cap, "%s", dst);
    return 0;
}

/* Where the trial of case c keeps its tree (--keep: where it ran; a failure:
 * WORK/failed/...): out, "" for none. */
static void kept_tree(struct otasim_runner *r, struct rcase *c, char *out, size_t cap)
{
    struct ota_err e = {0};
    struct stat st;

    out[0] = '\0';
    if (c->equivalent_to >= 0 || c->tr.outcome == OTASIM_NOT_RUN || !c->tr.dir[0])
        return;
    if (r->t.keep || r->t.target == OTASIM_TARGET_QEMU) {
        if (lstat(c->tr.dir, &st) == 0)
            snprintf(out, cap, "%s", c->tr.dir);
    } else if (c->tr.outcome != OTASIM_PASS && keep_failed(r, c, out, cap, &e) < 0) {
        otasim_runner_tell(
            r, &(struct otasim_run_event){.kind = OTASIM_RUN_WARNING, .detail = e.reason});
    }
}

static void record(struct otasim_runner *r, size_t ci, struct otasim_run_stats *s)
{
    struct rcase *c = &r->cases[ci];
    struct ota_err e = {0};
    char repro[PATH_MAX * 3], tree[PATH_MAX * 2];
    const char *eq = c->equivalent_to >= 0 ? r->cases[c->equivalent_to].id : "";

    otasim_reproduce_cmd(&r->t, &c->tr, repro, sizeof(repro));
    kept_tree(r, c, tree, sizeof(tree));
    if (c->tr.outcome == OTASIM_PASS)
        s->passed++;
    else if (c->tr.outcome == OTASIM_FAIL)
        s->failed++;
    else if (c->tr.outcome == OTASIM_NOT_RUN)
        s->not_run++;
    else if (c->tr.outcome == OTASIM_ENVIRONMENT)
        s->environment++;
    else
        s->errors++;
    if (c->tr.outcome != OTASIM_PASS && c->tr.outcome != OTASIM_NOT_RUN && c->equivalent_to < 0)
        otasim_runner_tell(
            r, &(struct otasim_run_event){.kind = OTASIM_RUN_FAILED,
                                          .id = c->id,
                                          .detail = c->tr.detail,
                                          .verdict = otasim_outcome_names[c->tr.outcome],
                                          .reproduce = repro,
                                          .logs = c->tr.logs,
                                          .tree = tree});
    else if (tree[0])
        otasim_runner_tell(
            r, &(struct otasim_run_event){.kind = OTASIM_RUN_KEPT, .id = c->id, .tree = tree});
    if (r->db && otasim_rundb_add(r->db, r->run_id, c->id, &c->tr, repro, eq, &e) < 0)
        otasim_runner_tell(
            r, &(struct otasim_run_event){.kind = OTASIM_RUN_WARNING, .detail = e.reason});
}

/* Whether the agent under test has named fault points (`ota-agent
 * --build-info`): 1 yes, 0 built without them, -1 cannot tell (an agent
 * without --build-info: its trials run as before). Asked once. */
static int agent_fault_points(struct otasim_runner *r)
{
    const char *argv[] = {r->t.agent, "--build-info", NULL};
    char *out = NULL;
    int st = 0;

    if (r->fault_points != -2)
        return r->fault_points;
    r->fault_points = -1;
    if (otasim_run(argv, NULL, 10000, &out, NULL, &st, NULL) == 0 && st == 0 && out) {
        if (strstr(out, "fault-points: on"))
            r->fault_points = 1;
        else if (strstr(out, "fault-points: off"))
            r->fault_points = 0;
    }
    free(out);
    return r->fault_points;
}

/* A case the agent under test cannot run (a fault-point trigger, an agent
 * without fault points) is not run: not a failure of the agent, not a pass.
 * Said even with -q: otherwise a run of nothing but such cases looks like a
 * failed agent with no word of why. */
static int cannot_run(struct otasim_runner *r, size_t ci, struct otasim_run_stats *s)
{
    struct rcase *c = &r->cases[ci];

    if (r->t.target != OTASIM_TARGET_NATIVE ||
        c->fault.trigger.kind != OTASIM_TRIGGER_FAULT_POINT || agent_fault_points(r) != 0)
        return 0;
    setup_trial(r, ci);
    c->tr.outcome = OTASIM_NOT_RUN;
    c->tr.n_srv_rules = 0;
    ota_strlcpy(c->tr.target, "native", sizeof(c->tr.target));
    snprintf(c->tr.detail, sizeof(c->tr.detail),
             "not run: the agent was built without named fault points (trigger fault_point: "
             "%s): cmake -DOTA_FAULT_POINTS=ON",
             c->fault.trigger.fault_point);
    otasim_runner_tell(r, &(struct otasim_run_event){.kind = OTASIM_RUN_NOT_RUN,
                                                     .id = c->id,
                                                     .detail = c->tr.detail,
                                                     .agent = r->t.agent});
    c->done = 1;
    record(r, ci, s);
    if (--r->scens[c->scen].cases_left == 0)
        otasim_server_stop(&r->scens[c->scen].srv);
    return 1;
}

/* The failed recording runs: trials of their own, already run. */
static void record_preruns(struct otasim_runner *r, struct otasim_run_stats *s)
{
    for (size_t i = 0; i < r->n_cases; i++) {
        struct rcase *c = &r->cases[i];
        struct scen *sc = &r->scens[c->scen];
        if (!c->prerun)
            continue;
        c->tr.sc = &sc->sc; /* the scens array moved since */
        c->tr.srv = &sc->srv;
        c->tr.built = sc->built;
        s->run++;
        record(r, i, s);
    }
}

/* Starts cases until -j of them run (none after a failure with
 * --fail-fast); each in a child process of its own. */
static int start_cases(struct otasim_runner *r, const struct otasim_run_stats *s, size_t *next,
                       size_t *running, struct ota_err *err)
{
    int rc;

    while (*running < (size_t)r->o.jobs && *next < r->n_cases &&
           !(r->o.fail_fast && (s->failed || s->errors))) {
        struct rcase *c = &r->cases[*next];
        pid_t pid;
        if (c->done || c->equivalent_to >= 0) {
            (*next)++;
            continue;
        }
        if ((rc = otasim_runner_ensure_server(r, c->scen, err)) < 0)
            return rc;
        setup_trial(r, *next);
        fflush(NULL);
        pid = fork();
        if (pid < 0)
            return ota_err_set(err, errno, "fork: %s", strerror(errno));
        if (pid == 0)
            child_main(r, *next);
        c->pid = pid;
        (*running)++;
        (*next)++;
    }
    return 0;
}

/* Waits for a case's child and records its result: 1, or 0 when the wait
 * was interrupted or reaped another process. */
static int reap_case(struct otasim_runner *r, struct otasim_run_stats *s, size_t *running,
                     size_t *done, struct ota_err *err)
{
    int st;
    pid_t pid = waitpid(-1, &st, 0);

    if (pid < 0) {
        if (errno == EINTR)
            return 0;
        return ota_err_set(err, errno, "waitpid: %s", strerror(errno));
    }
    for (size_t i = 0; i < r->n_cases; i++) {
        struct rcase *c = &r->cases[i];
        char path[PATH_MAX + 16];
        if (c->pid != pid || c->done)
            continue;
        c->done = 1;
        (*running)--;
        (*done)++;
        snprintf(path, sizeof(path), "%s.result", c->tr.dir);
        load_result(c, path);
        unlink(path);
        s->run++;
        record(r, i, s);
        if (--r->scens[c->scen].cases_left == 0)
            otasim_server_stop(&r->scens[c->scen].srv);
        return 1;
    }
    return 0; /* not a case: a process of a trial that came back to us (runstop.h) */
}

/* Crash points that cannot differ from a run one: the same result. */
static void copy_equivalents(struct otasim_runner *r, struct otasim_run_stats *s)
{
    for (size_t i = 0; i < r->n_cases; i++) {
        struct rcase *c = &r->cases[i];
        if (c->done || c->equivalent_to < 0 || !r->cases[c->equivalent_to].done)
            continue;
        struct rcase *rep = &r->cases[c->equivalent_to];
        uint64_t point = c->fault.trigger.point;
        c->tr = rep->tr;
        c->tr.state_lines = rep->tr.state_lines ? strdup(rep->tr.state_lines) : NULL;
        c->tr.fault.trigger.point = point;
        c->tr.seed = c->seed;
        ota_strlcpy(c->tr.device_id, rep->device_id, sizeof(c->tr.device_id));
        c->done = 1;
        record(r, i, s);
    }
}

/* Runs the cases, -j at a time, until all ran (or --fail-fast stopped). */
static int run_cases(struct otasim_runner *r, struct otasim_run_stats *s, int64_t t0,
                     struct ota_err *err)
{
    size_t next = 0, running = 0, done = 0, to_run = 0;
    int64_t last = 0;
    int rc;

    for (size_t i = 0; i < r->n_cases; i++) {
        if (r->cases[i].done || (r->cases[i].equivalent_to < 0 && cannot_run(r, i, s)))
            continue;
        if (r->cases[i].equivalent_to >= 0)
            s->equivalent++;
        else
            to_run++;
    }
    while (done < to_run && !(r->o.fail_fast && (s->failed || s->errors) && running == 0)) {
        if ((rc = start_cases(r, s, &next, &running, err)) < 0 ||
            (rc = reap_case(r, s, &running, &done, err)) < 0)
            return rc;
        if (rc == 0)
            continue;
        /* the last one is the final line (runner_run) */
        if (otasim_now_ms() - last > 1000 && done < to_run) {
            progress(r, s, t0, 0);
            last = otasim_now_ms();
        }
    }
    return 0;
}

/* What the run does not show, in the run database: what its tier declares
 * it does not model, and the cases the tier cannot run. */
static int record_gaps(struct otasim_runner *r, struct ota_err *err)
{
    const char *tier = otasim_target_names[r->t.target];
    int rc;

    rc = otasim_rundb_gaps(r->db, r->run_id, "not-modelled", tier,
                           r->o.blocks ? otasim_qemu_blocks_gaps : otasim_target_gaps[r->t.target],
                           err);
    for (size_t i = 0; i < r->n_skips && rc == 0; i++) {
        char *tab = strchr(r->skips[i], '\t');
        *tab = 0;
        rc = otasim_rundb_gap(r->db, r->run_id, "skipped", r->skips[i], tab + 1, err);
        *tab = '\t';
    }
    return rc;
}

/* After a harness failure: the cases still running are killed. */
static void kill_running(struct otasim_runner *r)
{
    for (size_t i = 0; i < r->n_cases; i++)
        if (r->cases[i].pid > 0 && !r->cases[i].done) {
            int st;
            kill(r->cases[i].pid, SIGKILL);
            ota_ignore(otasim_wait(r->cases[i].pid, -1, &st));
        }
}

int otasim_runner_run(struct otasim_runner *r, struct otasim_run_stats *ret, struct ota_err *err)
{
    struct otasim_run_stats s = {0};
    char dbp[PATH_MAX + 32];
    int64_t t0 = otasim_now_ms();
    int rc = 0;

    s.cases = r->n_cases;
    s.skipped = r->skipped;
    if (r->o.n_only_cases && (rc = otasim_runner_select_cases(r, &s, err)) < 0)
        return rc;
    if (r->o.list) {
        for (size_t i = 0; i < r->n_cases; i++)
            if (!r->cases[i].done || r->cases[i].prerun)
                otasim_runner_tell(
                    r, &(struct otasim_run_event){.kind = OTASIM_RUN_LISTED, .id = r->cases[i].id});
        *ret = s;
        return 0;
    }
    snprintf(dbp, sizeof(dbp), "%s/runs.db", r->t.work);
    if ((rc = otasim_rundb_open(r->o.db_path ? r->o.db_path : dbp, &r->db, err)) < 0 ||
        (rc = otasim_rundb_begin(r->db, r->o.command ? r->o.command : "", r->t.agent, &r->run_id,
                                 err)) < 0 ||
        (rc = record_gaps(r, err)) < 0)
        return rc;
    record_preruns(r, &s);
    /* servers started early (recordings) learn the devices of every case now */
    for (size_t i = 0; i < r->n_scens; i++)
        if (r->scens[i].srv_up && r->scens[i].sc.server_faults && (rc = put_plan(r, i, err)) < 0)
            return rc;
    if (r->o.blocks) {
        if ((rc = otasim_runner_run_blocks(r, &s, err)) < 0)
            goto out;
    } else if ((rc = run_cases(r, &s, t0, err)) < 0) {
        goto out;
    }
    copy_equivalents(r, &s);
    progress(r, &s, t0, 1);
    if ((rc = otasim_rundb_end(r->db, r->run_id, err)) < 0)
        goto out;
    if (r->o.junit_path && (rc = otasim_rundb_junit(r->db, r->run_id, r->o.junit_path, err)) < 0)
        goto out;
out:
    if (rc < 0)
        kill_running(r);
    /* QEMU trials keep their serial logs (the run database names them); a
     * native run's failed trees are in WORK/failed by now */
    if (r->t.keep || r->t.target == OTASIM_TARGET_QEMU)
        otasim_runner_tell(r,
                           &(struct otasim_run_event){.kind = OTASIM_RUN_KEPT, .tree = r->run_dir});
    else
        ota_ignore(ota_fs_remove_tree(r->run_dir, NULL));
    s.wall_ms = otasim_now_ms() - t0;
    *ret = s;
    return rc;
}
