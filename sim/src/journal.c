/* Reading the interposer's journal (format: otasim/jformat.h). */
#include "otasim/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otasim/jformat.h"

const char *const otasim_op_names[OTASIM_OP_MAX] = {
    [OTASIM_OP_CREATE] = "create",
    [OTASIM_OP_TRUNC] = "trunc",
    [OTASIM_OP_WRITE] = "write",
    [OTASIM_OP_FSYNC] = "fsync",
    [OTASIM_OP_SYNC] = "sync",
    [OTASIM_OP_RENAME] = "rename",
    [OTASIM_OP_LINK] = "link",
    [OTASIM_OP_SYMLINK] = "symlink",
    [OTASIM_OP_UNLINK] = "unlink",
    [OTASIM_OP_MKDIR] = "mkdir",
    [OTASIM_OP_RMDIR] = "rmdir",
    [OTASIM_OP_STATE] = "state",
    [OTASIM_OP_NET] = "net",
    [OTASIM_OP_CRASH] = "crash",
    [OTASIM_OP_FAIL] = "fail",
    [OTASIM_OP_ATTR] = "attr",
    [OTASIM_OP_UNMODELLED] = "unmodelled",
};

/* Strings are gathered in one arena; records hold offsets into it until the
 * end, when the arena stops moving. */
struct jpriv {
    char *arena;
    size_t len, cap;
    size_t *offs; /* 3 per record */
};

/* How far back a DONE looks for its call (another process may interleave). */
#define DONE_REACH 4096

static int arena_add(struct jpriv *p, const char *s, size_t n, size_t *ret_off)
{
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        char *a;
        while (cap < p->len + n + 1)
            cap *= 2;
        a = realloc(p->arena, cap);
        if (!a)
            return -ENOMEM;
        p->arena = a;
        p->cap = cap;
    }
    memcpy(p->arena + p->len, s, n);
    p->arena[p->len + n] = '\0';
    *ret_off = p->len;
    p->len += n + 1;
    return 0;
}

/* Whether a whole record starts at pos of the n-byte map m. */
static int record_at(const unsigned char *m, uint64_t n, uint64_t pos, struct otasim_jhdr *h)
{
    struct otasim_jtail t;
    uint64_t head;

    if (pos + sizeof(*h) + sizeof(t) > n)
        return 0;
    memcpy(h, m + pos, sizeof(*h));
    if (h->magic != OTASIM_J_MAGIC || h->size % 8 || h->size < sizeof(*h) + sizeof(t) ||
        pos + h->size > n)
        return 0;
    memcpy(&t, m + pos + h->size - sizeof(t), sizeof(t));
    if (t.magic != OTASIM_J_TAIL || t.size != h->size)
        return 0;
    head =
        OTASIM_J_ALIGN((uint64_t)sizeof(*h) + h->path_len + 1 + h->path2_len + 1 + h->text_len + 1);
    return head + OTASIM_J_ALIGN(h->img_len) + sizeof(t) == h->size;
}

static int grow_recs(struct otasim_journal *j, struct jpriv *p, size_t *cap)
{
    struct otasim_rec *v;
    size_t *o;
    size_t n = *cap ? *cap * 2 : 256;

    if (j->n < *cap)
        return 0;
    v = realloc(j->v, n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    j->v = v;
    o = realloc(p->offs, n * 3 * sizeof(*o));
    if (!o)
        return -ENOMEM;
    p->offs = o;
    *cap = n;
    return 0;
}

static struct otasim_rec *find_call(struct otasim_journal *j, uint32_t pid, uint64_t seq)
{
    size_t i, lim = j->n > DONE_REACH ? j->n - DONE_REACH : 0;

    for (i = j->n; i-- > lim;) {
        struct otasim_rec *r = &j->v[i];
        if (r->seq == seq && r->pid == pid && r->op < OTASIM_OP_STATE)
            return r;
    }
    return NULL;
}

/* One record at pos into j. */
static int add_record(struct otasim_journal *j, struct jpriv *p, size_t *cap,
                      const unsigned char *m, uint64_t pos, const struct otasim_jhdr *h)
{
    const char *s = (const char *)m + pos + sizeof(*h);
    struct otasim_rec *r;
    size_t *o;
    int rc;

    if (h->op >= OTASIM_OP_MAX)
        return 0;
    if (h->kind == OTASIM_JK_DONE) {
        r = find_call(j, h->pid, h->seq);
        if (r) {
            r->done = 1;
            r->result = h->result;
            if (h->ino)
                r->ino = h->ino;
        }
        return 0;
    }
    if (h->kind != OTASIM_JK_CALL && h->kind != OTASIM_JK_EVENT)
        return 0;
    rc = grow_recs(j, p, cap);
    if (rc < 0)
        return rc;
    r = &j->v[j->n];
    o = &p->offs[j->n * 3];
    memset(r, 0, sizeof(*r));
    r->seq = h->seq;
    r->op = (enum otasim_op)h->op;
    r->is_dir = h->is_dir;
    r->ino = h->ino;
    r->off = h->off;
    r->len = h->len;
    r->pid = h->pid;
    r->flags = h->flags;
    r->mode = h->mode;
    r->victim_ino = h->victim_ino;
    r->dir_ino = h->dir_ino;
    r->dir2_ino = h->dir2_ino;
    r->old_size = h->old_size;
    r->img_len = h->img_len;
    r->img_off = h->img_len ? pos + OTASIM_J_ALIGN((uint64_t)sizeof(*h) + h->path_len + 1 +
                                                   h->path2_len + 1 + h->text_len + 1)
                            : 0;
    if (h->kind == OTASIM_JK_EVENT || (h->flags & OTASIM_REC_DONE)) {
        r->done = 1;
        r->result = h->kind == OTASIM_JK_EVENT ? 0 : h->result;
    }
    if ((rc = arena_add(p, s, h->path_len, &o[0])) < 0 ||
        (rc = arena_add(p, s + h->path_len + 1, h->path2_len, &o[1])) < 0 ||
        (rc = arena_add(p, s + h->path_len + 1 + h->path2_len + 1, h->text_len, &o[2])) < 0)
        return rc;
    if ((h->kind == OTASIM_JK_CALL || h->op == OTASIM_OP_FAIL) && h->seq > j->calls)
        j->calls = h->seq;
    j->n++;
    return 0;
}

int otasim_journal_load(const char *path, struct otasim_journal **ret, struct ota_err *err)
{
    struct otasim_journal *j = NULL;
    struct jpriv *p = NULL;
    struct otasim_jhdr h;
    struct stat st;
    unsigned char *m = MAP_FAILED;
    uint64_t pos = 0, n = 0;
    size_t cap = 0, i;
    int fd = -1, r = 0;

    j = calloc(1, sizeof(*j));
    p = calloc(1, sizeof(*p));
    if (!j || !p) {
        r = ota_err_set(err, ENOMEM, "journal %s: out of memory", path);
        goto cleanup;
    }
    j->priv = p;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        r = ota_err_set(err, errno, "journal %s: %s", path, strerror(errno));
        goto cleanup;
    }
    n = (uint64_t)st.st_size;
    if (n > 0) {
        m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            r = ota_err_set(err, errno, "journal %s: mmap: %s", path, strerror(errno));
            goto cleanup;
        }
    }
    while (pos < n) {
        if (!record_at(m, n, pos, &h)) {
            /* Torn (the writer was killed inside a write): look for the next
             * whole record; at the end of the file there is none. */
            const unsigned char *q = m + pos + 1;
            uint32_t magic = OTASIM_J_MAGIC;
            for (;;) {
                q = memmem(q, (size_t)(m + n - q), &magic, sizeof(magic));
                if (!q || record_at(m, n, (uint64_t)(q - m), &h))
                    break;
                q++;
            }
            if (!q)
                break;
            pos = (uint64_t)(q - m);
        }
        r = add_record(j, p, &cap, m, pos, &h);
        if (r < 0) {
            r = ota_err_set(err, -r, "journal %s: out of memory", path);
            goto cleanup;
        }
        pos += h.size;
    }
    for (i = 0; i < j->n; i++) {
        j->v[i].path = p->arena ? p->arena + p->offs[i * 3] : "";
        j->v[i].path2 = p->arena ? p->arena + p->offs[i * 3 + 1] : "";
        j->v[i].text = p->arena ? p->arena + p->offs[i * 3 + 2] : "";
    }
    free(p->offs);
    p->offs = NULL;
    *ret = j;
    j = NULL;
cleanup:
    if (m != MAP_FAILED)
        munmap(m, n);
    if (fd >= 0)
        close(fd);
    otasim_journal_free(j);
    return r;
}

void otasim_journal_free(struct otasim_journal *j)
{
    struct jpriv *p;

    if (!j)
        return;
    p = j->priv;
    if (p) {
        free(p->arena);
        free(p->offs);
        free(p);
    }
    free(j->v);
    free(j);
}

int otasim_interpose_path(char *buf, size_t cap, struct ota_err *err)
{
    static const char *const rel[] = {"libotasim-interpose.so", "../sim/libotasim-interpose.so",
                                      "sim/libotasim-interpose.so"};
    const char *env = getenv("OTASIM_INTERPOSE");
    char exe[PATH_MAX], cand[PATH_MAX + 64], real[PATH_MAX];
    char *slash;
    ssize_t n;
    size_t i;

    if (env && *env) {
        if (access(env, R_OK) < 0)
            return ota_err_set(err, errno, "OTASIM_INTERPOSE=%s: %s", env, strerror(errno));
        if (strlen(env) >= cap)
            return ota_err_set(err, ENAMETOOLONG, "OTASIM_INTERPOSE=%s: too long", env);
        strcpy(buf, env);
        return 0;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return ota_err_set(err, errno, "/proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(cand, sizeof(cand), "%s/%s", exe, rel[i]);
        if (access(cand, R_OK) < 0 || !realpath(cand, real))
            continue;
        if (strlen(real) >= cap)
            return ota_err_set(err, ENAMETOOLONG, "%s: too long", real);
        strcpy(buf, real);
        return 0;
    }
    return ota_err_set(err, ENOENT,
                       "libotasim-interpose.so not found next to %s (set OTASIM_INTERPOSE)", exe);
}

int otasim_journal_unmodelled(const char *path, char *buf, size_t cap)
{
    struct otasim_journal *j = NULL;
    int found = 0;

    if (cap)
        buf[0] = '\0';
    if (otasim_journal_load(path, &j, NULL) < 0)
        return 0;
    for (size_t i = 0; i < j->n && !found; i++)
        if (j->v[i].op == OTASIM_OP_UNMODELLED) {
            snprintf(buf, cap, "%s", j->v[i].text);
            found = 1;
        }
    otasim_journal_free(j);
    return found;
}

/* The seq of the journal's last record, from its tail (as the interposer
 * finds it); 0 for an empty or missing journal; the whole journal read when
 * the tail is torn. */
static int last_seq(const char *path, uint64_t *ret, struct ota_err *err)
{
    struct otasim_jhdr h;
    struct otasim_jtail t;
    struct otasim_journal *j = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

    *ret = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : ota_err_set(err, errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= sizeof(h) + sizeof(t) &&
        pread(fd, &t, sizeof(t), st.st_size - (off_t)sizeof(t)) == (ssize_t)sizeof(t) &&
        t.magic == OTASIM_J_TAIL && t.size <= (uint64_t)st.st_size &&
        pread(fd, &h, sizeof(h), st.st_size - (off_t)t.size) == (ssize_t)sizeof(h) &&
        h.magic == OTASIM_J_MAGIC && h.size == t.size) {
        *ret = h.seq;
    } else if (fstat(fd, &st) == 0 && st.st_size > 0) {
        if ((r = otasim_journal_load(path, &j, err)) == 0) {
            *ret = j->calls;
            otasim_journal_free(j);
        }
    }
    close(fd);
    return r;
}

int otasim_journal_event(const char *path, enum otasim_op op, const char *text, struct ota_err *err)
{
    struct otasim_jhdr h;
    struct otasim_jtail t;
    size_t tl = strlen(text), head = sizeof(h) + 1 + 1 + tl + 1, al = OTASIM_J_ALIGN(head);
    char *buf;
    uint64_t seq = 0;
    int fd, r = 0;

    if ((r = last_seq(path, &seq, err)) < 0)
        return r;
    buf = calloc(1, al + sizeof(t));
    if (!buf)
        return ota_err_set(err, ENOMEM, "out of memory");
    memset(&h, 0, sizeof(h));
    h.magic = OTASIM_J_MAGIC;
    h.size = (uint32_t)(al + sizeof(t));
    h.kind = OTASIM_JK_EVENT;
    h.op = (uint8_t)op;
    h.pid = (uint32_t)getpid();
    h.text_len = (uint32_t)tl;
    h.seq = seq;
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h) + 2, text, tl);
    t.size = h.size;
    t.magic = OTASIM_J_TAIL;
    memcpy(buf + al, &t, sizeof(t));
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        r = ota_err_set(err, errno, "%s: %s", path, strerror(errno));
    } else {
        ssize_t w = write(fd, buf, al + sizeof(t));
        if (w != (ssize_t)(al + sizeof(t)))
            r = ota_err_set(err, w < 0 ? errno : EIO, "%s: %s", path,
                            w < 0 ? strerror(errno) : "short write");
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return r;
}
