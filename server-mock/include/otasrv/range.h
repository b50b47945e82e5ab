/* HTTP Range header parsing (RFC 9110 section 14), for one resource of a
 * known length.
 *
 * Decisions: only the "bytes" unit and a single range are honoured. A
 * header that is absent, malformed, of another unit, or asks for several
 * ranges is ignored (the whole body, 200), as RFC 9110 allows. A range
 * whose first byte lies at or past the end ("bytes=N-" with N >= total,
 * "bytes=-0", any range of an empty resource) is unsatisfiable (416). The
 * last byte position is clamped to the end; numbers too large for 64 bits
 * saturate (so "bytes=99999999999999999999-" is unsatisfiable). */
#ifndef OTASRV_RANGE_H
#define OTASRV_RANGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum otasrv_range_result {
    OTASRV_RANGE_NONE,          /* serve the whole body: 200 */
    OTASRV_RANGE_PARTIAL,       /* serve [start, start+len): 206 */
    OTASRV_RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes *\/total */
    OTASRV_RANGE_MAX,
};
extern const char *const otasrv_range_result_names[OTASRV_RANGE_MAX];

/* Parses header (NULL: no header) for a resource of total bytes. On
 * OTASRV_RANGE_PARTIAL writes *ret_start and *ret_len (len >= 1); otherwise
 * leaves them alone. */
enum otasrv_range_result otasrv_range_parse(const char *header, uint64_t total, uint64_t *ret_start,
                                            uint64_t *ret_len);

#ifdef __cplusplus
}
#endif
#endif
