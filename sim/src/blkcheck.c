/* Block-level crash states checked without booting (otasim/blkcheck.h). */
#include "otasim/blkcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/hash.h"
#include "ota/json.h"
#include "otasim/bootloader.h"
#include "otasim/invariants.h"
#include "otasim/proc.h"

#define TOOL_MS 120000

static const char *const part_names[OTASIM_QPART_MAX] = {"boot", "rootA", "rootB", "data"};

static uint64_t mix_str(uint64_t h, const char *s)
{
    return ota_fnv1a64_add(h, s, strlen(s) + 1);
}

/* A partition's verdict in its reading's hash. */
static uint64_t mix_fs(uint64_t h, const struct otasim_blkcheck_part *p)
{
    h = ota_fnv1a64_add(h, &p->fs_ok, sizeof(p->fs_ok));
    return ota_fnv1a64_add(h, &p->repaired, sizeof(p->repaired));
}

static uint64_t mix_file(uint64_t h, const char *path)
{
    char *text = NULL;
    size_t n = 0;

    if (ota_fs_read_all(path, 1 << 30, &text, &n, NULL) < 0)
        return mix_str(h, "(none)");
    h = ota_fnv1a64_add(h, text, n);
    free(text);
    return ota_fnv1a64_add(h, &n, sizeof(n));
}

/* A tool; its exit status into *st (stderr and stdout to the checker's log
 * unless out is given). */
static int tool(struct otasim_blkcheck *ck, const char *const *argv, char **out, int *st,
                struct ota_err *err)
{
    return otasim_run(argv, NULL, TOOL_MS, out, ck->log, st, err);
}

/* The same with stderr appended to *out (e2fsck says why it cannot open a
 * file system there). */
static int tool_both(struct otasim_blkcheck *ck, const char *const *argv, char **out, int *st,
                     struct ota_err *err)
{
    char errf[PATH_MAX + 32], *e = NULL;
    size_t en = 0;
    int r;

    snprintf(errf, sizeof(errf), "%s/last.err", ck->dir);
    unlink(errf);
    *out = NULL;
    if ((r = otasim_run(argv, NULL, TOOL_MS, out, errf, st, err)) < 0)
        return r;
    if (ota_fs_read_all(errf, 1 << 16, &e, &en, NULL) == 0 && en) {
        size_t on = *out ? strlen(*out) : 0;
        char *both = realloc(*out, on + en + 1);
        if (both) {
            memcpy(both + on, e, en);
            both[on + en] = '\0';
            *out = both;
        }
    }
    free(e);
    return 0;
}

int otasim_blkcheck_init(struct otasim_blkcheck *ck, const struct otasim_trial *tr,
                         const struct otasim_qemu_image *im, const char *dir, struct ota_err *err)
{
    int r;

    memset(ck, 0, sizeof(*ck));
    for (int i = 0; i < OTASIM_QPART_MAX; i++)
        ck->part[i].fd = -1;
    ck->tr = tr;
    ck->rootfs = tr->sc->profile == OTASIM_PROFILE_ROOTFS;
    ota_strlcpy(ck->dir, dir, sizeof(ck->dir));
    snprintf(ck->tree, sizeof(ck->tree), "%s/tree", dir);
    snprintf(ck->log, sizeof(ck->log), "%s/tools.log", dir);
    if ((r = ota_fs_mkdirs(ck->tree, err)) < 0)
        return r;
    for (int i = 0; i < OTASIM_QPART_MAX; i++) {
        struct otasim_blkcheck_part *p = &ck->part[i];
        p->off = im->off[i];
        p->len = im->len[i];
        snprintf(p->path, sizeof(p->path), "%s/%s.img", dir, part_names[i]);
        p->fd = open(p->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (p->fd < 0) {
            r = ota_err_set(err, errno, "%s: %s", p->path, strerror(errno));
            otasim_blkcheck_free(ck);
            return r;
        }
    }
    return 0;
}

void otasim_blkcheck_free(struct otasim_blkcheck *ck)
{
    for (int i = 0; i < OTASIM_QPART_MAX; i++) {
        if (ck->part[i].fd >= 0) {
            close(ck->part[i].fd);
            unlink(ck->part[i].path);
        }
        if (ck->part[i].undo[0])
            unlink(ck->part[i].undo);
        ck->part[i].fd = -1;
    }
}

/* ---- reading one partition ---------------------------------------------- */

/* The ext4 super block: 1 magic bad, 2 needs recovery (a mounted file system's
 * journal), 0 clean. */
static int ext4_sb(int fd)
{
    uint8_t sb[1024];

    if (pread(fd, sb, sizeof(sb), 1024) != (ssize_t)sizeof(sb) || sb[0x38] != 0x53 ||
        sb[0x39] != 0xef)
        return 1;
    return (sb[0x60] & 0x4) ? 2 : 0;
}

/* The first line of e2fsck's output that is not its banner or a pass heading. */
static const char *first_finding(const char *out)
{
    static __thread char first[120];
    const char *l = out ? out : "";

    first[0] = '\0';
    while (*l) {
        size_t n = strcspn(l, "\n");
        if (n && strncmp(l, "Pass ", 5) != 0 && strncmp(l, "e2fsck ", 7) != 0 &&
            strncmp(l, "Overwriting existing", 20) != 0 && strncmp(l, "    e2undo", 10) != 0 &&
            strncmp(l, "Warning: skipping journal", 25) != 0) {
            snprintf(first, sizeof(first), "%.*s", (int)(n < 119 ? n : 119), l);
            break;
        }
        l += n + (l[n] == '\n');
    }
    return first;
}

/* The first line of a journal replay's output that is not the replay itself
 * ("" none): e2fsck -y repairs whatever it meets on the way (an invalid
 * journal cleared and made again, bad group descriptors rebuilt) and exits 1
 * as for a plain replay, where the kernel's mount refuses the file system.
 * Orphans it releases as the mount would. */
static const char *replay_finding(const char *out, const char *path)
{
    static const char *const benign[] = {"e2fsck ", "Overwriting existing", "    e2undo",
                                         "Clearing orphaned inode", "Truncating orphaned inode",
                                         /* a torn commit block: the transaction was never
                                          * committed, the replay ends before it (the
                                          * kernel's does the same); e2fsck -fn judges what
                                          * is left */
                                         "Journal transaction ", NULL};
    static __thread char first[120];
    const char *l = out ? out : "";
    (void)path;

    first[0] = '\0';
    while (*l) {
        size_t n = strcspn(l, "\n");
        /* "NAME: recovering journal": NAME is the file system's label when it has one */
        int ok = n == 0 || (n >= 20 && strncmp(l + n - 20, ": recovering journal", 20) == 0);
        for (size_t k = 0; !ok && benign[k]; k++)
            ok = strncmp(l, benign[k], strlen(benign[k])) == 0;
        if (!ok) {
            snprintf(first, sizeof(first), "%.*s", (int)(n < 119 ? n : 119), l);
            break;
        }
        l += n + (l[n] == '\n');
    }
    return first;
}

/* The boot's repair of a file system the kernel refuses (images/initramfs/
 * init: e2fsck -y, which takes a backup super block), done on the copy; it
 * cannot be undone, so the copy is brought back whole next time. 1 repaired,
 * 0 not repairable (fs_why says so), -errno harness. */
static int boot_repair(struct otasim_blkcheck *ck, int i, const char *finding, struct ota_err *err)
{
    struct otasim_blkcheck_part *p = &ck->part[i];
    const char *repair[] = {"e2fsck", "-y", p->path, NULL};
    char why[160], *out = NULL;
    int st = 0, r;

    snprintf(why, sizeof(why), "%s", finding);
    p->whole = 1;
    if ((r = tool_both(ck, repair, &out, &st, err)) < 0)
        return r;
    free(out);
    if (st > 3) {
        snprintf(p->fs_why, sizeof(p->fs_why),
                 "%s: %s, and the boot's e2fsck -y could not repair it (exit %d)", part_names[i],
                 why, st);
        return 0;
    }
    p->repaired = 1;
    snprintf(p->repair_why, sizeof(p->repair_why), "%s: %s; the boot's e2fsck -y repaired it",
             part_names[i], why);
    return 1;
}

/* What the next mount finds: the journal replayed (into the partition file,
 * undoable), then `e2fsck -fn`. Sets p->fs_ok and p->fs_why. */
static int ext4_check(struct otasim_blkcheck *ck, int i, struct ota_err *err)
{
    struct otasim_blkcheck_part *p = &ck->part[i];
    char *out = NULL;
    int st = 0, sb = ext4_sb(p->fd), r;

    p->fs_ok = 0;
    p->repaired = 0;
    p->repair_why[0] = '\0';
    if (sb == 1) {
        snprintf(p->fs_why, sizeof(p->fs_why), "%s: no ext4 super block", part_names[i]);
        return 0;
    }
    if (sb == 2) {
        /* e2fsck: 0 nothing to do, 1 replayed (modified), 2 reboot, 4+ errors */
        snprintf(p->undo, sizeof(p->undo), "%s/%s.e2undo", ck->dir, part_names[i]);
        unlink(p->undo);
        const char *replay[] = {"e2fsck", "-y", "-E", "journal_only", "-z", p->undo, p->path, NULL};
        if ((r = tool_both(ck, replay, &out, &st, err)) < 0)
            return r;
        if (st > 3) {
            /* It could not open the file system: a super block the kernel
             * would refuse too (a torn write of its two sectors). The boot
             * then runs e2fsck -y (images/initramfs/init), which takes a
             * backup super block: that is done here, on the copy. No undo
             * to trust: the file is brought back whole next time. */
            unlink(p->undo);
            p->undo[0] = '\0';
            r = boot_repair(ck, i, first_finding(out), err);
            free(out);
            out = NULL;
            if (r <= 0)
                return r;
        }
        if (replay_finding(out, p->path)[0]) {
            /* the undo stays: the next sync puts the partition back first */
            snprintf(p->fs_why, sizeof(p->fs_why),
                     "%s: the journal replay met more than the journal (a mount refuses it): %s",
                     part_names[i], replay_finding(out, p->path));
            free(out);
            return 0;
        }
        free(out);
        out = NULL;
    }
    const char *fsck[] = {"e2fsck", "-fn", p->path, NULL};
    if ((r = tool_both(ck, fsck, &out, &st, err)) < 0)
        return r;
    if (st != 0 && out && strstr(out, "Superblock checksum does not match") && !p->repaired) {
        /* a clean file system (no journal to replay) whose super block was torn
         * (the kernel's write at unmount): the boot repairs it as above */
        r = boot_repair(ck, i, first_finding(out), err);
        free(out);
        out = NULL;
        if (r <= 0)
            return r;
        if ((r = tool_both(ck, fsck, &out, &st, err)) < 0)
            return r;
    }
    if (st == 0) {
        p->fs_ok = 1;
        p->fs_why[0] = '\0';
    } else {
        snprintf(p->fs_why, sizeof(p->fs_why), "%s: e2fsck -fn exit %d: %s", part_names[i], st,
                 first_finding(out));
    }
    free(out);
    return 0;
}

/* Puts back what the last journal replay wrote into the partition file. */
static int undo_replay(struct otasim_blkcheck *ck, int i, struct ota_err *err)
{
    struct otasim_blkcheck_part *p = &ck->part[i];
    int st = 0, r;

    if (!p->undo[0])
        return 0;
    char *out = NULL;
    const char *argv[] = {"e2undo", p->undo, p->path, NULL};
    if ((r = tool(ck, argv, &out, &st, err)) < 0)
        return r;
    if (st != 0) {
        r = ota_err_set(err, EIO, "e2undo %s %s: exit %d: %.200s (see %s)", p->undo, p->path, st,
                        out ? out : "", ck->log);
        free(out);
        return r;
    }
    free(out);
    unlink(p->undo);
    p->undo[0] = '\0';
    return 0;
}

static int debugfs_cmds(struct otasim_blkcheck *ck, int i, const char *cmds, struct ota_err *err)
{
    char file[PATH_MAX + 32];
    int st = 0, r;

    snprintf(file, sizeof(file), "%s/debugfs.cmd", ck->dir);
    if ((r = ota_fs_write_atomic(file, cmds, strlen(cmds), 0644, err)) < 0)
        return r;
    const char *argv[] = {"debugfs", "-f", file, ck->part[i].path, NULL};
    if ((r = tool(ck, argv, NULL, &st, err)) < 0)
        return r;
    return 0; /* a missing file is not an error of the harness: the checks see it */
}

static void slot_dir_version(struct otasim_blkcheck *ck, int s, char *path, size_t cap)
{
    snprintf(path, cap, "%s/root%c-release", ck->tree, "AB"[s]);
}

/* fsck.fat -n's output says only that the dirty bit is set (and its summary). */
static int fat_only_dirty(const char *out, const char *path)
{
    static const char *const benign[] = {
        "fsck.fat ", "Dirty bit is set", " Automatically removing dirty bit",
        "Leaving filesystem unchanged",
        /* a cut between the kernel's writes of the two FAT
         * copies: Linux reads the first */
        "FATs differ but appear to be intact", "Using first FAT.", NULL};
    size_t pl = strlen(path);
    int dirty = 0;

    while (*out) {
        size_t n = strcspn(out, "\n");
        int ok = n == 0 || (strncmp(out, path, pl) == 0 && out[pl] == ':');
        for (size_t k = 0; !ok && benign[k]; k++)
            ok = strncmp(out, benign[k], strlen(benign[k])) == 0;
        if (!ok)
            return 0;
        dirty |= strncmp(out, "Dirty bit is set", 16) == 0 || strncmp(out, "FATs differ", 11) == 0;
        out += n + (out[n] == '\n');
    }
    return dirty;
}

static int read_part(struct otasim_blkcheck *ck, int i, struct ota_err *err)
{
    struct otasim_blkcheck_part *p = &ck->part[i];
    char cmds[4 * PATH_MAX], a[PATH_MAX + 64], b[PATH_MAX + 64];
    uint64_t h = OTA_FNV1A64_INIT;
    int r, st = 0;

    p->fs_why[0] = '\0';
    p->read = 1;
    if (i == OTASIM_QPART_BOOT) {
        char cfg[PATH_MAX + 64];
        char *out = NULL;
        const char *fsck[] = {"fsck.fat", "-n", p->path, NULL};
        if ((r = tool(ck, fsck, &out, &st, err)) < 0)
            return r;
        /* A FAT mounted at the cut has its dirty bit set: fsck.fat says so and
         * exits 1; that alone is what a mounted file system looks like, any
         * other line is a finding. */
        p->fs_ok = st == 0 || (st == 1 && fat_only_dirty(out ? out : "", p->path));
        if (!p->fs_ok)
            snprintf(p->fs_why, sizeof(p->fs_why), "boot: fsck.fat -n exit %d: %.120s", st,
                     out ? out : "");
        free(out);
        char rb[PATH_MAX + 64];
        int st2 = 0;
        snprintf(a, sizeof(a), "%s/boot", ck->tree);
        snprintf(b, sizeof(b), "%s/boot/uboot.env", ck->tree);
        snprintf(rb, sizeof(rb), "%s/boot/" OTASIM_ENV_REDUND_FILE, ck->tree);
        snprintf(cfg, sizeof(cfg), "%s/boot/fw_env.config", ck->tree);
        if ((r = ota_fs_mkdirs(a, err)) < 0)
            return r;
        unlink(b);
        unlink(rb);
        unlink(cfg);
        const char *mc[] = {"mcopy", "-n", "-i", p->path, "::uboot.env", b, NULL};
        const char *mr[] = {"mcopy", "-n", "-i", p->path, "::" OTASIM_ENV_REDUND_FILE, rb, NULL};
        if ((r = tool(ck, mc, NULL, &st, err)) < 0 || (r = tool(ck, mr, NULL, &st2, err)) < 0)
            return r;
        /* A redundant env (the FAT holds the second copy) is read as U-Boot
         * reads it: the good copy with the newer flags; a copy that is gone
         * counts as a bad one (an empty file, padded to a bad CRC). */
        ck->env_copies = st2 == 0 ? 2 : 1;
        ck->env_bad = 0;
        if (st2 == 0) {
            if (st != 0 && (r = ota_fs_write_atomic(b, "", 0, 0644, err)) < 0)
                return r;
            if ((r = otasim_bootenv_config_redundant(b, rb, cfg, err)) < 0)
                return r;
            for (int k = 0; k < 2; k++) {
                if ((r = otasim_bootenv_copy_ok(k ? rb : b, 1, NULL, err)) < 0)
                    return r;
                ck->env_bad |= !r << k;
            }
        } else if (st == 0) {
            if ((r = otasim_bootenv_config(b, cfg, err)) < 0)
                return r;
            if ((r = otasim_bootenv_copy_ok(b, 0, NULL, err)) < 0)
                return r;
            ck->env_bad = !r;
        } else {
            ck->env_bad = 1;
        }
        h = mix_file(mix_file(mix_fs(h, p), b), rb);
    } else if ((r = ext4_check(ck, i, err)) < 0) {
        return r;
    } else if (i == OTASIM_QPART_DATA) {
        snprintf(a, sizeof(a), "%s/db", ck->tree);
        if ((r = ota_fs_remove_tree(a, err)) < 0 || (r = ota_fs_mkdirs(a, err)) < 0)
            return r;
        snprintf(cmds, sizeof(cmds),
                 "dump /agent.db %s/agent.db\ndump /agent.db-wal %s/agent.db-wal\n"
                 "dump /agent.db-journal %s/agent.db-journal\n",
                 a, a, a);
        if ((r = debugfs_cmds(ck, i, cmds, err)) < 0)
            return r;
        h = mix_fs(h, p);
        for (int k = 0; k < 3; k++) {
            snprintf(b, sizeof(b), "%s/agent.db%s", a, (const char *[]){"", "-wal", "-journal"}[k]);
            struct stat sst;
            if (stat(b, &sst) == 0 && sst.st_size == 0)
                unlink(b); /* debugfs leaves an empty file for a missing one */
            h = mix_file(h, b);
        }
    } else {
        int s = i == OTASIM_QPART_ROOTB;
        slot_dir_version(ck, s, b, sizeof(b));
        unlink(b);
        if (!ck->rootfs) { /* the app tree lives on rootA */
            snprintf(a, sizeof(a), "%s/opt", ck->tree);
            snprintf(cmds, sizeof(cmds), "%s/opt/app", ck->tree);
            if ((r = ota_fs_remove_tree(cmds, err)) < 0 || (r = ota_fs_mkdirs(a, err)) < 0)
                return r;
            snprintf(cmds, sizeof(cmds), "rdump /opt/app %s\n", a);
        } else {
            snprintf(cmds, sizeof(cmds), "dump /etc/ota-release %s\n", b);
        }
        if (p->fs_ok || ext4_sb(p->fd) != 1)
            if ((r = debugfs_cmds(ck, i, cmds, err)) < 0)
                return r;
        h = mix_fs(h, p);
        if (!ck->rootfs) {
            char hex[65] = "";
            snprintf(a, sizeof(a), "%s/opt/app", ck->tree);
            if (otasim_tree_digest(a, hex, NULL) == 0)
                h = mix_str(h, hex);
        } else {
            h = mix_file(h, b);
        }
    }
    p->key = h;
    return 0;
}

/* ---- the checks ----------------------------------------------------------- */

static void set(struct otasim_blkstate *s, const char *name, int ok, const char *fmt, ...)
{
    struct otasim_check *c;
    va_list ap;

    if (s->n_checks >= sizeof(s->checks) / sizeof(s->checks[0]))
        return;
    c = &s->checks[s->n_checks++];
    va_start(ap, fmt);
    otasim_check_vset(c, name, ok, fmt, ap);
    va_end(ap);
}

/* The release whose tree digest the app slot has ("" none). */
static const char *app_slot_release(struct otasim_blkcheck *ck, const char *slot, char *hex)
{
    char p[PATH_MAX + 64];
    const struct otasim_scenario *sc = ck->tr->sc;

    hex[0] = '\0';
    snprintf(p, sizeof(p), "%s/opt/app/%s", ck->tree, slot);
    if (!slot[0] || otasim_tree_digest(p, hex, NULL) < 0)
        return "";
    for (size_t i = 0; i < sc->n_rel; i++)
        if (ck->tr->built && strcmp(ck->tr->built[i].ref_digest, hex) == 0)
            return sc->rel[i].version;
    return "";
}

static void slot_release(struct otasim_blkcheck *ck, int s, char *buf, size_t cap)
{
    char p[PATH_MAX + 64], *text = NULL;
    size_t n = 0;

    buf[0] = '\0';
    slot_dir_version(ck, s, p, sizeof(p));
    if (ota_fs_read_all(p, 4096, &text, &n, NULL) == 0 && strncmp(text, "version=", 8) == 0) {
        text[strcspn(text, "\n")] = '\0';
        ota_strlcpy(buf, text + 8, cap);
    }
    free(text);
}

static int is_release(const struct otasim_scenario *sc, const char *v)
{
    for (size_t i = 0; v[0] && i < sc->n_rel; i++)
        if (strcmp(sc->rel[i].version, v) == 0)
            return 1;
    return 0;
}

/* Which copy of a redundant env was read, when it matters (one is torn). */
static const char *env_copies(const struct otasim_blkcheck *ck)
{
    if (ck->env_copies != 2)
        return ck->env_bad ? " (one copy, bad CRC)" : "";
    switch (ck->env_bad) {
    case 1:
        return " (uboot.env bad CRC: " OTASIM_ENV_REDUND_FILE " read)";
    case 2:
        return " (" OTASIM_ENV_REDUND_FILE " bad CRC: uboot.env read)";
    case 3:
        return " (both copies bad CRC)";
    default:
        return "";
    }
}

/* The env as read (boot_part, upgrade_available, bootcount, bootlimit): 1 if
 * it reads and names A or B. */
static int read_env(struct otasim_blkcheck *ck, char *bp, char *ua, char *bc, char *bl)
{
    char cfg[PATH_MAX + 64];
    int ok;

    bp[0] = ua[0] = bc[0] = bl[0] = '\0';
    snprintf(cfg, sizeof(cfg), "%s/boot/fw_env.config", ck->tree);
    ok = access(cfg, F_OK) == 0 && otasim_bootenv_get(cfg, OTA_ENV_BOOT_PART, bp, 8, NULL) == 0 &&
         (strcmp(bp, "A") == 0 || strcmp(bp, "B") == 0);
    if (ok) {
        ota_ignore(otasim_bootenv_get(cfg, OTA_ENV_UPGRADE_AVAILABLE, ua, 8, NULL));
        ota_ignore(otasim_bootenv_get(cfg, OTA_ENV_BOOTCOUNT, bc, 8, NULL));
        ota_ignore(otasim_bootenv_get(cfg, OTA_ENV_BOOTLIMIT, bl, 8, NULL));
    }
    return ok;
}

/* The root slot the next power-on boots, by boot.scr's rule (ota_abboot_step:
 * a pending trial boot counts, past bootlimit it falls back; after a fallback
 * the fallback slot's boots count, past 2 x bootlimit recovery mode, which
 * *ret_recovery tells). An unset bootlimit is boot.scr's default. An app
 * device always boots A. */
static int next_slot(const struct otasim_blkcheck *ck, const char *bp, const char *ua,
                     const char *bc, const char *bl, int *ret_recovery)
{
    struct ota_abboot_env e = {.slot = bp[0] == 'B',
                               .upgrade = strcmp(ua, "1") == 0,
                               .count = bc[0] ? strtoul(bc, NULL, 10) : 0,
                               .limit = strtoul(bl[0] ? bl : OTA_ENV_BOOTLIMIT_DEFAULT, NULL, 10)};
    int save;

    *ret_recovery = ck->rootfs && ota_abboot_step(&e, &save) == OTA_ABBOOT_RECOVERY;
    return ck->rootfs ? e.slot : 0;
}

static void run_checks(struct otasim_blkcheck *ck, struct otasim_blkstate *s)
{
    const struct otasim_scenario *sc = ck->tr->sc;
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    char bp[8] = "", ua[8] = "", bc[8] = "", bl[8] = "", why[400] = "", rep[400] = "";
    char db[PATH_MAX + 64], p[PATH_MAX + 64], hex[65];
    int env_ok, fs_ok = 1, recovery = 0;

    s->n_checks = 0;
    env_ok = read_env(ck, bp, ua, bc, bl);
    s->slot = next_slot(ck, bp, ua, bc, bl, &recovery);
    for (int i = 0; i < OTASIM_QPART_MAX; i++) {
        const struct otasim_blkcheck_part *pp = &ck->part[i];
        if (i == OTASIM_QPART_ROOTB && !(ck->rootfs && s->slot == 1))
            continue; /* not mounted at the next boot */
        if (i == OTASIM_QPART_ROOTA && ck->rootfs && s->slot == 1)
            continue;
        if (pp->repaired) {
            s->repaired = 1;
            snprintf(rep + strlen(rep), sizeof(rep) - strlen(rep), "%s%s", rep[0] ? "; " : "",
                     pp->repair_why);
        }
        if (!pp->fs_ok) {
            fs_ok = 0;
            snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", why[0] ? "; " : "",
                     pp->fs_why);
        }
    }
    if (fs_ok)
        set(s, "fs-consistent", 1, "journal replayed, e2fsck -fn clean%s%.300s%s",
            rep[0] ? " (" : "", rep, rep[0] ? ")" : "");
    else
        set(s, "fs-consistent", 0, "%s", why);
    set(s, "bootenv-readable", env_ok, "boot_part=%s upgrade_available=%s bootcount=%s%s",
        bp[0] ? bp : "(unreadable)", ua, bc, env_copies(ck));
    if (!ck->rootfs) {
        char cur[8] = "";
        const char *v;
        ssize_t n;
        snprintf(p, sizeof(p), "%s/opt/app/current", ck->tree);
        n = readlink(p, cur, sizeof(cur) - 1);
        cur[n > 0 ? n : 0] = '\0';
        set(s, "one-active-slot", strcmp(cur, "a") == 0 || strcmp(cur, "b") == 0, "current -> '%s'",
            cur);
        ota_strlcpy(s->app_slot, cur, sizeof(s->app_slot));
        v = app_slot_release(ck, cur, hex);
        ota_strlcpy(s->version, v, sizeof(s->version));
        set(s, "active-slot-complete", v[0] != 0, "slot %s digest %.12s: %s%s", cur,
            hex[0] ? hex : "(unreadable)", v[0] ? "release " : "no release's tree", v);
        v = app_slot_release(ck, "a", hex);
        set(s, "lkg-untouched", fac && strcmp(v, fac->version) == 0,
            "slot a holds %s, the factory release is %s", v[0] ? v : "no release's tree",
            fac ? fac->version : "?");
    } else {
        char va[32], vb[32];
        slot_release(ck, 0, va, sizeof(va));
        slot_release(ck, 1, vb, sizeof(vb));
        ota_strlcpy(s->version, s->slot ? vb : va, sizeof(s->version));
        if (recovery) /* both slots failed: no slot runs (a failure in any update) */
            set(s, "one-active-slot", 0,
                "boot_part=%s bootcount=%s: the next boot is recovery mode (both slots failed)", bp,
                bc);
        else
            set(s, "one-active-slot", env_ok, "boot_part=%s: the next boot is root%c", bp,
                "AB"[s->slot]);
        set(s, "active-slot-complete", is_release(sc, s->version), "root%c says version '%s'",
            "AB"[s->slot], s -> version);
        set(s, "lkg-untouched", fac && strcmp(va, fac->version) == 0,
            "rootA says '%s', the factory release is %s", va, fac ? fac->version : "?");
    }
    snprintf(db, sizeof(db), "%s/db/agent.db", ck->tree);
    if (access(db, F_OK) < 0) {
        set(s, "db-integrity", 1, "no database yet (the agent has not run)");
    } else {
        struct otasim_inv_view v;
        struct otasim_check c;
        memset(&v, 0, sizeof(v));
        ota_strlcpy(v.db_copy, db, sizeof(v.db_copy));
        memset(&c, 0, sizeof(c));
        ota_ignore(otasim_inv_db_integrity(&v, &c));
        set(s, "db-integrity", c.ok, "%s", c.detail);
    }
    otasim_inv_db_state(db, s->state, sizeof(s->state));
    s->outcome = OTASIM_PASS;
    s->detail[0] = '\0';
    for (size_t i = 0; i < s->n_checks; i++)
        if (!s->checks[i].ok) {
            s->outcome = OTASIM_FAIL;
            snprintf(s->detail, sizeof(s->detail), "%s: %s", s->checks[i].name,
                     s->checks[i].detail);
            break;
        }
    if (s->outcome == OTASIM_PASS)
        snprintf(s->detail, sizeof(s->detail),
                 "predicted: %sboots root%c, runs %s%s%s, agent in %s",
                 s->repaired ? "repairs a torn super block (e2fsck -y), " : "", "AB"[s->slot],
                 s -> version[0] ? s -> version : "nothing", ck->rootfs ? "" : " from slot ",
                 ck->rootfs ? "" : s->app_slot, s->state);
}

/* The slot the env read so far boots next. */
static int next_boot_slot(struct otasim_blkcheck *ck)
{
    char bp[8], ua[8], bc[8], bl[8];
    int recovery;

    read_env(ck, bp, ua, bc, bl);
    return next_slot(ck, bp, ua, bc, bl, &recovery);
}

int otasim_blkcheck_state(struct otasim_blkcheck *ck, struct otasim_blkreplay *r,
                          struct otasim_blkstate *ret, struct ota_err *err)
{
    static struct otasim_blkstate none;
    uint64_t key = OTA_FNV1A64_INIT;
    int rc, reads = 0;

    ck->st.states++;
    if (ck->have_prev && r->seq == ck->prev_seq) {
        ret->shared = 1;
        ck->st.same_disk++;
        return 0; /* ret still holds the previous state's result */
    }
    for (int i = 0; i < OTASIM_QPART_MAX; i++) {
        struct otasim_blkcheck_part *p = &ck->part[i];
        if (i == OTASIM_QPART_ROOTB && !ck->rootfs)
            continue; /* an app update's device never uses rootB */
        if (i == OTASIM_QPART_ROOTB && ck->next_slot == 0)
            continue; /* the next boot does not use the other slot: what the agent
                         streams there is verified before it is ever booted */
        if (p->read && !otasim_blkreplay_changed(r, p->off, p->len, p->synced)) {
            ck->st.part_reused++;
        } else {
            if ((rc = undo_replay(ck, i, err)) < 0 ||
                (rc = otasim_blkreplay_sync_range(r, p->fd, p->off, p->len,
                                                  p->read && !p->whole ? p->synced : 0, err)) < 0)
                return rc;
            p->whole = 0;
            p->synced = r->seq;
            if ((rc = read_part(ck, i, err)) < 0)
                return rc;
            if (i == OTASIM_QPART_BOOT) /* the env changes only with its partition */
                ck->next_slot = next_boot_slot(ck);
            ck->st.part_reads++;
            reads++;
        }
        key = ota_fnv1a64_add(key, &p->key, sizeof(p->key));
    }
    ck->prev_seq = r->seq;
    if (ck->have_prev && !reads) { /* the change is outside what the device reads (rootB of an
                                      app device, the unpartitioned space) */
        ret->shared = 1;
        ck->st.same_disk++;
        return 0;
    }
    if (reads)
        ck->st.checked++; /* read: e2fsck, debugfs, mtools and the env ran on this state */
    if (ck->have_prev && key == ck->prev_key) {
        ret->shared = 2;
        ck->st.same_reading++;
        return 0;
    }
    *ret = none;
    run_checks(ck, ret);
    ret->key = key;
    ret->shared = 0;
    ck->prev_key = key;
    ck->have_prev = 1;
    ck->st.evaluated++;
    if (ret->outcome != OTASIM_PASS)
        ck->st.failed++;
    return 0;
}
