/* The bootloader model: U-Boot's A/B choice with bootcount, over a boot env
 * file in U-Boot's format (CRC32 + NUL-separated "name=value" pairs; the real
 * fw_printenv/fw_setenv read it with the fw_env.config written beside it),
 * read and written through libubootenv, the library the agent uses.
 *
 * One boot (otasim_boot_once), as images/boot.cmd does it (the rule is
 * ota_abboot_step of ota/abboot.h, shared with blkcheck.c):
 *   1. an env that cannot be read (bad CRC) -> BOOT_ENV_BAD, nothing boots
 *      (U-Boot would fall back to its built-in default env: the model stops,
 *      which the invariant checker reports);
 *   2. if upgrade_available=1: bootcount += 1, saved;
 *      if then bootcount > bootlimit: boot_part = the other slot,
 *      upgrade_available=0, saved (the fallback; bootcount stays past the
 *      limit, as images/boot.cmd leaves it: the agent clears it);
 *      else, if bootcount > bootlimit (a fallback the agent has not settled):
 *      bootcount += 1, saved, and past 2 x bootlimit -> BOOT_RECOVERY (both
 *      slots failed: recovery mode, the kernel with ota.recovery=1, which
 *      mounts no slot and waits for a reflash; once there nothing is written
 *      and every boot is RECOVERY again);
 *   3. the image in the partition of boot_part boots if it is one of the
 *      known bootable images (its first size bytes hash to one listed in
 *      cfg->images with bootable=1); a half-written or broken image does not
 *      (BOOT_FAILED: the kernel panics and the board resets at once: the next
 *      boot_once counts again). An image whose kernel hangs (hang != 0) is
 *      BOOT_HUNG: it neither boots nor resets; with the board's watchdog on
 *      (the default: the Pi's bcm2835 watchdog is armed before the kernel) it
 *      resets after watchdog_ms, and the next boot counts again.
 * otasim_boot() repeats boot_once until something boots, the device is in
 * recovery mode or hung for good (HUNG without watchdog), or max_boots.
 * Values as a boot.scr reads them: boot_part "B" (any case) is slot B, else
 * A (unset too); an unset bootcount is 0; an unset or 0 bootlimit never falls
 * back (U-Boot's rule). A fallback writes boot_part "A" or "B".
 */
#ifndef OTASIM_BOOTLOADER_H
#define OTASIM_BOOTLOADER_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASIM_ENV_SIZE 0x4000
/* The redundant env's second file on the boot FAT (U-Boot's
 * CONFIG_ENV_FAT_FILE_REDUND, images/uboot-rpi-redund.config). */
#define OTASIM_ENV_REDUND_FILE "uboot-redund.env"

struct otasim_image {
    char version[32];
    uint8_t sha256[32]; /* of the first size bytes of the partition */
    uint64_t size;
    int bootable;
    int unhealthy; /* boots, but its service never comes up (variant unhealthy) */
    int hang;      /* its kernel hangs on its first `hang` boots (-1: on every boot; 0: never);
                      the boots are counted in the bootcfg's image_boots */
};

struct otasim_bootcfg {
    const char *env_config; /* fw_env.config naming the env file */
    const char *part[2];    /* rootA, rootB partition files */
    const struct otasim_image *images;
    size_t n_images;
    int max_boots;    /* otasim_boot: give up after this many (default 16) */
    int no_watchdog;  /* 1: no watchdog: a hung kernel stays hung (0: it resets) */
    int watchdog_ms;  /* simulated time from a hang to the watchdog's reset (0: default) */
    int *image_boots; /* n_images counters: the boots that started each image's kernel (the
                         model counts them; NULL: not counted, a `hang` > 0 then hangs always) */
};

/* The watchdog's timeout when bootcfg.watchdog_ms is 0: the longest the
 * bcm2835 watchdog allows (16-bit ticks of 1/65536 s, about 16 s). */
#define OTASIM_WATCHDOG_MS_DEFAULT 15000

enum otasim_boot_outcome {
    OTASIM_BOOT_OK,       /* slot booted */
    OTASIM_BOOT_FAILED,   /* the image did not boot (reset) */
    OTASIM_BOOT_ENV_BAD,  /* env unreadable */
    OTASIM_BOOT_HUNG,     /* the kernel hangs (otasim_boot: for good, no watchdog) */
    OTASIM_BOOT_RECOVERY, /* both slots failed: recovery mode, waiting for a reflash */
    OTASIM_BOOT_OUTCOME_MAX
};
extern const char *const otasim_boot_outcome_names[OTASIM_BOOT_OUTCOME_MAX];

struct otasim_boot_result {
    enum otasim_boot_outcome outcome;
    int slot;            /* 0 = A, 1 = B: the slot tried (last); -1 if ENV_BAD */
    int fell_back;       /* this boot (otasim_boot: any of its boots) switched slots */
    int boots;           /* boot_once calls made (otasim_boot; 1 for boot_once) */
    char version[32];    /* version of the image that booted (HUNG: that hung) */
    int watchdog_resets; /* otasim_boot: hangs the watchdog ended */
    int64_t hung_ms;     /* otasim_boot: simulated time spent hung before those resets */
};

/* Writes a fresh env file (size OTASIM_ENV_SIZE, one copy) holding vars
 * ("name=value" strings) and the fw_env.config that names it. */
int otasim_bootenv_create(const char *env_file, const char *env_config, const char *const *vars,
                          size_t n, struct ota_err *err) OTA_MUST;
/* The same as U-Boot's redundant env: two copies of OTASIM_ENV_SIZE in
 * env_file (offsets 0 and OTASIM_ENV_SIZE, each CRC + flags byte + data;
 * the first current), and an fw_env.config with two lines. */
int otasim_bootenv_create_redundant(const char *env_file, const char *env_config,
                                    const char *const *vars, size_t n,
                                    struct ota_err *err) OTA_MUST;
/* Reads one variable (-ENOENT if unset, -EBADMSG if the env is unreadable). */
int otasim_bootenv_get(const char *env_config, const char *name, char *buf, size_t cap,
                       struct ota_err *err) OTA_MUST;
/* Writes the fw_env.config that names an existing env file (one copy). */
int otasim_bootenv_config(const char *env_file, const char *env_config,
                          struct ota_err *err) OTA_MUST;
/* Writes the fw_env.config of U-Boot's redundant env in two files (as
 * CONFIG_ENV_FAT_FILE_REDUND keeps it: uboot.env and uboot-redund.env, each
 * one copy of OTASIM_ENV_SIZE in the redundant format, offset 0). A file
 * shorter than OTASIM_ENV_SIZE (a torn or truncated copy) is padded with
 * zeroes first, so that libubootenv reads it as a copy with a bad CRC, as
 * U-Boot treats a copy it cannot read: the other copy is then current. */
int otasim_bootenv_config_redundant(const char *env_file, const char *redund_file,
                                    const char *env_config, struct ota_err *err) OTA_MUST;
/* 1 if the env copy in the first OTASIM_ENV_SIZE bytes of path has a good
 * CRC (redundant: the format with a flags byte, whose value goes to *flags
 * when flags is given), 0 if not or shorter, -errno if it cannot be read. */
int otasim_bootenv_copy_ok(const char *path, int redundant, uint8_t *flags,
                           struct ota_err *err) OTA_MUST;
/* Sets one variable (value NULL or "": unsets it) and stores the env;
 * -EBADMSG (nothing written) if the env is unreadable. */
int otasim_bootenv_set(const char *env_config, const char *name, const char *value,
                       struct ota_err *err) OTA_MUST;
/* Flips one byte of the env's data, so its CRC no longer matches. */
int otasim_bootenv_corrupt(const char *env_file, struct ota_err *err) OTA_MUST;

/* An env with a bad CRC is an outcome (ENV_BAD, return 0, nothing written);
 * -errno only when the config, env file or a partition cannot be read, or
 * the env cannot be written. */
int otasim_boot_once(const struct otasim_bootcfg *cfg, struct otasim_boot_result *ret,
                     struct ota_err *err) OTA_MUST;
/* Stops at OK, ENV_BAD, RECOVERY or (no watchdog) HUNG; FAILED or HUNG
 * after max_boots boots that did not come up. */
int otasim_boot(const struct otasim_bootcfg *cfg, struct otasim_boot_result *ret,
                struct ota_err *err) OTA_MUST;

/* Which known image (index into cfg->images) the partition holds, -ENOENT if
 * none. */
int otasim_image_identify(const struct otasim_bootcfg *cfg, int slot, size_t *ret,
                          struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
