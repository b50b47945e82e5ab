/* Fuzz harness: the fleet API's answers as the agent core parses them
 * (agent/src/core/protocol.c): the check-in answer with its offer, blue-green
 * activation and STANDBY activate/abandon (ota_proto_parse_checkin), and the
 * registration answer (ota_proto_parse_register). Corpus: corpus/checkin/. */
#include "ota/protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ota_offer off; /* ~9 KiB: not on the stack */
    struct ota_err err;
    char id[OTA_ID_LEN], token[128];
    int has = -1;

    memset(&off, 0xa5, sizeof(off)); /* what a reused offer may hold */
    if (ota_proto_parse_checkin((const char *)data, size, &has, &off, &err) == 0) {
        /* every string the core uses next is NUL-terminated in its field */
        if ((has != 0 && has != 1) || !memchr(off.activate, 0, sizeof(off.activate)) ||
            !memchr(off.abandon, 0, sizeof(off.abandon)))
            abort();
        if (has && (!memchr(off.update_id, 0, sizeof(off.update_id)) ||
                    !memchr(off.url, 0, sizeof(off.url)) ||
                    !memchr(off.signature, 0, sizeof(off.signature)) ||
                    !memchr(off.manifest, 0, sizeof(off.manifest))))
            abort();
    }
    if (ota_proto_parse_register((const char *)data, size, id, sizeof(id), token, sizeof(token),
                                 &err) == 0) {
        if (!memchr(id, 0, sizeof(id)) || !memchr(token, 0, sizeof(token)))
            abort();
    }
    return 0;
}
