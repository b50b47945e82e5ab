/* Rootfs images over libarchive: a raw image copied, a compressed one (gz,
 * xz, zst) decompressed while streamed onto the inactive partition, with
 * only the decompressor its format names (archive_impl.h). */
#include "ota/archive.h"
#include "ota/faultpoint.h"
#include "archive_impl.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- rootfs images ---------------------------------------------------- */

/* Source of image bytes: the raw file, or libarchive decompressing it. */
struct image_src {
    int fd;            /* RAW */
    struct archive *a; /* GZ, XZ, ZST */
};

static int expected_filter(enum ota_format format)
{
    switch (format) {
    case OTA_FORMAT_GZ:
        return ARCHIVE_FILTER_GZIP;
    case OTA_FORMAT_XZ:
        return ARCHIVE_FILTER_XZ;
    case OTA_FORMAT_ZST:
        return ARCHIVE_FILTER_ZSTD;
    default:
        return -1;
    }
}

static int image_open(const char *payload, enum ota_format format, struct image_src *s,
                      struct ota_err *err)
{
    struct archive_entry *e;
    int ar;

    s->fd = -1;
    s->a = NULL;
    if (format == OTA_FORMAT_RAW) {
        s->fd = open(payload, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0)
            return ota_err_set(err, errno, "open %s: %s", payload, strerror(errno));
        return 0;
    }
    if (expected_filter(format) < 0)
        return ota_err_set(err, EINVAL, "%s: format is not a rootfs image format", payload);

    s->a = archive_read_new();
    if (!s->a)
        return ota_err_set(err, ENOMEM, "out of memory");
    archive_read_support_format_raw(s->a);
    if (ota_arc_support_filter(s->a, expected_filter(format)) < 0)
        return ota_err_set(err, ENOTSUP, "%s: this libarchive cannot decompress %s itself", payload,
                           ota_arc_filter_name(expected_filter(format)));
    if (archive_read_open_filename(s->a, payload, BLOCK_SIZE) != ARCHIVE_OK)
        return ota_arc_fail(err, s->a, payload);
    ar = archive_read_next_header(s->a, &e);
    if (ar == ARCHIVE_EOF)
        return ota_err_set(err, EINVAL, "%s: empty image", payload);
    if (ar < ARCHIVE_WARN)
        return ota_arc_fail(err, s->a, payload);
    /* An uncompressed file passed as .gz would otherwise be copied as is. */
    if (archive_filter_count(s->a) < 2 || archive_filter_code(s->a, 0) != expected_filter(format))
        return ota_err_set(err, EINVAL, "%s: not compressed as the manifest says", payload);
    return 0;
}

/* Fills buf as far as possible; *ret_n < cap only at the end of the image. */
static int image_fill(struct image_src *s, char *buf, size_t cap, size_t *ret_n,
                      const char *payload, struct ota_err *err)
{
    size_t n = 0;

    while (n < cap) {
        ssize_t got;

        if (s->a) {
            got = archive_read_data(s->a, buf + n, cap - n);
            if (got < 0)
                return ota_arc_fail(err, s->a, payload);
        } else {
            got = read(s->fd, buf + n, cap - n);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                return ota_err_set(err, errno, "read %s: %s", payload, strerror(errno));
            }
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    *ret_n = n;
    return 0;
}

static int pwrite_all(int fd, const char *buf, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -ENOSPC; /* end of a block device */
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* dev is opened without O_CREAT or O_TRUNC: a partition (or the image file
 * standing for one) must already exist, and its size is left alone past the
 * image, which only ever extends a file; the file system inside the image
 * carries its own size. */
int ota_archive_write_image(const char *payload, enum ota_format format, const char *dev,
                            uint64_t dev_size, uint64_t *ret_written, struct ota_err *err)
{
    struct image_src src = {-1, NULL};
    uint64_t off = 0;
    char *buf = NULL;
    int fd = -1;
    int r;

    r = image_open(payload, format, &src, err);
    if (r < 0)
        goto out;
    buf = malloc(IMAGE_BUF_SIZE);
    if (!buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    fd = open(dev, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        r = ota_err_set(err, errno, "open %s: %s", dev, strerror(errno));
        goto out;
    }
    for (;;) {
        size_t n = 0;

        r = image_fill(&src, buf, IMAGE_BUF_SIZE, &n, payload, err);
        if (r < 0)
            goto out;
        if (n == 0)
            break;
        if (dev_size > 0 && n > dev_size - off) {
            r = ota_err_set(err, ENOSPC, "image %s is larger than %s (%llu bytes)", payload, dev,
                            (unsigned long long)dev_size);
            goto out;
        }
        r = pwrite_all(fd, buf, n, off);
        if (r < 0) {
            r = ota_arc_sys_fail(err, -r, "write", dev);
            goto out;
        }
        off += n;
        if (n < IMAGE_BUF_SIZE)
            break;
    }
    if (off == 0) {
        r = ota_err_set(err, EINVAL, "%s: empty image", payload);
        goto out;
    }
    /* written, not yet durable: a power cut here loses what is not on disk */
    OTA_FAULT_POINT("rootfs.after_image_write");
    if (fsync(fd) < 0) {
        r = ota_arc_sys_fail(err, errno, "fsync", dev);
        goto out;
    }
    r = close(fd);
    fd = -1;
    if (r < 0) {
        r = ota_arc_sys_fail(err, errno, "close", dev);
        goto out;
    }
    *ret_written = off;
out:
    if (fd >= 0)
        close(fd);
    if (src.fd >= 0)
        close(src.fd);
    if (src.a)
        archive_read_free(src.a);
    free(buf);
    return r;
}
