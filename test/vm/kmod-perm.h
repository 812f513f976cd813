/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The parts of kmod-perm (see kmod-perm.c for its commands): kmod-perm.c has the control
 * commands, the device setup every server shares and the stalling server; kmod-perm-race.c
 * the servers that race the driver on their tags (guess, ucrace).
 *
 *   setup_dev(A, SIZE, DESCS)   adds a device as A->uid (A->how, A->depth) from a thread of
 *                               that uid, sets its parameters (SIZE bytes), prints its id, opens
 *                               its char device and maps the descriptors into *DESCS.  Sets
 *                               dev_id.  Returns the char device's fd, or -1 (said on stderr).
 *   start_thread(NULL)          a thread's body: START_DEV of dev_id (waits until every tag is
 *                               fetched), "START_DEV: R" on stderr, exit(1) if it failed.
 *   queue_cmd(RING, FD, OP, TAG, RES, BUF)
 *                               queues IO command OP of queue 0's TAG (user_data TAG); the ring
 *                               must have a free SQE.
 *   now()                       CLOCK_MONOTONIC in seconds.
 */
#ifndef KMOD_PERM_H
#define KMOD_PERM_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>

#include "ublk_cmd.h"

#define MAXIO (512 * 1024)

struct add_args {
	unsigned uid;
	const char *how;
	unsigned depth;
	struct ublksrv_ctrl_dev_info info;
	int r;
};

extern unsigned dev_id;

int setup_dev(struct add_args *a, size_t size, struct ublksrv_io_desc **descs);
void *start_thread(void *p);
struct io_uring_sqe *queue_cmd(struct io_uring *ring, int fd, unsigned op, unsigned tag,
			       int res, void *buf);
double now(void);

int guess_server(unsigned uid, size_t size, bool ucopy);
int ucrace_server(size_t size, const char *slowdev, __u64 sector);

#endif
