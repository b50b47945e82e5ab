/* The update sources: where the agent asks for an offer and sends its
 * status reports. A new source is one more table in sources[] (agent.h:
 * struct update_source). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int transient_status(long s)
{
    return s >= 500 || s == 408 || s == 429;
}

static int http_get(struct ota_agent *a, const char *url, const char *bearer,
                    struct ota_http_resp *resp, struct ota_err *err)
{
    struct ota_http_req req = {"GET", url, NULL, bearer, 0};

    return a->ops.transport->request(a->ops.transport_ctx, &req, resp, err);
}

/* POSTs body (JSON, taken: freed here) to url; *resp as the transport fills it. */
static int http_post(struct ota_agent *a, const char *url, const char *bearer, char *body,
                     struct ota_http_resp *resp, struct ota_err *err)
{
    struct ota_http_req req = {"POST", url, body, bearer, 0};
    int r = a->ops.transport->request(a->ops.transport_ctx, &req, resp, err);

    free(body);
    return r;
}

/* Fleet source: one report to /status. 0: delivered, or refused for good
 * (4xx); < 0: try again later. */
static int fleet_deliver(struct ota_agent *a, const struct ota_report *rep, struct ota_err *err)
{
    struct ota_http_resp resp = {0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    snprintf(url, sizeof(url), "%s/api/v1/devices/%s/status", a->cfg.server_url, a->device_id);
    r = ota_proto_report_body(rep, &body);
    if (r < 0)
        return r;
    r = http_post(a, url, a->token, body, &resp, err);
    free(resp.body);
    if (r < 0 || transient_status(resp.status)) {
        a->server_ok = 0;
        if (r == 0)
            r = ota_err_set(err, EAGAIN, "report delivery: server answered %ld", resp.status);
    }
    return r;
}

static int ensure_registered(struct ota_agent *a, const struct ota_inventory *inv,
                             struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    struct ota_http_resp resp = {0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    if (st->kv_get(a->ops.store_ctx, "device.token", a->token, sizeof(a->token), NULL) == 0 &&
        st->kv_get(a->ops.store_ctx, "device.id", a->device_id, sizeof(a->device_id), NULL) == 0)
        return 0;
    a->token[0] = '\0';
    snprintf(url, sizeof(url), "%s/api/v1/devices/register", a->cfg.server_url);
    r = ota_proto_register_body(inv, &body);
    if (r < 0)
        return r;
    r = http_post(a, url, a->cfg.enroll_token, body, &resp, err);
    if (r < 0)
        goto out;
    if (resp.status != 200 && resp.status != 201) {
        r = ota_err_set(err, EACCES, "registration refused: HTTP %ld %.200s", resp.status,
                        resp.body ? resp.body : "");
        goto out;
    }
    r = ota_proto_parse_register(resp.body, resp.len, a->device_id, sizeof(a->device_id), a->token,
                                 sizeof(a->token), err);
    if (r < 0)
        goto out;
    if ((r = st->kv_set(a->ops.store_ctx, "device.id", a->device_id, err)) < 0 ||
        (r = st->kv_set(a->ops.store_ctx, "device.token", a->token, err)) < 0)
        goto out;
out:
    free(resp.body);
    if (r < 0)
        a->token[0] = '\0';
    return r;
}

/* Fleet source: check in; *ret_has = 0 when nothing is offered. */
static int check_fleet(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                       struct ota_offer *off, struct ota_err *err)
{
    struct ota_http_resp resp = {0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    r = ensure_registered(a, inv, err);
    if (r < 0)
        return r;
    if (!a->dry_run) /* ota-agent check sends no report, not even queued ones */
        ota_ignore(ota_agent_flush_outbox(a, NULL));
    snprintf(url, sizeof(url), "%s/api/v1/devices/%s/checkin", a->cfg.server_url, a->device_id);
    r = ota_proto_checkin_body(inv, &body);
    if (r < 0)
        return r;
    r = http_post(a, url, a->token, body, &resp, err);
    if (r < 0)
        goto out;
    if (resp.status == 401 || resp.status == 403) {
        /* Our token is no longer known: register again next time. */
        (void)a->ops.store->kv_set(a->ops.store_ctx, "device.token", "", NULL);
        r = ota_err_set(err, EACCES, "check-in refused: HTTP %ld", resp.status);
        goto out;
    }
    if (resp.status != 200) {
        r = ota_err_set(err, EIO, "check-in: HTTP %ld", resp.status);
        goto out;
    }
    r = ota_proto_parse_checkin(resp.body, resp.len, ret_has, off, err);
out:
    free(resp.body);
    return r;
}

/* GitHub source: latest release, its manifest and signature assets. */
static int check_github(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                        struct ota_offer *off, struct ota_err *err)
{
    struct ota_gh_release *rel = calloc(1, sizeof(*rel));
    const struct ota_gh_asset *man, *sig, *pay;
    struct ota_http_resp resp = {0};
    struct ota_manifest m;
    char url[OTA_URL_LEN];
    int r;

    if (!rel)
        return ota_err_set(err, ENOMEM, "out of memory");
    snprintf(url, sizeof(url), "%s/repos/%s/releases/latest", a->cfg.server_url, a->cfg.repo);
    r = http_get(a, url, NULL, &resp, err);
    if (r < 0)
        goto out;
    if (resp.status == 404) {
        *ret_has = 0;
        goto out;
    }
    if (resp.status != 200) {
        r = ota_err_set(err, EIO, "releases/latest: HTTP %ld", resp.status);
        goto out;
    }
    r = ota_proto_parse_gh_release(resp.body, resp.len, rel, err);
    if (r < 0)
        goto out;
    man = ota_proto_gh_asset(rel, "manifest.json");
    sig = ota_proto_gh_asset(rel, "manifest.json.sig");
    if (!man || !sig) {
        r = ota_err_set(err, EBADMSG, "release %s has no manifest.json/manifest.json.sig asset",
                        rel->tag);
        goto out;
    }
    free(resp.body);
    resp.body = NULL;
    r = http_get(a, man->url, NULL, &resp, err);
    if (r == 0 && resp.status != 200)
        r = ota_err_set(err, EIO, "manifest.json: HTTP %ld", resp.status);
    if (r < 0)
        goto out;
    if (resp.len >= sizeof(off->manifest)) {
        r = ota_err_set(err, EFBIG, "manifest.json is %zu bytes: too large", resp.len);
        goto out;
    }
    memcpy(off->manifest, resp.body, resp.len);
    off->manifest[resp.len] = '\0';
    free(resp.body);
    resp.body = NULL;
    r = http_get(a, sig->url, NULL, &resp, err);
    if (r == 0 && resp.status != 200)
        r = ota_err_set(err, EIO, "manifest.json.sig: HTTP %ld", resp.status);
    if (r < 0)
        goto out;
    while (resp.len && (resp.body[resp.len - 1] == '\n' || resp.body[resp.len - 1] == '\r'))
        resp.body[--resp.len] = '\0';
    if (resp.len >= sizeof(off->signature)) {
        r = ota_err_set(err, EBADMSG, "manifest.json.sig is too large");
        goto out;
    }
    ota_strlcpy(off->signature, resp.body, sizeof(off->signature));
    /* The payload's URL needs the payload's name, which only the manifest
     * gives; it is verified with the rest in check_offer. */
    off->url[0] = '\0';
    if (ota_manifest_parse(off->manifest, strlen(off->manifest), &m, NULL) == 0 &&
        (pay = ota_proto_gh_asset(rel, m.payload)))
        ota_strlcpy(off->url, pay->url, sizeof(off->url));
    snprintf(off->update_id, sizeof(off->update_id), "gh-%s", rel->tag);
    off->rollout_id[0] = '\0';
    *ret_has = 1;
out:
    free(resp.body);
    free(rel);
    return r;
}

static const struct update_source fleet_source = {check_fleet, fleet_deliver};
static const struct update_source github_source = {check_github, NULL};
static const struct update_source *const sources[OTA_SOURCE_MAX] = {
    [OTA_SOURCE_FLEET] = &fleet_source,
    [OTA_SOURCE_GITHUB] = &github_source,
};

const struct update_source *core_source(const struct ota_agent *a)
{
    unsigned i = (unsigned)a->cfg.source;

    return i < OTA_SOURCE_MAX ? sources[i] : &github_source; /* as ever: all but the fleet */
}
