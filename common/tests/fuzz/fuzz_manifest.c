/* Fuzz harness: the release manifest parser (ota_manifest_parse), the bytes
 * an offer or a GitHub asset carries. Below the signature check, as RAUC
 * fuzzes its manifest: the agent parses only verified bytes, but the parser
 * must hold on any. A manifest it accepts must format (what ota-pack signs)
 * to text it accepts again, with the same fields; the device checks run on
 * it, a key-rotation release's keyring too. Corpus: corpus/manifest/
 * (docs/fuzzing.md). */
#include "ota/manifest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_keyring(const struct ota_keyring *a, const struct ota_keyring *b)
{
    if (a->version != b->version || a->n_keys != b->n_keys || a->n_revoked != b->n_revoked)
        return 0;
    for (int i = 0; i < a->n_keys; i++)
        if (memcmp(a->keys[i], b->keys[i], sizeof(a->keys[i])) != 0)
            return 0;
    for (int i = 0; i < a->n_revoked; i++)
        if (strcmp(a->revoked[i], b->revoked[i]) != 0)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ota_manifest m, again;
    struct ota_err err;
    char *text = NULL;

    if (ota_manifest_parse((const char *)data, size, &m, &err) < 0)
        return 0;
    if (ota_manifest_format(&m, &text) < 0)
        abort(); /* an accepted manifest that cannot be formatted */
    if (ota_manifest_parse(text, strlen(text), &again, &err) < 0)
        abort(); /* the formatter wrote what the parser refuses */
    if (strcmp(m.name, again.name) != 0 || strcmp(m.version, again.version) != 0 ||
        m.size != again.size || m.installed_size != again.installed_size ||
        memcmp(m.sha256, again.sha256, sizeof(m.sha256)) != 0 ||
        m.n_device_types != again.n_device_types || m.rollback != again.rollback ||
        !same_keyring(&m.keyring, &again.keyring))
        abort(); /* the round trip changed a field */
    free(text);
    (void)!ota_manifest_check_device(&m, "rpi3b", "1.0.0", &err);
    (void)!ota_manifest_check_device(&m, m.n_device_types ? m.device_types[0] : "x",
                                     m.min_version[0] ? m.min_version : "0.0.1", &err);
    return 0;
}
