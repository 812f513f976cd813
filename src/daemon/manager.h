/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The daemon's state: the event loop, the bus connection, the control device
 * and the devices it serves (a list in creation order).  bus-manager.c and
 * bus-device.c expose it on the bus; main.c owns its life time.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ctrl.h"
#include "device.h"

struct managed_dev {
        struct ublk_dev *dev;
        struct managed_dev *next;
};

struct manager {
        sd_event *event;
        sd_bus *bus;
        struct ublk_ctrl ctrl;
        struct managed_dev *devices;
        unsigned n_devices;
};

struct ublk_dev *manager_find_device(struct manager *m, uint32_t id);
struct ublk_dev *manager_find_device_by_name(struct manager *m, const char *name);
void manager_link_device(struct manager *m, struct ublk_dev *dev);
void manager_unlink_device(struct manager *m, struct ublk_dev *dev);
void manager_remove_all(struct manager *m);

/* bus-manager.c */
int bus_manager_register(struct manager *m);
/* Maps a kernel/daemon errno to a named D-Bus error with a message that names the fix. */
int bus_error_from_errno(sd_bus_error *error, int r, const char *what);

/* bus-device.c */
int bus_device_register(struct manager *m);
char *bus_device_path(uint32_t id);
int bus_device_emit_added(struct manager *m, struct ublk_dev *dev);
int bus_device_emit_removed(struct manager *m, uint32_t id);
int bus_device_emit_state_changed(struct manager *m, struct ublk_dev *dev);
