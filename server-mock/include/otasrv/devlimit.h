/* Per-device request rate limits on the fleet API (docs/protocol.md "Rate
 * limits"): a token bucket per device id, `n` requests per `period_ms` with
 * a burst of n, refilled continuously. Keyed on the device's identity (the
 * authenticated device, the id being registered), never on the client's
 * address: a fleet run's thousands of devices share one address. */
#ifndef OTASRV_DEVLIMIT_H
#define OTASRV_DEVLIMIT_H

#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_devlimit;

/* "N/s", "N/m" or "N/h" (N 1..1000000) into n and period_ms; -EINVAL. */
int otasrv_devlimit_parse(const char *s, unsigned *ret_n, int64_t *ret_period_ms);
int otasrv_devlimit_new(unsigned n, int64_t period_ms, struct otasrv_devlimit **ret,
                        struct ota_err *err) OTA_MUST;
void otasrv_devlimit_free(struct otasrv_devlimit *l);
/* 1: the request of device id at now_ms may go (one token taken); 0:
 * refused, *ret_retry_s the whole seconds (>= 1) until it may. */
int otasrv_devlimit_take(struct otasrv_devlimit *l, const char *id, int64_t now_ms,
                         int64_t *ret_retry_s);

#ifdef __cplusplus
}
#endif
#endif
