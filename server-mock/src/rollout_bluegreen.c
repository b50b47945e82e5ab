/* The rollout engine's blue_green strategy (docs/protocol.md, "Rollouts"):
 * stages as in `staged`, but a device that installed the release waits in
 * STANDBY (device state `standby`) until the rollout is activated, by the
 * operator (OTASRV_OP_ACTIVATE) or at activate_at_ms (tick); then every
 * waiting device is told to switch at its next check-in (`activated`), and
 * a cancelled, failed or rolled-back rollout tells it to abandon. The
 * hooks in rollout.c / rollout_def.c / rollout_status.c call these. */
#include "otasrv/rollout.h"
#include "rollout_impl.h"

int otasrv_bg_parse(const json_t *obj, struct otasrv_rollout_def *def, struct ota_err *err)
{
    int r = opt_int(obj, "", "activate_at_ms", 0, INT64_MAX, &def->activate_at_ms, err);

    if (r >= 0)
        r = opt_int(obj, "", "not_after_ms", 0, INT64_MAX, &def->not_after_ms, err);
    return r;
}

int otasrv_bg_validate(const struct otasrv_rollout_def *def, struct ota_err *err)
{
    if (def->activate_at_ms < 0 || def->not_after_ms < 0)
        return ota_err_set(err, EINVAL, "activate_at_ms, not_after_ms: negative");
    if (def->strategy != OTASRV_STRATEGY_BLUE_GREEN) {
        if (def->activate_at_ms)
            return ota_err_set(err, EINVAL, "activate_at_ms: only blue_green rollouts activate");
        if (def->not_after_ms)
            return ota_err_set(err, EINVAL, "not_after_ms: only blue_green rollouts wait");
        return 0;
    }
    if (def->not_after_ms && def->activate_at_ms && def->not_after_ms <= def->activate_at_ms)
        return ota_err_set(err, EINVAL,
                           "not_after_ms: devices would give up before activate_at_ms");
    return 0;
}

void otasrv_bg_to_json(const struct otasrv_rollout_def *def, json_t *obj, int *bad)
{
    if (def->strategy != OTASRV_STRATEGY_BLUE_GREEN)
        return;
    put(obj, "activate_at_ms", json_integer(def->activate_at_ms), bad);
    put(obj, "not_after_ms", json_integer(def->not_after_ms), bad);
}

/* A device in standby or activated: switch, keep waiting, or abandon. */
void otasrv_bg_decide(const struct otasrv_rollout *r, const struct otasrv_rollout_device *d,
                      struct otasrv_rollout_decision *ret)
{
    ret->offer = OTASRV_OFFER_NONE;
    switch (r->state) {
    case OTASRV_ROLLOUT_CANCELLED:
    case OTASRV_ROLLOUT_FAILED:
    case OTASRV_ROLLOUT_ROLLED_BACK:
        ret->offer = OTASRV_OFFER_ABANDON;
        ret->why = OTASRV_WHY_ENDED;
        break;
    case OTASRV_ROLLOUT_PAUSED:
        ret->why = OTASRV_WHY_PAUSED;
        break;
    default:
        if (!r->activated_ms) {
            ret->why = OTASRV_WHY_STANDBY;
            break;
        }
        ret->offer = OTASRV_OFFER_ACTIVATE;
        ret->why = OTASRV_WHY_ACTIVATED;
        break;
    }
    (void)d;
    if (ret->offer != OTASRV_OFFER_NONE)
        ota_strlcpy(ret->release_id, r->def.release_id, sizeof(ret->release_id));
}

int otasrv_bg_activate(struct otasrv_rollout *r, int64_t now_ms, const char *reason,
                       struct ota_err *err)
{
    if (r->def.strategy != OTASRV_STRATEGY_BLUE_GREEN)
        return ota_err_set(err, EINVAL, "rollout is %s, not blue_green: nothing to activate",
                           otasrv_strategy_names[r->def.strategy]);
    if (r->activated_ms)
        return ota_err_set(err, EALREADY, "rollout is already activated");
    if (r->state != OTASRV_ROLLOUT_RUNNING)
        return ota_err_set(err, EINVAL, "rollout is %s: only a running rollout activates",
                           otasrv_rollout_state_names[r->state]);
    r->activated_ms = now_ms;
    r->changed_ms = now_ms;
    ota_strlcpy(r->reason, reason, sizeof(r->reason));
    return 0;
}

int otasrv_bg_tick(struct otasrv_rollout *r, int64_t now_ms)
{
    if (r->def.strategy != OTASRV_STRATEGY_BLUE_GREEN || !r->def.activate_at_ms ||
        r->activated_ms || r->state != OTASRV_ROLLOUT_RUNNING || now_ms < r->def.activate_at_ms)
        return 0;
    return otasrv_bg_activate(r, now_ms, "activation time reached", NULL) == 0;
}
