/* File bodies through a fault: a response reader (server.h) reads the
 * file with pread, runs each chunk through otasrv_fault_apply_chunk and
 * paces it (throttle). Returning OTASRV_RESP_END_WITH_ERROR makes the
 * server close the connection: that is how truncate, stall and a
 * too-long wrong_length end. The callback runs in the connection's worker
 * thread, so a stall or a throttle holds that thread (a test double: fine)
 * - except on a virtual clock (clock.h): there the reader suspends the
 * connection, arms a timer for the end of the wait and returns 0; the
 * timer resumes the connection and the next call goes on (a throttled
 * chunk is read again then). Pacing then counts virtual milliseconds.
 * Bytes returned by one call are sent before the next call, so what was
 * returned before the error reaches the client. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "otasrv/api_faults.h"
#include "otasrv/faultserve.h"

#define CHUNK (64 * 1024)

struct body {
    int fd;
    uint64_t start, len; /* the real body: len bytes of the file at start */
    struct otasrv_fault_decision d;
    int64_t t0_ms; /* the body's first byte, for throttle */
    int ending;    /* 1: close at the next call; 2: stall, then close */
    /* the virtual clock (NULL: real time), the stall's end on it, its timer */
    struct otasrv_clock *clock;
    struct otasrv_conn *conn;
    int64_t stall_end_ms;
    struct otasrv_clock_timer timer;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The body's time: virtual ms on a virtual clock, else monotonic ms. */
static int64_t body_now(const struct body *b)
{
    return b->clock ? otasrv_clock_now(b->clock) : mono_ms();
}

static void resume_conn(void *ctx)
{
    otasrv_resume(ctx);
}

/* On the virtual clock: 1 once now has reached deadline; 0 after
 * suspending the connection until it does (the reader returns 0);
 * -ECANCELED once the clock is closed (shutdown). */
static int wait_virtual(struct body *b, int64_t deadline)
{
    if (otasrv_clock_timer_state(b->clock, &b->timer) == OTASRV_TIMER_CANCELLED)
        return -ECANCELED;
    if (otasrv_clock_now(b->clock) >= deadline)
        return 1;
    otasrv_suspend(b->conn);
    otasrv_clock_timer_arm(b->clock, &b->timer, deadline, resume_conn, b->conn);
    return 0;
}

int otasrv_faultserve_body(const struct otasrv_req *req)
{
    if (!req->has_fault)
        return 0;
    switch (req->fault.fault.kind) {
    case OTASRV_FAULT_STALL:
    case OTASRV_FAULT_TRUNCATE:
    case OTASRV_FAULT_CORRUPT:
    case OTASRV_FAULT_WRONG_LENGTH:
    case OTASRV_FAULT_THROTTLE:
        return 1;
    default:
        return 0;
    }
}

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct body *b = cls;
    enum otasrv_chunk_action act;
    size_t n, out;
    ssize_t got;
    uint64_t pace;

    if (b->ending) {
        if (b->ending == 2 && b->clock && wait_virtual(b, b->stall_end_ms) == 0)
            return 0;
        if (b->ending == 2 && !b->clock)
            sleep_ms(b->d.fault.ms);
        return OTASRV_RESP_END_WITH_ERROR;
    }
    if (pos >= b->len) /* wrong_length declared more than there is */
        return OTASRV_RESP_END_WITH_ERROR;
    if (b->t0_ms < 0)
        b->t0_ms = body_now(b);
    n = max < CHUNK ? max : CHUNK;
    if (n > b->len - pos)
        n = (size_t)(b->len - pos);
    do
        got = pread(b->fd, buf, n, (off_t)(b->start + pos));
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return OTASRV_RESP_END_WITH_ERROR;
    act = otasrv_fault_apply_chunk(&b->d, b->start, pos, buf, (size_t)got, &out);
    pace = otasrv_fault_pace_ms(&b->d, pos + out, (uint64_t)(body_now(b) - b->t0_ms));
    if (pace && b->clock) {
        int w = wait_virtual(b, body_now(b) + (int64_t)pace);
        if (w <= 0) /* the chunk is read again when the clock gets there */
            return w == 0 ? 0 : OTASRV_RESP_END_WITH_ERROR;
    } else if (pace) {
        sleep_ms(pace);
    }
    if (act != OTASRV_CHUNK_SEND) {
        b->ending = act == OTASRV_CHUNK_STALL ? 2 : 1;
        b->stall_end_ms = body_now(b) + b->d.fault.ms;
        if (out == 0)
            return read_body(cls, pos, buf, max);
    }
    return (ssize_t)out;
}

static void free_body(void *cls)
{
    struct body *b = cls;

    if (b->clock)
        otasrv_clock_timer_disarm(b->clock, &b->timer);
    close(b->fd);
    free(b);
}

struct otasrv_resp *otasrv_faultserve_response(struct otasrv_req *req, int fd, uint64_t start,
                                               uint64_t len)
{
    struct body *b = calloc(1, sizeof(*b));
    struct otasrv_resp *resp;

    if (!b) {
        close(fd);
        return NULL;
    }
    b->fd = fd;
    b->start = start;
    b->len = len;
    b->d = req->fault;
    b->t0_ms = -1;
    b->clock = req->srv->clock;
    b->conn = req->conn;
    resp =
        otasrv_resp_reader(otasrv_fault_content_length(&b->d, len), CHUNK, read_body, b, free_body);
    if (!resp)
        return NULL;
    /* the fault ends the connection (or may leave it out of step) */
    otasrv_resp_header(resp, "Connection", "close");
    return resp;
}
