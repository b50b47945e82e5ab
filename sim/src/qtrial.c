/* One trial on a QEMU machine: the real aarch64 agent in the image, booted
 * by real U-Boot (raspi3b) on a real kernel and ext4, against this
 * scenario's ota-server on the host.
 *
 * The fault is armed from the kernel command line (images/rootfs/generators/
 * ota-test-env turns ota.env=/ota.conf= into the agent's environment and
 * config): a named fault point, or state.<STATE> right after a state line,
 * with OTA_FAULT_POINT_MODE=stop, so the agent freezes there; when its
 * "ota-fault-point:" line reaches the console the machine is killed (the
 * power cut) and powered on again without the fault. An agent crash is the
 * same point without stop: the agent SIGKILLs itself and the timer runs it
 * again. The trial ends at the final state line (IDLE with success or
 * failure) once the server has the report; the app is asked for /health and
 * /version through the host forward, then the power goes off and the host
 * reads the disk (qemu-img, debugfs, mtools) into a tree that the same
 * invariant checker reads. */
#include "otasim/sim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/agent.h"
#include "otasim/device.h"
#include "otasim/invariants.h"
#include "otasim/proc.h"
#include "otasim/qemu.h"
#include "otasim/qenv.h"
#include "qtrial_impl.h"

#define REPORT_WAIT_MS 30000
#define APP_WAIT_MS    20000
#define MAX_STARTS     8

const char *const otasim_target_names[OTASIM_TARGET_MAX] = {"native", "qemu"};

/* docs/DESIGN.md "The simulator and the fault injector", images/README.md
 * "Not done yet", otasim_qemu_supports below. */
static const char *const native_gaps[] = {
    "No kernel, bootloader or hardware: the device is a directory tree, U-Boot is a model of its "
    "bootcount logic, and a reboot restarts processes.",
    "A power cut's losses follow the crash model (minimal, reorder or torn) applied to the "
    "journal of the agent's interposed file calls, not a real file system or storage device; a "
    "mutation the model cannot represent ends the trial as an error.",
    "Network faults are the server's fault plans and the partition fault on loopback, not a "
    "real link.",
    NULL,
};
/* What differs from a real Raspberry Pi 3B on every QEMU run (issue 16's
 * "Fidelity, stated"). */
#define QEMU_FIDELITY                                                                              \
    "boot.scr takes QEMU-only branches (ota_qemu=1: the secondary cores parked, the loads "        \
    "through the SDHCI controller); a real Pi runs the same script without them.",                 \
        "No GPU firmware and no tryboot: QEMU loads U-Boot directly; the A/B choice is "           \
        "boot.scr's bootcount logic alone.",                                                       \
        "The kernel and initramfs are shared by both slots on the FAT partition: a rootfs "        \
        "update does not update the kernel.",                                                      \
        "The Pi's watchdog: QEMU's PM block (bcm2835_powermgt) never counts WDOG down and resets " \
        "at once when it is started, so under ota_qemu=1 boot.scr only prints its arming line "    \
        "and systemd's runtime watchdog is off (systemd.watchdog_sec=0); the harness is the "      \
        "watchdog: from that line, a console silent for 4 x its timeout (TCG's slack) before "     \
        "bcm2835_wdt probes, or a kernel panic and then nothing for its timeout, gets a QMP "      \
        "system_reset (U-Boot starts again and counts the boot). virt has no watchdog: the "       \
        "kernel-hang fault is refused there.",                                                     \
        "virt (no Pi model) boots a rootfs device through U-Boot (Debian's qemu_arm64 source, "    \
        "the env in FAT files on the virtio disk's boot partition) with boot.scr's A/B choice, "   \
        "and an app device's kernel directly (no bootloader: its boot time is a goal).",           \
        "Emulated hardware (TCG): timings are not a real board's."
static const char *const qemu_gaps[] = {
    "A power cut keeps every write the guest sent to its disk: it loses RAM and the page cache "
    "only (--mode blocks enumerates the disk's states at each write or flush instead).",
    "QEMU's SD card completes each write whole and in order: no FTL tearing or erase-block "
    "damage of a real card.",
    "Only power-cut and agent-crash faults, at state and fault-point triggers, and kernel-hang "
    "(raspi3b); persistence points and the reorder and torn crash models need the native tier.",
    QEMU_FIDELITY,
    NULL,
};
const char *const otasim_qemu_blocks_gaps[] = {
    "Block-level states are the disk as the log's order leaves it at each crash point: on raspi3b "
    "every write (an SD card has no cache and no flush), on virt every flush; QEMU never tears a "
    "write (the torn and erase-block models, when a run applies them, are models of a real "
    "medium: the next line says which).",
    "Each state is checked on the host (e2fsck's journal replay, e2fsck -fn, debugfs, mtools, "
    "libubootenv) and predicted; only the booted sample ran the agent on it.",
    QEMU_FIDELITY,
    NULL,
};
const char *const *const otasim_target_gaps[OTASIM_TARGET_MAX] = {native_gaps, qemu_gaps};

int otasim_tools_qemu(struct otasim_tools *t, const char *profile, const char *image_dir,
                      struct ota_err *err)
{
    enum otasim_qemu_profile pr = OTASIM_QEMU_RASPI3B;
    const char *e;
    char p[PATH_MAX + 64];

    if (profile && otasim_qemu_profile_parse(profile, &pr) < 0)
        return ota_err_set(err, EINVAL, "unknown QEMU profile '%s' (raspi3b, virt)", profile);
    t->target = OTASIM_TARGET_QEMU;
    t->qemu_profile = pr;
    ota_strlcpy(t->arch, "arm64", sizeof(t->arch));
    if (!t->qemu_timeout_s)
        t->qemu_timeout_s = pr == OTASIM_QEMU_RASPI3B ? 420 : 240;
    e = getenv("OTASIM_APP_DIR_AARCH64");
    snprintf(p, sizeof(p), "%s/build-aarch64/agent/video-app", OTA_SOURCE_DIR);
    ota_strlcpy(t->app_dir, e && *e ? e : p, sizeof(t->app_dir));
    e = getenv("OTASIM_IMAGE_KEYS");
    snprintf(p, sizeof(p), "%s/images/cache/rootfs/keys", OTA_SOURCE_DIR);
    ota_strlcpy(t->key_dir, e && *e ? e : p, sizeof(t->key_dir));
    snprintf(p, sizeof(p), "%s/images/out/latest-empty", OTA_SOURCE_DIR);
    if (!realpath(image_dir ? image_dir : p, t->image_dir))
        return ota_err_set(err, errno, "QEMU image %s: %s (run `make image`)",
                           image_dir ? image_dir : p, strerror(errno));
    snprintf(p, sizeof(p), "%s/video-app", t->app_dir);
    if (access(p, X_OK) < 0)
        return ota_err_set(err, ENOENT, "no aarch64 video-app at %s (run `make image`)", p);
    return 0;
}

int otasim_qemu_supports(const struct otasim_scenario *sc, const struct otasim_fault *f,
                         struct ota_err *err)
{
    const struct otasim_trigger *tg = &f->trigger;

    if (f->kind != OTASIM_FAULT_NONE && f->kind != OTASIM_FAULT_POWER_CUT &&
        f->kind != OTASIM_FAULT_AGENT_CRASH && f->kind != OTASIM_FAULT_KERNEL_HANG)
        return ota_err_set(err, ENOTSUP, "fault %s needs the native tier",
                           otasim_fault_kind_names[f->kind]);
    if (f->kind == OTASIM_FAULT_KERNEL_HANG) {
        char slot;
        int r = otasim_qt_hang_slot(sc, f, &slot, err);
        if (r < 0)
            return r;
    }
    if (sc->watchdog_ms)
        return ota_err_set(err, ENOTSUP,
                           "device.watchdog_ms needs the native tier (QEMU: boot.scr arms 15 s)");
    if (f->kind != OTASIM_FAULT_NONE && f->kind != OTASIM_FAULT_KERNEL_HANG &&
        tg->kind != OTASIM_TRIGGER_STATE && tg->kind != OTASIM_TRIGGER_FAULT_POINT)
        return ota_err_set(err, ENOTSUP, "only state and fault_point triggers on QEMU");
    if (tg->kind == OTASIM_TRIGGER_STATE && tg->nth > 1)
        return ota_err_set(err, ENOTSUP, "state triggers with nth > 1 need the native tier");
    for (size_t i = 0; i < sc->n_rel; i++)
        if (strcmp(sc->rel[i].variant, "unhealthy") == 0)
            return ota_err_set(err, ENOTSUP, "an unhealthy rootfs image needs the native tier");
    if (sc->slot_b_factory)
        return ota_err_set(err, ENOTSUP, "device.slot_b: factory needs the native tier");
    if (sc->clock_rate > 1 || sc->expect.exact_download || sc->expect.min_health_ms)
        return ota_err_set(err, ENOTSUP,
                           "clock_rate, exact_download and min_health_ms need the native tier");
    return 0;
}

int otasim_qt_hang_slot(const struct otasim_scenario *sc, const struct otasim_fault *f,
                        char *ret_slot, struct ota_err *err)
{
    const struct otasim_release *tgt = otasim_scenario_target(sc);
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    const struct otasim_trigger *tg = &f->trigger;

    if (sc->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, ENOTSUP, "kernel-hang: a rootfs scenario (a slot's kernel)");
    /* boot.scr hangs the slot's counted boots (bootcount > 0): from the
     * update's trial reboot on, whatever the trigger before it */
    if (tg->kind != OTASIM_TRIGGER_NONE &&
        !(tg->kind == OTASIM_TRIGGER_STATE && strcmp(tg->state, "REBOOTING") == 0))
        return ota_err_set(err, ENOTSUP,
                           "kernel-hang on QEMU hangs the slot's counted boots (from the trial "
                           "reboot on): no trigger or state REBOOTING");
    if (!f->release[0] || (tgt && strcmp(f->release, tgt->version) == 0)) {
        *ret_slot = 'b';
        return 0;
    }
    if (fac && strcmp(f->release, fac->version) == 0) {
        if (f->count > 0)
            return ota_err_set(err, ENOTSUP,
                               "kernel-hang of the factory release with a count needs the "
                               "native tier (QEMU counts by bootcount)");
        *ret_slot = 'a';
        return 0;
    }
    return ota_err_set(err, ENOTSUP,
                       "kernel-hang: release %s is neither the factory nor the target", f->release);
}

/* "ota.env=... ota.conf=..." for a boot; fault NULL: no fault armed. */
void otasim_qt_kernel_args(const struct otasim_trial *tr, const struct otasim_fault *fault,
                           char *buf, size_t cap)
{
    const struct otasim_scenario *sc = tr->sc;
    size_t n = 0;

#define ADD(...) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__)
    ADD("ota.conf=agent.device_id=%s ota.conf=agent.enroll_token=%s "
        "ota.conf=agent.device_type=%s ota.conf=agent.source=%s ota.app_env=VIDEO_APP_BIND=0.0.0.0",
        tr->device_id, tr->srv->enroll_token, sc->device_type, sc->source);
    if (strcmp(sc->source, "github") == 0)
        ADD(" ota.conf=agent.repo=sim/video-app");
    if (sc->blue_green) /* the rollout's filter (bluegreen.c) */
        ADD(" ota.conf=agent.group=%s", tr->device_id);
    ADD(" ota.conf=health.window=%d ota.conf=health.interval_ms=%d",
        (sc->health_window_ms + 999) / 1000, sc->health_interval_ms);
    if (sc->profile == OTASIM_PROFILE_ROOTFS)
        ADD(" ota.conf=rootfs.version=%s", otasim_scenario_factory(sc)->version);
    if (fault && fault->kind != OTASIM_FAULT_NONE) {
        if (fault->trigger.kind == OTASIM_TRIGGER_STATE)
            ADD(" ota.env=OTA_FAULT_POINT=state.%s", fault->trigger.state);
        else
            ADD(" ota.env=OTA_FAULT_POINT=%s", fault->trigger.fault_point);
        if (fault->kind == OTASIM_FAULT_POWER_CUT)
            ADD(" ota.env=OTA_FAULT_POINT_MODE=stop");
    }
    if (getenv("OTASIM_QEMU_KARGS")) /* debugging: e.g. systemd.log_level=debug */
        ADD(" %s", getenv("OTASIM_QEMU_KARGS"));
#undef ADD
}

/* Runs a host tool (stderr to log, if any); an exit status above max_ok
 * fails with the command named. */
static int run_tool(const char *log, const char *const *argv, char **ret, int max_ok,
                    struct ota_err *err)
{
    int st = 0;
    int r;

    if ((r = otasim_run(argv, NULL, 120000, ret, log, &st, err)) < 0)
        return r;
    if (st > max_ok) {
        if (ret) {
            free(*ret);
            *ret = NULL;
        }
        return ota_err_set(err, EIO, "%s %s %s: exit %d", argv[0], argv[1], argv[2] ? argv[2] : "",
                           st);
    }
    return 0;
}

/* What the next mount would do first: replay the ext4 journal (debugfs
 * reads only what was checkpointed; an fsynced file may be in the journal
 * alone when the power goes). e2fsck: 1 replayed, 2 would reboot, 4+ errors. */
static int replay_journal(struct otasim_qemu *q, const char *image, struct ota_err *err)
{
    const char *argv[] = {"e2fsck", "-y", "-E", "journal_only", image, NULL};
    char log[PATH_MAX + 32];

    snprintf(log, sizeof(log), "%s/tools.log", q->dir);
    return run_tool(log, argv, NULL, 3, err);
}

static int debugfs(struct otasim_qemu *q, const char *req, const char *image, char **ret,
                   struct ota_err *err)
{
    const char *argv[] = {"debugfs", "-R", req, image, NULL};
    char log[PATH_MAX + 32];

    snprintf(log, sizeof(log), "%s/tools.log", q->dir);
    return run_tool(log, argv, ret, 0, err);
}

/* /etc/ota-release of a root partition image: "version=V" -> V. */
static void slot_version(struct otasim_qemu *q, const char *image, char *buf, size_t cap)
{
    char *text = NULL, *v;

    buf[0] = '\0';
    if (debugfs(q, "cat /etc/ota-release", image, &text, NULL) == 0 && text &&
        strncmp(text, "version=", 8) == 0) {
        v = text + 8;
        v[strcspn(v, "\n")] = '\0';
        ota_strlcpy(buf, v, cap);
    }
    free(text);
}

static int debugfs_w(const char *part, const char *req, struct ota_err *err)
{
    const char *argv[] = {"debugfs", "-w", "-R", req, part, NULL};

    return run_tool(NULL, argv, NULL, 0, err);
}

/* The overlay's rootA before the first boot: for a rootfs scenario the
 * factory image says what it is (/etc/ota-release); with --guest-agent the
 * agent under test replaces the image's /usr/bin/ota-agent. */
int otasim_qt_provision(struct otasim_qemu *q, const char *version, const char *agent,
                        struct ota_err *err)
{
    char part[PATH_MAX + 32], marker[PATH_MAX + 32], req[PATH_MAX + 64], text[64];
    int r = -EIO;

    snprintf(part, sizeof(part), "%s/rootA.ext4", q->dir);
    if ((r = otasim_qemu_part_read(q, OTASIM_QPART_ROOTA, part, err)) < 0)
        return r;
    if (version) {
        snprintf(marker, sizeof(marker), "%s/ota-release", q->dir);
        snprintf(text, sizeof(text), "version=%s\n", version);
        snprintf(req, sizeof(req), "write %s /etc/ota-release", marker);
        if (ota_fs_write_atomic(marker, text, strlen(text), 0644, err) < 0 ||
            debugfs_w(part, req, err) < 0)
            goto out;
    }
    if (agent) {
        snprintf(req, sizeof(req), "write %s /usr/bin/ota-agent", agent);
        if (debugfs_w(part, "rm /usr/bin/ota-agent", err) < 0 || debugfs_w(part, req, err) < 0 ||
            debugfs_w(part, "sif /usr/bin/ota-agent mode 0100755", err) < 0)
            goto out;
    }
    r = otasim_qemu_part_write(q, OTASIM_QPART_ROOTA, part, err);
out:
    unlink(part);
    return r;
}

static void add_state_line(struct otasim_trial *tr, struct otasim_qt_watch *w, const char *json)
{
    size_t n = strlen(json);

    if (strcmp(json, w->last) == 0) /* journald and the console may both pass it on */
        return;
    ota_strlcpy(w->last, json, sizeof(w->last));
    if (w->sl_len + n + 2 > w->sl_cap) {
        size_t cap = (w->sl_cap + n + 2) * 2;
        char *p = realloc(tr->state_lines, cap);
        if (!p)
            return;
        tr->state_lines = p;
        w->sl_cap = cap;
    }
    memcpy(tr->state_lines + w->sl_len, json, n);
    w->sl_len += n;
    tr->state_lines[w->sl_len++] = '\n';
    tr->state_lines[w->sl_len] = '\0';
}

/* ---- The harness watchdog --------------------------------------------------
 * The Pi's watchdog where QEMU's model does not count (hw/misc/
 * bcm2835_powermgt.c keeps WDOG as written and resets the moment RSTC's
 * full-reset bit is set): boot.scr, under ota_qemu=1, prints the arming line
 * and writes nothing (images/boot.cmd). From that line on the harness counts
 * for it: a console silent for 4 x the timeout (TCG's slack, below) before
 * bcm2835_wdt has probed (on a Pi the driver finds it running and the kernel
 * feeds it from then on), or a kernel panic followed by nothing for the
 * timeout (a panicking kernel feeds nothing), gets a QMP system_reset: U-Boot
 * starts again, as after a real watchdog reset, and boot.scr counts the boot.
 * A real watchdog counts from its arming whatever the console says; under TCG
 * the kernel needs 15 s and more to load bcm2835_wdt, which that would not
 * allow, hence silence.
 * With no arming line (ota_watchdog=0) nothing resets a panicked kernel
 * whose panic=0 keeps it there: the device is hung, and the trial ends so. */
#define WDT_ARMED_LINE  "OTA-UBOOT: watchdog armed: "
#define WDT_DRIVER_LINE "Broadcom BCM2835 watchdog timer"
#define PANIC_LINE      "Kernel panic - not syncing"
#define HANG_LINE       "OTA-BOOT: ota.test=hang" /* images/initramfs/init */
#define HUNG_S          15 /* a panic and nothing since, no watchdog: hung (panic=1 resets in 1 s) */
/* TCG's slack for silence: on a loaded host the kernel's first line came more
 * than 15 s after U-Boot's "Starting kernel" (a healthy boot reset by a
 * watchdog counting silence by the Pi's 15 s) */
#define WDT_SILENCE_X 4

static void watchdog_line(struct otasim_qt_watch *w, const char *line)
{
    const char *s;

    w->last_ms = otasim_now_ms();
    if (strstr(line, "U-Boot 20")) { /* U-Boot's banner: a new boot */
        w->wdt_s = 0;
        w->wdt_fed = 0;
        w->panic_ms = 0;
    } else if (strstr(line, "Booting Linux on physical CPU")) { /* virt: a reset starts here */
        w->panic_ms = 0;
    } else if ((s = strstr(line, WDT_ARMED_LINE))) {
        w->wdt_s = atoi(s + strlen(WDT_ARMED_LINE));
        if (w->wdt_s <= 0 || w->wdt_s > 16)
            w->wdt_s = 15; /* the most the PM block counts */
    } else if (strstr(line, WDT_DRIVER_LINE)) {
        w->wdt_fed = 1;
    } else if (strstr(line, PANIC_LINE) && !w->panic_ms) {
        w->panic_ms = w->last_ms;
    }
}

static void watchdog_note(struct otasim_trial *tr, struct otasim_qemu *q, struct otasim_qt_watch *w,
                          const char *text)
{
    FILE *f;

    if (!w->wdt_log[0]) {
        size_t n = strlen(tr->logs);
        snprintf(w->wdt_log, sizeof(w->wdt_log), "%s/watchdog.log", q->dir);
        if (n + strlen(w->wdt_log) + 2 < sizeof(tr->logs))
            snprintf(tr->logs + n, sizeof(tr->logs) - n, "%s\n", w->wdt_log);
    }
    if ((f = fopen(w->wdt_log, "ae"))) {
        fprintf(f, "power-on %d, +%.1f s: %s\n", q->starts,
                (double)(otasim_now_ms() - q->started_ms) / 1000.0, text);
        fclose(f);
    }
}

/* 1 when the device hung (settle->why says so), 2 when it was reset, 0 on,
 * < 0 a harness error. */
static int watchdog_tick(struct otasim_trial *tr, struct otasim_qemu *q, struct otasim_qt_watch *w,
                         struct otasim_settle *settle, struct ota_err *err)
{
    int64_t now = otasim_now_ms();
    char text[200];
    int r;

    if (w->wdt_s > 0) {
        int64_t t = (int64_t)w->wdt_s * 1000;
        const char *why = NULL;
        if (w->panic_ms && now - w->panic_ms >= t)
            why = "a kernel panic, then nothing";
        else if (!w->wdt_fed && !w->panic_ms && now - w->last_ms >= t * WDT_SILENCE_X)
            why = "the console silent before bcm2835_wdt took the watchdog over";
        if (!why)
            return 0;
        snprintf(text, sizeof(text), "watchdog (%d s) fired: %s; QMP system_reset", w->wdt_s, why);
        watchdog_note(tr, q, w, text);
        if ((r = otasim_qemu_reset(q, err)) < 0)
            return r;
        w->wdt_resets++;
        w->wdt_s = 0;
        w->wdt_fed = 0;
        w->panic_ms = 0;
        w->last_ms = now;
        return 2;
    }
    if (!w->panic_ms || now - w->panic_ms < (int64_t)HUNG_S * 1000)
        return 0;
    snprintf(settle->why, sizeof(settle->why),
             "the device hangs: a kernel panic and nothing for %d s since, with no watchdog armed "
             "(no \"%.26s\" line in that boot): nothing would reset it",
             HUNG_S, WDT_ARMED_LINE);
    watchdog_note(tr, q, w, settle->why);
    w->hung = 1;
    return 1;
}

/* One console line; returns 1 when it was the fault point firing. */
int otasim_qt_on_line(struct otasim_trial *tr, struct otasim_device *d, struct otasim_qt_watch *w,
                      const char *line)
{
    const char *s;

    watchdog_line(w, line);
    if ((s = strstr(line, "OTA-STATE {"))) {
        json_t *o = NULL;
        const char *to, *st;
        add_state_line(tr, w, s + 10);
        if (w->fired && !w->back_ms)
            w->back_ms = otasim_now_ms();
        if (ota_json_parse(s + 10, strlen(s + 10), &o, NULL) == 0) {
            to = json_string_value(json_object_get(o, "to"));
            st = json_string_value(json_object_get(o, "status"));
            if (to && strcmp(to, "HEALTH_CHECK") == 0)
                d->health_enter_ms = otasim_now_ms();
            if (to && strcmp(to, "COMMITTING") == 0)
                d->commit_enter_ms = otasim_now_ms();
            if (to && st && strcmp(to, "IDLE") == 0 &&
                (strcmp(st, "success") == 0 || strcmp(st, "failure") == 0 || w->idle_ends)) {
                w->final = 1;
                ota_strlcpy(w->status, st, sizeof(w->status));
            }
            json_decref(o);
        }
        return 0;
    }
    if (strstr(line, "ota-fault-point: "))
        return 1;
    if (strstr(line, OTA_RECOVERY_LINE)) { /* both slots failed (ota/abboot.h) */
        w->recovery = 1;
        w->booted_slot = -1;
        return 0;
    }
    if (strstr(line, HANG_LINE)) { /* boot.scr's ota_fault_hang: this boot hangs */
        w->hangs++;
        w->boot_fails++;
        w->booted_slot = -1;
        return tr->fault.kind == OTASIM_FAULT_KERNEL_HANG;
    }
    if ((s = strstr(line, "Kernel command line:"))) {
        const char *sl = strstr(s, "ota.slot=");
        w->boots++;
        w->booted_slot = sl && sl[9] == 'b' ? 1 : 0;
    } else if (strstr(line, "OTA-BOOT-FAIL")) {
        w->boot_fails++;
        w->booted_slot = -1;
    } else if (strstr(line, "falling back")) {
        w->fell_back = 1;
    }
    return 0;
}

int otasim_qt_start(struct otasim_qemu *q, struct otasim_trial *tr, const char *args,
                    struct ota_err *err)
{
    size_t n = strlen(tr->logs);
    int r;

    if ((r = otasim_qemu_start(q, args, err)) < 0)
        return r;
    if (n + strlen(q->log) + 2 < sizeof(tr->logs))
        snprintf(tr->logs + n, sizeof(tr->logs) - n, "%s\n", q->log);
    return 0;
}

static int has_final_report(const struct otasim_trial *tr)
{
    char path[256], *text = NULL;
    int found;

    snprintf(path, sizeof(path), "/api/v1/reports?device=%s&limit=1000", tr->device_id);
    if (otasim_server_get(tr->srv, path, &text, NULL) < 0)
        return 0;
    found = strstr(text, "\"success\"") || strstr(text, "\"failure\"");
    free(text);
    return found;
}

/* The app through the host forward: /health status and /version. */
static void probe_app(struct otasim_device *d)
{
    int64_t end = otasim_now_ms() + APP_WAIT_MS;
    long hs = 0;
    char *body = NULL;

    /* a restarted app (rollback, reboot) takes seconds to listen under TCG */
    do {
        free(body);
        body = NULL;
        if (otasim_device_app_get(d, "/health", &hs, &body, NULL) == 0)
            d->probe_health = (int)hs;
        if (d->probe_health != 200)
            usleep(250000);
    } while (d->probe_health != 200 && otasim_now_ms() < end);
    free(body);
    body = NULL;
    if (otasim_device_app_get(d, "/version", &hs, &body, NULL) == 0 && hs == 200) {
        json_t *o = NULL;
        if (ota_json_parse(body, strlen(body), &o, NULL) == 0) {
            const char *v = json_string_value(json_object_get(o, "version"));
            ota_strlcpy(d->probe_version, v ? v : "", sizeof(d->probe_version));
            json_decref(o);
        }
    }
    free(body);
}

/* The disk, read off the overlay into d->root the way the native tree is
 * laid out, and a host config for `ota-agent status` over it. */
/* A partition copy that is read and removed (the data partition; an app
 * device's rootA): in RAM when there is /dev/shm. e2fsck's journal replay
 * fsyncs its image, which on a disk writes the whole fresh copy out: about a
 * second of every trial in the work dir on this machine's disk. */
static void scratch_copy(const struct otasim_qemu *q, const char *name, char *buf, size_t cap)
{
    if (access("/dev/shm", W_OK) == 0)
        snprintf(buf, cap, "/dev/shm/otasim-qt-%d-%s", (int)getpid(), name);
    else
        snprintf(buf, cap, "%s/%s", q->dir, name);
}

static int read_disk(const struct otasim_tools *t, struct otasim_qemu *q, struct otasim_device *d,
                     struct ota_err *err)
{
    const struct otasim_scenario *sc = d->tr->sc;
    char p[PATH_MAX + 64], img[PATH_MAX + 64], env[PATH_MAX + 64], conf[4096], req[PATH_MAX + 96];
    char part[2][PATH_MAX + 64];
    static const char *const dirs[] = {"opt", "var/lib/ota", "boot", "etc", "disks", "run", ".sim"};
    int rootfs = sc->profile == OTASIM_PROFILE_ROOTFS;
    int r;

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", d->root, dirs[i]);
        if ((r = ota_fs_mkdirs(p, err)) < 0)
            return r;
    }
    scratch_copy(q, "data.ext4", img, sizeof(img));
    snprintf(req, sizeof(req), "rdump / %s/var/lib/ota", d->root);
    if ((r = otasim_qemu_part_read(q, OTASIM_QPART_DATA, img, err)) == 0 &&
        (r = replay_journal(q, img, err)) == 0)
        r = debugfs(q, req, img, NULL, err);
    unlink(img);
    if (r < 0)
        return r;
    snprintf(p, sizeof(p), "%s/var/lib/ota/lost+found", d->root);
    ota_ignore(ota_fs_remove_tree(p, NULL));
    for (int s = 0; s < 2; s++) {
        snprintf(d->part[s], sizeof(d->part[s]), "%s/disks/root%c", d->root, "AB"[s]);
        /* a rootfs device's slots stay in its tree for the invariants; an
         * app device's rootA (256 MiB) is read for its app tree alone */
        if (rootfs)
            ota_strlcpy(part[s], d->part[s], sizeof(part[s]));
        else if (s == 1)
            continue;
        else
            scratch_copy(q, "rootA", part[s], sizeof(part[s]));
        if ((r = otasim_qemu_part_read(q, s ? OTASIM_QPART_ROOTB : OTASIM_QPART_ROOTA, part[s],
                                       err)) < 0)
            break;
        /* rootB of a failed install may hold no file system at all */
        r = replay_journal(q, part[s], s == 0 ? err : NULL);
        if (r < 0 && s == 0)
            break;
        r = 0;
        if (rootfs)
            slot_version(q, part[s], d->slot_version[s], sizeof(d->slot_version[s]));
    }
    snprintf(req, sizeof(req), "rdump /opt/app %s/opt", d->root);
    if (r == 0)
        r = debugfs(q, req, part[0], NULL, err);
    if (!rootfs)
        unlink(part[0]);
    if (r < 0)
        return r;
    snprintf(env, sizeof(env), "%s/boot/uboot.env", d->root);
    snprintf(d->env_config, sizeof(d->env_config), "%s/boot/fw_env.config", d->root);
    if ((r = otasim_qemu_env_fetch(q, env, d->env_config, err)) < 0)
        return r;
    snprintf(p, sizeof(p), "%s/run/booted", d->root);
    snprintf(req, sizeof(req), "ota.slot=%c\n", d->booted_slot == 1 ? 'b' : 'a');
    if ((r = ota_fs_write_atomic(p, req, strlen(req), 0644, err)) < 0)
        return r;
    snprintf(conf, sizeof(conf),
             "[agent]\nsource = %s\nserver = http://127.0.0.1:9\nrepo = sim/video-app\n"
             "device_id = %s\ndevice_type = %s\npublic_key = %s/release-key.pub\n"
             "database = %s/var/lib/ota/agent.db\n[app]\nroot = %s/opt/app\n"
             "[download]\ndir = %s/var/lib/ota/download\n"
             "[rootfs]\nenv_config = %s\ndevice_a = %s\ndevice_b = %s\nbooted_file = %s\n"
             "version = %s\n",
             sc->source, d->tr->device_id, sc->device_type, t->key_dir, d->root, d->root, d->root,
             d->env_config, d->part[0], d->part[1], p, otasim_scenario_factory(sc)->version);
    return ota_fs_write_atomic(d->config, conf, strlen(conf), 0644, err);
}

/* ---- snapshot mode --------------------------------------------------------
 * One recording run per scenario (WORK/qemu-snap/<key>/, built by the first
 * trial that needs it, under a lock): no fault; at the agent's first line
 * into each state the machine is paused, its disk frozen
 * (otasim_qemu_disk_snapshot: the file written so far becomes read-only,
 * QEMU goes on in a new overlay) and the scenario server's state copied beside
 * it (sqlite3 .backup, payloads hard-linked), then resumed. A power cut at
 * state X is then a boot from an overlay over X's frozen disk, against a
 * server started from X's copy: the first boot and the update up to X are
 * not run again. A power cut drops the RAM, so the disk is the whole state;
 * the RAM image of savevm would add nothing to these trials. The device id
 * is the recording's (the agent's database registered it). */

static void snap_dir(const struct otasim_tools *t, const struct otasim_trial *tr, char *buf,
                     size_t cap)
{
    uint32_t h;
    char key[PATH_MAX * 3];

    char work[PATH_MAX];

    snprintf(key, sizeof(key), "%s|%s|%s|%d", tr->sc->path, t->image_dir, t->guest_agent,
             t->qemu_profile);
    h = otasim_hash32(key);
    /* absolute: the frozen layers name each other as backing files */
    if (!realpath(t->work, work))
        ota_strlcpy(work, t->work, sizeof(work));
    snprintf(buf, cap, "%s/qemu-snap/%s-%08x", work, tr->sc->name, h);
}

/* The scenario's releases on a server of our own. */
static int snap_server(const struct otasim_tools *t, const struct otasim_trial *tr, const char *dir,
                       struct otasim_server *srv, struct ota_err *err)
{
    int r;

    if ((r = otasim_server_start(t, dir, srv, err)) < 0)
        return r;
    for (size_t i = 0; i < tr->sc->n_rel; i++) {
        char out[PATH_MAX + 8];
        if (tr->sc->rel[i].factory)
            continue;
        snprintf(out, sizeof(out), "%s/out", tr->built[i].dir);
        if ((r = otasim_server_add_release(t, srv, out, NULL, tr->sc->rel[i].publish, err)) < 0)
            return r;
    }
    return 0;
}

/* The server of srv_dir as it is now, into dst (a server dir). */
static int copy_server(const char *srv_dir, const char *dst, struct ota_err *err)
{
    char db[PATH_MAX + 16], cmd[PATH_MAX + 32], data[PATH_MAX + 16], ddata[PATH_MAX + 16];
    int r;

    snprintf(db, sizeof(db), "%s/server.db", srv_dir);
    snprintf(cmd, sizeof(cmd), ".backup %s/server.db", dst);
    snprintf(data, sizeof(data), "%s/data", srv_dir);
    snprintf(ddata, sizeof(ddata), "%s/data", dst);
    const char *backup[] = {"sqlite3", db, cmd, NULL};
    const char *link[] = {"cp", "-al", data, ddata, NULL};
    if ((r = ota_fs_mkdirs(dst, err)) < 0 || (r = run_tool(NULL, backup, NULL, 0, err)) < 0 ||
        (r = run_tool(NULL, link, NULL, 0, err)) < 0)
        return r;
    return 0;
}

static int snap_record(const struct otasim_tools *t, struct otasim_trial *tr, const char *sdir,
                       struct ota_err *err)
{
    struct otasim_trial rec = *tr;
    struct otasim_server srv;
    struct otasim_qemu_image im;
    struct otasim_qemu q;
    struct otasim_device d;
    struct otasim_qt_watch w = {0};
    char p[PATH_MAX + 64], layer[PATH_MAX + 64], active[PATH_MAX + 64], args[2048], line[4096];
    char done[64] = " ";
    int64_t deadline;
    int r = -EIO, n_layers = 0, srv_up = 0;

    memset(&q, 0, sizeof(q));
    q.log_fd = -1;
    memset(&d, 0, sizeof(d));
    rec.state_lines = NULL;
    rec.logs[0] = '\0';
    snprintf(rec.device_id, sizeof(rec.device_id), "snap-%s", strrchr(sdir, '-') + 1);
    snprintf(p, sizeof(p), "%s/server", sdir);
    if (ota_fs_remove_tree(sdir, err) < 0 || snap_server(t, tr, p, &srv, err) < 0)
        goto out;
    srv_up = 1;
    snprintf(p, sizeof(p), "%s/device_id", sdir);
    if (ota_fs_write_atomic(p, rec.device_id, strlen(rec.device_id), 0644, err) < 0)
        goto out;
    rec.srv = &srv;
    snprintf(p, sizeof(p), "%s/rec", sdir);
    if (otasim_qemu_image_open(t->image_dir, &im, err) < 0 ||
        otasim_qemu_init(&q, (enum otasim_qemu_profile)t->qemu_profile, &im, p, NULL, srv.port,
                         err) < 0)
        goto out;
    q.uboot = tr->sc->profile == OTASIM_PROFILE_ROOTFS; /* virt: U-Boot's A/B choice */
    q.cpus = 1; /* a background job beside the trials (snap_prepare): one vCPU */
    if ((tr->sc->profile == OTASIM_PROFILE_ROOTFS || t->guest_agent[0]) &&
        otasim_qt_provision(&q,
                            tr->sc->profile == OTASIM_PROFILE_ROOTFS
                                ? otasim_scenario_factory(tr->sc)->version
                                : NULL,
                            t->guest_agent[0] ? t->guest_agent : NULL, err) < 0)
        goto out;
    otasim_qt_kernel_args(&rec, NULL, args, sizeof(args));
    if (otasim_qt_start(&q, &rec, args, err) < 0)
        goto out;
    ota_strlcpy(active, q.overlay, sizeof(active));
    deadline = otasim_now_ms() + (int64_t)t->qemu_timeout_s * 1000;
    while (!w.final) {
        const char *to;
        char state[32];
        int n = otasim_qemu_line(&q, 500, line, sizeof(line));
        if (n < 0 || otasim_now_ms() > deadline) {
            r = ota_err_set(err, EIO, "snapshot recording: %s (see %s)",
                            n < 0 ? "QEMU stopped" : "no final state line", q.log);
            goto out;
        }
        if (n == 0)
            continue;
        otasim_qt_on_line(&rec, &d, &w, line);
        if (!strstr(line, "OTA-STATE {") || !(to = strstr(line, "\"to\":\"")))
            continue;
        snprintf(state, sizeof(state), "%.*s", (int)strcspn(to + 6, "\""), to + 6);
        snprintf(p, sizeof(p), " %s ", state);
        if (strcmp(state, "IDLE") == 0 || strstr(done, p))
            continue;
        /* the first entry into this state: freeze the disk and the server */
        snprintf(layer, sizeof(layer), "%s/rec/layer-%d.qcow2", sdir, ++n_layers);
        if (otasim_qemu_pause(&q, err) < 0 || otasim_qemu_disk_snapshot(&q, layer, err) < 0)
            goto out;
        snprintf(p, sizeof(p), "%s/state-%s", sdir, state);
        if (copy_server(srv.dir, p, err) < 0)
            goto out;
        snprintf(p, sizeof(p), "%s/state-%s/disk", sdir, state);
        if (ota_fs_write_atomic(p, active, strlen(active), 0644, err) < 0 ||
            otasim_qemu_resume(&q, err) < 0)
            goto out;
        ota_strlcpy(active, layer, sizeof(active));
        if (strlen(done) + strlen(state) + 2 < sizeof(done))
            strcat(strcat(done, state), " ");
    }
    snprintf(p, sizeof(p), "%s/done", sdir);
    r = ota_fs_write_atomic(p, "", 0, 0644, err);
out:
    otasim_qemu_close(&q);
    if (srv_up)
        otasim_server_stop(&srv);
    free(rec.state_lines);
    return r;
}

/* The recording this trial process started in the background (a child that
 * holds the recording's lock): reaped before the trial ends, so the run does
 * not end under it. */
static pid_t snap_recorder;

static void snap_reap(void)
{
    while (snap_recorder > 0 && waitpid(snap_recorder, NULL, 0) < 0 && errno == EINTR)
        ;
    snap_recorder = 0;
}

/* The frozen disk and server copy of the trial's state (recorded first if
 * need be); *ret_fired 0 if the recording never entered that state. The
 * recording runs in a child process that holds the lock until it is done.
 * Every trial, the one that started it too, goes on as soon as its own
 * state is frozen (its disk file is written last), so -j workers do not wait
 * for the whole update. A recording that failed in the background is run
 * again in the foreground, for its error. */
static int snap_prepare(const struct otasim_tools *t, struct otasim_trial *tr, char *disk,
                        char *srv_copy, size_t cap, int *ret_fired, struct ota_err *err)
{
    char sdir[PATH_MAX], p[PATH_MAX + 64], lock[PATH_MAX + 16], done[PATH_MAX + 16];
    char frozen[PATH_MAX + 80], *text = NULL;
    size_t n;
    int fd = -1, r = 0, background = 0;

    snap_dir(t, tr, sdir, sizeof(sdir));
    snprintf(lock, sizeof(lock), "%s.lock", sdir);
    snprintf(done, sizeof(done), "%s/done", sdir);
    if ((r = ota_fs_mkdirs(t->work, err)) < 0)
        return r;
    {
        char parent[PATH_MAX];
        ota_strlcpy(parent, sdir, sizeof(parent));
        *strrchr(parent, '/') = '\0';
        if ((r = ota_fs_mkdirs(parent, err)) < 0)
            return r;
    }
    snprintf(srv_copy, cap, "%s/state-%s", sdir, tr->fault.trigger.state);
    snprintf(frozen, sizeof(frozen), "%s/disk", srv_copy); /* the state's frozen layer */
    for (;;) {
        if (fd < 0 && (fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
            r = ota_err_set(err, errno, "%s: %s", lock, strerror(errno));
            goto out;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) { /* no recording under way */
            pid_t pid;
            if (access(done, F_OK) == 0)
                break;
            if (background) { /* ours failed: again here, for its error */
                if ((r = snap_record(t, tr, sdir, err)) < 0)
                    goto out;
                break;
            }
            background = 1;
            fflush(NULL);
            if ((pid = fork()) < 0) {
                r = ota_err_set(err, errno, "fork: %s", strerror(errno));
                goto out;
            }
            if (pid == 0) /* the lock is the open file's: held until this exits */
                _exit(snap_record(t, tr, sdir, err) < 0 ? 1 : 0);
            snap_recorder = pid;
            close(fd); /* a file of our own: the child's lock holds against it */
            fd = -1;
            continue;
        }
        if (errno != EWOULDBLOCK) {
            r = ota_err_set(err, errno, "%s: %s", lock, strerror(errno));
            goto out;
        }
        if (access(frozen, F_OK) == 0)
            break; /* frozen by the recording under way */
        usleep(50000);
    }
    snprintf(p, sizeof(p), "%s/device_id", sdir);
    if ((r = ota_fs_read_all(p, 95, &text, &n, err)) < 0)
        goto out;
    snprintf(tr->device_id, sizeof(tr->device_id), "%.*s", (int)n, text);
    free(text);
    text = NULL;
    *ret_fired = access(frozen, F_OK) == 0;
    if (*ret_fired && (r = ota_fs_read_all(frozen, PATH_MAX, &text, &n, err)) == 0)
        snprintf(disk, cap, "%.*s", (int)n, text);
out:
    free(text);
    if (fd >= 0)
        close(fd);
    return r;
}

/* --snapshot: the power cut happened in the recording; the trial boots the
 * disk it froze, served by a copy of the recording's server. 1: the
 * recording never got there (tr holds the failed verdict); 0 go on. */
static int snap_boot(const struct otasim_tools *t, struct otasim_trial *tr, char *frozen,
                     struct otasim_server *own, struct otasim_qt_watch *w, struct ota_err *err)
{
    char state[PATH_MAX], p[PATH_MAX + 16], db_src[PATH_MAX + 16], db_dst[PATH_MAX + 32];
    int r, fired = 0;

    if ((r = snap_prepare(t, tr, frozen, state, sizeof(state), &fired, err)) < 0)
        return r;
    if (!fired) {
        tr->outcome = OTASIM_FAIL;
        tr->n_checks = 1;
        ota_strlcpy(tr->checks[0].name, "fault-fired", sizeof(tr->checks[0].name));
        snprintf(tr->checks[0].detail, sizeof(tr->checks[0].detail),
                 "the recording never entered %s", tr->fault.trigger.state);
        snprintf(tr->detail, sizeof(tr->detail), "fault-fired: %s", tr->checks[0].detail);
        return 1;
    }
    snprintf(p, sizeof(p), "%s/server", tr->dir);
    /* payloads hard-linked; the database a copy of its own: the trial's
     * server writes to it, and the recording serves the next runs */
    snprintf(db_src, sizeof(db_src), "%s/server.db", state);
    snprintf(db_dst, sizeof(db_dst), "%s/server.db", p);
    const char *cp[] = {"cp", "-al", state, p, NULL};
    const char *cpdb[] = {"cp", "--remove-destination", db_src, db_dst, NULL};
    if ((r = run_tool(NULL, cp, NULL, 0, err)) < 0 ||
        (r = run_tool(NULL, cpdb, NULL, 0, err)) < 0 ||
        (r = otasim_server_start(t, p, own, err)) < 0)
        return r;
    tr->srv = own;
    w->fired = 1;
    w->fault_ms = otasim_now_ms();
    return 0;
}

/* Follows the console until the agent's final state line, power-cycling the
 * machine when a power cut fires; settle->why when the timeout came first. */
int otasim_qt_follow(const struct otasim_tools *t, struct otasim_trial *tr, struct otasim_qemu *q,
                     struct otasim_device *d, struct otasim_qt_watch *w, char *args, size_t cap,
                     struct otasim_settle *settle, struct ota_err *err)
{
    char line[4096];
    int64_t deadline = otasim_now_ms() + (int64_t)t->qemu_timeout_s * 1000;
    int r;

    while (!w->final) {
        int n = otasim_qemu_line(q, 500, line, sizeof(line)), activated = 0;
        if (n < 0)
            return ota_err_set(err, EIO, "QEMU stopped by itself (see %s)", q->log);
        if (n > 0) /* this power-on's start on the wall clock, as the server's */
            otasim_qenv_line(&w->env, q->starts,
                             otasim_wall_ms() - (otasim_now_ms() - q->started_ms), line);
        if (n == 0 && (r = otasim_bluegreen_poll(tr, &activated, err)) < 0)
            return r; /* blue_green: the operator's activation, once the device waits */
        if (otasim_now_ms() > deadline) {
            ota_strlcpy(settle->why, "no final state line before the timeout", sizeof(settle->why));
            break;
        }
        if (n == 0) {
            if ((r = watchdog_tick(tr, q, w, settle, err)) < 0)
                return r;
            if (r == 1)
                break;  /* hung: nothing more will come */
            if (r == 2) /* a reset: a new boot, with the time a power-on has */
                deadline = otasim_now_ms() + (int64_t)t->qemu_timeout_s * 1000;
            continue;
        }
        int fault = otasim_qt_on_line(tr, d, w, line);
        if (w->recovery) { /* boot.scr's recovery mode: the device waits for a reflash */
            snprintf(settle->why, sizeof(settle->why), "recovery mode: %.200s", line);
            break;
        }
        if (!fault || w->fired)
            continue;
        w->fired = 1;
        w->fault_ms = otasim_now_ms();
        if (tr->fault.kind != OTASIM_FAULT_POWER_CUT)
            continue; /* the agent killed itself; the timer runs it again */
        otasim_qemu_kill(q);
        if (q->starts >= MAX_STARTS)
            return ota_err_set(err, EIO, "%d power cycles and no end", q->starts);
        otasim_qt_kernel_args(tr, NULL, args, cap);
        w->wdt_s = 0; /* a power cut: whatever was armed is off */
        w->panic_ms = 0;
        if ((r = otasim_qt_start(q, tr, args, err)) < 0)
            return r;
        deadline = otasim_now_ms() + (int64_t)t->qemu_timeout_s * 1000;
    }
    return 0;
}

/* After the run: the settle record, the app's answers, the disk read back
 * into d for the invariants. */
int otasim_qt_settle_and_read(const struct otasim_tools *t, struct otasim_trial *tr,
                              struct otasim_qemu *q, struct otasim_device *d,
                              const struct otasim_qt_watch *w, struct otasim_settle *settle,
                              struct ota_err *err)
{
    int r;

    tr->fired = w->fired;
    if (w->final) {
        int64_t end = otasim_now_ms() + REPORT_WAIT_MS;
        settle->settled = 1;
        while (strcmp(tr->sc->source, "fleet") == 0 && !has_final_report(tr) &&
               otasim_now_ms() < end)
            usleep(200000);
        /* from the agent's first line after the fault: the boot is not the
         * agent's to shorten (and takes 10-60 s under TCG) */
        settle->recover_ms =
            w->fired ? otasim_now_ms() - (w->back_ms ? w->back_ms : w->fault_ms) : 0;
    }
    d->app_port = q->app_port;
    probe_app(d);
    otasim_qemu_kill(q); /* the agent is idle: its last write was synced */
    d->booted_slot = w->booted_slot;
    d->boot_failed = w->booted_slot < 0;
    d->hung = w->hung;
    d->recovery = w->recovery;
    d->watchdog_resets = w->wdt_resets;
    if (w->hangs > 0) { /* the version of the slot boot.scr hung */
        char slot = 'b';
        const struct otasim_release *rel = otasim_scenario_target(tr->sc);
        if (otasim_qt_hang_slot(tr->sc, &tr->fault, &slot, NULL) == 0 && slot == 'a')
            rel = otasim_scenario_factory(tr->sc);
        ota_strlcpy(d->hung_version, rel ? rel->version : "", sizeof(d->hung_version));
    }
    if ((r = read_disk(t, q, d, err)) < 0)
        return r;
    if (d->booted_slot >= 0)
        ota_strlcpy(d->booted_version, d->slot_version[d->booted_slot], sizeof(d->booted_version));
    return 0;
}

/* A failed attempt whose guest said its network never came up: environment,
 * unless the server heard from the device after that power-on began. */
static void judge_network(struct otasim_trial *tr, struct otasim_qenv *env)
{
    char path[160], *text = NULL, why[300], checks[sizeof(tr->detail)];

    snprintf(path, sizeof(path), "/api/v1/devices/%s", tr->device_id);
    if (otasim_server_get(tr->srv, path, &text, NULL) == 0)
        env->contact_ms = otasim_qenv_contact_ms(text);
    free(text);
    if ((tr->outcome = otasim_qenv_verdict(tr->outcome, env)) != OTASIM_ENVIRONMENT)
        return;
    otasim_qenv_describe(env, why, sizeof(why));
    ota_strlcpy(checks, tr->detail, sizeof(checks));
    snprintf(tr->detail, sizeof(tr->detail),
             "environment: %s, and the server had no word from the device since; the agent "
             "was not judged (its checks said: %.500s)",
             why, checks);
}

/* One attempt of the trial (otasim_qenv_run: a second one when the first
 * lost its network). state: a block-level crash state (a raw disk) booted as
 * found, with no fault (the cut is the state's); NULL a trial of its own.
 * The console's record into *ret_w when given. */
static int run_attempt(const struct otasim_tools *t, const char *state, int idle_ends, int n,
                       struct otasim_trial *tr, struct otasim_qt_watch *ret_w, struct ota_err *err)
{
    const struct otasim_scenario *sc = tr->sc;
    struct otasim_qemu_image im;
    struct otasim_qemu q;
    struct otasim_device d;
    struct otasim_settle settle = {0};
    struct otasim_qt_watch w = {0};
    struct otasim_server own = {0};
    const struct otasim_server *scen_srv = tr->srv;
    char qdir[PATH_MAX + 16], args[2048], frozen[PATH_MAX] = "";
    int64_t t0 = otasim_now_ms();
    int armed = tr->fault.kind != OTASIM_FAULT_NONE, r;
    /* not for blue_green: the recording would need the activation too */
    int snap = !state && t->qemu_snapshot && tr->fault.kind == OTASIM_FAULT_POWER_CUT &&
               tr->fault.trigger.kind == OTASIM_TRIGGER_STATE && !sc->blue_green;

    tr->outcome = OTASIM_ERROR;
    tr->started_ms = otasim_wall_ms();
    tr->fired = 0;
    tr->n_checks = 0;
    tr->detail[0] = '\0';
    tr->logs[0] = '\0';
    ota_strlcpy(tr->target, "qemu", sizeof(tr->target));
    memset(&q, 0, sizeof(q));
    q.log_fd = -1;
    memset(&d, 0, sizeof(d));
    d.tools = t;
    d.tr = tr;
    d.agent = &otasim_agent_ota; /* the QEMU tier runs ota-agent only (docs/agents.md) */
    d.qemu = 1;
    d.booted_slot = -1;
    w.booted_slot = -1;
    snprintf(d.root, sizeof(d.root), "%s/disk", tr->dir);
    snprintf(d.config, sizeof(d.config), "%s/etc/ota-agent.conf", d.root);
    snprintf(qdir, sizeof(qdir), "%s/qemu", tr->dir);
    if ((r = otasim_qemu_supports(sc, &tr->fault, err)) < 0)
        return r;
    if (tr->fault.kind == OTASIM_FAULT_KERNEL_HANG && t->qemu_profile != OTASIM_QEMU_RASPI3B)
        return ota_err_set(err, ENOTSUP,
                           "kernel-hang needs --profile raspi3b: virt boots the kernel directly "
                           "(no U-Boot, no bootcount to count the hangs, no watchdog to reset "
                           "them)");
    if (n > 1) { /* a fresh disk registers again if attempt 1 got that far (404: it did not) */
        char path[160];
        snprintf(path, sizeof(path), "/api/v1/devices/%s/reenroll", tr->device_id);
        ota_ignore(otasim_server_post(tr->srv, path, "{}", NULL, NULL));
    }
    if ((r = otasim_qemu_image_open(t->image_dir, &im, err)) < 0 ||
        (r = ota_fs_remove_tree(tr->dir, err)) < 0 || (r = ota_fs_mkdirs(tr->dir, err)) < 0)
        return r;
    if (snap && (r = snap_boot(t, tr, frozen, &own, &w, err)) != 0) {
        snap_reap();
        return r < 0 ? r : 0;
    }
    if (state) {
        ota_strlcpy(frozen, state, sizeof(frozen));
        armed = 0;
        w.idle_ends = idle_ends;
        w.fired = 1;
        w.fault_ms = otasim_now_ms();
    }
    if ((r = otasim_bluegreen_setup(tr, err)) < 0)
        return r;
    if ((r = otasim_qemu_init(&q, (enum otasim_qemu_profile)t->qemu_profile, &im, qdir,
                              frozen[0] ? frozen : NULL, tr->srv->port, err)) < 0)
        goto out;
    q.keep_env = state != NULL;                     /* the state's env as the cut left it */
    q.uboot = sc->profile == OTASIM_PROFILE_ROOTFS; /* virt: U-Boot's A/B choice */
    q.cpus = t->qemu_cpus;
    if (!snap && !state && (sc->profile == OTASIM_PROFILE_ROOTFS || t->guest_agent[0]) &&
        (r = otasim_qt_provision(
             &q, sc->profile == OTASIM_PROFILE_ROOTFS ? otasim_scenario_factory(sc)->version : NULL,
             t->guest_agent[0] ? t->guest_agent : NULL, err)) < 0)
        goto out;
    /* boot.scr's switches (images/boot.cmd): the new slot's kernel hangs
     * (the factory is slot a, the update goes to b); OTASIM_QEMU_WATCHDOG=off
     * leaves the watchdog unarmed (a test that a hang is then caught) */
    if (!state && tr->fault.kind == OTASIM_FAULT_KERNEL_HANG) {
        char slot[2] = "b", max[16];
        if ((r = otasim_qt_hang_slot(sc, &tr->fault, slot, err)) < 0 ||
            (r = otasim_qemu_env_set(&q, "ota_fault_hang", slot, err)) < 0)
            goto out;
        snprintf(max, sizeof(max), "%d",
                 tr->fault.count); /* slot b: its nth boot has bootcount n */
        if (tr->fault.count > 0 &&
            (r = otasim_qemu_env_set(&q, "ota_fault_hang_max", max, err)) < 0)
            goto out;
    }
    if (!state && sc->no_watchdog && (r = otasim_qemu_env_set(&q, "ota_watchdog", "0", err)) < 0)
        goto out;
    otasim_qt_kernel_args(
        tr, armed && !snap && tr->fault.kind != OTASIM_FAULT_KERNEL_HANG ? &tr->fault : NULL, args,
        sizeof(args));
    if ((r = otasim_qt_start(&q, tr, args, err)) < 0 ||
        (r = otasim_qt_follow(t, tr, &q, &d, &w, args, sizeof(args), &settle, err)) < 0 ||
        (r = otasim_qt_settle_and_read(t, tr, &q, &d, &w, &settle, err)) < 0)
        goto out;
    otasim_faults_server_seen(tr);
    r = otasim_invariants_check(&d, NULL, 0, &settle, NULL, 0, err);
    if (r == 0 && tr->outcome == OTASIM_FAIL && w.env.lost_boot)
        judge_network(tr, &w.env);
    if (r == 0 && !t->keep && tr->outcome == OTASIM_PASS) {
        /* the console logs stay; the disks go */
        unlink(q.overlay);
        for (int s = 0; s < 2; s++)
            unlink(d.part[s]);
    }
out:
    otasim_qemu_close(&q);
    if (own.pid > 0)
        otasim_server_stop(&own);
    snap_reap();
    tr->srv = scen_srv;
    tr->duration_ms = otasim_now_ms() - t0;
    tr->recover_ms = settle.recover_ms;
    if (r < 0)
        snprintf(tr->detail, sizeof(tr->detail), "harness: %s", err->reason);
    if (ret_w)
        *ret_w = w;
    return r;
}

static int attempt(void *ctx, int n, struct otasim_trial *tr, struct ota_err *err)
{
    return run_attempt(ctx, NULL, 0, n, tr, NULL, err);
}

int otasim_qemu_trial_run(const struct otasim_tools *t, struct otasim_trial *tr,
                          struct ota_err *err)
{
    return otasim_qenv_run(attempt, (void *)(uintptr_t)t, tr, err);
}

int otasim_qt_boot_state(const struct otasim_tools *t, struct otasim_trial *tr, const char *state,
                         int idle_ends, struct otasim_qt_watch *ret_w, struct ota_err *err)
{
    return run_attempt(t, state, idle_ends, 1, tr, ret_w, err);
}
