/* The DDI face's SQLite tables (otasrv/ddi.h): its own connection to the
 * server's database file, as rollout_store.c has. */
#include "otasrv/ddi.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ota/crypto.h"
#include "ota/json.h"
#include "otasrv/db.h"

struct otasrv_ddi {
    struct otasrv_db c;
    pthread_mutex_t lock;   /* the connection */
    pthread_mutex_t decide; /* otasrv_ddi_lock() */
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS ddi_targets(device TEXT PRIMARY KEY,"
    " attrs_wanted INTEGER NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ddi_actions(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " device TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
    " release_id TEXT NOT NULL, state INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " changed_ms INTEGER NOT NULL, cancel_refused INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE(device, update_id));"
    "CREATE TABLE IF NOT EXISTS ddi_hashes(path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, sha1 TEXT NOT NULL, md5 TEXT NOT NULL, sha256 TEXT NOT NULL);";

static const char SQL_TARGET_ADD[] =
    "INSERT OR IGNORE INTO ddi_targets(device, attrs_wanted, created_ms) VALUES(?1, 1, ?2)";
static const char SQL_TARGET_GET[] = "SELECT attrs_wanted FROM ddi_targets WHERE device = ?1";
static const char SQL_TARGET_SET[] = "UPDATE ddi_targets SET attrs_wanted = ?2 WHERE device = ?1";
#define ACTION_COLS "id, device, update_id, rollout_id, release_id, state, cancel_refused"
static const char SQL_ACTION_ACTIVE[] = "SELECT " ACTION_COLS " FROM ddi_actions"
                                        " WHERE device = ?1 AND state IN (0, 1)"
                                        " ORDER BY id DESC LIMIT 1";
static const char SQL_ACTION_GET[] = "SELECT " ACTION_COLS " FROM ddi_actions WHERE id = ?1";
static const char SQL_ACTION_FIND[] =
    "SELECT " ACTION_COLS " FROM ddi_actions WHERE device = ?1 AND update_id = ?2";
static const char SQL_ACTION_ADD[] =
    "INSERT INTO ddi_actions(device, update_id, rollout_id, release_id, state, created_ms,"
    " changed_ms) VALUES(?1, ?2, ?3, ?4, 0, ?5, ?5)";
static const char SQL_ACTION_SET[] =
    "UPDATE ddi_actions SET state = ?2, cancel_refused = ?3, changed_ms = ?4 WHERE id = ?1";
static const char SQL_ASSIGNED[] =
    "SELECT 1 FROM ddi_actions WHERE device = ?1 AND release_id = ?2 LIMIT 1";
static const char SQL_HASH_GET[] =
    "SELECT sha1, md5, sha256 FROM ddi_hashes WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3";
static const char SQL_HASH_PUT[] =
    "INSERT OR REPLACE INTO ddi_hashes VALUES(?1, ?2, ?3, ?4, ?5, ?6)";

int otasrv_ddi_open(const char *db_path, struct otasrv_ddi **ret, struct ota_err *err)
{
    struct otasrv_ddi *d = calloc(1, sizeof(*d));
    int r;

    if (!d)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->decide, NULL);
    if ((r = otasrv_db_open(&d->c, db_path, 1, err)) < 0)
        goto fail;
    if ((r = sqlite3_exec(d->c.db, SCHEMA, NULL, NULL, NULL)) != SQLITE_OK) {
        r = otasrv_db_fail(d->c.db, r, "ddi tables", err);
        goto fail;
    }
    *ret = d;
    return 0;
fail:
    otasrv_ddi_close(d);
    return r;
}

void otasrv_ddi_close(struct otasrv_ddi *d)
{
    if (!d)
        return;
    otasrv_db_close(&d->c);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->decide);
    free(d);
}

void otasrv_ddi_lock(struct otasrv_ddi *d)
{
    pthread_mutex_lock(&d->decide);
}

void otasrv_ddi_unlock(struct otasrv_ddi *d)
{
    pthread_mutex_unlock(&d->decide);
}

int otasrv_ddi_target(struct otasrv_ddi *d, const char *device, int64_t now_ms, int *ret_wanted,
                      struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    /* a read first: a poll of a known target writes nothing */
    for (int pass = 0; pass < 2; pass++) {
        if ((r = otasrv_db_prep(&d->c, SQL_TARGET_GET, &q, err)) < 0)
            goto out;
        sqlite3_bind_text(q, 1, device, -1, SQLITE_STATIC);
        r = otasrv_db_row(&d->c, q, "ddi_targets", err);
        *ret_wanted = r == 1 && sqlite3_column_int(q, 0) != 0;
        sqlite3_reset(q);
        if (r != 0 || pass == 1)
            break;
        if ((r = otasrv_db_prep(&d->c, SQL_TARGET_ADD, &q, err)) < 0)
            goto out;
        sqlite3_bind_text(q, 1, device, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, now_ms);
        r = otasrv_db_step_done(&d->c, q, "ddi_targets", err);
        sqlite3_reset(q);
        if (r < 0)
            goto out;
    }
    r = r < 0 ? r : 0;
out:
    pthread_mutex_unlock(&d->lock);
    return r;
}

int otasrv_ddi_set_wanted(struct otasrv_ddi *d, const char *device, int wanted, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_TARGET_SET, &q, err)) == 0) {
        sqlite3_bind_text(q, 1, device, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, wanted);
        r = otasrv_db_step_done(&d->c, q, "ddi_targets", err);
        sqlite3_reset(q);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

static void read_action(sqlite3_stmt *q, struct otasrv_ddi_action *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(q, 0);
    ota_strlcpy(a->device, otasrv_db_col_text(q, 1), sizeof(a->device));
    ota_strlcpy(a->update_id, otasrv_db_col_text(q, 2), sizeof(a->update_id));
    ota_strlcpy(a->rollout_id, otasrv_db_col_text(q, 3), sizeof(a->rollout_id));
    ota_strlcpy(a->release_id, otasrv_db_col_text(q, 4), sizeof(a->release_id));
    a->state = (enum otasrv_ddi_state)sqlite3_column_int(q, 5);
    a->cancel_refused = sqlite3_column_int(q, 6);
}

/* One action row of sql with up to two text parameters or an id. */
static int action_query(struct otasrv_ddi *d, const char *sql, const char *p1, const char *p2,
                        int64_t id, struct otasrv_ddi_action *ret, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, sql, &q, err)) == 0) {
        if (p1)
            sqlite3_bind_text(q, 1, p1, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(q, 1, id);
        if (p2)
            sqlite3_bind_text(q, 2, p2, -1, SQLITE_STATIC);
        r = otasrv_db_row(&d->c, q, "ddi_actions", err);
        if (r == 1)
            read_action(q, ret);
        sqlite3_reset(q);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

int otasrv_ddi_action_active(struct otasrv_ddi *d, const char *device,
                             struct otasrv_ddi_action *ret, struct ota_err *err)
{
    return action_query(d, SQL_ACTION_ACTIVE, device, NULL, 0, ret, err);
}

int otasrv_ddi_action_get(struct otasrv_ddi *d, int64_t id, struct otasrv_ddi_action *ret,
                          struct ota_err *err)
{
    return action_query(d, SQL_ACTION_GET, NULL, NULL, id, ret, err);
}

int otasrv_ddi_action_find(struct otasrv_ddi *d, const char *device, const char *update_id,
                           struct otasrv_ddi_action *ret, struct ota_err *err)
{
    return action_query(d, SQL_ACTION_FIND, device, update_id, 0, ret, err);
}

int otasrv_ddi_action_add(struct otasrv_ddi *d, struct otasrv_ddi_action *a, int64_t now_ms,
                          struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_ACTION_ADD, &q, err)) == 0) {
        sqlite3_bind_text(q, 1, a->device, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, a->update_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, a->rollout_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, a->release_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, now_ms);
        r = otasrv_db_step_done(&d->c, q, "ddi_actions", err);
        sqlite3_reset(q);
        if (r == 0) {
            a->id = sqlite3_last_insert_rowid(d->c.db);
            a->state = OTASRV_DDI_OPEN;
            a->cancel_refused = 0;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

int otasrv_ddi_action_set(struct otasrv_ddi *d, int64_t id, enum otasrv_ddi_state state,
                          int cancel_refused, int64_t now_ms, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_ACTION_SET, &q, err)) == 0) {
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_int(q, 2, (int)state);
        sqlite3_bind_int(q, 3, cancel_refused);
        sqlite3_bind_int64(q, 4, now_ms);
        r = otasrv_db_step_done(&d->c, q, "ddi_actions", err);
        sqlite3_reset(q);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

int otasrv_ddi_release_assigned(struct otasrv_ddi *d, const char *device, const char *release_id,
                                int *ret, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_ASSIGNED, &q, err)) == 0) {
        sqlite3_bind_text(q, 1, device, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, release_id, -1, SQLITE_STATIC);
        r = otasrv_db_row(&d->c, q, "ddi_actions", err);
        sqlite3_reset(q);
        *ret = r == 1;
        r = r < 0 ? r : 0;
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

/* The kept hashes: 1 with *ret, 0 none (or stale). */
static int hashes_get(struct otasrv_ddi *d, const char *path, uint64_t size, int64_t mtime_ns,
                      struct otasrv_ddi_hashes *ret, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_HASH_GET, &q, err)) == 0) {
        sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t)size);
        sqlite3_bind_int64(q, 3, mtime_ns);
        r = otasrv_db_row(&d->c, q, "ddi_hashes", err);
        if (r == 1) {
            ota_strlcpy(ret->sha1, otasrv_db_col_text(q, 0), sizeof(ret->sha1));
            ota_strlcpy(ret->md5, otasrv_db_col_text(q, 1), sizeof(ret->md5));
            ota_strlcpy(ret->sha256, otasrv_db_col_text(q, 2), sizeof(ret->sha256));
        }
        sqlite3_reset(q);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}

int otasrv_ddi_hashes(struct otasrv_ddi *d, const char *path, uint64_t size, int64_t mtime_ns,
                      struct otasrv_ddi_hashes *ret, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r;

    if ((r = hashes_get(d, path, size, mtime_ns, ret, err)) != 0)
        return r < 0 ? r : 0;
    /* computed outside the lock: a big payload takes a while */
    if ((r = ota_file_digests(path, ret->sha1, ret->md5, ret->sha256, err)) < 0)
        return ota_err_prefix(err, r, "artifact hashes");
    pthread_mutex_lock(&d->lock);
    if ((r = otasrv_db_prep(&d->c, SQL_HASH_PUT, &q, err)) == 0) {
        sqlite3_bind_text(q, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t)size);
        sqlite3_bind_int64(q, 3, mtime_ns);
        sqlite3_bind_text(q, 4, ret->sha1, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 5, ret->md5, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 6, ret->sha256, -1, SQLITE_STATIC);
        r = otasrv_db_step_done(&d->c, q, "ddi_hashes", err);
        sqlite3_reset(q);
    }
    pthread_mutex_unlock(&d->lock);
    return r;
}
