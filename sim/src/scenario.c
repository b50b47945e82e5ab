/* Scenario files: YAML (or JSON) -> struct otasim_scenario, strictly.
 * Both syntaxes go through one jansson tree (ota_yaml_to_json accepts
 * JSON too, as YAML's flow style), so one validator serves both. */
#include "otasim/scenario.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/yaml.h"
#include "otasim/agent.h"
#include "otasim/jcheck.h"

const char *const otasim_profile_names[OTASIM_PROFILE_MAX] = {"app", "rootfs"};
const char *const otasim_fault_kind_names[OTASIM_FAULT_KIND_MAX] = {
    "none",       "power-cut",       "agent-crash",   "disk-full", "eio",        "partition",
    "clock-jump", "corrupt-bootenv", "service-crash", "cancel",    "kernel-hang"};
const char *const otasim_trigger_kind_names[OTASIM_TRIGGER_KIND_MAX] = {"start", "state", "point",
                                                                        "fault-point"};
const char *const otasim_report_expect_names[OTASIM_EXPECT_REPORT_MAX] = {"any", "success",
                                                                          "failure", "none"};

static const char *const agent_states[] = {
    "IDLE",      "CHECKING",     "DOWNLOADING", "VERIFYING",    "INSTALLING", "SWITCHING",
    "REBOOTING", "HEALTH_CHECK", "COMMITTING",  "ROLLING_BACK", "STANDBY"};

static int check_state(const char *s, const char *where, struct ota_err *err)
{
    if (otasim_lookup(agent_states, sizeof(agent_states) / sizeof(agent_states[0]), s) < 0)
        return ota_err_set(err, EINVAL, "%s: unknown agent state '%s'", where, s);
    return 0;
}

int otasim_fault_kind_parse(const char *text, enum otasim_fault_kind *ret, struct ota_err *err)
{
    int i = otasim_lookup(otasim_fault_kind_names, OTASIM_FAULT_KIND_MAX, text);

    if (i < 0)
        return ota_err_set(err, EINVAL, "unknown fault kind '%s'", text);
    *ret = (enum otasim_fault_kind)i;
    return 0;
}

/* "state:SWITCHING[#2]", "point:57", "fault-point:NAME", "start". */
int otasim_trigger_parse(const char *text, struct otasim_trigger *ret, struct ota_err *err)
{
    struct otasim_trigger t = {0};
    const char *colon = strchr(text, ':');
    char *end;
    int r;

    if (strcmp(text, "start") == 0 || strcmp(text, "none") == 0) {
        *ret = t;
        return 0;
    }
    if (!colon)
        return ota_err_set(err, EINVAL,
                           "trigger '%s': want state:NAME, point:N or fault-point:NAME", text);
    if (strncmp(text, "state:", 6) == 0) {
        const char *hash = strchr(colon + 1, '#');
        size_t n = hash ? (size_t)(hash - colon - 1) : strlen(colon + 1);
        if (n >= sizeof(t.state))
            return ota_err_set(err, EINVAL, "trigger '%s': state name too long", text);
        memcpy(t.state, colon + 1, n);
        t.nth = 1;
        if (hash) {
            long v = strtol(hash + 1, &end, 10);
            if (*end || v < 1 || v > 100)
                return ota_err_set(err, EINVAL, "trigger '%s': bad #N", text);
            t.nth = (int)v;
        }
        t.kind = OTASIM_TRIGGER_STATE;
        if ((r = check_state(t.state, "trigger", err)) < 0)
            return r;
    } else if (strncmp(text, "point:", 6) == 0) {
        unsigned long long v = strtoull(colon + 1, &end, 10);
        if (*end || v < 1)
            return ota_err_set(err, EINVAL, "trigger '%s': point must be >= 1", text);
        t.kind = OTASIM_TRIGGER_POINT;
        t.point = v;
    } else if (strncmp(text, "fault-point:", 12) == 0) {
        if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(t.fault_point))
            return ota_err_set(err, EINVAL, "trigger '%s': bad fault point name", text);
        t.kind = OTASIM_TRIGGER_FAULT_POINT;
        ota_strlcpy(t.fault_point, colon + 1, sizeof(t.fault_point));
    } else {
        return ota_err_set(err, EINVAL, "trigger '%s': want state:, point: or fault-point:", text);
    }
    *ret = t;
    return 0;
}

void otasim_fault_label(const struct otasim_fault *f, char *buf, size_t cap)
{
    const char *k = otasim_fault_kind_names[f->kind];

    switch (f->trigger.kind) {
    case OTASIM_TRIGGER_STATE:
        if (f->trigger.nth > 1)
            snprintf(buf, cap, "%s@state:%s#%d", k, f->trigger.state, f->trigger.nth);
        else
            snprintf(buf, cap, "%s@state:%s", k, f->trigger.state);
        break;
    case OTASIM_TRIGGER_POINT:
        snprintf(buf, cap, "%s@point:%llu", k, (unsigned long long)f->trigger.point);
        break;
    case OTASIM_TRIGGER_FAULT_POINT:
        snprintf(buf, cap, "%s@fault-point:%s", k, f->trigger.fault_point);
        break;
    default:
        snprintf(buf, cap, "%s", k);
        break;
    }
}

static int parse_device(const json_t *d, struct otasim_scenario *s, struct ota_err *err)
{
    static const char *const keys[] = {"profile",     "source",           "agent",
                                       "device_type", "health_window_ms", "health_interval_ms",
                                       "clock_rate",  "slot_b",           "checkpoint_bytes",
                                       "env",         "watchdog",         "watchdog_ms",
                                       NULL};
    char profile[16] = "app", slot_b[16] = "empty", env[16] = "single";
    long long v;
    int i, watchdog = 1;
    int r;

    if (!d)
        return 0;
    if ((r = otasim_only_keys(d, "device", keys, err)) < 0 ||
        (r = otasim_opt_str(d, "device", "profile", profile, sizeof(profile), err)) < 0 ||
        (r = otasim_opt_str(d, "device", "source", s->source, sizeof(s->source), err)) < 0 ||
        (r = otasim_opt_str(d, "device", "agent", s->agent, sizeof(s->agent), err)) < 0 ||
        (r = otasim_opt_str(d, "device", "device_type", s->device_type, sizeof(s->device_type),
                            err)) < 0 ||
        (r = otasim_opt_str(d, "device", "slot_b", slot_b, sizeof(slot_b), err)) < 0 ||
        (r = otasim_opt_str(d, "device", "env", env, sizeof(env), err)) < 0 ||
        (r = otasim_opt_bool(d, "device", "watchdog", &watchdog, err)) < 0)
        return r;
    s->no_watchdog = !watchdog;
    if (strcmp(env, "single") != 0 && strcmp(env, "redundant") != 0)
        return ota_err_set(err, EINVAL, "device.env: '%s' is not single or redundant", env);
    s->env_redundant = strcmp(env, "redundant") == 0;
    if (strcmp(slot_b, "empty") != 0 && strcmp(slot_b, "factory") != 0)
        return ota_err_set(err, EINVAL, "device.slot_b: '%s' is not empty or factory", slot_b);
    s->slot_b_factory = strcmp(slot_b, "factory") == 0;
    i = otasim_lookup(otasim_profile_names, OTASIM_PROFILE_MAX, profile);
    if (i < 0)
        return ota_err_set(err, EINVAL, "device.profile: '%s' is not app or rootfs", profile);
    s->profile = (enum otasim_profile)i;
    if (s->slot_b_factory && s->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL, "device.slot_b: for the rootfs profile");
    if (s->env_redundant && s->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL, "device.env: for the rootfs profile");
    if ((json_object_get(d, "watchdog") || json_object_get(d, "watchdog_ms")) &&
        s->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL, "device.watchdog: for the rootfs profile");
    if (strcmp(s->source, "fleet") != 0 && strcmp(s->source, "github") != 0)
        return ota_err_set(err, EINVAL, "device.source: '%s' is not fleet or github", s->source);
    if (!otasim_agent_find(s->agent))
        return ota_err_set(err, EINVAL,
                           "device.agent: '%s' is not an agent the harness has an adapter for "
                           "(ota-agent, swupdate; docs/agents.md)",
                           s->agent);
    v = s->health_window_ms;
    if ((r = otasim_opt_int(d, "device", "health_window_ms", 0, 600000, &v, err)) < 0)
        return r;
    s->health_window_ms = (int)v;
    v = s->health_interval_ms;
    if ((r = otasim_opt_int(d, "device", "health_interval_ms", 10, 60000, &v, err)) < 0)
        return r;
    s->health_interval_ms = (int)v;
    v = s->clock_rate;
    if ((r = otasim_opt_int(d, "device", "clock_rate", 1, 1000, &v, err)) < 0)
        return r;
    s->clock_rate = (int)v;
    v = s->checkpoint_bytes;
    if ((r = otasim_opt_int(d, "device", "checkpoint_bytes", 4096, 1LL << 30, &v, err)) < 0)
        return r;
    s->checkpoint_bytes = v;
    v = 0;
    if ((r = otasim_opt_int(d, "device", "watchdog_ms", 1000, 3600000, &v, err)) < 0)
        return r;
    s->watchdog_ms = (int)v;
    return 0;
}

static int parse_release(const json_t *r, size_t idx, struct otasim_scenario *s,
                         struct otasim_release *rel, struct ota_err *err)
{
    static const char *const keys[] = {"version",     "variant",     "format",
                                       "device_type", "min_version", "publish",
                                       "signature",   "factory",     NULL};
    char where[32], sig[16] = "good";
    int rc;

    snprintf(where, sizeof(where), "releases[%zu]", idx);
    memset(rel, 0, sizeof(*rel));
    rel->publish = 1;
    if ((rc = otasim_only_keys(r, where, keys, err)) < 0 ||
        (rc = otasim_opt_str(r, where, "version", rel->version, sizeof(rel->version), err)) < 0 ||
        (rc = otasim_opt_str(r, where, "variant", rel->variant, sizeof(rel->variant), err)) < 0 ||
        (rc = otasim_opt_str(r, where, "format", rel->format, sizeof(rel->format), err)) < 0 ||
        (rc = otasim_opt_str(r, where, "device_type", rel->device_type, sizeof(rel->device_type),
                             err)) < 0 ||
        (rc = otasim_opt_str(r, where, "min_version", rel->min_version, sizeof(rel->min_version),
                             err)) < 0 ||
        (rc = otasim_opt_bool(r, where, "publish", &rel->publish, err)) < 0 ||
        (rc = otasim_opt_str(r, where, "signature", sig, sizeof(sig), err)) < 0 ||
        (rc = otasim_opt_bool(r, where, "factory", &rel->factory, err)) < 0)
        return rc;
    if (!rel->version[0])
        return ota_err_set(err, EINVAL, "%s.version: required", where);
    if (strcmp(sig, "good") != 0 && strcmp(sig, "bad") != 0)
        return ota_err_set(err, EINVAL, "%s.signature: 'good' or 'bad'", where);
    rel->bad_signature = strcmp(sig, "bad") == 0;
    if (!rel->variant[0])
        ota_strlcpy(rel->variant, s->profile == OTASIM_PROFILE_APP ? "video-app" : "good",
                    sizeof(rel->variant));
    if (!rel->format[0])
        ota_strlcpy(rel->format, s->profile == OTASIM_PROFILE_APP ? "tar.gz" : "raw",
                    sizeof(rel->format));
    if (s->profile == OTASIM_PROFILE_APP) {
        if (strncmp(rel->variant, "video-app", 9) != 0 || strchr(rel->variant, '/'))
            return ota_err_set(err, EINVAL, "%s.variant: '%s' is not a video-app build", where,
                               rel->variant);
        if (strcmp(rel->format, "tar.gz") != 0 && strcmp(rel->format, "deb") != 0)
            return ota_err_set(err, EINVAL, "%s.format: tar.gz or deb", where);
    } else {
        if (strcmp(rel->variant, "good") != 0 && strcmp(rel->variant, "broken") != 0 &&
            strcmp(rel->variant, "unhealthy") != 0)
            return ota_err_set(err, EINVAL,
                               "%s.variant: 'good', 'broken' or 'unhealthy' for a rootfs", where);
        if (strcmp(rel->format, "raw") != 0 && strcmp(rel->format, "gz") != 0)
            return ota_err_set(err, EINVAL, "%s.format: raw or gz for a rootfs", where);
    }
    return 0;
}

/* fault.crash_model, fault.crash_subsets: a power cut's crash model. */
static int parse_crash_model(const json_t *f, struct otasim_fault *ft, struct ota_err *err)
{
    char model[16] = "minimal";
    long long n = 1;
    int r;

    if ((r = otasim_opt_str(f, "fault", "crash_model", model, sizeof(model), err)) < 0 ||
        (r = otasim_opt_int(f, "fault", "crash_subsets", 1, OTASIM_MAX_CRASH_SUBSETS, &n, err)) < 0)
        return r;
    if (otasim_crash_model_parse(model, &ft->crash_model, err) < 0)
        return ota_err_set(err, EINVAL, "fault.crash_model: '%s' is not minimal, reorder or torn",
                           model);
    if ((json_object_get(f, "crash_model") || json_object_get(f, "crash_subsets")) &&
        ft->kind != OTASIM_FAULT_POWER_CUT)
        return ota_err_set(err, EINVAL, "fault.crash_model: only for kind power-cut");
    ft->crash_subsets = (int)n;
    return 0;
}

static int parse_fault(const json_t *f, struct otasim_scenario *s, struct ota_err *err)
{
    static const char *const keys[] = {"kind",          "trigger", "path",    "count",
                                       "duration_ms",   "jump_s",  "release", "crash_model",
                                       "crash_subsets", "server",  NULL};
    static const char *const tkeys[] = {"state",       "nth",    "point", "points",
                                        "fault_point", "states", NULL};
    struct otasim_fault *ft = &s->fault;
    char kind[32] = "none";
    json_t *t, *v;
    long long n;
    int r;

    if (!f)
        return 0;
    if ((r = otasim_only_keys(f, "fault", keys, err)) < 0 ||
        (r = otasim_opt_str(f, "fault", "kind", kind, sizeof(kind), err)) < 0 ||
        (r = otasim_fault_kind_parse(kind, &ft->kind, err)) < 0 ||
        (r = otasim_opt_str(f, "fault", "path", ft->path_glob, sizeof(ft->path_glob), err)) < 0 ||
        (r = otasim_opt_str(f, "fault", "release", ft->release, sizeof(ft->release), err)) < 0)
        return r;
    if (ft->release[0] && ft->kind != OTASIM_FAULT_KERNEL_HANG)
        return ota_err_set(err, EINVAL, "fault.release: only for kind kernel-hang");
    n = 0;
    if ((r = otasim_opt_int(f, "fault", "count", 0, 1000000, &n, err)) < 0)
        return r;
    ft->count = (int)n;
    n = 3000;
    if ((r = otasim_opt_int(f, "fault", "duration_ms", 1, 600000, &n, err)) < 0)
        return r;
    ft->duration_ms = (int)n;
    n = 0;
    if ((r = otasim_opt_int(f, "fault", "jump_s", -100LL * 365 * 86400, 100LL * 365 * 86400, &n,
                            err)) < 0)
        return r;
    ft->jump_s = n;
    if ((r = parse_crash_model(f, ft, err)) < 0)
        return r;
    v = json_object_get(f, "server");
    if (v) {
        if (!json_is_array(v))
            return ota_err_set(err, EINVAL, "fault.server: a list of fault-plan rules");
        s->server_faults = json_incref(v);
    }
    t = json_object_get(f, "trigger");
    if (!t)
        return 0;
    /* it is made before the update starts: a trigger would never be waited for */
    if (ft->kind == OTASIM_FAULT_CORRUPT_BOOTENV)
        return ota_err_set(err, EINVAL,
                           "fault.trigger: corrupt-bootenv breaks the env before the update "
                           "starts; it takes no trigger");
    if (json_is_string(t))
        return otasim_trigger_parse(json_string_value(t), &ft->trigger, err) < 0 ? -EINVAL : 0;
    if ((r = otasim_only_keys(t, "fault.trigger", tkeys, err)) < 0)
        return r;
    if ((v = json_object_get(t, "state"))) {
        ft->trigger.kind = OTASIM_TRIGGER_STATE;
        if ((r = otasim_opt_str(t, "fault.trigger", "state", ft->trigger.state,
                                sizeof(ft->trigger.state), err)) < 0 ||
            (r = check_state(ft->trigger.state, "fault.trigger.state", err)) < 0)
            return r;
        n = 1;
        if ((r = otasim_opt_int(t, "fault.trigger", "nth", 1, 100, &n, err)) < 0)
            return r;
        ft->trigger.nth = (int)n;
    } else if ((v = json_object_get(t, "point"))) {
        n = 0;
        if ((r = otasim_opt_int(t, "fault.trigger", "point", 1, 1LL << 40, &n, err)) < 0)
            return r;
        ft->trigger.kind = OTASIM_TRIGGER_POINT;
        ft->trigger.point = (uint64_t)n;
    } else if ((v = json_object_get(t, "points"))) {
        if (!json_is_string(v) || strcmp(json_string_value(v), "all") != 0)
            return ota_err_set(err, EINVAL, "fault.trigger.points: only 'all'");
        ft->all_points = 1;
        ft->trigger.kind = OTASIM_TRIGGER_POINT;
    } else if ((v = json_object_get(t, "fault_point"))) {
        ft->trigger.kind = OTASIM_TRIGGER_FAULT_POINT;
        if ((r = otasim_opt_str(t, "fault.trigger", "fault_point", ft->trigger.fault_point,
                                sizeof(ft->trigger.fault_point), err)) < 0)
            return r;
    } else if ((v = json_object_get(t, "states"))) {
        size_t i;
        json_t *e;
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > OTASIM_MAX_STATES)
            return ota_err_set(err, EINVAL, "fault.trigger.states: a list of 1..%d states",
                               OTASIM_MAX_STATES);
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e) || strlen(json_string_value(e)) >= sizeof(ft->states[0]))
                return ota_err_set(err, EINVAL, "fault.trigger.states[%zu]: a state name", i);
            ota_strlcpy(ft->states[i], json_string_value(e), sizeof(ft->states[0]));
            if ((r = check_state(ft->states[i], "fault.trigger.states", err)) < 0)
                return r;
        }
        ft->n_states = json_array_size(v);
        ft->trigger.kind = OTASIM_TRIGGER_STATE;
        ota_strlcpy(ft->trigger.state, ft->states[0], sizeof(ft->trigger.state));
        ft->trigger.nth = 1;
    }
    return 0;
}

static int parse_expect(const json_t *e, struct otasim_scenario *s, struct ota_err *err)
{
    static const char *const keys[] = {"version",          "slot",          "report",
                                       "recover_within_s", "min_health_ms", "exact_download",
                                       "min_attempts",     "recovery",      NULL};
    struct otasim_expect *x = &s->expect;
    char report[16] = "any";
    long long n;
    int i;
    int r;

    if (!e)
        return 0;
    if ((r = otasim_only_keys(e, "expect", keys, err)) < 0 ||
        (r = otasim_opt_str(e, "expect", "version", x->version, sizeof(x->version), err)) < 0 ||
        (r = otasim_opt_str(e, "expect", "slot", x->slot, sizeof(x->slot), err)) < 0 ||
        (r = otasim_opt_str(e, "expect", "report", report, sizeof(report), err)) < 0 ||
        (r = otasim_opt_bool(e, "expect", "exact_download", &x->exact_download, err)) < 0 ||
        (r = otasim_opt_bool(e, "expect", "recovery", &x->recovery, err)) < 0)
        return r;
    if (x->recovery && s->profile != OTASIM_PROFILE_ROOTFS)
        return ota_err_set(err, EINVAL, "expect.recovery: for the rootfs profile");
    if (x->slot[0] && strcmp(x->slot, "a") != 0 && strcmp(x->slot, "b") != 0)
        return ota_err_set(err, EINVAL, "expect.slot: a or b");
    i = otasim_lookup(otasim_report_expect_names, OTASIM_EXPECT_REPORT_MAX, report);
    if (i < 0)
        return ota_err_set(err, EINVAL, "expect.report: any, success, failure or none");
    x->report = (enum otasim_report_expect)i;
    n = 0;
    if ((r = otasim_opt_int(e, "expect", "recover_within_s", 0, 3600, &n, err)) < 0)
        return r;
    x->recover_within_s = (int)n;
    n = 0;
    if ((r = otasim_opt_int(e, "expect", "min_health_ms", 0, 3600000, &n, err)) < 0)
        return r;
    x->min_health_ms = (int)n;
    n = 0;
    if ((r = otasim_opt_int(e, "expect", "min_attempts", 0, 100, &n, err)) < 0)
        return r;
    x->min_attempts = (int)n;
    return 0;
}

/* mix: {ota-agent: N, swupdate: M}: devices of both adapters in one rollout;
 * what the swupdate adapter cannot run is refused for the whole scenario. */
static int parse_mix(const json_t *m, struct otasim_scenario *s, struct ota_err *err)
{
    static const char *const keys[] = {"ota-agent", "swupdate", NULL};
    long long a = 0, b = 0;
    int r;

    if ((r = otasim_only_keys(m, "mix", keys, err)) < 0 ||
        (r = otasim_opt_int(m, "mix", "ota-agent", 0, 16, &a, err)) < 0 ||
        (r = otasim_opt_int(m, "mix", "swupdate", 0, 16, &b, err)) < 0)
        return r;
    if (a + b < 1)
        return ota_err_set(err, EINVAL, "mix: at least one device");
    if (s->fault.kind != OTASIM_FAULT_NONE || s->fault.n_states || s->fault.all_points ||
        s->blue_green)
        return ota_err_set(err, EINVAL,
                           "mix: a rollout of its own (no fault kind, no blue_green; "
                           "server fault plans apply)");
    if (b > 0 && (r = otasim_agent_check(&otasim_agent_swupdate, s, &s->fault, err)) < 0)
        return r;
    s->mix_ota = (int)a;
    s->mix_swupdate = (int)b;
    return 0;
}

int otasim_scenario_parse(const char *text, size_t n, const char *path, struct otasim_scenario *ret,
                          struct ota_err *err)
{
    static const char *const keys[] = {"name",   "description", "device",  "releases", "fault",
                                       "expect", "passes",      "rollout", "mix",      NULL};
    char rollout[24] = "";
    struct otasim_scenario s;
    json_t *root = NULL, *rels, *r;
    const char *base;
    long long passes = 8;
    size_t i;
    int factories = 0, rc = -EINVAL;

    memset(&s, 0, sizeof(s));
    ota_strlcpy(s.source, "fleet", sizeof(s.source));
    ota_strlcpy(s.agent, otasim_agent_ota.name, sizeof(s.agent));
    ota_strlcpy(s.device_type, "rpi3b", sizeof(s.device_type));
    s.health_window_ms = 500;
    s.health_interval_ms = 100;
    s.clock_rate = 1;
    ota_strlcpy(s.path, path ? path : "", sizeof(s.path));
    base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : (path ? path : "scenario");
    ota_strlcpy(s.name, base, sizeof(s.name));
    if (strrchr(s.name, '.'))
        *strrchr(s.name, '.') = '\0';

    if (ota_yaml_to_json(text, n, &root, err) < 0)
        goto out;
    if (otasim_only_keys(root, "scenario", keys, err) < 0 ||
        otasim_opt_str(root, "scenario", "name", s.name, sizeof(s.name), err) < 0 ||
        otasim_opt_str(root, "scenario", "description", s.description, sizeof(s.description), err) <
            0 ||
        otasim_opt_int(root, "scenario", "passes", 1, 50, &passes, err) < 0 ||
        otasim_opt_str(root, "scenario", "rollout", rollout, sizeof(rollout), err) < 0 ||
        parse_device(json_object_get(root, "device"), &s, err) < 0)
        goto out;
    s.passes = (int)passes;
    if (rollout[0] && (strcmp(rollout, "blue_green") != 0 || strcmp(s.source, "fleet") != 0)) {
        ota_err_set(err, EINVAL, "rollout: only blue_green, with the fleet source");
        goto out;
    }
    s.blue_green = rollout[0] != '\0';
    rels = json_object_get(root, "releases");
    if (!json_is_array(rels) || json_array_size(rels) < 1 ||
        json_array_size(rels) > OTASIM_MAX_RELEASES) {
        ota_err_set(err, EINVAL, "releases: a list of 1..%d releases", OTASIM_MAX_RELEASES);
        goto out;
    }
    json_array_foreach(rels, i, r)
    {
        if (parse_release(r, i, &s, &s.rel[i], err) < 0)
            goto out;
        factories += s.rel[i].factory;
        if (!s.rel[i].device_type[0])
            ota_strlcpy(s.rel[i].device_type, s.device_type, sizeof(s.rel[i].device_type));
    }
    s.n_rel = json_array_size(rels);
    if (factories != 1) {
        ota_err_set(err, EINVAL, "releases: exactly one must be 'factory: true' (has %d)",
                    factories);
        goto out;
    }
    if (parse_fault(json_object_get(root, "fault"), &s, err) < 0 ||
        parse_expect(json_object_get(root, "expect"), &s, err) < 0)
        goto out;
    {
        const struct otasim_agent *ag = otasim_agent_find(s.agent);
        if (ag && otasim_agent_check(ag, &s, &s.fault, err) < 0)
            goto out;
    }
    if (json_object_get(root, "mix") && parse_mix(json_object_get(root, "mix"), &s, err) < 0)
        goto out;
    if ((s.fault.kind == OTASIM_FAULT_DISK_FULL || s.fault.kind == OTASIM_FAULT_EIO) &&
        s.fault.trigger.kind != OTASIM_TRIGGER_NONE &&
        s.fault.trigger.kind != OTASIM_TRIGGER_STATE &&
        s.fault.trigger.kind != OTASIM_TRIGGER_POINT) {
        ota_err_set(err, EINVAL, "fault.trigger: disk faults start at a state or a point");
        goto out;
    }
    if (s.fault.kind == OTASIM_FAULT_KERNEL_HANG) {
        const struct otasim_release *tgt = otasim_scenario_target(&s);
        size_t k;
        if (s.profile != OTASIM_PROFILE_ROOTFS) {
            ota_err_set(err, EINVAL, "fault kernel-hang: for the rootfs profile");
            goto out;
        }
        if (s.fault.trigger.kind != OTASIM_TRIGGER_NONE &&
            s.fault.trigger.kind != OTASIM_TRIGGER_STATE) {
            ota_err_set(err, EINVAL,
                        "fault.trigger: kernel-hang starts at the start or at a state");
            goto out;
        }
        if (!s.fault.release[0] && tgt)
            ota_strlcpy(s.fault.release, tgt->version, sizeof(s.fault.release));
        for (k = 0; k < s.n_rel && strcmp(s.rel[k].version, s.fault.release) != 0; k++)
            ;
        if (k == s.n_rel) {
            ota_err_set(err, EINVAL, "fault.release: '%s' is not one of the releases",
                        s.fault.release);
            goto out;
        }
    }
    *ret = s;
    s.server_faults = NULL;
    rc = 0;
out:
    json_decref(s.server_faults);
    json_decref(root);
    return rc;
}

int otasim_scenario_load(const char *path, struct otasim_scenario *ret, struct ota_err *err)
{
    char *text = NULL;
    size_t n = 0;
    int r;

    r = ota_fs_read_all(path, 1 << 20, &text, &n, err);
    if (r < 0)
        return r;
    r = otasim_scenario_parse(text, n, path, ret, err);
    if (r < 0 && err && !strstr(err->reason, path)) {
        char tmp[sizeof(err->reason)];
        snprintf(tmp, sizeof(tmp), "%s: %s", path, err->reason);
        ota_strlcpy(err->reason, tmp, sizeof(err->reason));
    }
    free(text);
    return r;
}

void otasim_scenario_release(struct otasim_scenario *s)
{
    if (!s)
        return;
    json_decref(s->server_faults);
    s->server_faults = NULL;
}

const struct otasim_release *otasim_scenario_factory(const struct otasim_scenario *s)
{
    for (size_t i = 0; i < s->n_rel; i++)
        if (s->rel[i].factory)
            return &s->rel[i];
    return NULL;
}

/* The release the device is offered: the last published non-factory one. */
const struct otasim_release *otasim_scenario_target(const struct otasim_scenario *s)
{
    const struct otasim_release *t = NULL;

    for (size_t i = 0; i < s->n_rel; i++)
        if (!s->rel[i].factory && s->rel[i].publish)
            t = &s->rel[i];
    return t;
}
