/* A QEMU trial whose guest lost its network (qenv.c): an environment
 * failure, not the agent's; retried once (docs/DESIGN.md, "QEMU tier",
 * "A guest without its network").
 *
 * The evidence is the image's own network service: before the agent starts
 * (ota-agent is After=network-online.target) ota-net.service waits 20 s for
 * the machine's one NIC (usb0 on raspi3b: cdc_ether over the emulated USB;
 * eth0 on virt) and, when the kernel never made one, prints
 * "ota-net: no usb0 or eth0 after 20 s" (images/rootfs/overlay/usr/lib/ota/
 * net-static); journald passes it to the console as it passes the agent's
 * OTA-STATE lines. No code of the agent runs before that line, and what the
 * line says (no NIC in /sys/class/net) is the kernel's, so an agent bug
 * cannot produce it (a line of the agent's own, "ota-agent[PID]: ...", is
 * never taken for it). A failed trial with that line is an environment
 * failure unless the server heard from the device after that power-on began
 * (its last registration or check-in): then the network was there after
 * all, and the failure stays the agent's. */
#ifndef OTASIM_QENV_H
#define OTASIM_QENV_H

#include <stddef.h>
#include <stdint.h>
#include "ota/err.h"
#include "otasim/sim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What ota-net.service prints when the guest has no NIC. */
#define OTASIM_QENV_NET_LOST "ota-net: no usb0 or eth0"

struct otasim_qenv {
    int lost_boot;             /* the power-on (1, 2, ...) whose console said so; 0: none */
    int64_t lost_boot_wall_ms; /* when that power-on began (CLOCK_REALTIME) */
    char line[200];            /* the console line */
    int64_t contact_ms;        /* the server's last word from the device (wall ms); 0: none */
};

/* One console line of power-on boot (started at boot_wall_ms): 1 if it is
 * the evidence (the first is kept in ev), 0 otherwise. */
int otasim_qenv_line(struct otasim_qenv *ev, int boot, int64_t boot_wall_ms, const char *line);

/* The server's last word from the device out of GET /api/v1/devices/{id}
 * (the largest of registered_ms, reenrolled_ms, last_checkin_ms); 0 for no
 * device or no such fields. */
int64_t otasim_qenv_contact_ms(const char *device_json);

/* The verdict of an attempt: judged (the invariants' pass or fail, or a
 * harness error) unless it is a failure with the evidence and no word from
 * the device since: then OTASIM_ENVIRONMENT. A pass, an error and a case
 * not run stay what they are. */
enum otasim_outcome otasim_qenv_verdict(enum otasim_outcome judged, const struct otasim_qenv *ev);

/* "the guest's network never came up (power-on N: LINE)" into buf. */
void otasim_qenv_describe(const struct otasim_qenv *ev, char *buf, size_t cap);

/* One attempt of a trial (qtrial.c: one QEMU run of it; n = 1 or 2):
 * returns and fills tr as otasim_qemu_trial_run does. */
typedef int (*otasim_qenv_attempt_fn)(void *ctx, int n, struct otasim_trial *tr,
                                      struct ota_err *err);

/* Runs attempt 1; when its verdict is environment, moves its tree to
 * DIR.attempt-1 (its console logs stay, named in tr->logs) and runs attempt
 * 2, whose verdict is the trial's: environment again, or the agent judged
 * on a guest with its network (a pass says in tr->detail that it is one on
 * a retry). tr->duration_ms counts both attempts. */
int otasim_qenv_run(otasim_qenv_attempt_fn fn, void *ctx, struct otasim_trial *tr,
                    struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
