/* A fleet device's end state through the invariant table (invariants.h),
 * the same functions as a native trial's: the table's in_memory entries
 * (settled, one-active-slot, bootable, running-version, truthful-report).
 * The view is made from the device's in-memory state instead of files, and
 * the trial's scenario from the device's last update: its "factory" is the
 * version the update started from, its target the update's version, its
 * reports the server's final reports of that update. */
#include <stdlib.h>
#include <string.h>

#include "fleet_impl.h"
#include "ota/json.h"
#include "otasim/device.h"
#include "otasim/invariants.h"
#include "otasim/scenario.h"
#include "otasim/sim.h"

static const char *kv(const struct fdev *d, const char *key)
{
    for (size_t i = 0; i < d->n_kv; i++)
        if (strcmp(d->kv[i].key, key) == 0)
            return d->kv[i].val;
    return NULL;
}

struct fcheck {
    struct otasim_device dev;
    struct otasim_trial tr;
    struct otasim_scenario sc;
    struct otasim_settle settle;
};

/* Checks d; *ret_failed: the checks that failed (names and details). */
int fleet_check_device(struct fleet *fl, const struct fdev *d, json_t *reports, char *ret_failed,
                       size_t cap, int *ret_ok)
{
    struct fcheck *c = calloc(1, sizeof(*c));
    struct otasim_inv_view v;
    int rootfs = fleet_kind(fl) == OTA_KIND_ROOTFS;
    const char *app = kv(d, rootfs ? "rootfs.version" : "app.version");
    const char *slot = kv(d, rootfs ? "rootfs.slot" : "app.slot");
    const char *upd = d->j ? d->j->update_id : NULL;
    size_t i, k = 0;
    json_t *r, *mine;

    if (!c)
        return -ENOMEM;
    *ret_ok = 1;
    ret_failed[0] = 0;
    memset(&v, 0, sizeof(v));
    c->dev.tr = &c->tr;
    c->dev.booted_slot = -1;
    c->tr.sc = &c->sc;
    c->sc.profile = OTASIM_PROFILE_APP;
    /* the last update: from -> to */
    if (d->j && d->j->from_version && d->j->from_version[0] && d->last_version) {
        ota_strlcpy(c->sc.rel[0].version, d->j->from_version, sizeof(c->sc.rel[0].version));
        c->sc.rel[0].factory = 1;
        ota_strlcpy(c->sc.rel[1].version, d->last_version, sizeof(c->sc.rel[1].version));
        c->sc.n_rel = 2;
    }
    v.d = &c->dev;
    v.in_memory = 1;
    c->settle.settled = !d->pass && (!d->j || d->j->state == OTA_STATE_IDLE) && !d->outbox;
    if (!c->settle.settled)
        snprintf(c->settle.why, sizeof(c->settle.why), "%s",
                 d->pass     ? "in a pass at the end"
                 : d->outbox ? "reports not delivered"
                             : "an update in progress");
    v.settle = &c->settle;
    v.status = json_object(); /* the state below is the agent's own */
    ota_strlcpy(v.state, ota_state_names[d->j ? d->j->state : OTA_STATE_IDLE], sizeof(v.state));
    for (const struct frep *o = d->outbox; o; o = o->next)
        v.outbox++;
    /* before any committed update the database names nothing: the slot's own */
    ota_strlcpy(v.app_version,
                app                      ? app
                : d->slot_ver[d->active] ? d->slot_ver[d->active]
                                         : "",
                sizeof(v.app_version));
    ota_strlcpy(v.app_slot, slot ? slot : ota_slot_names[d->active], sizeof(v.app_slot));
    v.db_version = v.app_version;
    v.db_slot = v.app_slot;
    ota_strlcpy(v.current, ota_slot_names[d->active], sizeof(v.current));
    ota_strlcpy(v.running, d->running ? d->running : "", sizeof(v.running));
    v.svc_active = fleet_dev_service_up(fl, d);
    v.health = v.svc_active ? 200 : 0;
    mine = json_array();
    json_array_foreach(reports, i, r)
    {
        const char *u = json_string_value(json_object_get(r, "update_id"));
        if (upd && u && strcmp(u, upd) == 0)
            json_array_append(mine, r);
    }
    otasim_inv_view_reports(&v, mine, "server");
    for (i = 0; i < otasim_n_invariants; i++) {
        const struct otasim_invariant *inv = &otasim_invariants[i];
        struct otasim_check ck;
        if (!inv->check || !otasim_inv_applies(inv, &v) || !inv->check(&v, &ck) || ck.ok)
            continue;
        *ret_ok = 0;
        k += (size_t)snprintf(ret_failed + k, k < cap ? cap - k : 0, "%s%s: %s", k ? "; " : "",
                              ck.name, ck.detail);
        if (k >= cap)
            k = cap - 1;
    }
    /* rootfs: the boot env in memory, as bootenv-consistent reads the file:
     * no trial pending, bootcount 0, boot_part the slot the agent committed */
    if (rootfs && (d->env_upgrade || d->env_count || d->env_part != (slot && slot[0] == 'b'))) {
        *ret_ok = 0;
        k += (size_t)snprintf(ret_failed + k, k < cap ? cap - k : 0,
                              "%sbootenv-consistent: boot_part=%c upgrade_available=%u "
                              "bootcount=%u, database slot %s",
                              k ? "; " : "", d->env_part ? 'B' : 'A', d->env_upgrade, d->env_count,
                              slot ? slot : "(none)");
    }
    otasim_inv_view_free(&v);
    free(c);
    return 0;
}
