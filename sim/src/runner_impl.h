/* What the runner's files share (runner.c: cases, servers, running them;
 * runner_cases.c: the persistence points and the cases a scenario makes).
 * Private to sim/src. */
#ifndef OTASIM_RUNNER_IMPL_H
#define OTASIM_RUNNER_IMPL_H

#include "otasim/rundb.h"
#include "otasim/runner.h"

struct scen {
    struct otasim_scenario sc;
    struct otasim_built built[OTASIM_MAX_RELEASES];
    int built_ok;
    struct otasim_server srv;
    int srv_up;
    size_t cases_left; /* server stops when its last case is done */
    char pub[PATH_MAX];
};

struct rcase {
    size_t scen;
    struct otasim_fault fault;
    uint64_t seed;
    char id[200];
    char device_id[96];
    char agent[32];     /* mix: this device's adapter */
    long equivalent_to; /* index of the case whose trial stands for this one, -1 */
    int done;
    int prerun; /* tr is the failed recording run, recorded as this case's trial */
    pid_t pid;
    struct otasim_trial tr;
};

struct otasim_runner {
    struct otasim_tools t;
    struct otasim_run_opts o;
    struct scen *scens;
    size_t n_scens;
    struct rcase *cases;
    size_t n_cases, cap_cases;
    char run_dir[PATH_MAX];
    int failed_made;  /* WORK/failed/RUN made (older runs' pruned) */
    int fault_points; /* the agent's named fault points: 1 on, 0 off, -1 unknown, -2 not asked */
    struct otasim_rundb *db;
    int64_t run_id;
    uint64_t skipped;
    char **skips; /* "id\tdetail" of each skipped case, for the run database */
    size_t n_skips;
};

/* A new case of scenario scen with fault f (its id, seed and device made
 * up), NULL with err set when out of memory. */
struct rcase *otasim_runner_new_case(struct otasim_runner *r, size_t scen,
                                     const struct otasim_fault *f, struct ota_err *err);

/* shared by runner.c and runner_cases.c */
int otasim_runner_select_cases(struct otasim_runner *r, struct otasim_run_stats *s,
                               struct ota_err *err);
int otasim_runner_ensure_server(struct otasim_runner *r, size_t si, struct ota_err *err);
int otasim_runner_subsets_of(const struct otasim_fault *f);
/* Names case c id (and its device after it). */
void otasim_runner_case_id(struct rcase *c, const char *id);
/* mix scenarios: the group of all their devices. */
void otasim_runner_mix_group(const struct otasim_runner *r, size_t si, char *buf, size_t cap);
void otasim_runner_tell(const struct otasim_runner *r, const struct otasim_run_event *ev);
/* --mode blocks: each scenario's block-level crash states (runner_blocks.c). */
int otasim_runner_run_blocks(struct otasim_runner *r, struct otasim_run_stats *s,
                             struct ota_err *err);

#endif
