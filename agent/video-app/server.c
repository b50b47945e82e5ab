/* One ppoll loop serves everyone: a slow or silent client only holds its
 * own slot (and is dropped after VAPP_IDLE_MS), never the loop. Each
 * connection carries one request; the answer ends with Connection: close,
 * which keeps the state per client down to "reading" or "writing". */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct client {
    int fd;
    int64_t deadline_ms;
    size_t in_len;
    char in[VAPP_REQ_MAX + 1];
    uint8_t *out; /* NULL while reading the request */
    size_t out_len;
    size_t out_off;
};

struct vapp_server {
    int fd;
    unsigned port;
    struct client *clients[VAPP_MAX_CLIENTS];
    size_t nclients;
    uint8_t *scratch;
};

int64_t vapp_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vapp_server_open(const char *bind_addr, unsigned port, struct vapp_server **ret)
{
    struct addrinfo hints = {0}, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct vapp_server *s;
    char portstr[16];
    int one = 1, r;

    if (port > 65535)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->scratch = malloc(VAPP_BODY_MAX);
    if (!s->scratch) {
        r = -ENOMEM;
        goto fail;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    snprintf(portstr, sizeof(portstr), "%u", port);
    if (getaddrinfo(bind_addr, portstr, &hints, &ai) != 0 || !ai) {
        r = -EINVAL;
        goto fail;
    }
    s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        r = -errno;
        goto fail;
    }
    /* A restart must not wait for the old connections' TIME_WAIT. */
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s->fd, 128) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&ss, &sl) < 0) {
        r = -errno;
        goto fail;
    }
    if (ss.ss_family == AF_INET6)
        s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    freeaddrinfo(ai);
    *ret = s;
    return 0;
fail:
    if (ai)
        freeaddrinfo(ai);
    vapp_server_close(s);
    return r;
}

unsigned vapp_server_port(const struct vapp_server *s)
{
    return s->port;
}

static void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    free(c);
}

void vapp_server_close(struct vapp_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nclients; i++)
        client_free(s->clients[i]);
    if (s->fd >= 0)
        close(s->fd);
    free(s->scratch);
    free(s);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void set_error(struct vapp_response *resp, int status, const char *msg)
{
    int n = snprintf((char *)resp->body, resp->body_cap, "{\"error\":\"%s\"}\n", msg);

    resp->status = status;
    resp->content_type = "application/json";
    resp->body_len = n > 0 ? (size_t)n : 0;
}

/* Splits "METHOD TARGET HTTP/1.x" (the first line of c->in) into req.
 * Returns 0, or the HTTP status to answer with. */
static int parse_request_line(char *line, struct vapp_request *req)
{
    char *method = line, *target, *version, *q;

    target = strchr(method, ' ');
    if (!target)
        return 400;
    *target++ = '\0';
    version = strchr(target, ' ');
    if (!version)
        return 400;
    *version++ = '\0';
    if (strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/')
        return 400;
    if (strlen(method) >= sizeof(req->method))
        return 405;
    q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    if (strlen(target) >= sizeof(req->path) || (q && strlen(q) >= sizeof(req->query)))
        return 400;
    strcpy(req->method, method);
    strcpy(req->path, target);
    strcpy(req->query, q ? q : "");
    return 0;
}

/* Turns the complete request in c->in into c->out. Returns 0 or -ENOMEM. */
static int respond(struct vapp_server *s, struct client *c, int status, vapp_handler_fn fn,
                   void *ctx)
{
    struct vapp_request req = {0};
    struct vapp_response resp = {0};
    char hdr[512], *eol;
    int head = 0, hlen;

    resp.body = s->scratch;
    resp.body_cap = VAPP_BODY_MAX;
    if (status == 0) {
        eol = strpbrk(c->in, "\r\n");
        if (eol)
            *eol = '\0';
        status = parse_request_line(c->in, &req);
    }
    if (status != 0) {
        set_error(&resp, status, reason(status));
    } else if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0) {
        set_error(&resp, 405, "only GET and HEAD");
    } else {
        head = strcmp(req.method, "HEAD") == 0;
        fn(ctx, &req, &resp);
        if (resp.body_len > resp.body_cap)
            set_error(&resp, 500, "response too large");
    }
    hlen = snprintf(hdr, sizeof(hdr),
                    "HTTP/1.1 %d %s\r\n"
                    "Content-Type: %s\r\n"
                    "Content-Length: %zu\r\n"
                    "Cache-Control: no-store\r\n"
                    "%s"
                    "Connection: close\r\n\r\n",
                    resp.status, reason(resp.status),
                    resp.content_type ? resp.content_type : "text/plain", resp.body_len,
                    resp.status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (hlen < 0 || (size_t)hlen >= sizeof(hdr))
        return -EINVAL;
    c->out_len = (size_t)hlen + (head ? 0 : resp.body_len);
    c->out = malloc(c->out_len);
    if (!c->out)
        return -ENOMEM;
    memcpy(c->out, hdr, (size_t)hlen);
    if (!head)
        memcpy(c->out + hlen, resp.body, resp.body_len);
    c->out_off = 0;
    return 0;
}

/* Returns 1 to keep the client, 0 to drop it. */
static int client_write(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->out_off += (size_t)n;
    }
    /* Done: a FIN after the answer, then the slot is free. */
    shutdown(c->fd, SHUT_WR);
    return 0;
}

/* Returns 1 to keep the client, 0 to drop it. */
static int client_read(struct vapp_server *s, struct client *c, vapp_handler_fn fn, void *ctx,
                       int64_t now)
{
    int status = 0;

    for (;;) {
        ssize_t n;

        if (c->in_len == VAPP_REQ_MAX) {
            status = 431;
            break;
        }
        n = recv(c->fd, c->in + c->in_len, VAPP_REQ_MAX - c->in_len, 0);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return 0;
        }
        c->in_len += (size_t)n;
        c->in[c->in_len] = '\0';
        if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n"))
            break;
    }
    if (status == 0 && !strstr(c->in, "\r\n\r\n") && !strstr(c->in, "\n\n"))
        return 1; /* need more */
    if (respond(s, c, status, fn, ctx) < 0)
        return 0;
    c->deadline_ms = now + VAPP_IDLE_MS;
    return client_write(c);
}

static void accept_clients(struct vapp_server *s, int64_t now)
{
    while (s->nclients < VAPP_MAX_CLIENTS) {
        struct client *c;
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return; /* EAGAIN, or a client that went away: try next round */
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->deadline_ms = now + VAPP_IDLE_MS;
        s->clients[s->nclients++] = c;
    }
}

int vapp_server_run(struct vapp_server *s, vapp_handler_fn fn, void *ctx, const sigset_t *waitmask,
                    volatile sig_atomic_t *stop, int64_t deadline_ms)
{
    struct pollfd pfd[VAPP_MAX_CLIENTS + 1];

    for (;;) {
        int64_t now = vapp_mono_ms(), wake = deadline_ms;
        size_t np = 0, polled, keep;
        struct timespec ts, *tsp = NULL;
        int listening;

        if (*stop)
            return 0;
        if (deadline_ms >= 0 && now >= deadline_ms)
            return 1;

        listening = s->nclients < VAPP_MAX_CLIENTS;
        if (listening)
            pfd[np++] = (struct pollfd){.fd = s->fd, .events = POLLIN};
        for (size_t i = 0; i < s->nclients; i++) {
            struct client *c = s->clients[i];

            pfd[np++] = (struct pollfd){.fd = c->fd, .events = c->out ? POLLOUT : POLLIN};
            if (wake < 0 || c->deadline_ms < wake)
                wake = c->deadline_ms;
        }
        if (wake >= 0) {
            int64_t ms = wake > now ? wake - now : 0;

            ts.tv_sec = ms / 1000;
            ts.tv_nsec = (ms % 1000) * 1000000;
            tsp = &ts;
        }
        if (ppoll(pfd, np, tsp, waitmask) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }

        now = vapp_mono_ms();
        polled = s->nclients;
        keep = 0;
        for (size_t i = 0; i < polled; i++) {
            struct client *c = s->clients[i];
            short re = pfd[i + (listening ? 1 : 0)].revents;
            int alive = 1;

            if (re & (POLLIN | POLLOUT | POLLERR | POLLHUP))
                alive = c->out ? client_write(c) : client_read(s, c, fn, ctx, now);
            else if (now >= c->deadline_ms)
                alive = 0;
            if (alive)
                s->clients[keep++] = c;
            else
                client_free(c);
        }
        s->nclients = keep;
        if (listening && (pfd[0].revents & POLLIN))
            accept_clients(s, now);
    }
}
