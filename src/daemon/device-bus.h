/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The org.ublk.ublkd1.Device objects, one per device at /org/ublk/ublkd1/device/<id>: Start,
 * Stop, Remove, Recover and the device's properties, and the signals that tell clients a
 * device came, went or changed state.  It knows nothing of Add (manager-bus.h).
 */

#include <stdint.h>

#include "manager.h"

int bus_device_register(struct manager *m);
/* Malloc'ed; NULL when out of memory. */
char *bus_device_path(uint32_t id);
int bus_device_emit_added(struct manager *m, struct managed_dev *md);
int bus_device_emit_removed(struct manager *m, uint32_t id);
int bus_device_emit_state_changed(struct manager *m, struct managed_dev *md);
