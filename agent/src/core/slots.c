/* The slots per update kind: the app's slot directories with its service,
 * or the rootfs's U-Boot A/B and its boot env (DESIGN.md). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/abboot.h"

/* Boot env values of the slots, as boot.scr reads them. */
static const char *const env_slot_names[OTA_SLOT_MAX] = {OTA_ENV_SLOT_A, OTA_ENV_SLOT_B};

/* ---- boot env --------------------------------------------------------- */

static int env_get(struct ota_agent *a, const char *name, char *buf, size_t cap,
                   struct ota_err *err)
{
    if (!a->ops.bootenv)
        return ota_err_set(err, ENOTSUP, "no boot env configured: rootfs updates need one");
    return a->ops.bootenv->get(a->ops.bootenv_ctx, name, buf, cap, err);
}

static int env_slot(struct ota_agent *a, int *ret_slot, struct ota_err *err)
{
    char v[16];
    int r = env_get(a, OTA_ENV_BOOT_PART, v, sizeof(v), err);

    if (r < 0)
        return r;
    for (int s = 0; s < OTA_SLOT_MAX; s++)
        if (strcasecmp(v, env_slot_names[s]) == 0) {
            *ret_slot = s;
            return 0;
        }
    return ota_err_set(err, EBADMSG, "boot env: boot_part='%s' is neither A nor B", v);
}

static int env_set3(struct ota_agent *a, int slot, const char *upgrade, struct ota_err *err)
{
    const char *names[] = {OTA_ENV_BOOT_PART, OTA_ENV_UPGRADE_AVAILABLE, OTA_ENV_BOOTCOUNT};
    const char *values[] = {env_slot_names[slot], upgrade, "0"};

    if (!a->ops.bootenv)
        return ota_err_set(err, ENOTSUP, "no boot env configured: rootfs updates need one");
    return a->ops.bootenv->set(a->ops.bootenv_ctx, names, values, 3, err);
}

/* The rootfs slot running now: the install driver's answer, else the env. */
int core_rootfs_booted(struct ota_agent *a, int *ret_slot, int *ret_known, struct ota_err *err)
{
    int r = a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_ROOTFS, ret_slot, NULL);

    if (r == 0) {
        *ret_known = 1;
        return 0;
    }
    *ret_known = 0;
    return env_slot(a, ret_slot, err);
}

static int request_reboot(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int r;

    a->j.flags |= OTA_JF_REBOOT_ASKED;
    r = core_save_journal(a, err);
    if (r < 0)
        return r;
    r = a->ops.service->reboot(a->ops.service_ctx, &e);
    if (r < 0)
        return ota_err_set(err, -r, "reboot failed: %s", e.reason);
    st->result = OTA_STEP_REBOOT;
    return 0;
}

/* ---- slots per update kind ------------------------------------------ */

static int app_begin_trial(struct ota_agent *a, enum ota_state *next, struct ota_err *err)
{
    int r = a->ops.install->app_switch(a->ops.install_ctx, a->j.to_slot, err);

    if (r < 0)
        return ota_err_prefix(err, r, "switch failed");
    r = a->ops.service->restart(a->ops.service_ctx, err);
    if (r < 0)
        return ota_err_prefix(err, r, "service restart failed");
    *next = OTA_STATE_HEALTH_CHECK;
    return 0;
}

static int app_booted(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    return core_start_rollback(a, "an app update found in REBOOTING: app updates do not reboot",
                               err);
}

static int app_commit(struct ota_agent *a, struct ota_err *err)
{
    return 0; /* `current` already names the new slot */
}

static int app_revert(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int r = a->ops.install->app_switch(a->ops.install_ctx, a->j.from_slot, err);

    if (r < 0)
        return ota_err_prefix(err, r, "rollback: switch failed");
    r = a->ops.service->restart(a->ops.service_ctx, &e);
    if (r < 0) {
        /* The old release is back in place; its service is the init
         * system's business now. Say so in the report. */
        char why[OTA_REASON_LEN];
        snprintf(why, sizeof(why), "%s; restart after rollback failed: %s", a->j.reason, e.reason);
        core_set_reason(a, why);
    }
    return 0;
}

static int uboot_begin_trial(struct ota_agent *a, enum ota_state *next, struct ota_err *err)
{
    int r = env_set3(a, a->j.to_slot, "1", err);

    if (r < 0)
        return ota_err_prefix(err, r, "setting the trial boot failed");
    *next = OTA_STATE_REBOOTING;
    return 0;
}

static int uboot_booted(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    char upgrade[16] = "", count[16] = "0";
    struct ota_err e = {0};
    int booted, known, r;

    /* Which slot did the bootloader give us? */
    r = core_rootfs_booted(a, &booted, &known, &e);
    if (r == 0)
        r = env_get(a, OTA_ENV_UPGRADE_AVAILABLE, upgrade, sizeof(upgrade), &e);
    if (r == 0 && env_get(a, OTA_ENV_BOOTCOUNT, count, sizeof(count), NULL) < 0)
        ota_strlcpy(count, "0", sizeof(count));
    if (r < 0) {
        ota_ignore(ota_err_prefix(&e, r, "boot env unreadable after reboot"));
        return core_start_rollback(a, e.reason, err);
    }
    if (strcmp(upgrade, "1") == 0 && atoi(count) == 0 && (!known || booted != a->j.to_slot))
        return request_reboot(a, st, err); /* the reboot never happened */
    if (booted == a->j.to_slot && strcmp(upgrade, "1") == 0)
        return core_transition(a, OTA_STATE_HEALTH_CHECK, err);
    return core_start_rollback(a, "new rootfs did not boot: the bootloader fell back", err);
}

static int uboot_commit(struct ota_agent *a, struct ota_err *err)
{
    int r = env_set3(a, a->j.to_slot, "0", err);

    return r < 0 ? ota_err_prefix(err, r, "commit: boot env write failed") : 0;
}

static int uboot_revert(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int booted, known, r;

    r = env_set3(a, a->j.from_slot, "0", &e);
    if (r < 0) {
        char why[OTA_REASON_LEN];
        /* Running the old slot and the env unwritable: the trial boot was
         * never set (the env write is what failed), so there is nothing
         * to undo; say so. Anywhere else we cannot finish: retry later. */
        if (a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_ROOTFS, &booted, NULL) < 0 ||
            booted != a->j.from_slot)
            return ota_err_set(err, -r, "rollback: boot env write failed: %s", e.reason);
        snprintf(why, sizeof(why), "%s; boot env left as it was: %s", a->j.reason, e.reason);
        core_set_reason(a, why);
        (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
        r = core_transition(a, OTA_STATE_IDLE, err);
        return r < 0 ? r : 1;
    }
    r = core_rootfs_booted(a, &booted, &known, &e);
    if ((r == 0 && known && booted != a->j.from_slot) ||
        /* We cannot see what runs: the new slot may be running. Reboot
         * once into the old one; the flag stops a second reboot. */
        (!known && !(a->j.flags & OTA_JF_REBOOT_ASKED) && a->j.to_slot != a->j.from_slot &&
         !a->resumed)) {
        r = request_reboot(a, st, err);
        return r < 0 ? r : 1;
    }
    return 0;
}

static int app_running(struct ota_agent *a, int *ret_slot, struct ota_err *err)
{
    return a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_APP, ret_slot, err);
}

static int app_preflight(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err)
{
    return 0;
}

static int uboot_running(struct ota_agent *a, int *ret_slot, struct ota_err *err)
{
    int known;

    return core_rootfs_booted(a, ret_slot, &known, err);
}

static int uboot_preflight(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err)
{
    int part;

    if (!a->ops.bootenv)
        return ota_err_set(err, EPERM, "rootfs release %s but no boot env configured", m->version);
    /* A trial boot needs a boot env we can read and write: find out now,
     * before downloading anything. */
    return env_slot(a, &part, err);
}

static int app_commit_order(struct ota_agent *a, struct ota_err *err)
{
    /* An app update reboots nothing: REBOOTING is a rootfs state. */
    return ota_err_set(err, EBUSY, "nothing to commit in state %s", ota_state_names[a->j.state]);
}

static int uboot_commit_order(struct ota_agent *a, struct ota_err *err)
{
    int booted, known;
    int r = core_rootfs_booted(a, &booted, &known, err);

    if (r < 0)
        return r;
    if (booted != a->j.to_slot)
        return ota_err_set(err, EPERM, "the new rootfs slot %s is not the one running",
                           ota_slot_names[a->j.to_slot]);
    return 0;
}

static void app_found_version(struct ota_agent *a, int slot, char *buf, size_t cap)
{
    if (a->ops.install->slot_version(a->ops.install_ctx, OTA_KIND_APP, slot, buf, cap, NULL) < 0)
        ota_strlcpy(buf, "0.0.0", cap);
}

static void uboot_found_version(struct ota_agent *a, int slot, char *buf, size_t cap)
{
    ota_strlcpy(buf, a->cfg.rootfs_version, cap);
}

static const struct slot_ops app_slots = {app_begin_trial,  app_booted,       app_commit,
                                          app_revert,       app_running,      app_preflight,
                                          app_commit_order, app_found_version};
static const struct slot_ops uboot_slots = {uboot_begin_trial,  uboot_booted,       uboot_commit,
                                            uboot_revert,       uboot_running,      uboot_preflight,
                                            uboot_commit_order, uboot_found_version};

const struct slot_ops *core_slots_for(enum ota_kind kind)
{
    return kind == OTA_KIND_ROOTFS ? &uboot_slots : &app_slots;
}

const struct slot_ops *core_slots(const struct ota_agent *a)
{
    return core_slots_for(core_is_rootfs(a) ? OTA_KIND_ROOTFS : OTA_KIND_APP);
}

int core_handle_switching(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    enum ota_state next;

    st->result = OTA_STEP_CONTINUE;
    if (core_slots(a)->begin_trial(a, &next, &e) < 0)
        return core_start_rollback(a, e.reason, err);
    return core_transition(a, next, err);
}

int core_handle_rebooting(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    st->result = OTA_STEP_CONTINUE;
    if (!a->resumed)
        return request_reboot(a, st, err);
    return core_slots(a)->booted(a, st, err);
}
