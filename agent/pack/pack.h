/* ota-pack's commands as a library: main.c parses the command line, these do
 * the work and report failures through struct ota_err (they never print). */
#ifndef OTA_PACK_H
#define OTA_PACK_H

#include <stdint.h>
#include "ota/err.h"
#include "ota/manifest.h"

struct ota_pack_build_opts {
    const char *key;     /* Ed25519 private key PEM */
    const char *payload; /* package or image to release */
    enum ota_kind kind;
    int format; /* enum ota_format, or -1: from the payload's file name */
    const char *name;
    const char *version;
    const char *device_types[OTA_MANIFEST_MAX_TYPES];
    int n_device_types;
    const char *min_version; /* NULL or "": none */
    int rollback;
    /* rollback orders (required with rollback, refused without) */
    const char *rollback_from[OTA_MANIFEST_MAX_TYPES]; /* the versions devices must run */
    int n_rollback_from;
    int64_t rollback_expires; /* unix seconds, after created */
    int have_installed_size;  /* else computed, see ota_pack_build */
    uint64_t installed_size;
    int64_t created; /* unix seconds */
    const char *out_dir;
    /* A key-rotation release (ota-pack keys; DESIGN.md "Release keys"):
     * keyring.version 0 = none. */
    struct ota_keyring keyring;
};

/* Payload format from a file name suffix: .deb, .tar.gz/.tgz, .img/.raw,
 * .gz, .xz, .zst/.zstd. -EINVAL if the suffix says nothing. */
int ota_pack_format_from_name(const char *file, enum ota_format *ret) OTA_MUST;

/* New Ed25519 key pair. Refuses (-EEXIST) to replace an existing file unless
 * force. */
int ota_pack_keygen(const char *priv_path, const char *pub_path, int force,
                    struct ota_err *err) OTA_MUST;

/* The raw key and its id from a public key PEM file. */
int ota_pack_key_id(const char *pub_path, uint8_t ret_raw[OTA_ED25519_PUB_LEN],
                    char ret_id[OTA_KEY_ID_HEX], struct ota_err *err) OTA_MUST;

/* Builds and signs a release in o->out_dir (created if missing):
 *   <payload basename>      the payload, copied (streamed) durably
 *   <payload>.sha256        "<hex>  <payload basename>\n"
 *   manifest.json           the exact signed bytes, no trailing newline
 *   manifest.json.sig       88 base64 characters, no newline
 * installed_size, unless given: app packages sum their regular files
 * (ota_archive_installed_size); a raw image is its own size; a compressed
 * image is decompressed once into a scratch file in out_dir (removed after;
 * it needs the image's size of free space) to count its bytes, which also
 * proves it decompresses. *ret gets the manifest (may be NULL). */
int ota_pack_build(const struct ota_pack_build_opts *o, struct ota_manifest *ret,
                   struct ota_err *err) OTA_MUST;

/* Signs the manifest file as it is (exact bytes) into sig_path. Unless
 * force, the manifest must parse (what the agent would accept). */
int ota_pack_sign(const char *key, const char *manifest_path, const char *sig_path, int force,
                  struct ota_err *err) OTA_MUST;

/* Verifies a manifest's signature, that it parses, and, when payload_path is
 * not NULL, the payload's size and SHA-256. -EBADMSG for a bad signature or
 * payload, -EINVAL for unreadable input. *ret may be NULL. */
int ota_pack_verify(const char *pub_path, const char *manifest_path, const char *sig_path,
                    const char *payload_path, struct ota_manifest *ret,
                    struct ota_err *err) OTA_MUST;

#endif
