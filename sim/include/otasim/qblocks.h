/* Block-level crash states of one update on a QEMU machine (issue 16,
 * docs/blocks.md): record once, check every crash state on the host, boot a
 * sample.
 *
 * 1. The recording: the scenario's update run once with no fault, the
 *    guest's disk behind QEMU's blklogwrites driver; the starting disk kept
 *    raw beside the log, and each agent state line noted with the log's entry
 *    count when it reached the console. The log is proved whole: replayed onto
 *    the starting disk it gives the disk QEMU ran on, byte for byte. Kept in
 *    WORK/qemu-blocks/<scenario>-<profile>-<hash>/ (recording.json says what
 *    it is) and reused while the scenario, image, agent and profile are the
 *    same.
 * 2. Every crash point of the board's unit (raspi3b: each write; virt: each
 *    flush) checked without booting (otasim/blkcheck.h), in -j workers.
 * 3. A booted sample: the first state of every distinct checked outcome, then
 *    a seeded sample of the rest, up to boot_sample boots, each through the
 *    real boot chain (U-Boot on raspi3b) and the same invariant checker as
 *    every trial, plus predicted-outcome: the slot booted and the state the
 *    agent resumed from are the predicted ones.
 * Every state is a row of the run database (its blocks column: JSON). */
#ifndef OTASIM_QBLOCKS_H
#define OTASIM_QBLOCKS_H

#include "otasim/blklog.h"
#include "otasim/rundb.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_qblocks_opts {
    int jobs;                      /* check workers (default 2) */
    int boot_sample;               /* boots at most (distinct outcomes first); 0 none */
    uint64_t seed;                 /* the boot sample's */
    int unit;                      /* enum otasim_blk_unit, or -1: the board's */
    int recheck;                   /* record again even if a recording is cached */
    struct otasim_blk_model model; /* torn writes, erase-block damage: on every point (and boot) */
};

struct otasim_qblocks_result {
    char unit[8];      /* "write" | "flush" */
    char model[16];    /* "" | "torn" | "erase" | "torn+erase" */
    uint64_t modelled; /* points the model changed (the others: the plain state) */
    char rec_dir[PATH_MAX];
    uint64_t entries; /* log entries */
    uint64_t points;
    uint64_t checked;      /* read (the check's work done on the state) */
    uint64_t evaluated;    /* of them with a new reading: the invariants ran */
    uint64_t same_disk;    /* nothing the device uses changed: not read, result shared */
    uint64_t same_reading; /* read, the same reading as the state before: result shared */
    uint64_t failed;       /* evaluated states that failed an invariant */
    uint64_t part_reads, part_reused;
    uint64_t outcomes;       /* distinct predicted outcomes among the checked states */
    int64_t record_ms;       /* 0: the recording was cached */
    int64_t check_ms;        /* wall time of the check phase */
    int boots, boots_failed; /* booted sample, and how many failed (any check) */
    int mismatches;          /* booted outcome != predicted */
    int outcomes_booted;     /* distinct outcomes with a boot */
    int64_t boot_ms;         /* wall time of the booted sample */
};

/* tr: the scenario's trial (its server up, releases built, device id and
 * dir set; no fault). Rows go to db/run_id. -errno when the harness failed
 * (the recording could not be made or proved, a tool missing). */
int otasim_qblocks_run(const struct otasim_tools *t, struct otasim_trial *tr,
                       const struct otasim_qblocks_opts *o, struct otasim_rundb *db, int64_t run_id,
                       struct otasim_qblocks_result *res, struct ota_err *err) OTA_MUST;

/* ota-sim blocks check: one state of a recording checked again and
 * printed (the reproduce command of a row), under the models m (may be
 * NULL); out non-NULL: the state's raw disk written there too. Exit-style: 0
 * passed, 1 failed, -errno harness. */
int otasim_qblocks_check_one(const char *rec_dir, uint64_t point, const struct otasim_blk_model *m,
                             const char *out, struct ota_err *err) OTA_MUST;
/* The same over the points first..last (one checker moved forward, as a
 * check worker): each judged state printed, shared ones counted, then a
 * summary line (points, checked, failed, bootenv_unreadable). out: one
 * point only. 0 all passed, 1 one failed, -errno harness. */
int otasim_qblocks_check_range(const char *rec_dir, uint64_t first, uint64_t last,
                               const struct otasim_blk_model *m, const char *out,
                               struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
