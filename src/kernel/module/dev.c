// SPDX-License-Identifier: GPL-2.0
/*
 * Per-device nodes: the server's /dev/ublkcN and the block device /dev/ublkbN.
 */
#include <linux/blkdev.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>

#include "ublk.h"

static int ublk_ch_open(struct inode *inode, struct file *filp)
{
	struct ublk_device *ub = container_of(inode->i_cdev, struct ublk_device, cdev);

	/* One server per device: its queues' state is not shareable. */
	if (atomic_cmpxchg(&ub->opened, 0, 1))
		return -EBUSY;
	filp->private_data = ub;
	/*
	 * USER_COPY's pread/pwrite start no IO of their own (they copy
	 * between the request's pages and the caller's memory): io_uring may
	 * issue them inline rather than from a worker thread.
	 */
	filp->f_mode |= FMODE_NOWAIT;
	return 0;
}

static int ublk_ch_release(struct inode *inode, struct file *filp)
{
	struct ublk_device *ub = filp->private_data;

	/*
	 * Every command of the server's rings held a reference to this file,
	 * so none is left: what the server still owes will never come.
	 */
	ublk_server_gone(ub);
	atomic_set(&ub->opened, 0);
	return 0;
}

/* The descriptor array of one queue, read-only, at the UAPI's offset. */
static int ublk_ch_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct ublk_device *ub = filp->private_data;
	size_t stride = PAGE_ALIGN(UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc));
	size_t size = vma->vm_end - vma->vm_start;
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	struct ublk_queue *q;
	u64 q_id;

	if (vma->vm_flags & VM_WRITE)
		return -EPERM;
	/*
	 * As upstream: any offset inside a queue's stride maps that queue's
	 * array from its start (ublk-probe's "mmap q0 second page").
	 */
	if (off < UBLKSRV_CMD_BUF_OFFSET)
		return -EINVAL;
	q_id = (off - UBLKSRV_CMD_BUF_OFFSET) / stride;
	if (q_id >= ub->info.nr_hw_queues)
		return -EINVAL;
	q = ub->queues[q_id];
	if (size != ublk_descs_bytes(q->depth))
		return -EINVAL;
	/* and no mprotect() to writable later */
	ublk_vma_forbid_write(vma);
	return remap_pfn_range(vma, vma->vm_start, virt_to_phys(q->descs) >> PAGE_SHIFT,
			       size, vma->vm_page_prot);
}

const struct file_operations ublk_ch_fops = {
	.owner		= THIS_MODULE,
	.open		= ublk_ch_open,
	.release	= ublk_ch_release,
	.mmap		= ublk_ch_mmap,
	.uring_cmd	= ublk_ch_uring_cmd,
	.read_iter	= ublk_ch_read_iter,
	.write_iter	= ublk_ch_write_iter,
	.splice_read	= ublk_ch_splice_read,
	.splice_write	= ublk_ch_splice_write,
};

/* The disk held a device reference from START_DEV until it is freed. */
static void ublk_free_disk(struct gendisk *disk)
{
	struct ublk_device *ub = disk->private_data;

	ublk_put_device(ub);
}

/*
 * A user's disk opens for its owner only (and CAP_SYS_ADMIN), whatever
 * the node's mode says: the owner could otherwise chmod the node and leave
 * a disk whose every answer they choose for other users to open.  Upstream
 * checks the same (uid and gid both), with the same EPERM.
 */
static int ublk_bd_may_open(const struct ublk_device *ub)
{
	if (capable(CAP_SYS_ADMIN) || !ublk_unprivileged(ub))
		return 0;
	if (from_kuid(&init_user_ns, current_uid()) != ub->info.owner_uid ||
	    from_kgid(&init_user_ns, current_gid()) != ub->info.owner_gid)
		return -EPERM;
	return 0;
}

#if UBLK_BD_OPEN_TAKES_DISK
static int ublk_bd_open(struct gendisk *disk, blk_mode_t mode)
{
	return ublk_bd_may_open(disk->private_data);
}
#else
static int ublk_bd_open(struct block_device *bdev, fmode_t mode)
{
	return ublk_bd_may_open(bdev->bd_disk->private_data);
}
#endif

static const struct block_device_operations ublk_bd_fops = {
	.owner		= THIS_MODULE,
	.open		= ublk_bd_open,
	.free_disk	= ublk_free_disk,
};

/* features: BLK_FEAT_* bits, which only 6.12's queue_limits carries */
static void ublk_params_to_limits(const struct ublk_device *ub, struct queue_limits *lim,
				  unsigned int *features)
{
	const struct ublk_params *p = &ub->params;
	const struct ublk_param_basic *b = &p->basic;

	lim->logical_block_size = 1U << b->logical_bs_shift;
	lim->physical_block_size = 1U << b->physical_bs_shift;
	lim->io_min = 1U << b->io_min_shift;
	lim->io_opt = 1U << b->io_opt_shift;
	lim->max_hw_sectors = b->max_sectors ? b->max_sectors :
			      ub->info.max_io_buf_bytes >> SECTOR_SHIFT;
	lim->chunk_sectors = b->chunk_sectors;
	lim->virt_boundary_mask = b->virt_boundary_mask;
	/*
	 * The CPU copies segment by segment, or the server does: no limit on
	 * their number or size, and O_DIRECT buffers need no more alignment
	 * than 4 bytes (the in-tree driver's defaults too, so a server sees
	 * the same requests with either).  The server may ask for less with
	 * UBLK_PARAM_TYPE_SEGMENT / _DMA_ALIGN.
	 */
	lim->max_segments = USHRT_MAX;
	lim->max_segment_size = UINT_MAX;
	lim->dma_alignment = 3;
	*features = 0;
	if (b->attrs & UBLK_ATTR_VOLATILE_CACHE) {
		*features |= BLK_FEAT_WRITE_CACHE;
		if (b->attrs & UBLK_ATTR_FUA)
			*features |= BLK_FEAT_FUA;
	}
	if (b->attrs & UBLK_ATTR_ROTATIONAL)
		*features |= BLK_FEAT_ROTATIONAL;

	if (p->types & UBLK_PARAM_TYPE_DISCARD) {
		const struct ublk_param_discard *d = &p->discard;

		lim->discard_alignment = d->discard_alignment;
		lim->discard_granularity = d->discard_granularity;
		lim->max_hw_discard_sectors = d->max_discard_sectors;
		lim->max_write_zeroes_sectors = d->max_write_zeroes_sectors;
		lim->max_discard_segments = d->max_discard_segments;
	}
	if (p->types & UBLK_PARAM_TYPE_DMA_ALIGN)
		lim->dma_alignment = p->dma.alignment;
	if (p->types & UBLK_PARAM_TYPE_SEGMENT) {
		lim->seg_boundary_mask = p->seg.seg_boundary_mask;
		lim->max_segment_size = p->seg.max_segment_size;
		lim->max_segments = p->seg.max_segments;
	}
}

/* START_DEV, with ub->mutex held and every tag fetched. */
int ublk_start_disk(struct ublk_device *ub)
{
	struct queue_limits lim = {};
	unsigned int features;
	struct gendisk *disk;
	int ret;

	ublk_params_to_limits(ub, &lim, &features);
	disk = ublk_alloc_disk(&ub->tag_set, &lim, features, ub);
	if (IS_ERR(disk))
		return PTR_ERR(disk);
	disk->fops = &ublk_bd_fops;
	disk->private_data = ub;
	snprintf(disk->disk_name, sizeof(disk->disk_name), "ublkb%u", ub->info.dev_id);
	set_capacity(disk, ub->params.basic.dev_sectors);
	if (ub->params.basic.attrs & UBLK_ATTR_READ_ONLY)
		set_disk_ro(disk, true);
	/*
	 * A user's device: its partition table is the user's data, which the
	 * kernel's partition parsers are not hardened against (the in-tree
	 * driver does the same).
	 */
	if (ublk_unprivileged(ub))
		set_bit(GD_SUPPRESS_PART_SCAN, &disk->state);

	/* Before add_disk: its partition scan needs us live. */
	ub->info.state = UBLK_S_DEV_LIVE;
	get_device(&ub->cdev_dev);
	ret = add_disk(disk);
	if (ret) {
		/* free_disk is only called for disks that were added */
		ub->info.state = UBLK_S_DEV_DEAD;
		put_disk(disk);
		ublk_put_device(ub);
		return ret;
	}
	ub->disk = disk;
	/*
	 * From now on IO that finds no server waits for the next one.  Not
	 * before: the partition scan above must not wait for a recovery that
	 * needs ub->mutex, which we hold.
	 */
	if (ublk_can_recover(ub) && !ublk_fail_io(ub))
		WRITE_ONCE(ub->nosrv_wait, true);
	/* the server may have left while the partition scan ran */
	if (READ_ONCE(ub->srv_gone))
		ublk_schedule_stop(ub);
	return 0;
}

/* Stop the device from process context without waiting for it here. */
void ublk_schedule_stop(struct ublk_device *ub)
{
	get_device(&ub->cdev_dev);
	if (!queue_work(ublk_wq, &ub->stop_work))
		ublk_put_device(ub);
}

/*
 * Begins a stop, ub->mutex held: the device will not start again, IO that
 * waits for a server fails, and the disk, if any, is removed by stop_work.
 */
static void ublk_begin_stop(struct ublk_device *ub)
{
	if (ub->stopped)
		return;
	WRITE_ONCE(ub->stopped, true);
	WRITE_ONCE(ub->recovering, false);
	if (ub->disk) {
		/*
		 * Requests waiting for a server that will not come now fail
		 * (del_gendisk waits for every request): kicked after the
		 * change, they find it (see ublk_requeue_nosrv()).
		 */
		WRITE_ONCE(ub->nosrv_wait, false);
		smp_mb();
		blk_mq_kick_requeue_list(ub->disk->queue);
		ublk_schedule_stop(ub);
	} else {
		ub->info.state = UBLK_S_DEV_DEAD;
		ublk_abort_fetched(ub);
	}
	/* START_DEV and END_USER_RECOVERY give up */
	wake_up_all(&ub->fetch_wq);
}

static bool ublk_stop_done(struct ublk_device *ub)
{
	return READ_ONCE(ub->stopped) && !READ_ONCE(ub->disk);
}

/*
 * STOP_DEV (also from DEL_DEV and when the server left).  Removing the disk
 * waits for its requests: the server completes them, or they failed already
 * if it is gone, or (a user's device) they time out.  A stuck root server
 * may hold them for as long as it lives, and del_gendisk() cannot be
 * interrupted, so stop_work does it and we wait, interruptibly with intr:
 * an interrupted stop goes on without us (-EINTR), and ends once the server
 * answers or exits.  Then the commands still waiting for requests are given
 * back, so the server's queues end.  A stopped device does not start again:
 * the server deletes and re-adds it.
 */
int ublk_stop_dev(struct ublk_device *ub, bool intr)
{
	if (!intr)
		mutex_lock(&ub->mutex);
	else if (mutex_lock_interruptible(&ub->mutex))
		return -EINTR;
	ublk_begin_stop(ub);
	mutex_unlock(&ub->mutex);
	if (!intr)
		wait_event(ub->fetch_wq, ublk_stop_done(ub));
	else if (wait_event_interruptible(ub->fetch_wq, ublk_stop_done(ub)))
		return -EINTR;
	return 0;
}

/* stop_work, for a stop begun: no lock held, as del_gendisk() may wait for long. */
static void ublk_remove_disk(struct ublk_device *ub, struct gendisk *disk)
{
	del_gendisk(disk);
	mutex_lock(&ub->mutex);
	WRITE_ONCE(ub->disk, NULL);
	ub->info.state = UBLK_S_DEV_DEAD;
	mutex_unlock(&ub->mutex);
	put_disk(disk);
	ublk_abort_fetched(ub);
	wake_up_all(&ub->fetch_wq);
}

/*
 * The server left (or START_DEV found it gone): a started disk is stopped,
 * or with USER_RECOVERY stays, quiesced (its IO waits) or failing IO, until
 * START/END_USER_RECOVERY or STOP_DEV.  START_USER_RECOVERY clears srv_gone,
 * so a run after it changes nothing.  A stop begun removes the disk here.
 * A work item never runs twice at once, so only one run removes it.
 */
void ublk_stop_work_fn(struct work_struct *work)
{
	struct ublk_device *ub = container_of(work, struct ublk_device, stop_work);
	struct gendisk *disk = NULL;

	mutex_lock(&ub->mutex);
	if (ub->disk && !ub->stopped && READ_ONCE(ub->srv_gone)) {
		if (!ublk_can_recover(ub))
			ublk_begin_stop(ub);
		else if (ublk_fail_io(ub))
			ub->info.state = UBLK_S_DEV_FAIL_IO;
		else
			ub->info.state = UBLK_S_DEV_QUIESCED;
	}
	if (ub->stopped)
		disk = ub->disk;
	mutex_unlock(&ub->mutex);
	if (disk)
		ublk_remove_disk(ub, disk);
	ublk_put_device(ub);
}
