/* Inventory field syntax (ota/inventory.h). */
#include "ota/inventory.h"

#include <string.h>

int ota_attr_key_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n < 1 || n > OTA_ATTR_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

int ota_attr_value_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (!s || n > OTA_ATTR_VALUE_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

int ota_timezone_fixed(const char *s, int *ret_s)
{
    int h, m;

    if (!s)
        return 0;
    if (strcmp(s, "UTC") == 0 || strcmp(s, "Z") == 0) {
        *ret_s = 0;
        return 1;
    }
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || !digit(s[1]) || !digit(s[2]) ||
        s[3] != ':' || !digit(s[4]) || !digit(s[5]))
        return 0;
    h = (s[1] - '0') * 10 + (s[2] - '0');
    m = (s[4] - '0') * 10 + (s[5] - '0');
    if (m > 59 || h > 14 || (h == 14 && m))
        return 0;
    *ret_s = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    return 1;
}

int ota_timezone_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *p, *start;
    int off;

    if (ota_timezone_fixed(s, &off))
        return 1;
    if (n < 1 || n > OTA_TZ_MAX || s[0] == '/' || s[0] == '-' || s[0] == '+')
        return 0;
    for (p = s, start = s;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t len = (size_t)(p - start);
            if (len == 0) /* "a//b", "a/" ('.' is not in the alphabet: no "..") */
                return 0;
            if (!*p)
                return 1;
            start = p + 1;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || digit(*p) || *p == '_' ||
              *p == '+' || *p == '-'))
            return 0;
    }
}
