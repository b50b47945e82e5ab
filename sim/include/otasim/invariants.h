/* The invariant checker, run after every trial once the device settled.
 * Each check has a stable name (reports, the mutant tests and the
 * reproduce line use it):
 *   settled                the agent reached a quiet pass (only CHECKING/IDLE)
 *                          within the pass budget; it never exited 5 or died
 *                          of a signal it was not sent
 *   one-active-slot        app: `current` is a symlink to a or b; rootfs: the
 *                          env names A or B with no trial boot pending
 *   active-slot-complete   the active slot holds exactly the release the
 *                          agent's database names (tree digest / image hash)
 *   bootable               app: the service is active and /health answers
 *                          200; rootfs: the bootloader model booted the slot,
 *                          and (native) its service is up the same way
 *   running-version        the running version (app /version, booted image)
 *                          equals the agent's database
 *   bootenv-consistent     the env reads (CRC), bootcount 0, boot_part = the
 *                          database's slot; a corrupt env was left as it was
 *   lkg-untouched          no mutating call touched the factory slot (the
 *                          last-known-good) during the update
 *   active-slot-untouched  no mutating call wrote into the slot that was
 *                          active (current / booted) at that moment
 *   truthful-report        the server never got "success" for an update the
 *                          device does not run, and its last final report
 *                          says what happened
 *   db-integrity           PRAGMA integrity_check of the agent's database
 *   no-temp-files          no temp files, stash or download leftovers
 *   expected-outcome       the scenario's expect: block
 *   fault-fired            the trial's fault actually happened (a trigger
 *                          whose state never came tests nothing)
 */
#ifndef OTASIM_INVARIANTS_H
#define OTASIM_INVARIANTS_H

#include "otasim/device.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_pass_info {
    char journal[PATH_MAX + 32];
    char current[8]; /* app slot `current` named when the pass started */
    int booted;      /* rootfs slot booted when the pass started (-1) */
};

struct otasim_settle {
    int settled;
    char why[256];      /* when not */
    int64_t recover_ms; /* from the fault to settled */
};

/* Fills d->tr->checks and d->tr->outcome (PASS or FAIL). */
int otasim_invariants_check(struct otasim_device *d, const struct otasim_pass_info *passes,
                            size_t n_passes, const struct otasim_settle *settle,
                            const char *env_before, size_t env_before_len,
                            struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
