// Unit tests for src/drivers/archive.c: safe extraction of .deb and tar.gz
// packages, installed size, and rootfs image streaming.
//
// Normal packages are made with the real tools (tar, dpkg-deb, gzip, xz,
// zstd). Hostile tarballs are written with libarchive's write API, which
// stores names, link targets and device nodes exactly as given.
#include <gtest/gtest.h>

#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ota/archive.h"

namespace
{

struct Ent {
    std::string name;
    mode_t type;      // AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, ...; 0 = hard link
    std::string data; // file contents
    std::string link; // symlink or hard link target
    int perm = 0644;
};

Ent File(const std::string &name, const std::string &data, int perm = 0644)
{
    return Ent{name, AE_IFREG, data, "", perm};
}
Ent Dir(const std::string &name, int perm = 0755)
{
    return Ent{name, AE_IFDIR, "", "", perm};
}
Ent Symlink(const std::string &name, const std::string &target)
{
    return Ent{name, AE_IFLNK, "", target, 0777};
}
Ent Hardlink(const std::string &name, const std::string &target)
{
    return Ent{name, 0, "", target, 0644};
}
Ent Node(const std::string &name, mode_t type)
{
    return Ent{name, type, "", "", 0600};
}

// Writes a pax tarball holding exactly ents, compressed with filter
// (ARCHIVE_FILTER_*; gzip unless told).
void WriteTar(const std::string &path, const std::vector<Ent> &ents,
              int filter = ARCHIVE_FILTER_GZIP)
{
    std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(),
                                                                     archive_write_free);
    ASSERT_NE(a, nullptr);
    ASSERT_EQ(archive_write_set_format_pax_restricted(a.get()), ARCHIVE_OK);
    ASSERT_EQ(archive_write_add_filter(a.get(), filter), ARCHIVE_OK)
        << archive_error_string(a.get());
    ASSERT_EQ(archive_write_open_filename(a.get(), path.c_str()), ARCHIVE_OK);
    for (const Ent &e : ents) {
        std::unique_ptr<struct archive_entry, decltype(&archive_entry_free)> ae(archive_entry_new(),
                                                                                archive_entry_free);
        archive_entry_set_pathname(ae.get(), e.name.c_str());
        archive_entry_set_perm(ae.get(), e.perm);
        archive_entry_set_mtime(ae.get(), 1700000000, 0);
        if (e.type == 0) {
            archive_entry_set_filetype(ae.get(), AE_IFREG);
            archive_entry_set_hardlink(ae.get(), e.link.c_str());
            archive_entry_set_size(ae.get(), 0);
        } else {
            archive_entry_set_filetype(ae.get(), e.type);
            if (e.type == AE_IFLNK)
                archive_entry_set_symlink(ae.get(), e.link.c_str());
            if (e.type == AE_IFCHR || e.type == AE_IFBLK)
                archive_entry_set_rdev(ae.get(), makedev(1, 3));
            archive_entry_set_size(ae.get(), e.type == AE_IFREG ? (la_int64_t)e.data.size() : 0);
        }
        ASSERT_EQ(archive_write_header(a.get(), ae.get()), ARCHIVE_OK)
            << archive_error_string(a.get());
        if (e.type == AE_IFREG && !e.data.empty())
            ASSERT_EQ(archive_write_data(a.get(), e.data.data(), e.data.size()),
                      (la_ssize_t)e.data.size());
    }
    ASSERT_EQ(archive_write_close(a.get()), ARCHIVE_OK);
}

class ArchiveTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-archive-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        dest_ = dir_ + "/dest";
        ASSERT_EQ(mkdir(dest_.c_str(), 0755), 0);
        ota_err_clear(&err_);
    }
    void TearDown() override
    {
        if (!mnt_.empty())
            umount2(mnt_.c_str(), MNT_DETACH);
        sh("chmod -R u+rwx '" + dir_ + "' 2>/dev/null; rm -rf '" + dir_ + "'");
    }
    std::string P(const std::string &rel) const
    {
        return dir_ + "/" + rel;
    }
    std::string D(const std::string &rel) const
    {
        return dest_ + "/" + rel;
    }
    static mode_t Mode(const std::string &path)
    {
        struct stat st;
        if (lstat(path.c_str(), &st) != 0)
            return 0;
        return st.st_mode;
    }
    static std::string Link(const std::string &path)
    {
        char buf[4096];
        ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
        return n < 0 ? "" : std::string(buf, (size_t)n);
    }
    static std::set<std::string> List(const std::string &dir)
    {
        std::set<std::string> names;
        DIR *d = opendir(dir.c_str());
        if (!d)
            return names;
        while (struct dirent *de = readdir(d)) {
            std::string n = de->d_name;
            if (n != "." && n != "..")
                names.insert(n);
        }
        closedir(d);
        return names;
    }
    // Pseudo-random bytes (a fixed xorshift stream).
    static std::string Bytes(size_t n, uint32_t seed)
    {
        std::string s(n, '\0');
        uint32_t x = seed ? seed : 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            s[i] = (char)(x & 0xff);
        }
        return s;
    }
    // A staged app tree, as the video-app package holds.
    void StageApp(const std::string &root)
    {
        ASSERT_EQ(sh("mkdir -p '" + root + "/bin' '" + root + "/lib' '" + root + "/share/doc'"), 0);
        write_file(root + "/bin/video-app", "#!/bin/sh\necho video\n");
        write_file(root + "/VERSION", "2.0.0\n");
        write_file(root + "/lib/libvideo.so.1", Bytes(70000, 7));
        write_file(root + "/share/doc/README", "read me\n");
        ASSERT_EQ(chmod((root + "/bin/video-app").c_str(), 0755), 0);
        ASSERT_EQ(chmod((root + "/share/doc").c_str(), 0750), 0);
        ASSERT_EQ(symlink("libvideo.so.1", (root + "/lib/libvideo.so").c_str()), 0);
        ASSERT_EQ(symlink("../../VERSION", (root + "/share/doc/VERSION").c_str()), 0);
    }
    void ExpectApp()
    {
        EXPECT_EQ(read_file(D("bin/video-app")), "#!/bin/sh\necho video\n");
        EXPECT_EQ(Mode(D("bin/video-app")) & 07777, 0755u);
        EXPECT_EQ(read_file(D("VERSION")), "2.0.0\n");
        EXPECT_EQ(Mode(D("VERSION")) & 07777, 0644u);
        EXPECT_EQ(read_file(D("lib/libvideo.so.1")), Bytes(70000, 7));
        EXPECT_TRUE(S_ISLNK(Mode(D("lib/libvideo.so"))));
        EXPECT_EQ(Link(D("lib/libvideo.so")), "libvideo.so.1");
        EXPECT_EQ(Link(D("share/doc/VERSION")), "../../VERSION");
        EXPECT_EQ(read_file(D("share/doc/VERSION")), "2.0.0\n"); // resolves inside the slot
        EXPECT_EQ(Mode(D("share/doc")) & 07777, 0750u);
        EXPECT_EQ(read_file(D("share/doc/README")), "read me\n");
    }
    // Extracting path must be refused with -EPERM naming the entry, and
    // nothing may appear outside dest.
    void ExpectRefused(const std::string &payload, const std::string &entry)
    {
        std::set<std::string> before = List(dir_);
        int r = ota_archive_extract(payload.c_str(), OTA_FORMAT_TARGZ, dest_.c_str(), UINT64_MAX,
                                    &err_);
        EXPECT_EQ(r, -EPERM) << err_.reason;
        if (getenv("OTA_TEST_VERBOSE"))
            fprintf(stderr, "refused: %s\n", err_.reason);
        EXPECT_EQ(err_.code, EPERM);
        EXPECT_NE(std::string(err_.reason).find(entry), std::string::npos) << err_.reason;
        EXPECT_EQ(List(dir_), before);
        EXPECT_FALSE(file_exists(D("after.txt"))) << "extraction went on after a refusal";
        EXPECT_FALSE(file_exists("/tmp/ota-archive-escape"));
        ExpectNothingPointsOut(dest_);
    }
    // Every symlink in the tree resolves inside dest_.
    void ExpectNothingPointsOut(const std::string &dir)
    {
        char real_dest[PATH_MAX];
        ASSERT_NE(realpath(dest_.c_str(), real_dest), nullptr);
        for (const std::string &n : List(dir)) {
            std::string p = dir + "/" + n;
            mode_t m = Mode(p);
            if (S_ISLNK(m)) {
                char real[PATH_MAX];
                if (realpath(p.c_str(), real) != nullptr)
                    EXPECT_EQ(std::string(real).rfind(real_dest, 0), 0u) << p << " -> " << real;
            } else if (S_ISDIR(m)) {
                ExpectNothingPointsOut(p);
            } else {
                EXPECT_TRUE(S_ISREG(m)) << p;
            }
        }
    }
    std::string dir_, dest_, mnt_;
    struct ota_err err_;
};

TEST_F(ArchiveTest, ExtractsTarGzMadeByTar)
{
    StageApp(P("stage"));
    ASSERT_EQ(sh("tar -C '" + P("stage") + "' -czf '" + P("app.tar.gz") + "' ."), 0);
    ASSERT_EQ(ota_archive_extract(P("app.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              0)
        << err_.reason;
    ExpectApp();
    ExpectNothingPointsOut(dest_);
}

class DebTest : public ArchiveTest, public ::testing::WithParamInterface<const char *>
{
};

TEST_P(DebTest, ExtractsDataOfRealDeb)
{
    std::string stage = P("pkg");
    StageApp(stage);
    ASSERT_EQ(sh("mkdir -p '" + stage + "/DEBIAN'"), 0);
    write_file(stage + "/DEBIAN/control", "Package: video-app\nVersion: 2.0.0\nArchitecture: all\n"
                                          "Maintainer: ota <ota@example.invalid>\n"
                                          "Description: demo app\n");
    std::string cmd = std::string("dpkg-deb --root-owner-group -Z") + GetParam() + " --build '" +
                      stage + "' '" + P("app.deb") + "' >/dev/null";
    ASSERT_EQ(sh(cmd), 0);
    // The member really is data.tar.<compressor>.
    ASSERT_EQ(sh("ar t '" + P("app.deb") + "' | grep -q '^data.tar'"), 0);

    ASSERT_EQ(
        ota_archive_extract(P("app.deb").c_str(), OTA_FORMAT_DEB, dest_.c_str(), UINT64_MAX, &err_),
        0)
        << err_.reason;
    ExpectApp();
    EXPECT_FALSE(file_exists(D("DEBIAN")));
    EXPECT_FALSE(file_exists(D("control")));
    ExpectNothingPointsOut(dest_);

    uint64_t size = 0;
    ASSERT_EQ(ota_archive_installed_size(P("app.deb").c_str(), OTA_FORMAT_DEB, &size, &err_), 0)
        << err_.reason;
    EXPECT_EQ(size, 21u + 6u + 70000u + 8u);
}

INSTANTIATE_TEST_SUITE_P(Compressors, DebTest, ::testing::Values("xz", "gzip", "zstd", "none"));

TEST_F(ArchiveTest, InstalledSizeOfTarGz)
{
    WriteTar(P("p.tar.gz"), {Dir("d"), File("d/a", std::string(1000, 'a')), File("b", "bb"),
                             Symlink("l", "b"), Hardlink("h", "b")});
    uint64_t size = 0;
    ASSERT_EQ(ota_archive_installed_size(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, &size, &err_), 0)
        << err_.reason;
    EXPECT_EQ(size, 1002u);
}

TEST_F(ArchiveTest, ModesHardlinksAndRepeats)
{
    WriteTar(P("p.tar.gz"),
             {File("./setuid", "s", 04755), File("./setgid", "g", 02711), Dir("./ro", 0555),
              File("./ro/f", "in ro", 0444), File("x", "first"), File("x", "second"),
              Hardlink("./hl", "./x"), File("implicit/dirs/f", "deep"), Dir("./")});
    ASSERT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              0)
        << err_.reason;
    EXPECT_EQ(Mode(D("setuid")) & 07777, 0755u);
    EXPECT_EQ(Mode(D("setgid")) & 07777, 0711u);
    EXPECT_EQ(Mode(D("ro")) & 07777, 0555u);
    EXPECT_EQ(read_file(D("ro/f")), "in ro");
    EXPECT_EQ(read_file(D("x")), "second"); // a later entry replaces an earlier file
    struct stat a, b;
    ASSERT_EQ(stat(D("x").c_str(), &a), 0);
    ASSERT_EQ(stat(D("hl").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(read_file(D("implicit/dirs/f")), "deep");
    EXPECT_EQ(Mode(D("implicit/dirs")) & 07777, 0755u);
    EXPECT_EQ(a.st_mtime, 1700000000);
}

TEST_F(ArchiveTest, RefusesAbsolutePath)
{
    WriteTar(P("p.tar.gz"),
             {File("ok.txt", "ok"), File(P("abs.txt"), "evil"), File("after.txt", "no")});
    ExpectRefused(P("p.tar.gz"), P("abs.txt"));
    EXPECT_FALSE(file_exists(P("abs.txt")));
    EXPECT_TRUE(file_exists(D("ok.txt")));
}

TEST_F(ArchiveTest, RefusesDotDot)
{
    WriteTar(P("p.tar.gz"), {File("ok.txt", "ok"), File("../x", "evil"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "../x");
    EXPECT_FALSE(file_exists(P("x")));
}

TEST_F(ArchiveTest, RefusesDotDotInside)
{
    WriteTar(P("p.tar.gz"),
             {Dir("a"), File("a/../../x", "evil"), File("after.txt", ""), File("./a/../y", "")});
    ExpectRefused(P("p.tar.gz"), "a/../../x");
    EXPECT_FALSE(file_exists(P("x")));
}

TEST_F(ArchiveTest, RefusesDotDotEvenIfItStaysInside)
{
    WriteTar(P("p.tar.gz"), {Dir("a"), File("a/../y", "in"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "a/../y");
}

TEST_F(ArchiveTest, RefusesSymlinkToEtc)
{
    WriteTar(P("p.tar.gz"), {Symlink("etc", "/etc"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "etc");
    EXPECT_FALSE(file_exists(D("etc")));
}

TEST_F(ArchiveTest, RefusesSymlinkClimbingOut)
{
    WriteTar(P("p.tar.gz"), {Dir("sub"), Symlink("sub/l", "../../x"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "sub/l");
    EXPECT_FALSE(file_exists(D("sub/l")));
}

TEST_F(ArchiveTest, RefusesSymlinkChainThatEscapes)
{
    // "a" -> "." is harmless alone, but "a/.." is then the parent of dest.
    WriteTar(P("p.tar.gz"), {Symlink("a", "."), Symlink("b", "a/.."), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "b");
    EXPECT_FALSE(file_exists(D("b")));
}

TEST_F(ArchiveTest, RefusesWritingThroughSymlink)
{
    // The classic: link -> /tmp then link/x. The link is refused at once; a
    // link that stays inside is allowed, but nothing is written through it.
    WriteTar(P("p.tar.gz"), {Symlink("link", "/tmp"), File("link/ota-archive-escape", "evil")});
    ExpectRefused(P("p.tar.gz"), "link");

    ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
    ota_err_clear(&err_);
    WriteTar(P("q.tar.gz"),
             {Dir("d"), Symlink("l", "d"), File("l/x", "through"), File("after.txt", "")});
    ExpectRefused(P("q.tar.gz"), "l/x");
    EXPECT_FALSE(file_exists(D("d/x")));
}

TEST_F(ArchiveTest, RefusesHardlinkToEtcPasswd)
{
    WriteTar(P("p.tar.gz"), {Hardlink("pw", "/etc/passwd"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "pw");
    EXPECT_FALSE(file_exists(D("pw")));
}

TEST_F(ArchiveTest, RefusesHardlinkClimbingOut)
{
    write_file(P("outside"), "secret");
    WriteTar(P("p.tar.gz"), {Hardlink("pw", "../outside"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "pw");
    EXPECT_FALSE(file_exists(D("pw")));
}

TEST_F(ArchiveTest, RefusesHardlinkToSymlink)
{
    // sub/deep/l -> ../../x is fine where it is; a hard link moves the same
    // link to the top, where it would point two levels above dest.
    WriteTar(P("p.tar.gz"), {Dir("sub"), Dir("sub/deep"), Symlink("sub/deep/l", "../../x"),
                             Hardlink("l2", "sub/deep/l"), File("after.txt", "")});
    ExpectRefused(P("p.tar.gz"), "l2");
    EXPECT_FALSE(file_exists(D("l2")));
    EXPECT_EQ(Link(D("sub/deep/l")), "../../x");
}

// (Sockets cannot be stored in a tarball: the same check covers them.)
TEST_F(ArchiveTest, RefusesDeviceNodesAndFifos)
{
    const struct {
        const char *name;
        mode_t type;
    } cases[] = {{"null", AE_IFCHR}, {"sda", AE_IFBLK}, {"fifo", AE_IFIFO}};
    for (const auto &c : cases) {
        SCOPED_TRACE(c.name);
        ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
        ota_err_clear(&err_);
        std::string payload = P(std::string(c.name) + ".tar.gz");
        WriteTar(payload, {File("ok.txt", "ok"), Node(c.name, c.type), File("after.txt", "")});
        ExpectRefused(payload, c.name);
        EXPECT_FALSE(file_exists(D(c.name)));
        EXPECT_TRUE(file_exists(D("ok.txt")));
    }
}

TEST_F(ArchiveTest, EntryConflicts)
{
    WriteTar(P("p.tar.gz"), {Dir("d"), File("d/f", "x"), File("d", "replaces a dir")});
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
    EXPECT_EQ(read_file(D("d/f")), "x");

    // A file where a directory is needed.
    ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
    ota_err_clear(&err_);
    WriteTar(P("q.tar.gz"), {File("f", "x"), File("f/x", "y")});
    EXPECT_EQ(ota_archive_extract(P("q.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
    EXPECT_NE(std::string(err_.reason).find("f/x"), std::string::npos) << err_.reason;

    // A hard link to something not (yet) extracted.
    ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
    ota_err_clear(&err_);
    WriteTar(P("r.tar.gz"), {Hardlink("h", "nothing")});
    EXPECT_EQ(ota_archive_extract(P("r.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
}

TEST_F(ArchiveTest, LaterLinksReplaceEarlierEntries)
{
    WriteTar(P("p.tar.gz"),
             {File("a", "a"), File("b", "b"), Symlink("l", "a"), Symlink("l", "b"),
              Hardlink("h", "a"), Hardlink("h", "b"), File("l2", "file"), Symlink("l2", "a")});
    ASSERT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              0)
        << err_.reason;
    EXPECT_EQ(Link(D("l")), "b");
    EXPECT_EQ(read_file(D("h")), "b");
    EXPECT_EQ(Link(D("l2")), "a");
}

TEST_F(ArchiveTest, DestMustBeEmptyAndExist)
{
    WriteTar(P("p.tar.gz"), {File("a", "a")});
    write_file(D("old"), "old");
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -ENOTEMPTY);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, P("nodir").c_str(),
                                  UINT64_MAX, &err_),
              -ENOENT);
}

TEST_F(ArchiveTest, BadPayloads)
{
    EXPECT_EQ(ota_archive_extract(P("missing.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -ENOENT);
    ota_err_clear(&err_);

    write_file(P("garbage"), Bytes(5000, 3));
    EXPECT_EQ(ota_archive_extract(P("garbage").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(), UINT64_MAX,
                                  &err_),
              -EINVAL);
    ota_err_clear(&err_);
    EXPECT_EQ(
        ota_archive_extract(P("garbage").c_str(), OTA_FORMAT_DEB, dest_.c_str(), UINT64_MAX, &err_),
        -EINVAL);
    ota_err_clear(&err_);

    // A .deb without a data member.
    write_file(P("debian-binary"), "2.0\n");
    ASSERT_EQ(sh("cd '" + dir_ + "' && ar rc nodata.deb debian-binary"), 0);
    EXPECT_EQ(ota_archive_extract(P("nodata.deb").c_str(), OTA_FORMAT_DEB, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
    EXPECT_NE(std::string(err_.reason).find("data.tar"), std::string::npos) << err_.reason;
    ota_err_clear(&err_);

    // A truncated tarball.
    WriteTar(P("p.tar.gz"), {File("big", Bytes(200000, 9))});
    ASSERT_EQ(truncate(P("p.tar.gz").c_str(), 100000), 0);
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
    ota_err_clear(&err_);

    // An image format is not a package.
    WriteTar(P("q.tar.gz"), {File("a", "a")});
    ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
    EXPECT_EQ(
        ota_archive_extract(P("q.tar.gz").c_str(), OTA_FORMAT_GZ, dest_.c_str(), UINT64_MAX, &err_),
        -EINVAL);
    uint64_t size = 7;
    EXPECT_EQ(ota_archive_installed_size(P("garbage").c_str(), OTA_FORMAT_TARGZ, &size, &err_),
              -EINVAL);
    EXPECT_EQ(size, 7u);
}

TEST_F(ArchiveTest, DiskFullIsENOSPCWithEntryName)
{
    mnt_ = P("mnt");
    ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0);
    if (mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=1m") != 0) {
        mnt_.clear();
        GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
    }
    ASSERT_EQ(mkdir((mnt_ + "/slot").c_str(), 0755), 0);
    WriteTar(P("p.tar.gz"), {File("small", "s"), File("big.bin", Bytes(3 << 20, 5))});
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, (mnt_ + "/slot").c_str(),
                                  UINT64_MAX, &err_),
              -ENOSPC);
    EXPECT_EQ(err_.code, ENOSPC);
    EXPECT_NE(std::string(err_.reason).find("big.bin"), std::string::npos) << err_.reason;
}

// ---- images ----

class ImageTest : public ArchiveTest
{
  protected:
    void SetUp() override
    {
        ArchiveTest::SetUp();
        image_ = Bytes((3 << 20) + 123, 11); // not a multiple of any buffer
        write_file(P("img.raw"), image_);
        write_file(P("dev"), std::string(4 << 20, '\xff')); // the partition
    }
    std::string image_;
};

TEST_F(ImageTest, StreamsRawGzXzZst)
{
    ASSERT_EQ(sh("cd '" + dir_ + "' && gzip -k -c img.raw > img.gz && xz -k -c img.raw > img.xz" +
                 " && zstd -q -c img.raw > img.zst"),
              0);
    const struct {
        const char *file;
        enum ota_format format;
    } cases[] = {{"img.raw", OTA_FORMAT_RAW},
                 {"img.gz", OTA_FORMAT_GZ},
                 {"img.xz", OTA_FORMAT_XZ},
                 {"img.zst", OTA_FORMAT_ZST}};
    for (const auto &c : cases) {
        SCOPED_TRACE(c.file);
        write_file(P("dev"), std::string(4 << 20, '\xff'));
        uint64_t written = 0;
        ASSERT_EQ(ota_archive_write_image(P(c.file).c_str(), c.format, P("dev").c_str(), 4 << 20,
                                          &written, &err_),
                  0)
            << err_.reason;
        EXPECT_EQ(written, image_.size());
        std::string dev = read_file(P("dev"));
        ASSERT_EQ(dev.size(), (size_t)(4 << 20)); // the partition keeps its size
        EXPECT_TRUE(dev.compare(0, image_.size(), image_) == 0);
        EXPECT_EQ(dev.find_first_not_of('\xff', image_.size()), std::string::npos);
    }
}

TEST_F(ImageTest, NoLimitExtendsAnImageFile)
{
    write_file(P("dev"), "");
    uint64_t written = 0;
    ASSERT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_RAW, P("dev").c_str(), 0,
                                      &written, &err_),
              0)
        << err_.reason;
    EXPECT_EQ(written, image_.size());
    EXPECT_EQ(read_file(P("dev")), image_);
}

TEST_F(ImageTest, TooBigIsENOSPC)
{
    ASSERT_EQ(sh("cd '" + dir_ + "' && xz -k -c img.raw > img.xz"), 0);
    uint64_t written = 99;
    EXPECT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_RAW, P("dev").c_str(),
                                      image_.size() - 1, &written, &err_),
              -ENOSPC);
    EXPECT_EQ(written, 99u);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_write_image(P("img.xz").c_str(), OTA_FORMAT_XZ, P("dev").c_str(), 1 << 20,
                                      &written, &err_),
              -ENOSPC);
    ota_err_clear(&err_);
    // Exactly the device size fits.
    EXPECT_EQ(ota_archive_write_image(P("img.xz").c_str(), OTA_FORMAT_XZ, P("dev").c_str(),
                                      image_.size(), &written, &err_),
              0)
        << err_.reason;
    // A device that fills up on its own.
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_RAW, "/dev/full", 0,
                                      &written, &err_),
              -ENOSPC);
}

TEST_F(ImageTest, BadImages)
{
    uint64_t written = 0;
    // Not compressed as announced.
    EXPECT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_GZ, P("dev").c_str(), 0,
                                      &written, &err_),
              -EINVAL);
    ota_err_clear(&err_);
    // Truncated compressed stream.
    ASSERT_EQ(sh("cd '" + dir_ + "' && gzip -k -c img.raw | head -c 100000 > cut.gz"), 0);
    EXPECT_LT(ota_archive_write_image(P("cut.gz").c_str(), OTA_FORMAT_GZ, P("dev").c_str(), 0,
                                      &written, &err_),
              0);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_RAW, P("nodev").c_str(), 0,
                                      &written, &err_),
              -ENOENT);
    EXPECT_FALSE(file_exists(P("nodev"))); // a missing device is never created
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_write_image(P("missing").c_str(), OTA_FORMAT_XZ, P("dev").c_str(), 0,
                                      &written, &err_),
              -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_archive_write_image(P("img.raw").c_str(), OTA_FORMAT_DEB, P("dev").c_str(), 0,
                                      &written, &err_),
              -EINVAL);
    ota_err_clear(&err_);
    write_file(P("empty"), "");
    EXPECT_EQ(ota_archive_write_image(P("empty").c_str(), OTA_FORMAT_RAW, P("dev").c_str(), 0,
                                      &written, &err_),
              -EINVAL);
}

// Only the compression a release may use, decompressed by libarchive itself:
// a tar.gz is gzip (not bzip2, xz, zstd, lz4, compress, nor uncompressed);
// today's agent read any filter libarchive knows, external programs included.
TEST_F(ArchiveTest, TarGzAcceptsOnlyGzip)
{
    const std::vector<std::pair<int, const char *>> others = {
        {ARCHIVE_FILTER_NONE, "none"}, {ARCHIVE_FILTER_BZIP2, "bzip2"},
        {ARCHIVE_FILTER_XZ, "xz"},     {ARCHIVE_FILTER_ZSTD, "zstd"},
        {ARCHIVE_FILTER_LZ4, "lz4"},   {ARCHIVE_FILTER_COMPRESS, "compress"},
        {ARCHIVE_FILTER_LZIP, "lzip"},
    };
    for (const auto &o : others) {
        WriteTar(P("p.tar.gz"), {File("VERSION", "2.0.0\n")}, o.first);
        ota_err_clear(&err_);
        EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                      UINT64_MAX, &err_),
                  -EINVAL)
            << o.second;
        EXPECT_EQ(List(dest_), std::set<std::string>{}) << o.second;
        uint64_t size = 0;
        EXPECT_LT(
            ota_archive_installed_size(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, &size, nullptr), 0)
            << o.second;
    }
    ota_err_clear(&err_);
    WriteTar(P("p.tar.gz"), {File("VERSION", "2.0.0\n")}, ARCHIVE_FILTER_NONE);
    EXPECT_EQ(ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(),
                                  UINT64_MAX, &err_),
              -EINVAL);
    EXPECT_NE(std::string(err_.reason).find("compressed with none, not gzip"), std::string::npos)
        << err_.reason;
}

// A .deb's data member: the compression its name says, one of those dpkg-deb
// writes; another name (data.tar.bz2, data.tar.lrz) or a name that lies is
// refused.
TEST_F(ArchiveTest, DebDataMemberCompressionMatchesItsName)
{
    write_file(P("debian-binary"), "2.0\n");
    struct Case {
        const char *member;
        int filter;
        const char *reason;
    };
    const std::vector<Case> cases = {
        {"data.tar.bz2", ARCHIVE_FILTER_BZIP2, "not a compression dpkg-deb writes"},
        {"data.tar.lrz", ARCHIVE_FILTER_GZIP, "not a compression dpkg-deb writes"},
        {"data.tar.xz", ARCHIVE_FILTER_GZIP, "compressed with gzip, not xz"},
        {"data.tar.gz", ARCHIVE_FILTER_NONE, "compressed with none, not gzip"},
        {"data.tar", ARCHIVE_FILTER_XZ, ""}, // xz not enabled for a plain member
    };
    for (const auto &c : cases) {
        ASSERT_EQ(sh("cd '" + dir_ + "' && rm -f x.deb data.tar*"), 0);
        WriteTar(P(c.member), {File("VERSION", "2.0.0\n")}, c.filter);
        ASSERT_EQ(sh("cd '" + dir_ + "' && ar rc x.deb debian-binary " + c.member), 0);
        ota_err_clear(&err_);
        EXPECT_EQ(ota_archive_extract(P("x.deb").c_str(), OTA_FORMAT_DEB, dest_.c_str(), UINT64_MAX,
                                      &err_),
                  -EINVAL)
            << c.member;
        EXPECT_NE(std::string(err_.reason).find(c.reason), std::string::npos)
            << c.member << ": " << err_.reason;
        EXPECT_EQ(List(dest_), std::set<std::string>{}) << c.member;
    }
}

// A package writes at most its signed installed_size: the entry that would
// go beyond is refused before any of it is written (its header says its
// size), with the limit in the reason; exactly the size is fine.
TEST_F(ArchiveTest, StopsAtTheSignedInstalledSize)
{
    WriteTar(P("p.tar.gz"), {Dir("d"), File("d/a", Bytes(30000, 1)), File("d/b", Bytes(30000, 2)),
                             Symlink("l", "d/a")});
    EXPECT_EQ(
        ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(), 50000, &err_),
        -EFBIG);
    EXPECT_NE(std::string(err_.reason).find("beyond its signed installed_size (50000 bytes)"),
              std::string::npos)
        << err_.reason;
    EXPECT_NE(std::string(err_.reason).find("d/b"), std::string::npos) << err_.reason;
    EXPECT_EQ(Mode(D("d/b")), 0u);

    ASSERT_EQ(sh("rm -rf '" + dest_ + "' && mkdir '" + dest_ + "'"), 0);
    ota_err_clear(&err_);
    EXPECT_EQ(
        ota_archive_extract(P("p.tar.gz").c_str(), OTA_FORMAT_TARGZ, dest_.c_str(), 60000, &err_),
        0)
        << err_.reason;
    EXPECT_EQ(read_file(D("d/b")), Bytes(30000, 2));
}

} // namespace
