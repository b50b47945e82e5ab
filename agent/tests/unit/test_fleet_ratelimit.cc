// The fleet server's 429 (docs/protocol.md "Rate limits", DESIGN.md): the
// agent keeps the Retry-After in its store and asks nothing of the server
// (check-in, registration, reports: source.c fleet_wait_over) before then, across passes; a 2xx
// clears the wait; a clock gone back does not block for long.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ota/core.h"
#include "ota/json.h"
#include "support/fakes.h"
#include "support/passes.h"

namespace
{

const int64_t kNow = 1800000000000; // device wall clock (unix ms)

struct FleetAgent : PassingAgent {
    explicit FleetAgent(FakeWorld &world) : PassingAgent(world)
    {
        cfg.source = OTA_SOURCE_FLEET;
        strcpy(cfg.enroll_token, "enroll");
        a = ota_agent_new(&cfg, &ops);
    }
};

// Check-ins answered 429 with retry_after while refuse > 0.
struct Busy {
    int refuse = 1;
    std::string retry_after = "120";
    bool answer(const std::string &url, ota_http_resp *ret, std::string &body)
    {
        if (url.find("/checkin") == std::string::npos || refuse <= 0)
            return false;
        refuse--;
        ret->status = 429;
        ota_strlcpy(ret->retry_after, retry_after.c_str(), sizeof(ret->retry_after));
        body = "{\"detail\":\"rate limit: 1 request per 1 s for device dev-1\"}";
        return true;
    }
};

} // namespace

TEST(FleetRateLimit, RetryAfterIsHonouredAcrossPasses)
{
    FakeWorld w;
    w.wall = kNow;
    Busy busy;
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        return busy.answer(u, r, b);
    };
    FleetAgent g(w);
    std::string r = g.pass();
    EXPECT_EQ(r.rfind("unreachable: server busy: HTTP 429, Retry-After 120", 0), 0) << r;
    EXPECT_EQ(g.requests("/checkin"), 1u);
    // Passes every 10 s before the 120 s are over: nothing asked, each says why.
    for (int i = 1; i < 12; i++) {
        w.wall = kNow + i * 10000;
        r = g.pass();
        EXPECT_EQ(r.rfind("unreachable: the server asked to wait until 2027-01-15T08:02:00Z", 0), 0)
            << r;
    }
    EXPECT_EQ(g.requests("/checkin"), 1u) << "asked again before Retry-After";
    EXPECT_EQ(g.requests("/register"), 1u);
    // Once it is over: asked again, answered, and the wait is gone.
    w.wall = kNow + 120000;
    EXPECT_EQ(g.pass(), "ok: ");
    EXPECT_EQ(g.requests("/checkin"), 2u);
    EXPECT_EQ(w.kv["fleet.rate_limit"], "");
    w.wall += 1000;
    EXPECT_EQ(g.pass(), "ok: ");
    EXPECT_EQ(g.requests("/checkin"), 3u);
}

TEST(FleetRateLimit, AClockThatWentBackDoesNotBlockForLong)
{
    FakeWorld w;
    w.wall = kNow;
    Busy busy;
    busy.retry_after = "3600";
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        return busy.answer(u, r, b);
    };
    FleetAgent g(w);
    (void)g.pass();
    w.wall = kNow - 24 * 3600 * 1000LL; // a day back: the stored wait is not believed
    EXPECT_EQ(g.pass(), "ok: ");
    EXPECT_EQ(g.requests("/checkin"), 2u);
}
