/* Child processes for the simulator: run a command to completion (with a
 * timeout, output captured), or start one in a given process group. */
#ifndef OTASIM_PROC_H
#define OTASIM_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs argv (PATH searched), envp additions ("K=V", NULL-terminated, may be
 * NULL), stdout captured into *ret_out (malloc'ed, may be NULL to discard),
 * stderr to errfile (NULL: /dev/null). Kills it after timeout_ms.
 * *ret_status: the exit code, or 128 + signal. Returns 0 or -errno. */
int otasim_run(const char *const *argv, const char *const *envp, int timeout_ms, char **ret_out,
               const char *errfile, int *ret_status, struct ota_err *err) OTA_MUST;
/* otasim_run of a tool the harness needs to succeed (2 minutes at most):
 * stdout discarded, stderr to log; an exit other than 0 is an error that
 * names the log. */
int otasim_run_checked(const char *const *argv, const char *log, struct ota_err *err) OTA_MUST;

/* Starts argv with envp additions in process group pgid (0: a new group led
 * by the child), stdin /dev/null, stdout to outfile (NULL: /dev/null),
 * stderr to a pipe whose read end is *ret_errfd (or to errfile if ret_errfd
 * is NULL). */
int otasim_spawn(const char *const *argv, const char *const *envp, pid_t pgid, const char *outfile,
                 const char *errfile, int *ret_errfd, pid_t *ret_pid, struct ota_err *err) OTA_MUST;

/* waitpid with a timeout (ms); -ETIMEDOUT if still running. */
int otasim_wait(pid_t pid, int timeout_ms, int *ret_status) OTA_MUST;

int64_t otasim_now_ms(void);  /* CLOCK_MONOTONIC */
int64_t otasim_wall_ms(void); /* CLOCK_REALTIME */

#ifdef __cplusplus
}
#endif
#endif
