// SPDX-License-Identifier: GPL-2.0
/*
 * Control commands: io_uring URING_CMD on /dev/ublk-control.
 *
 * Who may send which command is perm.c's to decide; ADD_DEV decides here
 * which kind of device the caller gets (privileged or unprivileged).
 */
#include <linux/capability.h>
#include <linux/cpumask.h>
#include <linux/cred.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ublk.h"

/* What GET_FEATURES advertises: exactly what ADD_DEV accepts. */
#define UBLK_FEATURES	(UBLK_F_IMPLEMENTED | UBLK_F_UNPRIVILEGED_DEV)

/*
 * What a device its user controls may not have.  Recovery keeps requests
 * queued for as long as no server comes back, with no timeout (root may
 * choose that, a user may not make other tasks wait forever): dropped, as
 * the in-tree driver does.  USER_COPY lets the server copy a request's data
 * with pread/pwrite, outside q->lock; a request is not ended while a copy
 * runs (io.c), so a copy made to wait (a page fault on a buffer the user's
 * own FUSE or userfaultfd serves) would hold it past its timeout: refused.
 */
#define UBLK_F_UNPRIV_DROPPED	UBLK_F_RECOVERY_FLAGS
#define UBLK_F_UNPRIV_REFUSED	UBLK_F_USER_COPY

/*
 * The command number of an opcode, decoded as upstream does: an
 * ioctl-encoded ('u') or legacy (type 0) opcode, whatever its size and
 * direction bits say.  GET_FEATURES alone is matched whole, before any
 * device is looked up; any other number finds its device first, so an
 * unknown one is ENODEV without a device and EOPNOTSUPP with one.
 */
static int ublk_ctrl_nr(u32 op)
{
	if (_IOC_TYPE(op) != 'u' && _IOC_TYPE(op) != 0)
		return -EOPNOTSUPP;
	return _IOC_NR(op);
}

/*
 * ADD_DEV, checked in upstream's order so that a bad request fails with
 * the same errno: the header (queue_id must be -1), the sizes, the kind of
 * device the caller may have, the id (the header's and the info's must be
 * the same), then the id's and the cap's availability (ublk_create_device()).
 */
static int ublk_ctrl_add_dev(const struct ublksrv_ctrl_cmd *h)
{
	struct ublksrv_ctrl_dev_info info;
	void __user *argp = u64_to_user_ptr(h->addr);
	u32 max_io;
	int ret;

	if (h->len < sizeof(info) || !h->addr)
		return -EINVAL;
	if (h->queue_id != (u16)-1)
		return -EINVAL;
	if (copy_from_user(&info, argp, sizeof(info)))
		return -EFAULT;
	if (!info.queue_depth || info.queue_depth > UBLK_MAX_QUEUE_DEPTH ||
	    !info.nr_hw_queues || info.nr_hw_queues > UBLK_MAX_NR_QUEUES)
		return -EINVAL;

	/*
	 * The caller's capability decides the kind: a privileged caller asking
	 * for an unprivileged device gets a privileged one (as with the in-tree
	 * driver), any other caller must ask for an unprivileged one.
	 */
	if (capable(CAP_SYS_ADMIN))
		info.flags &= ~UBLK_F_UNPRIVILEGED_DEV;
	else if (!(info.flags & UBLK_F_UNPRIVILEGED_DEV))
		return -EPERM;
	if (info.flags & UBLK_F_UNPRIVILEGED_DEV) {
		info.flags &= ~UBLK_F_UNPRIV_DROPPED;
		if (info.flags & UBLK_F_UNPRIV_REFUSED)
			return -EINVAL;
	}
	/* the owner udev gives the nodes to, and perm.c's files are checked against */
	info.owner_uid = from_kuid(&init_user_ns, current_uid());
	info.owner_gid = from_kgid(&init_user_ns, current_gid());

	if (h->dev_id != info.dev_id)
		return -EINVAL;
	if (h->dev_id != U32_MAX && h->dev_id >= UBLK_MAX_DEVS)
		return -EINVAL;

	/*
	 * Flags are negotiated, as upstream does: what we do not implement is
	 * cleared, not refused, and the server learns what its device has from
	 * the info written back.  Servers written for newer kernels ask for
	 * flags that 6.12's in-tree driver clears the same way.
	 */
	info.flags &= UBLK_F_IMPLEMENTED | UBLK_F_UNPRIVILEGED_DEV;
	/*
	 * REISSUE and FAIL_IO are kinds of USER_RECOVERY, and mean nothing
	 * without it (ublk.h), but 6.12 takes REISSUE alone and keeps it in
	 * the flags: so do we.  FAIL_IO (6.13's) excludes REISSUE, as there.
	 */
	if ((info.flags & UBLK_F_USER_RECOVERY_REISSUE) &&
	    (info.flags & UBLK_F_USER_RECOVERY_FAIL_IO))
		return -EINVAL;
	/* what every device of ours does, asked for or not */
	info.flags |= UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_URING_CMD_COMP_IN_TASK;
	/* a USER_COPY server takes a write's data when it wants: nothing to get */
	if (info.flags & UBLK_F_USER_COPY)
		info.flags &= ~UBLK_F_NEED_GET_DATA;

	info.nr_hw_queues = min_t(unsigned int, info.nr_hw_queues, nr_cpu_ids);

	/* One request's data must fit the USER_COPY offset encoding. */
	max_io = min_t(u64, info.max_io_buf_bytes, UBLK_IO_BUF_BITS_MASK + 1);
	max_io = round_down(max_io, PAGE_SIZE);
	info.max_io_buf_bytes = max_t(u32, max_io, PAGE_SIZE);

	/*
	 * Not the caller's to set: upstream keeps what it sent in state and
	 * ublksrv_pid until START_DEV, ours starts every device DEAD (our
	 * recovery looks at the state).
	 */
	info.state = UBLK_S_DEV_DEAD;
	info.io_desc_size = 0;
	info.pad1 = 0;
	info.reserved1 = 0;
	info.reserved2 = 0;

	ret = ublk_create_device(&info, h->dev_id);
	if (ret)
		return ret;
	if (copy_to_user(argp, &info, sizeof(info))) {
		struct ublk_device *ub = ublk_get_device(info.dev_id);

		if (ub)
			ublk_delete_device(ub, false);
		return -EFAULT;
	}
	return 0;
}

static void ublk_fill_info(struct ublk_device *ub, struct ublksrv_ctrl_dev_info *info)
{
	mutex_lock(&ub->mutex);
	*info = ub->info;
	mutex_unlock(&ub->mutex);
}

static int ublk_ctrl_get_dev_info(struct ublk_device *ub, u64 addr, u32 len)
{
	struct ublksrv_ctrl_dev_info info;

	if (len < sizeof(info) || !addr)
		return -EINVAL;
	ublk_fill_info(ub, &info);
	if (copy_to_user(u64_to_user_ptr(addr), &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

/*
 * Upstream's checks first, with its errnos (a zoned type on a device that is
 * not zoned, and DEVT, are EINVAL), then ours: limits the block layer would
 * WARN about, and the types upstream 6.12 does not know.
 */
static int ublk_validate_params(struct ublk_device *ub, const struct ublk_params *p)
{
	if (p->types & UBLK_PARAM_TYPE_BASIC) {
		const struct ublk_param_basic *b = &p->basic;

		if (b->logical_bs_shift < SECTOR_SHIFT || b->logical_bs_shift > PAGE_SHIFT)
			return -EINVAL;
		if (b->physical_bs_shift < b->logical_bs_shift ||
		    b->physical_bs_shift > 31)
			return -EINVAL;
		if (b->io_min_shift > 31 || b->io_opt_shift > 31)
			return -EINVAL;
		/* the block layer WARNs at START_DEV on less than a page */
		if (b->max_sectors > (ub->info.max_io_buf_bytes >> SECTOR_SHIFT) ||
		    (b->max_sectors && b->max_sectors < (PAGE_SIZE >> SECTOR_SHIFT)))
			return -EINVAL;
		if (b->dev_sectors & ((1ULL << (b->logical_bs_shift - SECTOR_SHIFT)) - 1))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (p->types & UBLK_PARAM_TYPE_DISCARD) {
		const struct ublk_param_discard *d = &p->discard;

		/* one range per discard, as upstream */
		if (d->max_discard_sectors && d->max_discard_segments != 1)
			return -EINVAL;
		if (!d->discard_granularity)
			return -EINVAL;
	}
	/* read-only: GET_PARAMS reports it */
	if (p->types & UBLK_PARAM_TYPE_DEVT)
		return -EINVAL;
	/* no device of ours is zoned */
	if (p->types & UBLK_PARAM_TYPE_ZONED)
		return -EINVAL;
	if (p->types & UBLK_PARAM_TYPE_INTEGRITY)
		return -EOPNOTSUPP;
	if (p->types & UBLK_PARAM_TYPE_SEGMENT) {
		const struct ublk_param_segment *s = &p->seg;

		if (!s->max_segments || s->max_segment_size < UBLK_MIN_SEGMENT_SIZE ||
		    s->seg_boundary_mask + 1 < UBLK_MIN_SEGMENT_SIZE ||
		    !is_power_of_2(s->seg_boundary_mask + 1))
			return -EINVAL;
	}
	if (p->types & UBLK_PARAM_TYPE_DMA_ALIGN) {
		/* a mask, of at most a page (the block layer WARNs on more) */
		if (!is_power_of_2(p->dma.alignment + 1) || p->dma.alignment >= PAGE_SIZE)
			return -EINVAL;
	}
	return 0;
}

/* The types SET_PARAMS takes: upstream 6.12's, and ours (DMA_ALIGN, SEGMENT, INTEGRITY). */
#define UBLK_PARAM_TYPES_KNOWN	(UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD | \
				 UBLK_PARAM_TYPE_DEVT | UBLK_PARAM_TYPE_ZONED | \
				 UBLK_PARAM_TYPE_DMA_ALIGN | UBLK_PARAM_TYPE_SEGMENT | \
				 UBLK_PARAM_TYPE_INTEGRITY)

/*
 * How many bytes of the struct ublk_params at h->addr SET_PARAMS and
 * GET_PARAMS work with, as upstream decides: the struct's own len, which
 * must be non-zero and fit the command's buffer (more than the 8-byte
 * header), cut to what this driver knows (newer user space).
 */
static int ublk_params_len(const struct ublksrv_ctrl_cmd *h)
{
	u32 plen;

	if (h->len <= offsetofend(struct ublk_params, types) || !h->addr)
		return -EINVAL;
	if (get_user(plen, (u32 __user *)u64_to_user_ptr(h->addr)))
		return -EFAULT;
	if (!plen || plen > h->len)
		return -EINVAL;
	return min_t(u32, plen, sizeof(struct ublk_params));
}

/*
 * SET_PARAMS as upstream: the caller's bytes go over the device's params
 * (a shorter struct leaves the rest as it was, len included is the
 * caller's), types it does not know are dropped, and params that fail the
 * checks stay with no type at all, so that START_DEV refuses them.
 */
static int ublk_ctrl_set_params(struct ublk_device *ub, const struct ublksrv_ctrl_cmd *h)
{
	void __user *argp = u64_to_user_ptr(h->addr);
	struct ublk_params p;
	u32 types;
	int plen, ret;

	plen = ublk_params_len(h);
	if (plen < 0)
		return plen;
	if (get_user(types, (u32 __user *)(argp + offsetof(struct ublk_params, types))))
		return -EFAULT;
	if (!types)
		return -EINVAL;

	mutex_lock(&ub->mutex);
	p = ub->params;
	if (ub->disk) {
		ret = -EACCES;
	} else if (copy_from_user(&p, argp, plen)) {
		ret = -EFAULT;
	} else {
		p.types &= UBLK_PARAM_TYPES_KNOWN;
		ret = ublk_validate_params(ub, &p);
		if (ret)
			p.types = 0;
		ub->params = p;
	}
	mutex_unlock(&ub->mutex);
	return ret;
}

static int ublk_ctrl_get_params(struct ublk_device *ub, const struct ublksrv_ctrl_cmd *h)
{
	struct ublk_params p;
	void __user *argp = u64_to_user_ptr(h->addr);
	int plen;

	plen = ublk_params_len(h);
	if (plen < 0)
		return plen;

	mutex_lock(&ub->mutex);
	p = ub->params;
	mutex_unlock(&ub->mutex);
	p.types |= UBLK_PARAM_TYPE_DEVT;
	p.devt.char_major = MAJOR(ub->cdev_dev.devt);
	p.devt.char_minor = MINOR(ub->cdev_dev.devt);
	mutex_lock(&ub->mutex);
	if (ub->disk) {
		p.devt.disk_major = ub->disk->major;
		p.devt.disk_minor = ub->disk->first_minor;
	} else {
		p.devt.disk_major = 0;
		p.devt.disk_minor = 0;
	}
	mutex_unlock(&ub->mutex);
	/* len is as the last SET_PARAMS sent it (0 before any), as upstream */
	if (copy_to_user(argp, &p, plen))
		return -EFAULT;
	return 0;
}

/*
 * GET_QUEUE_AFFINITY: the CPUs blk-mq maps to a queue, as a cpumask of
 * h->len bytes.  The queue is data[0], not queue_id: upstream servers
 * send queue_id = -1 with every control command, this one included.  The
 * checks come in upstream's order, so a bad command fails the same way
 * (len too short for nr_cpu_ids bits, or not a multiple of a long, or no
 * buffer: EINVAL), and the buffer past the mask is cleared, as upstream
 * does: a server may size it for NR_CPUS and read it all.
 */
static int ublk_ctrl_get_queue_affinity(struct ublk_device *ub, const struct ublksrv_ctrl_cmd *h)
{
	const struct blk_mq_queue_map *map = &ub->tag_set.map[HCTX_TYPE_DEFAULT];
	void __user *argp = u64_to_user_ptr(h->addr);
	cpumask_var_t mask;
	unsigned int cpu;
	size_t retlen;
	int ret = 0;

	if ((size_t)h->len * BITS_PER_BYTE < nr_cpu_ids)
		return -EINVAL;
	if (h->len & (sizeof(unsigned long) - 1))
		return -EINVAL;
	if (!h->addr)
		return -EINVAL;
	if (h->data[0] >= ub->info.nr_hw_queues)
		return -EINVAL;
	if (!zalloc_cpumask_var(&mask, GFP_KERNEL))
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		if (map->mq_map[cpu] == h->data[0])
			cpumask_set_cpu(cpu, mask);
	}
	retlen = min_t(size_t, h->len, cpumask_size());
	if (copy_to_user(argp, cpumask_bits(mask), retlen) ||
	    (retlen < h->len && clear_user(argp + retlen, h->len - retlen)))
		ret = -EFAULT;
	free_cpumask_var(mask);
	return ret;
}

static int ublk_ctrl_start_dev(struct ublk_device *ub, const struct ublksrv_ctrl_cmd *h)
{
	u32 total = (u32)ub->info.nr_hw_queues * ub->info.queue_depth;
	int pid = (int)h->data[0];
	int ret;

	if (pid <= 0)
		return -EINVAL;
	/* as upstream, before waiting: a server without params gets no disk */
	if (!(READ_ONCE(ub->params.types) & UBLK_PARAM_TYPE_BASIC))
		return -EINVAL;
	/*
	 * The disk may only appear once every tag can take a request: its
	 * partition scan is IO.  Waiting is interruptible so that a server
	 * can cancel a START_DEV that waits for a queue which never comes.
	 */
	if (wait_event_interruptible(ub->fetch_wq,
				     atomic_read(&ub->nr_fetched) >= total ||
				     READ_ONCE(ub->srv_gone) || READ_ONCE(ub->stopped)))
		return -EINTR;

	mutex_lock(&ub->mutex);
	if (ub->disk)
		ret = -EEXIST;
	else if (ub->stopped || ub->srv_gone)
		ret = -ENODEV;
	else if (!(ub->params.types & UBLK_PARAM_TYPE_BASIC))
		ret = -EINVAL;
	else {
		ub->info.ublksrv_pid = pid;
		ret = ublk_start_disk(ub);
	}
	mutex_unlock(&ub->mutex);
	return ret;
}

/*
 * START_USER_RECOVERY: once the old server is gone for good (its char
 * device released, the device quiesced or failing IO), a new one may open
 * /dev/ublkcN and fetch every tag.  EBUSY before that, as upstream: a
 * server polls for the moment its predecessor's exit is complete.
 */
static int ublk_ctrl_start_recovery(struct ublk_device *ub)
{
	int ret = 0;

	if (!ublk_can_recover(ub))
		return -EINVAL;
	mutex_lock(&ub->mutex);
	/*
	 * A device that never had a disk nor a server's fetch: upstream's
	 * EINVAL (no queue ever ready).  Upstream also refuses a device whose
	 * next server died before it fetched every tag, which then cannot be
	 * recovered at all; ours can (a started device goes on below).
	 */
	if (!atomic_read(&ub->nr_fetched) && (!ub->disk || ub->recovering))
		/* nor since the last START_USER_RECOVERY: upstream's EINVAL (no queue ready) */
		ret = -EINVAL;
	else if (atomic_read(&ub->opened) || ub->stopped ||
	    (ub->info.state != UBLK_S_DEV_QUIESCED && ub->info.state != UBLK_S_DEV_FAIL_IO)) {
		ret = -EBUSY;
	} else {
		WRITE_ONCE(ub->recovering, true);
		WRITE_ONCE(ub->srv_gone, false);
		ublk_reset_ios(ub);
	}
	mutex_unlock(&ub->mutex);
	return ret;
}

/*
 * END_USER_RECOVERY: waits (interruptibly, like START_DEV) until the new
 * server has fetched every tag, then IO flows again, first what waited.
 * A server that left meanwhile leaves the device recoverable again.
 */
static int ublk_ctrl_end_recovery(struct ublk_device *ub, const struct ublksrv_ctrl_cmd *h)
{
	u32 total = (u32)ub->info.nr_hw_queues * ub->info.queue_depth;
	int pid = (int)h->data[0];
	int ret = 0;

	if (!ublk_can_recover(ub) || pid <= 0)
		return -EINVAL;
	if (wait_event_interruptible(ub->fetch_wq,
				     atomic_read(&ub->nr_fetched) >= total ||
				     !READ_ONCE(ub->recovering)))
		return -EINTR;

	mutex_lock(&ub->mutex);
	if (READ_ONCE(ub->srv_gone) || ub->stopped) {
		ret = -ENODEV;
	} else if (!ub->recovering || !ub->disk) {
		ret = -EBUSY;
	} else {
		ub->info.ublksrv_pid = pid;
		ub->info.state = UBLK_S_DEV_LIVE;
		WRITE_ONCE(ub->recovering, false);
		ublk_resume_io(ub);
	}
	mutex_unlock(&ub->mutex);
	return ret;
}


int ublk_ctrl_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	struct ublksrv_ctrl_cmd h;
	struct ublk_device *ub;
	int nr, ret;

	/* Never marked cancelable, so never asked to cancel: nothing to do. */
	if (ublk_issue_is_cancel(issue_flags))
		return -EINVAL;
	if (!(issue_flags & IO_URING_F_SQE128))
		return -EINVAL;
	/* Several commands sleep (START_DEV for a long time): run from io-wq. */
	if (issue_flags & IO_URING_F_NONBLOCK)
		return -EAGAIN;

	memcpy(&h, ublk_cmd_payload(cmd), sizeof(h));
	nr = ublk_ctrl_nr(cmd->cmd_op);
	if (nr < 0)
		return nr;

	if (cmd->cmd_op == UBLK_U_CMD_GET_FEATURES) {
		u64 features = UBLK_FEATURES;

		if (h.len != UBLK_FEATURES_LEN || !h.addr)
			return -EINVAL;
		if (copy_to_user(u64_to_user_ptr(h.addr), &features, sizeof(features)))
			return -EFAULT;
		return 0;
	}

	if (nr == UBLK_CMD_ADD_DEV)
		return ublk_ctrl_add_dev(&h);

	ub = ublk_get_device(h.dev_id);
	if (!ub)
		return -ENODEV;
	/* from here on h.addr and h.len are the command's data, after any path */
	ret = ublk_ctrl_permission(ub, nr, &h);
	if (ret) {
		ublk_put_device(ub);
		return ret;
	}

	switch (nr) {
	case UBLK_CMD_DEL_DEV:
		/* consumes our reference */
		return ublk_delete_device(ub, true);
	case UBLK_CMD_START_DEV:
		ret = ublk_ctrl_start_dev(ub, &h);
		break;
	case UBLK_CMD_STOP_DEV:
		/*
		 * As upstream, a device that never had a disk has nothing to
		 * stop: its server's fetches stay, and it may still start.
		 * -EINTR: interrupted while a stuck server held requests; the
		 * stop goes on.
		 */
		if (!READ_ONCE(ub->disk) && !READ_ONCE(ub->stopped) && ub->info.state == UBLK_S_DEV_DEAD)
			ret = 0;
		else
			ret = ublk_stop_dev(ub, true);
		break;
	case UBLK_CMD_SET_PARAMS:
		ret = ublk_ctrl_set_params(ub, &h);
		break;
	case UBLK_CMD_GET_PARAMS:
		ret = ublk_ctrl_get_params(ub, &h);
		break;
	case UBLK_CMD_GET_DEV_INFO:
	case UBLK_CMD_GET_DEV_INFO2:
		ret = ublk_ctrl_get_dev_info(ub, h.addr, h.len);
		break;
	case UBLK_CMD_GET_QUEUE_AFFINITY:
		ret = ublk_ctrl_get_queue_affinity(ub, &h);
		break;
	case UBLK_CMD_START_USER_RECOVERY:
		ret = ublk_ctrl_start_recovery(ub);
		break;
	case UBLK_CMD_END_USER_RECOVERY:
		ret = ublk_ctrl_end_recovery(ub, &h);
		break;
	default:
		ret = -EOPNOTSUPP;
		break;
	}
	ublk_put_device(ub);
	return ret;
}
