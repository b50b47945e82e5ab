// A QEMU trial whose guest lost its network (otasim/qenv.h), without booting:
// the console evidence, the server's last word from the device, the verdict,
// and the one retry through a stand-in for qtrial.c's attempt.
//
// The console excerpts are written from what the image prints (the
// initramfs's OTA-BOOT line, ota-net.service's line through journald as
// "sh[PID]: ...", the agent's lines as "ota-agent[PID]: ..."); the race on
// raspi3b was not captured, so no console of it is replayed here.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "otasim/qenv.h"
#include "otasim/rundb.h"
#include "otasim/scenario.h"

namespace fs = std::filesystem;

namespace
{

// A raspi3b power-on whose USB NIC never enumerated: the initramfs gives up
// first (3 s), ota-net.service after 20 s; the agent then cannot connect.
const char *const kLostConsole =
    "[    4.112233] OTA-BOOT: no usb0 or eth0 yet, left to ota-net.service\n"
    "[   31.402000] sh[212]: ota-net: no usb0 or eth0 after 20 s\n"
    "[FAILED] Failed to start ota-net.service - ota-hil static network (QEMU user network).\n"
    "[   44.000100] ota-agent[301]: ota-agent: check-in: could not connect to 10.0.2.100\n"
    "[   44.000200] ota-agent[301]: OTA-STATE "
    "{\"from\":\"IDLE\",\"to\":\"IDLE\",\"status\":\"failure\"}\n";

// A power-on with its network whose agent cannot reach the server anyway
// (an agent bug: a wrong URL, a crash at start): the same agent lines, and
// not a word from ota-net but its address.
const char *const kAgentConsole =
    "[    2.900000] sh[212]: ota-net: usb0 10.0.2.15/24 via 10.0.2.2\n"
    "[   44.000100] ota-agent[301]: ota-agent: check-in: could not connect to 10.0.2.100\n"
    "[   44.000200] ota-agent[301]: ota-agent: no usb0 or eth0 in the config\n"
    "[FAILED] Failed to start ota-net.service - ota-hil static network (QEMU user network).\n";

otasim_qenv feed(const char *console, int boot, int64_t boot_ms)
{
    otasim_qenv ev{};
    std::istringstream in(console);
    std::string line;
    while (std::getline(in, line))
        otasim_qenv_line(&ev, boot, boot_ms, line.c_str());
    return ev;
}

TEST(QenvEvidence, TheNetworkServicesLineIsTheEvidence)
{
    otasim_qenv ev = feed(kLostConsole, 2, 1000);
    EXPECT_EQ(ev.lost_boot, 2);
    EXPECT_EQ(ev.lost_boot_wall_ms, 1000);
    EXPECT_STREQ(ev.line, "ota-net: no usb0 or eth0 after 20 s");
}

TEST(QenvEvidence, NothingTheAgentOrSystemdSaysCounts)
{
    otasim_qenv ev = feed(kAgentConsole, 1, 1000);
    EXPECT_EQ(ev.lost_boot, 0) << ev.line;
    // the initramfs's early word alone: ota-net waits longer and may still find it
    ev = feed("OTA-BOOT: no usb0 or eth0 yet, left to ota-net.service\n", 1, 1000);
    EXPECT_EQ(ev.lost_boot, 0);
    // the agent quoting the line (a bug of its own) is still the agent
    ev = feed("ota-agent[301]: ota-net: no usb0 or eth0 after 20 s\n", 1, 1000);
    EXPECT_EQ(ev.lost_boot, 0);
}

TEST(QenvEvidence, TheFirstPowerOnThatLostItIsKept)
{
    otasim_qenv ev{};
    EXPECT_EQ(otasim_qenv_line(&ev, 1, 100, "sh[1]: ota-net: no usb0 or eth0 after 20 s"), 1);
    EXPECT_EQ(otasim_qenv_line(&ev, 3, 300, "sh[9]: ota-net: no usb0 or eth0 after 20 s"), 1);
    EXPECT_EQ(ev.lost_boot, 1);
    EXPECT_EQ(ev.lost_boot_wall_ms, 100);
}

TEST(QenvContact, TheLatestOfRegistrationAndCheckIn)
{
    EXPECT_EQ(
        otasim_qenv_contact_ms("{\"device_id\":\"d\",\"registered_ms\":1000,"
                               "\"reenrolled_ms\":0,\"last_checkin_ms\":5000,\"checkins\":3}"),
        5000);
    EXPECT_EQ(otasim_qenv_contact_ms("{\"registered_ms\":7000,\"last_checkin_ms\":0}"), 7000);
    EXPECT_EQ(otasim_qenv_contact_ms("{\"error\":\"no such device\"}"), 0);
    EXPECT_EQ(otasim_qenv_contact_ms("not json"), 0);
    EXPECT_EQ(otasim_qenv_contact_ms(nullptr), 0);
}

TEST(QenvVerdict, AFailureWithoutNetworkIsTheEnvironments)
{
    otasim_qenv ev = feed(kLostConsole, 1, 10000);
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_FAIL, &ev), OTASIM_ENVIRONMENT);
    ev.contact_ms = 9000; // registered by the harness (a mix) before the power-on
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_FAIL, &ev), OTASIM_ENVIRONMENT);
    char buf[300];
    otasim_qenv_describe(&ev, buf, sizeof(buf));
    EXPECT_STREQ(buf, "the guest's network never came up (power-on 1: ota-net: no usb0 or eth0 "
                      "after 20 s)");
}

TEST(QenvVerdict, AnAgentsFailureStaysItsOwn)
{
    // no evidence: whatever the agent's lines say
    otasim_qenv ev = feed(kAgentConsole, 1, 10000);
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_FAIL, &ev), OTASIM_FAIL);
    // the evidence, but the server heard from the device after that power-on began
    ev = feed(kLostConsole, 1, 10000);
    ev.contact_ms = 10000;
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_FAIL, &ev), OTASIM_FAIL);
    ev.contact_ms = 25000;
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_FAIL, &ev), OTASIM_FAIL);
}

TEST(QenvVerdict, APassAnErrorAndNotRunStay)
{
    otasim_qenv ev = feed(kLostConsole, 1, 10000);
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_PASS, &ev), OTASIM_PASS);
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_ERROR, &ev), OTASIM_ERROR);
    EXPECT_EQ(otasim_qenv_verdict(OTASIM_NOT_RUN, &ev), OTASIM_NOT_RUN);
}

// qtrial.c's attempt, played: each attempt writes its console log under
// tr->dir (removed first, as the real one does) and ends with the next verdict.
struct Script {
    std::vector<otasim_outcome> verdicts;
    std::vector<int> seen; // the n of each call
    int harness_error_at = 0;
};

int fake_attempt(void *ctx, int n, otasim_trial *tr, ota_err *err)
{
    auto *s = static_cast<Script *>(ctx);
    s->seen.push_back(n);
    if (n == s->harness_error_at)
        return ota_err_set(err, EIO, "QEMU stopped by itself");
    fs::remove_all(tr->dir);
    fs::create_directories(std::string(tr->dir) + "/qemu");
    std::string log = std::string(tr->dir) + "/qemu/console-1.log";
    std::ofstream(log) << "attempt " << n << "\n";
    snprintf(tr->logs, sizeof(tr->logs), "%s\n", log.c_str());
    tr->outcome = s->verdicts.at(static_cast<size_t>(n - 1));
    tr->started_ms = 1000 * n;
    tr->duration_ms = 60000;
    tr->state_lines = strdup("{\"to\":\"IDLE\"}\n");
    snprintf(tr->detail, sizeof(tr->detail), "%s",
             tr->outcome == OTASIM_ENVIRONMENT ? "environment: lost (attempt)"
             : tr->outcome == OTASIM_FAIL      ? "expected-outcome: 1.0.0"
                                               : "");
    return 0;
}

class QenvRetry : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/otasim-qenv-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root = tmpl;
        tr = otasim_trial{};
        snprintf(tr.dir, sizeof(tr.dir), "%s/case-0", root.c_str());
    }
    void TearDown() override
    {
        otasim_trial_free(&tr);
        fs::remove_all(root);
    }
    int run(Script &s)
    {
        ota_err e{};
        int r = otasim_qenv_run(fake_attempt, &s, &tr, &e);
        why = e.reason;
        return r;
    }
    std::string root, why;
    otasim_trial tr;
};

TEST_F(QenvRetry, AVerdictOfTheAgentIsNotRetried)
{
    for (otasim_outcome o : {OTASIM_PASS, OTASIM_FAIL, OTASIM_ERROR}) {
        Script s{{o}};
        ASSERT_EQ(run(s), 0);
        EXPECT_EQ(s.seen, std::vector<int>{1});
        EXPECT_EQ(tr.outcome, o);
        EXPECT_FALSE(fs::exists(std::string(tr.dir) + ".attempt-1"));
        otasim_trial_free(&tr);
    }
}

TEST_F(QenvRetry, TwiceWithoutNetworkIsEnvironmentWithBothLogs)
{
    Script s{{OTASIM_ENVIRONMENT, OTASIM_ENVIRONMENT}};
    ASSERT_EQ(run(s), 0) << why;
    EXPECT_EQ(s.seen, (std::vector<int>{1, 2}));
    EXPECT_EQ(tr.outcome, OTASIM_ENVIRONMENT);
    EXPECT_STREQ(tr.detail,
                 "twice: attempt 1: environment: lost (attempt); attempt 2: environment: lost "
                 "(attempt)");
    std::string moved = std::string(tr.dir) + ".attempt-1/qemu/console-1.log";
    std::string now = std::string(tr.dir) + "/qemu/console-1.log";
    EXPECT_EQ(std::string(tr.logs), moved + "\n" + now + "\n");
    std::ifstream a(moved), b(now);
    std::string la, lb;
    std::getline(a, la);
    std::getline(b, lb);
    EXPECT_EQ(la, "attempt 1");
    EXPECT_EQ(lb, "attempt 2");
    EXPECT_EQ(tr.started_ms, 1000);
    EXPECT_EQ(tr.duration_ms, 120000);
}

TEST_F(QenvRetry, APassOnTheRetrySaysSo)
{
    Script s{{OTASIM_ENVIRONMENT, OTASIM_PASS}};
    ASSERT_EQ(run(s), 0) << why;
    EXPECT_EQ(tr.outcome, OTASIM_PASS);
    EXPECT_STREQ(tr.detail, "passed on a retry (attempt 1: environment: lost (attempt))");
    EXPECT_TRUE(fs::exists(std::string(tr.dir) + ".attempt-1/qemu/console-1.log"));
}

TEST_F(QenvRetry, AFailureOnTheRetryIsTheAgents)
{
    Script s{{OTASIM_ENVIRONMENT, OTASIM_FAIL}};
    ASSERT_EQ(run(s), 0) << why;
    EXPECT_EQ(tr.outcome, OTASIM_FAIL);
    EXPECT_STREQ(tr.detail,
                 "expected-outcome: 1.0.0 (on a retry; attempt 1: environment: lost (attempt))");
}

TEST_F(QenvRetry, AHarnessErrorOnTheRetryIsReturned)
{
    Script s{{OTASIM_ENVIRONMENT, OTASIM_PASS}};
    s.harness_error_at = 2;
    EXPECT_LT(run(s), 0);
    EXPECT_EQ(why, "QEMU stopped by itself");
    EXPECT_EQ(s.seen, (std::vector<int>{1, 2}));
}

// The run database keeps the verdict by its name, and JUnit makes it an
// <error type="environment">: never a <failure> of the agent, never a pass.
TEST_F(QenvRetry, TheRunDatabaseAndJUnitSayEnvironment)
{
    static otasim_scenario sc{};
    snprintf(sc.name, sizeof(sc.name), "app-update-good");
    snprintf(sc.path, sizeof(sc.path), "scenarios/app-update-good.yaml");
    tr.sc = &sc;
    tr.outcome = OTASIM_ENVIRONMENT;
    snprintf(tr.detail, sizeof(tr.detail), "twice: attempt 1: environment: lost");
    snprintf(tr.target, sizeof(tr.target), "qemu");
    otasim_rundb *db = nullptr;
    ota_err e{};
    int64_t run = 0;
    std::string dbp = root + "/runs.db", xml = root + "/junit.xml";
    ASSERT_EQ(otasim_rundb_open(dbp.c_str(), &db, &e), 0) << e.reason;
    ASSERT_EQ(otasim_rundb_begin(db, "ota-sim run", "ota-agent", &run, &e), 0) << e.reason;
    ASSERT_EQ(otasim_rundb_add(db, run, "app-update-good", &tr, "ota-sim run ...", "", &e), 0)
        << e.reason;
    ASSERT_EQ(otasim_rundb_end(db, run, &e), 0) << e.reason;
    ASSERT_EQ(otasim_rundb_junit(db, run, xml.c_str(), &e), 0) << e.reason;
    otasim_rundb_close(db);
    std::ifstream f(xml);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    EXPECT_NE(text.find("<error type=\"environment\" message=\"twice: attempt 1: environment: "
                        "lost\">"),
              std::string::npos)
        << text;
    EXPECT_EQ(text.find("<failure"), std::string::npos) << text;
    EXPECT_EQ(text.find("<skipped"), std::string::npos) << text;
    EXPECT_STREQ(otasim_outcome_names[OTASIM_ENVIRONMENT], "environment");
}

} // namespace
