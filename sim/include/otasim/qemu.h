/* The QEMU machine of the QEMU tier: an SD image from images/build-image,
 * booted through a qcow2 overlay per trial (the image stays clean) as a
 * Raspberry Pi 3B (real U-Boot + boot.scr) or a `virt` board (U-Boot +
 * boot.scr for a rootfs device, a direct kernel boot for an app one), the console read line by line
 * from its log, the power cut by SIGKILL, and the overlay's partitions read and written from the
 * host (qemu-img, qemu-io) while the machine is off.
 *
 * The only network: user mode with restrict=on, guest 10.0.2.100:80 ->
 * host 127.0.0.1:server_port (guestfwd, one socat per connection), and
 * host 127.0.0.1:app_port -> the guest's app on :8081 (hostfwd), which the
 * checker asks for /health and /version before it cuts the power. */
#ifndef OTASIM_QEMU_H
#define OTASIM_QEMU_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otasim_qemu_profile { OTASIM_QEMU_RASPI3B, OTASIM_QEMU_VIRT, OTASIM_QEMU_PROFILE_MAX };
extern const char *const otasim_qemu_profile_names[OTASIM_QEMU_PROFILE_MAX];
int otasim_qemu_profile_parse(const char *s, enum otasim_qemu_profile *ret);

/* The partitions of the SD image (MBR p1..p4). */
enum otasim_qemu_part {
    OTASIM_QPART_BOOT,
    OTASIM_QPART_ROOTA,
    OTASIM_QPART_ROOTB,
    OTASIM_QPART_DATA,
    OTASIM_QPART_MAX
};

struct otasim_qemu_image {
    char dir[PATH_MAX]; /* build-image output: sd.img, u-boot.bin, Image.gz, ... */
    char sd[PATH_MAX + 16];
    uint64_t off[OTASIM_QPART_MAX], len[OTASIM_QPART_MAX]; /* bytes */
};

/* Reads DIR/sd.img's partition table; checks the boot files are there. */
int otasim_qemu_image_open(const char *dir, struct otasim_qemu_image *ret,
                           struct ota_err *err) OTA_MUST;
/* The partition table (MBR) of a raw disk into im's off/len (nothing else). */
int otasim_qemu_disk_open(const char *raw, struct otasim_qemu_image *im,
                          struct ota_err *err) OTA_MUST;

struct otasim_qemu {
    enum otasim_qemu_profile profile;
    const struct otasim_qemu_image *img;
    char dir[PATH_MAX];          /* the trial's: disk.qcow2, console-N.log, qmp.sock */
    char overlay[PATH_MAX + 16]; /* dir/disk.qcow2 */
    char log[PATH_MAX + 32];     /* console of the current start */
    int server_port, app_port;
    pid_t pid; /* QEMU (leader of its own process group), 0 when off */
    int starts;
    int log_fd;
    char buf[16384]; /* console bytes not yet returned as a line */
    size_t blen;
    int64_t started_ms; /* monotonic, of the current start */
    /* Block-level recording (otasim_qemu_record_begin): the raw disk QEMU
     * runs on and the dm-log-writes log its blklogwrites node appends to. */
    char rec_disk[PATH_MAX + 16], rec_log[PATH_MAX + 16];
    /* The env is the disk's own (a crash state booted as found): start does
     * not write ota_extra_args into it. */
    int keep_env;
    /* virt boots through U-Boot (u-boot-virt.bin as -bios, boot.scr's A/B
     * choice) instead of the kernel directly: set for a rootfs device
     * before the first start. raspi3b always boots through U-Boot. */
    int uboot;
    /* virt's vCPUs (-smp; 0: 2). raspi3b's machine has its four cores. */
    int cpus;
    /* otasim_qemu_disk_snapshot: the layer QEMU writes now ("": overlay) */
    char top[PATH_MAX + 16];
    int n_snaps;
};

/* Makes dir and a fresh overlay over the image, or (backing non-NULL) over
 * a frozen disk of a snapshot recording (qcow2), or a crash state (a raw
 * disk: a name ending in .raw). */
int otasim_qemu_init(struct otasim_qemu *q, enum otasim_qemu_profile profile,
                     const struct otasim_qemu_image *img, const char *dir, const char *backing,
                     int server_port, struct ota_err *err) OTA_MUST;
/* Powers the machine on. kargs: more kernel arguments (may be NULL): under
 * U-Boot they go into the overlay's uboot.env as ota_extra_args (boot.scr
 * appends them), on virt's direct boot onto -append (slot a). */
int otasim_qemu_start(struct otasim_qemu *q, const char *kargs, struct ota_err *err) OTA_MUST;
/* Block-level recording (docs/blocks.md): after init (and provisioning),
 * writes kargs into the env as start would (raspi3b), then makes the
 * overlay's disk a raw file, base (the starting disk of the replay), and a
 * copy of it that the next starts run on through a blklogwrites node
 * appending every request to log (made empty; one super block update per
 * entry, so a kill leaves a whole log). raspi3b's SD drive is in writeback
 * mode there: its log holds only the flushes QEMU adds on close, none of the
 * guest's (an SD card has no flush). Sets keep_env. */
int otasim_qemu_record_begin(struct otasim_qemu *q, const char *kargs, const char *base,
                             const char *log, struct ota_err *err) OTA_MUST;
/* The log's entry count now (its super block; 0 before the first entry). */
uint64_t otasim_qemu_record_entries(const struct otasim_qemu *q);

/* The next console line (no CR/LF; cut to cap) within timeout_ms:
 * 1 a line, 0 timed out, -ECHILD the machine is off (QEMU exited). */
int otasim_qemu_line(struct otasim_qemu *q, int timeout_ms, char *line, size_t cap);
/* The power cut: SIGKILL to QEMU and its relays; RAM and page cache are
 * lost, every write the guest already sent to the disk stays. */
void otasim_qemu_kill(struct otasim_qemu *q);
/* Copies partition p of the overlay to file out (raw), or back. Off only. */
int otasim_qemu_part_read(struct otasim_qemu *q, enum otasim_qemu_part p, const char *out,
                          struct ota_err *err) OTA_MUST;
int otasim_qemu_part_write(struct otasim_qemu *q, enum otasim_qemu_part p, const char *in,
                           struct ota_err *err) OTA_MUST;
/* Copies uboot.env out of the overlay's boot partition into env_file and
 * writes env_config (fw_env.config) naming it. Off only. */
int otasim_qemu_env_fetch(struct otasim_qemu *q, const char *env_file, const char *env_config,
                          struct ota_err *err) OTA_MUST;
/* Sets one variable of the overlay's uboot.env (under U-Boot). Off only. */
int otasim_qemu_env_set(struct otasim_qemu *q, const char *name, const char *value,
                        struct ota_err *err) OTA_MUST;
/* QMP: pause and resume the machine's CPUs; freeze the disk as it is
 * (qemu-img create, QMP blockdev-add and blockdev-snapshot: the file written
 * so far becomes read-only, QEMU goes on writing into the new overlay `file`
 * over it, with the same host-file options as the first). The frozen file plus
 * its backing chain is the disk a power cut at that moment would leave:
 * every write the guest sent, nothing of its RAM. */
int otasim_qemu_pause(struct otasim_qemu *q, struct ota_err *err) OTA_MUST;
int otasim_qemu_resume(struct otasim_qemu *q, struct ota_err *err) OTA_MUST;
/* QMP system_reset: the board's reset line (what a watchdog that fires does;
 * on raspi3b QEMU starts U-Boot again), the power and the disk untouched. */
int otasim_qemu_reset(struct otasim_qemu *q, struct ota_err *err) OTA_MUST;
int otasim_qemu_disk_snapshot(struct otasim_qemu *q, const char *file,
                              struct ota_err *err) OTA_MUST;
/* Kills QEMU if on; the files stay. */
void otasim_qemu_close(struct otasim_qemu *q);

#ifdef __cplusplus
}
#endif
#endif
