/* SQLite store. Every connection runs WAL + synchronous=FULL, so a write is
 * durable when sqlite3_step returns; writers serialise on SQLite's own lock
 * (busy_timeout), readers never block them. Statements are cached per
 * connection, keyed by the address of their static SQL text. */
#include "otasrv/store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"

#define STMT_CACHE 32

struct conn {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
};

struct ota_store {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    struct conn *conns;
    struct conn **free_list;
    unsigned n_free;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS devices("
    " id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, type TEXT NOT NULL DEFAULT '',"
    " grp TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]',"
    " versions TEXT NOT NULL DEFAULT '{}', slots TEXT NOT NULL DEFAULT '{}',"
    " state TEXT NOT NULL DEFAULT '', registered_ms INTEGER NOT NULL,"
    " reenrolled_ms INTEGER NOT NULL DEFAULT 0, last_checkin_ms INTEGER NOT NULL DEFAULT 0,"
    " checkins INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS devices_token ON devices(token_sha256);"
    "CREATE TABLE IF NOT EXISTS releases("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,"
    " manifest TEXT NOT NULL, signature TEXT NOT NULL, payload_name TEXT NOT NULL,"
    " payload_path TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
    " published INTEGER NOT NULL DEFAULT 0, published_ms INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS reports("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, update_id TEXT NOT NULL,"
    " rollout_id TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
    " status TEXT NOT NULL, reason TEXT NOT NULL, ts INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " UNIQUE(device, update_id, state, status, ts, reason));"
    "CREATE INDEX IF NOT EXISTS reports_update ON reports(update_id);"
    "CREATE TABLE IF NOT EXISTS admin_tokens(sha256 TEXT PRIMARY KEY, created_ms INTEGER);";

static int map_rc(sqlite3 *db, int rc, struct ota_err *err, const char *what)
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

static int conn_open(struct conn *c, const char *path, struct ota_err *err)
{
    int rc;
    char *msg = NULL;

    rc = sqlite3_open_v2(path, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return map_rc(c->db, rc, err, path);
    sqlite3_busy_timeout(c->db, 10000);
    rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = ota_err_set(err, EIO, "%s: %s", path, msg ? msg : "pragma failed");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(c->cache[i].st);
    sqlite3_close(c->db);
}

void ota_store_close(struct ota_store *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        conn_close(&s->conns[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->conns);
    free(s->free_list);
    free(s);
}

int ota_store_open(const char *path, unsigned nconn, struct ota_store **ret, struct ota_err *err)
{
    struct ota_store *s;
    char *msg = NULL;
    int r;

    if (nconn < 1)
        nconn = 1;
    s = calloc(1, sizeof(*s));
    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->conns = calloc(nconn, sizeof(*s->conns));
    s->free_list = calloc(nconn, sizeof(*s->free_list));
    if (!s->conns || !s->free_list) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < nconn; i++) {
        s->n = i + 1;
        r = conn_open(&s->conns[i], path, err);
        if (r < 0)
            goto fail;
        if (i == 0 && sqlite3_exec(s->conns[0].db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
            r = ota_err_set(err, EIO, "%s: schema: %s", path, msg ? msg : "?");
            sqlite3_free(msg);
            goto fail;
        }
        s->free_list[s->n_free++] = &s->conns[i];
    }
    *ret = s;
    return 0;
fail:
    ota_store_close(s);
    return r;
}

static struct conn *acquire(struct ota_store *s)
{
    struct conn *c;

    pthread_mutex_lock(&s->lock);
    while (s->n_free == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    c = s->free_list[--s->n_free];
    pthread_mutex_unlock(&s->lock);
    return c;
}

static void release(struct ota_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->lock);
    s->free_list[s->n_free++] = c;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* A cached statement for static SQL text, reset and unbound. */
static int prep(struct conn *c, const char *sql, sqlite3_stmt **ret, struct ota_err *err)
{
    int i, rc;

    for (i = 0; i < STMT_CACHE && c->cache[i].sql; i++) {
        if (c->cache[i].sql == sql) {
            sqlite3_reset(c->cache[i].st);
            sqlite3_clear_bindings(c->cache[i].st);
            *ret = c->cache[i].st;
            return 0;
        }
    }
    if (i == STMT_CACHE)
        return ota_err_set(err, ENOSPC, "statement cache full");
    rc = sqlite3_prepare_v2(c->db, sql, -1, &c->cache[i].st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(c->db, rc, err, "prepare");
    c->cache[i].sql = sql;
    *ret = c->cache[i].st;
    return 0;
}

static int exec_simple(struct conn *c, const char *sql, struct ota_err *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : map_rc(c->db, rc, err, sql);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* ---- admin tokens ---- */

static const char SQL_ADMIN_CLEAR[] = "DELETE FROM admin_tokens";
static const char SQL_ADMIN_ADD[] =
    "INSERT INTO admin_tokens(sha256, created_ms) VALUES(?, strftime('%s','now')*1000)";
static const char SQL_ADMIN_CHECK[] = "SELECT 1 FROM admin_tokens WHERE sha256 = ?";

int ota_store_admin_token_set(struct ota_store *s, const char *sha_hex, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    r = exec_simple(c, "BEGIN IMMEDIATE", err);
    if (r < 0)
        goto out;
    if ((r = prep(c, SQL_ADMIN_CLEAR, &st, err)) < 0)
        goto rollback;
    if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "admin tokens");
        goto rollback;
    }
    if ((r = prep(c, SQL_ADMIN_ADD, &st, err)) < 0)
        goto rollback;
    bind_text(st, 1, sha_hex);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "admin tokens");
        goto rollback;
    }
    r = exec_simple(c, "COMMIT", err);
    if (r == 0)
        goto out;
rollback:
    ota_ignore(exec_simple(c, "ROLLBACK", NULL));
out:
    release(s, c);
    return r;
}

int ota_store_admin_token_check(struct ota_store *s, const char *sha_hex, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_ADMIN_CHECK, &st, err)) < 0)
        goto out;
    bind_text(st, 1, sha_hex);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        r = 0;
    else if (rc == SQLITE_DONE)
        r = ota_err_set(err, ENOENT, "not an admin token");
    else
        r = map_rc(c->db, rc, err, "admin token");
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

/* ---- devices ---- */

static const char SQL_DEV_EXISTS[] = "SELECT 1 FROM devices WHERE id = ?";
static const char SQL_DEV_INSERT[] =
    "INSERT INTO devices(id, token_sha256, type, grp, tags, versions, registered_ms)"
    " VALUES(?1, ?2, coalesce(?3, ''), coalesce(?4, ''), coalesce(?5, '[]'),"
    " coalesce(?6, '{}'), ?7)";
static const char SQL_DEV_REENROLL[] =
    "UPDATE devices SET token_sha256 = ?2, type = coalesce(?3, type), grp = coalesce(?4, grp),"
    " tags = coalesce(?5, tags), versions = coalesce(?6, versions), reenrolled_ms = ?7"
    " WHERE id = ?1";
static const char SQL_DEV_BY_TOKEN[] = "SELECT id FROM devices WHERE token_sha256 = ?";
static const char SQL_DEV_CHECKIN[] =
    "UPDATE devices SET type = coalesce(?2, type), grp = coalesce(?3, grp),"
    " tags = coalesce(?4, tags), versions = coalesce(?5, versions),"
    " slots = coalesce(?6, slots), state = coalesce(?7, state), last_checkin_ms = ?8,"
    " checkins = checkins + 1 WHERE id = ?1";
#define DEV_COLS                                                                                   \
    "id, type, grp, tags, versions, slots, state, registered_ms, reenrolled_ms, last_checkin_ms,"  \
    " checkins"
static const char SQL_DEV_GET[] = "SELECT " DEV_COLS " FROM devices WHERE id = ?";

int ota_store_device_register(struct ota_store *s, const char *id, const char *token_sha,
                              const struct ota_device_inv *inv, int64_t now_ms, int *ret_created,
                              struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc, exists;

    if ((r = exec_simple(c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    if ((r = prep(c, SQL_DEV_EXISTS, &st, err)) < 0)
        goto rollback;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "device");
        goto rollback;
    }
    exists = rc == SQLITE_ROW;
    sqlite3_reset(st);
    if ((r = prep(c, exists ? SQL_DEV_REENROLL : SQL_DEV_INSERT, &st, err)) < 0)
        goto rollback;
    bind_text(st, 1, id);
    bind_text(st, 2, token_sha);
    bind_text(st, 3, inv->type);
    bind_text(st, 4, inv->group);
    bind_text(st, 5, inv->tags);
    bind_text(st, 6, inv->versions);
    sqlite3_bind_int64(st, 7, now_ms);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "register");
        goto rollback;
    }
    if ((r = exec_simple(c, "COMMIT", err)) < 0)
        goto rollback;
    *ret_created = !exists;
    goto out;
rollback:
    ota_ignore(exec_simple(c, "ROLLBACK", NULL));
out:
    release(s, c);
    return r;
}

int ota_store_device_by_token(struct ota_store *s, const char *sha, char *ret_id, size_t cap,
                              struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_DEV_BY_TOKEN, &st, err)) < 0)
        goto out;
    bind_text(st, 1, sha);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ota_strlcpy(ret_id, col_text(st, 0), cap);
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "unknown device token");
    } else {
        r = map_rc(c->db, rc, err, "device token");
    }
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_device_checkin(struct ota_store *s, const char *id, const struct ota_device_inv *inv,
                             int64_t now_ms, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_DEV_CHECKIN, &st, err)) < 0)
        goto out;
    bind_text(st, 1, id);
    bind_text(st, 2, inv->type);
    bind_text(st, 3, inv->group);
    bind_text(st, 4, inv->tags);
    bind_text(st, 5, inv->versions);
    bind_text(st, 6, inv->slots);
    bind_text(st, 7, inv->state);
    sqlite3_bind_int64(st, 8, now_ms);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = map_rc(c->db, rc, err, "checkin");
    else if (sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no device %s", id);
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

static json_t *json_col(sqlite3_stmt *st, int i, const char *fallback)
{
    json_t *v = json_loads(col_text(st, i), JSON_DECODE_ANY, NULL);
    return v ? v : json_loads(fallback, 0, NULL);
}

static json_t *device_row(sqlite3_stmt *st)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:I, s:I}", "device_id",
                     col_text(st, 0), "device_type", col_text(st, 1), "group", col_text(st, 2),
                     "tags", json_col(st, 3, "[]"), "versions", json_col(st, 4, "{}"), "slots",
                     json_col(st, 5, "{}"), "state", col_text(st, 6), "registered_ms",
                     (json_int_t)sqlite3_column_int64(st, 7), "reenrolled_ms",
                     (json_int_t)sqlite3_column_int64(st, 8), "last_checkin_ms",
                     (json_int_t)sqlite3_column_int64(st, 9), "checkins",
                     (json_int_t)sqlite3_column_int64(st, 10));
}

int ota_store_device_get(struct ota_store *s, const char *id, json_t **ret, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_DEV_GET, &st, err)) < 0)
        goto out;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        json_t *o = device_row(st);
        if (o)
            *ret = o;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "no device %s", id);
    } else {
        r = map_rc(c->db, rc, err, "device");
    }
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

/* WHERE clause of a device filter; binds in bind_filter, same order. */
static void filter_sql(const struct ota_device_filter *f, char *buf, size_t cap)
{
    size_t n = 0;

    n += (size_t)snprintf(buf + n, cap - n, " WHERE 1");
    if (f->type)
        n += (size_t)snprintf(buf + n, cap - n, " AND type = ?");
    if (f->group)
        n += (size_t)snprintf(buf + n, cap - n, " AND grp = ?");
    if (f->tag)
        n +=
            (size_t)snprintf(buf + n, cap - n,
                             " AND EXISTS (SELECT 1 FROM json_each(devices.tags) WHERE value = ?)");
    if (f->version && f->kind)
        n += (size_t)snprintf(buf + n, cap - n, " AND json_extract(versions, '$.' || ?) = ?");
    else if (f->version)
        snprintf(buf + n, cap - n,
                 " AND (json_extract(versions, '$.app') = ?"
                 " OR json_extract(versions, '$.rootfs') = ?)");
}

static int bind_filter(sqlite3_stmt *st, const struct ota_device_filter *f)
{
    int i = 1;

    if (f->type)
        bind_text(st, i++, f->type);
    if (f->group)
        bind_text(st, i++, f->group);
    if (f->tag)
        bind_text(st, i++, f->tag);
    if (f->version && f->kind) {
        bind_text(st, i++, f->kind);
        bind_text(st, i++, f->version);
    } else if (f->version) {
        bind_text(st, i++, f->version);
        bind_text(st, i++, f->version);
    }
    return i;
}

int ota_store_devices_list(struct ota_store *s, const struct ota_device_filter *f, json_t **ret,
                           struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st = NULL;
    char where[512], sql[1024];
    json_t *out = NULL, *arr;
    int64_t total = 0;
    int r = 0, rc, i;

    filter_sql(f, where, sizeof(where));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM devices%s", where);
    if ((rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL)) != SQLITE_OK) {
        r = map_rc(c->db, rc, err, "devices");
        goto out;
    }
    bind_filter(st, f);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        r = map_rc(c->db, rc, err, "devices");
        goto out;
    }
    total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;

    snprintf(sql, sizeof(sql), "SELECT " DEV_COLS " FROM devices%s ORDER BY id LIMIT ? OFFSET ?",
             where);
    if ((rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL)) != SQLITE_OK) {
        r = map_rc(c->db, rc, err, "devices");
        goto out;
    }
    i = bind_filter(st, f);
    sqlite3_bind_int64(st, i, f->limit);
    sqlite3_bind_int64(st, i + 1, f->offset);
    out = json_pack("{s:[], s:I}", "devices", "total", (json_int_t)total);
    if (!out) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    arr = json_object_get(out, "devices");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, device_row(st));
    if (rc != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "devices");
        goto out;
    }
    *ret = out;
    out = NULL;
out:
    sqlite3_finalize(st);
    json_decref(out);
    release(s, c);
    return r;
}

/* ---- releases ---- */

void ota_release_free(struct ota_release *r)
{
    if (!r)
        return;
    free(r->manifest);
    free(r);
}

#define REL_COLS                                                                                   \
    "id, name, version, kind, manifest, signature, payload_name, payload_path, size, sha256,"      \
    " published, published_ms, created_ms"
static const char SQL_REL_ADD[] =
    "INSERT INTO releases(" REL_COLS ", seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
    " ?12, ?13, (SELECT coalesce(max(seq), 0) + 1 FROM releases))";
static const char SQL_REL_GET[] = "SELECT " REL_COLS " FROM releases WHERE id = ?";
static const char SQL_REL_LIST[] = "SELECT " REL_COLS " FROM releases WHERE published >= ?"
                                   " ORDER BY published DESC, seq DESC";
static const char SQL_REL_PAYLOAD[] = "UPDATE releases SET payload_path = ?2 WHERE id = ?1";
static const char SQL_REL_PUBLISH[] =
    "UPDATE releases SET published = 1, published_ms = CASE WHEN published THEN published_ms"
    " ELSE ?2 END, seq = CASE WHEN published THEN seq ELSE"
    " (SELECT coalesce(max(seq), 0) + 1 FROM releases) END WHERE id = ?1";
static const char SQL_REL_DELETE[] = "DELETE FROM releases WHERE id = ?";

static struct ota_release *release_row(sqlite3_stmt *st)
{
    struct ota_release *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    ota_strlcpy(r->id, col_text(st, 0), sizeof(r->id));
    ota_strlcpy(r->name, col_text(st, 1), sizeof(r->name));
    ota_strlcpy(r->version, col_text(st, 2), sizeof(r->version));
    ota_strlcpy(r->kind, col_text(st, 3), sizeof(r->kind));
    r->manifest = strdup(col_text(st, 4));
    ota_strlcpy(r->signature, col_text(st, 5), sizeof(r->signature));
    ota_strlcpy(r->payload_name, col_text(st, 6), sizeof(r->payload_name));
    ota_strlcpy(r->payload_path, col_text(st, 7), sizeof(r->payload_path));
    r->size = (uint64_t)sqlite3_column_int64(st, 8);
    ota_strlcpy(r->sha256, col_text(st, 9), sizeof(r->sha256));
    r->published = sqlite3_column_int(st, 10);
    r->published_ms = sqlite3_column_int64(st, 11);
    r->created_ms = sqlite3_column_int64(st, 12);
    if (!r->manifest) {
        free(r);
        return NULL;
    }
    return r;
}

int ota_store_release_add(struct ota_store *s, const struct ota_release *rel, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_REL_ADD, &st, err)) < 0)
        goto out;
    bind_text(st, 1, rel->id);
    bind_text(st, 2, rel->name);
    bind_text(st, 3, rel->version);
    bind_text(st, 4, rel->kind);
    bind_text(st, 5, rel->manifest);
    bind_text(st, 6, rel->signature);
    bind_text(st, 7, rel->payload_name);
    bind_text(st, 8, rel->payload_path);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)rel->size);
    bind_text(st, 10, rel->sha256);
    sqlite3_bind_int(st, 11, rel->published);
    sqlite3_bind_int64(st, 12, rel->published_ms);
    sqlite3_bind_int64(st, 13, rel->created_ms);
    rc = sqlite3_step(st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        r = ota_err_set(err, EEXIST, "release %s exists", rel->id);
    else if (rc != SQLITE_DONE)
        r = map_rc(c->db, rc, err, "release");
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_release_get(struct ota_store *s, const char *id, struct ota_release **ret,
                          struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_REL_GET, &st, err)) < 0)
        goto out;
    bind_text(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct ota_release *rel = release_row(st);
        if (rel)
            *ret = rel;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        r = ota_err_set(err, ENOENT, "no release %s", id);
    } else {
        r = map_rc(c->db, rc, err, "release");
    }
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_release_list(struct ota_store *s, int published_only, struct ota_release ***ret,
                           size_t *ret_n, struct ota_err *err)
{
    struct conn *c = acquire(s);
    struct ota_release **v = NULL, **nv;
    size_t n = 0;
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_REL_LIST, &st, err)) < 0)
        goto out;
    sqlite3_bind_int(st, 1, published_only ? 1 : 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        nv = realloc(v, (n + 1) * sizeof(*v));
        if (!nv || !(nv[n] = release_row(st))) {
            v = nv ? nv : v;
            r = ota_err_set(err, ENOMEM, "out of memory");
            break;
        }
        v = nv;
        n++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = map_rc(c->db, rc, err, "releases");
    sqlite3_reset(st);
    if (r == 0) {
        *ret = v;
        *ret_n = n;
        v = NULL;
        n = 0;
    }
out:
    for (size_t i = 0; i < n; i++)
        ota_release_free(v[i]);
    free(v);
    release(s, c);
    return r;
}

static int update_one(struct ota_store *s, const char *sql, const char *id, const char *text,
                      int64_t num, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, sql, &st, err)) < 0)
        goto out;
    bind_text(st, 1, id);
    if (text)
        bind_text(st, 2, text);
    else if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, num);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = map_rc(c->db, rc, err, "release");
    else if (sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no release %s", id);
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_release_set_payload(struct ota_store *s, const char *id, const char *path,
                                  struct ota_err *err)
{
    return update_one(s, SQL_REL_PAYLOAD, id, path, 0, err);
}

int ota_store_release_publish(struct ota_store *s, const char *id, int64_t now_ms,
                              struct ota_err *err)
{
    return update_one(s, SQL_REL_PUBLISH, id, NULL, now_ms, err);
}

int ota_store_release_delete(struct ota_store *s, const char *id, struct ota_err *err)
{
    return update_one(s, SQL_REL_DELETE, id, NULL, 0, err);
}

/* ---- reports ---- */

static const char SQL_REP_ADD[] =
    "INSERT OR IGNORE INTO reports(device, update_id, rollout_id, version, kind, state, status,"
    " reason, ts, received_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_REP_FINAL[] =
    "SELECT 1 FROM reports WHERE update_id = ? AND device = ? AND status <> 'in_progress' LIMIT 1";

int ota_store_report_add(struct ota_store *s, const char *device, const struct ota_report_in *rep,
                         int64_t now_ms, int *ret_dup, struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_REP_ADD, &st, err)) < 0)
        goto out;
    bind_text(st, 1, device);
    bind_text(st, 2, rep->update_id);
    bind_text(st, 3, rep->rollout_id ? rep->rollout_id : "");
    bind_text(st, 4, rep->version ? rep->version : "");
    bind_text(st, 5, rep->kind ? rep->kind : "");
    bind_text(st, 6, rep->state);
    bind_text(st, 7, rep->status);
    bind_text(st, 8, rep->reason ? rep->reason : "");
    sqlite3_bind_int64(st, 9, rep->ts);
    sqlite3_bind_int64(st, 10, now_ms);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        r = map_rc(c->db, rc, err, "report");
    else
        *ret_dup = sqlite3_changes(c->db) == 0;
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_report_final(struct ota_store *s, const char *device, const char *update_id, int *ret,
                           struct ota_err *err)
{
    struct conn *c = acquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prep(c, SQL_REP_FINAL, &st, err)) < 0)
        goto out;
    bind_text(st, 1, update_id);
    bind_text(st, 2, device);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        *ret = rc == SQLITE_ROW;
    else
        r = map_rc(c->db, rc, err, "report");
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_reports_list(struct ota_store *s, const char *device, const char *update_id,
                           int64_t limit, int64_t offset, json_t **ret, struct ota_err *err)
{
    static const char where[] =
        " WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR update_id = ?2)";
    struct conn *c = acquire(s);
    sqlite3_stmt *st = NULL;
    json_t *out = NULL, *arr;
    int r = 0, rc;

    if ((rc = sqlite3_prepare_v2(c->db,
                                 "SELECT count(*) FROM reports WHERE (?1 IS NULL OR device = ?1)"
                                 " AND (?2 IS NULL OR update_id = ?2)",
                                 -1, &st, NULL)) != SQLITE_OK) {
        r = map_rc(c->db, rc, err, "reports");
        goto out;
    }
    bind_text(st, 1, device);
    bind_text(st, 2, update_id);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        r = map_rc(c->db, rc, err, "reports");
        goto out;
    }
    out = json_pack("{s:[], s:I}", "reports", "total", (json_int_t)sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    st = NULL;
    if (!out) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    arr = json_object_get(out, "reports");
    {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT seq, device, update_id, rollout_id, version, kind, state, status, reason,"
                 " ts, received_ms FROM reports%s ORDER BY seq LIMIT ?3 OFFSET ?4",
                 where);
        if ((rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL)) != SQLITE_OK) {
            r = map_rc(c->db, rc, err, "reports");
            goto out;
        }
    }
    bind_text(st, 1, device);
    bind_text(st, 2, update_id);
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, offset);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "seq",
                           (json_int_t)sqlite3_column_int64(st, 0), "device_id", col_text(st, 1),
                           "update_id", col_text(st, 2), "rollout_id", col_text(st, 3), "version",
                           col_text(st, 4), "kind", col_text(st, 5), "state", col_text(st, 6),
                           "status", col_text(st, 7), "reason", col_text(st, 8), "ts",
                           (json_int_t)sqlite3_column_int64(st, 9), "received_ms",
                           (json_int_t)sqlite3_column_int64(st, 10)));
    if (rc != SQLITE_DONE) {
        r = map_rc(c->db, rc, err, "reports");
        goto out;
    }
    *ret = out;
    out = NULL;
out:
    sqlite3_finalize(st);
    json_decref(out);
    release(s, c);
    return r;
}
