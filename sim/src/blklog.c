/* Block-level crash states: the dm-log-writes reader and the replayer
 * (otasim/blklog.h, docs/blocks.md). */
#include "otasim/blklog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUPER_LEN 28u /* magic, version, nr_entries (u64), sectorsize (u32) */
#define ENTRY_LEN 32u /* sector, nr_sectors, flags, data_len (u64) */
#define FLAG_MASK                                                                                  \
    ((uint64_t)(OTASIM_BLK_FLUSH | OTASIM_BLK_FUA | OTASIM_BLK_DISCARD | OTASIM_BLK_MARK))

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int map_file(struct otasim_blklog *log, const char *path, struct ota_err *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return ota_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return ota_err_set(err, e, "cannot stat %s: %s", path, strerror(e));
    }
    log->size = (size_t)st.st_size;
    if (log->size == 0) { /* nothing flushed yet: QEMU has not written the super block */
        close(fd);
        return 1;
    }
    if (log->size < SUPER_LEN) {
        close(fd);
        return ota_err_set(err, EINVAL,
                           "%s: truncated log: %zu bytes, shorter than a dm-log-writes super block",
                           path, log->size);
    }
    log->map = mmap(NULL, log->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (log->map == MAP_FAILED) {
        log->map = NULL;
        return ota_err_set(err, errno, "cannot map %s: %s", path, strerror(errno));
    }
    return 0;
}

static int read_super(struct otasim_blklog *log, uint64_t *nr, struct ota_err *err)
{
    uint64_t magic = le64(log->map), version = le64(log->map + 8);
    uint32_t ss = le32(log->map + 24);

    if (magic != OTASIM_BLKLOG_MAGIC)
        return ota_err_set(err, EINVAL,
                           "bad magic 0x%" PRIx64 " (a dm-log-writes log starts with 0x%llx)",
                           magic, (unsigned long long)OTASIM_BLKLOG_MAGIC);
    if (version != 1)
        return ota_err_set(err, EINVAL, "unsupported log version %" PRIu64 " (1 is known)",
                           version);
    if (ss < ENTRY_LEN || ss >= (1u << 24) || (ss & (ss - 1)))
        return ota_err_set(err, EINVAL, "bad sector size %" PRIu32, ss);
    log->sector_size = ss;
    *nr = le64(log->map + 16);
    if (log->size < ss)
        return ota_err_set(err, EINVAL,
                           "truncated log: %zu bytes, less than its super block's "
                           "sector (%" PRIu32 ")",
                           log->size, ss);
    return 0;
}

/* Checks entry i at byte off and fills e; the offset of the next entry into *next. */
static int read_entry(struct otasim_blklog *log, uint64_t i, uint64_t off,
                      struct otasim_blk_entry *e, uint64_t *next, struct ota_err *err)
{
    uint64_t ss = log->sector_size, room;

    if (off > log->size || log->size - off < ss)
        return ota_err_set(err, EINVAL,
                           "truncated log: entry %" PRIu64 " of %" PRIu64 " at byte %" PRIu64
                           " is past the end of the log (%zu bytes)",
                           i, log->nr_entries, off, log->size);
    e->sector = le64(log->map + off);
    e->nr_sectors = le64(log->map + off + 8);
    e->flags = le64(log->map + off + 16);
    e->data_len = le64(log->map + off + 24);
    if (e->flags & ~FLAG_MASK)
        return ota_err_set(err, EINVAL,
                           "entry %" PRIu64 " at byte %" PRIu64 ": unknown flags 0x%" PRIx64, i,
                           off, e->flags);
    if (e->flags & OTASIM_BLK_MARK) {
        /* the mark's text follows the entry in its own sector */
        if (e->data_len > ss - ENTRY_LEN)
            return ota_err_set(
                err, EINVAL, "entry %" PRIu64 ": mark of %" PRIu64 " bytes does not fit its sector",
                i, e->data_len);
        e->data_off = off + ENTRY_LEN;
        *next = off + ss;
        return 0;
    }
    e->data_off = off + ss;
    room = (log->size - off - ss) / ss;
    if (e->nr_sectors > UINT64_MAX / ss || e->sector > UINT64_MAX / ss - e->nr_sectors)
        return ota_err_set(err, EINVAL,
                           "entry %" PRIu64 ": sector %" PRIu64 " + %" PRIu64 " overflows", i,
                           e->sector, e->nr_sectors);
    if (e->flags & OTASIM_BLK_DISCARD) {
        *next = off + ss; /* a discard carries no data */
        return 0;
    }
    if (e->nr_sectors > room)
        return ota_err_set(err, EINVAL,
                           "truncated log: entry %" PRIu64 " of %" PRIu64 " (%" PRIu64
                           " sectors at byte %" PRIu64 ") runs past the end of the log (%zu bytes)",
                           i, log->nr_entries, e->nr_sectors, off, log->size);
    *next = off + ss + e->nr_sectors * ss;
    return 0;
}

static void count_entry(struct otasim_blklog *log, const struct otasim_blk_entry *e)
{
    uint64_t end = e->sector + e->nr_sectors;

    if (e->flags & OTASIM_BLK_FLUSH)
        log->n_flushes++;
    if (e->flags & OTASIM_BLK_FUA)
        log->n_fua++;
    if (e->flags & OTASIM_BLK_MARK)
        log->n_marks++;
    else if (e->flags & OTASIM_BLK_DISCARD)
        log->n_discards++;
    else if (e->nr_sectors) {
        log->n_writes++;
        log->bytes += e->nr_sectors * log->sector_size;
    }
    if (otasim_blk_entry_is_data(e) && end > log->end_sector)
        log->end_sector = end;
}

/* After the counted entries: nothing, zeroes, or more entries (refused). */
static int check_tail(const struct otasim_blklog *log, uint64_t off, struct ota_err *err)
{
    uint64_t ss = log->sector_size;

    if (off >= log->size)
        return 0;
    for (uint64_t b = off; b < log->size && b < off + ss; b++)
        if (log->map[b])
            return ota_err_set(err, EINVAL,
                               "count does not match: the super block counts %" PRIu64
                               " entries but the log goes on after them (byte %" PRIu64 " of %zu):"
                               " a recording killed before QEMU updated the super block (record"
                               " with log-super-update-interval=1) or a reused log file",
                               log->nr_entries, off, log->size);
    return 0;
}

int otasim_blklog_open(struct otasim_blklog *log, const char *path, struct ota_err *err)
{
    uint64_t nr = 0, off;
    int r;

    memset(log, 0, sizeof(*log));
    if ((r = map_file(log, path, err)) < 0)
        return r;
    if (r == 1) {
        log->sector_size = 512;
        log->e = calloc(1, sizeof(*log->e));
        return log->e ? 0 : ota_err_set(err, ENOMEM, "no memory");
    }
    if ((r = read_super(log, &nr, err)) < 0)
        goto fail;
    log->nr_entries = nr;
    /* every entry takes at least one sector: a count larger than that is no log */
    if (nr > log->size / log->sector_size) {
        r = ota_err_set(err, EINVAL,
                        "truncated log: the super block counts %" PRIu64
                        " entries, the log's %zu bytes cannot hold them",
                        nr, log->size);
        goto fail;
    }
    log->e = calloc(nr ? nr : 1, sizeof(*log->e));
    if (!log->e) {
        r = ota_err_set(err, ENOMEM, "no memory for %" PRIu64 " entries", nr);
        goto fail;
    }
    off = log->sector_size;
    for (uint64_t i = 0; i < nr; i++) {
        if ((r = read_entry(log, i, off, &log->e[i], &off, err)) < 0)
            goto fail;
        count_entry(log, &log->e[i]);
    }
    if ((r = check_tail(log, off, err)) < 0)
        goto fail;
    return 0;
fail:
    otasim_blklog_close(log);
    return ota_err_prefix(err, r, "%s", path);
}

void otasim_blklog_close(struct otasim_blklog *log)
{
    if (log->map)
        munmap((void *)log->map, log->size);
    free(log->e);
    memset(log, 0, sizeof(*log));
}

int otasim_blklog_points(const struct otasim_blklog *log, enum otasim_blk_unit unit, uint64_t **pos,
                         uint64_t *n)
{
    uint64_t k = 0, *p = NULL;

    if (pos) {
        p = malloc((log->nr_entries + 2) * sizeof(*p));
        if (!p)
            return -ENOMEM;
    }
    if (p)
        p[k] = 0;
    k++;
    for (uint64_t i = 0; i < log->nr_entries; i++) {
        const struct otasim_blk_entry *e = &log->e[i];
        int point = unit == OTASIM_BLK_UNIT_FLUSH ? otasim_blk_entry_is_barrier(e)
                                                  : otasim_blk_entry_is_data(e);
        if (point) {
            if (p)
                p[k] = i + 1;
            k++;
        }
    }
    /* flush unit: the writes after the last barrier make a last point too */
    if (unit == OTASIM_BLK_UNIT_FLUSH && log->nr_entries > 0 &&
        !otasim_blk_entry_is_barrier(&log->e[log->nr_entries - 1])) {
        if (p)
            p[k] = log->nr_entries;
        k++;
    }
    if (pos)
        *pos = p;
    *n = k;
    return 0;
}

/* splitmix64: one well-mixed value per (seed, entry). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int otasim_blklog_subset(const struct otasim_blklog *log, uint64_t from, uint64_t seed,
                         uint64_t **idx, uint64_t *n)
{
    uint64_t k = 0, end = from, *v;

    while (end < log->nr_entries && !otasim_blk_entry_is_barrier(&log->e[end]))
        end++;
    v = malloc((end - from + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (uint64_t i = from; i < end; i++)
        if (otasim_blk_entry_is_data(&log->e[i]) && (mix(seed ^ mix(i)) & 1))
            v[k++] = i;
    *idx = v;
    *n = k;
    return 0;
}

/* ---- Torn writes and SD erase-block damage: the models' choices (docs/blocks.md) ---- */

/* Salts: the models' choices are independent of the subset model's for one seed. */
#define TORN_SALT   0x746f726e00000001ULL
#define PICK_SALT   0x7069636b00000002ULL
#define DAMAGE_SALT 0x64616d6700000003ULL

int otasim_blklog_torn(const struct otasim_blklog *log, uint64_t idx, uint64_t seed, uint64_t unit,
                       struct otasim_blk_torn *t, struct ota_err *err)
{
    uint64_t ss = log->sector_size, off, len, first, last;
    const struct otasim_blk_entry *e;

    if (idx >= log->nr_entries)
        return ota_err_set(err, EINVAL, "entry %" PRIu64 " is not in the log (%" PRIu64 " entries)",
                           idx, log->nr_entries);
    e = &log->e[idx];
    if (!otasim_blk_entry_is_data(e))
        return ota_err_set(err, EINVAL,
                           "entry %" PRIu64 " is not a write (flags 0x%" PRIx64 ", %" PRIu64
                           " sectors): nothing to tear",
                           idx, e->flags, e->nr_sectors);
    if (otasim_blk_check_size("torn unit", unit, ss, OTASIM_BLK_TORN_UNIT_MAX, err) < 0)
        return -EINVAL;
    off = e->sector * ss;
    len = e->nr_sectors * ss;
    first = off / unit;
    last = (off + len - 1) / unit;
    t->entry = idx;
    t->pieces = last - first + 1;
    t->k = t->pieces >= 2 ? 1 + mix(mix(seed ^ TORN_SALT) ^ mix(idx)) % (t->pieces - 1) : 0;
    t->bytes = t->k ? (first + t->k) * unit - off : 0;
    return 0;
}

int otasim_blklog_torn_pick(const struct otasim_blklog *log, uint64_t from, const uint64_t *kept,
                            uint64_t nk, uint64_t seed, uint64_t *entry, struct ota_err *err)
{
    uint64_t end = from, c = 0, want, j;

    if (from > log->nr_entries)
        return ota_err_set(err, EINVAL,
                           "position %" PRIu64 " is past the log's %" PRIu64 " entries", from,
                           log->nr_entries);
    while (end < log->nr_entries && !otasim_blk_entry_is_barrier(&log->e[end]))
        end++;
    /* two passes over the writes in flight that the subset did not keep */
    for (int pass = 0; pass < 2; pass++) {
        want = pass ? mix(seed ^ PICK_SALT) % c : 0;
        j = 0;
        for (uint64_t i = from, n = 0; i < end; i++) {
            while (j < nk && kept[j] < i)
                j++;
            if (!otasim_blk_entry_is_data(&log->e[i]) || (j < nk && kept[j] == i))
                continue;
            if (pass && n == want) {
                *entry = i;
                return 0;
            }
            n++;
            if (!pass)
                c++;
        }
        if (!c)
            return ota_err_set(err, ENOENT,
                               "no write in flight after position %" PRIu64
                               " to tear (%s before the next barrier)",
                               from, nk ? "the subset kept every write" : "no write");
    }
    return ota_err_set(err, EINVAL, "internal: torn pick");
}

int otasim_blk_damage_sector(uint64_t seed, uint64_t sector, uint8_t *buf, uint32_t sector_size)
{
    uint64_t h = mix(mix(seed ^ DAMAGE_SALT) ^ mix(sector));

    if (h & 1) { /* an erased page */
        memset(buf, 0xff, sector_size);
        return 1;
    }
    for (uint32_t i = 0; i < sector_size; i += 8) {
        h = mix(h);
        for (uint32_t b = 0; b < 8 && i + b < sector_size; b++)
            buf[i + b] = (uint8_t)(h >> (8 * b));
    }
    return 0;
}

int otasim_blk_check_size(const char *what, uint64_t v, uint64_t sector_size, uint64_t max,
                          struct ota_err *err)
{
    if (v == 0 || (v & (v - 1)))
        return ota_err_set(err, EINVAL, "%s %" PRIu64 " bytes: not a power of two", what, v);
    if (v % sector_size)
        return ota_err_set(err, EINVAL,
                           "%s %" PRIu64 " bytes: not a multiple of the log's sector size "
                           "(%" PRIu64 " bytes)",
                           what, v, sector_size);
    if (v > max)
        return ota_err_set(err, EINVAL, "%s %" PRIu64 " bytes: more than %" PRIu64, what, v, max);
    return 0;
}
