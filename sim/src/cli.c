/* ota-sim's commands. The only place that prints. */
#include "otasim/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/journal.h"
#include "otasim/power.h"
#include "otasim/runner.h"
#include "otasim/svc.h"

#ifndef OTA_SOURCE_DIR
#define OTA_SOURCE_DIR "."
#endif

/* EXIT_NOT_RUN: nothing failed, but trials could not run on the agent under
 * test (a fault-point scenario on an agent built without fault points).
 * EXIT_ENVIRONMENT: nothing failed, but a QEMU trial's guest lost its network on the
 * trial and on its retry: the agent was not judged there (qenv.h). */
enum {
    EXIT_PASS = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_NOT_RUN = 4,
    EXIT_HARNESS = 5,
    EXIT_ENVIRONMENT = 6
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ota-sim run SCENARIO.yaml... [options]\n"
            "       ota-sim matrix [--matrix FILE] [--list] [--case ID]... [options]\n"
            "       ota-sim svc --dev ROOT start|stop|restart|is-active|reboot\n"
            "       ota-sim journal FILE   (print an interposer journal)\n"
            "       ota-sim rebuild ROOT JOURNAL [--crash-model M] [--seed N]\n"
            "                              (rebuild ROOT, in place, as a power cut at the\n"
            "                              end of JOURNAL leaves it: what a process run\n"
            "                              under the interposer with OTASIM_CRASH_AT=N\n"
            "                              journaled; refuses a journal with an unmodelled\n"
            "                              call)\n"
            "       ota-sim boot FW_ENV_CONFIG SLOT_A SLOT_B --image VERSION=FILE...\n"
            "                              (the bootloader model on a device's env and\n"
            "                              slots: ota-sim boot --help)\n"
            "       ota-sim swupdate-pass CONFIG   (one pass of a simulated SWUpdate device,\n"
            "                              as the swupdate adapter runs it: docs/swupdate.md)\n"
            "       ota-sim fleet FLEET.yaml [options]   (ota-sim fleet --help)\n"
            "       ota-sim fleet-merge OUT.db SHARD.db...  (ota-sim fleet-merge --help)\n"
            "       ota-sim fleet-calibrate FLEET.yaml [options]   (in-process vs native)\n"
            "       ota-sim blocks info|replay|bench ...   (block-level crash states from a\n"
            "                              QEMU blklogwrites log: ota-sim blocks --help)\n"
            "\n"
            "Runs the real ota-agent on simulated devices against a real ota-server on\n"
            "127.0.0.1 and breaks them: power cuts, agent and service crashes, disk full,\n"
            "network partitions, clock jumps, bad releases, download faults. Every trial\n"
            "ends with the invariant checker and lands in the run database.\n"
            "\n"
            "run options:\n"
            "  --fault KIND         override the file's fault: none power-cut agent-crash\n"
            "                       disk-full eio partition clock-jump corrupt-bootenv\n"
            "                       service-crash cancel (swupdate: the trial's rollout\n"
            "                       cancelled) kernel-hang (rootfs: the target's kernel\n"
            "                       hangs at every boot)\n"
            "  --trigger T          with --fault: state:NAME[#N] | point:N |\n"
            "                       fault-point:NAME | start\n"
            "matrix options:\n"
            "  --matrix FILE        the matrix (default scenarios/matrix.yaml)\n"
            "  --list               print the case ids (records the persistence points)\n"
            "  --case ID            run this case (repeatable; each on its own trial)\n"
            "  --cases-from FILE    run the case ids FILE lists, one a line (# comments)\n"
            "  --with-scenarios DIR also every scenario file of DIR, first\n"
            "  --fail-fast          start no new trial after the first failure\n"
            "common options:\n"
            "  -j, --jobs N         trials at a time (default: native 2 per CPU, qemu 1)\n"
            "  --seed N             base seed (default 1)\n"
            "  --agent BIN          the ota-agent to test (default: the build's)\n"
            "  --work DIR           caches (default BUILD/sim-work)\n"
            "  --trees DIR          trial trees and servers (default /dev/shm, else WORK)\n"
            "  --db FILE            run database (default WORK/runs.db)\n"
            "  --junit FILE         JUnit XML of this run\n"
            "  --exhaustive         run every crash point, not one per equivalence class\n"
            "  --crash-model M      how a power cut's tree is rebuilt: minimal (all that\n"
            "                       was not made durable is lost; default), reorder\n"
            "                       (seeded subsets of it persist, in ext4's orders) or\n"
            "                       torn (each file's last unsynced write persists partly)\n"
            "  --crash-subsets N    reorder/torn: each power cut becomes N trials, each\n"
            "                       its own seed (default: the scenario's, else 1)\n"
            "  --keep               keep every trial's tree where it ran (printed), and\n"
            "                       the run's dir; without it a failed trial's tree moves\n"
            "                       to WORK/failed/RUN/ (the last 5 runs kept there)\n"
            "  -q, --quiet          no progress line\n"
            "QEMU tier (images/: `make image` first):\n"
            "  --target native|qemu where trials run (default native); qemu runs the\n"
            "                       aarch64 agent of the image, -j defaults to 1\n"
            "  --profile raspi3b|virt  the QEMU machine (default raspi3b)\n"
            "  --image DIR          build-image output (default images/out/latest-empty)\n"
            "  --qemu-timeout S     per boot-to-settle phase (raspi3b 420, virt 240)\n"
            "  --qemu-cpus N        virt's vCPUs per guest (default: the host's CPUs / -j,\n"
            "                       1 or 2: MTTCG threads beyond the host's CPUs only wait)\n"
            "  --guest-agent BIN    an aarch64 ota-agent to test instead of the image's\n"
            "                       (written into each trial's overlay)\n"
            "  --snapshot           power cuts at states boot from the disk frozen there in\n"
            "                       one recording run per scenario (no first boot per trial)\n"
            "  --mode trials|snapshot|blocks  trials (default); snapshot: as --snapshot;\n"
            "                       blocks: each scenario's update recorded once with every\n"
            "                       disk request logged (QEMU blklogwrites), every crash\n"
            "                       point (raspi3b: each write; virt: each flush) checked on\n"
            "                       the host, a sample booted (docs/blocks.md); matrix:\n"
            "                       the scenarios of scenarios/blocks/\n"
            "  --boot-sample N      block mode: boots at most, distinct outcomes first\n"
            "                       (default 20; 0 none)\n"
            "  --torn-seed S [--torn-unit B]  block mode, a model on every crash point: the\n"
            "                       write that completes it (virt: one in flight after the\n"
            "                       flush) torn, only its first pages of B bytes (4096) kept\n"
            "  --erase-block B --damage-seed S  block mode (raspi3b), a model on every\n"
            "                       crash point: the other sectors of the B-byte erase blocks\n"
            "                       of its write erased or garbage (pessimistic, no card's)\n"
            "\n"
            "Exit: 0 all passed, 1 a trial failed, 2 usage or bad input (options, scenario\n"
            "and matrix files, --agent, --image, --case ids; nothing ran), 4 nothing failed but\n"
            "trials could not run on this agent (fault points: cmake -DOTA_FAULT_POINTS=ON),\n"
            "5 harness error (also when a trial failed too), 6 nothing failed but a QEMU\n"
            "guest lost its network twice (verdict environment). docs/ci.md: the interface.\n"
            "Ctrl-C (SIGINT), SIGTERM or SIGHUP end every process of the run, remove its\n"
            "trees (not with --keep) and then ota-sim, by that signal.\n");
}

static int do_svc(int argc, char **argv)
{
    const char *dev = NULL, *cmd = NULL;
    struct ota_err e = {0};
    int r;

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dev") == 0 && i + 1 < argc)
            dev = argv[++i];
        else
            cmd = argv[i];
    }
    if (!dev || !cmd) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (int c = 0; c < OTASIM_SVC_CMD_MAX; c++)
        if (strcmp(cmd, otasim_svc_cmd_names[c]) == 0) {
            r = otasim_svc_run(dev, (enum otasim_svc_cmd)c, &e);
            if (r < 0) {
                fprintf(stderr, "ota-sim svc: %s\n", e.reason);
                return 1;
            }
            return r;
        }
    fprintf(stderr, "ota-sim svc: unknown command '%s'\n", cmd);
    return EXIT_USAGE;
}

/* How a run's events look on the terminal (the runner's sink). */
struct printer {
    int quiet; /* -q: no progress line, no failure reports */
    int list;  /* --list: no word of skipped cases */
};

static void print_progress(const struct otasim_run_event *ev)
{
    const struct otasim_run_stats *s = ev->stats;
    double min = (double)ev->elapsed_ms / 60000.0;
    uint64_t done = s->passed + s->failed + s->errors + s->not_run + s->environment;

    /* The rate is of trials run: a copied result is not a trial. */
    fprintf(stderr,
            "%s[%llu/%llu] pass %llu  fail %llu  error %llu  not run %llu  environment %llu  "
            "(%llu run, %llu copied by equivalence)  %.0f trials/min%s",
            isatty(2) ? "\r" : "", (unsigned long long)done, (unsigned long long)s->cases,
            (unsigned long long)s->passed, (unsigned long long)s->failed,
            (unsigned long long)s->errors, (unsigned long long)s->not_run,
            (unsigned long long)s->environment, (unsigned long long)s->run,
            (unsigned long long)s->equivalent, min > 0 ? (double)s->run / min : 0.0,
            ev->final || !isatty(2) ? "\n" : "");
}

static void print_event(void *user, const struct otasim_run_event *ev)
{
    const struct printer *p = user;

    switch (ev->kind) {
    case OTASIM_RUN_SKIPPED:
        if (!p->quiet && !p->list)
            fprintf(stderr, "ota-sim: skipped on qemu: %s: %s\n", ev->id, ev->detail);
        break;
    case OTASIM_RUN_LISTED:
        printf("%s\n", ev->id);
        break;
    case OTASIM_RUN_PROGRESS:
        if (!p->quiet)
            print_progress(ev);
        break;
    case OTASIM_RUN_FAILED:
        if (p->quiet && ev->tree && *ev->tree)
            fprintf(stderr, "kept %s: %s\n", ev->id, ev->tree);
        if (p->quiet)
            break;
        /* environment: not the agent's failure, said so (qenv.h) */
        fprintf(stderr, "%s%s %s: %s\n  reproduce: %s\n", isatty(2) ? "\r\033[K" : "",
                ev->verdict && strcmp(ev->verdict, "environment") == 0 ? "ENVIRONMENT" : "FAIL",
                ev->id, ev->detail, ev->reproduce);
        if (ev->tree && *ev->tree)
            fprintf(stderr, "  tree kept: %s\n", ev->tree);
        for (const char *l = ev->logs; *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] != 0))
            fprintf(stderr, "  serial log: %.*s\n", (int)strcspn(l, "\n"), l);
        break;
    case OTASIM_RUN_NOT_RUN:
        /* even with -q: a run of nothing but these must say why */
        fprintf(stderr, "%sota-sim: %s: %s (%s)\n", isatty(2) && !p->quiet ? "\r" : "", ev->id,
                ev->detail, ev->agent);
        break;
    case OTASIM_RUN_KEPT:
        /* even with -q: --keep asked for them */
        if (ev->id)
            fprintf(stderr, "%skept %s: %s\n", isatty(2) ? "\r\033[K" : "", ev->id, ev->tree);
        else
            fprintf(stderr, "ota-sim: kept the run's dir (servers, trees): %s\n", ev->tree);
        break;
    case OTASIM_RUN_WARNING:
    case OTASIM_RUN_EVENT_MAX:
        fprintf(stderr, "ota-sim: %s\n", ev->detail);
        break;
    }
}

/* Every scenario file of dir (not matrix.yaml), in name order. */
static int add_dir(struct otasim_runner *r, const char *dir, struct ota_err *err)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort), rc = 0;

    if (n < 0)
        return ota_err_set(err, errno, "%s: %s", dir, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        size_t len = strlen(name);
        char path[PATH_MAX];
        struct otasim_scenario sc;
        if (rc == 0 && len > 5 && strcmp(name + len - 5, ".yaml") == 0 &&
            strcmp(name, "matrix.yaml") != 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, name);
            rc = otasim_scenario_load(path, &sc, err);
            if (rc == 0)
                rc = otasim_runner_add(r, &sc, NULL, err);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

/* ota-sim journal FILE: the interposer's journal, one record a line. */
static int do_journal(int argc, char **argv)
{
    struct otasim_journal *j = NULL;
    struct ota_err e = {0};

    if (argc != 3) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (otasim_journal_load(argv[2], &j, &e) < 0) {
        fprintf(stderr, "ota-sim journal: %s\n", e.reason);
        return EXIT_HARNESS;
    }
    for (size_t i = 0; i < j->n; i++) {
        const struct otasim_rec *r = &j->v[i];
        printf("%5llu %-8s %s%s%s%s", (unsigned long long)r->seq, otasim_op_names[r->op], r->path,
               r->path2[0] ? " -> " : "", r->path2, r->done ? "" : " (not done)");
        if (r->op == OTASIM_OP_WRITE || r->op == OTASIM_OP_TRUNC)
            printf(" off=%llu len=%llu", (unsigned long long)r->off, (unsigned long long)r->len);
        if (r->result < 0)
            printf(" = %s", strerror(-r->result));
        if (r->text[0])
            printf(" %.160s", r->text);
        printf("\n");
    }
    printf("%llu counted calls\n", (unsigned long long)j->calls);
    otasim_journal_free(j);
    return EXIT_PASS;
}

/* ota-sim rebuild ROOT JOURNAL [--crash-model M] [--seed N]: the power
 * model's rebuild of ROOT (otasim/power.h) for a process that some other
 * harness ran under the interposer (the SWUpdate tests). */
static int do_rebuild(int argc, char **argv)
{
    struct otasim_crash cm = {OTASIM_CRASH_MINIMAL, 1};
    struct otasim_rebuild_stats st = {0};
    struct ota_err e = {0};
    char what[PATH_MAX + 64], *end;
    int i;

    for (i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--crash-model") == 0) {
            if (otasim_crash_model_parse(argv[i + 1], &cm.model, &e) < 0)
                break;
        } else if (strcmp(argv[i], "--seed") == 0) {
            errno = 0;
            cm.seed = strtoull(argv[i + 1], &end, 10);
            if (errno || *end || !argv[i + 1][0])
                break;
        } else {
            break;
        }
    }
    if (argc < 4 || i != argc) {
        if (e.reason[0])
            fprintf(stderr, "ota-sim rebuild: %s\n", e.reason);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (otasim_journal_unmodelled(argv[3], what, sizeof(what))) {
        fprintf(stderr, "ota-sim rebuild: unmodelled call %s (the power model cannot rebuild it)\n",
                what);
        return EXIT_HARNESS;
    }
    if (otasim_power_rebuild_model(argv[2], argv[3], &cm, &st, &e) < 0) {
        fprintf(stderr, "ota-sim rebuild: %s\n", e.reason);
        return EXIT_HARNESS;
    }
    printf("durable %llu, writes undone %llu (%llu bytes), directory changes undone %llu, "
           "kept unsynced %llu, torn writes %llu (%llu sectors)\n",
           (unsigned long long)st.durable, (unsigned long long)st.writes_undone,
           (unsigned long long)st.bytes_restored, (unsigned long long)st.dirops_undone,
           (unsigned long long)st.kept_unsynced, (unsigned long long)st.torn_writes,
           (unsigned long long)st.torn_sectors);
    return EXIT_PASS;
}

/* The case ids of --case and --cases-from. */
struct case_list {
    char **v;
    size_t n;
};

static void case_list_free(struct case_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int case_add(struct case_list *l, const char *id, size_t len, struct ota_err *err)
{
    char **v;

    if (len == 0 || len >= 200)
        return ota_err_set(err, EINVAL, "--case: an id of 1..199 characters, got '%.*s'",
                           (int)(len < 60 ? len : 60), id);
    v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v)
        return ota_err_set(err, ENOMEM, "out of memory");
    l->v = v;
    l->v[l->n] = strndup(id, len);
    if (!l->v[l->n])
        return ota_err_set(err, ENOMEM, "out of memory");
    l->n++;
    return 0;
}

/* One id a line; blank lines and lines starting with # are skipped. */
static int cases_read(struct case_list *l, const char *path, struct ota_err *err)
{
    char *text = NULL, *p;
    size_t n = 0, before = l->n;
    int r;

    if ((r = ota_fs_read_all(path, 1 << 20, &text, &n, err)) < 0)
        return r;
    for (p = text; p < text + n;) {
        size_t len = strcspn(p, "\n");
        size_t a = 0, b = len;
        while (a < b && (p[a] == ' ' || p[a] == '\t'))
            a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t' || p[b - 1] == '\r'))
            b--;
        if (b > a && p[a] != '#' && (r = case_add(l, p + a, b - a, err)) < 0)
            break;
        p += len + (p[len] == '\n');
    }
    free(text);
    if (r < 0)
        return r;
    if (l->n == before)
        return ota_err_set(err, EINVAL, "--cases-from %s: no case ids in it", path);
    return 0;
}

/* --crash-model M (model) or --crash-subsets N into o. */
static int crash_opt(int model, const char *arg, struct otasim_run_opts *o, struct ota_err *e)
{
    enum otasim_crash_model m;
    char *end;
    long v;
    int r;

    if (model) {
        if ((r = otasim_crash_model_parse(arg, &m, e)) < 0)
            return r;
        o->crash_model = (int)m;
        return 0;
    }
    v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 1 || v > OTASIM_MAX_CRASH_SUBSETS)
        return ota_err_set(e, EINVAL, "--crash-subsets: 1..%d", OTASIM_MAX_CRASH_SUBSETS);
    o->crash_subsets = (int)v;
    return 0;
}

/* ota-sim run / matrix: what the command line asked for. */
struct run_cmd {
    const char *cmd; /* "run" or "matrix" */
    struct otasim_run_opts o;
    struct otasim_fault override;
    int have_fault, have_trigger, keep, jobs_set, qtimeout, snapshot, blocks, boot_sample_set;
    int qcpus;
    struct otasim_blk_model_flags mf; /* the block models' options given */
    int blk_model_set;
    const char *matrix, *agent, *work, *with_dir, *target, *profile, *image, *guest_agent;
    char cmdline[4096];
    struct case_list cases;
    struct printer pr;
};

enum {
    O_FAULT = 256,
    O_TRIGGER,
    O_MATRIX,
    O_LIST,
    O_CASE,
    O_SEED,
    O_AGENT,
    O_WORK,
    O_DB,
    O_JUNIT,
    O_EXH,
    O_KEEP,
    O_FAILFAST,
    O_WITH,
    O_TREES,
    O_TARGET,
    O_PROFILE,
    O_IMAGE,
    O_QTIMEOUT,
    O_QCPUS,
    O_GUEST_AGENT,
    O_SNAPSHOT,
    O_CASES_FROM,
    O_CMODEL,
    O_CSUBSETS,
    O_MODE,
    O_BOOT_SAMPLE,
    O_TORN_SEED, /* the block models: O_TORN_SEED + i is blk_model_opts[i] */
    O_TORN_UNIT,
    O_ERASE_BLOCK,
    O_DAMAGE_SEED
};
static const char *const blk_model_opts[] = {"--torn-seed", "--torn-unit", "--erase-block",
                                             "--damage-seed"};

static const struct option run_options[] = {{"fault", required_argument, NULL, O_FAULT},
                                            {"trigger", required_argument, NULL, O_TRIGGER},
                                            {"matrix", required_argument, NULL, O_MATRIX},
                                            {"list", no_argument, NULL, O_LIST},
                                            {"case", required_argument, NULL, O_CASE},
                                            {"jobs", required_argument, NULL, 'j'},
                                            {"seed", required_argument, NULL, O_SEED},
                                            {"agent", required_argument, NULL, O_AGENT},
                                            {"work", required_argument, NULL, O_WORK},
                                            {"db", required_argument, NULL, O_DB},
                                            {"junit", required_argument, NULL, O_JUNIT},
                                            {"exhaustive", no_argument, NULL, O_EXH},
                                            {"keep", no_argument, NULL, O_KEEP},
                                            {"quiet", no_argument, NULL, 'q'},
                                            {"fail-fast", no_argument, NULL, O_FAILFAST},
                                            {"with-scenarios", required_argument, NULL, O_WITH},
                                            {"trees", required_argument, NULL, O_TREES},
                                            {"target", required_argument, NULL, O_TARGET},
                                            {"profile", required_argument, NULL, O_PROFILE},
                                            {"image", required_argument, NULL, O_IMAGE},
                                            {"qemu-timeout", required_argument, NULL, O_QTIMEOUT},
                                            {"qemu-cpus", required_argument, NULL, O_QCPUS},
                                            {"guest-agent", required_argument, NULL, O_GUEST_AGENT},
                                            {"snapshot", no_argument, NULL, O_SNAPSHOT},
                                            {"cases-from", required_argument, NULL, O_CASES_FROM},
                                            {"crash-model", required_argument, NULL, O_CMODEL},
                                            {"crash-subsets", required_argument, NULL, O_CSUBSETS},
                                            {"mode", required_argument, NULL, O_MODE},
                                            {"boot-sample", required_argument, NULL, O_BOOT_SAMPLE},
                                            {"torn-seed", required_argument, NULL, O_TORN_SEED},
                                            {"torn-unit", required_argument, NULL, O_TORN_UNIT},
                                            {"erase-block", required_argument, NULL, O_ERASE_BLOCK},
                                            {"damage-seed", required_argument, NULL, O_DAMAGE_SEED},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};

/* Prints a usage error's reason; the exit code for it. */
static int usage_error(const struct ota_err *e)
{
    fprintf(stderr, "ota-sim: %s\n", e->reason);
    return EXIT_USAGE;
}

/* A failure of the harness itself: its reason printed; the exit code. */
static int harness_error(const struct ota_err *e)
{
    fprintf(stderr, "ota-sim: %s\n", e->reason);
    return EXIT_HARNESS;
}

/* One option c (with optarg) into rc. 0, or -errno with e set (a usage error). */
static int run_option(struct run_cmd *rc, int c, struct ota_err *e)
{
    struct otasim_run_opts *o = &rc->o;

    switch (c) {
    case O_FAULT:
        rc->have_fault = 1;
        return otasim_fault_kind_parse(optarg, &rc->override.kind, e);
    case O_TRIGGER:
        rc->have_trigger = 1;
        return otasim_trigger_parse(optarg, &rc->override.trigger, e);
    case O_MATRIX:
        rc->matrix = optarg;
        return 0;
    case O_LIST:
        o->list = 1;
        return 0;
    case O_CASE:
        return case_add(&rc->cases, optarg, strlen(optarg), e);
    case O_CASES_FROM:
        return cases_read(&rc->cases, optarg, e);
    case O_TARGET:
        rc->target = optarg;
        return 0;
    case O_PROFILE:
        rc->profile = optarg;
        return 0;
    case O_IMAGE:
        rc->image = optarg;
        return 0;
    case O_SNAPSHOT:
        rc->snapshot = 1;
        return 0;
    case O_MODE:
        if (strcmp(optarg, "trials") == 0)
            return 0;
        if (strcmp(optarg, "snapshot") == 0)
            return rc->snapshot = 1, 0;
        if (strcmp(optarg, "blocks") == 0)
            return rc->blocks = 1, o->blocks = 1, 0;
        return ota_err_set(e, EINVAL, "--mode: trials, snapshot or blocks, got '%s'", optarg);
    case O_BOOT_SAMPLE: {
        char *end;
        long v = strtol(optarg, &end, 10);
        if (*end || !optarg[0] || v < 0 || v > 10000)
            return ota_err_set(e, EINVAL, "--boot-sample: 0..10000, got '%s'", optarg);
        o->boot_sample = (int)v;
        rc->boot_sample_set = 1;
        return 0;
    }
    case O_TORN_SEED:
    case O_TORN_UNIT:
    case O_ERASE_BLOCK:
    case O_DAMAGE_SEED: {
        const char *name = blk_model_opts[c - O_TORN_SEED];
        if (otasim_blk_model_opt(name, optarg, &o->blocks_model, &rc->mf) <= 0)
            return ota_err_set(e, EINVAL, "%s: a number (sizes with K or M), got '%s'", name,
                               optarg);
        rc->blk_model_set = 1;
        return 0;
    }
    case O_CMODEL:
    case O_CSUBSETS:
        return crash_opt(c == O_CMODEL, optarg, o, e);
    case O_GUEST_AGENT:
        rc->guest_agent = optarg;
        return 0;
    case O_QTIMEOUT:
        rc->qtimeout = atoi(optarg);
        if (rc->qtimeout < 10)
            return ota_err_set(e, EINVAL, "--qemu-timeout: at least 10 (seconds)");
        return 0;
    case O_QCPUS:
        rc->qcpus = atoi(optarg);
        if (rc->qcpus < 1 || rc->qcpus > 8)
            return ota_err_set(e, EINVAL, "--qemu-cpus: 1..8");
        return 0;
    case 'j':
        rc->jobs_set = 1;
        o->jobs = atoi(optarg);
        if (o->jobs < 1 || o->jobs > 64)
            return ota_err_set(e, EINVAL, "--jobs: 1..64");
        return 0;
    case O_SEED: {
        char *end;
        errno = 0;
        o->seed = strtoull(optarg, &end, 10);
        if (errno || *end || !optarg[0] || optarg[0] == '-')
            return ota_err_set(e, EINVAL, "--seed: a whole number, got '%s'", optarg);
        return 0;
    }
    case O_AGENT:
        rc->agent = optarg;
        return 0;
    case O_WORK:
        rc->work = optarg;
        return 0;
    case O_DB:
        o->db_path = optarg;
        return 0;
    case O_JUNIT:
        o->junit_path = optarg;
        return 0;
    case O_EXH:
        o->exhaustive = 1;
        return 0;
    case O_KEEP:
        rc->keep = 1;
        return 0;
    case O_FAILFAST:
        o->fail_fast = 1;
        return 0;
    case O_WITH:
        rc->with_dir = optarg;
        return 0;
    case O_TREES:
        o->trees_dir = optarg;
        return 0;
    case 'q':
        rc->pr.quiet = 1;
        return 0;
    }
    return ota_err_set(e, EINVAL, "unknown option");
}

/* The options of run and matrix into rc: -1 to go on, else the exit code
 * (usage and usage errors printed). */
static int parse_run(struct run_cmd *rc, int argc, char **argv)
{
    struct ota_err e = {0};
    int c;

    for (int i = 0; i < argc; i++) {
        size_t n = strlen(rc->cmdline);
        snprintf(rc->cmdline + n, sizeof(rc->cmdline) - n, "%s%s", i ? " " : "", argv[i]);
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "j:qh", run_options, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return EXIT_PASS;
        }
        if (c == '?' || c == ':') {
            usage(stderr);
            return EXIT_USAGE;
        }
        if (run_option(rc, c, &e) < 0)
            return usage_error(&e);
    }
    if (rc->blk_model_set && otasim_blk_model_done(&rc->o.blocks_model, &rc->mf, "ota-sim") < 0)
        return EXIT_USAGE;
    if (rc->blk_model_set && !rc->blocks)
        ota_ignore(ota_err_set(&e, EINVAL,
                               "the block models (--torn-seed, --erase-block) go with --mode "
                               "blocks"));
    else if (rc->have_trigger && !rc->have_fault)
        ota_ignore(ota_err_set(&e, EINVAL, "--trigger needs --fault"));
    else if (strcmp(rc->cmd, "run") == 0 && optind >= argc)
        ota_ignore(ota_err_set(&e, EINVAL, "run: name at least one scenario file"));
    else if (rc->cases.n && strcmp(rc->cmd, "matrix") != 0)
        ota_ignore(ota_err_set(&e, EINVAL, "--case and --cases-from go with matrix"));
    if (e.code)
        return usage_error(&e);
    rc->o.only_cases = (const char *const *)rc->cases.v;
    rc->o.n_only_cases = rc->cases.n;
    rc->o.command = rc->cmdline;
    rc->pr.list = rc->o.list;
    rc->o.sink = (struct otasim_run_sink){print_event, &rc->pr};
    rc->o.stop_on_signal = 1;
    return -1;
}

/* The tools and the target (native, or QEMU with its options) into t: -1 to
 * go on, else the exit code (the reason printed). */
static int setup_target(struct run_cmd *rc, struct otasim_tools *t)
{
    struct ota_err e = {0};
    const char *agent = rc->agent ? rc->agent : getenv("OTASIM_AGENT");

    /* the agent under test is the caller's input (exit 2); the build's own
     * tools missing is the harness's (exit 5) */
    if (agent && *agent && access(agent, X_OK) < 0) {
        ota_ignore(ota_err_set(&e, errno, "%s %s: %s", rc->agent ? "--agent" : "OTASIM_AGENT",
                               agent, strerror(errno)));
        return usage_error(&e);
    }
    if (otasim_tools_find(t, rc->agent, rc->work, &e) < 0)
        return harness_error(&e);
    t->keep = rc->keep;
    if (strcmp(rc->target, "qemu") == 0) {
        t->qemu_timeout_s = rc->qtimeout;
        if (rc->image && access(rc->image, R_OK | X_OK) < 0)
            ota_ignore(ota_err_set(&e, errno, "--image %s: %s", rc->image, strerror(errno)));
        else if (rc->guest_agent && access(rc->guest_agent, R_OK) < 0)
            ota_ignore(
                ota_err_set(&e, errno, "--guest-agent %s: %s", rc->guest_agent, strerror(errno)));
        if (e.code)
            return usage_error(&e);
        if (otasim_tools_qemu(t, rc->profile, rc->image, &e) < 0)
            return harness_error(&e);
        if (!rc->jobs_set)
            rc->o.jobs = 1;
        if (rc->qcpus) {
            t->qemu_cpus = rc->qcpus;
        } else { /* TCG runs a thread per vCPU: -j guests of 2 on 2 CPUs contend */
            long cpus = sysconf(_SC_NPROCESSORS_ONLN) / rc->o.jobs;
            t->qemu_cpus = cpus < 1 ? 1 : cpus > 2 ? 2 : (int)cpus;
        }
        t->qemu_snapshot = rc->snapshot;
        if (rc->blocks && !rc->boot_sample_set)
            rc->o.boot_sample = 20;
        if (rc->blocks && rc->snapshot)
            ota_ignore(ota_err_set(&e, EINVAL, "--mode blocks and --snapshot: one or the other"));
        else if (rc->guest_agent && !realpath(rc->guest_agent, t->guest_agent))
            ota_ignore(
                ota_err_set(&e, errno, "--guest-agent %s: %s", rc->guest_agent, strerror(errno)));
        else if (rc->o.crash_model > OTASIM_CRASH_MINIMAL)
            ota_ignore(ota_err_set(&e, EINVAL, "--crash-model %s: the native tier only",
                                   otasim_crash_model_names[rc->o.crash_model]));
    } else if (strcmp(rc->target, "native") != 0) {
        ota_ignore(ota_err_set(&e, EINVAL, "--target: native or qemu"));
    } else if (rc->blocks || rc->boot_sample_set || rc->blk_model_set) {
        ota_ignore(ota_err_set(&e, EINVAL,
                               "--mode blocks, --boot-sample and the block models (--torn-seed, "
                               "--erase-block) go with --target qemu"));
    } else if (rc->profile || rc->image || rc->guest_agent || rc->snapshot || rc->qcpus) {
        ota_ignore(ota_err_set(&e, EINVAL,
                               "--profile, --image, --guest-agent, --snapshot and --qemu-cpus go "
                               "with --target qemu"));
    } else if (!rc->jobs_set) {
        /* a native trial waits for its app, server and service commands about
         * a quarter of its time: two per CPU keep the CPUs busy */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        rc->o.jobs = cpus < 1 ? 2 : cpus > 32 ? 64 : (int)(2 * cpus);
    }
    return e.code ? usage_error(&e) : -1;
}

/* The scenario files (run) or the matrix (matrix) into r: -1 to go on, else
 * the exit code (the reason printed). */
static int add_cases(struct run_cmd *rc, struct otasim_runner *r, int argc, char **argv)
{
    struct ota_err e = {0};

    if (strcmp(rc->cmd, "run") == 0) {
        for (int i = optind; i < argc; i++) {
            struct otasim_scenario sc;
            if (otasim_scenario_load(argv[i], &sc, &e) < 0)
                return usage_error(&e);
            if (otasim_runner_add(r, &sc, rc->have_fault ? &rc->override : NULL, &e) < 0)
                return harness_error(&e);
        }
        return -1;
    }
    if (rc->blocks) { /* the matrix of block mode: one update of each kind */
        if (add_dir(r, OTA_SOURCE_DIR "/scenarios/blocks", &e) < 0)
            return harness_error(&e);
        return -1;
    }
    /* the files named on the command line are input (exit 2), like a scenario file */
    if (rc->with_dir && access(rc->with_dir, R_OK | X_OK) < 0)
        ota_ignore(
            ota_err_set(&e, errno, "--with-scenarios %s: %s", rc->with_dir, strerror(errno)));
    else if (access(rc->matrix, R_OK) < 0)
        ota_ignore(ota_err_set(&e, errno, "--matrix %s: %s", rc->matrix, strerror(errno)));
    if (e.code)
        return usage_error(&e);
    if ((rc->with_dir && add_dir(r, rc->with_dir, &e) < 0) ||
        otasim_runner_add_matrix(r, rc->matrix, &e) < 0) {
        fprintf(stderr, "ota-sim: %s\n", e.reason);
        return e.code == EINVAL ? EXIT_USAGE : EXIT_HARNESS;
    }
    /* --case ids that name no case: input, before anything runs */
    if (rc->cases.n && otasim_runner_check_cases(r, &e) < 0)
        return usage_error(&e);
    return -1;
}

/* ota-sim run SCENARIO... / ota-sim matrix: the trials and their verdict. */
static int do_run(int argc, char **argv)
{
    struct run_cmd rc = {.cmd = argv[1],
                         .o = {.jobs = 2, .seed = 1, .crash_model = -1},
                         .matrix = OTA_SOURCE_DIR "/scenarios/matrix.yaml",
                         .target = "native"};
    struct otasim_tools t;
    struct otasim_runner *r = NULL;
    struct otasim_run_stats st = {0};
    struct ota_err e = {0};
    int code;

    if ((code = parse_run(&rc, argc, argv)) >= 0 || (code = setup_target(&rc, &t)) >= 0)
        goto out;
    if (otasim_runner_new(&t, &rc.o, &r, &e) < 0) {
        code = harness_error(&e);
        goto out;
    }
    if ((code = add_cases(&rc, r, argc, argv)) >= 0)
        goto out;
    if (otasim_runner_run(r, &st, &e) < 0) {
        code = harness_error(&e);
        goto out;
    }
    code = st.errors        ? EXIT_HARNESS
           : st.failed      ? EXIT_FAILED
           : st.environment ? EXIT_ENVIRONMENT
           : st.not_run     ? EXIT_NOT_RUN
                            : EXIT_PASS;
out:
    otasim_runner_free(r);
    case_list_free(&rc.cases);
    return code;
}

int otasim_cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_PASS;
    }
    if (strcmp(argv[1], "svc") == 0)
        return do_svc(argc, argv);
    if (strcmp(argv[1], "journal") == 0)
        return do_journal(argc, argv);
    if (strcmp(argv[1], "rebuild") == 0)
        return do_rebuild(argc, argv);
    if (strcmp(argv[1], "boot") == 0)
        return otasim_cli_boot(argc, argv);
    if (strcmp(argv[1], "swupdate-pass") == 0)
        return otasim_cli_swupdate_pass(argc, argv);
    if (strcmp(argv[1], "run") == 0 || strcmp(argv[1], "matrix") == 0)
        return do_run(argc, argv);
    if (strcmp(argv[1], "fleet") == 0)
        return otasim_cli_fleet(argc, argv);
    if (strcmp(argv[1], "fleet-merge") == 0)
        return otasim_cli_fleet_merge(argc, argv);
    if (strcmp(argv[1], "fleet-calibrate") == 0)
        return otasim_cli_fleet_calibrate(argc, argv);
    if (strcmp(argv[1], "blocks") == 0)
        return otasim_cli_blocks(argc, argv);
    fprintf(stderr, "ota-sim: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
