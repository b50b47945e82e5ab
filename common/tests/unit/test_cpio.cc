// Unit tests for common/src/cpio.c: archives the writer makes are what GNU
// cpio reads as "crc" (070702) archives with good checksums, and the reader
// of the first member takes them back and refuses what is not one.
#include <gtest/gtest.h>

#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "ota/cpio.h"

namespace
{

class CpioTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-cpio-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        ota_err_clear(&err_);
    }
    void TearDown() override
    {
        ASSERT_EQ(sh("rm -rf '" + dir_ + "'"), 0);
    }
    std::string P(const std::string &rel) const
    {
        return dir_ + "/" + rel;
    }
    // desc, then "odd" (7 bytes: padding), then the trailer.
    void Write(const std::string &path, const std::string &desc, uint64_t *ret_off)
    {
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        uint64_t off = 0;
        ASSERT_GE(fd, 0);
        ASSERT_EQ(
            ota_cpio_write_member(fd, &off, "sw-description", desc.data(), desc.size(), 1, &err_),
            0)
            << err_.reason;
        ASSERT_EQ(ota_cpio_write_member(fd, &off, "odd", "1234567", 7, 2, &err_), 0) << err_.reason;
        ASSERT_EQ(ota_cpio_write_trailer(fd, &off, &err_), 0) << err_.reason;
        close(fd);
        *ret_off = off;
    }
    std::string dir_;
    struct ota_err err_;
};

TEST_F(CpioTest, GnuCpioReadsItWithGoodChecksums)
{
    uint64_t off = 0;
    Write(P("a.cpio"), "software = { version = \"1.0.0\"; };\n", &off);
    EXPECT_EQ(off % 512, 0u);
    EXPECT_EQ(read_file(P("a.cpio")).size(), off);
    EXPECT_EQ(read_file(P("a.cpio")).substr(0, 6), "070702");
    ASSERT_EQ(sh("cd '" + dir_ + "' && cpio -it -H crc < a.cpio > list 2>/dev/null"), 0);
    EXPECT_EQ(read_file(P("list")), "sw-description\nodd\n");
    ASSERT_EQ(sh("mkdir '" + P("x") + "' && cd '" + P("x") +
                 "' && cpio -id -H crc < ../a.cpio 2>/dev/null"),
              0);
    EXPECT_EQ(read_file(P("x/odd")), "1234567");
    EXPECT_EQ(read_file(P("x/sw-description")), "software = { version = \"1.0.0\"; };\n");
}

TEST_F(CpioTest, GnuCpioSeesACorruptMember)
{
    uint64_t off = 0;
    Write(P("a.cpio"), "abc", &off);
    std::string s = read_file(P("a.cpio"));
    size_t at = s.find("1234567");
    ASSERT_NE(at, std::string::npos);
    s[at] = '9';
    write_file(P("b.cpio"), s);
    // GNU cpio exits 0 after a checksum error: its message tells.
    ASSERT_EQ(sh("cd '" + dir_ + "' && cpio -i --only-verify-crc -H crc < b.cpio 2>b.err"), 0);
    EXPECT_NE(read_file(P("b.err")).find("odd: checksum error"), std::string::npos);
    ASSERT_EQ(sh("cd '" + dir_ + "' && cpio -i --only-verify-crc -H crc < a.cpio 2>a.err"), 0);
    EXPECT_EQ(read_file(P("a.err")).find("checksum error"), std::string::npos);
}

TEST_F(CpioTest, ReadFirstTakesItBack)
{
    uint64_t off = 0;
    char *data = nullptr;
    size_t n = 0;
    Write(P("a.cpio"), "hello world", &off);
    ASSERT_EQ(ota_cpio_read_first(P("a.cpio").c_str(), "sw-description", 1024, &data, &n, &err_), 0)
        << err_.reason;
    EXPECT_EQ(std::string(data, n), "hello world");
    free(data);
}

TEST_F(CpioTest, ReadFirstRefusesOthers)
{
    uint64_t off = 0;
    char *data = nullptr;
    size_t n = 0;
    Write(P("a.cpio"), "hello world", &off);
    EXPECT_EQ(ota_cpio_read_first(P("a.cpio").c_str(), "manifest", 1024, &data, &n, &err_),
              -EBADMSG);
    EXPECT_NE(std::string(err_.reason).find("first member is 'sw-description'"), std::string::npos)
        << err_.reason;
    ota_err_clear(&err_);
    EXPECT_EQ(ota_cpio_read_first(P("a.cpio").c_str(), "sw-description", 5, &data, &n, &err_),
              -EBADMSG);
    std::string s = read_file(P("a.cpio"));
    s[s.find("hello")] = 'j';
    write_file(P("bad.cpio"), s);
    ota_err_clear(&err_);
    EXPECT_EQ(ota_cpio_read_first(P("bad.cpio").c_str(), "sw-description", 1024, &data, &n, &err_),
              -EBADMSG);
    EXPECT_NE(std::string(err_.reason).find("checksum"), std::string::npos) << err_.reason;
    write_file(P("text"), "{\"schema\": 1}\n");
    ota_err_clear(&err_);
    EXPECT_EQ(ota_cpio_read_first(P("text").c_str(), "sw-description", 1024, &data, &n, &err_),
              -EBADMSG);
    EXPECT_EQ(data, nullptr);
}

TEST_F(CpioTest, RefusesBadNamesAndTheTrailerName)
{
    int fd = open(P("c").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint64_t off = 0;
    ASSERT_GE(fd, 0);
    EXPECT_EQ(ota_cpio_write_header(fd, &off, "", 0, 0, 1, &err_), -EINVAL);
    EXPECT_EQ(ota_cpio_write_header(fd, &off, "TRAILER!!!", 0, 0, 1, &err_), -EINVAL);
    EXPECT_EQ(ota_cpio_write_header(fd, &off, "big", 1ULL << 32, 0, 1, &err_), -EINVAL);
    EXPECT_EQ(off, 0u);
    close(fd);
}

} // namespace
