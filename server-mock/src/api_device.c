/* The device face of the fleet API (docs/protocol.md). A device token
 * names exactly one device: it may act only on the {device_id} of the path
 * (401 without a valid token, 403 with another device's). With
 * --tls-client-ca a client certificate names the device too, and must name
 * the same one (devcert.c: 403 otherwise). Bodies are
 * strict: unknown fields and wrong types are 400, and nothing is written.
 *
 * The offer comes from the rollouts (api_rollouts.h); only while no rollout
 * exists at all, it is the newest published
 * release for the device's type that is newer than the device's version of
 * its kind and whose min_version the device meets, unless the device sent
 * a final report (success or failure) for it. update_id = "rel-<id>". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ota/inventory.h"
#include "ota/json.h"
#include "ota/jsonw.h"
#include "ota/manifest.h"
#include "otasrv/api.h"
#include "otasrv/auth.h"
#include "otasrv/events.h"
#include "otasrv/files.h"
#include "otasrv/api_rollouts.h"
#include "otasrv/tz.h"

#define FIELD_MAX 64

/* A string of at most max bytes, printable ASCII. */
static int check_str(const json_t *v, size_t max, int empty_ok)
{
    const char *s = json_string_value(v);
    size_t n;

    if (!json_is_string(v))
        return 0;
    n = json_string_length(v);
    if (n > max || (!empty_ok && n == 0) || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* Optional string field; *ret NULL if absent. */
static int opt_str(const json_t *o, const char *key, size_t max, const char **ret,
                   struct ota_err *err)
{
    const json_t *v = json_object_get(o, key);

    *ret = NULL;
    if (!v)
        return 0;
    if (!check_str(v, max, 1))
        return ota_err_set(err, EINVAL, "field %s: a string of at most %zu characters", key, max);
    *ret = json_string_value(v);
    return 0;
}

/* jansson's JSON_COMPACT | JSON_SORT_KEYS text of v, an object of strings
 * under keys (sorted), written directly (ota/jsonw.h): every check-in sends
 * two of these, and the dump was a tenth of its time. NULL: out of memory. */
static char *kinds_text(const json_t *v, const char *const *keys)
{
    struct ota_jw w = {0};
    char *text = NULL;
    int first = 1;

    ota_jw_raw(&w, "{", 1);
    for (size_t i = 0; keys[i]; i++) {
        const char *s = json_string_value(json_object_get(v, keys[i]));
        if (!s)
            continue;
        ota_jw_member(&w, first ? "" : ",", keys[i], s);
        first = 0;
    }
    ota_jw_raw(&w, "}", 1);
    return ota_jw_finish(&w, &text) == 0 ? text : NULL;
}

/* Optional {"app": str, "rootfs": str} field, as compact JSON text
 * (malloc'ed) in *ret; NULL if absent. */
static int opt_kinds(const json_t *o, const char *key, char **ret, struct ota_err *err)
{
    const json_t *v = json_object_get(o, key);
    static const char *const kinds[] = {"app", "rootfs", NULL};
    const char *k;
    json_t *x;

    *ret = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v) || otasrv_check_keys(v, kinds, NULL) < 0)
        return ota_err_set(err, EINVAL, "field %s: an object with keys app, rootfs", key);
    json_object_foreach((json_t *)v, k, x)
    {
        if (!check_str(x, FIELD_MAX, 1))
            return ota_err_set(err, EINVAL, "field %s.%s: a short string", key, k);
    }
    *ret = kinds_text(v, kinds);
    return *ret ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

static int opt_tags(const json_t *o, char **ret, struct ota_err *err)
{
    const json_t *v = json_object_get(o, "tags");
    size_t i;
    json_t *x;

    *ret = NULL;
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) > 32)
        return ota_err_set(err, EINVAL, "field tags: an array of at most 32 strings");
    json_array_foreach(v, i, x)
    {
        if (!check_str(x, FIELD_MAX, 0))
            return ota_err_set(err, EINVAL, "field tags[%zu]: a non-empty short string", i);
    }
    *ret = json_dumps(v, JSON_COMPACT);
    return *ret ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

/* Optional attributes object (docs/protocol.md "Register"), as compact
 * JSON text with sorted keys (malloc'ed) in *ret; NULL if absent. */
static int opt_attributes(const json_t *o, char **ret, struct ota_err *err)
{
    const json_t *v = json_object_get(o, "attributes");
    const char *k;
    json_t *x;

    *ret = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v) || json_object_size(v) > OTA_ATTR_MAX)
        return ota_err_set(err, EINVAL, "field attributes: an object of at most %d strings",
                           OTA_ATTR_MAX);
    json_object_foreach((json_t *)v, k, x)
    {
        if (!ota_attr_key_valid(k))
            return ota_err_set(err, EINVAL,
                               "field attributes: key '%.40s' is not 1..%d of [a-z0-9_]", k,
                               OTA_ATTR_KEY_MAX);
        if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x) ||
            !ota_attr_value_valid(json_string_value(x)))
            return ota_err_set(err, EINVAL,
                               "field attributes.%s: a string of at most %d printable characters",
                               k, OTA_ATTR_VALUE_MAX);
    }
    *ret = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    return *ret ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

/* Optional timezone: "" (none), a fixed offset or a zone this system knows. */
static int opt_timezone(const json_t *o, const char **ret, struct ota_err *err)
{
    int r = opt_str(o, "timezone", OTA_TZ_MAX, ret, err);

    if (r < 0 || !*ret)
        return r;
    if (!otasrv_tz_known(*ret))
        return ota_err_set(err, EINVAL,
                           "field timezone: '%s' is not UTC, +HH:MM, -HH:MM or a known IANA zone",
                           *ret);
    return 0;
}

/* Inventory fields of a register or checkin body into inv (strings point
 * into o or into the malloc'ed *tags, *versions, *slots, *attrs). */
static int parse_inventory(const json_t *o, struct otasrv_device_inv *inv, char **tags,
                           char **versions, char **slots, char **attrs, struct ota_err *err)
{
    int r;

    if ((r = opt_str(o, "device_type", FIELD_MAX, &inv->type, err)) < 0 ||
        (r = opt_str(o, "group", FIELD_MAX, &inv->group, err)) < 0 ||
        (r = opt_str(o, "state", 32, &inv->state, err)) < 0 || (r = opt_tags(o, tags, err)) < 0 ||
        (r = opt_kinds(o, "versions", versions, err)) < 0 ||
        (r = opt_kinds(o, "slots", slots, err)) < 0 || (r = opt_attributes(o, attrs, err)) < 0 ||
        (r = opt_timezone(o, &inv->timezone, err)) < 0)
        return r;
    inv->attributes = *attrs;
    inv->tags = *tags;
    inv->versions = *versions;
    inv->slots = *slots;
    return 0;
}

static enum otasrv_result do_register(struct otasrv_req *req)
{
    static const char *const keys[] = {"device_id", "device_type", "group",    "tags",
                                       "versions",  "attributes",  "timezone", NULL};
    struct otasrv_srv *srv = req->srv;
    struct otasrv_device_inv inv = {0};
    struct ota_err err = {0};
    char token[65], token_sha[65];
    char *tags = NULL, *versions = NULL, *slots = NULL, *attrs = NULL;
    const char *id;
    json_t *o = NULL;
    enum otasrv_result ret;
    int r, created = 0;

    if (otasrv_enroll_precheck(req, &ret) < 0)
        return ret;
    if (otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (otasrv_check_keys(o, keys, &err) < 0 ||
        parse_inventory(o, &inv, &tags, &versions, &slots, &attrs, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    id = json_string_value(json_object_get(o, "device_id"));
    if (!id || !otasrv_valid_id(id) || strlen(id) >= 64) {
        ret = otasrv_reply_error(req, 400,
                                 "field device_id: required, [A-Za-z0-9][A-Za-z0-9._+-]{0,62}");
        goto out;
    }
    if (!inv.type || !inv.type[0]) {
        ret = otasrv_reply_error(req, 400, "field device_type: required");
        goto out;
    }
    /* the certificate first: a refused one must not use up a re-enrollment approval */
    if (otasrv_devcert_check(req, id, &ret) < 0 || otasrv_enroll_authorize(req, id, &ret) < 0 ||
        otasrv_device_rate_check(req, id, &ret) < 0)
        goto out;
    if (otasrv_random_hex(token, 32) < 0 || otasrv_sha_hex(token, token_sha) < 0) {
        ret = otasrv_reply_error(req, 500, "cannot make a token");
        goto out;
    }
    r = otasrv_store_device_register(srv->store, id, token_sha, &inv, otasrv_now_ms(), &created,
                                     &err);
    if (r < 0) {
        ret = otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    otasrv_events_publish(
        srv->events, NULL, "device_registered",
        json_pack("{s:s, s:s, s:b}", "device", id, "device_type", inv.type, "created", created));
    ret = otasrv_reply_json(req, created ? 201 : 200,
                            json_pack("{s:s, s:s}", "device_id", id, "token", token));
out:
    free(tags);
    free(versions);
    free(slots);
    free(attrs);
    json_decref(o);
    return ret;
}

/* 0 if the Bearer token is the token of device id; else replies. */
static int device_auth(struct otasrv_req *req, const char *id, enum otasrv_result *ret)
{
    char sha[65], who[129];

    if (otasrv_bearer_sha(req, sha) < 0 ||
        otasrv_store_device_by_token(req->srv->store, sha, who, sizeof(who), NULL) < 0) {
        *ret = otasrv_reply_error(req, 401, "bad or missing device token");
        return -EACCES;
    }
    if (strcmp(who, id) != 0) {
        *ret = otasrv_reply_error(req, 403, "this token is not the token of device %s", id);
        return -EPERM;
    }
    if (otasrv_devcert_check(req, id, ret) < 0)
        return -EPERM;
    return otasrv_device_rate_check(req, id, ret);
}

/* The offer for a device (brief: its stored inventory); *ret NULL if none.
 * The releases and their manifests come from the store's cache. */
static int find_offer(struct otasrv_req *req, const char *id,
                      const struct otasrv_device_brief *brief, json_t **ret, struct ota_err *err)
{
    struct otasrv_published_set *set = NULL;
    json_t *offer = NULL;
    int r;

    if ((r = otasrv_store_published(req->srv->store, &set, err)) < 0)
        return r;
    for (size_t i = 0; i < set->n && !offer; i++) {
        const struct otasrv_published *p = &set->v[i];
        const char *cur;
        char update_id[80], base[512], url[1200];
        int fin = 0;

        if (!p->rel.payload_path[0] || !p->manifest_ok || p->m.rollback)
            continue;
        cur = brief->version[p->m.kind];
        if (!cur[0] || ota_manifest_check_device(&p->m, brief->type, cur, NULL) < 0)
            continue;
        snprintf(update_id, sizeof(update_id), "rel-%s", p->rel.id);
        if ((r = otasrv_store_report_final(req->srv->store, id, update_id, &fin, err)) < 0)
            goto out;
        if (fin)
            continue;
        otasrv_base_url(req, base, sizeof(base));
        snprintf(url, sizeof(url), "%s/api/v1/releases/%s/payload", base, p->rel.id);
        offer = json_pack("{s:s, s:n, s:s, s:s, s:s, s:s}", "update_id", update_id, "rollout_id",
                          "release_id", p->rel.id, "manifest", p->rel.manifest, "signature",
                          p->rel.signature, "url", url);
        if (!offer) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
    *ret = offer;
out:
    otasrv_store_published_put(req->srv->store, set);
    return r;
}

static enum otasrv_result do_checkin(struct otasrv_req *req, const char *id)
{
    static const char *const keys[] = {"device_type", "group", "state",      "versions",
                                       "slots",       "tags",  "attributes", "timezone",
                                       "update_id",   NULL};
    struct otasrv_device_inv inv = {0};
    struct otasrv_device_brief brief;
    struct ota_err err = {0};
    char *tags = NULL, *versions = NULL, *slots = NULL, *attrs = NULL;
    json_t *o = NULL, *offer = NULL;
    enum otasrv_result ret;
    int r;

    if (device_auth(req, id, &ret) < 0 || otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (otasrv_check_keys(o, keys, &err) < 0 ||
        parse_inventory(o, &inv, &tags, &versions, &slots, &attrs, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    if ((r = otasrv_store_device_checkin(req->srv->store, id, &inv, otasrv_now_ms(), &brief,
                                         &err)) < 0 ||
        (r = otasrv_rollouts_offer(req, id, &offer, &err)) < 0 ||
        (r == 0 && (r = find_offer(req, id, &brief, &offer, &err)) < 0)) {
        ret = otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    if (offer && json_object_get(offer, "update")) /* blue_green standby: the whole answer */
        ret = otasrv_reply_json(req, 200, offer);
    else
        ret =
            otasrv_reply_json(req, 200, json_pack("{s:o}", "update", offer ? offer : json_null()));
out:
    free(tags);
    free(versions);
    free(slots);
    free(attrs);
    json_decref(o);
    return ret;
}

static enum otasrv_result do_status(struct otasrv_req *req, const char *id)
{
    static const char *const keys[] = {"update_id", "rollout_id", "version", "kind", "state",
                                       "status",    "reason",     "ts",      NULL};
    struct otasrv_report_in rep = {0};
    struct ota_err err = {0};
    json_t *o = NULL, *ts;
    enum otasrv_result ret;
    int r, dup = 0;

    if (device_auth(req, id, &ret) < 0 || otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (otasrv_check_keys(o, keys, &err) < 0 ||
        opt_str(o, "update_id", FIELD_MAX, &rep.update_id, &err) < 0 ||
        opt_str(o, "rollout_id", FIELD_MAX, &rep.rollout_id, &err) < 0 ||
        opt_str(o, "version", FIELD_MAX, &rep.version, &err) < 0 ||
        opt_str(o, "kind", 16, &rep.kind, &err) < 0 ||
        opt_str(o, "state", 32, &rep.state, &err) < 0 ||
        opt_str(o, "status", 16, &rep.status, &err) < 0 ||
        opt_str(o, "reason", 1024, &rep.reason, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    if (!rep.update_id || !rep.update_id[0] || !rep.state || !rep.state[0] || !rep.status) {
        ret = otasrv_reply_error(req, 400, "fields update_id, state and status are required");
        goto out;
    }
    if (strcmp(rep.status, "in_progress") != 0 && strcmp(rep.status, "success") != 0 &&
        strcmp(rep.status, "failure") != 0) {
        ret = otasrv_reply_error(req, 400, "field status: in_progress, success or failure");
        goto out;
    }
    ts = json_object_get(o, "ts");
    if (ts && (!json_is_integer(ts) || json_integer_value(ts) < 0)) {
        ret = otasrv_reply_error(req, 400, "field ts: an integer >= 0 (unix ms)");
        goto out;
    }
    rep.ts = ts ? (int64_t)json_integer_value(ts) : 0;
    r = otasrv_store_report_add(req->srv->store, id, &rep, otasrv_now_ms(), &dup, &err);
    if (r == 0 && !dup)
        r = otasrv_rollouts_report(req->srv, id, rep.update_id, rep.rollout_id, rep.state,
                                   rep.status, &err);
    if (r < 0) {
        ret = otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    ret = otasrv_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
out:
    json_decref(o);
    return ret;
}

/* GET|HEAD /api/v1/releases/{id}/{file}: any device's token (published
 * releases; with its certificate, devcert.c) or an admin token (any release). */
static enum otasrv_result do_download(struct otasrv_req *req, const char *rid, const char *name)
{
    struct ota_err err = {0};
    struct otasrv_release *rel = NULL;
    char sha[65], who[129], path[4400];
    enum otasrv_result ret;
    int admin = 0;

    if (otasrv_bearer_sha(req, sha) < 0)
        return otasrv_reply_error(req, 401, "device token required");
    if (otasrv_store_device_by_token(req->srv->store, sha, who, sizeof(who), NULL) < 0) {
        if (otasrv_admin_role_of(req->srv, sha) == OTASRV_ROLE_NONE) /* GET: either role */
            return otasrv_reply_error(req, 401, "bad device token");
        admin = 1;
    } else if (otasrv_devcert_check(req, who, &ret) < 0 ||
               otasrv_device_rate_check(req, who, &ret) < 0) {
        return ret;
    }
    if (!otasrv_valid_id(rid) || otasrv_store_release_get(req->srv->store, rid, &rel, &err) < 0 ||
        (!rel->published && !admin)) {
        otasrv_release_free(rel);
        return otasrv_reply_error(req, 404, "no release %s", rid);
    }
    if (otasrv_files_release_path(req->srv, rel, name, path, sizeof(path)) < 0)
        ret = otasrv_reply_error(req, 404, "no file %s in release %s", name, rid);
    else
        ret = otasrv_files_serve(req, path, NULL);
    otasrv_release_free(rel);
    return ret;
}

enum otasrv_result otasrv_api_device_handle(struct otasrv_req *req)
{
    const char *const *s = req->seg;
    int post = strcmp(req->method, "POST") == 0;

    if (strcmp(s[2], "releases") == 0)
        return do_download(req, s[3], s[4]);
    if (!post)
        return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
    if (req->nseg == 4)
        return do_register(req);
    if (!otasrv_valid_id(s[3]))
        return otasrv_reply_error(req, 404, "no device %s", s[3]);
    if (strcmp(s[4], "checkin") == 0)
        return do_checkin(req, s[3]);
    return do_status(req, s[3]);
}
