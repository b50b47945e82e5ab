/* The device's plain service supervisor (what systemd is on a real device),
 * as `ota-sim svc --dev ROOT start|stop|restart|is-active`, the commands the
 * agent's "command" service driver runs.
 *
 * The app is ROOT/opt/app/current/bin/video-app, run with
 * VIDEO_APP_PORT=$(cat ROOT/run/app.port); its output goes to
 * ROOT/run/app.log, its pid and kernel start time to ROOT/run/app.pid
 * (guarding against pid reuse). The app joins the process group named by
 * $OTASIM_PGID (the device's group, so a power cut kills it with the
 * rest); without it, the group of the caller.
 *   start      exit 0 if running 200 ms later (or already running), 1 if it
 *              died (status in the log);
 *   stop       SIGTERM, SIGKILL after 3 s; exit 0;
 *   restart    stop then start;
 *   is-active  exit 0 if the recorded process lives, 3 if not.
 * No restart on failure: a crash is left for is-active (and the agent's
 * health window) to see. */
#ifndef OTASIM_SVC_H
#define OTASIM_SVC_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otasim_svc_cmd {
    OTASIM_SVC_START,
    OTASIM_SVC_STOP,
    OTASIM_SVC_RESTART,
    OTASIM_SVC_IS_ACTIVE,
    OTASIM_SVC_CMD_MAX
};
extern const char *const otasim_svc_cmd_names[OTASIM_SVC_CMD_MAX];

/* Returns the command's exit status (0, 1 or 3), or -errno with a reason.
 * A start that fails (1) also leaves its reason in err (and in app.log).
 * Needs ROOT/run/app.port; makes ROOT/run if missing. */
int otasim_svc_run(const char *root, enum otasim_svc_cmd cmd, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
