// The partitioning TCP forwarder, against an echo server thread of the test:
// bytes both ways, a large transfer, partitions that hold bytes back, resets.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "otasim/netproxy.h"

namespace
{

// Echoes every byte back on each connection; half-closes when the client does.
class EchoServer
{
  public:
    EchoServer()
    {
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {};
        socklen_t len = sizeof(a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        EXPECT_EQ(listen(lfd, 64), 0);
        EXPECT_EQ(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        acceptor = std::thread([this] { accept_loop(); });
    }
    ~EchoServer()
    {
        stopping = true;
        shutdown(lfd, SHUT_RDWR);
        acceptor.join();
        {
            std::lock_guard<std::mutex> g(mu);
            for (int fd : fds)
                shutdown(fd, SHUT_RDWR);
        }
        for (auto &t : workers)
            t.join();
        for (int fd : fds)
            close(fd);
        close(lfd);
    }
    int port = 0;
    std::atomic<int> accepted{0};

  private:
    void accept_loop()
    {
        for (;;) {
            int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (stopping)
                    return;
                continue;
            }
            accepted++;
            std::lock_guard<std::mutex> g(mu);
            fds.push_back(fd);
            workers.emplace_back([fd] {
                char buf[16384];
                ssize_t n;
                while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
                    ssize_t off = 0;
                    while (off < n) {
                        ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                        if (w <= 0)
                            return;
                        off += w;
                    }
                }
                shutdown(fd, SHUT_WR);
            });
        }
    }
    int lfd = -1;
    std::atomic<bool> stopping{false};
    std::thread acceptor;
    std::mutex mu;
    std::vector<int> fds;
    std::vector<std::thread> workers;
};

int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, const std::string &s)
{
    size_t off = 0;
    while (off < s.size()) {
        ssize_t w = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    return true;
}

// Reads until n bytes arrived, EOF/error, or timeout_ms passed.
std::string recv_n(int fd, size_t n, int timeout_ms)
{
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0)
            break;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) <= 0)
            break;
        char buf[65536];
        ssize_t r = recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
        if (r <= 0)
            break;
        out.append(buf, (size_t)r);
    }
    return out;
}

// What the next recv says within timeout_ms: 1 data, 0 EOF, -errno, or
// -ETIMEDOUT if nothing came.
int next_event(int fd, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -ETIMEDOUT;
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    return r > 0 ? 1 : r == 0 ? 0 : -errno;
}

class NetproxyTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        ASSERT_EQ(otasim_proxy_start(server.port, &proxy, &err), 0) << err.reason;
        ASSERT_GT(otasim_proxy_port(proxy), 0);
        ASSERT_NE(otasim_proxy_port(proxy), server.port);
    }
    void TearDown() override
    {
        otasim_proxy_stop(proxy);
    }
    EchoServer server;
    struct otasim_proxy *proxy = nullptr;
    struct ota_err err = {};
};

TEST_F(NetproxyTest, BytesPassBothWays)
{
    int fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_TRUE(send_all(fd, req));
    EXPECT_EQ(recv_n(fd, req.size(), 2000), req);
    ASSERT_TRUE(send_all(fd, "second"));
    EXPECT_EQ(recv_n(fd, 6, 2000), "second");
    // A half-close passes through, and the server's comes back.
    shutdown(fd, SHUT_WR);
    EXPECT_EQ(next_event(fd, 2000), 0);
    close(fd);

    unsigned long conns = 0;
    unsigned long long up = 0, down = 0;
    otasim_proxy_stats(proxy, &conns, &up, &down);
    EXPECT_EQ(conns, 1u);
    EXPECT_EQ(up, req.size() + 6);
    EXPECT_EQ(down, req.size() + 6);
}

TEST_F(NetproxyTest, LargeTransferIntact)
{
    const size_t n = 8u << 20;
    std::string data(n, '\0');
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (char)(x >> 16);
    }
    int fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    std::thread sender([&] {
        EXPECT_TRUE(send_all(fd, data));
        shutdown(fd, SHUT_WR);
    });
    std::string got = recv_n(fd, n, 20000);
    sender.join();
    EXPECT_EQ(got.size(), n);
    EXPECT_TRUE(got == data);
    EXPECT_EQ(next_event(fd, 2000), 0);
    close(fd);
    unsigned long long up = 0, down = 0;
    otasim_proxy_stats(proxy, nullptr, &up, &down);
    EXPECT_EQ(up, n);
    EXPECT_EQ(down, n);
}

// CPU time of the whole process, in ms.
long cpu_ms()
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

// A partition in the middle of a large transfer: nothing moves while it
// lasts, then the rest arrives intact.
TEST_F(NetproxyTest, PartitionDuringLargeTransfer)
{
    const size_t n = 8u << 20;
    std::string data(n, '\0');
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + (i >> 12));
    int fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    std::thread sender([&] {
        EXPECT_TRUE(send_all(fd, data));
        shutdown(fd, SHUT_WR);
    });
    std::string got = recv_n(fd, n / 4, 10000);
    ASSERT_EQ(got.size(), n / 4);
    otasim_proxy_partition(proxy, 1);
    unsigned long long up1 = 0, down1 = 0, up2 = 0, down2 = 0;
    otasim_proxy_stats(proxy, nullptr, &up1, &down1);
    long cpu0 = cpu_ms();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_LT(cpu_ms() - cpu0, 100); // waiting, not spinning
    otasim_proxy_stats(proxy, nullptr, &up2, &down2);
    EXPECT_EQ(up1, up2);
    EXPECT_EQ(down1, down2);
    otasim_proxy_partition(proxy, 0);
    got += recv_n(fd, n - got.size(), 20000);
    sender.join();
    EXPECT_EQ(got.size(), n);
    EXPECT_TRUE(got == data);
    close(fd);
}

TEST_F(NetproxyTest, PartitionHoldsBytesUntilItEnds)
{
    int fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "hello"));
    EXPECT_EQ(recv_n(fd, 5, 2000), "hello");

    otasim_proxy_partition(proxy, 1);
    ASSERT_TRUE(send_all(fd, "held"));
    // A new connection is accepted but goes nowhere.
    int fd2 = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd2, 0);
    ASSERT_TRUE(send_all(fd2, "new"));
    EXPECT_EQ(next_event(fd, 300), -ETIMEDOUT);
    EXPECT_EQ(next_event(fd2, 50), -ETIMEDOUT);
    EXPECT_EQ(server.accepted.load(), 1);

    otasim_proxy_partition(proxy, 0);
    EXPECT_EQ(recv_n(fd, 4, 2000), "held");
    EXPECT_EQ(recv_n(fd2, 3, 2000), "new");
    EXPECT_EQ(server.accepted.load(), 2);
    close(fd);
    close(fd2);
}

TEST_F(NetproxyTest, ResetAllClosesClientsAndKeepsListening)
{
    int fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "ping"));
    EXPECT_EQ(recv_n(fd, 4, 2000), "ping");
    // Also one that waits behind a partition.
    otasim_proxy_partition(proxy, 1);
    int fd2 = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd2, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // accepted
    otasim_proxy_reset_all(proxy);
    EXPECT_EQ(next_event(fd, 2000), -ECONNRESET);
    EXPECT_EQ(next_event(fd2, 2000), -ECONNRESET);
    close(fd);
    close(fd2);
    otasim_proxy_partition(proxy, 0);

    fd = dial(otasim_proxy_port(proxy));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "again"));
    EXPECT_EQ(recv_n(fd, 5, 2000), "again");
    close(fd);
}

TEST_F(NetproxyTest, TargetDownResetsClient)
{
    struct otasim_proxy *p2 = nullptr;
    // A port with nothing behind it: bind one and close it.
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    socklen_t len = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    ASSERT_EQ(otasim_proxy_start(ntohs(a.sin_port), &p2, &err), 0) << err.reason;
    int fd = dial(otasim_proxy_port(p2));
    ASSERT_GE(fd, 0);
    EXPECT_EQ(next_event(fd, 2000), -ECONNRESET);
    close(fd);
    otasim_proxy_stop(p2);
}

TEST_F(NetproxyTest, StopJoinsWithOpenConnections)
{
    int port = otasim_proxy_port(proxy);
    int fd = dial(port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "x"));
    EXPECT_EQ(recv_n(fd, 1, 2000), "x");
    otasim_proxy_partition(proxy, 1);
    int fd2 = dial(port);
    ASSERT_GE(fd2, 0);
    auto t0 = std::chrono::steady_clock::now();
    otasim_proxy_stop(proxy);
    proxy = nullptr;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
    EXPECT_EQ(next_event(fd, 2000), 0); // closed
    EXPECT_EQ(dial(port), -1);          // no longer listening
    close(fd);
    close(fd2);
    otasim_proxy_stop(nullptr);
}

TEST_F(NetproxyTest, ManyConnectionsAtOnce)
{
    std::vector<int> fds;
    for (int i = 0; i < 50; i++) {
        int fd = dial(otasim_proxy_port(proxy));
        ASSERT_GE(fd, 0);
        fds.push_back(fd);
    }
    for (size_t i = 0; i < fds.size(); i++)
        ASSERT_TRUE(send_all(fds[i], "c" + std::to_string(i)));
    for (size_t i = 0; i < fds.size(); i++) {
        std::string want = "c" + std::to_string(i);
        EXPECT_EQ(recv_n(fds[i], want.size(), 2000), want);
        close(fds[i]);
    }
}

} // namespace
