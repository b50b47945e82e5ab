/* The invariant checker, run after every trial once the device settled.
 * Each check has a stable name (reports, the mutant tests and the
 * reproduce line use it):
 *   settled                the agent reached a quiet pass (only CHECKING/IDLE)
 *                          within the pass budget; it never exited 5 or died
 *                          of a signal it was not sent
 *   one-active-slot        app: `current` is a symlink to a or b; rootfs: the
 *                          env names A or B with no trial boot pending
 *   active-slot-complete   the active slot holds exactly the release the
 *                          agent's database names (tree digest / image hash)
 *   bootable               app: the service is active and /health answers
 *                          200; rootfs: the bootloader model booted the slot,
 *                          and (native) its service is up the same way
 *   running-version        the running version (app /version, booted image)
 *                          equals the agent's database
 *   bootenv-consistent     the env reads (CRC), bootcount 0, boot_part = the
 *                          database's slot; a corrupt env was left as it was
 *   lkg-untouched          no mutating call touched the factory slot (the
 *                          last-known-good) during the update
 *   active-slot-untouched  no mutating call wrote into the slot that was
 *                          active (current / booted) at that moment
 *   truthful-report        the server never got "success" for an update the
 *                          device does not run, and its last final report
 *                          says what happened (source github: the agent's
 *                          own history, as `ota-agent status --json` shows it)
 *   db-integrity           PRAGMA integrity_check of a copy of the agent's
 *                          database taken before anything opened it
 *   no-temp-files          no temp files, stash or download leftovers
 *   expected-outcome       the scenario's expect: block (the matrix: its
 *                          progress/rollback expectation, see matrix.yaml)
 *   fault-fired            the trial's fault actually happened (a trigger
 *                          whose state never came tests nothing): seen, not
 *                          armed (a journaled crash or failed call, the app
 *                          killed, the env read as corrupt...); and one check
 *                          per server rule of the scenario, passed only if
 *                          the server applied it to the trial's device
 *                          (struct otasim_trial.srv_rules, faults.c)
 *
 * A missing input is a failure, never a skipped check: reports that cannot
 * be fetched fail truthful-report; a pass whose journal is missing (the
 * interposer creates it when it is loaded, nothing else does) or holds no
 * record fails lkg-untouched and active-slot-untouched.
 *
 * otasim_invariants_check gathers a view of the device (otasim_inv_view_load)
 * and runs the table otasim_invariants on it: per invariant its name, its
 * function and which trials it applies to. The functions read only the
 * view (and the files it names), so a test can hand-make one: a tree, an env,
 * journals in the interposer's format, a status JSON, reports. */
#ifndef OTASIM_INVARIANTS_H
#define OTASIM_INVARIANTS_H

#include <stdarg.h>

#include <jansson.h>
#include "otasim/device.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_pass_info {
    char journal[PATH_MAX + 32]; /* "" : the agent did not run (the device did not boot) */
    char current[8];             /* app slot `current` named when the pass started */
    int booted;                  /* rootfs slot booted when the pass started (-1) */
};

struct otasim_settle {
    int settled;
    char why[256];      /* when not */
    int64_t recover_ms; /* from the fault to settled */
};

/* Fills d->tr->checks and d->tr->outcome (PASS or FAIL). */
int otasim_invariants_check(struct otasim_device *d, const struct otasim_pass_info *passes,
                            size_t n_passes, const struct otasim_settle *settle,
                            const char *env_before, size_t env_before_len,
                            struct ota_err *err) OTA_MUST;

/* ---- the checker's parts, for tests ------------------------------------- */

/* What the checks look at. The first block is the trial's own (pointers, not
 * owned); the rest otasim_inv_view_load gathers from the device. */
struct otasim_inv_view {
    const struct otasim_device *d; /* root, qemu, env_config, part, boot, booted_*, probe_*,
                                      slot_version, health/commit_enter_ms; d->tr the trial */
    const struct otasim_pass_info *passes;
    size_t n_passes;
    const struct otasim_settle *settle;
    const char *env_before; /* corrupt-bootenv: the env as the fault left it */
    size_t env_before_len;

    /* `ota-agent status --json` (otasim_inv_view_status fills the rest) */
    json_t *status; /* owned; NULL: the status could not be read */
    char status_err[200];
    char state[24];
    char app_version[32], app_slot[4];
    char root_version[32], root_slot[4];
    const char *db_version, *db_slot; /* app_* or root_* by profile */
    long long outbox;
    /* final reports, oldest first ({status, version} objects): the server's
     * (fleet) or the agent's history (github) */
    json_t *reports;       /* owned; NULL: could not be read (reports_err says why) */
    char reports_from[16]; /* "server" | "history" */
    char reports_err[256];
    char fin[16]; /* the last final report's status, "" none */
    /* the device */
    char current[8];        /* readlink ROOT/opt/app/current */
    char running[32];       /* app /version, booted image (rootfs), probe (qemu) */
    int svc_active;         /* native app: `ota-sim svc is-active` said yes */
    long health;            /* native app: /health status, 0 no answer */
    char health_err[160];   /* why not */
    char db_copy[PATH_MAX]; /* the database copy db-integrity checks ("" none) */
    char db_copy_err[256];  /* why there is none */
    /* the passes' journals (otasim_inv_view_journals) */
    struct otasim_inv_writes {
        int read;          /* the journals were read */
        char missing[300]; /* a pass whose journal is missing or holds no record */
        char lkg[256];     /* first write into the factory slot */
        char active[256];  /* first write into the then-active slot */
        uint64_t download_bytes;
    } writes;
    char found_state[24]; /* the state the agent found when it first ran after the fault:
                             the "from" of its first state line after the CRASH record */
    int in_memory;        /* a fleet run's in-memory device: only in_memory invariants */
};

/* Copies the agent's database (DB, DB-wal, DB-journal) into dir, before
 * anything opens it (opening replays the WAL, and a start of the agent may
 * move a bad database aside). *ret_copy: the copy of DB. -ENOENT if DB does
 * not exist. */
int otasim_inv_copy_db(const char *db, const char *dir, char *ret_copy, size_t cap,
                       struct ota_err *err) OTA_MUST;
/* Gathers the view (the database copy first, then `ota-agent status`, the
 * server's reports, the app's answers). Missing pieces are recorded in the
 * view for the checks to fail on; -errno only when the harness failed. */
int otasim_inv_view_load(struct otasim_device *d, const struct otasim_pass_info *passes,
                         size_t n_passes, const struct otasim_settle *settle,
                         const char *env_before, size_t env_before_len, struct otasim_inv_view *ret,
                         struct ota_err *err) OTA_MUST;
/* Takes status (owned from then on; NULL: none) and fills state, versions,
 * slots, outbox; source github: reports from its history. */
void otasim_inv_view_status(struct otasim_inv_view *v, json_t *status);
/* Takes reports (a JSON array, oldest first; owned) and sets fin. */
void otasim_inv_view_reports(struct otasim_inv_view *v, json_t *reports, const char *from);
void otasim_inv_view_free(struct otasim_inv_view *v);

/* Reads the journals of v->passes into v->writes and v->found_state. Slot
 * and journal paths are compared with their parent directories resolved
 * (realpath), as the interposer records them. */
void otasim_inv_view_journals(struct otasim_inv_view *v);

/* One function per invariant: each fills *ret and returns 1 (0: no check to
 * report). Each assumes the invariant applies to the trial: the table says
 * when it does (otasim_inv_applies). */
int otasim_inv_settled(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_fault_fired(const struct otasim_inv_view *v, struct otasim_check *ret);
/* fault-fired for the i-th server rule of the scenario (0 past the last). */
int otasim_inv_server_rule_fired(const struct otasim_inv_view *v, size_t i,
                                 struct otasim_check *ret);
int otasim_inv_one_active_slot(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_active_slot_complete(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_bootable(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_running_version(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_bootenv_consistent(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_lkg_untouched(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_active_slot_untouched(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_truthful_report(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_db_integrity(const struct otasim_inv_view *v, struct otasim_check *ret);
/* The agent's state in a copy of its database (block-level crash states):
 * its journal row's state, IDLE without one (or without the table yet: the
 * agent's next start makes it), "(unreadable)" when the row cannot be read. */
void otasim_inv_db_state(const char *db, char *buf, size_t cap);
/* Fills one check (its name, verdict and detail from fmt). */
void otasim_check_vset(struct otasim_check *c, const char *name, int ok, const char *fmt,
                       va_list ap);
int otasim_inv_no_temp_files(const struct otasim_inv_view *v, struct otasim_check *ret);
int otasim_inv_expected_outcome(const struct otasim_inv_view *v, struct otasim_check *ret);
/* blue_green: no switch before the harness activated the rollout (the agent
 * waits in STANDBY, across power cuts, until the server says so). */
int otasim_inv_standby_waits(const struct otasim_inv_view *v, struct otasim_check *ret);

/* Which trials an invariant applies to. */
enum otasim_inv_scope {
    OTASIM_INV_ALL,        /* every trial */
    OTASIM_INV_ROOTFS,     /* rootfs-profile devices (the bootloader env) */
    OTASIM_INV_NATIVE,     /* native devices (the interposer's journals; QEMU has none) */
    OTASIM_INV_FAULTED,    /* trials with a fault of their own */
    OTASIM_INV_BLUE_GREEN, /* scenarios with `rollout: blue_green` */
    OTASIM_INV_STATE_DB,   /* agents that keep a database (their adapter's state_db) */
    OTASIM_INV_SCOPE_MAX
};

/* One entry of the checker: check gives one check; each gives the i-th of a
 * list of them (0 past the last). */
struct otasim_invariant {
    const char *name;
    int (*check)(const struct otasim_inv_view *v, struct otasim_check *ret);
    int (*each)(const struct otasim_inv_view *v, size_t i, struct otasim_check *ret);
    enum otasim_inv_scope scope;
    /* 1: it also applies to a fleet run's in-memory devices (fleet_check.c),
     * which have no files: no tree, journal, database or env to read. */
    int in_memory;
};

/* The invariants in report order. */
extern const struct otasim_invariant otasim_invariants[];
extern const size_t otasim_n_invariants;
/* The entry with a check function named name; NULL if there is none. */
const struct otasim_invariant *otasim_inv_find(const char *name);
/* Whether inv applies to the trial of v (1) or not (0). */
int otasim_inv_applies(const struct otasim_invariant *inv, const struct otasim_inv_view *v);

#ifdef __cplusplus
}
#endif
#endif
