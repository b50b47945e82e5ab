/* Device inventory fields that both ends check the same way
 * (docs/protocol.md "Register"): attributes and the time zone. Syntax only:
 * whether a zone name exists on a system is the server's business. */
#ifndef OTA_INVENTORY_H
#define OTA_INVENTORY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTA_ATTR_MAX       16 /* attributes per device */
#define OTA_ATTR_KEY_MAX   32 /* bytes, without the NUL */
#define OTA_ATTR_VALUE_MAX 64 /* bytes, without the NUL */
#define OTA_TZ_MAX         64 /* bytes, without the NUL */

/* 1 if s is an attribute key: 1..32 bytes of [a-z0-9_]. */
int ota_attr_key_valid(const char *s);
/* 1 if s is an attribute value: 0..64 bytes of printable ASCII (0x20..0x7e). */
int ota_attr_value_valid(const char *s);

/* A time zone: "UTC", "Z", a fixed offset "+HH:MM" / "-HH:MM" (up to 14:00),
 * or an IANA name: 1..64 bytes of [A-Za-z0-9_+-/], non-empty components
 * separated by single '/' (no '.': nothing like ".."), not starting with
 * '/', '-' or '+'.
 * 1 if s is one of them. */
int ota_timezone_valid(const char *s);
/* A fixed offset's seconds east of UTC in *ret_s: 1 for "UTC", "Z" and
 * "+HH:MM"/"-HH:MM", 0 for an IANA name (or anything else). */
int ota_timezone_fixed(const char *s, int *ret_s);

#ifdef __cplusplus
}
#endif
#endif
