/* ota-sim boot: the bootloader model (otasim/bootloader.h) on a device's own
 * env and slot files, for harnesses that run the device's programs
 * themselves (the SWUpdate tests: agent/tests/swu). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota/crypto.h"
#include "otasim/bootloader.h"
#include "otasim/cli.h"

enum { EXIT_OK = 0, EXIT_NOT_BOOTED = 1, EXIT_USAGE = 2, EXIT_ENV_BAD = 3, EXIT_HARNESS = 5 };

#define MAX_IMAGES 8

static void usage(FILE *f)
{
    fprintf(f, "usage: ota-sim boot FW_ENV_CONFIG SLOT_A SLOT_B --image VERSION=FILE...\n"
               "                   [--once] [--max-boots N]\n"
               "\n"
               "Boots the device whose U-Boot env FW_ENV_CONFIG names (libubootenv's\n"
               "fw_env.config) and whose slots are the files SLOT_A and SLOT_B, as the\n"
               "simulator's bootloader model does (images/boot.cmd's rule): with\n"
               "upgrade_available=1 bootcount is counted up and saved, past bootlimit the other\n"
               "slot is chosen (upgrade_available=0); the slot of boot_part boots if it holds\n"
               "one of the --image files (its first bytes hash to the file's), else the board\n"
               "resets and boots again, until something boots or --max-boots (default 16).\n"
               "After a fallback (upgrade_available=0, bootcount past bootlimit) each boot\n"
               "counts too; past 2 x bootlimit the board is in recovery mode (both slots\n"
               "failed: outcome=recovery, exit 1, nothing more written).\n"
               "\n"
               "  --image VERSION=FILE  a bootable image, named VERSION (repeatable)\n"
               "  --once                one boot only (a failed boot is not retried)\n"
               "  --max-boots N         give up after N boots\n"
               "\n"
               "Prints: outcome=ok|failed|env-bad|recovery slot=A|B|- version=V boots=N\n"
               "        fell_back=0|1\n"
               "Exit: 0 a slot booted, 1 nothing booted, 2 usage, 3 the env is unreadable\n"
               "(bad CRC: U-Boot would boot its built-in default env), 5 harness error.\n");
}

/* VERSION=FILE into im: the whole file is the image. */
static int image_arg(const char *arg, struct otasim_image *im, struct ota_err *err)
{
    const char *eq = strchr(arg, '=');
    FILE *f;
    long size;
    int r;

    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(im->version) || !eq[1])
        return ota_err_set(err, EINVAL, "--image '%s' is not VERSION=FILE", arg);
    memset(im, 0, sizeof(*im));
    memcpy(im->version, arg, (size_t)(eq - arg));
    f = fopen(eq + 1, "rb");
    if (!f)
        return ota_err_set(err, errno, "cannot open %s: %s", eq + 1, strerror(errno));
    size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    if (size <= 0)
        return ota_err_set(err, EINVAL, "image %s is empty or unreadable", eq + 1);
    im->size = (uint64_t)size;
    im->bootable = 1;
    r = ota_sha256_file(eq + 1, im->size, im->sha256, err);
    return r < 0 ? ota_err_prefix(err, r, "image %s", eq + 1) : 0;
}

int otasim_cli_boot(int argc, char **argv)
{
    struct otasim_image images[MAX_IMAGES];
    struct otasim_bootcfg cfg = {0};
    struct otasim_boot_result res = {0};
    struct ota_err e = {0};
    int once = 0, r, i;
    char *end;

    if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    if (argc < 5)
        goto bad_usage;
    cfg.env_config = argv[2];
    cfg.part[0] = argv[3];
    cfg.part[1] = argv[4];
    cfg.images = images;
    for (i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else if (strcmp(argv[i], "--image") == 0 && i + 1 < argc) {
            if (cfg.n_images == MAX_IMAGES) {
                ota_err_set(&e, E2BIG, "at most %d --image", MAX_IMAGES);
                goto bad_usage;
            }
            if (image_arg(argv[++i], &images[cfg.n_images], &e) < 0)
                goto bad_usage;
            cfg.n_images++;
        } else if (strcmp(argv[i], "--max-boots") == 0 && i + 1 < argc) {
            errno = 0;
            cfg.max_boots = (int)strtol(argv[++i], &end, 10);
            if (errno || *end || cfg.max_boots < 1)
                goto bad_usage;
        } else {
            goto bad_usage;
        }
    }
    if (cfg.n_images == 0) {
        ota_err_set(&e, EINVAL, "no --image given");
        goto bad_usage;
    }
    r = once ? otasim_boot_once(&cfg, &res, &e) : otasim_boot(&cfg, &res, &e);
    if (r < 0) {
        fprintf(stderr, "ota-sim boot: %s\n", e.reason);
        return EXIT_HARNESS;
    }
    printf("outcome=%s slot=%s version=%s boots=%d fell_back=%d\n",
           otasim_boot_outcome_names[res.outcome], res.slot < 0 ? "-" : (res.slot ? "B" : "A"),
           res.version[0] ? res.version : "-", res.boots, res.fell_back);
    if (res.outcome == OTASIM_BOOT_ENV_BAD)
        return EXIT_ENV_BAD;
    return res.outcome == OTASIM_BOOT_OK ? EXIT_OK : EXIT_NOT_BOOTED;
bad_usage:
    if (e.reason[0])
        fprintf(stderr, "ota-sim boot: %s\n", e.reason);
    usage(stderr);
    return EXIT_USAGE;
}
