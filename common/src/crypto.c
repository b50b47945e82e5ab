/* Hashes and signatures over OpenSSL libcrypto 3 (EVP API). This is the only
 * file that includes OpenSSL: every libcrypto failure is mapped here to a
 * negative errno plus a reason, and the OpenSSL error queue is drained so
 * that one failure never leaks into the next caller on this thread.
 *
 * Hex and base64 are written by hand rather than with EVP_EncodeBlock /
 * EVP_DecodeBlock: the OpenSSL decoder skips whitespace and reports padding
 * as output bytes, and we want a strict, canonical decoder. */
#include "ota/crypto.h"
#include "ota/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* PEM key files are a few hundred bytes; anything bigger is not a key. */
#define KEY_FILE_MAX (16 * 1024)
#define HASH_CHUNK   (64 * 1024)

/* The digest is set up at the first use, not by new() or reset(): setting
 * it up initialises OpenSSL's providers (~1 ms), which `ota-agent status`
 * (it makes an agent, hashes nothing) does not need. */
struct ota_sha256 {
    EVP_MD_CTX *ctx;
    int started; /* 0 not yet, 1 a SHA-256 in progress, 2 finished (reset() to reuse) */
};

/* The first reason in the OpenSSL error queue; the queue is emptied. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, cap, "unknown libcrypto error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* ---- SHA-256 ---- */

struct ota_sha256 *ota_sha256_new(void)
{
    struct ota_sha256 *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) {
        ota_sha256_free(h);
        return NULL;
    }
    return h;
}

void ota_sha256_free(struct ota_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int ota_sha256_reset(struct ota_sha256 *h)
{
    if (!h)
        return -EINVAL;
    h->started = 0;
    return 0;
}

/* 0 when h->ctx holds a SHA-256 in progress (started now if not yet);
 * -EIO once finished, as OpenSSL refuses a finished digest until reset. */
static int sha256_start(struct ota_sha256 *h)
{
    if (h->started)
        return h->started == 1 ? 0 : -EIO;
    if (EVP_DigestInit_ex2(h->ctx, EVP_sha256(), NULL) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    h->started = 1;
    return 0;
}

int ota_sha256_update(struct ota_sha256 *h, const void *buf, size_t n)
{
    if (!h || (!buf && n))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (sha256_start(h) < 0)
        return -EIO;
    if (EVP_DigestUpdate(h->ctx, buf, n) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    return 0;
}

int ota_sha256_final(struct ota_sha256 *h, uint8_t ret_digest[OTA_SHA256_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (!h)
        return -EINVAL;
    if (sha256_start(h) < 0)
        return -EIO;
    h->started = 2;
    if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != OTA_SHA256_LEN) {
        ERR_clear_error();
        return -EIO;
    }
    memcpy(ret_digest, md, OTA_SHA256_LEN);
    return 0;
}

/* Finishes a copy, so h can go on hashing (resumable downloads). */
int ota_sha256_peek(const struct ota_sha256 *h, uint8_t ret_digest[OTA_SHA256_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *copy;
    int r = -EIO;

    if (!h)
        return -EINVAL;
    copy = EVP_MD_CTX_new();
    if (!copy)
        return -ENOMEM;
    /* Not started yet: the digest of nothing so far (new() and reset() do
     * not set up the digest). */
    if (h->started == 2)
        r = -EIO;
    else if ((h->started ? EVP_MD_CTX_copy_ex(copy, h->ctx)
                         : EVP_DigestInit_ex2(copy, EVP_sha256(), NULL)) == 1 &&
             EVP_DigestFinal_ex(copy, md, &len) == 1 && len == OTA_SHA256_LEN) {
        memcpy(ret_digest, md, OTA_SHA256_LEN);
        r = 0;
    }
    ERR_clear_error();
    EVP_MD_CTX_free(copy);
    return r;
}

int ota_sha256_file(const char *path, uint64_t len, uint8_t ret_digest[OTA_SHA256_LEN],
                    struct ota_err *err)
{
    struct ota_sha256 *h = NULL;
    uint8_t *buf = NULL;
    uint64_t done = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    h = ota_sha256_new();
    buf = malloc(HASH_CHUNK);
    if (!h || !buf) {
        r = ota_err_set(err, ENOMEM, "out of memory hashing %s", path);
        goto out;
    }
    while (done < len) {
        size_t want = HASH_CHUNK;
        ssize_t got;

        if (len - done < want)
            want = (size_t)(len - done);
        got = read(fd, buf, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = ota_err_set(err, EIO, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        r = ota_sha256_update(h, buf, (size_t)got);
        if (r < 0) {
            r = ota_err_set(err, -r, "cannot hash %s", path);
            goto out;
        }
        done += (uint64_t)got;
    }
    if (len != UINT64_MAX && done < len) {
        r = ota_err_set(err, ENODATA, "%s has %llu bytes, expected %llu", path,
                        (unsigned long long)done, (unsigned long long)len);
        goto out;
    }
    r = ota_sha256_final(h, ret_digest);
    if (r < 0)
        r = ota_err_set(err, -r, "cannot hash %s", path);
out:
    free(buf);
    ota_sha256_free(h);
    close(fd);
    return r;
}

int ota_file_digests(const char *path, char ret_sha1[41], char ret_md5[33], char ret_sha256[65],
                     struct ota_err *err)
{
    const EVP_MD *md[3] = {EVP_sha1(), EVP_md5(), EVP_sha256()};
    char *out[3] = {ret_sha1, ret_md5, ret_sha256};
    EVP_MD_CTX *ctx[3] = {NULL, NULL, NULL};
    uint8_t *buf = malloc(HASH_CHUNK);
    int fd = -1, r = 0;

    for (int i = 0; i < 3 && buf; i++)
        if (!(ctx[i] = EVP_MD_CTX_new()) || EVP_DigestInit_ex(ctx[i], md[i], NULL) != 1)
            r = ota_err_set(err, ENOMEM, "cannot start a digest of %s", path);
    if (!buf)
        r = ota_err_set(err, ENOMEM, "out of memory hashing %s", path);
    if (r == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        r = ota_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    while (r == 0) {
        ssize_t got = read(fd, buf, HASH_CHUNK);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            r = ota_err_set(err, EIO, "cannot read %s: %s", path, strerror(errno));
        if (got <= 0)
            break;
        for (int i = 0; i < 3 && r == 0; i++)
            if (EVP_DigestUpdate(ctx[i], buf, (size_t)got) != 1)
                r = ota_err_set(err, EIO, "cannot hash %s", path);
    }
    for (int i = 0; i < 3 && r == 0; i++) {
        uint8_t d[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        if (EVP_DigestFinal_ex(ctx[i], d, &n) != 1)
            r = ota_err_set(err, EIO, "cannot hash %s", path);
        else
            ota_hex_encode(d, n, out[i]);
    }
    ERR_clear_error();
    for (int i = 0; i < 3; i++)
        EVP_MD_CTX_free(ctx[i]);
    if (fd >= 0)
        close(fd);
    free(buf);
    return r;
}

/* ---- hex ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void ota_hex_encode(const uint8_t *buf, size_t n, char *ret_hex)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        ret_hex[2 * i] = digits[buf[i] >> 4];
        ret_hex[2 * i + 1] = digits[buf[i] & 0x0f];
    }
    ret_hex[2 * n] = '\0';
}

int ota_hex_decode(const char *hex, uint8_t *ret_buf, size_t n)
{
    if (!hex || strnlen(hex, 2 * n + 1) != 2 * n)
        return -EINVAL;
    /* Validate everything before writing: ret_buf is only written on success. */
    for (size_t i = 0; i < 2 * n; i++)
        if (hex_value(hex[i]) < 0)
            return -EINVAL;
    for (size_t i = 0; i < n; i++)
        ret_buf[i] = (uint8_t)(hex_value(hex[2 * i]) << 4 | hex_value(hex[2 * i + 1]));
    return 0;
}

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void ota_b64_encode(const uint8_t *buf, size_t n, char *ret_b64)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)buf[i] << 16 | (uint32_t)buf[i + 1] << 8 | buf[i + 2];
        ret_b64[o++] = b64_alphabet[v >> 18 & 63];
        ret_b64[o++] = b64_alphabet[v >> 12 & 63];
        ret_b64[o++] = b64_alphabet[v >> 6 & 63];
        ret_b64[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)buf[i] << 16;
        ret_b64[o++] = b64_alphabet[v >> 18 & 63];
        ret_b64[o++] = b64_alphabet[v >> 12 & 63];
        ret_b64[o++] = '=';
        ret_b64[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)buf[i] << 16 | (uint32_t)buf[i + 1] << 8;
        ret_b64[o++] = b64_alphabet[v >> 18 & 63];
        ret_b64[o++] = b64_alphabet[v >> 12 & 63];
        ret_b64[o++] = b64_alphabet[v >> 6 & 63];
        ret_b64[o++] = '=';
    }
    ret_b64[o] = '\0';
}

/* Strict: length a multiple of 4, padding only at the end, no whitespace,
 * and the unused bits before the padding must be zero (one encoding per
 * byte string). */
int ota_b64_decode(const char *b64, uint8_t *ret_buf, size_t cap, size_t *ret_len)
{
    size_t len, pad = 0, out_len, o = 0;

    if (!b64)
        return -EINVAL;
    len = strlen(b64);
    if (len % 4 != 0)
        return -EINVAL;
    if (len >= 1 && b64[len - 1] == '=')
        pad++;
    if (len >= 2 && b64[len - 2] == '=')
        pad++;
    for (size_t i = 0; i < len - pad; i++)
        if (b64_value(b64[i]) < 0)
            return -EINVAL;
    if (pad == 1 && (b64_value(b64[len - 2]) & 0x03))
        return -EINVAL;
    if (pad == 2 && (b64_value(b64[len - 3]) & 0x0f))
        return -EINVAL;
    out_len = len / 4 * 3 - pad;
    if (out_len > cap)
        return -ENOSPC;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;

        for (size_t k = 0; k < 4; k++) {
            int d = b64[i + k] == '=' ? 0 : b64_value(b64[i + k]);
            v = v << 6 | (uint32_t)d;
        }
        if (o < out_len)
            ret_buf[o++] = (uint8_t)(v >> 16);
        if (o < out_len)
            ret_buf[o++] = (uint8_t)(v >> 8);
        if (o < out_len)
            ret_buf[o++] = (uint8_t)v;
    }
    if (ret_len)
        *ret_len = out_len;
    return 0;
}

/* ---- Ed25519 ---- */

/* PEM reading must never prompt on a terminal for a passphrase: an
 * encrypted key simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int is_ed25519(EVP_PKEY *pkey)
{
    return EVP_PKEY_is_a(pkey, "ED25519");
}

/* Writes the PEM held by a memory BIO to path, durably. Key material in the
 * BIO is wiped before it is freed. */
static int write_pem_bio(BIO *bio, const char *path, int mode, struct ota_err *err)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    int r;

    if (len <= 0 || !data)
        return ota_err_set(err, EIO, "cannot encode key for %s", path);
    r = ota_fs_write_atomic(path, data, (size_t)len, mode, err);
    OPENSSL_cleanse(data, (size_t)len);
    return r;
}

int ota_ed25519_keygen(const char *priv_path, const char *pub_path, struct ota_err *err)
{
    char why[256];
    EVP_PKEY *pkey = NULL;
    BIO *priv = NULL, *pub = NULL;
    int r;

    pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!pkey) {
        r = ota_err_set(err, EIO, "cannot generate an Ed25519 key: %s",
                        ssl_reason(why, sizeof(why)));
        goto out;
    }
    priv = BIO_new(BIO_s_mem());
    pub = BIO_new(BIO_s_mem());
    if (!priv || !pub) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    /* Unencrypted PKCS#8 ("PRIVATE KEY") and SubjectPublicKeyInfo
     * ("PUBLIC KEY"): the same files `openssl genpkey`/`pkey -pubout` write. */
    if (PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, pkey) != 1) {
        r = ota_err_set(err, EIO, "cannot encode the key: %s", ssl_reason(why, sizeof(why)));
        goto out;
    }
    r = write_pem_bio(priv, priv_path, 0600, err);
    if (r < 0)
        goto out;
    r = write_pem_bio(pub, pub_path, 0644, err);
out:
    BIO_free(priv);
    BIO_free(pub);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return r;
}

int ota_ed25519_sign(const char *priv_path, const void *msg, size_t n,
                     uint8_t ret_sig[OTA_ED25519_SIG_LEN], struct ota_err *err)
{
    char why[256];
    char *pem = NULL;
    size_t pem_len = 0;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *ctx = NULL;
    uint8_t sig[OTA_ED25519_SIG_LEN];
    size_t sig_len = sizeof(sig);
    int r;

    r = ota_fs_read_all(priv_path, KEY_FILE_MAX, &pem, &pem_len, err);
    if (r < 0)
        return r;
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (!bio) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        r = ota_err_set(err, EINVAL, "%s is not a readable unencrypted PEM private key: %s",
                        priv_path, ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (!is_ed25519(pkey)) {
        r = ota_err_set(err, EINVAL, "%s is not an Ed25519 key", priv_path);
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    /* Ed25519 is "pure": no digest, one-shot over the whole message. */
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &sig_len, n ? msg : (const void *)"", n) != 1 ||
        sig_len != OTA_ED25519_SIG_LEN) {
        r = ota_err_set(err, EIO, "cannot sign with %s: %s", priv_path,
                        ssl_reason(why, sizeof(why)));
        goto out;
    }
    memcpy(ret_sig, sig, sizeof(sig));
    r = 0;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    if (pem) {
        OPENSSL_cleanse(pem, pem_len);
        free(pem);
    }
    ERR_clear_error();
    return r;
}

/* The one form our keys take (ota_ed25519_keygen, `openssl pkey -pubout`):
 * a single PEM block holding the 44-byte SubjectPublicKeyInfo of an Ed25519
 * key. Read without OpenSSL's decoder chain, which sets itself up for every
 * key type at each call (~0.7 ms, more than the verification); NULL for
 * anything else, which then goes the general way. */
static const char pem_begin[] = "-----BEGIN PUBLIC KEY-----",
                  pem_end[] = "-----END PUBLIC KEY-----";
/* The SubjectPublicKeyInfo of an Ed25519 key before its 32 raw bytes. */
static const uint8_t ed25519_spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                         0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

static EVP_PKEY *plain_ed25519_pem(const char *pem)
{
    const char *begin = pem_begin, *end = pem_end;
    const uint8_t *spki = ed25519_spki;
    char b64[128];
    uint8_t der[96];
    size_t k = 0, len = 0;
    const char *p = pem, *e;

    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (strncmp(p, begin, sizeof(pem_begin) - 1) != 0)
        return NULL;
    p += sizeof(pem_begin) - 1;
    e = strstr(p, end);
    if (!e)
        return NULL;
    for (; p < e; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            continue;
        if (k + 1 >= sizeof(b64))
            return NULL;
        b64[k++] = *p;
    }
    b64[k] = '\0';
    for (p = e + sizeof(pem_end) - 1; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return NULL; /* more than one block: the general reader decides */
    if (ota_b64_decode(b64, der, sizeof(der), &len) < 0 || len != sizeof(ed25519_spki) + 32 ||
        memcmp(der, spki, sizeof(ed25519_spki)) != 0)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der + sizeof(ed25519_spki), 32);
}

int ota_ed25519_verify(const char *pub_pem, const void *msg, size_t n,
                       const uint8_t sig[OTA_ED25519_SIG_LEN], struct ota_err *err)
{
    char why[256];
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *ctx = NULL;
    int r;

    if (!pub_pem || !sig || (!msg && n))
        return ota_err_set(err, EINVAL, "missing public key, message or signature");
    pkey = plain_ed25519_pem(pub_pem);
    if (!pkey && !(bio = BIO_new_mem_buf(pub_pem, -1))) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (!pkey)
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        r = ota_err_set(err, EINVAL, "cannot read the PEM public key: %s",
                        ssl_reason(why, sizeof(why)));
        goto out;
    }
    if (!is_ed25519(pkey)) {
        r = ota_err_set(err, EINVAL, "the public key is not an Ed25519 key");
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1) {
        r = ota_err_set(err, EIO, "cannot set up verification: %s", ssl_reason(why, sizeof(why)));
        goto out;
    }
    /* 1 is a good signature; 0 a bad one; negative a malformed one (e.g. an
     * out-of-range s). All but 1 mean "does not verify". */
    if (EVP_DigestVerify(ctx, sig, OTA_ED25519_SIG_LEN, n ? msg : (const void *)"", n) != 1) {
        r = ota_err_set(err, OTA_E_BAD_SIGNATURE, "the signature does not verify");
        goto out;
    }
    r = 0;
out:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    ERR_clear_error();
    return r;
}

/* The public key in pub_pem, by the fast way or OpenSSL's reader. */
static int read_pub(const char *pub_pem, EVP_PKEY **ret, struct ota_err *err)
{
    char why[256];
    BIO *bio = NULL;
    EVP_PKEY *pkey = plain_ed25519_pem(pub_pem);

    if (!pkey && !(bio = BIO_new_mem_buf(pub_pem, -1)))
        return ota_err_set(err, ENOMEM, "out of memory");
    if (!pkey)
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!pkey) {
        ota_err_set(err, EINVAL, "cannot read the PEM public key: %s",
                    ssl_reason(why, sizeof(why)));
        ERR_clear_error();
        return -EINVAL;
    }
    if (!is_ed25519(pkey)) {
        EVP_PKEY_free(pkey);
        return ota_err_set(err, EINVAL, "the public key is not an Ed25519 key");
    }
    *ret = pkey;
    return 0;
}

int ota_ed25519_pub_raw(const char *pub_pem, uint8_t ret_raw[OTA_ED25519_PUB_LEN],
                        struct ota_err *err)
{
    EVP_PKEY *pkey = NULL;
    size_t len = OTA_ED25519_PUB_LEN;
    int r;

    if (!pub_pem)
        return ota_err_set(err, EINVAL, "no public key");
    r = read_pub(pub_pem, &pkey, err);
    if (r < 0)
        return r;
    if (EVP_PKEY_get_raw_public_key(pkey, ret_raw, &len) != 1 || len != OTA_ED25519_PUB_LEN)
        r = ota_err_set(err, EINVAL, "cannot take the raw Ed25519 public key");
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return r;
}

void ota_ed25519_pub_pem(const uint8_t raw[OTA_ED25519_PUB_LEN], char ret_pem[OTA_ED25519_PEM_LEN])
{
    uint8_t der[sizeof(ed25519_spki) + OTA_ED25519_PUB_LEN];
    char b64[64];

    memcpy(der, ed25519_spki, sizeof(ed25519_spki));
    memcpy(der + sizeof(ed25519_spki), raw, OTA_ED25519_PUB_LEN);
    ota_b64_encode(der, sizeof(der), b64); /* 60 characters: one PEM line */
    snprintf(ret_pem, OTA_ED25519_PEM_LEN, "%s\n%s\n%s\n", pem_begin, b64, pem_end);
}

void ota_key_id(const uint8_t raw[OTA_ED25519_PUB_LEN], char ret_id[OTA_KEY_ID_HEX])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    if (EVP_Digest(raw, OTA_ED25519_PUB_LEN, d, &n, EVP_sha256(), NULL) != 1 || n < 8)
        memset(d, 0, 8); /* never for SHA-256 of 32 bytes */
    ota_hex_encode(d, 8, ret_id);
    ERR_clear_error();
}
