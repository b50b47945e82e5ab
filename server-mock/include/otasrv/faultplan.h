/* Fault plans: rules that pick requests and the fault each one gets.
 * A library with no I/O of its own: the HTTP server parses a plan (from
 * --faults FILE or an admin API body), asks it about every request, and
 * applies the decision with the helpers below. Documented for users in
 * docs/protocol.md, "Fault plans".
 *
 * Format (JSON, or YAML with the same tree):
 *
 *   {"seed": 42,                         optional, integer 0..2^63-1, default 0
 *    "rules": [                          required, 0..256 rules, first match wins
 *      {"id": "slow-payload",            required, 1..63 of [A-Za-z0-9._-], unique
 *       "match": {                       optional; {} or absent: every request
 *         "path": "/api/v1/releases/?*", fnmatch(3) glob, flags 0 ('*' also
 *                                        matches '/'), on the path without query
 *         "method": "GET",               case-insensitive
 *         "device": "dev-0001",          exact device id
 *         "release": "video-app-2.0.0",  exact release id
 *         "nth": 3,                      only the 3rd matching request (1-based)
 *         "after": 10,                   skip the first 10 matching requests
 *         "every": 2,                    every 2nd matching request (after 'after')
 *         "probability": 0.25},          0..1, seeded draw, default 1
 *       "fault": {"kind": "status", "code": 503, "retry_after": 5},
 *       "count": 100}]}                  optional max applications, default unlimited
 *
 * "nth" excludes "after" and "every". A rule "matches" a request when its
 * path/method/device/release filters all pass; each rule numbers its matching
 * requests 1, 2, 3... (k) whether or not an earlier rule took the request.
 * It fires on its k-th match when nth/after/every allow k, its count is not
 * spent and the draw hash(seed, rule id, k) < probability. The first rule
 * (in plan order) that fires wins; later rules still count the request. So the
 * outcome for a given sequence of requests is reproducible, and the draws of
 * one rule do not depend on the other rules.
 *
 * Faults ("kind" and its keys; any other key is refused):
 *   status        code 400..599, retry_after 0..86400 s (optional): answer
 *                 this status with {"detail": ...} instead of the handler
 *   delay         ms 0..600000: wait, then answer normally
 *   stall         after_bytes, ms 0..600000 (default 30000): send after_bytes
 *                 body bytes, then nothing for ms, then close the connection
 *   truncate      after_bytes: send after_bytes body bytes, then close
 *   reset         close the connection without an answer
 *   corrupt       offset, length >= 1: XOR 0xFF the bytes [offset,
 *                 offset+length) of the resource (absolute offsets: a resumed
 *                 download gets the same bytes flipped)
 *   wrong_length  delta != 0: declare Content-Length = real length + delta
 *   ignore_range  answer 200 with the whole body even if Range was asked
 *   throttle      bytes_per_s >= 1: pace the body to that rate
 *   content_range total_delta != 0 or text (one of them): a 206's
 *                 Content-Range names total + total_delta, or is text
 *   redirect      location ("/path" or an http(s) URL), code 301, 302
 *                 (default), 303, 307 or 308: answer that redirect
 *   echo          answer 200 with the request as the server saw it
 *                 (method, path, query, headers, body)
 * after_bytes counts the bytes of this response's body.
 *
 * Threads: one mutex inside the plan object guards the counters, the log
 * ring and the rule set; every function below may be called from any thread.
 * Run-time replacement: otasrv_faultplan_swap() moves a freshly parsed plan's
 * rules into the live object (no holder, no refcount: a decision is a copy,
 * it never points into the plan). */
#ifndef OTASRV_FAULTPLAN_H
#define OTASRV_FAULTPLAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTASRV_FAULT_ID_MAX     64      /* rule id, with its NUL */
#define OTASRV_FAULTPLAN_MAX    1048576 /* plan text bytes */
#define OTASRV_FAULTPLAN_RULES  256     /* rules per plan */
#define OTASRV_FAULTLOG_CAP     1024    /* applied faults kept for the admin API */
#define OTASRV_FAULT_STALL_MS   30000   /* stall silence when "ms" is not given */
#define OTASRV_FAULT_THROTTLE_Q 10      /* throttle chunks: bytes_per_s / this */
#define OTASRV_FAULT_TEXT_MAX   256     /* content_range text, redirect location, with the NUL */

enum otasrv_fault_kind {
    OTASRV_FAULT_NONE = 0,
    OTASRV_FAULT_STATUS,
    OTASRV_FAULT_DELAY,
    OTASRV_FAULT_STALL,
    OTASRV_FAULT_TRUNCATE,
    OTASRV_FAULT_RESET,
    OTASRV_FAULT_CORRUPT,
    OTASRV_FAULT_WRONG_LENGTH,
    OTASRV_FAULT_IGNORE_RANGE,
    OTASRV_FAULT_THROTTLE,
    OTASRV_FAULT_CONTENT_RANGE,
    OTASRV_FAULT_REDIRECT,
    OTASRV_FAULT_ECHO,
    OTASRV_FAULT_KIND_MAX
};

/* "none", "status", "delay", ... as in the plan; "?" out of range. */
const char *otasrv_fault_kind_name(enum otasrv_fault_kind kind);

/* One fault with its parameters; fields not used by kind are 0
 * (retry_after: -1 when absent). */
struct otasrv_fault {
    enum otasrv_fault_kind kind;
    int code;             /* status, redirect */
    int retry_after;      /* status: seconds, -1 = no Retry-After */
    uint32_t ms;          /* delay: before answering; stall: silence before the close */
    uint64_t after_bytes; /* stall, truncate: body bytes sent first */
    uint64_t offset;      /* corrupt: first flipped byte, offset in the resource */
    uint64_t length;      /* corrupt: bytes flipped */
    int64_t delta;        /* wrong_length; content_range: total_delta */
    uint64_t bytes_per_s; /* throttle */
    char
        text[OTASRV_FAULT_TEXT_MAX]; /* content_range: text ("": total_delta); redirect: location */
};

/* What the server knows about a request when it asks the plan. Strings may
 * be NULL when unknown (a rule filtering on that field then does not match);
 * they are only read during the call. */
struct otasrv_request_info {
    const char *method;  /* "GET", "HEAD", "POST"... */
    const char *path;    /* URL path, without the query string */
    const char *device;  /* device id (from the URL or the token), or NULL */
    const char *release; /* release id or GitHub tag the request is about, or NULL */
    uint64_t now_ms;     /* arrival, ms since the epoch: the log's "ts" */
};

/* A fired rule: a copy, valid after the plan is swapped or freed. */
struct otasrv_fault_decision {
    struct otasrv_fault fault;
    char rule[OTASRV_FAULT_ID_MAX]; /* id of the rule that fired */
    uint64_t match;                 /* the rule's k: this was its k-th matching request */
    uint64_t applied;               /* the rule's n-th application (1-based) */
};

struct otasrv_faultplan;

enum otasrv_plan_format {
    OTASRV_PLAN_AUTO = 0, /* JSON if the first non-blank byte is '{', else YAML */
    OTASRV_PLAN_JSON,
    OTASRV_PLAN_YAML,
};

/* Format from a file name: ".json" JSON, ".yaml"/".yml" YAML, else AUTO. */
enum otasrv_plan_format otasrv_faultplan_format_from_name(const char *name);

/* Parses and validates n bytes of plan text. Errors: -EINVAL with the reason
 * (syntax with line/column, unknown key or kind, bad type or range, duplicate
 * id...), -EFBIG over OTASRV_FAULTPLAN_MAX, -ENOMEM. *ret: free with
 * otasrv_faultplan_free(). */
int otasrv_faultplan_parse(const char *text, size_t n, enum otasrv_plan_format fmt,
                           struct otasrv_faultplan **ret, struct ota_err *err) OTA_MUST;
/* A plan with no rules (nothing ever fires): the live object a server starts
 * with when it has no --faults. -ENOMEM. */
int otasrv_faultplan_new(struct otasrv_faultplan **ret, struct ota_err *err) OTA_MUST;
void otasrv_faultplan_free(struct otasrv_faultplan *plan);

/* Atomically replaces live's seed and rules with next's (fresh counters);
 * live's old rules go to next, which the caller then frees. live's log of
 * applied faults is kept. next must not be in use by another thread. */
void otasrv_faultplan_swap(struct otasrv_faultplan *live, struct otasrv_faultplan *next);

/* Asks the plan about one request: 1 and *ret when a rule fires (the
 * application is also recorded in the log ring under request_id), 0 when no
 * rule fires (*ret untouched). plan NULL: 0. */
int otasrv_faultplan_match(struct otasrv_faultplan *plan, const struct otasrv_request_info *req,
                           uint64_t request_id, struct otasrv_fault_decision *ret) OTA_MUST;

/* The plan as the admin API shows it: {"seed":S,"rules":[rule + "matched":k,
 * "applied":n]} with each rule as validated (method upper-cased). *ret is a
 * new reference. -ENOMEM. */
int otasrv_faultplan_describe(struct otasrv_faultplan *plan, json_t **ret,
                              struct ota_err *err) OTA_MUST;

/* The last OTASRV_FAULTLOG_CAP applied faults, oldest first, as a JSON array
 * of the objects otasrv_faultplan_log_json() prints. *ret is a new
 * reference; *ret_total (may be NULL) counts every application since the
 * last clear, including those that fell out of the ring. -ENOMEM. */
int otasrv_faultplan_log_list(struct otasrv_faultplan *plan, json_t **ret, uint64_t *ret_total,
                              struct ota_err *err) OTA_MUST;
void otasrv_faultplan_log_clear(struct otasrv_faultplan *plan);

/* One applied fault as one compact JSON line, without the newline:
 * {"ts":MS,"request_id":N,"rule":"id","kind":"status","match":K,
 *  "method":"GET","path":"/x","device":"d"|null,"release":"r"|null,
 *  ...the fault's parameters, named as in the plan}
 * *ret is malloc'ed. -ENOMEM. */
int otasrv_faultplan_log_json(const struct otasrv_fault_decision *d, uint64_t request_id,
                              const struct otasrv_request_info *req, char **ret) OTA_MUST;

/* How the answer's head changes. d NULL: nothing changes. */
struct otasrv_fault_response {
    uint32_t delay_ms;    /* wait this long before answering (delay) */
    int reset;            /* close the connection, send nothing (reset) */
    int status;           /* != 0: answer this status with a JSON detail, skip the handler */
    int retry_after;      /* with status: Retry-After seconds, -1 none */
    int ignore_range;     /* answer 200 with the whole body; Range and If-Range ignored */
    int64_t length_delta; /* declared Content-Length = real + this (see below) */
    int redirect;         /* != 0: answer this redirect status with Location: fault.text */
    int echo;             /* answer 200 with the request as seen, skip the handler */
};
void otasrv_fault_headers(const struct otasrv_fault_decision *d, struct otasrv_fault_response *ret);

/* The Content-Length to declare for a body of real_len bytes: real_len +
 * delta for wrong_length (clamped at 0 and UINT64_MAX), else real_len. The
 * server sends min(real, declared) bytes and then closes the connection. */
uint64_t otasrv_fault_content_length(const struct otasrv_fault_decision *d, uint64_t real_len);

/* The Content-Range of a 206 that sends len bytes from start of a total-byte
 * resource: "bytes START-END/TOTAL", or as a content_range fault says (its
 * text, or TOTAL + total_delta, clamped at 0). d NULL: the true one. */
void otasrv_fault_content_range(const struct otasrv_fault_decision *d, uint64_t start, uint64_t len,
                                uint64_t total, char *buf, size_t cap);

enum otasrv_chunk_action {
    OTASRV_CHUNK_SEND = 0, /* send the first *ret_len bytes, carry on */
    OTASRV_CHUNK_STALL,    /* send the first *ret_len bytes, then nothing for
                              fault.ms, then close the connection */
    OTASRV_CHUNK_CLOSE,    /* send the first *ret_len bytes, then close */
};

/* Body filter the server runs on every chunk before sending it. buf holds
 * len bytes at offset off of this response's body; body_start is the
 * resource offset of the body's first byte (the Range start of a 206, else
 * 0). Flips corrupt bytes in place; cuts at truncate/stall's after_bytes
 * (a body of exactly after_bytes bytes is sent whole); caps throttled chunks
 * at max(1, bytes_per_s / OTASRV_FAULT_THROTTLE_Q). d NULL: SEND len. */
enum otasrv_chunk_action otasrv_fault_apply_chunk(const struct otasrv_fault_decision *d,
                                                  uint64_t body_start, uint64_t off, void *buf,
                                                  size_t len, size_t *ret_len);

/* Throttle pacing: ms to wait before sending so that total body bytes
 * (those sent plus the next chunk) take at least total / bytes_per_s seconds
 * from the body's start, elapsed_ms ago. 0 for any other fault or d NULL. */
uint64_t otasrv_fault_pace_ms(const struct otasrv_fault_decision *d, uint64_t total,
                              uint64_t elapsed_ms);

#ifdef __cplusplus
}
#endif
#endif
