// Unit tests for common/src/jsonw.c: the writer's text is jansson's compact
// dump, escapes included, and it refuses what jansson refuses.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include <jansson.h>

extern "C" {
#include "ota/jsonw.h"
}

namespace
{

std::string ours(const std::string &key, const std::string &value, int *err = nullptr)
{
    ota_jw w{};
    char *text = nullptr;
    ota_jw_member(&w, "{", key.c_str(), value.c_str());
    ota_jw_raw(&w, "}", 1);
    int r = ota_jw_finish(&w, &text);
    if (err)
        *err = r;
    std::string s = r == 0 ? text : "";
    free(text);
    return s;
}

std::string janssons(const std::string &key, const std::string &value)
{
    json_t *o = json_object();
    json_object_set_new(o, key.c_str(), json_string(value.c_str()));
    char *d = json_dumps(o, JSON_COMPACT);
    std::string s = d ? d : "";
    free(d);
    json_decref(o);
    return s;
}

TEST(JsonWriter, EveryEscapeIsJanssons)
{
    std::string all;
    for (int c = 1; c < 0x80; c++)
        all += static_cast<char>(c);
    const std::string cases[] = {"",
                                 "plain",
                                 "q\"uote",
                                 "back\\slash",
                                 "tab\there",
                                 all,
                                 "\xc3\xa9t\xc3\xa9", // 2-byte
                                 "\xe2\x82\xac",      // 3-byte
                                 "\xf0\x9f\x98\x80",  // 4-byte
                                 "\x7f del",
                                 "/slash/"};
    for (const auto &v : cases) {
        EXPECT_EQ(ours("k", v), janssons("k", v)) << "value of " << v.size() << " bytes";
        EXPECT_EQ(ours(v, "x"), janssons(v, "x")) << "key of " << v.size() << " bytes";
    }
}

TEST(JsonWriter, RefusesWhatIsNotUtf8)
{
    const std::string bad[] = {"\xc0\x80", "\xed\xa0\x80", "\xf5\x80\x80\x80", "\xe2\x82",
                               "ok\xff"};
    for (const auto &v : bad) {
        int err = 0;
        EXPECT_EQ(ours("k", v, &err), "");
        EXPECT_EQ(err, -EINVAL);
        EXPECT_EQ(json_string(v.c_str()), nullptr) << "jansson accepts it too";
    }
}

TEST(JsonWriter, NothingWrittenIsAnEmptyText)
{
    ota_jw w{};
    char *text = nullptr;
    ASSERT_EQ(ota_jw_finish(&w, &text), 0);
    EXPECT_STREQ(text, "");
    free(text);
}

} // namespace
