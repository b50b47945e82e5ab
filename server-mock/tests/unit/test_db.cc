// Unit tests for src/db.c, the database layer under store.c and
// rollout_store.c: opening (WAL), the statement cache, the step helpers
// and the one SQLite -> errno mapping.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

extern "C" {
#include "otasrv/db.h"
}

namespace
{

class Db : public testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/srvdb-XXXXXX";
        int fd = mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        close(fd);
        unlink(tmpl);
        path = tmpl;
        ASSERT_EQ(otasrv_db_open(&c, path.c_str(), 1, &err), 0) << err.reason;
        ASSERT_EQ(otasrv_db_exec(&c, "CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER)", &err), 0);
    }
    void TearDown() override
    {
        otasrv_db_close(&c);
        for (const char *sfx : {"", "-wal", "-shm"})
            unlink((path + sfx).c_str());
    }
    std::string path;
    otasrv_db c{};
    ota_err err{};
};

const char SQL_PUT[] = "INSERT INTO t(k, v) VALUES(?1, ?2)";
const char SQL_GET[] = "SELECT v FROM t WHERE k = ?1";
const char SQL_ALL[] = "SELECT k FROM t ORDER BY k";

TEST_F(Db, OpensInWalMode)
{
    sqlite3_stmt *st = nullptr;
    ASSERT_EQ(otasrv_db_prepare(&c, "PRAGMA journal_mode", &st, "pragma", &err), 0);
    ASSERT_EQ(otasrv_db_row(&c, st, "pragma", &err), 1);
    EXPECT_STREQ(otasrv_db_col_text(st, 0), "wal");
    sqlite3_finalize(st);
}

TEST_F(Db, PrepCachesByTextAndResets)
{
    sqlite3_stmt *a = nullptr, *b = nullptr;
    ASSERT_EQ(otasrv_db_prep(&c, SQL_PUT, &a, &err), 0);
    otasrv_db_bind_text(a, 1, "x");
    sqlite3_bind_int64(a, 2, 7);
    ASSERT_EQ(otasrv_db_step_done(&c, a, "put", &err), 0);
    ASSERT_EQ(otasrv_db_prep(&c, SQL_PUT, &b, &err), 0);
    EXPECT_EQ(a, b); // the same statement, reset and unbound
    ASSERT_EQ(otasrv_db_prep(&c, SQL_GET, &b, &err), 0);
    EXPECT_NE(a, b);
}

TEST_F(Db, RowIsOneZeroOrTheError)
{
    sqlite3_stmt *st = nullptr;
    ASSERT_EQ(otasrv_db_prep(&c, SQL_PUT, &st, &err), 0);
    otasrv_db_bind_text(st, 1, "a");
    sqlite3_bind_int64(st, 2, 1);
    ASSERT_EQ(otasrv_db_step_done(&c, st, "put", &err), 0);

    ASSERT_EQ(otasrv_db_prep(&c, SQL_GET, &st, &err), 0);
    otasrv_db_bind_text(st, 1, "a");
    ASSERT_EQ(otasrv_db_row(&c, st, "get", &err), 1);
    EXPECT_EQ(sqlite3_column_int64(st, 0), 1);
    ASSERT_EQ(otasrv_db_prep(&c, SQL_GET, &st, &err), 0);
    otasrv_db_bind_text(st, 1, "missing");
    EXPECT_EQ(otasrv_db_row(&c, st, "get", &err), 0);
    sqlite3_reset(st);

    // the loop form: rows until 0
    ASSERT_EQ(otasrv_db_prep(&c, SQL_PUT, &st, &err), 0);
    otasrv_db_bind_text(st, 1, "b");
    otasrv_db_bind_text(st, 2, nullptr);
    ASSERT_EQ(otasrv_db_step_done(&c, st, "put", &err), 0);
    ASSERT_EQ(otasrv_db_prep(&c, SQL_ALL, &st, &err), 0);
    std::string keys;
    int r;
    while ((r = otasrv_db_row(&c, st, "all", &err)) == 1)
        keys += otasrv_db_col_text(st, 0);
    EXPECT_EQ(r, 0);
    EXPECT_EQ(keys, "ab");
    sqlite3_reset(st);
}

TEST_F(Db, ConstraintIsEexistWithTheReason)
{
    sqlite3_stmt *st = nullptr;
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(otasrv_db_prep(&c, SQL_PUT, &st, &err), 0);
        otasrv_db_bind_text(st, 1, "dup");
        sqlite3_bind_int64(st, 2, i);
        int r = otasrv_db_step_done(&c, st, "put dup", &err);
        EXPECT_EQ(r, i == 0 ? 0 : -EEXIST);
    }
    EXPECT_EQ(std::string(err.reason).rfind("put dup: UNIQUE constraint failed", 0), 0u)
        << err.reason;
}

TEST_F(Db, BusyIsEbusy)
{
    otasrv_db other{};
    ASSERT_EQ(otasrv_db_open(&other, path.c_str(), 1, &err), 0);
    sqlite3_busy_timeout(other.db, 0); // no 10 s wait in a test
    ASSERT_EQ(otasrv_db_exec(&c, "BEGIN IMMEDIATE", &err), 0);
    EXPECT_EQ(otasrv_db_exec(&other, "BEGIN IMMEDIATE", &err), -EBUSY);
    EXPECT_NE(strstr(err.reason, "BEGIN IMMEDIATE: "), nullptr) << err.reason;
    otasrv_db_rollback(&c);
    EXPECT_EQ(otasrv_db_exec(&other, "BEGIN IMMEDIATE", &err), 0);
    otasrv_db_rollback(&other);
    otasrv_db_close(&other);
}

TEST_F(Db, FailMapsEveryCode)
{
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_BUSY, "w", &err), -EBUSY);
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_LOCKED, "w", &err), -EBUSY);
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_CONSTRAINT_PRIMARYKEY, "w", &err), -EEXIST);
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_FULL, "w", &err), -ENOSPC);
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_IOERR_WRITE, "w", &err), -EIO);
    ota_err fresh{}; // the first reason wins: a new one for the text
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_CORRUPT, "what", &fresh), -EIO);
    EXPECT_STREQ(fresh.reason, (std::string("what: ") + sqlite3_errstr(SQLITE_CORRUPT)).c_str());
    EXPECT_EQ(otasrv_db_fail(nullptr, SQLITE_FULL, "w", nullptr), -ENOSPC); // err may be NULL
}

TEST_F(Db, BadSqlAndAFullCache)
{
    sqlite3_stmt *st = nullptr;
    EXPECT_EQ(otasrv_db_prepare(&c, "SELEC nothing", &st, "bad", &err), -EIO);
    EXPECT_EQ(std::string(err.reason).rfind("bad: ", 0), 0u);
    static char texts[OTASRV_DB_STMT_CACHE + 1][32];
    for (int i = 0; i <= OTASRV_DB_STMT_CACHE; i++) {
        snprintf(texts[i], sizeof(texts[i]), "SELECT %d", i);
        int r = otasrv_db_prep(&c, texts[i], &st, &err);
        EXPECT_EQ(r, i < OTASRV_DB_STMT_CACHE ? 0 : -ENOSPC) << i;
    }
}

TEST(DbOpen, MissingDirectoryFailsClosed)
{
    otasrv_db c{};
    ota_err err{};
    EXPECT_EQ(otasrv_db_open(&c, "/nonexistent-dir/x.db", 1, &err), -EIO);
    EXPECT_EQ(c.db, nullptr);
    EXPECT_EQ(std::string(err.reason).rfind("/nonexistent-dir/x.db: ", 0), 0u) << err.reason;
    otasrv_db_close(&c); // closing a failed open is fine
}

} // namespace
