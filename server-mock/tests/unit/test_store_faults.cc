// Unit tests for the applied-fault counts of src/store.c: counted per
// device and rule, listed by device, kept across a close and a reopen,
// cleared on demand; a request without a device counts under "".
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <jansson.h>
#include <unistd.h>

extern "C" {
#include "otasrv/store.h"
}

#include "tmpdb.h"

namespace
{

// {rule: applied} of one device, as "rule=N,rule=N" (sorted by rule).
std::string counts(otasrv_store *s, const char *device)
{
    json_t *all = nullptr;
    ota_err err{};
    std::string out;

    EXPECT_EQ(otasrv_store_faults_applied(s, device, &all, &err), 0) << err.reason;
    if (!all)
        return "?";
    size_t i, k;
    json_t *dev, *rule;
    json_array_foreach(all, i, dev)
    {
        json_array_foreach(json_object_get(dev, "rules"), k, rule)
        {
            if (!out.empty())
                out += ",";
            if (!device)
                out += std::string(json_string_value(json_object_get(dev, "device"))) + ":";
            out += json_string_value(json_object_get(rule, "rule"));
            out += "=" + std::to_string(json_integer_value(json_object_get(rule, "applied")));
        }
    }
    json_decref(all);
    return out;
}

TEST(StoreFaults, CountsPerDeviceAndRuleAndSurvivesAReopen)
{
    std::string path = temp_db();
    otasrv_store *s = nullptr;
    ota_err err{};

    ASSERT_EQ(otasrv_store_open(path.c_str(), 2, &s, &err), 0) << err.reason;
    EXPECT_EQ(counts(s, "dev-a"), "");
    ASSERT_EQ(otasrv_store_fault_applied(s, "dev-a", "cut-0", "truncate", 100, &err), 0);
    ASSERT_EQ(otasrv_store_fault_applied(s, "dev-a", "cut-0", "truncate", 200, &err), 0);
    ASSERT_EQ(otasrv_store_fault_applied(s, "dev-a", "busy-0", "status", 150, &err), 0);
    ASSERT_EQ(otasrv_store_fault_applied(s, "dev-b", "cut-1", "truncate", 300, &err), 0);
    ASSERT_EQ(otasrv_store_fault_applied(s, nullptr, "any", "delay", 400, &err), 0);
    EXPECT_EQ(counts(s, "dev-a"), "busy-0=1,cut-0=2");
    EXPECT_EQ(counts(s, "dev-b"), "cut-1=1");
    EXPECT_EQ(counts(s, "dev-zz"), "");
    EXPECT_EQ(counts(s, nullptr), ":any=1,dev-a:busy-0=1,dev-a:cut-0=2,dev-b:cut-1=1");

    json_t *one = nullptr;
    ASSERT_EQ(otasrv_store_faults_applied(s, "dev-a", &one, &err), 0);
    json_t *cut = json_array_get(json_object_get(json_array_get(one, 0), "rules"), 1);
    EXPECT_STREQ(json_string_value(json_object_get(cut, "kind")), "truncate");
    EXPECT_EQ(json_integer_value(json_object_get(cut, "first_ms")), 100);
    EXPECT_EQ(json_integer_value(json_object_get(cut, "last_ms")), 200);
    json_decref(one);
    otasrv_store_close(s);

    s = nullptr;
    ASSERT_EQ(otasrv_store_open(path.c_str(), 1, &s, &err), 0) << err.reason;
    EXPECT_EQ(counts(s, "dev-a"), "busy-0=1,cut-0=2");
    ASSERT_EQ(otasrv_store_faults_applied_clear(s, &err), 0) << err.reason;
    EXPECT_EQ(counts(s, nullptr), "");
    otasrv_store_close(s);
    remove_db(path);
}

} // namespace
