// docs/protocol.md in code: bodies built and answers parsed.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <jansson.h>

#include "ota/protocol.h"

static std::string take(char *s)
{
    std::string out = s;
    free(s);
    return out;
}

TEST(Protocol, ContentRangeGood)
{
    uint64_t a, b, t;
    ASSERT_EQ(ota_proto_parse_content_range("bytes 0-99/100", &a, &b, &t), 0);
    EXPECT_EQ(a, 0u);
    EXPECT_EQ(b, 99u);
    EXPECT_EQ(t, 100u);
    ASSERT_EQ(ota_proto_parse_content_range("  bytes 200000-499999/500000\r\n", &a, &b, &t), 0);
    EXPECT_EQ(a, 200000u);
    ASSERT_EQ(ota_proto_parse_content_range("BYTES 5-5/6", &a, &b, &t), 0);
}

TEST(Protocol, ContentRangeGarbageRefused)
{
    const char *bad[] = {nullptr,          "",
                         "bytes",          "bytes */100",
                         "bytes 10-5/100", "bytes 0-100/100",
                         "bytes -1-5/100", "bytes 0-5/",
                         "bytes 0-5/100x", "items 0-5/100",
                         "bytes 0-5 /100", "bytes 99999999999999999999-1/2",
                         "bytes=0-5/100"};
    for (const char *s : bad) {
        uint64_t a = 7, b = 7, t = 7;
        EXPECT_EQ(ota_proto_parse_content_range(s, &a, &b, &t), -EINVAL) << (s ? s : "(null)");
        EXPECT_EQ(a, 7u); // outputs untouched on failure
    }
}

TEST(Protocol, CheckinNoUpdate)
{
    const char *body = "{\"update\":null}";
    ota_offer off{};
    int has = 5;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_checkin(body, strlen(body), &has, &off, &err), 0) << err.reason;
    EXPECT_EQ(has, 0);
}

TEST(Protocol, CheckinOffer)
{
    const char *body =
        "{\"update\":{\"update_id\":\"u1\",\"rollout_id\":\"r1\",\"release_id\":\"x\","
        "\"manifest\":\"{\\\"a\\\":1}\",\"signature\":\"c2ln\",\"url\":\"http://h/p\"}}";
    ota_offer off{};
    int has = 0;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_checkin(body, strlen(body), &has, &off, &err), 0) << err.reason;
    EXPECT_EQ(has, 1);
    EXPECT_STREQ(off.update_id, "u1");
    EXPECT_STREQ(off.rollout_id, "r1");
    EXPECT_STREQ(off.manifest, "{\"a\":1}"); // exact bytes, unescaped
    EXPECT_STREQ(off.url, "http://h/p");
}

// An offer is whole whatever the caller's struct held before (the core no
// longer zeroes 9 KiB per check-in: ota_offer_clear clears as text).
TEST(Protocol, CheckinOfferIsWholeOverGarbage)
{
    const char *body = "{\"activate\":\"u0\",\"update\":{\"update_id\":\"u1\",\"manifest\":\"{}\","
                       "\"signature\":\"c2ln\",\"url\":\"http://h/p\"}}";
    auto dirty = std::make_unique<ota_offer>(), clean = std::make_unique<ota_offer>();
    std::memset(dirty.get(), 0xa5, sizeof(*dirty));
    std::memset(clean.get(), 0, sizeof(*clean));
    int has = 0;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_checkin(body, strlen(body), &has, dirty.get(), &err), 0)
        << err.reason;
    ASSERT_EQ(ota_proto_parse_checkin(body, strlen(body), &has, clean.get(), &err), 0)
        << err.reason;
    EXPECT_EQ(std::memcmp(dirty.get(), clean.get(), offsetof(ota_offer, manifest)), 0);
    EXPECT_STREQ(dirty->manifest, "{}");
    EXPECT_STREQ(dirty->rollout_id, ""); // absent: empty, not what was there
    EXPECT_EQ(dirty->not_after_ms, 0);
    EXPECT_STREQ(dirty->activate, "u0");
    ota_offer_clear(dirty.get());
    EXPECT_STREQ(dirty->update_id, "");
    EXPECT_STREQ(dirty->manifest, "");
    EXPECT_EQ(dirty->wait_activation, 0);
}

TEST(Protocol, CheckinOfferWithActivation)
{
    const char *body =
        "{\"update\":{\"update_id\":\"u1\",\"manifest\":\"m\",\"signature\":\"s\","
        "\"url\":\"u\",\"activation\":{\"mode\":\"wait\",\"not_after_ms\":1795000000000}}}";
    ota_offer off{};
    int has = 0;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_checkin(body, strlen(body), &has, &off, &err), 0) << err.reason;
    EXPECT_EQ(has, 1);
    EXPECT_EQ(off.wait_activation, 1);
    EXPECT_EQ(off.not_after_ms, 1795000000000LL);
    const char *now = "{\"update\":{\"update_id\":\"u1\",\"manifest\":\"m\",\"signature\":"
                      "\"s\",\"url\":\"u\",\"activation\":{\"mode\":\"now\"}}}";
    ota_offer off2{};
    ASSERT_EQ(ota_proto_parse_checkin(now, strlen(now), &has, &off2, &err), 0) << err.reason;
    EXPECT_EQ(off2.wait_activation, 0);
    const char *bad[] = {"{\"update\":{\"update_id\":\"u1\",\"manifest\":\"m\",\"signature\":"
                         "\"s\",\"url\":\"u\",\"activation\":{\"mode\":\"later\"}}}",
                         "{\"update\":{\"update_id\":\"u1\",\"manifest\":\"m\",\"signature\":"
                         "\"s\",\"url\":\"u\",\"activation\":{\"mode\":\"wait\","
                         "\"not_after_ms\":\"soon\"}}}",
                         "{\"update\":{\"update_id\":\"u1\",\"manifest\":\"m\",\"signature\":"
                         "\"s\",\"url\":\"u\",\"activation\":\"wait\"}}",
                         "{\"update\":null,\"activate\":5}"};
    for (const char *b : bad) {
        ota_offer o{};
        EXPECT_LT(ota_proto_parse_checkin(b, strlen(b), &has, &o, &err), 0) << b;
    }
}

TEST(Protocol, CheckinStandbyAnswers)
{
    const char *act = "{\"update\":null,\"activate\":\"u1\"}";
    const char *ab = "{\"update\":null,\"abandon\":\"u2\",\"activate\":null}";
    ota_offer off{};
    int has = 7;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_checkin(act, strlen(act), &has, &off, &err), 0) << err.reason;
    EXPECT_EQ(has, 0);
    EXPECT_STREQ(off.activate, "u1");
    EXPECT_STREQ(off.abandon, "");
    ASSERT_EQ(ota_proto_parse_checkin(ab, strlen(ab), &has, &off, &err), 0) << err.reason;
    EXPECT_STREQ(off.activate, "");
    EXPECT_STREQ(off.abandon, "u2");
    // The check-in of a device in STANDBY names its update.
    ota_inventory inv{};
    inv.state = "STANDBY";
    inv.update_id = "u1";
    char *body = nullptr;
    ASSERT_EQ(ota_proto_checkin_body(&inv, &body), 0);
    EXPECT_NE(std::string(body).find("\"update_id\":\"u1\""), std::string::npos) << body;
    free(body);
    inv.update_id = "";
    ASSERT_EQ(ota_proto_checkin_body(&inv, &body), 0);
    EXPECT_EQ(std::string(body).find("update_id"), std::string::npos) << body;
    free(body);
}

TEST(Protocol, CheckinMalformedRefused)
{
    const char *bad[] = {"",
                         "[]",
                         "{}",
                         "{\"update\":5}",
                         "{\"update\":{\"update_id\":\"u\"}}",
                         "{\"update\":{\"update_id\":\"\",\"manifest\":\"m\",\"signature\":\"s\","
                         "\"url\":\"u\"}}",
                         "{\"update\":null,\"update\":null}",
                         "{\"update\":"};
    for (const char *b : bad) {
        ota_offer off{};
        int has = 7;
        ota_err err{};
        EXPECT_LT(ota_proto_parse_checkin(b, strlen(b), &has, &off, &err), 0) << b;
        EXPECT_EQ(has, 7) << b;
        EXPECT_NE(err.reason[0], '\0') << b;
    }
}

TEST(Protocol, GithubRelease)
{
    std::string body = "{\"tag_name\":\"v2.0.0\",\"assets\":[";
    body += "{\"name\":\"manifest.json\",\"size\":300,\"browser_download_url\":\"http://h/m\"},";
    body += "{\"name\":\"app.deb\",\"size\":1234,\"browser_download_url\":\"http://h/a\"}]}";
    ota_gh_release rel{};
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_gh_release(body.data(), body.size(), &rel, &err), 0) << err.reason;
    EXPECT_STREQ(rel.tag, "v2.0.0");
    ASSERT_EQ(rel.n_assets, 2);
    const ota_gh_asset *a = ota_proto_gh_asset(&rel, "app.deb");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->size, 1234u);
    EXPECT_STREQ(a->url, "http://h/a");
    EXPECT_EQ(ota_proto_gh_asset(&rel, "nope"), nullptr);
}

TEST(Protocol, GithubReleaseMalformedRefused)
{
    const char *bad[] = {"{\"assets\":[]}", "{\"tag_name\":\"v1\"}",
                         "{\"tag_name\":\"v1\",\"assets\":[1]}",
                         "{\"tag_name\":\"v1\",\"assets\":[{\"name\":\"a\",\"size\":-1,"
                         "\"browser_download_url\":\"u\"}]}"};
    for (const char *b : bad) {
        ota_gh_release rel{};
        ota_err err{};
        EXPECT_LT(ota_proto_parse_gh_release(b, strlen(b), &rel, &err), 0) << b;
    }
    std::string many = "{\"tag_name\":\"v1\",\"assets\":[";
    for (int i = 0; i <= OTA_GH_MAX_ASSETS; i++)
        many += std::string(i ? "," : "") +
                "{\"name\":\"a\",\"size\":1,\"browser_download_url\":\"u\"}";
    many += "]}";
    ota_gh_release rel{};
    EXPECT_EQ(ota_proto_parse_gh_release(many.data(), many.size(), &rel, nullptr), -E2BIG);
}

TEST(Protocol, Register)
{
    const char *ok = "{\"device_id\":\"dev-1\",\"token\":\"secret\"}";
    char id[64], tok[64];
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_register(ok, strlen(ok), id, sizeof(id), tok, sizeof(tok), &err), 0);
    EXPECT_STREQ(id, "dev-1");
    EXPECT_STREQ(tok, "secret");
    const char *empty = "{\"device_id\":\"\",\"token\":\"t\"}";
    EXPECT_LT(
        ota_proto_parse_register(empty, strlen(empty), id, sizeof(id), tok, sizeof(tok), &err), 0);
    char small[4];
    EXPECT_LT(ota_proto_parse_register(ok, strlen(ok), id, sizeof(id), small, sizeof(small), &err),
              0);
}

TEST(Protocol, ParsesAttributes)
{
    ota_attr a[OTA_ATTR_MAX];
    int n = -1;
    ota_err err{};
    ASSERT_EQ(ota_proto_parse_attributes(" region = eu ,hw=rev2", a, &n, &err), 0) << err.reason;
    ASSERT_EQ(n, 2);
    EXPECT_STREQ(a[0].key, "region");
    EXPECT_STREQ(a[0].value, "eu");
    EXPECT_STREQ(a[1].key, "hw");
    EXPECT_STREQ(a[1].value, "rev2");
    ASSERT_EQ(ota_proto_parse_attributes("  ", a, &n, &err), 0);
    EXPECT_EQ(n, 0);
    ASSERT_EQ(ota_proto_parse_attributes("empty=", a, &n, &err), 0);
    EXPECT_EQ(n, 1);
    EXPECT_STREQ(a[0].value, "");
    n = 7;
    EXPECT_EQ(ota_proto_parse_attributes("ok=1,=x", a, &n, &err), -EINVAL);
    EXPECT_EQ(n, 7); // untouched on failure
    EXPECT_EQ(ota_proto_parse_attributes("k=\x01", a, &n, &err), -EINVAL);
    EXPECT_EQ(ota_proto_parse_attributes(("k" + std::string(32, 'x') + "=1").c_str(), a, &n, &err),
              -EINVAL);
}

TEST(Protocol, BodiesAreTheDocumentedJson)
{
    ota_inventory inv{};
    inv.device_id = "dev-1";
    inv.device_type = "rpi3b";
    inv.group = "lab";
    inv.state = "IDLE";
    inv.app_version = "1.0.0";
    inv.rootfs_version = "1.0.0";
    inv.app_slot = "a";
    inv.rootfs_slot = "b";
    char *s = nullptr;
    ASSERT_EQ(ota_proto_checkin_body(&inv, &s), 0);
    EXPECT_EQ(take(s),
              "{\"device_type\":\"rpi3b\",\"group\":\"lab\",\"state\":\"IDLE\",\"versions\":"
              "{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"},\"slots\":{\"app\":\"a\",\"rootfs\":"
              "\"b\"}}");
    ASSERT_EQ(ota_proto_register_body(&inv, &s), 0);
    EXPECT_EQ(take(s), "{\"device_id\":\"dev-1\",\"device_type\":\"rpi3b\",\"group\":\"lab\","
                       "\"tags\":[],\"versions\":{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"}}");
    // Attributes and a zone, when the device has them.
    ota_attr attrs[2] = {{"region", "eu"}, {"network", "lte"}};
    inv.attributes = attrs;
    inv.n_attributes = 2;
    inv.timezone = "Europe/Berlin";
    ASSERT_EQ(ota_proto_checkin_body(&inv, &s), 0);
    EXPECT_EQ(take(s),
              "{\"device_type\":\"rpi3b\",\"group\":\"lab\",\"state\":\"IDLE\",\"versions\":"
              "{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"},\"slots\":{\"app\":\"a\",\"rootfs\":"
              "\"b\"},\"attributes\":{\"region\":\"eu\",\"network\":\"lte\"},"
              "\"timezone\":\"Europe/Berlin\"}");
    ASSERT_EQ(ota_proto_register_body(&inv, &s), 0);
    EXPECT_EQ(take(s), "{\"device_id\":\"dev-1\",\"device_type\":\"rpi3b\",\"group\":\"lab\","
                       "\"tags\":[],\"versions\":{\"app\":\"1.0.0\",\"rootfs\":\"1.0.0\"},"
                       "\"attributes\":{\"region\":\"eu\",\"network\":\"lte\"},"
                       "\"timezone\":\"Europe/Berlin\"}");
    ota_report r{};
    strcpy(r.update_id, "u1");
    strcpy(r.version, "2.0.0");
    strcpy(r.kind, "app");
    strcpy(r.state, "IDLE");
    strcpy(r.status, "failure");
    strcpy(r.reason, "say \"why\"");
    r.ts_ms = 42;
    ASSERT_EQ(ota_proto_report_body(&r, &s), 0);
    EXPECT_EQ(take(s), "{\"update_id\":\"u1\",\"rollout_id\":\"\",\"version\":\"2.0.0\",\"kind\":"
                       "\"app\",\"state\":\"IDLE\",\"status\":\"failure\",\"reason\":\"say "
                       "\\\"why\\\"\",\"ts\":42}");
}

// The check-in body is written by hand (protocol.c, for speed): it must be
// the text jansson writes for the same object, escapes included, and refuse
// what jansson refuses (a string that is not UTF-8).
TEST(Protocol, CheckinBodyIsJanssonsText)
{
    const char *tricky[] = {"plain", "say \"hi\" \\ back/slash", "ctl \x01\x1f\b\f\n\r\t\x7f end",
                            "utf-8: \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8", ""};
    for (const char *t : tricky) {
        ota_inventory inv{};
        ota_attr attrs[1] = {{"region", ""}};
        snprintf(attrs[0].value, sizeof(attrs[0].value), "%s", t);
        inv.device_type = t;
        inv.group = "g";
        inv.state = "IDLE";
        inv.app_version = t;
        inv.rootfs_version = "1";
        inv.app_slot = "a";
        inv.rootfs_slot = nullptr; // sent as ""
        inv.attributes = attrs;
        inv.n_attributes = 1;
        inv.timezone = t[0] ? t : nullptr;
        inv.update_id = "u\"1";
        json_t *o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s}}", "device_type",
                              t, "group", "g", "state", "IDLE", "versions", "app", t, "rootfs", "1",
                              "slots", "app", "a", "rootfs", "", "attributes", "region", t);
        ASSERT_NE(o, nullptr) << t;
        if (t[0])
            json_object_set_new(o, "timezone", json_string(t));
        json_object_set_new(o, "update_id", json_string("u\"1"));
        char *want = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        char *got = nullptr;
        ASSERT_EQ(ota_proto_checkin_body(&inv, &got), 0) << t;
        EXPECT_STREQ(got, want) << t;
        free(got);
        free(want);
    }
    const char *bad[] = {"\xff",     "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "\xe2\x82", "ok\xc3"};
    for (const char *b : bad) {
        ota_inventory inv{};
        inv.group = b;
        char *got = nullptr;
        EXPECT_EQ(ota_proto_checkin_body(&inv, &got), -EINVAL) << b;
        EXPECT_EQ(got, nullptr);
        EXPECT_EQ(json_string(b), nullptr) << "jansson refuses it too";
    }
}
