/* The server's database (over db.h, the SQLite layer it shares with
 * rollout_store.c): devices, releases, status reports and admin tokens.
 *
 * WAL with synchronous=FULL: a write call that returned 0 is on disk, so
 * the server answers only after its write returned (kill -9 loses nothing
 * acknowledged) -- except a device's last_checkin_ms and checkins, which a
 * check-in updates in memory only: they are flushed in one transaction at
 * most every OTASRV_STORE_FLUSH_MS and at close, so kill -9 may lose that
 * window. Every read shows the in-memory values. Thread-safe: writes run on
 * one writer connection, one at a time (an in-process mutex, so SQLite's
 * busy handler never sleeps between our own writers); reads run on a pool
 * of connections, concurrently (WAL). Device inventories, token hashes and
 * the published releases (with parsed manifests) are cached in memory and
 * kept coherent by the write calls, so a steady check-in does no SQL.
 * Tokens are never stored, only their SHA-256 (lower-case hex). JSON
 * columns (tags, versions, slots) hold compact JSON text. */
#ifndef OTASRV_STORE_H
#define OTASRV_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "ota/manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_store;

#define OTASRV_STORE_FLUSH_MS 200

/* Opens (creating and migrating) the database at path with nconn pooled
 * connections (>= 1). */
int otasrv_store_open(const char *path, unsigned nconn, struct otasrv_store **ret,
                      struct ota_err *err) OTA_MUST;
void otasrv_store_close(struct otasrv_store *s);

/* ---- admin tokens ---- */

/* Makes sha_hex the only admin token. */
int otasrv_store_admin_token_set(struct otasrv_store *s, const char *sha_hex,
                                 struct ota_err *err) OTA_MUST;
/* 0 if sha_hex is an admin token, -ENOENT if not. */
/* Enrollment (store_enroll.c): the current token hash of device id
 * (-ENOENT: no such device); an admin's approval of one re-enrollment of
 * id (-ENOENT: no such device; approving again keeps one); taking it:
 * 1 if there was one (now gone), 0 if none. */
int otasrv_store_device_token_of(struct otasrv_store *s, const char *id, char ret_sha[65],
                                 struct ota_err *err) OTA_MUST;
int otasrv_store_reenroll_allow(struct otasrv_store *s, const char *id, int64_t now_ms,
                                struct ota_err *err) OTA_MUST;
int otasrv_store_reenroll_take(struct otasrv_store *s, const char *id,
                               struct ota_err *err) OTA_MUST;
int otasrv_store_admin_token_check(struct otasrv_store *s, const char *sha_hex,
                                   struct ota_err *err) OTA_MUST;

/* ---- devices ---- */

struct otasrv_device_inv {
    const char *type;       /* NULL: unchanged */
    const char *group;      /* NULL: unchanged */
    const char *tags;       /* JSON array text; NULL: unchanged */
    const char *versions;   /* JSON object text; NULL: unchanged */
    const char *slots;      /* JSON object text; NULL: unchanged */
    const char *state;      /* NULL: unchanged */
    const char *attributes; /* JSON object text (string -> string); NULL: unchanged */
    const char *timezone;   /* "" = none (UTC); NULL: unchanged */
};

/* Registers id with the token hash, or re-enrolls it (new token hash,
 * inventory updated): *ret_created 1 for a new device, 0 for re-enrollment. */
int otasrv_store_device_register(struct otasrv_store *s, const char *id, const char *token_sha,
                                 const struct otasrv_device_inv *inv, int64_t now_ms,
                                 int *ret_created, struct ota_err *err) OTA_MUST;
/* The id of the device whose token hash is sha (cap bytes); -ENOENT. */
int otasrv_store_device_by_token(struct otasrv_store *s, const char *sha, char *ret_id, size_t cap,
                                 struct ota_err *err) OTA_MUST;
/* What an offer lookup needs of a device. */
struct otasrv_device_brief {
    char type[64];
    char version[OTA_KIND_MAX][64]; /* by enum ota_kind; "" if unknown */
};
/* Updates the inventory (durably, before returning, if it changed) and the
 * check-in time and count (in memory, flushed later: see above); -ENOENT.
 * ret_brief (NULL: not wanted) gets the device after the check-in. */
int otasrv_store_device_checkin(struct otasrv_store *s, const char *id,
                                const struct otasrv_device_inv *inv, int64_t now_ms,
                                struct otasrv_device_brief *ret_brief,
                                struct ota_err *err) OTA_MUST;
/* What the rollout engine reads of a device at each check-in: device_id,
 * device_type, group, tags, versions, attributes, timezone. From the cache
 * when it knows the device's inventory (no read of the database; a check-in
 * just filled it), else otasrv_store_device_get's object. A new reference
 * to an object that may be shared: read it, never change it. -ENOENT. */
int otasrv_store_device_view(struct otasrv_store *s, const char *id, json_t **ret,
                             struct ota_err *err) OTA_MUST;
/* The device as a JSON object (new reference; no token hash); -ENOENT. */
int otasrv_store_device_get(struct otasrv_store *s, const char *id, json_t **ret,
                            struct ota_err *err) OTA_MUST;

struct otasrv_device_filter {
    const char *type, *group, *tag; /* NULL: any */
    const char *version;            /* NULL: any; matches versions[kind] */
    const char *kind;               /* with version; NULL: app or rootfs */
    int64_t limit, offset;
};
/* {"devices":[...], "total": N} ordered by id. */
int otasrv_store_devices_list(struct otasrv_store *s, const struct otasrv_device_filter *f,
                              json_t **ret, struct ota_err *err) OTA_MUST;
/* The devices counted by (type, group, state, versions.app, versions.rootfs)
 * in one read of the table: fn is called once per combination with its
 * count (absent values as ""). For fleet statistics (GET /api/v1/stats). */
int otasrv_store_devices_tally(struct otasrv_store *s,
                               void (*fn)(void *ctx, const char *const cols[5], int64_t n),
                               void *ctx, struct ota_err *err) OTA_MUST;

/* ---- releases ---- */

struct otasrv_release {
    char id[129];
    char name[64];
    char version[64];
    char kind[16];
    char payload_name[256];
    char payload_path[4096]; /* "" until the payload is there */
    char sha256[65];
    char signature[128];
    uint64_t size;
    int published;
    int64_t created_ms, published_ms;
    char *manifest;    /* exact signed text, malloc'ed; a .swu's sw-description */
    char format[8];    /* "ota": manifest + payload (ota-pack build); "swu": an SWUpdate .swu */
    char compat[1200]; /* swu: hardware-compatibility, a JSON array; "[]" for ota */
};
void otasrv_release_free(struct otasrv_release *r);

/* -EEXIST if the id is taken. */
int otasrv_store_release_add(struct otasrv_store *s, const struct otasrv_release *r,
                             struct ota_err *err) OTA_MUST;
/* -ENOENT. *ret is malloc'ed; free with otasrv_release_free. */
int otasrv_store_release_get(struct otasrv_store *s, const char *id, struct otasrv_release **ret,
                             struct ota_err *err) OTA_MUST;
/* Releases, newest publication (or creation) first; published_only picks
 * the published ones. *ret is a malloc'ed array of n releases: free each
 * with otasrv_release_free, then the array with free(). */
int otasrv_store_release_list(struct otasrv_store *s, int published_only,
                              struct otasrv_release ***ret, size_t *ret_n,
                              struct ota_err *err) OTA_MUST;
/* The published releases as otasrv_store_release_list gives them, each with
 * its parsed manifest (manifest_ok 0 if it does not parse). Shared and
 * read-only: release it with otasrv_store_published_put. */
struct otasrv_published {
    struct otasrv_release rel;
    struct ota_manifest m;
    int manifest_ok;
};
struct otasrv_published_set {
    size_t n;
    struct otasrv_published *v;
    int ref; /* the store's */
};
int otasrv_store_published(struct otasrv_store *s, struct otasrv_published_set **ret,
                           struct ota_err *err) OTA_MUST;
void otasrv_store_published_put(struct otasrv_store *s, struct otasrv_published_set *set);
int otasrv_store_release_set_payload(struct otasrv_store *s, const char *id, const char *path,
                                     struct ota_err *err) OTA_MUST;
/* Publishes (idempotent: keeps the first publication time); -ENOENT. */
int otasrv_store_release_publish(struct otasrv_store *s, const char *id, int64_t now_ms,
                                 struct ota_err *err) OTA_MUST;
/* -ENOENT. */
int otasrv_store_release_delete(struct otasrv_store *s, const char *id,
                                struct ota_err *err) OTA_MUST;

/* ---- status reports ---- */

struct otasrv_report_in {
    const char *update_id, *rollout_id, *version, *kind, *state, *status, *reason;
    int64_t ts;
};
/* Stores a report; the same report again (device, update id, state,
 * status, ts, reason) is accepted and not stored twice: *ret_dup = 1. */
int otasrv_store_report_add(struct otasrv_store *s, const char *device,
                            const struct otasrv_report_in *r, int64_t now_ms, int *ret_dup,
                            struct ota_err *err) OTA_MUST;
/* *ret = 1 if the device sent a final report (success or failure) for the
 * update. */
int otasrv_store_report_final(struct otasrv_store *s, const char *device, const char *update_id,
                              int *ret, struct ota_err *err) OTA_MUST;
/* {"reports":[...], "total": N}, oldest first; NULL filters match all. */
int otasrv_store_reports_list(struct otasrv_store *s, const char *device, const char *update_id,
                              int64_t limit, int64_t offset, json_t **ret,
                              struct ota_err *err) OTA_MUST;

/* Faults the server applied (api_faults.c), counted per device and rule id
 * in the database: a new plan, a cleared log or a restart does not forget
 * them, so a harness can ask afterwards whether each of its rules fired.
 * device NULL or "": the request named no device. */
int otasrv_store_fault_applied(struct otasrv_store *s, const char *device, const char *rule,
                               const char *kind, int64_t now_ms, struct ota_err *err) OTA_MUST;
/* [{"device": D, "rules": [{"rule", "kind", "applied", "first_ms",
 * "last_ms"}]}], by device then rule; device NULL: every device. */
int otasrv_store_faults_applied(struct otasrv_store *s, const char *device, json_t **ret,
                                struct ota_err *err) OTA_MUST;
int otasrv_store_faults_applied_clear(struct otasrv_store *s, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
