/* libotasim-interpose.so: journals a device process's mutating file-system
 * calls for the power model (contract: otasim/journal.h, format: otasim/jformat.h).
 *
 * Every interposed function passes straight through when OTASIM_ROOT is
 * unset, in a forked child, or when re-entered on the same thread (our own
 * calls, a signal handler). Otherwise it records what an undo needs before
 * the real call, makes the call, and records the result. The journal is
 * written with raw syscalls: a SIGKILL keeps what reached the page cache. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <utime.h>
#include <unistd.h>

#include "otasim/jformat.h"

#define API __attribute__((visibility("default")))

/* ---- real functions ---------------------------------------------------- */

#define DECL_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
DECL_REAL(int, openat, int, const char *, int, ...);
DECL_REAL(int, close, int);
DECL_REAL(int, dup, int);
DECL_REAL(int, dup2, int, int);
DECL_REAL(int, dup3, int, int, int);
DECL_REAL(int, fcntl, int, int, ...);
DECL_REAL(ssize_t, write, int, const void *, size_t);
DECL_REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
DECL_REAL(ssize_t, writev, int, const struct iovec *, int);
DECL_REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
DECL_REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
DECL_REAL(int, ftruncate, int, off_t);
DECL_REAL(int, truncate, const char *, off_t);
DECL_REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
DECL_REAL(int, renameat, int, const char *, int, const char *);
DECL_REAL(int, linkat, int, const char *, int, const char *, int);
DECL_REAL(int, symlinkat, const char *, int, const char *);
DECL_REAL(int, unlinkat, int, const char *, int);
DECL_REAL(int, mkdirat, int, const char *, mode_t);
DECL_REAL(int, fsync, int);
DECL_REAL(int, fdatasync, int);
DECL_REAL(void, sync, void);
DECL_REAL(int, syncfs, int);
DECL_REAL(ssize_t, send, int, const void *, size_t, int);
DECL_REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
DECL_REAL(ssize_t, sendmsg, int, const struct msghdr *, int);
DECL_REAL(int, __vfprintf_chk, FILE *, int, const char *, va_list);

/* The next definition of name, looked up once. */
static void *sym(void **slot, const char *name)
{
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

    if (!p) {
        p = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, p, __ATOMIC_RELEASE);
    }
    return p;
}

#define REAL(name) ((__typeof__(real_##name))sym((void **)&real_##name, #name))

/* ---- state ------------------------------------------------------------- */

enum fdkind { FD_UNKNOWN, FD_FILE, FD_DIR, FD_INET, FD_OTHER };

struct fdent {
    uint64_t dev, ino; /* what the entry was made for: checked at every use */
    uint8_t kind;      /* enum fdkind */
    uint8_t append;
    uint8_t readable; /* opened for reading: before-images can be read through it */
    char *path;       /* FD_FILE, FD_DIR: absolute */
};

struct dircache {
    char in[PATH_MAX];    /* the directory as written (absolute) */
    char canon[PATH_MAX]; /* its realpath */
    uint64_t ino;
};

#define NDIRCACHE 8
#define NET_TEXT  120

static struct {
    volatile int enabled;
    char root[PATH_MAX]; /* canonical */
    size_t root_len;
    char root_raw[PATH_MAX]; /* as given */
    size_t root_raw_len;
    char sim[PATH_MAX]; /* root/.sim */
    size_t sim_len;
    char stash[PATH_MAX];
    int stash_made;
    int jfd;
    uint32_t pid;
    uint64_t seq;
    uint64_t burst_ino, burst_seq; /* the write burst that shares number burst_seq */
    uint64_t crash_at;
    char crash_state[128];
    int crash_state_k, crash_state_seen;
    char crash_line[128]; /* OTASIM_CRASH_LINE: text of a line logged through stdio */
    int crash_line_k, crash_line_seen;
    int crash_power;
    int fail_errno;
    uint64_t fail_from;
    char fail_state[128];
    int fail_armed;
    char fail_path[PATH_MAX];
    long fail_left; /* -1: no limit */
    struct fdent *fds;
    int nfds;
    struct dircache dc[NDIRCACHE];
    int dc_n, dc_next;
    char *buf; /* record assembly */
    size_t buf_cap;
    char *img; /* before-images */
    size_t img_cap;
} g = {.jfd = -1};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int busy __attribute__((tls_model("initial-exec")));

static void lock(void)
{
    pthread_mutex_lock(&mu);
}

static void unlock(void)
{
    pthread_mutex_unlock(&mu);
}

/* Raw syscalls for our own I/O: no interposer (ours or a sanitizer's). */
static ssize_t sys_pread(int fd, void *b, size_t n, off_t off)
{
    return syscall(SYS_pread64, fd, b, n, off);
}

static int sys_fstat(int fd, struct stat *st)
{
    return (int)syscall(SYS_fstat, fd, st);
}

static int sys_lstat(const char *p, struct stat *st)
{
    return (int)syscall(SYS_newfstatat, AT_FDCWD, p, st, AT_SYMLINK_NOFOLLOW);
}

static int sys_stat(const char *p, struct stat *st)
{
    return (int)syscall(SYS_newfstatat, AT_FDCWD, p, st, 0);
}

static ssize_t sys_readlink(const char *p, char *b, size_t n)
{
    return syscall(SYS_readlinkat, AT_FDCWD, p, b, n);
}

static int sys_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}

static int grow(char **p, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 4096;
    char *q;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    q = realloc(*p, n);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* ---- journal writing --------------------------------------------------- */

struct rec {
    uint8_t kind, op, is_dir;
    uint32_t flags;
    int32_t result;
    uint32_t mode;
    uint64_t seq, ino, victim_ino, dir_ino, dir2_ino, off, len, old_size;
    const char *path, *path2, *text;
    size_t text_len; /* 0: strlen(text) */
    const void *img;
    size_t img_len;
};

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = syscall(SYS_writev, fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Appends one record (under mu). A journal that cannot be written stops the
 * process: a run whose journal is incomplete cannot be rebuilt. */
static void jwrite(const struct rec *r)
{
    static const char zeros[8];
    struct otasim_jhdr h;
    struct otasim_jtail t;
    size_t pl = r->path ? strlen(r->path) : 0;
    size_t p2l = r->path2 ? strlen(r->path2) : 0;
    size_t tl = r->text ? (r->text_len ? r->text_len : strlen(r->text)) : 0;
    size_t head = sizeof(h) + pl + 1 + p2l + 1 + tl + 1;
    size_t head_al = OTASIM_J_ALIGN(head);
    size_t img_al = OTASIM_J_ALIGN(r->img_len);
    struct iovec iov[4];
    int n = 0;

    if (g.jfd < 0 || grow(&g.buf, &g.buf_cap, head_al) < 0)
        goto fatal;
    memset(&h, 0, sizeof(h));
    h.magic = OTASIM_J_MAGIC;
    h.size = (uint32_t)(head_al + img_al + sizeof(t));
    h.kind = r->kind;
    h.op = r->op;
    h.is_dir = r->is_dir;
    h.flags = r->flags;
    h.result = r->result;
    h.pid = g.pid;
    h.mode = r->mode;
    h.path_len = (uint32_t)pl;
    h.path2_len = (uint32_t)p2l;
    h.text_len = (uint32_t)tl;
    h.img_len = r->img_len;
    h.seq = r->seq;
    h.ino = r->ino;
    h.victim_ino = r->victim_ino;
    h.dir_ino = r->dir_ino;
    h.dir2_ino = r->dir2_ino;
    h.off = r->off;
    h.len = r->len;
    h.old_size = r->old_size;
    memset(g.buf, 0, head_al);
    memcpy(g.buf, &h, sizeof(h));
    if (pl)
        memcpy(g.buf + sizeof(h), r->path, pl);
    if (p2l)
        memcpy(g.buf + sizeof(h) + pl + 1, r->path2, p2l);
    if (tl)
        memcpy(g.buf + sizeof(h) + pl + 1 + p2l + 1, r->text, tl);
    iov[n++] = (struct iovec){g.buf, head_al};
    if (r->img_len) {
        iov[n++] = (struct iovec){(void *)r->img, r->img_len};
        if (img_al > r->img_len)
            iov[n++] = (struct iovec){(void *)zeros, img_al - r->img_len};
    }
    t.size = h.size;
    t.magic = OTASIM_J_TAIL;
    iov[n++] = (struct iovec){&t, sizeof(t)};
    if (write_all(g.jfd, iov, n) == 0)
        return;
fatal:
    syscall(SYS_write, 2, "otasim-interpose: cannot write the journal\n", 43);
    syscall(SYS_exit_group, 125);
}

static void jdone(uint8_t op, uint64_t seq, int result, uint64_t ino)
{
    struct rec r = {.kind = OTASIM_JK_DONE, .op = op, .seq = seq, .result = result, .ino = ino};
    jwrite(&r);
}

static void jevent(uint8_t op, const char *text, size_t len)
{
    struct rec r = {.kind = OTASIM_JK_EVENT, .op = op, .seq = g.seq, .text = text, .text_len = len};
    jwrite(&r);
}

static void crash(void)
{
    const char *mode = g.crash_power ? "power" : "process";
    jevent(OTASIM_OP_CRASH, mode, 0);
    if (g.crash_power)
        syscall(SYS_kill, 0, SIGKILL);
    syscall(SYS_kill, getpid(), SIGKILL);
    syscall(SYS_exit_group, 137);
}

/* After counted call seq is done and recorded (under mu). */
static void after_call(uint64_t seq)
{
    if (g.crash_at && seq == g.crash_at)
        crash();
}

/* ---- failure injection ------------------------------------------------- */

enum fkind { F_ALLOC, F_WRITE, F_SYNC };

static int fail_for(enum fkind k, const char *path, const char *path2, uint64_t seq)
{
    if (!g.fail_errno || !g.fail_armed || seq < g.fail_from || g.fail_left == 0)
        return 0;
    if (g.fail_errno == ENOSPC && k == F_SYNC)
        return 0;
    if (g.fail_errno == EIO && k == F_ALLOC)
        return 0;
    if ((!path || fnmatch(g.fail_path, path, 0) != 0) &&
        (!path2 || fnmatch(g.fail_path, path2, 0) != 0))
        return 0;
    if (g.fail_left > 0)
        g.fail_left--;
    return g.fail_errno;
}

/* Records an injected failure of call r (under mu) and returns -1/errno. */
static int failed(struct rec *r, int e)
{
    char text[PATH_MAX + 16];
    int n = snprintf(text, sizeof(text), "%s %s", e == ENOSPC ? "ENOSPC" : "EIO",
                     r->path ? r->path : "");
    r->flags |= OTASIM_REC_DONE;
    r->result = -e;
    r->img = NULL;
    r->img_len = 0;
    jwrite(r);
    jevent(OTASIM_OP_FAIL, text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0);
    after_call(r->seq);
    errno = e;
    return -1;
}

/* ---- paths ------------------------------------------------------------- */

static int under(const char *p, const char *dir, size_t n)
{
    return strncmp(p, dir, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

static int maybe_ours(const char *abs)
{
    return under(abs, g.root, g.root_len) || under(abs, g.root_raw, g.root_raw_len);
}

static int counted_path(const char *canon)
{
    return under(canon, g.root, g.root_len) && !under(canon, g.sim, g.sim_len);
}

static int fd_path(int fd, char *out, size_t cap)
{
    char l[64];
    ssize_t n;

    snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
    n = sys_readlink(l, out, cap - 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static void dircache_clear(void)
{
    g.dc_n = 0;
}

/* Canonical form and inode of directory dir (under mu). */
static int canon_dir(const char *dir, char *out, uint64_t *ino)
{
    struct stat st;
    struct dircache *c;
    int i;

    if (sys_stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return -1;
    for (i = 0; i < g.dc_n; i++) {
        c = &g.dc[i];
        if (c->ino == (uint64_t)st.st_ino && strcmp(c->in, dir) == 0) {
            strcpy(out, c->canon);
            *ino = c->ino;
            return 0;
        }
    }
    if (!realpath(dir, out))
        return -1;
    c = &g.dc[g.dc_next];
    g.dc_next = (g.dc_next + 1) % NDIRCACHE;
    if (g.dc_n < NDIRCACHE)
        g.dc_n++;
    if (strlen(dir) < sizeof(c->in)) {
        strcpy(c->in, dir);
        strcpy(c->canon, out);
        c->ino = (uint64_t)st.st_ino;
    } else {
        c->in[0] = '\0';
    }
    *ino = (uint64_t)st.st_ino;
    return 0;
}

/* Absolute form of (dirfd, path): the parent made canonical, the last
 * component as written. Returns 1 when it is counted (under ROOT, not under
 * ROOT/.sim), 0 when not (under mu). */
static int resolve(int dirfd, const char *path, char *out, uint64_t *ret_pino)
{
    char abs[PATH_MAX], dir[PATH_MAX];
    size_t n;
    char *slash, *last;
    uint64_t pino = 0;

    if (!path || !path[0])
        return 0;
    if (path[0] == '/') {
        if (strlen(path) >= sizeof(abs))
            return 0;
        strcpy(abs, path);
    } else {
        if (dirfd == AT_FDCWD) {
            if (!getcwd(abs, sizeof(abs)))
                return 0;
        } else if (fd_path(dirfd, abs, sizeof(abs)) < 0) {
            return 0;
        }
        n = strlen(abs);
        if (n + 1 + strlen(path) >= sizeof(abs))
            return 0;
        abs[n] = '/';
        strcpy(abs + n + 1, path);
    }
    if (!maybe_ours(abs))
        return 0;
    n = strlen(abs);
    while (n > 1 && abs[n - 1] == '/')
        abs[--n] = '\0';
    slash = strrchr(abs, '/');
    last = slash + 1;
    if (!*last || strcmp(last, ".") == 0 || strcmp(last, "..") == 0) {
        /* ".." as the name: resolve the whole thing. */
        if (!realpath(abs, dir))
            return 0;
        strcpy(abs, dir);
        slash = strrchr(abs, '/');
        last = slash + 1;
    }
    if (slash == abs) {
        strcpy(dir, "/");
    } else {
        *slash = '\0';
        if (canon_dir(abs, dir, &pino) < 0)
            return 0;
    }
    n = strlen(dir);
    if (n + 1 + strlen(last) >= PATH_MAX)
        return 0;
    if (strcmp(dir, "/") == 0)
        snprintf(out, PATH_MAX, "/%s", last);
    else
        snprintf(out, PATH_MAX, "%s/%s", dir, last);
    *ret_pino = pino;
    return counted_path(out) && strcmp(out, g.root) != 0;
}

/* ---- fd table ---------------------------------------------------------- */

static struct fdent *fdent(int fd)
{
    int n;
    struct fdent *v;

    if (fd < 0 || fd >= (1 << 20))
        return NULL;
    if (fd < g.nfds)
        return &g.fds[fd];
    n = g.nfds ? g.nfds : 256;
    while (n <= fd)
        n *= 2;
    v = realloc(g.fds, (size_t)n * sizeof(*v));
    if (!v)
        return NULL;
    memset(v + g.nfds, 0, (size_t)(n - g.nfds) * sizeof(*v));
    g.fds = v;
    g.nfds = n;
    return &g.fds[fd];
}

static void fd_forget(int fd)
{
    struct fdent *e = fd >= 0 && fd < g.nfds ? &g.fds[fd] : NULL;

    if (!e)
        return;
    free(e->path);
    memset(e, 0, sizeof(*e));
}

static void fd_copy(int from, int to)
{
    struct fdent *a, *b;

    if (from == to)
        return;
    fd_forget(to);
    if (from < 0 || from >= g.nfds || g.fds[from].kind == FD_UNKNOWN)
        return;
    b = fdent(to);
    a = &g.fds[from]; /* after fdent(): the table may have moved */
    if (!b)
        return;
    *b = *a;
    b->path = a->path ? strdup(a->path) : NULL;
    if (a->path && !b->path)
        b->kind = FD_UNKNOWN;
}

static int sock_inet(int fd)
{
    int dom = 0;
    socklen_t l = sizeof(dom);

    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0)
        return 0;
    return dom == AF_INET || dom == AF_INET6;
}

/* The entry of fd for stat st, (re)made if the fd now names something else
 * (closed behind our back: fclose, closedir) (under mu). */
static struct fdent *fd_classify(int fd, const struct stat *st)
{
    struct fdent *e = fdent(fd);
    char p[PATH_MAX];
    int fl;

    if (!e)
        return NULL;
    if (e->kind != FD_UNKNOWN && e->dev == (uint64_t)st->st_dev && e->ino == (uint64_t)st->st_ino)
        return e;
    free(e->path);
    memset(e, 0, sizeof(*e));
    e->dev = (uint64_t)st->st_dev;
    e->ino = (uint64_t)st->st_ino;
    e->kind = FD_OTHER;
    if (S_ISSOCK(st->st_mode)) {
        e->kind = sock_inet(fd) ? FD_INET : FD_OTHER;
    } else if ((S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) && fd != g.jfd &&
               fd_path(fd, p, sizeof(p)) == 0 && counted_path(p)) {
        e->path = strdup(p);
        if (e->path) {
            e->kind = S_ISDIR(st->st_mode) ? FD_DIR : FD_FILE;
            fl = REAL(fcntl)(fd, F_GETFL);
            e->append = fl >= 0 && (fl & O_APPEND);
            e->readable = fl >= 0 && (fl & O_ACCMODE) != O_WRONLY;
        }
    }
    return e;
}

/* ---- STATE and NET events ---------------------------------------------- */

/* The value of "to" in a state line's JSON, into name. */
static void state_to(const char *json, size_t n, char *name, size_t cap)
{
    const char *p = memmem(json, n, "\"to\"", 4);
    const char *end = json + n;
    size_t i = 0;

    name[0] = '\0';
    if (!p)
        return;
    p += 4;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p != '"')
        return;
    p++;
    while (p < end && *p != '"' && i + 1 < cap)
        name[i++] = *p++;
    name[i] = '\0';
}

/* After the process wrote buf to fd 2 (under mu). */
static void on_stderr(const char *buf, size_t n)
{
    static const char tag[] = "OTA-STATE ";
    const size_t tl = sizeof(tag) - 1;
    char name[128];

    while (n > tl) {
        const char *nl = memchr(buf, '\n', n);
        size_t line = nl ? (size_t)(nl - buf) : n;
        if (line > tl && memcmp(buf, tag, tl) == 0) {
            jevent(OTASIM_OP_STATE, buf + tl, line - tl);
            state_to(buf + tl, line - tl, name, sizeof(name));
            if (g.fail_state[0] && strcmp(name, g.fail_state) == 0)
                g.fail_armed = 1;
            if (g.crash_state[0] && strcmp(name, g.crash_state) == 0 &&
                ++g.crash_state_seen == g.crash_state_k)
                crash();
        }
        if (!nl)
            break;
        n -= line + 1;
        buf = nl + 1;
    }
}

static void net_event(const void *data, size_t n)
{
    char t[NET_TEXT + 1];
    const unsigned char *s = data;
    size_t i;

    for (i = 0; i < n && i < NET_TEXT && s[i] != '\r' && s[i] != '\n'; i++)
        t[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '.';
    t[i] = '\0';
    if (i == 0)
        return;
    g.burst_ino = 0; /* the server saw something: the next write is a new point */
    jevent(OTASIM_OP_NET, t, i);
}

/* ---- writes ------------------------------------------------------------ */

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    int i;

    for (i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Before-image of [off, off+len) of a file of size size into g.img; fd
 * may be write-only (then the file is opened again for reading). */
static int before_image(int fd, int readable, uint64_t off, uint64_t len, uint64_t size,
                        size_t *ret_n)
{
    char l[64];
    size_t n, got = 0;
    int rfd = fd;

    *ret_n = 0;
    if (off >= size || len == 0)
        return 0;
    n = (size_t)(size - off < len ? size - off : len);
    if (grow(&g.img, &g.img_cap, n) < 0)
        return -ENOMEM;
    for (;;) {
        if (!readable) {
            snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
            rfd = (int)syscall(SYS_openat, AT_FDCWD, l, O_RDONLY | O_CLOEXEC);
            if (rfd < 0)
                return -errno;
        }
        if (readable && sys_pread(rfd, g.img, 0, (off_t)off) < 0 && errno == EBADF) {
            readable = 0; /* the entry's flags are stale (reopened behind our back) */
            continue;
        }
        break;
    }
    while (got < n) {
        ssize_t r = sys_pread(rfd, g.img + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* a file cut under us: the rest is gone anyway */
        got += (size_t)r;
    }
    if (rfd != fd)
        sys_close(rfd);
    *ret_n = got;
    return 0;
}

enum wkind { W_WRITE, W_PWRITE, W_PWRITEV2 };

/* Every write-like call: real is called with (fd, iov, n, off, flags). */
static ssize_t real_write_any(enum wkind k, int fd, const struct iovec *iov, int n, off_t off,
                              int flags)
{
    switch (k) {
    case W_WRITE:
        if (n == 1)
            return REAL(write)(fd, iov[0].iov_base, iov[0].iov_len);
        return REAL(writev)(fd, iov, n);
    case W_PWRITE:
        if (n == 1)
            return REAL(pwrite)(fd, iov[0].iov_base, iov[0].iov_len, off);
        return REAL(pwritev)(fd, iov, n, off);
    case W_PWRITEV2:
        return REAL(pwritev2)(fd, iov, n, off, flags);
    }
    return -1;
}

static ssize_t do_write(enum wkind k, int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    struct stat st;
    struct fdent *e;
    struct rec r;
    size_t total, img_n = 0;
    ssize_t w;
    int err, fe;

    if (!g.enabled || busy || fd == g.jfd)
        return real_write_any(k, fd, iov, n, off, flags);
    busy = 1;
    total = iov_total(iov, n);
    lock();
    e = sys_fstat(fd, &st) == 0 ? fd_classify(fd, &st) : NULL;
    if (!e || e->kind != FD_FILE || total == 0) {
        int inet = e && e->kind == FD_INET;
        if (inet && n > 0)
            net_event(iov[0].iov_base, iov[0].iov_len);
        if (fd != 2)
            unlock();
        w = real_write_any(k, fd, iov, n, off, flags);
        err = errno;
        if (fd == 2) {
            if (w > 0 && n > 0)
                on_stderr(iov[0].iov_base, (size_t)w < iov[0].iov_len ? (size_t)w : iov[0].iov_len);
            unlock();
        }
        busy = 0;
        errno = err;
        return w;
    }
    memset(&r, 0, sizeof(r));
    r.kind = OTASIM_JK_CALL;
    r.op = OTASIM_OP_WRITE;
    r.path = e->path;
    r.ino = (uint64_t)st.st_ino;
    r.old_size = (uint64_t)st.st_size;
    r.len = total;
    if (k == W_WRITE || (k == W_PWRITEV2 && off == -1)) {
        off_t cur = lseek(fd, 0, SEEK_CUR);
        r.off = e->append || cur < 0 ? (uint64_t)st.st_size : (uint64_t)cur;
    } else {
        r.off = (uint64_t)off;
    }
    /* Consecutive writes to one file (nothing else counted or sent between)
     * share one number: a crash between them leaves the same durable state,
     * and a download's chunking no longer shifts every later number. */
    if (g.burst_ino == r.ino && g.burst_seq == g.seq && g.seq > 0)
        r.seq = g.seq;
    else
        r.seq = ++g.seq;
    g.burst_ino = r.ino;
    g.burst_seq = r.seq;
    fe = fail_for(F_WRITE, e->path, NULL, r.seq);
    if (fe) {
        w = failed(&r, fe);
        goto out;
    }
    if (before_image(fd, e->readable, r.off, r.len, r.old_size, &img_n) == 0) {
        r.img = g.img;
        r.img_len = img_n;
    }
    jwrite(&r);
    w = real_write_any(k, fd, iov, n, off, flags);
    err = errno;
    jdone(r.op, r.seq, w < 0 ? -err : 0, 0);
    after_call(r.seq);
    errno = err;
out:
    err = errno;
    if (fd == 2 && w > 0)
        on_stderr(iov[0].iov_base, (size_t)w < iov[0].iov_len ? (size_t)w : iov[0].iov_len);
    unlock();
    busy = 0;
    errno = err;
    return w;
}

/* A log line printed through stdio (swupdate's notifier: __fprintf_chk,
 * __printf_chk; the buffered bytes reach write(2) inside libc, where no
 * interposer sees them): OTASIM_CRASH_LINE is matched at the call, in the
 * thread that logs, after the line is formatted into the stream. */
static int log_line(FILE *f, int flag, const char *fmt, va_list ap)
{
    char text[1024];
    va_list aq;
    int r, err;

    va_copy(aq, ap);
    r = REAL(__vfprintf_chk)(f, flag, fmt, ap);
    err = errno;
    if (g.enabled && !busy && g.crash_line[0] && (f == stdout || f == stderr)) {
        busy = 1;
        vsnprintf(text, sizeof(text), fmt, aq);
        lock();
        /* the k-th line that holds the text */
        if (strstr(text, g.crash_line) && ++g.crash_line_seen == g.crash_line_k)
            crash();
        unlock();
        busy = 0;
    }
    va_end(aq);
    errno = err;
    return r;
}

API int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = log_line(f, flag, fmt, ap);
    va_end(ap);
    return r;
}

API int __printf_chk(int flag, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = log_line(stdout, flag, fmt, ap);
    va_end(ap);
    return r;
}

API ssize_t write(int fd, const void *b, size_t n)
{
    struct iovec v = {(void *)b, n};
    return do_write(W_WRITE, fd, &v, 1, 0, 0);
}

API ssize_t writev(int fd, const struct iovec *iov, int n)
{
    return do_write(W_WRITE, fd, iov, n, 0, 0);
}

API ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
    struct iovec v = {(void *)b, n};
    return do_write(W_PWRITE, fd, &v, 1, off, 0);
}

API ssize_t pwrite64(int fd, const void *b, size_t n, off_t off)
{
    return pwrite(fd, b, n, off);
}

API ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    return do_write(W_PWRITE, fd, iov, n, off, 0);
}

API ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    return pwritev(fd, iov, n, off);
}

API ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    return do_write(W_PWRITEV2, fd, iov, n, off, flags);
}

API ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    return pwritev2(fd, iov, n, off, flags);
}

/* ---- sockets ----------------------------------------------------------- */

static void maybe_net(int fd, const void *b, size_t n)
{
    if (!g.enabled || busy || n == 0 || !sock_inet(fd))
        return;
    busy = 1;
    lock();
    net_event(b, n);
    unlock();
    busy = 0;
}

API ssize_t send(int fd, const void *b, size_t n, int fl)
{
    maybe_net(fd, b, n);
    return REAL(send)(fd, b, n, fl);
}

API ssize_t sendto(int fd, const void *b, size_t n, int fl, const struct sockaddr *a, socklen_t al)
{
    maybe_net(fd, b, n);
    return REAL(sendto)(fd, b, n, fl, a, al);
}

API ssize_t sendmsg(int fd, const struct msghdr *m, int fl)
{
    if (m && m->msg_iovlen > 0)
        maybe_net(fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len);
    return REAL(sendmsg)(fd, m, fl);
}

/* ---- truncation -------------------------------------------------------- */

/* TRUNC of the file open as fd (st its stat) to len; real runs the call. */
static int trunc_call(int fd, int readable, const struct stat *st, const char *path, uint64_t len,
                      int (*real)(int, const char *, off_t), int rfd, const char *rpath)
{
    struct rec r;
    size_t img_n = 0;
    int res, err, fe;

    memset(&r, 0, sizeof(r));
    r.kind = OTASIM_JK_CALL;
    r.op = OTASIM_OP_TRUNC;
    r.path = path;
    r.ino = (uint64_t)st->st_ino;
    r.off = len;
    r.old_size = (uint64_t)st->st_size;
    r.seq = ++g.seq;
    fe = len > r.old_size ? fail_for(F_ALLOC, path, NULL, r.seq) : 0;
    if (fe)
        return failed(&r, fe);
    if (len < r.old_size &&
        before_image(fd, readable, len, r.old_size - len, r.old_size, &img_n) == 0) {
        r.img = g.img;
        r.img_len = img_n;
        r.len = img_n;
    }
    jwrite(&r);
    res = real(rfd, rpath, (off_t)len);
    err = errno;
    jdone(r.op, r.seq, res < 0 ? -err : 0, 0);
    after_call(r.seq);
    errno = err;
    return res;
}

static int real_ftrunc(int fd, const char *unused, off_t len)
{
    return REAL(ftruncate)(fd, len);
}

static int real_trunc(int unused, const char *path, off_t len)
{
    return REAL(truncate)(path, len);
}

API int ftruncate(int fd, off_t len)
{
    struct stat st;
    struct fdent *e;
    int r, err;

    if (!g.enabled || busy || len < 0)
        return REAL(ftruncate)(fd, len);
    busy = 1;
    lock();
    e = sys_fstat(fd, &st) == 0 ? fd_classify(fd, &st) : NULL;
    if (e && e->kind == FD_FILE)
        r = trunc_call(fd, e->readable, &st, e->path, (uint64_t)len, real_ftrunc, fd, NULL);
    else
        r = REAL(ftruncate)(fd, len);
    err = errno;
    unlock();
    busy = 0;
    errno = err;
    return r;
}

API int ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

API int truncate(const char *path, off_t len)
{
    char abs[PATH_MAX];
    uint64_t pino;
    struct stat st;
    int r, err, fd = -1;

    if (!g.enabled || busy || len < 0)
        return REAL(truncate)(path, len);
    busy = 1;
    lock();
    if (resolve(AT_FDCWD, path, abs, &pino) == 1 &&
        (fd = REAL(openat)(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) >= 0 &&
        sys_fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        r = trunc_call(fd, 1, &st, abs, (uint64_t)len, real_trunc, -1, path);
    else
        r = REAL(truncate)(path, len);
    err = errno;
    if (fd >= 0)
        sys_close(fd);
    unlock();
    busy = 0;
    errno = err;
    return r;
}

API int truncate64(const char *path, off_t len)
{
    return truncate(path, len);
}

/* ---- open -------------------------------------------------------------- */

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    char abs[PATH_MAX];
    uint64_t pino = 0;
    struct stat st;
    struct rec r;
    int fd, err, fe, ours = 0, tmpfile = (flags & O_TMPFILE) == O_TMPFILE;

    if (!g.enabled || busy || !path)
        return REAL(openat)(dirfd, path, flags, mode);
    busy = 1;
    lock();
    memset(&r, 0, sizeof(r));
    if (!tmpfile && (flags & (O_CREAT | O_TRUNC)))
        ours = resolve(dirfd, path, abs, &pino);
    if (ours) {
        int exists = sys_stat(abs, &st) == 0;
        int dangling = !exists && sys_lstat(abs, &st) == 0;
        if (!exists && !dangling && (flags & O_CREAT)) {
            r.op = OTASIM_OP_CREATE;
            r.kind = OTASIM_JK_CALL;
            r.dir_ino = pino;
            r.mode = mode;
        } else if (exists && S_ISREG(st.st_mode) && (flags & O_TRUNC) &&
                   !((flags & O_CREAT) && (flags & O_EXCL))) {
            r.op = OTASIM_OP_TRUNC;
            r.kind = OTASIM_JK_CALL;
        }
    }
    if (r.kind == OTASIM_JK_CALL) {
        r.path = abs;
        r.seq = ++g.seq;
        if (r.op == OTASIM_OP_CREATE) {
            fe = fail_for(F_ALLOC, abs, NULL, r.seq);
            if (fe) {
                fd = failed(&r, fe);
                goto out;
            }
            jwrite(&r);
        } else {
            /* O_TRUNC of an existing file: the cut is the whole content. */
            int rfd = REAL(openat)(AT_FDCWD, abs, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
            size_t img_n = 0;
            if (rfd >= 0 && sys_fstat(rfd, &st) == 0) {
                r.ino = (uint64_t)st.st_ino;
                r.old_size = (uint64_t)st.st_size;
                if (before_image(rfd, 1, 0, r.old_size, r.old_size, &img_n) == 0) {
                    r.img = g.img;
                    r.img_len = img_n;
                    r.len = img_n;
                }
            }
            if (rfd >= 0)
                sys_close(rfd);
            jwrite(&r);
        }
    }
    fd = REAL(openat)(dirfd, path, flags, mode);
    err = errno;
    /* What fd is gets found out at its first write or fsync. */
    if (fd >= 0)
        fd_forget(fd);
    if (r.kind == OTASIM_JK_CALL) {
        uint64_t ino = fd >= 0 && sys_fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
        jdone(r.op, r.seq, fd < 0 ? -err : 0, ino);
        after_call(r.seq);
    }
    errno = err;
out:
    err = errno;
    unlock();
    busy = 0;
    errno = err;
    return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        return (mode_t)va_arg(ap, int);
    return 0;
}

API int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t m;

    va_start(ap, flags);
    m = open_mode(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, m);
}

API int open64(const char *path, int flags, ...) __attribute__((alias("open")));

API int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t m;

    va_start(ap, flags);
    m = open_mode(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, m);
}

API int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

API int __open_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

API int __open64_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

API int __openat_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

API int __openat64_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

API int creat(const char *path, mode_t mode)
{
    return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

API int creat64(const char *path, mode_t mode)
{
    return creat(path, mode);
}

/* ---- fd bookkeeping ---------------------------------------------------- */

API int close(int fd)
{
    if (!g.enabled || busy)
        return REAL(close)(fd);
    if (fd == g.jfd && fd >= 0)
        return 0; /* a close-all loop must not end the journal */
    busy = 1;
    lock();
    fd_forget(fd);
    unlock();
    busy = 0;
    return REAL(close)(fd);
}

static int after_dup(int from, int to)
{
    int err = errno;

    if (to >= 0 && g.enabled && !busy) {
        busy = 1;
        lock();
        fd_copy(from, to);
        unlock();
        busy = 0;
    }
    errno = err;
    return to;
}

API int dup(int fd)
{
    return after_dup(fd, REAL(dup)(fd));
}

API int dup2(int fd, int to)
{
    if (g.enabled && to == g.jfd && to >= 0) {
        errno = EBUSY;
        return -1;
    }
    return after_dup(fd, REAL(dup2)(fd, to));
}

API int dup3(int fd, int to, int fl)
{
    if (g.enabled && to == g.jfd && to >= 0) {
        errno = EBUSY;
        return -1;
    }
    return after_dup(fd, REAL(dup3)(fd, to, fl));
}

static int do_fcntl(int fd, int cmd, void *arg)
{
    int r = REAL(fcntl)(fd, cmd, arg);
    int err = errno;

    if (r < 0 || !g.enabled || busy)
        return r;
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        return after_dup(fd, r);
    if (cmd == F_SETFL) {
        busy = 1;
        lock();
        if (fd < g.nfds)
            g.fds[fd].append = ((long)arg & O_APPEND) != 0;
        unlock();
        busy = 0;
    }
    errno = err;
    return r;
}

API int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    void *arg;

    va_start(ap, cmd);
    arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(fd, cmd, arg);
}

API int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    void *arg;

    va_start(ap, cmd);
    arg = va_arg(ap, void *);
    va_end(ap);
    return do_fcntl(fd, cmd, arg);
}

/* ---- sync -------------------------------------------------------------- */

/* ---- fsync EIO: the dirty pages are dropped ---------------------------- */

struct dropped {
    uint64_t pos, head, img_len, off, old_size;
};

/* After an fsync of inode ino failed with EIO (injected), Linux may have
 * dropped the pages whose writeback failed, and a later fsync returns 0: the
 * file reads as the disk has it. Here at once, the worst case: every write
 * and truncate of ino by this process since its last fsync that ran (or
 * sync) is undone now, from the before-images in the journal. The records
 * stay: the power model counts them as lost at the next cut too. Under mu. */
static void drop_unsynced(int fd, uint64_t ino)
{
    struct otasim_jhdr h;
    struct stat st;
    struct dropped *v = NULL, *nv;
    size_t n = 0, cap = 0;
    uint64_t pos = 0, size;
    char l[64];
    int wfd;

    if (sys_fstat(g.jfd, &st) < 0)
        return;
    size = (uint64_t)st.st_size;
    while (pos + sizeof(h) <= size && sys_pread(g.jfd, &h, sizeof(h), (off_t)pos) == sizeof(h) &&
           h.magic == OTASIM_J_MAGIC && h.size >= sizeof(h) && pos + h.size <= size) {
        int ran = !(h.flags & OTASIM_REC_DONE); /* not failed by injection */
        if (h.kind == OTASIM_JK_CALL && h.pid == g.pid) {
            if ((h.op == OTASIM_OP_FSYNC && h.ino == ino && ran) || h.op == OTASIM_OP_SYNC) {
                n = 0;
            } else if ((h.op == OTASIM_OP_WRITE || h.op == OTASIM_OP_TRUNC) && h.ino == ino &&
                       ran) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    nv = realloc(v, cap * sizeof(*v));
                    if (!nv)
                        goto out;
                    v = nv;
                }
                v[n].pos = pos;
                v[n].head = OTASIM_J_ALIGN((uint64_t)sizeof(h) + h.path_len + 1 + h.path2_len + 1 +
                                           h.text_len + 1);
                v[n].img_len = h.img_len;
                v[n].off = h.off;
                v[n].old_size = h.old_size;
                n++;
            }
        }
        pos += h.size;
    }
    snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
    wfd = (int)syscall(SYS_openat, AT_FDCWD, l, O_WRONLY | O_CLOEXEC);
    if (wfd < 0)
        goto out;
    while (n-- > 0) {
        const struct dropped *d = &v[n];
        if (d->img_len && grow(&g.img, &g.img_cap, d->img_len) == 0 &&
            sys_pread(g.jfd, g.img, d->img_len, (off_t)(d->pos + d->head)) == (ssize_t)d->img_len)
            ota_ignore((int)syscall(SYS_pwrite64, wfd, g.img, d->img_len, (off_t)d->off));
        ota_ignore((int)syscall(SYS_ftruncate, wfd, (off_t)d->old_size));
    }
    sys_close(wfd);
out:
    free(v);
}

static int do_fsync(int fd, int data)
{
    struct stat st;
    struct fdent *e;
    struct rec r;
    int res, err, fe;

    if (!g.enabled || busy)
        return data ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
    busy = 1;
    lock();
    e = sys_fstat(fd, &st) == 0 ? fd_classify(fd, &st) : NULL;
    if (!e || (e->kind != FD_FILE && e->kind != FD_DIR)) {
        unlock();
        busy = 0;
        return data ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
    }
    memset(&r, 0, sizeof(r));
    r.kind = OTASIM_JK_CALL;
    r.op = OTASIM_OP_FSYNC;
    r.path = e->path;
    r.ino = (uint64_t)st.st_ino;
    r.is_dir = e->kind == FD_DIR;
    r.seq = ++g.seq;
    fe = fail_for(F_SYNC, e->path, NULL, r.seq);
    if (fe) {
        res = failed(&r, fe);
        if (fe == EIO)
            drop_unsynced(fd, r.ino);
        errno = fe;
    } else {
        jwrite(&r);
        res = data ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
        err = errno;
        jdone(r.op, r.seq, res < 0 ? -err : 0, 0);
        after_call(r.seq);
        errno = err;
    }
    err = errno;
    unlock();
    busy = 0;
    errno = err;
    return res;
}

API int fsync(int fd)
{
    return do_fsync(fd, 0);
}

API int fdatasync(int fd)
{
    return do_fsync(fd, 1);
}

static int sync_call(int fd, int fs)
{
    struct rec r;
    int res = 0, err;

    busy = 1;
    lock();
    memset(&r, 0, sizeof(r));
    r.kind = OTASIM_JK_CALL;
    r.op = OTASIM_OP_SYNC;
    r.seq = ++g.seq;
    jwrite(&r);
    if (fs)
        res = REAL(syncfs)(fd);
    else
        REAL(sync)();
    err = errno;
    jdone(r.op, r.seq, res < 0 ? -err : 0, 0);
    after_call(r.seq);
    unlock();
    busy = 0;
    errno = err;
    return res;
}

API void sync(void)
{
    if (!g.enabled || busy) {
        REAL(sync)();
        return;
    }
    ota_ignore(sync_call(-1, 0));
}

API int syncfs(int fd)
{
    if (!g.enabled || busy)
        return REAL(syncfs)(fd);
    return sync_call(fd, 1);
}

/* ---- directory changes ------------------------------------------------- */

static int stash_file(const char *abs, uint64_t seq, uint32_t pid)
{
    char p[PATH_MAX];

    if (!g.stash_made) {
        ota_ignore(REAL(mkdirat)(AT_FDCWD, g.sim, 0755));
        ota_ignore(REAL(mkdirat)(AT_FDCWD, g.stash, 0755));
        g.stash_made = 1;
    }
    snprintf(p, sizeof(p), "%s/%llu.%u", g.stash, (unsigned long long)seq, pid);
    ota_ignore(REAL(unlinkat)(AT_FDCWD, p, 0));
    return REAL(linkat)(AT_FDCWD, abs, AT_FDCWD, p, 0);
}

/* What an undo needs of the name abs that the call will destroy: a stash
 * link (file), the target text (symlink), or the mode (directory). */
static void keep_victim(struct rec *r, const char *abs, const struct stat *st, char *text,
                        size_t cap)
{
    ssize_t n;

    r->victim_ino = (uint64_t)st->st_ino;
    if (S_ISDIR(st->st_mode)) {
        r->flags |= OTASIM_REC_VICTIM_DIR;
        r->mode = st->st_mode & 07777;
    } else if (S_ISLNK(st->st_mode)) {
        n = sys_readlink(abs, text, cap - 1);
        if (n >= 0) {
            text[n] = '\0';
            r->text = text;
            r->flags |= OTASIM_REC_VICTIM_LINK;
        }
    } else if (stash_file(abs, r->seq, g.pid) == 0) {
        r->flags |= OTASIM_REC_VICTIM_FILE;
    }
}

struct dirop {
    int op;
    int dfd1;
    const char *p1;
    int dfd2;
    const char *p2;
    int flags; /* renameat2 / linkat / unlinkat flags */
    mode_t mode;
};

static int dirop_real(const struct dirop *d)
{
    switch (d->op) {
    case OTASIM_OP_RENAME:
        if (d->flags)
            return REAL(renameat2)(d->dfd1, d->p1, d->dfd2, d->p2, (unsigned)d->flags);
        return REAL(renameat)(d->dfd1, d->p1, d->dfd2, d->p2);
    case OTASIM_OP_LINK:
        return REAL(linkat)(d->dfd1, d->p1, d->dfd2, d->p2, d->flags);
    case OTASIM_OP_SYMLINK:
        return REAL(symlinkat)(d->p1, d->dfd2, d->p2);
    case OTASIM_OP_UNLINK:
        return REAL(unlinkat)(d->dfd1, d->p1, 0);
    case OTASIM_OP_RMDIR:
        return REAL(unlinkat)(d->dfd1, d->p1, AT_REMOVEDIR);
    case OTASIM_OP_MKDIR:
        return REAL(mkdirat)(d->dfd1, d->p1, d->mode);
    }
    errno = EINVAL;
    return -1;
}

static void unmodelled(const char *call, const char *path);

/* A rename or link between ROOT and the outside (called under mu once
 * resolve() said which side each name is on; a2 is the resolved target).
 * 1: an O_TMPFILE file (no name yet) linked under ROOT, r made a LINK of it
 * (the model undoes it like any new name); -1: a name brought in from
 * outside, -2: a name taken out (*what says which; unmodelled); 0: neither. */
static int crossing(const struct dirop *d, int o1, int o2, const char *a2, uint64_t pino2,
                    struct rec *r, const char **what)
{
    struct stat st;
    int got;

    if ((d->op != OTASIM_OP_RENAME && d->op != OTASIM_OP_LINK) || (o1 && o2))
        return 0;
    if (o1) { /* ROOT -> outside: a rename takes the name away, a link does not */
        *what = "rename out of the device root";
        return d->op == OTASIM_OP_RENAME ? -2 : 0;
    }
    if (d->op == OTASIM_OP_LINK) {
        struct stat st2;
        if ((d->flags & AT_EMPTY_PATH) && (!d->p1 || !d->p1[0]))
            got = sys_fstat(d->dfd1, &st);
        else
            got = (int)syscall(SYS_newfstatat, d->dfd1, d->p1, &st,
                               (d->flags & AT_SYMLINK_FOLLOW) ? 0 : AT_SYMLINK_NOFOLLOW);
        if (got == 0 && st.st_nlink == 0 && S_ISREG(st.st_mode) && sys_lstat(a2, &st2) < 0) {
            r->path = "";
            r->path2 = a2;
            r->dir2_ino = pino2;
            r->ino = (uint64_t)st.st_ino;
            return 1;
        }
    }
    *what = d->op == OTASIM_OP_RENAME ? "rename from outside the device root"
                                      : "link from outside the device root";
    return -1;
}

/* The record of a dirop inside the device root, from the paths as they are
 * before it runs (a1, a2 resolved; text holds a kept victim's name); kind 0
 * when the call will fail and change nothing. */
static void describe(const struct dirop *d, struct rec *r, char *a1, uint64_t pino1, char *a2,
                     uint64_t pino2, char *text, size_t cap)
{
    struct stat st, st2;
    int have1, have2;

    have1 = a1[0] && sys_lstat(a1, &st) == 0;
    r->path = a1;
    r->dir_ino = pino1;
    switch (d->op) {
    case OTASIM_OP_RENAME:
        have2 = a2[0] && sys_lstat(a2, &st2) == 0;
        if (!have1) {
            r->kind = 0; /* fails ENOENT: changes nothing */
            break;
        }
        r->path2 = a2;
        r->dir2_ino = pino2;
        r->ino = (uint64_t)st.st_ino;
        r->is_dir = S_ISDIR(st.st_mode);
        r->seq = g.seq + 1;
        if (d->flags & RENAME_EXCHANGE) {
            r->flags |= OTASIM_REC_EXCHANGE;
            if (have2)
                r->victim_ino = (uint64_t)st2.st_ino;
        } else if (have2 && !(d->flags & RENAME_NOREPLACE) && st2.st_ino != st.st_ino) {
            keep_victim(r, a2, &st2, text, cap);
        }
        break;
    case OTASIM_OP_LINK:
        if (!have1 || !a2[0] || sys_lstat(a2, &st2) == 0) {
            r->kind = 0; /* source missing or target exists: fails, changes nothing */
            break;
        }
        if ((d->flags & AT_SYMLINK_FOLLOW) && sys_stat(a1, &st) < 0) {
            r->kind = 0;
            break;
        }
        r->path2 = a2;
        r->dir2_ino = pino2;
        r->ino = (uint64_t)st.st_ino;
        break;
    case OTASIM_OP_SYMLINK:
        if (have1) {
            r->kind = 0;
            break;
        }
        r->path2 = d->p1;
        break;
    case OTASIM_OP_MKDIR:
        if (have1) {
            r->kind = 0;
            break;
        }
        r->is_dir = 1;
        r->mode = d->mode & 07777;
        break;
    case OTASIM_OP_RMDIR:
        if (!have1) {
            r->kind = 0;
            break;
        }
        r->is_dir = 1;
        r->ino = (uint64_t)st.st_ino;
        r->mode = st.st_mode & 07777;
        break;
    case OTASIM_OP_UNLINK:
        if (!have1 || S_ISDIR(st.st_mode)) {
            r->kind = 0;
            break;
        }
        r->ino = (uint64_t)st.st_ino;
        r->seq = g.seq + 1;
        keep_victim(r, a1, &st, text, cap);
        r->victim_ino = 0;
        break;
    }
}

static int do_dirop(const struct dirop *d)
{
    char a1[PATH_MAX], a2[PATH_MAX], text[PATH_MAX];
    uint64_t pino1 = 0, pino2 = 0;
    struct stat st;
    struct rec r;
    int o1 = 0, o2 = 0, res, err, fe, cross = 0;
    const char *cross_what = NULL;

    if (!g.enabled || busy)
        return dirop_real(d);
    busy = 1;
    lock();
    memset(&r, 0, sizeof(r));
    r.kind = OTASIM_JK_CALL;
    r.op = (uint8_t)d->op;
    switch (d->op) {
    case OTASIM_OP_RENAME:
    case OTASIM_OP_LINK:
        o1 = resolve(d->dfd1, d->p1, a1, &pino1);
        o2 = resolve(d->dfd2, d->p2, a2, &pino2);
        break;
    case OTASIM_OP_SYMLINK:
        o1 = resolve(d->dfd2, d->p2, a1, &pino1);
        break;
    default:
        o1 = resolve(d->dfd1, d->p1, a1, &pino1);
    }
    if (!o1 && !o2) {
        r.kind = 0;
        goto run;
    }
    cross = crossing(d, o1, o2, a2, pino2, &r, &cross_what);
    if (cross == 1) {
        a1[0] = '\0';
        goto record; /* O_TMPFILE linked in: r is a LINK */
    }
    if (cross) {
        r.kind = 0;
        goto run; /* unmodelled, recorded if it succeeds */
    }
    if (!o1)
        a1[0] = '\0';
    if (!o2)
        a2[0] = '\0';
    describe(d, &r, a1, pino1, a2, pino2, text, sizeof(text));
record:
    if (r.kind == OTASIM_JK_CALL) {
        r.seq = ++g.seq;
        fe = d->op == OTASIM_OP_RENAME || d->op == OTASIM_OP_LINK || d->op == OTASIM_OP_SYMLINK ||
                     d->op == OTASIM_OP_MKDIR
                 ? fail_for(F_ALLOC, a1[0] ? a1 : NULL, r.path2 && a2[0] ? a2 : NULL, r.seq)
                 : 0;
        if (fe) {
            res = failed(&r, fe);
            goto out;
        }
        jwrite(&r);
    }
run:
    res = dirop_real(d);
    err = errno;
    if (cross < 0 && res == 0)
        unmodelled(cross_what, cross == -2 ? a1 : a2);
    if (r.kind == OTASIM_JK_CALL) {
        uint64_t made = 0;
        const char *np = d->op == OTASIM_OP_LINK ? a2 : a1;
        if (res == 0 &&
            (d->op == OTASIM_OP_MKDIR || d->op == OTASIM_OP_SYMLINK || d->op == OTASIM_OP_LINK) &&
            sys_lstat(np, &st) == 0)
            made = (uint64_t)st.st_ino;
        jdone(r.op, r.seq, res < 0 ? -err : 0, made);
    }
    if (d->op != OTASIM_OP_MKDIR && d->op != OTASIM_OP_LINK)
        dircache_clear();
    if (r.kind == OTASIM_JK_CALL)
        after_call(r.seq);
    errno = err;
out:
    err = errno;
    unlock();
    busy = 0;
    errno = err;
    return res;
}

API int renameat2(int d1, const char *p1, int d2, const char *p2, unsigned int fl)
{
    struct dirop d = {OTASIM_OP_RENAME, d1, p1, d2, p2, (int)fl, 0};
    return do_dirop(&d);
}

API int renameat(int d1, const char *p1, int d2, const char *p2)
{
    struct dirop d = {OTASIM_OP_RENAME, d1, p1, d2, p2, 0, 0};
    return do_dirop(&d);
}

API int rename(const char *p1, const char *p2)
{
    return renameat(AT_FDCWD, p1, AT_FDCWD, p2);
}

API int linkat(int d1, const char *p1, int d2, const char *p2, int fl)
{
    struct dirop d = {OTASIM_OP_LINK, d1, p1, d2, p2, fl, 0};
    return do_dirop(&d);
}

API int link(const char *p1, const char *p2)
{
    return linkat(AT_FDCWD, p1, AT_FDCWD, p2, 0);
}

API int symlinkat(const char *target, int d2, const char *p2)
{
    struct dirop d = {OTASIM_OP_SYMLINK, AT_FDCWD, target, d2, p2, 0, 0};
    return do_dirop(&d);
}

API int symlink(const char *target, const char *p2)
{
    return symlinkat(target, AT_FDCWD, p2);
}

API int unlinkat(int d1, const char *p1, int fl)
{
    struct dirop d = {
        (fl & AT_REMOVEDIR) ? OTASIM_OP_RMDIR : OTASIM_OP_UNLINK, d1, p1, -1, NULL, fl, 0};
    if (fl & ~AT_REMOVEDIR)
        return REAL(unlinkat)(d1, p1, fl);
    return do_dirop(&d);
}

API int unlink(const char *p)
{
    return unlinkat(AT_FDCWD, p, 0);
}

API int rmdir(const char *p)
{
    return unlinkat(AT_FDCWD, p, AT_REMOVEDIR);
}

API int remove(const char *p)
{
    struct stat st;

    if (g.enabled && !busy && sys_lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        return rmdir(p);
    if (g.enabled && !busy)
        return unlink(p);
    if (unlink(p) == 0)
        return 0;
    if (errno != EISDIR)
        return -1;
    return rmdir(p);
}

API int mkdirat(int d1, const char *p1, mode_t mode)
{
    struct dirop d = {OTASIM_OP_MKDIR, d1, p1, -1, NULL, 0, mode};
    return do_dirop(&d);
}

API int mkdir(const char *p, mode_t mode)
{
    return mkdirat(AT_FDCWD, p, mode);
}

/* ---- calls beyond open/write/rename ------------------------------------ */

/* Mutations the basic calls above do not cover. The model represents what
 * it can (fallocate that grows a file: a TRUNC; copy_file_range, sendfile
 * and splice into a file: a WRITE; chmod/chown/utimens: an ATTR, not
 * counted so that crash points keep their numbers; O_TMPFILE + linkat: a
 * LINK). Anything else that mutates the tree under ROOT (a write through a
 * stdio FILE, a shared writable mapping, fallocate punching holes, a rename
 * or link between ROOT and the outside) is recorded as an UNMODELLED event,
 * and the harness ends the trial as an error: a rebuild would take it as
 * durable. */

DECL_REAL(int, fallocate, int, int, off_t, off_t);
DECL_REAL(int, posix_fallocate, int, off_t, off_t);
DECL_REAL(ssize_t, copy_file_range, int, off_t *, int, off_t *, size_t, unsigned int);
DECL_REAL(ssize_t, sendfile, int, int, off_t *, size_t);
DECL_REAL(ssize_t, splice, int, off_t *, int, off_t *, size_t, unsigned int);
DECL_REAL(void *, mmap, void *, size_t, int, int, int, off_t);
DECL_REAL(FILE *, fopen, const char *, const char *);
DECL_REAL(FILE *, fopen64, const char *, const char *);
DECL_REAL(FILE *, freopen, const char *, const char *, FILE *);
DECL_REAL(FILE *, fdopen, int, const char *);
DECL_REAL(int, fchmod, int, mode_t);
DECL_REAL(int, fchmodat, int, const char *, mode_t, int);
DECL_REAL(int, chmod, const char *, mode_t);
DECL_REAL(int, fchown, int, uid_t, gid_t);
DECL_REAL(int, fchownat, int, const char *, uid_t, gid_t, int);
DECL_REAL(int, chown, const char *, uid_t, gid_t);
DECL_REAL(int, lchown, const char *, uid_t, gid_t);
DECL_REAL(int, utimensat, int, const char *, const struct timespec *, int);
DECL_REAL(int, futimens, int, const struct timespec *);
DECL_REAL(int, utimes, const char *, const struct timeval *);
DECL_REAL(int, utime, const char *, const struct utimbuf *);

static void resolve_reals_more(void)
{
    void *all[] = {REAL(fallocate), REAL(posix_fallocate), REAL(copy_file_range),
                   REAL(sendfile),  REAL(splice),          REAL(mmap),
                   REAL(fopen),     REAL(fopen64),         REAL(freopen),
                   REAL(fdopen),    REAL(fchmod),          REAL(fchmodat),
                   REAL(chmod),     REAL(fchown),          REAL(fchownat),
                   REAL(chown),     REAL(lchown),          REAL(utimensat),
                   REAL(futimens),  REAL(utimes),          REAL(utime)};
    (void)all;
}

/* Records that call changed path in a way the model cannot represent
 * (under mu). */
static void unmodelled(const char *call, const char *path)
{
    char text[PATH_MAX + 64];
    int n = snprintf(text, sizeof(text), "%s %s", call, path);

    jevent(OTASIM_OP_UNMODELLED, text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0);
}

/* The counted file or directory open as fd, or NULL (under mu). */
static struct fdent *counted_fd(int fd, struct stat *st)
{
    struct fdent *e = fd >= 0 && sys_fstat(fd, st) == 0 ? fd_classify(fd, st) : NULL;

    return e && (e->kind == FD_FILE || e->kind == FD_DIR) ? e : NULL;
}

static void enter(void)
{
    busy = 1;
    lock();
}

static int leave(int res)
{
    int err = errno;

    unlock();
    busy = 0;
    errno = err;
    return res;
}

/* -- writes into a file by other calls -- */

/* Records a WRITE of [off, off+len) of the counted file fd that the call
 * about to run may make (off < 0: at the file position). Returns 1 with *r
 * filled (the caller runs the call, then range_end), 0 when fd is not a
 * counted file, -1 when injection failed the call (errno set). Under mu. */
static int range_begin(int fd, int64_t off, size_t len, struct rec *r)
{
    struct stat st;
    struct fdent *e = fd == g.jfd || len == 0 ? NULL : counted_fd(fd, &st);
    size_t img_n = 0;
    int fe;

    if (!e || e->kind != FD_FILE)
        return 0;
    memset(r, 0, sizeof(*r));
    r->kind = OTASIM_JK_CALL;
    r->op = OTASIM_OP_WRITE;
    r->path = e->path;
    r->ino = (uint64_t)st.st_ino;
    r->old_size = (uint64_t)st.st_size;
    r->len = len;
    if (off >= 0) {
        r->off = (uint64_t)off;
    } else {
        off_t cur = lseek(fd, 0, SEEK_CUR);
        r->off = e->append || cur < 0 ? (uint64_t)st.st_size : (uint64_t)cur;
    }
    r->seq = ++g.seq;
    g.burst_ino = 0;
    fe = fail_for(F_WRITE, e->path, NULL, r->seq);
    if (fe)
        return failed(r, fe);
    if (before_image(fd, e->readable, r->off, r->len, r->old_size, &img_n) == 0) {
        r->img = g.img;
        r->img_len = img_n;
    }
    jwrite(r);
    return 1;
}

static void range_end(const struct rec *r, ssize_t res, int err)
{
    jdone(r->op, r->seq, res < 0 ? -err : 0, 0);
    after_call(r->seq);
}

#define RANGED(call, fd, off, len)                                                                 \
    do {                                                                                           \
        struct rec r_;                                                                             \
        ssize_t res_;                                                                              \
        int k_, e_;                                                                                \
        if (!g.enabled || busy)                                                                    \
            return call;                                                                           \
        enter();                                                                                   \
        k_ = range_begin(fd, off, len, &r_);                                                       \
        if (k_ < 0)                                                                                \
            return leave(-1);                                                                      \
        res_ = call;                                                                               \
        e_ = errno;                                                                                \
        if (k_)                                                                                    \
            range_end(&r_, res_, e_);                                                              \
        errno = e_;                                                                                \
        return leave((int)(res_ < 0 ? -1 : 0)) < 0 ? -1 : res_;                                    \
    } while (0)

API ssize_t copy_file_range(int in, off_t *oin, int out, off_t *oout, size_t len, unsigned fl)
{
    RANGED(REAL(copy_file_range)(in, oin, out, oout, len, fl), out, oout ? (int64_t)*oout : -1,
           len);
}

API ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    RANGED(REAL(sendfile)(out, in, off, n), out, -1, n);
}

API ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
    return sendfile(out, in, off, n);
}

API ssize_t splice(int in, off_t *oin, int out, off_t *oout, size_t len, unsigned int fl)
{
    RANGED(REAL(splice)(in, oin, out, oout, len, fl), out, oout ? (int64_t)*oout : -1, len);
}

/* -- fallocate -- */

/* fallocate that only allocates: a TRUNC when it grows the file (the bytes
 * it adds read as zeros), nothing when it does not; any other mode changes
 * bytes the model does not journal. */
static int do_fallocate(const char *call, int fd, int mode, off_t off, off_t len)
{
    struct stat st;
    struct fdent *e;
    struct rec r;
    uint64_t end = (uint64_t)off + (uint64_t)len;
    int res, err, fe, rec = 0;

    enter();
    e = counted_fd(fd, &st);
    if (e && e->kind == FD_FILE) {
        if (mode & ~FALLOC_FL_KEEP_SIZE) {
            unmodelled(call, e->path);
        } else if (!(mode & FALLOC_FL_KEEP_SIZE) && off >= 0 && len > 0 &&
                   end > (uint64_t)st.st_size) {
            memset(&r, 0, sizeof(r));
            r.kind = OTASIM_JK_CALL;
            r.op = OTASIM_OP_TRUNC;
            r.path = e->path;
            r.ino = (uint64_t)st.st_ino;
            r.off = end;
            r.old_size = (uint64_t)st.st_size;
            r.seq = ++g.seq;
            fe = fail_for(F_ALLOC, e->path, NULL, r.seq);
            if (fe) {
                ota_ignore(failed(&r, fe));
                return leave(strcmp(call, "posix_fallocate") == 0 ? fe : -1);
            }
            jwrite(&r);
            rec = 1;
        }
    }
    if (strcmp(call, "posix_fallocate") == 0)
        res = REAL(posix_fallocate)(fd, off, len);
    else
        res = REAL(fallocate)(fd, mode, off, len);
    err = strcmp(call, "posix_fallocate") == 0 ? res : (res < 0 ? errno : 0);
    if (rec) {
        jdone(r.op, r.seq, err ? -err : 0, 0);
        after_call(r.seq);
    }
    return leave(res);
}

API int fallocate(int fd, int mode, off_t off, off_t len)
{
    if (!g.enabled || busy)
        return REAL(fallocate)(fd, mode, off, len);
    return do_fallocate("fallocate", fd, mode, off, len);
}

API int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

API int posix_fallocate(int fd, off_t off, off_t len)
{
    if (!g.enabled || busy)
        return REAL(posix_fallocate)(fd, off, len);
    return do_fallocate("posix_fallocate", fd, 0, off, len);
}

API int posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

/* -- shared writable mappings -- */

static void *mmap_any(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
    void *(*m)(void *, size_t, int, int, int, off_t) =
        __atomic_load_n(&real_mmap, __ATOMIC_ACQUIRE);

    /* before the lookup (dlsym may map memory itself): the system call */
    if (!m)
        return (void *)syscall(SYS_mmap, a, n, prot, fl, fd, off);
    return m(a, n, prot, fl, fd, off);
}

/* SQLite's -shm is shared memory it rebuilds from the WAL after a crash:
 * its content never has to survive one. */
static int is_shm(const char *path)
{
    size_t n = strlen(path);

    return n > 4 && strcmp(path + n - 4, "-shm") == 0;
}

API void *mmap(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
    struct stat st;
    struct fdent *e;

    if (fd < 0 || !(prot & PROT_WRITE) || !(fl & MAP_SHARED) || !g.enabled || busy)
        return mmap_any(a, n, prot, fl, fd, off);
    enter();
    e = counted_fd(fd, &st);
    if (e && e->kind == FD_FILE && !is_shm(e->path))
        unmodelled("mmap(MAP_SHARED, PROT_WRITE)", e->path);
    ota_ignore(leave(0));
    return mmap_any(a, n, prot, fl, fd, off);
}

API void *mmap64(void *a, size_t n, int prot, int fl, int fd, off_t off)
{
    return mmap(a, n, prot, fl, fd, off);
}

/* -- stdio: glibc writes a FILE through its own internal calls -- */

static int stdio_writes(const char *mode)
{
    return mode && (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+'));
}

static void stdio_path(const char *call, const char *path, const char *mode)
{
    char abs[PATH_MAX], what[64];
    uint64_t pino;

    if (!g.enabled || busy || !path || !stdio_writes(mode))
        return;
    enter();
    if (resolve(AT_FDCWD, path, abs, &pino) == 1) {
        snprintf(what, sizeof(what), "%s(\"%.8s\")", call, mode);
        unmodelled(what, abs);
    }
    ota_ignore(leave(0));
}

API FILE *fopen(const char *path, const char *mode)
{
    stdio_path("fopen", path, mode);
    return REAL(fopen)(path, mode);
}

API FILE *fopen64(const char *path, const char *mode)
{
    stdio_path("fopen", path, mode);
    return REAL(fopen64)(path, mode);
}

API FILE *freopen(const char *path, const char *mode, FILE *f)
{
    stdio_path("freopen", path, mode);
    return REAL(freopen)(path, mode, f);
}

API FILE *fdopen(int fd, const char *mode)
{
    struct stat st;
    struct fdent *e;
    char what[64];

    if (g.enabled && !busy && stdio_writes(mode)) {
        enter();
        e = counted_fd(fd, &st);
        if (e && e->kind == FD_FILE) {
            snprintf(what, sizeof(what), "fdopen(\"%.8s\")", mode);
            unmodelled(what, e->path);
        }
        ota_ignore(leave(0));
    }
    return REAL(fdopen)(fd, mode);
}

/* -- attributes: mode, owner, times -- */

enum attr_call {
    A_FCHMOD,
    A_FCHMODAT,
    A_CHMOD,
    A_FCHOWN,
    A_FCHOWNAT,
    A_CHOWN,
    A_LCHOWN,
    A_UTIMENSAT,
    A_FUTIMENS,
    A_UTIMES,
    A_UTIME
};

struct attr_args {
    enum attr_call c;
    int fd, dirfd, flags;
    const char *path;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    const struct timespec *ts;
    const struct timeval *tv;
    const struct utimbuf *ub;
};

static int attr_real(const struct attr_args *a)
{
    switch (a->c) {
    case A_FCHMOD:
        return REAL(fchmod)(a->fd, a->mode);
    case A_FCHMODAT:
        return REAL(fchmodat)(a->dirfd, a->path, a->mode, a->flags);
    case A_CHMOD:
        return REAL(chmod)(a->path, a->mode);
    case A_FCHOWN:
        return REAL(fchown)(a->fd, a->uid, a->gid);
    case A_FCHOWNAT:
        return REAL(fchownat)(a->dirfd, a->path, a->uid, a->gid, a->flags);
    case A_CHOWN:
        return REAL(chown)(a->path, a->uid, a->gid);
    case A_LCHOWN:
        return REAL(lchown)(a->path, a->uid, a->gid);
    case A_UTIMENSAT:
        return REAL(utimensat)(a->dirfd, a->path, a->ts, a->flags);
    case A_FUTIMENS:
        return REAL(futimens)(a->fd, a->ts);
    case A_UTIMES:
        return REAL(utimes)(a->path, a->tv);
    case A_UTIME:
        return REAL(utime)(a->path, a->ub);
    }
    errno = EINVAL;
    return -1;
}

static uint64_t ns_of(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000ULL + (uint64_t)t->tv_nsec;
}

/* What the call works on: a counted file or directory, its path and stat. */
static int attr_target(const struct attr_args *a, char *abs, struct stat *st)
{
    uint64_t pino;
    struct fdent *e;
    int follow = !(a->flags & AT_SYMLINK_NOFOLLOW) && a->c != A_LCHOWN;

    if (a->c == A_FCHMOD || a->c == A_FCHOWN || a->c == A_FUTIMENS ||
        (a->c == A_UTIMENSAT && !a->path)) {
        e = counted_fd(a->c == A_UTIMENSAT ? a->dirfd : a->fd, st);
        if (!e)
            return 0;
        snprintf(abs, PATH_MAX, "%s", e->path);
        return 1;
    }
    if (resolve(a->c == A_FCHMODAT || a->c == A_FCHOWNAT || a->c == A_UTIMENSAT ? a->dirfd
                                                                                : AT_FDCWD,
                a->path, abs, &pino) != 1)
        return 0;
    return (follow ? sys_stat(abs, st) : sys_lstat(abs, st)) == 0;
}

static int do_attr(const struct attr_args *a, uint32_t what)
{
    char abs[PATH_MAX];
    struct stat st;
    struct rec r;
    int res, err, rec = 0;

    if (!g.enabled || busy)
        return attr_real(a);
    enter();
    if (attr_target(a, abs, &st)) {
        memset(&r, 0, sizeof(r));
        r.kind = OTASIM_JK_CALL;
        r.op = OTASIM_OP_ATTR;
        r.flags = what;
        r.path = abs;
        r.ino = (uint64_t)st.st_ino;
        r.is_dir = S_ISDIR(st.st_mode);
        r.mode = st.st_mode & 07777;
        r.old_size = (uint64_t)st.st_uid << 32 | (uint64_t)st.st_gid;
        r.off = ns_of(&st.st_atim);
        r.len = ns_of(&st.st_mtim);
        r.seq = g.seq; /* not counted: crash points keep their numbers */
        jwrite(&r);
        rec = 1;
    }
    res = attr_real(a);
    err = errno;
    if (rec)
        jdone(r.op, r.seq, res < 0 ? -err : 0, 0);
    errno = err;
    return leave(res);
}

API int fchmod(int fd, mode_t m)
{
    struct attr_args a = {.c = A_FCHMOD, .fd = fd, .mode = m};
    return do_attr(&a, OTASIM_REC_ATTR_MODE);
}

API int fchmodat(int dfd, const char *p, mode_t m, int fl)
{
    struct attr_args a = {.c = A_FCHMODAT, .dirfd = dfd, .path = p, .mode = m, .flags = fl};
    return do_attr(&a, OTASIM_REC_ATTR_MODE);
}

API int chmod(const char *p, mode_t m)
{
    struct attr_args a = {.c = A_CHMOD, .path = p, .mode = m};
    return do_attr(&a, OTASIM_REC_ATTR_MODE);
}

API int fchown(int fd, uid_t u, gid_t gr)
{
    struct attr_args a = {.c = A_FCHOWN, .fd = fd, .uid = u, .gid = gr};
    return do_attr(&a, OTASIM_REC_ATTR_OWNER);
}

API int fchownat(int dfd, const char *p, uid_t u, gid_t gr, int fl)
{
    struct attr_args a = {
        .c = A_FCHOWNAT, .dirfd = dfd, .path = p, .uid = u, .gid = gr, .flags = fl};
    return do_attr(&a, OTASIM_REC_ATTR_OWNER);
}

API int chown(const char *p, uid_t u, gid_t gr)
{
    struct attr_args a = {.c = A_CHOWN, .path = p, .uid = u, .gid = gr};
    return do_attr(&a, OTASIM_REC_ATTR_OWNER);
}

API int lchown(const char *p, uid_t u, gid_t gr)
{
    struct attr_args a = {.c = A_LCHOWN, .path = p, .uid = u, .gid = gr};
    return do_attr(&a, OTASIM_REC_ATTR_OWNER);
}

API int utimensat(int dfd, const char *p, const struct timespec ts[2], int fl)
{
    struct attr_args a = {.c = A_UTIMENSAT, .dirfd = dfd, .path = p, .ts = ts, .flags = fl};
    return do_attr(&a, OTASIM_REC_ATTR_TIMES);
}

API int futimens(int fd, const struct timespec ts[2])
{
    struct attr_args a = {.c = A_FUTIMENS, .fd = fd, .ts = ts};
    return do_attr(&a, OTASIM_REC_ATTR_TIMES);
}

API int utimes(const char *p, const struct timeval tv[2])
{
    struct attr_args a = {.c = A_UTIMES, .path = p, .tv = tv};
    return do_attr(&a, OTASIM_REC_ATTR_TIMES);
}

API int utime(const char *p, const struct utimbuf *ub)
{
    struct attr_args a = {.c = A_UTIME, .path = p, .ub = ub};
    return do_attr(&a, OTASIM_REC_ATTR_TIMES);
}

/* ---- stdio on stderr --------------------------------------------------- */

/* ---- setup ------------------------------------------------------------- */

/* All at once, before a second thread can race on the lazy lookups. */
static void resolve_reals(void)
{
    void *all[] = {REAL(openat),    REAL(close),     REAL(dup),      REAL(dup2),
                   REAL(dup3),      REAL(fcntl),     REAL(write),    REAL(pwrite),
                   REAL(writev),    REAL(pwritev),   REAL(pwritev2), REAL(ftruncate),
                   REAL(truncate),  REAL(renameat2), REAL(renameat), REAL(linkat),
                   REAL(symlinkat), REAL(unlinkat),  REAL(mkdirat),  REAL(fsync),
                   REAL(fdatasync), REAL(sync),      REAL(syncfs),   REAL(send),
                   REAL(sendto),    REAL(sendmsg)};
    (void)all;
    resolve_reals_more();
}

/* The largest seq in the journal open as fd; a torn tail is cut off. */
static uint64_t journal_last_seq(int fd)
{
    struct stat st;
    struct otasim_jhdr h;
    struct otasim_jtail t;
    uint64_t pos = 0, good = 0, seq = 0, size;

    if (sys_fstat(fd, &st) < 0 || st.st_size == 0)
        return 0;
    size = (uint64_t)st.st_size;
    if (size >= sizeof(h) + sizeof(t) &&
        sys_pread(fd, &t, sizeof(t), (off_t)(size - sizeof(t))) == sizeof(t) &&
        t.magic == OTASIM_J_TAIL && t.size <= size &&
        sys_pread(fd, &h, sizeof(h), (off_t)(size - t.size)) == sizeof(h) &&
        h.magic == OTASIM_J_MAGIC && h.size == t.size)
        return h.seq;
    /* Torn tail: walk from the start to the last whole record. */
    while (pos + sizeof(h) + sizeof(t) <= size) {
        if (sys_pread(fd, &h, sizeof(h), (off_t)pos) != sizeof(h) || h.magic != OTASIM_J_MAGIC ||
            h.size < sizeof(h) + sizeof(t) || pos + h.size > size ||
            sys_pread(fd, &t, sizeof(t), (off_t)(pos + h.size - sizeof(t))) != sizeof(t) ||
            t.magic != OTASIM_J_TAIL || t.size != h.size)
            break;
        if (h.seq > seq)
            seq = h.seq;
        pos += h.size;
        good = pos;
    }
    ota_ignore((int)syscall(SYS_ftruncate, fd, (off_t)good));
    return seq;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long n;

    if (!v || !*v)
        return dflt;
    errno = 0;
    n = strtoull(v, &end, 10);
    return errno || *end ? dflt : (uint64_t)n;
}

static void copy_env(const char *name, char *out, size_t cap, const char *dflt)
{
    const char *v = getenv(name);
    snprintf(out, cap, "%s", v && *v ? v : dflt);
}

static void atfork_child(void)
{
    g.enabled = 0; /* a child until exec: its calls are not the device's */
}

/* The constructor; also called by a zygote's child (zygote.c) once it has
 * the environment of its pass. */
void otasim_interpose_init(void);
__attribute__((constructor)) void otasim_interpose_init(void)
{
    const char *root = getenv("OTASIM_ROOT");
    const char *j, *v;
    char jdefault[PATH_MAX + 16], *hash;
    int fd;

    if (!root || root[0] != '/' || strlen(root) >= PATH_MAX)
        return;
    unsetenv("LD_PRELOAD");
    if (!realpath(root, g.root))
        return;
    g.root_len = strlen(g.root);
    snprintf(g.root_raw, sizeof(g.root_raw), "%s", root);
    g.root_raw_len = strlen(g.root_raw);
    while (g.root_raw_len > 1 && g.root_raw[g.root_raw_len - 1] == '/')
        g.root_raw[--g.root_raw_len] = '\0';
    snprintf(g.sim, sizeof(g.sim), "%s/.sim", g.root);
    g.sim_len = strlen(g.sim);
    snprintf(g.stash, sizeof(g.stash), "%s/stash", g.sim);
    j = getenv("OTASIM_JOURNAL");
    if (!j || !*j) {
        ota_ignore((int)syscall(SYS_mkdirat, AT_FDCWD, g.sim, 0755));
        snprintf(jdefault, sizeof(jdefault), "%s/journal", g.sim);
        j = jdefault;
    }
    fd = (int)syscall(SYS_openat, AT_FDCWD, j, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    /* Out of the way of the program's own low fds. */
    g.jfd = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 900);
    if (g.jfd < 0)
        g.jfd = fd;
    else
        sys_close(fd);
    g.seq = journal_last_seq(g.jfd);
    g.pid = (uint32_t)getpid();
    g.crash_at = env_u64("OTASIM_CRASH_AT", 0);
    copy_env("OTASIM_CRASH_STATE", g.crash_state, sizeof(g.crash_state), "");
    g.crash_state_k = 1;
    hash = strchr(g.crash_state, '#');
    if (hash) {
        *hash = '\0';
        g.crash_state_k = atoi(hash + 1) > 0 ? atoi(hash + 1) : 1;
    }
    copy_env("OTASIM_CRASH_LINE", g.crash_line, sizeof(g.crash_line), "");
    g.crash_line_k = 1;
    hash = strrchr(g.crash_line, '#');
    if (hash) {
        *hash = '\0';
        g.crash_line_k = atoi(hash + 1) > 0 ? atoi(hash + 1) : 1;
    }
    v = getenv("OTASIM_CRASH_MODE");
    g.crash_power = !(v && strcmp(v, "process") == 0);
    v = getenv("OTASIM_FAIL_ERRNO");
    if (v && strcmp(v, "ENOSPC") == 0)
        g.fail_errno = ENOSPC;
    else if (v && strcmp(v, "EIO") == 0)
        g.fail_errno = EIO;
    g.fail_from = env_u64("OTASIM_FAIL_FROM", 1);
    copy_env("OTASIM_FAIL_STATE", g.fail_state, sizeof(g.fail_state), "");
    g.fail_armed = g.fail_state[0] == '\0';
    copy_env("OTASIM_FAIL_PATH", g.fail_path, sizeof(g.fail_path), "*");
    g.fail_left = getenv("OTASIM_FAIL_COUNT") ? (long)env_u64("OTASIM_FAIL_COUNT", 0) : -1;
    resolve_reals();
    pthread_atfork(NULL, NULL, atfork_child);
    g.enabled = 1;
}
