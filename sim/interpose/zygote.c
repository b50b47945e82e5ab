/* The agent as a zygote: one process that has loaded the agent and its
 * libraries once, and forks a fresh agent for every pass a trial runs
 * (sim/bench/README.md, "A pass forked from a zygote"; the harness side is
 * sim/src/zygote.c).
 *
 * A trial starts ota-agent three or four times; each start used to map and
 * relocate ~45 shared objects, and each pass that talks to the server loaded
 * libcurl's ~40 more: more CPU than the agent's own work in most passes.
 * With $OTASIM_ZYGOTE_FD set, this library (LD_PRELOADed into ota-agent)
 * takes over __libc_start_main: the C library and every constructor run as
 * usual, then instead of main the process serves requests. Each request is
 * one SOCK_SEQPACKET message (struct otasim_zreq, then argv and envp as NUL-
 * terminated strings) with up to three fds: the reply pipe, stdout, stderr.
 * The zygote forks; the child takes the fds, the process group, an empty
 * signal mask and default signals, exactly the request's environment, sets
 * up the interposer from it (as its constructor does in an exec'd agent) and
 * calls the agent's main with the request's argv. main has not run in the
 * zygote, so each child starts from the state an exec would give it, plus
 * libraries already mapped. The reply pipe gets the child's pid (int32),
 * then, when the zygote reaps it, its raw wait status and CPU time (struct
 * otasim_zdone).
 *
 * $OTASIM_ZYGOTE_PRELOAD (sonames, ':' between) are dlopen'ed first (and
 * libcurl's curl_global_init called, and OpenSSL's SHA-256 looked up once),
 * and the zygote is started with
 * LD_BIND_NOW, so symbol binding is done once too. What the zygote does
 * before main mutates nothing: the persistence points a child's interposer
 * counts are the ones of an exec'd agent. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "otasim/zygote.h"

#define API __attribute__((visibility("default")))

typedef int (*main_fn)(int, char **, char **);
typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void),
                        void *);

void otasim_interpose_init(void); /* interpose.c: the constructor's setup */

extern char **environ;

static main_fn agent_main;

#define MAX_KIDS 256

static struct kid {
    pid_t pid;
    int reply;
} kids[MAX_KIDS];

static void put_i32(int fd, int32_t v)
{
    ssize_t n;

    do
        n = write(fd, &v, sizeof(v));
    while (n < 0 && errno == EINTR);
}

/* In the child: becomes the request's agent; never returns. */
static void become(int sock, int sfd, const sigset_t *mask, const struct otasim_zreq *q, char *strs,
                   const int *fds, int nfds)
{
    char **argv, *p = strs;
    int out = -1, err = -1, null;

    close(sock);
    close(sfd);
    for (int i = 0; i < MAX_KIDS; i++)
        if (kids[i].pid > 0)
            close(kids[i].reply);
    close(fds[0]); /* the reply pipe is the zygote's to write */
    if (nfds > 1 && (q->flags & OTASIM_ZREQ_OUT))
        out = fds[1];
    if (nfds > 1 && (q->flags & OTASIM_ZREQ_ERR))
        err = fds[(q->flags & OTASIM_ZREQ_OUT) ? 2 : 1];
    if (q->pgid >= 0 && setpgid(0, q->pgid) < 0)
        _exit(126);
    null = open("/dev/null", O_RDWR);
    if (null < 0)
        _exit(126);
    dup2(null, 0);
    dup2(out >= 0 ? out : null, 1);
    dup2(err >= 0 ? err : null, 2);
    for (int i = 1; i < nfds; i++)
        if (fds[i] > 2)
            close(fds[i]);
    if (null > 2)
        close(null);
    argv = calloc(q->argc + 1, sizeof(*argv));
    if (!argv)
        _exit(126);
    for (uint32_t i = 0; i < q->argc; i++, p += strlen(p) + 1)
        argv[i] = p;
    clearenv();
    for (uint32_t i = 0; i < q->envc; i++, p += strlen(p) + 1)
        putenv(p);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    otasim_interpose_init();
    exit(agent_main((int)q->argc, argv, environ));
}

static void reap(void)
{
    struct rusage ru;
    int st;
    pid_t pid;

    while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0)
        for (int i = 0; i < MAX_KIDS; i++)
            if (kids[i].pid == pid) {
                struct otasim_zdone d = {st, 0,
                                         (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
                                             ru.ru_utime.tv_usec + ru.ru_stime.tv_usec};
                ssize_t n;
                do
                    n = write(kids[i].reply, &d, sizeof(d));
                while (n < 0 && errno == EINTR);
                close(kids[i].reply);
                kids[i].pid = 0;
                break;
            }
}

static void serve(int sock, int sfd, const sigset_t *mask)
{
    static char buf[OTASIM_ZREQ_MAX + 1];
    char cbuf[CMSG_SPACE(3 * sizeof(int))];

    for (;;) {
        struct pollfd pf[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        struct iovec iov = {buf, OTASIM_ZREQ_MAX};
        struct msghdr m = {0};
        struct cmsghdr *c;
        struct otasim_zreq q;
        int fds[3] = {-1, -1, -1}, nfds = 0, slot = -1;
        ssize_t n;
        pid_t pid;

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si))
                ;
            reap();
        }
        if (!pf[0].revents)
            continue;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf;
        m.msg_controllen = sizeof(cbuf);
        n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* every holder of the other end is gone */
        for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                if (nfds > 3)
                    nfds = 3;
                memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
            }
        buf[n] = '\0';
        memcpy(&q, buf, n >= (ssize_t)sizeof(q) ? sizeof(q) : 0);
        for (int i = 0; i < MAX_KIDS && slot < 0; i++)
            if (kids[i].pid == 0)
                slot = i;
        /* a malformed request or a full table: the reply pipe closes
         * without a pid, which the harness reads as "not started" */
        if (nfds < 1 || n < (ssize_t)sizeof(q) || q.magic != OTASIM_ZREQ_MAGIC ||
            q.len != (uint32_t)n || q.argc == 0 || slot < 0 || buf[n - 1] != '\0') {
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            continue;
        }
        pid = fork();
        if (pid == 0)
            become(sock, sfd, mask, &q, buf + sizeof(q), fds, nfds);
        if (pid > 0) {
            put_i32(fds[0], pid);
            kids[slot].pid = pid;
            kids[slot].reply = fds[0];
        } else {
            close(fds[0]);
        }
        for (int i = 1; i < nfds; i++)
            close(fds[i]);
    }
}

static int zygote_main(int argc, char **argv, char **envp)
{
    const char *v = getenv(OTASIM_ZYGOTE_FD_ENV);
    char libs[1024], *save = NULL;
    sigset_t chld, mask;
    int sock = v ? atoi(v) : -1, sfd;

    const char *exe = getenv(OTASIM_ZYGOTE_EXE_ENV);
    char self[PATH_MAX], want[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);

    (void)argc;
    (void)argv;
    (void)envp;
    /* only for the program it was asked for, not an interpreter that runs
     * it (a script agent): it never says it is ready, the harness execs */
    if (k <= 0 || !exe || !realpath(exe, want))
        return 1;
    self[k] = '\0';
    if (strcmp(self, want) != 0)
        return 1;
    v = getenv(OTASIM_ZYGOTE_PRELOAD_ENV);
    snprintf(libs, sizeof(libs), "%s", v ? v : "");
    for (char *s = strtok_r(libs, ":", &save); s; s = strtok_r(NULL, ":", &save)) {
        void *h = dlopen(s, RTLD_NOW | RTLD_LOCAL);
        int (*global_init)(long);
        if (!h) {
            fprintf(stderr, "ota-sim zygote: preload %s: %s\n", s, dlerror());
            continue;
        }
        /* libcurl's one-time setup (it sets up OpenSSL's SSL library: ~3 ms
         * a process) done once; the agent's own curl_global_init then only
         * counts a reference, as the documentation allows */
        *(void **)&global_init = dlsym(h, "curl_global_init");
        if (global_init)
            global_init(3 /* CURL_GLOBAL_DEFAULT */);
    }
    {
        /* OpenSSL's default provider, loaded by the first digest lookup
         * (~0.3 ms a process), when the agent links libcrypto */
        void *(*fetch)(void *, const char *, const char *);
        void (*md_free)(void *);
        *(void **)&fetch = dlsym(RTLD_DEFAULT, "EVP_MD_fetch");
        *(void **)&md_free = dlsym(RTLD_DEFAULT, "EVP_MD_free");
        if (fetch && md_free)
            md_free(fetch(NULL, "SHA256", NULL));
    }
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &mask);
    sigdelset(&mask, SIGCHLD);
    sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sock < 0 || sfd < 0 || fcntl(sock, F_SETFD, FD_CLOEXEC) < 0)
        return 1;
    /* ready: one byte the harness waits for before it sends anything */
    if (send(sock, "R", 1, MSG_NOSIGNAL) != 1)
        return 1;
    serve(sock, sfd, &mask);
    return 0;
}

API int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
                          void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    start_fn real = (start_fn)dlsym(RTLD_NEXT, "__libc_start_main");

    if (!real)
        _exit(127);
    if (!getenv(OTASIM_ZYGOTE_FD_ENV))
        return real(main, argc, argv, init, fini, rtld_fini, stack_end);
    agent_main = main;
    return real(zygote_main, argc, argv, init, fini, rtld_fini, stack_end);
}
