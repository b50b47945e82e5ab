/* The fleet API's per-device rate limit at the request (devlimit.h): 429
 * with Retry-After, keyed on the device the request is for. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "otasrv/api.h"
#include "otasrv/devlimit.h"

int otasrv_device_rate_check(struct otasrv_req *req, const char *id, enum otasrv_result *ret)
{
    struct otasrv_srv *srv = req->srv;
    int64_t retry = 0;
    char v[24];

    if (!srv->devlimit || otasrv_devlimit_take(srv->devlimit, id, otasrv_now_ms(), &retry))
        return 0;
    snprintf(v, sizeof(v), "%" PRId64, retry);
    otasrv_req_header(req, "Retry-After", v);
    *ret = otasrv_reply_error(req, 429,
                              "rate limit: at most %u requests per %" PRId64
                              " s for device %s; retry after %" PRId64 " s",
                              srv->cfg.device_rate_n, srv->cfg.device_rate_period_ms / 1000, id,
                              retry);
    return -EAGAIN;
}
