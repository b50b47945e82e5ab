/* A simulated device: its tree (ROOT/opt/app/{a,b,current},
 * ROOT/var/lib/ota (database, downloads), ROOT/etc/ota-agent.conf,
 * ROOT/boot (uboot.env + fw_env.config), ROOT/disks/root{A,B},
 * ROOT/run (app port, pid, log, booted slot, reboot marker), ROOT/.sim
 * (journals, stash)), its process group, and the passes of the real agent
 * run on it. */
#ifndef OTASIM_DEVICE_H
#define OTASIM_DEVICE_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>
#include "ota/err.h"
#include "otasim/bootloader.h"
#include "otasim/netproxy.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASIM_PART_SIZE (1u << 20)

struct otasim_agent;

struct otasim_device {
    char root[PATH_MAX];
    const struct otasim_agent *agent; /* the agent under test (otasim/agent.h) */
    char config[PATH_MAX + 32];       /* its config file (set by its adapter) */
    const struct otasim_tools *tools;
    struct otasim_trial *tr;
    pid_t pgid; /* the device's process group (leader: a placeholder init) */
    int app_port;
    int app_port_fd; /* holds app_port for the device's life (-1: none) */
    struct otasim_proxy *proxy;
    struct otasim_image images[OTASIM_MAX_RELEASES];
    size_t n_images;
    struct otasim_bootcfg boot;
    char part[2][PATH_MAX + 32];
    char env_config[PATH_MAX + 32];
    int booted_slot; /* rootfs: slot the model booted (0/1), -1 unknown */
    char booted_version[32];
    int boot_failed;       /* the last boot found nothing bootable (hung and recovery too) */
    int hung;              /* rootfs: the last boot's kernel hung and no watchdog reset it */
    int recovery;          /* rootfs: the last boot is recovery mode (both slots failed) */
    char hung_version[32]; /* the version whose kernel hung last ("" none) */
    int watchdog_resets;   /* rootfs: hung kernels the watchdog reset, the whole trial */
    int64_t hung_ms;       /* the simulated time those hangs took (time-to-recover) */
    int image_boots[OTASIM_MAX_RELEASES]; /* per image, the boots that started its kernel */
    char faketime_file[PATH_MAX + 32];
    long long clock_offset_s;                 /* wall clock jump so far (libfaketime) */
    int64_t health_enter_ms, commit_enter_ms; /* monotonic, as the lines arrived */
    int state_seen;                           /* live trigger: times its state was entered */
    char rollout_id[32]; /* the trial's own rollout, if its adapter made one ("": none) */
    /* QEMU target (qtrial.c): the tree is what the host read off the disk
     * after the power went off; no journal; the app was asked before that. */
    int qemu;
    int probe_health;         /* HTTP status of /health, 0 if no answer */
    char probe_version[32];   /* what /version said */
    char slot_version[2][32]; /* rootfs: /etc/ota-release of rootA/rootB ("" none) */
};

/* One agent pass: what the sim learnt. */
struct otasim_pass {
    int status;       /* exit code, or 128 + signal */
    int crashed;      /* journal has a CRASH record (trigger fired) */
    int power;        /* the crash was a power cut (whole group) */
    int reboot_asked; /* the agent ran its reboot_cmd */
    int quiet;        /* only CHECKING/IDLE transitions */
    int ended_cycle;  /* a final (success/failure) state line */
    uint64_t calls;   /* mutating calls journaled */
    int failed_calls; /* calls the interposer failed by injection (FAIL records) */
    char journal[PATH_MAX + 32];
};

/* Armed fault for a pass (what the agent's environment gets). */
struct otasim_arm {
    const struct otasim_fault *fault;
    uint64_t point; /* POINT triggers: the number within this pass */
};

int otasim_device_create(struct otasim_device *d, const struct otasim_tools *t,
                         struct otasim_trial *tr, struct ota_err *err) OTA_MUST;
/* Boot: bootloader model (rootfs), process group, the app. */
int otasim_device_boot(struct otasim_device *d, struct ota_err *err) OTA_MUST;
/* Kills every process of the device (a power cut or the end of a trial). */
void otasim_device_kill(struct otasim_device *d);
/* Runs `ota-agent update` once; arm may be NULL. pass_no names the journal. */
int otasim_device_pass(struct otasim_device *d, int pass_no, const struct otasim_arm *arm,
                       struct otasim_pass *ret, struct ota_err *err) OTA_MUST;
/* `ota-agent status --json`, malloc'ed. */
int otasim_device_status(struct otasim_device *d, char **ret, struct ota_err *err) OTA_MUST;
/* GET http://127.0.0.1:app_port/PATH; *ret malloc'ed body, *ret_status. */
int otasim_device_app_get(struct otasim_device *d, const char *path, long *ret_status, char **ret,
                          struct ota_err *err) OTA_MUST;
void otasim_device_destroy(struct otasim_device *d);

#ifdef __cplusplus
}
#endif
#endif
