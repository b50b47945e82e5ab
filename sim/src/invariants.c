/* The invariant checker (names and meaning: invariants.h). It looks at the
 * device from outside the agent: the tree, the boot env through
 * libubootenv (bootloader.c), the running app over HTTP, the agent's
 * database through SQLite and `ota-agent status --json`, the server's
 * reports through the admin API, and the interposer's journals for what was
 * written where and when. */
#include "otasim/invariants.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/journal.h"
#include "otasim/svc.h"

struct view {
    json_t *status; /* ota-agent status --json */
    char state[24];
    char app_version[32], app_slot[4];
    char root_version[32], root_slot[4];
    long long outbox;
    json_t *reports; /* the server's reports for the device (array) or NULL */
    char current[8]; /* readlink current */
};

static void check(struct otasim_trial *tr, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check(struct otasim_trial *tr, const char *name, int ok, const char *fmt, ...)
{
    struct otasim_check *c;
    va_list ap;

    if (tr->n_checks >= OTASIM_MAX_INVARIANTS)
        return;
    c = &tr->checks[tr->n_checks++];
    ota_strlcpy(c->name, name, sizeof(c->name));
    c->ok = ok;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
}

static const struct otasim_built *built_of(const struct otasim_trial *tr, const char *version)
{
    for (size_t i = 0; i < tr->sc->n_rel; i++)
        if (strcmp(tr->sc->rel[i].version, version) == 0 && !tr->sc->rel[i].bad_signature)
            return &tr->built[i];
    return NULL;
}

static void jstr(json_t *o, const char *a, const char *b, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, a);

    if (b)
        v = json_object_get(v, b);
    ota_strlcpy(buf, json_is_string(v) ? json_string_value(v) : "", cap);
}

static int load_view(struct otasim_device *d, struct view *v, struct ota_err *err)
{
    char *text = NULL, p[PATH_MAX + 32], path[256];
    ssize_t n;

    memset(v, 0, sizeof(v[0]));
    snprintf(p, sizeof(p), "%s/opt/app/current", d->root);
    n = readlink(p, v->current, sizeof(v->current) - 1);
    if (n < 0)
        v->current[0] = '\0';
    if (otasim_device_status(d, &text, err) == 0 &&
        ota_json_parse(text, strlen(text), &v->status, err) == 0) {
        jstr(v->status, "state", NULL, v->state, sizeof(v->state));
        jstr(v->status, "app", "version", v->app_version, sizeof(v->app_version));
        jstr(v->status, "app", "slot", v->app_slot, sizeof(v->app_slot));
        jstr(v->status, "rootfs", "version", v->root_version, sizeof(v->root_version));
        jstr(v->status, "rootfs", "slot", v->root_slot, sizeof(v->root_slot));
        v->outbox = json_integer_value(json_object_get(v->status, "outbox"));
    }
    free(text);
    text = NULL;
    if (strcmp(d->tr->sc->source, "fleet") == 0) {
        json_t *o = NULL;
        snprintf(path, sizeof(path), "/api/v1/reports?device=%s&limit=1000", d->tr->device_id);
        if (otasim_server_get(d->tr->srv, path, &text, err) == 0 &&
            ota_json_parse(text, strlen(text), &o, err) == 0) {
            v->reports = json_incref(json_object_get(o, "reports"));
            json_decref(o);
        }
        free(text);
    }
    return 0;
}

/* ---- journals: who wrote where ----------------------------------------- */

static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int is_write(enum otasim_op op)
{
    return op <= OTASIM_OP_RMDIR && op != OTASIM_OP_FSYNC && op != OTASIM_OP_SYNC;
}

/* "a", "b/", "/x/opt/app/b": the last component names the slot. */
static int target_slot(const char *t)
{
    size_t n = strlen(t);

    while (n > 0 && t[n - 1] == '/')
        n--;
    return n > 0 && t[n - 1] == 'b';
}

struct slotwrites {
    char lkg[256];    /* first write into the factory slot */
    char active[256]; /* first write into the then-active slot */
    uint64_t download_bytes;
};

static void scan_journals(struct otasim_device *d, const struct otasim_pass_info *passes,
                          size_t n_passes, struct slotwrites *w)
{
    int rootfs = d->tr->sc->profile == OTASIM_PROFILE_ROOTFS;
    char slot[2][PATH_MAX + 32], current_link[PATH_MAX + 32], dl[PATH_MAX + 32];

    memset(w, 0, sizeof(*w));
    for (int s = 0; s < 2; s++) {
        if (rootfs)
            snprintf(slot[s], sizeof(slot[s]), "%s", d->part[s]);
        else
            snprintf(slot[s], sizeof(slot[s]), "%s/opt/app/%c", d->root, "ab"[s]);
    }
    snprintf(current_link, sizeof(current_link), "%s/opt/app/current", d->root);
    snprintf(dl, sizeof(dl), "%s/var/lib/ota/download", d->root);
    for (size_t p = 0; p < n_passes; p++) {
        struct otasim_journal *j = NULL;
        int active = rootfs ? passes[p].booted : (passes[p].current[0] == 'b');
        /* temp symlink -> its target, to follow renames over `current` */
        char tmp_link[PATH_MAX] = "", tmp_target[16] = "";

        if (otasim_journal_load(passes[p].journal, &j, NULL) < 0)
            continue;
        for (size_t i = 0; i < j->n; i++) {
            const struct otasim_rec *r = &j->v[i];
            if (!r->done || r->result < 0)
                continue;
            if (r->op == OTASIM_OP_SYMLINK) {
                ota_strlcpy(tmp_link, r->path, sizeof(tmp_link));
                ota_strlcpy(tmp_target, r->path2, sizeof(tmp_target));
                if (strcmp(r->path, current_link) == 0)
                    active = target_slot(r->path2);
            }
            if (r->op == OTASIM_OP_RENAME && strcmp(r->path2, current_link) == 0 &&
                strcmp(r->path, tmp_link) == 0 && tmp_target[0])
                active = target_slot(tmp_target);
            if (!is_write(r->op))
                continue;
            if (r->op == OTASIM_OP_WRITE && under(r->path, dl))
                w->download_bytes += r->len;
            for (int s = 0; s < 2; s++) {
                int hit = under(r->path, slot[s]) ||
                          (r->path2[0] && r->op != OTASIM_OP_SYMLINK && under(r->path2, slot[s]));
                if (!hit)
                    continue;
                if (s == 0 && !w->lkg[0])
                    snprintf(w->lkg, sizeof(w->lkg), "pass %zu call %llu: %s %s", p + 1,
                             (unsigned long long)r->seq, otasim_op_names[r->op], r->path);
                if (s == active && !w->active[0])
                    snprintf(w->active, sizeof(w->active),
                             "pass %zu call %llu: %s %s (slot %c active)", p + 1,
                             (unsigned long long)r->seq, otasim_op_names[r->op], r->path, "ab"[s]);
            }
        }
        otasim_journal_free(j);
    }
}

/* ---- temp files ---------------------------------------------------------- */

static int find_temp(const char *dir, const char *skip1, const char *skip2, char *hit, size_t cap)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    int found = 0;

    if (!dh)
        return 0;
    while (!found && (e = readdir(dh))) {
        char p[PATH_MAX];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (strcmp(p, skip1) == 0 || strcmp(p, skip2) == 0)
            continue;
        if (fnmatch("*.tmp*", e->d_name, 0) == 0 || fnmatch("*.part", e->d_name, 0) == 0 ||
            fnmatch("*.broken*", e->d_name, 0) == 0 || fnmatch(".#*", e->d_name, 0) == 0) {
            snprintf(hit, cap, "%s", p);
            found = 1;
            break;
        }
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            found = find_temp(p, skip1, skip2, hit, cap);
    }
    closedir(dh);
    return found;
}

static int dir_entries(const char *dir, char *first, size_t cap)
{
    DIR *dh = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!dh)
        return 0;
    while ((e = readdir(dh)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            if (!n)
                snprintf(first, cap, "%s", e->d_name);
            n++;
        }
    closedir(dh);
    return n;
}

/* ---- the checks ------------------------------------------------------------ */

static void check_db(struct otasim_device *d)
{
    char p[PATH_MAX + 32], res[256] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0;

    snprintf(p, sizeof(p), "%s/var/lib/ota/agent.db", d->root);
    if (access(p, F_OK) != 0) {
        check(d->tr, "db-integrity", 0, "%s does not exist", p);
        return;
    }
    if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        ota_strlcpy(res, (const char *)sqlite3_column_text(st, 0), sizeof(res));
        ok = strcmp(res, "ok") == 0;
    } else {
        snprintf(res, sizeof(res), "%s", db ? sqlite3_errmsg(db) : "cannot open");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    check(d->tr, "db-integrity", ok, "PRAGMA integrity_check: %s", res);
}

static const char *last_final(json_t *reports, const char *update_version, char *buf, size_t cap)
{
    size_t i;
    json_t *r;

    buf[0] = '\0';
    json_array_foreach(reports, i, r)
    {
        const char *s = json_string_value(json_object_get(r, "status"));
        const char *v = json_string_value(json_object_get(r, "version"));
        if (!s || (strcmp(s, "success") != 0 && strcmp(s, "failure") != 0))
            continue;
        if (update_version && (!v || strcmp(v, update_version) != 0))
            continue;
        snprintf(buf, cap, "%s", s);
    }
    return buf;
}

static int any_success_for(json_t *reports, const char *version)
{
    size_t i;
    json_t *r;

    json_array_foreach(reports, i, r)
    {
        const char *s = json_string_value(json_object_get(r, "status"));
        const char *v = json_string_value(json_object_get(r, "version"));
        if (s && v && strcmp(s, "success") == 0 && strcmp(v, version) != 0)
            return 1; /* success for a version other than the one running */
    }
    return 0;
}

int otasim_invariants_check(struct otasim_device *d, const struct otasim_pass_info *passes,
                            size_t n_passes, const struct otasim_settle *settle,
                            const char *env_before, size_t env_before_len, struct ota_err *err)
{
    struct otasim_trial *tr = d->tr;
    const struct otasim_scenario *sc = tr->sc;
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    const struct otasim_release *tgt = otasim_scenario_target(sc);
    int rootfs = sc->profile == OTASIM_PROFILE_ROOTFS;
    const char *db_version, *db_slot;
    char running[32] = "", fin[16] = "", p[PATH_MAX + 64];
    struct slotwrites w;
    struct view v;
    long hs = 0;
    char *body = NULL;

    tr->n_checks = 0;
    if (load_view(d, &v, err) < 0)
        return -EIO;
    db_version = rootfs ? v.root_version : v.app_version;
    db_slot = rootfs ? v.root_slot : v.app_slot;
    ota_strlcpy(tr->final_state, v.state, sizeof(tr->final_state));
    ota_strlcpy(tr->final_version, db_version, sizeof(tr->final_version));
    ota_strlcpy(tr->final_slot, db_slot, sizeof(tr->final_slot));

    check(tr, "settled", settle->settled && v.status && strcmp(v.state, "IDLE") == 0,
          "%s%s state %s, outbox %lld",
          settle->settled ? "settled" : "not settled: ", settle->settled ? "," : settle->why,
          v.state[0] ? v.state : "(no status)", v.outbox);

    if (tr->fault.kind != OTASIM_FAULT_NONE) {
        char label[160];
        otasim_fault_label(&tr->fault, label, sizeof(label));
        check(tr, "fault-fired", tr->fired, "%s %s", label,
              tr->fired ? "fired" : "never fired: the agent did not get there");
    }

    /* one active slot */
    if (rootfs) {
        char bp[8] = "", ua[8] = "";
        int ok =
            otasim_bootenv_get(d->env_config, "boot_part", bp, sizeof(bp), NULL) == 0 &&
            (strcmp(bp, "A") == 0 || strcmp(bp, "B") == 0) &&
            (otasim_bootenv_get(d->env_config, "upgrade_available", ua, sizeof(ua), NULL) != 0 ||
             strcmp(ua, "0") == 0);
        if (sc->fault.kind == OTASIM_FAULT_CORRUPT_BOOTENV)
            ok = !d->boot_failed && d->booted_slot >= 0;
        check(tr, "one-active-slot", ok, "boot_part=%s upgrade_available=%s booted=%c", bp, ua,
              d->booted_slot >= 0 ? "ab"[d->booted_slot] : '-');
    } else {
        int ok = strcmp(v.current, "a") == 0 || strcmp(v.current, "b") == 0;
        check(tr, "one-active-slot", ok, "current -> '%s'", v.current);
    }

    /* complete */
    {
        const struct otasim_built *b = built_of(tr, db_version);
        char hex[65] = "";
        int ok = 0;
        if (!b) {
            check(tr, "active-slot-complete", 0, "the database names version '%s', no such release",
                  db_version);
        } else if (rootfs && d->qemu) {
            int slot = d->booted_slot;
            ok = slot >= 0 && strcmp(d->slot_version[slot], db_version) == 0;
            check(tr, "active-slot-complete", ok, "root%c says version '%s', database says %s",
                  slot >= 0 ? "AB"[slot] : '?', slot >= 0 ? d->slot_version[slot] : "", db_version);
        } else if (rootfs) {
            size_t idx = 0;
            int slot = d->booted_slot;
            ok = slot >= 0 && otasim_image_identify(&d->boot, slot, &idx, NULL) == 0 &&
                 strcmp(d->images[idx].version, db_version) == 0;
            check(tr, "active-slot-complete", ok, "root%c holds %s, database says %s",
                  slot >= 0 ? "AB"[slot] : '?', ok ? d->images[idx].version : "another image",
                  db_version);
        } else {
            snprintf(p, sizeof(p), "%s/opt/app/%s", d->root, v.current);
            ok = otasim_tree_digest(p, hex, NULL) == 0 && strcmp(hex, b->ref_digest) == 0;
            check(tr, "active-slot-complete", ok, "slot %s digest %.12s, release %s is %.12s",
                  v.current, hex[0] ? hex : "(unreadable)", db_version, b->ref_digest);
        }
    }

    /* bootable + running version */
    if (rootfs) {
        /* booted is not enough: a rootfs whose service never comes up must
         * not pass (the native model runs the demo app on every healthy one) */
        int up =
            d->qemu || (otasim_svc_run(d->root, OTASIM_SVC_IS_ACTIVE, NULL) == 0 &&
                        otasim_device_app_get(d, "/health", &hs, &body, NULL) == 0 && hs == 200);
        free(body);
        body = NULL;
        check(tr, "bootable", !d->boot_failed && d->booted_slot >= 0 && up, "last boot: %s%s",
              d->boot_failed ? "nothing bootable" : "booted",
              d->boot_failed || up ? "" : ", but its service is not up (/health)");
        ota_strlcpy(running, d->booted_version, sizeof(running));
        check(tr, "running-version",
              strcmp(running, db_version) == 0 && d->booted_slot >= 0 &&
                  db_slot[0] == "ab"[d->booted_slot],
              "booted %s (slot %c), database %s (slot %s)", running,
              d->booted_slot >= 0 ? "ab"[d->booted_slot] : '-', db_version, db_slot);
    } else if (d->qemu) {
        ota_strlcpy(running, d->probe_version, sizeof(running));
        check(tr, "bootable", d->probe_health == 200, "/health %d", d->probe_health);
        check(tr, "running-version",
              strcmp(running, db_version) == 0 && strcmp(v.current, db_slot) == 0,
              "app answers %s from current -> %s, database %s (slot %s)",
              running[0] ? running : "(nothing)", v.current, db_version, db_slot);
    } else {
        struct ota_err e = {0};
        int active = otasim_svc_run(d->root, OTASIM_SVC_IS_ACTIVE, &e);
        int ok =
            active == 0 && otasim_device_app_get(d, "/health", &hs, &body, &e) == 0 && hs == 200;
        check(tr, "bootable", ok, "service %s, /health %ld %s", active == 0 ? "active" : "inactive",
              hs, ok ? "" : e.reason);
        free(body);
        body = NULL;
        if (otasim_device_app_get(d, "/version", &hs, &body, NULL) == 0) {
            json_t *o = NULL;
            if (ota_json_parse(body, strlen(body), &o, NULL) == 0) {
                jstr(o, "version", NULL, running, sizeof(running));
                json_decref(o);
            }
        }
        free(body);
        check(tr, "running-version",
              strcmp(running, db_version) == 0 && strcmp(v.current, db_slot) == 0,
              "app answers %s from current -> %s, database %s (slot %s)",
              running[0] ? running : "(nothing)", v.current, db_version, db_slot);
    }

    /* boot env */
    if (rootfs) {
        char bp[8] = "", bc[8] = "";
        int ok;
        if (sc->fault.kind == OTASIM_FAULT_CORRUPT_BOOTENV) {
            char *now = NULL;
            size_t nn = 0;
            snprintf(p, sizeof(p), "%s/boot/uboot.env", d->root);
            ok = ota_fs_read_all(p, 1 << 20, &now, &nn, NULL) == 0 && nn == env_before_len &&
                 memcmp(now, env_before, nn) == 0;
            free(now);
            check(tr, "bootenv-consistent", ok, "the corrupt env was %s",
                  ok ? "left untouched" : "rewritten");
        } else {
            ok = otasim_bootenv_get(d->env_config, "boot_part", bp, sizeof(bp), NULL) == 0 &&
                 otasim_bootenv_get(d->env_config, "bootcount", bc, sizeof(bc), NULL) == 0 &&
                 strcmp(bc, "0") == 0 && bp[0] && db_slot[0] && (bp[0] | 0x20) == db_slot[0];
            check(tr, "bootenv-consistent", ok, "boot_part=%s bootcount=%s, database slot %s", bp,
                  bc, db_slot);
        }
    }

    scan_journals(d, passes, n_passes, &w);
    if (d->qemu) {
        /* no journal: the factory slot must still hold the factory release */
        char hex[65] = "";
        const struct otasim_built *b = fac ? built_of(tr, fac->version) : NULL;
        int ok;
        if (rootfs) {
            ok = fac && strcmp(d->slot_version[0], fac->version) == 0;
            check(tr, "lkg-untouched", ok, "rootA says version '%s', factory %s",
                  d->slot_version[0], fac ? fac->version : "?");
        } else {
            snprintf(p, sizeof(p), "%s/opt/app/a", d->root);
            ok = b && otasim_tree_digest(p, hex, NULL) == 0 && strcmp(hex, b->ref_digest) == 0;
            check(tr, "lkg-untouched", ok, "slot a digest %.12s, factory release %.12s",
                  hex[0] ? hex : "(unreadable)", b ? b->ref_digest : "?");
        }
    } else {
        check(tr, "lkg-untouched", !w.lkg[0], "%s",
              w.lkg[0] ? w.lkg : "factory slot never written");
        check(tr, "active-slot-untouched", !w.active[0], "%s",
              w.active[0] ? w.active : "no write into an active slot");
    }

    /* reports */
    if (v.reports) {
        char why[300] = "";
        int ok = 1;
        if (any_success_for(v.reports, running[0] ? running : db_version)) {
            ok = 0;
            snprintf(why, sizeof(why),
                     "the server got \"success\" for a version the device does "
                     "not run (runs %s)",
                     running[0] ? running : db_version);
        }
        last_final(v.reports, NULL, fin, sizeof(fin));
        if (ok && tgt && strcmp(db_version, tgt->version) == 0 && strcmp(fin, "success") != 0) {
            ok = 0;
            snprintf(why, sizeof(why), "the device runs %s but the last final report is '%s'",
                     tgt->version, fin[0] ? fin : "(none)");
        }
        if (ok && tgt && fac && strcmp(db_version, fac->version) == 0 &&
            strcmp(fin, "success") == 0) {
            ok = 0;
            snprintf(why, sizeof(why), "the device runs %s but the last final report is success",
                     fac->version);
        }
        check(tr, "truthful-report", ok, "%s", ok ? "reports agree with the device" : why);
    }
    ota_strlcpy(tr->final_report, fin[0] ? fin : "none", sizeof(tr->final_report));

    check_db(d);

    {
        char hit[PATH_MAX] = "", first[256] = "", stash[PATH_MAX + 32], run[PATH_MAX + 32];
        int ok;
        snprintf(stash, sizeof(stash), "%s/.sim", d->root);
        snprintf(run, sizeof(run), "%s/run", d->root);
        ok = !find_temp(d->root, stash, run, hit, sizeof(hit));
        snprintf(p, sizeof(p), "%s/.sim/stash", d->root);
        if (ok && access(p, F_OK) == 0 && dir_entries(p, first, sizeof(first)) > 0) {
            ok = 0;
            snprintf(hit, sizeof(hit), "%s/%s", p, first);
        }
        snprintf(p, sizeof(p), "%s/var/lib/ota/download", d->root);
        if (ok && strcmp(v.state, "IDLE") == 0 && dir_entries(p, first, sizeof(first)) > 0) {
            ok = 0;
            snprintf(hit, sizeof(hit), "%s/%s (download left while IDLE)", p, first);
        }
        check(tr, "no-temp-files", ok, "%s", ok ? "none" : hit);
    }

    /* the scenario's expectations */
    {
        const struct otasim_expect *x = &sc->expect;
        char why[400] = "";
        int ok = 1;
        if (x->version[0] && strcmp(x->version, db_version) != 0)
            ok = 0, snprintf(why, sizeof(why), "version %s, expected %s", db_version, x->version);
        else if (x->slot[0] && strcmp(x->slot, db_slot) != 0)
            ok = 0, snprintf(why, sizeof(why), "slot %s, expected %s", db_slot, x->slot);
        else if (x->report == OTASIM_EXPECT_REPORT_SUCCESS && strcmp(fin, "success") != 0)
            ok = 0, snprintf(why, sizeof(why), "final report '%s', expected success", fin);
        else if (x->report == OTASIM_EXPECT_REPORT_FAILURE && strcmp(fin, "failure") != 0)
            ok = 0, snprintf(why, sizeof(why), "final report '%s', expected failure", fin);
        else if (x->report == OTASIM_EXPECT_REPORT_NONE && fin[0])
            ok = 0, snprintf(why, sizeof(why), "final report '%s', expected none", fin);
        else if (x->recover_within_s && settle->recover_ms > (int64_t)x->recover_within_s * 1000)
            ok = 0, snprintf(why, sizeof(why), "recovered in %lld ms, bound %d s",
                             (long long)settle->recover_ms, x->recover_within_s);
        else if (x->min_health_ms && d->health_enter_ms && d->commit_enter_ms &&
                 d->commit_enter_ms - d->health_enter_ms < x->min_health_ms)
            ok = 0,
            snprintf(why, sizeof(why), "committed %lld ms after HEALTH_CHECK, want >= %d",
                     (long long)(d->commit_enter_ms - d->health_enter_ms), x->min_health_ms);
        else if (x->exact_download && tgt && !d->qemu) {
            const struct otasim_built *b = built_of(tr, tgt->version);
            uint64_t want = 0;
            struct stat st;
            if (b && stat(b->payload, &st) == 0)
                want = (uint64_t)st.st_size;
            if (w.download_bytes != want)
                ok = 0, snprintf(why, sizeof(why), "%llu payload bytes written, payload is %llu",
                                 (unsigned long long)w.download_bytes, (unsigned long long)want);
        }
        if (ok && x->min_attempts) {
            int attempts = 0;
            const char *s = tr->state_lines;
            while (s && (s = strstr(s, "\"to\":\"DOWNLOADING\""))) {
                attempts++;
                s++;
            }
            const char *q = tr->state_lines;
            while (q && (q = strstr(q, "(attempt "))) {
                attempts++;
                q++;
            }
            if (attempts < x->min_attempts)
                ok = 0, snprintf(why, sizeof(why), "%d download attempts seen, expected >= %d",
                                 attempts, x->min_attempts);
        }
        check(tr, "expected-outcome", ok, "%s", ok ? "as expected" : why);
    }

    tr->outcome = OTASIM_PASS;
    for (size_t i = 0; i < tr->n_checks; i++)
        if (!tr->checks[i].ok) {
            tr->outcome = OTASIM_FAIL;
            if (!tr->detail[0])
                snprintf(tr->detail, sizeof(tr->detail), "%s: %s", tr->checks[i].name,
                         tr->checks[i].detail);
        }
    json_decref(v.status);
    json_decref(v.reports);
    return 0;
}
