/* The event stream: server-sent events (text/event-stream) for dashboards
 * and tests. Publishers (the handlers, the rollout timer) push named JSON
 * events; each subscriber (one HTTP connection) has a bounded queue: when
 * it is full the oldest event is dropped and the subscriber gets an
 * "event: dropped" with the count before the next one. Needs a daemon with
 * suspend/resume (otasrv_suspend): an idle subscriber is suspended, not polled.
 * Wire format: docs/protocol.md, "Event stream". */
#ifndef OTASRV_EVENTS_H
#define OTASRV_EVENTS_H

#include <jansson.h>
#include <stdint.h>
#include "ota/err.h"
#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_events;

#define OTASRV_EVENTS_QUEUE     1024  /* events queued per subscriber */
#define OTASRV_EVENTS_KEEPALIVE 15000 /* ms between ": keepalive" comments */

int otasrv_events_new(struct otasrv_events **ret, struct ota_err *err) OTA_MUST;
/* Ends every stream (resumes the suspended ones so that they finish); call
 * before the daemon stops. NULL ok. */
void otasrv_events_shutdown(struct otasrv_events *ev);
/* Frees ev; after the daemon stops. NULL ok. */
void otasrv_events_free(struct otasrv_events *ev);

/* Sends event name with data (reference stolen; NULL: {}) to every
 * subscriber of all events and, when rollout_id is not NULL, to the
 * subscribers of that rollout. */
void otasrv_events_publish(struct otasrv_events *ev, const char *rollout_id, const char *name,
                           json_t *data);
/* 1 if an event published for rollout_id (NULL: for none) would reach a
 * subscriber now: lets a publisher skip building an event nobody reads. */
int otasrv_events_wanted(struct otasrv_events *ev, const char *rollout_id);
/* Keepalive comments to subscribers idle for OTASRV_EVENTS_KEEPALIVE ms (it
 * also finds the ones that went away); call every second or so. */
void otasrv_events_tick(struct otasrv_events *ev, int64_t now_ms);
/* Answers req with a stream of the events (rollout_id NULL: all). */
enum otasrv_result otasrv_events_serve(struct otasrv_events *ev, struct otasrv_req *req,
                                       const char *rollout_id);

#ifdef __cplusplus
}
#endif
#endif
