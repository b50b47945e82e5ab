/* The database layer of the server's two SQLite adapters (store.c and
 * rollout_store.c): a connection opened the one way (WAL, synchronous=FULL,
 * a 10 s busy timeout) with a cache of prepared statements, the step
 * helpers, and the one mapping of an SQLite result code to a negative
 * errno with a reason:
 *
 *   SQLITE_BUSY, SQLITE_LOCKED  -EBUSY
 *   SQLITE_CONSTRAINT           -EEXIST
 *   SQLITE_FULL                 -ENOSPC
 *   anything else               -EIO
 *
 * A connection is used by one thread at a time (the callers lock). */
#ifndef OTASRV_DB_H
#define OTASRV_DB_H

#include <sqlite3.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASRV_DB_STMT_CACHE 32

struct otasrv_db {
    sqlite3 *db;
    struct {
        const char *sql; /* static text: the key is its address */
        sqlite3_stmt *st;
    } cache[OTASRV_DB_STMT_CACHE];
};

/* Opens (creating) the database at path into c, zeroed by the caller.
 * nomutex: SQLITE_OPEN_NOMUTEX (the caller serialises every use). On
 * failure c is closed again. */
int otasrv_db_open(struct otasrv_db *c, const char *path, int nomutex,
                   struct ota_err *err) OTA_MUST;
/* Finalizes the cached statements and closes; a zeroed c is fine. */
void otasrv_db_close(struct otasrv_db *c);

/* rc (an SQLite result code) as -errno (table above) with the reason
 * "<what>: <SQLite's message>"; db NULL: the message of rc alone. */
int otasrv_db_fail(sqlite3 *db, int rc, const char *what, struct ota_err *err) OTA_MUST;

/* Runs sql (no rows), e.g. "BEGIN IMMEDIATE". */
int otasrv_db_exec(struct otasrv_db *c, const char *sql, struct ota_err *err) OTA_MUST;
/* "ROLLBACK", its failure ignored (the caller has an error to report). */
void otasrv_db_rollback(struct otasrv_db *c);

/* The cached statement of static SQL text sql (prepared on first use),
 * reset and unbound. -ENOSPC when OTASRV_DB_STMT_CACHE texts are cached. */
int otasrv_db_prep(struct otasrv_db *c, const char *sql, sqlite3_stmt **ret,
                   struct ota_err *err) OTA_MUST;
/* A statement of dynamic SQL text, not cached: sqlite3_finalize() it. */
int otasrv_db_prepare(struct otasrv_db *c, const char *sql, sqlite3_stmt **ret, const char *what,
                      struct ota_err *err) OTA_MUST;

/* Steps st, which writes (no rows): 0 once done, else the mapped error. */
int otasrv_db_step_done(struct otasrv_db *c, sqlite3_stmt *st, const char *what,
                        struct ota_err *err) OTA_MUST;
/* Steps st for one row: 1 with the row to read, 0 when there is none, or
 * the mapped error. The caller resets st when done with the row. */
int otasrv_db_row(struct otasrv_db *c, sqlite3_stmt *st, const char *what,
                  struct ota_err *err) OTA_MUST;

/* Binds v as text (copied), or NULL for v NULL. */
void otasrv_db_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Column i as text, "" for NULL. */
const char *otasrv_db_col_text(sqlite3_stmt *st, int i);
/* The SQLite library's version (for the build info). */
const char *otasrv_db_lib_version(void);

#ifdef __cplusplus
}
#endif
#endif
