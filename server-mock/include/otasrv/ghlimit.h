/* The GitHub face's primary rate limit, as GitHub applies it to the REST
 * API's "core" resource (docs/protocol.md, "Rate limit"): each client has a
 * window that opens with its first request and lasts window_ms; it may make
 * `limit` requests in it (more with a token the server accepts); past that
 * it is refused until the window ends. No I/O: the caller gives the time (the
 * server's clock, virtual under --virtual-clock) and the key. Thread-safe. */
#ifndef OTASRV_GHLIMIT_H
#define OTASRV_GHLIMIT_H

#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASRV_GHLIMIT_MAX_TOKENS 8

struct otasrv_ghlimit_config {
    unsigned limit;         /* requests a window without a token; 0: no rate limit */
    unsigned auth_limit;    /* with a token the server accepts; 0: 5000 */
    int64_t window_ms;      /* 0: one hour */
    unsigned status;        /* past the limit: 403 (default) or 429 */
    int retry_after;        /* past the limit: send Retry-After too */
    const char *key_header; /* key clients by this request header (its value);
                               NULL: by the client's address */
    const char *tokens[OTASRV_GHLIMIT_MAX_TOKENS]; /* accepted tokens; NULL-ended */
};

/* One request's verdict, and the X-RateLimit-* values of its answer. */
struct otasrv_ghlimit_verdict {
    int allowed;        /* 0: refuse (status) */
    int bad_token;      /* a token that is not one of the accepted: 401 */
    unsigned limit;     /* X-RateLimit-Limit */
    unsigned used;      /* X-RateLimit-Used (counting this request when allowed) */
    unsigned remaining; /* X-RateLimit-Remaining */
    int64_t reset_s;    /* X-RateLimit-Reset: unix seconds the window ends */
    int64_t retry_s;    /* seconds until then (>= 1), for Retry-After */
};

struct otasrv_ghlimit;

/* A limiter over cfg (strings copied). -EINVAL for a bad config, -ENOMEM. */
int otasrv_ghlimit_new(const struct otasrv_ghlimit_config *cfg, struct otasrv_ghlimit **ret,
                       struct ota_err *err) OTA_MUST;
void otasrv_ghlimit_free(struct otasrv_ghlimit *l);
const struct otasrv_ghlimit_config *otasrv_ghlimit_cfg(const struct otasrv_ghlimit *l);

/* Counts one request at now_ms from client (the unauthenticated key) with
 * the token of its Authorization header (NULL: none; "token X" and
 * "Bearer X" both give X). A refused request is not counted. */
void otasrv_ghlimit_take(struct otasrv_ghlimit *l, const char *client, const char *token,
                         int64_t now_ms, struct otasrv_ghlimit_verdict *ret);

/* "N", "N/h", "N/m", "N/s" or "N/Ss" (S seconds) into *limit and
 * *window_ms; -EINVAL. */
int otasrv_ghlimit_parse(const char *s, unsigned *limit, int64_t *window_ms) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
