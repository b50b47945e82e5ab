// Unit tests for src/faults.c against a real ota-server: the applied count
// of each of a trial's server rules comes from the server's per-device log
// (a rule no request matched: 0), the rule ids are the runner's, and a
// server that cannot be asked leaves every count unknown (-1) with why.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

extern "C" {
#include "ota/fsutil.h"
#include "otasim/sim.h"
}

namespace
{

TEST(Faults, RuleIdsAreTheRunners)
{
    char id[64];
    otasim_fault_rule_id("cut", 7, id, sizeof(id));
    EXPECT_STREQ(id, "cut-7");
    otasim_fault_rule_id(nullptr, 0, id, sizeof(id));
    EXPECT_STREQ(id, "rule-0");
}

TEST(Faults, CountsComeFromTheServerPerDevice)
{
    otasim_tools t{};
    otasim_server srv{};
    ota_err err{};
    char dir[] = "/tmp/simfaults-XXXXXX";

    ASSERT_NE(mkdtemp(dir), nullptr);
    snprintf(t.server, sizeof(t.server), "%s/server-mock/ota-server", OTA_BINARY_DIR);
    ASSERT_EQ(otasim_server_start(&t, (std::string(dir) + "/srv").c_str(), &srv, &err), 0)
        << err.reason;
    const char *plan =
        "{\"rules\":["
        "{\"id\":\"hit-3\",\"match\":{\"path\":\"/api/v1/devices/*/checkin\",\"device\":\"d-3\"},"
        "\"fault\":{\"kind\":\"status\",\"code\":503}},"
        "{\"id\":\"miss-3\",\"match\":{\"path\":\"/api/v1/devices/*/checkin\",\"device\":\"d-3\","
        "\"release\":\"never\"},\"fault\":{\"kind\":\"status\",\"code\":500}},"
        "{\"id\":\"hit-4\",\"match\":{\"path\":\"/api/v1/devices/*/checkin\",\"device\":\"d-4\"},"
        "\"fault\":{\"kind\":\"status\",\"code\":503}}]}";
    ASSERT_EQ(otasim_server_put_faults(&srv, plan, &err), 0) << err.reason;
    // the device calls: the fault answers them (503), so the GET "fails"
    char *body = nullptr;
    EXPECT_NE(otasim_server_get(&srv, "/api/v1/devices/d-3/checkin", &body, nullptr), 0);
    EXPECT_NE(otasim_server_get(&srv, "/api/v1/devices/d-3/checkin", &body, nullptr), 0);

    otasim_trial tr{};
    tr.srv = &srv;
    snprintf(tr.device_id, sizeof(tr.device_id), "d-3");
    snprintf(tr.srv_rules[0].rule, sizeof(tr.srv_rules[0].rule), "hit-3");
    snprintf(tr.srv_rules[1].rule, sizeof(tr.srv_rules[1].rule), "miss-3");
    snprintf(tr.srv_rules[2].rule, sizeof(tr.srv_rules[2].rule), "hit-4"); // not d-3's
    tr.n_srv_rules = 3;
    otasim_faults_server_seen(&tr);
    EXPECT_STREQ(tr.srv_rules_why, "");
    EXPECT_EQ(tr.srv_rules[0].applied, 2);
    EXPECT_EQ(tr.srv_rules[1].applied, 0);
    EXPECT_EQ(tr.srv_rules[2].applied, 0);

    otasim_server_stop(&srv);
    otasim_faults_server_seen(&tr);
    EXPECT_EQ(tr.srv_rules[0].applied, -1);
    EXPECT_EQ(tr.srv_rules[1].applied, -1);
    EXPECT_NE(tr.srv_rules_why[0], '\0');

    tr.n_srv_rules = 0; // a recording run: no rules, nothing asked
    tr.srv = nullptr;
    otasim_faults_server_seen(&tr);
    EXPECT_STREQ(tr.srv_rules_why, "");
    ota_ignore(ota_fs_remove_tree(dir, nullptr));
}

} // namespace
