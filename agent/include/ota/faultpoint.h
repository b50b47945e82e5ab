/* Named fault points (test builds only, -DOTA_FAULT_POINTS=ON).
 * OTA_FAULT_POINT("switching.after_tmp_symlink") kills the process with
 * SIGKILL when the environment variable OTA_FAULT_POINT names that point, so
 * the harness can cut power inside a state. In normal builds it is nothing. */
#ifndef OTA_FAULTPOINT_H
#define OTA_FAULTPOINT_H

#ifdef OTA_FAULT_POINTS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define OTA_FAULT_POINT(name)                                                                      \
    do {                                                                                           \
        const char *fp_ = getenv("OTA_FAULT_POINT");                                               \
        if (fp_ && strcmp(fp_, (name)) == 0) {                                                     \
            fprintf(stderr, "ota-fault-point: %s\n", (name));                                      \
            fflush(stderr);                                                                        \
            kill(getpid(), SIGKILL);                                                               \
        }                                                                                          \
    } while (0)
#else
#define OTA_FAULT_POINT(name) ((void)0)
#endif

#endif
