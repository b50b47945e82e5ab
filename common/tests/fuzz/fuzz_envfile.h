/* The U-Boot env files of the env harnesses (agent/tests/fuzz/fuzz_bootenv.c,
 * sim/tests/fuzz/fuzz_sim_bootenv.c): one input becomes one or two env copies
 * and the fw_env.config naming them. Included by those harnesses only. */
#ifndef OTA_FUZZ_ENVFILE_H
#define OTA_FUZZ_ENVFILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENV_SIZE 0x1000

static char dir[64];
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

/* The env files and both configs, in a directory made once (name: its
 * prefix), removed at exit. */
static void envfile_init(const char *name)
{
    char text[700];

    snprintf(dir, sizeof(dir), "/dev/shm/%s-XXXXXX", name);
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof(dir), "/tmp/%s-XXXXXX", name);
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

/* The input as env files: byte 0 bit 0 a redundant env (the rest split in
 * two copies), bit 1 the header's bytes as given (else a valid CRC). Returns
 * the config to open; NULL for an empty input. */
static const char *envfile_write(const uint8_t *data, size_t size)
{
    int redundant, raw;

    if (size < 1)
        return NULL;
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
    return redundant ? cfg2 : cfg1;
}

#endif
