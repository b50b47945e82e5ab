/* GET|POST /api/v1/admin/clock: the virtual clock seen and driven by a
 * test (a fleet runner). An advance moves the clock, which fires the
 * timers of the requests due by then, then runs the rollouts' timer pass
 * at the new now (otasrv_rollouts_step) before it answers: when the answer
 * arrives, everything due by then has happened. The answer says what is
 * due next on the server and how many requests the clock holds. */
#include "otasrv/api_clock.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "otasrv/api_rollouts.h"
#include "otasrv/clock.h"

/* {"virtual", "now_ms", "next_deadline_ms" (null: none), "sleepers"} */
static json_t *state_json(struct otasrv_srv *srv)
{
    struct otasrv_clock *c = srv->clock;
    int64_t now = c ? otasrv_clock_now(c) : otasrv_now_ms();
    int64_t next = otasrv_rollouts_next_deadline(srv, now);
    size_t sleepers = 0;

    if (c) {
        int64_t t = otasrv_clock_next_deadline(c);
        if (t < next)
            next = t;
        sleepers = otasrv_clock_sleepers(c);
    }
    json_t *o = json_pack("{s:b, s:I, s:o, s:I}", "virtual", c != NULL, "now_ms", (json_int_t)now,
                          "next_deadline_ms", next == INT64_MAX ? json_null() : json_integer(next),
                          "sleepers", (json_int_t)sleepers);
    int waiting, left;

    if (o && c && otasrv_clock_parties(c) > 0) {
        otasrv_clock_parties_state(c, &waiting, &left);
        json_object_set_new(o, "parties",
                            json_pack("{s:i, s:i, s:i}", "n", otasrv_clock_parties(c), "waiting",
                                      waiting, "left", left));
    }
    return o;
}

static int step(void *ctx, int64_t now_ms, struct ota_err *err)
{
    return otasrv_rollouts_step(ctx, now_ms, err);
}

struct advance_body {
    int64_t ms;
    int relative;
    int party; /* -1: none */
    int leave;
};

/* A party's fields: 0, or -EINVAL with the 400 sent. */
static int parse_party(struct otasrv_req *req, json_t *o, struct advance_body *b,
                       enum otasrv_result *ret)
{
    json_t *p = json_object_get(o, "party"), *l = json_object_get(o, "leave");

    b->party = -1;
    if (p && (!json_is_integer(p) || json_integer_value(p) < 0 ||
              json_integer_value(p) >= OTASRV_CLOCK_MAX_PARTIES)) {
        *ret = otasrv_reply_error(req, 400, "field party: an integer >= 0");
        return -EINVAL;
    }
    if (l && !json_is_true(l)) {
        *ret = otasrv_reply_error(req, 400, "field leave: true (or absent)");
        return -EINVAL;
    }
    if (l && !p) {
        *ret = otasrv_reply_error(req, 400, "leave needs party");
        return -EINVAL;
    }
    if (p)
        b->party = (int)json_integer_value(p);
    b->leave = l != NULL;
    return 0;
}

/* The body: one time field, or {"party", "leave": true}; replies 400 otherwise. */
static int parse_advance(struct otasrv_req *req, struct advance_body *b, enum otasrv_result *ret)
{
    static const char *const keys[] = {"advance_to_ms", "advance_ms", "party", "leave", NULL};
    struct ota_err err = {0};
    json_t *o = NULL, *to, *by, *v;

    if (otasrv_body_object(req, &o, ret) < 0)
        return -EINVAL;
    to = json_object_get(o, "advance_to_ms");
    by = json_object_get(o, "advance_ms");
    v = to ? to : by;
    if (otasrv_check_keys(o, keys, &err) < 0)
        *ret = otasrv_reply_error(req, 400, "%s", err.reason);
    else if (parse_party(req, o, b, ret) < 0)
        ; /* answered */
    else if (b->leave && (to || by))
        *ret = otasrv_reply_error(req, 400, "leave takes no time");
    else if (b->leave) {
        json_decref(o);
        return 0;
    } else if (b->party >= 0 && by)
        *ret = otasrv_reply_error(req, 400, "a party asks with advance_to_ms");
    else if (!to == !by)
        *ret = otasrv_reply_error(req, 400, "give one of advance_to_ms and advance_ms");
    else if (!json_is_integer(v) || json_integer_value(v) < 0)
        *ret = otasrv_reply_error(req, 400, "field %s: an integer >= 0 (ms)",
                                  to ? "advance_to_ms" : "advance_ms");
    else {
        b->ms = json_integer_value(v);
        b->relative = by != NULL;
        json_decref(o);
        return 0;
    }
    json_decref(o);
    return -EINVAL;
}

static void resume_conn(void *ctx)
{
    otasrv_resume(ctx);
}

static enum otasrv_result clock_error(struct otasrv_req *req, int r, struct ota_err *err)
{
    if (r == -ERANGE || r == -EBUSY || r == -EINVAL)
        return otasrv_reply_error(req, 409, "%s", err->reason);
    if (r == -ESHUTDOWN)
        return otasrv_reply_error(req, 503, "%s", err->reason);
    return otasrv_reply_store_error(req, r, err);
}

/* A party's ask: its connection waits (suspended: the worker thread goes
 * on) until the clock gets to its time; then answered by clock_resumed(). */
static enum otasrv_result party_ask(struct otasrv_req *req, const struct advance_body *b)
{
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    int r;

    if (b->leave) {
        if ((r = otasrv_clock_party_leave(srv->clock, b->party, step, srv, &err)) < 0)
            return clock_error(req, r, &err);
        return otasrv_reply_json(req, 200, state_json(srv));
    }
    if ((r = otasrv_clock_party_check(srv->clock, b->party, b->ms, &err)) < 0)
        return clock_error(req, r, &err);
    req->clock_party = b->party + 1;
    otasrv_suspend(req->conn);
    r = otasrv_clock_party_ask(srv->clock, b->party, b->ms, resume_conn, req->conn, step, srv,
                               &err);
    if (r == 0 && err.code)
        fprintf(stderr, "ota-server: the clock's advance for the parties: %s\n", err.reason);
    if (r < 0) { /* refused after the check: cannot happen, the party is one runner */
        req->clock_party = 0;
        otasrv_resume(req->conn);
        return clock_error(req, r, &err);
    }
    return OTASRV_OK;
}

/* The party's connection is back: the clock got to its time (or closed). */
static enum otasrv_result clock_resumed(struct otasrv_req *req)
{
    int party = req->clock_party - 1;

    req->clock_party = 0;
    if (otasrv_clock_party_result(req->srv->clock, party) != 0)
        return otasrv_reply_error(req, 503, "the server is shutting down");
    return otasrv_reply_json(req, 200, state_json(req->srv));
}

static enum otasrv_result advance(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    struct advance_body b = {0};
    struct ota_err err = {0};
    enum otasrv_result ret;
    int64_t now = 0;
    size_t woken = 0;
    int r;
    json_t *o;

    if (req->clock_party)
        return clock_resumed(req);
    if (!srv->clock)
        return otasrv_reply_error(req, 409,
                                  "virtual clock is off (start the server with --virtual-clock)");
    if (parse_advance(req, &b, &ret) < 0)
        return ret;
    if (b.party >= 0 && !otasrv_clock_parties(srv->clock))
        return otasrv_reply_error(req, 409, "the clock has no parties (serve --clock-parties N)");
    if (b.party >= 0)
        return party_ask(req, &b);
    if (otasrv_clock_parties(srv->clock))
        return otasrv_reply_error(req, 409,
                                  "the clock has %d parties: ask with {\"advance_to_ms\": T, "
                                  "\"party\": I}",
                                  otasrv_clock_parties(srv->clock));
    if (b.relative)
        r = otasrv_clock_advance_by(srv->clock, b.ms, step, srv, &woken, &now, &err);
    else
        r = otasrv_clock_advance_to(srv->clock, b.ms, step, srv, &woken, &err);
    if (r == -ERANGE)
        return otasrv_reply_error(req, 409, "%s", err.reason);
    if (r == -ESHUTDOWN)
        return otasrv_reply_error(req, 503, "%s", err.reason);
    if (r < 0)
        return otasrv_reply_store_error(req, r, &err);
    o = state_json(srv);
    json_object_set_new(o, "woken", json_integer((json_int_t)woken));
    return otasrv_reply_json(req, 200, o);
}

enum otasrv_result otasrv_api_clock_handle(struct otasrv_req *req)
{
    if (req->nseg != 4)
        return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    if (strcmp(req->method, "GET") == 0)
        return otasrv_reply_json(req, 200, state_json(req->srv));
    if (strcmp(req->method, "POST") == 0)
        return advance(req);
    return otasrv_reply_error(req, 405, "method %s not allowed on %s", req->method, req->path);
}
