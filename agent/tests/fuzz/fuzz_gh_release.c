/* Fuzz harness: the GitHub face's releases/latest JSON as the agent core
 * parses it (ota_proto_parse_gh_release) and looks up its assets
 * (ota_proto_gh_asset, as agent/src/core/source.c does). Corpus:
 * corpus/gh-release/. */
#include "ota/protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ota_gh_release rel; /* ~65 KiB */
    struct ota_err err;

    memset(&rel, 0xa5, sizeof(rel));
    if (ota_proto_parse_gh_release((const char *)data, size, &rel, &err) < 0)
        return 0;
    if (rel.n_assets < 0 || rel.n_assets > OTA_GH_MAX_ASSETS ||
        !memchr(rel.tag, 0, sizeof(rel.tag)))
        abort();
    for (int i = 0; i < rel.n_assets; i++) {
        const struct ota_gh_asset *a = &rel.assets[i];
        if (!memchr(a->name, 0, sizeof(a->name)) || !memchr(a->url, 0, sizeof(a->url)))
            abort();
        if (ota_proto_gh_asset(&rel, a->name) == NULL)
            abort(); /* an asset the release lists is not found by its name */
    }
    (void)ota_proto_gh_asset(&rel, "manifest.json");
    (void)ota_proto_gh_asset(&rel, "manifest.json.sig");
    return 0;
}
