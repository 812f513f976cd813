/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "null": a device of a given size whose requests complete at once without
 * touching data, the user-space twin of the kernel's null_blk.  Useful to
 * measure the ublk path itself.  Where the driver has UBLK_F_USER_COPY the
 * device is made with it, so the driver copies nothing either: a read leaves
 * the reader's buffer as it was, as null_blk does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "device.h"
#include "target.h"
#include "ublk_cmd.h"

static int null_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        if (dev->config.size == 0) {
                snprintf(reason->text, sizeof(reason->text), "Target 'null' needs a size (option 'size', in bytes)");
                return -EINVAL;
        }
        if (dev->config.logical_block_size == 0)
                dev->config.logical_block_size = 512;
        ublk_params_set_basic(dev, params);
        return 0;
}

static int null_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        switch (ublksrv_get_op(iod)) {
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_WRITE:
                return (int) (iod->nr_sectors << 9);
        case UBLK_IO_OP_FLUSH:
        case UBLK_IO_OP_DISCARD:
        case UBLK_IO_OP_WRITE_ZEROES:
                return 0;
        default:
                return -EOPNOTSUPP;
        }
}

const struct ublk_target_ops target_null_ops = {
        .name = "null",
        .desc = &ublk_target_null,
        .no_data = true,
        .init = null_init,
        .queue_io = null_queue_io,
};
