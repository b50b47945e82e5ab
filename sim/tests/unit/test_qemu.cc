// The QEMU module's host side, without booting anything: the SD image's
// partition table, partitions read and written through a qcow2 overlay (the
// image itself untouched), uboot.env inside the FAT boot partition read and
// changed with mtools + libubootenv, and the refusals while QEMU is "on".
// Needs qemu-img, qemu-io, mtools, mkfs.vfat and sfdisk (images/install-deps);
// skips where they are missing.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "otasim/bootloader.h"
#include "otasim/qemu.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

const uint64_t kMiB = 1024 * 1024;

int sh(const std::string &cmd)
{
    return std::system((cmd + " >/dev/null 2>&1").c_str());
}

bool have(const char *tool)
{
    return sh(std::string("command -v ") + tool) == 0 ||
           sh(std::string("test -x /usr/sbin/") + tool) == 0 ||
           sh(std::string("test -x /sbin/") + tool) == 0;
}

class QemuImageTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        for (const char *t : {"qemu-img", "qemu-io", "mcopy", "mkfs.vfat", "sfdisk"})
            if (!have(t))
                GTEST_SKIP() << t << " missing (images/install-deps)";
        char tmpl[] = "/tmp/otasim-qemu-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        img = dir + "/img";
        fs::create_directories(img);
        sd = img + "/sd.img";
        for (const char *f : {"u-boot.bin", "bcm2837-rpi-3-b.dtb", "Image.gz", "initrd.img"})
            std::ofstream(img + "/" + f) << "x";
        // 1 MiB gap, boot 4 MiB (FAT), rootA 2, rootB 2, data 2 (a small card)
        ASSERT_EQ(sh("truncate -s 12M " + sd), 0);
        ASSERT_EQ(sh("printf 'label: dos\\nstart=2048, size=8192, type=c\\nsize=4096, "
                     "type=83\\nsize=4096, type=83\\nsize=4096, type=83\\n' | sfdisk -q " +
                     sd),
                  0);
        std::string fat = dir + "/boot.vfat", env = dir + "/uboot.env", cfg = dir + "/fw.config";
        ASSERT_EQ(sh("mkfs.vfat -C " + fat + " 4096"), 0);
        const char *vars[] = {"boot_part=A", "bootcount=0", "upgrade_available=0"};
        struct ota_err e = {};
        ASSERT_EQ(otasim_bootenv_create(env.c_str(), cfg.c_str(), vars, 3, &e), 0) << e.reason;
        ASSERT_EQ(sh("mcopy -i " + fat + " " + env + " ::uboot.env"), 0);
        ASSERT_EQ(sh("dd if=" + fat + " of=" + sd + " bs=1M seek=1 conv=notrunc"), 0);
        before = read_all(sd);
    }
    void TearDown() override
    {
        if (!dir.empty())
            fs::remove_all(dir);
    }
    std::string dir, img, sd, before;
};

TEST_F(QemuImageTest, PartitionTableIsRead)
{
    struct otasim_qemu_image im = {};
    struct ota_err e = {};
    ASSERT_EQ(otasim_qemu_image_open(img.c_str(), &im, &e), 0) << e.reason;
    EXPECT_EQ(im.off[OTASIM_QPART_BOOT], 1 * kMiB);
    EXPECT_EQ(im.len[OTASIM_QPART_BOOT], 4 * kMiB);
    EXPECT_EQ(im.off[OTASIM_QPART_ROOTA], 5 * kMiB);
    EXPECT_EQ(im.off[OTASIM_QPART_DATA], 9 * kMiB);
    EXPECT_EQ(im.len[OTASIM_QPART_DATA], 2 * kMiB);
}

TEST_F(QemuImageTest, NoTableNoBootFilesAreClearErrors)
{
    struct otasim_qemu_image im = {};
    struct ota_err e = {};
    ASSERT_EQ(sh("truncate -s 0 " + sd + " && truncate -s 4M " + sd), 0);
    EXPECT_EQ(otasim_qemu_image_open(img.c_str(), &im, &e), -EINVAL);
    EXPECT_NE(std::string(e.reason).find("partition table"), std::string::npos) << e.reason;
    fs::remove(img + "/Image.gz");
    e = {};
    EXPECT_EQ(otasim_qemu_image_open(img.c_str(), &im, &e), -ENOENT);
    EXPECT_NE(std::string(e.reason).find("make image"), std::string::npos) << e.reason;
}

TEST_F(QemuImageTest, PartitionsGoThroughTheOverlayOnly)
{
    struct otasim_qemu_image im = {};
    struct otasim_qemu q;
    struct ota_err e = {};
    ASSERT_EQ(otasim_qemu_image_open(img.c_str(), &im, &e), 0) << e.reason;
    ASSERT_EQ(otasim_qemu_init(&q, OTASIM_QEMU_RASPI3B, &im, (dir + "/q").c_str(), nullptr, 1, &e),
              0)
        << e.reason;
    std::string part = dir + "/rootB.raw", back = dir + "/rootB.back";
    std::string bytes(2 * kMiB, '\0');
    for (size_t i = 0; i < bytes.size(); i++)
        bytes[i] = (char)(i * 7 + i / 4096);
    std::ofstream(part, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
    ASSERT_EQ(otasim_qemu_part_write(&q, OTASIM_QPART_ROOTB, part.c_str(), &e), 0) << e.reason;
    ASSERT_EQ(otasim_qemu_part_read(&q, OTASIM_QPART_ROOTB, back.c_str(), &e), 0) << e.reason;
    EXPECT_EQ(read_all(back), bytes);
    // its neighbours and the base image are as they were
    ASSERT_EQ(otasim_qemu_part_read(&q, OTASIM_QPART_ROOTA, back.c_str(), &e), 0) << e.reason;
    EXPECT_EQ(read_all(back), std::string(2 * kMiB, '\0'));
    EXPECT_EQ(read_all(sd), before);
    // a wrong size is refused, nothing written
    std::ofstream(part, std::ios::binary | std::ios::trunc) << "short";
    EXPECT_EQ(otasim_qemu_part_write(&q, OTASIM_QPART_ROOTB, part.c_str(), &e), -EINVAL);
    // never while the machine is on
    q.pid = getpid();
    EXPECT_EQ(otasim_qemu_part_read(&q, OTASIM_QPART_ROOTB, back.c_str(), &e), -EBUSY);
    q.pid = 0;
    otasim_qemu_close(&q);
}

TEST_F(QemuImageTest, EnvInTheBootPartitionIsChangedInPlace)
{
    struct otasim_qemu_image im = {};
    struct otasim_qemu q;
    struct ota_err e = {};
    char v[256] = "";
    ASSERT_EQ(otasim_qemu_image_open(img.c_str(), &im, &e), 0) << e.reason;
    ASSERT_EQ(otasim_qemu_init(&q, OTASIM_QEMU_RASPI3B, &im, (dir + "/q").c_str(), nullptr, 1, &e),
              0)
        << e.reason;
    ASSERT_EQ(
        otasim_qemu_env_set(&q, "ota_extra_args", "ota.conf=agent.device_id=x1 ota.env=A=b", &e), 0)
        << e.reason;
    std::string env = dir + "/got.env", cfg = dir + "/got.config";
    ASSERT_EQ(otasim_qemu_env_fetch(&q, env.c_str(), cfg.c_str(), &e), 0) << e.reason;
    ASSERT_EQ(otasim_bootenv_get(cfg.c_str(), "ota_extra_args", v, sizeof(v), &e), 0) << e.reason;
    EXPECT_STREQ(v, "ota.conf=agent.device_id=x1 ota.env=A=b");
    ASSERT_EQ(otasim_bootenv_get(cfg.c_str(), "boot_part", v, sizeof(v), &e), 0) << e.reason;
    EXPECT_STREQ(v, "A"); // the other variables kept
    // unset again
    ASSERT_EQ(otasim_qemu_env_set(&q, "ota_extra_args", nullptr, &e), 0) << e.reason;
    ASSERT_EQ(otasim_qemu_env_fetch(&q, env.c_str(), cfg.c_str(), &e), 0) << e.reason;
    EXPECT_EQ(otasim_bootenv_get(cfg.c_str(), "ota_extra_args", v, sizeof(v), &e), -ENOENT);
    EXPECT_EQ(read_all(sd), before); // all of it in the overlay
    otasim_qemu_close(&q);
}

TEST(QemuProfile, NamesParse)
{
    enum otasim_qemu_profile p;
    ASSERT_EQ(otasim_qemu_profile_parse("virt", &p), 0);
    EXPECT_EQ(p, OTASIM_QEMU_VIRT);
    ASSERT_EQ(otasim_qemu_profile_parse("raspi3b", &p), 0);
    EXPECT_EQ(p, OTASIM_QEMU_RASPI3B);
    EXPECT_EQ(otasim_qemu_profile_parse("raspi4", &p), -EINVAL);
}

} // namespace
