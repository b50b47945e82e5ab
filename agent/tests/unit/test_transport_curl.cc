// Transport over libcurl, against the real ota-server (server-mock/) started as
// a child process on 127.0.0.1. What the test needs to see or break on the
// server side comes from its fault plans (docs/protocol.md, "Fault plans"):
// echo shows the request as the server saw it, status/truncate/stall/corrupt/
// ignore_range/content_range/redirect break the answers.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "ota/crypto.h"
#include "ota/drivers.h"
#include "ota/json.h"

namespace
{

const char *const kServer = OTA_SERVER_BIN;
const size_t kPayloadSize = 3 * 1024 * 1024 + 4321;
const char *const kEnroll = "enroll-secret";
const char *const kAdmin = "admin-secret";

// One request on a transport of its own (the fixture's is not there yet).
int OneRequest(const ota_curl_config &cfg, const char *method, const std::string &url,
               const std::string &body, const char *bearer, long *status, std::string *out,
               ota_err *err)
{
    ota_curl *t = nullptr;
    int r = ota_curl_new(&cfg, &t, err);
    if (r < 0)
        return r;
    ota_http_req req = {};
    req.method = method;
    req.url = url.c_str();
    req.body = body.empty() ? nullptr : body.c_str();
    req.bearer = bearer;
    ota_http_resp resp = {};
    r = ota_curl_ops.request(t, &req, &resp, err);
    if (r == 0) {
        *status = resp.status;
        out->assign(resp.body, resp.len);
        free(resp.body);
    }
    ota_curl_free(t);
    return r;
}

// An ota-server child process with its own database and data directory.
struct Server {
    pid_t pid = -1;
    std::string base; // http(s)://127.0.0.1:PORT
    ota_curl_config cfg;

    bool Start(const std::string &dir, const std::vector<std::string> &extra, const char *scheme)
    {
        std::filesystem::create_directories(dir);
        std::string port_file = dir + "/port";
        std::vector<std::string> args = {
            kServer,      "serve",          "--listen", "127.0.0.1",  "--port",
            "0",          "--port-file",    port_file,  "--db",       dir + "/db",
            "--data-dir", dir + "/data",    "--log",    dir + "/log", "--admin-token",
            kAdmin,       "--enroll-token", kEnroll};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        ota_curl_config_defaults(&cfg);
        unlink(port_file.c_str());
        pid = fork();
        if (pid < 0)
            return false;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM); // no orphan server if the test dies
            execv(argv[0], argv.data());
            _exit(127);
        }
        for (int i = 0; i < 200; i++) {
            std::ifstream f(port_file);
            int port = 0;
            if (f >> port && port > 0) {
                base = std::string(scheme) + "://127.0.0.1:" + std::to_string(port);
                return true;
            }
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }

    // An admin call; "" on success, else what went wrong.
    std::string Admin(const char *method, const std::string &path, const std::string &body,
                      long want, std::string *out = nullptr)
    {
        long st = 0;
        std::string got;
        ota_err err = {};
        if (OneRequest(cfg, method, base + path, body, kAdmin, &st, &got, &err) < 0)
            return err.reason;
        if (out)
            *out = got;
        return st == want ? "" : path + ": " + std::to_string(st) + " " + got;
    }

    // Publishes release rel1 (version 2.0.0, for rpi3b) with the payload at path.
    std::string Publish(const std::string &path, size_t size)
    {
        uint8_t d[OTA_SHA256_LEN];
        char hex[OTA_SHA256_HEX], sig[128];
        ota_err err = {};
        if (ota_sha256_file(path.c_str(), size, d, &err) < 0)
            return err.reason;
        ota_hex_encode(d, sizeof(d), hex);
        uint8_t zero[OTA_ED25519_SIG_LEN] = {}; // the server checks signatures only with a key
        ota_b64_encode(zero, sizeof(zero), sig);
        std::string manifest = R"({"schema":1,"name":"p","version":"2.0.0","kind":"app",)"
                               R"("format":"tar.gz","payload":"p.bin","size":)" +
                               std::to_string(size) + R"(,"sha256":")" + hex +
                               R"(","installed_size":1,"device_types":["rpi3b"],)"
                               R"("min_version":"","rollback":false,"created":1})";
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:b}", "id", "rel1", "manifest", manifest.c_str(),
                              "signature", sig, "payload_path", path.c_str(), "publish", 1);
        char *text = json_dumps(j, JSON_COMPACT);
        std::string body = text;
        free(text);
        json_decref(j);
        return Admin("POST", "/api/v1/releases", body, 201);
    }

    void Stop()
    {
        if (pid <= 0)
            return;
        kill(pid, SIGTERM);
        int st;
        waitpid(pid, &st, 0);
        pid = -1;
    }
};

// Records what the transport hands to the sink.
struct Rec {
    int headers_calls = 0;
    long status = 0;
    std::string content_range;
    int64_t content_length = -2;
    std::string etag;
    std::vector<uint8_t> data;
    int headers_rc = 0; // returned by on_headers
    int data_rc = 0;    // returned by on_data once data_fail_at bytes are in
    size_t data_fail_at = 0;
};

int RecHeaders(void *ctx, long status, const char *cr, int64_t cl, const char *etag)
{
    Rec *r = static_cast<Rec *>(ctx);
    r->headers_calls++;
    r->status = status;
    r->content_range = cr ? cr : "";
    r->content_length = cl;
    r->etag = etag ? etag : "";
    return r->headers_rc;
}

int RecData(void *ctx, const void *buf, size_t n)
{
    Rec *r = static_cast<Rec *>(ctx);
    EXPECT_EQ(r->headers_calls, 1);
    const uint8_t *p = static_cast<const uint8_t *>(buf);
    r->data.insert(r->data.end(), p, p + n);
    if (r->data_rc < 0 && r->data.size() >= r->data_fail_at)
        return r->data_rc;
    return 0;
}

class TransportCurl : public ::testing::Test
{
  protected:
    static void SetUpTestSuite()
    {
        char tmpl[] = "/tmp/ota-test-curl-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::string rel = dir_ + "/payload";
        std::filesystem::create_directories(rel);
        payload_.resize(kPayloadSize);
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (auto &b : payload_) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b = static_cast<uint8_t>(x >> 24);
        }
        std::ofstream(rel + "/p.bin", std::ios::binary)
            .write(reinterpret_cast<const char *>(payload_.data()), payload_.size());
        ASSERT_TRUE(server_.Start(dir_ + "/srv", {}, "http")) << kServer << " did not start";
        std::string e = server_.Publish(rel + "/p.bin", kPayloadSize);
        ASSERT_EQ(e, "");
    }

    static void TearDownTestSuite()
    {
        server_.Stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    void SetUp() override
    {
        ASSERT_FALSE(server_.base.empty()) << "no ota-server";
        ota_curl_config_defaults(&cfg_);
        ASSERT_EQ(ota_curl_new(&cfg_, &t_, &err_), 0) << err_.reason;
        Faults("[]"); // no faults left by the test before
    }

    void TearDown() override
    {
        ota_curl_free(t_);
    }

    // Rebuilds the transport with cfg_.
    void Renew()
    {
        ota_curl_free(t_);
        t_ = nullptr;
        ASSERT_EQ(ota_curl_new(&cfg_, &t_, &err_), 0) << err_.reason;
    }

    int Request(const char *method, const std::string &url, const char *body, const char *bearer,
                long *status, std::string *out)
    {
        ota_http_req req = {}; // timeout_ms 0: the default (garbage timed out in optimized builds)
        req.method = method;
        req.url = url.c_str();
        req.body = body;
        req.bearer = bearer;
        ota_http_resp resp = {};
        ota_err_clear(&err_);
        int r = ota_curl_ops.request(t_, &req, &resp, &err_);
        if (r == 0) {
            *status = resp.status;
            EXPECT_NE(resp.body, nullptr);
            EXPECT_EQ(resp.body[resp.len], '\0');
            out->assign(resp.body, resp.len);
            free(resp.body);
        }
        return r;
    }

    int Get(const std::string &path, long *status, std::string *out, const char *bearer = nullptr)
    {
        return Request("GET", server_.base + path, nullptr, bearer, status, out);
    }

    int Post(const std::string &path, const char *body, long *status, std::string *out,
             const char *bearer = nullptr)
    {
        return Request("POST", server_.base + path, body, bearer, status, out);
    }

    // Replaces the server's fault plan with these rules (a JSON array).
    void Faults(const std::string &rules)
    {
        long st;
        std::string body;
        std::string plan = R"({"rules":)" + rules + "}";
        ASSERT_EQ(Post("/api/v1/faults", plan.c_str(), &st, &body, kAdmin), 0) << err_.reason;
        ASSERT_EQ(st, 200) << body;
    }

    // A JSON rule: fault on requests to path (one-shot with count 1).
    static std::string Rule(const char *id, const std::string &path, const std::string &fault,
                            int count = 0, const std::string &more_match = "")
    {
        return std::string(R"({"id":")") + id + R"(","match":{"path":")" + path + "\"" +
               more_match + R"(},"fault":)" + fault +
               (count ? R"(,"count":)" + std::to_string(count) : std::string()) + "}";
    }

    int Download(const std::string &path, uint64_t offset, const char *etag, Rec *rec,
                 const char *bearer = nullptr)
    {
        ota_dl_sink sink;
        sink.ctx = rec;
        sink.on_headers = RecHeaders;
        sink.on_data = RecData;
        ota_err_clear(&err_);
        std::string url = server_.base + path;
        return ota_curl_ops.download(t_, url.c_str(), bearer, offset, etag, &sink, &err_);
    }

    // Registers a device; returns its token.
    std::string Register(const char *id)
    {
        long st = 0;
        std::string body;
        std::string req = std::string(R"({"device_id":")") + id +
                          R"(","device_type":"rpi3b",)"
                          R"("versions":{"app":"1.0.0"}})";
        EXPECT_EQ(Post("/api/v1/devices/register", req.c_str(), &st, &body, kEnroll), 0)
            << err_.reason;
        EXPECT_EQ(st, 201) << body;
        json_t *j = nullptr;
        char token[256] = "";
        if (ota_json_parse(body.c_str(), body.size(), &j, &err_) == 0) {
            EXPECT_EQ(ota_json_str(j, "token", token, sizeof(token), &err_), 0);
            json_decref(j);
        }
        return token;
    }

    std::vector<uint8_t> Tail(uint64_t from)
    {
        return std::vector<uint8_t>(payload_.begin() + from, payload_.end());
    }

    static std::string dir_;
    static std::vector<uint8_t> payload_;
    static Server server_;
    ota_curl_config cfg_;
    ota_curl *t_ = nullptr;
    ota_err err_ = {};
};

std::string TransportCurl::dir_;
std::vector<uint8_t> TransportCurl::payload_;
Server TransportCurl::server_;

// The payload as the GitHub face serves it (no auth), and a path that a
// redirect fault sends there.
const char *const kAsset = "/owner/repo/releases/download/rel1/p.bin";
const char *const kMoved = "/moved/p.bin";

TEST(TransportCurlConfig, Defaults)
{
    ota_curl_config c;
    ota_curl_config_defaults(&c);
    EXPECT_STREQ(c.ca_file, "");
    EXPECT_EQ(c.connect_timeout_s, 10);
    EXPECT_EQ(c.low_speed_bytes, 1);
    EXPECT_EQ(c.low_speed_time_s, 30);
    EXPECT_EQ(c.request_timeout_s, 30);
    EXPECT_EQ(c.max_bytes_per_s, 0);
    EXPECT_EQ(strncmp(c.user_agent, "ota-agent/", 10), 0);
    ota_curl_free(nullptr);
}

// libcurl is loaded by the first request, not at start nor by ota_curl_new
// (lazy_libs.c): commands that never talk to the server must not pay for it.
// Checked in a fresh process (threadsafe death test: the binary re-executed),
// since other tests of this binary load it.
static bool CurlLoaded()
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != nullptr;
}

static void NewThenRequest()
{
    ota_curl_config c;
    ota_curl_config_defaults(&c);
    c.connect_timeout_s = 2;
    ota_curl *t = nullptr;
    ota_err err = {};
    if (CurlLoaded())
        _exit(2);
    if (ota_curl_new(&c, &t, &err) < 0 || CurlLoaded())
        _exit(3);
    ota_http_req req = {};
    req.method = "GET";
    req.url = "http://127.0.0.1:1/nothing-listens-here";
    ota_http_resp resp = {};
    if (ota_curl_ops.request(t, &req, &resp, &err) == 0) // refused: an error is expected
        _exit(4);
    if (!CurlLoaded())
        _exit(5);
    ota_curl_free(t);
    _exit(0);
}

TEST(TransportCurlLazy, LoadedByTheFirstRequestOnly)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(NewThenRequest(), ::testing::ExitedWithCode(0), "");
}

TEST_F(TransportCurl, RequestStatusesAndBodies)
{
    long st = 0;
    std::string body;
    ASSERT_EQ(Get("/repos/owner/repo/releases/tags/v9.9.9", &st, &body), 0) << err_.reason;
    EXPECT_EQ(st, 404);
    EXPECT_NE(body.find("\"detail\""), std::string::npos);

    ASSERT_EQ(Get("/repos/owner/repo/releases/latest", &st, &body), 0);
    EXPECT_EQ(st, 200);
    EXPECT_NE(body.find("\"tag_name\":\"v2.0.0\""), std::string::npos) << body;

    ASSERT_EQ(Post("/api/v1/devices/register", R"({"device_id":"d1"})", &st, &body, "wrong"), 0);
    EXPECT_EQ(st, 401);
    ASSERT_EQ(Get("/no/such/thing", &st, &body), 0);
    EXPECT_EQ(st, 404);
}

TEST_F(TransportCurl, RequestSendsJsonHeadersAndBearer)
{
    long st = 0;
    std::string body;
    Faults("[" + Rule("echo", "/echo", R"({"kind":"echo"})") + "]");
    ASSERT_EQ(Post("/echo", R"({"a":1})", &st, &body, "tok-123"), 0) << err_.reason;
    ASSERT_EQ(st, 200) << body;
    json_t *j = nullptr;
    ASSERT_EQ(ota_json_parse(body.c_str(), body.size(), &j, &err_), 0) << body;
    json_t *h = json_object_get(j, "headers");
    ASSERT_NE(h, nullptr);
    EXPECT_STREQ(json_string_value(json_object_get(h, "content-type")), "application/json");
    EXPECT_STREQ(json_string_value(json_object_get(h, "accept")), "application/json");
    EXPECT_STREQ(json_string_value(json_object_get(h, "authorization")), "Bearer tok-123");
    EXPECT_EQ(strncmp(json_string_value(json_object_get(h, "user-agent")), "ota-agent/", 10), 0);
    EXPECT_STREQ(json_string_value(json_object_get(j, "method")), "POST");
    EXPECT_STREQ(json_string_value(json_object_get(j, "body")), R"({"a":1})");
    json_decref(j);

    ASSERT_EQ(Get("/echo", &st, &body), 0);
    ASSERT_EQ(ota_json_parse(body.c_str(), body.size(), &j, &err_), 0) << body;
    EXPECT_STREQ(json_string_value(json_object_get(j, "method")), "GET");
    EXPECT_EQ(json_object_get(json_object_get(j, "headers"), "authorization"), nullptr);
    json_decref(j);
}

TEST_F(TransportCurl, FleetRoundTrip)
{
    std::string tok = Register("dev-1");
    ASSERT_FALSE(tok.empty());
    long st = 0;
    std::string body;
    // No rollout on this server: it offers its newest release for the device type.
    ASSERT_EQ(Post("/api/v1/devices/dev-1/checkin", R"({"state":"IDLE"})", &st, &body, tok.c_str()),
              0);
    EXPECT_EQ(st, 200);
    EXPECT_NE(body.find("\"update_id\":\"rel-rel1\""), std::string::npos) << body;
    EXPECT_NE(body.find("/api/v1/releases/rel1/payload"), std::string::npos) << body;

    const char *rep = R"({"update_id":"rel-rel1","version":"2.0.0",)"
                      R"("kind":"app","state":"DOWNLOADING","status":"in_progress",)"
                      R"("reason":"","ts":1})";
    ASSERT_EQ(Post("/api/v1/devices/dev-1/status", rep, &st, &body, tok.c_str()), 0);
    EXPECT_EQ(st, 200) << body;
    ASSERT_EQ(Post("/api/v1/devices/dev-1/status", rep, &st, &body, "bad-token"), 0);
    EXPECT_EQ(st, 401);
    ASSERT_EQ(Get("/api/v1/reports?device=dev-1", &st, &body, kAdmin), 0);
    EXPECT_NE(body.find("\"state\":\"DOWNLOADING\""), std::string::npos) << body;

    // Payload download needs a device token.
    Rec ok;
    ASSERT_EQ(Download("/api/v1/releases/rel1/payload", 0, "", &ok, tok.c_str()), 0) << err_.reason;
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.data, payload_);
    Rec denied;
    ASSERT_EQ(Download("/api/v1/releases/rel1/payload", 0, "", &denied), 0) << err_.reason;
    EXPECT_EQ(denied.headers_calls, 1);
    EXPECT_EQ(denied.status, 401);
    EXPECT_TRUE(denied.data.empty());

    // Fleet API down: 503 until it is back.
    Faults("[" + Rule("down", "/api/v1/devices/*", R"({"kind":"status","code":503})") + "]");
    ASSERT_EQ(Post("/api/v1/devices/dev-1/checkin", "{}", &st, &body, tok.c_str()), 0);
    EXPECT_EQ(st, 503);
    Faults("[]");
    ASSERT_EQ(Post("/api/v1/devices/dev-1/checkin", "{}", &st, &body, tok.c_str()), 0);
    EXPECT_EQ(st, 200);
}

TEST_F(TransportCurl, RequestErrors)
{
    long st = 0;
    std::string body;
    // Connection refused: a port nobody listens on.
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ASSERT_EQ(getsockname(s, reinterpret_cast<sockaddr *>(&a), &len), 0);
    close(s);
    std::string dead = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
    EXPECT_EQ(Request("GET", dead, nullptr, nullptr, &st, &body), -ECONNREFUSED);
    EXPECT_EQ(err_.code, ECONNREFUSED);
    EXPECT_NE(strstr(err_.reason, "127.0.0.1"), nullptr) << err_.reason;

    // Answers over 1 MiB are refused.
    EXPECT_EQ(Get(kAsset, &st, &body), -EFBIG);
    // Only http and https.
    EXPECT_LT(Request("GET", "file:///etc/passwd", nullptr, nullptr, &st, &body), 0);
    // No header injection, no unknown methods.
    EXPECT_EQ(Get("/echo", &st, &body, "a\r\nX-Evil: 1"), -EINVAL);
    EXPECT_EQ(Request("PUT", server_.base + "/", nullptr, nullptr, &st, &body), -EINVAL);
}

TEST_F(TransportCurl, DownloadWhole)
{
    Rec rec;
    ASSERT_EQ(Download(kAsset, 0, "", &rec), 0) << err_.reason;
    EXPECT_EQ(rec.headers_calls, 1);
    EXPECT_EQ(rec.status, 200);
    EXPECT_EQ(rec.content_length, (int64_t)kPayloadSize);
    EXPECT_EQ(rec.content_range, "");
    EXPECT_FALSE(rec.etag.empty());
    EXPECT_EQ(rec.data, payload_);
}

TEST_F(TransportCurl, DownloadOffsetThroughRedirect)
{
    const uint64_t off = 1000000;
    Rec rec;
    Faults(
        "[" +
        Rule("moved", kMoved, std::string(R"({"kind":"redirect","location":")") + kAsset + "\"}") +
        "]");
    ASSERT_EQ(Download(kMoved, off, nullptr, &rec), 0) << err_.reason;
    EXPECT_EQ(rec.headers_calls, 1);
    EXPECT_EQ(rec.status, 206);
    EXPECT_EQ(rec.content_range, "bytes 1000000-" + std::to_string(kPayloadSize - 1) + "/" +
                                     std::to_string(kPayloadSize));
    EXPECT_EQ(rec.content_length, (int64_t)(kPayloadSize - off));
    EXPECT_FALSE(rec.etag.empty());
    EXPECT_EQ(rec.data, Tail(off));
}

// The bearer token follows a redirect on the same origin, never to another
// host (curl's rule; CURLOPT_UNRESTRICTED_AUTH stays off): echo shows what
// each target really received.
TEST_F(TransportCurl, BearerStaysOnItsOriginThroughRedirects)
{
    const std::string other =
        "http://localhost:" + server_.base.substr(server_.base.rfind(':') + 1);
    long st = 0;
    std::string body;
    Faults("[" + Rule("same", "/same", R"({"kind":"redirect","location":"/echo"})") + "," +
           Rule("away", "/away",
                std::string(R"({"kind":"redirect","location":")") + other + "/echo\"}") +
           "," + Rule("echo", "/echo", R"({"kind":"echo"})") + "]");
    ASSERT_EQ(Get("/same", &st, &body, "tok-123"), 0) << err_.reason;
    EXPECT_EQ(st, 200);
    EXPECT_NE(body.find("\"authorization\":\"Bearer tok-123\""), std::string::npos) << body;
    ASSERT_EQ(Get("/away", &st, &body, "tok-123"), 0) << err_.reason;
    EXPECT_EQ(st, 200);
    EXPECT_NE(body.find("\"path\":\"/echo\""), std::string::npos) << body;
    EXPECT_EQ(body.find("tok-123"), std::string::npos) << body;
    EXPECT_EQ(body.find("authorization"), std::string::npos) << body;
}

TEST_F(TransportCurl, IfRangeEtag)
{
    Rec whole;
    ASSERT_EQ(Download(kAsset, 0, "", &whole), 0);
    ASSERT_FALSE(whole.etag.empty());

    Rec same;
    ASSERT_EQ(Download(kAsset, 5000, whole.etag.c_str(), &same), 0) << err_.reason;
    EXPECT_EQ(same.status, 206);
    EXPECT_EQ(same.etag, whole.etag);
    EXPECT_EQ(same.data, Tail(5000));

    Rec stale;
    ASSERT_EQ(Download(kAsset, 5000, "\"stale\"", &stale), 0) << err_.reason;
    EXPECT_EQ(stale.status, 200);
    EXPECT_EQ(stale.data, payload_);

    // What the server saw: Range and the stale If-Range (echo answers with the request).
    Faults("[" + Rule("echo", kAsset, R"({"kind":"echo"})", 1) + "]");
    Rec seen;
    ASSERT_EQ(Download(kAsset, 5000, "\"stale\"", &seen), 0) << err_.reason;
    EXPECT_EQ(seen.status, 200);
    std::string text(seen.data.begin(), seen.data.end());
    json_t *j = nullptr;
    ASSERT_EQ(ota_json_parse(text.c_str(), text.size(), &j, &err_), 0) << text;
    json_t *h = json_object_get(j, "headers");
    EXPECT_STREQ(json_string_value(json_object_get(h, "range")), "bytes=5000-") << text;
    EXPECT_STREQ(json_string_value(json_object_get(h, "if-range")), "\"stale\"") << text;
    json_decref(j);

    Rec bad;
    EXPECT_EQ(Download(kAsset, 5000, "\"x\"\r\nX-Evil: 1", &bad), -EINVAL);
}

TEST_F(TransportCurl, RangeNotSatisfiable)
{
    Rec rec;
    ASSERT_EQ(Download(kAsset, kPayloadSize + 10, "", &rec), 0) << err_.reason;
    EXPECT_EQ(rec.headers_calls, 1);
    EXPECT_EQ(rec.status, 416);
    EXPECT_EQ(rec.content_range, "bytes */" + std::to_string(kPayloadSize));
    EXPECT_TRUE(rec.data.empty());
}

TEST_F(TransportCurl, TruncatedDownloadFails)
{
    Faults("[" + Rule("cut", kAsset, R"({"kind":"truncate","after_bytes":100000})", 1) + "]");
    Rec rec;
    EXPECT_EQ(Download(kAsset, 0, "", &rec), -EIO);
    EXPECT_EQ(err_.code, EIO);
    EXPECT_EQ(rec.headers_calls, 1);
    ASSERT_EQ(rec.data.size(), 100000u);
    EXPECT_TRUE(std::equal(rec.data.begin(), rec.data.end(), payload_.begin()));
    // One-shot: the next try is whole.
    Rec again;
    EXPECT_EQ(Download(kAsset, 0, "", &again), 0);
    EXPECT_EQ(again.data, payload_);
}

TEST_F(TransportCurl, ServerFaultsReachTheSink)
{
    Faults("[" + Rule("whole", kAsset, R"({"kind":"ignore_range"})") + "]");
    Rec full;
    ASSERT_EQ(Download(kAsset, 4096, "", &full), 0) << err_.reason;
    EXPECT_EQ(full.status, 200);
    EXPECT_EQ(full.data, payload_);

    Faults("[" + Rule("busy", kAsset, R"({"kind":"status","code":503})") + "]");
    Rec busy;
    ASSERT_EQ(Download(kAsset, 0, "", &busy), 0) << err_.reason;
    EXPECT_EQ(busy.headers_calls, 1);
    EXPECT_EQ(busy.status, 503);
    EXPECT_TRUE(busy.data.empty());

    Faults("[" + Rule("flip", kAsset, R"({"kind":"corrupt","offset":12345,"length":1})") + "]");
    Rec bad;
    ASSERT_EQ(Download(kAsset, 0, "", &bad), 0);
    ASSERT_EQ(bad.data.size(), payload_.size());
    EXPECT_EQ(bad.data[12345], payload_[12345] ^ 0xFF);
    bad.data[12345] ^= 0xFF;
    EXPECT_EQ(bad.data, payload_);

    Faults(
        "[" +
        Rule("total", kAsset, R"({"kind":"content_range","total_delta":1000})", 0, R"(,"nth":1)") +
        "," +
        Rule("garbage", kAsset, R"({"kind":"content_range","text":"bytes garbage/??"})", 0,
             R"(,"nth":2)") +
        "]");
    Rec wrong;
    ASSERT_EQ(Download(kAsset, 100, "", &wrong), 0);
    EXPECT_EQ(wrong.status, 206);
    EXPECT_EQ(wrong.content_range, "bytes 100-" + std::to_string(kPayloadSize - 1) + "/" +
                                       std::to_string(kPayloadSize + 1000));
    Rec garbage;
    ASSERT_EQ(Download(kAsset, 100, "", &garbage), 0);
    EXPECT_EQ(garbage.status, 206);
    EXPECT_EQ(garbage.content_range, "bytes garbage/??");
}

TEST_F(TransportCurl, SinkAbortPropagates)
{
    Rec data;
    data.data_rc = -ENOSPC;
    data.data_fail_at = 1;
    EXPECT_EQ(Download(kAsset, 0, "", &data), -ENOSPC);
    EXPECT_EQ(err_.code, ENOSPC);
    EXPECT_LT(data.data.size(), payload_.size());

    Rec headers;
    headers.headers_rc = -ECANCELED;
    EXPECT_EQ(Download(kAsset, 0, "", &headers), -ECANCELED);
    EXPECT_TRUE(headers.data.empty());

    // Also when the body is empty and the headers come last.
    Rec empty;
    empty.headers_rc = -EFBIG;
    EXPECT_EQ(Download(kAsset, kPayloadSize + 1, "", &empty), -EFBIG);
    EXPECT_EQ(empty.headers_calls, 1);
}

TEST_F(TransportCurl, BandwidthLimit)
{
    cfg_.max_bytes_per_s = 512 * 1024;
    Renew();
    const uint64_t off = kPayloadSize - 1024 * 1024;
    Rec rec;
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(Download(kAsset, off, "", &rec), 0) << err_.reason;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(rec.data, Tail(off));
    EXPECT_GE(s, 1.5);
    EXPECT_LT(s, 6.0);
}

TEST_F(TransportCurl, StallTimesOut)
{
    // curl measures the speed over its last 5 s: with the default 1 byte/s,
    // the 1000 bytes before the stall would hold the alarm off for 5 s more.
    cfg_.low_speed_bytes = 10000;
    cfg_.low_speed_time_s = 2;
    Renew();
    Faults("[" + Rule("stall", kAsset, R"({"kind":"stall","after_bytes":1000,"ms":5000})", 1) +
           "]");
    Rec rec;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(Download(kAsset, 0, "", &rec), -ETIMEDOUT);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(err_.code, ETIMEDOUT);
    EXPECT_EQ(rec.data.size(), 1000u);
    EXPECT_GE(s, 1.5);
    EXPECT_LT(s, 6.0);
}

// A self-signed certificate for 127.0.0.1 and its key, in dir as NAME.crt/.key.
static bool SelfSignedCertIn(const std::string &dir, const char *name, std::string *key,
                             std::string *crt)
{
    *key = dir + "/" + name + ".key";
    *crt = dir + "/" + name + ".crt";
    std::string cmd = "/usr/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                      "-nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                      "-keyout " +
                      *key + " -out " + *crt + " >/dev/null 2>&1";
    return system(cmd.c_str()) == 0;
}

TEST_F(TransportCurl, TlsWithOwnCa)
{
    if (access("/usr/bin/openssl", X_OK) != 0)
        GTEST_SKIP() << "no openssl command";
    std::string key, crt;
    ASSERT_TRUE(SelfSignedCertIn(dir_, "tls", &key, &crt));
    Server tls;
    ASSERT_TRUE(tls.Start(dir_ + "/tls", {"--tls-cert", crt, "--tls-key", key}, "https"));
    snprintf(tls.cfg.ca_file, sizeof(tls.cfg.ca_file), "%s", crt.c_str());
    ASSERT_EQ(tls.Publish(dir_ + "/payload/p.bin", kPayloadSize), "");
    long st = 0;
    std::string body;

    // System CAs do not know this server.
    const std::string latest = tls.base + "/repos/owner/repo/releases/latest";
    int r = Request("GET", latest, nullptr, nullptr, &st, &body);
    EXPECT_EQ(r, -EPROTO);
    EXPECT_NE(strstr(err_.reason, "TLS"), nullptr) << err_.reason;

    snprintf(cfg_.ca_file, sizeof(cfg_.ca_file), "%s", crt.c_str());
    Renew();
    r = Request("GET", latest, nullptr, nullptr, &st, &body);
    EXPECT_EQ(r, 0) << err_.reason;
    EXPECT_EQ(st, 200);
    EXPECT_NE(body.find("\"tag_name\":\"v2.0.0\""), std::string::npos) << body;
    Rec rec;
    std::string url = tls.base + kAsset;
    ota_dl_sink sink = {&rec, RecHeaders, RecData};
    EXPECT_EQ(ota_curl_ops.download(t_, url.c_str(), nullptr, 0, "", &sink, &err_), 0)
        << err_.reason;
    EXPECT_EQ(rec.data, payload_);
    tls.Stop();
}

// A device CA in dir (devca.pem/.key) and a client certificate it signs
// for device cn (CN.pem/.key, and CN.both.pem: certificate and key in one file).
static bool DeviceCertIn(const std::string &dir, const char *cn, std::string *ca)
{
    const std::string ec = "/usr/bin/openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                           "-nodes -days 2 ";
    const std::string d = dir + "/", quiet = " >/dev/null 2>&1";
    *ca = d + "devca.pem";
    if (access(ca->c_str(), R_OK) != 0 &&
        system((ec +
                "-x509 -subj /CN=devca -addext basicConstraints=critical,CA:TRUE "
                "-addext keyUsage=critical,keyCertSign -keyout " +
                d + "devca.key -out " + *ca + quiet)
                   .c_str()) != 0)
        return false;
    std::string b = d + cn;
    return system((ec + "-subj /CN=" + cn + " -keyout " + b + ".key -out " + b + ".csr" + quiet)
                      .c_str()) == 0 &&
           system(("/usr/bin/openssl x509 -req -days 2 -set_serial 7 -in " + b + ".csr -CA " + *ca +
                   " -CAkey " + d + "devca.key -out " + b + ".pem" + quiet)
                      .c_str()) == 0 &&
           system(("cat " + b + ".pem " + b + ".key > " + b + ".both.pem").c_str()) == 0;
}

// Mutual TLS (docs/protocol.md, "Client certificates"): client_cert and
// client_key are presented to a server that asks; ota-server with
// --require-client-cert refuses a device without one, or with another's.
TEST_F(TransportCurl, ClientCertificate)
{
    if (access("/usr/bin/openssl", X_OK) != 0)
        GTEST_SKIP() << "no openssl command";
    std::string key, crt, ca;
    ASSERT_TRUE(SelfSignedCertIn(dir_, "tls3", &key, &crt));
    ASSERT_TRUE(DeviceCertIn(dir_, "mdev-1", &ca));
    ASSERT_TRUE(DeviceCertIn(dir_, "mdev-2", &ca));
    Server tls;
    ASSERT_TRUE(tls.Start(
        dir_ + "/tls3",
        {"--tls-cert", crt, "--tls-key", key, "--tls-client-ca", ca, "--require-client-cert"},
        "https"));
    const std::string url = tls.base + "/api/v1/devices/register";
    const char *body = R"({"device_id":"mdev-1","device_type":"rpi3b"})";
    long st = 0;
    std::string out;

    snprintf(cfg_.ca_file, sizeof(cfg_.ca_file), "%s", crt.c_str());
    Renew();
    ASSERT_EQ(Request("POST", url, body, kEnroll, &st, &out), 0) << err_.reason;
    EXPECT_EQ(st, 403) << out; // no certificate
    EXPECT_NE(out.find("client certificate"), std::string::npos) << out;

    snprintf(cfg_.client_cert, sizeof(cfg_.client_cert), "%s/mdev-2.pem", dir_.c_str());
    snprintf(cfg_.client_key, sizeof(cfg_.client_key), "%s/mdev-2.key", dir_.c_str());
    Renew();
    ASSERT_EQ(Request("POST", url, body, kEnroll, &st, &out), 0) << err_.reason;
    EXPECT_EQ(st, 403) << out; // another device's certificate
    EXPECT_NE(out.find("mdev-2"), std::string::npos) << out;

    snprintf(cfg_.client_cert, sizeof(cfg_.client_cert), "%s/mdev-1.pem", dir_.c_str());
    snprintf(cfg_.client_key, sizeof(cfg_.client_key), "%s/mdev-1.key", dir_.c_str());
    Renew();
    ASSERT_EQ(Request("POST", url, body, kEnroll, &st, &out), 0) << err_.reason;
    EXPECT_EQ(st, 201) << out;

    // certificate and key in one file (client_key empty)
    snprintf(cfg_.client_cert, sizeof(cfg_.client_cert), "%s/mdev-1.both.pem", dir_.c_str());
    cfg_.client_key[0] = '\0';
    Renew();
    ASSERT_EQ(Request("POST", url, body, kEnroll, &st, &out), 0) << err_.reason;
    EXPECT_EQ(st, 200) << out; // known device, its token not used yet: registered again

    // a key that does not fit the certificate: a TLS error, before any answer
    snprintf(cfg_.client_cert, sizeof(cfg_.client_cert), "%s/mdev-1.pem", dir_.c_str());
    snprintf(cfg_.client_key, sizeof(cfg_.client_key), "%s/mdev-2.key", dir_.c_str());
    Renew();
    EXPECT_LT(Request("POST", url, body, kEnroll, &st, &out), 0);
    EXPECT_NE(strstr(err_.reason, "TLS"), nullptr) << err_.reason;
    cfg_.client_cert[0] = cfg_.client_key[0] = cfg_.ca_file[0] = '\0';
    tls.Stop();
}

// A redirect from https to http is refused, for requests and downloads:
// the answer never comes over plain http (the http server would echo it).
TEST_F(TransportCurl, HttpsNeverRedirectsToHttp)
{
    if (access("/usr/bin/openssl", X_OK) != 0)
        GTEST_SKIP() << "no openssl command";
    std::string key, crt;
    ASSERT_TRUE(SelfSignedCertIn(dir_, "tls2", &key, &crt));
    Server tls;
    ASSERT_TRUE(tls.Start(dir_ + "/tls2", {"--tls-cert", crt, "--tls-key", key}, "https"));
    snprintf(tls.cfg.ca_file, sizeof(tls.cfg.ca_file), "%s", crt.c_str());
    Faults("[" + Rule("echo", "/echo", R"({"kind":"echo"})") + "]"); // on the plain server
    std::string plan =
        R"({"rules":[)" +
        Rule("down", "/down",
             std::string(R"({"kind":"redirect","location":")") + server_.base + "/echo\"}") +
        "]}";
    ASSERT_EQ(tls.Admin("POST", "/api/v1/faults", plan, 200), "");
    snprintf(cfg_.ca_file, sizeof(cfg_.ca_file), "%s", crt.c_str());
    Renew();
    long st = 0;
    std::string body;

    int r = Request("GET", tls.base + "/down", nullptr, "tok-123", &st, &body);
    EXPECT_EQ(r, -EPROTO) << "followed to http: " << st << " " << body;
    EXPECT_NE(strstr(err_.reason, "redirect from https"), nullptr) << err_.reason;
    Rec rec;
    std::string url = tls.base + "/down";
    ota_dl_sink sink = {&rec, RecHeaders, RecData};
    r = ota_curl_ops.download(t_, url.c_str(), nullptr, 0, "", &sink, &err_);
    EXPECT_EQ(r, -EPROTO) << err_.reason;
    EXPECT_TRUE(rec.data.empty());
    tls.Stop();
}

} // namespace
