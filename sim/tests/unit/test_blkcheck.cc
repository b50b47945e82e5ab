// Block-level crash states checked without booting (otasim/blkcheck.h): a
// small disk laid out like the device's (MBR; p1 FAT with uboot.env, p2 rootA,
// p3 rootB, p4 data with agent.db) made with the real tools, changed the way
// a guest would change it (a log recorded by QEMU's blklogwrites driver through
// qemu-io, the bytes taken from an edit made with debugfs -w, mcopy or a
// direct overwrite), replayed and checked state by state. Each crash-state
// invariant is shown failing on a state that breaks it, with its reason, while
// the pristine disk passes every one; and the sharing of results is shown:
// an unchanged disk, a change no reader looks at, a change that reads the
// same, a real change. Skips where a tool is missing (images/install-deps).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "blk_test_util.h"
#include "otasim/blkcheck.h"
#include "otasim/blklog.h"
#include "otasim/bootloader.h"
#include "otasim/qemu.h"
#include "otasim/scenario.h"
#include "otasim/sim.h"
#include "files.h"

namespace fs = std::filesystem;

namespace
{

const char *const kInvariants[] = {"fs-consistent",        "bootenv-readable", "one-active-slot",
                                   "active-slot-complete", "lkg-untouched",    "db-integrity"};

std::string run(const std::string &cmd, int *status = nullptr)
{
    return blk_run(cmd, status);
}

bool have(const char *tool)
{
    int st = 0;
    run(std::string("PATH=$PATH:/usr/sbin:/sbin command -v ") + tool, &st);
    return st == 0;
}

// The partitions, in sectors (MBR, 512-byte sectors): 1 MiB before p1, and
// 1 MiB after p4 that no partition holds.
const uint64_t kStart[OTASIM_QPART_MAX] = {2048, 10240, 26624, 43008};
const uint64_t kSize[OTASIM_QPART_MAX] = {8192, 16384, 16384, 16384};
const uint64_t kDiskSectors = 61440;

const char *const kPartName[OTASIM_QPART_MAX] = {"boot", "rootA", "rootB", "data"};

struct Disk {
    std::string part[OTASIM_QPART_MAX]; // a file per partition
};

class BlkCheckTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        for (const char *t : {"qemu-io", "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk", "debugfs",
                              "sqlite3", "e2fsck", "e2undo", "fsck.fat"})
            if (!have(t))
                GTEST_SKIP() << t << " missing (images/install-deps installs it)";
        setenv("PATH",
               (std::string(getenv("PATH") ? getenv("PATH") : "") + ":/usr/sbin:/sbin").c_str(), 1);
        std::string tmpl_s = (fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
        tmpl_s += "/blktests-XXXXXX";
        std::vector<char> tmpl(tmpl_s.begin(), tmpl_s.end());
        tmpl.push_back('\0');
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl.data();
        // two app releases: their trees, their digests (the scenario's built releases)
        release_tree(dir + "/rel/1.0.0", "1.0.0");
        release_tree(dir + "/rel/2.0.0", "2.0.0");
        sc.reset(new otasim_scenario());
        sc->profile = OTASIM_PROFILE_APP;
        sc->n_rel = 2;
        snprintf(sc->rel[0].version, sizeof(sc->rel[0].version), "1.0.0");
        sc->rel[0].factory = 1;
        sc->rel[0].publish = 1;
        snprintf(sc->rel[1].version, sizeof(sc->rel[1].version), "2.0.0");
        sc->rel[1].publish = 1;
        for (int i = 0; i < 2; i++) {
            struct ota_err e = {};
            ASSERT_EQ(otasim_tree_digest((dir + "/rel/" + sc->rel[i].version).c_str(),
                                         built[i].ref_digest, &e),
                      0)
                << e.reason;
        }
        ASSERT_STRNE(built[0].ref_digest, built[1].ref_digest);
        tr.reset(new otasim_trial());
        tr->sc = sc.get();
        tr->built = built;
    }
    void TearDown() override
    {
        if (!dir.empty())
            fs::remove_all(dir);
    }

    static void release_tree(const std::string &root, const std::string &v)
    {
        write_all(root + "/bin/app", "#!/bin/sh\necho app " + v + "\n");
        fs::permissions(root + "/bin/app", fs::perms(0755));
        write_all(root + "/share/index.html", "<p>" + v + "</p>\n");
        write_all(root + "/VERSION", v + "\n");
    }

    void sh_ok(const std::string &cmd)
    {
        int st = 0;
        std::string out = run(cmd, &st);
        ASSERT_EQ(st, 0) << cmd << "\n" << out;
    }

    // The pristine partitions: an env booting slot A, rootA with both app
    // releases (current -> a) and the factory rootfs release, rootB with the
    // other rootfs release, data with agent.db (a journal row DOWNLOADING).
    // env: the env's variables.
    Disk pristine(const std::vector<std::string> &env = {"boot_part=A", "upgrade_available=0",
                                                         "bootcount=0", "bootlimit=3"})
    {
        Disk d;
        std::string p = dir + "/parts", t = dir + "/trees";
        fs::remove_all(p);
        fs::remove_all(t);
        fs::create_directories(p);
        for (int i = 0; i < OTASIM_QPART_MAX; i++)
            d.part[i] = p + "/" + kPartName[i] + ".img";
        // boot: FAT with uboot.env
        std::vector<const char *> vars;
        for (const auto &v : env)
            vars.push_back(v.c_str());
        struct ota_err e = {};
        std::string envf = dir + "/uboot.env", cfg = dir + "/fw_env.config";
        EXPECT_EQ(otasim_bootenv_create(envf.c_str(), cfg.c_str(), vars.data(), vars.size(), &e), 0)
            << e.reason;
        // FAT16 (one sector a cluster at this size), as the device's 64 MiB
        // boot partition: it has the dirty bit a mount sets
        sh_ok("mkfs.vfat -F 16 -s 1 -C " + d.part[0] + " " + std::to_string(kSize[0] / 2));
        sh_ok("mcopy -i " + d.part[0] + " " + envf + " ::uboot.env");
        // rootA: the app slots and the factory rootfs release
        fs::create_directories(t + "/rootA/opt/app");
        fs::copy(dir + "/rel/1.0.0", t + "/rootA/opt/app/a", fs::copy_options::recursive);
        fs::copy(dir + "/rel/2.0.0", t + "/rootA/opt/app/b", fs::copy_options::recursive);
        fs::create_symlink("a", t + "/rootA/opt/app/current");
        write_all(t + "/rootA/etc/ota-release", "version=1.0.0\n");
        write_all(t + "/rootB/etc/ota-release", "version=2.0.0\n");
        // data: the agent's database, the journal table as the agent makes it
        // (agent/src/drivers/store_sqlite.c)
        fs::create_directories(t + "/data");
        write_all(dir + "/db.sql",
                  "CREATE TABLE journal (id INTEGER PRIMARY KEY CHECK (id = 1),"
                  " state TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
                  " manifest TEXT NOT NULL, signature TEXT NOT NULL, url TEXT NOT NULL,"
                  " etag TEXT NOT NULL, from_slot INTEGER NOT NULL, to_slot INTEGER NOT NULL,"
                  " from_version TEXT NOT NULL, durable_len INTEGER NOT NULL,"
                  " prefix_sha256 TEXT NOT NULL, resumes INTEGER NOT NULL,"
                  " attempts INTEGER NOT NULL, failed INTEGER NOT NULL, reason TEXT NOT NULL,"
                  " wait_activation INTEGER NOT NULL DEFAULT 0,"
                  " not_after_ms INTEGER NOT NULL DEFAULT 0,"
                  " standby_since_ms INTEGER NOT NULL DEFAULT 0);\n"
                  "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
                  "INSERT INTO journal VALUES (1, 'DOWNLOADING', 'u1', 'r1', '{}', 'sig',"
                  " 'http://server/u1', 'etag', 0, 1, '1.0.0', 4096, '', 0, 1, 0, '', 0, 0, 0);\n"
                  "INSERT INTO kv VALUES ('device_id', 'dev-1');\n");
        sh_ok("sqlite3 " + t + "/data/agent.db < " + dir + "/db.sql");
        for (int i = 1; i < OTASIM_QPART_MAX; i++)
            sh_ok("mkfs.ext4 -q -F -d " + t + "/" + kPartName[i] + " " + d.part[i] + " " +
                  std::to_string(kSize[i] / 2) + "k");
        return d;
    }

    // A copy of the partitions (the edits go there).
    Disk copy(const Disk &d, const std::string &name)
    {
        Disk c;
        fs::create_directories(dir + "/" + name);
        for (int i = 0; i < OTASIM_QPART_MAX; i++) {
            c.part[i] = dir + "/" + name + "/" + kPartName[i] + ".img";
            fs::copy_file(d.part[i], c.part[i], fs::copy_options::overwrite_existing);
        }
        return c;
    }

    // The disk: sfdisk's MBR, the partitions at their offsets.
    std::string assemble(const Disk &d, const std::string &name)
    {
        std::string disk = dir + "/" + name + ".raw";
        write_all(disk, std::string(kDiskSectors * 512, '\0'));
        std::string script = "label: dos\nunit: sectors\n";
        for (int i = 0; i < OTASIM_QPART_MAX; i++)
            script += "start=" + std::to_string(kStart[i]) + ", size=" + std::to_string(kSize[i]) +
                      ", type=" + (i == 0 ? "c" : "83") + "\n";
        write_all(dir + "/sfdisk.txt", script);
        sh_ok("sfdisk --no-reread --no-tell-kernel " + disk + " < " + dir + "/sfdisk.txt");
        int fd = open(disk.c_str(), O_WRONLY);
        EXPECT_GE(fd, 0);
        for (int i = 0; i < OTASIM_QPART_MAX; i++) {
            std::string b = read_all(d.part[i]);
            EXPECT_EQ(b.size(), kSize[i] * 512) << d.part[i];
            EXPECT_EQ(pwrite(fd, b.data(), b.size(), (off_t)(kStart[i] * 512)), (ssize_t)b.size());
        }
        close(fd);
        return disk;
    }

    void debugfs_w(const std::string &part, const std::string &cmds)
    {
        write_all(dir + "/debugfs.cmd", cmds);
        int st = 0;
        std::string out = run("debugfs -w -f " + dir + "/debugfs.cmd " + part, &st);
        ASSERT_EQ(st, 0) << out;
        // debugfs exits 0 whatever its commands did: a command's complaint is
        // a line that is not the banner or an echoed command
        size_t at = 0;
        while (at < out.size()) {
            size_t nl = out.find('\n', at);
            std::string l = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
            at = nl == std::string::npos ? out.size() : nl + 1;
            // (the banner, an echoed command, write's note)
            EXPECT_TRUE(l.empty() || l.rfind("debugfs ", 0) == 0 || l.rfind("debugfs: ", 0) == 0 ||
                        l.rfind("Allocated inode: ", 0) == 0)
                << "debugfs " << part << ": " << l;
        }
    }

    // A committed transaction in the journal of part (debugfs's journal
    // writer) that rewrites block blk with bytes (then zeroes): the file
    // system needs recovery, as one mounted at the cut does.
    void journal(const std::string &part, uint64_t blk, const std::string &bytes)
    {
        std::string nb(1024, '\0');
        memcpy(&nb[0], bytes.data(), bytes.size());
        write_all(dir + "/journal.blk", nb);
        debugfs_w(part, "jo\njw -b " + std::to_string(blk) + " " + dir + "/journal.blk\njc\n");
        std::string out = run("dumpe2fs -h " + part);
        EXPECT_TRUE(out.find("needs_recovery") != std::string::npos) << out;
    }

    // A new uboot.env with vars, or the current one with its CRC broken
    // (vars empty), into the boot partition.
    void put_env(const std::string &boot, const std::vector<std::string> &vars, bool corrupt)
    {
        std::vector<const char *> v;
        for (const auto &s : vars)
            v.push_back(s.c_str());
        struct ota_err e = {};
        std::string envf = dir + "/new.env", cfg = dir + "/new.config";
        if (vars.empty()) {
            sh_ok("mcopy -n -i " + boot + " ::uboot.env " + envf);
        } else {
            ASSERT_EQ(otasim_bootenv_create(envf.c_str(), cfg.c_str(), v.data(), v.size(), &e), 0)
                << e.reason;
        }
        if (corrupt)
            ASSERT_EQ(otasim_bootenv_corrupt(envf.c_str(), &e), 0) << e.reason;
        sh_ok("mcopy -o -i " + boot + " " + envf + " ::uboot.env");
    }

    // U-Boot's redundant env in the boot partition (images/build-image): two
    // files of one copy each in the redundant format, uboot.env current
    // (flags 1) and uboot-redund.env older (flags 0). Both hold vars and a
    // pad= variable of 8 KiB, 'p's in the current copy and 'o's in the older
    // one (what an older env held), so that a copy spans 17 sectors and a cut
    // inside the rewrite of the older one leaves a copy whose CRC fails.
    void put_redund_env(const std::string &boot, const std::vector<std::string> &vars)
    {
        std::string copies[2];
        for (int k = 0; k < 2; k++) {
            std::vector<std::string> all = vars;
            all.push_back("pad=" + std::string(8192, k ? 'o' : 'p'));
            std::vector<const char *> v;
            for (const auto &x : all)
                v.push_back(x.c_str());
            struct ota_err e = {};
            std::string both = dir + "/both.env", cfg = dir + "/both.config";
            ASSERT_EQ(
                otasim_bootenv_create_redundant(both.c_str(), cfg.c_str(), v.data(), v.size(), &e),
                0)
                << e.reason;
            std::string b = read_all(both);
            ASSERT_EQ(b.size(), 2u * OTASIM_ENV_SIZE);
            copies[k] = b.substr(k * OTASIM_ENV_SIZE, OTASIM_ENV_SIZE); // flags 1, flags 0
        }
        write_all(dir + "/uboot.env", copies[0]);
        write_all(dir + "/" OTASIM_ENV_REDUND_FILE, copies[1]);
        sh_ok("mcopy -o -i " + boot + " " + dir + "/uboot.env " + dir +
              "/" OTASIM_ENV_REDUND_FILE " ::");
    }

    // Sets vars in the redundant env of boot as the agent does (libubootenv,
    // fw_env.config with two lines: each store rewrites the older copy with
    // flags + 1), the new copies written in place over the old ones' sectors.
    void set_redund_env(const std::string &boot, const std::vector<std::string> &vars)
    {
        std::string envs[2] = {dir + "/set.env", dir + "/set-redund.env"};
        const char *names[2] = {"::uboot.env", "::" OTASIM_ENV_REDUND_FILE};
        std::string old[2], cfg = dir + "/set.config";
        struct ota_err e = {};
        for (int k = 0; k < 2; k++) {
            sh_ok("mcopy -n -i " + boot + " " + names[k] + " " + envs[k]);
            old[k] = read_all(envs[k]);
        }
        ASSERT_EQ(
            otasim_bootenv_config_redundant(envs[0].c_str(), envs[1].c_str(), cfg.c_str(), &e), 0)
            << e.reason;
        for (const auto &kv : vars) {
            size_t eq = kv.find('=');
            ASSERT_EQ(otasim_bootenv_set(cfg.c_str(), kv.substr(0, eq).c_str(),
                                         kv.substr(eq + 1).c_str(), &e),
                      0)
                << e.reason;
        }
        std::string img = read_all(boot);
        for (int k = 0; k < 2; k++) {
            std::string now = read_all(envs[k]);
            if (now == old[k])
                continue;
            size_t at = img.find(old[k]); // the file's clusters (one run: a fresh FAT)
            ASSERT_NE(at, std::string::npos);
            ASSERT_EQ(img.find(old[k], at + 1), std::string::npos);
            img.replace(at, now.size(), now);
        }
        write_all(boot, img);
    }

    // A log of qemu-io writes (through blklogwrites) that turns disk from into
    // disk to: one write per run of changed sectors, in disk order, then a
    // flush. The number of writes into *n_writes.
    // max_run: the longest write in sectors (1: a write per sector, each a
    // crash point of its own, as QEMU's SD card writes them).
    std::string log_between(const std::string &from, const std::string &to,
                            uint64_t *n_writes = nullptr, uint64_t max_run = 256)
    {
        std::string a = read_all(from), b = read_all(to);
        EXPECT_EQ(a.size(), b.size());
        std::string cmds;
        uint64_t n = 0, sectors = a.size() / 512;
        fs::create_directories(dir + "/w");
        for (uint64_t s = 0; s < sectors;) {
            if (memcmp(&a[s * 512], &b[s * 512], 512) == 0) {
                s++;
                continue;
            }
            uint64_t e = s + 1;
            while (e < sectors && e - s < max_run && memcmp(&a[e * 512], &b[e * 512], 512) != 0)
                e++;
            std::string chunk = dir + "/w/" + std::to_string(n) + ".bin";
            write_all(chunk, b.substr(s * 512, (e - s) * 512));
            cmds += " -c 'write -q -s " + chunk + " " + std::to_string(s * 512) + " " +
                    std::to_string((e - s) * 512) + "'";
            n++;
            s = e;
        }
        cmds += " -c flush";
        if (n_writes)
            *n_writes = n;
        return record(from, cmds, to);
    }

    // Runs qemu-io commands (raw -c arguments) through blklogwrites on a copy
    // of base; the log's path. want: the disk the commands must leave ("": no
    // check).
    std::string record(const std::string &base, const std::string &cmds,
                       const std::string &want = "")
    {
        std::string d = dir + "/rec.raw", log = dir + "/rec-" + std::to_string(logs++) + ".log";
        fs::copy_file(base, d, fs::copy_options::overwrite_existing);
        write_all(log, "");
        // -t writeback: no FUA writes (test_blklog.cc)
        std::string cmd = "qemu-io -t writeback --image-opts 'driver=blklogwrites,file.driver=file,"
                          "file.filename=" +
                          d + ",log.driver=file,log.filename=" + log +
                          ",log-append=off,log-super-update-interval=1'" + cmds;
        int st = 0;
        std::string out = run(cmd, &st);
        EXPECT_EQ(st, 0) << cmd << "\n" << out;
        if (!want.empty())
            EXPECT_TRUE(read_all(d) == read_all(want)) << "qemu-io did not write the edit";
        return log;
    }

    // The states at crash points of unit (every point when points is empty),
    // checked in order by one checker; the checker's counts into *st.
    // A rootfs device's env edited twice, one state after the other: the
    // checked states of each edit (from the pristine disk, then from the first).
    std::pair<std::vector<otasim_blkstate>, std::vector<otasim_blkstate>>
    two_env_edits(const std::vector<std::string> &first, const std::vector<std::string> &second);
    // A rootfs device with a redundant env (A, no trial), and a copy of its
    // disk after one store of boot_part=B: (the first disk assembled, the copy).
    std::pair<std::string, Disk> redund_env_store();
    std::vector<otasim_blkstate> check(const std::string &base, const std::string &log_path,
                                       std::vector<uint64_t> points = {},
                                       enum otasim_blk_unit unit = OTASIM_BLK_UNIT_WRITE,
                                       otasim_blkcheck_stats *st = nullptr)
    {
        std::vector<otasim_blkstate> out;
        struct otasim_blklog log;
        struct otasim_blkreplay r;
        struct otasim_qemu_image im;
        struct ota_err e = {};
        memset(&im, 0, sizeof(im));
        EXPECT_EQ(otasim_qemu_disk_open(base.c_str(), &im, &e), 0) << e.reason;
        for (int i = 0; i < OTASIM_QPART_MAX; i++) {
            EXPECT_EQ(im.off[i], kStart[i] * 512);
            EXPECT_EQ(im.len[i], kSize[i] * 512);
        }
        int rc = otasim_blklog_open(&log, log_path.c_str(), &e);
        EXPECT_EQ(rc, 0) << e.reason;
        if (rc < 0)
            return out;
        uint64_t *pos = nullptr, np = 0;
        EXPECT_EQ(otasim_blklog_points(&log, unit, &pos, &np), 0);
        if (points.empty())
            for (uint64_t k = 0; k < np; k++)
                points.push_back(k);
        std::string work = dir + "/work.raw";
        EXPECT_EQ(otasim_blkreplay_init(&r, &log, base.c_str(), work.c_str(), &e), 0) << e.reason;
        std::unique_ptr<otasim_blkcheck> ck(new otasim_blkcheck());
        EXPECT_EQ(otasim_blkcheck_init(ck.get(), tr.get(), &im, (dir + "/ck").c_str(), &e), 0)
            << e.reason;
        std::unique_ptr<otasim_blkstate> s(new otasim_blkstate());
        for (auto k : points) {
            if (k >= np) {
                ADD_FAILURE() << "point " << k << " of " << np;
                break;
            }
            EXPECT_EQ(otasim_blkreplay_seek(&r, pos[k], &e), 0) << e.reason;
            EXPECT_EQ(otasim_blkcheck_state(ck.get(), &r, s.get(), &e), 0) << e.reason;
            s->point = k;
            s->pos = pos[k];
            out.push_back(*s);
        }
        if (st)
            *st = ck->st;
        otasim_blkcheck_free(ck.get());
        otasim_blkreplay_free(&r);
        otasim_blklog_close(&log);
        free(pos);
        return out;
    }

    // The last point's state and the first's (the base disk).
    std::pair<otasim_blkstate, otasim_blkstate> first_last(const std::string &base,
                                                           const std::string &log)
    {
        auto v = check(base, log);
        if (v.size() < 2) {
            ADD_FAILURE() << "fewer than two states";
            return {};
        }
        return {v.front(), v.back()};
    }

    std::string dir;
    std::unique_ptr<otasim_scenario> sc;
    std::unique_ptr<otasim_trial> tr;
    otasim_built built[2] = {};
    int logs = 0;
};

const otasim_check *find(const otasim_blkstate &s, const std::string &name)
{
    for (size_t i = 0; i < s.n_checks; i++)
        if (name == s.checks[i].name)
            return &s.checks[i];
    return nullptr;
}

std::string dump(const otasim_blkstate &s)
{
    std::string o = "point " + std::to_string(s.point) + " shared=" + std::to_string(s.shared) +
                    " outcome=" + otasim_outcome_names[s.outcome] + " detail: " + s.detail + "\n";
    for (size_t i = 0; i < s.n_checks; i++)
        o += std::string("  ") + (s.checks[i].ok ? "ok   " : "FAIL ") + s.checks[i].name + ": " +
             s.checks[i].detail + "\n";
    return o;
}

// Every invariant ran; those in failing failed (the state FAIL, its detail
// the first of them), every other passed.
void expect_fails(const otasim_blkstate &s, const std::set<std::string> &failing)
{
    EXPECT_EQ(s.shared, 0) << dump(s);
    for (const char *name : kInvariants) {
        const otasim_check *c = find(s, name);
        ASSERT_NE(c, nullptr) << name << " did not run\n" << dump(s);
        EXPECT_EQ(c->ok, failing.count(name) ? 0 : 1) << name << "\n" << dump(s);
    }
    EXPECT_EQ(s.outcome, failing.empty() ? OTASIM_PASS : OTASIM_FAIL) << dump(s);
    for (const char *name : kInvariants)
        if (failing.count(name)) { // the detail is the first failed check's
            EXPECT_EQ(std::string(s.detail).rfind(std::string(name) + ": ", 0), 0u) << dump(s);
            break;
        }
}

std::string detail(const otasim_blkstate &s, const std::string &name)
{
    const otasim_check *c = find(s, name);
    return c ? c->detail : "(did not run)";
}

bool has(const std::string &text, const std::string &what)
{
    return text.find(what) != std::string::npos;
}

// The offset in the partition of byte off of file path (an ext4 image with
// 1 KiB blocks).
uint64_t db_byte_of(const std::string &part, const std::string &path, uint64_t off)
{
    std::string out =
        run("debugfs -R 'bmap " + path + " " + std::to_string(off / 1024) + "' " + part);
    size_t nl = out.rfind('\n', out.size() - 2);
    uint64_t b = strtoull(out.c_str() + (nl == std::string::npos ? 0 : nl + 1), nullptr, 10);
    EXPECT_GT(b, 0u) << out;
    return b * 1024 + off % 1024;
}

// The same for agent.db on the data partition.
uint64_t db_byte(const std::string &data_part, uint64_t off)
{
    return db_byte_of(data_part, "/agent.db", off);
}

// ---- the pristine disk ------------------------------------------------------

TEST_F(BlkCheckTest, PristineDiskPassesEveryInvariantAndPredictsItsBoot)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    std::string log = record(base, ""); // nothing written: the empty log
    auto v = check(base, log);
    ASSERT_EQ(v.size(), 1u);
    const auto &s = v[0];
    expect_fails(s, {});
    EXPECT_EQ(s.n_checks, 6u) << dump(s);
    EXPECT_EQ(s.slot, 0);
    EXPECT_STREQ(s.version, "1.0.0");
    EXPECT_STREQ(s.app_slot, "a");
    EXPECT_STREQ(s.state, "DOWNLOADING");
    EXPECT_STREQ(s.detail, "predicted: boots rootA, runs 1.0.0 from slot a, agent in DOWNLOADING");
    EXPECT_TRUE(has(detail(s, "bootenv-readable"), "boot_part=A")) << dump(s);
    EXPECT_TRUE(has(detail(s, "active-slot-complete"), "release 1.0.0")) << dump(s);
    // the rootfs profile reads the same disk as a rootfs device
    sc->profile = OTASIM_PROFILE_ROOTFS;
    v = check(base, log);
    ASSERT_EQ(v.size(), 1u);
    expect_fails(v[0], {});
    EXPECT_EQ(v[0].slot, 0);
    EXPECT_STREQ(v[0].version, "1.0.0");
    EXPECT_STREQ(v[0].detail, "predicted: boots rootA, runs 1.0.0, agent in DOWNLOADING");
}

// ---- each invariant failing -------------------------------------------------

TEST_F(BlkCheckTest, FsConsistentFailsOnAGarbledRootASuperBlock)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // sector 2 of rootA (its super block) overwritten
    std::string log = record(base, " -c 'write -q -P 0x5a " +
                                       std::to_string(kStart[OTASIM_QPART_ROOTA] * 512 + 1024) +
                                       " 512' -c flush");
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    // rootA unreadable: its app tree is gone too
    expect_fails(last,
                 {"fs-consistent", "one-active-slot", "active-slot-complete", "lkg-untouched"});
    EXPECT_TRUE(has(detail(last, "fs-consistent"), "rootA: no ext4 super block")) << dump(last);
    EXPECT_TRUE(has(last.detail, "fs-consistent: rootA: no ext4 super block")) << dump(last);
}

TEST_F(BlkCheckTest, FsConsistentFailsOnADataBitmapThatE2fsckFinds)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    // a block of agent.db marked free: the files read the same, e2fsck -fn
    // finds the bitmap wrong
    uint64_t b = db_byte(e.part[OTASIM_QPART_DATA], 0) / 1024;
    debugfs_w(e.part[OTASIM_QPART_DATA], "freeb " + std::to_string(b) + "\n");
    std::string log = log_between(base, assemble(e, "edit"));
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    expect_fails(last, {"fs-consistent"});
    EXPECT_TRUE(has(detail(last, "fs-consistent"), "data: e2fsck -fn exit 4")) << dump(last);
    EXPECT_STREQ(last.state, "DOWNLOADING"); // the database still reads
}

TEST_F(BlkCheckTest, BootenvReadableFailsOnABrokenEnvCrc)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    put_env(e.part[OTASIM_QPART_BOOT], {}, true);
    std::string log = log_between(base, assemble(e, "edit"));
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    expect_fails(last, {"bootenv-readable"});
    EXPECT_TRUE(has(detail(last, "bootenv-readable"), "boot_part=(unreadable)")) << dump(last);
}

// U-Boot's redundant env (CONFIG_SYS_REDUNDAND_ENVIRONMENT, two FAT files):
// the agent rewrites the older copy sector by sector; at every cut inside it
// the torn copy's CRC fails and the checker reads the other copy, as U-Boot
// loads it; the whole new copy (newer flags) wins.
TEST_F(BlkCheckTest, RedundantEnvTornNewerCopyReadsTheOlderCopy)
{
    auto [base, e] = redund_env_store();
    uint64_t n = 0;
    std::string log = log_between(base, assemble(e, "edit"), &n, 1);
    ASSERT_GE(n, 17u); // every sector of the copy changed: its own crash point
    auto v = check(base, log);
    ASSERT_EQ(v.size(), n + 1);
    int torn = 0;
    for (size_t k = 0; k + 1 < v.size(); k++) {
        if (v[k].shared)
            continue;
        expect_fails(v[k], {});
        EXPECT_EQ(v[k].slot, 0) << dump(v[k]);
        EXPECT_TRUE(has(detail(v[k], "bootenv-readable"), "boot_part=A")) << dump(v[k]);
        torn += has(detail(v[k], "bootenv-readable"),
                    "(" OTASIM_ENV_REDUND_FILE " bad CRC: uboot.env read)");
    }
    EXPECT_GE(torn, 1) << "no state had the newer copy torn";
    // the whole new copy (flags 2 against 1) is read
    expect_fails(v.back(), {});
    EXPECT_EQ(v.back().slot, 1) << dump(v.back());
    EXPECT_TRUE(has(detail(v.back(), "bootenv-readable"), "boot_part=B")) << dump(v.back());
    EXPECT_FALSE(has(detail(v.back(), "bootenv-readable"), "bad CRC")) << dump(v.back());
}

TEST_F(BlkCheckTest, RedundantEnvWithBothCopiesTornIsUnreadable)
{
    auto [base, e] = redund_env_store();
    // both copies torn: a later sector of each differs from what its CRC covers
    std::string img = read_all(e.part[OTASIM_QPART_BOOT]);
    for (const char *f : {"::uboot.env", "::" OTASIM_ENV_REDUND_FILE}) {
        sh_ok(std::string("mcopy -n -i ") + e.part[OTASIM_QPART_BOOT] + " " + f + " " + dir +
              "/copy.env");
        std::string c = read_all(dir + "/copy.env");
        size_t at = img.find(c);
        ASSERT_NE(at, std::string::npos) << f;
        img[at + 4096] ^= 0x55;
    }
    write_all(e.part[OTASIM_QPART_BOOT], img);
    uint64_t n = 0;
    auto v = check(base, log_between(base, assemble(e, "edit"), &n, 1));
    ASSERT_GE(n, 3u); // a sector of each copy, the new copy's
    ASSERT_EQ(v.size(), n + 1);
    expect_fails(v.front(), {});
    // the first write into the boot partition tears one copy: the other one
    // is read (writes before it: the MBR's disk identifier, nothing read)
    size_t k = 1;
    while (k < v.size() && v[k].shared)
        k++;
    ASSERT_LT(k + 1, v.size());
    expect_fails(v[k], {});
    EXPECT_TRUE(has(detail(v[k], "bootenv-readable"), " bad CRC: ")) << dump(v[k]);
    EXPECT_TRUE(has(detail(v[k], "bootenv-readable"), "boot_part=A")) << dump(v[k]);
    expect_fails(v.back(), {"bootenv-readable", "one-active-slot"});
    EXPECT_TRUE(has(detail(v.back(), "bootenv-readable"), "boot_part=(unreadable)"))
        << dump(v.back());
    EXPECT_TRUE(has(detail(v.back(), "bootenv-readable"), "(both copies bad CRC)"))
        << dump(v.back());
}

TEST_F(BlkCheckTest, BootenvReadableFailsOnAnEnvNamingNoSlot)
{
    sc->profile = OTASIM_PROFILE_ROOTFS;
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    put_env(e.part[OTASIM_QPART_BOOT], {"boot_part=C", "upgrade_available=0", "bootcount=0"},
            false);
    std::string log = log_between(base, assemble(e, "edit"));
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    // rootfs: the env is what names the active slot
    expect_fails(last, {"bootenv-readable", "one-active-slot"});
    EXPECT_TRUE(has(detail(last, "one-active-slot"), "boot_part=C")) << dump(last);
}

TEST_F(BlkCheckTest, OneActiveSlotFailsWhenCurrentNamesAMissingSlot)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    debugfs_w(e.part[OTASIM_QPART_ROOTA], "rm /opt/app/current\nsymlink /opt/app/current c\n");
    std::string log = log_between(base, assemble(e, "edit"));
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    expect_fails(last, {"one-active-slot", "active-slot-complete"});
    EXPECT_EQ(detail(last, "one-active-slot"), "current -> 'c'") << dump(last);
    EXPECT_TRUE(has(detail(last, "active-slot-complete"), "no release's tree")) << dump(last);
    EXPECT_STREQ(last.version, "");
}

TEST_F(BlkCheckTest, OneActiveSlotFailsWhenCurrentIsAPlainFile)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    write_all(dir + "/plain", "a\n");
    debugfs_w(e.part[OTASIM_QPART_ROOTA],
              "rm /opt/app/current\nwrite " + dir + "/plain /opt/app/current\n");
    std::string log = log_between(base, assemble(e, "edit"));
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    expect_fails(last, {"one-active-slot", "active-slot-complete"});
    EXPECT_EQ(detail(last, "one-active-slot"), "current -> ''") << dump(last);
}

TEST_F(BlkCheckTest, ActiveSlotCompleteFailsOnASlotMissingAFile)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // the switch to a whole slot b passes (and predicts 2.0.0 from b) ...
    Disk ok = copy(d, "ok");
    debugfs_w(ok.part[OTASIM_QPART_ROOTA], "rm /opt/app/current\nsymlink /opt/app/current b\n");
    auto [f0, switched] = first_last(base, log_between(base, assemble(ok, "ok")));
    expect_fails(switched, {});
    EXPECT_STREQ(switched.version, "2.0.0");
    EXPECT_STREQ(switched.app_slot, "b");
    EXPECT_TRUE(has(switched.detail, "runs 2.0.0 from slot b")) << dump(switched);
    // ... to a slot b that lacks a file of its release fails
    Disk e = copy(d, "edit");
    debugfs_w(e.part[OTASIM_QPART_ROOTA],
              "rm /opt/app/b/share/index.html\nrm /opt/app/current\nsymlink /opt/app/current b\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"active-slot-complete"});
    EXPECT_TRUE(has(detail(last, "active-slot-complete"), "slot b digest")) << dump(last);
    EXPECT_TRUE(has(detail(last, "active-slot-complete"), "no release's tree")) << dump(last);
}

TEST_F(BlkCheckTest, ActiveSlotCompleteFailsOnARootfsSlotWithoutItsRelease)
{
    sc->profile = OTASIM_PROFILE_ROOTFS;
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // the env switched to B, rootB's release file not written yet
    Disk e = copy(d, "edit");
    put_env(e.part[OTASIM_QPART_BOOT],
            {"boot_part=B", "upgrade_available=1", "bootcount=0", "bootlimit=3"}, false);
    debugfs_w(e.part[OTASIM_QPART_ROOTB], "rm /etc/ota-release\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"active-slot-complete"});
    EXPECT_EQ(last.slot, 1);
    EXPECT_EQ(detail(last, "active-slot-complete"), "rootB says version ''") << dump(last);
}

TEST_F(BlkCheckTest, LkgUntouchedFailsOnAChangedFactorySlot)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // the device runs slot b (a whole 2.0.0); a file of slot a changes
    Disk e = copy(d, "edit");
    write_all(dir + "/VERSION", "1.0.1\n");
    debugfs_w(e.part[OTASIM_QPART_ROOTA], "rm /opt/app/current\nsymlink /opt/app/current b\n"
                                          "rm /opt/app/a/VERSION\nwrite " +
                                              dir + "/VERSION /opt/app/a/VERSION\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"lkg-untouched"});
    EXPECT_EQ(detail(last, "lkg-untouched"),
              "slot a holds no release's tree, the factory release is 1.0.0")
        << dump(last);
}

TEST_F(BlkCheckTest, LkgUntouchedAndActiveSlotCompleteFailWhenTheRunningFactorySlotChanges)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    debugfs_w(e.part[OTASIM_QPART_ROOTA], "rm /opt/app/a/bin/app\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"active-slot-complete", "lkg-untouched"});
}

TEST_F(BlkCheckTest, LkgUntouchedFailsOnARootfsFactorySlotRewritten)
{
    sc->profile = OTASIM_PROFILE_ROOTFS;
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    write_all(dir + "/rel.txt", "version=2.0.0\n");
    debugfs_w(e.part[OTASIM_QPART_ROOTA],
              "rm /etc/ota-release\nwrite " + dir + "/rel.txt /etc/ota-release\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"lkg-untouched"}); // 2.0.0 is a release: the slot is complete
    EXPECT_EQ(detail(last, "lkg-untouched"), "rootA says '2.0.0', the factory release is 1.0.0")
        << dump(last);
}

TEST_F(BlkCheckTest, DbIntegrityFailsOnAGarbledPage)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // the head of page 2 (the journal table's root; 4 KiB pages): its b-tree
    // page header and cell pointers overwritten with a pattern
    uint64_t at = kStart[OTASIM_QPART_DATA] * 512 + db_byte(d.part[OTASIM_QPART_DATA], 4096);
    std::string log =
        record(base, " -c 'write -q -P 0x33 " + std::to_string(at) + " 512' -c flush");
    auto [first, last] = first_last(base, log);
    expect_fails(first, {});
    expect_fails(last, {"db-integrity"});
    EXPECT_TRUE(has(detail(last, "db-integrity"), "PRAGMA integrity_check: ")) << dump(last);
    EXPECT_FALSE(has(detail(last, "db-integrity"), "check: ok")) << dump(last);
    // the journal row cannot be read: the agent does not start from IDLE
    EXPECT_STREQ(last.state, "(unreadable)") << dump(last);
}

TEST_F(BlkCheckTest, DbIntegrityFailsOnATruncatedDatabase)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    // the file cut to its first page: the schema names tables on pages it lacks
    debugfs_w(e.part[OTASIM_QPART_DATA], "punch /agent.db 4\nsif /agent.db size 4096\n");
    auto [first, last] = first_last(base, log_between(base, assemble(e, "edit")));
    expect_fails(first, {});
    expect_fails(last, {"db-integrity"});
    EXPECT_STREQ(last.state, "(unreadable)") << dump(last);
}

TEST_F(BlkCheckTest, DbStateIsIdleWithoutAJournalTableAndNoDatabasePasses)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    // the database's file made, its schema not yet written: an empty file
    debugfs_w(e.part[OTASIM_QPART_DATA], "rm /agent.db\nwrite /dev/null /agent.db\n");
    auto v = check(base, log_between(base, assemble(e, "edit")));
    ASSERT_GE(v.size(), 2u);
    EXPECT_STREQ(v.front().state, "DOWNLOADING");
    expect_fails(v.back(), {});
    EXPECT_STREQ(v.back().state, "IDLE") << dump(v.back());
    EXPECT_EQ(detail(v.back(), "db-integrity"), "no database yet (the agent has not run)");
}

// The next mount replays the journal: a committed transaction that rewrites
// a block of slot a (written into the journal with debugfs, the file system
// left needing recovery) is what the checks see; and the replay is undone
// before the partition is brought to another state (back to the base: the
// block is the old one again).
TEST_F(BlkCheckTest, JournalIsReplayedForTheChecksAndUndoneForTheNextState)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    uint64_t blk = db_byte_of(e.part[OTASIM_QPART_ROOTA], "/opt/app/a/VERSION", 0) / 1024;
    journal(e.part[OTASIM_QPART_ROOTA], blk, "9.9.9\n");
    std::string edited = assemble(e, "edit");
    // the block itself is not written: only the journal holds the new bytes
    std::string a = read_all(base), b = read_all(edited);
    uint64_t at = kStart[OTASIM_QPART_ROOTA] * 512 + blk * 1024;
    ASSERT_TRUE(a.substr(at, 1024) == b.substr(at, 1024));
    uint64_t n = 0;
    std::string log = log_between(base, edited, &n);
    otasim_blkcheck_stats st = {};
    auto v = check(base, log, {0, n, 0, n, 0}, OTASIM_BLK_UNIT_WRITE, &st);
    ASSERT_EQ(v.size(), 5u);
    for (size_t k = 0; k < v.size(); k += 2)
        expect_fails(v[k], {});
    for (size_t k = 1; k < v.size(); k += 2) {
        expect_fails(v[k], {"active-slot-complete", "lkg-untouched"});
        EXPECT_EQ(detail(v[k], "fs-consistent"), "journal replayed, e2fsck -fn clean");
    }
    EXPECT_EQ(v[0].key, v[2].key);
    EXPECT_EQ(v[1].key, v[3].key);
    EXPECT_EQ(st.evaluated, 5u);
}

// Bytes over [off, off+n) of a file.
void scribble(const std::string &path, uint64_t off, uint64_t n, char c)
{
    int fd = open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << path;
    std::string b(n, c);
    EXPECT_EQ(pwrite(fd, b.data(), n, (off_t)off), (ssize_t)n);
    close(fd);
}

// A journal whose super block is garbage: the kernel does not mount the file
// system (e2fsck -y would clear the journal and make a new one).
TEST_F(BlkCheckTest, FsConsistentFailsOnACorruptJournalThatNeedsRecovery)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    uint64_t blk = db_byte_of(e.part[OTASIM_QPART_ROOTA], "/opt/app/a/VERSION", 0) / 1024;
    journal(e.part[OTASIM_QPART_ROOTA], blk, "9.9.9\n");
    uint64_t jsb = db_byte_of(e.part[OTASIM_QPART_ROOTA], "<8>", 0);
    scribble(e.part[OTASIM_QPART_ROOTA], jsb, 1024, 0x5a);
    uint64_t n = 0;
    std::string log = log_between(base, assemble(e, "edit"), &n);
    auto v = check(base, log, {0, n, 0});
    ASSERT_EQ(v.size(), 3u);
    expect_fails(v[0], {});
    ASSERT_EQ(v[1].n_checks, 6u);
    EXPECT_EQ(v[1].checks[0].ok, 0) << dump(v[1]);
    EXPECT_TRUE(has(detail(v[1], "fs-consistent"), "rootA: the journal replay met more than the "
                                                   "journal"))
        << dump(v[1]);
    EXPECT_TRUE(has(detail(v[1], "fs-consistent"), "invalid journal")) << dump(v[1]);
    expect_fails(v[2], {}); // the repair undone: the base reads as before
}

// Group descriptors garbled while the file system was mounted (it needs
// recovery): the kernel refuses it; e2fsck -y -E journal_only rebuilds them
// and exits 1 as for a plain replay, and e2fsck -fn is clean after that.
TEST_F(BlkCheckTest, FsConsistentFailsOnBadGroupDescriptorsOfAMountedFileSystem)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    uint64_t fb = 0;
    std::string out = run("debugfs -R 'ffb 1 6000' " + e.part[OTASIM_QPART_DATA]);
    fb = strtoull(out.c_str() + out.find_first_of("0123456789", out.find("found:")), nullptr, 10);
    ASSERT_GE(fb, 6000u) << out;
    journal(e.part[OTASIM_QPART_DATA], fb, "free block");
    std::string mounted = assemble(e, "mounted");
    scribble(e.part[OTASIM_QPART_DATA], 2048, 1024, 0x5a); // block 2: the group descriptors
    std::string garbled = assemble(e, "garbled");
    // only the journal (of a free block): every state passes (they read the same)
    auto v = check(base, log_between(base, mounted));
    ASSERT_GE(v.size(), 2u);
    for (const auto &s : v)
        EXPECT_EQ(s.outcome, OTASIM_PASS) << dump(s);
    // the descriptors too: fails, and back at the base it passes again
    uint64_t n = 0;
    std::string log = log_between(base, garbled, &n);
    v = check(base, log, {0, n, 0});
    ASSERT_EQ(v.size(), 3u);
    expect_fails(v[0], {});
    expect_fails(v[1], {"fs-consistent"});
    EXPECT_TRUE(has(detail(v[1], "fs-consistent"), "data: the journal replay met more"))
        << dump(v[1]);
    expect_fails(v[2], {});
}

// The boot FAT's first FAT and the second: their offsets in the partition.
std::pair<uint64_t, uint64_t> fats(const std::string &boot)
{
    std::string bs = read_all(boot).substr(0, 512);
    uint64_t res = (uint8_t)bs[14] | (uint64_t)(uint8_t)bs[15] << 8;
    uint64_t fatsz = (uint8_t)bs[22] | (uint64_t)(uint8_t)bs[23] << 8;
    return {res * 512, (res + fatsz) * 512};
}

// The boot FAT as a mount leaves it at the cut (its dirty bit set) reads the
// same as the clean one; one whose FATs lost uboot.env's cluster chain fails.
TEST_F(BlkCheckTest, FsConsistentPassesADirtyBootFatAndFailsABrokenOne)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    uint64_t boot = kStart[OTASIM_QPART_BOOT] * 512;
    std::string bs = read_all(d.part[OTASIM_QPART_BOOT]).substr(0, 512);
    ASSERT_EQ(bs.substr(0x36, 5), "FAT16");
    std::string dirty = dir + "/dirty.bin";
    write_all(dirty, std::string(1, (char)(bs[0x25] | 1)));
    auto [fat1, fat2] = fats(d.part[OTASIM_QPART_BOOT]);
    // the entries of clusters 2.. (uboot.env's chain) freed in both FATs
    std::string log =
        record(base, " -c 'write -q -s " + dirty + " " + std::to_string(boot + 0x25) + " 1'" +
                         " -c 'write -q -z " + std::to_string(boot + fat1) + " 512'" +
                         " -c 'write -q -z " + std::to_string(boot + fat2) + " 512' -c flush");
    auto v = check(base, log);
    ASSERT_GE(v.size(), 4u);
    expect_fails(v[0], {});
    EXPECT_EQ(v[1].shared, 2) << dump(v[1]); // dirty: read again, the same reading
    EXPECT_EQ(v[1].outcome, OTASIM_PASS) << dump(v[1]);
    const auto &last = v.back();
    ASSERT_EQ(last.n_checks, 6u) << dump(last);
    EXPECT_EQ(last.checks[0].ok, 0) << dump(last);
    EXPECT_TRUE(has(detail(last, "fs-consistent"), "boot: fsck.fat -n exit 1")) << dump(last);
}

// The agent's database in WAL mode: a committed change still in agent.db-wal
// is what the next open reads (the prediction follows it); a WAL frame torn
// by the cut fails its checksum and SQLite's open drops it, as the agent's
// would: the state before it, and the database is whole.
TEST_F(BlkCheckTest, DbStateFollowsTheWalAndATornFrameIsDropped)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    std::string w = dir + "/wal", out = dir + "/wal/out";
    fs::create_directories(out);
    fs::copy_file(dir + "/trees/data/agent.db", w + "/agent.db");
    // the copy taken while the connection is open: the change only in the WAL
    sh_ok("sqlite3 " + w +
          "/agent.db 'PRAGMA journal_mode=WAL' 'PRAGMA wal_autocheckpoint=0' "
          "\"UPDATE journal SET state = 'VERIFYING' WHERE id = 1\" '.shell cp " +
          w + "/agent.db " + w + "/agent.db-wal " + out + "/'");
    ASSERT_GT(fs::file_size(out + "/agent.db-wal"), 32u + 24u + 4096u - 1);
    Disk e = copy(d, "edit");
    debugfs_w(e.part[OTASIM_QPART_DATA], "rm /agent.db\nwrite " + out +
                                             "/agent.db /agent.db\nwrite " + out +
                                             "/agent.db-wal /agent.db-wal\n");
    std::string walled = assemble(e, "walled");
    auto v = check(base, log_between(base, walled));
    ASSERT_GE(v.size(), 2u);
    EXPECT_EQ(v.back().outcome, OTASIM_PASS) << dump(v.back()); // (shared: read the same)
    EXPECT_STREQ(v.back().state, "VERIFYING") << dump(v.back());
    // the checksum in the WAL's first frame header torn: the frame does not count
    uint64_t at = kStart[OTASIM_QPART_DATA] * 512 +
                  db_byte_of(e.part[OTASIM_QPART_DATA], "/agent.db-wal", 32 + 16);
    std::string log =
        record(walled, " -c 'write -q -P 0x99 " + std::to_string(at) + " 8' -c flush");
    v = check(walled, log);
    ASSERT_GE(v.size(), 2u);
    EXPECT_STREQ(v.front().state, "VERIFYING") << dump(v.front());
    expect_fails(v.back(), {});
    EXPECT_STREQ(v.back().state, "DOWNLOADING") << dump(v.back());
}

std::pair<std::vector<otasim_blkstate>, std::vector<otasim_blkstate>>
BlkCheckTest::two_env_edits(const std::vector<std::string> &first,
                            const std::vector<std::string> &second)
{
    sc->profile = OTASIM_PROFILE_ROOTFS;
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    put_env(e.part[OTASIM_QPART_BOOT], first, false);
    Disk g = copy(e, "edit2");
    put_env(g.part[OTASIM_QPART_BOOT], second, false);
    std::string be = assemble(e, "edit");
    auto v1 = check(base, log_between(base, be));
    auto v2 = check(be, log_between(be, assemble(g, "edit2")));
    EXPECT_GE(v1.size(), 2u);
    EXPECT_GE(v2.size(), 2u);
    if (v1.empty() || v2.empty())
        throw std::runtime_error("no state checked");
    return {v1, v2};
}

std::pair<std::string, Disk> BlkCheckTest::redund_env_store()
{
    sc->profile = OTASIM_PROFILE_ROOTFS;
    Disk d = pristine();
    put_redund_env(d.part[OTASIM_QPART_BOOT],
                   {"boot_part=A", "upgrade_available=0", "bootcount=0", "bootlimit=3"});
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    set_redund_env(e.part[OTASIM_QPART_BOOT], {"boot_part=B"}); // one store
    return {base, e};
}

// ---- the prediction ----------------------------------------------------------

TEST_F(BlkCheckTest, RootfsTrialPastItsBootlimitIsPredictedToFallBack)
{
    auto [v1, v2] =
        two_env_edits({"boot_part=B", "upgrade_available=1", "bootcount=1", "bootlimit=3"},
                      {"boot_part=B", "upgrade_available=1", "bootcount=3", "bootlimit=3"});
    expect_fails(v1.back(), {});
    EXPECT_EQ(v1.back().slot, 1);
    EXPECT_STREQ(v1.back().version, "2.0.0");
    expect_fails(v2.back(), {});
    EXPECT_EQ(v2.back().slot, 0) << dump(v2.back());
    EXPECT_STREQ(v2.back().version, "1.0.0");
}

TEST_F(BlkCheckTest, FallbackSlotPastTwiceTheBootlimitIsPredictedToBeRecoveryMode)
{
    // After a fallback the agent has not settled (bootcount past bootlimit,
    // no trial): the next boot counts A's boot; at 2 x bootlimit it is
    // recovery mode (docs/DESIGN.md, "The A/B boot contract"), a failure.
    auto [v1, v2] =
        two_env_edits({"boot_part=A", "upgrade_available=0", "bootcount=5", "bootlimit=3"},
                      {"boot_part=A", "upgrade_available=0", "bootcount=6", "bootlimit=3"});
    expect_fails(v1.back(), {}); // 6: A's third boot after the fallback
    EXPECT_EQ(v1.back().slot, 0);
    expect_fails(v2.back(), {"one-active-slot"}); // 7 > 2 x 3: recovery mode
    EXPECT_NE(dump(v2.back()).find("recovery mode"), std::string::npos) << dump(v2.back());
}

// ---- sharing -----------------------------------------------------------------

TEST_F(BlkCheckTest, AnUnchangedDiskSharesTheResult)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // a write of the bytes already there changes nothing
    std::string same = dir + "/same.bin";
    write_all(same, read_all(base).substr(kStart[OTASIM_QPART_ROOTA] * 512 + 1024, 512));
    std::string log = record(base, " -c 'write -q -s " + same + " " +
                                       std::to_string(kStart[OTASIM_QPART_ROOTA] * 512 + 1024) +
                                       " 512' -c flush");
    otasim_blkcheck_stats st = {};
    auto v = check(base, log, {0, 0, 1}, OTASIM_BLK_UNIT_WRITE, &st);
    ASSERT_EQ(v.size(), 3u);
    expect_fails(v[0], {});
    EXPECT_EQ(v[1].shared, 1);
    EXPECT_EQ(v[2].shared, 1);
    EXPECT_EQ(v[2].outcome, OTASIM_PASS); // the previous state's result
    EXPECT_EQ(st.states, 3u);
    EXPECT_EQ(st.checked, 1u);
    EXPECT_EQ(st.evaluated, 1u);
    EXPECT_EQ(st.same_disk, 2u);
}

TEST_F(BlkCheckTest, ChangesNoReaderLooksAtShareTheResult)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    // 1: the space before p1 (not the MBR); 2: after p4; 3: rootB of an app
    // device (never used); 4: a free block of the data file system (read
    // again, reads the same)
    std::string free_blk = run("debugfs -R 'ffb 1 6000' " + d.part[OTASIM_QPART_DATA]);
    uint64_t fb =
        strtoull(free_blk.c_str() + free_blk.find_first_of("0123456789", free_blk.find("found:")),
                 nullptr, 10);
    ASSERT_GE(fb, 6000u) << free_blk;
    std::string log = record(
        base, " -c 'write -q -P 0x11 65536 4096'" + std::string(" -c 'write -q -P 0x22 ") +
                  std::to_string((kStart[3] + kSize[3]) * 512 + 8192) + " 4096'" +
                  " -c 'write -q -P 0x33 " + std::to_string(kStart[OTASIM_QPART_ROOTB] * 512) +
                  " 65536'" + " -c 'write -q -P 0x44 " +
                  std::to_string(kStart[OTASIM_QPART_DATA] * 512 + fb * 1024) + " 1024'" +
                  " -c flush");
    otasim_blkcheck_stats st = {};
    auto v = check(base, log, {}, OTASIM_BLK_UNIT_WRITE, &st);
    ASSERT_EQ(v.size(), 5u);
    expect_fails(v[0], {});
    EXPECT_EQ(v[1].shared, 1) << dump(v[1]);
    EXPECT_EQ(v[2].shared, 1) << dump(v[2]);
    EXPECT_EQ(v[3].shared, 1) << dump(v[3]);
    EXPECT_EQ(v[4].shared, 2) << dump(v[4]);
    EXPECT_EQ(v[4].outcome, OTASIM_PASS);
    EXPECT_EQ(st.same_disk, 3u);
    EXPECT_EQ(st.same_reading, 1u);
    EXPECT_EQ(st.checked, 2u); // the data partition was read again
    EXPECT_EQ(st.evaluated, 1u);
    // the rootfs device does not read rootB while its env boots A either
    sc->profile = OTASIM_PROFILE_ROOTFS;
    v = check(base, log, {0, 3});
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[1].shared, 1) << dump(v[1]);
}

TEST_F(BlkCheckTest, ARealChangeIsCheckedAgainAndMovingBackGivesTheFirstResult)
{
    Disk d = pristine();
    std::string base = assemble(d, "base");
    Disk e = copy(d, "edit");
    debugfs_w(e.part[OTASIM_QPART_ROOTA], "rm /opt/app/current\nsymlink /opt/app/current c\n");
    uint64_t n = 0;
    std::string log = log_between(base, assemble(e, "edit"), &n);
    ASSERT_GE(n, 1u);
    otasim_blkcheck_stats st = {};
    uint64_t last = n; // write points: 0 .. n
    auto v = check(base, log, {0, last, 0, last}, OTASIM_BLK_UNIT_WRITE, &st);
    ASSERT_EQ(v.size(), 4u);
    expect_fails(v[0], {});
    expect_fails(v[1], {"one-active-slot", "active-slot-complete"});
    EXPECT_NE(v[0].key, v[1].key);
    expect_fails(v[2], {}); // back to the base: read again, the first result
    EXPECT_EQ(v[2].key, v[0].key);
    expect_fails(v[3], {"one-active-slot", "active-slot-complete"});
    EXPECT_EQ(st.evaluated, 4u);
    EXPECT_EQ(st.failed, 2u);
    EXPECT_GE(st.part_reused, 4u); // boot and data were not read again
}

} // namespace
