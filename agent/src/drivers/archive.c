/* Package extraction over libarchive (with archive_image.c, the rootfs
 * images, the only files that use it; archive_impl.h between them).
 *
 * We never let libarchive write to disk (no archive_read_extract): every
 * entry is checked and created by us, relative to a directory fd of
 * dest_dir, so that a hostile or broken package cannot write outside the
 * slot. The rules:
 *   - names: no absolute path, no ".." component; "./" and "." dropped;
 *   - every parent directory is opened with O_NOFOLLOW, so an entry can never
 *     be written through a symlink (even one the archive made inside the
 *     slot), and new files are created O_EXCL|O_NOFOLLOW;
 *   - symlink targets: relative, and ".." only as a leading run that does not
 *     climb above dest_dir from the link's own (real) directory. "x/../y" is
 *     refused: "x" may itself be a symlink, and lexical resolution would then
 *     lie (a -> "." plus b -> "a/.." escapes);
 *   - hard links: only to regular files already extracted (a hard link to a
 *     symlink would move the symlink to another depth);
 *   - no device nodes, FIFOs or sockets; setuid/setgid/sticky bits masked.
 * Ownership is not restored: the agent runs as root and slot files belong
 * to it. */
#include "ota/fsutil.h"
#include "ota/archive.h"
#include "archive_impl.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* An opened package: the tar with the files, and for a .deb the outer ar
 * archive it is read from. */
struct pkg {
    struct archive *outer; /* NULL for tar.gz */
    struct archive *a;
    int filter;           /* the one compression filter allowed (ARCHIVE_FILTER_*) */
    char buf[BLOCK_SIZE]; /* bytes of the data.tar member in flight */
};

/* File bytes a package may still write: its signed installed_size. */
struct budget {
    uint64_t limit;
    uint64_t left;
};

/* The compression a package's file archive may use: gzip for a tar.gz; for
 * a .deb what dpkg-deb writes, told by the member's name. -1: none allowed. */
static int package_filter(enum ota_format format, const char *member)
{
    if (format == OTA_FORMAT_TARGZ)
        return ARCHIVE_FILTER_GZIP;
    if (strcmp(member, "data.tar") == 0)
        return ARCHIVE_FILTER_NONE;
    if (strcmp(member, "data.tar.gz") == 0)
        return ARCHIVE_FILTER_GZIP;
    if (strcmp(member, "data.tar.xz") == 0)
        return ARCHIVE_FILTER_XZ;
    if (strcmp(member, "data.tar.zst") == 0)
        return ARCHIVE_FILTER_ZSTD;
    return -1;
}

/* Whether this libarchive decompresses filter itself (linked with its
 * library), not through an external program. */
static int built_in(int filter)
{
    switch (filter) {
    case ARCHIVE_FILTER_NONE:
        return 1;
    case ARCHIVE_FILTER_GZIP:
        return archive_zlib_version() != NULL;
    case ARCHIVE_FILTER_XZ:
        return archive_liblzma_version() != NULL;
    case ARCHIVE_FILTER_ZSTD:
        return archive_libzstd_version() != NULL;
    default:
        return 0;
    }
}

static int support_one(struct archive *a, int filter)
{
    switch (filter) {
    case ARCHIVE_FILTER_GZIP:
        return archive_read_support_filter_gzip(a);
    case ARCHIVE_FILTER_XZ:
        return archive_read_support_filter_xz(a);
    case ARCHIVE_FILTER_ZSTD:
        return archive_read_support_filter_zstd(a);
    default:
        return ARCHIVE_OK;
    }
}

/* Enables the decompressors a release may use (gzip, xz, zstd: what
 * dpkg-deb writes) that this libarchive has built in, never its others nor
 * its external programs (lrzip, grzip, lzop, uudecode...: a support call
 * registers a program when the library is missing, so one is made only for
 * a built-in filter). The one a payload really used is checked against the
 * wanted one after the first header (check_filter), so a wrong one is named
 * in the error. -1 if want is not built in. */
int ota_arc_support_filter(struct archive *a, int want)
{
    static const int allowed[] = {ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_XZ, ARCHIVE_FILTER_ZSTD};

    if (!built_in(want))
        return -1;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (built_in(allowed[i]) && support_one(a, allowed[i]) != ARCHIVE_OK)
            return -1;
    return 0;
}

const char *ota_arc_filter_name(int filter)
{
    switch (filter) {
    case ARCHIVE_FILTER_NONE:
        return "none";
    case ARCHIVE_FILTER_GZIP:
        return "gzip";
    case ARCHIVE_FILTER_XZ:
        return "xz";
    case ARCHIVE_FILTER_ZSTD:
        return "zstd";
    default:
        return "another";
    }
}

/* After the first header: the archive used exactly the allowed filter. */
static int check_filter(struct archive *a, int want, const char *payload, struct ota_err *err)
{
    int n = archive_filter_count(a), got = n >= 2 ? archive_filter_code(a, 0) : ARCHIVE_FILTER_NONE;

    if (n > 2 || got != want)
        return ota_err_set(err, EINVAL, "%s: compressed with %s, not %s as its format allows",
                           payload, n > 2 ? "several filters" : ota_arc_filter_name(got),
                           ota_arc_filter_name(want));
    return 0;
}

/* A directory we created: its final mode is applied, and it is fsynced,
 * once all entries are in. */
struct dir_rec {
    char *path; /* relative to dest_dir */
    mode_t mode;
};

struct dir_list {
    struct dir_rec *v;
    size_t n, cap;
};

/* libarchive's errno to ours: I/O and resource errors keep their code, any
 * format or data error means "not a valid package". */
static int arc_code(struct archive *a)
{
    int e = archive_errno(a);

    switch (e) {
    case ENOENT:
    case EACCES:
    case EIO:
    case ENOMEM:
    case ENOSPC:
        return e;
    case EDQUOT:
        return ENOSPC;
    default:
        return EINVAL;
    }
}

int ota_arc_fail(struct ota_err *err, struct archive *a, const char *payload)
{
    const char *s = archive_error_string(a);
    return ota_err_set(err, arc_code(a), "%s: %s", payload, s ? s : "archive error");
}

/* A system call's errno, with a full disk always reported as ENOSPC. */
int ota_arc_sys_fail(struct ota_err *err, int e, const char *what, const char *name)
{
    if (e == EDQUOT || e == EFBIG)
        e = ENOSPC;
    return ota_err_set(err, e, "%s %s: %s", what, name, strerror(e));
}

static la_ssize_t member_read(struct archive *a, void *ctx, const void **ret_buf)
{
    struct pkg *p = ctx;
    la_ssize_t n = archive_read_data(p->outer, p->buf, sizeof(p->buf));

    if (n < 0) {
        const char *s = archive_error_string(p->outer);
        archive_set_error(a, archive_errno(p->outer), "%s", s ? s : "reading .deb member");
        return -1;
    }
    *ret_buf = p->buf;
    return n;
}

static void pkg_close(struct pkg *p)
{
    if (!p)
        return;
    if (p->a)
        archive_read_free(p->a);
    if (p->outer)
        archive_read_free(p->outer);
    free(p);
}

/* Opens the file archive of a package: the tarball itself, or the
 * data.tar.* member of a .deb read as a nested archive. */
static int pkg_open(const char *payload, enum ota_format format, struct pkg **ret,
                    struct ota_err *err)
{
    struct pkg *p;
    int r = 0;

    if (format != OTA_FORMAT_DEB && format != OTA_FORMAT_TARGZ)
        return ota_err_set(err, EINVAL, "%s: format is not an app package format", payload);
    p = calloc(1, sizeof(*p));
    if (!p)
        return ota_err_set(err, ENOMEM, "out of memory");

    if (format == OTA_FORMAT_DEB) {
        struct archive_entry *e;

        p->outer = archive_read_new();
        if (!p->outer) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
        archive_read_support_format_ar(p->outer);
        if (archive_read_open_filename(p->outer, payload, BLOCK_SIZE) != ARCHIVE_OK) {
            r = ota_arc_fail(err, p->outer, payload);
            goto out;
        }
        for (;;) {
            const char *name;
            int ar = archive_read_next_header(p->outer, &e);

            if (ar == ARCHIVE_EOF) {
                r = ota_err_set(err, EINVAL, "%s: no data.tar member in .deb", payload);
                goto out;
            }
            if (ar < ARCHIVE_WARN) {
                r = ota_arc_fail(err, p->outer, payload);
                goto out;
            }
            name = archive_entry_pathname(e);
            if (name && strncmp(name, "data.tar", 8) == 0) {
                p->filter = package_filter(format, name);
                if (p->filter < 0) {
                    r = ota_err_set(err, EINVAL,
                                    "%s: member %.64s: not a compression dpkg-deb "
                                    "writes (data.tar, .gz, .xz, .zst)",
                                    payload, name);
                    goto out;
                }
                break;
            }
            if (archive_read_data_skip(p->outer) < ARCHIVE_WARN) {
                r = ota_arc_fail(err, p->outer, payload);
                goto out;
            }
        }
    }

    p->a = archive_read_new();
    if (!p->a) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if (!p->outer)
        p->filter = package_filter(format, "");
    archive_read_support_format_tar(p->a);
    if (ota_arc_support_filter(p->a, p->filter) < 0) {
        r = ota_err_set(err, ENOTSUP, "%s: this libarchive cannot decompress %s itself", payload,
                        ota_arc_filter_name(p->filter));
        goto out;
    }
    if (p->outer)
        r = archive_read_open(p->a, p, NULL, member_read, NULL);
    else
        r = archive_read_open_filename(p->a, payload, BLOCK_SIZE);
    if (r != ARCHIVE_OK) {
        r = ota_arc_fail(err, p->a, payload);
        goto out;
    }
    r = 0;
out:
    if (r < 0)
        pkg_close(p);
    else
        *ret = p;
    return r;
}

/* Entry name to a clean relative path: components joined by '/', without
 * "." or empty ones. "" is dest_dir itself. -EPERM for an absolute path or a
 * ".." anywhere. */
static int clean_path(const char *name, char *out, size_t cap, struct ota_err *err)
{
    const char *s = name;
    size_t len = 0;

    if (name[0] == '/')
        return ota_err_set(err, EPERM, "unsafe entry '%s': absolute path", name);
    while (*s) {
        const char *c = s;
        size_t n;

        while (*s && *s != '/')
            s++;
        n = (size_t)(s - c);
        if (*s == '/')
            s++;
        if (n == 0 || (n == 1 && c[0] == '.'))
            continue;
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return ota_err_set(err, EPERM, "unsafe entry '%s': '..' in path", name);
        if (len + n + 2 > cap)
            return ota_err_set(err, ENAMETOOLONG, "entry '%s': name too long", name);
        if (len > 0)
            out[len++] = '/';
        memcpy(out + len, c, n);
        len += n;
    }
    out[len] = '\0';
    return 0;
}

/* Number of directories above a clean relative path (its depth). */
static size_t parent_depth(const char *rel)
{
    size_t d = 0;

    for (; *rel; rel++)
        if (*rel == '/')
            d++;
    return d;
}

/* A symlink at rel pointing to target stays inside dest_dir (see the top
 * comment for why ".." may only lead). */
static int check_symlink(const char *name, const char *rel, const char *target, struct ota_err *err)
{
    size_t depth = parent_depth(rel);
    size_t ups = 0;
    int seen_name = 0;
    const char *s = target;

    if (target[0] == '\0')
        return ota_err_set(err, EPERM, "unsafe entry '%s': empty symlink target", name);
    if (target[0] == '/')
        return ota_err_set(err, EPERM, "unsafe entry '%s': absolute symlink target '%s'", name,
                           target);
    while (*s) {
        const char *c = s;
        size_t n;

        while (*s && *s != '/')
            s++;
        n = (size_t)(s - c);
        if (*s == '/')
            s++;
        if (n == 0 || (n == 1 && c[0] == '.'))
            continue;
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (seen_name)
                return ota_err_set(err, EPERM,
                                   "unsafe entry '%s': symlink target '%s' has '..' after a name",
                                   name, target);
            if (ups == depth)
                return ota_err_set(err, EPERM,
                                   "unsafe entry '%s': symlink target '%s' leaves the slot", name,
                                   target);
            ups++;
            continue;
        }
        seen_name = 1;
    }
    return 0;
}

/* Why opening component comp of name failed: a symlink or a file in the way
 * is a refusal, the rest is the system's error. */
static int walk_fail(int dirfd, const char *comp, const char *name, int e, struct ota_err *err)
{
    struct stat st;

    if ((e == ELOOP || e == ENOTDIR) && fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            return ota_err_set(err, EPERM, "unsafe entry '%s': path goes through symlink '%s'",
                               name, comp);
        if (!S_ISDIR(st.st_mode))
            return ota_err_set(err, EINVAL, "entry '%s': '%s' is not a directory", name, comp);
    }
    return ota_arc_sys_fail(err, e, "open directory for", name);
}

static int dirs_add(struct dir_list *l, const char *path, mode_t mode)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].path, path) == 0) {
            l->v[i].mode = mode;
            return 0;
        }
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 32;
        struct dir_rec *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].path = strdup(path);
    if (!l->v[l->n].path)
        return -ENOMEM;
    l->v[l->n].mode = mode;
    l->n++;
    return 0;
}

static void dirs_free(struct dir_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i].path);
    free(l->v);
}

/* Opens the directory holding rel (every component without following
 * symlinks), creating missing ones when dirs is not NULL. *ret_leaf points
 * into rel at the last component. With all, the last component is opened
 * too (rel is then a directory, and *ret_fd is rel itself). */
static int open_beneath(int root, const char *rel, int all, struct dir_list *dirs, const char *name,
                        int *ret_fd, const char **ret_leaf, struct ota_err *err)
{
    char path[PATH_MAX];
    char *comp;
    char *slash;
    int fd;
    int r = 0;

    if (strlen(rel) >= sizeof(path))
        return ota_err_set(err, ENAMETOOLONG, "entry '%s': name too long", name);
    strcpy(path, rel);
    fd = dup(root);
    if (fd < 0)
        return ota_arc_sys_fail(err, errno, "dup for", name);

    comp = path;
    for (;;) {
        int nfd;

        slash = strchr(comp, '/');
        if (!slash && !all)
            break;
        if (comp[0] == '\0')
            break;
        if (slash)
            *slash = '\0';
        nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0 && errno == ENOENT && dirs) {
            if (mkdirat(fd, comp, 0700) < 0 && errno != EEXIST) {
                r = ota_arc_sys_fail(err, errno, "mkdir for", name);
                goto out;
            }
            r = dirs_add(dirs, path, 0755);
            if (r < 0) {
                r = ota_err_set(err, ENOMEM, "out of memory");
                goto out;
            }
            nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (nfd < 0) {
            r = walk_fail(fd, comp, name, errno, err);
            goto out;
        }
        close(fd);
        fd = nfd;
        if (!slash)
            break;
        *slash = '/';
        comp = slash + 1;
    }
out:
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    if (ret_leaf) {
        const char *leaf = strrchr(rel, '/');
        *ret_leaf = leaf ? leaf + 1 : rel;
    }
    return 0;
}

/* Makes room for a new leaf: tar semantics let a later entry replace an
 * earlier file or link, never a directory. */
static int unlink_leaf(int dirfd, const char *leaf, const char *name, struct ota_err *err)
{
    struct stat st;

    if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        return ota_err_set(err, EINVAL, "entry '%s' would replace a directory", name);
    if (unlinkat(dirfd, leaf, 0) < 0 && errno != ENOENT)
        return ota_arc_sys_fail(err, errno, "unlink old", name);
    return 0;
}

static int too_big(uint64_t limit, const char *name, struct ota_err *err)
{
    return ota_err_set(err, EFBIG,
                       "package expands beyond its signed installed_size (%llu bytes) at entry "
                       "'%s'",
                       (unsigned long long)limit, name);
}

/* Streams the entry's data into a new file, then mode, times, fsync.
 * *left: file bytes the package may still write (its installed_size). */
static int extract_file(struct archive *a, struct archive_entry *e, int dirfd, const char *leaf,
                        const char *name, char *buf, struct budget *left, struct ota_err *err)
{
    uint64_t pos = 0, kick = 0;
    int fd;
    int r = 0;
    int tries;

    for (tries = 0;; tries++) {
        fd = openat(dirfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST || tries > 0)
            break;
        r = unlink_leaf(dirfd, leaf, name, err);
        if (r < 0)
            return r;
    }
    if (fd < 0)
        return ota_arc_sys_fail(err, errno, "create", name);

    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, BLOCK_SIZE);

        if (n < 0) {
            r = ota_err_set(err, arc_code(a), "entry '%s': %s", name,
                            archive_error_string(a) ? archive_error_string(a) : "read error");
            goto out;
        }
        if (n == 0)
            break;
        if ((uint64_t)n > left->left) {
            r = too_big(left->limit, name, err);
            goto out;
        }
        left->left -= (uint64_t)n;
        r = ota_fs_write_full(fd, buf, (size_t)n);
        if (r < 0) {
            r = ota_arc_sys_fail(err, -r, "write", name);
            goto out;
        }
        /* The fsync below then finds the file mostly written out. */
        pos += (uint64_t)n;
        ota_fs_writeback_kick(fd, pos, &kick);
    }
    if (fchmod(fd, archive_entry_perm(e) & 0777) < 0) {
        r = ota_arc_sys_fail(err, errno, "chmod", name);
        goto out;
    }
    if (archive_entry_mtime_is_set(e)) {
        struct timespec ts[2];
        ts[0].tv_sec = archive_entry_mtime(e);
        ts[0].tv_nsec = archive_entry_mtime_nsec(e);
        ts[1] = ts[0];
        (void)futimens(fd, ts); /* cosmetic: a failure changes nothing that matters */
    }
    if (fsync(fd) < 0) {
        r = ota_arc_sys_fail(err, errno, "fsync", name);
        goto out;
    }
out:
    if (close(fd) < 0 && r == 0)
        r = ota_arc_sys_fail(err, errno, "close", name);
    return r;
}

static int extract_hardlink(int root, const char *target, int dirfd, const char *leaf,
                            const char *name, struct ota_err *err)
{
    char trel[PATH_MAX];
    const char *tleaf;
    struct stat st;
    int tfd = -1;
    int r;
    int tries;

    r = clean_path(target, trel, sizeof(trel), NULL);
    if (r < 0)
        return ota_err_set(err, -r, "unsafe entry '%s': hard link target '%s'", name, target);
    if (trel[0] == '\0')
        return ota_err_set(err, EPERM, "unsafe entry '%s': hard link to the slot itself", name);
    r = open_beneath(root, trel, 0, NULL, name, &tfd, &tleaf, err);
    if (r < 0)
        return r;
    if (fstatat(tfd, tleaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        r = ota_err_set(err, errno == ENOENT ? EINVAL : errno,
                        "entry '%s': hard link target '%s': %s", name, target, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = ota_err_set(err, EPERM, "unsafe entry '%s': hard link to non-file '%s'", name, target);
        goto out;
    }
    for (tries = 0;; tries++) {
        if (linkat(tfd, tleaf, dirfd, leaf, 0) == 0)
            break;
        if (errno != EEXIST || tries > 0) {
            r = ota_arc_sys_fail(err, errno, "link", name);
            goto out;
        }
        r = unlink_leaf(dirfd, leaf, name, err);
        if (r < 0)
            goto out;
    }
out:
    close(tfd);
    return r;
}

static int extract_symlink(const char *target, int dirfd, const char *leaf, const char *name,
                           struct ota_err *err)
{
    int tries;
    int r;

    for (tries = 0;; tries++) {
        if (symlinkat(target, dirfd, leaf) == 0)
            return 0;
        if (errno != EEXIST || tries > 0)
            return ota_arc_sys_fail(err, errno, "symlink", name);
        r = unlink_leaf(dirfd, leaf, name, err);
        if (r < 0)
            return r;
    }
}

static int extract_entry(struct archive *a, struct archive_entry *e, int root,
                         struct dir_list *dirs, char *buf, struct budget *left, struct ota_err *err)
{
    char rel[PATH_MAX];
    const char *name = archive_entry_pathname(e);
    const char *hl = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    const char *leaf;
    int dfd = -1;
    int r;

    if (!name)
        name = archive_entry_pathname_utf8(e);
    if (!name)
        return ota_err_set(err, EINVAL, "entry without a readable name");
    r = clean_path(name, rel, sizeof(rel), err);
    if (r < 0)
        return r;

    /* Refuse what may not exist in a slot before touching the disk; a file
     * that says it is larger than what is left, before writing any of it. */
    if (!hl && type == AE_IFREG && archive_entry_size(e) > 0 &&
        (uint64_t)archive_entry_size(e) > left->left)
        return too_big(left->limit, name, err);
    if (!hl && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return ota_err_set(err, EPERM, "unsafe entry '%s': device node, FIFO or socket", name);
    if (!hl && type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        r = check_symlink(name, rel, target ? target : "", err);
        if (r < 0)
            return r;
    }

    if (rel[0] == '\0') {
        if (type == AE_IFDIR && !hl)
            return 0; /* "./": dest_dir itself, made by the caller */
        return ota_err_set(err, EINVAL, "entry '%s' names the slot itself", name);
    }

    if (type == AE_IFDIR && !hl) {
        r = open_beneath(root, rel, 1, dirs, name, &dfd, NULL, err);
        if (r < 0)
            return r;
        close(dfd);
        r = dirs_add(dirs, rel, archive_entry_perm(e) & 0777);
        if (r < 0)
            return ota_err_set(err, ENOMEM, "out of memory");
        return 0;
    }

    r = open_beneath(root, rel, 0, dirs, name, &dfd, &leaf, err);
    if (r < 0)
        return r;
    if (hl)
        r = extract_hardlink(root, hl, dfd, leaf, name, err);
    else if (type == AE_IFLNK)
        r = extract_symlink(archive_entry_symlink(e), dfd, leaf, name, err);
    else
        r = extract_file(a, e, dfd, leaf, name, buf, left, err);
    close(dfd);
    return r;
}

/* Applies the final directory modes (deepest first, so a read-only parent
 * never blocks its children) and makes every directory durable. */
static int finish_dirs(int root, struct dir_list *dirs, struct ota_err *err)
{
    size_t i;

    for (i = dirs->n; i-- > 0;) {
        int fd;
        int r = open_beneath(root, dirs->v[i].path, 1, NULL, dirs->v[i].path, &fd, NULL, err);
        if (r < 0)
            return r;
        if (fchmod(fd, dirs->v[i].mode) < 0) {
            r = ota_arc_sys_fail(err, errno, "chmod", dirs->v[i].path);
        } else if (fsync(fd) < 0) {
            r = ota_arc_sys_fail(err, errno, "fsync", dirs->v[i].path);
        }
        close(fd);
        if (r < 0)
            return r;
    }
    if (fsync(root) < 0)
        return ota_arc_sys_fail(err, errno, "fsync", "slot directory");
    return 0;
}

static int dir_is_empty(int root, const char *dest_dir, struct ota_err *err)
{
    int fd = dup(root);
    DIR *d;
    struct dirent *de;
    int r = 0;

    if (fd < 0)
        return ota_err_set(err, errno, "dup: %s", strerror(errno));
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return ota_err_set(err, errno, "opendir %s: %s", dest_dir, strerror(errno));
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            r = ota_err_set(err, ENOTEMPTY, "%s is not empty", dest_dir);
            break;
        }
    }
    closedir(d);
    return r;
}

int ota_archive_extract(const char *payload, enum ota_format format, const char *dest_dir,
                        uint64_t max_bytes, struct ota_err *err)
{
    struct budget left = {max_bytes, max_bytes};
    struct dir_list dirs = {0};
    int first = 1;
    struct pkg *p = NULL;
    char *buf = NULL;
    int root;
    int r;

    root = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return ota_err_set(err, errno, "open %s: %s", dest_dir, strerror(errno));
    r = dir_is_empty(root, dest_dir, err);
    if (r < 0)
        goto out;
    buf = malloc(BLOCK_SIZE);
    if (!buf) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    r = pkg_open(payload, format, &p, err);
    if (r < 0)
        goto out;

    for (;;) {
        struct archive_entry *e;
        int ar = archive_read_next_header(p->a, &e);

        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            r = ota_arc_fail(err, p->a, payload);
            goto out;
        }
        if (first && (r = check_filter(p->a, p->filter, payload, err)) < 0)
            goto out;
        first = 0;
        r = extract_entry(p->a, e, root, &dirs, buf, &left, err);
        if (r < 0)
            goto out;
    }
    r = finish_dirs(root, &dirs, err);
out:
    pkg_close(p);
    free(buf);
    dirs_free(&dirs);
    close(root);
    return r;
}

int ota_archive_installed_size(const char *payload, enum ota_format format, uint64_t *ret,
                               struct ota_err *err)
{
    struct pkg *p = NULL;
    uint64_t total = 0;
    int first = 1, r;

    r = pkg_open(payload, format, &p, err);
    if (r < 0)
        return r;
    for (;;) {
        struct archive_entry *e;
        int ar = archive_read_next_header(p->a, &e);

        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            r = ota_arc_fail(err, p->a, payload);
            goto out;
        }
        if (first && (r = check_filter(p->a, p->filter, payload, err)) < 0)
            goto out;
        first = 0;
        /* A hard link takes no room of its own. */
        if (archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
            archive_entry_size(e) > 0)
            total += (uint64_t)archive_entry_size(e);
        if (archive_read_data_skip(p->a) < ARCHIVE_WARN) {
            r = ota_arc_fail(err, p->a, payload);
            goto out;
        }
    }
    *ret = total;
out:
    pkg_close(p);
    return r;
}
