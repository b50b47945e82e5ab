/* A fleet run's world: the signing keys, the releases (real payloads packed
 * and signed by ota-pack), the real ota-server on a virtual clock, the
 * server's fault plan, and the rollout created and started through the admin
 * API, exactly as an operator would. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet_impl.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"
#include "otasim/sim.h"

#define FLEET_APP_NAME "fleet-app"

/* The release's payload: a tar.gz of one file of seeded bytes (and, in a
 * calibration run, app_bin as bin/video-app). */
static int make_payload(const char *dir, const struct otasim_fleet_release *rel, uint64_t seed,
                        const char *app_bin, char *ret_payload, size_t cap, struct ota_err *err)
{
    char pkg[PATH_MAX + 16], file[PATH_MAX + 32], log[PATH_MAX + 16];
    uint8_t *buf;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    int r, st = 0;

    snprintf(pkg, sizeof(pkg), "%s/pkg", dir);
    snprintf(file, sizeof(file), "%s/data.bin", pkg);
    snprintf(ret_payload, cap, "%s/payload.tar.gz", dir);
    if (rel->rootfs) { /* a raw image: the bytes are the payload */
        snprintf(pkg, sizeof(pkg), "%s", dir);
        snprintf(file, sizeof(file), "%s/image.img", dir);
        snprintf(ret_payload, cap, "%s", file);
    }
    snprintf(log, sizeof(log), "%s/build.log", dir);
    if ((r = ota_fs_mkdirs(pkg, err)) < 0)
        return r;
    buf = malloc(rel->size);
    if (!buf)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (uint64_t i = 0; i < rel->size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(x >> 24);
    }
    r = ota_fs_write_atomic(file, buf, rel->size, 0644, err);
    free(buf);
    if (r < 0 || rel->rootfs)
        return r;
    if (app_bin[0]) { /* the calibration (fleet_native.c) */
        char bin[PATH_MAX + 32];
        const char *cp[] = {"cp", app_bin, bin, NULL};
        snprintf(bin, sizeof(bin), "%s/bin", pkg);
        if ((r = ota_fs_mkdirs(bin, err)) < 0)
            return r;
        snprintf(bin, sizeof(bin), "%s/bin/video-app", pkg);
        if ((r = otasim_run(cp, NULL, 30000, NULL, log, &st, err)) < 0)
            return r;
        if (st != 0)
            return ota_err_set(err, EIO, "cp %s %s: exit %d", app_bin, bin, st);
    }
    const char *argv[] = {"tar", "-czf", ret_payload, "-C", pkg, ".", NULL};
    if ((r = otasim_run(argv, NULL, 120000, NULL, log, &st, err)) < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "tar of %s: exit %d (see %s)", pkg, st, log);
    return 0;
}

/* rollback_from: NULL for a release, else the version a rollback order is
 * for (the rollout's release: what the devices it rolls back run). */
static int pack(const struct otasim_tools *t, const struct fleet *fl, const char *priv,
                const char *payload, const char *name, const char *version,
                const char *rollback_from, const char *out, struct ota_err *err)
{
    const char *argv[64];
    char log[PATH_MAX + 16], expires[32];
    int64_t start_s = fl->def->start_ms / 1000;
    size_t n = 0;
    int st = 0, r;

    snprintf(log, sizeof(log), "%s.log", out);
    argv[n++] = t->pack;
    argv[n++] = "build";
    argv[n++] = "--key";
    argv[n++] = priv;
    argv[n++] = "--payload";
    argv[n++] = payload;
    argv[n++] = "--kind";
    argv[n++] = fl->def->rootfs ? "rootfs" : "app";
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "--version";
    argv[n++] = version;
    argv[n++] = "--created";
    argv[n++] = "1795000000";
    for (size_t i = 0; i < fl->def->n_types && i < 8; i++) {
        argv[n++] = "--device-type";
        argv[n++] = fl->def->types[i].value;
    }
    if (rollback_from) {
        /* valid over any fleet run: ten years after the later of the
         * creation and the fleet's virtual start */
        snprintf(expires, sizeof(expires), "%lld",
                 (long long)((start_s > 1795000000 ? start_s : 1795000000) + 3650LL * 86400));
        argv[n++] = "--rollback";
        argv[n++] = "--rollback-from";
        argv[n++] = rollback_from;
        argv[n++] = "--rollback-expires";
        argv[n++] = expires;
    }
    argv[n++] = "--out";
    argv[n++] = out;
    argv[n] = NULL;
    if ((r = otasim_run(argv, NULL, 120000, NULL, log, &st, err)) < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "ota-pack build %s %s: exit %d (see %s)", name, version, st,
                           log);
    return 0;
}

/* Builds and uploads every release but the factory one; the rollback order
 * of `previous` (named FLEET_APP_NAME too) as release id
 * FLEET_APP_NAME-rollback-VERSION. */
static int releases(struct fleet *fl, const struct otasim_tools *t, const struct otasim_server *s,
                    const char *work, const char *priv, struct ota_err *err)
{
    const struct otasim_fleet_def *def = fl->def;
    char dir[PATH_MAX], payload[PATH_MAX + 32], out[PATH_MAX + 16], app[PATH_MAX], id[128];
    int r;

    for (size_t i = 0; i < def->n_rel; i++) {
        const struct otasim_fleet_release *rel = &def->rel[i];
        snprintf(dir, sizeof(dir), "%s/releases/%s", work, rel->version);
        if ((r = fleet_calib_app_bin(fl, rel, app, sizeof(app), err)) < 0 ||
            (r = make_payload(dir, rel, def->seed * 131 + i, app, payload, sizeof(payload), err)) <
                0)
            return r;
        if (!rel->factory) {
            snprintf(out, sizeof(out), "%s/release", dir);
            if ((r = pack(t, fl, priv, payload, FLEET_APP_NAME, rel->version, NULL, out, err)) <
                    0 ||
                (r = otasim_server_add_release(t, s, out, NULL, 1, err)) < 0)
                return r;
        }
        if (rel->rollback) {
            /* The product's name (the agent refuses another product's), under
             * a release id of its own. */
            snprintf(out, sizeof(out), "%s/rollback", dir);
            snprintf(id, sizeof(id), "%s-rollback-%s", FLEET_APP_NAME, rel->version);
            if ((r = pack(t, fl, priv, payload, FLEET_APP_NAME, rel->version, def->rollout_release,
                          out, err)) < 0 ||
                (r = otasim_server_add_release(t, s, out, id, 1, err)) < 0)
                return r;
        }
    }
    fleet_release_ids(fl);
    return 0;
}

void fleet_release_ids(struct fleet *fl)
{
    snprintf(fl->release_id, sizeof(fl->release_id), "%s-%s", FLEET_APP_NAME,
             fl->def->rollout_release);
    if (fl->def->rollout_previous[0])
        snprintf(fl->previous_id, sizeof(fl->previous_id), "%s-rollback-%s", FLEET_APP_NAME,
                 fl->def->rollout_previous);
}

int fleet_setup(struct fleet *fl, const struct otasim_tools *t, struct otasim_server *srv,
                struct ota_err *err)
{
    char priv[PATH_MAX], pub[PATH_MAX], rogue[PATH_MAX], dir[PATH_MAX + 16];
    char start[32], threads[16];
    char *pem = NULL;
    size_t n;
    int r;

    if (fl->o->server_url) /* a shard of a shared server (fleet_shard.c) */
        return fleet_join(fl, t, err);
    if ((r = otasim_keys(t, priv, pub, rogue, sizeof(priv), err)) < 0)
        return r;
    if ((r = ota_fs_read_all(pub, sizeof(fl->pubkey) - 1, &pem, &n, err)) < 0)
        return r;
    ota_strlcpy(fl->pubkey, pem, sizeof(fl->pubkey));
    free(pem);
    snprintf(fl->dir, sizeof(fl->dir), "%s/fleet/%d-%llu", t->work, (int)getpid(),
             (unsigned long long)fl->seed);
    ota_ignore(ota_fs_remove_tree(fl->dir, NULL));
    snprintf(dir, sizeof(dir), "%s/server", fl->dir);
    snprintf(start, sizeof(start), "%lld", (long long)fl->def->start_ms);
    snprintf(threads, sizeof(threads), "%d", fl->o->server_threads > 0 ? fl->o->server_threads : 2);
    const char *extra[40] = {"--virtual-clock", start, "--threads", threads, NULL};
    if ((r = fleet_serve_args(fl, extra, 40)) < 0 || /* serve-only: parties, ... */
        (r = otasim_server_start_with(t, dir, extra, fl->o->access_log, srv, err)) < 0)
        return r;
    if (fl->o->serve_only && fl->o->admin_token)
        ota_strlcpy(srv->admin_token, fl->o->admin_token, sizeof(srv->admin_token));
    ota_strlcpy(fl->url, srv->url, sizeof(fl->url));
    ota_strlcpy(fl->admin_token, srv->admin_token, sizeof(fl->admin_token));
    ota_strlcpy(fl->enroll_token, srv->enroll_token, sizeof(fl->enroll_token));
    if ((r = releases(fl, t, srv, fl->dir, priv, err)) < 0)
        return r;
    if (fl->def->server_faults_json &&
        (r = otasim_server_put_faults(srv, fl->def->server_faults_json, err)) < 0)
        return ota_err_prefix(err, r, "the fleet file's server fault plan");
    return 0;
}

/* ---- admin calls from the loop ------------------------------------------- */

static int admin_json(struct fleet *fl, const char *method, const char *path, const char *body,
                      json_t **ret, struct ota_err *err)
{
    char *text = NULL;
    long status = 0;
    json_t *j;
    int r = fleet_net_admin(fl->net, method, path, body, &status, &text, err);

    if (r < 0)
        return r;
    if (status < 200 || status > 299) {
        r = ota_err_set(err, status == 404 ? ENOENT : EIO, "%s %s: HTTP %ld: %.300s", method, path,
                        status, text);
        free(text);
        return r;
    }
    j = json_loads(text, 0, NULL);
    free(text);
    if (!j)
        return ota_err_set(err, EBADMSG, "%s %s: the answer is not JSON", method, path);
    *ret = j;
    return 0;
}

int fleet_admin_json(struct fleet *fl, const char *method, const char *path, const char *body,
                     json_t **ret, struct ota_err *err)
{
    return admin_json(fl, method, path, body, ret, err);
}

int fleet_admin_get(struct fleet *fl, const char *path, json_t **ret, struct ota_err *err)
{
    return admin_json(fl, "GET", path, NULL, ret, err);
}

int fleet_clock_advance(struct fleet *fl, int64_t to, struct ota_err *err)
{
    char body[96];
    json_t *j = NULL, *nd;
    int r;

    if (fl->o->server_url) /* one party of the shared clock: waits for the others */
        return fleet_clock_ask(fl, to, err);
    snprintf(body, sizeof(body), "{\"advance_to_ms\":%lld}", (long long)(fl->def->start_ms + to));
    if ((r = admin_json(fl, "POST", "/api/v1/admin/clock", body, &j, err)) < 0)
        return ota_err_prefix(err, r,
                              "advancing the server's virtual clock (is it ota-server "
                              "--virtual-clock?)");
    fl->srv_now = to;
    nd = json_object_get(j, "next_deadline_ms");
    fl->srv_next = json_is_integer(nd) ? json_integer_value(nd) - fl->def->start_ms : INT64_MAX;
    fl->srv_sleepers = (long)json_integer_value(json_object_get(j, "sleepers"));
    json_decref(j);
    return 0;
}

int fleet_clock_query(struct fleet *fl, struct ota_err *err)
{
    json_t *j = NULL, *nd;
    int r = admin_json(fl, "GET", "/api/v1/admin/clock", NULL, &j, err);

    if (r < 0)
        return r;
    nd = json_object_get(j, "next_deadline_ms");
    fl->srv_next = json_is_integer(nd) ? json_integer_value(nd) - fl->def->start_ms : INT64_MAX;
    fl->srv_sleepers = (long)json_integer_value(json_object_get(j, "sleepers"));
    json_decref(j);
    return 0;
}

int fleet_rollout_create(struct fleet *fl, struct ota_err *err)
{
    json_t *def = json_loads(fl->def->rollout_json, 0, NULL), *j = NULL;
    char *body;
    int r;

    if (!def)
        return ota_err_set(err, ENOMEM, "out of memory");
    if (fl->o->server_url) { /* the server side created it */
        json_decref(def);
        return fleet_join_rollout(fl, err);
    }
    if (!json_object_get(def, "id"))
        json_object_set_new(def, "id", json_string("fleet"));
    json_object_set_new(def, "release_id", json_string(fl->release_id));
    if (fl->def->rollout_activate_at_ms >= 0)
        json_object_set_new(def, "activate_at_ms",
                            json_integer(fl->def->start_ms + fl->def->rollout_activate_at_ms));
    if (fl->previous_id[0])
        json_object_set_new(def, "previous_release_id", json_string(fl->previous_id));
    ota_strlcpy(fl->rollout_id, json_string_value(json_object_get(def, "id")),
                sizeof(fl->rollout_id));
    body = json_dumps(def, JSON_COMPACT);
    json_decref(def);
    if (!body)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = admin_json(fl, "POST", "/api/v1/rollouts", body, &j, err);
    free(body);
    json_decref(j);
    if (r < 0)
        return ota_err_prefix(err, r, "creating the rollout (the fleet file's rollout.definition)");
    return 0;
}

/* Approves and starts the draft: its device table is built from the
 * devices registered now. */
int fleet_rollout_start(struct fleet *fl, struct ota_err *err)
{
    char path[160];
    json_t *j = NULL;
    int r;

    if (fl->o->server_url && fl->o->shards > 1 && fl->o->shard != 0)
        return fleet_join_started(fl, err); /* shard 0 starts it */
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/api/v1/rollouts/%s/%s", fl->rollout_id,
                 i ? "start" : "approve");
        if ((r = admin_json(fl, "POST", path, "{}", &j, err)) < 0)
            return ota_err_prefix(err, r, "rollout %s", i ? "start" : "approve");
        json_decref(j);
    }
    fl->rollout_started = 1;
    fl->rollout_start_ms = fl->vnow;
    return 0;
}

/* The rollout is created (a draft) before any device checks in: from then
 * on the server offers only what rollouts offer (without any rollout it
 * would offer the newest published release to everyone). */
/* The rollout's state, stage and reason; *ret_json the whole object if wanted. */
int fleet_rollout_status(struct fleet *fl, json_t **ret_json, struct ota_err *err)
{
    char path[160];
    json_t *j = NULL, *s;
    int r;

    snprintf(path, sizeof(path), "/api/v1/rollouts/%s", fl->rollout_id);
    if ((r = admin_json(fl, "GET", path, NULL, &j, err)) < 0)
        return r;
    s = json_object_get(j, "status");
    ota_strlcpy(fl->rollout_state, json_string_value(json_object_get(s, "state")) ?: "",
                sizeof(fl->rollout_state));
    ota_strlcpy(fl->st->rollout_reason, json_string_value(json_object_get(s, "reason")) ?: "",
                sizeof(fl->st->rollout_reason));
    fl->st->stage = (int)json_integer_value(json_object_get(s, "stage"));
    if (ret_json)
        *ret_json = j;
    else
        json_decref(j);
    return 0;
}

/* Every final report the server holds, per device index: the reports of
 * device i in out[i] (a JSON array of {status, version}, oldest first). */
int fleet_final_reports(struct fleet *fl, json_t **out, struct ota_err *err)
{
    uint32_t shards = fl->o->shards > 1 ? fl->o->shards : 1;
    uint32_t shard = shards > 1 ? fl->o->shard : 0;
    long offset = 0;

    for (;;) {
        char path[160];
        json_t *j = NULL, *a, *rep;
        size_t i;
        int r;
        snprintf(path, sizeof(path), "/api/v1/reports?limit=1000&offset=%ld", offset);
        if ((r = admin_json(fl, "GET", path, NULL, &j, err)) < 0)
            return ota_err_prefix(err, r, "reading the server's reports");
        a = json_object_get(j, "reports");
        json_array_foreach(a, i, rep)
        {
            const char *dev = json_string_value(json_object_get(rep, "device_id"));
            const char *st = json_string_value(json_object_get(rep, "status"));
            unsigned long idx;
            if (!dev || !st || strcmp(st, "in_progress") == 0 || sscanf(dev, "d%lu", &idx) != 1 ||
                idx % shards != shard || idx / shards >= fl->n_dev)
                continue;
            idx /= shards;
            if (!out[idx])
                out[idx] = json_array();
            json_array_append_new(
                out[idx],
                json_pack("{s:s, s:s, s:s}", "status", st, "version",
                          json_string_value(json_object_get(rep, "version")) ?: "", "update_id",
                          json_string_value(json_object_get(rep, "update_id")) ?: ""));
        }
        offset += (long)json_array_size(a);
        if (json_array_size(a) == 0 || offset >= json_integer_value(json_object_get(j, "total"))) {
            json_decref(j);
            return 0;
        }
        json_decref(j);
    }
}
