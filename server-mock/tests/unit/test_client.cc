// Unit tests for src/client.c, the admin commands' HTTP client over
// libcurl, against a real server of the library on a free port: statuses
// and bodies, the Bearer token, JSON bodies, the error mapping, and two
// transfers run by a libcurl multi loop through the same structs.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <curl/curl.h>
#include <fstream>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <vector>

extern "C" {
#include "otasrv/cli.h"
#include "otasrv/client.h"
}

namespace
{

// A server of the library, run by its command line in a thread of the test
// ("serve" waits for SIGTERM in that thread: pthread_kill ends it).
class Client : public testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/srvclient-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        args = {"ota-server",    "serve",        "--port",    "0",          "--port-file",
                dir + "/port",   "--db",         dir + "/db", "--data-dir", dir + "/data",
                "--admin-token", "admin-secret", "--threads", "2",          "--open-enrollment"};
        ASSERT_EQ(pthread_create(&thread, nullptr, serve, this), 0);
        std::string port;
        for (int i = 0; i < 500 && port.empty(); i++) {
            std::ifstream f(dir + "/port");
            if (!(f >> port))
                usleep(10000);
        }
        ASSERT_FALSE(port.empty()) << "the server did not start";
        base = "http://127.0.0.1:" + port;
    }
    void TearDown() override
    {
        pthread_kill(thread, SIGTERM);
        pthread_join(thread, nullptr);
        EXPECT_EQ(exit_code, 0);
        std::string cmd = "rm -rf '" + dir + "'";
        ASSERT_EQ(system(cmd.c_str()), 0);
    }
    static void *serve(void *ctx)
    {
        auto *self = static_cast<Client *>(ctx);
        std::vector<char *> argv;
        for (auto &a : self->args)
            argv.push_back(&a[0]);
        argv.push_back(nullptr);
        self->exit_code = otasrv_cli_main((int)self->args.size(), argv.data());
        return nullptr;
    }
    std::string dir, base;
    std::vector<std::string> args;
    pthread_t thread{};
    int exit_code = -1;
};

TEST_F(Client, StatusBodyAndToken)
{
    otasrv_client_req req{base.c_str(), "GET", "/api/v1/releases", nullptr, nullptr, nullptr};
    otasrv_client_resp resp{};
    ota_err err{};

    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_EQ(resp.status, 401);
    EXPECT_NE(std::string(resp.body).find("\"detail\""), std::string::npos);
    EXPECT_EQ(strlen(resp.body), resp.len);
    otasrv_client_resp_free(&resp);

    req.token = "admin-secret";
    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_EQ(resp.status, 200) << resp.body;
    otasrv_client_resp_free(&resp);

    std::string prefixed = base + "/"; // a trailing slash of the base is not doubled
    req.base = prefixed.c_str();
    req.path = "/no/such/endpoint";
    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_EQ(resp.status, 404);
    otasrv_client_resp_free(&resp);
}

TEST_F(Client, JsonBodyAndABodilessPost)
{
    otasrv_client_req req{base.c_str(),
                          "POST",
                          "/api/v1/devices/register",
                          nullptr,
                          "{\"device_id\": \"dev-1\", \"token\": \"t1\"}",
                          nullptr};
    otasrv_client_resp resp{};
    ota_err err{};

    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_LT(resp.status, 500) << resp.body;
    EXPECT_NE(resp.status, 415) << resp.body;
    otasrv_client_resp_free(&resp);

    req.body = "not json";
    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_EQ(resp.status, 400) << resp.body;
    otasrv_client_resp_free(&resp);

    req.body = nullptr; // an empty body is still a request
    ASSERT_EQ(otasrv_client_request(&req, &resp, &err), 0) << err.reason;
    EXPECT_EQ(resp.status, 400) << resp.body;
    otasrv_client_resp_free(&resp);
}

TEST(ClientErrors, MappedToErrno)
{
    otasrv_client_req req{"https://127.0.0.1:1", "GET", "/", nullptr, nullptr, nullptr};
    otasrv_client_resp resp{};
    ota_err err{};

    EXPECT_EQ(otasrv_client_request(&req, &resp, &err), -EINVAL);
    EXPECT_NE(strstr(err.reason, "not an http://host:port URL"), nullptr) << err.reason;

    ota_err e2{};
    req.base = "http://127.0.0.1:1"; // nothing listens on port 1
    EXPECT_EQ(otasrv_client_request(&req, &resp, &e2), -ECONNREFUSED) << e2.reason;
    EXPECT_NE(strstr(e2.reason, "http://127.0.0.1:1/"), nullptr) << e2.reason;

    ota_err e3{};
    req.file = "/nonexistent/payload";
    req.method = "PUT";
    EXPECT_EQ(otasrv_client_request(&req, &resp, &e3), -ENOENT) << e3.reason;
    EXPECT_EQ(resp.body, nullptr);
}

TEST_F(Client, TransfersInAMultiLoop)
{
    otasrv_client_req a{base.c_str(), "GET", "/api/v1/releases", "admin-secret", nullptr, nullptr};
    otasrv_client_req b{base.c_str(), "GET", "/api/v1/devices", nullptr, nullptr, nullptr};
    otasrv_client_resp ra{}, rb{};
    otasrv_client_xfer *xa = nullptr, *xb = nullptr;
    ota_err err{};

    ASSERT_EQ(otasrv_client_xfer_new(&a, &ra, &xa, &err), 0) << err.reason;
    ASSERT_EQ(otasrv_client_xfer_new(&b, &rb, &xb, &err), 0) << err.reason;
    CURLM *m = curl_multi_init();
    ASSERT_NE(m, nullptr);
    curl_multi_add_handle(m, otasrv_client_xfer_handle(xa));
    curl_multi_add_handle(m, otasrv_client_xfer_handle(xb));
    int running = 1, done = 0;
    while (done < 2) {
        ASSERT_EQ(curl_multi_perform(m, &running), CURLM_OK);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            otasrv_client_xfer *x = msg->easy_handle == otasrv_client_xfer_handle(xa) ? xa : xb;
            EXPECT_EQ(otasrv_client_xfer_done(x, msg->data.result, &err), 0) << err.reason;
            curl_multi_remove_handle(m, msg->easy_handle);
            done++;
        }
        if (done < 2)
            ASSERT_EQ(curl_multi_poll(m, nullptr, 0, 1000, nullptr), CURLM_OK);
    }
    curl_multi_cleanup(m);
    otasrv_client_xfer_free(xa);
    otasrv_client_xfer_free(xb);
    EXPECT_EQ(ra.status, 200) << ra.body;
    EXPECT_EQ(rb.status, 401) << rb.body;
    otasrv_client_resp_free(&ra);
    otasrv_client_resp_free(&rb);
}

} // namespace
