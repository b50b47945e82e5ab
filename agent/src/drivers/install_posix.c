/* The device's disks on a POSIX file system: the download file, the app
 * slots with their `current` symlink, and the rootfs partitions (block
 * devices, or image files standing for them in the simulator).
 *
 * Layout: download_dir/payload.part (one download per device at a time),
 * app_root/a, app_root/b, app_root/current -> "a" | "b". The symlink target
 * is relative so a device tree can be copied or moved as a whole (the
 * simulator rebuilds trees after a power cut). */
#include "ota/drivers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "ota/archive.h"
#include "ota/crypto.h"
#include "ota/faultpoint.h"
#include "ota/fsutil.h"

#define DL_NAME       "payload.part"
#define HASH_BUF_SIZE (256 * 1024)
#define BOOTED_MAX    (64 * 1024)
#define VERSION_MAX   4096

struct ota_install {
    struct ota_install_config c;
    int dl_fd;        /* open partial download, or -1 */
    uint64_t dl_pos;  /* its end: the download is written front to back */
    uint64_t dl_kick; /* writeback started up to here (ota_fs_writeback_kick) */
};

static const char *const slot_dirs[OTA_SLOT_MAX] = {"a", "b"};

static int join(char *buf, size_t cap, const char *dir, const char *name, struct ota_err *err)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap)
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s/%s", dir, name);
    return 0;
}

static int dl_path(const struct ota_install *i, char *buf, size_t cap, struct ota_err *err)
{
    return join(buf, cap, i->c.download_dir, DL_NAME, err);
}

static int check_slot(int slot, struct ota_err *err)
{
    if (slot != OTA_SLOT_A && slot != OTA_SLOT_B)
        return ota_err_set(err, EINVAL, "bad slot %d", slot);
    return 0;
}

static int need_app_root(const struct ota_install *i, struct ota_err *err)
{
    if (i->c.app_root[0] == '\0')
        return ota_err_set(err, ENOTSUP, "no app_root configured: app updates are off");
    return 0;
}

static int full_disk(int e)
{
    return e == EDQUOT || e == EFBIG ? ENOSPC : e;
}

int ota_install_new(const struct ota_install_config *c, struct ota_install **ret,
                    struct ota_err *err)
{
    struct ota_install *i;

    if (c->download_dir[0] == '\0')
        return ota_err_set(err, EINVAL, "install: download_dir is required");
    i = calloc(1, sizeof(*i));
    if (!i)
        return ota_err_set(err, ENOMEM, "out of memory");
    i->c = *c;
    i->dl_fd = -1;
    *ret = i;
    return 0;
}

void ota_install_free(struct ota_install *i)
{
    if (!i)
        return;
    if (i->dl_fd >= 0)
        close(i->dl_fd);
    free(i);
}

/* ---- the download file ---------------------------------------------- */

static void dl_close(void *ctx)
{
    struct ota_install *i = ctx;

    if (i->dl_fd >= 0)
        close(i->dl_fd);
    i->dl_fd = -1;
}

static int dl_open(void *ctx, uint64_t keep_len, struct ota_err *err)
{
    struct ota_install *i = ctx;
    char path[PATH_MAX];
    struct stat st;
    int created = 0;
    int fd;
    int r;

    dl_close(i);
    r = dl_path(i, path, sizeof(path), err);
    if (r < 0)
        return r;
    r = ota_fs_mkdirs(i->c.download_dir, err);
    if (r < 0)
        return r;

    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0)
        created = 1;
    else if (errno == EEXIST)
        fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, full_disk(errno), "open %s: %s", path, strerror(errno));

    if (fstat(fd, &st) < 0) {
        r = ota_err_set(err, errno, "stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = ota_err_set(err, EINVAL, "%s is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size < keep_len) {
        r = ota_err_set(err, ENODATA, "%s holds %lld bytes, fewer than the %llu to keep", path,
                        (long long)st.st_size, (unsigned long long)keep_len);
        goto out;
    }
    /* Bytes past keep_len were never verified: drop them. */
    if ((uint64_t)st.st_size > keep_len && ftruncate(fd, (off_t)keep_len) < 0) {
        r = ota_err_set(err, errno, "truncate %s: %s", path, strerror(errno));
        goto out;
    }
    if (lseek(fd, (off_t)keep_len, SEEK_SET) < 0) {
        r = ota_err_set(err, errno, "seek %s: %s", path, strerror(errno));
        goto out;
    }
    /* A new file's name is durable only once its directory is. */
    if (created) {
        r = ota_fs_sync_dir(i->c.download_dir, err);
        if (r < 0)
            goto out;
    }
out:
    if (r < 0) {
        close(fd);
    } else {
        i->dl_fd = fd;
        i->dl_pos = i->dl_kick = keep_len;
    }
    return r;
}

static int dl_write(void *ctx, const void *buf, size_t n, struct ota_err *err)
{
    struct ota_install *i = ctx;
    const char *p = buf;

    if (i->dl_fd < 0)
        return ota_err_set(err, EBADF, "download file is not open");
    while (n > 0) {
        ssize_t w = write(i->dl_fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return ota_err_set(err, full_disk(errno), "write %s/%s: %s", i->c.download_dir, DL_NAME,
                               strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        i->dl_pos += (uint64_t)w;
    }
    /* The end of DOWNLOADING fdatasyncs the whole file: start its writeback
     * while the rest arrives (agent/bench/README.md). */
    ota_fs_writeback_kick(i->dl_fd, i->dl_pos, &i->dl_kick);
    return 0;
}

static int dl_sync(void *ctx, struct ota_err *err)
{
    struct ota_install *i = ctx;

    if (i->dl_fd < 0)
        return ota_err_set(err, EBADF, "download file is not open");
    /* fdatasync also flushes the size, which is all the metadata we need. */
    if (fdatasync(i->dl_fd) < 0)
        return ota_err_set(err, full_disk(errno), "fdatasync %s/%s: %s", i->c.download_dir, DL_NAME,
                           strerror(errno));
    return 0;
}

static int dl_size(void *ctx, uint64_t *ret, struct ota_err *err)
{
    struct ota_install *i = ctx;
    char path[PATH_MAX];
    struct stat st;
    int r;

    r = dl_path(i, path, sizeof(path), err);
    if (r < 0)
        return r;
    if (stat(path, &st) < 0)
        return ota_err_set(err, errno, "stat %s: %s", path, strerror(errno));
    *ret = (uint64_t)st.st_size;
    return 0;
}

static int dl_hash(void *ctx, uint64_t len, struct ota_sha256 *h, struct ota_err *err)
{
    struct ota_install *i = ctx;
    char path[PATH_MAX];
    char *buf = NULL;
    uint64_t left = len;
    int fd = -1;
    int r;

    r = dl_path(i, path, sizeof(path), err);
    if (r < 0)
        return r;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "open %s: %s", path, strerror(errno));
    buf = malloc(HASH_BUF_SIZE);
    if (!buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    while (left > 0) {
        size_t want = left < HASH_BUF_SIZE ? (size_t)left : HASH_BUF_SIZE;
        ssize_t n = read(fd, buf, want);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = ota_err_set(err, errno, "read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            r = ota_err_set(err, ENODATA, "%s is shorter than %llu bytes", path,
                            (unsigned long long)len);
            goto out;
        }
        r = ota_sha256_update(h, buf, (size_t)n);
        if (r < 0) {
            r = ota_err_set(err, -r, "hashing %s failed", path);
            goto out;
        }
        left -= (uint64_t)n;
    }
out:
    free(buf);
    close(fd);
    return r;
}

static int dl_remove(void *ctx, struct ota_err *err)
{
    struct ota_install *i = ctx;
    char path[PATH_MAX];
    int r;

    dl_close(i);
    r = dl_path(i, path, sizeof(path), err);
    if (r < 0)
        return r;
    if (unlink(path) < 0) {
        if (errno == ENOENT)
            return 0;
        return ota_err_set(err, errno, "unlink %s: %s", path, strerror(errno));
    }
    return ota_fs_sync_dir(i->c.download_dir, err);
}

/* ---- space ---------------------------------------------------------- */

/* Free bytes where path will live: its nearest existing ancestor (the
 * download dir is made on the first download). */
static int free_near(const char *path, uint64_t *ret, struct ota_err *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return ota_err_set(err, EINVAL, "bad path '%s'", path);
    memcpy(buf, path, len + 1);
    for (;;) {
        struct stat st;
        char *slash;

        if (stat(buf, &st) == 0)
            return ota_fs_free_bytes(buf, ret, err);
        if (errno != ENOENT)
            return ota_err_set(err, errno, "stat %s: %s", buf, strerror(errno));
        slash = strrchr(buf, '/');
        if (!slash)
            return ota_fs_free_bytes(".", ret, err);
        if (slash == buf)
            return ota_fs_free_bytes("/", ret, err);
        *slash = '\0';
    }
}

/* Disk blocks used below name (not following symlinks). */
static int usage_at(int pfd, const char *name, uint64_t *total, int depth)
{
    struct stat st;
    int fd;
    int r = 0;

    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    *total += (uint64_t)st.st_blocks * 512u;
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (depth > 256)
        return -ELOOP;
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    {
        DIR *d = fdopendir(fd);
        struct dirent *de;

        if (!d) {
            r = -errno;
            close(fd);
            return r;
        }
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            r = usage_at(dirfd(d), de->d_name, total, depth + 1);
            if (r < 0)
                break;
        }
        closedir(d);
    }
    return r;
}

static int device_size(const char *dev, uint64_t *ret, struct ota_err *err)
{
    struct stat st;

    if (stat(dev, &st) < 0)
        return ota_err_set(err, errno, "stat %s: %s", dev, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        *ret = (uint64_t)st.st_size;
        return 0;
    }
    if (S_ISBLK(st.st_mode)) {
        uint64_t size = 0;
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        int r = 0;

        if (fd < 0)
            return ota_err_set(err, errno, "open %s: %s", dev, strerror(errno));
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
            r = ota_err_set(err, errno, "BLKGETSIZE64 %s: %s", dev, strerror(errno));
        close(fd);
        if (r == 0)
            *ret = size;
        return r;
    }
    return ota_err_set(err, EINVAL, "%s is neither a block device nor a file", dev);
}

static int active_app(struct ota_install *i, int *ret_slot, struct ota_err *err);

static int space(void *ctx, enum ota_kind kind, uint64_t *ret_dl_free, uint64_t *ret_slot_room,
                 struct ota_err *err)
{
    struct ota_install *i = ctx;
    uint64_t dl_free = 0;
    uint64_t room = 0;
    int r;

    r = free_near(i->c.download_dir, &dl_free, err);
    if (r < 0)
        return r;

    if (kind == OTA_KIND_APP) {
        int active;

        r = need_app_root(i, err);
        if (r < 0)
            return r;
        r = free_near(i->c.app_root, &room, err);
        if (r < 0)
            return r;
        /* The inactive slot is wiped before the install: its blocks count
         * as room. Unknown active slot: only the free space counts. */
        if (active_app(i, &active, NULL) == 0) {
            char slot[PATH_MAX];
            int pfd;

            r = join(slot, sizeof(slot), i->c.app_root, slot_dirs[OTA_SLOT_OTHER(active)], err);
            if (r < 0)
                return r;
            pfd = open(i->c.app_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                uint64_t used = 0;
                if (usage_at(pfd, slot_dirs[OTA_SLOT_OTHER(active)], &used, 0) == 0)
                    room += used;
                close(pfd);
            }
        }
    } else if (kind == OTA_KIND_ROOTFS) {
        /* The core does not say which slot; the smaller device is the
         * answer that is right for both. */
        int s, n = 0;

        for (s = 0; s < OTA_SLOT_MAX; s++) {
            uint64_t size;

            if (i->c.rootfs_dev[s][0] == '\0')
                continue;
            r = device_size(i->c.rootfs_dev[s], &size, err);
            if (r < 0)
                return r;
            if (n == 0 || size < room)
                room = size;
            n++;
        }
        if (n == 0)
            return ota_err_set(err, ENOTSUP, "no rootfs devices configured");
    } else {
        return ota_err_set(err, EINVAL, "bad kind %d", (int)kind);
    }
    *ret_dl_free = dl_free;
    *ret_slot_room = room;
    return 0;
}

/* ---- slots ---------------------------------------------------------- */

/* `current` may say "a", "a/", "./a" or app_root/a (absolute): the last
 * component names the slot, and whatever precedes it must be app_root. */
static int active_app(struct ota_install *i, int *ret_slot, struct ota_err *err)
{
    char link[PATH_MAX];
    char target[PATH_MAX];
    ssize_t n;
    char *base;
    int slot;
    int r;

    r = need_app_root(i, err);
    if (r < 0)
        return r;
    r = join(link, sizeof(link), i->c.app_root, "current", err);
    if (r < 0)
        return r;
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0) {
        if (errno == EINVAL)
            return ota_err_set(err, EINVAL, "%s is not a symlink", link);
        return ota_err_set(err, errno, "readlink %s: %s", link, strerror(errno));
    }
    while (n > 1 && target[n - 1] == '/')
        n--;
    target[n] = '\0';
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (strcmp(base, "a") == 0)
        slot = OTA_SLOT_A;
    else if (strcmp(base, "b") == 0)
        slot = OTA_SLOT_B;
    else
        return ota_err_set(err, EINVAL, "%s points to '%s', not to a slot", link, target);

    if (base != target) {
        char dir[PATH_MAX];
        struct stat st_dir, st_root;

        base[-1] = '\0';
        if (target[0] == '\0')
            strcpy(dir, "/"); /* "/a" */
        else if (target[0] == '/')
            strcpy(dir, target);
        else if (join(dir, sizeof(dir), i->c.app_root, target, err) < 0)
            return -ENAMETOOLONG;
        if (stat(dir, &st_dir) < 0 || stat(i->c.app_root, &st_root) < 0 ||
            st_dir.st_dev != st_root.st_dev || st_dir.st_ino != st_root.st_ino)
            return ota_err_set(err, EINVAL, "%s points outside %s", link, i->c.app_root);
    }
    *ret_slot = slot;
    return 0;
}

/* "ota.slot=X" as a word of a kernel command line, or the bare slot name.
 * -ENOENT when the text names no slot. */
static int parse_booted(const char *text, int *ret_slot, struct ota_err *err)
{
    static const char key[] = "ota.slot=";
    const char *p = text;
    const char *end;
    char v;

    while ((p = strstr(p, key)) != NULL) {
        if (p == text || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n')
            break;
        p += sizeof(key) - 1;
    }
    if (p) {
        p += sizeof(key) - 1;
        v = p[0];
        if ((v == 'a' || v == 'A' || v == 'b' || v == 'B') &&
            (p[1] == '\0' || p[1] == ' ' || p[1] == '\t' || p[1] == '\n' || p[1] == '\r')) {
            *ret_slot = (v == 'a' || v == 'A') ? OTA_SLOT_A : OTA_SLOT_B;
            return 0;
        }
        return ota_err_set(err, EINVAL, "bad ota.slot value in booted file");
    }

    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        text++;
    end = text + strlen(text);
    while (end > text && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        end--;
    if (end - text == 1) {
        v = text[0];
        if (v == 'a' || v == 'A') {
            *ret_slot = OTA_SLOT_A;
            return 0;
        }
        if (v == 'b' || v == 'B') {
            *ret_slot = OTA_SLOT_B;
            return 0;
        }
    }
    return ota_err_set(err, ENOENT, "booted file names no slot");
}

static int active_rootfs(struct ota_install *i, int *ret_slot, struct ota_err *err)
{
    char *text = NULL;
    int r;

    if (i->c.booted_file[0] == '\0')
        return ota_err_set(err, ENOENT, "no booted_file configured");
    r = ota_fs_read_all(i->c.booted_file, BOOTED_MAX, &text, NULL, err);
    if (r < 0)
        return r;
    r = parse_booted(text, ret_slot, err);
    free(text);
    return r;
}

static int active_slot(void *ctx, enum ota_kind kind, int *ret_slot, struct ota_err *err)
{
    struct ota_install *i = ctx;

    if (kind == OTA_KIND_APP)
        return active_app(i, ret_slot, err);
    if (kind == OTA_KIND_ROOTFS)
        return active_rootfs(i, ret_slot, err);
    return ota_err_set(err, EINVAL, "bad kind %d", (int)kind);
}

static int slot_version(void *ctx, enum ota_kind kind, int slot, char *buf, size_t cap,
                        struct ota_err *err)
{
    struct ota_install *i = ctx;
    char path[PATH_MAX];
    char *text = NULL;
    char *s, *e;
    int r;

    r = check_slot(slot, err);
    if (r < 0)
        return r;
    /* A rootfs image carries no version file we could read without
     * mounting it: the core keeps rootfs versions itself. */
    if (kind != OTA_KIND_APP)
        return ota_err_set(err, ENOENT, "no version file for a rootfs slot");
    r = need_app_root(i, err);
    if (r < 0)
        return r;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s/VERSION", i->c.app_root, slot_dirs[slot]) >=
        sizeof(path))
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", i->c.app_root);
    r = ota_fs_read_all(path, VERSION_MAX, &text, NULL, err);
    if (r < 0)
        return r;
    s = text;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        e--;
    *e = '\0';
    if (*s == '\0')
        r = ota_err_set(err, ENOENT, "%s is empty", path);
    else if ((size_t)(e - s) + 1 > cap)
        r = ota_err_set(err, ERANGE, "%s: version longer than %zu bytes", path, cap);
    else
        memcpy(buf, s, (size_t)(e - s) + 1);
    free(text);
    return r;
}

static int install_app(struct ota_install *i, const struct ota_manifest *m, int slot,
                       struct ota_err *err)
{
    char dir[PATH_MAX];
    char payload[PATH_MAX];
    struct ota_err why = {0};
    int active;
    int r;

    r = need_app_root(i, err);
    if (r < 0)
        return r;
    if (m->format != OTA_FORMAT_DEB && m->format != OTA_FORMAT_TARGZ)
        return ota_err_set(err, EINVAL, "app release with a non-package format");
    /* Never write the slot `current` points to. A broken `current` is not
     * "no active slot": refuse rather than guess. */
    r = active_app(i, &active, &why);
    if (r == 0 && active == slot)
        return ota_err_set(err, EBUSY, "slot %s is the active slot", slot_dirs[slot]);
    if (r < 0 && r != -ENOENT)
        return ota_err_set(err, -r, "%s", why.reason);

    r = join(dir, sizeof(dir), i->c.app_root, slot_dirs[slot], err);
    if (r < 0)
        return r;
    r = dl_path(i, payload, sizeof(payload), err);
    if (r < 0)
        return r;
    r = ota_fs_mkdirs(i->c.app_root, err);
    if (r < 0)
        return r;
    r = ota_fs_remove_tree(dir, err);
    if (r < 0)
        return r;
    if (mkdir(dir, 0755) < 0)
        return ota_err_set(err, full_disk(errno), "mkdir %s: %s", dir, strerror(errno));
    r = ota_archive_extract(payload, m->format, dir, m->installed_size, err);
    if (r < 0) {
        /* Give the space back; the slot is inactive and wiped again by the
         * next install anyway. */
        int r2 = ota_fs_remove_tree(dir, NULL);
        (void)r2;
        return r;
    }
    OTA_FAULT_POINT("install.after_extract");
    return ota_fs_sync_dir(i->c.app_root, err);
}

static int install_rootfs(struct ota_install *i, const struct ota_manifest *m, int slot,
                          struct ota_err *err)
{
    char payload[PATH_MAX];
    const char *dev = i->c.rootfs_dev[slot];
    uint64_t dev_size = 0;
    uint64_t written = 0;
    int booted;
    int r;

    if (m->format != OTA_FORMAT_RAW && m->format != OTA_FORMAT_GZ && m->format != OTA_FORMAT_XZ &&
        m->format != OTA_FORMAT_ZST)
        return ota_err_set(err, EINVAL, "rootfs release with a non-image format");
    if (dev[0] == '\0')
        return ota_err_set(err, ENOTSUP, "no rootfs device for slot %s", slot_dirs[slot]);
    r = active_rootfs(i, &booted, NULL);
    if (r == 0 && booted == slot)
        return ota_err_set(err, EBUSY, "rootfs slot %s is the booted slot", slot_dirs[slot]);
    r = dl_path(i, payload, sizeof(payload), err);
    if (r < 0)
        return r;
    r = device_size(dev, &dev_size, err);
    if (r < 0)
        return r;
    /* dev_size 0 (an empty image file) means no limit to write_image. */
    r = ota_archive_write_image(payload, m->format, dev, dev_size, &written, err);
    if (r < 0)
        return r;
    return 0;
}

static int slot_install(void *ctx, const struct ota_manifest *m, int slot, struct ota_err *err)
{
    struct ota_install *i = ctx;
    int r;

    r = check_slot(slot, err);
    if (r < 0)
        return r;
    if (m->kind == OTA_KIND_APP)
        return install_app(i, m, slot, err);
    if (m->kind == OTA_KIND_ROOTFS)
        return install_rootfs(i, m, slot, err);
    return ota_err_set(err, EINVAL, "bad kind %d", (int)m->kind);
}

/* The switch: a new symlink under a temporary name renamed over `current`
 * (atomic), then the directory synced (durable). Safe to run again from any
 * point: a stale current.tmp is replaced, a finished switch is only
 * synced. */
static int app_switch(void *ctx, int slot, struct ota_err *err)
{
    struct ota_install *i = ctx;
    char cur[PATH_MAX];
    char tmp[PATH_MAX];
    char dir[PATH_MAX];
    char target[16];
    struct stat st;
    ssize_t n;
    int r;

    r = check_slot(slot, err);
    if (r < 0)
        return r;
    r = need_app_root(i, err);
    if (r < 0)
        return r;
    r = join(cur, sizeof(cur), i->c.app_root, "current", err);
    if (r == 0)
        r = join(tmp, sizeof(tmp), i->c.app_root, "current.tmp", err);
    if (r == 0)
        r = join(dir, sizeof(dir), i->c.app_root, slot_dirs[slot], err);
    if (r < 0)
        return r;
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return ota_err_set(err, ENOENT, "slot %s is not installed", dir);

    n = readlink(cur, target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = '\0';
        if (strcmp(target, slot_dirs[slot]) == 0)
            return ota_fs_sync_dir(i->c.app_root, err);
    }

    if (unlink(tmp) < 0 && errno != ENOENT)
        return ota_err_set(err, errno, "unlink %s: %s", tmp, strerror(errno));
    if (symlink(slot_dirs[slot], tmp) < 0)
        return ota_err_set(err, full_disk(errno), "symlink %s: %s", tmp, strerror(errno));
    OTA_FAULT_POINT("switching.after_tmp_symlink");
    if (rename(tmp, cur) < 0)
        return ota_err_set(err, errno, "rename %s to %s: %s", tmp, cur, strerror(errno));
    OTA_FAULT_POINT("switching.after_rename");
    return ota_fs_sync_dir(i->c.app_root, err);
}

const struct ota_install_ops ota_install_posix_ops = {
    .dl_open = dl_open,
    .dl_write = dl_write,
    .dl_sync = dl_sync,
    .dl_close = dl_close,
    .dl_size = dl_size,
    .dl_hash = dl_hash,
    .dl_remove = dl_remove,
    .space = space,
    .active_slot = active_slot,
    .slot_version = slot_version,
    .slot_install = slot_install,
    .app_switch = app_switch,
};
