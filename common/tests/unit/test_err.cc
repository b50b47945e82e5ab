// Unit tests for common/src/err.c: the first failure wins; a prefix adds
// context and keeps the callee's code.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ota/err.h"

static int callee(struct ota_err *err)
{
    return ota_err_set(err, ENOSPC, "write /data/x: no space");
}

TEST(ErrTest, FirstFailureWins)
{
    ota_err e = {};
    EXPECT_EQ(ota_err_set(&e, EIO, "first"), -EIO);
    EXPECT_EQ(ota_err_set(&e, ENOENT, "second"), -ENOENT);
    EXPECT_EQ(e.code, EIO);
    EXPECT_STREQ(e.reason, "first");
    EXPECT_EQ(ota_err_set(nullptr, -EBADMSG, "x"), -EBADMSG);
    EXPECT_EQ(ota_err_set(&e, 0, "x"), -EIO);
    ota_err_clear(&e);
    EXPECT_EQ(e.code, 0);
    EXPECT_STREQ(e.reason, "");
}

TEST(ErrTest, PrefixKeepsTheCalleesCodeAndReason)
{
    ota_err e = {};
    int r = callee(&e);
    EXPECT_EQ(ota_err_prefix(&e, r, "journal %s", "state"), -ENOSPC);
    EXPECT_EQ(e.code, ENOSPC);
    EXPECT_STREQ(e.reason, "journal state: write /data/x: no space");
    // twice: outermost context first
    EXPECT_EQ(ota_err_prefix(&e, r, "save"), -ENOSPC);
    EXPECT_STREQ(e.reason, "save: journal state: write /data/x: no space");
}

TEST(ErrTest, PrefixWithoutAReasonNamesTheErrno)
{
    ota_err e = {};
    EXPECT_EQ(ota_err_prefix(&e, -ENOENT, "open %s", "/x"), -ENOENT);
    EXPECT_EQ(e.code, ENOENT);
    EXPECT_EQ(std::string(e.reason), std::string("open /x: ") + strerror(ENOENT));
    // a non-failure result is made one, as ota_err_set does
    ota_err f = {};
    EXPECT_EQ(ota_err_prefix(&f, 0, "x"), -EIO);
    EXPECT_EQ(ota_err_prefix(nullptr, -EPERM, "x"), -EPERM);
}

TEST(ErrTest, LongReasonsAreCutNotOverrun)
{
    ota_err e = {};
    std::string big(2000, 'x');
    ota_ignore(ota_err_set(&e, EIO, "%s", big.c_str()));
    EXPECT_EQ(strlen(e.reason), sizeof(e.reason) - 1);
    ota_ignore(ota_err_prefix(&e, -EIO, "%s", big.c_str()));
    EXPECT_EQ(strlen(e.reason), sizeof(e.reason) - 1);
}
