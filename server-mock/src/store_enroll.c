/* The store's side of enrollment (docs/protocol.md "Register"): a known
 * device's current token hash, and the admin's one-time approvals of a
 * re-enrollment (table reenroll_grants). */
#include "store_impl.h"

#include <errno.h>
#include <string.h>

static const char SQL_TOKEN_OF[] = "SELECT token_sha256 FROM devices WHERE id = ?";
static const char SQL_GRANT_ADD[] =
    "INSERT OR REPLACE INTO reenroll_grants(id, granted_ms) SELECT id, ?2 FROM devices"
    " WHERE id = ?1";
static const char SQL_GRANT_TAKE[] = "DELETE FROM reenroll_grants WHERE id = ?";

int otasrv_store_device_token_of(struct otasrv_store *s, const char *id, char ret_sha[65],
                                 struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_TOKEN_OF, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    r = otasrv_db_row(c, st, "device token", err);
    if (r == 1) {
        ota_strlcpy(ret_sha, otasrv_db_col_text(st, 0), 65);
        r = 0;
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no device %s", id);
    }
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}

/* One statement, committed before it returns (autocommit). */
static int exec_id(struct otasrv_store *s, const char *sql, const char *id, int64_t ms,
                   int *ret_changes, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, sql, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    if (ms >= 0)
        sqlite3_bind_int64(st, 2, ms);
    if ((r = otasrv_db_step_done(c, st, "re-enrollment approval", err)) < 0)
        goto out;
    *ret_changes = sqlite3_changes(c->db);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_reenroll_allow(struct otasrv_store *s, const char *id, int64_t now_ms,
                                struct ota_err *err)
{
    int n = 0, r = exec_id(s, SQL_GRANT_ADD, id, now_ms, &n, err);

    if (r == 0 && n == 0)
        r = ota_err_set(err, ENOENT, "no device %s", id);
    return r;
}

int otasrv_store_reenroll_take(struct otasrv_store *s, const char *id, struct ota_err *err)
{
    int n = 0, r = exec_id(s, SQL_GRANT_TAKE, id, -1, &n, err);

    return r < 0 ? r : n > 0;
}
