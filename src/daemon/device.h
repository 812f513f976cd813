/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * One ublk device served by this process: its configuration, its kernel
 * identity (dev_id, /dev/ublkcN, /dev/ublkbN) and its queue threads.
 *
 * Life cycle, each step undone by the next on any failure, so a failed call
 * leaves nothing behind in the kernel:
 *   ublk_dev_add()    target init, ADD_DEV, SET_PARAMS           -> stopped
 *   ublk_dev_start()  open /dev/ublkcN, queue threads, START_DEV -> live
 *   ublk_dev_stop()   STOP_DEV, join queue threads, then DEL_DEV and ADD_DEV
 *                     + SET_PARAMS with the same id               -> stopped
 *   ublk_dev_remove() stop if live, DEL_DEV                      -> out of the kernel
 *   ublk_dev_release() target deinit, its configuration's fds closed (may flush the backing)
 *   ublk_dev_free()   ublk_dev_remove() and ublk_dev_release() if not done, free
 * A device a previous ublkd left in the kernel comes back with:
 *   ublk_dev_adopt()   target init on the saved configuration, GET_DEV_INFO; a device the
 *                      kernel stopped (DEAD) is renewed                 -> stopped or quiesced
 *   ublk_dev_recover() START_USER_RECOVERY, queue threads, END_USER_RECOVERY -> live
 * The kernel does not start a device twice (START_DEV after STOP_DEV fails),
 * so a stop, or a failed start, renews the kernel device under the same id:
 * the id stays taken, and /dev/ublkbN keeps its number.  Should the new
 * ADD_DEV fail, the device is out of the kernel and the next start adds it.
 * A device holds its id (ids.h) from ublk_dev_add() to ublk_dev_free(), in the kernel or not,
 * so that no other Add of ublkd's takes it while the device is out of the kernel.
 * These calls block (START_DEV waits for every queue to fetch its tags, DEL_DEV
 * for the char device to be released): the daemon makes them from a work
 * thread (work.h), one at a time per device, never from a queue thread.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctrl.h"
#include "target.h"
#include "ublk_cmd.h"

#define UBLK_DEV_NAME_MAX 64
#define UBLK_DEV_DEFAULT_DEPTH 128
#define UBLK_DEV_MAX_IO_BYTES (512u * 1024)
/* In ublksrv_flags, which the kernel keeps for the server: "this device is ublkd's", so that a
 * restarted ublkd knows its own devices that it has no state for ("ublkd" and a version). */
#define UBLKD_SERVER_MARK UINT64_C(0x75626c6b64000001)

struct ublk_dev_config {
        const struct ublk_target_ops *target;
        char name[UBLK_DEV_NAME_MAX + 1];       /* "" when unnamed */
        uint64_t size;
        uint32_t queues;
        uint32_t depth;
        uint32_t logical_block_size;            /* 0: the target decides (from the backing) */
        bool read_only;
        /* Both in the order of the choices of add-options.h ("auto", "on", "off"). */
        enum ublk_zero_copy {
                UBLK_ZERO_COPY_AUTO,            /* when the kernel and the target can */
                UBLK_ZERO_COPY_ON,
                UBLK_ZERO_COPY_OFF,
        } zero_copy;
        /* What the kernel does with the device's IO while no server serves it (ublkd crashed or
         * restarts): hold it and hand it to the next server, or fail it at once (Linux 6.13+). */
        enum ublk_recovery {
                UBLK_RECOVERY_DEFAULT,          /* reissue where the kernel and the device allow it */
                UBLK_RECOVERY_REISSUE,
                UBLK_RECOVERY_FAIL_IO,
                UBLK_RECOVERY_NONE,
        } recovery;
        /* Not 0: an unprivileged device of this user (see ublk_ctrl_add_dev_as()). */
        uid_t owner_uid;
        gid_t owner_gid;
        /* The target's own options (target.h), owned: ublk_dev_config_clear() frees it. */
        void *target_config;
};

struct ublk_queue;

struct ublk_dev {
        const struct ublk_ctrl *ctrl;
        uint32_t id;
        struct ublk_dev_config config;
        struct ublksrv_ctrl_dev_info info;
        int cdev_fd;
        bool in_kernel;         /* ADD_DEV done, DEL_DEV not yet */
        bool live;              /* START_DEV done, STOP_DEV not yet */
        bool quiesced;          /* adopted with no server: IO waits (or fails) until recovered */
        bool adopting;          /* in init() of a device the kernel already had: its server may be restarting */
        bool unprivileged;      /* UBLK_F_UNPRIVILEGED_DEV: config.owner_uid's */
        bool released;          /* ublk_dev_release() done */
        struct ublksrv_ctrl_dev_info add_info;  /* what ADD_DEV is sent again with */
        struct ublk_params params;
        const char *refused_by;         /* the command the kernel refused last: "ADD_DEV", "SET_PARAMS" */
        /* UBLK_F_AUTO_BUF_REG: the kernel lends each request's pages to the queue ring as
         * fixed buffer <tag>, and the target does fixed-buffer IO on them: no copy. */
        bool zero_copy;
        /* UBLK_F_USER_COPY with ublkd's own driver: the target moves request data with splice()
         * through a pipe per tag, a write's data without a copy (ctrl->splice). */
        bool splice;
        bool direct_io;         /* set by the target: it does O_DIRECT IO on its backing */
        bool worker_io;         /* set by the target: io_uring hands its backing IO to worker threads */
        struct ublk_queue *queues;
        void *target_data;
};

/* Tests only ($UBLKD_TEST_START_DELAY_MS): how long START_DEV waits, to show that a slow start
 * blocks no other caller. */
extern unsigned ublk_test_start_delay_ms;
/* Tests only ($UBLKD_TEST_FETCH_DELAY_MS): queue 0 fetches its tags this late, after START_DEV. */
extern unsigned ublk_test_fetch_delay_ms;

void ublk_dev_config_init(struct ublk_dev_config *config);
/* Checks ranges that do not depend on the target; *reason names the fix. */
int ublk_dev_config_validate(const struct ublk_dev_config *config, const char **reason);

/* dev-config.c: a configuration from the options of add-options.h.
 * Gives config (fresh from ublk_dev_config_init()) its target and the target's defaults. */
int ublk_dev_config_set_target(struct ublk_dev_config *config, const struct ublk_target_ops *target);
/* Frees what config owns (the target's configuration and its fds); config stays valid, and
 * empty of them. */
void ublk_dev_config_clear(struct ublk_dev_config *config);
/* Option o, which config->target takes, set to v: a common one in config, the target's own in
 * its configuration.  -EINVAL with why set (a message for the caller) for a bad value. */
int ublk_dev_config_set(struct ublk_dev_config *config, const struct ublk_option *o,
                        const union ublk_opt_value *v, char *why, size_t why_len);
/* Its value, as set or defaulted; -ENOENT for one that has none (an unnamed device's name). */
int ublk_dev_config_get(const struct ublk_dev_config *config, const struct ublk_option *o,
                        union ublk_opt_value *ret);

int ublk_dev_add(const struct ublk_ctrl *ctrl, struct ublk_dev_config *config, struct ublk_reason *reason,
                 struct ublk_dev **ret);
int ublk_dev_start(struct ublk_dev *dev);
/* config describes the device id as a previous ublkd created it (state.h); its backing fd
 * moves to the device.  -ESTALE when the kernel's device is not that one.  The caller holds
 * id (ids.h); once adopted, the device holds it until ublk_dev_free(). */
int ublk_dev_adopt(const struct ublk_ctrl *ctrl, struct ublk_dev_config *config, uint32_t id,
                   struct ublk_reason *reason, struct ublk_dev **ret);
/* How long a recovery waits for the kernel to let go of the old server (normally moments). */
#define UBLK_DEV_RECOVER_TIMEOUT_MS 15000
/* Serves a quiesced device again: waits up to timeout_ms for the old server to be gone. */
int ublk_dev_recover(struct ublk_dev *dev, unsigned timeout_ms);
const char *ublk_recovery_to_string(uint64_t flags);
int ublk_dev_stop(struct ublk_dev *dev);
int ublk_dev_remove(struct ublk_dev *dev);
/* After ublk_dev_remove(), what may block, for a work thread to do while the event loop may
 * still read dev->config; the id stays held until ublk_dev_free(). */
void ublk_dev_release(struct ublk_dev *dev);
/* Does not block when ublk_dev_remove() and ublk_dev_release() were done. */
void ublk_dev_free(struct ublk_dev *dev);
/* -EBUSY when /dev/ublkbN is mounted or otherwise held open exclusively. */
int ublk_dev_check_unused(const struct ublk_dev *dev);

/* Fills the basic parameters (size, block sizes, IO limits) from dev->config. */
void ublk_params_set_basic(const struct ublk_dev *dev, struct ublk_params *params);
