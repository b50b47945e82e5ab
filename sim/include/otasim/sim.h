/* The simulator: tools, artifacts (keys, release payloads, reference trees),
 * one ota-server per scenario, simulated devices and the trials run on them.
 *
 * A trial: a fresh device tree (factory release in slot a / rootA), boot,
 * the real ota-agent runs `update` with the fault armed (interposer env,
 * named fault point, proxy partition, faketime...), the fault fires, the
 * device reboots as the fault says (power cut: tree rebuilt by the power
 * model), then the agent runs `update` passes until it settles; then the
 * invariant checker. Every trial gets its own device id on the server. */
#ifndef OTASIM_SIM_H
#define OTASIM_SIM_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>
#include "ota/err.h"
#include "ota/hash.h"
#include "otasim/scenario.h"

/* FNV-1a of a string: the short, stable ids the harness derives from names
 * (device ids, rollout and release ids, cache keys). */
static inline uint32_t otasim_hash32(const char *s)
{
    return ota_fnv1a32(s);
}

#ifdef __cplusplus
extern "C" {
#endif

/* Where trials run: simulated devices (native) or QEMU machines. */
enum otasim_target { OTASIM_TARGET_NATIVE, OTASIM_TARGET_QEMU, OTASIM_TARGET_MAX };
extern const char *const otasim_target_names[OTASIM_TARGET_MAX];
/* What each tier declares it does not model, NULL-terminated: written to
 * every run's run_gaps (kind "not-modelled") and shown by the report. */
extern const char *const *const otasim_target_gaps[OTASIM_TARGET_MAX];
/* The same for a QEMU run in block mode (--mode blocks). */
extern const char *const otasim_qemu_blocks_gaps[];

struct otasim_tools {
    char agent[PATH_MAX];     /* ota-agent under test (or a mutant); qemu: reads the database */
    char server[PATH_MAX];    /* ota-server */
    char pack[PATH_MAX];      /* ota-pack */
    char self[PATH_MAX];      /* ota-sim (for `ota-sim svc`) */
    char interpose[PATH_MAX]; /* libotasim-interpose.so */
    char app_dir[PATH_MAX];   /* dir of the video-app builds */
    char make_release[PATH_MAX];
    char faketime[PATH_MAX]; /* libfaketime.so.1 ("" if missing) */
    char work[PATH_MAX];     /* cache + trial trees */
    int keep;                /* keep every trial's tree and the run's dir where they are
                              * (without it: a failed trial's tree moves to WORK/failed) */
    int verbose;
    /* the QEMU target (otasim_tools_qemu) */
    enum otasim_target target;
    int qemu_profile;           /* enum otasim_qemu_profile */
    char image_dir[PATH_MAX];   /* images/build-image output */
    char key_dir[PATH_MAX];     /* release-key.pem/.pub the image trusts ("": generated keys) */
    char arch[16];              /* video-app releases for this architecture ("": the host's) */
    int qemu_timeout_s;         /* one boot-to-settle phase */
    char guest_agent[PATH_MAX]; /* aarch64 agent put into the image per trial ("": the image's) */
    int qemu_snapshot;          /* power cuts at states boot from a recording's frozen disks */
    int qemu_cpus;              /* virt's vCPUs per guest (--qemu-cpus; see cli.c) */
};

/* Finds the tools next to the running ota-sim in a build tree (or from
 * $OTASIM_AGENT, $OTASIM_SERVER...). agent overrides the agent if non-NULL. */
int otasim_tools_find(struct otasim_tools *t, const char *agent, const char *work,
                      struct ota_err *err) OTA_MUST;

/* Switches t to the QEMU target: the aarch64 video-app builds
 * ($OTASIM_APP_DIR_AARCH64, else SRC/build-aarch64/agent/video-app), the
 * image (image_dir, else SRC/images/out/latest-empty) and the keys it
 * trusts ($OTASIM_IMAGE_KEYS, else SRC/images/cache/rootfs/keys). */
int otasim_tools_qemu(struct otasim_tools *t, const char *profile, const char *image_dir,
                      struct ota_err *err) OTA_MUST;

/* ---- artifacts (artifacts.c) ------------------------------------------ */
struct otasim_built {
    char dir[PATH_MAX]; /* ota-pack --out dir */
    char payload[PATH_MAX];
    char ref_tree[PATH_MAX]; /* app: the release extracted by tar/dpkg-deb */
    char ref_digest[65];     /* app: tree digest of ref_tree; rootfs: sha256 of the image */
    uint64_t size;           /* payload size; rootfs: image size */
    uint8_t image_sha[32];   /* rootfs: of the raw image */
};
int otasim_keys(const struct otasim_tools *t, char *priv, char *pub, char *rogue, size_t cap,
                struct ota_err *err) OTA_MUST;
int otasim_build_release(const struct otasim_tools *t, const struct otasim_scenario *s,
                         const struct otasim_release *r, struct otasim_built *ret,
                         struct ota_err *err) OTA_MUST;
/* SHA-256 over a tree: names, types, modes, symlink targets, file bytes. */
int otasim_tree_digest(const char *root, char ret_hex[65], struct ota_err *err) OTA_MUST;

/* ---- the server (srvproc.c) --------------------------------------------- */
struct otasim_server {
    pid_t pid;
    int port;
    char dir[PATH_MAX];
    char url[128];
    char admin_token[64];
    char enroll_token[64];
};
int otasim_server_start(const struct otasim_tools *t, const char *dir, struct otasim_server *ret,
                        struct ota_err *err) OTA_MUST;
/* The same with more `ota-server serve` options (NULL-terminated; they come
 * after the defaults, so a repeated option overrides one), and the access
 * log (DIR/server.log, a JSON line per request) only if access_log: a fleet
 * run's millions of requests would cost the server a write each. The
 * server's stderr (errors, applied faults) goes to DIR/server.log either way. */
int otasim_server_start_with(const struct otasim_tools *t, const char *dir,
                             const char *const *extra, int access_log, struct otasim_server *ret,
                             struct ota_err *err) OTA_MUST;
int otasim_server_add_release(const struct otasim_tools *t, const struct otasim_server *s,
                              const char *reldir, const char *id, int publish,
                              struct ota_err *err) OTA_MUST;
/* PUT /api/v1/faults with body (JSON text). */
int otasim_server_put_faults(const struct otasim_server *s, const char *json,
                             struct ota_err *err) OTA_MUST;
/* GET an admin path; *ret malloc'ed body. */
int otasim_server_get(const struct otasim_server *s, const char *path, char **ret,
                      struct ota_err *err) OTA_MUST;
/* POST an admin path with body (JSON text, or NULL); *ret malloc'ed body
 * (ret may be NULL). */
int otasim_server_post(const struct otasim_server *s, const char *path, const char *body,
                       char **ret, struct ota_err *err) OTA_MUST;
/* Enrolls device id (POST /api/v1/devices/register with the enrollment
 * token; type, group, no tags, no versions); its token into ret_token
 * unless NULL. */
int otasim_server_enroll_device(const struct otasim_server *s, const char *id, const char *type,
                                const char *group, char *ret_token, size_t cap,
                                struct ota_err *err) OTA_MUST;
/* The server's id of the ota-pack release of version (not a .swu of it). */
int otasim_server_release_of(const struct otasim_server *s, const char *version, char *buf,
                             size_t cap, struct ota_err *err) OTA_MUST;
/* Creates the rollout def (a JSON object with its "id"), approves and
 * starts it. */
int otasim_server_rollout_start(const struct otasim_server *s, json_t *def,
                                struct ota_err *err) OTA_MUST;
/* blue_green scenarios (bluegreen.c): the trial's rollout (the device
 * registered in a group of its own, a blue_green rollout of the target
 * filtered on it, approved and started), and its activation once the device
 * waits in STANDBY: *ret_activated = 1 when this call activated it. */
struct otasim_trial;
struct otasim_device;
int otasim_bluegreen_setup(struct otasim_trial *tr, struct ota_err *err) OTA_MUST;
int otasim_bluegreen_activate(struct otasim_device *d, struct otasim_trial *tr, int *ret_activated,
                              struct ota_err *err) OTA_MUST;
/* The QEMU tier's: activates once the server has the device in standby. */
int otasim_bluegreen_poll(struct otasim_trial *tr, int *ret_activated,
                          struct ota_err *err) OTA_MUST;
void otasim_server_stop(struct otasim_server *s);
/* libcurl's one-time global setup (http.c is the simulator's libcurl
 * adapter), for a process that forks workers that will talk to the server. */
void otasim_http_global_init(void);
/* One blocking HTTP call (JSON body or NULL, Bearer or NULL): 0 when any
 * answer came (*ret_status, *ret_body malloc'ed), -errno when none did. */
int otasim_http_call(const char *url, const char *bearer, const char *method, const char *body,
                     long timeout_ms, long *ret_status, char **ret_body,
                     struct ota_err *err) OTA_MUST;

/* ---- a trial and its result (trial.c, invariants.c) ------------------- */
/* not-run: the agent under test lacks what the trial needs (a fault-point
 * trigger on an agent built without OTA_FAULT_POINTS): neither a pass nor
 * the agent's failure. environment: a QEMU guest lost its network, on the
 * trial and on its one retry (qenv.h): neither a pass nor the agent's
 * failure either. */
enum otasim_outcome {
    OTASIM_PASS,
    OTASIM_FAIL,
    OTASIM_ERROR,
    OTASIM_NOT_RUN,
    OTASIM_ENVIRONMENT,
    OTASIM_OUTCOME_MAX
};
extern const char *const otasim_outcome_names[OTASIM_OUTCOME_MAX];

#define OTASIM_MAX_INVARIANTS   28
#define OTASIM_MAX_SERVER_RULES 8

struct otasim_check {
    char name[40];
    int ok;
    char detail[400];
};

/* One of the scenario's server fault-plan rules, as the trial's device has
 * it (faults.c): the runner names it, the server counts it. */
struct otasim_rule_seen {
    char rule[64];     /* the rule's id in the server's plan (otasim_fault_rule_id) */
    long long applied; /* times the server applied it to the device; -1: unknown */
};

struct otasim_trial {
    /* in */
    const struct otasim_scenario *sc;
    struct otasim_fault fault; /* the scenario's fault with one concrete trigger */
    uint64_t seed;
    char device_id[96];
    char group[64];     /* the agent's group ("": none; fleet calibration, mix) */
    char agent[32];     /* the device's adapter if not the scenario's (mix) */
    char dir[PATH_MAX]; /* the trial's work dir */
    const struct otasim_server *srv;
    const struct otasim_built *built; /* sc->n_rel entries */
    char pub[PATH_MAX];
    /* in: the server rules of this device (ids); out: how often each applied */
    struct otasim_rule_seen srv_rules[OTASIM_MAX_SERVER_RULES];
    size_t n_srv_rules;
    char srv_rules_why[200]; /* why the server's log could not be read ("": it was) */
    /* out */
    enum otasim_outcome outcome;
    int fired; /* the fault fired */
    char final_version[32], final_slot[4], final_report[16], final_state[24];
    int passes;
    int cycle_passes; /* passes until the update cycle ended (final state line) */
    uint64_t calls;   /* mutating calls journaled in the update cycle */
    int64_t started_ms, duration_ms, recover_ms;
    struct otasim_check checks[OTASIM_MAX_INVARIANTS];
    size_t n_checks;
    char detail[1024]; /* error or first failed invariant */
    char target[8];    /* "native" or "qemu" */
    char logs[1024];   /* qemu: the serial console log of each power-on, one a line */
    char *state_lines; /* malloc'ed: every OTA-STATE JSON, one per line */
    /* blue_green scenarios (bluegreen.c): the rollout was activated, after
     * this many bytes of state_lines */
    int activated;
    size_t activated_at;
    /* block-level crash states (qblocks.c): the run database's trigger and
     * crash model ("" the fault's), and its blocks column (JSON, not owned) */
    char block_trigger[64], block_model[24];
    const char *blocks;
};

/* Runs one trial; fills the out fields. Returns 0 (whatever the outcome)
 * or -errno if the harness itself failed (outcome ERROR, detail says). */
int otasim_trial_run(const struct otasim_tools *t, struct otasim_trial *tr,
                     struct ota_err *err) OTA_MUST;
/* The same on a QEMU machine (qtrial.c); -ENOTSUP with the reason for a
 * fault the QEMU tier cannot inject. */
int otasim_qemu_trial_run(const struct otasim_tools *t, struct otasim_trial *tr,
                          struct ota_err *err) OTA_MUST;
/* Whether the QEMU tier can run this fault (0, or -ENOTSUP with why). */
int otasim_qemu_supports(const struct otasim_scenario *sc, const struct otasim_fault *f,
                         struct ota_err *err) OTA_MUST;
void otasim_trial_free(struct otasim_trial *tr);

/* What a recording run (no fault) learnt of an update cycle. */
struct otasim_recording {
    uint64_t calls;    /* mutating calls in the cycle */
    uint64_t syncs;    /* of them fsync/fdatasync/sync */
    uint8_t *distinct; /* [calls + 1]: 1 if crashing after call n can differ from n-1 */
    uint64_t n_distinct;
};
/* Runs tr with no fault and learns its cycle: 0, or OTASIM_RECORD_FAILED
 * when the agent under test already fails that run (an invariant: tr holds
 * the failed trial, its tree is kept), or -errno when the harness failed. */
#define OTASIM_RECORD_FAILED 1
int otasim_record(const struct otasim_tools *t, struct otasim_trial *tr,
                  struct otasim_recording *ret, struct ota_err *err) OTA_MUST;
void otasim_recording_free(struct otasim_recording *r);

/* ---- faults that must be seen to fire (faults.c) ------------------------ */
/* The id of a scenario rule (base) in the server's plan for case ci: each
 * case device has its own copy of every rule. */
void otasim_fault_rule_id(const char *base, size_t ci, char *buf, size_t cap);
/* Asks the server how often it applied each of tr->srv_rules to
 * tr->device_id (GET /api/v1/faults/devices/ID) and fills their applied
 * counts; the `fault-fired` check fails each rule that never applied. */
void otasim_faults_server_seen(struct otasim_trial *tr);

/* The command that reruns a trial exactly. */
void otasim_reproduce_cmd(const struct otasim_tools *t, const struct otasim_trial *tr, char *buf,
                          size_t cap);

#ifdef __cplusplus
}
#endif
#endif
