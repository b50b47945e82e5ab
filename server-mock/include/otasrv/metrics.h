/* GET /metrics: the server's figures in the Prometheus text exposition
 * format (version 0.0.4). The fleet, rollout and fault figures are rendered
 * from the very JSON objects the admin API answers (GET /api/v1/stats, the
 * rollout objects, GET /api/v1/faults), so the two cannot disagree; the
 * request counters and latency histograms are kept here, bumped once per
 * request when it completes (with the access log line's figures). Names,
 * types and labels: docs/protocol.md, "Prometheus metrics". */
#ifndef OTASRV_METRICS_H
#define OTASRV_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_srv;
struct otasrv_req;

/* What a request was, as a bounded label (never a path or an id). */
enum otasrv_route_class {
    OTASRV_ROUTE_REGISTER, /* POST /api/v1/devices/register */
    OTASRV_ROUTE_CHECKIN,  /* POST /api/v1/devices/{id}/checkin */
    OTASRV_ROUTE_STATUS,   /* POST /api/v1/devices/{id}/status */
    OTASRV_ROUTE_DOWNLOAD, /* GET|HEAD /api/v1/releases/{id}/{file} (device face) */
    OTASRV_ROUTE_ADMIN,    /* the rest of /api/v1 but the event streams */
    OTASRV_ROUTE_EVENTS,   /* /api/v1/events, /api/v1/rollouts/{id}/events */
    OTASRV_ROUTE_DDI,      /* /{tenant}/controller/v1/... */
    OTASRV_ROUTE_GITHUB,   /* the GitHub-Releases face */
    OTASRV_ROUTE_METRICS,  /* /metrics */
    OTASRV_ROUTE_OTHER,    /* anything else (404s) */
    OTASRV_ROUTE_MAX
};

/* The answer's status class: 1xx..5xx, or none (closed without an answer). */
enum { OTASRV_CODE_CLASSES = 6 };

/* Upper bounds of the latency histogram's buckets, 0.5 ms .. 300 s (+Inf
 * follows). */
#define OTASRV_LATENCY_BUCKETS 17

/* Per (route class, status class): the requests' summed latency in
 * microseconds and the histogram's buckets (not cumulative here; the
 * exposition sums them, and their total is the request count). Lock-free:
 * every field is atomic. */
struct otasrv_http_stats {
    atomic_ullong sum_us[OTASRV_ROUTE_MAX][OTASRV_CODE_CLASSES];
    atomic_ullong bucket[OTASRV_ROUTE_MAX][OTASRV_CODE_CLASSES][OTASRV_LATENCY_BUCKETS + 1];
};

/* The route class of a request (from its method and path segments, as
 * route() in server.c dispatches them). */
enum otasrv_route_class otasrv_route_class_of(const struct otasrv_req *req);
/* Counts a completed request: status 0 for one closed without an answer;
 * us is its time from arrival to completion in microseconds (the access
 * log's "ms" is us / 1000). */
void otasrv_http_stats_observe(struct otasrv_http_stats *st, enum otasrv_route_class route,
                               unsigned status, int64_t us);

/* A scrape computed on its own thread (metrics.c); what on_completed frees
 * if its request ends with one (NULL ok). */
struct otasrv_metrics_job;
void otasrv_metrics_job_free(struct otasrv_metrics_job *job);

#ifdef __cplusplus
}
#endif
#endif
