/* Error context: the first failure is the one that explains the rest. */
#include "ota/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ota_err_set(struct ota_err *err, int code, const char *fmt, ...)
{
    if (code < 0)
        code = -code;
    if (code == 0)
        code = 5; /* EIO: a failure must carry a code */
    if (err && err->code == 0) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
        va_end(ap);
    }
    return -code;
}

int ota_err_prefix(struct ota_err *err, int r, const char *fmt, ...)
{
    int code = r < 0 ? -r : r;
    char prefix[sizeof(err->reason)], old[sizeof(err->reason)];
    va_list ap;

    if (code == 0)
        code = 5; /* EIO, as ota_err_set */
    if (!err)
        return -code;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (err->code == 0) {
        err->code = code;
        snprintf(err->reason, sizeof(err->reason), "%s: %s", prefix, strerror(code));
        return -code;
    }
    memcpy(old, err->reason, sizeof(old));
    snprintf(err->reason, sizeof(err->reason), "%s: %s", prefix, old);
    return -code;
}

void ota_err_clear(struct ota_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->reason[0] = '\0';
}
