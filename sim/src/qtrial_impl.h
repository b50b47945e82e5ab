/* What qtrial.c (one trial on a QEMU machine) shares with qblocks.c (the
 * block-level mode: a recording, and booted crash states). Private to sim/src. */
#ifndef OTASIM_QTRIAL_IMPL_H
#define OTASIM_QTRIAL_IMPL_H

#include "otasim/device.h"
#include "otasim/invariants.h"
#include "otasim/qemu.h"
#include "otasim/qenv.h"
#include "otasim/sim.h"

/* What the console said, as it went. */
struct otasim_qt_watch {
    int64_t fault_ms, back_ms; /* the fault; the agent's first line after it */
    int fired, final, boots, boot_fails, fell_back, booted_slot;
    int idle_ends; /* any line into IDLE is the final one (a crash state booted: an agent that
                      had finished finds nothing to do and ends IDLE without a verdict) */
    char status[16];
    size_t sl_len, sl_cap;
    char last[1024];
    struct otasim_qenv env; /* the guest's network never came up (qenv.h) */
};

/* "ota.env=... ota.conf=..." for a boot; fault NULL: no fault armed. */
void otasim_qt_kernel_args(const struct otasim_trial *tr, const struct otasim_fault *fault,
                           char *buf, size_t cap);
/* rootA before the first boot: the factory version (rootfs), the agent under test. */
int otasim_qt_provision(struct otasim_qemu *q, const char *version, const char *agent,
                        struct ota_err *err);
/* One console line into w (and tr's state lines); 1 when it was the fault point firing. */
int otasim_qt_on_line(struct otasim_trial *tr, struct otasim_device *d, struct otasim_qt_watch *w,
                      const char *line);
/* Powers on (the console log named in tr->logs). */
int otasim_qt_start(struct otasim_qemu *q, struct otasim_trial *tr, const char *args,
                    struct ota_err *err);
/* Follows the console to the agent's final state line, power-cycling on the fault. */
int otasim_qt_follow(const struct otasim_tools *t, struct otasim_trial *tr, struct otasim_qemu *q,
                     struct otasim_device *d, struct otasim_qt_watch *w, char *args, size_t cap,
                     struct otasim_settle *settle, struct ota_err *err);
/* The settle record, the app's answers, the disk read back into d. */
int otasim_qt_settle_and_read(const struct otasim_tools *t, struct otasim_trial *tr,
                              struct otasim_qemu *q, struct otasim_device *d,
                              const struct otasim_qt_watch *w, struct otasim_settle *settle,
                              struct ota_err *err);
/* Boots a block-level crash state (state: its raw disk) as found: no fault
 * armed, the env left as the state holds it, the cut counted as fired; then
 * the same invariant checker as every trial (tr's outcome and checks). The
 * console's record into *ret_w. */
int otasim_qt_boot_state(const struct otasim_tools *t, struct otasim_trial *tr, const char *state,
                         int idle_ends, struct otasim_qt_watch *ret_w, struct ota_err *err);

#endif
