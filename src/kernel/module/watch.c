// SPDX-License-Identifier: GPL-2.0
/*
 * 6.1 only (UBLK_WATCH_SERVER): io_uring there cannot cancel the commands a
 * server holds, and its exiting task waits for them in io_uring for as long
 * as they are held (see compat.h).  So each queue records the task that sent
 * its first FETCH_REQ, and a work item looks at those tasks every
 * UBLK_WATCH_PERIOD while any is alive: once one is exiting, its queue gives
 * its commands back (ABORT) and takes no more requests, as the cancel does
 * on 6.12.  Its task work then runs in the exiting task, or in a kworker
 * once the task can take none (ublk_tw_task_dead()).
 */
#include <linux/sched/task.h>

#include "ublk.h"

#if UBLK_WATCH_SERVER

#define UBLK_WATCH_PERIOD	(HZ / 10)

static void ublk_watch_arm(struct ublk_device *ub)
{
	get_device(&ub->cdev_dev);
	if (!queue_delayed_work(ublk_wq, &ub->watch_work, UBLK_WATCH_PERIOD))
		ublk_put_device(ub);
}

static void ublk_watch_fn(struct work_struct *work)
{
	struct ublk_device *ub = container_of(to_delayed_work(work), struct ublk_device, watch_work);
	bool again = false;
	u16 i;

	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];
		bool watched, exiting;

		spin_lock(&q->lock);
		watched = q->task && !q->dead;
		exiting = watched && (READ_ONCE(q->task->flags) & PF_EXITING);
		spin_unlock(&q->lock);
		if (exiting)
			ublk_abort_queue(q, true);
		else
			again |= watched;
	}
	if (again)
		ublk_watch_arm(ub);
	ublk_put_device(ub);
}

void ublk_watch_init(struct ublk_device *ub)
{
	INIT_DELAYED_WORK(&ub->watch_work, ublk_watch_fn);
}

/*
 * An IO command for q: the first FETCH_REQ makes its task the queue's
 * server task, and every later command must come from that task.
 */
int ublk_watch_server(struct ublk_queue *q, struct io_uring_cmd *cmd, bool fetch)
{
	struct task_struct *task = ublk_cmd_task(cmd);
	bool arm = false;
	int ret = 0;

	/*
	 * Every IO command passes here: the queue's own task, once set, stays
	 * until the char device is released, so it needs no lock to recognise.
	 */
	if (READ_ONCE(q->task) == task)
		return 0;
	spin_lock(&q->lock);
	if (q->task) {
		if (q->task != task)
			ret = -EINVAL;
	} else if (fetch) {
		WRITE_ONCE(q->task, get_task_struct(task));
		arm = true;
	} else {
		/* no FETCH_REQ yet: nothing to commit, as without a request */
		ret = -EINVAL;
	}
	spin_unlock(&q->lock);
	if (arm)
		ublk_watch_arm(q->ub);
	return ret;
}

/*
 * The server released the char device: forget its tasks, and stop watching
 * before the module can go (a watch pending on its timer would outlive
 * destroy_workqueue()).  A running watch may still see a task and re-arm:
 * cancel_delayed_work_sync() waits for it and keeps it from re-arming.
 */
void ublk_unwatch(struct ublk_device *ub)
{
	u16 i;

	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];
		struct task_struct *task;

		spin_lock(&q->lock);
		task = q->task;
		WRITE_ONCE(q->task, NULL);
		spin_unlock(&q->lock);
		if (task)
			put_task_struct(task);
	}
	if (cancel_delayed_work_sync(&ub->watch_work))
		ublk_put_device(ub);
}

#endif
