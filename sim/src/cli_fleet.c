/* ota-sim fleet: a fleet run (otasim/fleet.h) and its verdict; with
 * --seeds K, K runs and how often the rollout stopped the bad release. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otasim/cli.h"
#include "otasim/fleet.h"

enum { EXIT_PASS = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_HARNESS = 5 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ota-sim fleet FLEET.yaml [options]\n"
            "\n"
            "Runs a fleet: every device an instance of the agent's own core (in this\n"
            "process), against a real ota-server on 127.0.0.1 on a virtual clock, through\n"
            "the rollout the file defines, with its faults; then checks every device with\n"
            "the invariant table and the file's expectations. File format: docs/fleet.md.\n"
            "\n"
            "  --seed N             the run's seed (default: the file's)\n"
            "  --seeds K            K runs, seeds N..N+K-1: how often the rollout stopped\n"
            "                       (paused, failed or rolled back), with a 95%% Wilson interval\n"
            "  --devices N          override the file's device count\n"
            "  --shard I/N          run devices i with i %% N == I only\n"
            "  --connections N      keep-alive connections to the server (default 256)\n"
            "  --max-active N       devices inside a pass at once (default 4096)\n"
            "  --grain MS           the virtual clock's grain (default 1000): device wakes round\n"
            "                       up to it, so devices due within one grain act together\n"
            "                       after one advance of the server's clock\n"
            "  --server-threads N   ota-server --threads (default 2)\n"
            "  --work DIR           caches and the run's dir (default BUILD/sim-work)\n"
            "  --json FILE          the run's figures as JSON\n"
            "  --db FILE            run database (default WORK/runs.db): the run, its time\n"
            "                       series and every device's outcome (tables fleet_*)\n"
            "  --keep               keep the run's dir (server database, releases)\n"
            "  --access-log         the server keeps an access log (RUNDIR/server/server.log, a\n"
            "                       JSON line per request; off by default: it costs the server\n"
            "                       a write per request, and millions of lines)\n"
            "\n"
            "Shards on one server (docs/fleet.md \"Fleet runs across machines\"):\n"
            "  --serve-only         the server side: start ota-server for --parties N shards,\n"
            "                       upload the releases, create the rollout; serve until\n"
            "                       every shard is done\n"
            "  --parties N          shards sharing the server's clock (default: --shard's N)\n"
            "  --info FILE          --serve-only: write url, admin_token, pubkey... as JSON\n"
            "  --server-arg ARG     --serve-only: one more ota-server serve argument\n"
            "                       (repeat; e.g. --server-arg=--listen=0.0.0.0)\n"
            "  --server URL         a shard: join that server (with --shard I/N)\n"
            "  --admin-token T      its admin token (--serve-only: the one to give it)\n"
            "  --enroll-token T     its enrollment token (default sim-enroll)\n"
            "  --pubkey FILE        the release key (default WORK/cache/keys/release.pub)\n"
            "  -v, --verbose        name the first devices that failed an invariant\n"
            "  -q, --quiet          no progress lines\n"
            "\n"
            "Exit: 0 every expectation held, 1 one failed (the rerun command is printed),\n"
            "2 usage or a bad fleet file, 5 the harness failed.\n");
}

struct fleet_cmd {
    struct otasim_fleet_opts o;
    const char *server_args[32];
    size_t n_server_args;
    uint32_t seeds;
    const char *json;
    int quiet;
};

static int parse(struct fleet_cmd *c, int argc, char **argv)
{
    static const struct option opts[] = {{"seed", required_argument, 0, 's'},
                                         {"seeds", required_argument, 0, 'K'},
                                         {"devices", required_argument, 0, 'n'},
                                         {"shard", required_argument, 0, 'S'},
                                         {"connections", required_argument, 0, 'c'},
                                         {"max-active", required_argument, 0, 'a'},
                                         {"grain", required_argument, 0, 'g'},
                                         {"server-threads", required_argument, 0, 't'},
                                         {"work", required_argument, 0, 'w'},
                                         {"json", required_argument, 0, 'J'},
                                         {"db", required_argument, 0, 'D'},
                                         {"keep", no_argument, 0, 'k'},
                                         {"access-log", no_argument, 0, 'L'},
                                         {"serve-only", no_argument, 0, 'O'},
                                         {"parties", required_argument, 0, 'P'},
                                         {"info", required_argument, 0, 'I'},
                                         {"server-arg", required_argument, 0, 'A'},
                                         {"server", required_argument, 0, 'U'},
                                         {"admin-token", required_argument, 0, 'T'},
                                         {"enroll-token", required_argument, 0, 'E'},
                                         {"pubkey", required_argument, 0, 'B'},
                                         {"verbose", no_argument, 0, 'v'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;

    optind = 2;
    while ((ch = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            c->o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'K':
            c->seeds = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            c->o.count = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            if (sscanf(optarg, "%u/%u", &c->o.shard, &c->o.shards) != 2 || c->o.shards == 0 ||
                c->o.shard >= c->o.shards) {
                fprintf(stderr, "ota-sim fleet: --shard I/N with 0 <= I < N\n");
                return EXIT_USAGE;
            }
            break;
        case 'c':
            c->o.connections = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'a':
            c->o.max_active = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'g':
            c->o.grain_ms = strtoll(optarg, NULL, 10);
            break;
        case 't':
            c->o.server_threads = atoi(optarg);
            break;
        case 'w':
            c->o.work = optarg;
            break;
        case 'J':
            c->json = optarg;
            break;
        case 'D':
            c->o.db = optarg;
            break;
        case 'k':
            c->o.keep = 1;
            break;
        case 'L':
            c->o.access_log = 1;
            break;
        case 'O':
            c->o.serve_only = 1;
            break;
        case 'P':
            c->o.parties = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'I':
            c->o.info = optarg;
            break;
        case 'A':
            if (c->n_server_args + 1 >= sizeof(c->server_args) / sizeof(c->server_args[0])) {
                fprintf(stderr, "ota-sim fleet: too many --server-arg\n");
                return EXIT_USAGE;
            }
            c->server_args[c->n_server_args++] = optarg;
            c->o.server_args = c->server_args;
            break;
        case 'U':
            c->o.server_url = optarg;
            break;
        case 'T':
            c->o.admin_token = optarg;
            break;
        case 'E':
            c->o.enroll_token = optarg;
            break;
        case 'B':
            c->o.pubkey = optarg;
            break;
        case 'v':
            c->o.verbose = 1;
            break;
        case 'q':
            c->quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_PASS;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (c->o.serve_only && c->o.server_url) {
        fprintf(stderr, "ota-sim fleet: --serve-only starts the server: no --server\n");
        return EXIT_USAGE;
    }
    if (c->o.server_url && (!c->o.admin_token || c->seeds > 1)) {
        fprintf(stderr, "ota-sim fleet: --server needs --admin-token (and one seed)\n");
        return EXIT_USAGE;
    }
    return -1;
}

static void print_stats(const struct otasim_fleet_def *def, const struct otasim_fleet_stats *s)
{
    printf("fleet %s: %u devices (%u online), rollout %s at stage %d after %.2f virtual h "
           "(%.2f h covered)\n",
           def->name, s->devices, s->online, s->rollout_state[0] ? s->rollout_state : "-", s->stage,
           s->rollout_ms / 3600000.0, s->virtual_ms / 3600000.0);
    if (s->rollout_reason[0])
        printf("  rollout: %s\n", s->rollout_reason);
    printf("  on %s: %u (%.2f%%)  took a bad release: %u (%.2f%%)  rolled back: %u\n",
           def->expect_target_version[0] ? def->expect_target_version : def->rollout_release,
           s->on_target, s->online ? 100.0 * s->on_target / s->online : 0, s->bad_installed,
           s->devices ? 100.0 * s->bad_installed / s->devices : 0, s->rolled_back);
    printf("  bricked %u  inconsistent %u  stuck %u  never checked in %u\n", s->bricked,
           s->inconsistent, s->stuck, s->never_checked_in);
    printf("  downtime per update: mean %.1f s, p95 %.1f s; downloaded per device: mean %.2f "
           "MiB, max %.2f MiB; recovered after a failure: %u (mean %.1f s, p95 %.1f s)\n",
           s->downtime_mean_ms / 1000, s->downtime_p95_ms / 1000, s->bytes_mean / 1048576.0,
           s->bytes_max / 1048576.0, s->recovered, s->recovery_mean_ms / 1000,
           s->recovery_p95_ms / 1000);
    printf("  faults: %llu power cuts, %llu agent crashes, %llu server faults applied\n",
           (unsigned long long)s->power_cuts, (unsigned long long)s->agent_crashes,
           (unsigned long long)s->srv_faults_applied);
    if (s->faults[0]) {
        const char *p = s->faults;
        while (*p) {
            const char *nl = strchr(p, '\n');
            int len = nl ? (int)(nl - p) : (int)strlen(p);
            printf("    %.*s\n", len, p);
            p += len + (nl ? 1 : 0);
        }
    }
    printf("  work: %llu requests (%.0f/s), %llu passes, %llu core steps, %.1f MiB downloaded\n",
           (unsigned long long)s->requests, s->wall_s > 0 ? s->requests / s->wall_s : 0,
           (unsigned long long)s->passes, (unsigned long long)s->steps, s->bytes_down / 1048576.0);
    printf("  wall %.2f s, runner CPU %.2f s user + %.2f s sys, server CPU %.2f s; peak RSS "
           "runner %ld MiB, server %ld MiB; %ld bytes per idle device\n",
           s->wall_s, s->cpu_user_s, s->cpu_sys_s, s->srv_cpu_s, s->peak_rss_kib / 1024,
           s->srv_peak_rss_kib / 1024, s->rss_per_idle_device_bytes);
}

static int write_json(const char *path, const struct otasim_fleet_def *def,
                      const struct otasim_fleet_stats *s, uint64_t seed)
{
    char *text = otasim_fleet_stats_json(def, s, seed);
    FILE *f;
    int r = 0;

    if (!text)
        return -ENOMEM;
    f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", text) < 0)
        r = -errno;
    if (f && fclose(f) != 0 && r == 0)
        r = -errno;
    free(text);
    return r;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* min, median and max of v[0..n) (sorted in place) */
static void spread(const char *what, uint32_t *v, uint32_t n, const char *unit)
{
    if (!n)
        return;
    qsort(v, n, sizeof(*v), cmp_u32);
    printf("  %s: min %u, median %u, max %u%s\n", what, v[0], v[n / 2], v[n - 1], unit);
}

static int stopped(const char *state)
{
    return strcmp(state, "paused") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "rolled_back") == 0;
}

int otasim_cli_fleet(int argc, char **argv)
{
    struct fleet_cmd c = {.seeds = 1};
    struct otasim_fleet_def def;
    struct ota_err e = {0};
    uint64_t seed0;
    uint32_t caught = 0, failed = 0, runs = 0;
    uint32_t *bad = NULL, *minutes = NULL;
    int code;

    if ((code = parse(&c, argc, argv)) >= 0)
        return code;
    if (otasim_fleet_load(argv[optind], &def, &e) < 0) {
        fprintf(stderr, "ota-sim fleet: %s\n", e.reason);
        return EXIT_USAGE;
    }
    c.o.progress = c.quiet ? NULL : stderr;
    if (c.o.serve_only) {
        code = otasim_fleet_serve(&def, &c.o, stdout, &e) < 0 ? EXIT_HARNESS : EXIT_PASS;
        if (code)
            fprintf(stderr, "ota-sim fleet --serve-only: %s\n", e.reason);
        otasim_fleet_def_free(&def);
        return code;
    }
    seed0 = c.o.seed ? c.o.seed : def.seed;
    code = EXIT_PASS;
    bad = calloc(c.seeds ? c.seeds : 1, sizeof(*bad));
    minutes = calloc(c.seeds ? c.seeds : 1, sizeof(*minutes));
    if (!bad || !minutes) {
        fprintf(stderr, "ota-sim fleet: out of memory\n");
        code = EXIT_HARNESS;
    }
    for (uint32_t k = 0; code != EXIT_HARNESS && k < (c.seeds ? c.seeds : 1); k++) {
        struct otasim_fleet_stats st;
        c.o.seed = seed0 + k;
        if (otasim_fleet_run(&def, &c.o, &st, &e) < 0) {
            fprintf(stderr, "ota-sim fleet: %s\n", e.reason);
            code = EXIT_HARNESS;
            break;
        }
        print_stats(&def, &st);
        caught += stopped(st.rollout_state);
        bad[runs] = st.bad_installed;
        minutes[runs++] = (uint32_t)(st.rollout_ms / 60000);
        if (c.json && write_json(c.json, &def, &st, c.o.seed) < 0)
            fprintf(stderr, "ota-sim fleet: cannot write %s\n", c.json);
        if (!st.ok) {
            failed++;
            printf("FAILED (seed %llu):\n%s  rerun: %s\n", (unsigned long long)c.o.seed, st.failed,
                   st.rerun);
            code = EXIT_FAILED;
        } else {
            printf("PASS (seed %llu)\n", (unsigned long long)c.o.seed);
        }
        fflush(stdout);
    }
    if (c.seeds > 1 && code != EXIT_HARNESS) {
        double lo, hi;
        otasim_wilson(caught, c.seeds, 1.96, &lo, &hi);
        printf("over %u seeds: the rollout stopped in %u (%.1f%%, 95%% Wilson interval "
               "%.1f%%..%.1f%%); %u runs failed an expectation\n",
               c.seeds, caught, 100.0 * caught / c.seeds, 100 * lo, 100 * hi, failed);
        spread("devices that took a bad release", bad, runs, "");
        spread("rollout duration", minutes, runs, " virtual minutes");
    }
    free(bad);
    free(minutes);
    otasim_fleet_def_free(&def);
    return code;
}

/* ---- ota-sim fleet-merge ---- */

int otasim_cli_fleet_merge(int argc, char **argv)
{
    struct ota_err e = {0};
    int64_t id = 0;
    int ok = 0;

    if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        printf("usage: ota-sim fleet-merge OUT.db SHARD.db...\n"
               "\n"
               "Merges the last fleet run of each shard's run database (ota-sim fleet --shard\n"
               "I/N --db SHARD.db) into one fleet run in OUT.db: devices and time series\n"
               "unioned, counts summed, figures recomputed from the devices, the verdict\n"
               "recomputed (docs/fleet.md \"Merging shards\").\n"
               "Exit: 0 the merged run passes, 1 it fails, 2 usage, 5 the merge failed.\n");
        return EXIT_PASS;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: ota-sim fleet-merge OUT.db SHARD.db...\n");
        return EXIT_USAGE;
    }
    if (otasim_fleet_merge(argv[2], (const char *const *)argv + 3, (size_t)(argc - 3), &ok, &id,
                           stdout, &e) < 0) {
        fprintf(stderr, "ota-sim fleet-merge: %s\n", e.reason);
        return EXIT_HARNESS;
    }
    printf("%s (fleet run %lld in %s)\n", ok ? "PASS" : "FAILED", (long long)id, argv[2]);
    return ok ? EXIT_PASS : EXIT_FAILED;
}
