/* File downloads whose body a fault changes (stall, truncate, corrupt,
 * wrong_length, throttle), sent through a response callback instead of
 * sendfile (faultserve.c). Documented in docs/protocol.md, "Fault plans". */
#ifndef OTASRV_FAULTSERVE_H
#define OTASRV_FAULTSERVE_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if req's fault changes a file body (stall, truncate, corrupt,
 * wrong_length, throttle): serve it with otasrv_faultserve_response(). */
int otasrv_faultserve_body(const struct otasrv_req *req);

/* A response sending len bytes of fd from offset start through req's body
 * fault, with Connection: close. Takes fd (closed with the response, or here
 * on failure). NULL on failure. */
struct otasrv_resp *otasrv_faultserve_response(struct otasrv_req *req, int fd, uint64_t start,
                                               uint64_t len);

#ifdef __cplusplus
}
#endif
#endif
