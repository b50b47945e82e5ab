/* Fleet runs across machines (docs/fleet.md "Fleet runs across machines"):
 * N shard processes (`ota-sim fleet FILE --shard I/N --server URL
 * --admin-token T`) against one ota-server that the server side started
 * (`ota-sim fleet FILE --serve-only --parties N`, otasim_fleet_serve).
 *
 * The server's virtual clock has N parties (ota-server --clock-parties N;
 * docs/protocol.md "Several runners on one clock"): where a lone runner
 * advances the clock, a shard asks for the time it wants and waits until
 * every shard waits; the clock then goes to the earliest time asked, so no
 * shard's devices act at a time another shard has already left behind. A
 * shard asks only when its own devices all wait (or, as a lone runner
 * would advance, when its transfers are held by the server's clock); its
 * last act is to leave the clock, so that the others go on without it.
 *
 * Who does what of a lone run's setup: the server side builds and uploads
 * the releases, puts the fault plan and creates the rollout (a draft) at
 * the clock's start; shard 0 approves and starts it at the time a lone run
 * would (after the first poll interval: every shard's devices registered by
 * then, since the clock cannot pass it before every shard asked for it);
 * the other shards wait, on real time, until it is started before their
 * devices act at that time. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet_impl.h"
#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasim/proc.h"
#include "otasim/sim.h"

#define ASK_TIMEOUT_MS  (3600 * 1000L) /* real time a shard waits for the others */
#define JOIN_TIMEOUT_MS (600 * 1000L)  /* real time a shard waits for the setup */

static void rollout_id(struct fleet *fl);

static uint32_t party_of(const struct fleet *fl)
{
    return fl->o->shards > 1 ? fl->o->shard : 0;
}

/* Before its first ask: waits until the server side is up and has created
 * the rollout (a shard may start first), then checks that the server's clock
 * has one party per shard (a party too many would hold the clock forever,
 * one too few would let it pass a shard by). */
static int wait_ready(struct fleet *fl, struct ota_err *err)
{
    uint32_t shards = fl->o->shards > 1 ? fl->o->shards : 1;
    int64_t deadline = otasim_now_ms() + JOIN_TIMEOUT_MS;
    char url[512], *text = NULL;
    long status = 0;
    json_int_t n;
    json_t *j;
    int r;

    snprintf(url, sizeof(url), "%s/api/v1/rollouts/%s", fl->url, fl->rollout_id);
    for (;;) {
        struct ota_err e = {0};
        r = otasim_http_call(url, fl->admin_token, "GET", NULL, 30000, &status, &text, &e);
        free(text);
        text = NULL;
        if (r == 0 && status == 200)
            break;
        if (r == 0 && status != 404)
            return ota_err_set(err, EIO, "the shared server %s: GET %s: HTTP %ld", fl->url, url,
                               status);
        if (otasim_now_ms() > deadline)
            return ota_err_set(
                err, ETIMEDOUT, "the shared server %s: no rollout %s after %ld s (%s)", fl->url,
                fl->rollout_id, JOIN_TIMEOUT_MS / 1000, r < 0 ? e.reason : "not created");
        usleep(100000);
    }
    snprintf(url, sizeof(url), "%s/api/v1/admin/clock", fl->url);
    if ((r = otasim_http_call(url, fl->admin_token, "GET", NULL, 30000, &status, &text, err)) < 0)
        return ota_err_prefix(err, r, "the shared server's clock");
    j = status == 200 ? json_loads(text, 0, NULL) : NULL;
    free(text);
    n = json_integer_value(json_object_get(json_object_get(j, "parties"), "n"));
    json_decref(j);
    if (n != (json_int_t)shards)
        return ota_err_set(err, EINVAL,
                           "the server's clock has %lld parties, this run has %u shards (start "
                           "the server side with --parties %u)",
                           (long long)n, shards, shards);
    return 0;
}

int fleet_join(struct fleet *fl, const struct otasim_tools *t, struct ota_err *err)
{
    const struct otasim_fleet_opts *o = fl->o;
    char pub[PATH_MAX + 32];
    char *pem = NULL;
    size_t n;
    int r;

    if (!o->admin_token || !o->admin_token[0])
        return ota_err_set(err, EINVAL, "--server needs the server's --admin-token");
    ota_strlcpy(fl->url, o->server_url, sizeof(fl->url));
    n = strlen(fl->url);
    while (n > 0 && fl->url[n - 1] == '/')
        fl->url[--n] = '\0';
    ota_strlcpy(fl->admin_token, o->admin_token, sizeof(fl->admin_token));
    ota_strlcpy(fl->enroll_token, o->enroll_token ? o->enroll_token : "sim-enroll",
                sizeof(fl->enroll_token));
    if (o->pubkey)
        ota_strlcpy(pub, o->pubkey, sizeof(pub));
    else
        snprintf(pub, sizeof(pub), "%s/cache/keys/release.pub", t->work);
    if ((r = ota_fs_read_all(pub, sizeof(fl->pubkey) - 1, &pem, &n, err)) < 0)
        return ota_err_prefix(err, r, "the release key (--pubkey)");
    ota_strlcpy(fl->pubkey, pem, sizeof(fl->pubkey));
    free(pem);
    fleet_release_ids(fl);
    rollout_id(fl);
    return wait_ready(fl, err);
}

/* The rollout's id as the server side created it. */
static void rollout_id(struct fleet *fl)
{
    json_t *def = json_loads(fl->def->rollout_json, 0, NULL);
    const char *id = json_string_value(json_object_get(def, "id"));

    ota_strlcpy(fl->rollout_id, id ? id : "fleet", sizeof(fl->rollout_id));
    json_decref(def);
}

/* Polls the rollout until its state is none of `not` (NULL-terminated). */
static int wait_rollout(struct fleet *fl, const char *const * not, const char *what,
                        struct ota_err *err)
{
    int64_t deadline = otasim_now_ms() + JOIN_TIMEOUT_MS;
    struct ota_err e = {0};

    for (;;) {
        int r = fleet_rollout_status(fl, NULL, &e), ok = r == 0;
        for (size_t i = 0; ok && not [i]; i++)
            ok = strcmp(fl->rollout_state, not [i]) != 0;
        if (ok)
            return 0;
        if (r < 0 && e.code != ENOENT)
            return ota_err_prefix(err, r, "%s: %s", what, e.reason);
        if (otasim_now_ms() > deadline)
            return ota_err_set(err, ETIMEDOUT, "%s: rollout %s still %s after %ld s", what,
                               fl->rollout_id, r < 0 ? "missing" : fl->rollout_state,
                               JOIN_TIMEOUT_MS / 1000);
        memset(&e, 0, sizeof(e));
        usleep(20000);
    }
}

int fleet_join_rollout(struct fleet *fl, struct ota_err *err)
{
    static const char *const none[] = {NULL};

    return wait_rollout(fl, none, "waiting for the server side's setup", err);
}

int fleet_join_started(struct fleet *fl, struct ota_err *err)
{
    static const char *const not_started[] = {"draft", "approved", NULL};
    int r = wait_rollout(fl, not_started, "waiting for shard 0 to start the rollout", err);

    if (r < 0)
        return r;
    fl->rollout_started = 1;
    fl->rollout_start_ms = fl->vnow;
    return 0;
}

int fleet_clock_ask(struct fleet *fl, int64_t to, struct ota_err *err)
{
    char body[128], *text = NULL;
    long status = 0;
    json_t *j, *nd;
    int r;

    snprintf(body, sizeof(body), "{\"advance_to_ms\":%lld,\"party\":%u}",
             (long long)(fl->def->start_ms + to), party_of(fl));
    r = fleet_net_admin_wait(fl->net, "POST", "/api/v1/admin/clock", body, ASK_TIMEOUT_MS, &status,
                             &text, err);
    if (r < 0)
        return ota_err_prefix(err, r, "shard %u asking the shared clock for %lld ms", party_of(fl),
                              (long long)to);
    j = status == 200 ? json_loads(text, 0, NULL) : NULL;
    if (!j) {
        r = ota_err_set(err, EIO,
                        "shard %u asking the shared clock for %lld ms: HTTP %ld: %.300s (is "
                        "it ota-server --clock-parties?)",
                        party_of(fl), (long long)to, status, text ? text : "");
        free(text);
        return r;
    }
    free(text);
    fl->srv_now = json_integer_value(json_object_get(j, "now_ms")) - fl->def->start_ms;
    nd = json_object_get(j, "next_deadline_ms");
    fl->srv_next = json_is_integer(nd) ? json_integer_value(nd) - fl->def->start_ms : INT64_MAX;
    fl->srv_sleepers = (long)json_integer_value(json_object_get(j, "sleepers"));
    json_decref(j);
    return 0;
}

void fleet_clock_leave(struct fleet *fl)
{
    char body[64], url[512], *text = NULL;
    long status = 0;
    struct ota_err e = {0};

    if (!fl->o->server_url || !fl->url[0])
        return;
    snprintf(body, sizeof(body), "{\"party\":%u,\"leave\":true}", party_of(fl));
    snprintf(url, sizeof(url), "%s/api/v1/admin/clock", fl->url);
    if (otasim_http_call(url, fl->admin_token, "POST", body, 30000, &status, &text, &e) < 0 ||
        status != 200)
        fprintf(stderr, "ota-sim fleet: shard %u leaving the shared clock: %s%ld %.200s\n",
                party_of(fl), e.code ? e.reason : "HTTP ", status, text ? text : "");
    free(text);
}

/* ---- the server side ---------------------------------------------------------- */

int fleet_serve_args(struct fleet *fl, const char **extra, size_t cap)
{
    static char parties[16];
    const struct otasim_fleet_opts *o = fl->o;
    size_t n = 0;

    if (!o->serve_only)
        return 0;
    while (extra[n])
        n++;
    snprintf(parties, sizeof(parties), "%u",
             o->parties ? o->parties : (o->shards > 1 ? o->shards : 1));
    if (n + 3 >= cap)
        return -E2BIG;
    extra[n++] = "--clock-parties";
    extra[n++] = parties;
    if (o->admin_token && n + 3 < cap) {
        extra[n++] = "--admin-token";
        extra[n++] = o->admin_token;
    }
    for (size_t i = 0; o->server_args && o->server_args[i]; i++) {
        if (n + 1 >= cap)
            return -E2BIG;
        extra[n++] = o->server_args[i];
    }
    extra[n] = NULL;
    return 0;
}

static volatile sig_atomic_t serve_stop;

static void on_signal(int sig)
{
    (void)sig;
    serve_stop = 1;
}

static int write_info(struct fleet *fl, const char *path, const char *pub, uint32_t parties,
                      struct ota_err *err)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "url", fl->url, "admin_token",
                          fl->admin_token, "enroll_token", fl->enroll_token, "pubkey", pub,
                          "rollout_id", fl->rollout_id, "parties", (int)parties, "dir", fl->dir);
    char *text = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
    int r;

    json_decref(o);
    if (!text)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = ota_fs_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return r;
}

/* Serves until every party left the clock, a signal, or the server died. */
static int serve_until_done(struct fleet *fl, const struct otasim_server *srv, uint32_t parties,
                            struct ota_err *err)
{
    while (!serve_stop) {
        json_t *j = NULL, *p;
        int r = fleet_admin_json(fl, "GET", "/api/v1/admin/clock", NULL, &j, err);
        if (r < 0)
            return ota_err_prefix(err, r, "watching the shared clock");
        p = json_object_get(j, "parties");
        r = json_integer_value(json_object_get(p, "left")) >= (json_int_t)parties;
        json_decref(j);
        if (r)
            return 0;
        if (kill(srv->pid, 0) < 0)
            return ota_err_set(err, EIO, "ota-server (pid %d) is gone", (int)srv->pid);
        usleep(200000);
    }
    return 0;
}

int otasim_fleet_serve(const struct otasim_fleet_def *def, const struct otasim_fleet_opts *o,
                       FILE *out, struct ota_err *err)
{
    struct otasim_fleet_stats st;
    struct otasim_tools t;
    struct otasim_server srv;
    struct fleet fl;
    uint32_t parties = o->parties ? o->parties : (o->shards > 1 ? o->shards : 1);
    char pub[PATH_MAX + 32];
    struct sigaction sa;
    int r;

    memset(&fl, 0, sizeof(fl));
    memset(&srv, 0, sizeof(srv));
    memset(&st, 0, sizeof(st));
    fl.def = def;
    fl.o = o;
    fl.st = &st;
    fl.seed = o->seed ? o->seed : def->seed;
    otasim_http_global_init();
    if ((r = otasim_tools_find(&t, NULL, o->work, err)) < 0)
        return r;
    if ((r = fleet_setup(&fl, &t, &srv, err)) < 0 ||
        (r = fleet_net_new(&fl, 4, &fl.net, err)) < 0 || (r = fleet_rollout_create(&fl, err)) < 0)
        goto out;
    snprintf(pub, sizeof(pub), "%s/cache/keys/release.pub", t.work);
    if (o->info && (r = write_info(&fl, o->info, pub, parties, err)) < 0)
        goto out;
    fprintf(out,
            "fleet %s: serving %s for %u shards (rollout %s, a draft: shard 0 starts it)\n"
            "  shard I of %u: ota-sim fleet %s --shard I/%u --server %s --admin-token %s "
            "--pubkey %s\n",
            def->name, fl.url, parties, fl.rollout_id, parties, def->path, parties, fl.url,
            fl.admin_token, pub);
    fflush(out);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    r = serve_until_done(&fl, &srv, parties, err);
    if (r == 0)
        fprintf(out, "fleet %s: every shard left the clock; the server stops\n", def->name);
out:
    fleet_net_free(fl.net);
    if (srv.pid > 0)
        otasim_server_stop(&srv);
    if (fl.dir[0] && !o->keep)
        ota_ignore(ota_fs_remove_tree(fl.dir, NULL));
    return r;
}
