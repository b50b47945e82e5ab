/* Fuzz harness: the signature file (manifest.json.sig, an offer's
 * "signature") read and checked against the manifest bytes it covers
 * (ota_manifest_verify: framing, base64, length, then Ed25519 with a fixed
 * test key). Input: the signature file, a NUL byte, the manifest; no NUL:
 * all signature, empty manifest. The seed corpus holds a pair that verifies,
 * so the fuzzer starts past the checks. Corpus: corpus/manifest-sig/. */
#include "ota/manifest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A key made for the corpus (its private half is not kept). */
static const char pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MCowBQYDK2VwAyEAgXNClvd4O3PosdP5409Lxp2iZIbX5gBl2DBf5q0Gcs0=\n"
                              "-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t sig_len = nul ? (size_t)(nul - data) : size;
    const char *json = nul ? (const char *)nul + 1 : "";
    size_t json_len = nul ? size - sig_len - 1 : 0;
    char sig[128]; /* the agent's buffer (struct ota_offer.signature) */
    struct ota_manifest m;
    struct ota_err err;

    if (sig_len >= sizeof(sig))
        return 0; /* the agent refuses it as too large before reading it */
    memcpy(sig, data, sig_len);
    sig[sig_len] = '\0';
    if (ota_manifest_verify(json, json_len, sig, pub_pem, &err) == 0)
        (void)!ota_manifest_parse(json, json_len, &m, &err);
    return 0;
}
