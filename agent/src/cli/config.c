/* Config file parsing: strict, so that a typo is an error and not a silent
 * default on a device in the field. */
#include "ota/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ota/fsutil.h"
#include "ota/json.h"
#include "ota/protocol.h"

enum vtype { T_STR, T_INT, T_BYTES };

struct key {
    const char *section;
    const char *name;
    enum vtype type;
    size_t off;  /* offset in struct ota_config */
    size_t cap;  /* for strings */
    int64_t min; /* for numbers */
    int64_t scale;
};

#define S(sec, name, field)                                                                        \
    {                                                                                              \
        sec, name, T_STR, offsetof(struct ota_config, field),                                      \
            sizeof(((struct ota_config *)0)->field), 0, 1                                          \
    }
#define I(sec, name, field, min, scale)                                                            \
    {                                                                                              \
        sec, name, T_INT, offsetof(struct ota_config, field),                                      \
            sizeof(((struct ota_config *)0)->field), min, scale                                    \
    }

static const struct key keys[] = {
    S("agent", "server", agent.server_url),
    S("agent", "repo", agent.repo),
    S("agent", "github_token", agent.github_token),
    S("agent", "enroll_token", agent.enroll_token),
    S("agent", "device_id", agent.device_id),
    S("agent", "device_type", agent.device_type),
    S("agent", "group", agent.group),
    S("agent", "product", agent.product),
    S("agent", "timezone", agent.timezone),
    S("agent", "public_key", public_key),
    S("agent", "database", database),
    I("agent", "poll_interval", poll_interval_s, 1, 1),
    I("agent", "poll_jitter", poll_jitter_s, 0, 1),
    I("agent", "max_resumes", agent.max_resumes, 0, 1),
    I("agent", "max_attempts", agent.max_attempts, 1, 1),
    I("agent", "backoff_base_ms", agent.backoff_base_ms, 0, 1),
    I("agent", "backoff_max_ms", agent.backoff_max_ms, 0, 1),
    I("agent", "checkpoint_bytes", agent.checkpoint_bytes, 4096, 1),
    I("agent", "checkpoint_interval_ms", agent.checkpoint_interval_ms, 0, 1),
    I("agent", "standby_max_wait", agent.standby_max_wait_ms, 0, 1000),
    S("transport", "ca_file", curl.ca_file),
    S("transport", "client_cert", curl.client_cert),
    S("transport", "client_key", curl.client_key),
    I("transport", "connect_timeout", curl.connect_timeout_s, 1, 1),
    I("transport", "low_speed_bytes", curl.low_speed_bytes, 0, 1),
    I("transport", "low_speed_time", curl.low_speed_time_s, 0, 1),
    I("transport", "request_timeout", curl.request_timeout_s, 1, 1),
    I("transport", "max_bytes_per_s", curl.max_bytes_per_s, 0, 1),
    S("app", "root", install.app_root),
    S("download", "dir", install.download_dir),
    S("rootfs", "device_a", install.rootfs_dev[0]),
    S("rootfs", "device_b", install.rootfs_dev[1]),
    S("rootfs", "booted_file", install.booted_file),
    S("rootfs", "env_config", env_config),
    S("rootfs", "version", agent.rootfs_version),
    S("rootfs", "product", agent.rootfs_product),
    I("health", "window", agent.health_window_ms, 0, 1000),
    I("health", "interval_ms", agent.health_interval_ms, 10, 1),
    I("health", "start_grace", agent.health_grace_ms, 0, 1000),
    S("health", "url", agent.health_url),
    S("service", "unit", service.unit),
    S("service", "restart_cmd", service.restart_cmd),
    S("service", "is_active_cmd", service.is_active_cmd),
    S("service", "reboot_cmd", service.reboot_cmd),
    I("service", "timeout", service.timeout_s, 1, 1),
};

void ota_config_defaults(struct ota_config *c)
{
    memset(c, 0, sizeof(*c));
    ota_agent_config_defaults(&c->agent);
    ota_curl_config_defaults(&c->curl);
    ota_strlcpy(c->database, "/var/lib/ota/agent.db", sizeof(c->database));
    ota_strlcpy(c->public_key, "/etc/ota/release-key.pub", sizeof(c->public_key));
    ota_strlcpy(c->install.app_root, "/opt/app", sizeof(c->install.app_root));
    ota_strlcpy(c->install.download_dir, "/var/lib/ota/download", sizeof(c->install.download_dir));
    ota_strlcpy(c->install.booted_file, "/proc/cmdline", sizeof(c->install.booted_file));
    c->service.kind = OTA_SERVICE_SYSTEMD;
    ota_strlcpy(c->service.unit, "video-app.service", sizeof(c->service.unit));
    c->poll_interval_s = 3600;
    c->poll_jitter_s = 300;
}

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int set_int(void *field, size_t size, int64_t v)
{
    switch (size) {
    case sizeof(int32_t):
        if (v > INT32_MAX)
            return -ERANGE;
        *(int32_t *)field = (int32_t)v;
        return 0;
    case sizeof(int64_t):
        *(int64_t *)field = v;
        return 0;
    default:
        return -EINVAL;
    }
}

static int apply(struct ota_config *c, const char *path, int line, const char *section,
                 const char *k, const char *v, struct ota_err *err)
{
    char *end;

    if (strcmp(section, "agent") == 0 && strcmp(k, "source") == 0) {
        for (int i = 0; i < OTA_SOURCE_MAX; i++)
            if (strcmp(v, ota_source_names[i]) == 0) {
                c->agent.source = (enum ota_source)i;
                return 0;
            }
        return ota_err_set(err, EINVAL, "%s:%d: source must be fleet or github", path, line);
    }
    if (strcmp(section, "agent") == 0 && strcmp(k, "attributes") == 0) {
        int r = ota_proto_parse_attributes(v, c->agent.attributes, &c->agent.n_attributes, err);
        return r < 0 ? ota_err_prefix(err, r, "%s:%d", path, line) : 0;
    }
    if (strcmp(section, "agent") == 0 && strcmp(k, "timezone") == 0 && v[0] &&
        !ota_timezone_valid(v))
        return ota_err_set(err, EINVAL,
                           "%s:%d: timezone must be UTC, +HH:MM, -HH:MM or an IANA name like "
                           "Europe/Berlin, not '%s'",
                           path, line, v);
    if (strcmp(section, "service") == 0 && strcmp(k, "kind") == 0) {
        for (int i = 0; i < OTA_SERVICE_KIND_MAX; i++)
            if (strcmp(v, ota_service_kind_names[i]) == 0) {
                c->service.kind = (enum ota_service_kind)i;
                return 0;
            }
        return ota_err_set(err, EINVAL, "%s:%d: service kind must be systemd or command", path,
                           line);
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const struct key *key = &keys[i];
        void *field = (char *)c + key->off;
        long long n;

        if (strcmp(key->section, section) != 0 || strcmp(key->name, k) != 0)
            continue;
        if (key->type == T_STR) {
            if (strlen(v) >= key->cap)
                return ota_err_set(err, EINVAL, "%s:%d: %s is too long", path, line, k);
            ota_strlcpy(field, v, key->cap);
            return 0;
        }
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < key->min)
            return ota_err_set(err, EINVAL, "%s:%d: %s wants a number >= %lld, not '%s'", path,
                               line, k, (long long)key->min, v);
        if (set_int(field, key->cap, (int64_t)n * key->scale) < 0)
            return ota_err_set(err, EINVAL, "%s:%d: %s is out of range", path, line, k);
        return 0;
    }
    return ota_err_set(err, EINVAL, "%s:%d: unknown key '%s' in [%s]", path, line, k, section);
}

/* [transport] client_cert and client_key: a key needs its certificate, and
 * both must be readable now (not at the first TLS handshake, in the field). */
static int check_client_cert(const char *path, const struct ota_curl_config *t, struct ota_err *err)
{
    const char *files[2] = {t->client_cert, t->client_key};
    const char *names[2] = {"client_cert", "client_key"};

    if (t->client_key[0] && !t->client_cert[0])
        return ota_err_set(err, EINVAL, "%s: [transport] client_key needs client_cert", path);
    for (int i = 0; i < 2; i++)
        if (files[i][0] && access(files[i], R_OK) != 0)
            return ota_err_set(err, errno, "%s: [transport] %s %s: %s", path, names[i], files[i],
                               strerror(errno));
    return 0;
}

/* [agent] public_key: one PEM file, or several separated by commas (the
 * trusted release keys, DESIGN.md "Release keys"): their texts one after
 * the other in pubkey_pem. */
static int read_public_keys(struct ota_config *c, struct ota_err *err)
{
    char list[sizeof(c->public_key)], *save = NULL;
    size_t used = 0, cap = sizeof(c->agent.pubkey_pem);
    int r = 0;

    ota_strlcpy(list, c->public_key, sizeof(list));
    c->agent.pubkey_pem[0] = '\0';
    for (char *f = strtok_r(list, ",", &save); f && r == 0; f = strtok_r(NULL, ",", &save)) {
        char *pem = NULL;
        size_t n = 0;

        f = trim(f);
        if (!f[0])
            return ota_err_set(err, EINVAL, "[agent] public_key: an empty file name in '%s'",
                               c->public_key);
        r = ota_fs_read_all(f, cap - 1 - used, &pem, &n, err);
        if (r < 0)
            return r;
        if (used && used + 1 + n >= cap)
            r = ota_err_set(err, EFBIG, "[agent] public_key: the keys are more than %zu bytes",
                            cap - 1);
        else {
            if (used && c->agent.pubkey_pem[used - 1] != '\n')
                c->agent.pubkey_pem[used++] = '\n';
            memcpy(c->agent.pubkey_pem + used, pem, n + 1);
            used += n;
        }
        free(pem);
    }
    return r;
}

int ota_config_load(const char *path, struct ota_config *ret, struct ota_err *err)
{
    struct ota_config *c = malloc(sizeof(*c));
    char section[32] = "", *text = NULL, *ln;
    size_t len;
    int line = 0, r;

    if (!c)
        return ota_err_set(err, ENOMEM, "out of memory");
    ota_config_defaults(c);
    r = ota_fs_read_all(path, 1 << 20, &text, &len, err);
    if (r < 0)
        goto out;
    /* Line by line, counting lines for messages. */
    for (char *p = text; p; p = ln) {
        char *eq, *k, *v;

        ln = strchr(p, '\n');
        if (ln)
            *ln++ = '\0';
        line++;
        p = trim(p);
        if (!*p || *p == '#' || *p == ';')
            continue;
        if (*p == '[') {
            char *e = strchr(p, ']');
            if (!e || e[1] || e - p - 1 >= (long)sizeof(section)) {
                r = ota_err_set(err, EINVAL, "%s:%d: bad section header", path, line);
                goto out;
            }
            *e = '\0';
            ota_strlcpy(section, p + 1, sizeof(section));
            continue;
        }
        eq = strchr(p, '=');
        if (!eq || !section[0]) {
            r = ota_err_set(err, EINVAL, "%s:%d: expected 'key = value' inside a [section]", path,
                            line);
            goto out;
        }
        *eq = '\0';
        k = trim(p);
        v = trim(eq + 1);
        r = apply(c, path, line, section, k, v, err);
        if (r < 0)
            goto out;
    }
    if (!c->agent.server_url[0]) {
        r = ota_err_set(err, EINVAL, "%s: [agent] server is required", path);
        goto out;
    }
    len = strlen(c->agent.server_url);
    while (len && c->agent.server_url[len - 1] == '/')
        c->agent.server_url[--len] = '\0';
    if (c->agent.source == OTA_SOURCE_GITHUB && !strchr(c->agent.repo, '/')) {
        r = ota_err_set(err, EINVAL, "%s: [agent] repo = OWNER/REPO is required for source github",
                        path);
        goto out;
    }
    if ((r = check_client_cert(path, &c->curl, err)) < 0)
        goto out;
    r = read_public_keys(c, err);
    if (r < 0)
        goto out;
    *ret = *c;
out:
    free(text);
    free(c);
    return r;
}
