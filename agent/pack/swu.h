/* ota-pack swu: SWUpdate releases (.swu), as Debian 12's swupdate 2022.12
 * installs them (docs/swupdate.md). */
#ifndef OTA_PACK_SWU_H
#define OTA_PACK_SWU_H

#include "ota/err.h"
#include "ota/manifest.h"

#define OTA_SWU_MAX_HW 8

struct ota_pack_swu_opts {
    const char *cert;  /* signer certificate (PEM); devices run swupdate -k with it */
    const char *key;   /* its private key (PEM) */
    const char *image; /* rootfs: a raw image; app: a .tar, .tar.gz or .tgz archive */
    enum ota_kind kind;
    const char *name; /* sw-description's description: ota-server's release name */
    const char *version;
    const char *hw[OTA_SWU_MAX_HW]; /* hardware-compatibility revisions */
    int n_hw;
    const char *slot_dev[2]; /* rootfs: the block devices of slot A and slot B */
    const char *app_path;    /* app: the directory the archive is unpacked into */
    const char *out;         /* the .swu to write */
};

/* The sw-description of o for an image of the given sha256 (hex), malloc'ed
 * in *ret. -EINVAL for a field that cannot go into it. */
int ota_pack_swu_description(const struct ota_pack_swu_opts *o, const char *sha_hex, char **ret,
                             struct ota_err *err) OTA_MUST;

/* Builds o->out durably: a CPIO crc archive of sw-description,
 * sw-description.sig (CMS, DER, detached, signed with o->cert and o->key)
 * and the image. *ret_sha (may be NULL) gets the image's sha256 in hex. */
int ota_pack_swu_build(const struct ota_pack_swu_opts *o, char ret_sha[65],
                       struct ota_err *err) OTA_MUST;

#endif
