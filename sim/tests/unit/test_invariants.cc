// The invariant checker, one invariant at a time, on hand-made inputs: device
// trees, boot envs (libubootenv, as the bootloader model writes them),
// journals in the interposer's format (otasim/jformat.h), agent status
// JSON, server reports and SQLite databases. Every invariant is shown both
// failing and passing, and a missing input is shown to fail.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

// jformat.h is C: its layout asserts are C11 _Static_assert.
#define _Static_assert static_assert
#include "otasim/jformat.h"
#undef _Static_assert
#include "ota/crypto.h"
#include "otasim/agent.h"
#include "otasim/bootloader.h"
#include "otasim/invariants.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

// Writes a journal the way the interposer does: a CALL record before each
// call, a DONE record with its result after; events as single records.
class Journal
{
  public:
    explicit Journal(std::string path) : path_(std::move(path))
    {
        fs::create_directories(fs::path(path_).parent_path());
        fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        EXPECT_GE(fd_, 0) << path_;
    }
    ~Journal()
    {
        if (fd_ >= 0)
            close(fd_);
    }
    Journal(const Journal &) = delete;
    Journal &operator=(const Journal &) = delete;

    // One counted call that completed with result 0.
    void call(enum otasim_op op, const std::string &path, const std::string &path2 = "",
              uint64_t len = 0)
    {
        seq_++;
        rec(OTASIM_JK_CALL, op, path, path2, "", len);
        rec(OTASIM_JK_DONE, op, "", "", "", 0);
    }
    void event(enum otasim_op op, const std::string &text)
    {
        rec(OTASIM_JK_EVENT, op, "", "", text, 0);
    }
    void state(const char *from, const char *to)
    {
        event(OTASIM_OP_STATE, std::string("{\"from\":\"") + from + "\",\"to\":\"" + to +
                                   "\",\"status\":\"in_progress\"}");
    }

  private:
    void rec(uint8_t kind, enum otasim_op op, const std::string &p, const std::string &p2,
             const std::string &text, uint64_t len)
    {
        struct otasim_jhdr h = {};
        struct otasim_jtail t = {};
        size_t head = sizeof(h) + p.size() + 1 + p2.size() + 1 + text.size() + 1;
        size_t head_al = OTASIM_J_ALIGN(head);
        std::string buf(head_al, '\0');

        h.magic = OTASIM_J_MAGIC;
        h.size = (uint32_t)(head_al + sizeof(t));
        h.kind = kind;
        h.op = (uint8_t)op;
        h.pid = 4242;
        h.path_len = (uint32_t)p.size();
        h.path2_len = (uint32_t)p2.size();
        h.text_len = (uint32_t)text.size();
        h.seq = seq_;
        h.len = len;
        memcpy(&buf[0], &h, sizeof(h));
        memcpy(&buf[sizeof(h)], p.data(), p.size());
        memcpy(&buf[sizeof(h) + p.size() + 1], p2.data(), p2.size());
        memcpy(&buf[sizeof(h) + p.size() + 1 + p2.size() + 1], text.data(), text.size());
        t.size = h.size;
        t.magic = OTASIM_J_TAIL;
        buf.append((const char *)&t, sizeof(t));
        ASSERT_EQ(write(fd_, buf.data(), buf.size()), (ssize_t)buf.size());
    }

    std::string path_;
    int fd_ = -1;
    uint64_t seq_ = 0;
};

// Deterministic bytes standing for a rootfs image.
std::string image_bytes(unsigned seed, size_t n)
{
    std::string s(n, '\0');
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        s[i] = (char)(x >> 16);
    }
    return s;
}

class InvTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/otasim-inv-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        root = dir + "/dev";
        for (const char *sub :
             {"opt/app", "var/lib/ota/download", "etc", "run", "boot", "disks", ".sim"})
            fs::create_directories(root + "/" + sub);
        sc.profile = OTASIM_PROFILE_APP;
        snprintf(sc.source, sizeof(sc.source), "fleet");
        snprintf(sc.rel[0].version, sizeof(sc.rel[0].version), "1.0.0");
        sc.rel[0].factory = 1;
        sc.rel[0].publish = 1;
        snprintf(sc.rel[1].version, sizeof(sc.rel[1].version), "2.0.0");
        sc.rel[1].publish = 1;
        sc.n_rel = 2;
        // the releases' reference trees and their digests
        for (int i = 0; i < 2; i++) {
            std::string ref = dir + "/ref" + std::to_string(i + 1);
            write_all(ref + "/bin/video-app", "video-app " + std::to_string(i + 1));
            write_all(ref + "/share/notes", "release " + std::to_string(i + 1));
            ASSERT_EQ(otasim_tree_digest(ref.c_str(), built[i].ref_digest, &err), 0) << err.reason;
            snprintf(built[i].ref_tree, sizeof(built[i].ref_tree), "%s", ref.c_str());
        }
        tr.sc = &sc;
        tr.built = built;
        snprintf(tr.device_id, sizeof(tr.device_id), "dev-test");
        snprintf(d.root, sizeof(d.root), "%s", root.c_str());
        d.agent = &otasim_agent_ota;
        d.tr = &tr;
        d.booted_slot = -1;
        settle.settled = 1;
        v.d = &d;
        v.settle = &settle;
        otasim_inv_view_status(&v, nullptr);
    }
    void TearDown() override
    {
        otasim_inv_view_free(&v);
        fs::remove_all(dir);
    }

    // An app device: slot a = release 1, slot b = release 2 (if given), current -> cur.
    void app_tree(const char *cur, bool with_b = true)
    {
        fs::copy(dir + "/ref1", root + "/opt/app/a",
                 fs::copy_options::recursive | fs::copy_options::overwrite_existing);
        if (with_b)
            fs::copy(dir + "/ref2", root + "/opt/app/b",
                     fs::copy_options::recursive | fs::copy_options::overwrite_existing);
        fs::remove(root + "/opt/app/current");
        if (cur)
            fs::create_symlink(cur, root + "/opt/app/current");
        ssize_t n = readlink((root + "/opt/app/current").c_str(), v.current, sizeof(v.current) - 1);
        v.current[n > 0 ? n : 0] = '\0';
    }

    void status(const std::string &json)
    {
        json_error_t je;
        json_t *o = json_loads(json.c_str(), 0, &je);
        ASSERT_NE(o, nullptr) << je.text;
        otasim_inv_view_status(&v, o);
    }
    void status_app(const char *state, const char *version, const char *slot)
    {
        status(std::string("{\"state\":\"") + state + "\",\"app\":{\"version\":\"" + version +
               "\",\"slot\":\"" + slot + "\"},\"rootfs\":{\"version\":\"\"},\"outbox\":0," +
               "\"history\":[]}");
    }
    void status_rootfs(const char *version, const char *slot)
    {
        status(std::string("{\"state\":\"IDLE\",\"app\":{\"version\":\"\"},") +
               "\"rootfs\":{\"version\":\"" + version + "\",\"slot\":\"" + slot +
               "\"},\"outbox\":0,\"history\":[]}");
    }
    void reports(const std::string &json)
    {
        json_error_t je;
        json_t *o = json_loads(json.c_str(), 0, &je);
        ASSERT_NE(o, nullptr) << je.text;
        otasim_inv_view_reports(&v, o, "server");
    }

    // A rootfs device: env, partitions holding images of release 1 and 2.
    void rootfs_device(std::vector<const char *> vars, int booted)
    {
        sc.profile = OTASIM_PROFILE_ROOTFS;
        env = root + "/boot/uboot.env";
        snprintf(d.env_config, sizeof(d.env_config), "%s/boot/fw_env.config", root.c_str());
        ASSERT_EQ(otasim_bootenv_create(env.c_str(), d.env_config, vars.data(), vars.size(), &err),
                  0)
            << err.reason;
        for (int s = 0; s < 2; s++) {
            std::string img = image_bytes((unsigned)s + 1, 8192);
            struct otasim_image *im = &d.images[s];
            snprintf(d.part[s], sizeof(d.part[s]), "%s/disks/root%c", root.c_str(), "AB"[s]);
            std::string part = img;
            part.resize(16384, '\0');
            write_all(d.part[s], part);
            snprintf(im->version, sizeof(im->version), "%s", sc.rel[s].version);
            im->size = img.size();
            im->bootable = 1;
            ASSERT_EQ(ota_sha256_file(d.part[s], im->size, im->sha256, &err), 0) << err.reason;
        }
        d.n_images = 2;
        d.boot.env_config = d.env_config;
        d.boot.part[0] = d.part[0];
        d.boot.part[1] = d.part[1];
        d.boot.images = d.images;
        d.boot.n_images = 2;
        d.booted_slot = booted;
        snprintf(d.booted_version, sizeof(d.booted_version), "%s",
                 booted >= 0 ? sc.rel[booted].version : "");
        snprintf(v.running, sizeof(v.running), "%s", d.booted_version);
    }

    // Pass infos for journals journal-1.bin ... journal-n.bin under .sim.
    std::string journal_path(int pass)
    {
        return root + "/.sim/journal-" + std::to_string(pass) + ".bin";
    }
    void passes(int n, const char *current = "a")
    {
        pi.resize((size_t)n);
        for (int i = 0; i < n; i++) {
            memset(&pi[(size_t)i], 0, sizeof(pi[0]));
            snprintf(pi[(size_t)i].journal, sizeof(pi[0].journal), "%s",
                     journal_path(i + 1).c_str());
            snprintf(pi[(size_t)i].current, sizeof(pi[0].current), "%s", current);
            pi[(size_t)i].booted = d.booted_slot;
        }
        v.passes = pi.data();
        v.n_passes = pi.size();
    }

    struct otasim_check run(int (*fn)(const struct otasim_inv_view *, struct otasim_check *))
    {
        struct otasim_check c = {};
        EXPECT_EQ(fn(&v, &c), 1) << "the invariant should apply";
        return c;
    }

    std::string dir, root, env;
    struct otasim_scenario sc = {};
    struct otasim_built built[OTASIM_MAX_RELEASES] = {};
    struct otasim_trial tr = {};
    struct otasim_device d = {};
    struct otasim_settle settle = {};
    struct otasim_inv_view v = {};
    std::vector<struct otasim_pass_info> pi;
    struct ota_err err = {};
};

#define EXPECT_PASS(c) EXPECT_TRUE((c).ok) << (c).name << ": " << (c).detail
#define EXPECT_FAIL(c) EXPECT_FALSE((c).ok) << (c).name << ": " << (c).detail

// ---- settled ----------------------------------------------------------------

TEST_F(InvTest, SettledPassesWhenIdleAfterAQuietPass)
{
    status_app("IDLE", "2.0.0", "b");
    auto c = run(otasim_inv_settled);
    EXPECT_STREQ(c.name, "settled");
    EXPECT_PASS(c);
}

TEST_F(InvTest, SettledFailsWhenTheAgentNeverSettled)
{
    status_app("IDLE", "2.0.0", "b");
    settle.settled = 0;
    snprintf(settle.why, sizeof(settle.why), "pass 3: ota-agent exited 5");
    auto c = run(otasim_inv_settled);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "exited 5"), nullptr) << c.detail;
}

TEST_F(InvTest, SettledFailsWhenNotIdle)
{
    status_app("DOWNLOADING", "1.0.0", "a");
    EXPECT_FAIL(run(otasim_inv_settled));
}

TEST_F(InvTest, SettledFailsWithoutAStatus)
{
    snprintf(v.status_err, sizeof(v.status_err), "ota-agent status --json: exit 5");
    auto c = run(otasim_inv_settled);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "no status"), nullptr) << c.detail;
}

// ---- the table ---------------------------------------------------------------------

TEST(InvTable, EachNameHasOneCheckAndOneScope)
{
    for (size_t i = 0; i < otasim_n_invariants; i++) {
        const struct otasim_invariant *inv = &otasim_invariants[i];
        EXPECT_TRUE((inv->check != nullptr) != (inv->each != nullptr)) << inv->name;
        EXPECT_LT(inv->scope, OTASIM_INV_SCOPE_MAX) << inv->name;
        if (inv->check)
            EXPECT_EQ(otasim_inv_find(inv->name), inv) << inv->name;
    }
    EXPECT_EQ(otasim_inv_find("no-such-invariant"), nullptr);
}

// ---- standby-waits (blue_green: no switch before the activation) -------------

TEST_F(InvTest, StandbyWaitsAppliesToBlueGreenOnlyAndFailsOnAnEarlySwitch)
{
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("standby-waits"), &v));
    sc.blue_green = 1;
    EXPECT_TRUE(otasim_inv_applies(otasim_inv_find("standby-waits"), &v));
    std::string waiting = "{\"from\":\"INSTALLING\",\"to\":\"STANDBY\"}\n";
    std::string switched = "{\"from\":\"STANDBY\",\"to\":\"SWITCHING\"}\n";
    tr.state_lines = strdup((waiting + switched).c_str());
    tr.activated = 1;
    tr.activated_at = waiting.size(); // activated between the two lines
    EXPECT_PASS(run(otasim_inv_standby_waits));
    tr.activated_at = (waiting + switched).size(); // activated after the switch
    EXPECT_FAIL(run(otasim_inv_standby_waits));
    tr.activated = 0; // never activated, and switched
    EXPECT_FAIL(run(otasim_inv_standby_waits));
    free(tr.state_lines);
    tr.state_lines = strdup(waiting.c_str()); // never activated, never switched
    EXPECT_PASS(run(otasim_inv_standby_waits));
    free(tr.state_lines);
    tr.state_lines = nullptr;
}

// ---- fault-fired (thin: the trial decides whether it fired) -------------------

TEST_F(InvTest, FaultFiredAppliesOnlyWithAFault)
{
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("fault-fired"), &v));
    tr.fault.kind = OTASIM_FAULT_POWER_CUT;
    EXPECT_TRUE(otasim_inv_applies(otasim_inv_find("fault-fired"), &v));
    tr.fault.trigger.kind = OTASIM_TRIGGER_STATE;
    snprintf(tr.fault.trigger.state, sizeof(tr.fault.trigger.state), "SWITCHING");
    EXPECT_FAIL(run(otasim_inv_fault_fired));
    tr.fired = 1;
    EXPECT_PASS(run(otasim_inv_fault_fired));
}

TEST_F(InvTest, ServerRuleFiredOneCheckPerRule)
{
    struct otasim_check c = {};
    EXPECT_EQ(otasim_inv_server_rule_fired(&v, 0, &c), 0); // no rules
    tr.n_srv_rules = 3;
    snprintf(tr.srv_rules[0].rule, sizeof(tr.srv_rules[0].rule), "cut-0");
    tr.srv_rules[0].applied = 1;
    snprintf(tr.srv_rules[1].rule, sizeof(tr.srv_rules[1].rule), "stall-0");
    tr.srv_rules[1].applied = 0;
    snprintf(tr.srv_rules[2].rule, sizeof(tr.srv_rules[2].rule), "busy-0");
    tr.srv_rules[2].applied = -1;
    ASSERT_EQ(otasim_inv_server_rule_fired(&v, 0, &c), 1);
    EXPECT_PASS(c);
    ASSERT_EQ(otasim_inv_server_rule_fired(&v, 1, &c), 1);
    EXPECT_FAIL(c);
    ASSERT_EQ(otasim_inv_server_rule_fired(&v, 2, &c), 1); // the log could not be read
    EXPECT_FAIL(c);
    EXPECT_EQ(otasim_inv_server_rule_fired(&v, 3, &c), 0);
}

// ---- one-active-slot ------------------------------------------------------------

TEST_F(InvTest, OneActiveSlotApp)
{
    app_tree("b");
    EXPECT_PASS(run(otasim_inv_one_active_slot));
    app_tree("b.tmp");
    EXPECT_FAIL(run(otasim_inv_one_active_slot));
    app_tree(nullptr);
    EXPECT_FAIL(run(otasim_inv_one_active_slot));
}

TEST_F(InvTest, OneActiveSlotRootfsFailsWithATrialBootPending)
{
    rootfs_device({"boot_part=B", "bootcount=0", "upgrade_available=0"}, 1);
    EXPECT_PASS(run(otasim_inv_one_active_slot));
    ASSERT_EQ(otasim_bootenv_set(d.env_config, "upgrade_available", "1", &err), 0);
    EXPECT_FAIL(run(otasim_inv_one_active_slot));
    ASSERT_EQ(otasim_bootenv_set(d.env_config, "upgrade_available", "0", &err), 0);
    ASSERT_EQ(otasim_bootenv_set(d.env_config, "boot_part", "C", &err), 0);
    EXPECT_FAIL(run(otasim_inv_one_active_slot));
}

// ---- active-slot-complete ---------------------------------------------------------

TEST_F(InvTest, ActiveSlotCompleteApp)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    EXPECT_PASS(run(otasim_inv_active_slot_complete));
    // one file of the release missing from the active slot
    fs::remove(root + "/opt/app/b/share/notes");
    auto c = run(otasim_inv_active_slot_complete);
    EXPECT_FAIL(c);
}

TEST_F(InvTest, ActiveSlotCompleteFailsForAnUnknownVersion)
{
    app_tree("b");
    status_app("IDLE", "9.9.9", "b");
    EXPECT_FAIL(run(otasim_inv_active_slot_complete));
}

TEST_F(InvTest, ActiveSlotCompleteRootfs)
{
    rootfs_device({"boot_part=B", "bootcount=0"}, 1);
    status_rootfs("2.0.0", "b");
    EXPECT_PASS(run(otasim_inv_active_slot_complete));
    // a half-written image in rootB
    std::string part = read_all(d.part[1]);
    part[100] ^= 0x55;
    write_all(d.part[1], part);
    EXPECT_FAIL(run(otasim_inv_active_slot_complete));
}

// ---- bootable ----------------------------------------------------------------------

TEST_F(InvTest, BootableApp)
{
    v.svc_active = 1;
    v.health = 200;
    EXPECT_PASS(run(otasim_inv_bootable));
    v.health = 500;
    EXPECT_FAIL(run(otasim_inv_bootable));
    v.health = 200;
    v.svc_active = 0;
    EXPECT_FAIL(run(otasim_inv_bootable));
}

TEST_F(InvTest, BootableRootfs)
{
    rootfs_device({"boot_part=B"}, 1);
    v.svc_active = 1;
    v.health = 200;
    EXPECT_PASS(run(otasim_inv_bootable));
    v.health = 0; // booted, but its service never came up (variant unhealthy)
    EXPECT_FAIL(run(otasim_inv_bootable));
    v.health = 200;
    d.boot_failed = 1;
    d.booted_slot = -1;
    EXPECT_FAIL(run(otasim_inv_bootable));
}

// ---- device-not-hung, recovery-mode (kernels that hang, both slots bad) --------------

TEST_F(InvTest, DeviceNotHungFailsOnAKernelHungWithoutWatchdog)
{
    rootfs_device({"boot_part=B", "upgrade_available=1", "bootcount=1"}, -1);
    EXPECT_TRUE(otasim_inv_applies(otasim_inv_find("device-not-hung"), &v));
    d.watchdog_resets = 2;
    d.hung_ms = 30000;
    auto c = run(otasim_inv_device_not_hung);
    EXPECT_STREQ(c.name, "device-not-hung");
    EXPECT_PASS(c); // hangs the watchdog ended are counted boots, not a lost device
    EXPECT_NE(strstr(c.detail, "2 hung kernels reset by the watchdog"), nullptr) << c.detail;
    d.hung = 1;
    d.boot_failed = 1;
    snprintf(d.hung_version, sizeof(d.hung_version), "2.0.0");
    c = run(otasim_inv_device_not_hung);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "the kernel of 2.0.0 hung and no watchdog reset it"), nullptr)
        << c.detail;
}

TEST_F(InvTest, DeviceNotHungAndRecoveryModeApplyToRootfsOnly)
{
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("device-not-hung"), &v));
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("recovery-mode"), &v));
}

TEST_F(InvTest, RecoveryModeFailsWhereNotExpected)
{
    rootfs_device({"boot_part=A", "upgrade_available=0", "bootcount=7"}, -1);
    d.boot_failed = 1;
    d.recovery = 1;
    auto c = run(otasim_inv_recovery_mode);
    EXPECT_STREQ(c.name, "recovery-mode");
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "safe but needs a reflash"), nullptr) << c.detail;
    // Not expected: every check of a running slot still applies (and fails).
    EXPECT_TRUE(otasim_inv_applies(otasim_inv_find("bootable"), &v));
    EXPECT_FAIL(run(otasim_inv_bootable));
}

TEST_F(InvTest, RecoveryModeExpectedPassesAndJudgesTheDevice)
{
    rootfs_device({"boot_part=A", "upgrade_available=0", "bootcount=7"}, -1);
    sc.expect.recovery = 1;
    d.boot_failed = 1;
    d.recovery = 1;
    EXPECT_PASS(run(otasim_inv_recovery_mode));
    // A device in recovery runs no slot: those checks give way to recovery-mode.
    for (const char *name : {"settled", "one-active-slot", "active-slot-complete", "bootable",
                             "running-version", "bootenv-consistent", "no-temp-files"})
        EXPECT_FALSE(otasim_inv_applies(otasim_inv_find(name), &v)) << name;
    for (const char *name : {"lkg-untouched", "truthful-report", "expected-outcome"})
        EXPECT_TRUE(otasim_inv_applies(otasim_inv_find(name), &v)) << name;
    EXPECT_PASS(run(otasim_inv_expected_outcome));

    // Expected, but the device booted a slot (or hangs): both fail.
    d.recovery = 0;
    d.boot_failed = 0;
    d.booted_slot = 0;
    auto c = run(otasim_inv_recovery_mode);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "expected recovery mode, but the device booted slot A"), nullptr)
        << c.detail;
    EXPECT_TRUE(otasim_inv_applies(otasim_inv_find("bootable"), &v));
    c = run(otasim_inv_expected_outcome);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "not in recovery mode"), nullptr) << c.detail;
    d.booted_slot = -1;
    d.hung = 1;
    c = run(otasim_inv_recovery_mode);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "the device hangs"), nullptr) << c.detail;
}

// ---- running-version ------------------------------------------------------------------

TEST_F(InvTest, RunningVersionApp)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    snprintf(v.running, sizeof(v.running), "2.0.0");
    EXPECT_PASS(run(otasim_inv_running_version));
    snprintf(v.running, sizeof(v.running), "1.0.0"); // the old app still answers
    EXPECT_FAIL(run(otasim_inv_running_version));
    v.running[0] = '\0'; // nothing answers
    EXPECT_FAIL(run(otasim_inv_running_version));
}

TEST_F(InvTest, RunningVersionRootfs)
{
    rootfs_device({"boot_part=B"}, 1);
    status_rootfs("2.0.0", "b");
    EXPECT_PASS(run(otasim_inv_running_version));
    status_rootfs("2.0.0", "a"); // the database names the wrong slot
    EXPECT_FAIL(run(otasim_inv_running_version));
}

// ---- bootenv-consistent --------------------------------------------------------------

TEST_F(InvTest, BootenvConsistentDoesNotApplyToApps)
{
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("bootenv-consistent"), &v));
}

TEST_F(InvTest, BootenvConsistentPassesOnACommittedEnv)
{
    rootfs_device({"boot_part=B", "bootcount=0", "upgrade_available=0"}, 1);
    status_rootfs("2.0.0", "b");
    EXPECT_PASS(run(otasim_inv_bootenv_consistent));
}

TEST_F(InvTest, BootenvConsistentFailsOnABootcountLeftSet)
{
    // a fallback the agent never cleared up after
    rootfs_device({"boot_part=A", "bootcount=4", "upgrade_available=0"}, 0);
    status_rootfs("1.0.0", "a");
    auto c = run(otasim_inv_bootenv_consistent);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "bootcount=4"), nullptr) << c.detail;
}

TEST_F(InvTest, BootenvConsistentFailsWhenEnvAndDatabaseDisagree)
{
    rootfs_device({"boot_part=A", "bootcount=0"}, 0);
    status_rootfs("2.0.0", "b");
    EXPECT_FAIL(run(otasim_inv_bootenv_consistent));
}

TEST_F(InvTest, BootenvConsistentFailsOnAnUnreadableEnv)
{
    rootfs_device({"boot_part=B", "bootcount=0"}, 1);
    status_rootfs("2.0.0", "b");
    ASSERT_EQ(otasim_bootenv_corrupt(env.c_str(), &err), 0);
    EXPECT_FAIL(run(otasim_inv_bootenv_consistent));
}

TEST_F(InvTest, BootenvConsistentCorruptEnvMustBeLeftAlone)
{
    rootfs_device({"boot_part=A", "bootcount=0"}, 0);
    sc.fault.kind = OTASIM_FAULT_CORRUPT_BOOTENV;
    ASSERT_EQ(otasim_bootenv_corrupt(env.c_str(), &err), 0);
    std::string before = read_all(env);
    v.env_before = before.data();
    v.env_before_len = before.size();
    EXPECT_PASS(run(otasim_inv_bootenv_consistent));
    // the agent "repaired" it: a fresh env written over the corrupt one
    ASSERT_EQ(otasim_bootenv_create(env.c_str(), d.env_config, nullptr, 0, &err), 0);
    EXPECT_FAIL(run(otasim_inv_bootenv_consistent));
    v.env_before = nullptr; // no record of the env as the fault left it
    v.env_before_len = 0;
    EXPECT_FAIL(run(otasim_inv_bootenv_consistent));
}

// ---- lkg-untouched / active-slot-untouched -----------------------------------------

TEST_F(InvTest, UntouchedPassWhenOnlyTheInactiveSlotIsWritten)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.state("IDLE", "CHECKING");
        j.call(OTASIM_OP_MKDIR, root + "/opt/app/b");
        j.call(OTASIM_OP_CREATE, root + "/opt/app/b/bin");
        j.call(OTASIM_OP_WRITE, root + "/opt/app/b/bin/video-app", "", 100);
        j.call(OTASIM_OP_WRITE, root + "/var/lib/ota/agent.db-wal", "", 4096);
        // the switch: current.tmp -> b, renamed over current
        j.call(OTASIM_OP_SYMLINK, root + "/opt/app/current.tmp", "b");
        j.call(OTASIM_OP_RENAME, root + "/opt/app/current.tmp", root + "/opt/app/current");
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_PASS(run(otasim_inv_lkg_untouched));
    EXPECT_PASS(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, LkgUntouchedFailsOnAWriteIntoTheFactorySlot)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, root + "/opt/app/b/bin/video-app", "", 100);
        j.call(OTASIM_OP_SYMLINK, root + "/opt/app/current.tmp", "b");
        j.call(OTASIM_OP_RENAME, root + "/opt/app/current.tmp", root + "/opt/app/current");
        // after the switch slot a is no longer active, but it is the LKG
        j.call(OTASIM_OP_UNLINK, root + "/opt/app/a/share/notes");
    }
    passes(1);
    otasim_inv_view_journals(&v);
    auto c = run(otasim_inv_lkg_untouched);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "unlink"), nullptr) << c.detail;
    EXPECT_PASS(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, LkgUntouchedFailsOnARenameOutOfTheFactorySlot)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_RENAME, root + "/opt/app/a", root + "/opt/app/old");
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
}

TEST_F(InvTest, ActiveSlotUntouchedFailsOnAWriteIntoTheRunningSlot)
{
    // slot b active (an earlier update), the agent writes into it
    app_tree("b");
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_TRUNC, root + "/opt/app/b/bin/video-app");
    }
    passes(1, "b");
    otasim_inv_view_journals(&v);
    auto c = run(otasim_inv_active_slot_untouched);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "slot b active"), nullptr) << c.detail;
}

TEST_F(InvTest, ActiveSlotUntouchedFollowsTheSwitch)
{
    // the new slot is written after `current` points at it: it is running
    app_tree("a");
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_SYMLINK, root + "/opt/app/current.tmp", "b");
        j.call(OTASIM_OP_RENAME, root + "/opt/app/current.tmp", root + "/opt/app/current");
        j.call(OTASIM_OP_WRITE, root + "/opt/app/b/share/notes", "", 10);
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, ActiveSlotUntouchedRootfsBootedPartition)
{
    rootfs_device({"boot_part=A"}, 0);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, d.part[1], "", 8192);
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_PASS(run(otasim_inv_active_slot_untouched));
    EXPECT_PASS(run(otasim_inv_lkg_untouched));
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, d.part[0], "", 8192); // the booted rootA
    }
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
}

TEST_F(InvTest, UntouchedFailWhenAJournalIsMissing)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, root + "/opt/app/b/bin/video-app", "", 100);
    }
    passes(2); // pass 2 ran, but its journal was never made: no interposer
    otasim_inv_view_journals(&v);
    auto c = run(otasim_inv_lkg_untouched);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "pass 2"), nullptr) << c.detail;
    EXPECT_NE(strstr(c.detail, "interposer"), nullptr) << c.detail;
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, UntouchedFailWhenAJournalIsEmpty)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1)); // created, nothing recorded
    }
    passes(1);
    otasim_inv_view_journals(&v);
    auto c = run(otasim_inv_lkg_untouched);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "holds no record"), nullptr) << c.detail;
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, UntouchedFailWhenNoPassWasJournaled)
{
    passes(0);
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
    // and when the journals were never read at all
    memset(&v.writes, 0, sizeof(v.writes));
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
}

TEST_F(InvTest, APassThatDidNotRunNeedsNoJournal)
{
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, root + "/opt/app/b/bin/video-app", "", 100);
    }
    passes(2);
    pi[1].journal[0] = '\0'; // the device did not boot: the agent never ran
    otasim_inv_view_journals(&v);
    EXPECT_PASS(run(otasim_inv_lkg_untouched));
}

TEST_F(InvTest, UntouchedComparesPathsThroughSymlinks)
{
    // The device tree is reached through a symlink (as /dev/shm can be);
    // the interposer records resolved paths. Compared as given, the write
    // into slot a would not be seen.
    fs::create_directories(dir + "/real");
    fs::rename(root, dir + "/real/dev");
    fs::create_symlink(dir + "/real", dir + "/link");
    root = dir + "/link/dev";
    snprintf(d.root, sizeof(d.root), "%s", root.c_str());
    std::string real = fs::canonical(root).string();
    ASSERT_NE(real, root);
    app_tree("a", false);
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, real + "/opt/app/a/bin/video-app", "", 100);
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
    EXPECT_FAIL(run(otasim_inv_active_slot_untouched));
    // and the other way round: the journal names the link, the slot is resolved
    {
        Journal j(journal_path(1));
        j.call(OTASIM_OP_WRITE, root + "/opt/app/a/bin/video-app", "", 100);
    }
    otasim_inv_view_journals(&v);
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
}

TEST_F(InvTest, QemuLkgComparesTheFactoryTree)
{
    d.qemu = 1;
    app_tree("b");
    EXPECT_PASS(run(otasim_inv_lkg_untouched));
    // no journal on QEMU
    EXPECT_FALSE(otasim_inv_applies(otasim_inv_find("active-slot-untouched"), &v));
    write_all(root + "/opt/app/a/bin/video-app", "overwritten");
    EXPECT_FAIL(run(otasim_inv_lkg_untouched));
}

// ---- truthful-report ---------------------------------------------------------------

TEST_F(InvTest, TruthfulReportPasses)
{
    status_app("IDLE", "2.0.0", "b");
    snprintf(v.running, sizeof(v.running), "2.0.0");
    reports(
        R"([{"status":"in_progress","version":"2.0.0"},{"status":"success","version":"2.0.0"}])");
    EXPECT_PASS(run(otasim_inv_truthful_report));
}

TEST_F(InvTest, TruthfulReportFailsWhenTheReportsCannotBeFetched)
{
    status_app("IDLE", "2.0.0", "b");
    snprintf(v.running, sizeof(v.running), "2.0.0");
    snprintf(v.reports_err, sizeof(v.reports_err), "the server's reports: connection refused");
    auto c = run(otasim_inv_truthful_report);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "connection refused"), nullptr) << c.detail;
}

TEST_F(InvTest, TruthfulReportFailsOnSuccessForAVersionNotRunning)
{
    status_app("IDLE", "1.0.0", "a");
    snprintf(v.running, sizeof(v.running), "1.0.0");
    reports(R"([{"status":"success","version":"2.0.0"},{"status":"failure","version":"2.0.0"}])");
    EXPECT_FAIL(run(otasim_inv_truthful_report));
}

TEST_F(InvTest, TruthfulReportFailsWhenTheLastFinalReportIsWrong)
{
    status_app("IDLE", "2.0.0", "b");
    snprintf(v.running, sizeof(v.running), "2.0.0");
    reports(R"([{"status":"failure","version":"2.0.0"}])");
    EXPECT_FAIL(run(otasim_inv_truthful_report));
    reports("[]");
    EXPECT_FAIL(run(otasim_inv_truthful_report)); // runs the update, never said so
}

TEST_F(InvTest, TruthfulReportGithubReadsTheAgentsHistory)
{
    snprintf(sc.source, sizeof(sc.source), "github");
    snprintf(v.running, sizeof(v.running), "2.0.0");
    // newest first, as `ota-agent status --json` lists it
    status(R"({"state":"IDLE","app":{"version":"2.0.0","slot":"b"},"outbox":0,"history":[
        {"update_id":"u2","version":"2.0.0","status":"success"},
        {"update_id":"u1","version":"2.0.0","status":"failure"}]})");
    ASSERT_NE(v.reports, nullptr);
    EXPECT_STREQ(v.reports_from, "history");
    EXPECT_STREQ(v.fin, "success");
    EXPECT_PASS(run(otasim_inv_truthful_report));
    // the same history, the other way round: the last word is a failure
    status(R"({"state":"IDLE","app":{"version":"2.0.0","slot":"b"},"outbox":0,"history":[
        {"update_id":"u1","version":"2.0.0","status":"failure"},
        {"update_id":"u2","version":"2.0.0","status":"success"}]})");
    auto c = run(otasim_inv_truthful_report);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "history"), nullptr) << c.detail;
}

TEST_F(InvTest, TruthfulReportGithubFailsWithoutAStatus)
{
    snprintf(sc.source, sizeof(sc.source), "github");
    otasim_inv_view_status(&v, nullptr);
    EXPECT_EQ(v.reports, nullptr);
    EXPECT_FAIL(run(otasim_inv_truthful_report));
}

// ---- db-integrity ----------------------------------------------------------------------

class DbTest : public InvTest
{
  protected:
    std::string db()
    {
        return root + "/var/lib/ota/agent.db";
    }
    // A WAL database (as the agent keeps it) with a table and an index.
    // keep_open: the WAL is left un-checkpointed (the connection is returned).
    sqlite3 *make_db(bool keep_open)
    {
        sqlite3 *h = nullptr;
        EXPECT_EQ(sqlite3_open(db().c_str(), &h), SQLITE_OK);
        const char *sql = "PRAGMA page_size=1024; PRAGMA journal_mode=WAL;"
                          "PRAGMA wal_autocheckpoint=0;"
                          "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);"
                          "CREATE INDEX tx ON t(x);"
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n "
                          "WHERE i < 2000) INSERT INTO t(x) SELECT printf('row-%06d', i) FROM n;";
        EXPECT_EQ(sqlite3_exec(h, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(h);
        if (keep_open)
            return h;
        sqlite3_close(h);
        return nullptr;
    }
    void copy()
    {
        struct ota_err e = {};
        if (otasim_inv_copy_db(db().c_str(), (root + "/.sim/db-copy").c_str(), v.db_copy,
                               sizeof(v.db_copy), &e) < 0)
            snprintf(v.db_copy_err, sizeof(v.db_copy_err), "%s", e.reason);
    }
};

TEST_F(DbTest, IntegrityPassesOnAGoodDatabase)
{
    make_db(false);
    copy();
    auto c = run(otasim_inv_db_integrity);
    EXPECT_PASS(c);
}

TEST_F(DbTest, IntegrityFailsOnACorruptDatabase)
{
    make_db(false);
    // overwrite the middle of the file (index and table pages) with garbage
    std::string bytes = read_all(db());
    ASSERT_GT(bytes.size(), (size_t)40000);
    for (size_t i = 20000; i < 24000; i++)
        bytes[i] = (char)(i * 7);
    write_all(db(), bytes);
    copy();
    auto c = run(otasim_inv_db_integrity);
    EXPECT_FAIL(c);
    EXPECT_EQ(strstr(c.detail, ": ok"), nullptr) << c.detail;
}

TEST_F(DbTest, IntegrityFailsWhenThereIsNoDatabase)
{
    copy();
    auto c = run(otasim_inv_db_integrity);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "does not exist"), nullptr) << c.detail;
}

TEST_F(DbTest, TheCopyHoldsTheUncheckpointedWal)
{
    // The copy is what the agent left: its WAL too, not yet in the main file.
    sqlite3 *h = make_db(true);
    ASSERT_TRUE(fs::exists(db() + "-wal"));
    copy();
    sqlite3_close(h);
    ASSERT_TRUE(fs::exists(std::string(v.db_copy) + "-wal"));
    sqlite3 *c2 = nullptr;
    sqlite3_stmt *st = nullptr;
    ASSERT_EQ(sqlite3_open_v2(v.db_copy, &c2, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(c2, "SELECT count(*) FROM t", -1, &st, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(st, 0), 2000);
    sqlite3_finalize(st);
    sqlite3_close(c2);
    EXPECT_PASS(run(otasim_inv_db_integrity));
}

// ---- no-temp-files ------------------------------------------------------------------

TEST_F(InvTest, NoTempFilesPassesOnACleanTree)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    write_all(root + "/run/app.tmp", "the run dir is not the agent's");
    write_all(root + "/.sim/journal-1.bin.tmp", "nor is .sim");
    EXPECT_PASS(run(otasim_inv_no_temp_files));
}

TEST_F(InvTest, NoTempFilesFailsOnATempFile)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    write_all(root + "/opt/app/current.tmp", "x");
    auto c = run(otasim_inv_no_temp_files);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "current.tmp"), nullptr) << c.detail;
}

TEST_F(InvTest, NoTempFilesFailsOnAPartFileDeepInTheTree)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    write_all(root + "/opt/app/b/share/x.part", "x");
    EXPECT_FAIL(run(otasim_inv_no_temp_files));
}

TEST_F(InvTest, NoTempFilesFailsOnAStashLeft)
{
    app_tree("b");
    status_app("IDLE", "2.0.0", "b");
    write_all(root + "/.sim/stash/7.4242", "x");
    EXPECT_FAIL(run(otasim_inv_no_temp_files));
}

TEST_F(InvTest, NoTempFilesFailsOnADownloadLeftWhileIdle)
{
    app_tree("b");
    write_all(root + "/var/lib/ota/download/payload", "x");
    status_app("DOWNLOADING", "1.0.0", "a");
    EXPECT_PASS(run(otasim_inv_no_temp_files)); // mid-update: it belongs there
    status_app("IDLE", "2.0.0", "b");
    EXPECT_FAIL(run(otasim_inv_no_temp_files));
}

// ---- expected-outcome -----------------------------------------------------------------

TEST_F(InvTest, ExpectedOutcomeChecksVersionSlotAndReport)
{
    snprintf(sc.expect.version, sizeof(sc.expect.version), "2.0.0");
    snprintf(sc.expect.slot, sizeof(sc.expect.slot), "b");
    sc.expect.report = OTASIM_EXPECT_REPORT_SUCCESS;
    status_app("IDLE", "2.0.0", "b");
    reports(R"([{"status":"success","version":"2.0.0"}])");
    EXPECT_PASS(run(otasim_inv_expected_outcome));
    reports(R"([{"status":"failure","version":"2.0.0"}])");
    EXPECT_FAIL(run(otasim_inv_expected_outcome));
    reports(R"([{"status":"success","version":"2.0.0"}])");
    status_app("IDLE", "1.0.0", "a");
    EXPECT_FAIL(run(otasim_inv_expected_outcome));
}

TEST_F(InvTest, ExpectedOutcomeRecoveryBound)
{
    sc.expect.recover_within_s = 30;
    settle.recover_ms = 29000;
    EXPECT_PASS(run(otasim_inv_expected_outcome));
    settle.recover_ms = 31000;
    EXPECT_FAIL(run(otasim_inv_expected_outcome));
}

// The matrix's progress expectation: after a power cut in a good update the
// update completes, unless the agent found HEALTH_CHECK (then it rolls back).
class ProgressTest : public InvTest
{
  protected:
    void SetUp() override
    {
        InvTest::SetUp();
        snprintf(sc.expect.version, sizeof(sc.expect.version), "2.0.0");
        snprintf(sc.expect.slot, sizeof(sc.expect.slot), "b");
        sc.expect.report = OTASIM_EXPECT_REPORT_SUCCESS;
        struct otasim_expect_unless *u = &sc.expect.unless[0];
        snprintf(u->found[0], sizeof(u->found[0]), "HEALTH_CHECK");
        u->n_found = 1;
        snprintf(u->version, sizeof(u->version), "1.0.0");
        snprintf(u->slot, sizeof(u->slot), "a");
        u->report = OTASIM_EXPECT_REPORT_FAILURE;
        snprintf(u->why, sizeof(u->why), "an interrupted health window cannot vouch");
        sc.expect.n_unless = 1;
        tr.fault.kind = OTASIM_FAULT_POWER_CUT;
        tr.fault.trigger.kind = OTASIM_TRIGGER_POINT;
        tr.fault.trigger.point = 40;
        tr.fired = 1;
    }
    // Pass 1 cut after it made `durable` durable; pass 2 found it.
    void cut_in(const char *durable)
    {
        {
            Journal j(journal_path(1));
            j.state("IDLE", "CHECKING");
            j.call(OTASIM_OP_WRITE, root + "/var/lib/ota/agent.db-wal", "", 4096);
            j.call(OTASIM_OP_FSYNC, root + "/var/lib/ota/agent.db-wal");
            j.event(OTASIM_OP_CRASH, "power");
        }
        {
            Journal j(journal_path(2));
            j.state(durable, strcmp(durable, "HEALTH_CHECK") == 0 ? "ROLLING_BACK" : "IDLE");
        }
        passes(2);
        otasim_inv_view_journals(&v);
    }
    void rolled_back()
    {
        status_app("IDLE", "1.0.0", "a");
        reports(R"([{"status":"failure","version":"2.0.0"}])");
    }
};

TEST_F(ProgressTest, FoundStateIsTheFirstLineAfterTheCut)
{
    cut_in("SWITCHING");
    EXPECT_STREQ(v.found_state, "SWITCHING");
}

TEST_F(ProgressTest, NoCutNoFoundState)
{
    {
        Journal j(journal_path(1));
        j.state("SWITCHING", "HEALTH_CHECK");
    }
    passes(1);
    otasim_inv_view_journals(&v);
    EXPECT_STREQ(v.found_state, "");
}

TEST_F(ProgressTest, CompletedUpdatePasses)
{
    cut_in("SWITCHING");
    status_app("IDLE", "2.0.0", "b");
    reports(R"([{"status":"success","version":"2.0.0"}])");
    EXPECT_PASS(run(otasim_inv_expected_outcome));
}

TEST_F(ProgressTest, AbandoningAGoodUpdateOnInterruptionFails)
{
    // The agent answered the cut in SWITCHING by rolling back: the device
    // is consistent and the report truthful, but the good update is lost.
    cut_in("SWITCHING");
    rolled_back();
    auto c = run(otasim_inv_expected_outcome);
    EXPECT_FAIL(c);
    EXPECT_NE(strstr(c.detail, "found SWITCHING"), nullptr) << c.detail;
}

TEST_F(ProgressTest, RollbackAfterAnInterruptedHealthCheckIsExpected)
{
    cut_in("HEALTH_CHECK");
    rolled_back();
    auto c = run(otasim_inv_expected_outcome);
    EXPECT_PASS(c);
    EXPECT_NE(strstr(c.detail, "cannot vouch"), nullptr) << c.detail;
    // and there the rollback is required: committing after all is a failure
    status_app("IDLE", "2.0.0", "b");
    reports(R"([{"status":"success","version":"2.0.0"}])");
    EXPECT_FAIL(run(otasim_inv_expected_outcome));
}

TEST_F(ProgressTest, WithoutJournalsAStateTriggerNamesTheFoundState)
{
    // QEMU: no journal; the trigger's state was durable before its line
    d.qemu = 1;
    tr.fault.trigger.kind = OTASIM_TRIGGER_STATE;
    snprintf(tr.fault.trigger.state, sizeof(tr.fault.trigger.state), "HEALTH_CHECK");
    rolled_back();
    EXPECT_PASS(run(otasim_inv_expected_outcome));
    snprintf(tr.fault.trigger.state, sizeof(tr.fault.trigger.state), "INSTALLING");
    EXPECT_FAIL(run(otasim_inv_expected_outcome));
}

// ---- the database copy ------------------------------------------------------------------

TEST_F(DbTest, CopyReplacesAnOldCopyAndItsWal)
{
    make_db(false);
    write_all(root + "/.sim/db-copy/agent.db-wal", "stale wal of an older copy");
    copy();
    ASSERT_TRUE(v.db_copy[0]) << v.db_copy_err;
    EXPECT_FALSE(fs::exists(std::string(v.db_copy) + "-wal"));
    EXPECT_PASS(run(otasim_inv_db_integrity));
}

// The whole view, loaded the way the checker loads it, over the real
// `ota-agent status`: `status` only reads (docs/DESIGN.md "Commands that only
// look"): on a broken database it says so (exit 5, no JSON) and leaves it as it
// is; the view has no status then, and the checks of the database fail on the
// copy taken first.
TEST_F(DbTest, ViewLoadChecksTheDatabaseAsTheAgentLeftIt)
{
    const std::string agent = OTA_BINARY_DIR "/agent/ota-agent";
    const std::string pack = OTA_BINARY_DIR "/agent/pack/ota-pack";
    ASSERT_EQ(access(agent.c_str(), X_OK), 0) << agent;
    ASSERT_EQ(access(pack.c_str(), X_OK), 0) << pack;
    std::string keygen = pack + " keygen --private " + dir + "/k.key --public " + dir +
                         "/k.pub --force >/dev/null 2>&1";
    ASSERT_EQ(system(keygen.c_str()), 0);
    snprintf(sc.source, sizeof(sc.source), "github"); // no server to ask
    app_tree("a", false);
    snprintf(d.config, sizeof(d.config), "%s/etc/ota-agent.conf", root.c_str());
    write_all(d.config, "[agent]\nsource = github\nserver = http://127.0.0.1:9\n"
                        "repo = sim/video-app\ndevice_id = dev-test\ndevice_type = rpi3b\n"
                        "public_key = " +
                            dir + "/k.pub\ndatabase = " + db() + "\n[app]\nroot = " + root +
                            "/opt/app\n[download]\ndir = " + root + "/var/lib/ota/download\n");
    struct otasim_tools tools = {};
    snprintf(tools.agent, sizeof(tools.agent), "%s", agent.c_str());
    d.tools = &tools;
    make_db(false);
    std::string bytes = read_all(db());
    for (size_t i = 20000; i < 24000; i++)
        bytes[i] = (char)(i * 7);
    write_all(db(), bytes);

    struct otasim_inv_view lv = {};
    ASSERT_EQ(otasim_inv_view_load(&d, nullptr, 0, &settle, nullptr, 0, &lv, &err), 0)
        << err.reason;
    EXPECT_EQ(lv.status, nullptr);
    EXPECT_NE(std::string(lv.status_err), "") << "status failed without saying why";
    // `status` left the broken database where it was
    EXPECT_FALSE(fs::exists(db() + ".broken"));
    EXPECT_EQ(read_all(db()), bytes);
    struct otasim_check c = {};
    ASSERT_EQ(otasim_inv_db_integrity(&lv, &c), 1);
    EXPECT_FAIL(c);
    // no journal for the passes: the journal checks fail, not pass
    EXPECT_TRUE(lv.writes.read);
    ASSERT_EQ(otasim_inv_lkg_untouched(&lv, &c), 1);
    EXPECT_FAIL(c);
    otasim_inv_view_free(&lv);

    // and a sound database passes, through the same path
    fs::remove(db());
    for (const char *sfx : {".broken", ".broken-wal", ".broken-shm", "-wal", "-shm"})
        fs::remove(db() + sfx);
    make_db(false);
    ASSERT_EQ(otasim_inv_view_load(&d, nullptr, 0, &settle, nullptr, 0, &lv, &err), 0)
        << err.reason;
    ASSERT_EQ(otasim_inv_db_integrity(&lv, &c), 1);
    EXPECT_PASS(c);
    otasim_inv_view_free(&lv);
}

} // namespace
