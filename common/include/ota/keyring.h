/* Release keyrings: the trusted release keys a key-rotation release carries
 * (docs/DESIGN.md, "Release keys"; wire format docs/protocol.md).
 *
 * A keyring is a monotonic version, the raw Ed25519 public keys it trusts
 * and the ids of the keys it revokes. The same JSON object travels in a
 * release manifest (its "keyring" field) and is what the agent keeps:
 *   {"version":2,"keys":["<64 hex>",...],"revoked":["<16 hex id>",...]} */
#ifndef OTA_KEYRING_H
#define OTA_KEYRING_H

#include <stdint.h>
#include "ota/crypto.h"
#include "ota/err.h"
#include "ota/json.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_KEYRING_MAX_KEYS    8
#define OTA_KEYRING_MAX_REVOKED 16

struct ota_keyring {
    int64_t version; /* >= 1; 0 = no keyring */
    uint8_t keys[OTA_KEYRING_MAX_KEYS][OTA_ED25519_PUB_LEN];
    int n_keys;
    char revoked[OTA_KEYRING_MAX_REVOKED][OTA_KEY_ID_HEX];
    int n_revoked;
};

/* 0, or -EINVAL with the reason: version < 1, nothing in it, too many
 * entries, a key or id twice, a key both trusted and revoked, a bad id. */
int ota_keyring_validate(const struct ota_keyring *kr, struct ota_err *err) OTA_MUST;
/* The JSON object v (strict: unknown fields, wrong types, upper-case hex are
 * -EINVAL with the reason), validated. */
int ota_keyring_from_json(const json_t *v, struct ota_keyring *ret, struct ota_err *err) OTA_MUST;
/* A new JSON object for a valid kr; NULL if kr is invalid or out of memory. */
json_t *ota_keyring_to_json(const struct ota_keyring *kr);
/* n bytes of JSON text; and the compact text of kr (malloc'ed). */
int ota_keyring_parse(const char *text, size_t n, struct ota_keyring *ret,
                      struct ota_err *err) OTA_MUST;
int ota_keyring_format(const struct ota_keyring *kr, char **ret_text) OTA_MUST;
/* 1 if id is among kr's revoked ids. */
int ota_keyring_is_revoked(const struct ota_keyring *kr, const char *id);
/* next taken after cur (cur->version 0: none): next's keys, and the
 * revocations of both (a revocation is for good). -EINVAL if next is not
 * newer than cur, or the revocations do not fit. */
int ota_keyring_merge(const struct ota_keyring *cur, const struct ota_keyring *next,
                      struct ota_keyring *ret, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
