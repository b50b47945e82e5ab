/* The simulator's libcurl adapter (the only file of sim/ that includes
 * libcurl): blocking calls for the admin API (srvproc.c, fleet setup), and
 * the fleet runner's HTTP: the agent core's transport ops over one libcurl
 * multi handle. A core calls request() or download() on its fiber;
 * the op queues a transfer and yields; the loop (fleet_net_run) drives every
 * transfer, feeds download bodies to the core's sink as they arrive, and
 * makes the device ready when its transfer ends, which resumes the op. All
 * devices share a bounded pool of keep-alive connections (CURLMOPT_MAX_TOTAL_
 * CONNECTIONS): transfers beyond it wait in the multi's queue, so 100,000
 * devices never need more than `connections` sockets or ports. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_impl.h"
#include "ota/curlerr.h"
#include "otasim/sim.h"

struct xfer {
    CURL *h;
    struct fpass *p;
    struct curl_slist *hdrs;
    /* request(): the answer's body */
    char *body;
    size_t len, cap;
    /* download(): the sink and the final answer's headers */
    const struct ota_dl_sink *sink;
    int told; /* on_headers was called */
    long status;
    char content_range[128], etag[128];
    int64_t clen;
    int sink_rc;  /* a sink's negative return: the transfer was aborted */
    uint64_t got; /* body bytes passed to the sink */
    int done;
    CURLcode result;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *next_free;
};

struct fnet {
    struct fleet *fl;
    CURLM *m;
    CURL *admin;
    struct xfer *free_x;
    uint32_t active;
    uint64_t requests, done;
    int queued;     /* transfers were added since the last curl_multi_perform */
    uint32_t conns; /* the pool's size: more transfers than that wait for one */
};

uint64_t fleet_net_done(const struct fnet *n)
{
    return n->done;
}

uint32_t fleet_net_active(const struct fnet *n)
{
    return n->active;
}

uint64_t fleet_net_requests(const struct fnet *n)
{
    return n->requests;
}

int fleet_net_new(struct fleet *fl, uint32_t connections, struct fnet **ret, struct ota_err *err)
{
    struct fnet *n = calloc(1, sizeof(*n));

    if (!n)
        return ota_err_set(err, ENOMEM, "out of memory");
    n->fl = fl;
    n->m = curl_multi_init();
    n->admin = curl_easy_init();
    if (!n->m || !n->admin) {
        fleet_net_free(n);
        return ota_err_set(err, ENOMEM, "libcurl: cannot make a multi handle");
    }
    n->conns = connections;
    curl_multi_setopt(n->m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)connections);
    curl_multi_setopt(n->m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)connections);
    curl_multi_setopt(n->m, CURLMOPT_MAXCONNECTS, (long)connections);
    *ret = n;
    return 0;
}

void fleet_net_free(struct fnet *n)
{
    if (!n)
        return;
    while (n->free_x) {
        struct xfer *x = n->free_x;
        n->free_x = x->next_free;
        curl_easy_cleanup(x->h);
        free(x);
    }
    if (n->admin)
        curl_easy_cleanup(n->admin);
    if (n->m)
        curl_multi_cleanup(n->m);
    free(n);
}

static struct fnet *net_of(void *ctx)
{
    return fleet_of(ctx)->net;
}

static struct xfer *xfer_get(struct fnet *n)
{
    struct xfer *x = n->free_x;

    if (x) { /* its options stay: common_opts sets every one a transfer uses */
        n->free_x = x->next_free;
    } else {
        x = calloc(1, sizeof(*x));
        if (!x)
            return NULL;
        x->h = curl_easy_init();
        if (!x->h) {
            free(x);
            return NULL;
        }
    }
    CURL *h = x->h;
    memset(x, 0, sizeof(*x));
    x->h = h;
    x->clen = -1;
    return x;
}

static void xfer_put(struct fnet *n, struct xfer *x)
{
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    free(x->body);
    x->body = NULL;
    x->next_free = n->free_x;
    n->free_x = x;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t n = sz * nm;

    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4096;
        char *q;
        while (cap < x->len + n + 1)
            cap *= 2;
        if (cap > (16u << 20) || !(q = realloc(x->body, cap)))
            return 0;
        x->body = q;
        x->cap = cap;
    }
    memcpy(x->body + x->len, p, n);
    x->len += n;
    x->body[x->len] = 0;
    return n;
}

/* Every option a fleet transfer sets, each time: the handles are reused
 * without curl_easy_reset (a tenth of a check-in's libcurl time), so an
 * option one kind of transfer sets, the other sets back. method NULL: GET. */
static void common_opts(struct xfer *x, const char *url, const char *bearer, long timeout_ms,
                        const char *method, const char *body)
{
    char auth[512];

    curl_easy_setopt(x->h, CURLOPT_URL, url);
    if (method && strcmp(method, "GET") != 0) {
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, method);
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
    } else {
        curl_easy_setopt(x->h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, NULL);
    }
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, NULL);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 120000L);
    curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    if (bearer && bearer[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        x->hdrs = curl_slist_append(x->hdrs, auth);
    }
}

/* Queues x and parks the calling fiber until the loop saw it end. */
static int run_xfer(struct fnet *n, struct xfer *x, struct ota_err *err)
{
    struct fpass *p = otasim_fiber_self() ? x->p : NULL;

    if (!p)
        return ota_err_set(err, EINVAL, "a fleet transfer outside a device's fiber");
    if (p->d->cut || p->d->crash) /* nothing leaves a device without power */
        return ota_err_set(err, EIO, p->d->cut ? "power lost" : "agent crashed");
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    if (curl_multi_add_handle(n->m, x->h) != CURLM_OK)
        return ota_err_set(err, ENOMEM, "libcurl: cannot queue a transfer");
    n->active++;
    n->requests++;
    n->queued = 1;
    p->waiting_io = 1;
    while (!x->done)
        otasim_fiber_yield();
    p->waiting_io = 0;
    return 0;
}

static int net_request(void *ctx, const struct ota_http_req *req, struct ota_http_resp *ret,
                       struct ota_err *err)
{
    struct fnet *n = net_of(ctx);
    struct xfer *x = xfer_get(n);
    int r;

    if (!x)
        return ota_err_set(err, ENOMEM, "out of memory");
    x->p = (struct fpass *)ctx;
    common_opts(x, req->url, req->bearer, req->timeout_ms, req->method, req->body);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    if ((r = run_xfer(n, x, err)) < 0) {
        xfer_put(n, x);
        return r;
    }
    if (x->result != CURLE_OK) {
        r = ota_err_set(err, ota_curl_errno(x->result), "%s %s: %s", req->method, req->url,
                        x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
        xfer_put(n, x);
        return r;
    }
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &ret->status);
    ret->body = x->body ? x->body : strdup("");
    ret->len = x->len;
    x->body = NULL;
    xfer_put(n, x);
    return ret->body ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

/* ---- downloads ----------------------------------------------------------- */

static void hdr_value(const char *line, size_t n, char *out, size_t cap)
{
    const char *c = memchr(line, ':', n);
    size_t k;

    if (!c)
        return;
    c++;
    while (c < line + n && (*c == ' ' || *c == '\t'))
        c++;
    k = (size_t)(line + n - c);
    while (k && (c[k - 1] == '\r' || c[k - 1] == '\n' || c[k - 1] == ' '))
        k--;
    if (k >= cap)
        k = cap - 1;
    memcpy(out, c, k);
    out[k] = 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t n = sz * nm;
    char v[64];

    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new answer (after a redirect, 100) */
        x->content_range[0] = x->etag[0] = 0;
        x->clen = -1;
    } else if (n > 14 && strncasecmp(p, "Content-Range:", 14) == 0) {
        hdr_value(p, n, x->content_range, sizeof(x->content_range));
    } else if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        hdr_value(p, n, x->etag, sizeof(x->etag));
    } else if (n > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
        v[0] = 0;
        hdr_value(p, n, v, sizeof(v));
        x->clen = strtoll(v, NULL, 10);
    }
    return n;
}

static int tell_headers(struct xfer *x)
{
    if (x->told)
        return 0;
    x->told = 1;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
    return x->sink->on_headers(x->sink->ctx, x->status, x->content_range, x->clen, x->etag);
}

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
    struct xfer *x = ud;
    size_t n = sz * nm;
    int r;

    if ((r = tell_headers(x)) < 0) {
        x->sink_rc = r;
        return 0;
    }
    if (x->status < 200 || x->status > 299)
        return n; /* an error answer's body is not the payload */
    x->got += n;
    r = x->sink->on_data(x->sink->ctx, p, n);
    if (r < 0) {
        x->sink_rc = r;
        return 0;
    }
    return n;
}

/* A device's link of def->bandwidth bytes/s: the bytes came at loopback
 * speed; the device waits the rest of the time they take on its link, in
 * virtual time (the fiber sleeps; other devices go on). */
static void slow_link(struct xfer *x)
{
    struct fleet *fl = x->p->c.fl;
    uint64_t bw = fl->def->bandwidth;

    if (bw && x->got)
        fleet_sleep_until(fl, x->p->d, fl->vnow + (int64_t)(x->got * 1000 / bw));
}

static int net_download(void *ctx, const char *url, const char *bearer, uint64_t offset,
                        const char *etag, const struct ota_dl_sink *sink, struct ota_err *err)
{
    struct fnet *n = net_of(ctx);
    struct xfer *x = xfer_get(n);
    char h[256];
    int r;

    if (!x)
        return ota_err_set(err, ENOMEM, "out of memory");
    x->p = (struct fpass *)ctx;
    x->sink = sink;
    common_opts(x, url, bearer, 0, NULL, NULL);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    if (offset > 0) {
        snprintf(h, sizeof(h), "Range: bytes=%llu-", (unsigned long long)offset);
        x->hdrs = curl_slist_append(x->hdrs, h);
        if (etag && etag[0]) {
            snprintf(h, sizeof(h), "If-Range: %s", etag);
            x->hdrs = curl_slist_append(x->hdrs, h);
        }
    }
    if ((r = run_xfer(n, x, err)) < 0) {
        xfer_put(n, x);
        return r;
    }
    slow_link(x);
    if (x->sink_rc < 0)
        r = x->sink_rc;
    else if (x->result != CURLE_OK)
        r = ota_err_set(err, ota_curl_errno(x->result), "download %s: %s", url,
                        x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
    else
        r = tell_headers(x); /* an answer without a body */
    xfer_put(n, x);
    return r < 0 ? r : 0;
}

const struct ota_transport_ops fleet_transport_ops = {net_request, net_download};

/* ---- the loop's side ------------------------------------------------------- */

int fleet_net_run(struct fnet *n, int wait_ms, struct ota_err *err)
{
    CURLMsg *msg;
    int running, left;

    int ready = 0;
    long due = -1;

    /* One poll(2) over every socket, then curl_multi_perform; between two
     * ready devices (wait_ms 0) only if a socket is ready, a transfer was
     * queued, transfers wait for a connection of the pool, or a libcurl
     * timer is due: perform checks each transfer's socket with a poll(2) of
     * its own. After a wait, always (with a pool of 8 or 16 connections,
     * skipping it there left transfers waiting until a new one came). */
    if (curl_multi_poll(n->m, NULL, 0, wait_ms, &ready) != CURLM_OK)
        return ota_err_set(err, EIO, "libcurl: multi poll failed");
    if (wait_ms == 0 && !ready && !n->queued && n->active <= n->conns &&
        curl_multi_timeout(n->m, &due) == CURLM_OK && due != 0)
        return 0;
    n->queued = 0;
    if (curl_multi_perform(n->m, &running) != CURLM_OK)
        return ota_err_set(err, EIO, "libcurl: multi perform failed");
    while ((msg = curl_multi_info_read(n->m, &left))) {
        struct xfer *x = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(n->m, msg->easy_handle);
        n->active--;
        n->done++;
        x->result = msg->data.result;
        x->done = 1;
        fleet_ready(n->fl, x->p->d);
    }
    return 0;
}

/* ---- blocking calls ---------------------------------------------------------- */

void otasim_http_global_init(void)
{
    ota_ignore((int)curl_global_init(CURL_GLOBAL_DEFAULT));
}

static int easy_call(CURL *h, const char *url, const char *bearer, const char *method,
                     const char *body, long timeout_ms, long *ret_status, char **ret_body,
                     struct ota_err *err)
{
    struct xfer x;
    char auth[256];
    struct curl_slist *hdrs = NULL;
    CURLcode c;

    memset(&x, 0, sizeof(x));
    if (bearer && bearer[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x.errbuf);
    if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body)
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    c = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (c != CURLE_OK) {
        free(x.body);
        return ota_err_set(err, ota_curl_errno(c), "%s %s: %s", method, url,
                           x.errbuf[0] ? x.errbuf : curl_easy_strerror(c));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_status);
    *ret_body = x.body ? x.body : strdup("");
    return *ret_body ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

int otasim_http_call(const char *url, const char *bearer, const char *method, const char *body,
                     long timeout_ms, long *ret_status, char **ret_body, struct ota_err *err)
{
    CURL *h = curl_easy_init();
    int r;

    if (!h)
        return ota_err_set(err, ENOMEM, "curl_easy_init failed");
    r = easy_call(h, url, bearer, method, body, timeout_ms, ret_status, ret_body, err);
    curl_easy_cleanup(h);
    return r;
}

int fleet_net_admin(struct fnet *n, const char *method, const char *path, const char *body,
                    long *ret_status, char **ret_body, struct ota_err *err)
{
    return fleet_net_admin_wait(n, method, path, body, 120000, ret_status, ret_body, err);
}

int fleet_net_admin_wait(struct fnet *n, const char *method, const char *path, const char *body,
                         long timeout_ms, long *ret_status, char **ret_body, struct ota_err *err)
{
    char url[1024];

    snprintf(url, sizeof(url), "%s%s", n->fl->url, path);
    n->requests++;
    return easy_call(n->admin, url, n->fl->admin_token, method, body ? body : "", timeout_ms,
                     ret_status, ret_body, err);
}
