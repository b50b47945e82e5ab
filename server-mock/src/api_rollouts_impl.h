/* api_rollouts.c's view of the store (not a public header): a release's kind and version, a
 * stored device as the engine sees it, and the table of the devices a new rollout targets
 * (rollout_table.c). */
#ifndef OTASRV_API_ROLLOUTS_IMPL_H
#define OTASRV_API_ROLLOUTS_IMPL_H

#include <jansson.h>
#include <stddef.h>

#include "ota/err.h"
#include "otasrv/rollout.h"
#include "otasrv/server.h"

/* Room for the borrowed arrays of a struct otasrv_device_info. */
struct otasrv_info_room {
    const char *tags[32];
    const char *akeys[OTASRV_ROLLOUT_MAX_ATTRS];
    const char *avals[OTASRV_ROLLOUT_MAX_ATTRS];
};

/* Rows in device id order (qsort, bsearch). */
int otasrv_rdev_cmp(const void *a, const void *b);

/* The kind ("app" or "rootfs") of release rid, "" if unknown; its version into version (cap
 * 64) when not NULL. */
void otasrv_release_kind(struct otasrv_srv *srv, const char *rid, char *kind, size_t cap,
                         char *version);

/* The engine's view of a stored device object (strings borrowed from dev); kind picks the
 * version. */
void otasrv_rdev_info(const json_t *dev, const char *kind, struct otasrv_info_room *room,
                      struct otasrv_device_info *info);

/* A table of the registered devices that match def's filters, sorted by id (*ret: free). */
int otasrv_rollout_table(struct otasrv_srv *srv, const struct otasrv_rollout_def *def,
                         const char *kind, struct otasrv_rollout_device **ret, size_t *ret_n,
                         struct ota_err *err) OTA_MUST;

#endif
