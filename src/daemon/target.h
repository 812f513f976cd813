/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A target turns ublk requests into work: "null" completes them at once,
 * "loop" reads and writes a backing file.  Each target lives in its own
 * target-NAME.c and exports one const ops table, listed in target.c.
 *
 * Contract:
 *  - init() runs on the control side before ADD_DEV is sent: it validates the
 *    device's configuration, may adjust it (size from the backing file, block
 *    size), and fills the ublk_params it needs.  It returns 0 or a negative
 *    errno and leaves nothing allocated on failure; where the caller can fix
 *    it, it says how in *reason.  deinit() undoes it.
 *  - queue_io() runs on a queue thread for one request.  It returns the
 *    result to commit at once (bytes done, or a negative errno), or
 *    UBLK_TARGET_QUEUED after it put SQEs on the queue's ring whose user_data
 *    was built with ublk_target_user_data(); each of their completions is
 *    handed to io_done(), which returns a result to commit or
 *    UBLK_TARGET_QUEUED while more are outstanding.
 *  - Per-device target state hangs off dev->target_data; per-queue state off
 *    q->target_data (set up by queue_init(), torn down by queue_deinit()).
 *  - event(), if set, gets the CQEs of the target's SQEs built with ublk_event_user_data()
 *    (queue.h), which belong to no tag.  stopping(), if set, runs on the control side before
 *    STOP_DEV: a target that holds requests (waiting for a server) must let them go, as
 *    STOP_DEV waits for them.  status(), if set, says how the target is doing for
 *    `ublkctl show` (TargetStatus); it may be called from the event loop at any time.
 *  - init() may lower config.queues (never raise it).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct io_uring_cqe;
struct ublksrv_io_desc;
struct ublk_dev;
struct ublk_queue;
struct ublk_params;

/* Why an init() failed, in words that name the fix; empty when the errno says it all. */
struct ublk_reason {
        char text[256];
};

#define UBLK_TARGET_QUEUED 1

/* Add options that only some targets take; any other target refuses them. */
enum {
        TARGET_OPT_BACKING   = 1 << 0,  /* "backing" (h), required when taken */
        TARGET_OPT_OFFSET    = 1 << 1,  /* "offset" (t) */
        TARGET_OPT_DIRECT_IO = 1 << 2,  /* "direct-io" (s) */
        TARGET_OPT_NBD       = 1 << 3,  /* nbd's: "uri" (s, required), "sockets" (ah), "tls-psk" (h),
                                         * "connect-timeout", "reconnect-timeout" (u, seconds) */
};

struct ublk_target_ops {
        const char *name;
        unsigned options;       /* TARGET_OPT_*: the Add options beyond the common ones */
        bool zero_copy;         /* can serve IO from fixed buffers (see ublk_dev.zero_copy) */
        bool splice;            /* can move data with splice() instead (see ublk_dev.splice) */
        int (*init)(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason);
        void (*deinit)(struct ublk_dev *dev);
        int (*queue_init)(struct ublk_queue *q);
        void (*queue_deinit)(struct ublk_queue *q);
        int (*queue_io)(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod);
        int (*io_done)(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe);
        void (*event)(struct ublk_queue *q, const struct io_uring_cqe *cqe);
        void (*stopping)(struct ublk_dev *dev);
        /* Writes at most len bytes to buf; "" when there is nothing to say. */
        void (*status)(struct ublk_dev *dev, char *buf, size_t len);
};

extern const struct ublk_target_ops target_null_ops;
extern const struct ublk_target_ops target_loop_ops;
#if HAVE_NBD
extern const struct ublk_target_ops target_nbd_ops;
#endif

const struct ublk_target_ops *target_find(const char *name);
/* NULL-terminated list of target names, in a stable order. */
const char *const *target_names(void);
/* For a user's device: -EPERM, with the reason, for a backing file ublkd must not serve for a
 * user (in memory, FUSE, pseudo file systems, a mount ublkd cannot see); 0 for others and for
 * block devices.  It never asks the file's file system (a FUSE server may never answer). */
int target_check_user_backing(int fd, struct ublk_reason *reason);
/* The file system type of the mount of fd's file, from PID 1's mount table ("ext4", "fuse.sshfs");
 * -ENOENT when the mount is not in it. */
int target_backing_fs_type(int fd, char *type, size_t len);
