/* Wire format of docs/protocol.md: request bodies the agent builds and the
 * answers it parses. Pure functions, no I/O. */
#ifndef OTA_PROTOCOL_H
#define OTA_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include "ota/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An update offered by the fleet API's check-in. */
struct ota_offer {
    char update_id[OTA_ID_LEN];
    char rollout_id[OTA_ID_LEN];
    char signature[128];
    char url[OTA_URL_LEN];
    /* "activation": {"mode": "wait", "not_after_ms": N} in the offer
     * (blue-green): install, then wait in STANDBY. */
    int wait_activation;
    int64_t not_after_ms; /* 0: none given */
    /* Answers to a device in STANDBY (top level, also with "update": null):
     * the update id to activate now, or to abandon; "" when absent. */
    char activate[OTA_ID_LEN];
    char abandon[OTA_ID_LEN];
    /* Last, cleared as text (ota_offer_clear); a new field goes above. */
    char manifest[OTA_MANIFEST_TEXT_LEN];
};
/* The empty offer, as a zeroed one reads (the manifest's bytes after its
 * NUL are not cleared). */
void ota_offer_clear(struct ota_offer *off);

#define OTA_GH_MAX_ASSETS 32
struct ota_gh_asset {
    char name[256];
    char url[OTA_URL_LEN];
    uint64_t size;
};
/* A GitHub release (releases/latest). */
struct ota_gh_release {
    char tag[64];
    struct ota_gh_asset assets[OTA_GH_MAX_ASSETS];
    int n_assets;
};

/* Device inventory sent at registration and check-in. */
struct ota_inventory {
    const char *device_id;
    const char *device_type;
    const char *group;
    const char *state;
    const char *app_version;
    const char *rootfs_version;
    const char *app_slot;
    const char *rootfs_slot;
    const struct ota_attr *attributes; /* n_attributes of them; none: not sent */
    size_t n_attributes;
    const char *timezone;  /* NULL or "": not sent */
    const char *update_id; /* the update in progress (STANDBY), or NULL/"" */
};

/* Parses "key=value, key=value" (the config file's attributes; spaces
 * around keys and values are dropped, so values cannot hold ',' or start or
 * end with a space) into ret (OTA_ATTR_MAX entries), checking each key and
 * value (ota/inventory.h), at most OTA_ATTR_MAX and no key twice. "" is no
 * attributes. -EINVAL with the reason. */
int ota_proto_parse_attributes(const char *text, struct ota_attr *ret, int *ret_n,
                               struct ota_err *err) OTA_MUST;

/* Bodies: malloc'ed JSON text in *ret. */
int ota_proto_register_body(const struct ota_inventory *inv, char **ret) OTA_MUST;
int ota_proto_checkin_body(const struct ota_inventory *inv, char **ret) OTA_MUST;
int ota_proto_report_body(const struct ota_report *r, char **ret) OTA_MUST;

/* {"device_id":..., "token":...}. -EINVAL on anything else. */
int ota_proto_parse_register(const char *body, size_t n, char *ret_device_id, size_t id_cap,
                             char *ret_token, size_t token_cap, struct ota_err *err) OTA_MUST;
/* {"update": null} -> *ret_has = 0; {"update": {...}} -> *ret_has = 1 and *ret.
 * ret->activate and ret->abandon are set in both cases. */
int ota_proto_parse_checkin(const char *body, size_t n, int *ret_has, struct ota_offer *ret,
                            struct ota_err *err) OTA_MUST;
int ota_proto_parse_gh_release(const char *body, size_t n, struct ota_gh_release *ret,
                               struct ota_err *err) OTA_MUST;
/* The asset called name, or NULL. */
const struct ota_gh_asset *ota_proto_gh_asset(const struct ota_gh_release *r, const char *name);

/* GitHub's rate limit as one answer of the GitHub source tells it
 * (docs/protocol.md "Rate limit", DESIGN.md "GitHub's rate limit"). */
#define OTA_GH_WAIT_MIN_MS 60000LL         /* a refusal that names no time */
#define OTA_GH_WAIT_MAX_MS (2 * 3600000LL) /* no wait is longer (bad clocks) */
struct ota_gh_wait {
    int refused;     /* a rate-limit refusal (403/429): the answer is not one */
    int64_t wait_ms; /* ask the source again no sooner than this; 0: at will */
    char why[128];   /* what said so */
};
/* From status, body and the rate-limit headers of resp, at the device's
 * now_ms (wall), after `refusals` refusals in a row. In order: Retry-After
 * (seconds or an HTTP date); X-RateLimit-Remaining 0 until X-RateLimit-Reset,
 * measured against the answer's Date when it has one (else now_ms); else a
 * refusal waits OTA_GH_WAIT_MIN_MS doubled per earlier refusal. A refusal
 * waits at least OTA_GH_WAIT_MIN_MS when what it names is already past. */
void ota_proto_gh_rate_limit(const struct ota_http_resp *resp, int64_t now_ms, unsigned refusals,
                             struct ota_gh_wait *ret);

/* "bytes START-END/TOTAL" -> values; -EINVAL for anything else (including
 * "*" forms, END < START, END >= TOTAL). */
int ota_proto_parse_content_range(const char *hdr, uint64_t *ret_start, uint64_t *ret_end,
                                  uint64_t *ret_total) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
