/* The store's applied-fault counts: per device and fault-plan rule. */
#include "store_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SQL_FAULT_APPLIED[] =
    "INSERT INTO fault_applied(device, rule, kind, applied, first_ms, last_ms)"
    " VALUES(?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT(device, rule) DO UPDATE SET"
    " applied = applied + 1, kind = excluded.kind, last_ms = excluded.last_ms";

int otasrv_store_fault_applied(struct otasrv_store *s, const char *device, const char *rule,
                               const char *kind, int64_t now_ms, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_FAULT_APPLIED, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, device ? device : "");
    otasrv_db_bind_text(st, 2, rule);
    otasrv_db_bind_text(st, 3, kind);
    sqlite3_bind_int64(st, 4, now_ms);
    r = otasrv_db_step_done(c, st, "applied faults", err);
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}

/* One device's rows into {"device": id, "rules": [...]}, appended to arr. */
static json_t *device_entry(json_t *arr, const char *device)
{
    json_t *last = json_array_get(arr, json_array_size(arr) - 1);

    if (last && strcmp(json_string_value(json_object_get(last, "device")), device) == 0)
        return last;
    last = json_pack("{s:s, s:[]}", "device", device, "rules");
    if (!last || json_array_append_new(arr, last) < 0)
        return NULL;
    return last;
}

int otasrv_store_faults_applied(struct otasrv_store *s, const char *device, json_t **ret,
                                struct ota_err *err)
{
    static const char sql[] = "SELECT device, rule, kind, applied, first_ms, last_ms"
                              " FROM fault_applied WHERE (?1 IS NULL OR device = ?1)"
                              " ORDER BY device, rule";
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    int r = 0;

    if (!arr) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    if ((r = otasrv_db_prepare(c, sql, &st, "applied faults", err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, device);
    while ((r = otasrv_db_row(c, st, "applied faults", err)) == 1) {
        json_t *dev = device_entry(arr, otasrv_db_col_text(st, 0));
        json_t *row =
            json_pack("{s:s, s:s, s:I, s:I, s:I}", "rule", otasrv_db_col_text(st, 1), "kind",
                      otasrv_db_col_text(st, 2), "applied", (json_int_t)sqlite3_column_int64(st, 3),
                      "first_ms", (json_int_t)sqlite3_column_int64(st, 4), "last_ms",
                      (json_int_t)sqlite3_column_int64(st, 5));
        if (!dev || !row || json_array_append_new(json_object_get(dev, "rules"), row) < 0) {
            r = ota_err_set(err, ENOMEM, "out of memory");
            goto out;
        }
    }
    if (r < 0) {
        goto out;
    }
    *ret = arr;
    arr = NULL;
out:
    sqlite3_finalize(st);
    json_decref(arr);
    store_release(s, c);
    return r;
}

int otasrv_store_faults_applied_clear(struct otasrv_store *s, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    int r = otasrv_db_exec(c, "DELETE FROM fault_applied", err);

    store_release(s, c);
    return r;
}
