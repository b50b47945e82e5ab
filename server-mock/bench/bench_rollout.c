/* bench-rollout: the rollout engine's cost per request as the fleet grows.
 * One rollout (immediate, report timeout 10 min) of N devices; the calls the
 * server makes per request, in its order: a check-in is tick, checkin,
 * tick; a report is tick, on_report, tick. Each is timed over K devices
 * (K = min(N, --ops)), plus next_deadline (the virtual clock's question) and
 * measure (the metrics). Prints one line per N; only the engine's public
 * API, so the same file builds against older trees for a before/after.
 *
 *   bench-rollout [--ops K] [N...]      (default: 1000 10000 100000)
 *
 * Not a test: built on demand (cmake --build B --target bench-rollout). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otasrv/rollout.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int run(size_t n, size_t ops)
{
    const int64_t t0 = 1795000000000LL;
    struct otasrv_rollout_def def;
    struct otasrv_rollout *r = NULL;
    struct otasrv_rollout_device *devs = calloc(n, sizeof(*devs));
    struct otasrv_rollout_metrics m;
    struct otasrv_rollout_decision dec;
    struct ota_err err = {0};
    json_error_t jerr;
    json_t *j = json_loads("{\"id\":\"bench\",\"release_id\":\"app-2.0.0\",\"strategy\":"
                           "\"immediate\",\"report_timeout_ms\":600000}",
                           0, &jerr);
    double a, c_s, r_s, d_s, m_s;
    int64_t sink = 0;
    size_t k = ops < n ? ops : n, mk = k < 50 ? k : 50;

    memset(&def, 0, sizeof(def));
    if (!devs || !j || otasrv_rollout_from_json(j, &def, &err) < 0 ||
        otasrv_rollout_new(&def, t0, &r, &err) < 0) {
        fprintf(stderr, "bench-rollout: setup: %s\n", err.reason);
        return 1;
    }
    json_decref(j);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "dev-%07zu", i);
        if (otasrv_rollout_device_init("bench", id, &devs[i], &err) < 0)
            return 1;
    }
    if (otasrv_rollout_act(r, OTASRV_OP_APPROVE, devs, n, t0, &err) < 0 ||
        otasrv_rollout_act(r, OTASRV_OP_START, devs, n, t0, &err) < 0) {
        fprintf(stderr, "bench-rollout: start: %s\n", err.reason);
        return 1;
    }
    a = now_s();
    for (size_t i = 0; i < k; i++) {
        int64_t t = t0 + 1 + (int64_t)i;
        otasrv_rollout_tick(r, devs, n, t, NULL);
        otasrv_rollout_checkin(r, NULL, &devs[i], t, &dec);
        otasrv_rollout_tick(r, devs, n, t, NULL);
    }
    c_s = now_s() - a;
    a = now_s();
    for (size_t i = 0; i < k; i++) {
        int64_t t = t0 + 100000 + (int64_t)i;
        otasrv_rollout_tick(r, devs, n, t, NULL);
        if (otasrv_rollout_on_report(r, &devs[i], 0,
                                     i % 2 ? OTASRV_REPORT_SUCCESS : OTASRV_REPORT_IN_PROGRESS, t,
                                     &err) < 0)
            return 1;
        otasrv_rollout_tick(r, devs, n, t, NULL);
    }
    r_s = now_s() - a;
    a = now_s();
    for (size_t i = 0; i < k; i++)
        sink += otasrv_rollout_next_deadline(r, devs, n, t0 + 100000 + (int64_t)k);
    d_s = now_s() - a;
    a = now_s();
    for (size_t i = 0; i < mk; i++) {
        if (otasrv_rollout_measure(r, devs, n, &m) < 0)
            return 1;
        sink += m.in_flight;
    }
    m_s = now_s() - a;
    printf("devices %7zu: check-ins %9.0f/s  reports %9.0f/s  next_deadline %10.0f/s  "
           "measure %8.0f/s  (%zu ops, sink %lld)\n",
           n, k / c_s, k / r_s, k / d_s, mk / m_s, k, (long long)(sink & 1));
    otasrv_rollout_free(r);
    free(devs);
    return 0;
}

int main(int argc, char **argv)
{
    size_t ops = 2000, sizes[16], ns = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            ops = strtoul(argv[++i], NULL, 10);
        else if (ns < 16)
            sizes[ns++] = strtoul(argv[i], NULL, 10);
    }
    if (!ns) {
        sizes[ns++] = 1000;
        sizes[ns++] = 10000;
        sizes[ns++] = 100000;
    }
    for (size_t i = 0; i < ns; i++)
        if (sizes[i] && run(sizes[i], ops))
            return 1;
    return 0;
}
