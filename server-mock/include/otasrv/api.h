/* The request handlers: one module per face (api_github.c, api_device.c,
 * api_admin.c). The router in server.c picks the face from the path; a
 * handler answers everything under it, errors included. */
#ifndef OTASRV_API_H
#define OTASRV_API_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GitHub-Releases face: /repos/{owner}/{repo}/releases..., and asset
 * downloads at /{owner}/{repo}/releases/download/{release id}/{name}. */
enum otasrv_result otasrv_api_github_handle(struct otasrv_req *req);

/* Device face: /api/v1/devices/register, /api/v1/devices/{id}/checkin,
 * /api/v1/devices/{id}/status, GET|HEAD /api/v1/releases/{id}/{file}. */
enum otasrv_result otasrv_api_device_handle(struct otasrv_req *req);

/* Registration (api_enroll.c): 0 if the request may register device id
 * (the enrollment token or open enrollment for a new id; for a known id its
 * current token, or the enrollment token with a never-used device token or
 * an admin's approval, which this takes), else replies and returns < 0. */
int otasrv_enroll_authorize(struct otasrv_req *req, const char *id,
                            enum otasrv_result *ret) OTA_MUST;
/* Before the body is read: 0 if the Bearer token may register something
 * (open enrollment, the enrollment token, or some device's current token),
 * else replies 401 and returns -EACCES. */
int otasrv_enroll_precheck(struct otasrv_req *req, enum otasrv_result *ret) OTA_MUST;
/* POST /api/v1/devices/{id}/reenroll (admin): allows one re-enrollment. */
enum otasrv_result otasrv_api_reenroll_allow(struct otasrv_req *req, const char *id);

/* The fleet API's per-device rate limit (api_devlimit.c): 0 if device id's
 * request may go, else replies 429 with Retry-After and returns -EAGAIN. */
int otasrv_device_rate_check(struct otasrv_req *req, const char *id,
                             enum otasrv_result *ret) OTA_MUST;

/* GET|HEAD /metrics: the Prometheus exposition (admin token; metrics.c). */
enum otasrv_result otasrv_api_metrics(struct otasrv_req *req);

/* Admin face: the rest of /api/v1 (Bearer: admin token). */
enum otasrv_result otasrv_api_admin_handle(struct otasrv_req *req);
/* PUT /api/v1/releases/{id}/payload, called before the body arrives: sets
 * up req->up (fd >= 0) or records req->early_status. */
void otasrv_api_admin_upload_begin(struct otasrv_req *req);
/* Called once the whole upload is written: checks, renames, answers. */
enum otasrv_result otasrv_api_admin_upload_end(struct otasrv_req *req);

#ifdef __cplusplus
}
#endif
#endif
