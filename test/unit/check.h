/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A host unit test's checks: CHECK(cond, format, ...) counts a pass, or a failure that it
 * prints with the format's message; main() ends with "return check_summary();", which prints
 * "N passed, N failed" (the line test/README.md promises) and is the exit status.
 */

#include <stdio.h>

static unsigned check_passed, check_failed;

#define CHECK(cond, ...)                                                \
        do {                                                            \
                if (cond)                                               \
                        check_passed++;                                 \
                else {                                                  \
                        check_failed++;                                 \
                        fprintf(stderr, "FAILED: " __VA_ARGS__);        \
                        fputc('\n', stderr);                            \
                }                                                       \
        } while (0)

static inline int check_summary(void)
{
        printf("%u passed, %u failed\n", check_passed, check_failed);
        return check_failed ? 1 : 0;
}
