/* The cheaper ways a native trial does its steps (sim/bench/README.md), and
 * the switch back to the old ones, so the benchmark can time both in one run.
 *
 * $OTASIM_BASELINE=1 selects the old way everywhere: `ota-sim svc` for the
 * service commands and `sleep` as a device's group leader (both exec'd for
 * every boot and health check), `cp -a` for the factory tree, and every
 * crash-point trial runs the update's prefix up to its point. A trial's
 * verdict must not depend on the switch (scenarios/test_equivalence.py). */
#ifndef OTASIM_FAST_H
#define OTASIM_FAST_H

#include <stddef.h>
#include <sys/types.h>
#include "ota/err.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if $OTASIM_BASELINE=1 (read once). */
int otasim_baseline(void);

/* 1 with DIR/ota-sim-svc (next to ota-sim) in buf if it is there and the
 * baseline is off; 0 if the service commands go through `ota-sim svc`. */
int otasim_svc_bin(const struct otasim_tools *t, char *buf, size_t cap);

/* The service command's words before "--dev ROOT CMD": "DIR/ota-sim-svc"
 * (next to ota-sim, static) or, in baseline mode or when it is missing,
 * "SELF svc". Written into buf; returns buf. */
const char *otasim_svc_prefix(const struct otasim_tools *t, char *buf, size_t cap);

/* argv of a device's group leader (a process that only waits for its
 * signal): {DIR/ota-sim-svc, "init"} or {"sleep", "1000000"}. */
void otasim_init_argv(const struct otasim_tools *t, char *buf, size_t cap, const char *argv[3]);

/* Copies the tree src to dst (which must not exist) like `cp -a`: regular
 * files, directories, symlinks, modes and modification times. */
int otasim_copy_tree(const char *src, const char *dst, struct ota_err *err) OTA_MUST;

/* Starts argv like a fork + exec in otasim_run/otasim_spawn would, without
 * the fork's copy of the caller's page tables (posix_spawn): the environment
 * is environ with envp's entries in place, stdin /dev/null, stdout out_fd and
 * stderr err_fd (-1: /dev/null), fds from 3 closed, SIGPIPE default, process
 * group pgid (-1: the caller's). 0 with *ret_pid, or -errno and nothing
 * started (baseline mode: -ENOSYS): the caller then forks as before, which
 * also reports a failed exec the old way (exit 127). */
int otasim_spawn_light(const char *const *argv, const char *const *envp, pid_t pgid, int out_fd,
                       int err_fd, pid_t *ret_pid);

#ifdef __cplusplus
}
#endif
#endif
