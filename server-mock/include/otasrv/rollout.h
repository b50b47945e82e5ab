/* Rollout engine: which device gets which release, when, and what happens
 * when devices report. Pure functions over plain structs: no globals, no I/O,
 * no clock reads (the caller passes now_ms, unix milliseconds), no locking
 * (the caller serialises calls on one rollout). One exception: a
 * maintenance window needs time zone offsets, which come from otasrv/tz.h
 * (the C library's zone files, behind one lock and a cache). The server
 * keeps the definition, the status and the per-device table in SQLite; the
 * engine only computes.
 *
 * Model
 * - A rollout targets a fixed set of devices: when it starts, the caller
 *   makes one struct otasrv_rollout_device per registered device that
 *   otasrv_rollout_matches(), and passes that table to OTASRV_OP_START,
 *   which assigns each device its stage. Devices registered later are not
 *   part of the rollout.
 * - Selection is deterministic: bucket = otasrv_rollout_bucket(rollout id,
 *   device id), in [0, 10000). A percent stage p admits the devices with
 *   bucket < p * 100 (cumulative). A batch stage admits the next batch_size
 *   devices in (bucket, device id) order. Same ids, same stages, whatever the
 *   order of the table or the process.
 * - Stages open one after the other. Stage k "passes" when its successes
 *   reach success_threshold % of its devices, or when none of its devices is
 *   pending or in flight; then stage k+1 opens (otasrv_rollout_tick).
 * - Stage k "trips" when its failures (failure + timed_out), minus those
 *   accepted by a resume, exceed failure_threshold % of its devices or
 *   max_failures. Every open stage is watched. On a trip: auto_rollback ->
 *   rolled_back, and every device that got the release (offered, in
 *   progress, success) gets a rollback order to previous_release_id;
 *   otherwise auto_pause -> paused; otherwise -> failed.
 * - The rollout completes when the last stage is open and no selected device
 *   is pending or in flight. Devices that never check in keep it running
 *   (lower success_threshold to let stages pass without them; cancel to end).
 * - In flight = offered or in_progress; max_concurrent caps it. A device in
 *   flight that is silent for report_timeout_ms becomes timed_out (a failure).
 *   A late report brings it back (a timed-out device may still succeed).
 *
 * Use (the server)
 * - create: otasrv_rollout_from_json, otasrv_rollout_new (draft); persist the
 *   definition (otasrv_rollout_to_json) and the status.
 * - start: a row (otasrv_rollout_device_init) per registered device that
 *   otasrv_rollout_matches(), prepared by otasrv_rollout_canary_prep (the
 *   canary's make-up needs the device's inventory); otasrv_rollout_act(START,
 *   rows).
 * - check-in: otasrv_rollout_checkin() with the device's row; answer the
 *   decision; update_id "{rollout id}-{device id}" for the release,
 *   "{rollout id}-{device id}-rollback" for a rollback order.
 * - report: otasrv_rollout_on_report(), rollback = 1 when the update_id is
 *   the rollback order's.
 * - timer: otasrv_rollout_tick() every second or so (or, on a virtual
 *   clock, at otasrv_rollout_next_deadline(), which includes stage delays
 *   and maintenance windows).
 * - after each call: write the rows whose dirty flag is set (and clear it;
 *   otasrv_rollout_dirty_rows lists them without a pass over the table),
 *   and the status when it changed.
 * - restart: from_json, new, status_from_json, load the rows, recount.
 * Keeping a device in at most one active rollout per kind is the server's
 * business.
 *
 * blue_green (rollout_bluegreen.c; docs/protocol.md "Blue-green"): stages as
 * staged, but devices that installed report STANDBY (otasrv_rollout_on_standby
 * -> standby) and wait; a stage counts them with its successes, the rollout
 * does not complete while any waits. OTASRV_OP_ACTIVATE (or a tick at
 * activate_at_ms) sets activated_ms; from then a checking-in standby device
 * gets OTASRV_OFFER_ACTIVATE (-> activated, in flight); a cancelled, failed
 * or rolled-back rollout gives it OTASRV_OFFER_ABANDON.
 *
 * Lifecycle (otasrv_rollout_act; refusals: -EALREADY when the rollout is
 * already where the action leads, -EINVAL when the action conflicts):
 *
 *   draft --approve--> approved --start--> running (or scheduled until start_at)
 *   scheduled --tick at start_at--> running
 *   running/scheduled --pause--> paused --resume--> running or scheduled
 *   any non-terminal --cancel--> cancelled
 *   running/paused/completed/failed/cancelled --rollback--> rolled_back
 *   running --tick--> completed | failed | paused | rolled_back
 *   paused --tick--> rolled_back (a trip with auto_rollback)
 *   terminal: completed, failed, cancelled, rolled_back (rollback is still
 *   allowed from the first three; rollback orders are served in rolled_back)
 *
 * Definition JSON (otasrv_rollout_from_json / otasrv_rollout_to_json; the
 * fleet API takes and returns exactly this; also docs/protocol.md "Rollouts"):
 *
 *   {"id": "r7",                       optional on create (the server assigns
 *                                      one); [A-Za-z0-9._+-], 1..63 bytes
 *    "name": "video-app 2.0 to lab",   optional, free text, < 128 bytes
 *    "release_id": "video-app-2.0.0",  required; [A-Za-z0-9._+-], 1..127 bytes
 *    "previous_release_id": "video-app-1.0.0",
 *                                      optional; required by auto_rollback,
 *                                      differs from release_id; should be
 *                                      packed as a rollback order (manifest
 *                                      "rollback": true) or agents refuse it
 *    "strategy": "canary",             immediate | manual | canary | staged |
 *                                      rolling | scheduled
 *    "stages": [{"percent": 10, "success_threshold": 95,
 *                "failure_threshold": 5, "max_failures": 3},
 *               {"percent": 100}],
 *    "devices": ["dev-0001", ...],     manual only (required there): 1..100000
 *                                      distinct ids, printable, no spaces
 *    "filters": {"device_type": "rpi3b", "group": "lab",
 *                "tags": ["indoor", "eu"],          all of them (<= 8)
 *                "current_version": "2.0.0",        semver
 *                "version_operator": "<",           < <= == != >= >; default ==
 *                "attributes": {"region": "eu"}},   <= 16, each exactly
 *    "max_concurrent": 50,             devices in flight at once; 0 = no limit
 *    "report_timeout_ms": 600000,      0 = no timeout
 *    "start_at_ms": 1795000000000,     unix ms; 0 = when started; required
 *                                      (> 0) by scheduled
 *    "auto_pause": true,               default false
 *    "auto_rollback": false,           default false
 *    "canary": {"strata": ["device_type", "attributes.region"],
 *               "per_stratum": 1, "first_tags": ["internal"]},
 *                                      canary/staged/rolling only: the first
 *                                      stage's make-up (rollout_canary.c)
 *    "window": {"start": "02:00", "end": "06:00"}}
 *                                      offers only inside the device's local
 *                                      window (UTC without a zone)
 *
 *   Stages: each has exactly one of "percent" (1..100, cumulative share of
 *   the targeted devices, strictly increasing over the percent stages) and
 *   "batch_size" (>= 1 more devices). "success_threshold" and
 *   "failure_threshold" are integer percents 0..100 whose sum is at most 100
 *   (so a stage that has not tripped can always pass); defaults: failure 0
 *   (any failure trips) and success 100 - failure. "max_failures" >= 0 is an
 *   extra count limit (absent: none). "delay_ms" >= 0 holds the next stage
 *   back until this one has been open that long (default 0). Per strategy:
 *   - immediate, scheduled, manual: optional; if given, one stage, percent 100
 *     (to set thresholds). Default [{"percent": 100}]. scheduled is
 *     immediate at start_at_ms (any strategy may set start_at_ms too).
 *   - canary: exactly two stages: the canary (a batch or a percent < 100),
 *     then {"percent": 100}.
 *   - staged, rolling (synonyms kept apart for the record): 1..32 stages;
 *     stages may mix batches and percents, e.g. [{"batch_size": 10},
 *     {"batch_size": 100}, {"percent": 100}]. A last stage below 100% leaves
 *     the rest of the devices out of the rollout.
 *   Unknown fields, wrong types and out-of-range values are refused with the
 *   field in the reason. Empty filter strings mean "any". to_json writes
 *   every field (defaults filled in), omits empty filters and max_failures
 *   when there is no limit, and writes devices only for manual.
 *
 * Status JSON (otasrv_rollout_status_to_json / _from_json; what the server
 * persists beside the definition and shows in the API):
 *   {"state": "running", "stage": 1, "created_ms": ..., "approved_ms": ...,
 *    "started_ms": ..., "finished_ms": ..., "changed_ms": ...,
 *    "reason": "stage 1: 6 of 100 devices failed (more than 5%)",
 *    "fail_ack": [0, 0]}          (failures accepted by resume, one per stage)
 */
#ifndef OTASRV_ROLLOUT_H
#define OTASRV_ROLLOUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASRV_ROLLOUT_BUCKETS     10000 /* buckets are basis points */
#define OTASRV_ROLLOUT_MAX_STAGES  32
#define OTASRV_ROLLOUT_MAX_TAGS    8
#define OTASRV_ROLLOUT_MAX_DEVICES 100000 /* manual device list */
#define OTASRV_ROLLOUT_ID_MAX      64     /* rollout and device ids, with NUL */
#define OTASRV_ROLLOUT_RELEASE_MAX 128    /* release ids, with NUL */
#define OTASRV_ROLLOUT_NAME_MAX    128
#define OTASRV_ROLLOUT_FIELD_MAX   64 /* device type, group, version */
#define OTASRV_ROLLOUT_TAG_MAX     32
#define OTASRV_ROLLOUT_REASON_MAX  256
#define OTASRV_ROLLOUT_MAX_ATTRS   16 /* attribute filters, as devices carry at most */
#define OTASRV_ROLLOUT_MAX_STRATA  4
#define OTASRV_ROLLOUT_ATTR_KEY    33 /* with NUL */
#define OTASRV_ROLLOUT_ATTR_VALUE  65 /* with NUL */

enum otasrv_strategy {
    OTASRV_STRATEGY_IMMEDIATE,
    OTASRV_STRATEGY_MANUAL,
    OTASRV_STRATEGY_CANARY,
    OTASRV_STRATEGY_STAGED,
    OTASRV_STRATEGY_ROLLING,
    OTASRV_STRATEGY_SCHEDULED,
    OTASRV_STRATEGY_BLUE_GREEN, /* staged installs, then one fleet-wide switch (activation) */
    OTASRV_STRATEGY_MAX,
};
/* "immediate", "manual", "canary", "staged", "rolling", "scheduled", "blue_green" */
extern const char *const otasrv_strategy_names[OTASRV_STRATEGY_MAX];

/* Version filter operators: device version OP filter version. */
enum otasrv_vop {
    OTASRV_VOP_LT,
    OTASRV_VOP_LE,
    OTASRV_VOP_EQ,
    OTASRV_VOP_NE,
    OTASRV_VOP_GE,
    OTASRV_VOP_GT,
    OTASRV_VOP_MAX,
};
extern const char *const otasrv_vop_names[OTASRV_VOP_MAX]; /* "<" "<=" "==" "!=" ">=" ">" */

enum otasrv_rollout_state {
    OTASRV_ROLLOUT_DRAFT,
    OTASRV_ROLLOUT_APPROVED,
    OTASRV_ROLLOUT_SCHEDULED,
    OTASRV_ROLLOUT_RUNNING,
    OTASRV_ROLLOUT_PAUSED,
    OTASRV_ROLLOUT_COMPLETED,
    OTASRV_ROLLOUT_FAILED,
    OTASRV_ROLLOUT_CANCELLED,
    OTASRV_ROLLOUT_ROLLED_BACK,
    OTASRV_ROLLOUT_STATE_MAX,
};
/* "draft", "approved", "scheduled", "running", "paused", "completed",
 * "failed", "cancelled", "rolled_back" */
extern const char *const otasrv_rollout_state_names[OTASRV_ROLLOUT_STATE_MAX];

/* A device's state in one rollout. */
enum otasrv_rdev_state {
    OTASRV_RDEV_PENDING,          /* not offered yet */
    OTASRV_RDEV_OFFERED,          /* got the release, has not reported yet */
    OTASRV_RDEV_IN_PROGRESS,      /* reported in_progress */
    OTASRV_RDEV_SUCCESS,          /* reported success */
    OTASRV_RDEV_FAILURE,          /* reported failure */
    OTASRV_RDEV_TIMED_OUT,        /* silent past report_timeout_ms: a failure */
    OTASRV_RDEV_SKIPPED,          /* no longer matched the filters when it checked in */
    OTASRV_RDEV_ROLLBACK_ORDERED, /* told to go back to previous_release_id */
    OTASRV_RDEV_ROLLED_BACK,      /* reported success of the rollback */
    OTASRV_RDEV_ROLLBACK_FAILED,  /* reported failure of the rollback */
    OTASRV_RDEV_STANDBY,          /* blue_green: installed, waiting for the activation */
    OTASRV_RDEV_ACTIVATED, /* blue_green: told to switch, has not reported since (in flight) */
    OTASRV_RDEV_MAX,
};
/* "pending", "offered", "in_progress", "success", "failure", "timed_out",
 * "skipped", "rollback_ordered", "rolled_back", "rollback_failed", "standby",
 * "activated" */
extern const char *const otasrv_rdev_state_names[OTASRV_RDEV_MAX];

/* Lifecycle actions (otasrv_rollout_act). */
enum otasrv_op {
    OTASRV_OP_APPROVE,
    OTASRV_OP_START,
    OTASRV_OP_PAUSE,
    OTASRV_OP_RESUME,
    OTASRV_OP_CANCEL,
    OTASRV_OP_ROLLBACK,
    OTASRV_OP_ACTIVATE, /* blue_green: the fleet switches (running only, once) */
    OTASRV_OP_MAX,
};
/* "approve", "start", "pause", "resume", "cancel", "rollback", "activate" */
extern const char *const otasrv_op_names[OTASRV_OP_MAX];

/* What a checking-in device is told. */
enum otasrv_offer {
    OTASRV_OFFER_NONE,     /* nothing */
    OTASRV_OFFER_RELEASE,  /* install release_id */
    OTASRV_OFFER_ROLLBACK, /* a rollback order: install previous_release_id */
    OTASRV_OFFER_ACTIVATE, /* blue_green: a device in standby switches now ("activate") */
    OTASRV_OFFER_ABANDON,  /* blue_green: a device in standby gives up ("abandon") */
    OTASRV_OFFER_MAX,
};
/* "none" "release" "rollback" "activate" "abandon" */
extern const char *const otasrv_offer_names[OTASRV_OFFER_MAX];

/* Why (stable names, for logs, events and the API). */
enum otasrv_why {
    OTASRV_WHY_NEW,              /* release: a new offer */
    OTASRV_WHY_IN_FLIGHT,        /* release: offered before, not finished (offered again) */
    OTASRV_WHY_ROLLBACK_ORDERED, /* rollback: the order stands until reported */
    OTASRV_WHY_NOT_TARGETED,     /* none: the device is not in this rollout */
    OTASRV_WHY_FILTERED,         /* none: no longer matches the filters (now skipped) */
    OTASRV_WHY_NOT_SELECTED,     /* none: beyond the last stage */
    OTASRV_WHY_LATER_STAGE,      /* none: its stage is not open yet */
    OTASRV_WHY_NOT_STARTED,      /* none: draft or approved */
    OTASRV_WHY_SCHEDULED,        /* none: before start_at */
    OTASRV_WHY_PAUSED,           /* none: paused */
    OTASRV_WHY_ENDED,            /* none: completed, failed, cancelled or rolled back */
    OTASRV_WHY_MAX_CONCURRENT,   /* none: max_concurrent devices are in flight */
    OTASRV_WHY_DONE,             /* none: the device has finished this rollout */
    OTASRV_WHY_OUTSIDE_WINDOW,   /* none: the device's local time is outside the window */
    OTASRV_WHY_STANDBY,          /* none: installed, the rollout is not activated yet */
    OTASRV_WHY_ACTIVATED,        /* activate: the rollout is activated */
    OTASRV_WHY_MAX,
};
/* "new", "in_flight", "rollback_ordered", "not_targeted", "filtered",
 * "not_selected", "later_stage", "not_started", "scheduled", "paused",
 * "ended", "max_concurrent", "done", "outside_window", "standby", "activated";
 * abandon comes with "ended" */
extern const char *const otasrv_why_names[OTASRV_WHY_MAX];

/* A device's status report (the protocol's "status" field). */
enum otasrv_report {
    OTASRV_REPORT_IN_PROGRESS,
    OTASRV_REPORT_SUCCESS,
    OTASRV_REPORT_FAILURE,
    OTASRV_REPORT_MAX,
};
extern const char
    *const otasrv_report_names[OTASRV_REPORT_MAX]; /* "in_progress" "success" "failure" */

/* Looks s up in a names table of n entries: its index, or -1. */
int otasrv_rollout_name_index(const char *const *names, int n, const char *s);

struct otasrv_rollout_stage {
    uint32_t percent;           /* cumulative percent 1..100, or 0 for a batch stage */
    uint32_t batch_size;        /* devices added by this stage, or 0 for a percent stage */
    uint32_t success_threshold; /* percent of the stage that must succeed to pass */
    uint32_t failure_threshold; /* the stage trips above this percent of failures */
    int64_t max_failures;       /* ... or above this many; -1 = no count limit */
    int64_t delay_ms; /* the next stage opens no earlier than this after this one opened */
};

struct otasrv_rollout_filter {
    char device_type[OTASRV_ROLLOUT_FIELD_MAX];                 /* "" = any */
    char group[OTASRV_ROLLOUT_FIELD_MAX];                       /* "" = any */
    char tags[OTASRV_ROLLOUT_MAX_TAGS][OTASRV_ROLLOUT_TAG_MAX]; /* the device has all of them */
    int n_tags;
    char version[OTASRV_ROLLOUT_FIELD_MAX]; /* "" = any version */
    enum otasrv_vop version_op;
    /* filters.attributes: the device's attribute key has exactly this value */
    char attr_keys[OTASRV_ROLLOUT_MAX_ATTRS][OTASRV_ROLLOUT_ATTR_KEY];
    char attr_values[OTASRV_ROLLOUT_MAX_ATTRS][OTASRV_ROLLOUT_ATTR_VALUE];
    int n_attrs;
};

/* The canary's make-up (definition field "canary"; rollout_canary.c and
 * docs/protocol.md "Selection"). n_strata == 0 and n_first_tags == 0: none
 * (plain bucket order). */
struct otasrv_rollout_canary {
    /* "device_type", "group" or "attributes.KEY" */
    char strata[OTASRV_ROLLOUT_MAX_STRATA][OTASRV_ROLLOUT_ATTR_KEY + 16];
    int n_strata;
    uint32_t per_stratum; /* >= 1 when there are strata */
    char first_tags[OTASRV_ROLLOUT_MAX_TAGS][OTASRV_ROLLOUT_TAG_MAX];
    int n_first_tags;
};

/* Maintenance window in each device's local time (definition field
 * "window"): minutes since local midnight, [start, end), crossing midnight
 * when end < start. enabled 0: always open. */
struct otasrv_rollout_window {
    int enabled;
    int start_min, end_min; /* 0..1439, start != end */
};

struct otasrv_rollout_def {
    char id[OTASRV_ROLLOUT_ID_MAX];
    char name[OTASRV_ROLLOUT_NAME_MAX];
    char release_id[OTASRV_ROLLOUT_RELEASE_MAX];
    char previous_release_id[OTASRV_ROLLOUT_RELEASE_MAX]; /* "" = none */
    enum otasrv_strategy strategy;
    struct otasrv_rollout_stage stages[OTASRV_ROLLOUT_MAX_STAGES];
    int n_stages;
    struct otasrv_rollout_filter filter;
    char **devices; /* manual: owned, malloc'ed strings; freed by _def_clear */
    size_t n_devices;
    uint32_t max_concurrent;   /* 0 = no limit */
    int64_t report_timeout_ms; /* 0 = none */
    int64_t start_at_ms;       /* 0 = when started */
    int auto_pause;
    int auto_rollback;
    struct otasrv_rollout_canary canary; /* canary, staged, rolling only */
    struct otasrv_rollout_window window;
    /* blue_green only (0 elsewhere): */
    int64_t activate_at_ms; /* unix ms: the switch at a set time; 0 = on the operator's command */
    int64_t not_after_ms; /* unix ms: devices give up waiting then (sent in the offer); 0 = none */
};

/* Frees what def owns (the manual device list) and zeroes it. NULL ok. */
void otasrv_rollout_def_clear(struct otasrv_rollout_def *def);

/* The rules of the JSON schema above, for a definition built in code
 * (except duplicate manual devices, which from_json and _new check).
 * -EINVAL with the reason. An empty id is accepted (assigned later). */
int otasrv_rollout_def_validate(const struct otasrv_rollout_def *def, struct ota_err *err) OTA_MUST;

/* Parses and validates a definition object. On success *ret holds a new
 * definition (devices sorted; release with otasrv_rollout_def_clear); on
 * failure *ret is untouched and err says which field and why (-EINVAL,
 * -ENAMETOOLONG for an over-long string, -ENOMEM). */
int otasrv_rollout_from_json(const json_t *obj, struct otasrv_rollout_def *ret,
                             struct ota_err *err) OTA_MUST;
/* Writes def as a new JSON object (*ret, a new reference). -ENOMEM. */
int otasrv_rollout_to_json(const struct otasrv_rollout_def *def, json_t **ret) OTA_MUST;

/* Stable bucket of a device in a rollout, in [0, 10000):
 *   h = FNV-1a-64(rollout_id bytes, one 0x00 byte, device_id bytes)
 *   (offset 0xcbf29ce484222325, prime 0x100000001b3), then the MurmurHash3
 *   fmix64 finaliser (h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
 *   h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33); bucket = h % 10000. */
uint32_t otasrv_rollout_bucket(const char *rollout_id, const char *device_id);

/* What the engine needs to know about a device (borrowed strings). */
struct otasrv_device_info {
    const char *device_id;
    const char *device_type;
    const char *group;
    const char *const *tags;
    size_t n_tags;
    /* Current version of the release's kind (app or rootfs); NULL/"" = unknown. */
    const char *version;
    /* Attributes: n_attrs key/value pairs (borrowed). */
    const char *const *attr_keys;
    const char *const *attr_values;
    size_t n_attrs;
    const char *timezone; /* NULL/"" = UTC (otasrv/tz.h) */
};

/* The value of attribute key of info, or NULL. */
const char *otasrv_device_attr(const struct otasrv_device_info *info, const char *key);

/* 1 if the device passes the rollout's filters (and, for manual, is
 * listed), else 0 with a static reason in *ret_reason (may be NULL). A
 * version filter never matches a device whose version is unknown or not
 * semver. */
int otasrv_rollout_matches(const struct otasrv_rollout_def *def,
                           const struct otasrv_device_info *info, const char **ret_reason);

/* One row of the per-device table; the caller owns the array and persists
 * it. The engine sets dirty whenever it changes a row; the caller clears it
 * after writing the row. */
struct otasrv_rollout_device {
    char device_id[OTASRV_ROLLOUT_ID_MAX];
    uint32_t bucket; /* otasrv_rollout_bucket(rollout id, device id) */
    int stage;       /* stage that admits the device; -1: beyond the last stage */
    enum otasrv_rdev_state state;
    int64_t offered_ms;  /* 0 = never */
    int64_t started_ms;  /* first in_progress report, 0 = none */
    int64_t last_ms;     /* last offer or report: the report timeout runs from here */
    int64_t finished_ms; /* success, failure, timeout or skip; 0 = not finished */
    int64_t rollback_ms; /* rollback ordered, 0 = never */
    int dirty;
    /* Canary make-up, set by otasrv_rollout_canary_prep before the start
     * (not persisted: the stage is). */
    uint64_t stratum; /* hash of the device's strata values */
    int first;        /* carries one of the canary's first_tags */
    /* The device's zone (otasrv_tz_intern; NULL = UTC), for the deadlines of
     * maintenance windows: set by otasrv_rollout_canary_prep and by every
     * check-in with an info (not persisted: after a restart, UTC until the
     * device checks in; its decisions always use the check-in's zone). */
    const char *tz;
};

/* Fills *ret as a pending row of rollout rollout_id (bucket computed, stage
 * -1 until the start). -EINVAL if device_id is empty or too long. */
int otasrv_rollout_device_init(const char *rollout_id, const char *device_id,
                               struct otasrv_rollout_device *ret, struct ota_err *err) OTA_MUST;

struct otasrv_rollout_index;

struct otasrv_rollout {
    struct otasrv_rollout_def def;
    /* Status: persist with otasrv_rollout_status_to_json. */
    enum otasrv_rollout_state state;
    int stage; /* highest open stage (0 until started) */
    int64_t created_ms;
    int64_t approved_ms;
    int64_t started_ms; /* when it began running (a scheduled one: its first tick at start_at) */
    int64_t finished_ms;
    int64_t changed_ms;                           /* last state or stage change */
    int64_t stage_opened_ms;                      /* when stage `stage` opened */
    uint32_t fail_ack[OTASRV_ROLLOUT_MAX_STAGES]; /* failures accepted by resume, per stage */
    char reason[OTASRV_ROLLOUT_REASON_MAX];       /* why the last change happened */
    /* Counts: derived from the table (otasrv_rollout_recount), kept current
     * by checkin, on_report, tick and act. Rows with stage -1 count only in
     * total. */
    uint32_t count[OTASRV_ROLLOUT_MAX_STAGES][OTASRV_RDEV_MAX];
    uint32_t total[OTASRV_RDEV_MAX];
    uint32_t n_devices;
    int64_t activated_ms; /* blue_green: when the fleet was told to switch; 0 = not yet */
    /* The engine's own index over the table it last saw whole (in-flight
     * rows by last_ms, rows changed since the last write); private, see
     * rollout_index.c. Shared by a struct copy: a copy must not be ticked.
     * otasrv_rollout_next_deadline may reorder it (the one change a call
     * with a const rollout makes): serialise it with the other calls. */
    struct otasrv_rollout_index *idx;
};

/* A new draft rollout. Takes the manual device list from *def (sorted and
 * checked for duplicates here) and zeroes *def on success. -EINVAL if def is
 * invalid or has no id, -ENOMEM. Free with otasrv_rollout_free (NULL ok). */
int otasrv_rollout_new(struct otasrv_rollout_def *def, int64_t now_ms, struct otasrv_rollout **ret,
                       struct ota_err *err) OTA_MUST;
void otasrv_rollout_free(struct otasrv_rollout *r);

/* Status JSON (schema above). from_json overwrites r's status (state,
 * stage, times, reason, fail_ack) after validating it; call
 * otasrv_rollout_recount afterwards. -EINVAL with the reason, -ENOMEM. */
int otasrv_rollout_status_to_json(const struct otasrv_rollout *r, json_t **ret) OTA_MUST;
int otasrv_rollout_status_from_json(const json_t *obj, struct otasrv_rollout *r,
                                    struct ota_err *err) OTA_MUST;

/* Assigns every row its stage (bucket order, ties by device id; independent
 * of the table's order) and recounts. Called by OTASRV_OP_START; exposed for
 * tests and tools. -ENOMEM (batch stages sort an index). */
int otasrv_rollout_plan(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                        struct ota_err *err) OTA_MUST;
/* Recomputes r's counts from the table (after loading it, or after the
 * caller changed rows itself: the engine then rebuilds its index at the
 * next tick). O(n). */
void otasrv_rollout_recount(struct otasrv_rollout *r, const struct otasrv_rollout_device *devs,
                            size_t n);

/* Lifecycle action at now_ms. devs/n: the whole table (may be NULL except
 * for START and ROLLBACK); it is recounted first. START plans it (and
 * refuses an empty one), ROLLBACK orders devices back. 0, or -EALREADY /
 * -EINVAL with the reason (e.g. "rollout is cancelled"); the status is
 * unchanged on refusal. Resume accepts the failures so far: thresholds then
 * count only failures after the resume. */
int otasrv_rollout_act(struct otasrv_rollout *r, enum otasrv_op op,
                       struct otasrv_rollout_device *devs, size_t n, int64_t now_ms,
                       struct ota_err *err) OTA_MUST;

struct otasrv_rollout_decision {
    enum otasrv_offer offer;
    enum otasrv_why why;
    char release_id[OTASRV_ROLLOUT_RELEASE_MAX]; /* what to install; "" with NONE */
};

/* What device d (its row; NULL = not in the rollout) should be told at
 * now_ms. info may be NULL (filters are then not checked again). O(1);
 * changes nothing. *ret_decision is always written. */
void otasrv_rollout_decide(const struct otasrv_rollout *r, const struct otasrv_device_info *info,
                           const struct otasrv_rollout_device *d, int64_t now_ms,
                           struct otasrv_rollout_decision *ret_decision);

/* decide, then records it: a new offer makes d offered (counts toward
 * max_concurrent from now on); a pending device that no longer matches the
 * filters becomes skipped. What the server calls on each check-in. */
void otasrv_rollout_checkin(struct otasrv_rollout *r, const struct otasrv_device_info *info,
                            struct otasrv_rollout_device *d, int64_t now_ms,
                            struct otasrv_rollout_decision *ret_decision);

/* A status report from d about the release (rollback = 0) or about its
 * rollback order (rollback = 1). Duplicates and stale reports (e.g.
 * in_progress after success) change nothing and return 0. A late report
 * from a timed-out device counts. In a rolled-back rollout, a device that
 * reports in_progress or success gets a rollback order instead.
 * -EINVAL if d was never offered the release (or, for rollback = 1, no
 * rollback was ordered). */
int otasrv_rollout_on_report(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                             int rollback, enum otasrv_report status, int64_t now_ms,
                             struct ota_err *err) OTA_MUST;

/* blue_green: d reported that it installed the release and waits (the
 * report's state STANDBY, status in_progress): offered / in progress /
 * timed out -> standby. Repeats change nothing. -EINVAL if d was never
 * offered the release or the rollout is not blue_green. */
int otasrv_rollout_on_standby(struct otasrv_rollout *r, struct otasrv_rollout_device *d,
                              int64_t now_ms, struct ota_err *err) OTA_MUST;

struct otasrv_rollout_tick_result {
    int changed; /* state or stage changed: persist the status */
    enum otasrv_rollout_state from_state, to_state;
    int from_stage, to_stage;
    uint32_t timed_out;        /* devices timed out by this tick */
    uint32_t rollback_ordered; /* devices ordered back by this tick */
    int activated;             /* blue_green: activate_at_ms reached by this tick */
};

/* The passage of time: scheduled -> running at start_at; report timeouts
 * (running and paused); trips of every open stage (running; paused only
 * with auto_rollback); stage advance and completion (running).
 * ret_result may be NULL. The first tick on a table (or after a recount,
 * or after a row of another table was passed to checkin or on_report)
 * recounts it and indexes its in-flight rows, O(n); later ticks on the same
 * table cost O(stages + log n per device timed out): the counts are kept by
 * every change, and only rows whose timeout is due are visited. */
void otasrv_rollout_tick(struct otasrv_rollout *r, struct otasrv_rollout_device *devs, size_t n,
                         int64_t now_ms, struct otasrv_rollout_tick_result *ret_result);

/* The earliest instant at which time alone changes r (a tick would then
 * do something): start_at_ms of a scheduled rollout, and, while it runs or
 * is paused, the report timeout of each in-flight device (last_ms +
 * report_timeout_ms). INT64_MAX when none (a draft, an approved or an
 * ended rollout; no timeout). A deadline at or before now_ms is overdue
 * (the next tick handles it) and returned as it is. Report timeouts: O(1)
 * (amortised) on the table the last tick indexed; else one pass over the
 * table (none without a report timeout).
 * Also, while running: the end of the open stage's delay_ms once it has
 * passed, a blue_green rollout's activate_at_ms, and
 * otasrv_rollout_window_next (the first window opening of a pending device
 * in an open stage, or of a standby device once activated, by the rows'
 * zones; one pass over the table when the rollout has a window). A virtual
 * clock advances to it. */
int64_t otasrv_rollout_next_deadline(const struct otasrv_rollout *r,
                                     const struct otasrv_rollout_device *devs, size_t n,
                                     int64_t now_ms);

struct otasrv_rollout_stage_metrics {
    uint32_t devices; /* rows admitted by the stage, skipped ones excluded */
    uint32_t pending, in_flight, success, failed, skipped;
};

struct otasrv_rollout_metrics {
    uint32_t devices;  /* rows */
    uint32_t selected; /* rows in some stage */
    uint32_t by_state[OTASRV_RDEV_MAX];
    uint32_t in_flight;  /* offered + in_progress + activated */
    uint32_t standby;    /* blue_green: installed, waiting for the activation */
    uint32_t succeeded;  /* success */
    uint32_t failed;     /* failure + timed_out */
    double success_rate; /* succeeded / (succeeded + failed); 0 when both are 0 */
    double failure_rate; /* failed / (succeeded + failed) */
    double progress;     /* selected rows that are done (success, failed, skipped,
                            rollback states) / selected; 1 when none selected */
    /* Offer-to-success time of the succeeded devices (nearest-rank
     * percentiles); all 0 when there are none. */
    uint32_t n_durations;
    double mean_ms;
    int64_t p50_ms;
    int64_t p95_ms;
    int n_stages;
    struct otasrv_rollout_stage_metrics stages[OTASRV_ROLLOUT_MAX_STAGES];
};

/* The rows the engine changed since the last otasrv_rollout_dirty_clear,
 * for a caller that writes only those: their indices in devs in
 * *ret_rows (some may be listed twice, or have their dirty flag cleared
 * already: skip those), and their count; -1 when the engine does not know
 * (devs is not the table it indexed, or it was just indexed): then scan the
 * dirty flags. */
ssize_t otasrv_rollout_dirty_rows(const struct otasrv_rollout *r,
                                  const struct otasrv_rollout_device *devs, size_t n,
                                  const uint32_t **ret_rows);
/* After the caller wrote the dirty rows (and cleared their flags). */
void otasrv_rollout_dirty_clear(struct otasrv_rollout *r);

/* Metrics over the table. -ENOMEM (durations are sorted in a copy). */
int otasrv_rollout_measure(const struct otasrv_rollout *r, const struct otasrv_rollout_device *devs,
                           size_t n, struct otasrv_rollout_metrics *ret) OTA_MUST;
/* {"devices":..,"selected":..,"by_state":{"pending":..,...},"in_flight":..,
 *  "succeeded":..,"failed":..,"success_rate":..,"failure_rate":..,
 *  "progress":..,"duration_ms":{"n":..,"mean":..,"p50":..,"p95":..},
 *  "stages":[{"devices":..,"pending":..,"in_flight":..,"success":..,
 *             "failed":..,"skipped":..}]}  -ENOMEM. */
int otasrv_rollout_metrics_to_json(const struct otasrv_rollout_metrics *m, json_t **ret) OTA_MUST;

/* ---- canary make-up and maintenance windows (rollout_canary.c) ---- */

/* Sets d->first and d->stratum from the device (def's canary field); call
 * it on every row before OTASRV_OP_START when def has a canary make-up
 * (otasrv_rollout_plan then fills the first stage as docs/protocol.md
 * "Selection" says). Harmless without one. */
void otasrv_rollout_canary_prep(const struct otasrv_rollout_def *def,
                                const struct otasrv_device_info *info,
                                struct otasrv_rollout_device *d);

/* 1 if the window is open at now_ms for a device in zone tz (NULL/"" =
 * UTC); 1 when the definition has no window. */
int otasrv_rollout_window_open(const struct otasrv_rollout_window *w, const char *tz,
                               int64_t now_ms);

/* The first instant >= now_ms when the window opens for a device in zone
 * tz (now_ms if it is open). Exact across offset changes (DST). */
int64_t otasrv_rollout_window_opens(const struct otasrv_rollout_window *w, const char *tz,
                                    int64_t now_ms);

/* The first instant after now_ms at which the window opens for some
 * device of an open stage that is still pending, in its row's zone
 * (devs[i].tz; for a device whose window is open at now_ms, its next
 * opening after that window closes: an open window makes nothing due, the
 * device's check-in does). -1 when the rollout is not running, has no
 * window, or no pending device in an open stage. O(n), one zone
 * computation per distinct zone; part of otasrv_rollout_next_deadline. */
int64_t otasrv_rollout_window_next(const struct otasrv_rollout *r,
                                   const struct otasrv_rollout_device *devs, size_t n,
                                   int64_t now_ms);

/* The end of the open stage's delay_ms when it has passed and waits for
 * it (running only), else -1. Part of otasrv_rollout_next_deadline. */
int64_t otasrv_rollout_delay_next(const struct otasrv_rollout *r, int64_t now_ms);

#ifdef __cplusplus
}
#endif
#endif
