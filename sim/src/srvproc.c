/* One real ota-server per scenario, on 127.0.0.1 with a port of its own
 * choosing; releases go in through its CLI, fault plans and reports through
 * its admin API (libcurl: the only file of the simulator that uses it). */
#include "otasim/sim.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/curlerr.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"

int otasim_server_start(const struct otasim_tools *t, const char *dir, struct otasim_server *ret,
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
    const char *argv[] = {t->server,
                          "serve",
                          "--port",
                          "0",
                          "--port-file",
                          portfile,
                          "--db",
                          db,
                          "--data-dir",
                          data,
                          "--admin-token",
                          s.admin_token,
                          "--enroll-token",
                          s.enroll_token,
                          "--threads",
                          "2",
                          "--log",
                          log,
                          NULL};
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
                              const char *reldir, int publish, struct ota_err *err)
{
    char log[PATH_MAX + 16];
    int st = 0, r;
    const char *argv[] = {t->server,
                          "release",
                          "add",
                          reldir,
                          "--server",
                          s->url,
                          "--admin-token",
                          s->admin_token,
                          publish ? "--publish" : NULL,
                          NULL};

    snprintf(log, sizeof(log), "%s/admin.log", s->dir);
    r = otasim_run(argv, NULL, 60000, NULL, log, &st, err);
    if (r < 0)
        return r;
    if (st != 0)
        return ota_err_set(err, EIO, "ota-server release add %s: exit %d (see %s)", reldir, st,
                           log);
    return 0;
}

struct buf {
    char *p;
    size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t k = size * nmemb;
    char *np = realloc(b->p, b->n + k + 1);

    if (!np)
        return 0;
    memcpy(np + b->n, ptr, k);
    b->p = np;
    b->n += k;
    b->p[b->n] = '\0';
    return k;
}

void otasim_http_global_init(void)
{
    ota_ignore((int)curl_global_init(CURL_GLOBAL_DEFAULT));
}

static int call_as(const struct otasim_server *s, const char *token, const char *method,
                   const char *path, const char *body, char **ret, struct ota_err *err)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct buf b = {NULL, 0};
    char url[512], auth[128];
    long status = 0;
    CURLcode cc;
    int r = 0;

    if (!c)
        return ota_err_set(err, ENOMEM, "curl_easy_init failed");
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK)
        r = ota_err_set(err, ota_curl_errno(cc), "%s %s: %s", method, url, curl_easy_strerror(cc));
    else if (status < 200 || status > 299)
        r = ota_err_set(err, EIO, "%s %s: HTTP %ld %.200s", method, path, status, b.p ? b.p : "");
    if (r == 0 && ret) {
        *ret = b.p ? b.p : strdup("");
        b.p = NULL;
    }
    free(b.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
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

int otasim_server_register(const struct otasim_server *s, const char *body, struct ota_err *err)
{
    return call_as(s, s->enroll_token, "POST", "/api/v1/devices/register", body, NULL, err);
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
