/* libmicrohttpd daemon: epoll + a thread pool, one otasrv_req per request.
 * This is the only file that includes microhttpd.h: the handlers use the
 * request/response API of server.h, whose struct otasrv_resp, otasrv_conn and
 * otasrv_daemon are libmicrohttpd's response, connection and daemon under our
 * names (converted back by mhd_resp() and friends, never dereferenced).
 * Bodies are small JSON (kept in memory, limited) except raw uploads, which
 * are streamed to a file as they arrive. Too-large bodies are read and
 * dropped, then answered 413, so that clients see the answer; a declared
 * Content-Length past EARLY_413_BYTES is answered at once. */
#include "otasrv/tz.h"
#include "otasrv/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasrv/api.h"
#include "otasrv/api_rollouts.h"
#include "otasrv/api_faults.h"
#include "otasrv/devlimit.h"
#include "otasrv/ddi.h"

/* A declared body this large is refused before it is read (the client may
 * then see a reset while it sends); smaller too-large bodies are read and
 * dropped first, so that every client reads its 413. */
#define EARLY_413_BYTES (256ULL << 20)

_Static_assert(OTASRV_RESP_SIZE_UNKNOWN == MHD_SIZE_UNKNOWN, "size unknown");
_Static_assert(OTASRV_RESP_END_OF_STREAM == MHD_CONTENT_READER_END_OF_STREAM, "end of stream");
_Static_assert(OTASRV_RESP_END_WITH_ERROR == MHD_CONTENT_READER_END_WITH_ERROR, "end with error");

static struct MHD_Response *mhd_resp(struct otasrv_resp *resp)
{
    return (struct MHD_Response *)resp;
}

static struct MHD_Connection *mhd_conn(struct otasrv_conn *conn)
{
    return (struct MHD_Connection *)conn;
}

static struct MHD_Daemon *mhd_daemon(struct otasrv_daemon *d)
{
    return (struct MHD_Daemon *)d;
}

static enum MHD_Result mhd_result(enum otasrv_result r)
{
    return r == OTASRV_OK ? MHD_YES : MHD_NO;
}

const char *otasrv_http_lib_version(void)
{
    return MHD_get_version();
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int otasrv_valid_id(const char *s)
{
    size_t n = 0;

    if (!s || !isalnum((unsigned char)s[0]))
        return 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '.' && c != '_' && c != '+' && c != '-')
            return 0;
    }
    return n <= 128;
}

/* ---- responses ---- */

struct otasrv_resp *otasrv_resp_json(json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct MHD_Response *resp;

    json_decref(body);
    if (!text)
        return NULL;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return (struct otasrv_resp *)resp;
}

struct otasrv_resp *otasrv_resp_text(char *text, size_t len, const char *content_type)
{
    struct MHD_Response *resp;

    if (!text)
        return NULL;
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return (struct otasrv_resp *)resp;
}

struct otasrv_resp *otasrv_resp_static(const char *data, size_t len)
{
    return (struct otasrv_resp *)MHD_create_response_from_buffer(len, (void *)data,
                                                                 MHD_RESPMEM_PERSISTENT);
}

struct otasrv_resp *otasrv_resp_fd(int fd, uint64_t start, uint64_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, start);

    if (!resp)
        close(fd);
    return (struct otasrv_resp *)resp;
}

struct otasrv_resp *otasrv_resp_reader(uint64_t size, size_t block, otasrv_resp_reader_fn fn,
                                       void *ctx, otasrv_resp_free_fn free_fn)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(size, block, fn, ctx, free_fn);

    if (!resp && free_fn)
        free_fn(ctx);
    return (struct otasrv_resp *)resp;
}

int otasrv_resp_header(struct otasrv_resp *resp, const char *name, const char *value)
{
    return MHD_add_response_header(mhd_resp(resp), name, value) == MHD_YES ? 0 : -ENOMEM;
}

void otasrv_resp_free(struct otasrv_resp *resp)
{
    if (resp)
        MHD_destroy_response(mhd_resp(resp));
}

/* ---- replies ---- */

/* The request's Range and If-Range headers, as sent, into the log line o
 * (only those it has): how a client resumed, for tests and operators. */
static void log_range_headers(struct otasrv_req *req, json_t *o)
{
    static const char *const names[][2] = {{"Range", "range"}, {"If-Range", "if_range"}};
    const char *v;

    for (size_t i = 0; o && i < sizeof(names) / sizeof(names[0]); i++)
        if ((v = otasrv_header(req, names[i][0])) != NULL)
            json_object_set_new(o, names[i][1], json_string(v));
}

/* Counts the request for GET /metrics, then writes its access log line
 * (the same status and time, whose ms the log shows: the log can be
 * checked against the counts). */
static void log_request(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    int64_t us = mono_us() - req->t0_us;
    json_t *o;
    char *line;

    otasrv_http_stats_observe(&srv->http, otasrv_route_class_of(req), req->status, us);
    if (!srv->log)
        return;
    o = json_pack("{s:I, s:s, s:s, s:s, s:i, s:I}", "ts_ms", (json_int_t)otasrv_now_ms(), "id",
                  req->id, "method", req->method, "path", req->path, "status", (int)req->status,
                  "ms", (json_int_t)(us / 1000));
    log_range_headers(req, o);
    line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line) {
        pthread_mutex_lock(&srv->log_lock);
        fprintf(srv->log, "%s\n", line);
        fflush(srv->log);
        pthread_mutex_unlock(&srv->log_lock);
    }
    free(line);
    json_decref(o);
}

enum otasrv_result otasrv_reply(struct otasrv_req *req, unsigned status, struct otasrv_resp *resp)
{
    enum MHD_Result r;

    if (!resp)
        return OTASRV_DROP;
    otasrv_resp_header(resp, "X-Request-Id", req->id);
    otasrv_resp_header(resp, "Server", "ota-server");
    for (int i = 0; i < req->nxhdr; i++)
        otasrv_resp_header(resp, req->xhdr_name[i], req->xhdr_value[i]);
    if (status == 401)
        otasrv_resp_header(resp, "WWW-Authenticate", "Bearer");
    req->status = status;
    r = MHD_queue_response(mhd_conn(req->conn), status, mhd_resp(resp));
    otasrv_resp_free(resp);
    return r == MHD_YES ? OTASRV_OK : OTASRV_DROP;
}

enum otasrv_result otasrv_reply_json(struct otasrv_req *req, unsigned status, json_t *body)
{
    return otasrv_reply(req, status, otasrv_resp_json(body));
}

enum otasrv_result otasrv_reply_error(struct otasrv_req *req, unsigned status, const char *fmt, ...)
{
    char detail[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return otasrv_reply_json(req, status, json_pack("{s:s}", "detail", detail));
}

enum otasrv_result otasrv_reply_store_error(struct otasrv_req *req, int r,
                                            const struct ota_err *err)
{
    const char *why = err && err->reason[0] ? err->reason : strerror(-r);

    switch (r) {
    case -ENOENT:
        return otasrv_reply_error(req, 404, "%s", why);
    case -EEXIST:
        return otasrv_reply_error(req, 409, "%s", why);
    case -EBUSY:
        return otasrv_reply_error(req, 503, "database busy: %s", why);
    default:
        return otasrv_reply_error(req, 500, "%s", why);
    }
}

/* ---- request helpers ---- */

const char *otasrv_header(struct otasrv_req *req, const char *name)
{
    return MHD_lookup_connection_value(mhd_conn(req->conn), MHD_HEADER_KIND, name);
}

void otasrv_req_header(struct otasrv_req *req, const char *name, const char *value)
{
    if (req->nxhdr == (int)(sizeof(req->xhdr_name) / sizeof(req->xhdr_name[0])))
        return;
    req->xhdr_name[req->nxhdr] = name;
    ota_strlcpy(req->xhdr_value[req->nxhdr], value, sizeof(req->xhdr_value[0]));
    req->nxhdr++;
}

void otasrv_client_addr(struct otasrv_req *req, char *buf, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd_conn(req->conn), MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    ota_strlcpy(buf, "?", cap);
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)cap);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)cap);
}

const char *otasrv_query(struct otasrv_req *req, const char *name)
{
    return MHD_lookup_connection_value(mhd_conn(req->conn), MHD_GET_ARGUMENT_KIND, name);
}

struct query_each {
    int (*fn)(void *ctx, const char *key, const char *value);
    void *ctx;
    int r;
};

static enum MHD_Result query_each_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct query_each *q = cls;

    (void)kind;
    q->r = q->fn(q->ctx, key, value);
    return q->r ? MHD_NO : MHD_YES;
}

int otasrv_query_each(struct otasrv_req *req,
                      int (*fn)(void *ctx, const char *key, const char *value), void *ctx)
{
    struct query_each q = {fn, ctx, 0};

    MHD_get_connection_values(mhd_conn(req->conn), MHD_GET_ARGUMENT_KIND, query_each_iter, &q);
    return q.r;
}

int otasrv_header_each(struct otasrv_req *req,
                       int (*fn)(void *ctx, const char *name, const char *value), void *ctx)
{
    struct query_each q = {fn, ctx, 0};

    MHD_get_connection_values(mhd_conn(req->conn), MHD_HEADER_KIND, query_each_iter, &q);
    return q.r;
}

void otasrv_suspend(struct otasrv_conn *conn)
{
    MHD_suspend_connection(mhd_conn(conn));
}

void otasrv_resume(struct otasrv_conn *conn)
{
    MHD_resume_connection(mhd_conn(conn));
}

int otasrv_query_int(struct otasrv_req *req, const char *name, int64_t def, int64_t min,
                     int64_t max, int64_t *ret, struct ota_err *err)
{
    const char *v = otasrv_query(req, name);
    char *end;
    long long n;

    if (!v) {
        *ret = def;
        return 0;
    }
    errno = 0;
    n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < min || n > max)
        return ota_err_set(err, EINVAL, "query parameter %s: an integer in [%lld, %lld]", name,
                           (long long)min, (long long)max);
    *ret = n;
    return 0;
}

int otasrv_bearer_sha(struct otasrv_req *req, char ret_sha[65])
{
    const char *h = otasrv_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    uint8_t d[OTA_SHA256_LEN];
    struct ota_sha256 *ctx;
    int r;

    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return -ENOENT;
    h += 7;
    while (*h == ' ')
        h++;
    if (!*h)
        return -ENOENT;
    ctx = ota_sha256_new();
    if (!ctx)
        return -ENOMEM;
    r = ota_sha256_update(ctx, h, strlen(h));
    if (r == 0)
        r = ota_sha256_final(ctx, d);
    ota_sha256_free(ctx);
    if (r < 0)
        return r;
    ota_hex_encode(d, sizeof(d), ret_sha);
    return 0;
}

void *otasrv_tls_session(struct otasrv_req *req)
{
    const union MHD_ConnectionInfo *ci;

    if (!req->srv->tls)
        return NULL;
    ci = MHD_get_connection_info(mhd_conn(req->conn), MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ci ? ci->tls_session : NULL;
}

void otasrv_base_url(struct otasrv_req *req, char *buf, size_t cap)
{
    const char *host = otasrv_header(req, MHD_HTTP_HEADER_HOST);
    const char *scheme = req->srv->tls ? "https" : "http";
    int ok = host && *host && strlen(host) < 256;

    if (req->srv->cfg.public_url) {
        ota_strlcpy(buf, req->srv->cfg.public_url, cap);
        return;
    }
    for (const char *p = host; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr(".-:[]_", *p);
    if (ok)
        snprintf(buf, cap, "%s://%s", scheme, host);
    else
        snprintf(buf, cap, "%s://%s:%u", scheme, req->srv->cfg.listen, req->srv->port);
}

int otasrv_body_object(struct otasrv_req *req, json_t **ret, enum otasrv_result *ret_reply)
{
    struct ota_err err = {0};
    json_t *o = NULL;

    if (ota_json_parse(req->body ? req->body : "", req->body_len, &o, &err) < 0 ||
        !json_is_object(o)) {
        json_decref(o);
        *ret_reply = otasrv_reply_error(req, 400, "body is not a JSON object: %s",
                                        err.reason[0] ? err.reason : "not an object");
        return -EINVAL;
    }
    *ret = o;
    return 0;
}

int otasrv_check_keys(const json_t *obj, const char *const *allowed, struct ota_err *err)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok)
            return ota_err_set(err, EINVAL, "unknown field \"%s\"", key);
    }
    return 0;
}

/* ---- routing ---- */

static int split_path(struct otasrv_req *req, const char *url)
{
    char *p;

    if (strlen(url) >= sizeof(req->path) || url[0] != '/')
        return -EINVAL;
    ota_strlcpy(req->path, url, sizeof(req->path));
    ota_strlcpy(req->segbuf, url, sizeof(req->segbuf));
    p = req->segbuf + 1;
    req->nseg = 0;
    for (;;) {
        char *slash = strchr(p, '/');
        if (req->nseg == OTASRV_MAX_SEGS)
            return -E2BIG;
        req->seg[req->nseg++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return 0;
}

static int seg_is(struct otasrv_req *req, int i, const char *s)
{
    return i < req->nseg && strcmp(req->seg[i], s) == 0;
}

static enum otasrv_result route(struct otasrv_req *req)
{
    if (req->nseg == 1 && seg_is(req, 0, "metrics"))
        return otasrv_api_metrics(req);
    if (seg_is(req, 0, "api") && seg_is(req, 1, "v1")) {
        int dev = 0;
        if (seg_is(req, 2, "devices"))
            dev = (req->nseg == 4 && seg_is(req, 3, "register")) ||
                  (req->nseg == 5 && (seg_is(req, 4, "checkin") || seg_is(req, 4, "status")));
        else if (seg_is(req, 2, "releases") && req->nseg == 5)
            dev = strcmp(req->method, "GET") == 0 || req->is_head;
        return dev ? otasrv_api_device_handle(req) : otasrv_api_admin_handle(req);
    }
    if (req->nseg >= 4 && seg_is(req, 1, "controller") && seg_is(req, 2, "v1"))
        return otasrv_api_ddi_handle(req);
    if (seg_is(req, 0, "repos") || (seg_is(req, 2, "releases") && seg_is(req, 3, "download")))
        return otasrv_api_github_handle(req);
    return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
}

static int is_upload(struct otasrv_req *req)
{
    return strcmp(req->method, "PUT") == 0 && req->nseg == 5 && seg_is(req, 0, "api") &&
           seg_is(req, 1, "v1") && seg_is(req, 2, "releases") && seg_is(req, 4, "payload");
}

static void body_append(struct otasrv_req *req, const char *data, size_t n)
{
    size_t cap;
    char *nb;

    if (req->early_status)
        return; /* dropping the rest of a refused body */
    if (req->up.fd >= 0) {
        while (n > 0) {
            ssize_t w;
            if (req->up.len + n > req->srv->cfg.max_upload) {
                req->early_status = 413;
                snprintf(req->early_detail, sizeof(req->early_detail),
                         "upload larger than %llu bytes",
                         (unsigned long long)req->srv->cfg.max_upload);
                return;
            }
            w = write(req->up.fd, data, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0 || ota_sha256_update(req->up.hash, data, (size_t)w) < 0) {
                req->early_status = errno == ENOSPC ? 507 : 500;
                snprintf(req->early_detail, sizeof(req->early_detail), "writing the upload: %s",
                         strerror(errno ? errno : EIO));
                return;
            }
            req->up.len += (uint64_t)w;
            data += w;
            n -= (size_t)w;
        }
        return;
    }
    if (req->body_len + n > req->srv->cfg.max_body) {
        req->early_status = 413;
        snprintf(req->early_detail, sizeof(req->early_detail), "body larger than %zu bytes",
                 req->srv->cfg.max_body);
        return;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        nb = realloc(req->body, cap);
        if (!nb) {
            req->early_status = 500;
            snprintf(req->early_detail, sizeof(req->early_detail), "out of memory");
            return;
        }
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct otasrv_srv *srv = cls;
    struct otasrv_req *req = *con_cls;

    if (!req) {
        const char *cl;
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        req->srv = srv;
        req->conn = (struct otasrv_conn *)conn;
        req->method = method;
        req->is_head = strcmp(method, "HEAD") == 0;
        req->up.fd = -1;
        req->t0_us = mono_us();
        snprintf(req->id, sizeof(req->id), "%s-%llu", srv->boot,
                 (unsigned long long)atomic_fetch_add(&srv->seq, 1) + 1);
        *con_cls = req;
        if (split_path(req, url) < 0) {
            ota_strlcpy(req->path, "(too long)", sizeof(req->path));
            req->nseg = 0;
            req->early_status = 404;
            snprintf(req->early_detail, sizeof(req->early_detail), "no such endpoint");
        }
        cl = otasrv_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!req->early_status && is_upload(req)) {
            otasrv_api_admin_upload_begin(req);
        } else if (cl && strtoull(cl, NULL, 10) > EARLY_413_BYTES) {
            return mhd_result(
                otasrv_reply_error(req, 413, "body larger than %zu bytes", srv->cfg.max_body));
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->status)
        return MHD_YES; /* answered early */
    if (req->early_status)
        return mhd_result(otasrv_reply_error(req, req->early_status, "%s", req->early_detail));
    if (req->up.fd >= 0)
        return mhd_result(otasrv_api_admin_upload_end(req));
    {
        enum otasrv_result fr;
        if (otasrv_api_faults_before(req, &fr)) /* fault plan: answered or dropped */
            return mhd_result(fr);
    }
    return mhd_result(route(req));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct otasrv_req *req = *con_cls;

    if (!req)
        return;
    if (req->srv->clock)
        otasrv_clock_timer_disarm(req->srv->clock, &req->fault_timer);
    if (req->clock_party) /* a party's ask whose connection went away */
        otasrv_clock_party_forget(req->srv->clock, req->clock_party - 1);
    log_request(req);
    otasrv_metrics_job_free(req->metrics_job);
    if (req->up.fd >= 0) {
        close(req->up.fd);
        unlink(req->up.tmp);
    }
    ota_sha256_free(req->up.hash);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- start / stop ---- */

int otasrv_random_hex(char *buf, size_t nbytes)
{
    uint8_t raw[64];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0 || nbytes > sizeof(raw))
        return fd < 0 ? -errno : -EINVAL;
    n = read(fd, raw, nbytes);
    close(fd);
    if (n != (ssize_t)nbytes)
        return -EIO;
    ota_hex_encode(raw, nbytes, buf);
    return 0;
}

int otasrv_sha_hex(const char *s, char ret[65])
{
    uint8_t d[OTA_SHA256_LEN];
    struct ota_sha256 *h = ota_sha256_new();
    int r;

    if (!h)
        return -ENOMEM;
    r = ota_sha256_update(h, s, strlen(s));
    if (r == 0)
        r = ota_sha256_final(h, d);
    ota_sha256_free(h);
    if (r == 0)
        ota_hex_encode(d, sizeof(d), ret);
    return r;
}

void otasrv_server_stop(struct otasrv_srv *srv)
{
    if (!srv)
        return;
    otasrv_rollouts_shutdown(srv);              /* ends event streams before the daemon stops */
    otasrv_clock_close(srv->clock);             /* resumes the requests waiting on it */
    while (atomic_load(&srv->metrics_jobs) > 0) /* scrapes resume their connections */
        usleep(1000);
    if (srv->daemon)
        MHD_stop_daemon(mhd_daemon(srv->daemon));
    otasrv_rollouts_free(srv);
    otasrv_ddi_close(srv->ddi);
    otasrv_store_close(srv->store);
    otasrv_faultplan_free(srv->faults);
    otasrv_clock_free(srv->clock); /* back to real time */
    otasrv_ghlimit_free(srv->ghlimit);
    otasrv_devlimit_free(srv->devlimit);
    if (srv->log && srv->log != stderr)
        fclose(srv->log);
    pthread_mutex_destroy(&srv->log_lock);
    for (int i = 0; i < srv->n_public_keys; i++)
        free(srv->public_key_pem[i]);
    free(srv->tls_cert_pem);
    free(srv->tls_key_pem);
    free(srv->tls_client_ca_pem);
    free(srv);
}

/* --public-key: one PEM file or several, comma-separated (docs/DESIGN.md, "Release keys"). */
static int read_public_keys(struct otasrv_srv *srv, struct ota_err *err)
{
    const int max = (int)(sizeof(srv->public_key_pem) / sizeof(srv->public_key_pem[0]));
    char list[4096], *save = NULL;
    size_t n;
    int r;

    if (!srv->cfg.public_key)
        return 0;
    if (strlen(srv->cfg.public_key) >= sizeof(list))
        return ota_err_set(err, ENAMETOOLONG, "--public-key: the list is too long");
    ota_strlcpy(list, srv->cfg.public_key, sizeof(list));
    for (char *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (srv->n_public_keys == max)
            return ota_err_set(err, EINVAL, "--public-key: more than %d files", max);
        r = ota_fs_read_all(f, 65536, &srv->public_key_pem[srv->n_public_keys], &n, err);
        if (r < 0)
            return ota_err_prefix(err, r, "--public-key");
        srv->n_public_keys++;
    }
    return srv->n_public_keys ? 0 : ota_err_set(err, EINVAL, "--public-key: no file named");
}

/* Starts the daemon on cfg.listen:cfg.port (TLS when configured) and sets
 * srv->daemon and srv->port. */
static int start_daemon(struct otasrv_srv *srv, struct ota_err *err)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    const union MHD_DaemonInfo *info;
    struct MHD_OptionItem tls[4];
    struct MHD_Daemon *d;
    size_t n;
    int r, nt = 0;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, srv->cfg.listen, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(srv->cfg.port);
        sa = (struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, srv->cfg.listen, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(srv->cfg.port);
        sa = (struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        return ota_err_set(err, EINVAL, "--listen %s: not an IPv4 or IPv6 address",
                           srv->cfg.listen);
    }
    if (srv->cfg.tls_cert || srv->cfg.tls_key) {
        if (!srv->cfg.tls_cert || !srv->cfg.tls_key)
            return ota_err_set(err, EINVAL, "TLS needs both --tls-cert and --tls-key");
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            return ota_err_set(err, ENOTSUP, "this libmicrohttpd has no TLS support");
        if ((r = ota_fs_read_all(srv->cfg.tls_cert, 1 << 20, &srv->tls_cert_pem, &n, err)) < 0 ||
            (r = ota_fs_read_all(srv->cfg.tls_key, 1 << 20, &srv->tls_key_pem, &n, err)) < 0)
            return r;
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert_pem};
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key_pem};
        flags |= MHD_USE_TLS;
        srv->tls = 1;
    }
    if (srv->cfg.tls_client_ca) { /* asks every client for a certificate (optional) */
        if (!srv->tls)
            return ota_err_set(err, EINVAL, "--tls-client-ca needs --tls-cert and --tls-key");
        if ((r = ota_fs_read_all(srv->cfg.tls_client_ca, 1 << 20, &srv->tls_client_ca_pem, &n,
                                 err)) < 0)
            return ota_err_prefix(err, r, "--tls-client-ca");
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, srv->tls_client_ca_pem};
    } else if (srv->cfg.require_client_cert) {
        return ota_err_set(err, EINVAL, "--require-client-cert needs --tls-client-ca");
    }
    tls[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_THREAD_POOL_SIZE, srv->cfg.threads, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
                         MHD_OPTION_CONNECTION_LIMIT, 16384u, MHD_OPTION_ARRAY, tls,
                         MHD_OPTION_END);
    srv->daemon = (struct otasrv_daemon *)d;
    if (!d)
        return ota_err_set(err, EADDRINUSE, "cannot listen on %s:%u (in use, or bad TLS files?)",
                           srv->cfg.listen, srv->cfg.port);
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : srv->cfg.port;
    return 0;
}

int otasrv_server_start(const struct otasrv_config *cfg, struct otasrv_srv **ret,
                        struct ota_err *err)
{
    struct otasrv_srv *srv = calloc(1, sizeof(*srv));
    int r;

    if (!srv)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&srv->log_lock, NULL);
    srv->cfg = *cfg;
    srv->faults = cfg->faults; /* taken over, even on failure */
    if (!srv->cfg.listen)
        srv->cfg.listen = "127.0.0.1";
    if (!srv->cfg.db_path)
        srv->cfg.db_path = "ota-server.db";
    if (!srv->cfg.data_dir)
        srv->cfg.data_dir = "ota-server-data";
    if (!srv->cfg.max_body)
        srv->cfg.max_body = 1 << 20;
    if (!srv->cfg.max_upload)
        srv->cfg.max_upload = 8ULL << 30;
    if (!srv->cfg.threads)
        srv->cfg.threads = 4;
    srv->started_s = (int64_t)time(NULL);
    if (otasrv_random_hex(srv->boot, 4) < 0)
        snprintf(srv->boot, sizeof(srv->boot), "%08x", (unsigned)getpid());

    if (srv->cfg.virtual_clock) {
        if ((r = otasrv_clock_new(srv->cfg.virtual_start_ms, &srv->clock, err)) < 0)
            goto fail;
        if ((r = otasrv_clock_install(srv->clock, err)) < 0) {
            otasrv_clock_free(srv->clock);
            srv->clock = NULL;
            goto fail;
        }
        if (srv->cfg.clock_parties > 0 &&
            (r = otasrv_clock_parties_set(srv->clock, srv->cfg.clock_parties, err)) < 0)
            goto fail;
    }
    snprintf(srv->releases_dir, sizeof(srv->releases_dir), "%s/releases", srv->cfg.data_dir);
    if ((r = ota_fs_mkdirs(srv->releases_dir, err)) < 0)
        goto fail;
    otasrv_tz_init(); /* before the first thread: see otasrv/tz.h */
    if ((r = otasrv_store_open(srv->cfg.db_path, srv->cfg.threads + 2, &srv->store, err)) < 0)
        goto fail;
    if ((r = otasrv_admin_tokens_setup(srv, err)) < 0)
        goto fail;
    if ((r = otasrv_rollouts_open(srv, err)) < 0)
        goto fail;
    if ((r = otasrv_api_faults_init(srv, err)) < 0)
        goto fail;
    if ((r = otasrv_ddi_open(srv->cfg.db_path, &srv->ddi, err)) < 0)
        goto fail;
    if (srv->cfg.ddi_gateway_token) {
        if (!srv->cfg.ddi_gateway_token[0]) {
            r = ota_err_set(err, EINVAL, "the DDI gateway token is empty");
            goto fail;
        }
        if ((r = otasrv_sha_hex(srv->cfg.ddi_gateway_token, srv->ddi_gw_sha)) < 0)
            goto fail;
    }
    if (srv->cfg.device_rate_n &&
        (r = otasrv_devlimit_new(srv->cfg.device_rate_n, srv->cfg.device_rate_period_ms,
                                 &srv->devlimit, err)) < 0)
        goto fail;
    if (srv->cfg.github_limit.limit &&
        (r = otasrv_ghlimit_new(&srv->cfg.github_limit, &srv->ghlimit, err)) < 0)
        goto fail;
    if (srv->cfg.enroll_token && srv->cfg.open_enrollment) {
        r = ota_err_set(err, EINVAL, "--enroll-token and --open-enrollment: choose one");
        goto fail;
    }
    if (srv->cfg.enroll_token) {
        if (!srv->cfg.enroll_token[0]) {
            r = ota_err_set(err, EINVAL, "the enrollment token is empty");
            goto fail;
        }
        if ((r = otasrv_sha_hex(srv->cfg.enroll_token, srv->enroll_sha)) < 0)
            goto fail;
    } else {
        srv->enroll_open = srv->cfg.open_enrollment;
        srv->enroll_closed = !srv->cfg.open_enrollment;
    }
    if ((r = read_public_keys(srv, err)) < 0)
        goto fail;
    if (srv->cfg.log_path) {
        srv->log = strcmp(srv->cfg.log_path, "-") == 0 ? stderr : fopen(srv->cfg.log_path, "ae");
        if (!srv->log) {
            r = ota_err_set(err, errno, "%s: %s", srv->cfg.log_path, strerror(errno));
            goto fail;
        }
    }

    if ((r = start_daemon(srv, err)) < 0)
        goto fail;
    if (srv->cfg.port_file) {
        char text[16];
        snprintf(text, sizeof(text), "%u\n", srv->port);
        if ((r = ota_fs_write_atomic(srv->cfg.port_file, text, strlen(text), 0644, err)) < 0)
            goto fail;
    }
    *ret = srv;
    return 0;
fail:
    otasrv_server_stop(srv);
    return r;
}
