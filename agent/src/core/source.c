/* The update sources: where the agent asks for an offer and sends its
 * status reports. A new source is one more table in sources[] (agent.h:
 * struct update_source). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int transient_status(long s)
{
    return s >= 500 || s == 408 || s == 429;
}

static int fleet_wait_over(struct ota_agent *a, struct ota_err *err);
static int fleet_note(struct ota_agent *a, const struct ota_http_resp *resp, struct ota_err *err);

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

    if ((r = fleet_wait_over(a, err)) < 0) {
        a->server_ok = 0;
        return r;
    }
    snprintf(url, sizeof(url), "%s/api/v1/devices/%s/status", a->cfg.server_url, a->device_id);
    r = ota_proto_report_body(rep, &body);
    if (r < 0)
        return r;
    r = http_post(a, url, a->token, body, &resp, err);
    if (r == 0 && (r = fleet_note(a, &resp, err)) < 0)
        a->server_ok = 0;
    free(resp.body);
    if (r < 0 || transient_status(resp.status)) {
        a->server_ok = 0;
        if (r == 0)
            r = ota_err_set(err, EAGAIN, "report delivery: server answered %ld", resp.status);
    }
    return r;
}

/* POST /register with bearer; 0 and the answer in *resp whatever the status. */
static int post_register(struct ota_agent *a, const struct ota_inventory *inv, const char *bearer,
                         struct ota_http_resp *resp, struct ota_err *err)
{
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    snprintf(url, sizeof(url), "%s/api/v1/devices/register", a->cfg.server_url);
    r = ota_proto_register_body(inv, &body);
    if (r < 0)
        return r;
    return http_post(a, url, bearer, body, resp, err);
}

/* Registers when the store holds no token. A token the server refused at a
 * check-in is kept as "device.token_prev" and presented first: the server
 * re-enrolls a known device on its current token (docs/protocol.md,
 * "Register"), the enrollment token only a new one (or with an admin's
 * approval). */
static int ensure_registered(struct ota_agent *a, const struct ota_inventory *inv,
                             struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    struct ota_http_resp resp = {0};
    char prev[sizeof(a->token)] = "";
    int r;

    /* "" is no token: what a refused check-in leaves */
    if (st->kv_get(a->ops.store_ctx, "device.token", a->token, sizeof(a->token), NULL) == 0 &&
        a->token[0] &&
        st->kv_get(a->ops.store_ctx, "device.id", a->device_id, sizeof(a->device_id), NULL) == 0)
        return 0;
    a->token[0] = '\0';
    if (st->kv_get(a->ops.store_ctx, "device.token_prev", prev, sizeof(prev), NULL) < 0)
        prev[0] = '\0';
    r = -ENOENT;
    if (prev[0]) {
        r = post_register(a, inv, prev, &resp, err);
        if (r == 0 && resp.status != 200 && resp.status != 201) {
            free(resp.body);
            resp = (struct ota_http_resp){0};
            r = -ENOENT;
        }
    }
    if (r == -ENOENT)
        r = post_register(a, inv, a->cfg.enroll_token, &resp, err);
    if (r < 0 || (r = fleet_note(a, &resp, err)) < 0)
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
    if (prev[0])
        (void)st->kv_set(a->ops.store_ctx, "device.token_prev", "", NULL);
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

    if ((r = fleet_wait_over(a, err)) < 0)
        return r;
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
    if (r < 0 || (r = fleet_note(a, &resp, err)) < 0)
        goto out;
    if (resp.status == 401 || resp.status == 403) {
        /* Our token is refused: register again next time, presenting it
         * first (a refusal by a proxy or a fault leaves it valid). */
        (void)a->ops.store->kv_set(a->ops.store_ctx, "device.token_prev", a->token, NULL);
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

/* ---- GitHub's rate limit (DESIGN.md "GitHub's rate limit") ----
 * The store's "github.rate_limit" is "UNTIL_MS REFUSALS WHY": no request to
 * the GitHub source before UNTIL_MS (wall clock), after REFUSALS refusals in
 * a row; "" or absent: none. */

#define GH_KEY "github.rate_limit"

struct gh_limit {
    int64_t until_ms;
    unsigned refusals;
    char why[OTA_REASON_LEN];
};

static void limit_read(struct ota_agent *a, const char *key, struct gh_limit *l)
{
    char v[OTA_REASON_LEN + 64];
    long long until;
    unsigned refusals;
    int n = 0;

    memset(l, 0, sizeof(*l));
    if (a->ops.store->kv_get(a->ops.store_ctx, key, v, sizeof(v), NULL) < 0 ||
        sscanf(v, "%lld %u %n", &until, &refusals, &n) < 2 || n == 0)
        return;
    l->until_ms = until;
    l->refusals = refusals;
    ota_strlcpy(l->why, v + n, sizeof(l->why));
}

static void gh_limit_read(struct ota_agent *a, struct gh_limit *l)
{
    limit_read(a, GH_KEY, l);
}

static void iso_ms(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "%lld ms", (long long)ms);
}

int ota_agent_rate_limit(struct ota_agent *a, int64_t *ret_until_ms, char *why, size_t cap)
{
    int64_t now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    struct gh_limit l;
    char at[32];

    gh_limit_read(a, &l);
    *ret_until_ms = l.until_ms;
    /* as gh_wait_over sees it */
    if (!l.until_ms || l.until_ms <= now || l.until_ms - now > OTA_GH_WAIT_MAX_MS) {
        if (cap)
            why[0] = '\0';
        return 0;
    }
    iso_ms(l.until_ms, at, sizeof(at));
    snprintf(why, cap, "rate limited until %s (%s)", at, l.why);
    return 1;
}

/* Before any request: -EAGAIN while the last answers said to wait. A wait
 * longer than the longest a source may ask for is a clock that went back:
 * it is not kept. */
static int gh_wait_over(struct ota_agent *a, struct gh_limit *l, struct ota_err *err)
{
    int64_t now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    char at[32];

    gh_limit_read(a, l);
    if (!l->until_ms || now >= l->until_ms || l->until_ms - now > OTA_GH_WAIT_MAX_MS)
        return 0;
    iso_ms(l->until_ms, at, sizeof(at));
    return ota_err_set(err, EAGAIN, "rate limited until %s (%s): not asking before then", at,
                       l->why);
}

/* After every answer from the source: keeps what it says about the rate
 * limit; -EAGAIN when it was a refusal (its body is no answer). Only the
 * API's own answer (api) clears a wait: an asset's says nothing of it. */
static int gh_note(struct ota_agent *a, struct gh_limit *l, const struct ota_http_resp *resp,
                   int api, struct ota_err *err)
{
    int64_t now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    struct ota_gh_wait w;
    char v[OTA_REASON_LEN + 64], at[32];

    ota_proto_gh_rate_limit(resp, now, l->refusals, &w);
    if (w.wait_ms > 0) {
        l->until_ms = now + w.wait_ms;
        l->refusals = w.refused ? l->refusals + 1 : 0;
        ota_strlcpy(l->why, w.why, sizeof(l->why));
        snprintf(v, sizeof(v), "%lld %u %s", (long long)l->until_ms, l->refusals, l->why);
        (void)a->ops.store->kv_set(a->ops.store_ctx, GH_KEY, v, NULL);
    } else if (api && !w.refused && (l->until_ms || l->refusals)) {
        memset(l, 0, sizeof(*l));
        (void)a->ops.store->kv_set(a->ops.store_ctx, GH_KEY, "", NULL);
    }
    if (!w.refused)
        return 0;
    iso_ms(l->until_ms, at, sizeof(at));
    return ota_err_set(err, EAGAIN, "rate limited until %s (%s)", at, w.why);
}

/* The origin of an http(s) URL: scheme, host (lower case) and port (the
 * scheme's default when absent). -1 for anything else, user info included:
 * such a URL gets no token. */
static int url_origin(const char *url, char *scheme, size_t scap, char *host, size_t hcap,
                      long *port)
{
    const char *p = strstr(url, "://"), *h, *end, *colon = NULL;
    size_t n;

    if (!p || (size_t)(p - url) >= scap)
        return -1;
    for (n = 0; url + n < p; n++)
        scheme[n] = (char)(url[n] >= 'A' && url[n] <= 'Z' ? url[n] - 'A' + 'a' : url[n]);
    scheme[n] = '\0';
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
        return -1;
    h = p + 3;
    end = h + strcspn(h, "/?#");
    if (memchr(h, '@', (size_t)(end - h)) || end == h)
        return -1;
    /* [v6]:port or host:port: the port follows the last ':' after any ']' */
    for (const char *c = end; c > h; c--)
        if (c[-1] == ']')
            break;
        else if (c[-1] == ':') {
            colon = c - 1;
            break;
        }
    n = (size_t)((colon ? colon : end) - h);
    if (n == 0 || n >= hcap)
        return -1;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] - 'A' + 'a' : h[i]);
    host[n] = '\0';
    *port = strcmp(scheme, "https") == 0 ? 443 : 80;
    if (colon && colon + 1 < end) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535)
            return -1;
        *port = v;
    }
    return 0;
}

/* ---- The fleet server's Retry-After (docs/protocol.md "Rate limits") ----
 * The store's "fleet.rate_limit" is "UNTIL_MS 0 WHY" as GH_KEY's: after a
 * 429 no check-in, registration or report before UNTIL_MS, across passes. */

#define FLEET_WAIT_KEY "fleet.rate_limit"

static int fleet_wait_over(struct ota_agent *a, struct ota_err *err)
{
    int64_t now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    struct gh_limit l;
    char at[32];

    limit_read(a, FLEET_WAIT_KEY, &l);
    if (!l.until_ms || now >= l.until_ms || l.until_ms - now > OTA_GH_WAIT_MAX_MS)
        return 0; /* none, over, or a clock that went back */
    iso_ms(l.until_ms, at, sizeof(at));
    return ota_err_set(err, EAGAIN,
                       "the server asked to wait until %s (%s): not asking before then", at, l.why);
}

/* After a fleet answer: a 429 is kept as a wait (its Retry-After, seconds
 * or a date; none: a minute) and is -EAGAIN; a 2xx clears a kept one. A 503
 * is retried at the next pass as before, whatever its Retry-After. */
static int fleet_note(struct ota_agent *a, const struct ota_http_resp *resp, struct ota_err *err)
{
    int64_t now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    struct ota_gh_wait w;
    struct gh_limit l;
    char v[OTA_REASON_LEN + 64], at[32];

    if (resp->status == 429) {
        ota_proto_gh_rate_limit(resp, now, 0, &w);
        if (w.wait_ms < 1000)
            w.wait_ms = 1000;
        snprintf(v, sizeof(v), "%lld 0 %s", (long long)(now + w.wait_ms), w.why);
        (void)a->ops.store->kv_set(a->ops.store_ctx, FLEET_WAIT_KEY, v, NULL);
        iso_ms(now + w.wait_ms, at, sizeof(at));
        return ota_err_set(err, EAGAIN, "server busy: HTTP %ld%s%s: not asking before %s",
                           resp->status, resp->retry_after[0] ? ", Retry-After " : "",
                           resp->retry_after, at);
    }
    if (resp->status >= 200 && resp->status < 300) {
        limit_read(a, FLEET_WAIT_KEY, &l);
        if (l.until_ms)
            (void)a->ops.store->kv_set(a->ops.store_ctx, FLEET_WAIT_KEY, "", NULL);
    }
    return 0;
}

const char *core_bearer_for(const struct ota_agent *a, const char *url, const char *token)
{
    char s1[8], s2[8], h1[256], h2[256];
    long p1, p2;

    if (!token || !token[0] || !url)
        return NULL;
    if (url_origin(a->cfg.server_url, s1, sizeof(s1), h1, sizeof(h1), &p1) < 0 ||
        url_origin(url, s2, sizeof(s2), h2, sizeof(h2), &p2) < 0)
        return NULL;
    if (strcmp(s1, s2) != 0 || strcmp(h1, h2) != 0 || p1 != p2)
        return NULL;
    return token;
}

/* The configured token for url: only to the origin of the configured
 * server (scheme://host[:port]), never to another (asset stores). */
static const char *gh_bearer(const struct ota_agent *a, const char *url)
{
    return core_bearer_for(a, url, a->cfg.github_token);
}

/* One GET to the GitHub source under its rate limit. */
static int gh_get(struct ota_agent *a, struct gh_limit *l, const char *url, int api,
                  struct ota_http_resp *resp, struct ota_err *err)
{
    int r = http_get(a, url, gh_bearer(a, url), resp, err);

    return r < 0 ? r : gh_note(a, l, resp, api, err);
}

/* GitHub source: latest release, its manifest and signature assets. */
static int check_github(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                        struct ota_offer *off, struct ota_err *err)
{
    struct ota_gh_release *rel = calloc(1, sizeof(*rel));
    const struct ota_gh_asset *man, *sig, *pay;
    struct ota_http_resp resp = {0};
    struct ota_manifest m;
    struct gh_limit lim;
    char url[OTA_URL_LEN];
    int r;

    if (!rel)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = gh_wait_over(a, &lim, err);
    if (r < 0)
        goto out;
    snprintf(url, sizeof(url), "%s/repos/%s/releases/latest", a->cfg.server_url, a->cfg.repo);
    r = gh_get(a, &lim, url, 1, &resp, err);
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
    r = gh_get(a, &lim, man->url, 0, &resp, err);
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
    r = gh_get(a, &lim, sig->url, 0, &resp, err);
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
