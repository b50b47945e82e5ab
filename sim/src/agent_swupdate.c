/* The swupdate adapter (otasim/agent.h, docs/agents.md): Debian 12's
 * swupdate with its suricatta hawkBit client, polling the trial server's DDI
 * face through the device's proxy, writing the device's slot files and its
 * U-Boot env through libubootenv; and seed 003's device side around it: the
 * health check that commits a trial boot with fw_setenv
 * (sim/swupdate/health-commit) and the confirmation (-c 2/-c 3) on the next
 * start. One pass is `ota-sim swupdate-pass CONFIG` (cli_swupdate.c), the
 * driver: it runs those programs with the interposer loaded into swupdate
 * and fw_setenv only, and tells the states it sees as OTA-STATE lines.
 *
 * provision puts the trial's release on the server as a .swu (ota-pack swu;
 * sw-description names the slots relative to the device's root, where
 * swupdate runs), enrolls the device (its TargetToken) and starts a rollout
 * of that release for it: DDI actions come only from rollouts. Its durable
 * state is the env (no database): status is read from the env and the slot
 * it selects. */
#include "otasim/agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/device.h"
#include "otasim/proc.h"
#include "otasim/sim.h"

#define SW_BOARD "ota:1.0"

static const char *const sw_states[] = {"IDLE",         "CHECKING",  "DOWNLOADING",  "INSTALLING",
                                        "SWITCHING",    "REBOOTING", "HEALTH_CHECK", "COMMITTING",
                                        "ROLLING_BACK", NULL};

/* The CMS signers (a trusted one, a rogue one) as swupdate -k takes them:
 * self-signed, purpose emailProtection (docs/swupdate.md). Made once in the
 * work dir. */
static int signers(const struct otasim_tools *t, char cert[2][PATH_MAX], char key[2][PATH_MAX],
                   struct ota_err *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX + 32], log[PATH_MAX + 32];
    int r;

    snprintf(dir, sizeof(dir), "%s/cache/swu-signers", t->work);
    for (int i = 0; i < 2; i++) {
        snprintf(cert[i], PATH_MAX, "%s/%s.crt", dir, i ? "rogue" : "signer");
        snprintf(key[i], PATH_MAX, "%s/%s.key", dir, i ? "rogue" : "signer");
    }
    if (access(cert[1], F_OK) == 0)
        return 0;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dir, (int)getpid());
    snprintf(log, sizeof(log), "%s/openssl.log", tmp);
    if ((r = ota_fs_mkdirs(tmp, err)) < 0)
        return r;
    for (int i = 0; i < 2; i++) {
        char c[PATH_MAX + 48], k[PATH_MAX + 48], subj[32];
        snprintf(c, sizeof(c), "%s/%s.crt", tmp, i ? "rogue" : "signer");
        snprintf(k, sizeof(k), "%s/%s.key", tmp, i ? "rogue" : "signer");
        snprintf(subj, sizeof(subj), "/CN=otasim-%s", i ? "rogue" : "signer");
        const char *argv[] = {"openssl",  "req",    "-x509",   "-newkey",
                              "rsa:2048", "-nodes", "-keyout", k,
                              "-out",     c,        "-days",   "3650",
                              "-subj",    subj,     "-addext", "extendedKeyUsage=emailProtection",
                              NULL};
        if ((r = otasim_run_checked(argv, log, err)) < 0)
            return r;
    }
    if (rename(tmp, dir) < 0 && errno != ENOTEMPTY && errno != EEXIST)
        return ota_err_set(err, errno, "rename %s: %s", tmp, strerror(errno));
    ota_ignore(ota_fs_remove_tree(tmp, NULL));
    return 0;
}

static int copy_file(const char *src, const char *dst, struct ota_err *err)
{
    char *text = NULL;
    size_t n = 0;
    int r = ota_fs_read_all(src, 1 << 20, &text, &n, err);

    if (r == 0)
        r = ota_fs_write_atomic(dst, text, n, 0644, err);
    free(text);
    return r;
}

/* The device's own /etc for swupdate (bind-mounted on /etc in its mount
 * namespace by the driver): what swupdate and libc read, the board's
 * hwrevision, and fw_env.config naming the device's env. */
static int private_etc(struct otasim_device *d, const char *etc, struct ota_err *err)
{
    static const char *const keep[] = {"passwd",    "group",     "nsswitch.conf", "hosts",
                                       "localtime", "host.conf", "resolv.conf"};
    char src[64], dst[PATH_MAX + 32];
    int r;

    if ((r = ota_fs_mkdirs(etc, err)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        snprintf(src, sizeof(src), "/etc/%s", keep[i]);
        snprintf(dst, sizeof(dst), "%s/%s", etc, keep[i]);
        if (access(src, R_OK) == 0 && (r = copy_file(src, dst, err)) < 0)
            return r;
    }
    snprintf(dst, sizeof(dst), "%s/hwrevision", etc);
    if ((r = ota_fs_write_atomic(dst, "ota 1.0\n", 8, 0644, err)) < 0)
        return r;
    snprintf(dst, sizeof(dst), "%s/fw_env.config", etc);
    return copy_file(d->env_config, dst, err);
}

int otasim_swupdate_add_release(const struct otasim_tools *t, const struct otasim_server *srv,
                                const struct otasim_scenario *sc, const struct otasim_built *built,
                                const char *dir, const char *id, struct ota_err *err)
{
    const struct otasim_release *tgt = otasim_scenario_target(sc);
    char cert[2][PATH_MAX], key[2][PATH_MAX], swu[PATH_MAX + 16], log[PATH_MAX + 16];
    int r;

    if (!tgt)
        return ota_err_set(err, EINVAL, "swupdate: the scenario offers no release");
    if ((r = signers(t, cert, key, err)) < 0 || (r = ota_fs_mkdirs(dir, err)) < 0)
        return r;
    snprintf(log, sizeof(log), "%s/publish.log", dir);
    snprintf(swu, sizeof(swu), "%s/os.swu", dir);
    {
        const struct otasim_built *b = &built[tgt - sc->rel];
        const char *argv[] = {
            t->pack, "swu", "--cert", cert[tgt->bad_signature ? 1 : 0], "--key",
            key[tgt->bad_signature ? 1 : 0], "--kind", "rootfs", "--image", b->payload, "--name",
            "rootfs", "--version", tgt->version, "--hw-compat", "1.0",
            /* relative: swupdate runs in the device's root, so one .swu
             * serves every device (docs/agents.md) */
            "--slot-a-device", "disks/rootA", "--slot-b-device", "disks/rootB", "--out", swu, NULL};
        if ((r = otasim_run_checked(argv, log, err)) < 0)
            return r;
    }
    {
        const char *argv[] = {t->server,
                              "release",
                              "add",
                              swu,
                              "--id",
                              id,
                              "--publish",
                              "--server",
                              srv->url,
                              "--admin-token",
                              srv->admin_token,
                              NULL};
        return otasim_run_checked(argv, log, err);
    }
}

/* Enrolls the device (*ret_token: its TargetToken). A trial of its own: in
 * a group of its own, the target as a .swu, and a rollout of it for the
 * group. A device of a mix (tr->group set): in the mix's group; its .swu
 * and rollout are the runner's (one for every device of the mix). */
static int publish(struct otasim_device *d, const char *base, char *ret_token, size_t cap,
                   struct ota_err *err)
{
    struct otasim_trial *tr = d->tr;
    const struct otasim_release *tgt = otasim_scenario_target(tr->sc);
    char rel[96], rid[32];
    json_t *o;
    uint32_t h;
    int r;

    if ((r = otasim_server_enroll_device(tr->srv, tr->device_id, tr->sc->device_type,
                                         tr->group[0] ? tr->group : tr->device_id, ret_token, cap,
                                         err)) < 0)
        return r;
    if (tr->group[0] || !tgt || !tgt->publish)
        return 0; /* the mix's rollout, or nothing offered: no action until one comes */
    h = otasim_hash32(tr->device_id) ^ (uint32_t)otasim_wall_ms();
    snprintf(rel, sizeof(rel), "swu-%08x", h);
    snprintf(rid, sizeof(rid), "sw-%08x", h);
    if ((r = otasim_swupdate_add_release(d->tools, tr->srv, tr->sc, tr->built, base, rel, err)) < 0)
        return r;
    o = json_pack("{s:s, s:s, s:s, s:{s:s}}", "id", rid, "release_id", rel, "strategy", "immediate",
                  "filters", "group", tr->device_id);
    if (!o)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = otasim_server_rollout_start(tr->srv, o, err);
    json_decref(o);
    ota_strlcpy(d->rollout_id, rid, sizeof(d->rollout_id));
    return r;
}

static const char *health_commit_path(void)
{
    const char *p = getenv("OTASIM_HEALTH_COMMIT");
    return p && *p ? p : OTA_SOURCE_DIR "/sim/swupdate/health-commit";
}

static int sw_provision(struct otasim_device *d, struct ota_err *err)
{
    const struct otasim_scenario *sc = d->tr->sc;
    char base[PATH_MAX + 16], p[PATH_MAX + 48], token[128] = "";
    int r;

    snprintf(base, sizeof(base), "%s/swupdate", d->tr->dir);
    snprintf(p, sizeof(p), "%s/tmp", base);
    if ((r = ota_fs_mkdirs(p, err)) < 0)
        return r;
    snprintf(p, sizeof(p), "%s/bin", base);
    if ((r = ota_fs_mkdirs(p, err)) < 0)
        return r;
    /* fw_setenv of the health commit, with the interposer loaded in it (not
     * in the script's sh: the interposer's constructor drops LD_PRELOAD) */
    snprintf(p, sizeof(p), "%s/bin/fw_setenv", base);
    {
        static const char wrap[] = "#!/bin/sh\nLD_PRELOAD=\"$OTASIM_PRELOAD\" exec "
                                   "/usr/bin/fw_setenv \"$@\"\n";
        if ((r = ota_fs_write_atomic(p, wrap, sizeof(wrap) - 1, 0755, err)) < 0)
            return r;
    }
    snprintf(p, sizeof(p), "%s/etc", base);
    if ((r = private_etc(d, p, err)) < 0)
        return r;
    if (access(health_commit_path(), X_OK) != 0)
        return ota_err_set(err, ENOENT, "%s: not found (OTASIM_HEALTH_COMMIT)",
                           health_commit_path());
    if ((r = publish(d, base, token, sizeof(token), err)) < 0)
        return r;
    {
        char etc[PATH_MAX + 32], tmp[PATH_MAX + 32], bin[PATH_MAX + 32], cert[PATH_MAX + 48];
        char url[64], health[64], booted[PATH_MAX + 32], reboot[PATH_MAX + 32], *text = NULL;
        const char *sw = getenv("OTASIM_SWUPDATE");
        json_t *o;
        snprintf(etc, sizeof(etc), "%s/etc", base);
        snprintf(tmp, sizeof(tmp), "%s/tmp", base);
        snprintf(bin, sizeof(bin), "%s/bin", base);
        snprintf(cert, sizeof(cert), "%s/cache/swu-signers/signer.crt", d->tools->work);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", otasim_proxy_port(d->proxy));
        snprintf(health, sizeof(health), "http://127.0.0.1:%d/health", d->app_port);
        snprintf(booted, sizeof(booted), "%s/run/booted", d->root);
        snprintf(reboot, sizeof(reboot), "%s/run/reboot-requested", d->root);
        /* the driver's config (cli_swupdate.c, struct conf) */
        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
                      "s:s, s:i, s:i}",
                      "root", d->root, "env_config", d->env_config, "etc", etc, "tmp", tmp, "bin",
                      bin, "swupdate", sw && *sw ? sw : "/usr/bin/swupdate", "cert", cert, "board",
                      SW_BOARD, "url", url, "id", d->tr->device_id, "token", token, "health_url",
                      health, "commit", health_commit_path(), "booted", booted, "reboot", reboot,
                      "health_window_ms", sc->health_window_ms > 2000 ? sc->health_window_ms : 2000,
                      "timeout_s", 45);
        if (!o || ota_json_dump(o, &text) < 0) {
            json_decref(o);
            return ota_err_set(err, ENOMEM, "out of memory");
        }
        json_decref(o);
        snprintf(d->config, sizeof(d->config), "%s/pass.json", base);
        r = ota_fs_write_atomic(d->config, text, strlen(text), 0644, err);
        free(text);
        return r;
    }
}

static void sw_pass_argv(const struct otasim_device *d, const char **argv, size_t cap)
{
    const char *v[] = {d->tools->self, "swupdate-pass", d->config};

    otasim_agent_argv(argv, cap, v, sizeof(v) / sizeof(v[0]));
}

/* SWUpdate keeps no database: its account of the device is the env (the
 * slot boot_part selects, a trial boot pending, its ustate) and what that
 * slot holds. */
static int sw_status(struct otasim_device *d, char **ret, struct ota_err *err)
{
    char bp[8] = "", ua[8] = "", us[8] = "", ver[32] = "";
    const char *state = "IDLE";
    size_t idx = 0;
    int slot, r;
    json_t *o;

    if ((r = otasim_bootenv_get(d->env_config, OTA_ENV_BOOT_PART, bp, sizeof(bp), err)) < 0)
        return ota_err_prefix(err, r, "boot_part");
    ota_ignore(otasim_bootenv_get(d->env_config, OTA_ENV_UPGRADE_AVAILABLE, ua, sizeof(ua), NULL));
    ota_ignore(otasim_bootenv_get(d->env_config, "ustate", us, sizeof(us), NULL));
    slot = strcmp(bp, OTA_ENV_SLOT_B) == 0 ? 1 : 0;
    if (otasim_image_identify(&d->boot, slot, &idx, NULL) == 0)
        ota_strlcpy(ver, d->images[idx].version, sizeof(ver));
    if (strcmp(ua, "1") == 0)
        state = "HEALTH_CHECK"; /* a trial boot not yet decided */
    else if (strcmp(us, "1") == 0)
        state = "COMMITTING"; /* installed, not yet confirmed to the server */
    o = json_pack("{s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:i, s:[]}", "state", state, "app", "version",
                  "", "slot", "a", "rootfs", "version", ver, "slot", slot ? "b" : "a", "outbox", 0,
                  "history");
    if (!o || ota_json_dump(o, ret) < 0) {
        json_decref(o);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    json_decref(o);
    return 0;
}

/* What this adapter can run: rootfs updates from the fleet server (DDI),
 * faults that need no ota-agent inside (its named fault points, the
 * interposer's state triggers for disk faults). */
static int sw_check(const struct otasim_scenario *sc, const struct otasim_fault *f,
                    struct ota_err *err)
{
    const struct otasim_release *tgt = otasim_scenario_target(sc);

    if (sc->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: the rootfs profile only (an app .swu is not run yet)");
    if (sc->health_window_ms > 20000)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: health_window_ms up to 20000 (a pass must end within "
                           "the harness's 120 s: the probe's window + 20 s, swupdate's 45 s)");
    if (strcmp(sc->source, "fleet") != 0 || sc->blue_green)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: source fleet (the DDI face), no blue_green rollout");
    if (tgt && strcmp(tgt->format, "raw") != 0)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: a release is a raw image in a .swu "
                           "(format: raw)");
    if (f->kind == OTASIM_FAULT_CANCEL && (!tgt || !tgt->publish))
        return ota_err_set(err, EINVAL, "agent swupdate: cancel needs a release to roll out");
    if (f->trigger.kind == OTASIM_TRIGGER_FAULT_POINT)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: named fault points are ota-agent's; "
                           "use a point or state trigger");
    if ((f->kind == OTASIM_FAULT_DISK_FULL || f->kind == OTASIM_FAULT_EIO) &&
        f->trigger.kind == OTASIM_TRIGGER_STATE)
        return ota_err_set(err, EINVAL,
                           "agent swupdate: disk faults start at a point (the "
                           "interposer sees no state lines in swupdate)");
    return 0;
}

const struct otasim_agent otasim_agent_swupdate = {
    .name = "swupdate",
    .provision = sw_provision,
    .pass_argv = sw_pass_argv,
    .state_line = otasim_agent_otastate_line,
    .status = sw_status,
    .state_db = "",
    .preload_env = "OTASIM_PRELOAD",
    .settles_bootcount = 0,
    .net_journaled = 0, /* suricatta is a forked child: its feedback is not journaled */
    .states = sw_states,
    .check = sw_check,
};
