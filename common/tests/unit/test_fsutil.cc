// Unit tests for common/src/fsutil.c: durable writes, mkdir -p, rm -rf
// without following symlinks, bounded reads, free space.
#include <gtest/gtest.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "ota/fsutil.h"

namespace
{

class FsutilTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-fsutil-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        ota_err_clear(&err_);
    }
    void TearDown() override
    {
        std::string cmd = "chmod -R u+rwx '" + dir_ + "' 2>/dev/null; rm -rf '" + dir_ + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    std::string P(const std::string &rel) const
    {
        return dir_ + "/" + rel;
    }
    std::string dir_;
    struct ota_err err_;
};

TEST_F(FsutilTest, WriteAtomicCreatesWithExactMode)
{
    mode_t old = umask(077);
    int r = ota_fs_write_atomic(P("f").c_str(), "hello", 5, 0644, &err_);
    umask(old);
    ASSERT_EQ(r, 0) << err_.reason;
    EXPECT_EQ(read_file(P("f")), "hello");
    struct stat st;
    ASSERT_EQ(stat(P("f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(FsutilTest, WriteAtomicReplacesAndLeavesNoTemp)
{
    write_file(P("f"), "old contents that are longer");
    ASSERT_EQ(ota_fs_write_atomic(P("f").c_str(), "new", 3, 0600, &err_), 0) << err_.reason;
    EXPECT_EQ(read_file(P("f")), "new");
    std::string tmp = P("f") + ".tmp." + std::to_string(getpid());
    EXPECT_FALSE(file_exists(tmp));
    // Empty content is a valid file.
    ASSERT_EQ(ota_fs_write_atomic(P("e").c_str(), "", 0, 0600, &err_), 0) << err_.reason;
    EXPECT_EQ(read_file(P("e")), "");
}

TEST_F(FsutilTest, WriteAtomicFailsInMissingDir)
{
    EXPECT_EQ(ota_fs_write_atomic(P("nodir/f").c_str(), "x", 1, 0600, &err_), -ENOENT);
    EXPECT_EQ(err_.code, ENOENT);
    EXPECT_NE(std::string(err_.reason).find("nodir"), std::string::npos);
}

TEST_F(FsutilTest, WriteAtomicDoesNotWriteThroughSymlinkedTemp)
{
    // A symlink planted at the temp name must not redirect the write.
    std::string tmp = P("f") + ".tmp." + std::to_string(getpid());
    write_file(P("victim"), "keep");
    ASSERT_EQ(symlink(P("victim").c_str(), tmp.c_str()), 0);
    EXPECT_LT(ota_fs_write_atomic(P("f").c_str(), "x", 1, 0600, &err_), 0);
    EXPECT_EQ(read_file(P("victim")), "keep");
}

TEST_F(FsutilTest, SyncDirAndParent)
{
    write_file(P("f"), "x");
    EXPECT_EQ(ota_fs_sync_dir(dir_.c_str(), &err_), 0);
    EXPECT_EQ(ota_fs_sync_parent(P("f").c_str(), &err_), 0);
    EXPECT_EQ(ota_fs_sync_parent(dir_.c_str(), &err_), 0);
    // A file that does not exist yet: its directory is synced.
    EXPECT_EQ(ota_fs_sync_parent(P("not-yet").c_str(), &err_), 0);
    EXPECT_EQ(ota_fs_sync_dir(P("missing").c_str(), &err_), -ENOENT);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_fs_sync_dir(P("f").c_str(), &err_), -ENOTDIR);
}

TEST_F(FsutilTest, MkdirsMakesEveryLevel)
{
    ASSERT_EQ(ota_fs_mkdirs(P("a/b//c/").c_str(), &err_), 0) << err_.reason;
    struct stat st;
    ASSERT_EQ(stat(P("a/b/c").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    // Existing directories are fine.
    EXPECT_EQ(ota_fs_mkdirs(P("a/b/c").c_str(), &err_), 0);
    EXPECT_EQ(ota_fs_mkdirs(dir_.c_str(), &err_), 0);
}

TEST_F(FsutilTest, MkdirsRefusesFileInTheWay)
{
    write_file(P("file"), "x");
    EXPECT_EQ(ota_fs_mkdirs(P("file/sub").c_str(), &err_), -ENOTDIR);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_fs_mkdirs(P("file").c_str(), &err_), -ENOTDIR);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_fs_mkdirs("", &err_), -EINVAL);
}

TEST_F(FsutilTest, RemoveTreeRemovesEverythingBelow)
{
    ASSERT_EQ(ota_fs_mkdirs(P("t/x/y").c_str(), &err_), 0);
    write_file(P("t/f"), "1");
    write_file(P("t/x/y/g"), "2");
    ASSERT_EQ(mkfifo(P("t/fifo").c_str(), 0600), 0);
    // Read-only directories (as a package may ship) are emptied too.
    ASSERT_EQ(chmod(P("t/x").c_str(), 0555), 0);
    ASSERT_EQ(ota_fs_remove_tree(P("t").c_str(), &err_), 0) << err_.reason;
    EXPECT_FALSE(file_exists(P("t")));
    // Missing is success.
    EXPECT_EQ(ota_fs_remove_tree(P("t").c_str(), &err_), 0);
    EXPECT_EQ(ota_fs_remove_tree(P("nodir/t").c_str(), &err_), 0);
}

TEST_F(FsutilTest, RemoveTreeDoesNotFollowSymlinks)
{
    ASSERT_EQ(ota_fs_mkdirs(P("outside").c_str(), &err_), 0);
    write_file(P("outside/keep"), "keep");
    ASSERT_EQ(ota_fs_mkdirs(P("t").c_str(), &err_), 0);
    ASSERT_EQ(symlink(P("outside").c_str(), P("t/link").c_str()), 0);
    ASSERT_EQ(symlink("../outside/keep", P("t/flink").c_str()), 0);
    ASSERT_EQ(ota_fs_remove_tree(P("t").c_str(), &err_), 0) << err_.reason;
    EXPECT_FALSE(file_exists(P("t")));
    EXPECT_EQ(read_file(P("outside/keep")), "keep");

    // The path itself a symlink to a directory: the link goes, not the dir.
    ASSERT_EQ(symlink(P("outside").c_str(), P("l2").c_str()), 0);
    ASSERT_EQ(ota_fs_remove_tree(P("l2/").c_str(), &err_), 0) << err_.reason;
    EXPECT_FALSE(file_exists(P("l2")));
    EXPECT_EQ(read_file(P("outside/keep")), "keep");
}

TEST_F(FsutilTest, RemoveTreeOfAFile)
{
    write_file(P("f"), "x");
    ASSERT_EQ(ota_fs_remove_tree(P("f").c_str(), &err_), 0);
    EXPECT_FALSE(file_exists(P("f")));
    EXPECT_EQ(ota_fs_remove_tree("/", &err_), -EINVAL);
}

TEST_F(FsutilTest, ReadAll)
{
    write_file(P("f"), std::string("ab\0cd", 5));
    char *buf = nullptr;
    size_t len = 0;
    ASSERT_EQ(ota_fs_read_all(P("f").c_str(), 5, &buf, &len, &err_), 0) << err_.reason;
    ASSERT_EQ(len, 5u);
    EXPECT_EQ(std::string(buf, len), std::string("ab\0cd", 5));
    EXPECT_EQ(buf[5], '\0');
    free(buf);

    buf = nullptr;
    EXPECT_EQ(ota_fs_read_all(P("f").c_str(), 4, &buf, &len, &err_), -EFBIG);
    EXPECT_EQ(buf, nullptr);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_fs_read_all(P("missing").c_str(), 4, &buf, &len, &err_), -ENOENT);
    EXPECT_EQ(buf, nullptr);
}

TEST_F(FsutilTest, ReadAllEmptyAndLarge)
{
    write_file(P("empty"), "");
    char *buf = nullptr;
    size_t len = 99;
    ASSERT_EQ(ota_fs_read_all(P("empty").c_str(), 0, &buf, &len, &err_), 0);
    EXPECT_EQ(len, 0u);
    EXPECT_STREQ(buf, "");
    free(buf);

    std::string big(300000, 'z');
    write_file(P("big"), big);
    buf = nullptr;
    ASSERT_EQ(ota_fs_read_all(P("big").c_str(), big.size(), &buf, &len, &err_), 0);
    EXPECT_EQ(len, big.size());
    EXPECT_EQ(std::string(buf, len), big);
    free(buf);
    buf = nullptr;
    EXPECT_EQ(ota_fs_read_all(P("big").c_str(), big.size() - 1, &buf, &len, &err_), -EFBIG);
}

TEST_F(FsutilTest, FreeBytes)
{
    uint64_t free_b = 0;
    ASSERT_EQ(ota_fs_free_bytes(dir_.c_str(), &free_b, &err_), 0) << err_.reason;
    EXPECT_GT(free_b, 0u);
    uint64_t untouched = 42;
    EXPECT_EQ(ota_fs_free_bytes(P("missing").c_str(), &untouched, &err_), -ENOENT);
    EXPECT_EQ(untouched, 42u);
}

} // namespace

namespace
{

TEST_F(FsutilTest, WritebackKickMovesItsMarkByWholeSteps)
{
    const uint64_t step = OTA_FS_WRITEBACK_STEP;
    std::string chunk(1 << 20, 'w');
    int fd = open(P("f").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    uint64_t pos = 0, mark = 0;
    while (pos < step - chunk.size()) {
        ASSERT_EQ(ota_fs_write_full(fd, chunk.data(), chunk.size()), 0);
        pos += chunk.size();
        ota_fs_writeback_kick(fd, pos, &mark);
        EXPECT_EQ(mark, 0u) << "writeback started before a whole step at " << pos;
    }
    ASSERT_EQ(ota_fs_write_full(fd, chunk.data(), chunk.size()), 0);
    pos += chunk.size();
    ota_fs_writeback_kick(fd, pos, &mark);
    EXPECT_EQ(mark, pos);
    ota_fs_writeback_kick(fd, pos + step - 1, &mark);
    EXPECT_EQ(mark, pos) << "less than a step since the last kick";
    ota_fs_writeback_kick(fd, 4096, &mark);
    EXPECT_EQ(mark, 4096u) << "a file cut below the mark moves it back";
    close(fd);
    struct stat st;
    ASSERT_EQ(stat(P("f").c_str(), &st), 0);
    EXPECT_EQ((uint64_t)st.st_size, pos) << "writeback changes no byte";
    // A bad fd is the fsync's to report: no crash, the mark moves on.
    mark = 0;
    ota_fs_writeback_kick(-1, step, &mark);
    EXPECT_EQ(mark, (uint64_t)step);
}

} // namespace
