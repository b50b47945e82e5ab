/* GET /api/v1/stats: the fleet's devices by type, group, version and agent
 * state, and the rollouts by state (docs/protocol.md, "Rollouts (admin)"); GET
 * /metrics renders the same object (metrics.c). */
#include <errno.h>
#include <string.h>

#include "otasrv/api_rollouts.h"
#include "otasrv/rollout.h"
#include "otasrv/store.h"

static void bump(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key ? key : "");

    json_object_set_new(o, key ? key : "", json_integer(v ? json_integer_value(v) + 1 : 1));
}

int otasrv_fleet_stats(struct otasrv_srv *srv, json_t **ret, struct ota_err *err)
{
    int counts[OTASRV_ROLLOUT_STATE_MAX];
    struct otasrv_device_filter f = {0};
    json_t *by_type = json_object(), *by_group = json_object(), *app = json_object(),
           *rootfs = json_object(), *by_state = json_object(), *by_rstate = json_object();
    int64_t total = 0;
    int e;

    f.limit = 1000;
    for (;;) {
        json_t *page = NULL, *dev;
        size_t i, got;
        if ((e = otasrv_store_devices_list(srv->store, &f, &page, err)) < 0) {
            json_decref(by_type);
            json_decref(by_group);
            json_decref(app);
            json_decref(rootfs);
            json_decref(by_state);
            json_decref(by_rstate);
            return e;
        }
        got = json_array_size(json_object_get(page, "devices"));
        json_array_foreach(json_object_get(page, "devices"), i, dev)
        {
            json_t *v = json_object_get(dev, "versions");
            bump(by_type, json_string_value(json_object_get(dev, "device_type")));
            bump(by_group, json_string_value(json_object_get(dev, "group")));
            bump(by_state, json_string_value(json_object_get(dev, "state")));
            bump(app, json_string_value(json_object_get(v, "app")));
            bump(rootfs, json_string_value(json_object_get(v, "rootfs")));
            total++;
        }
        json_decref(page);
        if (got < (size_t)f.limit)
            break;
        f.offset += f.limit;
    }
    otasrv_rollouts_count(srv, counts, &e);
    for (int s = 0; s < OTASRV_ROLLOUT_STATE_MAX; s++)
        json_object_set_new(by_rstate, otasrv_rollout_state_names[s], json_integer(counts[s]));
    *ret = json_pack("{s:{s:I, s:o, s:o, s:o, s:{s:o, s:o}}, s:{s:i, s:o}}", "devices", "total",
                     (json_int_t)total, "by_type", by_type, "by_group", by_group, "by_state",
                     by_state, "by_version", "app", app, "rootfs", rootfs, "rollouts", "total", e,
                     "by_state", by_rstate);
    return *ret ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

enum otasrv_result otasrv_api_stats(struct otasrv_req *req)
{
    struct ota_err err = {0};
    json_t *body = NULL;
    int r;

    if ((r = otasrv_fleet_stats(req->srv, &body, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    return otasrv_reply_json(req, 200, body);
}
