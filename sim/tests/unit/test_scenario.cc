// Scenario files: the parts of the language for kernels that hang, the
// watchdog and recovery mode (scenarios/README.md), and the clear errors of
// bad input there.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "otasim/scenario.h"

namespace
{

const char *kRootfs = "device: {profile: rootfs, health_window_ms: 0%s}\n"
                      "releases:\n"
                      "  - {version: \"1.0.0\", variant: good, factory: true}\n"
                      "  - {version: \"2.0.0\", variant: good}\n"
                      "%s";

std::string rootfs(const std::string &device, const std::string &rest)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), kRootfs, device.c_str(), rest.c_str());
    return buf;
}

struct Parsed {
    int r;
    struct otasim_scenario s;
    std::string why;
};

Parsed parse(const std::string &text)
{
    Parsed p = {};
    struct ota_err err = {};
    p.r = otasim_scenario_parse(text.c_str(), text.size(), "t.yaml", &p.s, &err);
    p.why = err.reason;
    if (p.r == 0)
        otasim_scenario_release(&p.s);
    return p;
}

TEST(ScenarioHang, KernelHangDefaultsToTheTargetOnEveryBoot)
{
    Parsed p = parse(rootfs("", "fault: {kind: kernel-hang}\n"));
    ASSERT_EQ(p.r, 0) << p.why;
    EXPECT_EQ(p.s.fault.kind, OTASIM_FAULT_KERNEL_HANG);
    EXPECT_STREQ(otasim_fault_kind_names[p.s.fault.kind], "kernel-hang");
    EXPECT_STREQ(p.s.fault.release, "2.0.0");
    EXPECT_EQ(p.s.fault.count, 0);
    EXPECT_EQ(p.s.no_watchdog, 0); // the watchdog is on unless said
    EXPECT_EQ(p.s.watchdog_ms, 0);
    EXPECT_EQ(p.s.expect.recovery, 0);
}

TEST(ScenarioHang, KernelHangOfTheOldReleaseAtAStateForItsFirstBoots)
{
    Parsed p = parse(rootfs(", watchdog: false, watchdog_ms: 8000",
                            "fault: {kind: kernel-hang, release: \"1.0.0\", count: 2, "
                            "trigger: {state: REBOOTING}}\n"
                            "expect: {recovery: true, report: none}\n"));
    ASSERT_EQ(p.r, 0) << p.why;
    EXPECT_STREQ(p.s.fault.release, "1.0.0");
    EXPECT_EQ(p.s.fault.count, 2);
    EXPECT_EQ(p.s.fault.trigger.kind, OTASIM_TRIGGER_STATE);
    EXPECT_EQ(p.s.no_watchdog, 1);
    EXPECT_EQ(p.s.watchdog_ms, 8000);
    EXPECT_EQ(p.s.expect.recovery, 1);
    enum otasim_fault_kind k;
    struct ota_err err = {};
    ASSERT_EQ(otasim_fault_kind_parse("kernel-hang", &k, &err), 0) << err.reason;
    EXPECT_EQ(k, OTASIM_FAULT_KERNEL_HANG);
}

TEST(ScenarioHang, BadInputIsAClearError)
{
    struct {
        std::string text, why;
    } cases[] = {
        {rootfs("", "fault: {kind: kernel-hang, release: \"9.9.9\"}\n"),
         "fault.release: '9.9.9' is not one of the releases"},
        {rootfs("", "fault: {kind: power-cut, release: \"1.0.0\"}\n"),
         "fault.release: only for kind kernel-hang"},
        {rootfs("", "fault: {kind: kernel-hang, trigger: {point: 3}}\n"),
         "kernel-hang: for the rootfs profile, at the start or at a state"},
        {rootfs(", watchdog: 1", ""), "watchdog"},
        {rootfs(", watchdog_ms: 10", ""), "watchdog_ms"},
        {"device: {profile: app, watchdog: false}\n"
         "releases:\n  - {version: \"1.0.0\", variant: video-app, factory: true}\n",
         "device.watchdog: for the rootfs profile"},
        {"device: {profile: app}\n"
         "releases:\n  - {version: \"1.0.0\", variant: video-app, factory: true}\n"
         "  - {version: \"2.0.0\", variant: video-app-v2}\n"
         "fault: {kind: kernel-hang}\n",
         "kernel-hang: for the rootfs profile, at the start or at a state"},
        {"device: {profile: app}\n"
         "releases:\n  - {version: \"1.0.0\", variant: video-app, factory: true}\n"
         "expect: {recovery: true}\n",
         "expect.recovery: for the rootfs profile"},
    };
    for (const auto &c : cases) {
        Parsed p = parse(c.text);
        EXPECT_LT(p.r, 0) << c.text;
        EXPECT_NE(p.why.find(c.why), std::string::npos) << "'" << p.why << "' for:\n" << c.text;
    }
}

} // namespace
