/* The admin commands of ota-server (release add|list|get|publish|delete,
 * devices, device, reports): each is one or a few admin API calls through
 * client.h. The usage text is OTASRV_CTL_USAGE. */
#ifndef OTASRV_CTL_H
#define OTASRV_CTL_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const char OTASRV_CTL_USAGE[];

/* Runs the command line argv (argv[0]: the program, then the command and
 * its options, e.g. "release", "add", DIR). On success *ret_out is the text to
 * print (malloc'ed; the server's JSON, indented). -EINVAL for bad usage,
 * -EIO with "HTTP <status>: <detail>" when the server refused. */
int otasrv_ctl_run(int argc, char **argv, char **ret_out, struct ota_err *err) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
