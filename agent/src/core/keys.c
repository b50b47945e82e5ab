/* Release keys: which keys this device trusts, and key rotation
 * (DESIGN.md, "Release keys").
 *
 * The trusted keys are the config's (every PEM block of [agent] public_key)
 * and the stored keyring's, less the keyring's revoked ids. The keyring is
 * kept in the store's settings (KEYRING_KEY), written in one durable store
 * write like the device token: it changes only when a key-rotation release,
 * signed by a key trusted then, carries a newer keyring. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYRING_KEY     "keys.ring"
#define KEYRING_TEXT    2048 /* a full keyring is about 900 bytes */
#define CONFIG_KEYS_MAX 16

struct known_key {
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    char pem[OTA_ED25519_PEM_LEN];
    int revoked;
};

struct trust {
    struct ota_keyring kr; /* the stored keyring; version 0: none */
    struct known_key k[CONFIG_KEYS_MAX + OTA_KEYRING_MAX_KEYS];
    int n;
};

/* The stored keyring into kr (version 0 when there is none). A keyring
 * that cannot be read is no reason to trust the config's keys again: its
 * revocations would be lost. -EPERM with the reason. */
static int load_keyring(struct ota_agent *a, struct ota_keyring *kr, struct ota_err *err)
{
    char text[KEYRING_TEXT];
    struct ota_err e = {0};
    int r;

    memset(kr, 0, sizeof(*kr));
    r = a->ops.store->kv_get(a->ops.store_ctx, KEYRING_KEY, text, sizeof(text), &e);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        r = ota_keyring_parse(text, strlen(text), kr, &e);
    if (r < 0)
        return ota_err_set(err, OTA_E_REFUSED,
                           "the stored keyring is damaged (%s): no release is trusted until it "
                           "is repaired (DESIGN.md, \"Release keys\")",
                           e.reason);
    return 0;
}

static int add_key(struct trust *t, const uint8_t raw[OTA_ED25519_PUB_LEN])
{
    char id[OTA_KEY_ID_HEX];

    ota_key_id(raw, id);
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->k[i].id, id) == 0)
            return 0;
    if (t->n >= (int)(sizeof(t->k) / sizeof(t->k[0])))
        return -ENOSPC;
    memcpy(t->k[t->n].raw, raw, OTA_ED25519_PUB_LEN);
    memcpy(t->k[t->n].id, id, sizeof(id));
    ota_ed25519_pub_pem(raw, t->k[t->n].pem);
    t->k[t->n].revoked = ota_keyring_is_revoked(&t->kr, id);
    t->n++;
    return 0;
}

/* Every "-----BEGIN" block of the config's PEM text (the whole text when it
 * has none, so that an unreadable key says why). */
static int add_config_keys(struct ota_agent *a, struct trust *t, struct ota_err *err)
{
    const char *p = a->cfg.pubkey_pem, *next;
    char block[OTA_ED25519_PEM_LEN * 4];
    uint8_t raw[OTA_ED25519_PUB_LEN];
    int nth = 0, r;

    if (!strstr(p, "-----BEGIN")) {
        r = ota_ed25519_pub_raw(p, raw, err);
        return r < 0 ? r : add_key(t, raw);
    }
    for (p = strstr(p, "-----BEGIN"); p; p = next) {
        const char *end = strstr(p, "-----END");
        size_t n;

        end = end ? strstr(end + 8, "-----") : NULL;
        if (!end)
            return ota_err_set(err, EINVAL, "public key %d of the config: no END line", nth + 1);
        end += 5;
        n = (size_t)(end - p);
        next = strstr(end, "-----BEGIN");
        if (++nth > CONFIG_KEYS_MAX)
            return ota_err_set(err, EINVAL, "more than %d public keys in the config",
                               CONFIG_KEYS_MAX);
        if (n >= sizeof(block))
            return ota_err_set(err, EINVAL, "public key %d of the config is too long", nth);
        memcpy(block, p, n);
        block[n] = '\0';
        r = ota_ed25519_pub_raw(block, raw, err);
        if (r < 0)
            return ota_err_prefix(err, r, "public key %d of the config", nth);
        (void)add_key(t, raw); /* room for CONFIG_KEYS_MAX keys first */
    }
    return 0;
}

static int load_trust(struct ota_agent *a, struct trust *t, struct ota_err *err)
{
    int r;

    t->n = 0;
    r = load_keyring(a, &t->kr, err);
    if (r < 0)
        return r;
    r = add_config_keys(a, t, err);
    if (r < 0)
        return r;
    for (int i = 0; i < t->kr.n_keys; i++)
        if (add_key(t, t->kr.keys[i]) < 0)
            return ota_err_set(err, EINVAL, "too many trusted keys");
    return 0;
}

/* The ids of the trusted keys, ", "-separated, for a reason. */
static void trusted_ids(const struct trust *t, char *buf, size_t cap)
{
    size_t o = 0;

    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < t->n && o < cap; i++)
        if (!t->k[i].revoked)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? ", " : "", t->k[i].id);
}

int ota_agent_keys(struct ota_agent *a, int64_t *ret_keyring, char *trusted, size_t tcap,
                   char *revoked, size_t rcap, struct ota_err *err)
{
    struct trust *t = malloc(sizeof(*t));
    size_t o = 0;
    int r;

    if (!t)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = load_trust(a, t, err);
    if (r < 0) {
        if (r != -OTA_E_REFUSED)
            r = ota_err_prefix(err, -OTA_E_BAD_SIGNATURE, "release keys");
        goto out;
    }
    *ret_keyring = t->kr.version;
    trusted_ids(t, trusted, tcap);
    if (rcap)
        revoked[0] = '\0';
    for (int i = 0; i < t->kr.n_revoked && o < rcap; i++)
        o += (size_t)snprintf(revoked + o, rcap - o, "%s%s", o ? ", " : "", t->kr.revoked[i]);
out:
    free(t);
    return r;
}

int core_keys_verify(struct ota_agent *a, const struct ota_offer *off, struct ota_err *err)
{
    struct trust *t = malloc(sizeof(*t));
    struct ota_err e = {0}, one = {0};
    size_t n = strlen(off->manifest);
    char ids[200];
    int r, trusted = 0;

    if (!t)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = load_trust(a, t, err);
    if (r < 0) {
        if (r != -OTA_E_REFUSED)
            r = ota_err_prefix(err, -OTA_E_BAD_SIGNATURE, "signature check failed");
        goto out;
    }
    for (int i = 0; i < t->n; i++) {
        if (t->k[i].revoked)
            continue;
        trusted++;
        ota_err_clear(&e);
        r = ota_manifest_verify(off->manifest, n, off->signature, t->k[i].pem, &e);
        if (r == 0)
            goto out;
        if (trusted == 1)
            one = e; /* with one key, its reason, as it always was */
    }
    /* Signed by a key known but revoked: say which, the operator looks for it. */
    for (int i = 0; i < t->n; i++)
        if (t->k[i].revoked &&
            ota_manifest_verify(off->manifest, n, off->signature, t->k[i].pem, NULL) == 0) {
            r = ota_err_set(err, OTA_E_REFUSED, "signed by revoked key %s", t->k[i].id);
            goto out;
        }
    if (trusted == 0) {
        r = ota_err_set(err, OTA_E_REFUSED, "no release key is trusted (all revoked)");
    } else if (trusted > 1) {
        trusted_ids(t, ids, sizeof(ids));
        r = ota_err_set(err, OTA_E_BAD_SIGNATURE,
                        "the signature does not verify with any trusted key (%s)", ids);
    } else if (one.code == OTA_E_BAD_SIGNATURE) {
        r = ota_err_set(err, OTA_E_BAD_SIGNATURE, "%s", one.reason);
    } else {
        r = ota_err_set(err, OTA_E_BAD_SIGNATURE, "signature check failed");
    }
out:
    free(t);
    return r;
}

int core_keys_rotate(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err)
{
    struct trust *t;
    struct ota_keyring cur;
    char *text = NULL;
    int r, trusted = 0;

    if (m->keyring.version == 0)
        return 0;
    r = load_keyring(a, &cur, err);
    if (r < 0 || m->keyring.version <= cur.version)
        return r; /* an older rotation (a replay) is not taken: no un-revoking */
    t = malloc(sizeof(*t));
    if (!t)
        return ota_err_set(err, ENOMEM, "out of memory");
    t->n = 0;
    r = ota_keyring_merge(&cur, &m->keyring, &t->kr, err);
    if (r == 0)
        r = add_config_keys(a, t, err);
    for (int i = 0; r == 0 && i < t->kr.n_keys; i++)
        if (add_key(t, t->kr.keys[i]) < 0)
            r = ota_err_set(err, EINVAL, "too many trusted keys");
    for (int i = 0; i < t->n; i++)
        trusted += !t->k[i].revoked;
    if (r == 0 && trusted == 0)
        r = ota_err_set(err, EINVAL, "it would leave no trusted key");
    if (r < 0) {
        r = ota_err_prefix(err, -OTA_E_REFUSED, "key rotation to keyring %lld",
                           (long long)m->keyring.version);
        goto out;
    }
    if (a->dry_run) /* ota-agent check only looks */
        goto out;
    r = ota_keyring_format(&t->kr, &text);
    if (r < 0) {
        r = ota_err_set(err, -r, "cannot write keyring %lld", (long long)m->keyring.version);
        goto out;
    }
    r = a->ops.store->kv_set(a->ops.store_ctx, KEYRING_KEY, text, err);
    if (r < 0)
        r = ota_err_prefix(err, r, "cannot store keyring %lld", (long long)m->keyring.version);
out:
    free(text);
    free(t);
    return r;
}
