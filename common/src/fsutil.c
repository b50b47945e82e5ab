/* File helpers. Everything that must survive a power cut goes through the
 * same rule: write a temp file, fsync it, rename it into place, fsync the
 * directory (a rename is only durable once its directory is). */
#include "ota/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

/* Directory part of path into buf ("." for a bare name, "/" for "/x"). */
static int dir_of(const char *path, char *buf, size_t cap)
{
    size_t len = strlen(path);

    while (len > 1 && path[len - 1] == '/')
        len--;
    while (len > 0 && path[len - 1] != '/')
        len--;
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0) {
        if (cap < 2)
            return -ENAMETOOLONG;
        strcpy(buf, ".");
        return 0;
    }
    if (len >= cap)
        return -ENAMETOOLONG;
    memcpy(buf, path, len);
    buf[len] = '\0';
    return 0;
}

int ota_fs_write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ota_fs_sync_dir(const char *dir, struct ota_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return ota_err_set(err, errno, "open directory %s: %s", dir, strerror(errno));
    if (fsync(fd) < 0)
        r = ota_err_set(err, errno, "fsync directory %s: %s", dir, strerror(errno));
    close(fd);
    return r;
}

int ota_fs_sync_parent(const char *path, struct ota_err *err)
{
    char dir[PATH_MAX];
    struct stat st;

    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return ota_fs_sync_dir(path, err);
    if (dir_of(path, dir, sizeof(dir)) < 0)
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", path);
    return ota_fs_sync_dir(dir, err);
}

int ota_fs_publish(int fd, const char *tmp, const char *path, struct ota_err *err)
{
    int r = 0;

    if (fsync(fd) < 0)
        r = ota_err_set(err, errno, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) < 0 && r == 0)
        r = ota_err_set(err, errno, "close %s: %s", tmp, strerror(errno));
    if (r == 0 && rename(tmp, path) < 0)
        r = ota_err_set(err, errno, "rename %s to %s: %s", tmp, path, strerror(errno));
    if (r < 0)
        return r;
    return ota_fs_sync_parent(path, err);
}

int ota_fs_write_atomic(const char *path, const void *buf, size_t n, int mode, struct ota_err *err)
{
    char tmp[PATH_MAX];
    int fd = -1;
    int have_tmp = 0;
    int r;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", path);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        r = ota_err_set(err, errno, "create %s: %s", tmp, strerror(errno));
        goto out;
    }
    have_tmp = 1;
    /* Exact mode, whatever the umask. */
    if (fchmod(fd, (mode_t)mode & 07777) < 0) {
        r = ota_err_set(err, errno, "chmod %s: %s", tmp, strerror(errno));
        goto out;
    }
    r = ota_fs_write_full(fd, buf, n);
    if (r < 0) {
        r = ota_err_set(err, -r, "write %s: %s", tmp, strerror(-r));
        goto out;
    }
    r = ota_fs_publish(fd, tmp, path, err);
    fd = -1;
    if (r == 0)
        have_tmp = 0;
out:
    if (fd >= 0)
        close(fd);
    if (have_tmp)
        unlink(tmp);
    return r;
}

int ota_fs_mkdirs(const char *dir, struct ota_err *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(dir);
    size_t i;

    if (len == 0)
        return ota_err_set(err, EINVAL, "mkdirs: empty path");
    if (len >= sizeof(buf))
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", dir);
    memcpy(buf, dir, len + 1);

    /* Walk prefixes; each directory we create is made durable in its parent,
     * so a power cut cannot leave a child whose parent entry vanished. */
    for (i = 1; i <= len; i++) {
        struct stat st;
        char saved;

        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;
        saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) == 0) {
            char parent[PATH_MAX];
            int r = dir_of(buf, parent, sizeof(parent));
            if (r == 0)
                r = ota_fs_sync_dir(parent, err);
            if (r < 0)
                return r;
        } else if (errno == EEXIST) {
            if (stat(buf, &st) < 0)
                return ota_err_set(err, errno, "stat %s: %s", buf, strerror(errno));
            if (!S_ISDIR(st.st_mode))
                return ota_err_set(err, ENOTDIR, "%s exists and is not a directory", buf);
        } else {
            return ota_err_set(err, errno, "mkdir %s: %s", buf, strerror(errno));
        }
        buf[i] = saved;
    }
    return 0;
}

/* Removes name in pfd, recursing into directories without following
 * symlinks (a link in the tree is removed, never its target). */
static int remove_at(int pfd, const char *name, const char *top, struct ota_err *err)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int fd;
    int r = 0;

    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return ota_err_set(err, errno, "stat %s in %s: %s", name, top, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(pfd, name, 0) < 0 && errno != ENOENT)
            return ota_err_set(err, errno, "unlink %s in %s: %s", name, top, strerror(errno));
        return 0;
    }
    /* A package may ship read-only directories; we still must empty them. */
    if ((st.st_mode & 0700) != 0700)
        (void)fchmodat(pfd, name, (st.st_mode & 07777) | 0700, 0);
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "open %s in %s: %s", name, top, strerror(errno));
    d = fdopendir(fd);
    if (!d) {
        r = ota_err_set(err, errno, "opendir %s in %s: %s", name, top, strerror(errno));
        close(fd);
        return r;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        r = remove_at(dirfd(d), de->d_name, top, err);
        if (r < 0)
            goto out;
    }
    if (errno != 0) {
        r = ota_err_set(err, errno, "readdir %s in %s: %s", name, top, strerror(errno));
        goto out;
    }
    if (unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = ota_err_set(err, errno, "rmdir %s in %s: %s", name, top, strerror(errno));
out:
    closedir(d);
    return r;
}

int ota_fs_remove_tree(const char *path, struct ota_err *err)
{
    char dir[PATH_MAX];
    char parent[PATH_MAX];
    const char *base;
    char name[NAME_MAX + 1];
    size_t len = strlen(path);
    int dfd;
    int r;

    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof(dir))
        return ota_err_set(err, EINVAL, "remove_tree: bad path '%s'", path);
    memcpy(dir, path, len);
    dir[len] = '\0';
    base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    if (strlen(base) > NAME_MAX || strcmp(base, "") == 0 || strcmp(base, ".") == 0 ||
        strcmp(base, "..") == 0)
        return ota_err_set(err, EINVAL, "remove_tree: bad path '%s'", path);
    strcpy(name, base);
    if (dir_of(dir, parent, sizeof(parent)) < 0)
        return ota_err_set(err, ENAMETOOLONG, "path too long: %s", path);

    dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return 0;
        return ota_err_set(err, errno, "open %s: %s", parent, strerror(errno));
    }
    r = remove_at(dfd, name, path, err);
    /* The removal is durable once the parent is: callers rely on a wiped
     * slot staying wiped. */
    if (r == 0 && fsync(dfd) < 0)
        r = ota_err_set(err, errno, "fsync %s: %s", parent, strerror(errno));
    close(dfd);
    return r;
}

int ota_fs_read_all(const char *path, size_t max, char **ret, size_t *ret_len, struct ota_err *err)
{
    char *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    int fd;
    int r = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "open %s: %s", path, strerror(errno));

    for (;;) {
        ssize_t n;

        /* Always keep room for the NUL and for one byte past max, so a
         * file of exactly max bytes passes and max+1 is caught. */
        if (cap - len < 2) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;

            if (ncap < cap) {
                r = ota_err_set(err, EFBIG, "%s is too large", path);
                goto out;
            }
            nb = realloc(buf, ncap);
            if (!nb) {
                r = ota_err_set(err, ENOMEM, "out of memory reading %s", path);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = ota_err_set(err, errno, "read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            r = ota_err_set(err, EFBIG, "%s is larger than %zu bytes", path, max);
            goto out;
        }
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf) {
            r = ota_err_set(err, ENOMEM, "out of memory reading %s", path);
            goto out;
        }
    }
    buf[len] = '\0';
    *ret = buf;
    buf = NULL;
    if (ret_len)
        *ret_len = len;
out:
    free(buf);
    close(fd);
    return r;
}

int ota_fs_free_bytes(const char *path, uint64_t *ret, struct ota_err *err)
{
    struct statvfs sv;

    if (statvfs(path, &sv) < 0)
        return ota_err_set(err, errno, "statvfs %s: %s", path, strerror(errno));
    *ret = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return 0;
}

void ota_fs_writeback_kick(int fd, uint64_t pos, uint64_t *mark)
{
    if (pos < *mark) {
        *mark = pos;
        return;
    }
    if (pos - *mark < OTA_FS_WRITEBACK_STEP)
        return;
    /* Not sync_file_range's WAIT flags: those would make us wait for the
     * disk, which is what this is meant to avoid. */
    (void)sync_file_range(fd, (off_t)*mark, (off_t)(pos - *mark), SYNC_FILE_RANGE_WRITE);
    *mark = pos;
}
