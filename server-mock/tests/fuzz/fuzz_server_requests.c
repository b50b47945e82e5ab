/* Fuzz harness: request bodies and query strings of the real ota-server, in
 * process (otasrv_server_start on 127.0.0.1, a temporary store; requests
 * over a plain socket, so the whole way through libmicrohttpd, the router,
 * the handlers and SQLite runs under the sanitizers). Input: the first byte
 * picks the request, then for the GET ones a query line (bytes outside
 * printable ASCII percent-encoded, as a client would send them), else the
 * body:
 *   0 POST /api/v1/devices/register       (no token: the server runs with open enrollment)
 *   1 POST /api/v1/devices/fz-dev/checkin (the device's Bearer token)
 *   2 POST /api/v1/devices/fz-dev/status
 *   3 POST /api/v1/rollouts               (admin)
 *   4 POST /DEFAULT/controller/v1/fz-dev/deploymentBase/ID/feedback (TargetToken; ID: fz-dev's
 *     action, so the body reaches the feedback parser; a closed action answers 410 after it)
 *   5 PUT  /DEFAULT/controller/v1/fz-dev/configData
 *   6 GET  /api/v1/devices?QUERY          (admin)
 *   7 GET  /api/v1/releases?QUERY         (admin)
 *   8 GET  /api/v1/rollouts/r1/devices?QUERY (admin)
 *   9 GET  /repos/fz/fz/releases?QUERY    (the GitHub face)
 * At start: the device fz-dev registered, a published release v2 and the
 * immediate rollout r1 offering it (so check-ins get an offer and status
 * reports reach the rollout), and fz-dev's DDI action for r1 (its first base
 * poll opens it); a re-registration of fz-dev in an input takes
 * its new token. A slow target (an HTTP round trip and SQLite
 * writes per input): docs/fuzzing.md. Corpus: corpus/server-requests/. */
#include "otasrv/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct otasrv_srv *srv;
static char dev_token[128];
static char feedback_path[128]; /* fz-dev's action: deploymentBase/ID/feedback */
static const char admin_token[] = "fuzz-admin-token";

struct answer {
    int status;
    char body[8192];
};

/* One request on its own connection; the answer's status and the start of its body. */
static int http(const char *method, const char *target, const char *auth, const char *body,
                size_t body_len, struct answer *ret)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(srv->port)};
    char head[16384], buf[16384]; /* head: the target (< 8 KiB) and a few headers */
    size_t got = 0;
    ssize_t n;
    int fd, len;

    ret->status = 0;
    ret->body[0] = '\0';
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    /* libFuzzer's timers interrupt system calls (EINTR): a connect goes on, so ask again
     * until it says it is connected (EISCONN) */
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EISCONN) {
        if (errno != EINTR && errno != EALREADY) {
            perror("fuzz-server-requests: connect");
            abort(); /* the server is gone: that is a finding */
        }
    }
    len = snprintf(head, sizeof(head),
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   method, target, auth ? "Authorization: " : "", auth ? auth : "",
                   auth ? "\r\n" : "", body_len);
    if (len < 0 || (size_t)len >= sizeof(head))
        abort(); /* a harness error: the request would be cut */
    if (write(fd, head, (size_t)len) != len ||
        (body_len && write(fd, body, body_len) != (ssize_t)body_len)) {
        close(fd);
        return -1; /* the server may answer and close before a large body is sent */
    }
    while (got < sizeof(buf) - 1 &&
           ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
        got += n > 0 ? (size_t)n : 0;
    close(fd);
    buf[got] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &ret->status) != 1)
        return -1;
    const char *b = strstr(buf, "\r\n\r\n");
    if (b)
        snprintf(ret->body, sizeof(ret->body), "%s", b + 4);
    return 0;
}

/* A register answer for fz-dev: its new token. */
static void take_token(const struct answer *a)
{
    json_t *o = a->status == 201 ? json_loads(a->body, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(o, "device_id"));
    const char *tok = json_string_value(json_object_get(o, "token"));

    if (id && tok && strcmp(id, "fz-dev") == 0)
        snprintf(dev_token, sizeof(dev_token), "%s", tok);
    json_decref(o);
}

static char dir[] = "/dev/shm/ota-fuzz-srv-XXXXXX";

/* At exit (not after a crash: its store stays for a look). */
static void cleanup(void)
{
    char cmd[128];

    otasrv_server_stop(srv);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz-server-requests: could not remove %s\n", dir);
}

/* A published release v2 (video-app 2.0.0, unsigned: the server has no public key) and the
 * rollout r1 offering it to every device, so that check-ins get an offer, status reports and DDI
 * feedback reach a rollout, and a rollout definition naming v2 reaches the engine. */
static void setup_release_and_rollout(struct answer *a)
{
    static const char payload[] = "hello";
    char path[300], body[4096], manifest[1024];
    json_t *o;
    char *text;

    snprintf(path, sizeof(path), "%s/p.deb", dir);
    FILE *f = fopen(path, "we");
    if (!f || fwrite(payload, 1, 5, f) != 5 || fclose(f) != 0)
        abort();
    snprintf(manifest, sizeof(manifest),
             "{\"schema\":1,\"name\":\"video-app\",\"version\":\"2.0.0\",\"kind\":\"app\","
             "\"format\":\"deb\",\"payload\":\"p.deb\",\"size\":5,\"sha256\":"
             "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\","
             "\"installed_size\":5,\"device_types\":[\"rpi3b\"],\"min_version\":\"\","
             "\"rollback\":false,\"created\":1795000000}");
    o = json_pack(
        "{s:s, s:s, s:s, s:s, s:b}", "id", "v2", "manifest", manifest, "signature",
        "iGYopZmXbHfU4a56CBmGVPEDd0/mNctvl5RBfRaZzYRIwl2EYywRq+8w+dvK53cKtb7+2gns1ffVuD3rrHoPDw==",
        "payload_path", path, "publish", 1);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        abort();
    snprintf(body, sizeof(body), "Bearer %s", admin_token);
    if (http("POST", "/api/v1/releases", body, text, strlen(text), a) < 0 || a->status != 201) {
        fprintf(stderr, "fuzz-server-requests: the release: %d %s\n", a->status, a->body);
        abort();
    }
    free(text);
    static const char ro[] = "{\"id\":\"r1\",\"release_id\":\"v2\",\"strategy\":\"immediate\"}";
    if (http("POST", "/api/v1/rollouts", body, ro, sizeof(ro) - 1, a) < 0 || a->status != 201) {
        fprintf(stderr, "fuzz-server-requests: the rollout: %d %s\n", a->status, a->body);
        abort();
    }
    if (http("POST", "/api/v1/rollouts/r1/approve", body, "", 0, a) < 0 || a->status != 200 ||
        http("POST", "/api/v1/rollouts/r1/start", body, "", 0, a) < 0 || a->status != 200)
        fprintf(stderr, "fuzz-server-requests: starting r1: %d %s\n", a->status, a->body);
}

/* fz-dev's first DDI base poll: the action r1 opens for it, whose feedback path the inputs
 * of kind 4 take (without an action, feedback stops at 404 before its body is read). */
static void open_ddi_action(struct answer *a)
{
    char auth[160];
    json_t *o;
    const char *href, *id;

    snprintf(auth, sizeof(auth), "TargetToken %s", dev_token);
    if (http("GET", "/DEFAULT/controller/v1/fz-dev", auth, "", 0, a) < 0 || a->status != 200) {
        fprintf(stderr, "fuzz-server-requests: the DDI base poll: %d %s\n", a->status, a->body);
        abort();
    }
    o = json_loads(a->body, 0, NULL);
    href = json_string_value(
        json_object_get(json_object_get(json_object_get(o, "_links"), "deploymentBase"), "href"));
    id = href ? strrchr(href, '/') : NULL;
    if (!id || !id[1]) {
        fprintf(stderr, "fuzz-server-requests: no DDI action for fz-dev: %s\n", a->body);
        abort();
    }
    snprintf(feedback_path, sizeof(feedback_path),
             "/DEFAULT/controller/v1/fz-dev/deploymentBase/%s/feedback", id + 1);
    json_decref(o);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char db[256], data[256]; /* the server keeps the pointers */
    static const char reg[] =
        "{\"device_id\":\"fz-dev\",\"device_type\":\"rpi3b\",\"group\":\"lab\","
        "\"versions\":{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"}}";
    struct otasrv_config cfg = {0};
    struct ota_err err;
    struct answer a;

    if (!mkdtemp(dir)) { /* no /dev/shm: the temporary directory */
        snprintf(dir, sizeof(dir), "/tmp/ota-fuzz-srv-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(db, sizeof(db), "%s/ota-server.db", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    cfg.listen = "127.0.0.1";
    cfg.db_path = db;
    cfg.data_dir = data;
    cfg.admin_token = admin_token;
    cfg.threads = 1;
    cfg.open_enrollment = 1; /* registration bodies are fuzzed, open as in a lab */
    cfg.ddi_gateway_token = "fuzz-gateway";
    if (otasrv_server_start(&cfg, &srv, &err) < 0) {
        fprintf(stderr, "fuzz-server-requests: %s\n", err.reason);
        abort();
    }
    atexit(cleanup);
    fprintf(stderr, "fuzz-server-requests: ota-server on 127.0.0.1:%u, store in %s\n", srv->port,
            dir);
    if (http("POST", "/api/v1/devices/register", NULL, reg, sizeof(reg) - 1, &a) < 0 ||
        (take_token(&a), !dev_token[0])) {
        fprintf(stderr, "fuzz-server-requests: registering fz-dev: %d %s\n", a.status, a.body);
        abort();
    }
    setup_release_and_rollout(&a);
    open_ddi_action(&a);
    return 0;
}

/* The query line of data, percent-encoded where a client would, after "?". */
static size_t query(const uint8_t *data, size_t size, char *buf, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;

    for (i = 0; i < size && data[i] != '\n' && o + 4 < cap; i++) {
        uint8_t c = data[i];
        if (c <= 0x20 || c >= 0x7f || c == '#' || c == '%') {
            buf[o++] = '%';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return i < size ? i + 1 : i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *const paths[] = {
        "/api/v1/devices/register",
        "/api/v1/devices/fz-dev/checkin",
        "/api/v1/devices/fz-dev/status",
        "/api/v1/rollouts",
        feedback_path,
        "/DEFAULT/controller/v1/fz-dev/configData",
        "/api/v1/devices",
        "/api/v1/releases",
        "/api/v1/rollouts/r1/devices",
        "/repos/fz/fz/releases",
    };
    char auth[256], target[8192], q[6000];
    const char *body = (const char *)data + 1;
    size_t body_len = size ? size - 1 : 0;
    static struct answer a;
    unsigned pick;

    if (size < 1 || size > 65536)
        return 0;
    pick = data[0] % 10;
    if (pick == 1 || pick == 2)
        snprintf(auth, sizeof(auth), "Bearer %s", dev_token);
    else if (pick == 4 || pick == 5)
        snprintf(auth, sizeof(auth), "TargetToken %s", dev_token);
    else
        snprintf(auth, sizeof(auth), "Bearer %s", admin_token);
    if (pick >= 6) {
        size_t used = query(data + 1, size - 1, q, sizeof(q));
        snprintf(target, sizeof(target), "%s?%s", paths[pick], q);
        body += used;
        body_len -= used;
        (void)http("GET", target, auth, "", 0, &a);
        if (getenv("FUZZ_VERBOSE"))
            fprintf(stderr, "%s -> %d %.200s\n", target, a.status, a.body);
        return 0;
    }
    (void)http(pick == 5 ? "PUT" : "POST", paths[pick], pick == 0 ? NULL : auth, body, body_len,
               &a);
    if (pick == 0)
        take_token(&a);
    if (getenv("FUZZ_VERBOSE")) /* what the server answered (replay: is the seed any use?) */
        fprintf(stderr, "%s -> %d %.200s\n", paths[pick], a.status, a.body);
    return 0;
}
