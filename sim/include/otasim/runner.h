/* The runner: expands scenarios into cases (one trigger each; states lists;
 * every persistence point after a recording run), starts one ota-server per
 * scenario, runs the cases as child processes (-j at a time), writes every
 * trial to the run database, reports progress and, for each failure, the
 * command that reproduces it to the caller's sink (it prints nothing itself);
 * JUnit at the end. */
#ifndef OTASIM_RUNNER_H
#define OTASIM_RUNNER_H

#include <stdint.h>
#include "ota/err.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_run_stats {
    uint64_t cases, run, passed, failed, errors, equivalent;
    uint64_t skipped;     /* cases the target cannot run (QEMU: interposer faults...) */
    uint64_t not_run;     /* cases the agent cannot run (built without named fault points) */
    uint64_t environment; /* QEMU guests without their network, twice (qenv.h) */
    int64_t wall_ms;
};

/* What a run tells a person, handed to the caller's sink as it happens. */
enum otasim_run_event_kind {
    OTASIM_RUN_SKIPPED,  /* a case the target cannot run: id (scenario/fault), detail (why) */
    OTASIM_RUN_LISTED,   /* --list: the id of a case */
    OTASIM_RUN_PROGRESS, /* stats so far, elapsed_ms; final: the run is over */
    OTASIM_RUN_FAILED,   /* a trial failed or errored: id, detail, reproduce, logs, verdict */
    OTASIM_RUN_NOT_RUN,  /* a case the agent cannot run: id, detail, agent */
    OTASIM_RUN_WARNING,  /* a failure that does not stop the run: detail */
    OTASIM_RUN_KEPT,     /* --keep: a trial's tree (id, tree), or at the end the run's dir
                          * (id NULL, tree: servers, recordings and trials under it) */
    OTASIM_RUN_EVENT_MAX
};

struct otasim_run_event {
    enum otasim_run_event_kind kind;
    const char *id;
    const char *detail;
    const char *reproduce;                /* FAILED: the command that runs the case again */
    const char *logs;                     /* FAILED: serial logs, one a line ("" for none) */
    const char *tree;                     /* FAILED, KEPT: where the trial's tree is kept ("") */
    const char *agent;                    /* NOT_RUN: the agent under test */
    const char *verdict;                  /* FAILED: fail, error or environment */
    const struct otasim_run_stats *stats; /* PROGRESS */
    int64_t elapsed_ms;                   /* PROGRESS */
    int final;                            /* PROGRESS: the last one */
};

/* fn (when set) gets every event with user; the event and its strings live
 * for the call only. */
struct otasim_run_sink {
    void (*fn)(void *user, const struct otasim_run_event *ev);
    void *user;
};

struct otasim_run_opts {
    int jobs;               /* concurrent trials (default 2) */
    uint64_t seed;          /* base seed (case i gets seed + i) */
    int exhaustive;         /* run every crash point, not one per class */
    int list;               /* report the case ids (LISTED), run nothing (points: recorded) */
    const char *db_path;    /* run database (default WORK/runs.db) */
    const char *junit_path; /* JUnit XML (optional) */
    const char *command;    /* the command line, for the run row */
    int fail_fast;          /* start no new case after the first failure */
    const char *trees_dir;  /* where trial trees go (default /dev/shm, else WORK) */
    /* The caller is ota-sim itself: SIGINT, SIGTERM and SIGHUP end every
     * process of the run and remove its dir (otasim/runstop.h). */
    int stop_on_signal;
    /* --case, --cases-from: run just these case ids */
    const char *const *only_cases;
    size_t n_only_cases;
    /* --crash-model, --crash-subsets: for every power cut, instead of each
     * scenario's own (fault.crash_model, fault.crash_subsets) */
    int crash_model;             /* enum otasim_crash_model, or -1: the scenario's */
    int crash_subsets;           /* 1..OTASIM_MAX_CRASH_SUBSETS, or 0: the scenario's */
    struct otasim_run_sink sink; /* where the run's events go (none: nowhere) */
    /* --mode blocks (QEMU): per scenario, every block-level crash state of
     * its update checked on the host and boot_sample of them booted
     * (otasim/qblocks.h), instead of its cases */
    int blocks;
    int boot_sample;
};

struct otasim_runner;

int otasim_runner_new(const struct otasim_tools *t, const struct otasim_run_opts *o,
                      struct otasim_runner **ret, struct ota_err *err) OTA_MUST;
/* Adds a scenario (owned by the runner from then on). A fault override
 * (kind + trigger) replaces the file's fault when override is non-NULL. */
int otasim_runner_add(struct otasim_runner *r, struct otasim_scenario *sc,
                      const struct otasim_fault *override, struct ota_err *err) OTA_MUST;
/* Adds the cases of a matrix file (scenarios/matrix.yaml). */
int otasim_runner_add_matrix(struct otasim_runner *r, const char *path,
                             struct ota_err *err) OTA_MUST;
/* Every id of the options' only_cases names a case added (-ENOENT naming the
 * first that does not): a caller's check of its input before the run. */
int otasim_runner_check_cases(const struct otasim_runner *r, struct ota_err *err) OTA_MUST;
int otasim_runner_run(struct otasim_runner *r, struct otasim_run_stats *ret,
                      struct ota_err *err) OTA_MUST;
void otasim_runner_free(struct otasim_runner *r);

#ifdef __cplusplus
}
#endif
#endif
