/* The ota-agent adapter (otasim/agent.h, docs/agents.md): its config file
 * at ROOT/etc/ota-agent.conf, a pass is `ota-agent --config FILE update`, its
 * state changes are the `OTA-STATE {json}` lines it writes to stderr (already
 * the harness's schema), its status is `ota-agent status --json`, and its
 * durable state is the SQLite database at ROOT/var/lib/ota/agent.db. */
#include "otasim/agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/device.h"
#include "otasim/fast.h"
#include "otasim/proc.h"

static int ota_provision(struct otasim_device *d, struct ota_err *err)
{
    const struct otasim_scenario *sc = d->tr->sc;
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    char text[8192], svc[PATH_MAX + 8];
    size_t n = 0;
    int window_s = (sc->health_window_ms + 999) / 1000;

#define ADD(...) n += (size_t)snprintf(text + n, sizeof(text) - n, __VA_ARGS__)
    ADD("[agent]\nsource = %s\nserver = http://127.0.0.1:%d\n", sc->source,
        otasim_proxy_port(d->proxy));
    if (strcmp(sc->source, "github") == 0)
        ADD("repo = sim/video-app\n");
    ADD("enroll_token = %s\ndevice_id = %s\ndevice_type = %s\npublic_key = %s\n",
        d->tr->srv->enroll_token, d->tr->device_id, sc->device_type, d->tr->pub);
    if (sc->blue_green) /* the rollout's filter: a group of its own (bluegreen.c) */
        ADD("group = %s\n", d->tr->device_id);
    else if (d->tr->group[0]) /* a fleet calibration's device (fleet_native.c) */
        ADD("group = %s\n", d->tr->group);
    ADD("database = %s/%s\nmax_resumes = 5\nmax_attempts = 5\n", d->root,
        otasim_agent_ota.state_db);
    ADD("backoff_base_ms = 50\nbackoff_max_ms = 500\ncheckpoint_bytes = %lld\n"
        "checkpoint_interval_ms = 0\n",
        sc->checkpoint_bytes ? sc->checkpoint_bytes : 16384);
    ADD("[transport]\nconnect_timeout = 2\nrequest_timeout = 10\nlow_speed_bytes = 1\n"
        "low_speed_time = 2\n");
    ADD("[app]\nroot = %s/opt/app\n[download]\ndir = %s/var/lib/ota/download\n", d->root, d->root);
    ADD("[health]\nwindow = %d\ninterval_ms = %d\nurl = http://127.0.0.1:%d/health\n", window_s,
        sc->health_interval_ms, d->app_port);
    otasim_svc_prefix(d->tools, svc, sizeof(svc));
    ADD("[service]\nkind = command\nrestart_cmd = %s --dev %s restart\n"
        "is_active_cmd = %s --dev %s is-active\n"
        "timeout = 10\n",
        svc, d->root, svc, d->root);
    if (otasim_svc_bin(d->tools, svc, sizeof(svc)))
        ADD("reboot_cmd = %s --dev %s reboot\n", svc, d->root);
    else
        ADD("reboot_cmd = touch %s/run/reboot-requested\n", d->root);
    if (sc->profile == OTASIM_PROFILE_ROOTFS)
        ADD("[rootfs]\nenv_config = %s\ndevice_a = %s\ndevice_b = %s\nbooted_file = "
            "%s/run/booted\nversion = %s\n",
            d->env_config, d->part[0], d->part[1], d->root, fac->version);
#undef ADD
    if (n >= sizeof(text))
        return ota_err_set(err, ENAMETOOLONG, "config too long");
    snprintf(d->config, sizeof(d->config), "%s/etc/ota-agent.conf", d->root);
    return ota_fs_write_atomic(d->config, text, strlen(text), 0644, err);
}

void otasim_agent_argv(const char **argv, size_t cap, const char *const *v, size_t n)
{
    size_t i = 0;

    for (; i < n && i + 1 < cap; i++)
        argv[i] = v[i];
    argv[i] = NULL;
}

static void ota_pass_argv(const struct otasim_device *d, const char **argv, size_t cap)
{
    const char *v[] = {d->tools->agent, "--config", d->config, "update"};

    otasim_agent_argv(argv, cap, v, sizeof(v) / sizeof(v[0]));
}

int otasim_agent_otastate_line(const char *line, char *json, size_t cap)
{
    static const char tag[] = "OTA-STATE ";

    if (strncmp(line, tag, sizeof(tag) - 1) != 0)
        return 0;
    ota_strlcpy(json, line + sizeof(tag) - 1, cap);
    return 1;
}

static int ota_status(struct otasim_device *d, char **ret, struct ota_err *err)
{
    const char *argv[] = {d->tools->agent, "--config", d->config, "status", "--json", NULL};
    const char *env[] = {"ASAN_OPTIONS=verify_asan_link_order=0", NULL};
    char errlog[PATH_MAX + 32];
    int st = 0, r;

    snprintf(errlog, sizeof(errlog), "%s/.sim/status.err", d->root);
    r = otasim_run(argv, env, 30000, ret, errlog, &st, err);
    if (r < 0)
        return r;
    if (st != 0) {
        free(*ret);
        *ret = NULL;
        return ota_err_set(err, EIO, "ota-agent status --json: exit %d", st);
    }
    return 0;
}

static int ota_check(const struct otasim_scenario *sc, const struct otasim_fault *f,
                     struct ota_err *err)
{
    (void)sc;
    if (f->kind == OTASIM_FAULT_CANCEL)
        return ota_err_set(err, EINVAL,
                           "cancel: a trial of ota-agent has no rollout of its own to "
                           "cancel (the swupdate adapter's trials do)");
    return 0;
}

const struct otasim_agent otasim_agent_ota = {
    .name = "ota-agent",
    .provision = ota_provision,
    .pass_argv = ota_pass_argv,
    .state_line = otasim_agent_otastate_line,
    .status = ota_status,
    .state_db = "var/lib/ota/agent.db",
    .settles_bootcount = 1,
    .net_journaled = 1,
    .check = ota_check,
};

int otasim_agent_check(const struct otasim_agent *ag, const struct otasim_scenario *sc,
                       const struct otasim_fault *f, struct ota_err *err)
{
    for (size_t i = 0; ag->states && i <= f->n_states; i++) {
        const char *want = i < f->n_states                           ? f->states[i]
                           : f->trigger.kind == OTASIM_TRIGGER_STATE ? f->trigger.state
                                                                     : NULL;
        const char *const *p = ag->states;
        while (want && *p && strcmp(*p, want) != 0)
            p++;
        if (want && !*p)
            return ota_err_set(err, EINVAL, "agent %s: its state lines never tell %s", ag->name,
                               want);
    }
    /* the scenario parser says the same; this is also the command line's --fault */
    if (f->kind == OTASIM_FAULT_KERNEL_HANG &&
        (sc->profile != OTASIM_PROFILE_ROOTFS ||
         (f->trigger.kind != OTASIM_TRIGGER_NONE && f->trigger.kind != OTASIM_TRIGGER_STATE)))
        return ota_err_set(err, EINVAL,
                           "kernel-hang: for the rootfs profile, at the start or at a state");
    return ag->check ? ag->check(sc, f, err) : 0;
}

const struct otasim_agent *otasim_agent_find(const char *name)
{
    static const struct otasim_agent *const all[] = {&otasim_agent_ota, &otasim_agent_swupdate};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}
