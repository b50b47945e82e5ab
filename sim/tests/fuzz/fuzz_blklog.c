/* Fuzz harness: the block-level crash states' log reader (otasim_blklog_open,
 * sim/src/blklog.c: the dm-log-writes format QEMU's blklogwrites driver
 * writes, docs/blocks.md). The input is written to a file (the reader maps a
 * file) in a directory made once; an accepted log then gives the crash points
 * of both units, the subset model at a few points and the torn model's
 * choices, each checked against what the header promises. A log whose writes
 * fit the harness's 64 KiB disk is also replayed to its end, and the torn and
 * erase-block models are applied on its last write and undone, which must give
 * the disk back byte for byte, and the subset model at point 0 is applied,
 * synced out and undone: the replayer trusts the reader's offsets, so a
 * data range the reader let past the end of the map is read here. Corpus:
 * corpus/blklog/ (logs recorded with qemu-io, one dm-log-writes log by hand
 * with the FUA and MARK entries QEMU never writes). */
#include "otasim/blklog.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define DISK (64u * 1024u)

static char dir[64], log_path[128], base_path[128], work_path[128], out_path[128];
static uint8_t before[DISK], after[DISK];

static void cleanup(void)
{
    unlink(log_path);
    unlink(base_path);
    unlink(work_path);
    unlink(out_path);
    rmdir(dir);
}

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "we");

    if (!f || (n && fwrite(buf, 1, n, f) != n) || fclose(f) != 0)
        abort();
}

static void read_disk(const char *path, uint8_t *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || pread(fd, buf, DISK, 0) != (ssize_t)DISK)
        abort();
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static uint8_t disk[DISK];

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "/dev/shm/ota-fuzz-blklog-XXXXXX");
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof(dir), "/tmp/ota-fuzz-blklog-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(log_path, sizeof(log_path), "%s/rec.log", dir);
    snprintf(base_path, sizeof(base_path), "%s/base.raw", dir);
    snprintf(work_path, sizeof(work_path), "%s/work.raw", dir);
    snprintf(out_path, sizeof(out_path), "%s/out.raw", dir);
    for (size_t i = 0; i < sizeof(disk); i++)
        disk[i] = (uint8_t)(i * 131 + 7);
    write_file(base_path, disk, sizeof(disk));
    atexit(cleanup);
    return 0;
}

/* The points of one unit: from 0, increasing, within the log. */
static void check_points(const struct otasim_blklog *log, enum otasim_blk_unit unit, uint64_t **pos,
                         uint64_t *n)
{
    uint64_t count = 0;

    if (otasim_blklog_points(log, unit, pos, n) < 0 ||
        otasim_blklog_points(log, unit, NULL, &count) < 0 || count != *n || *n < 1 ||
        (*pos)[0] != 0)
        abort();
    for (uint64_t p = 1; p < *n; p++)
        if ((*pos)[p] <= (*pos)[p - 1] || (*pos)[p] > log->nr_entries)
            abort();
    if (unit == OTASIM_BLK_UNIT_FLUSH && log->nr_entries && (*pos)[*n - 1] != log->nr_entries)
        abort();
}

/* The subset and torn choices at point from: in flight, data, in order. */
static void check_models(const struct otasim_blklog *log, uint64_t from, uint64_t seed)
{
    uint64_t *idx = NULL, k = 0, entry = 0, end = from;
    struct ota_err err;
    int rc;

    while (end < log->nr_entries && !otasim_blk_entry_is_barrier(&log->e[end]))
        end++;
    if (otasim_blklog_subset(log, from, seed, &idx, &k) < 0)
        abort();
    for (uint64_t j = 0; j < k; j++)
        if (idx[j] < from || idx[j] >= end || (j && idx[j] <= idx[j - 1]) ||
            !otasim_blk_entry_is_data(&log->e[idx[j]]))
            abort();
    rc = otasim_blklog_torn_pick(log, from, idx, k, seed, &entry, &err);
    if (rc == 0) {
        struct otasim_blk_torn t;
        if (entry < from || entry >= end || !otasim_blk_entry_is_data(&log->e[entry]))
            abort();
        for (uint64_t j = 0; j < k; j++)
            if (idx[j] == entry)
                abort();
        uint64_t unit = 512u << (seed % 6), len = log->e[entry].nr_sectors * log->sector_size;
        if (otasim_blklog_torn(log, entry, seed, unit, &t, &err) == 0 &&
            (t.pieces < 2 ? t.k || t.bytes
                          : t.k < 1 || t.k >= t.pieces || t.bytes == 0 || t.bytes >= len))
            abort();
    } else if (rc != -ENOENT) {
        abort();
    }
    free(idx);
}

/* The subset at point 0 applied and synced out (whole), undone and synced
 * again (the changed chunks only): the image out follows the working copy. */
static void sync_subset(struct otasim_blkreplay *r, const struct otasim_blklog *log, uint64_t seed)
{
    struct ota_err err;
    uint64_t *idx = NULL, k = 0;
    int fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0 || otasim_blklog_subset(log, 0, seed, &idx, &k) < 0 ||
        otasim_blkreplay_apply_extra(r, idx, k, &err) < 0 ||
        otasim_blkreplay_sync(r, fd, 1, &err) < 0)
        abort();
    read_disk(work_path, before);
    read_disk(out_path, after);
    if (memcmp(before, after, DISK) != 0)
        abort();
    if (otasim_blkreplay_undo_extra(r, &err) < 0 || otasim_blkreplay_sync(r, fd, 0, &err) < 0)
        abort();
    read_disk(base_path, before);
    read_disk(out_path, after);
    if (memcmp(before, after, DISK) != 0)
        abort();
    close(fd);
    free(idx);
}

/* Replays the log onto the 64 KiB disk; the models on its last data entry
 * are undone to the same bytes. */
static void check_replay(const struct otasim_blklog *log, uint64_t seed)
{
    struct otasim_blkreplay r;
    struct ota_err err;
    uint64_t last = log->nr_entries, ss = log->sector_size;

    if (otasim_blkreplay_init(&r, log, base_path, work_path, &err) < 0)
        return; /* a log for a larger disk: refused, as it should be */
    r.discard = (seed & 1) ? OTASIM_BLK_DISCARD_KEEP : OTASIM_BLK_DISCARD_ZERO;
    while (last > 0 && !otasim_blk_entry_is_data(&log->e[last - 1]))
        last--;
    if (last > 0 && otasim_blkreplay_seek(&r, last - 1, &err) == 0) {
        read_disk(work_path, before);
        if (otasim_blkreplay_apply_torn(&r, last - 1, seed, ss > 4096 ? ss : 4096, NULL, &err) <
                0 ||
            otasim_blkreplay_apply_erase_damage(&r, last - 1, ss > 16384 ? ss : 16384, seed, NULL,
                                                &err) < 0 ||
            otasim_blkreplay_undo_extra(&r, &err) < 0)
            abort();
        read_disk(work_path, after);
        if (memcmp(before, after, DISK) != 0)
            abort();
    }
    if (otasim_blkreplay_seek(&r, log->nr_entries, &err) < 0 ||
        otasim_blkreplay_seek(&r, 0, &err) < 0)
        abort();
    sync_subset(&r, log, seed);
    otasim_blkreplay_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct otasim_blklog log;
    struct ota_err err;
    uint64_t *pf = NULL, *pw = NULL, nf = 0, nw = 0, data_entries = 0;
    uint64_t seed = size ? data[size - 1] : 0;

    write_file(log_path, data, size);
    if (otasim_blklog_open(&log, log_path, &err) < 0)
        return 0;
    /* every entry's bytes are inside the map */
    for (uint64_t i = 0; i < log.nr_entries; i++) {
        const struct otasim_blk_entry *e = &log.e[i];
        uint64_t len = (e->flags & OTASIM_BLK_MARK)      ? e->data_len
                       : (e->flags & OTASIM_BLK_DISCARD) ? 0
                                                         : e->nr_sectors * log.sector_size;
        if (e->data_off > log.size || len > log.size - e->data_off)
            abort();
        data_entries += otasim_blk_entry_is_data(e);
    }
    check_points(&log, OTASIM_BLK_UNIT_FLUSH, &pf, &nf);
    check_points(&log, OTASIM_BLK_UNIT_WRITE, &pw, &nw);
    if (nw != data_entries + 1)
        abort();
    /* a few points: the first, one in the middle, the last */
    check_models(&log, pf[0], seed);
    check_models(&log, pf[nf / 2], seed + 1);
    check_models(&log, pf[nf - 1], seed + 2);
    if (log.end_sector <= DISK / log.sector_size)
        check_replay(&log, seed);
    free(pf);
    free(pw);
    otasim_blklog_close(&log);
    return 0;
}
