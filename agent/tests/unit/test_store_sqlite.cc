// Store over SQLite: round trips, atomicity, ordering, and what open() does
// with databases that are garbage, truncated, corrupt or from the future.
#include <gtest/gtest.h>

#include "testutil.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "ota/drivers.h"

namespace fs = std::filesystem;

namespace
{

struct ota_journal make_journal(enum ota_state state, int n)
{
    struct ota_journal j;
    memset(&j, 0, sizeof(j));
    j.state = state;
    snprintf(j.update_id, sizeof(j.update_id), "upd-%d", n);
    snprintf(j.rollout_id, sizeof(j.rollout_id), "roll-%d", n);
    std::string manifest = "{\"schema\":1,\"name\":\"video-app\",\"pad\":\"";
    manifest += std::string(sizeof(j.manifest) - 1 - manifest.size() - 2, 'm') + "\"}";
    snprintf(j.manifest, sizeof(j.manifest), "%s", manifest.c_str());
    snprintf(j.signature, sizeof(j.signature), "%s", std::string(88, 'S').c_str());
    snprintf(j.url, sizeof(j.url), "http://127.0.0.1:8080/dl/%d?x='quote'&y=\"dq\"", n);
    snprintf(j.etag, sizeof(j.etag), "\"etag-%d\"", n);
    j.from_slot = OTA_SLOT_B;
    j.to_slot = OTA_SLOT_A;
    snprintf(j.from_version, sizeof(j.from_version), "1.%d.0", n);
    j.durable_len = UINT64_MAX - 7; // above INT64_MAX: must survive the int64 column
    for (int i = 0; i < OTA_SHA256_LEN; i++)
        j.prefix_sha256[i] = (uint8_t)(i * 37 + n);
    j.resumes = UINT32_MAX;
    j.attempts = 3;
    j.failed = 1;
    snprintf(j.reason, sizeof(j.reason), "reason \xc3\xa9 %d", n);
    j.wait_activation = 1;
    j.not_after_ms = 1795000000000LL + n;
    j.standby_since_ms = 1794000000000LL + n;
    return j;
}

struct ota_report make_report(int n)
{
    struct ota_report r;
    memset(&r, 0, sizeof(r));
    snprintf(r.device_id, sizeof(r.device_id), "dev-1");
    snprintf(r.update_id, sizeof(r.update_id), "upd-%d", n);
    snprintf(r.rollout_id, sizeof(r.rollout_id), "roll-%d", n);
    snprintf(r.version, sizeof(r.version), "2.%d.0", n);
    snprintf(r.kind, sizeof(r.kind), "app");
    snprintf(r.state, sizeof(r.state), "DOWNLOADING");
    snprintf(r.status, sizeof(r.status), "in_progress");
    snprintf(r.reason, sizeof(r.reason), "report %d", n);
    r.ts_ms = 1795000000000LL + n;
    return r;
}

struct ota_history make_history(int n)
{
    struct ota_history h;
    memset(&h, 0, sizeof(h));
    snprintf(h.update_id, sizeof(h.update_id), "upd-%d", n);
    snprintf(h.version, sizeof(h.version), "2.%d.0", n);
    snprintf(h.from_version, sizeof(h.from_version), "1.%d.0", n);
    snprintf(h.kind, sizeof(h.kind), "rootfs");
    snprintf(h.status, sizeof(h.status), n % 2 ? "failure" : "success");
    snprintf(h.reason, sizeof(h.reason), "history %d %s", n, std::string(200, 'h').c_str());
    h.ts_ms = -1000 + n; // negative on purpose: int64 round trip
    return h;
}

// Runs SQL on the database with a connection of our own.
void raw_exec(const std::string &path, const std::string &sql)
{
    sqlite3 *db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char *msg = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    EXPECT_EQ(rc, SQLITE_OK) << (msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
}

std::string raw_query(const std::string &path, const std::string &sql)
{
    sqlite3 *db = nullptr;
    sqlite3_stmt *st = nullptr;
    std::string out;
    if (sqlite3_open(path.c_str(), &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

class StoreTest : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/ota-store-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        path = dir + "/agent.db";
        ota_err_clear(&err);
    }
    void TearDown() override
    {
        ota_sqlite_close(s);
        fs::remove_all(dir);
    }

    void open_store()
    {
        ota_sqlite_close(s);
        s = nullptr;
        ota_err_clear(&err);
        ASSERT_EQ(ota_sqlite_open(path.c_str(), &s, &err), 0) << err.reason;
        ASSERT_NE(s, nullptr);
    }
    void close_store()
    {
        ota_sqlite_close(s);
        s = nullptr;
    }

    int save(const struct ota_journal &j, const struct ota_report *r = nullptr,
             const struct ota_history *h = nullptr)
    {
        ota_err_clear(&err);
        return ota_sqlite_ops.save(s, &j, r, h, &err);
    }
    size_t outbox_count()
    {
        size_t n = 999;
        EXPECT_EQ(ota_sqlite_outbox_count(s, &n, &err), 0) << err.reason;
        return n;
    }
    size_t history_count()
    {
        std::vector<struct ota_history> h(1000);
        size_t n = 999;
        EXPECT_EQ(ota_sqlite_history(s, h.data(), h.size(), &n, &err), 0) << err.reason;
        return n;
    }

    // A database with many pages (WAL checkpointed into it on close).
    void make_big_database()
    {
        open_store();
        struct ota_journal j = make_journal(OTA_STATE_DOWNLOADING, 1);
        for (int i = 0; i < 200; i++) {
            struct ota_report r = make_report(i);
            struct ota_history h = make_history(i);
            ASSERT_EQ(save(j, &r, &h), 0) << err.reason;
        }
        close_store();
        ASSERT_FALSE(fs::exists(path + "-wal"));
        ASSERT_GT(fs::file_size(path), 20u * 4096u);
    }

    void expect_reset(const char *why_part)
    {
        open_store();
        const char *reason = ota_sqlite_reset_reason(s);
        ASSERT_NE(reason, nullptr);
        EXPECT_NE(strstr(reason, ".broken"), nullptr) << reason;
        if (why_part)
            EXPECT_NE(strstr(reason, why_part), nullptr) << reason;
        EXPECT_TRUE(fs::exists(path + ".broken"));
        // The new store is empty and works.
        struct ota_journal got;
        EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), -ENOENT);
        struct ota_journal j = make_journal(OTA_STATE_CHECKING, 9);
        EXPECT_EQ(save(j), 0) << err.reason;
        EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
        EXPECT_EQ(got.state, OTA_STATE_CHECKING);
        // And it stays sound: the next open does not reset again.
        open_store();
        EXPECT_EQ(ota_sqlite_reset_reason(s), nullptr);
        EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    }

    std::string dir, path;
    struct ota_sqlite *s = nullptr;
    struct ota_err err;
};

TEST_F(StoreTest, NewStoreIsEmpty)
{
    open_store();
    EXPECT_EQ(ota_sqlite_reset_reason(s), nullptr);
    struct ota_journal j;
    memset(&j, 0x5a, sizeof(j));
    EXPECT_EQ(ota_sqlite_ops.load(s, &j, &err), -ENOENT);
    struct ota_journal untouched;
    memset(&untouched, 0x5a, sizeof(untouched));
    EXPECT_EQ(memcmp(&j, &untouched, sizeof(j)), 0); // ret untouched on failure
    struct ota_report r;
    int64_t id = -5;
    EXPECT_EQ(ota_sqlite_ops.outbox_peek(s, &r, &id, &err), -ENOENT);
    EXPECT_EQ(id, -5);
    EXPECT_EQ(outbox_count(), 0u);
    EXPECT_EQ(history_count(), 0u);
    char buf[16];
    EXPECT_EQ(ota_sqlite_ops.kv_get(s, "token", buf, sizeof(buf), &err), -ENOENT);
}

TEST_F(StoreTest, DatabaseUsesWalAndSchemaVersion)
{
    open_store();
    EXPECT_EQ(raw_query(path, "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(raw_query(path, "PRAGMA user_version"), "2");
}

// A store of schema version 1 (before STANDBY) gains the journal's blue-green
// columns and keeps its journal.
TEST_F(StoreTest, SchemaVersion1IsMigrated)
{
    raw_exec(path, "PRAGMA journal_mode=WAL;"
                   "CREATE TABLE journal (id INTEGER PRIMARY KEY CHECK (id = 1),"
                   " state TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
                   " manifest TEXT NOT NULL, signature TEXT NOT NULL, url TEXT NOT NULL,"
                   " etag TEXT NOT NULL, from_slot INTEGER NOT NULL, to_slot INTEGER NOT NULL,"
                   " from_version TEXT NOT NULL, durable_len INTEGER NOT NULL,"
                   " prefix_sha256 TEXT NOT NULL, resumes INTEGER NOT NULL,"
                   " attempts INTEGER NOT NULL, failed INTEGER NOT NULL, reason TEXT NOT NULL);"
                   "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " device_id TEXT NOT NULL, update_id TEXT NOT NULL, rollout_id TEXT NOT NULL,"
                   " version TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,"
                   " status TEXT NOT NULL, reason TEXT NOT NULL, ts_ms INTEGER NOT NULL);"
                   "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " update_id TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,"
                   " kind TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,"
                   " ts_ms INTEGER NOT NULL);"
                   "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                   "INSERT INTO journal VALUES (1, 'SWITCHING', 'u1', 'r1', '{}', 'sig', 'url',"
                   " '', 0, 1, '1.0.0', 5, '" +
                       std::string(64, '0') +
                       "', 2, 0, 0, '');"
                       "PRAGMA user_version = 1;");
    open_store();
    EXPECT_EQ(raw_query(path, "PRAGMA user_version"), "2");
    struct ota_journal got;
    ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    EXPECT_EQ(got.state, OTA_STATE_SWITCHING);
    EXPECT_STREQ(got.update_id, "u1");
    EXPECT_EQ(got.resumes, 2u);
    EXPECT_EQ(got.wait_activation, 0);
    EXPECT_EQ(got.not_after_ms, 0);
    struct ota_journal j = make_journal(OTA_STATE_STANDBY, 3);
    ASSERT_EQ(save(j), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    EXPECT_EQ(memcmp(&got, &j, sizeof(j)), 0);
}

TEST_F(StoreTest, JournalRoundTripsEveryField)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_ROLLING_BACK, 7);
    ASSERT_EQ(save(j), 0) << err.reason;
    struct ota_journal got;
    memset(&got, 0x77, sizeof(got));
    ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    EXPECT_EQ(got.state, j.state);
    EXPECT_STREQ(got.update_id, j.update_id);
    EXPECT_STREQ(got.rollout_id, j.rollout_id);
    EXPECT_STREQ(got.manifest, j.manifest);
    EXPECT_EQ(strlen(got.manifest), sizeof(got.manifest) - 1);
    EXPECT_STREQ(got.signature, j.signature);
    EXPECT_STREQ(got.url, j.url);
    EXPECT_STREQ(got.etag, j.etag);
    EXPECT_EQ(got.from_slot, j.from_slot);
    EXPECT_EQ(got.to_slot, j.to_slot);
    EXPECT_STREQ(got.from_version, j.from_version);
    EXPECT_EQ(got.durable_len, j.durable_len);
    EXPECT_EQ(memcmp(got.prefix_sha256, j.prefix_sha256, OTA_SHA256_LEN), 0);
    EXPECT_EQ(got.resumes, j.resumes);
    EXPECT_EQ(got.attempts, j.attempts);
    EXPECT_EQ(got.failed, j.failed);
    EXPECT_STREQ(got.reason, j.reason);
    EXPECT_EQ(got.wait_activation, j.wait_activation);
    EXPECT_EQ(got.not_after_ms, j.not_after_ms);
    EXPECT_EQ(got.standby_since_ms, j.standby_since_ms);
    EXPECT_EQ(memcmp(&got, &j, sizeof(j)), 0);
    // The hash is kept as hex text.
    std::string hex = raw_query(path, "SELECT prefix_sha256 FROM journal");
    EXPECT_EQ(hex.size(), 64u);
    EXPECT_EQ(hex.substr(0, 4), "072c"); // bytes 7, 44
}

TEST_F(StoreTest, EveryStateRoundTripsAndTheLastSaveWins)
{
    open_store();
    for (int st = 0; st < OTA_STATE_MAX; st++) {
        struct ota_journal j = make_journal((enum ota_state)st, st);
        ASSERT_EQ(save(j), 0) << err.reason;
        struct ota_journal got;
        ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
        EXPECT_EQ(got.state, st);
        EXPECT_STREQ(got.update_id, j.update_id);
        EXPECT_EQ(raw_query(path, "SELECT state FROM journal"), ota_state_names[st]);
    }
    EXPECT_EQ(raw_query(path, "SELECT count(*) FROM journal"), "1");
}

TEST_F(StoreTest, UnterminatedFieldsAreBoundedNotOverread)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_IDLE, 1);
    memset(j.etag, 'e', sizeof(j.etag)); // no NUL
    // Stored as sizeof(etag) bytes, which cannot come back into the field.
    ASSERT_EQ(save(j), 0) << err.reason;
    struct ota_journal got;
    EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), -EBADMSG);
}

TEST_F(StoreTest, SaveRejectsAnInvalidState)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_IDLE, 1);
    j.state = OTA_STATE_MAX;
    EXPECT_EQ(save(j), -EINVAL);
    j.state = (enum ota_state) - 1;
    EXPECT_EQ(save(j), -EINVAL);
}

TEST_F(StoreTest, SaveWritesJournalReportAndHistoryTogether)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_COMMITTING, 1);
    struct ota_report r = make_report(1);
    struct ota_history h = make_history(1);
    ASSERT_EQ(save(j, &r, &h), 0) << err.reason;
    EXPECT_EQ(outbox_count(), 1u);
    EXPECT_EQ(history_count(), 1u);
    ASSERT_EQ(save(j, &r, nullptr), 0) << err.reason;
    EXPECT_EQ(outbox_count(), 2u);
    EXPECT_EQ(history_count(), 1u);
    ASSERT_EQ(save(j, nullptr, nullptr), 0) << err.reason;
    EXPECT_EQ(outbox_count(), 2u);
    EXPECT_EQ(history_count(), 1u);
}

TEST_F(StoreTest, FailedSaveLeavesNoTrace)
{
    open_store();
    struct ota_journal j1 = make_journal(OTA_STATE_HEALTH_CHECK, 1);
    ASSERT_EQ(save(j1), 0) << err.reason;
    // The history insert, the last of the three, fails: the journal and the
    // report written before it in the same transaction must go too.
    raw_exec(path, "CREATE TRIGGER no_history BEFORE INSERT ON history "
                   "BEGIN SELECT RAISE(ABORT, 'history refused'); END;");
    struct ota_journal j2 = make_journal(OTA_STATE_COMMITTING, 2);
    struct ota_report r = make_report(2);
    struct ota_history h = make_history(2);
    int ret = save(j2, &r, &h);
    EXPECT_LT(ret, 0);
    EXPECT_NE(strstr(err.reason, "history refused"), nullptr) << err.reason;
    struct ota_journal got;
    ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    EXPECT_EQ(got.state, OTA_STATE_HEALTH_CHECK);
    EXPECT_STREQ(got.update_id, "upd-1");
    EXPECT_EQ(outbox_count(), 0u);
    EXPECT_EQ(history_count(), 0u);
    // The store is not left inside a transaction.
    raw_exec(path, "DROP TRIGGER no_history");
    ASSERT_EQ(save(j2, &r, &h), 0) << err.reason;
    EXPECT_EQ(outbox_count(), 1u);
    EXPECT_EQ(history_count(), 1u);
}

TEST_F(StoreTest, LockHeldElsewhereIsEbusyAfterTheTimeout)
{
    open_store();
    sqlite3 *other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    auto t0 = std::chrono::steady_clock::now();
    struct ota_journal j = make_journal(OTA_STATE_CHECKING, 1);
    EXPECT_EQ(save(j), -EBUSY);
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(waited, std::chrono::milliseconds(4500));
    EXPECT_NE(strstr(err.reason, "locked"), nullptr) << err.reason;
    sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(other);
    EXPECT_EQ(save(j), 0) << err.reason;
}

TEST_F(StoreTest, OutboxIsOldestFirst)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_DOWNLOADING, 1);
    for (int i = 0; i < 3; i++) {
        struct ota_report r = make_report(i);
        ASSERT_EQ(save(j, &r), 0) << err.reason;
    }
    EXPECT_EQ(outbox_count(), 3u);
    int64_t prev_id = 0;
    for (int i = 0; i < 3; i++) {
        struct ota_report got;
        int64_t id = 0;
        ASSERT_EQ(ota_sqlite_ops.outbox_peek(s, &got, &id, &err), 0) << err.reason;
        struct ota_report want = make_report(i);
        EXPECT_EQ(memcmp(&got, &want, sizeof(want)), 0) << "report " << i;
        EXPECT_STREQ(got.reason, want.reason);
        EXPECT_EQ(got.ts_ms, want.ts_ms);
        EXPECT_GT(id, prev_id);
        prev_id = id;
        // Peeking again gives the same report until it is popped.
        int64_t again = 0;
        ASSERT_EQ(ota_sqlite_ops.outbox_peek(s, &got, &again, &err), 0);
        EXPECT_EQ(again, id);
        ASSERT_EQ(ota_sqlite_ops.outbox_pop(s, id, &err), 0) << err.reason;
        EXPECT_EQ(outbox_count(), 2u - i);
        // A repeated pop is harmless.
        EXPECT_EQ(ota_sqlite_ops.outbox_pop(s, id, &err), 0) << err.reason;
    }
    struct ota_report got;
    int64_t id;
    EXPECT_EQ(ota_sqlite_ops.outbox_peek(s, &got, &id, &err), -ENOENT);
    // Ids are never reused after the outbox empties (AUTOINCREMENT).
    struct ota_report r = make_report(9);
    ASSERT_EQ(save(j, &r), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.outbox_peek(s, &got, &id, &err), 0) << err.reason;
    EXPECT_GT(id, prev_id);
}

TEST_F(StoreTest, KeyValueSettings)
{
    open_store();
    char buf[64];
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "device_token", "tok-123", &err), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "app_version", "1.0.0", &err), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.kv_get(s, "device_token", buf, sizeof(buf), &err), 0);
    EXPECT_STREQ(buf, "tok-123");
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "device_token", "tok-456", &err), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.kv_get(s, "device_token", buf, sizeof(buf), &err), 0);
    EXPECT_STREQ(buf, "tok-456");
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "empty", "", &err), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.kv_get(s, "empty", buf, sizeof(buf), &err), 0);
    EXPECT_STREQ(buf, "");
    // Too small a buffer: -ERANGE and the buffer untouched.
    char small[4] = "xyz";
    ota_err_clear(&err);
    EXPECT_EQ(ota_sqlite_ops.kv_get(s, "device_token", small, sizeof(small), &err), -ERANGE);
    EXPECT_STREQ(small, "xyz");
    EXPECT_NE(strstr(err.reason, "device_token"), nullptr) << err.reason;
    char exact[8];
    EXPECT_EQ(ota_sqlite_ops.kv_get(s, "device_token", exact, sizeof(exact), &err), 0);
    EXPECT_STREQ(exact, "tok-456");
    // NULL removes.
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "device_token", nullptr, &err), 0) << err.reason;
    EXPECT_EQ(ota_sqlite_ops.kv_get(s, "device_token", buf, sizeof(buf), &err), -ENOENT);
    ASSERT_EQ(ota_sqlite_ops.kv_get(s, "app_version", buf, sizeof(buf), &err), 0);
    EXPECT_STREQ(buf, "1.0.0");
    EXPECT_EQ(ota_sqlite_ops.kv_set(s, nullptr, "x", &err), -EINVAL);
}

TEST_F(StoreTest, HistoryIsNewestFirstAndCapped)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_IDLE, 0);
    for (int i = 0; i < 5; i++) {
        struct ota_history h = make_history(i);
        ASSERT_EQ(save(j, nullptr, &h), 0) << err.reason;
    }
    struct ota_history got[10];
    size_t n = 0;
    ASSERT_EQ(ota_sqlite_history(s, got, 10, &n, &err), 0) << err.reason;
    ASSERT_EQ(n, 5u);
    for (int i = 0; i < 5; i++) {
        struct ota_history want = make_history(4 - i);
        EXPECT_EQ(memcmp(&got[i], &want, sizeof(want)), 0) << "entry " << i;
    }
    ASSERT_EQ(ota_sqlite_history(s, got, 2, &n, &err), 0) << err.reason;
    ASSERT_EQ(n, 2u);
    EXPECT_STREQ(got[0].update_id, "upd-4");
    EXPECT_STREQ(got[1].update_id, "upd-3");
    n = 99;
    ASSERT_EQ(ota_sqlite_history(s, got, 0, &n, &err), 0);
    EXPECT_EQ(n, 0u);
}

TEST_F(StoreTest, ReopenKeepsEverything)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_REBOOTING, 3);
    struct ota_report r = make_report(3);
    struct ota_history h = make_history(3);
    ASSERT_EQ(save(j, &r, &h), 0) << err.reason;
    ASSERT_EQ(ota_sqlite_ops.kv_set(s, "device_token", "tok", &err), 0) << err.reason;
    close_store();

    open_store();
    EXPECT_EQ(ota_sqlite_reset_reason(s), nullptr);
    struct ota_journal got;
    ASSERT_EQ(ota_sqlite_ops.load(s, &got, &err), 0) << err.reason;
    EXPECT_EQ(memcmp(&got, &j, sizeof(j)), 0);
    EXPECT_EQ(outbox_count(), 1u);
    EXPECT_EQ(history_count(), 1u);
    char buf[16];
    ASSERT_EQ(ota_sqlite_ops.kv_get(s, "device_token", buf, sizeof(buf), &err), 0);
    EXPECT_STREQ(buf, "tok");
    EXPECT_FALSE(fs::exists(path + ".broken"));
}

TEST_F(StoreTest, CommittedSaveSurvivesWithoutClose)
{
    // A crash right after save(): the connection is never closed, so the data
    // is only in the WAL. A second connection (another process after the
    // "reboot") must see it.
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_SWITCHING, 4);
    ASSERT_EQ(save(j), 0) << err.reason;
    EXPECT_TRUE(fs::exists(path + "-wal"));
    struct ota_sqlite *second = nullptr;
    ASSERT_EQ(ota_sqlite_open(path.c_str(), &second, &err), 0) << err.reason;
    struct ota_journal got;
    ASSERT_EQ(ota_sqlite_ops.load(second, &got, &err), 0) << err.reason;
    EXPECT_EQ(got.state, OTA_STATE_SWITCHING);
    ota_sqlite_close(second);
}

TEST_F(StoreTest, GarbageFileIsMovedAside)
{
    std::string garbage;
    for (int i = 0; i < 8192; i++)
        garbage.push_back((char)(i * 7919 % 251));
    write_file(path, garbage);
    expect_reset(nullptr);
    EXPECT_EQ(read_file(path + ".broken"), garbage);
}

TEST_F(StoreTest, GarbageWithWalMovesTheWalToo)
{
    write_file(path, std::string(4096, 'x'));
    write_file(path + "-wal", "not a wal");
    write_file(path + "-shm", std::string(32768, '\0'));
    expect_reset(nullptr);
    EXPECT_EQ(read_file(path + ".broken-wal"), "not a wal");
    EXPECT_TRUE(fs::exists(path + ".broken-shm"));
}

TEST_F(StoreTest, StaleBrokenWalOfAnEarlierResetIsRemoved)
{
    write_file(path + ".broken-wal", "old wal");
    write_file(path + ".broken-shm", "old shm");
    write_file(path, std::string(4096, 'y'));
    expect_reset(nullptr);
    EXPECT_FALSE(fs::exists(path + ".broken-wal"));
    EXPECT_FALSE(fs::exists(path + ".broken-shm"));
    EXPECT_EQ(read_file(path + ".broken"), std::string(4096, 'y'));
}

TEST_F(StoreTest, TruncatedDatabaseIsMovedAside)
{
    make_big_database();
    fs::resize_file(path, fs::file_size(path) / 2);
    expect_reset(nullptr);
}

TEST_F(StoreTest, TruncatedHeaderIsMovedAside)
{
    make_big_database();
    fs::resize_file(path, 50);
    expect_reset(nullptr);
}

TEST_F(StoreTest, CorruptPageFailsQuickCheck)
{
    make_big_database();
    size_t size = fs::file_size(path);
    std::string data = read_file(path);
    size_t page = 4096;
    size_t mid = (size / page / 2) * page;
    for (size_t i = 0; i < page; i++)
        data[mid + i] = (char)(0xa5 ^ (i * 13));
    write_file(path, data);
    expect_reset("quick_check");
}

TEST_F(StoreTest, SchemaFromTheFutureIsMovedAside)
{
    open_store();
    close_store();
    raw_exec(path, "PRAGMA user_version = 99");
    expect_reset("schema version 99");
}

TEST_F(StoreTest, ForeignDatabaseIsMovedAside)
{
    raw_exec(path, "CREATE TABLE journal (x); PRAGMA user_version = 1;");
    expect_reset("schema");
}

TEST_F(StoreTest, CorruptJournalRowIsEbadmsg)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_INSTALLING, 1);
    ASSERT_EQ(save(j), 0) << err.reason;
    raw_exec(path, "UPDATE journal SET state = 'NAPPING'");
    struct ota_journal got;
    EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), -EBADMSG);
    EXPECT_NE(strstr(err.reason, "NAPPING"), nullptr) << err.reason;
    raw_exec(path, "UPDATE journal SET state = 'IDLE', prefix_sha256 = 'zz'");
    ota_err_clear(&err);
    EXPECT_EQ(ota_sqlite_ops.load(s, &got, &err), -EBADMSG);
    EXPECT_NE(strstr(err.reason, "prefix_sha256"), nullptr) << err.reason;
}

TEST_F(StoreTest, OversizedOutboxAndHistoryFieldsAreEbadmsg)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_IDLE, 1);
    struct ota_report r = make_report(1);
    struct ota_history h = make_history(1);
    ASSERT_EQ(save(j, &r, &h), 0) << err.reason;
    raw_exec(path, "UPDATE outbox SET kind = 'much-too-long'; "
                   "UPDATE history SET status = 'much-too-long-for-status'");
    struct ota_report got;
    int64_t id;
    EXPECT_EQ(ota_sqlite_ops.outbox_peek(s, &got, &id, &err), -EBADMSG);
    struct ota_history hist[2];
    size_t n = 99;
    EXPECT_EQ(ota_sqlite_history(s, hist, 2, &n, &err), -EBADMSG);
    EXPECT_EQ(n, 99u);
}

TEST_F(StoreTest, UnopenablePathIsAnErrorNotAReset)
{
    std::string missing = dir + "/no/such/dir/agent.db";
    struct ota_sqlite *x = nullptr;
    EXPECT_EQ(ota_sqlite_open(missing.c_str(), &x, &err), -ENOENT) << err.reason;
    EXPECT_EQ(x, nullptr);
    EXPECT_NE(strstr(err.reason, "agent.db"), nullptr) << err.reason;
    EXPECT_FALSE(fs::exists(missing + ".broken"));
}

TEST_F(StoreTest, CloseAcceptsNull)
{
    ota_sqlite_close(nullptr);
    EXPECT_EQ(ota_sqlite_reset_reason(nullptr), nullptr);
}

} // namespace

// ---- read only (ota-agent status) ------------------------------------------

namespace
{

// open_ro reads what open() wrote, and writes nothing.
TEST_F(StoreTest, ReadOnlyReadsAndChangesNothing)
{
    open_store();
    struct ota_journal j = make_journal(OTA_STATE_DOWNLOADING, 3);
    struct ota_history h = make_history(3);
    ASSERT_EQ(save(j, nullptr, &h), 0) << err.reason;
    close_store();
    std::string before = read_file(path);
    struct ota_sqlite *ro = nullptr;
    ASSERT_EQ(ota_sqlite_open_ro(path.c_str(), &ro, &err), 0) << err.reason;
    struct ota_journal got;
    ASSERT_EQ(ota_sqlite_ops.load(ro, &got, &err), 0) << err.reason;
    EXPECT_EQ(got.state, OTA_STATE_DOWNLOADING);
    struct ota_history hist[4];
    size_t n = 0;
    ASSERT_EQ(ota_sqlite_history(ro, hist, 4, &n, &err), 0) << err.reason;
    EXPECT_EQ(n, 1u);
    EXPECT_LT(ota_sqlite_ops.save(ro, &j, nullptr, nullptr, &err), 0); // a read-only handle
    ota_sqlite_close(ro);
    EXPECT_EQ(read_file(path), before);
}

// No database yet: an empty store, and no file made.
TEST_F(StoreTest, ReadOnlyWithoutADatabaseCreatesNone)
{
    struct ota_sqlite *ro = nullptr;
    ASSERT_EQ(ota_sqlite_open_ro(path.c_str(), &ro, &err), 0) << err.reason;
    struct ota_journal got;
    EXPECT_EQ(ota_sqlite_ops.load(ro, &got, &err), -ENOENT);
    size_t n = 9;
    ASSERT_EQ(ota_sqlite_outbox_count(ro, &n, &err), 0) << err.reason;
    EXPECT_EQ(n, 0u);
    ota_sqlite_close(ro);
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + "-wal"));
}

// A broken database, one from the future and an older one are reported and
// left exactly as they are: repairing them is update's (open()'s) job.
TEST_F(StoreTest, ReadOnlyReportsABrokenDatabaseAndMovesNothing)
{
    std::string garbage;
    for (int i = 0; i < 8192; i++)
        garbage.push_back((char)(i * 7919 % 251));
    write_file(path, garbage);
    write_file(path + "-wal", "not a wal");
    struct ota_sqlite *ro = nullptr;
    EXPECT_EQ(ota_sqlite_open_ro(path.c_str(), &ro, &err), -EBADMSG);
    EXPECT_EQ(ro, nullptr);
    EXPECT_NE(strstr(err.reason, path.c_str()), nullptr) << err.reason;
    EXPECT_NE(strstr(err.reason, "left as it is"), nullptr) << err.reason;
    EXPECT_EQ(read_file(path), garbage);
    EXPECT_EQ(read_file(path + "-wal"), "not a wal");
    EXPECT_FALSE(fs::exists(path + ".broken"));

    fs::remove(path);
    fs::remove(path + "-wal");
    fs::remove(path + "-shm");
    open_store();
    close_store();
    raw_exec(path, "PRAGMA user_version = 99");
    ota_err_clear(&err);
    EXPECT_EQ(ota_sqlite_open_ro(path.c_str(), &ro, &err), -EBADMSG);
    EXPECT_NE(strstr(err.reason, "schema version 99"), nullptr) << err.reason;
    raw_exec(path, "PRAGMA user_version = 1");
    ota_err_clear(&err);
    EXPECT_EQ(ota_sqlite_open_ro(path.c_str(), &ro, &err), -EBADMSG);
    EXPECT_NE(strstr(err.reason, "older"), nullptr) << err.reason;
    EXPECT_EQ(raw_query(path, "PRAGMA user_version"), "1"); // not migrated
    EXPECT_FALSE(fs::exists(path + ".broken"));
}

} // namespace
