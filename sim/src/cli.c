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
#include "otasim/runner.h"
#include "otasim/svc.h"

#ifndef OTA_SOURCE_DIR
#define OTA_SOURCE_DIR "."
#endif

/* EXIT_NOT_RUN: nothing failed, but trials could not run on the agent under
 * test (a fault-point scenario on an agent built without fault points). */
enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_RUN = 4, EXIT_HARNESS = 5 };

static void usage(FILE *f)
{
    fprintf(f, "usage: ota-sim run SCENARIO.yaml... [options]\n"
               "       ota-sim matrix [--matrix FILE] [--list] [--case ID]... [options]\n"
               "       ota-sim svc --dev ROOT start|stop|restart|is-active|reboot\n"
               "       ota-sim journal FILE   (print an interposer journal)\n"
               "\n"
               "Runs the real ota-agent on simulated devices against a real ota-server on\n"
               "127.0.0.1 and breaks them: power cuts, agent and service crashes, disk full,\n"
               "network partitions, clock jumps, bad releases, download faults. Every trial\n"
               "ends with the invariant checker and lands in the run database.\n"
               "\n"
               "run options:\n"
               "  --fault KIND         override the file's fault: none power-cut agent-crash\n"
               "                       disk-full eio partition clock-jump corrupt-bootenv\n"
               "                       service-crash\n"
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
               "  --keep               keep the trees of passing trials too\n"
               "  -q, --quiet          no progress line\n"
               "QEMU tier (images/: `make image` first):\n"
               "  --target native|qemu where trials run (default native); qemu runs the\n"
               "                       aarch64 agent of the image, -j defaults to 1\n"
               "  --profile raspi3b|virt  the QEMU machine (default raspi3b)\n"
               "  --image DIR          build-image output (default images/out/latest-empty)\n"
               "  --qemu-timeout S     per boot-to-settle phase (raspi3b 420, virt 240)\n"
               "  --guest-agent BIN    an aarch64 ota-agent to test instead of the image's\n"
               "                       (written into each trial's overlay)\n"
               "  --snapshot           power cuts at states boot from the disk frozen there in\n"
               "                       one recording run per scenario (no first boot per trial)\n"
               "\n"
               "Exit: 0 all passed, 1 a trial failed, 2 usage or bad scenario, 4 nothing failed\n"
               "but trials could not run on this agent (fault points: cmake\n"
               "-DOTA_FAULT_POINTS=ON), 5 harness error.\n");
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
    uint64_t done = s->passed + s->failed + s->errors + s->not_run;

    /* The rate is of trials run: a copied result is not a trial. */
    fprintf(stderr,
            "%s[%llu/%llu] pass %llu  fail %llu  error %llu  not run %llu  (%llu run, %llu copied "
            "by equivalence)  %.0f trials/min%s",
            isatty(2) ? "\r" : "", (unsigned long long)done, (unsigned long long)s->cases,
            (unsigned long long)s->passed, (unsigned long long)s->failed,
            (unsigned long long)s->errors, (unsigned long long)s->not_run,
            (unsigned long long)s->run, (unsigned long long)s->equivalent,
            min > 0 ? (double)s->run / min : 0.0, ev->final || !isatty(2) ? "\n" : "");
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
        if (p->quiet)
            break;
        fprintf(stderr, "%sFAIL %s: %s\n  reproduce: %s\n", isatty(2) ? "\r" : "", ev->id,
                ev->detail, ev->reproduce);
        for (const char *l = ev->logs; *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] != 0))
            fprintf(stderr, "  serial log: %.*s\n", (int)strcspn(l, "\n"), l);
        break;
    case OTASIM_RUN_NOT_RUN:
        /* even with -q: a run of nothing but these must say why */
        fprintf(stderr, "%sota-sim: %s: %s (%s)\n", isatty(2) && !p->quiet ? "\r" : "", ev->id,
                ev->detail, ev->agent);
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
    int r;
    enum otasim_crash_model m;
    char *end;
    long v;

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

int otasim_cli_main(int argc, char **argv)
{
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
        O_GUEST_AGENT,
        O_SNAPSHOT,
        O_CASES_FROM,
        O_CMODEL,
        O_CSUBSETS
    };
    static const struct option opts[] = {{"fault", required_argument, NULL, O_FAULT},
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
                                         {"guest-agent", required_argument, NULL, O_GUEST_AGENT},
                                         {"snapshot", no_argument, NULL, O_SNAPSHOT},
                                         {"cases-from", required_argument, NULL, O_CASES_FROM},
                                         {"crash-model", required_argument, NULL, O_CMODEL},
                                         {"crash-subsets", required_argument, NULL, O_CSUBSETS},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct otasim_run_opts o = {.jobs = 2, .seed = 1, .crash_model = -1};
    struct otasim_fault override;
    struct otasim_tools t;
    struct otasim_runner *r = NULL;
    struct otasim_run_stats st = {0};
    struct ota_err e = {0};
    const char *matrix = OTA_SOURCE_DIR "/scenarios/matrix.yaml", *agent = NULL, *work = NULL;
    const char *cmd, *with_dir = NULL, *target = "native", *profile = NULL, *image = NULL;
    char cmdline[4096] = "";
    int have_fault = 0, have_trigger = 0, keep = 0, c, rc = EXIT_HARNESS, jobs_set = 0;
    int qtimeout = 0;
    const char *guest_agent = NULL;
    int snapshot = 0;
    struct case_list cases = {0};
    struct printer pr = {0};

    memset(&override, 0, sizeof(override));
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_PASS;
    }
    cmd = argv[1];
    if (strcmp(cmd, "svc") == 0)
        return do_svc(argc, argv);
    if (strcmp(cmd, "journal") == 0)
        return do_journal(argc, argv);
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "matrix") != 0) {
        fprintf(stderr, "ota-sim: unknown command '%s'\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(cmdline);
        snprintf(cmdline + n, sizeof(cmdline) - n, "%s%s", i ? " " : "", argv[i]);
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "j:qh", opts, NULL)) != -1) {
        switch (c) {
        case O_FAULT:
            if (otasim_fault_kind_parse(optarg, &override.kind, &e) < 0)
                goto usage_err;
            have_fault = 1;
            break;
        case O_TRIGGER:
            if (otasim_trigger_parse(optarg, &override.trigger, &e) < 0)
                goto usage_err;
            have_trigger = 1;
            break;
        case O_MATRIX:
            matrix = optarg;
            break;
        case O_LIST:
            o.list = 1;
            break;
        case O_CASE:
            if (case_add(&cases, optarg, strlen(optarg), &e) < 0)
                goto usage_err;
            break;
        case O_CASES_FROM:
            if (cases_read(&cases, optarg, &e) < 0)
                goto usage_err;
            break;
        case O_TARGET:
            target = optarg;
            break;
        case O_PROFILE:
            profile = optarg;
            break;
        case O_IMAGE:
            image = optarg;
            break;
        case O_SNAPSHOT:
            snapshot = 1;
            break;
        case O_CMODEL:
        case O_CSUBSETS:
            if (crash_opt(c == O_CMODEL, optarg, &o, &e) < 0)
                goto usage_err;
            break;
        case O_GUEST_AGENT:
            guest_agent = optarg;
            break;
        case O_QTIMEOUT:
            qtimeout = atoi(optarg);
            if (qtimeout < 10) {
                ota_err_set(&e, EINVAL, "--qemu-timeout: at least 10 (seconds)");
                goto usage_err;
            }
            break;
        case 'j':
            jobs_set = 1;
            o.jobs = atoi(optarg);
            if (o.jobs < 1 || o.jobs > 64) {
                ota_err_set(&e, EINVAL, "--jobs: 1..64");
                goto usage_err;
            }
            break;
        case O_SEED:
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case O_AGENT:
            agent = optarg;
            break;
        case O_WORK:
            work = optarg;
            break;
        case O_DB:
            o.db_path = optarg;
            break;
        case O_JUNIT:
            o.junit_path = optarg;
            break;
        case O_EXH:
            o.exhaustive = 1;
            break;
        case O_KEEP:
            keep = 1;
            break;
        case O_FAILFAST:
            o.fail_fast = 1;
            break;
        case O_WITH:
            with_dir = optarg;
            break;
        case O_TREES:
            o.trees_dir = optarg;
            break;
        case 'q':
            pr.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_PASS;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (have_trigger && !have_fault) {
        ota_err_set(&e, EINVAL, "--trigger needs --fault");
        goto usage_err;
    }
    if (strcmp(cmd, "run") == 0 && optind >= argc) {
        ota_err_set(&e, EINVAL, "run: name at least one scenario file");
        goto usage_err;
    }
    if (cases.n && strcmp(cmd, "matrix") != 0) {
        ota_err_set(&e, EINVAL, "--case and --cases-from go with matrix");
        goto usage_err;
    }
    o.only_cases = (const char *const *)cases.v;
    o.n_only_cases = cases.n;
    o.command = cmdline;
    pr.list = o.list;
    o.sink = (struct otasim_run_sink){print_event, &pr};
    if (otasim_tools_find(&t, agent, work, &e) < 0) {
        fprintf(stderr, "ota-sim: %s\n", e.reason);
        return EXIT_HARNESS;
    }
    t.keep = keep;
    if (strcmp(target, "qemu") == 0) {
        t.qemu_timeout_s = qtimeout;
        if (otasim_tools_qemu(&t, profile, image, &e) < 0) {
            fprintf(stderr, "ota-sim: %s\n", e.reason);
            return EXIT_HARNESS;
        }
        if (!jobs_set)
            o.jobs = 1;
        t.qemu_snapshot = snapshot;
        if (guest_agent && !realpath(guest_agent, t.guest_agent)) {
            ota_err_set(&e, errno, "--guest-agent %s: %s", guest_agent, strerror(errno));
            goto usage_err;
        }
        /* (this check sat after a goto in the branch below: never reached) */
        if (o.crash_model > OTASIM_CRASH_MINIMAL) {
            ota_err_set(&e, EINVAL, "--crash-model %s: the native tier only",
                        otasim_crash_model_names[o.crash_model]);
            goto usage_err;
        }
    } else if (strcmp(target, "native") != 0) {
        ota_err_set(&e, EINVAL, "--target: native or qemu");
        goto usage_err;
    } else if (profile || image || guest_agent || snapshot) {
        ota_err_set(&e, EINVAL, "--profile, --image and --guest-agent go with --target qemu");
        goto usage_err;
    } else if (!jobs_set) {
        /* a native trial waits for its app, server and service commands about
         * a quarter of its time: two per CPU keep the CPUs busy */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o.jobs = cpus < 1 ? 2 : cpus > 32 ? 64 : (int)(2 * cpus);
    }
    if (otasim_runner_new(&t, &o, &r, &e) < 0)
        goto harness;
    if (strcmp(cmd, "run") == 0) {
        for (int i = optind; i < argc; i++) {
            struct otasim_scenario sc;
            if (otasim_scenario_load(argv[i], &sc, &e) < 0) {
                fprintf(stderr, "ota-sim: %s\n", e.reason);
                rc = EXIT_USAGE;
                goto out;
            }
            if (otasim_runner_add(r, &sc, have_fault ? &override : NULL, &e) < 0)
                goto harness;
        }
    } else if (with_dir && add_dir(r, with_dir, &e) < 0) {
        fprintf(stderr, "ota-sim: %s\n", e.reason);
        rc = e.code == EINVAL ? EXIT_USAGE : EXIT_HARNESS;
        goto out;
    } else if (otasim_runner_add_matrix(r, matrix, &e) < 0) {
        fprintf(stderr, "ota-sim: %s\n", e.reason);
        rc = e.code == EINVAL ? EXIT_USAGE : EXIT_HARNESS;
        goto out;
    }
    if (otasim_runner_run(r, &st, &e) < 0)
        goto harness;
    rc = st.errors ? EXIT_HARNESS : st.failed ? EXIT_FAILED : st.not_run ? EXIT_NOT_RUN : EXIT_PASS;
    goto out;
usage_err:
    fprintf(stderr, "ota-sim: %s\n", e.reason);
    case_list_free(&cases);
    return EXIT_USAGE;
harness:
    fprintf(stderr, "ota-sim: %s\n", e.reason);
    rc = EXIT_HARNESS;
out:
    otasim_runner_free(r);
    case_list_free(&cases);
    return rc;
}
