/* sw-description, the libconfig text at the head of an SWUpdate release
 * (.swu), read for what ota-server records of such a release: its version,
 * hardware compatibility, name and kind (docs/protocol.md, "Releases for
 * SWUpdate"). The text is untrusted input: every refusal says what is wrong
 * and where; nothing is kept of a text that is refused. */
#ifndef OTASRV_SWDESC_H
#define OTASRV_SWDESC_H

#include <stddef.h>

#include "ota/err.h"

#define OTASRV_SWDESC_MAX_BYTES (256 * 1024)
#define OTASRV_SWDESC_MAX_HW    16

struct otasrv_swdesc {
    char version[64]; /* software.version: MAJOR.MINOR.PATCH[-PRE] */
    char name[64];    /* software.description if it is a plain name, else "swu" */
    char kind[16];    /* "rootfs": a raw image; "app": an archive (and no raw image) */
    char hw[OTASRV_SWDESC_MAX_HW][64]; /* software.hardware-compatibility */
    int n_hw;
};

/* Parses text (n bytes, no NUL inside). -EINVAL with a reason. */
int otasrv_swdesc_parse(const char *text, size_t n, struct otasrv_swdesc *ret,
                        struct ota_err *err) OTA_MUST;

/* The hardware compatibility as a JSON array, malloc'ed; NULL if out of
 * memory. */
char *otasrv_swdesc_hw_json(const struct otasrv_swdesc *d);

#endif
