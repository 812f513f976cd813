/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A ublk hardware queue served by one thread with its own io_uring.
 *
 * The thread fetches every tag at start (FETCH_REQ), then loops: wait for a
 * batch of completions with one io_uring_enter, hand each request to the
 * target, and commit results with COMMIT_AND_FETCH_REQ on the same ring,
 * together with any IO the target queued.  It ends when the kernel has
 * aborted every tag (after STOP_DEV) and no target IO is in flight.
 *
 * queue_start() returns once the thread has submitted its FETCHes (or
 * failed to), which is what START_DEV needs.  queue_join() waits for the end.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <liburing.h>

#include "ublk_cmd.h"

struct ublk_dev;

struct ublk_io {
        void *buf;
        bool in_kernel;         /* a FETCH or COMMIT_AND_FETCH is outstanding */
        unsigned target_inflight;
};

struct ublk_queue {
        struct ublk_dev *dev;
        unsigned q_id;
        unsigned depth;
        struct io_uring ring;
        bool ring_ready;
        const struct ublksrv_io_desc *descs;
        size_t descs_len;
        void *bufs;
        size_t bufs_len;
        struct ublk_io *ios;
        unsigned cmds_in_kernel;
        unsigned target_inflight;
        unsigned commit_op;
        unsigned fetch_op;
        /* A user's device: the io_uring personality with the user's credentials that the
         * target's IO on the backing carries (user-child.h); 0 (ublkd's own) otherwise. */
        unsigned personality;
        void *target_data;

        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool setup_done;
        int setup_result;
};

/* user_data layout: tag in bits 0-15, a target's own value in 16-47, kind in 48-55. */
enum {
        UBLK_UD_KIND_CMD = 0,
        UBLK_UD_KIND_TARGET = 1,
        /* A target's SQE of the queue, not of a tag (an eventfd its library signals): its CQE
         * goes to the target's queue_event(), and it is not counted in flight. */
        UBLK_UD_KIND_QUEUE = 2,
};

static inline uint64_t ublk_queue_user_data(uint32_t target_value)
{
        return ((uint64_t) target_value << 16) | ((uint64_t) UBLK_UD_KIND_QUEUE << 48);
}

static inline uint64_t ublk_target_user_data(unsigned tag, uint32_t target_value)
{
        return (uint64_t) tag | ((uint64_t) target_value << 16) | ((uint64_t) UBLK_UD_KIND_TARGET << 48);
}

static inline uint32_t ublk_user_data_target_value(uint64_t user_data)
{
        return (uint32_t) (user_data >> 16);
}

/* For targets: an SQE on the queue's ring, or NULL if the ring is full. */
struct io_uring_sqe *ublk_queue_get_sqe(struct ublk_queue *q);
/* Copy mode: the tag's data buffer, which the kernel copies request data to and from (in
 * splice mode the target writes a READ's data from it to the device itself).
 * Zero-copy mode: NULL; the request's pages are fixed buffer <tag> of the queue's ring. */
void *ublk_queue_io_buf(struct ublk_queue *q, unsigned tag);

/* For targets whose IO completes elsewhere than in a CQE of theirs for the tag (a library's
 * callback): commits tag's result now, on the queue's thread. */
void ublk_queue_commit(struct ublk_queue *q, unsigned tag, int result);

int queue_start(struct ublk_queue *q);
void queue_join(struct ublk_queue *q);
