// What the block-level tests share: a command's output and status.
#ifndef OTASIM_BLK_TEST_UTIL_H
#define OTASIM_BLK_TEST_UTIL_H

#include <cstdio>
#include <string>

// Runs cmd through the shell, stderr with stdout; its output, and its wait
// status into *status when given.
inline std::string blk_run(const std::string &cmd, int *status = nullptr)
{
    std::string out;
    FILE *p = popen((cmd + " 2>&1").c_str(), "r");
    char buf[512];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof(buf), p)) > 0)
        out.append(buf, n);
    int st = p ? pclose(p) : -1;
    if (status)
        *status = st;
    return out;
}

#endif
