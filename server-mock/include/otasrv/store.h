/* The server's database (wraps SQLite; the only file that does): devices,
 * releases, status reports and admin tokens.
 *
 * WAL with synchronous=FULL: a call that returned 0 is on disk, so the
 * server answers only after its write returned (kill -9 loses nothing
 * acknowledged). Thread-safe: a pool of connections, one per call at a time.
 * Tokens are never stored, only their SHA-256 (lower-case hex). JSON
 * columns (tags, versions, slots) hold compact JSON text. */
#ifndef OTASRV_STORE_H
#define OTASRV_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ota_store;

/* Opens (creating and migrating) the database at path with nconn pooled
 * connections (>= 1). */
int ota_store_open(const char *path, unsigned nconn, struct ota_store **ret,
                   struct ota_err *err) OTA_MUST;
void ota_store_close(struct ota_store *s);

/* ---- admin tokens ---- */

/* Makes sha_hex the only admin token. */
int ota_store_admin_token_set(struct ota_store *s, const char *sha_hex,
                              struct ota_err *err) OTA_MUST;
/* 0 if sha_hex is an admin token, -ENOENT if not. */
int ota_store_admin_token_check(struct ota_store *s, const char *sha_hex,
                                struct ota_err *err) OTA_MUST;

/* ---- devices ---- */

struct ota_device_inv {
    const char *type;     /* NULL: unchanged */
    const char *group;    /* NULL: unchanged */
    const char *tags;     /* JSON array text; NULL: unchanged */
    const char *versions; /* JSON object text; NULL: unchanged */
    const char *slots;    /* JSON object text; NULL: unchanged */
    const char *state;    /* NULL: unchanged */
};

/* Registers id with the token hash, or re-enrolls it (new token hash,
 * inventory updated): *ret_created 1 for a new device, 0 for re-enrollment. */
int ota_store_device_register(struct ota_store *s, const char *id, const char *token_sha,
                              const struct ota_device_inv *inv, int64_t now_ms, int *ret_created,
                              struct ota_err *err) OTA_MUST;
/* The id of the device whose token hash is sha (cap bytes); -ENOENT. */
int ota_store_device_by_token(struct ota_store *s, const char *sha, char *ret_id, size_t cap,
                              struct ota_err *err) OTA_MUST;
/* Updates the inventory and the check-in time and count; -ENOENT. */
int ota_store_device_checkin(struct ota_store *s, const char *id, const struct ota_device_inv *inv,
                             int64_t now_ms, struct ota_err *err) OTA_MUST;
/* The device as a JSON object (new reference; no token hash); -ENOENT. */
int ota_store_device_get(struct ota_store *s, const char *id, json_t **ret,
                         struct ota_err *err) OTA_MUST;

struct ota_device_filter {
    const char *type, *group, *tag; /* NULL: any */
    const char *version;            /* NULL: any; matches versions[kind] */
    const char *kind;               /* with version; NULL: app or rootfs */
    int64_t limit, offset;
};
/* {"devices":[...], "total": N} ordered by id. */
int ota_store_devices_list(struct ota_store *s, const struct ota_device_filter *f, json_t **ret,
                           struct ota_err *err) OTA_MUST;

/* ---- releases ---- */

struct ota_release {
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
    char *manifest; /* exact signed text, malloc'ed */
};
void ota_release_free(struct ota_release *r);

/* -EEXIST if the id is taken. */
int ota_store_release_add(struct ota_store *s, const struct ota_release *r,
                          struct ota_err *err) OTA_MUST;
/* -ENOENT. *ret is malloc'ed; free with ota_release_free. */
int ota_store_release_get(struct ota_store *s, const char *id, struct ota_release **ret,
                          struct ota_err *err) OTA_MUST;
/* Releases, newest publication (or creation) first; published_only picks
 * the published ones. *ret is a malloc'ed array of n releases: free each
 * with ota_release_free, then the array with free(). */
int ota_store_release_list(struct ota_store *s, int published_only, struct ota_release ***ret,
                           size_t *ret_n, struct ota_err *err) OTA_MUST;
int ota_store_release_set_payload(struct ota_store *s, const char *id, const char *path,
                                  struct ota_err *err) OTA_MUST;
/* Publishes (idempotent: keeps the first publication time); -ENOENT. */
int ota_store_release_publish(struct ota_store *s, const char *id, int64_t now_ms,
                              struct ota_err *err) OTA_MUST;
/* -ENOENT. */
int ota_store_release_delete(struct ota_store *s, const char *id, struct ota_err *err) OTA_MUST;

/* ---- status reports ---- */

struct ota_report_in {
    const char *update_id, *rollout_id, *version, *kind, *state, *status, *reason;
    int64_t ts;
};
/* Stores a report; the same report again (device, update id, state,
 * status, ts, reason) is accepted and not stored twice: *ret_dup = 1. */
int ota_store_report_add(struct ota_store *s, const char *device, const struct ota_report_in *r,
                         int64_t now_ms, int *ret_dup, struct ota_err *err) OTA_MUST;
/* *ret = 1 if the device sent a final report (success or failure) for the
 * update. */
int ota_store_report_final(struct ota_store *s, const char *device, const char *update_id, int *ret,
                           struct ota_err *err) OTA_MUST;
/* {"reports":[...], "total": N}, oldest first; NULL filters match all. */
int ota_store_reports_list(struct ota_store *s, const char *device, const char *update_id,
                           int64_t limit, int64_t offset, json_t **ret,
                           struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
