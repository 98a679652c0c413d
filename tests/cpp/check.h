// The assertions of the C++ suites (tests/cpp, tests/unreal): CHECK counts and prints
// file:line on failure; finish() prints "N passed, M failed" and answers the exit code.
#pragma once

#include <cstdio>

inline int g_passed = 0;
inline int g_failed = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            ++g_passed;                                                              \
        } else {                                                                     \
            ++g_failed;                                                              \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/// Print the totals (after `label`) and answer the process exit code.
inline int finish(const char *label) {
    std::printf("%s%d passed, %d failed\n", label, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
