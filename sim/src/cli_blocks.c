/* ota-sim blocks: block-level crash states from a dm-log-writes log that
 * QEMU's blklogwrites driver recorded (otasim/blklog.h, docs/blocks.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "otasim/blklog.h"
#include "otasim/cli.h"
#include "otasim/qblocks.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_HARNESS = 5 };

static void usage(FILE *f)
{
    fprintf(f, "usage: ota-sim blocks info LOG\n"
               "       ota-sim blocks replay --base IMG --log LOG --point N [--unit flush|write]\n"
               "                             [--subset-seed S] [--discard zero|keep]\n"
               "                             [--torn-seed S [--torn-unit B]]\n"
               "                             [--erase-block B --damage-seed S] --out IMG\n"
               "       ota-sim blocks bench --base IMG --log LOG [--unit flush|write] --out IMG\n"
               "       ota-sim blocks check --recording DIR --point N [--torn-seed S\n"
               "                            [--torn-unit B]] [--erase-block B --damage-seed S]\n"
               "                            [--out IMG]\n"
               "       ota-sim blocks check --recording DIR --points A-B [model options]\n"
               "\n"
               "LOG is a dm-log-writes log as QEMU's blklogwrites driver writes it\n"
               "(docs/blocks.md). info: its entries, writes, discards, flushes, FUA writes,\n"
               "marks, bytes, and the crash points per unit. replay: the raw disk IMG (the\n"
               "starting disk) with the log's entries up to crash point N (0 is IMG itself)\n"
               "written into --out; a crash point is after each flush or FUA write (--unit\n"
               "flush, the default: virtio-blk) or after each write (--unit write: the SD card,\n"
               "which never flushes). --subset-seed S adds a subset of the writes logged after\n"
               "point N and before the next barrier, chosen by S (flush unit). --discard:\n"
               "discarded sectors read back as zeroes (what QEMU's discard=unmap leaves in its\n"
               "file; the default) or keep their data. Models (docs/blocks.md; QEMU never\n"
               "tears a write): --torn-seed S tears one write, only its first k of m pages of\n"
               "--torn-unit bytes (default 4096) written, k in 1..m-1 chosen by S: the write\n"
               "that completes point N (--unit write: the state lies between points N-1 and N)\n"
               "or one write in flight after point N that the subset did not keep (--unit\n"
               "flush). --erase-block B --damage-seed S (--unit write): the other sectors of\n"
               "the B-byte aligned erase blocks holding point N's last write are overwritten\n"
               "with 0xff or garbage chosen by S (pessimistic: not a measurement of any card).\n"
               "Sizes in bytes, or with K, M (KiB, MiB). bench: every crash point of the unit\n"
               "produced three ways (a fresh copy each; one working copy moved forward and\n"
               "copied out whole; the same with only the changed 64 KiB chunks copied out),\n"
               "states per second each. check: one crash point of a recording that\n"
               "`ota-sim run --target qemu --mode blocks` made (WORK/qemu-blocks/...: the\n"
               "reproduce command of its row) checked again, each check printed, under the\n"
               "same models as replay's (the write unit on raspi3b); --out: the\n"
               "state's raw disk written there (boot it: images/run-qemu --image IMG\n"
               "--overlay). --points A-B: every point from A to B, one checker moved\n"
               "forward (states sharing a result counted, not printed), then a summary line\n"
               "(failed, bootenv_unreadable). Exit 1 when a check failed.\n"
               "Exit: 0 done, 2 usage or a bad log, 5 harness error.\n");
}

static int bad_log(const struct ota_err *e)
{
    fprintf(stderr, "ota-sim blocks: %s\n", e->reason);
    return EXIT_USAGE;
}

static int do_info(const char *path)
{
    struct otasim_blklog log;
    struct ota_err e = {0};
    uint64_t pf = 0, pw = 0;

    if (otasim_blklog_open(&log, path, &e) < 0)
        return bad_log(&e);
    if (otasim_blklog_points(&log, OTASIM_BLK_UNIT_FLUSH, NULL, &pf) < 0 ||
        otasim_blklog_points(&log, OTASIM_BLK_UNIT_WRITE, NULL, &pw) < 0) {
        otasim_blklog_close(&log);
        fprintf(stderr, "ota-sim blocks: out of memory\n");
        return EXIT_HARNESS;
    }
    printf("log=%s sector_size=%" PRIu32 " entries=%" PRIu64 " writes=%" PRIu64 " discards=%" PRIu64
           " flushes=%" PRIu64 " fua=%" PRIu64 " marks=%" PRIu64 " bytes=%" PRIu64
           " disk_end=%" PRIu64 "\n",
           path, log.sector_size, log.nr_entries, log.n_writes, log.n_discards, log.n_flushes,
           log.n_fua, log.n_marks, log.bytes, log.end_sector * log.sector_size);
    printf("points_flush=%" PRIu64 " points_write=%" PRIu64 "\n", pf, pw);
    otasim_blklog_close(&log);
    return EXIT_OK;
}

struct blocks_opts {
    const char *base, *log, *out;
    uint64_t point, seed;
    int have_point, have_seed;
    struct otasim_blk_model model; /* the torn and erase-block models */
    struct otasim_blk_model_flags mf;
    enum otasim_blk_unit unit;
    enum otasim_blk_discard discard;
};

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || !*s || *end || *s == '-' ? -1 : 0;
}

/* Bytes: a decimal number, optionally K or KiB, M or MiB (binary). */
static int parse_size(const char *s, uint64_t *v)
{
    char *end;
    uint64_t mul = 1;
    errno = 0;
    *v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    if (!strcmp(end, "K") || !strcmp(end, "KiB"))
        mul = 1024;
    else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
        mul = 1024 * 1024;
    else if (*end)
        return -1;
    if (*v > UINT64_MAX / mul)
        return -1;
    *v *= mul;
    return 0;
}

static int parse_opts(int argc, char **argv, struct blocks_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return fprintf(stderr, "ota-sim blocks: %s needs a value\n", a), -1;
        i++;
        if (strcmp(a, "--base") == 0)
            o->base = v;
        else if (strcmp(a, "--log") == 0)
            o->log = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--point") == 0 && parse_u64(v, &o->point) == 0)
            o->have_point = 1;
        else if (strcmp(a, "--subset-seed") == 0 && parse_u64(v, &o->seed) == 0)
            o->have_seed = 1;
        else if (otasim_blk_model_opt(a, v, &o->model, &o->mf) > 0)
            continue;
        else if (strcmp(a, "--unit") == 0 && (!strcmp(v, "flush") || !strcmp(v, "write")))
            o->unit = strcmp(v, "flush") == 0 ? OTASIM_BLK_UNIT_FLUSH : OTASIM_BLK_UNIT_WRITE;
        else if (strcmp(a, "--discard") == 0 && (!strcmp(v, "keep") || !strcmp(v, "zero")))
            o->discard = strcmp(v, "keep") == 0 ? OTASIM_BLK_DISCARD_KEEP : OTASIM_BLK_DISCARD_ZERO;
        else
            return fprintf(stderr, "ota-sim blocks: bad option %s %s\n", a, v), -1;
    }
    if (!o->base || !o->log || !o->out)
        return fprintf(stderr, "ota-sim blocks: --base, --log and --out are needed\n"), -1;
    return otasim_blk_model_done(&o->model, &o->mf, "ota-sim blocks");
}

int otasim_blk_model_opt(const char *name, const char *value, struct otasim_blk_model *m,
                         struct otasim_blk_model_flags *f)
{
    if (strcmp(name, "--torn-seed") == 0)
        return parse_u64(value, &m->torn_seed) == 0 ? (m->torn = 1) : -1;
    if (strcmp(name, "--torn-unit") == 0)
        return parse_size(value, &m->torn_unit) == 0 ? (f->torn_unit = 1) : -1;
    if (strcmp(name, "--erase-block") == 0)
        return parse_size(value, &m->erase_block) == 0 ? (m->erase = 1) : -1;
    if (strcmp(name, "--damage-seed") == 0)
        return parse_u64(value, &m->damage_seed) == 0 ? (f->damage_seed = 1) : -1;
    return 0;
}

int otasim_blk_model_done(struct otasim_blk_model *m, const struct otasim_blk_model_flags *f,
                          const char *who)
{
    if (!f->torn_unit)
        m->torn_unit = 4096;
    else if (!m->torn)
        return fprintf(stderr, "%s: --torn-unit needs --torn-seed\n", who), -1;
    if (m->erase != f->damage_seed)
        return fprintf(stderr, "%s: --erase-block and --damage-seed go together\n", who), -1;
    return 0;
}

/* The state at crash point o->point (plus the seed's subset) into o->out. */
static int replay(const struct otasim_blklog *log, const struct blocks_opts *o, struct ota_err *e)
{
    struct otasim_blkreplay r;
    uint64_t *pos = NULL, n = 0, *idx = NULL, k = 0;
    int rc;

    if ((rc = otasim_blklog_points(log, o->unit, &pos, &n)) < 0)
        return ota_err_set(e, -rc, "out of memory");
    if (o->point >= n) {
        rc = ota_err_set(e, EINVAL,
                         "point %" PRIu64 " out of range: %s has %" PRIu64
                         " crash points per %s (0..%" PRIu64 ")",
                         o->point, o->log, n, o->unit == OTASIM_BLK_UNIT_FLUSH ? "flush" : "write",
                         n - 1);
        free(pos);
        return rc;
    }
    if (o->have_seed && (rc = otasim_blklog_subset(log, pos[o->point], o->seed, &idx, &k)) < 0) {
        free(pos);
        return ota_err_set(e, -rc, "out of memory");
    }
    rc = otasim_blkreplay_init(&r, log, o->base, o->out, e);
    if (rc == 0) {
        struct otasim_blk_model_info mi;
        r.discard = o->discard;
        rc = otasim_blkreplay_at(&r, o->unit, pos, o->point, idx, k, &o->model, &mi, e);
        if (rc == 1 && o->unit == OTASIM_BLK_UNIT_WRITE)
            rc = ota_err_set(e, EINVAL,
                             "point %" PRIu64 " is the starting disk or follows a flush: no "
                             "write before it to %s (points 1..%" PRIu64 ")",
                             o->point, o->model.torn ? "tear" : "damage", n - 1);
        else if (rc == 1)
            rc = ota_err_set(e, EINVAL, "point %" PRIu64 ": no write in flight after it to tear",
                             o->point);
        if (rc == 0 && mi.torn)
            printf("torn_entry=%" PRIu64 " torn_pages=%" PRIu64 "/%" PRIu64 " torn_bytes=%" PRIu64
                   "/%" PRIu64 "\n",
                   mi.torn_entry, mi.t.k, mi.t.pieces, mi.t.bytes,
                   log->e[mi.torn_entry].nr_sectors * log->sector_size);
        if (rc == 0 && mi.damaged)
            printf("damage_entry=%" PRIu64 " erase_blocks=%" PRIu64 "+%" PRIu64
                   " sectors_ff=%" PRIu64 " sectors_garbage=%" PRIu64 "\n",
                   pos[o->point] - 1, mi.d.off, mi.d.len, mi.d.sectors_ff, mi.d.sectors_garbage);
        if (rc == 0 && o->have_seed) {
            printf("subset_entries=%" PRIu64, k);
            for (uint64_t j = 0; j < k; j++)
                printf("%s%" PRIu64, j ? "," : " subset=", idx[j]);
            printf("\n");
        }
        if (rc == 0)
            printf("point=%" PRIu64 " entries_applied=%" PRIu64 "\n", o->point, r.applied);
        otasim_blkreplay_free(&r); /* the out image keeps what was applied */
        if (rc < 0)
            unlink(o->out); /* no half-made state left behind */
    }
    free(idx);
    free(pos);
    return rc;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every crash point one way (mode 0 fresh copy, 1 whole copy-out, 2 changes only). */
static int bench_mode(const struct otasim_blklog *log, const struct blocks_opts *o,
                      const uint64_t *pos, uint64_t n, int mode, struct ota_err *e)
{
    struct otasim_blkreplay r;
    char work[4096];
    double t0 = now();
    int out = -1, rc = 0;

    snprintf(work, sizeof(work), "%s.work", o->out);
    if (mode && (rc = otasim_blkreplay_init(&r, log, o->base, work, e)) < 0)
        return rc;
    if (mode && (out = open(o->out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = ota_err_set(e, errno, "cannot create %s: %s", o->out, strerror(errno));
    for (uint64_t p = 0; rc == 0 && p < n; p++) {
        if (mode == 0) {
            rc = otasim_blkreplay_init(&r, log, o->base, o->out, e);
            if (rc == 0)
                rc = otasim_blkreplay_seek(&r, pos[p], e);
            otasim_blkreplay_free(&r);
            continue;
        }
        rc = otasim_blkreplay_seek(&r, pos[p], e);
        if (rc == 0)
            rc = otasim_blkreplay_sync(&r, out, mode == 1 || p == 0, e);
    }
    if (mode) {
        otasim_blkreplay_free(&r);
        unlink(work);
    }
    if (out >= 0)
        close(out);
    if (rc == 0) {
        double dt = now() - t0;
        printf("mode=%s states=%" PRIu64 " seconds=%.3f states_per_s=%.1f\n",
               mode == 0   ? "fresh-copy"
               : mode == 1 ? "incremental+full-copy-out"
                           : "incremental+changes-out",
               n, dt, dt > 0 ? (double)n / dt : 0.0);
    }
    return rc;
}

static int bench(const struct otasim_blklog *log, const struct blocks_opts *o, struct ota_err *e)
{
    uint64_t *pos = NULL, n = 0;
    int rc;

    if ((rc = otasim_blklog_points(log, o->unit, &pos, &n)) < 0)
        return ota_err_set(e, -rc, "out of memory");
    for (int mode = 0; rc == 0 && mode < 3; mode++)
        rc = bench_mode(log, o, pos, n, mode, e);
    free(pos);
    return rc;
}

/* ota-sim blocks check --recording DIR --point N [model options] [--out IMG] | --points A-B */
static int do_check(int argc, char **argv)
{
    const char *rec = NULL, *out = NULL;
    uint64_t point = 0, last = 0;
    int have_point = 0, rc;
    struct otasim_blk_model m;
    struct otasim_blk_model_flags mf = {0};
    struct ota_err e = {0};

    memset(&m, 0, sizeof(m));
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--recording") == 0)
            rec = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
        else if (strcmp(argv[i], "--point") == 0 && !have_point &&
                 parse_u64(argv[i + 1], &point) == 0)
            have_point = 1, last = point;
        else if (strcmp(argv[i], "--points") == 0 && !have_point && strchr(argv[i + 1], '-')) {
            char a[32];
            const char *dash = strchr(argv[i + 1], '-');
            snprintf(a, sizeof(a), "%.*s", (int)(dash - argv[i + 1]), argv[i + 1]);
            if (parse_u64(a, &point) < 0 || parse_u64(dash + 1, &last) < 0 || point > last)
                return fprintf(stderr, "ota-sim blocks check: --points A-B, A <= B: got %s\n",
                               argv[i + 1]),
                       EXIT_USAGE;
            have_point = 1;
        } else if (otasim_blk_model_opt(argv[i], argv[i + 1], &m, &mf) <= 0)
            return fprintf(stderr, "ota-sim blocks check: bad option %s %s\n", argv[i],
                           argv[i + 1]),
                   EXIT_USAGE;
    }
    if (!rec || !have_point || argc % 2 == 0) {
        fprintf(
            stderr,
            "ota-sim blocks check: --recording DIR and --point N (or --points A-B) are needed\n");
        return EXIT_USAGE;
    }
    if (otasim_blk_model_done(&m, &mf, "ota-sim blocks check") < 0)
        return EXIT_USAGE;
    rc = otasim_qblocks_check_range(rec, point, last, &m, out, &e);
    if (rc < 0) {
        fprintf(stderr, "ota-sim blocks check: %s\n", e.reason);
        return rc == -EINVAL || rc == -ENOENT ? EXIT_USAGE : EXIT_HARNESS;
    }
    return rc ? EXIT_FAILED : EXIT_OK;
}

int otasim_cli_blocks(int argc, char **argv)
{
    struct blocks_opts o;
    struct otasim_blklog log;
    struct ota_err e = {0};
    int rc, is_bench;

    if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    if (argc == 4 && strcmp(argv[2], "info") == 0)
        return do_info(argv[3]);
    if (argc >= 3 && strcmp(argv[2], "check") == 0)
        return do_check(argc, argv);
    if (argc < 3 || (strcmp(argv[2], "replay") != 0 && strcmp(argv[2], "bench") != 0)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    is_bench = strcmp(argv[2], "bench") == 0;
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!is_bench && !o.have_point) {
        fprintf(stderr, "ota-sim blocks: replay needs --point N\n");
        return EXIT_USAGE;
    }
    if (o.have_seed && o.unit != OTASIM_BLK_UNIT_FLUSH) {
        fprintf(stderr, "ota-sim blocks: --subset-seed needs --unit flush\n");
        return EXIT_USAGE;
    }
    if (o.model.erase && o.unit != OTASIM_BLK_UNIT_WRITE) {
        fprintf(stderr, "ota-sim blocks: --erase-block needs --unit write (the SD card)\n");
        return EXIT_USAGE;
    }
    if (is_bench && otasim_blk_model_on(&o.model)) {
        fprintf(stderr, "ota-sim blocks: bench takes no model (--torn-seed, --erase-block)\n");
        return EXIT_USAGE;
    }
    if (otasim_blklog_open(&log, o.log, &e) < 0)
        return bad_log(&e);
    rc = is_bench ? bench(&log, &o, &e) : replay(&log, &o, &e);
    otasim_blklog_close(&log);
    if (rc < 0) {
        fprintf(stderr, "ota-sim blocks: %s\n", e.reason);
        return rc == -EINVAL ? EXIT_USAGE : EXIT_HARNESS;
    }
    return EXIT_OK;
}
