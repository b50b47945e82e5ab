/* Fuzz harness: package extraction (ota_archive_extract: libarchive's input
 * through the agent's checks of each entry's path and link target, device
 * nodes, hard links, the .deb's data member) into an empty directory,
 * removed after each input; no entry may land outside it. Input: byte 0
 * even: a .deb, odd: a .tar.gz; then the payload. A slow target (files
 * written and fsynced; a tmpfs in /dev/shm where there is one). Corpus:
 * corpus/archive/. */
#define _XOPEN_SOURCE 700
#include "ota/archive.h"

#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char dir[] = "/dev/shm/ota-fuzz-ar-XXXXXX";
static char payload[256], dest[256], canary[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) < 0 ? -1 : 0;
}

static void rm_tree(const char *path)
{
    (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    rm_tree(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (!mkdtemp(dir)) {
        snprintf(dir, sizeof(dir), "/tmp/ota-fuzz-ar-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(payload, sizeof(payload), "%s/payload", dir);
    snprintf(dest, sizeof(dest), "%s/slot/dest", dir);
    snprintf(canary, sizeof(canary), "%s/slot", dir);
    atexit(cleanup);
    return 0;
}

/* Is there an entry in path other than a and b (something written beside the slot)? */
static int strays(const char *path, const char *a, const char *b)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    if (!d)
        return 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, a) != 0 && strcmp(e->d_name, b) != 0)
            n++;
    closedir(d);
    return n > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ota_err err;
    FILE *f;

    if (size < 1)
        return 0;
    f = fopen(payload, "we");
    if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
        abort();
    rm_tree(canary);
    if (mkdir(canary, 0755) < 0 || mkdir(dest, 0755) < 0)
        abort();
    /* the signed installed_size: 1 MiB, so the limit is fuzzed too (and no
     * input fills the disk) */
    (void)!ota_archive_extract(payload, (data[0] & 1) ? OTA_FORMAT_TARGZ : OTA_FORMAT_DEB, dest,
                               1 << 20, &err);
    if (strays(canary, "dest", "dest") || strays(dir, "slot", "payload"))
        abort(); /* an entry escaped the destination */
    rm_tree(canary);
    return 0;
}
