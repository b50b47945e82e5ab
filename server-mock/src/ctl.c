/* Admin commands. "release add" uploads: manifest and signature as JSON
 * (for a .swu: its sw-description, name, size and sha256), then the payload
 * (the .swu itself) as a raw PUT streamed from the file, then (--publish)
 * the publish call, so it works against a server on another host. */
#include "otasrv/ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/cpio.h"
#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/manifest.h"
#include "otasrv/client.h"
#include "otasrv/swdesc.h"

#include <sys/stat.h>

const char OTASRV_CTL_USAGE[] =
    "admin commands (all take --server URL (default $OTA_SERVER or http://127.0.0.1:8080)\n"
    "and --admin-token T | --admin-token-file F (default $OTA_ADMIN_TOKEN)):\n"
    "  ota-server release add DIR [--id ID] [--publish]   upload an ota-pack --out DIR\n"
    "  ota-server release add FILE.swu [--id ID] [--publish]   upload an SWUpdate release\n"
    "                                        (ota-pack swu); the server reads its sw-description\n"
    "  ota-server release list [--published]\n"
    "  ota-server release get ID\n"
    "  ota-server release publish ID\n"
    "  ota-server release delete ID\n"
    "  ota-server devices [--type T] [--group G] [--tag X] [--version V] [--limit N]\n"
    "                     [--offset N]\n"
    "  ota-server device ID\n"
    "  ota-server reports [--device ID] [--update-id U]\n"
    "  ota-server rollout create FILE.json   a rollout definition (docs/protocol.md)\n"
    "  ota-server rollout list\n"
    "  ota-server rollout status ID          definition, status and metrics\n"
    "  ota-server rollout approve|start|pause|resume|cancel|rollback|activate ID\n"
    "  ota-server clock get                  the virtual clock (serve --virtual-clock)\n"
    "  ota-server clock advance --to MS | --by MS   move it (unix ms / a duration);\n"
    "                                        returns once what is due by then has run\n"
    "Each prints the server's JSON answer; exit status 1 with the server's detail on refusal.\n";

struct ctx {
    const char *server;
    char token[256];
    struct ota_err *err;
};

/* One call; *ret is the parsed answer (2xx only). */
static int call(struct ctx *c, const char *method, const char *path, const char *body,
                const char *file, json_t **ret)
{
    struct otasrv_client_req req = {c->server, method, path, c->token, body, file};
    struct otasrv_client_resp resp = {0};
    json_t *o = NULL;
    int r;

    if ((r = otasrv_client_request(&req, &resp, c->err)) < 0)
        return r;
    o = json_loads(resp.body, 0, NULL);
    if (resp.status < 200 || resp.status > 299) {
        const char *d = json_string_value(json_object_get(o, "detail"));
        r = ota_err_set(c->err, EIO, "HTTP %d: %s", resp.status, d ? d : resp.body);
        json_decref(o);
    } else if (!o) {
        r = ota_err_set(c->err, EPROTO, "HTTP %d: the answer is not JSON", resp.status);
    } else {
        *ret = o;
    }
    otasrv_client_resp_free(&resp);
    return r;
}

/* After the POST that made release *rel: its payload from file, then the
 * publish call. *rel is replaced by the latest answer. */
static int upload_payload(struct ctx *c, const char *file, int publish, json_t **rel)
{
    char url[512], p2[700];
    json_t *next = NULL;
    int r;

    url[0] = '\0';
    otasrv_client_urlencode(json_string_value(json_object_get(*rel, "id")), url, sizeof(url));
    snprintf(p2, sizeof(p2), "/api/v1/releases/%s/payload", url);
    if ((r = call(c, "PUT", p2, NULL, file, &next)) < 0)
        return r;
    json_decref(*rel);
    *rel = next;
    if (publish) {
        snprintf(p2, sizeof(p2), "/api/v1/releases/%s/publish", url);
        if ((r = call(c, "POST", p2, "{}", NULL, &next)) < 0)
            return r;
        json_decref(*rel);
        *rel = next;
    }
    return 0;
}

/* The release's POST (req, with id when given; req is consumed), then its
 * payload's upload (and publication); the release in *ret. */
static int post_release(struct ctx *c, json_t *req, const char *id, const char *payload,
                        int publish, json_t **ret)
{
    char *body = NULL;
    json_t *rel = NULL;
    int r;

    if (req && id)
        json_object_set_new(req, "id", json_string(id));
    if (!req || ota_json_dump(req, &body) < 0) {
        r = ota_err_set(c->err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = call(c, "POST", "/api/v1/releases", body, NULL, &rel)) < 0 ||
        (r = upload_payload(c, payload, publish, &rel)) < 0)
        goto out;
    *ret = rel;
    rel = NULL;
out:
    json_decref(rel);
    json_decref(req);
    free(body);
    return r;
}

/* A .swu: its first member (sw-description), size and sha256 go in the
 * POST; the server parses sw-description and checks the upload against
 * all three. */
static int release_add_swu(struct ctx *c, const char *file, const char *id, int publish,
                           json_t **ret)
{
    const char *slash = strrchr(file, '/');
    char *text = NULL, hex[OTA_SHA256_HEX];
    uint8_t d[OTA_SHA256_LEN];
    size_t n = 0;
    struct stat st;
    int r;

    if ((r = ota_cpio_read_first(file, "sw-description", OTASRV_SWDESC_MAX_BYTES, &text, &n,
                                 c->err)) < 0)
        return r;
    if (stat(file, &st) < 0) {
        r = ota_err_set(c->err, errno, "%s: %s", file, strerror(errno));
        goto out;
    }
    if ((r = ota_sha256_file(file, UINT64_MAX, d, c->err)) < 0)
        goto out;
    ota_hex_encode(d, sizeof(d), hex);
    r = post_release(c,
                     json_pack("{s:s%, s:s, s:I, s:s}", "sw_description", text, n, "payload",
                               slash ? slash + 1 : file, "size", (json_int_t)st.st_size, "sha256",
                               hex),
                     id, file, publish, ret);
out:
    free(text);
    return r;
}

static int release_add(struct ctx *c, const char *dir, const char *id, int publish, json_t **ret)
{
    char path[4200];
    char *manifest = NULL, *sig = NULL;
    size_t n;
    struct ota_manifest m;
    struct stat st;
    int r;

    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode))
        return release_add_swu(c, dir, id, publish, ret);
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    if ((r = ota_fs_read_all(path, OTA_MANIFEST_MAX_BYTES, &manifest, &n, c->err)) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/manifest.json.sig", dir);
    if ((r = ota_fs_read_all(path, 1024, &sig, &n, c->err)) < 0)
        goto out;
    while (n > 0 && (sig[n - 1] == '\n' || sig[n - 1] == '\r'))
        sig[--n] = '\0';
    if ((r = ota_manifest_parse(manifest, strlen(manifest), &m, c->err)) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/%s", dir, m.payload);
    r = post_release(c, json_pack("{s:s, s:s}", "manifest", manifest, "signature", sig), id, path,
                     publish, ret);
out:
    free(manifest);
    free(sig);
    return r;
}

/* "rollout SUB [ARG]"; -ENOSYS for a wrong command line. */
static int rollout_cmd(struct ctx *c, const char *sub, const char *arg, int npos, json_t **ret)
{
    static const char *const acts[] = {"approve", "start",    "pause",    "resume",
                                       "cancel",  "rollback", "activate", NULL};
    char path[1024], enc[512] = ""; /* urlencode appends */
    char *text = NULL;
    size_t n = 0;
    int r;

    if (strcmp(sub, "list") == 0 && npos == 2)
        return call(c, "GET", "/api/v1/rollouts", NULL, NULL, ret);
    if (npos != 3)
        return -ENOSYS;
    if (strcmp(sub, "create") == 0) {
        if ((r = ota_fs_read_all(arg, 1 << 20, &text, &n, c->err)) < 0)
            return r;
        r = call(c, "POST", "/api/v1/rollouts", text, NULL, ret);
        free(text);
        return r;
    }
    otasrv_client_urlencode(arg, enc, sizeof(enc));
    if (strcmp(sub, "status") == 0) {
        snprintf(path, sizeof(path), "/api/v1/rollouts/%s", enc);
        return call(c, "GET", path, NULL, NULL, ret);
    }
    for (const char *const *a = acts; *a; a++)
        if (strcmp(sub, *a) == 0) {
            snprintf(path, sizeof(path), "/api/v1/rollouts/%s/%s", enc, sub);
            return call(c, "POST", path, "{}", NULL, ret);
        }
    return -ENOSYS;
}

/* Appends "&key=value" (encoded) when value is set. */
static void add_query(char *q, size_t cap, const char *key, const char *value)
{
    size_t n = strlen(q);
    if (!value)
        return;
    snprintf(q + n, cap - n, "%s%s=", strchr(q, '?') ? "&" : "?", key);
    otasrv_client_urlencode(value, q, cap);
}

/* The command line, parsed: positional words and the options' values. */
struct args {
    const char *pos[3];
    int npos, publish, published;
    const char *id, *token_file;
    const char *q_type, *q_group, *q_tag, *q_version, *q_limit, *q_offset, *q_device, *q_update;
    const char *to, *by; /* clock advance */
};

static int parse_args(int argc, char **argv, struct ctx *c, struct args *a, struct ota_err *err)
{
    enum {
        O_SERVER = 256,
        O_TOKEN,
        O_TOKEN_FILE,
        O_ID,
        O_PUBLISH,
        O_PUBLISHED,
        O_TYPE,
        O_GROUP,
        O_TAG,
        O_VERSION,
        O_LIMIT,
        O_OFFSET,
        O_DEVICE,
        O_UPDATE,
        O_TO,
        O_BY
    };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"admin-token", required_argument, NULL, O_TOKEN},
        {"admin-token-file", required_argument, NULL, O_TOKEN_FILE},
        {"id", required_argument, NULL, O_ID},
        {"publish", no_argument, NULL, O_PUBLISH},
        {"published", no_argument, NULL, O_PUBLISHED},
        {"type", required_argument, NULL, O_TYPE},
        {"group", required_argument, NULL, O_GROUP},
        {"tag", required_argument, NULL, O_TAG},
        {"version", required_argument, NULL, O_VERSION},
        {"limit", required_argument, NULL, O_LIMIT},
        {"offset", required_argument, NULL, O_OFFSET},
        {"device", required_argument, NULL, O_DEVICE},
        {"update-id", required_argument, NULL, O_UPDATE},
        {"to", required_argument, NULL, O_TO},
        {"by", required_argument, NULL, O_BY},
        {NULL, 0, NULL, 0},
    };
    /* where each value option's argument goes */
    const char **value[] = {
        [O_ID - O_SERVER] = &a->id,           [O_TOKEN_FILE - O_SERVER] = &a->token_file,
        [O_TYPE - O_SERVER] = &a->q_type,     [O_GROUP - O_SERVER] = &a->q_group,
        [O_TAG - O_SERVER] = &a->q_tag,       [O_VERSION - O_SERVER] = &a->q_version,
        [O_LIMIT - O_SERVER] = &a->q_limit,   [O_OFFSET - O_SERVER] = &a->q_offset,
        [O_DEVICE - O_SERVER] = &a->q_device, [O_UPDATE - O_SERVER] = &a->q_update,
        [O_TO - O_SERVER] = &a->to,           [O_BY - O_SERVER] = &a->by,
    };
    int o;

    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
        if (o == 1) {
            if (a->npos == 3)
                return ota_err_set(err, EINVAL, "too many arguments");
            a->pos[a->npos++] = optarg;
        } else if (o == O_SERVER) {
            c->server = optarg;
        } else if (o == O_TOKEN) {
            ota_strlcpy(c->token, optarg, sizeof(c->token));
        } else if (o == O_PUBLISH) {
            a->publish = 1;
        } else if (o == O_PUBLISHED) {
            a->published = 1;
        } else if (o > O_SERVER && o <= O_BY && value[o - O_SERVER]) {
            *value[o - O_SERVER] = optarg;
        } else {
            return ota_err_set(err, EINVAL, "unknown option %s", argv[optind - 1]);
        }
    }
    return 0;
}

/* --admin-token-file: its first line, trailing blanks cut. */
static int read_token(struct ctx *c, const char *file, struct ota_err *err)
{
    char *t = NULL;
    size_t n = 0;
    int r;

    if ((r = ota_fs_read_all(file, sizeof(c->token) - 1, &t, &n, err)) < 0)
        return r;
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
        t[--n] = '\0';
    ota_strlcpy(c->token, t, sizeof(c->token));
    free(t);
    return 0;
}

static int cmd_release(struct ctx *c, const struct args *a, json_t **out)
{
    const char *sub = a->pos[1];
    char path[2048], enc[512] = "";

    if (strcmp(sub, "add") == 0 && a->npos == 3)
        return release_add(c, a->pos[2], a->id, a->publish, out);
    if (strcmp(sub, "list") == 0 && a->npos == 2)
        return call(c, "GET", a->published ? "/api/v1/releases?published=1" : "/api/v1/releases",
                    NULL, NULL, out);
    if (a->npos == 3 &&
        (strcmp(sub, "get") == 0 || strcmp(sub, "publish") == 0 || strcmp(sub, "delete") == 0)) {
        otasrv_client_urlencode(a->pos[2], enc, sizeof(enc));
        snprintf(path, sizeof(path), "/api/v1/releases/%s%s", enc,
                 strcmp(sub, "publish") == 0 ? "/publish" : "");
        return call(c,
                    strcmp(sub, "get") == 0      ? "GET"
                    : strcmp(sub, "delete") == 0 ? "DELETE"
                                                 : "POST",
                    path, strcmp(sub, "publish") == 0 ? "{}" : NULL, NULL, out);
    }
    return ota_err_set(c->err, EINVAL,
                       "release: add DIR|FILE.swu | list | get ID | publish ID | delete ID");
}

static int cmd_query(struct ctx *c, const struct args *a, json_t **out)
{
    char path[2048], enc[512] = "";

    if (strcmp(a->pos[0], "devices") == 0 && a->npos == 1) {
        snprintf(path, sizeof(path), "/api/v1/devices");
        add_query(path, sizeof(path), "type", a->q_type);
        add_query(path, sizeof(path), "group", a->q_group);
        add_query(path, sizeof(path), "tag", a->q_tag);
        add_query(path, sizeof(path), "version", a->q_version);
        add_query(path, sizeof(path), "limit", a->q_limit);
        add_query(path, sizeof(path), "offset", a->q_offset);
    } else if (strcmp(a->pos[0], "device") == 0 && a->npos == 2) {
        otasrv_client_urlencode(a->pos[1], enc, sizeof(enc));
        snprintf(path, sizeof(path), "/api/v1/devices/%s", enc);
    } else if (strcmp(a->pos[0], "reports") == 0 && a->npos == 1) {
        snprintf(path, sizeof(path), "/api/v1/reports");
        add_query(path, sizeof(path), "device", a->q_device);
        add_query(path, sizeof(path), "update_id", a->q_update);
    } else {
        return ota_err_set(c->err, EINVAL, "unknown command or wrong arguments: %s", a->pos[0]);
    }
    return call(c, "GET", path, NULL, NULL, out);
}

/* "clock get" and "clock advance --to MS | --by MS". */
static int cmd_clock(struct ctx *c, const struct args *a, json_t **out)
{
    const char *v = a->to ? a->to : a->by;
    char body[96], *end;
    long long ms;

    if (a->npos == 2 && strcmp(a->pos[1], "get") == 0 && !a->to && !a->by)
        return call(c, "GET", "/api/v1/admin/clock", NULL, NULL, out);
    if (a->npos != 2 || strcmp(a->pos[1], "advance") != 0 || !a->to == !a->by)
        return ota_err_set(c->err, EINVAL, "clock: get | advance --to MS | advance --by MS");
    errno = 0;
    ms = strtoll(v, &end, 10);
    if (!*v || *end || errno || ms < 0)
        return ota_err_set(c->err, EINVAL, "clock advance: --%s %s: not a count of ms",
                           a->to ? "to" : "by", v);
    snprintf(body, sizeof(body), "{\"%s\": %lld}", a->to ? "advance_to_ms" : "advance_ms", ms);
    return call(c, "POST", "/api/v1/admin/clock", body, NULL, out);
}

int otasrv_ctl_run(int argc, char **argv, char **ret_out, struct ota_err *err)
{
    struct ctx c = {.err = err};
    struct args a = {0};
    json_t *out = NULL;
    const char *env;
    int r;

    c.server = getenv("OTA_SERVER") ? getenv("OTA_SERVER") : "http://127.0.0.1:8080";
    if ((env = getenv("OTA_ADMIN_TOKEN")))
        ota_strlcpy(c.token, env, sizeof(c.token));
    if ((r = parse_args(argc, argv, &c, &a, err)) < 0)
        return r;
    if (a.token_file && (r = read_token(&c, a.token_file, err)) < 0)
        return r;
    if (!c.token[0])
        return ota_err_set(err, EINVAL, "no admin token (--admin-token, --admin-token-file)");
    if (a.npos == 0)
        return ota_err_set(err, EINVAL, "no command");
    if (strcmp(a.pos[0], "release") == 0 && a.npos >= 2) {
        r = cmd_release(&c, &a, &out);
    } else if (strcmp(a.pos[0], "rollout") == 0 && a.npos >= 2) {
        r = rollout_cmd(&c, a.pos[1], a.npos == 3 ? a.pos[2] : NULL, a.npos, &out);
        if (r == -ENOSYS)
            return ota_err_set(err, EINVAL,
                               "rollout: create FILE | list | status ID | approve|start|pause|"
                               "resume|cancel|rollback|activate ID");
    } else if (strcmp(a.pos[0], "clock") == 0) {
        r = cmd_clock(&c, &a, &out);
    } else {
        r = cmd_query(&c, &a, &out);
    }
    if (r < 0)
        return r;
    *ret_out = json_dumps(out, JSON_INDENT(2));
    json_decref(out);
    return *ret_out ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}
