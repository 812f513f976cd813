/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "loop": a device backed by a regular file or a block device that the
 * caller opened and passed as a file descriptor (ublkd never opens a path
 * for a caller).  Requests become io_uring operations on that fd, submitted
 * on the queue's own ring: READ/WRITE -> read/write (FUA -> RWF_DSYNC),
 * FLUSH -> fdatasync, DISCARD -> punch hole, WRITE_ZEROES -> zero range (or
 * punch hole when unmapping is allowed).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "device.h"
#include "log.h"
#include "queue.h"
#include "target.h"
#include "ublk_cmd.h"

static int backing_size(int fd, uint64_t *ret)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                *ret = (uint64_t) st.st_size;
                return 0;
        }
        if (S_ISBLK(st.st_mode))
                return ioctl(fd, BLKGETSIZE64, ret) < 0 ? -errno : 0;
        return -EBADFD;
}

static int loop_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        int fd = dev->config.backing_fd;
        uint64_t avail;
        int flags, r;

        if (fd < 0) {
                snprintf(reason->text, sizeof(reason->text),
                         "Target 'loop' needs a backing file: pass an open fd as option 'backing'");
                return -EBADF;
        }
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if ((flags & O_ACCMODE) == O_WRONLY) {
                snprintf(reason->text, sizeof(reason->text),
                         "The backing fd is open write-only: open it read-write (or read-only for a read-only device)");
                return -EBADFD;
        }
        if ((flags & O_ACCMODE) == O_RDONLY)
                dev->config.read_only = true;

        r = backing_size(fd, &avail);
        if (r == -EBADFD) {
                snprintf(reason->text, sizeof(reason->text),
                         "The backing fd is neither a regular file nor a block device");
                return r;
        }
        if (r < 0)
                return r;
        if (dev->config.size == 0)
                dev->config.size = avail - avail % dev->config.logical_block_size;
        if (dev->config.size == 0) {
                snprintf(reason->text, sizeof(reason->text),
                         "The backing file is smaller than one block: give it a size first (truncate -s 1G FILE)");
                return -ENOSPC;
        }
        if (dev->config.size > avail) {
                snprintf(reason->text, sizeof(reason->text),
                         "The backing file has %llu bytes, less than the requested size %llu: grow it or ask for less",
                         (unsigned long long) avail, (unsigned long long) dev->config.size);
                return -ENOSPC;
        }

        ublk_params_set_basic(dev, params);
        params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA;
        params->types |= UBLK_PARAM_TYPE_DISCARD;
        params->discard = (struct ublk_param_discard) {
                .discard_granularity = 4096,
                .max_discard_sectors = UINT32_MAX >> 9,
                .max_write_zeroes_sectors = UINT32_MAX >> 9,
                .max_discard_segments = 1,
        };
        return 0;
}

static int loop_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        int fd = q->dev->config.backing_fd;
        unsigned op = ublksrv_get_op(iod), flags = ublksrv_get_flags(iod);
        uint64_t off = iod->start_sector << 9;
        uint32_t len = iod->nr_sectors << 9;
        struct io_uring_sqe *sqe;

        switch (op) {
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_WRITE:
        case UBLK_IO_OP_FLUSH:
        case UBLK_IO_OP_DISCARD:
        case UBLK_IO_OP_WRITE_ZEROES:
                break;
        default:
                return -EOPNOTSUPP;
        }
        sqe = ublk_queue_get_sqe(q);
        if (!sqe)
                return -EAGAIN;

        switch (op) {
        case UBLK_IO_OP_READ:
                io_uring_prep_read(sqe, fd, ublk_queue_io_buf(q, tag), len, off);
                break;
        case UBLK_IO_OP_WRITE:
                io_uring_prep_write(sqe, fd, ublk_queue_io_buf(q, tag), len, off);
                if (flags & UBLK_IO_F_FUA)
                        sqe->rw_flags = RWF_DSYNC;
                break;
        case UBLK_IO_OP_FLUSH:
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                break;
        case UBLK_IO_OP_DISCARD:
                io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
                break;
        case UBLK_IO_OP_WRITE_ZEROES:
                io_uring_prep_fallocate(sqe, fd, (flags & UBLK_IO_F_NOUNMAP) ? FALLOC_FL_ZERO_RANGE :
                                        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
                break;
        }
        sqe->user_data = ublk_target_user_data(tag, op);
        q->ios[tag].target_inflight++;
        q->target_inflight++;
        return UBLK_TARGET_QUEUED;
}

static int loop_io_done(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        /* Bytes for READ/WRITE; 0 from fsync/fallocate, which is all the kernel wants for those. */
        return cqe->res;
}

const struct ublk_target_ops target_loop_ops = {
        .name = "loop",
        .takes_backing = true,
        .init = loop_init,
        .queue_io = loop_queue_io,
        .io_done = loop_io_done,
};
