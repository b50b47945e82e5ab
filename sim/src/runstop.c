/* A run's end, whatever ends it (otasim/runstop.h). */
#include "otasim/runstop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_STOP (sizeof(stop_signals) / sizeof(stop_signals[0]))

static struct {
    pid_t owner; /* the armed process; 0: not armed */
    int keep;
    char dir[4096];
    struct sigaction old[N_STOP];
    int set[N_STOP]; /* whether the handler replaced old[i] */
} g;

static void say(const char *a, const char *b)
{
    ssize_t n = write(2, a, strlen(a));
    if (b)
        n = write(2, b, strlen(b));
    n = write(2, "\n", 1);
    (void)n;
}

/* A decimal pid from a /proc entry's name, 0 if it is not one. */
static pid_t pid_of(const char *s)
{
    long v = 0;

    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1L << 30)
            return 0;
        v = v * 10 + (*s - '0');
    }
    return (pid_t)v;
}

/* ppid and process group of pid from /proc/PID/stat: 0, or -1 if gone. */
static int stat_of(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
    char path[64], buf[1024], *p;
    ssize_t n;
    int fd, i = 0;
    long v[2] = {0, 0};
    pid_t q = pid;
    char digits[16];

    memcpy(path, "/proc/", 6);
    do
        digits[i++] = (char)('0' + q % 10);
    while ((q /= 10) > 0);
    for (int k = 0; k < i; k++)
        path[6 + k] = digits[i - 1 - k];
    memcpy(path + 6 + i, "/stat", 6);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the name may hold anything, even ") " */
    if (!p || !p[1] || !p[2] || !p[3])
        return -1;
    p += 4; /* ") S " */
    for (int k = 0; k < 2; k++) {
        while (*p == ' ')
            p++;
        while (*p >= '0' && *p <= '9')
            v[k] = v[k] * 10 + (*p++ - '0');
    }
    *ppid = (pid_t)v[0];
    *pgrp = (pid_t)v[1];
    return 0;
}

/* SIGKILLs every child of self and the groups they lead (not self's own
 * group): how many children it found. */
static int kill_children(pid_t self, pid_t own_group)
{
    char buf[8192];
    long n;
    int found = 0, fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    while ((n = getdents64(fd, buf, sizeof(buf))) > 0)
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(void *)(buf + off);
            pid_t pid = pid_of(d->d_name), ppid, pgrp;
            off += d->d_reclen;
            if (pid <= 0 || pid == self || stat_of(pid, &ppid, &pgrp) < 0 || ppid != self)
                continue;
            found++;
            kill(pid, SIGKILL);
            if (pgrp > 1 && pgrp != own_group && pgrp != self)
                kill(-pgrp, SIGKILL);
        }
    close(fd);
    return found;
}

void otasim_runstop_end_children(void)
{
    pid_t self = getpid(), group = getpgrp();
    int saved = errno;

    for (;;) {
        int found = kill_children(self, group);
        pid_t p = waitpid(-1, NULL, found ? 0 : WNOHANG);
        if (p < 0 && errno == EINTR)
            continue;
        if (p <= 0) /* no child left (ECHILD), or none that /proc shows */
            break;
    }
    errno = saved;
}

/* Removes path (a tree) below dirfd; async-signal-safe. */
static void remove_at(int dirfd, const char *name, int depth)
{
    char buf[2048];
    long n;
    int fd;

    if (unlinkat(dirfd, name, 0) == 0 || (errno != EISDIR && errno != EPERM) || depth > 64)
        return;
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    /* entries go as they are read: read again from the start until a pass
     * finds none (removing while reading may skip some) */
    for (int removed = 1, pass = 0; removed && pass < 4; pass++) {
        removed = 0;
        lseek(fd, 0, SEEK_SET);
        while ((n = getdents64(fd, buf, sizeof(buf))) > 0)
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(void *)(buf + off);
                off += d->d_reclen;
                if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
                    remove_at(fd, d->d_name, depth + 1);
                    removed++;
                }
            }
    }
    close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

static void on_stop(int sig)
{
    sigset_t m;

    if (getpid() != g.owner) { /* a forked child of the run, before its exec */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    for (size_t i = 0; i < N_STOP; i++)
        signal(stop_signals[i], SIG_IGN);
    say("\r\nota-sim: interrupted: ending every process of the run", NULL);
    otasim_runstop_end_children();
    if (g.keep)
        say("ota-sim: kept the run's trees in ", g.dir);
    else if (g.dir[0])
        remove_at(AT_FDCWD, g.dir, 0);
    /* ends by the signal, as a shell expects of an interrupted program */
    signal(sig, SIG_DFL);
    sigemptyset(&m);
    sigaddset(&m, sig);
    sigprocmask(SIG_UNBLOCK, &m, NULL);
    raise(sig);
    _exit(128 + sig);
}

int otasim_runstop_arm(const char *run_dir, int keep, struct ota_err *err)
{
    struct sigaction sa;

    if (g.owner)
        return ota_err_set(err, EBUSY, "a run is armed already");
    if (strlen(run_dir) >= sizeof(g.dir))
        return ota_err_set(err, ENAMETOOLONG, "run dir %s: too long", run_dir);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return ota_err_set(err, errno, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    memcpy(g.dir, run_dir, strlen(run_dir) + 1);
    g.keep = keep;
    g.owner = getpid();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < N_STOP; i++) {
        g.set[i] = 0;
        if (sigaction(stop_signals[i], NULL, &g.old[i]) < 0)
            continue;
        /* a background job's SIGINT is ignored: it stays so */
        if (stop_signals[i] == SIGINT && g.old[i].sa_handler == SIG_IGN)
            continue;
        g.set[i] = sigaction(stop_signals[i], &sa, NULL) == 0;
    }
    return 0;
}

void otasim_runstop_disarm(void)
{
    if (g.owner != getpid())
        return;
    otasim_runstop_end_children();
    for (size_t i = 0; i < N_STOP; i++)
        if (g.set[i])
            sigaction(stop_signals[i], &g.old[i], NULL);
    ota_ignore(prctl(PR_SET_CHILD_SUBREAPER, 0));
    g.owner = 0;
}
