// The torn-write and SD erase-block models of block-level crash states
// (otasim/blklog.h, docs/blocks.md "Models of a state") on logs recorded by the
// real QEMU blklogwrites driver through qemu-io (no guest). The states the
// models start from are the replayer's, which test_blklog.cc checks against
// the disks qemu-io itself leaves. Skips where qemu-io is missing
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
#include <random>
#include <set>
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

// Writes of several sizes and alignments: multi-page, unaligned (qemu-io's
// block layer logs whole sectors), one sector, one across a 64 KiB boundary.
const std::vector<std::string> kCmds = {
    "write -P 0xaa 512 16k",
    "write -P 0xbb 65536 8k",
    "flush",
    "write -P 0xcc 200000 4k",
    "write -P 0xdd 4096 512",
    "write -P 0xee 126976 8k",
    "write -z 300000 12k",
    "flush",
    "write -P 0x11 700000 20k",
    "write -P 0x22 1040384 8k",
};

class BlkModelTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        if (sh("command -v qemu-io") != 0)
            GTEST_SKIP() << "qemu-io missing (images/install-deps installs qemu-utils)";
        std::string tmpl_s = (fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
        tmpl_s += "/otasim-blkmodel-XXXXXX";
        std::vector<char> tmpl(tmpl_s.begin(), tmpl_s.end());
        tmpl.push_back('\0');
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl.data();
        base = dir + "/base.raw";
        work = dir + "/work.raw";
        std::mt19937 rng(1616);
        std::string data(kDisk, '\0');
        for (auto &c : data)
            c = (char)(rng() & 0xff);
        write_all(base, data);
        std::string d = dir + "/rec.raw";
        logpath = dir + "/rec.log";
        fs::copy_file(base, d);
        write_all(logpath, "");
        std::string cmd = "qemu-io -t writeback --image-opts 'driver=blklogwrites,file.driver=file,"
                          "file.filename=" +
                          d + ",log.driver=file,log.filename=" + logpath +
                          ",log-append=off,log-super-update-interval=1'";
        for (const auto &c : kCmds)
            cmd += " -c '" + c + "'";
        ASSERT_EQ(sh(cmd), 0) << cmd;
        struct ota_err e = {};
        ASSERT_EQ(otasim_blklog_open(&log, logpath.c_str(), &e), 0) << e.reason;
        opened = true;
        ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_WRITE, &wpos, &nw), 0);
        ASSERT_EQ(otasim_blklog_points(&log, OTASIM_BLK_UNIT_FLUSH, &fpos, &nf), 0);
        // 10 data entries: the block layer splits the unaligned write of zeroes into a
        // read-modify-write of its head sector, the aligned zeroes and its tail sector
        ASSERT_EQ(nw, 11u);
        // the disk at every log position, by fresh replays
        for (uint64_t p = 0; p <= log.nr_entries; p++)
            at.push_back(fresh(p));
    }
    void TearDown() override
    {
        free(wpos);
        free(fpos);
        if (opened)
            otasim_blklog_close(&log);
        if (!dir.empty())
            fs::remove_all(dir);
    }

    std::string fresh(uint64_t p)
    {
        struct otasim_blkreplay r;
        struct ota_err e = {};
        std::string w = dir + "/fresh.raw";
        EXPECT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), w.c_str(), &e), 0) << e.reason;
        EXPECT_EQ(otasim_blkreplay_seek(&r, p, &e), 0) << e.reason;
        otasim_blkreplay_free(&r);
        return read_all(w);
    }

    uint64_t off_of(uint64_t i) const
    {
        return log.e[i].sector * log.sector_size;
    }
    uint64_t len_of(uint64_t i) const
    {
        return log.e[i].nr_sectors * log.sector_size;
    }

    std::string dir, base, work, logpath;
    struct otasim_blklog log = {};
    bool opened = false;
    uint64_t *wpos = nullptr, *fpos = nullptr, nw = 0, nf = 0;
    std::vector<std::string> at; // at[p]: the disk with the first p entries applied
};

// Write unit: the cut during the write that completes point n keeps exactly
// the first k pages of it, k in 1..m-1 by the seed; the state differs from
// both neighbours; the undo restores the state before it byte for byte and
// the replayer moves on.
TEST_F(BlkModelTest, TornWriteKeepsExactlyItsFirstKPages)
{
    struct otasim_blkreplay r;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    int out = open((dir + "/out.raw").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(out, 0);
    bool first_sync = true;
    uint64_t torn_states = 0;
    for (uint64_t unit : {512u, 4096u, 16384u}) {
        for (uint64_t n = 1; n < nw; n++) {
            uint64_t i = wpos[n] - 1, off = off_of(i), len = len_of(i);
            uint64_t m = (off + len - 1) / unit - off / unit + 1;
            std::set<uint64_t> ks;
            for (uint64_t seed = 0; seed < 12; seed++) {
                struct otasim_blk_torn t = {}, again = {};
                ASSERT_EQ(otasim_blkreplay_seek(&r, i, &e), 0) << e.reason;
                ASSERT_EQ(otasim_blkreplay_apply_torn(&r, i, seed, unit, &t, &e), 0) << e.reason;
                ASSERT_EQ(otasim_blklog_torn(&log, i, seed, unit, &again, &e), 0) << e.reason;
                EXPECT_EQ(t.k, again.k) << "reproducible by (log, entry, seed)";
                EXPECT_EQ(t.entry, i);
                EXPECT_EQ(t.pieces, m) << "entry " << i << " unit " << unit;
                std::string got = read_all(work);
                const std::string &before = at[i], &after = at[i + 1];
                if (m < 2) {
                    EXPECT_EQ(t.k, 0u);
                    EXPECT_EQ(t.bytes, 0u);
                    EXPECT_TRUE(got == before) << "a write inside one page cannot tear";
                } else {
                    ASSERT_GE(t.k, 1u);
                    ASSERT_LE(t.k, m - 1);
                    ks.insert(t.k);
                    // the first k pages: up to the end of page k of the address space
                    uint64_t bytes = (off / unit + t.k) * unit - off;
                    EXPECT_EQ(t.bytes, bytes);
                    ASSERT_LT(bytes, len);
                    std::string want = before;
                    want.replace(off, bytes, after, off, bytes);
                    EXPECT_TRUE(got == want) << "entry " << i << " seed " << seed;
                    EXPECT_TRUE(got != before && got != after) << "entry " << i << " seed " << seed;
                    torn_states++;
                }
                // the changed chunks reach a synced image too
                ASSERT_EQ(otasim_blkreplay_sync(&r, out, first_sync, &e), 0) << e.reason;
                first_sync = false;
                EXPECT_TRUE(read_all(dir + "/out.raw") == got);
                ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
                EXPECT_TRUE(read_all(work) == before) << "undo, entry " << i << " seed " << seed;
                ASSERT_EQ(otasim_blkreplay_sync(&r, out, 0, &e), 0) << e.reason;
                EXPECT_TRUE(read_all(dir + "/out.raw") == before);
            }
            if (m >= 3)
                EXPECT_GE(ks.size(), 2u) << "seeds choose different k, entry " << i;
            ASSERT_EQ(otasim_blkreplay_seek(&r, wpos[n], &e), 0) << e.reason;
            EXPECT_TRUE(read_all(work) == at[wpos[n]]) << "moving on after the undo";
        }
    }
    EXPECT_GE(torn_states, 100u);
    close(out);
    otasim_blkreplay_free(&r);
}

// Flush unit: the torn write is one in flight that the subset did not keep,
// applied after the kept ones.
TEST_F(BlkModelTest, TornWriteInFlightBesideTheSubset)
{
    struct otasim_blkreplay r;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    ASSERT_GE(nf, 3u);
    std::set<uint64_t> picked;
    for (uint64_t seed = 0; seed < 32; seed++) {
        uint64_t from = fpos[1], *idx = nullptr, k = 0, entry = 0;
        ASSERT_EQ(otasim_blklog_subset(&log, from, seed, &idx, &k), 0);
        int rc = otasim_blklog_torn_pick(&log, from, idx, k, seed, &entry, &e);
        uint64_t inflight = 0;
        for (uint64_t i = from; i < log.nr_entries && !otasim_blk_entry_is_barrier(&log.e[i]); i++)
            inflight += otasim_blk_entry_is_data(&log.e[i]);
        if (k == inflight) { // the subset kept them all: nothing left to tear
            EXPECT_EQ(rc, -ENOENT);
            free(idx);
            continue;
        }
        ASSERT_EQ(rc, 0) << e.reason;
        ASSERT_GE(entry, from);
        ASSERT_LT(entry, from + inflight); // the writes between the barriers (no mark here)
        ASSERT_TRUE(otasim_blk_entry_is_data(&log.e[entry]));
        for (uint64_t j = 0; j < k; j++)
            EXPECT_NE(idx[j], entry) << "the torn write is not one the subset kept";
        picked.insert(entry);
        ASSERT_EQ(otasim_blkreplay_seek(&r, from, &e), 0) << e.reason;
        ASSERT_EQ(otasim_blkreplay_apply_extra(&r, idx, k, &e), 0) << e.reason;
        std::string kept = read_all(work);
        struct otasim_blk_torn t = {};
        ASSERT_EQ(otasim_blkreplay_apply_torn(&r, entry, seed, 4096, &t, &e), 0) << e.reason;
        std::string want = kept, got = read_all(work);
        std::string data((const char *)log.map + log.e[entry].data_off, len_of(entry));
        if (log.e[entry].flags & OTASIM_BLK_DISCARD)
            data.assign(len_of(entry), '\0');
        want.replace(off_of(entry), t.bytes, data, 0, t.bytes);
        EXPECT_TRUE(got == want) << "seed " << seed;
        ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
        EXPECT_TRUE(read_all(work) == at[from]);
        free(idx);
    }
    EXPECT_GE(picked.size(), 2u);
    // after the last barrier nothing is in flight
    uint64_t entry = 0;
    e = {};
    EXPECT_EQ(otasim_blklog_torn_pick(&log, fpos[nf - 1], nullptr, 0, 1, &entry, &e), -ENOENT);
    EXPECT_NE(std::string(e.reason).find("no write in flight"), std::string::npos) << e.reason;
    otasim_blkreplay_free(&r);
}

// The erase-block model: the other sectors of the aligned erase blocks that
// hold the point's last write are 0xff or garbage; the write's own sectors and
// everything outside those blocks stay; undone byte for byte.
TEST_F(BlkModelTest, EraseBlockDamageSparesTheWriteAndChangesTheRest)
{
    struct otasim_blkreplay r;
    struct ota_err e = {};
    const uint64_t ss = log.sector_size;
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    bool two_blocks = false, clipped = false;
    for (uint64_t eb : {16384u, 65536u, 4u * 1024 * 1024}) {
        for (uint64_t n = 1; n < nw; n++) {
            uint64_t i = wpos[n] - 1, off = off_of(i), end = off + len_of(i);
            uint64_t bs = off / eb * eb, be = std::min<uint64_t>((end - 1) / eb * eb + eb, kDisk);
            two_blocks |= (end - 1) / eb != off / eb;
            clipped |= be - bs < eb;
            std::string prev;
            for (uint64_t seed : {7u, 8u}) {
                struct otasim_blk_damage d = {};
                ASSERT_EQ(otasim_blkreplay_seek(&r, wpos[n], &e), 0) << e.reason;
                ASSERT_EQ(otasim_blkreplay_apply_erase_damage(&r, i, eb, seed, &d, &e), 0)
                    << e.reason;
                std::string got = read_all(work);
                const std::string &state = at[wpos[n]];
                EXPECT_EQ(d.off, bs);
                EXPECT_EQ(d.len, be - bs);
                EXPECT_EQ(d.sectors_ff + d.sectors_garbage, (be - bs - (end - off)) / ss);
                EXPECT_EQ(got.compare(0, bs, state, 0, bs), 0) << "before the erase block";
                EXPECT_EQ(got.compare(be, std::string::npos, state, be, std::string::npos), 0)
                    << "after the erase block";
                EXPECT_EQ(got.compare(off, end - off, state, off, end - off), 0)
                    << "the write's own sectors, entry " << i;
                uint64_t ff = 0, garbage = 0;
                std::vector<uint8_t> model(ss);
                for (uint64_t s = bs; s < be; s += ss) {
                    if (s >= off && s < end)
                        continue;
                    EXPECT_NE(got.compare(s, ss, state, s, ss), 0) << "sector at byte " << s;
                    bool erased = got.find_first_not_of('\xff', s) >= s + ss;
                    (erased ? ff : garbage)++;
                    int is_ff = otasim_blk_damage_sector(seed, s / ss, model.data(), (uint32_t)ss);
                    EXPECT_EQ(is_ff, erased ? 1 : 0);
                    EXPECT_EQ(got.compare(s, ss, (const char *)model.data(), ss), 0);
                }
                EXPECT_EQ(ff, d.sectors_ff);
                EXPECT_EQ(garbage, d.sectors_garbage);
                if (be - bs - (end - off) >= 64 * ss) // both kinds in a large block
                    EXPECT_TRUE(ff > 0 && garbage > 0) << ff << " " << garbage;
                if (!prev.empty() && be - bs > end - off)
                    EXPECT_TRUE(prev != got) << "seeds damage differently";
                prev = got;
                ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
                EXPECT_TRUE(read_all(work) == state) << "undo, entry " << i << " eb " << eb;
            }
            if (n + 1 < nw) { // the replayer moves on
                ASSERT_EQ(otasim_blkreplay_seek(&r, wpos[n + 1], &e), 0) << e.reason;
                EXPECT_TRUE(read_all(work) == at[wpos[n + 1]]);
            }
        }
    }
    EXPECT_TRUE(two_blocks) << "a write across two erase blocks damages both";
    EXPECT_TRUE(clipped) << "an erase block past the disk's end is cut at it";
    // torn and damaged together (the cut while the card programs the write)
    uint64_t i = wpos[1] - 1;
    ASSERT_EQ(otasim_blkreplay_seek(&r, i, &e), 0) << e.reason;
    struct otasim_blk_torn t = {};
    ASSERT_EQ(otasim_blkreplay_apply_torn(&r, i, 3, 4096, &t, &e), 0) << e.reason;
    ASSERT_EQ(otasim_blkreplay_apply_erase_damage(&r, i, 65536, 3, nullptr, &e), 0) << e.reason;
    EXPECT_EQ(read_all(work).compare(off_of(i), t.bytes, at[i + 1], off_of(i), t.bytes), 0);
    ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
    EXPECT_TRUE(read_all(work) == at[i]);
    otasim_blkreplay_free(&r);
}

std::string err_of(int rc, const struct ota_err &e)
{
    EXPECT_EQ(rc, -EINVAL) << e.reason;
    return e.reason;
}

TEST_F(BlkModelTest, BadArgumentsAreRefusedWithAReason)
{
    struct otasim_blkreplay r;
    struct ota_err e = {};
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    uint64_t w = wpos[1] - 1, flush = fpos[1] - 1;
    ASSERT_TRUE(otasim_blk_entry_is_barrier(&log.e[flush]));
    struct otasim_blk_torn t;
    auto torn = [&](uint64_t idx, uint64_t unit) {
        e = {};
        return err_of(otasim_blkreplay_apply_torn(&r, idx, 1, unit, &t, &e), e);
    };
    auto damage = [&](uint64_t idx, uint64_t eb) {
        e = {};
        return err_of(otasim_blkreplay_apply_erase_damage(&r, idx, eb, 1, nullptr, &e), e);
    };
    EXPECT_NE(torn(w, 3000).find("not a power of two"), std::string::npos);
    EXPECT_NE(torn(w, 0).find("not a power of two"), std::string::npos);
    EXPECT_NE(torn(w, 256).find("not a multiple of the log's sector size"), std::string::npos);
    EXPECT_NE(torn(w, 32u * 1024 * 1024).find("more than"), std::string::npos);
    EXPECT_NE(torn(flush, 4096).find("not a write"), std::string::npos);
    EXPECT_NE(torn(log.nr_entries, 4096).find("not in the log"), std::string::npos);
    EXPECT_NE(damage(w, 3u << 20).find("not a power of two"), std::string::npos);
    EXPECT_NE(damage(w, 256).find("not a multiple of the log's sector size"), std::string::npos);
    EXPECT_NE(damage(w, 128u << 20).find("more than"), std::string::npos);
    EXPECT_NE(damage(flush, 65536).find("not a write"), std::string::npos);
    EXPECT_NE(damage(log.nr_entries, 65536).find("not in the log"), std::string::npos);
    // tearing a write the working copy already holds would be a silent no-op
    ASSERT_EQ(otasim_blkreplay_seek(&r, wpos[1], &e), 0) << e.reason;
    EXPECT_NE(torn(w, 4096).find("already applied"), std::string::npos);
    EXPECT_TRUE(read_all(work) == at[wpos[1]]) << "a refused model changes nothing";
    // a seek with a model applied is refused until the undo
    ASSERT_EQ(otasim_blkreplay_apply_erase_damage(&r, w, 65536, 1, nullptr, &e), 0) << e.reason;
    e = {};
    EXPECT_EQ(otasim_blkreplay_seek(&r, wpos[2], &e), -EBUSY);
    ASSERT_EQ(otasim_blkreplay_undo_extra(&r, &e), 0) << e.reason;
    EXPECT_EQ(otasim_blkreplay_seek(&r, wpos[2], &e), 0) << e.reason;
    otasim_blkreplay_free(&r);
}

std::string run(const std::string &cmd, int *status)
{
    return blk_run(cmd, status);
}

// ota-sim blocks replay with the models: the states of the C functions, and
// clear refusals.
TEST_F(BlkModelTest, CommandLineModels)
{
    std::string sim = std::string(OTA_BINARY_DIR) + "/sim/ota-sim";
    if (access(sim.c_str(), X_OK) != 0)
        GTEST_SKIP() << sim << " not built";
    std::string img = dir + "/cli.raw",
                pre = sim + " blocks replay --base " + base + " --log " + logpath + " --out " + img;
    int st = 0;
    // write unit, torn: between points 1 and 2
    uint64_t i = wpos[2] - 1;
    std::string out = run(pre + " --unit write --point 2 --torn-seed 5 --torn-unit 512", &st);
    ASSERT_EQ(WEXITSTATUS(st), 0) << out;
    struct otasim_blk_torn t = {};
    struct ota_err e = {};
    ASSERT_EQ(otasim_blklog_torn(&log, i, 5, 512, &t, &e), 0) << e.reason;
    EXPECT_NE(out.find("torn_entry=" + std::to_string(i) + " torn_pages=" + std::to_string(t.k) +
                       "/" + std::to_string(t.pieces)),
              std::string::npos)
        << out;
    std::string want = at[i];
    want.replace(off_of(i), t.bytes, at[i + 1], off_of(i), t.bytes);
    EXPECT_TRUE(read_all(img) == want);
    // the erase-block model at point 3
    out = run(pre + " --unit write --point 3 --erase-block 64K --damage-seed 9", &st);
    ASSERT_EQ(WEXITSTATUS(st), 0) << out;
    EXPECT_NE(out.find("damage_entry=" + std::to_string(wpos[3] - 1)), std::string::npos) << out;
    struct otasim_blkreplay r;
    ASSERT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
    ASSERT_EQ(otasim_blkreplay_seek(&r, wpos[3], &e), 0) << e.reason;
    ASSERT_EQ(otasim_blkreplay_apply_erase_damage(&r, wpos[3] - 1, 65536, 9, nullptr, &e), 0);
    EXPECT_TRUE(read_all(img) == read_all(work));
    otasim_blkreplay_free(&r);
    // refusals: exit 2 with the reason, no image left
    const std::vector<std::pair<std::string, std::string>> bad = {
        {" --unit write --point 0 --torn-seed 1", "no write before it"},
        {" --unit write --point 1 --torn-seed 1 --torn-unit 3000", "not a power of two"},
        {" --unit write --point 1 --torn-seed 1 --torn-unit 256", "not a multiple"},
        {" --unit write --point 1 --torn-unit 4K", "--torn-unit needs --torn-seed"},
        {" --unit write --point 1 --erase-block 3M --damage-seed 1", "not a power of two"},
        {" --unit write --point 1 --erase-block 256 --damage-seed 1", "not a multiple"},
        {" --unit write --point 1 --erase-block 4M", "go together"},
        {" --unit flush --point 1 --erase-block 4M --damage-seed 1", "needs --unit write"},
        {" --unit flush --point " + std::to_string(nf - 1) + " --torn-seed 1",
         "no write in flight"},
        {" --unit write --point 1 --erase-block 4X --damage-seed 1", "bad option"},
    };
    for (const auto &b : bad) {
        fs::remove(img);
        out = run(pre + b.first, &st);
        EXPECT_EQ(WEXITSTATUS(st), 2) << b.first << ": " << out;
        EXPECT_NE(out.find(b.second), std::string::npos) << b.first << ": " << out;
        EXPECT_FALSE(fs::exists(img) && fs::file_size(img) > 0) << b.first;
    }
}

// Found by the blklog fuzz target (corpus/blklog/crash-discard-range-overflow): a
// discard carries no data, so only the overflow check bounds its range; one of 2^56
// sectors of 512 bytes wrapped that check and the range's bytes to 0.
TEST(BlkLogReader, ADiscardWhoseRangeOverflowsIsRefused)
{
    std::string dir = (fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
    std::string path = dir + "/otasim-blkmodel-overflow-" + std::to_string(getpid()) + ".log";
    for (auto [sector, nr] : std::vector<std::pair<uint64_t, uint64_t>>{{0, 1ULL << 56},
                                                                        {1, UINT64_MAX / 512},
                                                                        {UINT64_MAX / 512, 1},
                                                                        {0, UINT64_MAX},
                                                                        {0, UINT64_MAX / 512}}) {
        std::string l(1024, '\0');
        auto put = [&](size_t off, uint64_t v) {
            for (int i = 0; i < 8; i++)
                l[off + (size_t)i] = (char)((v >> (8 * i)) & 0xff);
        };
        put(0, OTASIM_BLKLOG_MAGIC);
        put(8, 1);
        put(16, 1);
        l[25] = 2; // sector size 512
        put(512, sector);
        put(520, nr);
        put(528, OTASIM_BLK_DISCARD);
        write_all(path, l);
        struct otasim_blklog log;
        struct ota_err e = {};
        int rc = otasim_blklog_open(&log, path.c_str(), &e);
        if (rc == 0)
            otasim_blklog_close(&log);
        if (nr == UINT64_MAX / 512) { // the largest range whose bytes fit: a log, not this disk's
            EXPECT_EQ(rc, sector == 0 ? 0 : -EINVAL) << e.reason;
            continue;
        }
        EXPECT_EQ(rc, -EINVAL) << sector << " + " << nr;
        EXPECT_NE(std::string(e.reason).find("overflows"), std::string::npos) << e.reason;
    }
    fs::remove(path);
}

} // namespace
