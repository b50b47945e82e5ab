/* Fuzz harness: the U-Boot env as the simulator's bootloader model reads and
 * writes it (otasim_bootenv_get/_set, sim/src/bootloader.c over libubootenv,
 * separate from the agent's driver): the A/B variables read (ota/abboot.h),
 * a trial-boot write, read back (the input as agent/tests/fuzz/fuzz_bootenv.c
 * takes it). Input: byte 0 bit 0: a redundant env (two copies, each with its flags byte), bit
 * 1: the CRC as given (else the harness writes a valid CRC over the data, so
 * the fuzzer gets past it as RAUC's harnesses get past a signature); then
 * the env data ("name=value\0...\0\0"), padded with zeros to the env size
 * (4 KiB a copy; for a redundant env the input's first half is copy 1's
 * flags and data, the second half copy 2's). The files are in a temporary
 * directory made once. Corpus: corpus/sim-bootenv/. */
#include "ota/abboot.h"
#include "otasim/bootloader.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define ENV_SIZE 0x1000

static char dir[] = "/dev/shm/ota-fuzz-simenv-XXXXXX";
static char env1[256], env2[256], cfg1[256], cfg2[256];

/* CRC-32 (IEEE 802.3, reflected, as U-Boot's env header). */
static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "we");

    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0)
        abort();
}

static void cleanup(void)
{
    unlink(env1);
    unlink(env2);
    unlink(cfg1);
    unlink(cfg2);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char text[700];

    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof(dir), "/tmp/ota-fuzz-simenv-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(env1, sizeof(env1), "%s/env1", dir);
    snprintf(env2, sizeof(env2), "%s/env2", dir);
    snprintf(cfg1, sizeof(cfg1), "%s/fw_env.config", dir);
    snprintf(cfg2, sizeof(cfg2), "%s/fw_env_redundant.config", dir);
    snprintf(text, sizeof(text), "%s 0x0 0x%x\n", env1, ENV_SIZE);
    write_file(cfg1, text, strlen(text));
    snprintf(text, sizeof(text), "%s 0x0 0x%x\n%s 0x0 0x%x\n", env1, ENV_SIZE, env2, ENV_SIZE);
    write_file(cfg2, text, strlen(text));
    atexit(cleanup);
    return 0;
}

/* One copy: header (CRC, and the flags byte when redundant) + data. */
static void write_copy(const char *path, const uint8_t *in, size_t n, int redundant, int raw_crc)
{
    static uint8_t img[ENV_SIZE];
    size_t hdr = redundant ? 5 : 4;

    memset(img, 0, sizeof(img));
    if (raw_crc) { /* the input's bytes as they are, header included */
        memcpy(img, in, n < sizeof(img) ? n : sizeof(img));
    } else {
        size_t off = redundant ? 1 : 0; /* the flags byte comes from the input */
        if (redundant && n > 0)
            img[4] = in[0];
        memcpy(img + hdr, in + (n > off ? off : n),
               n > off ? (n - off < ENV_SIZE - hdr ? n - off : ENV_SIZE - hdr) : 0);
        uint32_t c = crc32_ieee(img + hdr, ENV_SIZE - hdr);
        img[0] = (uint8_t)c, img[1] = (uint8_t)(c >> 8), img[2] = (uint8_t)(c >> 16),
        img[3] = (uint8_t)(c >> 24);
    }
    write_file(path, img, sizeof(img));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {OTA_ENV_BOOT_PART, OTA_ENV_UPGRADE_AVAILABLE,
                                        OTA_ENV_BOOTCOUNT, OTA_ENV_BOOTLIMIT};
    const char *cfg;
    struct ota_err err;
    char buf[256];
    int redundant, raw;

    if (size < 1)
        return 0;
    redundant = data[0] & 1;
    raw = (data[0] >> 1) & 1;
    data++, size--;
    if (redundant) {
        size_t half = size / 2;
        write_copy(env1, data, half, 1, raw);
        write_copy(env2, data + half, size - half, 1, raw);
    } else {
        write_copy(env1, data, size, 0, raw);
    }
    cfg = redundant ? cfg2 : cfg1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        (void)!otasim_bootenv_get(cfg, names[i], buf, sizeof(buf), &err);
    if (otasim_bootenv_set(cfg, OTA_ENV_BOOTCOUNT, "0", &err) == 0) {
        /* what was written reads back */
        if (otasim_bootenv_get(cfg, OTA_ENV_BOOTCOUNT, buf, sizeof(buf), &err) < 0 ||
            strcmp(buf, "0") != 0)
            abort();
    }
    return 0;
}
