/* Cheaper trial steps (contract: otasim/fast.h). */
#include "otasim/fast.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota/crypto.h"

extern char **environ;

int otasim_baseline(void)
{
    static int on = -1;

    if (on < 0) {
        const char *e = getenv("OTASIM_BASELINE");
        on = e && strcmp(e, "1") == 0;
    }
    return on;
}

int otasim_svc_bin(const struct otasim_tools *t, char *buf, size_t cap)
{
    const char *slash = strrchr(t->self, '/');

    if (otasim_baseline() || !slash)
        return 0;
    if ((size_t)snprintf(buf, cap, "%.*s/ota-sim-svc", (int)(slash - t->self), t->self) >= cap)
        return 0;
    return access(buf, X_OK) == 0;
}

const char *otasim_svc_prefix(const struct otasim_tools *t, char *buf, size_t cap)
{
    if (!otasim_svc_bin(t, buf, cap))
        snprintf(buf, cap, "%s svc", t->self);
    return buf;
}

void otasim_prefork_init(void)
{
    struct ota_sha256 *h;
    uint8_t d[OTA_SHA256_LEN];

    if (otasim_baseline())
        return;
    /* libcurl's global setup (OpenSSL's SSL library, its config file) and
     * OpenSSL's digest lookup, done once here instead of in every trial:
     * each trial is a fork of this process */
    otasim_http_global_init();
    h = ota_sha256_new();
    if (h) {
        ota_ignore(ota_sha256_update(h, "", 0));
        ota_ignore(ota_sha256_final(h, d));
        ota_sha256_free(h);
    }
}

int otasim_spawn_leader(const struct otasim_tools *t, pid_t *ret_pid)
{
    char bin[PATH_MAX + 16], parent[24];
    const char *argv[] = {bin, "init", "--parent", parent, NULL};

    if (!otasim_svc_bin(t, bin, sizeof(bin)))
        return -ENOSYS;
    snprintf(parent, sizeof(parent), "%d", (int)getpid());
    return otasim_spawn_light(argv, NULL, 0, -1, -1, ret_pid);
}

static int copy_file(const char *src, const char *dst, const struct stat *st, struct ota_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, r = 0;
    off_t left = st->st_size;

    if (in < 0)
        return ota_err_set(err, errno, "%s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st->st_mode & 07777);
    if (out < 0) {
        r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
        goto out;
    }
    while (left > 0) {
        ssize_t n = sendfile(out, in, NULL, (size_t)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = ota_err_set(err, n < 0 ? errno : EIO, "copy %s: %s", src,
                            n < 0 ? strerror(errno) : "short");
            goto out;
        }
        left -= n;
    }
    /* the mode again: open's was masked by the umask */
    if (fchmod(out, st->st_mode & 07777) < 0 ||
        futimens(out, (struct timespec[2]){st->st_atim, st->st_mtim}) < 0)
        r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
out:
    close(in);
    if (out >= 0)
        close(out);
    return r;
}

static int copy_entry(char *src, size_t sn, char *dst, size_t dn, struct ota_err *err);

static int copy_dir(char *src, size_t sn, char *dst, size_t dn, const struct stat *st,
                    struct ota_err *err)
{
    DIR *d;
    struct dirent *de;
    int r = 0;

    if (mkdir(dst, 0700) < 0)
        return ota_err_set(err, errno, "mkdir %s: %s", dst, strerror(errno));
    d = opendir(src);
    if (!d)
        return ota_err_set(err, errno, "%s: %s", src, strerror(errno));
    while (r == 0 && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (sn + 1 + l >= PATH_MAX || dn + 1 + l >= PATH_MAX) {
            r = ota_err_set(err, ENAMETOOLONG, "%s/%s: path too long", src, de->d_name);
            break;
        }
        src[sn] = '/';
        memcpy(src + sn + 1, de->d_name, l + 1);
        dst[dn] = '/';
        memcpy(dst + dn + 1, de->d_name, l + 1);
        r = copy_entry(src, sn + 1 + l, dst, dn + 1 + l, err);
        src[sn] = '\0';
        dst[dn] = '\0';
    }
    closedir(d);
    if (r == 0 && (chmod(dst, st->st_mode & 07777) < 0 ||
                   utimensat(AT_FDCWD, dst, (struct timespec[2]){st->st_atim, st->st_mtim}, 0) < 0))
        r = ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
    return r;
}

static int copy_entry(char *src, size_t sn, char *dst, size_t dn, struct ota_err *err)
{
    struct stat st;
    char target[PATH_MAX];
    ssize_t n;

    if (lstat(src, &st) < 0)
        return ota_err_set(err, errno, "%s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return copy_dir(src, sn, dst, dn, &st, err);
    if (S_ISREG(st.st_mode))
        return copy_file(src, dst, &st, err);
    if (S_ISLNK(st.st_mode)) {
        n = readlink(src, target, sizeof(target) - 1);
        if (n < 0)
            return ota_err_set(err, errno, "%s: %s", src, strerror(errno));
        target[n] = '\0';
        if (symlink(target, dst) < 0)
            return ota_err_set(err, errno, "symlink %s: %s", dst, strerror(errno));
        if (utimensat(AT_FDCWD, dst, (struct timespec[2]){st.st_atim, st.st_mtim},
                      AT_SYMLINK_NOFOLLOW) < 0)
            return ota_err_set(err, errno, "%s: %s", dst, strerror(errno));
        return 0;
    }
    return ota_err_set(err, ENOTSUP, "%s: not a file, directory or symlink", src);
}

int otasim_copy_tree(const char *src, const char *dst, struct ota_err *err)
{
    char s[PATH_MAX], d[PATH_MAX];

    if (snprintf(s, sizeof(s), "%s", src) >= (int)sizeof(s) ||
        snprintf(d, sizeof(d), "%s", dst) >= (int)sizeof(d))
        return ota_err_set(err, ENAMETOOLONG, "%s: path too long", src);
    return copy_entry(s, strlen(s), d, strlen(d), err);
}

/* environ with envp's NAME=VALUE entries in place of the same names (what
 * putenv of each in a forked child gives); a malloc'ed array of borrowed
 * strings. */
static char **merged_env(const char *const *envp)
{
    size_t n = 0, m = 0, k = 0;
    char **out;

    while (environ && environ[n])
        n++;
    while (envp && envp[m])
        m++;
    out = calloc(n + m + 1, sizeof(*out));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strcspn(environ[i], "=");
        int over = 0;
        for (size_t j = 0; j < m && !over; j++)
            over = strncmp(envp[j], environ[i], nl) == 0 &&
                   (envp[j][nl] == '=' || envp[j][nl] == '\0');
        if (!over)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        if (strchr(envp[j], '='))
            out[k++] = (char *)envp[j];
    out[k] = NULL;
    return out;
}

int otasim_spawn_light(const char *const *argv, const char *const *envp, pid_t pgid, int out_fd,
                       int err_fd, pid_t *ret_pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t def;
    char **env;
    short flags = POSIX_SPAWN_SETSIGDEF;
    int r;

    if (otasim_baseline())
        return -ENOSYS;
    env = merged_env(envp);
    if (!env)
        return -ENOMEM;
    /* the agent: forked by its zygote when one serves this run */
    if (otasim_zygote_spawn(argv, env, pgid, out_fd, err_fd, ret_pid) == 0) {
        free(env);
        return 0;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
    if (!r)
        r = out_fd >= 0 ? posix_spawn_file_actions_adddup2(&fa, out_fd, 1)
                        : posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_RDWR, 0);
    if (!r)
        r = err_fd >= 0 ? posix_spawn_file_actions_adddup2(&fa, err_fd, 2)
                        : posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_RDWR, 0);
    if (!r)
        r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    if (!r)
        r = posix_spawnattr_setsigdefault(&at, &def);
    if (!r && pgid >= 0) {
        flags |= POSIX_SPAWN_SETPGROUP;
        r = posix_spawnattr_setpgroup(&at, pgid);
    }
    if (!r)
        r = posix_spawnattr_setflags(&at, flags);
    if (!r)
        r = posix_spawnp(ret_pid, argv[0], &fa, &at, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(env);
    return -r;
}
