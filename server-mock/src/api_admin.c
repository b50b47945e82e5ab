/* The admin face of the fleet API: releases, devices, reports. Every call
 * needs the admin token. How a release built by ota-pack gets in
 * (docs/protocol.md, "Admin API"):
 *   1. POST /api/v1/releases {"dir": "<ota-pack --out dir on this host>"}
 *      copies manifest, signature and payload in; or
 *   2. POST /api/v1/releases {"manifest": text, "signature": b64,
 *      "payload_path"?: path on this host}; without payload_path, the
 *      payload follows as the raw body of PUT /api/v1/releases/{id}/payload,
 *      streamed to disk and checked against the manifest's size and sha256;
 *   3. an SWUpdate .swu: POST /api/v1/releases {"sw_description": text,
 *      "payload": "x.swu", "size": N, "sha256": hex, "payload_path"?},
 *      then the .swu as the payload, as in 2; the .swu's first member must
 *      be that sw-description (release_add_swu below).
 * Files land in <data-dir>/releases/<id>/ (written durably) before the
 * database row; a release becomes visible to devices only when published. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/manifest.h"
#include "otasrv/api.h"
#include "otasrv/api_clock.h"
#include "otasrv/api_faults.h"
#include "otasrv/files.h"
#include "otasrv/api_rollouts.h"
#include "ota/cpio.h"
#include "otasrv/swdesc.h"

#define RELEASE_ID_MAX 56 /* "rel-<id>" must fit the agent's 64-byte update id */

static json_t *release_json(const struct otasrv_release *r)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:b, s:b, s:I, s:I, s:s, s:s}", "id", r->id, "name",
        r->name, "version", r->version, "kind", r->kind, "payload", r->payload_name, "size",
        (json_int_t)r->size, "sha256", r->sha256, "has_payload", r->payload_path[0] != 0,
        "published", r->published, "published_ms", (json_int_t)r->published_ms, "created_ms",
        (json_int_t)r->created_ms, "manifest", r->manifest, "signature", r->signature);

    if (o && strcmp(r->format, "swu") == 0) {
        json_t *hw = json_loads(r->compat, 0, NULL);
        json_object_set_new(o, "format", json_string("swu"));
        json_object_set_new(o, "hardware_compatibility", hw ? hw : json_array());
    } else if (o) {
        json_object_set_new(o, "format", json_string("ota"));
    }
    return o;
}

/* Stores rel and answers 201 with it; *made_dir (the release's new
 * directory) is cleared once the directory is the store's, or someone
 * else's (a release of that id came first). */
static enum otasrv_result add_and_answer(struct otasrv_req *req, struct otasrv_release *rel,
                                         int *made_dir)
{
    struct ota_err err = {0};
    int r = otasrv_store_release_add(req->srv->store, rel, &err);

    if (r < 0) {
        if (r == -EEXIST)
            *made_dir = 0; /* someone else's now */
        return otasrv_reply_store_error(req, r, &err);
    }
    *made_dir = 0;
    return otasrv_reply_json(req, 201, release_json(rel));
}

/* The first member of the .swu at path is the sw-description text: the
 * release's record and its payload say the same. -EBADMSG if not. */
static int swu_matches(const char *path, const char *sw_description, struct ota_err *err)
{
    char *got = NULL;
    size_t n = 0;
    int r = ota_cpio_read_first(path, "sw-description", OTASRV_SWDESC_MAX_BYTES, &got, &n, err);

    if (r < 0)
        return ota_err_prefix(err, r, "the .swu");
    if (n != strlen(sw_description) || memcmp(got, sw_description, n) != 0)
        r = ota_err_set(err, EBADMSG, "the .swu's sw-description is not the release's");
    free(got);
    return r;
}

/* Unknown query parameters are refused like unknown body fields. */
struct query_check {
    const char *const *allowed;
    char bad[64];
};

static int query_iter(void *cls, const char *key, const char *value)
{
    struct query_check *q = cls;

    (void)value;
    for (const char *const *a = q->allowed; *a; a++)
        if (strcmp(*a, key) == 0)
            return 0;
    ota_strlcpy(q->bad, key, sizeof(q->bad));
    return 1;
}

static int check_query(struct otasrv_req *req, const char *const *allowed, enum otasrv_result *ret)
{
    struct query_check q = {allowed, ""};

    otasrv_query_each(req, query_iter, &q);
    if (q.bad[0]) {
        *ret = otasrv_reply_error(req, 400, "unknown query parameter \"%s\"", q.bad);
        return -EINVAL;
    }
    return 0;
}

/* Copies src to dst durably, checking size and SHA-256 on the way (sha_hex
 * NULL: no check); never holds more than a buffer of it. */
static int copy_checked(const char *src, const char *dst, uint64_t size, const char *sha_hex,
                        struct ota_err *err)
{
    char tmp[4200], got[OTA_SHA256_HEX];
    uint8_t d[OTA_SHA256_LEN];
    static __thread char buf[1 << 16];
    struct ota_sha256 *h = ota_sha256_new();
    uint64_t total = 0;
    int in = -1, out = -1, r = 0;
    ssize_t n;

    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    if (!h)
        return ota_err_set(err, ENOMEM, "out of memory");
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        r = ota_err_set(err, errno, "%s: %s", src, strerror(errno));
        goto out;
    }
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        r = ota_err_set(err, errno, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            r = ota_err_set(err, errno ? errno : EIO, "%s: %s", tmp, strerror(errno ? errno : EIO));
            goto out;
        }
        if ((r = ota_sha256_update(h, buf, (size_t)n)) < 0)
            goto out;
        total += (uint64_t)n;
    }
    if (n < 0) {
        r = ota_err_set(err, errno, "%s: %s", src, strerror(errno));
        goto out;
    }
    if ((r = ota_sha256_final(h, d)) < 0)
        goto out;
    ota_hex_encode(d, sizeof(d), got);
    if (sha_hex && (total != size || strcmp(got, sha_hex) != 0)) {
        r = ota_err_set(err, EBADMSG,
                        "payload %s: %llu bytes, sha256 %s; the manifest says %llu, %s", src,
                        (unsigned long long)total, got, (unsigned long long)size, sha_hex);
        goto out;
    }
    if (fsync(out) < 0 || rename(tmp, dst) < 0) {
        r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
        goto out;
    }
    r = ota_fs_sync_parent(dst, err);
out:
    if (out >= 0)
        close(out);
    if (in >= 0)
        close(in);
    if (r < 0)
        unlink(tmp);
    ota_sha256_free(h);
    return r;
}

static char *read_trimmed(const char *path, size_t max, struct ota_err *err)
{
    char *text = NULL;
    size_t n = 0;

    if (ota_fs_read_all(path, max, &text, &n, err) < 0)
        return NULL;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        text[--n] = '\0';
    return text;
}

/* The manifest and its signature of a release add: read from dir's files,
 * or the body's fields (malloc'ed into *ret_manifest, *ret_sig). On
 * failure replies (400 / 500) and returns -EINVAL. */
static int manifest_and_sig(struct otasrv_req *req, json_t *o, const char *dirarg,
                            const char *payload_path, char **ret_manifest, char **ret_sig,
                            enum otasrv_result *ret)
{
    struct ota_err err = {0};
    char *manifest = NULL, *sig = NULL, path[4400];

    if (dirarg) {
        if (json_object_get(o, "manifest") || json_object_get(o, "signature") || payload_path) {
            *ret = otasrv_reply_error(req, 400, "give dir, or manifest and signature: not both");
            return -EINVAL;
        }
        snprintf(path, sizeof(path), "%s/manifest.json", dirarg);
        manifest = read_trimmed(path, OTA_MANIFEST_MAX_BYTES, &err);
        snprintf(path, sizeof(path), "%s/manifest.json.sig", dirarg);
        sig = manifest ? read_trimmed(path, 1024, &err) : NULL;
        if (!manifest || !sig) {
            *ret = otasrv_reply_error(req, 400, "dir: %s", err.reason);
            goto fail;
        }
    } else {
        const char *mt = json_string_value(json_object_get(o, "manifest"));
        const char *st = json_string_value(json_object_get(o, "signature"));
        if (!mt || !st) {
            *ret = otasrv_reply_error(req, 400,
                                      "fields manifest and signature (strings) are required "
                                      "without dir");
            return -EINVAL;
        }
        manifest = strdup(mt);
        sig = strdup(st);
        if (!manifest || !sig) {
            *ret = otasrv_reply_error(req, 500, "out of memory");
            goto fail;
        }
    }
    *ret_manifest = manifest;
    *ret_sig = sig;
    return 0;
fail:
    free(manifest);
    free(sig);
    return -EINVAL;
}

/* A release's files in dir: the manifest, its signature, the payload's
 * .sha256 line, each written atomically. */
static int write_release_files(const char *dir, const struct otasrv_release *rel, const char *sig,
                               struct ota_err *err)
{
    char line[400], path[4400];
    int r;

    snprintf(line, sizeof(line), "%s  %s\n", rel->sha256, rel->payload_name);
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    r = ota_fs_write_atomic(path, rel->manifest, strlen(rel->manifest), 0644, err);
    snprintf(path, sizeof(path), "%s/manifest.json.sig", dir);
    if (r == 0)
        r = ota_fs_write_atomic(path, sig, strlen(sig), 0644, err);
    snprintf(path, sizeof(path), "%s/%s.sha256", dir, rel->payload_name);
    if (r == 0)
        r = ota_fs_write_atomic(path, line, strlen(line), 0644, err);
    return r;
}

/* The row of a new release (its id set) from its parsed manifest; rel
 * borrows manifest. */
static void release_from_manifest(struct otasrv_release *rel, const struct ota_manifest *m,
                                  char *manifest, const char *sig)
{
    ota_strlcpy(rel->name, m->name, sizeof(rel->name));
    ota_strlcpy(rel->version, m->version, sizeof(rel->version));
    ota_strlcpy(rel->kind, ota_kind_names[m->kind], sizeof(rel->kind));
    ota_strlcpy(rel->payload_name, m->payload, sizeof(rel->payload_name));
    ota_strlcpy(rel->signature, sig, sizeof(rel->signature));
    ota_hex_encode(m->sha256, sizeof(m->sha256), rel->sha256);
    rel->size = m->size;
    rel->manifest = manifest;
    rel->created_ms = otasrv_now_ms();
}

/* The fields of an .swu release add, checked; rel gets them. */
static int swu_fields(struct otasrv_req *req, json_t *o, const char *id, const char *text,
                      struct otasrv_release *rel, enum otasrv_result *ret)
{
    struct otasrv_swdesc d;
    struct ota_err err = {0};
    const char *payload = json_string_value(json_object_get(o, "payload"));
    const char *sha = json_string_value(json_object_get(o, "sha256"));
    json_t *size = json_object_get(o, "size");
    char *hw;
    size_t n;

    if (json_object_get(o, "dir") || json_object_get(o, "manifest") ||
        json_object_get(o, "signature")) {
        *ret = otasrv_reply_error(req, 400, "sw_description: not with dir, manifest, signature");
        return -EINVAL;
    }
    if (!text || !payload || !sha || !json_is_integer(size) || json_integer_value(size) < 0) {
        *ret = otasrv_reply_error(req, 400,
                                  "sw_description, payload, sha256: strings; size: an integer "
                                  ">= 0");
        return -EINVAL;
    }
    n = strlen(payload);
    if (!otasrv_valid_id(payload) || n < 5 || strcmp(payload + n - 4, ".swu") != 0 ||
        n >= sizeof(rel->payload_name)) {
        *ret = otasrv_reply_error(req, 400, "payload \"%s\": a plain file name ending in .swu",
                                  payload);
        return -EINVAL;
    }
    if (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64) {
        *ret = otasrv_reply_error(req, 400, "sha256: 64 lower-case hex digits");
        return -EINVAL;
    }
    if (otasrv_swdesc_parse(text, strlen(text), &d, &err) < 0) {
        *ret = otasrv_reply_error(req, 400, "%s", err.reason);
        return -EINVAL;
    }
    if (!(hw = otasrv_swdesc_hw_json(&d)) || strlen(hw) >= sizeof(rel->compat)) {
        free(hw);
        *ret = otasrv_reply_error(req, 400, "sw-description: hardware-compatibility is too long");
        return -EINVAL;
    }
    ota_strlcpy(rel->compat, hw, sizeof(rel->compat));
    free(hw);
    ota_strlcpy(rel->format, "swu", sizeof(rel->format));
    ota_strlcpy(rel->name, d.name, sizeof(rel->name));
    ota_strlcpy(rel->version, d.version, sizeof(rel->version));
    ota_strlcpy(rel->kind, d.kind, sizeof(rel->kind));
    ota_strlcpy(rel->payload_name, payload, sizeof(rel->payload_name));
    ota_strlcpy(rel->sha256, sha, sizeof(rel->sha256));
    rel->size = (uint64_t)json_integer_value(size);
    rel->created_ms = otasrv_now_ms();
    if (id)
        ota_strlcpy(rel->id, id, sizeof(rel->id));
    else
        snprintf(rel->id, sizeof(rel->id), "%s-%s", d.name, d.version);
    if (!otasrv_valid_id(rel->id) || strlen(rel->id) > RELEASE_ID_MAX) {
        *ret = otasrv_reply_error(req, 400, "release id \"%s\": [A-Za-z0-9][A-Za-z0-9._+-]{0,55}",
                                  rel->id);
        return -EINVAL;
    }
    return 0;
}

/* An SWUpdate release: its sw-description read with libconfig (version,
 * hardware compatibility, kind), the .swu itself its payload file. The
 * release directory holds sw-description and the payload's .sha256 line;
 * nothing is written or recorded before every field is checked. */
static enum otasrv_result release_add_swu(struct otasrv_req *req, json_t *o, const char *id,
                                          const char *payload_path, int publish)
{
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    struct otasrv_release rel = {0}, *got = NULL;
    const char *text = json_string_value(json_object_get(o, "sw_description"));
    char dir[4200], path[4400], line[400];
    enum otasrv_result ret;
    int r, made_dir = 0;

    if (swu_fields(req, o, id, text, &rel, &ret) < 0)
        return ret;
    if (otasrv_store_release_get(srv->store, rel.id, &got, NULL) == 0) {
        otasrv_release_free(got);
        return otasrv_reply_error(req, 409, "release %s exists", rel.id);
    }
    if (publish && !payload_path)
        return otasrv_reply_error(req, 409, "cannot publish a release without its payload");
    rel.manifest = (char *)text; /* borrowed: the row copies it */
    snprintf(dir, sizeof(dir), "%s/%s", srv->releases_dir, rel.id);
    snprintf(line, sizeof(line), "%s  %s\n", rel.sha256, rel.payload_name);
    if ((r = ota_fs_remove_tree(dir, &err)) < 0 || (r = ota_fs_mkdirs(dir, &err)) < 0) {
        ret = otasrv_reply_error(req, 500, "%s", err.reason);
        goto out;
    }
    made_dir = 1;
    snprintf(path, sizeof(path), "%s/sw-description", dir);
    r = ota_fs_write_atomic(path, text, strlen(text), 0644, &err);
    snprintf(path, sizeof(path), "%s/%s.sha256", dir, rel.payload_name);
    if (r == 0)
        r = ota_fs_write_atomic(path, line, strlen(line), 0644, &err);
    if (r < 0) {
        ret = otasrv_reply_error(req, 500, "%s", err.reason);
        goto out;
    }
    if (payload_path) {
        snprintf(path, sizeof(path), "%s/%s", dir, rel.payload_name);
        r = copy_checked(payload_path, path, rel.size, rel.sha256, &err);
        if (r == 0)
            r = swu_matches(path, text, &err);
        if (r < 0) {
            ret = otasrv_reply_error(req, r == -EBADMSG || r == -ENOENT ? 400 : 500, "%s",
                                     err.reason);
            goto out;
        }
        ota_strlcpy(rel.payload_path, path, sizeof(rel.payload_path));
        rel.published = publish;
        rel.published_ms = publish ? rel.created_ms : 0;
    }
    ret = add_and_answer(req, &rel, &made_dir);
out:
    if (made_dir)
        ota_ignore(ota_fs_remove_tree(dir, NULL));
    return ret;
}

/* The fields of a manifest taken as they are (json_string_value or ""), for
 * a release added with "check": false. */
static const char *field_or_empty(json_t *m, const char *key)
{
    const char *v = json_string_value(json_object_get(m, key));

    return v ? v : "";
}

/* POST /api/v1/releases {"dir", "id", "check": false, "publish"?}: the
 * release directory's manifest, signature and payload stored as they are,
 * for tests of devices against releases no honest server would take
 * (docs/protocol.md, "Releases"). Only the manifest being a JSON object that
 * names a plain payload file is checked. */
static enum otasrv_result release_add_unchecked(struct otasrv_req *req, json_t *o,
                                                const char *dirarg, const char *id, int publish)
{
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    struct otasrv_release rel = {0}, *got = NULL;
    char *manifest = NULL, *sig = NULL, src[4200], dir[4200], path[4400];
    json_t *m = NULL, *size;
    enum otasrv_result ret;
    const char *payload;
    int r, made_dir = 0;

    if (!dirarg || !id || !otasrv_valid_id(id) || strlen(id) > RELEASE_ID_MAX)
        return otasrv_reply_error(req, 400, "check false: needs dir and a valid id");
    if (manifest_and_sig(req, o, dirarg, NULL, &manifest, &sig, &ret) < 0)
        return ret;
    m = json_loads(manifest, 0, NULL);
    payload = json_string_value(json_object_get(m, "payload"));
    if (!json_is_object(m) || !payload || !otasrv_valid_id(payload) ||
        strlen(sig) >= sizeof(rel.signature)) {
        ret = otasrv_reply_error(req, 400,
                                 "check false: the manifest must be a JSON object "
                                 "naming a plain payload; the signature < 128 bytes");
        goto out;
    }
    if (otasrv_store_release_get(srv->store, id, &got, NULL) == 0) {
        ret = otasrv_reply_error(req, 409, "release %s exists", id);
        goto out;
    }
    ota_strlcpy(rel.id, id, sizeof(rel.id));
    ota_strlcpy(rel.name, field_or_empty(m, "name"), sizeof(rel.name));
    ota_strlcpy(rel.version, field_or_empty(m, "version"), sizeof(rel.version));
    ota_strlcpy(rel.kind, field_or_empty(m, "kind"), sizeof(rel.kind));
    ota_strlcpy(rel.sha256, field_or_empty(m, "sha256"), sizeof(rel.sha256));
    ota_strlcpy(rel.payload_name, payload, sizeof(rel.payload_name));
    ota_strlcpy(rel.signature, sig, sizeof(rel.signature));
    size = json_object_get(m, "size");
    rel.size = json_is_integer(size) && json_integer_value(size) > 0
                   ? (uint64_t)json_integer_value(size)
                   : 0;
    rel.manifest = manifest;
    rel.created_ms = otasrv_now_ms();
    snprintf(dir, sizeof(dir), "%s/%s", srv->releases_dir, rel.id);
    if ((r = ota_fs_remove_tree(dir, &err)) < 0 || (r = ota_fs_mkdirs(dir, &err)) < 0) {
        ret = otasrv_reply_error(req, 500, "%s", err.reason);
        goto out;
    }
    made_dir = 1;
    snprintf(src, sizeof(src), "%s/%s", dirarg, payload);
    snprintf(path, sizeof(path), "%s/%s", dir, rel.payload_name);
    if (write_release_files(dir, &rel, sig, &err) < 0 ||
        (r = copy_checked(src, path, 0, NULL, &err)) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    ota_strlcpy(rel.payload_path, path, sizeof(rel.payload_path));
    rel.published = publish;
    rel.published_ms = publish ? rel.created_ms : 0;
    ret = add_and_answer(req, &rel, &made_dir);
out:
    if (made_dir)
        ota_ignore(ota_fs_remove_tree(dir, NULL));
    otasrv_release_free(got);
    json_decref(m);
    free(manifest);
    free(sig);
    return ret;
}

/* 1 if there is no --public-key or one of its keys verifies sig; else 0 with why in err. */
static int signed_by_a_key(const struct otasrv_srv *srv, const char *manifest, const char *sig,
                           struct ota_err *err)
{
    for (int i = 0; i < srv->n_public_keys; i++)
        if (ota_manifest_verify(manifest, strlen(manifest), sig, srv->public_key_pem[i], err) == 0)
            return 1;
    if (srv->n_public_keys > 1) {
        ota_err_clear(err);
        ota_err_set(err, EBADMSG, "it verifies with none of the %d --public-key keys",
                    srv->n_public_keys);
    }
    return srv->n_public_keys == 0;
}

static enum otasrv_result release_add(struct otasrv_req *req)
{
    static const char *const keys[] = {"id",           "dir",     "manifest",       "signature",
                                       "payload_path", "publish", "sw_description", "payload",
                                       "size",         "sha256",  "check",          NULL};
    struct otasrv_srv *srv = req->srv;
    struct ota_err err = {0};
    struct otasrv_release rel = {0}, *got = NULL;
    struct ota_manifest m;
    char *manifest = NULL, *sig = NULL, src[4200] = "", dir[4200], path[4400];
    uint8_t raw[OTA_ED25519_SIG_LEN + 4];
    size_t rawn = 0;
    const char *dirarg, *id, *payload_path;
    json_t *o = NULL, *pub;
    enum otasrv_result ret;
    int r, made_dir = 0;

    if (otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (otasrv_check_keys(o, keys, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    dirarg = json_string_value(json_object_get(o, "dir"));
    payload_path = json_string_value(json_object_get(o, "payload_path"));
    id = json_string_value(json_object_get(o, "id"));
    pub = json_object_get(o, "publish");
    if ((json_object_get(o, "dir") && !dirarg) || (json_object_get(o, "id") && !id) ||
        (json_object_get(o, "payload_path") && !payload_path) || (pub && !json_is_boolean(pub))) {
        ret = otasrv_reply_error(req, 400, "dir, id, payload_path: strings; publish: a boolean");
        goto out;
    }
    if (json_object_get(o, "check") && !json_is_false(json_object_get(o, "check"))) {
        ret = otasrv_reply_error(req, 400, "check: only false may be given");
        goto out;
    }
    if (json_is_false(json_object_get(o, "check"))) {
        ret = release_add_unchecked(req, o, dirarg, id, json_is_true(pub));
        goto out;
    }
    if (json_object_get(o, "sw_description")) {
        ret = release_add_swu(req, o, id, payload_path, json_is_true(pub));
        goto out;
    }
    if (json_object_get(o, "payload") || json_object_get(o, "size") ||
        json_object_get(o, "sha256")) {
        ret = otasrv_reply_error(req, 400, "payload, size, sha256: only with sw_description");
        goto out;
    }
    if (manifest_and_sig(req, o, dirarg, payload_path, &manifest, &sig, &ret) < 0)
        goto out;
    if (ota_manifest_parse(manifest, strlen(manifest), &m, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "manifest: %s", err.reason);
        goto out;
    }
    if (strlen(sig) >= sizeof(rel.signature) || ota_b64_decode(sig, raw, sizeof(raw), &rawn) < 0 ||
        rawn != OTA_ED25519_SIG_LEN) {
        ret = otasrv_reply_error(req, 400, "signature: base64 of a 64-byte Ed25519 signature");
        goto out;
    }
    if (!signed_by_a_key(srv, manifest, sig, &err)) {
        ret = otasrv_reply_error(req, 400, "signature: %s", err.reason);
        goto out;
    }
    if (id)
        ota_strlcpy(rel.id, id, sizeof(rel.id));
    else
        snprintf(rel.id, sizeof(rel.id), "%s-%s", m.name, m.version);
    if (!otasrv_valid_id(rel.id) || strlen(rel.id) > RELEASE_ID_MAX) {
        ret = otasrv_reply_error(req, 400, "release id \"%s\": [A-Za-z0-9][A-Za-z0-9._+-]{0,55}",
                                 rel.id);
        goto out;
    }
    if (!otasrv_valid_id(m.payload)) {
        ret = otasrv_reply_error(req, 400, "manifest: payload name \"%s\" is not a plain name",
                                 m.payload);
        goto out;
    }
    if (otasrv_store_release_get(srv->store, rel.id, &got, NULL) == 0) {
        ret = otasrv_reply_error(req, 409, "release %s exists", rel.id);
        goto out;
    }
    release_from_manifest(&rel, &m, manifest, sig);
    if (dirarg)
        snprintf(src, sizeof(src), "%s/%s", dirarg, m.payload);
    else if (payload_path)
        ota_strlcpy(src, payload_path, sizeof(src));

    /* Files first (a stale directory from a crash is replaced), row last. */
    snprintf(dir, sizeof(dir), "%s/%s", srv->releases_dir, rel.id);
    if ((r = ota_fs_remove_tree(dir, &err)) < 0 || (r = ota_fs_mkdirs(dir, &err)) < 0) {
        ret = otasrv_reply_error(req, 500, "%s", err.reason);
        goto out;
    }
    made_dir = 1;
    if (write_release_files(dir, &rel, sig, &err) < 0) {
        ret = otasrv_reply_error(req, 500, "%s", err.reason);
        goto out;
    }
    if (src[0]) {
        snprintf(path, sizeof(path), "%s/%s", dir, rel.payload_name);
        r = copy_checked(src, path, rel.size, rel.sha256, &err);
        if (r < 0) {
            ret = otasrv_reply_error(req, r == -EBADMSG || r == -ENOENT ? 400 : 500, "%s",
                                     err.reason);
            goto out;
        }
        ota_strlcpy(rel.payload_path, path, sizeof(rel.payload_path));
        if (json_is_true(pub)) {
            rel.published = 1;
            rel.published_ms = rel.created_ms;
        }
    } else if (json_is_true(pub)) {
        ret = otasrv_reply_error(req, 409, "cannot publish a release without its payload");
        goto out;
    }
    ret = add_and_answer(req, &rel, &made_dir);
out:
    if (made_dir)
        ota_ignore(ota_fs_remove_tree(dir, NULL));
    otasrv_release_free(got);
    free(manifest);
    free(sig);
    json_decref(o);
    return ret;
}

void otasrv_api_admin_upload_begin(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_release *rel = NULL;
    const char *rid = req->seg[3];
    const char *cl = otasrv_header(req, "Content-Length");
    unsigned status;

    if (otasrv_admin_may(req, req->method, &status, req->early_detail, sizeof(req->early_detail)) <
        0) {
        req->early_status = status;
        return;
    }
    if (!otasrv_valid_id(rid) || otasrv_store_release_get(srv->store, rid, &rel, NULL) < 0) {
        req->early_status = 404;
        snprintf(req->early_detail, sizeof(req->early_detail), "no release %.128s", rid);
        return;
    }
    if (rel->payload_path[0]) {
        req->early_status = 409;
        snprintf(req->early_detail, sizeof(req->early_detail), "release %s has its payload",
                 rel->id);
    } else if (cl && strtoull(cl, NULL, 10) != rel->size) {
        req->early_status = 400;
        snprintf(req->early_detail, sizeof(req->early_detail),
                 "Content-Length %s: the manifest says %llu bytes", cl,
                 (unsigned long long)rel->size);
    } else {
        snprintf(req->up.tmp, sizeof(req->up.tmp), "%s/%s/.upload-%s", srv->releases_dir, rel->id,
                 req->id);
        snprintf(req->up.dst, sizeof(req->up.dst), "%s/%s/%s", srv->releases_dir, rel->id,
                 rel->payload_name);
        ota_strlcpy(req->up.release_id, rel->id, sizeof(req->up.release_id));
        req->up.hash = ota_sha256_new();
        req->up.fd =
            req->up.hash ? open(req->up.tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
        if (req->up.fd < 0) {
            req->early_status = 500;
            snprintf(req->early_detail, sizeof(req->early_detail), "cannot store the upload: %s",
                     strerror(errno ? errno : ENOMEM));
        }
    }
    otasrv_release_free(rel);
}

enum otasrv_result otasrv_api_admin_upload_end(struct otasrv_req *req)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_release *rel = NULL;
    struct ota_err err = {0};
    uint8_t d[OTA_SHA256_LEN];
    char got[OTA_SHA256_HEX];
    enum otasrv_result ret;
    int r;

    if ((r = otasrv_store_release_get(srv->store, req->up.release_id, &rel, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    if (ota_sha256_final(req->up.hash, d) < 0) {
        ret = otasrv_reply_error(req, 500, "hashing the upload");
        goto out;
    }
    ota_hex_encode(d, sizeof(d), got);
    if (req->up.len != rel->size || strcmp(got, rel->sha256) != 0) {
        ret = otasrv_reply_error(
            req, 400, "upload: %llu bytes, sha256 %s; the manifest says %llu, %s",
            (unsigned long long)req->up.len, got, (unsigned long long)rel->size, rel->sha256);
        goto out;
    }
    if (strcmp(rel->format, "swu") == 0 &&
        (r = swu_matches(req->up.tmp, rel->manifest, &err)) < 0) {
        ret = otasrv_reply_error(req, r == -EBADMSG ? 400 : 500, "upload: %s", err.reason);
        goto out;
    }
    if (fsync(req->up.fd) < 0 || rename(req->up.tmp, req->up.dst) < 0) {
        ret = otasrv_reply_error(req, 500, "storing the upload: %s", strerror(errno));
        goto out;
    }
    close(req->up.fd);
    req->up.fd = -1;
    if ((r = ota_fs_sync_parent(req->up.dst, &err)) < 0 ||
        (r = otasrv_store_release_set_payload(srv->store, rel->id, req->up.dst, &err)) < 0) {
        ret = otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    ota_strlcpy(rel->payload_path, req->up.dst, sizeof(rel->payload_path));
    ret = otasrv_reply_json(req, 200, release_json(rel));
out:
    otasrv_release_free(rel);
    return ret;
}

static enum otasrv_result releases_list(struct otasrv_req *req)
{
    static const char *const q[] = {"published", "limit", "offset", NULL};
    struct ota_err err = {0};
    struct otasrv_release **v = NULL;
    int64_t published, limit, offset;
    size_t n = 0;
    json_t *out, *arr;
    enum otasrv_result ret;
    int r;

    if (check_query(req, q, &ret) < 0)
        return ret;
    if (otasrv_query_int(req, "published", -1, 0, 1, &published, &err) < 0 ||
        otasrv_query_int(req, "limit", 100, 1, 1000, &limit, &err) < 0 ||
        otasrv_query_int(req, "offset", 0, 0, INT64_MAX, &offset, &err) < 0)
        return otasrv_reply_error(req, 400, "%s", err.reason);
    if ((r = otasrv_store_release_list(req->srv->store, published == 1, &v, &n, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    out = json_pack("{s:[], s:I}", "releases", "total", (json_int_t)0);
    arr = json_object_get(out, "releases");
    for (size_t i = 0, seen = 0; i < n; i++) {
        if (published == 0 && v[i]->published)
            continue;
        if (seen++ >= (size_t)offset && json_array_size(arr) < (size_t)limit)
            json_array_append_new(arr, release_json(v[i]));
        json_object_set_new(out, "total", json_integer((json_int_t)seen));
    }
    for (size_t i = 0; i < n; i++)
        otasrv_release_free(v[i]);
    free(v);
    return otasrv_reply_json(req, 200, out);
}

static enum otasrv_result release_one(struct otasrv_req *req, const char *rid, const char *action)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_release *rel = NULL;
    struct ota_err err = {0};
    char dir[4200];
    enum otasrv_result ret;
    int r;

    if (!otasrv_valid_id(rid) || (r = otasrv_store_release_get(srv->store, rid, &rel, &err)) < 0)
        return otasrv_reply_error(req, 404, "no release %s", rid);
    if (strcmp(action, "get") == 0) {
        ret = otasrv_reply_json(req, 200, release_json(rel));
    } else if (strcmp(action, "publish") == 0) {
        if (!rel->payload_path[0])
            ret = otasrv_reply_error(req, 409, "release %s has no payload yet", rid);
        else if ((r = otasrv_store_release_publish(srv->store, rid, otasrv_now_ms(), &err)) < 0 ||
                 (otasrv_release_free(rel), rel = NULL,
                  r = otasrv_store_release_get(srv->store, rid, &rel, &err)) < 0)
            ret = otasrv_reply_store_error(req, r, &err);
        else
            ret = otasrv_reply_json(req, 200, release_json(rel));
    } else { /* delete */
        if (srv->release_in_use && srv->release_in_use(srv->hook_ctx, rid))
            ret = otasrv_reply_error(req, 409, "release %s is used by a rollout", rid);
        else if ((r = otasrv_store_release_delete(srv->store, rid, &err)) < 0)
            ret = otasrv_reply_store_error(req, r, &err);
        else {
            snprintf(dir, sizeof(dir), "%s/%s", srv->releases_dir, rid);
            ota_ignore(ota_fs_remove_tree(dir, NULL)); /* the row is gone: files are garbage */
            ret = otasrv_reply_json(req, 200, json_pack("{s:s}", "deleted", rid));
        }
    }
    otasrv_release_free(rel);
    return ret;
}

static enum otasrv_result devices_list(struct otasrv_req *req)
{
    static const char *const q[] = {"type", "group", "tag",    "version",
                                    "kind", "limit", "offset", NULL};
    struct otasrv_device_filter f = {0};
    struct ota_err err = {0};
    enum otasrv_result ret;
    json_t *out;
    int r;

    if (check_query(req, q, &ret) < 0)
        return ret;
    f.type = otasrv_query(req, "type");
    f.group = otasrv_query(req, "group");
    f.tag = otasrv_query(req, "tag");
    f.version = otasrv_query(req, "version");
    f.kind = otasrv_query(req, "kind");
    if (f.kind && strcmp(f.kind, "app") != 0 && strcmp(f.kind, "rootfs") != 0)
        return otasrv_reply_error(req, 400, "query parameter kind: app or rootfs");
    if (otasrv_query_int(req, "limit", 100, 1, 1000, &f.limit, &err) < 0 ||
        otasrv_query_int(req, "offset", 0, 0, INT64_MAX, &f.offset, &err) < 0)
        return otasrv_reply_error(req, 400, "%s", err.reason);
    if ((r = otasrv_store_devices_list(req->srv->store, &f, &out, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    {
        int64_t total = json_integer_value(json_object_get(out, "total"));
        int64_t next = f.offset + (int64_t)json_array_size(json_object_get(out, "devices"));
        json_object_set_new(out, "limit", json_integer(f.limit));
        json_object_set_new(out, "offset", json_integer(f.offset));
        json_object_set_new(out, "next_offset", next < total ? json_integer(next) : json_null());
    }
    return otasrv_reply_json(req, 200, out);
}

static enum otasrv_result reports_list(struct otasrv_req *req)
{
    static const char *const q[] = {"device", "update_id", "limit", "offset", NULL};
    struct ota_err err = {0};
    int64_t limit, offset;
    enum otasrv_result ret;
    json_t *out;
    int r;

    if (check_query(req, q, &ret) < 0)
        return ret;
    if (otasrv_query_int(req, "limit", 1000, 1, 10000, &limit, &err) < 0 ||
        otasrv_query_int(req, "offset", 0, 0, INT64_MAX, &offset, &err) < 0)
        return otasrv_reply_error(req, 400, "%s", err.reason);
    r = otasrv_store_reports_list(req->srv->store, otasrv_query(req, "device"),
                                  otasrv_query(req, "update_id"), limit, offset, &out, &err);
    if (r < 0)
        return otasrv_reply_store_error(req, r, &err);
    return otasrv_reply_json(req, 200, out);
}

enum otasrv_result otasrv_api_admin_handle(struct otasrv_req *req)
{
    const char *const *s = req->seg;
    const char *m = req->method;
    int n = req->nseg, get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
    enum otasrv_result ret;
    json_t *dev;
    struct ota_err err = {0};
    int r;

    if (otasrv_require_admin(req, &ret) < 0)
        return ret;
    if (n >= 3 && strcmp(s[2], "faults") == 0) /* fault plans: api_faults.c */
        return otasrv_api_faults_handle(req);
    if (n >= 4 && strcmp(s[2], "admin") == 0 && strcmp(s[3], "clock") == 0)
        return otasrv_api_clock_handle(req); /* the virtual clock: api_clock.c */
    if (n == 3 && strcmp(s[2], "releases") == 0) {
        if (get)
            return releases_list(req);
        if (post)
            return release_add(req);
    } else if (n == 4 && strcmp(s[2], "releases") == 0) {
        if (get)
            return release_one(req, s[3], "get");
        if (strcmp(m, "DELETE") == 0)
            return release_one(req, s[3], "delete");
    } else if (n == 5 && strcmp(s[2], "releases") == 0 && strcmp(s[4], "publish") == 0) {
        if (post)
            return release_one(req, s[3], "publish");
    } else if (n == 3 && strcmp(s[2], "devices") == 0) {
        if (get)
            return devices_list(req);
    } else if (n == 4 && strcmp(s[2], "devices") == 0) {
        if (get) {
            if (!otasrv_valid_id(s[3]))
                return otasrv_reply_error(req, 404, "no device %s", s[3]);
            if ((r = otasrv_store_device_get(req->srv->store, s[3], &dev, &err)) < 0)
                return otasrv_reply_store_error(req, r, &err);
            return otasrv_reply_json(req, 200, dev);
        }
    } else if (n == 5 && strcmp(s[2], "devices") == 0 && strcmp(s[4], "reenroll") == 0) {
        if (post)
            return otasrv_api_reenroll_allow(req, s[3]);
    } else if (n == 3 && strcmp(s[2], "reports") == 0) {
        if (get)
            return reports_list(req);
    } else if (strcmp(s[2], "rollouts") == 0 || strcmp(s[2], "events") == 0 ||
               strcmp(s[2], "stats") == 0) {
        return otasrv_api_rollouts_handle(req);
    } else {
        return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
    }
    return otasrv_reply_error(req, 405, "method %s not allowed on %s", m, req->path);
}
