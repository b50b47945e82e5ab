/* Tools and artifacts: where the binaries are, the signing keys, release
 * payloads built with the project's own tools (make-release, ota-pack),
 * rootfs images, and reference trees + digests for the invariant checker.
 * Everything is cached under WORK/cache, keyed by what it was built from;
 * a build lands by renaming its finished directory into place. */
#include "otasim/sim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/crypto.h"
#include "ota/fsutil.h"
#include "ota/hash.h"
#include "ota/json.h"
#include "otasim/proc.h"
#include "otasim/qemu.h"

#ifndef OTA_SOURCE_DIR
#define OTA_SOURCE_DIR "."
#endif

#define IMAGE_SIZE (256u << 10)

static int exists(const char *p, int want_exec)
{
    return access(p, want_exec ? X_OK : R_OK) == 0;
}

static int pick(char *dst, size_t cap, const char *env, const char *dflt, int want_exec,
                const char *what, struct ota_err *err)
{
    const char *v = env ? getenv(env) : NULL;

    snprintf(dst, cap, "%s", v && *v ? v : dflt);
    if (!exists(dst, want_exec))
        return ota_err_set(err, ENOENT, "%s not found at %s%s%s (build first: make)", what, dst,
                           env ? "; or set " : "", env ? env : "");
    return 0;
}

int otasim_tools_find(struct otasim_tools *t, const char *agent, const char *work,
                      struct ota_err *err)
{
    char exe[PATH_MAX], bin[PATH_MAX], p[PATH_MAX + 64];
    static const char *const faketimes[] = {"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                                            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                                            "/usr/lib/faketime/libfaketime.so.1"};
    ssize_t n;
    char *slash;
    int rc;

    memset(t, 0, sizeof(*t));
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return ota_err_set(err, errno, "/proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    ota_strlcpy(t->self, exe, sizeof(t->self));
    /* BUILD/sim/ota-sim -> BUILD */
    ota_strlcpy(bin, exe, sizeof(bin));
    if ((slash = strrchr(bin, '/')))
        *slash = '\0';
    if ((slash = strrchr(bin, '/')))
        *slash = '\0';
    snprintf(p, sizeof(p), "%s/agent/ota-agent", bin);
    if ((rc = pick(t->agent, sizeof(t->agent), agent ? NULL : "OTASIM_AGENT", agent ? agent : p, 1,
                   "ota-agent", err)) < 0)
        return rc;
    if (t->agent[0] != '/') {
        char abs[PATH_MAX];
        if (!realpath(t->agent, abs))
            return ota_err_set(err, errno, "%s: %s", t->agent, strerror(errno));
        ota_strlcpy(t->agent, abs, sizeof(t->agent));
    }
    snprintf(p, sizeof(p), "%s/server-mock/ota-server", bin);
    if ((rc = pick(t->server, sizeof(t->server), "OTASIM_SERVER", p, 1, "ota-server", err)) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/agent/pack/ota-pack", bin);
    if ((rc = pick(t->pack, sizeof(t->pack), "OTASIM_PACK", p, 1, "ota-pack", err)) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/sim/libotasim-interpose.so", bin);
    if ((rc = pick(t->interpose, sizeof(t->interpose), "OTASIM_INTERPOSE", p, 0,
                   "libotasim-interpose.so", err)) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/agent/video-app", bin);
    if ((rc = pick(t->app_dir, sizeof(t->app_dir), "OTASIM_APP_DIR", p, 0, "video-app builds",
                   err)) < 0)
        return rc;
    snprintf(p, sizeof(p), "%s/agent/video-app/make-release", OTA_SOURCE_DIR);
    if ((rc = pick(t->make_release, sizeof(t->make_release), "OTASIM_MAKE_RELEASE", p, 1,
                   "make-release", err)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof(faketimes) / sizeof(faketimes[0]); i++)
        if (exists(faketimes[i], 0)) {
            ota_strlcpy(t->faketime, faketimes[i], sizeof(t->faketime));
            break;
        }
    snprintf(t->work, sizeof(t->work), "%s", work ? work : "");
    if (!t->work[0])
        snprintf(t->work, sizeof(t->work), "%s/sim-work", bin);
    if ((rc = ota_fs_mkdirs(t->work, err)) < 0)
        return rc;
    if (t->work[0] != '/') {
        char abs[PATH_MAX];
        if (!realpath(t->work, abs))
            return ota_err_set(err, errno, "%s: %s", t->work, strerror(errno));
        ota_strlcpy(t->work, abs, sizeof(t->work));
    }
    return 0;
}

int otasim_keys(const struct otasim_tools *t, char *priv, char *pub, char *rogue, size_t cap,
                struct ota_err *err)
{
    char dir[PATH_MAX], log[PATH_MAX + 16], rpub[PATH_MAX + 16];
    int rc;

    snprintf(dir, sizeof(dir), "%s/cache/keys", t->work);
    if ((rc = ota_fs_mkdirs(dir, err)) < 0)
        return rc;
    snprintf(priv, cap, "%s/release.key", dir);
    snprintf(pub, cap, "%s/release.pub", dir);
    if (t->key_dir[0]) { /* the keys a QEMU image trusts */
        snprintf(priv, cap, "%s/release-key.pem", t->key_dir);
        snprintf(pub, cap, "%s/release-key.pub", t->key_dir);
        if (!exists(priv, 0) || !exists(pub, 0))
            return ota_err_set(err, ENOENT, "no release-key.pem/.pub in %s (run `make image`)",
                               t->key_dir);
    }
    snprintf(rogue, cap, "%s/rogue.key", dir);
    snprintf(rpub, sizeof(rpub), "%s/rogue.pub", dir);
    snprintf(log, sizeof(log), "%s/keygen.log", dir);
    if (!t->key_dir[0] && !exists(pub, 0)) {
        const char *argv[] = {t->pack,    "keygen", "--private", priv,
                              "--public", pub,      "--force",   NULL};
        if ((rc = otasim_run_checked(argv, log, err)) < 0)
            return rc;
    }
    if (!exists(rpub, 0)) {
        const char *argv[] = {t->pack,    "keygen", "--private", rogue,
                              "--public", rpub,     "--force",   NULL};
        if ((rc = otasim_run_checked(argv, log, err)) < 0)
            return rc;
    }
    return 0;
}

/* ---- tree digest ------------------------------------------------------- */

static int digest_dir(const char *root, const char *rel, struct ota_sha256 *h, struct ota_err *err)
{
    char path[PATH_MAX], sub[PATH_MAX];
    struct dirent **ents = NULL;
    int n, r = 0;

    snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
    n = scandir(path, &ents, NULL, alphasort);
    if (n < 0)
        return ota_err_set(err, errno, "%s: %s", path, strerror(errno));
    for (int i = 0; i < n && r == 0; i++) {
        const char *name = ents[i]->d_name;
        char full[PATH_MAX * 2], line[PATH_MAX + 64];
        struct stat st;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", name);
        snprintf(full, sizeof(full), "%s/%s", root, sub);
        if (lstat(full, &st) < 0) {
            r = ota_err_set(err, errno, "%s: %s", full, strerror(errno));
            break;
        }
        int k = snprintf(line, sizeof(line), "%s%c%o%c", sub, 0, (unsigned)st.st_mode, 0);
        if (ota_sha256_update(h, line, (size_t)k) < 0)
            r = -EIO;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t tn = readlink(full, target, sizeof(target));
            if (tn < 0 || ota_sha256_update(h, target, (size_t)tn) < 0)
                r = ota_err_set(err, EIO, "%s: readlink", full);
        } else if (S_ISREG(st.st_mode)) {
            uint8_t d[OTA_SHA256_LEN];
            if (ota_sha256_file(full, UINT64_MAX, d, err) < 0 ||
                ota_sha256_update(h, d, sizeof(d)) < 0)
                r = -EIO;
        }
        if (r == 0 && ota_sha256_update(h, "", 1) < 0)
            r = -EIO;
        if (r == 0 && S_ISDIR(st.st_mode))
            r = digest_dir(root, sub, h, err);
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    return r;
}

int otasim_tree_digest(const char *root, char ret_hex[65], struct ota_err *err)
{
    struct ota_sha256 *h = ota_sha256_new();
    uint8_t d[OTA_SHA256_LEN];
    int r;

    if (!h)
        return ota_err_set(err, ENOMEM, "out of memory");
    r = digest_dir(root, "", h, err);
    if (r == 0 && ota_sha256_final(h, d) < 0)
        r = ota_err_set(err, EIO, "sha256 failed");
    ota_sha256_free(h);
    if (r < 0)
        return r;
    ota_hex_encode(d, sizeof(d), ret_hex);
    return 0;
}

/* ---- releases ------------------------------------------------------------ */

/* Deterministic image bytes: a header naming the version, then xorshift
 * noise seeded by the version; a "broken" image starts with BROKEN, which
 * the bootloader model's list marks unbootable. */
static int write_image(const char *path, const struct otasim_release *r, uint8_t ret_sha[32],
                       struct ota_err *err)
{
    uint8_t *buf = malloc(IMAGE_SIZE);
    uint64_t x = ota_fnv1a64(r->version);
    int fd, rc = 0;

    if (!buf)
        return ota_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < IMAGE_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    snprintf((char *)buf, 64, "%sOTASIM-ROOTFS version=%s\n",
             strcmp(r->variant, "broken") == 0      ? "BROKEN "
             : strcmp(r->variant, "unhealthy") == 0 ? "UNHEALTHY "
                                                    : "",
             r->version);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, IMAGE_SIZE) != (ssize_t)IMAGE_SIZE)
        rc = ota_err_set(err, errno ? errno : EIO, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (rc == 0) {
        struct ota_sha256 *h = ota_sha256_new();
        if (!h || ota_sha256_update(h, buf, IMAGE_SIZE) < 0 || ota_sha256_final(h, ret_sha) < 0)
            rc = ota_err_set(err, EIO, "sha256 failed");
        ota_sha256_free(h);
    }
    free(buf);
    return rc;
}

static int key_of(const struct otasim_tools *t, const struct otasim_scenario *s,
                  const struct otasim_release *r, char *buf, size_t cap)
{
    const char *img = strrchr(t->image_dir, '/');

    return snprintf(buf, cap, "%s-%s-%s-%s-%s-%s-%s-%s-%s", otasim_profile_names[s->profile],
                    r->variant, r->version, r->format, r->device_type,
                    r->min_version[0] ? r->min_version : "_", r->bad_signature ? "rogue" : "ok",
                    t->arch[0] ? t->arch : "host",
                    t->target == OTASIM_TARGET_QEMU && img ? img + 1 : "sim");
}

/* QEMU rootfs releases are real ext4 images that say what they are in
 * /etc/ota-release ("version=V"): good = the image's own rootA (the Debian
 * tree with the agent), broken = a small file system with no /sbin/init. */
static int write_qemu_image(const struct otasim_tools *t, const char *path,
                            const struct otasim_release *r, const char *tmp, const char *log,
                            uint64_t *ret_size, struct ota_err *err)
{
    struct otasim_qemu_image im;
    char marker[PATH_MAX + 32], text[96], cmd[PATH_MAX + 96], skip[32], count[32], dir[PATH_MAX];
    int good = strcmp(r->variant, "good") == 0;
    struct stat st;
    int rc;

    snprintf(marker, sizeof(marker), "%s/ota-release", tmp);
    snprintf(text, sizeof(text), "%sversion=%s\n", good ? "" : "BROKEN ", r->version);
    if ((rc = ota_fs_write_atomic(marker, text, strlen(text), 0644, err)) < 0)
        return rc;
    if (good) {
        if ((rc = otasim_qemu_image_open(t->image_dir, &im, err)) < 0)
            return rc;
        snprintf(skip, sizeof(skip), "skip=%llu", (unsigned long long)(im.off[1] >> 20));
        snprintf(count, sizeof(count), "count=%llu", (unsigned long long)(im.len[1] >> 20));
        char in[PATH_MAX + 32], of[PATH_MAX + 8];
        snprintf(in, sizeof(in), "if=%s", im.sd);
        snprintf(of, sizeof(of), "of=%s", path);
        const char *dd[] = {"dd", in, of, "bs=1M", skip, count, "status=none", NULL};
        if ((rc = otasim_run_checked(dd, log, err)) < 0)
            return rc;
    } else {
        snprintf(dir, sizeof(dir), "%s/broken-tree/etc", tmp);
        if ((rc = ota_fs_mkdirs(dir, err)) < 0)
            return rc;
        snprintf(dir, sizeof(dir), "%s/broken-tree/etc/ota-release", tmp);
        if ((rc = ota_fs_write_atomic(dir, text, strlen(text), 0644, err)) < 0)
            return rc;
        snprintf(dir, sizeof(dir), "%s/broken-tree", tmp);
        const char *mk[] = {"mkfs.ext4", "-q", "-F", "-L", "broken", "-d", dir, path, "8M", NULL};
        if ((rc = otasim_run_checked(mk, log, err)) < 0)
            return rc;
    }
    snprintf(cmd, sizeof(cmd), "write %s /etc/ota-release", marker);
    {
        const char *rm[] = {"debugfs", "-w", "-R", "rm /etc/ota-release", path, NULL};
        const char *wr[] = {"debugfs", "-w", "-R", cmd, path, NULL};
        if (good && ((rc = otasim_run_checked(rm, log, err)) < 0 ||
                     (rc = otasim_run_checked(wr, log, err)) < 0))
            return rc;
    }
    if (stat(path, &st) < 0)
        return ota_err_set(err, errno, "%s: %s", path, strerror(errno));
    *ret_size = (uint64_t)st.st_size;
    return 0;
}

static int load_built(const char *dir, struct otasim_built *b, struct ota_err *err)
{
    char p[PATH_MAX + 16], *text = NULL;
    size_t n;
    json_t *o = NULL;
    uint64_t size = 0;
    char hex[80] = "";
    int r;

    snprintf(p, sizeof(p), "%s/built.json", dir);
    r = ota_fs_read_all(p, 1 << 16, &text, &n, err);
    if (r < 0)
        return r;
    r = ota_json_parse(text, n, &o, err);
    if (r == 0 && (ota_json_str(o, "payload", b->payload, sizeof(b->payload), err) < 0 ||
                   ota_json_str(o, "ref_digest", b->ref_digest, sizeof(b->ref_digest), err) < 0 ||
                   ota_json_u64(o, "size", &size, err) < 0 ||
                   ota_json_str(o, "image_sha", hex, sizeof(hex), err) < 0))
        r = -EINVAL;
    if (r == 0) {
        b->size = size;
        ota_strlcpy(b->dir, dir, sizeof(b->dir));
        snprintf(b->ref_tree, sizeof(b->ref_tree), "%s/ref", dir);
        if (hex[0] && ota_hex_decode(hex, b->image_sha, 32) < 0)
            r = ota_err_set(err, EINVAL, "%s: bad image_sha", p);
    }
    json_decref(o);
    free(text);
    return r;
}

int otasim_build_release(const struct otasim_tools *t, const struct otasim_scenario *s,
                         const struct otasim_release *r, struct otasim_built *ret,
                         struct ota_err *err)
{
    char key[256], dir[PATH_MAX], tmp[PATH_MAX + 32], payload[PATH_MAX + 64], log[PATH_MAX + 32];
    char priv[PATH_MAX], pub[PATH_MAX], rogue[PATH_MAX], outdir[PATH_MAX + 16];
    char ref[PATH_MAX + 16], bin[PATH_MAX + 64], json[2048], hex[65] = "", imghex[65] = "";
    struct otasim_built b;
    struct stat st;
    int app = s->profile == OTASIM_PROFILE_APP, rc;
    uint64_t image_size = IMAGE_SIZE;

    memset(&b, 0, sizeof(b));
    key_of(t, s, r, key, sizeof(key));
    snprintf(dir, sizeof(dir), "%s/cache/releases/%s", t->work, key);
    if (load_built(dir, ret, NULL) == 0)
        return 0;
    if ((rc = otasim_keys(t, priv, pub, rogue, sizeof(priv), err)) < 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dir, (int)getpid());
    ota_ignore(ota_fs_remove_tree(tmp, NULL));
    snprintf(outdir, sizeof(outdir), "%s/out", tmp);
    snprintf(ref, sizeof(ref), "%s/ref", tmp);
    snprintf(log, sizeof(log), "%s/build.log", tmp);
    if ((rc = ota_fs_mkdirs(ref, err)) < 0)
        return rc;
    if (app) {
        snprintf(bin, sizeof(bin), "%s/%s", t->app_dir, r->variant);
        if (!exists(bin, 1))
            return ota_err_set(err, ENOENT, "video-app build %s not found (%s)", r->variant, bin);
        snprintf(payload, sizeof(payload), "%s/video-app_%s.%s", tmp, r->version, r->format);
        const char *mk[] = {t->make_release, "--binary", bin,       "--version",
                            r->version,      "--format", r->format, "--out",
                            payload,         "--arch",   t->arch,   NULL};
        if (!t->arch[0])
            mk[9] = NULL;
        if ((rc = otasim_run_checked(mk, log, err)) < 0)
            return rc;
        if (strcmp(r->format, "deb") == 0) {
            const char *x[] = {"dpkg-deb", "-x", payload, ref, NULL};
            if ((rc = otasim_run_checked(x, log, err)) < 0)
                return rc;
        } else {
            const char *x[] = {"tar", "-xzf", payload, "-C", ref, NULL};
            if ((rc = otasim_run_checked(x, log, err)) < 0)
                return rc;
        }
        if ((rc = otasim_tree_digest(ref, hex, err)) < 0)
            return rc;
    } else {
        uint8_t sha[32];
        snprintf(payload, sizeof(payload), "%s/rootfs_%s.img", tmp, r->version);
        if (t->target == OTASIM_TARGET_QEMU) {
            if ((rc = write_qemu_image(t, payload, r, tmp, log, &image_size, err)) < 0 ||
                (rc = ota_sha256_file(payload, image_size, sha, err)) < 0)
                return rc;
        } else if ((rc = write_image(payload, r, sha, err)) < 0) {
            return rc;
        }
        ota_hex_encode(sha, 32, imghex);
        ota_strlcpy(hex, imghex, sizeof(hex));
        if (strcmp(r->format, "gz") == 0) {
            char gz[PATH_MAX + 80];
            const char *g[] = {"gzip", "-n", image_size > IMAGE_SIZE ? "-1" : "-9", payload, NULL};
            if ((rc = otasim_run_checked(g, log, err)) < 0)
                return rc;
            snprintf(gz, sizeof(gz), "%s.gz", payload);
            ota_strlcpy(payload, gz, sizeof(payload));
        }
    }
    {
        const char *argv[24];
        size_t k = 0;
        argv[k++] = t->pack;
        argv[k++] = "build";
        argv[k++] = "--key";
        argv[k++] = r->bad_signature ? rogue : priv;
        argv[k++] = "--payload";
        argv[k++] = payload;
        argv[k++] = "--kind";
        argv[k++] = app ? "app" : "rootfs";
        argv[k++] = "--name";
        argv[k++] = app ? "video-app" : "rootfs";
        argv[k++] = "--version";
        argv[k++] = r->version;
        argv[k++] = "--device-type";
        argv[k++] = r->device_type;
        if (r->min_version[0]) {
            argv[k++] = "--min-version";
            argv[k++] = r->min_version;
        }
        argv[k++] = "--out";
        argv[k++] = outdir;
        argv[k] = NULL;
        if ((rc = otasim_run_checked(argv, log, err)) < 0)
            return rc;
    }
    {
        const char *base = strrchr(payload, '/') + 1;
        char final_payload[PATH_MAX + 300];
        snprintf(final_payload, sizeof(final_payload), "%s/out/%s", dir, base);
        if (stat(payload, &st) < 0)
            return ota_err_set(err, errno, "%s: %s", payload, strerror(errno));
        snprintf(json, sizeof(json),
                 "{\"payload\":\"%s\",\"ref_digest\":\"%s\",\"size\":%llu,\"image_sha\":\"%s\"}",
                 final_payload, hex, (unsigned long long)(app ? (uint64_t)st.st_size : image_size),
                 imghex);
    }
    snprintf(tmp + strlen(tmp), sizeof(tmp) - strlen(tmp), "%s", "");
    {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/built.json", tmp);
        if ((rc = ota_fs_write_atomic(p, json, strlen(json), 0644, err)) < 0)
            return rc;
    }
    if (rename(tmp, dir) < 0 && errno != ENOTEMPTY && errno != EEXIST)
        return ota_err_set(err, errno, "rename %s: %s", tmp, strerror(errno));
    ota_ignore(ota_fs_remove_tree(tmp, NULL));
    rc = load_built(dir, ret, err);
    return rc;
}
