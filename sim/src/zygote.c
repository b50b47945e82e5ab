/* The harness side of the agent zygote (contract: otasim/fast.h; the
 * zygote itself: sim/interpose/zygote.c). */
#include "otasim/fast.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ota/json.h"
#include "otasim/zygote.h"

extern char **environ;

/* The process that started it owns it (the runner); trials forked from the
 * runner inherit the socket and send on it. */
static struct {
    int sock;
    pid_t pid;
    pid_t owner;
    char agent[PATH_MAX];
    char interpose[PATH_MAX];
} z = {-1, -1, -1, "", ""};

/* A trial's children started by the zygote: their reply pipes. */
#define MAX_STARTED 64
static struct {
    pid_t pid;
    int fd;
} started[MAX_STARTED];
static int64_t children_cpu_us;

int otasim_zygote_start(const struct otasim_tools *t, struct ota_err *err)
{
    int sv[2], st;
    char ready = 0;
    const char *off = getenv("OTASIM_ZYGOTE");
    pid_t pid, parent = getpid();
    struct pollfd p;

    if (z.sock >= 0)
        return 1;
    if (otasim_baseline() || (off && strcmp(off, "0") == 0) || t->target != OTASIM_TARGET_NATIVE ||
        !t->interpose[0] || !t->agent[0])
        return 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return ota_err_set(err, errno, "socketpair: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return ota_err_set(err, errno, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        char pre[PATH_MAX + 16], exe[PATH_MAX + 32];
        int null = open("/dev/null", O_RDWR);
        /* its own group, gone with the runner */
        if (setpgid(0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(126);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(sv[1], 3) < 0)
            _exit(126);
        for (int fd = 4; fd < 1024; fd++)
            close(fd);
        snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", t->interpose);
        putenv(pre);
        snprintf(exe, sizeof(exe), OTASIM_ZYGOTE_EXE_ENV "=%s", t->agent);
        putenv(exe);
        putenv(OTASIM_ZYGOTE_FD_ENV "=3");
        /* the libraries the agent loads on first use (lazy_libs.c) */
        putenv(OTASIM_ZYGOTE_PRELOAD_ENV "=libcurl.so.4:libarchive.so.13");
        putenv("LD_BIND_NOW=1");
        putenv("ASAN_OPTIONS=verify_asan_link_order=0");
        signal(SIGPIPE, SIG_DFL);
        execl(t->agent, t->agent, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    p.fd = sv[0];
    p.events = POLLIN;
    /* an agent that is not a dynamic C program never says it is ready */
    if (poll(&p, 1, 10000) != 1 || recv(sv[0], &ready, 1, 0) != 1 || ready != 'R') {
        close(sv[0]);
        kill(pid, SIGKILL);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        return 0;
    }
    z.sock = sv[0];
    z.pid = pid;
    z.owner = parent;
    ota_strlcpy(z.agent, t->agent, sizeof(z.agent));
    ota_strlcpy(z.interpose, t->interpose, sizeof(z.interpose));
    return 1;
}

void otasim_zygote_stop(void)
{
    int st;

    if (z.sock < 0 || z.owner != getpid())
        return;
    close(z.sock); /* the zygote reads EOF and ends */
    z.sock = -1;
    /* reaped here, so its CPU (and its children's) is the run's */
    while (waitpid(z.pid, &st, 0) < 0 && errno == EINTR)
        ;
    z.pid = -1;
}

static int can_serve(const char *const *argv, char *const *env)
{
    if (z.sock < 0 || strcmp(argv[0], z.agent) != 0)
        return 0;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "LD_PRELOAD=", 11) == 0)
            return strcmp(env[i] + 11, z.interpose) == 0;
    return 1;
}

int otasim_zygote_spawn(const char *const *argv, char *const *env, pid_t pgid, int out_fd,
                        int err_fd, pid_t *ret_pid)
{
    struct otasim_zreq q = {OTASIM_ZREQ_MAGIC, 0, 0, pgid, 0, 0};
    char *buf, cbuf[CMSG_SPACE(3 * sizeof(int))];
    size_t len = sizeof(q), slot = MAX_STARTED;
    int pp[2], fds[3], nfds = 1;
    int32_t pid = 0;
    struct msghdr m = {0};
    struct iovec iov;
    struct cmsghdr *c;
    ssize_t n;

    if (!can_serve(argv, env))
        return -ENOSYS;
    for (size_t i = 0; i < MAX_STARTED && slot == MAX_STARTED; i++)
        if (started[i].pid == 0)
            slot = i;
    if (slot == MAX_STARTED)
        return -ENOSYS;
    for (size_t i = 0; argv[i]; i++, q.argc++)
        len += strlen(argv[i]) + 1;
    for (size_t i = 0; env[i]; i++, q.envc++)
        len += strlen(env[i]) + 1;
    if (len > OTASIM_ZREQ_MAX)
        return -ENOSYS;
    buf = malloc(len);
    if (!buf)
        return -ENOMEM;
    q.len = (uint32_t)len;
    if (out_fd >= 0) {
        q.flags |= OTASIM_ZREQ_OUT;
        fds[nfds++] = out_fd;
    }
    if (err_fd >= 0) {
        q.flags |= OTASIM_ZREQ_ERR;
        fds[nfds++] = err_fd;
    }
    memcpy(buf, &q, sizeof(q));
    len = sizeof(q);
    for (size_t i = 0; argv[i]; i++) {
        memcpy(buf + len, argv[i], strlen(argv[i]) + 1);
        len += strlen(argv[i]) + 1;
    }
    for (size_t i = 0; env[i]; i++) {
        memcpy(buf + len, env[i], strlen(env[i]) + 1);
        len += strlen(env[i]) + 1;
    }
    if (pipe2(pp, O_CLOEXEC) < 0) {
        free(buf);
        return -errno;
    }
    fds[0] = pp[1];
    iov.iov_base = buf;
    iov.iov_len = len;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    do
        n = sendmsg(z.sock, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    free(buf);
    close(pp[1]);
    if (n != (ssize_t)len) {
        close(pp[0]);
        return -ENOSYS; /* the zygote is gone: the caller starts it the old way */
    }
    do
        n = read(pp[0], &pid, sizeof(pid));
    while (n < 0 && errno == EINTR);
    if (n != sizeof(pid) || pid <= 0) {
        close(pp[0]);
        return -ENOSYS;
    }
    started[slot].pid = pid;
    started[slot].fd = pp[0];
    *ret_pid = pid;
    return 0;
}

int otasim_zygote_wait(pid_t pid, int timeout_ms, int *ret_raw)
{
    size_t i;
    struct otasim_zdone d;
    ssize_t n;

    for (i = 0; i < MAX_STARTED; i++)
        if (started[i].pid == pid && pid > 0)
            break;
    if (i == MAX_STARTED)
        return -ESRCH;
    if (timeout_ms >= 0) {
        struct pollfd p = {started[i].fd, POLLIN, 0};
        int pr;
        do
            pr = poll(&p, 1, timeout_ms);
        while (pr < 0 && errno == EINTR);
        if (pr == 0)
            return -ETIMEDOUT;
    }
    do
        n = read(started[i].fd, &d, sizeof(d));
    while (n < 0 && errno == EINTR);
    close(started[i].fd);
    started[i].pid = 0;
    /* no status: the zygote died with its child unreaped */
    *ret_raw = n == sizeof(d) ? d.status : SIGKILL;
    if (n == sizeof(d))
        children_cpu_us += d.cpu_us;
    return 0;
}

int64_t otasim_zygote_children_cpu_us(void)
{
    return children_cpu_us;
}
