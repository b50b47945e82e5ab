/* video-app: the demo application that the OTA agent updates. It stands for
 * the seed's video service: 1.x streams colour frames, 2.x and above the
 * same frames in black and white.
 *
 * The version and the fault are fixed at build time (see CMakeLists.txt),
 * never chosen by a flag: a bad release must be bad by itself, exactly as
 * a field failure would be, so that only the agent's health check and
 * rollback can save the device.
 *
 *   GET /health        200 {"status":"ok","version":"X"}
 *   GET /version       200 {"version":"X","mode":"color"|"bw"}
 *   GET /frame[?n=K]   200 frame K (default 0) as a binary PPM (P6) image
 *
 * Faults: crash-on-start (exit 1 before listening), crash-after (abort()
 * after VIDEO_APP_FAULT_SECONDS), health-500 (/health answers 500), hang
 * (after VIDEO_APP_FAULT_SECONDS the loop stops: connections are accepted
 * by the kernel but never answered; SIGTERM still ends the process, by
 * its default action, like a wedged process without a working handler),
 * health-500-quirk (/health answers 500 on a device with the hardware quirk
 * this build's bug trips on: the file ../etc/video-app-quirk-VERSION exists,
 * relative to the working directory, which `ota-sim svc` makes the device's
 * ROOT/run; the fleet calibration marks the devices its bad-release draw
 * picks, docs/fleet.md "Calibration"). */
#include "frame.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum vapp_fault {
    VAPP_FAULT_NONE,
    VAPP_FAULT_CRASH_ON_START,
    VAPP_FAULT_CRASH_AFTER,
    VAPP_FAULT_HEALTH_500,
    VAPP_FAULT_HANG,
    VAPP_FAULT_HEALTH_500_QUIRK,
    VAPP_FAULT_MAX,
};

static const char *const fault_names[VAPP_FAULT_MAX] = {
    "none", "crash-on-start", "crash-after", "health-500", "hang", "health-500-quirk",
};

#ifndef VIDEO_APP_VERSION
#define VIDEO_APP_VERSION "0.0.0-dev"
#endif
#ifndef VIDEO_APP_FAULT
#define VIDEO_APP_FAULT VAPP_FAULT_NONE
#endif
#ifndef VIDEO_APP_FAULT_SECONDS
#define VIDEO_APP_FAULT_SECONDS 3
#endif

#define DEFAULT_PORT 8081
#define DEFAULT_BIND "127.0.0.1"

struct app {
    const char *version;
    enum vapp_fault fault;
    int bw;    /* major version >= 2 */
    int quirk; /* health-500-quirk on a device with the quirk */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Only the major number matters: "2.0.0-rc1" is a 2.x build. */
static int is_bw(const char *version)
{
    return strtol(version, NULL, 10) >= 2;
}

/* Frame number from a query string like "n=12&x=y"; -1 if malformed. */
static long long frame_number(const char *query)
{
    const char *p = query;

    while (*p) {
        size_t len = strcspn(p, "&");

        if (len > 2 && strncmp(p, "n=", 2) == 0) {
            char digits[24];
            char *end;
            unsigned long long n;

            if (len - 2 >= sizeof(digits))
                return -1;
            memcpy(digits, p + 2, len - 2);
            digits[len - 2] = '\0';
            if (digits[0] < '0' || digits[0] > '9')
                return -1;
            errno = 0;
            n = strtoull(digits, &end, 10);
            if (errno || *end || n > LLONG_MAX)
                return -1;
            return (long long)n;
        } else if (len == 2 && strncmp(p, "n=", 2) == 0) {
            return -1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

static void json(struct vapp_response *resp, int status, const char *text)
{
    int n = snprintf((char *)resp->body, resp->body_cap, "%s\n", text);

    resp->status = status;
    resp->content_type = "application/json";
    resp->body_len = n > 0 ? (size_t)n : 0;
}

static void handle(void *ctx, const struct vapp_request *req, struct vapp_response *resp)
{
    const struct app *app = ctx;
    char text[256];

    if (strcmp(req->path, "/health") == 0) {
        int bad = app->fault == VAPP_FAULT_HEALTH_500 || app->quirk;

        snprintf(text, sizeof(text), "{\"status\":\"%s\",\"version\":\"%s\"}", bad ? "error" : "ok",
                 app->version);
        json(resp, bad ? 500 : 200, text);
    } else if (strcmp(req->path, "/version") == 0) {
        snprintf(text, sizeof(text), "{\"version\":\"%s\",\"mode\":\"%s\"}", app->version,
                 app->bw ? "bw" : "color");
        json(resp, 200, text);
    } else if (strcmp(req->path, "/frame") == 0) {
        long long n = frame_number(req->query);

        if (n < 0) {
            json(resp, 400, "{\"error\":\"bad frame number\"}");
            return;
        }
        resp->body_len = vapp_frame_render(resp->body, resp->body_cap, VAPP_FRAME_W, VAPP_FRAME_H,
                                           (uint64_t)n, app->bw);
        resp->status = resp->body_len ? 200 : 500;
        resp->content_type = "image/x-portable-pixmap";
    } else if (strcmp(req->path, "/") == 0) {
        int len =
            snprintf((char *)resp->body, resp->body_cap,
                     "video-app %s\nGET /health\nGET /version\nGET /frame?n=K\n", app->version);

        resp->status = 200;
        resp->content_type = "text/plain";
        resp->body_len = len > 0 ? (size_t)len : 0;
    } else {
        json(resp, 404, "{\"error\":\"not found\"}");
    }
}

static int parse_port(const char *s, unsigned *ret)
{
    char *end;
    unsigned long v;

    if (!s || !*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > 65535)
        return -1;
    *ret = (unsigned)v;
    return 0;
}

/* Written under a temporary name and renamed, so that a reader polling for
 * the file never sees a partial port number. */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[PATH_MAX], text[16];
    int fd, len, r = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    len = snprintf(text, sizeof(text), "%u\n", port);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write(fd, text, (size_t)len) != len || fsync(fd) < 0)
        r = errno ? -errno : -EIO;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: video-app [--port N] [--bind ADDR] [--port-file FILE]\n"
            "  --port N          TCP port (env VIDEO_APP_PORT, default %d; 0 = any)\n"
            "  --bind ADDR       numeric address to listen on (env VIDEO_APP_BIND, "
            "default %s)\n"
            "  --port-file FILE  write the bound port to FILE once listening\n"
            "  --version         print the version and exit\n",
            DEFAULT_PORT, DEFAULT_BIND);
}

/* Takes the value of "--name VALUE" or "--name=VALUE"; NULL if absent. */
static const char *option(int argc, char **argv, int *i, const char *name)
{
    size_t len = strlen(name);

    if (strncmp(argv[*i], name, len) != 0)
        return NULL;
    if (argv[*i][len] == '=')
        return argv[*i] + len + 1;
    if (argv[*i][len] != '\0' || *i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

int main(int argc, char **argv)
{
    struct app app = {VIDEO_APP_VERSION, VIDEO_APP_FAULT, is_bw(VIDEO_APP_VERSION), 0};
    const char *bind_addr = getenv("VIDEO_APP_BIND"), *port_file = NULL, *v;
    unsigned port = DEFAULT_PORT;
    struct vapp_server *srv = NULL;
    struct sigaction sa = {0};
    sigset_t block, waitmask;
    int64_t fault_at = -1;
    int r;

    if (!bind_addr || !*bind_addr)
        bind_addr = DEFAULT_BIND;
    v = getenv("VIDEO_APP_PORT");
    if (v && *v && parse_port(v, &port) < 0) {
        fprintf(stderr, "video-app: bad VIDEO_APP_PORT '%s'\n", v);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s\n", app.version);
            return 0;
        } else if ((v = option(argc, argv, &i, "--port-file"))) {
            port_file = v;
        } else if ((v = option(argc, argv, &i, "--port"))) {
            if (parse_port(v, &port) < 0) {
                fprintf(stderr, "video-app: bad port '%s'\n", v);
                return 2;
            }
        } else if ((v = option(argc, argv, &i, "--bind"))) {
            bind_addr = v;
        } else {
            usage(stderr);
            return 2;
        }
    }

    if (app.fault == VAPP_FAULT_HEALTH_500_QUIRK) {
        char quirk[96];
        snprintf(quirk, sizeof(quirk), "../etc/video-app-quirk-%s", app.version);
        app.quirk = access(quirk, F_OK) == 0;
    }
    if (app.fault == VAPP_FAULT_CRASH_ON_START) {
        fprintf(stderr, "video-app %s: fault crash-on-start: exiting\n", app.version);
        return 1;
    }

    /* SIGTERM/SIGINT are blocked except inside ppoll: no lost wake-up. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    r = vapp_server_open(bind_addr, port, &srv);
    if (r < 0) {
        fprintf(stderr, "video-app %s: cannot listen on %s:%u: %s\n", app.version, bind_addr, port,
                strerror(-r));
        return 1;
    }
    if (port_file) {
        r = write_port_file(port_file, vapp_server_port(srv));
        if (r < 0) {
            fprintf(stderr, "video-app %s: cannot write %s: %s\n", app.version, port_file,
                    strerror(-r));
            vapp_server_close(srv);
            return 1;
        }
    }
    fprintf(stderr, "video-app %s (%s) listening on %s:%u, pid %ld, fault %s\n", app.version,
            app.bw ? "bw" : "color", bind_addr, vapp_server_port(srv), (long)getpid(),
            fault_names[app.fault]);

    if (app.fault == VAPP_FAULT_CRASH_AFTER || app.fault == VAPP_FAULT_HANG)
        fault_at = vapp_mono_ms() + (int64_t)VIDEO_APP_FAULT_SECONDS * 1000;
    r = vapp_server_run(srv, handle, &app, &waitmask, &stop_requested, fault_at);
    if (r == 1 && app.fault == VAPP_FAULT_CRASH_AFTER) {
        fprintf(stderr, "video-app %s: fault crash-after: aborting\n", app.version);
        abort();
    }
    if (r == 1 && app.fault == VAPP_FAULT_HANG) {
        fprintf(stderr, "video-app %s: fault hang: no longer answering\n", app.version);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigprocmask(SIG_UNBLOCK, &block, NULL);
        for (;;)
            pause();
    }
    vapp_server_close(srv);
    if (r < 0) {
        fprintf(stderr, "video-app %s: %s\n", app.version, strerror(-r));
        return 1;
    }
    fprintf(stderr, "video-app %s: stopped\n", app.version);
    return 0;
}
