/* Fuzz harness: rootfs image decompression (ota_archive_write_image: raw,
 * gz, xz or zst streamed through libarchive onto a file standing for the
 * inactive partition, 1 MiB: a larger image must stop with -ENOSPC). Input:
 * byte 0 picks the format (mod 4: raw, gz, xz, zst); then the payload. A slow
 * target. Corpus: corpus/image/. */
#include "ota/archive.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define DEV_SIZE (1u << 20)

static char dir[] = "/dev/shm/ota-fuzz-img-XXXXXX";
static char payload[256], dev[256];

static void cleanup(void)
{
    unlink(payload);
    unlink(dev);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof(dir), "/tmp/ota-fuzz-img-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(payload, sizeof(payload), "%s/payload", dir);
    snprintf(dev, sizeof(dev), "%s/partition", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum ota_format formats[] = {OTA_FORMAT_RAW, OTA_FORMAT_GZ, OTA_FORMAT_XZ,
                                              OTA_FORMAT_ZST};
    struct ota_err err;
    uint64_t written = 0;
    FILE *f;
    int r;

    if (size < 1)
        return 0;
    f = fopen(payload, "we");
    if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
        abort();
    f = fopen(dev, "we"); /* an empty partition file each time */
    if (!f || fclose(f) != 0)
        abort();
    r = ota_archive_write_image(payload, formats[data[0] & 3], dev, DEV_SIZE, &written, &err);
    if (r == 0 && written > DEV_SIZE)
        abort(); /* more than the partition holds, and no -ENOSPC */
    return 0;
}
