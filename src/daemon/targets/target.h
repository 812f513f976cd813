/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A target turns ublk requests into work: "null" completes them at once,
 * "loop" reads and writes a backing file.  Each target lives in its own
 * targets/NAME.c and exports one const ops table, listed in target.c.
 *
 * Contract:
 *  - Its options are those of add-options.h with its bit (desc): the common ones land in
 *    ublk_dev_config, the target's own in its configuration, config_size bytes hung off
 *    ublk_dev_config.target_config.  config_init() gives them their defaults, set_option()
 *    takes one (copying strings, duping fds: values are borrowed), get_option() gives back
 *    one that was set (-ENOENT if not; what it returns stays the config's), and
 *    config_release() lets go of what the config holds (fds), leaving it readable.  The
 *    state file and the fd store save and restore them through get_option()/set_option().
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
 *  - A target whose IO completes in a library's thread instead (rbd) counts it in flight itself
 *    (q->target_inflight, q->ios[tag].target_inflight), wakes its queue with an event SQE
 *    (ublk_event_user_data(): its CQE goes to event()), and commits with ublk_queue_commit().
 *  - Per-device target state hangs off dev->target_data; per-queue state off
 *    q->target_data (set up by queue_init(), torn down by queue_deinit()).
 *  - init() may lower config.queues (nbd: a server without multi-conn), never raise it.
 *  - event(), if set, gets the CQEs of the target's SQEs built with ublk_event_user_data()
 *    (queue.h), which belong to no tag.  stopping(), if set, runs on the control side before
 *    STOP_DEV: a target that holds requests (waiting for a server) lets them go, as STOP_DEV
 *    waits for them.  status(), if set, says how the target is doing (TargetStatus), at most
 *    len bytes; the event loop calls it at any time while no work holds the device.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "add-options.h"
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

struct ublk_target_ops {
        const char *name;
        const struct ublk_target_desc *desc;    /* its name (the same) and options */
        bool user_io;           /* its IO touches files the caller passed: for a user's device, with
                                 * the user's credentials (queue.c) */
        bool zero_copy;         /* can serve IO from fixed buffers (see ublk_dev.zero_copy) */
        bool splice;            /* can move data with splice() instead (see ublk_dev.splice) */
        bool no_data;           /* never reads or writes request data (null): served with
                                 * UBLK_F_USER_COPY where the driver has it, so that the driver
                                 * copies nothing either */
        size_t config_size;
        void (*config_init)(void *config);
        int (*set_option)(void *config, const struct ublk_option *o, const union ublk_opt_value *v);
        int (*get_option)(const void *config, const struct ublk_option *o, union ublk_opt_value *ret);
        void (*config_release)(void *config);
        int (*init)(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason);
        void (*deinit)(struct ublk_dev *dev);
        int (*queue_init)(struct ublk_queue *q);
        void (*queue_deinit)(struct ublk_queue *q);
        int (*queue_io)(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod);
        int (*io_done)(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe);
        void (*event)(struct ublk_queue *q, const struct io_uring_cqe *cqe);
        void (*stopping)(struct ublk_dev *dev);
        void (*status)(struct ublk_dev *dev, char *buf, size_t len);
};

extern const struct ublk_target_ops target_null_ops;
extern const struct ublk_target_ops target_loop_ops;
#if HAVE_NBD
extern const struct ublk_target_ops target_nbd_ops;
#endif
extern const struct ublk_target_ops target_qcow2_ops;
#if HAVE_RBD
extern const struct ublk_target_ops target_rbd_ops;
#endif

const struct ublk_target_ops *target_find(const char *name);
/* NULL-terminated list of target names, in a stable order. */
const char *const *target_names(void);

/* A new configuration of target t with its defaults (NULL for a target without options of its
 * own); target_config_free() releases and frees it. */
int target_config_new(const struct ublk_target_ops *t, void **ret);
void target_config_free(const struct ublk_target_ops *t, void *config);
/* The fd that target option key holds in config, or -1. */
int target_config_fd(const struct ublk_target_ops *t, const void *config, const char *key);
/* For a user's device: -EPERM, with the reason, for a backing file ublkd must not serve for a
 * user (in memory, FUSE, pseudo file systems, a mount ublkd cannot see); 0 for others and for
 * block devices.  It never asks the file's file system (a FUSE server may never answer). */
int target_check_user_backing(int fd, struct ublk_reason *reason);
/* Whether io_uring must hand every read and write of fd to one of its worker threads (io-wq):
 * true when the file takes no non-blocking IO (FMODE_NOWAIT, which RWF_NOWAIT needs too: tmpfs
 * on 6.12 and 7.3, FUSE).  Learnt from one RWF_NOWAIT read of block_size bytes at offset 0, which
 * never waits. */
bool target_backing_needs_workers(int fd, uint32_t block_size);
/* The file system type of the mount of fd's file, from PID 1's mount table ("ext4", "fuse.sshfs");
 * -ENOENT when the mount is not in it. */
int target_backing_fs_type(int fd, char *type, size_t len);
