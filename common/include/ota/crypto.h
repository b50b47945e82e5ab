/* Hashes and signatures (wraps OpenSSL libcrypto; the only file that does).
 * SHA-256 streaming, Ed25519 keys/sign/verify, hex and base64. */
#ifndef OTA_CRYPTO_H
#define OTA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_SHA256_LEN      32
#define OTA_SHA256_HEX      65 /* 64 hex digits + NUL */
#define OTA_ED25519_SIG_LEN 64

struct ota_sha256; /* opaque streaming context */

/* Returns NULL on allocation failure. Free with ota_sha256_free (NULL ok). */
struct ota_sha256 *ota_sha256_new(void);
void ota_sha256_free(struct ota_sha256 *h);
/* Restarts h as if new. */
int ota_sha256_reset(struct ota_sha256 *h) OTA_MUST;
int ota_sha256_update(struct ota_sha256 *h, const void *buf, size_t n) OTA_MUST;
/* Digest of what h has seen so far, without finishing h (h goes on). */
int ota_sha256_peek(const struct ota_sha256 *h, uint8_t ret_digest[OTA_SHA256_LEN]) OTA_MUST;
/* Writes the digest; h must be reset before further use. */
int ota_sha256_final(struct ota_sha256 *h, uint8_t ret_digest[OTA_SHA256_LEN]) OTA_MUST;

/* One-shot over a file's first len bytes (len = UINT64_MAX: whole file).
 * -ENOENT, -EIO, or -ENODATA if the file is shorter than len. */
int ota_sha256_file(const char *path, uint64_t len, uint8_t ret_digest[OTA_SHA256_LEN],
                    struct ota_err *err) OTA_MUST;

/* SHA-1, MD5 and SHA-256 of a whole file in one pass, as lower-case hex
 * (what hawkBit's DDI lists per artifact; SHA-1 and MD5 only for that).
 * -ENOENT, -EIO. */
int ota_file_digests(const char *path, char ret_sha1[41], char ret_md5[33], char ret_sha256[65],
                     struct ota_err *err) OTA_MUST;

/* Lower-case hex, NUL-terminated. */
void ota_hex_encode(const uint8_t *buf, size_t n, char *ret_hex);
/* Exactly n bytes from 2n hex digits; -EINVAL otherwise. */
int ota_hex_decode(const char *hex, uint8_t *ret_buf, size_t n) OTA_MUST;

/* Base64 (standard alphabet, padded). encode: ret must hold 4*((n+2)/3)+1.
 * decode: writes at most cap bytes, -EINVAL on bad input, -ENOSPC if too long. */
void ota_b64_encode(const uint8_t *buf, size_t n, char *ret_b64);
int ota_b64_decode(const char *b64, uint8_t *ret_buf, size_t cap, size_t *ret_len) OTA_MUST;

/* Ed25519. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public),
 * as `openssl genpkey -algorithm ed25519` writes them. */
int ota_ed25519_keygen(const char *priv_path, const char *pub_path, struct ota_err *err) OTA_MUST;
int ota_ed25519_sign(const char *priv_path, const void *msg, size_t n,
                     uint8_t ret_sig[OTA_ED25519_SIG_LEN], struct ota_err *err) OTA_MUST;
/* 0 if sig is a valid signature of msg by the key in pub_pem (PEM text, not a
 * path); -EBADMSG if not; -EINVAL if the key cannot be read. */
int ota_ed25519_verify(const char *pub_pem, const void *msg, size_t n,
                       const uint8_t sig[OTA_ED25519_SIG_LEN], struct ota_err *err) OTA_MUST;

/* Raw public keys and their ids (docs/DESIGN.md, "Release keys"). A key id
 * is the first 8 bytes of the SHA-256 of the 32-byte raw public key, as 16
 * lower-case hex digits: the name reasons, docs and rotations give a key. */
#define OTA_ED25519_PUB_LEN 32
#define OTA_KEY_ID_HEX      17  /* 16 hex digits + NUL */
#define OTA_ED25519_PEM_LEN 128 /* the PEM text of one public key, NUL included */
/* The raw key in pub_pem (PEM text holding one Ed25519 public key).
 * -EINVAL with the reason if it holds none. */
int ota_ed25519_pub_raw(const char *pub_pem, uint8_t ret_raw[OTA_ED25519_PUB_LEN],
                        struct ota_err *err) OTA_MUST;
/* The PEM text (SubjectPublicKeyInfo) of a raw key. */
void ota_ed25519_pub_pem(const uint8_t raw[OTA_ED25519_PUB_LEN], char ret_pem[OTA_ED25519_PEM_LEN]);
void ota_key_id(const uint8_t raw[OTA_ED25519_PUB_LEN], char ret_id[OTA_KEY_ID_HEX]);

#ifdef __cplusplus
}
#endif
#endif
