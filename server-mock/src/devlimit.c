/* Per-device token buckets (otasrv/devlimit.h), in an open-addressing
 * table under one mutex; the table doubles at half full (one entry per
 * device seen: 100,000 devices are a few MiB). */
#include "otasrv/devlimit.h"
#include "otasrv/ghlimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ota/hash.h"
#include "ota/json.h" /* ota_strlcpy */

struct bucket {
    char id[129]; /* "": free */
    double tokens;
    int64_t last_ms;
};

struct otasrv_devlimit {
    pthread_mutex_t lock;
    unsigned n;
    int64_t period_ms;
    struct bucket *b;
    size_t cap, used;
};

int otasrv_devlimit_parse(const char *s, unsigned *ret_n, int64_t *ret_period_ms)
{
    /* The GitHub face's option syntax (one parser), narrowed: the unit is
     * required and is one of s, m, h; at most 1,000,000 a period. */
    const char *slash = s ? strchr(s, '/') : NULL;

    if (!slash || !slash[1] || slash[2] || otasrv_ghlimit_parse(s, ret_n, ret_period_ms) < 0 ||
        *ret_n > 1000000)
        return -EINVAL;
    return 0;
}

int otasrv_devlimit_new(unsigned n, int64_t period_ms, struct otasrv_devlimit **ret,
                        struct ota_err *err)
{
    struct otasrv_devlimit *l = calloc(1, sizeof(*l));

    if (!n || period_ms <= 0) {
        free(l);
        return ota_err_set(err, EINVAL, "device rate limit: want N > 0 per a period");
    }
    if (!l || !(l->b = calloc(1024, sizeof(*l->b)))) {
        free(l);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    l->cap = 1024;
    l->n = n;
    l->period_ms = period_ms;
    pthread_mutex_init(&l->lock, NULL);
    *ret = l;
    return 0;
}

void otasrv_devlimit_free(struct otasrv_devlimit *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l->b);
    free(l);
}

static size_t hash(const char *k)
{
    return (size_t)ota_fnv1a64(k);
}

static struct bucket *slot(struct bucket *b, size_t cap, const char *id)
{
    size_t i = hash(id) & (cap - 1);

    while (b[i].id[0] && strcmp(b[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &b[i];
}

/* Doubles the table; 0, or -ENOMEM (the old one kept). */
static int grow(struct otasrv_devlimit *l)
{
    size_t cap = l->cap * 2;
    struct bucket *b = calloc(cap, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < l->cap; i++)
        if (l->b[i].id[0])
            *slot(b, cap, l->b[i].id) = l->b[i];
    free(l->b);
    l->b = b;
    l->cap = cap;
    return 0;
}

int otasrv_devlimit_take(struct otasrv_devlimit *l, const char *id, int64_t now_ms,
                         int64_t *ret_retry_s)
{
    struct bucket *b;
    int ok = 1;

    if (strlen(id) >= sizeof(b->id))
        return 1; /* no such device id: refused elsewhere */
    pthread_mutex_lock(&l->lock);
    if ((l->used + 1) * 2 > l->cap && grow(l) < 0)
        goto out; /* out of memory: not limited rather than refused */
    b = slot(l->b, l->cap, id);
    if (!b->id[0]) {
        ota_strlcpy(b->id, id, sizeof(b->id));
        b->tokens = l->n;
        b->last_ms = now_ms;
        l->used++;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * l->n / (double)l->period_ms;
        if (b->tokens > l->n)
            b->tokens = l->n;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        double ms = (1.0 - b->tokens) * (double)l->period_ms / l->n;
        int64_t s = (int64_t)((ms + 999.0) / 1000.0);
        *ret_retry_s = s < 1 ? 1 : s;
        ok = 0;
    }
out:
    pthread_mutex_unlock(&l->lock);
    return ok;
}
