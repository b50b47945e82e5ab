/* GET|POST /api/v1/admin/clock: the virtual clock seen and driven by a
 * test (a fleet runner). An advance moves the clock, which fires the
 * timers of the requests due by then, then runs the rollouts' timer pass
 * at the new now (otasrv_rollouts_step) before it answers: when the answer
 * arrives, everything due by then has happened. The answer says what is
 * due next on the server and how many requests the clock holds. */
#include "otasrv/api_clock.h"

#include <errno.h>
#include <stdint.h>
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
    return json_pack("{s:b, s:I, s:o, s:I}", "virtual", c != NULL, "now_ms", (json_int_t)now,
                     "next_deadline_ms", next == INT64_MAX ? json_null() : json_integer(next),
                     "sleepers", (json_int_t)sleepers);
}

static int step(void *ctx, int64_t now_ms, struct ota_err *err)
{
    return otasrv_rollouts_step(ctx, now_ms, err);
}

/* The body's one field: *ret_ms and *ret_relative; replies 400 otherwise. */
static int parse_advance(struct otasrv_req *req, int64_t *ret_ms, int *ret_relative,
                         enum otasrv_result *ret)
{
    static const char *const keys[] = {"advance_to_ms", "advance_ms", NULL};
    struct ota_err err = {0};
    json_t *o = NULL, *to, *by, *v;

    if (otasrv_body_object(req, &o, ret) < 0)
        return -EINVAL;
    to = json_object_get(o, "advance_to_ms");
    by = json_object_get(o, "advance_ms");
    v = to ? to : by;
    if (otasrv_check_keys(o, keys, &err) < 0)
        *ret = otasrv_reply_error(req, 400, "%s", err.reason);
    else if (!to == !by)
        *ret = otasrv_reply_error(req, 400, "give one of advance_to_ms and advance_ms");
    else if (!json_is_integer(v) || json_integer_value(v) < 0)
        *ret = otasrv_reply_error(req, 400, "field %s: an integer >= 0 (ms)",
                                  to ? "advance_to_ms" : "advance_ms");
    else {
        *ret_ms = json_integer_value(v);
        *ret_relative = by != NULL;
        json_decref(o);
        return 0;
    }
    json_decref(o);
    return -EINVAL;
}

static enum otasrv_result advance(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    enum otasrv_result ret;
    int64_t ms, now = 0;
    size_t woken = 0;
    int relative, r;
    json_t *o;

    if (!srv->clock)
        return otasrv_reply_error(req, 409,
                                  "virtual clock is off (start the server with --virtual-clock)");
    if (parse_advance(req, &ms, &relative, &ret) < 0)
        return ret;
    if (relative)
        r = otasrv_clock_advance_by(srv->clock, ms, step, srv, &woken, &now, &err);
    else
        r = otasrv_clock_advance_to(srv->clock, ms, step, srv, &woken, &err);
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
