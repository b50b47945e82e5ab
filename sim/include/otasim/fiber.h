/* Fibers: many small stacks in one thread, switched by hand (ucontext), so
 * that a fleet run can host thousands of agent cores whose ops block (an HTTP
 * request) while one event loop does the I/O. A fiber runs until it calls
 * otasim_fiber_yield(); the loop resumes it with otasim_fiber_resume().
 * Stacks are mmap'ed with a guard page: a core that overflows its stack
 * faults at once instead of corrupting a neighbour. ASan builds tell the
 * sanitizer about every switch. Not thread-safe: one loop, one thread. */
#ifndef OTASIM_FIBER_H
#define OTASIM_FIBER_H

#include <stddef.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_fiber;

/* A fiber that will run fn(arg) on a stack of stack_size bytes (rounded to
 * pages; 0: the default, 128 KiB, 256 KiB under ASan). It starts at the first
 * resume. */
int otasim_fiber_new(size_t stack_size, struct otasim_fiber **ret, struct ota_err *err) OTA_MUST;
/* (Re)arms a fiber that is not running: the next resume calls fn(arg). */
void otasim_fiber_start(struct otasim_fiber *f, void (*fn)(void *), void *arg);
/* Runs f until it yields or fn returns. Returns 1 if f yielded, 0 if fn
 * returned (f can then be started again). Only from the loop, not from a
 * fiber. */
int otasim_fiber_resume(struct otasim_fiber *f);
/* From inside a fiber: back to the loop (resume comes back here). */
void otasim_fiber_yield(void);
/* The fiber running now, NULL in the loop. */
struct otasim_fiber *otasim_fiber_self(void);
void otasim_fiber_free(struct otasim_fiber *f);

#ifdef __cplusplus
}
#endif
#endif
