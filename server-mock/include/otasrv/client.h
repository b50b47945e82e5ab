/* The HTTP client of the admin commands of ota-server, over libcurl (the
 * one file that wraps it in the server: src/client.c): http:// only, bodies
 * from memory or streamed from a file. Not for devices (the agent has its
 * own transport).
 *
 * A request is a struct otasrv_client_req, its answer a struct
 * otasrv_client_resp; in between, a struct otasrv_client_xfer is the transfer
 * (one libcurl easy handle writing into the response). otasrv_client_request()
 * runs one transfer to its end; an event loop over libcurl's multi
 * interface would instead add otasrv_client_xfer_handle() to its multi handle
 * and call otasrv_client_xfer_done() with the result of each finished one. */
#ifndef OTASRV_CLIENT_H
#define OTASRV_CLIENT_H

#include <stddef.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_client_resp {
    int status;
    char *body; /* NUL-terminated, malloc'ed */
    size_t len;
};
void otasrv_client_resp_free(struct otasrv_client_resp *r);

struct otasrv_client_req {
    const char *base;   /* "http://host:port" (a trailing path is kept as a prefix) */
    const char *method; /* GET, POST, PUT, DELETE */
    const char *path;   /* "/api/v1/..." with its query, already encoded */
    const char *token;  /* Bearer token, NULL: none */
    const char *body;   /* JSON body or NULL */
    const char *file;   /* or: the body streamed from this file */
};

/* Sends req and reads the whole answer into *ret (any status). -EINVAL for
 * a URL that is not http://, -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT or
 * -EIO for network failures, -errno for the file. */
int otasrv_client_request(const struct otasrv_client_req *req, struct otasrv_client_resp *ret,
                          struct ota_err *err) OTA_MUST;

/* Appends s percent-encoded (RFC 3986 unreserved kept) to buf. */
void otasrv_client_urlencode(const char *s, char *buf, size_t cap);

/* ---- one transfer, for a caller that runs libcurl itself ---- */

struct otasrv_client_xfer;

/* Sets up the transfer of req (copied: req's strings may go) answering
 * into *resp, which must stay until otasrv_client_xfer_done(). Errors as
 * otasrv_client_request() before anything is sent. */
int otasrv_client_xfer_new(const struct otasrv_client_req *req, struct otasrv_client_resp *resp,
                           struct otasrv_client_xfer **ret, struct ota_err *err) OTA_MUST;
/* The libcurl easy handle (CURL *) to perform or add to a multi handle. */
void *otasrv_client_xfer_handle(struct otasrv_client_xfer *x);
/* After the transfer ended with curl_result (a CURLcode): 0 with *resp
 * complete (status and body), or the mapped error. */
int otasrv_client_xfer_done(struct otasrv_client_xfer *x, int curl_result,
                            struct ota_err *err) OTA_MUST;
/* NULL ok; the response stays with its owner. */
void otasrv_client_xfer_free(struct otasrv_client_xfer *x);

#ifdef __cplusplus
}
#endif
#endif
