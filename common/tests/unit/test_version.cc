// Unit tests for common/src/version.c: semver validity and precedence.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

extern "C" {
#include "ota/version.h"
}

namespace
{

int cmp(const char *a, const char *b)
{
    int c = 42;
    EXPECT_EQ(ota_version_cmp(a, b, &c), 0) << a << " vs " << b;
    return c;
}

} // namespace

TEST(Version, Valid)
{
    for (const char *s :
         {"0.0.0", "1.0.0", "v1.2.3", "10.20.30", "1.0.0-rc1", "1.0.0-rc.1", "1.0.0-0.3.7",
          "1.0.0-x.7.z.92", "1.0.0-alpha-beta", "1.0.0--", "99999999999999999999999.0.0"})
        EXPECT_TRUE(ota_version_valid(s)) << s;
}

TEST(Version, Invalid)
{
    for (const char *s : {"",          "1",        "1.0",         "1.0.0.0",
                          "01.0.0",    "1.01.0",   "1.0.01",      "V1.0.0",
                          "vv1.0.0",   "v",        "1.0.0-",      "1.0.0-rc..1",
                          "1.0.0-rc.", "1.0.0-01", "1.0.0+build", "1.0.0-rc1+build",
                          " 1.0.0",    "1.0.0 ",   "1.0.0\n",     "1.-1.0",
                          "1.a.0",     "1..0",     ".1.0.0",      "1.0.0-rc_1",
                          "latest"})
        EXPECT_FALSE(ota_version_valid(s)) << '"' << s << '"';
    EXPECT_FALSE(ota_version_valid(nullptr));
}

TEST(Version, CompareTable)
{
    // Each entry is strictly below the next (semver 2.0.0 precedence).
    const std::vector<const char *> order = {
        "0.0.1",         "0.1.0",
        "0.10.0",        "1.0.0-0",
        "1.0.0-1",       "1.0.0-2",
        "1.0.0-10",      "1.0.0-alpha",
        "1.0.0-alpha.1", "1.0.0-alpha.beta",
        "1.0.0-beta",    "1.0.0-beta.2",
        "1.0.0-beta.11", "1.0.0-rc.1",
        "1.0.0-rc1",     "1.0.0",
        "1.0.1",         "1.0.10",
        "1.1.0",         "1.9.0",
        "1.10.0",        "2.0.0",
        "10.0.0",        "100000000000000000000.0.0",
    };
    for (size_t i = 0; i < order.size(); i++) {
        EXPECT_EQ(cmp(order[i], order[i]), 0) << order[i];
        for (size_t j = i + 1; j < order.size(); j++) {
            EXPECT_LT(cmp(order[i], order[j]), 0) << order[i] << " < " << order[j];
            EXPECT_GT(cmp(order[j], order[i]), 0) << order[j] << " > " << order[i];
        }
    }
}

TEST(Version, BriefTable)
{
    EXPECT_LT(cmp("1.0.0", "1.0.1"), 0);
    EXPECT_LT(cmp("1.0.1", "1.1.0"), 0);
    EXPECT_LT(cmp("1.1.0", "2.0.0"), 0);
    EXPECT_LT(cmp("1.0.0-rc1", "1.0.0"), 0);
    EXPECT_GT(cmp("2.0.0", "1.99.99"), 0);
}

TEST(Version, LeadingVIsIgnored)
{
    EXPECT_EQ(cmp("v1.0.0", "1.0.0"), 0);
    EXPECT_EQ(cmp("v2.0.0", "v2.0.0"), 0);
    EXPECT_LT(cmp("v1.0.0", "1.0.1"), 0);
    EXPECT_GT(cmp("2.0.0", "v1.0.0"), 0);
    EXPECT_LT(cmp("v1.0.0-rc.1", "v1.0.0"), 0);
}

TEST(Version, CompareRefusesInvalid)
{
    int c = 42;
    EXPECT_EQ(ota_version_cmp("1.0", "1.0.0", &c), -EINVAL);
    EXPECT_EQ(ota_version_cmp("1.0.0", "garbage", &c), -EINVAL);
    EXPECT_EQ(ota_version_cmp("1.0.0+b", "1.0.0", &c), -EINVAL);
    EXPECT_EQ(ota_version_cmp(nullptr, "1.0.0", &c), -EINVAL);
    EXPECT_EQ(ota_version_cmp("1.0.0", nullptr, &c), -EINVAL);
    EXPECT_EQ(c, 42); // untouched on failure
}
