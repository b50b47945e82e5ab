/* DOWNLOADING and VERIFYING: the download session (struct dl_session) and
 * its checkpoints in the journal; resumes from the durable, verified prefix. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/faultpoint.h"

/* The download starts again from byte 0: the hash and count in this
 * process, the durable prefix and (unless keep_etag: the answer at hand sets
 * it) the ETag in the journal. sha_ok is the caller's: set when the file was
 * cut to 0 as well. The one place that takes a download back to zero. */
static void dl_restart(struct ota_agent *a, int keep_etag)
{
    ota_ignore(ota_sha256_reset(a->dl.sha));
    a->dl.received = 0;
    a->dl.digest_ok = 0;
    a->j.durable_len = 0;
    if (!keep_etag)
        a->j.etag[0] = '\0';
}

/* No download in this process vouches for the file any more (a new update,
 * none, or bytes found wrong): the next attempt starts from what the disk
 * and the journal prove. */
void core_dl_reset(struct ota_agent *a)
{
    dl_restart(a, 0);
    a->dl.sha_ok = 0;
}

/* A new request: forget what the last answer said. */
static void dl_attempt_begin(struct ota_agent *a)
{
    ota_err_clear(&a->dl.err);
    a->dl.from_zero = 0;
    a->dl.fatal = 0;
    a->dl.status = 0;
}

/* ---- DOWNLOADING ------------------------------------------------------ */

static int dl_abort(struct ota_agent *a, int code, int from_zero, int fatal, const char *fmt,
                    const char *detail)
{
    a->dl.from_zero |= from_zero;
    a->dl.fatal |= fatal;
    return ota_err_set(&a->dl.err, code, fmt, detail);
}

static int sink_headers(void *ctx, long status, const char *content_range, int64_t content_length,
                        const char *etag)
{
    struct ota_agent *a = ctx;
    uint64_t start, end, total;
    struct ota_err e = {0};

    a->dl.status = status;
    if (status == 200) {
        if (content_length >= 0 && (uint64_t)content_length != a->m.size) {
            char d[64];
            snprintf(d, sizeof(d), "%lld", (long long)content_length);
            return dl_abort(a, OTA_E_CHECKSUM, 1, 0,
                            "server sends %s bytes, the manifest says otherwise", d);
        }
        if (a->dl.received > 0) {
            /* Range ignored (or If-Range did not match): start over. */
            if (a->ops.install->dl_open(a->ops.install_ctx, 0, &e) < 0)
                return dl_abort(a, EIO, 1, 0, "%s", e.reason);
            dl_restart(a, 1);
        }
    } else if (status == 206) {
        if (ota_proto_parse_content_range(content_range, &start, &end, &total) < 0)
            return dl_abort(a, OTA_E_CHECKSUM, 1, 0, "unparsable Content-Range '%s'",
                            content_range ? content_range : "(none)");
        if (start != a->dl.received || total != a->m.size)
            return dl_abort(a, OTA_E_CHECKSUM, 1, 0, "Content-Range '%s' does not fit the resume",
                            content_range);
    } else if (status == 416) {
        return dl_abort(a, ERANGE, 1, 0, "%s", "server answered 416: starting again from 0");
    } else {
        char d[32];
        snprintf(d, sizeof(d), "%ld", status);
        return dl_abort(a, EIO, 0, status == 404 || status == 403 || status == 401 || status == 410,
                        "download: HTTP %s", d);
    }
    if (etag)
        ota_strlcpy(a->j.etag, etag, sizeof(a->j.etag));
    return 0;
}

static int checkpoint(struct ota_agent *a)
{
    struct ota_err e = {0};

    if (a->ops.install->dl_sync(a->ops.install_ctx, &e) < 0) {
        /* After an fsync error Linux may drop the pages it could not write,
         * and the next fsync succeeds: the in-memory hash no longer vouches
         * for the file. The next attempt checks the durable prefix on disk. */
        a->dl.sha_ok = 0;
        return dl_abort(a, EIO, 0, 0, "%s", e.reason[0] ? e.reason : "checkpoint failed");
    }
    if (ota_sha256_peek(a->dl.sha, a->j.prefix_sha256) < 0)
        return dl_abort(a, EIO, 0, 0, "%s", "checkpoint failed");
    a->j.durable_len = a->dl.received;
    if (core_save_journal(a, &e) < 0)
        return dl_abort(a, EIO, 0, 1, "%s", e.reason);
    return 0;
}

/* Data arrives in chunks of whatever size the network gave; a chunk that
 * crosses the next checkpoint is split there, so checkpoints land at exact
 * multiples of checkpoint_bytes (when the time spacing allows) whatever the
 * chunking: the same download makes the same durable states every time. */
static int sink_data(void *ctx, const void *buf, size_t n)
{
    struct ota_agent *a = ctx;
    const uint8_t *p = buf;
    struct ota_err e = {0};

    if (a->dl.received + n > a->m.size)
        return dl_abort(a, EFBIG, 1, 0, "%s", "download is larger than the manifest's size");
    while (n > 0) {
        uint64_t pending = a->dl.received - a->j.durable_len;
        size_t k = n;
        if (pending < a->cfg.checkpoint_bytes && a->cfg.checkpoint_bytes - pending < k)
            k = (size_t)(a->cfg.checkpoint_bytes - pending);
        if (a->ops.install->dl_write(a->ops.install_ctx, p, k, &e) < 0)
            return dl_abort(a, e.code ? e.code : EIO, 0, e.code == OTA_E_NO_SPACE, "%s", e.reason);
        if (ota_sha256_update(a->dl.sha, p, k) < 0)
            return dl_abort(a, EIO, 0, 1, "%s", "hash update failed");
        a->dl.received += k;
        p += k;
        n -= k;
        if (a->dl.received - a->j.durable_len >= a->cfg.checkpoint_bytes &&
            core_mono(a) - a->dl.checkpoint_ms >= a->cfg.checkpoint_interval_ms) {
            int r;
            a->dl.checkpoint_ms = core_mono(a);
            if ((r = checkpoint(a)) != 0)
                return r;
        }
    }
    return 0;
}

/* Brings the in-process hash and file position in line with the disk:
 * resume from the durable, verified prefix, or start again from zero. */
static int prepare_resume(struct ota_agent *a, struct ota_err *err)
{
    uint8_t d[OTA_SHA256_LEN];
    uint64_t have = 0;

    if (a->dl.sha_ok)
        return a->ops.install->dl_open(a->ops.install_ctx, a->dl.received, err);
    ota_ignore(ota_sha256_reset(a->dl.sha));
    a->dl.received = 0;
    if (a->j.durable_len > 0 && a->ops.install->dl_size(a->ops.install_ctx, &have, NULL) == 0 &&
        have >= a->j.durable_len &&
        a->ops.install->dl_hash(a->ops.install_ctx, a->j.durable_len, a->dl.sha, NULL) == 0 &&
        ota_sha256_peek(a->dl.sha, d) == 0 && memcmp(d, a->j.prefix_sha256, sizeof(d)) == 0)
        a->dl.received = a->j.durable_len;
    else
        dl_restart(a, 0);
    a->dl.sha_ok = 1;
    return a->ops.install->dl_open(a->ops.install_ctx, a->dl.received, err);
}

static int64_t backoff_ms(struct ota_agent *a)
{
    int64_t d = a->cfg.backoff_base_ms;
    uint32_t shift = a->j.attempts > 0 ? a->j.attempts - 1 : 0;

    while (shift-- && d < a->cfg.backoff_max_ms)
        d *= 2;
    if (d > a->cfg.backoff_max_ms)
        d = a->cfg.backoff_max_ms;
    /* Full jitter in the upper half: spread a fleet, never retry at once. */
    return d / 2 +
           (d > 1 ? (int64_t)(a->ops.clock->random(a->ops.clock_ctx) % (uint32_t)(d / 2 + 1)) : 0);
}

/* A failed attempt: retry after a backoff, or give up. */
static int attempt_failed(struct ota_agent *a, const char *reason, int fatal, struct ota_step *st,
                          struct ota_err *err)
{
    char why[OTA_REASON_LEN];

    a->j.attempts++;
    snprintf(why, sizeof(why), "%s (attempt %u of %u)", reason, a->j.attempts, a->cfg.max_attempts);
    if (fatal || a->j.attempts >= a->cfg.max_attempts) {
        st->result = OTA_STEP_CONTINUE;
        return core_fail_update(a, why, err);
    }
    core_set_reason(a, why);
    a->dl.wake_ms = core_mono(a) + backoff_ms(a);
    st->result = OTA_STEP_WAIT;
    st->wake_ms = a->dl.wake_ms;
    return core_save_journal(a, err);
}

int core_handle_downloading(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_dl_sink sink = {a, sink_headers, sink_data};
    struct ota_err e = {0};
    int r;

    if (a->dl.wake_ms && core_mono(a) < a->dl.wake_ms) {
        st->result = OTA_STEP_WAIT;
        st->wake_ms = a->dl.wake_ms;
        return 0;
    }
    r = prepare_resume(a, &e);
    if (r < 0)
        return attempt_failed(a, e.reason, r == -OTA_E_NO_SPACE, st, err);
    if (a->dl.received == a->m.size && a->m.size > 0) {
        r = 0; /* everything is already on disk */
    } else {
        dl_attempt_begin(a);
        /* The device token only to the configured server's origin: an
         * offer may name a payload anywhere (a CDN, a mirror). */
        r = a->ops.transport->download(a->ops.transport_ctx, a->j.url,
                                       core_bearer_for(a, a->j.url, a->token), a->dl.received,
                                       a->j.etag, &sink, &e);
        if (r == -EINPROGRESS) {
            st->result = OTA_STEP_WAIT;
            st->wake_ms = core_mono(a);
            return 0;
        }
        if (r == 0 && a->dl.status != 200 && a->dl.status != 206) {
            /* an error answer without an abort (empty body) */
            char d[64];
            snprintf(d, sizeof(d), "download: HTTP %ld", a->dl.status);
            if (!a->dl.err.code)
                (void)ota_err_set(&a->dl.err, EIO, "%s", d);
            r = -EIO;
        }
    }
    if (r == 0 && a->dl.received != a->m.size) {
        (void)ota_err_set(&a->dl.err, EIO, "download ended at %llu of %llu bytes",
                          (unsigned long long)a->dl.received, (unsigned long long)a->m.size);
        r = -EIO;
    }
    if (r < 0) {
        const char *why = a->dl.err.code ? a->dl.err.reason : e.reason;
        if (a->dl.from_zero) {
            (void)a->ops.install->dl_open(a->ops.install_ctx, 0, NULL);
            dl_restart(a, 0);
        }
        return attempt_failed(a, why[0] ? why : "download failed", a->dl.fatal, st, err);
    }
    OTA_FAULT_POINT("download.before_sync");
    r = a->ops.install->dl_sync(a->ops.install_ctx, &e);
    if (r < 0) {
        a->dl.sha_ok = 0; /* as in checkpoint(): verify from disk next time */
        return attempt_failed(a, e.reason, 0, st, err);
    }
    a->ops.install->dl_close(a->ops.install_ctx);
    r = ota_sha256_final(a->dl.sha, a->dl.digest);
    a->dl.sha_ok = 0;
    if (r < 0)
        return attempt_failed(a, "hash failed", 0, st, err);
    a->dl.digest_ok = 1;
    a->j.durable_len = a->m.size;
    st->result = OTA_STEP_CONTINUE;
    return core_transition(a, OTA_STATE_VERIFYING, err);
}

/* ---- VERIFYING -------------------------------------------------------- */

int core_handle_verifying(struct ota_agent *a, struct ota_step *st, struct ota_err *err)
{
    struct ota_err e = {0};
    uint64_t have = 0;
    int r;

    st->result = OTA_STEP_CONTINUE;
    if (!a->dl.digest_ok) {
        /* Interrupted before: verify again from the start. */
        ota_ignore(ota_sha256_reset(a->dl.sha));
        r = a->ops.install->dl_size(a->ops.install_ctx, &have, &e);
        if (r == 0 && have != a->m.size)
            r = ota_err_set(&e, OTA_E_CHECKSUM, "download is %llu bytes, the manifest says %llu",
                            (unsigned long long)have, (unsigned long long)a->m.size);
        if (r == 0)
            r = a->ops.install->dl_hash(a->ops.install_ctx, a->m.size, a->dl.sha, &e);
        if (r == 0)
            r = ota_sha256_final(a->dl.sha, a->dl.digest);
        if (r < 0)
            goto bad;
        a->dl.digest_ok = 1;
    }
    if (memcmp(a->dl.digest, a->m.sha256, OTA_SHA256_LEN) != 0) {
        char want[OTA_SHA256_HEX], got[OTA_SHA256_HEX];
        ota_hex_encode(a->m.sha256, OTA_SHA256_LEN, want);
        ota_hex_encode(a->dl.digest, OTA_SHA256_LEN, got);
        r = ota_err_set(&e, OTA_E_CHECKSUM, "checksum mismatch: sha256 %.12s…, manifest %.12s…",
                        got, want);
        goto bad;
    }
    return core_transition(a, OTA_STATE_INSTALLING, err);
bad:
    /* The bytes on disk are wrong: drop them and download again. */
    core_dl_reset(a);
    (void)a->ops.install->dl_remove(a->ops.install_ctx, NULL);
    a->j.attempts++;
    if (a->j.attempts >= a->cfg.max_attempts)
        return core_fail_update(a, e.reason, err);
    core_set_reason(a, e.reason);
    return core_transition(a, OTA_STATE_DOWNLOADING, err);
}
