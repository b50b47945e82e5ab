/* Release guards: what a signed release must also be to be installed here.
 *
 * The signature says who made a release, not that it is meant for this
 * device's software: a key that signs several products signs releases of
 * all of them. The product guard binds a release to the product the device
 * runs (DESIGN.md, "Which product"). */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The product name releases of kind must carry: the config's, else the
 * name recorded at the first committed install of that kind ("" = none yet:
 * any name, and the commit records it). */
static void product_of(struct ota_agent *a, enum ota_kind kind, char *buf, size_t cap,
                       const char **ret_from)
{
    const char *cfg = kind == OTA_KIND_APP ? a->cfg.product : a->cfg.rootfs_product;
    char key[32];

    if (cfg[0]) {
        ota_strlcpy(buf, cfg, cap);
        *ret_from = kind == OTA_KIND_APP ? "[agent] product" : "[rootfs] product";
        return;
    }
    snprintf(key, sizeof(key), "%s.name", ota_kind_names[kind]);
    if (a->ops.store->kv_get(a->ops.store_ctx, key, buf, cap, NULL) < 0)
        buf[0] = '\0';
    *ret_from = "the first install";
}

int core_guard_product(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err)
{
    char want[64];
    const char *from;

    product_of(a, m->kind, want, sizeof(want), &from);
    if (want[0] && strcmp(want, m->name) != 0)
        return ota_err_set(err, OTA_E_REFUSED,
                           "release %s %s is another product: this device runs '%s' (%s)", m->name,
                           m->version, want, from);
    return 0;
}

int core_guard_record(struct ota_agent *a, const struct ota_manifest *m, struct ota_err *err)
{
    char key[32];

    snprintf(key, sizeof(key), "%s.name", ota_kind_names[m->kind]);
    return a->ops.store->kv_set(a->ops.store_ctx, key, m->name, err);
}

int core_guard_rollback(struct ota_agent *a, const struct ota_manifest *m, const char *current,
                        struct ota_err *err)
{
    int64_t now_ms = a->ops.clock->wall_ms(a->ops.clock_ctx);

    return ota_manifest_check_rollback(m, current, now_ms / 1000, err);
}
