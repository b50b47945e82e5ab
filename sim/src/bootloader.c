/* The bootloader model over a U-Boot env file (see bootloader.h).
 *
 * The env is created here in U-Boot's single-copy format (CRC32 of the data
 * area, then the data) and from then on read and written only through
 * libubootenv, as the agent and fw_printenv/fw_setenv do, so the three agree
 * on every byte. As in the agent's driver: when libuboot_open() fails (-ENODATA
 * on a bad CRC) its context holds an empty env, which must never be stored.
 *
 * Choices where U-Boot's boot.scr leaves room (documented in the header):
 * boot_part "B" or "b" is slot B, anything else (unset too) slot A, as a
 * script testing `"${boot_part}" = "B"` does; an unset or unparsable bootcount
 * counts as 0; an unset or zero bootlimit disables the fallback, as in
 * U-Boot's own bootcount_limit. */
#include "otasim/bootloader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libuboot.h>

#include "ota/abboot.h"
#include "ota/crypto.h"
#include "ota/fsutil.h"

#define DEFAULT_MAX_BOOTS 16
#define CORRUPT_OFFSET    8 /* inside the data area, with or without a flags byte */

const char *const otasim_boot_outcome_names[OTASIM_BOOT_OUTCOME_MAX] = {
    [OTASIM_BOOT_OK] = "ok",
    [OTASIM_BOOT_FAILED] = "failed",
    [OTASIM_BOOT_ENV_BAD] = "env-bad",
    [OTASIM_BOOT_HUNG] = "hung",
    [OTASIM_BOOT_RECOVERY] = "recovery",
};

static const char *const slot_names[2] = {OTA_ENV_SLOT_A, OTA_ENV_SLOT_B};

/* CRC-32 (IEEE 802.3, reflected, as zlib and U-Boot compute it). */
static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* One env image of OTASIM_ENV_SIZE: CRC, then (redundant) a flags byte,
 * then the variables. */
static int env_image(uint8_t *img, int redundant, uint8_t flags, const char *const *vars, size_t n,
                     struct ota_err *err)
{
    size_t hdr = redundant ? 5 : 4, off = hdr;
    uint32_t crc;

    memset(img, 0, OTASIM_ENV_SIZE);
    for (size_t i = 0; i < n; i++) {
        const char *eq = vars[i] ? strchr(vars[i], '=') : NULL;
        size_t vlen = vars[i] ? strlen(vars[i]) : 0;

        if (!eq || eq == vars[i])
            return ota_err_set(err, EINVAL, "boot env: '%s' is not name=value",
                               vars[i] ? vars[i] : "(null)");
        /* The data ends with an empty string: keep room for its NUL. */
        if (off + vlen + 2 > OTASIM_ENV_SIZE)
            return ota_err_set(err, ENOSPC, "boot env: variables exceed %d bytes", OTASIM_ENV_SIZE);
        memcpy(img + off, vars[i], vlen + 1);
        off += vlen + 1;
    }
    if (redundant)
        img[4] = flags;
    crc = crc32_ieee(img + hdr, OTASIM_ENV_SIZE - hdr);
    for (int b = 0; b < 4; b++)
        img[b] = (uint8_t)(crc >> (8 * b));
    return 0;
}

int otasim_bootenv_create(const char *env_file, const char *env_config, const char *const *vars,
                          size_t n, struct ota_err *err)
{
    uint8_t *img = NULL;
    int r;

    if (!env_file || !env_config)
        return ota_err_set(err, EINVAL, "boot env: missing env file or config path");
    img = calloc(1, OTASIM_ENV_SIZE);
    if (!img)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = env_image(img, 0, 0, vars, n, err);
    if (r == 0)
        r = ota_fs_write_atomic(env_file, img, OTASIM_ENV_SIZE, 0644, err);
    if (r == 0)
        r = otasim_bootenv_config(env_file, env_config, err);
    free(img);
    return r;
}

int otasim_bootenv_create_redundant(const char *env_file, const char *env_config,
                                    const char *const *vars, size_t n, struct ota_err *err)
{
    char abs_env[PATH_MAX], text[2 * PATH_MAX + 64];
    uint8_t *img = NULL;
    int len, r;

    if (!env_file || !env_config)
        return ota_err_set(err, EINVAL, "boot env: missing env file or config path");
    img = calloc(2, OTASIM_ENV_SIZE);
    if (!img)
        return ota_err_set(err, ENOMEM, "out of memory");
    /* both copies hold the vars; the first is the newer (flags 1 > 0) */
    if ((r = env_image(img, 1, 1, vars, n, err)) < 0 ||
        (r = env_image(img + OTASIM_ENV_SIZE, 1, 0, vars, n, err)) < 0 ||
        (r = ota_fs_write_atomic(env_file, img, 2 * OTASIM_ENV_SIZE, 0644, err)) < 0)
        goto out;
    if (!realpath(env_file, abs_env)) {
        r = ota_err_set(err, errno, "boot env: cannot resolve %s: %s", env_file, strerror(errno));
        goto out;
    }
    len = snprintf(text, sizeof(text), "%s 0x0 0x%x\n%s 0x%x 0x%x\n", abs_env, OTASIM_ENV_SIZE,
                   abs_env, OTASIM_ENV_SIZE, OTASIM_ENV_SIZE);
    r = ota_fs_write_atomic(env_config, text, (size_t)len, 0644, err);
out:
    free(img);
    return r;
}

int otasim_bootenv_config(const char *env_file, const char *env_config, struct ota_err *err)
{
    char abs_env[PATH_MAX], line[PATH_MAX + 64];
    int len;

    /* The config names the file absolutely: tools may run from anywhere. */
    if (!realpath(env_file, abs_env))
        return ota_err_set(err, errno, "boot env: cannot resolve %s: %s", env_file,
                           strerror(errno));
    if (strpbrk(abs_env, " \t\n#"))
        return ota_err_set(err, EINVAL, "boot env: path %s cannot be named in fw_env.config",
                           abs_env);
    len = snprintf(line, sizeof(line), "%s 0x0 0x%x\n", abs_env, OTASIM_ENV_SIZE);
    return ota_fs_write_atomic(env_config, line, (size_t)len, 0644, err);
}

int otasim_bootenv_copy_ok(const char *path, int redundant, uint8_t *flags, struct ota_err *err)
{
    char *img = NULL;
    size_t n = 0, hdr = redundant ? 5 : 4;
    const uint8_t *u;
    uint32_t crc;
    int r;

    if ((r = ota_fs_read_all(path, 4 * OTASIM_ENV_SIZE, &img, &n, err)) < 0)
        return r;
    u = (const uint8_t *)img;
    r = 0;
    if (n >= OTASIM_ENV_SIZE) {
        crc = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
        r = crc == crc32_ieee(u + hdr, OTASIM_ENV_SIZE - hdr);
        if (flags && redundant)
            *flags = u[4];
    }
    free(img);
    return r;
}

/* A copy shorter than OTASIM_ENV_SIZE, padded with zeroes to it. */
static int pad_copy(const char *path, struct ota_err *err)
{
    struct stat st;
    int r = 0;

    if (stat(path, &st) < 0)
        return ota_err_set(err, errno, "boot env: %s: %s", path, strerror(errno));
    if (st.st_size < OTASIM_ENV_SIZE && truncate(path, OTASIM_ENV_SIZE) < 0)
        r = ota_err_set(err, errno, "boot env: cannot pad %s: %s", path, strerror(errno));
    return r;
}

int otasim_bootenv_config_redundant(const char *env_file, const char *redund_file,
                                    const char *env_config, struct ota_err *err)
{
    char abs[2][PATH_MAX], text[2 * PATH_MAX + 64];
    const char *f[2] = {env_file, redund_file};
    int len, r;

    if (!env_file || !redund_file || !env_config)
        return ota_err_set(err, EINVAL, "boot env: missing env file or config path");
    for (int i = 0; i < 2; i++) {
        if ((r = pad_copy(f[i], err)) < 0)
            return r;
        if (!realpath(f[i], abs[i]))
            return ota_err_set(err, errno, "boot env: cannot resolve %s: %s", f[i],
                               strerror(errno));
        if (strpbrk(abs[i], " \t\n#"))
            return ota_err_set(err, EINVAL, "boot env: path %s cannot be named in fw_env.config",
                               abs[i]);
    }
    len = snprintf(text, sizeof(text), "%s 0x0 0x%x\n%s 0x0 0x%x\n", abs[0], OTASIM_ENV_SIZE,
                   abs[1], OTASIM_ENV_SIZE);
    return ota_fs_write_atomic(env_config, text, (size_t)len, 0644, err);
}

/* A context with the env loaded; *ret_bad set instead when its CRC is bad. */
static int env_open(const char *env_config, struct uboot_ctx **ret, int *ret_bad,
                    struct ota_err *err)
{
    struct uboot_ctx *ctx = NULL;
    int r;

    if (!env_config)
        return ota_err_set(err, EINVAL, "boot env: no fw_env.config given");
    r = libuboot_initialize(&ctx, NULL);
    if (r < 0)
        return ota_err_set(err, -r, "libubootenv: cannot initialize: %s", strerror(-r));
    r = libuboot_read_config(ctx, env_config);
    if (r < 0) {
        r = ota_err_set(err, EINVAL, "boot env: config %s cannot be read or parsed", env_config);
        goto out;
    }
    r = libuboot_open(ctx);
    if (r == -ENODATA) {
        libuboot_close(ctx);
        *ret_bad = 1;
        r = 0;
        goto out;
    }
    if (r < 0) {
        libuboot_close(ctx);
        r = ota_err_set(err, -r, "boot env: cannot read the env of %s: %s", env_config,
                        strerror(-r));
        goto out;
    }
    *ret_bad = 0;
    *ret = ctx;
    return 0;
out:
    libuboot_exit(ctx);
    return r;
}

static void env_done(struct uboot_ctx *ctx)
{
    if (!ctx)
        return;
    libuboot_close(ctx);
    libuboot_exit(ctx);
}

int otasim_bootenv_get(const char *env_config, const char *name, char *buf, size_t cap,
                       struct ota_err *err)
{
    struct uboot_ctx *ctx = NULL;
    char *v = NULL;
    int bad = 0, r;

    if (!name || !*name)
        return ota_err_set(err, EINVAL, "boot env: empty variable name");
    r = env_open(env_config, &ctx, &bad, err);
    if (r < 0)
        return r;
    if (bad)
        return ota_err_set(err, EBADMSG, "boot env of %s is corrupt: bad CRC", env_config);
    v = libuboot_get_env(ctx, name);
    if (!v)
        r = ota_err_set(err, ENOENT, "boot env: %s is not set", name);
    else if (strlen(v) >= cap)
        r = ota_err_set(err, ERANGE, "boot env: %s is longer than %zu bytes", name,
                        cap ? cap - 1 : 0);
    else
        memcpy(buf, v, strlen(v) + 1);
    free(v);
    env_done(ctx);
    return r;
}

int otasim_bootenv_set(const char *env_config, const char *name, const char *value,
                       struct ota_err *err)
{
    struct uboot_ctx *ctx = NULL;
    int bad = 0, r;

    if (!name || !*name)
        return ota_err_set(err, EINVAL, "boot env: empty variable name");
    r = env_open(env_config, &ctx, &bad, err);
    if (r < 0)
        return r;
    /* an unreadable env holds nothing: storing it would lose every variable */
    if (bad)
        return ota_err_set(err, EBADMSG, "boot env of %s is corrupt: bad CRC", env_config);
    r = libuboot_set_env(ctx, name, value && *value ? value : NULL);
    if (r == 0)
        r = libuboot_env_store(ctx);
    if (r < 0)
        r = ota_err_set(err, -r, "boot env: cannot set %s in %s: %s", name, env_config,
                        strerror(-r));
    env_done(ctx);
    return r;
}

int otasim_bootenv_corrupt(const char *env_file, struct ota_err *err)
{
    uint8_t b;
    int fd, r = 0;

    fd = open(env_file, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", env_file, strerror(errno));
    if (pread(fd, &b, 1, CORRUPT_OFFSET) != 1) {
        r = ota_err_set(err, EIO, "cannot read %s", env_file);
        goto out;
    }
    b ^= 0x01;
    if (pwrite(fd, &b, 1, CORRUPT_OFFSET) != 1 || fsync(fd) < 0)
        r = ota_err_set(err, EIO, "cannot write %s: %s", env_file, strerror(errno));
out:
    close(fd);
    return r;
}

/* An unset or unparsable number reads as 0. */
static unsigned long env_ulong(struct uboot_ctx *ctx, const char *name)
{
    char *v = libuboot_get_env(ctx, name), *end = NULL;
    unsigned long n = 0;

    if (v) {
        n = strtoul(v, &end, 10);
        if (end == v)
            n = 0;
    }
    free(v);
    return n;
}

static int env_slot(struct uboot_ctx *ctx)
{
    char *v = libuboot_get_env(ctx, OTA_ENV_BOOT_PART);
    int slot = v && strcasecmp(v, OTA_ENV_SLOT_B) == 0;

    free(v);
    return slot;
}

int otasim_image_identify(const struct otasim_bootcfg *cfg, int slot, size_t *ret,
                          struct ota_err *err)
{
    uint8_t(*digest)[OTA_SHA256_LEN] = NULL;
    int *have = NULL;
    const char *part;
    int r = 0;

    if (!cfg || slot < 0 || slot > 1 || !cfg->part[slot])
        return ota_err_set(err, EINVAL, "bootloader: no partition for slot %d", slot);
    part = cfg->part[slot];
    if (cfg->n_images == 0)
        return ota_err_set(err, ENOENT, "%s holds no known image (none listed)", part);
    digest = calloc(cfg->n_images, sizeof(*digest));
    have = calloc(cfg->n_images, sizeof(*have));
    if (!digest || !have) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->n_images; i++) {
        const struct otasim_image *im = &cfg->images[i];
        struct ota_err e = {0};
        size_t j;

        /* Images of one size share a hash of the partition. */
        for (j = 0; j < i && cfg->images[j].size != im->size; j++)
            ;
        if (j < i) {
            have[i] = have[j];
            memcpy(digest[i], digest[j], OTA_SHA256_LEN);
        } else {
            r = ota_sha256_file(part, im->size, digest[i], &e);
            if (r == 0)
                have[i] = 1;
            else if (r != -ENODATA && r != -ENOENT) {
                r = ota_err_set(err, -r, "%s", e.reason);
                goto out;
            }
            r = 0;
        }
        if (have[i] && memcmp(digest[i], im->sha256, OTA_SHA256_LEN) == 0) {
            *ret = i;
            goto out;
        }
    }
    r = ota_err_set(err, ENOENT, "%s holds no known image", part);
out:
    free(digest);
    free(have);
    return r;
}

int otasim_boot_once(const struct otasim_bootcfg *cfg, struct otasim_boot_result *ret,
                     struct ota_err *err)
{
    struct otasim_boot_result res = {.outcome = OTASIM_BOOT_FAILED};
    struct uboot_ctx *ctx = NULL;
    struct ota_err e = {0};
    struct ota_abboot_env ab;
    enum ota_abboot_boot what;
    int bad = 0, slot, save, r;
    size_t idx;

    if (!cfg)
        return ota_err_set(err, EINVAL, "bootloader: no config");
    r = env_open(cfg->env_config, &ctx, &bad, err);
    if (r < 0)
        return r;
    if (bad) {
        res.outcome = OTASIM_BOOT_ENV_BAD;
        res.slot = -1;
        goto done;
    }
    ab.slot = env_slot(ctx);
    ab.upgrade = env_ulong(ctx, OTA_ENV_UPGRADE_AVAILABLE) == 1;
    ab.count = env_ulong(ctx, OTA_ENV_BOOTCOUNT);
    ab.limit = env_ulong(ctx, OTA_ENV_BOOTLIMIT);
    what = ota_abboot_step(&ab, &save);
    slot = ab.slot;
    if (save) {
        char num[32];

        r = 0;
        if (what == OTA_ABBOOT_FALLBACK) {
            res.fell_back = 1;
            r = libuboot_set_env(ctx, OTA_ENV_BOOT_PART, slot_names[slot]);
            if (r == 0)
                r = libuboot_set_env(ctx, OTA_ENV_UPGRADE_AVAILABLE, "0");
            /* bootcount stays past the limit, as images/boot.cmd (and U-Boot's
             * own bootcount) leaves it: the agent clears it when it reports;
             * until then the fallback slot's boots count on (recovery) */
        }
        snprintf(num, sizeof(num), "%lu", ab.count);
        if (r == 0)
            r = libuboot_set_env(ctx, OTA_ENV_BOOTCOUNT, num);
        if (r < 0) {
            r = ota_err_set(err, -r, "boot env: cannot set a variable: %s", strerror(-r));
            goto out;
        }
        r = libuboot_env_store(ctx);
        if (r != 0) {
            int code = r < -1 ? -r : EIO; /* -1: a short write */
            r = ota_err_set(err, code, "boot env of %s: cannot write: %s", cfg->env_config,
                            strerror(code));
            goto out;
        }
    }
    if (what == OTA_ABBOOT_RECOVERY) {
        /* the kernel boots with ota.recovery=1: no slot is mounted */
        res.outcome = OTASIM_BOOT_RECOVERY;
        res.slot = slot;
        r = 0;
        goto done;
    }
    res.slot = slot;
    r = otasim_image_identify(cfg, slot, &idx, &e);
    if (r == 0 && cfg->images[idx].bootable) {
        const struct otasim_image *im = &cfg->images[idx];
        int n = cfg->image_boots ? ++cfg->image_boots[idx] : 1;

        /* the kernel starts: it hangs on its first `hang` boots */
        res.outcome = im->hang < 0 || (im->hang > 0 && (!cfg->image_boots || n <= im->hang))
                          ? OTASIM_BOOT_HUNG
                          : OTASIM_BOOT_OK;
        snprintf(res.version, sizeof(res.version), "%s", im->version);
    } else if (r < 0 && r != -ENOENT) {
        r = ota_err_set(err, -r, "%s", e.reason);
        goto out;
    }
    r = 0;
done:
    res.boots = 1;
    *ret = res;
out:
    env_done(ctx);
    return r;
}

int otasim_boot(const struct otasim_bootcfg *cfg, struct otasim_boot_result *ret,
                struct ota_err *err)
{
    struct otasim_boot_result one;
    int max, fell_back = 0, resets = 0, r;
    int64_t hung_ms = 0;

    if (!cfg)
        return ota_err_set(err, EINVAL, "bootloader: no config");
    max = cfg->max_boots > 0 ? cfg->max_boots : DEFAULT_MAX_BOOTS;
    for (int i = 1;; i++) {
        int reset;

        r = otasim_boot_once(cfg, &one, err);
        if (r < 0)
            return r;
        fell_back |= one.fell_back;
        /* a kernel that panics resets the board at once; one that hangs only
         * when the watchdog ends it */
        reset = one.outcome == OTASIM_BOOT_FAILED ||
                (one.outcome == OTASIM_BOOT_HUNG && !cfg->no_watchdog);
        if (!reset || i >= max) {
            one.boots = i;
            one.fell_back = fell_back;
            one.watchdog_resets = resets;
            one.hung_ms = hung_ms;
            *ret = one;
            return 0;
        }
        if (one.outcome == OTASIM_BOOT_HUNG) {
            resets++;
            hung_ms += cfg->watchdog_ms > 0 ? cfg->watchdog_ms : OTASIM_WATCHDOG_MS_DEFAULT;
        }
    }
}
