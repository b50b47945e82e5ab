/* Scenario files (scenarios/NAME.yaml; JSON works too): a device profile, the
 * releases on the server, one fault with its trigger, and the expected
 * outcome. The format is documented in scenarios/README.md; the parser is
 * strict (unknown keys and wrong types are errors naming the key).
 *
 * A scenario expands into trials: one for a single trigger; one per state
 * for `trigger: {states: [...]}`; one per persistence point for
 * `trigger: {points: all}` (the number of points is learnt from a recording
 * run of the same scenario without the fault). */
#ifndef OTASIM_SCENARIO_H
#define OTASIM_SCENARIO_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "otasim/power.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASIM_MAX_RELEASES 8
#define OTASIM_MAX_STATES   16
#define OTASIM_NAME_LEN     96

enum otasim_profile { OTASIM_PROFILE_APP, OTASIM_PROFILE_ROOTFS, OTASIM_PROFILE_MAX };
extern const char *const otasim_profile_names[OTASIM_PROFILE_MAX];

enum otasim_fault_kind {
    OTASIM_FAULT_NONE,
    OTASIM_FAULT_POWER_CUT,   /* every device process killed, tree rebuilt per the power model */
    OTASIM_FAULT_AGENT_CRASH, /* the agent alone SIGKILLed, nothing lost */
    OTASIM_FAULT_DISK_FULL,   /* ENOSPC on matching calls (interposer) */
    OTASIM_FAULT_EIO,         /* EIO on matching calls (interposer) */
    OTASIM_FAULT_PARTITION,   /* network partition for duration_ms (proxy) */
    OTASIM_FAULT_CLOCK_JUMP,  /* wall clock jumps by jump_s (libfaketime) */
    OTASIM_FAULT_CORRUPT_BOOTENV, /* boot env CRC broken before the update */
    OTASIM_FAULT_SERVICE_CRASH,   /* the app is SIGKILLed once (no restart) */
    OTASIM_FAULT_CANCEL,          /* the operator cancels the trial's rollout (swupdate) */
    OTASIM_FAULT_KERNEL_HANG,     /* rootfs: a release's kernel hangs at boot, without resetting */
    OTASIM_FAULT_KIND_MAX
};
extern const char *const otasim_fault_kind_names[OTASIM_FAULT_KIND_MAX];

enum otasim_trigger_kind {
    OTASIM_TRIGGER_NONE,        /* at the start (or: no trigger needed) */
    OTASIM_TRIGGER_STATE,       /* right after the agent's state line to `state` */
    OTASIM_TRIGGER_POINT,       /* after the n-th mutating call of the update cycle */
    OTASIM_TRIGGER_FAULT_POINT, /* a named fault point compiled into test builds */
    OTASIM_TRIGGER_KIND_MAX
};
extern const char *const otasim_trigger_kind_names[OTASIM_TRIGGER_KIND_MAX];

struct otasim_trigger {
    enum otasim_trigger_kind kind;
    char state[24];
    int nth;              /* STATE: the nth time the state is entered (1..) */
    uint64_t point;       /* POINT */
    char fault_point[64]; /* FAULT_POINT */
};

struct otasim_fault {
    enum otasim_fault_kind kind;
    struct otasim_trigger trigger;
    /* expansion (a scenario, not a trial): */
    char states[OTASIM_MAX_STATES][24];
    size_t n_states;
    int all_points;
    /* kind parameters */
    char path_glob[256]; /* DISK_FULL/EIO: which paths (relative to the device root) */
    int count;           /* DISK_FULL/EIO: how many calls fail (0: all);
                            KERNEL_HANG: its first count boots hang (0: every boot) */
    char release[32];    /* KERNEL_HANG: the version whose kernel hangs ("": the target) */
    int duration_ms;     /* PARTITION */
    long long jump_s;    /* CLOCK_JUMP (negative: backward) */
    /* POWER_CUT: how the cut tree is rebuilt (otasim/power.h), and how many
     * trials (each its own seed, so its own subset) a cut becomes */
    enum otasim_crash_model crash_model;
    int crash_subsets; /* 0: 1 */
};

struct otasim_release {
    char version[32];
    char variant[48];     /* app: video-app build (video-app-v2, video-app-v2-hang, ...);
                             rootfs: "good", "broken" or "unhealthy" */
    char format[16];      /* app: tar.gz | deb; rootfs: raw | gz */
    char device_type[32]; /* default: the device's */
    char min_version[32];
    int publish;       /* offered to devices (default 1) */
    int bad_signature; /* signed with a key the device does not trust */
    int factory;       /* what the device has installed at the start */
};

enum otasim_report_expect {
    OTASIM_EXPECT_REPORT_ANY,
    OTASIM_EXPECT_REPORT_SUCCESS,
    OTASIM_EXPECT_REPORT_FAILURE,
    OTASIM_EXPECT_REPORT_NONE, /* no final report (nothing was offered/accepted) */
    OTASIM_EXPECT_REPORT_MAX
};
extern const char *const otasim_report_expect_names[OTASIM_EXPECT_REPORT_MAX];

/* The matrix (matrix.yaml `unless`, runner.c): when the agent found one of
 * these states in its database after the fault, this replaces the
 * expectation's version, slot and report; why says why (in the detail). */
#define OTASIM_MAX_UNLESS 4
struct otasim_expect_unless {
    char found[4][24];
    size_t n_found;
    char version[32];
    char slot[4];
    enum otasim_report_expect report;
    char why[200];
};

struct otasim_expect {
    char version[32]; /* "" : any */
    char slot[4];     /* "a"/"b"/"" */
    enum otasim_report_expect report;
    int recover_within_s; /* 0: default bound */
    int min_health_ms;    /* COMMITTING no earlier than this after HEALTH_CHECK */
    int exact_download;   /* payload bytes written == payload size (resumes exact) */
    int min_attempts;     /* the download had at least this many attempts (state lines) */
    int recovery;         /* rootfs: the device ends in recovery mode (both slots failed) */
    struct otasim_expect_unless unless[OTASIM_MAX_UNLESS]; /* the matrix only */
    size_t n_unless;
};

struct otasim_scenario {
    char name[OTASIM_NAME_LEN];
    char description[512];
    char path[PATH_MAX];
    enum otasim_profile profile;
    char source[16]; /* fleet | github */
    char agent[32];  /* the agent under test: its adapter's name (otasim/agent.h) */
    char device_type[32];
    int health_window_ms;
    int health_interval_ms;
    long long checkpoint_bytes; /* the agent's download checkpoints (default 16384) */
    int clock_rate;             /* > 1: the agent's clocks (wall and monotonic) run this many
                                   times faster (libfaketime), for long windows */

    /* rootfs: rootB starts with the factory image too (device.slot_b: factory) */
    int slot_b_factory;
    /* rootfs: U-Boot's redundant env (two copies, libubootenv writes the
     * older one; device.env: redundant) instead of one copy */
    int env_redundant;
    /* rootfs: the board's watchdog (device.watchdog, default on: the Pi's
     * bcm2835 watchdog armed before the kernel) and its timeout in simulated
     * time (device.watchdog_ms, 0: OTASIM_WATCHDOG_MS_DEFAULT); off, a hung
     * kernel stays hung */
    int no_watchdog;
    int watchdog_ms;
    struct otasim_release rel[OTASIM_MAX_RELEASES];
    size_t n_rel;
    json_t *server_faults; /* fault plan rules (docs/protocol.md) or NULL */
    struct otasim_fault fault;
    struct otasim_expect expect;
    int passes; /* agent passes allowed after the fault (default 8) */
    /* `rollout: blue_green`: the target comes through a blue_green rollout of
     * the trial's device, activated by the harness once the device waits in
     * STANDBY (bluegreen.c); default: the server's newest published release */
    int blue_green;
    /* `mix: {ota-agent: N, swupdate: M}`: one trial per device, every device
     * in one group and one rollout of the target (docs/swupdate.md, "A mixed
     * rollout"); 0 and 0: one trial of the device's agent */
    int mix_ota, mix_swupdate;
};

/* Parses a scenario from a YAML/JSON text; name defaults to the file's
 * base name. */
int otasim_scenario_parse(const char *text, size_t n, const char *path, struct otasim_scenario *ret,
                          struct ota_err *err) OTA_MUST;
int otasim_scenario_load(const char *path, struct otasim_scenario *ret,
                         struct ota_err *err) OTA_MUST;
void otasim_scenario_release(struct otasim_scenario *s);

/* The factory release (installed at the start) and the one offered. */
const struct otasim_release *otasim_scenario_factory(const struct otasim_scenario *s);
const struct otasim_release *otasim_scenario_target(const struct otasim_scenario *s);

/* "power-cut@state:SWITCHING", "agent-crash@point:57", "none" ... and back. */
void otasim_fault_label(const struct otasim_fault *f, char *buf, size_t cap);
int otasim_trigger_parse(const char *text, struct otasim_trigger *ret,
                         struct ota_err *err) OTA_MUST;
int otasim_fault_kind_parse(const char *text, enum otasim_fault_kind *ret,
                            struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
