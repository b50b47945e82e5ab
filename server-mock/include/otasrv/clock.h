/* The server's clock. By default it is real time: otasrv_now_ms() is
 * CLOCK_REALTIME and waits are real sleeps, exactly as before the virtual
 * clock existed. For tests, `ota-server serve --virtual-clock START_MS`
 * installs a virtual clock (docs/protocol.md, "Virtual clock (tests only)"):
 * its now starts at START_MS and moves only when an admin advances it
 * (POST /api/v1/admin/clock), so that a fleet runner can run a day of
 * rollout in seconds.
 *
 * Under a virtual clock every "now" of the server (rollout timers,
 * registration / check-in / report times, the fault log, the event stream's
 * keepalive) is the virtual now, and every wait of a request (a fault's
 * delay, stall and throttle) is a timer on this clock: the request's
 * connection is suspended (its worker thread goes on serving other
 * connections) and resumed when an advance reaches the timer's deadline.
 * Nothing waits on real time. Closing the clock (server shutdown) fires
 * every timer at once, marked cancelled.
 *
 * Timers are the caller's memory (struct otasrv_clock_timer, e.g. inside a
 * request); the clock keeps the armed ones in a list. An advance is O(armed
 * timers). */
#ifndef OTASRV_CLOCK_H
#define OTASRV_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasrv_clock;

enum otasrv_clock_timer_state {
    OTASRV_TIMER_IDLE,      /* never armed, or disarmed */
    OTASRV_TIMER_ARMED,     /* waiting for its deadline */
    OTASRV_TIMER_FIRED,     /* its deadline was reached: fn ran */
    OTASRV_TIMER_CANCELLED, /* the clock closed first: fn ran */
};

/* A timer. Zero-initialise it; arm it with otasrv_clock_timer_arm; disarm it
 * before freeing its memory (harmless when it is not armed). */
struct otasrv_clock_timer {
    int64_t deadline_ms;
    void (*fn)(void *ctx);
    void *ctx;
    enum otasrv_clock_timer_state state;
    struct otasrv_clock_timer *prev, *next;
};

/* A new virtual clock whose now is start_ms (unix ms, >= 0). -EINVAL,
 * -ENOMEM. */
int otasrv_clock_new(int64_t start_ms, struct otasrv_clock **ret, struct ota_err *err) OTA_MUST;
/* Frees c (NULL ok). No timer may be armed, no thread may use it. */
void otasrv_clock_free(struct otasrv_clock *c);

/* Virtual now (unix ms). */
int64_t otasrv_clock_now(const struct otasrv_clock *c);

/* Arms t for deadline_ms: fn(ctx) runs once, with the clock's lock held
 * (fn must not call the clock; resuming a connection is fine), when an
 * advance reaches deadline_ms or the clock closes. If the deadline is
 * already reached, or the clock is closed, fn runs here, before this
 * returns. t must not be armed already. Returns the state t ends in
 * (ARMED, FIRED or CANCELLED). */
enum otasrv_clock_timer_state otasrv_clock_timer_arm(struct otasrv_clock *c,
                                                     struct otasrv_clock_timer *t,
                                                     int64_t deadline_ms, void (*fn)(void *ctx),
                                                     void *ctx);
/* Disarms t if it is armed (then IDLE); otherwise leaves its state. Once
 * this returns fn is not running and will not run. */
void otasrv_clock_timer_disarm(struct otasrv_clock *c, struct otasrv_clock_timer *t);
/* t's state, read under the clock's lock. */
enum otasrv_clock_timer_state otasrv_clock_timer_state(struct otasrv_clock *c,
                                                       const struct otasrv_clock_timer *t);

/* Blocks the calling thread (on a condition variable) until virtual now
 * reaches deadline_ms: 0, or -ECANCELED when the clock closes first. For
 * threads of their own (tests, tools); requests use timers. */
int otasrv_clock_sleep_until(struct otasrv_clock *c, int64_t deadline_ms) OTA_MUST;

/* What an advance calls once the clock has moved and its due timers have
 * fired, before the advance returns: the owner's own timers (the server's
 * rollout tick). A negative errno with err set fails the advance (the clock
 * stays moved). */
typedef int (*otasrv_clock_step_fn)(void *ctx, int64_t now_ms, struct ota_err *err);

/* Sets virtual now to to_ms and fires every armed timer whose deadline is
 * <= to_ms (each leaves the list before this returns), then calls step (if
 * not NULL). Advances are serialised: one's step ends before the next one
 * moves the clock. to_ms < now: -ERANGE with the reason, nothing changes.
 * to_ms == now is allowed (fires nothing new, runs step). Closed: -ESHUTDOWN.
 * *ret_fired (may be NULL): the timers this advance fired. */
int otasrv_clock_advance_to(struct otasrv_clock *c, int64_t to_ms, otasrv_clock_step_fn step,
                            void *ctx, size_t *ret_fired, struct ota_err *err) OTA_MUST;

/* The same, to now + by_ms (by_ms >= 0, now read under the advance's
 * serialisation); *ret_now_ms (may be NULL): where the clock got to. */
int otasrv_clock_advance_by(struct otasrv_clock *c, int64_t by_ms, otasrv_clock_step_fn step,
                            void *ctx, size_t *ret_fired, int64_t *ret_now_ms,
                            struct ota_err *err) OTA_MUST;

/* Timers armed now (requests sleeping on the clock, blocked threads). */
size_t otasrv_clock_sleepers(struct otasrv_clock *c);
/* The earliest deadline of the armed timers; INT64_MAX when none. */
int64_t otasrv_clock_next_deadline(struct otasrv_clock *c);

/* Fires every armed timer as CANCELLED and makes later arms and sleeps end
 * at once (CANCELLED, -ECANCELED): the server's shutdown. Idempotent. */
void otasrv_clock_close(struct otasrv_clock *c);

/* ---- parties: one clock for several runners ----
 *
 * `ota-server serve --clock-parties N` (docs/protocol.md, "Virtual clock":
 * "Several runners on one clock"): N runners (fleet shards) drive the clock
 * together. Each party asks for the time it wants next (its devices' next
 * event) once it has nothing left to do before it, and waits. Once every
 * party that has not left waits, the clock moves to the earliest time asked
 * (advance: due timers fire, the step ticks the rollouts), and the parties
 * that asked for that time are released (their fn runs, after the step);
 * the others keep waiting, still counted as asking for their time. So the
 * clock never passes a time some party still has to act at, and a party
 * with nothing to do (it asks for its next wake, or leaves) never holds the
 * others: only a party that is still working (requests in flight, served
 * meanwhile) does, until it asks. A party that never asks again (its
 * process died) holds the clock until the server stops. */

#define OTASRV_CLOCK_MAX_PARTIES 1024

/* Makes the clock a barrier of n parties (1..OTASRV_CLOCK_MAX_PARTIES),
 * numbered 0..n-1, none waiting. Call before any party asks. */
int otasrv_clock_parties_set(struct otasrv_clock *c, int n, struct ota_err *err) OTA_MUST;
/* The number of parties; 0: no barrier (advances are the caller's). */
int otasrv_clock_parties(struct otasrv_clock *c);
/* How many parties wait now and how many have left. */
void otasrv_clock_parties_state(struct otasrv_clock *c, int *ret_waiting, int *ret_left);

/* Whether party `party` may ask for to_ms now: 0, or -EINVAL no such party
 * or it left, -EBUSY it waits already, -ERANGE to_ms < now, -ESHUTDOWN
 * closed. */
int otasrv_clock_party_check(struct otasrv_clock *c, int party, int64_t to_ms,
                             struct ota_err *err) OTA_MUST;
/* Party `party` asks for to_ms and waits: fn(fn_ctx) runs once (clock lock
 * held; resuming a connection is fine) when the clock has got to to_ms and
 * the advance's step ran, or when the clock closes
 * (otasrv_clock_party_result then says which). When this ask makes every
 * party that has not left wait, this call runs the advance (to the earliest
 * time asked, with step) before it returns, and fn may already have run.
 * 0; or refused as by otasrv_clock_party_check (nothing changed, the
 * reason in *step_err). A step that failed in the advance this call ran
 * leaves its error in *step_err (step_err->code != 0) and 0 returned: the
 * clock moved and the parties due are released all the same. */
int otasrv_clock_party_ask(struct otasrv_clock *c, int party, int64_t to_ms, void (*fn)(void *ctx),
                           void *fn_ctx, otasrv_clock_step_fn step, void *ctx,
                           struct ota_err *step_err) OTA_MUST;
/* The party's waiter is gone (its connection closed): fn will not run. The
 * party still counts as asking for its time until the clock gets there. */
void otasrv_clock_party_forget(struct otasrv_clock *c, int party);
/* Of the party's last ask: 0 released at its time, -ECANCELED the clock closed. */
int otasrv_clock_party_result(struct otasrv_clock *c, int party);
/* Party `party` leaves for good (its run is over): it no longer holds the
 * clock; when every party left then waits, this call advances the clock as
 * an ask would. Errors as for an ask. */
int otasrv_clock_party_leave(struct otasrv_clock *c, int party, otasrv_clock_step_fn step,
                             void *ctx, struct ota_err *err) OTA_MUST;

/* ---- the process's clock ---- */

/* Makes c the clock otasrv_now_ms() reads (one per process): -EBUSY if
 * another clock is installed. */
int otasrv_clock_install(struct otasrv_clock *c, struct ota_err *err) OTA_MUST;
/* Back to real time, if c is the installed clock. */
void otasrv_clock_uninstall(struct otasrv_clock *c);
/* The installed clock; NULL: real time. */
struct otasrv_clock *otasrv_clock_installed(void);

/* Unix ms: the installed clock's virtual now, else CLOCK_REALTIME. Every
 * "now" of the server. */
int64_t otasrv_now_ms(void);
/* CLOCK_REALTIME in unix ms, whatever clock is installed. */
int64_t otasrv_real_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
