/* Release manifest: parse, validate, format, device checks, signature.
 *
 * One validator serves both directions, so ota_manifest_format() can never
 * produce (and ota-pack never sign) a manifest that ota_manifest_parse()
 * would refuse. The parser accepts the keys in any order (JSON objects are
 * unordered, and the signature covers the exact bytes anyway); the
 * formatter always writes the order of docs/protocol.md. */
#include "ota/manifest.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const ota_kind_names[OTA_KIND_MAX] = {
    [OTA_KIND_APP] = "app",
    [OTA_KIND_ROOTFS] = "rootfs",
};

const char *const ota_format_names[OTA_FORMAT_MAX] = {
    [OTA_FORMAT_DEB] = "deb", [OTA_FORMAT_TARGZ] = "tar.gz", [OTA_FORMAT_RAW] = "raw",
    [OTA_FORMAT_GZ] = "gz",   [OTA_FORMAT_XZ] = "xz",        [OTA_FORMAT_ZST] = "zst",
};

/* The wire order; also the set of known keys. */
static const char *const manifest_keys[] = {
    "schema",         "name",
    "version",        "kind",
    "format",         "payload",
    "size",           "sha256",
    "installed_size", "device_types",
    "min_version",    "rollback",
    "created",        "rollback_expires",
    "rollback_from", /* rollback orders only */
    "keyring",       /* key-rotation releases only */
};

#define SIG_B64_LEN 88 /* 4 * ceil(64 / 3) */

static int known_key(const char *key)
{
    for (size_t i = 0; i < sizeof(manifest_keys) / sizeof(manifest_keys[0]); i++)
        if (strcmp(key, manifest_keys[i]) == 0)
            return 1;
    return 0;
}

static int kind_fits_format(enum ota_kind kind, enum ota_format format)
{
    if (kind == OTA_KIND_APP)
        return format == OTA_FORMAT_DEB || format == OTA_FORMAT_TARGZ;
    return format == OTA_FORMAT_RAW || format == OTA_FORMAT_GZ || format == OTA_FORMAT_XZ ||
           format == OTA_FORMAT_ZST;
}

/* Names and device types end up in paths, URLs and logs: keep them to a
 * plain alphabet, starting with a letter or digit. */
static int plain_token(const char *s)
{
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
          (s[0] >= '0' && s[0] <= '9')))
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

/* A payload name is one path component the agent can store under its own
 * download directory: never a path, never "." or "..", no control bytes. */
static int payload_name_ok(const char *s)
{
    if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int validate(const struct ota_manifest *m, struct ota_err *err)
{
    if (m->schema != 1)
        return ota_err_set(err, EINVAL, "unsupported manifest schema %d", m->schema);
    if (!memchr(m->name, '\0', sizeof(m->name)) || !plain_token(m->name))
        return ota_err_set(err, EINVAL, "bad release name '%.64s'", m->name);
    if (!memchr(m->version, '\0', sizeof(m->version)) || !ota_version_valid(m->version))
        return ota_err_set(err, EINVAL, "bad version '%.64s'", m->version);
    if ((unsigned)m->kind >= OTA_KIND_MAX)
        return ota_err_set(err, EINVAL, "bad kind %d", (int)m->kind);
    if ((unsigned)m->format >= OTA_FORMAT_MAX)
        return ota_err_set(err, EINVAL, "bad format %d", (int)m->format);
    if (!kind_fits_format(m->kind, m->format))
        return ota_err_set(err, EINVAL, "format '%s' does not fit kind '%s'",
                           ota_format_names[m->format], ota_kind_names[m->kind]);
    if (!memchr(m->payload, '\0', sizeof(m->payload)) || !payload_name_ok(m->payload))
        return ota_err_set(err, EINVAL, "bad payload name '%.256s'", m->payload);
    if (m->size > INT64_MAX || m->installed_size > INT64_MAX)
        return ota_err_set(err, EINVAL, "size out of range");
    if (m->n_device_types < 1 || m->n_device_types > OTA_MANIFEST_MAX_TYPES)
        return ota_err_set(err, EINVAL, "%d device types (1..%d allowed)", m->n_device_types,
                           OTA_MANIFEST_MAX_TYPES);
    for (int i = 0; i < m->n_device_types; i++) {
        const char *t = m->device_types[i];
        if (!memchr(t, '\0', sizeof(m->device_types[i])) || !plain_token(t))
            return ota_err_set(err, EINVAL, "bad device type '%.64s'", t);
    }
    if (!memchr(m->min_version, '\0', sizeof(m->min_version)) ||
        (m->min_version[0] && !ota_version_valid(m->min_version)))
        return ota_err_set(err, EINVAL, "bad min_version '%.64s'", m->min_version);
    if (m->rollback != 0 && m->rollback != 1)
        return ota_err_set(err, EINVAL, "bad rollback flag %d", m->rollback);
    if (m->created < 0)
        return ota_err_set(err, EINVAL, "negative creation time");
    if (m->keyring.version != 0 && ota_keyring_validate(&m->keyring, err) < 0)
        return -EINVAL;
    if (!m->rollback) {
        if (m->n_rollback_from != 0 || m->rollback_expires != 0)
            return ota_err_set(err, EINVAL,
                               "rollback_expires/rollback_from without rollback: true");
        return 0;
    }
    if (m->rollback_expires <= m->created)
        return ota_err_set(err, EINVAL,
                           "a rollback order needs rollback_expires after created (%lld <= %lld)",
                           (long long)m->rollback_expires, (long long)m->created);
    if (m->n_rollback_from < 1 || m->n_rollback_from > OTA_MANIFEST_MAX_TYPES)
        return ota_err_set(err, EINVAL, "a rollback order needs 1..%d rollback_from versions",
                           OTA_MANIFEST_MAX_TYPES);
    for (int i = 0; i < m->n_rollback_from; i++) {
        const char *v = m->rollback_from[i];
        if (!memchr(v, '\0', sizeof(m->rollback_from[i])) || !ota_version_valid(v))
            return ota_err_set(err, EINVAL, "bad rollback_from version '%.64s'", v);
    }
    return 0;
}

static int lookup(const char *const *names, int max, const char *s)
{
    for (int i = 0; i < max; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* A non-empty array of at most OTA_MANIFEST_MAX_TYPES strings, each < 64
 * bytes, into out[]. */
static int parse_list(const json_t *obj, const char *key, char (*out)[64], int *ret_n,
                      struct ota_err *err)
{
    const json_t *arr = json_object_get(obj, key);
    size_t i;
    const json_t *v;

    if (!arr)
        return ota_err_set(err, EINVAL, "missing field '%s'", key);
    if (!json_is_array(arr))
        return ota_err_set(err, EINVAL, "field '%s' is not an array", key);
    if (json_array_size(arr) < 1 || json_array_size(arr) > OTA_MANIFEST_MAX_TYPES)
        return ota_err_set(err, EINVAL, "field '%s' has %zu entries (1..%d allowed)", key,
                           json_array_size(arr), OTA_MANIFEST_MAX_TYPES);
    json_array_foreach(arr, i, v)
    {
        size_t n;

        if (!json_is_string(v))
            return ota_err_set(err, EINVAL, "%s[%zu] is not a string", key, i);
        n = json_string_length(v);
        if (n >= 64 || strlen(json_string_value(v)) != n)
            return ota_err_set(err, EINVAL, "%s[%zu] is too long or holds a NUL", key, i);
        memcpy(out[i], json_string_value(v), n + 1);
    }
    *ret_n = (int)json_array_size(arr);
    return 0;
}

/* The rollback binding: both keys with rollback: true, neither without. */
static int parse_rollback(const json_t *obj, struct ota_manifest *m, struct ota_err *err)
{
    int has_exp = json_object_get(obj, "rollback_expires") != NULL;
    int has_from = json_object_get(obj, "rollback_from") != NULL;

    if (!m->rollback) {
        if (has_exp || has_from)
            return ota_err_set(err, EINVAL, "field '%s' without rollback: true",
                               has_exp ? "rollback_expires" : "rollback_from");
        return 0;
    }
    if (!has_exp || !has_from)
        return ota_err_set(err, EINVAL, "a rollback order needs field '%s' (docs/protocol.md)",
                           has_exp ? "rollback_from" : "rollback_expires");
    if (ota_json_int(obj, "rollback_expires", &m->rollback_expires, err) < 0)
        return -EINVAL;
    return parse_list(obj, "rollback_from", m->rollback_from, &m->n_rollback_from, err);
}

static int parse_fields(const json_t *obj, struct ota_manifest *m, struct ota_err *err)
{
    const char *key;
    const json_t *v;
    char kind[16], format[16], sha[OTA_SHA256_HEX];
    int64_t schema, created;
    int k, f;

    json_object_foreach((json_t *)obj, key, v)
    {
        if (!known_key(key))
            return ota_err_set(err, EINVAL, "unknown field '%.64s'", key);
    }
    if (ota_json_int(obj, "schema", &schema, err) < 0 ||
        ota_json_str(obj, "name", m->name, sizeof(m->name), err) < 0 ||
        ota_json_str(obj, "version", m->version, sizeof(m->version), err) < 0 ||
        ota_json_str(obj, "kind", kind, sizeof(kind), err) < 0 ||
        ota_json_str(obj, "format", format, sizeof(format), err) < 0 ||
        ota_json_str(obj, "payload", m->payload, sizeof(m->payload), err) < 0 ||
        ota_json_u64(obj, "size", &m->size, err) < 0 ||
        ota_json_str(obj, "sha256", sha, sizeof(sha), err) < 0 ||
        ota_json_u64(obj, "installed_size", &m->installed_size, err) < 0 ||
        parse_list(obj, "device_types", m->device_types, &m->n_device_types, err) < 0 ||
        ota_json_str(obj, "min_version", m->min_version, sizeof(m->min_version), err) < 0 ||
        ota_json_bool(obj, "rollback", &m->rollback, err) < 0 ||
        ota_json_int(obj, "created", &created, err) < 0 || parse_rollback(obj, m, err) < 0)
        return -EINVAL;
    if (json_object_get(obj, "keyring") &&
        ota_keyring_from_json(json_object_get(obj, "keyring"), &m->keyring, err) < 0)
        return -EINVAL;
    if (schema != 1)
        return ota_err_set(err, EINVAL, "unsupported manifest schema %lld", (long long)schema);
    m->schema = 1;
    if (created < 0)
        return ota_err_set(err, EINVAL, "field 'created' is negative");
    m->created = created;
    k = lookup(ota_kind_names, OTA_KIND_MAX, kind);
    if (k < 0)
        return ota_err_set(err, EINVAL, "unknown kind '%s'", kind);
    m->kind = (enum ota_kind)k;
    f = lookup(ota_format_names, OTA_FORMAT_MAX, format);
    if (f < 0)
        return ota_err_set(err, EINVAL, "unknown format '%s'", format);
    m->format = (enum ota_format)f;
    /* Lower-case only: the hex is part of the signed bytes, one spelling. */
    for (size_t i = 0; sha[i]; i++)
        if (!((sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f')))
            return ota_err_set(err, EINVAL, "field 'sha256' is not lower-case hex");
    if (ota_hex_decode(sha, m->sha256, OTA_SHA256_LEN) < 0)
        return ota_err_set(err, EINVAL, "field 'sha256' is not 64 hex digits");
    return validate(m, err);
}

int ota_manifest_parse(const char *json, size_t n, struct ota_manifest *ret, struct ota_err *err)
{
    struct ota_manifest *m = NULL;
    json_t *obj = NULL;
    int r;

    if (!json)
        return ota_err_set(err, EINVAL, "no manifest");
    if (n > OTA_MANIFEST_MAX_BYTES)
        return ota_err_set(err, EINVAL, "manifest is %zu bytes, more than %d", n,
                           OTA_MANIFEST_MAX_BYTES);
    /* The struct is a few KiB: keep it off the stack of the fleet runner's
     * many callers, and write *ret only once it is whole. */
    m = calloc(1, sizeof(*m));
    if (!m)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = ota_json_parse(json, n, &obj, err);
    if (r < 0)
        goto out;
    r = parse_fields(obj, m, err);
    if (r < 0) {
        r = -EINVAL;
        goto out;
    }
    *ret = *m;
out:
    json_decref(obj);
    free(m);
    return r;
}

int ota_manifest_format(const struct ota_manifest *m, char **ret_json)
{
    char sha[OTA_SHA256_HEX];
    json_t *types = NULL, *obj = NULL;
    char *text = NULL;
    int r;

    if (!m || validate(m, NULL) < 0)
        return -EINVAL;
    types = json_array();
    if (!types)
        return -ENOMEM;
    for (int i = 0; i < m->n_device_types; i++) {
        if (json_array_append_new(types, json_string(m->device_types[i])) < 0) {
            r = -EINVAL; /* not UTF-8, or out of memory */
            goto out;
        }
    }
    ota_hex_encode(m->sha256, OTA_SHA256_LEN, sha);
    /* Objects keep insertion order, so this is the wire order. */
    obj = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:O, s:s, s:b, s:I}", "schema",
                    m->schema, "name", m->name, "version", m->version, "kind",
                    ota_kind_names[m->kind], "format", ota_format_names[m->format], "payload",
                    m->payload, "size", (json_int_t)m->size, "sha256", sha, "installed_size",
                    (json_int_t)m->installed_size, "device_types", types, "min_version",
                    m->min_version, "rollback", m->rollback, "created", (json_int_t)m->created);
    if (!obj) {
        r = -EINVAL;
        goto out;
    }
    if (m->rollback) {
        json_t *from = json_array();
        for (int i = 0; from && i < m->n_rollback_from; i++)
            if (json_array_append_new(from, json_string(m->rollback_from[i])) < 0) {
                json_decref(from);
                from = NULL;
            }
        if (!from ||
            json_object_set_new(obj, "rollback_expires",
                                json_integer((json_int_t)m->rollback_expires)) < 0 ||
            json_object_set_new(obj, "rollback_from", from) < 0) {
            r = -EINVAL;
            goto out;
        }
    }
    if (m->keyring.version != 0) {
        json_t *kr = ota_keyring_to_json(&m->keyring);
        if (!kr || json_object_set_new(obj, "keyring", kr) < 0) {
            r = -EINVAL;
            goto out;
        }
    }
    r = ota_json_dump(obj, &text);
    if (r < 0)
        goto out;
    if (strlen(text) > OTA_MANIFEST_MAX_BYTES) {
        free(text);
        r = -EFBIG;
        goto out;
    }
    *ret_json = text;
out:
    json_decref(obj);
    json_decref(types);
    return r;
}

int ota_manifest_check_device(const struct ota_manifest *m, const char *device_type,
                              const char *current_version, struct ota_err *err)
{
    int listed = 0, have_current = current_version && current_version[0], c;

    if (!m || !device_type)
        return ota_err_set(err, OTA_E_REFUSED, "no manifest or device type to check");
    for (int i = 0; i < m->n_device_types && i < OTA_MANIFEST_MAX_TYPES; i++)
        if (strcmp(m->device_types[i], device_type) == 0)
            listed = 1;
    if (!listed)
        return ota_err_set(err, OTA_E_REFUSED, "release %s %s is not for device type '%s'", m->name,
                           m->version, device_type);
    /* Nothing installed (NULL or ""): any version is an upgrade, but no
     * min_version can be met. A rollback order needs no comparison, so a
     * device whose version string is garbage can still be rolled back. */
    if (!m->rollback && have_current) {
        if (ota_version_cmp(m->version, current_version, &c) < 0)
            return ota_err_set(err, OTA_E_REFUSED,
                               "cannot compare release version '%s' with installed '%s'",
                               m->version, current_version);
        if (c <= 0)
            return ota_err_set(err, OTA_E_REFUSED,
                               "release %s is not newer than installed %s (not a rollback order)",
                               m->version, current_version);
    }
    if (m->min_version[0]) {
        if (!have_current)
            return ota_err_set(err, OTA_E_REFUSED,
                               "release needs at least %s installed, nothing is", m->min_version);
        if (ota_version_cmp(current_version, m->min_version, &c) < 0)
            return ota_err_set(err, OTA_E_REFUSED,
                               "cannot compare installed version '%s' with min_version '%s'",
                               current_version, m->min_version);
        if (c < 0)
            return ota_err_set(err, OTA_E_REFUSED,
                               "installed %s is below the release's min_version %s",
                               current_version, m->min_version);
    }
    return 0;
}

int ota_manifest_check_rollback(const struct ota_manifest *m, const char *current_version,
                                int64_t now_s, struct ota_err *err)
{
    int from = 0, c;

    if (!m || !m->rollback)
        return 0;
    for (int i = 0; i < m->n_rollback_from && i < OTA_MANIFEST_MAX_TYPES && current_version; i++)
        if (ota_version_cmp(m->rollback_from[i], current_version, &c) == 0 && c == 0)
            from = 1;
    if (!from)
        return ota_err_set(err, OTA_E_REFUSED,
                           "rollback order to %s is for devices running %s%s, not %s", m->version,
                           m->rollback_from[0], m->n_rollback_from > 1 ? " (or others)" : "",
                           current_version && current_version[0] ? current_version : "nothing");
    if (now_s < m->created)
        return ota_err_set(err, OTA_E_REFUSED,
                           "rollback order to %s made at %lld, after the device's clock (%lld): "
                           "the clock is wrong, whether the order expired cannot be told",
                           m->version, (long long)m->created, (long long)now_s);
    if (now_s > m->rollback_expires)
        return ota_err_set(err, OTA_E_REFUSED,
                           "rollback order to %s expired at %lld (device clock %lld)", m->version,
                           (long long)m->rollback_expires, (long long)now_s);
    return 0;
}

int ota_manifest_verify(const char *json, size_t n, const char *sig_b64, const char *pub_pem,
                        struct ota_err *err)
{
    char b64[SIG_B64_LEN + 1];
    uint8_t sig[OTA_ED25519_SIG_LEN];
    size_t len, sig_len = 0;

    if (!json || !sig_b64 || !pub_pem)
        return ota_err_set(err, EINVAL, "missing manifest, signature or public key");
    if (n > OTA_MANIFEST_MAX_BYTES)
        return ota_err_set(err, EINVAL, "manifest is %zu bytes, more than %d", n,
                           OTA_MANIFEST_MAX_BYTES);
    /* A trailing newline (a signature file saved by an editor) is framing,
     * not signature: tolerate trailing whitespace, nothing else. */
    len = strlen(sig_b64);
    while (len > 0 && (sig_b64[len - 1] == '\n' || sig_b64[len - 1] == '\r' ||
                       sig_b64[len - 1] == ' ' || sig_b64[len - 1] == '\t'))
        len--;
    if (len != SIG_B64_LEN)
        return ota_err_set(err, OTA_E_BAD_SIGNATURE,
                           "the signature is %zu base64 characters, not %d", len, SIG_B64_LEN);
    memcpy(b64, sig_b64, len);
    b64[len] = '\0';
    if (ota_b64_decode(b64, sig, sizeof(sig), &sig_len) < 0 || sig_len != OTA_ED25519_SIG_LEN)
        return ota_err_set(err, OTA_E_BAD_SIGNATURE, "the signature is not 64 bytes of base64");
    return ota_ed25519_verify(pub_pem, json, n, sig, err);
}
