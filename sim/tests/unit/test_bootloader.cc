// The bootloader model: env files that the real fw_printenv/fw_setenv
// (libubootenv-tool) read and write, U-Boot's bootcount and fallback, and
// images told apart by the hash of their first size bytes.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ota/abboot.h"
#include "ota/crypto.h"
#include "otasim/bootloader.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

const size_t kImageSize = 96 * 1024;
const size_t kPartSize = 256 * 1024;

// Deterministic bytes standing for a rootfs image.
std::string image_bytes(unsigned seed, size_t n)
{
    std::string s(n, '\0');
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = (char)(x >> 16);
    }
    return s;
}

// A partition: the image, then zeros up to the partition size.
void write_part(const std::string &path, const std::string &image)
{
    std::string p = image;
    p.resize(kPartSize, '\0');
    write_all(path, p);
}

struct otasim_image make_image(const char *version, const std::string &bytes, int bootable)
{
    struct otasim_image im = {};
    snprintf(im.version, sizeof(im.version), "%s", version);
    im.size = bytes.size();
    im.bootable = bootable;
    struct ota_sha256 *h = ota_sha256_new();
    EXPECT_NE(h, nullptr);
    EXPECT_EQ(ota_sha256_update(h, bytes.data(), bytes.size()), 0);
    EXPECT_EQ(ota_sha256_final(h, im.sha256), 0);
    ota_sha256_free(h);
    return im;
}

std::string shell(const std::string &cmd, int *status)
{
    std::string out;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p)
        return out;
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        out.append(buf, n);
    *status = pclose(p);
    return out;
}

class BootloaderTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/otasim-boot-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        env = dir + "/uboot.env";
        config = dir + "/fw_env.config";
        part_a = dir + "/rootA.img";
        part_b = dir + "/rootB.img";
        v1 = image_bytes(1, kImageSize);
        v2 = image_bytes(2, kImageSize);
        images.push_back(make_image("1.0", v1, 1));
        images.push_back(make_image("2.0", v2, 1));
        write_part(part_a, v1);
        write_part(part_b, v2);
        cfg.env_config = config.c_str();
        cfg.part[0] = part_a.c_str();
        cfg.part[1] = part_b.c_str();
        cfg.images = images.data();
        cfg.n_images = images.size();
        cfg.max_boots = 0;
    }
    void TearDown() override
    {
        fs::remove_all(dir);
    }

    void make_env(std::vector<const char *> vars)
    {
        ASSERT_EQ(
            otasim_bootenv_create(env.c_str(), config.c_str(), vars.data(), vars.size(), &err), 0)
            << err.reason;
    }

    std::string get(const char *name)
    {
        char buf[128];
        struct ota_err e = {};
        int r = otasim_bootenv_get(config.c_str(), name, buf, sizeof(buf), &e);
        if (r == -ENOENT)
            return "<unset>";
        EXPECT_EQ(r, 0) << e.reason;
        return r == 0 ? buf : "<error>";
    }

    struct otasim_boot_result boot_once()
    {
        struct otasim_boot_result res = {};
        EXPECT_EQ(otasim_boot_once(&cfg, &res, &err), 0) << err.reason;
        return res;
    }

    std::string dir, env, config, part_a, part_b, v1, v2;
    std::vector<struct otasim_image> images;
    struct otasim_bootcfg cfg = {};
    struct ota_err err = {};
};

TEST_F(BootloaderTest, FreshEnvIsReadByFwPrintenv)
{
    make_env({"bootcmd=run ab_select; bootm", "boot_part=A", "bootcount=0", "bootlimit=3",
              "upgrade_available=0"});
    EXPECT_EQ(fs::file_size(env), (uintmax_t)OTASIM_ENV_SIZE);
    std::string cfgtext = read_all(config);
    EXPECT_NE(cfgtext.find(" 0x0 0x4000"), std::string::npos) << cfgtext;

    int st = -1;
    std::string out = shell("fw_printenv -c " + config + " 2>&1", &st);
    EXPECT_EQ(st, 0) << out;
    // fw_printenv lists them sorted.
    EXPECT_EQ(out, "boot_part=A\nbootcmd=run ab_select; bootm\nbootcount=0\nbootlimit=3\n"
                   "upgrade_available=0\n");

    // Written by the real fw_setenv, read back by the model.
    out = shell("fw_setenv -c " + config + " boot_part B 2>&1", &st);
    EXPECT_EQ(st, 0) << out;
    EXPECT_EQ(get("boot_part"), "B");
    EXPECT_EQ(get("bootlimit"), "3");
    EXPECT_EQ(get("nosuch"), "<unset>");

    // And written by the model, read by fw_printenv.
    ASSERT_EQ(otasim_bootenv_create(env.c_str(), config.c_str(), nullptr, 0, &err), 0);
    out = shell("fw_printenv -c " + config + " 2>&1", &st);
    EXPECT_EQ(st, 0) << out;
    EXPECT_EQ(out, "");
}

// Byte for byte what U-Boot's own mkenvimage (u-boot-tools) makes with
// zero padding (its default pads with 0xff; both are valid envs).
TEST_F(BootloaderTest, CreateMatchesMkenvimage)
{
    if (system("command -v mkenvimage >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "mkenvimage (u-boot-tools) not installed";
    make_env({"bootcmd=run ab_select; bootm", "boot_part=A", "bootlimit=3"});
    write_all(dir + "/env.txt", "bootcmd=run ab_select; bootm\nboot_part=A\nbootlimit=3\n");
    ASSERT_EQ(
        system(("mkenvimage -p 0 -s 0x4000 -o " + dir + "/ref.env " + dir + "/env.txt").c_str()),
        0);
    EXPECT_TRUE(read_all(env) == read_all(dir + "/ref.env"));
}

TEST_F(BootloaderTest, CreateRefusesBadVars)
{
    std::vector<const char *> bad = {"novalue"};
    EXPECT_EQ(otasim_bootenv_create(env.c_str(), config.c_str(), bad.data(), 1, &err), -EINVAL);
    std::string big(OTASIM_ENV_SIZE, 'x');
    big = "a=" + big;
    std::vector<const char *> huge = {big.c_str()};
    ota_err_clear(&err);
    EXPECT_EQ(otasim_bootenv_create(env.c_str(), config.c_str(), huge.data(), 1, &err), -ENOSPC);
}

TEST_F(BootloaderTest, NoUpgradeBootsBootPartAndLeavesBootcount)
{
    make_env({"boot_part=A", "bootcount=2", "bootlimit=3", "upgrade_available=0"});
    std::string before = read_all(env);
    struct otasim_boot_result res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 0);
    EXPECT_EQ(res.fell_back, 0);
    EXPECT_STREQ(res.version, "1.0");
    EXPECT_EQ(read_all(env), before); // not even rewritten
    EXPECT_EQ(get("bootcount"), "2");

    make_env({"boot_part=b", "upgrade_available=0"});
    res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 1);
    EXPECT_STREQ(res.version, "2.0");
    EXPECT_EQ(get("bootcount"), "<unset>");
}

TEST_F(BootloaderTest, TrialBootOfGoodImage)
{
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 1);
    EXPECT_EQ(res.boots, 1);
    EXPECT_EQ(res.fell_back, 0);
    EXPECT_STREQ(res.version, "2.0");
    EXPECT_EQ(get("bootcount"), "1");
    EXPECT_EQ(get("upgrade_available"), "1");
    EXPECT_EQ(get("boot_part"), "B");
    int st = -1;
    std::string out = shell("fw_printenv -c " + config + " bootcount 2>&1", &st);
    EXPECT_EQ(st, 0);
    EXPECT_EQ(out, "bootcount=1\n");
}

TEST_F(BootloaderTest, HalfWrittenImageCountsUpThenFallsBack)
{
    // B holds the first half of 2.0, the rest still zeros: a cut install.
    write_part(part_b, v2.substr(0, kImageSize / 2));
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    for (int i = 1; i <= 3; i++) {
        struct otasim_boot_result res = boot_once();
        EXPECT_EQ(res.outcome, OTASIM_BOOT_FAILED) << "boot " << i;
        EXPECT_EQ(res.slot, 1);
        EXPECT_EQ(res.fell_back, 0);
        EXPECT_STREQ(res.version, "");
        EXPECT_EQ(get("bootcount"), std::to_string(i));
        EXPECT_EQ(get("boot_part"), "B");
    }
    struct otasim_boot_result res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 0);
    EXPECT_EQ(res.fell_back, 1);
    EXPECT_STREQ(res.version, "1.0");
    EXPECT_EQ(get("boot_part"), "A");
    EXPECT_EQ(get("upgrade_available"), "0");
    EXPECT_EQ(get("bootcount"), "4"); // left past the limit, as boot.cmd does

    // Then A boots plainly.
    res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 0);
    EXPECT_EQ(res.fell_back, 0);
}

TEST_F(BootloaderTest, BootRepeatsUntilFallback)
{
    // A known image marked not bootable, e.g. a broken kernel.
    images[1].bootable = 0;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.boots, 4);
    EXPECT_EQ(res.fell_back, 1);
    EXPECT_EQ(res.slot, 0);
    EXPECT_STREQ(res.version, "1.0");
}

TEST_F(BootloaderTest, NothingBootableGivesUpAfterMaxBoots)
{
    write_part(part_a, image_bytes(7, kImageSize)); // garbage in both
    write_part(part_b, image_bytes(8, kImageSize));
    make_env({"boot_part=A", "upgrade_available=0"});
    cfg.max_boots = 5;
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_FAILED);
    EXPECT_EQ(res.boots, 5);
    EXPECT_EQ(res.slot, 0);

    // Without a bootlimit a trial never falls back.
    make_env({"boot_part=B", "bootcount=0", "upgrade_available=1"});
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_FAILED);
    EXPECT_EQ(res.fell_back, 0);
    EXPECT_EQ(get("bootcount"), "5");
}

TEST_F(BootloaderTest, CorruptEnvIsEnvBad)
{
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    ASSERT_EQ(otasim_bootenv_corrupt(env.c_str(), &err), 0) << err.reason;
    std::string before = read_all(env);
    struct otasim_boot_result res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_ENV_BAD);
    EXPECT_EQ(res.slot, -1);
    EXPECT_EQ(read_all(env), before); // the empty env was not stored

    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0);
    EXPECT_EQ(res.outcome, OTASIM_BOOT_ENV_BAD);
    EXPECT_EQ(res.boots, 1);

    char buf[16];
    struct ota_err e = {};
    EXPECT_EQ(otasim_bootenv_get(config.c_str(), "boot_part", buf, sizeof(buf), &e), -EBADMSG);
    EXPECT_NE(std::string(e.reason).find("CRC"), std::string::npos) << e.reason;

    // The real tool agrees that the env is bad.
    int st = -1;
    std::string out = shell("fw_printenv -c " + config + " boot_part 2>&1", &st);
    EXPECT_NE(st, 0);
    EXPECT_NE(out.find("Cannot read environment"), std::string::npos) << out;
    EXPECT_EQ(out.find("boot_part=B"), std::string::npos) << out;
}

TEST_F(BootloaderTest, MissingConfigIsAnError)
{
    cfg.env_config = "/nonexistent/fw_env.config";
    struct otasim_boot_result res = {};
    EXPECT_LT(otasim_boot_once(&cfg, &res, &err), 0);
    EXPECT_NE(err.reason[0], '\0');
}

TEST_F(BootloaderTest, IdentifyGoodAndPartialImages)
{
    size_t idx = 99;
    ASSERT_EQ(otasim_image_identify(&cfg, 0, &idx, &err), 0) << err.reason;
    EXPECT_EQ(idx, 0u);
    ASSERT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), 0) << err.reason;
    EXPECT_EQ(idx, 1u);

    // Partial: the first 3/4 written.
    write_part(part_b, v2.substr(0, kImageSize * 3 / 4));
    idx = 99;
    EXPECT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), -ENOENT);
    EXPECT_EQ(idx, 99u);

    // One flipped byte at the very end.
    std::string bad = v2;
    bad[bad.size() - 1] ^= 1;
    write_part(part_b, bad);
    EXPECT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), -ENOENT);

    // A partition file shorter than the image (a truncated file).
    write_all(part_b, v2.substr(0, 1000));
    EXPECT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), -ENOENT);

    // Images of different sizes: the longer one of the list matches.
    std::string v3 = image_bytes(3, kImageSize + 4096);
    images.push_back(make_image("3.0", v3, 1));
    cfg.images = images.data();
    cfg.n_images = images.size();
    write_part(part_b, v3);
    ASSERT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), 0) << err.reason;
    EXPECT_EQ(idx, 2u);

    // A missing partition file holds nothing; a bad slot is refused.
    fs::remove(part_b);
    EXPECT_EQ(otasim_image_identify(&cfg, 1, &idx, &err), -ENOENT);
    EXPECT_EQ(otasim_image_identify(&cfg, 2, &idx, &err), -EINVAL);
}

// ---- kernels that hang, the watchdog, recovery mode ---------------------------------

// The rule itself (ota/abboot.h), as boot.scr, the model and blkcheck.c apply it.
TEST(AbbootRule, HealthyBootCountsNothingAndWritesNothing)
{
    int save = -1;
    struct ota_abboot_env e = {0, 0, 0, 3};
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_SLOT);
    EXPECT_EQ(save, 0);
    EXPECT_EQ(e.count, 0u);
    e.count = 3; // at the limit, no trial: still nothing (not a fallback)
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_SLOT);
    EXPECT_EQ(save, 0);
    EXPECT_EQ(e.count, 3u);
}

TEST(AbbootRule, TrialFallbackThenFallbackSlotCountsToRecovery)
{
    int save = 0;
    struct ota_abboot_env e = {1, 1, 0, 3};
    for (unsigned long i = 1; i <= 3; i++) {
        EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_SLOT);
        EXPECT_EQ(save, 1);
        EXPECT_EQ(e.count, i);
        EXPECT_EQ(e.slot, 1);
    }
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_FALLBACK);
    EXPECT_EQ(e.slot, 0);
    EXPECT_EQ(e.upgrade, 0);
    EXPECT_EQ(e.count, 4u);
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_SLOT); // 5: A's second boot
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_SLOT); // 6: A's third
    EXPECT_EQ(e.count, 6u);
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_RECOVERY); // 7 > 2 x 3
    EXPECT_EQ(save, 1);
    EXPECT_EQ(e.count, 7u);
    EXPECT_EQ(ota_abboot_step(&e, &save), OTA_ABBOOT_RECOVERY); // stays, writes nothing
    EXPECT_EQ(save, 0);
    EXPECT_EQ(e.count, 7u);
    EXPECT_EQ(e.slot, 0);

    // No bootlimit: neither a fallback nor recovery (U-Boot's rule).
    struct ota_abboot_env nolimit = {0, 0, 9, 0};
    EXPECT_EQ(ota_abboot_step(&nolimit, &save), OTA_ABBOOT_SLOT);
    EXPECT_EQ(save, 0);
}

TEST_F(BootloaderTest, HungKernelIsItsOwnOutcome)
{
    int boots[2] = {0, 0};
    images[1].hang = -1;
    cfg.image_boots = boots;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_HUNG);
    EXPECT_STREQ(otasim_boot_outcome_names[res.outcome], "hung");
    EXPECT_EQ(res.slot, 1);
    EXPECT_STREQ(res.version, "2.0"); // the kernel that hung
    EXPECT_EQ(get("bootcount"), "1"); // counted before the kernel started
    EXPECT_EQ(boots[1], 1);
    EXPECT_EQ(boots[0], 0);
}

TEST_F(BootloaderTest, WatchdogResetsCountIntoTheFallback)
{
    int boots[2] = {0, 0};
    images[1].hang = -1; // 2.0's kernel hangs on every boot
    cfg.image_boots = boots;
    cfg.watchdog_ms = 10000;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 0);
    EXPECT_STREQ(res.version, "1.0");
    EXPECT_EQ(res.fell_back, 1);
    EXPECT_EQ(res.boots, 4);
    EXPECT_EQ(res.watchdog_resets, 3); // each hang of B ended by the watchdog, each counted
    EXPECT_EQ(res.hung_ms, 30000);
    EXPECT_EQ(boots[1], 3);
    EXPECT_EQ(get("boot_part"), "A");
    EXPECT_EQ(get("upgrade_available"), "0");
    EXPECT_EQ(get("bootcount"), "4");

    // The default timeout is the bcm2835's longest.
    cfg.watchdog_ms = 0;
    boots[1] = 0;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.hung_ms, 3 * OTASIM_WATCHDOG_MS_DEFAULT);
}

TEST_F(BootloaderTest, KernelThatHangsOnItsFirstBootsThenBoots)
{
    int boots[2] = {0, 0};
    images[1].hang = 2;
    cfg.image_boots = boots;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(res.slot, 1);
    EXPECT_EQ(res.fell_back, 0);
    EXPECT_EQ(res.boots, 3);
    EXPECT_EQ(res.watchdog_resets, 2);
    EXPECT_EQ(get("bootcount"), "3"); // within bootlimit: the trial goes on
    EXPECT_EQ(get("boot_part"), "B");
}

TEST_F(BootloaderTest, HungKernelWithoutWatchdogStaysHung)
{
    int boots[2] = {0, 0};
    images[1].hang = -1;
    cfg.image_boots = boots;
    cfg.no_watchdog = 1;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_HUNG); // nothing resets it: no further boot
    EXPECT_EQ(res.boots, 1);
    EXPECT_EQ(res.watchdog_resets, 0);
    EXPECT_EQ(res.hung_ms, 0);
    EXPECT_EQ(res.fell_back, 0);
    EXPECT_EQ(get("bootcount"), "1"); // bootcount never reaches the limit
    EXPECT_EQ(get("boot_part"), "B");
}

TEST_F(BootloaderTest, BothSlotsBadEndInRecoveryMode)
{
    int boots[2] = {0, 0};
    images[1].bootable = 0; // 2.0 panics (resets at once)
    images[0].hang = -1;    // and then 1.0's kernel hangs too
    cfg.image_boots = boots;
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    struct otasim_boot_result res = {};
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_RECOVERY);
    EXPECT_STREQ(otasim_boot_outcome_names[res.outcome], "recovery");
    EXPECT_EQ(res.boots, 7); // B 3 times, A 3 times (the fallback's boot first), then recovery
    EXPECT_EQ(res.fell_back, 1);
    EXPECT_EQ(res.watchdog_resets, 3);
    EXPECT_EQ(boots[0], 3);
    EXPECT_EQ(get("boot_part"), "A");
    EXPECT_EQ(get("upgrade_available"), "0");
    EXPECT_EQ(get("bootcount"), "7");

    // Recovery mode stays, and writes nothing: not a reset loop.
    std::string before = read_all(env);
    res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_RECOVERY);
    EXPECT_EQ(read_all(env), before);
    EXPECT_EQ(boots[0], 3); // no kernel of a slot started

    // A fallback slot that panics gets there the same way.
    images[0].hang = 0;
    write_part(part_a, image_bytes(7, kImageSize));
    make_env({"boot_part=B", "bootcount=0", "bootlimit=3", "upgrade_available=1"});
    ASSERT_EQ(otasim_boot(&cfg, &res, &err), 0) << err.reason;
    EXPECT_EQ(res.outcome, OTASIM_BOOT_RECOVERY);
    EXPECT_EQ(res.boots, 7);
}

TEST_F(BootloaderTest, AgentSettleAfterFallbackEndsTheCount)
{
    // After the fallback the agent writes boot_part, upgrade_available=0 and
    // bootcount=0 in one store (agent/src/core/slots.c): A's boots count no more.
    make_env({"boot_part=A", "bootcount=4", "bootlimit=3", "upgrade_available=0"});
    struct otasim_boot_result res = boot_once();
    EXPECT_EQ(res.outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(get("bootcount"), "5"); // not settled yet: counted
    ASSERT_EQ(otasim_bootenv_set(config.c_str(), "bootcount", "0", &err), 0) << err.reason;
    std::string before = read_all(env);
    for (int i = 0; i < 10; i++) {
        res = boot_once();
        EXPECT_EQ(res.outcome, OTASIM_BOOT_OK) << "boot " << i;
        EXPECT_EQ(res.slot, 0);
    }
    EXPECT_EQ(read_all(env), before); // healthy boots write nothing

    // Not settled (the mutant fallback-keeps-bootcount's env): the third
    // reboot of A past the fallback is recovery mode.
    make_env({"boot_part=A", "bootcount=4", "bootlimit=3", "upgrade_available=0"});
    EXPECT_EQ(boot_once().outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(boot_once().outcome, OTASIM_BOOT_OK);
    EXPECT_EQ(boot_once().outcome, OTASIM_BOOT_RECOVERY);
}

} // namespace
