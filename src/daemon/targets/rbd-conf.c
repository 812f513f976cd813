/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "rbd-conf.h"

/* Where the monitors are, who the cluster is, how to authenticate and encrypt, the client cache:
 * none names a file. */
const char *const rbd_conf_user_keys[] = {
        "mon_host", "fsid",
        "auth_client_required", "auth_supported",
        "ms_mode", "ms_client_mode", "ms_mon_client_mode", "ms_bind_ipv4", "ms_bind_ipv6",
        "rbd_cache", "rbd_cache_size", "rbd_cache_max_dirty", "rbd_cache_target_dirty",
        "rbd_cache_max_dirty_age", "rbd_cache_writethrough_until_flush", "rbd_cache_policy",
        "rbd_read_from_replica_policy",
        NULL,
};

#define LINE_MAX_LEN 4096

static bool key_taken(const char *key)
{
        for (size_t i = 0; rbd_conf_user_keys[i]; i++)
                if (strcmp(rbd_conf_user_keys[i], key) == 0)
                        return true;
        return false;
}

static char *strip(char *s)
{
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                *--e = 0;
        return s;
}

/* 0: not a section we read; 1: [global]; 2: [client]; 3: [client.ID]. */
static int section_level(const char *name, const char *id)
{
        if (strcmp(name, "global") == 0)
                return 1;
        if (strcmp(name, "client") == 0)
                return 2;
        if (strncmp(name, "client.", 7) == 0 && strcmp(name + 7, id) == 0)
                return 3;
        return 0;
}

/* One pass: the keys of the sections of level want. */
static int parse_level(const char *text, const char *id, int want,
                       int (*set)(void *arg, const char *key, const char *value), void *arg,
                       unsigned *ignored, char *why, size_t why_len)
{
        char line[LINE_MAX_LEN];
        int level = 0, r;
        unsigned lineno = 0;

        for (const char *p = text; *p;) {
                size_t n = strcspn(p, "\n");
                char *s, *eq, *key, *value;

                lineno++;
                if (n >= sizeof(line)) {
                        snprintf(why, why_len, "line %u is longer than %d bytes", lineno, LINE_MAX_LEN - 1);
                        return -EINVAL;
                }
                memcpy(line, p, n);
                line[n] = 0;
                p += n + (p[n] == '\n');

                /* Comments: '#' or ';' anywhere (no value we take holds either). */
                line[strcspn(line, "#;")] = 0;
                s = strip(line);
                if (!*s)
                        continue;
                for (const char *c = s; *c; c++)
                        if ((unsigned char) *c < 0x20 && *c != '\t') {
                                snprintf(why, why_len, "line %u holds a control character", lineno);
                                return -EINVAL;
                        }
                if (*s == '[') {
                        char *end = strchr(s, ']');

                        if (!end || *strip(end + 1)) {
                                snprintf(why, why_len, "line %u: a section is '[NAME]'", lineno);
                                return -EINVAL;
                        }
                        *end = 0;
                        level = section_level(strip(s + 1), id);
                        continue;
                }
                eq = strchr(s, '=');
                if (!eq) {
                        snprintf(why, why_len, "line %u: expected 'key = value'", lineno);
                        return -EINVAL;
                }
                *eq = 0;
                key = strip(s);
                value = strip(eq + 1);
                if (!*key) {
                        snprintf(why, why_len, "line %u: expected 'key = value'", lineno);
                        return -EINVAL;
                }
                if (level != want)
                        continue;
                for (char *c = key; *c; c++)
                        *c = *c == ' ' || *c == '-' ? '_' : (char) tolower((unsigned char) *c);
                /* "quoted" values */
                n = strlen(value);
                if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
                        value[n - 1] = 0;
                        value++;
                }
                if (!key_taken(key)) {
                        (*ignored)++;
                        continue;
                }
                r = set(arg, key, value);
                if (r < 0) {
                        snprintf(why, why_len, "line %u: librados refuses %s = %s", lineno, key, value);
                        return r;
                }
        }
        return 0;
}

int rbd_conf_parse_user(const char *text, const char *id,
                        int (*set)(void *arg, const char *key, const char *value), void *arg,
                        unsigned *ignored, char *why, size_t why_len)
{
        int r;

        *ignored = 0;
        why[0] = 0;
        for (int level = 1; level <= 3; level++) {
                r = parse_level(text, id, level, set, arg, ignored, why, why_len);
                if (r < 0)
                        return r;
        }
        return 0;
}
