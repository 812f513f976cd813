/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublkd: serves ublk block devices for everyone on the system bus.
 * Life cycle: register the object tree, take the bus name, take over the devices a previous
 * ublkd left (reconcile.c), tell systemd we are ready.  On SIGTERM/SIGINT: when systemd is
 * restarting us, leave every device to the next ublkd (the kernel quiesces those that can be
 * recovered as we exit, and holds their IO); otherwise remove every device and exit.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "config.h"
#include "device-bus.h"
#include "devinfo.h"
#include "log.h"
#include "manager-bus.h"
#include "parse.h"
#include "polkit.h"
#include "ublkd-bus.h"
#include "user-child.h"

/* A default device (1 queue of depth 128, 512 KiB per request) has 64 MiB of IO buffers. */
#define USER_MAX_DEVICES_DEFAULT 16u
#define USER_MAX_QUEUE_BYTES_DEFAULT (1024ULL << 20)

/* Whether systemd is stopping us as part of a restart (systemctl restart, try-restart). */
static bool restart_pending(sd_bus *bus)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *unit = NULL, *unit_path = NULL, *type = NULL;
        const char *job_path;
        uint32_t job_id;
        int r;

        if (!bus || sd_pid_get_unit(0, &unit) < 0)
                return false;
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &unit_path);
        if (r >= 0)
                r = sd_bus_get_property(bus, "org.freedesktop.systemd1", unit_path, "org.freedesktop.systemd1.Unit",
                                        "Job", &error, &reply, "(uo)");
        if (r >= 0)
                r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
        if (r >= 0 && job_id != 0)
                r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job_path,
                                               "org.freedesktop.systemd1.Job", "JobType", &error, &type);
        if (r < 0) {
                log_warning_errno(r, "Cannot ask systemd whether %s is restarting, assuming it stops: %s", unit,
                                  error.message ?: strerror(-r));
                return false;
        }
        return job_id != 0 && (strcmp(type, "restart") == 0 || strcmp(type, "try-restart") == 0);
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct manager *m = userdata;

        if (m->exiting)
                return 0;
        m->handover = restart_pending(m->bus);
        if (m->handover)
                log_info("Received %s while systemd restarts ublkd: leaving %u device(s) to the next ublkd.",
                         strsignal((int) si->ssi_signo), m->n_devices);
        else
                log_info("Received %s, removing %u device(s) and exiting.", strsignal((int) si->ssi_signo),
                         m->n_devices);
        (void) sd_notify(0, "STOPPING=1");
        /* Operations in progress end first, and their callers get an answer while the bus is up. */
        return manager_begin_exit(m);
}

static void help(void)
{
        printf("Usage: ublkd [OPTIONS]\n\n"
               "Serve ublk block devices, controlled over the system bus (%s).\n\n"
               "  -h --help       Show this help\n"
               "     --version    Show the version\n"
               "  -d --debug      Log debug messages\n"
               "     --user-max-devices=N\n"
               "                  Devices one user other than root may have (default %u)\n"
               "     --user-max-queue-memory=SIZE\n"
               "                  IO buffer space of one user's devices (default %llu MiB)\n\n"
               "See ublkd(8).\n", UBLKD_BUS_NAME, USER_MAX_DEVICES_DEFAULT,
               (unsigned long long) (USER_MAX_QUEUE_BYTES_DEFAULT >> 20));
}

static int parse_argv(struct manager *m, int argc, char *argv[])
{
        enum { ARG_VERSION = 0x100, ARG_USER_MAX_DEVICES, ARG_USER_MAX_QUEUE_MEMORY };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "debug", no_argument, NULL, 'd' },
                { "user-max-devices", required_argument, NULL, ARG_USER_MAX_DEVICES },
                { "user-max-queue-memory", required_argument, NULL, ARG_USER_MAX_QUEUE_MEMORY },
                {}
        };
        uint32_t n;
        int c;

        while ((c = getopt_long(argc, argv, "hd", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("ublkd %s\n", PACKAGE_VERSION);
                        return 0;
                case 'd':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case ARG_USER_MAX_DEVICES:
                        if (parse_uint32(optarg, &n) < 0) {
                                log_error("Invalid --user-max-devices '%s': a number (0: no devices for users)", optarg);
                                return -EINVAL;
                        }
                        m->user_max_devices = n;
                        break;
                case ARG_USER_MAX_QUEUE_MEMORY:
                        if (parse_size(optarg, &m->user_max_queue_bytes) < 0) {
                                log_error("Invalid --user-max-queue-memory '%s': a size such as 512M or 2G", optarg);
                                return -EINVAL;
                        }
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("This program takes no arguments.");
                return -EINVAL;
        }
        return 1;
}

static int run(struct manager *m)
{
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        devinfo_clear();
        r = work_setup(m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up device operations: %m");
        /* WATCHDOG=1 pings at half of the unit's WatchdogSec=, when it has one. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        /* A missing driver is not fatal: Add reports it, and the driver may be loaded later. */
        r = ublk_ctrl_open(&m->ctrl);
        if (r < 0)
                log_warning_errno(r, "Cannot open /dev/ublk-control, is the ublk_drv module loaded? %m");
        else
                log_info("ublk kernel features: 0x%llx%s.", (unsigned long long) m->ctrl.features,
                         m->ctrl.ioctl_encode ? "" : " (legacy opcodes)");

        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        r = bus_manager_register(m);
        if (r >= 0)
                r = bus_device_register(m);
        if (r < 0)
                return log_error_errno(r, "Failed to register D-Bus objects: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");

        /* Take the name last: callers may come in as soon as we own it. */
        r = sd_bus_request_name(m->bus, UBLKD_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire bus name %s: %m", UBLKD_BUS_NAME);

        /* The name is ours: no other ublkd serves these devices. */
        r = reconcile_start(m);
        if (r < 0)
                return log_error_errno(r, "Failed to take over the devices of the previous ublkd: %m");

        (void) sd_notify(0, "READY=1\nSTATUS=Serving 0 devices (0 live).");
        log_info("ublkd %s ready on %s.", PACKAGE_VERSION, UBLKD_BUS_NAME);

        r = sd_event_loop(m->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        return r;
}

int main(int argc, char *argv[])
{
        struct manager m = {
                .ctrl = { .fd = -1 },
                .work_efd = -1,
                .user_max_devices = USER_MAX_DEVICES_DEFAULT,
                .user_max_queue_bytes = USER_MAX_QUEUE_BYTES_DEFAULT,
        };
        const char *e;
        int r;

        r = user_child_main(argc, argv);
        if (r >= 0)
                return r;
        log_setup("ublkd");
        /* Said once, not left to whatever set it last: ublkd never changes its credentials, so
         * this stays, and a crash leaves a core for systemd-coredump (ptrace is still root's). */
        (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        e = getenv("UBLKD_TEST_START_DELAY_MS");
        if (e)
                ublk_test_start_delay_ms = (unsigned) strtoul(e, NULL, 10);
        e = getenv("UBLKD_TEST_FETCH_DELAY_MS");
        if (e)
                ublk_test_fetch_delay_ms = (unsigned) strtoul(e, NULL, 10);
        r = parse_argv(&m, argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = run(&m);

        bus_authorize_cancel_all(&m);
        work_finish_all(&m);
        if (m.handover && r >= 0) {
                /* Freeing the devices would remove them.  As the process ends, the kernel
                 * quiesces those with recovery; the next ublkd takes them all over. */
                if (m.bus)
                        sd_bus_flush(m.bus);
                log_info("Left %u device(s) to the next ublkd.", m.n_devices);
                _exit(0);
        }
        manager_remove_all(&m);
        work_teardown(&m);
        if (m.bus) {
                sd_bus_flush(m.bus);
                sd_bus_flush_close_unref(m.bus);
        }
        sd_event_unref(m.event);
        ublk_ctrl_close(&m.ctrl);
        return r < 0 ? 1 : 0;
}
