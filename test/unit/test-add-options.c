/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Host unit test of the options of Add (src/shared/add-options.c) and of their users: each
 * kind parses its valid text forms and refuses bad ones with a message; values round-trip
 * through the state file's form; NAME.conf takes every option but those flagged otherwise;
 * each target's ops (targets/target.h) keeps and gives back every option of its own; the bash
 * completion's tables are the schema's; the man pages describe every option and target.
 *
 *     test-add-options COMPLETION-FILE DBUS-MAN-PAGE CONF-MAN-PAGE UBLKCTL-MAN-PAGE
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "add-options.h"
#include "config.h"
#include "check.h"
#include "conf.h"
#include "device.h"
#include "macro.h"
#include "target.h"

/* Options of kinds no target has yet (a future nbd's), to test the kinds themselves. */
static const struct ublk_option opt_uri = { "uri", UBLK_OPT_STRING, 0, 0, "URI", NULL, "test" };
static const struct ublk_option opt_timeout = {
        "reconnect-timeout", UBLK_OPT_SECONDS, UBLK_OPT_NONZERO, 0, "SECONDS", NULL, "test",
};
static const struct ublk_option opt_sockets = { "sockets", UBLK_OPT_FDS, 0, 0, "FDS", NULL, "test" };

static const struct {
        const struct ublk_option *o;    /* NULL: ublk_option_find(key) */
        const char *key;
        const char *text;
        bool ok;
        uint64_t u;                     /* expected: u, b (0/1), or the index of an enum */
        const char *why;                /* part of the message for a bad one */
} cases[] = {
        { NULL, "size", "1G", true, 1ULL << 30 },
        { NULL, "size", "4096", true, 4096 },
        { NULL, "size", "0", false, 0, "must be a size such as 10G" },
        { NULL, "size", "1X", false, 0, "must be a size" },
        { NULL, "size", "-1", false, 0, "must be a size" },
        { NULL, "offset", "0", true, 0 },
        { NULL, "offset", "1M", true, 1 << 20 },
        { NULL, "offset", "x", false, 0, "such as 0 or 1M" },
        { NULL, "queues", "4", true, 4 },
        { NULL, "queues", "0", false, 0, "must be a positive number" },
        { NULL, "queues", "4294967296", false, 0, "must be a positive number" },
        { NULL, "depth", " 4", false, 0, "must be a positive number" },
        { NULL, "logical-block-size", "4096", true, 4096 },
        { NULL, "read-only", "yes", true, 1 },
        { NULL, "read-only", "off", true, 0 },
        { NULL, "read-only", "maybe", false, 0, "must be yes or no" },
        { NULL, "start", "no", true, 0 },
        { NULL, "direct-io", "auto", true, 0 },
        { NULL, "direct-io", "off", true, 2 },
        { NULL, "direct-io", "Off", false, 0, "must be auto, on or off" },
        { NULL, "zero-copy", "on", true, 1 },
        { NULL, "recovery", "fail-io", true, 1 },
        { NULL, "recovery", "", false, 0, "must be reissue, fail-io or none" },
        { NULL, "name", "disk", true, 0 },
        { NULL, "name", "", false, 0, "must not be empty" },
        { NULL, "name", "a\nb", false, 0, "control characters" },
        { NULL, "backing", "/srv/disk.img", true, 0 },
        { NULL, "backing", "", false, 0, "must not be empty" },
        { &opt_uri, NULL, "nbd://host:10809/export", true, 0 },
        { &opt_uri, NULL, "", false, 0, "must not be empty" },
        { &opt_timeout, NULL, "90", true, 90 },
        { &opt_timeout, NULL, "90s", true, 90 },
        { &opt_timeout, NULL, "5m", true, 300 },
        { &opt_timeout, NULL, "2h", true, 7200 },
        { &opt_timeout, NULL, "0", false, 0, "must be a non-zero time" },
        { &opt_timeout, NULL, "5d", false, 0, "such as 30s, 5m or 1h" },
        { &opt_timeout, NULL, "4294967295m", false, 0, "time" },
        { &opt_sockets, NULL, "3", false, 0, "cannot be given as text" },
};

static uint64_t value_number(const struct ublk_option *o, const union ublk_opt_value *v)
{
        return o->kind == UBLK_OPT_BOOL ? v->b : v->u;
}

static void test_parse_and_state(void)
{
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct ublk_option *o = cases[i].o ? cases[i].o : ublk_option_find(cases[i].key);
                union ublk_opt_value v, back;
                char why[128] = "", state[256];
                int r;

                CHECK(o, "no option '%s'", cases[i].key);
                if (!o)
                        continue;
                r = ublk_option_parse(o, cases[i].text, &v, why, sizeof(why));
                if (!cases[i].ok) {
                        CHECK(r == -EINVAL && strstr(why, cases[i].why), "%s='%s' gave %d '%s', want '%s'",
                              o->key, cases[i].text, r, why, cases[i].why);
                        continue;
                }
                CHECK(r == 0, "%s='%s' refused: %s", o->key, cases[i].text, why);
                if (r < 0)
                        continue;
                if (o->kind == UBLK_OPT_STRING || o->kind == UBLK_OPT_FD) {
                        CHECK(v.s && strcmp(v.s, cases[i].text) == 0, "%s='%s' is not its text", o->key,
                              cases[i].text);
                } else
                        CHECK(value_number(o, &v) == cases[i].u, "%s='%s' is %" PRIu64 ", want %" PRIu64,
                              o->key, cases[i].text, value_number(o, &v), cases[i].u);
                if (o->kind == UBLK_OPT_FD)
                        continue;
                /* The state file's form gives the same value back. */
                r = ublk_option_to_state(o, &v, state, sizeof(state));
                CHECK(r == 0, "%s='%s' has no state form: %d", o->key, cases[i].text, r);
                r = r < 0 ? r : ublk_option_from_state(o, state, &back);
                CHECK(r == 0, "%s: state '%s' does not parse back: %d", o->key, state, r);
                if (r == 0 && o->kind == UBLK_OPT_STRING)
                        CHECK(strcmp(back.s, v.s) == 0, "%s: state '%s' round-trips to '%s'", o->key, state, back.s);
                else if (r == 0)
                        CHECK(value_number(o, &back) == value_number(o, &v), "%s: state '%s' gives %" PRIu64,
                              o->key, state, value_number(o, &back));
        }

        /* State forms that a hand-edited or truncated file may hold. */
        union ublk_opt_value v;
        CHECK(ublk_option_from_state(ublk_option_find("direct-io"), "3", &v) < 0, "enum index 3 taken");
        CHECK(ublk_option_from_state(ublk_option_find("queues"), "4294967296", &v) < 0, "u32 overflow taken");
        CHECK(ublk_option_from_state(ublk_option_find("read-only"), "yes", &v) < 0, "state bool 'yes' taken");
        CHECK(ublk_option_from_state(ublk_option_find("size"), "", &v) < 0, "empty size taken");
        v.s = "a\nb";
        char buf[16];
        CHECK(ublk_option_to_state(&opt_uri, &v, buf, sizeof(buf)) == -EINVAL, "a newline in a state string");
        v.s = "nbd://a-rather-long-host/export";
        CHECK(ublk_option_to_state(&opt_uri, &v, buf, sizeof(buf)) == -ENOBUFS, "a short buffer");
}

static void test_table(void)
{
        char key[64];

        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];

                CHECK(strspn(o->key, "abcdefghijklmnopqrstuvwxyz-") == strlen(o->key) && o->key[0] != '-',
                      "key '%s' is not a long option's name", o->key);
                CHECK(ublk_option_find(o->key) == o, "key '%s' twice", o->key);
                CHECK(*ublk_option_signature(o), "%s has no D-Bus type", o->key);
                CHECK(o->help && *o->help, "%s has no help", o->key);
                CHECK(o->kind == UBLK_OPT_BOOL || o->metavar, "%s has no metavar", o->key);
                CHECK(o->kind != UBLK_OPT_ENUM || o->choices, "enum %s has no choices", o->key);
                CHECK(!(o->flags & UBLK_OPT_FDSTORE) || o->kind == UBLK_OPT_FD || o->kind == UBLK_OPT_FDS,
                      "%s: only fds can be kept in the fd store", o->key);
                CHECK(!(o->flags & UBLK_OPT_CLI_NEGATE) || o->kind == UBLK_OPT_BOOL, "%s: --no- of a non-bool",
                      o->key);
                ublk_option_state_key(o, key, sizeof(key));
                CHECK(strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == strlen(key), "state key %s", key);
                CHECK(strcmp(key, "TARGET") && strcmp(key, "OWNER_UID") && strcmp(key, "OWNER_GID") &&
                      (strcmp(key, "NAME") || (o->flags & UBLK_OPT_NO_STATE)) &&
                      (strcmp(key, "BACKING") || o->kind == UBLK_OPT_FD),
                      "state key %s is one of the state file's own lines", key);
        }
        /* Wire compatibility: the types Add had before the table (bus-add.py, t-bus.sh use them). */
        static const char *const wire[][2] = {
                { "size", "t" }, { "queues", "u" }, { "depth", "u" }, { "logical-block-size", "u" },
                { "read-only", "b" }, { "name", "s" }, { "start", "b" }, { "backing", "h" },
                { "offset", "t" }, { "direct-io", "s" }, { "zero-copy", "s" }, { "recovery", "s" },
        };
        for (size_t i = 0; i < ELEMENTSOF(wire); i++) {
                const struct ublk_option *o = ublk_option_find(wire[i][0]);

                CHECK(o && strcmp(ublk_option_signature(o), wire[i][1]) == 0, "Add's '%s' is not '%s'",
                      wire[i][0], wire[i][1]);
        }
        CHECK(strcmp(ublk_option_signature(&opt_sockets), "ah") == 0, "FDS are not 'ah'");

        for (size_t i = 0; ublk_targets[i]; i++) {
                const struct ublk_target_desc *t = ublk_targets[i];
                const struct ublk_target_ops *ops = target_find(t->name);

                if (!HAVE_NBD && t == &ublk_target_nbd)
                        continue;       /* built without libnbd: ublkd has no such target */
                CHECK(ops && ops->desc == t, "target '%s' has no ops, or ops of another desc", t->name);
                CHECK(!t->positional || (ublk_option_find(t->positional) &&
                                         ublk_option_takes(ublk_option_find(t->positional), t) &&
                                         t->positional_metavar), "%s's positional argument", t->name);
                for (const char *const *k = t->required; k && *k; k++)
                        CHECK(ublk_option_find(*k) && ublk_option_takes(ublk_option_find(*k), t),
                              "%s requires '%s', which it does not take", t->name, *k);
        }
        CHECK(!ublk_option_takes(ublk_option_find("offset"), ublk_target_find("null")), "null takes offset");
        CHECK(ublk_option_takes(ublk_option_find("offset"), ublk_target_find("loop")), "loop refuses offset");
        CHECK(ublk_option_takes(ublk_option_find("size"), ublk_target_find("null")), "null refuses size");
}

/* NAME.conf takes each option's key but the UBLK_OPT_NO_CONF ones. */
static void test_conf_keys(void)
{
        static const char *const samples[_UBLK_OPT_KIND_MAX] = {
                [UBLK_OPT_STRING] = "x", [UBLK_OPT_SIZE] = "1M", [UBLK_OPT_UINT] = "1",
                [UBLK_OPT_SECONDS] = "1", [UBLK_OPT_BOOL] = "yes", [UBLK_OPT_FD] = "/f",
        };

        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                char text[256], err[256] = "";
                struct ublk_conf c;
                FILE *f;
                int r;

                snprintf(text, sizeof(text), "target=loop\n%s=%s\n", o->key,
                         o->kind == UBLK_OPT_ENUM ? o->choices[0] : samples[o->kind]);
                f = fmemopen(text, strlen(text), "r");
                r = ublk_conf_parse(f, "t.conf", &c, err, sizeof(err));
                fclose(f);
                if (o->flags & UBLK_OPT_NO_CONF)
                        CHECK(r < 0 && strstr(err, "unknown key"), "NAME.conf takes '%s'", o->key);
                else
                        CHECK(r == 0 && ublk_conf_get(&c, o->key), "NAME.conf refuses '%s': %s", o->key, err);
                if (r == 0)
                        ublk_conf_free(&c);
        }
}

/* Each target keeps each option of its own that it is given, and gives it back. */
static void test_target_options(void)
{
        int pipefd[2];

        CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe2: %m");
        for (size_t i = 0; ublk_targets[i]; i++) {
                const struct ublk_target_ops *ops = target_find(ublk_targets[i]->name);
                struct ublk_dev_config c;

                if (!ops)
                        continue;
                ublk_dev_config_init(&c);
                CHECK(ublk_dev_config_set_target(&c, ops) == 0, "%s: no config", ops->name);
                for (size_t k = 0; ublk_options[k]; k++) {
                        const struct ublk_option *o = ublk_options[k];
                        union ublk_opt_value v = {}, back;
                        char why[256];
                        int r;

                        if (!ublk_option_takes(o, ops->desc) || strcmp(o->key, "start") == 0)
                                continue;
                        if (o->kind == UBLK_OPT_FD)
                                v.fd = pipefd[0];
                        else if (o->kind == UBLK_OPT_FDS) {
                                v.fds.fds = &pipefd[0];
                                v.fds.n = 1;
                        } else if (o->kind == UBLK_OPT_STRING)
                                v.s = "disk-1";
                        else if (o->kind == UBLK_OPT_BOOL)
                                v.b = true;
                        else
                                v.u = o->kind == UBLK_OPT_ENUM ? 1 : 4096;
                        r = ublk_dev_config_set(&c, o, &v, why, sizeof(why));
                        CHECK(r == 0, "%s: setting '%s' failed: %d %s", ops->name, o->key, r, why);
                        r = ublk_dev_config_get(&c, o, &back);
                        CHECK(r == 0, "%s: '%s' was set but is not there: %d", ops->name, o->key, r);
                        if (r < 0)
                                continue;
                        if (o->kind == UBLK_OPT_FD)
                                /* The target's own copy: the caller's stays the caller's. */
                                CHECK(back.fd >= 0 && back.fd != v.fd, "%s: '%s' keeps the caller's fd",
                                      ops->name, o->key);
                        else if (o->kind == UBLK_OPT_FDS)
                                CHECK(back.fds.n == 1 && back.fds.fds[0] >= 0 && back.fds.fds[0] != pipefd[0],
                                      "%s: '%s' keeps the caller's fds, or not one", ops->name, o->key);
                        else if (o->kind == UBLK_OPT_STRING)
                                CHECK(strcmp(back.s, v.s) == 0, "%s: '%s' is '%s'", ops->name, o->key, back.s);
                        else
                                CHECK(value_number(o, &back) == value_number(o, &v), "%s: '%s' is %" PRIu64,
                                      ops->name, o->key, value_number(o, &back));
                }
                ublk_dev_config_clear(&c);
        }
        CHECK(fcntl(pipefd[0], F_GETFD) >= 0, "the caller's fd was closed");
        close(pipefd[0]);
        close(pipefd[1]);
}

/* The lines of the bash completion that come from the table, as they must be. */
static void expect_line(const char *file, const char *line)
{
        CHECK(strstr(file, line), "the completion lacks the line: %s", line);
}

static void test_completion(const char *path)
{
        _cleanup_free_ char *file = NULL;
        char line[1024], list[900], name[64];
        size_t len = 0;
        FILE *f = fopen(path, "re");

        CHECK(f, "cannot open %s: %m", path);
        if (!f)
                return;
        CHECK(getdelim(&file, &len, 0, f) > 0, "cannot read %s", path);
        fclose(f);
        if (!file)
                return;

        list[0] = 0;
        for (size_t i = 0; ublk_targets[i]; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? " " : "", ublk_targets[i]->name);
        snprintf(line, sizeof(line), "\n__ublkctl_targets='%s'\n", list);
        expect_line(file, line);

        for (int flags = 0; flags < 2; flags++) {
                list[0] = 0;
                for (size_t i = 0; ublk_options[i]; i++) {
                        const struct ublk_option *o = ublk_options[i];
                        bool positional = false;

                        for (size_t t = 0; ublk_targets[t]; t++)
                                positional |= ublk_targets[t]->positional && !strcmp(ublk_targets[t]->positional, o->key);
                        if (positional || (o->flags & UBLK_OPT_NO_CLI) || (o->kind == UBLK_OPT_BOOL) != flags)
                                continue;
                        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s--%s%s", list[0] ? " " : "",
                                 o->flags & UBLK_OPT_CLI_NEGATE ? "no-" : "", o->key);
                }
                snprintf(line, sizeof(line), "\n__ublkctl_add_%s_opts='%s'\n", flags ? "flag" : "arg", list);
                expect_line(file, line);
        }

        for (size_t t = 0; ublk_targets[t]; t++) {
                list[0] = 0;
                for (size_t i = 0; ublk_options[i]; i++)
                        if (ublk_options[i]->targets && ublk_option_takes(ublk_options[i], ublk_targets[t]) &&
                            !(ublk_options[i]->flags & UBLK_OPT_NO_CLI) &&
                            strcmp(ublk_options[i]->key, ublk_targets[t]->positional ? ublk_targets[t]->positional : ""))
                                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s--%s",
                                         list[0] ? " " : "", ublk_options[i]->key);
                snprintf(line, sizeof(line), "\n__ublkctl_add_opts_%s='%s'\n", ublk_targets[t]->name, list);
                expect_line(file, line);
        }

        list[0] = 0;
        for (size_t t = 0; ublk_targets[t]; t++) {
                const struct ublk_option *pos = ublk_targets[t]->positional ?
                        ublk_option_find(ublk_targets[t]->positional) : NULL;

                if (pos && pos->kind == UBLK_OPT_FD)
                        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", list[0] ? " " : "",
                                 ublk_targets[t]->name);
        }
        snprintf(line, sizeof(line), "\n__ublkctl_add_file_targets='%s'\n", list);
        expect_line(file, line);

        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];
                char *p;

                snprintf(name, sizeof(name), "__ublkctl_add_values_%s=", o->key);
                for (p = name; *p; p++)
                        if (*p == '-')
                                *p = '_';
                if (!o->choices) {
                        CHECK(!strstr(file, name), "the completion offers values of %s, which has none", o->key);
                        continue;
                }
                list[0] = 0;
                for (size_t c = 0; o->choices[c]; c++)
                        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", c ? " " : "", o->choices[c]);
                snprintf(line, sizeof(line), "\n%s'%s'\n", name, list);
                expect_line(file, line);
        }
}

/* A man page as text, "\\-" as "-" and with a newline first, so that "\n.TP" finds a line; NULL
 * if it cannot be read. */
static char *man_read(const char *path)
{
        _cleanup_free_ char *raw = NULL;
        char *text, *t;
        size_t len = 0;
        FILE *f = fopen(path, "re");

        CHECK(f, "cannot open %s: %m", path);
        if (!f)
                return NULL;
        CHECK(getdelim(&raw, &len, 0, f) > 0, "cannot read %s", path);
        fclose(f);
        if (!raw || !(text = malloc(strlen(raw) + 2)))
                return NULL;
        t = text;
        *t++ = '\n';
        for (const char *r = raw; *r; r++)
                if (!(r[0] == '\\' && r[1] == '-'))
                        *t++ = *r;
        *t = 0;
        return text;
}

/* Whether text has a line that starts with what the format makes. */
__attribute__((format(printf, 2, 3)))
static bool man_has_line(const char *text, const char *fmt, ...)
{
        char line[256] = "\n";
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line + 1, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        return strstr(text, line);
}

/*
 * Every option of Add is an item of the D-Bus API's page under ADD OPTIONS ('.B "KEY (SIG)"'),
 * and every such item there is an option; every option NAME.conf takes is a key of
 * ublk.conf(5) ('.BI KEY " = "' or '.BR'), whose "target" item names every target; every target
 * is an item of ublkctl(1) ('.B NAME' or '.BI "NAME " ARG').  ctl-docs checks ublkctl(1)'s
 * --options against --help.
 */
static void test_man_pages(const char *bus_path, const char *conf_path, const char *ctl_path)
{
        _cleanup_free_ char *bus = man_read(bus_path), *conf = man_read(conf_path), *ctl = man_read(ctl_path);
        const char *p, *target_line;

        if (!bus || !conf || !ctl)
                return;
        for (size_t i = 0; ublk_options[i]; i++) {
                const struct ublk_option *o = ublk_options[i];

                CHECK(man_has_line(bus, ".B \"%s (%s)\"\n", o->key, ublk_option_signature(o)),
                      "%s has no item '.B \"%s (%s)\"'", bus_path, o->key, ublk_option_signature(o));
                if (!(o->flags & UBLK_OPT_NO_CONF))
                        CHECK(man_has_line(conf, ".BI %s \" = \"", o->key) ||
                              man_has_line(conf, ".BR %s \" = \"", o->key),
                              "%s has no key '%s'", conf_path, o->key);
        }
        /* The other way: an item "name (sig)" of the D-Bus page that is no option. */
        for (p = strstr(bus, "\n.SH ADD OPTIONS\n"); p && (p = strstr(p + 1, "\n.B \"")); ) {
                char key[64];

                if (!strncmp(p, "\n.SH", 4))
                        break;
                if (sscanf(p, "\n.B \"%63[a-z-] (", key) == 1)
                        CHECK(ublk_option_find(key), "%s describes Add option '%s', which does not exist",
                              bus_path, key);
        }
        CHECK(strstr(bus, "\n.SH ADD OPTIONS\n"), "%s has no section ADD OPTIONS", bus_path);

        target_line = strstr(conf, "\n.BR target \" = \" ");
        CHECK(target_line, "%s has no item for key 'target'", conf_path);
        for (size_t t = 0; ublk_targets[t]; t++) {
                const char *name = ublk_targets[t]->name;
                char word[64];

                snprintf(word, sizeof(word), " %s ", name);
                if (target_line) {
                        size_t n = strcspn(target_line + 1, "\n");
                        char line[256];

                        snprintf(line, sizeof(line), "%.*s ", (int) (n < 250 ? n : 250), target_line + 1);
                        CHECK(strstr(line, word), "%s: key 'target' does not name target '%s'", conf_path, name);
                }
                CHECK(man_has_line(ctl, ".TP\n.B %s\n", name) || man_has_line(ctl, ".TP\n.BI \"%s \"", name),
                      "%s has no item for target '%s'", ctl_path, name);
        }
}

int main(int argc, char *argv[])
{
        test_parse_and_state();
        test_table();
        test_conf_keys();
        test_target_options();
        if (argc > 4) {
                test_completion(argv[1]);
                test_man_pages(argv[2], argv[3], argv[4]);
        } else
                CHECK(false, "usage: test-add-options COMPLETION-FILE DBUS-MAN-PAGE CONF-MAN-PAGE UBLKCTL-MAN-PAGE");
        return check_summary();
}
