/* Fault plans: the admin views (describe, the log of applied faults) and the
 * access-log line of an applied fault. */
#include "faultplan_impl.h"
#include "ota/json.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A JSON string even from bytes that are not UTF-8 (a request path, or one
 * cut by the ring's fixed buffers): those bytes become '?'. */
static json_t *jstr(const char *s)
{
    json_t *v;
    char *copy;

    if (!s)
        return json_null();
    v = json_string(s);
    if (v)
        return v;
    copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

static int set(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v);
}

static json_t *entry_json(const struct otasrv_fault_decision *d, uint64_t request_id, uint64_t ts,
                          const char *method, const char *path, const char *device,
                          const char *release)
{
    const struct otasrv_fault *f = &d->fault;
    json_t *o = json_object();
    int rc = 0;

    if (!o)
        return NULL;
    rc |= set(o, "ts", json_integer((json_int_t)ts));
    rc |= set(o, "request_id", json_integer((json_int_t)request_id));
    rc |= set(o, "rule", jstr(d->rule));
    rc |= set(o, "kind", json_string(otasrv_fault_kind_name(f->kind)));
    rc |= set(o, "match", json_integer((json_int_t)d->match));
    rc |= set(o, "method", jstr(method));
    rc |= set(o, "path", jstr(path));
    rc |= set(o, "device", jstr(device));
    rc |= set(o, "release", jstr(release));
    switch (f->kind) {
    case OTASRV_FAULT_STATUS:
        rc |= set(o, "code", json_integer(f->code));
        if (f->retry_after >= 0)
            rc |= set(o, "retry_after", json_integer(f->retry_after));
        break;
    case OTASRV_FAULT_DELAY:
        rc |= set(o, "ms", json_integer(f->ms));
        break;
    case OTASRV_FAULT_STALL:
        rc |= set(o, "after_bytes", json_integer((json_int_t)f->after_bytes));
        rc |= set(o, "ms", json_integer(f->ms));
        break;
    case OTASRV_FAULT_TRUNCATE:
        rc |= set(o, "after_bytes", json_integer((json_int_t)f->after_bytes));
        break;
    case OTASRV_FAULT_CORRUPT:
        rc |= set(o, "offset", json_integer((json_int_t)f->offset));
        rc |= set(o, "length", json_integer((json_int_t)f->length));
        break;
    case OTASRV_FAULT_WRONG_LENGTH:
        rc |= set(o, "delta", json_integer(f->delta));
        break;
    case OTASRV_FAULT_THROTTLE:
        rc |= set(o, "bytes_per_s", json_integer((json_int_t)f->bytes_per_s));
        break;
    case OTASRV_FAULT_CONTENT_RANGE:
        if (f->text[0])
            rc |= set(o, "text", jstr(f->text));
        else
            rc |= set(o, "total_delta", json_integer(f->delta));
        break;
    case OTASRV_FAULT_REDIRECT:
        rc |= set(o, "location", jstr(f->text));
        rc |= set(o, "code", json_integer(f->code));
        break;
    default:
        break;
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int otasrv_faultplan_log_json(const struct otasrv_fault_decision *d, uint64_t request_id,
                              const struct otasrv_request_info *req, char **ret)
{
    static const struct otasrv_request_info none;
    json_t *o;
    int rc;

    if (!req)
        req = &none;
    o = entry_json(d, request_id, req->now_ms, req->method, req->path, req->device, req->release);
    if (!o)
        return -ENOMEM;
    rc = ota_json_dump(o, ret);
    json_decref(o);
    return rc;
}

int otasrv_faultplan_log_list(struct otasrv_faultplan *plan, json_t **ret, uint64_t *ret_total,
                              struct ota_err *err)
{
    json_t *arr = json_array();
    uint64_t total;
    int rc = 0;

    if (!arr)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_lock(&plan->lock);
    total = plan->total;
    for (size_t i = 0; i < plan->len && rc == 0; i++) {
        size_t slot = (plan->next + OTASRV_FAULTLOG_CAP - plan->len + i) % OTASRV_FAULTLOG_CAP;
        const struct log_entry *e = &plan->ring[slot];
        json_t *o = entry_json(&e->d, e->request_id, e->ts, e->has_method ? e->method : NULL,
                               e->has_path ? e->path : NULL, e->has_device ? e->device : NULL,
                               e->has_release ? e->release : NULL);
        if (!o || json_array_append_new(arr, o) < 0)
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&plan->lock);
    if (rc < 0) {
        json_decref(arr);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    *ret = arr;
    if (ret_total)
        *ret_total = total;
    return 0;
}

void otasrv_faultplan_log_clear(struct otasrv_faultplan *plan)
{
    if (!plan)
        return;
    pthread_mutex_lock(&plan->lock);
    plan->next = 0;
    plan->len = 0;
    plan->total = 0;
    pthread_mutex_unlock(&plan->lock);
}

int otasrv_faultplan_describe(struct otasrv_faultplan *plan, json_t **ret, struct ota_err *err)
{
    json_t *o = json_object();
    json_t *rules = json_array();
    int rc = 0;

    if (!o || !rules) {
        rc = -ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&plan->lock);
    if (set(o, "seed", json_integer((json_int_t)plan->seed)) < 0 ||
        set(o, "rules", json_incref(rules)) < 0)
        rc = -ENOMEM;
    for (size_t i = 0; i < plan->nrules && rc == 0; i++) {
        const struct rule *r = &plan->rules[i];
        json_t *copy = json_deep_copy(r->source);

        if (!copy || set(copy, "matched", json_integer((json_int_t)r->matched)) < 0 ||
            set(copy, "applied", json_integer((json_int_t)r->applied)) < 0 ||
            json_array_append_new(rules, copy) < 0)
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&plan->lock);
out:
    json_decref(rules);
    if (rc < 0) {
        json_decref(o);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    *ret = o;
    return 0;
}
