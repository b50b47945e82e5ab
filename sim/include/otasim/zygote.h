/* The agent zygote (sim/interpose/zygote.c serves, sim/src/zygote.c asks):
 * the request format, shared by both sides. Private to the simulator. */
#ifndef OTASIM_ZYGOTE_H
#define OTASIM_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>

#define OTASIM_ZYGOTE_FD_ENV      "OTASIM_ZYGOTE_FD"
#define OTASIM_ZYGOTE_PRELOAD_ENV "OTASIM_ZYGOTE_PRELOAD"
#define OTASIM_ZYGOTE_EXE_ENV     "OTASIM_ZYGOTE_EXE" /* the program it must be */

#define OTASIM_ZREQ_MAGIC 0x5a59474fu /* "OGYZ" */
#define OTASIM_ZREQ_MAX   (128 * 1024)
#define OTASIM_ZREQ_OUT   1u /* an fd for stdout follows the reply pipe */
#define OTASIM_ZREQ_ERR   2u /* an fd for stderr follows (after stdout's) */

/* One request: this header, then argc argv strings and envc environment
 * strings, each NUL-terminated; len counts all of it. The fds (SCM_RIGHTS):
 * the reply pipe's write end, then stdout and stderr as flags says. */
struct otasim_zreq {
    uint32_t magic;
    uint32_t len;
    uint32_t flags;
    int32_t pgid; /* the child's process group; -1: the zygote's */
    uint32_t argc;
    uint32_t envc;
};

/* The reply pipe's second message: the child is gone. */
struct otasim_zdone {
    int32_t status; /* raw wait status */
    int32_t pad;
    int64_t cpu_us; /* its user + system time */
};

#endif
