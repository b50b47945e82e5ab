/* Release keyrings: validate, JSON in and out, merge (ota/keyring.h). */
#include "ota/keyring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int ota_keyring_is_revoked(const struct ota_keyring *kr, const char *id)
{
    for (int i = 0; i < kr->n_revoked && i < OTA_KEYRING_MAX_REVOKED; i++)
        if (strcmp(kr->revoked[i], id) == 0)
            return 1;
    return 0;
}

int ota_keyring_validate(const struct ota_keyring *kr, struct ota_err *err)
{
    char id[OTA_KEY_ID_HEX];

    if (kr->version < 1)
        return ota_err_set(err, EINVAL, "keyring version %lld (1 or more)", (long long)kr->version);
    if (kr->n_keys < 0 || kr->n_keys > OTA_KEYRING_MAX_KEYS || kr->n_revoked < 0 ||
        kr->n_revoked > OTA_KEYRING_MAX_REVOKED)
        return ota_err_set(err, EINVAL, "keyring: %d keys and %d revoked ids (0..%d, 0..%d)",
                           kr->n_keys, kr->n_revoked, OTA_KEYRING_MAX_KEYS,
                           OTA_KEYRING_MAX_REVOKED);
    if (kr->n_keys + kr->n_revoked == 0)
        return ota_err_set(err, EINVAL, "keyring %lld holds no key and revokes none",
                           (long long)kr->version);
    for (int i = 0; i < kr->n_revoked; i++) {
        if (!memchr(kr->revoked[i], '\0', OTA_KEY_ID_HEX) ||
            !lower_hex(kr->revoked[i], OTA_KEY_ID_HEX - 1))
            return ota_err_set(err, EINVAL, "keyring: revoked id '%.16s' is not 16 lower-case hex",
                               kr->revoked[i]);
        for (int k = 0; k < i; k++)
            if (strcmp(kr->revoked[k], kr->revoked[i]) == 0)
                return ota_err_set(err, EINVAL, "keyring: key %s revoked twice", kr->revoked[i]);
    }
    for (int i = 0; i < kr->n_keys; i++) {
        ota_key_id(kr->keys[i], id);
        if (ota_keyring_is_revoked(kr, id))
            return ota_err_set(err, EINVAL, "keyring: key %s is both trusted and revoked", id);
        for (int k = 0; k < i; k++)
            if (memcmp(kr->keys[k], kr->keys[i], OTA_ED25519_PUB_LEN) == 0)
                return ota_err_set(err, EINVAL, "keyring: key %s listed twice", id);
    }
    return 0;
}

/* An array of at most max strings, each exactly len lower-case hex digits. */
static int hex_list(const json_t *obj, const char *key, size_t max, size_t len, const json_t **ret,
                    struct ota_err *err)
{
    const json_t *arr = json_object_get(obj, key), *v;
    size_t i;

    if (!arr)
        return ota_err_set(err, EINVAL, "keyring: missing field '%s'", key);
    if (!json_is_array(arr) || json_array_size(arr) > max)
        return ota_err_set(err, EINVAL, "keyring: field '%s' is not an array of 0..%zu", key, max);
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) != len ||
            !lower_hex(json_string_value(v), len))
            return ota_err_set(err, EINVAL, "keyring: %s[%zu] is not %zu lower-case hex digits",
                               key, i, len);
    }
    *ret = arr;
    return 0;
}

int ota_keyring_from_json(const json_t *v, struct ota_keyring *ret, struct ota_err *err)
{
    struct ota_keyring kr;
    const json_t *keys = NULL, *revoked = NULL, *e;
    const char *key;
    size_t i;

    if (!json_is_object(v))
        return ota_err_set(err, EINVAL, "keyring: not a JSON object");
    json_object_foreach((json_t *)v, key, e)
    {
        if (strcmp(key, "version") != 0 && strcmp(key, "keys") != 0 && strcmp(key, "revoked") != 0)
            return ota_err_set(err, EINVAL, "keyring: unknown field '%.64s'", key);
    }
    memset(&kr, 0, sizeof(kr));
    if (ota_json_int(v, "version", &kr.version, err) < 0 ||
        hex_list(v, "keys", OTA_KEYRING_MAX_KEYS, 2 * OTA_ED25519_PUB_LEN, &keys, err) < 0 ||
        hex_list(v, "revoked", OTA_KEYRING_MAX_REVOKED, OTA_KEY_ID_HEX - 1, &revoked, err) < 0)
        return -EINVAL;
    json_array_foreach(keys, i, e)
    {
        if (ota_hex_decode(json_string_value(e), kr.keys[i], OTA_ED25519_PUB_LEN) < 0)
            return ota_err_set(err, EINVAL, "keyring: keys[%zu] is not hex", i);
    }
    kr.n_keys = (int)json_array_size(keys);
    json_array_foreach(revoked, i, e)
        ota_strlcpy(kr.revoked[i], json_string_value(e), OTA_KEY_ID_HEX);
    kr.n_revoked = (int)json_array_size(revoked);
    if (ota_keyring_validate(&kr, err) < 0)
        return -EINVAL;
    *ret = kr;
    return 0;
}

json_t *ota_keyring_to_json(const struct ota_keyring *kr)
{
    json_t *keys, *revoked;
    char hex[2 * OTA_ED25519_PUB_LEN + 1];

    if (!kr || ota_keyring_validate(kr, NULL) < 0)
        return NULL;
    keys = json_array();
    revoked = json_array();
    for (int i = 0; keys && i < kr->n_keys; i++) {
        ota_hex_encode(kr->keys[i], OTA_ED25519_PUB_LEN, hex);
        if (json_array_append_new(keys, json_string(hex)) < 0) {
            json_decref(keys);
            keys = NULL;
        }
    }
    for (int i = 0; revoked && i < kr->n_revoked; i++)
        if (json_array_append_new(revoked, json_string(kr->revoked[i])) < 0) {
            json_decref(revoked);
            revoked = NULL;
        }
    if (!keys || !revoked) {
        json_decref(keys);
        json_decref(revoked);
        return NULL;
    }
    /* Objects keep insertion order: version, keys, revoked. */
    return json_pack("{s:I, s:o, s:o}", "version", (json_int_t)kr->version, "keys", keys, "revoked",
                     revoked);
}

int ota_keyring_parse(const char *text, size_t n, struct ota_keyring *ret, struct ota_err *err)
{
    json_t *obj = NULL;
    int r;

    r = ota_json_parse(text, n, &obj, err);
    if (r < 0)
        return r;
    r = ota_keyring_from_json(obj, ret, err);
    json_decref(obj);
    return r;
}

int ota_keyring_format(const struct ota_keyring *kr, char **ret_text)
{
    json_t *obj = ota_keyring_to_json(kr);
    int r;

    if (!obj)
        return -EINVAL;
    r = ota_json_dump(obj, ret_text);
    json_decref(obj);
    return r;
}

int ota_keyring_merge(const struct ota_keyring *cur, const struct ota_keyring *next,
                      struct ota_keyring *ret, struct ota_err *err)
{
    struct ota_keyring m = *next;
    char id[OTA_KEY_ID_HEX];

    if (next->version <= cur->version)
        return ota_err_set(err, EINVAL, "keyring %lld is not newer than keyring %lld",
                           (long long)next->version, (long long)cur->version);
    for (int i = 0; i < cur->n_revoked; i++) {
        if (ota_keyring_is_revoked(&m, cur->revoked[i]))
            continue;
        if (m.n_revoked >= OTA_KEYRING_MAX_REVOKED)
            return ota_err_set(err, EINVAL, "keyring %lld: more than %d revoked keys in all",
                               (long long)next->version, OTA_KEYRING_MAX_REVOKED);
        ota_strlcpy(m.revoked[m.n_revoked++], cur->revoked[i], OTA_KEY_ID_HEX);
    }
    for (int i = 0; i < m.n_keys; i++) {
        ota_key_id(m.keys[i], id);
        if (ota_keyring_is_revoked(&m, id))
            return ota_err_set(err, EINVAL, "keyring %lld trusts key %s, revoked before",
                               (long long)next->version, id);
    }
    *ret = m;
    return 0;
}
