/* Fibers on ucontext (otasim/fiber.h). A fiber starts with makecontext;
 * without ASan, the switches after that are _setjmp/_longjmp, which keep the
 * signal mask as it is: swapcontext saves and sets it with a system call
 * each way, four or five per fleet check-in. A fiber whose function returned
 * parks on its own stack, so the next start only names the function: no
 * getcontext (one more system call) and no makecontext per fleet pass.
 * Fortify's longjmp check refuses a jump to another stack, so this file is
 * built without it. Under ASan the switches stay swapcontext, with ASan's
 * fiber annotations, and every start makes a new context. */
#undef _FORTIFY_SOURCE
#include "otasim/fiber.h"

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OTASIM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define OTASIM_ASAN 1
#endif

#ifdef OTASIM_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#define DEFAULT_STACK (256 * 1024)
#else
#define DEFAULT_STACK (128 * 1024)
#define FAST_SWITCH   1
#endif

struct otasim_fiber {
    ucontext_t ctx;
    void *map; /* guard page + stack */
    size_t map_len;
    char *stack;
    size_t stack_len;
    void (*fn)(void *);
    void *arg;
    int running; /* fn has not returned */
#ifdef FAST_SWITCH
    int entered; /* it ran once: resume with jb */
    jmp_buf jb;  /* where it yielded */
#endif
};

#ifdef FAST_SWITCH
static jmp_buf loop_jb;
#endif
static ucontext_t loop_ctx;
static struct otasim_fiber *cur;
#ifdef OTASIM_ASAN
static const void *loop_stack_bottom;
static size_t loop_stack_size;
#endif

static void trampoline(void)
{
    struct otasim_fiber *f = cur;

#ifdef OTASIM_ASAN
    __sanitizer_finish_switch_fiber(NULL, &loop_stack_bottom, &loop_stack_size);
#endif
#ifdef FAST_SWITCH
    for (;;) {
        f->fn(f->arg);
        f->running = 0;
        /* parked: otasim_fiber_start names the next function, resume lands here */
        if (_setjmp(f->jb) == 0)
            _longjmp(loop_jb, 1); /* back into otasim_fiber_resume */
    }
#else
    f->fn(f->arg);
    f->running = 0;
#endif
#ifdef OTASIM_ASAN
    /* This stack is done with: no fake stack to keep. */
    __sanitizer_start_switch_fiber(NULL, loop_stack_bottom, loop_stack_size);
#endif
    /* uc_link returns to the loop */
}

int otasim_fiber_new(size_t stack_size, struct otasim_fiber **ret, struct ota_err *err)
{
    long page = sysconf(_SC_PAGESIZE);
    struct otasim_fiber *f;
    size_t len;

    if (stack_size == 0)
        stack_size = DEFAULT_STACK;
    len = (stack_size + (size_t)page - 1) / (size_t)page * (size_t)page;
    f = calloc(1, sizeof(*f));
    if (!f)
        return ota_err_set(err, ENOMEM, "out of memory");
    f->map_len = len + (size_t)page;
    f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->map == MAP_FAILED) {
        int e = errno;
        free(f);
        return ota_err_set(err, e, "fiber stack of %zu bytes: %s", len, strerror(e));
    }
    /* The stack grows down: the guard page is the lowest one. */
    if (mprotect(f->map, (size_t)page, PROT_NONE) < 0) {
        int e = errno;
        munmap(f->map, f->map_len);
        free(f);
        return ota_err_set(err, e, "fiber guard page: %s", strerror(e));
    }
    f->stack = (char *)f->map + page;
    f->stack_len = len;
    *ret = f;
    return 0;
}

void otasim_fiber_start(struct otasim_fiber *f, void (*fn)(void *), void *arg)
{
    f->fn = fn;
    f->arg = arg;
    f->running = 1;
#ifdef FAST_SWITCH
    if (f->entered)
        return; /* parked in trampoline's loop */
#endif
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = f->stack_len;
    f->ctx.uc_link = &loop_ctx;
    makecontext(&f->ctx, trampoline, 0);
}

int otasim_fiber_resume(struct otasim_fiber *f)
{
#ifdef OTASIM_ASAN
    void *fake = NULL;
#endif
    if (!f->running || cur)
        return 0;
    cur = f;
#ifdef OTASIM_ASAN
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_len);
#endif
#ifdef FAST_SWITCH
    if (_setjmp(loop_jb) == 0) {
        if (f->entered)
            _longjmp(f->jb, 1);
        f->entered = 1;
        swapcontext(&loop_ctx, &f->ctx); /* the first entry; never returns here */
    }
#else
    swapcontext(&loop_ctx, &f->ctx);
#endif
#ifdef OTASIM_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    cur = NULL;
    return f->running;
}

void otasim_fiber_yield(void)
{
    struct otasim_fiber *f = cur;
#ifdef OTASIM_ASAN
    void *fake = NULL;
#endif

    if (!f)
        return;
#ifdef OTASIM_ASAN
    __sanitizer_start_switch_fiber(&fake, loop_stack_bottom, loop_stack_size);
#endif
#ifdef FAST_SWITCH
    if (_setjmp(f->jb) == 0)
        _longjmp(loop_jb, 1);
#else
    swapcontext(&f->ctx, &loop_ctx);
#endif
#ifdef OTASIM_ASAN
    __sanitizer_finish_switch_fiber(fake, &loop_stack_bottom, &loop_stack_size);
#endif
}

struct otasim_fiber *otasim_fiber_self(void)
{
    return cur;
}

void otasim_fiber_free(struct otasim_fiber *f)
{
    if (!f)
        return;
    munmap(f->map, f->map_len);
    free(f);
}
