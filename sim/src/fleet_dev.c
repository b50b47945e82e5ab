/* A fleet device's durable state and the agent core's ops over it, in
 * memory (issue 12). The journal is kept field by field (struct fjournal,
 * strings interned): a field added to struct ota_journal must be added to
 * pack_journal/store_load too (FleetOps.JournalRoundTrips checks every byte). the same durability
 * rules as the real drivers, so that what the core saved before a power cut is what it finds after
 * it. store    save() is atomic and durable (SQLite's transaction): journal, outbox and history
 * change together or not at all; download bytes are durable only once dl_sync() returned (a power
 * cut keeps [0, synced), an agent crash keeps what was written); slots    slot_install() and
 * app_switch() are durable when they return (the real driver fsyncs before it returns); service the
 * app in the slot `current` names runs from its restart (or the boot) on; a bad release stops being
 * healthy as its mode says. After a cut (d->cut) or a crash (d->crash) every op fails: the core
 * stops where it was, nothing more becomes durable. Downloads of the same bytes share one buffer
 * (struct fblob) until they differ. */
#include "fleet_impl.h"
#include "ota/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ota/abboot.h"
#include "ota/crypto.h"

struct fblob {
    uint8_t *p;
    size_t len, cap;
    struct fblob *next;
};

struct fleet *fleet_of(void *ctx)
{
    return ((struct fctx *)ctx)->fl;
}

static struct fdev *dev_of(void *ctx)
{
    return ((struct fctx *)ctx)->d;
}

static int dead(void *ctx, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);

    if (d->cut)
        return ota_err_set(err, EIO, "power lost");
    if (d->crash)
        return ota_err_set(err, EIO, "agent crashed");
    return 0;
}

uint64_t fleet_hash(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;

    h ^= a + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
    h ^= b + 0x85ebca77c2b2ae63ull + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

double fleet_unit(uint64_t h)
{
    return (double)(h >> 11) / 9007199254740992.0;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    while (*s)
        h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

const struct otasim_fleet_release *fleet_release_of(const struct fleet *fl, const char *version)
{
    return version ? otasim_fleet_release_find(fl->def, version) : NULL;
}

int fleet_bad_for(const struct fleet *fl, const struct fdev *d,
                  const struct otasim_fleet_release *rel)
{
    int type_ok;

    if (!rel || rel->bad == OTASIM_BAD_NONE)
        return 0;
    type_ok = rel->n_bad_types == 0;
    for (size_t i = 0; i < rel->n_bad_types; i++)
        if (strcmp(rel->bad_types[i], fl->def->types[d->type].value) == 0)
            type_ok = 1;
    if (rel->n_bad_groups) {
        int group_ok = 0;
        for (size_t i = 0; i < rel->n_bad_groups; i++)
            group_ok |= strcmp(rel->bad_groups[i], fl->def->groups[d->group].value) == 0;
        type_ok &= group_ok;
    }
    return type_ok &&
           fleet_unit(fleet_hash(fl->seed, d->idx, str_hash(rel->version))) < rel->bad_probability;
}

/* ---- interned strings --------------------------------------------------- */

struct itab {
    char **v;
    size_t cap, n, bytes;
};

int fleet_intern_init(struct fleet *fl)
{
    struct itab *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->cap = 1024;
    t->v = calloc(t->cap, sizeof(*t->v));
    if (!t->v) {
        free(t);
        return -ENOMEM;
    }
    fl->intern = t;
    return 0;
}

static int itab_grow(struct itab *t)
{
    size_t cap = t->cap * 2;
    char **v = calloc(cap, sizeof(*v));

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->v[i]) {
            size_t k = str_hash(t->v[i]) & (cap - 1);
            while (v[k])
                k = (k + 1) & (cap - 1);
            v[k] = t->v[i];
        }
    free(t->v);
    t->v = v;
    t->cap = cap;
    return 0;
}

const char *fleet_intern(struct fleet *fl, const char *s)
{
    struct itab *t = fl->intern;
    size_t k;

    if (!s)
        return NULL;
    if (!s[0])
        return "";
    if (t->n * 2 >= t->cap && itab_grow(t) < 0)
        return NULL;
    k = str_hash(s) & (t->cap - 1);
    while (t->v[k]) {
        if (strcmp(t->v[k], s) == 0)
            return t->v[k];
        k = (k + 1) & (t->cap - 1);
    }
    t->v[k] = strdup(s);
    if (!t->v[k])
        return NULL;
    t->n++;
    t->bytes += strlen(s) + 1;
    return t->v[k];
}

size_t fleet_intern_bytes(const struct fleet *fl)
{
    const struct itab *t = fl->intern;

    return t ? t->bytes + t->cap * sizeof(char *) : 0;
}

void fleet_intern_free(struct fleet *fl)
{
    struct itab *t = fl->intern;

    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->v[i]);
    free(t->v);
    free(t);
    fl->intern = NULL;
}

/* ---- store ---------------------------------------------------------------- */

static const char *cp(struct fleet *fl, const char *s)
{
    return fleet_intern(fl, s);
}

static void put_s(char *dst, size_t cap, const char *s)
{
    ota_strlcpy(dst, s ? s : "", cap);
}

static int store_load(void *ctx, struct ota_journal *ret, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    const struct fjournal *j = d->j;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!j)
        return -ENOENT;
    ota_journal_clear(ret);
    ret->state = (enum ota_state)j->state;
    ret->from_slot = j->from_slot;
    ret->to_slot = j->to_slot;
    ret->failed = j->failed;
    ret->flags = j->flags;
    ret->resumes = j->resumes;
    ret->attempts = j->attempts;
    ret->durable_len = j->durable_len;
    ret->wait_activation = j->wait_activation;
    ret->not_after_ms = j->not_after_ms;
    ret->standby_since_ms = j->standby_since_ms;
    memcpy(ret->prefix_sha256, j->prefix_sha256, sizeof(ret->prefix_sha256));
    put_s(ret->update_id, sizeof(ret->update_id), j->update_id);
    put_s(ret->rollout_id, sizeof(ret->rollout_id), j->rollout_id);
    put_s(ret->manifest, sizeof(ret->manifest), j->manifest);
    put_s(ret->signature, sizeof(ret->signature), j->signature);
    put_s(ret->url, sizeof(ret->url), j->url);
    put_s(ret->etag, sizeof(ret->etag), j->etag);
    put_s(ret->from_version, sizeof(ret->from_version), j->from_version);
    put_s(ret->reason, sizeof(ret->reason), j->reason);
    return 0;
}

static int pack_journal(struct fleet *fl, const struct ota_journal *j, struct fjournal *o)
{
    o->state = (uint8_t)j->state;
    o->from_slot = (int8_t)j->from_slot;
    o->to_slot = (int8_t)j->to_slot;
    o->failed = (int8_t)j->failed;
    o->flags = j->flags;
    o->resumes = j->resumes;
    o->attempts = j->attempts;
    o->durable_len = j->durable_len;
    o->wait_activation = (int8_t)j->wait_activation;
    o->not_after_ms = j->not_after_ms;
    o->standby_since_ms = j->standby_since_ms;
    memcpy(o->prefix_sha256, j->prefix_sha256, sizeof(o->prefix_sha256));
    o->update_id = cp(fl, j->update_id);
    o->rollout_id = cp(fl, j->rollout_id);
    o->manifest = cp(fl, j->manifest);
    o->signature = cp(fl, j->signature);
    o->url = cp(fl, j->url);
    o->etag = cp(fl, j->etag);
    o->from_version = cp(fl, j->from_version);
    o->reason = cp(fl, j->reason);
    return o->update_id && o->rollout_id && o->manifest && o->signature && o->url && o->etag &&
                   o->from_version && o->reason
               ? 0
               : -ENOMEM;
}

static int store_save(void *ctx, const struct ota_journal *j, const struct ota_report *rep,
                      const struct ota_history *h, struct ota_err *err)
{
    struct fleet *fl = fleet_of(ctx);
    struct fdev *d = dev_of(ctx);
    struct fjournal nj;
    struct frep *nr = NULL;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    /* everything that can fail first: the save is all or nothing */
    if (pack_journal(fl, j, &nj) < 0 || (h && (!cp(fl, h->status) || !cp(fl, h->version))))
        return ota_err_set(err, ENOMEM, "out of memory");
    if (!d->j && !(d->j = malloc(sizeof(*d->j))))
        return ota_err_set(err, ENOMEM, "out of memory");
    if (rep) {
        nr = malloc(sizeof(*nr));
        if (!nr)
            return ota_err_set(err, ENOMEM, "out of memory");
        nr->next = NULL;
        nr->id = ++d->next_rep;
        nr->r = *rep;
        struct frep **p = &d->outbox;
        while (*p)
            p = &(*p)->next;
        *p = nr;
    }
    *d->j = nj;
    if (h) {
        d->last_status = cp(fl, h->status);
        d->last_version = cp(fl, h->version);
        d->n_hist++;
    }
    return 0;
}

static int store_outbox_peek(void *ctx, struct ota_report *ret, int64_t *ret_id,
                             struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!d->outbox)
        return -ENOENT;
    *ret = d->outbox->r;
    *ret_id = d->outbox->id;
    return 0;
}

static int store_outbox_pop(void *ctx, int64_t id, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    struct frep **p = &d->outbox;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    if (*p) {
        struct frep *x = *p;
        *p = x->next;
        free(x);
    }
    return 0;
}

static int store_kv_get(void *ctx, const char *key, char *buf, size_t cap, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    for (size_t i = 0; i < d->n_kv; i++)
        if (strcmp(d->kv[i].key, key) == 0) {
            ota_strlcpy(buf, d->kv[i].val, cap);
            return 0;
        }
    return -ENOENT;
}

static int store_kv_set(void *ctx, const char *key, const char *value, struct ota_err *err)
{
    struct fleet *fl = fleet_of(ctx);
    struct fdev *d = dev_of(ctx);
    const char *k = cp(fl, key), *v = cp(fl, value);
    struct fkv *kv;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!k || !v)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < d->n_kv; i++)
        if (d->kv[i].key == k) {
            d->kv[i].val = v;
            return 0;
        }
    kv = realloc(d->kv, (d->n_kv + 1u) * sizeof(*kv));
    if (!kv)
        return ota_err_set(err, ENOMEM, "out of memory");
    d->kv = kv;
    d->kv[d->n_kv].key = k;
    d->kv[d->n_kv].val = v;
    d->n_kv++;
    return 0;
}

const struct ota_store_ops fleet_store_ops = {store_load,       store_save,   store_outbox_peek,
                                              store_outbox_pop, store_kv_get, store_kv_set};

/* ---- the download file ---------------------------------------------------- */

static const uint8_t *dl_bytes(const struct fdl *dl)
{
    return dl->own ? dl->own : dl->blob ? dl->blob->p : NULL;
}

static int grow(uint8_t **p, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 65536;
    uint8_t *q;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    q = realloc(*p, c);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int inst_dl_open(void *ctx, uint64_t keep_len, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!d->dl && !(d->dl = calloc(1, sizeof(*d->dl))))
        return ota_err_set(err, ENOMEM, "out of memory");
    if (d->dl->len > keep_len)
        d->dl->len = keep_len;
    if (d->dl->synced > keep_len)
        d->dl->synced = keep_len;
    if (d->dl->len == 0) { /* a new file: choose its blob again */
        free(d->dl->own);
        d->dl->own = NULL;
        d->dl->own_cap = 0;
        d->dl->blob = NULL;
    }
    return 0;
}

/* The blob whose first bytes are these; a new one if none is. */
static struct fblob *blob_for(struct fleet *fl, const void *buf, size_t n)
{
    struct fblob *b;

    for (b = fl->blobs; b; b = b->next) {
        size_t k = b->len < n ? b->len : n;
        if (k && memcmp(b->p, buf, k) == 0)
            return b;
    }
    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->next = fl->blobs;
    fl->blobs = b;
    return b;
}

static int inst_dl_write(void *ctx, const void *buf, size_t n, struct ota_err *err)
{
    struct fleet *fl = fleet_of(ctx);
    struct fdev *d = dev_of(ctx);
    struct fdl *dl = d->dl;
    uint64_t off;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!dl)
        return ota_err_set(err, EBADF, "download file not open");
    off = dl->len;
    if (!dl->own && !dl->blob && off == 0 && !(dl->blob = blob_for(fl, buf, n)))
        return ota_err_set(err, ENOMEM, "out of memory");
    if (!dl->own) {
        struct fblob *b = dl->blob;
        size_t have = b->len > off ? (size_t)(b->len - off) : 0;
        size_t same = have < n ? have : n;
        if ((same == 0 || memcmp(b->p + off, buf, same) == 0) &&
            (same == n || b->len == off + same)) {
            if (same < n) { /* we are the first this far: the blob grows */
                if (grow(&b->p, &b->cap, b->len + (n - same)) < 0)
                    return ota_err_set(err, ENOMEM, "out of memory");
                memcpy(b->p + b->len, (const uint8_t *)buf + same, n - same);
                b->len += n - same;
            }
            dl->len += n;
            d->bytes_down += n;
            return 0;
        }
        /* these bytes differ from the shared ones: a copy of our own */
        if (grow(&dl->own, &dl->own_cap, off + n) < 0)
            return ota_err_set(err, ENOMEM, "out of memory");
        if (off)
            memcpy(dl->own, b->p, off);
    }
    if (grow(&dl->own, &dl->own_cap, off + n) < 0)
        return ota_err_set(err, ENOMEM, "out of memory");
    memcpy(dl->own + off, buf, n);
    dl->len += n;
    d->bytes_down += n;
    return 0;
}

static int inst_dl_sync(void *ctx, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (d->dl)
        d->dl->synced = d->dl->len;
    return 0;
}

static void inst_dl_close(void *ctx)
{
    (void)ctx;
}

static int inst_dl_size(void *ctx, uint64_t *ret, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!d->dl)
        return -ENOENT;
    *ret = d->dl->len;
    return 0;
}

static int inst_dl_hash(void *ctx, uint64_t len, struct ota_sha256 *h, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (!d->dl || d->dl->len < len)
        return ota_err_set(err, ENODATA, "download shorter than %llu bytes",
                           (unsigned long long)len);
    if (len && (r = ota_sha256_update(h, dl_bytes(d->dl), (size_t)len)) < 0)
        return ota_err_set(err, -r, "hash");
    return 0;
}

static void dl_drop(struct fdev *d)
{
    if (!d->dl)
        return;
    free(d->dl->own);
    free(d->dl);
    d->dl = NULL;
}

static int inst_dl_remove(void *ctx, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    dl_drop(d);
    return 0;
}

static int inst_space(void *ctx, enum ota_kind kind, uint64_t *ret_dl_free, uint64_t *ret_slot_room,
                      struct ota_err *err)
{
    int r = dead(ctx, err);

    (void)kind;
    if (r < 0)
        return r;
    *ret_dl_free = *ret_slot_room = 1ull << 40;
    return 0;
}

static int inst_active_slot(void *ctx, enum ota_kind kind, int *ret_slot, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (kind != fleet_kind(fleet_of(ctx)))
        return ota_err_set(err, ENOENT, "this fleet has no %s slots", ota_kind_names[kind]);
    *ret_slot = d->active; /* app: `current`; rootfs: the slot that booted */
    return 0;
}

static int inst_slot_version(void *ctx, enum ota_kind kind, int slot, char *buf, size_t cap,
                             struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (kind != fleet_kind(fleet_of(ctx)) || slot < 0 || slot > 1 || !d->slot_ver[slot])
        return -ENOENT;
    ota_strlcpy(buf, d->slot_ver[slot], cap);
    return 0;
}

static int inst_slot_install(void *ctx, const struct ota_manifest *m, int slot, struct ota_err *err)
{
    struct fleet *fl = fleet_of(ctx);
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (m->kind != fleet_kind(fl))
        return ota_err_set(err, EINVAL, "this fleet's devices take %s releases only",
                           ota_kind_names[fleet_kind(fl)]);
    if (slot == d->active)
        return ota_err_set(err, EPERM, "refusing to install into the active slot %s",
                           ota_slot_names[slot]);
    if (!d->dl || d->dl->len != m->size)
        return ota_err_set(err, EINVAL, "download holds %llu bytes, the manifest says %llu",
                           (unsigned long long)(d->dl ? d->dl->len : 0),
                           (unsigned long long)m->size);
    d->slot_ver[slot] = cp(fl, m->version);
    return d->slot_ver[slot] ? 0 : ota_err_set(err, ENOMEM, "out of memory");
}

static int inst_app_switch(void *ctx, int slot, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (fleet_kind(fleet_of(ctx)) != OTA_KIND_APP)
        return ota_err_set(err, EINVAL, "a rootfs device has no app slots");
    if (!d->slot_ver[slot])
        return ota_err_set(err, ENOENT, "slot %s is empty", ota_slot_names[slot]);
    d->active = (int8_t)slot;
    return 0;
}

const struct ota_install_ops fleet_install_ops = {
    inst_dl_open,     inst_dl_write,     inst_dl_sync,      inst_dl_close,
    inst_dl_size,     inst_dl_hash,      inst_dl_remove,    inst_space,
    inst_active_slot, inst_slot_version, inst_slot_install, inst_app_switch};

/* ---- service and clock ---------------------------------------------------- */

static int svc_restart(void *ctx, struct ota_err *err)
{
    struct fleet *fl = fleet_of(ctx);
    struct fdev *d = dev_of(ctx);
    const struct otasim_fleet_release *rel;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    d->running = d->slot_ver[d->active];
    d->svc_start_ms = fl->vnow;
    rel = fleet_release_of(fl, d->running);
    if (rel && rel->bad != OTASIM_BAD_NONE)
        d->bad_seen = 1;
    return 0;
}

/* Whether the app runs healthy now. */
static int svc_up(const struct fleet *fl, const struct fdev *d)
{
    const struct otasim_fleet_release *rel = fleet_release_of(fl, d->running);

    if (!d->running)
        return 0;
    if (!rel || !fleet_bad_for(fl, d, rel))
        return 1;
    if (rel->bad == OTASIM_BAD_CRASH)
        return 0;
    return fl->vnow < d->svc_start_ms + rel->fail_after_ms;
}

int fleet_dev_service_up(const struct fleet *fl, const struct fdev *d)
{
    return svc_up(fl, d);
}

static int svc_is_active(void *ctx, int *ret_active, struct ota_err *err)
{
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    *ret_active = svc_up(fleet_of(ctx), dev_of(ctx));
    return 0;
}

/* Asked, not done: the core stops (OTA_STEP_REBOOT); the runner boots the
 * device through the bootloader model (fleet_dev_boot). */
static int svc_reboot(void *ctx, struct ota_err *err)
{
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    dev_of(ctx)->reboot_asked = 1;
    return 0;
}

const struct ota_service_ops fleet_service_ops = {svc_restart, svc_is_active, svc_reboot};

static int64_t clk_wall(void *ctx)
{
    struct fleet *fl = fleet_of(ctx);
    return fl->def->start_ms + fl->vnow;
}

static int64_t clk_mono(void *ctx)
{
    return fleet_of(ctx)->vnow;
}

static uint32_t clk_random(void *ctx)
{
    struct fdev *d = dev_of(ctx);
    uint64_t x = d->rnd;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rnd = x;
    return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

const struct ota_clock_ops fleet_clock_ops = {clk_wall, clk_mono, clk_random};

/* ---- the boot env and the bootloader (rootfs fleets) ----------------------- */

/* U-Boot's env in memory: one write sets every variable given, or none. */
static int env_get(void *ctx, const char *name, char *buf, size_t cap, struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    if (strcmp(name, OTA_ENV_BOOT_PART) == 0)
        snprintf(buf, cap, "%s", d->env_part ? OTA_ENV_SLOT_B : OTA_ENV_SLOT_A);
    else if (strcmp(name, OTA_ENV_UPGRADE_AVAILABLE) == 0)
        snprintf(buf, cap, "%u", d->env_upgrade);
    else if (strcmp(name, OTA_ENV_BOOTCOUNT) == 0)
        snprintf(buf, cap, "%u", d->env_count);
    else if (strcmp(name, OTA_ENV_BOOTLIMIT) == 0)
        snprintf(buf, cap, "%s", OTA_ENV_BOOTLIMIT_DEFAULT);
    else
        return -ENOENT;
    return 0;
}

static int env_set(void *ctx, const char *const *names, const char *const *values, size_t n,
                   struct ota_err *err)
{
    struct fdev *d = dev_of(ctx);
    uint8_t part = d->env_part, up = d->env_upgrade, count = d->env_count;
    int r = dead(ctx, err);

    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], OTA_ENV_BOOT_PART) == 0)
            part = strcmp(values[i], OTA_ENV_SLOT_B) == 0;
        else if (strcmp(names[i], OTA_ENV_UPGRADE_AVAILABLE) == 0)
            up = (uint8_t)atoi(values[i]);
        else if (strcmp(names[i], OTA_ENV_BOOTCOUNT) == 0)
            count = (uint8_t)atoi(values[i]);
        else
            return ota_err_set(err, EINVAL, "boot env: %s is not one the fleet models", names[i]);
    }
    d->env_part = part;
    d->env_upgrade = up;
    d->env_count = count;
    return 0;
}

const struct ota_bootenv_ops fleet_bootenv_ops = {env_get, env_set};

/* A release that does not boot on this device. */
static int boots(const struct fleet *fl, const struct fdev *d, int slot)
{
    const struct otasim_fleet_release *rel = fleet_release_of(fl, d->slot_ver[slot]);

    if (!d->slot_ver[slot])
        return 0;
    return !(rel && rel->bad == OTASIM_BAD_BOOT && fleet_bad_for(fl, d, rel));
}

/* The power comes on (a boot, a reboot): for a rootfs fleet, boot.cmd's
 * rule (images/boot.cmd, ota_abboot_step of ota/abboot.h): on trial every
 * boot counts, past bootlimit the other slot boots; after that fallback the
 * old slot's boots count until the agent clears bootcount, and past
 * 2 x bootlimit the board is in recovery mode (dark: it needs a reflash). A
 * slot that does not boot resets the board (a watchdog) and counts again.
 * Then the app starts. */
void fleet_dev_boot(struct fleet *fl, struct fdev *d)
{
    unsigned long limit = strtoul(OTA_ENV_BOOTLIMIT_DEFAULT, NULL, 10);

    d->running = NULL;
    if (fleet_kind(fl) == OTA_KIND_ROOTFS) {
        struct ota_abboot_env e = {d->env_part, d->env_upgrade, d->env_count, limit};
        int up = 0;

        for (unsigned long tries = 0; tries <= 2 * limit + 1 && !up; tries++) {
            int save;
            enum ota_abboot_boot what = ota_abboot_step(&e, &save);
            d->env_part = (uint8_t)e.slot;
            d->env_upgrade = (uint8_t)e.upgrade;
            d->env_count = (uint8_t)e.count;
            if (what == OTA_ABBOOT_RECOVERY)
                return; /* both slots failed: recovery mode, the board stays dark */
            up = boots(fl, d, d->env_part);
        }
        if (!up)
            return;
        d->active = (int8_t)d->env_part;
    }
    d->running = d->slot_ver[d->active];
    d->svc_start_ms = fl->vnow;
    {
        const struct otasim_fleet_release *rel = fleet_release_of(fl, d->running);
        if (rel && rel->bad != OTASIM_BAD_NONE)
            d->bad_seen = 1;
    }
}

/* ---- power ------------------------------------------------------------------ */

void fleet_dev_power_loss(struct fleet *fl, struct fdev *d)
{
    (void)fl;
    if (d->dl && d->cut)
        d->dl->len = d->dl->synced;
    if (d->cut)
        d->running = NULL; /* the app is off until the boot */
}

void fleet_dev_free(struct fdev *d)
{
    while (d->outbox) {
        struct frep *x = d->outbox;
        d->outbox = x->next;
        free(x);
    }
    dl_drop(d);
    free(d->j);
    free(d->kv);
    d->j = NULL;
    d->kv = NULL;
}

void fleet_blobs_free(struct fleet *fl)
{
    while (fl->blobs) {
        struct fblob *b = fl->blobs;
        fl->blobs = b->next;
        free(b->p);
        free(b);
    }
}
