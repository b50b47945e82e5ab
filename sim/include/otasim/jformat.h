/* The journal's on-disk format, shared by the interposer (writer) and
 * sim/src/journal.c (reader). Private to the simulator.
 *
 * The file is a sequence of records, each one write(2) in the byte order of
 * the machine:
 *   struct otasim_jhdr | path NUL | path2 NUL | text NUL | pad to 8 |
 *   before-image (img_len bytes) | pad to 8 | struct otasim_jtail
 * hdr.size counts all of it; the tail repeats the size so the last record can
 * be found from the end, and a record whose tail does not match is torn.
 *
 * A counted call writes a CALL record before it runs (everything the undo
 * needs), then a DONE record (same pid and seq) with the result. A call that
 * failed by injection writes one CALL record with OTASIM_REC_DONE set, then a
 * FAIL event. Events (STATE, NET, CRASH, FAIL) are single EVENT records. */
#ifndef OTASIM_JFORMAT_H
#define OTASIM_JFORMAT_H

#include <stdint.h>
#include "otasim/journal.h"

#define OTASIM_J_MAGIC 0x314a534fu /* "OSJ1" */
#define OTASIM_J_TAIL  0x544a534fu /* "OSJT" */

enum otasim_jkind {
    OTASIM_JK_CALL = 1,
    OTASIM_JK_DONE = 2,
    OTASIM_JK_EVENT = 3,
};

/* hdr.flags: the OTASIM_REC_* flags of otasim/journal.h. */

struct otasim_jhdr {
    uint32_t magic;
    uint32_t size; /* whole record, multiple of 8 */
    uint8_t kind;  /* enum otasim_jkind */
    uint8_t op;    /* enum otasim_op */
    uint8_t is_dir;
    uint8_t pad;
    uint32_t flags;
    int32_t result; /* DONE: 0 or -errno */
    uint32_t pid;
    uint32_t mode;                          /* MKDIR/RMDIR/dir victim: permission bits */
    uint32_t path_len, path2_len, text_len; /* without the NUL */
    uint64_t img_len;
    uint64_t seq;
    uint64_t ino;        /* the inode the call works on (DONE: the one it made) */
    uint64_t victim_ino; /* rename/unlink: the inode that loses its name */
    uint64_t dir_ino;    /* parent directory of path */
    uint64_t dir2_ino;   /* parent directory of path2 (rename, link) */
    uint64_t off, len;
    uint64_t old_size; /* WRITE/TRUNC: file size before the call */
};

struct otasim_jtail {
    uint32_t size;
    uint32_t magic;
};

_Static_assert(sizeof(struct otasim_jhdr) == 112, "journal header layout");
_Static_assert(sizeof(struct otasim_jtail) == 8, "journal tail layout");

#define OTASIM_J_ALIGN(n) (((n) + 7u) & ~(uint64_t)7u)

#endif
