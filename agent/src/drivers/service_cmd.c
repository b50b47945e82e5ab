/* Service control by running commands: systemctl for a systemd device, or
 * the configured shell commands for a plain supervisor (the simulator).
 *
 * Children get stdin from /dev/null and the agent's stdout/stderr; nothing is
 * captured, so a command that leaves a daemon behind (holding the pipes) can
 * never hang the agent. Each command runs in its own process group so a
 * timeout kills the whole tree (sh and what it started), and dies with the
 * agent (PR_SET_PDEATHSIG) so a crashed agent leaves no command running. */
#include "ota/drivers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_TIMEOUT_MS 60000
#define EXIT_NOT_FOUND 127 /* exec failed, or sh: command not found */

const char *const ota_service_kind_names[OTA_SERVICE_KIND_MAX] = {
    [OTA_SERVICE_SYSTEMD] = "systemd",
    [OTA_SERVICE_COMMAND] = "command",
};

struct ota_service {
    struct ota_service_config c;
};

/* The configured command timeout, CMD_TIMEOUT_MS when unset. */
static int64_t timeout_ms(const struct ota_service *s)
{
    return s->c.timeout_s > 0 ? (int64_t)s->c.timeout_s * 1000 : CMD_TIMEOUT_MS;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the child, between fork and exec: async-signal-safe calls only (the
 * fleet runner forks from a threaded process). */
static void exec_child(char *const argv[], pid_t parent)
{
    struct sigaction dfl;
    sigset_t none;
    int fd;

    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(EXIT_NOT_FOUND);
    fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
        _exit(EXIT_NOT_FOUND);
    /* Nothing of the agent's (database, sockets) leaks into the command. */
    close_range(3, ~0U, 0);
    /* The agent may block or ignore signals (SIGPIPE); a command must not
     * inherit that through exec. */
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], argv);
    _exit(EXIT_NOT_FOUND);
}

/* Runs argv and waits for it, at most timeout_ms. 0 and its exit status
 * when it exited; -ETIMEDOUT (killed), -EINTR (killed by a signal) or fork
 * errors otherwise. what names the command in reasons. */
static int run(int64_t timeout_ms, char *const argv[], const char *what, int *ret_status,
               struct ota_err *err)
{
    pid_t parent = getpid(), pid;
    int64_t deadline;
    long delay_us = 1000;
    int status, pidfd;

    pid = fork();
    if (pid < 0)
        return ota_err_set(err, errno, "`%s`: fork: %s", what, strerror(errno));
    if (pid == 0)
        exec_child(argv, parent);
    setpgid(pid, pid); /* both sides, so a kill(-pid) right away finds the group */

    deadline = mono_ms() + timeout_ms;
    /* A pidfd wakes us the moment the command exits (a short command is
     * waited for its own time, not a polling step); polling is the fallback
     * on kernels without pidfd_open. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            int e = errno;
            kill(-pid, SIGKILL);
            if (pidfd >= 0)
                close(pidfd);
            return ota_err_set(err, e, "`%s`: waitpid: %s", what, strerror(e));
        }
        if (mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            if (pidfd >= 0)
                close(pidfd);
            return ota_err_set(err, ETIMEDOUT, "`%s` did not finish in %d s: killed", what,
                               (int)(timeout_ms / 1000));
        }
        if (pidfd >= 0) {
            struct pollfd pfd = {pidfd, POLLIN, 0};
            int64_t left = deadline - mono_ms();
            (void)poll(&pfd, 1, left > 0 ? (int)(left < 1000 ? left : 1000) : 0);
            continue;
        }
        struct timespec ts = {0, delay_us * 1000};
        nanosleep(&ts, NULL);
        if (delay_us < 50000)
            delay_us *= 2;
    }
    if (pidfd >= 0)
        close(pidfd);
    if (WIFSIGNALED(status))
        return ota_err_set(err, EINTR, "`%s` was killed by signal %d", what, WTERMSIG(status));
    *ret_status = WEXITSTATUS(status);
    return 0;
}

/* Runs argv; 0 when it exits 0. */
static int run_ok(int64_t timeout_ms, char *const argv[], const char *what, struct ota_err *err)
{
    int status, r = run(timeout_ms, argv, what, &status, err);

    if (r < 0)
        return r;
    if (status == EXIT_NOT_FOUND)
        return ota_err_set(err, ENOENT, "`%s` exited with status 127 (command not found?)", what);
    if (status != 0)
        return ota_err_set(err, EIO, "`%s` exited with status %d", what, status);
    return 0;
}

#define SIMPLE_ARGS 16

/* A command the shell would run as one program with its words as the
 * arguments, unchanged: a program named by a path (a '/' in the first word,
 * so no builtin, keyword, alias or function), words of plain characters
 * only (no quotes, escapes, variables, globs, redirections, separators or
 * assignments), at most SIMPLE_ARGS words. Such a command is run without
 * `sh -c` (one process less: the simulator runs thousands of them); any
 * other goes to the shell. Fills argv from buf (a copy of cmd); 1 when
 * simple. */
static int split_simple(const char *cmd, char *buf, size_t cap, char *argv[SIMPLE_ARGS + 1])
{
    size_t n = strlen(cmd), k = 0;
    char *p;

    if (n == 0 || n >= cap ||
        strspn(cmd, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789/._+,:@%- ") != n)
        return 0;
    memcpy(buf, cmd, n + 1);
    for (p = strtok(buf, " "); p; p = strtok(NULL, " ")) {
        if (k == SIMPLE_ARGS)
            return 0;
        argv[k++] = p;
    }
    argv[k] = NULL;
    return k > 0 && strchr(argv[0], '/') != NULL;
}

/* argv for cmd: its own words when simple, else `/bin/sh -c cmd`. */
static void command_argv(const char *cmd, char *buf, size_t cap, char *argv[SIMPLE_ARGS + 1])
{
    if (split_simple(cmd, buf, cap, argv))
        return;
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = (char *)cmd;
    argv[3] = NULL;
}

static int run_shell(const struct ota_service *s, const char *cmd, struct ota_err *err)
{
    char buf[1024], *argv[SIMPLE_ARGS + 1];

    command_argv(cmd, buf, sizeof(buf), argv);
    return run_ok(timeout_ms(s), argv, cmd, err);
}

static int run_systemctl(const struct ota_service *s, const char *verb, const char *unit,
                         struct ota_err *err)
{
    char what[192];
    char *argv[] = {"systemctl", (char *)verb, (char *)unit, NULL};

    snprintf(what, sizeof(what), "systemctl %s%s%s", verb, unit ? " " : "", unit ? unit : "");
    return run_ok(timeout_ms(s), argv, what, err);
}

static int field_ok(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

int ota_service_new(const struct ota_service_config *c, struct ota_service **ret,
                    struct ota_err *err)
{
    struct ota_service *s;

    if (!c || c->kind < 0 || c->kind >= OTA_SERVICE_KIND_MAX)
        return ota_err_set(err, EINVAL, "service: unknown kind");
    if (!field_ok(c->unit, sizeof(c->unit)) || !field_ok(c->restart_cmd, sizeof(c->restart_cmd)) ||
        !field_ok(c->is_active_cmd, sizeof(c->is_active_cmd)) ||
        !field_ok(c->reboot_cmd, sizeof(c->reboot_cmd)))
        return ota_err_set(err, EINVAL, "service: unterminated config string");
    if (c->kind == OTA_SERVICE_SYSTEMD && (c->unit[0] == '\0' || c->unit[0] == '-'))
        return ota_err_set(err, EINVAL, "service: systemd needs a unit name (got \"%s\")", c->unit);
    if (c->kind == OTA_SERVICE_COMMAND && (c->restart_cmd[0] == '\0' || !c->is_active_cmd[0]))
        return ota_err_set(err, EINVAL,
                           "service: command kind needs restart and is_active "
                           "commands");
    s = calloc(1, sizeof(*s));
    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    s->c = *c;
    *ret = s;
    return 0;
}

void ota_service_free(struct ota_service *s)
{
    free(s);
}

static int svc_restart(void *ctx, struct ota_err *err)
{
    struct ota_service *s = ctx;

    if (s->c.kind == OTA_SERVICE_SYSTEMD)
        return run_systemctl(s, "restart", s->c.unit, err);
    return run_shell(s, s->c.restart_cmd, err);
}

/* Exit 0: active; any other exit (systemctl says 3 for inactive) is
 * inactive, except 127: the check itself could not run. */
static int svc_is_active(void *ctx, int *ret_active, struct ota_err *err)
{
    struct ota_service *s = ctx;
    char what[192];
    int status, r;

    if (s->c.kind == OTA_SERVICE_SYSTEMD) {
        char *argv[] = {"systemctl", "is-active", "--quiet", s->c.unit, NULL};
        snprintf(what, sizeof(what), "systemctl is-active --quiet %s", s->c.unit);
        r = run(timeout_ms(s), argv, what, &status, err);
    } else {
        char buf[1024], *argv[SIMPLE_ARGS + 1];
        command_argv(s->c.is_active_cmd, buf, sizeof(buf), argv);
        r = run(timeout_ms(s), argv, s->c.is_active_cmd, &status, err);
    }
    if (r < 0)
        return r;
    if (status == EXIT_NOT_FOUND)
        return ota_err_set(err, ENOENT, "`%s` exited with status 127 (command not found?)",
                           s->c.kind == OTA_SERVICE_SYSTEMD ? what : s->c.is_active_cmd);
    *ret_active = status == 0;
    return 0;
}

/* systemctl reboot returns once the reboot job is queued: the caller then
 * stops (OTA_STEP_REBOOT) and waits to be killed. */
static int svc_reboot(void *ctx, struct ota_err *err)
{
    struct ota_service *s = ctx;

    if (s->c.kind == OTA_SERVICE_SYSTEMD)
        return run_systemctl(s, "reboot", NULL, err);
    if (!s->c.reboot_cmd[0])
        return ota_err_set(err, EOPNOTSUPP, "service: no reboot command configured");
    return run_shell(s, s->c.reboot_cmd, err);
}

const struct ota_service_ops ota_service_ops = {
    .restart = svc_restart,
    .is_active = svc_is_active,
    .reboot = svc_reboot,
};
