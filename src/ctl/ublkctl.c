/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublkctl: the command-line client of ublkd.  It talks to ublkd over the
 * system bus only; files it names (a loop backing file) it opens itself and
 * passes as file descriptors, so the caller's own permissions apply.
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "add.h"
#include "conf.h"
#include "config.h"
#include "macro.h"
#include "parse.h"
#include "polkit-agent.h"
#include "ublkctl.h"
#include "ublkd-bus.h"
#include "ublk_cmd.h"

#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
/* Add, start, stop and del wait for the kernel; ublkd bounds START_DEV at about 25 s, and
 * removing a device waits until nobody has its char device open. */
#define OPERATION_TIMEOUT_USEC (120 * UINT64_C(1000000))

/* ublkd waits up to 5 minutes for a password typed into a polkit agent. */
#define AUTHORIZATION_TIMEOUT_USEC (300 * UINT64_C(1000000))

/* --json=MODE as systemd's tools have it: off, short (one line), pretty (indented). */
enum json_mode { JSON_OFF, JSON_SHORT, JSON_PRETTY };

/* getopt_long's values: add's options are OPT_ADD + N (add.h). */
enum {
        OPT_VERSION = 0x100, OPT_JSON, OPT_NO_ASK_PASSWORD, OPT_NO_LEGEND,
        OPT_ADD = 0x200,
};

static enum json_mode arg_json;
static bool arg_legend = true;
static bool arg_ask_password = true;
static const char *arg_verb;          /* the command, once known: named in usage errors */
uint64_t op_timeout_usec = OPERATION_TIMEOUT_USEC;

/* "ublkctl VERB: what is wrong", then where to read more; returns the exit code. */
int usage_error(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "ublkctl%s%s: ", arg_verb ? " " : "", arg_verb ? arg_verb : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nSee 'ublkctl%s%s --help'.\n", arg_verb ? " " : "", arg_verb ? arg_verb : "");
        return EXIT_USAGE;
}

/* The UBLK_F_* bits by name (src/kernel/uapi/ublk_cmd.h), for features and show's Flags. */
#define FLAG(f) { f, #f }
static const struct { uint64_t bit; const char *name; } ublk_flags[] = {
        FLAG(UBLK_F_SUPPORT_ZERO_COPY), FLAG(UBLK_F_URING_CMD_COMP_IN_TASK), FLAG(UBLK_F_NEED_GET_DATA),
        FLAG(UBLK_F_USER_RECOVERY), FLAG(UBLK_F_USER_RECOVERY_REISSUE), FLAG(UBLK_F_UNPRIVILEGED_DEV),
        FLAG(UBLK_F_CMD_IOCTL_ENCODE), FLAG(UBLK_F_USER_COPY), FLAG(UBLK_F_ZONED),
        FLAG(UBLK_F_USER_RECOVERY_FAIL_IO), FLAG(UBLK_F_UPDATE_SIZE), FLAG(UBLK_F_AUTO_BUF_REG),
        FLAG(UBLK_F_QUIESCE), FLAG(UBLK_F_PER_IO_DAEMON), FLAG(UBLK_F_BUF_REG_OFF_DAEMON),
        FLAG(UBLK_F_BATCH_IO), FLAG(UBLK_F_INTEGRITY), FLAG(UBLK_F_SAFE_STOP_DEV),
        FLAG(UBLK_F_NO_AUTO_PART_SCAN), FLAG(UBLK_F_SHMEM_ZC), FLAG(UBLK_F_IO_DESC_SIZE),
};
#undef FLAG

/* The names of the bits set in flags, separated by sep; bits without a name as one hex number. */
static void print_flag_names(uint64_t flags, const char *sep)
{
        const char *s = "";

        for (size_t i = 0; i < ELEMENTSOF(ublk_flags); i++)
                if (flags & ublk_flags[i].bit) {
                        printf("%s%s", s, ublk_flags[i].name);
                        flags &= ~ublk_flags[i].bit;
                        s = sep;
                }
        if (flags)
                printf("%sunknown 0x%" PRIx64, s, flags);
}

/* JSON output, short or pretty: containers nest, members and items are separated and indented
 * as the mode says. */
static unsigned json_depth;
static bool json_first[8];

static void json_newline(void)
{
        if (arg_json == JSON_PRETTY) {
                putchar('\n');
                for (unsigned i = 0; i < json_depth; i++)
                        fputs("  ", stdout);
        }
}

static void json_open(char c)
{
        putchar(c);
        json_first[++json_depth] = true;
}

static void json_close(char c)
{
        bool empty = json_first[json_depth];

        json_depth--;
        if (!empty)
                json_newline();
        putchar(c);
        if (json_depth == 0)
                putchar('\n');
}

static void json_string(const char *s);

/* The next item of an array, or with key the next member of an object. */
static void json_next(const char *key)
{
        if (!json_first[json_depth])
                putchar(',');
        json_first[json_depth] = false;
        json_newline();
        if (key) {
                json_string(key);
                fputs(arg_json == JSON_PRETTY ? ": " : ":", stdout);
        }
}

/* One line naming the fix; returns the exit code for a failed operation. */
int bus_failure(const sd_bus_error *error, int r, const char *what)
{
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   "org.freedesktop.systemd1.NoSuchUnit"))
                fprintf(stderr, "ublkctl: ublkd is not running: systemctl start ublkd\n");
        else if (sd_bus_error_is_set(error))
                fprintf(stderr, "ublkctl: %s: %s\n", what, error->message ? error->message : error->name);
        else
                fprintf(stderr, "ublkctl: %s: %s\n", what, strerror(-r));
        return EXIT_FAILURE;
}

static int connect_bus(sd_bus **ret)
{
        int r = sd_bus_open_system(ret);

        if (r < 0) {
                fprintf(stderr, "ublkctl: cannot connect to the system bus (%s): is dbus running?\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        return 0;
}

/* For the calls that polkit may gate: on a terminal, an agent there, and the call lets polkit
 * ask the user through it. */
int connect_bus_for_change(sd_bus **ret)
{
        int r = connect_bus(ret);

        if (r < 0)
                return r;
        if (arg_ask_password && polkit_agent_open()) {
                (void) sd_bus_set_allow_interactive_authorization(*ret, true);
                op_timeout_usec = OPERATION_TIMEOUT_USEC + AUTHORIZATION_TIMEOUT_USEC;
        }
        return 0;
}

static void help(void)
{
        printf("Usage: ublkctl [OPTIONS] COMMAND ...\n\n"
               "Manage ublk block devices served by ublkd.\n\n"
               "Commands:\n");
        add_print_commands();
        printf("  list                   List devices\n"
               "  show ID|NAME           Show one device\n"
               "  start ID|NAME          Start a stopped device\n"
               "  stop ID|NAME           Stop a device; its configuration stays with ublkd\n"
               "  recover ID|NAME        Serve a quiesced device again (its IO resumes)\n"
               "  del ID|NAME            Stop and remove a device\n"
               "  up NAME                Create (or start) the device of /etc/ublk/NAME.conf\n"
               "  down NAME              Remove the device NAME if it exists\n"
               "  features               Show the kernel's ublk features\n\n"
               "Options (anywhere on the line):\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "  -j                     JSON output for list, show and features: pretty on a\n"
               "                         terminal, short otherwise\n"
               "     --json=pretty|short|off\n"
               "                         JSON output, indented or on one line (--json alone: as -j)\n"
               "     --no-legend         list: no header line\n"
               "     --no-ask-password   Do not ask for a password (polkit) on the terminal\n\n"
               "Targets:");
        for (size_t i = 0; ublk_targets[i]; i++)
                printf("%s %s", i ? "," : "", ublk_targets[i]->name);
        printf(". See ublkctl(1).\n");
}

/* Resolves "7" or "name" to a device object path. */
static int resolve_device(sd_bus *bus, const char *spec, char **ret_path)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint32_t id;
        int r;

        if (parse_uint32(spec, &id) == 0)
                r = sd_bus_call_method(bus, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE, "GetDevice",
                                       &error, &reply, "u", id);
        else
                r = sd_bus_call_method(bus, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE,
                                       "GetDeviceByName", &error, &reply, "s", spec);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, UBLKD_ERROR_NO_SUCH_DEVICE))
                        fprintf(stderr, "ublkctl: no such device: %s\n", spec);
                else
                        bus_failure(&error, r, "cannot look up the device");
                sd_bus_error_free(&error);
                return -EXIT_FAILURE;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(*ret_path = strdup(path)))
                return -EXIT_FAILURE;
        return 0;
}

static void json_string(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        printf("\\u%04x", c);
                else if (c == 0xc2 && (unsigned char) s[1] >= 0x80 && (unsigned char) s[1] <= 0x9f)
                        printf("\\u%04x", (unsigned char) *++s);     /* a C1 control */
                else
                        putchar(c);
        }
        putchar('"');
}

/* A string from ublkd for a terminal: a backing file's name is the caller's choice, and may hold
 * escape sequences meant for whoever reads it (root, with ublkctl show).  Control characters (C0,
 * DEL and C1 in UTF-8) and backslashes are written as \xNN. */
static void print_escaped(const char *s)
{
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c < 0x20 || *c == 0x7f || *c == '\\')
                        printf("\\x%02x", *c);
                else if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
                        printf("\\x%02x\\x%02x", c[0], c[1]);
                        c++;
                } else
                        putchar(*c);
        }
}

static int cmd_list(int argc, char *argv[])
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name, *target, *state, *blk, *path;
        int w_id = 2, w_name = 4, w_target = 6, w_state = 5;
        uint32_t id;
        int r;

        if (argc > 1)
                return usage_error("takes no arguments, not '%s'", argv[1]);
        r = connect_bus(&bus);
        if (r < 0)
                return -r;
        r = sd_bus_call_method(bus, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE, "ListDevices",
                               &error, &reply, NULL);
        if (r < 0) {
                r = bus_failure(&error, r, "list");
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(usssso)");
        if (r < 0)
                return bus_failure(&error, r, "unexpected reply from ublkd");

        /* The table's columns fit their widest cell (names can have 64 characters): a first
         * pass measures, a second prints. */
        for (int pass = 0; pass < 2; pass++) {
                if (pass == 1) {
                        r = sd_bus_message_rewind(reply, false);
                        if (r < 0)
                                return bus_failure(&error, r, "unexpected reply from ublkd");
                        if (arg_json)
                                json_open('[');
                        else if (arg_legend)
                                printf("%-*s %-*s %-*s %-*s %s\n", w_id, "ID", w_name, "NAME", w_target, "TARGET",
                                       w_state, "STATE", "BLOCK");
                }
                while ((r = sd_bus_message_read(reply, "(usssso)", &id, &name, &target, &state, &blk, &path)) > 0) {
                        if (pass == 0) {
                                int n = snprintf(NULL, 0, "%" PRIu32, id);

                                w_id = MAX(w_id, n);
                                w_name = MAX(w_name, (int) strlen(*name ? name : "-"));
                                w_target = MAX(w_target, (int) strlen(target));
                                w_state = MAX(w_state, (int) strlen(state));
                        } else if (arg_json) {
                                /* The keys are the D-Bus properties' names, as in show. */
                                json_next(NULL);
                                json_open('{');
                                json_next("Id");
                                printf("%" PRIu32, id);
                                json_next("Name");
                                json_string(name);
                                json_next("Target");
                                json_string(target);
                                json_next("State");
                                json_string(state);
                                json_next("BlockDevice");
                                json_string(blk);
                                json_close('}');
                        } else
                                printf("%-*" PRIu32 " %-*s %-*s %-*s %s\n", w_id, id, w_name, *name ? name : "-",
                                       w_target, target, w_state, state, *blk ? blk : "-");
                }
                if (r < 0)
                        return bus_failure(&error, r, "unexpected reply from ublkd");
        }
        if (arg_json)
                json_close(']');
        return 0;
}

static int cmd_show(int argc, char *argv[])
{
        static const struct { const char *name; char type; } props[] = {
                { "Id", 'u' }, { "Name", 's' }, { "Target", 's' }, { "State", 's' }, { "BlockDevice", 's' },
                { "CharDevice", 's' }, { "Size", 't' }, { "LogicalBlockSize", 'u' }, { "Queues", 'u' },
                { "Depth", 'u' }, { "ReadOnly", 'b' }, { "DirectIO", 'b' }, { "ZeroCopy", 'b' },
                { "OwnerUID", 'u' }, { "OwnerGID", 'u' }, { "Flags", 't' }, { "Backing", 's' },
                { "Recovery", 's' }, { "TargetStatus", 's' },
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (argc != 2)
                return usage_error("needs one device ID or name");
        r = connect_bus(&bus);
        if (r < 0)
                return -r;
        r = resolve_device(bus, argv[1], &path);
        if (r < 0)
                return -r;
        if (arg_json)
                json_open('{');
        for (size_t i = 0; i < ELEMENTSOF(props); i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                char sig[2] = { props[i].type, 0 };
                union { uint32_t u; uint64_t t; int b; const char *s; } v;

                r = sd_bus_get_property(bus, UBLKD_BUS_NAME, path, UBLKD_DEVICE_IFACE, props[i].name, &error,
                                        &reply, sig);
                if (r >= 0)
                        r = sd_bus_message_read(reply, sig, &v);    /* already inside the variant */
                if (r < 0 && strcmp(props[i].name, "Backing") == 0 &&
                    sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED)) {
                        /* Only root and the owner may see where a device's data lives. */
                        sd_bus_error_free(&error);
                        if (arg_json) {
                                json_next("Backing");
                                fputs("null", stdout);
                        } else
                                printf("%-17s (hidden: not your device)\n", props[i].name);
                        continue;
                }
                if (r < 0) {
                        r = bus_failure(&error, r, "show");
                        sd_bus_error_free(&error);
                        return r;
                }
                if (arg_json)
                        json_next(props[i].name);
                else
                        printf("%-17s ", props[i].name);
                switch (props[i].type) {
                case 'u': printf("%" PRIu32, v.u); break;
                case 't':
                        if (!arg_json && strcmp(props[i].name, "Flags") == 0) {
                                /* The hex, then the UBLK_F_* names; JSON keeps the number. */
                                printf("0x%" PRIx64, v.t);
                                if (v.t) {
                                        fputs(" (", stdout);
                                        print_flag_names(v.t, " ");
                                        putchar(')');
                                }
                        } else
                                printf("%" PRIu64, v.t);
                        break;
                case 'b': printf("%s", v.b ? "true" : "false"); break;
                default:
                        if (arg_json)
                                json_string(v.s);
                        else if (*v.s)
                                print_escaped(v.s);
                        else
                                putchar('-');
                }
                if (!arg_json)
                        putchar('\n');
        }
        if (arg_json)
                json_close('}');
        return 0;
}

/* One method call on the device object at path; returns an exit code. */
static int call_on_path(sd_bus *bus, const char *path, const char *method, const char *what)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, UBLKD_BUS_NAME, path, UBLKD_DEVICE_IFACE, method);
        if (r >= 0)
                r = sd_bus_call(bus, m, op_timeout_usec, &error, NULL);
        if (r < 0) {
                r = bus_failure(&error, r, what);
                sd_bus_error_free(&error);
                return r;
        }
        return 0;
}

/* start, stop, recover and del: one method call on one device, by ID or name. */
static int call_device_method(int argc, char *argv[], const char *method)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        char what[64];
        int r;

        if (argc != 2)
                return usage_error("needs one device ID or name");
        r = connect_bus_for_change(&bus);
        if (r < 0)
                return -r;
        r = resolve_device(bus, argv[1], &path);
        if (r < 0)
                return -r;
        snprintf(what, sizeof(what), "%s", argv[0]);
        return call_on_path(bus, path, method, what);
}

static int cmd_start(int argc, char *argv[])
{
        return call_device_method(argc, argv, "Start");
}

static int cmd_stop(int argc, char *argv[])
{
        return call_device_method(argc, argv, "Stop");
}

static int cmd_recover(int argc, char *argv[])
{
        return call_device_method(argc, argv, "Recover");
}

static int cmd_del(int argc, char *argv[])
{
        return call_device_method(argc, argv, "Remove");
}

/* The object path and state of root's device named name; 0 if there is none, an error if the
 * device of that name is not root's. */
static int find_by_name(sd_bus *bus, const char *name, char **ret_path, char **ret_state)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint32_t owner = 0;
        int r;

        r = sd_bus_call_method(bus, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE, "GetDeviceByName",
                               &error, &reply, "s", name);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, UBLKD_ERROR_NO_SUCH_DEVICE)) {
                        sd_bus_error_free(&error);
                        return 0;
                }
                r = bus_failure(&error, r, "cannot look up the device");
                sd_bus_error_free(&error);
                return -r;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(*ret_path = strdup(path)))
                return -EXIT_FAILURE;
        r = sd_bus_get_property_trivial(bus, UBLKD_BUS_NAME, path, UBLKD_DEVICE_IFACE, "OwnerUID", &error, 'u',
                                        &owner);
        if (r >= 0 && owner != 0) {
                /* /etc/ublk/NAME.conf is root's, and so is the device it names: mounting a user's
                 * device in its place would hand root's mount points to that user. */
                fprintf(stderr, "ublkctl: the device named '%s' belongs to uid %" PRIu32 ", not to root: "
                        "%s/%s.conf names a device of root's (remove the other device first)\n",
                        name, owner, UBLK_CONF_DIR, name);
                return -EXIT_FAILURE;
        }
        if (r >= 0)
                r = sd_bus_get_property_string(bus, UBLKD_BUS_NAME, path, UBLKD_DEVICE_IFACE, "State", &error,
                                               ret_state);
        if (r < 0) {
                r = bus_failure(&error, r, "cannot read the device");
                sd_bus_error_free(&error);
                return -r;
        }
        return 1;
}

/* ublk@NAME.service's ExecStart: the device of /etc/ublk/NAME.conf, created or started. */
static int cmd_up(int argc, char *argv[])
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL, *state = NULL;
        struct ublk_conf conf;
        char fname[128], err[256];
        FILE *f;
        int r;

        if (argc != 2)
                return usage_error("needs a NAME (it reads %s/NAME.conf)", UBLK_CONF_DIR);
        if (!device_name_is_valid(argv[1]) || device_name_user_len(argv[1]))
                return usage_error("invalid name '%s': use A-Z a-z 0-9 - _ . (not first: - .)", argv[1]);
        snprintf(fname, sizeof(fname), "%s/%s.conf", UBLK_CONF_DIR, argv[1]);
        f = fopen(fname, "re");
        if (!f) {
                fprintf(stderr, "ublkctl: cannot open %s: %s\n", fname, strerror(errno));
                return EXIT_FAILURE;
        }
        r = ublk_conf_parse(f, fname, &conf, err, sizeof(err));
        fclose(f);
        if (r < 0) {
                fprintf(stderr, "ublkctl: %s\n", err);
                return EXIT_FAILURE;
        }

        r = connect_bus_for_change(&bus);
        if (r >= 0)
                r = find_by_name(bus, argv[1], &path, &state);
        if (r > 0) {
                /* Added by hand, or stopped: the configuration file does not override it. */
                ublk_conf_free(&conf);
                if (strcmp(state, "live") == 0)
                        return 0;
                return call_on_path(bus, path, "Start", "up");
        }
        if (r < 0) {
                ublk_conf_free(&conf);
                return -r;
        }

        r = add_from_conf(&conf, argv[1]);
        ublk_conf_free(&conf);
        return r;
}

/* ublk@NAME.service's ExecStop: removes the device named NAME if there is one. */
static int cmd_down(int argc, char *argv[])
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL, *state = NULL;
        int r;

        if (argc != 2)
                return usage_error("needs a NAME");
        if (!device_name_is_valid(argv[1]) || device_name_user_len(argv[1]))
                return usage_error("invalid name '%s': use A-Z a-z 0-9 - _ . (not first: - .)", argv[1]);
        r = connect_bus_for_change(&bus);
        if (r >= 0)
                r = find_by_name(bus, argv[1], &path, &state);
        if (r <= 0)
                return -r;
        return call_on_path(bus, path, "Remove", "down");
}

static int cmd_features(int argc, char *argv[])
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t features;
        int r;

        if (argc > 1)
                return usage_error("takes no arguments, not '%s'", argv[1]);
        r = connect_bus(&bus);
        if (r < 0)
                return -r;
        r = sd_bus_get_property_trivial(bus, UBLKD_BUS_NAME, UBLKD_MANAGER_PATH, UBLKD_MANAGER_IFACE,
                                        "KernelFeatures", &error, 't', &features);
        if (r < 0) {
                r = bus_failure(&error, r, "features");
                sd_bus_error_free(&error);
                return r;
        }
        if (arg_json) {
                json_open('{');
                json_next("KernelFeatures");
                printf("%" PRIu64, features);
                json_close('}');
                return 0;
        }
        /* The hex alone when piped: scripts do (( $(ublkctl features) & 0x20 )). On a terminal,
         * each bit's name follows, one a line. */
        printf("0x%" PRIx64 "\n", features);
        if (isatty(STDOUT_FILENO)) {
                for (size_t i = 0; i < ELEMENTSOF(ublk_flags); i++)
                        if (features & ublk_flags[i].bit)
                                printf("  %-30s 0x%" PRIx64 "\n", ublk_flags[i].name, ublk_flags[i].bit);
                features &= ~(uint64_t) 0;
                for (size_t i = 0; i < ELEMENTSOF(ublk_flags); i++)
                        features &= ~ublk_flags[i].bit;
                if (features)
                        printf("  %-30s 0x%" PRIx64 "\n", "(unknown)", features);
        }
        return 0;
}

int main(int argc, char *argv[])
{
        static const struct option global_options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "json", optional_argument, NULL, OPT_JSON },
                { "no-legend", no_argument, NULL, OPT_NO_LEGEND },
                { "no-ask-password", no_argument, NULL, OPT_NO_ASK_PASSWORD },
        };
        /* The global ones, add's (add.h), the end. */
        struct option options[ELEMENTSOF(global_options) + ADD_LONG_OPTIONS_MAX + 1] = {};
        size_t n_options = 0;
        static const struct {
                const char *name;
                int (*fn)(int argc, char *argv[]);
        } commands[] = {
                { "add", cmd_add },
                { "list", cmd_list },
                { "show", cmd_show },
                { "start", cmd_start },
                { "stop", cmd_stop },
                { "recover", cmd_recover },
                { "del", cmd_del },
                { "up", cmd_up },
                { "down", cmd_down },
                { "features", cmd_features },
        };
        bool show_help = false, show_version = false, json_auto = false;
        char err[256] = "";
        const char *add_only = NULL;   /* an option of add's, given with another command */
        int c, (*fn)(int argc, char *argv[]) = NULL;

        (void) sd_bus_error_add_map(ublkd_bus_error_map);
        /* One pass over the whole line: options may come before or after the command and its
         * arguments (getopt_long moves them to the front); "--" ends the options. Errors are
         * reported once the command is known, so that they can name it. */
        for (size_t i = 0; i < ELEMENTSOF(global_options); i++)
                options[n_options++] = global_options[i];
        n_options += add_long_options(options + n_options, OPT_ADD);
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hj", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        show_help = true;
                        break;
                case OPT_VERSION:
                        show_version = true;
                        break;
                case 'j':
                        json_auto = true;
                        break;
                case OPT_JSON:
                        if (!optarg)
                                json_auto = true;
                        else if (strcmp(optarg, "pretty") == 0)
                                json_auto = false, arg_json = JSON_PRETTY;
                        else if (strcmp(optarg, "short") == 0)
                                json_auto = false, arg_json = JSON_SHORT;
                        else if (strcmp(optarg, "off") == 0)
                                json_auto = false, arg_json = JSON_OFF;
                        else if (!*err)
                                snprintf(err, sizeof(err), "--json takes pretty, short or off, not '%s'", optarg);
                        break;
                case OPT_NO_LEGEND:
                        arg_legend = false;
                        break;
                case OPT_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ':':
                        if (!*err)
                                snprintf(err, sizeof(err), "option '%s' needs a value", argv[optind - 1]);
                        break;
                case '?':
                        if (*err)
                                break;
                        if (optopt)
                                snprintf(err, sizeof(err), "unrecognized or ambiguous option '-%c'", optopt);
                        else
                                snprintf(err, sizeof(err), "unrecognized or ambiguous option '%s'", argv[optind - 1]);
                        break;
                default:
                        if (c >= OPT_ADD && c < OPT_ADD + ADD_LONG_OPTIONS_MAX) {
                                add_option_given(c - OPT_ADD, optarg);
                                if (!add_only)
                                        for (const struct option *o = options; o->name; o++)
                                                if (o->val == c)
                                                        add_only = o->name;
                        }
                }
        }
        if (json_auto)
                arg_json = isatty(STDOUT_FILENO) ? JSON_PRETTY : JSON_SHORT;

        if (optind < argc) {
                for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                        if (strcmp(argv[optind], commands[i].name) == 0) {
                                arg_verb = commands[i].name;
                                fn = commands[i].fn;
                        }
        }
        if (*err)
                return usage_error("%s", err);
        if (show_help && fn == cmd_add)
                return add_help(argc - optind, argv + optind);
        if (show_help) {
                help();
                return 0;
        }
        if (show_version) {
                printf("ublkctl %s\n", PACKAGE_VERSION);
                return 0;
        }
        if (optind >= argc)
                return usage_error("missing command: add, list, show, start, stop, recover, del, up, down or features");
        if (!fn)
                return usage_error("unknown command '%s'", argv[optind]);
        if (add_only && fn != cmd_add)
                return usage_error("--%s is an option of add only", add_only);

        c = fn(argc - optind, argv + optind);
        polkit_agent_close();
        return c;
}
