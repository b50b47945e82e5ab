// Unit tests for common/src/inventory.c: the syntax of a device's attributes
// and time zone, shared by the agent's config and the server's API.
#include <gtest/gtest.h>

#include <string>

extern "C" {
#include "ota/inventory.h"
}

namespace
{

TEST(Inventory, AttributeKeysAndValues)
{
    EXPECT_TRUE(ota_attr_key_valid("region"));
    EXPECT_TRUE(ota_attr_key_valid("hw_rev2"));
    EXPECT_TRUE(ota_attr_key_valid(std::string(32, 'k').c_str()));
    EXPECT_FALSE(ota_attr_key_valid(std::string(33, 'k').c_str()));
    EXPECT_FALSE(ota_attr_key_valid(""));
    EXPECT_FALSE(ota_attr_key_valid("Region"));
    EXPECT_FALSE(ota_attr_key_valid("hw-rev"));
    EXPECT_FALSE(ota_attr_key_valid(nullptr));
    EXPECT_TRUE(ota_attr_value_valid(""));
    EXPECT_TRUE(ota_attr_value_valid("rev 2, \"b\""));
    EXPECT_TRUE(ota_attr_value_valid(std::string(64, 'v').c_str()));
    EXPECT_FALSE(ota_attr_value_valid(std::string(65, 'v').c_str()));
    EXPECT_FALSE(ota_attr_value_valid("tab\there"));
    EXPECT_FALSE(ota_attr_value_valid("\xc3\xa9"));
    EXPECT_FALSE(ota_attr_value_valid(nullptr));
}

TEST(Inventory, TimeZones)
{
    int off = 1;
    EXPECT_TRUE(ota_timezone_fixed("UTC", &off));
    EXPECT_EQ(off, 0);
    EXPECT_TRUE(ota_timezone_fixed("+05:30", &off));
    EXPECT_EQ(off, 19800);
    EXPECT_TRUE(ota_timezone_fixed("-03:30", &off));
    EXPECT_EQ(off, -12600);
    EXPECT_TRUE(ota_timezone_fixed("+14:00", &off));
    EXPECT_FALSE(ota_timezone_fixed("+14:30", &off));
    EXPECT_FALSE(ota_timezone_fixed("+05:60", &off));
    EXPECT_FALSE(ota_timezone_fixed("+0530", &off));
    EXPECT_FALSE(ota_timezone_fixed("Europe/Berlin", &off));
    for (const char *ok : {"UTC", "Z", "+02:00", "Europe/Berlin", "America/Argentina/Buenos_Aires",
                           "Etc/GMT+5", "America/Port-au-Prince"})
        EXPECT_TRUE(ota_timezone_valid(ok)) << ok;
    for (const char *bad : {"", "/etc/localtime", "../etc/passwd", "Europe//Berlin", "Europe/",
                            "Europe/./Berlin", "-Europe", "Europe/Ber lin", "+25:00"})
        EXPECT_FALSE(ota_timezone_valid(bad)) << bad;
    EXPECT_FALSE(ota_timezone_valid(std::string(65, 'a').c_str()));
    EXPECT_FALSE(ota_timezone_valid(nullptr));
}

} // namespace
