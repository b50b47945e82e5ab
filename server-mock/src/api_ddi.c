/* The hawkBit DDI face (Direct Device Integration API, as SWUpdate's
 * suricatta and rauc-hawkbit-updater speak it): docs/protocol.md "hawkBit
 * DDI face". Everything is under /{tenant}/controller/v1/{controllerId};
 * the tenant is not checked (this server holds one fleet), the controller
 * id is the device id.
 *
 * Mapping: an action is the rollout engine's offer to the device
 * (api_rollouts.h, the same decision an ota-agent check-in gets), one
 * action per (device, update_id), numbered by ddi_actions (ddi.h); its
 * artifact is the release's payload file. Feedback becomes a status report
 * that feeds the rollout; a rollout cancelled, rolled back, deleted or
 * superseded while an action is open makes that action a cancel action.
 * Bodies: unknown fields are ignored (hawkBit's Jackson setting), wrong
 * types or values are 400 and change nothing. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ota/inventory.h"
#include "ota/json.h"
#include "otasrv/api.h"
#include "otasrv/auth.h"
#include "otasrv/api_rollouts.h"
#include "otasrv/ddi.h"
#include "otasrv/events.h"
#include "otasrv/files.h"

#define DEFAULT_POLL_S 300
#define REASON_MAX     1024

static const char *const EXECUTIONS[] = {"closed",     "proceeding", "canceled",
                                         "scheduled",  "rejected",   "resumed",
                                         "downloaded", "download",   NULL};
static const char *const FINISHED[] = {"success", "failure", "none", NULL};

static int in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* "http://host:port/{tenant}/controller/v1/{id}" */
static void ctl_url(struct otasrv_req *req, char *buf, size_t cap)
{
    char base[512];

    otasrv_base_url(req, base, sizeof(base));
    snprintf(buf, cap, "%s/%s/controller/v1/%s", base, req->seg[0], req->seg[3]);
}

static enum otasrv_result reply_empty(struct otasrv_req *req)
{
    return otasrv_reply(req, 200, otasrv_resp_static("", 0));
}

/* ---- auth ---- */

/* The token after "<scheme> " in the Authorization header, or NULL. */
static const char *auth_token(struct otasrv_req *req, const char *scheme)
{
    const char *h = otasrv_header(req, "Authorization");
    size_t n = strlen(scheme);

    if (!h || strncasecmp(h, scheme, n) != 0 || h[n] != ' ')
        return NULL;
    h += n;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

/* 0 when the request may act for controller id: its own TargetToken (the
 * token the ota-agent face takes as Bearer) or the GatewayToken; *ret_gw 1
 * for the latter. Anything else is 401, as hawkBit answers. */
static int ddi_auth(struct otasrv_req *req, const char *id, int *ret_gw, enum otasrv_result *ret)
{
    const char *tok;
    char sha[65], who[129];

    *ret_gw = 0;
    if ((tok = auth_token(req, "TargetToken")) != NULL) {
        if (otasrv_sha_hex(tok, sha) == 0 &&
            otasrv_store_device_by_token(req->srv->store, sha, who, sizeof(who), NULL) == 0 &&
            strcmp(who, id) == 0)
            return 0;
    } else if ((tok = auth_token(req, "GatewayToken")) != NULL) {
        if (req->srv->ddi_gw_sha[0] && otasrv_sha_hex(tok, sha) == 0 &&
            otasrv_secret_eq(sha, req->srv->ddi_gw_sha)) {
            *ret_gw = 1;
            return 0;
        }
    }
    *ret =
        otasrv_reply_error(req, 401, "TargetToken of controller %s or GatewayToken required", id);
    return -EACCES;
}

/* A gateway poll of an unknown controller registers it (as hawkBit does),
 * with a token nobody knows (the device speaks through the gateway) and
 * the --ddi-device-type. */
static int register_target(struct otasrv_req *req, const char *id, struct ota_err *err)
{
    struct otasrv_device_inv inv = {0};
    char token[65], sha[65];
    int r, created = 0;

    if (strlen(id) >= 64)
        return ota_err_set(err, ENOENT, "controller id longer than 63 bytes");
    inv.type = req->srv->cfg.ddi_device_type ? req->srv->cfg.ddi_device_type : "ddi";
    if ((r = otasrv_random_hex(token, 32)) < 0 || (r = otasrv_sha_hex(token, sha)) < 0)
        return ota_err_set(err, -r, "cannot make a token");
    if ((r = otasrv_store_device_register(req->srv->store, id, sha, &inv, otasrv_now_ms(), &created,
                                          err)) < 0)
        return r;
    otasrv_events_publish(req->srv->events, NULL, "device_registered",
                          json_pack("{s:s, s:s, s:b, s:s}", "device", id, "device_type", inv.type,
                                    "created", created, "via", "ddi_gateway"));
    return 0;
}

/* ---- the poll ---- */

/* Whether an open action must become a cancel action: its rollout was
 * cancelled, rolled back or deleted, or the engine now offers another
 * update (a newer rollout, or the rollback order). */
static int must_cancel(struct otasrv_srv *srv, const struct otasrv_ddi_action *a, const char *uid)
{
    int st;

    if (a->state != OTASRV_DDI_OPEN || a->cancel_refused)
        return 0;
    if (uid && strcmp(uid, a->update_id) != 0)
        return 1;
    st = otasrv_rollouts_state(srv, a->rollout_id);
    return st < 0 || st == OTASRV_ROLLOUT_CANCELLED || st == OTASRV_ROLLOUT_ROLLED_BACK;
}

/* The release a DDI device gets for the release `offered` (its rollout's):
 * itself if it is a .swu; else the .swu of the same version and kind, if
 * the server has one (published first, then the newest), so that one
 * rollout of an ota-pack release updates ota-agent devices with the release
 * and SWUpdate devices with its .swu; else the offered release (its payload
 * is the artifact). */
static void ddi_release(struct otasrv_req *req, const char *offered, char *out, size_t cap)
{
    struct otasrv_release *rel = NULL, **v = NULL;
    size_t n = 0;

    ota_strlcpy(out, offered, cap);
    if (otasrv_store_release_get(req->srv->store, offered, &rel, NULL) < 0)
        return;
    if (strcmp(rel->format, "swu") != 0 &&
        otasrv_store_release_list(req->srv->store, 0, &v, &n, NULL) == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i]->format, "swu") == 0 && strcmp(v[i]->version, rel->version) == 0 &&
                strcmp(v[i]->kind, rel->kind) == 0) {
                ota_strlcpy(out, v[i]->id, cap);
                break;
            }
        for (size_t i = 0; i < n; i++)
            otasrv_release_free(v[i]);
        free(v);
    }
    otasrv_release_free(rel);
}

/* The device's current action after asking the rollouts: *ret_have 1 with
 * *a (open or canceling), 0 for none. Under otasrv_ddi_lock(). */
static int decide(struct otasrv_req *req, const char *id, struct otasrv_ddi_action *a,
                  int *ret_have, struct ota_err *err)
{
    struct otasrv_ddi *ddi = req->srv->ddi;
    json_t *offer = NULL;
    const char *uid = NULL;
    int r, have;

    if ((r = otasrv_ddi_action_active(ddi, id, a, err)) < 0)
        return r;
    have = r == 1;
    if ((r = otasrv_rollouts_offer(req, id, &offer, err)) < 0)
        return r;
    r = 0;
    /* a blue_green standby answer has an "update" key: not a DDI action */
    if (offer && !json_object_get(offer, "update"))
        uid = json_string_value(json_object_get(offer, "update_id"));
    if (have) {
        if (must_cancel(req->srv, a, uid)) {
            r = otasrv_ddi_action_set(ddi, a->id, OTASRV_DDI_CANCELING, 0, otasrv_now_ms(), err);
            a->state = OTASRV_DDI_CANCELING;
        }
    } else if (uid) {
        /* one action per update: a finished one is not offered again */
        if ((r = otasrv_ddi_action_find(ddi, id, uid, a, err)) == 0) {
            memset(a, 0, sizeof(*a));
            ota_strlcpy(a->device, id, sizeof(a->device));
            ota_strlcpy(a->update_id, uid, sizeof(a->update_id));
            ota_strlcpy(a->rollout_id, json_string_value(json_object_get(offer, "rollout_id")),
                        sizeof(a->rollout_id));
            ddi_release(req, json_string_value(json_object_get(offer, "release_id")), a->release_id,
                        sizeof(a->release_id));
            r = otasrv_ddi_action_add(ddi, a, otasrv_now_ms(), err);
            have = r == 0;
        } else if (r == 1) {
            r = 0;
        }
    }
    json_decref(offer);
    *ret_have = have && r == 0;
    return r;
}

static json_t *href_obj(const char *href)
{
    return json_pack("{s:s}", "href", href);
}

static enum otasrv_result do_base(struct otasrv_req *req, const char *id, int gw)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_device_inv inv = {0};
    struct otasrv_ddi_action a;
    struct ota_err err = {0};
    unsigned s = srv->cfg.ddi_poll_s ? srv->cfg.ddi_poll_s : DEFAULT_POLL_S;
    char sleep[16], url[1400], href[1600];
    json_t *links;
    int r, wanted = 0, have = 0;

    r = otasrv_store_device_checkin(srv->store, id, &inv, otasrv_now_ms(), NULL, &err);
    if (r == -ENOENT && gw && (r = register_target(req, id, &err)) == 0)
        r = otasrv_store_device_checkin(srv->store, id, &inv, otasrv_now_ms(), NULL, &err);
    if (r == -ENOENT)
        return otasrv_reply_error(req, 404, "no controller %s", id);
    if (r < 0 || (r = otasrv_ddi_target(srv->ddi, id, otasrv_now_ms(), &wanted, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    otasrv_ddi_lock(srv->ddi);
    r = decide(req, id, &a, &have, &err);
    otasrv_ddi_unlock(srv->ddi);
    if (r < 0)
        return otasrv_reply_store_error(req, r, &err);
    if (s > 86399)
        s = 86399; /* SWUpdate reads HH:MM:SS only: below a day */
    snprintf(sleep, sizeof(sleep), "%02u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    ctl_url(req, url, sizeof(url));
    links = json_object();
    if (have && a.state == OTASRV_DDI_CANCELING) {
        snprintf(href, sizeof(href), "%s/cancelAction/%" PRId64, url, a.id);
        json_object_set_new(links, "cancelAction", href_obj(href));
    } else if (have) {
        snprintf(href, sizeof(href), "%s/deploymentBase/%" PRId64, url, a.id);
        json_object_set_new(links, "deploymentBase", href_obj(href));
    }
    if (wanted) { /* only until the device sent its attributes: see protocol.md */
        snprintf(href, sizeof(href), "%s/configData", url);
        json_object_set_new(links, "configData", href_obj(href));
    }
    return otasrv_reply_json(
        req, 200,
        json_pack("{s:{s:{s:s}}, s:o}", "config", "polling", "sleep", sleep, "_links", links));
}

/* ---- actions ---- */

/* The device's action {actionId}: 0 with *a, else replies 404. */
static int get_action(struct otasrv_req *req, const char *id, const char *sid,
                      struct otasrv_ddi_action *a, enum otasrv_result *ret)
{
    struct ota_err err = {0};
    char *end;
    long long n;
    int r;

    errno = 0;
    n = isdigit((unsigned char)sid[0]) ? strtoll(sid, &end, 10) : -1;
    if (n <= 0 || errno || *end) {
        *ret = otasrv_reply_error(req, 404, "no action %s", sid);
        return -ENOENT;
    }
    r = otasrv_ddi_action_get(req->srv->ddi, n, a, &err);
    if (r < 0) {
        *ret = otasrv_reply_store_error(req, r, &err);
        return r;
    }
    if (r == 0 || strcmp(a->device, id) != 0) {
        *ret = otasrv_reply_error(req, 404, "no action %s for controller %s", sid, id);
        return -ENOENT;
    }
    return 0;
}

/* The release's payload as a DDI artifact, or NULL (err set). */
static json_t *artifact_json(struct otasrv_req *req, const char *url,
                             const struct otasrv_release *rel, struct ota_err *err)
{
    struct otasrv_ddi_hashes h;
    char href[2000], md5[2100];
    struct stat st;
    int r;

    if (!rel->payload_path[0] || stat(rel->payload_path, &st) < 0) {
        ota_err_set(err, ENOENT, "release %s has no payload", rel->id);
        return NULL;
    }
    r = otasrv_ddi_hashes(req->srv->ddi, rel->payload_path, (uint64_t)st.st_size,
                          (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, &h, err);
    if (r < 0)
        return NULL;
    snprintf(href, sizeof(href), "%s/softwaremodules/%s/artifacts/%s", url, rel->id,
             rel->payload_name);
    snprintf(md5, sizeof(md5), "%s.MD5SUM", href);
    return json_pack("{s:s, s:I, s:{s:s, s:s, s:s}, s:{s:o, s:o, s:o, s:o}}", "filename",
                     rel->payload_name, "size", (json_int_t)st.st_size, "hashes", "sha1", h.sha1,
                     "md5", h.md5, "sha256", h.sha256, "_links", "download", href_obj(href),
                     "download-http", href_obj(href), "md5sum", href_obj(md5), "md5sum-http",
                     href_obj(md5));
}

static enum otasrv_result do_deployment(struct otasrv_req *req, const char *id, const char *sid)
{
    struct otasrv_ddi_action a;
    struct otasrv_release *rel = NULL;
    struct ota_err err = {0};
    enum otasrv_result ret;
    char url[1400], aid[24];
    json_t *art;
    int r;

    if (get_action(req, id, sid, &a, &ret) < 0)
        return ret;
    if (a.state == OTASRV_DDI_CANCELING || a.state == OTASRV_DDI_CANCELED)
        return otasrv_reply_error(req, 404, "action %s is cancelled", sid);
    if ((r = otasrv_store_release_get(req->srv->store, a.release_id, &rel, &err)) < 0)
        return otasrv_reply_store_error(req, r, &err);
    ctl_url(req, url, sizeof(url));
    art = artifact_json(req, url, rel, &err);
    if (!art) {
        otasrv_release_free(rel);
        return otasrv_reply_error(req, 500, "%s", err.reason);
    }
    snprintf(aid, sizeof(aid), "%" PRId64, a.id);
    ret = otasrv_reply_json(
        req, 200,
        json_pack("{s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:[o]}]}}", "id", aid, "deployment",
                  "download", "forced", "update", "forced", "chunks", "part",
                  strcmp(rel->kind, "app") == 0 ? "bApp" : "os", "version", rel->version, "name",
                  rel->name[0] ? rel->name : rel->id, "artifacts", art));
    otasrv_release_free(rel);
    return ret;
}

/* ---- feedback ---- */

struct feedback {
    const char *execution, *finished;
    int64_t ts; /* "timestamp" (unix ms), 0 if absent */
    char details[REASON_MAX + 1];
};

/* status.execution, status.result.finished (both required), optional
 * status.result.progress {cnt, of}, status.details [strings] and
 * timestamp (unix ms: the report's ts). */
static int parse_feedback(const json_t *o, struct feedback *f, struct ota_err *err)
{
    const json_t *st = json_object_get(o, "status"), *res, *prog, *det, *x;
    size_t i, n = 0;

    memset(f, 0, sizeof(*f));
    x = json_object_get(o, "timestamp");
    if (x && !json_is_null(x) && (!json_is_integer(x) || json_integer_value(x) < 0))
        return ota_err_set(err, EINVAL, "field timestamp: an integer >= 0 (unix ms)");
    f->ts = x ? (int64_t)json_integer_value(x) : 0;
    if (!json_is_object(st))
        return ota_err_set(err, EINVAL, "field status: required, an object");
    f->execution = json_string_value(json_object_get(st, "execution"));
    if (!in_list(f->execution, EXECUTIONS))
        return ota_err_set(err, EINVAL,
                           "field status.execution: closed, proceeding, canceled, scheduled, "
                           "rejected, resumed, downloaded or download");
    res = json_object_get(st, "result");
    f->finished = json_string_value(json_object_get(res, "finished"));
    if (!json_is_object(res) || !in_list(f->finished, FINISHED))
        return ota_err_set(err, EINVAL, "field status.result.finished: success, failure or none");
    prog = json_object_get(res, "progress");
    if (prog && !json_is_null(prog) &&
        (!json_is_object(prog) ||
         (json_object_get(prog, "cnt") && !json_is_integer(json_object_get(prog, "cnt"))) ||
         (json_object_get(prog, "of") && !json_is_integer(json_object_get(prog, "of")))))
        return ota_err_set(err, EINVAL, "field status.result.progress: {cnt, of} integers");
    det = json_object_get(st, "details");
    if (det && !json_is_null(det) && !json_is_array(det))
        return ota_err_set(err, EINVAL, "field status.details: an array of strings");
    json_array_foreach((json_t *)det, i, x)
    {
        const char *s = json_string_value(x);
        if (!s)
            return ota_err_set(err, EINVAL, "field status.details[%zu]: a string", i);
        for (; *s && n + 3 < sizeof(f->details); s++)
            f->details[n++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
        if (i + 1 < json_array_size(det) && n + 3 < sizeof(f->details)) {
            f->details[n++] = ';';
            f->details[n++] = ' ';
        }
    }
    f->details[n] = '\0';
    return 0;
}

/* The feedback as a status report of the action's update, state the
 * execution upper-cased, fed to its rollout unless status is given:
 * closed+failure failure, closed+success|none success, anything else
 * in_progress (hawkBit: an informational status). */
static int add_report(struct otasrv_req *req, const char *id, const struct otasrv_ddi_action *a,
                      const struct feedback *f, const char *status, struct ota_err *err)
{
    struct otasrv_report_in rep = {0};
    struct otasrv_release *rel = NULL;
    char state[32];
    int r, dup = 0;

    for (size_t i = 0; f->execution[i] && i + 1 < sizeof(state); i++)
        state[i] = (char)toupper((unsigned char)f->execution[i]), state[i + 1] = '\0';
    rep.update_id = a->update_id;
    rep.rollout_id = a->rollout_id;
    rep.state = state;
    rep.reason = f->details;
    rep.ts = f->ts;
    if (status)
        rep.status = status;
    else if (strcmp(f->execution, "closed") == 0)
        rep.status = strcmp(f->finished, "failure") == 0 ? "failure" : "success";
    else
        rep.status = "in_progress";
    if (otasrv_store_release_get(req->srv->store, a->release_id, &rel, NULL) == 0) {
        rep.version = rel->version;
        rep.kind = rel->kind[0] ? rel->kind : NULL;
    }
    r = otasrv_store_report_add(req->srv->store, id, &rep, otasrv_now_ms(), &dup, err);
    if (r == 0 && !dup && !status)
        r = otasrv_rollouts_report(req->srv, id, rep.update_id, rep.rollout_id, rep.state,
                                   rep.status, err);
    otasrv_release_free(rel);
    return r;
}

/* POST deploymentBase/{actionId}/feedback: closed closes the action (and,
 * as hawkBit does after a successful one, asks for the attributes again);
 * anything else is informational. */
static enum otasrv_result do_feedback(struct otasrv_req *req, const char *id, const char *sid)
{
    struct otasrv_ddi_action a;
    struct feedback f;
    struct ota_err err = {0};
    enum otasrv_result ret;
    json_t *o = NULL;
    int r, closed, wanted;

    if (get_action(req, id, sid, &a, &ret) < 0 || otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (parse_feedback(o, &f, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    if (a.state == OTASRV_DDI_CLOSED || a.state == OTASRV_DDI_CANCELED) {
        ret = otasrv_reply_error(req, 410, "action %s is finished", sid);
        goto out;
    }
    closed = strcmp(f.execution, "closed") == 0;
    otasrv_ddi_lock(req->srv->ddi);
    r = add_report(req, id, &a, &f, NULL, &err);
    if (r == 0 && closed)
        r = otasrv_ddi_action_set(req->srv->ddi, a.id, OTASRV_DDI_CLOSED, a.cancel_refused,
                                  otasrv_now_ms(), &err);
    if (r == 0 && closed && strcmp(f.finished, "failure") != 0 &&
        (r = otasrv_ddi_target(req->srv->ddi, id, otasrv_now_ms(), &wanted, &err)) == 0)
        r = otasrv_ddi_set_wanted(req->srv->ddi, id, 1, &err);
    otasrv_ddi_unlock(req->srv->ddi);
    ret = r < 0 ? otasrv_reply_store_error(req, r, &err) : reply_empty(req);
out:
    json_decref(o);
    return ret;
}

/* GET cancelAction/{actionId}. */
static enum otasrv_result do_cancel(struct otasrv_req *req, const char *id, const char *sid)
{
    struct otasrv_ddi_action a;
    enum otasrv_result ret;
    char aid[24];

    if (get_action(req, id, sid, &a, &ret) < 0)
        return ret;
    if (a.state != OTASRV_DDI_CANCELING && a.state != OTASRV_DDI_CANCELED)
        return otasrv_reply_error(req, 404, "action %s is not being cancelled", sid);
    snprintf(aid, sizeof(aid), "%" PRId64, a.id);
    return otasrv_reply_json(req, 200,
                             json_pack("{s:s, s:{s:s}}", "id", aid, "cancelAction", "stopId", aid));
}

/* POST cancelAction/{actionId}/feedback, as hawkBit: closed (success|none)
 * ends the action; rejected or closed+failure refuses the cancel (the action
 * goes on, and is not cancelled again); anything else (canceled included)
 * changes nothing. 405 unless the action is being cancelled or was. */
static enum otasrv_result do_cancel_feedback(struct otasrv_req *req, const char *id,
                                             const char *sid)
{
    struct otasrv_ddi_action a;
    struct feedback f;
    struct ota_err err = {0};
    enum otasrv_result ret;
    json_t *o = NULL;
    int r = 0, ends, refuses, closed;

    if (get_action(req, id, sid, &a, &ret) < 0 || otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    if (parse_feedback(o, &f, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    if (a.state != OTASRV_DDI_CANCELING && a.state != OTASRV_DDI_CANCELED) {
        ret = otasrv_reply_error(req, 405, "action %s is not being cancelled", sid);
        goto out;
    }
    closed = strcmp(f.execution, "closed") == 0;
    refuses =
        strcmp(f.execution, "rejected") == 0 || (closed && strcmp(f.finished, "failure") == 0);
    ends = closed && !refuses && a.state == OTASRV_DDI_CANCELING;
    refuses = refuses && a.state == OTASRV_DDI_CANCELING;
    otasrv_ddi_lock(req->srv->ddi);
    if (ends) {
        /* stored, not fed: the rollout decides what the device gets next */
        f.execution = "canceled";
        r = add_report(req, id, &a, &f, "failure", &err);
        if (r == 0)
            r = otasrv_ddi_action_set(req->srv->ddi, a.id, OTASRV_DDI_CANCELED, 0, otasrv_now_ms(),
                                      &err);
    } else if (refuses) {
        r = otasrv_ddi_action_set(req->srv->ddi, a.id, OTASRV_DDI_OPEN, 1, otasrv_now_ms(), &err);
    }
    otasrv_ddi_unlock(req->srv->ddi);
    ret = r < 0 ? otasrv_reply_store_error(req, r, &err) : reply_empty(req);
out:
    json_decref(o);
    return ret;
}

/* ---- configData ---- */

/* The device's attributes after {"mode", "data"} (into *ret, new ref). */
static int apply_config(const json_t *cur, const char *mode, const json_t *data, json_t **ret,
                        struct ota_err *err)
{
    json_t *out = strcmp(mode, "replace") == 0 ? json_object() : json_deep_copy(cur);
    const char *k;
    json_t *v;

    if (!out)
        out = json_object();
    json_object_foreach((json_t *)data, k, v)
    {
        const char *s = json_string_value(v);

        if (!ota_attr_key_valid(k) || !s || strlen(s) != json_string_length(v) ||
            !ota_attr_value_valid(s)) {
            json_decref(out);
            return ota_err_set(err, EINVAL,
                               "field data.%.40s: keys 1..%d of [a-z0-9_], values strings of at "
                               "most %d printable characters",
                               k, OTA_ATTR_KEY_MAX, OTA_ATTR_VALUE_MAX);
        }
        if (strcmp(mode, "remove") == 0)
            json_object_del(out, k);
        else
            json_object_set(out, k, v);
    }
    if (json_object_size(out) > OTA_ATTR_MAX) {
        json_decref(out);
        return ota_err_set(err, EINVAL, "at most %d attributes per device", OTA_ATTR_MAX);
    }
    *ret = out;
    return 0;
}

/* PUT configData: the device's inventory attributes; the configData link
 * goes away. */
static enum otasrv_result do_config(struct otasrv_req *req, const char *id)
{
    struct otasrv_srv *srv = req->srv;
    struct otasrv_device_inv inv = {0};
    struct ota_err err = {0};
    enum otasrv_result ret;
    json_t *o = NULL, *dev = NULL, *attrs = NULL;
    const json_t *data;
    const char *mode;
    char *text = NULL;
    int r, wanted;

    if (otasrv_body_object(req, &o, &ret) < 0)
        return ret;
    data = json_object_get(o, "data");
    mode = json_object_get(o, "mode") ? json_string_value(json_object_get(o, "mode")) : "merge";
    if (!json_is_object(data) || json_object_size(data) == 0 ||
        !in_list(mode, (const char *const[]){"merge", "replace", "remove", NULL})) {
        ret = otasrv_reply_error(
            req, 400,
            "fields data (a non-empty object of strings) and mode (merge, replace "
            "or remove) required");
        goto out;
    }
    if ((r = otasrv_store_device_get(srv->store, id, &dev, &err)) < 0) {
        ret = r == -ENOENT ? otasrv_reply_error(req, 404, "no controller %s", id)
                           : otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    if (apply_config(json_object_get(dev, "attributes"), mode, data, &attrs, &err) < 0) {
        ret = otasrv_reply_error(req, 400, "%s", err.reason);
        goto out;
    }
    if (!(text = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS))) {
        ret = otasrv_reply_error(req, 500, "out of memory");
        goto out;
    }
    inv.attributes = text;
    if ((r = otasrv_store_device_checkin(srv->store, id, &inv, otasrv_now_ms(), NULL, &err)) < 0 ||
        (r = otasrv_ddi_target(srv->ddi, id, otasrv_now_ms(), &wanted, &err)) < 0 ||
        (r = otasrv_ddi_set_wanted(srv->ddi, id, 0, &err)) < 0) {
        ret = otasrv_reply_store_error(req, r, &err);
        goto out;
    }
    ret = reply_empty(req);
out:
    free(text);
    json_decref(attrs);
    json_decref(dev);
    json_decref(o);
    return ret;
}

/* ---- artifacts ---- */

struct text {
    size_t n;
    char s[];
};

static ssize_t text_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
    const struct text *t = ctx;
    size_t k;

    if (pos >= t->n)
        return OTASRV_RESP_END_OF_STREAM;
    k = t->n - (size_t)pos < max ? t->n - (size_t)pos : max;
    memcpy(buf, t->s + pos, k);
    return (ssize_t)k;
}

/* "<md5>  <file>\n", as md5sum(1) writes it. */
static enum otasrv_result reply_md5sum(struct otasrv_req *req, const char *md5, const char *file)
{
    struct otasrv_resp *resp;
    struct text *t = malloc(sizeof(*t) + strlen(md5) + strlen(file) + 4);

    if (!t)
        return otasrv_reply_error(req, 500, "out of memory");
    t->n = (size_t)sprintf(t->s, "%s  %s\n", md5, file);
    resp = otasrv_resp_reader(t->n, t->n, text_read, t, free);
    if (resp)
        otasrv_resp_header(resp, "Content-Type", "text/plain");
    return otasrv_reply(req, 200, resp);
}

/* GET|HEAD softwaremodules/{release id}/artifacts/{file}: the payload (the
 * same Range/If-Range/ETag answers as the other faces) or its .MD5SUM. A
 * published release, or one an action of this device names. */
static enum otasrv_result do_artifact(struct otasrv_req *req, const char *id, const char *rid,
                                      const char *name)
{
    struct otasrv_release *rel = NULL;
    struct otasrv_ddi_hashes h;
    struct ota_err err = {0};
    enum otasrv_result ret;
    size_t pn;
    int assigned = 0;
    struct stat st;

    if (!otasrv_valid_id(rid) || otasrv_store_release_get(req->srv->store, rid, &rel, &err) < 0 ||
        (!rel->published &&
         (otasrv_ddi_release_assigned(req->srv->ddi, id, rid, &assigned, &err) < 0 || !assigned))) {
        otasrv_release_free(rel);
        return otasrv_reply_error(req, 404, "no software module %s", rid);
    }
    pn = strlen(rel->payload_name);
    if (rel->payload_path[0] && strcmp(name, rel->payload_name) == 0) {
        ret = otasrv_files_serve(req, rel->payload_path, NULL);
    } else if (rel->payload_path[0] && strncmp(name, rel->payload_name, pn) == 0 &&
               strcmp(name + pn, ".MD5SUM") == 0 && stat(rel->payload_path, &st) == 0 &&
               otasrv_ddi_hashes(req->srv->ddi, rel->payload_path, (uint64_t)st.st_size,
                                 (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, &h,
                                 &err) == 0) {
        ret = reply_md5sum(req, h.md5, rel->payload_name);
    } else {
        ret = otasrv_reply_error(req, 404, "no artifact %s in software module %s", name, rid);
    }
    otasrv_release_free(rel);
    return ret;
}

/* ---- routing ---- */

enum otasrv_result otasrv_api_ddi_handle(struct otasrv_req *req)
{
    const char *const *s = req->seg;
    const char *id = s[3], *m = req->method;
    int n = req->nseg, get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, gw;
    enum otasrv_result ret;
    json_t *dev = NULL;

    if (!otasrv_valid_id(s[0]) || !otasrv_valid_id(id))
        return otasrv_reply_error(req, 404, "no controller %s", id);
    if (ddi_auth(req, id, &gw, &ret) < 0)
        return ret;
    if (n == 4)
        return get ? do_base(req, id, gw)
                   : otasrv_reply_error(req, 405, "method %s not allowed", m);
    /* below the base: a known controller only */
    if (gw && otasrv_store_device_get(req->srv->store, id, &dev, NULL) < 0)
        return otasrv_reply_error(req, 404, "no controller %s", id);
    json_decref(dev);
    if (n == 5 && strcmp(s[4], "configData") == 0)
        return strcmp(m, "PUT") == 0 ? do_config(req, id)
                                     : otasrv_reply_error(req, 405, "method %s not allowed", m);
    if ((n == 6 || n == 7) &&
        (strcmp(s[4], "deploymentBase") == 0 || strcmp(s[4], "cancelAction") == 0)) {
        int dep = s[4][0] == 'd';
        if (n == 6 && !get)
            return otasrv_reply_error(req, 405, "method %s not allowed", m);
        if (n == 6)
            return dep ? do_deployment(req, id, s[5]) : do_cancel(req, id, s[5]);
        if (strcmp(s[6], "feedback") != 0)
            return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
        if (!post)
            return otasrv_reply_error(req, 405, "method %s not allowed", m);
        return dep ? do_feedback(req, id, s[5]) : do_cancel_feedback(req, id, s[5]);
    }
    if (n == 8 && strcmp(s[4], "softwaremodules") == 0 && strcmp(s[6], "artifacts") == 0) {
        if (!get && !req->is_head)
            return otasrv_reply_error(req, 405, "method %s not allowed", m);
        return do_artifact(req, id, s[5], s[7]);
    }
    return otasrv_reply_error(req, 404, "no such endpoint: %s", req->path);
}
