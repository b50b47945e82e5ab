/* CPIO newc-with-CRC writer and first-member reader (ota/cpio.h). */
#include "ota/cpio.h"

#include "ota/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAILER "TRAILER!!!"

uint32_t ota_cpio_sum(uint32_t sum, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

static int put(int fd, uint64_t *off, const void *buf, size_t n, struct ota_err *err)
{
    int r = ota_fs_write_full(fd, buf, n);

    if (r < 0)
        return ota_err_set(err, -r, "cannot write the archive: %s", strerror(-r));
    *off += n;
    return 0;
}

int ota_cpio_pad(int fd, uint64_t *off, unsigned align, struct ota_err *err)
{
    static const uint8_t zeros[512];
    size_t n = (size_t)((align - *off % align) % align);

    return n ? put(fd, off, zeros, n, err) : 0;
}

static int header(int fd, uint64_t *off, const char *name, uint32_t mode, uint32_t nlink,
                  uint64_t size, uint32_t sum, uint32_t ino, struct ota_err *err)
{
    char h[OTA_CPIO_HDR_LEN + OTA_CPIO_NAME_MAX + 2];
    size_t namesize = strlen(name) + 1;
    int n, r;

    if (namesize < 2 || namesize > OTA_CPIO_NAME_MAX + 1 || strchr(name, '\n'))
        return ota_err_set(err, EINVAL, "bad archive member name '%s'", name);
    if (size > OTA_CPIO_SIZE_MAX)
        return ota_err_set(err, EINVAL, "%s is over 4 GiB: too big for a cpio member", name);
    n = snprintf(h, sizeof(h), "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s",
                 OTA_CPIO_MAGIC_CRC, ino, mode, 0u, 0u, nlink, 0u, (uint32_t)size, 0u, 0u, 0u, 0u,
                 (uint32_t)namesize, sum, name);
    if (n != (int)(OTA_CPIO_HDR_LEN + namesize - 1))
        return ota_err_set(err, EINVAL, "bad archive member name '%s'", name);
    r = put(fd, off, h, (size_t)n + 1, err); /* with the name's NUL */
    return r < 0 ? r : ota_cpio_pad(fd, off, 4, err);
}

int ota_cpio_write_header(int fd, uint64_t *off, const char *name, uint64_t size, uint32_t sum,
                          uint32_t ino, struct ota_err *err)
{
    if (strcmp(name, TRAILER) == 0)
        return ota_err_set(err, EINVAL, "'%s' is the archive's end marker", name);
    return header(fd, off, name, 0100644, 1, size, sum, ino, err);
}

int ota_cpio_write_member(int fd, uint64_t *off, const char *name, const void *data, size_t n,
                          uint32_t ino, struct ota_err *err)
{
    int r = ota_cpio_write_header(fd, off, name, n, ota_cpio_sum(0, data, n), ino, err);

    if (r == 0 && n)
        r = put(fd, off, data, n, err);
    if (r == 0)
        r = ota_cpio_pad(fd, off, 4, err);
    return r;
}

int ota_cpio_write_trailer(int fd, uint64_t *off, struct ota_err *err)
{
    int r = header(fd, off, TRAILER, 0, 1, 0, 0, 0, err);

    return r < 0 ? r : ota_cpio_pad(fd, off, 512, err);
}

static int read_exact(int fd, void *buf, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t got = read(fd, (char *)buf + done, n - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -EBADMSG;
        done += (size_t)got;
    }
    return 0;
}

/* Field i (0: ino .. 12: check) of a header; -1 if not 8 hex digits. */
static long long field(const char *h, int i)
{
    char s[9];
    char *end;

    memcpy(s, h + 6 + 8 * i, 8);
    s[8] = '\0';
    for (int k = 0; k < 8; k++)
        if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f') ||
              (s[k] >= 'A' && s[k] <= 'F')))
            return -1;
    return strtoll(s, &end, 16);
}

int ota_cpio_read_first(const char *path, const char *want, size_t max, char **ret, size_t *ret_len,
                        struct ota_err *err)
{
    char h[OTA_CPIO_HDR_LEN], name[OTA_CPIO_NAME_MAX + 4];
    long long size, namesize, check;
    size_t skip;
    char *data = NULL;
    int fd, r, crc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    if ((r = read_exact(fd, h, sizeof(h))) < 0) {
        r = ota_err_set(err, -r, "%s: too short for a cpio archive", path);
        goto out;
    }
    crc = memcmp(h, OTA_CPIO_MAGIC_CRC, 6) == 0;
    if (!crc && memcmp(h, "070701", 6) != 0) {
        r = ota_err_set(err, EBADMSG, "%s is not a cpio newc/crc archive (magic %.6s)", path, h);
        goto out;
    }
    size = field(h, 6);
    namesize = field(h, 11);
    check = field(h, 12);
    if (size < 0 || namesize < 2 || namesize > OTA_CPIO_NAME_MAX + 1 || check < 0) {
        r = ota_err_set(err, EBADMSG, "%s: bad cpio header", path);
        goto out;
    }
    /* The name and the padding after it: header + name to a multiple of 4. */
    skip = (size_t)((OTA_CPIO_HDR_LEN + namesize + 3) / 4 * 4 - OTA_CPIO_HDR_LEN);
    if ((r = read_exact(fd, name, skip)) < 0 || name[namesize - 1] != '\0') {
        r = ota_err_set(err, EBADMSG, "%s: bad cpio member name", path);
        goto out;
    }
    if (strcmp(name, want) != 0) {
        r = ota_err_set(err, EBADMSG, "%s: the first member is '%s', not '%s'", path, name, want);
        goto out;
    }
    if ((unsigned long long)size > max) {
        r = ota_err_set(err, EBADMSG, "%s: %s is %lld bytes (at most %zu)", path, want, size, max);
        goto out;
    }
    data = malloc((size_t)size + 1);
    if (!data) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = read_exact(fd, data, (size_t)size)) < 0) {
        r = ota_err_set(err, -r, "%s: %s is cut short", path, want);
        goto out;
    }
    if (crc && ota_cpio_sum(0, data, (size_t)size) != (uint32_t)check) {
        r = ota_err_set(err, EBADMSG, "%s: %s does not match its cpio checksum", path, want);
        goto out;
    }
    data[size] = '\0';
    *ret = data;
    *ret_len = (size_t)size;
    data = NULL;
    r = 0;
out:
    free(data);
    close(fd);
    return r;
}
