/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "rbd": a device backed by an image of a Ceph cluster, through librados and librbd (never the
 * protocol by hand).
 *
 * Connecting (rados_connect, rbd_open) blocks: init() runs in a work thread (device.h), and
 * every wait is bounded by options set from connect-timeout and io-timeout, so that a dead
 * cluster is a one-line error in bounded time.  The cluster is told nothing but what this file
 * sets: for a user other than root, ublkd, which is root, reads no path of the user's and lets
 * librados read none (no default ceph.conf or keyring): the user's ceph.conf and keyring come as
 * fds, copied into memfds that librados reads as /proc/self/fd/N, and only the keys of their
 * ceph.conf that name no file are taken (rbd-conf.h).  Ceph writes no log file and makes no
 * admin socket.  Keys stay in librados's memory: never in a log, a state file or a property.
 *
 * IO: one image handle per device, shared by its queues.  librbd's handles are thread-safe, and
 * the exclusive lock is a handle's: two handles of one device would take it from each other at
 * every write.  Each request is an rbd_aio_* call whose completion callback (a librbd thread)
 * puts it on its queue's list and, when that list was empty, signals the queue's eventfd.
 * Each queue keeps a read of its eventfd on its io_uring (ublk_event_user_data()), so its thread
 * stays event-driven: the read's CQE makes it take the list and commit each request.
 * (rbd_set_image_notification() signals one fd per image, which would not say which queue a
 * completion belongs to.)  No request has a thread of its own.
 *
 * io-timeout is librados's rados_osd_op_timeout: an OSD op not answered within it fails,
 * librbd fails the request, and the device gets EIO; the device stays.  ublkd cannot fail a
 * request earlier itself: librbd may still write a READ's data into the tag's buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "queue.h"
#include "rbd.h"
#include "ublk_cmd.h"

static void rbd_config_init(void *config)
{
        *(struct rbd_config *) config = (struct rbd_config) { .conf_fd = -1, .keyring_fd = -1 };
}

static int set_string(char *field, size_t size, const char *s)
{
        if (!*s || strlen(s) >= size)
                return -EINVAL;
        strcpy(field, s);
        return 0;
}

static int set_fd(int *field, int fd)
{
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

        if (copy < 0)
                return -errno;
        safe_close(*field);
        *field = copy;
        return 0;
}

static int rbd_set_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v)
{
        struct rbd_config *rc = config;

        if (strcmp(o->key, "image-spec") == 0)
                return set_string(rc->image, sizeof(rc->image), v->s);
        if (strcmp(o->key, "ceph-id") == 0)
                return set_string(rc->ceph_id, sizeof(rc->ceph_id), v->s);
        if (strcmp(o->key, "mon-host") == 0)
                return set_string(rc->mon_host, sizeof(rc->mon_host), v->s);
        if (strcmp(o->key, "ceph-conf") == 0)
                return set_fd(&rc->conf_fd, v->fd);
        if (strcmp(o->key, "keyring") == 0)
                return set_fd(&rc->keyring_fd, v->fd);
        if (strcmp(o->key, "io-timeout") == 0 || strcmp(o->key, "connect-timeout") == 0) {
                /* Its range is rbd_init()'s to check, with a message. */
                if (v->u == 0 || v->u > UINT32_MAX)
                        return -EINVAL;
                *(o->key[0] == 'i' ? &rc->io_timeout : &rc->connect_timeout) = (uint32_t) v->u;
                return 0;
        }
        return -EINVAL;
}

static int rbd_get_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret)
{
        const struct rbd_config *rc = config;
        const char *s = NULL;
        int fd = -1;
        uint32_t u = 0;

        if (strcmp(o->key, "image-spec") == 0)
                s = rc->image[0] ? rc->image : NULL;
        else if (strcmp(o->key, "ceph-id") == 0)
                s = rc->ceph_id[0] ? rc->ceph_id : NULL;
        else if (strcmp(o->key, "mon-host") == 0)
                s = rc->mon_host[0] ? rc->mon_host : NULL;
        else if (strcmp(o->key, "ceph-conf") == 0)
                fd = rc->conf_fd;
        else if (strcmp(o->key, "keyring") == 0)
                fd = rc->keyring_fd;
        else if (strcmp(o->key, "io-timeout") == 0)
                u = rc->io_timeout;
        else if (strcmp(o->key, "connect-timeout") == 0)
                u = rc->connect_timeout;
        if (s)
                ret->s = s;
        else if (fd >= 0)
                ret->fd = fd;
        else if (u)
                ret->u = u;
        else
                return -ENOENT;
        return 0;
}

static void rbd_config_release(void *config)
{
        struct rbd_config *rc = config;

        rc->conf_fd = safe_close(rc->conf_fd);
        rc->keyring_fd = safe_close(rc->keyring_fd);
}

static void rbd_dev_free(struct rbd_dev *rd)
{
        if (!rd)
                return;
        /* Waits for a callback under way: none runs after this. */
        if (rd->watching)
                (void) rbd_update_unwatch(rd->image, rd->watch_handle);
        pthread_mutex_destroy(&rd->resize_lock);
        if (rd->image)
                (void) rbd_close(rd->image);    /* flushes librbd's cache */
        if (rd->ioctx)
                rados_ioctx_destroy(rd->ioctx);
        if (rd->cluster)
                rados_shutdown(rd->cluster);
        free(rd);
}

/*
 * In a librbd thread, when the image's header changed (a resize, a snapshot, a lock...): a
 * larger image grows the live device (UBLK_U_CMD_UPDATE_SIZE), where the kernel can.  A smaller
 * one does not shrink it (a file system on it would lose its end under its feet): IO past the
 * image's end then fails.
 */
static void rbd_header_changed(void *arg)
{
        struct rbd_dev *rd = arg;
        struct ublk_dev *dev = rd->dev;
        uint32_t lbs = dev->config.logical_block_size;
        uint64_t size;
        int r;

        if (rbd_get_size(rd->image, &size) < 0)
                return;
        size = size / lbs * lbs;
        pthread_mutex_lock(&rd->resize_lock);
        if (size == rd->size)
                goto out;
        if (size < rd->size) {
                log_warning("rbd: image %s of ublk device %u shrank to %llu bytes; the device keeps its %llu "
                            "(IO past the image's end fails).", rbd_config(dev)->image, dev->id,
                            (unsigned long long) size, (unsigned long long) rd->size);
                rd->size = size;        /* said once */
                goto out;
        }
        if (!dev->live)
                /* No disk to resize; the next change of the header once it is live tries again. */
                goto out;
        r = ublk_ctrl_update_size(dev->ctrl, dev->id, dev->unprivileged, size >> 9);
        if (r < 0) {
                log_warning_errno(r, "rbd: image %s of ublk device %u grew to %llu bytes, but the kernel cannot "
                                  "resize the device%s: %m", rbd_config(dev)->image, dev->id, (unsigned long long) size,
                                  r == -EOPNOTSUPP ? " (UBLK_F_UPDATE_SIZE, Linux 6.16 or later)" : "");
                rd->size = size;        /* said once */
                goto out;
        }
        log_info("rbd: image %s grew to %llu bytes: so did ublk device %u.", rbd_config(dev)->image,
                 (unsigned long long) size, dev->id);
        dev->params.basic.dev_sectors = size >> 9;
        dev->config.size = rd->size = size;
out:
        pthread_mutex_unlock(&rd->resize_lock);
}

static int rbd_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        struct ublk_dev_config *c = &dev->config;
        struct rbd_config *rc = rbd_config(dev);
        struct rbd_dev *rd = NULL;
        struct rbd_spec spec;
        uint64_t size;
        int r;

        if (!rc->image[0] || rbd_spec_parse(rc->image, &spec) < 0) {
                REASON("Target 'rbd' needs its image as POOL/[NAMESPACE/]IMAGE[@SNAP] (option 'image-spec')");
                return -EINVAL;
        }
        if (rc->ceph_id[0] && (strpbrk(rc->ceph_id, " \t=[]") || strncmp(rc->ceph_id, "client.", 7) == 0)) {
                REASON("ceph-id is the client's id without \"client.\" (e.g. admin)");
                return -EINVAL;
        }
        if (rc->io_timeout > RBD_MAX_IO_TIMEOUT || rc->connect_timeout > RBD_MAX_CONNECT_TIMEOUT) {
                REASON("io-timeout is at most %ds, connect-timeout at most %ds", RBD_MAX_IO_TIMEOUT,
                       RBD_MAX_CONNECT_TIMEOUT);
                return -EINVAL;
        }
        if (dev->unprivileged && rc->keyring_fd < 0) {
                REASON("A user's rbd device needs the user's own key: pass their keyring (option 'keyring', "
                       "ublkctl add --keyring FILE); ublkd reads no key of root's for a user");
                return -EPERM;
        }
        if (dev->unprivileged && rc->conf_fd < 0 && !rc->mon_host[0]) {
                REASON("A user's rbd device needs the cluster's monitors: pass option 'mon-host' or a "
                       "ceph.conf in option 'ceph-conf' (ublkctl add --mon-host, --ceph-conf); ublkd reads "
                       "/etc/ceph for root only");
                return -EPERM;
        }
        if (spec.snap && !c->read_only)
                c->read_only = true;    /* a snapshot cannot be written */

        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        rd->dev = dev;
        pthread_mutex_init(&rd->resize_lock, NULL);
        r = rbd_connect(dev, rd, &spec, reason);
        if (r >= 0)
                r = rbd_get_size(rd->image, &size);
        if (r < 0)
                goto fail;

        if (c->logical_block_size == 0)
                c->logical_block_size = 512;
        size = size / c->logical_block_size * c->logical_block_size;
        if (c->size == 0)
                c->size = size;
        if (c->size == 0 || c->size > size) {
                REASON("Image '%s' has %llu bytes, %s", rc->image, (unsigned long long) size,
                       c->size == 0 ? "less than a block" : "less than the size asked for");
                r = -ENOSPC;
                goto fail;
        }

        ublk_params_set_basic(dev, params);
        /* librbd's cache (rbd_cache, writeback once flushed) needs our flushes; FUA the kernel
         * makes a write and a flush of. */
        params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
        if (!rd->read_only) {
                params->types |= UBLK_PARAM_TYPE_DISCARD;
                params->discard = (struct ublk_param_discard) {
                        .discard_granularity = 4096,
                        .max_discard_sectors = UINT32_MAX >> 9,
                        .max_write_zeroes_sectors = UINT32_MAX >> 9,
                        .max_discard_segments = 1,
                };
        }
        rd->size = c->size;
        /* A snapshot does not change.  A device added smaller than its image keeps its size. */
        if (!rd->read_only && c->size == size) {
                r = rbd_update_watch(rd->image, &rd->watch_handle, rbd_header_changed, rd);
                if (r < 0)
                        log_warning_errno(r, "rbd: cannot watch image %s: a resize will not reach the device: %m",
                                          rc->image);
                rd->watching = r >= 0;
        }
        dev->target_data = rd;
        return 0;
fail:
        rbd_dev_free(rd);
        return r;
}

static void rbd_deinit(struct ublk_dev *dev)
{
        rbd_dev_free(dev->target_data);
        dev->target_data = NULL;
}

/* A request in librbd's hands. */
struct rbd_req {
        struct rbd_queue *rq;
        unsigned tag;
        int result;             /* of a whole request: its bytes, or a negative errno */
        uint32_t len;
        unsigned op;
        struct rbd_req *next;
};

struct rbd_queue {
        int efd;                /* signalled by completions, read on the queue's ring */
        uint64_t ebuf;
        bool armed;
        pthread_mutex_t lock;
        struct rbd_req *done;   /* completed, for the queue's thread to commit */
        struct rbd_req reqs[];  /* one per tag */
};

static void rbd_queue_deinit(struct ublk_queue *q)
{
        struct rbd_queue *rq = q->target_data;

        if (!rq)
                return;
        safe_close(rq->efd);
        pthread_mutex_destroy(&rq->lock);
        free(rq);
        q->target_data = NULL;
}

static int rbd_queue_init(struct ublk_queue *q)
{
        struct rbd_queue *rq = calloc(1, sizeof(*rq) + q->depth * sizeof(struct rbd_req));

        if (!rq)
                return -ENOMEM;
        /* Blocking: io_uring then waits for it to be signalled (a non-blocking one answers EAGAIN). */
        rq->efd = eventfd(0, EFD_CLOEXEC);
        if (rq->efd < 0) {
                int r = -errno;

                free(rq);
                return r;
        }
        pthread_mutex_init(&rq->lock, NULL);
        for (unsigned tag = 0; tag < q->depth; tag++)
                rq->reqs[tag] = (struct rbd_req) { .rq = rq, .tag = tag };
        q->target_data = rq;
        return 0;
}

/* In a librbd thread. */
static void rbd_io_complete(rbd_completion_t c, void *arg)
{
        struct rbd_req *req = arg;
        struct rbd_queue *rq = req->rq;
        ssize_t r = rbd_aio_get_return_value(c);
        uint64_t one = 1;
        bool wake;

        rbd_aio_release(c);
        if (r < 0)
                /* The device gets EIO for what the cluster could not do (ETIMEDOUT: io-timeout). */
                req->result = r == -EROFS || r == -ENOSPC || r == -EOPNOTSUPP ? (int) r : -EIO;
        else
                req->result = req->op == UBLK_IO_OP_READ || req->op == UBLK_IO_OP_WRITE ? (int) req->len : 0;

        pthread_mutex_lock(&rq->lock);
        wake = !rq->done;
        req->next = rq->done;
        rq->done = req;
        pthread_mutex_unlock(&rq->lock);
        if (wake && write(rq->efd, &one, sizeof(one)) < 0)
                log_error_errno(-errno, "rbd: cannot signal a queue's eventfd: %m");
}

/* The read of the eventfd that wakes the queue when librbd completes something. */
static int rbd_arm(struct ublk_queue *q)
{
        struct rbd_queue *rq = q->target_data;
        struct io_uring_sqe *sqe;

        if (rq->armed)
                return 0;
        sqe = ublk_queue_get_sqe(q);
        if (!sqe)
                return -EAGAIN;
        io_uring_prep_read(sqe, rq->efd, &rq->ebuf, sizeof(rq->ebuf), 0);
        sqe->user_data = ublk_event_user_data(0);
        rq->armed = true;
        return 0;
}

static void rbd_queue_event(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
        struct rbd_queue *rq = q->target_data;
        struct rbd_req *list;
        int r;

        rq->armed = false;
        if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN)
                log_error_errno(cqe->res, "Queue %u of ublk device %u: reading its eventfd failed: %m",
                                q->q_id, q->dev->id);

        pthread_mutex_lock(&rq->lock);
        list = rq->done;
        rq->done = NULL;
        pthread_mutex_unlock(&rq->lock);

        while (list) {
                struct rbd_req *req = list;

                list = req->next;
                q->ios[req->tag].target_inflight--;
                q->target_inflight--;
                ublk_queue_commit(q, req->tag, req->result);
        }
        r = rbd_arm(q);
        if (r < 0)
                log_error_errno(r, "Queue %u of ublk device %u: cannot wait for librbd: %m", q->q_id, q->dev->id);
}

static int rbd_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        struct rbd_dev *rd = q->dev->target_data;
        struct rbd_queue *rq = q->target_data;
        struct rbd_req *req = &rq->reqs[tag];
        unsigned op = ublksrv_get_op(iod);
        uint64_t off = iod->start_sector << 9;
        uint32_t len = iod->nr_sectors << 9;
        rbd_completion_t c;
        int r;

        switch (op) {
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_FLUSH:
                break;
        case UBLK_IO_OP_WRITE:
        case UBLK_IO_OP_DISCARD:
        case UBLK_IO_OP_WRITE_ZEROES:
                if (rd->read_only)
                        return -EROFS;
                break;
        default:
                return -EOPNOTSUPP;
        }
        r = rbd_arm(q);
        if (r < 0)
                return r;

        *req = (struct rbd_req) { .rq = rq, .tag = tag, .len = len, .op = op };
        r = rbd_aio_create_completion(req, rbd_io_complete, &c);
        if (r < 0)
                return r;
        switch (op) {
        case UBLK_IO_OP_READ:
                r = rbd_aio_read(rd->image, off, len, ublk_queue_io_buf(q, tag), c);
                break;
        case UBLK_IO_OP_WRITE:
                r = rbd_aio_write(rd->image, off, len, ublk_queue_io_buf(q, tag), c);
                break;
        case UBLK_IO_OP_FLUSH:
                r = rbd_aio_flush(rd->image, c);
                break;
        case UBLK_IO_OP_DISCARD:
                r = rbd_aio_discard(rd->image, off, len, c);
                break;
        case UBLK_IO_OP_WRITE_ZEROES:
                /* NOUNMAP: zeroes that stay allocated. */
                r = rbd_aio_write_zeroes(rd->image, off, len, c,
                                         (ublksrv_get_flags(iod) & UBLK_IO_F_NOUNMAP) ?
                                         RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
                break;
        }
        if (r < 0) {
                rbd_aio_release(c);
                return r;
        }
        q->ios[tag].target_inflight++;
        q->target_inflight++;
        return UBLK_TARGET_QUEUED;
}

static int rbd_io_done(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        return -EIO;    /* no SQE of a tag's: its completions come through event() */
}

const struct ublk_target_ops target_rbd_ops = {
        .name = "rbd",
        .desc = &ublk_target_rbd,
        .config_size = sizeof(struct rbd_config),
        .config_init = rbd_config_init,
        .set_option = rbd_set_option,
        .get_option = rbd_get_option,
        .config_release = rbd_config_release,
        .init = rbd_init,
        .deinit = rbd_deinit,
        .queue_init = rbd_queue_init,
        .queue_deinit = rbd_queue_deinit,
        .queue_io = rbd_queue_io,
        .io_done = rbd_io_done,
        .event = rbd_queue_event,
};
