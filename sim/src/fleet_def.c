/* Fleet files (docs/fleet.md): YAML or JSON -> struct otasim_fleet_def,
 * strictly (unknown keys and out-of-range values refused, naming the key).
 * The rollout definition and the server fault plan are passed to the server
 * as they are: the server validates them and its reason is the error. */
#include "otasim/fleet.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/inventory.h"
#include "ota/json.h"
#include "ota/version.h"
#include "ota/yaml.h"
#include "otasim/jcheck.h"

const char *const otasim_bad_mode_names[OTASIM_BAD_MODE_MAX] = {"none", "health", "crash", "boot"};

static const char *const agent_states[] = {"CHECKING",     "DOWNLOADING", "VERIFYING",
                                           "INSTALLING",   "SWITCHING",   "REBOOTING",
                                           "HEALTH_CHECK", "COMMITTING",  "ROLLING_BACK"};

static const char *const rollout_states[] = {"draft",   "approved",  "scheduled",
                                             "running", "paused",    "completed",
                                             "failed",  "cancelled", "rolled_back"};

/* "1048576", 1048576, "512KiB", "1MiB", "2GiB". */
static int opt_size(const json_t *obj, const char *where, const char *key, uint64_t *inout,
                    struct ota_err *err)
{
    json_t *v = json_object_get(obj, key);
    const char *s;
    char *end;
    double n;

    if (!v)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        *inout = (uint64_t)json_integer_value(v);
        return 0;
    }
    s = json_is_string(v) ? json_string_value(v) : "";
    n = strtod(s, &end);
    if (end != s && n > 0) {
        if (strcmp(end, "KiB") == 0)
            n *= 1024;
        else if (strcmp(end, "MiB") == 0)
            n *= 1024 * 1024;
        else if (strcmp(end, "GiB") == 0)
            n *= 1024.0 * 1024 * 1024;
        else if (*end)
            n = -1;
        if (n >= 1 && n <= 4.0 * 1024 * 1024 * 1024) {
            *inout = (uint64_t)n;
            return 0;
        }
    }
    return ota_err_set(err, EINVAL, "%s.%s: must be a size in bytes (or 512KiB, 1MiB, up to 4GiB)",
                       where, key);
}

/* {value: share, ...} */
static int parse_mix(const json_t *obj, const char *where, const char *key,
                     struct otasim_fleet_mix *mix, size_t *n, struct ota_err *err)
{
    json_t *m = json_object_get(obj, key), *v;
    const char *k;

    if (!m)
        return 0;
    if (!json_is_object(m) || json_object_size(m) == 0 ||
        json_object_size(m) > OTASIM_FLEET_MAX_MIX)
        return ota_err_set(err, EINVAL, "%s.%s: must map 1..%d names to shares", where, key,
                           OTASIM_FLEET_MAX_MIX);
    *n = 0;
    json_object_foreach(m, k, v)
    {
        if (!json_is_number(v) || json_number_value(v) <= 0 || strlen(k) >= sizeof(mix->value) ||
            !k[0])
            return ota_err_set(err, EINVAL, "%s.%s.%s: a share must be a number > 0", where, key,
                               k);
        ota_strlcpy(mix[*n].value, k, sizeof(mix[*n].value));
        mix[*n].share = json_number_value(v);
        (*n)++;
    }
    return 0;
}

/* attributes: {KEY: {VALUE: share, ...}, ...} */
static int parse_attrs(const json_t *d, struct otasim_fleet_def *f, struct ota_err *err)
{
    json_t *a = json_object_get(d, "attributes"), *v;
    const char *k;
    int r;

    if (!a)
        return 0;
    if (!json_is_object(a) || json_object_size(a) > OTASIM_FLEET_MAX_ATTRS)
        return ota_err_set(err, EINVAL, "devices.attributes: at most %d attributes, each a mix",
                           OTASIM_FLEET_MAX_ATTRS);
    json_object_foreach(a, k, v)
    {
        size_t i = f->n_attrs;
        (void)v;
        if (!ota_attr_key_valid(k))
            return ota_err_set(err, EINVAL, "devices.attributes.%s: a key is 1..32 of [a-z0-9_]",
                               k);
        ota_strlcpy(f->attrs[i].key, k, sizeof(f->attrs[i].key));
        if ((r = parse_mix(a, "devices.attributes", k, f->attrs[i].values, &f->attrs[i].n, err)) <
            0)
            return r;
        for (size_t j = 0; j < f->attrs[i].n; j++)
            if (!ota_attr_value_valid(f->attrs[i].values[j].value))
                return ota_err_set(err, EINVAL, "devices.attributes.%s.%s: not a valid value", k,
                                   f->attrs[i].values[j].value);
        f->n_attrs++;
    }
    return 0;
}

static int parse_devices(const json_t *d, struct otasim_fleet_def *f, struct ota_err *err)
{
    static const char *const keys[] = {
        "count",     "poll_interval", "poll_jitter", "health_window", "health_interval",
        "types",     "groups",        "offline",     "late",          "bandwidth",
        "timezones", "attributes",    NULL};
    long long n = f->count;
    json_t *late;
    int r;

    if (!d)
        return ota_err_set(err, EINVAL, "devices: required");
    if ((r = otasim_only_keys(d, "devices", keys, err)) < 0 ||
        (r = otasim_opt_int(d, "devices", "count", 1, 1000000, &n, err)) < 0 ||
        (r = otasim_opt_duration(d, "devices", "poll_interval", &f->poll_ms, err)) < 0 ||
        (r = otasim_opt_duration(d, "devices", "poll_jitter", &f->jitter_ms, err)) < 0 ||
        (r = otasim_opt_duration(d, "devices", "health_window", &f->health_window_ms, err)) < 0 ||
        (r = otasim_opt_duration(d, "devices", "health_interval", &f->health_interval_ms, err)) <
            0 ||
        (r = parse_mix(d, "devices", "types", f->types, &f->n_types, err)) < 0 ||
        (r = parse_mix(d, "devices", "groups", f->groups, &f->n_groups, err)) < 0 ||
        (r = parse_mix(d, "devices", "timezones", f->zones, &f->n_zones, err)) < 0 ||
        (r = parse_attrs(d, f, err)) < 0 ||
        (r = otasim_opt_num(d, "devices", "offline", 0, 1, &f->offline, err)) < 0 ||
        (r = opt_size(d, "devices", "bandwidth", &f->bandwidth, err)) < 0)
        return r;
    f->count = (uint32_t)n;
    for (size_t i = 0; i < f->n_zones; i++)
        if (!ota_timezone_valid(f->zones[i].value))
            return ota_err_set(err, EINVAL, "devices.timezones.%s: not UTC, +HH:MM or a zone name",
                               f->zones[i].value);
    if (f->poll_ms < 1000)
        return ota_err_set(err, EINVAL, "devices.poll_interval: at least 1s");
    if (f->health_interval_ms < 1 || f->health_interval_ms > f->health_window_ms)
        return ota_err_set(err, EINVAL,
                           "devices.health_interval: must be > 0 and within health_window");
    late = json_object_get(d, "late");
    if (late) {
        static const char *const lk[] = {"share", "after", NULL};
        if ((r = otasim_only_keys(late, "devices.late", lk, err)) < 0 ||
            (r = otasim_opt_num(late, "devices.late", "share", 0, 1, &f->late, err)) < 0 ||
            (r = otasim_opt_duration(late, "devices.late", "after", &f->late_ms, err)) < 0)
            return r;
    }
    if (f->offline + f->late > 1)
        return ota_err_set(err, EINVAL, "devices: offline + late.share is more than 1");
    return 0;
}

/* KEY: a list of at most 4 names (of 63 bytes at most) into out. */
static int name_list(const json_t *obj, const char *where, const char *key, char out[4][64],
                     size_t *n, struct ota_err *err)
{
    json_t *a = json_object_get(obj, key), *t;
    size_t i;

    if (a && (!json_is_array(a) || json_array_size(a) > 4))
        return ota_err_set(err, EINVAL, "%s.%s: a list of at most 4 names", where, key);
    json_array_foreach(a, i, t)
    {
        if (!json_is_string(t) || strlen(json_string_value(t)) >= 64)
            return ota_err_set(err, EINVAL, "%s.%s[%zu]: must be a name", where, key, i);
        ota_strlcpy(out[i], json_string_value(t), 64);
        (*n)++;
    }
    return 0;
}

static int parse_bad(const json_t *b, const char *where, struct otasim_fleet_release *rel,
                     struct ota_err *err)
{
    static const char *const keys[] = {"mode",   "probability", "device_types",
                                       "groups", "fail_after",  NULL};
    char w[64], mode[16] = "";
    int r, m;

    snprintf(w, sizeof(w), "%s.bad", where);
    if ((r = otasim_only_keys(b, w, keys, err)) < 0 ||
        (r = otasim_opt_str(b, w, "mode", mode, sizeof(mode), err)) < 0 ||
        (r = otasim_opt_num(b, w, "probability", 0, 1, &rel->bad_probability, err)) < 0 ||
        (r = otasim_opt_duration(b, w, "fail_after", &rel->fail_after_ms, err)) < 0)
        return r;
    m = otasim_lookup(otasim_bad_mode_names, OTASIM_BAD_MODE_MAX, mode);
    if (m <= 0)
        return ota_err_set(err, EINVAL, "%s.mode: must be health, crash or boot (rootfs)", w);
    rel->bad = (enum otasim_bad_mode)m;
    if ((r = name_list(b, w, "device_types", rel->bad_types, &rel->n_bad_types, err)) < 0 ||
        (r = name_list(b, w, "groups", rel->bad_groups, &rel->n_bad_groups, err)) < 0)
        return r;
    return 0;
}

static int parse_releases(const json_t *a, struct otasim_fleet_def *f, struct ota_err *err)
{
    static const char *const keys[] = {"version", "size", "factory", "rollback",
                                       "bad",     "kind", NULL};
    size_t i, factories = 0;
    json_t *r1;
    int r;

    if (!json_is_array(a) || json_array_size(a) < 2 ||
        json_array_size(a) > OTASIM_FLEET_MAX_RELEASES)
        return ota_err_set(err, EINVAL, "releases: a list of 2..%d releases",
                           OTASIM_FLEET_MAX_RELEASES);
    json_array_foreach(a, i, r1)
    {
        struct otasim_fleet_release *rel = &f->rel[i];
        char w[32];
        json_t *b;

        snprintf(w, sizeof(w), "releases[%zu]", i);
        rel->size = 1u << 20;
        rel->fail_after_ms = 10000;
        if ((r = otasim_only_keys(r1, w, keys, err)) < 0 ||
            (r = otasim_opt_str(r1, w, "version", rel->version, sizeof(rel->version), err)) < 0 ||
            (r = opt_size(r1, w, "size", &rel->size, err)) < 0 ||
            (r = otasim_opt_bool(r1, w, "factory", &rel->factory, err)) < 0 ||
            (r = otasim_opt_bool(r1, w, "rollback", &rel->rollback, err)) < 0)
            return r;
        if (!ota_version_valid(rel->version))
            return ota_err_set(err, EINVAL, "%s.version: '%s' is not MAJOR.MINOR.PATCH", w,
                               rel->version);
        for (size_t k = 0; k < i; k++)
            if (strcmp(f->rel[k].version, rel->version) == 0)
                return ota_err_set(err, EINVAL, "%s.version: %s is listed twice", w, rel->version);
        {
            char kind[16] = "app";
            if ((r = otasim_opt_str(r1, w, "kind", kind, sizeof(kind), err)) < 0)
                return r;
            if (strcmp(kind, "app") != 0 && strcmp(kind, "rootfs") != 0)
                return ota_err_set(err, EINVAL, "%s.kind: app or rootfs", w);
            rel->rootfs = strcmp(kind, "rootfs") == 0;
            if (i > 0 && rel->rootfs != f->rel[0].rootfs)
                return ota_err_set(err, EINVAL, "%s.kind: one kind per fleet", w);
            f->rootfs = rel->rootfs;
        }
        b = json_object_get(r1, "bad");
        if (b && (r = parse_bad(b, w, rel, err)) < 0)
            return r;
        if (rel->bad == OTASIM_BAD_BOOT && !rel->rootfs)
            return ota_err_set(err, EINVAL, "%s.bad.mode: boot is for rootfs releases", w);
        factories += rel->factory ? 1 : 0;
        f->n_rel++;
    }
    if (factories != 1)
        return ota_err_set(err, EINVAL, "releases: exactly one must be the factory release");
    return 0;
}

const struct otasim_fleet_release *otasim_fleet_release_find(const struct otasim_fleet_def *f,
                                                             const char *version)
{
    for (size_t i = 0; i < f->n_rel; i++)
        if (strcmp(f->rel[i].version, version) == 0)
            return &f->rel[i];
    return NULL;
}

static int parse_rollout(const json_t *o, struct otasim_fleet_def *f, struct ota_err *err)
{
    static const char *const keys[] = {"release", "previous", "definition", "activate_at", NULL};
    const struct otasim_fleet_release *prev;
    json_t *def;
    int r;

    if (!o)
        return ota_err_set(err, EINVAL, "rollout: required");
    if ((r = otasim_only_keys(o, "rollout", keys, err)) < 0 ||
        (r = otasim_opt_str(o, "rollout", "release", f->rollout_release, sizeof(f->rollout_release),
                            err)) < 0 ||
        (r = otasim_opt_str(o, "rollout", "previous", f->rollout_previous,
                            sizeof(f->rollout_previous), err)) < 0 ||
        (r = otasim_opt_duration(o, "rollout", "activate_at", &f->rollout_activate_at_ms, err)) < 0)
        return r;
    if (!otasim_fleet_release_find(f, f->rollout_release))
        return ota_err_set(err, EINVAL, "rollout.release: '%s' is not one of the releases",
                           f->rollout_release);
    if (f->rollout_previous[0]) {
        prev = otasim_fleet_release_find(f, f->rollout_previous);
        if (!prev || !prev->rollback)
            return ota_err_set(err, EINVAL,
                               "rollout.previous: '%s' must be a release with rollback: true",
                               f->rollout_previous);
    }
    def = json_object_get(o, "definition");
    if (!json_is_object(def))
        return ota_err_set(err, EINVAL,
                           "rollout.definition: required (the server's rollout definition)");
    if (json_object_get(def, "release_id") || json_object_get(def, "previous_release_id"))
        return ota_err_set(err, EINVAL,
                           "rollout.definition: give release/previous, not the release ids");
    f->rollout_json = json_dumps(def, JSON_COMPACT);
    return f->rollout_json ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

static int parse_states(const json_t *o, const char *where, struct otasim_fleet_def *f,
                        struct ota_err *err)
{
    json_t *a = json_object_get(o, "states"), *s;
    size_t i;

    if (!a) { /* every state of an update */
        for (i = 0; i < sizeof(agent_states) / sizeof(agent_states[0]); i++)
            ota_strlcpy(f->cut_states[f->n_cut_states++], agent_states[i],
                        sizeof(f->cut_states[0]));
        return 0;
    }
    if (!json_is_array(a) || json_array_size(a) == 0 ||
        json_array_size(a) > OTASIM_FLEET_MAX_STATES)
        return ota_err_set(err, EINVAL, "%s.states: a list of agent states", where);
    json_array_foreach(a, i, s)
    {
        if (!json_is_string(s) ||
            otasim_lookup(agent_states, sizeof(agent_states) / sizeof(agent_states[0]),
                          json_string_value(s)) < 0)
            return ota_err_set(err, EINVAL, "%s.states[%zu]: not a state of an update", where, i);
        ota_strlcpy(f->cut_states[f->n_cut_states++], json_string_value(s),
                    sizeof(f->cut_states[0]));
    }
    return 0;
}

static int parse_faults(const json_t *o, struct otasim_fleet_def *f, struct ota_err *err)
{
    static const char *const keys[] = {"power_cut", "agent_crash", "server", NULL};
    static const char *const ck[] = {"probability", "states", "off", NULL};
    static const char *const ak[] = {"probability", NULL};
    json_t *pc, *ac, *srv;
    int r;

    if (!o)
        return 0;
    if ((r = otasim_only_keys(o, "faults", keys, err)) < 0)
        return r;
    pc = json_object_get(o, "power_cut");
    if (pc && ((r = otasim_only_keys(pc, "faults.power_cut", ck, err)) < 0 ||
               (r = otasim_opt_num(pc, "faults.power_cut", "probability", 0, 1, &f->power_cut,
                                   err)) < 0 ||
               (r = otasim_opt_duration(pc, "faults.power_cut", "off", &f->off_ms, err)) < 0 ||
               (r = parse_states(pc, "faults.power_cut", f, err)) < 0))
        return r;
    ac = json_object_get(o, "agent_crash");
    if (ac && ((r = otasim_only_keys(ac, "faults.agent_crash", ak, err)) < 0 ||
               (r = otasim_opt_num(ac, "faults.agent_crash", "probability", 0, 1, &f->agent_crash,
                                   err)) < 0))
        return r;
    if (ac && !pc && (r = parse_states(ac, "faults.agent_crash", f, err)) < 0)
        return r;
    srv = json_object_get(o, "server");
    if (srv) {
        if (!json_is_object(srv))
            return ota_err_set(err, EINVAL, "faults.server: the server's fault plan (a mapping)");
        f->server_faults_json = json_dumps(srv, JSON_COMPACT);
        if (!f->server_faults_json)
            return ota_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

static int opt_pct(const json_t *o, const char *key, double *inout, struct ota_err *err)
{
    return otasim_opt_num(o, "expect", key, 0, 100, inout, err);
}

static int opt_count(const json_t *o, const char *key, long *inout, struct ota_err *err)
{
    long long v = *inout;
    int r = otasim_opt_int(o, "expect", key, 0, 1000000, &v, err);

    *inout = (long)v;
    return r;
}

static int parse_expect(const json_t *o, struct otasim_fleet_def *f, struct ota_err *err)
{
    static const char *const keys[] = {"rollout",          "bad_installed_max_percent",
                                       "bricked_max",      "inconsistent_max",
                                       "stuck_max",        "on_target_min_percent",
                                       "target_version",   "committed_within",
                                       "switch_in_window", NULL};
    json_t *rs, *s;
    size_t i;
    int r;

    if (!o)
        return 0;
    if ((r = otasim_only_keys(o, "expect", keys, err)) < 0 ||
        (r = opt_pct(o, "bad_installed_max_percent", &f->expect_bad_max_percent, err)) < 0 ||
        (r = opt_count(o, "bricked_max", &f->expect_bricked_max, err)) < 0 ||
        (r = opt_count(o, "inconsistent_max", &f->expect_inconsistent_max, err)) < 0 ||
        (r = opt_count(o, "stuck_max", &f->expect_stuck_max, err)) < 0 ||
        (r = opt_pct(o, "on_target_min_percent", &f->expect_min_on_target_percent, err)) < 0 ||
        (r = otasim_opt_str(o, "expect", "target_version", f->expect_target_version,
                            sizeof(f->expect_target_version), err)) < 0 ||
        (r = otasim_opt_duration(o, "expect", "committed_within", &f->expect_committed_within_ms,
                                 err)) < 0 ||
        (r = otasim_opt_bool(o, "expect", "switch_in_window", &f->expect_switch_in_window, err)) <
            0)
        return r;
    rs = json_object_get(o, "rollout");
    if (rs && json_is_string(rs)) {
        ota_strlcpy(f->expect_rollout[0], json_string_value(rs), sizeof(f->expect_rollout[0]));
        f->n_expect_rollout = 1;
    } else if (rs) {
        if (!json_is_array(rs) || json_array_size(rs) == 0 || json_array_size(rs) > 8)
            return ota_err_set(err, EINVAL, "expect.rollout: a rollout state or a list of them");
        json_array_foreach(rs, i, s)
        {
            if (!json_is_string(s) || strlen(json_string_value(s)) >= sizeof(f->expect_rollout[0]))
                return ota_err_set(err, EINVAL, "expect.rollout[%zu]: a rollout state", i);
            ota_strlcpy(f->expect_rollout[i], json_string_value(s), sizeof(f->expect_rollout[0]));
            f->n_expect_rollout++;
        }
    }
    for (i = 0; i < f->n_expect_rollout; i++)
        if (otasim_lookup(rollout_states, sizeof(rollout_states) / sizeof(rollout_states[0]),
                          f->expect_rollout[i]) < 0)
            return ota_err_set(err, EINVAL, "expect.rollout: unknown rollout state '%s'",
                               f->expect_rollout[i]);
    if (f->expect_target_version[0] && !otasim_fleet_release_find(f, f->expect_target_version))
        return ota_err_set(err, EINVAL, "expect.target_version: '%s' is not one of the releases",
                           f->expect_target_version);
    return 0;
}

static void defaults(struct otasim_fleet_def *f)
{
    memset(f, 0, sizeof(*f));
    f->seed = 1;
    f->duration_ms = 2 * 86400000LL;
    f->start_ms = 1795000000000LL;
    f->count = 100;
    f->poll_ms = 3600000;
    f->jitter_ms = 300000;
    f->health_window_ms = 60000;
    f->health_interval_ms = 5000;
    f->off_ms = 30000;
    f->expect_bad_max_percent = -1;
    f->expect_bricked_max = f->expect_inconsistent_max = f->expect_stuck_max = -1;
    f->expect_min_on_target_percent = -1;
    f->expect_committed_within_ms = -1;
    f->rollout_activate_at_ms = -1;
}

int otasim_fleet_parse(const char *text, size_t n, const char *path, struct otasim_fleet_def *ret,
                       struct ota_err *err)
{
    static const char *const keys[] = {"name",     "seed",    "duration", "start",  "devices",
                                       "releases", "rollout", "faults",   "expect", NULL};
    struct otasim_fleet_def *f = ret;
    long long seed, start;
    json_t *root = NULL;
    int r;

    defaults(f);
    ota_strlcpy(f->path, path ? path : "", sizeof(f->path));
    if ((r = ota_yaml_to_json(text, n, &root, err)) < 0)
        return r;
    seed = (long long)f->seed;
    start = f->start_ms;
    if ((r = otasim_only_keys(root, "fleet", keys, err)) < 0 ||
        (r = otasim_opt_str(root, "fleet", "name", f->name, sizeof(f->name), err)) < 0 ||
        (r = otasim_opt_int(root, "fleet", "seed", 0, INT64_MAX, &seed, err)) < 0 ||
        (r = otasim_opt_int(root, "fleet", "start", 0, INT64_MAX / 2, &start, err)) < 0 ||
        (r = otasim_opt_duration(root, "fleet", "duration", &f->duration_ms, err)) < 0 ||
        (r = parse_devices(json_object_get(root, "devices"), f, err)) < 0 ||
        (r = parse_releases(json_object_get(root, "releases"), f, err)) < 0 ||
        (r = parse_rollout(json_object_get(root, "rollout"), f, err)) < 0 ||
        (r = parse_faults(json_object_get(root, "faults"), f, err)) < 0 ||
        (r = parse_expect(json_object_get(root, "expect"), f, err)) < 0)
        goto out;
    f->seed = (uint64_t)seed;
    f->start_ms = start;
    if (!f->name[0])
        ota_strlcpy(f->name, "fleet", sizeof(f->name));
    if (!f->n_types) {
        ota_strlcpy(f->types[0].value, "rpi3b", sizeof(f->types[0].value));
        f->types[0].share = 1;
        f->n_types = 1;
    }
    if (!f->n_groups) {
        ota_strlcpy(f->groups[0].value, "fleet", sizeof(f->groups[0].value));
        f->groups[0].share = 1;
        f->n_groups = 1;
    }
out:
    json_decref(root);
    if (r < 0)
        otasim_fleet_def_free(f);
    return r;
}

int otasim_fleet_load(const char *path, struct otasim_fleet_def *ret, struct ota_err *err)
{
    char *text = NULL;
    size_t n;
    int r = ota_fs_read_all(path, 1 << 20, &text, &n, err);

    if (r < 0)
        return r;
    r = otasim_fleet_parse(text, n, path, ret, err);
    free(text);
    if (r < 0)
        return ota_err_prefix(err, r, "%s", path);
    return 0;
}

void otasim_fleet_def_free(struct otasim_fleet_def *d)
{
    free(d->rollout_json);
    free(d->server_faults_json);
    d->rollout_json = d->server_faults_json = NULL;
}
