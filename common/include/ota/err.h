/* Error context: fallible functions return 0 or a negative errno and, when
 * given a struct ota_err, write a human-readable reason into it. Library code
 * never prints; the top level reports the reason once. */
#ifndef OTA_ERR_H
#define OTA_ERR_H

#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_MUST __attribute__((warn_unused_result))

/* Drops a result on purpose (best-effort calls); a (void) cast does not
 * silence warn_unused_result in GCC. */
static inline void ota_ignore(int r)
{
    (void)r;
}

/* The errno vocabulary: what our functions mean by the codes that decide
 * what happens next (retry, refuse, roll back). Written once, here; use the
 * names where a code is set or tested for one of these meanings. */
#define OTA_E_BAD_SIGNATURE EBADMSG /* a signature that does not verify or cannot be read */
#define OTA_E_CHECKSUM      EBADMSG /* data that is not what its manifest says: hash, size, range */
#define OTA_E_TLS           EPROTO  /* a TLS failure: never retried another way */
#define OTA_E_NO_SPACE      ENOSPC  /* the disk is full: the slot or the download dir */
#define OTA_E_REFUSED       EPERM   /* a release the device must not install (product, type) */
struct ota_err {
    int code;         /* positive errno of the first failure, 0 if none */
    char reason[512]; /* what went wrong, for a person */
};

/* Records the failure (first one wins unless overwrite) and returns -code.
 * err may be NULL. */
int ota_err_set(struct ota_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds context in front of a failure a callee has already described and
 * returns the callee's code unchanged: the one way to pass an error up with
 * more to say (never a new code, never a flattened -EIO):
 *     if ((r = ota_fs_write_atomic(p, ..., err)) < 0)
 *         return ota_err_prefix(err, r, "journal %s", name);
 * gives "journal x: <the callee's reason>". r is the callee's result (a
 * negative errno; 0 or a positive value are made a failure as by ota_err_set).
 * When err holds no reason yet, the reason is the prefix and strerror(code).
 * err may be NULL. */
int ota_err_prefix(struct ota_err *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err. err may be NULL. */
void ota_err_clear(struct ota_err *err);

#ifdef __cplusplus
}
#endif
#endif
