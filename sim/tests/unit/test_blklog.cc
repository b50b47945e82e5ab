// Block-level crash states (otasim/blklog.h, docs/blocks.md): logs recorded
// by the real QEMU blklogwrites driver through qemu-io (no guest), replayed to
// every crash point and compared with the disk qemu-io itself leaves after the
// same commands up to that point. Skips where qemu-io is missing
// (images/install-deps installs qemu-utils).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "blk_test_util.h"
#include "otasim/blklog.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

const size_t kDisk = 1024 * 1024;

int sh(const std::string &cmd)
{
    return std::system((cmd + " >/dev/null 2>&1").c_str());
}

std::string args(const std::vector<std::string> &cmds)
{
    std::string a;
    for (const auto &c : cmds)
        a += " -c '" + c + "'";
    return a;
}

bool is_flush(const std::string &c)
{
    return c == "flush";
}

class BlkLogTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        if (sh("command -v qemu-io") != 0)
            GTEST_SKIP() << "qemu-io missing (images/install-deps installs qemu-utils)";
        std::string tmpl_s = (fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
        tmpl_s += "/otasim-blklog-XXXXXX";
        std::vector<char> tmpl(tmpl_s.begin(), tmpl_s.end());
        tmpl.push_back('\0');
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl.data();
        base = dir + "/base.raw";
        std::mt19937 rng(16);
        std::string data(kDisk, '\0');
        for (auto &c : data)
            c = (char)(rng() & 0xff);
        write_all(base, data);
    }
    void TearDown() override
    {
        if (!dir.empty())
            fs::remove_all(dir);
    }

    // Runs cmds through blklogwrites on a copy of base; the log's path. The
    // disk qemu-io wrote into *disk.
    std::string record(const std::vector<std::string> &cmds, std::string *disk = nullptr,
                       const std::string &opts = "log-super-update-interval=1")
    {
        std::string d = dir + "/rec.raw", log = dir + "/rec.log";
        fs::copy_file(base, d, fs::copy_options::overwrite_existing);
        write_all(log, "");
        // -t writeback: qemu-io's default (writethrough) makes every write a FUA
        // write, which QEMU emulates with flushes that land in the log
        std::string cmd = "qemu-io -t writeback --image-opts 'driver=blklogwrites,file.driver=file,"
                          "file.filename=" +
                          d + ",log.driver=file,log.filename=" + log + ",log-append=off," + opts +
                          "'" + args(cmds);
        EXPECT_EQ(sh(cmd), 0) << cmd;
        if (disk)
            *disk = read_all(d);
        return log;
    }

    // The disk qemu-io leaves after cmds on a plain copy of base (no log).
    std::string direct(const std::vector<std::string> &cmds)
    {
        std::string d = dir + "/direct.raw";
        fs::copy_file(base, d, fs::copy_options::overwrite_existing);
        if (!cmds.empty())
            EXPECT_EQ(sh("qemu-io -t writeback -f raw " + d + args(cmds)), 0);
        return read_all(d);
    }

    // The replayed state at crash point n of unit. Discards as zeroes:
    // qemu-io opens its disk with discard=unmap, which punches the file.
    std::string state(const struct otasim_blklog *log, enum otasim_blk_unit unit, uint64_t n)
    {
        uint64_t *pos = nullptr, np = 0;
        struct otasim_blkreplay r;
        struct ota_err e = {};
        std::string work = dir + "/work.raw";
        EXPECT_EQ(otasim_blklog_points(log, unit, &pos, &np), 0);
        EXPECT_LT(n, np);
        EXPECT_EQ(otasim_blkreplay_init(&r, log, base.c_str(), work.c_str(), &e), 0) << e.reason;
        r.discard = OTASIM_BLK_DISCARD_ZERO;
        EXPECT_EQ(otasim_blkreplay_seek(&r, pos[n], &e), 0) << e.reason;
        otasim_blkreplay_free(&r);
        free(pos);
        return read_all(work);
    }

    std::string dir, base;
};

// The data commands (each one log entry), flushes between them.
const std::vector<std::string> kCmds = {
    "write -P 0xaa 0 4k",
    "write -P 0xbb 4096 512",
    "flush",
    "write -P 0xcc 100 10",
    "write -z 8192 1024",
    "write -P 0xdd 65536 64k",
    "flush",
    "discard 0 512",
    "write -P 0xee 2048 4k",
    "flush",
    "write -P 0x11 1024 512",
};

std::vector<std::string> data_cmds()
{
    std::vector<std::string> d;
    for (const auto &c : kCmds)
        if (!is_flush(c))
            d.push_back(c);
    return d;
}

TEST_F(BlkLogTest, EveryWritePointIsTheDiskQemuLeavesAfterThatManyWrites)
{
    std::string disk;
    std::string path = record(kCmds, &disk);
    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    auto d = data_cmds();
    EXPECT_EQ(log.sector_size, 512u);
    EXPECT_EQ(log.n_writes, d.size() - 1); // every write (zeroes too) is one entry
    EXPECT_EQ(log.n_discards, 1u);
    EXPECT_EQ(log.n_fua, 0u);
    uint64_t np = 0;
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_WRITE, nullptr, &np), 0);
    ASSERT_EQ(np, d.size() + 1);
    for (uint64_t n = 0; n < np; n++) {
        std::vector<std::string> prefix(d.begin(), d.begin() + (long)n);
        EXPECT_TRUE(state(&log, OTASIM_BLK_UNIT_WRITE, n) == direct(prefix)) << "write point " << n;
    }
    EXPECT_TRUE(state(&log, OTASIM_BLK_UNIT_WRITE, np - 1) == disk);
    otasim_blklog_close(&log);
}

TEST_F(BlkLogTest, EveryFlushPointIsTheDiskAfterTheWritesBeforeIt)
{
    std::string disk;
    std::string path = record(kCmds, &disk);
    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    uint64_t *pos = nullptr, np = 0;
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_FLUSH, &pos, &np), 0);
    // every explicit flush is a barrier after exactly the writes before it
    // (qemu-io adds its own flushes when it closes the disk)
    std::set<uint64_t> writes_before_barrier;
    for (uint64_t p = 1; p < np; p++) {
        uint64_t k = 0;
        for (uint64_t i = 0; i < pos[p]; i++)
            k += otasim_blk_entry_is_data(&log.e[i]);
        writes_before_barrier.insert(k);
        EXPECT_TRUE(otasim_blk_entry_is_barrier(&log.e[pos[p] - 1]) || pos[p] == log.nr_entries);
        auto d = data_cmds();
        std::vector<std::string> prefix(d.begin(), d.begin() + (long)k);
        EXPECT_TRUE(state(&log, OTASIM_BLK_UNIT_FLUSH, p) == direct(prefix)) << "flush point " << p;
    }
    uint64_t k = 0, explicit_flushes = 0;
    for (const auto &c : kCmds) {
        if (is_flush(c)) {
            explicit_flushes++;
            EXPECT_TRUE(writes_before_barrier.count(k)) << "no barrier after " << k << " writes";
        } else {
            k++;
        }
    }
    EXPECT_GE(log.n_flushes, explicit_flushes);
    EXPECT_TRUE(state(&log, OTASIM_BLK_UNIT_FLUSH, np - 1) == disk);
    free(pos);
    otasim_blklog_close(&log);
}

TEST_F(BlkLogTest, SubsetIsTheSeedsChoiceAmongTheWritesAfterTheBarrier)
{
    const std::vector<std::string> cmds = {
        "write -P 1 0 4k",
        "flush",
        "write -P 2 4096 4k",
        "write -P 3 2048 4k",
        "write -P 4 8192 4k",
        "write -P 5 0 512",
        "flush",
        "write -P 6 0 4k",
    };
    std::string path = record(cmds);
    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    uint64_t *pos = nullptr, np = 0;
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_FLUSH, &pos, &np), 0);
    ASSERT_GE(np, 3u);
    ASSERT_EQ(pos[1], 2u); // write, flush
    std::set<uint64_t> seen;
    std::set<std::vector<uint64_t>> subsets;
    for (uint64_t seed = 0; seed < 16; seed++) {
        uint64_t *idx = nullptr, n = 0, *again = nullptr, n2 = 0;
        ASSERT_EQ(otasim_blklog_subset(&log, pos[1], seed, &idx, &n), 0);
        ASSERT_EQ(otasim_blklog_subset(&log, pos[1], seed, &again, &n2), 0);
        std::vector<uint64_t> v(idx, idx + n);
        EXPECT_EQ(v, std::vector<uint64_t>(again, again + n2)) << "seed " << seed;
        subsets.insert(v);
        // the replayed state is the disk after the first write and the chosen ones
        std::vector<std::string> expect = {cmds[0]};
        for (auto i : v) {
            ASSERT_GE(i, 2u);
            ASSERT_LE(i, 5u); // entries 2..5: the four writes before the second flush
            seen.insert(i);
            expect.push_back(cmds[i]); // entry i is command i (command 1 is the flush)
        }
        struct otasim_blkreplay r;
        std::string work = dir + "/work.raw";
        ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
        ASSERT_EQ(otasim_blkreplay_seek(&r, pos[1], &e), 0) << e.reason;
        ASSERT_EQ(otasim_blkreplay_apply_extra(&r, idx, n, &e), 0) << e.reason;
        EXPECT_TRUE(read_all(work) == direct(expect)) << "seed " << seed;
        ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
        EXPECT_TRUE(read_all(work) == direct({cmds[0]})) << "undo, seed " << seed;
        otasim_blkreplay_free(&r);
        free(idx);
        free(again);
    }
    EXPECT_EQ(seen.size(), 4u);     // every write in flight is chosen by some seed
    EXPECT_GE(subsets.size(), 4u);  // and seeds choose differently
    uint64_t *idx = nullptr, n = 0; // after the last barrier: the trailing write only
    ASSERT_EQ(otasim_blklog_subset(&log, pos[np - 1], 1, &idx, &n), 0);
    EXPECT_EQ(n, 0u);
    free(idx);
    free(pos);
    otasim_blklog_close(&log);
}

std::string open_error(const std::string &path)
{
    struct otasim_blklog log;
    struct ota_err e = {};
    int r = otasim_blklog_open(&log, path.c_str(), &e);
    if (r == 0) {
        otasim_blklog_close(&log);
        return "opened";
    }
    EXPECT_EQ(r, -EINVAL) << e.reason;
    return e.reason;
}

void put_le64(std::string &s, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        s[off + (size_t)i] = (char)((v >> (8 * i)) & 0xff);
}

TEST_F(BlkLogTest, TruncatedAndMalformedLogsAreRefusedWithAReason)
{
    std::string path = record(kCmds);
    std::string good = read_all(path), bad = dir + "/bad.log";
    ASSERT_EQ(open_error(path), "opened");
    // cut inside the data of the last write
    std::string cut = good.substr(0, good.size() - 3 * 512 - 100);
    write_all(bad, cut);
    EXPECT_NE(open_error(bad).find("truncated"), std::string::npos) << open_error(bad);
    EXPECT_NE(open_error(bad).find("past the end"), std::string::npos) << open_error(bad);
    // only the super block
    write_all(bad, good.substr(0, 512));
    EXPECT_NE(open_error(bad).find("truncated"), std::string::npos) << open_error(bad);
    write_all(bad, good.substr(0, 20));
    EXPECT_NE(open_error(bad).find("truncated"), std::string::npos) << open_error(bad);
    write_all(bad, ""); // QEMU writes nothing until the first flush: an empty log
    EXPECT_EQ(open_error(bad), "opened");
    // bad magic
    std::string m = good;
    m[0] ^= 0x55;
    write_all(bad, m);
    EXPECT_NE(open_error(bad).find("bad magic"), std::string::npos) << open_error(bad);
    // a count one short: an entry the super block does not count
    uint64_t nr = 0;
    memcpy(&nr, good.data() + 16, 8);
    std::string c = good;
    put_le64(c, 16, nr - 1);
    write_all(bad, c);
    EXPECT_NE(open_error(bad).find("count does not match"), std::string::npos) << open_error(bad);
    // a count one more than the entries
    put_le64(c, 16, nr + 1);
    write_all(bad, c);
    EXPECT_NE(open_error(bad).find("past the end"), std::string::npos) << open_error(bad);
    // unknown flags in the first entry
    std::string f = good;
    put_le64(f, 512 + 16, 0x40);
    write_all(bad, f);
    EXPECT_NE(open_error(bad).find("unknown flags"), std::string::npos) << open_error(bad);
    // a disk smaller than what the log writes
    struct otasim_blklog log;
    struct otasim_blkreplay r;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    std::string small = dir + "/small.raw";
    write_all(small, read_all(base).substr(0, 64 * 1024));
    EXPECT_EQ(otasim_blkreplay_init(&r, &log, small.c_str(), (dir + "/w").c_str(), &e), -EINVAL);
    EXPECT_NE(std::string(e.reason).find("not this log's disk"), std::string::npos) << e.reason;
    // the base image itself as the working copy: refused, the base untouched
    std::string before = read_all(base);
    e = {};
    EXPECT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), base.c_str(), &e), -EINVAL);
    EXPECT_NE(std::string(e.reason).find("is the base image"), std::string::npos) << e.reason;
    EXPECT_TRUE(read_all(base) == before);
    otasim_blklog_close(&log);
}

// A log as Linux's dm-log-writes writes it, by hand: QEMU never sets the FUA
// flag or writes marks (a FUA request reaches its log as a FLUSH entry).
TEST_F(BlkLogTest, FuaMarksAndDiscardsAreCountedAndPlaced)
{
    std::string l(512 * 8, '\0');
    put_le64(l, 0, OTASIM_BLKLOG_MAGIC);
    put_le64(l, 8, 1);
    put_le64(l, 16, 5);
    l[24] = 0, l[25] = 2; // sector size 512
    size_t at = 512;
    auto entry = [&](uint64_t sector, uint64_t nr, uint64_t flags, uint64_t len) {
        put_le64(l, at, sector);
        put_le64(l, at + 8, nr);
        put_le64(l, at + 16, flags);
        put_le64(l, at + 24, len);
    };
    entry(3, 1, OTASIM_BLK_FUA, 0); // a FUA write of one sector of 0x5a
    memset(&l[at + 512], 0x5a, 512);
    at += 1024;
    entry(0, 0, OTASIM_BLK_MARK, 2);
    memcpy(&l[at + 32], "m1", 2);
    at += 512;
    entry(1, 2, OTASIM_BLK_DISCARD, 0); // no data follows a discard
    at += 512;
    entry(0, 0, OTASIM_BLK_FLUSH, 0);
    at += 512;
    entry(5, 1, 0, 0);
    memset(&l[at + 512], 0x77, 512);
    std::string path = dir + "/dm.log";
    write_all(path, l);

    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    EXPECT_EQ(log.n_fua, 1u);
    EXPECT_EQ(log.n_flushes, 1u);
    EXPECT_EQ(log.n_marks, 1u);
    EXPECT_EQ(log.n_discards, 1u);
    EXPECT_EQ(log.n_writes, 2u);
    EXPECT_EQ(log.bytes, 1024u);
    EXPECT_EQ(std::string((const char *)log.map + log.e[1].data_off, log.e[1].data_len), "m1");
    uint64_t *pos = nullptr, np = 0;
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_FLUSH, &pos, &np), 0);
    EXPECT_EQ(std::vector<uint64_t>(pos, pos + np), (std::vector<uint64_t>{0, 1, 4, 5}));
    free(pos);
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_WRITE, &pos, &np), 0);
    EXPECT_EQ(std::vector<uint64_t>(pos, pos + np), (std::vector<uint64_t>{0, 1, 3, 5}));
    free(pos);
    // the last write lands where it says, the discard as zeroes in the zero model
    struct otasim_blkreplay r;
    std::string work = dir + "/work.raw";
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    r.discard = OTASIM_BLK_DISCARD_ZERO;
    ASSERT_EQ(otasim_blkreplay_seek(&r, 5, &e), 0) << e.reason;
    std::string got = read_all(work), want = read_all(base);
    memset(&want[512], 0, 1024);
    memset(&want[3 * 512], 0x5a, 512);
    memset(&want[5 * 512], 0x77, 512);
    EXPECT_TRUE(got == want);
    otasim_blkreplay_free(&r);
    otasim_blklog_close(&log);
    // a mark longer than its sector is refused
    put_le64(l, 512 + 1024 + 24, 512 - 32 + 1);
    write_all(path, l);
    EXPECT_NE(open_error(path).find("does not fit"), std::string::npos) << open_error(path);
}

// One working copy moved forward, then back, with only the changes copied
// out, gives the same states as a fresh replay of each point.
TEST_F(BlkLogTest, IncrementalStatesMatchFreshReplays)
{
    std::string path = record(kCmds);
    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    uint64_t *pos = nullptr, np = 0;
    ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_WRITE, &pos, &np), 0);
    std::vector<std::string> fresh;
    for (uint64_t p = 0; p < np; p++)
        fresh.push_back(state(&log, OTASIM_BLK_UNIT_WRITE, p));
    struct otasim_blkreplay r;
    std::string work = dir + "/inc.raw", out = dir + "/out.raw";
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    r.discard = OTASIM_BLK_DISCARD_ZERO;
    int fd = open(out.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    std::vector<uint64_t> order;
    for (uint64_t p = 0; p < np; p++)
        order.push_back(p);
    order.push_back(1); // backward
    order.push_back(np - 1);
    order.push_back(0);
    bool first = true;
    for (auto p : order) {
        ASSERT_EQ(otasim_blkreplay_seek(&r, pos[p], &e), 0) << e.reason;
        ASSERT_EQ(otasim_blkreplay_sync(&r, fd, first, &e), 0) << e.reason;
        first = false;
        EXPECT_TRUE(read_all(out) == fresh[p]) << "point " << p;
    }
    close(fd);
    otasim_blkreplay_free(&r);
    free(pos);
    otasim_blklog_close(&log);
}

// A checker's partitions: a byte range of the working copy is written out
// only where it changed, and a write of the bytes already there changes
// nothing (the state after it shares the previous state's disk).
TEST_F(BlkLogTest, RangesAreSyncedWhereTheyChangedAndSameBytesChangeNothing)
{
    // 0xaa at 0, then the same 0xaa again, then 0xdd at 64 KiB (a second chunk)
    std::string path =
        record({"write -P 0xaa 0 4k", "write -P 0xaa 0 4k", "write -P 0xdd 65536 4k"});
    struct otasim_blklog log;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_open(&log, path.c_str(), &e), 0) << e.reason;
    struct otasim_blkreplay r;
    std::string work = dir + "/inc.raw", part = dir + "/part.raw";
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    int fd = open(part.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    // the "partition": bytes [60 KiB, 132 KiB) of the disk, across three chunks
    const uint64_t off = 60 * 1024, len = 72 * 1024;
    EXPECT_EQ(otasim_blkreplay_changed(&r, off, len, 0), 1); // the base copy counts
    ASSERT_EQ(otasim_blkreplay_sync_range(&r, fd, off, len, 0, &e), 0) << e.reason;
    EXPECT_TRUE(read_all(part) == read_all(base).substr(off, len));
    uint64_t synced = r.seq;
    ASSERT_EQ(otasim_blkreplay_seek(&r, 1, &e), 0) << e.reason; // 0xaa at 0: chunk 0 only
    EXPECT_EQ(otasim_blkreplay_changed(&r, 0, 4096, synced), 1);
    EXPECT_EQ(otasim_blkreplay_changed(&r, 65536, 4096, synced), 0);
    uint64_t after1 = r.seq;
    ASSERT_EQ(otasim_blkreplay_seek(&r, 2, &e), 0) << e.reason; // the same bytes again
    EXPECT_EQ(r.seq, after1) << "a write of the bytes already there changed the disk";
    ASSERT_EQ(otasim_blkreplay_seek(&r, 3, &e), 0) << e.reason;
    EXPECT_EQ(otasim_blkreplay_changed(&r, 65536, 4096, after1), 1);
    // the partition file gets the changed chunks (0 and 1); a scribble in the
    // range's third chunk (128 KiB on), which did not change, stays: proof that
    // only changed chunks are copied
    const uint64_t third = 128 * 1024 - off;
    std::string scribble(16, 'S');
    ASSERT_EQ(pwrite(fd, scribble.data(), scribble.size(), (off_t)third), (ssize_t)scribble.size());
    ASSERT_EQ(otasim_blkreplay_sync_range(&r, fd, off, len, synced, &e), 0) << e.reason;
    std::string got = read_all(part), disk = read_all(work);
    EXPECT_EQ(got.size(), len);
    EXPECT_TRUE(got.substr(0, third) == disk.substr(off, third));
    EXPECT_EQ((unsigned char)got[65536 - off], 0xdd);
    EXPECT_EQ(got.substr(third, 16), scribble);
    // a range outside the image is refused
    EXPECT_LT(otasim_blkreplay_sync_range(&r, fd, r.image_size - 10, 20, 0, &e), 0);
    close(fd);
    otasim_blkreplay_free(&r);
    otasim_blklog_close(&log);
}

std::string run(const std::string &cmd, int *status)
{
    return blk_run(cmd, status);
}

// The command line: ota-sim blocks info and replay on a qemu-io log.
TEST_F(BlkLogTest, CommandLineInfoAndReplay)
{
    std::string sim = std::string(OTA_BINARY_DIR) + "/sim/ota-sim";
    if (access(sim.c_str(), X_OK) != 0)
        GTEST_SKIP() << sim << " not built";
    std::string disk, path = record(kCmds, &disk);
    int st = 0;
    std::string out = run(sim + " blocks info " + path, &st);
    EXPECT_EQ(WEXITSTATUS(st), 0) << out;
    EXPECT_NE(out.find(" writes=7 discards=1 "), std::string::npos) << out;
    EXPECT_NE(out.find(" fua=0 "), std::string::npos) << out;
    EXPECT_NE(out.find("points_write=9"), std::string::npos) << out;
    std::string img = dir + "/cli.raw";
    out = run(sim + " blocks replay --base " + base + " --log " + path +
                  " --unit write --point 8 --out " + img,
              &st);
    EXPECT_EQ(WEXITSTATUS(st), 0) << out;
    EXPECT_TRUE(read_all(img) == disk);
    out = run(sim + " blocks replay --base " + base + " --log " + path +
                  " --unit write --point 3 --out " + img,
              &st);
    EXPECT_EQ(WEXITSTATUS(st), 0) << out;
    auto d = data_cmds();
    EXPECT_TRUE(read_all(img) == direct({d[0], d[1], d[2]}));
    out = run(sim + " blocks replay --base " + base + " --log " + path +
                  " --unit write --point 9 --out " + img,
              &st);
    EXPECT_EQ(WEXITSTATUS(st), 2) << out;
    EXPECT_NE(out.find("point 9 out of range"), std::string::npos) << out;
    std::string cut = dir + "/cut.log";
    write_all(cut, read_all(path).substr(0, 512 * 12));
    out = run(sim + " blocks info " + cut, &st);
    EXPECT_EQ(WEXITSTATUS(st), 2) << out;
    EXPECT_NE(out.find("truncated"), std::string::npos) << out;
}

} // namespace
