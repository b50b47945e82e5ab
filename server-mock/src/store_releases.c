/* The store's releases: add, get, list, payload, publish, delete, and the
 * cached set of published releases with their parsed manifests. */
#include "store_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void otasrv_release_free(struct otasrv_release *r)
{
    if (!r)
        return;
    free(r->manifest);
    free(r);
}

#define REL_COLS                                                                                   \
    "id, name, version, kind, manifest, signature, payload_name, payload_path, size, sha256,"      \
    " published, published_ms, created_ms, format, compat"
static const char SQL_REL_ADD[] =
    "INSERT INTO releases(" REL_COLS ", seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
    " ?12, ?13, ?14, ?15, (SELECT coalesce(max(seq), 0) + 1 FROM releases))";
static const char SQL_REL_GET[] = "SELECT " REL_COLS " FROM releases WHERE id = ?";
static const char SQL_REL_LIST[] = "SELECT " REL_COLS " FROM releases WHERE published >= ?"
                                   " ORDER BY published DESC, seq DESC";
static const char SQL_REL_PAYLOAD[] = "UPDATE releases SET payload_path = ?2 WHERE id = ?1";
static const char SQL_REL_PUBLISH[] =
    "UPDATE releases SET published = 1, published_ms = CASE WHEN published THEN published_ms"
    " ELSE ?2 END, seq = CASE WHEN published THEN seq ELSE"
    " (SELECT coalesce(max(seq), 0) + 1 FROM releases) END WHERE id = ?1";
static const char SQL_REL_DELETE[] = "DELETE FROM releases WHERE id = ?";

static struct otasrv_release *release_row(sqlite3_stmt *st)
{
    struct otasrv_release *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    ota_strlcpy(r->id, otasrv_db_col_text(st, 0), sizeof(r->id));
    ota_strlcpy(r->name, otasrv_db_col_text(st, 1), sizeof(r->name));
    ota_strlcpy(r->version, otasrv_db_col_text(st, 2), sizeof(r->version));
    ota_strlcpy(r->kind, otasrv_db_col_text(st, 3), sizeof(r->kind));
    r->manifest = strdup(otasrv_db_col_text(st, 4));
    ota_strlcpy(r->signature, otasrv_db_col_text(st, 5), sizeof(r->signature));
    ota_strlcpy(r->payload_name, otasrv_db_col_text(st, 6), sizeof(r->payload_name));
    ota_strlcpy(r->payload_path, otasrv_db_col_text(st, 7), sizeof(r->payload_path));
    r->size = (uint64_t)sqlite3_column_int64(st, 8);
    ota_strlcpy(r->sha256, otasrv_db_col_text(st, 9), sizeof(r->sha256));
    r->published = sqlite3_column_int(st, 10);
    r->published_ms = sqlite3_column_int64(st, 11);
    r->created_ms = sqlite3_column_int64(st, 12);
    ota_strlcpy(r->format, otasrv_db_col_text(st, 13), sizeof(r->format));
    ota_strlcpy(r->compat, otasrv_db_col_text(st, 14), sizeof(r->compat));
    if (!r->manifest) {
        free(r);
        return NULL;
    }
    return r;
}

int otasrv_store_release_add(struct otasrv_store *s, const struct otasrv_release *rel,
                             struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r, rc;

    if ((r = otasrv_db_prep(c, SQL_REL_ADD, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, rel->id);
    otasrv_db_bind_text(st, 2, rel->name);
    otasrv_db_bind_text(st, 3, rel->version);
    otasrv_db_bind_text(st, 4, rel->kind);
    otasrv_db_bind_text(st, 5, rel->manifest);
    otasrv_db_bind_text(st, 6, rel->signature);
    otasrv_db_bind_text(st, 7, rel->payload_name);
    otasrv_db_bind_text(st, 8, rel->payload_path);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)rel->size);
    otasrv_db_bind_text(st, 10, rel->sha256);
    sqlite3_bind_int(st, 11, rel->published);
    sqlite3_bind_int64(st, 12, rel->published_ms);
    sqlite3_bind_int64(st, 13, rel->created_ms);
    otasrv_db_bind_text(st, 14, rel->format[0] ? rel->format : "ota");
    otasrv_db_bind_text(st, 15, rel->compat[0] ? rel->compat : "[]");
    rc = sqlite3_step(st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT) /* the id is taken: said so, not SQLite's words */
        r = ota_err_set(err, EEXIST, "release %s exists", rel->id);
    else if (rc != SQLITE_DONE)
        r = otasrv_db_fail(c->db, rc, "release", err);
    sqlite3_reset(st);
    if (r == 0)
        store_pub_invalidate(s);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_release_get(struct otasrv_store *s, const char *id, struct otasrv_release **ret,
                             struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_REL_GET, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    r = otasrv_db_row(c, st, "release", err);
    if (r == 1) {
        r = 0;
        struct otasrv_release *rel = release_row(st);
        if (rel)
            *ret = rel;
        else
            r = ota_err_set(err, ENOMEM, "out of memory");
    } else if (r == 0) {
        r = ota_err_set(err, ENOENT, "no release %s", id);
    }
    sqlite3_reset(st);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_release_list(struct otasrv_store *s, int published_only,
                              struct otasrv_release ***ret, size_t *ret_n, struct ota_err *err)
{
    struct otasrv_db *c = store_acquire(s);
    struct otasrv_release **v = NULL, **nv;
    size_t n = 0;
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, SQL_REL_LIST, &st, err)) < 0)
        goto out;
    sqlite3_bind_int(st, 1, published_only ? 1 : 0);
    while ((r = otasrv_db_row(c, st, "releases", err)) == 1) {
        nv = realloc(v, (n + 1) * sizeof(*v));
        if (!nv || !(nv[n] = release_row(st))) {
            v = nv ? nv : v;
            r = ota_err_set(err, ENOMEM, "out of memory");
            break;
        }
        v = nv;
        n++;
    }
    sqlite3_reset(st);
    if (r == 0) {
        *ret = v;
        *ret_n = n;
        v = NULL;
        n = 0;
    }
out:
    for (size_t i = 0; i < n; i++)
        otasrv_release_free(v[i]);
    free(v);
    store_release(s, c);
    return r;
}

int otasrv_store_published(struct otasrv_store *s, struct otasrv_published_set **ret,
                           struct ota_err *err)
{
    struct otasrv_published_set *set;
    struct otasrv_release **v = NULL;
    size_t n = 0;
    uint64_t gen;
    int r;

    pthread_mutex_lock(&s->mlock);
    if (s->pub) {
        s->pub->ref++;
        *ret = s->pub;
        pthread_mutex_unlock(&s->mlock);
        return 0;
    }
    gen = s->rel_gen;
    pthread_mutex_unlock(&s->mlock);
    if ((r = otasrv_store_release_list(s, 1, &v, &n, err)) < 0)
        return r;
    set = calloc(1, sizeof(*set));
    if (set && n)
        set->v = calloc(n, sizeof(*set->v));
    if (!set || (n && !set->v)) {
        r = ota_err_set(err, ENOMEM, "out of memory");
        free(set);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct otasrv_published *p = &set->v[i];
        p->rel = *v[i];
        v[i]->manifest = NULL; /* moved */
        p->manifest_ok =
            ota_manifest_parse(p->rel.manifest, strlen(p->rel.manifest), &p->m, NULL) == 0;
    }
    set->n = n;
    set->ref = 1;
    pthread_mutex_lock(&s->mlock);
    if (s->rel_gen == gen && !s->pub) { /* no release write since the read began */
        s->pub = set;
        set->ref++;
    }
    pthread_mutex_unlock(&s->mlock);
    *ret = set;
out:
    for (size_t i = 0; i < n; i++)
        otasrv_release_free(v[i]);
    free(v);
    return r;
}

void otasrv_store_published_put(struct otasrv_store *s, struct otasrv_published_set *set)
{
    if (!set)
        return;
    pthread_mutex_lock(&s->mlock);
    store_pub_put_locked(set);
    pthread_mutex_unlock(&s->mlock);
}

static int update_one(struct otasrv_store *s, const char *sql, const char *id, const char *text,
                      int64_t num, struct ota_err *err)
{
    struct otasrv_db *c = store_wacquire(s);
    sqlite3_stmt *st;
    int r;

    if ((r = otasrv_db_prep(c, sql, &st, err)) < 0)
        goto out;
    otasrv_db_bind_text(st, 1, id);
    if (text)
        otasrv_db_bind_text(st, 2, text);
    else if (sqlite3_bind_parameter_count(st) >= 2)
        sqlite3_bind_int64(st, 2, num);
    r = otasrv_db_step_done(c, st, "release", err);
    if (r == 0 && sqlite3_changes(c->db) == 0)
        r = ota_err_set(err, ENOENT, "no release %s", id);
    sqlite3_reset(st);
    if (r == 0)
        store_pub_invalidate(s);
out:
    store_release(s, c);
    return r;
}

int otasrv_store_release_set_payload(struct otasrv_store *s, const char *id, const char *path,
                                     struct ota_err *err)
{
    return update_one(s, SQL_REL_PAYLOAD, id, path, 0, err);
}

int otasrv_store_release_publish(struct otasrv_store *s, const char *id, int64_t now_ms,
                                 struct ota_err *err)
{
    return update_one(s, SQL_REL_PUBLISH, id, NULL, now_ms, err);
}

int otasrv_store_release_delete(struct otasrv_store *s, const char *id, struct ota_err *err)
{
    return update_one(s, SQL_REL_DELETE, id, NULL, 0, err);
}
