/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * What udev needs to know about a device that only ublkd knows: its name.  For each device
 * with a block device, ublkd keeps /run/ublkd/devices/ublkbN with KEY=VALUE lines
 * (UBLK_NAME, UBLK_TARGET, UBLK_UNPRIVILEGED), written before START_DEV, so that the add event of the block
 * device finds it; udev/60-ublk.rules imports it and makes /dev/ublk/by-name/NAME.
 * devinfo_wait_udev() then waits until udev has handled the block device, so that the
 * caller of Add or Start finds the symlink and the ownership in place.
 */

#include <stdbool.h>
#include <stdint.h>

#define DEVINFO_DIR "/run/ublkd/devices"

/* unprivileged: a user's device; for root's, the rules skip asking the kernel for the owner. */
int devinfo_write(uint32_t id, const char *name, const char *target, bool unprivileged);
void devinfo_remove(uint32_t id);
/* CLOCK_MONOTONIC, as udev's initialization times. */
uint64_t devinfo_now_usec(void);
/* 0 once udev has initialized the device (e.g. "block", "ublkb0"), at since_usec or later;
 * -ETIMEDOUT after timeout_ms. */
int devinfo_wait_udev(const char *subsystem, const char *sysname, uint64_t since_usec, unsigned timeout_ms);
/* At start: no device is ours yet, whatever a crashed predecessor left. */
void devinfo_clear(void);
