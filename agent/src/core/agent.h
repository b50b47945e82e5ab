/* The agent core's insides, shared by its files; not an API (the host and
 * the simulator see ota/core.h):
 *   core.c     the state machine: the journal, the handlers, the commands
 *   download.c DOWNLOADING and VERIFYING: the download session
 *   slots.c    the slots per update kind (app slots, U-Boot A/B), the boot env
 *   source.c   the update sources (fleet API, GitHub Releases)
 *   standby.c  STANDBY: installed, waiting for the fleet's activation
 *   guard.c    release guards beyond the signature (the product)
 *   keys.c     the trusted release keys and key rotation */
#ifndef OTA_CORE_AGENT_H
#define OTA_CORE_AGENT_H

#include "ota/core.h"

#include <stdint.h>

#include "ota/crypto.h"
#include "ota/json.h" /* ota_strlcpy */
#include "ota/manifest.h"
#include "ota/protocol.h"

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
    struct ota_agent_ops ops;
    int loaded;
    int resumed; /* the state in j was found at start, not entered now */
    int m_ok;    /* m holds the parsed j.manifest */

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

    int standby_poll; /* STANDBY: this pass has not checked in yet */

    /* From here on (29,880 of its 31,496 bytes), fields that a new agent sets as
     * content: ota_agent_renew zeroes only the fields above. A field that
     * must start zeroed goes above. */
    struct ota_agent_config cfg; /* copied */
    struct ota_journal j;        /* cleared (ota_journal_clear) */
    struct ota_journal jnext;    /* journal_write's next journal: no 10 KiB malloc per move */
    struct ota_manifest m;       /* parsed j.manifest, valid when m_ok */
};

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
    /* The slot running now. */
    int (*running)(struct ota_agent *a, int *ret_slot, struct ota_err *err);
    /* Before an offer of this kind is taken: can the update be done here? */
    int (*preflight)(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err);
    /* An operator's commit found the update in REBOOTING: 0 lets it go on
     * to COMMITTING, else the reason it may not. */
    int (*commit_order)(struct ota_agent *a, struct ota_err *err);
    /* The version in `slot` when the store has none recorded. */
    void (*found_version)(struct ota_agent *a, int slot, char *buf, size_t cap);
};

/* core.c */
int64_t core_mono(struct ota_agent *a);
int core_is_rootfs(const struct ota_agent *a);
/* The two ways to write the journal: a move to `to` (persist, report,
 * notify, on-enter), or the same state saved as it is. */
int core_transition(struct ota_agent *a, enum ota_state to, struct ota_err *err);
int core_save_journal(struct ota_agent *a, struct ota_err *err);
void core_set_reason(struct ota_agent *a, const char *reason);
/* The update failed before anything visible changed: back to IDLE. */
int core_fail_update(struct ota_agent *a, const char *reason, struct ota_err *err);
/* The update failed after the switch: roll back to the last-known-good slot. */
int core_start_rollback(struct ota_agent *a, const char *reason, struct ota_err *err);

/* source.c: token if url has the configured server's origin (scheme, host,
 * port), else NULL: a token never goes to a URL an offer names elsewhere. */
const char *core_bearer_for(const struct ota_agent *a, const char *url, const char *token);

/* guard.c: -EPERM with the reason if m is not a release of the product this
 * device runs (config, else the name recorded at the first install). */
int core_guard_product(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err);
/* -EPERM with the reason if m is a rollback order this device may not take
 * now: not running one of its rollback_from, expired, or a clock before its
 * creation (ota_manifest_check_rollback). */
int core_guard_rollback(struct ota_agent *a, const struct ota_manifest *m, const char *current,
                        struct ota_err *err);
/* Records m's name as the product of its kind (at the commit). */
int core_guard_record(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err);

/* keys.c (DESIGN.md, "Release keys"): 0 if off's manifest is signed by a
 * trusted key (the config's and the stored keyring's, less the revoked);
 * else -EBADMSG (no trusted key signed it) or -EPERM ("signed by revoked key
 * <id>", or a damaged stored keyring) with the reason. */
int core_keys_verify(struct ota_agent *a, const struct ota_offer *off, struct ota_err *err);
/* Takes m's keyring (a key-rotation release, already verified) when it is
 * newer than the stored one: merged (revocations are for good) and stored
 * durably. An older or equal keyring is ignored (a replay). -EPERM with the
 * reason if it would leave no trusted key or cannot be merged; the store's
 * error if it cannot be written. A dry run stores nothing. */
int core_keys_rotate(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err);

/* The inventory sent at check-in; the strings live in the buffers given. */
int core_inventory(struct ota_agent *a, struct ota_inventory *inv, char *appv, char *rootv,
                   size_t cap, int *app_slot, int *root_slot);

/* download.c */
void core_dl_reset(struct ota_agent *a);
int core_handle_downloading(struct ota_agent *a, struct ota_step *st, struct ota_err *err);
int core_handle_verifying(struct ota_agent *a, struct ota_step *st, struct ota_err *err);

/* slots.c */
int core_rootfs_booted(struct ota_agent *a, int *ret_slot, int *ret_known, struct ota_err *err);
const struct slot_ops *core_slots_for(enum ota_kind kind);
const struct slot_ops *core_slots(const struct ota_agent *a); /* the update's */
int core_handle_switching(struct ota_agent *a, struct ota_step *st, struct ota_err *err);
int core_handle_rebooting(struct ota_agent *a, struct ota_step *st, struct ota_err *err);

/* standby.c */
int core_enter_standby(struct ota_agent *a, struct ota_err *err);
int core_handle_standby(struct ota_agent *a, struct ota_step *st, struct ota_err *err);

/* source.c */
const struct update_source *core_source(const struct ota_agent *a);

#endif
