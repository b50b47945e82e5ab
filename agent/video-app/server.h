/* A small HTTP/1.1 server for video-app: one thread, one ppoll loop,
 * non-blocking sockets, one request per connection (Connection: close).
 * GET and HEAD only; anything else is answered 405 by the server itself. */
#ifndef VAPP_SERVER_H_INCLUDED
#define VAPP_SERVER_H_INCLUDED

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define VAPP_MAX_CLIENTS 64    /* more wait in the listen backlog */
#define VAPP_REQ_MAX     8192  /* request line + headers; larger: 431 */
#define VAPP_BODY_MAX    65536 /* response body scratch */
#define VAPP_IDLE_MS     10000 /* a client silent this long is dropped */

struct vapp_request {
    char method[16];
    char path[1024];  /* without the query */
    char query[1024]; /* after '?', "" if none */
};

struct vapp_response {
    int status;               /* HTTP status; the handler must set it */
    const char *content_type; /* static string */
    uint8_t *body;            /* server-owned scratch of body_cap bytes */
    size_t body_cap;
    size_t body_len;
};

/* Fills resp for req. Called with a zeroed body_len and the scratch set. */
typedef void (*vapp_handler_fn)(void *ctx, const struct vapp_request *req,
                                struct vapp_response *resp);

struct vapp_server;

/* Listens on bind_addr (numeric IPv4 or IPv6), port (0: any free port).
 * Returns 0 or a negative errno (-EINVAL for a bad address). */
int vapp_server_open(const char *bind_addr, unsigned port, struct vapp_server **ret);

/* The port actually bound. */
unsigned vapp_server_port(const struct vapp_server *s);

/* Serves clients. The loop sleeps in ppoll with waitmask, so signals that
 * are blocked outside of it (SIGTERM) wake it race-free. Returns 0 once
 * *stop is non-zero, 1 once the monotonic clock reaches deadline_ms (if
 * deadline_ms >= 0), a negative errno on failure. Open clients stay open
 * on return; vapp_server_close drops them. */
int vapp_server_run(struct vapp_server *s, vapp_handler_fn fn, void *ctx, const sigset_t *waitmask,
                    volatile sig_atomic_t *stop, int64_t deadline_ms);

/* Closes the listener and every client. Accepts NULL. */
void vapp_server_close(struct vapp_server *s);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t vapp_mono_ms(void);

#endif
