/* docs/protocol.md in code: the agent's side of the wire format. */
#include "ota/protocol.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ota/json.h"
#include "ota/jsonw.h"

static int dump_and_free(json_t *o, char **ret)
{
    int r;

    if (!o)
        return -ENOMEM;
    r = ota_json_dump(o, ret);
    json_decref(o);
    return r;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* The attributes and time zone, when the device has them: a server older
 * than them refuses unknown fields, so a device without them sends the
 * body it always sent. NULL o passes through (jansson's ENOMEM). */
static json_t *with_extras(json_t *o, const struct ota_inventory *inv)
{
    json_t *a;

    if (!o)
        return NULL;
    if (inv->n_attributes) {
        a = json_object();
        if (!a || json_object_set_new(o, "attributes", a) < 0)
            goto fail;
        for (size_t i = 0; i < inv->n_attributes; i++)
            if (json_object_set_new(a, inv->attributes[i].key,
                                    json_string(inv->attributes[i].value)) < 0)
                goto fail;
    }
    if (inv->timezone && inv->timezone[0] &&
        json_object_set_new(o, "timezone", json_string(inv->timezone)) < 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

int ota_proto_register_body(const struct ota_inventory *inv, char **ret)
{
    return dump_and_free(
        with_extras(json_pack("{s:s, s:s, s:s, s:[], s:{s:s, s:s}}", "device_id",
                              nz(inv->device_id), "device_type", nz(inv->device_type), "group",
                              nz(inv->group), "tags", "versions", "app", nz(inv->app_version),
                              "rootfs", nz(inv->rootfs_version)),
                    inv),
        ret);
}

/* The check-in body is written directly (ota/jsonw.h), not built as jansson
 * objects and dumped: a device sends it at every poll, and a fleet run sends
 * millions (it was a quarter of a check-in's CPU in the core). The same text
 * jansson writes. */
int ota_proto_checkin_body(const struct ota_inventory *inv, char **ret)
{
    struct ota_jw w = {0};

    ota_jw_member(&w, "{", "device_type", inv->device_type);
    ota_jw_member(&w, ",", "group", inv->group);
    ota_jw_member(&w, ",", "state", inv->state);
    ota_jw_member(&w, ",\"versions\":{", "app", inv->app_version);
    ota_jw_member(&w, ",", "rootfs", inv->rootfs_version);
    ota_jw_member(&w, "},\"slots\":{", "app", inv->app_slot);
    ota_jw_member(&w, ",", "rootfs", inv->rootfs_slot);
    ota_jw_raw(&w, "}", 1);
    for (size_t i = 0; i < inv->n_attributes; i++)
        ota_jw_member(&w, i ? "," : ",\"attributes\":{", inv->attributes[i].key,
                      inv->attributes[i].value);
    if (inv->n_attributes)
        ota_jw_raw(&w, "}", 1);
    if (inv->timezone && inv->timezone[0])
        ota_jw_member(&w, ",", "timezone", inv->timezone);
    /* A device waiting in STANDBY says which update it holds. */
    if (inv->update_id && inv->update_id[0])
        ota_jw_member(&w, ",", "update_id", inv->update_id);
    ota_jw_raw(&w, "}", 1);
    return ota_jw_finish(&w, ret);
}

/* [s, e) without the spaces around it, into buf (cap bytes); -1 if longer. */
static int span(const char *s, const char *e, char *buf, size_t cap)
{
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    if ((size_t)(e - s) >= cap)
        return -1;
    memcpy(buf, s, (size_t)(e - s));
    buf[e - s] = '\0';
    return 0;
}

int ota_proto_parse_attributes(const char *text, struct ota_attr *ret, int *ret_n,
                               struct ota_err *err)
{
    struct ota_attr a[OTA_ATTR_MAX];
    const char *p = text, *end, *eq;
    char key[OTA_ATTR_KEY_MAX + 2];
    int n = 0;

    while (*p && isspace((unsigned char)*p))
        p++;
    for (; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        eq = memchr(p, '=', (size_t)(end - p));
        if (!eq)
            return ota_err_set(err, EINVAL, "attributes: '%.*s' is not key=value",
                               (int)(end - p > 40 ? 40 : end - p), p);
        if (n == OTA_ATTR_MAX)
            return ota_err_set(err, EINVAL, "attributes: more than %d", OTA_ATTR_MAX);
        if (span(p, eq, key, sizeof(key)) < 0 || !ota_attr_key_valid(key))
            return ota_err_set(err, EINVAL, "attributes: key '%.*s' is not 1..%d of [a-z0-9_]",
                               (int)(eq - p > 40 ? 40 : eq - p), p, OTA_ATTR_KEY_MAX);
        if (span(eq + 1, end, a[n].value, sizeof(a[n].value)) < 0 ||
            !ota_attr_value_valid(a[n].value))
            return ota_err_set(err, EINVAL,
                               "attributes: the value of %s is not at most %d printable characters",
                               key, OTA_ATTR_VALUE_MAX);
        for (int i = 0; i < n; i++)
            if (strcmp(a[i].key, key) == 0)
                return ota_err_set(err, EINVAL, "attributes: %s is given twice", key);
        memcpy(a[n].key, key, strlen(key) + 1);
        n++;
    }
    memcpy(ret, a, (size_t)n * sizeof(a[0]));
    *ret_n = n;
    return 0;
}

int ota_proto_report_body(const struct ota_report *r, char **ret)
{
    return dump_and_free(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "update_id",
                                   r->update_id, "rollout_id", r->rollout_id, "version", r->version,
                                   "kind", r->kind, "state", r->state, "status", r->status,
                                   "reason", r->reason, "ts", (json_int_t)r->ts_ms),
                         ret);
}

int ota_proto_parse_register(const char *body, size_t n, char *ret_device_id, size_t id_cap,
                             char *ret_token, size_t token_cap, struct ota_err *err)
{
    json_t *o = NULL;
    char id[OTA_ID_LEN], token[256];
    int r;

    r = ota_json_parse(body, n, &o, err);
    if (r < 0)
        return r;
    r = ota_json_str(o, "device_id", id, sizeof(id), err);
    if (r < 0)
        goto out;
    r = ota_json_str(o, "token", token, sizeof(token), err);
    if (r < 0)
        goto out;
    if (!id[0] || !token[0] || strlen(id) >= id_cap || strlen(token) >= token_cap) {
        r = ota_err_set(err, EINVAL, "registration answer has an empty or oversized id/token");
        goto out;
    }
    ota_strlcpy(ret_device_id, id, id_cap);
    ota_strlcpy(ret_token, token, token_cap);
out:
    json_decref(o);
    return r;
}

/* The offer's optional "activation": {"mode": "now"|"wait", "not_after_ms": N}. */
static int parse_activation(const json_t *u, struct ota_offer *off, struct ota_err *err)
{
    const json_t *act = json_object_get(u, "activation"), *na;
    char mode[16];
    int r;

    if (!act || json_is_null(act))
        return 0;
    if (!json_is_object(act))
        return ota_err_set(err, EINVAL, "check-in 'activation' is not an object");
    if ((r = ota_json_str(act, "mode", mode, sizeof(mode), err)) < 0)
        return r;
    if (strcmp(mode, "wait") == 0)
        off->wait_activation = 1;
    else if (strcmp(mode, "now") != 0)
        return ota_err_set(err, EINVAL, "check-in activation mode '%s' is unknown", mode);
    na = json_object_get(act, "not_after_ms");
    if (na && !json_is_null(na)) {
        if (!json_is_integer(na) || json_integer_value(na) < 0)
            return ota_err_set(err, EINVAL, "check-in activation not_after_ms is not a time");
        off->not_after_ms = (int64_t)json_integer_value(na);
    }
    return 0;
}

/* The answers to a device in STANDBY: "activate" / "abandon": "<update_id>". */
static int parse_standby_answer(const json_t *o, const char *key, char *buf, size_t cap,
                                struct ota_err *err)
{
    const json_t *v = json_object_get(o, key);

    buf[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    return ota_json_str(o, key, buf, cap, err);
}

_Static_assert(offsetof(struct ota_offer, manifest) + sizeof(((struct ota_offer *)0)->manifest) ==
                   sizeof(struct ota_offer),
               "the manifest is the offer's last field (ota_offer_clear)");

void ota_offer_clear(struct ota_offer *off)
{
    memset(off, 0, offsetof(struct ota_offer, manifest));
    off->manifest[0] = '\0';
}

int ota_proto_parse_checkin(const char *body, size_t n, int *ret_has, struct ota_offer *ret,
                            struct ota_err *err)
{
    json_t *o = NULL;
    const json_t *u;
    struct ota_offer *off = NULL; /* the whole answer, before any of it reaches ret */
    char activate[OTA_ID_LEN], abandon[OTA_ID_LEN];
    int r;

    r = ota_json_parse(body, n, &o, err);
    if (r < 0)
        return r;
    if ((r = parse_standby_answer(o, "activate", activate, sizeof(activate), err)) < 0 ||
        (r = parse_standby_answer(o, "abandon", abandon, sizeof(abandon), err)) < 0)
        goto out;
    u = json_object_get(o, "update");
    if (!u) {
        r = ota_err_set(err, EINVAL, "check-in answer has no 'update' field");
        goto out;
    }
    if (json_is_null(u)) {
        ota_strlcpy(ret->activate, activate, sizeof(ret->activate));
        ota_strlcpy(ret->abandon, abandon, sizeof(ret->abandon));
        *ret_has = 0;
        r = 0;
        goto out;
    }
    if (!json_is_object(u)) {
        r = ota_err_set(err, EINVAL, "check-in 'update' is not an object");
        goto out;
    }
    off = malloc(sizeof(*off));
    if (!off) {
        r = -ENOMEM;
        goto out;
    }
    ota_offer_clear(off);
    ota_strlcpy(off->activate, activate, sizeof(off->activate));
    ota_strlcpy(off->abandon, abandon, sizeof(off->abandon));
    if ((r = ota_json_str(u, "update_id", off->update_id, sizeof(off->update_id), err)) < 0 ||
        (r = ota_json_str(u, "manifest", off->manifest, sizeof(off->manifest), err)) < 0 ||
        (r = ota_json_str(u, "signature", off->signature, sizeof(off->signature), err)) < 0 ||
        (r = ota_json_str(u, "url", off->url, sizeof(off->url), err)) < 0 ||
        (r = parse_activation(u, off, err)) < 0)
        goto out;
    if (json_object_get(u, "rollout_id") && !json_is_null(json_object_get(u, "rollout_id"))) {
        r = ota_json_str(u, "rollout_id", off->rollout_id, sizeof(off->rollout_id), err);
        if (r < 0)
            goto out;
    }
    if (!off->update_id[0]) {
        r = ota_err_set(err, EINVAL, "check-in offer has an empty update_id");
        goto out;
    }
    memcpy(ret, off, offsetof(struct ota_offer, manifest));
    ota_strlcpy(ret->manifest, off->manifest, sizeof(ret->manifest));
    *ret_has = 1;
out:
    free(off);
    json_decref(o);
    return r;
}

int ota_proto_parse_gh_release(const char *body, size_t n, struct ota_gh_release *ret,
                               struct ota_err *err)
{
    json_t *o = NULL;
    const json_t *assets, *as;
    struct ota_gh_release *rel = NULL;
    size_t i;
    int r;

    r = ota_json_parse(body, n, &o, err);
    if (r < 0)
        return r;
    rel = calloc(1, sizeof(*rel));
    if (!rel) {
        r = -ENOMEM;
        goto out;
    }
    r = ota_json_str(o, "tag_name", rel->tag, sizeof(rel->tag), err);
    if (r < 0)
        goto out;
    assets = json_object_get(o, "assets");
    if (!json_is_array(assets)) {
        r = ota_err_set(err, EINVAL, "release has no 'assets' array");
        goto out;
    }
    json_array_foreach(assets, i, as)
    {
        struct ota_gh_asset *a;

        if (rel->n_assets == OTA_GH_MAX_ASSETS) {
            r = ota_err_set(err, E2BIG, "release has more than %d assets", OTA_GH_MAX_ASSETS);
            goto out;
        }
        if (!json_is_object(as)) {
            r = ota_err_set(err, EINVAL, "asset %zu is not an object", i);
            goto out;
        }
        a = &rel->assets[rel->n_assets];
        if ((r = ota_json_str(as, "name", a->name, sizeof(a->name), err)) < 0 ||
            (r = ota_json_str(as, "browser_download_url", a->url, sizeof(a->url), err)) < 0 ||
            (r = ota_json_u64(as, "size", &a->size, err)) < 0)
            goto out;
        rel->n_assets++;
    }
    *ret = *rel;
out:
    free(rel);
    json_decref(o);
    return r;
}

const struct ota_gh_asset *ota_proto_gh_asset(const struct ota_gh_release *r, const char *name)
{
    for (int i = 0; i < r->n_assets; i++)
        if (strcmp(r->assets[i].name, name) == 0)
            return &r->assets[i];
    return NULL;
}

/* Digits only, no sign, no overflow. */
static int parse_u64(const char **p, uint64_t *ret)
{
    uint64_t v = 0;
    const char *s = *p;

    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *ret = v;
    return 0;
}

int ota_proto_parse_content_range(const char *hdr, uint64_t *ret_start, uint64_t *ret_end,
                                  uint64_t *ret_total)
{
    const char *p = hdr;
    uint64_t start, end, total;

    if (!p)
        return -EINVAL;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bytes", 5) != 0)
        return -EINVAL;
    p += 5;
    if (*p != ' ')
        return -EINVAL;
    while (*p == ' ')
        p++;
    if (parse_u64(&p, &start) < 0 || *p++ != '-' || parse_u64(&p, &end) < 0 || *p++ != '/' ||
        parse_u64(&p, &total) < 0)
        return -EINVAL;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p || end < start || end >= total)
        return -EINVAL;
    *ret_start = start;
    *ret_end = end;
    *ret_total = total;
    return 0;
}

/* A whole non-negative number and nothing else; -1 otherwise. */
static int64_t whole_number(const char *s)
{
    int64_t v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > INT64_MAX / 20)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* An HTTP date (IMF-fixdate) as unix ms; -1 otherwise. */
static int64_t http_date_ms(const char *s)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char wd[4], m[4], z[4];
    struct tm tm = {0};
    int d, y, hh, mm, ss, i;

    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3s", wd, &d, m, &y, &hh, &mm, &ss,
               z) != 8 ||
        strcmp(z, "GMT") != 0)
        return -1;
    for (i = 0; i < 12 && strcmp(mon[i], m) != 0; i++)
        ;
    if (i == 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60 || y < 1970)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = i;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return (int64_t)timegm(&tm) * 1000;
}

/* Header seconds as ms. A header may say up to 19 digits: capped (far beyond
 * OTA_GH_WAIT_MAX_MS, which caps the wait after) so that neither this product
 * nor the difference with a clock overflows (found by fuzzing, docs/fuzzing.md). */
#define HEADER_SECS_CAP 1000000000000LL /* ~31,700 years */
static int64_t header_secs_ms(int64_t secs)
{
    return (secs > HEADER_SECS_CAP ? HEADER_SECS_CAP : secs) * 1000;
}

static int mentions_rate_limit(const char *body)
{
    for (const char *p = body; p && *p; p++)
        if (strncasecmp(p, "rate limit", 10) == 0)
            return 1;
    return 0;
}

void ota_proto_gh_rate_limit(const struct ota_http_resp *resp, int64_t now_ms, unsigned refusals,
                             struct ota_gh_wait *ret)
{
    int64_t remaining = whole_number(resp->ratelimit_remaining);
    int64_t reset = whole_number(resp->ratelimit_reset);
    int64_t retry = whole_number(resp->retry_after);
    int64_t date = http_date_ms(resp->date), at;

    memset(ret, 0, sizeof(*ret));
    ret->refused = resp->status == 429 ||
                   (resp->status == 403 &&
                    (remaining == 0 || resp->retry_after[0] || mentions_rate_limit(resp->body)));
    if (retry < 0 && (at = http_date_ms(resp->retry_after)) >= 0)
        retry = (at - (date >= 0 ? date : now_ms) + 999) / 1000;
    if (retry >= 0) {
        ret->wait_ms = header_secs_ms(retry);
        snprintf(ret->why, sizeof(ret->why), "HTTP %ld, Retry-After %s", resp->status,
                 resp->retry_after);
    } else if (remaining == 0 && reset >= 0) {
        ret->wait_ms = header_secs_ms(reset) - (date >= 0 ? date : now_ms);
        snprintf(ret->why, sizeof(ret->why), "HTTP %ld, X-RateLimit-Remaining 0, reset %s",
                 resp->status, resp->ratelimit_reset);
    } else if (ret->refused) {
        ret->wait_ms = OTA_GH_WAIT_MIN_MS << (refusals < 5 ? refusals : 5);
        snprintf(ret->why, sizeof(ret->why), "HTTP %ld rate limit, no reset given", resp->status);
    }
    if (ret->refused && ret->wait_ms < 1000) /* e.g. a reset already past: clocks apart */
        ret->wait_ms = retry >= 0 ? 1000 : OTA_GH_WAIT_MIN_MS;
    if (ret->wait_ms < 0)
        ret->wait_ms = 0;
    if (ret->wait_ms > OTA_GH_WAIT_MAX_MS)
        ret->wait_ms = OTA_GH_WAIT_MAX_MS;
    if (!ret->wait_ms && !ret->refused)
        ret->why[0] = '\0';
}
