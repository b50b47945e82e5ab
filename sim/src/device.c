/* Simulated devices: the tree, the boot (bootloader model, process group,
 * the app under `ota-sim svc`), and one pass of the real agent with a fault
 * armed through its environment (interposer, named fault points, faketime)
 * or live from its state lines (partition, clock jump, service crash). */
#include "otasim/device.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/agent.h"
#include "otasim/fast.h"
#include "otasim/journal.h"
#include "otasim/proc.h"
#include "otasim/svc.h"

/* A port for the app, reserved for the device's whole life: *ret_fd stays
 * bound to it (SO_REUSEADDR, never listening). A port merely found free and
 * closed is free again whenever the app is down (a power cut, a restart):
 * any bind(0) on the machine, another trial's server or proxy, could take it,
 * and the app then dies at start (EADDRINUSE) while the intruder answers its
 * /health (seen: "service inactive, /health 404"). The reservation keeps
 * every other socket off the port (bind(0) and connect() skip it, an explicit
 * bind fails), yet the app, which also sets SO_REUSEADDR, binds and listens. */
static int reserve_port(int *ret_fd)
{
    struct sockaddr_in a = {0};
    socklen_t n = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, port = -1;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
        bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (port <= 0 && fd >= 0) {
        close(fd);
        fd = -1;
    }
    *ret_fd = fd;
    return port;
}

static int put_file(const char *path, const char *text, struct ota_err *err)
{
    return ota_fs_write_atomic(path, text, strlen(text), 0644, err);
}

static int sized_copy(const char *src, const char *dst, uint64_t size, struct ota_err *err)
{
    char buf[65536];
    int in = src ? open(src, O_RDONLY | O_CLOEXEC) : -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int r = 0;
    ssize_t n;

    if ((src && in < 0) || out < 0) {
        r = ota_err_set(err, errno, "%s: %s", src && in < 0 ? src : dst, strerror(errno));
        goto out;
    }
    while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
            goto out;
        }
    if (ftruncate(out, (off_t)size) < 0)
        r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return r;
}

/* libfaketime's spec for the agent: "+OFFSET" seconds, " xRATE" when the
 * clocks run faster. Read again at every clock call (FAKETIME_NO_CACHE). */
static int faketime_write(struct otasim_device *d, struct ota_err *err)
{
    char buf[64];
    int rate = d->tr->sc->clock_rate;

    if (rate > 1)
        snprintf(buf, sizeof(buf), "%+lld x%d\n", d->clock_offset_s, rate);
    else
        snprintf(buf, sizeof(buf), "%+lld\n", d->clock_offset_s);
    return put_file(d->faketime_file, buf, err);
}

static int uses_faketime(const struct otasim_device *d)
{
    return d->tools->faketime[0] &&
           (d->tr->fault.kind == OTASIM_FAULT_CLOCK_JUMP || d->tr->sc->clock_rate > 1);
}

int otasim_device_create(struct otasim_device *d, const struct otasim_tools *t,
                         struct otasim_trial *tr, struct ota_err *err)
{
    const struct otasim_scenario *sc = tr->sc;
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    const struct otasim_built *fb = &tr->built[fac - sc->rel];
    char p[PATH_MAX + 64], port[16];
    static const char *const dirs[] = {
        "opt/app", "var/lib/ota/download", "etc", "run", "boot", "disks", ".sim"};
    int r;

    memset(d, 0, sizeof(*d));
    d->tools = t;
    d->tr = tr;
    d->agent = tr->agent[0]   ? otasim_agent_find(tr->agent)
               : sc->agent[0] ? otasim_agent_find(sc->agent)
                              : &otasim_agent_ota;
    if (!d->agent)
        return ota_err_set(err, EINVAL, "no adapter for the agent '%s'",
                           tr->agent[0] ? tr->agent : sc->agent);
    if ((r = otasim_agent_check(d->agent, sc, &tr->fault, err)) < 0)
        return r;
    d->booted_slot = -1;
    d->app_port_fd = -1;
    snprintf(d->root, sizeof(d->root), "%s/dev", tr->dir);
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", d->root, dirs[i]);
        if ((r = ota_fs_mkdirs(p, err)) < 0)
            return r;
    }
    /* the factory app in slot a, current -> a */
    if (sc->profile == OTASIM_PROFILE_APP) {
        char src[PATH_MAX + 8], dst[PATH_MAX + 16];
        int st = 0;
        snprintf(src, sizeof(src), "%s/.", fb->ref_tree);
        snprintf(dst, sizeof(dst), "%s/opt/app/a", d->root);
        const char *cp[] = {"cp", "-a", src, dst, NULL};
        if (!otasim_baseline()) {
            if ((r = otasim_copy_tree(fb->ref_tree, dst, err)) < 0)
                return r;
        } else if ((r = otasim_run(cp, NULL, 30000, NULL, NULL, &st, err)) < 0)
            return r;
        if (st != 0)
            return ota_err_set(err, EIO, "cp -a %s %s: exit %d", src, dst, st);
    } else {
        /* A rootfs device still runs the demo app: the factory build. */
        char src[PATH_MAX + 8], dst[PATH_MAX + 16];
        snprintf(dst, sizeof(dst), "%s/opt/app/a/bin", d->root);
        if ((r = ota_fs_mkdirs(dst, err)) < 0)
            return r;
        snprintf(src, sizeof(src), "%s/video-app", t->app_dir);
        snprintf(dst, sizeof(dst), "%s/opt/app/a/bin/video-app", d->root);
        if (symlink(src, dst) < 0)
            return ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
    }
    snprintf(p, sizeof(p), "%s/opt/app/current", d->root);
    if (symlink("a", p) < 0)
        return ota_err_set(err, errno, "%s: %s", p, strerror(errno));
    d->app_port = reserve_port(&d->app_port_fd);
    if (d->app_port <= 0)
        return ota_err_set(err, EADDRNOTAVAIL, "no free port");
    snprintf(port, sizeof(port), "%d\n", d->app_port);
    snprintf(p, sizeof(p), "%s/run/app.port", d->root);
    if ((r = put_file(p, port, err)) < 0)
        return r;
    snprintf(d->faketime_file, sizeof(d->faketime_file), "%s/.sim/faketime", d->root);
    if ((r = faketime_write(d, err)) < 0)
        return r;
    if (sc->profile == OTASIM_PROFILE_ROOTFS) {
        static const char *const vars[] = {OTA_ENV_BOOT_PART "=" OTA_ENV_SLOT_A,
                                           OTA_ENV_BOOTCOUNT "=0",
                                           OTA_ENV_BOOTLIMIT "=" OTA_ENV_BOOTLIMIT_DEFAULT,
                                           OTA_ENV_UPGRADE_AVAILABLE "=0", "bootcmd=run ota_boot"};
        char envfile[PATH_MAX + 32];
        for (int s = 0; s < 2; s++)
            snprintf(d->part[s], sizeof(d->part[s]), "%s/disks/root%c", d->root, "AB"[s]);
        if (strcmp(fac->format, "raw") != 0)
            return ota_err_set(err, EINVAL, "a factory rootfs must be format raw");
        if ((r = sized_copy(fb->payload, d->part[0], OTASIM_PART_SIZE, err)) < 0 ||
            (r = sized_copy(sc->slot_b_factory ? fb->payload : NULL, d->part[1], OTASIM_PART_SIZE,
                            err)) < 0)
            return r;
        snprintf(envfile, sizeof(envfile), "%s/boot/uboot.env", d->root);
        snprintf(d->env_config, sizeof(d->env_config), "%s/boot/fw_env.config", d->root);
        if ((r = (sc->env_redundant ? otasim_bootenv_create_redundant : otasim_bootenv_create)(
                 envfile, d->env_config, vars, 5, err)) < 0)
            return r;
        for (size_t i = 0; i < sc->n_rel; i++) {
            struct otasim_image *im = &d->images[d->n_images++];
            ota_strlcpy(im->version, sc->rel[i].version, sizeof(im->version));
            memcpy(im->sha256, tr->built[i].image_sha, 32);
            im->size = tr->built[i].size;
            im->bootable = strcmp(sc->rel[i].variant, "broken") != 0;
            im->unhealthy = strcmp(sc->rel[i].variant, "unhealthy") == 0;
            im->hang = 0; /* a kernel-hang fault sets it when armed (live_fault) */
        }
        d->boot.env_config = d->env_config;
        d->boot.part[0] = d->part[0];
        d->boot.part[1] = d->part[1];
        d->boot.images = d->images;
        d->boot.n_images = d->n_images;
        d->boot.max_boots = 16;
        d->boot.no_watchdog = sc->no_watchdog;
        d->boot.watchdog_ms = sc->watchdog_ms;
        d->boot.image_boots = d->image_boots;
    }
    if ((r = otasim_proxy_start(tr->srv->port, &d->proxy, err)) < 0)
        return r;
    return d->agent->provision(d, err);
}

static int svc(struct otasim_device *d, const char *cmd, int *ret_status, struct ota_err *err)
{
    char pg[32], bin[PATH_MAX + 8];
    const char *env[] = {pg, OTASIM_SVC_SIM_SETTLE_ENV, NULL};
    const char *argv[] = {d->tools->self, "svc", "--dev", d->root, cmd, NULL};
    const char *fast[] = {bin, "--dev", d->root, cmd, NULL};

    snprintf(pg, sizeof(pg), "OTASIM_PGID=%d", (int)d->pgid);
    return otasim_run(otasim_svc_bin(d->tools, bin, sizeof(bin)) ? fast : argv, env, 20000, NULL,
                      NULL, ret_status, err);
}

int otasim_device_boot(struct otasim_device *d, struct ota_err *err)
{
    const char *init[] = {"sleep", "1000000", NULL};
    char p[PATH_MAX + 32];
    int st = 0;
    int r;

    int unhealthy = 0;

    d->boot_failed = 0;
    d->hung = 0;
    d->recovery = 0;
    if (d->tr->sc->profile == OTASIM_PROFILE_ROOTFS) {
        struct otasim_boot_result br;
        if ((r = otasim_boot(&d->boot, &br, err)) < 0)
            return r;
        d->watchdog_resets += br.watchdog_resets;
        d->hung_ms += br.hung_ms;
        if (br.outcome == OTASIM_BOOT_HUNG)
            d->hung = 1;
        if (br.watchdog_resets > 0 || br.outcome == OTASIM_BOOT_HUNG) {
            ota_strlcpy(d->hung_version, br.version, sizeof(d->hung_version));
            if (d->tr->fault.kind == OTASIM_FAULT_KERNEL_HANG)
                d->tr->fired = 1; /* seen: a kernel hung */
        }
        d->recovery = br.outcome == OTASIM_BOOT_RECOVERY;
        if (br.outcome != OTASIM_BOOT_OK) {
            d->boot_failed = 1;
            d->booted_slot = -1;
            return 0;
        }
        d->booted_slot = br.slot;
        ota_strlcpy(d->booted_version, br.version, sizeof(d->booted_version));
        for (size_t i = 0; i < d->n_images; i++)
            if (d->images[i].unhealthy && strcmp(d->images[i].version, br.version) == 0)
                unhealthy = 1;
        snprintf(p, sizeof(p), "%s/run/booted", d->root);
        if ((r = put_file(p, br.slot ? "b\n" : "a\n", err)) < 0)
            return r;
    }
    snprintf(p, sizeof(p), "%s/run/reboot-requested", d->root);
    unlink(p);
    if (otasim_spawn_leader(d->tools, &d->pgid) != 0 &&
        (r = otasim_spawn(init, NULL, 0, NULL, NULL, NULL, &d->pgid, err)) < 0)
        return r;
    /* an unhealthy rootfs boots, but its service never comes up */
    if (!unhealthy && (r = svc(d, "start", &st, err)) < 0)
        return r;
    /* An app that does not start is for the agent (and the invariants) to see. */
    return 0;
}

/* A process that is gone or a zombie (its sockets and files are released). */
static int dead(int pid)
{
    char p[64], buf[512], *rp;
    int fd, n;

    snprintf(p, sizeof(p), "/proc/%d/stat", pid);
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    n = (int)read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'Z';
}

void otasim_device_kill(struct otasim_device *d)
{
    char p[PATH_MAX + 32], *text = NULL;
    size_t n;
    int st, pid = 0;

    snprintf(p, sizeof(p), "%s/run/app.pid", d->root);
    if (ota_fs_read_all(p, 256, &text, &n, NULL) == 0) {
        pid = atoi(text);
        free(text);
    }
    if (d->pgid > 0) {
        killpg(d->pgid, SIGKILL);
        ota_ignore(otasim_wait(d->pgid, 2000, &st));
        d->pgid = 0;
    }
    /* The app is in the group; make sure, and wait until it is really gone:
     * SIGKILL lands asynchronously, and the next boot's app needs its port. */
    if (pid > 1) {
        int64_t deadline = otasim_now_ms() + 3000;
        kill(pid, SIGKILL);
        while (!dead(pid) && otasim_now_ms() < deadline)
            usleep(1000);
    }
}

static int line_to(const char *json, char *to, size_t cap, char *status, size_t scap)
{
    json_t *o = NULL;
    int r = ota_json_parse(json, strlen(json), &o, NULL);

    if (r == 0) {
        if (ota_json_str(o, "to", to, cap, NULL) < 0 ||
            ota_json_str(o, "status", status, scap, NULL) < 0)
            r = -EINVAL;
        json_decref(o);
    }
    return r;
}

static void append_line(char **acc, const char *line)
{
    size_t a = *acc ? strlen(*acc) : 0, b = strlen(line);
    char *n = realloc(*acc, a + b + 2);

    if (!n)
        return;
    memcpy(n + a, line, b);
    n[a + b] = '\n';
    n[a + b + 1] = '\0';
    *acc = n;
}

/* Live faults, fired on a state line. */
static void live_fault(struct otasim_device *d, const struct otasim_fault *f, int64_t *part_until)
{
    char p[PATH_MAX + 32], *text = NULL;
    size_t n;
    int done = 0; /* fired only if it happened: no app to kill is no crash */

    switch (f->kind) {
    case OTASIM_FAULT_PARTITION:
        otasim_proxy_partition(d->proxy, 1);
        *part_until = otasim_now_ms() + f->duration_ms;
        done = 1;
        break;
    case OTASIM_FAULT_CLOCK_JUMP:
        d->clock_offset_s += f->jump_s;
        done = uses_faketime(d) && faketime_write(d, NULL) == 0; /* no libfaketime: no jump */
        break;
    case OTASIM_FAULT_CANCEL: /* the operator: the trial's rollout cancelled */
        snprintf(p, sizeof(p), "/api/v1/rollouts/%s/cancel", d->rollout_id);
        done = d->rollout_id[0] && otasim_server_post(d->tr->srv, p, NULL, NULL, NULL) == 0;
        break;
    case OTASIM_FAULT_KERNEL_HANG: {
        /* armed, not fired: it fires when a boot of that kernel hangs
         * (otasim_device_boot); its boots are counted from here */
        const struct otasim_release *tgt = otasim_scenario_target(d->tr->sc);
        const char *v = f->release[0] ? f->release : tgt ? tgt->version : "";
        for (size_t i = 0; i < d->n_images; i++)
            if (strcmp(d->images[i].version, v) == 0 && d->images[i].hang == 0) {
                d->images[i].hang = f->count > 0 ? f->count : -1;
                d->image_boots[i] = 0;
            }
        break;
    }
    case OTASIM_FAULT_SERVICE_CRASH:
        snprintf(p, sizeof(p), "%s/run/app.pid", d->root);
        if (ota_fs_read_all(p, 256, &text, &n, NULL) == 0) {
            int pid = atoi(text);
            done = pid > 1 && kill(pid, SIGKILL) == 0;
            free(text);
        }
        break;
    default:
        break;
    }
    if (done)
        d->tr->fired = 1;
}

static int is_live(enum otasim_fault_kind k)
{
    return k == OTASIM_FAULT_PARTITION || k == OTASIM_FAULT_CLOCK_JUMP ||
           k == OTASIM_FAULT_SERVICE_CRASH || k == OTASIM_FAULT_CANCEL ||
           k == OTASIM_FAULT_KERNEL_HANG;
}

/* An agent pass's environment: the interposer, libfaketime, the fault it
 * arms. */
struct pass_env {
    const char *v[24];
    char slots[20][PATH_MAX + 96];
    size_t k, s;
};

static void add_env(struct pass_env *e, const char *fmt, const char *a, const char *b)
{
    snprintf(e->slots[e->s], sizeof(e->slots[0]), fmt, a, b);
    e->v[e->k++] = e->slots[e->s++];
    e->v[e->k] = NULL;
}

/* What the interposer (or a named fault point) is to do in this pass. */
static void fault_env(struct pass_env *e, const struct otasim_device *d,
                      const struct otasim_arm *arm)
{
    const struct otasim_fault *f = arm->fault;
    const char *mode = f->kind == OTASIM_FAULT_AGENT_CRASH ? "process" : "power";
    char num[32];

    switch (f->kind) {
    case OTASIM_FAULT_POWER_CUT:
    case OTASIM_FAULT_AGENT_CRASH:
        add_env(e, "OTASIM_CRASH_MODE=%s%s", mode, "");
        if (f->trigger.kind == OTASIM_TRIGGER_STATE) {
            snprintf(num, sizeof(num), "%d", f->trigger.nth > 0 ? f->trigger.nth : 1);
            add_env(e, "OTASIM_CRASH_STATE=%s#%s", f->trigger.state, num);
        } else if (f->trigger.kind == OTASIM_TRIGGER_POINT) {
            snprintf(num, sizeof(num), "%llu", (unsigned long long)arm->point);
            add_env(e, "OTASIM_CRASH_AT=%s%s", num, "");
        } else if (f->trigger.kind == OTASIM_TRIGGER_FAULT_POINT) {
            add_env(e, "OTA_FAULT_POINT=%s%s", f->trigger.fault_point, "");
            add_env(e, "OTA_FAULT_POINT_MODE=%s%s", mode, "");
        }
        break;
    case OTASIM_FAULT_DISK_FULL:
    case OTASIM_FAULT_EIO:
        add_env(e, "OTASIM_FAIL_ERRNO=%s%s", f->kind == OTASIM_FAULT_EIO ? "EIO" : "ENOSPC", "");
        if (f->trigger.kind == OTASIM_TRIGGER_STATE)
            add_env(e, "OTASIM_FAIL_STATE=%s%s", f->trigger.state, "");
        if (f->trigger.kind == OTASIM_TRIGGER_POINT) {
            snprintf(num, sizeof(num), "%llu", (unsigned long long)arm->point);
            add_env(e, "OTASIM_FAIL_FROM=%s%s", num, "");
        }
        add_env(e, "OTASIM_FAIL_PATH=%s/%s", d->root, f->path_glob[0] ? f->path_glob : "*");
        if (f->count > 0) {
            snprintf(num, sizeof(num), "%d", f->count);
            add_env(e, "OTASIM_FAIL_COUNT=%s%s", num, "");
        }
        /* fired when the interposer journals a failed call (pass_result), not
         * when armed: a path or state nothing reaches fails nothing */
        break;
    default:
        break;
    }
}

static void pass_env(struct pass_env *e, const struct otasim_device *d,
                     const struct otasim_arm *arm, const char *journal)
{
    const struct otasim_tools *t = d->tools;
    char pg[32];

    /* LD_PRELOAD, or the name the adapter's driver takes it under (agent.h) */
    const char *pre = d->agent->preload_env ? d->agent->preload_env : "LD_PRELOAD";
    char both[2 * PATH_MAX + 2];

    e->k = e->s = 0;
    if (uses_faketime(d)) {
        /* A jump moves the wall clock only; a rate speeds up both. */
        snprintf(both, sizeof(both), "%s:%s", t->interpose, t->faketime);
        add_env(e, "%s=%s", pre, both);
        add_env(e, "FAKETIME_TIMESTAMP_FILE=%s%s", d->faketime_file, "");
        add_env(e, "FAKETIME_NO_CACHE=1%s%s", "", "");
        if (d->tr->sc->clock_rate <= 1)
            add_env(e, "FAKETIME_DONT_FAKE_MONOTONIC=1%s%s", "", "");
    } else {
        add_env(e, "%s=%s", pre, t->interpose);
    }
    add_env(e, "ASAN_OPTIONS=verify_asan_link_order=0%s%s", "", "");
    add_env(e, "%s%s", OTASIM_SVC_SIM_SETTLE_ENV, "");
    add_env(e, "OTASIM_ROOT=%s%s", d->root, "");
    add_env(e, "OTASIM_JOURNAL=%s%s", journal, "");
    snprintf(pg, sizeof(pg), "%d", (int)d->pgid);
    add_env(e, "OTASIM_PGID=%s%s", pg, "");
    if (arm && arm->fault)
        fault_env(e, d, arm);
}

/* One OTA-STATE line of the agent: the pass's and device's records of it,
 * and a live fault whose state it is. */
static void state_line(struct otasim_device *d, const struct otasim_fault *f, const char *json,
                       struct otasim_pass *ps, int64_t *part_until)
{
    char to[32] = "", status[24] = "";

    append_line(&d->tr->state_lines, json);
    if (line_to(json, to, sizeof(to), status, sizeof(status)) != 0)
        return;
    if (strcmp(to, "CHECKING") != 0 && strcmp(to, "IDLE") != 0)
        ps->quiet = 0;
    if (strcmp(status, "success") == 0 || strcmp(status, "failure") == 0)
        ps->ended_cycle = 1;
    if (strcmp(to, "HEALTH_CHECK") == 0)
        d->health_enter_ms = otasim_now_ms();
    if (strcmp(to, "COMMITTING") == 0)
        d->commit_enter_ms = otasim_now_ms();
    if (f && is_live(f->kind) && f->trigger.kind == OTASIM_TRIGGER_STATE &&
        strcmp(to, f->trigger.state) == 0 && !d->tr->fired &&
        ++d->state_seen >= (f->trigger.nth > 0 ? f->trigger.nth : 1))
        live_fault(d, f, part_until);
}

/* Reads the agent's stderr until it closes (or the agent is quiet for a
 * minute), copying it to logfd and acting on its state lines; ends a
 * partition when its time is up. */
static void watch_agent(struct otasim_device *d, const struct otasim_fault *f, int errfd, int logfd,
                        struct otasim_pass *ps, int64_t *part_until)
{
    char line[16384], json[16384];
    size_t ll = 0;

    for (;;) {
        struct pollfd pfd = {errfd, POLLIN, 0};
        int timeout = *part_until ? (int)(*part_until - otasim_now_ms()) : 60000;
        if (*part_until && timeout <= 0) {
            otasim_proxy_partition(d->proxy, 0);
            *part_until = 0;
            continue;
        }
        int pr = poll(&pfd, 1, timeout);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            if (!*part_until) {
                /* an agent quiet for a minute: let the wait decide */
                break;
            }
            continue;
        }
        ssize_t n = read(errfd, line + ll, sizeof(line) - 1 - ll);
        if (n <= 0)
            break;
        if (logfd >= 0)
            ota_ignore((int)write(logfd, line + ll, (size_t)n));
        ll += (size_t)n;
        line[ll] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            if (d->agent->state_line(line, json, sizeof(json)))
                state_line(d, f, json, ps, part_until);
            memmove(line, nl + 1, strlen(nl + 1) + 1);
            ll = strlen(line);
        }
        if (ll >= sizeof(line) - 1)
            ll = 0; /* an absurd line: drop it */
    }
}

/* What the pass left: its exit status st, the crash or failed calls its
 * journal holds, a reboot it asked for. */
static void pass_result(struct otasim_device *d, const struct otasim_fault *f, int st,
                        struct otasim_pass *ps)
{
    struct otasim_journal *j = NULL;
    char p[PATH_MAX + 32];

    ps->status = st;
    if (otasim_journal_load(ps->journal, &j, NULL) == 0) {
        ps->calls = j->calls;
        for (size_t i = 0; i < j->n; i++)
            if (j->v[i].op == OTASIM_OP_CRASH) {
                ps->crashed = 1;
                ps->power = strcmp(j->v[i].text, "process") != 0;
            } else if (j->v[i].op == OTASIM_OP_FAIL) {
                ps->failed_calls++;
            }
        otasim_journal_free(j);
    }
    /* A named fault point kills through the agent itself, not the interposer. */
    if (!ps->crashed && f && f->trigger.kind == OTASIM_TRIGGER_FAULT_POINT && st == 128 + SIGKILL) {
        ps->crashed = 1;
        ps->power = f->kind != OTASIM_FAULT_AGENT_CRASH;
    }
    if (ps->crashed || ps->failed_calls)
        d->tr->fired = 1;
    snprintf(p, sizeof(p), "%s/run/reboot-requested", d->root);
    ps->reboot_asked = access(p, F_OK) == 0;
}

int otasim_device_pass(struct otasim_device *d, int pass_no, const struct otasim_arm *arm,
                       struct otasim_pass *ret, struct ota_err *err)
{
    const struct otasim_fault *f = arm ? arm->fault : NULL;
    const char *argv[16];
    char logpath[PATH_MAX + 32], outpath[PATH_MAX + 32];
    struct pass_env env;
    struct otasim_pass ps;
    int errfd = -1, logfd = -1, r = 0, st = 0;
    int64_t part_until = 0;
    pid_t pid;

    memset(&ps, 0, sizeof(ps));
    ps.quiet = 1;
    snprintf(ps.journal, sizeof(ps.journal), "%s/.sim/journal-%d.bin", d->root, pass_no);
    snprintf(logpath, sizeof(logpath), "%s/.sim/agent-%d.log", d->root, pass_no);
    snprintf(outpath, sizeof(outpath), "%s/.sim/agent-%d.out", d->root, pass_no);
    pass_env(&env, d, arm, ps.journal);
    d->agent->pass_argv(d, argv, sizeof(argv) / sizeof(argv[0]));
    if ((r = otasim_spawn(argv, env.v, d->pgid, outpath, NULL, &errfd, &pid, err)) < 0)
        return r;
    logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (f && is_live(f->kind) && f->trigger.kind == OTASIM_TRIGGER_NONE && !d->tr->fired)
        live_fault(d, f, &part_until);
    watch_agent(d, f, errfd, logfd, &ps, &part_until);
    r = otasim_wait(pid, 120000, &st);
    if (r == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        ota_ignore(otasim_wait(pid, -1, &st));
        r = ota_err_set(err, ETIMEDOUT, "%s did not finish within 120 s (pass %d)", d->agent->name,
                        pass_no);
        goto out;
    }
    if (r < 0) {
        r = ota_err_set(err, -r, "waitpid: %s", strerror(-r));
        goto out;
    }
    if (part_until) {
        int64_t left = part_until - otasim_now_ms();
        if (left > 0)
            usleep((useconds_t)left * 1000);
        otasim_proxy_partition(d->proxy, 0);
    }
    pass_result(d, f, st, &ps);
    *ret = ps;
out:
    if (errfd >= 0)
        close(errfd);
    if (logfd >= 0)
        close(logfd);
    return r;
}

int otasim_device_status(struct otasim_device *d, char **ret, struct ota_err *err)
{
    return d->agent->status(d, ret, err);
}

int otasim_device_app_get(struct otasim_device *d, const char *path, long *ret_status, char **ret,
                          struct ota_err *err)
{
    struct sockaddr_in a = {0};
    char req[256], buf[8192];
    size_t len = 0;
    int fd, r = 0;
    struct timeval tv = {2, 0};

    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)d->app_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ota_err_set(err, errno, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        r = ota_err_set(err, errno, "app on port %d: %s", d->app_port, strerror(errno));
        goto out;
    }
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, strlen(req)) < 0) {
        r = ota_err_set(err, errno, "app: %s", strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len >= sizeof(buf) - 1)
            break;
    }
    buf[len] = '\0';
    if (strncmp(buf, "HTTP/1.", 7) != 0) {
        r = ota_err_set(err, EPROTO, "app on port %d: no HTTP answer", d->app_port);
        goto out;
    }
    *ret_status = strtol(buf + 9, NULL, 10);
    {
        char *body = strstr(buf, "\r\n\r\n");
        *ret = strdup(body ? body + 4 : "");
    }
out:
    close(fd);
    return r;
}

void otasim_device_destroy(struct otasim_device *d)
{
    otasim_device_kill(d);
    if (d->proxy)
        otasim_proxy_stop(d->proxy);
    d->proxy = NULL;
    if (d->app_port_fd >= 0)
        close(d->app_port_fd);
    d->app_port_fd = -1;
}
