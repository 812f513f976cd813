/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host unit test of src/shared/parse.c: the parsers that see user input first. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

static unsigned passed, failed;

#define CHECK(cond) do {                                                        \
                if (cond)                                                       \
                        passed++;                                               \
                else {                                                          \
                        failed++;                                               \
                        fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
                }                                                               \
        } while (0)

static void check_size(const char *s, int expect_r, uint64_t expect)
{
        uint64_t v = 0xdeadbeef;
        int r = parse_size(s, &v);

        if (r != expect_r || (r == 0 && v != expect)) {
                failed++;
                fprintf(stderr, "FAILED: parse_size(\"%s\") = %d, %" PRIu64 "; want %d, %" PRIu64 "\n",
                        s, r, v, expect_r, expect);
        } else
                passed++;
}

int main(void)
{
        uint32_t u;
        char buf[32], name[66];

        check_size("0", 0, 0);
        check_size("4096", 0, 4096);
        check_size("1K", 0, 1024);
        check_size("1k", 0, 1024);
        check_size("512M", 0, 512ull << 20);
        check_size("1G", 0, 1ull << 30);
        check_size("1GiB", 0, 1ull << 30);
        check_size("2GB", 0, 2ull << 30);
        check_size("1T", 0, 1ull << 40);
        check_size("16383P", 0, 16383ull << 50);
        check_size("16384P", -ERANGE, 0);
        check_size("18446744073709551615", 0, UINT64_MAX);
        check_size("18446744073709551616", -ERANGE, 0);
        check_size("", -EINVAL, 0);
        check_size("G", -EINVAL, 0);
        check_size("-1", -EINVAL, 0);
        check_size("+1", -EINVAL, 0);
        check_size(" 1", -EINVAL, 0);
        check_size("1 ", -EINVAL, 0);
        check_size("1X", -EINVAL, 0);
        check_size("1Gx", -EINVAL, 0);
        check_size("1.5G", -EINVAL, 0);
        check_size("0x10", -EINVAL, 0);

        CHECK(parse_uint32("0", &u) == 0 && u == 0);
        CHECK(parse_uint32("4294967295", &u) == 0 && u == UINT32_MAX);
        CHECK(parse_uint32("4294967296", &u) == -ERANGE);
        CHECK(parse_uint32("12a", &u) == -EINVAL);
        CHECK(parse_uint32("", &u) == -EINVAL);
        CHECK(parse_uint32(NULL, &u) == -EINVAL);
        CHECK(parse_uint32("-3", &u) == -EINVAL);

        CHECK(parse_auto_on_off("auto") == 0);
        CHECK(parse_auto_on_off("on") == 1);
        CHECK(parse_auto_on_off("off") == 2);
        CHECK(parse_auto_on_off("On") == -EINVAL);
        CHECK(parse_auto_on_off("") == -EINVAL);
        CHECK(parse_auto_on_off(NULL) == -EINVAL);

        CHECK(strcmp(format_size(1ull << 30, buf, sizeof(buf)), "1G") == 0);
        CHECK(strcmp(format_size(3ull << 29, buf, sizeof(buf)), "1.5G") == 0);
        CHECK(strcmp(format_size(4096, buf, sizeof(buf)), "4K") == 0);
        CHECK(strcmp(format_size(1000, buf, sizeof(buf)), "1000") == 0);
        CHECK(strcmp(format_size(0, buf, sizeof(buf)), "0") == 0);

        /* Device names: root's have no ':', a user's are USER:NAME. */
        CHECK(device_name_is_valid("data") && device_name_user_len("data") == 0);
        CHECK(device_name_is_valid("srv-data") && device_name_user_len("srv-data") == 0);
        CHECK(device_name_is_valid("srv:data") && device_name_user_len("srv:data") == 3);
        CHECK(device_name_is_valid("foo-bar:disk") && device_name_user_len("foo-bar:disk") == 7);
        CHECK(!device_name_is_valid(":data"));
        CHECK(!device_name_is_valid("srv:"));
        CHECK(!device_name_is_valid("srv:a:b"));
        CHECK(!device_name_is_valid("srv:.x"));
        CHECK(!device_name_is_valid("-srv:x"));
        CHECK(!device_name_is_valid("s/v:x"));
        CHECK(!device_name_is_valid("-data"));
        CHECK(!device_name_is_valid(".data"));
        CHECK(!device_name_is_valid(""));
        memset(name, 'a', 64);
        name[64] = 0;
        CHECK(device_name_is_valid(name));
        name[3] = ':';
        CHECK(device_name_is_valid(name) && device_name_user_len(name) == 3);
        name[64] = 'a';
        name[65] = 0;
        CHECK(!device_name_is_valid(name));

        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
