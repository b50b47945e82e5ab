/* STANDBY (DESIGN.md, "STANDBY: installed, waiting for activation"): a
 * blue-green offer's release is installed in the inactive slot and the agent
 * waits for the fleet's switch. Each pass checks in once; the server answers
 * "activate" (go on to SWITCHING) or "abandon" (the rollout was cancelled),
 * and the agent gives up by itself when the wait's bound is over. Abandoning
 * touches no slot: the running one stays, the inactive one keeps what was
 * installed. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t wall_now(struct ota_agent *a)
{
    return a->ops.clock->wall_ms(a->ops.clock_ctx);
}

int core_enter_standby(struct ota_agent *a, struct ota_err *err)
{
    a->j.standby_since_ms = wall_now(a);
    core_set_reason(a, "installed, waiting for activation");
    a->standby_poll = 1; /* the server may have switched already: ask at once */
    return core_transition(a, OTA_STATE_STANDBY, err);
}

/* The wait's bound: the offer's not_after_ms, and the configured maximum
 * from entering STANDBY, both on the wall clock (the monotonic clock starts
 * again at every boot). 1 and why when it is over. */
static int standby_expired(struct ota_agent *a, int64_t now, char *why, size_t cap)
{
    if (a->j.not_after_ms > 0 && now >= a->j.not_after_ms) {
        snprintf(why, cap, "activation not received before not_after_ms %lld",
                 (long long)a->j.not_after_ms);
        return 1;
    }
    if (now - a->j.standby_since_ms >= a->cfg.standby_max_wait_ms) {
        snprintf(why, cap, "activation not received within the %lld ms maximum wait",
                 (long long)a->cfg.standby_max_wait_ms);
        return 1;
    }
    return 0;
}

enum standby_answer { STANDBY_WAIT, STANDBY_ACTIVATE, STANDBY_ABANDON };

/* One check-in with state STANDBY and the update id. A server that does not
 * answer, or an answer for another update, means: keep waiting. */
static enum standby_answer standby_checkin(struct ota_agent *a)
{
    struct ota_offer *off = malloc(sizeof(*off));
    struct ota_inventory inv;
    char appv[64], rootv[64];
    int app_slot, root_slot, has = 0;
    enum standby_answer ans = STANDBY_WAIT;

    if (!off)
        return STANDBY_WAIT;
    ota_offer_clear(off);
    core_inventory(a, &inv, appv, rootv, sizeof(appv), &app_slot, &root_slot);
    if (core_source(a)->check(a, &inv, &has, off, NULL) == 0) {
        if (off->abandon[0] && strcmp(off->abandon, a->j.update_id) == 0)
            ans = STANDBY_ABANDON;
        else if (off->activate[0] && strcmp(off->activate, a->j.update_id) == 0)
            ans = STANDBY_ACTIVATE;
    }
    free(off);
    return ans;
}

int core_handle_standby(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    char why[OTA_REASON_LEN];
    int64_t now = wall_now(a);
    int r;

    st->result = OTA_STEP_CONTINUE;
    if (now < a->j.standby_since_ms) {
        /* The wall clock went back past the start of the wait (an RTC reset
         * to its epoch, a bad NTP step): the maximum wait counts from now. */
        a->j.standby_since_ms = now;
        r = core_save_journal(a, err);
        if (r < 0)
            return r;
    }
    if (standby_expired(a, now, why, sizeof(why)))
        return core_fail_update(a, why, err);
    if (!a->standby_poll) {
        st->result = OTA_STEP_IDLE; /* this pass asked already; the state stays */
        return 0;
    }
    a->standby_poll = 0;
    switch (standby_checkin(a)) {
    case STANDBY_ACTIVATE:
        core_set_reason(a, "activated by the server");
        return core_transition(a, OTA_STATE_SWITCHING, err);
    case STANDBY_ABANDON:
        return core_fail_update(a, "activation cancelled", err);
    case STANDBY_WAIT:
        break;
    }
    st->result = OTA_STEP_IDLE;
    return 0;
}
