/* The virtual clock (contract in otasrv/clock.h). One mutex guards the
 * timer list and the closed flag; now is also an atomic so that
 * otasrv_now_ms() never takes the lock. Blocking sleeps are timers whose fn
 * broadcasts the clock's condition variable. A second mutex (step_lock)
 * serialises advances, step included. */
#include "otasrv/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct otasrv_clock {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* blocking sleepers */
    pthread_mutex_t step_lock;
    _Atomic int64_t now_ms;
    struct otasrv_clock_timer *head; /* armed timers, unsorted */
    size_t armed;
    int closed;
    /* parties (otasrv_clock_parties_set): several runners on one clock */
    struct party *party;
    int n_parties;
};

/* A party of the clock: what it asked and whom to wake once the clock is
 * there. Guarded by the clock's lock. */
struct party {
    int64_t to_ms;
    int waiting, left;
    int result; /* of its last ask: 0 released at to_ms, -ECANCELED closed */
    void (*fn)(void *ctx);
    void *ctx;
};

static _Atomic(struct otasrv_clock *) installed;

int otasrv_clock_new(int64_t start_ms, struct otasrv_clock **ret, struct ota_err *err)
{
    struct otasrv_clock *c;

    if (start_ms < 0)
        return ota_err_set(err, EINVAL, "the virtual clock's start is negative");
    c = calloc(1, sizeof(*c));
    if (!c)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_mutex_init(&c->step_lock, NULL);
    atomic_store(&c->now_ms, start_ms);
    *ret = c;
    return 0;
}

void otasrv_clock_free(struct otasrv_clock *c)
{
    if (!c)
        return;
    otasrv_clock_uninstall(c);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->step_lock);
    free(c->party);
    free(c);
}

int64_t otasrv_clock_now(const struct otasrv_clock *c)
{
    return atomic_load(&((struct otasrv_clock *)c)->now_ms);
}

/* ---- timers (lock held) ---- */

static void unlink_timer(struct otasrv_clock *c, struct otasrv_clock_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        c->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    c->armed--;
}

static void run(struct otasrv_clock_timer *t, enum otasrv_clock_timer_state to)
{
    t->state = to;
    if (t->fn)
        t->fn(t->ctx);
}

enum otasrv_clock_timer_state otasrv_clock_timer_arm(struct otasrv_clock *c,
                                                     struct otasrv_clock_timer *t,
                                                     int64_t deadline_ms, void (*fn)(void *ctx),
                                                     void *ctx)
{
    enum otasrv_clock_timer_state st;

    pthread_mutex_lock(&c->lock);
    t->deadline_ms = deadline_ms;
    t->fn = fn;
    t->ctx = ctx;
    t->prev = t->next = NULL;
    if (c->closed) {
        run(t, OTASRV_TIMER_CANCELLED);
    } else if (deadline_ms <= atomic_load(&c->now_ms)) {
        run(t, OTASRV_TIMER_FIRED);
    } else {
        t->state = OTASRV_TIMER_ARMED;
        t->next = c->head;
        if (c->head)
            c->head->prev = t;
        c->head = t;
        c->armed++;
    }
    st = t->state;
    pthread_mutex_unlock(&c->lock);
    return st;
}

void otasrv_clock_timer_disarm(struct otasrv_clock *c, struct otasrv_clock_timer *t)
{
    pthread_mutex_lock(&c->lock);
    if (t->state == OTASRV_TIMER_ARMED) {
        unlink_timer(c, t);
        t->state = OTASRV_TIMER_IDLE;
    }
    pthread_mutex_unlock(&c->lock);
}

enum otasrv_clock_timer_state otasrv_clock_timer_state(struct otasrv_clock *c,
                                                       const struct otasrv_clock_timer *t)
{
    enum otasrv_clock_timer_state st;

    pthread_mutex_lock(&c->lock);
    st = t->state;
    pthread_mutex_unlock(&c->lock);
    return st;
}

/* ---- blocking sleeps ---- */

static void wake_all(void *ctx)
{
    struct otasrv_clock *c = ctx;
    pthread_cond_broadcast(&c->cond);
}

int otasrv_clock_sleep_until(struct otasrv_clock *c, int64_t deadline_ms)
{
    struct otasrv_clock_timer t = {0};
    enum otasrv_clock_timer_state st;

    otasrv_clock_timer_arm(c, &t, deadline_ms, wake_all, c);
    pthread_mutex_lock(&c->lock);
    while (t.state == OTASRV_TIMER_ARMED)
        pthread_cond_wait(&c->cond, &c->lock);
    st = t.state;
    pthread_mutex_unlock(&c->lock);
    return st == OTASRV_TIMER_FIRED ? 0 : -ECANCELED;
}

/* ---- advancing ---- */

/* Fires the timers due at now; lock held. Returns how many. */
static size_t fire_due(struct otasrv_clock *c, int64_t now)
{
    struct otasrv_clock_timer *t = c->head, *next;
    size_t n = 0;

    for (; t; t = next) {
        next = t->next;
        if (t->deadline_ms > now)
            continue;
        unlink_timer(c, t);
        run(t, OTASRV_TIMER_FIRED);
        n++;
    }
    return n;
}

/* Wakes the parties whose asked time is reached: after the step, so that
 * what they do next sees the rollouts ticked at now. */
static void release_parties(struct otasrv_clock *c, int64_t now)
{
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_parties; i++) {
        struct party *p = &c->party[i];
        if (!p->waiting || p->to_ms > now)
            continue;
        p->waiting = 0;
        p->result = 0;
        if (p->fn)
            p->fn(p->ctx);
    }
    pthread_mutex_unlock(&c->lock);
}

/* to_ms, or now + by_ms when relative. */
static int advance(struct otasrv_clock *c, int64_t to_ms, int relative, otasrv_clock_step_fn step,
                   void *ctx, size_t *ret_fired, int64_t *ret_now_ms, struct ota_err *err)
{
    int64_t now;
    size_t fired;
    int r = 0;

    pthread_mutex_lock(&c->step_lock);
    pthread_mutex_lock(&c->lock);
    now = atomic_load(&c->now_ms);
    if (relative)
        to_ms = to_ms < 0 || now > INT64_MAX - to_ms ? -1 : now + to_ms;
    if (c->closed)
        r = ota_err_set(err, ESHUTDOWN, "the server is shutting down");
    else if (to_ms < now)
        r = ota_err_set(err, ERANGE,
                        "the virtual clock only moves forward: now is %lld, asked for %lld",
                        (long long)now, (long long)to_ms);
    if (r < 0) {
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->step_lock);
        return r;
    }
    atomic_store(&c->now_ms, to_ms);
    fired = fire_due(c, to_ms);
    pthread_mutex_unlock(&c->lock);
    if (step)
        r = step(ctx, to_ms, err);
    release_parties(c, to_ms);
    pthread_mutex_unlock(&c->step_lock);
    if (ret_fired)
        *ret_fired = fired;
    if (ret_now_ms)
        *ret_now_ms = to_ms;
    return r;
}

int otasrv_clock_advance_to(struct otasrv_clock *c, int64_t to_ms, otasrv_clock_step_fn step,
                            void *ctx, size_t *ret_fired, struct ota_err *err)
{
    return advance(c, to_ms, 0, step, ctx, ret_fired, NULL, err);
}

int otasrv_clock_advance_by(struct otasrv_clock *c, int64_t by_ms, otasrv_clock_step_fn step,
                            void *ctx, size_t *ret_fired, int64_t *ret_now_ms, struct ota_err *err)
{
    return advance(c, by_ms, 1, step, ctx, ret_fired, ret_now_ms, err);
}

size_t otasrv_clock_sleepers(struct otasrv_clock *c)
{
    size_t n;

    pthread_mutex_lock(&c->lock);
    n = c->armed;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int64_t otasrv_clock_next_deadline(struct otasrv_clock *c)
{
    int64_t min = INT64_MAX;

    pthread_mutex_lock(&c->lock);
    for (struct otasrv_clock_timer *t = c->head; t; t = t->next)
        if (t->deadline_ms < min)
            min = t->deadline_ms;
    pthread_mutex_unlock(&c->lock);
    return min;
}

void otasrv_clock_close(struct otasrv_clock *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    while (c->head) {
        struct otasrv_clock_timer *t = c->head;
        unlink_timer(c, t);
        run(t, OTASRV_TIMER_CANCELLED);
    }
    for (int i = 0; i < c->n_parties; i++) {
        struct party *p = &c->party[i];
        if (!p->waiting)
            continue;
        p->waiting = 0;
        p->result = -ECANCELED;
        if (p->fn)
            p->fn(p->ctx);
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* ---- parties: a barrier of several runners ---- */

int otasrv_clock_parties_set(struct otasrv_clock *c, int n, struct ota_err *err)
{
    struct party *p;

    if (n < 1 || n > OTASRV_CLOCK_MAX_PARTIES)
        return ota_err_set(err, EINVAL, "clock parties: %d, expected 1..%d", n,
                           OTASRV_CLOCK_MAX_PARTIES);
    p = calloc((size_t)n, sizeof(*p));
    if (!p)
        return ota_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_lock(&c->lock);
    free(c->party);
    c->party = p;
    c->n_parties = n;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int otasrv_clock_parties(struct otasrv_clock *c)
{
    int n;

    pthread_mutex_lock(&c->lock);
    n = c->n_parties;
    pthread_mutex_unlock(&c->lock);
    return n;
}

void otasrv_clock_parties_state(struct otasrv_clock *c, int *ret_waiting, int *ret_left)
{
    int w = 0, l = 0;

    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_parties; i++) {
        w += c->party[i].waiting;
        l += c->party[i].left;
    }
    pthread_mutex_unlock(&c->lock);
    *ret_waiting = w;
    *ret_left = l;
}

/* Lock held: the earliest time asked when every party that has not left
 * waits (and one does), else -1. */
static int64_t barrier_due(struct otasrv_clock *c)
{
    int64_t min = INT64_MAX;
    int any = 0;

    for (int i = 0; i < c->n_parties; i++) {
        const struct party *p = &c->party[i];
        if (p->left)
            continue;
        if (!p->waiting)
            return -1;
        any = 1;
        if (p->to_ms < min)
            min = p->to_ms;
    }
    return any ? min : -1;
}

/* Runs the barrier's advance when it is due (on the calling thread). */
static int barrier_run(struct otasrv_clock *c, int64_t due, otasrv_clock_step_fn step, void *ctx,
                       struct ota_err *err)
{
    if (due < 0)
        return 0;
    return advance(c, due, 0, step, ctx, NULL, NULL, err);
}

static int party_check(struct otasrv_clock *c, int party, struct ota_err *err)
{
    if (party < 0 || party >= c->n_parties)
        return ota_err_set(err, EINVAL, "party %d: the clock has %d parties (0..%d)", party,
                           c->n_parties, c->n_parties - 1);
    if (c->closed)
        return ota_err_set(err, ESHUTDOWN, "the server is shutting down");
    if (c->party[party].left)
        return ota_err_set(err, EINVAL, "party %d has left the clock", party);
    if (c->party[party].waiting)
        return ota_err_set(err, EBUSY, "party %d waits already (for %lld)", party,
                           (long long)c->party[party].to_ms);
    return 0;
}

int otasrv_clock_party_check(struct otasrv_clock *c, int party, int64_t to_ms, struct ota_err *err)
{
    int64_t now;
    int r;

    pthread_mutex_lock(&c->lock);
    now = atomic_load(&c->now_ms);
    if ((r = party_check(c, party, err)) == 0 && to_ms < now)
        r = ota_err_set(err, ERANGE,
                        "the virtual clock only moves forward: now is %lld, asked for %lld",
                        (long long)now, (long long)to_ms);
    pthread_mutex_unlock(&c->lock);
    return r;
}

int otasrv_clock_party_ask(struct otasrv_clock *c, int party, int64_t to_ms, void (*fn)(void *ctx),
                           void *fn_ctx, otasrv_clock_step_fn step, void *ctx,
                           struct ota_err *step_err)
{
    struct ota_err e = {0};
    int64_t due;
    int r;

    if ((r = otasrv_clock_party_check(c, party, to_ms, &e)) < 0) {
        *step_err = e;
        return r;
    }
    pthread_mutex_lock(&c->lock);
    c->party[party] = (struct party){.to_ms = to_ms, .waiting = 1, .fn = fn, .ctx = fn_ctx};
    due = barrier_due(c);
    pthread_mutex_unlock(&c->lock);
    /* only the last party to ask gets here with due >= 0: every other one
     * waits and cannot ask or leave until released */
    if (barrier_run(c, due, step, ctx, &e) < 0)
        *step_err = e;
    return 0;
}

void otasrv_clock_party_forget(struct otasrv_clock *c, int party)
{
    pthread_mutex_lock(&c->lock);
    if (party >= 0 && party < c->n_parties) {
        c->party[party].fn = NULL;
        c->party[party].ctx = NULL;
    }
    pthread_mutex_unlock(&c->lock);
}

int otasrv_clock_party_result(struct otasrv_clock *c, int party)
{
    int r;

    pthread_mutex_lock(&c->lock);
    r = party >= 0 && party < c->n_parties ? c->party[party].result : -EINVAL;
    pthread_mutex_unlock(&c->lock);
    return r;
}

int otasrv_clock_party_leave(struct otasrv_clock *c, int party, otasrv_clock_step_fn step,
                             void *ctx, struct ota_err *err)
{
    int64_t due;
    int r;

    pthread_mutex_lock(&c->lock);
    if ((r = party_check(c, party, err)) < 0) {
        pthread_mutex_unlock(&c->lock);
        return r;
    }
    c->party[party].left = 1;
    due = barrier_due(c);
    pthread_mutex_unlock(&c->lock);
    return barrier_run(c, due, step, ctx, err);
}

/* ---- the process's clock ---- */

int otasrv_clock_install(struct otasrv_clock *c, struct ota_err *err)
{
    struct otasrv_clock *none = NULL;

    if (!atomic_compare_exchange_strong(&installed, &none, c))
        return ota_err_set(err, EBUSY, "another virtual clock runs in this process");
    return 0;
}

void otasrv_clock_uninstall(struct otasrv_clock *c)
{
    struct otasrv_clock *cur = c;

    atomic_compare_exchange_strong(&installed, &cur, NULL);
}

struct otasrv_clock *otasrv_clock_installed(void)
{
    return atomic_load(&installed);
}

int64_t otasrv_real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t otasrv_now_ms(void)
{
    struct otasrv_clock *c = atomic_load(&installed);

    return c ? atomic_load(&c->now_ms) : otasrv_real_now_ms();
}
