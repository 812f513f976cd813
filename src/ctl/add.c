/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "ublkctl add" and the add of "ublkctl up": the options of add-options.h, as long options,
 * as --help, from NAME.conf, and as the Add call that ublkd gets.  Files an FD option names
 * (loop's FILE) are opened here, with the caller's rights; ublkd only sees the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "add.h"
#include "macro.h"
#include "nbd-connect.h"
#include "nbd-uri.h"
#include "qcow2-chain.h"
#include "ublkctl.h"
#include "ublkd-bus.h"

/* An option of add that is some target's positional argument ("ublkctl add loop FILE"): it has
 * no --KEY. */
static bool option_is_positional(const struct ublk_option *o)
{
        for (size_t i = 0; ublk_targets[i]; i++)
                if (ublk_targets[i]->positional && strcmp(ublk_targets[i]->positional, o->key) == 0)
                        return true;
        return false;
}

/* The long option of o ("size", "no-start"), in buf; NULL for a positional one. */
static const char *option_cli_name(const struct ublk_option *o, char *buf, size_t len)
{
        if (option_is_positional(o) || (o->flags & UBLK_OPT_NO_CLI))
                return NULL;
        snprintf(buf, len, "%s%s", o->flags & UBLK_OPT_CLI_NEGATE ? "no-" : "", o->key);
        return buf;
}

/* prefix and text from column col on, in lines that end before column 80. */
static void print_wrapped(const char *prefix, const char *text, int col)
{
        char buf[512];
        const char *p = buf;
        int width = 79 - col;

        snprintf(buf, sizeof(buf), "%s%s", prefix, text);
        for (bool first = true; *p; first = false) {
                int n = (int) strlen(p);

                if (n > width) {
                        n = width;
                        while (n > 0 && p[n] != ' ')
                                n--;
                        if (n == 0)
                                n = width;
                }
                printf("%*s%.*s\n", first ? 1 : col, "", n, p);
                p += n;
                while (*p == ' ')
                        p++;
        }
}

static void print_add_option(const struct ublk_option *o, const struct ublk_target_desc *only)
{
        char name[64], left[96], who[64] = "";
        const char *prefix = "";

        if (!option_cli_name(o, name, sizeof(name)))
                return;
        if (o->targets && !only) {
                /* Named in the general help: say which targets take it. */
                for (size_t i = 0; ublk_targets[i]; i++)
                        if (o->targets & UBLK_TARGET_BIT(i))
                                snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s%s",
                                         who[0] ? ", " : "", ublk_targets[i]->name);
                snprintf(who + strlen(who), sizeof(who) - strlen(who), " only: ");
                prefix = who;
        }
        snprintf(left, sizeof(left), "--%s%s%s", name, o->kind == UBLK_OPT_BOOL ? "" : " ",
                 o->kind == UBLK_OPT_BOOL ? "" : o->metavar);
        if (strlen(left) > 22)
                printf("      %s\n      %-22s", left, "");
        else
                printf("      %-22s", left);
        print_wrapped(prefix, o->help, 29);
}

/* "ublkctl add --help" and "ublkctl add TARGET --help". */
int add_help(int argc, char *argv[])
{
        const struct ublk_target_desc *t = argc >= 2 ? ublk_target_find(argv[1]) : NULL;
        const struct ublk_option *pos;

        if (argc >= 2 && !t)
                return usage_error("unknown target '%s': see 'ublkctl add --help'", argv[1]);
        if (!t) {
                printf("Usage: ublkctl add TARGET [ARGUMENT] [OPTIONS]\n\n"
                       "Create a device; prints its /dev/ublkbN (its id with --no-start).\n\nTargets:\n");
                for (size_t i = 0; ublk_targets[i]; i++)
                        printf("  %-8s %s\n", ublk_targets[i]->name, ublk_targets[i]->summary);
                printf("\nOptions of every target:\n");
                for (size_t i = 0; ublk_options[i]; i++)
                        if (!ublk_options[i]->targets)
                                print_add_option(ublk_options[i], NULL);
                printf("\n'ublkctl add TARGET --help' shows a target's own. See ublkctl(1).\n");
                return 0;
        }
        pos = t->positional ? ublk_option_find(t->positional) : NULL;
        printf("Usage: ublkctl add %s%s%s [OPTIONS]\n\nThe %s target %s.\n", t->name, pos ? " " : "",
               pos ? t->positional_metavar : "", t->name, t->summary);
        /* A metavar too long for its column gets a line of its own (rbd's). */
        if (pos && strlen(t->positional_metavar) < 24)
                printf("\n  %-24s%s\n", t->positional_metavar, pos->help);
        else if (pos)
                printf("\n  %s\n  %24s%s\n", t->positional_metavar, "", pos->help);
        printf("\nOptions:\n");
        for (size_t i = 0; ublk_options[i]; i++)
                if (ublk_option_takes(ublk_options[i], t))
                        print_add_option(ublk_options[i], t);
        printf("\nSee ublkctl(1).\n");
        return 0;
}

static int append_option(sd_bus_message *m, const char *key, const char *sig, ...)
{
        va_list ap;
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", key);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'v', sig);
        if (r < 0)
                return r;
        va_start(ap, sig);
        r = sd_bus_message_appendv(m, sig, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* What "add" sends, from the command line or from /etc/ublk/NAME.conf: each option's value in
 * its text form (add-options.h), already checked, by its index in ublk_options[]. */
struct add_args {
        const char *target;
        const char *values[UBLK_CONF_OPTIONS_MAX];
};

static const char *add_value(const struct add_args *a, const char *key)
{
        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (strcmp(ublk_options[i]->key, key) == 0)
                        return a->values[i];
        return NULL;
}

static bool add_flag(const struct add_args *a, const char *key, bool def)
{
        const char *text = add_value(a, key);
        union ublk_opt_value v;
        char why[128];

        return text && ublk_option_parse(ublk_option_find(key), text, &v, why, sizeof(why)) == 0 ? v.b : def;
}

/* Opened here, with the caller's own rights; ublkd only sees the fd. */
static int open_as_caller(const char *file, bool read_only)
{
        int fd = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY);

        if (fd < 0 && !read_only && (errno == EACCES || errno == EROFS)) {
                /* As losetup does: what we may only read becomes a read-only device. */
                fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd >= 0)
                        fprintf(stderr, "ublkctl: %s is not writable: the device is read-only\n", file);
        }
        if (fd < 0)
                fprintf(stderr, "ublkctl: cannot open %s: %s\n", file, strerror(errno));
        return fd;
}

/* One option, text to its D-Bus type. */
static int append_add_option(sd_bus_message *m, const struct ublk_option *o, const char *text, int fd)
{
        union ublk_opt_value v;
        char why[128];

        if (o->kind == UBLK_OPT_FD)
                return append_option(m, o->key, "h", fd);
        if (ublk_option_parse(o, text, &v, why, sizeof(why)) < 0)
                return -EINVAL;
        switch (o->kind) {
        case UBLK_OPT_STRING:
        case UBLK_OPT_ENUM:
                return append_option(m, o->key, "s", text);
        case UBLK_OPT_SIZE:
                return append_option(m, o->key, "t", v.u);
        case UBLK_OPT_UINT:
        case UBLK_OPT_SECONDS:
                return append_option(m, o->key, "u", (uint32_t) v.u);
        case UBLK_OPT_BOOL:
                return append_option(m, o->key, "b", (int) v.b);
        default:
                return -EOPNOTSUPP;     /* fds a target's own code would have to make (sockets) */
        }
}

/* A key file: read only, and nothing about the device. */
static int open_rdonly_as_caller(const char *file)
{
        int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                fprintf(stderr, "ublkctl: cannot open %s: %s\n", file, strerror(errno));
        return fd;
}

/*
 * nbd, for a caller other than root: ublkd connects for root only, so the sockets (one a queue)
 * are connected here with the caller's own rights and passed as "sockets"; a tls-psk-file= in
 * the URI is opened here too, as if given as --tls-psk-file.  Root's URI goes as it is.
 */
static int add_nbd_sockets(const struct add_args *a, int *sockets, unsigned *n, const char **psk_file)
{
        const char *uri = add_value(a, "uri"), *text;
        uint64_t timeout = NBD_CONNECT_DEFAULT_S;
        union ublk_opt_value v;
        struct nbd_uri u;
        const char *why;
        uint32_t queues = 1;
        char err[300];

        *n = 0;
        if (!uri || geteuid() == 0)
                return 0;
        if (nbd_uri_parse(uri, &u, &why) < 0) {
                fprintf(stderr, "ublkctl: bad NBD URI: %s\n", why);
                return -EXIT_FAILURE;
        }
        if (!*psk_file && u.tls_psk_file[0])
                *psk_file = u.tls_psk_file;
        text = add_value(a, "queues");
        if (text && ublk_option_parse(ublk_option_find("queues"), text, &v, err, sizeof(err)) == 0)
                queues = (uint32_t) v.u;
        text = add_value(a, "connect-timeout");
        if (text && ublk_option_parse(ublk_option_find("connect-timeout"), text, &v, err, sizeof(err)) == 0)
                timeout = v.u;
        if (queues > NBD_CONNECT_SOCKETS_MAX) {
                fprintf(stderr, "ublkctl: at most %d queues for an nbd device\n", NBD_CONNECT_SOCKETS_MAX);
                return -EXIT_FAILURE;
        }
        if (nbd_connect_sockets(uri, queues, (uint32_t) timeout, sockets, err, sizeof(err)) < 0) {
                fprintf(stderr, "ublkctl: %s\n", err);
                return -EXIT_FAILURE;
        }
        *n = queues;
        return 0;
}

static int append_fds(sd_bus_message *m, const char *key, const int *fds, unsigned n)
{
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", key);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "ah");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "h");
        for (unsigned i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "h", fds[i]);
        for (int k = 0; r >= 0 && k < 3; k++)
                r = sd_bus_message_close_container(m);
        return r;
}

/* Opens the files of FD options, calls Add and prints the new device; returns an exit code. */
static int add_device(const struct add_args *a)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int fds[UBLK_CONF_OPTIONS_MAX], sockets[NBD_CONNECT_SOCKETS_MAX], uri_psk_fd = -1;
        int chain[UBLK_FDSTORE_FDS_MAX];
        unsigned n_sockets = 0, n_chain = 0;
        const char *uri_psk = NULL;
        bool start = add_flag(a, "start", true);
        const char *path;
        uint32_t id;
        int r;

        for (size_t i = 0; i < UBLK_CONF_OPTIONS_MAX; i++)
                fds[i] = -1;
        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (a->values[i] && ublk_options[i]->kind == UBLK_OPT_FD) {
                        fds[i] = ublk_options[i]->flags & UBLK_OPT_FD_RDONLY ? open_rdonly_as_caller(a->values[i]) :
                                 open_as_caller(a->values[i], add_flag(a, "read-only", false));
                        if (fds[i] < 0) {
                                r = EXIT_FAILURE;
                                goto out;
                        }
                }
        /* qcow2's (issue 33): the backing chain the image names, opened here as the caller. */
        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (fds[i] >= 0 && strcmp(a->target, "qcow2") == 0 && strcmp(ublk_options[i]->key, "image") == 0) {
                        char err[512];

                        if (qcow2_open_chain(fds[i], a->values[i], chain, UBLK_FDSTORE_FDS_MAX, &n_chain,
                                             err, sizeof(err)) < 0) {
                                fprintf(stderr, "ublkctl: %s\n", err);
                                r = EXIT_FAILURE;
                                goto out;
                        }
                }
        /* nbd's, a target's own (issue 31): the sockets only a non-root caller's ublkctl makes. */
        uri_psk = add_value(a, "tls-psk-file");
        r = add_nbd_sockets(a, sockets, &n_sockets, &uri_psk);
        if (r < 0) {
                r = -r;
                goto out;
        }
        if (uri_psk && !add_value(a, "tls-psk-file")) {
                uri_psk_fd = open_rdonly_as_caller(uri_psk);
                if (uri_psk_fd < 0) {
                        r = EXIT_FAILURE;
                        goto out;
                }
        }

        r = connect_bus_for_change(&bus);
        if (r < 0) {
                r = -r;
                goto out;
        }
        r = sd_bus_message_new_method_call(bus, &m, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE, "Add");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", a->target);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (size_t i = 0; r >= 0 && ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (a->values[i])
                        r = append_add_option(m, ublk_options[i], a->values[i], fds[i]);
        if (r >= 0 && n_sockets)
                r = append_fds(m, "sockets", sockets, n_sockets);
        if (r >= 0 && n_chain)
                r = append_fds(m, "backing-chain", chain, n_chain);
        if (r >= 0 && uri_psk_fd >= 0)
                r = append_option(m, "tls-psk-file", "h", uri_psk_fd);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                r = bus_failure(&error, r, "cannot build the request");
                goto out;
        }

        r = sd_bus_call(bus, m, op_timeout_usec, &error, &reply);
        if (r < 0) {
                r = bus_failure(&error, r, "add");
                sd_bus_error_free(&error);
                goto out;
        }
        r = sd_bus_message_read(reply, "uo", &id, &path);
        if (r < 0) {
                r = bus_failure(&error, r, "unexpected reply from ublkd");
                goto out;
        }
        if (start)
                printf("/dev/ublkb%" PRIu32 "\n", id);
        else
                printf("%" PRIu32 "\n", id);
        r = 0;
out:
        for (size_t i = 0; i < UBLK_CONF_OPTIONS_MAX; i++)
                safe_close(fds[i]);
        for (unsigned i = 0; i < n_sockets; i++)
                safe_close(sockets[i]);
        for (unsigned i = 0; i < n_chain; i++)
                safe_close(chain[i]);
        safe_close(uri_psk_fd);
        return r;
}

/* add's options as given (a flag as ""), checked once the command line is read. */
static const char *add_opt[UBLK_CONF_OPTIONS_MAX];
static char cli_names[UBLK_CONF_OPTIONS_MAX][64];

size_t add_long_options(struct option *options, int val_base)
{
        size_t n = 0;

        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (option_cli_name(ublk_options[i], cli_names[i], sizeof(cli_names[i])))
                        options[n++] = (struct option) {
                                cli_names[i], ublk_options[i]->kind == UBLK_OPT_BOOL ? no_argument : required_argument,
                                NULL, val_base + (int) i,
                        };
        return n;
}

void add_option_given(int index, const char *arg)
{
        if (index >= 0 && index < UBLK_CONF_OPTIONS_MAX)
                add_opt[index] = arg ? arg : "";
}

void add_print_commands(void)
{
        for (size_t i = 0; ublk_targets[i]; i++)
                printf("  add %s%s%s [OPTIONS]\n", ublk_targets[i]->name, ublk_targets[i]->positional ? " " : "",
                       ublk_targets[i]->positional ? ublk_targets[i]->positional_metavar : "");
        printf("                         Create a device; prints its /dev/ublkbN\n"
               "                         (ublkctl add TARGET --help: the target's options)\n");
        for (size_t i = 0; ublk_options[i]; i++)
                print_add_option(ublk_options[i], NULL);
}

int add_from_conf(const struct ublk_conf *conf, const char *name)
{
        struct add_args a = { .target = conf->target };

        for (size_t i = 0; i < UBLK_CONF_OPTIONS_MAX; i++)
                a.values[i] = conf->values[i];
        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                if (strcmp(ublk_options[i]->key, "name") == 0)
                        a.values[i] = name;
        return add_device(&a);
}

int cmd_add(int argc, char *argv[])
{
        const struct ublk_target_desc *t;
        struct add_args a = {};
        char why[128], name[64], targets[128] = "";

        for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++) {
                const struct ublk_option *o = ublk_options[i];
                union ublk_opt_value v;

                if (!add_opt[i])
                        continue;
                option_cli_name(o, name, sizeof(name));
                if (o->kind == UBLK_OPT_BOOL)
                        a.values[i] = o->flags & UBLK_OPT_CLI_NEGATE ? "no" : "yes";
                else if (ublk_option_parse(o, add_opt[i], &v, why, sizeof(why)) < 0)
                        return usage_error("--%s %s, not '%s'", name, why, add_opt[i]);
                else
                        a.values[i] = add_opt[i];
        }

        ublk_target_names(targets, sizeof(targets));
        if (argc < 2)
                return usage_error("needs a target (%s), e.g. 'ublkctl add loop disk.img' or "
                                   "'ublkctl add null --size 1G'", targets);
        a.target = argv[1];
        t = ublk_target_find(a.target);
        if (!t)
                return usage_error("unknown target '%s': %s", a.target, targets);
        if (t->positional) {
                const struct ublk_option *pos = ublk_option_find(t->positional);

                if (argc < 3)
                        return usage_error("%s needs a %s: %s", t->name, t->positional_metavar, pos->help);
                for (size_t i = 0; ublk_options[i]; i++)
                        if (ublk_options[i] == pos)
                                a.values[i] = argv[2];
                if (argc > 3)
                        return usage_error("unexpected argument '%s'", argv[3]);
        } else if (argc > 2)
                return usage_error("unexpected argument '%s': %s takes no argument but options", argv[2], t->name);
        for (const char *const *k = t->required; k && *k; k++) {
                const struct ublk_option *o = ublk_option_find(*k);

                if (!add_value(&a, *k) && o && option_cli_name(o, name, sizeof(name)))
                        return usage_error("%s needs --%s %s", t->name, name, o->metavar);
        }
        return add_device(&a);
}
