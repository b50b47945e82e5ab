/* The store's inside, shared by its files (not a public header): store.c
 * (open, close, the connection pool, the check-in flusher, admin tokens),
 * store_cache.c (the in-memory caches), store_devices.c, store_releases.c,
 * store_reports.c and store_faults.c (one table each, over db.h). The
 * locking rules and the cache coherence are told at the top of store.c. */
#ifndef OTASRV_STORE_IMPL_H
#define OTASRV_STORE_IMPL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "ota/json.h"
#include "otasrv/db.h"
#include "otasrv/store.h"

#define NBUCKET 65536 /* fixed: chains grow past that many devices */
#define NINV    8     /* type, grp, tags, versions, slots, state, attributes, tz */

struct dev {
    struct dev *next, *tnext, *dnext; /* by id, by token, dirty list */
    char id[129];
    char token[65]; /* "": not in the token chains */
    int inv_known, hb_known, dirty;
    char *inv[NINV];
    json_t *view; /* the engine's view of inv (otasrv_store_device_view); shared, read-only */
    struct otasrv_device_brief brief;
    int64_t last_ms, checkins;
    int finals_known;
    char **finals; /* update ids with a final report */
    size_t n_finals;
};

struct otasrv_store {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    struct otasrv_db *conns;
    struct otasrv_db **free_list;
    unsigned n_free;
    struct otasrv_db writer;
    pthread_mutex_t wlock;
    pthread_mutex_t mlock;
    struct dev **by_id, **by_tok;
    struct dev *dirty;
    uint64_t gen, rel_gen, rep_gen;
    struct otasrv_published_set *pub;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    pthread_t flusher;
    int flusher_on, stop;
};

/* ---- the connections (store.c) ---- */

/* A pool connection for reads, waiting for a free one. */
struct otasrv_db *store_acquire(struct otasrv_store *s);
/* The writer connection, exclusively until store_release(). */
struct otasrv_db *store_wacquire(struct otasrv_store *s);
/* Gives back a pool connection, or the writer (unlocks wlock). */
void store_release(struct otasrv_store *s, struct otasrv_db *c);

/* ---- the caches (store_cache.c; mlock held unless told) ---- */

void store_dev_free(struct dev *d);
struct dev *store_dev_find(struct otasrv_store *s, const char *id);
/* Finds or adds; NULL on ENOMEM or an id too long to cache. */
struct dev *store_dev_get(struct otasrv_store *s, const char *id);
struct dev *store_tok_find(struct otasrv_store *s, const char *sha);
void store_tok_unlink(struct otasrv_store *s, struct dev *d);
void store_tok_link(struct otasrv_store *s, struct dev *d, const char *sha);
/* Sets the cached inventory (column texts in v); unknown again on ENOMEM. */
void store_inv_set(struct dev *d, const char *const v[NINV]);
/* 1 if every field inv gives equals the cached one. */
int store_inv_same(const struct dev *d, const struct otasrv_device_inv *inv);
/* A check-in in memory: the heartbeat, and the device on the dirty list. */
void store_hb_touch(struct otasrv_store *s, struct dev *d, int64_t now_ms);
/* Adds a final report's update id; the list is unknown again on ENOMEM. */
void store_finals_add(struct dev *d, const char *update_id);
int store_finals_has(const struct dev *d, const char *update_id);
/* Sets the in-memory heartbeat of device id into its JSON object (takes
 * mlock). */
void store_hb_merge(struct otasrv_store *s, json_t *o);
/* Drops a reference to a published set, freeing it at the last one. */
void store_pub_put_locked(struct otasrv_published_set *set);
/* After a release write (wlock held, takes mlock): the cached set is stale. */
void store_pub_invalidate(struct otasrv_store *s);

/* ---- devices (store_devices.c) ---- */

/* Writes the dirty heartbeats in one transaction (takes wlock); rows that
 * fail are dirty again. */
int store_hb_flush(struct otasrv_store *s, struct ota_err *err) OTA_MUST;

#endif
