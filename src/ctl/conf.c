/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

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

/* Returns NULL when the value is fine, else what is wrong with it (in why). */
static const char *conf_set(struct ublk_conf *c, int index, const char *v, char *why, size_t why_len)
{
        char **s = index < 0 ? &c->target : &c->values[index];
        union ublk_opt_value value;

        if (!*v)
                return "must not be empty";
        if (index >= 0) {
                const struct ublk_option *o = ublk_options[index];

                if (o->kind == UBLK_OPT_FD && v[0] != '/')
                        return "must be an absolute path";
                if (ublk_option_parse(o, v, &value, why, why_len) < 0)
                        return why;
        }
        *s = strdup(v);
        return *s ? NULL : "cannot be stored (out of memory)";
}

/* "target" is -1, an option its index in ublk_options[]; -2 for none. */
static int conf_key(const char *key)
{
        if (!strcmp(key, "target"))
                return -1;
        for (int i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (!strcmp(key, ublk_options[i]->key) && !(ublk_options[i]->flags & UBLK_OPT_NO_CONF))
                        return i;
        return -2;
}

int ublk_conf_parse(FILE *f, const char *fname, struct ublk_conf *conf, char *err, size_t err_len)
{
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        bool seen[UBLK_CONF_OPTIONS_MAX + 1] = {};
        unsigned n = 0;

        *conf = (struct ublk_conf) {};
        while ((len = getline(&line, &cap, f)) >= 0) {
                char *key, *value, *eq;
                const char *why;
                char buf[128];
                int k;

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
                k = conf_key(key);
                if (k == -2) {
                        snprintf(err, err_len, "%s:%u: unknown key '%.64s' (see ublk.conf(5))", fname, n, key);
                        goto fail;
                }
                if (seen[k + 1]) {
                        snprintf(err, err_len, "%s:%u: '%s' given twice", fname, n, key);
                        goto fail;
                }
                seen[k + 1] = true;
                why = conf_set(conf, k, value, buf, sizeof(buf));
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
                char targets[128];

                snprintf(err, err_len, "%s: no 'target' (%s)", fname,
                         ublk_target_names(targets, sizeof(targets)));
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
        for (size_t i = 0; i < UBLK_CONF_OPTIONS_MAX; i++)
                free(conf->values[i]);
        *conf = (struct ublk_conf) {};
}

const char *ublk_conf_get(const struct ublk_conf *conf, const char *key)
{
        int k = conf_key(key);

        return k >= 0 ? conf->values[k] : NULL;
}
