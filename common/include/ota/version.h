/* Versions: MAJOR.MINOR.PATCH[-PRE], compared as semver (no build metadata). */
#ifndef OTA_VERSION_H
#define OTA_VERSION_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A leading 'v' is allowed ("v2.0.0"). -EINVAL if a or b is not a version.
 * ret_cmp < 0, 0, > 0 as a < b, a == b, a > b. */
int ota_version_cmp(const char *a, const char *b, int *ret_cmp) OTA_MUST;
/* 1 if s parses as a version. */
int ota_version_valid(const char *s);

#ifdef __cplusplus
}
#endif
#endif
