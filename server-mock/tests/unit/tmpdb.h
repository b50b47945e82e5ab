// A SQLite path for a store under test, and its removal with the WAL files
// (the server's unit tests that open a store of their own).
#ifndef OTASRV_TEST_TMPDB_H
#define OTASRV_TEST_TMPDB_H

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <unistd.h>

inline std::string temp_db()
{
    char tmpl[] = "/tmp/otasrv-store-XXXXXX";
    int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    close(fd);
    unlink(tmpl);
    return tmpl;
}

inline void remove_db(const std::string &p)
{
    unlink(p.c_str());
    unlink((p + "-wal").c_str());
    unlink((p + "-shm").c_str());
}

#endif
