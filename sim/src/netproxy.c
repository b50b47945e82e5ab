/* TCP forwarder with partitions (see netproxy.h).
 *
 * One thread, one poll loop over non-blocking sockets. Each connection pairs
 * the accepted client socket with a socket to the target and holds a bounded
 * buffer each way (BUF_SIZE): a side is read only while its buffer has room,
 * so a slow reader slows the writer (TCP's own flow control does the rest).
 *
 * A partition is modelled by not touching any connection: nothing is read or
 * written, the kernel's socket buffers fill and the peers' writes block, as
 * they would if packets were dropped. New clients are accepted (their
 * connect succeeds at once on loopback anyway) but the connection to the
 * target is made only when the partition ends.
 *
 * Control calls (partition, reset_all, stop) take the lock, post a request,
 * wake the loop through an eventfd and wait until the loop has applied it:
 * once partition(p, 1) returns, no further byte is forwarded. */
#include "otasim/netproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE  (64 * 1024)
#define MAX_CONNS 512

struct buf {
    char *data;
    size_t head; /* first byte held */
    size_t len;  /* bytes held */
};

struct conn {
    int cfd;        /* the client (device) side */
    int sfd;        /* the target (server) side; -1 until connected */
    int connecting; /* sfd's connect is in progress */
    int c_eof;      /* client sent FIN (up: client -> server) */
    int s_eof;      /* server sent FIN (down: server -> client) */
    int up_shut;    /* FIN passed on to the server */
    int down_shut;  /* FIN passed on to the client */
    struct buf up, down;
};

struct otasim_proxy {
    int lfd, wake, port, target_port;
    pthread_t thread;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned long req_seq, ack_seq; /* under lock */
    int want_partition, want_stop;  /* under lock */
    unsigned long want_reset;       /* under lock: reset requests so far */

    /* The loop's own state. */
    int partitioned;
    unsigned long resets_done;
    struct conn *conns[MAX_CONNS];
    int n_conns;

    /* Read by other threads with atomics. */
    unsigned long stat_conns;
    unsigned long long stat_up, stat_down;
};

static void conn_close(struct conn *c, int reset)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    if (!c)
        return;
    if (reset) {
        setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (c->sfd >= 0)
            setsockopt(c->sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->cfd);
    if (c->sfd >= 0)
        close(c->sfd);
    free(c->up.data);
    free(c->down.data);
    free(c);
}

static void drop(struct otasim_proxy *p, int i, int reset)
{
    conn_close(p->conns[i], reset);
    p->conns[i] = p->conns[--p->n_conns];
}

static void tune(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Starts the connect to the target; 0, or -1 if it failed at once. */
static int connect_target(struct otasim_proxy *p, struct conn *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET};

    a.sin_port = htons((uint16_t)p->target_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->sfd < 0)
        return -1;
    tune(c->sfd);
    if (connect(c->sfd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -1;
    c->connecting = 1;
    return 0;
}

static void accept_all(struct otasim_proxy *p)
{
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0)
            return; /* EAGAIN, or a client that gave up: nothing to do */
        __atomic_add_fetch(&p->stat_conns, 1, __ATOMIC_RELAXED);
        c = calloc(1, sizeof(*c));
        if (c) {
            c->up.data = malloc(BUF_SIZE);
            c->down.data = malloc(BUF_SIZE);
        }
        if (!c || !c->up.data || !c->down.data || p->n_conns >= MAX_CONNS) {
            if (c) {
                c->cfd = fd;
                c->sfd = -1;
                conn_close(c, 1);
            } else {
                close(fd);
            }
            continue;
        }
        c->cfd = fd;
        c->sfd = -1;
        tune(fd);
        p->conns[p->n_conns++] = c;
    }
}

/* recv into b's free space; >0 bytes, 0 at EOF, -1 on error, -2 would block. */
static ssize_t fill(int fd, struct buf *b)
{
    size_t tail = (b->head + b->len) % BUF_SIZE;
    size_t room = tail >= b->head && b->len < BUF_SIZE ? BUF_SIZE - tail : b->head - tail;
    ssize_t n = recv(fd, b->data + tail, room, 0);

    if (n > 0)
        b->len += (size_t)n;
    else if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -2 : -1;
    return n;
}

/* send from b; >=0 bytes, -1 on error. */
static ssize_t drain(int fd, struct buf *b)
{
    size_t chunk = b->head + b->len <= BUF_SIZE ? b->len : BUF_SIZE - b->head;
    ssize_t n = send(fd, b->data + b->head, chunk, MSG_NOSIGNAL);

    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    b->head = (b->head + (size_t)n) % BUF_SIZE;
    b->len -= (size_t)n;
    if (b->len == 0)
        b->head = 0;
    return n;
}

/* Moves what it can for one connection; 0, or -1 to drop it (with a reset
 * of the other side when one side failed). */
static int pump(struct otasim_proxy *p, struct conn *c, short crev, short srev)
{
    ssize_t n;

    if (c->connecting) {
        int e = 0;
        socklen_t len = sizeof(e);

        if (!(srev & (POLLOUT | POLLERR | POLLHUP)))
            goto client_side;
        if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e != 0)
            return -1; /* the target refuses: the client sees a reset */
        c->connecting = 0;
        srev = POLLOUT;
    }
    /* server side */
    if ((srev & (POLLIN | POLLHUP | POLLERR)) && !c->s_eof && c->down.len < BUF_SIZE) {
        n = fill(c->sfd, &c->down);
        if (n == -1)
            return -1;
        if (n == 0)
            c->s_eof = 1;
    }
    if ((srev & (POLLOUT | POLLERR)) && c->up.len > 0) {
        n = drain(c->sfd, &c->up);
        if (n < 0)
            return -1;
        __atomic_add_fetch(&p->stat_up, (unsigned long long)n, __ATOMIC_RELAXED);
    }
client_side:
    if ((crev & (POLLIN | POLLHUP | POLLERR)) && !c->c_eof && c->up.len < BUF_SIZE) {
        n = fill(c->cfd, &c->up);
        if (n == -1)
            return -1;
        if (n == 0)
            c->c_eof = 1;
    }
    if ((crev & (POLLOUT | POLLERR)) && c->down.len > 0) {
        n = drain(c->cfd, &c->down);
        if (n < 0)
            return -1;
        __atomic_add_fetch(&p->stat_down, (unsigned long long)n, __ATOMIC_RELAXED);
    }
    if (c->connecting)
        return 0;
    /* Half-closes pass through once what came before them is delivered. */
    if (c->c_eof && !c->up_shut && c->up.len == 0) {
        shutdown(c->sfd, SHUT_WR);
        c->up_shut = 1;
    }
    if (c->s_eof && !c->down_shut && c->down.len == 0) {
        shutdown(c->cfd, SHUT_WR);
        c->down_shut = 1;
    }
    return c->up_shut && c->down_shut ? 1 : 0;
}

static short client_events(const struct conn *c)
{
    short ev = 0;

    if (!c->c_eof && c->up.len < BUF_SIZE)
        ev |= POLLIN;
    if (c->down.len > 0)
        ev |= POLLOUT;
    return ev;
}

static short server_events(const struct conn *c)
{
    short ev = 0;

    if (c->connecting)
        return POLLOUT;
    if (!c->s_eof && c->down.len < BUF_SIZE)
        ev |= POLLIN;
    if (c->up.len > 0)
        ev |= POLLOUT;
    return ev;
}

/* Applies posted requests; 1 when asked to stop. */
static int apply_requests(struct otasim_proxy *p)
{
    uint64_t v;
    int stop;

    ota_ignore((int)read(p->wake, &v, sizeof(v)));
    pthread_mutex_lock(&p->lock);
    p->partitioned = p->want_partition;
    if (p->want_reset != p->resets_done) {
        p->resets_done = p->want_reset;
        while (p->n_conns > 0)
            drop(p, p->n_conns - 1, 1);
    }
    stop = p->want_stop;
    p->ack_seq = p->req_seq;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return stop;
}

static void *loop(void *arg)
{
    struct otasim_proxy *p = arg;
    struct pollfd fds[2 + 2 * MAX_CONNS];

    for (;;) {
        int nfds = 2, n;

        fds[0] = (struct pollfd){.fd = p->wake, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        if (!p->partitioned) {
            /* Clients accepted during a partition reach the target now. */
            for (int i = 0; i < p->n_conns; i++)
                if (p->conns[i]->sfd < 0 && connect_target(p, p->conns[i]) < 0)
                    drop(p, i--, 1);
            /* A side with nothing to do is left out (fd -1): a hangup it
             * reports would wake the loop for nothing, again and again. */
            for (int i = 0; i < p->n_conns; i++) {
                struct conn *c = p->conns[i];
                short ce = client_events(c), se = server_events(c);
                fds[nfds++] = (struct pollfd){.fd = ce ? c->cfd : -1, .events = ce};
                fds[nfds++] = (struct pollfd){.fd = se ? c->sfd : -1, .events = se};
            }
        }
        n = poll(fds, (nfds_t)nfds, -1);
        if (n < 0)
            continue; /* EINTR */
        if (fds[0].revents && apply_requests(p))
            break;
        if (fds[1].revents)
            accept_all(p);
        /* A request may have changed the connections or the partition:
         * these revents are then stale, and the next round polls again. */
        if (fds[0].revents || p->partitioned)
            continue;
        /* Backwards, so that a dropped entry (replaced by the last) is done. */
        for (int i = (nfds - 2) / 2 - 1; i >= 0; i--) {
            int r = pump(p, p->conns[i], fds[2 + 2 * i].revents, fds[3 + 2 * i].revents);
            if (r != 0)
                drop(p, i, r < 0);
        }
    }
    while (p->n_conns > 0)
        drop(p, p->n_conns - 1, 0);
    return NULL;
}

static void post(struct otasim_proxy *p)
{
    uint64_t one = 1;
    unsigned long seq;

    seq = ++p->req_seq;
    ota_ignore((int)write(p->wake, &one, sizeof(one)));
    while (p->ack_seq < seq)
        pthread_cond_wait(&p->cond, &p->lock);
}

int otasim_proxy_start(int target_port, struct otasim_proxy **ret, struct ota_err *err)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    struct otasim_proxy *p;
    int r;

    if (target_port <= 0 || target_port > 65535)
        return ota_err_set(err, EINVAL, "proxy: bad target port %d", target_port);
    p = calloc(1, sizeof(*p));
    if (!p)
        return ota_err_set(err, ENOMEM, "out of memory");
    p->target_port = target_port;
    p->wake = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(p->lfd, 128) < 0 || getsockname(p->lfd, (struct sockaddr *)&a, &len) < 0) {
        r = ota_err_set(err, errno, "proxy: cannot listen on 127.0.0.1: %s", strerror(errno));
        goto fail;
    }
    p->port = ntohs(a.sin_port);
    p->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wake < 0) {
        r = ota_err_set(err, errno, "proxy: eventfd: %s", strerror(errno));
        goto fail;
    }
    r = pthread_create(&p->thread, NULL, loop, p);
    if (r != 0) {
        r = ota_err_set(err, r, "proxy: cannot start its thread: %s", strerror(r));
        goto fail;
    }
    *ret = p;
    return 0;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake >= 0)
        close(p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
    return r;
}

int otasim_proxy_port(const struct otasim_proxy *p)
{
    return p->port;
}

void otasim_proxy_partition(struct otasim_proxy *p, int on)
{
    pthread_mutex_lock(&p->lock);
    p->want_partition = !!on;
    post(p);
    pthread_mutex_unlock(&p->lock);
}

void otasim_proxy_reset_all(struct otasim_proxy *p)
{
    pthread_mutex_lock(&p->lock);
    p->want_reset++;
    post(p);
    pthread_mutex_unlock(&p->lock);
}

void otasim_proxy_stats(const struct otasim_proxy *p, unsigned long *conns, unsigned long long *up,
                        unsigned long long *down)
{
    if (conns)
        *conns = __atomic_load_n(&p->stat_conns, __ATOMIC_RELAXED);
    if (up)
        *up = __atomic_load_n(&p->stat_up, __ATOMIC_RELAXED);
    if (down)
        *down = __atomic_load_n(&p->stat_down, __ATOMIC_RELAXED);
}

void otasim_proxy_stop(struct otasim_proxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->want_stop = 1;
    post(p);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    close(p->lfd);
    close(p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
