/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ublkd's ublk driver: shared declarations.
 *
 * The user/kernel interface is ../uapi/ublk_cmd.h, the very header the
 * daemon is built with, so the two cannot drift apart.
 */
#ifndef UBLKD_KMOD_UBLK_H
#define UBLKD_KMOD_UBLK_H

#include <linux/blk-mq.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/errno.h>
#include <linux/highmem.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "compat.h"
#include "ublk_cmd.h"

#define UBLK_MINORS		(1U << MINORBITS)
/* Devices ids are char-device minors, and must also fit a dev_id. */
#define UBLK_MAX_DEVS		(1U << 20)

#define UBLK_F_RECOVERY_FLAGS	(UBLK_F_USER_RECOVERY | \
				 UBLK_F_USER_RECOVERY_REISSUE | \
				 UBLK_F_USER_RECOVERY_FAIL_IO)

/* Flags we implement; ADD_DEV clears any other (ctrl.c), as upstream clears those it lacks. */
#define UBLK_F_IMPLEMENTED	(UBLK_F_URING_CMD_COMP_IN_TASK | \
				 UBLK_F_CMD_IOCTL_ENCODE | \
				 UBLK_F_NEED_GET_DATA | \
				 UBLK_F_USER_COPY | \
				 UBLK_F_RECOVERY_FLAGS)

/* One tag of one queue. */
struct ublk_io {
	/* FETCH/COMMIT command we hold, to hand the next request over with */
	struct io_uring_cmd *cmd;
	/* the request the server is working on, if any */
	struct request *req;
	/* server buffer of the current request (not with USER_COPY) */
	u64 addr;
	/*
	 * req was given to this tag, but the server has not been told yet: its
	 * dispatch (ublk_dispatch()) waits to run in the server's task and
	 * still owns the command.  Until then the server may not commit,
	 * get data for or copy the tag.
	 */
	bool dispatching;
	/* while dispatching: the command that will tell, on q->dispatch_list */
	struct io_uring_cmd *dispatch_cmd;
	struct llist_node dispatch_node;
	/* req was handed over with UBLK_IO_RES_NEED_GET_DATA, data not yet copied */
	bool need_data;
	/*
	 * req's data is being copied outside q->lock by its dispatch,
	 * NEED_GET_DATA or COMMIT_AND_FETCH, which then end or keep it: its
	 * timeout must wait, and USER_COPY's pread/pwrite may not start.
	 */
	bool copying;
	/*
	 * USER_COPY preads/pwrites copying req's data now, outside q->lock:
	 * until the last is done nobody ends req (see the top of io.c).
	 */
	unsigned int copiers;
	/*
	 * req timed out and was failed while the server had it: the tag's
	 * next COMMIT (or its pending dispatch) only gives the command back.
	 */
	bool timed_out;
	/* copy mode's buffer kept pinned (pins.c), and the buffer page last copied through */
	struct ublk_pins *pins;
	unsigned long pins_start;
};

struct ublk_queue {
	struct ublk_device *ub;
	u16 q_id;
	u16 depth;
	/* protects ios[], nr_fetched, canceling, dead */
	spinlock_t lock;
	/*
	 * No server takes requests: set when the server's ring goes away,
	 * cleared by END_USER_RECOVERY.  New requests wait for a new server
	 * (ub->nosrv_wait) or fail.
	 */
	bool canceling;
	/*
	 * This server's commands were cancelled or its char device released:
	 * it may not fetch again.  START_USER_RECOVERY clears it for the next.
	 */
	bool dead;
	unsigned int nr_fetched;
#if UBLK_WATCH_SERVER
	/* the server task that fetched this queue, watched for its exit (watch.c) */
	struct task_struct *task;
#endif
	/* tags handed over to the server whose dispatch has not run yet, newest first */
	struct llist_head dispatch_list;
	/* descriptor array, mapped read-only by the server */
	struct ublksrv_io_desc *descs;
	unsigned int descs_order;
	struct ublk_io ios[];
};

struct ublk_device {
	struct device cdev_dev;		/* /dev/ublkcN; its refcount is the device's */
	struct cdev cdev;
	/* serialises control commands and start/stop on this device */
	struct mutex mutex;
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params params;
	struct blk_mq_tag_set tag_set;
	bool tag_set_ready;
	struct gendisk *disk;		/* non-NULL while started */
	bool deleted;			/* DEL_DEV done: invisible to lookups */
	u64 index_seq;			/* tells this device from a later one with its id */
	/*
	 * A stop began (STOP_DEV, DEL_DEV, the server left): it will not start
	 * again.  stop_work removes the disk; the stop is done once disk is NULL.
	 */
	bool stopped;
	atomic_t opened;		/* char device is open (exclusive) */
	/*
	 * START_DEV waits here for every tag to be fetched (or the server to
	 * leave), STOP_DEV and DEL_DEV for the disk to be removed.
	 */
	wait_queue_head_t fetch_wq;
	atomic_t nr_fetched;
	bool srv_gone;
	/*
	 * Requests that find no server wait for the next one (requeued, not
	 * failed): set once a USER_RECOVERY device without FAIL_IO is started,
	 * cleared when it stops.
	 */
	bool nosrv_wait;
	/* START_USER_RECOVERY done, END_USER_RECOVERY not yet: a new server fetches */
	bool recovering;
	/*
	 * The server left: stop the disk, or (USER_RECOVERY) mark it quiesced,
	 * without blocking its release().  Also removes the disk of any stop:
	 * del_gendisk() waits, uninterruptibly, for requests a stuck server
	 * may hold forever, and the caller must stay killable (see dev.c).
	 */
	struct work_struct stop_work;
#if UBLK_WATCH_SERVER
	struct delayed_work watch_work;
#endif
	struct ublk_queue **queues;
};

static inline bool ublk_user_copy(const struct ublk_device *ub)
{
	return ub->info.flags & UBLK_F_USER_COPY;
}

static inline bool ublk_unprivileged(const struct ublk_device *ub)
{
	return ub->info.flags & UBLK_F_UNPRIVILEGED_DEV;
}

static inline bool ublk_need_get_data(const struct ublk_device *ub)
{
	return ub->info.flags & UBLK_F_NEED_GET_DATA;
}

static inline bool ublk_can_recover(const struct ublk_device *ub)
{
	return ub->info.flags & UBLK_F_USER_RECOVERY;
}

/* kinds of USER_RECOVERY: alone (ADD_DEV takes REISSUE alone, as 6.12) they mean nothing */
static inline bool ublk_reissue(const struct ublk_device *ub)
{
	return ublk_can_recover(ub) && (ub->info.flags & UBLK_F_USER_RECOVERY_REISSUE);
}

static inline bool ublk_fail_io(const struct ublk_device *ub)
{
	return ublk_can_recover(ub) && (ub->info.flags & UBLK_F_USER_RECOVERY_FAIL_IO);
}

static inline size_t ublk_descs_bytes(u16 depth)
{
	return PAGE_ALIGN(depth * sizeof(struct ublksrv_io_desc));
}

/* n bytes between a request's segment, from byte seg of it, and a user page at uoff */
static inline void ublk_copy_page(const struct bio_vec *bv, size_t seg, struct page *upage,
				  size_t uoff, size_t n, bool to_rq)
{
	void *rq_buf = kmap_local_page(bv->bv_page);
	void *user_buf = kmap_local_page(upage);

	if (to_rq)
		memcpy(rq_buf + bv->bv_offset + seg, user_buf + uoff, n);
	else
		memcpy(user_buf + uoff, rq_buf + bv->bv_offset + seg, n);
	kunmap_local(user_buf);
	kunmap_local(rq_buf);
	if (!to_rq)
		flush_dcache_page(upage);
}

/* main.c */
extern struct class ublk_chr_class;
extern dev_t ublk_chr_devt;
extern struct workqueue_struct *ublk_wq;
struct ublk_device *ublk_get_device(u32 id);
void ublk_put_device(struct ublk_device *ub);
int ublk_create_device(struct ublksrv_ctrl_dev_info *info, u32 want_id);
int ublk_delete_device(struct ublk_device *ub, bool wait);
void ublk_remove_all(void);

/* ctrl.c */
int ublk_ctrl_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags);

/* perm.c */
int ublk_ctrl_permission(struct ublk_device *ub, int nr, struct ublksrv_ctrl_cmd *h);

/* dev.c */
extern const struct file_operations ublk_ch_fops;
int ublk_start_disk(struct ublk_device *ub);
int ublk_stop_dev(struct ublk_device *ub, bool intr);
void ublk_stop_work_fn(struct work_struct *work);
void ublk_schedule_stop(struct ublk_device *ub);

/* io.c */
extern const struct blk_mq_ops ublk_mq_ops;
size_t ublk_copy_user(struct request *rq, size_t rq_off, u64 addr, size_t len, bool to_rq);
int ublk_ch_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags);
void ublk_abort_queue(struct ublk_queue *q, bool dead);
void ublk_abort_fetched(struct ublk_device *ub);
void ublk_server_gone(struct ublk_device *ub);
void ublk_reset_ios(struct ublk_device *ub);
void ublk_resume_io(struct ublk_device *ub);

/* pins.c */
size_t ublk_copy_io(struct ublk_queue *q, struct ublk_io *io, struct request *rq, u64 addr,
		    size_t len, bool to_rq);
void ublk_pins_drop(struct ublk_io *io);

/* usercopy.c */
struct pipe_inode_info;
ssize_t ublk_ch_read_iter(struct kiocb *iocb, struct iov_iter *to);
ssize_t ublk_ch_write_iter(struct kiocb *iocb, struct iov_iter *from);
ssize_t ublk_ch_splice_read(struct file *file, loff_t *ppos, struct pipe_inode_info *pipe,
			    size_t len, unsigned int flags);
ssize_t ublk_ch_splice_write(struct pipe_inode_info *pipe, struct file *file, loff_t *ppos,
			     size_t len, unsigned int flags);

/* watch.c */
#if UBLK_WATCH_SERVER
void ublk_watch_init(struct ublk_device *ub);
int ublk_watch_server(struct ublk_queue *q, struct io_uring_cmd *cmd, bool fetch);
void ublk_unwatch(struct ublk_device *ub);
#else
static inline void ublk_watch_init(struct ublk_device *ub)
{
}

static inline int ublk_watch_server(struct ublk_queue *q, struct io_uring_cmd *cmd, bool fetch)
{
	return 0;
}

static inline void ublk_unwatch(struct ublk_device *ub)
{
}
#endif

#endif
