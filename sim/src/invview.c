/* The view the invariant checker reads (invariants.h): gathered once per
 * trial from the device, the agent (`ota-agent status --json`, a copy of its
 * database), the server's reports, the app, and the interposer's journals
 * (who wrote where). A piece that cannot be gathered is kept as the reason
 * it is missing. */
#include "otasim/invariants.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/agent.h"
#include "otasim/journal.h"
#include "otasim/svc.h"

static const struct otasim_trial *trial(const struct otasim_inv_view *v)
{
    return v->d->tr;
}

static int is_rootfs(const struct otasim_inv_view *v)
{
    return trial(v)->sc->profile == OTASIM_PROFILE_ROOTFS;
}

static void jstr(json_t *o, const char *a, const char *b, char *buf, size_t cap)
{
    json_t *v = json_object_get(o, a);

    if (b)
        v = json_object_get(v, b);
    ota_strlcpy(buf, json_is_string(v) ? json_string_value(v) : "", cap);
}

/* The status of the last final report (for update_version only, if set). */
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

/* ---- the view ------------------------------------------------------------- */

void otasim_inv_view_reports(struct otasim_inv_view *v, json_t *reports, const char *from)
{
    json_decref(v->reports);
    v->reports = reports;
    ota_strlcpy(v->reports_from, from ? from : "", sizeof(v->reports_from));
    last_final(reports, NULL, v->fin, sizeof(v->fin));
}

void otasim_inv_view_status(struct otasim_inv_view *v, json_t *status)
{
    const struct otasim_scenario *sc = trial(v)->sc;

    if (v->status != status)
        json_decref(v->status);
    v->status = status;
    jstr(status, "state", NULL, v->state, sizeof(v->state));
    jstr(status, "app", "version", v->app_version, sizeof(v->app_version));
    jstr(status, "app", "slot", v->app_slot, sizeof(v->app_slot));
    jstr(status, "rootfs", "version", v->root_version, sizeof(v->root_version));
    jstr(status, "rootfs", "slot", v->root_slot, sizeof(v->root_slot));
    v->outbox = json_integer_value(json_object_get(status, "outbox"));
    v->db_version = is_rootfs(v) ? v->root_version : v->app_version;
    v->db_slot = is_rootfs(v) ? v->root_slot : v->app_slot;
    if (strcmp(sc->source, "github") == 0) {
        /* No server keeps reports: the agent's own history is what it
         * claims (newest first in the status; oldest first here). */
        json_t *hist = json_object_get(status, "history"), *a;
        if (!json_is_array(hist)) {
            otasim_inv_view_reports(v, NULL, NULL);
            snprintf(v->reports_err, sizeof(v->reports_err), "%s",
                     status ? "the agent's status has no history"
                            : "no agent status, so no history to check");
            return;
        }
        a = json_array();
        for (size_t i = json_array_size(hist); a && i-- > 0;)
            json_array_append(a, json_array_get(hist, i));
        otasim_inv_view_reports(v, a, "history");
    }
}

void otasim_inv_view_free(struct otasim_inv_view *v)
{
    json_decref(v->status);
    json_decref(v->reports);
    v->status = NULL;
    v->reports = NULL;
}

static int copy_file(const char *from, const char *to, struct ota_err *err)
{
    char buf[65536];
    int in, out, r = 0;
    ssize_t n;

    in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ota_err_set(err, errno, "%s: %s", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        r = ota_err_set(err, errno, "%s: %s", to, strerror(errno));
        close(in);
        return r;
    }
    while ((n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            r = ota_err_set(err, errno ? errno : EIO, "copy %s to %s: %s", from, to,
                            strerror(errno ? errno : EIO));
            break;
        }
    }
    close(in);
    if (close(out) < 0 && r == 0)
        r = ota_err_set(err, errno, "%s: %s", to, strerror(errno));
    return r;
}

int otasim_inv_copy_db(const char *db, const char *dir, char *ret_copy, size_t cap,
                       struct ota_err *err)
{
    /* the -wal holds committed transactions not yet in the main file; a
     * -journal (rollback mode) what a hot rollback would restore */
    static const char *const sfx[] = {"", "-wal", "-journal", "-shm"};
    const char *base = strrchr(db, '/') ? strrchr(db, '/') + 1 : db;
    char src[PATH_MAX + 16], dst[PATH_MAX + 16];
    int r;

    ret_copy[0] = '\0';
    if (access(db, F_OK) != 0)
        return ota_err_set(err, ENOENT, "%s does not exist", db);
    if ((r = ota_fs_mkdirs(dir, err)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        snprintf(src, sizeof(src), "%s%s", db, sfx[i]);
        snprintf(dst, sizeof(dst), "%s/%s%s", dir, base, sfx[i]);
        if (unlink(dst) < 0 && errno != ENOENT)
            return ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
        /* the -shm is an index SQLite rebuilds from the -wal: not copied */
        if (i == 3 || access(src, F_OK) != 0)
            continue;
        if ((r = copy_file(src, dst, err)) < 0)
            return r;
    }
    if ((size_t)snprintf(ret_copy, cap, "%s/%s", dir, base) >= cap)
        return ota_err_set(err, ENAMETOOLONG, "%s/%s: too long", dir, base);
    return 0;
}

static void load_reports(struct otasim_device *d, struct otasim_inv_view *v)
{
    char path[256], *text = NULL;
    struct ota_err e = {0};
    json_t *o = NULL, *list;

    snprintf(path, sizeof(path), "/api/v1/reports?device=%s&limit=1000", d->tr->device_id);
    if (!d->tr->srv) {
        ota_strlcpy(v->reports_err, "no server to ask for the reports", sizeof(v->reports_err));
        return;
    }
    if (otasim_server_get(d->tr->srv, path, &text, &e) < 0 ||
        ota_json_parse(text, strlen(text), &o, &e) < 0) {
        snprintf(v->reports_err, sizeof(v->reports_err), "the server's reports: %s", e.reason);
        free(text);
        return;
    }
    free(text);
    list = json_object_get(o, "reports");
    if (!json_is_array(list))
        snprintf(v->reports_err, sizeof(v->reports_err),
                 "the server's answer to %s holds no reports list", path);
    else
        otasim_inv_view_reports(v, json_incref(list), "server");
    json_decref(o);
}

static void probe_app(struct otasim_device *d, struct otasim_inv_view *v)
{
    struct ota_err e = {0};
    char *body = NULL;
    long hs = 0;

    v->svc_active = otasim_svc_run(d->root, OTASIM_SVC_IS_ACTIVE, &e) == 0;
    if (otasim_device_app_get(d, "/health", &hs, &body, &e) == 0)
        v->health = hs;
    else
        ota_strlcpy(v->health_err, e.reason, sizeof(v->health_err));
    free(body);
    body = NULL;
    if (otasim_device_app_get(d, "/version", &hs, &body, NULL) == 0) {
        json_t *o = NULL;
        if (ota_json_parse(body, strlen(body), &o, NULL) == 0) {
            jstr(o, "version", NULL, v->running, sizeof(v->running));
            json_decref(o);
        }
    }
    free(body);
}

int otasim_inv_view_load(struct otasim_device *d, const struct otasim_pass_info *passes,
                         size_t n_passes, const struct otasim_settle *settle,
                         const char *env_before, size_t env_before_len, struct otasim_inv_view *v,
                         struct ota_err *err)
{
    char p[PATH_MAX + 32], dir[PATH_MAX + 32], *text = NULL;
    struct ota_err e = {0};
    json_t *status = NULL;
    ssize_t n;

    (void)err;
    memset(v, 0, sizeof(*v));
    v->d = d;
    v->passes = passes;
    v->n_passes = n_passes;
    v->settle = settle;
    v->env_before = env_before;
    v->env_before_len = env_before_len;
    /* First of all: the database copy. `ota-agent status` below opens the
     * database, which replays its WAL into it and may move a broken one
     * aside; the check must see what the agent left. */
    snprintf(p, sizeof(p), "%s/%s", d->root, d->agent->state_db);
    snprintf(dir, sizeof(dir), "%s/.sim/db-copy", d->root);
    if (d->agent->state_db[0] && otasim_inv_copy_db(p, dir, v->db_copy, sizeof(v->db_copy), &e) < 0)
        ota_strlcpy(v->db_copy_err, e.reason, sizeof(v->db_copy_err));

    snprintf(p, sizeof(p), "%s/opt/app/current", d->root);
    n = readlink(p, v->current, sizeof(v->current) - 1);
    v->current[n > 0 ? n : 0] = '\0';

    memset(&e, 0, sizeof(e));
    if (otasim_device_status(d, &text, &e) < 0 ||
        ota_json_parse(text, strlen(text), &status, &e) < 0) {
        ota_strlcpy(v->status_err, e.reason, sizeof(v->status_err));
        status = NULL;
    }
    free(text);
    otasim_inv_view_status(v, status);
    if (strcmp(d->tr->sc->source, "fleet") == 0)
        load_reports(d, v);

    if (is_rootfs(v) && !d->qemu)
        probe_app(d, v); /* the service of the booted rootfs (bootable) */
    if (is_rootfs(v))
        ota_strlcpy(v->running, d->booted_version, sizeof(v->running));
    else if (d->qemu)
        ota_strlcpy(v->running, d->probe_version, sizeof(v->running));
    else
        probe_app(d, v);
    if (!d->qemu)
        otasim_inv_view_journals(v);
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

/* The parent directories resolved (realpath) as far as they exist, the last
 * component as written: the form the interposer records a path in. Applied
 * to both sides, a tree reached through a symlink (/dev/shm on some systems)
 * still compares equal. cache_in/cache_out: the last directory resolved. */
struct canon_cache {
    char in[PATH_MAX], out[PATH_MAX];
};

static void canon_dir(const char *dir, char *out, size_t cap, struct canon_cache *cc)
{
    char real[PATH_MAX], up[PATH_MAX];
    const char *slash;

    if (cc && cc->in[0] && strcmp(cc->in, dir) == 0) {
        snprintf(out, cap, "%s", cc->out);
        return;
    }
    if (realpath(dir, real)) {
        snprintf(out, cap, "%s", real);
    } else if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
        snprintf(up, sizeof(up), "%.*s", (int)(slash - dir), dir);
        canon_dir(up, real, sizeof(real), NULL);
        snprintf(out, cap, "%s%s", strcmp(real, "/") == 0 ? "" : real, slash);
    } else {
        snprintf(out, cap, "%s", dir);
    }
    if (cc && strlen(dir) < sizeof(cc->in)) {
        snprintf(cc->in, sizeof(cc->in), "%s", dir);
        snprintf(cc->out, sizeof(cc->out), "%s", out);
    }
}

static void canon(const char *path, char *out, size_t cap, struct canon_cache *cc)
{
    char p[PATH_MAX], dir[PATH_MAX];
    size_t n;
    char *slash;

    snprintf(p, sizeof(p), "%s", path);
    n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    slash = strrchr(p, '/');
    if (!slash || slash == p) {
        snprintf(out, cap, "%s", p);
        return;
    }
    *slash = '\0';
    canon_dir(p, dir, sizeof(dir), cc);
    snprintf(out, cap, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, slash + 1);
}

/* The "from" of a state line's JSON. */
static void state_from(const char *text, char *buf, size_t cap)
{
    json_t *o = NULL;

    buf[0] = '\0';
    if (ota_json_parse(text, strlen(text), &o, NULL) == 0) {
        jstr(o, "from", NULL, buf, cap);
        json_decref(o);
    }
}

void otasim_inv_view_journals(struct otasim_inv_view *v)
{
    const struct otasim_device *d = v->d;
    struct otasim_inv_writes *w = &v->writes;
    int rootfs = is_rootfs(v), crashed = 0, ran = 0;
    char slot[2][PATH_MAX], current_link[PATH_MAX], dl[PATH_MAX], p[PATH_MAX + 32];
    char path[PATH_MAX], path2[PATH_MAX];
    struct canon_cache *cc = calloc(1, sizeof(*cc));

    memset(w, 0, sizeof(*w));
    v->found_state[0] = '\0';
    w->read = 1;
    for (int s = 0; s < 2; s++) {
        if (rootfs)
            snprintf(p, sizeof(p), "%s", d->part[s]);
        else
            snprintf(p, sizeof(p), "%s/opt/app/%c", d->root, "ab"[s]);
        canon(p, slot[s], sizeof(slot[s]), NULL);
    }
    snprintf(p, sizeof(p), "%s/opt/app/current", d->root);
    canon(p, current_link, sizeof(current_link), NULL);
    snprintf(p, sizeof(p), "%s/var/lib/ota/download", d->root);
    canon(p, dl, sizeof(dl), NULL);
    for (size_t pi = 0; pi < v->n_passes; pi++) {
        const struct otasim_pass_info *ps = &v->passes[pi];
        struct otasim_journal *j = NULL;
        struct ota_err e = {0};
        int active = rootfs ? ps->booted : (ps->current[0] == 'b');
        /* temp symlink -> its target, to follow renames over `current` */
        char tmp_link[PATH_MAX] = "", tmp_target[16] = "";

        if (!ps->journal[0])
            continue; /* the agent did not run (the device did not boot) */
        ran++;
        /* The interposer creates the journal when it is loaded (nothing
         * else does) and every pass of the agent makes calls it records:
         * a journal that is missing or holds no record means the writes of
         * that pass went unseen. */
        if (otasim_journal_load(ps->journal, &j, &e) < 0) {
            if (!w->missing[0])
                snprintf(w->missing, sizeof(w->missing),
                         "pass %zu: no journal (the interposer was not loaded?): %s", pi + 1,
                         e.reason);
            continue;
        }
        if (j->n == 0 && !w->missing[0])
            snprintf(w->missing, sizeof(w->missing),
                     "pass %zu: journal %s holds no record although the agent ran", pi + 1,
                     ps->journal);
        for (size_t i = 0; i < j->n; i++) {
            const struct otasim_rec *r = &j->v[i];
            if (r->op == OTASIM_OP_CRASH)
                crashed = 1;
            else if (r->op == OTASIM_OP_STATE && crashed && !v->found_state[0])
                state_from(r->text, v->found_state, sizeof(v->found_state));
            if (!r->done || r->result < 0 || r->op >= OTASIM_OP_STATE)
                continue;
            canon(r->path, path, sizeof(path), cc);
            path2[0] = '\0';
            if (r->path2[0] && r->op != OTASIM_OP_SYMLINK)
                canon(r->path2, path2, sizeof(path2), cc);
            if (r->op == OTASIM_OP_SYMLINK) {
                ota_strlcpy(tmp_link, path, sizeof(tmp_link));
                ota_strlcpy(tmp_target, r->path2, sizeof(tmp_target));
                if (strcmp(path, current_link) == 0)
                    active = target_slot(r->path2);
            }
            if (r->op == OTASIM_OP_RENAME && strcmp(path2, current_link) == 0 &&
                strcmp(path, tmp_link) == 0 && tmp_target[0])
                active = target_slot(tmp_target);
            if (!is_write(r->op))
                continue;
            if (r->op == OTASIM_OP_WRITE && under(path, dl))
                w->download_bytes += r->len;
            for (int s = 0; s < 2; s++) {
                int hit = under(path, slot[s]) || (path2[0] && under(path2, slot[s]));
                if (!hit)
                    continue;
                if (s == 0 && !w->lkg[0])
                    snprintf(w->lkg, sizeof(w->lkg), "pass %zu call %llu: %s %s", pi + 1,
                             (unsigned long long)r->seq, otasim_op_names[r->op], r->path);
                if (s == active && !w->active[0])
                    snprintf(w->active, sizeof(w->active),
                             "pass %zu call %llu: %s %s (slot %c active)", pi + 1,
                             (unsigned long long)r->seq, otasim_op_names[r->op], r->path, "ab"[s]);
            }
        }
        otasim_journal_free(j);
    }
    if (!ran && !w->missing[0])
        snprintf(w->missing, sizeof(w->missing), "no pass of the agent was journaled");
    free(cc);
}
