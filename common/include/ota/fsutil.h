/* File helpers with the durability rule: temp file, fsync, rename, fsync of
 * the directory. Never trust a write that was not made durable. */
#ifndef OTA_FSUTIL_H
#define OTA_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes n bytes to path atomically and durably (tmp in the same dir). */
int ota_fs_write_atomic(const char *path, const void *buf, size_t n, int mode,
                        struct ota_err *err) OTA_MUST;
/* fsync of the directory that holds path (path itself if it is a dir). */
/* write(2) until all n bytes are written (EINTR retried): 0, or -errno. */
int ota_fs_write_full(int fd, const void *buf, size_t n) OTA_MUST;
/* Make the temporary file `tmp`, open as `fd`, the durable `path`: fsync,
 * close (fd is closed whatever happens), rename, fsync of the directory.
 * On failure `tmp` is left for the caller to remove, unless the rename was
 * done (then only the directory's fsync failed). */
int ota_fs_publish(int fd, const char *tmp, const char *path, struct ota_err *err) OTA_MUST;

int ota_fs_sync_parent(const char *path, struct ota_err *err) OTA_MUST;
int ota_fs_sync_dir(const char *dir, struct ota_err *err) OTA_MUST;
/* mkdir -p (mode 0755); parents made durable. */
int ota_fs_mkdirs(const char *dir, struct ota_err *err) OTA_MUST;
/* rm -rf of path's contents and path itself; ENOENT is success. Does not
 * follow symlinks. */
int ota_fs_remove_tree(const char *path, struct ota_err *err) OTA_MUST;
/* Whole file into a malloc'ed NUL-terminated buffer, at most max bytes
 * (-EFBIG beyond). */
int ota_fs_read_all(const char *path, size_t max, char **ret, size_t *ret_len,
                    struct ota_err *err) OTA_MUST;
/* Free bytes for an unprivileged writer on the file system of path. */
int ota_fs_free_bytes(const char *path, uint64_t *ret, struct ota_err *err) OTA_MUST;

/* Writeback started early, for a file written front to back: once pos (the
 * end of what was written) is OTA_FS_WRITEBACK_STEP past *mark, starts the
 * kernel writing [*mark, pos) out without waiting (sync_file_range
 * SYNC_FILE_RANGE_WRITE) and moves *mark to pos. The disk then works while
 * the writer computes, and the fsync that must still follow finds little
 * left to write. It makes nothing durable and changes no byte; errors are
 * left for that fsync to report. A pos below *mark (the file was cut) moves
 * *mark back. */
#define OTA_FS_WRITEBACK_STEP (8u << 20)
void ota_fs_writeback_kick(int fd, uint64_t pos, uint64_t *mark);

#ifdef __cplusplus
}
#endif
#endif
