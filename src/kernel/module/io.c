// SPDX-License-Identifier: GPL-2.0
/*
 * The IO path: blk-mq hands a request to the server by completing the
 * FETCH (or COMMIT_AND_FETCH) command it holds for the request's tag; the
 * server answers with COMMIT_AND_FETCH, which completes the request and is
 * kept for the tag's next request.
 *
 * Locking: q->lock guards the ios[] hand-over state.  Requests are never
 * ended and io_uring commands never completed under it, since either can
 * run arbitrary code (bio end_io, io_uring locks).  Whoever takes io->req
 * away under the lock ends the request; while the kernel copies a
 * request's data outside the lock, io->copying keeps it in place.
 *
 * Timeouts: a request of an unprivileged device that its server has not
 * answered within the device's timeout (module parameter
 * unprivileged_io_timeout, 30 s) fails with BLK_STS_TIMEOUT, so a stuck or
 * malicious server cannot leave other tasks (and DEL_DEV, which waits for
 * the disk's requests) waiting forever.  The in-tree driver kills the
 * server instead; ublkd serves every user's devices in one process, where
 * that would let one user's stuck backing file take everybody's devices
 * down.  The server still owns the tag: its late COMMIT_AND_FETCH only
 * gives the command back (the result is dropped), a late NEED_GET_DATA
 * fails with -ETIMEDOUT.  Until then a new request on that tag fails at
 * once.  Root's devices keep waiting for their server, as in-tree.
 *
 * Batches: a queue's requests handed over in a row wait on
 * q->dispatch_list for one task work, that of the first (ublk_dispatch_tw()).
 * blk-mq passes a plug's requests to ublk_queue_rqs() (6.12), which takes
 * each as ublk_queue_rq() does and lists a queue's run of them at once;
 * those it cannot take on that fast path go back to blk-mq, which passes
 * them to ublk_queue_rq() one by one.
 *
 * Ownership: from ublk_queue_rq() until ublk_dispatch() runs in the
 * server's task, a tag's request is not yet the server's: the command
 * that will tell it is on its way, and belongs to the dispatch
 * (io->dispatching).  The server may guess, though.  Were its
 * COMMIT_AND_FETCH for such a tag taken, it would end a request it never
 * saw and park its new command in io->cmd, where the dispatch, finding no
 * request, then parks the old one: the new command would never complete,
 * so the server's ring could never exit, its char device never be
 * released, DEL_DEV never return.  So COMMIT_AND_FETCH, NEED_GET_DATA and
 * USER_COPY's pread/pwrite treat such a tag as one without a request.
 *
 * USER_COPY: the server's pread/pwrite on /dev/ublkcN copies a request's
 * data outside q->lock (it may fault, sleep, take long), while another of
 * its threads may send COMMIT_AND_FETCH for the same tag.  Were that commit
 * taken, it would end the request under the copy: the copy would then touch
 * pages the request's owner has freed or reused (or, once a new request is
 * on the tag, mix two requests' data).  A buggy root server must not be able
 * to corrupt kernel memory, so each copy counts itself in io->copiers under
 * q->lock, and a COMMIT_AND_FETCH that finds copies in progress fails with
 * -EBUSY and changes nothing: the request stays the server's, which commits
 * again once its copies are done.  (Deferring the end to the last copier
 * would let the commit's command be parked while its request is not ended,
 * a state every other path would have to know of.)  A copy does not start
 * while a commit is under way (io->copying), nor does a request time out
 * under one.  Nor can the char device's release (ublk_server_gone()) run
 * under a copy: pread/pwrite hold the file.  A splice from the device
 * (usercopy.c) is a copier until the last pipe buffer it made is released,
 * and holds the file as long.  Users' devices refuse USER_COPY, so only
 * root's servers copy this way.
 */
#include <linux/blk-mq.h>
#include <linux/highmem.h>
#include <linux/llist.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "ublk.h"

/* Kept in the command itself: where to find the tag when io_uring calls back. */
struct ublk_cmd_pdu {
	struct ublk_queue *q;
	u16 tag;
};

static inline struct ublk_cmd_pdu *ublk_pdu(struct io_uring_cmd *cmd)
{
	return io_uring_cmd_to_pdu(cmd, struct ublk_cmd_pdu);
}

#define UBLK_PIN_PAGES 16

/*
 * Copies between the request's pages, from byte rq_off of the request on,
 * and len bytes of user memory at addr, in the current task's mm (the
 * server's: copy mode's buffer where pins.c keeps none, USER_COPY's
 * pread/pwrite buffer).  The user pages are pinned, UBLK_PIN_PAGES at a
 * time, and copied with memcpy(), as the in-tree driver does in copy mode:
 * copy_{to,from}_user() is a "rep movsb" on CPUs with ERMS but without
 * FSRM, where memcpy() is not, and qemu's TCG (our test VMs) makes
 * "rep movsb" dear (bench/RESULTS.md).
 * A plain user access without that instruction (8-byte moves under
 * user_access_begin(), no pin) was no faster there for 4k writes.  Plain
 * references instead of pins, as the in-tree driver takes, are faster but
 * unsafe to write through across a fork() (pin_user_pages.rst, case 5).
 * Returns the bytes copied; fewer than len means a fault.
 */
size_t ublk_copy_user(struct request *rq, size_t rq_off, u64 addr, size_t len, bool to_rq)
{
	struct page *pages[UBLK_PIN_PAGES];
	unsigned long first = 0;	/* user address of pages[0] */
	struct req_iterator ri;
	struct bio_vec bv;
	size_t done = 0;
	int pinned = 0;

	rq_for_each_segment(bv, rq, ri) {
		size_t seg;

		if (rq_off >= bv.bv_len) {
			rq_off -= bv.bv_len;
			continue;
		}
		seg = rq_off;
		rq_off = 0;
		while (seg < bv.bv_len && done < len) {
			unsigned long uaddr = addr + done;
			size_t uoff = offset_in_page(uaddr);
			size_t n = min3((size_t)bv.bv_len - seg, PAGE_SIZE - uoff, len - done);

			/* done only grows: past the pinned pages, pin the next ones */
			if (!pinned || uaddr >= first + pinned * PAGE_SIZE) {
				if (pinned)
					unpin_user_pages_dirty_lock(pages, pinned, !to_rq);
				first = uaddr & PAGE_MASK;
				pinned = pin_user_pages_fast(first,
						min_t(unsigned long, UBLK_PIN_PAGES,
						      DIV_ROUND_UP(uoff + len - done, PAGE_SIZE)),
						to_rq ? 0 : FOLL_WRITE, pages);
				if (pinned <= 0)
					return done;
			}
			ublk_copy_page(&bv, seg, pages[(uaddr - first) >> PAGE_SHIFT], uoff, n, to_rq);
			seg += n;
			done += n;
		}
		if (done >= len)
			break;
	}
	if (pinned > 0)
		unpin_user_pages_dirty_lock(pages, pinned, !to_rq);
	return done;
}

static bool ublk_rq_has_data(const struct request *rq)
{
	return req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE;
}

/* Ends a request with the server's result: bytes done, or -errno. */
static void ublk_end_rq(struct request *rq, int res)
{
	if (res < 0) {
		blk_mq_end_request(rq, errno_to_blk_status(res));
		return;
	}
	if (!ublk_rq_has_data(rq)) {
		blk_mq_end_request(rq, BLK_STS_OK);
		return;
	}
	/* no progress at all would requeue it forever */
	if (!res) {
		blk_mq_end_request(rq, BLK_STS_IOERR);
		return;
	}
	res = min_t(unsigned int, res, blk_rq_bytes(rq));
	/* a short transfer: the rest goes to the server again */
	if (blk_update_request(rq, BLK_STS_OK, res))
		blk_mq_requeue_request(rq, true);
	else
		__blk_mq_end_request(rq, BLK_STS_OK);
}

static void ublk_abort_tw(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
}

/*
 * A request that no server takes now, on a device whose requests wait for
 * the next server (ub->nosrv_wait): it goes on the requeue list, which is
 * not kicked, so it stays there until END_USER_RECOVERY (or a stop, which
 * fails it) kicks the list.
 */
static void ublk_requeue_nosrv(struct ublk_queue *q, struct request *rq)
{
	struct ublk_device *ub = q->ub;

	blk_mq_requeue_request(rq, false);
	/*
	 * A recovery that ended, or a stop, may have kicked the list after
	 * its change but before rq was on it: look again, kick for it.
	 */
	smp_mb();
	if (!READ_ONCE(q->canceling) || !READ_ONCE(ub->nosrv_wait))
		blk_mq_kick_requeue_list(rq->q);
}

/* A started request the server never saw, or may do again: wait or fail. */
static void ublk_end_nosrv(struct ublk_queue *q, struct request *rq)
{
	if (READ_ONCE(q->ub->nosrv_wait))
		ublk_requeue_nosrv(q, rq);
	else
		blk_mq_end_request(rq, BLK_STS_IOERR);
}

/*
 * In the server's task: write data goes to its buffer now (copy mode), then
 * the command completes and the server finds the request in its descriptor.
 */
static void ublk_dispatch(struct ublk_queue *q, struct ublk_io *io, struct io_uring_cmd *cmd,
			  unsigned int issue_flags)
{
	struct ublk_device *ub = q->ub;
	/* The ring goes away with its task: nothing can be served. */
	bool dead = ublk_tw_task_dead(issue_flags);
	bool copy = false, get_data = false, give_back;
	struct request *rq;

	spin_lock(&q->lock);
	/* the server may answer from now on; every path below settles cmd */
	io->dispatching = false;
	rq = io->req;
	if (!rq) {
		/* it timed out before we ran: the command waits for the next */
		io->timed_out = false;
		give_back = !dead && !q->canceling;
		if (give_back)
			io->cmd = cmd;
		spin_unlock(&q->lock);
		if (!give_back)
			io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
		return;
	}
	if (dead) {
		/*
		 * The cancel that comes with the ring's end may not have run
		 * yet: nobody takes this queue's requests from now on either.
		 */
		io->req = NULL;
		q->canceling = true;
		spin_unlock(&q->lock);
		ublk_end_nosrv(q, rq);
		io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
		return;
	}
	if (req_op(rq) == REQ_OP_WRITE && !ublk_user_copy(ub)) {
		if (ublk_need_get_data(ub))
			get_data = io->need_data = true;
		else
			copy = io->copying = true;
	}
	spin_unlock(&q->lock);

	if (get_data) {
		io_uring_cmd_done(cmd, UBLK_IO_RES_NEED_GET_DATA, 0, issue_flags);
		return;
	}
	if (copy) {
		bool ok = ublk_copy_io(q, io, rq, io->addr, blk_rq_bytes(rq), false) == blk_rq_bytes(rq);
		/*
		 * A server being killed: its task runs this before it exits, with
		 * the fatal signal pending, and pinning its buffer then fails
		 * (-EINTR).  Not the request's fault: as for a dead task, it waits
		 * for the next server, and this queue takes no more.
		 */
		bool dying = !ok && (fatal_signal_pending(current) || (current->flags & PF_EXITING));

		spin_lock(&q->lock);
		io->copying = false;
		give_back = true;
		if (!ok) {
			/* Bad server buffer: fail this IO, keep the command for the next. */
			io->req = NULL;
			if (dying)
				q->canceling = true;
			give_back = !q->canceling;
			if (give_back)
				io->cmd = cmd;
		}
		spin_unlock(&q->lock);
		if (!ok) {
			if (dying)
				ublk_end_nosrv(q, rq);
			else
				blk_mq_end_request(rq, BLK_STS_IOERR);
			if (!give_back)
				io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
			return;
		}
	}
	io_uring_cmd_done(cmd, UBLK_IO_RES_OK, 0, issue_flags);
}

/* One request's dispatch, on its own command's task work. */
static void ublk_dispatch_one_tw(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct ublk_cmd_pdu *pdu = ublk_pdu(cmd);

	ublk_dispatch(pdu->q, &pdu->q->ios[pdu->tag], cmd, issue_flags);
}

/*
 * The queue's requests handed over since the last run, oldest first, on the
 * task work of the command of the first: blk-mq hands a busy queue many
 * requests in a row, and a task work each costs the server more than one
 * for all (bench/RESULTS.md).  A command of another ring or task than the
 * first's gets a task work of its own: its completion belongs to its ring,
 * a copy to its task's mm.
 */
static void ublk_dispatch_tw(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct ublk_queue *q = ublk_pdu(cmd)->q;
	struct io_ring_ctx *ring = ublk_cmd_ring(cmd);
	struct task_struct *task = ublk_cmd_task(cmd);
	struct llist_node *batch = llist_reverse_order(llist_del_all(&q->dispatch_list));
	struct ublk_io *io, *next;

	/* cmd completes in the loop: only what was read of it above is used */
	llist_for_each_entry_safe(io, next, batch, dispatch_node) {
		struct io_uring_cmd *c = io->dispatch_cmd;

		if (ublk_cmd_ring(c) == ring && ublk_cmd_task(c) == task)
			ublk_dispatch(q, io, c, issue_flags);
		else
			io_uring_cmd_complete_in_task(c, ublk_dispatch_one_tw);
	}
}

static blk_status_t ublk_fill_desc(struct ublk_queue *q, struct request *rq,
				   struct ublksrv_io_desc *iod, u64 addr)
{
	u32 op, flags = 0;

	switch (req_op(rq)) {
	case REQ_OP_READ:
		op = UBLK_IO_OP_READ;
		break;
	case REQ_OP_WRITE:
		op = UBLK_IO_OP_WRITE;
		break;
	case REQ_OP_FLUSH:
		op = UBLK_IO_OP_FLUSH;
		break;
	case REQ_OP_DISCARD:
		op = UBLK_IO_OP_DISCARD;
		break;
	case REQ_OP_WRITE_ZEROES:
		op = UBLK_IO_OP_WRITE_ZEROES;
		break;
	default:
		return BLK_STS_NOTSUPP;
	}
	if (rq->cmd_flags & REQ_FUA)
		flags |= UBLK_IO_F_FUA;
	if (rq->cmd_flags & REQ_NOUNMAP)
		flags |= UBLK_IO_F_NOUNMAP;
	if (rq->cmd_flags & REQ_FAILFAST_DEV)
		flags |= UBLK_IO_F_FAILFAST_DEV;
	if (rq->cmd_flags & REQ_FAILFAST_TRANSPORT)
		flags |= UBLK_IO_F_FAILFAST_TRANSPORT;
	if (rq->cmd_flags & REQ_FAILFAST_DRIVER)
		flags |= UBLK_IO_F_FAILFAST_DRIVER;
	if (rq->cmd_flags & REQ_SWAP)
		flags |= UBLK_IO_F_SWAP;

	/* the server only reads these, once the command's CQE tells it to */
	WRITE_ONCE(iod->op_flags, op | flags << 8);
	WRITE_ONCE(iod->nr_sectors, blk_rq_sectors(rq));
	WRITE_ONCE(iod->start_sector, blk_rq_pos(rq));
	WRITE_ONCE(iod->addr, addr);
	return BLK_STS_OK;
}

/*
 * Under q->lock: rq's descriptor is filled and its tag's command set aside
 * for the dispatch, which the caller starts.  BLK_STS_RESOURCE: the queue
 * has no server (ublk_queue_rq() decides: wait or fail); BLK_STS_IOERR: the
 * server did not fetch this tag; either way nothing changed.
 */
static blk_status_t ublk_take_rq(struct ublk_queue *q, struct request *rq)
{
	struct ublk_io *io = &q->ios[rq->tag];
	blk_status_t st;

	spin_lock(&q->lock);
	if (q->canceling)
		st = BLK_STS_RESOURCE;
	else if (!io->cmd)
		st = BLK_STS_IOERR;
	else
		st = ublk_fill_desc(q, rq, &q->descs[rq->tag], io->addr);
	if (st == BLK_STS_OK) {
		io->dispatch_cmd = io->cmd;
		io->cmd = NULL;
		io->req = rq;
		io->dispatching = true;
		io->need_data = false;
	}
	spin_unlock(&q->lock);
	return st;
}

static blk_status_t ublk_queue_rq(struct blk_mq_hw_ctx *hctx, const struct blk_mq_queue_data *bd)
{
	struct ublk_queue *q = hctx->driver_data;
	struct request *rq = bd->rq;
	struct ublk_io *io = &q->ios[rq->tag];
	struct io_uring_cmd *cmd;
	blk_status_t st;

	st = ublk_take_rq(q, rq);
	if (st == BLK_STS_RESOURCE) {
		/* no server: wait for the next one (USER_RECOVERY), or fail */
		if (!READ_ONCE(q->ub->nosrv_wait))
			return BLK_STS_IOERR;
		ublk_requeue_nosrv(q, rq);
		return BLK_STS_OK;
	}
	if (st)
		return st;

	cmd = io->dispatch_cmd;
	blk_mq_start_request(rq);
	/* the first on the list carries the task work for all (ublk_dispatch_tw()) */
	if (llist_add(&io->dispatch_node, &q->dispatch_list))
		io_uring_cmd_complete_in_task(cmd, ublk_dispatch_tw);
	return BLK_STS_OK;
}

#if UBLK_HAVE_QUEUE_RQS
/* The requests of one queue taken in a row, newest first, and the oldest's command. */
struct ublk_batch {
	struct ublk_queue *q;
	struct llist_node *newest, *oldest;
	struct io_uring_cmd *oldest_cmd;
};

static void ublk_hand_over_batch(struct ublk_batch *b)
{
	if (b->newest && llist_add_batch(b->newest, b->oldest, &b->q->dispatch_list))
		io_uring_cmd_complete_in_task(b->oldest_cmd, ublk_dispatch_tw);
	*b = (struct ublk_batch){};
}

/*
 * A plug's requests (blk_mq_flush_plug_list()): each taken as
 * ublk_queue_rq() takes it, then a queue's run of them handed over with one
 * llist_add_batch(), so the server gets them all in one task work and
 * blk-mq skips its per-request issue.  What cannot be taken on the fast path
 * stays on rqlist: blk-mq passes those to ublk_queue_rq() one by one.
 */
static void ublk_queue_rqs(struct rq_list *rqlist)
{
	struct ublk_batch b = {};
	struct rq_list left;
	struct request *rq;

	rq_list_init(&left);
	while ((rq = rq_list_pop(rqlist))) {
		struct ublk_queue *q = rq->mq_hctx->driver_data;
		struct ublk_io *io = &q->ios[rq->tag];

		if (q != b.q)
			ublk_hand_over_batch(&b);
		if (ublk_take_rq(q, rq) != BLK_STS_OK) {
			rq_list_add_tail(&left, rq);
			continue;
		}
		blk_mq_start_request(rq);
		/* newest first, as llist_add() leaves them: ublk_dispatch_tw() reverses */
		b.q = q;
		io->dispatch_node.next = b.newest;
		b.newest = &io->dispatch_node;
		if (!b.oldest) {
			b.oldest = b.newest;
			b.oldest_cmd = io->dispatch_cmd;
		}
	}
	ublk_hand_over_batch(&b);
	*rqlist = left;
}
#endif

/* See the top of this file. */
static enum blk_eh_timer_return ublk_timeout(struct request *rq)
{
	struct ublk_queue *q = rq->mq_hctx->driver_data;
	struct ublk_io *io = &q->ios[rq->tag];
	bool ours;

	if (!ublk_unprivileged(q->ub))
		return BLK_EH_RESET_TIMER;
	spin_lock(&q->lock);
	/* otherwise its data is being copied, or it is being ended already */
	ours = io->req == rq && !io->copying && !io->copiers;
	if (ours) {
		/* a pending dispatch (io->dispatching) still gives the command back */
		io->req = NULL;
		io->need_data = false;
		io->timed_out = true;
	}
	spin_unlock(&q->lock);
	if (!ours)
		return BLK_EH_RESET_TIMER;
	blk_mq_end_request(rq, BLK_STS_TIMEOUT);
	return BLK_EH_DONE;
}

static int ublk_init_hctx(struct blk_mq_hw_ctx *hctx, void *driver_data, unsigned int hctx_idx)
{
	struct ublk_device *ub = driver_data;

	hctx->driver_data = ub->queues[hctx_idx];
	return 0;
}

const struct blk_mq_ops ublk_mq_ops = {
	.queue_rq	= ublk_queue_rq,
#if UBLK_HAVE_QUEUE_RQS
	.queue_rqs	= ublk_queue_rqs,
#endif
	.timeout	= ublk_timeout,
	.init_hctx	= ublk_init_hctx,
};

/*
 * io_uring cancels our commands when the server's ring goes away (task
 * exit, ring close).  The queue stops taking requests: nobody will answer.
 * Nor may this server fetch again; a new one may, after START_USER_RECOVERY.
 */
static void ublk_cancel_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct ublk_cmd_pdu *pdu = ublk_pdu(cmd);
	struct ublk_queue *q = pdu->q;
	struct ublk_io *io = &q->ios[pdu->tag];
	bool ours;

	spin_lock(&q->lock);
	q->canceling = true;
	q->dead = true;
	ours = io->cmd == cmd;
	if (ours)
		io->cmd = NULL;
	spin_unlock(&q->lock);
	/* otherwise a dispatch is under way and completes it */
	if (ours)
		io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
}

/*
 * Gives back every command of q still waiting for a request; the queue
 * takes no requests from now on.  dead: nor may its server fetch again
 * (its task is exiting, see compat.h).
 */
void ublk_abort_queue(struct ublk_queue *q, bool dead)
{
	u16 t;

	for (t = 0; t < q->depth; t++) {
		struct io_uring_cmd *cmd;

		spin_lock(&q->lock);
		q->canceling = true;
		if (dead)
			q->dead = true;
		cmd = q->ios[t].cmd;
		q->ios[t].cmd = NULL;
		spin_unlock(&q->lock);
		/* completed from its own task, with io_uring's own locking */
		if (cmd)
			io_uring_cmd_complete_in_task(cmd, ublk_abort_tw);
	}
}

/* STOP_DEV: give back every command still waiting for a request. */
void ublk_abort_fetched(struct ublk_device *ub)
{
	u16 i;

	for (i = 0; i < ub->info.nr_hw_queues; i++)
		ublk_abort_queue(ub->queues[i], false);
}

/*
 * The char device is released: what the server had it will not finish.
 * With USER_RECOVERY_REISSUE those requests wait for the next server, which
 * does them again.  Plain USER_RECOVERY fails them, as upstream does: the
 * server may have done part of them, and only REISSUE says doing them again
 * is safe.  (Requests the server never saw wait with either.)  Without
 * recovery, and with FAIL_IO, they fail.
 */
void ublk_server_gone(struct ublk_device *ub)
{
	bool reissue = ublk_reissue(ub);
	u16 i, t;

	/* 6.1: its tasks are no longer ours to watch (see watch.c) */
	ublk_unwatch(ub);

	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];

		for (t = 0; t < q->depth; t++) {
			struct request *rq;

			spin_lock(&q->lock);
			q->canceling = true;
			q->dead = true;
			rq = q->ios[t].req;
			q->ios[t].req = NULL;
			q->ios[t].cmd = NULL;
			/* none pending: each holds a reference to the released file */
			q->ios[t].dispatching = false;
			q->ios[t].timed_out = false;
			q->ios[t].need_data = false;
			spin_unlock(&q->lock);
			if (!rq)
				continue;
			if (reissue)
				ublk_end_nosrv(q, rq);
			else
				blk_mq_end_request(rq, BLK_STS_IOERR);
		}
		/* nobody copies any more: the server's pages are its own again */
		for (t = 0; t < q->depth; t++)
			ublk_pins_drop(&q->ios[t]);
	}
	WRITE_ONCE(ub->recovering, false);
	WRITE_ONCE(ub->srv_gone, true);
	wake_up_all(&ub->fetch_wq);
	/* it decides, under ub->mutex, whether there is a disk to stop or quiesce */
	ublk_schedule_stop(ub);
}

/* START_USER_RECOVERY, ub->mutex held: the next server fetches every tag anew. */
void ublk_reset_ios(struct ublk_device *ub)
{
	u16 i, t;

	atomic_set(&ub->nr_fetched, 0);
	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];

		/* none left: the old server's release dropped them */
		for (t = 0; t < q->depth; t++)
			ublk_pins_drop(&q->ios[t]);
		spin_lock(&q->lock);
		/* the old server's requests were settled when it released the device */
		for (t = 0; t < q->depth; t++)
			q->ios[t] = (struct ublk_io){};
		q->dead = false;
		spin_unlock(&q->lock);
	}
}

/*
 * END_USER_RECOVERY, ub->mutex held, every tag fetched: the queues take
 * requests again, first those that waited.  A queue whose new server is
 * already going away stays as it is; its release quiesces the device again.
 */
void ublk_resume_io(struct ublk_device *ub)
{
	u16 i;

	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];

		spin_lock(&q->lock);
		if (!q->dead)
			q->canceling = false;
		spin_unlock(&q->lock);
	}
	blk_mq_kick_requeue_list(ub->disk->queue);
}

static int ublk_fetch(struct ublk_queue *q, struct ublk_io *io, struct io_uring_cmd *cmd,
		      u64 addr, unsigned int issue_flags)
{
	struct ublk_device *ub = q->ub;
	int ret = 0;

	/* Marked before it is published, so a cancel always finds it. */
	ublk_cmd_mark_cancelable(cmd, issue_flags);
	spin_lock(&q->lock);
	/* a queue without a server takes fetches only from a recovering one */
	if (q->dead || READ_ONCE(ub->stopped) ||
	    (q->canceling && !READ_ONCE(ub->recovering)))
		ret = -ENODEV;
	else if (io->cmd || io->req || io->dispatching || io->timed_out)
		/* as upstream: the tag is fetched already, or its queue is set up */
		ret = -EBUSY;
	else {
		io->cmd = cmd;
		io->addr = addr;
	}
	spin_unlock(&q->lock);
	if (ret) {
		/* marked cancelable: it must be completed, not failed at issue */
		io_uring_cmd_done(cmd, ret, 0, issue_flags);
		return -EIOCBQUEUED;
	}
	if (atomic_inc_return(&ub->nr_fetched) >=
	    (int)ub->info.nr_hw_queues * ub->info.queue_depth)
		wake_up_all(&ub->fetch_wq);
	return -EIOCBQUEUED;
}

static int ublk_commit_and_fetch(struct ublk_queue *q, struct ublk_io *io,
				 struct io_uring_cmd *cmd, u64 addr, int res,
				 unsigned int issue_flags)
{
	struct ublk_device *ub = q->ub;
	struct request *rq;
	bool give_back;

	spin_lock(&q->lock);
	rq = io->req;
	/* as upstream: a command waits on the tag already */
	if (io->cmd) {
		spin_unlock(&q->lock);
		return -EBUSY;
	}
	/* not handed over yet (see the top of this file), timed out or not */
	if (io->dispatching) {
		spin_unlock(&q->lock);
		return -EINVAL;
	}
	if (!rq && io->timed_out && !io->cmd) {
		/* the answer to a request that timed out: only the command counts */
		io->timed_out = false;
	} else if (!rq || io->cmd || io->need_data || io->copying) {
		spin_unlock(&q->lock);
		return -EINVAL;
	} else if (io->copiers) {
		/* a pread/pwrite of the server's still copies: see the top of this file */
		spin_unlock(&q->lock);
		return -EBUSY;
	} else {
		io->copying = true;
	}
	spin_unlock(&q->lock);

	if (!ublk_user_copy(ub))
		io->addr = addr;
	/* Copy mode: read data comes from the server's buffer now, in its mm. */
	if (rq && res > 0 && req_op(rq) == REQ_OP_READ && !ublk_user_copy(ub)) {
		size_t want = min_t(unsigned int, res, blk_rq_bytes(rq));
		size_t got = ublk_copy_io(q, io, rq, addr, want, true);

		if (got < want)
			res = got ? (int)got : -EFAULT;
	}

	ublk_cmd_mark_cancelable(cmd, issue_flags);
	spin_lock(&q->lock);
	io->copying = false;
	io->req = NULL;
	give_back = !q->canceling;
	if (give_back)
		io->cmd = cmd;
	spin_unlock(&q->lock);

	if (rq)
		ublk_end_rq(rq, res);
	if (!give_back)
		io_uring_cmd_done(cmd, UBLK_IO_RES_ABORT, 0, issue_flags);
	return -EIOCBQUEUED;
}

/* NEED_GET_DATA: the server now names the buffer for a write's data. */
static int ublk_get_data(struct ublk_queue *q, struct ublk_io *io, u64 addr)
{
	struct request *rq;
	bool ok;

	spin_lock(&q->lock);
	rq = io->req;
	if (io->cmd) {
		spin_unlock(&q->lock);
		return -EBUSY;
	}
	if (!ublk_need_get_data(q->ub)) {
		spin_unlock(&q->lock);
		return -EINVAL;
	}
	/* not handed over yet: the server cannot know it needs data */
	if (io->dispatching) {
		spin_unlock(&q->lock);
		return -EINVAL;
	}
	if (!rq && io->timed_out && !io->cmd) {
		/* the write failed already; the server commits to get the tag back */
		spin_unlock(&q->lock);
		return -ETIMEDOUT;
	}
	if (!rq || io->cmd || !io->need_data || io->copying) {
		spin_unlock(&q->lock);
		return -EINVAL;
	}
	io->copying = true;
	spin_unlock(&q->lock);

	io->addr = addr;
	ok = ublk_copy_io(q, io, rq, addr, blk_rq_bytes(rq), false) == blk_rq_bytes(rq);

	spin_lock(&q->lock);
	io->copying = false;
	if (ok)
		io->need_data = false;
	spin_unlock(&q->lock);
	return ok ? UBLK_IO_RES_OK : -EFAULT;
}

int ublk_ch_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct ublk_device *ub = cmd->file->private_data;
	const struct ublksrv_io_cmd *sqe_cmd = ublk_cmd_payload(cmd);
	struct ublk_cmd_pdu *pdu = ublk_pdu(cmd);
	struct ublk_queue *q;
	struct ublk_io *io;
	u16 q_id, tag;
	int res, ret;
	u64 addr;

	if (ublk_issue_is_cancel(issue_flags)) {
		ublk_cancel_cmd(cmd, issue_flags);
		return 0;
	}

	q_id = READ_ONCE(sqe_cmd->q_id);
	tag = READ_ONCE(sqe_cmd->tag);
	res = READ_ONCE(sqe_cmd->result);
	addr = READ_ONCE(sqe_cmd->addr);

	if (q_id >= ub->info.nr_hw_queues)
		return -EINVAL;
	q = ub->queues[q_id];
	if (tag >= q->depth)
		return -EINVAL;
	io = &q->ios[tag];

	/* Copy mode needs a buffer; USER_COPY servers have none to give. */
	if (!ublk_user_copy(ub) && !addr &&
	    !(ublk_need_get_data(ub) && cmd->cmd_op != UBLK_IO_NEED_GET_DATA &&
	      cmd->cmd_op != UBLK_U_IO_NEED_GET_DATA))
		return -EINVAL;

	pdu->q = q;
	pdu->tag = tag;

	/* 6.1: one task per queue, watched for its exit (see compat.h) */
	ret = ublk_watch_server(q, cmd, cmd->cmd_op == UBLK_IO_FETCH_REQ ||
				cmd->cmd_op == UBLK_U_IO_FETCH_REQ);
	if (ret)
		return ret;

	switch (cmd->cmd_op) {
	case UBLK_IO_FETCH_REQ:
	case UBLK_U_IO_FETCH_REQ:
		return ublk_fetch(q, io, cmd, addr, issue_flags);
	case UBLK_IO_COMMIT_AND_FETCH_REQ:
	case UBLK_U_IO_COMMIT_AND_FETCH_REQ:
		return ublk_commit_and_fetch(q, io, cmd, addr, res, issue_flags);
	case UBLK_IO_NEED_GET_DATA:
	case UBLK_U_IO_NEED_GET_DATA:
		return ublk_get_data(q, io, addr);
	default:
		/* as upstream: an unknown command of ours (or legacy) is invalid, another's unsupported */
		return _IOC_TYPE(cmd->cmd_op) == 'u' || _IOC_TYPE(cmd->cmd_op) == 0 ? -EINVAL : -EOPNOTSUPP;
	}
}
