/* The fleet runner (otasim/fleet.h): devices on a heap of wake times, cores
 * on fibers, transfers on libcurl multi, and the virtual clock.
 *
 * The loop runs every ready device until it blocks (a transfer, a wait); it
 * drives the transfers while there are any; when nothing is ready and no
 * transfer is in flight, every device waits: virtual time jumps to the next
 * event (a device's wake, the server's next deadline), and the server's clock
 * is advanced there first, so its rollout timers fire before any device acts
 * at that time. The server is advanced in whole seconds (its timers tick at
 * that grain when real): the devices of one second act after one advance.
 *
 * A device's pass is what `ota-agent update` does once (agent/src/cli):
 * start (the recovery rule), steps to IDLE, a check, steps to IDLE, the
 * outbox flushed. Between passes a device is its durable state alone; its
 * core exists only during a pass. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fleet_impl.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/invariants.h"
#include "otasim/proc.h"
#include "otasim/rundb.h"
#include "otasim/sim.h"

#define SEC 1000LL

/* ---- heap of wake times and the ready queue -------------------------------- */

static int earlier(const struct fheap_entry *a, const struct fheap_entry *b)
{
    return a->wake_ms < b->wake_ms || (a->wake_ms == b->wake_ms && a->dev < b->dev);
}

static void heap_up(struct fleet *fl, uint32_t i)
{
    struct fheap_entry e = fl->heap[i];

    while (i > 0 && earlier(&e, &fl->heap[(i - 1) / 2])) {
        fl->heap[i] = fl->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    fl->heap[i] = e;
}

static void heap_down(struct fleet *fl, uint32_t i)
{
    struct fheap_entry e = fl->heap[i];

    for (;;) {
        uint32_t l = 2 * i + 1, m = l;
        if (l >= fl->heap_n)
            break;
        if (l + 1 < fl->heap_n && earlier(&fl->heap[l + 1], &fl->heap[l]))
            m = l + 1;
        if (!earlier(&fl->heap[m], &e))
            break;
        fl->heap[i] = fl->heap[m];
        i = m;
    }
    fl->heap[i] = e;
}

static void heap_remove_top(struct fleet *fl)
{
    fl->heap[0] = fl->heap[--fl->heap_n];
    if (fl->heap_n)
        heap_down(fl, 0);
}

/* Wake times are rounded up to the run's time grain (--grain, default 1 s):
 * devices due within one grain act together, after one advance of the
 * server's clock, as a device's timers may fire that much late. */
void fleet_wake_at(struct fleet *fl, struct fdev *d, int64_t t)
{
    if (fl->grain > 1)
        t = (t + fl->grain - 1) / fl->grain * fl->grain;
    if (fl->heap_n == fl->heap_cap) { /* only moves of waiting devices fill it past n_dev */
        uint32_t cap = fl->heap_cap ? fl->heap_cap * 2 : 1024;
        struct fheap_entry *h = realloc(fl->heap, cap * sizeof(*h));
        if (!h)
            abort(); /* as a failed push onto a full ready queue */
        fl->heap = h;
        fl->heap_cap = cap;
    }
    d->wake_ms = t;
    d->heap_gen++; /* its older entry, if any, is stale from now */
    fl->heap[fl->heap_n] = (struct fheap_entry){t, (uint32_t)(d - fl->dev), d->heap_gen};
    heap_up(fl, fl->heap_n++);
}

static void heap_drop_stale(struct fleet *fl)
{
    while (fl->heap_n) {
        const struct fdev *d = &fl->dev[fl->heap[0].dev];
        if (d->heap_gen == fl->heap[0].gen)
            return;
        heap_remove_top(fl);
    }
}

int64_t fleet_heap_next(struct fleet *fl)
{
    heap_drop_stale(fl);
    return fl->heap_n ? fl->heap[0].wake_ms : INT64_MAX;
}

struct fdev *fleet_heap_pop(struct fleet *fl)
{
    struct fdev *d;

    heap_drop_stale(fl);
    d = &fl->dev[fl->heap[0].dev];
    heap_remove_top(fl); /* its entry of the current generation: none is left */
    return d;
}

void fleet_ready(struct fleet *fl, struct fdev *d)
{
    if (fl->ready_tail - fl->ready_head == fl->ready_cap) {
        /* full: grow (the queue holds each device at most once or twice) */
        uint32_t cap = fl->ready_cap * 2, n = fl->ready_tail - fl->ready_head;
        struct fdev **q = malloc(cap * sizeof(*q));
        if (!q)
            abort();
        for (uint32_t i = 0; i < n; i++)
            q[i] = fl->ready[(fl->ready_head + i) % fl->ready_cap];
        free(fl->ready);
        fl->ready = q;
        fl->ready_cap = cap;
        fl->ready_head = 0;
        fl->ready_tail = n;
    }
    fl->ready[fl->ready_tail++ % fl->ready_cap] = d;
}

static struct fdev *ready_pop(struct fleet *fl)
{
    if (fl->ready_head == fl->ready_tail)
        return NULL;
    return fl->ready[fl->ready_head++ % fl->ready_cap];
}

void fleet_sleep_until(struct fleet *fl, struct fdev *d, int64_t t)
{
    if (t <= fl->vnow)
        t = fl->vnow;
    fleet_wake_at(fl, d, t);
    otasim_fiber_yield();
}

/* ---- one pass of a device -------------------------------------------------- */

static void on_transition(void *ctx, const struct ota_transition *t)
{
    struct fpass *p = ctx;
    struct fleet *fl = p->c.fl;
    struct fdev *d = p->d;
    const struct otasim_fleet_def *def = fl->def;
    int in_states = 0;

    d->nt++;
    if (t->to == OTA_STATE_DOWNLOADING && t->from == OTA_STATE_CHECKING) {
        d->updates++;
        if (d->offered_ms < 0)
            d->offered_ms = fl->vnow;
    }
    if (t->to == OTA_STATE_SWITCHING) {
        d->down_since_ms = fl->vnow;
        d->switch_ms = fl->vnow;
    }
    if ((t->to == OTA_STATE_COMMITTING || t->to == OTA_STATE_IDLE) && d->down_since_ms >= 0) {
        d->downtime_ms += fl->vnow - d->down_since_ms;
        d->down_since_ms = -1;
    }
    if (t->to == OTA_STATE_COMMITTING && t->version && fl->target &&
        strcmp(t->version, fl->target->version) == 0)
        d->committed_ms = fl->vnow;
    if (t->to == OTA_STATE_ROLLING_BACK) {
        d->rollbacks++;
        d->fail_ms = fl->vnow;
        d->recovered_ms = -1;
    }
    if (t->to == OTA_STATE_IDLE && d->fail_ms >= 0 && d->recovered_ms < 0)
        d->recovered_ms = fl->vnow;
    for (size_t i = 0; i < def->n_cut_states; i++)
        if (strcmp(def->cut_states[i], ota_state_names[t->to]) == 0)
            in_states = 1;
    if (!in_states)
        return;
    fl->st->cut_chances++;
    if (def->power_cut > 0 &&
        fleet_unit(fleet_hash(fl->seed ^ 0xc07, d->idx, d->nt)) < def->power_cut)
        d->cut = 1;
    else if (def->agent_crash > 0 &&
             fleet_unit(fleet_hash(fl->seed ^ 0xc4a5, d->idx, d->nt)) < def->agent_crash)
        d->crash = 1;
}

static const struct ota_agent_ops *ops_for(struct fpass *p, struct ota_agent_ops *ops)
{
    memset(ops, 0, sizeof(*ops));
    ops->transport = &fleet_transport_ops;
    ops->transport_ctx = p;
    ops->store = &fleet_store_ops;
    ops->store_ctx = p;
    ops->service = &fleet_service_ops;
    ops->service_ctx = p;
    ops->clock = &fleet_clock_ops;
    ops->clock_ctx = p;
    ops->install = &fleet_install_ops;
    ops->install_ctx = p;
    if (p->c.fl->def->rootfs) {
        ops->bootenv = &fleet_bootenv_ops;
        ops->bootenv_ctx = p;
    }
    ops->on_transition = on_transition;
    ops->transition_ctx = p;
    return ops;
}

/* Steps until IDLE, a reboot or the end of power. 0: IDLE. */
static int to_idle(struct fpass *p)
{
    struct fleet *fl = p->c.fl;
    struct ota_err e = {0};

    for (;;) {
        struct ota_step st;
        int r = ota_agent_step(p->a, &st, &e);
        fl->steps++;
        if (r < 0 || p->d->cut || p->d->crash)
            return -1;
        if (st.result == OTA_STEP_IDLE)
            return 0;
        if (st.result == OTA_STEP_REBOOT)
            return -1;
        if (st.result == OTA_STEP_WAIT)
            fleet_sleep_until(fl, p->d, st.wake_ms);
    }
}

static void pass_main(void *arg)
{
    struct fpass *p = arg;
    struct fleet *fl = p->c.fl;
    struct fdev *d = p->d;
    struct ota_agent_config *cfg;
    struct ota_agent_ops ops;
    struct ota_err e = {0};

    /* the pass slot's core, renewed with the config it has (the fleet's): no
     * 30 KiB allocation and no 7 KiB copy per pass; what differs is set here */
    if (p->a)
        ota_agent_renew(p->a, NULL, ops_for(p, &ops));
    else if (!(p->a = ota_agent_new(&fl->cfg, ops_for(p, &ops))))
        return;
    cfg = ota_agent_cfg(p->a);
    snprintf(cfg->device_id, sizeof(cfg->device_id), "d%06u", d->idx);
    ota_strlcpy(cfg->device_type, fl->def->types[d->type].value, sizeof(cfg->device_type));
    ota_strlcpy(cfg->group, fl->def->groups[d->group].value, sizeof(cfg->group));
    if (fl->def->n_zones)
        ota_strlcpy(cfg->timezone, fl->def->zones[d->zone].value, sizeof(cfg->timezone));
    cfg->n_attributes = (int)fl->def->n_attrs;
    for (size_t i = 0; i < fl->def->n_attrs; i++) {
        ota_strlcpy(cfg->attributes[i].key, fl->def->attrs[i].key, sizeof(cfg->attributes[i].key));
        ota_strlcpy(cfg->attributes[i].value, fl->def->attrs[i].values[d->attr[i]].value,
                    sizeof(cfg->attributes[i].value));
    }
    fl->passes++;
    d->npass++;
    /* as `ota-agent update`: a pass that ends waiting in STANDBY has checked
     * in for its activation already */
    if (ota_agent_start(p->a, &e) == 0 && to_idle(p) == 0 &&
        ota_agent_last_outcome(p->a, NULL) == OTA_STATUS_IN_PROGRESS &&
        ota_agent_journal(p->a)->state != OTA_STATE_STANDBY && ota_agent_check(p->a, 0, &e) == 0)
        (void)to_idle(p);
    if (!d->cut && !d->crash && !d->reboot_asked)
        ota_ignore(ota_agent_flush_outbox(p->a, NULL));
    d->checked_in = 1;
}

static struct fpass *pass_get(struct fleet *fl, struct ota_err *err)
{
    struct fpass *p = fl->free_pass;

    if (p) {
        fl->free_pass = p->next_free;
        return p;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        (void)ota_err_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    if (otasim_fiber_new(0, &p->f, err) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

static void pass_put(struct fleet *fl, struct fpass *p)
{
    p->next_free = fl->free_pass;
    fl->free_pass = p;
}

/* The device's own draw (its pass count): the same in any order of the
 * passes, so in a shard as in the whole run, and however the network
 * interleaves the passes of one grain. */
static int64_t jitter(struct fleet *fl, struct fdev *d)
{
    if (fl->def->jitter_ms <= 0)
        return 0;
    return (int64_t)(fleet_hash(fl->seed ^ 0x717, d->idx, d->npass) % (uint64_t)fl->def->jitter_ms);
}

/* A pass ended: power and crash handling, then the next wake. */
static void pass_ended(struct fleet *fl, struct fdev *d)
{
    pass_put(fl, d->pass);
    d->pass = NULL;
    fl->active--;
    if (d->cut) {
        fleet_dev_power_loss(fl, d);
        d->cut = 0;
        d->cuts++;
        fl->st->power_cuts++;
        d->boot_pending = 1;
        fleet_wake_at(fl, d, fl->vnow + fl->def->off_ms);
        return;
    }
    if (d->reboot_asked) { /* rootfs: the device reboots (the boot takes 20 s) */
        d->reboot_asked = 0;
        d->boot_pending = 1;
        fleet_wake_at(fl, d, fl->vnow + 20 * SEC);
        return;
    }
    if (d->crash) { /* systemd restarts the agent; the app keeps running */
        d->crash = 0;
        d->crashes++;
        fl->st->agent_crashes++;
        fleet_wake_at(fl, d, fl->vnow + 5 * SEC);
        return;
    }
    if (d->offline)
        return; /* registered, then never again */
    if (d->late && fl->vnow < fl->def->late_ms) {
        fleet_wake_at(fl, d, fl->def->late_ms + jitter(fl, d));
        return;
    }
    fleet_wake_at(fl, d, fl->vnow + fl->def->poll_ms + jitter(fl, d));
}

/* Runs d until it blocks or its pass ends. 0, or -errno (harness). */
static int run_device(struct fleet *fl, struct fdev *d, struct ota_err *err)
{
    if (!d->pass) {
        if (fl->active >= fl->max_active) { /* later: a pass slot frees up */
            fleet_wake_at(fl, d, fl->vnow + SEC);
            return 0;
        }
        if (d->boot_pending) { /* the device boots, then its agent runs */
            d->boot_pending = 0;
            fleet_dev_boot(fl, d);
        }
        d->pass = pass_get(fl, err);
        if (!d->pass)
            return -ENOMEM;
        d->pass->c.fl = fl;
        d->pass->c.d = d;
        d->pass->d = d;
        fl->active++;
        otasim_fiber_start(d->pass->f, pass_main, d->pass);
    }
    if (!otasim_fiber_resume(d->pass->f))
        pass_ended(fl, d);
    return 0;
}

/* ---- samples ------------------------------------------------------------------ */

static int version_idx(const struct fleet *fl, const char *v)
{
    for (size_t i = 0; v && i < fl->def->n_rel; i++)
        if (strcmp(fl->def->rel[i].version, v) == 0)
            return (int)i;
    return OTASIM_FLEET_MAX_RELEASES;
}

static int take_sample(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct sample *s;
    int r;

    if (R->n_samples == R->cap_samples) {
        size_t cap = R->cap_samples ? R->cap_samples * 2 : 256;
        struct sample *v = realloc(R->samples, cap * sizeof(*v));
        if (!v)
            return ota_err_set(err, ENOMEM, "out of memory");
        R->samples = v;
        R->cap_samples = cap;
    }
    s = &R->samples[R->n_samples++];
    memset(s, 0, sizeof(*s));
    s->t = fl->vnow;
    for (uint32_t i = 0; i < fl->n_dev; i++) {
        const struct fdev *d = &fl->dev[i];
        s->by_state[d->j ? d->j->state : OTA_STATE_IDLE]++;
        s->by_version[version_idx(fl, d->slot_ver[d->active])]++;
        s->down += !fleet_dev_service_up(fl, d);
        s->in_pass += d->pass != NULL;
    }
    if (fl->rollout_started) {
        char path[160];
        json_t *m = NULL, *keep;
        if ((r = fleet_rollout_status(fl, NULL, err)) < 0)
            return r;
        snprintf(path, sizeof(path), "/api/v1/rollouts/%s/metrics", fl->rollout_id);
        if ((r = fleet_admin_get(fl, path, &m, err)) < 0)
            return r;
        keep = json_pack("{s:O, s:O}", "by_state", json_object_get(m, "by_state"), "stages",
                         json_object_get(m, "stages"));
        s->server = keep ? json_dumps(keep, JSON_COMPACT) : NULL;
        json_decref(keep);
        json_decref(m);
    }
    ota_strlcpy(s->rollout, fl->rollout_started ? fl->rollout_state : "", sizeof(s->rollout));
    s->stage = fl->st->stage;
    if (fl->o->progress) {
        fprintf(fl->o->progress,
                "fleet %s: t=%6.2fh rollout %-10s stage %d  idle %u  in update %u  on %s %u  "
                "down %u\n",
                fl->def->name, (double)s->t / 3600000.0, s->rollout[0] ? s->rollout : "-", s->stage,
                s->by_state[OTA_STATE_IDLE], fl->n_dev - s->by_state[OTA_STATE_IDLE],
                fl->target ? fl->target->version : "?",
                fl->target ? s->by_version[version_idx(fl, fl->target->version)] : 0, s->down);
        fflush(fl->o->progress);
    }
    return 0;
}

/* ---- the loop ------------------------------------------------------------------- */

static int rollout_over(const char *s)
{
    static const char *const over[] = {"completed", "failed", "cancelled", "rolled_back", "paused"};
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++)
        if (strcmp(s, over[i]) == 0)
            return 1;
    return 0;
}

/* Moves virtual time to t: the server first, then the devices due. */
static int advance(struct run *R, int64_t t, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    int64_t srv_t = t / fl->grain * fl->grain;
    int r;

    if (srv_t > fl->srv_now && (r = fleet_clock_advance(fl, srv_t, err)) < 0)
        return r;
    fl->vnow = t;
    while (fleet_heap_next(fl) <= fl->vnow)
        fleet_ready(fl, fleet_heap_pop(fl));
    return 0;
}

/* The rollout starts once every device had its first pass (registered). */
static int64_t rollout_start_at(const struct fleet *fl)
{
    return fl->def->poll_ms + fl->def->jitter_ms + SEC;
}

/* Transfers are in flight but none ended for a while: if the server holds
 * them on its virtual clock (a fault's delay, stall or throttle), time must
 * move for them to go on: to the earlier of its deadline and the next wake. */
static int unstall(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    int64_t next;
    int r;

    if ((r = fleet_clock_query(fl, err)) < 0)
        return r;
    if (fl->srv_sleepers <= 0 || fl->srv_next == INT64_MAX)
        return 0; /* served on real time: wait */
    next = fl->srv_next;
    if (fleet_heap_next(fl) < next)
        next = fl->heap[0].wake_ms; /* fleet_heap_next left a live entry on top */
    if (next < fl->vnow)
        next = fl->vnow;
    /* the server's deadline may fall inside a second the devices already
     * live in: advance it there exactly */
    if ((r = fleet_clock_advance(fl, next > fl->srv_now ? next : fl->srv_now + 1, err)) < 0)
        return r;
    return advance(R, next, err);
}

#define READY_BATCH 16

static int loop(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    uint64_t seen_done = 0;
    int64_t quiet_since = 0;
    int r;

    for (;;) {
        struct fdev *d;
        int64_t next;

        /* A few devices at a time, then the network: the server works on
         * their requests while the next ones are made. */
        for (int k = 0; k < READY_BATCH && (d = ready_pop(fl)); k++)
            if ((r = run_device(fl, d, err)) < 0)
                return r;
        if (fleet_net_active(fl->net)) {
            if ((r = fleet_net_run(fl->net, fl->ready_head == fl->ready_tail ? 50 : 0, err)) < 0)
                return r;
            if (fleet_net_done(fl->net) != seen_done) {
                seen_done = fleet_net_done(fl->net);
                quiet_since = otasim_now_ms();
            } else if (otasim_now_ms() - quiet_since > 100) {
                if ((r = unstall(R, err)) < 0)
                    return r;
                quiet_since = otasim_now_ms();
            }
            continue;
        }
        if (fl->ready_head != fl->ready_tail)
            continue;
        /* everyone waits: the next event */
        next = fleet_heap_next(fl);
        if (fl->srv_next != INT64_MAX && fl->srv_next > fl->srv_now && fl->srv_next < next)
            next = fl->srv_next;
        if (!fl->rollout_started && rollout_start_at(fl) < next)
            next = rollout_start_at(fl);
        if (R->next_sample < next)
            next = R->next_sample;
        if (next > R->end_ms || next == INT64_MAX)
            return 0;
        if ((r = advance(R, next, err)) < 0)
            return r;
        if (!fl->rollout_started && fl->vnow >= rollout_start_at(fl) &&
            (r = fleet_rollout_start(fl, err)) < 0)
            return r;
        if (fl->vnow >= R->next_sample) {
            if ((r = take_sample(R, err)) < 0)
                return r;
            R->next_sample += R->sample_every;
            if (fl->rollout_started && rollout_over(fl->rollout_state) && !R->settle_until) {
                fl->rollout_end_ms = fl->vnow;
                /* one more poll for the devices to act on the end (a rollback order) */
                R->settle_until = fl->vnow + fl->def->poll_ms + fl->def->jitter_ms +
                                  2 * fl->def->health_window_ms + fl->def->off_ms;
                if (R->settle_until < R->end_ms)
                    R->end_ms = R->settle_until;
            }
        }
    }
}

/* ---- setup of the devices ----------------------------------------------------- */

static uint8_t pick(const struct otasim_fleet_mix *mix, size_t n, double u)
{
    double total = 0, acc = 0;

    for (size_t i = 0; i < n; i++)
        total += mix[i].share;
    for (size_t i = 0; i < n; i++) {
        acc += mix[i].share / total;
        if (u < acc)
            return (uint8_t)i;
    }
    return (uint8_t)(n - 1);
}

static int devices(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    const struct otasim_fleet_def *def = fl->def;
    const char *fac = NULL;
    uint32_t shards = fl->o->shards > 1 ? fl->o->shards : 1, total;

    for (size_t i = 0; i < def->n_rel; i++)
        if (def->rel[i].factory)
            fac = fleet_intern(fl, def->rel[i].version);
    total = fl->o->count ? fl->o->count : def->count;
    fl->n_dev = 0;
    fl->dev = calloc(total / shards + 1, sizeof(*fl->dev));
    fl->heap_cap = total / shards + 1;
    fl->heap = calloc(fl->heap_cap, sizeof(*fl->heap));
    fl->ready_cap = 1024;
    fl->ready = calloc(fl->ready_cap, sizeof(*fl->ready));
    if (!fl->dev || !fl->heap || !fl->ready || !fac)
        return ota_err_set(err, ENOMEM, "out of memory for %u devices", total);
    for (uint32_t g = 0; g < total; g++) {
        struct fdev *d;
        double u;
        if (g % shards != (shards > 1 ? fl->o->shard : 0))
            continue;
        d = &fl->dev[fl->n_dev++];
        d->idx = g;
        d->type = pick(def->types, def->n_types, fleet_unit(fleet_hash(fl->seed, g, 1)));
        d->group = pick(def->groups, def->n_groups, fleet_unit(fleet_hash(fl->seed, g, 2)));
        if (def->n_zones)
            d->zone = pick(def->zones, def->n_zones, fleet_unit(fleet_hash(fl->seed, g, 6)));
        for (size_t a = 0; a < def->n_attrs; a++)
            d->attr[a] = pick(def->attrs[a].values, def->attrs[a].n,
                              fleet_unit(fleet_hash(fl->seed, g, 7 + a)));
        u = fleet_unit(fleet_hash(fl->seed, g, 3));
        d->offline = u < def->offline;
        d->late = !d->offline && u < def->offline + def->late;
        d->slot_ver[0] = fac;
        d->active = 0;
        d->running = fac;
        d->rnd = fleet_hash(fl->seed, g, 4) | 1;
        d->offered_ms = d->committed_ms = d->down_since_ms = d->fail_ms = d->recovered_ms = -1;
        d->switch_ms = -1;
        /* first pass: spread over one poll interval */
        fleet_wake_at(fl, d, (int64_t)(fleet_hash(fl->seed, g, 5) % (uint64_t)def->poll_ms));
    }
    return 0;
}

static void agent_config(struct fleet *fl)
{
    struct ota_agent_config *c = &fl->cfg;

    ota_agent_config_defaults(c);
    c->source = OTA_SOURCE_FLEET;
    ota_strlcpy(c->server_url, fl->url, sizeof(c->server_url));
    ota_strlcpy(c->enroll_token, fl->enroll_token, sizeof(c->enroll_token));
    ota_strlcpy(c->pubkey_pem, fl->pubkey, sizeof(c->pubkey_pem));
    c->health_window_ms = fl->def->health_window_ms;
    if (fl->def->rootfs)
        for (size_t i = 0; i < fl->def->n_rel; i++)
            if (fl->def->rel[i].factory)
                ota_strlcpy(c->rootfs_version, fl->def->rel[i].version, sizeof(c->rootfs_version));
    c->health_interval_ms = fl->def->health_interval_ms;
}

/* ---- the run -------------------------------------------------------------------- */

static void teardown(struct run *R)
{
    struct fleet *fl = &R->fl;

    fleet_clock_leave(fl); /* a shard of a shared server: the others go on (fleet_shard.c) */

    for (uint32_t i = 0; fl->dev && i < fl->n_dev; i++) {
        struct fdev *d = &fl->dev[i];
        if (d->pass) {
            pass_put(fl, d->pass);
            d->pass = NULL;
        }
        fleet_dev_free(d);
    }
    while (fl->free_pass) {
        struct fpass *p = fl->free_pass;
        fl->free_pass = p->next_free;
        ota_agent_free(p->a);
        otasim_fiber_free(p->f);
        free(p);
    }
    fleet_net_free(fl->net);
    fleet_blobs_free(fl);
    fleet_intern_free(fl);
    free(fl->dev);
    free(fl->heap);
    free(fl->ready);
    for (size_t i = 0; i < R->n_samples; i++)
        free(R->samples[i].server);
    free(R->samples);
    if (R->own_server && R->srv.pid > 0)
        otasim_server_stop(&R->srv);
    if (fl->dir[0] && !fl->o->keep)
        ota_ignore(ota_fs_remove_tree(fl->dir, NULL));
}

static int finish(struct run *R, struct otasim_rundb *db, double wall0, long rss0,
                  struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    struct rusage ru;
    int r;

    if ((r = take_sample(R, err)) < 0 || (r = fleet_outcomes(R, db, err)) < 0 ||
        (r = fleet_faults_fired(R, err)) < 0)
        return r;
    ota_strlcpy(st->rollout_state, fl->rollout_state, sizeof(st->rollout_state));
    st->virtual_ms = fl->vnow;
    st->rollout_ms = (fl->rollout_end_ms ? fl->rollout_end_ms : fl->vnow) - fl->rollout_start_ms;
    st->requests = fleet_net_requests(fl->net);
    st->steps = fl->steps;
    st->passes = fl->passes;
    st->wall_s = (double)(otasim_now_ms()) / 1000.0 - wall0;
    getrusage(RUSAGE_SELF, &ru);
    st->cpu_user_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    st->cpu_sys_s = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    st->peak_rss_kib = fleet_rss_kib(getpid(), "VmHWM:");
    st->rss_per_idle_device_bytes =
        fl->n_dev ? (fleet_rss_kib(getpid(), "VmRSS:") - rss0) * 1024 / (long)fl->n_dev : 0;
    if (R->own_server) {
        st->srv_cpu_s = fleet_proc_cpu_s(R->srv.pid);
        st->srv_peak_rss_kib = fleet_rss_kib(R->srv.pid, "VmHWM:");
    }
    fleet_expectations(R);
    fleet_rerun_cmd(R, st->rerun, sizeof(st->rerun));
    return 0;
}

int otasim_fleet_run(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                     struct otasim_fleet_stats *ret, struct ota_err *err)
{
    struct run *R = calloc(1, sizeof(*R));
    struct otasim_rundb *db = NULL;
    struct fleet *fl;
    double wall0 = (double)otasim_now_ms() / 1000.0;
    long rss0;
    int r;

    if (!R)
        return ota_err_set(err, ENOMEM, "out of memory");
    fl = &R->fl;
    memset(ret, 0, sizeof(*ret));
    ret->ok = 1;
    fl->def = def;
    fl->o = o;
    fl->st = ret;
    fl->seed = o->seed ? o->seed : def->seed;
    fl->max_active = o->max_active ? o->max_active : 4096;
    fl->grain = o->grain_ms > 0 ? o->grain_ms : SEC;
    fl->srv_next = INT64_MAX;
    fl->target = otasim_fleet_release_find(def, def->rollout_release);
    otasim_http_global_init();
    if ((r = otasim_tools_find(&R->t, NULL, o->work, err)) < 0)
        goto out;
    if (fleet_intern_init(fl) < 0) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    R->own_server = !o->server_url;
    if ((r = fleet_setup(fl, &R->t, &R->srv, err)) < 0 ||
        (r = fleet_net_new(fl, o->connections ? o->connections : 256, &fl->net, err)) < 0)
        goto out;
    agent_config(fl);
    if ((r = fleet_clock_advance(fl, 0, err)) < 0 || (r = fleet_rollout_create(fl, err)) < 0)
        goto out;
    rss0 = fleet_rss_kib(getpid(), "VmRSS:");
    if ((r = devices(R, err)) < 0)
        goto out;
    R->end_ms = def->duration_ms;
    R->sample_every = def->poll_ms / 12 > 60 * SEC ? def->poll_ms / 12 : 60 * SEC;
    if ((r = fleet_db_open(R, &db, err)) < 0 || (r = loop(R, err)) < 0 ||
        (r = finish(R, db, wall0, rss0, err)) < 0 || (r = fleet_db_close(R, db, err)) < 0)
        goto out;
    r = 0;
out:
    otasim_rundb_close(db);
    teardown(R);
    free(R);
    return r;
}
