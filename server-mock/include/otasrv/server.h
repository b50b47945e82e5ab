/* The HTTP server: the daemon, the request context every handler gets, the
 * router, and our own request/response API for the handlers. server.c is the
 * only file that knows the HTTP library: handlers see a struct otasrv_req (method,
 * path, headers, query, body) and build a struct otasrv_resp (a JSON, buffer,
 * file or streamed body plus headers) that otasrv_reply() queues. Every
 * answer carries X-Request-Id; every 4xx/5xx carries the JSON body
 * {"detail": "..."}. Endpoints: docs/protocol.md. */
#ifndef OTASRV_SERVER_H
#define OTASRV_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "ota/crypto.h"
#include "ota/err.h"
#include "otasrv/clock.h"
#include "otasrv/faultplan.h"
#include "otasrv/ghlimit.h"
#include "otasrv/metrics.h"
#include "otasrv/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASRV_MAX_SEGS 10

/* What a handler returns: OTASRV_OK when the request is answered (or still
 * being read), OTASRV_DROP to close the connection with nothing sent. */
enum otasrv_result { OTASRV_DROP = 0, OTASRV_OK = 1 };

/* A response being built; otasrv_reply() queues and frees it. */
struct otasrv_resp;
/* The connection a request came on (for suspending a streamed answer). */
struct otasrv_conn;
struct otasrv_daemon;
struct otasrv_devlimit;

struct otasrv_config {
    const char *listen;           /* address, default "127.0.0.1" */
    uint16_t port;                /* 0: any free port */
    const char *port_file;        /* written (atomically) once listening; NULL: none */
    const char *db_path;          /* default "./ota-server.db" */
    const char *data_dir;         /* release files; default "./ota-server-data" */
    const char *admin_token;      /* NULL: read or generate admin_token_file */
    const char *admin_token_file; /* NULL: <data_dir>/admin.token */
    /* the read-only admin token (adminauth.c), given or read from a file; NULL: none */
    const char *readonly_admin_token, *readonly_admin_token_file;
    const char *enroll_token; /* NULL: enrollment closed unless open_enrollment */
    int open_enrollment;      /* registration takes any token (labs, tests) */
    const char *tls_cert, *tls_key;
    /* mutual TLS (devcert.c): the device CA (PEM) that signs client
     * certificates, whose subject CN is the device id; NULL: none asked for */
    const char *tls_client_ca;
    int require_client_cert; /* device API calls without a valid certificate: 403 */
    const char *public_key;  /* PEM file(s), comma-separated: a release must verify against one of
                                them (a key rotation: the old and the new); NULL: not checked */
    const char *public_url;  /* base of URLs in answers; NULL: from Host */
    const char *log_path;    /* JSON-lines access log; "-": stderr; NULL: none */
    size_t max_body;         /* JSON body limit, default 1 MiB */
    uint64_t max_upload;     /* raw upload limit, default 8 GiB */
    unsigned threads;        /* thread pool size, default 4 */
    struct otasrv_faultplan *faults; /* --faults plan, freed by the server; NULL: none */
    int virtual_clock;               /* tests only: run on a virtual clock (clock.h) ... */
    int64_t virtual_start_ms;        /* ... whose now starts here (unix ms) */
    int clock_parties;               /* ... driven by this many runners together (0: one) */
    /* hawkBit DDI face (api_ddi.c) */
    const char *ddi_gateway_token; /* GatewayToken for every target; NULL: none accepted */
    unsigned ddi_poll_s;           /* config.polling.sleep, 1..86399 s; 0: 300 */
    const char *ddi_device_type;   /* type of a target made by a gateway poll; NULL: "ddi" */
    /* The GitHub face's rate limit (ghlimit.h); github_limit.limit 0: none */
    struct otasrv_ghlimit_config github_limit;
    /* The fleet API's per-device rate limit (devlimit.h); n 0: none */
    unsigned device_rate_n;
    int64_t device_rate_period_ms;
};

struct otasrv_srv {
    struct otasrv_config cfg;
    struct otasrv_store *store;
    struct otasrv_daemon *daemon;
    uint16_t port;
    int tls;
    int enroll_open;         /* cfg.open_enrollment: any token enrolls */
    int enroll_closed;       /* neither an enrollment token nor open enrollment */
    char enroll_sha[65];     /* its SHA-256 */
    char releases_dir[4096]; /* <data_dir>/releases */
    char *public_key_pem[8]; /* cfg.public_key's keys; none: signatures not checked */
    int n_public_keys;
    char *tls_cert_pem, *tls_key_pem, *tls_client_ca_pem;
    char admin_ro_sha[65]; /* the read-only admin token's SHA-256; "": none */
    FILE *log;
    pthread_mutex_t log_lock;
    atomic_ullong seq;
    char boot[9];
    /* Rollout hook: 1 if a release may not be deleted (in use). NULL: never. */
    int (*release_in_use)(void *ctx, const char *release_id);
    void *hook_ctx;
    struct otasrv_rollouts *rollouts; /* api_rollouts.h */
    struct otasrv_events *events;     /* events.h */
    /* Fault plans (api_faults.c): the live plan, and 1 while it has rules. */
    struct otasrv_faultplan *faults;
    atomic_int faults_on;
    /* The virtual clock (cfg.virtual_clock), installed for otasrv_now_ms();
     * NULL: real time. */
    struct otasrv_clock *clock;
    /* The DDI face's tables (ddi.h) and the gateway token's SHA-256 ("": none). */
    struct otasrv_ddi *ddi;
    char ddi_gw_sha[65];
    /* The GitHub face's rate limit (cfg.github_limit); NULL: none. */
    struct otasrv_ghlimit *ghlimit;
    /* The fleet API's per-device rate limit (cfg.device_rate_n); NULL: none. */
    struct otasrv_devlimit *devlimit;
    /* Request counts and latencies for GET /metrics (metrics.h), and when
     * the server started (unix s, real time). */
    struct otasrv_http_stats http;
    int64_t started_s;
    atomic_int metrics_jobs; /* scrapes being computed (each suspends its connection) */
};

struct otasrv_req {
    struct otasrv_srv *srv;
    struct otasrv_conn *conn;
    const char *method;
    int is_head;
    char path[2048];                  /* decoded path, without the query */
    char segbuf[2048];                /* path, split at '/' */
    const char *seg[OTASRV_MAX_SEGS]; /* path segments, into segbuf */
    int nseg;
    char id[40];     /* request id */
    int64_t t0_us;   /* arrival, monotonic microseconds */
    unsigned status; /* the answer's status, once queued */
    /* JSON body, NUL-terminated */
    char *body;
    size_t body_len, body_cap;
    /* an error decided before the body was read; answered at the end */
    unsigned early_status;
    char early_detail[256];
    /* raw upload streamed to a file (PUT): fd >= 0 while open */
    struct {
        int fd;
        char tmp[4200];
        char dst[4200];
        uint64_t len;
        struct ota_sha256 *hash;
        char release_id[129];
    } up;
    /* the fault-plan decision for this request, when has_fault (api_faults.c) */
    int has_fault;
    struct otasrv_fault_decision fault;
    /* a fault's delay on the virtual clock: the connection is suspended
     * until the timer fires (api_faults.c) */
    int fault_waiting;
    struct otasrv_clock_timer fault_timer;
    /* a clock party's ask (api_clock.c): party + 1 while its connection is
     * suspended until the clock gets to its time; 0: none */
    int clock_party;
    /* headers every answer to this request carries (the GitHub face's
     * X-RateLimit-*): otasrv_req_header */
    int nxhdr;
    const char *xhdr_name[8];
    char xhdr_value[8][32];
    /* GET /metrics computed on its own thread while the connection is
     * suspended (metrics.c); NULL: none */
    struct otasrv_metrics_job *metrics_job;
};

/* Starts listening (and writes the port file). */
int otasrv_server_start(const struct otasrv_config *cfg, struct otasrv_srv **ret,
                        struct ota_err *err) OTA_MUST;
/* Stops the daemon and frees everything; NULL ok. */
void otasrv_server_stop(struct otasrv_srv *srv);

/* The libmicrohttpd version the server runs on (for the build info). */
const char *otasrv_http_lib_version(void);

/* ---- responses ---- */

#define OTASRV_RESP_SIZE_UNKNOWN   UINT64_MAX
#define OTASRV_RESP_END_OF_STREAM  ((ssize_t)-1) /* a reader's end of the body */
#define OTASRV_RESP_END_WITH_ERROR ((ssize_t)-2) /* a reader's failure: the connection closes */

/* Fills buf (max bytes) with the body from offset pos: the byte count, 0
 * for nothing yet (suspend the connection first), or OTASRV_RESP_END_*. */
typedef ssize_t (*otasrv_resp_reader_fn)(void *ctx, uint64_t pos, char *buf, size_t max);
/* Frees the reader's ctx once the response is done with. */
typedef void (*otasrv_resp_free_fn)(void *ctx);

/* body (reference stolen) as Content-Type: application/json, no-store.
 * NULL on failure (body NULL included). */
struct otasrv_resp *otasrv_resp_json(json_t *body);
/* len bytes at data, which outlive the response (a constant). */
struct otasrv_resp *otasrv_resp_static(const char *data, size_t len);
/* len bytes of text (taken: freed with the response, here on failure)
 * with the given Content-Type, no-store. NULL on failure. */
struct otasrv_resp *otasrv_resp_text(char *text, size_t len, const char *content_type);
/* len bytes of fd from offset start (sendfile on plain HTTP). Takes fd:
 * closed with the response, or here on failure. */
struct otasrv_resp *otasrv_resp_fd(int fd, uint64_t start, uint64_t len);
/* A body of size bytes (OTASRV_RESP_SIZE_UNKNOWN: until the reader ends it)
 * produced by fn in blocks of up to block bytes; free_fn(ctx) is called
 * when the response is freed, here on failure too. */
struct otasrv_resp *otasrv_resp_reader(uint64_t size, size_t block, otasrv_resp_reader_fn fn,
                                       void *ctx, otasrv_resp_free_fn free_fn);
/* Adds a header; -ENOMEM (or -EINVAL for a bad one). */
int otasrv_resp_header(struct otasrv_resp *resp, const char *name, const char *value);
/* A response not given to otasrv_reply(); NULL ok. */
void otasrv_resp_free(struct otasrv_resp *resp);

/* ---- for handlers ---- */

/* Queues resp (freed here; NULL: drops the connection) with the common
 * headers. */
enum otasrv_result otasrv_reply(struct otasrv_req *req, unsigned status, struct otasrv_resp *resp);
/* Queues body (reference stolen) as JSON. */
enum otasrv_result otasrv_reply_json(struct otasrv_req *req, unsigned status, json_t *body);
/* {"detail": ...}. */
enum otasrv_result otasrv_reply_error(struct otasrv_req *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A store failure: 404 for -ENOENT, 409 for -EEXIST, 503 for -EBUSY, else 500. */
enum otasrv_result otasrv_reply_store_error(struct otasrv_req *req, int r,
                                            const struct ota_err *err);

/* A request header (name case-insensitive) or query parameter; NULL if absent. */
const char *otasrv_header(struct otasrv_req *req, const char *name);
const char *otasrv_query(struct otasrv_req *req, const char *name);
/* Calls fn for each query parameter (value NULL for "?key") until it
 * returns nonzero; returns that, or 0. */
int otasrv_query_each(struct otasrv_req *req,
                      int (*fn)(void *ctx, const char *key, const char *value), void *ctx);
/* The same for each request header, in the order received (the fault
 * plan's echo, api_faults.c). */
int otasrv_header_each(struct otasrv_req *req,
                       int (*fn)(void *ctx, const char *name, const char *value), void *ctx);
/* A streamed answer's reader with nothing to send suspends its connection
 * (then returns 0); resume wakes it from any thread. */
void otasrv_suspend(struct otasrv_conn *conn);
void otasrv_resume(struct otasrv_conn *conn);
/* Adds a header (a constant name, a short value) to every answer to req. */
void otasrv_req_header(struct otasrv_req *req, const char *name, const char *value);
/* The client's address as text ("?" when unknown). */
void otasrv_client_addr(struct otasrv_req *req, char *buf, size_t cap);
/* SHA-256 hex of the Bearer token; -ENOENT if there is none. */
int otasrv_bearer_sha(struct otasrv_req *req, char ret_sha[65]) OTA_MUST;

/* ---- admin roles (adminauth.c) ---- */

enum otasrv_admin_role { OTASRV_ROLE_NONE, OTASRV_ROLE_READER, OTASRV_ROLE_OPERATOR };
/* The operator token into the store (given, read from its file, or
 * generated there) and the read-only token's hash into srv. */
int otasrv_admin_tokens_setup(struct otasrv_srv *srv, struct ota_err *err) OTA_MUST;
/* The role of the token whose SHA-256 hex is sha. */
enum otasrv_admin_role otasrv_admin_role_of(struct otasrv_srv *srv, const char *sha);
/* 0 if the Bearer token may make an admin request with this method: the
 * operator token anything, the read-only token GET and HEAD. Else the
 * status to answer (401 no admin token, 403 read-only) and why. */
int otasrv_admin_may(struct otasrv_req *req, const char *method, unsigned *ret_status, char *why,
                     size_t cap) OTA_MUST;
/* otasrv_admin_may() for req's method; on refusal replies and returns < 0. */
int otasrv_require_admin(struct otasrv_req *req, enum otasrv_result *ret_reply) OTA_MUST;

/* ---- device identity by client certificate (devcert.c) ---- */

/* The TLS session (gnutls_session_t) req came on; NULL on plain HTTP. */
void *otasrv_tls_session(struct otasrv_req *req);
/* 0 if device_id may act on this connection: no --tls-client-ca, or a
 * client certificate the device CA verifies whose CN is device_id, or no
 * certificate without --require-client-cert. Else replies 403 (a
 * certificate of another device, one the CA does not verify, or none when
 * one is required) and returns -EPERM. */
int otasrv_devcert_check(struct otasrv_req *req, const char *device_id,
                         enum otasrv_result *ret_reply) OTA_MUST;
/* "http://host:port" as the client reached us (or public_url). */
void otasrv_base_url(struct otasrv_req *req, char *buf, size_t cap);
/* The body as a JSON object; on failure replies 400 and returns -EINVAL. */
int otasrv_body_object(struct otasrv_req *req, json_t **ret,
                       enum otasrv_result *ret_reply) OTA_MUST;
/* 0 if obj's keys are all in allowed (NULL-terminated); else -EINVAL naming one. */
int otasrv_check_keys(const json_t *obj, const char *const *allowed, struct ota_err *err) OTA_MUST;
/* 1 if s is an id: [A-Za-z0-9][A-Za-z0-9._+-]{0,127}. */
int otasrv_valid_id(const char *s);
/* otasrv_now_ms(): clock.h. */
/* nbytes (<= 64) random bytes as hex into buf (2 * nbytes + 1). */
int otasrv_random_hex(char *buf, size_t nbytes) OTA_MUST;
/* SHA-256 of the string s as lower-case hex. */
int otasrv_sha_hex(const char *s, char ret[65]) OTA_MUST;
/* Query parameter as an integer in [min, max]; def if absent; -EINVAL. */
int otasrv_query_int(struct otasrv_req *req, const char *name, int64_t def, int64_t min,
                     int64_t max, int64_t *ret, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
