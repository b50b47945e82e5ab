/* Inode sets and maps for the power model's rebuild (otasim/inomap.h):
 * open addressing over 64-bit inode numbers. */
#include "otasim/inomap.h"
#include "ota/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t ihash(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

int otasim_iset_add(struct otasim_iset *s, uint64_t k)
{
    size_t i;

    if (!k)
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        struct otasim_iset t = {NULL, s->cap ? s->cap * 2 : 64, 0};
        t.v = calloc(t.cap, sizeof(*t.v));
        if (!t.v)
            return -ENOMEM;
        for (i = 0; i < s->cap; i++)
            if (s->v[i])
                ota_ignore(otasim_iset_add(&t, s->v[i]));
        free(s->v);
        *s = t;
    }
    for (i = ihash(k, s->cap); s->v[i]; i = (i + 1) & (s->cap - 1))
        if (s->v[i] == k)
            return 0;
    s->v[i] = k;
    s->n++;
    return 0;
}

int otasim_iset_has(const struct otasim_iset *s, uint64_t k)
{
    size_t i;

    if (!k || !s->cap)
        return 0;
    for (i = ihash(k, s->cap); s->v[i]; i = (i + 1) & (s->cap - 1))
        if (s->v[i] == k)
            return 1;
    return 0;
}

uint64_t *otasim_icount_slot(struct otasim_icount *m, uint64_t k)
{
    size_t i;

    if ((m->len + 1) * 2 > m->cap) {
        struct otasim_icount t = {NULL, NULL, m->cap ? m->cap * 2 : 64, 0};
        t.ino = calloc(t.cap, sizeof(*t.ino));
        t.n = calloc(t.cap, sizeof(*t.n));
        if (!t.ino || !t.n) {
            free(t.ino);
            free(t.n);
            return NULL;
        }
        for (i = 0; i < m->cap; i++) {
            if (m->ino[i]) {
                size_t j = ihash(m->ino[i], t.cap);
                while (t.ino[j])
                    j = (j + 1) & (t.cap - 1);
                t.ino[j] = m->ino[i];
                t.n[j] = m->n[i];
                t.len++;
            }
        }
        free(m->ino);
        free(m->n);
        *m = t;
    }
    for (i = ihash(k, m->cap); m->ino[i]; i = (i + 1) & (m->cap - 1))
        if (m->ino[i] == k)
            return &m->n[i];
    m->ino[i] = k;
    m->n[i] = 0;
    m->len++;
    return &m->n[i];
}

void otasim_icount_free(struct otasim_icount *m)
{
    free(m->ino);
    free(m->n);
    memset(m, 0, sizeof(*m));
}

uint64_t otasim_icount_get(const struct otasim_icount *m, uint64_t k)
{
    size_t i;

    if (!k || !m->cap)
        return 0;
    for (i = ihash(k, m->cap); m->ino[i]; i = (i + 1) & (m->cap - 1))
        if (m->ino[i] == k)
            return m->n[i];
    return 0;
}

void otasim_imap_clear(struct otasim_imap *m)
{
    for (size_t i = 0; i < m->m.cap; i++)
        free((char *)(uintptr_t)m->m.n[i]);
    otasim_icount_free(&m->m);
}

int otasim_imap_put(struct otasim_imap *m, uint64_t k, const char *p)
{
    uint64_t *v;
    char *dup;

    if (!k)
        return 0;
    if (!(v = otasim_icount_slot(&m->m, k)))
        return -ENOMEM;
    if (*v)
        return 0;
    if (!(dup = strdup(p)))
        return -ENOMEM;
    *v = (uint64_t)(uintptr_t)dup;
    return 0;
}

const char *otasim_imap_get(const struct otasim_imap *m, uint64_t k)
{
    return (const char *)(uintptr_t)otasim_icount_get(&m->m, k);
}
