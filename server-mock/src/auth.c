/* Constant-time comparison of secrets (otasrv/auth.h). */
#include "otasrv/auth.h"

#include <string.h>

int otasrv_secret_eq(const char *a, const char *b)
{
    size_t la, lb, n;
    volatile unsigned char diff;

    if (!a || !b)
        return 0;
    la = strlen(a);
    lb = strlen(b);
    /* Walk the longer one to its end: past the shorter one's end compare
     * with 0 (a length difference is already counted). */
    n = la > lb ? la : lb;
    diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}
