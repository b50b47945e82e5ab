// Range header parsing: a table of headers against a 1000-byte resource,
// plus the edge cases of empty resources and 64-bit overflow.
#include <gtest/gtest.h>

#include "otasrv/range.h"

namespace
{

struct Case {
    const char *header;
    uint64_t total;
    otasrv_range_result want;
    uint64_t start, len;
};

const Case kCases[] = {
    {nullptr, 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=0-99", 1000, OTASRV_RANGE_PARTIAL, 0, 100},
    {"bytes=100-", 1000, OTASRV_RANGE_PARTIAL, 100, 900},
    {"bytes=-100", 1000, OTASRV_RANGE_PARTIAL, 900, 100},
    {"bytes=999-", 1000, OTASRV_RANGE_PARTIAL, 999, 1},
    {"bytes=0-", 1000, OTASRV_RANGE_PARTIAL, 0, 1000},
    {"bytes=500-5000", 1000, OTASRV_RANGE_PARTIAL, 500, 500}, // last clamped
    {"bytes=-5000", 1000, OTASRV_RANGE_PARTIAL, 0, 1000},     // suffix longer than body
    {"bytes=5-5", 1000, OTASRV_RANGE_PARTIAL, 5, 1},
    {"BYTES = 10 - 19", 1000, OTASRV_RANGE_PARTIAL, 10, 10}, // case, spaces
    {"bytes=1000-", 1000, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=2000-3000", 1000, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=-0", 1000, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=0-", 0, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=-10", 0, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=99999999999999999999999-", 1000, OTASRV_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=0-99999999999999999999999", 1000, OTASRV_RANGE_PARTIAL, 0, 1000},
    {"bytes=-99999999999999999999999", 1000, OTASRV_RANGE_PARTIAL, 0, 1000},
    // ignored: whole body
    {"bytes=20-10", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=0-1,5-9", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=-", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=a-b", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=1-2x", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes 1-2", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"items=0-1", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=--5", 1000, OTASRV_RANGE_NONE, 0, 0},
    {"bytes=+5-", 1000, OTASRV_RANGE_NONE, 0, 0},
};

TEST(Range, Table)
{
    for (const Case &c : kCases) {
        uint64_t start = 12345, len = 67890;
        otasrv_range_result got = otasrv_range_parse(c.header, c.total, &start, &len);
        SCOPED_TRACE(c.header ? c.header : "(null)");
        EXPECT_EQ(got, c.want) << otasrv_range_result_names[got];
        if (c.want == OTASRV_RANGE_PARTIAL) {
            EXPECT_EQ(start, c.start);
            EXPECT_EQ(len, c.len);
        } else {
            EXPECT_EQ(start, 12345u); // untouched unless partial
            EXPECT_EQ(len, 67890u);
        }
    }
}

TEST(Range, LastByteOfHugeResource)
{
    uint64_t start = 0, len = 0;
    const uint64_t total = UINT64_MAX - 1;
    ASSERT_EQ(otasrv_range_parse("bytes=-1", total, &start, &len), OTASRV_RANGE_PARTIAL);
    EXPECT_EQ(start, total - 1);
    EXPECT_EQ(len, 1u);
}

} // namespace
