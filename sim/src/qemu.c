/* The QEMU machine (see qemu.h). QEMU itself is the one wrapped here:
 * qemu-system-aarch64 for the machine, qemu-img/qemu-io for the overlay,
 * mtools for the FAT boot partition; QMP over a unix socket.
 *
 * The console goes to a file per start (a mux chardev: on raspi3b U-Boot
 * prints on the mini UART and the kernel on the PL011, one stream in
 * order), which this file reads as it grows. The overlay is only touched
 * from the host while QEMU is off (QEMU holds its lock while on). */
#include "otasim/qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/bootloader.h"
#include "otasim/proc.h"

#define TOOL_TIMEOUT_MS 120000
#define QMP_TIMEOUT_MS  60000

const char *const otasim_qemu_profile_names[OTASIM_QEMU_PROFILE_MAX] = {"raspi3b", "virt"};

int otasim_qemu_profile_parse(const char *s, enum otasim_qemu_profile *ret)
{
    for (int i = 0; i < OTASIM_QEMU_PROFILE_MAX; i++)
        if (strcmp(s, otasim_qemu_profile_names[i]) == 0) {
            *ret = (enum otasim_qemu_profile)i;
            return 0;
        }
    return -EINVAL;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int otasim_qemu_disk_open(const char *raw, struct otasim_qemu_image *im, struct ota_err *err)
{
    uint8_t mbr[512];
    int fd;
    ssize_t n;

    fd = open(raw, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ota_err_set(err, errno, "%s: %s (run `make image`)", raw, strerror(errno));
    n = pread(fd, mbr, sizeof(mbr), 0);
    close(fd);
    if (n != (ssize_t)sizeof(mbr) || mbr[510] != 0x55 || mbr[511] != 0xaa)
        return ota_err_set(err, EINVAL, "%s: no MBR partition table", raw);
    for (int i = 0; i < OTASIM_QPART_MAX; i++) {
        const uint8_t *e = mbr + 446 + 16 * i;
        im->off[i] = (uint64_t)le32(e + 8) * 512;
        im->len[i] = (uint64_t)le32(e + 12) * 512;
        if (!e[4] || !im->len[i])
            return ota_err_set(err, EINVAL, "%s: partition %d missing (boot, rootA, rootB, data)",
                               raw, i + 1);
    }
    return 0;
}

int otasim_qemu_image_open(const char *dir, struct otasim_qemu_image *ret, struct ota_err *err)
{
    static const char *const files[] = {"u-boot.bin", "bcm2837-rpi-3-b.dtb", "Image.gz",
                                        "initrd.img"};
    struct otasim_qemu_image im;
    char p[PATH_MAX + 32];
    int r;

    memset(&im, 0, sizeof(im));
    if (!realpath(dir, im.dir))
        return ota_err_set(err, errno, "QEMU image dir %s: %s (run `make image`)", dir,
                           strerror(errno));
    snprintf(im.sd, sizeof(im.sd), "%s/sd.img", im.dir);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", im.dir, files[i]);
        if (access(p, R_OK) < 0)
            return ota_err_set(err, ENOENT, "QEMU image dir %s has no %s (run `make image`)",
                               im.dir, files[i]);
    }
    if ((r = otasim_qemu_disk_open(im.sd, &im, err)) < 0)
        return r;
    *ret = im;
    return 0;
}

static int free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    if (fd < 0)
        return -1;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Runs a tool to completion; its stderr goes to dir/tools.log. */
static int tool(struct otasim_qemu *q, const char *const *argv, struct ota_err *err)
{
    char log[PATH_MAX + 32];
    int st = 0;
    int r;

    snprintf(log, sizeof(log), "%s/tools.log", q->dir);
    if ((r = otasim_run(argv, NULL, TOOL_TIMEOUT_MS, NULL, log, &st, err)) < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "%s %s failed (exit %d; see %s)", argv[0], argv[1], st, log);
    return 0;
}

int otasim_qemu_init(struct otasim_qemu *q, enum otasim_qemu_profile profile,
                     const struct otasim_qemu_image *img, const char *dir, const char *backing,
                     int server_port, struct ota_err *err)
{
    int r;

    memset(q, 0, sizeof(*q));
    q->profile = profile;
    q->img = img;
    q->server_port = server_port;
    q->log_fd = -1;
    ota_strlcpy(q->dir, dir, sizeof(q->dir));
    if ((r = ota_fs_mkdirs(dir, err)) < 0)
        return r;
    snprintf(q->overlay, sizeof(q->overlay), "%s/disk.qcow2", dir);
    unlink(q->overlay);
    size_t bl = backing ? strlen(backing) : 0;
    int raw = !backing || (bl > 4 && strcmp(backing + bl - 4, ".raw") == 0);
    const char *argv[] = {"qemu-img",
                          "create",
                          "-q",
                          "-f",
                          "qcow2",
                          "-b",
                          backing ? backing : img->sd,
                          "-F",
                          raw ? "raw" : "qcow2",
                          q->overlay,
                          NULL};
    if ((r = tool(q, argv, err)) < 0)
        return r;
    q->app_port = free_port();
    if (q->app_port <= 0)
        return ota_err_set(err, EADDRNOTAVAIL, "no free port for the app forward");
    return 0;
}

/* U-Boot boots the machine (raspi3b; virt for a rootfs device). */
static int boots_uboot(const struct otasim_qemu *q)
{
    return q->profile == OTASIM_QEMU_RASPI3B || q->uboot;
}

/* The kernel arguments for U-Boot's env: kargs, and on virt the slots' devices
 * (the image's /etc/ota-agent.conf names the Pi's, /dev/mmcblk0p2|3). */
static const char *env_kargs(const struct otasim_qemu *q, const char *kargs, char *buf, size_t cap)
{
    if (q->profile != OTASIM_QEMU_VIRT)
        return kargs;
    snprintf(buf, cap, "%s%sota.conf=rootfs.device_a=/dev/vda2 ota.conf=rootfs.device_b=/dev/vda3",
             kargs ? kargs : "", kargs && *kargs ? " " : "");
    return buf;
}

/* A guest's flush still makes QEMU write its qcow2 metadata out to the host
 * file (the format layer flushes); only the host file's fdatasync is skipped.
 * A power cut is a kill of QEMU, and the host's page cache keeps every write
 * QEMU made, so the disk the next boot finds is the same; the fdatasync only
 * guarded against the host losing power, and cost a trial on a host disk about
 * a second (4 snapshot trials at -j2 took 14.2 s in /tmp, 12.9 s in /dev/shm). */
#define NOFSYNC ",file.cache.no-flush=on"

int otasim_qemu_start(struct otasim_qemu *q, const char *kargs, struct ota_err *err)
{
    char ka[4096];
    char drive[3 * PATH_MAX + 300], chardev[PATH_MAX + 64], net[256], qmp[PATH_MAX + 48], smp[16];
    char out[PATH_MAX + 32], f[5][PATH_MAX + 32], append[1024], rec[2 * PATH_MAX + 200];
    const char *argv[48];
    size_t k = 0;
    int fd;
    int r;

    if (q->pid > 0)
        return ota_err_set(err, EBUSY, "QEMU is already on");
    if (boots_uboot(q) && !q->keep_env &&
        (r = otasim_qemu_env_set(q, "ota_extra_args", env_kargs(q, kargs, ka, sizeof(ka)), err)) <
            0)
        return r;
    q->starts++;
    snprintf(q->log, sizeof(q->log), "%s/console-%d.log", q->dir, q->starts);
    snprintf(out, sizeof(out), "%s/qemu-%d.out", q->dir, q->starts);
    fd = open(q->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ota_err_set(err, errno, "%s: %s", q->log, strerror(errno));
    close(fd);
    if (q->log_fd >= 0)
        close(q->log_fd);
    q->log_fd = open(q->log, O_RDONLY | O_CLOEXEC);
    q->blen = 0;
    if (q->log_fd < 0)
        return ota_err_set(err, errno, "%s: %s", q->log, strerror(errno));
    snprintf(chardev, sizeof(chardev), "file,id=con,path=%s,mux=on", q->log);
    /* blklogwrites over the raw disk; the log's super block counts every
     * entry and the log file is not fsynced per entry (the host keeps power) */
    snprintf(rec, sizeof(rec),
             "driver=blklogwrites,file.driver=file,file.filename=%s,log.driver=file,"
             "log.filename=%s,log-super-update-interval=1,log.cache.no-flush=on",
             q->rec_disk, q->rec_log);
    snprintf(net, sizeof(net),
             "user,id=n0,restrict=on,"
             "guestfwd=tcp:10.0.2.100:80-cmd:socat STDIO TCP:127.0.0.1:%d,"
             "hostfwd=tcp:127.0.0.1:%d-:8081",
             q->server_port, q->app_port);
    snprintf(qmp, sizeof(qmp), "unix:%s/qmp.sock,server=on,wait=off", q->dir);
    for (int i = 0; i < 5; i++)
        snprintf(f[i], sizeof(f[i]), "%s/%s", q->img->dir,
                 (const char *[]){"u-boot.bin", "bcm2837-rpi-3-b.dtb", "Image.gz", "initrd.img",
                                  "u-boot-virt.bin"}[i]);
    if (q->profile == OTASIM_QEMU_VIRT && q->uboot && access(f[4], R_OK) < 0)
        return ota_err_set(err, errno,
                           "%s: %s (an image from before virt's U-Boot: run `make image`)", f[4],
                           strerror(errno));
    argv[k++] = "qemu-system-aarch64";
    argv[k++] = "-display";
    argv[k++] = "none";
    argv[k++] = "-monitor";
    argv[k++] = "none";
    argv[k++] = "-nodefaults";
    argv[k++] = "-chardev";
    argv[k++] = chardev;
    argv[k++] = "-qmp";
    argv[k++] = qmp;
    argv[k++] = "-netdev";
    argv[k++] = net;
    argv[k++] = "-m";
    argv[k++] = "1G";
    if (q->profile == OTASIM_QEMU_RASPI3B) {
        /* writethrough: an SD card has no flush command, so the guest never
         * asks QEMU to write out the qcow2 metadata it caches; after a kill
         * the clusters written since would be lost (ext4 then finds bitmaps
         * that do not match). Each write is durable in the overlay when the
         * guest sees it complete, as on the card. The host file's fdatasync
         * is skipped (NOFSYNC): see virt's drive. */
        if (q->rec_disk[0])
            snprintf(drive, sizeof(drive), "if=sd,cache=writeback,%s", rec);
        else
            snprintf(drive, sizeof(drive), "if=sd,format=qcow2,cache=writethrough,file=%s" NOFSYNC,
                     q->overlay);
        argv[k++] = "-M";
        argv[k++] = "raspi3b";
        argv[k++] = "-kernel";
        argv[k++] = f[0];
        argv[k++] = "-dtb";
        argv[k++] = f[1];
        argv[k++] = "-drive";
        argv[k++] = drive;
        argv[k++] = "-serial";
        argv[k++] = "chardev:con";
        argv[k++] = "-serial";
        argv[k++] = "chardev:con";
        argv[k++] = "-device";
        argv[k++] = "usb-net,netdev=n0";
    } else {
        if (q->rec_disk[0])
            snprintf(drive, sizeof(drive), "if=none,id=d0,cache=writeback,%s", rec);
        else
            snprintf(drive, sizeof(drive), "if=none,id=d0,format=qcow2,file=%s" NOFSYNC,
                     q->overlay);
        snprintf(append, sizeof(append),
                 "console=ttyAMA0 root=/dev/vda2 rootwait panic=1 ota.slot=a "
                 "cryptomgr.notests rodata=on %s", /* QEMU speed-ups: images/boot.cmd */
                 kargs ? kargs : "");
        argv[k++] = "-M";
        argv[k++] = "virt";
        argv[k++] = "-cpu";
        argv[k++] = "cortex-a53";
        snprintf(smp, sizeof(smp), "%d", q->cpus > 0 ? q->cpus : 2);
        argv[k++] = "-smp";
        argv[k++] = smp;
        if (q->uboot) { /* QEMU's DTB reaches U-Boot, which hands it to the kernel */
            argv[k++] = "-bios";
            argv[k++] = f[4];
        } else {
            argv[k++] = "-kernel";
            argv[k++] = f[2];
            argv[k++] = "-initrd";
            argv[k++] = f[3];
            argv[k++] = "-append";
            argv[k++] = append;
        }
        argv[k++] = "-drive";
        argv[k++] = drive;
        argv[k++] = "-device";
        argv[k++] = "virtio-blk-device,drive=d0";
        argv[k++] = "-serial";
        argv[k++] = "chardev:con";
        argv[k++] = "-device";
        argv[k++] = "virtio-net-device,netdev=n0";
    }
    argv[k] = NULL;
    if ((r = otasim_spawn(argv, NULL, 0, out, out, NULL, &q->pid, err)) < 0) {
        q->pid = 0;
        return r;
    }
    q->started_ms = otasim_now_ms();
    return 0;
}

/* One line out of q->buf if it holds a newline. */
static int take_line(struct otasim_qemu *q, char *line, size_t cap, int force)
{
    char *nl = memchr(q->buf, '\n', q->blen);
    size_t n, out = 0;

    if (!nl && !(force && q->blen))
        return 0;
    n = nl ? (size_t)(nl - q->buf) : q->blen;
    for (size_t i = 0; i < n && out + 1 < cap; i++)
        if (q->buf[i] != '\r' && q->buf[i] != '\0')
            line[out++] = q->buf[i];
    line[out] = '\0';
    if (nl)
        n++;
    memmove(q->buf, q->buf + n, q->blen - n);
    q->blen -= n;
    return 1;
}

int otasim_qemu_line(struct otasim_qemu *q, int timeout_ms, char *line, size_t cap)
{
    int64_t end = otasim_now_ms() + timeout_ms;

    for (;;) {
        ssize_t n;
        if (take_line(q, line, cap, 0))
            return 1;
        if (q->blen == sizeof(q->buf)) /* a line longer than the buffer: cut it */
            return take_line(q, line, cap, 1);
        n = q->log_fd >= 0 ? read(q->log_fd, q->buf + q->blen, sizeof(q->buf) - q->blen) : 0;
        if (n > 0) {
            q->blen += (size_t)n;
            continue;
        }
        if (q->pid > 0) {
            int st;
            if (waitpid(q->pid, &st, WNOHANG) == q->pid) {
                kill(-q->pid, SIGKILL);
                q->pid = 0;
            }
        }
        if (q->pid <= 0) {
            /* the rest of the log, then the end */
            n = q->log_fd >= 0 ? read(q->log_fd, q->buf + q->blen, sizeof(q->buf) - q->blen) : 0;
            if (n > 0) {
                q->blen += (size_t)n;
                continue;
            }
            return take_line(q, line, cap, 1) ? 1 : -ECHILD;
        }
        if (otasim_now_ms() >= end)
            return 0;
        usleep(20000);
    }
}

void otasim_qemu_kill(struct otasim_qemu *q)
{
    if (q->pid > 0) {
        kill(-q->pid, SIGKILL);
        kill(q->pid, SIGKILL);
        int st;
        ota_ignore(otasim_wait(q->pid, 10000, &st));
        q->pid = 0;
    }
}

static int image_opts(struct otasim_qemu *q, enum otasim_qemu_part p, char *buf, size_t cap)
{
    return snprintf(
        buf, cap, "driver=raw,offset=%llu,size=%llu,file.driver=qcow2,file.file.filename=%s",
        (unsigned long long)q->img->off[p], (unsigned long long)q->img->len[p], q->overlay);
}

int otasim_qemu_part_read(struct otasim_qemu *q, enum otasim_qemu_part p, const char *out,
                          struct ota_err *err)
{
    char opts[PATH_MAX + 160];

    if (q->pid > 0)
        return ota_err_set(err, EBUSY, "QEMU is on: its disk cannot be read");
    image_opts(q, p, opts, sizeof(opts));
    unlink(out);
    const char *argv[] = {"qemu-img", "convert", "-O", "raw", "--image-opts", opts, out, NULL};
    return tool(q, argv, err);
}

int otasim_qemu_part_write(struct otasim_qemu *q, enum otasim_qemu_part p, const char *in,
                           struct ota_err *err)
{
    char cmd[PATH_MAX + 96];
    struct stat st;

    if (q->pid > 0)
        return ota_err_set(err, EBUSY, "QEMU is on: its disk cannot be written");
    if (stat(in, &st) < 0)
        return ota_err_set(err, errno, "%s: %s", in, strerror(errno));
    if ((uint64_t)st.st_size != q->img->len[p])
        return ota_err_set(err, EINVAL, "%s: %lld bytes, partition %d has %llu", in,
                           (long long)st.st_size, (int)p + 1, (unsigned long long)q->img->len[p]);
    if (strpbrk(in, " \t\"'"))
        return ota_err_set(err, EINVAL, "%s: qemu-io cannot take this path", in);
    snprintf(cmd, sizeof(cmd), "write -s %s %llu %llu", in, (unsigned long long)q->img->off[p],
             (unsigned long long)q->img->len[p]);
    const char *argv[] = {"qemu-io", "-f", "qcow2", "-c", cmd, q->overlay, NULL};
    return tool(q, argv, err);
}

/* The redundant env's second file beside env_file ("" when env_file has no
 * directory part it can go in). */
static void redund_path(const char *env_file, char *buf, size_t cap)
{
    const char *sl = strrchr(env_file, '/');
    int n = sl ? (int)(sl - env_file) : 0;

    snprintf(buf, cap, "%.*s%s" OTASIM_ENV_REDUND_FILE, n, env_file, sl ? "/" : "");
}

/* uboot.env out of the boot partition (copied to boot, a FAT image), and
 * uboot-redund.env beside it when the FAT has it (a redundant env: the
 * config names both, libubootenv reads the current copy as U-Boot does).
 * *ret_redund (may be NULL) says which. */
static int fetch_env(struct otasim_qemu *q, const char *boot, const char *env_file,
                     const char *env_config, int *ret_redund, struct ota_err *err)
{
    char rb[PATH_MAX + 32], log[PATH_MAX + 32];
    int r, st = 0, redund_unused;

    if (!ret_redund)
        ret_redund = &redund_unused;
    *ret_redund = 0;
    if ((r = otasim_qemu_part_read(q, OTASIM_QPART_BOOT, boot, err)) < 0)
        return r;
    unlink(env_file);
    redund_path(env_file, rb, sizeof(rb));
    unlink(rb);
    const char *argv[] = {"mcopy", "-n", "-i", boot, "::uboot.env", env_file, NULL};
    if ((r = tool(q, argv, err)) < 0)
        return r;
    const char *rv[] = {"mcopy", "-n", "-i", boot, "::" OTASIM_ENV_REDUND_FILE, rb, NULL};
    snprintf(log, sizeof(log), "%s/tools.log", q->dir);
    if ((r = otasim_run(rv, NULL, TOOL_TIMEOUT_MS, NULL, log, &st, err)) < 0)
        return r;
    if (st != 0) /* a single env */
        return otasim_bootenv_config(env_file, env_config, err);
    *ret_redund = 1;
    return otasim_bootenv_config_redundant(env_file, rb, env_config, err);
}

int otasim_qemu_env_fetch(struct otasim_qemu *q, const char *env_file, const char *env_config,
                          struct ota_err *err)
{
    char boot[PATH_MAX + 32];
    int r;

    snprintf(boot, sizeof(boot), "%s/boot.vfat", q->dir);
    r = fetch_env(q, boot, env_file, env_config, NULL, err);
    unlink(boot);
    return r;
}

int otasim_qemu_env_set(struct otasim_qemu *q, const char *name, const char *value,
                        struct ota_err *err)
{
    char boot[PATH_MAX + 32], env[PATH_MAX + 32], cfg[PATH_MAX + 32], rb[PATH_MAX + 32];
    int r = -EIO, redund = 0;

    snprintf(boot, sizeof(boot), "%s/boot.vfat", q->dir);
    snprintf(env, sizeof(env), "%s/uboot.env", q->dir);
    snprintf(cfg, sizeof(cfg), "%s/fw_env.config", q->dir);
    redund_path(env, rb, sizeof(rb));
    if (fetch_env(q, boot, env, cfg, &redund, err) == 0 &&
        otasim_bootenv_set(cfg, name, value, err) == 0) {
        /* both copies back: libubootenv wrote the older one */
        const char *argv[] = {"mcopy", "-o", "-i", boot, env, "::uboot.env", NULL};
        const char *rv[] = {"mcopy", "-o", "-i", boot, rb, "::" OTASIM_ENV_REDUND_FILE, NULL};
        if (tool(q, argv, err) == 0 && (!redund || tool(q, rv, err) == 0))
            r = otasim_qemu_part_write(q, OTASIM_QPART_BOOT, boot, err);
    }
    unlink(boot);
    return r;
}

int otasim_qemu_record_begin(struct otasim_qemu *q, const char *kargs, const char *base,
                             const char *log, struct ota_err *err)
{
    char disk[PATH_MAX + 16], ka[4096];
    int fd, r;

    if (q->pid > 0)
        return ota_err_set(err, EBUSY, "QEMU is on: its disk cannot be recorded from here");
    if (strpbrk(base, ",") || strpbrk(log, ",") || strpbrk(q->dir, ","))
        return ota_err_set(err, EINVAL, "a recording path with a comma cannot be named to QEMU");
    if (boots_uboot(q) && (r = otasim_qemu_env_set(q, "ota_extra_args",
                                                   env_kargs(q, kargs, ka, sizeof(ka)), err)) < 0)
        return r;
    unlink(base);
    const char *conv[] = {"qemu-img", "convert", "-O", "raw", q->overlay, base, NULL};
    if ((r = tool(q, conv, err)) < 0)
        return r;
    snprintf(disk, sizeof(disk), "%s/recording.raw", q->dir);
    const char *cp[] = {"cp", "--sparse=always", base, disk, NULL};
    if ((r = tool(q, cp, err)) < 0)
        return r;
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644); /* blklogwrites needs it */
    if (fd < 0)
        return ota_err_set(err, errno, "%s: %s", log, strerror(errno));
    close(fd);
    ota_strlcpy(q->rec_disk, disk, sizeof(q->rec_disk));
    ota_strlcpy(q->rec_log, log, sizeof(q->rec_log));
    q->keep_env = 1;
    return 0;
}

uint64_t otasim_qemu_record_entries(const struct otasim_qemu *q)
{
    uint8_t sb[24];
    uint64_t n = 0;
    int fd = q->rec_log[0] ? open(q->rec_log, O_RDONLY | O_CLOEXEC) : -1;

    if (fd < 0)
        return 0;
    if (pread(fd, sb, sizeof(sb), 0) == (ssize_t)sizeof(sb))
        for (int i = 7; i >= 0; i--)
            n = n << 8 | sb[16 + i];
    close(fd);
    return n;
}

/* ---- QMP ------------------------------------------------------------------ */

/* Reads one JSON line (QMP ends each with CRLF) within the deadline. */
static int qmp_read(int fd, char *buf, size_t cap, int64_t end)
{
    size_t n = 0;

    while (n + 1 < cap) {
        struct timeval tv;
        int64_t left = end - otasim_now_ms();
        ssize_t r;
        if (left <= 0)
            return -ETIMEDOUT;
        tv.tv_sec = left / 1000;
        tv.tv_usec = (left % 1000) * 1000;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        r = read(fd, buf + n, 1);
        if (r <= 0)
            return r == 0 ? -ECONNRESET : -errno;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    return 0;
}

/* One QMP command (a JSON object text); fails with QEMU's answer unless it
 * is a "return". The socket is opened per command: QMP greets, takes
 * qmp_capabilities, then the command. */
static int qmp(struct otasim_qemu *q, const char *cmd, struct ota_err *err)
{
    struct sockaddr_un a = {0};
    char line[4096];
    const char *caps = "{\"execute\":\"qmp_capabilities\"}\n";
    int64_t end = otasim_now_ms() + QMP_TIMEOUT_MS;
    int fd, r = 0, stage = 0;

    if (q->pid <= 0)
        return ota_err_set(err, ESRCH, "QEMU is off");
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/qmp.sock", q->dir);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ota_err_set(err, errno, "socket: %s", strerror(errno));
    while (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        if (otasim_now_ms() > end) {
            r = ota_err_set(err, errno, "QMP %s: %s", a.sun_path, strerror(errno));
            goto out;
        }
        usleep(20000);
    }
    while (stage < 3) {
        if (qmp_read(fd, line, sizeof(line), end) < 0) {
            r = ota_err_set(err, EIO, "QMP: no answer to %s", cmd);
            goto out;
        }
        if (strstr(line, "\"event\""))
            continue;
        if (stage > 0 && !strstr(line, "\"return\"")) {
            r = ota_err_set(err, EIO, "QMP %s: %s", cmd, line);
            goto out;
        }
        if (stage < 2) {
            const char *msg = stage == 0 ? caps : cmd;
            if (write(fd, msg, strlen(msg)) < 0 || (stage == 1 && write(fd, "\n", 1) < 0)) {
                r = ota_err_set(err, errno, "QMP: %s", strerror(errno));
                goto out;
            }
        }
        stage++;
    }
out:
    close(fd);
    return r;
}

int otasim_qemu_pause(struct otasim_qemu *q, struct ota_err *err)
{
    return qmp(q, "{\"execute\":\"stop\"}", err);
}

int otasim_qemu_resume(struct otasim_qemu *q, struct ota_err *err)
{
    return qmp(q, "{\"execute\":\"cont\"}", err);
}

int otasim_qemu_reset(struct otasim_qemu *q, struct ota_err *err)
{
    return qmp(q, "{\"execute\":\"system_reset\"}", err);
}

int otasim_qemu_disk_snapshot(struct otasim_qemu *q, const char *file, struct ota_err *err)
{
    char cmd[2 * PATH_MAX + 256], size[32], node[32];
    const char *top = q->top[0] ? q->top : q->overlay;
    struct stat st;
    int r;

    if (strpbrk(file, "\"\\"))
        return ota_err_set(err, EINVAL, "%s: cannot be named in QMP", file);
    if (stat(q->img->sd, &st) < 0)
        return ota_err_set(err, errno, "%s: %s", q->img->sd, strerror(errno));
    /* the new layer over the top one (-u: QEMU holds the top one's lock) */
    snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
    const char *create[] = {"qemu-img", "create", "-q",    "-f", "qcow2", "-u", "-b",
                            top,        "-F",     "qcow2", file, size,    NULL};
    if ((r = tool(q, create, err)) < 0)
        return r;
    /* added as blockdev-snapshot-sync would, with the overlay's host-file
     * options (NOFSYNC), then made the device's top */
    snprintf(node, sizeof(node), "snap%d", ++q->n_snaps);
    snprintf(cmd, sizeof(cmd),
             "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"qcow2\",\"node-name\":"
             "\"%s\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"%s\","
             "\"cache\":{\"no-flush\":true}}}}",
             node, file);
    if ((r = qmp(q, cmd, err)) < 0)
        return r;
    snprintf(cmd, sizeof(cmd),
             "{\"execute\":\"blockdev-snapshot\",\"arguments\":{\"node\":\"%s\","
             "\"overlay\":\"%s\"}}",
             q->profile == OTASIM_QEMU_RASPI3B ? "sd0" : "d0", node);
    if ((r = qmp(q, cmd, err)) < 0)
        return r;
    ota_strlcpy(q->top, file, sizeof(q->top));
    return 0;
}

void otasim_qemu_close(struct otasim_qemu *q)
{
    if (!q)
        return;
    otasim_qemu_kill(q);
    if (q->log_fd >= 0)
        close(q->log_fd);
    q->log_fd = -1;
}
