/* Fuzz harness: the U-Boot env as the agent's bootenv driver reads and
 * writes it (agent/src/drivers/bootenv_uboot.c over libubootenv): open, the
 * A/B variables read (ota/abboot.h), a trial-boot write, read back. Input:
 * byte 0 bit 0: a redundant env (two copies, each with its flags byte), bit
 * 1: the CRC as given (else the harness writes a valid CRC over the data, so
 * the fuzzer gets past it as RAUC's harnesses get past a signature); then
 * the env data ("name=value\0...\0\0"), padded with zeros to the env size
 * (4 KiB a copy; for a redundant env the input's first half is copy 1's
 * flags and data, the second half copy 2's). The files are in a temporary
 * directory made once. Corpus: corpus/bootenv/. */
#include "ota/abboot.h"
#include "ota/drivers.h"
#include "fuzz_envfile.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    envfile_init("ota-fuzz-env");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {OTA_ENV_BOOT_PART, OTA_ENV_UPGRADE_AVAILABLE,
                                        OTA_ENV_BOOTCOUNT, OTA_ENV_BOOTLIMIT};
    const char *set_names[] = {OTA_ENV_UPGRADE_AVAILABLE, OTA_ENV_BOOTCOUNT};
    const char *set_values[] = {"1", "0"};
    const char *cfg = envfile_write(data, size);
    struct ota_ubootenv *e = NULL;
    struct ota_err err;
    char buf[256];

    if (!cfg || ota_ubootenv_open(cfg, &e, &err) < 0)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        (void)!ota_ubootenv_ops.get(e, names[i], buf, sizeof(buf), &err);
    if (ota_ubootenv_ops.set(e, set_names, set_values, 2, &err) == 0) {
        /* what was written reads back */
        if (ota_ubootenv_ops.get(e, OTA_ENV_BOOTCOUNT, buf, sizeof(buf), &err) < 0 ||
            strcmp(buf, "0") != 0)
            abort();
    }
    ota_ubootenv_close(e);
    return 0;
}
