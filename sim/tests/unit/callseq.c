/* otasim-callseq: performs a script of file-system calls with plain libc
 * calls, for sim_test_power to run under the interposer. Each argument is one
 * command; paths are relative to the working directory or absolute:
 *   open P FLAGS [MODE]  FLAGS of r w c(reat) t(runc) a(ppend) x(cl) d(ir)
 *   close P | write P TEXT | pwrite P OFF TEXT | ftruncate P LEN | fsync P |
 *   fdatasync P | fsyncdir D | creat P | truncate P LEN | rename A B |
 *   link A B | symlink TARGET LINK | unlink P | mkdir P | rmdir P | remove P |
 *   renameat D A B | unlinkat D NAME | mkdirat D NAME | symlinkat TARGET D NAME |
 *   sync | state NAME | crash | log TEXT (a line through __fprintf_chk on stdout,
 *   as a fortified build's fprintf logs: swupdate's notifier) |
 *   sqlopen DB | sql STATEMENT | sqlclose | net PORT TEXT |
 *   fallocate P OFF LEN MODE (0, keep or punch) | posix_fallocate P OFF LEN |
 *   copyrange SRC DST | sendfile SRC DST | splice DST TEXT (through a pipe) |
 *   mmapw P TEXT (shared writable mapping) | fopenw P TEXT | fdopenw P TEXT |
 *   fchmod P MODE | chmod P MODE | utimens P SECONDS | chown P |
 *   tmpfile DIR NAME TEXT (O_TMPFILE, written, linked in as DIR/NAME) |
 *   thread (the rest of the script runs in a second thread; main joins it) |
 *   fork (a child that waits in pause() until the script ends or a power cut
 *   kills the group: SWUpdate's helper process) | forkwrite P TEXT (a forked
 *   child creates P with TEXT and exits; waited for)
 * (SRC, DST, P of the fd calls: names given to open before)
 * TEXT is the rest of the command. A failing command prints
 * "ERR <n> <command> <errno>" on stdout and the script goes on; the exit
 * status is the number of failures. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXOPEN 64

static struct {
    char path[512];
    int fd;
} opened[MAXOPEN];

static sqlite3 *db;

static int fd_of(const char *p)
{
    int i;

    for (i = 0; i < MAXOPEN; i++)
        if (opened[i].fd > 0 && strcmp(opened[i].path, p) == 0)
            return opened[i].fd;
    errno = EBADF;
    return -1;
}

static int remember(const char *p, int fd)
{
    int i;

    if (fd < 0)
        return -1;
    for (i = 0; i < MAXOPEN; i++) {
        if (opened[i].fd <= 0) {
            snprintf(opened[i].path, sizeof(opened[i].path), "%s", p);
            opened[i].fd = fd;
            return 0;
        }
    }
    errno = EMFILE;
    return -1;
}

static int forget(const char *p)
{
    int i;

    for (i = 0; i < MAXOPEN; i++) {
        if (opened[i].fd > 0 && strcmp(opened[i].path, p) == 0) {
            int fd = opened[i].fd;
            opened[i].fd = 0;
            return close(fd);
        }
    }
    errno = EBADF;
    return -1;
}

static int open_flags(const char *s)
{
    int f = 0, rw = 0, w = 0;

    for (; *s; s++) {
        switch (*s) {
        case 'r':
            rw = 1;
            break;
        case 'w':
            w = 1;
            break;
        case 'c':
            f |= O_CREAT;
            break;
        case 't':
            f |= O_TRUNC;
            break;
        case 'a':
            f |= O_APPEND;
            break;
        case 'x':
            f |= O_EXCL;
            break;
        case 'd':
            f |= O_DIRECTORY;
            break;
        }
    }
    if (rw && w)
        f |= O_RDWR;
    else if (w)
        f |= O_WRONLY;
    return f | O_CLOEXEC;
}

static int with_dir(const char *d, int (*fn)(int, const char *, const char *), const char *a,
                    const char *b)
{
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r, e;

    if (dfd < 0)
        return -1;
    r = fn(dfd, a, b);
    e = errno;
    close(dfd);
    errno = e;
    return r;
}

static int do_renameat(int dfd, const char *a, const char *b)
{
    return renameat(dfd, a, dfd, b);
}

static int do_unlinkat(int dfd, const char *a, const char *b)
{
    return unlinkat(dfd, a, 0);
}

static int do_mkdirat(int dfd, const char *a, const char *b)
{
    return mkdirat(dfd, a, 0755);
}

static int do_symlinkat(int dfd, const char *a, const char *b)
{
    return symlinkat(b, dfd, a);
}

static int fsync_dir(const char *d)
{
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r, e;

    if (fd < 0)
        return -1;
    r = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return r;
}

static int net_send(const char *port, const char *text)
{
    struct sockaddr_in a;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = -1, e;

    if (s < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
        r = send(s, text, strlen(text), MSG_NOSIGNAL) < 0 ? -1 : 0;
    e = errno;
    close(s);
    errno = e;
    return r;
}

static int sql(const char *stmt)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, stmt, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        printf("SQL %s: %s\n", stmt, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        errno = EIO;
        return -1;
    }
    return 0;
}

/* Splits cmd into at most max words; the last takes the rest. */
static int split(char *cmd, char **w, int max)
{
    int n = 0;

    while (*cmd && n < max) {
        while (*cmd == ' ')
            cmd++;
        if (!*cmd)
            break;
        w[n++] = cmd;
        if (n == max)
            break;
        while (*cmd && *cmd != ' ')
            cmd++;
        if (*cmd)
            *cmd++ = '\0';
    }
    return n;
}

/* Words each command takes after its name (the last one takes the rest). */
static int nwords(const char *c)
{
    static const struct {
        const char *name;
        int n;
    } t[] = {{"open", 3},      {"write", 2},     {"pwrite", 3},
             {"ftruncate", 2}, {"truncate", 2},  {"rename", 2},
             {"link", 2},      {"symlink", 2},   {"renameat", 3},
             {"unlinkat", 2},  {"mkdirat", 2},   {"symlinkat", 3},
             {"net", 2},       {"fallocate", 4}, {"posix_fallocate", 3},
             {"copyrange", 2}, {"sendfile", 2},  {"splice", 2},
             {"mmapw", 2},     {"fopenw", 2},    {"fdopenw", 2},
             {"fchmod", 2},    {"chmod", 2},     {"utimens", 2},
             {"tmpfile", 3}};
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(c, t[i].name) == 0)
            return t[i].n;
    return 1;
}

/* The calls beyond open/write/rename (power model: journaled or unmodelled).
 * Returns 1 if cmd is none of them. */
static int run_more(char **w, int n)
{
    int fd, out, p[2], r, e;
    struct stat st;
    char link[64];

    if (strcmp(w[0], "chown") == 0)
        return chown(w[1], getuid(), getgid());
    if (n < 3)
        return 1;
    if (strcmp(w[0], "fchmod") == 0)
        return (fd = fd_of(w[1])) < 0 ? -1 : fchmod(fd, (mode_t)strtol(w[2], NULL, 8));
    if (strcmp(w[0], "chmod") == 0)
        return chmod(w[1], (mode_t)strtol(w[2], NULL, 8));
    if (strcmp(w[0], "utimens") == 0) {
        struct timespec ts[2] = {{atol(w[2]), 0}, {atol(w[2]), 0}};
        return utimensat(AT_FDCWD, w[1], ts, 0);
    }
    if (strcmp(w[0], "copyrange") == 0 || strcmp(w[0], "sendfile") == 0) {
        fd = fd_of(w[1]);
        out = fd_of(w[2]);
        if (fd < 0 || out < 0 || fstat(fd, &st) < 0)
            return -1;
        if (w[0][0] == 'c')
            return copy_file_range(fd, NULL, out, NULL, (size_t)st.st_size, 0) < 0 ? -1 : 0;
        return sendfile(out, fd, NULL, (size_t)st.st_size) < 0 ? -1 : 0;
    }
    if (strcmp(w[0], "splice") == 0) {
        if ((out = fd_of(w[1])) < 0 || pipe(p) < 0)
            return -1;
        r = write(p[1], w[2], strlen(w[2])) < 0 ? -1 : 0;
        if (r == 0)
            r = splice(p[0], NULL, out, NULL, strlen(w[2]), 0) < 0 ? -1 : 0;
        e = errno;
        close(p[0]);
        close(p[1]);
        errno = e;
        return r;
    }
    if (strcmp(w[0], "mmapw") == 0) {
        char *m;
        if ((fd = fd_of(w[1])) < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size < strlen(w[2]))
            return errno = EINVAL, -1;
        m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            return -1;
        memcpy(m, w[2], strlen(w[2]));
        r = msync(m, (size_t)st.st_size, MS_SYNC);
        munmap(m, (size_t)st.st_size);
        return r;
    }
    if (strcmp(w[0], "fopenw") == 0) {
        FILE *f = fopen(w[1], "w");
        if (!f)
            return -1;
        fputs(w[2], f);
        return fclose(f) == 0 ? 0 : -1;
    }
    if (strcmp(w[0], "fdopenw") == 0) {
        FILE *f;
        if ((fd = fd_of(w[1])) < 0 || (fd = dup(fd)) < 0 || !(f = fdopen(fd, "a")))
            return -1;
        fputs(w[2], f);
        return fclose(f) == 0 ? 0 : -1;
    }
    if (n < 4)
        return 1;
    if (strcmp(w[0], "posix_fallocate") == 0) {
        if ((fd = fd_of(w[1])) < 0)
            return -1;
        r = posix_fallocate(fd, atol(w[2]), atol(w[3]));
        return r ? (errno = r, -1) : 0;
    }
    if (strcmp(w[0], "tmpfile") == 0) {
        fd = open(w[1], O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        r = write(fd, w[3], strlen(w[3])) < 0 ? -1 : 0;
        if (r == 0) {
            char name[512];
            snprintf(name, sizeof(name), "%s/%s", w[1], w[2]);
            r = linkat(AT_FDCWD, link, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
        }
        e = errno;
        close(fd);
        errno = e;
        return r;
    }
    if (n < 5)
        return 1;
    if (strcmp(w[0], "fallocate") == 0) {
        int mode = strcmp(w[4], "keep") == 0    ? FALLOC_FL_KEEP_SIZE
                   : strcmp(w[4], "punch") == 0 ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                                : 0;
        return (fd = fd_of(w[1])) < 0 ? -1 : fallocate(fd, mode, atol(w[2]), atol(w[3]));
    }
    return 1;
}

static int run(char *line)
{
    char *w[6] = {0};
    char buf[256];
    int n = split(line, w, 2), fd;

    if (n == 0)
        return 0;
    if (strcmp(w[0], "sync") == 0) {
        sync();
        return 0;
    }
    if (strcmp(w[0], "crash") == 0)
        return kill(0, SIGKILL);
    if (strcmp(w[0], "sqlclose") == 0) {
        int rc = sqlite3_close(db);
        db = NULL;
        return rc == SQLITE_OK ? 0 : -1;
    }
    if (n < 2)
        return errno = EINVAL, -1;
    if (strcmp(w[0], "sql") == 0)
        return sql(w[1]);
    if (strcmp(w[0], "log") == 0) {
        extern int __fprintf_chk(FILE *, int, const char *, ...);
        return __fprintf_chk(stdout, 1, "[INFO ] : %s\n", w[1]) > 0 ? 0 : -1;
    }
    if (strcmp(w[0], "state") == 0) {
        int l = snprintf(buf, sizeof(buf), "OTA-STATE {\"from\":\"x\",\"to\":\"%s\"}\n", w[1]);
        return write(2, buf, (size_t)l) == l ? 0 : -1;
    }
    n = 1 + split(w[1], w + 1, nwords(w[0]));
    if ((fd = run_more(w, n)) != 1)
        return fd;
    if (strcmp(w[0], "open") == 0)
        return remember(w[1], open(w[1], open_flags(n > 2 ? w[2] : "r"),
                                   n > 3 ? (mode_t)strtol(w[3], NULL, 8) : 0644));
    if (strcmp(w[0], "creat") == 0)
        return remember(w[1], creat(w[1], 0644));
    if (strcmp(w[0], "close") == 0)
        return forget(w[1]);
    if (strcmp(w[0], "sqlopen") == 0)
        return sqlite3_open(w[1], &db) == SQLITE_OK ? 0 : (errno = EIO, -1);
    if (strcmp(w[0], "fsync") == 0 || strcmp(w[0], "fdatasync") == 0) {
        fd = fd_of(w[1]);
        if (fd < 0)
            return -1;
        return w[0][1] == 's' ? fsync(fd) : fdatasync(fd);
    }
    if (strcmp(w[0], "fsyncdir") == 0)
        return fsync_dir(w[1]);
    if (strcmp(w[0], "unlink") == 0)
        return unlink(w[1]);
    if (strcmp(w[0], "rmdir") == 0)
        return rmdir(w[1]);
    if (strcmp(w[0], "remove") == 0)
        return remove(w[1]);
    if (strcmp(w[0], "mkdir") == 0)
        return mkdir(w[1], 0755);
    if (n < 3)
        return errno = EINVAL, -1;
    if (strcmp(w[0], "write") == 0) {
        fd = fd_of(w[1]);
        if (fd < 0)
            return -1;
        return write(fd, w[2], strlen(w[2])) == (ssize_t)strlen(w[2]) ? 0 : -1;
    }
    if (strcmp(w[0], "net") == 0)
        return net_send(w[1], w[2]);
    if (strcmp(w[0], "ftruncate") == 0) {
        fd = fd_of(w[1]);
        return fd < 0 ? -1 : ftruncate(fd, atol(w[2]));
    }
    if (strcmp(w[0], "truncate") == 0)
        return truncate(w[1], atol(w[2]));
    if (strcmp(w[0], "rename") == 0)
        return rename(w[1], w[2]);
    if (strcmp(w[0], "link") == 0)
        return link(w[1], w[2]);
    if (strcmp(w[0], "symlink") == 0)
        return symlink(w[1], w[2]);
    if (strcmp(w[0], "unlinkat") == 0)
        return with_dir(w[1], do_unlinkat, w[2], NULL);
    if (strcmp(w[0], "mkdirat") == 0)
        return with_dir(w[1], do_mkdirat, w[2], NULL);
    if (n < 4)
        return errno = EINVAL, -1;
    if (strcmp(w[0], "pwrite") == 0) {
        fd = fd_of(w[1]);
        if (fd < 0)
            return -1;
        return pwrite(fd, w[3], strlen(w[3]), atol(w[2])) == (ssize_t)strlen(w[3]) ? 0 : -1;
    }
    if (strcmp(w[0], "renameat") == 0)
        return with_dir(w[1], do_renameat, w[2], w[3]);
    if (strcmp(w[0], "symlinkat") == 0)
        return with_dir(w[2], do_symlinkat, w[3], w[1]);
    return errno = EINVAL, -1;
}

static int forked_write(const char *p, const char *text)
{
    int st = 0;
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        _exit(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) ? 0 : 1);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : (errno = EIO, -1);
}

static struct {
    int argc;
    char **argv;
    pid_t child; /* of "fork" */
} sc;

/* Runs the script from argument i on; the number of failed commands. */
static int script(int i);

static void *script_thread(void *arg)
{
    return (void *)(intptr_t)script((int)(intptr_t)arg);
}

static int script(int i)
{
    int bad = 0;
    pthread_t t;
    void *res;

    for (; i < sc.argc; i++) {
        char *line = strdup(sc.argv[i]), *w[2];
        if (!line)
            return 100;
        errno = 0;
        if (strcmp(line, "thread") == 0) {
            free(line);
            if (pthread_create(&t, NULL, script_thread, (void *)(intptr_t)(i + 1)) != 0 ||
                pthread_join(t, &res) != 0)
                return bad + 1;
            return bad + (int)(intptr_t)res;
        }
        if (strcmp(line, "fork") == 0) {
            sc.child = fork();
            if (sc.child == 0) {
                pause();
                _exit(0);
            }
            free(line);
            bad += sc.child < 0;
            continue;
        }
        if (strncmp(line, "forkwrite ", 10) == 0 && (w[0] = strtok(line + 10, " ")) &&
            (w[1] = strtok(NULL, ""))) {
            if (forked_write(w[0], w[1]) < 0)
                printf("ERR %d %s %s\n", i, sc.argv[i], strerror(errno)), bad++;
        } else if (run(line) < 0) {
            printf("ERR %d %s %s\n", i, sc.argv[i], strerror(errno));
            bad++;
        }
        fflush(stdout);
        free(line);
    }
    return bad;
}

int main(int argc, char **argv)
{
    int bad;

    sc.argc = argc;
    sc.argv = argv;
    bad = script(1);
    if (sc.child > 0) {
        kill(sc.child, SIGKILL);
        waitpid(sc.child, NULL, 0);
    }
    if (db)
        sqlite3_close(db);
    return bad > 99 ? 99 : bad;
}
