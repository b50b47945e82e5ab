/* The power model's rebuild (contract: otasim/power.h, which says what each
 * crash model allows).
 *
 * Durability is decided backwards over the journal: walking from the end, a
 * successful fsync adds its inode to the synced set and a sync makes all that
 * precedes it durable; a data record is durable when its inode is in the set,
 * a directory change when its directory is (a rename: both). Per inode the
 * durable records are thus a prefix, so undoing the rest newest first gives
 * back exactly the state of the last sync point.
 *
 * Names move while directory changes are undone, so each undo looks its
 * directory up by inode (the recorded path first, a walk of the tree when it
 * no longer holds that directory) and checks by inode that the change took
 * effect before it reverses it.
 *
 * reorder marks some of the records that are not durable as kept (per file a
 * prefix of its data records, globally a prefix of the directory changes),
 * so what is undone is still, per inode and for the names, a suffix: the
 * same newest-first undo gives exactly the chosen state. torn reads the
 * persisting sectors of each file's last write from the tree before the undo
 * and writes them back after it. */
#include "otasim/power.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "otasim/inomap.h"

/* ---- rebuild state ----------------------------------------------------- */

#define SECTOR 512u

/* torn: what persists of one write, read from the tree before the undo. */
struct tear {
    const struct otasim_rec *r;
    uint64_t off, len;   /* the bytes that were readable of the write */
    unsigned char *data; /* [len] */
    unsigned char *keep; /* per sector of [off, off+len), first = off / SECTOR */
};

struct pw {
    const char *root;
    char sim[PATH_MAX];
    char stash[PATH_MAX];
    int jfd;
    const struct otasim_journal *j;
    unsigned char *durable;
    unsigned char *keep; /* durable, or kept by the crash model */
    struct otasim_crash cm;
    uint64_t rnd; /* the model's seeded generator */
    struct tear *tears;
    size_t n_tears, cap_tears;
    struct otasim_imap map; /* every inode of the tree and the stash */
    int map_fresh;
    char *img;
    size_t img_cap;
    struct otasim_rebuild_stats st;
    struct ota_err *err;
};

/* Walks dir (path p, len n in buf of PATH_MAX) into the map. .sim is skipped
 * but for its stash. */
static int walk(struct pw *w, char *buf, size_t n)
{
    DIR *d = opendir(buf);
    struct dirent *de;
    struct stat st;
    size_t l;
    int r = 0;

    if (!d)
        return 0; /* gone or unreadable: nothing of ours in it */
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        l = strlen(de->d_name);
        if (n + 1 + l >= PATH_MAX)
            continue;
        buf[n] = '/';
        memcpy(buf + n + 1, de->d_name, l + 1);
        if (strcmp(buf, w->sim) == 0) {
            if (lstat(w->stash, &st) == 0 && S_ISDIR(st.st_mode)) {
                snprintf(buf + n, PATH_MAX - n, "/.sim/stash");
                r = walk(w, buf, strlen(buf));
            }
        } else if (lstat(buf, &st) == 0) {
            r = otasim_imap_put(&w->map, (uint64_t)st.st_ino, buf);
            if (r == 0 && S_ISDIR(st.st_mode))
                r = walk(w, buf, n + 1 + l);
        }
        buf[n] = '\0';
        if (r < 0)
            break;
    }
    closedir(d);
    return r;
}

/* The current name of inode ino, the map (re)built when stale. */
static const char *find_ino(struct pw *w, uint64_t ino)
{
    char buf[PATH_MAX];
    struct stat st;

    if (!w->map_fresh) {
        otasim_imap_clear(&w->map);
        snprintf(buf, sizeof(buf), "%s", w->root);
        if (lstat(buf, &st) == 0)
            ota_ignore(otasim_imap_put(&w->map, (uint64_t)st.st_ino, buf));
        if (walk(w, buf, strlen(buf)) < 0)
            return NULL;
        w->map_fresh = 1;
    }
    return otasim_imap_get(&w->map, ino);
}

/* ---- data undo ---------------------------------------------------------- */

static int read_image(struct pw *w, const struct otasim_rec *r)
{
    size_t got = 0;

    if (r->img_len > w->img_cap) {
        char *p = realloc(w->img, r->img_len);
        if (!p)
            return ota_err_set(w->err, ENOMEM, "out of memory for a %llu-byte before-image",
                               (unsigned long long)r->img_len);
        w->img = p;
        w->img_cap = r->img_len;
    }
    while (got < r->img_len) {
        ssize_t n = pread(w->jfd, w->img + got, r->img_len - got, (off_t)(r->img_off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ota_err_set(w->err, n < 0 ? errno : EIO,
                               "journal: before-image of call %llu: %s", (unsigned long long)r->seq,
                               n < 0 ? strerror(errno) : "short");
        got += (size_t)n;
    }
    return 0;
}

static int open_w(const char *p, mode_t *ret_chmod)
{
    struct stat st;
    int fd = open(p, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);

    *ret_chmod = 0;
    if (fd >= 0 || errno != EACCES || lstat(p, &st) < 0)
        return fd;
    if (chmod(p, (st.st_mode & 07777) | 0200) < 0)
        return -1;
    *ret_chmod = (st.st_mode & 07777) | 01000000; /* marks "restore" */
    return open(p, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
}

/* Gives inode r->ino (file, directory) back the attributes r changed. */
static int undo_attr(struct pw *w, const struct otasim_rec *r)
{
    const char *p = r->path;
    struct timespec ts[2];
    struct stat st;

    if (lstat(p, &st) < 0 || (uint64_t)st.st_ino != r->ino) {
        p = find_ino(w, r->ino);
        if (!p || lstat(p, &st) < 0)
            return 0; /* no name left */
    }
    if ((r->flags & OTASIM_REC_ATTR_MODE) && !S_ISLNK(st.st_mode) && chmod(p, r->mode) < 0)
        return ota_err_set(w->err, errno, "undo of attr %s: chmod: %s", p, strerror(errno));
    if ((r->flags & OTASIM_REC_ATTR_OWNER) &&
        lchown(p, (uid_t)(r->old_size >> 32), (gid_t)(r->old_size & 0xffffffffu)) < 0 &&
        errno != EPERM)
        return ota_err_set(w->err, errno, "undo of attr %s: chown: %s", p, strerror(errno));
    if (r->flags & OTASIM_REC_ATTR_TIMES) {
        ts[0].tv_sec = (time_t)(r->off / 1000000000ULL);
        ts[0].tv_nsec = (long)(r->off % 1000000000ULL);
        ts[1].tv_sec = (time_t)(r->len / 1000000000ULL);
        ts[1].tv_nsec = (long)(r->len % 1000000000ULL);
        if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) < 0)
            return ota_err_set(w->err, errno, "undo of attr %s: utimensat: %s", p, strerror(errno));
    }
    w->st.writes_undone++;
    return 0;
}

/* Puts file r->ino back as it was before r. */
static int undo_data(struct pw *w, const struct otasim_rec *r)
{
    const char *p = r->path;
    struct stat st;
    mode_t chm;
    int fd, rc = 0;

    if (!r->ino)
        return 0;
    if (r->op == OTASIM_OP_ATTR)
        return undo_attr(w, r);
    if (lstat(p, &st) < 0 || (uint64_t)st.st_ino != r->ino || !S_ISREG(st.st_mode)) {
        p = find_ino(w, r->ino);
        if (!p)
            return 0; /* no name left: nothing can be read back anyway */
    }
    fd = open_w(p, &chm);
    if (fd < 0)
        return ota_err_set(w->err, errno, "undo of %s %s: open %s: %s", otasim_op_names[r->op],
                           r->path, p, strerror(errno));
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != r->ino)
        goto cleanup;
    if (r->img_len) {
        rc = read_image(w, r);
        if (rc < 0)
            goto cleanup;
        if (pwrite(fd, w->img, r->img_len, (off_t)r->off) != (ssize_t)r->img_len) {
            rc = ota_err_set(w->err, errno ? errno : EIO, "undo of %s %s: write: %s",
                             otasim_op_names[r->op], p, strerror(errno));
            goto cleanup;
        }
    }
    if (ftruncate(fd, (off_t)r->old_size) < 0) {
        rc = ota_err_set(w->err, errno, "undo of %s %s: truncate: %s", otasim_op_names[r->op], p,
                         strerror(errno));
        goto cleanup;
    }
    w->st.writes_undone++;
    w->st.bytes_restored += r->img_len;
cleanup:
    close(fd);
    if (chm)
        ota_ignore(chmod(p, chm & 07777));
    return rc;
}

/* ---- directory undo ---------------------------------------------------- */

/* Where path's name is now: its recorded directory if that still is inode
 * dir_ino, else wherever that inode went, else the recorded path if its
 * directory exists. NULL: the directory is gone (so is the name). */
static const char *where(struct pw *w, const char *path, uint64_t dir_ino, char *out)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    const char *moved;
    struct stat st;
    size_t n;

    if (!slash || (size_t)(slash - path) >= sizeof(dir))
        return NULL;
    n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
        (!dir_ino || (uint64_t)st.st_ino == dir_ino)) {
        snprintf(out, PATH_MAX, "%s", path);
        return out;
    }
    moved = dir_ino ? find_ino(w, dir_ino) : NULL;
    if (moved && snprintf(out, PATH_MAX, "%s%s", moved, slash) < PATH_MAX)
        return out;
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(out, PATH_MAX, "%s", path);
        return out;
    }
    return NULL;
}

static void stash_name(const struct pw *w, const struct otasim_rec *r, char *out)
{
    snprintf(out, PATH_MAX, "%s/%llu.%u", w->stash, (unsigned long long)r->seq, r->pid);
}

/* Puts back the name that r destroyed at p: the stashed file, the symlink,
 * or the empty directory. */
static int restore_victim(struct pw *w, const struct otasim_rec *r, const char *p)
{
    char s[PATH_MAX];

    if (r->flags & OTASIM_REC_VICTIM_FILE) {
        stash_name(w, r, s);
        if (rename(s, p) < 0 && errno != ENOENT)
            return ota_err_set(w->err, errno, "undo of %s %s: restore %s: %s",
                               otasim_op_names[r->op], r->path, p, strerror(errno));
    } else if (r->flags & OTASIM_REC_VICTIM_LINK) {
        if (symlink(r->text, p) < 0)
            return ota_err_set(w->err, errno, "undo of %s %s: symlink %s: %s",
                               otasim_op_names[r->op], r->path, p, strerror(errno));
    } else if (r->flags & OTASIM_REC_VICTIM_DIR) {
        if (mkdir(p, r->mode) < 0)
            return ota_err_set(w->err, errno, "undo of %s %s: mkdir %s: %s", otasim_op_names[r->op],
                               r->path, p, strerror(errno));
        w->map_fresh = 0;
    }
    return 0;
}

static int undo_rename(struct pw *w, const struct otasim_rec *r)
{
    char p[PATH_MAX], p2[PATH_MAX];
    struct stat st, st2;
    int rc;

    if (!where(w, r->path, r->dir_ino, p) || !where(w, r->path2, r->dir2_ino, p2))
        return 0;
    if (lstat(p2, &st2) < 0 || (uint64_t)st2.st_ino != r->ino)
        return 0; /* did not happen, or a later durable change owns the name */
    if (r->flags & OTASIM_REC_EXCHANGE) {
        if (lstat(p, &st) < 0 || (uint64_t)st.st_ino != r->victim_ino)
            return 0;
        if (renameat2(AT_FDCWD, p2, AT_FDCWD, p, RENAME_EXCHANGE) < 0)
            return ota_err_set(w->err, errno, "undo of rename %s: exchange back: %s", r->path,
                               strerror(errno));
    } else {
        if (lstat(p, &st) == 0)
            return 0; /* the old name was taken again, durably */
        if (rename(p2, p) < 0)
            return ota_err_set(w->err, errno, "undo of rename %s -> %s: %s", r->path, r->path2,
                               strerror(errno));
        rc = restore_victim(w, r, p2);
        if (rc < 0)
            return rc;
    }
    if (r->is_dir)
        w->map_fresh = 0;
    w->st.dirops_undone++;
    return 0;
}

static int undo_dirop(struct pw *w, const struct otasim_rec *r)
{
    char p[PATH_MAX], t[PATH_MAX];
    struct stat st;
    ssize_t n;
    int rc;

    if (r->op == OTASIM_OP_RENAME)
        return undo_rename(w, r);
    if (!where(w, r->op == OTASIM_OP_LINK ? r->path2 : r->path,
               r->op == OTASIM_OP_LINK ? r->dir2_ino : r->dir_ino, p))
        return 0;
    if (lstat(p, &st) < 0) {
        if (errno != ENOENT)
            return ota_err_set(w->err, errno, "undo of %s %s: %s", otasim_op_names[r->op], p,
                               strerror(errno));
        /* The name is free: only the removals have something to put back. */
        if (r->op == OTASIM_OP_RMDIR) {
            if (mkdir(p, r->mode) < 0)
                return ota_err_set(w->err, errno, "undo of rmdir %s: %s", p, strerror(errno));
            w->map_fresh = 0;
        } else if (r->op == OTASIM_OP_UNLINK) {
            if (!(r->flags & (OTASIM_REC_VICTIM_FILE | OTASIM_REC_VICTIM_LINK)))
                return 0;
            rc = restore_victim(w, r, p);
            if (rc < 0)
                return rc;
        } else {
            return 0;
        }
        w->st.dirops_undone++;
        return 0;
    }
    switch (r->op) {
    case OTASIM_OP_CREATE:
        if (S_ISDIR(st.st_mode) || (r->ino && (uint64_t)st.st_ino != r->ino))
            return 0;
        break;
    case OTASIM_OP_LINK:
        if ((uint64_t)st.st_ino != r->ino)
            return 0;
        break;
    case OTASIM_OP_SYMLINK:
        if (!S_ISLNK(st.st_mode))
            return 0;
        if (r->ino && (uint64_t)st.st_ino != r->ino)
            return 0;
        if (!r->ino) {
            n = readlink(p, t, sizeof(t) - 1);
            if (n < 0 || (t[n] = '\0', strcmp(t, r->path2) != 0))
                return 0;
        }
        break;
    case OTASIM_OP_MKDIR:
        if (!S_ISDIR(st.st_mode) || (r->ino && (uint64_t)st.st_ino != r->ino))
            return 0;
        rc = ota_fs_remove_tree(p, w->err);
        if (rc < 0)
            return rc;
        w->map_fresh = 0;
        w->st.dirops_undone++;
        return 0;
    default:
        return 0; /* UNLINK/RMDIR whose name is there: it did not happen */
    }
    if (unlink(p) < 0)
        return ota_err_set(w->err, errno, "undo of %s %s: unlink: %s", otasim_op_names[r->op], p,
                           strerror(errno));
    w->st.dirops_undone++;
    return 0;
}

/* ---- the model ---------------------------------------------------------- */

const char *const otasim_crash_model_names[OTASIM_CRASH_MODEL_MAX] = {"minimal", "reorder", "torn"};

int otasim_crash_model_parse(const char *text, enum otasim_crash_model *ret, struct ota_err *err)
{
    for (int i = 0; i < OTASIM_CRASH_MODEL_MAX; i++)
        if (text && strcmp(text, otasim_crash_model_names[i]) == 0) {
            *ret = (enum otasim_crash_model)i;
            return 0;
        }
    return ota_err_set(err, EINVAL, "unknown crash model '%s' (minimal, reorder or torn)",
                       text ? text : "");
}

/* splitmix64: small, and the same sequence for a seed on every machine. */
static uint64_t rnd_next(struct pw *w)
{
    uint64_t z = (w->rnd += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(struct pw *w, uint64_t n)
{
    return n ? rnd_next(w) % n : 0;
}

/* The records of one inode, durable through an fsync of it: its data and,
 * like ext4's inode, its attributes. */
static int is_data(enum otasim_op op)
{
    return op == OTASIM_OP_WRITE || op == OTASIM_OP_TRUNC || op == OTASIM_OP_ATTR;
}

static int is_dirop(enum otasim_op op)
{
    return op == OTASIM_OP_CREATE || op == OTASIM_OP_RENAME || op == OTASIM_OP_LINK ||
           op == OTASIM_OP_SYMLINK || op == OTASIM_OP_UNLINK || op == OTASIM_OP_MKDIR ||
           op == OTASIM_OP_RMDIR;
}

/* 1 if r made no change to undo: it failed (the real call or by injection). */
static int failed_call(const struct otasim_rec *r)
{
    return r->done && r->result < 0;
}

#define SYNCED   1u /* a later fsync of the inode succeeded */
#define POISONED 2u /* a later fsync of it failed with EIO, nothing synced it since */

/* Whether a change covered by inode k's state (all: a later sync) is durable.
 * Linux drops the dirty pages whose writeback failed and a later fsync
 * returns 0 (nothing left to write): what an fsync EIO covered stays lost,
 * whatever syncs come after it. */
static int covered(const struct otasim_icount *st, uint64_t k, int all)
{
    uint64_t v = otasim_icount_get(st, k);

    return !(v & POISONED) && (all || (v & SYNCED));
}

static int mark_durable(struct pw *w)
{
    const struct otasim_journal *j = w->j;
    struct otasim_icount st = {0};
    uint64_t *v;
    int all = 0;
    size_t i, k;

    for (i = j->n; i-- > 0;) {
        const struct otasim_rec *r = &j->v[i];
        int d = 0;
        if (r->op == OTASIM_OP_FSYNC && r->done && r->result == -EIO) {
            if (!(v = otasim_icount_slot(&st, r->ino)))
                goto oom;
            *v = POISONED;
            continue;
        }
        if (r->op >= OTASIM_OP_STATE || failed_call(r))
            continue;
        switch (r->op) {
        case OTASIM_OP_SYNC:
            all |= r->done;
            /* earlier than a failed fsync: it wrote those pages */
            for (k = 0; r->done && k < st.cap; k++)
                st.n[k] &= ~(uint64_t)POISONED;
            continue;
        case OTASIM_OP_FSYNC:
            if (!r->done)
                continue;
            if (!(v = otasim_icount_slot(&st, r->ino)))
                goto oom;
            *v = SYNCED;
            continue;
        case OTASIM_OP_WRITE:
        case OTASIM_OP_TRUNC:
        case OTASIM_OP_ATTR:
            d = covered(&st, r->ino, all);
            break;
        case OTASIM_OP_RENAME:
            d = covered(&st, r->dir_ino, all) && covered(&st, r->dir2_ino, all);
            break;
        case OTASIM_OP_LINK:
            d = covered(&st, r->dir2_ino, all);
            break;
        default:
            d = covered(&st, r->dir_ino, all);
        }
        w->durable[i] = (unsigned char)d;
        if (w->durable[i])
            w->st.durable++;
    }
    otasim_icount_free(&st);
    return 0;
oom:
    otasim_icount_free(&st);
    return ota_err_set(w->err, ENOMEM, "out of memory");
}

/* 1 if record i may be undone: a change that is neither failed nor durable. */
static int undoable(const struct pw *w, size_t i)
{
    const struct otasim_rec *r = &w->j->v[i];

    return (is_data(r->op) || is_dirop(r->op)) && !failed_call(r) && !w->durable[i];
}

/* reorder: keeps a seeded prefix of the undoable directory changes and, per
 * inode, a seeded prefix of its undoable data records (otasim/power.h). */
static int choose_reorder(struct pw *w)
{
    const struct otasim_journal *j = w->j;
    struct otasim_icount left = {0};
    uint64_t m = 0, p;
    uint64_t *c;
    size_t i;
    int rc = 0;

    for (i = 0; i < j->n; i++) {
        if (!undoable(w, i))
            continue;
        if (is_dirop(j->v[i].op)) {
            m++;
        } else if (j->v[i].ino) {
            if (!(c = otasim_icount_slot(&left, j->v[i].ino)))
                goto oom;
            (*c)++;
        }
    }
    /* Half the cuts keep every directory change; the draws are made in
     * journal order so that a seed names one subset. */
    p = rnd_below(w, 2) ? m : rnd_below(w, m + 1);
    for (i = 0; i < j->n; i++) {
        const struct otasim_rec *r = &j->v[i];
        if (!undoable(w, i) || !is_data(r->op) || !r->ino)
            continue;
        if (!(c = otasim_icount_slot(&left, r->ino)))
            goto oom;
        if (!(*c & (1ULL << 63))) {
            uint64_t n = *c, how = rnd_below(w, 3);
            *c = (1ULL << 63) | (how == 0 ? 0 : how == 1 ? n : rnd_below(w, n + 1));
        }
        if (*c & ~(1ULL << 63)) {
            (*c)--;
            w->keep[i] = 1;
            w->st.kept_unsynced++;
        }
    }
    for (i = 0; i < j->n && p > 0; i++) {
        if (!undoable(w, i) || !is_dirop(j->v[i].op))
            continue;
        w->keep[i] = 1;
        w->st.kept_unsynced++;
        p--;
    }
    otasim_icount_free(&left);
    return rc;
oom:
    otasim_icount_free(&left);
    return ota_err_set(w->err, ENOMEM, "out of memory");
}

/* The name of inode r->ino now: r's path if it still is that inode. */
static const char *name_of(struct pw *w, const struct otasim_rec *r)
{
    struct stat st;

    if (lstat(r->path, &st) == 0 && (uint64_t)st.st_ino == r->ino && S_ISREG(st.st_mode))
        return r->path;
    return find_ino(w, r->ino);
}

/* torn: reads the bytes of write r and picks the sectors that persist. */
static int take_tear(struct pw *w, const struct otasim_rec *r)
{
    struct tear t = {r, r->off, r->len, NULL, NULL};
    uint64_t first, nsec, k, on = 0;
    const char *p = name_of(w, r);
    ssize_t got;
    int fd;

    if (!p || r->len == 0 || r->len > (1ULL << 30))
        return 0;
    fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0; /* unreadable: nothing of it can persist either */
    t.data = malloc(r->len);
    if (!t.data) {
        close(fd);
        return ota_err_set(w->err, ENOMEM, "out of memory for a torn write");
    }
    got = pread(fd, t.data, r->len, (off_t)r->off);
    close(fd);
    if (got <= 0) {
        free(t.data);
        return 0;
    }
    t.len = (uint64_t)got;
    first = t.off / SECTOR;
    nsec = (t.off + t.len - 1) / SECTOR - first + 1;
    t.keep = calloc(nsec, 1);
    if (!t.keep) {
        free(t.data);
        return ota_err_set(w->err, ENOMEM, "out of memory for a torn write");
    }
    if (nsec == 1) {
        t.keep[0] = (unsigned char)rnd_below(w, 2); /* one sector: atomic */
    } else {
        /* Torn for sure (a whole or no write is minimal's): the first sectors
         * (written back in order), the last ones, or any mix. */
        uint64_t shape = rnd_below(w, 3), cut = 1 + rnd_below(w, nsec - 1);
        for (k = 0; k < nsec; k++) {
            t.keep[k] = (unsigned char)(shape == 0   ? k < cut
                                        : shape == 1 ? k >= cut
                                                     : rnd_below(w, 2));
            on += t.keep[k];
        }
        if (on == 0 || on == nsec)
            t.keep[rnd_below(w, nsec)] ^= 1;
    }
    if (w->n_tears == w->cap_tears) {
        size_t cap = w->cap_tears ? w->cap_tears * 2 : 8;
        struct tear *n = realloc(w->tears, cap * sizeof(*n));
        if (!n) {
            free(t.data);
            free(t.keep);
            return ota_err_set(w->err, ENOMEM, "out of memory");
        }
        w->tears = n;
        w->cap_tears = cap;
    }
    w->tears[w->n_tears++] = t;
    return 0;
}

/* torn: the last undoable data record of each inode, if it is a write that
 * completed, persists partly. */
static int choose_torn(struct pw *w)
{
    const struct otasim_journal *j = w->j;
    struct otasim_iset seen = {0};
    size_t i;
    int rc = 0;

    for (i = j->n; i-- > 0 && rc == 0;) {
        const struct otasim_rec *r = &j->v[i];
        if (!undoable(w, i) || !is_data(r->op) || !r->ino || otasim_iset_has(&seen, r->ino))
            continue;
        if ((rc = otasim_iset_add(&seen, r->ino)) < 0) {
            rc = ota_err_set(w->err, ENOMEM, "out of memory");
            break;
        }
        if (r->op == OTASIM_OP_WRITE && r->done)
            rc = take_tear(w, r);
    }
    free(seen.v);
    return rc;
}

/* torn: writes the persisting sectors back over the rebuilt tree. */
static int apply_tears(struct pw *w)
{
    w->map_fresh = 0;
    for (size_t i = 0; i < w->n_tears; i++) {
        const struct tear *t = &w->tears[i];
        uint64_t first = t->off / SECTOR, end = t->off + t->len, s;
        const char *p = name_of(w, t->r);
        mode_t chm;
        int fd, n = 0;

        if (!p)
            continue; /* the file's name did not survive: neither did its data */
        fd = open_w(p, &chm);
        if (fd < 0)
            return ota_err_set(w->err, errno, "torn write to %s: open: %s", p, strerror(errno));
        for (s = first; s * SECTOR < end; s++) {
            uint64_t a = s * SECTOR < t->off ? t->off : s * SECTOR;
            uint64_t b = (s + 1) * SECTOR > end ? end : (s + 1) * SECTOR;
            if (!t->keep[s - first])
                continue;
            if (pwrite(fd, t->data + (a - t->off), b - a, (off_t)a) != (ssize_t)(b - a)) {
                int e = errno ? errno : EIO;
                close(fd);
                return ota_err_set(w->err, e, "torn write to %s: %s", p, strerror(e));
            }
            n++;
        }
        close(fd);
        if (chm)
            ota_ignore(chmod(p, chm & 07777));
        w->st.torn_writes += n > 0;
        w->st.torn_sectors += (uint64_t)n;
    }
    return 0;
}

int otasim_power_rebuild_model(const char *root, const char *journal_path,
                               const struct otasim_crash *cm, struct otasim_rebuild_stats *ret,
                               struct ota_err *err)
{
    struct otasim_journal *j = NULL;
    struct pw w;
    size_t i;
    int rc;

    memset(&w, 0, sizeof(w));
    w.root = root;
    w.err = err;
    w.jfd = -1;
    if (cm)
        w.cm = *cm;
    if (w.cm.model >= OTASIM_CRASH_MODEL_MAX)
        return ota_err_set(err, EINVAL, "bad crash model %d", (int)w.cm.model);
    w.rnd = w.cm.seed;
    snprintf(w.sim, sizeof(w.sim), "%s/.sim", root);
    snprintf(w.stash, sizeof(w.stash), "%s/.sim/stash", root);
    rc = otasim_journal_load(journal_path, &j, err);
    if (rc < 0)
        goto cleanup;
    w.j = j;
    w.jfd = open(journal_path, O_RDONLY | O_CLOEXEC);
    w.durable = calloc(j->n ? j->n : 1, 1);
    w.keep = calloc(j->n ? j->n : 1, 1);
    if (w.jfd < 0 || !w.durable || !w.keep) {
        rc = ota_err_set(err, w.jfd < 0 ? errno : ENOMEM, "journal %s: %s", journal_path,
                         strerror(w.jfd < 0 ? errno : ENOMEM));
        goto cleanup;
    }
    rc = mark_durable(&w);
    if (rc < 0)
        goto cleanup;
    memcpy(w.keep, w.durable, j->n);
    if (w.cm.model == OTASIM_CRASH_REORDER)
        rc = choose_reorder(&w);
    else if (w.cm.model == OTASIM_CRASH_TORN)
        rc = choose_torn(&w);
    if (rc < 0)
        goto cleanup;
    /* Data first, while every inode still has the names the walk finds. */
    for (i = j->n; i-- > 0;) {
        if (!is_data(j->v[i].op) || w.keep[i] || failed_call(&j->v[i]))
            continue;
        rc = undo_data(&w, &j->v[i]);
        if (rc < 0)
            goto cleanup;
    }
    for (i = j->n; i-- > 0;) {
        if (!is_dirop(j->v[i].op) || w.keep[i] || failed_call(&j->v[i]))
            continue;
        rc = undo_dirop(&w, &j->v[i]);
        if (rc < 0)
            goto cleanup;
    }
    if (w.n_tears && (rc = apply_tears(&w)) < 0)
        goto cleanup;
    rc = otasim_power_drop_stash(root, err);
    if (rc < 0)
        goto cleanup;
    if (ret)
        *ret = w.st;
cleanup:
    if (w.jfd >= 0)
        close(w.jfd);
    for (i = 0; i < w.n_tears; i++) {
        free(w.tears[i].data);
        free(w.tears[i].keep);
    }
    free(w.tears);
    free(w.durable);
    free(w.keep);
    free(w.img);
    otasim_imap_clear(&w.map);
    otasim_journal_free(j);
    return rc;
}

int otasim_power_rebuild(const char *root, const char *journal_path,
                         struct otasim_rebuild_stats *ret, struct ota_err *err)
{
    return otasim_power_rebuild_model(root, journal_path, NULL, ret, err);
}

int otasim_power_drop_stash(const char *root, struct ota_err *err)
{
    char p[PATH_MAX];

    if (snprintf(p, sizeof(p), "%s/.sim/stash", root) >= (int)sizeof(p))
        return ota_err_set(err, ENAMETOOLONG, "%s: path too long", root);
    return ota_fs_remove_tree(p, err);
}
