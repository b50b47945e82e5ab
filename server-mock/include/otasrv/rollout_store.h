/* Persistence of rollouts (tables rollouts and rollout_devices in the
 * server's database, through a connection of its own; WAL +
 * synchronous=FULL like store.c): a call that returned 0 is on disk. Not
 * thread-safe: the rollout manager serialises the calls. */
#ifndef OTASRV_ROLLOUT_STORE_H
#define OTASRV_ROLLOUT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "otasrv/rollout.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_rstore;

int otasrv_rstore_open(const char *path, struct otasrv_rstore **ret, struct ota_err *err) OTA_MUST;
void otasrv_rstore_close(struct otasrv_rstore *s);

/* Writes r (definition and status) and, in the same transaction, the rows
 * of devs whose dirty flag is set (all of them with replace, which first
 * drops the stored table); clears the flags once committed. */
int otasrv_rstore_save(struct otasrv_rstore *s, const struct otasrv_rollout *r,
                       struct otasrv_rollout_device *devs, size_t n, int replace,
                       struct ota_err *err) OTA_MUST;

/* Writes r's status and, in the same transaction, the rows devs[rows[i]]
 * (i < n_rows) whose dirty flag is set; clears their flags once committed.
 * What an engine call changed (otasrv_rollout_dirty_rows): O(n_rows), not
 * O(table). The rollout must have been saved before (its definition is
 * not written again: it never changes after the create). */
int otasrv_rstore_save_rows(struct otasrv_rstore *s, const struct otasrv_rollout *r,
                            struct otasrv_rollout_device *devs, const uint32_t *rows, size_t n_rows,
                            struct ota_err *err) OTA_MUST;

/* Calls fn for each stored rollout, oldest first, with a new rollout (its
 * counts recounted) and its table (malloc'ed, sorted by device id); fn
 * takes both. Rollouts that fail to load are skipped (err says the last). */
typedef void (*otasrv_rstore_fn)(void *ctx, struct otasrv_rollout *r,
                                 struct otasrv_rollout_device *devs, size_t n);
int otasrv_rstore_load(struct otasrv_rstore *s, otasrv_rstore_fn fn, void *ctx,
                       struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
