/* The hawkBit DDI face (api_ddi.c; docs/protocol.md "hawkBit DDI face") and
 * its own SQLite tables (ddi_store.c), next to the store's and the
 * rollouts' in the same database file:
 *
 *   ddi_targets(device PK, attrs_wanted, created_ms)
 *     a device that spoke DDI once; attrs_wanted 1 until it PUT configData
 *     (and again after an action it closed with success)
 *   ddi_actions(id INTEGER PK, device, update_id, rollout_id, release_id,
 *               state, created_ms, changed_ms, cancel_refused)
 *     one action per (device, update_id): the rollout engine's offer as
 *     hawkBit sees it; state open | canceling | closed | canceled
 *   ddi_hashes(path PK, size, mtime_ns, sha1, md5, sha256)
 *     the artifact hashes, computed once per payload file
 *
 * One connection, one mutex: every call below is serialised. */
#ifndef OTASRV_DDI_H
#define OTASRV_DDI_H

#include <stdint.h>
#include "ota/err.h"
#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otasrv_ddi_state {
    OTASRV_DDI_OPEN,
    OTASRV_DDI_CANCELING,
    OTASRV_DDI_CLOSED,
    OTASRV_DDI_CANCELED,
};

struct otasrv_ddi_action {
    int64_t id;
    char device[129];
    char update_id[160];
    char rollout_id[64];
    char release_id[129];
    enum otasrv_ddi_state state;
    int cancel_refused; /* the device rejected a cancel: not asked again */
};

struct otasrv_ddi;

int otasrv_ddi_open(const char *db_path, struct otasrv_ddi **ret, struct ota_err *err) OTA_MUST;
void otasrv_ddi_close(struct otasrv_ddi *d);

/* Serialises a device's poll decision (read action, ask the rollouts,
 * create or cancel) against the others. */
void otasrv_ddi_lock(struct otasrv_ddi *d);
void otasrv_ddi_unlock(struct otasrv_ddi *d);

/* Adds the target (attrs_wanted 1) if it is not there; *ret_wanted its
 * attrs_wanted. */
int otasrv_ddi_target(struct otasrv_ddi *d, const char *device, int64_t now_ms, int *ret_wanted,
                      struct ota_err *err) OTA_MUST;
int otasrv_ddi_set_wanted(struct otasrv_ddi *d, const char *device, int wanted,
                          struct ota_err *err) OTA_MUST;

/* The device's newest open or canceling action: 1 with *ret, 0 none. */
int otasrv_ddi_action_active(struct otasrv_ddi *d, const char *device,
                             struct otasrv_ddi_action *ret, struct ota_err *err) OTA_MUST;
/* Action id (any device, any state): 1 with *ret, 0 none. */
int otasrv_ddi_action_get(struct otasrv_ddi *d, int64_t id, struct otasrv_ddi_action *ret,
                          struct ota_err *err) OTA_MUST;
/* The action of (device, update_id): 1 with *ret, 0 none. */
int otasrv_ddi_action_find(struct otasrv_ddi *d, const char *device, const char *update_id,
                           struct otasrv_ddi_action *ret, struct ota_err *err) OTA_MUST;
/* A new open action (a->id set). */
int otasrv_ddi_action_add(struct otasrv_ddi *d, struct otasrv_ddi_action *a, int64_t now_ms,
                          struct ota_err *err) OTA_MUST;
int otasrv_ddi_action_set(struct otasrv_ddi *d, int64_t id, enum otasrv_ddi_state state,
                          int cancel_refused, int64_t now_ms, struct ota_err *err) OTA_MUST;
/* Whether any action of the device names the release. */
int otasrv_ddi_release_assigned(struct otasrv_ddi *d, const char *device, const char *release_id,
                                int *ret, struct ota_err *err) OTA_MUST;

struct otasrv_ddi_hashes {
    char sha1[41], md5[33], sha256[65];
};
/* The hashes of the file at path (size, mtime_ns as stat(2) has them now):
 * from the table, or computed and kept. */
int otasrv_ddi_hashes(struct otasrv_ddi *d, const char *path, uint64_t size, int64_t mtime_ns,
                      struct otasrv_ddi_hashes *ret, struct ota_err *err) OTA_MUST;

/* /{tenant}/controller/v1/{controllerId}[/...] (api_ddi.c). */
enum otasrv_result otasrv_api_ddi_handle(struct otasrv_req *req);

#ifdef __cplusplus
}
#endif
#endif
