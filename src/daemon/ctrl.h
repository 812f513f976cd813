/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Client of /dev/ublk-control.
 *
 * Every command is one URING_CMD on a private, short-lived SQE128 ring, so
 * commands may be issued from any thread at the same time without locking
 * (START_DEV, for one, blocks until every queue has fetched its tags).
 * Opcodes are the ioctl-encoded ones when the kernel advertises
 * UBLK_F_CMD_IOCTL_ENCODE, the legacy ones otherwise (6.1 has no GET_FEATURES).
 *
 * All functions return 0 or a negative errno from the kernel; they do not log.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ublk_cmd.h"

struct ublk_ctrl {
        int fd;
        uint64_t features;      /* GET_FEATURES, 0 when the kernel lacks it */
        bool ioctl_encode;
        /* The driver is ublkd's own module with splice() on /dev/ublkcN (module parameter
         * "splice" is Y): a USER_COPY server can move a write's data without copying it. */
        bool splice;
};

int ublk_ctrl_open(struct ublk_ctrl *ctrl);
void ublk_ctrl_close(struct ublk_ctrl *ctrl);

/* info->dev_id is an input (-1 = let the kernel choose) and an output. */
int ublk_ctrl_add_dev(const struct ublk_ctrl *ctrl, struct ublksrv_ctrl_dev_info *info);
/* The same for uid and gid (not 0): an unprivileged device that they own
 * (UBLK_F_UNPRIVILEGED_DEV), added by a child process with their real ids and no capability,
 * which they may kill: -ECANCELED then, and no device is left behind. */
int ublk_ctrl_add_dev_as(const struct ublk_ctrl *ctrl, struct ublksrv_ctrl_dev_info *info, uid_t uid, gid_t gid);
/* That child's work, after user_child_main() took on the user's ids. */
int ublk_ctrl_add_dev_child(const char *ioctl_encode);
/* unprivileged: the device has UBLK_F_UNPRIVILEGED_DEV, so the commands name its char device.
 * DEL_DEV waits until /dev/ublkcN is closed, so that the id may be used again at once (a
 * device renewed under its id needs that).  Past a deadline (ublk_ctrl_del_dev_within(),
 * ublk_ctrl_bound_del_dev()) it is interrupted, and returns -EBUSY if the device is gone
 * all the same (its disk and char device deleted; its id stays taken until whoever holds
 * /dev/ublkcN closes it), -ETIMEDOUT if it is still there (ublkd's own driver stops the
 * disk first, and that wait was interrupted). */
int ublk_ctrl_del_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged);
/* The same, interrupted after sec seconds: for a device that goes for good, whose id nobody
 * waits for. */
int ublk_ctrl_del_dev_within(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, unsigned sec);
/* For ublkd's exit: every DEL_DEV, those already waiting included, waits at most sec more
 * seconds, so that one device held open cannot hold the stop of all the others. */
void ublk_ctrl_bound_del_dev(unsigned sec);
int ublk_ctrl_start_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, pid_t server_pid);
int ublk_ctrl_stop_dev(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged);
/* A device whose server went away (quiesced, or failing IO): START, then the new queues fetch
 * their tags, then END, which waits for them like START_DEV. */
int ublk_ctrl_start_user_recovery(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged);
int ublk_ctrl_end_user_recovery(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, pid_t server_pid);
int ublk_ctrl_set_params(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                         struct ublk_params *params);
/* UBLK_F_UPDATE_SIZE (Linux 6.16+): a live device's new capacity, in 512-byte sectors. */
int ublk_ctrl_update_size(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged, uint64_t sectors);
int ublk_ctrl_get_params(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                         struct ublk_params *params);
int ublk_ctrl_get_dev_info(const struct ublk_ctrl *ctrl, uint32_t dev_id, bool unprivileged,
                           struct ublksrv_ctrl_dev_info *info);
/* Works for any device, privileged or not, given access to /dev/ublkcN (Linux 6.5+). */
int ublk_ctrl_get_dev_info2(const struct ublk_ctrl *ctrl, uint32_t dev_id, struct ublksrv_ctrl_dev_info *info);

const char *ublk_dev_state_to_string(int state);
