// An agent over a FakeWorld run as `ota-agent update` runs on a device: each
// pass() is a new agent (a new process) over the same store, from start to
// IDLE. The rate-limit tests count the requests such passes make.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "ota/core.h"
#include "fakes.h"

struct PassingAgent {
    FakeWorld &w;
    ota_agent_config cfg{};
    ota_agent_ops ops{};
    ota_agent *a = nullptr;

    // cfg is set by the test's own constructor, which then makes the agent.
    explicit PassingAgent(FakeWorld &world) : w(world)
    {
        ota_agent_config_defaults(&cfg);
        strcpy(cfg.server_url, "http://srv");
        strcpy(cfg.device_id, "dev-1");
        ops = w.ops();
    }
    ~PassingAgent()
    {
        ota_agent_free(a);
    }
    PassingAgent(const PassingAgent &) = delete;
    PassingAgent &operator=(const PassingAgent &) = delete;

    // One pass; "ok: …" or "unreachable: …" with the check's reason.
    std::string pass()
    {
        ota_err err{};
        ota_agent_free(a);
        a = ota_agent_new(&cfg, &ops);
        EXPECT_EQ(ota_agent_start(a, &err), 0) << err.reason;
        EXPECT_EQ(ota_agent_check(a, 0, &err), 0) << err.reason;
        for (int i = 0; i < 100; i++) {
            ota_step st{};
            EXPECT_EQ(ota_agent_step(a, &st, &err), 0) << err.reason;
            if (st.result == OTA_STEP_IDLE)
                break;
        }
        const char *why = "";
        ota_check_result c = ota_agent_last_check(a, &why);
        return std::string(c == OTA_CHECK_UNREACHABLE ? "unreachable: " : "ok: ") + why;
    }
    // Requests so far whose URL contains what.
    size_t requests(const char *what) const
    {
        size_t n = 0;
        for (auto &r : w.requests)
            n += r.find(what) != std::string::npos;
        return n;
    }
};
