/* The store's devices: registration, token lookup, check-ins (the
 * heartbeat in memory, flushed by store_hb_flush), one device, the list. */
#include "store_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char SQL_DEV_EXISTS[] = "SELECT 1 FROM devices WHERE id = ?";
static const char SQL_DEV_INSERT[] =
    "INSERT INTO devices(id, token_sha256, type, grp, tags, versions, registered_ms, attributes,"
    " tz) VALUES(?1, ?2, coalesce(?3, ''), coalesce(?4, ''), coalesce(?5, '[]'),"
    " coalesce(?6, '{}'), ?7, coalesce(?8, '{}'), coalesce(?9, ''))";
static const char SQL_DEV_REENROLL[] =
    "UPDATE devices SET token_sha256 = ?2, type = coalesce(?3, type), grp = coalesce(?4, grp),"
    " tags = coalesce(?5, tags), versions = coalesce(?6, versions), reenrolled_ms = ?7,"
    " attributes = coalesce(?8, attributes), tz = coalesce(?9, tz) WHERE id = ?1";
static const char SQL_DEV_BY_TOKEN[] = "SELECT id FROM devices WHERE token_sha256 = ?";
static const char SQL_DEV_CHECKIN[] =
    "UPDATE devices SET type = coalesce(?2, type), grp = coalesce(?3, grp),"
    " tags = coalesce(?4, tags), versions = coalesce(?5, versions),"
    " slots = coalesce(?6, slots), state = coalesce(?7, state),"
    " attributes = coalesce(?8, attributes), tz = coalesce(?9, tz) WHERE id = ?1";
static const char SQL_DEV_INV[] = "SELECT type, grp, tags, versions, slots, state, attributes,"
                                  " tz, last_checkin_ms, checkins FROM devices WHERE id = ?";
static const char SQL_DEV_HB[] =
    "UPDATE devices SET last_checkin_ms = ?2, checkins = ?3 WHERE id = ?1";
#define DEV_COLS                                                                                   \
    "id, type, grp, tags, versions, slots, state, registered_ms, reenrolled_ms, last_checkin_ms,"  \
    " checkins, attributes, tz"
static const char SQL_DEV_GET[] = "SELECT " DEV_COLS " FROM devices WHERE id = ?";

int otasrv_store_device_register(struct otasrv_store *s, const char *id, const char *token_sha,
                                 const struct otasrv_device_inv *inv, int64_t now_ms,
                                 int *ret_created, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r, exists;

    if ((r = otasrv_db_exec(c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    if ((r = otasrv_db_prep(c, SQL_DEV_EXISTS, &st, err)) < 0)
        goto rollback;
    otasrv_db_bind_text(st, 1, id);
    if ((exists = otasrv_db_row(c, st, "device", err)) < 0) {
        r = exists;
        goto rollback;
    }
    sqlite3_reset(st);
    if ((r = otasrv_db_prep(c, exists ? SQL_DEV_REENROLL : SQL_DEV_INSERT, &st, err)) < 0)
        goto rollback;
    otasrv_db_bind_text(st, 1, id);
    otasrv_db_bind_text(st, 2, token_sha);
    otasrv_db_bind_text(st, 3, inv->type);
    otasrv_db_bind_text(st, 4, inv->group);
    otasrv_db_bind_text(st, 5, inv->tags);
    otasrv_db_bind_text(st, 6, inv->versions);
    sqlite3_bind_int64(st, 7, now_ms);
    otasrv_db_bind_text(st, 8, inv->attributes);
    otasrv_db_bind_text(st, 9, inv->timezone);
    if ((r = otasrv_db_step_done(c, st, "register", err)) < 0) {
        goto rollback;
    }
    if ((r = otasrv_db_exec(c, "COMMIT", err)) < 0)
        goto rollback;
    *ret_created = !exists;
    /* New token, maybe new inventory: forget both (refilled on use). */
    pthread_mutex_lock(&s->mlock);
    s->gen++;
    {
        struct dev *d = store_dev_find(s, id);
        if (d) {
            store_tok_unlink(s, d);
            d->inv_known = 0;
        }
    }
    pthread_mutex_unlock(&s->mlock);
    goto out;
rollback:
    otasrv_db_rollback(c);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_device_by_token(struct otasrv_store *s, const char *sha, char *ret_id, size_t cap,
                                 struct ota_err *err)
{
    struct otasrv_db *c;
    sqlite3_stmt *st;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    {
        struct dev *d = store_tok_find(s, sha);
        if (d) {
            ota_strlcpy(ret_id, d->id, cap);
            pthread_mutex_unlock(&s->mlock);
            return 0;
        }
    }
    gen = s->gen;
    pthread_mutex_unlock(&s->mlock);
    c = store_acquire(s);
    if ((r = otasrv_db_prep(c, SQL_DEV_BY_TOKEN, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, sha);
    r = otasrv_db_row(c, st, "device token", err);
    if (r == 1) {
        const char *id = otasrv_db_col_text(st, 0);
        r = 0;
        ota_strlcpy(ret_id, id, cap);
        r = 0;
        pthread_mutex_lock(&s->mlock);
        if (s->gen == gen) { /* no re-enrollment since the read began */
            struct dev *d = store_dev_get(s, id);
            if (d)
                store_tok_link(s, d, sha);
        }
        pthread_mutex_unlock(&s->mlock);
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "unknown device token");
    }
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}

/* The inventory and heartbeat row of id into the cache (the parts not
 * known yet); c is a pool connection, or the writer (wlock held, where
 * nothing can invalidate: gen is not checked). -ENOENT. */
static int dev_load(struct otasrv_store *s, struct otasrv_db *c, const char *id,
                    struct ota_err *err)
{
    sqlite3_stmt *st;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    gen = s->gen;
    pthread_mutex_unlock(&s->mlock);
    if ((r = otasrv_db_prep(c, SQL_DEV_INV, &st, err)) < 0)
        return r;
    otasrv_db_bind_text(st, 1, id);
    r = otasrv_db_row(c, st, "device", err);
    if (r == 1) {
        const char *v[NINV];
        r = 0;
        for (int i = 0; i < NINV; i++)
            v[i] = otasrv_db_col_text(st, i);
        pthread_mutex_lock(&s->mlock);
        if (s->gen == gen || c == &s->writer) {
            struct dev *d = store_dev_get(s, id);
            if (d && (!d->inv_known || c == &s->writer))
                store_inv_set(d, v);
            if (d && !d->hb_known) {
                d->last_ms = sqlite3_column_int64(st, NINV);
                d->checkins = sqlite3_column_int64(st, NINV + 1);
                d->hb_known = 1;
            }
        }
        pthread_mutex_unlock(&s->mlock);
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no device %s", id);
    }
    sqlite3_reset(st);
    return r;
}

/* The heartbeat alone, if the cache knows the device and inv changes
 * nothing: 1 done, 0 not known, -EAGAIN the inventory changes. */
static int checkin_cached(struct otasrv_store *s, const char *id,
                          const struct otasrv_device_inv *inv, int64_t now_ms,
                          struct otasrv_device_brief *ret_brief)
{
    struct dev *d;
    int r = 0;

    pthread_mutex_lock(&s->mlock);
    d = store_dev_find(s, id);
    if (d && d->inv_known && d->hb_known) {
        if (store_inv_same(d, inv)) {
            store_hb_touch(s, d, now_ms);
            if (ret_brief)
                *ret_brief = d->brief;
            r = 1;
        } else {
            r = -EAGAIN;
        }
    }
    pthread_mutex_unlock(&s->mlock);
    return r;
}

int otasrv_store_device_checkin(struct otasrv_store *s, const char *id,
                                const struct otasrv_device_inv *inv, int64_t now_ms,
                                struct otasrv_device_brief *ret_brief, struct ota_err *err)
{
    struct otasrv_db *c;
    sqlite3_stmt *st;
    int r;

    /* Twice at most: a re-enrollment racing the load leaves it unknown. */
    for (int i = 0; i < 2; i++) {
        r = checkin_cached(s, id, inv, now_ms, ret_brief);
        if (r == 1)
            return 0;
        if (r < 0)
            break;
        c = store_acquire(s);
        r = dev_load(s, c, id, err);
        store_release(s, c);
        if (r < 0)
            return r;
    }
    /* The inventory changes (or the cache would not settle): durably. */
    c = store_wacquire(s);
    if ((r = otasrv_db_prep(c, SQL_DEV_CHECKIN, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    otasrv_db_bind_text(st, 2, inv->type);
    otasrv_db_bind_text(st, 3, inv->group);
    otasrv_db_bind_text(st, 4, inv->tags);
    otasrv_db_bind_text(st, 5, inv->versions);
    otasrv_db_bind_text(st, 6, inv->slots);
    otasrv_db_bind_text(st, 7, inv->state);
    otasrv_db_bind_text(st, 8, inv->attributes);
    otasrv_db_bind_text(st, 9, inv->timezone);
    r = otasrv_db_step_done(c, st, "checkin", err);
    if (r == 0 && sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no device %s", id);
    sqlite3_reset(st);
    if (r == 0)
        r = dev_load(s, c, id, err); /* the committed inventory, in commit order */
    if (r == 0) {
        struct dev *d;
        pthread_mutex_lock(&s->mlock);
        d = store_dev_find(s, id);
        if (d && d->hb_known) {
            store_hb_touch(s, d, now_ms);
            if (ret_brief)
                *ret_brief = d->brief;
        } else {
            r = ota_err_set(err, ENOMEM, "out of memory");
        }
        pthread_mutex_unlock(&s->mlock);
    }
out:
    store_release(s, c);
    return r;
}

/* Writes the dirty heartbeats in one transaction (wlock); rows that fail
 * are dirty again. */
int store_hb_flush(struct otasrv_store *s, struct ota_err *err)
{
    struct hb {
        char id[129];
        int64_t last_ms, checkins;
    } *v = NULL;
    size_t n = 0, cap = 0;
    struct otasrv_db *c;
    sqlite3_stmt *st;
    struct dev *d;
    int r = 0;

    pthread_mutex_lock(&s->mlock);
    for (d = s->dirty; d; d = d->dnext)
        cap++;
    if (cap)
        v = malloc(cap * sizeof(*v));
    if (!v) {
        pthread_mutex_unlock(&s->mlock);
        return cap ? ota_err_set(err, ENOMEM, "out of memory") : 0;
    }
    for (d = s->dirty; d; d = d->dnext) {
        strcpy(v[n].id, d->id);
        v[n].last_ms = d->last_ms;
        v[n].checkins = d->checkins;
        d->dirty = 0;
        n++;
    }
    s->dirty = NULL;
    pthread_mutex_unlock(&s->mlock);

    c = store_wacquire(s);
    if ((r = otasrv_db_exec(c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    for (size_t i = 0; i < n && r == 0; i++) {
        if ((r = otasrv_db_prep(c, SQL_DEV_HB, &st, err)) < 0)
            break;
        otasrv_db_bind_text(st, 1, v[i].id);
        sqlite3_bind_int64(st, 2, v[i].last_ms);
        sqlite3_bind_int64(st, 3, v[i].checkins);
        r = otasrv_db_step_done(c, st, "heartbeats", err);
        sqlite3_reset(st);
    }
    if (r == 0)
        r = otasrv_db_exec(c, "COMMIT", err);
    if (r < 0)
        otasrv_db_rollback(c);
out:
    store_release(s, c);
    if (r < 0) {
        pthread_mutex_lock(&s->mlock);
        for (size_t i = 0; i < n; i++) {
            d = store_dev_find(s, v[i].id);
            if (d && !d->dirty) {
                d->dirty = 1;
                d->dnext = s->dirty;
                s->dirty = d;
            }
        }
        pthread_mutex_unlock(&s->mlock);
    }
    free(v);
    return r;
}

static json_t *json_col(sqlite3_stmt *st, int i, const char *fallback)
{
    json_t *v = json_loads(otasrv_db_col_text(st, i), JSON_DECODE_ANY, NULL);
    return v ? v : json_loads(fallback, 0, NULL);
}

static json_t *device_row(sqlite3_stmt *st)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:I, s:I, s:o, s:s}",
                     "device_id", otasrv_db_col_text(st, 0), "device_type",
                     otasrv_db_col_text(st, 1), "group", otasrv_db_col_text(st, 2), "tags",
                     json_col(st, 3, "[]"), "versions", json_col(st, 4, "{}"), "slots",
                     json_col(st, 5, "{}"), "state", otasrv_db_col_text(st, 6), "registered_ms",
                     (json_int_t)sqlite3_column_int64(st, 7), "reenrolled_ms",
                     (json_int_t)sqlite3_column_int64(st, 8), "last_checkin_ms",
                     (json_int_t)sqlite3_column_int64(st, 9), "checkins",
                     (json_int_t)sqlite3_column_int64(st, 10), "attributes", json_col(st, 11, "{}"),
                     "timezone", otasrv_db_col_text(st, 12));
}

int otasrv_store_device_view(struct otasrv_store *s, const char *id, json_t **ret,
                             struct ota_err *err)
{
    struct dev *d;
    json_t *v = NULL;

    pthread_mutex_lock(&s->mlock);
    d = store_dev_find(s, id);
    if (d && d->inv_known && d->view)
        v = json_incref(d->view);
    pthread_mutex_unlock(&s->mlock);
    if (v) {
        *ret = v;
        return 0;
    }
    return otasrv_store_device_get(s, id, ret, err);
}

int otasrv_store_device_get(struct otasrv_store *s, const char *id, json_t **ret,
                            struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_DEV_GET, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    r = otasrv_db_row(c, st, "device", err);
    if (r == 1) {
        r = 0;
        json_t *o = device_row(st);
        store_hb_merge(s, o);
        if (o)
            *ret = o;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no device %s", id);
    }
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}

/* WHERE clause of a device filter; binds in bind_filter, same order. */
static void filter_sql(const struct otasrv_device_filter *f, char *buf, size_t cap)
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

static int bind_filter(sqlite3_stmt *st, const struct otasrv_device_filter *f)
{
    int i = 1;

    if (f->type)
        otasrv_db_bind_text(st, i++, f->type);
    if (f->group)
        otasrv_db_bind_text(st, i++, f->group);
    if (f->tag)
        otasrv_db_bind_text(st, i++, f->tag);
    if (f->version && f->kind) {
        otasrv_db_bind_text(st, i++, f->kind);
        otasrv_db_bind_text(st, i++, f->version);
    } else if (f->version) {
        otasrv_db_bind_text(st, i++, f->version);
        otasrv_db_bind_text(st, i++, f->version);
    }
    return i;
}

int otasrv_store_devices_list(struct otasrv_store *s, const struct otasrv_device_filter *f,
                              json_t **ret, struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st = NULL;
    char where[512], sql[1024];
    json_t *out = NULL, *arr;
    int64_t total = 0;
    int r = 0, i;

    filter_sql(f, where, sizeof(where));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM devices%s", where);
    if ((r = otasrv_db_prepare(c, sql, &st, "devices", err)) < 0)
        goto out;
    bind_filter(st, f);
    if ((r = otasrv_db_row(c, st, "devices", err)) < 0)
        goto out;
    total = r ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    st = NULL;

    snprintf(sql, sizeof(sql), "SELECT " DEV_COLS " FROM devices%s ORDER BY id LIMIT ? OFFSET ?",
             where);
    if ((r = otasrv_db_prepare(c, sql, &st, "devices", err)) < 0)
        goto out;
    i = bind_filter(st, f);
    sqlite3_bind_int64(st, i, f->limit);
    sqlite3_bind_int64(st, i + 1, f->offset);
    out = json_pack("{s:[], s:I}", "devices", "total", (json_int_t)total);
    if (!out) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    arr = json_object_get(out, "devices");
    while ((r = otasrv_db_row(c, st, "devices", err)) == 1) {
        json_t *o = device_row(st);
        store_hb_merge(s, o);
        json_array_append_new(arr, o);
    }
    if (r < 0)
        goto out;
    *ret = out;
    out = NULL;
out:
    sqlite3_finalize(st);
    json_decref(out);
    store_release(s, c);
    return r;
}

int otasrv_store_devices_tally(struct otasrv_store *s,
                               void (*fn)(void *ctx, const char *const cols[5], int64_t n),
                               void *ctx, struct ota_err *err)
{
    static const char sql[] =
        "SELECT type, grp, state, json_extract(versions, '$.app'),"
        " json_extract(versions, '$.rootfs'), count(*) FROM devices GROUP BY 1, 2, 3, 4, 5";
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = otasrv_db_prepare(c, sql, &st, "devices", err)) < 0)
        goto out;
    while ((r = otasrv_db_row(c, st, "devices", err)) == 1) {
        const char *cols[5];
        for (int i = 0; i < 5; i++)
            cols[i] = otasrv_db_col_text(st, i);
        fn(ctx, cols, sqlite3_column_int64(st, 5));
    }
out:
    sqlite3_finalize(st);
    store_release(s, c);
    return r;
}
