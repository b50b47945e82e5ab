// Unit tests for src/drivers/install_posix.c: the download file, the app
// slots and their `current` symlink, rootfs partitions as image files.
#include <gtest/gtest.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ota/crypto.h"
#include "ota/drivers.h"

namespace
{

const struct ota_install_ops &ops = ota_install_posix_ops;

class InstallTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-install-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        app_ = dir_ + "/app";
        ASSERT_EQ(mkdir(app_.c_str(), 0755), 0);
        memset(&cfg_, 0, sizeof(cfg_));
        snprintf(cfg_.app_root, sizeof(cfg_.app_root), "%s", app_.c_str());
        snprintf(cfg_.download_dir, sizeof(cfg_.download_dir), "%s/data/dl", dir_.c_str());
        snprintf(cfg_.rootfs_dev[0], sizeof(cfg_.rootfs_dev[0]), "%s/rootA.img", dir_.c_str());
        snprintf(cfg_.rootfs_dev[1], sizeof(cfg_.rootfs_dev[1]), "%s/rootB.img", dir_.c_str());
        snprintf(cfg_.booted_file, sizeof(cfg_.booted_file), "%s/cmdline", dir_.c_str());
        write_file(cfg_.rootfs_dev[0], std::string(2 << 20, 'A'));
        write_file(cfg_.rootfs_dev[1], std::string(3 << 20, 'B'));
        ota_err_clear(&err_);
        Reopen();
    }
    void TearDown() override
    {
        ota_install_free(inst_);
        for (const std::string &m : mounts_)
            umount2(m.c_str(), MNT_DETACH);
        sh("rm -rf '" + dir_ + "'");
    }
    void Reopen()
    {
        ota_install_free(inst_);
        inst_ = nullptr;
        ASSERT_EQ(ota_install_new(&cfg_, &inst_, &err_), 0) << err_.reason;
    }
    std::string P(const std::string &rel) const
    {
        return dir_ + "/" + rel;
    }
    std::string A(const std::string &rel) const
    {
        return app_ + "/" + rel;
    }
    std::string DlPath() const
    {
        return std::string(cfg_.download_dir) + "/payload.part";
    }
    static std::string Link(const std::string &path)
    {
        char buf[4096];
        ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
        return n < 0 ? "" : std::string(buf, (size_t)n);
    }
    // Puts data in place as the verified download, through the ops.
    void Download(const std::string &data)
    {
        ASSERT_EQ(ops.dl_open(inst_, 0, &err_), 0) << err_.reason;
        ASSERT_EQ(ops.dl_write(inst_, data.data(), data.size(), &err_), 0) << err_.reason;
        ASSERT_EQ(ops.dl_sync(inst_, &err_), 0) << err_.reason;
        ops.dl_close(inst_);
    }
    // A tar.gz app package whose VERSION says version.
    std::string AppPackage(const std::string &version)
    {
        std::string stage = P("stage-" + version);
        EXPECT_EQ(sh("mkdir -p '" + stage + "/bin'"), 0);
        write_file(stage + "/VERSION", version + "\n");
        write_file(stage + "/bin/video-app", "#!/bin/sh\n");
        EXPECT_EQ(chmod((stage + "/bin/video-app").c_str(), 0755), 0);
        std::string out = P("app-" + version + ".tar.gz");
        EXPECT_EQ(sh("tar -C '" + stage + "' -czf '" + out + "' ."), 0);
        return read_file(out);
    }
    int Active(enum ota_kind kind, int *slot)
    {
        ota_err_clear(&err_);
        return ops.active_slot(inst_, kind, slot, &err_);
    }
    static struct ota_manifest Manifest(enum ota_kind kind, enum ota_format format)
    {
        struct ota_manifest m;
        memset(&m, 0, sizeof(m));
        m.schema = 1;
        m.kind = kind;
        m.format = format;
        m.installed_size = 1 << 20; // what the test packages may unpack (at most)
        return m;
    }
    // Mounts a small tmpfs on path; false where this is not allowed.
    bool MountTmpfs(const std::string &path, const char *size)
    {
        if (mount("tmpfs", path.c_str(), "tmpfs", 0, size) != 0)
            return false;
        mounts_.push_back(path);
        return true;
    }
    std::string dir_, app_;
    std::vector<std::string> mounts_;
    struct ota_install_config cfg_;
    struct ota_install *inst_ = nullptr;
    struct ota_err err_;
};

std::string Hex(const uint8_t *d, size_t n)
{
    static const char *x = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; i++) {
        s += x[d[i] >> 4];
        s += x[d[i] & 15];
    }
    return s;
}

TEST_F(InstallTest, NewNeedsDownloadDir)
{
    struct ota_install_config c = cfg_;
    c.download_dir[0] = '\0';
    struct ota_install *i = nullptr;
    EXPECT_EQ(ota_install_new(&c, &i, &err_), -EINVAL);
    EXPECT_EQ(i, nullptr);
    ota_install_free(nullptr);
}

TEST_F(InstallTest, DownloadOpenWriteResume)
{
    uint64_t size = 0;
    EXPECT_EQ(ops.dl_size(inst_, &size, &err_), -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.dl_write(inst_, "x", 1, &err_), -EBADF);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.dl_sync(inst_, &err_), -EBADF);
    ota_err_clear(&err_);

    // The download dir is made on first use.
    ASSERT_EQ(ops.dl_open(inst_, 0, &err_), 0) << err_.reason;
    ASSERT_EQ(ops.dl_write(inst_, "hello ", 6, &err_), 0);
    ASSERT_EQ(ops.dl_write(inst_, "world", 5, &err_), 0);
    ASSERT_EQ(ops.dl_sync(inst_, &err_), 0);
    ASSERT_EQ(ops.dl_size(inst_, &size, &err_), 0);
    EXPECT_EQ(size, 11u);
    ops.dl_close(inst_);
    ops.dl_close(inst_); // twice is fine

    // Resume from the verified 6 bytes: the rest is dropped, writes append.
    ASSERT_EQ(ops.dl_open(inst_, 6, &err_), 0) << err_.reason;
    ASSERT_EQ(ops.dl_write(inst_, "there", 5, &err_), 0);
    ASSERT_EQ(ops.dl_sync(inst_, &err_), 0);
    EXPECT_EQ(read_file(DlPath()), "hello there");

    // Opening again while open starts over cleanly.
    ASSERT_EQ(ops.dl_open(inst_, 11, &err_), 0) << err_.reason;
    ASSERT_EQ(ops.dl_write(inst_, "!", 1, &err_), 0);
    ops.dl_close(inst_);
    EXPECT_EQ(read_file(DlPath()), "hello there!");

    // Fewer bytes on disk than the journal claims.
    EXPECT_EQ(ops.dl_open(inst_, 100, &err_), -ENODATA);
    EXPECT_EQ(err_.code, ENODATA);
    EXPECT_EQ(read_file(DlPath()), "hello there!");
}

TEST_F(InstallTest, DownloadHashAndRemove)
{
    Download("hello there, and more");
    struct ota_sha256 *h = ota_sha256_new();
    ASSERT_NE(h, nullptr);
    ASSERT_EQ(ops.dl_hash(inst_, 11, h, &err_), 0) << err_.reason;
    uint8_t d[OTA_SHA256_LEN];
    ASSERT_EQ(ota_sha256_final(h, d), 0);
    EXPECT_EQ(Hex(d, sizeof(d)),
              "12998c017066eb0d2a70b94e6ed3192985855ce390f321bbdb832022888bd251");

    // Hashing a prefix in two calls is the same as in one.
    ASSERT_EQ(ota_sha256_reset(h), 0);
    ASSERT_EQ(ops.dl_hash(inst_, 5, h, &err_), 0);
    ASSERT_EQ(ota_sha256_final(h, d), 0);
    EXPECT_EQ(Hex(d, sizeof(d)),
              "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"); // "hello"

    ASSERT_EQ(ota_sha256_reset(h), 0);
    EXPECT_EQ(ops.dl_hash(inst_, 1000, h, &err_), -ENODATA);
    ota_err_clear(&err_);

    ASSERT_EQ(ops.dl_remove(inst_, &err_), 0) << err_.reason;
    uint64_t size = 0;
    EXPECT_EQ(ops.dl_size(inst_, &size, &err_), -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.dl_remove(inst_, &err_), 0); // already gone
    ASSERT_EQ(ota_sha256_reset(h), 0);
    EXPECT_EQ(ops.dl_hash(inst_, 1, h, &err_), -ENOENT);
    ota_sha256_free(h);
}

TEST_F(InstallTest, DownloadDiskFull)
{
    std::string mnt = P("small");
    ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
    if (!MountTmpfs(mnt, "size=64k"))
        GTEST_SKIP() << "cannot mount a tmpfs here";
    snprintf(cfg_.download_dir, sizeof(cfg_.download_dir), "%s", mnt.c_str());
    Reopen();
    ASSERT_EQ(ops.dl_open(inst_, 0, &err_), 0) << err_.reason;
    std::string chunk(256 * 1024, 'x');
    EXPECT_EQ(ops.dl_write(inst_, chunk.data(), chunk.size(), &err_), -ENOSPC);
    ops.dl_close(inst_);
}

TEST_F(InstallTest, Space)
{
    uint64_t dl_free = 0, room = 0;
    // The download dir does not exist yet: its nearest parent counts.
    ASSERT_EQ(ops.space(inst_, OTA_KIND_APP, &dl_free, &room, &err_), 0) << err_.reason;
    EXPECT_GT(dl_free, 0u);
    EXPECT_GT(room, 0u);

    // Rootfs: the smaller partition.
    ASSERT_EQ(ops.space(inst_, OTA_KIND_ROOTFS, &dl_free, &room, &err_), 0) << err_.reason;
    EXPECT_EQ(room, (uint64_t)(2 << 20));
    cfg_.rootfs_dev[0][0] = '\0';
    Reopen();
    ASSERT_EQ(ops.space(inst_, OTA_KIND_ROOTFS, &dl_free, &room, &err_), 0) << err_.reason;
    EXPECT_EQ(room, (uint64_t)(3 << 20));
}

TEST_F(InstallTest, SpaceCountsTheInactiveSlot)
{
    // On a file system of its own, so that nobody else's writes move the
    // numbers.
    if (!MountTmpfs(app_, "size=32m"))
        GTEST_SKIP() << "cannot mount a tmpfs here";
    ASSERT_EQ(mkdir(A("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(A("b").c_str(), 0755), 0);
    ASSERT_EQ(symlink("a", A("current").c_str()), 0);
    uint64_t dl_free = 0, before = 0, after = 0;
    ASSERT_EQ(ops.space(inst_, OTA_KIND_APP, &dl_free, &before, &err_), 0) << err_.reason;
    write_file(A("b/big"), std::string(8 << 20, 'b'));
    write_file(A("a/big"), std::string(4 << 20, 'a'));
    ASSERT_EQ(ops.space(inst_, OTA_KIND_APP, &dl_free, &after, &err_), 0) << err_.reason;
    // The active slot's 4 MiB are gone; the inactive slot's 8 MiB are room.
    EXPECT_NEAR((double)after, (double)before - (4 << 20), 64 * 1024.0);
}

TEST_F(InstallTest, ActiveAppSlot)
{
    int slot = -1;
    EXPECT_EQ(Active(OTA_KIND_APP, &slot), -ENOENT);
    EXPECT_EQ(slot, -1);
    ASSERT_EQ(mkdir(A("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(A("b").c_str(), 0755), 0);

    ASSERT_EQ(symlink("a", A("current").c_str()), 0);
    ASSERT_EQ(Active(OTA_KIND_APP, &slot), 0) << err_.reason;
    EXPECT_EQ(slot, OTA_SLOT_A);

    // Absolute form, as an older installer may have written it.
    unlink(A("current").c_str());
    ASSERT_EQ(symlink(A("b").c_str(), A("current").c_str()), 0);
    ASSERT_EQ(Active(OTA_KIND_APP, &slot), 0) << err_.reason;
    EXPECT_EQ(slot, OTA_SLOT_B);

    unlink(A("current").c_str());
    ASSERT_EQ(symlink("./a/", A("current").c_str()), 0);
    ASSERT_EQ(Active(OTA_KIND_APP, &slot), 0) << err_.reason;
    EXPECT_EQ(slot, OTA_SLOT_A);

    // Elsewhere, or not a slot, or not a symlink at all.
    unlink(A("current").c_str());
    ASSERT_EQ(symlink("/opt/other/a", A("current").c_str()), 0);
    EXPECT_EQ(Active(OTA_KIND_APP, &slot), -EINVAL);
    unlink(A("current").c_str());
    ASSERT_EQ(symlink("c", A("current").c_str()), 0);
    EXPECT_EQ(Active(OTA_KIND_APP, &slot), -EINVAL);
    unlink(A("current").c_str());
    ASSERT_EQ(mkdir(A("current").c_str(), 0755), 0);
    EXPECT_EQ(Active(OTA_KIND_APP, &slot), -EINVAL);
}

TEST_F(InstallTest, ActiveRootfsSlotFromBootedFile)
{
    int slot = -1;
    EXPECT_EQ(Active(OTA_KIND_ROOTFS, &slot), -ENOENT); // file missing
    const struct {
        const char *text;
        int ret;
        int slot;
    } cases[] = {
        {"console=ttyS0 ota.slot=b root=/dev/mmcblk0p3 rw\n", 0, OTA_SLOT_B},
        {"ota.slot=A", 0, OTA_SLOT_A},
        {"quiet xota.slot=b ota.slot=a\n", 0, OTA_SLOT_A},
        {"  b \n", 0, OTA_SLOT_B},
        {"A\n", 0, OTA_SLOT_A},
        {"console=ttyS0 root=/dev/sda2\n", -ENOENT, -1},
        {"xota.slot=a", -ENOENT, -1},
        {"", -ENOENT, -1},
        {"ab", -ENOENT, -1},
        {"ota.slot=c", -EINVAL, -1},
        {"ota.slot=ab", -EINVAL, -1},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.text);
        write_file(cfg_.booted_file, c.text);
        slot = -1;
        EXPECT_EQ(Active(OTA_KIND_ROOTFS, &slot), c.ret) << err_.reason;
        EXPECT_EQ(slot, c.slot);
    }

    cfg_.booted_file[0] = '\0';
    Reopen();
    EXPECT_EQ(Active(OTA_KIND_ROOTFS, &slot), -ENOENT);
}

TEST_F(InstallTest, SlotVersion)
{
    char buf[64];
    EXPECT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_A, buf, sizeof(buf), &err_), -ENOENT);
    ASSERT_EQ(mkdir(A("a").c_str(), 0755), 0);
    write_file(A("a/VERSION"), "  1.2.3\n");
    ota_err_clear(&err_);
    ASSERT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_A, buf, sizeof(buf), &err_), 0)
        << err_.reason;
    EXPECT_STREQ(buf, "1.2.3");
    EXPECT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_A, buf, 5, &err_), -ERANGE);
    ota_err_clear(&err_);
    ASSERT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_A, buf, 6, &err_), 0);
    EXPECT_STREQ(buf, "1.2.3");
    write_file(A("a/VERSION"), "\n");
    EXPECT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_A, buf, sizeof(buf), &err_), -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_version(inst_, OTA_KIND_ROOTFS, OTA_SLOT_A, buf, sizeof(buf), &err_),
              -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_version(inst_, OTA_KIND_APP, 2, buf, sizeof(buf), &err_), -EINVAL);
}

TEST_F(InstallTest, AppInstallNeverTouchesTheActiveSlot)
{
    struct ota_manifest m = Manifest(OTA_KIND_APP, OTA_FORMAT_TARGZ);
    // First install on a fresh device: no `current` yet.
    Download(AppPackage("1.0.0"));
    ASSERT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_A, &err_), 0) << err_.reason;
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;

    Download(AppPackage("2.0.0"));
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_A, &err_), -EBUSY);
    EXPECT_EQ(err_.code, EBUSY);
    EXPECT_EQ(read_file(A("a/VERSION")), "1.0.0\n");

    // The inactive slot is wiped first: leftovers of an earlier try vanish.
    ASSERT_EQ(sh("mkdir -p '" + A("b/junk/deeper") + "'"), 0);
    write_file(A("b/junk/deeper/file"), "stale");
    write_file(A("b/VERSION"), "0.0.1\n");
    ota_err_clear(&err_);
    ASSERT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), 0) << err_.reason;
    EXPECT_EQ(read_file(A("b/VERSION")), "2.0.0\n");
    EXPECT_FALSE(file_exists(A("b/junk")));
    struct stat st;
    ASSERT_EQ(stat(A("b/bin/video-app").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
    EXPECT_EQ(read_file(A("a/VERSION")), "1.0.0\n");
    EXPECT_EQ(Link(A("current")), "a"); // installing does not switch

    char buf[64];
    ASSERT_EQ(ops.slot_version(inst_, OTA_KIND_APP, OTA_SLOT_B, buf, sizeof(buf), &err_), 0);
    EXPECT_STREQ(buf, "2.0.0");
}

TEST_F(InstallTest, AppInstallFromDeb)
{
    std::string stage = P("pkg");
    ASSERT_EQ(sh("mkdir -p '" + stage + "/DEBIAN' '" + stage + "/bin'"), 0);
    write_file(stage + "/DEBIAN/control", "Package: video-app\nVersion: 3.0.0\nArchitecture: all\n"
                                          "Maintainer: ota <ota@example.invalid>\n"
                                          "Description: demo app\n");
    write_file(stage + "/VERSION", "3.0.0\n");
    write_file(stage + "/bin/video-app", "#!/bin/sh\n");
    ASSERT_EQ(chmod((stage + "/bin/video-app").c_str(), 0755), 0);
    ASSERT_EQ(
        sh("dpkg-deb --root-owner-group --build '" + stage + "' '" + P("app.deb") + "' >/dev/null"),
        0);
    Download(read_file(P("app.deb")));
    struct ota_manifest m = Manifest(OTA_KIND_APP, OTA_FORMAT_DEB);
    ASSERT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), 0) << err_.reason;
    EXPECT_EQ(read_file(A("b/VERSION")), "3.0.0\n");
    EXPECT_FALSE(file_exists(A("b/DEBIAN")));
}

// A package beyond its signed installed_size: refused, the half-written
// slot wiped, the active slot untouched.
TEST_F(InstallTest, AppInstallBeyondInstalledSizeLeavesNoHalfSlot)
{
    struct ota_manifest m = Manifest(OTA_KIND_APP, OTA_FORMAT_TARGZ);
    Download(AppPackage("1.0.0"));
    ASSERT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_A, &err_), 0) << err_.reason;
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;
    m.installed_size = 3;
    Download(AppPackage("2.0.0"));
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), -EFBIG);
    EXPECT_NE(std::string(err_.reason).find("beyond its signed installed_size (3 bytes)"),
              std::string::npos)
        << err_.reason;
    EXPECT_FALSE(file_exists(A("b")));
    EXPECT_EQ(read_file(A("a/VERSION")), "1.0.0\n");
}

TEST_F(InstallTest, AppInstallFailureLeavesNoHalfSlot)
{
    // A hostile package: refused, and the half-written slot is wiped.
    std::string stage = P("evil");
    ASSERT_EQ(sh("mkdir -p '" + stage + "' && ln -s /etc '" + stage + "/etc'"), 0);
    write_file(stage + "/VERSION", "6.6.6\n");
    ASSERT_EQ(sh("tar -C '" + stage + "' -czf '" + P("evil.tar.gz") + "' VERSION etc"), 0);
    Download(read_file(P("evil.tar.gz")));
    struct ota_manifest m = Manifest(OTA_KIND_APP, OTA_FORMAT_TARGZ);
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), -EPERM);
    EXPECT_FALSE(file_exists(A("b")));

    // Not a package at all.
    Download("this is not a tarball, not even gzip");
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), -EINVAL);
    EXPECT_FALSE(file_exists(A("b")));

    // A broken `current` is not "no active slot".
    ASSERT_EQ(symlink("elsewhere", A("current").c_str()), 0);
    Download(AppPackage("1.0.0"));
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), -EINVAL);

    // Wrong format for the kind, bad slot.
    unlink(A("current").c_str());
    struct ota_manifest bad = Manifest(OTA_KIND_APP, OTA_FORMAT_XZ);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_install(inst_, &bad, OTA_SLOT_B, &err_), -EINVAL);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_install(inst_, &m, 5, &err_), -EINVAL);
}

TEST_F(InstallTest, RootfsInstallStreamsOntoInactivePartition)
{
    std::string image = std::string(1 << 20, 'I') + "tail";
    write_file(P("img.raw"), image);
    ASSERT_EQ(sh("gzip -c '" + P("img.raw") + "' > '" + P("img.gz") + "'"), 0);
    write_file(cfg_.booted_file, "console=ttyAMA0 ota.slot=a\n");

    Download(read_file(P("img.gz")));
    struct ota_manifest m = Manifest(OTA_KIND_ROOTFS, OTA_FORMAT_GZ);
    EXPECT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_A, &err_), -EBUSY);
    EXPECT_EQ(read_file(cfg_.rootfs_dev[0]), std::string(2 << 20, 'A'));

    ota_err_clear(&err_);
    ASSERT_EQ(ops.slot_install(inst_, &m, OTA_SLOT_B, &err_), 0) << err_.reason;
    std::string b = read_file(cfg_.rootfs_dev[1]);
    ASSERT_EQ(b.size(), (size_t)(3 << 20));
    EXPECT_EQ(b.substr(0, image.size()), image);
    EXPECT_EQ(b.find_first_not_of('B', image.size()), std::string::npos);

    // Raw, and too big for the partition.
    Download(std::string((3 << 20) + 1, 'R'));
    struct ota_manifest raw = Manifest(OTA_KIND_ROOTFS, OTA_FORMAT_RAW);
    EXPECT_EQ(ops.slot_install(inst_, &raw, OTA_SLOT_B, &err_), -ENOSPC);

    // An app format for a rootfs release.
    struct ota_manifest bad = Manifest(OTA_KIND_ROOTFS, OTA_FORMAT_DEB);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.slot_install(inst_, &bad, OTA_SLOT_B, &err_), -EINVAL);
}

TEST_F(InstallTest, AppSwitchFlipsCurrentAndIsIdempotent)
{
    int slot = -1;
    EXPECT_EQ(ops.app_switch(inst_, OTA_SLOT_B, &err_), -ENOENT); // not installed
    ASSERT_EQ(mkdir(A("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(A("b").c_str(), 0755), 0);

    ota_err_clear(&err_);
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;
    EXPECT_EQ(Link(A("current")), "a");
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_B, &err_), 0) << err_.reason;
    EXPECT_EQ(Link(A("current")), "b"); // relative: the tree can move
    ASSERT_EQ(Active(OTA_KIND_APP, &slot), 0);
    EXPECT_EQ(slot, OTA_SLOT_B);

    // Again: nothing changes.
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_B, &err_), 0) << err_.reason;
    EXPECT_EQ(Link(A("current")), "b");
    EXPECT_FALSE(file_exists(A("current.tmp")));

    // A switch interrupted after the temp link: a stale current.tmp is
    // replaced, whatever it pointed to.
    ASSERT_EQ(symlink("b", A("current.tmp").c_str()), 0);
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;
    EXPECT_EQ(Link(A("current")), "a");
    EXPECT_FALSE(file_exists(A("current.tmp")));

    // An absolute `current` is rewritten to the relative form.
    unlink(A("current").c_str());
    ASSERT_EQ(symlink(A("b").c_str(), A("current").c_str()), 0);
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_B, &err_), 0) << err_.reason;
    EXPECT_EQ(Link(A("current")), "b");

    // The tree still works after a move.
    ASSERT_EQ(sh("cp -a '" + app_ + "' '" + P("moved") + "'"), 0);
    snprintf(cfg_.app_root, sizeof(cfg_.app_root), "%s", P("moved").c_str());
    Reopen();
    ASSERT_EQ(Active(OTA_KIND_APP, &slot), 0) << err_.reason;
    EXPECT_EQ(slot, OTA_SLOT_B);
    EXPECT_EQ(ops.app_switch(inst_, 7, &err_), -EINVAL);
}

TEST_F(InstallTest, NoAppRootMeansNoAppUpdates)
{
    cfg_.app_root[0] = '\0';
    Reopen();
    int slot;
    uint64_t a, b;
    EXPECT_EQ(Active(OTA_KIND_APP, &slot), -ENOTSUP);
    EXPECT_EQ(ops.space(inst_, OTA_KIND_APP, &a, &b, &err_), -ENOTSUP);
    ota_err_clear(&err_);
    EXPECT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), -ENOTSUP);
}

// The fault points inside the switch (test builds only): a kill after the
// temp link or after the rename leaves a state the next switch finishes.
TEST_F(InstallTest, SwitchFaultPoints)
{
#ifndef OTA_FAULT_POINTS
    GTEST_SKIP() << "built without -DOTA_FAULT_POINTS=ON";
#else
    ASSERT_EQ(mkdir(A("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(A("b").c_str(), 0755), 0);
    ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;
    const struct {
        const char *point;
        const char *current_after;
    } cases[] = {{"switching.after_tmp_symlink", "a"}, {"switching.after_rename", "b"}};
    for (const auto &c : cases) {
        SCOPED_TRACE(c.point);
        fflush(nullptr);
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            setenv("OTA_FAULT_POINT", c.point, 1);
            struct ota_err e = {};
            int r = ops.app_switch(inst_, OTA_SLOT_B, &e);
            _exit(r == 0 ? 0 : 1);
        }
        int st = 0;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(st));
        EXPECT_EQ(WTERMSIG(st), SIGKILL);
        EXPECT_EQ(Link(A("current")), c.current_after);
        // Recovery: finish the switch.
        ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_B, &err_), 0) << err_.reason;
        EXPECT_EQ(Link(A("current")), "b");
        EXPECT_FALSE(file_exists(A("current.tmp")));
        ASSERT_EQ(ops.app_switch(inst_, OTA_SLOT_A, &err_), 0) << err_.reason;
    }
#endif
}

} // namespace
