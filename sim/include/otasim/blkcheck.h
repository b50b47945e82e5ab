/* Block-level crash states, checked without booting (issue 16,
 * docs/blocks.md "Checking a state"). A checker holds one file per partition
 * of the device's disk (the boot FAT, rootA, rootB, data); for each crash
 * state it brings the partitions that changed since the last state up to
 * date from the replayer's working copy (only the changed 64 KiB chunks),
 * reads them as the device's next power-on would find them (e2fsck's
 * journal replay, then `e2fsck -fn`, debugfs, mtools, the env through
 * libubootenv) and runs the crash-state invariants on what it read:
 *
 *   fs-consistent          every ext4 partition the device mounts at its next
 *                          boot (rootA, data; the slot the env boots) replays
 *                          its journal and then passes `e2fsck -fn`; one the
 *                          kernel would refuse to mount (a torn super block)
 *                          is first repaired as the boot does it (e2fsck -y
 *                          in images/initramfs/init), and the state says so
 *   bootenv-readable       the env reads (CRC) and names slot A or B
 *   one-active-slot        app: `current` is a symlink to a or b
 *   active-slot-complete   app: the slot `current` names holds a whole
 *                          release (tree digest of one of the scenario's);
 *                          rootfs: the slot the env boots next holds a release
 *                          (its /etc/ota-release names one)
 *   lkg-untouched          the factory slot still holds the factory release
 *   db-integrity           PRAGMA integrity_check of the agent's database
 *                          (a copy: its WAL or hot journal applied there)
 *
 * and predicts what the power-on will do: the slot it boots, the version it
 * runs first and the state the agent resumes from (the journal row of its
 * database; IDLE when there is none). A booted sample proves the prediction
 * (qblocks.c).
 *
 * A partition whose bytes did not change since the previous state is not
 * read again: its reading is the same. A state whose disk did not change at
 * all, or whose reading (the key: a hash of everything read) equals the
 * previous state's, shares that state's result and is counted apart: a
 * state read counts as checked (the readers are the check's work), the
 * invariants run only on a new reading. */
#ifndef OTASIM_BLKCHECK_H
#define OTASIM_BLKCHECK_H

#include <stdint.h>

#include "otasim/blklog.h"
#include "otasim/qemu.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_blkcheck_part {
    uint64_t off, len;
    char path[PATH_MAX + 32];
    char undo[PATH_MAX + 32]; /* e2fsck's undo file of the last journal replay ("" none) */
    int fd;
    uint64_t synced; /* the replayer's seq when this file was last brought up to date */
    int read;        /* read at least once */
    int whole;       /* changed by a repair that cannot be undone: copy it whole next time */
    /* the last reading */
    int fs_ok; /* ext4: replayed and e2fsck -fn clean */
    char fs_why[200];
    int repaired; /* the kernel would refuse it: the boot's e2fsck -y repaired it first */
    char repair_why[200];
    uint64_t key; /* hash of what was read */
};

struct otasim_blkcheck_stats {
    uint64_t states;       /* states given to otasim_blkcheck_state */
    uint64_t checked;      /* read: the readers ran on at least one changed partition */
    uint64_t evaluated;    /* of them, the invariants ran (the reading was new) */
    uint64_t same_disk;    /* shared, nothing read: no partition the device uses changed */
    uint64_t same_reading; /* shared: read, and the reading equals the previous state's */
    uint64_t part_reads;   /* partition readings done */
    uint64_t part_reused;  /* partition readings kept (the partition did not change) */
    uint64_t failed;       /* checked states with an invariant failed */
};

struct otasim_blkcheck {
    const struct otasim_trial *tr; /* the scenario, its built releases */
    int rootfs;
    char dir[PATH_MAX];  /* scratch: partition files, the tree read */
    char tree[PATH_MAX]; /* what was read, laid out like the device's tree */
    char log[PATH_MAX + 32];
    struct otasim_blkcheck_part part[OTASIM_QPART_MAX];
    int have_prev;
    uint64_t prev_seq, prev_key;
    int next_slot;  /* the root slot the env read last boots next (0 A, 1 B) */
    int env_copies; /* the boot env read last: 1 (uboot.env) or 2 (redundant) */
    int env_bad;    /* of them, the copies with a bad CRC (bit 0 uboot.env, bit 1 the other) */
    struct otasim_blkcheck_stats st;
};

/* The result of one state. */
struct otasim_blkstate {
    uint64_t point, pos; /* the crash point and its log position */
    int shared;          /* 0 checked; 1 same disk; 2 same reading */
    enum otasim_outcome outcome;
    struct otasim_check checks[12];
    size_t n_checks;
    char detail[512]; /* the first failed check, or the prediction */
    /* the prediction: what the next power-on does */
    int slot;         /* 0 A, 1 B: the root slot booted (app: always A) */
    char version[32]; /* the version that runs first ("" nothing runs) */
    char state[24];   /* the agent's state at power-on (IDLE: no journal row) */
    char app_slot[4]; /* app: `current`'s target */
    int repaired;     /* the boot repairs a file system first (e2fsck -y in the initramfs) */
    uint64_t key;     /* hash of the reading and the prediction */
};

/* im: the disk's partition table; dir: scratch (created; /dev/shm is best). */
int otasim_blkcheck_init(struct otasim_blkcheck *ck, const struct otasim_trial *tr,
                         const struct otasim_qemu_image *im, const char *dir,
                         struct ota_err *err) OTA_MUST;
void otasim_blkcheck_free(struct otasim_blkcheck *ck);

/* Checks the replayer's current state (r->applied entries applied, any extra
 * writes on top). -errno only when the harness failed. */
int otasim_blkcheck_state(struct otasim_blkcheck *ck, struct otasim_blkreplay *r,
                          struct otasim_blkstate *ret, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
