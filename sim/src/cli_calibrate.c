/* ota-sim fleet-calibrate: the same fleet file and seed with in-process
 * devices and with real `ota-agent` processes on simulated devices; every
 * device's final outcome must agree (fleet_native.c, docs/fleet.md
 * "Calibration"). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otasim/cli.h"
#include "otasim/fleet.h"

enum { EXIT_PASS = 0, EXIT_DIFFER = 1, EXIT_USAGE = 2, EXIT_HARNESS = 5 };

static void usage(FILE *f)
{
    fprintf(f, "usage: ota-sim fleet-calibrate FLEET.yaml [options]\n"
               "\n"
               "Runs the fleet twice with the same seed: every device an in-process agent core\n"
               "(ota-sim fleet), then every device a real ota-agent process on a simulated\n"
               "device of the native tier, against a server of its own on the same virtual\n"
               "clock; compares each device's final running version, agent state, rollback and\n"
               "final report on the rollout's release, and the rollout's end state.\n"
               "\n"
               "  --seed N        the run's seed (default: the file's)\n"
               "  --devices N     override the file's device count\n"
               "  -j, --jobs N    native passes at once (default 4)\n"
               "  --batch MS      native passes due within MS virtual ms run together, the\n"
               "                  server's clock held (default poll_interval / 12)\n"
               "  --work DIR      caches and the runs' dirs (default BUILD/sim-work)\n"
               "  --keep          keep the runs' dirs (servers, device trees)\n"
               "  --table         print every device's outcome (native)\n"
               "  -q, --quiet     no progress lines\n"
               "\n"
               "Exit: 0 the same outcomes, 1 a difference (printed), 2 usage or a fleet file\n"
               "the native run cannot reproduce, 5 the harness failed.\n");
}

int otasim_cli_fleet_calibrate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"seed", required_argument, 0, 's'}, {"devices", required_argument, 0, 'n'},
        {"jobs", required_argument, 0, 'j'}, {"batch", required_argument, 0, 'b'},
        {"work", required_argument, 0, 'w'}, {"keep", no_argument, 0, 'k'},
        {"table", no_argument, 0, 'T'},      {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    struct otasim_fleet_opts o = {0};
    struct otasim_fleet_calib_result res;
    struct otasim_fleet_def def;
    struct ota_err e = {0};
    unsigned jobs = 4;
    int64_t batch = 0;
    int ch, quiet = 0, table = 0, diffs, r;

    optind = 2;
    while ((ch = getopt_long(argc, argv, "j:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            o.count = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'j':
            jobs = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            batch = strtoll(optarg, NULL, 10);
            break;
        case 'w':
            o.work = optarg;
            break;
        case 'k':
            o.keep = 1;
            break;
        case 'T':
            table = 1;
            break;
        case 'q':
            quiet = 1;
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
    if (otasim_fleet_load(argv[optind], &def, &e) < 0) {
        fprintf(stderr, "ota-sim fleet-calibrate: %s\n", e.reason);
        return EXIT_USAGE;
    }
    o.progress = quiet ? NULL : stderr;
    r = otasim_fleet_calibrate(&def, &o, jobs, batch, &res, &e);
    if (r < 0) {
        fprintf(stderr, "ota-sim fleet-calibrate: %s\n", e.reason);
        otasim_fleet_calib_result_free(&res);
        otasim_fleet_def_free(&def);
        return r == -ENOTSUP ? EXIT_USAGE : EXIT_HARNESS;
    }
    if (table)
        otasim_fleet_calib_print(res.native, stdout);
    diffs = otasim_fleet_calib_compare(res.inproc, res.native, stdout);
    printf("calibration %s: %u devices, seed %llu: in-process %.1f s, native %.1f s (-j %u); "
           "rollout %s; %d difference%s\n",
           def.name, o.count ? o.count : def.count,
           (unsigned long long)(o.seed ? o.seed : def.seed), res.inproc_wall_s, res.native_wall_s,
           jobs, res.inproc_stats.rollout_state, diffs, diffs == 1 ? "" : "s");
    printf("%s\n", diffs ? "DIFFER" : "SAME");
    otasim_fleet_calib_result_free(&res);
    otasim_fleet_def_free(&def);
    return diffs ? EXIT_DIFFER : EXIT_PASS;
}
