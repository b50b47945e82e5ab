// otasrv_secret_eq: equal only for the same bytes and the same length.
#include <gtest/gtest.h>

#include "otasrv/auth.h"

TEST(SecretEq, EqualStrings)
{
    EXPECT_EQ(otasrv_secret_eq("", ""), 1);
    EXPECT_EQ(otasrv_secret_eq("abc123", "abc123"), 1);
}

TEST(SecretEq, DifferentBytesAnywhere)
{
    EXPECT_EQ(otasrv_secret_eq("abc123", "xbc123"), 0); // first byte
    EXPECT_EQ(otasrv_secret_eq("abc123", "abc124"), 0); // last byte
    EXPECT_EQ(otasrv_secret_eq("abc123", "abC123"), 0); // case matters
}

TEST(SecretEq, PrefixIsNotEqual)
{
    EXPECT_EQ(otasrv_secret_eq("abc", "abc123"), 0);
    EXPECT_EQ(otasrv_secret_eq("abc123", "abc"), 0);
    EXPECT_EQ(otasrv_secret_eq("", "a"), 0);
}

TEST(SecretEq, NullEqualsNothing)
{
    EXPECT_EQ(otasrv_secret_eq(nullptr, ""), 0);
    EXPECT_EQ(otasrv_secret_eq("", nullptr), 0);
    EXPECT_EQ(otasrv_secret_eq(nullptr, nullptr), 0);
}

TEST(SecretEq, HexHashes)
{
    const char *a = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const char *b = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a09";
    EXPECT_EQ(otasrv_secret_eq(a, a), 1);
    EXPECT_EQ(otasrv_secret_eq(a, b), 0);
}
