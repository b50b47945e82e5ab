/* The invariant checker (names and meaning: invariants.h). It looks at the
 * device from outside the agent: the tree, the boot env through
 * libubootenv (bootloader.c), the running app over HTTP, a copy of the
 * agent's database through SQLite and `ota-agent status --json`, the
 * server's reports through the admin API, and the interposer's journals for
 * what was written where and when.
 *
 * otasim_inv_view_load (invview.c) gathers all of it into a view first; then
 * one function per invariant reads the view. A piece that cannot be gathered
 * is kept as the reason it is missing, and the invariants that need it fail
 * on it. */
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

#include "ota/abboot.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/agent.h"
#include "otasim/device.h"

static int set(struct otasim_check *c, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void otasim_check_vset(struct otasim_check *c, const char *name, int ok, const char *fmt,
                       va_list ap)
{
    memset(c, 0, sizeof(*c));
    ota_strlcpy(c->name, name, sizeof(c->name));
    c->ok = ok;
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
}

static int set(struct otasim_check *c, const char *name, int ok, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    otasim_check_vset(c, name, ok, fmt, ap);
    va_end(ap);
    return 1;
}

static const struct otasim_trial *trial(const struct otasim_inv_view *v)
{
    return v->d->tr;
}

static int is_rootfs(const struct otasim_inv_view *v)
{
    return trial(v)->sc->profile == OTASIM_PROFILE_ROOTFS;
}

static const char *db_version(const struct otasim_inv_view *v)
{
    return v->db_version ? v->db_version : "";
}

static const char *db_slot(const struct otasim_inv_view *v)
{
    return v->db_slot ? v->db_slot : "";
}

static const struct otasim_built *built_of(const struct otasim_trial *tr, const char *version)
{
    for (size_t i = 0; i < tr->sc->n_rel; i++)
        if (strcmp(tr->sc->rel[i].version, version) == 0 && !tr->sc->rel[i].bad_signature)
            return &tr->built[i];
    return NULL;
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

/* ---- the invariants -------------------------------------------------------- */

int otasim_inv_settled(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_settle *s = v->settle;
    int settled = s && s->settled > 0;

    return set(c, "settled", settled && v->status && strcmp(v->state, "IDLE") == 0,
               "%s%s state %s, outbox %lld%s%s", settled ? "settled" : "not settled: ",
               settled ? "," : (s ? s->why : "(no settle record)"),
               v->state[0] ? v->state : "(no status)", v->outbox, v->status_err[0] ? ": " : "",
               v->status_err);
}

/* Thin: whether the fault fired is the trial's to find out (trial.c,
 * device.c); this only turns it into a verdict. */
int otasim_inv_fault_fired(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_trial *tr = trial(v);
    char label[160];

    otasim_fault_label(&tr->fault, label, sizeof(label));
    return set(c, "fault-fired", tr->fired, "%s %s", label,
               tr->fired ? "fired" : "never fired: the agent did not get there");
}

/* As the server counted the rule's applications to the trial's device
 * (faults.c fills tr->srv_rules). */
int otasim_inv_server_rule_fired(const struct otasim_inv_view *v, size_t i, struct otasim_check *c)
{
    const struct otasim_trial *tr = trial(v);
    const struct otasim_rule_seen *rs;

    if (i >= tr->n_srv_rules)
        return 0;
    rs = &tr->srv_rules[i];
    if (rs->applied < 0)
        return set(c, "fault-fired", 0, "server rule %s: its applied count is unknown: %s",
                   rs->rule, tr->srv_rules_why[0] ? tr->srv_rules_why : "not asked");
    if (rs->applied > 0)
        return set(c, "fault-fired", 1, "server rule %s applied %lld time%s", rs->rule, rs->applied,
                   rs->applied == 1 ? "" : "s");
    return set(c, "fault-fired", 0,
               "server rule %s never applied: no request of the device matched it", rs->rule);
}

int otasim_inv_one_active_slot(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;

    if (is_rootfs(v)) {
        char bp[8] = "", ua[8] = "";
        int ok = otasim_bootenv_get(d->env_config, OTA_ENV_BOOT_PART, bp, sizeof(bp), NULL) == 0 &&
                 (strcmp(bp, OTA_ENV_SLOT_A) == 0 || strcmp(bp, OTA_ENV_SLOT_B) == 0) &&
                 (otasim_bootenv_get(d->env_config, OTA_ENV_UPGRADE_AVAILABLE, ua, sizeof(ua),
                                     NULL) != 0 ||
                  strcmp(ua, "0") == 0);
        if (trial(v)->sc->fault.kind == OTASIM_FAULT_CORRUPT_BOOTENV)
            ok = !d->boot_failed && d->booted_slot >= 0;
        return set(c, "one-active-slot", ok, "boot_part=%s upgrade_available=%s booted=%c", bp, ua,
                   d->booted_slot >= 0 ? "ab"[d->booted_slot] : '-');
    }
    return set(c, "one-active-slot", strcmp(v->current, "a") == 0 || strcmp(v->current, "b") == 0,
               "current -> '%s'", v->current);
}

int otasim_inv_active_slot_complete(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;
    const struct otasim_built *b = built_of(trial(v), db_version(v));
    const char *dbv = db_version(v);
    char hex[65] = "", p[PATH_MAX + 32];
    int slot = d->booted_slot, ok;

    if (!b)
        return set(c, "active-slot-complete", 0, "the database names version '%s', no such release",
                   dbv);
    if (is_rootfs(v) && d->qemu) {
        ok = slot >= 0 && strcmp(d->slot_version[slot], dbv) == 0;
        return set(c, "active-slot-complete", ok, "root%c says version '%s', database says %s",
                   slot >= 0 ? "AB"[slot] : '?', slot >= 0 ? d->slot_version[slot] : "", dbv);
    }
    if (is_rootfs(v)) {
        size_t idx = 0;
        ok = slot >= 0 && otasim_image_identify(&d->boot, slot, &idx, NULL) == 0 &&
             strcmp(d->images[idx].version, dbv) == 0;
        return set(c, "active-slot-complete", ok, "root%c holds %s, database says %s",
                   slot >= 0 ? "AB"[slot] : '?', ok ? d->images[idx].version : "another image",
                   dbv);
    }
    snprintf(p, sizeof(p), "%s/opt/app/%s", d->root, v->current);
    ok = v->current[0] && otasim_tree_digest(p, hex, NULL) == 0 && strcmp(hex, b->ref_digest) == 0;
    return set(c, "active-slot-complete", ok, "slot %s digest %.12s, release %s is %.12s",
               v->current, hex[0] ? hex : "(unreadable)", dbv, b->ref_digest);
}

int otasim_inv_bootable(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;
    int ok;

    if (is_rootfs(v)) {
        /* booted is not enough: a rootfs whose service never comes up must
         * not pass (the native model runs the demo app on every healthy one) */
        int up = d->qemu || (v->svc_active && v->health == 200);
        return set(c, "bootable", !d->boot_failed && d->booted_slot >= 0 && up, "last boot: %s%s",
                   d->boot_failed || d->booted_slot < 0 ? "nothing bootable" : "booted",
                   d->boot_failed || d->booted_slot < 0 || up
                       ? ""
                       : ", but its service is not up (/health)");
    }
    if (d->qemu)
        return set(c, "bootable", d->probe_health == 200, "/health %d", d->probe_health);
    ok = v->svc_active && v->health == 200;
    return set(c, "bootable", ok, "service %s, /health %ld %s",
               v->svc_active ? "active" : "inactive", v->health, ok ? "" : v->health_err);
}

int otasim_inv_running_version(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;
    const char *dbv = db_version(v), *dbs = db_slot(v);

    if (is_rootfs(v))
        return set(c, "running-version",
                   strcmp(v->running, dbv) == 0 && d->booted_slot >= 0 &&
                       dbs[0] == "ab"[d->booted_slot],
                   "booted %s (slot %c), database %s (slot %s)", v->running,
                   d->booted_slot >= 0 ? "ab"[d->booted_slot] : '-', dbv, dbs);
    return set(c, "running-version", strcmp(v->running, dbv) == 0 && strcmp(v->current, dbs) == 0,
               "app answers %s from current -> %s, database %s (slot %s)",
               v->running[0] ? v->running : "(nothing)", v->current, dbv, dbs);
}

int otasim_inv_bootenv_consistent(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;
    char bp[8] = "", bc[8] = "", ua[8] = "", p[PATH_MAX + 32];
    const char *dbs = db_slot(v);
    int ok;

    if (trial(v)->sc->fault.kind == OTASIM_FAULT_CORRUPT_BOOTENV) {
        /* the agent must not "repair" an env it cannot read: that would
         * write a default env over whatever the bootloader trusts */
        char *now = NULL;
        size_t nn = 0;
        snprintf(p, sizeof(p), "%s/boot/uboot.env", d->root);
        ok = v->env_before && ota_fs_read_all(p, 1 << 20, &now, &nn, NULL) == 0 &&
             nn == v->env_before_len && memcmp(now, v->env_before, nn) == 0;
        free(now);
        return set(c, "bootenv-consistent", ok, "the corrupt env was %s",
                   ok ? "left untouched" : "rewritten");
    }
    /* bootcount=0 is the settled agent's only where its contract clears it
     * (agent.h: settles_bootcount); else the count may stay, but no trial
     * boot may be pending. */
    ok = otasim_bootenv_get(d->env_config, OTA_ENV_BOOT_PART, bp, sizeof(bp), NULL) == 0 &&
         otasim_bootenv_get(d->env_config, OTA_ENV_BOOTCOUNT, bc, sizeof(bc), NULL) == 0 && bp[0] &&
         dbs[0] && (bp[0] | 0x20) == dbs[0];
    if (d->agent->settles_bootcount)
        ok = ok && strcmp(bc, "0") == 0;
    else
        ok = ok &&
             otasim_bootenv_get(d->env_config, OTA_ENV_UPGRADE_AVAILABLE, ua, sizeof(ua), NULL) ==
                 0 &&
             strcmp(ua, "0") == 0;
    return set(c, "bootenv-consistent", ok, "boot_part=%s bootcount=%s%s%s, %s slot %s", bp, bc,
               d->agent->settles_bootcount ? "" : " upgrade_available=", ua,
               d->agent->state_db[0] ? "database" : "the agent's", dbs);
}

int otasim_inv_lkg_untouched(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_device *d = v->d;
    const struct otasim_trial *tr = trial(v);
    const struct otasim_release *fac = otasim_scenario_factory(tr->sc);

    if (d->qemu) {
        /* no journal: the factory slot must still hold the factory release */
        const struct otasim_built *b = fac ? built_of(tr, fac->version) : NULL;
        char hex[65] = "", p[PATH_MAX + 32];
        int ok;
        if (is_rootfs(v)) {
            ok = fac && strcmp(d->slot_version[0], fac->version) == 0;
            return set(c, "lkg-untouched", ok, "rootA says version '%s', factory %s",
                       d->slot_version[0], fac ? fac->version : "?");
        }
        snprintf(p, sizeof(p), "%s/opt/app/a", d->root);
        ok = b && otasim_tree_digest(p, hex, NULL) == 0 && strcmp(hex, b->ref_digest) == 0;
        return set(c, "lkg-untouched", ok, "slot a digest %.12s, factory release %.12s",
                   hex[0] ? hex : "(unreadable)", b ? b->ref_digest : "?");
    }
    if (!v->writes.read)
        return set(c, "lkg-untouched", 0, "the journals were not read");
    if (v->writes.missing[0])
        return set(c, "lkg-untouched", 0, "%s", v->writes.missing);
    return set(c, "lkg-untouched", !v->writes.lkg[0], "%s",
               v->writes.lkg[0] ? v->writes.lkg : "factory slot never written");
}

int otasim_inv_active_slot_untouched(const struct otasim_inv_view *v, struct otasim_check *c)
{
    if (!v->writes.read)
        return set(c, "active-slot-untouched", 0, "the journals were not read");
    if (v->writes.missing[0])
        return set(c, "active-slot-untouched", 0, "%s", v->writes.missing);
    return set(c, "active-slot-untouched", !v->writes.active[0], "%s",
               v->writes.active[0] ? v->writes.active : "no write into an active slot");
}

int otasim_inv_truthful_report(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_scenario *sc = trial(v)->sc;
    const struct otasim_release *fac = otasim_scenario_factory(sc);
    const struct otasim_release *tgt = otasim_scenario_target(sc);
    const char *dbv = db_version(v), *runs = v->running[0] ? v->running : dbv;
    const char *whose =
        strcmp(v->reports_from, "history") == 0 ? "the agent's history" : "the server";

    if (!v->reports)
        return set(c, "truthful-report", 0, "cannot check the reports: %s",
                   v->reports_err[0] ? v->reports_err : "none were read");
    if (any_success_for(v->reports, runs))
        return set(c, "truthful-report", 0,
                   "%s has \"success\" for a version the device does not run (runs %s)", whose,
                   runs);
    if (tgt && strcmp(dbv, tgt->version) == 0 && strcmp(v->fin, "success") != 0)
        return set(c, "truthful-report", 0,
                   "the device runs %s but the last final report (%s) is '%s'", tgt->version, whose,
                   v->fin[0] ? v->fin : "(none)");
    if (tgt && fac && strcmp(dbv, fac->version) == 0 && strcmp(v->fin, "success") == 0)
        return set(c, "truthful-report", 0,
                   "the device runs %s but the last final report (%s) is success", fac->version,
                   whose);
    return set(c, "truthful-report", 1, "%s agrees with the device (%zu reports)", whose,
               json_array_size(v->reports));
}

int otasim_inv_db_integrity(const struct otasim_inv_view *v, struct otasim_check *c)
{
    char res[256] = "", note[64] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0, rc;

    if (!v->db_copy[0])
        return set(c, "db-integrity", 0, "%s",
                   v->db_copy_err[0] ? v->db_copy_err : "no copy of the database");
    rc = sqlite3_open_v2(v->db_copy, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    if ((rc & 0xff) == SQLITE_READONLY) {
        /* A hot rollback journal: a read-only connection cannot roll it
         * back, and the agent's next open would. Do that on the copy. */
        sqlite3_finalize(st);
        sqlite3_close(db);
        st = NULL;
        db = NULL;
        snprintf(note, sizeof(note), " (hot journal rolled back on the copy)");
        rc = sqlite3_open_v2(v->db_copy, &db, SQLITE_OPEN_READWRITE, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    }
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        ota_strlcpy(res, (const char *)sqlite3_column_text(st, 0), sizeof(res));
        ok = strcmp(res, "ok") == 0;
    } else {
        snprintf(res, sizeof(res), "%s", db ? sqlite3_errmsg(db) : "cannot open");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return set(c, "db-integrity", ok, "PRAGMA integrity_check: %s%s", res, note);
}

int otasim_inv_no_temp_files(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const char *root = v->d->root;
    char hit[PATH_MAX] = "", first[256] = "", stash[PATH_MAX + 32], run[PATH_MAX + 32];
    char p[PATH_MAX + 32];
    int ok;

    snprintf(stash, sizeof(stash), "%s/.sim", root);
    snprintf(run, sizeof(run), "%s/run", root);
    ok = !find_temp(root, stash, run, hit, sizeof(hit));
    snprintf(p, sizeof(p), "%s/.sim/stash", root);
    if (ok && access(p, F_OK) == 0 && dir_entries(p, first, sizeof(first)) > 0) {
        ok = 0;
        snprintf(hit, sizeof(hit), "%s/%s", p, first);
    }
    snprintf(p, sizeof(p), "%s/var/lib/ota/download", root);
    if (ok && strcmp(v->state, "IDLE") == 0 && dir_entries(p, first, sizeof(first)) > 0) {
        ok = 0;
        snprintf(hit, sizeof(hit), "%s/%s (download left while IDLE)", p, first);
    }
    return set(c, "no-temp-files", ok, "%s", ok ? "none" : hit);
}

/* The state the agent found after the fault: from its journals, else (no
 * journal: QEMU) the state a state trigger fired in (made durable before the
 * line was written). */
static const char *found_state(const struct otasim_inv_view *v)
{
    const struct otasim_trial *tr = trial(v);

    if (v->found_state[0])
        return v->found_state;
    if (tr->fired && tr->fault.trigger.kind == OTASIM_TRIGGER_STATE)
        return tr->fault.trigger.state;
    return "";
}

static const struct otasim_expect_unless *unless_for(const struct otasim_expect *x,
                                                     const char *found)
{
    for (size_t i = 0; found[0] && i < x->n_unless && i < OTASIM_MAX_UNLESS; i++)
        for (size_t k = 0; k < x->unless[i].n_found && k < 4; k++)
            if (strcmp(x->unless[i].found[k], found) == 0)
                return &x->unless[i];
    return NULL;
}

static int count_attempts(const char *lines)
{
    int attempts = 0;
    const char *s = lines;

    while (s && (s = strstr(s, "\"to\":\"DOWNLOADING\""))) {
        attempts++;
        s++;
    }
    s = lines;
    while (s && (s = strstr(s, "(attempt "))) {
        attempts++;
        s++;
    }
    return attempts;
}

int otasim_inv_expected_outcome(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_trial *tr = trial(v);
    const struct otasim_device *d = v->d;
    const struct otasim_expect *x = &tr->sc->expect;
    const struct otasim_release *tgt = otasim_scenario_target(tr->sc);
    const char *found = found_state(v), *version = x->version, *slot = x->slot;
    const char *dbv = db_version(v), *dbs = db_slot(v), *fin = v->fin;
    const struct otasim_expect_unless *u = unless_for(x, found);
    enum otasim_report_expect report = x->report;
    char why[400] = "", note[300] = "";

    if (u) {
        version = u->version;
        slot = u->slot;
        report = u->report;
        snprintf(note, sizeof(note), " (the agent found %s after the fault: %s)", found, u->why);
    } else if (found[0]) {
        snprintf(note, sizeof(note), " (the agent found %s after the fault)", found);
    }
    if (version[0] && strcmp(version, dbv) != 0)
        snprintf(why, sizeof(why), "version %s, expected %s", dbv, version);
    else if (slot[0] && strcmp(slot, dbs) != 0)
        snprintf(why, sizeof(why), "slot %s, expected %s", dbs, slot);
    else if (report == OTASIM_EXPECT_REPORT_SUCCESS && strcmp(fin, "success") != 0)
        snprintf(why, sizeof(why), "final report '%s', expected success", fin);
    else if (report == OTASIM_EXPECT_REPORT_FAILURE && strcmp(fin, "failure") != 0)
        snprintf(why, sizeof(why), "final report '%s', expected failure", fin);
    else if (report == OTASIM_EXPECT_REPORT_NONE && fin[0])
        snprintf(why, sizeof(why), "final report '%s', expected none", fin);
    else if (x->recover_within_s && v->settle &&
             v->settle->recover_ms > (int64_t)x->recover_within_s * 1000)
        snprintf(why, sizeof(why), "recovered in %lld ms, bound %d s",
                 (long long)v->settle->recover_ms, x->recover_within_s);
    else if (x->min_health_ms && d->health_enter_ms && d->commit_enter_ms &&
             d->commit_enter_ms - d->health_enter_ms < x->min_health_ms)
        snprintf(why, sizeof(why), "committed %lld ms after HEALTH_CHECK, want >= %d",
                 (long long)(d->commit_enter_ms - d->health_enter_ms), x->min_health_ms);
    else if (x->exact_download && tgt && !d->qemu) {
        const struct otasim_built *b = built_of(tr, tgt->version);
        uint64_t want = 0;
        struct stat st;
        if (b && stat(b->payload, &st) == 0)
            want = (uint64_t)st.st_size;
        if (!v->writes.read || v->writes.missing[0])
            snprintf(why, sizeof(why), "payload bytes written unknown: %s",
                     v->writes.read ? v->writes.missing : "the journals were not read");
        else if (v->writes.download_bytes != want)
            snprintf(why, sizeof(why), "%llu payload bytes written, payload is %llu",
                     (unsigned long long)v->writes.download_bytes, (unsigned long long)want);
    }
    if (!why[0] && x->min_attempts) {
        int attempts = count_attempts(tr->state_lines);
        if (attempts < x->min_attempts)
            snprintf(why, sizeof(why), "%d download attempts seen, expected >= %d", attempts,
                     x->min_attempts);
    }
    return set(c, "expected-outcome", !why[0], "%s%s", why[0] ? why : "as expected", note);
}

int otasim_inv_standby_waits(const struct otasim_inv_view *v, struct otasim_check *c)
{
    const struct otasim_trial *tr = trial(v);
    const char *lines = tr->state_lines ? tr->state_lines : "";
    size_t before = tr->activated ? tr->activated_at : strlen(lines);
    const char *sw = strstr(lines, "\"to\":\"SWITCHING\"");
    int early = sw && (size_t)(sw - lines) < before;

    return set(c, "standby-waits", !early, "%s",
               early           ? "switched before the rollout was activated"
               : tr->activated ? "no switch before the activation"
                               : "never activated, never switched");
}

/* ---- the driver ------------------------------------------------------------ */

/* In the order the checks appear in a trial's report. fault-fired's server
 * rules follow the trial's own fault. */
const struct otasim_invariant otasim_invariants[] = {
    {"settled", otasim_inv_settled, NULL, OTASIM_INV_ALL, 1},
    {"fault-fired", otasim_inv_fault_fired, NULL, OTASIM_INV_FAULTED, 0},
    {"fault-fired", NULL, otasim_inv_server_rule_fired, OTASIM_INV_ALL, 0},
    {"one-active-slot", otasim_inv_one_active_slot, NULL, OTASIM_INV_ALL, 1},
    {"active-slot-complete", otasim_inv_active_slot_complete, NULL, OTASIM_INV_ALL, 0},
    {"bootable", otasim_inv_bootable, NULL, OTASIM_INV_ALL, 1},
    {"running-version", otasim_inv_running_version, NULL, OTASIM_INV_ALL, 1},
    {"bootenv-consistent", otasim_inv_bootenv_consistent, NULL, OTASIM_INV_ROOTFS, 0},
    {"lkg-untouched", otasim_inv_lkg_untouched, NULL, OTASIM_INV_ALL, 0},
    {"active-slot-untouched", otasim_inv_active_slot_untouched, NULL, OTASIM_INV_NATIVE, 0},
    {"truthful-report", otasim_inv_truthful_report, NULL, OTASIM_INV_ALL, 1},
    {"db-integrity", otasim_inv_db_integrity, NULL, OTASIM_INV_STATE_DB, 0},
    {"no-temp-files", otasim_inv_no_temp_files, NULL, OTASIM_INV_ALL, 0},
    {"expected-outcome", otasim_inv_expected_outcome, NULL, OTASIM_INV_ALL, 0},
    {"standby-waits", otasim_inv_standby_waits, NULL, OTASIM_INV_BLUE_GREEN, 0},
};
const size_t otasim_n_invariants = sizeof(otasim_invariants) / sizeof(otasim_invariants[0]);

const struct otasim_invariant *otasim_inv_find(const char *name)
{
    for (size_t i = 0; i < otasim_n_invariants; i++)
        if (otasim_invariants[i].check && strcmp(otasim_invariants[i].name, name) == 0)
            return &otasim_invariants[i];
    return NULL;
}

int otasim_inv_applies(const struct otasim_invariant *inv, const struct otasim_inv_view *v)
{
    if (v->in_memory && !inv->in_memory)
        return 0;
    switch (inv->scope) {
    case OTASIM_INV_ROOTFS:
        return is_rootfs(v);
    case OTASIM_INV_NATIVE:
        return !v->d->qemu;
    case OTASIM_INV_FAULTED:
        return trial(v)->fault.kind != OTASIM_FAULT_NONE;
    case OTASIM_INV_BLUE_GREEN:
        return trial(v)->sc->blue_green;
    case OTASIM_INV_STATE_DB:
        return v->d->agent->state_db[0] != '\0';
    default:
        return 1;
    }
}

static void add_check(struct otasim_trial *tr, const struct otasim_check *c)
{
    if (tr->n_checks < OTASIM_MAX_INVARIANTS)
        tr->checks[tr->n_checks++] = *c;
}

/* Runs the table on v into tr->checks. */
static void run_checks(const struct otasim_inv_view *v, struct otasim_trial *tr)
{
    for (size_t i = 0; i < otasim_n_invariants; i++) {
        const struct otasim_invariant *inv = &otasim_invariants[i];
        struct otasim_check c;
        if (!otasim_inv_applies(inv, v))
            continue;
        if (inv->check && inv->check(v, &c))
            add_check(tr, &c);
        for (size_t k = 0; inv->each && tr->n_checks < OTASIM_MAX_INVARIANTS && inv->each(v, k, &c);
             k++)
            add_check(tr, &c);
    }
}

/* PASS unless a check failed; the first failure is the trial's detail. */
static void verdict(struct otasim_trial *tr)
{
    tr->outcome = OTASIM_PASS;
    for (size_t i = 0; i < tr->n_checks; i++)
        if (!tr->checks[i].ok) {
            tr->outcome = OTASIM_FAIL;
            if (!tr->detail[0])
                snprintf(tr->detail, sizeof(tr->detail), "%s: %s", tr->checks[i].name,
                         tr->checks[i].detail);
        }
}

int otasim_invariants_check(struct otasim_device *d, const struct otasim_pass_info *passes,
                            size_t n_passes, const struct otasim_settle *settle,
                            const char *env_before, size_t env_before_len, struct ota_err *err)
{
    struct otasim_trial *tr = d->tr;
    struct otasim_inv_view v;
    int r;

    tr->n_checks = 0;
    if ((r = otasim_inv_view_load(d, passes, n_passes, settle, env_before, env_before_len, &v,
                                  err)) < 0) {
        otasim_inv_view_free(&v);
        return r;
    }
    ota_strlcpy(tr->final_state, v.state, sizeof(tr->final_state));
    ota_strlcpy(tr->final_version, db_version(&v), sizeof(tr->final_version));
    ota_strlcpy(tr->final_slot, db_slot(&v), sizeof(tr->final_slot));
    ota_strlcpy(tr->final_report, v.fin[0] ? v.fin : "none", sizeof(tr->final_report));
    run_checks(&v, tr);
    verdict(tr);
    otasim_inv_view_free(&v);
    return 0;
}

/* The agent's state at power-on: its journal row (IDLE: none). */
void otasim_inv_db_state(const char *db, char *buf, size_t cap)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    ota_strlcpy(buf, "IDLE", cap);
    if (access(db, F_OK) < 0)
        return;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, "SELECT state FROM journal WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
            ota_strlcpy(buf, (const char *)sqlite3_column_text(st, 0), cap);
        else if (rc != SQLITE_DONE) /* the table's pages do not read (corrupt) */
            ota_strlcpy(buf, "(unreadable)", cap);
    } else if (!strstr(sqlite3_errmsg(h), "no such table")) {
        ota_strlcpy(buf, "(unreadable)", cap);
    }
    /* no journal table yet: the agent made the file and had not written its
     * schema; its next start makes it and begins IDLE */
    sqlite3_finalize(st);
    sqlite3_close(h);
}
