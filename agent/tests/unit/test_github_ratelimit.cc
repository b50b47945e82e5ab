// The GitHub source under GitHub's rate limit (DESIGN.md "GitHub's rate
// limit"): the decision read from one answer (ota_proto_gh_rate_limit, pure),
// and the core over the fakes: no request before the wait is over, across
// passes (the wait is in the store), the reason in the check result and in
// ota_agent_rate_limit, and the token sent to the configured origin only.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ota/core.h"
#include "ota/json.h"
#include "ota/protocol.h"
#include "support/fakes.h"
#include "support/passes.h"

namespace
{

const int64_t kNow = 1800000000000; // device wall clock (unix ms)

ota_http_resp answer(long status, const char *remaining = "", const char *reset = "",
                     const char *retry_after = "", const char *date = "", const char *body = "")
{
    ota_http_resp r{};
    r.status = status;
    r.body = const_cast<char *>(body);
    r.len = strlen(body);
    ota_strlcpy(r.ratelimit_remaining, remaining, sizeof(r.ratelimit_remaining));
    ota_strlcpy(r.ratelimit_reset, reset, sizeof(r.ratelimit_reset));
    ota_strlcpy(r.retry_after, retry_after, sizeof(r.retry_after));
    ota_strlcpy(r.date, date, sizeof(r.date));
    return r;
}

ota_gh_wait decide(const ota_http_resp &r, unsigned refusals = 0)
{
    ota_gh_wait w{};
    ota_proto_gh_rate_limit(&r, kNow, refusals, &w);
    return w;
}

} // namespace

TEST(GhRateLimit, PlainAnswersSayNothing)
{
    EXPECT_EQ(decide(answer(200)).wait_ms, 0);
    EXPECT_FALSE(decide(answer(200, "59", "1800003600")).refused);
    EXPECT_EQ(decide(answer(200, "59", "1800003600")).wait_ms, 0);
    // A 403 that is not about the rate limit (no header, no such message).
    ota_gh_wait w = decide(answer(403, "", "", "", "", "{\"message\":\"Forbidden\"}"));
    EXPECT_FALSE(w.refused);
    EXPECT_EQ(w.wait_ms, 0);
}

TEST(GhRateLimit, RemainingZeroWaitsForTheReset)
{
    // Refused: until the reset, measured on the device's clock without Date.
    ota_gh_wait w = decide(answer(403, "0", "1800001800"));
    EXPECT_TRUE(w.refused);
    EXPECT_EQ(w.wait_ms, 1800 * 1000);
    EXPECT_NE(std::string(w.why).find("X-RateLimit-Remaining 0"), std::string::npos) << w.why;
    // The last request allowed: usable, but the next one waits too.
    w = decide(answer(200, "0", "1800000600"));
    EXPECT_FALSE(w.refused);
    EXPECT_EQ(w.wait_ms, 600 * 1000);
}

TEST(GhRateLimit, ResetIsMeasuredAgainstTheServersDate)
{
    // The server's Date is 10 minutes behind the device: the wait is the
    // server's 30 minutes, not the device's 20.
    ota_gh_wait w = decide(answer(403, "0", "1800001200", "", "Fri, 15 Jan 2027 07:50:00 GMT"));
    EXPECT_EQ(w.wait_ms, 1800 * 1000);
}

TEST(GhRateLimit, RetryAfterComesFirst)
{
    ota_gh_wait w = decide(answer(429, "0", "1800003600", "120"));
    EXPECT_TRUE(w.refused);
    EXPECT_EQ(w.wait_ms, 120 * 1000);
    w = decide(
        answer(403, "", "", "Fri, 15 Jan 2027 08:05:00 GMT", "Fri, 15 Jan 2027 08:00:00 GMT"));
    EXPECT_TRUE(w.refused);
    EXPECT_EQ(w.wait_ms, 300 * 1000);
}

TEST(GhRateLimit, RefusalWithoutATimeWaitsAMinuteDoubling)
{
    EXPECT_EQ(decide(answer(429)).wait_ms, 60 * 1000);
    const char *msg = "{\"message\":\"You have exceeded a secondary rate limit\"}";
    EXPECT_TRUE(decide(answer(403, "", "", "", "", msg)).refused);
    EXPECT_EQ(decide(answer(403, "", "", "", "", msg), 1).wait_ms, 120 * 1000);
    EXPECT_EQ(decide(answer(429), 3).wait_ms, 480 * 1000);
    EXPECT_EQ(decide(answer(429), 40).wait_ms, 32 * 60 * 1000);
}

TEST(GhRateLimit, BadClocksAreBounded)
{
    // A reset already past (clocks apart): a refusal still waits a minute.
    EXPECT_EQ(decide(answer(403, "0", "1700000000")).wait_ms, OTA_GH_WAIT_MIN_MS);
    // A reset days ahead: no more than the longest wait.
    EXPECT_EQ(decide(answer(403, "0", "1900000000")).wait_ms, OTA_GH_WAIT_MAX_MS);
    // Garbage headers are absent ones.
    EXPECT_EQ(decide(answer(403, "zero", "soon", "later")).wait_ms, 60 * 1000);
}

// Numbers of 17-19 digits (a broken or hostile server) are the longest wait, not an
// overflow of seconds * 1000 into a short or negative one (found by fuzz-http-headers).
TEST(GhRateLimit, HugeHeaderNumbersAreTheLongestWait)
{
    EXPECT_EQ(decide(answer(429, "", "", "4444444444444444010")).wait_ms, OTA_GH_WAIT_MAX_MS);
    EXPECT_EQ(decide(answer(403, "0", "18446744073709552")).wait_ms, OTA_GH_WAIT_MAX_MS);
    EXPECT_EQ(
        decide(answer(403, "0", "9300000000000000", "", "Sat, 05 Dec 2026 13:00:00 GMT")).wait_ms,
        OTA_GH_WAIT_MAX_MS);
}

namespace
{

const char *kRelease =
    "{\"tag_name\":\"v2.0.0\",\"assets\":["
    "{\"name\":\"manifest.json\",\"size\":10,"
    "\"browser_download_url\":\"http://srv/o/r/releases/download/v2/manifest.json\"},"
    "{\"name\":\"manifest.json.sig\",\"size\":10,"
    "\"browser_download_url\":\"http://cdn.example/v2/manifest.json.sig\"}]}";

struct GhAgent : PassingAgent {
    explicit GhAgent(FakeWorld &world, const char *token = "") : PassingAgent(world)
    {
        cfg.source = OTA_SOURCE_GITHUB;
        strcpy(cfg.repo, "o/r");
        strcpy(cfg.github_token, token);
        a = ota_agent_new(&cfg, &ops);
    }
    size_t api_requests() const
    {
        return requests("/repos/o/r/releases/latest");
    }
};

// The latest release: 404 (none yet) with the rate-limit headers of a 60/h
// window that ends at reset_s; refused (status) once used up.
struct Window {
    int64_t reset_s = kNow / 1000 + 3600;
    int used = 0, limit = 60;
    long refuse_status = 403;
    bool answer(const std::string &url, ota_http_resp *ret, std::string &body)
    {
        if (url.find("/releases/latest") == std::string::npos)
            return false;
        bool ok = used < limit;
        used += ok;
        ret->status = ok ? 404 : refuse_status;
        body = ok ? "{\"message\":\"Not Found\"}"
                  : "{\"message\":\"API rate limit exceeded for 127.0.0.1.\"}";
        snprintf(ret->ratelimit_remaining, sizeof(ret->ratelimit_remaining), "%d", limit - used);
        snprintf(ret->ratelimit_reset, sizeof(ret->ratelimit_reset), "%lld", (long long)reset_s);
        return true;
    }
};

} // namespace

TEST(GhSource, RefusedPassWaitsForTheResetAcrossPasses)
{
    FakeWorld w;
    w.wall = kNow;
    Window win;
    win.limit = 2;
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        return win.answer(u, r, b);
    };
    GhAgent g(w);
    EXPECT_EQ(g.pass(), "ok: ");
    EXPECT_EQ(g.pass(), "ok: "); // the last one allowed: Remaining 0 from here
    // Passes every minute: none asks before the reset, each says why.
    for (int i = 1; i < 60; i++) {
        w.wall = kNow + i * 60000;
        std::string r = g.pass();
        EXPECT_EQ(r.rfind("unreachable: rate limited until 2027-01-15T09:00:00Z", 0), 0) << r;
    }
    EXPECT_EQ(g.api_requests(), 2u) << "asked again before the reset";
    EXPECT_EQ(win.used, 2);
    int64_t until = 0;
    char why[300];
    EXPECT_EQ(ota_agent_rate_limit(g.a, &until, why, sizeof(why)), 1);
    EXPECT_EQ(until, win.reset_s * 1000);
    EXPECT_NE(std::string(why).find("rate limited until"), std::string::npos) << why;
    // At the reset a new window: asked again, and the wait is gone.
    w.wall = win.reset_s * 1000;
    win.used = 0;
    win.reset_s += 3600;
    EXPECT_EQ(g.pass(), "ok: ");
    EXPECT_EQ(g.api_requests(), 3u);
    EXPECT_EQ(ota_agent_rate_limit(g.a, &until, why, sizeof(why)), 0);
}

TEST(GhSource, RefusalIsNotRetriedBeforeItsTime)
{
    FakeWorld w;
    w.wall = kNow;
    Window win;
    win.limit = 0; // refused from the first request, 429
    win.refuse_status = 429;
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        return win.answer(u, r, b);
    };
    GhAgent g(w);
    EXPECT_EQ(g.pass().rfind("unreachable: rate limited until", 0), 0);
    for (int i = 1; i <= 59; i++) {
        w.wall = kNow + i * 60000;
        (void)g.pass();
    }
    EXPECT_EQ(g.api_requests(), 1u) << "hammered a refusing server";
    w.wall = win.reset_s * 1000;
    (void)g.pass();
    EXPECT_EQ(g.api_requests(), 2u);
}

TEST(GhSource, AClockThatWentBackDoesNotBlockForLong)
{
    FakeWorld w;
    w.wall = kNow;
    Window win;
    win.limit = 0;
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        return win.answer(u, r, b);
    };
    GhAgent g(w);
    (void)g.pass();
    w.wall = kNow - 24 * 3600 * 1000LL; // a day back: the stored wait is not believed
    (void)g.pass();
    EXPECT_EQ(g.api_requests(), 2u);
}

TEST(GhSource, TokenGoesToTheConfiguredOriginOnly)
{
    FakeWorld w;
    w.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        if (u.find("/releases/latest") != std::string::npos) {
            r->status = 200;
            b = kRelease;
            return true;
        }
        r->status = 404;
        b = "{}";
        return true;
    };
    GhAgent g(w, "ghp_secret");
    (void)g.pass();
    ASSERT_GE(w.requests.size(), 2u);
    EXPECT_EQ(w.requests[0], "GET http://srv/repos/o/r/releases/latest");
    EXPECT_EQ(w.bearers[0], "ghp_secret");
    EXPECT_EQ(w.requests[1], "GET http://srv/o/r/releases/download/v2/manifest.json");
    EXPECT_EQ(w.bearers[1], "ghp_secret");
    // manifest.json answered 404: no third request; an asset elsewhere never
    // gets the token (checked with an answer that lets the check go on).
    FakeWorld w2;
    w2.answer = [&](const std::string &u, ota_http_resp *r, std::string &b) {
        r->status = 200;
        b = u.find("/releases/latest") != std::string::npos ? kRelease : "x";
        return true;
    };
    GhAgent g2(w2, "ghp_secret");
    (void)g2.pass();
    ASSERT_EQ(w2.requests.size(), 3u);
    EXPECT_EQ(w2.requests[2], "GET http://cdn.example/v2/manifest.json.sig");
    EXPECT_EQ(w2.bearers[2], "");
    // No token configured: none sent.
    FakeWorld w3;
    w3.answer = w.answer;
    GhAgent g3(w3);
    (void)g3.pass();
    EXPECT_EQ(w3.bearers[0], "");
}
