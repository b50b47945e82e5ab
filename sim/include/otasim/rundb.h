/* The run database (SQLite): every trial of every run, with its scenario,
 * fault, trigger, seed, outcome, invariant results, timings, the agent's
 * state lines and the command that reproduces it; and JUnit XML made from
 * it. Schema in rundb.c. */
#ifndef OTASIM_RUNDB_H
#define OTASIM_RUNDB_H

#include <stdint.h>
#include "ota/err.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_rundb;

int otasim_rundb_open(const char *path, struct otasim_rundb **ret, struct ota_err *err) OTA_MUST;
/* Starts a run; *ret_id its id. */
int otasim_rundb_begin(struct otasim_rundb *db, const char *command, const char *agent,
                       int64_t *ret_id, struct ota_err *err) OTA_MUST;
/* One trial. case_id names it in the matrix ("app/power-cut@state:SWITCHING");
 * equivalent_to: for a crash point not run because it cannot differ from an
 * earlier one, that one's case id ("" otherwise). */
int otasim_rundb_add(struct otasim_rundb *db, int64_t run_id, const char *case_id,
                     const struct otasim_trial *tr, const char *reproduce,
                     const char *equivalent_to, struct ota_err *err) OTA_MUST;
/* What run run_id does not show (reports/ "What this run does not show"):
 * kind "skipped" (subject: a case id the target cannot run, detail: why) or
 * "not-modelled" (subject: the tier, detail: one thing it does not model). */
int otasim_rundb_gap(struct otasim_rundb *db, int64_t run_id, const char *kind, const char *subject,
                     const char *detail, struct ota_err *err) OTA_MUST;
/* The same for each of a NULL-terminated list of details. */
int otasim_rundb_gaps(struct otasim_rundb *db, int64_t run_id, const char *kind,
                      const char *subject, const char *const *details,
                      struct ota_err *err) OTA_MUST;
int otasim_rundb_end(struct otasim_rundb *db, int64_t run_id, struct ota_err *err) OTA_MUST;

/* A fleet run (fleet.c): begin (one transaction until end), its samples of
 * the time series (counts: JSON text), one row per device, end. */
struct otasim_rundb_fleet_device {
    const char *device, *type, *group, *version, *state;
    const char *outcome; /* on_target, other_version, rolled_back, bricked, inconsistent, stuck,
                            offline */
    uint64_t bytes;
    int64_t downtime_ms, recovery_ms; /* -1: none */
    int64_t updates, rollbacks, cuts;
    const char *checks; /* the invariants that failed ("" none) */
};
int otasim_rundb_fleet_begin(struct otasim_rundb *db, int64_t run_id, const char *name,
                             const char *file, uint64_t seed, int64_t *ret_id,
                             struct ota_err *err) OTA_MUST;
int otasim_rundb_fleet_sample(struct otasim_rundb *db, int64_t fleet_id, int64_t t_ms,
                              const char *rollout, int stage, const char *counts,
                              struct ota_err *err) OTA_MUST;
int otasim_rundb_fleet_device(struct otasim_rundb *db, int64_t fleet_id,
                              const struct otasim_rundb_fleet_device *d,
                              struct ota_err *err) OTA_MUST;
int otasim_rundb_fleet_end(struct otasim_rundb *db, int64_t fleet_id, int ok,
                           const char *rollout_state, const char *stats, const char *failed,
                           const char *rerun, struct ota_err *err) OTA_MUST;
/* Reading fleet runs back (fleet-merge): the last finished fleet run of db. */
struct otasim_rundb_fleet_run {
    int64_t id;
    char name[64], file[4096], rollout_state[16];
    int64_t seed;
    int ok;
    char *stats, *failed; /* malloc'ed; otasim_rundb_fleet_run_free */
};
int otasim_rundb_fleet_last(struct otasim_rundb *db, struct otasim_rundb_fleet_run *ret,
                            struct ota_err *err) OTA_MUST;
void otasim_rundb_fleet_run_free(struct otasim_rundb_fleet_run *r);
/* Calls fn for every device row of fleet run fleet_id, by device; a
 * negative return of fn stops and is returned. */
int otasim_rundb_fleet_devices_each(struct otasim_rundb *db, int64_t fleet_id,
                                    int (*fn)(void *ctx, const struct otasim_rundb_fleet_device *d),
                                    void *ctx, struct ota_err *err) OTA_MUST;
/* The same for its samples, by time (and order written). */
int otasim_rundb_fleet_samples_each(struct otasim_rundb *db, int64_t fleet_id,
                                    int (*fn)(void *ctx, int64_t t_ms, const char *rollout,
                                              int stage, const char *counts),
                                    void *ctx, struct ota_err *err) OTA_MUST;
/* JUnit XML of one run: a testsuite per scenario, a testcase per trial. */
int otasim_rundb_junit(struct otasim_rundb *db, int64_t run_id, const char *path,
                       struct ota_err *err) OTA_MUST;
void otasim_rundb_close(struct otasim_rundb *db);

#ifdef __cplusplus
}
#endif
#endif
