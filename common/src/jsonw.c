/* The JSON text writer (ota/jsonw.h). */
#include "ota/jsonw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ota_jw_raw(struct ota_jw *w, const char *s, size_t n)
{
    if (w->err)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        char *b;
        while (cap < w->len + n + 1)
            cap *= 2;
        if (!(b = realloc(w->buf, cap))) {
            w->err = -ENOMEM;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

/* Length of the UTF-8 sequence at s (1..4), 0 if it is not valid UTF-8
 * (overlong forms, surrogates, beyond U+10FFFF). */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0], cp;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* The escape of a character jansson escapes (below 0x20, '"', '\\'). */
static void escape(struct ota_jw *w, unsigned char c)
{
    static const char named[] = {'\b', 'b',  '\f', 'f', '\n', 'n',  '\r',
                                 'r',  '\t', 't',  '"', '"',  '\\', '\\'};
    char esc[8];

    for (size_t i = 0; i < sizeof(named); i += 2)
        if (named[i] == (char)c) {
            esc[0] = '\\';
            esc[1] = named[i + 1];
            ota_jw_raw(w, esc, 2);
            return;
        }
    snprintf(esc, sizeof(esc), "\\u%04X", c);
    ota_jw_raw(w, esc, 6);
}

void ota_jw_str(struct ota_jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : ""), *run = p;

    ota_jw_raw(w, "\"", 1);
    while (*p) {
        size_t n = utf8_len(p);
        if (!n) {
            if (!w->err)
                w->err = -EINVAL;
            return;
        }
        if (n > 1 || (*p >= 0x20 && *p != '"' && *p != '\\')) {
            p += n;
            continue;
        }
        ota_jw_raw(w, (const char *)run, (size_t)(p - run));
        escape(w, *p);
        run = ++p;
    }
    ota_jw_raw(w, (const char *)run, (size_t)(p - run));
    ota_jw_raw(w, "\"", 1);
}

void ota_jw_member(struct ota_jw *w, const char *lead, const char *key, const char *value)
{
    ota_jw_raw(w, lead, strlen(lead));
    ota_jw_str(w, key);
    ota_jw_raw(w, ":", 1);
    ota_jw_str(w, value);
}

int ota_jw_finish(struct ota_jw *w, char **ret)
{
    if (!w->err && !w->buf)
        ota_jw_raw(w, "", 0);
    if (w->err) {
        free(w->buf);
        w->buf = NULL;
        return w->err;
    }
    *ret = w->buf;
    w->buf = NULL;
    return 0;
}
