/* Fuzz harness: the HTTP response header values the agent core parses
 * (agent/src/core/protocol.c): Content-Range of a resumed download
 * (ota_proto_parse_content_range) and GitHub's rate-limit headers
 * (ota_proto_gh_rate_limit: Retry-After as seconds or an HTTP date,
 * X-RateLimit-Remaining/-Reset, Date). Input: lines "Content-Range",
 * "Retry-After", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Date", then
 * the body; the first byte picks the status and the refusals in a row.
 * The values are cut to the transport's buffers (struct ota_http_resp),
 * as transport_curl.c stores them. Corpus: corpus/http-headers/. */
#include "ota/protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line of data into buf (cut to cap-1, NUL-terminated). */
static void next_line(const uint8_t **data, size_t *size, char *buf, size_t cap)
{
    const uint8_t *nl = memchr(*data, '\n', *size);
    size_t len = nl ? (size_t)(nl - *data) : *size;
    size_t take = len < cap - 1 ? len : cap - 1;

    memcpy(buf, *data, take);
    buf[take] = '\0';
    *data += nl ? len + 1 : len;
    *size -= nl ? len + 1 : len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 403, 429, 500};
    char range[128];
    uint64_t start, end, total;
    struct ota_http_resp resp;
    struct ota_gh_wait w;
    unsigned pick;

    if (size < 1)
        return 0;
    pick = data[0];
    data++, size--;
    memset(&resp, 0, sizeof(resp));
    next_line(&data, &size, range, sizeof(range));
    next_line(&data, &size, resp.retry_after, sizeof(resp.retry_after));
    next_line(&data, &size, resp.ratelimit_remaining, sizeof(resp.ratelimit_remaining));
    next_line(&data, &size, resp.ratelimit_reset, sizeof(resp.ratelimit_reset));
    next_line(&data, &size, resp.date, sizeof(resp.date));

    if (ota_proto_parse_content_range(range, &start, &end, &total) == 0 &&
        !(start <= end && end < total))
        abort(); /* the documented guarantee the download relies on */

    resp.status = statuses[pick & 3];
    resp.body = malloc(size + 1);
    if (!resp.body)
        return 0;
    memcpy(resp.body, data, size);
    resp.body[size] = '\0';
    resp.len = size;
    /* now: 2026-12-01 (a device with a good clock) or 0 (a clock at the epoch) */
    ota_proto_gh_rate_limit(&resp, (pick & 4) ? 0 : 1795996800000LL, (pick >> 3) & 31, &w);
    if (w.wait_ms < 0 || w.wait_ms > OTA_GH_WAIT_MAX_MS || !memchr(w.why, 0, sizeof(w.why)))
        abort();
    free(resp.body);
    return 0;
}
