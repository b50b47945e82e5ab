/* ota-sim swupdate-pass CONFIG: one pass of a simulated SWUpdate device
 * (agent_swupdate.c wrote CONFIG; docs/agents.md, "swupdate"). What a
 * device of seed 003 does once it is up:
 *
 *  - in a mount namespace of its own whose /etc is the device's (swupdate
 *    -B uboot and libubootenv read the fixed /etc/fw_env.config);
 *  - on a trial boot (upgrade_available=1 and the bootloader booted the slot
 *    boot_part names): the health check, sim/swupdate/health-commit, whose
 *    probe is the device's service (/health); healthy, it commits with one
 *    fw_setenv and swupdate is then started with -c 2; unhealthy, it writes
 *    nothing and the device reboots (the boot counter counts it);
 *  - installed but not confirmed (ustate=1) after a commit: -c 2; after the
 *    bootloader fell back (a count left in bootcount): -c 3;
 *  - then swupdate's suricatta on the server's DDI face until the poll that
 *    finds no action (the action closed: the pass ends), or until an install
 *    has stored its trial-boot env (ustate=1: the device reboots).
 *
 * The interposer (OTASIM_PRELOAD, as the device gave it) is loaded into
 * swupdate and fw_setenv, the programs whose calls are the device's; this
 * driver makes none of the device's. It tells the states it sees in their
 * output as OTA-STATE lines on stderr (and STATE events in the pass's
 * journal). A state trigger (OTASIM_CRASH_STATE) on a state of swupdate's
 * log is handed to swupdate's interposer (OTASIM_CRASH_LINE: cut at the call
 * that logs the line); on one of its own it fires here, where it tells it.
 * Exit: 0 the pass ended (nothing to do, closed, or a reboot asked for),
 * 3 swupdate did not get there in time, 5 the device cannot run it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/bootloader.h"
#include "otasim/cli.h"
#include "otasim/journal.h"
#include "otasim/proc.h"

struct conf {
    char root[PATH_MAX], env_config[PATH_MAX], etc[PATH_MAX], tmp[PATH_MAX], bin[PATH_MAX];
    char swupdate[PATH_MAX], cert[PATH_MAX], board[64], url[128], id[128], token[128];
    char health_url[160], commit[PATH_MAX], booted[PATH_MAX], reboot[PATH_MAX];
    int window_ms, timeout_s;
};

/* The states swupdate's own log tells, by the line that tells it: a state
 * trigger on one of them fires inside swupdate, in the thread that logs it
 * (the interposer's OTASIM_CRASH_LINE), not when this driver reads it. */
static const struct {
    const char *state, *line;
} sw_lines[] = {
    {"DOWNLOADING", "Software Update started"},
    {"INSTALLING", "Installation in progress"},
    {"SWITCHING", "SWUPDATE successful"},
};

static const char *line_of(const char *state)
{
    for (size_t i = 0; i < sizeof(sw_lines) / sizeof(sw_lines[0]); i++)
        if (strcmp(sw_lines[i].state, state) == 0)
            return sw_lines[i].line;
    return NULL;
}

static struct {
    const char *journal;
    char crash_state[32];
    int crash_k, crash_seen, crash_power;
    char from[24];
    pid_t child; /* the program running now */
} g;

/* The config the adapter wrote (agent_swupdate.c, sw_provision): JSON. */
static int conf_load(const char *path, struct conf *c)
{
    static const struct {
        const char *name;
        size_t off, cap;
    } keys[] = {
#define K(k) {#k, offsetof(struct conf, k), sizeof(((struct conf *)0)->k)}
        K(root),     K(env_config), K(etc),    K(tmp),    K(bin),
        K(swupdate), K(cert),       K(board),  K(url),    K(id),
        K(token),    K(health_url), K(commit), K(booted), K(reboot),
#undef K
    };
    struct ota_err e = {0};
    char *text = NULL;
    size_t n = 0;
    int64_t w = 0, t = 0;
    json_t *o = NULL;
    int r;

    memset(c, 0, sizeof(*c));
    r = ota_fs_read_all(path, 1 << 20, &text, &n, &e);
    if (r == 0)
        r = ota_json_parse(text, n, &o, &e);
    free(text);
    for (size_t i = 0; r == 0 && i < sizeof(keys) / sizeof(keys[0]); i++)
        r = ota_json_str(o, keys[i].name, (char *)c + keys[i].off, keys[i].cap, &e);
    if (r == 0 && (r = ota_json_int(o, "health_window_ms", &w, &e)) == 0)
        r = ota_json_int(o, "timeout_s", &t, &e);
    json_decref(o);
    if (r < 0) {
        fprintf(stderr, "ota-sim swupdate-pass: %s: %s\n", path, e.reason);
        return -1;
    }
    c->window_ms = (int)w;
    c->timeout_s = (int)t;
    return 0;
}

/* Every descendant of this driver (its children and, as it is their
 * subreaper, the orphans of its grandchildren): swupdate's forked helpers,
 * health-commit's sh, timeout and curl. Zombies are skipped (their pids stay
 * taken until this driver reaps them). */
static size_t descendants(pid_t *out, size_t cap)
{
    pid_t me = getpid(), pid[4096], ppid[4096];
    size_t n = 0, k = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (!d)
        return 0;
    while ((e = readdir(d)) && n < 4096) {
        char p[300], buf[512], *rp, st = 0;
        int fd, len, pp = 0;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(p, sizeof(p), "/proc/%s/stat", e->d_name);
        if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        len = (int)read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        rp = strrchr(buf, ')');
        if (!rp || sscanf(rp + 2, "%c %d", &st, &pp) != 2 || st == 'Z')
            continue;
        pid[n] = (pid_t)atoi(e->d_name);
        ppid[n++] = (pid_t)pp;
    }
    closedir(d);
    /* breadth first from this driver */
    pid_t q[4096];
    size_t qh = 0, qt = 0;
    q[qt++] = me;
    while (qh < qt) {
        pid_t parent = q[qh++];
        for (size_t i = 0; i < n; i++)
            if (ppid[i] == parent && qt < 4096) {
                q[qt++] = pid[i];
                if (k < cap)
                    out[k++] = pid[i];
            }
    }
    return k;
}

/* Sends sig to every descendant, again until none is left alive (SIGKILL)
 * or once (others); reaps what ended. */
static void signal_all(int sig)
{
    pid_t v[512];
    size_t n;
    int rounds = 0, st;

    do {
        n = descendants(v, 512);
        for (size_t i = 0; i < n; i++)
            kill(v[i], sig);
        while (waitpid(-1, &st, WNOHANG) > 0)
            ;
        if (sig != SIGKILL)
            break;
        if (n)
            usleep(1000);
    } while (n && ++rounds < 200);
}

/* Ends the running program: SIGTERM (its atexit handlers run), SIGKILL
 * after 3 s; then whatever it left behind. */
static int stop_child(void)
{
    int st = 0;

    if (g.child <= 0)
        return 0;
    kill(g.child, SIGTERM);
    if (otasim_wait(g.child, 3000, &st) == -ETIMEDOUT) {
        kill(g.child, SIGKILL);
        ota_ignore(otasim_wait(g.child, -1, &st));
    }
    g.child = 0;
    signal_all(SIGKILL);
    return st;
}

static void crash(void)
{
    const char *mode = g.crash_power ? "power" : "process";

    /* everything of the device side stops first, then the record: nothing of
     * it runs on after the crash its journal says happened */
    signal_all(g.crash_power ? SIGSTOP : SIGKILL);
    if (g.journal)
        ota_ignore(otasim_journal_event(g.journal, OTASIM_OP_CRASH, mode, NULL));
    if (g.crash_power) {
        /* every descendant by name (`timeout` puts its command in a group
         * of its own, which the group's kill would miss), then the device's
         * whole group, this driver included */
        signal_all(SIGKILL);
        kill(0, SIGKILL);
    }
    raise(SIGKILL);
    _exit(137);
}

/* One state line (docs/agents.md), its journal event, a state trigger. */
static void emit(const char *to, const char *status, const char *reason)
{
    struct timespec ts;
    char *text = NULL;
    json_t *o;
    clock_gettime(CLOCK_REALTIME, &ts);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "to", to, "status", status, "from", g.from,
                  "kind", "rootfs", "reason", reason ? reason : "", "ts",
                  (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (o && ota_json_dump(o, &text) == 0) {
        fprintf(stderr, "OTA-STATE %s\n", text);
        fflush(stderr);
        if (g.journal)
            ota_ignore(otasim_journal_event(g.journal, OTASIM_OP_STATE, text, NULL));
    }
    free(text);
    json_decref(o);
    snprintf(g.from, sizeof(g.from), "%s", to);
    /* as the interposer does for ota-agent: the line, then the cut (the
     * states of swupdate's log are swupdate's interposer's to cut: line_of) */
    if (g.crash_state[0] && strcmp(g.crash_state, to) == 0 && !line_of(to) &&
        ++g.crash_seen == g.crash_k)
        crash();
}

/* Starts argv (environment additions env) with stdout and stderr into a
 * pipe, in this process's group; the pipe's read end. */
static int start(const char *const *argv, const char *const *env, const char *cwd)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    g.child = fork();
    if (g.child < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (g.child == 0) {
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (cwd && chdir(cwd) < 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    return p[0];
}

enum { LINE_GO_ON, LINE_STOP };

/* What follow() does with the program's output: on_line for each line;
 * ready (may be NULL) asked after each read and every 100 ms, LINE_STOP
 * ends it too. */
struct follower {
    int (*on_line)(const char *line, void *ctx);
    int (*ready)(void *ctx);
    void *ctx;
};

static int one_line(const struct follower *f, const char *tag, const char *s)
{
    fprintf(stderr, "%s: %s\n", tag, s);
    return f->on_line ? f->on_line(s, f->ctx) : LINE_GO_ON;
}

/* Reads the program's lines until it exits, the follower says stop, or the
 * time is up; each is copied to stderr behind the tag (a line longer than
 * the buffer in pieces; NUL bytes read as spaces; a last line without a
 * newline too). Returns its wait status as otasim_wait gives it (the exit
 * code, or 128 + signal; -1: stopped by the follower, -2: timed out). */
static int follow(int fd, const char *tag, int timeout_s, const struct follower *f)
{
    char buf[16384];
    size_t n = 0;
    int64_t deadline = otasim_now_ms() + (int64_t)timeout_s * 1000;
    int stopped = 0, st = 0;

    for (;;) {
        int left = (int)(deadline - otasim_now_ms());
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t k;
        if (left <= 0) {
            stopped = -2;
            break;
        }
        if (poll(&pfd, 1, left < 100 ? left : 100) <= 0) {
            if (f->ready && f->ready(f->ctx) == LINE_STOP) {
                stopped = -1;
                break;
            }
            continue;
        }
        k = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (k <= 0) {
            if (n) {
                buf[n] = '\0';
                if (one_line(f, tag, buf) == LINE_STOP)
                    stopped = -1;
            }
            break;
        }
        for (size_t i = n; i < n + (size_t)k; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        n += (size_t)k;
        size_t from = 0;
        char *nl;
        while ((nl = memchr(buf + from, '\n', n - from))) {
            *nl = '\0';
            if (one_line(f, tag, buf + from) == LINE_STOP) {
                stopped = -1;
                break;
            }
            from = (size_t)(nl - buf) + 1;
        }
        if (stopped)
            break;
        memmove(buf, buf + from, n - from);
        n -= from;
        if (n >= sizeof(buf) - 1) { /* a line longer than the buffer: its piece */
            buf[n] = '\0';
            if (one_line(f, tag, buf) == LINE_STOP) {
                stopped = -1;
                break;
            }
            n = 0;
        }
        if (f->ready && f->ready(f->ctx) == LINE_STOP) {
            stopped = -1;
            break;
        }
    }
    fflush(stderr);
    if (stopped) {
        stop_child(); /* before the pipe closes: no SIGPIPE on its next log line */
    } else if (g.child > 0) {
        ota_ignore(otasim_wait(g.child, -1, &st));
        g.child = 0;
        signal_all(SIGKILL); /* what it left running */
    }
    close(fd);
    return stopped ? stopped : st;
}

static int env_get(const struct conf *c, const char *name, char *buf, size_t cap)
{
    buf[0] = '\0';
    return otasim_bootenv_get(c->env_config, name, buf, cap, NULL);
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}

/* PATH for health-commit: the fw_setenv wrapper (interposed) first. */
static void path_env(const struct conf *c, char *buf, size_t cap)
{
    const char *old = getenv("PATH");

    snprintf(buf, cap, "PATH=%s:%s", c->bin, old ? old : "/usr/bin:/bin");
}

/* ---- the health check -------------------------------------------------- */

/* The probe says it is healthy, then waits on the fifo: COMMITTING is told
 * (and a state trigger on it fires) before the commit's fw_setenv can start. */
static int on_health_line(const char *line, void *ctx)
{
    const char *fifo = ctx;

    if (strcmp(line, "otasim: healthy") == 0) {
        emit("COMMITTING", "in_progress", "the service answers /health: committing");
        for (int i = 0; i < 500; i++) { /* the probe opens it next: at most 5 s */
            int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0) {
                ota_ignore((int)write(fd, "go\n", 3));
                close(fd);
                break;
            }
            usleep(10000);
        }
    }
    return LINE_GO_ON;
}

/* health-commit with a probe that waits for the service for the window
 * (curl retrying a refused connection), says so, and waits for the go. */
static int health_commit(const struct conf *c)
{
    char path[PATH_MAX * 2], tw[16], tr[16], tmax[16], fifo[PATH_MAX + 8];
    int w = (c->window_ms + 999) / 1000, fd, st;
    const char *probe = "curl -fsS -o /dev/null --retry \"$1\" --retry-connrefused --retry-delay 1 "
                        "--max-time \"$2\" \"$0\" && echo 'otasim: healthy' >&2 && "
                        "read go < \"$3\"";

    snprintf(fifo, sizeof(fifo), "%s/go", c->tmp);
    unlink(fifo);
    if (mkfifo(fifo, 0600) < 0) {
        fprintf(stderr, "ota-sim swupdate-pass: mkfifo %s: %s\n", fifo, strerror(errno));
        return -1;
    }
    path_env(c, path, sizeof(path));
    snprintf(tw, sizeof(tw), "%d", w + 10);
    snprintf(tr, sizeof(tr), "%d", w);
    snprintf(tmax, sizeof(tmax), "%d", w + 2);
    const char *argv[] = {c->commit,     "-c", c->env_config, "-t", tw,  "sh", "-c", probe,
                          c->health_url, tr,   tmax,          fifo, NULL};
    const char *env[] = {path, NULL};
    if ((fd = start(argv, env, NULL)) < 0)
        return -1;
    {
        const struct follower f = {on_health_line, NULL, fifo};
        st = follow(fd, "health-commit", w + 20, &f);
    }
    return st; /* otasim_wait's: the exit code, 128 + signal; < 0 stopped */
}

/* The broken device sides the tests run to see the invariants catch them
 * ($OTASIM_SWUPDATE_MUTANT; scenarios/test_swupdate_scenarios.py):
 *   commit-unhealthy  commits every trial boot without a health check
 *   confirm-success   confirms SUCCESS (-c 2) after the bootloader fell back
 *   running-slot      runs swupdate with the running slot's mode (-e ota,a on A) */
static int mutant(const char *name)
{
    const char *m = getenv("OTASIM_SWUPDATE_MUTANT");
    return m && strcmp(m, name) == 0;
}

/* commit-unhealthy: fw_setenv of the commit, no probe. */
static int commit_anyway(const struct conf *c)
{
    char path[PATH_MAX * 2];
    int fd;

    path_env(c, path, sizeof(path));
    const char *argv[] = {"sh", "-c",
                          "printf 'upgrade_available=0\nbootcount=0\n' | "
                          "fw_setenv -c \"$0\" -s /dev/stdin",
                          c->env_config, NULL};
    const char *env[] = {path, NULL};
    emit("COMMITTING", "in_progress", "mutant commit-unhealthy: no health check");
    if ((fd = start(argv, env, NULL)) < 0)
        return -1;
    {
        const struct follower f = {NULL, NULL, NULL};
        return follow(fd, "commit", 30, &f);
    }
}

/* ---- swupdate ------------------------------------------------------------ */

struct sw_run {
    const struct conf *c;
    int started, installing, failed, cancelled, rebooting, idle;
};

/* After the install's last log line: the pass ends once the env holds
 * ustate=1 (swupdate stores it around that line; never cut it short). */
static int sw_ready(void *ctx)
{
    struct sw_run *r = ctx;
    char v[16];

    if (!r->rebooting)
        return LINE_GO_ON;
    if (env_get(r->c, "ustate", v, sizeof(v)) == 0 && strcmp(v, "1") == 0)
        return LINE_STOP;
    return LINE_GO_ON;
}

static int on_sw_line(const char *line, void *ctx)
{
    struct sw_run *r = ctx;

    if (strstr(line, "Software Update started")) {
        r->started = 1;
        emit("DOWNLOADING", "in_progress", "suricatta: the action's artifact streams in");
    } else if (strstr(line, "Installation in progress")) {
        r->installing = 1;
        emit("INSTALLING", "in_progress", "swupdate: writing the inactive slot");
    } else if (strstr(line, "SWUPDATE successful")) {
        emit("SWITCHING", "in_progress", "swupdate: installed, the env selects the new slot");
    } else if (r->started && strstr(line, "SWUPDATE failed [1]")) {
        /* the install's own end (a channel error or a missing ustate is [0]) */
        r->failed = 1;
    } else if (strstr(line, "Acknowledging cancelled update")) {
        r->cancelled = 1;
    } else if (strstr(line, "Update successful, executing post-update actions")) {
        r->rebooting = 1; /* sw_ready ends the pass once ustate=1 is stored */
    } else if (strstr(line, "No pending action on server")) {
        r->idle = 1;
        return LINE_STOP;
    }
    return LINE_GO_ON;
}

static int run_swupdate(const struct conf *c, int booted_b, int confirm, struct sw_run *r)
{
    char sel[16], u[1024], tmpdir[PATH_MAX + 8], pre[PATH_MAX * 2 + 16], cl[192] = "";
    const char *preload = getenv("OTASIM_PRELOAD");
    int fd;

    /* the inactive slot; the mutant running-slot selects the running one */
    snprintf(sel, sizeof(sel), "ota,%s", booted_b != mutant("running-slot") ? "a" : "b");
    snprintf(u, sizeof(u), "-t DEFAULT -u %s -i %s -k %s -p 1", c->url, c->id, c->token);
    if (confirm)
        snprintf(u + strlen(u), sizeof(u) - strlen(u), " -c %d", confirm);
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", c->tmp);
    snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", preload ? preload : "");
    const char *argv[] = {c->swupdate, "-v", "-B", "uboot", "-k", c->cert, "-H",
                          c->board,    "-e", sel,  "-u",    u,    NULL};
    if (g.crash_state[0] && line_of(g.crash_state))
        snprintf(cl, sizeof(cl), "OTASIM_CRASH_LINE=%s#%d", line_of(g.crash_state), g.crash_k);
    const char *env[] = {tmpdir, pre, cl[0] ? cl : NULL, NULL};
    memset(r, 0, sizeof(*r));
    r->c = c;
    /* in the device's root: sw-description names the slots relative to it */
    if ((fd = start(argv, env, c->root)) < 0)
        return -1;
    {
        const struct follower f = {on_sw_line, sw_ready, r};
        return follow(fd, "swupdate", c->timeout_s, &f);
    }
}

/* ---- the pass ------------------------------------------------------------ */

static int enter_namespace(const struct conf *c)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(c->etc, "/etc", NULL, MS_BIND, NULL) < 0) {
        fprintf(stderr,
                "ota-sim swupdate-pass: no mount namespace with the device's /etc (%s): %s "
                "(swupdate -B uboot reads /etc/fw_env.config; root or CAP_SYS_ADMIN is needed)\n",
                c->etc, strerror(errno));
        return -1;
    }
    return 0;
}

int otasim_cli_swupdate_pass(int argc, char **argv)
{
    struct conf c;
    struct sw_run r;
    char bp[8], ua[8], bc[16], us[8], booted[8] = "";
    char *text = NULL;
    size_t n = 0;
    int confirm = 0, booted_b, st;
    const char *v;

    if (argc != 3) {
        fprintf(stderr, "usage: ota-sim swupdate-pass CONFIG\n");
        return 2;
    }
    if (conf_load(argv[2], &c) < 0)
        return 5;
    g.journal = getenv("OTASIM_JOURNAL");
    if (g.journal && !*g.journal)
        g.journal = NULL;
    if (g.journal)
        touch(g.journal); /* a pass with no interposed program still has one */
    snprintf(g.from, sizeof(g.from), "IDLE");
    if ((v = getenv("OTASIM_CRASH_STATE")) && *v) {
        snprintf(g.crash_state, sizeof(g.crash_state), "%s", v);
        char *hash = strchr(g.crash_state, '#');
        g.crash_k = 1;
        if (hash) {
            *hash = '\0';
            g.crash_k = atoi(hash + 1) > 0 ? atoi(hash + 1) : 1;
        }
    }
    v = getenv("OTASIM_CRASH_MODE");
    g.crash_power = !(v && strcmp(v, "process") == 0);
    if (enter_namespace(&c) < 0)
        return 5;
    /* the orphans of its programs become its children: a stop or a crash
     * finds and ends every one (signal_all) */
    ota_ignore(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
    ota_ignore(ota_fs_remove_tree(c.tmp, NULL));
    ota_ignore(ota_fs_mkdirs(c.tmp, NULL));

    if (env_get(&c, OTA_ENV_BOOT_PART, bp, sizeof(bp)) < 0) {
        emit("CHECKING", "in_progress", "");
        emit("IDLE", "failure", "the boot env cannot be read");
        return 5;
    }
    env_get(&c, OTA_ENV_UPGRADE_AVAILABLE, ua, sizeof(ua));
    env_get(&c, OTA_ENV_BOOTCOUNT, bc, sizeof(bc));
    env_get(&c, "ustate", us, sizeof(us));
    if (ota_fs_read_all(c.booted, 64, &text, &n, NULL) == 0 && n > 0)
        booted[0] = text[0];
    free(text);
    booted_b = booted[0] == 'b';

    /* What the device finds in its env, as the state it resumes from (the
     * "from" of its first line: the matrix's `found`) */
    if (strcmp(ua, "1") == 0)
        snprintf(g.from, sizeof(g.from), "REBOOTING"); /* an install stored its trial env */
    else if (strcmp(us, "1") == 0)
        snprintf(g.from, sizeof(g.from), "%s", atoi(bc) != 0 ? "ROLLING_BACK" : "COMMITTING");
    else if (strcmp(us, "7") == 0)
        snprintf(g.from, sizeof(g.from), "INSTALLING"); /* swupdate's own "in progress" */
    emit("CHECKING", "in_progress", "");

    if (strcmp(ua, "1") == 0 && booted_b == (strcmp(bp, OTA_ENV_SLOT_B) == 0)) {
        emit("HEALTH_CHECK", "in_progress", "a trial boot: seed 003's health check decides");
        st = mutant("commit-unhealthy") ? commit_anyway(&c) : health_commit(&c);
        if (st == 0) {
            confirm = 2;
        } else if (st != 4) {
            /* 1 unhealthy; 3 the env unreadable or the commit not stored; a
             * signal or the time limit: nothing committed, so the device
             * reboots and the boot counter counts the trial */
            char why[96];
            snprintf(why, sizeof(why),
                     "health-commit %s %d: nothing committed, the device "
                     "reboots (bootcount counts it)",
                     st < 0 || st > 128 ? "ended" : "exit", st);
            emit("REBOOTING", "in_progress", why);
            touch(c.reboot);
            return 0;
        }
        /* 4: not a trial boot after all (the env changed): as below */
    }
    if (confirm == 0 && strcmp(us, "1") == 0 && strcmp(ua, "1") != 0) {
        /* installed, not confirmed: committed (the count cleared) or fallen
         * back (the bootloader's count left in the env). With a trial boot
         * still pending (the device never rebooted after the install: the
         * agent crashed first), no -c: swupdate finds the action open and
         * installs it again, and the device then reboots. */
        if (atoi(bc) != 0) {
            emit("ROLLING_BACK", "in_progress", "the bootloader fell back: confirming FAILED");
            confirm = mutant("confirm-success") ? 2 : 3;
        } else {
            confirm = 2;
        }
    }
    st = run_swupdate(&c, booted_b, confirm, &r);
    if (r.rebooting && st == -1) { /* stopped once ustate=1 was stored */
        emit("REBOOTING", "in_progress", "installed: reboot into the trial boot");
        touch(c.reboot);
        return 0;
    }
    if (r.idle) {
        if (confirm == 2)
            emit("IDLE", "success", "confirmed to the server (-c 2)");
        else if (confirm == 3)
            emit("IDLE", "failure", "confirmed FAILED to the server (-c 3)");
        else if (r.cancelled)
            emit("IDLE", "failure", "the server cancelled the action: acknowledged");
        else if (r.installing || r.failed)
            emit("IDLE", "failure", "the install failed; the action is closed");
        else
            emit("IDLE", "in_progress", "no action");
        return 0;
    }
    fprintf(stderr, "ota-sim swupdate-pass: swupdate %s\n",
            st == -2 ? "found no end within the time limit" : "exited on its own");
    return 3;
}
