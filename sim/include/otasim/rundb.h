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
int otasim_rundb_end(struct otasim_rundb *db, int64_t run_id, struct ota_err *err) OTA_MUST;
/* JUnit XML of one run: a testsuite per scenario, a testcase per trial. */
int otasim_rundb_junit(struct otasim_rundb *db, int64_t run_id, const char *path,
                       struct ota_err *err) OTA_MUST;
void otasim_rundb_close(struct otasim_rundb *db);

#ifdef __cplusplus
}
#endif
#endif
