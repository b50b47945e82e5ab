/* SQLite store. Every connection runs WAL + synchronous=FULL, so a write is
 * durable when sqlite3_step returns. All writes go through one writer
 * connection under an in-process mutex (wlock): our writers queue on the
 * mutex instead of colliding in SQLite, whose busy handler sleeps 1-10 ms a
 * try. Reads take a pool connection and run concurrently (WAL). The only
 * other writer is rollout_store.c's connection (busy_timeout covers it).
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

#include "ota/json.h"
#include "otasrv/db.h"

#define NBUCKET 65536 /* fixed: chains grow past that many devices */
#define NINV    6     /* type, grp, tags, versions, slots, state */

struct dev {
    struct dev *next, *tnext, *dnext; /* by id, by token, dirty list */
    char id[129];
    char token[65]; /* "": not in the token chains */
    int inv_known, hb_known, dirty;
    char *inv[NINV];
    struct ota_device_brief brief;
    int64_t last_ms, checkins;
    int finals_known;
    char **finals; /* update ids with a final report */
    size_t n_finals;
};

struct ota_store {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    struct ota_db *conns;
    struct ota_db **free_list;
    unsigned n_free;
    struct ota_db writer;
    pthread_mutex_t wlock;
    pthread_mutex_t mlock;
    struct dev **by_id, **by_tok;
    struct dev *dirty;
    uint64_t gen, rel_gen, rep_gen;
    struct ota_published_set *pub;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    pthread_t flusher;
    int flusher_on, stop;
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
    "CREATE TABLE IF NOT EXISTS admin_tokens(sha256 TEXT PRIMARY KEY, created_ms INTEGER);"
    "CREATE TABLE IF NOT EXISTS fault_applied("
    " device TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL, applied INTEGER NOT NULL,"
    " first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, PRIMARY KEY(device, rule));";

static int hb_flush(struct ota_store *s, struct ota_err *err);
static void pub_put_locked(struct ota_published_set *set);

static void dev_free(struct dev *d)
{
    for (int i = 0; i < NINV; i++)
        free(d->inv[i]);
    for (size_t i = 0; i < d->n_finals; i++)
        free(d->finals[i]);
    free(d->finals);
    free(d);
}

static void *flusher_main(void *arg)
{
    struct ota_store *s = arg;
    struct timespec ts;

    pthread_mutex_lock(&s->stop_lock);
    while (!s->stop) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += OTA_STORE_FLUSH_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->stop_cond, &s->stop_lock, &ts);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->stop_lock);
        ota_ignore(hb_flush(s, NULL)); /* failed rows stay dirty: retried next time */
        pthread_mutex_lock(&s->stop_lock);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return NULL;
}

void ota_store_close(struct ota_store *s)
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
        ota_ignore(hb_flush(s, NULL));
    for (unsigned i = 0; i < s->n; i++)
        ota_db_close(&s->conns[i]);
    if (s->writer.db)
        ota_db_close(&s->writer);
    if (s->by_id) {
        for (size_t i = 0; i < NBUCKET; i++) {
            struct dev *d = s->by_id[i], *next;
            for (; d; d = next) {
                next = d->next;
                dev_free(d);
            }
        }
    }
    if (s->pub)
        pub_put_locked(s->pub);
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

int ota_store_open(const char *path, unsigned nconn, struct ota_store **ret, struct ota_err *err)
{
    struct ota_store *s;
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
    if ((r = ota_db_open(&s->writer, path, 1, err)) < 0)
        goto fail;
    if ((r = sqlite3_exec(s->writer.db, SCHEMA, NULL, NULL, NULL)) != SQLITE_OK) {
        r = ota_err_prefix(err, ota_db_fail(s->writer.db, r, "schema", err), "%s", path);
        goto fail;
    }
    for (unsigned i = 0; i < nconn; i++) {
        s->n = i + 1;
        r = ota_db_open(&s->conns[i], path, 1, err);
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
    ota_store_close(s);
    return r;
}

static struct ota_db *acquire(struct ota_store *s)
{
    struct ota_db *c;

    pthread_mutex_lock(&s->lock);
    while (s->n_free == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    c = s->free_list[--s->n_free];
    pthread_mutex_unlock(&s->lock);
    return c;
}

static void release(struct ota_store *s, struct ota_db *c)
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

/* The writer connection, exclusively until release(). */
static struct ota_db *wacquire(struct ota_store *s)
{
    pthread_mutex_lock(&s->wlock);
    return &s->writer;
}

/* ---- caches (mlock held) ---- */

static size_t hash(const char *k)
{
    uint32_t h = 2166136261u;

    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h % NBUCKET;
}

static struct dev *dev_find(struct ota_store *s, const char *id)
{
    struct dev *d = s->by_id[hash(id)];

    while (d && strcmp(d->id, id) != 0)
        d = d->next;
    return d;
}

/* Finds or adds; NULL on ENOMEM or an id too long to cache. */
static struct dev *dev_get(struct ota_store *s, const char *id)
{
    struct dev *d = dev_find(s, id);
    size_t h;

    if (d || strlen(id) >= sizeof(d->id))
        return d;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    strcpy(d->id, id);
    h = hash(id);
    d->next = s->by_id[h];
    s->by_id[h] = d;
    return d;
}

static struct dev *tok_find(struct ota_store *s, const char *sha)
{
    struct dev *d = s->by_tok[hash(sha)];

    while (d && strcmp(d->token, sha) != 0)
        d = d->tnext;
    return d;
}

static void tok_unlink(struct ota_store *s, struct dev *d)
{
    struct dev **p;

    if (!d->token[0])
        return;
    for (p = &s->by_tok[hash(d->token)]; *p; p = &(*p)->tnext) {
        if (*p == d) {
            *p = d->tnext;
            break;
        }
    }
    d->tnext = NULL;
    d->token[0] = '\0';
}

static void tok_link(struct ota_store *s, struct dev *d, const char *sha)
{
    size_t h;

    tok_unlink(s, d);
    if (strlen(sha) >= sizeof(d->token))
        return;
    strcpy(d->token, sha);
    h = hash(sha);
    d->tnext = s->by_tok[h];
    s->by_tok[h] = d;
}

/* Sets the cached inventory (column texts in v); unknown again on ENOMEM. */
static void inv_set(struct dev *d, const char *const v[NINV])
{
    json_t *vers;

    d->inv_known = 1;
    for (int i = 0; i < NINV; i++) {
        free(d->inv[i]);
        d->inv[i] = strdup(v[i] ? v[i] : "");
        if (!d->inv[i])
            d->inv_known = 0;
    }
    memset(&d->brief, 0, sizeof(d->brief));
    ota_strlcpy(d->brief.type, d->inv[0] ? d->inv[0] : "", sizeof(d->brief.type));
    vers = d->inv[3] ? json_loads(d->inv[3], 0, NULL) : NULL;
    for (int k = 0; k < OTA_KIND_MAX; k++) {
        const char *x = json_string_value(json_object_get(vers, ota_kind_names[k]));
        ota_strlcpy(d->brief.version[k], x ? x : "", sizeof(d->brief.version[k]));
    }
    json_decref(vers);
}

/* 1 if every field inv gives equals the cached one. */
static int inv_same(const struct dev *d, const struct ota_device_inv *inv)
{
    const char *v[NINV] = {inv->type, inv->group, inv->tags, inv->versions, inv->slots, inv->state};

    for (int i = 0; i < NINV; i++)
        if (v[i] && strcmp(v[i], d->inv[i]) != 0)
            return 0;
    return 1;
}

static void hb_touch(struct ota_store *s, struct dev *d, int64_t now_ms)
{
    d->last_ms = now_ms;
    d->checkins++;
    if (!d->dirty) {
        d->dirty = 1;
        d->dnext = s->dirty;
        s->dirty = d;
    }
}

/* Adds a final report's update id; the list is unknown again on ENOMEM. */
static void finals_add(struct dev *d, const char *update_id)
{
    char **nv = realloc(d->finals, (d->n_finals + 1) * sizeof(*nv));

    if (nv)
        d->finals = nv;
    if (!nv || !(d->finals[d->n_finals] = strdup(update_id))) {
        for (size_t i = 0; i < d->n_finals; i++)
            free(d->finals[i]);
        d->n_finals = 0;
        d->finals_known = 0;
        return;
    }
    d->n_finals++;
}

static int finals_has(const struct dev *d, const char *update_id)
{
    for (size_t i = 0; i < d->n_finals; i++)
        if (strcmp(d->finals[i], update_id) == 0)
            return 1;
    return 0;
}

/* Sets the in-memory heartbeat of device id into its JSON object. */
static void hb_merge(struct ota_store *s, json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "device_id"));
    struct dev *d;

    if (!id)
        return;
    pthread_mutex_lock(&s->mlock);
    d = dev_find(s, id);
    if (d && d->hb_known) {
        json_object_set_new(o, "last_checkin_ms", json_integer((json_int_t)d->last_ms));
        json_object_set_new(o, "checkins", json_integer((json_int_t)d->checkins));
    }
    pthread_mutex_unlock(&s->mlock);
}

static void pub_put_locked(struct ota_published_set *set)
{
    if (!set || --set->ref > 0)
        return;
    for (size_t i = 0; i < set->n; i++)
        free(set->v[i].rel.manifest);
    free(set->v);
    free(set);
}

/* After a release write (wlock held): the cached set is stale. */
static void pub_invalidate(struct ota_store *s)
{
    pthread_mutex_lock(&s->mlock);
    s->rel_gen++;
    if (s->pub)
        pub_put_locked(s->pub);
    s->pub = NULL;
    pthread_mutex_unlock(&s->mlock);
}

/* ---- admin tokens ---- */

static const char SQL_ADMIN_CLEAR[] = "DELETE FROM admin_tokens";
static const char SQL_ADMIN_ADD[] =
    "INSERT INTO admin_tokens(sha256, created_ms) VALUES(?, strftime('%s','now')*1000)";
static const char SQL_ADMIN_CHECK[] = "SELECT 1 FROM admin_tokens WHERE sha256 = ?";

int ota_store_admin_token_set(struct ota_store *s, const char *sha_hex, struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r;

    r = ota_db_exec(c, "BEGIN IMMEDIATE", err);
    if (r < 0)
        goto out;
    if ((r = ota_db_prep(c, SQL_ADMIN_CLEAR, &st, err)) < 0)
        goto rollback;
    if ((r = ota_db_step_done(c, st, "admin tokens", err)) < 0) {
        goto rollback;
    }
    if ((r = ota_db_prep(c, SQL_ADMIN_ADD, &st, err)) < 0)
        goto rollback;
    ota_db_bind_text(st, 1, sha_hex);
    if ((r = ota_db_step_done(c, st, "admin tokens", err)) < 0) {
        goto rollback;
    }
    r = ota_db_exec(c, "COMMIT", err);
    if (r == 0)
        goto out;
rollback:
    ota_db_rollback(c);
out:
    release(s, c);
    return r;
}

int ota_store_admin_token_check(struct ota_store *s, const char *sha_hex, struct ota_err *err)
{
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_ADMIN_CHECK, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, sha_hex);
    r = ota_db_row(c, st, "admin token", err);
    if (r == 1)
        r = 0;
    else if (r == 0)
        r = ota_err_set(err, ENOENT, "not an admin token");
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
    " slots = coalesce(?6, slots), state = coalesce(?7, state) WHERE id = ?1";
static const char SQL_DEV_INV[] = "SELECT type, grp, tags, versions, slots, state,"
                                  " last_checkin_ms, checkins FROM devices WHERE id = ?";
static const char SQL_DEV_HB[] =
    "UPDATE devices SET last_checkin_ms = ?2, checkins = ?3 WHERE id = ?1";
#define DEV_COLS                                                                                   \
    "id, type, grp, tags, versions, slots, state, registered_ms, reenrolled_ms, last_checkin_ms,"  \
    " checkins"
static const char SQL_DEV_GET[] = "SELECT " DEV_COLS " FROM devices WHERE id = ?";

int ota_store_device_register(struct ota_store *s, const char *id, const char *token_sha,
                              const struct ota_device_inv *inv, int64_t now_ms, int *ret_created,
                              struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r, exists;

    if ((r = ota_db_exec(c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    if ((r = ota_db_prep(c, SQL_DEV_EXISTS, &st, err)) < 0)
        goto rollback;
    ota_db_bind_text(st, 1, id);
    if ((exists = ota_db_row(c, st, "device", err)) < 0) {
        r = exists;
        goto rollback;
    }
    sqlite3_reset(st);
    if ((r = ota_db_prep(c, exists ? SQL_DEV_REENROLL : SQL_DEV_INSERT, &st, err)) < 0)
        goto rollback;
    ota_db_bind_text(st, 1, id);
    ota_db_bind_text(st, 2, token_sha);
    ota_db_bind_text(st, 3, inv->type);
    ota_db_bind_text(st, 4, inv->group);
    ota_db_bind_text(st, 5, inv->tags);
    ota_db_bind_text(st, 6, inv->versions);
    sqlite3_bind_int64(st, 7, now_ms);
    if ((r = ota_db_step_done(c, st, "register", err)) < 0) {
        goto rollback;
    }
    if ((r = ota_db_exec(c, "COMMIT", err)) < 0)
        goto rollback;
    *ret_created = !exists;
    /* New token, maybe new inventory: forget both (refilled on use). */
    pthread_mutex_lock(&s->mlock);
    s->gen++;
    {
        struct dev *d = dev_find(s, id);
        if (d) {
            tok_unlink(s, d);
            d->inv_known = 0;
        }
    }
    pthread_mutex_unlock(&s->mlock);
    goto out;
rollback:
    ota_db_rollback(c);
out:
    release(s, c);
    return r;
}

int ota_store_device_by_token(struct ota_store *s, const char *sha, char *ret_id, size_t cap,
                              struct ota_err *err)
{
    struct ota_db *c;
    sqlite3_stmt *st;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    {
        struct dev *d = tok_find(s, sha);
        if (d) {
            ota_strlcpy(ret_id, d->id, cap);
            pthread_mutex_unlock(&s->mlock);
            return 0;
        }
    }
    gen = s->gen;
    pthread_mutex_unlock(&s->mlock);
    c = acquire(s);
    if ((r = ota_db_prep(c, SQL_DEV_BY_TOKEN, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, sha);
    r = ota_db_row(c, st, "device token", err);
    if (r == 1) {
        const char *id = ota_db_col_text(st, 0);
        r = 0;
        ota_strlcpy(ret_id, id, cap);
        r = 0;
        pthread_mutex_lock(&s->mlock);
        if (s->gen == gen) { /* no re-enrollment since the read began */
            struct dev *d = dev_get(s, id);
            if (d)
                tok_link(s, d, sha);
        }
        pthread_mutex_unlock(&s->mlock);
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "unknown device token");
    }
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

/* The inventory and heartbeat row of id into the cache (the parts not
 * known yet); c is a pool connection, or the writer (wlock held, where
 * nothing can invalidate: gen is not checked). -ENOENT. */
static int dev_load(struct ota_store *s, struct ota_db *c, const char *id, struct ota_err *err)
{
    sqlite3_stmt *st;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    gen = s->gen;
    pthread_mutex_unlock(&s->mlock);
    if ((r = ota_db_prep(c, SQL_DEV_INV, &st, err)) < 0)
        return r;
    ota_db_bind_text(st, 1, id);
    r = ota_db_row(c, st, "device", err);
    if (r == 1) {
        const char *v[NINV];
        r = 0;
        for (int i = 0; i < NINV; i++)
            v[i] = ota_db_col_text(st, i);
        pthread_mutex_lock(&s->mlock);
        if (s->gen == gen || c == &s->writer) {
            struct dev *d = dev_get(s, id);
            if (d && (!d->inv_known || c == &s->writer))
                inv_set(d, v);
            if (d && !d->hb_known) {
                d->last_ms = sqlite3_column_int64(st, 6);
                d->checkins = sqlite3_column_int64(st, 7);
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
static int checkin_cached(struct ota_store *s, const char *id, const struct ota_device_inv *inv,
                          int64_t now_ms, struct ota_device_brief *ret_brief)
{
    struct dev *d;
    int r = 0;

    pthread_mutex_lock(&s->mlock);
    d = dev_find(s, id);
    if (d && d->inv_known && d->hb_known) {
        if (inv_same(d, inv)) {
            hb_touch(s, d, now_ms);
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

int ota_store_device_checkin(struct ota_store *s, const char *id, const struct ota_device_inv *inv,
                             int64_t now_ms, struct ota_device_brief *ret_brief,
                             struct ota_err *err)
{
    struct ota_db *c;
    sqlite3_stmt *st;
    int r;

    /* Twice at most: a re-enrollment racing the load leaves it unknown. */
    for (int i = 0; i < 2; i++) {
        r = checkin_cached(s, id, inv, now_ms, ret_brief);
        if (r == 1)
            return 0;
        if (r < 0)
            break;
        c = acquire(s);
        r = dev_load(s, c, id, err);
        release(s, c);
        if (r < 0)
            return r;
    }
    /* The inventory changes (or the cache would not settle): durably. */
    c = wacquire(s);
    if ((r = ota_db_prep(c, SQL_DEV_CHECKIN, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, id);
    ota_db_bind_text(st, 2, inv->type);
    ota_db_bind_text(st, 3, inv->group);
    ota_db_bind_text(st, 4, inv->tags);
    ota_db_bind_text(st, 5, inv->versions);
    ota_db_bind_text(st, 6, inv->slots);
    ota_db_bind_text(st, 7, inv->state);
    r = ota_db_step_done(c, st, "checkin", err);
    if (r == 0 && sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no device %s", id);
    sqlite3_reset(st);
    if (r == 0)
        r = dev_load(s, c, id, err); /* the committed inventory, in commit order */
    if (r == 0) {
        struct dev *d;
        pthread_mutex_lock(&s->mlock);
        d = dev_find(s, id);
        if (d && d->hb_known) {
            hb_touch(s, d, now_ms);
            if (ret_brief)
                *ret_brief = d->brief;
        } else {
            r = ota_err_set(err, ENOMEM, "out of memory");
        }
        pthread_mutex_unlock(&s->mlock);
    }
out:
    release(s, c);
    return r;
}

/* Writes the dirty heartbeats in one transaction (wlock); rows that fail
 * are dirty again. */
static int hb_flush(struct ota_store *s, struct ota_err *err)
{
    struct hb {
        char id[129];
        int64_t last_ms, checkins;
    } *v = NULL;
    size_t n = 0, cap = 0;
    struct ota_db *c;
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

    c = wacquire(s);
    if ((r = ota_db_exec(c, "BEGIN IMMEDIATE", err)) < 0)
        goto out;
    for (size_t i = 0; i < n && r == 0; i++) {
        if ((r = ota_db_prep(c, SQL_DEV_HB, &st, err)) < 0)
            break;
        ota_db_bind_text(st, 1, v[i].id);
        sqlite3_bind_int64(st, 2, v[i].last_ms);
        sqlite3_bind_int64(st, 3, v[i].checkins);
        r = ota_db_step_done(c, st, "heartbeats", err);
        sqlite3_reset(st);
    }
    if (r == 0)
        r = ota_db_exec(c, "COMMIT", err);
    if (r < 0)
        ota_db_rollback(c);
out:
    release(s, c);
    if (r < 0) {
        pthread_mutex_lock(&s->mlock);
        for (size_t i = 0; i < n; i++) {
            d = dev_find(s, v[i].id);
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
    json_t *v = json_loads(ota_db_col_text(st, i), JSON_DECODE_ANY, NULL);
    return v ? v : json_loads(fallback, 0, NULL);
}

static json_t *device_row(sqlite3_stmt *st)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:I, s:I}", "device_id",
                     ota_db_col_text(st, 0), "device_type", ota_db_col_text(st, 1), "group",
                     ota_db_col_text(st, 2), "tags", json_col(st, 3, "[]"), "versions",
                     json_col(st, 4, "{}"), "slots", json_col(st, 5, "{}"), "state",
                     ota_db_col_text(st, 6), "registered_ms",
                     (json_int_t)sqlite3_column_int64(st, 7), "reenrolled_ms",
                     (json_int_t)sqlite3_column_int64(st, 8), "last_checkin_ms",
                     (json_int_t)sqlite3_column_int64(st, 9), "checkins",
                     (json_int_t)sqlite3_column_int64(st, 10));
}

int ota_store_device_get(struct ota_store *s, const char *id, json_t **ret, struct ota_err *err)
{
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_DEV_GET, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, id);
    r = ota_db_row(c, st, "device", err);
    if (r == 1) {
        r = 0;
        json_t *o = device_row(st);
        hb_merge(s, o);
        if (o)
            *ret = o;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no device %s", id);
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
        ota_db_bind_text(st, i++, f->type);
    if (f->group)
        ota_db_bind_text(st, i++, f->group);
    if (f->tag)
        ota_db_bind_text(st, i++, f->tag);
    if (f->version && f->kind) {
        ota_db_bind_text(st, i++, f->kind);
        ota_db_bind_text(st, i++, f->version);
    } else if (f->version) {
        ota_db_bind_text(st, i++, f->version);
        ota_db_bind_text(st, i++, f->version);
    }
    return i;
}

int ota_store_devices_list(struct ota_store *s, const struct ota_device_filter *f, json_t **ret,
                           struct ota_err *err)
{
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st = NULL;
    char where[512], sql[1024];
    json_t *out = NULL, *arr;
    int64_t total = 0;
    int r = 0, i;

    filter_sql(f, where, sizeof(where));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM devices%s", where);
    if ((r = ota_db_prepare(c, sql, &st, "devices", err)) < 0)
        goto out;
    bind_filter(st, f);
    if ((r = ota_db_row(c, st, "devices", err)) < 0)
        goto out;
    total = r ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    st = NULL;

    snprintf(sql, sizeof(sql), "SELECT " DEV_COLS " FROM devices%s ORDER BY id LIMIT ? OFFSET ?",
             where);
    if ((r = ota_db_prepare(c, sql, &st, "devices", err)) < 0)
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
    while ((r = ota_db_row(c, st, "devices", err)) == 1) {
        json_t *o = device_row(st);
        hb_merge(s, o);
        json_array_append_new(arr, o);
    }
    if (r < 0)
        goto out;
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
    ota_strlcpy(r->id, ota_db_col_text(st, 0), sizeof(r->id));
    ota_strlcpy(r->name, ota_db_col_text(st, 1), sizeof(r->name));
    ota_strlcpy(r->version, ota_db_col_text(st, 2), sizeof(r->version));
    ota_strlcpy(r->kind, ota_db_col_text(st, 3), sizeof(r->kind));
    r->manifest = strdup(ota_db_col_text(st, 4));
    ota_strlcpy(r->signature, ota_db_col_text(st, 5), sizeof(r->signature));
    ota_strlcpy(r->payload_name, ota_db_col_text(st, 6), sizeof(r->payload_name));
    ota_strlcpy(r->payload_path, ota_db_col_text(st, 7), sizeof(r->payload_path));
    r->size = (uint64_t)sqlite3_column_int64(st, 8);
    ota_strlcpy(r->sha256, ota_db_col_text(st, 9), sizeof(r->sha256));
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
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = ota_db_prep(c, SQL_REL_ADD, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, rel->id);
    ota_db_bind_text(st, 2, rel->name);
    ota_db_bind_text(st, 3, rel->version);
    ota_db_bind_text(st, 4, rel->kind);
    ota_db_bind_text(st, 5, rel->manifest);
    ota_db_bind_text(st, 6, rel->signature);
    ota_db_bind_text(st, 7, rel->payload_name);
    ota_db_bind_text(st, 8, rel->payload_path);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)rel->size);
    ota_db_bind_text(st, 10, rel->sha256);
    sqlite3_bind_int(st, 11, rel->published);
    sqlite3_bind_int64(st, 12, rel->published_ms);
    sqlite3_bind_int64(st, 13, rel->created_ms);
    rc = sqlite3_step(st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT) /* the id is taken: said so, not SQLite's words */
        r = ota_err_set(err, EEXIST, "release %s exists", rel->id);
    else if (rc != SQLITE_DONE)
        r = ota_db_fail(c->db, rc, "release", err);
    sqlite3_reset(st);
    if (r == 0)
        pub_invalidate(s);
out:
    release(s, c);
    return r;
}

int ota_store_release_get(struct ota_store *s, const char *id, struct ota_release **ret,
                          struct ota_err *err)
{
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_REL_GET, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, id);
    r = ota_db_row(c, st, "release", err);
    if (r == 1) {
        r = 0;
        struct ota_release *rel = release_row(st);
        if (rel)
            *ret = rel;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no release %s", id);
    }
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

int ota_store_release_list(struct ota_store *s, int published_only, struct ota_release ***ret,
                           size_t *ret_n, struct ota_err *err)
{
    struct ota_db *c = acquire(s);
    struct ota_release **v = NULL, **nv;
    size_t n = 0;
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_REL_LIST, &st, err)) < 0)
        goto out;
    sqlite3_bind_int(st, 1, published_only ? 1 : 0);
    while ((r = ota_db_row(c, st, "releases", err)) == 1) {
        nv = realloc(v, (n + 1) * sizeof(*v));
        if (!nv || !(nv[n] = release_row(st))) {
            v = nv ? nv : v;
            r = ota_err_set(err, ENOMEM, "out of memory");
            break;
        }
        v = nv;
        n++;
    }
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

int ota_store_published(struct ota_store *s, struct ota_published_set **ret, struct ota_err *err)
{
    struct ota_published_set *set;
    struct ota_release **v = NULL;
    size_t n = 0;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    if (s->pub) {
        s->pub->ref++;
        *ret = s->pub;
        pthread_mutex_unlock(&s->mlock);
        return 0;
    }
    gen = s->rel_gen;
    pthread_mutex_unlock(&s->mlock);
    if ((r = ota_store_release_list(s, 1, &v, &n, err)) < 0)
        return r;
    set = calloc(1, sizeof(*set));
    if (set && n)
        set->v = calloc(n, sizeof(*set->v));
    if (!set || (n && !set->v)) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        free(set);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct ota_published *p = &set->v[i];
        p->rel = *v[i];
        v[i]->manifest = NULL; /* moved */
        p->manifest_ok =
            ota_manifest_parse(p->rel.manifest, strlen(p->rel.manifest), &p->m, NULL) == 0;
    }
    set->n = n;
    set->ref = 1;
    pthread_mutex_lock(&s->mlock);
    if (s->rel_gen == gen && !s->pub) { /* no release write since the read began */
        s->pub = set;
        set->ref++;
    }
    pthread_mutex_unlock(&s->mlock);
    *ret = set;
out:
    for (size_t i = 0; i < n; i++)
        ota_release_free(v[i]);
    free(v);
    return r;
}

void ota_store_published_put(struct ota_store *s, struct ota_published_set *set)
{
    if (!set)
        return;
    pthread_mutex_lock(&s->mlock);
    pub_put_locked(set);
    pthread_mutex_unlock(&s->mlock);
}

static int update_one(struct ota_store *s, const char *sql, const char *id, const char *text,
                      int64_t num, struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, sql, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, id);
    if (text)
        ota_db_bind_text(st, 2, text);
    else if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, num);
    r = ota_db_step_done(c, st, "release", err);
    if (r == 0 && sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no release %s", id);
    sqlite3_reset(st);
    if (r == 0)
        pub_invalidate(s);
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
static const char SQL_REP_FINALS[] =
    "SELECT DISTINCT update_id FROM reports WHERE device = ? AND status <> 'in_progress'";

int ota_store_report_add(struct ota_store *s, const char *device, const struct ota_report_in *rep,
                         int64_t now_ms, int *ret_dup, struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_REP_ADD, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, device);
    ota_db_bind_text(st, 2, rep->update_id);
    ota_db_bind_text(st, 3, rep->rollout_id ? rep->rollout_id : "");
    ota_db_bind_text(st, 4, rep->version ? rep->version : "");
    ota_db_bind_text(st, 5, rep->kind ? rep->kind : "");
    ota_db_bind_text(st, 6, rep->state);
    ota_db_bind_text(st, 7, rep->status);
    ota_db_bind_text(st, 8, rep->reason ? rep->reason : "");
    sqlite3_bind_int64(st, 9, rep->ts);
    sqlite3_bind_int64(st, 10, now_ms);
    r = ota_db_step_done(c, st, "report", err);
    if (r == 0)
        *ret_dup = sqlite3_changes(c->db) == 0;
    sqlite3_reset(st);
    if (r == 0 && (!rep->status || strcmp(rep->status, "in_progress") != 0)) {
        /* Committed: the cached list of finals follows (commit order). */
        struct dev *d;
        pthread_mutex_lock(&s->mlock);
        s->rep_gen++;
        d = dev_find(s, device);
        if (d && d->finals_known && !finals_has(d, rep->update_id))
            finals_add(d, rep->update_id);
        pthread_mutex_unlock(&s->mlock);
    }
out:
    release(s, c);
    return r;
}

int ota_store_report_final(struct ota_store *s, const char *device, const char *update_id, int *ret,
                           struct ota_err *err)
{
    struct ota_db *c;
    sqlite3_stmt *st;
    struct dev *d, tmp = {0};
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    d = dev_find(s, device);
    if (d && d->finals_known) {
        *ret = finals_has(d, update_id);
        pthread_mutex_unlock(&s->mlock);
        return 0;
    }
    gen = s->rep_gen;
    pthread_mutex_unlock(&s->mlock);
    /* All the device's finals at once: later questions need no SQL. */
    tmp.finals_known = 1;
    c = acquire(s);
    if ((r = ota_db_prep(c, SQL_REP_FINALS, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, device);
    while ((r = ota_db_row(c, st, "report", err)) == 1)
        finals_add(&tmp, ota_db_col_text(st, 0));
    sqlite3_reset(st);
out:
    release(s, c);
    if (r == 0 && !tmp.finals_known)
        r = ota_err_set(err, ENOMEM, "out of memory");
    if (r == 0) {
        *ret = finals_has(&tmp, update_id);
        pthread_mutex_lock(&s->mlock);
        if (s->rep_gen == gen && (d = dev_get(s, device)) && !d->finals_known) {
            d->finals = tmp.finals;
            d->n_finals = tmp.n_finals;
            d->finals_known = 1;
            tmp.finals = NULL;
            tmp.n_finals = 0;
        }
        pthread_mutex_unlock(&s->mlock);
    }
    for (size_t i = 0; i < tmp.n_finals; i++)
        free(tmp.finals[i]);
    free(tmp.finals);
    return r;
}

int ota_store_reports_list(struct ota_store *s, const char *device, const char *update_id,
                           int64_t limit, int64_t offset, json_t **ret, struct ota_err *err)
{
    static const char where[] =
        " WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR update_id = ?2)";
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st = NULL;
    json_t *out = NULL, *arr;
    int r = 0;

    if ((r = ota_db_prepare(c,
                            "SELECT count(*) FROM reports WHERE (?1 IS NULL OR device = ?1)"
                            " AND (?2 IS NULL OR update_id = ?2)",
                            &st, "reports", err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, device);
    ota_db_bind_text(st, 2, update_id);
    if ((r = ota_db_row(c, st, "reports", err)) < 0)
        goto out;
    out = json_pack("{s:[], s:I}", "reports", "total",
                    (json_int_t)(r ? sqlite3_column_int64(st, 0) : 0));
    r = 0;
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
        if ((r = ota_db_prepare(c, sql, &st, "reports", err)) < 0)
            goto out;
    }
    ota_db_bind_text(st, 1, device);
    ota_db_bind_text(st, 2, update_id);
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, offset);
    while ((r = ota_db_row(c, st, "reports", err)) == 1)
        json_array_append_new(
            arr,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "seq",
                      (json_int_t)sqlite3_column_int64(st, 0), "device_id", ota_db_col_text(st, 1),
                      "update_id", ota_db_col_text(st, 2), "rollout_id", ota_db_col_text(st, 3),
                      "version", ota_db_col_text(st, 4), "kind", ota_db_col_text(st, 5), "state",
                      ota_db_col_text(st, 6), "status", ota_db_col_text(st, 7), "reason",
                      ota_db_col_text(st, 8), "ts", (json_int_t)sqlite3_column_int64(st, 9),
                      "received_ms", (json_int_t)sqlite3_column_int64(st, 10)));
    if (r < 0) {
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

/* ---- applied faults ---- */

static const char SQL_FAULT_APPLIED[] =
    "INSERT INTO fault_applied(device, rule, kind, applied, first_ms, last_ms)"
    " VALUES(?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT(device, rule) DO UPDATE SET"
    " applied = applied + 1, kind = excluded.kind, last_ms = excluded.last_ms";

int ota_store_fault_applied(struct ota_store *s, const char *device, const char *rule,
                            const char *kind, int64_t now_ms, struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = ota_db_prep(c, SQL_FAULT_APPLIED, &st, err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, device ? device : "");
    ota_db_bind_text(st, 2, rule);
    ota_db_bind_text(st, 3, kind);
    sqlite3_bind_int64(st, 4, now_ms);
    r = ota_db_step_done(c, st, "applied faults", err);
    sqlite3_reset(st);
out:
    release(s, c);
    return r;
}

/* One device's rows into {"device": id, "rules": [...]}, appended to arr. */
static json_t *device_entry(json_t *arr, const char *device)
{
    json_t *last = json_array_get(arr, json_array_size(arr) - 1);

    if (last && strcmp(json_string_value(json_object_get(last, "device")), device) == 0)
        return last;
    last = json_pack("{s:s, s:[]}", "device", device, "rules");
    if (!last || json_array_append_new(arr, last) < 0)
        return NULL;
    return last;
}

int ota_store_faults_applied(struct ota_store *s, const char *device, json_t **ret,
                             struct ota_err *err)
{
    static const char sql[] = "SELECT device, rule, kind, applied, first_ms, last_ms"
                              " FROM fault_applied WHERE (?1 IS NULL OR device = ?1)"
                              " ORDER BY device, rule";
    struct ota_db *c = acquire(s);
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    int r = 0;

    if (!arr) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = ota_db_prepare(c, sql, &st, "applied faults", err)) < 0)
        goto out;
    ota_db_bind_text(st, 1, device);
    while ((r = ota_db_row(c, st, "applied faults", err)) == 1) {
        json_t *dev = device_entry(arr, ota_db_col_text(st, 0));
        json_t *row =
            json_pack("{s:s, s:s, s:I, s:I, s:I}", "rule", ota_db_col_text(st, 1), "kind",
                      ota_db_col_text(st, 2), "applied", (json_int_t)sqlite3_column_int64(st, 3),
                      "first_ms", (json_int_t)sqlite3_column_int64(st, 4), "last_ms",
                      (json_int_t)sqlite3_column_int64(st, 5));
        if (!dev || !row || json_array_append_new(json_object_get(dev, "rules"), row) < 0) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
    if (r < 0) {
        goto out;
    }
    *ret = arr;
    arr = NULL;
out:
    sqlite3_finalize(st);
    json_decref(arr);
    release(s, c);
    return r;
}

int ota_store_faults_applied_clear(struct ota_store *s, struct ota_err *err)
{
    struct ota_db *c = wacquire(s);
    int r = ota_db_exec(c, "DELETE FROM fault_applied", err);

    release(s, c);
    return r;
}
