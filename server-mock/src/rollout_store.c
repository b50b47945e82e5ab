/* SQLite tables of the rollouts. The definition and the status are JSON
 * text (the engine's own formats); a device row is one table row. The
 * connection, its statements and the error mapping: db.h. */
#include "otasrv/rollout_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"
#include "otasrv/db.h"

struct otasrv_rstore {
    struct otasrv_db c;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS rollouts(id TEXT PRIMARY KEY, definition TEXT NOT NULL,"
    " status TEXT NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rollout_devices(rollout TEXT NOT NULL, device TEXT NOT NULL,"
    " bucket INTEGER NOT NULL, stage INTEGER NOT NULL, state INTEGER NOT NULL,"
    " offered_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,"
    " finished_ms INTEGER NOT NULL, rollback_ms INTEGER NOT NULL,"
    " PRIMARY KEY(rollout, device));";

static const char SQL_ROLLOUT_PUT[] =
    "INSERT INTO rollouts(id, definition, status, created_ms) VALUES(?1, ?2, ?3, ?4)"
    " ON CONFLICT(id) DO UPDATE SET definition = ?2, status = ?3";
static const char SQL_STATUS_PUT[] = "UPDATE rollouts SET status = ?2 WHERE id = ?1";
static const char SQL_RDEV_CLEAR[] = "DELETE FROM rollout_devices WHERE rollout = ?1";
static const char SQL_RDEV_PUT[] =
    "INSERT OR REPLACE INTO rollout_devices VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
static const char SQL_RDEV_LIST[] =
    "SELECT device, bucket, stage, state, offered_ms, started_ms, last_ms, finished_ms,"
    " rollback_ms FROM rollout_devices WHERE rollout = ?1 ORDER BY device";
static const char SQL_ROLLOUT_LIST[] =
    "SELECT id, definition, status FROM rollouts ORDER BY created_ms, id";

void otasrv_rstore_close(struct otasrv_rstore *s)
{
    if (!s)
        return;
    otasrv_db_close(&s->c);
    free(s);
}

int otasrv_rstore_open(const char *path, struct otasrv_rstore **ret, struct ota_err *err)
{
    struct otasrv_rstore *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return ota_err_set(err, ENOMEM, "out of memory");
    if ((r = otasrv_db_open(&s->c, path, 0, err)) < 0)
        goto fail;
    if ((r = sqlite3_exec(s->c.db, SCHEMA, NULL, NULL, NULL)) != SQLITE_OK) {
        r = otasrv_db_fail(s->c.db, r, path, err);
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    otasrv_rstore_close(s);
    return r;
}

/* One device row with the prepared SQL_RDEV_PUT q. */
static int put_row(struct otasrv_db *c, sqlite3_stmt *q, const char *id,
                   const struct otasrv_rollout_device *d, struct ota_err *err)
{
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, d->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, d->bucket);
    sqlite3_bind_int64(q, 4, d->stage);
    sqlite3_bind_int64(q, 5, d->state);
    sqlite3_bind_int64(q, 6, d->offered_ms);
    sqlite3_bind_int64(q, 7, d->started_ms);
    sqlite3_bind_int64(q, 8, d->last_ms);
    sqlite3_bind_int64(q, 9, d->finished_ms);
    sqlite3_bind_int64(q, 10, d->rollback_ms);
    return otasrv_db_step_done(c, q, "rollout_devices", err);
}

/* The rollout's row, and its device rows (all of them after a DELETE when
 * replace, else the dirty ones), inside the caller's transaction. */
static int save_rows(struct otasrv_rstore *s, const struct otasrv_rollout *r, const char *def_text,
                     const char *st_text, const struct otasrv_rollout_device *devs, size_t n,
                     int replace, struct ota_err *err)
{
    struct otasrv_db *c = &s->c;
    sqlite3_stmt *q;
    int ret;

    if ((ret = otasrv_db_prep(c, SQL_ROLLOUT_PUT, &q, err)) < 0)
        return ret;
    sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, def_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, st_text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, r->created_ms);
    ret = otasrv_db_step_done(c, q, "rollouts", err);
    sqlite3_reset(q);
    if (ret < 0)
        return ret;
    if (replace) {
        if ((ret = otasrv_db_prep(c, SQL_RDEV_CLEAR, &q, err)) < 0)
            return ret;
        sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
        ret = otasrv_db_step_done(c, q, "rollout_devices", err);
        sqlite3_reset(q);
        if (ret < 0)
            return ret;
    }
    if ((ret = otasrv_db_prep(c, SQL_RDEV_PUT, &q, err)) < 0)
        return ret;
    for (size_t i = 0; i < n && ret == 0; i++) {
        const struct otasrv_rollout_device *d = &devs[i];
        if (!replace && !d->dirty)
            continue;
        ret = put_row(c, q, r->def.id, d, err);
    }
    sqlite3_reset(q);
    return ret;
}

int otasrv_rstore_save(struct otasrv_rstore *s, const struct otasrv_rollout *r,
                       struct otasrv_rollout_device *devs, size_t n, int replace,
                       struct ota_err *err)
{
    json_t *def = NULL, *st = NULL;
    char *def_text = NULL, *st_text = NULL;
    int ret;

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
    if ((ret = otasrv_db_exec(&s->c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    if ((ret = save_rows(s, r, def_text, st_text, devs, n, replace, err)) < 0 ||
        (ret = otasrv_db_exec(&s->c, "COMMIT", err)) < 0) {
        otasrv_db_rollback(&s->c);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        devs[i].dirty = 0;
out:
    free(def_text);
    free(st_text);
    json_decref(def);
    json_decref(st);
    return ret;
}

/* The status row and the listed dirty rows, inside the caller's
 * transaction. */
static int save_listed(struct otasrv_rstore *s, const struct otasrv_rollout *r, const char *st_text,
                       const struct otasrv_rollout_device *devs, const uint32_t *rows,
                       size_t n_rows, struct ota_err *err)
{
    struct otasrv_db *c = &s->c;
    sqlite3_stmt *q;
    int ret;

    if ((ret = otasrv_db_prep(c, SQL_STATUS_PUT, &q, err)) < 0)
        return ret;
    sqlite3_bind_text(q, 1, r->def.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, st_text, -1, SQLITE_STATIC);
    ret = otasrv_db_step_done(c, q, "rollouts", err);
    sqlite3_reset(q);
    if (ret < 0 || (ret = otasrv_db_prep(c, SQL_RDEV_PUT, &q, err)) < 0)
        return ret;
    for (size_t i = 0; i < n_rows && ret == 0; i++)
        if (devs[rows[i]].dirty)
            ret = put_row(c, q, r->def.id, &devs[rows[i]], err);
    sqlite3_reset(q);
    return ret;
}

int otasrv_rstore_save_rows(struct otasrv_rstore *s, const struct otasrv_rollout *r,
                            struct otasrv_rollout_device *devs, const uint32_t *rows, size_t n_rows,
                            struct ota_err *err)
{
    json_t *st = NULL;
    char *st_text = NULL;
    int ret;

    if ((ret = otasrv_rollout_status_to_json(r, &st)) < 0)
        return ota_err_set(err, -ret, "rollout %s: to JSON", r->def.id);
    st_text = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    if (!st_text)
        return ota_err_set(err, ENOMEM, "out of memory");
    if ((ret = otasrv_db_exec(&s->c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    if ((ret = save_listed(s, r, st_text, devs, rows, n_rows, err)) < 0 ||
        (ret = otasrv_db_exec(&s->c, "COMMIT", err)) < 0) {
        otasrv_db_rollback(&s->c);
        goto out;
    }
    for (size_t i = 0; i < n_rows; i++)
        devs[rows[i]].dirty = 0;
out:
    free(st_text);
    return ret;
}

/* The table of rollout id, sorted by device id. */
static int load_rows(struct otasrv_rstore *s, const char *id, struct otasrv_rollout_device **ret,
                     size_t *ret_n, struct ota_err *err)
{
    struct otasrv_rollout_device *v = NULL, *nv;
    size_t n = 0, cap = 0;
    sqlite3_stmt *q;
    int r;

    if ((r = otasrv_db_prep(&s->c, SQL_RDEV_LIST, &q, err)) < 0)
        return r;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    while ((r = otasrv_db_row(&s->c, q, "rollout_devices", err)) == 1) {
        struct otasrv_rollout_device *d;
        const char *dev = (const char *)sqlite3_column_text(q, 0);
        int st = sqlite3_column_int(q, 3);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                r = ota_err_set(err, ENOMEM, "out of memory");
                break;
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
    sqlite3_reset(q);
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int otasrv_rstore_load(struct otasrv_rstore *s, otasrv_rstore_fn fn, void *ctx, struct ota_err *err)
{
    sqlite3_stmt *q;
    int r, ret = 0;

    if ((r = otasrv_db_prep(&s->c, SQL_ROLLOUT_LIST, &q, err)) < 0)
        return r;
    while ((r = otasrv_db_row(&s->c, q, "rollouts", err)) == 1) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        const char *dt = (const char *)sqlite3_column_text(q, 1);
        const char *st = (const char *)sqlite3_column_text(q, 2);
        struct otasrv_rollout_def def = {0};
        struct otasrv_rollout *ro = NULL;
        struct otasrv_rollout_device *devs = NULL;
        json_t *dj = NULL, *sj = NULL;
        size_t n = 0;
        int e;

        if ((e = ota_json_parse(dt, strlen(dt), &dj, err)) < 0 ||
            (e = ota_json_parse(st, strlen(st), &sj, err)) < 0 ||
            (e = otasrv_rollout_from_json(dj, &def, err)) < 0 ||
            (e = otasrv_rollout_new(&def, 0, &ro, err)) < 0 ||
            (e = otasrv_rollout_status_from_json(sj, ro, err)) < 0 ||
            (e = load_rows(s, id, &devs, &n, err)) < 0) {
            ret = e;
            otasrv_rollout_def_clear(&def);
            otasrv_rollout_free(ro);
        } else {
            otasrv_rollout_recount(ro, devs, n);
            fn(ctx, ro, devs, n);
        }
        json_decref(dj);
        json_decref(sj);
    }
    sqlite3_reset(q);
    return r < 0 ? r : ret;
}
