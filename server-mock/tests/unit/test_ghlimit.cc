// The GitHub face's rate limiter (otasrv/ghlimit.h) without HTTP: windows,
// keys, tokens, the option syntax, and a full table.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "otasrv/ghlimit.h"

namespace
{

struct Limiter {
    otasrv_ghlimit *l = nullptr;
    explicit Limiter(otasrv_ghlimit_config c)
    {
        ota_err err{};
        EXPECT_EQ(otasrv_ghlimit_new(&c, &l, &err), 0) << err.reason;
    }
    ~Limiter()
    {
        otasrv_ghlimit_free(l);
    }
    otasrv_ghlimit_verdict take(const char *client, int64_t now, const char *token = nullptr)
    {
        otasrv_ghlimit_verdict v;
        otasrv_ghlimit_take(l, client, token, now, &v);
        return v;
    }
};

const int64_t T = 1800000000000;

} // namespace

TEST(GhLimit, WindowOpensAtTheFirstRequestAndEndsAnHourLater)
{
    otasrv_ghlimit_config c{};
    c.limit = 3;
    Limiter g(c);
    for (unsigned i = 1; i <= 3; i++) {
        auto v = g.take("1.2.3.4", T + 1500 + i);
        EXPECT_TRUE(v.allowed);
        EXPECT_EQ(v.used, i);
        EXPECT_EQ(v.remaining, 3 - i);
        EXPECT_EQ(v.reset_s, (T + 1501 + 3600000 + 999) / 1000);
    }
    auto v = g.take("1.2.3.4", T + 3600000);
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(v.remaining, 0u);
    EXPECT_EQ(v.used, 3u);
    EXPECT_EQ(v.retry_s, 2); // 1501 ms to go, rounded up
    EXPECT_TRUE(g.take("5.6.7.8", T + 3600000).allowed) << "keys share a window";
    v = g.take("1.2.3.4", T + 1501 + 3600000);
    EXPECT_TRUE(v.allowed) << "a new window at the reset";
    EXPECT_EQ(v.remaining, 2u);
}

TEST(GhLimit, TokensHaveTheirOwnLargerWindowUnknownOnesAreBad)
{
    otasrv_ghlimit_config c{};
    c.limit = 1;
    c.tokens[0] = "good";
    Limiter g(c);
    EXPECT_TRUE(g.take("ip", T).allowed);
    EXPECT_FALSE(g.take("ip", T).allowed);
    auto v = g.take("ip", T, "good");
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.limit, 5000u);
    EXPECT_EQ(v.remaining, 4999u);
    v = g.take("ip", T, "bad");
    EXPECT_TRUE(v.bad_token);
    EXPECT_EQ(v.limit, 1u);
}

TEST(GhLimit, AFullTableMakesRoomAndKeepsCounting)
{
    otasrv_ghlimit_config c{};
    c.limit = 2;
    Limiter g(c);
    for (int i = 0; i < 5000; i++)
        EXPECT_TRUE(g.take(("c" + std::to_string(i)).c_str(), T + i).allowed);
    EXPECT_TRUE(g.take("last", T + 6000).allowed);
    EXPECT_TRUE(g.take("last", T + 6000).allowed);
    EXPECT_FALSE(g.take("last", T + 6000).allowed);
}

TEST(GhLimit, OptionSyntax)
{
    unsigned n = 0;
    int64_t w = 0;
    EXPECT_EQ(otasrv_ghlimit_parse("60", &n, &w), 0);
    EXPECT_EQ(n, 60u);
    EXPECT_EQ(w, 3600000);
    EXPECT_EQ(otasrv_ghlimit_parse("5/m", &n, &w), 0);
    EXPECT_EQ(w, 60000);
    EXPECT_EQ(otasrv_ghlimit_parse("5/90s", &n, &w), 0);
    EXPECT_EQ(w, 90000);
    for (const char *bad : {"", "0", "-1", "5/", "5/x", "5/90", "5/0s", "x", "5 /h"})
        EXPECT_EQ(otasrv_ghlimit_parse(bad, &n, &w), -EINVAL) << bad;
    otasrv_ghlimit_config c{};
    otasrv_ghlimit *l = nullptr;
    ota_err err{};
    EXPECT_EQ(otasrv_ghlimit_new(&c, &l, &err), -EINVAL);
    c.limit = 1;
    c.status = 500;
    EXPECT_EQ(otasrv_ghlimit_new(&c, &l, &err), -EINVAL);
    c.status = 429;
    c.tokens[0] = "has space";
    EXPECT_EQ(otasrv_ghlimit_new(&c, &l, &err), -EINVAL);
}
