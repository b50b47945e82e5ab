/* The A/B boot contract: the U-Boot environment variables and values the
 * agent (agent/src/core, agent/src/drivers/bootenv_uboot.c), the boot script
 * (images/boot.cmd) and the simulator's bootloader model and invariants
 * (sim/src/bootloader.c, sim/src/blkcheck.c, sim/src/invariants.c) share.
 * docs/DESIGN.md ("The A/B boot contract") states the rules; this header is
 * the one place the names, and the rule in C (ota_abboot_step), are written.
 *
 *   boot_part          "A" or "B": the slot to boot (anything else counts as A)
 *   upgrade_available  "1" while a new slot is on trial: every boot counts
 *   bootcount          trial boots so far; past bootlimit the bootloader boots
 *                      the other slot and sets upgrade_available=0 (the
 *                      fallback), leaving bootcount past bootlimit; while it
 *                      stays there the fallback slot's boots count too, and
 *                      past 2 x bootlimit the kernel boots in recovery mode
 *                      (OTA_KARG_RECOVERY), writing nothing more
 *   bootlimit          the trial boots allowed (3 on our images; boot.cmd
 *                      counts in hex and compares in decimal: at most 4)
 *
 * The agent's commit and its rollback after a fallback both write
 * bootcount=0, which ends the count: a healthy boot (upgrade_available=0,
 * bootcount <= bootlimit) counts nothing and writes nothing. */
#ifndef OTA_ABBOOT_H
#define OTA_ABBOOT_H

#define OTA_ENV_BOOT_PART         "boot_part"
#define OTA_ENV_UPGRADE_AVAILABLE "upgrade_available"
#define OTA_ENV_BOOTCOUNT         "bootcount"
#define OTA_ENV_BOOTLIMIT         "bootlimit"
#define OTA_ENV_SLOT_A            "A"
#define OTA_ENV_SLOT_B            "B"
#define OTA_ENV_BOOTLIMIT_DEFAULT "3"

/* Recovery mode: boot.scr adds this to the kernel command line; the
 * initramfs then mounts nothing and prints a line starting with
 * OTA_RECOVERY_LINE on the console, and waits for a reflash. */
#define OTA_KARG_RECOVERY "ota.recovery=1"
#define OTA_RECOVERY_LINE "OTA-RECOVERY:"

/* What one boot of the rule does. */
enum ota_abboot_boot {
    OTA_ABBOOT_SLOT,     /* the slot of boot_part boots */
    OTA_ABBOOT_FALLBACK, /* a trial past bootlimit: the other slot boots */
    OTA_ABBOOT_RECOVERY, /* both slots failed: recovery mode */
};

/* The env as boot.scr reads it: slot 0 (A) or 1 (B), upgrade 1 when
 * upgrade_available is "1", count and limit (0: no fallback and no recovery,
 * U-Boot's rule for bootcount_limit). */
struct ota_abboot_env {
    int slot;
    int upgrade;
    unsigned long count;
    unsigned long limit;
};

/* One boot of boot.scr's rule: updates *e as boot.scr leaves it and says
 * what boots; *ret_save is 1 when boot.scr saves the env (saveenv). */
static inline enum ota_abboot_boot ota_abboot_step(struct ota_abboot_env *e, int *ret_save)
{
    *ret_save = 0;
    if (e->upgrade) {
        e->count++;
        *ret_save = 1;
        if (e->limit > 0 && e->count > e->limit) {
            e->slot = !e->slot;
            e->upgrade = 0;
            return OTA_ABBOOT_FALLBACK;
        }
        return OTA_ABBOOT_SLOT;
    }
    if (e->limit == 0 || e->count <= e->limit)
        return OTA_ABBOOT_SLOT;
    if (e->count > 2 * e->limit)
        return OTA_ABBOOT_RECOVERY; /* already there: nothing written */
    e->count++;
    *ret_save = 1;
    return e->count > 2 * e->limit ? OTA_ABBOOT_RECOVERY : OTA_ABBOOT_SLOT;
}

#endif
