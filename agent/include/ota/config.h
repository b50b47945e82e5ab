/* ota-agent's config file: INI sections of `key = value` lines, `#`
 * comments. Every key and its default is documented in README.md. */
#ifndef OTA_CONFIG_H
#define OTA_CONFIG_H

#include "ota/core.h"
#include "ota/drivers.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ota_config {
    struct ota_agent_config agent;
    struct ota_curl_config curl;
    struct ota_install_config install;
    struct ota_service_config service;
    char database[512];      /* [agent] database */
    char public_key[512];    /* [agent] public_key: path of the PEM */
    char env_config[512];    /* [rootfs] env_config: fw_env.config; "" = no rootfs updates */
    int64_t poll_interval_s; /* [agent] poll_interval (daemon) */
    int64_t poll_jitter_s;   /* [agent] poll_jitter */
};

/* Defaults, then the file. Unknown sections or keys and bad values are
 * -EINVAL with "FILE:LINE: reason". Reads the public key file. */
int ota_config_load(const char *path, struct ota_config *ret, struct ota_err *err) OTA_MUST;
void ota_config_defaults(struct ota_config *c);

#ifdef __cplusplus
}
#endif
#endif
