/* A rollout's rollback target (previous_release_id) checked at creation
 * against what ota-agent will install (docs/protocol.md, "The definition"):
 * a signed rollback order of the same product (manifest name: the agent
 * refuses another product's release) and kind, at a version older than the
 * rollout's release. */
#include <errno.h>
#include <string.h>

#include "ota/manifest.h"
#include "ota/version.h"
#include "otasrv/api_rollouts.h"
#include "otasrv/server.h"

static int manifest_of(const struct otasrv_release *rel, struct ota_manifest *m,
                       struct ota_err *err)
{
    int r = ota_manifest_parse(rel->manifest, strlen(rel->manifest), m, err);

    return r < 0 ? ota_err_prefix(err, r, "release %s: its manifest", rel->id) : 0;
}

static int check_pair(const struct otasrv_release *rel, const struct otasrv_release *prev,
                      struct ota_err *err)
{
    struct ota_manifest m, pm;
    int cmp, r;

    if (strcmp(rel->format, "ota") != 0 || strcmp(prev->format, "ota") != 0)
        return 0; /* an SWUpdate .swu: the device's swupdate decides */
    if ((r = manifest_of(rel, &m, err)) < 0 || (r = manifest_of(prev, &pm, err)) < 0)
        return r;
    if (!pm.rollback)
        return ota_err_set(err, EINVAL,
                           "release %s is not a rollback order (its signed manifest lacks "
                           "\"rollback\": true; ota-pack build --rollback): the agents refuse to "
                           "go back to an older version with it",
                           prev->id);
    if (strcmp(pm.name, m.name) != 0)
        return ota_err_set(err, EINVAL,
                           "release %s is a release of %s, release_id %s one of %s: the agents "
                           "refuse another product's release",
                           prev->id, pm.name, rel->id, m.name);
    if (pm.kind != m.kind)
        return ota_err_set(err, EINVAL, "release %s is a%s %s release, release_id %s a%s %s one",
                           prev->id, pm.kind == OTA_KIND_APP ? "n" : "", ota_kind_names[pm.kind],
                           rel->id, m.kind == OTA_KIND_APP ? "n" : "", ota_kind_names[m.kind]);
    if ((r = ota_version_cmp(pm.version, m.version, &cmp)) < 0)
        return ota_err_set(err, -r, "versions %s, %s: not comparable", pm.version, m.version);
    if (cmp >= 0)
        return ota_err_set(err, EINVAL,
                           "release %s's version %s is not older than release_id %s's %s: "
                           "a rollback goes back",
                           prev->id, pm.version, rel->id, m.version);
    return 0;
}

int otasrv_rollback_target_check(struct otasrv_srv *srv, const char *release_id,
                                 const char *previous_id, struct ota_err *err)
{
    struct otasrv_release *rel = NULL, *prev = NULL;
    int r;

    if ((r = otasrv_store_release_get(srv->store, release_id, &rel, err)) < 0 ||
        (r = otasrv_store_release_get(srv->store, previous_id, &prev, err)) < 0)
        goto out;
    r = check_pair(rel, prev, err);
out:
    otasrv_release_free(rel);
    otasrv_release_free(prev);
    return r;
}
