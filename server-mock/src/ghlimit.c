/* The GitHub face's rate limit (otasrv/ghlimit.h): a small table of windows,
 * one per key ("ip:" + the client's key, or "tok:" + an accepted token),
 * scanned linearly (tests have a handful of clients). When it is full,
 * ended windows go first, then the oldest. */
#include "otasrv/ghlimit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ota/json.h" /* ota_strlcpy */
#include "otasrv/auth.h"

#define MAX_KEYS 1024
#define KEY_LEN  200

struct bucket {
    char key[KEY_LEN];
    int64_t start_ms; /* the window opened here */
    unsigned used;
};

struct otasrv_ghlimit {
    struct otasrv_ghlimit_config cfg;
    char *strings[OTASRV_GHLIMIT_MAX_TOKENS + 1]; /* owned copies behind cfg */
    pthread_mutex_t lock;
    struct bucket *b;
    size_t n;
};

int otasrv_ghlimit_parse(const char *s, unsigned *limit, int64_t *window_ms)
{
    char *end;
    unsigned long n, w = 3600;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    n = strtoul(s, &end, 10);
    if (errno || n == 0 || n > 10000000)
        return -EINVAL;
    if (*end == '/') {
        const char *u = end + 1;
        if (strcmp(u, "h") == 0)
            w = 3600;
        else if (strcmp(u, "m") == 0)
            w = 60;
        else if (strcmp(u, "s") == 0)
            w = 1;
        else {
            if (*u < '0' || *u > '9')
                return -EINVAL;
            w = strtoul(u, &end, 10);
            if (errno || w == 0 || w > 86400 * 7 || strcmp(end, "s") != 0)
                return -EINVAL;
        }
    } else if (*end) {
        return -EINVAL;
    }
    *limit = (unsigned)n;
    *window_ms = (int64_t)w * 1000;
    return 0;
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

int otasrv_ghlimit_new(const struct otasrv_ghlimit_config *cfg, struct otasrv_ghlimit **ret,
                       struct ota_err *err)
{
    struct otasrv_ghlimit *l;
    int oom = 0, i;

    if (!cfg || cfg->limit == 0)
        return ota_err_set(err, EINVAL, "github rate limit: the limit must be at least 1");
    if (cfg->status && cfg->status != 403 && cfg->status != 429)
        return ota_err_set(err, EINVAL, "github rate limit: status %u is not 403 or 429",
                           cfg->status);
    if (cfg->window_ms < 0)
        return ota_err_set(err, EINVAL, "github rate limit: negative window");
    for (i = 0; i < OTASRV_GHLIMIT_MAX_TOKENS && cfg->tokens[i]; i++)
        if (!cfg->tokens[i][0] || strpbrk(cfg->tokens[i], " \t\r\n"))
            return ota_err_set(err, EINVAL, "github rate limit: token %d is empty or has blanks",
                               i + 1);
    l = calloc(1, sizeof(*l));
    if (!l || !(l->b = calloc(MAX_KEYS, sizeof(*l->b)))) {
        free(l);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    l->cfg = *cfg;
    if (!l->cfg.auth_limit)
        l->cfg.auth_limit = 5000;
    if (!l->cfg.window_ms)
        l->cfg.window_ms = 3600000;
    if (!l->cfg.status)
        l->cfg.status = 403;
    for (i = 0; i < OTASRV_GHLIMIT_MAX_TOKENS && cfg->tokens[i]; i++)
        l->cfg.tokens[i] = l->strings[i] = dup_or_null(cfg->tokens[i], &oom);
    l->cfg.key_header = l->strings[OTASRV_GHLIMIT_MAX_TOKENS] = dup_or_null(cfg->key_header, &oom);
    pthread_mutex_init(&l->lock, NULL);
    *ret = l;
    if (oom) {
        otasrv_ghlimit_free(l);
        *ret = NULL;
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

void otasrv_ghlimit_free(struct otasrv_ghlimit *l)
{
    if (!l)
        return;
    for (int i = 0; i <= OTASRV_GHLIMIT_MAX_TOKENS; i++)
        free(l->strings[i]);
    pthread_mutex_destroy(&l->lock);
    free(l->b);
    free(l);
}

const struct otasrv_ghlimit_config *otasrv_ghlimit_cfg(const struct otasrv_ghlimit *l)
{
    return &l->cfg;
}

static int token_known(const struct otasrv_ghlimit *l, const char *token)
{
    for (int i = 0; i < OTASRV_GHLIMIT_MAX_TOKENS && l->cfg.tokens[i]; i++)
        if (otasrv_secret_eq(l->cfg.tokens[i], token))
            return 1;
    return 0;
}

/* The key's bucket, its window current at now_ms (opened afresh when the
 * last one ended). Called with the lock held. */
static struct bucket *bucket_of(struct otasrv_ghlimit *l, const char *key, int64_t now_ms)
{
    size_t i, victim = 0;

    for (i = 0; i < l->n; i++)
        if (strcmp(l->b[i].key, key) == 0)
            break;
    if (i == l->n) {
        if (l->n == MAX_KEYS) {
            for (i = 0; i < l->n; i++) {
                if (now_ms >= l->b[i].start_ms + l->cfg.window_ms)
                    break;
                if (l->b[i].start_ms < l->b[victim].start_ms)
                    victim = i;
            }
            if (i == l->n)
                i = victim;
        } else {
            l->n++;
        }
        ota_strlcpy(l->b[i].key, key, sizeof(l->b[i].key));
        l->b[i].start_ms = now_ms;
        l->b[i].used = 0;
    }
    if (now_ms >= l->b[i].start_ms + l->cfg.window_ms || now_ms < l->b[i].start_ms) {
        l->b[i].start_ms = now_ms; /* the window ended (or the clock went back) */
        l->b[i].used = 0;
    }
    return &l->b[i];
}

void otasrv_ghlimit_take(struct otasrv_ghlimit *l, const char *client, const char *token,
                         int64_t now_ms, struct otasrv_ghlimit_verdict *ret)
{
    char key[KEY_LEN];
    struct bucket *b;
    int64_t end_ms;

    memset(ret, 0, sizeof(*ret));
    if (token && !token_known(l, token)) {
        ret->bad_token = 1; /* GitHub: 401 "Bad credentials", counted on the address */
        token = NULL;
    }
    snprintf(key, sizeof(key), "%s:%s", token ? "tok" : "ip", token ? token : client);
    ret->limit = token ? l->cfg.auth_limit : l->cfg.limit;
    pthread_mutex_lock(&l->lock);
    b = bucket_of(l, key, now_ms);
    ret->allowed = b->used < ret->limit;
    if (ret->allowed)
        b->used++;
    ret->used = b->used;
    end_ms = b->start_ms + l->cfg.window_ms;
    pthread_mutex_unlock(&l->lock);
    ret->remaining = ret->limit - ret->used;
    ret->reset_s = (end_ms + 999) / 1000;
    ret->retry_s = (end_ms - now_ms + 999) / 1000;
    if (ret->retry_s < 1)
        ret->retry_s = 1;
}
