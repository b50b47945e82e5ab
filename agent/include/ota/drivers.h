/* Drivers: the ops tables of core.h over real libraries, one file each.
 *   transport_curl.c  libcurl            (ota_curl_*)
 *   store_sqlite.c    SQLite             (ota_sqlite_*)
 *   bootenv_uboot.c   libubootenv        (ota_ubootenv_*)
 *   service_cmd.c     systemctl / commands for a plain supervisor (ota_service_*)
 *   clock_posix.c     clock_gettime      (ota_clock_posix_*)
 *   install_posix.c   slots, symlink switch, download file (ota_install_*)
 *   archive.c         libarchive         (ota_archive_*, see archive.h) */
#ifndef OTA_DRIVERS_H
#define OTA_DRIVERS_H

#include <stddef.h>
#include <stdint.h>
#include "ota/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- transport over libcurl (easy interface; blocking per call) ---- */
struct ota_curl_config {
    char ca_file[512];       /* "" = system CAs; else only this CA file */
    char client_cert[512];   /* "" = none; else the client certificate (PEM) for mutual TLS */
    char client_key[512];    /* its private key (PEM); "" = in client_cert's file */
    long connect_timeout_s;  /* default 10 */
    long low_speed_bytes;    /* abort below this many bytes/s ... (default 1) */
    long low_speed_time_s;   /* ... for this long (default 30) */
    long request_timeout_s;  /* whole small request (default 30) */
    int64_t max_bytes_per_s; /* download bandwidth limit, 0 = none */
    char user_agent[64];     /* default "ota-agent/VERSION" */
};
void ota_curl_config_defaults(struct ota_curl_config *c);
struct ota_curl;
int ota_curl_new(const struct ota_curl_config *c, struct ota_curl **ret,
                 struct ota_err *err) OTA_MUST;
void ota_curl_free(struct ota_curl *t);
extern const struct ota_transport_ops ota_curl_ops; /* ctx: struct ota_curl * */

/* ---- store over SQLite (WAL, synchronous=FULL) ---- */
struct ota_sqlite;
/* Opens or creates the database at path. A database that cannot be read or
 * fails PRAGMA quick_check is moved aside as path.broken (with its -wal and
 * -shm) and a new one is made: *ret is then valid and
 * ota_sqlite_reset_reason() says why. */
int ota_sqlite_open(const char *path, struct ota_sqlite **ret, struct ota_err *err) OTA_MUST;
/* Read only (ota-agent status): never creates, migrates, moves aside or
 * writes the database. No file yet: an empty store (in memory). A file that
 * open() would move aside or migrate: -EBADMSG with why, the file untouched.
 * Other errors as open(). */
int ota_sqlite_open_ro(const char *path, struct ota_sqlite **ret, struct ota_err *err) OTA_MUST;
void ota_sqlite_close(struct ota_sqlite *s);
/* Non-NULL if open() had to move a broken database aside. */
const char *ota_sqlite_reset_reason(const struct ota_sqlite *s);
/* Newest first, at most cap entries. */
int ota_sqlite_history(struct ota_sqlite *s, struct ota_history *ret, size_t cap, size_t *ret_n,
                       struct ota_err *err) OTA_MUST;
/* Number of queued reports. */
int ota_sqlite_outbox_count(struct ota_sqlite *s, size_t *ret_n, struct ota_err *err) OTA_MUST;
extern const struct ota_store_ops ota_sqlite_ops; /* ctx: struct ota_sqlite * */

/* ---- U-Boot env over libubootenv ---- */
struct ota_ubootenv;
/* config_path: an fw_env.config file (as fw_printenv reads it). Opening
 * succeeds on a corrupt env (bad CRC, no valid copy) so that the agent can
 * start and report it; get and set then return -EBADMSG and never write. */
int ota_ubootenv_open(const char *config_path, struct ota_ubootenv **ret,
                      struct ota_err *err) OTA_MUST;
void ota_ubootenv_close(struct ota_ubootenv *e);
extern const struct ota_bootenv_ops ota_ubootenv_ops; /* ctx: struct ota_ubootenv * */

/* ---- service control ---- */
enum ota_service_kind {
    OTA_SERVICE_SYSTEMD, /* systemctl restart|is-active UNIT, systemctl reboot */
    OTA_SERVICE_COMMAND, /* shell commands: a plain supervisor (the simulator) */
    OTA_SERVICE_KIND_MAX,
};
extern const char *const ota_service_kind_names[OTA_SERVICE_KIND_MAX]; /* "systemd", "command" */
struct ota_service_config {
    enum ota_service_kind kind;
    char unit[128];           /* systemd: e.g. "video-app.service" */
    char restart_cmd[1024];   /* command: exit 0 = restarted */
    char is_active_cmd[1024]; /* command: exit 0 = active */
    char reboot_cmd[1024];    /* command: exit 0 = reboot requested */
    int timeout_s;            /* a command still running after this is killed; 0 = 60 */
};
struct ota_service;
int ota_service_new(const struct ota_service_config *c, struct ota_service **ret,
                    struct ota_err *err) OTA_MUST;
void ota_service_free(struct ota_service *s);
extern const struct ota_service_ops ota_service_ops; /* ctx: struct ota_service * */

/* ---- clocks ---- */
struct ota_clock_posix {
    uint64_t rng; /* xorshift state; seeded by ota_clock_posix_init */
};
void ota_clock_posix_init(struct ota_clock_posix *c);
extern const struct ota_clock_ops ota_clock_posix_ops; /* ctx: struct ota_clock_posix * */

/* ---- install: slots and download file on POSIX file systems ---- */
struct ota_install_config {
    char app_root[512];      /* slots app_root/a, app_root/b, symlink app_root/current */
    char download_dir[512];  /* partial and complete downloads (data partition) */
    char rootfs_dev[2][512]; /* rootA, rootB: block devices or image files */
    char booted_file[512];   /* file naming the booted rootfs slot: "ota.slot=a" in a
                                kernel command line, or just "a"; "" = unknown */
};
struct ota_install;
int ota_install_new(const struct ota_install_config *c, struct ota_install **ret,
                    struct ota_err *err) OTA_MUST;
void ota_install_free(struct ota_install *i);
extern const struct ota_install_ops ota_install_posix_ops; /* ctx: struct ota_install * */

#ifdef __cplusplus
}
#endif
#endif
