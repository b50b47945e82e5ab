/* Child processes: fork/exec with a timeout, output capture, process groups. */
#include "otasim/proc.h"

#include "otasim/fast.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t otasim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t otasim_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int otasim_wait(pid_t pid, int timeout_ms, int *ret_status)
{
    int64_t deadline = otasim_now_ms() + timeout_ms;
    int st, sleep_us = 200;
    /* A pidfd wakes us the moment the child exits; polling is the fallback. */
    int pfd, zr = otasim_zygote_wait(pid, timeout_ms, &st);

    if (zr != -ESRCH) { /* a child of the agent zygote (zygote.c) */
        if (zr == 0)
            *ret_status = status_code(st);
        return zr;
    }
    pfd = timeout_ms > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;

    for (;;) {
        pid_t r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid) {
            if (pfd >= 0)
                close(pfd);
            *ret_status = status_code(st);
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            int e = errno;
            if (pfd >= 0)
                close(pfd);
            return -e;
        }
        if (timeout_ms >= 0 && otasim_now_ms() >= deadline) {
            if (pfd >= 0)
                close(pfd);
            return -ETIMEDOUT;
        }
        if (pfd >= 0) {
            struct pollfd p = {pfd, POLLIN, 0};
            int left = (int)(deadline - otasim_now_ms());
            ota_ignore(poll(&p, 1, left > 0 ? left : 0));
            continue;
        }
        usleep(sleep_us);
        if (sleep_us < 5000)
            sleep_us *= 2;
    }
}

/* In the child: stdio, environment, exec. Never returns. */
static void child_exec(const char *const *argv, const char *const *envp, int out_fd, int err_fd)
{
    int null = open("/dev/null", O_RDWR);

    if (null >= 0)
        dup2(null, 0);
    dup2(out_fd >= 0 ? out_fd : null, 1);
    dup2(err_fd >= 0 ? err_fd : null, 2);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    for (size_t i = 0; envp && envp[i]; i++)
        putenv((char *)envp[i]);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], (char *const *)argv);
    dprintf(2, "ota-sim: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int otasim_run(const char *const *argv, const char *const *envp, int timeout_ms, char **ret_out,
               const char *errfile, int *ret_status, struct ota_err *err)
{
    int pipefd[2] = {-1, -1}, errfd = -1, st = 0, r = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t deadline = otasim_now_ms() + timeout_ms;
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return ota_err_set(err, errno, "pipe: %s", strerror(errno));
    if (errfile) {
        errfd = open(errfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (errfd < 0) {
            r = ota_err_set(err, errno, "%s: %s", errfile, strerror(errno));
            goto out;
        }
    }
    if (otasim_spawn_light(argv, envp, -1, pipefd[1], errfd, &pid) != 0) {
        pid = fork();
        if (pid < 0) {
            r = ota_err_set(err, errno, "fork: %s", strerror(errno));
            goto out;
        }
        if (pid == 0)
            child_exec(argv, envp, pipefd[1], errfd);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    for (;;) {
        struct pollfd p = {pipefd[0], POLLIN, 0};
        int left = (int)(deadline - otasim_now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            ota_ignore(otasim_wait(pid, -1, &st));
            r = ota_err_set(err, ETIMEDOUT, "%s: no answer within %d ms", argv[0], timeout_ms);
            goto out;
        }
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            break;
        if (p.revents) {
            if (len + 4096 + 1 > cap) {
                char *nb = realloc(buf, cap ? cap * 2 : 8192);
                if (!nb) {
                    r = ota_err_set(err, ENOMEM, "out of memory");
                    kill(pid, SIGKILL);
                    ota_ignore(otasim_wait(pid, -1, &st));
                    goto out;
                }
                buf = nb;
                cap = cap ? cap * 2 : 8192;
            }
            ssize_t n = read(pipefd[0], buf + len, cap - len - 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
        }
    }
    r = otasim_wait(pid, (int)(deadline - otasim_now_ms() > 0 ? deadline - otasim_now_ms() : 0),
                    &st);
    if (r == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        ota_ignore(otasim_wait(pid, -1, &st));
        r = ota_err_set(err, ETIMEDOUT, "%s: did not exit within %d ms", argv[0], timeout_ms);
        goto out;
    }
    if (r < 0) {
        r = ota_err_set(err, -r, "waitpid: %s", strerror(-r));
        goto out;
    }
    *ret_status = st;
    if (ret_out) {
        if (!buf)
            buf = calloc(1, 1);
        else
            buf[len] = '\0';
        *ret_out = buf;
        buf = NULL;
    }
out:
    free(buf);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (errfd >= 0)
        close(errfd);
    return r;
}

int otasim_spawn(const char *const *argv, const char *const *envp, pid_t pgid, const char *outfile,
                 const char *errfile, int *ret_errfd, pid_t *ret_pid, struct ota_err *err)
{
    int pipefd[2] = {-1, -1}, outfd = -1, errfd = -1, r = 0;
    pid_t pid, parent;

    if (ret_errfd && pipe2(pipefd, O_CLOEXEC) < 0)
        return ota_err_set(err, errno, "pipe: %s", strerror(errno));
    if (outfile && (outfd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        r = ota_err_set(err, errno, "%s: %s", outfile, strerror(errno));
        goto out;
    }
    if (!ret_errfd && errfile &&
        (errfd = open(errfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        r = ota_err_set(err, errno, "%s: %s", errfile, strerror(errno));
        goto out;
    }
    parent = getpid();
    /* joining a group: no parent-death signal to set, no fork needed */
    if (pgid > 0 &&
        otasim_spawn_light(argv, envp, pgid, outfd, ret_errfd ? pipefd[1] : errfd, &pid) == 0)
        goto spawned;
    pid = fork();
    if (pid < 0) {
        r = ota_err_set(err, errno, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        if (setpgid(0, pgid) < 0)
            _exit(126);
        /* A group of its own (a server, a QEMU machine) dies with the trial
         * that started it: a killed ota-sim leaves no machine running. */
        if (pgid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
            _exit(126);
        child_exec(argv, envp, outfd, ret_errfd ? pipefd[1] : errfd);
    }
spawned:
    /* Also from the parent, so the group exists before either goes on. */
    ota_ignore(setpgid(pid, pgid));
    *ret_pid = pid;
    if (ret_errfd) {
        *ret_errfd = pipefd[0];
        pipefd[0] = -1;
    }
out:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (outfd >= 0)
        close(outfd);
    if (errfd >= 0)
        close(errfd);
    return r;
}

int otasim_run_checked(const char *const *argv, const char *log, struct ota_err *err)
{
    int st = 0, r = otasim_run(argv, NULL, 120000, NULL, log, &st, err);

    if (r < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "%s %s failed (exit %d; see %s)", argv[0],
                           argv[1] ? argv[1] : "", st, log);
    return 0;
}
