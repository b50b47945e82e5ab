/* Range parsing: a small hand-written scanner; see range.h for the rules. */
#include "otasrv/range.h"

#include <ctype.h>
#include <stddef.h>
#include <strings.h>

const char *const otasrv_range_result_names[OTASRV_RANGE_MAX] = {"none", "partial",
                                                                 "unsatisfiable"};

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Decimal digits at *pp into *ret, saturating at UINT64_MAX. 0 if there
 * are no digits. */
static int scan_u64(const char **pp, uint64_t *ret)
{
    const char *p = *pp;
    uint64_t v = 0;
    int any = 0;

    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            v = UINT64_MAX;
        else
            v = v * 10 + d;
        any = 1;
        p++;
    }
    if (!any)
        return 0;
    *pp = p;
    *ret = v;
    return 1;
}

enum otasrv_range_result otasrv_range_parse(const char *header, uint64_t total, uint64_t *ret_start,
                                            uint64_t *ret_len)
{
    const char *p;
    uint64_t first = 0, last = 0;
    int has_first, has_last;

    if (!header)
        return OTASRV_RANGE_NONE;
    p = skip_ws(header);
    if (strncasecmp(p, "bytes", 5) != 0)
        return OTASRV_RANGE_NONE;
    p = skip_ws(p + 5);
    if (*p != '=')
        return OTASRV_RANGE_NONE;
    p = skip_ws(p + 1);
    has_first = scan_u64(&p, &first);
    p = skip_ws(p);
    if (*p != '-')
        return OTASRV_RANGE_NONE;
    p = skip_ws(p + 1);
    has_last = scan_u64(&p, &last);
    p = skip_ws(p);
    if (*p != '\0')
        return OTASRV_RANGE_NONE; /* several ranges, or junk */
    if (!has_first && !has_last)
        return OTASRV_RANGE_NONE;

    if (!has_first) { /* suffix: the last `last` bytes */
        if (last == 0 || total == 0)
            return OTASRV_RANGE_UNSATISFIABLE;
        if (last > total)
            last = total;
        *ret_start = total - last;
        *ret_len = last;
        return OTASRV_RANGE_PARTIAL;
    }
    if (has_last && last < first)
        return OTASRV_RANGE_NONE; /* invalid: ignored */
    if (first >= total)
        return OTASRV_RANGE_UNSATISFIABLE;
    if (!has_last || last >= total)
        last = total - 1;
    *ret_start = first;
    *ret_len = last - first + 1;
    return OTASRV_RANGE_PARTIAL;
}
