/* The database layer (db.h): one way to open a connection, the statement
 * cache, the step helpers and the one SQLite -> errno mapping. */
#include "otasrv/db.h"

#include <errno.h>
#include <string.h>

int otasrv_db_fail(sqlite3 *db, int rc, const char *what, struct ota_err *err)
{
    int code = EIO;

    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        code = EBUSY;
    else if ((rc & 0xff) == SQLITE_CONSTRAINT)
        code = EEXIST;
    else if ((rc & 0xff) == SQLITE_FULL)
        code = ENOSPC;
    return ota_err_set(err, code, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int otasrv_db_open(struct otasrv_db *c, const char *path, int nomutex, struct ota_err *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | (nomutex ? SQLITE_OPEN_NOMUTEX : 0);
    int r = 0, rc;

    rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK)
        r = otasrv_db_fail(c->db, rc, path, err);
    if (r == 0) {
        sqlite3_busy_timeout(c->db, 10000);
        rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                          NULL);
        if (rc != SQLITE_OK)
            r = otasrv_db_fail(c->db, rc, path, err);
    }
    if (r < 0) {
        sqlite3_close(c->db);
        c->db = NULL;
    }
    return r;
}

void otasrv_db_close(struct otasrv_db *c)
{
    for (int i = 0; i < OTASRV_DB_STMT_CACHE; i++) {
        sqlite3_finalize(c->cache[i].st);
        c->cache[i].st = NULL;
        c->cache[i].sql = NULL;
    }
    sqlite3_close(c->db);
    c->db = NULL;
}

int otasrv_db_exec(struct otasrv_db *c, const char *sql, struct ota_err *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : otasrv_db_fail(c->db, rc, sql, err);
}

void otasrv_db_rollback(struct otasrv_db *c)
{
    ota_ignore(otasrv_db_exec(c, "ROLLBACK", NULL));
}

int otasrv_db_prep(struct otasrv_db *c, const char *sql, sqlite3_stmt **ret, struct ota_err *err)
{
    int i, rc;

    for (i = 0; i < OTASRV_DB_STMT_CACHE && c->cache[i].sql; i++) {
        if (c->cache[i].sql == sql) {
            sqlite3_reset(c->cache[i].st);
            sqlite3_clear_bindings(c->cache[i].st);
            *ret = c->cache[i].st;
            return 0;
        }
    }
    if (i == OTASRV_DB_STMT_CACHE)
        return ota_err_set(err, ENOSPC, "statement cache full");
    rc = sqlite3_prepare_v2(c->db, sql, -1, &c->cache[i].st, NULL);
    if (rc != SQLITE_OK)
        return otasrv_db_fail(c->db, rc, "prepare", err);
    c->cache[i].sql = sql;
    *ret = c->cache[i].st;
    return 0;
}

int otasrv_db_prepare(struct otasrv_db *c, const char *sql, sqlite3_stmt **ret, const char *what,
                      struct ota_err *err)
{
    int rc = sqlite3_prepare_v2(c->db, sql, -1, ret, NULL);
    return rc == SQLITE_OK ? 0 : otasrv_db_fail(c->db, rc, what, err);
}

int otasrv_db_step_done(struct otasrv_db *c, sqlite3_stmt *st, const char *what,
                        struct ota_err *err)
{
    int rc = sqlite3_step(st);
    return rc == SQLITE_DONE ? 0 : otasrv_db_fail(c->db, rc, what, err);
}

int otasrv_db_row(struct otasrv_db *c, sqlite3_stmt *st, const char *what, struct ota_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return otasrv_db_fail(c->db, rc, what, err);
}

void otasrv_db_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

const char *otasrv_db_lib_version(void)
{
    return sqlite3_libversion();
}

const char *otasrv_db_col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}
