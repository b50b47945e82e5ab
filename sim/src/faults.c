/* Faults that must be seen to fire. A fault the harness armed is not a fault
 * that happened: a server rule can match no request, a disk fault no call.
 * Here the server's side: after a trial, the server's own count of the
 * rules it applied to the trial's device (kept in its database, so a new
 * plan for other cases does not reset it). The checker (invariants.c)
 * turns each rule that never applied into a failed `fault-fired`. */
#include "otasim/sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h"

void otasim_fault_rule_id(const char *base, size_t ci, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s-%zu", base && *base ? base : "rule", ci);
}

static long long applied_of(const json_t *rules, const char *id)
{
    size_t i;
    json_t *r;

    json_array_foreach((json_t *)rules, i, r)
    {
        const char *rid = json_string_value(json_object_get(r, "rule"));
        if (rid && strcmp(rid, id) == 0)
            return (long long)json_integer_value(json_object_get(r, "applied"));
    }
    return 0;
}

void otasim_faults_server_seen(struct otasim_trial *tr)
{
    struct ota_err err = {0};
    char path[256], *text = NULL;
    json_t *o = NULL, *rules;

    tr->srv_rules_why[0] = '\0';
    for (size_t i = 0; i < tr->n_srv_rules; i++)
        tr->srv_rules[i].applied = -1;
    if (tr->n_srv_rules == 0)
        return;
    snprintf(path, sizeof(path), "/api/v1/faults/devices/%s", tr->device_id);
    if (!tr->srv || otasim_server_get(tr->srv, path, &text, &err) < 0 ||
        ota_json_parse(text, strlen(text), &o, &err) < 0) {
        snprintf(tr->srv_rules_why, sizeof(tr->srv_rules_why), "%s",
                 tr->srv ? err.reason : "no server");
        goto out;
    }
    rules = json_object_get(o, "rules");
    if (!json_is_array(rules)) {
        snprintf(tr->srv_rules_why, sizeof(tr->srv_rules_why), "GET %s: no rules list", path);
        goto out;
    }
    for (size_t i = 0; i < tr->n_srv_rules; i++)
        tr->srv_rules[i].applied = applied_of(rules, tr->srv_rules[i].rule);
out:
    json_decref(o);
    free(text);
}
