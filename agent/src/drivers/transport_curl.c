/* Transport over libcurl: the only file that includes curl.
 *
 * One easy handle per struct ota_curl, reset before every call so that no
 * option leaks from one call to the next, while curl keeps its connection
 * cache (keep-alive to the update server). Blocking; one call at a time per
 * handle. No retries here: the core retries with backoff.
 *
 * Downloads never touch files: bytes go to the sink only. The sink sees the
 * headers of the final response (after redirects) exactly once; a non-2xx
 * final answer is shown to on_headers and its body dropped, and download()
 * returns 0 so that the core decides what a 416 or a 503 means. */
#include "ota/curlerr.h"
#include "ota/drivers.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef OTA_AGENT_VERSION
#define OTA_AGENT_VERSION "0.1.0"
#endif

#define RESP_MAX        (1024 * 1024) /* small JSON answers; more is -EFBIG */
#define ERRBODY_MAX     (64 * 1024)   /* body of a non-2xx download we read before hanging up */
#define MAX_REDIRS      5
#define HDR_VALUE_LEN   256
#define AUTH_HEADER_LEN (sizeof("Authorization: Bearer ") + 1024)
#define IFRANGE_HDR_LEN (sizeof("If-Range: ") + HDR_VALUE_LEN)

#define CURL_MAX_READ_SIZE_DEFAULT (16 * 1024) /* curl's default receive buffer */

#ifndef CURL_WRITEFUNC_ERROR /* curl < 7.87: any short count fails the transfer */
#define CURL_WRITEFUNC_ERROR 0
#endif

struct ota_curl {
    struct ota_curl_config cfg;
    CURL *h;
    char errbuf[CURL_ERROR_SIZE];
};

void ota_curl_config_defaults(struct ota_curl_config *c)
{
    memset(c, 0, sizeof(*c));
    c->connect_timeout_s = 10;
    c->low_speed_bytes = 1;
    c->low_speed_time_s = 30;
    c->request_timeout_s = 30;
    c->max_bytes_per_s = 0;
    snprintf(c->user_agent, sizeof(c->user_agent), "ota-agent/%s", OTA_AGENT_VERSION);
}

int ota_curl_new(const struct ota_curl_config *c, struct ota_curl **ret, struct ota_err *err)
{
    struct ota_curl *t;

    if (!c || !ret)
        return ota_err_set(err, EINVAL, "curl: no config");
    t = calloc(1, sizeof(*t));
    if (!t)
        return ota_err_set(err, ENOMEM, "curl: out of memory");
    t->cfg = *c;
    *ret = t;
    return 0;
}

/* curl is set up at the first call, not in ota_curl_new: loading and
 * initialising it (and its TLS library) is most of the cost of starting the
 * agent, and commands such as `status` never talk to the server
 * (lazy_libs.c). */
static int ensure_handle(struct ota_curl *t, struct ota_err *err)
{
    if (t->h)
        return 0;
    /* Reference counted by curl, and thread-safe in the curl we build on
     * (>= 7.84 with a thread-safe TLS backend). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ota_err_set(err, ENOMEM, "curl: global init failed");
    t->h = curl_easy_init();
    if (!t->h) {
        curl_global_cleanup();
        return ota_err_set(err, ENOMEM, "curl: cannot create a handle");
    }
    return 0;
}

void ota_curl_free(struct ota_curl *t)
{
    if (!t)
        return;
    if (t->h) {
        curl_easy_cleanup(t->h);
        curl_global_cleanup();
    }
    free(t);
}

/* ---- helpers ---- */

/* Values we put into header lines must not smuggle in another header. */
static int header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* Maps a failed transfer to our errno, with curl's own words (the error
 * buffer is more specific than curl_easy_strerror) in the reason. */
static int map_error(struct ota_curl *t, CURLcode c, const char *what, const char *url,
                     struct ota_err *err)
{
    const char *detail = t->errbuf[0] ? t->errbuf : curl_easy_strerror(c);
    int code = ota_curl_errno(c);

    if (code == OTA_E_TLS)
        return ota_err_set(err, code, "%s %s: TLS: %s", what, url, detail);
    if (c == CURLE_UNSUPPORTED_PROTOCOL && strncasecmp(url, "https:", 6) == 0)
        return ota_err_set(err, EPROTO, "%s %s: redirect from https to another scheme refused: %s",
                           what, url, detail);
    return ota_err_set(err, code ? code : EIO, "%s %s: %s", what, url, detail);
}

#define SETOPT(t, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt((t)->h, (opt), (val)) != CURLE_OK)                                    \
            goto setopt_failed;                                                                    \
    } while (0)

/* Options shared by request() and download(), on a freshly reset handle. */
static int setup_common(struct ota_curl *t, const char *url, struct ota_err *err)
{
    int r = ensure_handle(t, err);
    if (r < 0)
        return r;
    curl_easy_reset(t->h);
    t->errbuf[0] = '\0';
    SETOPT(t, CURLOPT_ERRORBUFFER, t->errbuf);
    SETOPT(t, CURLOPT_URL, url);
    /* Signals would be process-wide; timeouts must not rely on SIGALRM. */
    SETOPT(t, CURLOPT_NOSIGNAL, 1L);
    SETOPT(t, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Never from https down to http: a redirect may only keep or raise the
     * protection the URL asked for (a downgrade ends the transfer). */
    SETOPT(t, CURLOPT_REDIR_PROTOCOLS_STR,
           strncasecmp(url, "https:", 6) == 0 ? "https" : "http,https");
    /* Redirects (GitHub assets live behind one). curl sends our
     * Authorization header again only to the same scheme, host and port
     * (CURLOPT_UNRESTRICTED_AUTH stays off); whether a URL gets a token at
     * all is the core's decision (core_bearer_for). */
    SETOPT(t, CURLOPT_UNRESTRICTED_AUTH, 0L);
    SETOPT(t, CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(t, CURLOPT_MAXREDIRS, (long)MAX_REDIRS);
    SETOPT(t, CURLOPT_CONNECTTIMEOUT, t->cfg.connect_timeout_s);
    if (t->cfg.low_speed_time_s > 0) {
        SETOPT(t, CURLOPT_LOW_SPEED_LIMIT,
               t->cfg.low_speed_bytes > 0 ? t->cfg.low_speed_bytes : 1L);
        SETOPT(t, CURLOPT_LOW_SPEED_TIME, t->cfg.low_speed_time_s);
    }
    SETOPT(t, CURLOPT_TCP_KEEPALIVE, 1L);
    if (t->cfg.user_agent[0])
        SETOPT(t, CURLOPT_USERAGENT, t->cfg.user_agent);
    SETOPT(t, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(t, CURLOPT_SSL_VERIFYHOST, 2L);
    if (t->cfg.ca_file[0]) {
        /* Only this CA: drop the built-in CA directory as well. */
        SETOPT(t, CURLOPT_CAINFO, t->cfg.ca_file);
        SETOPT(t, CURLOPT_CAPATH, (char *)NULL);
    }
    if (t->cfg.client_cert[0]) {
        /* Mutual TLS: presented when a server asks for one (docs/protocol.md,
         * "Client certificates"); the device token still goes only to the
         * configured origin (the core's core_bearer_for). */
        SETOPT(t, CURLOPT_SSLCERT, t->cfg.client_cert);
        SETOPT(t, CURLOPT_SSLCERTTYPE, "PEM");
        SETOPT(t, CURLOPT_SSLKEY, t->cfg.client_key[0] ? t->cfg.client_key : t->cfg.client_cert);
        SETOPT(t, CURLOPT_SSLKEYTYPE, "PEM");
    }
    return 0;

setopt_failed:
    return ota_err_set(err, EINVAL, "%s: curl option refused: %s", url,
                       t->errbuf[0] ? t->errbuf : "unsupported option");
}

/* Appends "Authorization: Bearer ..." when bearer is set. */
static int add_bearer(struct curl_slist **hdrs, const char *bearer, struct ota_err *err)
{
    char line[AUTH_HEADER_LEN];
    struct curl_slist *n;

    if (!bearer || !bearer[0])
        return 0;
    if (!header_safe(bearer))
        return ota_err_set(err, EINVAL, "bearer token contains a line break");
    if ((size_t)snprintf(line, sizeof(line), "Authorization: Bearer %s", bearer) >= sizeof(line))
        return ota_err_set(err, EINVAL, "bearer token too long");
    n = curl_slist_append(*hdrs, line);
    if (!n)
        return ota_err_set(err, ENOMEM, "out of memory");
    *hdrs = n;
    return 0;
}

static int add_header(struct curl_slist **hdrs, const char *line, struct ota_err *err)
{
    struct curl_slist *n = curl_slist_append(*hdrs, line);

    if (!n)
        return ota_err_set(err, ENOMEM, "out of memory");
    *hdrs = n;
    return 0;
}

/* ---- request ---- */

struct membuf {
    char *data;
    size_t len;
    size_t cap;
    int too_big;
    int oom;
};

static size_t membuf_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct membuf *b = userdata;
    size_t n = size * nmemb;

    if (n > RESP_MAX - b->len) {
        b->too_big = 1;
        return CURL_WRITEFUNC_ERROR;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return CURL_WRITEFUNC_ERROR;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static int header_value(const char *line, size_t n, const char *name, char *buf, size_t cap);

/* The headers the core reads (struct ota_http_resp), of the final answer:
 * cleared at each status line (a redirect's headers are not the answer's). */
static size_t req_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct ota_http_resp *h = userdata;
    size_t n = size * nmemb;
    char val[HDR_VALUE_LEN];

    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        h->ratelimit_remaining[0] = h->ratelimit_reset[0] = '\0';
        h->retry_after[0] = h->date[0] = '\0';
    } else if (header_value(ptr, n, "X-RateLimit-Remaining", val, sizeof(val))) {
        snprintf(h->ratelimit_remaining, sizeof(h->ratelimit_remaining), "%s", val);
    } else if (header_value(ptr, n, "X-RateLimit-Reset", val, sizeof(val))) {
        snprintf(h->ratelimit_reset, sizeof(h->ratelimit_reset), "%s", val);
    } else if (header_value(ptr, n, "Retry-After", val, sizeof(val))) {
        snprintf(h->retry_after, sizeof(h->retry_after), "%s", val);
    } else if (header_value(ptr, n, "Date", val, sizeof(val))) {
        snprintf(h->date, sizeof(h->date), "%s", val);
    }
    return n;
}

static int curl_request(void *ctx, const struct ota_http_req *req, struct ota_http_resp *ret,
                        struct ota_err *err)
{
    struct ota_curl *t = ctx;
    struct curl_slist *hdrs = NULL;
    struct membuf b = {0};
    CURLcode c;
    long status = 0;
    int r;

    if (!t || !req || !req->url || !req->method || !ret)
        return ota_err_set(err, EINVAL, "request: missing argument");
    r = setup_common(t, req->url, err);
    if (r < 0)
        goto out;
    r = add_header(&hdrs, "Accept: application/json", err);
    if (r < 0)
        goto out;
    if (req->body) {
        r = add_header(&hdrs, "Content-Type: application/json", err);
        if (r < 0)
            goto out;
    }
    /* No "100-continue" round trip for our small bodies. */
    r = add_header(&hdrs, "Expect:", err);
    if (r < 0)
        goto out;
    r = add_bearer(&hdrs, req->bearer, err);
    if (r < 0)
        goto out;

    if (strcmp(req->method, "GET") == 0) {
        SETOPT(t, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") == 0) {
        SETOPT(t, CURLOPT_POST, 1L);
        SETOPT(t, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? strlen(req->body) : 0));
        SETOPT(t, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    } else {
        r = ota_err_set(err, EINVAL, "request: unsupported method %s", req->method);
        goto out;
    }
    SETOPT(t, CURLOPT_HTTPHEADER, hdrs);
    if (req->timeout_ms > 0)
        SETOPT(t, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    else
        SETOPT(t, CURLOPT_TIMEOUT, t->cfg.request_timeout_s);
    SETOPT(t, CURLOPT_WRITEFUNCTION, membuf_write);
    SETOPT(t, CURLOPT_WRITEDATA, &b);
    memset(ret, 0, sizeof(*ret));
    SETOPT(t, CURLOPT_HEADERFUNCTION, req_header);
    SETOPT(t, CURLOPT_HEADERDATA, ret);

    c = curl_easy_perform(t->h);
    if (c != CURLE_OK) {
        if (b.too_big)
            r = ota_err_set(err, EFBIG, "%s %s: answer larger than %d bytes", req->method, req->url,
                            RESP_MAX);
        else if (b.oom)
            r = ota_err_set(err, ENOMEM, "%s %s: out of memory", req->method, req->url);
        else
            r = map_error(t, c, req->method, req->url, err);
        goto out;
    }
    if (curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) {
        r = ota_err_set(err, EIO, "%s %s: no status", req->method, req->url);
        goto out;
    }
    if (!b.data) {
        /* Empty body: still a NUL-terminated buffer the caller frees. */
        b.data = calloc(1, 1);
        if (!b.data) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
    ret->status = status;
    ret->body = b.data;
    ret->len = b.len;
    b.data = NULL;
    r = 0;
    goto out;

setopt_failed:
    r = ota_err_set(err, EINVAL, "%s %s: curl option refused", req->method, req->url);
out:
    /* The handle keeps pointers to hdrs until the next reset: unhook them. */
    curl_easy_setopt(t->h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_slist_free_all(hdrs);
    free(b.data);
    return r;
}

/* ---- download ---- */

struct dl {
    struct ota_curl *t;
    const struct ota_dl_sink *sink;
    /* Headers of the response being received; reset at each status line
     * because redirects (and 1xx answers) bring several responses. */
    char content_range[HDR_VALUE_LEN];
    char etag[HDR_VALUE_LEN];
    int64_t content_length;
    int headers_done; /* on_headers called */
    long status;      /* final status, known once headers_done */
    size_t dropped;   /* body bytes of a non-2xx answer thrown away */
    int stop_ok;      /* we hung up on a non-2xx body: not an error */
    int sink_rc;      /* negative return of the sink, 0 if none */
};

/* Copies the value of "Name: value\r\n" (trimmed) if line has that name. */
static int header_value(const char *line, size_t n, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    size_t i, j;

    if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    i = nl + 1;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    j = n;
    while (j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' || line[j - 1] == ' ' ||
                     line[j - 1] == '\t'))
        j--;
    if (j - i >= cap)
        j = i + cap - 1;
    memcpy(buf, line + i, j - i);
    buf[j - i] = '\0';
    return 1;
}

static size_t dl_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct dl *d = userdata;
    size_t n = size * nmemb;
    char val[HDR_VALUE_LEN];

    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        d->content_range[0] = '\0';
        d->etag[0] = '\0';
        d->content_length = -1;
    } else if (header_value(ptr, n, "Content-Range", val, sizeof(val))) {
        memcpy(d->content_range, val, sizeof(val));
    } else if (header_value(ptr, n, "ETag", val, sizeof(val))) {
        memcpy(d->etag, val, sizeof(val));
    } else if (header_value(ptr, n, "Content-Length", val, sizeof(val))) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(val, &end, 10);
        d->content_length = (errno == 0 && end != val && *end == '\0' && v >= 0) ? v : -1;
    }
    return n;
}

static int is_2xx(long status)
{
    return status >= 200 && status < 300;
}

/* Tells the sink about the final response, once. */
static int dl_headers(struct dl *d)
{
    long status = 0;
    int r;

    d->headers_done = 1;
    if (curl_easy_getinfo(d->t->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    d->status = status;
    if (!d->sink->on_headers)
        return 0;
    r = d->sink->on_headers(d->sink->ctx, status, d->content_range, d->content_length, d->etag);
    return r < 0 ? r : 0;
}

static size_t dl_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct dl *d = userdata;
    size_t n = size * nmemb;
    int r;

    if (!d->headers_done) {
        r = dl_headers(d);
        if (r < 0) {
            d->sink_rc = r;
            return CURL_WRITEFUNC_ERROR;
        }
    }
    if (!is_2xx(d->status)) {
        /* An error page is not payload. Read a little of it to keep the
         * connection reusable, hang up on a long one. */
        d->dropped += n;
        if (d->dropped > ERRBODY_MAX) {
            d->stop_ok = 1;
            return CURL_WRITEFUNC_ERROR;
        }
        return n;
    }
    if (n == 0 || !d->sink->on_data)
        return n;
    r = d->sink->on_data(d->sink->ctx, ptr, n);
    if (r < 0) {
        d->sink_rc = r;
        return CURL_WRITEFUNC_ERROR;
    }
    return n;
}

static int curl_download(void *ctx, const char *url, const char *bearer, uint64_t offset,
                         const char *etag, const struct ota_dl_sink *sink, struct ota_err *err)
{
    struct ota_curl *t = ctx;
    struct curl_slist *hdrs = NULL;
    struct dl d;
    char range[32];
    char line[IFRANGE_HDR_LEN];
    CURLcode c;
    int r;

    if (!t || !url || !sink)
        return ota_err_set(err, EINVAL, "download: missing argument");
    memset(&d, 0, sizeof(d));
    d.t = t;
    d.sink = sink;
    d.content_length = -1;

    r = setup_common(t, url, err);
    if (r < 0)
        goto out;
    r = add_bearer(&hdrs, bearer, err);
    if (r < 0)
        goto out;
    if (etag && etag[0]) {
        if (!header_safe(etag) || strlen(etag) >= HDR_VALUE_LEN) {
            r = ota_err_set(err, EINVAL, "download %s: unusable ETag", url);
            goto out;
        }
        snprintf(line, sizeof(line), "If-Range: %s", etag);
        r = add_header(&hdrs, line, err);
        if (r < 0)
            goto out;
    }

    SETOPT(t, CURLOPT_HTTPGET, 1L);
    if (hdrs)
        SETOPT(t, CURLOPT_HTTPHEADER, hdrs);
    if (offset > 0) {
        /* CURLOPT_RANGE, not RESUME_FROM: curl then leaves a 200 or 416
         * answer to us instead of failing the transfer. */
        snprintf(range, sizeof(range), "%" PRIu64 "-", offset);
        SETOPT(t, CURLOPT_RANGE, range);
    }
    if (t->cfg.max_bytes_per_s > 0) {
        /* curl checks the limit only between passes, and one pass reads up
         * to 100 buffers: with the default 16 KiB buffer a fast link gets a
         * 1.6 MB burst before the limit starts to bite. Small buffers keep
         * the burst to about 0.1 s of the budget. */
        int64_t buf = t->cfg.max_bytes_per_s / 1000;

        if (buf < 1024)
            buf = 1024;
        if (buf > CURL_MAX_READ_SIZE_DEFAULT)
            buf = CURL_MAX_READ_SIZE_DEFAULT;
        SETOPT(t, CURLOPT_BUFFERSIZE, (long)buf);
        SETOPT(t, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)t->cfg.max_bytes_per_s);
    }
    /* No total timeout: a payload may take hours on a slow link. The
     * low-speed limit catches a stalled one. */
    SETOPT(t, CURLOPT_HEADERFUNCTION, dl_header);
    SETOPT(t, CURLOPT_HEADERDATA, &d);
    SETOPT(t, CURLOPT_WRITEFUNCTION, dl_write);
    SETOPT(t, CURLOPT_WRITEDATA, &d);

    c = curl_easy_perform(t->h);
    if (d.sink_rc < 0) {
        r = ota_err_set(err, -d.sink_rc, "download %s: aborted by the receiver", url);
        goto out;
    }
    /* Once a non-2xx status is in, how its error page ended is irrelevant. */
    if (c != CURLE_OK && !d.stop_ok && !(d.headers_done && !is_2xx(d.status))) {
        r = map_error(t, c, "download", url, err);
        goto out;
    }
    if (!d.headers_done) {
        /* Empty body (a 416, a zero-length range): headers come last. */
        r = dl_headers(&d);
        if (r < 0) {
            r = ota_err_set(err, -r, "download %s: aborted by the receiver", url);
            goto out;
        }
    }
    r = 0;
    goto out;

setopt_failed:
    r = ota_err_set(err, EINVAL, "download %s: curl option refused", url);
out:
    curl_easy_setopt(t->h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_slist_free_all(hdrs);
    return r;
}

const struct ota_transport_ops ota_curl_ops = {
    .request = curl_request,
    .download = curl_download,
};
