/* The admin API's tokens and their roles (docs/protocol.md "Admin API"):
 * the operator token (--admin-token / --admin-token-file, kept hashed in
 * the database) may do everything; the read-only token
 * (--readonly-admin-token / --readonly-admin-token-file, its hash kept in
 * memory) may read: GET and HEAD on the admin API and /metrics, and every
 * other method gets 403 naming the role. Tokens are compared by their
 * SHA-256 with otasrv_secret_eq() (constant time). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "otasrv/auth.h"
#include "otasrv/server.h"

#define TOKEN_MAX 128

/* The first line of path (trailing white space cut) into token; -ENOENT
 * if the file is missing or empty. */
static int read_token(const char *path, char token[TOKEN_MAX + 1], struct ota_err *err)
{
    char *text = NULL;
    size_t n = 0;
    int r = ota_fs_read_all(path, 4096, &text, &n, err);

    while (r == 0 && n > 0 && isspace((unsigned char)text[n - 1]))
        text[--n] = '\0';
    if (r == 0 && (n == 0 || n > TOKEN_MAX))
        r = ota_err_set(err, n ? EINVAL : ENOENT, "%s: %s", path,
                        n ? "a token of at most 128 bytes is expected" : "empty");
    if (r == 0)
        ota_strlcpy(token, text, TOKEN_MAX + 1);
    free(text);
    return r;
}

/* The operator token: given, read from the token file, or generated into it. */
static int setup_operator(struct otasrv_srv *srv, struct ota_err *err)
{
    char path[4200], token[TOKEN_MAX + 1], sha[65];
    int r;

    if (srv->cfg.admin_token) {
        ota_strlcpy(token, srv->cfg.admin_token, sizeof(token));
    } else {
        if (srv->cfg.admin_token_file)
            ota_strlcpy(path, srv->cfg.admin_token_file, sizeof(path));
        else
            snprintf(path, sizeof(path), "%s/admin.token", srv->cfg.data_dir);
        if (read_token(path, token, NULL) < 0) {
            if ((r = otasrv_random_hex(token, 24)) < 0)
                return ota_err_set(err, -r, "making an admin token");
            strcat(token, "\n");
            r = ota_fs_write_atomic(path, token, strlen(token), 0600, err);
            token[strlen(token) - 1] = '\0';
            if (r < 0)
                return r;
        }
    }
    if (!token[0])
        return ota_err_set(err, EINVAL, "the admin token is empty");
    if ((r = otasrv_sha_hex(token, sha)) < 0)
        return ota_err_set(err, -r, "hashing the admin token");
    return otasrv_store_admin_token_set(srv->store, sha, err);
}

int otasrv_admin_tokens_setup(struct otasrv_srv *srv, struct ota_err *err)
{
    char token[TOKEN_MAX + 1];
    int r;

    if ((r = setup_operator(srv, err)) < 0)
        return r;
    srv->admin_ro_sha[0] = '\0';
    if (srv->cfg.readonly_admin_token && srv->cfg.readonly_admin_token_file)
        return ota_err_set(err, EINVAL,
                           "--readonly-admin-token and --readonly-admin-token-file: choose one");
    if (srv->cfg.readonly_admin_token) {
        if (strlen(srv->cfg.readonly_admin_token) > TOKEN_MAX)
            return ota_err_set(err, EINVAL, "the read-only admin token is longer than 128 bytes");
        ota_strlcpy(token, srv->cfg.readonly_admin_token, sizeof(token));
    } else if (srv->cfg.readonly_admin_token_file) {
        r = read_token(srv->cfg.readonly_admin_token_file, token, err);
        if (r < 0)
            return ota_err_prefix(err, r, "the read-only admin token");
    } else {
        return 0;
    }
    if (!token[0])
        return ota_err_set(err, EINVAL, "the read-only admin token is empty");
    if ((r = otasrv_sha_hex(token, srv->admin_ro_sha)) < 0)
        return ota_err_set(err, -r, "hashing the read-only admin token");
    /* the same secret for both roles would make the read-only one an operator */
    if (otasrv_store_admin_token_check(srv->store, srv->admin_ro_sha, NULL) == 0) {
        srv->admin_ro_sha[0] = '\0';
        return ota_err_set(err, EINVAL, "the read-only admin token is the admin token");
    }
    return 0;
}

enum otasrv_admin_role otasrv_admin_role_of(struct otasrv_srv *srv, const char *sha)
{
    if (otasrv_store_admin_token_check(srv->store, sha, NULL) == 0)
        return OTASRV_ROLE_OPERATOR;
    if (srv->admin_ro_sha[0] && otasrv_secret_eq(sha, srv->admin_ro_sha))
        return OTASRV_ROLE_READER;
    return OTASRV_ROLE_NONE;
}

int otasrv_admin_may(struct otasrv_req *req, const char *method, unsigned *ret_status, char *why,
                     size_t cap)
{
    char sha[65];
    enum otasrv_admin_role role = OTASRV_ROLE_NONE;

    if (otasrv_bearer_sha(req, sha) == 0)
        role = otasrv_admin_role_of(req->srv, sha);
    if (role == OTASRV_ROLE_OPERATOR ||
        (role == OTASRV_ROLE_READER && (strcmp(method, "GET") == 0 || req->is_head)))
        return 0;
    if (role == OTASRV_ROLE_NONE) {
        *ret_status = 401;
        snprintf(why, cap, "admin token required");
        return -EACCES;
    }
    *ret_status = 403;
    snprintf(why, cap,
             "read-only admin token: %s %.128s changes the server and needs the operator "
             "(--admin-token) token",
             method, req->path);
    return -EPERM;
}

int otasrv_require_admin(struct otasrv_req *req, enum otasrv_result *ret_reply)
{
    char why[256];
    unsigned status;
    int r = otasrv_admin_may(req, req->method, &status, why, sizeof(why));

    if (r < 0)
        *ret_reply = otasrv_reply_error(req, status, "%s", why);
    return r;
}
