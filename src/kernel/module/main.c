// SPDX-License-Identifier: GPL-2.0
/*
 * ublkd's ublk driver: module setup, /dev/ublk-control and the device table.
 *
 * A drop-in replacement for the in-tree ublk_drv, written from the UAPI in
 * ../uapi/ublk_cmd.h and the block layer's and io_uring's kernel APIs.
 * Exported kernel symbols it uses are listed in README.md.
 */
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

#include "ublk.h"

/*
 * Device ids; an id stays taken until its device is freed, so DEL_DEV can wait
 * for that.  Its entry is NULL while ADD_DEV builds the device.
 */
static DEFINE_IDR(ublk_index_idr);
static DEFINE_MUTEX(ublk_index_mutex);
static DECLARE_WAIT_QUEUE_HEAD(ublk_idr_wq);
/* unprivileged devices not yet deleted, under ublk_index_mutex */
static unsigned int ublk_nr_unpriv;
/* the next device's index_seq, under ublk_index_mutex */
static u64 ublk_next_seq;

/*
 * Every device pins kernel memory (tag set, descriptors) that its size
 * decides: users may not add them without bound.  Root's are not counted.
 * The default is upstream's (64), and must stay above ublkd's per-user
 * default (16, src/daemon/main.c): with the two equal, one user at their
 * ublkd limit would leave no device for any other user.
 */
static unsigned int unprivileged_ublks_max = 64;
module_param(unprivileged_ublks_max, uint, 0644);
MODULE_PARM_DESC(unprivileged_ublks_max,
		 "most unprivileged devices (UBLK_F_UNPRIVILEGED_DEV) at a time, counted from ADD_DEV to DEL_DEV; ADD_DEV beyond fails with EACCES (default 64)");

static unsigned int unprivileged_io_timeout = 30;
module_param(unprivileged_io_timeout, uint, 0644);
MODULE_PARM_DESC(unprivileged_io_timeout,
		 "seconds an unprivileged device's server may hold a request before it fails with a timeout; read at ADD_DEV (default 30, 1 to 86400)");

dev_t ublk_chr_devt;
/* Our deferred work, drained before the module's code goes away. */
struct workqueue_struct *ublk_wq;

struct class ublk_chr_class = {
	/* udev rules and ublkd look for this subsystem name */
	.name = "ublk-char",
};

struct ublk_device *ublk_get_device(u32 id)
{
	struct ublk_device *ub;

	mutex_lock(&ublk_index_mutex);
	ub = idr_find(&ublk_index_idr, id);
	if (ub && !ub->deleted)
		get_device(&ub->cdev_dev);
	else
		ub = NULL;
	mutex_unlock(&ublk_index_mutex);
	return ub;
}

void ublk_put_device(struct ublk_device *ub)
{
	put_device(&ub->cdev_dev);
}

static void ublk_free_queues(struct ublk_device *ub)
{
	u16 i, t;

	if (!ub->queues)
		return;
	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q = ub->queues[i];

		if (!q)
			continue;
		/* none left after the server's release; a device never started has none */
		for (t = 0; t < q->depth; t++)
			ublk_pins_drop(&q->ios[t]);
		if (q->descs)
			free_pages((unsigned long)q->descs, q->descs_order);
		kfree(q);
	}
	kfree(ub->queues);
}

/* Last reference gone: no file, disk or work refers to the device any more. */
static void ublk_cdev_rel(struct device *dev)
{
	struct ublk_device *ub = container_of(dev, struct ublk_device, cdev_dev);

	if (ub->tag_set_ready)
		blk_mq_free_tag_set(&ub->tag_set);
	ublk_free_queues(ub);
	mutex_destroy(&ub->mutex);

	mutex_lock(&ublk_index_mutex);
	idr_remove(&ublk_index_idr, ub->info.dev_id);
	/* a device that was never deleted: its ADD_DEV failed half-way */
	if (ublk_unprivileged(ub) && !ub->deleted)
		ublk_nr_unpriv--;
	mutex_unlock(&ublk_index_mutex);
	wake_up_all(&ublk_idr_wq);
	kfree(ub);
}

static int ublk_alloc_queues(struct ublk_device *ub)
{
	u16 depth = ub->info.queue_depth;
	u16 i;

	ub->queues = kcalloc(ub->info.nr_hw_queues, sizeof(*ub->queues), GFP_KERNEL);
	if (!ub->queues)
		return -ENOMEM;
	for (i = 0; i < ub->info.nr_hw_queues; i++) {
		struct ublk_queue *q;

		q = kzalloc(struct_size(q, ios, depth), GFP_KERNEL);
		if (!q)
			return -ENOMEM;
		ub->queues[i] = q;
		q->ub = ub;
		q->q_id = i;
		q->depth = depth;
		spin_lock_init(&q->lock);
		init_llist_head(&q->dispatch_list);
		q->descs_order = get_order(ublk_descs_bytes(depth));
		q->descs = (void *)__get_free_pages(GFP_KERNEL | __GFP_ZERO, q->descs_order);
		if (!q->descs)
			return -ENOMEM;
	}
	return 0;
}

/* The device becomes visible to lookups by id, complete. */
static void ublk_publish_device(struct ublk_device *ub)
{
	mutex_lock(&ublk_index_mutex);
	idr_replace(&ublk_index_idr, ub, ub->info.dev_id);
	mutex_unlock(&ublk_index_mutex);
}

/*
 * ADD_DEV after validation: takes an id (info->dev_id, or any when it is
 * (u32)-1), creates /dev/ublkcN and the tag set.  On success info is
 * updated with what was granted.  Unprivileged devices count against
 * unprivileged_ublks_max until DEL_DEV (EACCES beyond, as the in-tree
 * driver answers for its own limit).
 */
int ublk_create_device(struct ublksrv_ctrl_dev_info *info, u32 want_id)
{
	bool unpriv = info->flags & UBLK_F_UNPRIVILEGED_DEV;
	struct ublk_device *ub;
	int id, ret;

	ub = kzalloc(sizeof(*ub), GFP_KERNEL);
	if (!ub)
		return -ENOMEM;
	mutex_init(&ub->mutex);
	init_waitqueue_head(&ub->fetch_wq);
	INIT_WORK(&ub->stop_work, ublk_stop_work_fn);
	ublk_watch_init(ub);

	/*
	 * The id is taken with no device behind it: a lookup (GET_DEV_INFO
	 * from udev's handler of an old uevent for the same id, say) must
	 * not find the device, and take a reference, before its struct
	 * device is initialized.  ublk_publish_device() puts it there.
	 */
	mutex_lock(&ublk_index_mutex);
	if (unpriv && ublk_nr_unpriv >= READ_ONCE(unprivileged_ublks_max))
		id = -EACCES;
	else if (want_id == U32_MAX)
		id = idr_alloc(&ublk_index_idr, NULL, 0, UBLK_MAX_DEVS, GFP_KERNEL);
	else if (want_id >= UBLK_MAX_DEVS)
		id = -EINVAL;
	else {
		id = idr_alloc(&ublk_index_idr, NULL, want_id, want_id + 1, GFP_KERNEL);
		if (id == -ENOSPC)
			id = -EEXIST;
	}
	/* counted with the id taken, uncounted at DEL_DEV (or a failed ADD_DEV) */
	if (id >= 0 && unpriv)
		ublk_nr_unpriv++;
	ub->index_seq = ublk_next_seq++;
	mutex_unlock(&ublk_index_mutex);
	if (id < 0) {
		mutex_destroy(&ub->mutex);
		kfree(ub);
		return id;
	}
	info->dev_id = id;
	ub->info = *info;

	/* From here on the device's release function cleans up. */
	device_initialize(&ub->cdev_dev);
	ub->cdev_dev.class = &ublk_chr_class;
	ub->cdev_dev.devt = MKDEV(MAJOR(ublk_chr_devt), id);
	ub->cdev_dev.release = ublk_cdev_rel;
	ret = dev_set_name(&ub->cdev_dev, "ublkc%d", id);
	if (ret)
		goto fail;

	ret = ublk_alloc_queues(ub);
	if (ret)
		goto fail;

	ub->tag_set.ops = &ublk_mq_ops;
	ub->tag_set.nr_hw_queues = info->nr_hw_queues;
	ub->tag_set.queue_depth = info->queue_depth;
	ub->tag_set.numa_node = NUMA_NO_NODE;
	/*
	 * No IO scheduler unless the admin picks one: the server queues and orders its own IO,
	 * and mq-deadline in front of a single-queue device cost 1.9k instructions of a null
	 * read's 15.5k at depth 32 (bench/RESULTS.md, 2026-12-07). loop and null_blk choose
	 * "none" the same way.
	 */
	ub->tag_set.flags = BLK_MQ_F_SHOULD_MERGE | BLK_MQ_F_NO_SCHED_BY_DEFAULT;
	ub->tag_set.driver_data = ub;
	/* root's devices keep the block layer's default; see ublk_timeout() */
	if (unpriv)
		ub->tag_set.timeout = clamp(READ_ONCE(unprivileged_io_timeout), 1U, 86400U) * HZ;
	ret = blk_mq_alloc_tag_set(&ub->tag_set);
	if (ret)
		goto fail;
	ub->tag_set_ready = true;

	cdev_init(&ub->cdev, &ublk_ch_fops);
	ub->cdev.owner = THIS_MODULE;
	/* udev's handler of the uevent looks the id up: it must find the device */
	dev_set_uevent_suppress(&ub->cdev_dev, 1);
	ret = cdev_device_add(&ub->cdev, &ub->cdev_dev);
	if (ret)
		goto fail;
	ublk_publish_device(ub);
	dev_set_uevent_suppress(&ub->cdev_dev, 0);
	kobject_uevent(&ub->cdev_dev.kobj, KOBJ_ADD);
	return 0;

fail:
	put_device(&ub->cdev_dev);
	return ret;
}

/*
 * The device that had id and index_seq is freed.  Not "the id is free": by
 * the time a waiter looks, another ADD_DEV may have taken the id again, and
 * DEL_DEV must not wait for that device too.
 */
static bool ublk_dev_freed(u32 id, u64 seq)
{
	struct ublk_device *ub;
	bool freed;

	mutex_lock(&ublk_index_mutex);
	ub = idr_find(&ublk_index_idr, id);
	freed = !ub || ub->index_seq != seq;
	mutex_unlock(&ublk_index_mutex);
	return freed;
}

/*
 * DEL_DEV: the disk goes first (ublk_stop_dev(): waiting for requests a
 * stuck server holds is interruptible; the device stays visible then, so
 * DEL_DEV can be sent again), then the device disappears from lookups, and
 * the call waits until its last user (normally the server's open char
 * device) is gone so that the id can be reused as soon as it returns.  A
 * user's server may keep its char device open for as long as it likes, and
 * must not hold whoever deletes its device (ublkd, root) with it: for a
 * user's device that wait is at most its request timeout, after which
 * DEL_DEV succeeds with the id still taken until the server closes.
 */
int ublk_delete_device(struct ublk_device *ub, bool wait)
{
	u32 id = ub->info.dev_id;
	u64 seq = ub->index_seq;
	long tmo = ublk_unprivileged(ub) ? ub->tag_set.timeout : MAX_SCHEDULE_TIMEOUT;
	bool first;
	int ret;

	ret = ublk_stop_dev(ub, wait);
	if (ret) {
		put_device(&ub->cdev_dev);
		return ret;
	}
	mutex_lock(&ublk_index_mutex);
	first = !ub->deleted;
	ub->deleted = true;
	/*
	 * Uncounted here, as upstream does at DEL_DEV, not once the device is
	 * freed: a user's server that keeps /dev/ublkcN open keeps the id,
	 * but must not keep a place under the cap that only its owner's
	 * later devices would miss.
	 */
	if (first && ublk_unprivileged(ub))
		ublk_nr_unpriv--;
	mutex_unlock(&ublk_index_mutex);
	if (first) {
		/* a stop work that never ran still holds its reference */
		if (cancel_work_sync(&ub->stop_work))
			put_device(&ub->cdev_dev);
		cdev_device_del(&ub->cdev, &ub->cdev_dev);
		/* the reference taken at creation */
		put_device(&ub->cdev_dev);
	}
	/* the caller's lookup reference */
	put_device(&ub->cdev_dev);
	if (!wait)
		return 0;
	if (wait_event_interruptible_timeout(ublk_idr_wq, ublk_dev_freed(id, seq), tmo) < 0)
		return -EINTR;
	return 0;
}

void ublk_remove_all(void)
{
	struct ublk_device *ub;
	int id;

	for (;;) {
		ub = NULL;
		mutex_lock(&ublk_index_mutex);
		idr_for_each_entry(&ublk_index_idr, ub, id) {
			if (!ub->deleted) {
				get_device(&ub->cdev_dev);
				break;
			}
		}
		mutex_unlock(&ublk_index_mutex);
		if (!ub)
			break;
		ublk_delete_device(ub, false);
	}
}

static const struct file_operations ublk_ctl_fops = {
	.owner		= THIS_MODULE,
	.open		= nonseekable_open,
	.uring_cmd	= ublk_ctrl_uring_cmd,
	.llseek		= noop_llseek,
};

static struct miscdevice ublk_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "ublk-control",
	.fops	= &ublk_ctl_fops,
};

static int __init ublk_init(void)
{
	int ret;

	ublk_wq = alloc_workqueue("ublk_drv", 0, 0);
	if (!ublk_wq)
		return -ENOMEM;
	ret = alloc_chrdev_region(&ublk_chr_devt, 0, UBLK_MINORS, "ublk-char");
	if (ret)
		goto free_wq;
	ret = class_register(&ublk_chr_class);
	if (ret)
		goto free_region;
	ret = misc_register(&ublk_misc);
	if (ret)
		goto unreg_class;
	return 0;

unreg_class:
	class_unregister(&ublk_chr_class);
free_region:
	unregister_chrdev_region(ublk_chr_devt, UBLK_MINORS);
free_wq:
	destroy_workqueue(ublk_wq);
	return ret;
}

static void __exit ublk_exit(void)
{
	misc_deregister(&ublk_misc);
	ublk_remove_all();
	/* a char device released just before may have queued work */
	destroy_workqueue(ublk_wq);
	class_unregister(&ublk_chr_class);
	unregister_chrdev_region(ublk_chr_devt, UBLK_MINORS);
	idr_destroy(&ublk_index_idr);
}

module_init(ublk_init);
module_exit(ublk_exit);

MODULE_DESCRIPTION("ublkd's userspace block device driver (ublk ABI)");
MODULE_LICENSE("GPL");
MODULE_AUTHOR("The ublkd authors");
MODULE_VERSION(UBLK_DRV_VERSION);
