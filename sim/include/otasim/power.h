/* The power model: after every process of a device was killed at once,
 * rebuild the device tree as a crash may leave it. Three crash models; each
 * starts from what fsync made durable and never loses that:
 *
 * minimal (the default): everything not made durable is lost.
 * - File data written (write, pwrite, ftruncate, O_TRUNC) and not made
 *   durable by a later fsync/fdatasync of the same inode (or sync/syncfs)
 *   is lost: the file goes back to its last durable length and content.
 * - A directory change (create, rename, link, symlink, unlink, mkdir,
 *   rmdir) not made durable by a later fsync of the directory it changed
 *   (for a rename across directories: of both), or by sync, is undone; a
 *   rename over an existing file brings the old file back; undoing a mkdir
 *   removes what was made under it.
 * - A call the process was killed inside (recorded, not done) counts as not
 *   made durable; undoing it is harmless if it never took effect.
 *
 * reorder: a seeded subset of the operations that were not made durable
 * persists anyway, so a later unsynced change can survive an earlier one.
 * The subsets allowed are those an ext4-like file system (metadata in one
 * ordered journal, file data written back page by page, no ordering between
 * files) can leave:
 * - every durable operation stays (as in minimal);
 * - directory changes persist in the order they were made: a prefix of the
 *   unsynced ones (the journal commits in order; a kept rename implies every
 *   earlier create, unlink, rename, in any directory, is kept);
 * - the data operations (write, truncate) of one file persist in the order
 *   they were made: per file, a prefix of its unsynced ones;
 * - between files, and between a file's data and the directory changes,
 *   there is no order: file A's later write can persist while file B's
 *   earlier one is lost, a rename can persist while the data written to the
 *   renamed file before it is lost (no auto_da_alloc is assumed).
 * Half of the subsets keep every directory change (journal committed, data
 * writeback behind: the classic ext4 delayed-allocation case); per file, a
 * third keep none, a third all, a third a uniform prefix.
 *
 * torn: as minimal, except that the last unsynced write to each file (when
 * it is the file's last data operation) persists partly: a seeded subset of
 * its 512-byte sectors (by absolute file offset): a third of the seeds its
 * first sectors (written back in order), a third its last ones, a third any
 * mix; never all and never none when it spans two or more. A write within
 * one sector persists whole or not at all (sector writes are atomic). Bytes of sectors that did not
 * persist read as they were (or as zeros past the old end of the file). A half-written uboot.env or
 * database page.
 *
 * Then ROOT/.sim/stash is emptied. Memory-mapped writes are not seen (the
 * agent makes none; SQLite's -shm is rebuilt by SQLite).
 */
#ifndef OTASIM_POWER_H
#define OTASIM_POWER_H

#include <stdint.h>
#include "ota/err.h"
#include "otasim/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otasim_crash_model {
    OTASIM_CRASH_MINIMAL,
    OTASIM_CRASH_REORDER,
    OTASIM_CRASH_TORN,
    OTASIM_CRASH_MODEL_MAX
};
extern const char *const otasim_crash_model_names[OTASIM_CRASH_MODEL_MAX];
#define OTASIM_MAX_CRASH_SUBSETS 64 /* trials per cut, at most */
int otasim_crash_model_parse(const char *text, enum otasim_crash_model *ret,
                             struct ota_err *err) OTA_MUST;

/* One cut: the model and the seed of its subset (reorder, torn). */
struct otasim_crash {
    enum otasim_crash_model model;
    uint64_t seed;
};

struct otasim_rebuild_stats {
    uint64_t writes_undone;  /* data records rolled back */
    uint64_t bytes_restored; /* before-image bytes written back */
    uint64_t dirops_undone;  /* directory changes undone */
    uint64_t durable;        /* records kept as durable */
    uint64_t kept_unsynced;  /* reorder: records not durable that persisted anyway */
    uint64_t torn_writes;    /* torn: writes that persisted partly */
    uint64_t torn_sectors;   /* torn: sectors of those writes that persisted */
};

/* Rebuilds root per the minimal model from journal j (the interposer's
 * journal of the run that was cut; the before-images are read from the
 * journal file). Returns 0, or -errno with a reason if the tree could not be
 * rebuilt. */
int otasim_power_rebuild(const char *root, const char *journal_path,
                         struct otasim_rebuild_stats *ret, struct ota_err *err) OTA_MUST;
/* The same per crash model cm (NULL: minimal); one seed, one tree. */
int otasim_power_rebuild_model(const char *root, const char *journal_path,
                               const struct otasim_crash *cm, struct otasim_rebuild_stats *ret,
                               struct ota_err *err) OTA_MUST;

/* After a process crash (nothing lost): only drops ROOT/.sim/stash. */
int otasim_power_drop_stash(const char *root, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
