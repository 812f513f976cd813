/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "nbd": a device whose data is an export of an NBD server, through libnbd (never the protocol
 * by hand).  Its options (add-options.h) live in struct nbd_config; nbd-conn.c makes the connections (handshakes, off the event loop and off the
 * queue threads) and brings new ones after a server went away; this file drives them.
 *
 * Each queue owns one libnbd handle.  Its thread stays event-driven: the queue's io_uring polls
 * the handle's socket (one POLL_ADD for reading, one for writing while libnbd has something to
 * send), and the CQEs call nbd_aio_notify_read/write; libnbd calls our completion callback on
 * the same thread, which commits the request.  No thread per request, no blocking call.
 *   READ -> pread into the tag's buffer, WRITE -> pwrite (FUA when asked and the server can),
 *   FLUSH -> flush, DISCARD -> trim, WRITE_ZEROES -> zero (NOUNMAP -> NO_HOLE).
 * What the server cannot do fails with EOPNOTSUPP; the device advertises only what it can.
 *
 * Server gone: the handle dies, and libnbd ends its commands with ENOTCONN (or the server said
 * ESHUTDOWN).  The queue keeps those requests (held, no error to the block layer) and asks for a
 * new connection; when one comes (eventfd on the ring), it reissues them.  Once the device's
 * reconnect-timeout has passed without one, held and new IO fail with EIO, until a connection
 * is back.  Before STOP_DEV, which waits for every request, held requests fail with EIO.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "nbd-conn.h"
#include "queue.h"
#include "target.h"
#include "ublk_cmd.h"

/* Event values (ublk_event_user_data()): kind in bits 0-3, the handle's generation above, so
 * that a poll on a handle since replaced is told apart. */
enum { NBD_EV_READ = 1, NBD_EV_WRITE = 2, NBD_EV_WAKE = 3, NBD_EV_TICK = 4 };

/*
 * A user's device: the kernel's ublk driver SIGKILLs the server (ublkd, with every device) when
 * a request of an unprivileged device outlives the block layer's timeout (30 s).  A user's NBD
 * server may simply never answer, so ublkd gives up on it first: a request older than this ends
 * the connection, and the device's IO fails (nobody may reconnect for a user).  Checked every
 * NBD_TICK_S while requests are out.
 */
#define NBD_USER_IO_DEADLINE_S 15
#define NBD_TICK_S 2

enum nbd_tag_state { NBD_TAG_IDLE, NBD_TAG_INFLIGHT, NBD_TAG_HELD };

struct nbd_queue;

struct nbd_tag {
        struct nbd_queue *nq;
        unsigned tag;
        enum nbd_tag_state state;
        uint64_t since_usec;    /* when the block layer handed it to us */
};

struct nbd_queue {
        struct ublk_queue *q;
        struct nbd_dev *nd;
        struct nbd_handle *h;
        unsigned gen;
        bool read_armed, write_armed, wake_armed, tick_armed;
        struct __kernel_timespec tick;
        bool failing;           /* no connection and none coming in time: IO fails */
        struct nbd_caps caps;
        int wake_fd;
        struct nbd_tag tags[];
};

static void nbd_lost(struct nbd_queue *nq);
static void nbd_rearm(struct nbd_queue *nq);

/* Counts a request the target holds (in flight or waiting) until nbd_commit(). */
static void nbd_commit(struct nbd_queue *nq, unsigned tag, int result)
{
        nq->tags[tag].state = NBD_TAG_IDLE;
        nq->q->target_inflight--;
        ublk_queue_commit(nq->q, tag, result);
}

static int nbd_done(void *user_data, int *error)
{
        struct nbd_tag *t = user_data;
        struct nbd_queue *nq = t->nq;
        const struct ublksrv_io_desc *iod = &nq->q->descs[t->tag];
        unsigned op = ublksrv_get_op(iod);

        if (t->state != NBD_TAG_INFLIGHT)
                return 1;
        if (*error == ENOTCONN || *error == ESHUTDOWN) {
                /* The connection went (or the server is going): the next one gets it again. */
                t->state = NBD_TAG_HELD;
                return 1;
        }
        if (*error)
                nbd_commit(nq, t->tag, -*error);
        else
                nbd_commit(nq, t->tag, op == UBLK_IO_OP_READ || op == UBLK_IO_OP_WRITE ?
                                        (int) (iod->nr_sectors << 9) : 0);
        return 1;       /* retired: nothing to collect later */
}

/* Sends tag's request on the queue's connection, or holds it while there is none.  Returns 0,
 * or the negative errno to commit at once. */
static int nbd_issue(struct nbd_queue *nq, unsigned tag)
{
        const struct ublksrv_io_desc *iod = &nq->q->descs[tag];
        const struct nbd_caps *caps = &nq->caps;
        unsigned op = ublksrv_get_op(iod), flags = ublksrv_get_flags(iod);
        uint64_t off = iod->start_sector << 9, len = (uint64_t) iod->nr_sectors << 9;
        nbd_completion_callback cb = { .callback = nbd_done, .user_data = &nq->tags[tag] };
        void *buf = ublk_queue_io_buf(nq->q, tag);
        int64_t c;

        switch (op) {
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_WRITE:
                break;
        case UBLK_IO_OP_FLUSH:
                if (!caps->can_flush)
                        return -EOPNOTSUPP;
                break;
        case UBLK_IO_OP_DISCARD:
                if (!caps->can_trim)
                        return -EOPNOTSUPP;
                break;
        case UBLK_IO_OP_WRITE_ZEROES:
                if (!caps->can_zero)
                        return -EOPNOTSUPP;
                break;
        default:
                return -EOPNOTSUPP;
        }
        if (!nq->h) {
                if (nq->failing)
                        return -EIO;
                nq->tags[tag].state = NBD_TAG_HELD;
                return 0;
        }

        switch (op) {
        case UBLK_IO_OP_READ:
                c = nbd_aio_pread(nq->h, buf, len, off, cb, 0);
                break;
        case UBLK_IO_OP_WRITE:
                c = nbd_aio_pwrite(nq->h, buf, len, off, cb,
                                   (flags & UBLK_IO_F_FUA) && caps->can_fua ? LIBNBD_CMD_FLAG_FUA : 0);
                break;
        case UBLK_IO_OP_FLUSH:
                c = nbd_aio_flush(nq->h, cb, 0);
                break;
        case UBLK_IO_OP_DISCARD:
                c = nbd_aio_trim(nq->h, len, off, cb, 0);
                break;
        default:
                c = nbd_aio_zero(nq->h, len, off, cb, (flags & UBLK_IO_F_NOUNMAP) ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
                break;
        }
        if (c < 0) {
                int e = nbd_get_errno();

                if (nbd_aio_is_dead(nq->h) || nbd_aio_is_closed(nq->h) || e == ENOTCONN) {
                        nq->tags[tag].state = NBD_TAG_HELD;
                        nbd_lost(nq);
                        return 0;
                }
                log_debug("Queue %u of ublk device %u: NBD request refused: %s", nq->q->q_id, nq->q->dev->id,
                          nbd_get_error());
                return e > 0 ? -e : -EIO;
        }
        nq->tags[tag].state = NBD_TAG_INFLIGHT;
        return 0;
}

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int nbd_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        struct nbd_queue *nq = q->target_data;
        int r;

        nq->tags[tag].since_usec = now_usec();
        r = nbd_issue(nq, tag);
        if (r < 0)
                return r;
        q->target_inflight++;
        nbd_rearm(nq);
        return UBLK_TARGET_QUEUED;
}

static void nbd_arm(struct nbd_queue *nq, int fd, unsigned events, unsigned ev)
{
        struct io_uring_sqe *sqe = ublk_queue_get_sqe(nq->q);

        if (!sqe) {
                /* Cannot happen with the ring sized for depth * 2 plus our four; say so if it does. */
                log_error("Queue %u of ublk device %u: no SQE to poll the NBD connection", nq->q->q_id,
                          nq->q->dev->id);
                return;
        }
        if (ev == NBD_EV_TICK) {
                nq->tick = (struct __kernel_timespec) { .tv_sec = NBD_TICK_S };
                io_uring_prep_timeout(sqe, &nq->tick, 0, 0);
        } else
                io_uring_prep_poll_add(sqe, fd, events);
        sqe->user_data = ublk_event_user_data(nq->gen << 4 | ev);
}

/* A user's device: a request the server sat on too long ends the connection (see above). */
static void nbd_check_deadline(struct nbd_queue *nq)
{
        uint64_t now = now_usec();

        if (!nq->h)
                return;
        for (unsigned tag = 0; tag < nq->q->depth; tag++)
                if (nq->tags[tag].state == NBD_TAG_INFLIGHT &&
                    now - nq->tags[tag].since_usec > (uint64_t) NBD_USER_IO_DEADLINE_S * 1000000) {
                        log_warning("Queue %u of ublk device %u: the NBD server has not answered a request "
                                    "in %d s; dropping the connection before the kernel's timeout would.",
                                    nq->q->q_id, nq->q->dev->id, NBD_USER_IO_DEADLINE_S);
                        nbd_lost(nq);
                        return;
                }
}

/* The polls libnbd wants now; a dead handle is let go of. */
static void nbd_rearm(struct nbd_queue *nq)
{
        unsigned dir;
        int fd;

        if (!nq->wake_armed) {
                nbd_arm(nq, nq->wake_fd, POLLIN, NBD_EV_WAKE);
                nq->wake_armed = true;
        }
        if (nq->q->dev->unprivileged && !nq->tick_armed && nq->q->target_inflight > 0) {
                nbd_arm(nq, -1, 0, NBD_EV_TICK);
                nq->tick_armed = true;
        }
        if (!nq->h)
                return;
        if (nbd_aio_is_dead(nq->h) || nbd_aio_is_closed(nq->h)) {
                nbd_lost(nq);
                return;
        }
        fd = nbd_aio_get_fd(nq->h);
        dir = nbd_aio_get_direction(nq->h);
        if (fd < 0)
                return;
        if ((dir & LIBNBD_AIO_DIRECTION_READ) && !nq->read_armed) {
                nbd_arm(nq, fd, POLLIN, NBD_EV_READ);
                nq->read_armed = true;
        }
        if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && !nq->write_armed) {
                nbd_arm(nq, fd, POLLOUT, NBD_EV_WRITE);
                nq->write_armed = true;
        }
}

/* A handle to serve with from now on: what was held goes out on it. */
static void nbd_take_handle(struct nbd_queue *nq, struct nbd_handle *h)
{
        nq->h = h;
        nq->gen++;
        nq->read_armed = nq->write_armed = false;
        nq->failing = false;
        for (unsigned tag = 0; tag < nq->q->depth; tag++) {
                int r;

                if (nq->tags[tag].state != NBD_TAG_HELD)
                        continue;
                nq->tags[tag].state = NBD_TAG_IDLE;
                r = nbd_issue(nq, tag);
                if (r < 0)
                        nbd_commit(nq, tag, r);
                if (!nq->h)
                        break;  /* died at once: the rest stay held */
        }
}

static void nbd_fail_held(struct nbd_queue *nq)
{
        for (unsigned tag = 0; tag < nq->q->depth; tag++)
                if (nq->tags[tag].state == NBD_TAG_HELD)
                        nbd_commit(nq, tag, -EIO);
}

/* The connection is dead: its requests are held, and the control side is asked for another. */
static void nbd_lost(struct nbd_queue *nq)
{
        struct nbd_handle *h = nq->h;

        if (!h)
                return;
        log_warning("Queue %u of ublk device %u lost its NBD connection (%s); IO waits for a new one.",
                    nq->q->q_id, nq->q->dev->id, nbd_aio_is_dead(h) ? "dead" : "closed");
        nq->h = NULL;
        nq->gen++;
        nq->read_armed = nq->write_armed = false;
        nbd_close(h);
        /* Whatever libnbd did not end (it ends all with ENOTCONN) is held just the same. */
        for (unsigned tag = 0; tag < nq->q->depth; tag++)
                if (nq->tags[tag].state == NBD_TAG_INFLIGHT)
                        nq->tags[tag].state = NBD_TAG_HELD;
        nq->failing = nbd_conn_lost(nq->nd, nq->q->q_id);
        if (nq->failing)
                nbd_fail_held(nq);
}

static void nbd_event(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
        struct nbd_queue *nq = q->target_data;
        uint32_t value = ublk_user_data_target_value(cqe->user_data);
        unsigned ev = value & 0xf, gen = value >> 4;
        struct nbd_handle *h;
        uint64_t n;
        bool fail;

        switch (ev) {
        case NBD_EV_WAKE:
                nq->wake_armed = false;
                (void) !read(nq->wake_fd, &n, sizeof(n));
                nbd_conn_take(nq->nd, q->q_id, &h, &fail);
                if (h && !nq->h)
                        nbd_take_handle(nq, h);
                else if (h)
                        nbd_close(h);
                if (!nq->h && fail) {
                        nq->failing = true;
                        nbd_fail_held(nq);
                }
                break;
        case NBD_EV_TICK:
                nq->tick_armed = false;
                nbd_check_deadline(nq);
                break;
        case NBD_EV_READ:
        case NBD_EV_WRITE:
                if (gen != (nq->gen & 0xfffffff))
                        return;         /* a poll on a handle since let go of */
                if (ev == NBD_EV_READ)
                        nq->read_armed = false;
                else
                        nq->write_armed = false;
                if (!nq->h)
                        break;
                if ((ev == NBD_EV_READ ? nbd_aio_notify_read(nq->h) : nbd_aio_notify_write(nq->h)) < 0)
                        log_debug("Queue %u of ublk device %u: NBD connection: %s", q->q_id, q->dev->id,
                                  nbd_get_error());
                break;
        default:
                return;
        }
        nbd_rearm(nq);
}

static int nbd_queue_init(struct ublk_queue *q)
{
        struct nbd_queue *nq;

        nq = calloc(1, sizeof(*nq) + q->depth * sizeof(nq->tags[0]));
        if (!nq)
                return -ENOMEM;
        nq->q = q;
        nq->nd = q->dev->target_data;
        for (unsigned tag = 0; tag < q->depth; tag++)
                nq->tags[tag] = (struct nbd_tag) { .nq = nq, .tag = tag };
        nq->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (nq->wake_fd < 0) {
                int r = -errno;

                free(nq);
                return r;
        }
        nbd_conn_queue_attach(nq->nd, q->q_id, nq->wake_fd, &nq->h, &nq->caps);
        q->target_data = nq;
        return 0;
}

static void nbd_queue_deinit(struct ublk_queue *q)
{
        struct nbd_queue *nq = q->target_data;

        if (!nq)
                return;
        /* A live connection stays for the next start; the control side closes the rest. */
        nbd_conn_queue_detach(nq->nd, q->q_id, nq->h);
        safe_close(nq->wake_fd);
        free(nq);
        q->target_data = NULL;
}

const struct ublk_target_ops target_nbd_ops = {
        .name = "nbd",
        .desc = &ublk_target_nbd,
        .config_size = sizeof(struct nbd_config),
        .config_init = nbd_config_init,
        .set_option = nbd_set_option,
        .get_option = nbd_get_option,
        .config_release = nbd_config_release,
        .init = nbd_conn_init,
        .deinit = nbd_conn_deinit,
        .queue_init = nbd_queue_init,
        .queue_deinit = nbd_queue_deinit,
        .queue_io = nbd_queue_io,
        .event = nbd_event,
        .stopping = nbd_conn_stopping,
        .status = nbd_conn_status,
};
