/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel interfaces that differ between the two kernel lines we build
 * for: 6.12 (Debian 12's backports, Debian 13's own), and 6.1 (Debian 12's
 * own kernel, built without ublk; upstream's 6.1 driver had no unprivileged
 * devices or user copy).  Everything else in the module is written once.
 * "6.1" is the 6.1 stable series as Debian ships it (6.1.176 and 6.1.192
 * checked), whose io_uring_cmd_done() and task work callbacks take
 * issue_flags; 6.1.0's did not.
 *
 * The difference that shapes the driver: 6.1's io_uring cannot cancel a
 * URING_CMD.  On 6.12 io_uring asks us to cancel the commands a server's
 * ring holds when the ring or its task goes away (IO_URING_F_CANCEL), and
 * ublk_cancel_cmd() gives them back.  On 6.1 the exiting task instead waits
 * in io_uring for those commands for as long as they are held, so the
 * driver watches each queue's server task (UBLK_WATCH_SERVER, see watch.c) and
 * gives the commands back once it is exiting.  Each queue then has one
 * server task: the one that sent its first FETCH_REQ; commands from any
 * other task fail with EINVAL, as upstream's driver requires anyway.  A
 * ring closed while its task lives on keeps its commands until the task
 * exits (upstream's 6.1 driver behaves the same).
 */
#ifndef UBLKD_KMOD_COMPAT_H
#define UBLKD_KMOD_COMPAT_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 13, 0)

#include <linux/io_uring/cmd.h>

#define UBLK_WATCH_SERVER 0
/* block_device_operations.open(struct gendisk *, blk_mode_t) (6.5+) */
#define UBLK_BD_OPEN_TAKES_DISK 1
/* blk_mq_ops.queue_rqs() with a struct rq_list (6.1's takes a bare list: not wired) */
#define UBLK_HAVE_QUEUE_RQS 1

static inline const void *ublk_cmd_payload(const struct io_uring_cmd *cmd)
{
	return io_uring_sqe_cmd(cmd->sqe);
}

static inline bool ublk_issue_is_cancel(unsigned int issue_flags)
{
	return issue_flags & IO_URING_F_CANCEL;
}

static inline void ublk_cmd_mark_cancelable(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	io_uring_cmd_mark_cancelable(cmd, issue_flags);
}

/* The task that submitted the command: its task work runs there. */
static inline struct task_struct *ublk_cmd_task(struct io_uring_cmd *cmd)
{
	return io_uring_cmd_get_task(cmd);
}

/* Task work that runs without the server's task: its mm is not ours to copy to. */
static inline bool ublk_tw_task_dead(unsigned int issue_flags)
{
	return (issue_flags & IO_URING_F_TASK_DEAD) || (current->flags & PF_EXITING);
}

static inline struct gendisk *ublk_alloc_disk(struct blk_mq_tag_set *set, struct queue_limits *lim,
					      unsigned int features, void *queuedata)
{
	lim->features |= features;
	return blk_mq_alloc_disk(set, lim, queuedata);
}

static inline void ublk_vma_forbid_write(struct vm_area_struct *vma)
{
	vm_flags_clear(vma, VM_MAYWRITE);
}

static inline int ublk_inode_permission(const struct path *path, struct inode *inode, int mask)
{
	return inode_permission(mnt_idmap(path->mnt), inode, mask);
}

#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0) && LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)

#include <linux/io_uring.h>
#include <linux/io_uring_types.h>

#define UBLK_WATCH_SERVER 1
/* block_device_operations.open(struct block_device *, fmode_t) */
#define UBLK_BD_OPEN_TAKES_DISK 0
#define UBLK_HAVE_QUEUE_RQS 0

/* 6.12's queue_limits.features, which 6.1 sets with queue calls instead */
#define BLK_FEAT_WRITE_CACHE	(1U << 0)
#define BLK_FEAT_FUA		(1U << 1)
#define BLK_FEAT_ROTATIONAL	(1U << 2)

#define io_uring_cmd_to_pdu(cmd, type)	((type *)(cmd)->pdu)

static inline const void *ublk_cmd_payload(const struct io_uring_cmd *cmd)
{
	return cmd->cmd;
}

static inline bool ublk_issue_is_cancel(unsigned int issue_flags)
{
	return false;
}

static inline void ublk_cmd_mark_cancelable(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
}

/*
 * The task that submitted the command: its task work runs there, and it is
 * the one io_uring makes wait for the command when it exits.
 */
static inline struct task_struct *ublk_cmd_task(struct io_uring_cmd *cmd)
{
	return cmd_to_io_kiocb(cmd)->task;
}

/*
 * 6.1 runs the task work of an exiting task that can no longer take any
 * from a kworker, without saying so.
 */
static inline bool ublk_tw_task_dead(unsigned int issue_flags)
{
	return current->flags & (PF_EXITING | PF_KTHREAD);
}

/* Only 6.9 and later take the limits with the disk. */
static inline struct gendisk *ublk_alloc_disk(struct blk_mq_tag_set *set, struct queue_limits *lim,
					      unsigned int features, void *queuedata)
{
	struct gendisk *disk = blk_mq_alloc_disk(set, queuedata);
	struct request_queue *q;

	if (IS_ERR(disk))
		return disk;
	q = disk->queue;
	blk_queue_logical_block_size(q, lim->logical_block_size);
	blk_queue_physical_block_size(q, lim->physical_block_size);
	blk_queue_io_min(q, lim->io_min);
	blk_queue_io_opt(q, lim->io_opt);
	blk_queue_max_hw_sectors(q, lim->max_hw_sectors);
	blk_queue_chunk_sectors(q, lim->chunk_sectors);
	blk_queue_virt_boundary(q, lim->virt_boundary_mask);
	if (lim->seg_boundary_mask)
		blk_queue_segment_boundary(q, lim->seg_boundary_mask);
	blk_queue_max_segments(q, lim->max_segments);
	blk_queue_max_segment_size(q, lim->max_segment_size);
	blk_queue_dma_alignment(q, lim->dma_alignment);
	q->limits.discard_alignment = lim->discard_alignment;
	q->limits.discard_granularity = lim->discard_granularity;
	blk_queue_max_discard_sectors(q, lim->max_hw_discard_sectors);
	blk_queue_max_write_zeroes_sectors(q, lim->max_write_zeroes_sectors);
	if (lim->max_discard_segments)
		blk_queue_max_discard_segments(q, lim->max_discard_segments);
	blk_queue_write_cache(q, features & BLK_FEAT_WRITE_CACHE, features & BLK_FEAT_FUA);
	if (!(features & BLK_FEAT_ROTATIONAL))
		blk_queue_flag_set(QUEUE_FLAG_NONROT, q);
	return disk;
}

static inline void ublk_vma_forbid_write(struct vm_area_struct *vma)
{
	vma->vm_flags &= ~VM_MAYWRITE;
}

static inline int ublk_inode_permission(const struct path *path, struct inode *inode, int mask)
{
	return inode_permission(mnt_user_ns(path->mnt), inode, mask);
}

#else
#error "ublk_drv builds for Linux 6.1 and 6.12 only; from 6.13 on, use the kernel's own ublk_drv, which has every command and flag this one has"
#endif

/* The ring the command came in on, whose lock and completions its task work runs under. */
static inline struct io_ring_ctx *ublk_cmd_ring(struct io_uring_cmd *cmd)
{
	return cmd_to_io_kiocb(cmd)->ctx;
}

#endif
