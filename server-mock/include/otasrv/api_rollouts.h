/* The rollouts of a running server: the engine (rollout.h) over the
 * persisted rollouts (rollout_store.h), the admin endpoints, the device
 * face's offers and reports, a 1 s timer (under a virtual clock: the
 * clock's advances, clock.h) and the event stream. One mutex
 * serialises every engine call; each call's changes are written before the
 * answer (kill -9 loses no acknowledged write of a rollout; the devices'
 * check-in heartbeats are the store's, flushed every ~200 ms). Endpoints and rules:
 * docs/protocol.md, "Rollouts (admin)" and "Event stream". */
#ifndef OTASRV_API_ROLLOUTS_H
#define OTASRV_API_ROLLOUTS_H

#include <jansson.h>
#include "ota/err.h"
#include "otasrv/rollout.h"
#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the stored rollouts, sets srv->rollouts, srv->events and the
 * release_in_use hook, starts the timer. */
int otasrv_rollouts_open(struct otasrv_srv *srv, struct ota_err *err) OTA_MUST;
/* Stops the timer and ends the event streams: before the daemon stops. */
void otasrv_rollouts_shutdown(struct otasrv_srv *srv);
/* Frees what open made: after the daemon stops. */
void otasrv_rollouts_free(struct otasrv_srv *srv);

/* The check-in offer of device id from the rollouts: 1 when some rollout
 * exists (*ret the update object, or NULL for none; for a device waiting in
 * a blue_green rollout's standby, the whole answer {"update": null,
 * "activate"|"abandon": update id}, told apart by its "update" key), 0 when there is no
 * rollout at all (the caller falls back to the newest published release),
 * or a negative errno (nothing was offered). */
int otasrv_rollouts_offer(struct otasrv_req *req, const char *id, json_t **ret,
                          struct ota_err *err) OTA_MUST;
/* A stored status report of device id: feeds the rollout it names. */
int otasrv_rollouts_report(struct otasrv_srv *srv, const char *id, const char *update_id,
                           const char *rollout_id, const char *state, const char *status,
                           struct ota_err *err) OTA_MUST;

/* The state (enum otasrv_rollout_state) of a rollout, or -ENOENT. */
int otasrv_rollouts_state(struct otasrv_srv *srv, const char *rollout_id);

/* The timer's pass at now_ms (what the 1 s timer does under real time; a
 * virtual clock's advance calls it): ticks every started, unfinished
 * rollout (scheduled start, report timeouts, trips, stage advance,
 * completion), writes what changed, ticks the event stream's keepalive.
 * The first write failure, or 0. */
int otasrv_rollouts_step(struct otasrv_srv *srv, int64_t now_ms, struct ota_err *err) OTA_MUST;
/* The earliest otasrv_rollout_next_deadline() over the rollouts; INT64_MAX
 * when none. */
int64_t otasrv_rollouts_next_deadline(struct otasrv_srv *srv, int64_t now_ms);

/* /api/v1/rollouts..., /api/v1/events, /api/v1/stats (admin token checked
 * by the caller). */
enum otasrv_result otasrv_api_rollouts_handle(struct otasrv_req *req);
/* 0 if previous_id is a rollback target the agents install after
 * release_id: a signed rollback order ("rollback": true) of the same kind
 * at an older version (api_rollback.c; .swu releases: not
 * checked); else -EINVAL with the reason. */
int otasrv_rollback_target_check(struct otasrv_srv *srv, const char *release_id,
                                 const char *previous_id, struct ota_err *err) OTA_MUST;
/* GET /api/v1/stats (api_stats.c). */
enum otasrv_result otasrv_api_stats(struct otasrv_req *req);
/* Its body: {"devices":{"total","by_type","by_group","by_state","by_version":
 * {"app","rootfs"}},"rollouts":{"total","by_state"}} (a new reference). A
 * store failure (negative errno, *err set). */
int otasrv_fleet_stats(struct otasrv_srv *srv, json_t **ret, struct ota_err *err) OTA_MUST;
/* The rollout objects (as GET /api/v1/rollouts/{id} answers them, metrics
 * included) of every rollout that is not final, and of the final ones that
 * finished at or after since_ms, oldest first. Locks the rollouts for one
 * rollout at a time. NULL: out of memory. */
json_t *otasrv_rollouts_recent(struct otasrv_srv *srv, int64_t since_ms);
/* How many rollouts are in each state, and in all. */
void otasrv_rollouts_count(struct otasrv_srv *srv, int counts[OTASRV_ROLLOUT_STATE_MAX],
                           int *ret_total);

#ifdef __cplusplus
}
#endif
#endif
