/* ota-pack: command line over pack.c. Exit 0 on success, 1 on failure (one
 * line with the reason on stderr), 2 on a usage error. */
#include "pack.h"
#include "swu.h"

#include "ota/crypto.h"
#include "ota/version.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "Usage: ota-pack COMMAND [OPTIONS]\n"
    "Builds, signs and verifies ota-hil releases (a payload plus a signed manifest),\n"
    "and builds signed SWUpdate releases (.swu).\n"
    "\n"
    "Commands:\n"
    "  keygen   make an Ed25519 key pair (PEM)\n"
    "      --private FILE       private key to write (PKCS#8, mode 0600)\n"
    "      --public FILE        public key to write (SubjectPublicKeyInfo); goes into the\n"
    "                           agent's config\n"
    "      --force              replace existing key files\n"
    "\n"
    "  build    copy a payload into a release directory, write its manifest and sign it\n"
    "      --key FILE           Ed25519 private key (PEM)\n"
    "      --payload FILE       the package (.deb, .tar.gz) or rootfs image (.img, .gz, .xz,\n"
    "                           .zst)\n"
    "      --kind KIND          app | rootfs\n"
    "      --format FORMAT      deb | tar.gz (app); raw | gz | xz | zst (rootfs); default: from\n"
    "                           the payload's suffix (.deb .tar.gz .tgz .img .raw .gz .xz\n"
    "                           .zst .zstd)\n"
    "      --name NAME          release name (letters, digits, '.', '_', '+', '-')\n"
    "      --version V          release version, MAJOR.MINOR.PATCH[-PRE], optional leading 'v'\n"
    "      --device-type T      a compatible device type; repeat for more (1 to 8)\n"
    "      --min-version V      devices must run at least V to take this release\n"
    "      --rollback           a signed rollback order: devices may go to an older version;\n"
    "                           needs --rollback-from and --rollback-expires\n"
    "      --rollback-from V    the order is for devices running V; repeat for more (1 to 8)\n"
    "      --rollback-expires T the order is void after T: unix seconds, or +N[smhd] after\n"
    "                           --created (e.g. +7d)\n"
    "      --installed-size N   bytes the release needs once installed; default: app: the sum\n"
    "                           of the package's regular files; raw image: its size;\n"
    "                           compressed image: its decompressed size (decompressed once\n"
    "                           into a scratch file in DIR)\n"
    "      --created SECONDS    creation time (unix seconds); default: $SOURCE_DATE_EPOCH if\n"
    "                           set, else now\n"
    "      --out DIR            release directory (created if missing). Writes DIR/PAYLOAD,\n"
    "                           DIR/PAYLOAD.sha256 (\"<hex>  PAYLOAD\"), DIR/manifest.json (the\n"
    "                           exact signed bytes) and DIR/manifest.json.sig (88 base64\n"
    "                           characters), each durably\n"
    "\n"
    "  keys     build a key-rotation release: a release as build makes it (same options)\n"
    "           whose manifest also carries a keyring (docs/DESIGN.md, \"Release keys\").\n"
    "           Sign it with --key, a key the devices trust now\n"
    "      --keyring-version N  the keyring's version (1 or more): devices take a keyring\n"
    "                           only when it is newer than theirs\n"
    "      --add FILE           a public key (PEM) to trust; repeat for more (0 to 8)\n"
    "      --revoke ID|FILE     a key to revoke, by id or public key file; repeat for more\n"
    "                           (0 to 16; revocations are for good)\n"
    "\n"
    "  keyid    print the id of a public key (16 hex digits)\n"
    "      --public FILE        Ed25519 public key (PEM)\n"
    "\n"
    "  sign     sign an existing manifest as it is (exact bytes)\n"
    "      --key FILE           Ed25519 private key (PEM)\n"
    "      --manifest FILE      the manifest\n"
    "      --out FILE           signature file; default: MANIFEST.sig\n"
    "      --force              sign even a manifest the agent would refuse (for tests of bad\n"
    "                           releases)\n"
    "\n"
    "  verify   check a release as the agent would\n"
    "      --public FILE        Ed25519 public key (PEM)\n"
    "      --manifest FILE      the manifest\n"
    "      --sig FILE           its signature; default: MANIFEST.sig\n"
    "      --payload FILE       also check the payload's size and SHA-256\n"
    "\n"
    "  swu      build a signed SWUpdate release (.swu) for devices that run swupdate\n"
    "           (Debian 12's 2022.12): a CPIO crc archive of sw-description (libconfig:\n"
    "           version, description = NAME, hardware-compatibility, the image's sha256),\n"
    "           sw-description.sig (CMS, DER, detached) and the image. docs/swupdate.md\n"
    "      --cert FILE          signer certificate (PEM, X.509); devices run swupdate -k FILE\n"
    "                           (its extendedKeyUsage: emailProtection, swupdate's default)\n"
    "      --key FILE           the certificate's private key (PEM)\n"
    "      --kind KIND          rootfs: IMAGE is a raw image written into the inactive slot\n"
    "                           (selection ota,a or ota,b: run swupdate -e ota,b on a device\n"
    "                           booted from slot A), whose bootenv sets boot_part=A|B,\n"
    "                           upgrade_available=1, bootcount=0 (ota/abboot.h);\n"
    "                           app: IMAGE (.tar, .tar.gz, .tgz) is unpacked into --app-path\n"
    "                           by the archive handler\n"
    "      --image FILE         the image; its file name is its name in the .swu\n"
    "      --name NAME          release name (sw-description's description; letters, digits,\n"
    "                           '.', '_', '+', '-'): ota-server names the release after it\n"
    "      --version V          MAJOR.MINOR.PATCH[-PRE]\n"
    "      --hw-compat REV      a hardware revision it fits (swupdate -H BOARD:REV or\n"
    "                           /etc/hwrevision); repeat for more (1 to 8)\n"
    "      --slot-a-device DEV  rootfs: slot A's device (default /dev/mmcblk0p2)\n"
    "      --slot-b-device DEV  rootfs: slot B's device (default /dev/mmcblk0p3)\n"
    "      --app-path DIR       app: absolute directory to unpack into (created if missing)\n"
    "      --out FILE           the .swu to write (durably)\n"
    "\n"
    "  help     this text (also -h, --help, and COMMAND --help)\n"
    "\n"
    "Exit status: 0 success, 1 failure (the reason on stderr), 2 usage error.\n";

enum {
    OPT_PRIVATE = 256,
    OPT_PUBLIC,
    OPT_FORCE,
    OPT_KEY,
    OPT_PAYLOAD,
    OPT_KIND,
    OPT_FORMAT,
    OPT_NAME,
    OPT_VERSION,
    OPT_DEVICE_TYPE,
    OPT_MIN_VERSION,
    OPT_ROLLBACK,
    OPT_ROLLBACK_FROM,
    OPT_ROLLBACK_EXPIRES,
    OPT_INSTALLED_SIZE,
    OPT_CREATED,
    OPT_OUT,
    OPT_MANIFEST,
    OPT_SIG,
    OPT_CERT,
    OPT_IMAGE,
    OPT_HW,
    OPT_SLOT_A,
    OPT_SLOT_B,
    OPT_APP_PATH,
    OPT_KEYRING_VERSION,
    OPT_ADD,
    OPT_REVOKE,
};

struct cmdline {
    const char *private_key, *public_key, *key, *payload, *manifest, *sig, *out;
    int force;
    struct ota_pack_build_opts build;
    struct ota_pack_swu_opts swu;
    int have_kind, have_created;
    const char *rollback_expires; /* as given: resolved once created is known */
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ota-pack: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'ota-pack --help'.\n");
    return EXIT_USAGE;
}

static int fail(const struct ota_err *err, int r)
{
    fprintf(stderr, "ota-pack: %s\n", err->reason[0] ? err->reason : strerror(-r));
    return 1;
}

/* Digits only: strtoull would take a sign and leading blanks. */
static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    if (!s || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* "T" (unix seconds) or "+N[smhd]" after created. */
static int parse_expires(const char *s, int64_t created, int64_t *ret)
{
    static const struct {
        char unit;
        uint64_t mul;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    char num[32];
    uint64_t v, mul = 1;
    size_t n;

    if (s[0] != '+') {
        if (parse_u64(s, &v) < 0 || v > INT64_MAX)
            return -EINVAL;
        *ret = (int64_t)v;
        return 0;
    }
    n = strlen(s + 1);
    if (n == 0 || n >= sizeof(num))
        return -EINVAL;
    memcpy(num, s + 1, n + 1);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (num[n - 1] == units[i].unit) {
            mul = units[i].mul;
            num[--n] = '\0';
        }
    if (parse_u64(num, &v) < 0 || v > (uint64_t)(INT64_MAX - created) / mul)
        return -EINVAL;
    *ret = created + (int64_t)(v * mul);
    return 0;
}

static int lookup(const char *const *names, int max, const char *s)
{
    for (int i = 0; i < max; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* Reproducible builds: SOURCE_DATE_EPOCH when set, else now. */
static int default_created(int64_t *ret)
{
    const char *env = getenv("SOURCE_DATE_EPOCH");
    uint64_t v;

    if (env && env[0]) {
        if (parse_u64(env, &v) < 0 || v > INT64_MAX)
            return -EINVAL;
        *ret = (int64_t)v;
        return 0;
    }
    *ret = (int64_t)time(NULL);
    return 0;
}

static const struct option all_options[] = {
    {"private", required_argument, NULL, OPT_PRIVATE},
    {"public", required_argument, NULL, OPT_PUBLIC},
    {"force", no_argument, NULL, OPT_FORCE},
    {"key", required_argument, NULL, OPT_KEY},
    {"payload", required_argument, NULL, OPT_PAYLOAD},
    {"kind", required_argument, NULL, OPT_KIND},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"name", required_argument, NULL, OPT_NAME},
    {"version", required_argument, NULL, OPT_VERSION},
    {"device-type", required_argument, NULL, OPT_DEVICE_TYPE},
    {"min-version", required_argument, NULL, OPT_MIN_VERSION},
    {"rollback", no_argument, NULL, OPT_ROLLBACK},
    {"rollback-from", required_argument, NULL, OPT_ROLLBACK_FROM},
    {"rollback-expires", required_argument, NULL, OPT_ROLLBACK_EXPIRES},
    {"installed-size", required_argument, NULL, OPT_INSTALLED_SIZE},
    {"created", required_argument, NULL, OPT_CREATED},
    {"out", required_argument, NULL, OPT_OUT},
    {"manifest", required_argument, NULL, OPT_MANIFEST},
    {"sig", required_argument, NULL, OPT_SIG},
    {"cert", required_argument, NULL, OPT_CERT},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"hw-compat", required_argument, NULL, OPT_HW},
    {"slot-a-device", required_argument, NULL, OPT_SLOT_A},
    {"slot-b-device", required_argument, NULL, OPT_SLOT_B},
    {"app-path", required_argument, NULL, OPT_APP_PATH},
    {"keyring-version", required_argument, NULL, OPT_KEYRING_VERSION},
    {"add", required_argument, NULL, OPT_ADD},
    {"revoke", required_argument, NULL, OPT_REVOKE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Which options each command takes. */
static int allowed(const char *cmd, int opt)
{
    static const int keygen[] = {OPT_PRIVATE, OPT_PUBLIC, OPT_FORCE, 0};
    static const int build[] = {OPT_KEY,
                                OPT_PAYLOAD,
                                OPT_KIND,
                                OPT_FORMAT,
                                OPT_NAME,
                                OPT_VERSION,
                                OPT_DEVICE_TYPE,
                                OPT_MIN_VERSION,
                                OPT_ROLLBACK,
                                OPT_ROLLBACK_FROM,
                                OPT_ROLLBACK_EXPIRES,
                                OPT_INSTALLED_SIZE,
                                OPT_CREATED,
                                OPT_OUT,
                                0};
    static const int keys[] = {
        OPT_KEY,     OPT_PAYLOAD,         OPT_KIND,        OPT_FORMAT,         OPT_NAME,
        OPT_VERSION, OPT_DEVICE_TYPE,     OPT_MIN_VERSION, OPT_INSTALLED_SIZE, OPT_CREATED,
        OPT_OUT,     OPT_KEYRING_VERSION, OPT_ADD,         OPT_REVOKE,         0};
    static const int keyid[] = {OPT_PUBLIC, 0};
    static const int sign[] = {OPT_KEY, OPT_MANIFEST, OPT_OUT, OPT_FORCE, 0};
    static const int verify[] = {OPT_PUBLIC, OPT_MANIFEST, OPT_SIG, OPT_PAYLOAD, 0};
    static const int swu[] = {OPT_CERT, OPT_KEY,    OPT_KIND,   OPT_IMAGE,    OPT_NAME, OPT_VERSION,
                              OPT_HW,   OPT_SLOT_A, OPT_SLOT_B, OPT_APP_PATH, OPT_OUT,  0};
    const int *set = strcmp(cmd, "keygen") == 0   ? keygen
                     : strcmp(cmd, "build") == 0  ? build
                     : strcmp(cmd, "keys") == 0   ? keys
                     : strcmp(cmd, "keyid") == 0  ? keyid
                     : strcmp(cmd, "sign") == 0   ? sign
                     : strcmp(cmd, "verify") == 0 ? verify
                     : strcmp(cmd, "swu") == 0    ? swu
                                                  : NULL;

    for (; set && *set; set++)
        if (*set == opt)
            return 1;
    return 0;
}

/* ota-pack swu's own options; -1 for one --hw-compat too many. */
static int parse_swu_option(int opt, struct ota_pack_swu_opts *o)
{
    switch (opt) {
    case OPT_CERT:
        o->cert = optarg;
        break;
    case OPT_IMAGE:
        o->image = optarg;
        break;
    case OPT_HW:
        if (o->n_hw == OTA_SWU_MAX_HW)
            return -1;
        o->hw[o->n_hw++] = optarg;
        break;
    case OPT_SLOT_A:
        o->slot_dev[0] = optarg;
        break;
    case OPT_SLOT_B:
        o->slot_dev[1] = optarg;
        break;
    case OPT_APP_PATH:
        o->app_path = optarg;
        break;
    }
    return 0;
}

/* --add PUB (into keys) or --revoke ID|PUB (into revoked): 0, or the exit
 * status after printing why. */
static int parse_keyring_option(int opt, struct ota_pack_build_opts *b)
{
    struct ota_keyring *kr = &b->keyring;
    struct ota_err err = {0};
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    size_t n = strlen(optarg);
    int is_id = n == OTA_KEY_ID_HEX - 1;

    for (size_t i = 0; is_id && i < n; i++)
        is_id = (optarg[i] >= '0' && optarg[i] <= '9') || (optarg[i] >= 'a' && optarg[i] <= 'f');
    if (opt == OPT_REVOKE && is_id) {
        ota_strlcpy(id, optarg, sizeof(id));
    } else if (ota_pack_key_id(optarg, raw, id, &err) < 0) {
        return fail(&err, -EINVAL);
    }
    if (opt == OPT_ADD) {
        if (kr->n_keys == OTA_KEYRING_MAX_KEYS)
            return usage_error("too many keys at '%s' (at most 8)", optarg);
        memcpy(kr->keys[kr->n_keys++], raw, sizeof(raw));
        return 0;
    }
    if (kr->n_revoked == OTA_KEYRING_MAX_REVOKED)
        return usage_error("too many revoked keys at '%s' (at most 16)", optarg);
    memcpy(kr->revoked[kr->n_revoked++], id, sizeof(id));
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_options(const char *cmd, int argc, char **argv, struct cmdline *c)
{
    struct ota_pack_build_opts *b = &c->build;
    uint64_t v;
    int opt, i, idx = -1;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", all_options, &idx)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 0;
        }
        if (opt == '?')
            return usage_error("unknown option '%s'", argv[optind - 1]);
        if (opt == ':')
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        if (!allowed(cmd, opt))
            return usage_error("option '--%s' does not apply to this command",
                               all_options[idx].name);
        switch (opt) {
        case OPT_PRIVATE:
            c->private_key = optarg;
            break;
        case OPT_PUBLIC:
            c->public_key = optarg;
            break;
        case OPT_FORCE:
            c->force = 1;
            break;
        case OPT_KEY:
            c->key = optarg;
            break;
        case OPT_PAYLOAD:
            c->payload = optarg;
            break;
        case OPT_KIND:
            i = lookup(ota_kind_names, OTA_KIND_MAX, optarg);
            if (i < 0)
                return usage_error("unknown kind '%s' (app | rootfs)", optarg);
            b->kind = (enum ota_kind)i;
            c->have_kind = 1;
            break;
        case OPT_FORMAT:
            i = lookup(ota_format_names, OTA_FORMAT_MAX, optarg);
            if (i < 0)
                return usage_error("unknown format '%s' (deb | tar.gz | raw | gz | xz | zst)",
                                   optarg);
            b->format = i;
            break;
        case OPT_NAME:
            b->name = optarg;
            break;
        case OPT_VERSION:
            if (!ota_version_valid(optarg))
                return usage_error("bad version '%s' (MAJOR.MINOR.PATCH[-PRE])", optarg);
            b->version = optarg;
            break;
        case OPT_DEVICE_TYPE:
            if (b->n_device_types == OTA_MANIFEST_MAX_TYPES)
                return usage_error("too many device types at '%s' (at most 8)", optarg);
            b->device_types[b->n_device_types++] = optarg;
            break;
        case OPT_MIN_VERSION:
            if (!ota_version_valid(optarg))
                return usage_error("bad minimum version '%s'", optarg);
            b->min_version = optarg;
            break;
        case OPT_ROLLBACK:
            b->rollback = 1;
            break;
        case OPT_ROLLBACK_FROM:
            if (!ota_version_valid(optarg))
                return usage_error("bad rollback-from version '%s'", optarg);
            if (b->n_rollback_from == OTA_MANIFEST_MAX_TYPES)
                return usage_error("too many rollback-from versions at '%s' (at most 8)", optarg);
            b->rollback_from[b->n_rollback_from++] = optarg;
            break;
        case OPT_ROLLBACK_EXPIRES:
            c->rollback_expires = optarg;
            break;
        case OPT_INSTALLED_SIZE:
            if (parse_u64(optarg, &v) < 0 || v > INT64_MAX)
                return usage_error("bad installed size '%s'", optarg);
            b->installed_size = v;
            b->have_installed_size = 1;
            break;
        case OPT_CREATED:
            if (parse_u64(optarg, &v) < 0 || v > INT64_MAX)
                return usage_error("bad creation time '%s'", optarg);
            b->created = (int64_t)v;
            c->have_created = 1;
            break;
        case OPT_OUT:
            c->out = optarg;
            break;
        case OPT_MANIFEST:
            c->manifest = optarg;
            break;
        case OPT_SIG:
            c->sig = optarg;
            break;
        case OPT_KEYRING_VERSION:
            if (parse_u64(optarg, &v) < 0 || v < 1 || v > INT64_MAX)
                return usage_error("bad keyring version '%s' (1 or more)", optarg);
            b->keyring.version = (int64_t)v;
            break;
        case OPT_ADD:
        case OPT_REVOKE:
            if ((i = parse_keyring_option(opt, b)) != 0)
                return i;
            break;
        default:
            if (parse_swu_option(opt, &c->swu) != 0)
                return usage_error("too many hardware revisions at '%s' (at most 8)", optarg);
            break;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return -1;
}

#define REQUIRE(value, option)                                                                     \
    do {                                                                                           \
        if (!(value))                                                                              \
            return usage_error("%s needs " option, cmd);                                           \
    } while (0)

static int run_keygen(const char *cmd, struct cmdline *c)
{
    struct ota_err err = {0};
    int r;

    REQUIRE(c->private_key, "--private");
    REQUIRE(c->public_key, "--public");
    r = ota_pack_keygen(c->private_key, c->public_key, c->force, &err);
    if (r < 0)
        return fail(&err, r);
    printf("wrote %s and %s\n", c->private_key, c->public_key);
    return 0;
}

static int run_build(const char *cmd, struct cmdline *c)
{
    struct ota_err err = {0};
    struct ota_manifest m;
    char hex[OTA_SHA256_HEX];
    int r;

    REQUIRE(c->key, "--key");
    REQUIRE(c->payload, "--payload");
    REQUIRE(c->have_kind, "--kind");
    REQUIRE(c->build.name, "--name");
    REQUIRE(c->build.version, "--version");
    REQUIRE(c->build.n_device_types, "--device-type");
    REQUIRE(c->out, "--out");
    c->build.key = c->key;
    c->build.payload = c->payload;
    c->build.out_dir = c->out;
    if (!c->have_created && default_created(&c->build.created) < 0)
        return usage_error("SOURCE_DATE_EPOCH='%s' is not unix seconds",
                           getenv("SOURCE_DATE_EPOCH"));
    if (c->build.rollback) {
        REQUIRE(c->build.n_rollback_from, "--rollback-from (with --rollback)");
        REQUIRE(c->rollback_expires, "--rollback-expires (with --rollback)");
        if (parse_expires(c->rollback_expires, c->build.created, &c->build.rollback_expires) < 0)
            return usage_error("bad rollback expiry '%s' (unix seconds or +N[smhd])",
                               c->rollback_expires);
    } else if (c->build.n_rollback_from || c->rollback_expires) {
        return usage_error("%s", "--rollback-from and --rollback-expires are for --rollback");
    }
    if (strcmp(cmd, "keys") == 0) {
        REQUIRE(c->build.keyring.version, "--keyring-version");
        REQUIRE(c->build.keyring.n_keys || c->build.keyring.n_revoked, "--add or --revoke");
    }
    r = ota_pack_build(&c->build, &m, &err);
    if (r < 0)
        return fail(&err, r);
    ota_hex_encode(m.sha256, OTA_SHA256_LEN, hex);
    printf("%s/manifest.json: %s %s (%s, %s) %s %llu bytes sha256 %s\n", c->out, m.name, m.version,
           ota_kind_names[m.kind], ota_format_names[m.format], m.payload,
           (unsigned long long)m.size, hex);
    return 0;
}

static char *default_sig_path(const char *manifest)
{
    char *p = NULL;

    if (asprintf(&p, "%s.sig", manifest) < 0)
        return NULL;
    return p;
}

static int run_sign(const char *cmd, struct cmdline *c)
{
    struct ota_err err = {0};
    char *sig_path = NULL;
    int r;

    REQUIRE(c->key, "--key");
    REQUIRE(c->manifest, "--manifest");
    sig_path = c->out ? strdup(c->out) : default_sig_path(c->manifest);
    if (!sig_path) {
        fprintf(stderr, "ota-pack: out of memory\n");
        return 1;
    }
    r = ota_pack_sign(c->key, c->manifest, sig_path, c->force, &err);
    if (r < 0)
        r = fail(&err, r);
    else
        printf("wrote %s\n", sig_path);
    free(sig_path);
    return r;
}

static int run_verify(const char *cmd, struct cmdline *c)
{
    struct ota_err err = {0};
    struct ota_manifest m;
    char *sig_path = NULL;
    int r;

    REQUIRE(c->public_key, "--public");
    REQUIRE(c->manifest, "--manifest");
    sig_path = c->sig ? strdup(c->sig) : default_sig_path(c->manifest);
    if (!sig_path) {
        fprintf(stderr, "ota-pack: out of memory\n");
        return 1;
    }
    r = ota_pack_verify(c->public_key, c->manifest, sig_path, c->payload, &m, &err);
    if (r < 0) {
        r = fail(&err, r);
    } else {
        printf("OK %s %s (%s, %s)%s\n", m.name, m.version, ota_kind_names[m.kind],
               ota_format_names[m.format], c->payload ? ", payload matches" : "");
    }
    free(sig_path);
    return r;
}

static int run_keyid(const char *cmd, struct cmdline *c)
{
    struct ota_err err = {0};
    uint8_t raw[OTA_ED25519_PUB_LEN];
    char id[OTA_KEY_ID_HEX];
    int r;

    REQUIRE(c->public_key, "--public");
    r = ota_pack_key_id(c->public_key, raw, id, &err);
    if (r < 0)
        return fail(&err, r);
    printf("%s\n", id);
    return 0;
}

static int run_swu(const char *cmd, struct cmdline *c)
{
    struct ota_pack_swu_opts *o = &c->swu;
    struct ota_err err = {0};
    char sha[65];
    int r;

    REQUIRE(o->cert, "--cert");
    REQUIRE(c->key, "--key");
    REQUIRE(c->have_kind, "--kind");
    REQUIRE(o->image, "--image");
    REQUIRE(c->build.name, "--name");
    REQUIRE(c->build.version, "--version");
    REQUIRE(o->n_hw, "--hw-compat");
    REQUIRE(c->out, "--out");
    if (c->build.kind == OTA_KIND_APP)
        REQUIRE(o->app_path, "--app-path");
    else if (o->app_path)
        return usage_error("%s", "--app-path is for --kind app");
    if (c->build.kind == OTA_KIND_APP && (o->slot_dev[0] || o->slot_dev[1]))
        return usage_error("%s", "--slot-a-device and --slot-b-device are for --kind rootfs");
    o->key = c->key;
    o->kind = c->build.kind;
    o->name = c->build.name;
    o->version = c->build.version;
    o->out = c->out;
    if (!o->slot_dev[0])
        o->slot_dev[0] = "/dev/mmcblk0p2";
    if (!o->slot_dev[1])
        o->slot_dev[1] = "/dev/mmcblk0p3";
    r = ota_pack_swu_build(o, sha, &err);
    if (r < 0)
        return fail(&err, r);
    printf("%s: %s %s (%s) %s sha256 %s\n", c->out, o->name, o->version, ota_kind_names[o->kind],
           o->image, sha);
    return 0;
}

int main(int argc, char **argv)
{
    struct cmdline c = {0};
    const char *cmd;
    int r;

    c.build.format = -1;
    if (argc < 2)
        return usage_error("%s", "missing command (keygen, build, keys, keyid, sign, verify, swu)");
    cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(cmd, "keygen") != 0 && strcmp(cmd, "build") != 0 && strcmp(cmd, "sign") != 0 &&
        strcmp(cmd, "verify") != 0 && strcmp(cmd, "swu") != 0 && strcmp(cmd, "keys") != 0 &&
        strcmp(cmd, "keyid") != 0)
        return usage_error("unknown command '%s'", cmd);
    r = parse_options(cmd, argc - 1, argv + 1, &c);
    if (r >= 0)
        return r;
    if (strcmp(cmd, "keygen") == 0)
        return run_keygen(cmd, &c);
    if (strcmp(cmd, "build") == 0 || strcmp(cmd, "keys") == 0)
        return run_build(cmd, &c);
    if (strcmp(cmd, "keyid") == 0)
        return run_keyid(cmd, &c);
    if (strcmp(cmd, "sign") == 0)
        return run_sign(cmd, &c);
    if (strcmp(cmd, "swu") == 0)
        return run_swu(cmd, &c);
    return run_verify(cmd, &c);
}
