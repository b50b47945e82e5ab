/* The store's status reports: add (duplicates ignored), whether a device
 * has a final report for an update (cached), the list. */
#include "store_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char SQL_REP_ADD[] =
    "INSERT OR IGNORE INTO reports(device, update_id, rollout_id, version, kind, state, status,"
    " reason, ts, received_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
static const char SQL_REP_FINALS[] =
    "SELECT DISTINCT update_id FROM reports WHERE device = ? AND status <> 'in_progress'";

int otasrv_store_report_add(struct otasrv_store *s, const char *device,
                            const struct otasrv_report_in *rep, int64_t now_ms, int *ret_dup,
                            struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_REP_ADD, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, device);
    otasrv_db_bind_text(st, 2, rep->update_id);
    otasrv_db_bind_text(st, 3, rep->rollout_id ? rep->rollout_id : "");
    otasrv_db_bind_text(st, 4, rep->version ? rep->version : "");
    otasrv_db_bind_text(st, 5, rep->kind ? rep->kind : "");
    otasrv_db_bind_text(st, 6, rep->state);
    otasrv_db_bind_text(st, 7, rep->status);
    otasrv_db_bind_text(st, 8, rep->reason ? rep->reason : "");
    sqlite3_bind_int64(st, 9, rep->ts);
    sqlite3_bind_int64(st, 10, now_ms);
    r = otasrv_db_step_done(c, st, "report", err);
    if (r == 0)
        *ret_dup = sqlite3_changes(c->db) == 0;
    sqlite3_reset(st);
    if (r == 0 && (!rep->status || strcmp(rep->status, "in_progress") != 0)) {
        /* Committed: the cached list of finals follows (commit order). */
        struct dev *d;
        pthread_mutex_lock(&s->mlock);
        s->rep_gen++;
        d = store_dev_find(s, device);
        if (d && d->finals_known && !store_finals_has(d, rep->update_id))
            store_finals_add(d, rep->update_id);
        pthread_mutex_unlock(&s->mlock);
    }
out:
    store_release(s, c);
    return r;
}

int otasrv_store_report_final(struct otasrv_store *s, const char *device, const char *update_id,
                              int *ret, struct ota_err *err)
{
    struct otasrv_db *c;
    sqlite3_stmt *st;
    struct dev *d, tmp = {0};
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    d = store_dev_find(s, device);
    if (d && d->finals_known) {
        *ret = store_finals_has(d, update_id);
        pthread_mutex_unlock(&s->mlock);
        return 0;
    }
    gen = s->rep_gen;
    pthread_mutex_unlock(&s->mlock);
    /* All the device's finals at once: later questions need no SQL. */
    tmp.finals_known = 1;
    c = store_acquire(s);
    if ((r = otasrv_db_prep(c, SQL_REP_FINALS, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, device);
    while ((r = otasrv_db_row(c, st, "report", err)) == 1)
        store_finals_add(&tmp, otasrv_db_col_text(st, 0));
    sqlite3_reset(st);
out:
    store_release(s, c);
    if (r == 0 && !tmp.finals_known)
        r = ota_err_set(err, ENOMEM, "out of memory");
    if (r == 0) {
        *ret = store_finals_has(&tmp, update_id);
        pthread_mutex_lock(&s->mlock);
        if (s->rep_gen == gen && (d = store_dev_get(s, device)) && !d->finals_known) {
            d->finals = tmp.finals;
            d->n_finals = tmp.n_finals;
            d->finals_known = 1;
            tmp.finals = NULL;
            tmp.n_finals = 0;
        }
        pthread_mutex_unlock(&s->mlock);
    }
    for (size_t i = 0; i < tmp.n_finals; i++)
        free(tmp.finals[i]);
    free(tmp.finals);
    return r;
}

int otasrv_store_reports_list(struct otasrv_store *s, const char *device, const char *update_id,
                              int64_t limit, int64_t offset, json_t **ret, struct ota_err *err)
{
    static const char where[] =
        " WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR update_id = ?2)";
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st = NULL;
    json_t *out = NULL, *arr;
    int r = 0;

    if ((r = otasrv_db_prepare(c,
                               "SELECT count(*) FROM reports WHERE (?1 IS NULL OR device = ?1)"
                               " AND (?2 IS NULL OR update_id = ?2)",
                               &st, "reports", err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, device);
    otasrv_db_bind_text(st, 2, update_id);
    if ((r = otasrv_db_row(c, st, "reports", err)) < 0)
        goto out;
    out = json_pack("{s:[], s:I}", "reports", "total",
                    (json_int_t)(r ? sqlite3_column_int64(st, 0) : 0));
    r = 0;
    sqlite3_finalize(st);
    st = NULL;
    if (!out) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    arr = json_object_get(out, "reports");
    {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT seq, device, update_id, rollout_id, version, kind, state, status, reason,"
                 " ts, received_ms FROM reports%s ORDER BY seq LIMIT ?3 OFFSET ?4",
                 where);
        if ((r = otasrv_db_prepare(c, sql, &st, "reports", err)) < 0)
            goto out;
    }
    otasrv_db_bind_text(st, 1, device);
    otasrv_db_bind_text(st, 2, update_id);
    sqlite3_bind_int64(st, 3, limit);
    sqlite3_bind_int64(st, 4, offset);
    while ((r = otasrv_db_row(c, st, "reports", err)) == 1)
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "seq",
                           (json_int_t)sqlite3_column_int64(st, 0), "device_id",
                           otasrv_db_col_text(st, 1), "update_id", otasrv_db_col_text(st, 2),
                           "rollout_id", otasrv_db_col_text(st, 3), "version",
                           otasrv_db_col_text(st, 4), "kind", otasrv_db_col_text(st, 5), "state",
                           otasrv_db_col_text(st, 6), "status", otasrv_db_col_text(st, 7), "reason",
                           otasrv_db_col_text(st, 8), "ts", (json_int_t)sqlite3_column_int64(st, 9),
                           "received_ms", (json_int_t)sqlite3_column_int64(st, 10)));
    if (r < 0) {
        goto out;
    }
    *ret = out;
    out = NULL;
out:
    sqlite3_finalize(st);
    json_decref(out);
    store_release(s, c);
    return r;
}
