/* ota-sim-svc: `ota-sim svc` as a small static program, for the commands a
 * trial runs many times (the agent's restart_cmd and is_active_cmd, the boot's
 * start) - `ota-sim` links ~40 shared libraries, and resolving them cost more
 * than the command itself (sim/bench/README.md).
 *
 *   ota-sim-svc --dev ROOT start|stop|restart|is-active|reboot   as `ota-sim svc`
 *   ota-sim-svc init [--parent PID]   waits for a signal (a device's group
 *                                     leader); with --parent, dies with PID,
 *                                     its parent (which posix_spawn cannot
 *                                     arrange: PR_SET_PDEATHSIG)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "otasim/svc.h"

#define EXIT_USAGE 2

int main(int argc, char **argv)
{
    const char *dev = NULL, *cmd = NULL;
    struct ota_err e = {0};

    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        if (argc == 4 && strcmp(argv[2], "--parent") == 0 &&
            (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != (pid_t)atol(argv[3])))
            return 1; /* the parent is gone already */
        for (;;)
            pause();
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dev") == 0 && i + 1 < argc)
            dev = argv[++i];
        else
            cmd = argv[i];
    }
    if (!dev || !cmd) {
        fprintf(stderr, "usage: ota-sim-svc --dev ROOT start|stop|restart|is-active|reboot\n"
                        "       ota-sim-svc init [--parent PID]\n");
        return EXIT_USAGE;
    }
    for (int c = 0; c < OTASIM_SVC_CMD_MAX; c++)
        if (strcmp(cmd, otasim_svc_cmd_names[c]) == 0) {
            int r = otasim_svc_run(dev, (enum otasim_svc_cmd)c, &e);
            if (r < 0) {
                fprintf(stderr, "ota-sim-svc: %s\n", e.reason);
                return 1;
            }
            return r;
        }
    fprintf(stderr, "ota-sim-svc: unknown command '%s'\n", cmd);
    return EXIT_USAGE;
}
