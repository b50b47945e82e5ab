/* Block-level crash states: one working copy of a disk moved through a
 * dm-log-writes log (otasim/blklog.h, docs/blocks.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otasim/blklog.h"

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const uint8_t *p = buf;

    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;

    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? -errno : -EIO; /* a short file here is an error */
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

static int write_zeroes(int fd, uint64_t off, uint64_t len)
{
    uint8_t *z = calloc(1, OTASIM_BLK_CHUNK);
    int rc = z ? 0 : -ENOMEM;

    while (rc == 0 && len) {
        size_t k = len < OTASIM_BLK_CHUNK ? (size_t)len : OTASIM_BLK_CHUNK;
        rc = pwrite_all(fd, z, k, off);
        off += k;
        len -= k;
    }
    free(z);
    return rc;
}

/* Copies len bytes from in at off to out at out_off through the kernel. */
static int copy_range_to(int in, uint64_t off, int out, uint64_t out_off, uint64_t len)
{
    loff_t ri = (loff_t)off, ro = (loff_t)out_off;

    while (len) {
        ssize_t n = copy_file_range(in, &ri, out, &ro, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP)) {
            size_t k = len < OTASIM_BLK_CHUNK ? (size_t)len : OTASIM_BLK_CHUNK;
            uint8_t *buf = malloc(k);
            int r = buf ? pread_all(in, buf, k, (uint64_t)ri) : -ENOMEM;
            if (r == 0)
                r = pwrite_all(out, buf, k, (uint64_t)ro);
            free(buf);
            if (r < 0)
                return r;
            n = (ssize_t)k;
            ri += n;
            ro += n;
        } else if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        len -= (uint64_t)n;
    }
    return 0;
}

static int copy_range(int in, int out, uint64_t off, uint64_t len)
{
    return copy_range_to(in, off, out, off, len);
}

static void mark(struct otasim_blkreplay *r, uint64_t off, uint64_t len)
{
    r->seq++;
    for (uint64_t c = off / OTASIM_BLK_CHUNK; len && c <= (off + len - 1) / OTASIM_BLK_CHUNK; c++) {
        r->dirty[c] = r->touched[c] = 1;
        r->gen[c] = r->seq;
    }
}

/* Whether the working copy already holds buf at off (a write that changes
 * nothing: the state after it shares the bytes of the state before). */
static int holds(struct otasim_blkreplay *r, const uint8_t *buf, uint64_t len, uint64_t off)
{
    uint8_t tmp[16384];

    while (len) {
        size_t k = len < sizeof(tmp) ? (size_t)len : sizeof(tmp);
        if (pread_all(r->work_fd, tmp, k, off) < 0 || memcmp(tmp, buf, k) != 0)
            return 0;
        buf += k;
        off += k;
        len -= k;
    }
    return 1;
}

static int undo_push(struct otasim_blkreplay *r, uint64_t off, uint64_t len, struct ota_err *err);

/* Writes entry i's effect at its place in the working copy; with save, what
 * it overwrites goes onto the undo stack first (offset, length, old bytes). */
static int apply(struct otasim_blkreplay *r, uint64_t i, int save, struct ota_err *err)
{
    const struct otasim_blk_entry *e = &r->log->e[i];
    uint64_t ss = r->log->sector_size, off = e->sector * ss, len = e->nr_sectors * ss;
    int rc;

    if (!otasim_blk_entry_is_data(e))
        return 0;
    if ((e->flags & OTASIM_BLK_DISCARD) && r->discard == OTASIM_BLK_DISCARD_KEEP)
        return 0;
    if (save && (rc = undo_push(r, off, len, err)) < 0)
        return rc;
    if (e->flags & OTASIM_BLK_DISCARD) {
        rc = fallocate(r->work_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                       (off_t)len) < 0
                 ? -errno
                 : 0;
        if (rc == -EOPNOTSUPP) /* no holes here: write the zeroes */
            rc = write_zeroes(r->work_fd, off, len);
    } else {
        if (!save && holds(r, r->log->map + e->data_off, len, off))
            return 0;
        rc = pwrite_all(r->work_fd, r->log->map + e->data_off, (size_t)len, off);
    }
    if (rc < 0)
        return ota_err_set(err, -rc, "entry %" PRIu64 " (sector %" PRIu64 "): %s", i, e->sector,
                           strerror(-rc));
    mark(r, off, len);
    return 0;
}

/* Creates (or empties) the working copy; never the base image itself. */
static int open_work(struct otasim_blkreplay *r, const struct stat *base_st, const char *base,
                     const char *work, struct ota_err *err)
{
    struct stat st;

    r->work_fd = open(work, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->work_fd < 0)
        return ota_err_set(err, errno, "cannot create %s: %s", work, strerror(errno));
    if (fstat(r->work_fd, &st) < 0)
        return ota_err_set(err, errno, "cannot stat %s: %s", work, strerror(errno));
    if (st.st_dev == base_st->st_dev && st.st_ino == base_st->st_ino)
        return ota_err_set(err, EINVAL, "%s is the base image %s: it would be overwritten", work,
                           base);
    if (ftruncate(r->work_fd, 0) < 0)
        return ota_err_set(err, errno, "cannot empty %s: %s", work, strerror(errno));
    return 0;
}

int otasim_blkreplay_init(struct otasim_blkreplay *r, const struct otasim_blklog *log,
                          const char *base, const char *work, struct ota_err *err)
{
    struct stat st;
    int rc;

    memset(r, 0, sizeof(*r));
    r->log = log;
    r->work_fd = -1;
    r->base_fd = open(base, O_RDONLY | O_CLOEXEC);
    if (r->base_fd < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", base, strerror(errno));
    if (fstat(r->base_fd, &st) < 0) {
        rc = ota_err_set(err, errno, "cannot stat %s: %s", base, strerror(errno));
        goto fail;
    }
    r->image_size = (uint64_t)st.st_size;
    if (log->end_sector > r->image_size / log->sector_size) {
        rc = ota_err_set(err, EINVAL,
                         "the log writes up to sector %" PRIu64 " (of %" PRIu32
                         " bytes) but %s holds %" PRIu64 " bytes: not this log's disk",
                         log->end_sector, log->sector_size, base, r->image_size);
        goto fail;
    }
    if ((rc = open_work(r, &st, base, work, err)) < 0)
        goto fail;
    r->n_chunks = (r->image_size + OTASIM_BLK_CHUNK - 1) / OTASIM_BLK_CHUNK;
    r->dirty = calloc(r->n_chunks + 1, 1);
    r->touched = calloc(r->n_chunks + 1, 1);
    r->gen = calloc(r->n_chunks + 1, sizeof(*r->gen));
    if (!r->dirty || !r->touched || !r->gen) {
        rc = ota_err_set(err, ENOMEM, "no memory for %" PRIu64 " chunks", r->n_chunks);
        goto fail;
    }
    if ((rc = copy_range(r->base_fd, r->work_fd, 0, r->image_size)) < 0) {
        rc = ota_err_set(err, -rc, "copying %s to %s: %s", base, work, strerror(-rc));
        goto fail;
    }
    memset(r->dirty, 1, r->n_chunks);
    r->seq = 1; /* the copy of the base: every chunk changed at 1 */
    for (uint64_t c = 0; c < r->n_chunks; c++)
        r->gen[c] = 1;
    return 0;
fail:
    otasim_blkreplay_free(r);
    return rc;
}

void otasim_blkreplay_free(struct otasim_blkreplay *r)
{
    if (r->base_fd >= 0)
        close(r->base_fd);
    if (r->work_fd >= 0)
        close(r->work_fd);
    free(r->dirty);
    free(r->touched);
    free(r->gen);
    free(r->undo);
    memset(r, 0, sizeof(*r));
    r->base_fd = r->work_fd = -1;
}

/* Back to the base image: only the chunks changed since it was copied. */
static int rewind_to_base(struct otasim_blkreplay *r, struct ota_err *err)
{
    r->seq++;
    for (uint64_t c = 0; c < r->n_chunks; c++) {
        uint64_t off = c * OTASIM_BLK_CHUNK, len = OTASIM_BLK_CHUNK;
        int rc;
        if (!r->touched[c])
            continue;
        if (off + len > r->image_size)
            len = r->image_size - off;
        if ((rc = copy_range(r->base_fd, r->work_fd, off, len)) < 0)
            return ota_err_set(err, -rc, "restoring the base image: %s", strerror(-rc));
        r->touched[c] = 0;
        r->dirty[c] = 1;
        r->gen[c] = r->seq;
    }
    r->applied = 0;
    return 0;
}

int otasim_blkreplay_seek(struct otasim_blkreplay *r, uint64_t pos, struct ota_err *err)
{
    int rc;

    if (pos > r->log->nr_entries)
        return ota_err_set(err, EINVAL,
                           "position %" PRIu64 " is past the log's %" PRIu64 " entries", pos,
                           r->log->nr_entries);
    if (r->undo_len)
        return ota_err_set(err, EBUSY, "extra writes applied: undo them before a seek");
    if (pos < r->applied && (rc = rewind_to_base(r, err)) < 0)
        return rc;
    for (; r->applied < pos; r->applied++)
        if ((rc = apply(r, r->applied, 0, err)) < 0)
            return rc;
    return 0;
}

int otasim_blkreplay_apply_extra(struct otasim_blkreplay *r, const uint64_t *idx, uint64_t n,
                                 struct ota_err *err)
{
    for (uint64_t k = 0; k < n; k++) {
        int rc;
        if (idx[k] >= r->log->nr_entries)
            return ota_err_set(err, EINVAL, "entry %" PRIu64 " is not in the log", idx[k]);
        if ((rc = apply(r, idx[k], 1, err)) < 0)
            return rc;
    }
    return 0;
}

int otasim_blkreplay_undo_extra(struct otasim_blkreplay *r, struct ota_err *err)
{
    /* the records are walked newest first: find each record's start from the front */
    while (r->undo_len) {
        size_t at = 0, last = 0;
        uint64_t off, len;
        int rc;
        while (at < r->undo_len) {
            last = at;
            memcpy(&len, r->undo + at + 8, 8);
            at += 16 + (size_t)len;
        }
        memcpy(&off, r->undo + last, 8);
        memcpy(&len, r->undo + last + 8, 8);
        if ((rc = pwrite_all(r->work_fd, r->undo + last + 16, (size_t)len, off)) < 0)
            return ota_err_set(err, -rc, "undoing a write at byte %" PRIu64 ": %s", off,
                               strerror(-rc));
        mark(r, off, len);
        r->undo_len = last;
    }
    return 0;
}

int otasim_blkreplay_sync(struct otasim_blkreplay *r, int out_fd, int full, struct ota_err *err)
{
    uint64_t c = 0;

    while (c < r->n_chunks) {
        uint64_t start = c, off, len;
        int rc;
        if (!full && !r->dirty[c]) {
            c++;
            continue;
        }
        while (c < r->n_chunks && (full || r->dirty[c]))
            r->dirty[c++] = 0;
        off = start * OTASIM_BLK_CHUNK;
        len = c * OTASIM_BLK_CHUNK - off;
        if (off + len > r->image_size)
            len = r->image_size - off;
        if ((rc = copy_range(r->work_fd, out_fd, off, len)) < 0)
            return ota_err_set(err, -rc, "writing the state out: %s", strerror(-rc));
    }
    return ftruncate(out_fd, (off_t)r->image_size) < 0
               ? ota_err_set(err, errno, "sizing the state: %s", strerror(errno))
               : 0;
}

/* ---- byte ranges -------------------------------------------------------- */

int otasim_blkreplay_changed(const struct otasim_blkreplay *r, uint64_t off, uint64_t len,
                             uint64_t since)
{
    if (!len || off >= r->image_size)
        return 0;
    if (off + len > r->image_size)
        len = r->image_size - off;
    for (uint64_t c = off / OTASIM_BLK_CHUNK; c <= (off + len - 1) / OTASIM_BLK_CHUNK; c++)
        if (r->gen[c] > since)
            return 1;
    return 0;
}

int otasim_blkreplay_sync_range(struct otasim_blkreplay *r, int out_fd, uint64_t off, uint64_t len,
                                uint64_t since, struct ota_err *err)
{
    uint64_t end;

    if (off > r->image_size || len > r->image_size - off)
        return ota_err_set(err, EINVAL,
                           "range %" PRIu64 "+%" PRIu64 " is outside the %" PRIu64 "-byte image",
                           off, len, r->image_size);
    end = off + len;
    for (uint64_t c = off / OTASIM_BLK_CHUNK; len && c <= (end - 1) / OTASIM_BLK_CHUNK;) {
        uint64_t from, to;
        int rc;
        if (r->gen[c] <= since) {
            c++;
            continue;
        }
        from = c * OTASIM_BLK_CHUNK;
        while (c <= (end - 1) / OTASIM_BLK_CHUNK && r->gen[c] > since)
            c++;
        to = c * OTASIM_BLK_CHUNK;
        if (from < off)
            from = off;
        if (to > end)
            to = end;
        if ((rc = copy_range_to(r->work_fd, from, out_fd, from - off, to - from)) < 0)
            return ota_err_set(err, -rc, "writing bytes %" PRIu64 "+%" PRIu64 " out: %s", from,
                               to - from, strerror(-rc));
    }
    return ftruncate(out_fd, (off_t)len) < 0
               ? ota_err_set(err, errno, "sizing the range: %s", strerror(errno))
               : 0;
}

/* ---- Torn writes and SD erase-block damage: applied with the undo record (docs/blocks.md) ---- */

/* Pushes what [off, off+len) of the working copy holds onto the undo stack. */
static int undo_push(struct otasim_blkreplay *r, uint64_t off, uint64_t len, struct ota_err *err)
{
    size_t need = r->undo_len + 16 + (size_t)len;
    int rc;

    if (need > r->undo_cap) {
        size_t cap = need * 2;
        uint8_t *u = realloc(r->undo, cap);
        if (!u)
            return ota_err_set(err, ENOMEM, "no memory for the undo of %" PRIu64 " bytes", len);
        r->undo = u;
        r->undo_cap = cap;
    }
    memcpy(r->undo + r->undo_len, &off, 8);
    memcpy(r->undo + r->undo_len + 8, &len, 8);
    if ((rc = pread_all(r->work_fd, r->undo + r->undo_len + 16, (size_t)len, off)) < 0)
        return ota_err_set(err, -rc, "reading the working copy: %s", strerror(-rc));
    r->undo_len = need;
    return 0;
}

/* Writes src (NULL: zeroes) at [off, off+len) of the working copy, undoably. */
static int model_write(struct otasim_blkreplay *r, uint64_t off, uint64_t len, const uint8_t *src,
                       struct ota_err *err)
{
    int rc;

    if ((rc = undo_push(r, off, len, err)) < 0)
        return rc;
    rc = src ? pwrite_all(r->work_fd, src, (size_t)len, off) : write_zeroes(r->work_fd, off, len);
    if (rc < 0)
        return ota_err_set(err, -rc, "writing the working copy at byte %" PRIu64 ": %s", off,
                           strerror(-rc));
    mark(r, off, len);
    return 0;
}

int otasim_blkreplay_apply_torn(struct otasim_blkreplay *r, uint64_t idx, uint64_t seed,
                                uint64_t unit, struct otasim_blk_torn *t, struct ota_err *err)
{
    struct otasim_blk_torn tt;
    const struct otasim_blk_entry *e;
    int rc;

    if ((rc = otasim_blklog_torn(r->log, idx, seed, unit, &tt, err)) < 0)
        return rc;
    if (idx < r->applied)
        return ota_err_set(err, EINVAL,
                           "entry %" PRIu64 " is already applied (the working copy holds %" PRIu64
                           " entries): seek to %" PRIu64 " before tearing it",
                           idx, r->applied, idx);
    if (t)
        *t = tt;
    e = &r->log->e[idx];
    if (!tt.bytes || ((e->flags & OTASIM_BLK_DISCARD) && r->discard == OTASIM_BLK_DISCARD_KEEP))
        return 0;
    return model_write(r, e->sector * r->log->sector_size, tt.bytes,
                       (e->flags & OTASIM_BLK_DISCARD) ? NULL : r->log->map + e->data_off, err);
}

/* Overwrites [off, end) (whole sectors) with the erase-block model's damage. */
static int damage_range(struct otasim_blkreplay *r, uint64_t off, uint64_t end, uint64_t seed,
                        struct otasim_blk_damage *d, uint8_t *buf, struct ota_err *err)
{
    uint32_t ss = r->log->sector_size;

    while (off < end) {
        uint64_t len = end - off < OTASIM_BLK_CHUNK ? end - off : OTASIM_BLK_CHUNK;
        int rc;
        if (len < ss) /* OTASIM_BLK_CHUNK may be smaller than a sector */
            len = ss;
        for (uint64_t b = 0; b < len; b += ss) {
            if (otasim_blk_damage_sector(seed, (off + b) / ss, buf + b, ss))
                d->sectors_ff++;
            else
                d->sectors_garbage++;
        }
        if ((rc = model_write(r, off, len, buf, err)) < 0)
            return rc;
        off += len;
    }
    return 0;
}

int otasim_blkreplay_apply_erase_damage(struct otasim_blkreplay *r, uint64_t idx,
                                        uint64_t erase_block, uint64_t seed,
                                        struct otasim_blk_damage *d, struct ota_err *err)
{
    const struct otasim_blklog *log = r->log;
    uint64_t ss = log->sector_size, off, end, bstart, bend, limit;
    struct otasim_blk_damage dd = {0};
    const struct otasim_blk_entry *e;
    uint8_t *buf;
    int rc;

    if (idx >= log->nr_entries)
        return ota_err_set(err, EINVAL, "entry %" PRIu64 " is not in the log (%" PRIu64 " entries)",
                           idx, log->nr_entries);
    e = &log->e[idx];
    if (!otasim_blk_entry_is_data(e))
        return ota_err_set(err, EINVAL,
                           "entry %" PRIu64 " is not a write (flags 0x%" PRIx64
                           "): no erase block holds it",
                           idx, e->flags);
    if (otasim_blk_check_size("erase block", erase_block, ss, OTASIM_BLK_ERASE_BLOCK_MAX, err) < 0)
        return -EINVAL;
    off = e->sector * ss;
    end = off + e->nr_sectors * ss;
    limit = r->image_size / ss * ss; /* whole sectors of the image */
    bstart = off / erase_block * erase_block;
    bend = ((end - 1) / erase_block + 1) * erase_block;
    if (bend > limit)
        bend = limit;
    dd.off = bstart;
    dd.len = bend - bstart;
    buf = malloc(OTASIM_BLK_CHUNK > ss ? OTASIM_BLK_CHUNK : ss);
    if (!buf)
        return ota_err_set(err, ENOMEM, "no memory for the damage");
    rc = damage_range(r, bstart, off, seed, &dd, buf, err);
    if (rc == 0)
        rc = damage_range(r, end, bend, seed, &dd, buf, err);
    free(buf);
    if (rc == 0 && d)
        *d = dd;
    return rc;
}
