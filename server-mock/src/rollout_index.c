/* The rollout engine's index over the caller's table (rollout_impl.h):
 * what makes a tick O(1) when nothing is due and a save O(changed rows).
 *
 * - The index is bound to one table (its address and length). The engine
 *   binds it when it sees the whole table (a tick, an action); a tick given
 *   another table, a recount, or a change to a row outside the bound table
 *   unbinds it, and the next tick recounts and binds again (O(n) once).
 * - Heap: the in-flight rows (offered, in progress) by last_ms, when the
 *   rollout has a report timeout; pos[row] is the row's slot (-1: none).
 *   Keys are copies of last_ms at the last engine change: a row changed
 *   behind the engine's back is checked again when its key comes up.
 * - Dirty list: the rows whose dirty flag the engine set since the caller
 *   last wrote them (otasrv_rollout_dirty_clear). Right after a bind it is
 *   "all" (the caller scans the flags once). */
#include "rollout_impl.h"

#include <stdint.h>
#include <stdlib.h>

struct hent {
    int64_t key; /* the row's last_ms when it was placed */
    uint32_t row;
};

struct otasrv_rollout_index {
    struct otasrv_rollout_device *devs; /* the bound table; NULL = unbound */
    size_t n;
    struct hent *heap;
    size_t hn;
    int32_t *pos;    /* per row: its heap slot, -1 = not in the heap */
    uint32_t *dirty; /* rows, at most n of them */
    size_t dn;
    int dirty_all; /* the list is incomplete: scan the flags */
};

static void hswap(struct otasrv_rollout_index *x, size_t a, size_t b)
{
    struct hent t = x->heap[a];

    x->heap[a] = x->heap[b];
    x->heap[b] = t;
    x->pos[x->heap[a].row] = (int32_t)a;
    x->pos[x->heap[b].row] = (int32_t)b;
}

static void sift_up(struct otasrv_rollout_index *x, size_t i)
{
    while (i > 0 && x->heap[(i - 1) / 2].key > x->heap[i].key) {
        hswap(x, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(struct otasrv_rollout_index *x, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < x->hn && x->heap[l].key < x->heap[m].key)
            m = l;
        if (l + 1 < x->hn && x->heap[l + 1].key < x->heap[m].key)
            m = l + 1;
        if (m == i)
            return;
        hswap(x, i, m);
        i = m;
    }
}

/* Places row at key (inserts, or moves it). */
static void heap_set(struct otasrv_rollout_index *x, uint32_t row, int64_t key)
{
    int32_t p = x->pos[row];

    if (p < 0) {
        p = (int32_t)x->hn++;
        x->heap[p].row = row;
        x->pos[row] = p;
    }
    x->heap[p].key = key;
    sift_up(x, (size_t)p);
    sift_down(x, (size_t)x->pos[row]);
}

static void heap_remove(struct otasrv_rollout_index *x, uint32_t row)
{
    int32_t p = x->pos[row];

    if (p < 0)
        return;
    x->pos[row] = -1;
    if ((size_t)p != --x->hn) {
        uint32_t moved = x->heap[x->hn].row;
        x->heap[p] = x->heap[x->hn];
        x->pos[moved] = p;
        sift_up(x, (size_t)p);
        sift_down(x, (size_t)x->pos[moved]);
    }
}

void ridx_free(struct otasrv_rollout_index *x)
{
    if (!x)
        return;
    free(x->heap);
    free(x->pos);
    free(x->dirty);
    free(x);
}

int ridx_bound(const struct otasrv_rollout *r, const struct otasrv_rollout_device *devs, size_t n)
{
    return r->idx && r->idx->devs && r->idx->devs == devs && r->idx->n == n;
}

void ridx_unbind(const struct otasrv_rollout *r)
{
    if (r->idx)
        r->idx->devs = NULL;
}

static int timeouts(const struct otasrv_rollout *r)
{
    return r->def.report_timeout_ms > 0;
}

void ridx_bind(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n)
{
    struct otasrv_rollout_index *x = r->idx;
    size_t cap = n ? n : 1;

    if (!devs || n > INT32_MAX) {
        ridx_unbind(r);
        return;
    }
    if (!x && !(x = r->idx = calloc(1, sizeof(*x))))
        return;
    x->devs = NULL;
    free(x->heap);
    free(x->pos);
    free(x->dirty);
    x->heap = malloc(cap * sizeof(*x->heap));
    x->pos = malloc(cap * sizeof(*x->pos));
    x->dirty = malloc(cap * sizeof(*x->dirty));
    if (!x->heap || !x->pos || !x->dirty)
        return; /* unbound: ticks recount and scan, as without an index */
    x->hn = 0;
    x->dn = 0;
    x->dirty_all = 1;
    for (size_t i = 0; i < n; i++) {
        x->pos[i] = -1;
        if (timeouts(r) && in_flight(devs[i].state)) {
            x->heap[x->hn].key = devs[i].last_ms;
            x->heap[x->hn].row = (uint32_t)i;
            x->pos[i] = (int32_t)x->hn++;
        }
    }
    for (size_t i = x->hn / 2; i-- > 0;)
        sift_down(x, i);
    x->devs = devs;
    x->n = n;
}

void ridx_note(struct otasrv_rollout *r, struct otasrv_rollout_device *d)
{
    struct otasrv_rollout_index *x = r->idx;
    uint32_t row;

    if (!x || !x->devs) {
        d->dirty = 1;
        return;
    }
    if ((uintptr_t)d < (uintptr_t)x->devs || (uintptr_t)d >= (uintptr_t)(x->devs + x->n)) {
        d->dirty = 1;
        x->devs = NULL; /* a row of another table: rebind at the next tick */
        return;
    }
    row = (uint32_t)(d - x->devs);
    if (!d->dirty) {
        d->dirty = 1;
        if (x->dn < x->n)
            x->dirty[x->dn++] = row;
        else
            x->dirty_all = 1;
    }
    if (timeouts(r) && in_flight(d->state))
        heap_set(x, row, d->last_ms);
    else
        heap_remove(x, row);
}

/* Drops or re-places heap tops that no longer say the truth (rows changed
 * behind the engine's back): afterwards the top, if any, is an in-flight
 * row at its own last_ms. */
static void settle_top(struct otasrv_rollout_index *x)
{
    while (x->hn) {
        const struct otasrv_rollout_device *d = &x->devs[x->heap[0].row];
        if (!in_flight(d->state))
            heap_remove(x, x->heap[0].row);
        else if (d->last_ms != x->heap[0].key)
            heap_set(x, x->heap[0].row, d->last_ms);
        else
            return;
    }
}

int ridx_due(const struct otasrv_rollout *r, int64_t now_ms, struct otasrv_rollout_device **ret)
{
    struct otasrv_rollout_index *x = r->idx;

    settle_top(x);
    if (!x->hn || now_ms - x->heap[0].key < r->def.report_timeout_ms)
        return 0;
    *ret = &x->devs[x->heap[0].row];
    return 1;
}

int64_t ridx_earliest(const struct otasrv_rollout *r)
{
    struct otasrv_rollout_index *x = r->idx;

    settle_top(x);
    return x->hn ? x->heap[0].key : INT64_MAX;
}

ssize_t otasrv_rollout_dirty_rows(const struct otasrv_rollout *r,
                                  const struct otasrv_rollout_device *devs, size_t n,
                                  const uint32_t **ret_rows)
{
    if (!ridx_bound(r, devs, n) || r->idx->dirty_all)
        return -1;
    *ret_rows = r->idx->dirty;
    return (ssize_t)r->idx->dn;
}

void otasrv_rollout_dirty_clear(struct otasrv_rollout *r)
{
    if (!r->idx)
        return;
    r->idx->dn = 0;
    r->idx->dirty_all = 0;
}
