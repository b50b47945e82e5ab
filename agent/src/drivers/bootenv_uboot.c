/* Boot env over libubootenv, the library behind fw_printenv/fw_setenv, so the
 * agent, the tools and U-Boot agree on the format (CRC, redundant copies and
 * their flags byte).
 *
 * Every op loads the env from the device again: U-Boot, fw_setenv or an
 * operator may change it while the agent runs, and a set() must not write
 * back a stale copy over their change. The env is 8-64 KiB: cheap to read.
 *
 * A bad CRC: libubootenv 0.3.2's libuboot_open() returns -ENODATA when no
 * copy has a valid CRC (with a redundant env it silently falls back to the
 * copy that is still valid, as U-Boot does). Its context then holds an empty
 * env, and a store would write that over the device, dropping bootcmd and
 * every other variable: set() therefore refuses a corrupt env as get() does,
 * with -EBADMSG. open() succeeds on a corrupt env so that the agent can start
 * and report it; it fails when the config or the device cannot be read. */
#include "ota/abboot.h"
#include "ota/drivers.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libuboot.h>

#include "ota/faultpoint.h"

struct ota_ubootenv {
    struct uboot_ctx *ctx;
    char config[PATH_MAX];
    char devices[600]; /* the env device(s) named in the config, for reasons */
};

/* "dev1" or "dev1 and dev2" from the config's non-comment lines. */
static void read_devices(struct ota_ubootenv *e)
{
    FILE *f = fopen(e->config, "re");
    char line[512];
    int n = 0;

    snprintf(e->devices, sizeof(e->devices), "the env device");
    if (!f)
        return;
    while (n < 2 && fgets(line, sizeof(line), f)) {
        char dev[256];
        if (sscanf(line, " %255s", dev) != 1 || dev[0] == '#')
            continue;
        if (n == 0)
            snprintf(e->devices, sizeof(e->devices), "%s", dev);
        else {
            size_t len = strlen(e->devices);
            snprintf(e->devices + len, sizeof(e->devices) - len, " and %s", dev);
        }
        n++;
    }
    fclose(f);
}

/* Loads the env into the context; the caller closes it with libuboot_close. */
static int load(struct ota_ubootenv *e, struct ota_err *err)
{
    int r = libuboot_open(e->ctx);

    if (r == 0)
        return 0;
    libuboot_close(e->ctx);
    if (r == -ENODATA)
        return ota_err_set(err, EBADMSG, "U-Boot env in %s is corrupt: bad CRC, no valid copy",
                           e->devices);
    return ota_err_set(err, r < 0 ? -r : EIO, "cannot read U-Boot env from %s (config %s): %s",
                       e->devices, e->config, strerror(r < 0 ? -r : EIO));
}

int ota_ubootenv_open(const char *config_path, struct ota_ubootenv **ret, struct ota_err *err)
{
    struct ota_ubootenv *e = NULL;
    struct ota_err probe = {0};
    int r;

    if (!config_path || strlen(config_path) >= sizeof(e->config))
        return ota_err_set(err, ENAMETOOLONG, "bad U-Boot env config path");
    e = calloc(1, sizeof(*e));
    if (!e)
        return ota_err_set(err, ENOMEM, "out of memory");
    snprintf(e->config, sizeof(e->config), "%s", config_path);
    read_devices(e);

    r = libuboot_initialize(&e->ctx, NULL);
    if (r < 0) {
        e->ctx = NULL;
        r = ota_err_set(err, -r, "libubootenv: cannot initialize: %s", strerror(-r));
        goto out;
    }
    r = libuboot_read_config(e->ctx, e->config);
    if (r < 0) {
        r = ota_err_set(err, EINVAL, "U-Boot env config %s cannot be read or parsed", e->config);
        goto out;
    }
    /* Fail early on a device that cannot be read; a bad CRC is the ops'
     * business (they say -EBADMSG), not a reason not to start. */
    r = load(e, &probe);
    if (r == 0)
        libuboot_close(e->ctx);
    else if (r == -EBADMSG)
        r = 0;
    else
        r = ota_err_set(err, -r, "%s", probe.reason);
out:
    if (r < 0) {
        ota_ubootenv_close(e);
        return r;
    }
    *ret = e;
    return 0;
}

void ota_ubootenv_close(struct ota_ubootenv *e)
{
    if (!e)
        return;
    if (e->ctx)
        libuboot_exit(e->ctx);
    free(e);
}

static int env_get(void *ctx, const char *name, char *buf, size_t cap, struct ota_err *err)
{
    struct ota_ubootenv *e = ctx;
    char *v;
    size_t n;
    int r;

    if (!name || !*name)
        return ota_err_set(err, EINVAL, "U-Boot env: empty variable name");
    r = load(e, err);
    if (r < 0)
        return r;
    /* NULL means unset (or out of memory, which the library does not tell). */
    v = libuboot_get_env(e->ctx, name);
    libuboot_close(e->ctx);
    if (!v)
        return ota_err_set(err, ENOENT, "U-Boot env: %s is not set", name);
    n = strlen(v);
    if (n >= cap) {
        r = ota_err_set(err, ERANGE, "U-Boot env: %s is longer than %zu bytes", name,
                        cap ? cap - 1 : 0);
    } else {
        memcpy(buf, v, n + 1);
    }
    free(v);
    return r;
}

/* values[i] NULL removes names[i]. Nothing is written when a name is refused. */
static int env_set(void *ctx, const char *const *names, const char *const *values, size_t n,
                   struct ota_err *err)
{
    struct ota_ubootenv *e = ctx;
    int r;

    if (n == 0)
        return 0;
    r = load(e, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (!names[i]) {
            r = ota_err_set(err, EINVAL, "U-Boot env: missing variable name");
            goto out;
        }
        r = libuboot_set_env(e->ctx, names[i], values[i]);
        if (r < 0) {
            r = ota_err_set(err, -r, "U-Boot env: cannot set %s: %s", names[i], strerror(-r));
            goto out;
        }
    }
    /* One write; with a redundant env it goes to the older copy and flips the
     * flags, so a cut write leaves the previous env valid. */
    OTA_FAULT_POINT("bootenv.before_save");
    r = libuboot_env_store(e->ctx);
    if (r != 0) {
        int code = r < -1 ? -r : EIO; /* -1: a short write */
        r = ota_err_set(err, code, "U-Boot env: cannot write %s: %s", e->devices, strerror(code));
        goto out;
    }
    OTA_FAULT_POINT("bootenv.after_save");
out:
    libuboot_close(e->ctx);
    return r;
}

const struct ota_bootenv_ops ota_ubootenv_ops = {
    .get = env_get,
    .set = env_set,
};
