/* Server-sent events. One mutex guards the subscriber list and every
 * queue; publishers only copy bytes under it. A subscriber with nothing to
 * send suspends its connection inside the content reader (returning 0
 * would make the server poll it); publish and keepalive resume it. A client
 * that went away is noticed at the next write (keepalive at the latest),
 * and the response's free callback unlinks it. */
#include "otasrv/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"

struct sub {
    struct sub *next;
    struct otasrv_events *ev;
    struct otasrv_conn *conn;
    char rollout[128]; /* "" = all events */
    char *q[OTASRV_EVENTS_QUEUE];
    size_t head, n;
    uint64_t dropped;
    int suspended;
    char *cur; /* the message being sent */
    size_t cur_len, cur_off;
    int64_t last_ms;
};

struct otasrv_events {
    pthread_mutex_t lock;
    struct sub *subs;
    int closing;
};

int otasrv_events_new(struct otasrv_events **ret, struct ota_err *err)
{
    struct otasrv_events *ev = calloc(1, sizeof(*ev));

    if (!ev)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&ev->lock, NULL);
    *ret = ev;
    return 0;
}

static void wake(struct sub *s)
{
    if (s->suspended) {
        s->suspended = 0;
        otasrv_resume(s->conn);
    }
}

void otasrv_events_shutdown(struct otasrv_events *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->closing = 1;
    for (struct sub *s = ev->subs; s; s = s->next)
        wake(s);
    pthread_mutex_unlock(&ev->lock);
}

static void sub_free(struct sub *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->q[(s->head + i) % OTASRV_EVENTS_QUEUE]);
    free(s->cur);
    free(s);
}

void otasrv_events_free(struct otasrv_events *ev)
{
    if (!ev)
        return;
    while (ev->subs) {
        struct sub *s = ev->subs;
        ev->subs = s->next;
        s->ev = NULL;
        sub_free(s);
    }
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

/* Queues msg (taken) on s, dropping the oldest when full. Locked. */
static void push(struct sub *s, char *msg)
{
    if (s->n == OTASRV_EVENTS_QUEUE) {
        free(s->q[s->head]);
        s->head = (s->head + 1) % OTASRV_EVENTS_QUEUE;
        s->n--;
        s->dropped++;
    }
    s->q[(s->head + s->n) % OTASRV_EVENTS_QUEUE] = msg;
    s->n++;
    wake(s);
}

int otasrv_events_wanted(struct otasrv_events *ev, const char *rollout_id)
{
    int wanted = 0;

    if (!ev)
        return 0;
    pthread_mutex_lock(&ev->lock);
    for (struct sub *s = ev->subs; s && !wanted; s = s->next)
        wanted = !s->rollout[0] || (rollout_id && strcmp(s->rollout, rollout_id) == 0);
    pthread_mutex_unlock(&ev->lock);
    return wanted;
}

void otasrv_events_publish(struct otasrv_events *ev, const char *rollout_id, const char *name,
                           json_t *data)
{
    char *text, *msg;
    size_t len;

    if (!otasrv_events_wanted(ev, rollout_id)) {
        json_decref(data); /* nobody would read it: not even serialised */
        return;
    }
    if (!data)
        data = json_object();
    text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!text)
        return;
    len = strlen(name) + strlen(text) + 32;
    pthread_mutex_lock(&ev->lock);
    for (struct sub *s = ev->subs; s; s = s->next) {
        if (s->rollout[0] && (!rollout_id || strcmp(s->rollout, rollout_id) != 0))
            continue;
        msg = malloc(len);
        if (!msg)
            break;
        snprintf(msg, len, "event: %s\ndata: %s\n\n", name, text);
        push(s, msg);
    }
    pthread_mutex_unlock(&ev->lock);
    free(text);
}

void otasrv_events_tick(struct otasrv_events *ev, int64_t now_ms)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->lock);
    for (struct sub *s = ev->subs; s; s = s->next) {
        char *msg;
        if (now_ms - s->last_ms < OTASRV_EVENTS_KEEPALIVE || s->n)
            continue;
        msg = strdup(": keepalive\n\n");
        if (msg)
            push(s, msg);
        s->last_ms = now_ms;
    }
    pthread_mutex_unlock(&ev->lock);
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sub *s = cls;
    struct otasrv_events *ev = s->ev;
    ssize_t out = 0;

    (void)pos;
    pthread_mutex_lock(&ev->lock);
    if (!s->cur && s->dropped) {
        char tmp[96];
        snprintf(tmp, sizeof(tmp), "event: dropped\ndata: {\"count\":%llu}\n\n",
                 (unsigned long long)s->dropped);
        s->cur = strdup(tmp);
        s->dropped = 0;
    } else if (!s->cur && s->n) {
        s->cur = s->q[s->head];
        s->head = (s->head + 1) % OTASRV_EVENTS_QUEUE;
        s->n--;
    }
    if (s->cur) {
        size_t k;
        if (!s->cur_len)
            s->cur_len = strlen(s->cur);
        k = s->cur_len - s->cur_off < max ? s->cur_len - s->cur_off : max;
        memcpy(buf, s->cur + s->cur_off, k);
        s->cur_off += k;
        if (s->cur_off == s->cur_len) {
            free(s->cur);
            s->cur = NULL;
            s->cur_len = s->cur_off = 0;
        }
        out = (ssize_t)k;
    } else if (ev->closing) {
        out = OTASRV_RESP_END_OF_STREAM;
    } else {
        s->suspended = 1;
        otasrv_suspend(s->conn);
    }
    pthread_mutex_unlock(&ev->lock);
    return out;
}

static void reader_free(void *cls)
{
    struct sub *s = cls;
    struct otasrv_events *ev = s->ev;

    if (ev) {
        pthread_mutex_lock(&ev->lock);
        for (struct sub **p = &ev->subs; *p; p = &(*p)->next)
            if (*p == s) {
                *p = s->next;
                break;
            }
        pthread_mutex_unlock(&ev->lock);
    }
    sub_free(s);
}

enum otasrv_result otasrv_events_serve(struct otasrv_events *ev, struct otasrv_req *req,
                                       const char *rollout_id)
{
    struct otasrv_resp *resp;
    struct sub *s = calloc(1, sizeof(*s));

    if (!s)
        return otasrv_reply_error(req, 500, "out of memory");
    s->ev = ev;
    s->conn = req->conn;
    s->last_ms = otasrv_now_ms();
    if (rollout_id)
        ota_strlcpy(s->rollout, rollout_id, sizeof(s->rollout));
    s->q[0] = strdup(": connected\n\n");
    s->n = s->q[0] ? 1 : 0;
    resp = otasrv_resp_reader(OTASRV_RESP_SIZE_UNKNOWN, 4096, reader, s, reader_free);
    if (!resp)
        return otasrv_reply_error(req, 500, "out of memory");
    otasrv_resp_header(resp, "Content-Type", "text/event-stream");
    otasrv_resp_header(resp, "Cache-Control", "no-store");
    pthread_mutex_lock(&ev->lock);
    s->next = ev->subs;
    ev->subs = s;
    pthread_mutex_unlock(&ev->lock);
    return otasrv_reply(req, 200, resp);
}
