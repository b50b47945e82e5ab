/* What archive.c (packages) and archive_image.c (rootfs images) share:
 * libarchive's errors in our vocabulary and the decompressors a release may
 * use. Not an API: the agent's drivers only. */
#ifndef OTA_DRIVERS_ARCHIVE_IMPL_H
#define OTA_DRIVERS_ARCHIVE_IMPL_H

#include <archive.h>

#include "ota/err.h"

#define BLOCK_SIZE     (64 * 1024)
#define IMAGE_BUF_SIZE (1024 * 1024)

/* libarchive's error on a, as -errno with its words. */
int ota_arc_fail(struct ota_err *err, struct archive *a, const char *payload);
/* A system call's errno, with a full disk always reported as ENOSPC. */
int ota_arc_sys_fail(struct ota_err *err, int e, const char *what, const char *name);
/* Enables the decompressors a release may use (gzip, xz, zstd) that this
 * libarchive has built in - never an external program. -1 if want
 * (ARCHIVE_FILTER_*) is not built in. */
int ota_arc_support_filter(struct archive *a, int want);
/* "gzip", "xz", "zstd", "none", "another". */
const char *ota_arc_filter_name(int filter);

#endif
