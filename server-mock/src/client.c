/* The admin commands' HTTP client over libcurl (client.h): a transfer is an
 * easy handle whose write callback grows the response body; libcurl's
 * failures are mapped to our errno here, with libcurl's own words. */
#include "otasrv/client.h"
#include "ota/curlerr.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct otasrv_client_xfer {
    CURL *h;
    struct curl_slist *headers;
    FILE *in; /* the streamed body, or NULL */
    char *body;
    char url[2600];
    char errbuf[CURL_ERROR_SIZE];
    struct otasrv_client_resp *resp;
    size_t cap;
    int nomem;
};

void otasrv_client_resp_free(struct otasrv_client_resp *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
}

void otasrv_client_urlencode(const char *s, char *buf, size_t cap)
{
    size_t n = strlen(buf);

    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c))
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, cap - n, "%%%02X", c);
    }
    buf[n] = '\0';
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct otasrv_client_xfer *x = ctx;
    struct otasrv_client_resp *r = x->resp;
    size_t n = size * nmemb;

    if (r->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 16384;
        char *nb;
        while (cap < r->len + n + 1)
            cap *= 2;
        nb = realloc(r->body, cap);
        if (!nb) {
            x->nomem = 1;
            return 0; /* libcurl ends the transfer: CURLE_WRITE_ERROR */
        }
        r->body = nb;
        x->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* The failure of a transfer as our errno, with libcurl's words. */
static int map_error(struct otasrv_client_xfer *x, CURLcode c, struct ota_err *err)
{
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(c);
    int code = ota_curl_errno(c);

    if (code == EIO && x->nomem)
        code = ENOMEM; /* our write callback ran out of memory */
    return ota_err_set(err, code ? code : EIO, "%s: %s", x->url, detail);
}

static int add_header(struct otasrv_client_xfer *x, const char *line)
{
    struct curl_slist *l = curl_slist_append(x->headers, line);

    if (!l)
        return -ENOMEM;
    x->headers = l;
    return 0;
}

/* The body: a JSON text, a file streamed with its size, or none. */
static int set_body(struct otasrv_client_xfer *x, const struct otasrv_client_req *req,
                    struct ota_err *err)
{
    struct stat st;
    int r = 0;

    if (req->file) {
        x->in = fopen(req->file, "rbe");
        if (!x->in || fstat(fileno(x->in), &st) < 0)
            return ota_err_set(err, errno, "%s: %s", req->file, strerror(errno));
        if (curl_easy_setopt(x->h, CURLOPT_UPLOAD, 1L) != CURLE_OK ||
            curl_easy_setopt(x->h, CURLOPT_READDATA, x->in) != CURLE_OK ||
            curl_easy_setopt(x->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size) != CURLE_OK)
            return ota_err_set(err, ENOMEM, "setting up %s", x->url);
        r = add_header(x, "Content-Type: application/octet-stream");
    } else if (req->body || strcmp(req->method, "GET") != 0) {
        /* a copy: the transfer may outlive req (an event loop) */
        x->body = strdup(req->body ? req->body : "");
        if (!x->body)
            return ota_err_set(err, ENOMEM, "out of memory");
        if (curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->body) != CURLE_OK ||
            curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(x->body)) !=
                CURLE_OK)
            return ota_err_set(err, ENOMEM, "setting up %s", x->url);
        r = add_header(x, req->body ? "Content-Type: application/json" : "Content-Type:");
    }
    if (r == 0)
        r = add_header(x, "Expect:"); /* the whole body at once, no 100-continue wait */
    return r < 0 ? ota_err_set(err, -r, "out of memory") : 0;
}

int otasrv_client_xfer_new(const struct otasrv_client_req *req, struct otasrv_client_resp *resp,
                           struct otasrv_client_xfer **ret, struct ota_err *err)
{
    struct otasrv_client_xfer *x;
    size_t n;
    int r;

    if (strncmp(req->base, "http://", 7) != 0 || !req->base[7])
        return ota_err_set(err, EINVAL, "%s: not an http://host:port URL", req->base);
    x = calloc(1, sizeof(*x));
    if (!x)
        return ota_err_set(err, ENOMEM, "out of memory");
    snprintf(x->url, sizeof(x->url), "%s", req->base);
    n = strlen(x->url);
    while (n > 7 && x->url[n - 1] == '/')
        x->url[--n] = '\0';
    snprintf(x->url + n, sizeof(x->url) - n, "%s", req->path);
    x->h = curl_easy_init();
    if (!x->h) {
        r = ota_err_set(err, ENOMEM, "cannot start libcurl");
        goto fail;
    }
    if ((r = set_body(x, req, err)) < 0)
        goto fail;
    if (req->token) {
        char auth[600];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", req->token);
        if (add_header(x, auth) < 0) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (curl_easy_setopt(x->h, CURLOPT_URL, x->url) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_USERAGENT, "ota-server") != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK ||
        curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x) != CURLE_OK) {
        r = ota_err_set(err, ENOMEM, "setting up %s", x->url);
        goto fail;
    }
    memset(resp, 0, sizeof(*resp));
    x->resp = resp;
    *ret = x;
    return 0;
fail:
    otasrv_client_xfer_free(x);
    return r;
}

void *otasrv_client_xfer_handle(struct otasrv_client_xfer *x)
{
    return x->h;
}

int otasrv_client_xfer_done(struct otasrv_client_xfer *x, int curl_result, struct ota_err *err)
{
    struct otasrv_client_resp *r = x->resp;
    long status = 0;

    if (curl_result != CURLE_OK)
        return map_error(x, (CURLcode)curl_result, err);
    if (curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status <= 0)
        return ota_err_set(err, EPROTO, "%s: the answer is not HTTP", x->url);
    if (!r->body && !(r->body = calloc(1, 1)))
        return ota_err_set(err, ENOMEM, "out of memory");
    r->status = (int)status;
    return 0;
}

void otasrv_client_xfer_free(struct otasrv_client_xfer *x)
{
    if (!x)
        return;
    if (x->h)
        curl_easy_cleanup(x->h);
    curl_slist_free_all(x->headers);
    if (x->in)
        fclose(x->in);
    free(x->body);
    free(x);
}

int otasrv_client_request(const struct otasrv_client_req *req, struct otasrv_client_resp *ret,
                          struct ota_err *err)
{
    struct otasrv_client_resp resp = {0};
    struct otasrv_client_xfer *x = NULL;
    int r;

    if ((r = otasrv_client_xfer_new(req, &resp, &x, err)) < 0)
        return r;
    r = otasrv_client_xfer_done(x, curl_easy_perform(x->h), err);
    otasrv_client_xfer_free(x);
    if (r < 0) {
        otasrv_client_resp_free(&resp);
        return r;
    }
    *ret = resp;
    return 0;
}
