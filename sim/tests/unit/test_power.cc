// Unit tests for the power model: the journal that libotasim-interpose.so
// writes for a real process (otasim-callseq running a script of calls), and
// the rebuild of the tree after every process was killed at once.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "otasim/journal.h"
#include "otasim/power.h"

extern char **environ;

namespace
{

struct JournalFree {
    void operator()(otasim_journal *j) const
    {
        otasim_journal_free(j);
    }
};
using Journal = std::unique_ptr<otasim_journal, JournalFree>;

struct Result {
    int status; // exit status, or -signal
    std::string out;
};

std::string read_file(const std::string &p)
{
    std::ifstream f(p, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

void write_file(const std::string &p, const std::string &data)
{
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << data;
}

bool exists(const std::string &p)
{
    struct stat st;
    return lstat(p.c_str(), &st) == 0;
}

std::string link_target(const std::string &p)
{
    char b[4096];
    ssize_t n = readlink(p.c_str(), b, sizeof(b) - 1);
    return n < 0 ? "" : std::string(b, (size_t)n);
}

class PowerTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/otasim-power-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        top_ = tmpl;
        root_ = top_ + "/dev";
        journal_ = root_ + "/.sim/journal";
        fresh_root();
    }
    void TearDown() override
    {
        ASSERT_EQ(system(("rm -rf '" + top_ + "'").c_str()), 0);
    }
    void fresh_root()
    {
        ASSERT_EQ(system(("rm -rf '" + root_ + "'").c_str()), 0);
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
        ASSERT_EQ(mkdir((root_ + "/.sim").c_str(), 0755), 0);
    }
    std::string P(const std::string &rel) const
    {
        return root_ + "/" + rel;
    }

    // Runs otasim-callseq in root_ as its own process group under the
    // interposer (env: extra OTASIM_* settings).
    Result run(const std::vector<std::string> &cmds, const std::vector<std::string> &env = {},
               bool with_root = true)
    {
        std::vector<std::string> envs;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "OTASIM_", 7) != 0 &&
                strncmp(*e, "ASAN_OPTIONS=", 13) != 0)
                envs.push_back(*e);
        }
        envs.push_back(std::string("LD_PRELOAD=") + OTASIM_INTERPOSE_LIB);
        // The helper is an ASan build and the interposer comes before its
        // runtime, as it will for the agent.
        envs.push_back("ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0");
        if (with_root) {
            envs.push_back("OTASIM_ROOT=" + root_);
            envs.push_back("OTASIM_JOURNAL=" + journal_);
        }
        for (auto &e : env)
            envs.push_back(e);
        std::vector<char *> envp, argv;
        for (auto &e : envs)
            envp.push_back(const_cast<char *>(e.c_str()));
        envp.push_back(nullptr);
        argv.push_back(const_cast<char *>(OTASIM_CALLSEQ));
        for (auto &c : cmds)
            argv.push_back(const_cast<char *>(c.c_str()));
        argv.push_back(nullptr);

        int p[2];
        Result res{-1, ""};
        if (pipe(p) < 0)
            return res;
        pid_t pid = fork();
        if (pid == 0) {
            setpgid(0, 0);
            dup2(p[1], 1);
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2); // state lines
            close(p[0]);
            close(p[1]);
            if (chdir(root_.c_str()) < 0)
                _exit(126);
            execve(argv[0], argv.data(), envp.data());
            _exit(127);
        }
        close(p[1]);
        char b[4096];
        ssize_t n;
        while ((n = read(p[0], b, sizeof(b))) > 0)
            res.out.append(b, (size_t)n);
        close(p[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        res.status = WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
        return res;
    }

    Journal load()
    {
        otasim_journal *j = nullptr;
        ota_err err{};
        EXPECT_EQ(otasim_journal_load(journal_.c_str(), &j, &err), 0) << err.reason;
        return Journal(j);
    }

    void rebuild()
    {
        ota_err err{};
        stats_ = otasim_rebuild_stats{};
        ASSERT_EQ(otasim_power_rebuild(root_.c_str(), journal_.c_str(), &stats_, &err), 0)
            << err.reason;
        EXPECT_FALSE(exists(P(".sim/stash")));
    }

    void rebuild_model(otasim_crash_model m, uint64_t seed)
    {
        ota_err err{};
        otasim_crash cm{m, seed};
        stats_ = otasim_rebuild_stats{};
        ASSERT_EQ(otasim_power_rebuild_model(root_.c_str(), journal_.c_str(), &cm, &stats_, &err),
                  0)
            << err.reason;
        EXPECT_FALSE(exists(P(".sim/stash")));
    }

    // For seeds 1..n: a fresh root, setup(), cmds (ending in a power cut), a
    // rebuild under model m; then look() records what it finds.
    template <class Setup, class Look>
    void each_seed(otasim_crash_model m, int n, const std::vector<std::string> &cmds, Setup setup,
                   Look look)
    {
        for (int seed = 1; seed <= n; seed++) {
            fresh_root();
            setup();
            Result r = run(cmds);
            ASSERT_EQ(r.status, -SIGKILL) << r.out;
            rebuild_model(m, (uint64_t)seed);
            look(seed);
        }
    }

    void sqlite_every_call(otasim_crash_model m);

    // Runs cmds, which must end in a power cut, then rebuilds.
    void cut(const std::vector<std::string> &cmds, const std::vector<std::string> &env = {})
    {
        Result r = run(cmds, env);
        ASSERT_EQ(r.status, -SIGKILL) << r.out;
        ASSERT_EQ(r.out, "");
        rebuild();
    }

    std::string top_, root_, journal_;
    otasim_rebuild_stats stats_{};
};

// ---- data -------------------------------------------------------------------

TEST_F(PowerTest, WriteWithoutFsyncIsLost)
{
    write_file(P("f"), "before");
    cut({"open f rw", "pwrite f 0 after, and longer", "crash"});
    EXPECT_EQ(read_file(P("f")), "before");
    EXPECT_EQ(stats_.writes_undone, 1u);
    EXPECT_EQ(stats_.bytes_restored, 6u);
}

TEST_F(PowerTest, WriteWithFsyncIsKept)
{
    write_file(P("f"), "before");
    cut({"open f rw", "pwrite f 0 AFTER!", "fsync f", "crash"});
    EXPECT_EQ(read_file(P("f")), "AFTER!");
    EXPECT_EQ(stats_.writes_undone, 0u);
    EXPECT_EQ(stats_.durable, 1u);
}

TEST_F(PowerTest, AppendAfterFsyncGoesBackToSyncedLength)
{
    write_file(P("f"), "abc");
    cut({"open f wa", "write f def", "fsync f", "write f ghi", "write f jkl", "crash"});
    EXPECT_EQ(read_file(P("f")), "abcdef");
    EXPECT_EQ(stats_.writes_undone, 2u);
}

TEST_F(PowerTest, OverwriteInPlaceGetsOldBytesBack)
{
    write_file(P("f"), "0123456789");
    cut({"open f rw", "pwrite f 2 XY", "pwrite f 8 ZZZZ", "pwrite f 3 Q", "crash"});
    EXPECT_EQ(read_file(P("f")), "0123456789");
}

TEST_F(PowerTest, OverwriteThroughWriteOnlyFdGetsOldBytesBack)
{
    write_file(P("f"), "0123456789");
    cut({"open f w", "pwrite f 4 abcdefgh", "ftruncate f 2", "crash"});
    EXPECT_EQ(read_file(P("f")), "0123456789");
}

TEST_F(PowerTest, FtruncateIsUndone)
{
    write_file(P("f"), "0123456789");
    write_file(P("g"), "abc");
    cut({"open f rw", "ftruncate f 3", "open g rw", "ftruncate g 100", "truncate f 1", "crash"});
    EXPECT_EQ(read_file(P("f")), "0123456789");
    EXPECT_EQ(read_file(P("g")), "abc");
}

TEST_F(PowerTest, OpenWithTruncIsUndone)
{
    write_file(P("f"), "precious content");
    cut({"open f wt", "write f x", "creat f", "crash"});
    EXPECT_EQ(read_file(P("f")), "precious content");
}

TEST_F(PowerTest, FdatasyncCountsAsFsync)
{
    write_file(P("f"), "old");
    cut({"open f rw", "pwrite f 0 NEW", "fdatasync f", "pwrite f 0 lost", "crash"});
    EXPECT_EQ(read_file(P("f")), "NEW");
}

// ---- names ------------------------------------------------------------------

TEST_F(PowerTest, NewFileWithoutDirFsyncIsGone)
{
    cut({"open n wc", "write n hello", "fsync n", "crash"});
    EXPECT_FALSE(exists(P("n")));
}

TEST_F(PowerTest, NewFileWithFileAndDirFsyncIsKept)
{
    cut({"open n wc", "write n hello", "fsync n", "fsyncdir .", "crash"});
    EXPECT_EQ(read_file(P("n")), "hello");
}

TEST_F(PowerTest, NewFileWithDirFsyncButNoFileFsyncIsEmpty)
{
    cut({"open n wc", "write n hello", "fsyncdir .", "crash"});
    EXPECT_TRUE(exists(P("n")));
    EXPECT_EQ(read_file(P("n")), "");
}

TEST_F(PowerTest, RenameOverWithoutDirFsyncBringsOldFileBack)
{
    write_file(P("state"), "old state");
    cut({"open state.tmp wct", "write state.tmp new state", "fsync state.tmp", "close state.tmp",
         "rename state.tmp state", "crash"});
    EXPECT_EQ(read_file(P("state")), "old state");
    EXPECT_FALSE(exists(P("state.tmp")));
}

TEST_F(PowerTest, RenameOverWithDirFsyncKeepsNewFile)
{
    write_file(P("state"), "old state");
    cut({"open state.tmp wct", "write state.tmp new state", "fsync state.tmp", "close state.tmp",
         "rename state.tmp state", "fsyncdir .", "crash"});
    EXPECT_EQ(read_file(P("state")), "new state");
    EXPECT_FALSE(exists(P("state.tmp")));
}

TEST_F(PowerTest, RenameOverWithoutDataFsyncLeavesEmptyFile)
{
    // The classic: the rename is durable, the data it was meant to carry not.
    write_file(P("state"), "old state");
    cut({"open state.tmp wct", "write state.tmp new state", "close state.tmp",
         "rename state.tmp state", "fsyncdir .", "crash"});
    EXPECT_TRUE(exists(P("state")));
    EXPECT_EQ(read_file(P("state")), "");
    EXPECT_FALSE(exists(P("state.tmp")));
}

TEST_F(PowerTest, SymlinkSwitchWithoutDirFsyncKeepsOldTarget)
{
    ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(P("b").c_str(), 0755), 0);
    ASSERT_EQ(symlink("a", P("current").c_str()), 0);
    cut({"symlink b current.tmp", "rename current.tmp current", "crash"});
    EXPECT_EQ(link_target(P("current")), "a");
    EXPECT_FALSE(exists(P("current.tmp")));
}

TEST_F(PowerTest, SymlinkSwitchWithDirFsyncKeepsNewTarget)
{
    ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(P("b").c_str(), 0755), 0);
    ASSERT_EQ(symlink("a", P("current").c_str()), 0);
    cut({"symlink b current.tmp", "rename current.tmp current", "fsyncdir .", "crash"});
    EXPECT_EQ(link_target(P("current")), "b");
    EXPECT_FALSE(exists(P("current.tmp")));
}

TEST_F(PowerTest, UnlinkWithoutDirFsyncIsUndone)
{
    write_file(P("f"), "keep me");
    cut({"unlink f", "crash"});
    EXPECT_EQ(read_file(P("f")), "keep me");
    EXPECT_EQ(stats_.dirops_undone, 1u);
}

TEST_F(PowerTest, UnlinkWithDirFsyncIsKept)
{
    write_file(P("f"), "drop me");
    cut({"unlink f", "fsyncdir .", "crash"});
    EXPECT_FALSE(exists(P("f")));
}

TEST_F(PowerTest, UnlinkedSymlinkComesBack)
{
    ASSERT_EQ(symlink("somewhere/else", P("l").c_str()), 0);
    cut({"unlink l", "crash"});
    EXPECT_EQ(link_target(P("l")), "somewhere/else");
}

TEST_F(PowerTest, MkdirWithoutParentFsyncLosesWholeDir)
{
    cut({"mkdir d", "open d/x wc", "write d/x data", "fsync d/x", "mkdir d/sub", "fsyncdir d",
         "crash"});
    EXPECT_FALSE(exists(P("d")));
}

TEST_F(PowerTest, MkdirWithParentFsyncIsKept)
{
    cut({"mkdir d", "open d/x wc", "write d/x data", "fsync d/x", "fsyncdir d", "fsyncdir .",
         "crash"});
    EXPECT_EQ(read_file(P("d/x")), "data");
}

TEST_F(PowerTest, RmdirIsUndone)
{
    ASSERT_EQ(mkdir(P("e").c_str(), 0750), 0);
    ASSERT_EQ(chmod(P("e").c_str(), 0750), 0);
    cut({"rmdir e", "crash"});
    struct stat st;
    ASSERT_EQ(stat(P("e").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0750u);
}

TEST_F(PowerTest, UnlinkInsideRemovedDirComesBackWithTheDir)
{
    ASSERT_EQ(mkdir(P("e").c_str(), 0755), 0);
    write_file(P("e/f"), "inside");
    cut({"unlink e/f", "fsyncdir e", "rmdir e", "crash"});
    // The unlink was made durable in e, but e's removal was not: e comes back
    // (a new inode), empty.
    EXPECT_TRUE(exists(P("e")));
    EXPECT_FALSE(exists(P("e/f")));

    fresh_root();
    ASSERT_EQ(mkdir(P("e").c_str(), 0755), 0);
    write_file(P("e/f"), "inside");
    cut({"unlink e/f", "rmdir e", "crash"});
    EXPECT_EQ(read_file(P("e/f")), "inside");
}

TEST_F(PowerTest, DirRenamedOverEmptyDirIsUndone)
{
    ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(P("b").c_str(), 0700), 0);
    ASSERT_EQ(chmod(P("b").c_str(), 0700), 0);
    write_file(P("a/x"), "x");
    cut({"rename a b", "crash"});
    EXPECT_EQ(read_file(P("a/x")), "x");
    struct stat st;
    ASSERT_EQ(stat(P("b").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_FALSE(exists(P("b/x")));
}

TEST_F(PowerTest, LinkIsUndone)
{
    write_file(P("f"), "x");
    cut({"link f g", "crash"});
    EXPECT_FALSE(exists(P("g")));
    EXPECT_EQ(read_file(P("f")), "x");
}

TEST_F(PowerTest, RenameAcrossDirsNeedsBothSynced)
{
    ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(P("b").c_str(), 0755), 0);
    write_file(P("a/x"), "x");
    cut({"rename a/x b/x", "fsyncdir b", "crash"});
    EXPECT_EQ(read_file(P("a/x")), "x");
    EXPECT_FALSE(exists(P("b/x")));

    fresh_root();
    ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(P("b").c_str(), 0755), 0);
    write_file(P("a/x"), "x");
    cut({"rename a/x b/x", "fsyncdir b", "fsyncdir a", "crash"});
    EXPECT_FALSE(exists(P("a/x")));
    EXPECT_EQ(read_file(P("b/x")), "x");
}

TEST_F(PowerTest, DirRenameAndAtCallsAreUndone)
{
    ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
    write_file(P("d/f"), "f");
    // The names inside the moved directory are undone first, at the new place.
    cut({"rename d e", "renameat e f g", "mkdirat e sub", "symlinkat tgt e ln", "unlinkat e g",
         "crash"});
    EXPECT_FALSE(exists(P("e")));
    EXPECT_EQ(read_file(P("d/f")), "f");
    EXPECT_FALSE(exists(P("d/g")));
    EXPECT_FALSE(exists(P("d/sub")));
    EXPECT_FALSE(exists(P("d/ln")));
}

TEST_F(PowerTest, NameMadeInMovedDirIsFoundByInode)
{
    // A create in d that was not made durable, while the move of d was.
    ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
    cut({"open d/new wc", "rename d e", "fsyncdir .", "crash"});
    EXPECT_FALSE(exists(P("d")));
    EXPECT_TRUE(exists(P("e")));
    EXPECT_FALSE(exists(P("e/new")));
}

TEST_F(PowerTest, SyncMakesEverythingDurable)
{
    write_file(P("old"), "old");
    cut({"open n wc", "write n data", "rename old renamed", "mkdir d", "sync", "open n w",
         "pwrite n 0 XXXX", "crash"});
    EXPECT_EQ(read_file(P("n")), "data");
    EXPECT_EQ(read_file(P("renamed")), "old");
    EXPECT_TRUE(exists(P("d")));
    EXPECT_FALSE(exists(P("old")));
}

TEST_F(PowerTest, ProcessThatEndsNormallyIsCutAfterItsLastCall)
{
    write_file(P("f"), "a");
    Result r = run({"open f wa", "write f b", "open g wc", "write g g"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(read_file(P("f")), "ab");
    rebuild();
    EXPECT_EQ(read_file(P("f")), "a");
    EXPECT_FALSE(exists(P("g")));
}

TEST_F(PowerTest, DropStashAfterProcessCrash)
{
    write_file(P("f"), "x");
    Result r = run({"unlink f"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_TRUE(exists(P(".sim/stash")));
    ota_err err{};
    ASSERT_EQ(otasim_power_drop_stash(root_.c_str(), &err), 0) << err.reason;
    EXPECT_FALSE(exists(P(".sim/stash")));
    EXPECT_FALSE(exists(P("f")));
}

// ---- the journal ------------------------------------------------------------

TEST_F(PowerTest, JournalRecordsCallsInOrder)
{
    write_file(P("f"), "0123");
    Result r = run({"open f rw", "pwrite f 1 ab", "fsync f", "open f rc", "mkdir d", "unlink f",
                    "unlink nothere", "mkdir d"});
    ASSERT_EQ(r.status, 2) << r.out; // the second unlink and mkdir fail
    Journal j = load();
    ASSERT_TRUE(j);
    ASSERT_EQ(j->n, 4u);
    EXPECT_EQ(j->calls, 4u);
    const otasim_rec *v = j->v;
    EXPECT_EQ(v[0].op, OTASIM_OP_WRITE);
    EXPECT_EQ(v[0].seq, 1u);
    EXPECT_EQ(v[0].path, P("f"));
    EXPECT_EQ(v[0].off, 1u);
    EXPECT_EQ(v[0].len, 2u);
    EXPECT_EQ(v[0].old_size, 4u);
    EXPECT_EQ(v[0].img_len, 2u);
    EXPECT_EQ(v[0].done, 1);
    EXPECT_EQ(v[0].result, 0);
    EXPECT_EQ(v[1].op, OTASIM_OP_FSYNC);
    EXPECT_EQ(v[1].ino, v[0].ino);
    EXPECT_EQ(v[1].is_dir, 0);
    EXPECT_EQ(v[2].op, OTASIM_OP_MKDIR);
    EXPECT_EQ(v[2].is_dir, 1);
    EXPECT_EQ(v[2].path, P("d"));
    EXPECT_EQ(v[3].op, OTASIM_OP_UNLINK);
    EXPECT_TRUE(v[3].flags & OTASIM_REC_VICTIM_FILE);
    struct stat st;
    ASSERT_EQ(stat(root_.c_str(), &st), 0);
    EXPECT_EQ(v[3].dir_ino, (uint64_t)st.st_ino);
    EXPECT_STREQ(otasim_op_names[OTASIM_OP_RENAME], "rename");
}

TEST_F(PowerTest, NumbersAreDeterministic)
{
    std::vector<std::string> script = {
        "mkdir d",     "open d/a wc", "write d/a 1",    "fsync d/a",     "fsyncdir d",
        "open d/b wc", "write d/b 2", "rename d/b d/a", "symlink a d/l", "sync"};
    std::vector<std::string> first;
    for (int round = 0; round < 2; round++) {
        fresh_root();
        Result r = run(script);
        ASSERT_EQ(r.status, 0) << r.out;
        Journal j = load();
        ASSERT_TRUE(j);
        std::vector<std::string> got;
        for (size_t i = 0; i < j->n; i++)
            got.push_back(std::to_string(j->v[i].seq) + " " + otasim_op_names[j->v[i].op] + " " +
                          (j->v[i].path[0] ? std::string(j->v[i].path).substr(root_.size())
                                           : std::string("-")));
        if (round == 0)
            first = got;
        else
            EXPECT_EQ(got, first);
        EXPECT_EQ(j->calls, 10u);
    }
}

TEST_F(PowerTest, CrashAtStopsAfterExactlyN)
{
    std::vector<std::string> script = {"open a wc", "write a 1", "open b wc",
                                       "write b 2", "mkdir c",   "mkdir d"};
    Result r = run(script, {"OTASIM_CRASH_AT=3"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_TRUE(exists(P("b")));
    EXPECT_FALSE(exists(P("c")));
    Journal j = load();
    ASSERT_TRUE(j);
    EXPECT_EQ(j->calls, 3u);
    ASSERT_GE(j->n, 1u);
    EXPECT_EQ(j->v[j->n - 1].op, OTASIM_OP_CRASH);
    EXPECT_STREQ(j->v[j->n - 1].text, "power");
    EXPECT_EQ(j->v[j->n - 1].seq, 3u);
    EXPECT_EQ(j->v[j->n - 2].done, 1);
    rebuild();
    EXPECT_FALSE(exists(P("a")));

    fresh_root();
    r = run(script, {"OTASIM_CRASH_AT=5", "OTASIM_CRASH_MODE=process"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_TRUE(exists(P("c")));
    EXPECT_FALSE(exists(P("d")));
    j = load();
    EXPECT_STREQ(j->v[j->n - 1].text, "process");
}

TEST_F(PowerTest, SequentialProcessesContinueTheNumbering)
{
    Result r = run({"mkdir a", "mkdir b"});
    ASSERT_EQ(r.status, 0);
    r = run({"mkdir c", "mkdir d", "mkdir e"}, {"OTASIM_CRASH_AT=4"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_TRUE(exists(P("d")));
    EXPECT_FALSE(exists(P("e")));
    Journal j = load();
    EXPECT_EQ(j->calls, 4u);
}

// SWUpdate's shape (docs/swupdate.md, "Under the power model"): the slot and
// env writes come from a second thread of the process, while a forked helper
// process waits. The thread's calls continue the one numbering under the
// process's pid, a crash trigger fired in it takes the whole process group
// (run() reads the helper's inherited stdout to EOF: it returns only once
// the helper is dead too), and the rebuild keeps what the thread's fsync made
// durable.
TEST_F(PowerTest, CallsOfASecondThreadAreJournaledAndItsCrashTakesTheGroup)
{
    write_file(P("a"), ""); // existing files opened O_RDWR, as the slot and the env
    write_file(P("b"), "");
    Result r = run({"fork", "open a rw", "write a 1", "fsync a", "thread", "open b rw", "write b 2",
                    "fsync b", "write b 3", "mkdir c"},
                   {"OTASIM_CRASH_AT=5"});
    ASSERT_EQ(r.status, -SIGKILL) << r.out;
    EXPECT_EQ(read_file(P("b")), "23");
    Journal j = load();
    ASSERT_TRUE(j);
    EXPECT_EQ(j->calls, 5u);
    for (size_t i = 0; i < j->n; i++)
        EXPECT_EQ(j->v[i].pid, j->v[0].pid) << i;
    EXPECT_EQ(j->v[j->n - 1].op, OTASIM_OP_CRASH);
    rebuild();
    EXPECT_EQ(read_file(P("a")), "1");
    EXPECT_EQ(read_file(P("b")), "2");
    EXPECT_FALSE(exists(P("c")));
}

// A forked child (no exec) passes through: its calls are not journaled, so
// a rebuild keeps them as if durable (otasim/journal.h). SWUpdate's helper
// makes none (docs/swupdate.md).
TEST_F(PowerTest, AForkedChildsCallsAreNotJournaled)
{
    Result r = run({"forkwrite x hello", "mkdir d"});
    ASSERT_EQ(r.status, 0) << r.out;
    Journal j = load();
    ASSERT_TRUE(j);
    EXPECT_EQ(j->calls, 1u);
    rebuild();
    EXPECT_EQ(read_file(P("x")), "hello");
    EXPECT_FALSE(exists(P("d")));
}

TEST_F(PowerTest, FailInjectionEnospcOnMatchingPath)
{
    write_file(P("b"), "");
    Result r =
        run({"open a wc", "open b w", "write a 111", "write b 222", "write b 333", "fsync b"},
            {"OTASIM_FAIL_ERRNO=ENOSPC", "OTASIM_FAIL_PATH=*/b", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("ERR 4 write b 222 No space left on device"), std::string::npos) << r.out;
    EXPECT_EQ(read_file(P("a")), "111");
    EXPECT_EQ(read_file(P("b")), "333");
    Journal j = load();
    ASSERT_TRUE(j);
    int fails = 0, writes3 = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (j->v[i].op == OTASIM_OP_FAIL) {
            fails++;
            EXPECT_EQ(std::string(j->v[i].text), "ENOSPC " + P("b"));
            EXPECT_EQ(j->v[i].seq, 3u);
        }
        /* "write b 333" follows in the same burst: it shares number 3 */
        if (j->v[i].op == OTASIM_OP_WRITE && j->v[i].seq == 3 && writes3++ == 0) {
            EXPECT_EQ(j->v[i].result, -ENOSPC);
            EXPECT_EQ(j->v[i].done, 1);
        }
    }
    EXPECT_EQ(fails, 1);
    EXPECT_EQ(writes3, 2);
}

TEST_F(PowerTest, AWriteBurstToOneFileSharesOneNumber)
{
    Result r = run({"open a wc", "open b wc", "write a 1", "write a 2", "write a 3", "write b 4",
                    "write a 5", "fsync a"},
                   {});
    ASSERT_EQ(r.status, 0) << r.out;
    Journal j = load();
    ASSERT_TRUE(j);
    /* create a, create b, burst a(1,2,3), b(4), a(5), fsync */
    EXPECT_EQ(j->calls, 6u);
    std::vector<uint64_t> seqs;
    for (size_t i = 0; i < j->n; i++)
        if (j->v[i].op == OTASIM_OP_WRITE)
            seqs.push_back(j->v[i].seq);
    EXPECT_EQ(seqs, (std::vector<uint64_t>{3, 3, 3, 4, 5}));
    /* a trigger at the burst's number fires after its first write (this
     * process continues the journal's numbering: create c = 7, burst = 8) */
    r = run({"open c wc", "write c x", "write c y"}, {"OTASIM_CRASH_AT=8"});
    EXPECT_EQ(r.status, -SIGKILL);
    EXPECT_EQ(read_file(P("c")), "x");
}

TEST_F(PowerTest, FailInjectionEioOnFsyncLosesTheData)
{
    write_file(P("f"), "old");
    Result r = run({"open f rw", "pwrite f 0 new", "fsync f", "crash"},
                   {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_PATH=*/f"});
    ASSERT_EQ(r.status, -SIGKILL);
    // The write fails too (EIO applies to writes): make only the fsync fail.
    fresh_root();
    write_file(P("f"), "old");
    r = run({"open f rw", "pwrite f 0 new", "fsync f", "crash"},
            {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_PATH=*/f", "OTASIM_FAIL_FROM=2"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_NE(r.out.find("ERR 3 fsync f Input/output error"), std::string::npos) << r.out;
    rebuild();
    EXPECT_EQ(read_file(P("f")), "old");
}

// Linux drops the dirty pages whose writeback failed; a later fsync returns 0.
TEST_F(PowerTest, AfterAnFsyncEioALaterFsyncDoesNotSaveTheData)
{
    write_file(P("f"), "old");
    Result r = run({"open f rw", "pwrite f 0 new", "fsync f", "fsync f", "crash"},
                   {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_FROM=2", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_EQ(r.out, "ERR 3 fsync f Input/output error\n");
    rebuild();
    EXPECT_EQ(read_file(P("f")), "old");
}

TEST_F(PowerTest, AfterAnFsyncEioSyncDoesNotSaveTheDataEither)
{
    write_file(P("f"), "old");
    Result r = run({"open f rw", "pwrite f 0 new", "fsync f", "sync", "crash"},
                   {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_FROM=2", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, -SIGKILL);
    rebuild();
    EXPECT_EQ(read_file(P("f")), "old");
}

TEST_F(PowerTest, AfterAnFsyncEioNewWritesAreSavedAgain)
{
    write_file(P("f"), "aaaa bbbb");
    Result r =
        run({"open f rw", "pwrite f 0 AAAA", "fsync f", "pwrite f 5 BBBB", "fsync f", "crash"},
            {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_FROM=2", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, -SIGKILL);
    rebuild();
    EXPECT_EQ(read_file(P("f")), "aaaa BBBB");
}

TEST_F(PowerTest, AnFsyncBeforeTheEioStillCounts)
{
    write_file(P("f"), "aaaa bbbb");
    Result r = run({"open f rw", "pwrite f 0 AAAA", "fsync f", "pwrite f 5 BBBB", "fsync f",
                    "fsync f", "crash"},
                   {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_FROM=4", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, -SIGKILL);
    rebuild();
    EXPECT_EQ(read_file(P("f")), "AAAA bbbb");
}

TEST_F(PowerTest, AnFsyncEioDropsTheUnsyncedWritesAtOnce)
{
    // No cut: the file reads as the disk has it right after the failed fsync.
    write_file(P("f"), "0123456789");
    Result r = run({"open f rw", "pwrite f 0 AB", "fsync f", "pwrite f 4 CD", "pwrite f 10 EF",
                    "fsync f", "pwrite f 6 GH"},
                   {"OTASIM_FAIL_ERRNO=EIO", "OTASIM_FAIL_FROM=4", "OTASIM_FAIL_COUNT=1"});
    ASSERT_EQ(r.status, 1) << r.out;
    EXPECT_EQ(r.out, "ERR 6 fsync f Input/output error\n");
    // AB was synced; CD and EF were dropped by the failed fsync; GH came after
    EXPECT_EQ(read_file(P("f")), "AB2345GH89");
}

TEST_F(PowerTest, FailStateArmsInjection)
{
    Result r = run({"mkdir a", "state DOWNLOADING", "mkdir b", "state INSTALLING", "mkdir c"},
                   {"OTASIM_FAIL_ERRNO=ENOSPC", "OTASIM_FAIL_STATE=INSTALLING"});
    ASSERT_EQ(r.status, 1) << r.out;
    EXPECT_TRUE(exists(P("b")));
    EXPECT_FALSE(exists(P("c")));
}

TEST_F(PowerTest, StateLinesAreEventsAndCrashState)
{
    /* the agent writes each state line with one write(2) (cli.c) */
    Result r = run({"state A", "mkdir x", "state B", "mkdir y", "state B", "mkdir z"},
                   {"OTASIM_CRASH_STATE=B#2"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_TRUE(exists(P("y")));
    EXPECT_FALSE(exists(P("z")));
    Journal j = load();
    ASSERT_TRUE(j);
    std::vector<std::string> states;
    for (size_t i = 0; i < j->n; i++)
        if (j->v[i].op == OTASIM_OP_STATE)
            states.push_back(std::to_string(j->v[i].seq) + " " + j->v[i].text);
    ASSERT_EQ(states.size(), 3u);
    EXPECT_EQ(states[0], "0 {\"from\":\"x\",\"to\":\"A\"}");
    EXPECT_EQ(states[1], "1 {\"from\":\"x\",\"to\":\"B\"}");
    EXPECT_EQ(states[2], "2 {\"from\":\"x\",\"to\":\"B\"}");
    EXPECT_EQ(j->v[j->n - 1].op, OTASIM_OP_CRASH);
}

TEST_F(PowerTest, CrashLineFiresAtTheStdioCallThatLogsIt)
{
    /* swupdate logs its states through fortified stdio, whose write(2) is
     * inside libc: the interposer matches the formatted line at the call,
     * in the thread that logs it (agent_swupdate.c) */
    Result r = run({"log start", "mkdir x", "log Installation in progress", "mkdir y",
                    "log Installation in progress", "mkdir z"},
                   {"OTASIM_CRASH_LINE=Installation in progress#2"});
    ASSERT_EQ(r.status, -SIGKILL);
    EXPECT_TRUE(exists(P("y")));
    EXPECT_FALSE(exists(P("z")));
    Journal j = load();
    ASSERT_TRUE(j);
    EXPECT_EQ(j->v[j->n - 1].op, OTASIM_OP_CRASH);
    EXPECT_EQ(j->v[j->n - 1].seq, 2u);
    /* no match, no crash */
    Result q = run({"log Installation", "mkdir w"}, {"OTASIM_CRASH_LINE=Installation in progress"});
    EXPECT_EQ(q.status, 0);
    EXPECT_TRUE(exists(P("w")));
}

TEST_F(PowerTest, NetEventsRecordTheRequestLine)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(s, (sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(s, 4), 0);
    socklen_t al = sizeof(a);
    ASSERT_EQ(getsockname(s, (sockaddr *)&a, &al), 0);
    std::string port = std::to_string(ntohs(a.sin_port));
    Result r = run({"net " + port + " GET /api/v1/check HTTP/1.1\r\nHost: x\r\n\r\n"});
    close(s);
    ASSERT_EQ(r.status, 0) << r.out;
    Journal j = load();
    ASSERT_TRUE(j);
    ASSERT_EQ(j->n, 1u);
    EXPECT_EQ(j->v[0].op, OTASIM_OP_NET);
    EXPECT_STREQ(j->v[0].text, "GET /api/v1/check HTTP/1.1");
}

TEST_F(PowerTest, WithoutRootNothingChanges)
{
    write_file(P("f"), "x");
    Result r =
        run({"open f wa", "write f y", "fsync f", "mkdir d", "unlink f", "rename d e"}, {}, false);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_FALSE(exists(journal_));
    EXPECT_FALSE(exists(P(".sim/stash")));
    EXPECT_FALSE(exists(P("f")));
    EXPECT_TRUE(exists(P("e")));
}

TEST_F(PowerTest, TornLastRecordIsDropped)
{
    Result r = run({"mkdir a", "mkdir b"});
    ASSERT_EQ(r.status, 0);
    Journal j = load();
    ASSERT_EQ(j->n, 2u);
    struct stat st;
    ASSERT_EQ(stat(journal_.c_str(), &st), 0);
    ASSERT_EQ(truncate(journal_.c_str(), st.st_size - 3), 0);
    j = load();
    ASSERT_EQ(j->n, 2u);
    EXPECT_EQ(j->v[1].done, 0); // its DONE was torn
    // A torn tail is cut when the next process appends.
    r = run({"mkdir c"});
    j = load();
    ASSERT_EQ(j->n, 3u);
    EXPECT_EQ(j->v[2].seq, 3u);
    EXPECT_EQ(j->v[2].done, 1);
}

TEST_F(PowerTest, InterposePathFromEnvironment)
{
    char buf[4096];
    ota_err err{};
    setenv("OTASIM_INTERPOSE", OTASIM_INTERPOSE_LIB, 1);
    ASSERT_EQ(otasim_interpose_path(buf, sizeof(buf), &err), 0) << err.reason;
    EXPECT_STREQ(buf, OTASIM_INTERPOSE_LIB);
    unsetenv("OTASIM_INTERPOSE");
    // The test binary lives next to the library.
    ASSERT_EQ(otasim_interpose_path(buf, sizeof(buf), &err), 0) << err.reason;
    char want[4096];
    ASSERT_NE(realpath(OTASIM_INTERPOSE_LIB, want), nullptr);
    EXPECT_STREQ(buf, want);
}

// ---- crash models: reorder, torn ---------------------------------------------

TEST(CrashModel, NamesParse)
{
    otasim_crash_model m = OTASIM_CRASH_MINIMAL;
    ota_err err{};
    for (int i = 0; i < OTASIM_CRASH_MODEL_MAX; i++) {
        ASSERT_EQ(otasim_crash_model_parse(otasim_crash_model_names[i], &m, &err), 0);
        EXPECT_EQ((int)m, i);
    }
    EXPECT_EQ(otasim_crash_model_parse("ext4", &m, &err), -EINVAL);
    EXPECT_NE(std::string(err.reason).find("minimal, reorder or torn"), std::string::npos);
}

TEST_F(PowerTest, MinimalModelIsTheDefaultRebuild)
{
    write_file(P("f"), "before");
    Result r = run({"open f rw", "pwrite f 0 AFTER!", "crash"});
    ASSERT_EQ(r.status, -SIGKILL);
    rebuild_model(OTASIM_CRASH_MINIMAL, 99);
    EXPECT_EQ(read_file(P("f")), "before");
    EXPECT_EQ(stats_.kept_unsynced, 0u);
}

TEST_F(PowerTest, ReorderCanKeepALaterWriteAndLoseAnEarlierOne)
{
    // Two files written in order, neither synced: only reorder can leave the
    // second without the first (minimal loses both).
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_REORDER, 40,
        {"open a rw", "pwrite a 0 A1", "open b rw", "pwrite b 0 B1", "crash"},
        [&] {
            write_file(P("a"), "a0");
            write_file(P("b"), "b0");
        },
        [&](int) { seen.insert(read_file(P("a")) + "," + read_file(P("b"))); });
    EXPECT_EQ(seen, (std::set<std::string>{"a0,b0", "A1,b0", "a0,B1", "A1,B1"}));
}

TEST_F(PowerTest, ReorderKeepsOneFilesWritesInOrder)
{
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_REORDER, 40,
        {"open f rw", "pwrite f 0 11", "pwrite f 2 22", "pwrite f 4 33", "crash"},
        [&] { write_file(P("f"), "......"); }, [&](int) { seen.insert(read_file(P("f"))); });
    // a prefix of the three writes, never a later one without an earlier
    EXPECT_EQ(seen, (std::set<std::string>{"......", "11....", "1122..", "112233"}));
}

TEST_F(PowerTest, ReorderNeverLosesWhatFsyncMadeDurable)
{
    int kept = 0;
    each_seed(
        OTASIM_CRASH_REORDER, 30,
        {"open f rw", "pwrite f 0 SYNCED", "fsync f", "open n wc", "write n x", "fsyncdir .",
         "pwrite f 0 later!", "unlink n", "crash"},
        [&] { write_file(P("f"), "before"); },
        [&](int) {
            std::string f = read_file(P("f"));
            EXPECT_TRUE(f == "SYNCED" || f == "later!") << f;
            // n's name was made durable by the directory fsync; its data never was
            if (exists(P("n")))
                EXPECT_TRUE(read_file(P("n")) == "" || read_file(P("n")) == "x");
            kept += f == "later!";
        });
    EXPECT_GT(kept, 0);
}

TEST_F(PowerTest, ReorderKeepsDirectoryChangesAsAPrefix)
{
    // create n1, create n2, rename n1 -> m: the journal commits in order, so
    // m never exists without n2.
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_REORDER, 40, {"open n1 wc", "open n2 wc", "rename n1 m", "crash"}, [] {},
        [&](int) {
            std::string s;
            for (const char *n : {"n1", "n2", "m"})
                if (exists(P(n)))
                    s += std::string(n) + " ";
            seen.insert(s);
        });
    EXPECT_EQ(seen, (std::set<std::string>{"", "n1 ", "n1 n2 ", "n2 m "}));
}

TEST_F(PowerTest, ReorderCanKeepARenameAndLoseTheDataBeforeIt)
{
    // The ext4 delayed-allocation case: new content written (no fsync), then
    // renamed into place (no fsync either). minimal: the old file; reorder
    // can also give the new name with the data lost.
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_REORDER, 40,
        {"open state.tmp wct", "write state.tmp new state", "close state.tmp",
         "rename state.tmp state", "crash"},
        [&] { write_file(P("state"), "old state"); },
        [&](int) {
            seen.insert(read_file(P("state")));
            EXPECT_FALSE(exists(P("state.tmp")) && read_file(P("state")) != "old state");
        });
    EXPECT_EQ(seen, (std::set<std::string>{"old state", "", "new state"}));
}

std::string sectors(size_t n, char c)
{
    return std::string(n * 512, c);
}

TEST_F(PowerTest, TornWritePersistsSomeSectorsNeverAllNorNone)
{
    std::string old = sectors(8, 'o');
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_TORN, 30, {"open f rw", "pwrite f 512 " + sectors(4, 'N'), "crash"},
        [&] { write_file(P("f"), old); },
        [&](int) {
            std::string f = read_file(P("f"));
            ASSERT_EQ(f.size(), old.size());
            std::string pattern;
            for (size_t k = 0; k < 8; k++) {
                std::string sec = f.substr(k * 512, 512);
                ASSERT_TRUE(sec == sectors(1, 'o') || sec == sectors(1, 'N')) << "sector " << k;
                pattern += sec[0];
            }
            EXPECT_EQ(pattern.substr(0, 1) + pattern.substr(5), "oooo"); // outside the write
            EXPECT_NE(pattern.substr(1, 4), "oooo");
            EXPECT_NE(pattern.substr(1, 4), "NNNN");
            EXPECT_EQ(stats_.torn_writes, 1u);
            seen.insert(pattern);
        });
    EXPECT_GT(seen.size(), 4u); // the seed chooses
}

TEST_F(PowerTest, TornWriteWithinOneSectorIsWholeOrNothing)
{
    std::set<std::string> seen;
    each_seed(
        OTASIM_CRASH_TORN, 20, {"open f rw", "pwrite f 100 NEWNEWNEW", "crash"},
        [&] { write_file(P("f"), sectors(1, 'o')); },
        [&](int) { seen.insert(read_file(P("f")).substr(100, 9)); });
    EXPECT_EQ(seen, (std::set<std::string>{"ooooooooo", "NEWNEWNEW"}));
}

TEST_F(PowerTest, TornTearsOnlyTheLastWriteAndLosesTheRest)
{
    // Appends: the first is lost, the last persists partly; sectors that did
    // not persist past the old end read as zeros.
    each_seed(
        OTASIM_CRASH_TORN, 20,
        {"open f wa", "write f " + sectors(2, '1'), "write f " + sectors(3, '2'), "crash"},
        [&] { write_file(P("f"), "durable"); },
        [&](int) {
            std::string f = read_file(P("f"));
            ASSERT_GE(f.size(), 7u);
            EXPECT_EQ(f.substr(0, 7), "durable");
            EXPECT_EQ(f.find('1'), std::string::npos) << "the earlier write persisted";
            EXPECT_NE(f.find('2'), std::string::npos) << "nothing of the last write persisted";
            for (size_t i = 7; i < f.size(); i++)
                ASSERT_TRUE(f[i] == '2' || f[i] == '\0') << "byte " << i;
        });
}

TEST_F(PowerTest, TornWriteOfAFileWhoseNameIsLostLeavesNothing)
{
    each_seed(
        OTASIM_CRASH_TORN, 5, {"open n wc", "write n " + sectors(4, 'x'), "crash"}, [] {},
        [&](int) { EXPECT_FALSE(exists(P("n"))); });
}

TEST_F(PowerTest, TornIsReproducibleBySeed)
{
    std::string first;
    for (int i = 0; i < 2; i++) {
        fresh_root();
        write_file(P("f"), sectors(8, 'o'));
        ASSERT_EQ(run({"open f rw", "pwrite f 0 " + sectors(8, 'N'), "crash"}).status, -SIGKILL);
        rebuild_model(OTASIM_CRASH_TORN, 7);
        if (i == 0)
            first = read_file(P("f"));
        else
            EXPECT_EQ(read_file(P("f")), first);
    }
}

// ---- calls beyond open/write/rename -------------------------------------------

// The first UNMODELLED event of the journal ("" if none).
std::string unmodelled_of(const std::string &journal)
{
    char buf[4200];
    return otasim_journal_unmodelled(journal.c_str(), buf, sizeof(buf)) ? buf : "";
}

TEST_F(PowerTest, FallocateGrowingAFileIsUndone)
{
    write_file(P("f"), "abc");
    cut({"open f rw", "fallocate f 0 4096 0", "crash"});
    EXPECT_EQ(read_file(P("f")), "abc");
    EXPECT_EQ(stats_.writes_undone, 1u);
    EXPECT_EQ(unmodelled_of(journal_), "");
}

TEST_F(PowerTest, PosixFallocateIsJournaledAndKeptByFsync)
{
    write_file(P("f"), "abc");
    cut({"open f rw", "posix_fallocate f 0 100", "fsync f", "posix_fallocate f 0 900", "crash"});
    EXPECT_EQ(read_file(P("f")).size(), 100u);
}

TEST_F(PowerTest, FallocateKeepSizeChangesNothingVisible)
{
    write_file(P("f"), "abc");
    cut({"open f rw", "fallocate f 0 8192 keep", "crash"});
    EXPECT_EQ(read_file(P("f")), "abc");
    EXPECT_EQ(unmodelled_of(journal_), "");
}

TEST_F(PowerTest, FallocatePunchingAHoleIsUnmodelled)
{
    write_file(P("f"), sectors(16, 'x'));
    Result r = run({"open f rw", "fallocate f 0 4096 punch"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "fallocate " + P("f"));
}

TEST_F(PowerTest, CopyFileRangeIntoAFileIsAWriteAndUndone)
{
    write_file(P("src"), "new content");
    write_file(P("dst"), "old");
    cut({"open src r", "open dst w", "copyrange src dst", "crash"});
    EXPECT_EQ(read_file(P("dst")), "old");
    EXPECT_EQ(stats_.writes_undone, 1u);
}

TEST_F(PowerTest, CopyFileRangeKeptByFsync)
{
    write_file(P("src"), "new content");
    write_file(P("dst"), "old");
    cut({"open src r", "open dst w", "copyrange src dst", "fsync dst", "crash"});
    EXPECT_EQ(read_file(P("dst")), "new content");
}

TEST_F(PowerTest, SendfileIntoAFileIsAWriteAndUndone)
{
    write_file(P("src"), "sent bytes");
    write_file(P("dst"), "0123456789abc");
    cut({"open src r", "open dst rw", "sendfile src dst", "crash"});
    EXPECT_EQ(read_file(P("dst")), "0123456789abc");
    EXPECT_EQ(stats_.bytes_restored, 10u);
}

TEST_F(PowerTest, SpliceIntoAFileIsAWriteAndUndone)
{
    write_file(P("dst"), "before");
    cut({"open dst w", "splice dst spliced!", "crash"});
    EXPECT_EQ(read_file(P("dst")), "before");
}

TEST_F(PowerTest, SharedWritableMappingIsUnmodelled)
{
    write_file(P("f"), "0123456789");
    Result r = run({"open f rw", "mmapw f MAPPED"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "mmap(MAP_SHARED, PROT_WRITE) " + P("f"));
}

TEST_F(PowerTest, SqliteShmMappingIsNotUnmodelled)
{
    write_file(P("app.db-shm"), std::string(32768, '\0'));
    Result r = run({"open app.db-shm rw", "mmapw app.db-shm shared"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "");
}

TEST_F(PowerTest, StdioWritesAreUnmodelled)
{
    Result r = run({"fopenw f hello"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "fopen(\"w\") " + P("f"));
    fresh_root();
    write_file(P("g"), "x");
    r = run({"open g rw", "fdopenw g more"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "fdopen(\"a\") " + P("g"));
}

TEST_F(PowerTest, ReadingThroughStdioIsFine)
{
    write_file(P("f"), "x");
    Result r = run({"open f r"});
    ASSERT_EQ(r.status, 0);
    EXPECT_EQ(unmodelled_of(journal_), "");
}

mode_t mode_of(const std::string &p)
{
    struct stat st;
    return lstat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST_F(PowerTest, ChmodWithoutFsyncIsUndone)
{
    write_file(P("f"), "x");
    ASSERT_EQ(chmod(P("f").c_str(), 0644), 0);
    cut({"open f r", "fchmod f 0755", "chmod f 0700", "crash"});
    EXPECT_EQ(mode_of(P("f")), 0644u);
    EXPECT_EQ(stats_.writes_undone, 2u);
}

TEST_F(PowerTest, ChmodWithFsyncIsKept)
{
    write_file(P("f"), "x");
    ASSERT_EQ(chmod(P("f").c_str(), 0644), 0);
    cut({"open f r", "fchmod f 0755", "fsync f", "crash"});
    EXPECT_EQ(mode_of(P("f")), 0755u);
}

TEST_F(PowerTest, TimesAndOwnerWithoutFsyncAreUndone)
{
    write_file(P("f"), "x");
    struct timespec ts[2] = {{1000, 0}, {2000, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, P("f").c_str(), ts, 0), 0);
    cut({"utimens f 5000", "chown f", "crash"});
    struct stat st;
    ASSERT_EQ(stat(P("f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 2000);
    EXPECT_EQ(st.st_atim.tv_sec, 1000);
}

TEST_F(PowerTest, AttributeCallsKeepTheCrashPointNumbers)
{
    write_file(P("f"), "x");
    Result r = run({"open f rw", "write f a", "fchmod f 0600", "utimens f 7", "write f b"});
    ASSERT_EQ(r.status, 0) << r.out;
    Journal j = load();
    EXPECT_EQ(j->calls, 1u); // the two writes are one burst; attr changes are not counted
}

TEST_F(PowerTest, TmpfileLinkedInIsANewName)
{
    cut({"tmpfile . t data", "crash"});
    EXPECT_FALSE(exists(P("t")));
    EXPECT_EQ(unmodelled_of(journal_), "");
    fresh_root();
    cut({"tmpfile . t data", "open t r", "fsync t", "fsyncdir .", "crash"});
    EXPECT_EQ(read_file(P("t")), "data");
}

TEST_F(PowerTest, RenameIntoTheRootFromOutsideIsUnmodelled)
{
    write_file(top_ + "/outside", "from elsewhere");
    Result r = run({"rename " + top_ + "/outside in"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "rename from outside the device root " + P("in"));
}

TEST_F(PowerTest, LinkIntoTheRootFromOutsideIsUnmodelled)
{
    write_file(top_ + "/outside", "from elsewhere");
    Result r = run({"link " + top_ + "/outside in"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "link from outside the device root " + P("in"));
}

TEST_F(PowerTest, RenameOutOfTheRootIsUnmodelled)
{
    write_file(P("f"), "leaving");
    Result r = run({"rename f " + top_ + "/gone"});
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(unmodelled_of(journal_), "rename out of the device root " + P("f"));
}

TEST_F(PowerTest, AFailedCrossingIsNotUnmodelled)
{
    Result r = run({"rename " + top_ + "/nothing-there in"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(unmodelled_of(journal_), "");
}

// ---- SQLite against the model ------------------------------------------------

// Rows after transaction k of the script below (-1: no table yet).
int rows_after(int k)
{
    return k < 0 ? -1 : 20 * k;
}

// Row count of db, -1 if it has no table t; "" or the integrity problem.
std::string check_db(const std::string &path, int *rows)
{
    sqlite3 *db = nullptr;
    std::string bad;
    *rows = -1;
    if (!exists(path))
        return "";
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        bad = std::string("open: ") + sqlite3_errmsg(db);
        sqlite3_close(db);
        return bad;
    }
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        std::string v = (const char *)sqlite3_column_text(st, 0);
        if (v != "ok")
            bad = "integrity: " + v;
    } else {
        bad = std::string("integrity_check: ") + sqlite3_errmsg(db);
    }
    sqlite3_finalize(st);
    if (bad.empty() &&
        sqlite3_prepare_v2(db, "SELECT count(*), coalesce(max(k), 0), count(DISTINCT k) FROM t", -1,
                           &st, nullptr) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            *rows = sqlite3_column_int(st, 0);
            if (*rows != 20 * sqlite3_column_int(st, 1) || *rows != 20 * sqlite3_column_int(st, 2))
                bad = "torn transaction: " + std::to_string(*rows) + " rows";
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return bad;
}

// SQLite (WAL, synchronous=FULL, as the agent) against a cut after every call
// of a script, the tree rebuilt under model m (seed: the point).
void PowerTest::sqlite_every_call(otasim_crash_model m)
{
    std::vector<std::string> script = {
        "sqlopen app.db", "sql PRAGMA journal_mode=WAL", "sql PRAGMA synchronous=FULL",
        "sql CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)", "state T0"};
    for (int k = 1; k <= 4; k++) {
        script.push_back("sql BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM "
                         "n WHERE i<20) INSERT INTO t(k, v) SELECT " +
                         std::to_string(k) + ", printf('%.300c', 'x') FROM n; COMMIT;");
        script.push_back("state T" + std::to_string(k));
        if (k == 2)
            script.push_back("sql PRAGMA wal_checkpoint(TRUNCATE)");
    }
    script.push_back("sqlclose");
    script.push_back("state T5");

    Result r = run(script);
    ASSERT_EQ(r.status, 0) << r.out;
    Journal j = load();
    ASSERT_TRUE(j);
    uint64_t calls = j->calls;
    ASSERT_GT(calls, 20u);
    int ok = 0;
    for (uint64_t n = 1; n <= calls; n++) {
        fresh_root();
        r = run(script, {"OTASIM_CRASH_AT=" + std::to_string(n)});
        ASSERT_EQ(r.status, -SIGKILL) << "cut at " << n << ": " << r.out;
        j = load();
        int committed = -1; // transactions known committed before the cut
        for (size_t i = 0; i < j->n; i++)
            if (j->v[i].op == OTASIM_OP_STATE)
                committed = std::min(4, atoi(strchr(j->v[i].text, 'T') + 1));
        rebuild_model(m, n);
        int rows = 0;
        std::string bad = check_db(P("app.db"), &rows);
        EXPECT_EQ(bad, "") << "cut at " << n;
        EXPECT_TRUE(rows == rows_after(committed) || rows == rows_after(committed + 1))
            << "cut at " << n << ": " << rows << " rows, committed " << committed;
        ok += bad.empty();
    }
    EXPECT_EQ(ok, (int)calls);
}

TEST_F(PowerTest, SqliteSurvivesACutAtEveryCall)
{
    sqlite_every_call(OTASIM_CRASH_MINIMAL);
}

TEST_F(PowerTest, SqliteSurvivesACutAtEveryCallReordered)
{
    sqlite_every_call(OTASIM_CRASH_REORDER);
}

TEST_F(PowerTest, SqliteSurvivesACutAtEveryCallTorn)
{
    sqlite_every_call(OTASIM_CRASH_TORN);
}

} // namespace
