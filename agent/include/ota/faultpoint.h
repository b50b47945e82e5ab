/* Named fault points (test builds only, -DOTA_FAULT_POINTS=ON).
 *
 * OTA_FAULT_POINT("switching.after_tmp_symlink") does nothing unless the
 * environment variable OTA_FAULT_POINT names that point. When it does, it
 * writes "ota-fault-point: NAME\n" to stderr in one write(2) (so a harness,
 * or an LD_PRELOAD interposer that wraps write(), sees the whole line), then:
 *   - OTA_FAULT_POINT_MODE unset or anything but "power": kill(getpid(),
 *     SIGKILL), an agent crash;
 *   - OTA_FAULT_POINT_MODE=power: kill(0, SIGKILL), the whole process group,
 *     a power cut. The simulator puts every process of a simulated device
 *     (agent, supervisor, app) in one group. Never set it for an agent that
 *     shares its process group with the harness: the harness dies too.
 *   - OTA_FAULT_POINT_MODE=stop: raise(SIGSTOP), the agent freezes right
 *     there. The QEMU driver cuts the machine's power when the line reaches
 *     the console: whatever the agent did not make durable is lost, and the
 *     agent cannot run on meanwhile.
 * In normal builds the macro is nothing.
 *
 * The points (keep this list in sync with the code):
 *   download.before_sync          core.c, DOWNLOADING: the whole payload written,
 *                                 before the final fdatasync
 *   store.save.before_commit      store_sqlite.c: journal, report and history
 *                                 written in the transaction, before COMMIT
 *   install.after_extract         install_posix.c, INSTALLING (app): slot tree
 *                                 extracted (files and its directories
 *                                 fsynced by the extraction), before the slot's
 *                                 own entry in the app root is made durable
 *   rootfs.after_image_write      archive.c, INSTALLING (rootfs): image
 *                                 written to the partition, before its fsync
 *   switching.after_tmp_symlink   install_posix.c, the switch: current.tmp made,
 *                                 not yet renamed over `current`
 *   switching.after_rename        install_posix.c, the switch: renamed, the app
 *                                 root not yet fsynced
 *   bootenv.before_save           bootenv_uboot.c: variables set in memory,
 *                                 before the env write
 *   bootenv.after_save            bootenv_uboot.c: env written, before return
 *   commit.before_save            core.c, COMMITTING: versions recorded and the
 *                                 download removed, before the final state
 *                                 (IDLE, "success") is saved
 *   state.<STATE>                 cli.c: right after the OTA-STATE line of the
 *                                 change to <STATE> (e.g. state.SWITCHING);
 *                                 the state is saved by then */
#ifndef OTA_FAULTPOINT_H
#define OTA_FAULTPOINT_H

#ifdef OTA_FAULT_POINTS
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Called by the macro; not for direct use. */
static inline void ota_fault_point_hit(const char *name)
{
    const char *want = getenv("OTA_FAULT_POINT");
    const char *mode;
    char line[256];
    size_t len, off = 0;
    int n;

    if (!want || strcmp(want, name) != 0)
        return;
    n = snprintf(line, sizeof(line), "ota-fault-point: %s\n", name);
    len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    mode = getenv("OTA_FAULT_POINT_MODE");
    if (mode && strcmp(mode, "power") == 0)
        kill(0, SIGKILL);
    if (mode && strcmp(mode, "stop") == 0) {
        raise(SIGSTOP);
        return; /* continued by hand: go on as if nothing happened */
    }
    kill(getpid(), SIGKILL);
}

#define OTA_FAULT_POINT(name) ota_fault_point_hit(name)
#else
#define OTA_FAULT_POINT(name) ((void)0)
#endif

#endif
