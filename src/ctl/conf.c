/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "parse.h"

#define CONF_LINE_MAX 4096

static char *strip(char *s)
{
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = 0;
        return s;
}

static int parse_bool(const char *s, bool *ret)
{
        if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "1"))
                *ret = true;
        else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

enum conf_key {
        KEY_TARGET,
        KEY_BACKING,
        KEY_SIZE,
        KEY_QUEUES,
        KEY_DEPTH,
        KEY_LBS,
        KEY_READ_ONLY,
        KEY_OFFSET,
        KEY_DIRECT_IO,
        KEY_ZERO_COPY,
        KEY_RECOVERY,
        /* nbd's (issue 31: to move onto the targets' option schema) */
        KEY_NBD_URI,
        KEY_NBD_CONNECT_TIMEOUT,
        KEY_NBD_RECONNECT_TIMEOUT,
        KEY_NBD_TLS_PSK_FILE,
        _KEY_MAX,
};

static const char *const key_names[_KEY_MAX] = {
        [KEY_TARGET] = "target",
        [KEY_BACKING] = "backing",
        [KEY_SIZE] = "size",
        [KEY_QUEUES] = "queues",
        [KEY_DEPTH] = "depth",
        [KEY_LBS] = "logical-block-size",
        [KEY_READ_ONLY] = "read-only",
        [KEY_OFFSET] = "offset",
        [KEY_DIRECT_IO] = "direct-io",
        [KEY_ZERO_COPY] = "zero-copy",
        [KEY_RECOVERY] = "recovery",
        [KEY_NBD_URI] = "uri",
        [KEY_NBD_CONNECT_TIMEOUT] = "connect-timeout",
        [KEY_NBD_RECONNECT_TIMEOUT] = "reconnect-timeout",
        [KEY_NBD_TLS_PSK_FILE] = "tls-psk-file",
};

/* Returns NULL when the value is fine, else what is wrong with it. */
static const char *conf_set(struct ublk_conf *c, enum conf_key key, const char *v)
{
        char **s = NULL;

        switch (key) {
        case KEY_TARGET:
                s = &c->target;
                break;
        case KEY_BACKING:
                if (v[0] != '/')
                        return "must be an absolute path";
                s = &c->backing;
                break;
        case KEY_SIZE:
                return parse_size(v, &c->size) < 0 || c->size == 0 ? "must be a size such as 10G or 512M" : NULL;
        case KEY_OFFSET:
                c->has_offset = true;
                return parse_size(v, &c->offset) < 0 ? "must be a size such as 0 or 1M" : NULL;
        case KEY_QUEUES:
                return parse_uint32(v, &c->queues) < 0 || c->queues == 0 ? "must be a positive number" : NULL;
        case KEY_DEPTH:
                return parse_uint32(v, &c->depth) < 0 || c->depth == 0 ? "must be a positive number" : NULL;
        case KEY_LBS:
                return parse_uint32(v, &c->logical_block_size) < 0 || c->logical_block_size == 0 ?
                        "must be 512, 1024, 2048 or 4096" : NULL;
        case KEY_READ_ONLY:
                return parse_bool(v, &c->read_only) < 0 ? "must be yes or no" : NULL;
        case KEY_DIRECT_IO:
        case KEY_ZERO_COPY:
                if (parse_auto_on_off(v) < 0)
                        return "must be auto, on or off";
                s = key == KEY_DIRECT_IO ? &c->direct_io : &c->zero_copy;
                break;
        case KEY_RECOVERY:
                if (strcmp(v, "reissue") != 0 && strcmp(v, "fail-io") != 0 && strcmp(v, "none") != 0)
                        return "must be reissue, fail-io or none";
                s = &c->recovery;
                break;
        case KEY_NBD_URI:
                s = &c->nbd_uri;
                break;
        case KEY_NBD_TLS_PSK_FILE:
                if (v[0] != '/')
                        return "must be an absolute path";
                s = &c->nbd_tls_psk_file;
                break;
        case KEY_NBD_CONNECT_TIMEOUT:
                c->has_nbd_connect_timeout = true;
                return parse_uint32(v, &c->nbd_connect_timeout) < 0 || c->nbd_connect_timeout == 0 ?
                        "must be a positive number of seconds" : NULL;
        case KEY_NBD_RECONNECT_TIMEOUT:
                c->has_nbd_reconnect_timeout = true;
                return parse_uint32(v, &c->nbd_reconnect_timeout) < 0 ? "must be a number of seconds" : NULL;
        default:
                return "is not handled";
        }
        if (!*v)
                return "must not be empty";
        *s = strdup(v);
        return *s ? NULL : "cannot be stored (out of memory)";
}

int ublk_conf_parse(FILE *f, const char *fname, struct ublk_conf *conf, char *err, size_t err_len)
{
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        bool seen[_KEY_MAX] = {};
        unsigned n = 0;

        *conf = (struct ublk_conf) {};
        while ((len = getline(&line, &cap, f)) >= 0) {
                char *key, *value, *eq;
                const char *why;
                unsigned k;

                n++;
                if (len - (len > 0 && line[len - 1] == '\n') > CONF_LINE_MAX) {
                        snprintf(err, err_len, "%s:%u: line longer than %d characters", fname, n, CONF_LINE_MAX);
                        goto fail;
                }
                if ((size_t) len != strlen(line)) {
                        snprintf(err, err_len, "%s:%u: NUL byte in line", fname, n);
                        goto fail;
                }
                key = strip(line);
                if (!*key || *key == '#')
                        continue;
                eq = strchr(key, '=');
                if (!eq) {
                        snprintf(err, err_len, "%s:%u: expected 'key = value'", fname, n);
                        goto fail;
                }
                *eq = 0;
                value = strip(eq + 1);
                key = strip(key);
                for (k = 0; k < _KEY_MAX; k++)
                        if (!strcmp(key, key_names[k]))
                                break;
                if (k == _KEY_MAX) {
                        snprintf(err, err_len, "%s:%u: unknown key '%.64s' (see ublk.conf(5))", fname, n, key);
                        goto fail;
                }
                if (seen[k]) {
                        snprintf(err, err_len, "%s:%u: '%s' given twice", fname, n, key);
                        goto fail;
                }
                seen[k] = true;
                why = conf_set(conf, (enum conf_key) k, value);
                if (why) {
                        snprintf(err, err_len, "%s:%u: %s %s, not '%.64s'", fname, n, key, why, value);
                        goto fail;
                }
        }
        if (ferror(f)) {
                snprintf(err, err_len, "%s: read error", fname);
                goto fail;
        }
        if (!conf->target) {
                snprintf(err, err_len, "%s: no 'target' (null, loop or nbd)", fname);
                goto fail;
        }
        free(line);
        return 0;

fail:
        free(line);
        ublk_conf_free(conf);
        return -EINVAL;
}

void ublk_conf_free(struct ublk_conf *conf)
{
        free(conf->target);
        free(conf->backing);
        free(conf->direct_io);
        free(conf->zero_copy);
        free(conf->recovery);
        free(conf->nbd_uri);
        free(conf->nbd_tls_psk_file);
        *conf = (struct ublk_conf) {};
}
