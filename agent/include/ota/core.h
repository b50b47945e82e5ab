/* The agent core: the update state machine, its recovery rules, and the
 * protocol logic, as a library with no global state and no I/O of its own.
 *
 * Everything that touches the world goes through the ops tables below
 * (transport, store, boot env, service, clock, install), so that the CLI
 * daemon, the simulator and the fleet runner can each host agents with their
 * own drivers, and tests can step an agent through fakes.
 *
 * A host calls ota_agent_start() once (it applies the recovery rule for the
 * state found in the store), then ota_agent_step() until it returns
 * OTA_STEP_IDLE (pass done), OTA_STEP_WAIT (call again at wake_ms) or
 * OTA_STEP_REBOOT (the device is rebooting; stop). In STANDBY a pass checks
 * in once and ends with OTA_STEP_IDLE while the state stays STANDBY: the
 * next pass begins with ota_agent_start() or ota_agent_check(). */
#ifndef OTA_CORE_H
#define OTA_CORE_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "ota/inventory.h"
#include "ota/manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ota_state {
    OTA_STATE_IDLE,
    OTA_STATE_CHECKING,
    OTA_STATE_DOWNLOADING,
    OTA_STATE_VERIFYING,
    OTA_STATE_INSTALLING,
    OTA_STATE_SWITCHING,
    OTA_STATE_REBOOTING,
    OTA_STATE_HEALTH_CHECK,
    OTA_STATE_COMMITTING,
    OTA_STATE_ROLLING_BACK,
    /* Installed into the inactive slot, waiting for the fleet's activation
     * (blue-green; DESIGN.md). Between INSTALLING and SWITCHING in the flow;
     * numbered last so that the values above keep their meaning. */
    OTA_STATE_STANDBY,
    OTA_STATE_MAX,
};
/* "IDLE", "CHECKING", ... as in DESIGN.md. */
extern const char *const ota_state_names[OTA_STATE_MAX];
/* -EINVAL if name is not a state. */
int ota_state_from_name(const char *name, enum ota_state *ret) OTA_MUST;

enum ota_slot {
    OTA_SLOT_A,
    OTA_SLOT_B,
    OTA_SLOT_MAX,
};
extern const char *const ota_slot_names[OTA_SLOT_MAX]; /* "a", "b" */
#define OTA_SLOT_OTHER(s) ((s) == OTA_SLOT_A ? OTA_SLOT_B : OTA_SLOT_A)

/* Outcome of an update, as reported and kept in the history. */
enum ota_status {
    OTA_STATUS_IN_PROGRESS,
    OTA_STATUS_SUCCESS,
    OTA_STATUS_FAILURE,
    OTA_STATUS_MAX,
};
extern const char *const ota_status_names[OTA_STATUS_MAX]; /* "in_progress", "success", "failure" */

#define OTA_ID_LEN            64
#define OTA_URL_LEN           1024
#define OTA_REASON_LEN        256
#define OTA_MANIFEST_TEXT_LEN 8192

/* The update journal: everything needed to resume an update after any
 * interruption. Saved durably by the store before each state's side effects. */
struct ota_journal {
    enum ota_state state;
    char update_id[OTA_ID_LEN];  /* "" when no update is in progress */
    char rollout_id[OTA_ID_LEN]; /* fleet rollout, "" for GitHub source */
    char signature[128];         /* base64 Ed25519 over manifest */
    char url[OTA_URL_LEN];       /* payload URL */
    char etag[128];              /* payload ETag seen, for If-Range */
    int from_slot;               /* enum ota_slot: active (last-known-good) slot */
    int to_slot;                 /* enum ota_slot: slot being installed */
    char from_version[64];
    uint64_t durable_len;                  /* download bytes fsynced and hashed */
    uint8_t prefix_sha256[OTA_SHA256_LEN]; /* SHA-256 of [0, durable_len) */
    uint32_t resumes;                      /* starts that found this update in progress */
    uint32_t attempts;                     /* failed download/verify attempts */
    int failed;                  /* 1: update failed; on the way to IDLE or rolling back */
    uint32_t flags;              /* OTA_JF_* below */
    char reason[OTA_REASON_LEN]; /* why it failed / why this transition */
    /* Blue-green (DESIGN.md, "STANDBY"): the offer asked to wait for an
     * activation after the install. */
    int wait_activation;      /* 1: INSTALLING goes to STANDBY, not SWITCHING */
    int64_t not_after_ms;     /* wall: abandon the wait at this time; 0 = no limit given */
    int64_t standby_since_ms; /* wall: when STANDBY was entered (the max-wait bound) */
    /* Last, and the only field cleared and copied as text rather than bytes
     * (ota_journal_clear/copy): 8 KiB, of which a manifest uses a few
     * hundred bytes. A field added to the journal goes above it. */
    char manifest[OTA_MANIFEST_TEXT_LEN]; /* exact signed manifest text */
};

/* The empty journal (IDLE, no update), as a zeroed one reads; what follows
 * the manifest's NUL is not cleared. */
void ota_journal_clear(struct ota_journal *j);
/* *dst = *src, without the bytes after the manifest's NUL. */
void ota_journal_copy(struct ota_journal *dst, const struct ota_journal *src);

/* journal flags */
#define OTA_JF_REBOOT_ASKED 0x1u /* a reboot was requested in this state */
#define OTA_JF_MANUAL       0x2u /* operator-ordered rollback of a committed release */

/* One status report, queued in the outbox and delivered when possible. */
struct ota_report {
    char device_id[OTA_ID_LEN];
    char update_id[OTA_ID_LEN];
    char rollout_id[OTA_ID_LEN];
    char version[64];
    char kind[8];
    char state[24];  /* state name */
    char status[16]; /* status name */
    char reason[OTA_REASON_LEN];
    int64_t ts_ms; /* wall clock */
};

/* One finished update. */
struct ota_history {
    char update_id[OTA_ID_LEN];
    char version[64];
    char from_version[64];
    char kind[8];
    char status[16];
    char reason[OTA_REASON_LEN];
    int64_t ts_ms;
};

/* ---- ops tables -------------------------------------------------------
 * Every op returns 0 or a negative errno and writes *ret_* only on success.
 * Ops that may not finish at once (an asynchronous host) return
 * -EINPROGRESS; the core then returns OTA_STEP_WAIT and calls again. */

struct ota_http_req {
    const char *method; /* "GET", "POST" */
    const char *url;
    const char *body;   /* JSON, or NULL */
    const char *bearer; /* Authorization: Bearer ..., or NULL */
    long timeout_ms;    /* whole request; 0 = the driver's default */
};

struct ota_http_resp {
    long status;
    char *body; /* malloc'ed, NUL-terminated; caller frees */
    size_t len;
    /* Raw values of the headers the core reads, from the final answer ("":
     * absent); the core parses them (GitHub's rate limit, DESIGN.md). */
    char ratelimit_remaining[24]; /* X-RateLimit-Remaining */
    char ratelimit_reset[24];     /* X-RateLimit-Reset (unix seconds) */
    char retry_after[40];         /* Retry-After */
    char date[40];                /* Date */
};

/* Download callbacks, called by the transport in order: on_headers once, for
 * the final response (after redirects), then on_data for each body chunk of
 * a 2xx answer. Missing headers come as "" (content_range, etag) or -1
 * (content_length). A negative return aborts the transfer; download() then
 * returns that value. */
struct ota_dl_sink {
    void *ctx;
    int (*on_headers)(void *ctx, long status, const char *content_range, int64_t content_length,
                      const char *etag);
    int (*on_data)(void *ctx, const void *buf, size_t n);
};

struct ota_transport_ops {
    /* Small request (JSON API). 0 when any HTTP answer arrived (check
     * ret->status); -ECONNREFUSED, -ETIMEDOUT, -EIO... when none did. */
    int (*request)(void *ctx, const struct ota_http_req *req, struct ota_http_resp *ret,
                   struct ota_err *err);
    /* Streams url into sink, asking for bytes from offset on (Range) when
     * offset > 0, with If-Range: etag when etag is not empty. 0 when the body
     * ended as announced, and for any non-2xx final answer (its body is not
     * passed on: the core decides from on_headers); negative errno when cut,
     * timed out or aborted. */
    int (*download)(void *ctx, const char *url, const char *bearer, uint64_t offset,
                    const char *etag, const struct ota_dl_sink *sink, struct ota_err *err);
};

struct ota_store_ops {
    /* The journal; -ENOENT when the store is new. */
    int (*load)(void *ctx, struct ota_journal *ret, struct ota_err *err);
    /* Atomically and durably: write j, append r to the outbox (r may be
     * NULL), append h to the history (h may be NULL). */
    int (*save)(void *ctx, const struct ota_journal *j, const struct ota_report *r,
                const struct ota_history *h, struct ota_err *err);
    /* Oldest undelivered report and its id; -ENOENT when the outbox is empty. */
    int (*outbox_peek)(void *ctx, struct ota_report *ret, int64_t *ret_id, struct ota_err *err);
    int (*outbox_pop)(void *ctx, int64_t id, struct ota_err *err);
    /* Small durable key/value settings (device token, versions). -ENOENT if unset. */
    int (*kv_get)(void *ctx, const char *key, char *buf, size_t cap, struct ota_err *err);
    int (*kv_set)(void *ctx, const char *key, const char *value, struct ota_err *err);
};

/* Boot loader environment (U-Boot). */
struct ota_bootenv_ops {
    /* -ENOENT if unset; -EBADMSG if the env is corrupt (bad CRC). */
    int (*get)(void *ctx, const char *name, char *buf, size_t cap, struct ota_err *err);
    /* Sets n variables in one durable env write. */
    int (*set)(void *ctx, const char *const *names, const char *const *values, size_t n,
               struct ota_err *err);
};

struct ota_service_ops {
    int (*restart)(void *ctx, struct ota_err *err);
    int (*is_active)(void *ctx, int *ret_active, struct ota_err *err);
    /* Reboots the device. Returns only if the reboot was merely requested. */
    int (*reboot)(void *ctx, struct ota_err *err);
};

struct ota_clock_ops {
    int64_t (*wall_ms)(void *ctx); /* for reports */
    int64_t (*mono_ms)(void *ctx); /* for windows and backoff */
    uint32_t (*random)(void *ctx); /* for jitter */
};

/* The device's disks: the download file and the slots. */
struct ota_install_ops {
    /* Opens the partial download for appending, truncated to keep_len. */
    int (*dl_open)(void *ctx, uint64_t keep_len, struct ota_err *err);
    int (*dl_write)(void *ctx, const void *buf, size_t n, struct ota_err *err);
    /* Makes everything written so far durable. */
    int (*dl_sync)(void *ctx, struct ota_err *err);
    void (*dl_close)(void *ctx);
    /* Length on disk; -ENOENT if there is no download. */
    int (*dl_size)(void *ctx, uint64_t *ret, struct ota_err *err);
    /* Feeds the first len bytes of the download into h. -ENODATA if shorter. */
    int (*dl_hash)(void *ctx, uint64_t len, struct ota_sha256 *h, struct ota_err *err);
    int (*dl_remove)(void *ctx, struct ota_err *err);
    /* Free bytes for the download, and room in a slot of this kind. */
    int (*space)(void *ctx, enum ota_kind kind, uint64_t *ret_dl_free, uint64_t *ret_slot_room,
                 struct ota_err *err);
    /* App: the slot `current` points to. Rootfs: the slot that booted,
     * -ENOENT if the driver cannot tell (the core then trusts the env). */
    int (*active_slot)(void *ctx, enum ota_kind kind, int *ret_slot, struct ota_err *err);
    /* App: the VERSION file of a slot; -ENOENT if none. */
    int (*slot_version)(void *ctx, enum ota_kind kind, int slot, char *buf, size_t cap,
                        struct ota_err *err);
    /* Installs the verified download into slot (wiping it first): app
     * packages are extracted safely, rootfs images streamed and synced.
     * -ENOSPC, -EPERM (unsafe entry), -EINVAL (bad payload), -EIO. */
    int (*slot_install)(void *ctx, const struct ota_manifest *m, int slot, struct ota_err *err);
    /* App: points `current` at slot atomically and durably (idempotent). */
    int (*app_switch)(void *ctx, int slot, struct ota_err *err);
};

/* ---- the agent ------------------------------------------------------- */

enum ota_source {
    OTA_SOURCE_FLEET,  /* /api/v1 fleet API */
    OTA_SOURCE_GITHUB, /* /repos/OWNER/REPO/releases/latest */
    OTA_SOURCE_MAX,
};
extern const char *const ota_source_names[OTA_SOURCE_MAX]; /* "fleet", "github" */

/* One inventory attribute (docs/protocol.md "Register"). */
struct ota_attr {
    char key[OTA_ATTR_KEY_MAX + 1];
    char value[OTA_ATTR_VALUE_MAX + 1];
};

struct ota_agent_config {
    enum ota_source source;
    char server_url[512];       /* base URL, no trailing slash */
    char repo[128];             /* OWNER/REPO for the GitHub source */
    char github_token[256];     /* GitHub source: sent as Authorization: Bearer to the
                                   server's origin only; "" = none (never logged) */
    char enroll_token[128];     /* fleet registration token */
    char device_id[OTA_ID_LEN]; /* proposed id; the server may confirm it */
    char device_type[64];
    char group[64];
    /* The product whose releases this device installs: a manifest's name
     * must equal it (per kind). "" = the name recorded at the first
     * committed install of that kind; before any, any name (DESIGN.md,
     * "Which product"). */
    char product[64];        /* app releases: [agent] product */
    char rootfs_product[64]; /* rootfs releases: [rootfs] product */
    /* Inventory attributes and time zone, sent at registration and every
     * check-in when set (n_attributes 0 / timezone "": not sent, the
     * server keeps what it has). */
    struct ota_attr attributes[OTA_ATTR_MAX];
    int n_attributes;
    char timezone[OTA_TZ_MAX + 1]; /* "" | UTC | +HH:MM | IANA name */
    char pubkey_pem[4096];         /* Ed25519 public key, PEM text */
    char rootfs_version[64];       /* version of the factory rootfs */
    int64_t health_window_ms;      /* service must stay healthy this long */
    int64_t health_interval_ms;    /* probe period inside the window */
    int64_t health_grace_ms;       /* a service not yet healthy may fail probes this long
                                      after the restart (0: the first failure rolls back);
                                      once healthy, any failure rolls back, and the commit
                                      needs one healthy probe */
    char health_url[512];          /* "" = no HTTP probe */
    uint32_t max_resumes;          /* loop breaker */
    uint32_t max_attempts;         /* download/verify attempts per update */
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    uint64_t checkpoint_bytes;      /* download bytes between durable checkpoints */
    int64_t checkpoint_interval_ms; /* ... and at least this long apart (mono) */
    int64_t standby_max_wait_ms;    /* STANDBY: abandon after waiting this long (wall clock,
                                       from entering STANDBY; default 7 days) */
};

/* Sets the documented defaults. */
void ota_agent_config_defaults(struct ota_agent_config *c);

struct ota_transition {
    enum ota_state from;
    enum ota_state to;
    const struct ota_journal *journal;
    const char *version; /* target version, "" if none */
    const char *kind;    /* "app", "rootfs", "" */
};

struct ota_agent_ops {
    const struct ota_transport_ops *transport;
    void *transport_ctx;
    const struct ota_store_ops *store;
    void *store_ctx;
    const struct ota_bootenv_ops *bootenv; /* may be NULL: no rootfs updates */
    void *bootenv_ctx;
    const struct ota_service_ops *service;
    void *service_ctx;
    const struct ota_clock_ops *clock;
    void *clock_ctx;
    const struct ota_install_ops *install;
    void *install_ctx;
    /* Called after every durable state change (may be NULL). */
    void (*on_transition)(void *ctx, const struct ota_transition *t);
    void *transition_ctx;
};

struct ota_agent;

enum ota_step_result {
    OTA_STEP_CONTINUE, /* call step again now */
    OTA_STEP_WAIT,     /* call step again at wake_ms (mono) */
    OTA_STEP_IDLE,     /* back in IDLE: the pass is over */
    OTA_STEP_REBOOT,   /* a reboot was requested: stop stepping */
    OTA_STEP_MAX,
};

struct ota_step {
    enum ota_step_result result;
    int64_t wake_ms;
};

/* Copies cfg; ops must outlive the agent. NULL on allocation failure. */
struct ota_agent *ota_agent_new(const struct ota_agent_config *cfg,
                                const struct ota_agent_ops *ops);
/* Makes a what ota_agent_new(cfg, ops) returns, in its own memory: for a host
 * that runs many short lives of the core one after another (the fleet
 * runner's passes), without a 30 KiB allocation and clearing each time.
 * cfg NULL: a keeps its config (7 KiB not copied); the host may change it
 * through ota_agent_cfg() before ota_agent_start. */
void ota_agent_renew(struct ota_agent *a, const struct ota_agent_config *cfg,
                     const struct ota_agent_ops *ops);
/* The agent's own config: to change between ota_agent_renew and
 * ota_agent_start, not while the agent runs. */
struct ota_agent_config *ota_agent_cfg(struct ota_agent *a);
void ota_agent_free(struct ota_agent *a);

/* Loads the journal without applying any recovery rule (for operator
 * commands that act on the state found). */
int ota_agent_load(struct ota_agent *a, struct ota_err *err) OTA_MUST;

/* Loads the journal and applies the recovery rule of the state found
 * (DESIGN.md's table), counting the resumption for the loop breaker.
 * A corrupt store is the caller's business (the SQLite driver moves it aside). */
int ota_agent_start(struct ota_agent *a, struct ota_err *err) OTA_MUST;

/* Asks for an update check: IDLE -> CHECKING. In STANDBY: the next step
 * checks in for the activation (the state stays). -EBUSY if an update runs
 * (and for a dry run in STANDBY).
 * dry_run: only look (ota_agent_last_check says what was found); an
 * accepted release is not downloaded and the agent returns to IDLE. */
int ota_agent_check(struct ota_agent *a, int dry_run, struct ota_err *err) OTA_MUST;

/* Runs the current state's handler once. Errors of the update itself are not
 * errors of step: they become transitions (retry, fail, roll back). step
 * fails only when the store cannot persist a state. */
int ota_agent_step(struct ota_agent *a, struct ota_step *ret, struct ota_err *err) OTA_MUST;

/* Operator commands. rollback: during an update after the switch, roll back
 * now; in IDLE, go back to the previous committed app release (or rootfs
 * slot). commit: in HEALTH_CHECK, commit now. -EBUSY / -ENOENT otherwise. */
int ota_agent_rollback(struct ota_agent *a, struct ota_err *err) OTA_MUST;
int ota_agent_commit(struct ota_agent *a, struct ota_err *err) OTA_MUST;

/* GitHub source: 1 while the source's rate limit says not to ask (*why:
 * "rate limited until ... (...)"), else 0; *ret_until_ms is the last wait's
 * end (0: none). Reads the store (DESIGN.md "GitHub's rate limit"). */
int ota_agent_rate_limit(struct ota_agent *a, int64_t *ret_until_ms, char *why, size_t cap);

/* The release keys as the agent trusts them now (DESIGN.md, "Release keys"):
 * the stored keyring's version (0: none), the ids of the trusted keys and of
 * the revoked ones, each ", "-separated (truncated to cap). -EPERM with the
 * reason when the stored keyring is damaged (no key is trusted then),
 * -EBADMSG when a key of the config cannot be read. Reads the store. */
int ota_agent_keys(struct ota_agent *a, int64_t *ret_keyring, char *trusted, size_t tcap,
                   char *revoked, size_t rcap, struct ota_err *err) OTA_MUST;

/* Delivers queued reports until the outbox is empty or the server does not
 * answer. Returns the number delivered, or a negative errno. */
int ota_agent_flush_outbox(struct ota_agent *a, struct ota_err *err) OTA_MUST;

const struct ota_journal *ota_agent_journal(const struct ota_agent *a);

/* What the last check found. */
enum ota_check_result {
    OTA_CHECK_NONE,        /* no check ran */
    OTA_CHECK_UP_TO_DATE,  /* nothing offered, or the installed version */
    OTA_CHECK_OFFERED,     /* a valid release was accepted */
    OTA_CHECK_REFUSED,     /* a release was offered and refused (reason) */
    OTA_CHECK_UNREACHABLE, /* the server did not answer usefully (reason) */
    OTA_CHECK_MAX,
};
extern const char *const ota_check_result_names[OTA_CHECK_MAX];
enum ota_check_result ota_agent_last_check(const struct ota_agent *a, const char **ret_reason);
/* Outcome of the last update that ended in this process: OTA_STATUS_IN_PROGRESS
 * if none ended; reason set for failures. */
enum ota_status ota_agent_last_outcome(const struct ota_agent *a, const char **ret_reason);
/* The active slot and committed version of kind, as the agent knows them. */
int ota_agent_installed(struct ota_agent *a, enum ota_kind kind, int *ret_slot, char *ret_version,
                        size_t cap, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
