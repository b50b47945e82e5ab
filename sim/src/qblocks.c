/* Block-level crash states of one update on a QEMU machine (otasim/qblocks.h). */
#include "otasim/qblocks.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/blkcheck.h"
#include "otasim/blklog.h"
#include "otasim/proc.h"
#include "otasim/qemu.h"
#include "qtrial_impl.h"

static const char *const unit_names[] = {"flush", "write"};

/* ---- the recording -------------------------------------------------------- */

static void rec_dir_of(const struct otasim_tools *t, const struct otasim_trial *tr, char *buf,
                       size_t cap)
{
    char key[PATH_MAX * 3], work[PATH_MAX], scen[PATH_MAX];

    if (!realpath(tr->sc->path, scen))
        ota_strlcpy(scen, tr->sc->path, sizeof(scen));
    snprintf(key, sizeof(key), "%s|%s|%s|%d|blocks1", scen, t->image_dir, t->guest_agent,
             t->qemu_profile);
    if (!realpath(t->work, work))
        ota_strlcpy(work, t->work, sizeof(work));
    snprintf(buf, cap, "%s/qemu-blocks/%s-%s-%08x", work, tr->sc->name,
             otasim_qemu_profile_names[t->qemu_profile], otasim_hash32(key));
}

/* The log replayed onto the starting disk must be the disk QEMU ran on. */
static int prove_log(const char *dir, const char *disk, uint64_t *ret_entries, struct ota_err *err)
{
    struct otasim_blklog log;
    struct otasim_blkreplay r;
    char base[PATH_MAX + 32], lp[PATH_MAX + 32], work[PATH_MAX + 32];
    uint8_t *a = NULL, *b = NULL;
    int fd = -1, rc;
    uint64_t at = 0;

    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(lp, sizeof(lp), "%s/blocks.log", dir);
    snprintf(work, sizeof(work), "%s/prove.raw", dir);
    if ((rc = otasim_blklog_open(&log, lp, err)) < 0)
        return ota_err_prefix(err, rc, "the recording's log");
    if ((rc = otasim_blkreplay_init(&r, &log, base, work, err)) < 0)
        goto out_log;
    if ((rc = otasim_blkreplay_seek(&r, log.nr_entries, err)) < 0)
        goto out;
    fd = open(disk, O_RDONLY | O_CLOEXEC);
    a = malloc(OTASIM_BLK_CHUNK);
    b = malloc(OTASIM_BLK_CHUNK);
    if (fd < 0 || !a || !b) {
        rc = ota_err_set(err, fd < 0 ? errno : ENOMEM, "%s: %s", disk,
                         strerror(fd < 0 ? errno : ENOMEM));
        goto out;
    }
    for (at = 0; at < r.image_size; at += OTASIM_BLK_CHUNK) {
        size_t n =
            r.image_size - at < OTASIM_BLK_CHUNK ? (size_t)(r.image_size - at) : OTASIM_BLK_CHUNK;
        if (pread(fd, a, n, (off_t)at) != (ssize_t)n ||
            pread(r.work_fd, b, n, (off_t)at) != (ssize_t)n || memcmp(a, b, n) != 0) {
            rc = ota_err_set(err, EIO,
                             "the log does not account for the disk: the replay differs from "
                             "%s at byte %" PRIu64 " (of %" PRIu64 ")",
                             disk, at, r.image_size);
            goto out;
        }
    }
    *ret_entries = log.nr_entries;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(a);
    free(b);
    otasim_blkreplay_free(&r);
    unlink(work);
out_log:
    otasim_blklog_close(&log);
    return rc;
}

static int write_meta(const struct otasim_tools *t, const struct otasim_trial *tr, const char *dir,
                      uint64_t entries, int64_t ms, struct ota_err *err)
{
    json_t *o = json_object(), *rels = json_array();
    char p[PATH_MAX + 32], *text = NULL;
    int rc;

    for (size_t i = 0; i < tr->sc->n_rel; i++)
        json_array_append_new(rels, json_pack("{s:s, s:b, s:s}", "version", tr->sc->rel[i].version,
                                              "factory", tr->sc->rel[i].factory, "digest",
                                              tr->built ? tr->built[i].ref_digest : ""));
    json_object_set_new(o, "scenario", json_string(tr->sc->path));
    json_object_set_new(o, "name", json_string(tr->sc->name));
    json_object_set_new(o, "profile", json_string(otasim_qemu_profile_names[t->qemu_profile]));
    json_object_set_new(o, "rootfs", json_boolean(tr->sc->profile == OTASIM_PROFILE_ROOTFS));
    json_object_set_new(o, "image", json_string(t->image_dir));
    json_object_set_new(o, "device_id", json_string(tr->device_id));
    json_object_set_new(o, "entries", json_integer((json_int_t)entries));
    json_object_set_new(o, "record_ms", json_integer(ms));
    json_object_set_new(o, "releases", rels);
    snprintf(p, sizeof(p), "%s/recording.json", dir);
    rc = ota_json_dump(o, &text) < 0 ? ota_err_set(err, ENOMEM, "out of memory")
                                     : ota_fs_write_atomic(p, text, strlen(text), 0644, err);
    free(text);
    json_decref(o);
    return rc;
}

/* The update once, no fault, every disk request logged. */
static int record(const struct otasim_tools *t, struct otasim_trial *tr, const char *dir,
                  int64_t *ret_ms, struct ota_err *err)
{
    struct otasim_qemu_image im;
    struct otasim_qemu q;
    struct otasim_device d;
    struct otasim_qt_watch w;
    struct otasim_trial rec = *tr;
    char p[PATH_MAX + 64], lp[PATH_MAX + 64], args[2048], line[4096], disk[PATH_MAX + 32];
    int64_t t0 = otasim_now_ms(), deadline, final_ms = 0;
    uint64_t entries = 0;
    FILE *states = NULL;
    int rc;

    memset(&q, 0, sizeof(q));
    q.log_fd = -1;
    memset(&d, 0, sizeof(d));
    memset(&w, 0, sizeof(w));
    w.booted_slot = -1;
    rec.state_lines = NULL;
    rec.logs[0] = '\0';
    if ((rc = ota_fs_remove_tree(dir, err)) < 0 || (rc = ota_fs_mkdirs(dir, err)) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/qemu", dir);
    if ((rc = otasim_qemu_image_open(t->image_dir, &im, err)) < 0 ||
        (rc = otasim_qemu_init(&q, (enum otasim_qemu_profile)t->qemu_profile, &im, p, NULL,
                               tr->srv->port, err)) < 0)
        goto out;
    q.uboot = tr->sc->profile == OTASIM_PROFILE_ROOTFS; /* virt: U-Boot's A/B choice */
    q.cpus = t->qemu_cpus;
    if ((tr->sc->profile == OTASIM_PROFILE_ROOTFS || t->guest_agent[0]) &&
        (rc = otasim_qt_provision(&q,
                                  tr->sc->profile == OTASIM_PROFILE_ROOTFS
                                      ? otasim_scenario_factory(tr->sc)->version
                                      : NULL,
                                  t->guest_agent[0] ? t->guest_agent : NULL, err)) < 0)
        goto out;
    otasim_qt_kernel_args(&rec, NULL, args, sizeof(args));
    snprintf(p, sizeof(p), "%s/base.raw", dir);
    snprintf(lp, sizeof(lp), "%s/blocks.log", dir);
    if ((rc = otasim_qemu_record_begin(&q, args, p, lp, err)) < 0)
        goto out;
    ota_strlcpy(disk, q.rec_disk, sizeof(disk));
    unlink(q.overlay); /* the recording runs on the raw copy */
    snprintf(p, sizeof(p), "%s/states.tsv", dir);
    if (!(states = fopen(p, "w"))) {
        rc = ota_err_set(err, errno, "%s: %s", p, strerror(errno));
        goto out;
    }
    if ((rc = otasim_qt_start(&q, &rec, args, err)) < 0)
        goto out;
    deadline = otasim_now_ms() + (int64_t)t->qemu_timeout_s * 1000;
    /* to the final state line, and two seconds more: what the agent does
     * after it (the report, the outbox) is in the log too */
    while (!final_ms || otasim_now_ms() < final_ms + 2000) {
        int n = otasim_qemu_line(&q, 200, line, sizeof(line));
        const char *s;
        if (n < 0 || otasim_now_ms() > deadline) {
            rc = ota_err_set(err, EIO, "block recording: %s (see %s)",
                             n < 0 ? "QEMU stopped" : "no final state line", q.log);
            goto out;
        }
        if (n == 0)
            continue;
        otasim_qt_on_line(&rec, &d, &w, line);
        if ((s = strstr(line, "OTA-STATE {"))) {
            fprintf(states, "%" PRIu64 "\t%s\n", otasim_qemu_record_entries(&q), s + 10);
            fflush(states);
        }
        if (w.final && !final_ms)
            final_ms = otasim_now_ms();
    }
    /* The power goes at the end; first the machine is stopped (QMP stop
     * drains the block layer): a request the disk had completed but the
     * log not yet appended would otherwise be on the disk and not in the log. */
    if ((rc = otasim_qemu_pause(&q, err)) < 0)
        goto out;
    otasim_qemu_kill(&q);
    fclose(states);
    states = NULL;
    if ((rc = prove_log(dir, disk, &entries, err)) < 0)
        goto out;
    unlink(disk);
    snprintf(p, sizeof(p), "%s/console.log", dir);
    ota_ignore(ota_fs_write_atomic(p, "", 0, 0644, NULL));
    {
        const char *cp[] = {"cp", q.log, p, NULL};
        ota_ignore(otasim_run_checked(cp, NULL, NULL));
    }
    *ret_ms = otasim_now_ms() - t0;
    rc = write_meta(t, tr, dir, entries, *ret_ms, err);
    if (rc == 0 && strcmp(w.status, "success") != 0)
        rc = ota_err_set(err, EIO, "block recording: the update ended '%s', not success (see %s)",
                         w.status[0] ? w.status : "without a final state", q.log);
out:
    if (states)
        fclose(states);
    otasim_qemu_close(&q);
    free(rec.state_lines);
    return rc;
}

/* ---- states of the console --------------------------------------------- */

struct cstate {
    uint64_t entries;
    char to[24];
};

static int load_states(const char *dir, struct cstate **ret, size_t *n)
{
    char p[PATH_MAX + 32], line[4096];
    FILE *f;
    size_t cap = 0;

    *ret = NULL;
    *n = 0;
    snprintf(p, sizeof(p), "%s/states.tsv", dir);
    if (!(f = fopen(p, "r")))
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        const char *to = strstr(line, "\"to\":\"");
        if (!to)
            continue;
        if (*n == cap) {
            struct cstate *q = realloc(*ret, (cap = cap ? cap * 2 : 32) * sizeof(*q));
            if (!q)
                break;
            *ret = q;
        }
        (*ret)[*n].entries = strtoull(line, NULL, 10);
        snprintf((*ret)[*n].to, sizeof((*ret)[*n].to), "%.*s", (int)strcspn(to + 6, "\""), to + 6);
        (*n)++;
    }
    fclose(f);
    return 0;
}

/* The agent's state on the console when position pos was logged. */
static const char *during(const struct cstate *s, size_t n, uint64_t pos)
{
    const char *at = "BOOT";

    for (size_t i = 0; i < n && s[i].entries <= pos; i++)
        at = s[i].to;
    return at;
}

/* ---- checking ----------------------------------------------------------- */

/* A scenario and its releases as recording.json names them (check_one). */
struct rec_info {
    struct otasim_scenario sc;
    struct otasim_built built[OTASIM_MAX_RELEASES];
    struct otasim_trial tr;
    char profile[16];
    uint64_t entries;
};

static int load_meta(const char *dir, struct rec_info *ri, struct ota_err *err)
{
    char p[PATH_MAX + 32], *text = NULL;
    json_t *o = NULL, *rels, *rel;
    size_t n = 0, i;
    int rc;

    memset(ri, 0, sizeof(*ri));
    snprintf(p, sizeof(p), "%s/recording.json", dir);
    if ((rc = ota_fs_read_all(p, 1 << 20, &text, &n, err)) < 0)
        return ota_err_prefix(err, rc, "not a block recording");
    rc = ota_json_parse(text, n, &o, err);
    free(text);
    if (rc < 0)
        return rc;
    ota_strlcpy(ri->sc.path, json_string_value(json_object_get(o, "scenario")) ?: "",
                sizeof(ri->sc.path));
    ota_strlcpy(ri->sc.name, json_string_value(json_object_get(o, "name")) ?: "",
                sizeof(ri->sc.name));
    ota_strlcpy(ri->profile, json_string_value(json_object_get(o, "profile")) ?: "",
                sizeof(ri->profile));
    ri->sc.profile =
        json_is_true(json_object_get(o, "rootfs")) ? OTASIM_PROFILE_ROOTFS : OTASIM_PROFILE_APP;
    ri->entries = (uint64_t)json_integer_value(json_object_get(o, "entries"));
    rels = json_object_get(o, "releases");
    json_array_foreach(rels, i, rel)
    {
        if (i >= OTASIM_MAX_RELEASES)
            break;
        ota_strlcpy(ri->sc.rel[i].version, json_string_value(json_object_get(rel, "version")) ?: "",
                    sizeof(ri->sc.rel[i].version));
        ri->sc.rel[i].factory = json_is_true(json_object_get(rel, "factory"));
        ota_strlcpy(ri->built[i].ref_digest,
                    json_string_value(json_object_get(rel, "digest")) ?: "",
                    sizeof(ri->built[i].ref_digest));
        ri->sc.n_rel = i + 1;
    }
    json_decref(o);
    ri->tr.sc = &ri->sc;
    ri->tr.built = ri->built;
    return 0;
}

static json_t *state_json(const struct otasim_blkstate *s, uint64_t point, uint64_t pos,
                          uint64_t shared_with)
{
    json_t *checks = json_array();

    for (size_t i = 0; i < s->n_checks; i++)
        json_array_append_new(checks, json_pack("[s, b, s]", s->checks[i].name, s->checks[i].ok,
                                                s->checks[i].detail));
    return json_pack("{s:I, s:I, s:i, s:I, s:s, s:s, s:i, s:s, s:s, s:s, s:b, s:o}", "point",
                     (json_int_t)point, "pos", (json_int_t)pos, "shared", s->shared, "shared_with",
                     (json_int_t)shared_with, "outcome", otasim_outcome_names[s->outcome], "detail",
                     s->detail, "slot", s->slot, "version", s->version, "state", s->state,
                     "app_slot", s->app_slot, "repaired", s->repaired, "checks", checks);
}

/* One worker: of the npos points cut into nslices contiguous slices, the
 * slices k, k + jobs, k + 2 jobs... (an update's costly stretches, such as
 * a download rewriting the data partition at every point, are then spread
 * over the workers); each point checked, one JSON line each. A slice starts
 * with a state of its own (nothing shared across slices); the replayer only
 * moves forward. */
static int check_slice(const struct otasim_trial *tr, const struct otasim_blklog *log,
                       const char *dir, enum otasim_blk_unit unit, const struct otasim_blk_model *m,
                       const uint64_t *pos, uint64_t npos, int k, int jobs, uint64_t nslices,
                       const char *scratch, const char *out, struct ota_err *err)
{
    struct otasim_qemu_image im;
    struct otasim_blkreplay r;
    struct otasim_blkcheck ck;
    struct otasim_blkstate s;
    char base[PATH_MAX + 32], work[PATH_MAX + 32];
    uint64_t last_checked = 0, modelled = 0;
    FILE *f = NULL;
    int rc;

    memset(&s, 0, sizeof(s));
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(work, sizeof(work), "%s/work.raw", scratch);
    if ((rc = ota_fs_mkdirs(scratch, err)) < 0)
        return rc;
    /* the partition table of the starting disk (its MBR) */
    if ((rc = otasim_qemu_disk_open(base, &im, err)) < 0)
        return rc;
    if ((rc = otasim_blkreplay_init(&r, log, base, work, err)) < 0)
        return rc;
    if ((rc = otasim_blkcheck_init(&ck, tr, &im, scratch, err)) < 0)
        goto out_r;
    if (!(f = fopen(out, "w"))) {
        rc = ota_err_set(err, errno, "%s: %s", out, strerror(errno));
        goto out;
    }
    for (uint64_t sl = (uint64_t)k; sl < nslices; sl += (uint64_t)jobs)
        for (uint64_t k = npos * sl / nslices, to = npos * (sl + 1) / nslices; k < to; k++) {
            json_t *o;
            char *text = NULL;
            if (k == npos * sl / nslices)
                ck.have_prev = 0; /* a slice's first state is judged on its own */
            struct otasim_blk_model_info mi;
            /* the state under the models (their writes undone after the check) */
            if ((rc = otasim_blkreplay_at(&r, unit, pos, k, NULL, 0, m, &mi, err)) < 0 ||
                (rc = otasim_blkcheck_state(&ck, &r, &s, err)) < 0 ||
                (rc = otasim_blkreplay_undo_extra(&r, err)) < 0)
                goto out;
            modelled += mi.torn || mi.damaged;
            if (!s.shared)
                last_checked = k;
            if (s.shared) /* the result is last_checked's line */
                o = json_pack("{s:I, s:I, s:i, s:I}", "point", (json_int_t)k, "pos",
                              (json_int_t)pos[k], "shared", s.shared, "shared_with",
                              (json_int_t)last_checked);
            else
                o = state_json(&s, k, pos[k], k);
            if (o && (mi.torn || mi.damaged))
                json_object_set_new(
                    o, "model",
                    json_pack("{s:b, s:I, s:I, s:I, s:b, s:I, s:I, s:I}", "torn", mi.torn,
                              "torn_entry", (json_int_t)mi.torn_entry, "torn_pages",
                              (json_int_t)mi.t.k, "torn_of", (json_int_t)mi.t.pieces, "damaged",
                              mi.damaged, "erase_off", (json_int_t)mi.d.off, "erase_len",
                              (json_int_t)mi.d.len, "sectors_damaged",
                              (json_int_t)(mi.d.sectors_ff + mi.d.sectors_garbage)));
            if (!o || ota_json_dump(o, &text) < 0) {
                json_decref(o);
                rc = ota_err_set(err, ENOMEM, "out of memory");
                goto out;
            }
            fprintf(f, "%s\n", text);
            free(text);
            json_decref(o);
        }
    fprintf(f,
            "{\"stats\":{\"states\":%" PRIu64 ",\"checked\":%" PRIu64 ",\"evaluated\":%" PRIu64
            ",\"same_disk\":%" PRIu64 ",\"same_reading\":%" PRIu64 ",\"failed\":%" PRIu64
            ",\"part_reads\":%" PRIu64 ",\"part_reused\":%" PRIu64 ",\"modelled\":%" PRIu64 "}}\n",
            ck.st.states, ck.st.checked, ck.st.evaluated, ck.st.same_disk, ck.st.same_reading,
            ck.st.failed, ck.st.part_reads, ck.st.part_reused, modelled);
    rc = fflush(f) == 0 ? 0 : ota_err_set(err, errno, "%s: %s", out, strerror(errno));
out:
    if (f)
        fclose(f);
    otasim_blkcheck_free(&ck);
out_r:
    otasim_blkreplay_free(&r);
    unlink(work);
    return rc;
}

/* ---- the run ------------------------------------------------------------- */

struct pstate {
    json_t *o; /* the worker's line */
    const char *during;
};

static int outcome_key_eq(json_t *a, json_t *b)
{
    static const char *const keys[] = {"outcome", "version", "state", "app_slot"};

    if (json_integer_value(json_object_get(a, "slot")) !=
            json_integer_value(json_object_get(b, "slot")) ||
        json_is_true(json_object_get(a, "repaired")) !=
            json_is_true(json_object_get(b, "repaired")))
        return 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(json_string_value(json_object_get(a, keys[i])) ?: "",
                   json_string_value(json_object_get(b, keys[i])) ?: "") != 0)
            return 0;
    return 1;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* From the first power-on's console: the booted slot ('a'/'b', 0 none; its
 * first "Kernel command line") and whether the initramfs repaired a file
 * system it could not mount (images/initramfs/init). */
static char first_boot(const char *logs, int *repaired)
{
    char path[PATH_MAX], *text = NULL, *k, slot = 0;
    size_t n = 0;

    *repaired = 0;
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(logs, "\n"), logs);
    if (ota_fs_read_all(path, 16 << 20, &text, &n, NULL) < 0)
        return 0;
    if ((k = strstr(text, "Kernel command line:")) && (k = strstr(k, "ota.slot=")))
        slot = k[9];
    *repaired = strstr(text, "does not mount: e2fsck -y") != NULL;
    free(text);
    return slot;
}

static void first_from(const char *lines, char *buf, size_t cap)
{
    const char *f = lines ? strstr(lines, "\"from\":\"") : NULL;

    buf[0] = '\0';
    if (f)
        snprintf(buf, cap, "%.*s", (int)strcspn(f + 8, "\""), f + 8);
}

static void add_check(struct otasim_trial *tr, const char *name, int ok, const char *detail)
{
    struct otasim_check *c;

    if (tr->n_checks >= OTASIM_MAX_INVARIANTS)
        return;
    c = &tr->checks[tr->n_checks++];
    ota_strlcpy(c->name, name, sizeof(c->name));
    c->ok = ok;
    ota_strlcpy(c->detail, detail, sizeof(c->detail));
}

/* Boots the state at point k and judges it; the row goes to db. */
static int boot_one(const struct otasim_tools *t, const struct otasim_trial *tr,
                    const struct otasim_blklog *log, const char *dir, struct pstate *ps,
                    const uint64_t *points, uint64_t k, enum otasim_blk_unit bunit,
                    const struct otasim_blk_model *m, struct otasim_rundb *db, int64_t run_id,
                    struct otasim_qblocks_result *res, struct ota_err *err)
{
    const char *unit = unit_names[bunit];
    char margs[160];
    struct otasim_trial b = *tr;
    struct otasim_blkreplay r;
    struct otasim_qt_watch w;
    char base[PATH_MAX + 32], work[PATH_MAX + 64], state[PATH_MAX + 64], id[300],
        rep[PATH_MAX + 256];
    char pslot, bslot, from[24], detail[400], *js = NULL;
    int prep, brep;
    struct otasim_scenario *bsc = NULL;
    const struct otasim_release *tgt;
    const char *pstate = json_string_value(json_object_get(ps[k].o, "state")) ?: "";
    uint64_t pos = (uint64_t)json_integer_value(json_object_get(ps[k].o, "pos"));
    int fd = -1, rc, ok;

    memset(&w, 0, sizeof(w));
    b.state_lines = NULL;
    b.blocks = NULL;
    b.n_checks = 0;
    snprintf(b.dir, sizeof(b.dir), "%s/boot-%" PRIu64, tr->dir, k);
    snprintf(base, sizeof(base), "%s/base.raw", dir);
    snprintf(work, sizeof(work), "/dev/shm/otasim-boot-%d-work.raw", (int)getpid());
    snprintf(state, sizeof(state), "/dev/shm/otasim-boot-%d-%" PRIu64 ".raw", (int)getpid(), k);
    if ((rc = otasim_blkreplay_init(&r, log, base, work, err)) < 0)
        return rc;
    rc = otasim_blkreplay_at(&r, bunit, points, k, NULL, 0, m, NULL, err);
    if (rc >= 0) {
        fd = open(state, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        rc = fd < 0 ? ota_err_set(err, errno, "%s: %s", state, strerror(errno))
                    : otasim_blkreplay_sync(&r, fd, 1, err);
        if (fd >= 0)
            close(fd);
    }
    otasim_blkreplay_free(&r);
    unlink(work);
    if (rc < 0)
        goto out;
    /* What the booted device must end with: the update completed, except
     * where the agent finds an interrupted health window: then it rolls back
     * (the recovery rule the matrix states for every cut at HEALTH_CHECK,
     * scenarios/matrix.yaml). found_state reads the trigger's state. */
    bsc = malloc(sizeof(*bsc));
    if (!bsc) {
        rc = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    *bsc = *tr->sc;
    if (bsc->expect.n_unless == 0 && otasim_scenario_factory(bsc)) {
        struct otasim_expect_unless *u = &bsc->expect.unless[0];
        memset(u, 0, sizeof(*u));
        ota_strlcpy(u->found[0], "HEALTH_CHECK", sizeof(u->found[0]));
        u->n_found = 1;
        ota_strlcpy(u->version, otasim_scenario_factory(bsc)->version, sizeof(u->version));
        ota_strlcpy(u->slot, "a", sizeof(u->slot));
        u->report = OTASIM_EXPECT_REPORT_FAILURE;
        ota_strlcpy(u->why,
                    "an interrupted health window cannot vouch for the release, the agent rolls "
                    "back (README.md, the recovery rules)",
                    sizeof(u->why));
        bsc->expect.n_unless = 1;
    }
    b.sc = bsc;
    b.fault.kind = OTASIM_FAULT_POWER_CUT;
    b.fault.trigger.kind = OTASIM_TRIGGER_STATE;
    ota_strlcpy(b.fault.trigger.state, pstate, sizeof(b.fault.trigger.state));
    /* a state whose update is complete: the agent ends IDLE with nothing to do */
    tgt = otasim_scenario_target(tr->sc);
    rc = otasim_qt_boot_state(
        t, &b, state,
        tgt &&
            strcmp(json_string_value(json_object_get(ps[k].o, "version")) ?: "", tgt->version) ==
                0 &&
            strcmp(pstate, "IDLE") == 0,
        &w, err);
    if (rc < 0 && b.outcome != OTASIM_ERROR)
        goto out;
    rc = 0;
    /* the prediction: the slot the first power-on booted, the state the
     * agent resumed from (the "from" of its first state line) */
    pslot = json_integer_value(json_object_get(ps[k].o, "slot")) ? 'b' : 'a';
    prep = json_is_true(json_object_get(ps[k].o, "repaired"));
    bslot = first_boot(b.logs, &brep);
    first_from(b.state_lines, from, sizeof(from));
    ok = bslot == pslot && strcmp(from, pstate) == 0 && prep == brep;
    snprintf(detail, sizeof(detail),
             "predicted slot %c, agent from %s%s; booted slot %c, agent's first state line from "
             "%s%s",
             pslot, pstate, prep ? ", a repair at boot" : "", bslot ? bslot : '?',
             from[0] ? from : "(none)", brep ? ", the initramfs repaired a file system" : "");
    add_check(&b, "predicted-outcome", ok, detail);
    if (!ok) {
        res->mismatches++;
        if (b.outcome == OTASIM_PASS) {
            b.outcome = OTASIM_FAIL;
            snprintf(b.detail, sizeof(b.detail), "predicted-outcome: %s", detail);
        }
    }
    res->boots++;
    if (b.outcome != OTASIM_PASS)
        res->boots_failed++;
    {
        json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:b, s:s, s:O}", "kind", "boot", "point",
                              (json_int_t)k, "pos", (json_int_t)pos, "unit", unit, "booted", 1,
                              "during", ps[k].during, "predicted", ps[k].o);
        if (o)
            ota_ignore(ota_json_dump(o, &js));
        json_decref(o);
    }
    b.blocks = js;
    b.fired = 1;
    b.fault.kind = OTASIM_FAULT_POWER_CUT;
    snprintf(b.block_trigger, sizeof(b.block_trigger), "block-%s:%" PRIu64 " booted", unit, k);
    otasim_blk_model_name(m, margs, sizeof(margs));
    snprintf(b.block_model, sizeof(b.block_model), "blocks-%s%s%s", unit, margs[0] ? "+" : "",
             margs);
    otasim_blk_model_args(m, margs, sizeof(margs));
    snprintf(id, sizeof(id), "blocks/%s/%s/boot@%" PRIu64,
             otasim_qemu_profile_names[t->qemu_profile], tr->sc->name, k);
    snprintf(rep, sizeof(rep),
             "ota-sim blocks check --recording %s --point %" PRIu64
             "%s --out state.raw && images/run-qemu --profile %s --image state.raw --overlay",
             dir, k, margs, otasim_qemu_profile_names[t->qemu_profile]);
    rc = otasim_rundb_add(db, run_id, id, &b, rep, NULL, err);
out:
    unlink(state);
    free(js);
    free(b.state_lines);
    free(bsc);
    return rc;
}

int otasim_qblocks_run(const struct otasim_tools *t, struct otasim_trial *tr,
                       const struct otasim_qblocks_opts *o, struct otasim_rundb *db, int64_t run_id,
                       struct otasim_qblocks_result *res, struct ota_err *err)
{
    struct otasim_blklog log;
    struct cstate *cs = NULL;
    struct pstate *ps = NULL;
    size_t ncs = 0;
    char dir[PATH_MAX], p[PATH_MAX + 64], margs[160], cmodel[48];
    uint64_t *pos = NULL, npos = 0, nslices;
    enum otasim_blk_unit unit;
    int jobs = o->jobs > 0 ? o->jobs : 2, rc, log_open = 0;
    pid_t pids[16] = {0};
    int64_t t0;

    memset(res, 0, sizeof(*res));
    if (strcmp(tr->sc->source, "github") != 0)
        return ota_err_set(err, ENOTSUP,
                           "%s: block mode needs a github source (the fleet server's state is "
                           "not recorded per crash point, so a booted state could not meet it)",
                           tr->sc->name);
    if (jobs > 16)
        jobs = 16;
    unit = o->unit >= 0                             ? (enum otasim_blk_unit)o->unit
           : t->qemu_profile == OTASIM_QEMU_RASPI3B ? OTASIM_BLK_UNIT_WRITE
                                                    : OTASIM_BLK_UNIT_FLUSH;
    ota_strlcpy(res->unit, unit_names[unit], sizeof(res->unit));
    otasim_blk_model_name(&o->model, res->model, sizeof(res->model));
    otasim_blk_model_args(&o->model, margs, sizeof(margs));
    snprintf(cmodel, sizeof(cmodel), "blocks-%s%s%s", unit_names[unit], res->model[0] ? "+" : "",
             res->model);
    rec_dir_of(t, tr, dir, sizeof(dir));
    ota_strlcpy(res->rec_dir, dir, sizeof(res->rec_dir));
    snprintf(p, sizeof(p), "%s/recording.json", dir);
    if (o->recheck || access(p, F_OK) < 0) {
        if ((rc = record(t, tr, dir, &res->record_ms, err)) < 0)
            return rc;
    }
    snprintf(p, sizeof(p), "%s/blocks.log", dir);
    if ((rc = otasim_blklog_open(&log, p, err)) < 0)
        return rc;
    log_open = 1;
    res->entries = log.nr_entries;
    if ((rc = otasim_blklog_points(&log, unit, &pos, &npos)) < 0) {
        rc = ota_err_set(err, -rc, "out of memory");
        goto out;
    }
    if ((rc = otasim_blk_model_check(&o->model, unit, log.sector_size, err)) < 0)
        goto out;
    ota_ignore(load_states(dir, &cs, &ncs));
    /* the check: contiguous slices, one worker each */
    t0 = otasim_now_ms();
    if ((uint64_t)jobs > npos)
        jobs = (int)(npos ? npos : 1);
    nslices = npos < (uint64_t)jobs * 16 ? (uint64_t)jobs : (uint64_t)jobs * 16;
    for (int k = 0; k < jobs; k++) {
        char scratch[PATH_MAX], out[PATH_MAX + 64];
        snprintf(scratch, sizeof(scratch), "/dev/shm/otasim-blocks-%d-%d", (int)getpid(), k);
        snprintf(out, sizeof(out), "%s/check-%s-%d.jsonl", tr->dir, unit_names[unit], k);
        pids[k] = fork();
        if (pids[k] < 0) {
            rc = ota_err_set(err, errno, "fork: %s", strerror(errno));
            goto out;
        }
        if (pids[k] == 0) {
            struct ota_err e = {0};
            int c = check_slice(tr, &log, dir, unit, &o->model, pos, npos, k, jobs, nslices,
                                scratch, out, &e);
            if (c < 0) /* its scratch stays for a look (named in the reason) */
                fprintf(stderr, "ota-sim: block check worker %d: %s\n", k, e.reason);
            else
                ota_ignore(ota_fs_remove_tree(scratch, NULL));
            _exit(c < 0 ? 5 : 0);
        }
    }
    rc = 0;
    for (int k = 0; k < jobs; k++) {
        int st = 0;
        if (otasim_wait(pids[k], -1, &st) < 0 || st != 0)
            rc = ota_err_set(err, EIO, "block check worker %d failed (exit %d)", k, st);
        pids[k] = 0;
    }
    res->check_ms = otasim_now_ms() - t0;
    if (rc < 0)
        goto out;
    /* merge: one row per point */
    ps = calloc(npos ? npos : 1, sizeof(*ps));
    if (!ps) {
        rc = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    res->points = npos;
    for (int k = 0; k < jobs; k++) {
        char out[PATH_MAX + 64], line[65536];
        FILE *f;
        snprintf(out, sizeof(out), "%s/check-%s-%d.jsonl", tr->dir, unit_names[unit], k);
        if (!(f = fopen(out, "r"))) {
            rc = ota_err_set(err, errno, "%s: %s", out, strerror(errno));
            goto out;
        }
        while (fgets(line, sizeof(line), f)) {
            json_t *j = NULL, *stt;
            if (ota_json_parse(line, strlen(line), &j, NULL) < 0)
                continue;
            if ((stt = json_object_get(j, "stats"))) {
                res->checked += (uint64_t)json_integer_value(json_object_get(stt, "checked"));
                res->evaluated += (uint64_t)json_integer_value(json_object_get(stt, "evaluated"));
                res->same_disk += (uint64_t)json_integer_value(json_object_get(stt, "same_disk"));
                res->same_reading +=
                    (uint64_t)json_integer_value(json_object_get(stt, "same_reading"));
                res->failed += (uint64_t)json_integer_value(json_object_get(stt, "failed"));
                res->part_reads += (uint64_t)json_integer_value(json_object_get(stt, "part_reads"));
                res->part_reused +=
                    (uint64_t)json_integer_value(json_object_get(stt, "part_reused"));
                res->modelled += (uint64_t)json_integer_value(json_object_get(stt, "modelled"));
                json_decref(j);
                continue;
            }
            uint64_t pt = (uint64_t)json_integer_value(json_object_get(j, "point"));
            if (pt < npos && !ps[pt].o) {
                ps[pt].o = j;
                ps[pt].during =
                    during(cs, ncs, (uint64_t)json_integer_value(json_object_get(j, "pos")));
            } else {
                json_decref(j);
            }
        }
        fclose(f);
    }
    for (uint64_t k = 0; k < npos; k++) {
        struct otasim_trial row = *tr;
        json_t *j = ps[k].o, *checks, *c, *extra;
        char id[300], eq[300] = "", rep[PATH_MAX + 96], *js = NULL;
        size_t i;
        int shared;
        uint64_t last = k, with;
        if (!j) {
            rc = ota_err_set(err, EIO, "block check: no result for point %" PRIu64, k);
            goto out;
        }
        shared = (int)json_integer_value(json_object_get(j, "shared"));
        with = (uint64_t)json_integer_value(json_object_get(j, "shared_with"));
        /* a run of states sharing one result (and one console state) is one row */
        while (shared && last + 1 < npos && ps[last + 1].o &&
               json_integer_value(json_object_get(ps[last + 1].o, "shared")) == shared &&
               (uint64_t)json_integer_value(json_object_get(ps[last + 1].o, "shared_with")) ==
                   with &&
               strcmp(ps[last + 1].during, ps[k].during) == 0)
            last++;
        if (shared) { /* the fields of the state whose result it shares */
            if (with >= npos || !ps[with].o) {
                rc = ota_err_set(err, EIO,
                                 "block check: point %" PRIu64 " shares %" PRIu64
                                 ", which has no result",
                                 k, with);
                goto out;
            }
            j = ps[with].o;
        }
        row.state_lines = NULL;
        row.n_checks = 0;
        row.fault.kind = OTASIM_FAULT_POWER_CUT;
        row.fired = 1;
        row.target[0] = '\0';
        ota_strlcpy(row.target, "qemu", sizeof(row.target));
        row.outcome = strcmp(json_string_value(json_object_get(j, "outcome")) ?: "", "pass") == 0
                          ? OTASIM_PASS
                          : OTASIM_FAIL;
        ota_strlcpy(row.detail, json_string_value(json_object_get(j, "detail")) ?: "",
                    sizeof(row.detail));
        ota_strlcpy(row.final_version, json_string_value(json_object_get(j, "version")) ?: "",
                    sizeof(row.final_version));
        ota_strlcpy(row.final_state, json_string_value(json_object_get(j, "state")) ?: "",
                    sizeof(row.final_state));
        snprintf(row.final_slot, sizeof(row.final_slot), "%s",
                 tr->sc->profile == OTASIM_PROFILE_ROOTFS
                     ? (json_integer_value(json_object_get(j, "slot")) ? "b" : "a")
                     : json_string_value(json_object_get(j, "app_slot")) ?: "");
        checks = json_object_get(j, "checks");
        json_array_foreach(checks, i, c)
        {
            add_check(&row, json_string_value(json_array_get(c, 0)) ?: "",
                      json_is_true(json_array_get(c, 1)),
                      json_string_value(json_array_get(c, 2)) ?: "");
        }
        char span[48];
        if (last > k)
            snprintf(span, sizeof(span), "%" PRIu64 "-%" PRIu64, k, last);
        else
            snprintf(span, sizeof(span), "%" PRIu64, k);
        snprintf(row.block_trigger, sizeof(row.block_trigger), "block-%s:%s", unit_names[unit],
                 span);
        ota_strlcpy(row.block_model, cmodel, sizeof(row.block_model));
        snprintf(id, sizeof(id), "blocks/%s/%s/%s@%s", otasim_qemu_profile_names[t->qemu_profile],
                 tr->sc->name, unit_names[unit], span);
        if (shared)
            snprintf(eq, sizeof(eq), "blocks/%s/%s/%s@%" PRIu64,
                     otasim_qemu_profile_names[t->qemu_profile], tr->sc->name, unit_names[unit],
                     with);
        extra = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:i, s:I, s:i, s:s, s:s, s:O*}", "kind",
                          "state", "point", (json_int_t)k, "last", (json_int_t)last, "pos",
                          json_integer_value(json_object_get(ps[k].o, "pos")), "unit",
                          unit_names[unit], "during", ps[k].during, "shared", shared, "shared_with",
                          (json_int_t)(shared ? with : k), "slot",
                          (int)json_integer_value(json_object_get(j, "slot")), "recording", dir,
                          "model", res->model, "modelled", json_object_get(ps[k].o, "model"));
        if (extra)
            ota_ignore(ota_json_dump(extra, &js));
        json_decref(extra);
        row.blocks = js;
        snprintf(rep, sizeof(rep), "ota-sim blocks check --recording %s --point %" PRIu64 "%s", dir,
                 k, margs);
        rc = otasim_rundb_add(db, run_id, id, &row, rep, shared ? eq : NULL, err);
        free(js);
        if (rc < 0)
            goto out;
        k = last;
    }
    /* the booted sample: the first point of every distinct outcome, then a
     * seeded sample of the other checked points */
    if (o->boot_sample > 0) {
        uint64_t *pick = calloc(npos + 1, sizeof(*pick)), npick = 0, *rest = NULL, nrest = 0;
        uint64_t x = o->seed;
        int64_t b0 = otasim_now_ms();
        rest = calloc(npos + 1, sizeof(*rest));
        if (!pick || !rest) {
            free(pick);
            free(rest);
            rc = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
        for (uint64_t k = 0; k < npos; k++) {
            int seen = 0;
            if (json_integer_value(json_object_get(ps[k].o, "shared")))
                continue;
            for (uint64_t q = 0; q < npick && !seen; q++)
                seen = outcome_key_eq(ps[pick[q]].o, ps[k].o);
            if (!seen)
                pick[npick++] = k;
            else
                rest[nrest++] = k;
        }
        res->outcomes = npick;
        if (npick > (uint64_t)o->boot_sample) {
            /* the outcomes that need proof most first (a failed check, a
             * repair at boot), then the others spread over the update */
            uint64_t *keep = calloc(npick, sizeof(*keep)), nk = 0, nother = 0;
            if (!keep) {
                free(pick);
                free(rest);
                rc = ota_err_set(err, ENOMEM, "out of memory");
                goto out;
            }
            for (uint64_t q = 0; q < npick; q++) {
                json_t *pj = ps[pick[q]].o;
                if (json_is_true(json_object_get(pj, "repaired")) ||
                    strcmp(json_string_value(json_object_get(pj, "outcome")) ?: "", "pass") != 0)
                    keep[nk++] = pick[q];
            }
            if (nk > (uint64_t)o->boot_sample)
                nk = (uint64_t)o->boot_sample;
            for (uint64_t q = 0; q < npick; q++) { /* the others, in order */
                json_t *pj = ps[pick[q]].o;
                if (!json_is_true(json_object_get(pj, "repaired")) &&
                    strcmp(json_string_value(json_object_get(pj, "outcome")) ?: "", "pass") == 0)
                    pick[nother++] = pick[q];
            }
            for (uint64_t q = 0; nk < (uint64_t)o->boot_sample && q < (uint64_t)o->boot_sample;
                 q++) {
                uint64_t at = q * nother / (uint64_t)o->boot_sample;
                if (at < nother && (nk == 0 || keep[nk - 1] != pick[at]))
                    keep[nk++] = pick[at];
            }
            memcpy(pick, keep, nk * sizeof(*keep));
            npick = nk;
            free(keep);
        }
        res->outcomes_booted = (int)npick;
        while (npick < (uint64_t)o->boot_sample && nrest) {
            uint64_t q = splitmix(&x) % nrest;
            pick[npick++] = rest[q];
            rest[q] = rest[--nrest];
        }
        for (uint64_t q = 0; q < npick && rc == 0; q++)
            rc =
                boot_one(t, tr, &log, dir, ps, pos, pick[q], unit, &o->model, db, run_id, res, err);
        res->boot_ms = otasim_now_ms() - b0;
        free(pick);
        free(rest);
    } else {
        for (uint64_t k = 0; k < npos; k++) {
            int seen = 0;
            if (json_integer_value(json_object_get(ps[k].o, "shared")))
                continue;
            for (uint64_t q = 0; q < k && !seen; q++)
                seen = !json_integer_value(json_object_get(ps[q].o, "shared")) &&
                       outcome_key_eq(ps[q].o, ps[k].o);
            res->outcomes += !seen;
        }
    }
out:
    for (int k = 0; k < jobs; k++)
        if (pids[k] > 0) {
            int st;
            kill(pids[k], SIGKILL);
            ota_ignore(otasim_wait(pids[k], -1, &st));
        }
    for (uint64_t k = 0; ps && k < npos; k++)
        json_decref(ps[k].o);
    free(ps);
    free(cs);
    free(pos);
    if (log_open)
        otasim_blklog_close(&log);
    return rc;
}

/* One state's checks, as check prints them. */
static void print_state(const struct otasim_blkstate *s)
{
    for (size_t i = 0; i < s->n_checks; i++)
        printf("  %-22s %s  %s\n", s->checks[i].name, s->checks[i].ok ? "ok  " : "FAIL",
               s->checks[i].detail);
    printf("  %s\n", s->detail);
}

/* What the models did to a state, as check prints it. */
static void print_model(const struct otasim_blk_model *m, const struct otasim_blk_model_info *mi,
                        uint64_t point)
{
    if (otasim_blk_model_on(m) && !mi->torn && !mi->damaged)
        printf("model: nothing to act on at point %" PRIu64 " (the starting disk, a flush, no "
               "write in flight, or a write within one page, which cannot tear): the plain "
               "state\n",
               point);
    if (mi->torn)
        printf("model: torn write, entry %" PRIu64 ", its first %" PRIu64 " of %" PRIu64
               " pages written\n",
               mi->torn_entry, mi->t.k, mi->t.pieces);
    if (mi->damaged)
        printf("model: erase-block damage, bytes %" PRIu64 "+%" PRIu64 ", %" PRIu64
               " sectors erased, %" PRIu64 " garbage\n",
               mi->d.off, mi->d.len, mi->d.sectors_ff, mi->d.sectors_garbage);
}

int otasim_qblocks_check_one(const char *rec_dir, uint64_t point, const struct otasim_blk_model *m,
                             const char *out, struct ota_err *err)
{
    return otasim_qblocks_check_range(rec_dir, point, point, m, out, err);
}

int otasim_qblocks_check_range(const char *rec_dir, uint64_t first, uint64_t last,
                               const struct otasim_blk_model *m, const char *out,
                               struct ota_err *err)
{
    struct otasim_blk_model_info mi;
    struct rec_info *ri = calloc(1, sizeof(*ri));
    struct otasim_blklog log;
    struct otasim_blkreplay r;
    struct otasim_blkcheck ck;
    struct otasim_blkstate s;
    struct otasim_qemu_image im;
    char p[PATH_MAX + 64], base[PATH_MAX + 64], scratch[PATH_MAX], work[PATH_MAX + 32];
    uint64_t *pos = NULL, npos = 0, n_failed = 0, n_env = 0;
    enum otasim_blk_unit unit;
    int rc, ck_open = 0;
    int64_t t0 = otasim_now_ms();

    if (!ri)
        return ota_err_set(err, ENOMEM, "out of memory");
    memset(&s, 0, sizeof(s));
    if (first > last || (out && first != last)) {
        rc = ota_err_set(err, EINVAL, "points %" PRIu64 "-%" PRIu64 ": %s", first, last,
                         first > last ? "the first is past the last" : "--out takes one point");
        goto out_ri;
    }
    if ((rc = load_meta(rec_dir, ri, err)) < 0)
        goto out_ri;
    unit = strcmp(ri->profile, "raspi3b") == 0 ? OTASIM_BLK_UNIT_WRITE : OTASIM_BLK_UNIT_FLUSH;
    snprintf(p, sizeof(p), "%s/blocks.log", rec_dir);
    snprintf(base, sizeof(base), "%s/base.raw", rec_dir);
    if ((rc = otasim_blklog_open(&log, p, err)) < 0)
        goto out_ri;
    if ((rc = otasim_blklog_points(&log, unit, &pos, &npos)) < 0) {
        rc = ota_err_set(err, ENOMEM, "out of memory");
        goto out_log;
    }
    if (last >= npos) {
        rc = ota_err_set(err, EINVAL, "point %" PRIu64 ": the recording has %" PRIu64 " (%s unit)",
                         last, npos, unit_names[unit]);
        goto out_log;
    }
    snprintf(scratch, sizeof(scratch), "/dev/shm/otasim-check-%d", (int)getpid());
    snprintf(work, sizeof(work), "%s/work.raw", scratch);
    if ((rc = ota_fs_mkdirs(scratch, err)) < 0 ||
        (rc = otasim_qemu_disk_open(base, &im, err)) < 0 ||
        (rc = otasim_blkreplay_init(&r, &log, base, work, err)) < 0)
        goto out_log;
    if ((rc = otasim_blk_model_check(m, unit, log.sector_size, err)) < 0 ||
        (rc = otasim_blkcheck_init(&ck, &ri->tr, &im, scratch, err)) < 0)
        goto out_r;
    ck_open = 1;
    if (first != last)
        printf("recording=%s scenario=%s profile=%s unit=%s points=%" PRIu64 "-%" PRIu64 "\n",
               rec_dir, ri->sc.name, ri->profile, unit_names[unit], first, last);
    /* one checker moved forward, as a check worker's slice (states that share
     * a result with the one before are counted, not printed again) */
    for (uint64_t k = first; k <= last; k++) {
        /* the state under the models; their writes undone after the check
         * (kept for --out: one point only) */
        if ((rc = otasim_blkreplay_at(&r, unit, pos, k, NULL, 0, m, &mi, err)) < 0 ||
            (rc = otasim_blkcheck_state(&ck, &r, &s, err)) < 0)
            goto out_r;
        if (first == last)
            break;
        if ((rc = otasim_blkreplay_undo_extra(&r, err)) < 0)
            goto out_r;
        if (s.shared)
            continue;
        n_failed += s.outcome != OTASIM_PASS;
        for (size_t i = 0; i < s.n_checks; i++)
            n_env += strcmp(s.checks[i].name, "bootenv-readable") == 0 && !s.checks[i].ok;
        printf("point=%" PRIu64 " pos=%" PRIu64 " outcome=%s\n", k, pos[k],
               otasim_outcome_names[s.outcome]);
        print_state(&s);
    }
    if (first != last) {
        printf("points=%" PRIu64 " states=%" PRIu64 " checked=%" PRIu64 " evaluated=%" PRIu64
               " same_disk=%" PRIu64 " same_reading=%" PRIu64 " failed=%" PRIu64
               " bootenv_unreadable=%" PRIu64 " seconds=%.1f\n",
               last - first + 1, ck.st.states, ck.st.checked, ck.st.evaluated, ck.st.same_disk,
               ck.st.same_reading, n_failed, n_env, (double)(otasim_now_ms() - t0) / 1000.0);
        rc = n_failed ? 1 : 0;
        goto out_r;
    }
    if (out) {
        int fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        rc = fd < 0 ? ota_err_set(err, errno, "%s: %s", out, strerror(errno))
                    : otasim_blkreplay_sync(&r, fd, 1, err);
        if (fd >= 0)
            close(fd);
        if (rc < 0)
            goto out_r;
    }
    print_model(m, &mi, first);
    printf("recording=%s scenario=%s profile=%s unit=%s point=%" PRIu64 " pos=%" PRIu64
           " outcome=%s\n",
           rec_dir, ri->sc.name, ri->profile, unit_names[unit], first, pos[first],
           otasim_outcome_names[s.outcome]);
    print_state(&s);
    if (out)
        printf("state written to %s\n", out);
    rc = s.outcome == OTASIM_PASS ? 0 : 1;
out_r:
    if (ck_open)
        otasim_blkcheck_free(&ck);
    otasim_blkreplay_free(&r);
    ota_ignore(ota_fs_remove_tree(scratch, NULL));
out_log:
    free(pos);
    otasim_blklog_close(&log);
out_ri:
    free(ri);
    return rc;
}
