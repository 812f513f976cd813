/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The ublk device ids this ublkd holds: a device's id from the moment ublkd picks it (or
 * takes the device over) until the device is freed, whether the device is in the kernel at
 * that moment or not; an orphan's id while ublkd deletes it.
 *
 * Why ublkd picks ids instead of letting ADD_DEV hand out the lowest free one: a stop takes a
 * device out of the kernel and adds it again under its id, and a removal's DEL_DEV on the
 * in-tree driver waits until the id is free.  Were another Add of ours to get that id in
 * between, the stopped device could not come back, and the removal would wait until the new
 * device is deleted -- for ever, to the caller.  So an Add asks ADD_DEV for the lowest id
 * ublkd does not hold, and the next one if another program's device has it (EEXIST).
 *
 * Thread-safe: Adds run on work threads, one per device.
 */

#include <stdint.h>

/* The kernel's limit (MINORBITS): ADD_DEV refuses larger ids. */
#define UBLK_IDS_MAX (UINT32_C(1) << 20)

/* id is now held: -EEXIST if it was already, -EINVAL if id >= UBLK_IDS_MAX. */
int ids_hold(uint32_t id);
/* The lowest id not held, from from on, now held in *ret: -ENOSPC when there is none. */
int ids_hold_lowest(uint32_t from, uint32_t *ret);
/* id is no longer held (nothing if it was not). */
void ids_release(uint32_t id);
