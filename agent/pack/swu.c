/* ota-pack swu: a .swu is a CPIO crc archive (ota/cpio.h) of sw-description
 * (libconfig syntax), sw-description.sig (CMS over sw-description's exact
 * bytes, DER, detached) and the image, in that order: what Debian's
 * swupdate 2022.12, built for CMS-signed images, accepts. The signature
 * covers sw-description only; the image is bound to it by its sha256. The
 * archive is written to a temp file and published durably. */
#include "swu.h"

#include "ota/cpio.h"
#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/version.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define CHUNK (1024 * 1024)

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* A value that goes between double quotes in sw-description as it is. */
static int check_value(const char *what, const char *s, struct ota_err *err)
{
    if (!s || !s[0] || strlen(s) > 255)
        return ota_err_set(err, EINVAL, "missing or too long %s", what);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            return ota_err_set(err, EINVAL, "%s '%s': no quotes, backslashes or control characters",
                               what, s);
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0;
}

static int check_opts(const struct ota_pack_swu_opts *o, struct ota_err *err)
{
    const char *base = o->image ? base_name(o->image) : "";
    int r;

    if ((r = check_value("release name", o->name, err)) < 0)
        return r;
    /* ota-server names the release after it (docs/swupdate.md). */
    if (strlen(o->name) > 63 || !isalnum((unsigned char)o->name[0]) ||
        strspn(o->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") !=
            strlen(o->name))
        return ota_err_set(err, EINVAL,
                           "release name '%s': letters, digits, '.', '_', '+', '-', starting with "
                           "a letter or digit, at most 63",
                           o->name);
    if (!o->version || !ota_version_valid(o->version) || strlen(o->version) > 63)
        return ota_err_set(err, EINVAL, "bad version '%s' (MAJOR.MINOR.PATCH[-PRE])",
                           o->version ? o->version : "");
    if (o->n_hw < 1 || o->n_hw > OTA_SWU_MAX_HW)
        return ota_err_set(err, EINVAL, "%d hardware revisions (1..%d allowed)", o->n_hw,
                           OTA_SWU_MAX_HW);
    for (int i = 0; i < o->n_hw; i++)
        if ((r = check_value("hardware revision", o->hw[i], err)) < 0)
            return r;
    if ((r = check_value("image file name", base, err)) < 0)
        return r;
    if (strncmp(base, "sw-description", 14) == 0 || strcmp(base, "TRAILER!!!") == 0 ||
        base[0] == '.')
        return ota_err_set(err, EINVAL, "image file name '%s' is reserved in a .swu", base);
    if (o->kind == OTA_KIND_ROOTFS) {
        for (int i = 0; i < 2; i++)
            if ((r = check_value(i ? "slot B device" : "slot A device", o->slot_dev[i], err)) < 0)
                return r;
        if (strcmp(o->slot_dev[0], o->slot_dev[1]) == 0)
            return ota_err_set(err, EINVAL, "slot A and slot B are the same device %s",
                               o->slot_dev[0]);
        return 0;
    }
    if (!has_suffix(base, ".tar") && !has_suffix(base, ".tar.gz") && !has_suffix(base, ".tgz"))
        return ota_err_set(err, EINVAL,
                           "an app image for SWUpdate's archive handler is a .tar, .tar.gz or "
                           ".tgz, not %s",
                           base);
    if ((r = check_value("app path", o->app_path, err)) < 0)
        return r;
    if (o->app_path[0] != '/')
        return ota_err_set(err, EINVAL, "app path '%s' is not absolute", o->app_path);
    return 0;
}

/* One slot's selection mode: the image into that slot's device, then the
 * A/B contract (ota/abboot.h) that boots it on trial. */
static void slot_mode(FILE *f, const char *mode, const char *file, const char *dev, const char *sha,
                      const char *part)
{
    fprintf(f,
            "\t\t%s:\n\t\t{\n"
            "\t\t\timages: (\n"
            "\t\t\t\t{\n"
            "\t\t\t\t\tfilename = \"%s\";\n"
            "\t\t\t\t\ttype = \"raw\";\n"
            "\t\t\t\t\tdevice = \"%s\";\n"
            "\t\t\t\t\tsha256 = \"%s\";\n"
            "\t\t\t\t}\n"
            "\t\t\t);\n"
            "\t\t\tbootenv: (\n"
            "\t\t\t\t{ name = \"boot_part\"; value = \"%s\"; },\n"
            "\t\t\t\t{ name = \"upgrade_available\"; value = \"1\"; },\n"
            "\t\t\t\t{ name = \"bootcount\"; value = \"0\"; }\n"
            "\t\t\t);\n"
            "\t\t};\n",
            mode, file, dev, sha, part);
}

int ota_pack_swu_description(const struct ota_pack_swu_opts *o, const char *sha_hex, char **ret,
                             struct ota_err *err)
{
    const char *file = base_name(o->image);
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int r;

    if ((r = check_opts(o, err)) < 0)
        return r;
    f = open_memstream(&buf, &len);
    if (!f)
        return ota_err_set(err, ENOMEM, "out of memory");
    fprintf(f,
            "software =\n{\n"
            "\tversion = \"%s\";\n"
            "\tdescription = \"%s\";\n"
            "\thardware-compatibility: [",
            o->version, o->name);
    for (int i = 0; i < o->n_hw; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : " ", o->hw[i]);
    fprintf(f, " ];\n");
    if (o->kind == OTA_KIND_ROOTFS) {
        /* swupdate -e ota,b on a device running slot A; -e ota,a on B. */
        fprintf(f, "\tota:\n\t{\n");
        slot_mode(f, "a", file, o->slot_dev[0], sha_hex, "A");
        slot_mode(f, "b", file, o->slot_dev[1], sha_hex, "B");
        fprintf(f, "\t};\n");
    } else {
        /* 2022.12 reads create-destination from properties only. */
        fprintf(f,
                "\tfiles: (\n"
                "\t\t{\n"
                "\t\t\tfilename = \"%s\";\n"
                "\t\t\ttype = \"archive\";\n"
                "\t\t\tpath = \"%s\";\n"
                "\t\t\tproperties: { create-destination = \"true\"; };\n"
                "\t\t\tsha256 = \"%s\";\n"
                "\t\t}\n"
                "\t);\n",
                file, o->app_path, sha_hex);
    }
    fprintf(f, "};\n");
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    *ret = buf;
    return 0;
}

/* One pass over the image: size, sha256 (hex), CPIO checksum. */
static int image_pass(int fd, const char *path, uint64_t *ret_size, char ret_sha[65],
                      uint32_t *ret_sum, struct ota_err *err)
{
    struct ota_sha256 *h = ota_sha256_new();
    uint8_t *buf = malloc(CHUNK), d[OTA_SHA256_LEN];
    uint64_t n = 0;
    uint32_t sum = 0;
    ssize_t got;
    int r = 0;

    if (!h || !buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        r = ota_err_set(err, errno, "cannot seek %s: %s", path, strerror(errno));
        goto out;
    }
    while ((got = read(fd, buf, CHUNK)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = ota_err_set(err, errno, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if ((r = ota_sha256_update(h, buf, (size_t)got)) < 0) {
            r = ota_err_set(err, -r, "cannot hash %s", path);
            goto out;
        }
        sum = ota_cpio_sum(sum, buf, (size_t)got);
        n += (uint64_t)got;
    }
    if ((r = ota_sha256_final(h, d)) < 0) {
        r = ota_err_set(err, -r, "cannot hash %s", path);
        goto out;
    }
    ota_hex_encode(d, sizeof(d), ret_sha);
    *ret_size = n;
    *ret_sum = sum;
out:
    free(buf);
    ota_sha256_free(h);
    return r;
}

static int ssl_fail(struct ota_err *err, const char *what, const char *path)
{
    char msg[256] = "";
    unsigned long e = ERR_get_error();

    if (e)
        ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    return ota_err_set(err, EINVAL, "%s %s%s%s", what, path, msg[0] ? ": " : "", msg);
}

/* CMS signature of data as `openssl cms -sign -binary -nosmimecap
 * -outform DER` makes it (detached, signer certificate included). */
static int cms_sign(const char *cert_path, const char *key_path, const char *data, size_t n,
                    uint8_t **ret, size_t *ret_len, struct ota_err *err)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *in = NULL, *out = NULL;
    CMS_ContentInfo *cms = NULL;
    FILE *f;
    BUF_MEM *mem;
    int r = 0;

    if (!(f = fopen(cert_path, "re")))
        return ota_err_set(err, errno, "cannot open %s: %s", cert_path, strerror(errno));
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert)
        return ssl_fail(err, "no PEM certificate in", cert_path);
    if (!(f = fopen(key_path, "re"))) {
        r = ota_err_set(err, errno, "cannot open %s: %s", key_path, strerror(errno));
        goto out;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key) {
        r = ssl_fail(err, "no PEM private key in", key_path);
        goto out;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        r = ota_err_set(err, EINVAL, "%s is not the private key of %s", key_path, cert_path);
        goto out;
    }
    in = BIO_new_mem_buf(data, (int)n);
    out = BIO_new(BIO_s_mem());
    if (!in || !out) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    cms = CMS_sign(cert, key, NULL, in, CMS_BINARY | CMS_DETACHED | CMS_NOSMIMECAP);
    if (!cms || i2d_CMS_bio(out, cms) != 1) {
        r = ssl_fail(err, "cannot sign sw-description with", cert_path);
        goto out;
    }
    BIO_get_mem_ptr(out, &mem);
    *ret = malloc(mem->length);
    if (!*ret) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    memcpy(*ret, mem->data, mem->length);
    *ret_len = mem->length;
out:
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    BIO_free(out);
    EVP_PKEY_free(key);
    X509_free(cert);
    return r;
}

/* The image's bytes into the archive, hashed again on the way: a file
 * that changed since the first pass would not match sw-description. */
static int copy_image(int in, int out, uint64_t *off, const char *path, uint64_t size,
                      const char *sha, struct ota_err *err)
{
    struct ota_sha256 *h = ota_sha256_new();
    uint8_t *buf = malloc(CHUNK), d[OTA_SHA256_LEN];
    char sha2[65];
    uint64_t n = 0;
    ssize_t got;
    int r = 0;

    if (!h || !buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (lseek(in, 0, SEEK_SET) < 0) {
        r = ota_err_set(err, errno, "cannot seek %s: %s", path, strerror(errno));
        goto out;
    }
    while ((got = read(in, buf, CHUNK)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = ota_err_set(err, errno, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if ((uint64_t)got > size - n)
            break; /* grew: refused below */
        if ((r = ota_sha256_update(h, buf, (size_t)got)) < 0 ||
            (r = ota_fs_write_full(out, buf, (size_t)got)) < 0) {
            r = ota_err_set(err, -r, "cannot copy %s into the archive: %s", path, strerror(-r));
            goto out;
        }
        n += (uint64_t)got;
        *off += (uint64_t)got;
    }
    if ((r = ota_sha256_final(h, d)) < 0) {
        r = ota_err_set(err, -r, "cannot hash %s", path);
        goto out;
    }
    ota_hex_encode(d, sizeof(d), sha2);
    if (n != size || got != 0 || strcmp(sha, sha2) != 0)
        r = ota_err_set(err, EAGAIN, "%s changed while it was packed", path);
out:
    free(buf);
    ota_sha256_free(h);
    return r;
}

/* The archive into out (an open temp file). */
static int write_archive(int out, int in, const struct ota_pack_swu_opts *o, const char *desc,
                         const uint8_t *sig, size_t sig_len, uint64_t size, const char *sha,
                         uint32_t sum, struct ota_err *err)
{
    uint64_t off = 0;
    int r;

    if ((r = ota_cpio_write_member(out, &off, "sw-description", desc, strlen(desc), 1, err)) < 0 ||
        (r = ota_cpio_write_member(out, &off, "sw-description.sig", sig, sig_len, 2, err)) < 0 ||
        (r = ota_cpio_write_header(out, &off, base_name(o->image), size, sum, 3, err)) < 0)
        return r;
    if ((r = copy_image(in, out, &off, o->image, size, sha, err)) < 0 ||
        (r = ota_cpio_pad(out, &off, 4, err)) < 0)
        return r;
    return ota_cpio_write_trailer(out, &off, err);
}

int ota_pack_swu_build(const struct ota_pack_swu_opts *o, char ret_sha[65], struct ota_err *err)
{
    char sha[65], tmp[PATH_MAX];
    char *desc = NULL;
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    uint64_t size = 0;
    uint32_t sum = 0;
    struct stat st;
    int in = -1, out = -1, r;

    if ((r = check_opts(o, err)) < 0)
        return r;
    if (!o->out || !o->out[0])
        return ota_err_set(err, EINVAL, "missing output file");
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", o->out, (long)getpid()) >= (int)sizeof(tmp))
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", o->out);
    in = open(o->image, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", o->image, strerror(errno));
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
        r = ota_err_set(err, EINVAL, "%s is not a regular file", o->image);
        goto out;
    }
    if ((r = image_pass(in, o->image, &size, sha, &sum, err)) < 0)
        goto out;
    if (size > OTA_CPIO_SIZE_MAX) {
        r = ota_err_set(err, EFBIG, "%s is over 4 GiB: too big for a .swu member", o->image);
        goto out;
    }
    if ((r = ota_pack_swu_description(o, sha, &desc, err)) < 0 ||
        (r = cms_sign(o->cert, o->key, desc, strlen(desc), &sig, &sig_len, err)) < 0)
        goto out;
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0) {
        r = ota_err_set(err, errno, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if ((r = write_archive(out, in, o, desc, sig, sig_len, size, sha, sum, err)) < 0)
        goto out;
    r = ota_fs_publish(out, tmp, o->out, err);
    out = -1;
    if (r == 0 && ret_sha)
        memcpy(ret_sha, sha, sizeof(sha));
out:
    if (out >= 0)
        close(out);
    if (r < 0)
        unlink(tmp);
    close(in);
    free(sig);
    free(desc);
    return r;
}
