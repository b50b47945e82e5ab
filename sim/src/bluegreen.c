/* blue_green scenarios (`rollout: blue_green`, scenarios/README.md): the
 * target release comes to the trial's device through a blue_green rollout
 * of its own on the scenario's server, and the harness plays the operator:
 * once a pass ends with the agent waiting in STANDBY (nothing left to do
 * but wait), it activates the rollout, and the passes go on to the switch.
 * A fault before or in STANDBY (a power cut at every persistence point)
 * thus meets the activation after it. The trial records when it activated
 * (the `standby-waits` invariant: no switch before it). */
#include "otasim/sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"
#include "otasim/device.h"

/* The rollout's id: short, so that "{rollout}-{device}" fits an update id. */
static void rollout_id(const struct otasim_trial *tr, char *buf, size_t cap)
{
    snprintf(buf, cap, "bg-%08x", otasim_hash32(tr->device_id));
}

int otasim_bluegreen_setup(struct otasim_trial *tr, struct ota_err *err)
{
    char rid[32], rel[128];
    json_t *def;
    int r;

    tr->activated = 0;
    tr->activated_at = 0;
    if (!tr->sc->blue_green)
        return 0;
    rollout_id(tr, rid, sizeof(rid));
    if (!otasim_scenario_target(tr->sc))
        return ota_err_set(err, EINVAL, "rollout: blue_green: the scenario offers no release");
    if ((r = otasim_server_release_of(tr->srv, otasim_scenario_target(tr->sc)->version, rel,
                                      sizeof(rel), err)) < 0)
        return ota_err_prefix(err, r, "rollout");
    /* Registered now (the agent re-enrolls with the same id and group), so
     * that the rollout's table holds it from the start. */
    if ((r = otasim_server_enroll_device(tr->srv, tr->device_id, tr->sc->device_type, tr->device_id,
                                         NULL, 0, err)) < 0)
        return ota_err_prefix(err, r, "rollout");
    def = json_pack("{s:s, s:s, s:s, s:[{s:i}], s:{s:s}}", "id", rid, "release_id", rel, "strategy",
                    "blue_green", "stages", "percent", 100, "filters", "group", tr->device_id);
    if (!def)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = otasim_server_rollout_start(tr->srv, def, err);
    json_decref(def);
    return r;
}

int otasim_bluegreen_activate(struct otasim_device *d, struct otasim_trial *tr, int *ret_activated,
                              struct ota_err *err)
{
    char rid[32], path[96], *text = NULL;
    json_t *o = NULL;
    int standby, r;

    *ret_activated = 0;
    if (!tr->sc->blue_green || tr->activated)
        return 0;
    /* The database says, not the state lines: a start in STANDBY prints none. */
    if ((r = otasim_device_status(d, &text, err)) < 0)
        return r;
    r = ota_json_parse(text, strlen(text), &o, err);
    free(text);
    if (r < 0)
        return r;
    standby = json_string_value(json_object_get(o, "state")) &&
              strcmp(json_string_value(json_object_get(o, "state")), "STANDBY") == 0;
    json_decref(o);
    if (!standby)
        return 0;
    rollout_id(tr, rid, sizeof(rid));
    snprintf(path, sizeof(path), "/api/v1/rollouts/%s/activate", rid);
    if ((r = otasim_server_post(tr->srv, path, NULL, NULL, err)) < 0)
        return ota_err_prefix(err, r, "rollout %s", rid);
    tr->activated = 1;
    tr->activated_at = tr->state_lines ? strlen(tr->state_lines) : 0;
    *ret_activated = 1;
    return 0;
}

int otasim_bluegreen_poll(struct otasim_trial *tr, int *ret_activated, struct ota_err *err)
{
    char rid[32], path[160], *text = NULL;
    json_t *o = NULL;
    int standby, r;

    *ret_activated = 0;
    if (!tr->sc->blue_green || tr->activated)
        return 0;
    /* The server says (the agent in the guest has no status to ask): the
     * device reported STANDBY. */
    rollout_id(tr, rid, sizeof(rid));
    snprintf(path, sizeof(path), "/api/v1/rollouts/%s/devices?state=standby", rid);
    if ((r = otasim_server_get(tr->srv, path, &text, err)) < 0)
        return r;
    r = ota_json_parse(text, strlen(text), &o, err);
    free(text);
    if (r < 0)
        return r;
    standby = json_integer_value(json_object_get(o, "total")) > 0;
    json_decref(o);
    if (!standby)
        return 0;
    snprintf(path, sizeof(path), "/api/v1/rollouts/%s/activate", rid);
    if ((r = otasim_server_post(tr->srv, path, NULL, NULL, err)) < 0)
        return ota_err_prefix(err, r, "rollout %s", rid);
    tr->activated = 1;
    tr->activated_at = tr->state_lines ? strlen(tr->state_lines) : 0;
    *ret_activated = 1;
    return 0;
}
