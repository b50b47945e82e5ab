/* ota-server's command line: "serve" (parse the options, start the server
 * library, wait for SIGINT/SIGTERM) and the admin commands (ctl.h). main.c
 * only calls otasrv_cli_main(). */
#include "otasrv/cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "otasrv/ctl.h"
#include "otasrv/api_faults.h"
#include "otasrv/devlimit.h"
#include "otasrv/server.h"

static const char USAGE[] =
    "usage: ota-server serve [options]\n"
    "       ota-server release|rollout|devices|device|reports|clock ... (admin commands,\n"
    "       below)\n"
    "       ota-server --help\n"
    "\n"
    "The mock OTA release server: a GitHub-Releases face, the fleet API for\n"
    "devices (register, checkin, download, status) and an admin API (releases,\n"
    "devices, reports). Wire format: docs/protocol.md.\n"
    "\n"
    "serve options:\n"
    "  --listen ADDR          IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
    "  --port N               TCP port; 0 picks a free one (default 8080)\n"
    "  --port-file FILE       write the port there (atomically) once listening\n"
    "  --db FILE              SQLite database (default ./ota-server.db; WAL,\n"
    "                         synchronous=FULL: acknowledged writes survive kill -9,\n"
    "                         except check-in times and counts, flushed every ~200 ms)\n"
    "  --data-dir DIR         release files (default ./ota-server-data)\n"
    "  --admin-token T        the admin API's Bearer token\n"
    "  --admin-token-file F   read the admin token from F, or generate one and\n"
    "                         write it there (default DATA-DIR/admin.token)\n"
    "  --readonly-admin-token T   a read-only admin token: GET on the admin API\n"
    "                         and /metrics; any change gets 403 (--admin-token is\n"
    "                         the operator's, good for everything)\n"
    "  --readonly-admin-token-file F   read it from F\n"
    "  --enroll-token T       the token devices register with (default: none,\n"
    "                         enrollment is closed)\n"
    "  --open-enrollment      labs and tests: registration takes any token\n"
    "  --device-rate-limit N/s|N/m|N/h  fleet API requests per device (burst N;\n"
    "                         beyond: 429 with Retry-After; default: no limit)\n"
    "  --public-key PEM[,PEM] refuse releases whose signature none of these keys verifies\n"
    "  --public-url URL       base of URLs in answers (default: from the Host header)\n"
    "  --tls-cert PEM --tls-key PEM   serve HTTPS\n"
    "  --tls-client-ca PEM    mutual TLS: ask clients for a certificate; this CA\n"
    "                         signs the devices' ones, subject CN = device id. A\n"
    "                         device call with another device's certificate, or one\n"
    "                         the CA does not verify: 403 (docs/protocol.md,\n"
    "                         \"Client certificates\")\n"
    "  --require-client-cert  with --tls-client-ca: device calls without a\n"
    "                         certificate get 403 too (the admin API keeps its tokens)\n"
    "  --threads N            worker threads (default 4)\n"
    "  --max-body BYTES       JSON body limit, 413 beyond (default 1048576)\n"
    "  --max-upload BYTES     raw payload upload limit (default 8 GiB)\n"
    "  --log FILE             access log as JSON lines (\"-\": stderr)\n"
    "  --ddi-gateway-token T  hawkBit DDI: the GatewayToken, good for every\n"
    "                         controller id (a first poll with it registers an\n"
    "                         unknown one); default: none (TargetToken only)\n"
    "  --ddi-poll SECONDS     hawkBit DDI: config.polling.sleep, 1..86399 (default 300)\n"
    "  --ddi-device-type T    hawkBit DDI: device_type of a target registered by a\n"
    "                         gateway poll (default \"ddi\")\n"
    "  --faults FILE          fault plan (JSON or YAML; docs/protocol.md, \"Fault\n"
    "                         plans\"); a bad plan exits 2 with the reason. Applied\n"
    "                         faults are logged as JSON lines to --log (else stderr);\n"
    "                         replace the plan at run time: PUT /api/v1/faults\n"
    "  --virtual-clock START_MS   TESTS ONLY: run on a virtual clock starting at\n"
    "                         START_MS (unix ms) that moves only when an admin\n"
    "                         advances it (POST /api/v1/admin/clock, \"ota-server\n"
    "                         clock\"): rollout timers, timestamps and fault-plan\n"
    "                         delays, stalls and throttles all run on it\n"
    "                         (docs/protocol.md, \"Virtual clock (tests only)\")\n"
    "  --github-rate-limit N[/h|/m|/s|/Ss]   the GitHub face's rate limit: N API\n"
    "                         requests a window (default one hour) per client, as\n"
    "                         GitHub's 60/h (docs/protocol.md, \"Rate limit\");\n"
    "                         default: none\n"
    "  --github-auth-limit N  with a token the face accepts (default 5000)\n"
    "  --github-token T       a token the face accepts (Authorization: token T or\n"
    "                         Bearer T; up to 8; another token: 401)\n"
    "  --github-rate-status S past the limit: 403 (default) or 429\n"
    "  --github-retry-after   past the limit: send Retry-After too\n"
    "  --github-rate-key H    count unauthenticated clients by request header H\n"
    "                         (default: by client address)\n"
    "  --clock-parties N      with --virtual-clock: N runners drive the clock\n"
    "                         together (fleet shards): each asks for its next\n"
    "                         time with {\"advance_to_ms\":T,\"party\":I}; the clock\n"
    "                         moves to the earliest once all wait\n"
    "\n"
    "\n";

static int parse_u64(const char *s, unsigned long long max, unsigned long long *ret)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (!*s || *end || errno || v > max || s[0] == '-')
        return -EINVAL;
    *ret = v;
    return 0;
}

enum {
    O_LISTEN = 256,
    O_PORT,
    O_PORT_FILE,
    O_DB,
    O_DATA,
    O_ADMIN,
    O_ADMIN_FILE,
    O_ENROLL,
    O_OPEN_ENROLL,
    O_DEV_RATE,
    O_PUBKEY,
    O_PUBURL,
    O_CERT,
    O_KEY,
    O_THREADS,
    O_MAXBODY,
    O_MAXUP,
    O_LOG,
    O_FAULTS,
    O_VCLOCK,
    O_PARTIES,
    O_DDI_GW,
    O_DDI_POLL,
    O_DDI_TYPE,
    O_GH_LIMIT,
    O_GH_AUTH,
    O_GH_TOKEN,
    O_GH_STATUS,
    O_GH_RETRY,
    O_GH_KEY,
    O_RO_ADMIN,
    O_RO_ADMIN_FILE,
    O_CLIENT_CA,
    O_REQUIRE_CERT
};
static const struct option SERVE_OPTS[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"port", required_argument, NULL, O_PORT},
    {"port-file", required_argument, NULL, O_PORT_FILE},
    {"db", required_argument, NULL, O_DB},
    {"data-dir", required_argument, NULL, O_DATA},
    {"admin-token", required_argument, NULL, O_ADMIN},
    {"admin-token-file", required_argument, NULL, O_ADMIN_FILE},
    {"enroll-token", required_argument, NULL, O_ENROLL},
    {"open-enrollment", no_argument, NULL, O_OPEN_ENROLL},
    {"device-rate-limit", required_argument, NULL, O_DEV_RATE},
    {"public-key", required_argument, NULL, O_PUBKEY},
    {"public-url", required_argument, NULL, O_PUBURL},
    {"tls-cert", required_argument, NULL, O_CERT},
    {"tls-key", required_argument, NULL, O_KEY},
    {"threads", required_argument, NULL, O_THREADS},
    {"max-body", required_argument, NULL, O_MAXBODY},
    {"max-upload", required_argument, NULL, O_MAXUP},
    {"log", required_argument, NULL, O_LOG},
    {"faults", required_argument, NULL, O_FAULTS},
    {"virtual-clock", required_argument, NULL, O_VCLOCK},
    {"clock-parties", required_argument, NULL, O_PARTIES},
    {"ddi-gateway-token", required_argument, NULL, O_DDI_GW},
    {"ddi-poll", required_argument, NULL, O_DDI_POLL},
    {"ddi-device-type", required_argument, NULL, O_DDI_TYPE},
    {"github-rate-limit", required_argument, NULL, O_GH_LIMIT},
    {"github-auth-limit", required_argument, NULL, O_GH_AUTH},
    {"github-token", required_argument, NULL, O_GH_TOKEN},
    {"github-rate-status", required_argument, NULL, O_GH_STATUS},
    {"github-retry-after", no_argument, NULL, O_GH_RETRY},
    {"github-rate-key", required_argument, NULL, O_GH_KEY},
    {"readonly-admin-token", required_argument, NULL, O_RO_ADMIN},
    {"readonly-admin-token-file", required_argument, NULL, O_RO_ADMIN_FILE},
    {"tls-client-ca", required_argument, NULL, O_CLIENT_CA},
    {"require-client-cert", no_argument, NULL, O_REQUIRE_CERT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One --github-* option into g; -EINVAL. */
static int github_option(int c, const char *arg, struct otasrv_ghlimit_config *g)
{
    unsigned long long v;
    int i = 0;

    switch (c) {
    case O_GH_LIMIT:
        return otasrv_ghlimit_parse(arg, &g->limit, &g->window_ms);
    case O_GH_AUTH:
        if (parse_u64(arg, 10000000, &v) < 0 || v == 0)
            return -EINVAL;
        g->auth_limit = (unsigned)v;
        return 0;
    case O_GH_TOKEN:
        while (i < OTASRV_GHLIMIT_MAX_TOKENS && g->tokens[i])
            i++;
        if (i == OTASRV_GHLIMIT_MAX_TOKENS || !arg[0])
            return -EINVAL;
        g->tokens[i] = arg;
        return 0;
    case O_GH_STATUS:
        if (strcmp(arg, "403") != 0 && strcmp(arg, "429") != 0)
            return -EINVAL;
        g->status = (unsigned)atoi(arg);
        return 0;
    case O_GH_RETRY:
        g->retry_after = 1;
        return 0;
    default:
        if (!arg[0])
            return -EINVAL;
        g->key_header = arg;
        return 0;
    }
}

/* The admin roles' and mutual TLS's options into cfg. */
static void auth_option(int c, const char *arg, struct otasrv_config *cfg)
{
    switch (c) {
    case O_RO_ADMIN:
        cfg->readonly_admin_token = arg;
        break;
    case O_RO_ADMIN_FILE:
        cfg->readonly_admin_token_file = arg;
        break;
    case O_CLIENT_CA:
        cfg->tls_client_ca = arg;
        break;
    default:
        cfg->require_client_cert = 1;
        break;
    }
}

/* serve's options into cfg (strings pointing into argv) and *faults (the
 * --faults path): -1 to go on and serve, else the exit code (0 after
 * --help, 2 for bad usage, with the message printed). */
static int serve_options(int argc, char **argv, struct otasrv_config *cfg, const char **faults)
{
    unsigned long long v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", SERVE_OPTS, NULL)) != -1) {
        switch (c) {
        case O_LISTEN:
            cfg->listen = optarg;
            break;
        case O_PORT:
            if (parse_u64(optarg, 65535, &v) < 0)
                goto bad;
            cfg->port = (uint16_t)v;
            break;
        case O_PORT_FILE:
            cfg->port_file = optarg;
            break;
        case O_DB:
            cfg->db_path = optarg;
            break;
        case O_DATA:
            cfg->data_dir = optarg;
            break;
        case O_ADMIN:
            cfg->admin_token = optarg;
            break;
        case O_ADMIN_FILE:
            cfg->admin_token_file = optarg;
            break;
        case O_ENROLL:
            cfg->enroll_token = optarg;
            break;
        case O_OPEN_ENROLL:
            cfg->open_enrollment = 1;
            break;
        case O_DEV_RATE:
            if (otasrv_devlimit_parse(optarg, &cfg->device_rate_n, &cfg->device_rate_period_ms) < 0)
                goto bad;
            break;
        case O_PUBKEY:
            cfg->public_key = optarg;
            break;
        case O_PUBURL:
            cfg->public_url = optarg;
            break;
        case O_CERT:
            cfg->tls_cert = optarg;
            break;
        case O_KEY:
            cfg->tls_key = optarg;
            break;
        case O_THREADS:
            if (parse_u64(optarg, 256, &v) < 0 || v == 0)
                goto bad;
            cfg->threads = (unsigned)v;
            break;
        case O_MAXBODY:
            if (parse_u64(optarg, 1ULL << 30, &v) < 0 || v == 0)
                goto bad;
            cfg->max_body = (size_t)v;
            break;
        case O_MAXUP:
            if (parse_u64(optarg, ~0ULL, &v) < 0 || v == 0)
                goto bad;
            cfg->max_upload = v;
            break;
        case O_LOG:
            cfg->log_path = optarg;
            break;
        case O_FAULTS:
            *faults = optarg;
            break;
        case O_DDI_GW:
            cfg->ddi_gateway_token = optarg;
            break;
        case O_DDI_POLL:
            if (parse_u64(optarg, 86399, &v) < 0 || v == 0)
                goto bad;
            cfg->ddi_poll_s = (unsigned)v;
            break;
        case O_DDI_TYPE:
            cfg->ddi_device_type = optarg;
            break;
        case O_VCLOCK:
            if (parse_u64(optarg, INT64_MAX, &v) < 0)
                goto bad;
            cfg->virtual_clock = 1;
            cfg->virtual_start_ms = (int64_t)v;
            break;
        case O_PARTIES:
            if (parse_u64(optarg, OTASRV_CLOCK_MAX_PARTIES, &v) < 0 || v == 0)
                goto bad;
            cfg->clock_parties = (int)v;
            break;
        case O_GH_LIMIT:
        case O_GH_AUTH:
        case O_GH_TOKEN:
        case O_GH_STATUS:
        case O_GH_RETRY:
        case O_GH_KEY:
            if (github_option(c, optarg, &cfg->github_limit) < 0)
                goto bad;
            break;
        case O_RO_ADMIN:
        case O_RO_ADMIN_FILE:
        case O_CLIENT_CA:
        case O_REQUIRE_CERT:
            auth_option(c, optarg, cfg);
            break;
        case 'h':
            fputs(USAGE, stdout);
            return 0;
        default:
            fputs(USAGE, stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ota-server serve: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!cfg->github_limit.limit &&
        (cfg->github_limit.auth_limit || cfg->github_limit.tokens[0] || cfg->github_limit.status ||
         cfg->github_limit.retry_after || cfg->github_limit.key_header)) {
        fprintf(stderr, "ota-server serve: the --github-* options need --github-rate-limit\n");
        return 2;
    }
    if (cfg->clock_parties && !cfg->virtual_clock) {
        fprintf(stderr, "ota-server serve: --clock-parties needs --virtual-clock\n");
        return 2;
    }
    return -1;
bad:
    fprintf(stderr, "ota-server serve: bad value for --%s: %s\n", SERVE_OPTS[c - O_LISTEN].name,
            optarg);
    return 2;
}

static int serve(int argc, char **argv)
{
    struct otasrv_config cfg = {.port = 8080};
    struct ota_err err = {0};
    struct otasrv_srv *srv = NULL;
    const char *faults = NULL;
    struct rlimit rl;
    sigset_t set;
    int r, sig;

    if ((r = serve_options(argc, argv, &cfg, &faults)) >= 0)
        return r;
    if (faults && otasrv_api_faults_load(faults, &cfg.faults, &err) < 0) {
        fprintf(stderr, "ota-server: --faults %s: %s\n", faults, err.reason);
        return 2;
    }
    /* Many connections: take all the descriptors we may. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ota_ignore(setrlimit(RLIMIT_NOFILE, &rl));
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the threads start */
    if (otasrv_server_start(&cfg, &srv, &err) < 0) {
        fprintf(stderr, "ota-server: %s\n", err.reason);
        return 1;
    }
    fprintf(stderr, "ota-server: listening on %s://%s:%u\n", srv->tls ? "https" : "http",
            srv->cfg.listen, srv->port);
    if (srv->clock)
        fprintf(stderr, "ota-server: on a VIRTUAL clock at %lld ms (tests only)\n",
                (long long)otasrv_clock_now(srv->clock));
    if (sigwait(&set, &sig) != 0)
        sig = SIGTERM;
    otasrv_server_stop(srv);
    return 0;
}

int otasrv_cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        fputs(OTASRV_CTL_USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "release") == 0 || strcmp(argv[1], "devices") == 0 ||
        strcmp(argv[1], "device") == 0 || strcmp(argv[1], "reports") == 0 ||
        strcmp(argv[1], "rollout") == 0 || strcmp(argv[1], "clock") == 0) {
        struct ota_err err = {0};
        char *out = NULL;
        int r = otasrv_ctl_run(argc, argv, &out, &err);
        if (r < 0) {
            fprintf(stderr, "ota-server %s: %s\n", argv[1], err.reason);
            return r == -EINVAL ? 2 : 1;
        }
        puts(out);
        free(out);
        return 0;
    }
    fprintf(stderr, "ota-server: unknown command %s (try --help)\n", argv[1]);
    return 2;
}
