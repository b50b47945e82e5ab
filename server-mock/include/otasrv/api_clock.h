/* The virtual clock's admin endpoint, GET|POST /api/v1/admin/clock
 * (api_clock.c; the clock itself: clock.h). Tests only; documented in
 * docs/protocol.md, "Virtual clock (tests only)". */
#ifndef OTASRV_API_CLOCK_H
#define OTASRV_API_CLOCK_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* /api/v1/admin/clock (the caller checked the admin token). GET: the
 * clock's state; POST {"advance_to_ms": T} or {"advance_ms": D}: moves the
 * virtual clock, fires what is due, ticks the rollouts, then answers. */
enum otasrv_result otasrv_api_clock_handle(struct otasrv_req *req);

#ifdef __cplusplus
}
#endif
#endif
