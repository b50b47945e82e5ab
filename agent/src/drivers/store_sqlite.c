/* Store over SQLite: the update journal (one row), the outbox of reports not
 * yet delivered, the history of finished updates and a few settings, in one
 * database file on the data partition.
 *
 * WAL with synchronous=FULL: a COMMIT returns only once the WAL is fsynced, so
 * a saved state survives a power cut, and a save that did not commit leaves
 * no trace. save() writes journal, report and history in one transaction so
 * the three never disagree after a crash.
 *
 * A database that cannot be read (garbage, truncated, a failed quick_check,
 * a schema from a newer agent) is moved aside as path.broken and replaced by
 * a new one: an agent that cannot start cannot be updated out of its
 * trouble, while an empty journal only means "IDLE". Errors that say nothing
 * about the file itself (EACCES, ENOSPC, EIO, a lock held by someone else)
 * are returned instead: moving a sound database aside would lose it. */
#include "ota/crypto.h"
#include "ota/drivers.h"
#include "ota/faultpoint.h"
#include "ota/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define SCHEMA_VERSION  2
#define BUSY_TIMEOUT_MS 5000

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS journal ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " state TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
    " manifest TEXT NOT NULL, signature TEXT NOT NULL, url TEXT NOT NULL, etag TEXT NOT NULL,"
    " from_slot INTEGER NOT NULL, to_slot INTEGER NOT NULL, from_version TEXT NOT NULL,"
    " durable_len INTEGER NOT NULL, prefix_sha256 TEXT NOT NULL, resumes INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, failed INTEGER NOT NULL, reason TEXT NOT NULL,"
    " wait_activation INTEGER NOT NULL DEFAULT 0, not_after_ms INTEGER NOT NULL DEFAULT 0,"
    " standby_since_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " device_id TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
    " version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL,"
    " reason TEXT NOT NULL, ts_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS history ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " update_id TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,"
    " kind TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, ts_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/* Version 1 -> 2: the journal's blue-green columns (STANDBY). */
static const char migrate_v2_sql[] =
    "ALTER TABLE journal ADD COLUMN wait_activation INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE journal ADD COLUMN not_after_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE journal ADD COLUMN standby_since_ms INTEGER NOT NULL DEFAULT 0;";

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_JOURNAL_LOAD,
    ST_JOURNAL_SAVE,
    ST_OUTBOX_ADD,
    ST_OUTBOX_PEEK,
    ST_OUTBOX_POP,
    ST_OUTBOX_COUNT,
    ST_HISTORY_ADD,
    ST_HISTORY_LIST,
    ST_KV_GET,
    ST_KV_SET,
    ST_KV_DEL,
    ST_MAX,
};

static const char *const stmt_sql[ST_MAX] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_JOURNAL_LOAD] = "SELECT state, update_id, rollout_id, manifest, signature, url, etag,"
                        " from_slot, to_slot, from_version, durable_len, prefix_sha256, resumes,"
                        " attempts, failed, reason, wait_activation, not_after_ms,"
                        " standby_since_ms FROM journal WHERE id = 1",
    [ST_JOURNAL_SAVE] = "INSERT OR REPLACE INTO journal (id, state, update_id, rollout_id,"
                        " manifest, signature, url, etag, from_slot, to_slot, from_version,"
                        " durable_len, prefix_sha256, resumes, attempts, failed, reason,"
                        " wait_activation, not_after_ms, standby_since_ms)"
                        " VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                        " ?15, ?16, ?17, ?18, ?19)",
    [ST_OUTBOX_ADD] = "INSERT INTO outbox (device_id, update_id, rollout_id, version, kind, state,"
                      " status, reason, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_OUTBOX_PEEK] = "SELECT id, device_id, update_id, rollout_id, version, kind, state, status,"
                       " reason, ts_ms FROM outbox ORDER BY id LIMIT 1",
    [ST_OUTBOX_POP] = "DELETE FROM outbox WHERE id = ?1",
    [ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox",
    [ST_HISTORY_ADD] = "INSERT INTO history (update_id, version, from_version, kind, status,"
                       " reason, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_HISTORY_LIST] = "SELECT update_id, version, from_version, kind, status, reason, ts_ms"
                        " FROM history ORDER BY id DESC LIMIT ?1",
    [ST_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [ST_KV_SET] = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
    [ST_KV_DEL] = "DELETE FROM kv WHERE key = ?1",
};

struct ota_sqlite {
    sqlite3 *db;
    sqlite3_stmt *st[ST_MAX];
    char path[PATH_MAX];
    int was_reset;
    char reset_reason[2 * PATH_MAX + 1024];
};

/* ---- errors ---- */

static int rc_errno(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return ENOSPC;
    case SQLITE_IOERR:
        return EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return EBADMSG;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EBUSY;
    case SQLITE_NOMEM:
        return ENOMEM;
    case SQLITE_READONLY:
        return EROFS;
    case SQLITE_CANTOPEN: {
        /* Say why the file could not be opened (ENOENT dir, EACCES...). */
        int sys = db ? sqlite3_system_errno(db) : 0;
        return sys > 0 ? sys : EIO;
    }
    default:
        return EIO;
    }
}

static int db_fail(sqlite3 *db, int rc, struct ota_err *err, const char *what)
{
    return ota_err_set(err, rc_errno(db, rc), "store: %s: %s (sqlite %d)", what,
                       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
}

/* The file is not a sound database: move it aside rather than fail. */
static int rc_is_broken(int rc)
{
    return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

/* ---- statements ---- */

static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no row. */
static int run(struct ota_sqlite *s, enum stmt_id id, struct ota_err *err, const char *what)
{
    sqlite3_stmt *st = s->st[id];
    int rc = sqlite3_step(st);
    int r = 0;

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = db_fail(s->db, rc, err, what);
    stmt_done(st);
    return r;
}

static int bind_str(sqlite3_stmt *st, int i, const char *v, size_t cap)
{
    /* Fields are fixed arrays: never read past them even if unterminated. */
    return sqlite3_bind_text(st, i, v, (int)strnlen(v, cap), SQLITE_STATIC);
}

#define BIND_STR(st, i, field) bind_str((st), (i), (field), sizeof(field))

/* Copies a text column into buf; -EBADMSG if it does not fit. */
static int col_str(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;

    if (n >= cap)
        return -EBADMSG;
    if (n > 0)
        memcpy(buf, t, n);
    buf[n] = '\0';
    return 0;
}

#define COL_STR(st, i, field) col_str((st), (i), (field), sizeof(field))

/* ---- open, check, move aside ---- */

/* First column of the first row of sql as text ("" if none). */
static int query_text(sqlite3 *db, const char *sql, char *buf, size_t cap, int *ret_rc)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    buf[0] = '\0';
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(buf, cap, "%s", t ? (const char *)t : "");
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    *ret_rc = rc;
    return rc == SQLITE_OK ? 0 : -1;
}

static void close_db(struct ota_sqlite *s, int keep_wal)
{
    for (int i = 0; i < ST_MAX; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    if (s->db && keep_wal) {
        /* A broken database is evidence: do not checkpoint its WAL into it. */
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    }
    sqlite3_close(s->db);
    s->db = NULL;
}

/* Opens s->path. 0: ready; 1: the file is not a sound database of ours (why
 * says how; s->db is still open so its WAL can be kept); <0: error.
 * ro: read only (status): no create, no migration; an older schema is 1 too. */
static int try_open(struct ota_sqlite *s, int ro, char *why, size_t whycap, struct ota_err *err)
{
    char text[256];
    int rc;
    long version;

    rc = sqlite3_open_v2(s->path, &s->db,
                         (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        int r = db_fail(s->db, rc, err, s->path);
        close_db(s, 0);
        return r;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

    /* The first statement that reads the header: garbage shows up here. */
    if (query_text(s->db, ro ? "PRAGMA journal_mode" : "PRAGMA journal_mode=WAL", text,
                   sizeof(text), &rc) < 0)
        goto fail_rc;
    if (!ro && strcmp(text, "wal") != 0)
        return ota_err_set(err, EIO, "store: %s: cannot use WAL (journal mode is \"%s\")", s->path,
                           text);
    if (query_text(s->db, "PRAGMA quick_check", text, sizeof(text), &rc) < 0)
        goto fail_rc;
    if (strcmp(text, "ok") != 0) {
        snprintf(why, whycap, "quick_check: %s", text);
        return 1;
    }
    if (query_text(s->db, "PRAGMA user_version", text, sizeof(text), &rc) < 0)
        goto fail_rc;
    version = strtol(text, NULL, 10);
    if (version > SCHEMA_VERSION) {
        snprintf(why, whycap, "schema version %ld is newer than this agent's %d", version,
                 SCHEMA_VERSION);
        return 1;
    }
    if (version < SCHEMA_VERSION && ro) {
        snprintf(why, whycap, "schema version %ld is older than this agent's %d", version,
                 SCHEMA_VERSION);
        return 1;
    }
    if (version < SCHEMA_VERSION) {
        /* New file (0): the schema; version 1: its migration. Inside the
         * transaction. */
        char *msg = NULL;
        char sql[sizeof(schema_sql) + 128];

        snprintf(sql, sizeof(sql), "BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
                 version == 1 ? migrate_v2_sql : schema_sql, SCHEMA_VERSION);
        rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        sqlite3_free(msg);
        if (rc != SQLITE_OK) {
            if (!sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            goto fail_rc;
        }
    }
    rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        goto fail_rc;
    for (int i = 0; i < ST_MAX; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc == SQLITE_ERROR) {
            /* Our version number but not our tables. */
            snprintf(why, whycap, "schema: %s", sqlite3_errmsg(s->db));
            return 1;
        }
        if (rc != SQLITE_OK)
            goto fail_rc;
    }
    return 0;

fail_rc:
    if (rc_is_broken(rc)) {
        snprintf(why, whycap, "%s", sqlite3_errmsg(s->db));
        return 1;
    }
    return db_fail(s->db, rc, err, s->path);
}

/* Renames path(-wal, -shm) to path.broken(-wal, -shm), WAL first: a WAL left
 * behind would be replayed into the new database. A stale .broken-wal of an
 * older reset is removed so that path.broken opens with its own WAL. */
static int move_aside(const char *path, struct ota_err *err)
{
    static const char *const from_sfx[] = {"-wal", "-shm", ""};
    static const char *const to_sfx[] = {".broken-wal", ".broken-shm", ".broken"};
    char from[PATH_MAX + 16], to[PATH_MAX + 16];

    for (size_t i = 0; i < sizeof(from_sfx) / sizeof(from_sfx[0]); i++) {
        snprintf(from, sizeof(from), "%s%s", path, from_sfx[i]);
        snprintf(to, sizeof(to), "%s%s", path, to_sfx[i]);
        if (rename(from, to) == 0)
            continue;
        if (errno != ENOENT)
            return ota_err_set(err, errno, "store: rename %s to %s: %s", from, to, strerror(errno));
        if (unlink(to) < 0 && errno != ENOENT)
            return ota_err_set(err, errno, "store: unlink %s: %s", to, strerror(errno));
    }
    return ota_fs_sync_parent(path, err);
}

/* A store for path, not yet open. */
static int store_new(const char *path, struct ota_sqlite **ret, struct ota_err *err)
{
    struct ota_sqlite *s;

    if (!path || strlen(path) + sizeof(".broken-wal") > sizeof(s->path))
        return ota_err_set(err, ENAMETOOLONG, "store: bad database path");
    s = calloc(1, sizeof(*s));
    if (!s)
        return ota_err_set(err, ENOMEM, "store: out of memory");
    snprintf(s->path, sizeof(s->path), "%s", path);
    *ret = s;
    return 0;
}

/* quick_check lists problems one a line: one line for a reason. */
static void one_line(char *why)
{
    for (char *p = why; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

int ota_sqlite_open(const char *path, struct ota_sqlite **ret, struct ota_err *err)
{
    struct ota_sqlite *s = NULL;
    char why[512] = "";
    int r;

    if ((r = store_new(path, &s, err)) < 0)
        return r;

    r = try_open(s, 0, why, sizeof(why), err);
    if (r == 1) {
        close_db(s, 1);
        r = move_aside(s->path, err);
        if (r < 0)
            goto out;
        one_line(why);
        s->was_reset = 1;
        snprintf(s->reset_reason, sizeof(s->reset_reason),
                 "database %s was unusable (%s): moved to %s.broken, started a new one", s->path,
                 why, s->path);
        r = try_open(s, 0, why, sizeof(why), err);
        if (r == 1)
            r = ota_err_set(err, EIO, "store: new database %s unusable: %s", s->path, why);
    }
out:
    if (r < 0) {
        ota_sqlite_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

/* No database yet: an empty one in memory, so that reads find nothing. */
static int open_empty(struct ota_sqlite *s, struct ota_err *err)
{
    int rc = sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
    for (int i = 0; i < ST_MAX && rc == SQLITE_OK; i++)
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s->db, rc, err, "empty store");
}

int ota_sqlite_open_ro(const char *path, struct ota_sqlite **ret, struct ota_err *err)
{
    struct ota_sqlite *s = NULL;
    char why[512] = "";
    int r;

    if ((r = store_new(path, &s, err)) < 0)
        return r;
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        r = open_empty(s, err);
    } else {
        r = try_open(s, 1, why, sizeof(why), err);
        one_line(why);
        if (r == 1)
            r = ota_err_set(err, EBADMSG,
                            "database %s cannot be read (%s); left as it is: the next "
                            "'ota-agent update' moves a broken one aside (%s.broken) and "
                            "starts a new one, or migrates an older one",
                            path, why, path);
    }
    if (r < 0) {
        close_db(s, 1);
        free(s);
        return r;
    }
    *ret = s;
    return 0;
}

void ota_sqlite_close(struct ota_sqlite *s)
{
    if (!s)
        return;
    close_db(s, 0);
    free(s);
}

const char *ota_sqlite_reset_reason(const struct ota_sqlite *s)
{
    return s && s->was_reset ? s->reset_reason : NULL;
}

/* ---- journal ---- */

static int journal_load(void *ctx, struct ota_journal *ret, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;
    sqlite3_stmt *st = s->st[ST_JOURNAL_LOAD];
    struct ota_journal *j = NULL;
    char state[32], hex[2 * OTA_SHA256_LEN + 1];
    int rc, r = 0;

    j = calloc(1, sizeof(*j));
    if (!j)
        return ota_err_set(err, ENOMEM, "store: out of memory");
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "store: no journal yet");
        goto out;
    }
    if (rc != SQLITE_ROW) {
        r = db_fail(s->db, rc, err, "load journal");
        goto out;
    }
    if (COL_STR(st, 0, state) < 0 || COL_STR(st, 1, j->update_id) < 0 ||
        COL_STR(st, 2, j->rollout_id) < 0 || COL_STR(st, 3, j->manifest) < 0 ||
        COL_STR(st, 4, j->signature) < 0 || COL_STR(st, 5, j->url) < 0 ||
        COL_STR(st, 6, j->etag) < 0 || COL_STR(st, 9, j->from_version) < 0 ||
        COL_STR(st, 11, hex) < 0 || COL_STR(st, 15, j->reason) < 0) {
        r = ota_err_set(err, EBADMSG, "store: journal field too long");
        goto out;
    }
    if (ota_state_from_name(state, &j->state) < 0) {
        r = ota_err_set(err, EBADMSG, "store: journal has unknown state \"%s\"", state);
        goto out;
    }
    if (ota_hex_decode(hex, j->prefix_sha256, OTA_SHA256_LEN) < 0) {
        r = ota_err_set(err, EBADMSG, "store: journal has a bad prefix_sha256 \"%s\"", hex);
        goto out;
    }
    j->from_slot = sqlite3_column_int(st, 7);
    j->to_slot = sqlite3_column_int(st, 8);
    j->durable_len = (uint64_t)sqlite3_column_int64(st, 10);
    j->resumes = (uint32_t)sqlite3_column_int64(st, 12);
    j->attempts = (uint32_t)sqlite3_column_int64(st, 13);
    j->failed = sqlite3_column_int(st, 14);
    j->wait_activation = sqlite3_column_int(st, 16);
    j->not_after_ms = sqlite3_column_int64(st, 17);
    j->standby_since_ms = sqlite3_column_int64(st, 18);
    *ret = *j;
out:
    stmt_done(st);
    free(j);
    return r;
}

static int bind_journal(sqlite3_stmt *st, const struct ota_journal *j)
{
    char hex[2 * OTA_SHA256_LEN + 1];
    int rc = 0;

    ota_hex_encode(j->prefix_sha256, OTA_SHA256_LEN, hex);
    rc |= sqlite3_bind_text(st, 1, ota_state_names[j->state], -1, SQLITE_STATIC);
    rc |= BIND_STR(st, 2, j->update_id);
    rc |= BIND_STR(st, 3, j->rollout_id);
    rc |= BIND_STR(st, 4, j->manifest);
    rc |= BIND_STR(st, 5, j->signature);
    rc |= BIND_STR(st, 6, j->url);
    rc |= BIND_STR(st, 7, j->etag);
    rc |= sqlite3_bind_int(st, 8, j->from_slot);
    rc |= sqlite3_bind_int(st, 9, j->to_slot);
    rc |= BIND_STR(st, 10, j->from_version);
    rc |= sqlite3_bind_int64(st, 11, (sqlite3_int64)j->durable_len);
    rc |= sqlite3_bind_text(st, 12, hex, -1, SQLITE_TRANSIENT);
    rc |= sqlite3_bind_int64(st, 13, j->resumes);
    rc |= sqlite3_bind_int64(st, 14, j->attempts);
    rc |= sqlite3_bind_int(st, 15, j->failed);
    rc |= BIND_STR(st, 16, j->reason);
    rc |= sqlite3_bind_int(st, 17, j->wait_activation);
    rc |= sqlite3_bind_int64(st, 18, j->not_after_ms);
    rc |= sqlite3_bind_int64(st, 19, j->standby_since_ms);
    return rc;
}

static int bind_report(sqlite3_stmt *st, const struct ota_report *r)
{
    int rc = 0;

    rc |= BIND_STR(st, 1, r->device_id);
    rc |= BIND_STR(st, 2, r->update_id);
    rc |= BIND_STR(st, 3, r->rollout_id);
    rc |= BIND_STR(st, 4, r->version);
    rc |= BIND_STR(st, 5, r->kind);
    rc |= BIND_STR(st, 6, r->state);
    rc |= BIND_STR(st, 7, r->status);
    rc |= BIND_STR(st, 8, r->reason);
    rc |= sqlite3_bind_int64(st, 9, r->ts_ms);
    return rc;
}

static int bind_history(sqlite3_stmt *st, const struct ota_history *h)
{
    int rc = 0;

    rc |= BIND_STR(st, 1, h->update_id);
    rc |= BIND_STR(st, 2, h->version);
    rc |= BIND_STR(st, 3, h->from_version);
    rc |= BIND_STR(st, 4, h->kind);
    rc |= BIND_STR(st, 5, h->status);
    rc |= BIND_STR(st, 6, h->reason);
    rc |= sqlite3_bind_int64(st, 7, h->ts_ms);
    return rc;
}

/* Binds (bind returned rc, OR-ed: nonzero means some bind failed) and runs. */
static int bind_run(struct ota_sqlite *s, enum stmt_id id, int bind_rc, struct ota_err *err,
                    const char *what)
{
    if (bind_rc != SQLITE_OK) {
        int r = db_fail(s->db, sqlite3_errcode(s->db), err, what);
        stmt_done(s->st[id]);
        return r;
    }
    return run(s, id, err, what);
}

static int journal_save(void *ctx, const struct ota_journal *j, const struct ota_report *rep,
                        const struct ota_history *h, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;
    int r;

    if (!j || j->state < 0 || j->state >= OTA_STATE_MAX)
        return ota_err_set(err, EINVAL, "store: journal with an invalid state");
    r = run(s, ST_BEGIN, err, "begin");
    if (r < 0)
        return r;
    r = bind_run(s, ST_JOURNAL_SAVE, bind_journal(s->st[ST_JOURNAL_SAVE], j), err, "save journal");
    if (r == 0 && rep)
        r = bind_run(s, ST_OUTBOX_ADD, bind_report(s->st[ST_OUTBOX_ADD], rep), err, "queue report");
    if (r == 0 && h)
        r = bind_run(s, ST_HISTORY_ADD, bind_history(s->st[ST_HISTORY_ADD], h), err, "add history");
    if (r == 0) {
        OTA_FAULT_POINT("store.save.before_commit");
        r = run(s, ST_COMMIT, err, "commit");
    }
    if (r < 0 && !sqlite3_get_autocommit(s->db))
        (void)run(s, ST_ROLLBACK, NULL, "rollback");
    return r;
}

/* ---- outbox and history ---- */

static int outbox_peek(void *ctx, struct ota_report *ret, int64_t *ret_id, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;
    sqlite3_stmt *st = s->st[ST_OUTBOX_PEEK];
    struct ota_report rep;
    int64_t id;
    int rc, r = 0;

    memset(&rep, 0, sizeof(rep));
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "store: outbox is empty");
        goto out;
    }
    if (rc != SQLITE_ROW) {
        r = db_fail(s->db, rc, err, "peek outbox");
        goto out;
    }
    id = sqlite3_column_int64(st, 0);
    if (COL_STR(st, 1, rep.device_id) < 0 || COL_STR(st, 2, rep.update_id) < 0 ||
        COL_STR(st, 3, rep.rollout_id) < 0 || COL_STR(st, 4, rep.version) < 0 ||
        COL_STR(st, 5, rep.kind) < 0 || COL_STR(st, 6, rep.state) < 0 ||
        COL_STR(st, 7, rep.status) < 0 || COL_STR(st, 8, rep.reason) < 0) {
        r = ota_err_set(err, EBADMSG, "store: report %lld has a field too long", (long long)id);
        goto out;
    }
    rep.ts_ms = sqlite3_column_int64(st, 9);
    *ret = rep;
    *ret_id = id;
out:
    stmt_done(st);
    return r;
}

/* Popping an id that is gone already is success: delivery is at-least-once
 * and a retried pop must not fail. */
static int outbox_pop(void *ctx, int64_t id, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;

    return bind_run(s, ST_OUTBOX_POP, sqlite3_bind_int64(s->st[ST_OUTBOX_POP], 1, id), err,
                    "pop outbox");
}

int ota_sqlite_outbox_count(struct ota_sqlite *s, size_t *ret_n, struct ota_err *err)
{
    sqlite3_stmt *st = s->st[ST_OUTBOX_COUNT];
    int rc = sqlite3_step(st);
    int r = 0;

    if (rc == SQLITE_ROW)
        *ret_n = (size_t)sqlite3_column_int64(st, 0);
    else
        r = db_fail(s->db, rc, err, "count outbox");
    stmt_done(st);
    return r;
}

int ota_sqlite_history(struct ota_sqlite *s, struct ota_history *ret, size_t cap, size_t *ret_n,
                       struct ota_err *err)
{
    sqlite3_stmt *st = s->st[ST_HISTORY_LIST];
    struct ota_history *tmp = NULL;
    size_t n = 0;
    int rc, r = 0;

    if (cap == 0) {
        *ret_n = 0;
        return 0;
    }
    tmp = calloc(cap, sizeof(*tmp));
    if (!tmp)
        return ota_err_set(err, ENOMEM, "store: out of memory");
    rc = sqlite3_bind_int64(st, 1, cap > INT64_MAX ? INT64_MAX : (sqlite3_int64)cap);
    if (rc != SQLITE_OK) {
        r = db_fail(s->db, rc, err, "list history");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < cap) {
        struct ota_history *h = &tmp[n];
        if (COL_STR(st, 0, h->update_id) < 0 || COL_STR(st, 1, h->version) < 0 ||
            COL_STR(st, 2, h->from_version) < 0 || COL_STR(st, 3, h->kind) < 0 ||
            COL_STR(st, 4, h->status) < 0 || COL_STR(st, 5, h->reason) < 0) {
            r = ota_err_set(err, EBADMSG, "store: history entry has a field too long");
            goto out;
        }
        h->ts_ms = sqlite3_column_int64(st, 6);
        n++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        r = db_fail(s->db, rc, err, "list history");
        goto out;
    }
    memcpy(ret, tmp, n * sizeof(*tmp));
    *ret_n = n;
out:
    stmt_done(st);
    free(tmp);
    return r;
}

/* ---- settings ---- */

static int kv_get(void *ctx, const char *key, char *buf, size_t cap, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;
    sqlite3_stmt *st = s->st[ST_KV_GET];
    int rc, r = 0;

    rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        r = db_fail(s->db, rc, err, "get setting");
        goto out;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "store: setting %s is not set", key);
    } else if (rc != SQLITE_ROW) {
        r = db_fail(s->db, rc, err, "get setting");
    } else {
        const unsigned char *t = sqlite3_column_text(st, 0);
        size_t n = t ? (size_t)sqlite3_column_bytes(st, 0) : 0;
        if (n >= cap) {
            r = ota_err_set(err, ERANGE, "store: setting %s is longer than %zu bytes", key,
                            cap ? cap - 1 : 0);
        } else {
            memcpy(buf, t ? (const char *)t : "", n);
            buf[n] = '\0';
        }
    }
out:
    stmt_done(st);
    return r;
}

/* value NULL removes the setting. */
static int kv_set(void *ctx, const char *key, const char *value, struct ota_err *err)
{
    struct ota_sqlite *s = ctx;
    sqlite3_stmt *st;
    int rc;

    if (!key)
        return ota_err_set(err, EINVAL, "store: setting without a key");
    if (!value) {
        st = s->st[ST_KV_DEL];
        return bind_run(s, ST_KV_DEL, sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC), err,
                        "remove setting");
    }
    st = s->st[ST_KV_SET];
    rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return bind_run(s, ST_KV_SET, rc, err, "set setting");
}

const struct ota_store_ops ota_sqlite_ops = {
    .load = journal_load,
    .save = journal_save,
    .outbox_peek = outbox_peek,
    .outbox_pop = outbox_pop,
    .kv_get = kv_get,
    .kv_set = kv_set,
};
