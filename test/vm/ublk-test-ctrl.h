/* SPDX-License-Identifier: MIT */
/*
 * ublk commands over io_uring for the VM test programs that talk to a ublk driver without
 * ublkd: ublk-churn.c, kmod-perm.c and kmod-srv.c.
 *
 * A ublk command is an IORING_OP_URING_CMD in a 128-byte SQE (IORING_SETUP_SQE128) whose
 * second half holds the command's struct; liburing 2.3 has no io_uring_prep_cmd().
 *
 *   ublk_cmd_sqe(RING, FD, OP)
 *	The next SQE of RING, both halves cleared, made URING_CMD OP on FD; the command's struct
 *	goes to sqe->cmd.  NULL if RING has no free SQE.
 *   ublk_ctrl_ring_init(RING)
 *	A ring for ublk_ctrl_send(): 0 or -errno.
 *   ublk_ctrl_send(RING, FD, OP, CMD)
 *	Sends control command OP with *CMD (copied) to FD, /dev/ublk-control, on RING, which has
 *	nothing else in flight, and waits for its completion.  Returns the command's result
 *	(>= 0, or the driver's -errno), or io_uring's -errno (-EBUSY: no free SQE).
 *   ublk_ctrl(FD, OP, CMD)
 *	The same on a ring of its own, set up and torn down around the command: any thread may
 *	send one at any time, beside the others (START_DEV waits in the driver until the queue
 *	loop has fetched every tag).  A ring that cannot be set up: its -errno.
 *
 * Nothing here prints or exits.  The buffer CMD points to (addr, len) is the caller's.
 */
#ifndef UBLK_TEST_CTRL_H
#define UBLK_TEST_CTRL_H

#include <errno.h>
#include <liburing.h>
#include <string.h>

#include "ublk_cmd.h"

static inline struct io_uring_sqe *ublk_cmd_sqe(struct io_uring *ring, int fd, __u32 op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return NULL;
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = op;
	return sqe;
}

static inline int ublk_ctrl_ring_init(struct io_uring *ring)
{
	/* one command at a time */
	return io_uring_queue_init(2, ring, IORING_SETUP_SQE128);
}

static inline int ublk_ctrl_send(struct io_uring *ring, int fd, __u32 op,
				 const struct ublksrv_ctrl_cmd *cmd)
{
	struct io_uring_sqe *sqe = ublk_cmd_sqe(ring, fd, op);
	struct io_uring_cqe *cqe;
	int r;

	if (!sqe)
		return -EBUSY;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	r = io_uring_submit_and_wait(ring, 1);
	if (r < 0)
		return r;
	r = io_uring_wait_cqe(ring, &cqe);
	if (r < 0)
		return r;
	r = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return r;
}

static inline int ublk_ctrl(int fd, __u32 op, const struct ublksrv_ctrl_cmd *cmd)
{
	struct io_uring ring;
	int r = ublk_ctrl_ring_init(&ring);

	if (r < 0)
		return r;
	r = ublk_ctrl_send(&ring, fd, op, cmd);
	io_uring_queue_exit(&ring);
	return r;
}

#endif
