/* The matrix file (scenarios/matrix.yaml): each entry a scenario file and
 * its fault kinds at states or at every persistence point, with what must
 * hold after any of them; each becomes a scenario of the runner. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/yaml.h"
#include "otasim/runner.h"

/* A matrix entry's expectation. The scenario file's expect is for its own
 * fault, so the entry says what must hold after any of its faults:
 *   progress    the offered release ends installed: its version in slot b,
 *               final report success (a good update survives interruption)
 *   rollback    the factory release stays: its version in slot a, final
 *               report failure
 *   invariants  the invariants only (`why` says why nothing more can be)
 * and `unless`: [{found: [STATE...], expect: ..., why: ...}] for the states
 * in which the agent, finding them after the fault, may rightly do
 * otherwise (the checker reads the state from the agent's first line after
 * the fault). */
static int outcome_of(const char *what, const struct otasim_scenario *sc, const char *where,
                      char *version, size_t vcap, char *slot, size_t scap,
                      enum otasim_report_expect *report, struct ota_err *err)
{
    const struct otasim_release *r = NULL;

    if (!what)
        return ota_err_set(err, EINVAL, "%s: want expect: progress, rollback or invariants", where);
    if (strcmp(what, "invariants") == 0) {
        version[0] = slot[0] = '\0';
        *report = OTASIM_EXPECT_REPORT_ANY;
        return 0;
    }
    if (strcmp(what, "progress") == 0)
        r = otasim_scenario_target(sc);
    else if (strcmp(what, "rollback") == 0)
        r = otasim_scenario_factory(sc);
    else
        return ota_err_set(err, EINVAL, "%s: '%s': want progress, rollback or invariants", where,
                           what);
    if (!r)
        return ota_err_set(err, EINVAL, "%s: %s needs %s release in %s", where, what,
                           what[0] == 'p' ? "an offered" : "a factory", sc->name);
    ota_strlcpy(version, r->version, vcap);
    ota_strlcpy(slot, what[0] == 'p' ? "b" : "a", scap); /* the factory is in slot a */
    *report = what[0] == 'p' ? OTASIM_EXPECT_REPORT_SUCCESS : OTASIM_EXPECT_REPORT_FAILURE;
    return 0;
}

static int keys_in(const json_t *o, const char *where, const char *const *allowed,
                   struct ota_err *err)
{
    const char *k;
    json_t *val;

    if (!json_is_object(o))
        return ota_err_set(err, EINVAL, "%s: want a mapping", where);
    json_object_foreach((json_t *)o, k, val)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], k) != 0)
            i++;
        if (!allowed[i])
            return ota_err_set(err, EINVAL, "%s: unknown key '%s'", where, k);
    }
    return 0;
}

static int matrix_expect(const json_t *e, const char *path, size_t i, struct otasim_scenario *sc,
                         struct ota_err *err)
{
    static const char *const ukeys[] = {"found", "expect", "why", NULL};
    struct otasim_expect *x = &sc->expect;
    const char *what = json_string_value(json_object_get(e, "expect"));
    const char *why = json_string_value(json_object_get(e, "why"));
    json_t *unless = json_object_get(e, "unless"), *u;
    char where[PATH_MAX + 64];
    size_t ui;
    int r;

    memset(x, 0, sizeof(*x));
    snprintf(where, sizeof(where), "%s: matrix[%zu].expect", path, i);
    if ((r = outcome_of(what, sc, where, x->version, sizeof(x->version), x->slot, sizeof(x->slot),
                        &x->report, err)) < 0)
        return r;
    if (strcmp(what, "invariants") == 0 && (!why || !*why))
        return ota_err_set(err, EINVAL, "%s: invariants only: say why (why: ...)", where);
    if (unless && (!json_is_array(unless) || json_array_size(unless) > OTASIM_MAX_UNLESS))
        return ota_err_set(err, EINVAL, "%s: matrix[%zu].unless: a list of 1..%d", path, i,
                           OTASIM_MAX_UNLESS);
    json_array_foreach(unless, ui, u)
    {
        struct otasim_expect_unless *xu = &x->unless[ui];
        json_t *found = json_object_get(u, "found"), *st;
        const char *uwhy = json_string_value(json_object_get(u, "why"));
        size_t si;
        snprintf(where, sizeof(where), "%s: matrix[%zu].unless[%zu]", path, i, ui);
        if ((r = keys_in(u, where, ukeys, err)) < 0)
            return r;
        if (!json_is_array(found) || json_array_size(found) < 1 ||
            json_array_size(found) > sizeof(xu->found) / sizeof(xu->found[0]))
            return ota_err_set(err, EINVAL, "%s.found: a list of 1..%zu states", where,
                               sizeof(xu->found) / sizeof(xu->found[0]));
        if (!uwhy || !*uwhy || strlen(uwhy) >= sizeof(xu->why))
            return ota_err_set(err, EINVAL, "%s.why: say why the agent may do otherwise there",
                               where);
        json_array_foreach(found, si, st)
        {
            struct otasim_trigger t;
            char spec[64];
            if (!json_is_string(st) || strlen(json_string_value(st)) >= sizeof(xu->found[0]))
                return ota_err_set(err, EINVAL, "%s.found[%zu]: a state name", where, si);
            snprintf(spec, sizeof(spec), "state:%s", json_string_value(st));
            struct ota_err te = {0};
            if (otasim_trigger_parse(spec, &t, &te) < 0)
                return ota_err_set(err, EINVAL, "%s.found[%zu]: %s", where, si, te.reason);
            ota_strlcpy(xu->found[si], json_string_value(st), sizeof(xu->found[si]));
        }
        xu->n_found = json_array_size(found);
        ota_strlcpy(xu->why, uwhy, sizeof(xu->why));
        if ((r = outcome_of(json_string_value(json_object_get(u, "expect")), sc, where, xu->version,
                            sizeof(xu->version), xu->slot, sizeof(xu->slot), &xu->report, err)) < 0)
            return r;
        x->n_unless = ui + 1;
    }
    return 0;
}

/* matrix.yaml: {matrix: [{scenario: FILE, kinds: [...], states: [...], expect: E} |
 *                        {scenario: FILE, kinds: [...], points: all, expect: E}]}
 * with E and the optional why and unless as matrix_expect reads them. FILE
 * is relative to the matrix file. */
int otasim_runner_add_matrix(struct otasim_runner *r, const char *path, struct ota_err *err)
{
    char *text = NULL, dir[PATH_MAX];
    json_t *root = NULL, *list, *e;
    size_t n, i;
    int rc = 0;

    if ((rc = ota_fs_read_all(path, 1 << 20, &text, &n, err)) < 0)
        return rc;
    if ((rc = ota_yaml_to_json(text, n, &root, err)) < 0)
        goto out;
    ota_strlcpy(dir, path, sizeof(dir));
    if (strrchr(dir, '/'))
        *strrchr(dir, '/') = '\0';
    else
        ota_strlcpy(dir, ".", sizeof(dir));
    list = json_object_get(root, "matrix");
    if (!json_is_array(list)) {
        rc = ota_err_set(err, EINVAL, "%s: want {matrix: [...]}", path);
        goto out;
    }
    json_array_foreach(list, i, e)
    {
        const char *file = json_string_value(json_object_get(e, "scenario"));
        json_t *kinds = json_object_get(e, "kinds"), *states = json_object_get(e, "states");
        json_t *points = json_object_get(e, "points"), *k;
        char sp[PATH_MAX * 2];
        size_t ki;
        static const char *const keys[] = {"scenario", "kinds", "states", "points",
                                           "expect",   "why",   "unless", NULL};
        char where[PATH_MAX + 32];
        snprintf(where, sizeof(where), "%s: matrix[%zu]", path, i);
        if ((rc = keys_in(e, where, keys, err)) < 0)
            goto out;
        if (!file || !json_is_array(kinds) || (!states && !points)) {
            rc = ota_err_set(err, EINVAL,
                             "%s: matrix[%zu] needs scenario, kinds and states or points", path, i);
            goto out;
        }
        snprintf(sp, sizeof(sp), "%s/%s", dir, file);
        json_array_foreach(kinds, ki, k)
        {
            struct otasim_scenario sc;
            enum otasim_fault_kind kind;
            if ((rc = otasim_scenario_load(sp, &sc, err)) < 0)
                goto out;
            if (!json_is_string(k) ||
                (rc = otasim_fault_kind_parse(json_string_value(k), &kind, err)) < 0) {
                otasim_scenario_release(&sc);
                rc = rc < 0 ? rc : ota_err_set(err, EINVAL, "%s: matrix kinds: strings", path);
                goto out;
            }
            memset(&sc.fault, 0, sizeof(sc.fault));
            sc.fault.kind = kind;
            if (states) {
                size_t si;
                json_t *st;
                json_array_foreach(states, si, st)
                {
                    if (si >= OTASIM_MAX_STATES || !json_is_string(st))
                        continue;
                    ota_strlcpy(sc.fault.states[si], json_string_value(st),
                                sizeof(sc.fault.states[si]));
                    sc.fault.n_states = si + 1;
                }
            } else {
                sc.fault.all_points = 1;
                sc.fault.trigger.kind = OTASIM_TRIGGER_POINT;
            }
            if ((rc = matrix_expect(e, path, i, &sc, err)) < 0) {
                otasim_scenario_release(&sc);
                goto out;
            }
            if ((rc = otasim_runner_add(r, &sc, NULL, err)) < 0)
                goto out;
        }
    }
out:
    json_decref(root);
    free(text);
    return rc;
}
