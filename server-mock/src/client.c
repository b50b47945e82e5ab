/* HTTP client over plain sockets. HTTP/1.1 with Connection: close, so the
 * answer ends at EOF; Content-Length, when sent, bounds the body. */
#include "otasrv/client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/json.h"

void ota_client_resp_free(struct ota_client_resp *r)
{
    if (!r)
        return;
    free(r->body);
    r->body = NULL;
}

void ota_client_urlencode(const char *s, char *buf, size_t cap)
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

static int send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Splits "http://host[:port][/prefix]". */
static int parse_base(const char *base, char *host, size_t hcap, char *port, size_t pcap,
                      char *prefix, size_t xcap)
{
    const char *p, *slash, *colon;

    if (strncmp(base, "http://", 7) != 0)
        return -EINVAL;
    p = base + 7;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    colon = memchr(p, ':', (size_t)(slash - p));
    if (*p == '[') { /* [v6]:port */
        const char *end = memchr(p, ']', (size_t)(slash - p));
        if (!end)
            return -EINVAL;
        snprintf(host, hcap, "%.*s", (int)(end - p - 1), p + 1);
        colon = end[1] == ':' ? end + 1 : NULL;
    } else {
        snprintf(host, hcap, "%.*s", (int)((colon ? colon : slash) - p), p);
    }
    if (colon)
        snprintf(port, pcap, "%.*s", (int)(slash - colon - 1), colon + 1);
    else
        snprintf(port, pcap, "80");
    snprintf(prefix, xcap, "%s", slash);
    while (strlen(prefix) > 0 && prefix[strlen(prefix) - 1] == '/')
        prefix[strlen(prefix) - 1] = '\0';
    return host[0] ? 0 : -EINVAL;
}

int ota_client_request(const struct ota_client_req *req, struct ota_client_resp *ret,
                       struct ota_err *err)
{
    char host[256], port[16], prefix[512], head[2048];
    struct addrinfo hints = {0}, *ai = NULL, *a;
    char *buf = NULL, *hdr_end, *nb;
    size_t len = 0, cap = 0;
    long long body_len = 0;
    int fd = -1, in = -1, r, status;
    struct stat st;

    if (parse_base(req->base, host, sizeof(host), port, sizeof(port), prefix, sizeof(prefix)) < 0)
        return ota_err_set(err, EINVAL, "%s: not an http://host:port URL", req->base);
    if (req->file) {
        in = open(req->file, O_RDONLY | O_CLOEXEC);
        if (in < 0 || fstat(in, &st) < 0) {
            r = ota_err_set(err, errno, "%s: %s", req->file, strerror(errno));
            goto out;
        }
        body_len = (long long)st.st_size;
    } else if (req->body) {
        body_len = (long long)strlen(req->body);
    }
    hints.ai_socktype = SOCK_STREAM;
    if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
        r = ota_err_set(err, EHOSTUNREACH, "%s: %s", host, gai_strerror(r));
        goto out;
    }
    r = -ECONNREFUSED;
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        r = -errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (fd < 0) {
        r = ota_err_set(err, -r, "%s:%s: %s", host, port, strerror(-r));
        goto out;
    }
    snprintf(head, sizeof(head),
             "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nUser-Agent: ota-server\r\n"
             "%s%s%s%s%sContent-Length: %lld\r\n\r\n",
             req->method, prefix, req->path, host, port, req->token ? "Authorization: Bearer " : "",
             req->token ? req->token : "", req->token ? "\r\n" : "",
             req->body ? "Content-Type: application/json\r\n" : "",
             req->file ? "Content-Type: application/octet-stream\r\n" : "", body_len);
    if ((r = send_all(fd, head, strlen(head))) < 0 ||
        (req->body && !req->file && (r = send_all(fd, req->body, strlen(req->body))) < 0)) {
        r = ota_err_set(err, -r, "sending: %s", strerror(-r));
        goto out;
    }
    if (req->file) {
        off_t off = 0;
        while (off < st.st_size) {
            ssize_t w = sendfile(fd, in, &off, (size_t)(st.st_size - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                r = ota_err_set(err, errno ? errno : EIO, "sending %s: %s", req->file,
                                strerror(errno ? errno : EIO));
                goto out;
            }
        }
    }
    for (;;) {
        ssize_t n;
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            nb = realloc(buf, cap);
            if (!nb) {
                r = ota_err_set(err, ENOMEM, "out of memory");
                goto out;
            }
            buf = nb;
        }
        n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = ota_err_set(err, errno, "receiving: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (!buf)
        buf = calloc(1, 1);
    if (!buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    buf[len] = '\0';
    hdr_end = strstr(buf, "\r\n\r\n");
    if (!hdr_end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        r = ota_err_set(err, EPROTO, "%s: the answer is not HTTP", req->base);
        goto out;
    }
    hdr_end += 4;
    ret->status = status;
    ret->len = len - (size_t)(hdr_end - buf);
    memmove(buf, hdr_end, ret->len + 1);
    ret->body = buf;
    buf = NULL;
    r = 0;
out:
    free(buf);
    if (ai)
        freeaddrinfo(ai);
    if (fd >= 0)
        close(fd);
    if (in >= 0)
        close(in);
    return r;
}
