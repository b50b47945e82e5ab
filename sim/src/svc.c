/* The device's plain service supervisor (see svc.h); agent/tests/e2e/
 * supervisor.py is its Python twin for the e2e tests.
 *
 * Unlike that one, the app does not get a session or group of its own: it
 * must die with the device's group on a power cut, so it joins $OTASIM_PGID
 * and stop signals the recorded pid alone (its group is not ours to kill).
 *
 * Files in ROOT/run: app.port (read), app.pid ("PID STARTTIME\n", written
 * atomically), app.log (the app's output and our lines), svc.lock (one
 * changer at a time; is-active takes no lock).
 *
 * The caller of start is the app's parent until it exits (ota-sim svc exits
 * at once; a test or a long-lived caller stays): an early death is reaped
 * here, and stop reaps what it killed when it can. A zombie never counts as
 * running. */
#include "otasim/svc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ota/fsutil.h"

#define EXIT_INACTIVE   3
#define STOP_TIMEOUT_MS 3000
#define START_SETTLE_MS 200
#define POLL_MS         2

const char *const otasim_svc_cmd_names[OTASIM_SVC_CMD_MAX] = {
    [OTASIM_SVC_START] = "start",     [OTASIM_SVC_STOP] = "stop",
    [OTASIM_SVC_RESTART] = "restart", [OTASIM_SVC_IS_ACTIVE] = "is-active",
    [OTASIM_SVC_REBOOT] = "reboot",
};

extern char **environ;

struct svc {
    char run[PATH_MAX];
    char bin[PATH_MAX];
    char pid_file[PATH_MAX + 16];
    char log_file[PATH_MAX + 16];
    char port_file[PATH_MAX + 16];
    char lock_file[PATH_MAX + 16];
};

/* Where the child failed before exec, sent over the status pipe. */
enum child_step { STEP_PGID, STEP_EXEC, STEP_MAX };
static const char *const child_step_names[STEP_MAX] = {
    [STEP_PGID] = "join process group $OTASIM_PGID",
    [STEP_EXEC] = "exec",
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A line in the app's log, best effort (the log is for people). */
static void svc_log(const struct svc *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void svc_log(const struct svc *s, const char *fmt, ...)
{
    char line[1024], stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    va_list ap;
    FILE *f;
    int n;

    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    n = snprintf(line, sizeof(line), "%s ota-sim svc: ", stamp);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    f = fopen(s->log_file, "ae");
    if (!f)
        return;
    fprintf(f, "%s\n", line);
    fclose(f);
}

/* State (field 3) and start time (field 22) of pid; -ESRCH if there is none. */
static int proc_stat(pid_t pid, char *ret_state, unsigned long long *ret_start)
{
    char path[64], buf[1024], *p;
    unsigned long long start = 0;
    char state;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ESRCH;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -ESRCH;
    buf[n] = '\0';
    /* The command name may hold spaces and ')': the fields follow the last ')'. */
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1,
                     " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                     "%*d %*d %llu",
                     &state, &start) != 2)
        return -ESRCH;
    *ret_state = state;
    *ret_start = start;
    return 0;
}

/* The recorded process, if it lives (not a zombie, not a recycled pid). */
static pid_t running_pid(const struct svc *s)
{
    unsigned long long want = 0, start;
    char buf[64] = "", state;
    long pid = 0;
    FILE *f = fopen(s->pid_file, "re");

    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    if (sscanf(buf, "%ld %llu", &pid, &want) != 2 || pid <= 0)
        return 0;
    if (proc_stat((pid_t)pid, &state, &start) < 0)
        return 0;
    if (state == 'Z' || state == 'X' || state == 'x' || start != want)
        return 0;
    return (pid_t)pid;
}

/* Whether pid is gone; reaps it if it is our child. */
static int gone(pid_t pid, unsigned long long start)
{
    unsigned long long now;
    char state;

    ota_ignore(waitpid(pid, NULL, WNOHANG));
    if (proc_stat(pid, &state, &now) < 0)
        return 1;
    if (state == 'Z')
        /* it died after the waitpid above: reap it now if it is ours, so
         * "gone" leaves no zombie behind (seen under load in SvcTest) */
        ota_ignore(waitpid(pid, NULL, WNOHANG));
    return state == 'Z' || state == 'X' || state == 'x' || now != start;
}

static int wait_gone(pid_t pid, unsigned long long start, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;

    while (!gone(pid, start)) {
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(POLL_MS);
    }
    return 1;
}

static void forget(const struct svc *s)
{
    ota_ignore(unlink(s->pid_file));
}

static int svc_stop(const struct svc *s)
{
    pid_t pid = running_pid(s);
    unsigned long long start = 0;
    char state;

    if (pid <= 0 || proc_stat(pid, &state, &start) < 0) {
        forget(s);
        return 0;
    }
    /* The pid alone: its group is the device's (or the caller's). */
    ota_ignore(kill(pid, SIGTERM));
    if (!wait_gone(pid, start, STOP_TIMEOUT_MS)) {
        svc_log(s, "pid %ld ignored SIGTERM for %d ms: SIGKILL", (long)pid, STOP_TIMEOUT_MS);
        ota_ignore(kill(pid, SIGKILL));
        if (!wait_gone(pid, start, STOP_TIMEOUT_MS))
            svc_log(s, "pid %ld still there %d ms after SIGKILL", (long)pid, STOP_TIMEOUT_MS);
    }
    svc_log(s, "stopped pid %ld", (long)pid);
    forget(s);
    return 0;
}

/* Something accepts connections on 127.0.0.1:port. */
static int listening(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* The port from ROOT/run/app.port: digits only. */
static int read_port(const struct svc *s, char *buf, size_t cap)
{
    FILE *f = fopen(s->port_file, "re");
    size_t n;

    if (!f)
        return -errno;
    if (!fgets(buf, (int)cap, f))
        buf[0] = '\0';
    fclose(f);
    n = strcspn(buf, "\r\n \t");
    buf[n] = '\0';
    if (n == 0 || n > 5 || strspn(buf, "0123456789") != n || atol(buf) > 65535)
        return -EINVAL;
    return 0;
}

/* environ with VIDEO_APP_PORT replaced; a malloc'ed array of borrowed strings. */
static char **child_env(char *port_var)
{
    size_t n = 0, k = 0;
    char **envp;

    while (environ && environ[n])
        n++;
    envp = calloc(n + 2, sizeof(*envp));
    if (!envp)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "VIDEO_APP_PORT=", 15) != 0)
            envp[k++] = environ[i];
    envp[k++] = port_var;
    envp[k] = NULL;
    return envp;
}

/* fd moved to 3 or above (0-2 are the child's), close-on-exec. */
static int high_fd(int fd)
{
    int nfd;

    if (fd < 0 || fd > 2)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return nfd;
}

/* In the child: only async-signal-safe calls. Reports (step, errno) on the
 * status pipe (moved to fd 3, closed by exec) and exits 127 on failure. */
static void child(const char *bin, char *const envp[], const char *dir, pid_t pgid, int devnull,
                  int log, int status_fd)
{
    char *const argv[] = {(char *)bin, NULL};
    int msg[2] = {STEP_PGID, 0};
    struct sigaction sa;
    struct rlimit rl;
    sigset_t none;

    if (pgid > 0 && setpgid(0, pgid) < 0)
        goto fail;
    msg[0] = STEP_EXEC;
    /* Signals as a fresh process has them, whatever the caller blocked or
     * ignored (SIGPIPE, SIGTERM for a signalfd, ...). */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* All three are >= 3 (high_fd), so no dup2 below clobbers another. */
    if (dup2(devnull, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        goto fail;
    if (status_fd != 3) {
        if (dup3(status_fd, 3, O_CLOEXEC) < 0)
            goto fail;
        status_fd = 3;
    }
    /* Nothing of the caller's (its pipes above all) reaches the app. */
    if (close_range(4, ~0U, 0) < 0) {
        rlim_t max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                         ? rl.rlim_cur
                         : 65536;
        for (rlim_t fd = 4; fd < max; fd++)
            close((int)fd);
    }
    if (chdir(dir) < 0)
        goto fail;
    execve(bin, argv, envp);
fail:
    msg[1] = errno;
    ota_ignore((int)write(status_fd, msg, sizeof(msg)));
    _exit(127);
}

static void describe(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "status 0x%x", status);
}

/* Started = listening on its port (what systemd's Type=notify would call
 * ready), or still alive after the settle time; $OTASIM_SVC_SETTLE_MS changes
 * that time (the simulator uses OTASIM_SVC_SIM_SETTLE_MS: a bound that must
 * cover a slow start). 0, or 1 when it died at start (the reason in err). */
static int wait_started(const struct svc *s, pid_t pid, unsigned long long start, const char *port,
                        struct ota_err *err)
{
    const char *e = getenv("OTASIM_SVC_SETTLE_MS");
    long ms = e && *e ? strtol(e, NULL, 10) : START_SETTLE_MS;
    long long deadline = now_ms() + (ms >= 0 && ms <= 10000 ? ms : START_SETTLE_MS);
    char why[160];
    int status;

    while (now_ms() < deadline) {
        if (listening(atoi(port)))
            break;
        pid_t w = waitpid(pid, &status, WNOHANG);
        int dead = 0;

        if (w == pid) {
            describe(status, why, sizeof(why));
            dead = 1;
        } else if (w < 0 && gone(pid, start)) {
            /* Not ours to reap (SIGCHLD ignored): /proc tells it is gone. */
            snprintf(why, sizeof(why), "status unknown");
            dead = 1;
        }
        if (dead) {
            svc_log(s, "pid %ld died at start: %s", (long)pid, why);
            ota_err_set(err, ECHILD, "video-app died at start: %s (see %s)", why, s->log_file);
            return 1;
        }
        sleep_ms(POLL_MS);
    }
    return 0;
}

/* Exit status 0 or 1 (with a reason in err), or -errno. */
static int svc_start(const struct svc *s, struct ota_err *err)
{
    char port[16], port_var[32], line[64];
    const char *pgid_env = getenv("OTASIM_PGID");
    int sp[2] = {-1, -1}, devnull = -1, log = -1, msg[2], r;
    unsigned long long start = 0;
    char **envp = NULL, state;
    pid_t pid, pgid = 0;
    ssize_t got;

    if (running_pid(s) > 0)
        return 0;
    if (access(s->bin, X_OK) < 0) {
        svc_log(s, "start failed: %s is not executable: %s", s->bin, strerror(errno));
        ota_err_set(err, ENOEXEC, "cannot start: %s is not executable: %s", s->bin,
                    strerror(errno));
        return 1;
    }
    r = read_port(s, port, sizeof(port));
    if (r < 0) {
        svc_log(s, "start failed: no usable port in %s", s->port_file);
        ota_err_set(err, -r, "cannot start: no usable port in %s", s->port_file);
        return 1;
    }
    if (pgid_env && *pgid_env) {
        char *end = NULL;
        long v = strtol(pgid_env, &end, 10);
        if (*end || v <= 0)
            return ota_err_set(err, EINVAL, "OTASIM_PGID='%s' is not a process group", pgid_env);
        pgid = (pid_t)v;
    }
    snprintf(port_var, sizeof(port_var), "VIDEO_APP_PORT=%s", port);
    envp = child_env(port_var);
    if (!envp)
        return ota_err_set(err, ENOMEM, "out of memory");
    devnull = high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    log = high_fd(open(s->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (devnull < 0 || log < 0) {
        r = ota_err_set(err, errno, "cannot open %s or /dev/null: %s", s->log_file,
                        strerror(errno));
        goto out;
    }
    if (pipe2(sp, O_CLOEXEC) < 0) {
        r = ota_err_set(err, errno, "pipe: %s", strerror(errno));
        goto out;
    }
    sp[1] = high_fd(sp[1]);
    pid = fork();
    if (pid < 0) {
        r = ota_err_set(err, errno, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child(s->bin, envp, s->run, pgid, devnull, log, sp[1]);
    /* Also here, so the group is right whoever runs first (EACCES once the
     * child has exec'd is fine: it did it itself). */
    if (pgid > 0)
        ota_ignore(setpgid(pid, pgid));
    close(sp[1]);
    sp[1] = -1;
    do
        got = read(sp[0], msg, sizeof(msg));
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof(msg)) {
        int step = msg[0] >= 0 && msg[0] < STEP_MAX ? msg[0] : STEP_EXEC;
        ota_ignore(waitpid(pid, NULL, 0));
        svc_log(s, "start failed: cannot %s %s: %s", child_step_names[step], s->bin,
                strerror(msg[1]));
        ota_err_set(err, msg[1], "cannot start: cannot %s %s: %s", child_step_names[step], s->bin,
                    strerror(msg[1]));
        r = 1;
        goto out;
    }
    /* exec'd: its start time is the one it had at fork. */
    if (proc_stat(pid, &state, &start) < 0)
        start = 0;
    snprintf(line, sizeof(line), "%ld %llu\n", (long)pid, start);
    r = ota_fs_write_atomic(s->pid_file, line, strlen(line), 0644, err);
    if (r < 0)
        goto out;
    svc_log(s, "started pid %ld: %s (port %s)", (long)pid, s->bin, port);
    r = wait_started(s, pid, start, port, err);
out:
    if (sp[0] >= 0)
        close(sp[0]);
    if (sp[1] >= 0)
        close(sp[1]);
    if (devnull >= 0)
        close(devnull);
    if (log >= 0)
        close(log);
    free(envp);
    return r;
}

int otasim_svc_run(const char *root, enum otasim_svc_cmd cmd, struct ota_err *err)
{
    struct svc s;
    int lock = -1, r;

    if (!root || cmd < 0 || cmd >= OTASIM_SVC_CMD_MAX)
        return ota_err_set(err, EINVAL, "svc: bad root or command");
    if ((size_t)snprintf(s.run, sizeof(s.run), "%s/run", root) >= sizeof(s.run) ||
        (size_t)snprintf(s.bin, sizeof(s.bin), "%s/opt/app/current/bin/video-app", root) >=
            sizeof(s.bin))
        return ota_err_set(err, ENAMETOOLONG, "svc: path too long: %s", root);
    snprintf(s.pid_file, sizeof(s.pid_file), "%s/app.pid", s.run);
    snprintf(s.log_file, sizeof(s.log_file), "%s/app.log", s.run);
    snprintf(s.port_file, sizeof(s.port_file), "%s/app.port", s.run);
    snprintf(s.lock_file, sizeof(s.lock_file), "%s/svc.lock", s.run);

    if (cmd == OTASIM_SVC_IS_ACTIVE)
        return running_pid(&s) > 0 ? 0 : EXIT_INACTIVE;

    r = ota_fs_mkdirs(s.run, err);
    if (r < 0)
        return r;
    if (cmd == OTASIM_SVC_REBOOT) {
        char p[PATH_MAX + 32];
        int fd;
        snprintf(p, sizeof(p), "%s/reboot-requested", s.run);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return ota_err_set(err, errno, "cannot create %s: %s", p, strerror(errno));
        close(fd);
        return 0;
    }
    lock = open(s.lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", s.lock_file, strerror(errno));
    while ((r = flock(lock, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        r = ota_err_set(err, errno, "cannot lock %s: %s", s.lock_file, strerror(errno));
        goto out;
    }
    switch (cmd) {
    case OTASIM_SVC_START:
        r = svc_start(&s, err);
        break;
    case OTASIM_SVC_STOP:
        r = svc_stop(&s);
        break;
    case OTASIM_SVC_RESTART:
        r = svc_stop(&s);
        if (r == 0)
            r = svc_start(&s, err);
        break;
    default:
        r = ota_err_set(err, EINVAL, "svc: bad command");
        break;
    }
out:
    close(lock);
    return r;
}
