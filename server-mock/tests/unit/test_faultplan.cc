// Unit tests for src/faultplan.c: parsing (JSON and YAML into one tree),
// validation, matching and its determinism, the body filter, the header
// changes, the applied-fault log, run-time swap and concurrent matching.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <jansson.h>

extern "C" {
#include "otasrv/faultplan.h"
}

namespace
{

using Plan = struct otasrv_faultplan;

struct PlanPtr {
    Plan *p = nullptr;
    PlanPtr() = default;
    explicit PlanPtr(Plan *q) : p(q) {}
    PlanPtr(const PlanPtr &) = delete;
    PlanPtr &operator=(const PlanPtr &) = delete;
    ~PlanPtr()
    {
        otasrv_faultplan_free(p);
    }
    Plan *get() const
    {
        return p;
    }
};

Plan *parse_ok(const std::string &text, otasrv_plan_format fmt = OTASRV_PLAN_AUTO)
{
    ota_err err{};
    Plan *p = nullptr;
    int rc = otasrv_faultplan_parse(text.data(), text.size(), fmt, &p, &err);
    EXPECT_EQ(rc, 0) << err.reason << "\n" << text;
    return rc == 0 ? p : nullptr;
}

// Parses text expecting failure; returns the reason.
std::string parse_fail(const std::string &text, otasrv_plan_format fmt = OTASRV_PLAN_AUTO,
                       int want = -EINVAL)
{
    ota_err err{};
    Plan *p = nullptr;
    int rc = otasrv_faultplan_parse(text.data(), text.size(), fmt, &p, &err);
    EXPECT_EQ(rc, want) << text;
    if (rc == 0)
        otasrv_faultplan_free(p);
    EXPECT_EQ(p, nullptr);
    return err.reason;
}

std::string describe(Plan *p)
{
    ota_err err{};
    json_t *j = nullptr;
    EXPECT_EQ(otasrv_faultplan_describe(p, &j, &err), 0) << err.reason;
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s ? s : "";
    free(s);
    json_decref(j);
    return out;
}

otasrv_request_info req(const char *path, const char *method = "GET", const char *device = nullptr,
                        const char *release = nullptr, uint64_t now = 1000)
{
    otasrv_request_info r{};
    r.method = method;
    r.path = path;
    r.device = device;
    r.release = release;
    r.now_ms = now;
    return r;
}

// The rule id that fires for r, or "" for none.
std::string hit(Plan *p, const otasrv_request_info &r, uint64_t id = 0)
{
    otasrv_fault_decision d{};
    int rc = otasrv_faultplan_match(p, &r, id, &d);
    EXPECT_GE(rc, 0);
    return rc == 1 ? std::string(d.rule) : std::string();
}

// Which of n requests to path the plan faults: a string of '.' and 'x'.
std::string pattern(Plan *p, int n, const char *path = "/a")
{
    std::string out;
    for (int i = 0; i < n; i++)
        out += hit(p, req(path)).empty() ? '.' : 'x';
    return out;
}

std::string one_rule(const std::string &match, const std::string &fault = R"({"kind":"reset"})",
                     const std::string &extra = "")
{
    return R"({"seed":1,"rules":[{"id":"r","match":)" + match + R"(,"fault":)" + fault + extra +
           "}]}";
}

const char *kJsonPlan = R"({
  "seed": 99,
  "rules": [
    {"id": "a-503", "match": {"path": "/api/v1/devices/*/checkin", "method": "post",
                              "every": 3, "after": 1},
     "fault": {"kind": "status", "code": 503, "retry_after": 5}, "count": 4},
    {"id": "b.cut", "match": {"path": "/api/v1/releases/*/payload", "device": "dev-1",
                              "release": "rel-2", "probability": 0.5},
     "fault": {"kind": "truncate", "after_bytes": 100}},
    {"id": "c_stall", "match": {"nth": 7}, "fault": {"kind": "stall", "after_bytes": 0}},
    {"id": "d", "match": {}, "fault": {"kind": "corrupt", "offset": 10, "length": 2}},
    {"id": "e", "fault": {"kind": "wrong_length", "delta": -5}},
    {"id": "f", "fault": {"kind": "ignore_range"}},
    {"id": "g", "fault": {"kind": "throttle", "bytes_per_s": 1000}},
    {"id": "h", "fault": {"kind": "delay", "ms": 250}, "count": 1},
    {"id": "i", "match": {"probability": 1}, "fault": {"kind": "reset"}}
  ]
})";

const char *kYamlPlan = R"(# the same plan as kJsonPlan
seed: 99
rules:
  - id: a-503
    match:
      path: /api/v1/devices/*/checkin
      method: post
      every: 3
      after: 1
    fault: {kind: status, code: 503, retry_after: 5}
    count: 4
  - id: b.cut
    match: &m
      path: "/api/v1/releases/*/payload"
      device: dev-1
      release: 'rel-2'
      probability: 0.5
    fault:
      kind: truncate
      after_bytes: 100
  - {id: c_stall, match: {nth: 7}, fault: {kind: stall, after_bytes: 0}}
  - id: d
    match: {}
    fault: {kind: corrupt, offset: 0xA, length: 2}
  - id: e
    fault: {kind: wrong_length, delta: -5}
  - id: f
    fault: {kind: ignore_range}
  - id: g
    fault: {kind: throttle, bytes_per_s: 1000}
  - id: h
    fault: {kind: delay, ms: !!int "250"}
    count: 1
  - id: i
    match: {probability: 1}
    fault: {kind: reset}
)";

TEST(FaultPlanParse, JsonAndYamlGiveTheSamePlan)
{
    PlanPtr j(parse_ok(kJsonPlan));
    PlanPtr y(parse_ok(kYamlPlan));
    ASSERT_TRUE(j.get() && y.get());
    EXPECT_EQ(describe(j.get()), describe(y.get()));

    const otasrv_request_info reqs[] = {
        req("/api/v1/devices/dev-1/checkin", "POST", "dev-1"),
        req("/api/v1/releases/rel-2/payload", "GET", "dev-1", "rel-2"),
        req("/api/v1/releases/rel-2/payload", "GET", "dev-2", "rel-2"),
        req("/other", "HEAD"),
    };
    for (int i = 0; i < 200; i++) {
        const otasrv_request_info &r = reqs[i % 4];
        otasrv_fault_decision dj{}, dy{};
        int a = otasrv_faultplan_match(j.get(), &r, i, &dj);
        int b = otasrv_faultplan_match(y.get(), &r, i, &dy);
        ASSERT_EQ(a, b) << i;
        if (a == 1) {
            EXPECT_STREQ(dj.rule, dy.rule);
            EXPECT_EQ(0, memcmp(&dj.fault, &dy.fault, sizeof(dj.fault)));
            EXPECT_EQ(dj.match, dy.match);
        }
    }
    EXPECT_EQ(describe(j.get()), describe(y.get()));
}

TEST(FaultPlanParse, DescribeShowsTheValidatedRules)
{
    PlanPtr p(parse_ok(kJsonPlan));
    ASSERT_TRUE(p.get());
    std::string d = describe(p.get());
    EXPECT_NE(d.find(R"("seed":99)"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("method":"POST")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("id":"h","fault":{"kind":"delay","ms":250},"count":1,)"
                     R"("matched":0,"applied":0})"),
              std::string::npos)
        << d;
}

TEST(FaultPlanParse, FaultParametersAndDefaults)
{
    PlanPtr p(parse_ok(R"(
seed: 3
rules:
  - {id: s, match: {path: /s}, fault: {kind: status, code: 429}}
  - {id: st, match: {path: /st}, fault: {kind: stall, after_bytes: 12}}
  - {id: st2, match: {path: /st2}, fault: {kind: stall, after_bytes: 0, ms: 0}}
  - {id: w, match: {path: /w}, fault: {kind: wrong_length, delta: 100}}
)"));
    ASSERT_TRUE(p.get());
    otasrv_fault_decision d{};
    otasrv_request_info r = req("/s");
    ASSERT_EQ(otasrv_faultplan_match(p.get(), &r, 1, &d), 1);
    EXPECT_EQ(d.fault.kind, OTASRV_FAULT_STATUS);
    EXPECT_EQ(d.fault.code, 429);
    EXPECT_EQ(d.fault.retry_after, -1);
    r = req("/st");
    ASSERT_EQ(otasrv_faultplan_match(p.get(), &r, 2, &d), 1);
    EXPECT_EQ(d.fault.kind, OTASRV_FAULT_STALL);
    EXPECT_EQ(d.fault.after_bytes, 12u);
    EXPECT_EQ(d.fault.ms, (uint32_t)OTASRV_FAULT_STALL_MS);
    r = req("/st2");
    ASSERT_EQ(otasrv_faultplan_match(p.get(), &r, 3, &d), 1);
    EXPECT_EQ(d.fault.ms, 0u);
    r = req("/w");
    ASSERT_EQ(otasrv_faultplan_match(p.get(), &r, 4, &d), 1);
    EXPECT_EQ(d.fault.delta, 100);
}

TEST(FaultPlanParse, FormatDetection)
{
    EXPECT_EQ(otasrv_faultplan_format_from_name("x/plan.json"), OTASRV_PLAN_JSON);
    EXPECT_EQ(otasrv_faultplan_format_from_name("plan.YAML"), OTASRV_PLAN_YAML);
    EXPECT_EQ(otasrv_faultplan_format_from_name("plan.yml"), OTASRV_PLAN_YAML);
    EXPECT_EQ(otasrv_faultplan_format_from_name("plan"), OTASRV_PLAN_AUTO);
    EXPECT_EQ(otasrv_faultplan_format_from_name("plan.txt"), OTASRV_PLAN_AUTO);
    EXPECT_EQ(otasrv_faultplan_format_from_name(nullptr), OTASRV_PLAN_AUTO);

    // Auto: JSON when it starts with '{' (after a BOM and blanks), else YAML.
    PlanPtr a(parse_ok("\xEF\xBB\xBF \n {\"rules\":[]}"));
    EXPECT_TRUE(a.get());
    PlanPtr b(parse_ok("rules: []\n"));
    EXPECT_TRUE(b.get());
    // JSON is a YAML flow mapping, so a forced YAML parse of JSON works too.
    PlanPtr c(parse_ok(kJsonPlan, OTASRV_PLAN_YAML));
    PlanPtr d(parse_ok(kJsonPlan, OTASRV_PLAN_JSON));
    ASSERT_TRUE(c.get() && d.get());
    EXPECT_EQ(describe(c.get()), describe(d.get()));
    // Forced JSON refuses YAML.
    EXPECT_NE(parse_fail("rules: []\n", OTASRV_PLAN_JSON).find("malformed JSON"),
              std::string::npos);
}

TEST(FaultPlanParse, EmptyPlanNeverFires)
{
    PlanPtr p(parse_ok(R"({"rules":[]})"));
    ASSERT_TRUE(p.get());
    EXPECT_EQ(pattern(p.get(), 5), ".....");
    Plan *q = nullptr;
    ota_err err{};
    ASSERT_EQ(otasrv_faultplan_new(&q, &err), 0);
    PlanPtr qq(q);
    EXPECT_EQ(pattern(q, 5), ".....");
    EXPECT_EQ(describe(q), R"({"seed":0,"rules":[]})");
    otasrv_fault_decision d{};
    otasrv_request_info r = req("/a");
    EXPECT_EQ(otasrv_faultplan_match(nullptr, &r, 1, &d), 0);
    EXPECT_EQ(otasrv_faultplan_match(q, nullptr, 1, &d), 0);
}

struct BadCase {
    const char *text;
    const char *reason; // substring of the reason
};

TEST(FaultPlanValidate, EachErrorHasAClearReason)
{
    const std::string big_rules = [] {
        std::string s = R"({"rules":[)";
        for (int i = 0; i < OTASRV_FAULTPLAN_RULES + 1; i++)
            s += (i ? "," : "") + std::string(R"({"id":"r)") + std::to_string(i) +
                 R"(","fault":{"kind":"reset"}})";
        return s + "]}";
    }();
    const std::string long_id =
        R"({"rules":[{"id":")" + std::string(64, 'x') + R"(","fault":{"kind":"reset"}}]})";
    const BadCase cases[] = {
        // plan level
        {"[]", "plan: must be a mapping"},
        {"- a\n- b\n", "plan: must be a mapping"},
        {R"({"seed":1})", "plan: missing 'rules'"},
        {R"({"rules":{}})", "plan: 'rules' must be a list"},
        {R"({"rules":[],"sede":1})", "plan: unknown key 'sede' (expected seed, rules)"},
        {R"({"seed":-1,"rules":[]})", "plan: 'seed' must not be negative (got -1)"},
        {R"({"seed":"1","rules":[]})", "plan: 'seed' must be an integer"},
        {R"({"seed":1.5,"rules":[]})", "plan: 'seed' must be an integer"},
        {big_rules.c_str(), "too many rules (257, limit 256)"},
        // rule level
        {R"({"rules":[1]})", "rules[0]: must be a mapping"},
        {R"({"rules":[{"fault":{"kind":"reset"}}]})", "rules[0]: missing 'id'"},
        {R"({"rules":[{"id":"","fault":{"kind":"reset"}}]})", "rules[0]: 'id' is empty"},
        {R"({"rules":[{"id":"a b","fault":{"kind":"reset"}}]})",
         "rules[0]: 'id' may hold only letters, digits"},
        {long_id.c_str(), "'id' is too long (64 bytes, limit 63)"},
        {R"({"rules":[{"id":7,"fault":{"kind":"reset"}}]})", "rules[0]: 'id' must be a string"},
        {R"({"rules":[{"id":"a"}]})", "rules[0] (a): missing 'fault'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"reset"},"limit":1}]})",
         "rules[0]: unknown key 'limit' (expected id, match, fault, count)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"reset"}},{"id":"a","fault":{"kind":"reset"}}]})",
         "rules[1]: duplicate id 'a' (see rules[0])"},
        {R"({"rules":[{"id":"a","fault":{"kind":"reset"},"count":0}]})",
         "rules[0] (a): 'count' must be between 1 and"},
        {R"({"rules":[{"id":"a","fault":"reset"}]})", "rules[0] (a) fault: must be a mapping"},
        // match
        {R"({"rules":[{"id":"a","match":[],"fault":{"kind":"reset"}}]})",
         "rules[0] (a) match: must be a mapping"},
        {R"({"rules":[{"id":"a","match":{"url":"/x"},"fault":{"kind":"reset"}}]})",
         "rules[0] (a) match: unknown key 'url' (expected path, method, device, release, nth, "
         "after, every, probability)"},
        {R"({"rules":[{"id":"a","match":{"path":"api/x"},"fault":{"kind":"reset"}}]})",
         "'path' must start with '/' or '*' (got 'api/x')"},
        {R"({"rules":[{"id":"a","match":{"path":""},"fault":{"kind":"reset"}}]})",
         "'path' is empty"},
        {R"({"rules":[{"id":"a","match":{"path":"/\t"},"fault":{"kind":"reset"}}]})",
         "'path' holds a control character"},
        {R"({"rules":[{"id":"a","match":{"method":"G-T"},"fault":{"kind":"reset"}}]})",
         "'method' must be letters only (got 'G-T')"},
        {R"({"rules":[{"id":"a","match":{"device":5},"fault":{"kind":"reset"}}]})",
         "'device' must be a string"},
        {R"({"rules":[{"id":"a","match":{"release":null},"fault":{"kind":"reset"}}]})",
         "'release' must be a string"},
        {R"({"rules":[{"id":"a","match":{"nth":0},"fault":{"kind":"reset"}}]})",
         "'nth' must be between 1 and"},
        {R"({"rules":[{"id":"a","match":{"every":0},"fault":{"kind":"reset"}}]})",
         "'every' must be between 1 and"},
        {R"({"rules":[{"id":"a","match":{"after":-2},"fault":{"kind":"reset"}}]})",
         "'after' must not be negative (got -2)"},
        {R"({"rules":[{"id":"a","match":{"nth":2,"every":2},"fault":{"kind":"reset"}}]})",
         "'nth' cannot be combined with 'after' or 'every'"},
        {R"({"rules":[{"id":"a","match":{"nth":2,"after":2},"fault":{"kind":"reset"}}]})",
         "'nth' cannot be combined with 'after' or 'every'"},
        {R"({"rules":[{"id":"a","match":{"probability":1.5},"fault":{"kind":"reset"}}]})",
         "'probability' must be between 0 and 1 (got 1.5)"},
        {R"({"rules":[{"id":"a","match":{"probability":-0.1},"fault":{"kind":"reset"}}]})",
         "'probability' must be between 0 and 1 (got -0.1)"},
        {R"({"rules":[{"id":"a","match":{"probability":"0.5"},"fault":{"kind":"reset"}}]})",
         "'probability' must be a number"},
        // faults
        {R"({"rules":[{"id":"a","fault":{}}]})", "rules[0] (a) fault: missing 'kind'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"explode"}}]})",
         "rules[0] (a) fault: unknown kind 'explode' (expected status, delay, stall, truncate, "
         "reset, corrupt, wrong_length, ignore_range, throttle, content_range, redirect, echo)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"none"}}]})", "unknown kind 'none'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"truncate","after_bytes":1,"ms":5}}]})",
         "rules[0] (a) fault (truncate): unknown key 'ms' (expected kind, after_bytes)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"reset","code":500}}]})",
         "fault (reset): unknown key 'code' (expected kind)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"status"}}]})", "fault (status): missing 'code'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"status","code":200}}]})",
         "fault (status): 'code' must be between 400 and 599 (got 200)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"status","code":600}}]})",
         "'code' must be between 400 and 599 (got 600)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"status","code":"503"}}]})",
         "'code' must be an integer"},
        {R"({"rules":[{"id":"a","fault":{"kind":"status","code":429,"retry_after":-1}}]})",
         "'retry_after' must not be negative (got -1)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"delay"}}]})", "fault (delay): missing 'ms'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"delay","ms":600001}}]})",
         "'ms' must be between 0 and 600000 (got 600001)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"stall","ms":5}}]})",
         "fault (stall): missing 'after_bytes'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"truncate","after_bytes":-1}}]})",
         "'after_bytes' must not be negative (got -1)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"corrupt","offset":-4,"length":1}}]})",
         "fault (corrupt): 'offset' must not be negative (got -4)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"corrupt","offset":4}}]})",
         "fault (corrupt): missing 'length'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"corrupt","offset":4,"length":0}}]})",
         "'length' must be between 1 and"},
        {R"({"rules":[{"id":"a","fault":{"kind":"wrong_length","delta":0}}]})",
         "fault (wrong_length): 'delta' must not be 0"},
        {R"({"rules":[{"id":"a","fault":{"kind":"wrong_length"}}]})",
         "fault (wrong_length): missing 'delta'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"throttle","bytes_per_s":0}}]})",
         "'bytes_per_s' must be between 1 and"},
        {R"({"rules":[{"id":"a","fault":{"kind":"ignore_range","x":1}}]})",
         "fault (ignore_range): unknown key 'x' (expected kind)"},
        // syntax
        {"{\"rules\":[}", "malformed JSON at line 1"},
        {R"({"rules":[],"rules":[]})", "malformed JSON"},
        {"", "empty plan"},
        {"# only a comment\n", "empty plan"},
        {"rules: [\n", "YAML line"},
        {"rules: []\nseed: 1\nseed: 2\n", "YAML line 3 column 1: duplicate key 'seed'"},
        {"rules: []\n---\nrules: []\n", "a plan is one YAML document"},
        {"rules: *nope\n", "unknown anchor 'nope'"},
        {"? [a]\n: 1\n", "mapping keys must be scalars"},
        {"rules: !!set {}\n", "unsupported tag"},
        {"seed: !!int abc\nrules: []\n", "does not fit its tag"},
        {"seed: 99999999999999999999\nrules: []\n", "integer out of range"},
        {"seed: '5'\nrules: []\n", "plan: 'seed' must be an integer"},
        {"rules:\n  - id: a\n    fault: {kind: status, code: \"503\"}\n",
         "'code' must be an integer"},
    };
    for (const BadCase &c : cases) {
        std::string reason = parse_fail(c.text);
        EXPECT_NE(reason.find(c.reason), std::string::npos)
            << "text: " << c.text << "\nwant: " << c.reason << "\ngot:  " << reason;
    }
}

TEST(FaultPlanValidate, TooLargeAndDeepInput)
{
    std::string big(OTASRV_FAULTPLAN_MAX + 1, ' ');
    EXPECT_NE(parse_fail(big, OTASRV_PLAN_AUTO, -EFBIG).find("too large"), std::string::npos);
    std::string deep = "rules: " + std::string(100, '[') + std::string(100, ']') + "\n";
    EXPECT_NE(parse_fail(deep).find("nested too deeply"), std::string::npos);
    ota_err err{};
    Plan *p = nullptr;
    EXPECT_EQ(otasrv_faultplan_parse(nullptr, 3, OTASRV_PLAN_AUTO, &p, &err), -EINVAL);
}

TEST(FaultPlanYaml, ScalarsResolveAsTheCoreSchema)
{
    // Quoted numbers stay strings; plain ones are numbers; anchors and
    // aliases share values; explicit tags are honoured.
    // 1e3 is a float in YAML: refused where an integer is due.
    std::string reason = parse_fail(R"(
rules:
  - {id: a, fault: {kind: corrupt, offset: 1e3, length: 1}}
)");
    EXPECT_NE(reason.find("'offset' must be an integer"), std::string::npos) << reason;

    PlanPtr q(parse_ok(R"(
seed: +12
rules:
  - id: "007"
    match: &m {path: "/x", probability: 1.0, after: 0o10}
    fault: &f {kind: status, code: 0x1F7}
  - id: dup
    match: *m
    fault: *f
  - id: !!str 12
    match: {path: /y, device: 'true', release: !!str 1.5}
    fault: {kind: reset}
)"));
    ASSERT_TRUE(q.get());
    std::string d = describe(q.get());
    EXPECT_NE(d.find(R"("seed":12)"), std::string::npos) << d;
    EXPECT_NE(d.find(R"({"id":"007","match":{"path":"/x","probability":1.0,"after":8},)"
                     R"("fault":{"kind":"status","code":503})"),
              std::string::npos)
        << d;
    EXPECT_NE(d.find(R"({"id":"dup","match":{"path":"/x","probability":1.0,"after":8},)"),
              std::string::npos)
        << d;
    EXPECT_NE(d.find(R"("id":"12","match":{"path":"/y","device":"true","release":"1.5"})"),
              std::string::npos)
        << d;
    EXPECT_EQ(hit(q.get(), req("/y", "GET", "true", "1.5")), "12");
}

TEST(FaultPlanYaml, TagsAndSpecialScalars)
{
    // null, booleans and explicit tags resolve to their JSON types, which the
    // validator then judges like JSON.
    const BadCase cases[] = {
        {"seed: ~\nrules: []\n", "'seed' must be an integer"},
        {"seed: null\nrules: []\n", "'seed' must be an integer"},
        {"seed:\nrules: []\n", "'seed' must be an integer"},
        {"seed: True\nrules: []\n", "'seed' must be an integer"},
        {"seed: false\nrules: []\n", "'seed' must be an integer"},
        {"seed: !!float 3\nrules: []\n", "'seed' must be an integer"},
        {"seed: !!bool true\nrules: []\n", "'seed' must be an integer"},
        {"seed: !!null ''\nrules: []\n", "'seed' must be an integer"},
        {"seed: ! 5\nrules: []\n", "'seed' must be an integer"},
        {"seed: !!bool 5\nrules: []\n", "does not fit its tag"},
        {"seed: !foo 5\nrules: []\n", "unsupported tag '!foo'"},
        {"a: &k x\n*k : 1\n", "mapping keys must be scalars"},
        {"rules: []\nseed: 1.5e2\n", "'seed' must be an integer"},
        {"rules: []\nseed: .5\n", "'seed' must be an integer"},
        {"rules: []\nseed: 1e\n", "'seed' must be an integer"}, // a string
    };
    for (const BadCase &c : cases) {
        std::string reason = parse_fail(c.text);
        EXPECT_NE(reason.find(c.reason), std::string::npos)
            << "text: " << c.text << "\nwant: " << c.reason << "\ngot:  " << reason;
    }
    PlanPtr p(parse_ok("seed: !!int '4'\nrules:\n  - id: a\n    match: {probability: !!float 0}\n"
                       "    fault: !!map {kind: reset}\n"));
    ASSERT_TRUE(p.get());
    EXPECT_EQ(describe(p.get()), R"({"seed":4,"rules":[{"id":"a","match":{"probability":0.0},)"
                                 R"("fault":{"kind":"reset"},"matched":0,"applied":0}]})");
}

TEST(FaultPlanMatch, PathIsAnFnmatchGlob)
{
    PlanPtr p(parse_ok(one_rule(R"({"path":"/api/v1/releases/*/payload"})")));
    ASSERT_TRUE(p.get());
    EXPECT_EQ(hit(p.get(), req("/api/v1/releases/r1/payload")), "r");
    EXPECT_EQ(hit(p.get(), req("/api/v1/releases/a/b/payload")), "r"); // '*' crosses '/'
    EXPECT_EQ(hit(p.get(), req("/api/v1/releases/r1/payload/x")), "");
    EXPECT_EQ(hit(p.get(), req("/api/v1/releases/r1")), "");
    EXPECT_EQ(hit(p.get(), req(nullptr)), "");

    PlanPtr q(parse_ok(one_rule(R"({"path":"/dl/v[0-9].?.bin"})")));
    ASSERT_TRUE(q.get());
    EXPECT_EQ(hit(q.get(), req("/dl/v2.x.bin")), "r");
    EXPECT_EQ(hit(q.get(), req("/dl/vx.x.bin")), "");

    PlanPtr exact(parse_ok(one_rule(R"({"path":"/exact"})")));
    ASSERT_TRUE(exact.get());
    EXPECT_EQ(hit(exact.get(), req("/exact")), "r");
    EXPECT_EQ(hit(exact.get(), req("/exact/")), "");
}

TEST(FaultPlanMatch, MethodDeviceRelease)
{
    PlanPtr m(parse_ok(one_rule(R"({"method":"head"})")));
    ASSERT_TRUE(m.get());
    EXPECT_EQ(hit(m.get(), req("/a", "HEAD")), "r");
    EXPECT_EQ(hit(m.get(), req("/a", "head")), "r");
    EXPECT_EQ(hit(m.get(), req("/a", "GET")), "");
    EXPECT_EQ(hit(m.get(), req("/a", nullptr)), "");

    PlanPtr d(parse_ok(one_rule(R"({"device":"dev-1"})")));
    ASSERT_TRUE(d.get());
    EXPECT_EQ(hit(d.get(), req("/a", "GET", "dev-1")), "r");
    EXPECT_EQ(hit(d.get(), req("/a", "GET", "dev-10")), "");
    EXPECT_EQ(hit(d.get(), req("/a", "GET", "DEV-1")), "");
    EXPECT_EQ(hit(d.get(), req("/a", "GET", nullptr)), "");

    PlanPtr r(parse_ok(one_rule(R"({"release":"v2.0.0"})")));
    ASSERT_TRUE(r.get());
    EXPECT_EQ(hit(r.get(), req("/a", "GET", "x", "v2.0.0")), "r");
    EXPECT_EQ(hit(r.get(), req("/a", "GET", "x", "v2.0.1")), "");
    EXPECT_EQ(hit(r.get(), req("/a", "GET", "x", nullptr)), "");

    // All filters together must all pass.
    PlanPtr all(
        parse_ok(one_rule(R"({"path":"/p/*","method":"GET","device":"d","release":"rel"})")));
    ASSERT_TRUE(all.get());
    EXPECT_EQ(hit(all.get(), req("/p/1", "GET", "d", "rel")), "r");
    EXPECT_EQ(hit(all.get(), req("/q/1", "GET", "d", "rel")), "");
    EXPECT_EQ(hit(all.get(), req("/p/1", "PUT", "d", "rel")), "");
    EXPECT_EQ(hit(all.get(), req("/p/1", "GET", "e", "rel")), "");
    EXPECT_EQ(hit(all.get(), req("/p/1", "GET", "d", "rel2")), "");
}

TEST(FaultPlanMatch, NthAfterEveryCount)
{
    PlanPtr nth(parse_ok(one_rule(R"({"nth":3})")));
    ASSERT_TRUE(nth.get());
    EXPECT_EQ(pattern(nth.get(), 8), "..x.....");

    PlanPtr after(parse_ok(one_rule(R"({"after":2})")));
    ASSERT_TRUE(after.get());
    EXPECT_EQ(pattern(after.get(), 6), "..xxxx");

    PlanPtr every(parse_ok(one_rule(R"({"every":3})")));
    ASSERT_TRUE(every.get());
    EXPECT_EQ(pattern(every.get(), 9), "..x..x..x");

    PlanPtr both(parse_ok(one_rule(R"({"after":4,"every":2})")));
    ASSERT_TRUE(both.get());
    EXPECT_EQ(pattern(both.get(), 10), ".....x.x.x");

    PlanPtr count(parse_ok(one_rule(R"({"after":1})", R"({"kind":"reset"})", R"(,"count":2)")));
    ASSERT_TRUE(count.get());
    EXPECT_EQ(pattern(count.get(), 6), ".xx...");

    // Only requests that pass the filters are numbered.
    PlanPtr filt(parse_ok(one_rule(R"({"path":"/a","nth":2})")));
    ASSERT_TRUE(filt.get());
    EXPECT_EQ(hit(filt.get(), req("/b")), "");
    EXPECT_EQ(hit(filt.get(), req("/a")), "");
    EXPECT_EQ(hit(filt.get(), req("/b")), "");
    EXPECT_EQ(hit(filt.get(), req("/a")), "r");
    EXPECT_EQ(hit(filt.get(), req("/a")), "");

    // The decision reports k and the application number.
    PlanPtr ev(parse_ok(one_rule(R"({"every":2})")));
    ASSERT_TRUE(ev.get());
    otasrv_fault_decision d{};
    otasrv_request_info r = req("/a");
    EXPECT_EQ(otasrv_faultplan_match(ev.get(), &r, 1, &d), 0);
    ASSERT_EQ(otasrv_faultplan_match(ev.get(), &r, 2, &d), 1);
    EXPECT_EQ(d.match, 2u);
    EXPECT_EQ(d.applied, 1u);
    EXPECT_EQ(otasrv_faultplan_match(ev.get(), &r, 3, &d), 0);
    ASSERT_EQ(otasrv_faultplan_match(ev.get(), &r, 4, &d), 1);
    EXPECT_EQ(d.match, 4u);
    EXPECT_EQ(d.applied, 2u);
}

TEST(FaultPlanMatch, FirstMatchWinsAndLaterRulesStillCount)
{
    PlanPtr p(parse_ok(R"({"rules":[
      {"id":"first","match":{"path":"/a","nth":2},"fault":{"kind":"reset"}},
      {"id":"second","match":{"path":"/a"},"fault":{"kind":"ignore_range"},"count":3},
      {"id":"third","match":{"path":"/a","nth":2},"fault":{"kind":"reset"}},
      {"id":"fourth","match":{"path":"/a","nth":5},"fault":{"kind":"reset"}}
    ]})"));
    ASSERT_TRUE(p.get());
    // 1: second (first waits for k=2). 2: first wins; second's budget is not
    // spent. 3, 4: second. 5: fourth (its k=5 although others took 1..4).
    // third's nth=2 was request 2, which first took: third never fires.
    EXPECT_EQ(hit(p.get(), req("/a")), "second");
    EXPECT_EQ(hit(p.get(), req("/a")), "first");
    EXPECT_EQ(hit(p.get(), req("/a")), "second");
    EXPECT_EQ(hit(p.get(), req("/a")), "second");
    EXPECT_EQ(hit(p.get(), req("/a")), "fourth");
    EXPECT_EQ(hit(p.get(), req("/a")), "");
    std::string d = describe(p.get());
    EXPECT_NE(d.find(R"("id":"first",)"), std::string::npos);
    EXPECT_NE(d.find(R"("count":3,"matched":6,"applied":3})"), std::string::npos) << d;
    EXPECT_NE(d.find(R"({"id":"third","match":{"path":"/a","nth":2},"fault":{"kind":"reset"},)"
                     R"("matched":6,"applied":0})"),
              std::string::npos)
        << d;
}

std::string prob_plan(double p, uint64_t seed, const std::string &extra_rule = "")
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             R"({"seed":%llu,"rules":[%s{"id":"p","match":{"path":"/a","probability":%g},)"
             R"("fault":{"kind":"reset"}}]})",
             (unsigned long long)seed, extra_rule.c_str(), p);
    return buf;
}

TEST(FaultPlanMatch, ProbabilityIsSeededAndReproducible)
{
    const int n = 10000;
    for (double prob : {0.01, 0.1, 0.3, 0.5, 0.9}) {
        PlanPtr a(parse_ok(prob_plan(prob, 1234)));
        PlanPtr b(parse_ok(prob_plan(prob, 1234)));
        ASSERT_TRUE(a.get() && b.get());
        std::string pa = pattern(a.get(), n), pb = pattern(b.get(), n);
        EXPECT_EQ(pa, pb);
        double frac = (double)std::count(pa.begin(), pa.end(), 'x') / n;
        EXPECT_NEAR(frac, prob, 0.02) << prob;

        // Another seed gives another sequence with the same rate.
        PlanPtr c(parse_ok(prob_plan(prob, 1235)));
        ASSERT_TRUE(c.get());
        std::string pc = pattern(c.get(), n);
        EXPECT_NE(pa, pc);
        EXPECT_NEAR((double)std::count(pc.begin(), pc.end(), 'x') / n, prob, 0.02);
    }
    PlanPtr zero(parse_ok(prob_plan(0, 5)));
    PlanPtr one(parse_ok(prob_plan(1, 5)));
    ASSERT_TRUE(zero.get() && one.get());
    EXPECT_EQ(pattern(zero.get(), 1000), std::string(1000, '.'));
    EXPECT_EQ(pattern(one.get(), 1000), std::string(1000, 'x'));
}

TEST(FaultPlanMatch, DrawsDoNotDependOnOtherRules)
{
    // An earlier rule that takes other paths (and one that takes some of the
    // same requests) changes nothing in the draws of rule p.
    PlanPtr alone(parse_ok(prob_plan(0.4, 77)));
    PlanPtr with(parse_ok(prob_plan(
        0.4, 77,
        R"({"id":"other","match":{"path":"/b","probability":0.5},"fault":{"kind":"reset"}},)")));
    ASSERT_TRUE(alone.get() && with.get());
    std::string a, w;
    for (int i = 0; i < 2000; i++) {
        a += hit(alone.get(), req("/a")).empty() ? '.' : 'x';
        hit(with.get(), req("/b"));
        w += hit(with.get(), req("/a")).empty() ? '.' : 'x';
    }
    EXPECT_EQ(a, w);

    // Rule order does not matter to a rule's own draws either: the hash is
    // keyed by the rule id, not its index.
    PlanPtr first(parse_ok(
        R"({"seed":3,"rules":[{"id":"x","match":{"path":"/x","probability":0.5},"fault":{"kind":"reset"}},)"
        R"({"id":"y","match":{"path":"/y","probability":0.5},"fault":{"kind":"reset"}}]})"));
    PlanPtr second(parse_ok(
        R"({"seed":3,"rules":[{"id":"y","match":{"path":"/y","probability":0.5},"fault":{"kind":"reset"}},)"
        R"({"id":"x","match":{"path":"/x","probability":0.5},"fault":{"kind":"reset"}}]})"));
    ASSERT_TRUE(first.get() && second.get());
    EXPECT_EQ(pattern(first.get(), 500, "/x"), pattern(second.get(), 500, "/x"));
}

TEST(FaultPlanMatch, ProbabilityWithCountStopsAtTheBudget)
{
    PlanPtr p(parse_ok(R"({"seed":9,"rules":[{"id":"p","match":{"probability":0.2},)"
                       R"("fault":{"kind":"reset"},"count":25}]})"));
    ASSERT_TRUE(p.get());
    std::string s = pattern(p.get(), 5000);
    EXPECT_EQ(std::count(s.begin(), s.end(), 'x'), 25);
}

// ---- body filter and head changes -----------------------------------------

otasrv_fault_decision decision(const std::string &fault_json)
{
    PlanPtr p(parse_ok(one_rule("{}", fault_json)));
    otasrv_fault_decision d{};
    otasrv_request_info r = req("/a");
    EXPECT_TRUE(p.get());
    if (p.get())
        EXPECT_EQ(otasrv_faultplan_match(p.get(), &r, 1, &d), 1);
    return d;
}

std::vector<unsigned char> body(size_t n)
{
    std::vector<unsigned char> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (unsigned char)(i * 7 + 3);
    return v;
}

// Streams a body of n bytes starting at resource offset start through the
// filter in chunks of chunk bytes; returns what goes on the wire and the
// action that ended it.
std::vector<unsigned char> stream(const otasrv_fault_decision *d, size_t n, uint64_t start,
                                  size_t chunk, otasrv_chunk_action *ret_end)
{
    std::vector<unsigned char> all = body(start + n);
    std::vector<unsigned char> out;
    size_t off = 0;
    *ret_end = OTASRV_CHUNK_SEND;
    while (off < n) {
        size_t len = std::min(chunk, n - off);
        std::vector<unsigned char> buf(all.begin() + start + off, all.begin() + start + off + len);
        size_t send = 0;
        otasrv_chunk_action a = otasrv_fault_apply_chunk(d, start, off, buf.data(), len, &send);
        EXPECT_LE(send, len);
        out.insert(out.end(), buf.begin(), buf.begin() + send);
        off += send;
        if (a != OTASRV_CHUNK_SEND) {
            *ret_end = a;
            break;
        }
        if (send == 0) {
            ADD_FAILURE() << "SEND with 0 bytes";
            break;
        }
    }
    return out;
}

TEST(FaultPlanBody, CorruptFlipsTheRangeAcrossChunks)
{
    otasrv_fault_decision d = decision(R"({"kind":"corrupt","offset":1000,"length":100})");
    ASSERT_EQ(d.fault.kind, OTASRV_FAULT_CORRUPT);
    for (uint64_t start : {0u, 500u, 1050u, 1100u, 3000u}) {
        const size_t n = 4096 - (size_t)start;
        std::vector<unsigned char> want = body(4096);
        for (size_t i = 1000; i < 1100; i++)
            want[i] ^= 0xFF;
        want.erase(want.begin(), want.begin() + start);
        for (size_t chunk : {1u, 7u, 64u, 999u, 1000u, 1001u, 8192u}) {
            otasrv_chunk_action end;
            std::vector<unsigned char> got = stream(&d, n, start, chunk, &end);
            EXPECT_EQ(end, OTASRV_CHUNK_SEND);
            EXPECT_EQ(got, want) << "start " << start << " chunk " << chunk;
        }
    }
}

TEST(FaultPlanBody, TruncateAndStallCutAtAfterBytes)
{
    for (const char *kind : {"truncate", "stall"}) {
        for (uint64_t after : {0u, 1u, 100u, 4095u, 4096u, 5000u}) {
            otasrv_fault_decision d = decision(std::string(R"({"kind":")") + kind +
                                               R"(","after_bytes":)" + std::to_string(after) + "}");
            otasrv_chunk_action want_end =
                !strcmp(kind, "truncate") ? OTASRV_CHUNK_CLOSE : OTASRV_CHUNK_STALL;
            for (size_t chunk : {1u, 33u, 100u, 4096u}) {
                // after_bytes counts this response's body, whatever the start.
                for (uint64_t start : {0u, 777u}) {
                    otasrv_chunk_action end;
                    std::vector<unsigned char> got = stream(&d, 4096, start, chunk, &end);
                    std::vector<unsigned char> all = body(start + 4096);
                    size_t keep = (size_t)std::min<uint64_t>(after, 4096);
                    std::vector<unsigned char> want(all.begin() + start,
                                                    all.begin() + start + keep);
                    EXPECT_EQ(got, want) << kind << " after " << after << " chunk " << chunk;
                    // A body of exactly after_bytes (or fewer) is sent whole.
                    EXPECT_EQ(end, after >= 4096 ? OTASRV_CHUNK_SEND : want_end)
                        << kind << " after " << after << " chunk " << chunk;
                }
            }
        }
    }
}

TEST(FaultPlanBody, ChunkCutPoints)
{
    otasrv_fault_decision d = decision(R"({"kind":"truncate","after_bytes":10})");
    unsigned char buf[16] = {0};
    size_t n = 99;
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 0, buf, 10, &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 10u);
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 4, buf, 16, &n), OTASRV_CHUNK_CLOSE);
    EXPECT_EQ(n, 6u);
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 10, buf, 16, &n), OTASRV_CHUNK_CLOSE);
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 20, buf, 16, &n), OTASRV_CHUNK_CLOSE);
    EXPECT_EQ(n, 0u);
    // No decision, or a fault that does not touch bytes: send as is.
    unsigned char copy[16];
    memcpy(copy, buf, sizeof(buf));
    EXPECT_EQ(otasrv_fault_apply_chunk(nullptr, 0, 0, buf, 16, &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 16u);
    otasrv_fault_decision s = decision(R"({"kind":"status","code":500})");
    EXPECT_EQ(otasrv_fault_apply_chunk(&s, 0, 0, buf, 16, &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 16u);
    EXPECT_EQ(0, memcmp(copy, buf, sizeof(buf)));
}

TEST(FaultPlanBody, ThrottleCapsChunksAndPaces)
{
    otasrv_fault_decision d = decision(R"({"kind":"throttle","bytes_per_s":1000})");
    std::vector<unsigned char> buf(4096);
    size_t n = 0;
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 0, buf.data(), buf.size(), &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 100u);
    EXPECT_EQ(otasrv_fault_apply_chunk(&d, 0, 0, buf.data(), 50, &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 50u);
    otasrv_fault_decision slow = decision(R"({"kind":"throttle","bytes_per_s":3})");
    EXPECT_EQ(otasrv_fault_apply_chunk(&slow, 0, 0, buf.data(), buf.size(), &n), OTASRV_CHUNK_SEND);
    EXPECT_EQ(n, 1u);

    // 1000 B/s: 100 bytes need 100 ms from the start; 2500 bytes 2.5 s.
    EXPECT_EQ(otasrv_fault_pace_ms(&d, 100, 0), 100u);
    EXPECT_EQ(otasrv_fault_pace_ms(&d, 100, 40), 60u);
    EXPECT_EQ(otasrv_fault_pace_ms(&d, 100, 100), 0u);
    EXPECT_EQ(otasrv_fault_pace_ms(&d, 100, 5000), 0u);
    EXPECT_EQ(otasrv_fault_pace_ms(&d, 2500, 1000), 1500u);
    EXPECT_EQ(otasrv_fault_pace_ms(&slow, 1, 0), 334u); // rounded up
    EXPECT_EQ(otasrv_fault_pace_ms(&slow, 3, 0), 1000u);
    EXPECT_EQ(otasrv_fault_pace_ms(nullptr, 100, 0), 0u);
    otasrv_fault_decision s = decision(R"({"kind":"delay","ms":5})");
    EXPECT_EQ(otasrv_fault_pace_ms(&s, 100, 0), 0u);
}

TEST(FaultPlanHead, ResponseChanges)
{
    otasrv_fault_response r;
    otasrv_fault_headers(nullptr, &r);
    EXPECT_EQ(r.delay_ms, 0u);
    EXPECT_EQ(r.reset, 0);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.retry_after, -1);
    EXPECT_EQ(r.ignore_range, 0);
    EXPECT_EQ(r.length_delta, 0);

    otasrv_fault_decision d = decision(R"({"kind":"status","code":429,"retry_after":7})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(r.retry_after, 7);
    d = decision(R"({"kind":"status","code":503})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.retry_after, -1);
    d = decision(R"({"kind":"delay","ms":1500})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.delay_ms, 1500u);
    EXPECT_EQ(r.status, 0);
    d = decision(R"({"kind":"reset"})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.reset, 1);
    d = decision(R"({"kind":"ignore_range"})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.ignore_range, 1);
    d = decision(R"({"kind":"wrong_length","delta":-3})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.length_delta, -3);
    // Body faults change nothing in the head.
    d = decision(R"({"kind":"truncate","after_bytes":3})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.length_delta, 0);
}

TEST(FaultPlanHead, ContentLength)
{
    EXPECT_EQ(otasrv_fault_content_length(nullptr, 100), 100u);
    otasrv_fault_decision t = decision(R"({"kind":"truncate","after_bytes":3})");
    EXPECT_EQ(otasrv_fault_content_length(&t, 100), 100u);
    otasrv_fault_decision plus = decision(R"({"kind":"wrong_length","delta":25})");
    EXPECT_EQ(otasrv_fault_content_length(&plus, 100), 125u);
    EXPECT_EQ(otasrv_fault_content_length(&plus, UINT64_MAX - 1), UINT64_MAX);
    otasrv_fault_decision minus = decision(R"({"kind":"wrong_length","delta":-25})");
    EXPECT_EQ(otasrv_fault_content_length(&minus, 100), 75u);
    EXPECT_EQ(otasrv_fault_content_length(&minus, 25), 0u);
    EXPECT_EQ(otasrv_fault_content_length(&minus, 10), 0u);
}

TEST(FaultPlanHead, KindNames)
{
    EXPECT_STREQ(otasrv_fault_kind_name(OTASRV_FAULT_NONE), "none");
    EXPECT_STREQ(otasrv_fault_kind_name(OTASRV_FAULT_WRONG_LENGTH), "wrong_length");
    EXPECT_STREQ(otasrv_fault_kind_name(OTASRV_FAULT_THROTTLE), "throttle");
    EXPECT_STREQ(otasrv_fault_kind_name(OTASRV_FAULT_KIND_MAX), "?");
    for (int k = 0; k < OTASRV_FAULT_KIND_MAX; k++)
        EXPECT_STRNE(otasrv_fault_kind_name((otasrv_fault_kind)k), "?");
}

// ---- the applied-fault log ---------------------------------------------------

std::string log_line(const std::string &fault, const otasrv_request_info &r, uint64_t id)
{
    otasrv_fault_decision d = decision(fault);
    char *s = nullptr;
    EXPECT_EQ(otasrv_faultplan_log_json(&d, id, &r, &s), 0);
    std::string out = s ? s : "";
    free(s);
    return out;
}

TEST(FaultPlanLog, LineFormat)
{
    otasrv_request_info r =
        req("/api/v1/releases/rel/payload", "GET", "dev-1", "rel", 1795000000123ull);
    EXPECT_EQ(log_line(R"({"kind":"status","code":429,"retry_after":3})", r, 42),
              R"({"ts":1795000000123,"request_id":42,"rule":"r","kind":"status","match":1,)"
              R"("method":"GET","path":"/api/v1/releases/rel/payload","device":"dev-1",)"
              R"("release":"rel","code":429,"retry_after":3})");
    otasrv_request_info anon = req("/x", "HEAD", nullptr, nullptr, 5);
    EXPECT_EQ(log_line(R"({"kind":"status","code":500})", anon, 1),
              R"({"ts":5,"request_id":1,"rule":"r","kind":"status","match":1,"method":"HEAD",)"
              R"("path":"/x","device":null,"release":null,"code":500})");
    const std::string tail = R"("path":"/x","device":null,"release":null)";
    EXPECT_EQ(log_line(R"({"kind":"delay","ms":9})", anon, 1), R"({"ts":5,"request_id":1,)"
                                                               R"("rule":"r","kind":"delay",)"
                                                               R"("match":1,"method":"HEAD",)" +
                                                                   tail + R"(,"ms":9})");
    EXPECT_NE(log_line(R"({"kind":"stall","after_bytes":8,"ms":9})", anon, 1)
                  .find(tail + R"(,"after_bytes":8,"ms":9})"),
              std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"truncate","after_bytes":8})", anon, 1)
                  .find(tail + R"(,"after_bytes":8})"),
              std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"reset"})", anon, 1).find(R"("kind":"reset",)"),
              std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"reset"})", anon, 1).find(tail + "}"), std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"corrupt","offset":3,"length":4})", anon, 1)
                  .find(tail + R"(,"offset":3,"length":4})"),
              std::string::npos);
    EXPECT_NE(
        log_line(R"({"kind":"wrong_length","delta":-2})", anon, 1).find(tail + R"(,"delta":-2})"),
        std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"ignore_range"})", anon, 1).find(tail + "}"), std::string::npos);
    EXPECT_NE(log_line(R"({"kind":"throttle","bytes_per_s":10})", anon, 1)
                  .find(tail + R"(,"bytes_per_s":10})"),
              std::string::npos);

    // Not UTF-8 (a raw request path): still one valid JSON line.
    otasrv_request_info odd = req("/bad\xff\xfe", "GET", nullptr, nullptr, 5);
    std::string line = log_line(R"({"kind":"reset"})", odd, 1);
    EXPECT_NE(line.find(R"("path":"/bad??")"), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos);
}

std::string log_list(Plan *p, uint64_t *total)
{
    ota_err err{};
    json_t *j = nullptr;
    EXPECT_EQ(otasrv_faultplan_log_list(p, &j, total, &err), 0);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s ? s : "";
    free(s);
    json_decref(j);
    return out;
}

TEST(FaultPlanLog, RingListsAppliedFaultsOldestFirst)
{
    PlanPtr p(parse_ok(R"({"rules":[{"id":"even","match":{"path":"/a","every":2},)"
                       R"("fault":{"kind":"status","code":503}}]})"));
    ASSERT_TRUE(p.get());
    uint64_t total = 99;
    EXPECT_EQ(log_list(p.get(), &total), "[]");
    EXPECT_EQ(total, 0u);
    for (uint64_t id = 1; id <= 4; id++) {
        otasrv_request_info r = req("/a", "GET", "d", nullptr, 100 + id);
        otasrv_fault_decision d{};
        ota_ignore(otasrv_faultplan_match(p.get(), &r, id, &d));
    }
    EXPECT_EQ(log_list(p.get(), &total),
              R"([{"ts":102,"request_id":2,"rule":"even","kind":"status","match":2,)"
              R"("method":"GET","path":"/a","device":"d","release":null,"code":503},)"
              R"({"ts":104,"request_id":4,"rule":"even","kind":"status","match":4,)"
              R"("method":"GET","path":"/a","device":"d","release":null,"code":503}])");
    EXPECT_EQ(total, 2u);

    // Past the ring's capacity the oldest fall out; the total keeps counting.
    PlanPtr all(parse_ok(one_rule("{}")));
    ASSERT_TRUE(all.get());
    const uint64_t n = OTASRV_FAULTLOG_CAP + 10;
    for (uint64_t id = 1; id <= n; id++) {
        otasrv_request_info r = req("/a");
        otasrv_fault_decision d{};
        ASSERT_EQ(otasrv_faultplan_match(all.get(), &r, id, &d), 1);
    }
    ota_err err{};
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_faultplan_log_list(all.get(), &j, &total, &err), 0);
    EXPECT_EQ(total, n);
    ASSERT_EQ(json_array_size(j), (size_t)OTASRV_FAULTLOG_CAP);
    EXPECT_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "request_id")), 11);
    EXPECT_EQ(json_integer_value(
                  json_object_get(json_array_get(j, OTASRV_FAULTLOG_CAP - 1), "request_id")),
              (json_int_t)n);
    json_decref(j);
    ASSERT_EQ(otasrv_faultplan_log_list(all.get(), &j, nullptr, &err), 0);
    json_decref(j);

    otasrv_faultplan_log_clear(all.get());
    EXPECT_EQ(log_list(all.get(), &total), "[]");
    EXPECT_EQ(total, 0u);
    otasrv_faultplan_log_clear(nullptr);
}

TEST(FaultPlanLog, LongFieldsAreCutInTheRing)
{
    PlanPtr p(parse_ok(one_rule("{}")));
    ASSERT_TRUE(p.get());
    std::string path = "/" + std::string(1000, 'p');
    otasrv_request_info r = req(path.c_str(), "GET", nullptr, nullptr, 1);
    otasrv_fault_decision d{};
    ASSERT_EQ(otasrv_faultplan_match(p.get(), &r, 1, &d), 1);
    std::string l = log_list(p.get(), nullptr);
    EXPECT_NE(l.find("\"/" + std::string(254, 'p') + "\""), std::string::npos);
}

// ---- swap -----------------------------------------------------------------

TEST(FaultPlanSwap, ReplacesRulesKeepsTheLog)
{
    Plan *live_raw = nullptr;
    ota_err err{};
    ASSERT_EQ(otasrv_faultplan_new(&live_raw, &err), 0);
    PlanPtr live(live_raw);
    EXPECT_EQ(hit(live.get(), req("/a"), 1), "");

    Plan *next = parse_ok(R"({"seed":5,"rules":[{"id":"one","match":{"nth":2},)"
                          R"("fault":{"kind":"reset"}}]})");
    ASSERT_TRUE(next);
    otasrv_faultplan_swap(live.get(), next);
    otasrv_faultplan_free(next); // holds the old (empty) rule set now
    // Fresh counters: the request before the swap does not count.
    EXPECT_EQ(hit(live.get(), req("/a"), 2), "");
    EXPECT_EQ(hit(live.get(), req("/a"), 3), "one");
    EXPECT_NE(describe(live.get()).find(R"("seed":5)"), std::string::npos);

    Plan *again = parse_ok(R"({"seed":6,"rules":[{"id":"two","fault":{"kind":"reset"}}]})");
    ASSERT_TRUE(again);
    otasrv_faultplan_swap(live.get(), again);
    EXPECT_NE(describe(again).find(R"("id":"one")"), std::string::npos);
    EXPECT_NE(describe(again).find(R"("matched":2,"applied":1)"), std::string::npos);
    otasrv_faultplan_free(again);
    EXPECT_EQ(hit(live.get(), req("/a"), 4), "two");

    uint64_t total = 0;
    std::string l = log_list(live.get(), &total);
    EXPECT_EQ(total, 2u);
    EXPECT_NE(l.find(R"("request_id":3,"rule":"one")"), std::string::npos) << l;
    EXPECT_NE(l.find(R"("request_id":4,"rule":"two")"), std::string::npos) << l;

    otasrv_faultplan_swap(live.get(), live.get()); // no-op
    otasrv_faultplan_swap(nullptr, nullptr);
    otasrv_faultplan_free(nullptr);
}

// ---- threads --------------------------------------------------------------

const char *kThreadPlan = R"({"seed":11,"rules":[
  {"id":"budget","match":{"path":"/a"},"fault":{"kind":"reset"},"count":100},
  {"id":"coin","match":{"path":"/b","probability":0.3},"fault":{"kind":"reset"}},
  {"id":"tenth","match":{"path":"/b","every":10},"fault":{"kind":"reset"}}
]})";

TEST(FaultPlanThreads, CountsStayExactUnderConcurrency)
{
    PlanPtr p(parse_ok(kThreadPlan));
    ASSERT_TRUE(p.get());
    const int threads = 8, per = 2000;
    std::vector<int> applied_a(threads, 0), applied_b(threads, 0);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++)
        ts.emplace_back([&, t] {
            for (int i = 0; i < per; i++) {
                otasrv_request_info r = req(i % 2 ? "/b" : "/a");
                otasrv_fault_decision d{};
                if (otasrv_faultplan_match(p.get(), &r, (uint64_t)(t * per + i), &d) == 1)
                    (i % 2 ? applied_b : applied_a)[t]++;
            }
        });
    for (auto &t : ts)
        t.join();
    int a = 0, b = 0;
    for (int t = 0; t < threads; t++)
        a += applied_a[t], b += applied_b[t];
    EXPECT_EQ(a, 100);

    // The same requests one at a time give the same number of /b faults:
    // the outcome of each rule's k-th match is fixed, whatever the thread.
    PlanPtr seq(parse_ok(kThreadPlan));
    ASSERT_TRUE(seq.get());
    std::string s = pattern(seq.get(), threads * per / 2, "/b");
    EXPECT_EQ(b, (int)std::count(s.begin(), s.end(), 'x'));

    std::string d = describe(p.get());
    EXPECT_NE(d.find(R"("count":100,"matched":8000,"applied":100})"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("id":"tenth","match":{"path":"/b","every":10},)"
                     R"("fault":{"kind":"reset"},"matched":8000,)"),
              std::string::npos)
        << d;
    uint64_t total = 0;
    ota_err err{};
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_faultplan_log_list(p.get(), &j, &total, &err), 0);
    json_decref(j);
    EXPECT_EQ(total, (uint64_t)(a + b));
}

TEST(FaultPlanThreads, SwapWhileMatching)
{
    Plan *raw = nullptr;
    ota_err err{};
    ASSERT_EQ(otasrv_faultplan_new(&raw, &err), 0);
    PlanPtr live(raw);
    std::atomic<bool> stop{false};
    std::atomic<long> fired{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
            uint64_t id = (uint64_t)t << 32;
            while (!stop.load()) {
                otasrv_request_info r = req("/a", "GET", "dev", nullptr, 1);
                otasrv_fault_decision d{};
                if (otasrv_faultplan_match(live.get(), &r, id++, &d) == 1) {
                    // A decision is a whole copy of one plan's rule.
                    EXPECT_TRUE(strcmp(d.rule, "s") == 0 || strcmp(d.rule, "t") == 0);
                    fired++;
                }
                std::this_thread::yield();
            }
        });
    for (int i = 0; i < 50; i++) {
        Plan *next = parse_ok(i % 2 ? R"({"rules":[{"id":"s","fault":{"kind":"reset"}}]})"
                                    : R"({"rules":[{"id":"t","match":{"every":2},)"
                                      R"("fault":{"kind":"truncate","after_bytes":1}}]})");
        ASSERT_TRUE(next);
        otasrv_faultplan_swap(live.get(), next);
        otasrv_faultplan_free(next);
        json_t *j = nullptr;
        ASSERT_EQ(otasrv_faultplan_log_list(live.get(), &j, nullptr, &err), 0);
        json_decref(j);
    }
    stop = true;
    for (auto &t : ts)
        t.join();
    uint64_t total = 0;
    json_t *j = nullptr;
    ASSERT_EQ(otasrv_faultplan_log_list(live.get(), &j, &total, &err), 0);
    json_decref(j);
    EXPECT_EQ(total, (uint64_t)fired.load());
}

// ---- content_range, redirect, echo (for tests of a client) ----------------

TEST(FaultPlanClientKinds, ParseAndHead)
{
    otasrv_fault_response r;
    otasrv_fault_decision d = decision(R"({"kind":"content_range","total_delta":1000})");
    EXPECT_EQ(d.fault.kind, OTASRV_FAULT_CONTENT_RANGE);
    EXPECT_EQ(d.fault.delta, 1000);
    EXPECT_STREQ(d.fault.text, "");
    d = decision(R"({"kind":"content_range","text":"bytes garbage/??"})");
    EXPECT_STREQ(d.fault.text, "bytes garbage/??");
    otasrv_fault_headers(&d, &r); // the head is files.c's: nothing here
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.redirect, 0);

    d = decision(R"({"kind":"redirect","location":"/elsewhere"})");
    EXPECT_EQ(d.fault.code, 302);
    EXPECT_STREQ(d.fault.text, "/elsewhere");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.redirect, 302);
    EXPECT_EQ(r.echo, 0);
    d = decision(R"({"kind":"redirect","location":"https://h.example/x","code":307})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.redirect, 307);

    d = decision(R"({"kind":"echo"})");
    otasrv_fault_headers(&d, &r);
    EXPECT_EQ(r.echo, 1);
    EXPECT_EQ(r.redirect, 0);
    EXPECT_EQ(r.status, 0);
}

TEST(FaultPlanClientKinds, BadParameters)
{
    const BadCase cases[] = {
        {R"({"rules":[{"id":"a","fault":{"kind":"content_range"}}]})",
         "rules[0] (a) fault (content_range): needs exactly one of 'total_delta' and 'text'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"content_range","total_delta":1,"text":"x"}}]})",
         "needs exactly one of 'total_delta' and 'text'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"content_range","total_delta":0}}]})",
         "(content_range): 'total_delta' must not be 0"},
        {R"({"rules":[{"id":"a","fault":{"kind":"content_range","text":"a\r\nX: 1"}}]})",
         "'text' holds a control character"},
        {R"({"rules":[{"id":"a","fault":{"kind":"redirect"}}]})",
         "rules[0] (a) fault (redirect): missing 'location'"},
        {R"({"rules":[{"id":"a","fault":{"kind":"redirect","location":"ftp://x"}}]})",
         "'location' must start with '/', 'http://' or 'https://' (got 'ftp://x')"},
        {R"({"rules":[{"id":"a","fault":{"kind":"redirect","location":"/x","code":304}}]})",
         "'code' must be 301, 302, 303, 307 or 308 (got 304)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"redirect","location":"/x","code":200}}]})",
         "'code' must be between 301 and 308 (got 200)"},
        {R"({"rules":[{"id":"a","fault":{"kind":"echo","code":200}}]})",
         "rules[0] (a) fault (echo): unknown key 'code' (expected kind)"},
    };
    for (const BadCase &c : cases) {
        std::string reason = parse_fail(c.text);
        EXPECT_NE(reason.find(c.reason), std::string::npos) << c.text << "\n -> " << reason;
    }
}

TEST(FaultPlanClientKinds, ContentRangeOfA206)
{
    char cr[OTASRV_FAULT_TEXT_MAX];
    otasrv_fault_content_range(nullptr, 100, 900, 1000, cr, sizeof(cr));
    EXPECT_STREQ(cr, "bytes 100-999/1000");
    otasrv_fault_decision t = decision(R"({"kind":"truncate","after_bytes":3})");
    otasrv_fault_content_range(&t, 100, 900, 1000, cr, sizeof(cr));
    EXPECT_STREQ(cr, "bytes 100-999/1000");
    otasrv_fault_decision plus = decision(R"({"kind":"content_range","total_delta":1000})");
    otasrv_fault_content_range(&plus, 100, 900, 1000, cr, sizeof(cr));
    EXPECT_STREQ(cr, "bytes 100-999/2000");
    otasrv_fault_decision minus = decision(R"({"kind":"content_range","total_delta":-5000})");
    otasrv_fault_content_range(&minus, 100, 900, 1000, cr, sizeof(cr));
    EXPECT_STREQ(cr, "bytes 100-999/0");
    otasrv_fault_decision text = decision(R"({"kind":"content_range","text":"bytes garbage/??"})");
    otasrv_fault_content_range(&text, 100, 900, 1000, cr, sizeof(cr));
    EXPECT_STREQ(cr, "bytes garbage/??");
}

TEST(FaultPlanClientKinds, LogLines)
{
    otasrv_request_info r = req("/a");
    std::string l = log_line(R"({"kind":"content_range","total_delta":-7})", r, 1);
    EXPECT_NE(l.find(R"("kind":"content_range")"), std::string::npos) << l;
    EXPECT_NE(l.find(R"("total_delta":-7)"), std::string::npos) << l;
    l = log_line(R"({"kind":"content_range","text":"bytes x"})", r, 1);
    EXPECT_NE(l.find(R"("text":"bytes x")"), std::string::npos) << l;
    l = log_line(R"({"kind":"redirect","location":"/b","code":301})", r, 1);
    EXPECT_NE(l.find(R"("location":"/b","code":301)"), std::string::npos) << l;
    l = log_line(R"({"kind":"echo"})", r, 1);
    EXPECT_NE(l.find(R"("kind":"echo")"), std::string::npos) << l;
}

// ---- shipped examples -----------------------------------------------------

TEST(FaultPlanExamples, AllExamplesParse)
{
    const char *names[] = {"flaky-downloads.yaml", "bad-server.json", "none.yaml"};
    for (const char *name : names) {
        std::string path = std::string(OTA_SOURCE_DIR) + "/server-mock/faults/examples/" + name;
        std::ifstream f(path);
        ASSERT_TRUE(f) << path;
        std::stringstream ss;
        ss << f.rdbuf();
        PlanPtr p(parse_ok(ss.str(), otasrv_faultplan_format_from_name(name)));
        EXPECT_TRUE(p.get()) << name;
    }
}

} // namespace
