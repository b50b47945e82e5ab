/* The GitHub-Releases face, as the Raspberry Pi agent of seed 000 polls it.
 * Public (no auth), published releases only, any owner/repo (this server
 * holds one release line). Tags are "v" + version; "latest" is the newest
 * published release that is not a pre-release (version with "-"), as on
 * GitHub. Assets live at /{owner}/{repo}/releases/download/{release id}/
 * {name} and are served directly (GitHub answers with a redirect).
 * With a rate limit (serve --github-rate-limit, ghlimit.h) the API requests
 * count against it and carry X-RateLimit-*; asset downloads do not (as on
 * GitHub, where they are not REST API requests). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "ota/json.h"
#include "otasrv/api.h"
#include "otasrv/files.h"

static void tag_of(const struct otasrv_release *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", r->version[0] == 'v' ? "" : "v", r->version);
}

static void iso_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *release_json(struct otasrv_req *req, const char *owner, const char *repo,
                            const struct otasrv_release *r)
{
    char base[512], tag[80], pub[32], created[32], path[4400], url[1200], name[300];
    const char *names[4];
    json_t *o, *assets;

    otasrv_base_url(req, base, sizeof(base));
    tag_of(r, tag, sizeof(tag));
    iso_time(r->published_ms, pub, sizeof(pub));
    iso_time(r->created_ms, created, sizeof(created));
    snprintf(name, sizeof(name), "%s.sha256", r->payload_name);
    names[0] = "manifest.json";
    names[1] = "manifest.json.sig";
    names[2] = r->payload_name;
    names[3] = name;
    o = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:s, s:s, s:[]}", "tag_name", tag, "name",
                  r->version[0] == 'v' ? r->version + 1 : r->version, "release_id", r->id, "draft",
                  0, "prerelease", strchr(r->version, '-') != NULL, "created_at", created,
                  "published_at", pub, "body", "", "assets");
    if (!o)
        return NULL;
    assets = json_object_get(o, "assets");
    for (int i = 0; i < 4; i++) {
        struct stat st;
        if (otasrv_files_release_path(req->srv, r, names[i], path, sizeof(path)) < 0 ||
            stat(path, &st) < 0)
            continue;
        snprintf(url, sizeof(url), "%s/%s/%s/releases/download/%s/%s", base, owner, repo, r->id,
                 names[i]);
        json_array_append_new(assets,
                              json_pack("{s:s, s:I, s:s, s:s}", "name", names[i], "size",
                                        (json_int_t)st.st_size, "content_type",
                                        "application/octet-stream", "browser_download_url", url));
    }
    return o;
}

static void free_list(struct otasrv_release **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        otasrv_release_free(v[i]);
    free(v);
}

/* SWUpdate releases (.swu) are not this face's: an ota-agent polling it
 * needs a manifest. Frees them and returns how many releases are left. */
static size_t drop_swu(struct otasrv_release **v, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i]->format, "swu") == 0)
            otasrv_release_free(v[i]);
        else
            v[k++] = v[i];
    }
    return k;
}

static enum otasrv_result releases(struct otasrv_req *req, const char *owner, const char *repo,
                                   const char *which, const char *tag_want)
{
    struct ota_err err = {0};
    struct otasrv_release **v = NULL;
    size_t n = 0;
    int64_t per_page, page;
    json_t *arr;
    enum otasrv_result ret;
    int r;

    if ((r = otasrv_query_int(req, "per_page", 30, 1, 100, &per_page, &err)) < 0 ||
        (r = otasrv_query_int(req, "page", 1, 1, 1000000, &page, &err)) < 0)
        return otasrv_reply_error(req, 400, "%s", err.reason);
    if ((r = otasrv_store_release_list(req->srv->store, 1, &v, &n, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    n = drop_swu(v, n);
    if (strcmp(which, "list") == 0) {
        arr = json_array();
        for (size_t i = (size_t)((page - 1) * per_page); i < n && arr; i++) {
            if (json_array_size(arr) == (size_t)per_page)
                break;
            json_array_append_new(arr, release_json(req, owner, repo, v[i]));
        }
        ret = otasrv_reply_json(req, 200, arr);
        free_list(v, n);
        return ret;
    }
    for (size_t i = 0; i < n; i++) {
        char tag[80];
        tag_of(v[i], tag, sizeof(tag));
        if (tag_want ? strcmp(tag, tag_want) == 0 : strchr(v[i]->version, '-') == NULL) {
            ret = otasrv_reply_json(req, 200, release_json(req, owner, repo, v[i]));
            free_list(v, n);
            return ret;
        }
    }
    free_list(v, n);
    return otasrv_reply_error(req, 404, tag_want ? "no release with tag %s" : "no release%s",
                              tag_want ? tag_want : "");
}

static enum otasrv_result download(struct otasrv_req *req, const char *rid, const char *name)
{
    struct ota_err err = {0};
    struct otasrv_release *rel = NULL;
    char path[4400];
    enum otasrv_result ret;

    if (!otasrv_valid_id(rid) || otasrv_store_release_get(req->srv->store, rid, &rel, &err) < 0 ||
        !rel->published || strcmp(rel->format, "swu") == 0) {
        otasrv_release_free(rel);
        return otasrv_reply_error(req, 404, "no release %s", rid);
    }
    if (strcmp(name, "payload") == 0 ||
        otasrv_files_release_path(req->srv, rel, name, path, sizeof(path)) < 0) {
        ret = otasrv_reply_error(req, 404, "no asset %s in release %s", name, rid);
    } else {
        ret = otasrv_files_serve(req, path, NULL);
    }
    otasrv_release_free(rel);
    return ret;
}

/* The token of an "Authorization: token X" or "Bearer X" header (into buf);
 * NULL without one. Another scheme counts as a bad token (""). */
static const char *auth_token(struct otasrv_req *req, char *buf, size_t cap)
{
    const char *h = otasrv_header(req, "Authorization");

    if (!h)
        return NULL;
    if (strncasecmp(h, "token ", 6) == 0)
        h += 6;
    else if (strncasecmp(h, "bearer ", 7) == 0)
        h += 7;
    else
        h = "";
    while (*h == ' ')
        h++;
    ota_strlcpy(buf, h, cap);
    return buf;
}

/* The rate limit (docs/protocol.md, "Rate limit"): counts this API request
 * on the server's clock, puts X-RateLimit-* on every answer to it, and
 * answers it when it may not go on (*ret_reply); 0 to go on. */
static int rate_limit(struct otasrv_req *req, enum otasrv_result *ret_reply)
{
    const struct otasrv_ghlimit_config *c = otasrv_ghlimit_cfg(req->srv->ghlimit);
    struct otasrv_ghlimit_verdict v;
    char client[160], tok[300], num[32];
    const char *h;

    if (c->key_header && (h = otasrv_header(req, c->key_header)) && *h)
        ota_strlcpy(client, h, sizeof(client));
    else
        otasrv_client_addr(req, client, sizeof(client));
    otasrv_ghlimit_take(req->srv->ghlimit, client, auth_token(req, tok, sizeof(tok)),
                        otasrv_now_ms(), &v);
    snprintf(num, sizeof(num), "%u", v.limit);
    otasrv_req_header(req, "X-RateLimit-Limit", num);
    snprintf(num, sizeof(num), "%u", v.remaining);
    otasrv_req_header(req, "X-RateLimit-Remaining", num);
    snprintf(num, sizeof(num), "%lld", (long long)v.reset_s);
    otasrv_req_header(req, "X-RateLimit-Reset", num);
    snprintf(num, sizeof(num), "%u", v.used);
    otasrv_req_header(req, "X-RateLimit-Used", num);
    otasrv_req_header(req, "X-RateLimit-Resource", "core");
    if (req->srv->clock) {
        /* On the virtual clock, Date says its time, as X-RateLimit-Reset does:
         * a client may measure the wait against it. */
        char date[40];
        time_t t = (time_t)(otasrv_now_ms() / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        otasrv_req_header(req, "Date", date);
    }
    if (v.bad_token) {
        *ret_reply =
            otasrv_reply_json(req, 401,
                              json_pack("{s:s, s:s}", "message", "Bad credentials",
                                        "documentation_url", "https://docs.github.com/rest"));
        return -EACCES;
    }
    if (v.allowed)
        return 0;
    if (c->retry_after) {
        snprintf(num, sizeof(num), "%lld", (long long)v.retry_s);
        otasrv_req_header(req, "Retry-After", num);
    }
    snprintf(tok, sizeof(tok), "API rate limit exceeded for %s.",
             v.limit == c->limit ? client : "this token");
    *ret_reply = otasrv_reply_json(
        req, c->status,
        json_pack("{s:s, s:s}", "message", tok, "documentation_url",
                  "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"));
    return -EAGAIN;
}

enum otasrv_result otasrv_api_github_handle(struct otasrv_req *req)
{
    const char *const *s = req->seg;
    int get = strcmp(req->method, "GET") == 0;
    enum otasrv_result reply;

    /* /repos/{owner}/{repo}/releases[/latest | /tags/{tag}]: the REST API,
     * under the rate limit; asset downloads (below) are not */
    if (strcmp(s[0], "repos") == 0 && req->srv->ghlimit && rate_limit(req, &reply) < 0)
        return reply;
    if (strcmp(s[0], "repos") == 0 && req->nseg >= 4 && strcmp(s[3], "releases") == 0) {
        if (!get && !req->is_head)
            return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
        if (req->nseg == 4)
            return releases(req, s[1], s[2], "list", NULL);
        if (req->nseg == 5 && strcmp(s[4], "latest") == 0)
            return releases(req, s[1], s[2], "one", NULL);
        if (req->nseg == 6 && strcmp(s[4], "tags") == 0)
            return releases(req, s[1], s[2], "one", s[5]);
    }
    /* /{owner}/{repo}/releases/download/{release id}/{name} */
    if (req->nseg == 6 && strcmp(s[2], "releases") == 0 && strcmp(s[3], "download") == 0) {
        if (!get && !req->is_head)
            return otasrv_reply_error(req, 405, "method %s not allowed", req->method);
        return download(req, s[4], s[5]);
    }
    return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
}
