/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The "qcow2" target (issue 33): a device whose data is a qcow2 image and its backing chain,
 * served by the engine of src/daemon/qcow2 (qcow2.h).  Two files:
 *   qcow2-chain.c  its options, and on the control side the chain: the fds the caller passed
 *                  checked against what each image names, opened base first; show's status
 *   qcow2.c        the queues: one qcow2_queue per ublk queue, all host IO on the queue's ring
 *
 * Contract:
 *  - The daemon never opens a path: the image ("image") and the files of its backing chain
 *    ("backing-chain", the level below the image first, the base last) come as fds that
 *    ublkctl opened as its caller.  init() refuses a chain that is not the one the images
 *    name (a level that names a backing file without one passed, a format other than the one
 *    named, more fds than levels), naming the level; it cannot tell two files apart by name.
 *  - A level's format: the one the level above names (qcow2 or raw), else the file's magic.
 *  - Every level of the chain is opened read-only; the image read-write unless the device
 *    is read-only (asked, or its fd is).  What the engine refuses (dirty bit, encryption,
 *    extended L2 for writing...) is init()'s reason, in the engine's words.
 */

#include <stdint.h>

#include "add-options.h"
#include "qcow2.h"

struct ublk_dev;
struct ublk_params;
struct ublk_reason;

struct qcow2_tconfig {
        int image_fd;                           /* owned, -1 if none */
        int chain[UBLK_FDSTORE_FDS_MAX];        /* owned */
        unsigned n_chain;
        uint64_t cache_bytes;                   /* 0: the engine's default */
};

/* dev->target_data: the opened chain, [0] the image, [n - 1] the base. */
struct qcow2_tdev {
        struct qcow2_image *level[UBLK_FDSTORE_FDS_MAX + 1];
        int fd[UBLK_FDSTORE_FDS_MAX + 1];       /* the config's: not owned */
        unsigned n;
};

void qcow2_tconfig_init(void *config);
int qcow2_tset_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v);
int qcow2_tget_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret);
void qcow2_tconfig_release(void *config);

int qcow2_tinit(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason);
void qcow2_tdeinit(struct ublk_dev *dev);
void qcow2_tstatus(struct ublk_dev *dev, char *buf, size_t len);
/* Host IO of any level of the chain is in flight (the queues wait for it before ending). */
bool qcow2_tbusy(const struct qcow2_tdev *td);
