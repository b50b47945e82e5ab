/* Applying a fault decision to a response: its headers, its length, each
 * chunk of its body and its pace (contract in otasrv/faultplan.h; the plans
 * and their matching are faultplan.c). Pure functions of the decision. */
#include "otasrv/faultplan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void otasrv_fault_headers(const struct otasrv_fault_decision *d, struct otasrv_fault_response *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->retry_after = -1;
    if (!d)
        return;
    switch (d->fault.kind) {
    case OTASRV_FAULT_DELAY:
        ret->delay_ms = d->fault.ms;
        break;
    case OTASRV_FAULT_RESET:
        ret->reset = 1;
        break;
    case OTASRV_FAULT_STATUS:
        ret->status = d->fault.code;
        ret->retry_after = d->fault.retry_after;
        break;
    case OTASRV_FAULT_IGNORE_RANGE:
        ret->ignore_range = 1;
        break;
    case OTASRV_FAULT_WRONG_LENGTH:
        ret->length_delta = d->fault.delta;
        break;
    case OTASRV_FAULT_REDIRECT:
        ret->redirect = d->fault.code;
        break;
    case OTASRV_FAULT_ECHO:
        ret->echo = 1;
        break;
    default:
        break;
    }
}

uint64_t otasrv_fault_content_length(const struct otasrv_fault_decision *d, uint64_t real_len)
{
    uint64_t mag;

    if (!d || d->fault.kind != OTASRV_FAULT_WRONG_LENGTH)
        return real_len;
    if (d->fault.delta < 0) {
        mag = (uint64_t)(-(d->fault.delta + 1)) + 1;
        return real_len > mag ? real_len - mag : 0;
    }
    mag = (uint64_t)d->fault.delta;
    return real_len > UINT64_MAX - mag ? UINT64_MAX : real_len + mag;
}

void otasrv_fault_content_range(const struct otasrv_fault_decision *d, uint64_t start, uint64_t len,
                                uint64_t total, char *buf, size_t cap)
{
    uint64_t named = total;

    if (d && d->fault.kind == OTASRV_FAULT_CONTENT_RANGE && d->fault.text[0]) {
        snprintf(buf, cap, "%s", d->fault.text);
        return;
    }
    if (d && d->fault.kind == OTASRV_FAULT_CONTENT_RANGE) {
        int64_t delta = d->fault.delta;
        uint64_t mag = delta < 0 ? (uint64_t)(-(delta + 1)) + 1 : (uint64_t)delta;

        if (delta < 0)
            named = total > mag ? total - mag : 0;
        else
            named = total > UINT64_MAX - mag ? UINT64_MAX : total + mag;
    }
    snprintf(buf, cap, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1, named);
}

enum otasrv_chunk_action otasrv_fault_apply_chunk(const struct otasrv_fault_decision *d,
                                                  uint64_t body_start, uint64_t off, void *buf,
                                                  size_t len, size_t *ret_len)
{
    const struct otasrv_fault *f = d ? &d->fault : NULL;

    *ret_len = len;
    if (!f)
        return OTASRV_CHUNK_SEND;
    switch (f->kind) {
    case OTASRV_FAULT_CORRUPT: {
        /* Absolute resource offsets: the chunk covers [a, a + len). */
        uint64_t a = body_start + off;
        uint64_t lo = a > f->offset ? a : f->offset;
        uint64_t hi = a + len < f->offset + f->length ? a + len : f->offset + f->length;
        unsigned char *p = buf;

        for (uint64_t i = lo; i < hi; i++)
            p[i - a] ^= 0xFF;
        return OTASRV_CHUNK_SEND;
    }
    case OTASRV_FAULT_TRUNCATE:
    case OTASRV_FAULT_STALL: {
        enum otasrv_chunk_action cut =
            f->kind == OTASRV_FAULT_TRUNCATE ? OTASRV_CHUNK_CLOSE : OTASRV_CHUNK_STALL;

        if (off >= f->after_bytes) {
            *ret_len = 0;
            return cut;
        }
        if (len > f->after_bytes - off) {
            *ret_len = (size_t)(f->after_bytes - off);
            return cut;
        }
        return OTASRV_CHUNK_SEND;
    }
    case OTASRV_FAULT_THROTTLE: {
        uint64_t q = f->bytes_per_s / OTASRV_FAULT_THROTTLE_Q;

        if (q == 0)
            q = 1;
        if (len > q)
            *ret_len = (size_t)q;
        return OTASRV_CHUNK_SEND;
    }
    default:
        return OTASRV_CHUNK_SEND;
    }
}

uint64_t otasrv_fault_pace_ms(const struct otasrv_fault_decision *d, uint64_t total,
                              uint64_t elapsed_ms)
{
    uint64_t bps, need;

    if (!d || d->fault.kind != OTASRV_FAULT_THROTTLE || d->fault.bytes_per_s == 0)
        return 0;
    bps = d->fault.bytes_per_s;
    need = (total / bps) * 1000 + ((total % bps) * 1000 + bps - 1) / bps;
    return need > elapsed_ms ? need - elapsed_ms : 0;
}
