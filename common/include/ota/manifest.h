/* Release manifest: what a release is, and the bytes its signature covers.
 *
 * The manifest travels as exact JSON text; the Ed25519 signature covers those
 * bytes, never a re-serialisation. Wire format: docs/protocol.md. */
#ifndef OTA_MANIFEST_H
#define OTA_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "ota/crypto.h"
#include "ota/keyring.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ota_kind {
    OTA_KIND_APP,
    OTA_KIND_ROOTFS,
    OTA_KIND_MAX,
};
extern const char *const ota_kind_names[OTA_KIND_MAX]; /* "app", "rootfs" */

/* Payload formats. App: deb, tar.gz. Rootfs: raw image or compressed
 * (gz, xz, zst), decompressed while streamed. */
enum ota_format {
    OTA_FORMAT_DEB,
    OTA_FORMAT_TARGZ,
    OTA_FORMAT_RAW,
    OTA_FORMAT_GZ,
    OTA_FORMAT_XZ,
    OTA_FORMAT_ZST,
    OTA_FORMAT_MAX,
};
extern const char
    *const ota_format_names[OTA_FORMAT_MAX]; /* "deb", "tar.gz", "raw", "gz", "xz", "zst" */

#define OTA_MANIFEST_MAX_TYPES 8
#define OTA_MANIFEST_MAX_BYTES 8192 /* larger manifests are refused (docs/protocol.md: 8 KiB) */

struct ota_manifest {
    int schema;       /* 1 */
    char name[64];    /* release name, e.g. "video-app" */
    char version[64]; /* semver */
    enum ota_kind kind;
    enum ota_format format;
    char payload[256]; /* payload file name (asset name) */
    uint64_t size;     /* payload bytes */
    uint8_t sha256[OTA_SHA256_LEN];
    uint64_t installed_size; /* bytes needed in the slot (app) or image bytes (rootfs) */
    char device_types[OTA_MANIFEST_MAX_TYPES][64];
    int n_device_types;
    char min_version[64]; /* "" = none */
    int rollback;         /* 1: a signed rollback order (downgrade allowed) */
    int64_t created;      /* unix seconds */
    /* Rollback orders only (absent otherwise, so that agents that do not know
     * these keys still take ordinary releases): the order is void after
     * rollback_expires (unix seconds, after created), and only for a device
     * running one of rollback_from (1..8 versions). */
    int64_t rollback_expires;
    char rollback_from[OTA_MANIFEST_MAX_TYPES][64];
    int n_rollback_from;
    /* A key-rotation release (absent otherwise, keyring.version 0): the
     * keyring the agent takes when this release is offered to it, signed by
     * a key it trusts (docs/DESIGN.md, "Release keys"). */
    struct ota_keyring keyring;
};

/* Parses and validates manifest JSON (n bytes, not NUL-terminated).
 * -EINVAL with the reason on malformed JSON, missing or mistyped fields,
 * unknown kind/format, bad version, format that does not fit the kind. */
int ota_manifest_parse(const char *json, size_t n, struct ota_manifest *ret,
                       struct ota_err *err) OTA_MUST;

/* Serialises m as compact JSON with keys in a fixed order (what ota-pack
 * signs). Returns malloc'ed NUL-terminated text in *ret_json. */
int ota_manifest_format(const struct ota_manifest *m, char **ret_json) OTA_MUST;

/* Checks a release against a device. Each returns 0 or -EPERM with a reason:
 * device type not listed; not newer than current unless m->rollback;
 * current below min_version. */
int ota_manifest_check_device(const struct ota_manifest *m, const char *device_type,
                              const char *current_version, struct ota_err *err) OTA_MUST;

/* Binds a rollback order (m->rollback) to a device: 0 when current is one
 * of rollback_from and now_s (the device's clock, unix seconds) lies in
 * [created, rollback_expires]; else -EPERM with the reason. A clock before
 * created is wrong (an order is not made in the future), so whether the
 * order expired cannot be told: refused, to be taken once the clock is set.
 * 0 for a release that is not a rollback order. */
int ota_manifest_check_rollback(const struct ota_manifest *m, const char *current_version,
                                int64_t now_s, struct ota_err *err) OTA_MUST;

/* Verifies sig_b64 (base64 Ed25519) over the exact manifest bytes with the
 * public key PEM text. -EBADMSG if it does not verify, -EINVAL if unreadable. */
int ota_manifest_verify(const char *json, size_t n, const char *sig_b64, const char *pub_pem,
                        struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
