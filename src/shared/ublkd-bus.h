/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The names of ublkd's D-Bus API, shared by the daemon and its clients.
 * dbus/org.ublk.ublkd1.{Manager,Device}.xml list every member, org.ublk.ublkd1(5)
 * documents them (test-bus-docs checks it), and a vm test checks that the
 * live daemon's introspection matches those files.
 */

#define UBLKD_BUS_NAME          "org.ublk.ublkd1"
#define UBLKD_MANAGER_PATH      "/org/ublk/ublkd1"
#define UBLKD_DEVICE_PATH_PREFIX "/org/ublk/ublkd1/device"
#define UBLKD_MANAGER_IFACE     "org.ublk.ublkd1.Manager"
#define UBLKD_DEVICE_IFACE      "org.ublk.ublkd1.Device"

#define UBLKD_ERROR_NO_SUCH_DEVICE  "org.ublk.ublkd1.Error.NoSuchDevice"
#define UBLKD_ERROR_BUSY            "org.ublk.ublkd1.Error.Busy"
#define UBLKD_ERROR_NOT_SUPPORTED   "org.ublk.ublkd1.Error.NotSupported"
#define UBLKD_ERROR_LIMIT_EXCEEDED  "org.ublk.ublkd1.Error.LimitExceeded"
#define UBLKD_ERROR_INVALID_ARGS    "org.ublk.ublkd1.Error.InvalidArgs"
#define UBLKD_ERROR_EXISTS          "org.ublk.ublkd1.Error.Exists"
#define UBLKD_ERROR_KERNEL          "org.ublk.ublkd1.Error.Kernel"

#include <errno.h>
#include <systemd/sd-bus.h>

/* The errno of each error name, registered with sd_bus_error_add_map() by ublkd and ublkctl:
 * sd_bus_error_get_errno() of a reply then gives it back (another client registers the same). */
static const sd_bus_error_map ublkd_bus_error_map[] __attribute__((unused)) = {
        SD_BUS_ERROR_MAP(UBLKD_ERROR_NO_SUCH_DEVICE, ENODEV),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_NOT_SUPPORTED, EOPNOTSUPP),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_LIMIT_EXCEEDED, EUSERS),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_INVALID_ARGS, EINVAL),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_EXISTS, EEXIST),
        SD_BUS_ERROR_MAP(UBLKD_ERROR_KERNEL, EIO),
        SD_BUS_ERROR_MAP_END
};
