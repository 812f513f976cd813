/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * What a restarted ublkd needs to serve the devices of the one before it (reconcile.c):
 *  - /run/ublkd/state/<id>: the device's configuration as KEY=VALUE lines (target, name, size,
 *    queues, owner, ...; never a secret), written once the device is in the kernel, removed with it;
 *    its target's options as add-options.h encodes them (UBLK_OPT_NO_STATE ones aside);
 *  - the fds of its UBLK_OPT_FDSTORE options (loop's backing), in systemd's file descriptor
 *    store under the name "<key>-<id>" (FDSTORE=1), an FDS option's (qcow2's backing-chain)
 *    as "<key>-<id>-<n>", so that no ublkd ever opens a caller's path again;
 * A device in the kernel with no state file is told apart by UBLKD_SERVER_MARK (device.h): one
 * a ublkd lost (it died between ADD_DEV and saving the state) from one another server serves.
 * Outside systemd (no $NOTIFY_SOCKET) there is no fd store: such devices cannot be recovered.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "device.h"

#define STATE_DIR "/run/ublkd/state"

/* backing: informational (the Backing property), may be NULL. */
int state_save(const struct ublk_dev *dev, const char *backing);
/* The device is gone: its file and its stored fd. */
void state_forget(uint32_t id);
/* -ENOENT when there is no state for id.  The target's fds are not set (state_fd_take()). */
int state_load(uint32_t id, struct ublk_dev_config *config, char **ret_backing);
/* The N of the entries PREFIX<N> of dir (STATE_DIR, ""; /sys/class/ublk-char, "ublkc"), sorted;
 * *ret is malloc'ed.  A missing dir has none. */
int list_ids(const char *dir, const char *prefix, uint32_t **ret, unsigned *ret_n);

/* Takes the fds systemd passed back (sd_listen_fds_with_names()). */
void state_fds_load(void);
/* The stored fd of FD option key of device id, now the caller's, or -1. */
int state_fd_take(const char *key, uint32_t id);
/* The stored fds of FDS option key of device id, in their order, now the caller's (*ret
 * malloc'ed; 0 and none when none were stored); -ENOENT when one of them is missing. */
int state_fds_take(const char *key, uint32_t id, int **ret, unsigned *ret_n);
/* A name in the store: its option, device id and index (-1 for an FD's).  -EINVAL if it is
 * none of ours. */
struct ublk_option;
int state_fd_name_parse(const char *name, const struct ublk_option **ret, uint32_t *id, int *index);
/* Closes the fds nobody took and drops them from the store. */
void state_fds_drop_unused(void);
