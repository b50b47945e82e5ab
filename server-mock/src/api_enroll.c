/* Who may register which device id (docs/protocol.md "Register"), and the
 * admin's approval of one re-enrollment (POST /api/v1/devices/{id}/reenroll). */
#include <errno.h>
#include <string.h>

#include "otasrv/api.h"
#include "otasrv/auth.h"
#include "otasrv/events.h"

/* 1 if the device's current token was never used: no check-in since it was
 * issued (the device lost power before it stored it, or an operator
 * registered the id ahead of the device). */
static int token_unused(struct otasrv_srv *srv, const char *id)
{
    json_t *dev = NULL;
    int64_t issued, last;

    if (otasrv_store_device_get(srv->store, id, &dev, NULL) < 0)
        return 0;
    issued = json_integer_value(json_object_get(dev, "reenrolled_ms"));
    if (!issued)
        issued = json_integer_value(json_object_get(dev, "registered_ms"));
    last = json_integer_value(json_object_get(dev, "last_checkin_ms"));
    json_decref(dev);
    return last < issued || last == 0;
}

int otasrv_enroll_precheck(struct otasrv_req *req, enum otasrv_result *ret)
{
    struct otasrv_srv *srv = req->srv;
    char sha[65], who[129];
    int have = otasrv_bearer_sha(req, sha) == 0;

    if (srv->enroll_open ||
        (have && !srv->enroll_closed && otasrv_secret_eq(sha, srv->enroll_sha)) ||
        (have && otasrv_store_device_by_token(srv->store, sha, who, sizeof(who), NULL) == 0))
        return 0;
    *ret =
        srv->enroll_closed
            ? otasrv_reply_error(req, 401, "enrollment is closed: the server has no --enroll-token")
            : otasrv_reply_error(req, 401, "bad or missing enrollment token");
    return -EACCES;
}

int otasrv_enroll_authorize(struct otasrv_req *req, const char *id, enum otasrv_result *ret)
{
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    char sha[65] = "", cur[65];
    int enroll, r;

    /* no token at all: enough for --open-enrollment's new ids only */
    if (otasrv_bearer_sha(req, sha) < 0 && !srv->enroll_open) {
        *ret = otasrv_reply_error(req, 401, "bad or missing enrollment token");
        return -EACCES;
    }
    enroll = srv->enroll_open ||
             (sha[0] && !srv->enroll_closed && otasrv_secret_eq(sha, srv->enroll_sha));
    r = otasrv_store_device_token_of(srv->store, id, cur, &err);
    if (r == -ENOENT) { /* a new device */
        if (enroll)
            return 0;
        *ret = srv->enroll_closed
                   ? otasrv_reply_error(req, 401,
                                        "enrollment is closed: the server has no --enroll-token")
                   : otasrv_reply_error(req, 401, "bad or missing enrollment token");
        return -EACCES;
    }
    if (r < 0) {
        *ret = otasrv_reply_store_error(req, r, &err);
        return r;
    }
    if (sha[0] && otasrv_secret_eq(sha, cur)) /* the device itself, with its current token */
        return 0;
    if (!enroll) {
        *ret = otasrv_reply_error(req, 401, "bad or missing enrollment token");
        return -EACCES;
    }
    if (token_unused(srv, id))
        return 0;
    if ((r = otasrv_store_reenroll_take(srv->store, id, &err)) < 0) {
        *ret = otasrv_reply_store_error(req, r, &err);
        return r;
    }
    if (r == 1)
        return 0;
    *ret = otasrv_reply_error(req, 409,
                              "device %s is already enrolled: re-enrollment needs its current "
                              "token as Bearer, or an admin's approval "
                              "(POST /api/v1/devices/%s/reenroll)",
                              id, id);
    return -EEXIST;
}

enum otasrv_result otasrv_api_reenroll_allow(struct otasrv_req *req, const char *id)
{
    struct ota_err err = {0};
    int r;

    if (!otasrv_valid_id(id))
        return otasrv_reply_error(req, 404, "no device %s", id);
    if (req->body_len && (req->body_len != 2 || strcmp(req->body, "{}") != 0))
        return otasrv_reply_error(req, 400, "POST .../reenroll takes no body (or {})");
    if ((r = otasrv_store_reenroll_allow(req->srv->store, id, otasrv_now_ms(), &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    otasrv_events_publish(req->srv->events, NULL, "device_reenroll_allowed",
                          json_pack("{s:s}", "device", id));
    return otasrv_reply_json(req, 200,
                             json_pack("{s:s, s:b}", "device_id", id, "reenroll_allowed", 1));
}
