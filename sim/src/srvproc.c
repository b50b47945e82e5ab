/* One real ota-server per scenario, on 127.0.0.1 with a port of its own
 * choosing; releases go in through its CLI, fault plans and reports through
 * its admin API (over http.c, the simulator's libcurl adapter). */
#include "otasim/sim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"

int otasim_server_start(const struct otasim_tools *t, const char *dir, struct otasim_server *ret,
                        struct ota_err *err)
{
    return otasim_server_start_with(t, dir, NULL, 1, ret, err);
}

int otasim_server_start_with(const struct otasim_tools *t, const char *dir,
                             const char *const *extra, int access_log, struct otasim_server *ret,
                             struct ota_err *err)
{
    struct otasim_server s;
    char portfile[PATH_MAX + 16], db[PATH_MAX + 16], data[PATH_MAX + 16], log[PATH_MAX + 16];
    char *text = NULL;
    size_t n;
    int64_t deadline;
    int r;

    memset(&s, 0, sizeof(s));
    ota_strlcpy(s.dir, dir, sizeof(s.dir));
    snprintf(s.admin_token, sizeof(s.admin_token), "sim-admin-%d", (int)getpid());
    snprintf(s.enroll_token, sizeof(s.enroll_token), "sim-enroll");
    snprintf(portfile, sizeof(portfile), "%s/port", dir);
    snprintf(db, sizeof(db), "%s/server.db", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(log, sizeof(log), "%s/server.log", dir);
    if ((r = ota_fs_mkdirs(dir, err)) < 0)
        return r;
    unlink(portfile);
    const char *base[] = {t->server, "serve", "--port", "0", "--port-file", portfile, "--db", db,
                          "--data-dir", data, "--admin-token", s.admin_token, "--enroll-token",
                          s.enroll_token, "--threads", "2",
                          /* swupdate devices (agent_swupdate.c): a pass ends at the
                           * poll that finds no action; 1 s is hawkBit's floor */
                          "--ddi-poll", "1", access_log ? "--log" : NULL, log, NULL};
    const char *argv[64];
    size_t na = 0;
    for (size_t i = 0; base[i]; i++)
        argv[na++] = base[i];
    for (size_t i = 0; extra && extra[i] && na < 63; i++)
        argv[na++] = extra[i];
    argv[na] = NULL;
    if ((r = otasim_spawn(argv, NULL, 0, NULL, log, NULL, &s.pid, err)) < 0)
        return r;
    deadline = otasim_now_ms() + 15000;
    while (ota_fs_read_all(portfile, 64, &text, &n, NULL) < 0) {
        int st;
        if (otasim_wait(s.pid, 0, &st) == 0)
            return ota_err_set(err, EIO, "ota-server exited (%d) at start; see %s", st, log);
        if (otasim_now_ms() > deadline) {
            kill(s.pid, SIGKILL);
            ota_ignore(otasim_wait(s.pid, -1, &st));
            return ota_err_set(err, ETIMEDOUT, "ota-server did not start; see %s", log);
        }
        usleep(5000);
    }
    s.port = atoi(text);
    free(text);
    snprintf(s.url, sizeof(s.url), "http://127.0.0.1:%d", s.port);
    *ret = s;
    return 0;
}

int otasim_server_add_release(const struct otasim_tools *t, const struct otasim_server *s,
                              const char *reldir, const char *id, int publish, struct ota_err *err)
{
    char log[PATH_MAX + 16];
    int st = 0, r;
    size_t n = 8;
    const char *argv[12] = {t->server,  "release", "add",           reldir,
                            "--server", s->url,    "--admin-token", s->admin_token};

    if (id) {
        argv[n++] = "--id";
        argv[n++] = id;
    }
    if (publish)
        argv[n++] = "--publish";
    argv[n] = NULL;

    snprintf(log, sizeof(log), "%s/admin.log", s->dir);
    r = otasim_run(argv, NULL, 60000, NULL, log, &st, err);
    if (r < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "ota-server release add %s: exit %d (see %s)", reldir, st,
                           log);
    return 0;
}

static int call_as(const struct otasim_server *s, const char *token, const char *method,
                   const char *path, const char *body, char **ret, struct ota_err *err)
{
    char url[512], *text = NULL;
    long status = 0;
    int r;

    snprintf(url, sizeof(url), "%s%s", s->url, path);
    r = otasim_http_call(url, token, method, body, 30000, &status, &text, err);
    if (r < 0)
        return r;
    if (status < 200 || status > 299) {
        r = ota_err_set(err, EIO, "%s %s: HTTP %ld %.200s", method, path, status, text);
        free(text);
        return r;
    }
    if (ret)
        *ret = text;
    else
        free(text);
    return 0;
}

static int admin_call(const struct otasim_server *s, const char *method, const char *path,
                      const char *body, char **ret, struct ota_err *err)
{
    return call_as(s, s->admin_token, method, path, body, ret, err);
}

int otasim_server_post(const struct otasim_server *s, const char *path, const char *body,
                       char **ret, struct ota_err *err)
{
    return admin_call(s, "POST", path, body, ret, err);
}

int otasim_server_enroll_device(const struct otasim_server *s, const char *id, const char *type,
                                const char *group, char *ret_token, size_t cap, struct ota_err *err)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:[], s:{}}", "device_id", id, "device_type", type,
                          "group", group, "tags", "versions");
    char *body = NULL, *out = NULL;
    int r;

    if (!o || ota_json_dump(o, &body) < 0) {
        json_decref(o);
        return ota_err_set(err, ENOMEM, "out of memory");
    }
    json_decref(o);
    r = call_as(s, s->enroll_token, "POST", "/api/v1/devices/register", body, &out, err);
    free(body);
    if (r < 0)
        return ota_err_prefix(err, r, "enrolling %s", id);
    o = NULL;
    if (ret_token && (r = ota_json_parse(out, strlen(out), &o, err)) == 0)
        r = ota_json_str(o, "token", ret_token, cap, err);
    json_decref(o);
    free(out);
    return r < 0 ? ota_err_prefix(err, r, "enrolling %s: the answer", id) : 0;
}

int otasim_server_release_of(const struct otasim_server *s, const char *version, char *buf,
                             size_t cap, struct ota_err *err)
{
    char *text = NULL;
    json_t *o = NULL, *e;
    size_t i;
    int r;

    if ((r = otasim_server_get(s, "/api/v1/releases?limit=100", &text, err)) < 0)
        return r;
    r = ota_json_parse(text, strlen(text), &o, err);
    free(text);
    if (r < 0)
        return r;
    r = ota_err_set(err, ENOENT, "no ota-pack release %s on the server", version);
    json_array_foreach(json_object_get(o, "releases"), i, e)
    {
        const char *v = json_string_value(json_object_get(e, "version"));
        const char *f = json_string_value(json_object_get(e, "format"));
        const char *id = json_string_value(json_object_get(e, "id"));
        if (v && id && strcmp(v, version) == 0 && !(f && strcmp(f, "swu") == 0)) {
            ota_strlcpy(buf, id, cap);
            r = 0;
            break;
        }
    }
    json_decref(o);
    return r;
}

int otasim_server_rollout_start(const struct otasim_server *s, json_t *def, struct ota_err *err)
{
    const char *rid = json_string_value(json_object_get(def, "id"));
    char *body = NULL, path[160];
    int r;

    if (!rid || ota_json_dump(def, &body) < 0)
        return ota_err_set(err, EINVAL, "rollout: no id, or out of memory");
    r = otasim_server_post(s, "/api/v1/rollouts", body, NULL, err);
    free(body);
    for (const char *const *a = (const char *const[]){"approve", "start", NULL}; r == 0 && *a;
         a++) {
        snprintf(path, sizeof(path), "/api/v1/rollouts/%s/%s", rid, *a);
        r = otasim_server_post(s, path, NULL, NULL, err);
    }
    return r < 0 ? ota_err_prefix(err, r, "rollout %s", rid) : 0;
}

int otasim_server_put_faults(const struct otasim_server *s, const char *json, struct ota_err *err)
{
    return admin_call(s, "PUT", "/api/v1/faults", json, NULL, err);
}

int otasim_server_get(const struct otasim_server *s, const char *path, char **ret,
                      struct ota_err *err)
{
    return admin_call(s, "GET", path, NULL, ret, err);
}

void otasim_server_stop(struct otasim_server *s)
{
    int st;

    if (!s || s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    if (otasim_wait(s->pid, 5000, &st) < 0) {
        kill(s->pid, SIGKILL);
        ota_ignore(otasim_wait(s->pid, -1, &st));
    }
    s->pid = 0;
}
