/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

static int parse_u64_prefix(const char *s, uint64_t *ret, char **end)
{
        unsigned long long v;

        if (!s || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
        static const struct { char suffix; unsigned shift; } units[] = {
                { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 }, { 'P', 50 },
        };
        uint64_t v;
        char *end;
        unsigned shift = 0;
        int r;

        r = parse_u64_prefix(s, &v, &end);
        if (r < 0)
                return r;
        if (*end) {
                size_t i;

                for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                        if (toupper((unsigned char) *end) == units[i].suffix)
                                break;
                if (i == sizeof(units) / sizeof(units[0]))
                        return -EINVAL;
                shift = units[i].shift;
                end++;
                if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
                        end += strlen(end);
                if (*end)
                        return -EINVAL;
        }
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

int parse_uint32(const char *s, uint32_t *ret)
{
        uint64_t v;
        char *end;
        int r;

        r = parse_u64_prefix(s, &v, &end);
        if (r < 0)
                return r;
        if (*end)
                return -EINVAL;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_auto_on_off(const char *s)
{
        static const char *const words[] = { "auto", "on", "off" };

        for (int i = 0; s && i < 3; i++)
                if (strcmp(s, words[i]) == 0)
                        return i;
        return -EINVAL;
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
        static const char suffixes[] = "KMGTP";
        int i;

        for (i = (int) sizeof(suffixes) - 2; i >= 0; i--) {
                uint64_t unit = UINT64_C(1) << (10 * (i + 1));

                if (bytes < unit)
                        continue;
                if (bytes % unit == 0)
                        snprintf(buf, len, "%" PRIu64 "%c", bytes / unit, suffixes[i]);
                else
                        snprintf(buf, len, "%.1f%c", (double) bytes / (double) unit, suffixes[i]);
                return buf;
        }
        snprintf(buf, len, "%" PRIu64, bytes);
        return buf;
}

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

size_t device_name_user_len(const char *s)
{
        const char *colon = strchr(s, ':');

        return colon ? (size_t) (colon - s) : 0;
}

bool device_name_is_valid(const char *s)
{
        size_t n = strlen(s), u = device_name_user_len(s);

        if (n == 0 || n > DEVICE_NAME_MAX)
                return false;
        if (u > 0) {
                /* USER:NAME: a user name as useradd makes them, then a name as root's. */
                if (strspn(s, NAME_CHARS) != u || s[0] == '-')
                        return false;
                s += u + 1;
                n -= u + 1;
        } else if (s[0] == ':')
                return false;
        return n > 0 && s[0] != '.' && s[0] != '-' && strspn(s, NAME_CHARS) == n;
}
