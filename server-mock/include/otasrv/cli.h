/* ota-server's command line (cli.c): "serve [options]" runs the server
 * until SIGINT/SIGTERM; release|rollout|devices|device|reports run the admin
 * commands (ctl.h); --help prints both usages. */
#ifndef OTASRV_CLI_H
#define OTASRV_CLI_H

#ifdef __cplusplus
extern "C" {
#endif

/* The whole program: argv[0] is the program, argv[1] the command. Returns
 * the exit code: 0, 1 for a failure, 2 for bad usage. */
int otasrv_cli_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
