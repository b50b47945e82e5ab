/* The persistence journal: what the LD_PRELOAD interposer (libotasim-interpose.so,
 * sim/interpose/) records of a device process's mutating calls, and how the
 * simulator reads it back.
 *
 * The interposer is configured by its environment (read once, at load):
 *   OTASIM_ROOT        absolute path of the device tree. Only calls on paths
 *                      under it are recorded and counted; ROOT/.sim/ (journal,
 *                      stash) is never counted.
 *   OTASIM_JOURNAL     journal file (appended; created if missing; default
 *                      ROOT/.sim/journal). Give each boot a fresh journal: a
 *                      rebuild undoes everything in it that is not durable.
 *   OTASIM_CRASH_AT=N  after the N-th counted call has completed and been
 *                      recorded: record CRASH, then act per OTASIM_CRASH_MODE.
 *   OTASIM_CRASH_STATE=NAME[#K]  the same right after the process wrote its
 *                      K-th (default 1st) "OTA-STATE {...}" line whose "to"
 *                      is NAME to fd 2 (the agent writes each line with one
 *                      write(2)).
 *   OTASIM_CRASH_MODE  "power" (default): kill(0, SIGKILL), every process of
 *                      the device's process group at once; "process": only
 *                      this process.
 *   OTASIM_FAIL_ERRNO  ENOSPC or EIO: counted calls fail with it instead of
 *                      running (recorded as FAIL), when all of these hold:
 *   OTASIM_FAIL_FROM=N     the call's number is >= N (default 1);
 *   OTASIM_FAIL_STATE=NAME armed only after the state line to NAME (default:
 *                          armed from the start);
 *   OTASIM_FAIL_PATH=GLOB  fnmatch(3) on the call's absolute path (default *);
 *   OTASIM_FAIL_COUNT=K    at most K calls fail (default: no limit).
 *                      ENOSPC fails calls that allocate (write, pwrite, create,
 *                      mkdir, symlink, link, rename, ftruncate growing); EIO
 *                      fails writes and fsync/fdatasync. An fsync failed with
 *                      EIO also drops, at once, the process's writes and
 *                      truncates of that file since its last fsync or sync
 *                      (their before-images are written back): Linux may drop
 *                      the pages whose writeback failed, and a later fsync
 *                      returns 0. The power model counts them lost too.
 *
 * Counted ("mutating") calls: open/openat/creat with O_CREAT or O_TRUNC (on a
 * regular file), write/pwrite/writev/pwritev on such files, ftruncate,
 * rename/renameat/renameat2, link/linkat, symlink/symlinkat,
 * unlink/unlinkat, mkdir/mkdirat, rmdir, fsync, fdatasync, sync, syncfs, and
 * the 64-bit aliases. Each gets the next number (1, 2, ...), in the order the
 * process made them, except that consecutive writes to one file with no other
 * counted call and no network send between them share one number (a crash
 * anywhere in such a burst leaves the same durable state; a download's
 * chunking must not shift the numbers of everything after it). A trigger at
 * that number fires after the burst's first write. A call that changes nothing (open O_CREAT of a
 * file that exists, without O_TRUNC; a write of 0 bytes; mkdir, link, symlink or O_CREAT|O_EXCL
 * onto a name that exists; unlink, rmdir or rename of a name that does not) is not counted. A
 * process continues the numbering of the journal it appends to, so sequential processes sharing one
 * journal (one at a time) number their calls as one sequence; children of a journaled process are
 * not journaled (fork without exec: neither).
 *
 * Also journaled: fallocate/posix_fallocate growing a file (as TRUNC; with
 * FALLOC_FL_KEEP_SIZE nothing visible changes), copy_file_range, sendfile
 * and splice into a file (as WRITE), O_TMPFILE files linked in (as LINK),
 * and chmod/fchmod/fchmodat, chown/fchown/lchown/fchownat, utimensat/
 * futimens/utimes/utime (as ATTR: not counted, so crash points keep their
 * numbers; made durable by an fsync of the inode, as its data). Every other
 * mutation under ROOT that the interposer sees but the model cannot represent
 * - a write through a stdio FILE (fopen/freopen/fdopen for writing: glibc
 * writes through internal calls), a shared writable mmap (but SQLite's
 * -shm, which SQLite rebuilds after a crash), fallocate that punches, zeroes,
 * collapses or inserts, a rename or link between ROOT and the outside - is
 * an UNMODELLED event, and the harness ends the trial as an error. Not seen
 * at all: raw syscall(2), io_uring, and calls from inside libc itself
 * (another libc function that writes, such as a stdio write or
 * copy_file_range's fallback): what is not seen is as if made durable.
 *
 * So that a power cut can be rebuilt, the interposer keeps before-images of
 * bytes that a write or truncate overwrites or cuts, and before an unlink or
 * a rename over an existing name it hard-links the old file into
 * ROOT/.sim/stash/ (the power model needs it back if the change is undone).
 */
#ifndef OTASIM_JOURNAL_H
#define OTASIM_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum otasim_op {
    OTASIM_OP_CREATE, /* open(O_CREAT) made a new file: path */
    OTASIM_OP_TRUNC,  /* O_TRUNC, ftruncate, truncate: path, ino, off = new size, len = bytes cut */
    OTASIM_OP_WRITE,  /* write/pwrite: path (of the fd), ino, off, len */
    OTASIM_OP_FSYNC,  /* fsync/fdatasync of a file or directory: path, ino, is_dir */
    OTASIM_OP_SYNC,   /* sync/syncfs: everything before it is durable */
    OTASIM_OP_RENAME, /* path -> path2 */
    OTASIM_OP_LINK,   /* path (existing) -> path2 (new name) */
    OTASIM_OP_SYMLINK, /* path = the new link, path2 = its target text */
    OTASIM_OP_UNLINK,  /* path */
    OTASIM_OP_MKDIR,   /* path */
    OTASIM_OP_RMDIR,   /* path */
    OTASIM_OP_ATTR,    /* chmod/chown/utimens family: path, ino; the old attributes:
                          mode, old_size = uid << 32 | gid, off/len = atime/mtime in ns;
                          flags OTASIM_REC_ATTR_* say which the call changes */
    /* Events: not counted (seq = the number of the last counted call). */
    OTASIM_OP_STATE,      /* text = the agent's OTA-STATE JSON */
    OTASIM_OP_NET,        /* the process sent on an inet socket; text = first bytes */
    OTASIM_OP_CRASH,      /* a crash trigger fired; text = "power" or "process" */
    OTASIM_OP_FAIL,       /* call seq failed by injection; text = errno name, path */
    OTASIM_OP_UNMODELLED, /* a mutation under ROOT the power model cannot represent; text =
                             "CALL PATH". The harness ends the trial as an error. */
    OTASIM_OP_MAX
};

extern const char *const otasim_op_names[OTASIM_OP_MAX];

/* One record as read back. Strings are "" when absent, never NULL. */
struct otasim_rec {
    uint64_t seq; /* counted calls: 1..N; events: the last number before */
    enum otasim_op op;
    int result;   /* 0 or -errno the real call returned */
    int done;     /* 1 once the call returned (0: killed inside it) */
    int is_dir;   /* FSYNC of a directory; MKDIR/RMDIR; RENAME of a dir */
    uint64_t ino; /* inode of the file written/synced/created */
    uint64_t off, len;
    const char *path; /* absolute */
    const char *path2;
    const char *text;
    /* Undo details for the power model (power.c); other readers need not look. */
    uint32_t pid;        /* the process that made the call */
    uint32_t flags;      /* OTASIM_REC_* */
    uint32_t mode;       /* MKDIR/RMDIR, or a directory victim: permission bits */
    uint64_t victim_ino; /* RENAME/UNLINK: the inode that lost its name */
    uint64_t dir_ino;    /* parent directory of path (as it was at the call) */
    uint64_t dir2_ino;   /* parent directory of path2 (RENAME, LINK) */
    uint64_t old_size;   /* WRITE/TRUNC: the file's size before the call */
    uint64_t img_off;    /* WRITE/TRUNC: before-image at this offset of the */
    uint64_t img_len;    /*   journal file: bytes [off, off+img_len) as they were */
};

/* otasim_rec.flags */
#define OTASIM_REC_VICTIM_FILE 0x1u  /* the old file is kept at ROOT/.sim/stash/<seq>.<pid> */
#define OTASIM_REC_VICTIM_LINK 0x2u  /* the old name was a symlink; its target is text */
#define OTASIM_REC_VICTIM_DIR  0x4u  /* the old name was an empty directory (mode) */
#define OTASIM_REC_DONE        0x8u  /* on disk: the call record already holds the result */
#define OTASIM_REC_EXCHANGE    0x10u /* RENAME: renameat2(RENAME_EXCHANGE) */
#define OTASIM_REC_ATTR_MODE   0x20u /* ATTR: the call changes the mode */
#define OTASIM_REC_ATTR_OWNER  0x40u /* ATTR: ... the owner */
#define OTASIM_REC_ATTR_TIMES  0x80u /* ATTR: ... the times */

struct otasim_journal {
    struct otasim_rec *v;
    size_t n;
    uint64_t calls; /* counted calls in the journal (the largest seq) */
    void *priv;     /* owned storage */
};

/* Reads a journal file. A torn last record (the process was killed while
 * writing it) is dropped. */
int otasim_journal_load(const char *path, struct otasim_journal **ret,
                        struct ota_err *err) OTA_MUST;
void otasim_journal_free(struct otasim_journal *j);

/* Appends one event record (OTASIM_OP_STATE, OTASIM_OP_CRASH) to the
 * journal at path, numbered after its last counted call, in one write: what
 * the interposer writes for an event, for a harness driver that sees a
 * device's states outside the interposed processes (agent_swupdate.c). */
int otasim_journal_event(const char *path, enum otasim_op op, const char *text,
                         struct ota_err *err) OTA_MUST;

/* The first UNMODELLED event of the journal at path, as "CALL PATH" into
 * buf: 1 if there is one, 0 if not (or the journal cannot be read). */
int otasim_journal_unmodelled(const char *path, char *buf, size_t cap);

/* Path of the interposer library next to the running ota-sim, or from
 * $OTASIM_INTERPOSE. */
int otasim_interpose_path(char *buf, size_t cap, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
