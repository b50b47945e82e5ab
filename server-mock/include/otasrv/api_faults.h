/* Fault plans wired into the HTTP server (api_faults.c; the plan library
 * itself: faultplan.h; bodies a fault changes: faultserve.h): loading a
 * plan, asking the live plan about every request that is not an admin call,
 * the answers of status / delay / reset faults, and the admin endpoints
 * /api/v1/faults[/applied]. Documented in docs/protocol.md, "Fault plans". */
#ifndef OTASRV_API_FAULTS_H
#define OTASRV_API_FAULTS_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads and parses the plan file at path (format from its name, else
 * sniffed). -EINVAL with the reason for a bad plan; -errno reading it. */
int otasrv_api_faults_load(const char *path, struct otasrv_faultplan **ret,
                           struct ota_err *err) OTA_MUST;

/* At server start: srv->faults (cfg.faults, already taken over) or a new
 * empty plan becomes the live plan. -ENOMEM. */
int otasrv_api_faults_init(struct otasrv_srv *srv, struct ota_err *err) OTA_MUST;

/* Asks the live plan about req (once its body is read, before routing).
 * Admin calls are never faulted. Logs an applied fault, sleeps a delay, and
 * answers status and reset faults: returns 1 with *ret set when the request
 * is answered (or dropped) here, 0 to route it as usual (req->has_fault set
 * when a body fault waits for the file download). */
int otasrv_api_faults_before(struct otasrv_req *req, enum otasrv_result *ret);

/* /api/v1/faults and /api/v1/faults/applied (the caller checked the admin
 * token). */
enum otasrv_result otasrv_api_faults_handle(struct otasrv_req *req);

#ifdef __cplusplus
}
#endif
#endif
