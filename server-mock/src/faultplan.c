/* Fault plans. Both syntaxes end in one jansson tree (YAML through the
 * project's one YAML reader, ota/yaml.h) and one validator, so a JSON plan and its
 * YAML twin cannot behave differently. Matching holds the plan's mutex for
 * the whole walk: rules are few and cheap, and one lock makes the per-rule
 * counters, the count budgets and the log ring consistent with each other. */
#include "faultplan_impl.h"
#include "ota/json.h"
#include "ota/yaml.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kind_spec {
    const char *name;
    const char *keys[4]; /* allowed keys, NULL-terminated */
};

static const struct kind_spec kinds[OTASRV_FAULT_KIND_MAX] = {
    [OTASRV_FAULT_NONE] = {"none", {NULL}},
    [OTASRV_FAULT_STATUS] = {"status", {"kind", "code", "retry_after", NULL}},
    [OTASRV_FAULT_DELAY] = {"delay", {"kind", "ms", NULL}},
    [OTASRV_FAULT_STALL] = {"stall", {"kind", "after_bytes", "ms", NULL}},
    [OTASRV_FAULT_TRUNCATE] = {"truncate", {"kind", "after_bytes", NULL}},
    [OTASRV_FAULT_RESET] = {"reset", {"kind", NULL}},
    [OTASRV_FAULT_CORRUPT] = {"corrupt", {"kind", "offset", "length", NULL}},
    [OTASRV_FAULT_WRONG_LENGTH] = {"wrong_length", {"kind", "delta", NULL}},
    [OTASRV_FAULT_IGNORE_RANGE] = {"ignore_range", {"kind", NULL}},
    [OTASRV_FAULT_THROTTLE] = {"throttle", {"kind", "bytes_per_s", NULL}},
    [OTASRV_FAULT_CONTENT_RANGE] = {"content_range", {"kind", "total_delta", "text", NULL}},
    [OTASRV_FAULT_REDIRECT] = {"redirect", {"kind", "location", "code", NULL}},
    [OTASRV_FAULT_ECHO] = {"echo", {"kind", NULL}},
};

static const char *const plan_keys[] = {"seed", "rules", NULL};
static const char *const rule_keys[] = {"id", "match", "fault", "count", NULL};
static const char *const match_keys[] = {"path",  "method", "device",      "release", "nth",
                                         "after", "every",  "probability", NULL};

const char *otasrv_fault_kind_name(enum otasrv_fault_kind kind)
{
    if ((int)kind < 0 || kind >= OTASRV_FAULT_KIND_MAX)
        return "?";
    return kinds[kind].name;
}

/* ---- validation ---------------------------------------------------------- */

static void join_keys(const char *const *keys, char *buf, size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; keys[i] && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", keys[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int check_keys(const json_t *obj, const char *where, const char *const *allowed,
                      struct ota_err *err)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        char list[256];

        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (ok)
            continue;
        join_keys(allowed, list, sizeof(list));
        return ota_err_set(err, EINVAL, "%s: unknown key '%s' (expected %s)", where, key, list);
    }
    return 0;
}

/* Integer field in [min, max]. Absent: *ret_present 0 (an error if required). */
static int get_int(const json_t *obj, const char *where, const char *key, int64_t min, int64_t max,
                   int required, int64_t *ret, int *ret_present, struct ota_err *err)
{
    const json_t *v = json_object_get(obj, key);
    int64_t x;

    if (!v) {
        if (required)
            return ota_err_set(err, EINVAL, "%s: missing '%s'", where, key);
        *ret = 0;
        if (ret_present)
            *ret_present = 0;
        return 0;
    }
    if (!json_is_integer(v))
        return ota_err_set(err, EINVAL, "%s: '%s' must be an integer", where, key);
    x = json_integer_value(v);
    if (x < 0 && min >= 0)
        return ota_err_set(err, EINVAL, "%s: '%s' must not be negative (got %lld)", where, key,
                           (long long)x);
    if (x < min || x > max)
        return ota_err_set(err, EINVAL, "%s: '%s' must be between %lld and %lld (got %lld)", where,
                           key, (long long)min, (long long)max, (long long)x);
    *ret = x;
    if (ret_present)
        *ret_present = 1;
    return 0;
}

/* String field of 1..cap-1 bytes without control characters; *ret borrows
 * from obj, NULL when absent and not required. */
static int get_str(const json_t *obj, const char *where, const char *key, size_t cap, int required,
                   const char **ret, struct ota_err *err)
{
    const json_t *v = json_object_get(obj, key);
    const char *s;
    size_t n;

    if (!v) {
        if (required)
            return ota_err_set(err, EINVAL, "%s: missing '%s'", where, key);
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return ota_err_set(err, EINVAL, "%s: '%s' must be a string", where, key);
    s = json_string_value(v);
    n = json_string_length(v);
    if (n == 0)
        return ota_err_set(err, EINVAL, "%s: '%s' is empty", where, key);
    if (n >= cap)
        return ota_err_set(err, EINVAL, "%s: '%s' is too long (%zu bytes, limit %zu)", where, key,
                           n, cap - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return ota_err_set(err, EINVAL, "%s: '%s' holds a control character", where, key);
    *ret = s;
    return 0;
}

static int dup_str(const char *s, char **ret, struct ota_err *err)
{
    if (!s) {
        *ret = NULL;
        return 0;
    }
    *ret = strdup(s);
    if (!*ret)
        return ota_err_set(err, ENOMEM, "out of memory");
    return 0;
}

static int parse_match(const json_t *m, const char *where, struct rule *r, struct ota_err *err)
{
    const char *path, *method, *device, *release;
    const json_t *p;
    int64_t x;
    int has_nth, has_after, has_every;
    int rc;

    r->probability = 1.0;
    if (!m)
        return 0;
    if (!json_is_object(m))
        return ota_err_set(err, EINVAL, "%s: must be a mapping", where);
    rc = check_keys(m, where, match_keys, err);
    if (rc < 0)
        return rc;

    rc = get_str(m, where, "path", PATH_CAP, 0, &path, err);
    if (rc < 0)
        return rc;
    if (path && path[0] != '/' && path[0] != '*')
        return ota_err_set(err, EINVAL, "%s: 'path' must start with '/' or '*' (got '%s')", where,
                           path);
    rc = get_str(m, where, "method", METHOD_CAP, 0, &method, err);
    if (rc < 0)
        return rc;
    if (method) {
        size_t i;
        for (i = 0; method[i]; i++) {
            char c = method[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                return ota_err_set(err, EINVAL, "%s: 'method' must be letters only (got '%s')",
                                   where, method);
            r->method[i] = (char)(c >= 'a' ? c - 'a' + 'A' : c);
        }
        r->method[i] = '\0';
    }
    rc = get_str(m, where, "device", NAME_CAP, 0, &device, err);
    if (rc < 0)
        return rc;
    rc = get_str(m, where, "release", NAME_CAP, 0, &release, err);
    if (rc < 0)
        return rc;

    rc = get_int(m, where, "nth", 1, BIG, 0, &x, &has_nth, err);
    if (rc < 0)
        return rc;
    r->nth = (uint64_t)x;
    rc = get_int(m, where, "after", 0, BIG, 0, &x, &has_after, err);
    if (rc < 0)
        return rc;
    r->after = (uint64_t)x;
    rc = get_int(m, where, "every", 1, BIG, 0, &x, &has_every, err);
    if (rc < 0)
        return rc;
    r->every = (uint64_t)x;
    if (has_nth && (has_after || has_every))
        return ota_err_set(err, EINVAL, "%s: 'nth' cannot be combined with 'after' or 'every'",
                           where);

    p = json_object_get(m, "probability");
    if (p) {
        if (!json_is_number(p))
            return ota_err_set(err, EINVAL, "%s: 'probability' must be a number", where);
        r->probability = json_number_value(p);
        if (!(r->probability >= 0.0 && r->probability <= 1.0))
            return ota_err_set(err, EINVAL, "%s: 'probability' must be between 0 and 1 (got %g)",
                               where, r->probability);
    }

    rc = dup_str(path, &r->path, err);
    if (rc == 0)
        rc = dup_str(device, &r->device, err);
    if (rc == 0)
        rc = dup_str(release, &r->release, err);
    return rc;
}

/* content_range: exactly one of total_delta (!= 0) and text. */
static int parse_content_range(const json_t *f, const char *where, struct otasrv_fault *out,
                               struct ota_err *err)
{
    const char *text;
    int64_t x;
    int present;
    int rc;

    rc = get_int(f, where, "total_delta", -BIG, BIG, 0, &x, &present, err);
    if (rc < 0)
        return rc;
    rc = get_str(f, where, "text", OTASRV_FAULT_TEXT_MAX, 0, &text, err);
    if (rc < 0)
        return rc;
    if (present == !!text)
        return ota_err_set(err, EINVAL, "%s: needs exactly one of 'total_delta' and 'text'", where);
    if (present && x == 0)
        return ota_err_set(err, EINVAL, "%s: 'total_delta' must not be 0", where);
    out->delta = x;
    if (text)
        ota_strlcpy(out->text, text, sizeof(out->text));
    return 0;
}

/* redirect: location "/path" or an http(s) URL; code one of the redirects. */
static int parse_redirect(const json_t *f, const char *where, struct otasrv_fault *out,
                          struct ota_err *err)
{
    const char *loc;
    int64_t x;
    int present;
    int rc;

    rc = get_str(f, where, "location", OTASRV_FAULT_TEXT_MAX, 1, &loc, err);
    if (rc < 0)
        return rc;
    if (loc[0] != '/' && strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0)
        return ota_err_set(err, EINVAL,
                           "%s: 'location' must start with '/', 'http://' or 'https://' (got '%s')",
                           where, loc);
    rc = get_int(f, where, "code", 301, 308, 0, &x, &present, err);
    if (rc < 0)
        return rc;
    if (!present)
        x = 302;
    if (x != 301 && x != 302 && x != 303 && x != 307 && x != 308)
        return ota_err_set(err, EINVAL, "%s: 'code' must be 301, 302, 303, 307 or 308 (got %lld)",
                           where, (long long)x);
    out->code = (int)x;
    ota_strlcpy(out->text, loc, sizeof(out->text));
    return 0;
}

static int parse_fault(const json_t *f, const char *where, struct otasrv_fault *ret,
                       struct ota_err *err)
{
    struct otasrv_fault out = {.kind = OTASRV_FAULT_NONE, .retry_after = -1};
    char where2[192];
    const char *kind;
    int64_t x;
    int present;
    int rc;

    if (!f)
        return ota_err_set(err, EINVAL, "%s: missing 'fault'", where);
    if (!json_is_object(f))
        return ota_err_set(err, EINVAL, "%s fault: must be a mapping", where);
    snprintf(where2, sizeof(where2), "%s fault", where);
    rc = get_str(f, where2, "kind", 32, 1, &kind, err);
    if (rc < 0)
        return rc;
    for (int k = OTASRV_FAULT_NONE + 1; k < OTASRV_FAULT_KIND_MAX; k++)
        if (strcmp(kind, kinds[k].name) == 0)
            out.kind = (enum otasrv_fault_kind)k;
    if (out.kind == OTASRV_FAULT_NONE) {
        char list[256];
        size_t used = 0;
        list[0] = '\0';
        for (int k = OTASRV_FAULT_NONE + 1; k < OTASRV_FAULT_KIND_MAX; k++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                     k > OTASRV_FAULT_NONE + 1 ? ", " : "", kinds[k].name);
        return ota_err_set(err, EINVAL, "%s: unknown kind '%s' (expected %s)", where2, kind, list);
    }
    snprintf(where2, sizeof(where2), "%s fault (%s)", where, kind);
    rc = check_keys(f, where2, kinds[out.kind].keys, err);
    if (rc < 0)
        return rc;

    switch (out.kind) {
    case OTASRV_FAULT_STATUS:
        rc = get_int(f, where2, "code", 400, 599, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.code = (int)x;
        rc = get_int(f, where2, "retry_after", 0, 86400, 0, &x, &present, err);
        if (rc < 0)
            return rc;
        out.retry_after = present ? (int)x : -1;
        break;
    case OTASRV_FAULT_DELAY:
        rc = get_int(f, where2, "ms", 0, 600000, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.ms = (uint32_t)x;
        break;
    case OTASRV_FAULT_STALL:
        rc = get_int(f, where2, "ms", 0, 600000, 0, &x, &present, err);
        if (rc < 0)
            return rc;
        out.ms = present ? (uint32_t)x : OTASRV_FAULT_STALL_MS;
        __attribute__((fallthrough)); /* stall cuts like truncate */
    case OTASRV_FAULT_TRUNCATE:
        rc = get_int(f, where2, "after_bytes", 0, BIG, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.after_bytes = (uint64_t)x;
        break;
    case OTASRV_FAULT_CORRUPT:
        rc = get_int(f, where2, "offset", 0, BIG, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.offset = (uint64_t)x;
        rc = get_int(f, where2, "length", 1, BIG, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.length = (uint64_t)x;
        break;
    case OTASRV_FAULT_WRONG_LENGTH:
        rc = get_int(f, where2, "delta", -BIG, BIG, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        if (x == 0)
            return ota_err_set(err, EINVAL, "%s: 'delta' must not be 0", where2);
        out.delta = x;
        break;
    case OTASRV_FAULT_THROTTLE:
        rc = get_int(f, where2, "bytes_per_s", 1, (int64_t)1 << 40, 1, &x, NULL, err);
        if (rc < 0)
            return rc;
        out.bytes_per_s = (uint64_t)x;
        break;
    case OTASRV_FAULT_CONTENT_RANGE:
        rc = parse_content_range(f, where2, &out, err);
        if (rc < 0)
            return rc;
        break;
    case OTASRV_FAULT_REDIRECT:
        rc = parse_redirect(f, where2, &out, err);
        if (rc < 0)
            return rc;
        break;
    default: /* reset, ignore_range, echo: no parameters */
        break;
    }
    *ret = out;
    return 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
    return h;
}

static int parse_rule(const json_t *jr, size_t idx, struct rule *r, struct ota_err *err)
{
    char where[128], where2[160];
    const char *id;
    int64_t x;
    int rc;

    snprintf(where, sizeof(where), "rules[%zu]", idx);
    if (!json_is_object(jr))
        return ota_err_set(err, EINVAL, "%s: must be a mapping", where);
    rc = check_keys(jr, where, rule_keys, err);
    if (rc < 0)
        return rc;
    rc = get_str(jr, where, "id", OTASRV_FAULT_ID_MAX, 1, &id, err);
    if (rc < 0)
        return rc;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            return ota_err_set(
                err, EINVAL, "%s: 'id' may hold only letters, digits, '.', '_' and '-' (got '%s')",
                where, id);
    ota_strlcpy(r->id, id, sizeof(r->id));
    r->id_hash = fnv1a(r->id);
    snprintf(where, sizeof(where), "rules[%zu] (%s)", idx, r->id);

    snprintf(where2, sizeof(where2), "%s match", where);
    rc = parse_match(json_object_get(jr, "match"), where2, r, err);
    if (rc < 0)
        return rc;
    rc = parse_fault(json_object_get(jr, "fault"), where, &r->fault, err);
    if (rc < 0)
        return rc;
    rc = get_int(jr, where, "count", 1, BIG, 0, &x, NULL, err);
    if (rc < 0)
        return rc;
    r->count = (uint64_t)x;

    r->source = json_deep_copy(jr);
    if (!r->source)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (r->method[0]) {
        json_t *m = json_object_get(r->source, "match");
        if (json_object_set_new(m, "method", json_string(r->method)) < 0)
            return ota_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

static int build_plan(const json_t *root, struct otasrv_faultplan *p, struct ota_err *err)
{
    const json_t *rules;
    int64_t seed;
    size_t n;
    int rc;

    if (!json_is_object(root))
        return ota_err_set(err, EINVAL, "plan: must be a mapping");
    rc = check_keys(root, "plan", plan_keys, err);
    if (rc < 0)
        return rc;
    rc = get_int(root, "plan", "seed", 0, INT64_MAX, 0, &seed, NULL, err);
    if (rc < 0)
        return rc;
    p->seed = (uint64_t)seed;
    rules = json_object_get(root, "rules");
    if (!rules)
        return ota_err_set(err, EINVAL, "plan: missing 'rules'");
    if (!json_is_array(rules))
        return ota_err_set(err, EINVAL, "plan: 'rules' must be a list");
    n = json_array_size(rules);
    if (n > OTASRV_FAULTPLAN_RULES)
        return ota_err_set(err, EINVAL, "plan: too many rules (%zu, limit %d)", n,
                           OTASRV_FAULTPLAN_RULES);
    p->rules = calloc(n ? n : 1, sizeof(*p->rules));
    if (!p->rules)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        p->nrules = i + 1; /* so a half-built rule is freed */
        rc = parse_rule(json_array_get(rules, i), i, &p->rules[i], err);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->rules[j].id, p->rules[i].id) == 0)
                return ota_err_set(err, EINVAL, "rules[%zu]: duplicate id '%s' (see rules[%zu])", i,
                                   p->rules[i].id, j);
    }
    return 0;
}

/* The YAML reader's errors, in a plan's words. */
static int plan_yaml(const char *text, size_t n, json_t **ret, struct ota_err *err)
{
    struct ota_err yerr = {0};
    int rc = ota_yaml_to_json(text, n, ret, &yerr);

    if (rc == -ENODATA)
        return ota_err_set(err, EINVAL, "empty plan");
    if (rc == -E2BIG)
        return ota_err_set(err, EINVAL, "%s: a plan is one YAML document", yerr.reason);
    if (rc < 0)
        return ota_err_set(err, -rc, "%s", yerr.reason);
    return 0;
}

/* ---- plan object --------------------------------------------------------- */

static struct otasrv_faultplan *plan_alloc(void)
{
    struct otasrv_faultplan *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->ring = calloc(OTASRV_FAULTLOG_CAP, sizeof(*p->ring));
    if (!p->ring || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p->ring);
        free(p);
        return NULL;
    }
    return p;
}

static void rules_free(struct rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rules[i].path);
        free(rules[i].device);
        free(rules[i].release);
        json_decref(rules[i].source);
    }
    free(rules);
}

void otasrv_faultplan_free(struct otasrv_faultplan *plan)
{
    if (!plan)
        return;
    rules_free(plan->rules, plan->nrules);
    free(plan->ring);
    pthread_mutex_destroy(&plan->lock);
    free(plan);
}

int otasrv_faultplan_new(struct otasrv_faultplan **ret, struct ota_err *err)
{
    struct otasrv_faultplan *p = plan_alloc();

    if (!p)
        return ota_err_set(err, ENOMEM, "out of memory");
    *ret = p;
    return 0;
}

enum otasrv_plan_format otasrv_faultplan_format_from_name(const char *name)
{
    const char *dot = name ? strrchr(name, '.') : NULL;

    if (!dot)
        return OTASRV_PLAN_AUTO;
    if (strcasecmp(dot, ".json") == 0)
        return OTASRV_PLAN_JSON;
    if (strcasecmp(dot, ".yaml") == 0 || strcasecmp(dot, ".yml") == 0)
        return OTASRV_PLAN_YAML;
    return OTASRV_PLAN_AUTO;
}

int otasrv_faultplan_parse(const char *text, size_t n, enum otasrv_plan_format fmt,
                           struct otasrv_faultplan **ret, struct ota_err *err)
{
    struct otasrv_faultplan *p = NULL;
    json_t *root = NULL;
    int rc;

    if (!text && n)
        return ota_err_set(err, EINVAL, "no plan text");
    if (n > OTASRV_FAULTPLAN_MAX)
        return ota_err_set(err, EFBIG, "fault plan is too large (%zu bytes, limit %d)", n,
                           OTASRV_FAULTPLAN_MAX);
    if (!text)
        text = "";
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3, n -= 3;
    if (fmt == OTASRV_PLAN_AUTO) {
        size_t i = 0;
        while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
            i++;
        fmt = i < n && text[i] == '{' ? OTASRV_PLAN_JSON : OTASRV_PLAN_YAML;
    }
    if (fmt == OTASRV_PLAN_JSON)
        rc = ota_json_parse(text, n, &root, err);
    else
        rc = plan_yaml(text, n, &root, err);
    if (rc < 0)
        goto out;
    p = plan_alloc();
    if (!p) {
        rc = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    rc = build_plan(root, p, err);
    if (rc < 0)
        goto out;
    *ret = p;
    p = NULL;
out:
    json_decref(root);
    otasrv_faultplan_free(p);
    return rc;
}

void otasrv_faultplan_swap(struct otasrv_faultplan *live, struct otasrv_faultplan *next)
{
    struct rule *rules;
    uint64_t seed;
    size_t n;

    if (!live || !next || live == next)
        return;
    pthread_mutex_lock(&live->lock);
    rules = live->rules;
    n = live->nrules;
    seed = live->seed;
    live->rules = next->rules;
    live->nrules = next->nrules;
    live->seed = next->seed;
    pthread_mutex_unlock(&live->lock);
    next->rules = rules;
    next->nrules = n;
    next->seed = seed;
}

/* ---- matching ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* The k-th draw of a rule, uniform in [0, 1): a pure function of (seed, rule
 * id, k), so neither thread timing nor other rules can change it. */
static double draw(uint64_t seed, uint64_t id_hash, uint64_t k)
{
    uint64_t h = mix64(mix64(mix64(seed) ^ id_hash) ^ k);

    return (double)(h >> 11) * 0x1p-53;
}

static int filters_pass(const struct rule *r, const struct otasrv_request_info *req)
{
    if (r->path && (!req->path || fnmatch(r->path, req->path, 0) != 0))
        return 0;
    if (r->method[0] && (!req->method || strcasecmp(r->method, req->method) != 0))
        return 0;
    if (r->device && (!req->device || strcmp(r->device, req->device) != 0))
        return 0;
    if (r->release && (!req->release || strcmp(r->release, req->release) != 0))
        return 0;
    return 1;
}

static int fires(uint64_t seed, const struct rule *r, uint64_t k)
{
    if (r->count && r->applied >= r->count)
        return 0;
    if (r->nth && k != r->nth)
        return 0;
    if (k <= r->after)
        return 0;
    if (r->every && (k - r->after) % r->every != 0)
        return 0;
    if (r->probability < 1.0 && !(draw(seed, r->id_hash, k) < r->probability))
        return 0;
    return 1;
}

static void copy_opt(char *dst, size_t cap, const char *src, int *ret_has)
{
    *ret_has = src != NULL;
    ota_strlcpy(dst, src ? src : "", cap);
}

static void record(struct otasrv_faultplan *p, const struct otasrv_fault_decision *d,
                   uint64_t request_id, const struct otasrv_request_info *req)
{
    struct log_entry *e = &p->ring[p->next];

    e->d = *d;
    e->request_id = request_id;
    e->ts = req->now_ms;
    copy_opt(e->method, sizeof(e->method), req->method, &e->has_method);
    copy_opt(e->path, sizeof(e->path), req->path, &e->has_path);
    copy_opt(e->device, sizeof(e->device), req->device, &e->has_device);
    copy_opt(e->release, sizeof(e->release), req->release, &e->has_release);
    p->next = (p->next + 1) % OTASRV_FAULTLOG_CAP;
    if (p->len < OTASRV_FAULTLOG_CAP)
        p->len++;
    p->total++;
}

int otasrv_faultplan_match(struct otasrv_faultplan *plan, const struct otasrv_request_info *req,
                           uint64_t request_id, struct otasrv_fault_decision *ret)
{
    struct otasrv_fault_decision d;
    int fired = 0;

    if (!plan || !req)
        return 0;
    pthread_mutex_lock(&plan->lock);
    for (size_t i = 0; i < plan->nrules; i++) {
        struct rule *r = &plan->rules[i];
        uint64_t k;

        if (!filters_pass(r, req))
            continue;
        k = ++r->matched;
        if (fired || !fires(plan->seed, r, k))
            continue;
        r->applied++;
        memset(&d, 0, sizeof(d));
        d.fault = r->fault;
        ota_strlcpy(d.rule, r->id, sizeof(d.rule));
        d.match = k;
        d.applied = r->applied;
        fired = 1;
    }
    if (fired)
        record(plan, &d, request_id, req);
    pthread_mutex_unlock(&plan->lock);
    if (fired)
        *ret = d;
    return fired;
}
