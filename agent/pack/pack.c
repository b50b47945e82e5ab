/* ota-pack: release building, signing and checking.
 *
 * Every file a release consists of is written durably (temp, fsync, rename,
 * fsync of the directory): a release directory that a power cut interrupts
 * holds old or new files, never torn ones. The payload can be hundreds of
 * MiB, so it is copied and hashed in one streaming pass. */
#include "pack.h"

#include "ota/archive.h"
#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK    (1024 * 1024)
#define KEY_MAX       (16 * 1024)
#define SIG_FILE_MAX  4096
#define SIG_B64_LEN   88 /* 4 * ceil(64 / 3) */
#define FIELD_SIZE(f) sizeof(((struct ota_manifest *)0)->f)

static const struct {
    const char *suffix;
    enum ota_format format;
} suffixes[] = {
    /* Longest first: ".tar.gz" must win over ".gz". */
    {".tar.gz", OTA_FORMAT_TARGZ}, {".tgz", OTA_FORMAT_TARGZ}, {".deb", OTA_FORMAT_DEB},
    {".img", OTA_FORMAT_RAW},      {".raw", OTA_FORMAT_RAW},   {".gz", OTA_FORMAT_GZ},
    {".xz", OTA_FORMAT_XZ},        {".zst", OTA_FORMAT_ZST},   {".zstd", OTA_FORMAT_ZST},
};

int ota_pack_format_from_name(const char *file, enum ota_format *ret)
{
    size_t n = strlen(file);

    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        size_t s = strlen(suffixes[i].suffix);

        if (n > s && strcmp(file + n - s, suffixes[i].suffix) == 0) {
            *ret = suffixes[i].format;
            return 0;
        }
    }
    return -EINVAL;
}

static enum ota_kind kind_of_format(enum ota_format f)
{
    return (f == OTA_FORMAT_DEB || f == OTA_FORMAT_TARGZ) ? OTA_KIND_APP : OTA_KIND_ROOTFS;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

int ota_pack_keygen(const char *priv_path, const char *pub_path, int force, struct ota_err *err)
{
    struct stat st;

    /* Replacing a signing key by accident orphans every device that trusts
     * it: only on request. */
    if (!force && lstat(priv_path, &st) == 0)
        return ota_err_set(err, EEXIST, "%s exists (use --force to replace it)", priv_path);
    if (!force && lstat(pub_path, &st) == 0)
        return ota_err_set(err, EEXIST, "%s exists (use --force to replace it)", pub_path);
    return ota_ed25519_keygen(priv_path, pub_path, err);
}

/* Copies src to dir/base through a temp file, durably, hashing the bytes as
 * they pass. If src already is dir/base, it is only hashed. */
static int copy_and_hash(const char *src, const char *dir, const char *base, uint64_t *ret_size,
                         uint8_t ret_digest[OTA_SHA256_LEN], struct ota_err *err)
{
    char dst[PATH_MAX], tmp[PATH_MAX];
    struct stat sst, dst_st;
    struct ota_sha256 *h = NULL;
    uint8_t *buf = NULL;
    uint64_t done = 0;
    int in = -1, out = -1, have_tmp = 0, r;

    if (snprintf(dst, sizeof(dst), "%s/%s", dir, base) >= (int)sizeof(dst) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dir, base, (long)getpid()) >= (int)sizeof(tmp))
        return ota_err_set(err, ENAMETOOLONG, "path too long in %s", dir);
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", src, strerror(errno));
    if (fstat(in, &sst) < 0) {
        r = ota_err_set(err, errno, "cannot stat %s: %s", src, strerror(errno));
        goto out;
    }
    if (stat(dst, &dst_st) < 0 || dst_st.st_dev != sst.st_dev || dst_st.st_ino != sst.st_ino) {
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (out < 0) {
            r = ota_err_set(err, errno, "cannot create %s: %s", tmp, strerror(errno));
            goto out;
        }
        have_tmp = 1;
        if (fchmod(out, 0644) < 0) {
            r = ota_err_set(err, errno, "cannot chmod %s: %s", tmp, strerror(errno));
            goto out;
        }
    }
    h = ota_sha256_new();
    buf = malloc(COPY_CHUNK);
    if (!h || !buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t got = read(in, buf, COPY_CHUNK);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = ota_err_set(err, errno, "cannot read %s: %s", src, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        r = ota_sha256_update(h, buf, (size_t)got);
        if (r < 0) {
            r = ota_err_set(err, -r, "cannot hash %s", src);
            goto out;
        }
        if (out >= 0) {
            r = ota_fs_write_full(out, buf, (size_t)got);
            if (r < 0) {
                r = ota_err_set(err, -r, "cannot write %s: %s", tmp, strerror(-r));
                goto out;
            }
        }
        done += (uint64_t)got;
    }
    /* The manifest must describe one file, not a mix of two versions. */
    if (done != (uint64_t)sst.st_size) {
        r = ota_err_set(err, EAGAIN, "%s changed while it was copied", src);
        goto out;
    }
    r = ota_sha256_final(h, ret_digest);
    if (r < 0) {
        r = ota_err_set(err, -r, "cannot hash %s", src);
        goto out;
    }
    if (out >= 0) {
        r = ota_fs_publish(out, tmp, dst, err);
        out = -1;
        if (r < 0)
            goto out;
        have_tmp = 0;
    }
    *ret_size = done;
    r = 0;
out:
    if (out >= 0)
        close(out);
    if (have_tmp)
        unlink(tmp);
    close(in);
    free(buf);
    ota_sha256_free(h);
    return r;
}

/* Fields given on the command line, checked with reasons a person can act
 * on before anything is read or written. */
static int check_opts(const struct ota_pack_build_opts *o, enum ota_format format,
                      struct ota_err *err)
{
    const char *base = base_name(o->payload);

    if (kind_of_format(format) != o->kind)
        return ota_err_set(err, EINVAL,
                           "format '%s' does not fit kind '%s' (app: deb, tar.gz; "
                           "rootfs: raw, gz, xz, zst)",
                           ota_format_names[format], ota_kind_names[o->kind]);
    if (!o->name || strlen(o->name) >= FIELD_SIZE(name))
        return ota_err_set(err, EINVAL, "missing or too long release name");
    if (!o->version || !ota_version_valid(o->version) || strlen(o->version) >= FIELD_SIZE(version))
        return ota_err_set(err, EINVAL, "bad version '%s' (MAJOR.MINOR.PATCH[-PRE])",
                           o->version ? o->version : "");
    if (o->min_version && o->min_version[0] &&
        (!ota_version_valid(o->min_version) || strlen(o->min_version) >= FIELD_SIZE(min_version)))
        return ota_err_set(err, EINVAL, "bad minimum version '%s'", o->min_version);
    if (o->n_device_types < 1 || o->n_device_types > OTA_MANIFEST_MAX_TYPES)
        return ota_err_set(err, EINVAL, "%d device types (1..%d allowed)", o->n_device_types,
                           OTA_MANIFEST_MAX_TYPES);
    for (int i = 0; i < o->n_device_types; i++)
        if (strlen(o->device_types[i]) >= FIELD_SIZE(device_types[0]))
            return ota_err_set(err, EINVAL, "device type '%s' is too long", o->device_types[i]);
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        strlen(base) >= FIELD_SIZE(payload))
        return ota_err_set(err, EINVAL, "bad payload file name '%s'", o->payload);
    return 0;
}

/* Decompresses an image once into a scratch file in dir to count its bytes
 * (which also proves it decompresses). Not /dev/null: the image writer
 * fsyncs its target, and a character device refuses fsync. */
static int image_size(const char *payload, enum ota_format format, const char *dir, uint64_t *ret,
                      struct ota_err *err)
{
    char tmp[PATH_MAX];
    uint64_t n = 0;
    int fd, r;

    if (snprintf(tmp, sizeof(tmp), "%s/.%s.image.tmp.%ld", dir, base_name(payload),
                 (long)getpid()) >= (int)sizeof(tmp))
        return ota_err_set(err, ENAMETOOLONG, "path too long in %s", dir);
    r = ota_fs_mkdirs(dir, err);
    if (r < 0)
        return r;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return ota_err_set(err, errno, "cannot create %s: %s", tmp, strerror(errno));
    close(fd);
    r = ota_archive_write_image(payload, format, tmp, 0, &n, err);
    unlink(tmp);
    if (r < 0)
        return r;
    *ret = n;
    return 0;
}

/* installed_size, as documented in pack.h. */
static int installed_size(const struct ota_pack_build_opts *o, enum ota_format format,
                          uint64_t payload_size, uint64_t *ret, struct ota_err *err)
{
    uint64_t n = 0;
    int r;

    if (format == OTA_FORMAT_RAW) {
        if (o->have_installed_size && o->installed_size != payload_size)
            return ota_err_set(err, EINVAL,
                               "a raw image installs as itself: installed size %llu is not its "
                               "size %llu",
                               (unsigned long long)o->installed_size,
                               (unsigned long long)payload_size);
        *ret = payload_size;
        return 0;
    }
    if (o->have_installed_size) {
        *ret = o->installed_size;
        return 0;
    }
    if (o->kind == OTA_KIND_APP)
        r = ota_archive_installed_size(o->payload, format, &n, err);
    else
        r = image_size(o->payload, format, o->out_dir, &n, err);
    if (r < 0)
        return r;
    *ret = n;
    return 0;
}

static int write_text(const char *dir, const char *name, const char *text, size_t n,
                      struct ota_err *err)
{
    char path[PATH_MAX];

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return ota_err_set(err, ENAMETOOLONG, "path too long in %s", dir);
    return ota_fs_write_atomic(path, text, n, 0644, err);
}

static int sign_b64(const char *key, const char *text, size_t n, char ret_b64[SIG_B64_LEN + 1],
                    struct ota_err *err)
{
    uint8_t sig[OTA_ED25519_SIG_LEN];
    int r = ota_ed25519_sign(key, text, n, sig, err);

    if (r < 0)
        return r;
    ota_b64_encode(sig, sizeof(sig), ret_b64);
    return 0;
}

int ota_pack_build(const struct ota_pack_build_opts *o, struct ota_manifest *ret,
                   struct ota_err *err)
{
    struct ota_manifest *m = NULL;
    enum ota_format format;
    const char *base = base_name(o->payload);
    char *text = NULL, *sha_line = NULL;
    char hex[OTA_SHA256_HEX], sig_b64[SIG_B64_LEN + 1], sha_name[PATH_MAX];
    uint8_t probe[OTA_ED25519_SIG_LEN];
    struct stat st;
    int r;

    if (o->format >= 0 && o->format < OTA_FORMAT_MAX)
        format = (enum ota_format)o->format;
    else if (ota_pack_format_from_name(base, &format) < 0)
        return ota_err_set(err, EINVAL, "cannot tell the format of %s from its name: give --format",
                           o->payload);
    r = check_opts(o, format, err);
    if (r < 0)
        return r;
    if (stat(o->payload, &st) < 0)
        return ota_err_set(err, errno, "cannot stat %s: %s", o->payload, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ota_err_set(err, EINVAL, "%s is not a regular file", o->payload);

    m = calloc(1, sizeof(*m));
    if (!m)
        return ota_err_set(err, ENOMEM, "out of memory");
    m->schema = 1;
    ota_strlcpy(m->name, o->name, sizeof(m->name));
    ota_strlcpy(m->version, o->version, sizeof(m->version));
    m->kind = o->kind;
    m->format = format;
    ota_strlcpy(m->payload, base, sizeof(m->payload));
    m->size = (uint64_t)st.st_size;
    for (int i = 0; i < o->n_device_types; i++)
        ota_strlcpy(m->device_types[i], o->device_types[i], sizeof(m->device_types[i]));
    m->n_device_types = o->n_device_types;
    ota_strlcpy(m->min_version, o->min_version ? o->min_version : "", sizeof(m->min_version));
    m->rollback = o->rollback ? 1 : 0;
    m->created = o->created;
    if (m->rollback) {
        for (int i = 0; i < o->n_rollback_from && i < OTA_MANIFEST_MAX_TYPES; i++)
            ota_strlcpy(m->rollback_from[i], o->rollback_from[i], sizeof(m->rollback_from[i]));
        m->n_rollback_from = o->n_rollback_from;
        m->rollback_expires = o->rollback_expires;
    }
    m->keyring = o->keyring;
    if (m->keyring.version && (r = ota_keyring_validate(&m->keyring, err)) < 0)
        goto out;

    /* Everything the manifest will say, checked before the long copy: the
     * remaining rules are the alphabets of names. */
    r = ota_manifest_format(m, &text);
    if (r < 0) {
        r = ota_err_set(err, EINVAL,
                        "invalid manifest: the release name and device types take letters, "
                        "digits, '.', '_', '+', '-' and start with a letter or digit; the "
                        "payload name must not hold control characters");
        goto out;
    }
    free(text);
    text = NULL;
    /* A key that cannot sign should fail now, not after copying the payload. */
    r = ota_ed25519_sign(o->key, "", 0, probe, err);
    if (r < 0)
        goto out;
    r = installed_size(o, format, m->size, &m->installed_size, err);
    if (r < 0)
        goto out;
    r = ota_fs_mkdirs(o->out_dir, err);
    if (r < 0)
        goto out;
    r = copy_and_hash(o->payload, o->out_dir, base, &m->size, m->sha256, err);
    if (r < 0)
        goto out;

    ota_hex_encode(m->sha256, OTA_SHA256_LEN, hex);
    if (asprintf(&sha_line, "%s  %s\n", hex, base) < 0) {
        sha_line = NULL;
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    snprintf(sha_name, sizeof(sha_name), "%s.sha256", base);
    r = write_text(o->out_dir, sha_name, sha_line, strlen(sha_line), err);
    if (r < 0)
        goto out;
    r = ota_manifest_format(m, &text);
    if (r < 0) {
        r = ota_err_set(err, -r, "cannot format the manifest");
        goto out;
    }
    r = sign_b64(o->key, text, strlen(text), sig_b64, err);
    if (r < 0)
        goto out;
    r = write_text(o->out_dir, "manifest.json", text, strlen(text), err);
    if (r < 0)
        goto out;
    r = write_text(o->out_dir, "manifest.json.sig", sig_b64, strlen(sig_b64), err);
    if (r < 0)
        goto out;
    if (ret)
        *ret = *m;
out:
    free(sha_line);
    free(text);
    free(m);
    return r;
}

int ota_pack_sign(const char *key, const char *manifest_path, const char *sig_path, int force,
                  struct ota_err *err)
{
    struct ota_manifest *m = NULL;
    char sig_b64[SIG_B64_LEN + 1];
    char *text = NULL;
    size_t n = 0;
    int r;

    r = ota_fs_read_all(manifest_path, OTA_MANIFEST_MAX_BYTES, &text, &n, err);
    if (r < 0)
        return r;
    if (!force) {
        m = calloc(1, sizeof(*m));
        if (!m) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
        r = ota_manifest_parse(text, n, m, err);
        if (r < 0)
            goto out;
    }
    r = sign_b64(key, text, n, sig_b64, err);
    if (r < 0)
        goto out;
    r = ota_fs_write_atomic(sig_path, sig_b64, strlen(sig_b64), 0644, err);
out:
    free(m);
    free(text);
    return r;
}

int ota_pack_verify(const char *pub_path, const char *manifest_path, const char *sig_path,
                    const char *payload_path, struct ota_manifest *ret, struct ota_err *err)
{
    struct ota_manifest *m = NULL;
    char *pub = NULL, *text = NULL, *sig = NULL;
    size_t n = 0;
    uint8_t digest[OTA_SHA256_LEN];
    struct stat st;
    int r;

    r = ota_fs_read_all(pub_path, KEY_MAX, &pub, NULL, err);
    if (r < 0)
        goto out;
    r = ota_fs_read_all(manifest_path, OTA_MANIFEST_MAX_BYTES, &text, &n, err);
    if (r < 0)
        goto out;
    r = ota_fs_read_all(sig_path, SIG_FILE_MAX, &sig, NULL, err);
    if (r < 0)
        goto out;
    r = ota_manifest_verify(text, n, sig, pub, err);
    if (r < 0)
        goto out;
    m = calloc(1, sizeof(*m));
    if (!m) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    r = ota_manifest_parse(text, n, m, err);
    if (r < 0)
        goto out;
    if (payload_path) {
        if (stat(payload_path, &st) < 0) {
            r = ota_err_set(err, errno, "cannot stat %s: %s", payload_path, strerror(errno));
            goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != m->size) {
            r = ota_err_set(err, EBADMSG, "%s is %lld bytes, the manifest says %llu", payload_path,
                            (long long)st.st_size, (unsigned long long)m->size);
            goto out;
        }
        r = ota_sha256_file(payload_path, UINT64_MAX, digest, err);
        if (r < 0)
            goto out;
        if (memcmp(digest, m->sha256, OTA_SHA256_LEN) != 0) {
            r = ota_err_set(err, EBADMSG, "the SHA-256 of %s differs from the manifest's",
                            payload_path);
            goto out;
        }
    }
    if (ret)
        *ret = *m;
out:
    free(m);
    free(sig);
    free(text);
    free(pub);
    return r;
}

int ota_pack_key_id(const char *pub_path, uint8_t ret_raw[OTA_ED25519_PUB_LEN],
                    char ret_id[OTA_KEY_ID_HEX], struct ota_err *err)
{
    char *pem = NULL;
    size_t n = 0;
    int r;

    r = ota_fs_read_all(pub_path, 16 * 1024, &pem, &n, err);
    if (r < 0)
        return r;
    r = ota_ed25519_pub_raw(pem, ret_raw, err);
    free(pem);
    if (r < 0)
        return ota_err_prefix(err, r, "%s", pub_path);
    ota_key_id(ret_raw, ret_id);
    return 0;
}
