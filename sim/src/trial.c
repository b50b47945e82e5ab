/* One trial: provision, boot, the agent's passes with the fault armed until
 * it fires, the reboots the fault or the agent asks for (a power cut
 * rebuilds the tree first), passes until the agent settles, then the
 * invariant checker. Also the recording run that counts the persistence
 * points of an update cycle and finds which crash points can differ. */
#include "otasim/sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/agent.h"
#include "otasim/device.h"
#include "otasim/fast.h"
#include "otasim/invariants.h"
#include "otasim/journal.h"
#include "otasim/power.h"
#include "otasim/proc.h"

#define MAX_PASSES 48

const char *const otasim_outcome_names[OTASIM_OUTCOME_MAX] = {"pass", "fail", "error", "not-run",
                                                              "environment"};

/* $OTASIM_TRACE=1: each step of a trial with its time, on stderr (the one
 * place in the library that prints: it is a debugging aid, off by default). */
static void trace(int64_t t0, const char *what, int n)
{
    static int on = -1;

    if (on < 0)
        on = getenv("OTASIM_TRACE") && *getenv("OTASIM_TRACE") == '1';
    if (on) {
        /* and the CPU of the processes reaped so far (agent passes, service
         * commands): where a trial's time goes when the machine is shared */
        struct rusage ru, me;
        long long cpu = -1, self = -1;
        if (getrusage(RUSAGE_CHILDREN, &ru) == 0 && getrusage(RUSAGE_SELF, &me) == 0) {
            cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000LL +
                  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000 +
                  otasim_zygote_children_cpu_us() / 1000;
            self = (me.ru_utime.tv_sec + me.ru_stime.tv_sec) * 1000LL +
                   (me.ru_utime.tv_usec + me.ru_stime.tv_usec) / 1000;
        }
        fprintf(stderr,
                "ota-sim trace: %6lld ms  cpu: children %4lld ms, ota-sim %4lld ms  %s %d\n",
                (long long)(otasim_now_ms() - t0), cpu, self, what, n);
    }
}

static int armed_kind(enum otasim_fault_kind k)
{
    return k != OTASIM_FAULT_NONE && k != OTASIM_FAULT_CORRUPT_BOOTENV;
}

void otasim_trial_free(struct otasim_trial *tr)
{
    if (!tr)
        return;
    free(tr->state_lines);
    tr->state_lines = NULL;
}

/* A pass whose journal holds a mutation the power model cannot represent
 * ends the trial as a harness error: a rebuild would treat it as durable. */
static int check_modelled(const char *journal, struct ota_err *err)
{
    char what[PATH_MAX + 64];

    if (otasim_journal_unmodelled(journal, what, sizeof(what)))
        return ota_err_set(err, ENOTSUP, "unmodelled call %s (the power model cannot rebuild it)",
                           what);
    return 0;
}

/* The tree after a power cut, per the trial's crash model; its subset is
 * chosen by the trial's seed (and the pass, should one trial cut twice). */
static int rebuild(const struct otasim_trial *tr, const char *root, const char *journal, int pass,
                   struct otasim_rebuild_stats *rs, struct ota_err *err)
{
    struct otasim_crash cm = {tr->fault.crash_model,
                              tr->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)pass};

    return otasim_power_rebuild_model(root, journal, &cm, rs, err);
}

/* A trial under way: the device, what its passes left, the fault's arming. */
struct run {
    struct otasim_trial *tr;
    struct otasim_device d;
    struct otasim_pass_info info[MAX_PASSES];
    size_t n_info;
    struct otasim_settle settle;
    struct otasim_arm arm;
    int armed;      /* the fault is still to be armed in a pass */
    int cycle_open; /* the update cycle has not ended yet */
    uint64_t cycle_calls;
    int64_t t0, fault_ms;
    char *env_before; /* corrupt-bootenv: the env as the fault left it */
    size_t env_len;
};

/* corrupt-bootenv: the env is broken before the first pass. */
static int corrupt_env(struct run *ru, struct ota_err *err)
{
    struct otasim_trial *tr = ru->tr;
    char p[PATH_MAX + 32];
    int r;

    snprintf(p, sizeof(p), "%s/boot/uboot.env", ru->d.root);
    if (tr->sc->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL, "corrupt-bootenv needs the rootfs profile");
    if (tr->fault.trigger.kind != OTASIM_TRIGGER_NONE)
        return ota_err_set(err, EINVAL, "corrupt-bootenv takes no trigger (it is made first)");
    if ((r = otasim_bootenv_corrupt(p, err)) < 0 ||
        (r = ota_fs_read_all(p, 1 << 20, &ru->env_before, &ru->env_len, err)) < 0)
        return r;
    /* fired when the device reads it as corrupt, not when a byte was flipped */
    tr->fired =
        otasim_bootenv_get(ru->d.env_config, OTA_ENV_BOOT_PART, p, sizeof(p), NULL) == -EBADMSG;
    ru->fault_ms = otasim_now_ms();
    return 0;
}

/* A pass that crashed: a power cut rebuilds the tree and boots again, an
 * agent crash only loses the stash. */
static int after_crash(struct run *ru, const struct otasim_pass *ps, int pass, struct ota_err *err)
{
    struct otasim_rebuild_stats rs;
    int r;

    ru->fault_ms = otasim_now_ms();
    if (!ps->power)
        return otasim_power_drop_stash(ru->d.root, err);
    otasim_device_kill(&ru->d);
    if ((r = rebuild(ru->tr, ru->d.root, ps->journal, pass, &rs, err)) < 0)
        return r;
    trace(ru->t0, "rebuilt, records undone", (int)(rs.writes_undone + rs.dirops_undone));
    trace(ru->t0, "  unsynced kept (reorder)", (int)rs.kept_unsynced);
    trace(ru->t0, "  sectors of torn writes kept", (int)rs.torn_sectors);
    if ((r = otasim_device_boot(&ru->d, err)) < 0)
        return r;
    trace(ru->t0, "booted", 0);
    return 0;
}

/* A point trigger the pass did not reach lies in a later pass of the cycle
 * (after a reboot), or nowhere once the cycle ended. */
static void rearm(struct run *ru, const struct otasim_arm *a, const struct otasim_pass *ps)
{
    const struct otasim_fault *f = &ru->tr->fault;

    if (!a || f->trigger.kind != OTASIM_TRIGGER_POINT || ru->tr->fired ||
        !(f->kind == OTASIM_FAULT_POWER_CUT || f->kind == OTASIM_FAULT_AGENT_CRASH ||
          f->kind == OTASIM_FAULT_DISK_FULL || f->kind == OTASIM_FAULT_EIO))
        return;
    if (ru->arm.point > ps->calls && ru->cycle_open)
        ru->arm.point -= ps->calls;
    else
        ru->armed = 0; /* the cycle ended first: nothing left to cut */
}

/* What one_pass asks of the loop. */
enum { PASS_NEXT, PASS_AGAIN, PASS_STOP };

/* One pass of the agent and what it leads to: PASS_NEXT (one of the budget
 * spent), PASS_AGAIN (a crash or reboot: the budget is kept), PASS_STOP (the
 * device settled or cannot boot); -errno when the harness failed. */
static int one_pass(struct run *ru, int pass, struct ota_err *err)
{
    struct otasim_trial *tr = ru->tr;
    struct otasim_pass ps;
    struct otasim_pass_info *pi = &ru->info[ru->n_info++];
    const struct otasim_arm *a = ru->armed && !tr->fired ? &ru->arm : NULL;
    char p[PATH_MAX + 32];
    ssize_t k;
    int r;

    memset(pi, 0, sizeof(*pi)); /* journal "": this pass did not run (invariants.h) */
    snprintf(p, sizeof(p), "%s/opt/app/current", ru->d.root);
    k = readlink(p, pi->current, sizeof(pi->current) - 1);
    pi->current[k > 0 ? k : 0] = '\0';
    pi->booted = ru->d.booted_slot;
    if (ru->d.boot_failed) {
        if (ru->d.recovery)
            snprintf(ru->settle.why, sizeof(ru->settle.why),
                     "the device is in recovery mode: both slots failed");
        else if (ru->d.hung)
            snprintf(ru->settle.why, sizeof(ru->settle.why),
                     "the device hangs: the kernel of %s hung and no watchdog resets it",
                     ru->d.hung_version[0] ? ru->d.hung_version : "?");
        else
            snprintf(ru->settle.why, sizeof(ru->settle.why), "the device does not boot any more");
        return PASS_STOP;
    }
    trace(ru->t0, "pass start", pass);
    r = otasim_device_pass(&ru->d, pass, a, &ps, err);
    trace(ru->t0, "pass end, exit", ps.status);
    if (r < 0)
        return r;
    ota_strlcpy(pi->journal, ps.journal, sizeof(pi->journal));
    if ((r = check_modelled(ps.journal, err)) < 0)
        return r;
    tr->passes = pass;
    if (ru->cycle_open) {
        ru->cycle_calls += ps.calls;
        tr->cycle_passes = pass;
        if (ps.ended_cycle && !ps.crashed)
            ru->cycle_open = 0;
    }
    if (ps.crashed)
        return (r = after_crash(ru, &ps, pass, err)) < 0 ? r : PASS_AGAIN;
    if ((r = otasim_power_drop_stash(ru->d.root, err)) < 0)
        return r;
    rearm(ru, a, &ps);
    if (tr->fired && !ru->fault_ms)
        ru->fault_ms = otasim_now_ms();
    if (ps.status == 5 || (ps.status > 128 && !ps.crashed)) {
        snprintf(ru->settle.why, sizeof(ru->settle.why), "pass %d: %s %s %d", pass,
                 ru->d.agent->name, ps.status > 128 ? "died of signal" : "exited",
                 ps.status > 128 ? ps.status - 128 : ps.status);
        ru->settle.settled = -1;
    }
    if (ps.reboot_asked) {
        otasim_device_kill(&ru->d);
        if ((r = otasim_device_boot(&ru->d, err)) < 0)
            return r;
        if (tr->fired && !ru->fault_ms) /* a fault seen at the boot (kernel-hang) */
            ru->fault_ms = otasim_now_ms();
        return PASS_AGAIN;
    }
    /* blue_green: a pass that found the agent waiting in STANDBY is where
     * the operator activates (whether a fault is still pending or not). */
    if (ps.quiet && ps.status == 0 && tr->sc->blue_green && !tr->activated) {
        int activated = 0;
        if ((r = otasim_bluegreen_activate(&ru->d, tr, &activated, err)) < 0)
            return r;
        if (activated)
            return PASS_NEXT;
    }
    /* Settled: a pass with nothing to do (up to date, or the same refusal
     * again: exit 1), the fault no longer pending. */
    if (ps.quiet && (ps.status == 0 || ps.status == 1) && !(ru->armed && !tr->fired)) {
        if (ru->settle.settled == 0)
            ru->settle.settled = 1;
        return PASS_STOP;
    }
    if (ps.status == 3)
        usleep(200 * 1000);
    return PASS_NEXT;
}

/* The passes until the device settles or the scenario's budget is spent;
 * then the settle record. */
static int passes(struct run *ru, struct ota_err *err)
{
    struct otasim_trial *tr = ru->tr;
    int budget = tr->sc->passes + 1, r;

    for (int pass = 1; pass <= MAX_PASSES && budget > 0; pass++) {
        if ((r = one_pass(ru, pass, err)) < 0)
            return r;
        if (r == PASS_STOP)
            break;
        if (r == PASS_NEXT)
            budget--;
    }
    if (ru->settle.settled == 0 && !ru->settle.why[0])
        snprintf(ru->settle.why, sizeof(ru->settle.why), "still busy after %zu passes", ru->n_info);
    if (ru->settle.settled < 0)
        ru->settle.settled = 0;
    /* plus the simulated time hung kernels waited for the watchdog */
    ru->settle.recover_ms =
        otasim_now_ms() - (ru->fault_ms ? ru->fault_ms : ru->t0) + ru->d.hung_ms;
    tr->recover_ms = ru->settle.recover_ms;
    tr->calls = ru->cycle_calls;
    return 0;
}

int otasim_trial_run(const struct otasim_tools *t, struct otasim_trial *tr, struct ota_err *err)
{
    struct run *ru = calloc(1, sizeof(*ru));
    int r = 0, created = 0;

    if (!ru)
        return ota_err_set(err, ENOMEM, "out of memory");
    ru->tr = tr;
    ru->arm = (struct otasim_arm){&tr->fault, tr->fault.trigger.point};
    ru->armed = armed_kind(tr->fault.kind);
    ru->cycle_open = 1;
    ru->t0 = otasim_now_ms();
    tr->outcome = OTASIM_ERROR;
    tr->started_ms = otasim_wall_ms();
    tr->fired = 0;
    tr->n_checks = 0;
    tr->detail[0] = '\0';
    if ((r = ota_fs_remove_tree(tr->dir, err)) < 0 || (r = ota_fs_mkdirs(tr->dir, err)) < 0) {
        free(ru);
        return r;
    }
    r = otasim_device_create(&ru->d, t, tr, err);
    created = 1;
    trace(ru->t0, "created", r);
    if (r < 0)
        goto out;
    r = otasim_device_boot(&ru->d, err);
    trace(ru->t0, "booted", r);
    if (r < 0)
        goto out;
    if (tr->fault.kind == OTASIM_FAULT_CORRUPT_BOOTENV && (r = corrupt_env(ru, err)) < 0)
        goto out;
    if ((r = otasim_bluegreen_setup(tr, err)) < 0)
        goto out;
    if ((r = passes(ru, err)) < 0)
        goto out;
    otasim_faults_server_seen(tr);
    r = otasim_invariants_check(&ru->d, ru->info, ru->n_info, &ru->settle, ru->env_before,
                                ru->env_len, err);
    trace(ru->t0, "checked", r);
out:
    if (created)
        otasim_device_destroy(&ru->d);
    free(ru->env_before);
    tr->duration_ms = otasim_now_ms() - ru->t0;
    free(ru);
    if (r < 0) {
        tr->outcome = OTASIM_ERROR;
        snprintf(tr->detail, sizeof(tr->detail), "harness: %s", err ? err->reason : "error");
        return r;
    }
    if (tr->outcome == OTASIM_PASS && !t->keep)
        ota_ignore(ota_fs_remove_tree(tr->dir, NULL));
    return 0;
}

/* ---- the recording run ---------------------------------------------------- */

void otasim_recording_free(struct otasim_recording *r)
{
    if (!r)
        return;
    free(r->distinct);
    r->distinct = NULL;
}

int otasim_record(const struct otasim_tools *t, struct otasim_trial *tr,
                  struct otasim_recording *ret, struct ota_err *err)
{
    struct otasim_tools keep = *t;
    struct otasim_recording rec = {0};
    const struct otasim_agent *ag;
    uint64_t off = 0;
    int r;

    keep.keep = 1;
    memset(&tr->fault, 0, sizeof(tr->fault));
    r = otasim_trial_run(&keep, tr, err);
    if (r < 0)
        return r;
    if (tr->outcome == OTASIM_FAIL) {
        /* the agent under test, not the harness: a failed trial of its own,
         * tree kept for the reproduce command */
        return OTASIM_RECORD_FAILED;
    }
    if (tr->outcome != OTASIM_PASS) {
        r = ota_err_set(err, EIO, "the recording run (no fault): %s", tr->detail);
        goto out;
    }
    rec.calls = tr->calls;
    rec.distinct = calloc(rec.calls + 2, 1);
    ag = otasim_agent_find(tr->sc->agent[0] ? tr->sc->agent : otasim_agent_ota.name);
    if (!rec.distinct) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (int pass = 1; pass <= tr->cycle_passes; pass++) {
        struct otasim_journal *j = NULL;
        char p[PATH_MAX + 64];
        snprintf(p, sizeof(p), "%s/dev/.sim/journal-%d.bin", tr->dir, pass);
        if ((r = otasim_journal_load(p, &j, err)) < 0)
            goto out;
        if (off + 1 <= rec.calls)
            rec.distinct[off + 1] = 1; /* the first call after a boot */
        for (uint64_t k = 1; ag && !ag->net_journaled && k <= j->calls && off + k <= rec.calls; k++)
            rec.distinct[off + k] = 1; /* what the server saw is not known: all differ */
        for (size_t i = 0; i < j->n; i++) {
            const struct otasim_rec *x = &j->v[i];
            uint64_t n = off + x->seq;
            if (x->op == OTASIM_OP_FSYNC || x->op == OTASIM_OP_SYNC) {
                if (n <= rec.calls)
                    rec.distinct[n] = 1;
                rec.syncs++;
            } else if (x->op == OTASIM_OP_NET && n + 1 <= rec.calls) {
                rec.distinct[n + 1] = 1; /* the server saw something since call n */
            }
        }
        off += j->calls;
        otasim_journal_free(j);
    }
    if (rec.calls)
        rec.distinct[rec.calls] = 1;
    for (uint64_t n = 1; n <= rec.calls; n++)
        rec.n_distinct += rec.distinct[n];
    *ret = rec;
    rec.distinct = NULL;
out:
    otasim_recording_free(&rec);
    if (!t->keep)
        ota_ignore(ota_fs_remove_tree(tr->dir, NULL));
    return r;
}

/* " --crash-model M --crash-subsets 1" for a power cut under another model
 * than minimal: the seed above names the subset, one trial reruns it. */
static const char *crash_opts(const struct otasim_trial *tr, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (tr->fault.kind == OTASIM_FAULT_POWER_CUT && tr->fault.crash_model != OTASIM_CRASH_MINIMAL)
        snprintf(buf, cap, " --crash-model %s --crash-subsets 1",
                 otasim_crash_model_names[tr->fault.crash_model]);
    return buf;
}

void otasim_reproduce_cmd(const struct otasim_tools *t, const struct otasim_trial *tr, char *buf,
                          size_t cap)
{
    char label[160], trig[120], model[64], cpus[24] = "";
    const char *at;

    otasim_fault_label(&tr->fault, label, sizeof(label));
    at = strchr(label, '@');
    snprintf(trig, sizeof(trig), "%s", at ? at + 1 : "start");
    if (t->target == OTASIM_TARGET_QEMU && t->qemu_profile && t->qemu_cpus)
        snprintf(cpus, sizeof(cpus), " --qemu-cpus %d", t->qemu_cpus); /* -j sets it */
    if (t->target == OTASIM_TARGET_QEMU)
        snprintf(buf, cap,
                 "%s run %s --fault %s --trigger %s --seed %llu --target qemu --profile %s "
                 "--image %s%s%s%s%s --keep",
                 t->self, tr->sc->path, otasim_fault_kind_names[tr->fault.kind], trig,
                 (unsigned long long)tr->seed, t->qemu_profile ? "virt" : "raspi3b", t->image_dir,
                 t->guest_agent[0] ? " --guest-agent " : "", t->guest_agent,
                 t->qemu_snapshot ? " --snapshot" : "", cpus);
    else
        snprintf(buf, cap, "%s run %s --fault %s --trigger %s --seed %llu --agent %s%s --keep",
                 t->self, tr->sc->path, otasim_fault_kind_names[tr->fault.kind], trig,
                 (unsigned long long)tr->seed, t->agent, crash_opts(tr, model, sizeof(model)));
}
