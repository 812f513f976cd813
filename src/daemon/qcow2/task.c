/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Queues and tasks: the engine's only way of waiting.  A task waits either for its host IOs
 * (pending > 0: run again when the last completes) or on one wait list (parked; run again when
 * the list is woken).  Host IO is queued in the running thread's outbox and submitted by
 * q2_pump(), which every entry point (qcow2_submit, qcow2_io_done, qcow2_queue_run) calls last,
 * with no lock held: ops->submit() never runs under the image lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "q2.h"

static __thread struct qcow2_queue *cur_q;

struct qcow2_queue *q2_cur(void)
{
        return cur_q;
}

struct qcow2_queue *qcow2_queue_new(const struct qcow2_io_ops *ops, void *ctx)
{
        struct qcow2_queue *q = calloc(1, sizeof(*q));

        if (!q)
                return NULL;
        q->ops = ops;
        q->ctx = ctx;
        pthread_mutex_init(&q->lock, NULL);
        return q;
}

void qcow2_queue_free(struct qcow2_queue *q)
{
        if (!q)
                return;
        pthread_mutex_destroy(&q->lock);
        free(q);
}

void q2_wake(struct q2_task *t)
{
        struct qcow2_queue *q = t->q;

        pthread_mutex_lock(&q->lock);
        if (!t->on_ready) {
                t->on_ready = true;
                t->next = NULL;
                if (q->ready_tail)
                        q->ready_tail->next = t;
                else
                        q->ready_head = t;
                q->ready_tail = t;
        }
        pthread_mutex_unlock(&q->lock);
        if (q != cur_q && q->ops->wake)
                q->ops->wake(q->ctx);
}

void q2_wake_list(struct q2_task **list)
{
        struct q2_task *t = *list;

        *list = NULL;
        while (t) {
                struct q2_task *next = t->next;
                q2_wake(t);
                t = next;
        }
}

void q2_park(struct q2_task **list, struct q2_task *t)
{
        t->next = *list;
        *list = t;
}

void *q2_buf(size_t len, bool zero)
{
        size_t n = (len + 511) & ~(size_t) 511;
        void *p;

        if (posix_memalign(&p, 4096, n ? n : 512))
                return NULL;
        if (zero)
                memset(p, 0, n ? n : 512);
        return p;
}

struct q2_hio *q2_hio_new(struct qcow2_image *img, enum qcow2_io_op op, void *buf, size_t len,
                          uint64_t off)
{
        struct q2_hio *h = calloc(1, sizeof(*h));

        if (!h)
                abort();        /* a few dozen bytes: no way on from here worth having */
        h->img = img;
        img->inflight++;
        h->io.op = op;
        h->io.fd = img->fd;
        h->io.level = img->level;
        h->io.buf = buf;
        h->io.len = len;
        h->io.off = off;
        return h;
}

void q2_hio_task(struct q2_hio *h, struct q2_task *t)
{
        h->task = t;
        t->pending++;
}

void q2_hio_submit(struct q2_hio *h)
{
        struct qcow2_queue *q = cur_q;

        h->next = NULL;
        if (q->out_tail)
                q->out_tail->next = h;
        else
                q->out_head = h;
        q->out_tail = h;
}

void q2_pump(struct qcow2_queue *q)
{
        if (q->pumping)
                return;
        q->pumping = true;
        for (;;) {
                struct q2_hio *h = q->out_head;
                struct q2_task *t;

                if (h) {
                        q->out_head = h->next;
                        if (!q->out_head)
                                q->out_tail = NULL;
                        q->ops->submit(q->ctx, &h->io);
                        continue;
                }
                pthread_mutex_lock(&q->lock);
                t = q->ready_head;
                if (t) {
                        q->ready_head = t->next;
                        if (!q->ready_head)
                                q->ready_tail = NULL;
                        t->on_ready = false;
                        t->next = NULL;
                }
                pthread_mutex_unlock(&q->lock);
                if (!t)
                        break;
                t->run(t);
        }
        q->pumping = false;
}

void qcow2_io_done(struct qcow2_queue *q, struct qcow2_io *io, int result)
{
        struct q2_hio *h = (struct q2_hio *) io;
        struct qcow2_queue *saved = cur_q;

        cur_q = q;
        if (io->op == QCOW2_IO_READ && result >= 0 && (size_t) result < io->len) {
                memset((uint8_t *) io->buf + result, 0, io->len - (size_t) result);
                result = (int) io->len;
        } else if (io->op == QCOW2_IO_WRITE && result >= 0 && (size_t) result < io->len)
                result = -EIO;
        if (h->done)
                h->done(h, result);
        else if (h->task) {
                struct q2_task *t = h->task;
                if (result < 0 && !t->err)
                        t->err = result;
                if (--t->pending == 0)
                        q2_wake(t);
        }
        h->img->inflight--;
        free(h->copy);
        free(h);
        q2_pump(q);
        cur_q = saved;
}

void qcow2_queue_run(struct qcow2_queue *q)
{
        struct qcow2_queue *saved = cur_q;

        cur_q = q;
        q2_pump(q);
        cur_q = saved;
}

bool qcow2_busy(const struct qcow2_image *img)
{
        return img->inflight != 0;
}

void qcow2_submit(struct qcow2_image *img, struct qcow2_queue *q, struct qcow2_req *req)
{
        struct qcow2_queue *saved = cur_q;

        cur_q = q;
        q2_req_start(img, q, req);
        q2_pump(q);
        cur_q = saved;
}
