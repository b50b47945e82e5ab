/* A QEMU trial whose guest lost its network: the evidence, the verdict and
 * the one retry (see qenv.h). No QEMU here: qtrial.c feeds it the console
 * and the server's answer, and runs its attempts through otasim_qenv_run. */
#include "otasim/qenv.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"

int otasim_qenv_line(struct otasim_qenv *ev, int boot, int64_t boot_wall_ms, const char *line)
{
    const char *s = strstr(line, OTASIM_QENV_NET_LOST);

    /* the agent's own lines (journald: "ota-agent[PID]: ...") are never it */
    if (!s || strstr(line, "ota-agent["))
        return 0;
    if (!ev->lost_boot) {
        ev->lost_boot = boot;
        ev->lost_boot_wall_ms = boot_wall_ms;
        ota_strlcpy(ev->line, s, sizeof(ev->line));
    }
    return 1;
}

int64_t otasim_qenv_contact_ms(const char *device_json)
{
    static const char *const keys[] = {"registered_ms", "reenrolled_ms", "last_checkin_ms"};
    json_t *o = NULL;
    int64_t last = 0;

    if (!device_json || ota_json_parse(device_json, strlen(device_json), &o, NULL) < 0)
        return 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (json_is_integer(v) && json_integer_value(v) > last)
            last = json_integer_value(v);
    }
    json_decref(o);
    return last;
}

enum otasim_outcome otasim_qenv_verdict(enum otasim_outcome judged, const struct otasim_qenv *ev)
{
    if (judged != OTASIM_FAIL || !ev->lost_boot)
        return judged;
    /* the server heard from it since that power-on began: it had a network */
    if (ev->contact_ms && ev->contact_ms >= ev->lost_boot_wall_ms)
        return judged;
    return OTASIM_ENVIRONMENT;
}

void otasim_qenv_describe(const struct otasim_qenv *ev, char *buf, size_t cap)
{
    snprintf(buf, cap, "the guest's network never came up (power-on %d: %s)", ev->lost_boot,
             ev->line);
}

/* logs (one path a line) with the prefix dir/ replaced by to/, into out. */
static void rebase_logs(const char *logs, const char *dir, const char *to, char *out, size_t cap)
{
    size_t dl = strlen(dir), n = 0;

    out[0] = '\0';
    for (const char *l = logs; *l && n < cap;) {
        size_t len = strcspn(l, "\n");
        int in = len > dl && strncmp(l, dir, dl) == 0 && l[dl] == '/';
        int w = in ? snprintf(out + n, cap - n, "%s%.*s\n", to, (int)(len - dl), l + dl)
                   : snprintf(out + n, cap - n, "%.*s\n", (int)len, l);
        if (w < 0 || (size_t)w >= cap - n) {
            out[n] = '\0'; /* whole lines only */
            break;
        }
        n += (size_t)w;
        l += len + (l[len] == '\n');
    }
}

int otasim_qenv_run(otasim_qenv_attempt_fn fn, void *ctx, struct otasim_trial *tr,
                    struct ota_err *err)
{
    char first[sizeof(tr->detail)], moved[PATH_MAX + 16], logs[sizeof(tr->logs)];
    char again[sizeof(tr->detail)];
    int64_t started, took;
    size_t n;
    int r;

    if ((r = fn(ctx, 1, tr, err)) < 0 || tr->outcome != OTASIM_ENVIRONMENT)
        return r;
    ota_strlcpy(first, tr->detail, sizeof(first));
    started = tr->started_ms;
    took = tr->duration_ms;
    snprintf(moved, sizeof(moved), "%s.attempt-1", tr->dir);
    if ((r = ota_fs_remove_tree(moved, err)) < 0)
        return r;
    if (rename(tr->dir, moved) < 0)
        return ota_err_set(err, errno, "keeping attempt 1: %s -> %s: %s", tr->dir, moved,
                           strerror(errno));
    rebase_logs(tr->logs, tr->dir, moved, logs, sizeof(logs));
    free(tr->state_lines); /* the retry's lines are the trial's */
    tr->state_lines = NULL;
    r = fn(ctx, 2, tr, err);
    tr->started_ms = started;
    tr->duration_ms += took;
    /* attempt 1's console logs first, as far as they fit */
    n = strlen(logs);
    if (n + strlen(tr->logs) < sizeof(logs))
        memcpy(logs + n, tr->logs, strlen(tr->logs) + 1);
    ota_strlcpy(tr->logs, logs, sizeof(tr->logs));
    if (r < 0)
        return r;
    ota_strlcpy(again, tr->detail, sizeof(again));
    if (tr->outcome == OTASIM_ENVIRONMENT)
        snprintf(tr->detail, sizeof(tr->detail), "twice: attempt 1: %.400s; attempt 2: %.400s",
                 first, again);
    else if (tr->outcome == OTASIM_PASS)
        snprintf(tr->detail, sizeof(tr->detail), "passed on a retry (attempt 1: %.900s)", first);
    else
        snprintf(tr->detail, sizeof(tr->detail), "%.600s (on a retry; attempt 1: %.350s)", again,
                 first);
    return 0;
}
