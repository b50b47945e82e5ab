/* Fault plans wired into the HTTP server (the plan library itself:
 * faultplan.h). api_faults.c: loading a plan, asking the live plan about
 * every request that is not an admin call, the answers of status / delay /
 * reset faults, and the admin endpoints /api/v1/faults[/applied].
 * faultserve.c: file downloads whose body a fault changes (stall, truncate,
 * corrupt, wrong_length, throttle) go out through a response callback
 * instead of sendfile. Documented in docs/protocol.md, "Fault plans". */
#ifndef OTASRV_FAULTS_H
#define OTASRV_FAULTS_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads and parses the plan file at path (format from its name, else
 * sniffed). -EINVAL with the reason for a bad plan; -errno reading it. */
int ota_api_faults_load(const char *path, struct otasrv_faultplan **ret,
                        struct ota_err *err) OTA_MUST;

/* At server start: srv->faults (cfg.faults, already taken over) or a new
 * empty plan becomes the live plan. -ENOMEM. */
int ota_api_faults_init(struct ota_srv *srv, struct ota_err *err) OTA_MUST;

/* Asks the live plan about req (once its body is read, before routing).
 * Admin calls are never faulted. Logs an applied fault, sleeps a delay, and
 * answers status and reset faults: returns 1 with *ret set when the request
 * is answered (or dropped) here, 0 to route it as usual (req->has_fault set
 * when a body fault waits for the file download). */
int ota_api_faults_before(struct ota_req *req, enum ota_srv_result *ret);

/* /api/v1/faults and /api/v1/faults/applied (the caller checked the admin
 * token). */
enum ota_srv_result ota_api_faults_handle(struct ota_req *req);

/* 1 if req's fault changes a file body (stall, truncate, corrupt,
 * wrong_length, throttle): serve it with ota_faultserve_response(). */
int ota_faultserve_body(const struct ota_req *req);

/* A response sending len bytes of fd from offset start through req's body
 * fault, with Connection: close. Takes fd (closed with the response, or here
 * on failure). NULL on failure. */
struct ota_resp *ota_faultserve_response(struct ota_req *req, int fd, uint64_t start, uint64_t len);

#ifdef __cplusplus
}
#endif
#endif
