/* A minimal HTTP/1.1 client for the admin commands of ota-server: plain
 * http:// only, one request per connection (Connection: close), bodies from
 * memory or streamed from a file. Not for devices (the agent has libcurl). */
#ifndef OTASRV_CLIENT_H
#define OTASRV_CLIENT_H

#include <stddef.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ota_client_resp {
    int status;
    char *body; /* NUL-terminated, malloc'ed */
    size_t len;
};
void ota_client_resp_free(struct ota_client_resp *r);

struct ota_client_req {
    const char *base;   /* "http://host:port" (a trailing path is kept as a prefix) */
    const char *method; /* GET, POST, PUT, DELETE */
    const char *path;   /* "/api/v1/..." with its query, already encoded */
    const char *token;  /* Bearer token, NULL: none */
    const char *body;   /* JSON body or NULL */
    const char *file;   /* or: the body streamed from this file */
};

/* Sends req and reads the whole answer into *ret (any status). -EINVAL for
 * a URL that is not http://, -ECONNREFUSED etc. for network failures,
 * -EPROTO for an answer that is not HTTP. */
int ota_client_request(const struct ota_client_req *req, struct ota_client_resp *ret,
                       struct ota_err *err) OTA_MUST;

/* Appends s percent-encoded (RFC 3986 unreserved kept) to buf. */
void ota_client_urlencode(const char *s, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
