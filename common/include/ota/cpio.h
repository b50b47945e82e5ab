/* CPIO "new ASCII with CRC" (magic 070702), the container of SWUpdate's
 * .swu files: the writer ota-pack uses and the reader of a first member that
 * ota-server uses. Each member is a 110-byte header (the magic and 13 fields
 * of 8 hex digits: ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
 * devminor, rdevmajor, rdevminor, namesize, check), the name with its NUL
 * padded to a multiple of 4 counting from the header's start, then the data
 * padded to a multiple of 4. check is the 32-bit sum of the data's bytes.
 * The archive ends with a member named "TRAILER!!!"; the writer then pads
 * the file to a multiple of 512 bytes as GNU cpio does. */
#ifndef OTA_CPIO_H
#define OTA_CPIO_H

#include <stddef.h>
#include <stdint.h>

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_CPIO_MAGIC_CRC "070702"
#define OTA_CPIO_HDR_LEN   110
#define OTA_CPIO_NAME_MAX  255
#define OTA_CPIO_SIZE_MAX  0xffffffffULL /* filesize has 8 hex digits */

/* Adds n bytes to a member's running checksum. */
uint32_t ota_cpio_sum(uint32_t sum, const void *buf, size_t n);

/* Writes a regular file member's header and name (mode 0100644, nlink 1,
 * mtime 0 for reproducible archives) to fd at *off, which it advances. The
 * caller then writes exactly size data bytes, whose ota_cpio_sum is sum,
 * and calls ota_cpio_pad. -EINVAL for a bad name or a size over 4 GiB. */
int ota_cpio_write_header(int fd, uint64_t *off, const char *name, uint64_t size, uint32_t sum,
                          uint32_t ino, struct ota_err *err) OTA_MUST;

/* Writes the zero bytes that bring *off to a multiple of align. */
int ota_cpio_pad(int fd, uint64_t *off, unsigned align, struct ota_err *err) OTA_MUST;

/* A whole member from memory: header, data, padding. */
int ota_cpio_write_member(int fd, uint64_t *off, const char *name, const void *data, size_t n,
                          uint32_t ino, struct ota_err *err) OTA_MUST;

/* The trailer member and the padding to 512 bytes. */
int ota_cpio_write_trailer(int fd, uint64_t *off, struct ota_err *err) OTA_MUST;

/* Reads the first member of the archive in path: it must be a 070702 (or
 * 070701) member named want, at most max bytes; its data is returned
 * malloc'ed and NUL-terminated in *ret (length *ret_len). For 070702 the
 * checksum is verified. -EBADMSG with a reason for anything else. */
int ota_cpio_read_first(const char *path, const char *want, size_t max, char **ret, size_t *ret_len,
                        struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
