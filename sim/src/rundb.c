/* The run database over SQLite (WAL; one writer: the runner's parent
 * process) and the JUnit writer that reads it back. */
#include "otasim/rundb.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"

struct otasim_rundb {
    sqlite3 *db;
    sqlite3_stmt *fleet_sample, *fleet_device; /* prepared once per run */
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    /* no fsync per trial: the runner forks no new trial while it waits for
     * the disk. A crash of the machine may lose the last rows, never the
     * database (WAL). */
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, started_ms INTEGER, finished_ms "
    "INTEGER, command TEXT, agent TEXT);"
    "CREATE TABLE IF NOT EXISTS trials(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),"
    " case_id TEXT, scenario TEXT, scenario_file TEXT, fault TEXT, trigger TEXT, seed INTEGER,"
    " device_id TEXT, outcome TEXT, detail TEXT, final_version TEXT, final_slot TEXT,"
    " final_report TEXT, final_state TEXT, fired INTEGER, passes INTEGER, calls INTEGER,"
    " equivalent_to TEXT, started_ms INTEGER, duration_ms INTEGER, recover_ms INTEGER,"
    " reproduce TEXT, state_lines TEXT, target TEXT, logs TEXT, crash_model TEXT, blocks TEXT);"
    "CREATE TABLE IF NOT EXISTS invariants(trial_id INTEGER REFERENCES trials(id), name TEXT,"
    " ok INTEGER, detail TEXT);"
    "CREATE INDEX IF NOT EXISTS trials_run ON trials(run_id);"
    /* what a run does not show (reports/): kind "skipped" (a case the
     * target cannot run: subject its id, detail why) or "not-modelled" (what
     * the tier declares it does not model: subject the tier) */
    "CREATE TABLE IF NOT EXISTS run_gaps(run_id INTEGER REFERENCES runs(id), kind TEXT,"
    " subject TEXT, detail TEXT);"
    /* fleet runs (fleet.c): one row per run, its time series, its devices */
    "CREATE TABLE IF NOT EXISTS fleet_runs(id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES"
    " runs(id), name TEXT, file TEXT, seed INTEGER, ok INTEGER, rollout_state TEXT,"
    " stats TEXT, failed TEXT, rerun TEXT);"
    "CREATE TABLE IF NOT EXISTS fleet_samples(fleet_id INTEGER REFERENCES fleet_runs(id),"
    " t_ms INTEGER, rollout TEXT, stage INTEGER, counts TEXT);"
    "CREATE TABLE IF NOT EXISTS fleet_devices(fleet_id INTEGER REFERENCES fleet_runs(id),"
    " device TEXT, type TEXT, grp TEXT, version TEXT, state TEXT, outcome TEXT, bytes INTEGER,"
    " downtime_ms INTEGER, recovery_ms INTEGER, updates INTEGER, rollbacks INTEGER,"
    " cuts INTEGER, checks TEXT);"
    "CREATE INDEX IF NOT EXISTS fleet_devices_run ON fleet_devices(fleet_id);";

static int fail(struct otasim_rundb *db, struct ota_err *err, const char *what)
{
    return ota_err_set(err, EIO, "run database: %s: %s", what, sqlite3_errmsg(db->db));
}

int otasim_rundb_open(const char *path, struct otasim_rundb **ret, struct ota_err *err)
{
    struct otasim_rundb *db = calloc(1, sizeof(*db));

    if (!db)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (sqlite3_open(path, &db->db) != SQLITE_OK) {
        int r = ota_err_set(err, EIO, "run database %s: %s", path,
                            db->db ? sqlite3_errmsg(db->db) : "cannot open");
        otasim_rundb_close(db);
        return r;
    }
    sqlite3_busy_timeout(db->db, 10000);
    if (sqlite3_exec(db->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        int r = fail(db, err, "schema");
        otasim_rundb_close(db);
        return r;
    }
    /* a database from before the QEMU tier: the two columns it lacks */
    if (sqlite3_exec(db->db, "SELECT target, logs FROM trials LIMIT 0", NULL, NULL, NULL) !=
            SQLITE_OK &&
        (sqlite3_exec(db->db, "ALTER TABLE trials ADD COLUMN target TEXT", NULL, NULL, NULL) !=
             SQLITE_OK ||
         sqlite3_exec(db->db, "ALTER TABLE trials ADD COLUMN logs TEXT", NULL, NULL, NULL) !=
             SQLITE_OK)) {
        int r = fail(db, err, "schema upgrade");
        otasim_rundb_close(db);
        return r;
    }
    /* before the crash models: every power cut was rebuilt the minimal way
     * (NULL reads as that) */
    if (sqlite3_exec(db->db, "SELECT crash_model FROM trials LIMIT 0", NULL, NULL, NULL) !=
            SQLITE_OK &&
        sqlite3_exec(db->db, "ALTER TABLE trials ADD COLUMN crash_model TEXT", NULL, NULL, NULL) !=
            SQLITE_OK) {
        int r = fail(db, err, "schema upgrade");
        otasim_rundb_close(db);
        return r;
    }
    /* before block-level crash states (qblocks.c): no such rows */
    if (sqlite3_exec(db->db, "SELECT blocks FROM trials LIMIT 0", NULL, NULL, NULL) != SQLITE_OK &&
        sqlite3_exec(db->db, "ALTER TABLE trials ADD COLUMN blocks TEXT", NULL, NULL, NULL) !=
            SQLITE_OK) {
        int r = fail(db, err, "schema upgrade");
        otasim_rundb_close(db);
        return r;
    }
    *ret = db;
    return 0;
}

void otasim_rundb_close(struct otasim_rundb *db)
{
    if (!db)
        return;
    sqlite3_finalize(db->fleet_sample);
    sqlite3_finalize(db->fleet_device);
    sqlite3_close(db->db);
    free(db);
}

int otasim_rundb_begin(struct otasim_rundb *db, const char *command, const char *agent,
                       int64_t *ret_id, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    if (sqlite3_prepare_v2(db->db, "INSERT INTO runs(started_ms, command, agent) VALUES(?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return fail(db, err, "insert run");
    sqlite3_bind_int64(st, 1, otasim_wall_ms());
    sqlite3_bind_text(st, 2, command, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, agent, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = fail(db, err, "insert run");
    else
        *ret_id = sqlite3_last_insert_rowid(db->db);
    sqlite3_finalize(st);
    return r;
}

int otasim_rundb_gap(struct otasim_rundb *db, int64_t run_id, const char *kind, const char *subject,
                     const char *detail, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    if (sqlite3_prepare_v2(db->db,
                           "INSERT INTO run_gaps(run_id, kind, subject, detail) VALUES(?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, "insert gap");
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, subject, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, detail, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = fail(db, err, "insert gap");
    sqlite3_finalize(st);
    return r;
}

int otasim_rundb_gaps(struct otasim_rundb *db, int64_t run_id, const char *kind,
                      const char *subject, const char *const *details, struct ota_err *err)
{
    int r = 0;

    for (; *details && r == 0; details++)
        r = otasim_rundb_gap(db, run_id, kind, subject, *details, err);
    return r;
}

int otasim_rundb_fleet_begin(struct otasim_rundb *db, int64_t run_id, const char *name,
                             const char *file, uint64_t seed, int64_t *ret_id, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    if (sqlite3_exec(db->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "begin fleet run");
    if (sqlite3_prepare_v2(db->db,
                           "INSERT INTO fleet_runs(run_id, name, file, seed) VALUES(?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->db,
                           "INSERT INTO fleet_samples(fleet_id, t_ms, rollout, stage, counts)"
                           " VALUES(?,?,?,?,?)",
                           -1, &db->fleet_sample, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->db,
                           "INSERT INTO fleet_devices(fleet_id, device, type, grp, version, state,"
                           " outcome, bytes, downtime_ms, recovery_ms, updates, rollbacks, cuts,"
                           " checks) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &db->fleet_device, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return fail(db, err, "prepare fleet rows");
    }
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, file, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (int64_t)seed);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = fail(db, err, "insert fleet run");
    else
        *ret_id = sqlite3_last_insert_rowid(db->db);
    sqlite3_finalize(st);
    return r;
}

int otasim_rundb_fleet_sample(struct otasim_rundb *db, int64_t fleet_id, int64_t t_ms,
                              const char *rollout, int stage, const char *counts,
                              struct ota_err *err)
{
    sqlite3_stmt *st = db->fleet_sample;

    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, fleet_id);
    sqlite3_bind_int64(st, 2, t_ms);
    sqlite3_bind_text(st, 3, rollout, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, stage);
    sqlite3_bind_text(st, 5, counts, -1, SQLITE_TRANSIENT);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(db, err, "insert fleet sample");
}

int otasim_rundb_fleet_device(struct otasim_rundb *db, int64_t fleet_id,
                              const struct otasim_rundb_fleet_device *d, struct ota_err *err)
{
    sqlite3_stmt *st = db->fleet_device;
    const char *text[] = {d->device, d->type, d->group, d->version, d->state, d->outcome};
    const int64_t num[] = {(int64_t)d->bytes, d->downtime_ms, d->recovery_ms,
                           d->updates,        d->rollbacks,   d->cuts};
    int i = 1;

    sqlite3_reset(st);
    sqlite3_bind_int64(st, i++, fleet_id);
    for (size_t k = 0; k < sizeof(text) / sizeof(text[0]); k++)
        sqlite3_bind_text(st, i++, text[k] ? text[k] : "", -1, SQLITE_TRANSIENT);
    for (size_t k = 0; k < sizeof(num) / sizeof(num[0]); k++)
        sqlite3_bind_int64(st, i++, num[k]);
    sqlite3_bind_text(st, i, d->checks ? d->checks : "", -1, SQLITE_TRANSIENT);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : fail(db, err, "insert fleet device");
}

int otasim_rundb_fleet_end(struct otasim_rundb *db, int64_t fleet_id, int ok,
                           const char *rollout_state, const char *stats, const char *failed,
                           const char *rerun, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    sqlite3_finalize(db->fleet_sample);
    sqlite3_finalize(db->fleet_device);
    db->fleet_sample = db->fleet_device = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "UPDATE fleet_runs SET ok=?, rollout_state=?, stats=?, failed=?, rerun=?"
                           " WHERE id=?",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, "update fleet run");
    sqlite3_bind_int(st, 1, ok);
    sqlite3_bind_text(st, 2, rollout_state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, stats, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, failed, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, rerun, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, fleet_id);
    if (sqlite3_step(st) != SQLITE_DONE)
        r = fail(db, err, "update fleet run");
    sqlite3_finalize(st);
    if (sqlite3_exec(db->db, r == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK &&
        r == 0)
        r = fail(db, err, "commit fleet run");
    return r;
}

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

int otasim_rundb_fleet_last(struct otasim_rundb *db, struct otasim_rundb_fleet_run *ret,
                            struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    memset(ret, 0, sizeof(*ret));
    if (sqlite3_prepare_v2(db->db,
                           "SELECT id, name, file, seed, ok, rollout_state, stats, failed FROM"
                           " fleet_runs WHERE stats IS NOT NULL ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, "read fleet runs");
    if (sqlite3_step(st) != SQLITE_ROW) {
        r = ota_err_set(err, ENOENT, "no finished fleet run");
    } else {
        ret->id = sqlite3_column_int64(st, 0);
        ota_strlcpy(ret->name, col(st, 1), sizeof(ret->name));
        ota_strlcpy(ret->file, col(st, 2), sizeof(ret->file));
        ret->seed = sqlite3_column_int64(st, 3);
        ret->ok = sqlite3_column_int(st, 4);
        ota_strlcpy(ret->rollout_state, col(st, 5), sizeof(ret->rollout_state));
        ret->stats = strdup(col(st, 6));
        ret->failed = strdup(col(st, 7));
        if (!ret->stats || !ret->failed)
            r = ota_err_set(err, ENOMEM, "out of memory");
    }
    sqlite3_finalize(st);
    if (r < 0)
        otasim_rundb_fleet_run_free(ret);
    return r;
}

void otasim_rundb_fleet_run_free(struct otasim_rundb_fleet_run *r)
{
    free(r->stats);
    free(r->failed);
    r->stats = r->failed = NULL;
}

int otasim_rundb_fleet_devices_each(struct otasim_rundb *db, int64_t fleet_id,
                                    int (*fn)(void *ctx, const struct otasim_rundb_fleet_device *d),
                                    void *ctx, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0, rc;

    if (sqlite3_prepare_v2(db->db,
                           "SELECT device, type, grp, version, state, outcome, bytes, downtime_ms,"
                           " recovery_ms, updates, rollbacks, cuts, checks FROM fleet_devices"
                           " WHERE fleet_id=? ORDER BY device",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, "read fleet devices");
    sqlite3_bind_int64(st, 1, fleet_id);
    while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct otasim_rundb_fleet_device d = {
            .device = col(st, 0),
            .type = col(st, 1),
            .group = col(st, 2),
            .version = col(st, 3),
            .state = col(st, 4),
            .outcome = col(st, 5),
            .bytes = (uint64_t)sqlite3_column_int64(st, 6),
            .downtime_ms = sqlite3_column_int64(st, 7),
            .recovery_ms = sqlite3_column_int64(st, 8),
            .updates = sqlite3_column_int64(st, 9),
            .rollbacks = sqlite3_column_int64(st, 10),
            .cuts = sqlite3_column_int64(st, 11),
            .checks = col(st, 12),
        };
        r = fn(ctx, &d);
    }
    sqlite3_finalize(st);
    return r;
}

int otasim_rundb_fleet_samples_each(struct otasim_rundb *db, int64_t fleet_id,
                                    int (*fn)(void *ctx, int64_t t_ms, const char *rollout,
                                              int stage, const char *counts),
                                    void *ctx, struct ota_err *err)
{
    sqlite3_stmt *st = NULL;
    int r = 0;

    if (sqlite3_prepare_v2(db->db,
                           "SELECT t_ms, rollout, stage, counts FROM fleet_samples WHERE"
                           " fleet_id=? ORDER BY t_ms, rowid",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, "read fleet samples");
    sqlite3_bind_int64(st, 1, fleet_id);
    while (r >= 0 && sqlite3_step(st) == SQLITE_ROW)
        r = fn(ctx, sqlite3_column_int64(st, 0), col(st, 1), sqlite3_column_int(st, 2), col(st, 3));
    sqlite3_finalize(st);
    return r;
}

int otasim_rundb_end(struct otasim_rundb *db, int64_t run_id, struct ota_err *err)
{
    char sql[128];

    snprintf(sql, sizeof(sql), "UPDATE runs SET finished_ms=%lld WHERE id=%lld",
             (long long)otasim_wall_ms(), (long long)run_id);
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "end run");
    return 0;
}

int otasim_rundb_add(struct otasim_rundb *db, int64_t run_id, const char *case_id,
                     const struct otasim_trial *tr, const char *reproduce,
                     const char *equivalent_to, struct ota_err *err)
{
    static const char sql[] =
        "INSERT INTO trials(run_id, case_id, scenario, scenario_file, fault, trigger, seed,"
        " device_id, outcome, detail, final_version, final_slot, final_report, final_state, fired,"
        " passes, calls, equivalent_to, started_ms, duration_ms, recover_ms, reproduce,"
        " state_lines, target, logs, crash_model, blocks)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = NULL;
    char label[160];
    const char *at;
    int64_t id;
    int r = 0, i = 1;

    otasim_fault_label(&tr->fault, label, sizeof(label));
    at = strchr(label, '@');
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "begin");
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
        r = fail(db, err, "insert trial");
        goto out;
    }
    sqlite3_bind_int64(st, i++, run_id);
    sqlite3_bind_text(st, i++, case_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->sc->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->sc->path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, otasim_fault_kind_names[tr->fault.kind], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, i++,
                      tr->block_trigger[0] ? tr->block_trigger
                      : at                 ? at + 1
                                           : "start",
                      -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)tr->seed);
    sqlite3_bind_text(st, i++, tr->device_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, otasim_outcome_names[tr->outcome], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, i++, tr->detail, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->final_version, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->final_slot, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->final_report, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->final_state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, i++, tr->fired);
    sqlite3_bind_int(st, i++, tr->passes);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)tr->calls);
    sqlite3_bind_text(st, i++, equivalent_to ? equivalent_to : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, i++, tr->started_ms);
    sqlite3_bind_int64(st, i++, tr->duration_ms);
    sqlite3_bind_int64(st, i++, tr->recover_ms);
    sqlite3_bind_text(st, i++, reproduce, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->state_lines ? tr->state_lines : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->target[0] ? tr->target : "native", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, i++, tr->logs, -1, SQLITE_TRANSIENT);
    if (tr->block_model[0])
        sqlite3_bind_text(st, i++, tr->block_model, -1, SQLITE_TRANSIENT);
    else if (tr->fault.kind == OTASIM_FAULT_POWER_CUT &&
             tr->fault.crash_model < OTASIM_CRASH_MODEL_MAX)
        sqlite3_bind_text(st, i++, otasim_crash_model_names[tr->fault.crash_model], -1,
                          SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i++);
    if (tr->blocks)
        sqlite3_bind_text(st, i++, tr->blocks, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i++);
    if (sqlite3_step(st) != SQLITE_DONE) {
        r = fail(db, err, "insert trial");
        goto out;
    }
    id = sqlite3_last_insert_rowid(db->db);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "INSERT INTO invariants(trial_id, name, ok, detail) "
                           "VALUES(?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        r = fail(db, err, "insert invariant");
        goto out;
    }
    for (size_t k = 0; k < tr->n_checks; k++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, tr->checks[k].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, tr->checks[k].ok);
        sqlite3_bind_text(st, 4, tr->checks[k].detail, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) {
            r = fail(db, err, "insert invariant");
            goto out;
        }
    }
out:
    sqlite3_finalize(st);
    if (sqlite3_exec(db->db, r == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK &&
        r == 0)
        r = fail(db, err, "commit");
    return r;
}

static void xml_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\n' || *s == '\t')
                fputc(*s, f);
        }
    }
}

int otasim_rundb_junit(struct otasim_rundb *db, int64_t run_id, const char *path,
                       struct ota_err *err)
{
    sqlite3_stmt *st = NULL, *inv = NULL;
    char tmp[4096], cur[256] = "";
    FILE *f;
    int r = 0, open_suite = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return ota_err_set(err, errno, "%s: %s", tmp, strerror(errno));
    if (sqlite3_prepare_v2(db->db,
                           "SELECT id, scenario, case_id, outcome, detail, duration_ms, reproduce,"
                           " equivalent_to FROM trials WHERE run_id=? ORDER BY scenario, id",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->db, "SELECT name, detail FROM invariants WHERE trial_id=? AND ok=0",
                           -1, &inv, NULL) != SQLITE_OK) {
        r = fail(db, err, "junit query");
        goto out;
    }
    sqlite3_bind_int64(st, 1, run_id);
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ota-sim\">\n", f);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *scen = (const char *)sqlite3_column_text(st, 1);
        const char *outcome = (const char *)sqlite3_column_text(st, 3);
        if (strcmp(scen, cur) != 0) {
            if (open_suite)
                fputs("  </testsuite>\n", f);
            fputs("  <testsuite name=\"", f);
            xml_text(f, scen);
            fputs("\">\n", f);
            snprintf(cur, sizeof(cur), "%s", scen);
            open_suite = 1;
        }
        fputs("    <testcase classname=\"ota-sim.", f);
        xml_text(f, scen);
        fputs("\" name=\"", f);
        xml_text(f, (const char *)sqlite3_column_text(st, 2));
        fprintf(f, "\" time=\"%.3f\">\n", sqlite3_column_int64(st, 5) / 1000.0);
        if (strcmp(outcome, "not-run") == 0) {
            fputs("      <skipped message=\"", f);
            xml_text(f, (const char *)sqlite3_column_text(st, 4));
            fputs("\"/>\n", f);
        } else if (strcmp(outcome, "pass") != 0) {
            /* environment (a QEMU guest without its network, twice): an <error> of its
             * type, never a <failure> of the agent */
            fprintf(f, "      <%s %smessage=\"", strcmp(outcome, "fail") == 0 ? "failure" : "error",
                    strcmp(outcome, "environment") == 0 ? "type=\"environment\" " : "");
            xml_text(f, (const char *)sqlite3_column_text(st, 4));
            fputs("\">", f);
            sqlite3_reset(inv);
            sqlite3_bind_int64(inv, 1, sqlite3_column_int64(st, 0));
            while (sqlite3_step(inv) == SQLITE_ROW) {
                fputs("invariant ", f);
                xml_text(f, (const char *)sqlite3_column_text(inv, 0));
                fputs(": ", f);
                xml_text(f, (const char *)sqlite3_column_text(inv, 1));
                fputs("\n", f);
            }
            fputs("reproduce: ", f);
            xml_text(f, (const char *)sqlite3_column_text(st, 6));
            fprintf(f, "</%s>\n", strcmp(outcome, "fail") == 0 ? "failure" : "error");
        }
        if (sqlite3_column_text(st, 7) && sqlite3_column_text(st, 7)[0]) {
            /* not run: a passed copy is no pass of its own (a failed one
             * stays a failure, its trial's) */
            if (strcmp(outcome, "pass") == 0) {
                fputs("      <skipped message=\"equivalent to ", f);
                xml_text(f, (const char *)sqlite3_column_text(st, 7));
                fputs("\"/>\n", f);
            }
            fputs("      <system-out>equivalent to ", f);
            xml_text(f, (const char *)sqlite3_column_text(st, 7));
            fputs(" (not run: same durable state, same server view)</system-out>\n", f);
        }
        fputs("    </testcase>\n", f);
    }
    if (open_suite)
        fputs("  </testsuite>\n", f);
    fputs("</testsuites>\n", f);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(inv);
    if (fclose(f) != 0 && r == 0)
        r = ota_err_set(err, errno, "%s: %s", tmp, strerror(errno));
    if (r == 0 && rename(tmp, path) < 0)
        r = ota_err_set(err, errno, "%s: %s", path, strerror(errno));
    return r;
}
