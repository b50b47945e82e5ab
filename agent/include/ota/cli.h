/* ota-agent's command line (exit codes in cli.c and README.md). */
#ifndef OTA_CLI_H
#define OTA_CLI_H

#ifdef __cplusplus
extern "C" {
#endif

int ota_cli_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
