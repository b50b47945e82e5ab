// Unit tests for server-mock/src/swdesc.c: what ota-server reads of an
// SWUpdate sw-description, and the clear refusals of what it cannot take.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

extern "C" {
#include "otasrv/swdesc.h"
}

namespace
{

const char kRootfs[] = "software =\n{\n"
                       "\tversion = \"1.2.3\";\n"
                       "\tdescription = \"board-os\";\n"
                       "\thardware-compatibility: [ \"1.0\", \"1.2\" ];\n"
                       "\tota: {\n"
                       "\t\tb: { images: ( { filename = \"r.img\"; type = \"raw\";\n"
                       "\t\t\tdevice = \"/dev/mmcblk0p3\"; sha256 = \"00\"; } ); };\n"
                       "\t};\n"
                       "};\n";

int Parse(const std::string &text, struct otasrv_swdesc *d, std::string *reason)
{
    struct ota_err err = {};
    int r = otasrv_swdesc_parse(text.data(), text.size(), d, &err);
    *reason = err.reason;
    return r;
}

TEST(Swdesc, RootfsReleaseOfSelectionSets)
{
    struct otasrv_swdesc d;
    std::string why;
    ASSERT_EQ(Parse(kRootfs, &d, &why), 0) << why;
    EXPECT_STREQ(d.version, "1.2.3");
    EXPECT_STREQ(d.name, "board-os");
    EXPECT_STREQ(d.kind, "rootfs");
    ASSERT_EQ(d.n_hw, 2);
    EXPECT_STREQ(d.hw[0], "1.0");
    EXPECT_STREQ(d.hw[1], "1.2");
    char *json = otasrv_swdesc_hw_json(&d);
    EXPECT_STREQ(json, "[\"1.0\",\"1.2\"]");
    free(json);
}

TEST(Swdesc, AppReleaseAndFreeTextDescription)
{
    struct otasrv_swdesc d;
    std::string why;
    ASSERT_EQ(Parse("software = { version = \"2.0.0\"; description = \"my app, v2\";\n"
                    "  files: ( { filename = \"a.tgz\"; type = \"archive\"; path = \"/opt\"; } );"
                    " };",
                    &d, &why),
              0)
        << why;
    EXPECT_STREQ(d.kind, "app");
    EXPECT_STREQ(d.name, "swu");
    EXPECT_EQ(d.n_hw, 0);
}

TEST(Swdesc, RefusesWithAReason)
{
    const struct {
        std::string text, reason;
    } cases[] = {
        {"software = { version = \"1.0.0\";\n oops", "sw-description line 2: syntax error"},
        {"other = { version = \"1.0.0\"; };", "no software group"},
        {"software = { description = \"x\"; };", "software.version (a string) is missing"},
        {"software = { version = 1; };", "software.version (a string) is missing"},
        {"software = { version = \"latest\"; };", "is not MAJOR.MINOR.PATCH"},
        {"software = { version = \"1.0.0\"; hardware-compatibility = \"1.0\"; };",
         "hardware-compatibility is not an array"},
        {"software = { version = \"1.0.0\"; hardware-compatibility = [ 1, 2 ]; };",
         "hardware-compatibility entry 1 is not a revision string"},
        {"software = { version = \"1.0.0\";"
         " images: ( { filename = \"u\"; type = \"uboot\"; } ); };",
         "no image of type \"raw\""},
        {std::string("software = { version = \"1.0.0\"; };") + std::string(1, '\0') + "x",
         "a NUL byte"},
        {"@include \"/etc/hostname\"\nsoftware = { version = \"1.0.0\"; };",
         "@include is not allowed"},
    };
    for (const auto &c : cases) {
        struct otasrv_swdesc d;
        std::string why;
        EXPECT_EQ(Parse(c.text, &d, &why), -EINVAL) << c.text;
        EXPECT_NE(why.find(c.reason), std::string::npos) << c.text << " -> " << why;
    }
}

} // namespace
