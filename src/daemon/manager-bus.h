/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The org.ublk.ublkd1.Manager object at /org/ublk/ublkd1: Add (options as add-options.h has
 * them, each target's handed to the target), GetDevice, GetDeviceByName, ListDevices and the
 * Version, KernelFeatures and Targets properties.  It puts new devices on the bus through
 * device-bus.h; device-bus.h never calls back into it.
 */

#include "manager.h"

int bus_manager_register(struct manager *m);
