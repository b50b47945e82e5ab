// Fakes of the core's ops tables. See fakes.h.
#include "fakes.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <unistd.h>

#include "ota/crypto.h"
#include "ota/json.h"

static FakeWorld *W(void *ctx)
{
    return static_cast<FakeWorld *>(ctx);
}

static char *dup_body(const std::string &s)
{
    char *p = static_cast<char *>(malloc(s.size() + 1));
    memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

// ---- store
static int st_load(void *ctx, ota_journal *ret, ota_err *err)
{
    if (!W(ctx)->journal)
        return ota_err_set(err, ENOENT, "fake store: no journal yet");
    *ret = *W(ctx)->journal;
    return 0;
}

static int st_save(void *ctx, const ota_journal *j, const ota_report *r, const ota_history *h,
                   ota_err *err)
{
    FakeWorld *w = W(ctx);
    if (w->save_fail)
        return ota_err_set(err, w->save_fail, "fake store: save fails");
    w->journal = *j;
    w->saved_states.push_back(j->state);
    if (r) {
        w->outbox.emplace_back(w->next_id++, *r);
        w->all_reports.push_back(*r);
    }
    if (h)
        w->history.push_back(*h);
    return 0;
}

static int st_peek(void *ctx, ota_report *ret, int64_t *ret_id, ota_err *err)
{
    if (W(ctx)->outbox.empty())
        return -ENOENT;
    *ret = W(ctx)->outbox.front().second;
    *ret_id = W(ctx)->outbox.front().first;
    return 0;
}

static int st_pop(void *ctx, int64_t id, ota_err *err)
{
    auto &q = W(ctx)->outbox;
    if (q.empty() || q.front().first != id)
        return ota_err_set(err, ENOENT, "fake store: no report %lld", (long long)id);
    q.pop_front();
    return 0;
}

static int st_kv_get(void *ctx, const char *key, char *buf, size_t cap, ota_err *err)
{
    auto it = W(ctx)->kv.find(key);
    if (it == W(ctx)->kv.end())
        return -ENOENT;
    ota_strlcpy(buf, it->second.c_str(), cap);
    return 0;
}

static int st_kv_set(void *ctx, const char *key, const char *value, ota_err *err)
{
    W(ctx)->kv[key] = value;
    return 0;
}

static const ota_store_ops store_ops = {st_load, st_save, st_peek, st_pop, st_kv_get, st_kv_set};

// ---- transport
static int tr_request(void *ctx, const ota_http_req *req, ota_http_resp *ret, ota_err *err)
{
    FakeWorld *w = W(ctx);
    std::string url = req->url;
    w->requests.push_back(std::string(req->method) + " " + url);
    w->bearers.push_back(req->bearer ? req->bearer : "");
    if (w->server_down)
        return ota_err_set(err, ECONNREFUSED, "fake: connection refused");
    ret->status = 404;
    std::string body = "{\"detail\":\"not found\"}";
    if (w->answer && w->answer(url, ret, body)) {
        // scripted
    } else if (url.find("/register") != std::string::npos) {
        ret->status = 201;
        body = "{\"device_id\":\"dev-1\",\"token\":\"tok-1\"}";
    } else if (url.find("/checkin") != std::string::npos) {
        ret->status = 200;
        w->checkins.push_back(req->body ? req->body : "");
        body = w->offer_json.empty() ? "{\"update\":null}" : w->offer_json;
    } else if (url.find("/status") != std::string::npos) {
        ret->status = w->report_status;
        body = "{\"ok\":true}";
        if (w->report_status == 200) {
            json_t *o = json_loads(req->body, 0, nullptr);
            ota_report r{};
            ota_strlcpy(r.state, json_string_value(json_object_get(o, "state")), sizeof(r.state));
            ota_strlcpy(r.status, json_string_value(json_object_get(o, "status")),
                        sizeof(r.status));
            ota_strlcpy(r.update_id, json_string_value(json_object_get(o, "update_id")),
                        sizeof(r.update_id));
            ota_strlcpy(r.reason, json_string_value(json_object_get(o, "reason")),
                        sizeof(r.reason));
            w->delivered.push_back(r);
            json_decref(o);
        }
    } else if (url.find("/health") != std::string::npos) {
        ret->status = w->health_starting > 0 ? 503 : w->health_status;
        if (w->health_starting > 0)
            w->health_starting--;
        body = "{}";
    }
    ret->body = dup_body(body);
    ret->len = body.size();
    return 0;
}

static int tr_download(void *ctx, const char *url, const char *bearer, uint64_t offset,
                       const char *etag, const ota_dl_sink *sink, ota_err *err)
{
    FakeWorld *w = W(ctx);
    const std::string &p = w->payload;
    w->download_offsets.push_back(offset);
    w->download_bearers.push_back(bearer ? bearer : "");
    if (w->server_down)
        return ota_err_set(err, ECONNREFUSED, "fake: connection refused");
    if (w->download_status) {
        long s = w->download_status;
        w->download_status = 0;
        return sink->on_headers(sink->ctx, s, nullptr, -1, nullptr);
    }
    uint64_t start = offset;
    long status = 206;
    std::string cr;
    if (offset == 0 || w->ignore_range) {
        start = 0;
        status = 200;
    } else if (offset >= p.size()) {
        return sink->on_headers(sink->ctx, 416, nullptr, -1, nullptr);
    } else {
        cr = "bytes " + std::to_string(offset) + "-" + std::to_string(p.size() - 1) + "/" +
             std::to_string(p.size());
        if (!w->content_range_override.empty())
            cr = w->content_range_override;
    }
    int r = sink->on_headers(sink->ctx, status, cr.empty() ? nullptr : cr.c_str(),
                             (int64_t)(p.size() - start), w->etag.c_str());
    if (r < 0)
        return r;
    uint64_t end = p.size();
    bool cut = false;
    if (w->cut_after >= 0 && start + (uint64_t)w->cut_after < end) {
        end = start + (uint64_t)w->cut_after;
        cut = true;
        w->cut_after = -1;
    }
    for (uint64_t at = start; at < end;) {
        size_t n = std::min<uint64_t>(64 * 1024, end - at);
        r = sink->on_data(sink->ctx, p.data() + at, n);
        if (r < 0)
            return r;
        at += n;
    }
    if (cut)
        return ota_err_set(err, EIO, "fake: connection cut");
    return 0;
}

static const ota_transport_ops transport_ops = {tr_request, tr_download};

// ---- boot env
static int env_get(void *ctx, const char *name, char *buf, size_t cap, ota_err *err)
{
    if (W(ctx)->env_corrupt)
        return ota_err_set(err, EBADMSG, "fake env: bad CRC");
    auto it = W(ctx)->env.find(name);
    if (it == W(ctx)->env.end())
        return -ENOENT;
    ota_strlcpy(buf, it->second.c_str(), cap);
    return 0;
}

static int env_set(void *ctx, const char *const *names, const char *const *values, size_t n,
                   ota_err *err)
{
    // As the libubootenv driver: a corrupt env is never written.
    if (W(ctx)->env_corrupt)
        return ota_err_set(err, EBADMSG, "fake env: bad CRC");
    for (size_t i = 0; i < n; i++)
        W(ctx)->env[names[i]] = values[i];
    return 0;
}

static const ota_bootenv_ops bootenv_ops = {env_get, env_set};

// ---- service
static int svc_restart(void *ctx, ota_err *err)
{
    FakeWorld *w = W(ctx);
    w->restarts++;
    if (w->restart_fails)
        return ota_err_set(err, EIO, "fake: restart failed");
    w->active = !w->crash_after_restart || w->slot_version[w->current] == "1.0.0";
    return 0;
}

static int svc_is_active(void *ctx, int *ret, ota_err *err)
{
    *ret = W(ctx)->active;
    return 0;
}

static int svc_reboot(void *ctx, ota_err *err)
{
    W(ctx)->reboots++;
    return 0;
}

static const ota_service_ops service_ops = {svc_restart, svc_is_active, svc_reboot};

// ---- clock
static int64_t ck_wall(void *ctx)
{
    return W(ctx)->wall;
}
static int64_t ck_mono(void *ctx)
{
    return W(ctx)->mono;
}
static uint32_t ck_random(void *ctx)
{
    return 12345;
}
static const ota_clock_ops clock_ops = {ck_wall, ck_mono, ck_random};

// ---- disks
static int in_dl_open(void *ctx, uint64_t keep, ota_err *err)
{
    FakeWorld *w = W(ctx);
    if (keep > w->dl.size())
        return ota_err_set(err, ENODATA, "fake: download shorter than %llu",
                           (unsigned long long)keep);
    w->dl.resize(keep);
    if (w->dl_durable > keep)
        w->dl_durable = keep;
    w->dl_exists = true;
    return 0;
}
static int in_dl_write(void *ctx, const void *buf, size_t n, ota_err *err)
{
    if (W(ctx)->dl.size() + n > W(ctx)->dl_free)
        return ota_err_set(err, ENOSPC, "fake: disk full");
    W(ctx)->dl.append(static_cast<const char *>(buf), n);
    return 0;
}
static int in_dl_sync(void *ctx, ota_err *err)
{
    W(ctx)->dl_durable = W(ctx)->dl.size();
    return 0;
}
static void in_dl_close(void *ctx) {}
static int in_dl_size(void *ctx, uint64_t *ret, ota_err *err)
{
    if (!W(ctx)->dl_exists)
        return -ENOENT;
    *ret = W(ctx)->dl.size();
    return 0;
}
static int in_dl_hash(void *ctx, uint64_t len, ota_sha256 *h, ota_err *err)
{
    if (len > W(ctx)->dl.size())
        return -ENODATA;
    return ota_sha256_update(h, W(ctx)->dl.data(), len);
}
static int in_dl_remove(void *ctx, ota_err *err)
{
    W(ctx)->dl.clear();
    W(ctx)->dl_exists = false;
    W(ctx)->dl_durable = 0;
    return 0;
}
static int in_space(void *ctx, ota_kind kind, uint64_t *dl_free, uint64_t *room, ota_err *err)
{
    *dl_free = W(ctx)->dl_free;
    *room = W(ctx)->slot_room;
    return 0;
}
static int in_active(void *ctx, ota_kind kind, int *ret, ota_err *err)
{
    FakeWorld *w = W(ctx);
    if (kind == OTA_KIND_APP) {
        *ret = w->current;
        return 0;
    }
    if (!w->booted_known)
        return -ENOENT;
    *ret = w->booted;
    return 0;
}
static int in_slot_version(void *ctx, ota_kind kind, int slot, char *buf, size_t cap, ota_err *err)
{
    auto it = W(ctx)->slot_version.find(slot);
    if (it == W(ctx)->slot_version.end())
        return -ENOENT;
    ota_strlcpy(buf, it->second.c_str(), cap);
    return 0;
}
static int in_slot_install(void *ctx, const ota_manifest *m, int slot, ota_err *err)
{
    FakeWorld *w = W(ctx);
    w->slots_written.push_back(slot);
    if (m->kind == OTA_KIND_APP && slot == w->current)
        return ota_err_set(err, EBUSY, "fake: slot is active");
    if (w->install_error)
        return ota_err_set(err, w->install_error, "fake: install fails");
    if (m->kind == OTA_KIND_APP)
        w->slot_version[slot] = m->version;
    else
        w->rootfs_image[slot] = w->dl;
    return 0;
}
static int in_switch(void *ctx, int slot, ota_err *err)
{
    W(ctx)->current = slot;
    return 0;
}

static const ota_install_ops install_ops = {
    in_dl_open,   in_dl_write, in_dl_sync, in_dl_close,     in_dl_size,      in_dl_hash,
    in_dl_remove, in_space,    in_active,  in_slot_version, in_slot_install, in_switch,
};

FakeWorld::FakeWorld()
{
    env["boot_part"] = "A";
    env["upgrade_available"] = "0";
    env["bootcount"] = "0";
    env["bootlimit"] = "3";
}

void FakeWorld::power_cut()
{
    dl.resize(dl_durable);
}

ota_agent_ops FakeWorld::ops()
{
    ota_agent_ops o{};
    o.transport = &transport_ops;
    o.transport_ctx = this;
    o.store = &store_ops;
    o.store_ctx = this;
    o.bootenv = &bootenv_ops;
    o.bootenv_ctx = this;
    o.service = &service_ops;
    o.service_ctx = this;
    o.clock = &clock_ops;
    o.clock_ctx = this;
    o.install = &install_ops;
    o.install_ctx = this;
    return o;
}

// ---- keys and manifests
TestKeys::TestKeys()
{
    char tmpl[] = "/tmp/ota-keys-XXXXXX";
    if (!mkdtemp(tmpl))
        throw std::runtime_error("mkdtemp");
    dir = tmpl;
    priv = dir + "/key.pem";
    pub = dir + "/key.pub";
    ota_err err{};
    if (ota_ed25519_keygen(priv.c_str(), pub.c_str(), &err) < 0)
        throw std::runtime_error(err.reason);
    FILE *f = fopen(pub.c_str(), "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    pub_pem.assign(buf, n);
}

TestKeys::~TestKeys()
{
    unlink(priv.c_str());
    unlink(pub.c_str());
    rmdir(dir.c_str());
}

std::string TestKeys::sign(const std::string &m) const
{
    uint8_t sig[OTA_ED25519_SIG_LEN];
    char b64[128];
    ota_err err{};
    if (ota_ed25519_sign(priv.c_str(), m.data(), m.size(), sig, &err) < 0)
        throw std::runtime_error(err.reason);
    ota_b64_encode(sig, sizeof(sig), b64);
    return b64;
}

std::string make_manifest(const std::string &version, const std::string &kind,
                          const std::string &payload, const std::string &device_type, bool rollback,
                          const std::string &format, const std::string &rollback_from)
{
    uint8_t d[OTA_SHA256_LEN];
    char hex[OTA_SHA256_HEX];
    ota_sha256 *h = ota_sha256_new();
    if (ota_sha256_update(h, payload.data(), payload.size()) < 0 || ota_sha256_final(h, d) < 0)
        throw std::runtime_error("sha");
    ota_sha256_free(h);
    ota_hex_encode(d, sizeof(d), hex);
    std::string fmt = format.empty() ? (kind == "app" ? "tar.gz" : "raw") : format;
    return "{\"schema\":1,\"name\":\"video-app\",\"version\":\"" + version + "\",\"kind\":\"" +
           kind + "\",\"format\":\"" + fmt +
           "\",\"payload\":\"p.bin\",\"size\":" + std::to_string(payload.size()) +
           ",\"sha256\":\"" + hex + "\",\"installed_size\":" + std::to_string(payload.size()) +
           ",\"device_types\":[\"" + device_type +
           "\"],\"min_version\":\"\",\"rollback\":" + (rollback ? "true" : "false") +
           ",\"created\":1795000000" +
           (rollback
                ? ",\"rollback_expires\":1795086400,\"rollback_from\":[\"" + rollback_from + "\"]"
                : std::string()) +
           "}";
}

std::string make_offer(const std::string &update_id, const std::string &manifest,
                       const std::string &sig, const std::string &url)
{
    json_t *o = json_pack("{s:{s:s, s:s, s:s, s:s, s:s}}", "update", "update_id", update_id.c_str(),
                          "rollout_id", "r1", "manifest", manifest.c_str(), "signature",
                          sig.c_str(), "url", url.c_str());
    char *s = json_dumps(o, JSON_COMPACT);
    std::string out = s;
    free(s);
    json_decref(o);
    return out;
}
