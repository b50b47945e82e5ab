/* The update state machine (DESIGN.md, "The agent").
 *
 * One function changes state (transition: persist, report, notify, on-enter),
 * one handler per state. A state is saved before its side effects start, so
 * that every start can apply the recovery rule of the state it finds. */
#include "ota/abboot.h"
#include "ota/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/crypto.h"
#include "ota/faultpoint.h"
#include "ota/json.h"
#include "ota/manifest.h"
#include "ota/protocol.h"
#include "ota/version.h"

const char *const ota_state_names[OTA_STATE_MAX] = {
    "IDLE",      "CHECKING",  "DOWNLOADING",  "VERIFYING",  "INSTALLING",
    "SWITCHING", "REBOOTING", "HEALTH_CHECK", "COMMITTING", "ROLLING_BACK",
};
const char *const ota_slot_names[OTA_SLOT_MAX] = {"a", "b"};
const char *const ota_status_names[OTA_STATUS_MAX] = {"in_progress", "success", "failure"};
const char *const ota_source_names[OTA_SOURCE_MAX] = {"fleet", "github"};
const char *const ota_check_result_names[OTA_CHECK_MAX] = {"none", "up_to_date", "offered",
                                                           "refused", "unreachable"};

/* Boot env values of the slots, as boot.scr reads them. */
static const char *const env_slot_names[OTA_SLOT_MAX] = {OTA_ENV_SLOT_A, OTA_ENV_SLOT_B};

/* The download of the current update in this process. Its durable side is
 * in the journal (durable_len, prefix_sha256, etag). dl_restart() is the one
 * way back to byte 0, dl_attempt_begin() starts each request. */
struct dl_session {
    struct ota_sha256 *sha; /* hashes [0, received) of the download file */
    uint64_t received;
    int sha_ok;    /* sha and received match the file: no check of the disk needed */
    int digest_ok; /* digest holds the whole payload's hash */
    uint8_t digest[OTA_SHA256_LEN];
    int64_t wake_ms;       /* backoff: no attempt before this (mono) */
    int64_t checkpoint_ms; /* when the last checkpoint was made (mono) */
    /* the current attempt's answer */
    int from_zero; /* the answer says: start again from byte 0 */
    long status;
    int fatal; /* no point retrying this answer */
    struct ota_err err;
};

struct ota_agent {
    struct ota_agent_config cfg;
    struct ota_agent_ops ops;
    struct ota_journal j;
    int loaded;
    int resumed; /* the state in j was found at start, not entered now */

    struct ota_manifest m; /* parsed j.manifest, valid when m_ok */
    int m_ok;

    struct dl_session dl;

    int64_t health_deadline;
    int64_t health_next;
    int64_t health_grace_end; /* failures before the first healthy probe are
                                 tolerated until then */
    int health_ok;            /* a probe succeeded in this window */

    char device_id[OTA_ID_LEN];
    char token[256];
    int server_ok; /* last report delivery reached the server */

    int dry_run;
    enum ota_check_result check;
    char check_reason[OTA_REASON_LEN];
    enum ota_status outcome;
    char outcome_reason[OTA_REASON_LEN];
};

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
}

struct ota_agent *ota_agent_new(const struct ota_agent_config *cfg, const struct ota_agent_ops *ops)
{
    struct ota_agent *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->cfg = *cfg;
    a->ops = *ops;
    a->dl.sha = ota_sha256_new();
    if (!a->dl.sha) {
        free(a);
        return NULL;
    }
    a->server_ok = 1;
    a->outcome = OTA_STATUS_IN_PROGRESS;
    return a;
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

static int64_t mono(struct ota_agent *a)
{
    return a->ops.clock->mono_ms(a->ops.clock_ctx);
}

/* An update source: where the agent asks for an offer and, if the source
 * takes them, sends its status reports (the fleet API, GitHub Releases). A
 * new source (hawkBit DDI, the fleet runner) is one more table in sources[]
 * and a name in enum ota_source; the state machine does not change. */
struct update_source {
    /* an offer for this device, or *ret_has = 0 when there is none */
    int (*check)(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                 struct ota_offer *off, struct ota_err *err);
    /* one status report: 0 delivered (or refused for good), < 0 try again
     * later; NULL: the source takes no reports (none are queued) */
    int (*deliver)(struct ota_agent *a, const struct ota_report *rep, struct ota_err *err);
};

static const struct update_source *source(const struct ota_agent *a);

static int reports_enabled(const struct ota_agent *a)
{
    return source(a)->deliver != NULL;
}

static const char *kind_name(const struct ota_agent *a)
{
    return a->m_ok ? ota_kind_names[a->m.kind] : "";
}

static int is_rootfs(const struct ota_agent *a)
{
    return a->m_ok && a->m.kind == OTA_KIND_ROOTFS;
}

/* ---- boot env --------------------------------------------------------- */

static int env_get(struct ota_agent *a, const char *name, char *buf, size_t cap,
                   struct ota_err *err)
{
    if (!a->ops.bootenv)
        return ota_err_set(err, ENOTSUP, "no boot env configured: rootfs updates need one");
    return a->ops.bootenv->get(a->ops.bootenv_ctx, name, buf, cap, err);
}

static int env_slot(struct ota_agent *a, int *ret_slot, struct ota_err *err)
{
    char v[16];
    int r = env_get(a, OTA_ENV_BOOT_PART, v, sizeof(v), err);

    if (r < 0)
        return r;
    for (int s = 0; s < OTA_SLOT_MAX; s++)
        if (strcasecmp(v, env_slot_names[s]) == 0) {
            *ret_slot = s;
            return 0;
        }
    return ota_err_set(err, EBADMSG, "boot env: boot_part='%s' is neither A nor B", v);
}

static int env_set3(struct ota_agent *a, int slot, const char *upgrade, struct ota_err *err)
{
    const char *names[] = {OTA_ENV_BOOT_PART, OTA_ENV_UPGRADE_AVAILABLE, OTA_ENV_BOOTCOUNT};
    const char *values[] = {env_slot_names[slot], upgrade, "0"};

    if (!a->ops.bootenv)
        return ota_err_set(err, ENOTSUP, "no boot env configured: rootfs updates need one");
    return a->ops.bootenv->set(a->ops.bootenv_ctx, names, values, 3, err);
}

/* The rootfs slot running now: the install driver's answer, else the env. */
static int rootfs_booted(struct ota_agent *a, int *ret_slot, int *ret_known, struct ota_err *err)
{
    int r = a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_ROOTFS, ret_slot, NULL);

    if (r == 0) {
        *ret_known = 1;
        return 0;
    }
    *ret_known = 0;
    return env_slot(a, ret_slot, err);
}

/* ---- what is installed ------------------------------------------------ */

int ota_agent_installed(struct ota_agent *a, enum ota_kind kind, int *ret_slot, char *ret_version,
                        size_t cap, struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    char key[32], ver[64];
    int slot, known, r;

    if (kind == OTA_KIND_APP) {
        r = a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_APP, &slot, err);
        if (r < 0)
            return r;
    } else {
        r = rootfs_booted(a, &slot, &known, err);
        if (r < 0)
            return r;
    }
    snprintf(key, sizeof(key), "%s.version", ota_kind_names[kind]);
    r = st->kv_get(a->ops.store_ctx, key, ver, sizeof(ver), NULL);
    if (r < 0 && kind == OTA_KIND_APP)
        r = a->ops.install->slot_version(a->ops.install_ctx, kind, slot, ver, sizeof(ver), NULL);
    if (r < 0)
        ota_strlcpy(ver, kind == OTA_KIND_APP ? "0.0.0" : a->cfg.rootfs_version, sizeof(ver));
    *ret_slot = slot;
    ota_strlcpy(ret_version, ver, cap);
    return 0;
}

/* ---- outbox ----------------------------------------------------------- */

static int transient_status(long s)
{
    return s >= 500 || s == 408 || s == 429;
}

/* Fleet source: one report to /status. 0: delivered, or refused for good
 * (4xx); < 0: try again later. */
static int fleet_deliver(struct ota_agent *a, const struct ota_report *rep, struct ota_err *err)
{
    struct ota_http_resp resp = {0};
    struct ota_http_req req = {"POST", NULL, NULL, a->token, 0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    snprintf(url, sizeof(url), "%s/api/v1/devices/%s/status", a->cfg.server_url, a->device_id);
    req.url = url;
    r = ota_proto_report_body(rep, &body);
    if (r < 0)
        return r;
    req.body = body;
    r = a->ops.transport->request(a->ops.transport_ctx, &req, &resp, err);
    free(body);
    free(resp.body);
    if (r < 0 || transient_status(resp.status)) {
        a->server_ok = 0;
        if (r == 0)
            r = ota_err_set(err, EAGAIN, "report delivery: server answered %ld", resp.status);
    }
    return r;
}

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
        r = source(a)->deliver(a, &rep, err);
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
    a->j = *next;
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
    next = malloc(sizeof(*next));
    if (!next)
        return ota_err_set(err, ENOMEM, "out of memory");
    now = a->ops.clock->wall_ms(a->ops.clock_ctx);
    *next = a->j;
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
        memset(next, 0, sizeof(*next));
        next->state = OTA_STATE_IDLE;
    }
    r = a->ops.store->save(a->ops.store_ctx, next, prep, phist, err);
    if (r < 0) {
        free(next);
        return r;
    }
    if (to == OTA_STATE_IDLE && a->j.update_id[0]) {
        a->outcome = status;
        ota_strlcpy(a->outcome_reason, a->j.reason, sizeof(a->outcome_reason));
    }
    moved(a, a->j.state, next);
    free(next);
    /* Best effort: a report that cannot go now waits in the outbox. */
    if (prep && a->server_ok)
        ota_ignore(ota_agent_flush_outbox(a, NULL));
    return 0;
}

static int transition(struct ota_agent *a, enum ota_state to, struct ota_err *err)
{
    return journal_write(a, to, JOURNAL_MOVE, err);
}

static int save_journal(struct ota_agent *a, struct ota_err *err)
{
    return journal_write(a, a->j.state, JOURNAL_SAVE, err);
}

static void set_reason(struct ota_agent *a, const char *reason)
{
    ota_strlcpy(a->j.reason, reason, sizeof(a->j.reason));
}

/* The update failed before anything visible changed: back to IDLE. */
static int fail_update(struct ota_agent *a, const char *reason, struct ota_err *err)
{
    set_reason(a, reason);
    a->j.failed = 1;
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    a->ops.install->dl_close(a->ops.install_ctx);
    return transition(a, OTA_STATE_IDLE, err);
}

/* The update failed after the switch: roll back to the last-known-good slot. */
static int start_rollback(struct ota_agent *a, const char *reason, struct ota_err *err)
{
    set_reason(a, reason);
    a->j.failed = 1;
    return transition(a, OTA_STATE_ROLLING_BACK, err);
}

/* The download starts again from byte 0: the hash and count in this
 * process, the durable prefix and (unless keep_etag: the answer at hand sets
 * it) the ETag in the journal. sha_ok is the caller's: set when the file was
 * cut to 0 as well. The one place that takes a download back to zero. */
static void dl_restart(struct ota_agent *a, int keep_etag)
{
    ota_ignore(ota_sha256_reset(a->dl.sha));
    a->dl.received = 0;
    a->dl.digest_ok = 0;
    a->j.durable_len = 0;
    if (!keep_etag)
        a->j.etag[0] = '\0';
}

/* No download in this process vouches for the file any more (a new update,
 * none, or bytes found wrong): the next attempt starts from what the disk
 * and the journal prove. */
static void dl_reset(struct ota_agent *a)
{
    dl_restart(a, 0);
    a->dl.sha_ok = 0;
}

/* A new request: forget what the last answer said. */
static void dl_attempt_begin(struct ota_agent *a)
{
    ota_err_clear(&a->dl.err);
    a->dl.from_zero = 0;
    a->dl.fatal = 0;
    a->dl.status = 0;
}

static void on_enter(struct ota_agent *a, enum ota_state to)
{
    switch (to) {
    case OTA_STATE_DOWNLOADING:
        a->dl.wake_ms = 0;
        break;
    case OTA_STATE_HEALTH_CHECK:
        a->health_deadline = mono(a) + a->cfg.health_window_ms;
        a->health_next = mono(a);
        a->health_grace_end = mono(a) + a->cfg.health_grace_ms;
        a->health_ok = 0;
        break;
    case OTA_STATE_IDLE:
        dl_reset(a);
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

static int device_inventory(struct ota_agent *a, struct ota_inventory *inv, char *appv, char *rootv,
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
    return 0;
}

static int ensure_registered(struct ota_agent *a, const struct ota_inventory *inv,
                             struct ota_err *err)
{
    const struct ota_store_ops *st = a->ops.store;
    struct ota_http_resp resp = {0};
    struct ota_http_req req = {"POST", NULL, NULL, a->cfg.enroll_token, 0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    if (st->kv_get(a->ops.store_ctx, "device.token", a->token, sizeof(a->token), NULL) == 0 &&
        st->kv_get(a->ops.store_ctx, "device.id", a->device_id, sizeof(a->device_id), NULL) == 0)
        return 0;
    a->token[0] = '\0';
    snprintf(url, sizeof(url), "%s/api/v1/devices/register", a->cfg.server_url);
    req.url = url;
    r = ota_proto_register_body(inv, &body);
    if (r < 0)
        return r;
    req.body = body;
    r = a->ops.transport->request(a->ops.transport_ctx, &req, &resp, err);
    free(body);
    if (r < 0)
        goto out;
    if (resp.status != 200 && resp.status != 201) {
        r = ota_err_set(err, EACCES, "registration refused: HTTP %ld %.200s", resp.status,
                        resp.body ? resp.body : "");
        goto out;
    }
    r = ota_proto_parse_register(resp.body, resp.len, a->device_id, sizeof(a->device_id), a->token,
                                 sizeof(a->token), err);
    if (r < 0)
        goto out;
    if ((r = st->kv_set(a->ops.store_ctx, "device.id", a->device_id, err)) < 0 ||
        (r = st->kv_set(a->ops.store_ctx, "device.token", a->token, err)) < 0)
        goto out;
out:
    free(resp.body);
    if (r < 0)
        a->token[0] = '\0';
    return r;
}

static int http_get(struct ota_agent *a, const char *url, const char *bearer,
                    struct ota_http_resp *resp, struct ota_err *err)
{
    struct ota_http_req req = {"GET", url, NULL, bearer, 0};

    return a->ops.transport->request(a->ops.transport_ctx, &req, resp, err);
}

/* Fleet source: check in; *ret_has = 0 when nothing is offered. */
static int check_fleet(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                       struct ota_offer *off, struct ota_err *err)
{
    struct ota_http_resp resp = {0};
    struct ota_http_req req = {"POST", NULL, NULL, NULL, 0};
    char url[OTA_URL_LEN], *body = NULL;
    int r;

    r = ensure_registered(a, inv, err);
    if (r < 0)
        return r;
    ota_ignore(ota_agent_flush_outbox(a, NULL));
    snprintf(url, sizeof(url), "%s/api/v1/devices/%s/checkin", a->cfg.server_url, a->device_id);
    req.url = url;
    req.bearer = a->token;
    r = ota_proto_checkin_body(inv, &body);
    if (r < 0)
        return r;
    req.body = body;
    r = a->ops.transport->request(a->ops.transport_ctx, &req, &resp, err);
    free(body);
    if (r < 0)
        goto out;
    if (resp.status == 401 || resp.status == 403) {
        /* Our token is no longer known: register again next time. */
        (void)a->ops.store->kv_set(a->ops.store_ctx, "device.token", "", NULL);
        r = ota_err_set(err, EACCES, "check-in refused: HTTP %ld", resp.status);
        goto out;
    }
    if (resp.status != 200) {
        r = ota_err_set(err, EIO, "check-in: HTTP %ld", resp.status);
        goto out;
    }
    r = ota_proto_parse_checkin(resp.body, resp.len, ret_has, off, err);
out:
    free(resp.body);
    return r;
}

/* GitHub source: latest release, its manifest and signature assets. */
static int check_github(struct ota_agent *a, const struct ota_inventory *inv, int *ret_has,
                        struct ota_offer *off, struct ota_err *err)
{
    struct ota_gh_release *rel = calloc(1, sizeof(*rel));
    const struct ota_gh_asset *man, *sig, *pay;
    struct ota_http_resp resp = {0};
    struct ota_manifest m;
    char url[OTA_URL_LEN];
    int r;

    if (!rel)
        return ota_err_set(err, ENOMEM, "out of memory");
    snprintf(url, sizeof(url), "%s/repos/%s/releases/latest", a->cfg.server_url, a->cfg.repo);
    r = http_get(a, url, NULL, &resp, err);
    if (r < 0)
        goto out;
    if (resp.status == 404) {
        *ret_has = 0;
        goto out;
    }
    if (resp.status != 200) {
        r = ota_err_set(err, EIO, "releases/latest: HTTP %ld", resp.status);
        goto out;
    }
    r = ota_proto_parse_gh_release(resp.body, resp.len, rel, err);
    if (r < 0)
        goto out;
    man = ota_proto_gh_asset(rel, "manifest.json");
    sig = ota_proto_gh_asset(rel, "manifest.json.sig");
    if (!man || !sig) {
        r = ota_err_set(err, EBADMSG, "release %s has no manifest.json/manifest.json.sig asset",
                        rel->tag);
        goto out;
    }
    free(resp.body);
    resp.body = NULL;
    r = http_get(a, man->url, NULL, &resp, err);
    if (r == 0 && resp.status != 200)
        r = ota_err_set(err, EIO, "manifest.json: HTTP %ld", resp.status);
    if (r < 0)
        goto out;
    if (resp.len >= sizeof(off->manifest)) {
        r = ota_err_set(err, EFBIG, "manifest.json is %zu bytes: too large", resp.len);
        goto out;
    }
    memcpy(off->manifest, resp.body, resp.len);
    off->manifest[resp.len] = '\0';
    free(resp.body);
    resp.body = NULL;
    r = http_get(a, sig->url, NULL, &resp, err);
    if (r == 0 && resp.status != 200)
        r = ota_err_set(err, EIO, "manifest.json.sig: HTTP %ld", resp.status);
    if (r < 0)
        goto out;
    while (resp.len && (resp.body[resp.len - 1] == '\n' || resp.body[resp.len - 1] == '\r'))
        resp.body[--resp.len] = '\0';
    if (resp.len >= sizeof(off->signature)) {
        r = ota_err_set(err, EBADMSG, "manifest.json.sig is too large");
        goto out;
    }
    ota_strlcpy(off->signature, resp.body, sizeof(off->signature));
    /* The payload's URL needs the payload's name, which only the manifest
     * gives; it is verified with the rest in check_offer. */
    off->url[0] = '\0';
    if (ota_manifest_parse(off->manifest, strlen(off->manifest), &m, NULL) == 0 &&
        (pay = ota_proto_gh_asset(rel, m.payload)))
        ota_strlcpy(off->url, pay->url, sizeof(off->url));
    snprintf(off->update_id, sizeof(off->update_id), "gh-%s", rel->tag);
    off->rollout_id[0] = '\0';
    *ret_has = 1;
out:
    free(resp.body);
    free(rel);
    return r;
}

static const struct update_source fleet_source = {check_fleet, fleet_deliver};
static const struct update_source github_source = {check_github, NULL};
static const struct update_source *const sources[OTA_SOURCE_MAX] = {
    [OTA_SOURCE_FLEET] = &fleet_source,
    [OTA_SOURCE_GITHUB] = &github_source,
};

static const struct update_source *source(const struct ota_agent *a)
{
    unsigned i = (unsigned)a->cfg.source;

    return i < OTA_SOURCE_MAX ? sources[i] : &github_source; /* as ever: all but the fleet */
}

/* Verifies an offer; on acceptance fills the journal for DOWNLOADING.
 * Returns 1 accepted, 0 already installed, -EPERM/-EBADMSG refused (reason). */
static int check_offer(struct ota_agent *a, const struct ota_offer *off, struct ota_err *err)
{
    struct ota_manifest m;
    char cur[64];
    uint64_t dl_free = 0, room = 0;
    int slot, r;

    r = ota_manifest_verify(off->manifest, strlen(off->manifest), off->signature, a->cfg.pubkey_pem,
                            err);
    if (r < 0)
        return r == -EBADMSG ? r : ota_err_set(err, EBADMSG, "signature check failed");
    r = ota_manifest_parse(off->manifest, strlen(off->manifest), &m, err);
    if (r < 0)
        return -EBADMSG;
    if (m.kind == OTA_KIND_ROOTFS) {
        int env_part;
        if (!a->ops.bootenv)
            return ota_err_set(err, EPERM, "rootfs release %s but no boot env configured",
                               m.version);
        /* A trial boot needs a boot env we can read and write: find out now,
         * before downloading anything. */
        r = env_slot(a, &env_part, err);
        if (r < 0)
            return r;
    }
    r = ota_agent_installed(a, m.kind, &slot, cur, sizeof(cur), err);
    if (r < 0)
        return r;
    if (!m.rollback) {
        int cmp;
        if (ota_version_cmp(m.version, cur, &cmp) == 0 && cmp == 0)
            return 0;
    }
    r = ota_manifest_check_device(&m, a->cfg.device_type, cur, err);
    if (r < 0)
        return r;
    if (!off->url[0])
        return ota_err_set(err, EBADMSG, "release %s has no payload asset '%s'", m.version,
                           m.payload);
    r = a->ops.install->space(a->ops.install_ctx, m.kind, &dl_free, &room, err);
    if (r < 0)
        return r;
    if (dl_free < m.size)
        return ota_err_set(err, ENOSPC,
                           "not enough space for the download: %llu bytes free, %llu needed",
                           (unsigned long long)dl_free, (unsigned long long)m.size);
    if (room < m.installed_size)
        return ota_err_set(err, ENOSPC, "not enough room in the slot: %llu bytes, %llu needed",
                           (unsigned long long)room, (unsigned long long)m.installed_size);

    memset(&a->j, 0, sizeof(a->j));
    a->j.state = OTA_STATE_CHECKING;
    ota_strlcpy(a->j.update_id, off->update_id, sizeof(a->j.update_id));
    ota_strlcpy(a->j.rollout_id, off->rollout_id, sizeof(a->j.rollout_id));
    ota_strlcpy(a->j.manifest, off->manifest, sizeof(a->j.manifest));
    ota_strlcpy(a->j.signature, off->signature, sizeof(a->j.signature));
    ota_strlcpy(a->j.url, off->url, sizeof(a->j.url));
    a->j.from_slot = slot;
    a->j.to_slot = OTA_SLOT_OTHER(slot);
    ota_strlcpy(a->j.from_version, cur, sizeof(a->j.from_version));
    a->m = m;
    a->m_ok = 1;
    return 1;
}

static int handle_checking(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_offer *off = calloc(1, sizeof(*off));
    struct ota_inventory inv;
    struct ota_err cerr = {0};
    char appv[64], rootv[64];
    int app_slot, root_slot, has = 0, r;

    if (!off)
        return ota_err_set(err, ENOMEM, "out of memory");
    device_inventory(a, &inv, appv, rootv, sizeof(appv), &app_slot, &root_slot);
    r = source(a)->check(a, &inv, &has, off, &cerr);
    if (r < 0) {
        a->check = OTA_CHECK_UNREACHABLE;
        ota_strlcpy(a->check_reason, cerr.reason, sizeof(a->check_reason));
        r = transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    if (!has) {
        a->check = OTA_CHECK_UP_TO_DATE;
        a->check_reason[0] = '\0';
        r = transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    r = check_offer(a, off, &cerr);
    if (r == 0) {
        a->check = OTA_CHECK_UP_TO_DATE;
        snprintf(a->check_reason, sizeof(a->check_reason), "already installed");
        r = transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    if (r < 0) {
        /* Refused: nothing was touched. Record and report it as a failed update. */
        a->check = OTA_CHECK_REFUSED;
        snprintf(a->check_reason, sizeof(a->check_reason), "release refused: %s", cerr.reason);
        memset(&a->j, 0, sizeof(a->j));
        a->j.state = OTA_STATE_CHECKING;
        ota_strlcpy(a->j.update_id, off->update_id, sizeof(a->j.update_id));
        ota_strlcpy(a->j.rollout_id, off->rollout_id, sizeof(a->j.rollout_id));
        a->m_ok = ota_manifest_parse(off->manifest, strlen(off->manifest), &a->m, NULL) == 0;
        set_reason(a, a->check_reason);
        a->j.failed = 1;
        r = transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    a->check = OTA_CHECK_OFFERED;
    snprintf(a->check_reason, sizeof(a->check_reason), "%s %s offered", kind_name(a), a->m.version);
    if (a->dry_run) {
        memset(&a->j, 0, sizeof(a->j));
        a->j.state = OTA_STATE_CHECKING;
        r = transition(a, OTA_STATE_IDLE, err);
        goto out;
    }
    dl_reset(a);
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    r = transition(a, OTA_STATE_DOWNLOADING, err);
out:
    free(off);
    st->result = OTA_STEP_CONTINUE;
    return r;
}

/* ---- DOWNLOADING ------------------------------------------------------ */

static int dl_abort(struct ota_agent *a, int code, int from_zero, int fatal, const char *fmt,
                    const char *detail)
{
    a->dl.from_zero |= from_zero;
    a->dl.fatal |= fatal;
    return ota_err_set(&a->dl.err, code, fmt, detail);
}

static int sink_headers(void *ctx, long status, const char *content_range, int64_t content_length,
                        const char *etag)
{
    struct ota_agent *a = ctx;
    uint64_t start, end, total;
    struct ota_err e = {0};

    a->dl.status = status;
    if (status == 200) {
        if (content_length >= 0 && (uint64_t)content_length != a->m.size) {
            char d[64];
            snprintf(d, sizeof(d), "%lld", (long long)content_length);
            return dl_abort(a, EBADMSG, 1, 0, "server sends %s bytes, the manifest says otherwise",
                            d);
        }
        if (a->dl.received > 0) {
            /* Range ignored (or If-Range did not match): start over. */
            if (a->ops.install->dl_open(a->ops.install_ctx, 0, &e) < 0)
                return dl_abort(a, EIO, 1, 0, "%s", e.reason);
            dl_restart(a, 1);
        }
    } else if (status == 206) {
        if (ota_proto_parse_content_range(content_range, &start, &end, &total) < 0)
            return dl_abort(a, EBADMSG, 1, 0, "unparsable Content-Range '%s'",
                            content_range ? content_range : "(none)");
        if (start != a->dl.received || total != a->m.size)
            return dl_abort(a, EBADMSG, 1, 0, "Content-Range '%s' does not fit the resume",
                            content_range);
    } else if (status == 416) {
        return dl_abort(a, ERANGE, 1, 0, "%s", "server answered 416: starting again from 0");
    } else {
        char d[32];
        snprintf(d, sizeof(d), "%ld", status);
        return dl_abort(a, EIO, 0, status == 404 || status == 403 || status == 401 || status == 410,
                        "download: HTTP %s", d);
    }
    if (etag)
        ota_strlcpy(a->j.etag, etag, sizeof(a->j.etag));
    return 0;
}

static int checkpoint(struct ota_agent *a)
{
    struct ota_err e = {0};

    if (a->ops.install->dl_sync(a->ops.install_ctx, &e) < 0) {
        /* After an fsync error Linux may drop the pages it could not write,
         * and the next fsync succeeds: the in-memory hash no longer vouches
         * for the file. The next attempt checks the durable prefix on disk. */
        a->dl.sha_ok = 0;
        return dl_abort(a, EIO, 0, 0, "%s", e.reason[0] ? e.reason : "checkpoint failed");
    }
    if (ota_sha256_peek(a->dl.sha, a->j.prefix_sha256) < 0)
        return dl_abort(a, EIO, 0, 0, "%s", "checkpoint failed");
    a->j.durable_len = a->dl.received;
    if (save_journal(a, &e) < 0)
        return dl_abort(a, EIO, 0, 1, "%s", e.reason);
    return 0;
}

/* Data arrives in chunks of whatever size the network gave; a chunk that
 * crosses the next checkpoint is split there, so checkpoints land at exact
 * multiples of checkpoint_bytes (when the time spacing allows) whatever the
 * chunking: the same download makes the same durable states every time. */
static int sink_data(void *ctx, const void *buf, size_t n)
{
    struct ota_agent *a = ctx;
    const uint8_t *p = buf;
    struct ota_err e = {0};

    if (a->dl.received + n > a->m.size)
        return dl_abort(a, EFBIG, 1, 0, "%s", "download is larger than the manifest's size");
    while (n > 0) {
        uint64_t pending = a->dl.received - a->j.durable_len;
        size_t k = n;
        if (pending < a->cfg.checkpoint_bytes && a->cfg.checkpoint_bytes - pending < k)
            k = (size_t)(a->cfg.checkpoint_bytes - pending);
        if (a->ops.install->dl_write(a->ops.install_ctx, p, k, &e) < 0)
            return dl_abort(a, e.code ? e.code : EIO, 0, e.code == ENOSPC, "%s", e.reason);
        if (ota_sha256_update(a->dl.sha, p, k) < 0)
            return dl_abort(a, EIO, 0, 1, "%s", "hash update failed");
        a->dl.received += k;
        p += k;
        n -= k;
        if (a->dl.received - a->j.durable_len >= a->cfg.checkpoint_bytes &&
            mono(a) - a->dl.checkpoint_ms >= a->cfg.checkpoint_interval_ms) {
            int r;
            a->dl.checkpoint_ms = mono(a);
            if ((r = checkpoint(a)) != 0)
                return r;
        }
    }
    return 0;
}

/* Brings the in-process hash and file position in line with the disk:
 * resume from the durable, verified prefix, or start again from zero. */
static int prepare_resume(struct ota_agent *a, struct ota_err *err)
{
    uint8_t d[OTA_SHA256_LEN];
    uint64_t have = 0;

    if (a->dl.sha_ok)
        return a->ops.install->dl_open(a->ops.install_ctx, a->dl.received, err);
    ota_ignore(ota_sha256_reset(a->dl.sha));
    a->dl.received = 0;
    if (a->j.durable_len > 0 && a->ops.install->dl_size(a->ops.install_ctx, &have, NULL) == 0 &&
        have >= a->j.durable_len &&
        a->ops.install->dl_hash(a->ops.install_ctx, a->j.durable_len, a->dl.sha, NULL) == 0 &&
        ota_sha256_peek(a->dl.sha, d) == 0 && memcmp(d, a->j.prefix_sha256, sizeof(d)) == 0)
        a->dl.received = a->j.durable_len;
    else
        dl_restart(a, 0);
    a->dl.sha_ok = 1;
    return a->ops.install->dl_open(a->ops.install_ctx, a->dl.received, err);
}

static int64_t backoff_ms(struct ota_agent *a)
{
    int64_t d = a->cfg.backoff_base_ms;
    uint32_t shift = a->j.attempts > 0 ? a->j.attempts - 1 : 0;

    while (shift-- && d < a->cfg.backoff_max_ms)
        d *= 2;
    if (d > a->cfg.backoff_max_ms)
        d = a->cfg.backoff_max_ms;
    /* Full jitter in the upper half: spread a fleet, never retry at once. */
    return d / 2 +
           (d > 1 ? (int64_t)(a->ops.clock->random(a->ops.clock_ctx) % (uint32_t)(d / 2 + 1)) : 0);
}

/* A failed attempt: retry after a backoff, or give up. */
static int attempt_failed(struct ota_agent *a, const char *reason, int fatal, struct ota_step *st,
                          struct ota_err *err)
{
    char why[OTA_REASON_LEN];

    a->j.attempts++;
    snprintf(why, sizeof(why), "%s (attempt %u of %u)", reason, a->j.attempts, a->cfg.max_attempts);
    if (fatal || a->j.attempts >= a->cfg.max_attempts) {
        st->result = OTA_STEP_CONTINUE;
        return fail_update(a, why, err);
    }
    set_reason(a, why);
    a->dl.wake_ms = mono(a) + backoff_ms(a);
    st->result = OTA_STEP_WAIT;
    st->wake_ms = a->dl.wake_ms;
    return save_journal(a, err);
}

static int handle_downloading(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_dl_sink sink = {a, sink_headers, sink_data};
    struct ota_err e = {0};
    int r;

    if (a->dl.wake_ms && mono(a) < a->dl.wake_ms) {
        st->result = OTA_STEP_WAIT;
        st->wake_ms = a->dl.wake_ms;
        return 0;
    }
    r = prepare_resume(a, &e);
    if (r < 0)
        return attempt_failed(a, e.reason, r == -ENOSPC, st, err);
    if (a->dl.received == a->m.size && a->m.size > 0) {
        r = 0; /* everything is already on disk */
    } else {
        dl_attempt_begin(a);
        r = a->ops.transport->download(a->ops.transport_ctx, a->j.url,
                                       a->token[0] ? a->token : NULL, a->dl.received, a->j.etag,
                                       &sink, &e);
        if (r == -EINPROGRESS) {
            st->result = OTA_STEP_WAIT;
            st->wake_ms = mono(a);
            return 0;
        }
        if (r == 0 && a->dl.status != 200 && a->dl.status != 206) {
            /* an error answer without an abort (empty body) */
            char d[64];
            snprintf(d, sizeof(d), "download: HTTP %ld", a->dl.status);
            if (!a->dl.err.code)
                (void)ota_err_set(&a->dl.err, EIO, "%s", d);
            r = -EIO;
        }
    }
    if (r == 0 && a->dl.received != a->m.size) {
        (void)ota_err_set(&a->dl.err, EIO, "download ended at %llu of %llu bytes",
                          (unsigned long long)a->dl.received, (unsigned long long)a->m.size);
        r = -EIO;
    }
    if (r < 0) {
        const char *why = a->dl.err.code ? a->dl.err.reason : e.reason;
        if (a->dl.from_zero) {
            (void)a->ops.install->dl_open(a->ops.install_ctx, 0, NULL);
            dl_restart(a, 0);
        }
        return attempt_failed(a, why[0] ? why : "download failed", a->dl.fatal, st, err);
    }
    OTA_FAULT_POINT("download.before_sync");
    r = a->ops.install->dl_sync(a->ops.install_ctx, &e);
    if (r < 0) {
        a->dl.sha_ok = 0; /* as in checkpoint(): verify from disk next time */
        return attempt_failed(a, e.reason, 0, st, err);
    }
    a->ops.install->dl_close(a->ops.install_ctx);
    r = ota_sha256_final(a->dl.sha, a->dl.digest);
    a->dl.sha_ok = 0;
    if (r < 0)
        return attempt_failed(a, "hash failed", 0, st, err);
    a->dl.digest_ok = 1;
    a->j.durable_len = a->m.size;
    st->result = OTA_STEP_CONTINUE;
    return transition(a, OTA_STATE_VERIFYING, err);
}

/* ---- VERIFYING -------------------------------------------------------- */

static int handle_verifying(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    uint64_t have = 0;
    int r;

    st->result = OTA_STEP_CONTINUE;
    if (!a->dl.digest_ok) {
        /* Interrupted before: verify again from the start. */
        ota_ignore(ota_sha256_reset(a->dl.sha));
        r = a->ops.install->dl_size(a->ops.install_ctx, &have, &e);
        if (r == 0 && have != a->m.size)
            r = ota_err_set(&e, EBADMSG, "download is %llu bytes, the manifest says %llu",
                            (unsigned long long)have, (unsigned long long)a->m.size);
        if (r == 0)
            r = a->ops.install->dl_hash(a->ops.install_ctx, a->m.size, a->dl.sha, &e);
        if (r == 0)
            r = ota_sha256_final(a->dl.sha, a->dl.digest);
        if (r < 0)
            goto bad;
        a->dl.digest_ok = 1;
    }
    if (memcmp(a->dl.digest, a->m.sha256, OTA_SHA256_LEN) != 0) {
        char want[OTA_SHA256_HEX], got[OTA_SHA256_HEX];
        ota_hex_encode(a->m.sha256, OTA_SHA256_LEN, want);
        ota_hex_encode(a->dl.digest, OTA_SHA256_LEN, got);
        r = ota_err_set(&e, EBADMSG, "checksum mismatch: sha256 %.12s…, manifest %.12s…", got,
                        want);
        goto bad;
    }
    return transition(a, OTA_STATE_INSTALLING, err);
bad:
    /* The bytes on disk are wrong: drop them and download again. */
    dl_reset(a);
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    a->j.attempts++;
    if (a->j.attempts >= a->cfg.max_attempts)
        return fail_update(a, e.reason, err);
    set_reason(a, e.reason);
    return transition(a, OTA_STATE_DOWNLOADING, err);
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
        return fail_update(a, why, err);
    }
    return transition(a, OTA_STATE_SWITCHING, err);
}

static int request_reboot(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int r;

    a->j.flags |= OTA_JF_REBOOT_ASKED;
    r = save_journal(a, err);
    if (r < 0)
        return r;
    r = a->ops.service->reboot(a->ops.service_ctx, &e);
    if (r < 0)
        return ota_err_set(err, -r, "reboot failed: %s", e.reason);
    st->result = OTA_STEP_REBOOT;
    return 0;
}

/* ---- slots per update kind ------------------------------------------ */

/* How an update kind changes slots: the app's slot directories with its
 * service, or the rootfs's U-Boot A/B (DESIGN.md). The handlers call these
 * and hold no app-versus-rootfs branch. */
struct slot_ops {
    /* SWITCHING: to_slot is made the one to run; *next is the state after. */
    int (*begin_trial)(struct ota_agent *a, enum ota_state *next, struct ota_err *err);
    /* REBOOTING, found after a start: which slot runs decides what follows. */
    int (*booted)(struct ota_agent *a, struct ota_step *st, struct ota_err *err);
    /* COMMITTING: to_slot is made the committed one (a failure rolls back). */
    int (*commit)(struct ota_agent *a, struct ota_err *err);
    /* ROLLING_BACK: from_slot back in place. 0: go on (versions, IDLE);
     * 1: the step is over (a reboot asked, or the update ended); < 0: error. */
    int (*revert)(struct ota_agent *a, struct ota_step *st, struct ota_err *err);
};

static int app_begin_trial(struct ota_agent *a, enum ota_state *next, struct ota_err *err)
{
    int r = a->ops.install->app_switch(a->ops.install_ctx, a->j.to_slot, err);

    if (r < 0)
        return ota_err_prefix(err, r, "switch failed");
    r = a->ops.service->restart(a->ops.service_ctx, err);
    if (r < 0)
        return ota_err_prefix(err, r, "service restart failed");
    *next = OTA_STATE_HEALTH_CHECK;
    return 0;
}

static int app_booted(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    return start_rollback(a, "an app update found in REBOOTING: app updates do not reboot", err);
}

static int app_commit(struct ota_agent *a, struct ota_err *err)
{
    return 0; /* `current` already names the new slot */
}

static int app_revert(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int r = a->ops.install->app_switch(a->ops.install_ctx, a->j.from_slot, err);

    if (r < 0)
        return ota_err_prefix(err, r, "rollback: switch failed");
    r = a->ops.service->restart(a->ops.service_ctx, &e);
    if (r < 0) {
        /* The old release is back in place; its service is the init
         * system's business now. Say so in the report. */
        char why[OTA_REASON_LEN];
        snprintf(why, sizeof(why), "%s; restart after rollback failed: %s", a->j.reason, e.reason);
        set_reason(a, why);
    }
    return 0;
}

static int uboot_begin_trial(struct ota_agent *a, enum ota_state *next, struct ota_err *err)
{
    int r = env_set3(a, a->j.to_slot, "1", err);

    if (r < 0)
        return ota_err_prefix(err, r, "setting the trial boot failed");
    *next = OTA_STATE_REBOOTING;
    return 0;
}

static int uboot_booted(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    char upgrade[16] = "", count[16] = "0";
    struct ota_err e = {0};
    int booted, known, r;

    /* Which slot did the bootloader give us? */
    r = rootfs_booted(a, &booted, &known, &e);
    if (r == 0)
        r = env_get(a, OTA_ENV_UPGRADE_AVAILABLE, upgrade, sizeof(upgrade), &e);
    if (r == 0 && env_get(a, OTA_ENV_BOOTCOUNT, count, sizeof(count), NULL) < 0)
        ota_strlcpy(count, "0", sizeof(count));
    if (r < 0) {
        ota_ignore(ota_err_prefix(&e, r, "boot env unreadable after reboot"));
        return start_rollback(a, e.reason, err);
    }
    if (strcmp(upgrade, "1") == 0 && atoi(count) == 0 && (!known || booted != a->j.to_slot))
        return request_reboot(a, st, err); /* the reboot never happened */
    if (booted == a->j.to_slot && strcmp(upgrade, "1") == 0)
        return transition(a, OTA_STATE_HEALTH_CHECK, err);
    return start_rollback(a, "new rootfs did not boot: the bootloader fell back", err);
}

static int uboot_commit(struct ota_agent *a, struct ota_err *err)
{
    int r = env_set3(a, a->j.to_slot, "0", err);

    return r < 0 ? ota_err_prefix(err, r, "commit: boot env write failed") : 0;
}

static int uboot_revert(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    int booted, known, r;

    r = env_set3(a, a->j.from_slot, "0", &e);
    if (r < 0) {
        char why[OTA_REASON_LEN];
        /* Running the old slot and the env unwritable: the trial boot was
         * never set (the env write is what failed), so there is nothing
         * to undo; say so. Anywhere else we cannot finish: retry later. */
        if (a->ops.install->active_slot(a->ops.install_ctx, OTA_KIND_ROOTFS, &booted, NULL) < 0 ||
            booted != a->j.from_slot)
            return ota_err_set(err, -r, "rollback: boot env write failed: %s", e.reason);
        snprintf(why, sizeof(why), "%s; boot env left as it was: %s", a->j.reason, e.reason);
        set_reason(a, why);
        (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
        r = transition(a, OTA_STATE_IDLE, err);
        return r < 0 ? r : 1;
    }
    r = rootfs_booted(a, &booted, &known, &e);
    if ((r == 0 && known && booted != a->j.from_slot) ||
        /* We cannot see what runs: the new slot may be running. Reboot
         * once into the old one; the flag stops a second reboot. */
        (!known && !(a->j.flags & OTA_JF_REBOOT_ASKED) && a->j.to_slot != a->j.from_slot &&
         !a->resumed)) {
        r = request_reboot(a, st, err);
        return r < 0 ? r : 1;
    }
    return 0;
}

static const struct slot_ops app_slots = {app_begin_trial, app_booted, app_commit, app_revert};
static const struct slot_ops uboot_slots = {uboot_begin_trial, uboot_booted, uboot_commit,
                                            uboot_revert};

static const struct slot_ops *slots(const struct ota_agent *a)
{
    return is_rootfs(a) ? &uboot_slots : &app_slots;
}

static int handle_switching(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    enum ota_state next;

    st->result = OTA_STEP_CONTINUE;
    if (slots(a)->begin_trial(a, &next, &e) < 0)
        return start_rollback(a, e.reason, err);
    return transition(a, next, err);
}

static int handle_rebooting(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    st->result = OTA_STEP_CONTINUE;
    if (!a->resumed)
        return request_reboot(a, st, err);
    return slots(a)->booted(a, st, err);
}

/* ---- HEALTH_CHECK, COMMITTING, ROLLING_BACK ------------------------- */

static int handle_health(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    char why[OTA_REASON_LEN];
    int64_t now = mono(a);
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
            return start_rollback(a, why, err);
        } /* else: still starting, within the grace */
        now = mono(a);
        a->health_next = now + a->cfg.health_interval_ms;
    }
    if (now >= a->health_deadline && a->health_ok) {
        st->result = OTA_STEP_CONTINUE;
        return transition(a, OTA_STATE_COMMITTING, err);
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
    if (slots(a)->commit(a, &e) < 0)
        return start_rollback(a, e.reason, err);
    r = kv_set_versions(a, a->m.kind, a->j.to_slot, a->m.version, a->j.from_slot, a->j.from_version,
                        err);
    if (r < 0)
        return r;
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    set_reason(a, "");
    a->j.failed = 0;
    OTA_FAULT_POINT("commit.before_save");
    return transition(a, OTA_STATE_IDLE, err);
}

static int handle_rolling_back(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    int r;

    st->result = OTA_STEP_CONTINUE;
    r = slots(a)->revert(a, st, err);
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
    return transition(a, OTA_STATE_IDLE, err);
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
        memset(&a->j, 0, sizeof(a->j));
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
    a->j.resumes++;
    r = save_journal(a, err);
    if (r < 0)
        return r;
    if (a->j.resumes > a->cfg.max_resumes && s != OTA_STATE_ROLLING_BACK) {
        snprintf(why, sizeof(why), "gave up after %u resumptions in %s", a->j.resumes - 1,
                 ota_state_names[s]);
        if (after_switch(s))
            return start_rollback(a, why, err);
        return fail_update(a, why, err);
    }
    switch (s) {
    case OTA_STATE_CHECKING:
        return transition(a, OTA_STATE_IDLE, err); /* start over */
    case OTA_STATE_HEALTH_CHECK:
        /* The window was interrupted: we cannot vouch for it. */
        return start_rollback(a, "health check interrupted by a restart", err);
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
    if (a->j.state != OTA_STATE_IDLE)
        return ota_err_set(err, EBUSY, "an update is in progress (%s)",
                           ota_state_names[a->j.state]);
    a->check = OTA_CHECK_NONE;
    a->dry_run = dry_run;
    return transition(a, OTA_STATE_CHECKING, err);
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
        return handle_downloading(a, st, err);
    case OTA_STATE_VERIFYING:
        return handle_verifying(a, st, err);
    case OTA_STATE_INSTALLING:
        return handle_installing(a, st, err);
    case OTA_STATE_SWITCHING:
        return handle_switching(a, st, err);
    case OTA_STATE_REBOOTING:
        return handle_rebooting(a, st, err);
    case OTA_STATE_HEALTH_CHECK:
        return handle_health(a, st, err);
    case OTA_STATE_COMMITTING:
        return handle_committing(a, st, err);
    case OTA_STATE_ROLLING_BACK:
        return handle_rolling_back(a, st, err);
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
        return transition(a, OTA_STATE_COMMITTING, err);
    if (a->j.state == OTA_STATE_REBOOTING && is_rootfs(a)) {
        int booted, known;
        if (rootfs_booted(a, &booted, &known, err) < 0)
            return -EIO;
        if (booted == a->j.to_slot)
            return transition(a, OTA_STATE_COMMITTING, err);
        return ota_err_set(err, EPERM, "the new rootfs slot %s is not the one running",
                           ota_slot_names[a->j.to_slot]);
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
        return start_rollback(a, "rollback ordered by the operator", err);
    if (a->j.state == OTA_STATE_ROLLING_BACK)
        return 0;
    if (a->j.state != OTA_STATE_IDLE)
        return fail_update(a, "update cancelled by the operator", err);
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
    memset(&a->j, 0, sizeof(a->j));
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
             "\"rollback\":true,\"created\":0}",
             cur, 0, a->cfg.device_type);
    a->m_ok = ota_manifest_parse(a->j.manifest, strlen(a->j.manifest), &a->m, NULL) == 0;
    snprintf(a->j.reason, sizeof(a->j.reason), "manual rollback from %s to %s", cur, pver);
    return transition(a, OTA_STATE_ROLLING_BACK, err);
}
