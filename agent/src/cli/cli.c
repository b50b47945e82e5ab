/* ota-agent's commands: wires the drivers to the core and runs it.
 *
 * Exit codes (documented in README.md and --help):
 *   0  done: up to date, or the update succeeded
 *   1  the update failed, was refused or rolled back
 *   2  usage or config error
 *   3  the server could not be reached (nothing changed)
 *   4  another ota-agent holds the lock
 *   5  internal error (store, boot env, ...)
 *  10  check: an update is available */
#include "ota/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "ota/config.h"
#include "ota/drivers.h"
#include "ota/faultpoint.h"
#include "ota/json.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
    EXIT_LOCKED = 4,
    EXIT_INTERNAL = 5,
    EXIT_AVAILABLE = 10,
};

struct host {
    struct ota_config cfg;
    struct ota_curl *curl;
    struct ota_sqlite *db;
    struct ota_ubootenv *env;
    struct ota_service *svc;
    struct ota_install *inst;
    struct ota_clock_posix clock;
    struct ota_agent *agent;
    int lock_fd;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ota-agent [--config FILE] COMMAND [--json]\n"
               "\n"
               "Commands:\n"
               "  check     ask the server whether an update is offered; changes nothing\n"
               "            (no download, no history, no report; exit 10 if one is,\n"
               "            1 if it would be refused)\n"
               "  update    one pass: finish or recover an interrupted update, then check,\n"
               "            download, verify, install, switch, health-check, commit (timer)\n"
               "  daemon    update every poll_interval seconds (+ random jitter)\n"
               "  status    the state, installed versions and slots, release keys, history\n"
               "            (--json); only reads: an unreadable database is reported (exit 5)\n"
               "            and left for update to repair\n"
               "  rollback  roll back now (during an update after the switch), or go back\n"
               "            to the previous committed app release\n"
               "  commit    commit the release under health check now\n"
               "  init      create the database (or migrate it) and exit; nothing else is\n"
               "            read or written (an image ships the database made this way)\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE  config file (default /etc/ota-agent.conf)\n"
               "  --json             status as JSON\n"
               "  --build-info       how this agent was built (fault-points: on|off)\n"
               "  -h, --help         this text\n"
               "\n"
               "One line per state change goes to stderr: OTA-STATE {json}.\n"
               "Exit codes: 0 done or up to date; 1 update failed, refused or rolled back;\n"
               "2 usage/config error; 3 server unreachable; 4 another ota-agent is running;\n"
               "5 internal error; 10 (check) an update is available.\n");
}

/* The whole line in one write(2): lines of concurrent writers never mix,
 * and the simulator's interposer (which wraps write; stdio does not go
 * through it) sees each line whole. */
static void write_line(const char *line, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void print_transition(void *ctx, const struct ota_transition *t)
{
    const struct ota_journal *j = t->journal;
    json_t *o;
    char *s = NULL;
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s}", "ts",
                  (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, "from",
                  ota_state_names[t->from], "to", ota_state_names[t->to], "update", j->update_id,
                  "version", t->version, "kind", t->kind, "slot",
                  j->update_id[0] ? ota_slot_names[j->to_slot & 1] : "", "status",
                  t->to == OTA_STATE_IDLE && j->update_id[0] ? (j->failed ? "failure" : "success")
                                                             : "in_progress",
                  "resumes", (int)j->resumes, "reason", j->reason);
    if (o && ota_json_dump(o, &s) == 0) {
        char *line = NULL;
        int n = asprintf(&line, "OTA-STATE %s\n", s);
        if (n > 0) {
            fflush(stderr); /* whatever stdio still holds goes first */
            write_line(line, (size_t)n);
            free(line);
        }
    }
    free(s);
    json_decref(o);
#ifdef OTA_FAULT_POINTS
    {
        char point[48];
        snprintf(point, sizeof(point), "state.%s", ota_state_names[t->to]);
        OTA_FAULT_POINT(point);
    }
#endif
}

/* What a test harness must know of this binary: a scenario that kills the
 * agent at a named fault point (OTA_FAULT_POINT) tests nothing on a build
 * without them, and ota-sim says so instead of failing the agent. */
static void print_build_info(void)
{
#ifdef OTA_FAULT_POINTS
    printf("fault-points: on\n");
#else
    printf("fault-points: off\n");
#endif
}

static int take_lock(struct host *h, struct ota_err *err)
{
    char path[600];

    snprintf(path, sizeof(path), "%s.lock", h->cfg.database);
    h->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (h->lock_fd < 0)
        return ota_err_set(err, errno, "cannot open lock %s: %s", path, strerror(errno));
    if (flock(h->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return ota_err_set(err, EWOULDBLOCK, "another ota-agent is running (lock %s)", path);
    return 0;
}

/* A database that had to be moved aside is a failure the server must hear of. */
static void report_db_reset(struct host *h)
{
    const char *why = ota_sqlite_reset_reason(h->db);
    struct ota_journal *j;
    struct ota_report r;
    struct ota_history hist;
    struct timespec ts;
    int64_t now;

    if (!why)
        return;
    j = calloc(1, sizeof(*j));
    if (!j)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    j->state = OTA_STATE_IDLE;
    memset(&r, 0, sizeof(r));
    memset(&hist, 0, sizeof(hist));
    snprintf(r.update_id, sizeof(r.update_id), "db-reset-%lld", (long long)now);
    ota_strlcpy(r.device_id, h->cfg.agent.device_id, sizeof(r.device_id));
    ota_strlcpy(r.state, "IDLE", sizeof(r.state));
    ota_strlcpy(r.status, "failure", sizeof(r.status));
    snprintf(r.reason, sizeof(r.reason), "agent database was unusable and moved aside: %s", why);
    r.ts_ms = now;
    ota_strlcpy(hist.update_id, r.update_id, sizeof(hist.update_id));
    ota_strlcpy(hist.status, "failure", sizeof(hist.status));
    ota_strlcpy(hist.reason, r.reason, sizeof(hist.reason));
    hist.ts_ms = now;
    if (ota_sqlite_ops.save(h->db, j, h->cfg.agent.source == OTA_SOURCE_FLEET ? &r : NULL, &hist,
                            NULL) < 0)
        fprintf(stderr, "ota-agent: could not record the database reset\n");
    fprintf(stderr, "ota-agent: %s\n", r.reason);
    free(j);
}

static void host_close(struct host *h)
{
    ota_agent_free(h->agent);
    ota_install_free(h->inst);
    ota_service_free(h->svc);
    ota_ubootenv_close(h->env);
    ota_sqlite_close(h->db);
    ota_curl_free(h->curl);
    if (h->lock_fd >= 0)
        close(h->lock_fd);
}

/* readonly: status only reads (no lock, the store opened read only: a
 * broken database is reported, not moved aside); the other commands change
 * state and take the lock. */
static int host_open(struct host *h, const char *config, int readonly, struct ota_err *err)
{
    struct ota_agent_ops ops;
    int r;

    h->lock_fd = -1;
    r = ota_config_load(config, &h->cfg, err);
    if (r < 0)
        return EXIT_USAGE;
    if (!readonly && take_lock(h, err) < 0)
        return EXIT_LOCKED;
    if ((readonly ? ota_sqlite_open_ro(h->cfg.database, &h->db, err)
                  : ota_sqlite_open(h->cfg.database, &h->db, err)) < 0 ||
        ota_curl_new(&h->cfg.curl, &h->curl, err) < 0 ||
        ota_service_new(&h->cfg.service, &h->svc, err) < 0 ||
        ota_install_new(&h->cfg.install, &h->inst, err) < 0)
        return EXIT_INTERNAL;
    if (h->cfg.env_config[0] && ota_ubootenv_open(h->cfg.env_config, &h->env, err) < 0)
        return EXIT_INTERNAL;
    report_db_reset(h);
    ota_clock_posix_init(&h->clock);
    memset(&ops, 0, sizeof(ops));
    ops.transport = &ota_curl_ops;
    ops.transport_ctx = h->curl;
    ops.store = &ota_sqlite_ops;
    ops.store_ctx = h->db;
    ops.bootenv = h->env ? &ota_ubootenv_ops : NULL;
    ops.bootenv_ctx = h->env;
    ops.service = &ota_service_ops;
    ops.service_ctx = h->svc;
    ops.clock = &ota_clock_posix_ops;
    ops.clock_ctx = &h->clock;
    ops.install = &ota_install_posix_ops;
    ops.install_ctx = h->inst;
    ops.on_transition = print_transition;
    h->agent = ota_agent_new(&h->cfg.agent, &ops);
    if (!h->agent) {
        (void)ota_err_set(err, ENOMEM, "out of memory");
        return EXIT_INTERNAL;
    }
    return EXIT_OK;
}

static void sleep_until(struct host *h, int64_t wake_ms)
{
    for (;;) {
        int64_t now = ota_clock_posix_ops.mono_ms(&h->clock);
        struct timespec ts;
        if (now >= wake_ms || stop_requested)
            return;
        ts.tv_sec = (wake_ms - now) / 1000;
        ts.tv_nsec = ((wake_ms - now) % 1000) * 1000000;
        if (ts.tv_sec > 1) {
            ts.tv_sec = 1;
            ts.tv_nsec = 0;
        }
        nanosleep(&ts, NULL);
    }
}

/* Steps until IDLE or a reboot. 0, or EXIT_INTERNAL with err set. */
static int run_to_idle(struct host *h, int *ret_rebooting, struct ota_err *err)
{
    *ret_rebooting = 0;
    for (;;) {
        struct ota_step st;
        if (ota_agent_step(h->agent, &st, err) < 0)
            return EXIT_INTERNAL;
        switch (st.result) {
        case OTA_STEP_IDLE:
            return EXIT_OK;
        case OTA_STEP_REBOOT:
            *ret_rebooting = 1;
            return EXIT_OK;
        case OTA_STEP_WAIT:
            sleep_until(h, st.wake_ms);
            if (stop_requested)
                return EXIT_OK;
            break;
        default:
            break;
        }
    }
}

static int outcome_code(struct host *h, struct ota_err *err)
{
    const char *why;

    switch (ota_agent_last_outcome(h->agent, &why)) {
    case OTA_STATUS_FAILURE:
        (void)ota_err_set(err, EIO, "update failed: %s", why);
        return EXIT_FAILED;
    case OTA_STATUS_SUCCESS:
        return EXIT_OK;
    default:
        break;
    }
    if (ota_agent_last_check(h->agent, &why) == OTA_CHECK_UNREACHABLE) {
        (void)ota_err_set(err, EHOSTUNREACH, "server unreachable: %s", why);
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* One pass: recover what was interrupted, then check and update. */
static int cmd_update(struct host *h, struct ota_err *err)
{
    int rebooting, rc;

    if (ota_agent_start(h->agent, err) < 0)
        return EXIT_INTERNAL;
    rc = run_to_idle(h, &rebooting, err);
    if (rc || rebooting || stop_requested)
        return rc;
    /* Not after a STANDBY pass: its step checked in already. */
    if (ota_agent_last_outcome(h->agent, NULL) == OTA_STATUS_IN_PROGRESS &&
        ota_agent_journal(h->agent)->state == OTA_STATE_IDLE) {
        if (ota_agent_check(h->agent, 0, err) < 0)
            return EXIT_INTERNAL;
        rc = run_to_idle(h, &rebooting, err);
        if (rc || rebooting)
            return rc;
    }
    ota_ignore(ota_agent_flush_outbox(h->agent, NULL));
    return outcome_code(h, err);
}

static int cmd_check(struct host *h, struct ota_err *err)
{
    const char *why;
    int rebooting, rc;

    if (ota_agent_load(h->agent, err) < 0)
        return EXIT_INTERNAL;
    if (ota_agent_journal(h->agent)->state != OTA_STATE_IDLE) {
        printf("update in progress: %s\n", ota_state_names[ota_agent_journal(h->agent)->state]);
        return EXIT_OK;
    }
    if (ota_agent_check(h->agent, 1, err) < 0)
        return EXIT_INTERNAL;
    rc = run_to_idle(h, &rebooting, err);
    if (rc)
        return rc;
    switch (ota_agent_last_check(h->agent, &why)) {
    case OTA_CHECK_OFFERED:
        printf("update available: %s\n", why);
        return EXIT_AVAILABLE;
    case OTA_CHECK_REFUSED:
        printf("%s\n", why);
        return EXIT_FAILED;
    case OTA_CHECK_UNREACHABLE:
        (void)ota_err_set(err, EHOSTUNREACH, "server unreachable: %s", why);
        return EXIT_UNREACHABLE;
    default:
        printf("up to date\n");
        return EXIT_OK;
    }
}

static int cmd_daemon(struct host *h, struct ota_err *err)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop_requested) {
        int rc = cmd_update(h, err);
        int64_t wait_ms;

        if (rc == EXIT_INTERNAL)
            return rc;
        if (rc != EXIT_OK)
            fprintf(stderr, "ota-agent: %s\n", err->reason);
        ota_err_clear(err);
        wait_ms = h->cfg.poll_interval_s * 1000;
        if (h->cfg.poll_jitter_s > 0)
            wait_ms += (int64_t)(ota_clock_posix_ops.random(&h->clock) %
                                 (uint32_t)(h->cfg.poll_jitter_s * 1000));
        sleep_until(h, ota_clock_posix_ops.mono_ms(&h->clock) + wait_ms);
    }
    return EXIT_OK;
}

static int cmd_commit(struct host *h, struct ota_err *err)
{
    int rebooting;

    if (ota_agent_load(h->agent, err) < 0)
        return EXIT_INTERNAL;
    if (ota_agent_commit(h->agent, err) < 0)
        return EXIT_FAILED;
    if (run_to_idle(h, &rebooting, err))
        return EXIT_INTERNAL;
    return outcome_code(h, err) == EXIT_OK ? EXIT_OK : EXIT_FAILED;
}

static int cmd_rollback(struct host *h, struct ota_err *err)
{
    int rebooting;

    if (ota_agent_load(h->agent, err) < 0)
        return EXIT_INTERNAL;
    if (ota_agent_rollback(h->agent, err) < 0)
        return EXIT_FAILED;
    if (run_to_idle(h, &rebooting, err))
        return EXIT_INTERNAL;
    return EXIT_OK;
}

/* status --json's "keys": {"keyring": N, "trusted": [ids], "revoked": [ids]},
 * or {"error": reason} when they cannot be told (keyring < 0). */
static json_t *keys_json(int64_t keyring, char *trusted, char *revoked, const char *why)
{
    json_t *o, *arr;
    char *lists[2] = {trusted, revoked}, *save = NULL;
    const char *names[2] = {"trusted", "revoked"};

    if (keyring < 0)
        return json_pack("{s:s}", "error", why);
    o = json_pack("{s:I}", "keyring", (json_int_t)keyring);
    for (int i = 0; i < 2 && o; i++) {
        arr = json_array();
        for (char *id = strtok_r(lists[i], ", ", &save); id && arr;
             id = strtok_r(NULL, ", ", &save))
            json_array_append_new(arr, json_string(id));
        json_object_set_new(o, names[i], arr ? arr : json_null());
    }
    return o;
}

static int cmd_status(struct host *h, int as_json, struct ota_err *err)
{
    const struct ota_journal *j;
    struct ota_history hist[10];
    size_t n = 0, queued = 0;
    char appv[64] = "", rootv[64] = "", limit[OTA_REASON_LEN + 64] = "";
    char trusted[512] = "", revoked[512] = "";
    struct ota_err kerr = {0};
    int app_slot = -1, root_slot = -1;
    int64_t limit_until = 0, keyring = 0;
    json_t *o, *ha;
    char *s = NULL;

    if (ota_agent_load(h->agent, err) < 0)
        return EXIT_INTERNAL;
    j = ota_agent_journal(h->agent);
    if (ota_agent_installed(h->agent, OTA_KIND_APP, &app_slot, appv, sizeof(appv), NULL) < 0)
        app_slot = -1;
    if (!h->env ||
        ota_agent_installed(h->agent, OTA_KIND_ROOTFS, &root_slot, rootv, sizeof(rootv), NULL) < 0)
        root_slot = -1;
    if (ota_sqlite_history(h->db, hist, 10, &n, err) < 0 ||
        ota_sqlite_outbox_count(h->db, &queued, err) < 0)
        return EXIT_INTERNAL;
    (void)ota_agent_rate_limit(h->agent, &limit_until, limit, sizeof(limit));
    kerr.code = 0;
    if (ota_agent_keys(h->agent, &keyring, trusted, sizeof(trusted), revoked, sizeof(revoked),
                       &kerr) < 0)
        keyring = -1;
    if (!as_json) {
        printf("state:    %s\n", ota_state_names[j->state]);
        if (j->update_id[0])
            printf("update:   %s (slot %s, resumes %u)\n", j->update_id,
                   ota_slot_names[j->to_slot & 1], j->resumes);
        printf("app:      %s (slot %s)\n", appv[0] ? appv : "-",
               app_slot >= 0 ? ota_slot_names[app_slot] : "-");
        if (root_slot >= 0)
            printf("rootfs:   %s (slot %s)\n", rootv, ota_slot_names[root_slot]);
        if (keyring < 0)
            printf("keys:     %s\n", kerr.reason);
        else
            printf("keys:     keyring %lld; trusted %s; revoked %s\n", (long long)keyring,
                   trusted[0] ? trusted : "none", revoked[0] ? revoked : "none");
        printf("outbox:   %zu report(s) waiting\n", queued);
        if (limit[0])
            printf("source:   %s\n", limit);
        for (size_t i = 0; i < n; i++)
            printf("history:  %s %s -> %s %s%s%s\n", hist[i].update_id, hist[i].from_version,
                   hist[i].version, hist[i].status, hist[i].reason[0] ? ": " : "", hist[i].reason);
        return EXIT_OK;
    }
    ha = json_array();
    for (size_t i = 0; i < n && ha; i++)
        json_array_append_new(ha, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "update_id",
                                            hist[i].update_id, "version", hist[i].version,
                                            "from_version", hist[i].from_version, "kind",
                                            hist[i].kind, "status", hist[i].status, "reason",
                                            hist[i].reason, "ts", (json_int_t)hist[i].ts_ms));
    o = json_pack("{s:s, s:s, s:s, s:i, s:{s:s, s:s?}, s:{s:s, s:s?}, s:I, s:o}", "state",
                  ota_state_names[j->state], "update_id", j->update_id, "target_slot",
                  j->update_id[0] ? ota_slot_names[j->to_slot & 1] : "", "resumes", (int)j->resumes,
                  "app", "version", appv, "slot", app_slot >= 0 ? ota_slot_names[app_slot] : NULL,
                  "rootfs", "version", rootv, "slot",
                  root_slot >= 0 ? ota_slot_names[root_slot] : NULL, "outbox", (json_int_t)queued,
                  "history", ha);
    if (o && limit[0])
        json_object_set_new(o, "rate_limit", json_string(limit));
    if (o)
        json_object_set_new(o, "keys", keys_json(keyring, trusted, revoked, kerr.reason));
    if (!o || ota_json_dump(o, &s) < 0) {
        json_decref(o);
        return EXIT_INTERNAL;
    }
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return EXIT_OK;
}

int ota_cli_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"build-info", no_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    const char *config = "/etc/ota-agent.conf", *cmd;
    struct host h;
    struct ota_err err = {0};
    int as_json = 0, c, rc;

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'B':
            print_build_info();
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "check") && strcmp(cmd, "update") && strcmp(cmd, "daemon") &&
        strcmp(cmd, "status") && strcmp(cmd, "rollback") && strcmp(cmd, "commit") &&
        strcmp(cmd, "init")) {
        fprintf(stderr, "ota-agent: unknown command '%s'\n", cmd);
        usage(stderr);
        return EXIT_USAGE;
    }
    memset(&h, 0, sizeof(h));
    rc = host_open(&h, config, strcmp(cmd, "status") == 0, &err);
    if (rc == EXIT_OK) {
        if (strcmp(cmd, "check") == 0)
            rc = cmd_check(&h, &err);
        else if (strcmp(cmd, "update") == 0)
            rc = cmd_update(&h, &err);
        else if (strcmp(cmd, "daemon") == 0)
            rc = cmd_daemon(&h, &err);
        else if (strcmp(cmd, "status") == 0)
            rc = cmd_status(&h, as_json, &err);
        else if (strcmp(cmd, "rollback") == 0)
            rc = cmd_rollback(&h, &err);
        else if (strcmp(cmd, "commit") == 0)
            rc = cmd_commit(&h, &err);
        /* init: host_open made or migrated the database (the same open as every command's);
         * no journal is loaded or saved. */
    }
    if (rc != EXIT_OK && rc != EXIT_AVAILABLE && err.reason[0])
        fprintf(stderr, "ota-agent: %s\n", err.reason);
    host_close(&h);
    return rc;
}
