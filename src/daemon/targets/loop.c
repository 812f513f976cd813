/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "loop": a device backed by a regular file or a block device that the
 * caller opened and passed as a file descriptor (ublkd never opens a path
 * for a caller).  Requests become io_uring operations on that fd, submitted
 * on the queue's own ring: READ/WRITE -> read/write (FUA -> RWF_DSYNC),
 * FLUSH -> fdatasync, DISCARD -> punch hole, WRITE_ZEROES -> zero range (or
 * punch hole when unmapping is allowed).
 *
 * Splice mode (ublk_dev.splice, ublkd's own driver): each tag has a pipe,
 * and a WRITE's data goes through it with two linked splices, the device's
 * side at the request's USER_COPY offset: it reaches the backing straight
 * from the request's pages.  The driver refuses a commit while the pipe
 * still holds a write's pages, so every exit path leaves the pipe empty.
 * A READ is read into the tag's buffer, then written to the device at that
 * offset (USER_COPY): the same two copies as copy mode.  Splicing it too
 * would copy as often (into the pipe's pages, with O_DIRECT, then into the
 * request) and cost two trips to io_uring's workers: 0.82x of copy mode,
 * measured (bench/RESULTS.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "macro.h"
#include "queue.h"
#include "target.h"
#include "ublk_cmd.h"

/* loop's own options (add-options.h): backing, offset, direct-io. */
struct loop_config {
        int backing_fd;                 /* owned, -1 if none */
        uint64_t offset;                /* where the device starts in the backing */
        enum loop_direct_io {           /* in the order of the option's choices */
                LOOP_DIRECT_IO_AUTO,    /* O_DIRECT when the backing supports it */
                LOOP_DIRECT_IO_ON,
                LOOP_DIRECT_IO_OFF,
        } direct_io;
};

static void loop_config_init(void *config)
{
        struct loop_config *lc = config;

        *lc = (struct loop_config) { .backing_fd = -1, .direct_io = LOOP_DIRECT_IO_AUTO };
}

static int loop_set_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v)
{
        struct loop_config *lc = config;
        int fd;

        if (strcmp(o->key, "backing") == 0) {
                /* The caller's fd stays the caller's (a message's, the fd store's): keep a copy. */
                fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
                safe_close(lc->backing_fd);
                lc->backing_fd = fd;
        } else if (strcmp(o->key, "offset") == 0)
                lc->offset = v->u;
        else if (strcmp(o->key, "direct-io") == 0 && v->u <= LOOP_DIRECT_IO_OFF)
                lc->direct_io = (enum loop_direct_io) v->u;
        else
                return -EINVAL;
        return 0;
}

static int loop_get_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret)
{
        const struct loop_config *lc = config;

        if (strcmp(o->key, "backing") == 0) {
                if (lc->backing_fd < 0)
                        return -ENOENT;
                ret->fd = lc->backing_fd;
        } else if (strcmp(o->key, "offset") == 0)
                ret->u = lc->offset;
        else if (strcmp(o->key, "direct-io") == 0)
                ret->u = lc->direct_io;
        else
                return -ENOENT;
        return 0;
}

static void loop_config_release(void *config)
{
        struct loop_config *lc = config;

        lc->backing_fd = safe_close(lc->backing_fd);
}

static struct loop_config *loop_config(const struct ublk_dev *dev)
{
        return dev->config.target_config;
}

/* What the backing can do, learnt from the fd alone. */
struct backing_info {
        uint64_t size;
        uint32_t block_size;    /* smallest IO unit it takes: its sector size, or the O_DIRECT alignment */
};

static int backing_probe(int fd, bool direct, struct backing_info *ret)
{
        struct statx stx;
        struct stat st;
        int lbs;

        if (fstat(fd, &st) < 0)
                return -errno;
        *ret = (struct backing_info) { .block_size = 512 };
        if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, &ret->size) < 0 || ioctl(fd, BLKSSZGET, &lbs) < 0)
                        return -errno;
                ret->block_size = (uint32_t) lbs;
                return 0;
        }
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        ret->size = (uint64_t) st.st_size;
        if (!direct)
                return 0;
        /* O_DIRECT needs offsets and lengths aligned as the file system says (Linux 6.1+). */
        if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
                if (stx.stx_dio_offset_align == 0)
                        return -EOPNOTSUPP;
                ret->block_size = stx.stx_dio_offset_align;
        } else
                ret->block_size = (uint32_t) st.st_blksize;
        return 0;
}

/*
 * A second open file description of the very file the caller passed, with
 * the same access mode plus O_DIRECT.  Setting O_DIRECT on the caller's own
 * description (F_SETFL) would change it under the caller's feet; re-opening
 * through /proc/self/fd reaches the same inode without resolving any path
 * the caller named, and grants no access the caller's fd did not have.
 */
static int reopen_direct(int fd)
{
        char path[64];
        int flags = fcntl(fd, F_GETFL), nfd;

        if (flags < 0)
                return -errno;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        nfd = open(path, (flags & O_ACCMODE) | O_DIRECT | O_CLOEXEC | O_NOCTTY);
        return nfd < 0 ? -errno : nfd;
}

#define REASON(...) snprintf(reason->text, sizeof(reason->text), __VA_ARGS__)

static int loop_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        struct ublk_dev_config *c = &dev->config;
        struct loop_config *lc = loop_config(dev);
        struct backing_info bi;
        uint32_t lbs;
        int flags, r;

        if (lc->backing_fd < 0) {
                REASON("Target 'loop' needs a backing file: pass an open fd as option 'backing'");
                return -EBADF;
        }
        flags = fcntl(lc->backing_fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (flags & O_PATH) {
                /* Reopening it through /proc would grant what the caller could not open itself. */
                REASON("The backing fd is an O_PATH descriptor: open the file for reading and writing");
                return -EBADFD;
        }
        if ((flags & O_ACCMODE) == O_WRONLY) {
                REASON("The backing fd is open write-only: open it read-write (or read-only for a read-only device)");
                return -EBADFD;
        }
        if ((flags & O_ACCMODE) == O_RDONLY)
                c->read_only = true;
        if (dev->unprivileged) {
                r = target_check_user_backing(lc->backing_fd, reason);
                if (r < 0)
                        return r;
        }

        r = backing_probe(lc->backing_fd, false, &bi);
        if (r == -EBADFD) {
                REASON("The backing fd is neither a regular file nor a block device");
                return r;
        }
        if (r < 0)
                return r;

        if (lc->direct_io != LOOP_DIRECT_IO_OFF) {
                struct backing_info dbi;
                int dfd = reopen_direct(lc->backing_fd);

                r = dfd < 0 ? dfd : backing_probe(dfd, true, &dbi);
                if (r >= 0 && dbi.block_size > 4096)
                        r = -EOPNOTSUPP;
                if (r >= 0 && c->logical_block_size && c->logical_block_size < dbi.block_size)
                        r = -EINVAL;
                if (r >= 0) {
                        safe_close(lc->backing_fd);
                        lc->backing_fd = dfd;
                        dev->direct_io = true;
                        bi = dbi;
                } else {
                        safe_close(dfd);
                        if (lc->direct_io == LOOP_DIRECT_IO_ON) {
                                if (r == -EINVAL && c->logical_block_size)
                                        REASON("Direct IO on this backing needs a logical-block-size of at least %u",
                                               dbi.block_size);
                                else
                                        REASON("The backing does not support direct IO: use direct-io=off or auto");
                                return -EINVAL;
                        }
                }
        }

        lbs = c->logical_block_size ? c->logical_block_size : (bi.block_size > 512 ? bi.block_size : 512);
        if (lbs < bi.block_size) {
                REASON("The backing's block size is %u: logical-block-size must be at least that", bi.block_size);
                return -EINVAL;
        }
        c->logical_block_size = lbs;

        if (lc->offset % lbs) {
                REASON("offset must be a multiple of the logical block size (%u)", lbs);
                return -EINVAL;
        }
        if (lc->offset >= bi.size) {
                REASON("offset %llu is not inside the backing file (%llu bytes)",
                       (unsigned long long) lc->offset, (unsigned long long) bi.size);
                return -ENOSPC;
        }
        if (c->size == 0)
                c->size = (bi.size - lc->offset) / lbs * lbs;
        if (c->size == 0) {
                REASON("The backing file is smaller than one block: give it a size first (truncate -s 1G FILE)");
                return -ENOSPC;
        }
        if (c->size > bi.size - lc->offset) {
                REASON("The backing file has %llu bytes%s, less than the requested size %llu: grow it or ask for less",
                       (unsigned long long) (bi.size - lc->offset), lc->offset ? " after the offset" : "",
                       (unsigned long long) c->size);
                return -ENOSPC;
        }

        dev->worker_io = target_backing_needs_workers(lc->backing_fd, lbs);
        if (dev->worker_io)
                log_notice("ublk device: the backing's file system takes no non-blocking IO: io_uring hands each "
                           "of its IOs to a worker thread, a cost per IO that a file on ext4 or xfs, or a "
                           "block device, does not have.");

        ublk_params_set_basic(dev, params);
        params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA;
        params->types |= UBLK_PARAM_TYPE_DISCARD;
        params->discard = (struct ublk_param_discard) {
                .discard_granularity = lbs > 4096 ? lbs : 4096,
                .max_discard_sectors = UINT32_MAX >> 9,
                .max_write_zeroes_sectors = UINT32_MAX >> 9,
                .max_discard_segments = 1,
        };
        return 0;
}

/* Target values of splice mode's SQEs (ublk_target_user_data()); plain IO uses the ublk op. */
enum {
        LOOP_SPLICE_IN = 0x100,         /* into the tag's pipe */
        LOOP_SPLICE_OUT,                /* out of it */
        LOOP_SPLICE_SYNC,               /* fdatasync after a FUA write */
        LOOP_READ_PUT,                  /* a READ's data, from the tag's buffer to the device */
};

struct loop_splice {
        int pipe[2];
        uint32_t len;           /* of the request */
        uint32_t moved;         /* bytes that reached their destination */
        uint32_t piped;         /* bytes in the pipe */
        bool progress;          /* the step under way moved data */
        int err;
};

static void loop_queue_deinit(struct ublk_queue *q)
{
        struct loop_splice *s = q->target_data;

        for (unsigned tag = 0; s && tag < q->depth; tag++) {
                safe_close(s[tag].pipe[0]);
                safe_close(s[tag].pipe[1]);
        }
        free(s);
        q->target_data = NULL;
}

static int loop_queue_init(struct ublk_queue *q)
{
        struct loop_splice *s;

        if (!q->dev->splice)
                return 0;
        s = calloc(q->depth, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (unsigned tag = 0; tag < q->depth; tag++)
                s[tag].pipe[0] = s[tag].pipe[1] = -1;
        q->target_data = s;
        for (unsigned tag = 0; tag < q->depth; tag++) {
                if (pipe2(s[tag].pipe, O_CLOEXEC) < 0) {
                        int r = -errno;

                        loop_queue_deinit(q);
                        return r;
                }
                /* Room for a whole request saves round trips; a smaller pipe only costs more of them. */
                (void) fcntl(s[tag].pipe[0], F_SETPIPE_SZ, (int) q->dev->info.max_io_buf_bytes);
        }
        return 0;
}

static uint64_t loop_cdev_offset(struct ublk_queue *q, unsigned tag)
{
        return UBLKSRV_IO_BUF_OFFSET + ((uint64_t) q->q_id << UBLK_QID_OFF) + ((uint64_t) tag << UBLK_TAG_OFF);
}

static uint64_t loop_backing_offset(struct ublk_queue *q, const struct ublksrv_io_desc *iod)
{
        return (iod->start_sector << 9) + loop_config(q->dev)->offset;
}

/* Marks sqe as tag's (value: what it is) and counts it in flight until io_done() sees it. */
static void loop_sqe_queued(struct ublk_queue *q, struct io_uring_sqe *sqe, unsigned tag, uint32_t value)
{
        sqe->user_data = ublk_target_user_data(tag, value);
        /* A user's device: the backing's IO runs with the user's credentials (queue.h). */
        sqe->personality = (uint16_t) q->personality;
        q->ios[tag].target_inflight++;
        q->target_inflight++;
}

static void loop_prep_splice(struct ublk_queue *q, struct io_uring_sqe *sqe, unsigned tag, int fd_in,
                             int64_t off_in, int fd_out, int64_t off_out, uint32_t len, uint32_t value)
{
        io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, len, 0);
        loop_sqe_queued(q, sqe, tag, value);
}

/*
 * Queues the next step of a splice-mode WRITE: what is in the pipe goes out, or the
 * rest of the request goes in and (linked) out.  A short splice in cancels the linked one out;
 * the next step then sends what did arrive.
 */
static int loop_splice_next(struct ublk_queue *q, unsigned tag)
{
        struct loop_splice *s = &((struct loop_splice *) q->target_data)[tag];
        const struct ublksrv_io_desc *iod = &q->descs[tag];
        int cdev = q->dev->cdev_fd, fd = loop_config(q->dev)->backing_fd;
        int64_t cdev_off = (int64_t) (loop_cdev_offset(q, tag) + s->moved);
        int64_t file_off = (int64_t) (loop_backing_offset(q, iod) + s->moved);
        uint32_t rest = s->len - s->moved;
        struct io_uring_sqe *in, *out;

        s->progress = false;
        if (s->piped) {
                out = ublk_queue_get_sqe(q);
                if (!out)
                        return -EAGAIN;
                loop_prep_splice(q, out, tag, s->pipe[0], -1, fd, file_off, s->piped, LOOP_SPLICE_OUT);
                return UBLK_TARGET_QUEUED;
        }
        /* Two SQEs that must be in the ring together: room for both, or neither is taken. */
        if (io_uring_sq_space_left(&q->ring) < 2)
                io_uring_submit(&q->ring);
        if (io_uring_sq_space_left(&q->ring) < 2)
                return -EAGAIN;
        in = ublk_queue_get_sqe(q);
        out = ublk_queue_get_sqe(q);
        loop_prep_splice(q, in, tag, cdev, cdev_off, s->pipe[1], -1, rest, LOOP_SPLICE_IN);
        in->flags |= IOSQE_IO_LINK;
        loop_prep_splice(q, out, tag, s->pipe[0], -1, fd, file_off, rest, LOOP_SPLICE_OUT);
        return UBLK_TARGET_QUEUED;
}

/* An error with data still in the pipe: read it out, so that the tag's next request finds the
 * pipe empty and the driver takes the commit. */
static int loop_splice_drain(struct loop_splice *s)
{
        char scratch[4096];

        while (s->piped) {
                ssize_t n = read(s->pipe[0], scratch, s->piped < sizeof(scratch) ? s->piped : sizeof(scratch));

                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                s->piped -= (uint32_t) n;
        }
        return 0;
}

static int loop_splice_done(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        struct loop_splice *s = &((struct loop_splice *) q->target_data)[tag];
        const struct ublksrv_io_desc *iod = &q->descs[tag];
        int r;

        switch (ublk_user_data_target_value(cqe->user_data)) {
        case LOOP_SPLICE_IN:
                if (cqe->res < 0)
                        s->err = cqe->res;
                else
                        s->piped += (uint32_t) cqe->res;
                s->progress |= cqe->res > 0;
                break;
        case LOOP_SPLICE_OUT:
                if (cqe->res > 0) {
                        s->piped -= (uint32_t) cqe->res;
                        s->moved += (uint32_t) cqe->res;
                        s->progress = true;
                } else if (cqe->res < 0 && cqe->res != -ECANCELED)
                        s->err = cqe->res;
                break;
        case LOOP_SPLICE_SYNC:
                return cqe->res < 0 ? cqe->res : (int) s->len;
        }
        /* Both halves of a linked pair must be in before the next step. */
        if (q->ios[tag].target_inflight)
                return UBLK_TARGET_QUEUED;
        /* A step that moved nothing and failed nothing (the backing ended) would repeat forever. */
        if (!s->err && !s->progress)
                s->err = -EIO;
        if (!s->err && (s->moved < s->len || s->piped)) {
                r = loop_splice_next(q, tag);
                if (r == UBLK_TARGET_QUEUED)
                        return r;
                s->err = r;
        }
        if (s->err) {
                r = loop_splice_drain(s);
                if (r < 0)
                        log_error_errno(r, "Queue %u of ublk device %u: cannot empty the pipe of tag %u: %m",
                                        q->q_id, q->dev->id, tag);
                return s->err;
        }
        if (ublksrv_get_flags(iod) & UBLK_IO_F_FUA) {
                struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

                if (!sqe)
                        return -EAGAIN;
                io_uring_prep_fsync(sqe, loop_config(q->dev)->backing_fd, IORING_FSYNC_DATASYNC);
                loop_sqe_queued(q, sqe, tag, LOOP_SPLICE_SYNC);
                return UBLK_TARGET_QUEUED;
        }
        return (int) s->len;
}

static int loop_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        int fd = loop_config(q->dev)->backing_fd;
        unsigned op = ublksrv_get_op(iod), flags = ublksrv_get_flags(iod);
        uint64_t off = loop_backing_offset(q, iod);
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
        if (q->dev->splice && op == UBLK_IO_OP_WRITE) {
                struct loop_splice *s = &((struct loop_splice *) q->target_data)[tag];

                *s = (struct loop_splice) { .pipe = { s->pipe[0], s->pipe[1] }, .len = len };
                return loop_splice_next(q, tag);
        }

        sqe = ublk_queue_get_sqe(q);
        if (!sqe)
                return -EAGAIN;

        switch (op) {
        case UBLK_IO_OP_READ:
                if (q->dev->zero_copy)  /* address 0 = the start of the request's pages */
                        io_uring_prep_read_fixed(sqe, fd, NULL, len, off, (int) tag);
                else
                        io_uring_prep_read(sqe, fd, ublk_queue_io_buf(q, tag), len, off);
                break;
        case UBLK_IO_OP_WRITE:
                if (q->dev->zero_copy)
                        io_uring_prep_write_fixed(sqe, fd, NULL, len, off, (int) tag);
                else
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
        loop_sqe_queued(q, sqe, tag, op);
        return UBLK_TARGET_QUEUED;
}

/* Splice mode: a READ's data is in the tag's buffer; the device gets as much as was read
 * (a short count ends that much of the request, and the kernel sends the rest again). */
static int loop_read_put(struct ublk_queue *q, unsigned tag, int bytes)
{
        struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

        if (!sqe)
                return -EAGAIN;
        io_uring_prep_write(sqe, q->dev->cdev_fd, ublk_queue_io_buf(q, tag), (unsigned) bytes,
                            loop_cdev_offset(q, tag));
        loop_sqe_queued(q, sqe, tag, LOOP_READ_PUT);
        return UBLK_TARGET_QUEUED;
}

static int loop_io_done(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        uint32_t value = ublk_user_data_target_value(cqe->user_data);

        if (value == LOOP_READ_PUT)
                return cqe->res;
        if (value >= LOOP_SPLICE_IN)
                return loop_splice_done(q, tag, cqe);
        if (value == UBLK_IO_OP_READ && q->dev->splice && cqe->res > 0)
                return loop_read_put(q, tag, cqe->res);
        /* Bytes for READ/WRITE; 0 from fsync/fallocate, which is all the kernel wants for those. */
        return cqe->res;
}

/* What "ublkctl show" says: nothing, unless every IO costs a worker thread (loop_init()). */
static void loop_status(struct ublk_dev *dev, char *buf, size_t len)
{
        if (dev->worker_io)
                snprintf(buf, len, "IO through io_uring's worker threads: the backing's file system "
                         "takes no non-blocking IO");
}

const struct ublk_target_ops target_loop_ops = {
        .name = "loop",
        .desc = &ublk_target_loop,
        .user_io = true,
        .config_size = sizeof(struct loop_config),
        .config_init = loop_config_init,
        .set_option = loop_set_option,
        .get_option = loop_get_option,
        .config_release = loop_config_release,
        .zero_copy = true,
        .splice = true,
        .init = loop_init,
        .queue_init = loop_queue_init,
        .queue_deinit = loop_queue_deinit,
        .queue_io = loop_queue_io,
        .io_done = loop_io_done,
        .status = loop_status,
};
