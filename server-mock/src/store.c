/* The SQLite store (store.h), one file per concern: this one opens and
 * closes it, holds the connection pool, the check-in flusher and the admin
 * tokens; store_cache.c the caches; store_devices.c, store_releases.c,
 * store_reports.c and store_faults.c their tables (shared inside:
 * store_impl.h; SQLite through db.h).
 *
 * Every connection runs WAL + synchronous=FULL, so a write is durable when
 * sqlite3_step returns. All writes go through one writer connection under
 * an in-process mutex (wlock): our writers queue on the mutex instead of
 * colliding in SQLite, whose busy handler sleeps 1-10 ms a try. Reads take
 * a pool connection and run concurrently (WAL). The only other writer is
 * rollout_store.c's connection (busy_timeout covers it).
 *
 * Caches (under mlock): one struct dev per device seen, in two hash chains
 * (by id, by token hash), with the inventory, and last_checkin_ms/checkins
 * which live in memory once loaded and are flushed by a timer thread. A
 * cache is filled from a read only if no invalidating write (gen, rel_gen)
 * happened since the read began; write calls update or invalidate it under
 * wlock, after their commit, so the cache follows the commit order.
 * Statements are cached per connection, keyed by the address of their
 * static SQL text. */
#include "otasrv/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otasrv/auth.h"
#include "store_impl.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS devices("
    " id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, type TEXT NOT NULL DEFAULT '',"
    " grp TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]',"
    " versions TEXT NOT NULL DEFAULT '{}', slots TEXT NOT NULL DEFAULT '{}',"
    " state TEXT NOT NULL DEFAULT '', registered_ms INTEGER NOT NULL,"
    " reenrolled_ms INTEGER NOT NULL DEFAULT 0, last_checkin_ms INTEGER NOT NULL DEFAULT 0,"
    " checkins INTEGER NOT NULL DEFAULT 0, attributes TEXT NOT NULL DEFAULT '{}',"
    " tz TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS devices_token ON devices(token_sha256);"
    "CREATE TABLE IF NOT EXISTS releases("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,"
    " manifest TEXT NOT NULL, signature TEXT NOT NULL, payload_name TEXT NOT NULL,"
    " payload_path TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
    " published INTEGER NOT NULL DEFAULT 0, published_ms INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0,"
    " format TEXT NOT NULL DEFAULT 'ota', compat TEXT NOT NULL DEFAULT '[]');"
    "CREATE TABLE IF NOT EXISTS reports("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, update_id TEXT NOT NULL,"
    " rollout_id TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
    " status TEXT NOT NULL, reason TEXT NOT NULL, ts INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " UNIQUE(device, update_id, state, status, ts, reason));"
    "CREATE INDEX IF NOT EXISTS reports_update ON reports(update_id);"
    "CREATE TABLE IF NOT EXISTS admin_tokens(sha256 TEXT PRIMARY KEY, created_ms INTEGER);"
    "CREATE TABLE IF NOT EXISTS reenroll_grants(id TEXT PRIMARY KEY, granted_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fault_applied("
    " device TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL, applied INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, PRIMARY KEY(device, rule));";

/* Columns added after the first schema, by table and the column that
 * tells them apart: a store written by an older server gets them on open
 * (their defaults are what an older agent's device has: no attributes, no
 * zone; and what an older release is: an ota-pack release). */
static const char *const MIGRATIONS[][3] = {
    {"devices", "attributes",
     "ALTER TABLE devices ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'"},
    {"devices", "tz", "ALTER TABLE devices ADD COLUMN tz TEXT NOT NULL DEFAULT ''"},
    {"releases", "format", "ALTER TABLE releases ADD COLUMN format TEXT NOT NULL DEFAULT 'ota'"},
    {"releases", "compat", "ALTER TABLE releases ADD COLUMN compat TEXT NOT NULL DEFAULT '[]'"},
};

static int migrate(struct otasrv_db *c, struct ota_err *err)
{
    for (size_t i = 0; i < sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0]); i++) {
        sqlite3_stmt *st = NULL;
        int r = otasrv_db_prepare(c, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &st,
                                  "schema", err);
        if (r < 0)
            return r;
        otasrv_db_bind_text(st, 1, MIGRATIONS[i][0]);
        otasrv_db_bind_text(st, 2, MIGRATIONS[i][1]);
        r = otasrv_db_row(c, st, "schema", err);
        sqlite3_finalize(st);
        if (r == 0)
            r = otasrv_db_exec(c, MIGRATIONS[i][2], err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void *flusher_main(void *arg)
{
    struct otasrv_store *s = arg;
    struct timespec ts;

    pthread_mutex_lock(&s->stop_lock);
    while (!s->stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += OTASRV_STORE_FLUSH_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->stop_cond, &s->stop_lock, &ts);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->stop_lock);
        ota_ignore(store_hb_flush(s, NULL)); /* failed rows stay dirty: retried next time */
        pthread_mutex_lock(&s->stop_lock);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return NULL;
}

void otasrv_store_close(struct otasrv_store *s)
{
    if (!s)
        return;
    if (s->flusher_on) {
        pthread_mutex_lock(&s->stop_lock);
        s->stop = 1;
        pthread_cond_signal(&s->stop_cond);
        pthread_mutex_unlock(&s->stop_lock);
        pthread_join(s->flusher, NULL);
    }
    if (s->writer.db)
        ota_ignore(store_hb_flush(s, NULL));
    for (unsigned i = 0; i < s->n; i++)
        otasrv_db_close(&s->conns[i]);
    if (s->writer.db)
        otasrv_db_close(&s->writer);
    if (s->by_id) {
        for (size_t i = 0; i < NBUCKET; i++) {
            struct dev *d = s->by_id[i], *next;
            for (; d; d = next) {
                next = d->next;
                store_dev_free(d);
            }
        }
    }
    if (s->pub)
        store_pub_put_locked(s->pub);
    free(s->by_id);
    free(s->by_tok);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->mlock);
    pthread_mutex_destroy(&s->stop_lock);
    pthread_cond_destroy(&s->stop_cond);
    free(s->conns);
    free(s->free_list);
    free(s);
}

int otasrv_store_open(const char *path, unsigned nconn, struct otasrv_store **ret,
                      struct ota_err *err)
{
    struct otasrv_store *s;
    int r;

    if (nconn < 1)
        nconn = 1;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->mlock, NULL);
    pthread_mutex_init(&s->stop_lock, NULL);
    pthread_cond_init(&s->stop_cond, NULL);
    s->conns = calloc(nconn, sizeof(*s->conns));
    s->free_list = calloc(nconn, sizeof(*s->free_list));
    s->by_id = calloc(NBUCKET, sizeof(*s->by_id));
    s->by_tok = calloc(NBUCKET, sizeof(*s->by_tok));
    if (!s->conns || !s->free_list || !s->by_id || !s->by_tok) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    if ((r = otasrv_db_open(&s->writer, path, 1, err)) < 0)
        goto fail;
    if ((r = sqlite3_exec(s->writer.db, SCHEMA, NULL, NULL, NULL)) != SQLITE_OK) {
        r = ota_err_prefix(err, otasrv_db_fail(s->writer.db, r, "schema", err), "%s", path);
        goto fail;
    }
    if ((r = migrate(&s->writer, err)) < 0) {
        r = ota_err_prefix(err, r, "%s", path);
        goto fail;
    }
    for (unsigned i = 0; i < nconn; i++) {
        s->n = i + 1;
        r = otasrv_db_open(&s->conns[i], path, 1, err);
        if (r < 0)
            goto fail;
        s->free_list[s->n_free++] = &s->conns[i];
    }
    if (pthread_create(&s->flusher, NULL, flusher_main, s) != 0) {
        r = ota_err_set(err, EAGAIN, "cannot start the check-in flusher");
        goto fail;
    }
    s->flusher_on = 1;
    *ret = s;
    return 0;
fail:
    otasrv_store_close(s);
    return r;
}

struct otasrv_db *store_acquire(struct otasrv_store *s)
{
    struct otasrv_db *c;

    pthread_mutex_lock(&s->lock);
    while (s->n_free == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    c = s->free_list[--s->n_free];
    pthread_mutex_unlock(&s->lock);
    return c;
}

void store_release(struct otasrv_store *s, struct otasrv_db *c)
{
    if (c == &s->writer) {
        pthread_mutex_unlock(&s->wlock);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->free_list[s->n_free++] = c;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* The writer connection, exclusively until store_release(). */
struct otasrv_db *store_wacquire(struct otasrv_store *s)
{
    pthread_mutex_lock(&s->wlock);
    return &s->writer;
}

/* ---- admin tokens ---- */

static const char SQL_ADMIN_CLEAR[] = "DELETE FROM admin_tokens";
static const char SQL_ADMIN_ADD[] =
    "INSERT INTO admin_tokens(sha256, created_ms) VALUES(?, strftime('%s','now')*1000)";
/* Every admin token hash, compared in constant time (not looked up by
 * value: the lookup's timing would depend on the bytes). */
static const char SQL_ADMIN_CHECK[] = "SELECT sha256 FROM admin_tokens";

int otasrv_store_admin_token_set(struct otasrv_store *s, const char *sha_hex, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r;

    r = otasrv_db_exec(c, "BEGIN IMMEDIATE", err);
    if (r < 0)
        goto out;
    if ((r = otasrv_db_prep(c, SQL_ADMIN_CLEAR, &st, err)) < 0)
        goto rollback;
    if ((r = otasrv_db_step_done(c, st, "admin tokens", err)) < 0) {
        goto rollback;
    }
    if ((r = otasrv_db_prep(c, SQL_ADMIN_ADD, &st, err)) < 0)
        goto rollback;
    otasrv_db_bind_text(st, 1, sha_hex);
    if ((r = otasrv_db_step_done(c, st, "admin tokens", err)) < 0) {
        goto rollback;
    }
    r = otasrv_db_exec(c, "COMMIT", err);
    if (r == 0)
        goto out;
rollback:
    otasrv_db_rollback(c);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_admin_token_check(struct otasrv_store *s, const char *sha_hex, struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_ADMIN_CHECK, &st, err)) < 0)
        goto out;
    int found = 0;
    while ((r = otasrv_db_row(c, st, "admin token", err)) == 1)
        found |= otasrv_secret_eq(otasrv_db_col_text(st, 0), sha_hex);
    if (r == 0)
        r = found ? 0 : ota_err_set(err, ENOENT, "not an admin token");
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}
