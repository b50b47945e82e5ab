/* What the fleet runner's files share (fleet.c: the loop and the run;
 * fleet_dev.c: a device's durable state and the core's in-memory ops;
 * fleet_net.c: the libcurl multi transport; fleet_setup.c: the server,
 * the releases and the rollout). */
#ifndef OTASIM_FLEET_IMPL_H
#define OTASIM_FLEET_IMPL_H

#include <jansson.h>
#include <stdint.h>
#include "ota/core.h"
#include "otasim/fiber.h"
#include "otasim/fleet.h"

struct fleet;
struct fnet;

/* ---- strings shared by many devices (versions, manifests, URLs) ---- */
const char *fleet_intern(struct fleet *fl, const char *s);

/* ---- a device's in-memory disk: the download file ---- */
struct fblob; /* bytes that many devices' downloads share */
struct fdl {
    struct fblob *blob; /* the bytes match blob[0, len) */
    uint8_t *own;       /* or, once they differ: our own copy */
    size_t own_cap;
    uint64_t len, synced;
};

/* The compact journal of a device between passes (strings interned). */
struct fjournal {
    uint8_t state;
    int8_t from_slot, to_slot;
    int8_t failed;
    uint32_t flags, resumes, attempts;
    uint64_t durable_len;
    int8_t wait_activation;
    int64_t not_after_ms, standby_since_ms;
    uint8_t prefix_sha256[32];
    const char *update_id, *rollout_id, *manifest, *signature, *url, *etag, *from_version, *reason;
};

struct fkv {
    const char *key, *val;
};

struct frep {
    struct frep *next;
    int64_t id;
    struct ota_report r;
};

/* A device's durable state (what survives a power cut) and its place in the
 * loop. An idle device is this alone; a device in a pass has a struct fpass. */
struct fdev {
    uint32_t idx;
    uint8_t type, group, zone;
    uint8_t attr[OTASIM_FLEET_MAX_ATTRS]; /* the value of each of def->attrs */
    uint8_t offline, late;                /* never after its first pass / only after late_ms */
    int8_t active;                        /* app slot `current` names */
    uint8_t cut;                          /* the power is off from now (ops fail) */
    uint8_t crash; /* the agent crashed (ops fail; the disk keeps its bytes) */
    uint8_t n_kv, n_hist;
    uint8_t bad_seen; /* ran a bad release */
    uint8_t checked_in;
    const char *slot_ver[2]; /* interned */
    struct fjournal *j;      /* NULL: no journal yet */
    struct fkv *kv;
    struct frep *outbox;
    int64_t next_rep;
    struct fdl *dl; /* NULL: no download file */
    /* service */
    const char *running; /* version running, NULL: down */
    int64_t svc_start_ms;
    uint64_t rnd;
    /* the last final result it reported and the history's last entry */
    const char *last_status, *last_version;
    /* scheduling */
    int64_t wake_ms;
    uint32_t heap_gen; /* the heap entry of this generation is the live one (each wake
                          makes a new one; popped, none is left) */
    struct fpass *pass;
    /* accounting (seed 003's figures) */
    uint64_t bytes_down;
    int64_t switch_ms; /* the last switch (SWITCHING entered), -1 none */
    int64_t offered_ms, committed_ms, down_since_ms, downtime_ms, fail_ms, recovered_ms;
    uint16_t updates, rollbacks, cuts, crashes;
    uint32_t nt;          /* transitions seen: the draws of the faults at rates */
    uint32_t npass;       /* its passes: the poll jitter's draws */
    uint8_t boot_pending; /* the next wake is a boot (after a cut) */
    uint8_t reboot_asked; /* the core asked for a reboot (rootfs) */
    uint8_t env_part, env_upgrade, env_count; /* rootfs: the boot env (B = 1) */
};

/* The ops' context: the device and its runner. */
struct fctx {
    struct fleet *fl;
    struct fdev *d;
};

/* A device inside a pass: its core on a fiber. */
struct fpass {
    struct fctx c; /* first: the ops' context */
    struct fdev *d;
    struct ota_agent *a; /* the slot's core, renewed at each pass; its config is the
                            fleet's with the pass's device in it */
    struct otasim_fiber *f;
    int waiting_io; /* parked on a transfer */
    struct fpass *next_free;
};

/* ---- the runner ---- */
struct fleet {
    const struct otasim_fleet_def *def;
    const struct otasim_fleet_opts *o;
    struct otasim_fleet_stats *st;
    uint64_t seed;
    int64_t vnow;     /* virtual ms since the run's start */
    int64_t grain;    /* the virtual clock's grain (ms): wakes are rounded up to it */
    int64_t srv_now;  /* what the server's clock was last advanced to */
    int64_t srv_next; /* the server's next deadline (virtual ms since start), INT64_MAX none */
    long srv_sleepers;
    char url[256], admin_token[128], enroll_token[128];
    char pubkey[4096];
    char dir[4096];              /* the run's work dir (server, releases) */
    struct ota_agent_config cfg; /* shared by every device; per device: id, type, group */
    struct fdev *dev;
    uint32_t n_dev;
    /* timers: a binary heap of wake times; an entry carries its key and its
     * device's index, so that sifting reads only the heap (one cache line per
     * level), not a device per comparison */
    struct fheap_entry {
        int64_t wake_ms;
        uint32_t dev; /* index in dev[] */
        uint32_t gen; /* stale unless dev[dev].heap_gen */
    } * heap;
    uint32_t heap_n, heap_cap;
    /* ready to run now */
    struct fdev **ready;
    uint32_t ready_head, ready_tail, ready_cap;
    /* passes (cores + fibers), pooled */
    struct fpass *free_pass;
    uint32_t active, max_active;
    struct fnet *net;
    void *intern; /* the string table */
    struct fblob *blobs;
    /* the rollout */
    char rollout_id[64];
    char release_id[96], previous_id[96];
    int rollout_started;
    int64_t rollout_start_ms, rollout_end_ms; /* virtual */
    char rollout_state[16];
    const struct otasim_fleet_release *target;
    /* the run's own power/crash draws and so on */
    uint64_t steps, passes;
};

/* fleet_dev.c */
extern const struct ota_store_ops fleet_store_ops;
extern const struct ota_install_ops fleet_install_ops;
extern const struct ota_service_ops fleet_service_ops;
extern const struct ota_clock_ops fleet_clock_ops;
extern const struct ota_bootenv_ops fleet_bootenv_ops;
/* The fleet's update kind: its factory release's. */
static inline enum ota_kind fleet_kind(const struct fleet *fl)
{
    return fl->def->rootfs ? OTA_KIND_ROOTFS : OTA_KIND_APP;
}
/* The power comes on: the bootloader model (rootfs), then the app. */
void fleet_dev_boot(struct fleet *fl, struct fdev *d);
struct fleet *fleet_of(void *ctx);
uint64_t fleet_hash(uint64_t seed, uint64_t a, uint64_t b);
double fleet_unit(uint64_t h); /* [0, 1) */
/* Whether release rel fails on device d (seeded, per device). */
int fleet_bad_for(const struct fleet *fl, const struct fdev *d,
                  const struct otasim_fleet_release *rel);
const struct otasim_fleet_release *fleet_release_of(const struct fleet *fl, const char *version);
/* The power goes off: what was not durable is lost. */
void fleet_dev_power_loss(struct fleet *fl, struct fdev *d);
void fleet_dev_free(struct fdev *d);
int fleet_dev_service_up(const struct fleet *fl, const struct fdev *d);
void fleet_blobs_free(struct fleet *fl);
int fleet_intern_init(struct fleet *fl);
void fleet_intern_free(struct fleet *fl);
size_t fleet_intern_bytes(const struct fleet *fl);

/* fleet_net.c: the libcurl multi adapter */
extern const struct ota_transport_ops fleet_transport_ops;
int fleet_net_new(struct fleet *fl, uint32_t connections, struct fnet **ret,
                  struct ota_err *err) OTA_MUST;
void fleet_net_free(struct fnet *n);
/* Transfers in flight. */
uint32_t fleet_net_active(const struct fnet *n);
/* Drives the transfers for at most wait_ms (0: no wait); finished ones
 * make their devices ready (fleet_ready). */
int fleet_net_run(struct fnet *n, int wait_ms, struct ota_err *err) OTA_MUST;
/* A blocking admin call on the same pool (from the loop, not a fiber):
 * method, path under the server URL, JSON body or NULL. *ret_body malloc'ed. */
int fleet_net_admin(struct fnet *n, const char *method, const char *path, const char *body,
                    long *ret_status, char **ret_body, struct ota_err *err) OTA_MUST;
/* The same with its own timeout (a shard's ask of the shared clock waits
 * for the other shards). */
int fleet_net_admin_wait(struct fnet *n, const char *method, const char *path, const char *body,
                         long timeout_ms, long *ret_status, char **ret_body,
                         struct ota_err *err) OTA_MUST;
uint64_t fleet_net_requests(const struct fnet *n);
uint64_t fleet_net_done(const struct fnet *n); /* transfers finished */

/* fleet_setup.c */
struct otasim_tools;
struct otasim_server;
int fleet_setup(struct fleet *fl, const struct otasim_tools *t, struct otasim_server *srv,
                struct ota_err *err) OTA_MUST;
/* Advances the server's clock to virtual `to` (ms since the run's start);
 * updates srv_now, srv_next, srv_sleepers. */
int fleet_clock_advance(struct fleet *fl, int64_t to, struct ota_err *err) OTA_MUST;
int fleet_clock_query(struct fleet *fl, struct ota_err *err) OTA_MUST;
int fleet_rollout_create(struct fleet *fl, struct ota_err *err) OTA_MUST;
/* GET an admin path: *ret the JSON answer (2xx only). */
int fleet_admin_get(struct fleet *fl, const char *path, json_t **ret, struct ota_err *err) OTA_MUST;
int fleet_rollout_start(struct fleet *fl, struct ota_err *err) OTA_MUST;
int fleet_rollout_status(struct fleet *fl, json_t **ret_json, struct ota_err *err) OTA_MUST;
int fleet_final_reports(struct fleet *fl, json_t **out, struct ota_err *err) OTA_MUST;
/* An admin call: *ret the JSON answer of a 2xx, else an error naming the call. */
int fleet_admin_json(struct fleet *fl, const char *method, const char *path, const char *body,
                     json_t **ret, struct ota_err *err) OTA_MUST;
void fleet_release_ids(struct fleet *fl);

/* fleet_shard.c: shards on one shared server (opts server_url) */
/* Instead of fleet_setup: the server's URL, tokens, the release key. */
int fleet_join(struct fleet *fl, const struct otasim_tools *t, struct ota_err *err) OTA_MUST;
/* Instead of creating the rollout: waits until the server side did. */
int fleet_join_rollout(struct fleet *fl, struct ota_err *err) OTA_MUST;
/* Instead of starting it (shards but 0): waits until shard 0 did. */
int fleet_join_started(struct fleet *fl, struct ota_err *err) OTA_MUST;
/* This shard's ask of the shared clock: returns once the clock got to `to`. */
int fleet_clock_ask(struct fleet *fl, int64_t to, struct ota_err *err) OTA_MUST;
/* This shard leaves the shared clock (its run is over, or failed); best effort. */
void fleet_clock_leave(struct fleet *fl);
/* serve-only: appends --clock-parties and the user's server args to extra
 * (NULL-terminated, cap entries). 0, or -E2BIG. */
int fleet_serve_args(struct fleet *fl, const char **extra, size_t cap);

/* fleet_check.c: the invariant table on d's end state; reports: the
 * server's final reports of the device ({status, version, update_id}). */
int fleet_check_device(struct fleet *fl, const struct fdev *d, json_t *reports, char *ret_failed,
                       size_t cap, int *ret_ok);

/* ---- a run (fleet.c) and what its end and record need ---- */
#include "otasim/sim.h"
struct otasim_rundb;

struct sample {
    int64_t t;
    uint32_t by_state[OTA_STATE_MAX];
    uint32_t by_version[OTASIM_FLEET_MAX_RELEASES + 1]; /* last: other */
    uint32_t down, in_pass;
    char rollout[16];
    int stage;
    char *server; /* the rollout's metrics as the server counts them (by_state, stages) */
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

/* fleet_verdict.c */
int fleet_outcomes(struct run *R, struct otasim_rundb *db, struct ota_err *err) OTA_MUST;
int fleet_faults_fired(struct run *R, struct ota_err *err) OTA_MUST;
void fleet_expectations(struct run *R);

/* fleet_record.c */
long fleet_rss_kib(pid_t pid, const char *field);
double fleet_proc_cpu_s(pid_t pid);
void fleet_rerun_cmd(const struct run *R, char *buf, size_t cap);
int fleet_db_open(struct run *R, struct otasim_rundb **ret, struct ota_err *err) OTA_MUST;
int fleet_db_close(struct run *R, struct otasim_rundb *db, struct ota_err *err) OTA_MUST;

/* fleet_native.c: the calibration's hooks. Records d's outcome (reports:
 * the server's final reports of the device, as fleet_final_reports). */
void fleet_calib_record(struct fleet *fl, const struct fdev *d, json_t *reports);
/* The video-app build a release's payload carries in calibration runs
 * (buf "" otherwise). */
int fleet_calib_app_bin(const struct fleet *fl, const struct otasim_fleet_release *rel, char *buf,
                        size_t cap, struct ota_err *err) OTA_MUST;

/* fleet.c */
void fleet_ready(struct fleet *fl, struct fdev *d);
/* The heap of wake times: d wakes at t (rounded up to fl->grain; moved if it
 * waits already: its older entry goes stale); pop the earliest (ties by
 * device index); the earliest wake time, INT64_MAX when none. */
void fleet_wake_at(struct fleet *fl, struct fdev *d, int64_t t);
struct fdev *fleet_heap_pop(struct fleet *fl);
int64_t fleet_heap_next(struct fleet *fl);
/* From a fiber: sleep until virtual time t. */
void fleet_sleep_until(struct fleet *fl, struct fdev *d, int64_t t);

#endif
