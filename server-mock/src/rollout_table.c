/* What a rollout reads of the store: a release's kind and version, a stored device as the
 * engine sees it, and the table of the devices a new rollout targets (api_rollouts_impl.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api_rollouts_impl.h"
#include "ota/manifest.h"
#include "otasrv/store.h"

int otasrv_rdev_cmp(const void *a, const void *b)
{
    return strcmp(((const struct otasrv_rollout_device *)a)->device_id,
                  ((const struct otasrv_rollout_device *)b)->device_id);
}

/* The kind ("app" or "rootfs") of a release, "" if unknown; its version into version (cap
 * 64) when not NULL. */
void otasrv_release_kind(struct otasrv_srv *srv, const char *rid, char *kind, size_t cap,
                         char *version)
{
    struct otasrv_release *rel = NULL;
    struct ota_manifest mf;

    kind[0] = '\0';
    if (version)
        version[0] = '\0';
    if (rid[0] && otasrv_store_release_get(srv->store, rid, &rel, NULL) == 0 &&
        ota_manifest_parse(rel->manifest, strlen(rel->manifest), &mf, NULL) == 0) {
        ota_strlcpy(kind, ota_kind_names[mf.kind], cap);
        if (version)
            ota_strlcpy(version, mf.version, 64);
    }
    otasrv_release_free(rel);
}

/* The engine's view of a stored device object (strings borrowed from dev). */
void otasrv_rdev_info(const json_t *dev, const char *kind, struct otasrv_info_room *room,
                      struct otasrv_device_info *info)
{
    const json_t *t = json_object_get(dev, "tags");
    const char **tags = room->tags;
    const char *k;
    size_t i;
    json_t *x;

    memset(info, 0, sizeof(*info));
    info->device_id = json_string_value(json_object_get(dev, "device_id"));
    info->device_type = json_string_value(json_object_get(dev, "device_type"));
    info->group = json_string_value(json_object_get(dev, "group"));
    json_array_foreach(t, i, x)
    {
        if (info->n_tags < 32 && json_is_string(x))
            tags[info->n_tags++] = json_string_value(x);
    }
    info->tags = tags;
    json_object_foreach((json_t *)json_object_get(dev, "attributes"), k, x)
    {
        if (info->n_attrs < OTASRV_ROLLOUT_MAX_ATTRS && json_is_string(x)) {
            room->akeys[info->n_attrs] = k;
            room->avals[info->n_attrs++] = json_string_value(x);
        }
    }
    info->attr_keys = room->akeys;
    info->attr_values = room->avals;
    info->timezone = json_string_value(json_object_get(dev, "timezone"));
    info->version =
        kind[0] ? json_string_value(json_object_get(json_object_get(dev, "versions"), kind)) : NULL;
}

/* A table of the registered devices that match r's filters, sorted. */
int otasrv_rollout_table(struct otasrv_srv *srv, const struct otasrv_rollout_def *def,
                         const char *kind, struct otasrv_rollout_device **ret, size_t *ret_n,
                         struct ota_err *err)
{
    struct otasrv_device_filter f = {0};
    struct otasrv_rollout_device *v = NULL, *nv;
    size_t n = 0, cap = 0;
    int r;

    f.limit = 1000;
    for (;;) {
        json_t *page = NULL, *devs, *dev;
        size_t i, got;
        if ((r = otasrv_store_devices_list(srv->store, &f, &page, err)) < 0)
            goto fail;
        devs = json_object_get(page, "devices");
        got = json_array_size(devs);
        json_array_foreach(devs, i, dev)
        {
            struct otasrv_device_info info;
            struct otasrv_info_room room;
            otasrv_rdev_info(dev, kind, &room, &info);
            if (!info.device_id || !otasrv_rollout_matches(def, &info, NULL))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    json_decref(page);
                    r = ota_err_set(err, ENOMEM, "out of memory");
                    goto fail;
                }
                v = nv;
            }
            if (otasrv_rollout_device_init(def->id, info.device_id, &v[n], NULL) == 0) {
                otasrv_rollout_canary_prep(def, &info, &v[n]);
                n++;
            }
        }
        json_decref(page);
        if (got < (size_t)f.limit)
            break;
        f.offset += f.limit;
    }
    if (n)
        qsort(v, n, sizeof(*v), otasrv_rdev_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
fail:
    free(v);
    return r;
}
