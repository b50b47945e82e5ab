/* The store's in-memory caches (store_impl.h; mlock held unless told):
 * devices by id and by token hash, their inventory, heartbeat and final
 * reports, and the published releases. How they stay coherent: store.c. */
#include "ota/hash.h"
#include "store_impl.h"
#include "otasrv/auth.h"

#include <stdlib.h>
#include <string.h>

void store_dev_free(struct dev *d)
{
    for (int i = 0; i < NINV; i++)
        free(d->inv[i]);
    json_decref(d->view);
    for (size_t i = 0; i < d->n_finals; i++)
        free(d->finals[i]);
    free(d->finals);
    free(d);
}

static size_t hash(const char *k)
{
    return ota_fnv1a32(k) % NBUCKET;
}

struct dev *store_dev_find(struct otasrv_store *s, const char *id)
{
    struct dev *d = s->by_id[hash(id)];

    while (d && strcmp(d->id, id) != 0)
        d = d->next;
    return d;
}

/* Finds or adds; NULL on ENOMEM or an id too long to cache. */
struct dev *store_dev_get(struct otasrv_store *s, const char *id)
{
    struct dev *d = store_dev_find(s, id);
    size_t h;

    if (d || strlen(id) >= sizeof(d->id))
        return d;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    strcpy(d->id, id);
    h = hash(id);
    d->next = s->by_id[h];
    s->by_id[h] = d;
    return d;
}

struct dev *store_tok_find(struct otasrv_store *s, const char *sha)
{
    struct dev *d = s->by_tok[hash(sha)];

    while (d && !otasrv_secret_eq(d->token, sha))
        d = d->tnext;
    return d;
}

void store_tok_unlink(struct otasrv_store *s, struct dev *d)
{
    struct dev **p;

    if (!d->token[0])
        return;
    for (p = &s->by_tok[hash(d->token)]; *p; p = &(*p)->tnext) {
        if (*p == d) {
            *p = d->tnext;
            break;
        }
    }
    d->tnext = NULL;
    d->token[0] = '\0';
}

void store_tok_link(struct otasrv_store *s, struct dev *d, const char *sha)
{
    size_t h;

    store_tok_unlink(s, d);
    if (strlen(sha) >= sizeof(d->token))
        return;
    strcpy(d->token, sha);
    h = hash(sha);
    d->tnext = s->by_tok[h];
    s->by_tok[h] = d;
}

static json_t *json_text(const char *text, const char *fallback)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_loads(fallback, 0, NULL);
}

/* The rollout engine's view of a device (otasrv_store_device_view), built
 * once per inventory change instead of once per check-in. */
static json_t *inv_view(const struct dev *d)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s}", "device_id", d->id, "device_type",
                     d->inv[0], "group", d->inv[1], "tags", json_text(d->inv[2], "[]"), "versions",
                     json_text(d->inv[3], "{}"), "attributes", json_text(d->inv[6], "{}"),
                     "timezone", d->inv[7]);
}

/* Sets the cached inventory (column texts in v); unknown again on ENOMEM. */
void store_inv_set(struct dev *d, const char *const v[NINV])
{
    json_t *vers;

    d->inv_known = 1;
    for (int i = 0; i < NINV; i++) {
        free(d->inv[i]);
        d->inv[i] = strdup(v[i] ? v[i] : "");
        if (!d->inv[i])
            d->inv_known = 0;
    }
    json_decref(d->view);
    d->view = d->inv_known ? inv_view(d) : NULL;
    if (!d->view)
        d->inv_known = 0;
    memset(&d->brief, 0, sizeof(d->brief));
    ota_strlcpy(d->brief.type, d->inv[0] ? d->inv[0] : "", sizeof(d->brief.type));
    vers = d->inv[3] ? json_loads(d->inv[3], 0, NULL) : NULL;
    for (int k = 0; k < OTA_KIND_MAX; k++) {
        const char *x = json_string_value(json_object_get(vers, ota_kind_names[k]));
        ota_strlcpy(d->brief.version[k], x ? x : "", sizeof(d->brief.version[k]));
    }
    json_decref(vers);
}

/* 1 if every field inv gives equals the cached one. */
int store_inv_same(const struct dev *d, const struct otasrv_device_inv *inv)
{
    const char *v[NINV] = {inv->type,  inv->group, inv->tags,       inv->versions,
                           inv->slots, inv->state, inv->attributes, inv->timezone};

    for (int i = 0; i < NINV; i++)
        if (v[i] && strcmp(v[i], d->inv[i]) != 0)
            return 0;
    return 1;
}

void store_hb_touch(struct otasrv_store *s, struct dev *d, int64_t now_ms)
{
    d->last_ms = now_ms;
    d->checkins++;
    if (!d->dirty) {
        d->dirty = 1;
        d->dnext = s->dirty;
        s->dirty = d;
    }
}

/* Adds a final report's update id; the list is unknown again on ENOMEM. */
void store_finals_add(struct dev *d, const char *update_id)
{
    char **nv = realloc(d->finals, (d->n_finals + 1) * sizeof(*nv));

    if (nv)
        d->finals = nv;
    if (!nv || !(d->finals[d->n_finals] = strdup(update_id))) {
        for (size_t i = 0; i < d->n_finals; i++)
            free(d->finals[i]);
        d->n_finals = 0;
        d->finals_known = 0;
        return;
    }
    d->n_finals++;
}

int store_finals_has(const struct dev *d, const char *update_id)
{
    for (size_t i = 0; i < d->n_finals; i++)
        if (strcmp(d->finals[i], update_id) == 0)
            return 1;
    return 0;
}

/* Sets the in-memory heartbeat of device id into its JSON object. */
void store_hb_merge(struct otasrv_store *s, json_t *o)
{
    const char *id = json_string_value(json_object_get(o, "device_id"));
    struct dev *d;

    if (!id)
        return;
    pthread_mutex_lock(&s->mlock);
    d = store_dev_find(s, id);
    if (d && d->hb_known) {
        json_object_set_new(o, "last_checkin_ms", json_integer((json_int_t)d->last_ms));
        json_object_set_new(o, "checkins", json_integer((json_int_t)d->checkins));
    }
    pthread_mutex_unlock(&s->mlock);
}

void store_pub_put_locked(struct otasrv_published_set *set)
{
    if (!set || --set->ref > 0)
        return;
    for (size_t i = 0; i < set->n; i++)
        free(set->v[i].rel.manifest);
    free(set->v);
    free(set);
}

/* After a release write (wlock held): the cached set is stale. */
void store_pub_invalidate(struct otasrv_store *s)
{
    pthread_mutex_lock(&s->mlock);
    s->rel_gen++;
    if (s->pub)
        store_pub_put_locked(s->pub);
    s->pub = NULL;
    pthread_mutex_unlock(&s->mlock);
}
