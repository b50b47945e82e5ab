/* Block-level crash states (issue 16, docs/blocks.md): a reader of the
 * dm-log-writes format that QEMU's blklogwrites driver writes, and a replayer
 * that turns a starting disk image plus the log into the disk as it would be
 * found at power-on after a cut at one crash point.
 *
 * A log is read once (mapped read-only) and checked whole before anything is
 * replayed: a truncated or malformed log is refused with a reason. Replay is
 * incremental: one working copy of the image moves forward entry by entry,
 * so consecutive crash points cost only the writes between them. */
#ifndef OTASIM_BLKLOG_H
#define OTASIM_BLKLOG_H

#include <stddef.h>
#include <stdint.h>

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Entry flags (dm-log-writes, little-endian u64 in the log). */
#define OTASIM_BLK_FLUSH   (1u << 0)
#define OTASIM_BLK_FUA     (1u << 1)
#define OTASIM_BLK_DISCARD (1u << 2)
#define OTASIM_BLK_MARK    (1u << 3)

#define OTASIM_BLKLOG_MAGIC 0x6a736677736872ULL

struct otasim_blk_entry {
    uint64_t sector;     /* first sector written, in units of the log's sector size */
    uint64_t nr_sectors; /* sectors written (0 for a flush or a mark) */
    uint64_t flags;      /* OTASIM_BLK_* */
    uint64_t data_len;   /* a mark's text length (0 otherwise) */
    uint64_t data_off;   /* byte offset in the log of the data (or of the mark's text) */
};

/* A data entry: one that changes the disk (a write, a write of zeroes, a discard). */
static inline int otasim_blk_entry_is_data(const struct otasim_blk_entry *e)
{
    return e->nr_sectors > 0 && !(e->flags & OTASIM_BLK_MARK);
}

/* A barrier: everything logged up to it is on the medium (a flush or a FUA write). */
static inline int otasim_blk_entry_is_barrier(const struct otasim_blk_entry *e)
{
    return (e->flags & (OTASIM_BLK_FLUSH | OTASIM_BLK_FUA)) != 0;
}

/* The unit of a crash state (docs/blocks.md): each barrier (virt's virtio-blk)
 * or each data entry (raspi3b's SD card, which never flushes). */
enum otasim_blk_unit { OTASIM_BLK_UNIT_FLUSH, OTASIM_BLK_UNIT_WRITE };

struct otasim_blklog {
    const uint8_t *map; /* the whole log, read-only */
    size_t size;
    uint32_t sector_size;
    uint64_t nr_entries; /* the super block's count, checked against the entries */
    struct otasim_blk_entry *e;
    /* Counts over the entries. */
    uint64_t n_writes, n_discards, n_flushes, n_fua, n_marks;
    uint64_t bytes;      /* data bytes written (writes and zero writes; discards not) */
    uint64_t end_sector; /* one past the highest sector any entry touches */
};

/* Reads and checks the log at path: an empty file is an empty log (QEMU
 * writes the super block at the first flush); else the super block (magic, version 1, sector
 * size a power of two in [32 bytes, 16 MiB): one entry header fits), every entry inside the file
 * with valid flags, and the count: the super block's entry count must account for the whole file
 * (bytes after the counted entries that hold another entry are refused: a killed recording whose
 * super block lagged, or a reused log file). 0, or -EINVAL (malformed or truncated) / -errno with
 * err set. */
int otasim_blklog_open(struct otasim_blklog *log, const char *path, struct ota_err *err) OTA_MUST;
void otasim_blklog_close(struct otasim_blklog *log);

/* The crash points of a unit: positions in the entry list (a state at point
 * n is the first pos[n] entries applied). Point 0 is the starting disk; the
 * last point's disk is the whole log's. Flush unit: after each barrier (and the end).
 * Write unit: after each data entry. The count into *n; pos may be NULL to
 * only count. Returns 0 or -ENOMEM. */
int otasim_blklog_points(const struct otasim_blklog *log, enum otasim_blk_unit unit, uint64_t **pos,
                         uint64_t *n) OTA_MUST;

/* The subset model: the data entries logged after position from and before the
 * next barrier (the writes in flight when power was cut after crash point
 * from), each kept or dropped by a choice made from seed; the kept ones'
 * indexes in log order into idx (caller frees), their count into *n. */
int otasim_blklog_subset(const struct otasim_blklog *log, uint64_t from, uint64_t seed,
                         uint64_t **idx, uint64_t *n) OTA_MUST;

/* Discarded sectors in a replay. A discard reaches the log only from a drive
 * opened with discard=unmap (with QEMU's default, discard=ignore, it is dropped
 * before blklogwrites sees it), and then QEMU punches or zeroes the sectors in
 * its file: zeroes, the default. Keep: the old data stays (a card that has not
 * erased them yet). */
enum otasim_blk_discard { OTASIM_BLK_DISCARD_ZERO, OTASIM_BLK_DISCARD_KEEP };

/* One working copy of the disk moving through the log. */
struct otasim_blkreplay {
    const struct otasim_blklog *log;
    int base_fd, work_fd;
    uint64_t image_size;
    uint64_t applied; /* entries [0, applied) are in the working copy */
    enum otasim_blk_discard discard;
    /* Chunks of the working copy changed since the last otasim_blkreplay_sync
     * (dirty) and since the base image was copied (touched). */
    uint8_t *dirty, *touched;
    uint64_t n_chunks;
    /* Per chunk, the value of seq when it last changed (a write whose bytes
     * equal what it overwrites changes nothing); seq counts changes. */
    uint64_t *gen, seq;
    /* Undo of the extra writes applied by otasim_blkreplay_apply_extra. */
    uint8_t *undo;
    size_t undo_len, undo_cap;
};

#define OTASIM_BLK_CHUNK (64u * 1024u)

/* Copies base (a raw image) to work and reads log onto it from entry 0.
 * Refuses a log that writes past the image's end. */
int otasim_blkreplay_init(struct otasim_blkreplay *r, const struct otasim_blklog *log,
                          const char *base, const char *work, struct ota_err *err) OTA_MUST;
void otasim_blkreplay_free(struct otasim_blkreplay *r);

/* Moves the working copy to the state with the first pos entries applied:
 * forward applies only the entries in between; backward starts again from
 * the base image (restoring only the chunks changed since). */
int otasim_blkreplay_seek(struct otasim_blkreplay *r, uint64_t pos, struct ota_err *err) OTA_MUST;

/* Applies the data entries idx[0..n) (a subset from otasim_blklog_subset) on
 * top of the current state, remembering what they overwrote, until
 * otasim_blkreplay_undo_extra puts it back. */
int otasim_blkreplay_apply_extra(struct otasim_blkreplay *r, const uint64_t *idx, uint64_t n,
                                 struct ota_err *err) OTA_MUST;
int otasim_blkreplay_undo_extra(struct otasim_blkreplay *r, struct ota_err *err) OTA_MUST;

/* Writes the working copy's state into out_fd (an image of the same size):
 * only the chunks changed since the previous sync into the same out_fd, or
 * the whole image when full (the first time, or after out_fd was changed by
 * someone else, e.g. a checker that repaired it). */
int otasim_blkreplay_sync(struct otasim_blkreplay *r, int out_fd, int full,
                          struct ota_err *err) OTA_MUST;

/* A model's size (what: "torn unit", "erase block"): a power of two, a
 * multiple of the log's sector size, at most max. 0 or -EINVAL with why. */
int otasim_blk_check_size(const char *what, uint64_t v, uint64_t sector_size, uint64_t max,
                          struct ota_err *err) OTA_MUST;

/* ---- byte ranges of the working copy (a checker's partitions) ----------- */

/* Whether any chunk overlapping [off, off+len) changed after the change
 * counter read since (r->seq at that time; 0: since the base was copied,
 * which counts as a change). */
int otasim_blkreplay_changed(const struct otasim_blkreplay *r, uint64_t off, uint64_t len,
                             uint64_t since);

/* Writes [off, off+len) of the working copy into out_fd at offset 0: only the
 * chunks changed after since (every chunk when since is 0), and sizes out_fd
 * to len. A checker keeps r->seq after each sync and passes it next time. */
int otasim_blkreplay_sync_range(struct otasim_blkreplay *r, int out_fd, uint64_t off, uint64_t len,
                                uint64_t since, struct ota_err *err) OTA_MUST;

/* ---- Torn writes and SD erase-block damage (docs/blocks.md "Models of a state") ----
 *
 * Two further models of what power-on finds, each reproducible by (log, point,
 * seed), each applied on top of the working copy with the undo record of the
 * extra writes (otasim_blkreplay_undo_extra takes them back, after which the
 * replayer can seek on). QEMU itself never tears a write: both are models. */

/* Size limits of the models' units (bytes). */
#define OTASIM_BLK_TORN_UNIT_MAX   (16u * 1024u * 1024u)
#define OTASIM_BLK_ERASE_BLOCK_MAX (64u * 1024u * 1024u) /* its old bytes are kept for the undo */

/* A torn write: the data entry cut into pieces at the boundaries of
 * unit-byte pages of the logical address space (the first and the last piece
 * of an unaligned write are shorter), of which only the first k reached the
 * medium. A write touching m >= 2 pages keeps k in [1, m-1], chosen by
 * splitmix64 from (seed, entry): a state strictly between the one before the
 * write and the one after it. A write inside one page cannot tear (k = 0: the
 * state before it). */
struct otasim_blk_torn {
    uint64_t entry;  /* the entry torn */
    uint64_t pieces; /* m: the pages the write touches */
    uint64_t k;      /* the first pages written */
    uint64_t bytes;  /* bytes of the write kept: its first ones (of nr_sectors * sector size) */
};

/* The choice of the torn model for entry idx (a data entry) with pages of unit
 * bytes (a power of two, a multiple of the log's sector size, at most
 * OTASIM_BLK_TORN_UNIT_MAX). 0, or -EINVAL with err set. */
int otasim_blklog_torn(const struct otasim_blklog *log, uint64_t idx, uint64_t seed, uint64_t unit,
                       struct otasim_blk_torn *t, struct ota_err *err) OTA_MUST;

/* The write torn at a flush-unit crash point: one of the data entries logged
 * after position from and before the next barrier (the writes in flight)
 * that the subset model did not keep (kept[0..nk), from otasim_blklog_subset),
 * chosen by seed, into *entry. 0; -ENOENT with err set when no write is in
 * flight there (or the subset kept them all); -ENOMEM. */
int otasim_blklog_torn_pick(const struct otasim_blklog *log, uint64_t from, const uint64_t *kept,
                            uint64_t nk, uint64_t seed, uint64_t *entry,
                            struct ota_err *err) OTA_MUST;

/* The damaged content of one sector (number sector, sector_size bytes into
 * buf) of the erase-block model: from (seed, sector), either all 0xff (an
 * erased page: returns 1) or garbage (pseudo-random bytes: returns 0). */
int otasim_blk_damage_sector(uint64_t seed, uint64_t sector, uint8_t *buf, uint32_t sector_size);

/* Applies the torn model on top of the current state: the first t->bytes of
 * data entry idx (discards: the first sectors zeroed in the zero model,
 * nothing kept in the keep model), remembering what they overwrite. The entry
 * must not be applied yet (idx >= r->applied). Write unit, the cut during the
 * write that completes crash point n (n >= 1): seek to pos[n] - 1, apply_torn
 * of entry pos[n] - 1. Flush unit: seek to pos[n], apply the subset, then the
 * entry otasim_blklog_torn_pick names. t may be NULL. */
int otasim_blkreplay_apply_torn(struct otasim_blkreplay *r, uint64_t idx, uint64_t seed,
                                uint64_t unit, struct otasim_blk_torn *t,
                                struct ota_err *err) OTA_MUST;

/* The SD erase-block model, pessimistic on purpose (not a measurement of any
 * card): power cut while the card programs data entry idx damages the other
 * sectors of the erase blocks holding it (aligned ranges of erase_block bytes
 * of logical addresses: the log knows nothing of the card's physical mapping),
 * each overwritten by otasim_blk_damage_sector; the entry's own sectors are
 * left as they are. erase_block: a power of two, a multiple of the log's
 * sector size, at most OTASIM_BLK_ERASE_BLOCK_MAX. Write unit, at point n
 * (n >= 1): seek to pos[n], then apply it to entry pos[n] - 1. Undone by
 * otasim_blkreplay_undo_extra. The damaged range and counts into d (may be
 * NULL). */
struct otasim_blk_damage {
    uint64_t off, len;        /* the erase blocks' bytes (clipped to the image) */
    uint64_t sectors_ff;      /* sectors overwritten with 0xff */
    uint64_t sectors_garbage; /* sectors overwritten with garbage */
};
int otasim_blkreplay_apply_erase_damage(struct otasim_blkreplay *r, uint64_t idx,
                                        uint64_t erase_block, uint64_t seed,
                                        struct otasim_blk_damage *d, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
