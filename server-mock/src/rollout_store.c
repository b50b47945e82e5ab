/* SQLite tables of the rollouts. The definition and the status are JSON
 * text (the engine's own formats); a device row is one table row. */
#include "otasrv/rollout_store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"

struct ota_rstore {
    sqlite3 *db;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS rollouts(id TEXT PRIMARY KEY, definition TEXT NOT NULL,"
    " status TEXT NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rollout_devices(rollout TEXT NOT NULL, device TEXT NOT NULL,"
    " bucket INTEGER NOT NULL, stage INTEGER NOT NULL, state INTEGER NOT NULL,"
    " offered_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,"
    " finished_ms INTEGER NOT NULL, rollback_ms INTEGER NOT NULL,"
    " PRIMARY KEY(rollout, device));";

static int fail(struct ota_rstore *s, struct ota_err *err, const char *what)
{
    int rc = sqlite3_errcode(s->db) & 0xff;
    return ota_err_set(err, rc == SQLITE_BUSY ? EBUSY : EIO, "%s: %s", what, sqlite3_errmsg(s->db));
}

void ota_rstore_close(struct ota_rstore *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

int ota_rstore_open(const char *path, struct ota_rstore **ret, struct ota_err *err)
{
    struct ota_rstore *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        r = fail(s, err, path);
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 10000);
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        r = fail(s, err, path);
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    ota_rstore_close(s);
    return r;
}

static int exec(struct ota_rstore *s, const char *sql, struct ota_err *err)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : fail(s, err, sql);
}

int ota_rstore_save(struct ota_rstore *s, const struct otasrv_rollout *r,
                    struct otasrv_rollout_device *devs, size_t n, int replace, struct ota_err *err)
{
    json_t *def = NULL, *st = NULL;
    char *def_text = NULL, *st_text = NULL;
    sqlite3_stmt *q = NULL;
    int ret, began = 0;

    if ((ret = otasrv_rollout_to_json(&r->def, &def)) < 0 ||
        (ret = otasrv_rollout_status_to_json(r, &st)) < 0) {
        ret = ota_err_set(err, -ret, "rollout %s: to JSON", r->def.id);
        goto out;
    }
    def_text = json_dumps(def, JSON_COMPACT);
    st_text = json_dumps(st, JSON_COMPACT);
    if (!def_text || !st_text) {
        ret = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((ret = exec(s, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    began = 1;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO rollouts(id, definition, status, created_ms)"
                           " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET"
                           " definition = ?2, status = ?3",
                           -1, &q, NULL) != SQLITE_OK) {
        ret = fail(s, err, "rollouts");
        goto out;
    }
    sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, def_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, st_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, r->created_ms);
    if (sqlite3_step(q) != SQLITE_DONE) {
        ret = fail(s, err, "rollouts");
        goto out;
    }
    sqlite3_finalize(q);
    q = NULL;
    if (replace) {
        if (sqlite3_prepare_v2(s->db, "DELETE FROM rollout_devices WHERE rollout = ?1", -1, &q,
                               NULL) != SQLITE_OK) {
            ret = fail(s, err, "rollout_devices");
            goto out;
        }
        sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) {
            ret = fail(s, err, "rollout_devices");
            goto out;
        }
        sqlite3_finalize(q);
        q = NULL;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO rollout_devices VALUES(?1, ?2, ?3, ?4, ?5, ?6,"
                           " ?7, ?8, ?9, ?10)",
                           -1, &q, NULL) != SQLITE_OK) {
        ret = fail(s, err, "rollout_devices");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        if (!replace && !d->dirty)
            continue;
        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, d->device_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, d->bucket);
        sqlite3_bind_int64(q, 4, d->stage);
        sqlite3_bind_int64(q, 5, d->state);
        sqlite3_bind_int64(q, 6, d->offered_ms);
        sqlite3_bind_int64(q, 7, d->started_ms);
        sqlite3_bind_int64(q, 8, d->last_ms);
        sqlite3_bind_int64(q, 9, d->finished_ms);
        sqlite3_bind_int64(q, 10, d->rollback_ms);
        if (sqlite3_step(q) != SQLITE_DONE) {
            ret = fail(s, err, "rollout_devices");
            goto out;
        }
    }
    if ((ret = exec(s, "COMMIT", err)) < 0)
        goto out;
    began = 0;
    for (size_t i = 0; i < n; i++)
        devs[i].dirty = 0;
out:
    sqlite3_finalize(q);
    if (began)
        ota_ignore(exec(s, "ROLLBACK", NULL));
    free(def_text);
    free(st_text);
    json_decref(def);
    json_decref(st);
    return ret;
}

/* The table of rollout id, sorted by device id. */
static int load_rows(struct ota_rstore *s, const char *id, struct otasrv_rollout_device **ret,
                     size_t *ret_n, struct ota_err *err)
{
    struct otasrv_rollout_device *v = NULL, *nv;
    size_t n = 0, cap = 0;
    sqlite3_stmt *q = NULL;
    int rc;

    if (sqlite3_prepare_v2(s->db,
                           "SELECT device, bucket, stage, state, offered_ms, started_ms, last_ms,"
                           " finished_ms, rollback_ms FROM rollout_devices WHERE rollout = ?1"
                           " ORDER BY device",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "rollout_devices");
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct otasrv_rollout_device *d;
        const char *dev = (const char *)sqlite3_column_text(q, 0);
        int st = sqlite3_column_int(q, 3);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                sqlite3_finalize(q);
                return ota_err_set(err, ENOMEM, "out of memory");
            }
            v = nv;
        }
        d = &v[n];
        memset(d, 0, sizeof(*d));
        if (!dev || strlen(dev) >= sizeof(d->device_id) || st < 0 || st >= OTASRV_RDEV_MAX)
            continue;
        strcpy(d->device_id, dev);
        d->bucket = (uint32_t)sqlite3_column_int64(q, 1);
        d->stage = sqlite3_column_int(q, 2);
        d->state = (enum otasrv_rdev_state)st;
        d->offered_ms = sqlite3_column_int64(q, 4);
        d->started_ms = sqlite3_column_int64(q, 5);
        d->last_ms = sqlite3_column_int64(q, 6);
        d->finished_ms = sqlite3_column_int64(q, 7);
        d->rollback_ms = sqlite3_column_int64(q, 8);
        n++;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        free(v);
        return fail(s, err, "rollout_devices");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int ota_rstore_load(struct ota_rstore *s, ota_rstore_fn fn, void *ctx, struct ota_err *err)
{
    sqlite3_stmt *q = NULL;
    int rc, ret = 0;

    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, definition, status FROM rollouts ORDER BY created_ms, id",
                           -1, &q, NULL) != SQLITE_OK)
        return fail(s, err, "rollouts");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        const char *dt = (const char *)sqlite3_column_text(q, 1);
        const char *st = (const char *)sqlite3_column_text(q, 2);
        struct otasrv_rollout_def def = {0};
        struct otasrv_rollout *r = NULL;
        struct otasrv_rollout_device *devs = NULL;
        json_t *dj = NULL, *sj = NULL;
        size_t n = 0;
        int e;

        if ((e = ota_json_parse(dt, strlen(dt), &dj, err)) < 0 ||
            (e = ota_json_parse(st, strlen(st), &sj, err)) < 0 ||
            (e = otasrv_rollout_from_json(dj, &def, err)) < 0 ||
            (e = otasrv_rollout_new(&def, 0, &r, err)) < 0 ||
            (e = otasrv_rollout_status_from_json(sj, r, err)) < 0 ||
            (e = load_rows(s, id, &devs, &n, err)) < 0) {
            ret = e;
            otasrv_rollout_def_clear(&def);
            otasrv_rollout_free(r);
        } else {
            otasrv_rollout_recount(r, devs, n);
            fn(ctx, r, devs, n);
        }
        json_decref(dj);
        json_decref(sj);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return fail(s, err, "rollouts");
    return ret;
}
