/* Semantic versions (semver 2.0.0 precedence, without build metadata).
 *
 * Numbers are compared as digit strings (length first, then digits), which
 * is exact for any length because leading zeros are refused; nothing can
 * overflow. The parser only records spans into the caller's string. */
#include "ota/version.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

struct span {
    const char *p;
    size_t n;
};

struct version {
    struct span core[3];
    struct span pre; /* n == 0: no pre-release */
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_ident_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A numeric part: digits, no leading zero unless it is "0". */
static size_t scan_number(const char *s)
{
    size_t n = 0;

    while (is_digit(s[n]))
        n++;
    if (n > 1 && s[0] == '0')
        return 0;
    return n;
}

static int all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(p[i]))
            return 0;
    return 1;
}

/* Pre-release: dot-separated non-empty identifiers of [0-9A-Za-z-];
 * numeric ones without leading zeros. Returns its length, 0 if invalid. */
static size_t scan_prerelease(const char *s)
{
    size_t i = 0;

    for (;;) {
        size_t start = i;

        while (is_ident_char(s[i]))
            i++;
        if (i == start)
            return 0;
        if (all_digits(s + start, i - start) && i - start > 1 && s[start] == '0')
            return 0;
        if (s[i] != '.')
            return i;
        i++;
    }
}

static int parse(const char *s, struct version *ret)
{
    struct version v = {0};

    if (!s)
        return -EINVAL;
    if (*s == 'v')
        s++;
    for (int k = 0; k < 3; k++) {
        size_t n = scan_number(s);

        if (n == 0)
            return -EINVAL;
        v.core[k] = (struct span){s, n};
        s += n;
        if (k < 2) {
            if (*s != '.')
                return -EINVAL;
            s++;
        }
    }
    if (*s == '-') {
        size_t n = scan_prerelease(s + 1);

        if (n == 0)
            return -EINVAL;
        v.pre = (struct span){s + 1, n};
        s += 1 + n;
    }
    if (*s != '\0')
        return -EINVAL;
    *ret = v;
    return 0;
}

static int cmp_numeric(const char *a, size_t an, const char *b, size_t bn)
{
    int c;

    if (an != bn)
        return an < bn ? -1 : 1;
    c = memcmp(a, b, an);
    return (c > 0) - (c < 0);
}

static int cmp_ident(const char *a, size_t an, const char *b, size_t bn)
{
    int ad = all_digits(a, an), bd = all_digits(b, bn);
    size_t m = an < bn ? an : bn;
    int c;

    if (ad && bd)
        return cmp_numeric(a, an, b, bn);
    if (ad != bd)
        return ad ? -1 : 1; /* numeric identifiers sort before alphanumeric */
    c = memcmp(a, b, m);
    if (c != 0)
        return (c > 0) - (c < 0);
    return an == bn ? 0 : (an < bn ? -1 : 1);
}

static int cmp_prerelease(struct span a, struct span b)
{
    size_t i = 0, j = 0;

    /* A version without pre-release ranks above any pre-release of it. */
    if (a.n == 0 || b.n == 0)
        return a.n == b.n ? 0 : (a.n == 0 ? 1 : -1);
    for (;;) {
        size_t ie = i, je = j;
        int c;

        while (ie < a.n && a.p[ie] != '.')
            ie++;
        while (je < b.n && b.p[je] != '.')
            je++;
        c = cmp_ident(a.p + i, ie - i, b.p + j, je - j);
        if (c != 0)
            return c;
        i = ie + 1;
        j = je + 1;
        if (i > a.n || j > b.n) /* one ran out: the shorter list ranks lower */
            return (i > a.n && j > b.n) ? 0 : (i > a.n ? -1 : 1);
    }
}

int ota_version_cmp(const char *a, const char *b, int *ret_cmp)
{
    struct version va, vb;
    int c = 0;

    if (parse(a, &va) < 0 || parse(b, &vb) < 0)
        return -EINVAL;
    for (int k = 0; k < 3 && c == 0; k++)
        c = cmp_numeric(va.core[k].p, va.core[k].n, vb.core[k].p, vb.core[k].n);
    if (c == 0)
        c = cmp_prerelease(va.pre, vb.pre);
    *ret_cmp = c;
    return 0;
}

int ota_version_valid(const char *s)
{
    struct version v;

    return parse(s, &v) == 0;
}
