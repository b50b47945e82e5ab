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
 *   start      exit 0 once the app listens on its port (or is already
 *              running), or if it still lives but does not listen after
 *              the settle time ($OTASIM_SVC_SETTLE_MS, 200 ms by default);
 *              1 if it died (status in the log);
 *   stop       SIGTERM, SIGKILL after 3 s; exit 0;
 *   restart    stop then start;
 *   is-active  exit 0 if the recorded process lives, 3 if not;
 *   reboot     asks the simulator for a reboot (ROOT/run/reboot-requested,
 *              which the trial reads after the pass): the agent's
 *              reboot_cmd, without a shell and `touch`.
 * No restart on failure: a crash is left for is-active (and the agent's
 * health window) to see. */
#ifndef OTASIM_SVC_H
#define OTASIM_SVC_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The settle time the simulator gives its devices' supervisor: how long
 * `start` waits for a live app to listen before calling it started anyway.
 * A bound, not a delay: start returns as soon as the app listens, so it
 * costs nothing when the app is quick. It must cover a slow start on a
 * loaded machine (an ASan app under a load of 15 takes well over 50 ms, the
 * old value): the agent's health check probes as soon as the restart
 * returns, with no start grace (health.start_grace = 0), so an app reported
 * started but not yet listening made it roll back a good update. Below the
 * agent's service timeout (10 s in the simulator's config) minus the stop's
 * SIGTERM wait (3 s). */
#define OTASIM_SVC_SIM_SETTLE_MS 5000
#define OTASIM_SVC_STR_(x)       #x
#define OTASIM_SVC_STR(x)        OTASIM_SVC_STR_(x)
/* The environment entry that sets it, for the supervisor's callers. */
#define OTASIM_SVC_SIM_SETTLE_ENV "OTASIM_SVC_SETTLE_MS=" OTASIM_SVC_STR(OTASIM_SVC_SIM_SETTLE_MS)

enum otasim_svc_cmd {
    OTASIM_SVC_START,
    OTASIM_SVC_STOP,
    OTASIM_SVC_RESTART,
    OTASIM_SVC_IS_ACTIVE,
    OTASIM_SVC_REBOOT,
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
