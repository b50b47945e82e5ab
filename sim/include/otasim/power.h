/* The power model: after every process of a device was killed at once,
 * rebuild the device tree as the worst case a journaling file system allows.
 *
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

struct otasim_rebuild_stats {
    uint64_t writes_undone;  /* data records rolled back */
    uint64_t bytes_restored; /* before-image bytes written back */
    uint64_t dirops_undone;  /* directory changes undone */
    uint64_t durable;        /* records kept as durable */
};

/* Rebuilds root per the model from journal j (the interposer's journal of the
 * run that was cut; the before-images are read from the journal file).
 * Returns 0, or -errno with a reason if the tree could not be rebuilt. */
int otasim_power_rebuild(const char *root, const char *journal_path,
                         struct otasim_rebuild_stats *ret, struct ota_err *err) OTA_MUST;

/* After a process crash (nothing lost): only drops ROOT/.sim/stash. */
int otasim_power_drop_stash(const char *root, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
