// Unit tests for the virtual clock's parties (src/clock.c,
// otasrv_clock_party_*): several runners (fleet shards) on one clock. The
// clock moves only once every party that has not left waits, to the
// earliest time asked; a party is released when the clock gets to its time,
// after the step; a party that has nothing to do (asks for a late time, or
// leaves) never holds the others.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <vector>

extern "C" {
#include "otasrv/clock.h"
}

namespace
{

const int64_t kT0 = 1795000000000; // unix ms

struct Parties {
    otasrv_clock *c = nullptr;
    std::vector<int64_t> steps;       // the step's nows
    std::vector<int> released;        // released parties, in order
    std::vector<int64_t> released_at; // the clock's now when each was released
    int ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    struct Waiter {
        Parties *p;
        int party;
    } w[8];
    explicit Parties(int n)
    {
        ota_err err = {};
        EXPECT_EQ(otasrv_clock_new(kT0, &c, &err), 0) << err.reason;
        EXPECT_EQ(otasrv_clock_parties_set(c, n, &err), 0) << err.reason;
        for (int i = 0; i < 8; i++)
            w[i] = {this, i};
    }
    ~Parties()
    {
        otasrv_clock_close(c);
        otasrv_clock_free(c);
    }
    static int step(void *ctx, int64_t now, ota_err *)
    {
        static_cast<Parties *>(ctx)->steps.push_back(now);
        return 0;
    }
    static void release(void *ctx)
    {
        auto *w = static_cast<Waiter *>(ctx);
        w->p->released.push_back(w->party);
        w->p->released_at.push_back(otasrv_clock_now(w->p->c));
    }
    int ask(int party, int64_t to)
    {
        ota_err err = {};
        int r = otasrv_clock_party_ask(c, party, to, release, &w[party], step, this, &err);
        EXPECT_EQ(err.code == 0 || r < 0, true) << err.reason;
        return r;
    }
    int leave(int party)
    {
        ota_err err = {};
        return otasrv_clock_party_leave(c, party, step, this, &err);
    }
    int waiting()
    {
        int w = 0, l = 0;
        otasrv_clock_parties_state(c, &w, &l);
        return w;
    }
};

TEST(ClockParties, TheClockMovesOnlyOnceAllWaitAndOnlyToTheEarliest)
{
    Parties p(2);
    EXPECT_EQ(p.ask(0, kT0 + 5000), 0);
    // One party waits: nothing moves, nobody is released.
    EXPECT_EQ(otasrv_clock_now(p.c), kT0);
    EXPECT_TRUE(p.released.empty());
    EXPECT_TRUE(p.steps.empty());
    EXPECT_EQ(p.waiting(), 1);
    // The second asks for an earlier time: the clock goes there, not further,
    // and only the party that asked for it is released.
    EXPECT_EQ(p.ask(1, kT0 + 2000), 0);
    EXPECT_EQ(otasrv_clock_now(p.c), kT0 + 2000);
    ASSERT_EQ(p.released, std::vector<int>({1}));
    EXPECT_EQ(p.released_at[0], kT0 + 2000);
    EXPECT_EQ(p.steps, std::vector<int64_t>({kT0 + 2000})); // rollouts ticked there first
    EXPECT_EQ(p.waiting(), 1);                              // party 0 still waits for 5000
    // Party 1 acts, then asks for a time after party 0's: the clock goes to
    // party 0's time and releases party 0 only.
    EXPECT_EQ(p.ask(1, kT0 + 9000), 0);
    EXPECT_EQ(otasrv_clock_now(p.c), kT0 + 5000);
    ASSERT_EQ(p.released, std::vector<int>({1, 0}));
    // Both asking for the same time are released together.
    EXPECT_EQ(p.ask(0, kT0 + 9000), 0);
    EXPECT_EQ(otasrv_clock_now(p.c), kT0 + 9000);
    ASSERT_EQ(p.released, std::vector<int>({1, 0, 0, 1})); // together, in party order
    EXPECT_EQ(p.waiting(), 0);
}

TEST(ClockParties, APartyWithNothingToDoDoesNotHoldTheOthers)
{
    // Party 0 has nothing before the end of its run: it asks for the end and
    // waits. Party 1 works through many times before that, each answered as
    // soon as it asks, and party 0 is released only at its time.
    Parties p(2);
    const int64_t end = kT0 + 86400000;
    EXPECT_EQ(p.ask(0, end), 0);
    for (int64_t t = 1000; t <= 10000; t += 1000) {
        EXPECT_EQ(p.ask(1, kT0 + t), 0);
        EXPECT_EQ(otasrv_clock_now(p.c), kT0 + t);
        EXPECT_EQ(p.released.back(), 1);
    }
    EXPECT_EQ(p.released.size(), 10u);
    // Party 1 is done: it leaves, and the clock goes on for party 0 alone.
    EXPECT_EQ(p.leave(1), 0);
    EXPECT_EQ(otasrv_clock_now(p.c), end);
    EXPECT_EQ(p.released.back(), 0);
    // Party 0 alone now: its asks are answered at once.
    EXPECT_EQ(p.ask(0, end + 1), 0);
    EXPECT_EQ(otasrv_clock_now(p.c), end + 1);
    EXPECT_EQ(p.released.back(), 0);
}

TEST(ClockParties, RefusedAsksChangeNothing)
{
    Parties p(2);
    ota_err err = {};
    EXPECT_EQ(otasrv_clock_party_check(p.c, 2, kT0, &err), -EINVAL); // no such party
    EXPECT_EQ(otasrv_clock_party_check(p.c, -1, kT0, &err), -EINVAL);
    EXPECT_EQ(otasrv_clock_party_check(p.c, 0, kT0 - 1, &err), -ERANGE); // the past
    EXPECT_EQ(p.ask(0, kT0 + 10), 0);
    EXPECT_EQ(p.ask(0, kT0 + 20), -EBUSY); // waits already
    EXPECT_EQ(p.leave(0), -EBUSY);         // and cannot leave while it waits
    EXPECT_EQ(p.leave(1), 0);              // party 1 leaves: party 0 goes alone
    EXPECT_EQ(otasrv_clock_now(p.c), kT0 + 10);
    EXPECT_EQ(p.ask(1, kT0 + 30), -EINVAL); // left for good
    EXPECT_EQ(p.leave(1), -EINVAL);
    EXPECT_EQ(otasrv_clock_parties(p.c), 2);
    // Plain asks at now wait for the others like any other.
    Parties q(2);
    EXPECT_EQ(q.ask(0, kT0), 0);
    EXPECT_TRUE(q.released.empty());
    EXPECT_EQ(q.ask(1, kT0 + 100), 0);
    EXPECT_EQ(q.released, std::vector<int>({0}));
    EXPECT_EQ(otasrv_clock_now(q.c), kT0);
    EXPECT_EQ(q.steps, std::vector<int64_t>({kT0}));
}

TEST(ClockParties, AForgottenWaiterIsNotCalledAndCloseReleasesWithCancel)
{
    Parties p(3);
    EXPECT_EQ(p.ask(0, kT0 + 10), 0);
    otasrv_clock_party_forget(p.c, 0); // its connection went away
    EXPECT_EQ(p.ask(1, kT0 + 10), 0);
    EXPECT_EQ(p.waiting(), 2);
    EXPECT_EQ(p.ask(2, kT0 + 20), 0);
    // Party 0 counted as waiting for 10 all the same; its waiter is not called.
    EXPECT_EQ(otasrv_clock_now(p.c), kT0 + 10);
    EXPECT_EQ(p.released, std::vector<int>({1}));
    EXPECT_EQ(otasrv_clock_party_result(p.c, 1), 0);
    // Party 2 still waits; closing the clock releases it as cancelled.
    otasrv_clock_close(p.c);
    EXPECT_EQ(p.released, std::vector<int>({1, 2}));
    EXPECT_EQ(otasrv_clock_party_result(p.c, 2), -ECANCELED);
    ota_err err = {};
    EXPECT_EQ(otasrv_clock_party_check(p.c, 1, kT0 + 30, &err), -ESHUTDOWN);
}

TEST(ClockParties, ABadPartyCountIsRefused)
{
    otasrv_clock *c = nullptr;
    ota_err err = {};
    ASSERT_EQ(otasrv_clock_new(kT0, &c, &err), 0);
    EXPECT_EQ(otasrv_clock_parties_set(c, 0, &err), -EINVAL);
    EXPECT_EQ(otasrv_clock_parties_set(c, OTASRV_CLOCK_MAX_PARTIES + 1, &err), -EINVAL);
    EXPECT_EQ(otasrv_clock_parties(c), 0);
    otasrv_clock_free(c);
}

} // namespace
