/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "macro.h"
#include "queue.h"
#include "user-child.h"
#include "uring.h"
#include "work.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

static unsigned ring_entries(unsigned depth)
{
        unsigned n = 1;

        /* Room for one ublk command and one target SQE per tag in flight (the CQ is twice that). */
        while (n < depth * 2)
                n <<= 1;
        return n;
}

struct io_uring_sqe *ublk_queue_get_sqe(struct ublk_queue *q)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

        if (!sqe) {
                /* SQ full: push what we have to the kernel and try once more. */
                io_uring_submit(&q->ring);
                sqe = io_uring_get_sqe(&q->ring);
        }
        if (sqe)
                memset(sqe, 0, 2 * sizeof(*sqe));      /* SQE128: clear the command area too */
        return sqe;
}

void *ublk_queue_io_buf(struct ublk_queue *q, unsigned tag)
{
        if (!q->bufs)
                return NULL;
        return (char *) q->bufs + (size_t) tag * q->dev->info.max_io_buf_bytes;
}

static int queue_submit_cmd(struct ublk_queue *q, unsigned tag, unsigned op, int result)
{
        struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);
        struct ublksrv_io_cmd *cmd;

        if (!sqe)
                return -EBUSY;
        sqe->opcode = IORING_OP_URING_CMD;
        sqe->fd = q->dev->cdev_fd;
        sqe->cmd_op = op;
        sqe->user_data = (uint64_t) tag | ((uint64_t) UBLK_UD_KIND_CMD << 48);
        cmd = (struct ublksrv_io_cmd *) sqe->cmd;
        cmd->q_id = (uint16_t) q->q_id;
        cmd->tag = (uint16_t) tag;
        cmd->result = result;
        if (q->dev->zero_copy) {
                /* Where the kernel registers the request's pages goes in the SQE's own addr
                 * field; the command's addr (a data buffer) stays 0. */
                struct ublk_auto_buf_reg reg = { .index = (uint16_t) tag };

                sqe->addr = ublk_auto_buf_reg_to_sqe_addr(&reg);
        } else if (!q->dev->splice)    /* USER_COPY: the data goes by pread/pwrite, no address */
                cmd->addr = (uintptr_t) ublk_queue_io_buf(q, tag);

        q->ios[tag].in_kernel = true;
        q->cmds_in_kernel++;
        return 0;
}

void ublk_queue_commit(struct ublk_queue *q, unsigned tag, int result)
{
        int r = queue_submit_cmd(q, tag, q->commit_op, result);

        if (r < 0)
                log_error_errno(r, "Queue %u of ublk device %u: cannot commit tag %u: %m",
                                q->q_id, q->dev->id, tag);
}

static void queue_handle_cmd(struct ublk_queue *q, unsigned tag, int res)
{
        const struct ublk_target_ops *ops = q->dev->config.target;
        int r;

        q->ios[tag].in_kernel = false;
        q->cmds_in_kernel--;

        if (res == UBLK_IO_RES_OK) {
                r = ops->queue_io(q, tag, &q->descs[tag]);
                if (r != UBLK_TARGET_QUEUED)
                        ublk_queue_commit(q, tag, r);
                return;
        }
        /* UBLK_IO_RES_ABORT (device stopping) or an error: this tag is done. */
        if (res != UBLK_IO_RES_ABORT)
                log_debug_errno(res, "Queue %u of ublk device %u: tag %u ended: %m", q->q_id, q->dev->id, tag);
}

static void queue_handle_target(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        int r;

        q->ios[tag].target_inflight--;
        q->target_inflight--;
        r = q->dev->config.target->io_done(q, tag, cqe);
        if (r != UBLK_TARGET_QUEUED)
                ublk_queue_commit(q, tag, r);
}

/*
 * A FETCH the kernel refuses completes during submission, so its CQE is
 * already there; one that succeeded stays pending until a request comes.
 * START_DEV waits for every tag to be fetched: it must not be sent when a
 * FETCH failed, or it would wait forever.
 */
static int queue_check_fetches(struct ublk_queue *q)
{
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int err = 0;

        io_uring_for_each_cqe(&q->ring, head, cqe) {
                unsigned tag = (unsigned) (cqe->user_data & 0xffff);

                if (tag < q->depth && q->ios[tag].in_kernel) {
                        q->ios[tag].in_kernel = false;
                        q->cmds_in_kernel--;
                }
                if (cqe->res < 0 && err == 0)
                        err = cqe->res;
                n++;
        }
        io_uring_cq_advance(&q->ring, n);
        if (err < 0)
                log_error_errno(err, "Queue %u of ublk device %u: the kernel refused FETCH_REQ: %m",
                                q->q_id, q->dev->id);
        else if (n > 0)
                err = -EPROTO;
        return err;
}

static int queue_setup_ring(struct ublk_queue *q)
{
        unsigned entries = ring_entries(q->depth);
        /* A user's device whose target does IO on a backing file: see below. */
        bool as_user = q->dev->unprivileged && q->dev->config.target->user_io;
        unsigned disabled = as_user ? IORING_SETUP_R_DISABLED : 0;
        int r;

        /* Only this thread submits; ublk's task work need not interrupt it, it runs when the
         * thread enters the kernel anyway.  (DEFER_TASKRUN measured no faster, and one Add in
         * about 75 add/remove cycles on 7.2 hung with it: see bench/RESULTS.md.)  A user's ring
         * starts disabled, so that a child process with the user's credentials may register
         * them on it (a SINGLE_ISSUER ring takes registrations from its submitter only, which
         * is the thread that creates an enabled ring). */
        r = uring_init(entries, &q->ring,
                       IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | disabled);
        if (r == -EINVAL)
                r = uring_init(entries, &q->ring, IORING_SETUP_SQE128 | disabled);
        if (r < 0)
                return r;
        q->ring_ready = true;

        if (as_user) {
                r = user_child_register_personality(q->ring.ring_fd, q->dev->config.owner_uid,
                                                    q->dev->config.owner_gid, &q->personality);
                /* (liburing 2.3 declares io_uring_enable_rings() but does not export it.) */
                if (r >= 0)
                        r = io_uring_register(q->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
                if (r < 0)
                        return log_error_errno(r, "Queue %u of ublk device %u: cannot register the "
                                               "credentials of uid %u on its ring: %m", q->q_id, q->dev->id,
                                               (unsigned) q->dev->config.owner_uid);
        }

        if (q->dev->zero_copy) {
                /* Slot <tag> receives the pages of the request on <tag>. */
                r = io_uring_register_buffers_sparse(&q->ring, q->depth);
                if (r < 0)
                        return r;
        }

        for (unsigned tag = 0; tag < q->depth; tag++) {
                r = queue_submit_cmd(q, tag, q->fetch_op, -1);
                if (r < 0)
                        return r;
        }
        r = io_uring_submit(&q->ring);
        if (r < 0)
                return r;
        return queue_check_fetches(q);
}

static void queue_signal_setup(struct ublk_queue *q, int result)
{
        pthread_mutex_lock(&q->lock);
        q->setup_done = true;
        q->setup_result = result;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

static void *queue_thread(void *arg)
{
        struct ublk_queue *q = arg;
        bool late = ublk_test_fetch_delay_ms && q->q_id == 0;
        char name[16];
        int r;

        snprintf(name, sizeof(name), "ublk%u-q%u", q->dev->id, q->q_id);
        pthread_setname_np(pthread_self(), name);
        /* Our IO may be what frees memory: do not throttle us under reclaim. */
        (void) prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);

        if (late) {
                /* Tests only: START_DEV goes out before queue 0 has fetched, and waits in the
                 * kernel, as it would for a slow queue (see ctrl_submit()). */
                queue_signal_setup(q, 0);
                (void) usleep(ublk_test_fetch_delay_ms * 1000);
        }
        r = queue_setup_ring(q);
        if (!late)
                queue_signal_setup(q, r);
        if (r < 0)
                goto out;

        while (q->cmds_in_kernel > 0 || q->target_inflight > 0) {
                struct io_uring_cqe *cqe;
                unsigned head, n = 0;

                r = io_uring_submit_and_wait(&q->ring, 1);
                if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
                        log_error_errno(r, "Queue %u of ublk device %u: io_uring_enter failed: %m",
                                        q->q_id, q->dev->id);
                        break;
                }

                io_uring_for_each_cqe(&q->ring, head, cqe) {
                        unsigned tag = (unsigned) (cqe->user_data & 0xffff);

                        if ((cqe->user_data >> 48) == UBLK_UD_KIND_EVENT) {
                                if (q->dev->config.target->event)
                                        q->dev->config.target->event(q, cqe);
                        } else if (tag < q->depth) {
                                if ((cqe->user_data >> 48) == UBLK_UD_KIND_TARGET)
                                        queue_handle_target(q, tag, cqe);
                                else
                                        queue_handle_cmd(q, tag, cqe->res);
                        }
                        n++;
                }
                io_uring_cq_advance(&q->ring, n);
        }
out:
        if (q->ring_ready) {
                uring_exit(&q->ring);
                q->ring_ready = false;
        }
        return NULL;
}

static size_t page_size(void)
{
        return (size_t) sysconf(_SC_PAGESIZE);
}

static void queue_release(struct ublk_queue *q)
{
        const struct ublk_target_ops *ops = q->dev->config.target;

        if (q->target_data && ops->queue_deinit)
                ops->queue_deinit(q);
        if (q->descs)
                munmap((void *) q->descs, q->descs_len);
        if (q->bufs)
                munmap(q->bufs, q->bufs_len);
        free(q->ios);
        q->descs = NULL;
        q->bufs = NULL;
        q->ios = NULL;
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
}

int queue_start(struct ublk_queue *q)
{
        struct ublk_dev *dev = q->dev;
        const struct ublk_target_ops *ops = dev->config.target;
        size_t max_descs = ROUND_UP(UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc), page_size());
        void *p;
        int r;

        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->cond, NULL);
        q->depth = dev->info.queue_depth;
        q->fetch_op = dev->ctrl->ioctl_encode ? UBLK_U_IO_FETCH_REQ : UBLK_IO_FETCH_REQ;
        q->commit_op = dev->ctrl->ioctl_encode ? UBLK_U_IO_COMMIT_AND_FETCH_REQ : UBLK_IO_COMMIT_AND_FETCH_REQ;

        q->ios = calloc(q->depth, sizeof(*q->ios));
        if (!q->ios) {
                r = -ENOMEM;
                goto fail;
        }

        /* The kernel's per-tag request descriptors, read-only for us. */
        q->descs_len = ROUND_UP(q->depth * sizeof(struct ublksrv_io_desc), page_size());
        p = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE, dev->cdev_fd,
                 UBLKSRV_CMD_BUF_OFFSET + (off_t) q->q_id * (off_t) max_descs);
        if (p == MAP_FAILED) {
                r = negative_errno();
                goto fail;
        }
        q->descs = p;

        /* Copy-mode data buffers, one per tag; pages are only touched when used. */
        if (!dev->zero_copy) {
                q->bufs_len = (size_t) q->depth * dev->info.max_io_buf_bytes;
                p = mmap(NULL, q->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
                if (p == MAP_FAILED) {
                        r = negative_errno();
                        goto fail;
                }
                q->bufs = p;
        }

        if (ops->queue_init) {
                r = ops->queue_init(q);
                if (r < 0)
                        goto fail;
        }

        r = thread_create_nosignals(&q->thread, queue_thread, q);
        if (r < 0)
                goto fail;
        q->thread_started = true;

        pthread_mutex_lock(&q->lock);
        while (!q->setup_done)
                pthread_cond_wait(&q->cond, &q->lock);
        r = q->setup_result;
        pthread_mutex_unlock(&q->lock);
        /* On failure the thread has ended or will end on its own once aborted. */
        return r;

fail:
        queue_release(q);
        return r;
}

void queue_join(struct ublk_queue *q)
{
        if (q->thread_started) {
                pthread_join(q->thread, NULL);
                q->thread_started = false;
        }
        if (q->ios)
                queue_release(q);
}
