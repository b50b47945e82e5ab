/* The A/B boot contract: the U-Boot environment variables and values the
 * agent (agent/src/core, agent/src/drivers/bootenv_uboot.c), the boot script
 * (images/boot.cmd) and the simulator's bootloader model and invariants
 * (sim/src/bootloader.c, sim/src/invariants.c) share. docs/DESIGN.md states
 * the rules; this header is the one place the names are written in C.
 *
 *   boot_part          "A" or "B": the slot to boot (anything else counts as A)
 *   upgrade_available  "1" while a new slot is on trial: every boot counts
 *   bootcount          trial boots so far; past bootlimit the bootloader boots
 *                      the other slot and sets upgrade_available=0
 *   bootlimit          the trial boots allowed (3 on our images) */
#ifndef OTA_ABBOOT_H
#define OTA_ABBOOT_H

#define OTA_ENV_BOOT_PART         "boot_part"
#define OTA_ENV_UPGRADE_AVAILABLE "upgrade_available"
#define OTA_ENV_BOOTCOUNT         "bootcount"
#define OTA_ENV_BOOTLIMIT         "bootlimit"
#define OTA_ENV_SLOT_A            "A"
#define OTA_ENV_SLOT_B            "B"
#define OTA_ENV_BOOTLIMIT_DEFAULT "3"

#endif
