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

struct sample {
    int64_t t;
    uint32_t by_state[OTA_STATE_MAX];
    uint32_t by_version[OTASIM_FLEET_MAX_RELEASES + 1]; /* last: other */
    uint32_t down, in_pass;
    char rollout[16];
    int stage;
};

struct run {
    struct fleet fl;
    struct otasim_tools t;
    struct otasim_server srv;
    int own_server;
    struct sample *samples;
    size_t n_samples, cap_samples;
    int64_t next_sample, sample_every;
    int64_t end_ms;       /* virtual: the run stops here */
    int64_t settle_until; /* after the rollout ended: devices finish what they do */
};

/* ---- heap of wake times and the ready queue -------------------------------- */

static int earlier(const struct fdev *a, const struct fdev *b)
{
    return a->wake_ms < b->wake_ms || (a->wake_ms == b->wake_ms && a->idx < b->idx);
}

static void heap_swap(struct fleet *fl, uint32_t i, uint32_t j)
{
    struct fdev *t = fl->heap[i];

    fl->heap[i] = fl->heap[j];
    fl->heap[j] = t;
    fl->heap[i]->heap_pos = i + 1;
    fl->heap[j]->heap_pos = j + 1;
}

static void heap_up(struct fleet *fl, uint32_t i)
{
    while (i > 0 && earlier(fl->heap[i], fl->heap[(i - 1) / 2])) {
        heap_swap(fl, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct fleet *fl, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < fl->heap_n && earlier(fl->heap[l], fl->heap[m]))
            m = l;
        if (r < fl->heap_n && earlier(fl->heap[r], fl->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(fl, i, m);
        i = m;
    }
}

static void wake_at(struct fleet *fl, struct fdev *d, int64_t t)
{
    d->wake_ms = t;
    if (d->heap_pos) {
        uint32_t i = d->heap_pos - 1;
        heap_up(fl, i);
        heap_down(fl, d->heap_pos - 1);
        return;
    }
    fl->heap[fl->heap_n] = d;
    d->heap_pos = ++fl->heap_n;
    heap_up(fl, fl->heap_n - 1);
}

static struct fdev *heap_pop(struct fleet *fl)
{
    struct fdev *d = fl->heap[0];

    heap_swap(fl, 0, fl->heap_n - 1);
    fl->heap_n--;
    d->heap_pos = 0;
    if (fl->heap_n)
        heap_down(fl, 0);
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
    wake_at(fl, d, t);
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
    struct ota_agent_config cfg = fl->cfg;
    struct ota_agent_ops ops;
    struct ota_err e = {0};

    snprintf(cfg.device_id, sizeof(cfg.device_id), "d%06u", d->idx);
    ota_strlcpy(cfg.device_type, fl->def->types[d->type].value, sizeof(cfg.device_type));
    ota_strlcpy(cfg.group, fl->def->groups[d->group].value, sizeof(cfg.group));
    if (fl->def->n_zones)
        ota_strlcpy(cfg.timezone, fl->def->zones[d->zone].value, sizeof(cfg.timezone));
    cfg.n_attributes = (int)fl->def->n_attrs;
    for (size_t i = 0; i < fl->def->n_attrs; i++) {
        ota_strlcpy(cfg.attributes[i].key, fl->def->attrs[i].key, sizeof(cfg.attributes[i].key));
        ota_strlcpy(cfg.attributes[i].value, fl->def->attrs[i].values[d->attr[i]].value,
                    sizeof(cfg.attributes[i].value));
    }
    p->a = ota_agent_new(&cfg, ops_for(p, &ops));
    if (!p->a)
        return;
    fl->passes++;
    /* as `ota-agent update`: a pass that ends waiting in STANDBY has checked
     * in for its activation already */
    if (ota_agent_start(p->a, &e) == 0 && to_idle(p) == 0 &&
        ota_agent_last_outcome(p->a, NULL) == OTA_STATUS_IN_PROGRESS &&
        ota_agent_journal(p->a)->state != OTA_STATE_STANDBY && ota_agent_check(p->a, 0, &e) == 0)
        (void)to_idle(p);
    if (!d->cut && !d->crash)
        ota_ignore(ota_agent_flush_outbox(p->a, NULL));
    d->checked_in = 1;
    ota_agent_free(p->a);
    p->a = NULL;
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

static int64_t jitter(struct fleet *fl, struct fdev *d)
{
    if (fl->def->jitter_ms <= 0)
        return 0;
    return (int64_t)(fleet_hash(fl->seed ^ 0x717, d->idx, d->nt + fl->passes) %
                     (uint64_t)fl->def->jitter_ms);
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
        wake_at(fl, d, fl->vnow + fl->def->off_ms);
        return;
    }
    if (d->crash) { /* systemd restarts the agent; the app keeps running */
        d->crash = 0;
        d->crashes++;
        fl->st->agent_crashes++;
        wake_at(fl, d, fl->vnow + 5 * SEC);
        return;
    }
    if (d->offline)
        return; /* registered, then never again */
    if (d->late && fl->vnow < fl->def->late_ms) {
        wake_at(fl, d, fl->def->late_ms + jitter(fl, d));
        return;
    }
    wake_at(fl, d, fl->vnow + fl->def->poll_ms + jitter(fl, d));
}

/* Runs d until it blocks or its pass ends. 0, or -errno (harness). */
static int run_device(struct fleet *fl, struct fdev *d, struct ota_err *err)
{
    if (!d->pass) {
        if (fl->active >= fl->max_active) { /* later: a pass slot frees up */
            wake_at(fl, d, fl->vnow + SEC);
            return 0;
        }
        if (d->boot_pending) { /* the device boots: the app starts from `current` */
            d->boot_pending = 0;
            d->running = d->slot_ver[d->active];
            d->svc_start_ms = fl->vnow;
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
    if (fl->rollout_started && (r = fleet_rollout_status(fl, NULL, err)) < 0)
        return r;
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
    int64_t srv_t = t / SEC * SEC;
    int r;

    if (srv_t > fl->srv_now && (r = fleet_clock_advance(fl, srv_t, err)) < 0)
        return r;
    fl->vnow = t;
    while (fl->heap_n && fl->heap[0]->wake_ms <= fl->vnow)
        fleet_ready(fl, heap_pop(fl));
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
    if (fl->heap_n && fl->heap[0]->wake_ms < next)
        next = fl->heap[0]->wake_ms;
    if (next < fl->vnow)
        next = fl->vnow;
    /* the server's deadline may fall inside a second the devices already
     * live in: advance it there exactly */
    if ((r = fleet_clock_advance(fl, next > fl->srv_now ? next : fl->srv_now + 1, err)) < 0)
        return r;
    return advance(R, next, err);
}

static int loop(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    uint64_t seen_done = 0;
    int64_t quiet_since = 0;
    int r;

    for (;;) {
        struct fdev *d;
        int64_t next;

        while ((d = ready_pop(fl)))
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
        /* everyone waits: the next event */
        next = fl->heap_n ? fl->heap[0]->wake_ms : INT64_MAX;
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
    fl->heap = calloc(total / shards + 1, sizeof(*fl->heap));
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
        wake_at(fl, d, (int64_t)(fleet_hash(fl->seed, g, 5) % (uint64_t)def->poll_ms));
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
    c->health_interval_ms = fl->def->health_interval_ms;
}

/* ---- the end: outcomes, figures, expectations ----------------------------------- */

static void expect_fail(struct otasim_fleet_stats *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void expect_fail(struct otasim_fleet_stats *st, const char *fmt, ...)
{
    size_t k = strlen(st->failed);
    va_list ap;

    st->ok = 0;
    if (k + 2 >= sizeof(st->failed))
        return;
    va_start(ap, fmt);
    vsnprintf(st->failed + k, sizeof(st->failed) - k, fmt, ap);
    va_end(ap);
    k = strlen(st->failed);
    if (k + 1 < sizeof(st->failed)) {
        st->failed[k] = '\n';
        st->failed[k + 1] = 0;
    }
}

static double pct(uint32_t a, uint32_t b)
{
    return b ? 100.0 * a / b : 0;
}

static void switches_in_window(struct run *R);

static void expectations(struct run *R)
{
    const struct otasim_fleet_def *def = R->fl.def;
    struct otasim_fleet_stats *st = R->fl.st;
    int64_t late_commit = 0;
    uint32_t committed = 0;

    if (def->n_expect_rollout) {
        int ok = 0;
        for (size_t i = 0; i < def->n_expect_rollout; i++)
            ok |= strcmp(def->expect_rollout[i], st->rollout_state) == 0;
        if (!ok)
            expect_fail(st, "rollout: ended '%s' (%s), expected %s%s", st->rollout_state,
                        st->rollout_reason, def->expect_rollout[0],
                        def->n_expect_rollout > 1 ? " or another listed" : "");
    }
    if (def->expect_bad_max_percent >= 0 &&
        pct(st->bad_installed, st->devices) > def->expect_bad_max_percent)
        expect_fail(st,
                    "bad_installed_max_percent: %u devices (%.2f%% of %u) ran a bad release, "
                    "at most %.2f%% allowed",
                    st->bad_installed, pct(st->bad_installed, st->devices), st->devices,
                    def->expect_bad_max_percent);
    if (def->expect_bricked_max >= 0 && st->bricked > (uint32_t)def->expect_bricked_max)
        expect_fail(st, "bricked_max: %u devices bricked (service not up), at most %ld",
                    st->bricked, def->expect_bricked_max);
    if (def->expect_inconsistent_max >= 0 &&
        st->inconsistent > (uint32_t)def->expect_inconsistent_max)
        expect_fail(st, "inconsistent_max: %u devices failed an invariant, at most %ld",
                    st->inconsistent, def->expect_inconsistent_max);
    if (def->expect_stuck_max >= 0 && st->stuck > (uint32_t)def->expect_stuck_max)
        expect_fail(st, "stuck_max: %u devices did not settle, at most %ld", st->stuck,
                    def->expect_stuck_max);
    if (def->expect_min_on_target_percent >= 0 &&
        pct(st->on_target, st->online) < def->expect_min_on_target_percent)
        expect_fail(st,
                    "on_target_min_percent: %u of %u online devices (%.2f%%) run %s, at least "
                    "%.2f%% expected",
                    st->on_target, st->online, pct(st->on_target, st->online),
                    def->expect_target_version[0] ? def->expect_target_version
                                                  : def->rollout_release,
                    def->expect_min_on_target_percent);
    if (def->expect_switch_in_window)
        switches_in_window(R);
    if (def->expect_committed_within_ms >= 0) {
        for (uint32_t i = 0; i < R->fl.n_dev; i++) {
            const struct fdev *d = &R->fl.dev[i];
            if (d->committed_ms < 0 || d->offered_ms < 0)
                continue;
            committed++;
            if (d->committed_ms - d->offered_ms > late_commit)
                late_commit = d->committed_ms - d->offered_ms;
        }
        if (late_commit > def->expect_committed_within_ms)
            expect_fail(st,
                        "committed_within: the slowest of %u commits took %.2f h from the "
                        "offer, at most %.2f h",
                        committed, late_commit / 3600000.0,
                        def->expect_committed_within_ms / 3600000.0);
    }
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* mean and p95 of v[0..n) (sorted in place); 0 when empty */
static void mean_p95(double *v, size_t n, double *ret_mean, double *ret_p95)
{
    double sum = 0;

    *ret_mean = *ret_p95 = 0;
    if (!n)
        return;
    qsort(v, n, sizeof(*v), cmp_dbl);
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    *ret_mean = sum / (double)n;
    *ret_p95 = v[(size_t)ceil(0.95 * (double)n) - 1];
}

static const char *outcome_of(const struct fleet *fl, const struct fdev *d, int ok,
                              const char *target)
{
    if (d->offline)
        return "offline";
    if (!fleet_dev_service_up(fl, d))
        return "bricked";
    if (d->pass || (d->j && d->j->state != OTA_STATE_IDLE) || d->outbox)
        return "stuck";
    if (!ok)
        return "inconsistent";
    if (d->running && strcmp(d->running, target) == 0)
        return "on_target";
    return d->rollbacks ? "rolled_back" : "other_version";
}

static int device_row(struct run *R, struct otasim_rundb *db, const struct fdev *d,
                      const char *outcome, const char *failed, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_rundb_fleet_device row;
    char id[16];

    snprintf(id, sizeof(id), "d%06u", d->idx);
    memset(&row, 0, sizeof(row));
    row.device = id;
    row.type = fl->def->types[d->type].value;
    row.group = fl->def->groups[d->group].value;
    row.version = d->running ? d->running : "";
    row.state = ota_state_names[d->j ? d->j->state : OTA_STATE_IDLE];
    row.outcome = outcome;
    row.bytes = d->bytes_down;
    row.downtime_ms = d->updates ? d->downtime_ms : -1;
    row.recovery_ms = d->recovered_ms >= 0 ? d->recovered_ms - d->fail_ms : -1;
    row.updates = d->updates;
    row.rollbacks = d->rollbacks;
    row.cuts = d->cuts;
    row.checks = failed;
    return otasim_rundb_fleet_device(db, fl->st->fleet_id, &row, err);
}

struct figures {
    double *down, *bytes, *rec;
    size_t n_down, n_bytes, n_rec;
};

static void figure(struct figures *f, const struct fdev *d)
{
    f->bytes[f->n_bytes++] = (double)d->bytes_down;
    if (d->updates)
        f->down[f->n_down++] = (double)d->downtime_ms / d->updates;
    if (d->recovered_ms >= 0 && d->fail_ms >= 0)
        f->rec[f->n_rec++] = (double)(d->recovered_ms - d->fail_ms);
}

static void figures_done(struct figures *f, struct otasim_fleet_stats *st)
{
    double unused;

    mean_p95(f->down, f->n_down, &st->downtime_mean_ms, &st->downtime_p95_ms);
    mean_p95(f->bytes, f->n_bytes, &st->bytes_mean, &unused);
    st->bytes_max = f->n_bytes ? f->bytes[f->n_bytes - 1] : 0;
    mean_p95(f->rec, f->n_rec, &st->recovery_mean_ms, &st->recovery_p95_ms);
    st->recovered = (uint32_t)f->n_rec;
}

/* Minutes after local midnight of unix time ms in zone tz ("" UTC). The
 * runner is one thread: TZ is switched around localtime_r and restored. */
static int local_minute(const char *tz, int64_t ms)
{
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    setenv("TZ", tz && tz[0] ? tz : "UTC", 1);
    tzset();
    localtime_r(&t, &tm);
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return tm.tm_hour * 60 + tm.tm_min;
}

/* Every switch inside the rollout definition's window (local time). */
static void switches_in_window(struct run *R)
{
    struct fleet *fl = &R->fl;
    json_t *def = json_loads(fl->def->rollout_json, 0, NULL);
    json_t *w = json_object_get(def, "window");
    int sh, sm, eh, em, start, end;
    uint32_t switched = 0, outside = 0;
    char first[160] = "";

    if (!w ||
        sscanf(json_string_value(json_object_get(w, "start")) ?: "", "%d:%d", &sh, &sm) != 2 ||
        sscanf(json_string_value(json_object_get(w, "end")) ?: "", "%d:%d", &eh, &em) != 2) {
        expect_fail(fl->st, "switch_in_window: the rollout definition has no window");
        json_decref(def);
        return;
    }
    json_decref(def);
    start = sh * 60 + sm;
    end = eh * 60 + em;
    for (uint32_t i = 0; i < fl->n_dev; i++) {
        const struct fdev *d = &fl->dev[i];
        const char *tz = fl->def->n_zones ? fl->def->zones[d->zone].value : "UTC";
        int m, in;
        if (d->switch_ms < 0)
            continue;
        switched++;
        m = local_minute(tz, fl->def->start_ms + d->switch_ms);
        in = start < end ? (m >= start && m < end) : (m >= start || m < end);
        if (!in && !outside++)
            snprintf(first, sizeof(first), "d%06u (%s) switched at %02d:%02d local", d->idx, tz,
                     m / 60, m % 60);
    }
    if (outside || !switched)
        expect_fail(fl->st, "switch_in_window: %u of %u switches outside %02d:%02d-%02d:%02d%s%s",
                    outside, switched, sh, sm, eh, em, first[0] ? ", first: " : "", first);
}

static int outcomes(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    const char *target = fl->def->expect_target_version[0] ? fl->def->expect_target_version
                                                           : fl->def->rollout_release;
    json_t **reports = calloc(fl->n_dev ? fl->n_dev : 1, sizeof(*reports));
    struct figures f = {0};
    size_t n = fl->n_dev ? fl->n_dev : 1;
    int r = 0;

    f.down = calloc(n, sizeof(double));
    f.bytes = calloc(n, sizeof(double));
    f.rec = calloc(n, sizeof(double));
    if (!reports || !f.down || !f.bytes || !f.rec) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = fleet_final_reports(fl, reports, err)) < 0)
        goto out;
    for (uint32_t i = 0; i < fl->n_dev; i++) {
        struct fdev *d = &fl->dev[i];
        const char *oc;
        char failed[512] = "";
        int ok = 1;
        st->devices++;
        if (!d->offline) {
            st->online++;
            st->bytes_down += d->bytes_down;
            st->bad_installed += d->bad_seen;
            st->rolled_back += d->rollbacks > 0;
            st->never_checked_in += !d->checked_in;
            figure(&f, d);
            if ((r = fleet_check_device(fl, d, reports[i], failed, sizeof(failed), &ok)) < 0)
                goto out;
            if (!fleet_dev_service_up(fl, d))
                st->bricked++;
            if (d->pass || (d->j && d->j->state != OTA_STATE_IDLE) || d->outbox)
                st->stuck++;
            if (!ok) {
                st->inconsistent++;
                if (fl->o->verbose && st->inconsistent <= 10 && fl->o->progress)
                    fprintf(fl->o->progress, "fleet: d%06u: %s\n", d->idx, failed);
            }
            if (d->running && strcmp(d->running, target) == 0 &&
                (!d->j || d->j->state == OTA_STATE_IDLE))
                st->on_target++;
        }
        oc = outcome_of(fl, d, ok, target);
        if (fl->o->calib) /* the calibration (fleet_native.c) */
            fleet_calib_record(fl, d, reports[i]);
        if (db && (r = device_row(R, db, d, oc, failed, err)) < 0)
            goto out;
    }
    figures_done(&f, st);
out:
    for (uint32_t i = 0; reports && i < fl->n_dev; i++)
        json_decref(reports[i]);
    free(reports);
    free(f.down);
    free(f.bytes);
    free(f.rec);
    return r;
}

/* ---- faults at rates, seen to fire --------------------------------------------- */

/* k fired of n draws at rate p: fired at all when it should have (n p >= 3),
 * and the rate inside a 99.9% Wilson interval of k/n. */
static int rate_ok(uint64_t k, uint64_t n, double p, char *why, size_t cap)
{
    double lo, hi;

    if (n == 0 || p <= 0) {
        snprintf(why, cap, "no draws");
        return 1;
    }
    otasim_wilson((uint32_t)k, (uint32_t)n, 3.29, &lo, &hi);
    snprintf(why, cap, "%llu of %llu (%.4f, 99.9%% interval %.4f..%.4f) at a configured %.4f",
             (unsigned long long)k, (unsigned long long)n, (double)k / (double)n, lo, hi, p);
    if ((double)n * p >= 3 && k == 0)
        return 0;
    return lo <= p && p <= hi;
}

static void fault_line(struct otasim_fleet_stats *st, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fault_line(struct otasim_fleet_stats *st, int ok, const char *fmt, ...)
{
    size_t k = strlen(st->faults);
    va_list ap;

    if (k + 4 >= sizeof(st->faults))
        return;
    k += (size_t)snprintf(st->faults + k, sizeof(st->faults) - k, "%s ", ok ? "ok" : "FAILED");
    va_start(ap, fmt);
    vsnprintf(st->faults + k, sizeof(st->faults) - k, fmt, ap);
    va_end(ap);
    k = strlen(st->faults);
    if (k + 1 < sizeof(st->faults)) {
        st->faults[k] = '\n';
        st->faults[k + 1] = 0;
    }
}

static int faults_fired(struct run *R, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    const struct otasim_fleet_def *def = fl->def;
    char why[200];
    json_t *plan = NULL, *rule;
    size_t i;
    int r, ok;

    if (def->power_cut > 0) {
        ok = rate_ok(st->power_cuts, st->cut_chances, def->power_cut, why, sizeof(why));
        fault_line(st, ok, "power_cut: %s", why);
        if (!ok)
            expect_fail(st, "faults: power cuts fired %s", why);
    }
    if (def->agent_crash > 0) {
        /* a crash is drawn only where no cut was */
        uint64_t n = st->cut_chances - st->power_cuts;
        ok = rate_ok(st->agent_crashes, n, def->agent_crash, why, sizeof(why));
        fault_line(st, ok, "agent_crash: %s", why);
        if (!ok)
            expect_fail(st, "faults: agent crashes fired %s", why);
    }
    if (!def->server_faults_json)
        return 0;
    if ((r = fleet_admin_get(fl, "/api/v1/faults", &plan, err)) < 0)
        return ota_err_prefix(err, r, "reading the server's fault counters");
    json_array_foreach(json_object_get(plan, "rules"), i, rule)
    {
        json_t *m = json_object_get(rule, "match");
        const char *id = json_string_value(json_object_get(rule, "id"));
        uint64_t matched = (uint64_t)json_integer_value(json_object_get(rule, "matched"));
        uint64_t applied = (uint64_t)json_integer_value(json_object_get(rule, "applied"));
        json_t *p = json_object_get(m, "probability");
        int counted = json_object_get(m, "nth") || json_object_get(m, "after") ||
                      json_object_get(m, "every") || json_object_get(rule, "count");
        st->srv_faults_applied += applied;
        if (counted) { /* not a rate: seen to fire at all */
            ok = applied > 0;
            snprintf(why, sizeof(why), "applied %llu of %llu matches", (unsigned long long)applied,
                     (unsigned long long)matched);
        } else {
            ok = rate_ok(applied, matched, p ? json_number_value(p) : 1.0, why, sizeof(why));
        }
        fault_line(st, ok, "server rule %s (%s): %s", id ? id : "?",
                   json_string_value(json_object_get(json_object_get(rule, "fault"), "kind")), why);
        if (!ok)
            expect_fail(st, "faults: server rule %s: %s", id ? id : "?", why);
    }
    json_decref(plan);
    return 0;
}

/* ---- figures -------------------------------------------------------------------- */

static long rss_kib(pid_t pid, const char *field)
{
    char p[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    f = fopen(p, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = strtol(line + strlen(field), NULL, 10);
    fclose(f);
    return v;
}

static double proc_cpu_s(pid_t pid)
{
    char p[64], buf[1024], *c;
    unsigned long ut = 0, stt = 0;
    FILE *f;

    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    f = fopen(p, "r");
    if (!f)
        return -1;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = 0;
    fclose(f);
    c = strrchr(buf, ')');
    /* fields after the name: state(3) ... utime(14) stime(15) */
    if (!c || sscanf(c + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

void otasim_wilson(uint32_t k, uint32_t n, double z, double *ret_lo, double *ret_hi)
{
    double p, den, mid, half;

    if (n == 0) {
        *ret_lo = 0;
        *ret_hi = 1;
        return;
    }
    p = (double)k / n;
    den = 1 + z * z / n;
    mid = (p + z * z / (2.0 * n)) / den;
    half = z * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / den;
    *ret_lo = mid - half < 0 ? 0 : mid - half;
    *ret_hi = mid + half > 1 ? 1 : mid + half;
}

double otasim_fleet_catch_probability(double p, uint32_t n)
{
    return 1 - pow(1 - p, (double)n);
}

/* ---- the run's record ----------------------------------------------------------- */

char *otasim_fleet_stats_json(const struct otasim_fleet_def *def,
                              const struct otasim_fleet_stats *s, uint64_t seed)
{
    json_t *o = json_object();
    char *text;

#define I(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
#define R(k, v) json_object_set_new(o, k, json_real(v))
#define S(k, v) json_object_set_new(o, k, json_string(v))
    S("name", def->name);
    I("seed", seed);
    I("devices", s->devices);
    I("online", s->online);
    S("rollout_state", s->rollout_state);
    S("rollout_reason", s->rollout_reason);
    I("stage", s->stage);
    I("on_target", s->on_target);
    I("bad_installed", s->bad_installed);
    I("rolled_back", s->rolled_back);
    I("bricked", s->bricked);
    I("inconsistent", s->inconsistent);
    I("stuck", s->stuck);
    I("never_checked_in", s->never_checked_in);
    I("requests", s->requests);
    I("passes", s->passes);
    I("steps", s->steps);
    I("bytes_down", s->bytes_down);
    I("power_cuts", s->power_cuts);
    I("agent_crashes", s->agent_crashes);
    I("cut_chances", s->cut_chances);
    I("srv_faults_applied", s->srv_faults_applied);
    S("faults", s->faults);
    R("downtime_mean_ms", s->downtime_mean_ms);
    R("downtime_p95_ms", s->downtime_p95_ms);
    R("bytes_mean", s->bytes_mean);
    R("bytes_max", s->bytes_max);
    I("recovered", s->recovered);
    R("recovery_mean_ms", s->recovery_mean_ms);
    R("recovery_p95_ms", s->recovery_p95_ms);
    I("virtual_ms", s->virtual_ms);
    I("rollout_ms", s->rollout_ms);
    R("wall_s", s->wall_s);
    R("cpu_user_s", s->cpu_user_s);
    R("cpu_sys_s", s->cpu_sys_s);
    R("srv_cpu_s", s->srv_cpu_s);
    I("peak_rss_kib", s->peak_rss_kib);
    I("srv_peak_rss_kib", s->srv_peak_rss_kib);
    I("bytes_per_idle_device", s->rss_per_idle_device_bytes);
    json_object_set_new(o, "ok", json_boolean(s->ok));
    S("failed", s->failed);
    S("rerun", s->rerun);
#undef I
#undef R
#undef S
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static int record_samples(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    const struct fleet *fl = &R->fl;

    for (size_t i = 0; i < R->n_samples; i++) {
        const struct sample *s = &R->samples[i];
        json_t *o = json_object(), *st = json_object(), *ver = json_object();
        char *text;
        int r;
        for (int k = 0; k < OTA_STATE_MAX; k++)
            if (s->by_state[k])
                json_object_set_new(st, ota_state_names[k], json_integer(s->by_state[k]));
        for (size_t k = 0; k <= OTASIM_FLEET_MAX_RELEASES; k++)
            if (s->by_version[k])
                json_object_set_new(ver, k < fl->def->n_rel ? fl->def->rel[k].version : "other",
                                    json_integer(s->by_version[k]));
        json_object_set_new(o, "states", st);
        json_object_set_new(o, "versions", ver);
        json_object_set_new(o, "down", json_integer(s->down));
        json_object_set_new(o, "in_pass", json_integer(s->in_pass));
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text)
            return ota_err_set(err, ENOMEM, "out of memory");
        r = otasim_rundb_fleet_sample(db, fl->st->fleet_id, s->t, s->rollout, s->stage, text, err);
        free(text);
        if (r < 0)
            return r;
    }
    return 0;
}

static void rerun_cmd(const struct run *R, char *buf, size_t cap);

/* The run database: --db, else WORK/runs.db as for `ota-sim run`. */
static int db_open(struct run *R, struct otasim_rundb **ret, struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    char path[PATH_MAX + 16];
    int64_t run_id;
    char cmd[1024];
    int r;

    *ret = NULL;
    snprintf(path, sizeof(path), "%s/runs.db", R->t.work);
    if ((r = otasim_rundb_open(fl->o->db ? fl->o->db : path, ret, err)) < 0)
        return r;
    rerun_cmd(R, cmd, sizeof(cmd));
    if ((r = otasim_rundb_begin(*ret, cmd, "otacore (in-process fleet)", &run_id, err)) < 0 ||
        (r = otasim_rundb_fleet_begin(*ret, run_id, fl->def->name, fl->def->path, fl->seed,
                                      &fl->st->fleet_id, err)) < 0 ||
        (r = otasim_rundb_end(*ret, run_id, err)) < 0)
        return r;
    return 0;
}

static int db_close(struct run *R, struct otasim_rundb *db, struct ota_err *err)
{
    const struct otasim_fleet_stats *st = R->fl.st;
    char *stats;
    int r;

    if (!db)
        return 0;
    if ((r = record_samples(R, db, err)) < 0)
        return r;
    stats = otasim_fleet_stats_json(R->fl.def, st, R->fl.seed);
    r = otasim_rundb_fleet_end(db, st->fleet_id, st->ok, st->rollout_state, stats ? stats : "{}",
                               st->failed, st->rerun, err);
    free(stats);
    return r;
}

/* ---- the run -------------------------------------------------------------------- */

static void teardown(struct run *R)
{
    struct fleet *fl = &R->fl;

    for (uint32_t i = 0; fl->dev && i < fl->n_dev; i++) {
        struct fdev *d = &fl->dev[i];
        if (d->pass) {
            ota_agent_free(d->pass->a);
            d->pass->a = NULL;
            pass_put(fl, d->pass);
            d->pass = NULL;
        }
        fleet_dev_free(d);
    }
    while (fl->free_pass) {
        struct fpass *p = fl->free_pass;
        fl->free_pass = p->next_free;
        otasim_fiber_free(p->f);
        free(p);
    }
    fleet_net_free(fl->net);
    fleet_blobs_free(fl);
    fleet_intern_free(fl);
    free(fl->dev);
    free(fl->heap);
    free(fl->ready);
    free(R->samples);
    if (R->own_server && R->srv.pid > 0)
        otasim_server_stop(&R->srv);
    if (fl->dir[0] && !fl->o->keep)
        ota_ignore(ota_fs_remove_tree(fl->dir, NULL));
}

static void rerun_cmd(const struct run *R, char *buf, size_t cap)
{
    const struct otasim_fleet_opts *o = R->fl.o;
    int n = snprintf(buf, cap, "ota-sim fleet %s --seed %llu", R->fl.def->path,
                     (unsigned long long)R->fl.seed);

    if (o->count && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, " --devices %u", o->count);
    if (o->shards > 1 && n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " --shard %u/%u", o->shard, o->shards);
}

static int finish(struct run *R, struct otasim_rundb *db, double wall0, long rss0,
                  struct ota_err *err)
{
    struct fleet *fl = &R->fl;
    struct otasim_fleet_stats *st = fl->st;
    struct rusage ru;
    int r;

    if ((r = take_sample(R, err)) < 0 || (r = outcomes(R, db, err)) < 0 ||
        (r = faults_fired(R, err)) < 0)
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
    st->peak_rss_kib = rss_kib(getpid(), "VmHWM:");
    st->rss_per_idle_device_bytes =
        fl->n_dev ? (rss_kib(getpid(), "VmRSS:") - rss0) * 1024 / (long)fl->n_dev : 0;
    if (R->own_server) {
        st->srv_cpu_s = proc_cpu_s(R->srv.pid);
        st->srv_peak_rss_kib = rss_kib(R->srv.pid, "VmHWM:");
    }
    expectations(R);
    rerun_cmd(R, st->rerun, sizeof(st->rerun));
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
    fl->srv_next = INT64_MAX;
    fl->target = otasim_fleet_release_find(def, def->rollout_release);
    otasim_http_global_init();
    if ((r = otasim_tools_find(&R->t, NULL, o->work, err)) < 0)
        goto out;
    if (fleet_intern_init(fl) < 0) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    R->own_server = 1;
    if ((r = fleet_setup(fl, &R->t, &R->srv, err)) < 0 ||
        (r = fleet_net_new(fl, o->connections ? o->connections : 64, &fl->net, err)) < 0)
        goto out;
    agent_config(fl);
    if ((r = fleet_clock_advance(fl, 0, err)) < 0 || (r = fleet_rollout_create(fl, err)) < 0)
        goto out;
    rss0 = rss_kib(getpid(), "VmRSS:");
    if ((r = devices(R, err)) < 0)
        goto out;
    R->end_ms = def->duration_ms;
    R->sample_every = def->poll_ms / 12 > 60 * SEC ? def->poll_ms / 12 : 60 * SEC;
    if ((r = db_open(R, &db, err)) < 0 || (r = loop(R, err)) < 0 ||
        (r = finish(R, db, wall0, rss0, err)) < 0 || (r = db_close(R, db, err)) < 0)
        goto out;
    r = 0;
out:
    otasim_rundb_close(db);
    teardown(R);
    free(R);
    return r;
}
