/* How a run of ota-sim ends, whatever ends it. Armed, the calling process is
 * a child subreaper (PR_SET_CHILD_SUBREAPER): every process the run starts,
 * however deep and in whatever process group (device groups, daemonized
 * apps, servers, the zygote), comes back to it when its own parent is gone,
 * so none can outlive the run. SIGINT (unless ignored, as in a background
 * job), SIGTERM and SIGHUP then end every one of them, remove the run's dir
 * (unless kept: the path is printed) and end ota-sim by the same signal.
 * Everything the handler does is async-signal-safe (no malloc, no stdio). */
#ifndef OTASIM_RUNSTOP_H
#define OTASIM_RUNSTOP_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* run_dir: removed on a signal unless keep. Once per process. */
int otasim_runstop_arm(const char *run_dir, int keep, struct ota_err *err) OTA_MUST;
/* SIGKILLs every child of this process (and the process groups they lead),
 * reaps them and whatever comes back to it, until it has no child left.
 * Async-signal-safe. */
void otasim_runstop_end_children(void);
/* The run is over: its leftovers ended (otasim_runstop_end_children), the
 * signals as they were. A no-op when not armed. */
void otasim_runstop_disarm(void);

#ifdef __cplusplus
}
#endif
#endif
