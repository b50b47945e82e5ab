/* Package extraction and image streaming over libarchive (the only file that
 * uses it). */
#ifndef OTA_ARCHIVE_H
#define OTA_ARCHIVE_H

#include <stdint.h>
#include "ota/err.h"
#include "ota/manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Extracts an app package (format DEB: the data.tar.* member of the .deb;
 * TARGZ: the tarball) into dest_dir, which must exist and be empty.
 * Refuses, with -EPERM and the entry's name: absolute paths, "..",
 * device nodes, FIFOs, sockets, hard links or symlinks that leave dest_dir.
 * Only the compression the format allows, decompressed by libarchive
 * itself (never an external program): tar.gz gzip; a .deb's data.tar,
 * .gz, .xz, .zst as its member's name says; else -EINVAL.
 * At most max_bytes of file data (the manifest's installed_size;
 * UINT64_MAX: no limit): -EFBIG before the first byte beyond.
 * Files are fsynced and directories synced before returning.
 * -ENOSPC when the disk fills, -EINVAL for a payload that is not an archive. */
int ota_archive_extract(const char *payload, enum ota_format format, const char *dest_dir,
                        uint64_t max_bytes, struct ota_err *err) OTA_MUST;

/* Sum of the regular files' sizes in a package (for ota-pack's installed_size). */
int ota_archive_installed_size(const char *payload, enum ota_format format, uint64_t *ret,
                               struct ota_err *err) OTA_MUST;

/* Streams a rootfs image (RAW, or GZ/XZ/ZST decompressed on the fly) onto
 * dev (a block device or a file standing for one), at most dev_size bytes
 * (0 = no limit), then fsyncs it. -ENOSPC if the image is larger. *ret_written
 * gets the image bytes. */
int ota_archive_write_image(const char *payload, enum ota_format format, const char *dev,
                            uint64_t dev_size, uint64_t *ret_written, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
