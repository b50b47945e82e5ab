/* The update state machine (DESIGN.md, "The agent").
 *
 * One function writes the journal (journal_write: a move persists, reports,
 * notifies and runs on-enter; or the same state is saved as it is), one
 * handler per state. A state is saved before its side effects start, so
 * that every start can apply the recovery rule of the state it finds. The
 * download (download.c), the slots per update kind (slots.c) and the update
 * sources (source.c) have their own files; agent.h holds what they share. */
#include "agent.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/faultpoint.h"
#include "ota/version.h"

const char *const ota_state_names[OTA_STATE_MAX] = {
    "IDLE",      "CHECKING",     "DOWNLOADING", "VERIFYING",    "INSTALLING", "SWITCHING",
    "REBOOTING", "HEALTH_CHECK", "COMMITTING",  "ROLLING_BACK", "STANDBY",
};
const char *const ota_slot_names[OTA_SLOT_MAX] = {"a", "b"};
const char *const ota_status_names[OTA_STATUS_MAX] = {"in_progress", "success", "failure"};
const char *const ota_source_names[OTA_SOURCE_MAX] = {"fleet", "github"};
const char *const ota_check_result_names[OTA_CHECK_MAX] = {"none", "up_to_date", "offered",
                                                           "refused", "unreachable"};

int ota_state_from_name(const char *name, enum ota_state *ret)
{
    for (int i = 0; i < OTA_STATE_MAX; i++)
        if (strcmp(ota_state_names[i], name) == 0) {
            *ret = (enum ota_state)i;
            return 0;
        }
    return -EINVAL;
}

void ota_agent_config_defaults(struct ota_agent_config *c)
{
    memset(c, 0, sizeof(*c));
    c->source = OTA_SOURCE_FLEET;
    ota_strlcpy(c->device_type, "rpi3b", sizeof(c->device_type));
    ota_strlcpy(c->rootfs_version, "1.0.0", sizeof(c->rootfs_version));
    c->health_window_ms = 30000;
    c->health_interval_ms = 1000;
    c->max_resumes = 5;
    c->max_attempts = 5;
    c->backoff_base_ms = 1000;
    c->backoff_max_ms = 300000;
    c->checkpoint_bytes = 4u << 20;
    /* Each checkpoint is an fdatasync plus a synchronous commit: on a fast
     * link, bound them by time too; a cut loses at most ~1 s of transfer. */
    c->checkpoint_interval_ms = 1000;
    c->standby_max_wait_ms = 7LL * 24 * 3600 * 1000;
}

_Static_assert(offsetof(struct ota_journal, manifest) +
                       sizeof(((struct ota_journal *)0)->manifest) ==
                   sizeof(struct ota_journal),
               "the manifest is the journal's last field (ota_journal_clear/copy)");

void ota_journal_clear(struct ota_journal *j)
{
    memset(j, 0, offsetof(struct ota_journal, manifest));
    j->manifest[0] = '\0';
}

void ota_journal_copy(struct ota_journal *dst, const struct ota_journal *src)
{
    if (dst == src)
        return;
    memcpy(dst, src, offsetof(struct ota_journal, manifest));
    ota_strlcpy(dst->manifest, src->manifest, sizeof(dst->manifest));
}

_Static_assert(offsetof(struct ota_agent, cfg) < offsetof(struct ota_agent, j) &&
                   offsetof(struct ota_agent, j) < offsetof(struct ota_agent, jnext) &&
                   offsetof(struct ota_agent, jnext) < offsetof(struct ota_agent, m),
               "cfg, j, jnext and m are the agent's last fields (ota_agent_renew)");

void ota_agent_renew(struct ota_agent *a, const struct ota_agent_config *cfg,
                     const struct ota_agent_ops *ops)
{
    struct ota_sha256 *sha = a->dl.sha; /* reset before its first use (dl.sha_ok = 0) */

    memset(a, 0, offsetof(struct ota_agent, cfg));
    a->dl.sha = sha;
    if (cfg)
        a->cfg = *cfg;
    ota_journal_clear(&a->j);
    a->ops = *ops;
    a->server_ok = 1;
    a->outcome = OTA_STATUS_IN_PROGRESS;
}

struct ota_agent *ota_agent_new(const struct ota_agent_config *cfg, const struct ota_agent_ops *ops)
{
    struct ota_agent *a = malloc(sizeof(*a));

    if (!a)
        return NULL;
    a->dl.sha = ota_sha256_new();
    if (!a->dl.sha) {
        free(a);
        return NULL;
    }
    ota_agent_renew(a, cfg, ops);
    return a;
}

struct ota_agent_config *ota_agent_cfg(struct ota_agent *a)
{
    return &a->cfg;
}

void ota_agent_free(struct ota_agent *a)
{
    if (!a)
        return;
    ota_sha256_free(a->dl.sha);
    free(a);
}

const struct ota_journal *ota_agent_journal(const struct ota_agent *a)
{
    return &a->j;
}

enum ota_check_result ota_agent_last_check(const struct ota_agent *a, const char **ret_reason)
{
    if (ret_reason)
        *ret_reason = a->check_reason;
    return a->check;
}

enum ota_status ota_agent_last_outcome(const struct ota_agent *a, const char **ret_reason)
{
    if (ret_reason)
        *ret_reason = a->outcome_reason;
    return a->outcome;
}

int64_t core_mono(struct ota_agent *a)
{
    return a->ops.clock->mono_ms(a->ops.clock_ctx);
}

static int reports_enabled(const struct ota_agent *a)
{
    return core_source(a)->deliver != NULL;
}

static const char *kind_name(const struct ota_agent *a)
{
    return a->m_ok ? ota_kind_names[a->m.kind] : "";
}

int core_is_rootfs(const struct ota_agent *a)
{
    return a->m_ok && a->m.kind == OTA_KIND_ROOTFS;
}

/* ---- what is installed ------------------------------------------------ */

int ota_agent_installed(struct ota_agent *a, enum ota_kind kind, int *ret_slot, char *ret_version,
                        size_t cap, struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    char key[32], ver[64];
    int slot, r;

    r = core_slots_for(kind)->running(a, &slot, err);
    if (r < 0)
        return r;
    snprintf(key, sizeof(key), "%s.version", ota_kind_names[kind]);
    if (st->kv_get(a->ops.store_ctx, key, ver, sizeof(ver), NULL) < 0)
        core_slots_for(kind)->found_version(a, slot, ver, sizeof(ver));
    *ret_slot = slot;
    ota_strlcpy(ret_version, ver, cap);
    return 0;
}

/* ---- outbox ----------------------------------------------------------- */

int ota_agent_flush_outbox(struct ota_agent *a, struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    int sent = 0;

    if (!reports_enabled(a) || !a->token[0])
        return 0;
    for (;;) {
        struct ota_report rep;
        int64_t id;
        int r;

        r = st->outbox_peek(a->ops.store_ctx, &rep, &id, err);
        if (r == -ENOENT)
            return sent;
        if (r < 0)
            return r;
        r = core_source(a)->deliver(a, &rep, err);
        if (r < 0)
            return r;
        /* Delivered, or refused for good (4xx): either way it leaves the outbox. */
        r = st->outbox_pop(a->ops.store_ctx, id, err);
        if (r < 0)
            return r;
        a->server_ok = 1;
        sent++;
    }
}

/* ---- the one function that writes the journal ------------------------ */

static void on_enter(struct ota_agent *a, enum ota_state to);

static void fill_report(const struct ota_agent *a, const struct ota_journal *j, enum ota_state st,
                        enum ota_status status, struct ota_report *r, int64_t now)
{
    memset(r, 0, sizeof(*r));
    ota_strlcpy(r->device_id, a->device_id, sizeof(r->device_id));
    ota_strlcpy(r->update_id, j->update_id, sizeof(r->update_id));
    ota_strlcpy(r->rollout_id, j->rollout_id, sizeof(r->rollout_id));
    ota_strlcpy(r->version, a->m_ok ? a->m.version : "", sizeof(r->version));
    ota_strlcpy(r->kind, kind_name(a), sizeof(r->kind));
    ota_strlcpy(r->state, ota_state_names[st], sizeof(r->state));
    ota_strlcpy(r->status, ota_status_names[status], sizeof(r->status));
    ota_strlcpy(r->reason, j->reason, sizeof(r->reason));
    r->ts_ms = now;
}

static void fill_history(const struct ota_agent *a, const struct ota_journal *j,
                         enum ota_status status, struct ota_history *h, int64_t now)
{
    memset(h, 0, sizeof(*h));
    ota_strlcpy(h->update_id, j->update_id, sizeof(h->update_id));
    ota_strlcpy(h->version, a->m_ok ? a->m.version : "", sizeof(h->version));
    ota_strlcpy(h->from_version, j->from_version, sizeof(h->from_version));
    ota_strlcpy(h->kind, kind_name(a), sizeof(h->kind));
    ota_strlcpy(h->status, ota_status_names[status], sizeof(h->status));
    ota_strlcpy(h->reason, j->reason, sizeof(h->reason));
    h->ts_ms = now;
}

/* The host is told, then the move takes effect in memory. */
static void moved(struct ota_agent *a, enum ota_state from, struct ota_journal *next)
{
    struct ota_transition t;
    char version[64];

    ota_strlcpy(version, a->m_ok ? a->m.version : "", sizeof(version));
    t.from = from;
    t.to = next->state;
    t.journal = next->state == OTA_STATE_IDLE ? &a->j : next; /* IDLE: the update that ended */
    t.version = version;
    t.kind = kind_name(a);
    if (a->ops.on_transition)
        a->ops.on_transition(a->ops.transition_ctx, &t);
    ota_journal_copy(&a->j, next);
    a->resumed = 0;
    on_enter(a, next->state);
}

enum journal_write { JOURNAL_SAVE, JOURNAL_MOVE };

/* The one function that writes the journal. JOURNAL_SAVE: as it is (same
 * state, no report): checkpoints, counters, flags. JOURNAL_MOVE: the move to
 * `to` with its report (and history entry when the update ends), then the
 * host is told and the on-enter step runs. On a store failure nothing
 * changes. */
static int journal_write(struct ota_agent *a, enum ota_state to, enum journal_write how,
                         struct ota_err *err)
{
    struct ota_journal *next;
    struct ota_report rep, *prep = NULL;
    struct ota_history hist, *phist = NULL;
    int64_t now;
    enum ota_status status = OTA_STATUS_IN_PROGRESS;
    int r;

    if (how == JOURNAL_SAVE)
        return a->ops.store->save(a->ops.store_ctx, &a->j, NULL, NULL, err);
    next = &a->jnext; /* free again once moved() returns (a nested move reuses it) */
    now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    if (to == OTA_STATE_IDLE && !a->j.update_id[0]) { /* an empty journal: nothing to copy */
        ota_journal_clear(next);
        next->state = OTA_STATE_IDLE;
        goto save;
    }
    ota_journal_copy(next, &a->j);
    next->state = to;
    next->flags &= ~OTA_JF_REBOOT_ASKED;
    if (to == OTA_STATE_IDLE && a->j.update_id[0])
        status = a->j.failed ? OTA_STATUS_FAILURE : OTA_STATUS_SUCCESS;
    if (a->j.update_id[0] && reports_enabled(a)) {
        fill_report(a, next, to, status, &rep, now);
        prep = &rep;
    }
    if (a->j.update_id[0] && to == OTA_STATE_IDLE) {
        fill_history(a, next, status, &hist, now);
        phist = &hist;
    }
    if (to == OTA_STATE_IDLE) {
        ota_journal_clear(next);
        next->state = OTA_STATE_IDLE;
    }
save:
    r = a->ops.store->save(a->ops.store_ctx, next, prep, phist, err);
    if (r < 0)
        return r;
    if (to == OTA_STATE_IDLE && a->j.update_id[0]) {
        a->outcome = status;
        ota_strlcpy(a->outcome_reason, a->j.reason, sizeof(a->outcome_reason));
    }
    moved(a, a->j.state, next);
    /* Best effort: a report that cannot go now waits in the outbox. */
    if (prep && a->server_ok)
        ota_ignore(ota_agent_flush_outbox(a, NULL));
    return 0;
}

int core_transition(struct ota_agent *a, enum ota_state to, struct ota_err *err)
{
    return journal_write(a, to, JOURNAL_MOVE, err);
}

int core_save_journal(struct ota_agent *a, struct ota_err *err)
{
    return journal_write(a, a->j.state, JOURNAL_SAVE, err);
}

void core_set_reason(struct ota_agent *a, const char *reason)
{
    ota_strlcpy(a->j.reason, reason, sizeof(a->j.reason));
}

/* The update failed before anything visible changed: back to IDLE. */
int core_fail_update(struct ota_agent *a, const char *reason, struct ota_err *err)
{
    core_set_reason(a, reason);
    a->j.failed = 1;
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    a->ops.install->dl_close(a->ops.install_ctx);
    return core_transition(a, OTA_STATE_IDLE, err);
}

/* The update failed after the switch: roll back to the last-known-good slot. */
int core_start_rollback(struct ota_agent *a, const char *reason, struct ota_err *err)
{
    core_set_reason(a, reason);
    a->j.failed = 1;
    return core_transition(a, OTA_STATE_ROLLING_BACK, err);
}

static void on_enter(struct ota_agent *a, enum ota_state to)
{
    switch (to) {
    case OTA_STATE_DOWNLOADING:
        a->dl.wake_ms = 0;
        break;
    case OTA_STATE_HEALTH_CHECK:
        a->health_deadline = core_mono(a) + a->cfg.health_window_ms;
        a->health_next = core_mono(a);
        a->health_grace_end = core_mono(a) + a->cfg.health_grace_ms;
        a->health_ok = 0;
        break;
    case OTA_STATE_IDLE:
        core_dl_reset(a);
        a->m_ok = 0;
        break;
    default:
        break;
    }
}

static int load_manifest(struct ota_agent *a, struct ota_err *err)
{
    if (a->m_ok || !a->j.update_id[0])
        return 0;
    if (ota_manifest_parse(a->j.manifest, strlen(a->j.manifest), &a->m, err) < 0)
        return -EBADMSG;
    a->m_ok = 1;
    return 0;
}

/* ---- CHECKING ----------------------------------------------------------- */

int core_inventory(struct ota_agent *a, struct ota_inventory *inv, char *appv, char *rootv,
                   size_t cap, int *app_slot, int *root_slot)
{
    if (ota_agent_installed(a, OTA_KIND_APP, app_slot, appv, cap, NULL) < 0) {
        *app_slot = OTA_SLOT_A;
        ota_strlcpy(appv, "0.0.0", cap);
    }
    if (!a->ops.bootenv ||
        ota_agent_installed(a, OTA_KIND_ROOTFS, root_slot, rootv, cap, NULL) < 0) {
        *root_slot = OTA_SLOT_A;
        ota_strlcpy(rootv, a->cfg.rootfs_version, cap);
    }
    memset(inv, 0, sizeof(*inv));
    inv->device_id = a->device_id;
    inv->device_type = a->cfg.device_type;
    inv->group = a->cfg.group;
    inv->state = ota_state_names[a->j.state];
    inv->app_version = appv;
    inv->rootfs_version = rootv;
    inv->app_slot = ota_slot_names[*app_slot];
    inv->rootfs_slot = ota_slot_names[*root_slot];
    inv->attributes = a->cfg.attributes;
    inv->n_attributes = a->cfg.n_attributes > 0 ? (size_t)a->cfg.n_attributes : 0;
    inv->timezone = a->cfg.timezone;
    inv->update_id = a->j.update_id;
    return 0;
}

/* Verifies an offer; on acceptance fills the journal for DOWNLOADING.
 * Returns 1 accepted, 0 already installed, -EPERM/-EBADMSG refused (reason). */
static int check_offer(struct ota_agent *a, const struct ota_offer *off, struct ota_err *err)
{
    struct ota_manifest m;
    char cur[64];
    uint64_t dl_free = 0, room = 0;
    int slot, r;

    r = core_keys_verify(a, off, err);
    if (r < 0)
        return r;
    r = ota_manifest_parse(off->manifest, strlen(off->manifest), &m, err);
    if (r < 0)
        return -EBADMSG;
    r = core_guard_product(a, &m, err);
    if (r < 0)
        return r;
    r = core_keys_rotate(a, &m, err);
    if (r < 0)
        return r;
    r = core_slots_for(m.kind)->preflight(a, &m, err);
    if (r < 0)
        return r;
    r = ota_agent_installed(a, m.kind, &slot, cur, sizeof(cur), err);
    if (r < 0)
        return r;
    /* The installed version is up to date, also for a rollback order to it
     * (not a reinstall on every poll). */
    {
        int cmp;
        if (ota_version_cmp(m.version, cur, &cmp) == 0 && cmp == 0)
            return 0;
    }
    r = ota_manifest_check_device(&m, a->cfg.device_type, cur, err);
    if (r < 0)
        return r;
    r = core_guard_rollback(a, &m, cur, err);
    if (r < 0)
        return r;
    if (!off->url[0])
        return ota_err_set(err, EBADMSG, "release %s has no payload asset '%s'", m.version,
                           m.payload);
    r = a->ops.install->space(a->ops.install_ctx, m.kind, &dl_free, &room, err);
    if (r < 0)
        return r;
    if (dl_free < m.size)
        return ota_err_set(err, OTA_E_NO_SPACE,
                           "not enough space for the download: %llu bytes free, %llu needed",
                           (unsigned long long)dl_free, (unsigned long long)m.size);
    if (room < m.installed_size)
        return ota_err_set(err, OTA_E_NO_SPACE,
                           "not enough room in the slot: %llu bytes, %llu needed",
                           (unsigned long long)room, (unsigned long long)m.installed_size);

    ota_journal_clear(&a->j);
    a->j.state = OTA_STATE_CHECKING;
    ota_strlcpy(a->j.update_id, off->update_id, sizeof(a->j.update_id));
    ota_strlcpy(a->j.rollout_id, off->rollout_id, sizeof(a->j.rollout_id));
    ota_strlcpy(a->j.manifest, off->manifest, sizeof(a->j.manifest));
    ota_strlcpy(a->j.signature, off->signature, sizeof(a->j.signature));
    ota_strlcpy(a->j.url, off->url, sizeof(a->j.url));
    a->j.from_slot = slot;
    a->j.to_slot = OTA_SLOT_OTHER(slot);
    ota_strlcpy(a->j.from_version, cur, sizeof(a->j.from_version));
    a->j.wait_activation = off->wait_activation;
    a->j.not_after_ms = off->not_after_ms;
    a->m = m;
    a->m_ok = 1;
    return 1;
}

static int handle_checking(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_offer *off = malloc(sizeof(*off));
    struct ota_inventory inv;
    struct ota_err cerr = {0};
    char appv[64], rootv[64];
    int app_slot, root_slot, has = 0, r;

    if (!off)
        return ota_err_set(err, ENOMEM, "out of memory");
    ota_offer_clear(off);
    core_inventory(a, &inv, appv, rootv, sizeof(appv), &app_slot, &root_slot);
    r = core_source(a)->check(a, &inv, &has, off, &cerr);
    if (r < 0) {
        a->check = OTA_CHECK_UNREACHABLE;
        ota_strlcpy(a->check_reason, cerr.reason, sizeof(a->check_reason));
        r = core_transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    if (!has) {
        a->check = OTA_CHECK_UP_TO_DATE;
        a->check_reason[0] = '\0';
        r = core_transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    r = check_offer(a, off, &cerr);
    if (r == 0) {
        a->check = OTA_CHECK_UP_TO_DATE;
        snprintf(a->check_reason, sizeof(a->check_reason), "already installed");
        r = core_transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    if (r < 0) {
        /* Refused: nothing was touched. Record and report it as a failed
         * update - except for a dry run (ota-agent check), which only looks:
         * no history, no report; the update that meets it records it. */
        a->check = OTA_CHECK_REFUSED;
        snprintf(a->check_reason, sizeof(a->check_reason), "release refused: %s", cerr.reason);
        ota_journal_clear(&a->j);
        if (a->dry_run) {
            a->j.state = OTA_STATE_CHECKING;
            r = core_transition(a, OTA_STATE_IDLE, err);
            goto out;
        }
        a->j.state = OTA_STATE_CHECKING;
        ota_strlcpy(a->j.update_id, off->update_id, sizeof(a->j.update_id));
        ota_strlcpy(a->j.rollout_id, off->rollout_id, sizeof(a->j.rollout_id));
        a->m_ok = ota_manifest_parse(off->manifest, strlen(off->manifest), &a->m, NULL) == 0;
        core_set_reason(a, a->check_reason);
        a->j.failed = 1;
        r = core_transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    a->check = OTA_CHECK_OFFERED;
    snprintf(a->check_reason, sizeof(a->check_reason), "%s %s offered", kind_name(a), a->m.version);
    if (a->dry_run) {
        ota_journal_clear(&a->j);
        a->j.state = OTA_STATE_CHECKING;
        r = core_transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    core_dl_reset(a);
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    r = core_transition(a, OTA_STATE_DOWNLOADING, err);
out:
    free(off);
    st->result = OTA_STEP_CONTINUE;
    return r;
}

/* ---- INSTALLING, SWITCHING, REBOOTING ------------------------------- */

static int handle_installing(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    char why[OTA_REASON_LEN];
    int r;

    st->result = OTA_STEP_CONTINUE;
    r = a->ops.install->slot_install(a->ops.install_ctx, &a->m, a->j.to_slot, &e);
    if (r < 0) {
        snprintf(why, sizeof(why), "install into slot %s failed: %s", ota_slot_names[a->j.to_slot],
                 e.reason);
        return core_fail_update(a, why, err);
    }
    if (a->j.wait_activation)
        return core_enter_standby(a, err);
    return core_transition(a, OTA_STATE_SWITCHING, err);
}

/* ---- HEALTH_CHECK, COMMITTING, ROLLING_BACK ------------------------- */

static int handle_health(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    char why[OTA_REASON_LEN];
    int64_t now = core_mono(a);
    int active = 0, r;

    if (now >= a->health_next) {
        why[0] = '\0';
        r = a->ops.service->is_active(a->ops.service_ctx, &active, &e);
        if (r < 0 || !active) {
            snprintf(why, sizeof(why), "health check: service not active%s%s", r < 0 ? ": " : "",
                     r < 0 ? e.reason : "");
        } else if (a->cfg.health_url[0]) {
            struct ota_http_resp resp = {0};
            struct ota_http_req req = {"GET", a->cfg.health_url, NULL, NULL,
                                       (long)a->cfg.health_interval_ms * 2 + 1000};
            r = a->ops.transport->request(a->ops.transport_ctx, &req, &resp, &e);
            free(resp.body);
            if (r < 0)
                snprintf(why, sizeof(why), "health check: %s", e.reason);
            else if (resp.status != 200)
                snprintf(why, sizeof(why), "health check: %s answered %ld", a->cfg.health_url,
                         resp.status);
        }
        if (!why[0]) {
            a->health_ok = 1;
        } else if (a->health_ok || now >= a->health_grace_end) {
            /* Healthy once and now not, or never healthy within the grace. */
            st->result = OTA_STEP_CONTINUE;
            return core_start_rollback(a, why, err);
        } /* else: still starting, within the grace */
        now = core_mono(a);
        a->health_next = now + a->cfg.health_interval_ms;
    }
    if (now >= a->health_deadline && a->health_ok) {
        st->result = OTA_STEP_CONTINUE;
        return core_transition(a, OTA_STATE_COMMITTING, err);
    }
    st->result = OTA_STEP_WAIT;
    st->wake_ms =
        a->health_next < a->health_deadline || !a->health_ok ? a->health_next : a->health_deadline;
    return 0;
}

static int kv_set_versions(struct ota_agent *a, enum ota_kind kind, int slot, const char *version,
                           int prev_slot, const char *prev_version, struct ota_err *err)
{
    const struct ota_store_ops *s = a->ops.store;
    const char *k = ota_kind_names[kind];
    char key[48];
    int r;

    snprintf(key, sizeof(key), "%s.version", k);
    if ((r = s->kv_set(a->ops.store_ctx, key, version, err)) < 0)
        return r;
    snprintf(key, sizeof(key), "%s.slot", k);
    if ((r = s->kv_set(a->ops.store_ctx, key, ota_slot_names[slot], err)) < 0)
        return r;
    snprintf(key, sizeof(key), "%s.prev.version", k);
    if ((r = s->kv_set(a->ops.store_ctx, key, prev_version, err)) < 0)
        return r;
    snprintf(key, sizeof(key), "%s.prev.slot", k);
    return s->kv_set(a->ops.store_ctx, key, ota_slot_names[prev_slot], err);
}

static int handle_committing(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int r;

    st->result = OTA_STEP_CONTINUE;
    if (core_slots(a)->commit(a, &e) < 0)
        return core_start_rollback(a, e.reason, err);
    r = core_guard_record(a, &a->m, err);
    if (r < 0)
        return r;
    r = kv_set_versions(a, a->m.kind, a->j.to_slot, a->m.version, a->j.from_slot, a->j.from_version,
                        err);
    if (r < 0)
        return r;
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    core_set_reason(a, "");
    a->j.failed = 0;
    OTA_FAULT_POINT("commit.before_save");
    return core_transition(a, OTA_STATE_IDLE, err);
}

static int handle_rolling_back(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    int r;

    st->result = OTA_STEP_CONTINUE;
    r = core_slots(a)->revert(a, st, err);
    if (r != 0)
        return r < 0 ? r : 0;
    if (a->j.flags & OTA_JF_MANUAL) {
        /* An operator's rollback of a committed release: the other slot is
         * now the committed one, and the one we left is the previous. */
        r = kv_set_versions(a, a->m_ok ? a->m.kind : OTA_KIND_APP, a->j.from_slot,
                            a->j.from_version, a->j.to_slot, a->m_ok ? a->m.version : "", err);
        if (r < 0)
            return r;
    }
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    return core_transition(a, OTA_STATE_IDLE, err);
}

/* ---- start, step, commands ------------------------------------------ */

int ota_agent_load(struct ota_agent *a, struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    struct ota_err lerr = {0};
    int r;

    /* A new store has no journal: that is IDLE, not a reason to keep. */
    r = st->load(a->ops.store_ctx, &a->j, &lerr);
    if (r == -ENOENT) {
        ota_journal_clear(&a->j);
        a->j.state = OTA_STATE_IDLE;
        r = 0;
    }
    if (r < 0)
        return ota_err_set(err, -r, "%s", lerr.reason);
    if (a->j.state < 0 || a->j.state >= OTA_STATE_MAX)
        return ota_err_set(err, EBADMSG, "journal holds an unknown state %d", (int)a->j.state);
    if (st->kv_get(a->ops.store_ctx, "device.id", a->device_id, sizeof(a->device_id), NULL) < 0)
        ota_strlcpy(a->device_id, a->cfg.device_id, sizeof(a->device_id));
    if (st->kv_get(a->ops.store_ctx, "device.token", a->token, sizeof(a->token), NULL) < 0)
        a->token[0] = '\0';
    a->m_ok = 0;
    if (a->j.state != OTA_STATE_IDLE && load_manifest(a, err) < 0)
        return -EBADMSG;
    a->loaded = 1;
    a->resumed = 1;
    return 0;
}

static int after_switch(enum ota_state s)
{
    return s == OTA_STATE_SWITCHING || s == OTA_STATE_REBOOTING || s == OTA_STATE_HEALTH_CHECK ||
           s == OTA_STATE_COMMITTING;
}

int ota_agent_start(struct ota_agent *a, struct ota_err *err)
{
    char why[OTA_REASON_LEN];
    enum ota_state s;
    int r;

    r = ota_agent_load(a, err);
    if (r < 0)
        return r;
    s = a->j.state;
    if (s == OTA_STATE_IDLE)
        return 0;
    if (s == OTA_STATE_STANDBY) {
        /* Not a resumption of work: waiting across reboots is the state's
         * purpose, and its bound (not the loop breaker) ends it. */
        a->standby_poll = 1;
        return 0;
    }
    a->j.resumes++;
    r = core_save_journal(a, err);
    if (r < 0)
        return r;
    if (a->j.resumes > a->cfg.max_resumes && s != OTA_STATE_ROLLING_BACK) {
        snprintf(why, sizeof(why), "gave up after %u resumptions in %s", a->j.resumes - 1,
                 ota_state_names[s]);
        if (after_switch(s))
            return core_start_rollback(a, why, err);
        return core_fail_update(a, why, err);
    }
    switch (s) {
    case OTA_STATE_CHECKING:
        return core_transition(a, OTA_STATE_IDLE, err); /* start over */
    case OTA_STATE_HEALTH_CHECK:
        /* The window was interrupted: we cannot vouch for it. */
        return core_start_rollback(a, "health check interrupted by a restart", err);
    default:
        /* DOWNLOADING resumes from the verified prefix, VERIFYING hashes
         * again, INSTALLING wipes and installs again, SWITCHING, COMMITTING
         * and ROLLING_BACK finish (idempotent), REBOOTING reads the env. */
        return 0;
    }
}

int ota_agent_check(struct ota_agent *a, int dry_run, struct ota_err *err)
{
    if (!a->loaded)
        return ota_err_set(err, EINVAL, "agent not started");
    if (a->j.state == OTA_STATE_STANDBY && !dry_run) {
        a->standby_poll = 1; /* the next step checks in for the activation */
        return 0;
    }
    if (a->j.state != OTA_STATE_IDLE)
        return ota_err_set(err, EBUSY, "an update is in progress (%s)",
                           ota_state_names[a->j.state]);
    a->check = OTA_CHECK_NONE;
    a->dry_run = dry_run;
    return core_transition(a, OTA_STATE_CHECKING, err);
}

int ota_agent_step(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    st->result = OTA_STEP_CONTINUE;
    st->wake_ms = 0;
    if (!a->loaded)
        return ota_err_set(err, EINVAL, "agent not started");
    if (a->j.state != OTA_STATE_IDLE && a->j.state != OTA_STATE_CHECKING && !a->m_ok) {
        int r = load_manifest(a, err);
        if (r < 0)
            return r;
    }
    switch (a->j.state) {
    case OTA_STATE_IDLE:
        st->result = OTA_STEP_IDLE;
        return 0;
    case OTA_STATE_CHECKING:
        return handle_checking(a, st, err);
    case OTA_STATE_DOWNLOADING:
        return core_handle_downloading(a, st, err);
    case OTA_STATE_VERIFYING:
        return core_handle_verifying(a, st, err);
    case OTA_STATE_INSTALLING:
        return handle_installing(a, st, err);
    case OTA_STATE_SWITCHING:
        return core_handle_switching(a, st, err);
    case OTA_STATE_REBOOTING:
        return core_handle_rebooting(a, st, err);
    case OTA_STATE_HEALTH_CHECK:
        return handle_health(a, st, err);
    case OTA_STATE_COMMITTING:
        return handle_committing(a, st, err);
    case OTA_STATE_ROLLING_BACK:
        return handle_rolling_back(a, st, err);
    case OTA_STATE_STANDBY:
        return core_handle_standby(a, st, err);
    case OTA_STATE_MAX:
        break;
    }
    return ota_err_set(err, EINVAL, "bad state");
}

int ota_agent_commit(struct ota_agent *a, struct ota_err *err)
{
    if (!a->loaded)
        return ota_err_set(err, EINVAL, "agent not started");
    if (a->j.state == OTA_STATE_HEALTH_CHECK)
        return core_transition(a, OTA_STATE_COMMITTING, err);
    if (a->j.state == OTA_STATE_REBOOTING) {
        int r = core_slots(a)->commit_order(a, err);
        if (r < 0)
            return r;
        return core_transition(a, OTA_STATE_COMMITTING, err);
    }
    return ota_err_set(err, EBUSY, "nothing to commit in state %s", ota_state_names[a->j.state]);
}

int ota_agent_rollback(struct ota_agent *a, struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    char pslot[8], pver[64], cur[64];
    int slot, r;

    if (!a->loaded)
        return ota_err_set(err, EINVAL, "agent not started");
    if (after_switch(a->j.state))
        return core_start_rollback(a, "rollback ordered by the operator", err);
    if (a->j.state == OTA_STATE_ROLLING_BACK)
        return 0;
    if (a->j.state != OTA_STATE_IDLE)
        return core_fail_update(a, "update cancelled by the operator", err);
    /* IDLE: go back to the previous committed app release. */
    if (st->kv_get(a->ops.store_ctx, "app.prev.slot", pslot, sizeof(pslot), NULL) < 0 ||
        st->kv_get(a->ops.store_ctx, "app.prev.version", pver, sizeof(pver), NULL) < 0 || !pver[0])
        return ota_err_set(err, ENOENT, "no previous release to roll back to");
    r = ota_agent_installed(a, OTA_KIND_APP, &slot, cur, sizeof(cur), err);
    if (r < 0)
        return r;
    if (strcmp(pslot, ota_slot_names[OTA_SLOT_OTHER(slot)]) != 0)
        return ota_err_set(err, ENOENT, "the previous release is not in the inactive slot");
    {
        char have[64];
        if (a->ops.install->slot_version(a->ops.install_ctx, OTA_KIND_APP, OTA_SLOT_OTHER(slot),
                                         have, sizeof(have), NULL) < 0 ||
            strcmp(have, pver) != 0)
            return ota_err_set(err, ENOENT, "slot %s no longer holds release %s", pslot, pver);
    }
    ota_journal_clear(&a->j);
    a->j.state = OTA_STATE_IDLE;
    snprintf(a->j.update_id, sizeof(a->j.update_id), "manual-rollback-%lld",
             (long long)a->ops.clock->wall_ms(a->ops.clock_ctx));
    a->j.from_slot = OTA_SLOT_OTHER(slot);
    a->j.to_slot = slot;
    ota_strlcpy(a->j.from_version, pver, sizeof(a->j.from_version));
    a->j.flags = OTA_JF_MANUAL;
    /* A minimal manifest so the report and history say what is left. */
    snprintf(a->j.manifest, sizeof(a->j.manifest),
             "{\"schema\":1,\"name\":\"manual-rollback\",\"version\":\"%s\",\"kind\":\"app\","
             "\"format\":\"tar.gz\",\"payload\":\"none\",\"size\":0,\"sha256\":\"%064d\","
             "\"installed_size\":0,\"device_types\":[\"%s\"],\"min_version\":\"\","
             "\"rollback\":true,\"created\":0,\"rollback_expires\":253402300799,"
             "\"rollback_from\":[\"%s\"]}",
             cur, 0, a->cfg.device_type, cur);
    a->m_ok = ota_manifest_parse(a->j.manifest, strlen(a->j.manifest), &a->m, NULL) == 0;
    snprintf(a->j.reason, sizeof(a->j.reason), "manual rollback from %s to %s", cur, pver);
    return core_transition(a, OTA_STATE_ROLLING_BACK, err);
}
