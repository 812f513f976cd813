/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "qcow2": the queues (qcow2-target.h; the chain is opened by qcow2-chain.c).
 *
 * Each ublk queue owns a qcow2_queue of the engine and drives it as qcow2.h asks: a request
 * becomes a struct qcow2_req (READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES) submitted on the
 * device's image; every host IO the engine asks for (read, write, fdatasync of one level's
 * fd) is one SQE on the queue's own ring, and its CQE goes back with qcow2_io_done().  When
 * another queue's work makes ours ready (a table it loaded, an allocation it finished), the
 * engine writes our eventfd, which a poll on our ring turns into qcow2_queue_run().  No
 * blocking call and no thread but the queue's own: several queues share one image through
 * the engine's lock.
 *
 * The engine's host IO carries pointers, and user_data has 32 bits for the target: a slot
 * table per queue maps them.  Requests and host IO both count in q->target_inflight, so that
 * the queue's thread ends only once both are done; and a stopping queue stays while any host
 * IO of the image is in flight on another queue (a write finishing in the background may
 * wake a task of ours), polling the engine every millisecond until it is idle.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "qcow2-target.h"
#include "queue.h"
#include "target.h"
#include "ublk_cmd.h"

/* Target values of event SQEs (ublk_event_user_data()): these two, or a host IO's slot + 2. */
enum { Q2T_EV_WAKE = 0, Q2T_EV_LINGER = 1, Q2T_EV_SLOT0 = 2 };

struct q2t_queue;

struct q2t_tag {
        struct qcow2_req req;
        struct q2t_queue *tq;
        unsigned tag;
};

struct q2t_queue {
        struct ublk_queue *q;
        struct qcow2_tdev *td;
        struct qcow2_queue *qq;
        int wake_fd;
        bool wake_armed, linger_armed;
        struct __kernel_timespec linger;
        /* Host IO in flight: slot -> io; free slots on a stack. */
        struct qcow2_io **slots;
        uint32_t *free_slots;
        uint32_t n_slots, n_free;
        /* Host IO the ring had no room for: submitted at the next completion. */
        struct qcow2_io **deferred;
        uint32_t n_deferred, deferred_cap;
        struct q2t_tag tags[];
};

/* A few bytes a slot: out of memory here is no state worth going on from (the engine's own
 * host IO allocation aborts likewise); a host IO dropped would leave its task waiting forever. */
static uint32_t slot_get(struct q2t_queue *tq, struct qcow2_io *io)
{
        uint32_t slot;

        if (tq->n_free == 0) {
                uint32_t n = tq->n_slots ? tq->n_slots * 2 : 256;
                struct qcow2_io **s = realloc(tq->slots, n * sizeof(*s));
                uint32_t *f;

                if (!s)
                        abort();
                tq->slots = s;
                f = realloc(tq->free_slots, n * sizeof(*f));
                if (!f)
                        abort();
                tq->free_slots = f;
                for (uint32_t i = n; i-- > tq->n_slots;)
                        tq->free_slots[tq->n_free++] = i;
                tq->n_slots = n;
        }
        slot = tq->free_slots[--tq->n_free];
        tq->slots[slot] = io;
        return slot;
}

/* One SQE for io; false when the ring is full. */
static bool io_start(struct q2t_queue *tq, struct qcow2_io *io)
{
        struct io_uring_sqe *sqe;
        uint32_t slot;

        sqe = ublk_queue_get_sqe(tq->q);
        if (!sqe)
                return false;
        slot = slot_get(tq, io);
        switch (io->op) {
        case QCOW2_IO_READ:
                io_uring_prep_read(sqe, io->fd, io->buf, (unsigned) io->len, io->off);
                break;
        case QCOW2_IO_WRITE:
                io_uring_prep_write(sqe, io->fd, io->buf, (unsigned) io->len, io->off);
                break;
        default:
                /* The size of a grown file is what fdatasync makes durable with the data. */
                io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
                break;
        }
        sqe->personality = (uint16_t) tq->q->personality;
        sqe->user_data = ublk_event_user_data(slot + Q2T_EV_SLOT0);
        tq->q->target_inflight++;
        return true;
}

static void io_defer(struct q2t_queue *tq, struct qcow2_io *io)
{
        if (tq->n_deferred == tq->deferred_cap) {
                uint32_t n = tq->deferred_cap ? tq->deferred_cap * 2 : 64;
                struct qcow2_io **d = realloc(tq->deferred, n * sizeof(*d));

                if (!d)
                        abort();        /* a host IO cannot be dropped: its task would wait forever */
                tq->deferred = d;
                tq->deferred_cap = n;
        }
        tq->deferred[tq->n_deferred++] = io;
}

/* ops->submit: on this queue's thread, never calling back into the engine. */
static void q2t_submit(void *ctx, struct qcow2_io *io)
{
        struct q2t_queue *tq = ctx;

        if (tq->n_deferred > 0 || !io_start(tq, io))
                io_defer(tq, io);
}

/* ops->wake: from another queue's thread, under an engine lock: only signal. */
static void q2t_wake(void *ctx)
{
        struct q2t_queue *tq = ctx;
        uint64_t one = 1;

        (void) !write(tq->wake_fd, &one, sizeof(one));
}

static const struct qcow2_io_ops q2t_io_ops = {
        .submit = q2t_submit,
        .wake = q2t_wake,
};

static void flush_deferred(struct q2t_queue *tq)
{
        uint32_t i;

        for (i = 0; i < tq->n_deferred; i++)
                if (!io_start(tq, tq->deferred[i]))
                        break;
        memmove(tq->deferred, tq->deferred + i, (tq->n_deferred - i) * sizeof(*tq->deferred));
        tq->n_deferred -= i;
}

static void arm(struct q2t_queue *tq)
{
        struct ublk_queue *q = tq->q;
        struct io_uring_sqe *sqe;

        flush_deferred(tq);
        if (!tq->wake_armed && (sqe = ublk_queue_get_sqe(q))) {
                io_uring_prep_poll_add(sqe, tq->wake_fd, POLLIN);
                sqe->user_data = ublk_event_user_data(Q2T_EV_WAKE);
                tq->wake_armed = true;
        }
        /* Stopping (no tag left in the kernel) with nothing of ours in flight: stay while
         * the image has host IO in flight elsewhere (see the top). */
        if (!tq->linger_armed && q->cmds_in_kernel == 0 && q->target_inflight == 0 && qcow2_tbusy(tq->td) &&
            (sqe = ublk_queue_get_sqe(q))) {
                tq->linger = (struct __kernel_timespec) { .tv_nsec = 1000000 };
                io_uring_prep_timeout(sqe, &tq->linger, 0, 0);
                sqe->user_data = ublk_event_user_data(Q2T_EV_LINGER);
                tq->linger_armed = true;
                q->target_inflight++;
        }
}

static void q2t_complete(struct qcow2_req *req, int result)
{
        struct q2t_tag *t = req->priv;
        struct ublk_queue *q = t->tq->q;

        if (result >= 0 && (req->op == QCOW2_READ || req->op == QCOW2_WRITE))
                result = (int) req->len;
        q->target_inflight--;
        ublk_queue_commit(q, t->tag, result);
}

static int q2t_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        struct q2t_queue *tq = q->target_data;
        struct q2t_tag *t = &tq->tags[tag];
        enum qcow2_req_op op;

        switch (ublksrv_get_op(iod)) {
        case UBLK_IO_OP_READ:
                op = QCOW2_READ;
                break;
        case UBLK_IO_OP_WRITE:
                op = QCOW2_WRITE;
                break;
        case UBLK_IO_OP_FLUSH:
                op = QCOW2_FLUSH;
                break;
        case UBLK_IO_OP_DISCARD:
                op = QCOW2_DISCARD;
                break;
        case UBLK_IO_OP_WRITE_ZEROES:
                op = QCOW2_WRITE_ZEROES;
                break;
        default:
                return -EOPNOTSUPP;
        }
        t->req = (struct qcow2_req) {
                .op = op,
                .off = iod->start_sector << 9,
                .len = (uint64_t) iod->nr_sectors << 9,
                .buf = ublk_queue_io_buf(q, tag),
                .complete = q2t_complete,
                .priv = t,
        };
        /* Counted before: the engine may complete it before qcow2_submit() returns. */
        q->target_inflight++;
        qcow2_submit(tq->td->level[0], tq->qq, &t->req);
        arm(tq);
        return UBLK_TARGET_QUEUED;
}

static void q2t_event(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
        struct q2t_queue *tq = q->target_data;
        uint32_t value = ublk_user_data_target_value(cqe->user_data);
        struct qcow2_io *io;
        uint64_t n;

        if (value == Q2T_EV_WAKE) {
                tq->wake_armed = false;
                (void) !read(tq->wake_fd, &n, sizeof(n));
                qcow2_queue_run(tq->qq);
        } else if (value == Q2T_EV_LINGER) {
                tq->linger_armed = false;
                q->target_inflight--;
                qcow2_queue_run(tq->qq);
        } else if (value - Q2T_EV_SLOT0 < tq->n_slots) {
                uint32_t slot = value - Q2T_EV_SLOT0;

                io = tq->slots[slot];
                tq->slots[slot] = NULL;
                tq->free_slots[tq->n_free++] = slot;
                q->target_inflight--;
                /* Room on the ring again: what waited goes first, in order. */
                flush_deferred(tq);
                if (io)
                        qcow2_io_done(tq->qq, io, cqe->res);
        }
        arm(tq);
}

static int q2t_queue_init(struct ublk_queue *q)
{
        struct q2t_queue *tq;

        tq = calloc(1, sizeof(*tq) + q->depth * sizeof(tq->tags[0]));
        if (!tq)
                return -ENOMEM;
        tq->q = q;
        tq->td = q->dev->target_data;
        for (unsigned tag = 0; tag < q->depth; tag++)
                tq->tags[tag] = (struct q2t_tag) { .tq = tq, .tag = tag };
        tq->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        tq->qq = tq->wake_fd >= 0 ? qcow2_queue_new(&q2t_io_ops, tq) : NULL;
        if (!tq->qq) {
                int r = tq->wake_fd < 0 ? -errno : -ENOMEM;

                safe_close(tq->wake_fd);
                free(tq);
                return r;
        }
        q->target_data = tq;
        return 0;
}

static void q2t_queue_deinit(struct ublk_queue *q)
{
        struct q2t_queue *tq = q->target_data;

        if (!tq)
                return;
        /* The thread ended with nothing of ours in flight (target_inflight counts it all). */
        qcow2_queue_free(tq->qq);
        safe_close(tq->wake_fd);
        free(tq->slots);
        free(tq->free_slots);
        free(tq->deferred);
        free(tq);
        q->target_data = NULL;
}

const struct ublk_target_ops target_qcow2_ops = {
        .name = "qcow2",
        .desc = &ublk_target_qcow2,
        .user_io = true,
        .config_size = sizeof(struct qcow2_tconfig),
        .config_init = qcow2_tconfig_init,
        .set_option = qcow2_tset_option,
        .get_option = qcow2_tget_option,
        .config_release = qcow2_tconfig_release,
        .init = qcow2_tinit,
        .deinit = qcow2_tdeinit,
        .queue_init = q2t_queue_init,
        .queue_deinit = q2t_queue_deinit,
        .queue_io = q2t_queue_io,
        .event = q2t_event,
        .status = qcow2_tstatus,
};
