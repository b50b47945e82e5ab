/* Fleet runs (issue 12): N simulated devices, each an instance of the agent's
 * own core (otacore, linked in), in one process, on one event loop over
 * libcurl multi, against a real ota-server on loopback, on a virtual clock
 * that the runner drives and the server follows (--virtual-clock).
 *
 * A fleet file (scenarios/fleet/NAME.yaml) says which devices, which
 * releases (good and bad, and how a bad one fails), which rollout (the
 * server's own definition), which faults at which rates, and what must hold
 * at the end. Format: docs/fleet.md. */
#ifndef OTASIM_FLEET_H
#define OTASIM_FLEET_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASIM_FLEET_MAX_RELEASES 8
#define OTASIM_FLEET_MAX_MIX      16
#define OTASIM_FLEET_MAX_STATES   16
#define OTASIM_FLEET_MAX_ATTRS    4

/* One share of the fleet: device type, group or time zone. */
struct otasim_fleet_mix {
    char value[64];
    double share; /* relative weight */
};

/* How a bad release fails on the devices it hits. */
enum otasim_bad_mode {
    OTASIM_BAD_NONE,   /* a good release */
    OTASIM_BAD_HEALTH, /* runs, then its health check fails (fail_after) */
    OTASIM_BAD_CRASH,  /* its service does not stay up after the restart */
    OTASIM_BAD_BOOT,   /* rootfs: the image does not boot (the bootloader falls back) */
    OTASIM_BAD_MODE_MAX
};
extern const char *const otasim_bad_mode_names[OTASIM_BAD_MODE_MAX];

struct otasim_fleet_release {
    char version[32];
    uint64_t size; /* payload bytes */
    int factory;   /* installed on every device at the start (not published) */
    int rollback;  /* also published as the signed rollback order of its version */
    int rootfs;    /* kind: rootfs image (default app package); one kind per fleet */
    enum otasim_bad_mode bad;
    double bad_probability; /* per device it may hit */
    char bad_types[4][64];  /* only these device types ("" none = all) */
    size_t n_bad_types;
    char bad_groups[4][64]; /* and only these groups (none = all) */
    size_t n_bad_groups;
    int64_t fail_after_ms; /* health: the service fails this long after its start */
};

struct otasim_fleet_def {
    char name[64];
    char path[4096];
    uint64_t seed;
    int rootfs;          /* a rootfs fleet (its releases are images, devices reboot) */
    int64_t duration_ms; /* virtual time budget */
    int64_t start_ms;    /* virtual clock's start (unix ms) */
    /* devices */
    uint32_t count;
    int64_t poll_ms, jitter_ms;
    int64_t health_window_ms, health_interval_ms;
    struct otasim_fleet_mix types[OTASIM_FLEET_MAX_MIX];
    size_t n_types;
    struct otasim_fleet_mix groups[OTASIM_FLEET_MAX_MIX];
    size_t n_groups;
    struct otasim_fleet_mix zones[OTASIM_FLEET_MAX_MIX]; /* time zones ("": none sent) */
    size_t n_zones;
    struct {
        char key[33];
        struct otasim_fleet_mix values[OTASIM_FLEET_MAX_MIX];
        size_t n;
    } attrs[OTASIM_FLEET_MAX_ATTRS]; /* inventory attributes, each its own mix */
    size_t n_attrs;
    double offline; /* share that never checks in */
    double late;    /* share that comes online only after late_ms */
    int64_t late_ms;
    uint64_t bandwidth; /* bytes/s per device link (0: unlimited) */
    /* releases */
    struct otasim_fleet_release rel[OTASIM_FLEET_MAX_RELEASES];
    size_t n_rel;
    /* the rollout: the server's definition with release_id/previous_release_id filled */
    char rollout_release[32];       /* version */
    char rollout_previous[32];      /* version ("": none) */
    char *rollout_json;             /* malloc'ed definition (JSON text) without the release ids */
    int64_t rollout_activate_at_ms; /* blue_green: the switch, virtual ms after the start (-1) */
    /* faults */
    double power_cut; /* per device per state entry in cut_states */
    char cut_states[OTASIM_FLEET_MAX_STATES][24];
    size_t n_cut_states;
    int64_t off_ms;           /* how long a device stays off after a cut */
    double agent_crash;       /* the same for an agent crash (no data lost) */
    char *server_faults_json; /* malloc'ed fault plan (JSON), NULL: none */
    /* expectations (negative / empty: not checked) */
    char expect_rollout[8][16]; /* the rollout ends in one of these states */
    size_t n_expect_rollout;
    double expect_bad_max_percent; /* devices that installed a bad release */
    long expect_bricked_max, expect_inconsistent_max, expect_stuck_max;
    double expect_min_on_target_percent; /* online devices that run rollout_release */
    char expect_target_version[32];      /* "" : rollout_release */
    int64_t expect_committed_within_ms;  /* of the offer, every committed update */
    int expect_switch_in_window;         /* every switch inside the rollout's window */
};

/* Reads and checks a fleet file; errors name the key. */
int otasim_fleet_load(const char *path, struct otasim_fleet_def *ret, struct ota_err *err) OTA_MUST;
int otasim_fleet_parse(const char *text, size_t n, const char *path, struct otasim_fleet_def *ret,
                       struct ota_err *err) OTA_MUST;
void otasim_fleet_def_free(struct otasim_fleet_def *d);
/* The release of that version, NULL if none. */
const struct otasim_fleet_release *otasim_fleet_release_find(const struct otasim_fleet_def *f,
                                                             const char *version);

/* ---- a run ---------------------------------------------------------------- */

struct otasim_fleet_opts {
    uint64_t seed;          /* overrides the file's (0: the file's) */
    uint32_t count;         /* overrides the device count (0: the file's) */
    uint32_t shard, shards; /* run devices i with i % shards == shard (shards 0/1: all) */
    uint32_t connections;   /* keep-alive pool size (default 256) */
    uint32_t max_active;    /* devices inside a pass at once (default 4096) */
    int64_t grain_ms;       /* the virtual clock's grain (default 1000): wakes round up to it */
    int server_threads;     /* ota-server --threads (default 2) */
    const char *db;         /* run database (NULL: none) */
    const char *work;       /* work dir (server, releases) */
    const char *server_url; /* an ota-server already running with --virtual-clock, shared
                               by shards (NULL: start one) */
    const char *admin_token;

    /* shards on one server (fleet_shard.c; docs/fleet.md "Fleet runs across
     * machines"): with server_url, this run is party `shard` of the server's
     * clock (--clock-parties); admin_token is the server's */
    const char *enroll_token; /* its enrollment token (default sim-enroll) */
    const char *pubkey;       /* the release key (default WORK/cache/keys/release.pub: the
                                 one the server side signed with when it shares WORK) */
    /* otasim_fleet_serve, the server side: */
    int serve_only;
    uint32_t parties;               /* the shards that share the clock (default shards) */
    const char *info;               /* write {url, admin_token, ...} here (JSON) */
    const char *const *server_args; /* more `ota-server serve` arguments (--listen ...);
                                       admin_token, when set, is the one it gets */

    int verbose;
    int keep;       /* keep the run's work dir (server database, releases) */
    int access_log; /* the server keeps an access log (server/server.log; off: a write per
                       request would slow the server a tenth) */
    FILE *progress; /* a line per sample (NULL: quiet) */
    /* The calibration (fleet_native.c): every device's outcome is recorded
     * there, and the releases carry the video-app build of their version
     * (NULL: neither). */
    struct otasim_fleet_calib *calib;
};

struct otasim_fleet_stats {
    uint32_t devices, online;
    /* outcomes */
    uint32_t on_target;     /* run the rollout's release, committed */
    uint32_t bad_installed; /* ran a bad release at some point (switched to it) */
    uint32_t rolled_back;   /* an update of theirs rolled back */
    uint32_t bricked, inconsistent, stuck;
    uint32_t never_checked_in;
    /* the rollout as the server ends it */
    char rollout_state[16];
    char rollout_reason[256];
    int stage;
    /* work done */
    uint64_t requests, checkins, downloads, bytes_down, resumes;
    uint64_t power_cuts, agent_crashes, steps, passes;
    uint64_t srv_faults_applied; /* the server's rules, summed */
    /* seed 003's figures, over the online devices */
    double downtime_mean_ms, downtime_p95_ms; /* switch to healthy (or back), per update */
    double bytes_mean, bytes_max;             /* downloaded per device, resumes included */
    uint32_t recovered;                       /* devices back healthy after a failed update */
    double recovery_mean_ms, recovery_p95_ms; /* failure (rollback start) to healthy again */
    /* faults at rates, seen to fire: counted against the configured rate */
    uint64_t cut_chances; /* state entries a power cut could hit */
    char faults[1024];    /* one line per rule/kind: configured rate, draws, fired */
    int64_t fleet_id;     /* its row in the run database (0: none) */
    int64_t virtual_ms;   /* virtual time covered */
    int64_t rollout_ms;   /* start to the rollout's end state (or the run's end) */
    double wall_s, cpu_user_s, cpu_sys_s;
    double srv_cpu_s; /* the server's CPU (when the runner started it) */
    long peak_rss_kib, srv_peak_rss_kib;
    long rss_per_idle_device_bytes; /* measured: RSS growth per device while idle */
    /* the verdict */
    int ok;
    char failed[1024]; /* the expectations that failed, one a line */
    char rerun[1024];  /* the command that reruns the run */
};

int otasim_fleet_run(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                     struct otasim_fleet_stats *ret, struct ota_err *err) OTA_MUST;

/* The server side of a sharded run (fleet_shard.c): starts ota-server on a
 * virtual clock shared by o->parties shards (--clock-parties), uploads the
 * releases and the fault plan, creates the rollout (a draft: shard 0 starts
 * it), writes o->info, then serves until every party left the clock (or
 * SIGINT/SIGTERM). */
int otasim_fleet_serve(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                       FILE *out, struct ota_err *err) OTA_MUST;

/* Merges the fleet runs of shard databases (the last fleet run of each of
 * in[0..n)) into one fleet run in out (created if missing): devices and
 * samples unioned, counts summed, figures recomputed from the device rows,
 * the verdict recomputed (docs/fleet.md "Merging shards"). *ret_ok: the
 * merged verdict; *ret_id: its fleet_runs id. */
int otasim_fleet_merge(const char *out, const char *const *in, size_t n, int *ret_ok,
                       int64_t *ret_id, FILE *report, struct ota_err *err) OTA_MUST;
/* ---- the calibration (fleet_native.c, docs/fleet.md "Calibration") ---- */
struct otasim_fleet_calib; /* every device's final outcome of one run */
struct otasim_fleet_calib_result {
    struct otasim_fleet_calib *inproc, *native;
    struct otasim_fleet_stats inproc_stats;
    double inproc_wall_s, native_wall_s;
};
/* Runs the fleet in-process, then each device as a real `ota-agent` process
 * on a simulated device (native tier), passes on `jobs` threads, batches of
 * batch_ms virtual (0: poll_interval / 12). */
int otasim_fleet_calibrate(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                           unsigned jobs, int64_t batch_ms, struct otasim_fleet_calib_result *ret,
                           struct ota_err *err) OTA_MUST;
/* Prints every difference (the rollout's end state, each device's running
 * version, agent state, rollback, final report); returns their number. */
int otasim_fleet_calib_compare(const struct otasim_fleet_calib *a,
                               const struct otasim_fleet_calib *b, FILE *out);
void otasim_fleet_calib_print(const struct otasim_fleet_calib *c, FILE *out);
struct otasim_fleet_calib *otasim_fleet_calib_new(uint32_t n, const char *app_dir);
void otasim_fleet_calib_free(struct otasim_fleet_calib *c);
void otasim_fleet_calib_result_free(struct otasim_fleet_calib_result *r);

/* The run's figures as JSON text (malloc'ed; NULL: out of memory). */
char *otasim_fleet_stats_json(const struct otasim_fleet_def *def,
                              const struct otasim_fleet_stats *s, uint64_t seed);

/* The closed form of a canary's chance: 1 - (1 - p)^n. */
double otasim_fleet_catch_probability(double p, uint32_t n);
/* Appends one line (fmt, then a newline) to the text in buf (cap bytes),
 * as far as it fits: the runs' lists of failed expectations and faults. */
void otasim_vline(char *buf, size_t cap, const char *fmt, va_list ap);
/* Mean and 95th percentile of v[0..n) (sorted in place); 0 and 0 when empty. */
void otasim_mean_p95(double *v, size_t n, double *ret_mean, double *ret_p95);
/* Wilson score interval for k successes of n at z (1.96: 95%). */
void otasim_wilson(uint32_t k, uint32_t n, double z, double *ret_lo, double *ret_hi);

/* What a fleet run declares it does not model, NULL-terminated (docs/fleet.md):
 * written to its run's run_gaps (kind "not-modelled", subject "fleet") by
 * ota-sim fleet and fleet-merge, and shown by the report. */
extern const char *const otasim_fleet_gaps[];

#ifdef __cplusplus
}
#endif
#endif
