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
#include <stdint.h>
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

/* In the runner, before it forks trials: the libraries' one-time setup
 * (libcurl's global init, OpenSSL's config and digest lookup) that each
 * trial would otherwise do again (~3 ms each). Nothing in baseline mode. */
void otasim_prefork_init(void);

/* Starts a device's group leader (a process that only waits for its signal,
 * in a process group of its own, dying with the caller): `ota-sim-svc init
 * --parent PID` by posix_spawn, without a fork of the caller. 0 with
 * *ret_pid (= the group), or -errno and nothing started (baseline mode, no
 * ota-sim-svc: -ENOSYS); the caller then forks `sleep` as before. */
int otasim_spawn_leader(const struct otasim_tools *t, pid_t *ret_pid);

/* Copies the tree src to dst (which must not exist) like `cp -a`: regular
 * files, directories, symlinks, modes and modification times. */
int otasim_copy_tree(const char *src, const char *dst, struct ota_err *err) OTA_MUST;

/* Starts argv like a fork + exec in otasim_run/otasim_spawn would, without
 * the fork's copy of the caller's page tables (posix_spawn): the environment
 * is environ with envp's entries in place, stdin /dev/null, stdout out_fd and
 * stderr err_fd (-1: /dev/null), fds from 3 closed, SIGPIPE default, process
 * group pgid (-1: the caller's). The agent itself is forked by the run's
 * zygote when one serves it (otasim_zygote_spawn; otasim_wait waits for it).
 * 0 with *ret_pid, or -errno and nothing started (baseline mode: -ENOSYS):
 * the caller then forks as before, which also reports a failed exec the old
 * way (exit 127). */
int otasim_spawn_light(const char *const *argv, const char *const *envp, pid_t pgid, int out_fd,
                       int err_fd, pid_t *ret_pid);

/* ---- the agent zygote (zygote.c; the zygote: sim/interpose/zygote.c) ---
 * One ota-agent process, started once per run with the interposer, that has
 * loaded the agent, its libraries and the ones it loads on first use
 * (libcurl, libarchive), and forks a fresh agent for each pass and status
 * command of every trial instead of an exec: main runs only in the forked
 * child, with the argv, environment, fds and process group of the request.
 * Off in baseline mode, with $OTASIM_ZYGOTE=0, on the QEMU target, and for
 * any other program or LD_PRELOAD (libfaketime) than the zygote's. */

/* Starts the zygote for t->agent in the calling process (the runner, before
 * it forks trials). 1 if it serves, 0 if not (off, or the agent never said
 * it was ready: every start is then an exec), -errno on a system error. */
int otasim_zygote_start(const struct otasim_tools *t, struct ota_err *err) OTA_MUST;

/* Ends the zygote (from the process that started it) and reaps it, so its
 * CPU and its children's count in the run's. */
void otasim_zygote_stop(void);

/* Asks the zygote for argv with exactly the environment env (stdin
 * /dev/null, stdout out_fd, stderr err_fd (-1: /dev/null), process group
 * pgid (-1: the zygote's)). 0 with *ret_pid; -ENOSYS when the zygote does
 * not serve this argv/LD_PRELOAD or is gone (the caller execs instead). */
int otasim_zygote_spawn(const char *const *argv, char *const *env, pid_t pgid, int out_fd,
                        int err_fd, pid_t *ret_pid);

/* Waits up to timeout_ms (-1: no limit) for a process otasim_zygote_spawn
 * started: 0 with its raw wait status, -ETIMEDOUT (ask again after a kill),
 * or -ESRCH if pid is not one (otasim_wait then waits for its own child). */
int otasim_zygote_wait(pid_t pid, int timeout_ms, int *ret_raw);

/* The CPU time (user + system, us) of the processes otasim_zygote_wait saw
 * end in this process: they are not its children, so getrusage does not
 * count them (OTASIM_TRACE adds them). */
int64_t otasim_zygote_children_cpu_us(void);

#ifdef __cplusplus
}
#endif
#endif
