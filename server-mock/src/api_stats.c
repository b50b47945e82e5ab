/* GET /api/v1/stats: the fleet's devices by type, group, version and agent
 * state, and the rollouts by state (docs/protocol.md, "Rollouts (admin)"); GET
 * /metrics renders the same object (metrics.c). */
#include <errno.h>
#include <string.h>

#include "otasrv/api_rollouts.h"
#include "otasrv/rollout.h"
#include "otasrv/store.h"

static void add(json_t *o, const char *key, int64_t n)
{
    json_t *v = json_object_get(o, key);

    json_object_set_new(o, key, json_integer((v ? json_integer_value(v) : 0) + n));
}

/* by[k]: the objects by type, group, state, app and rootfs version. */
struct tally {
    json_t *by[5];
    int64_t total;
};

static void count_row(void *ctx, const char *const cols[5], int64_t n)
{
    struct tally *t = ctx;

    for (int i = 0; i < 5; i++)
        add(t->by[i], cols[i], n);
    t->total += n;
}

int otasrv_fleet_stats(struct otasrv_srv *srv, json_t **ret, struct ota_err *err)
{
    int counts[OTASRV_ROLLOUT_STATE_MAX];
    struct tally t = {{json_object(), json_object(), json_object(), json_object(), json_object()},
                      0};
    json_t *by_rstate = json_object();
    int e;

    if ((e = otasrv_store_devices_tally(srv->store, count_row, &t, err)) < 0) {
        for (int i = 0; i < 5; i++)
            json_decref(t.by[i]);
        json_decref(by_rstate);
        return e;
    }
    otasrv_rollouts_count(srv, counts, &e);
    for (int s = 0; s < OTASRV_ROLLOUT_STATE_MAX; s++)
        json_object_set_new(by_rstate, otasrv_rollout_state_names[s], json_integer(counts[s]));
    *ret = json_pack("{s:{s:I, s:o, s:o, s:o, s:{s:o, s:o}}, s:{s:i, s:o}}", "devices", "total",
                     (json_int_t)t.total, "by_type", t.by[0], "by_group", t.by[1], "by_state",
                     t.by[2], "by_version", "app", t.by[3], "rootfs", t.by[4], "rollouts", "total",
                     e, "by_state", by_rstate);
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
