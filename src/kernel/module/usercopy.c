// SPDX-License-Identifier: GPL-2.0
/*
 * USER_COPY (the rules are at the top of io.c): the server moves a
 * request's data with pread/pwrite on /dev/ublkcN, or with splice(), at
 * UBLKSRV_IO_BUF_OFFSET + (queue, tag, byte offset).
 *
 * splice() is our extension: the in-tree driver has no splice, and a server
 * learns that we do from the module parameter "splice" (Y).
 *
 * From the device (a write's data): no copy.  The pipe gets buffers that
 * point at the request's own pages, and a splice on from the pipe to the
 * backing file writes them from there: with O_DIRECT nothing is copied at
 * all.  Into the device (a read's data): iter_file_splice_write() hands the
 * pipe's pages to our write_iter, one copy, from the page cache's pages
 * when the pipe was filled from a buffered file.
 *
 * A pipe buffer may live as long as its pipe, past the splice that made it,
 * and could be passed on with the pipe; the request's pages may not change
 * owner meanwhile.  So each splice counts as one of the request's copiers
 * (see the top of io.c) until the last of its buffers (tee() duplicates
 * them) is released: until then the request's commit fails with EBUSY and
 * changes nothing, and it does not time out.  Each splice also holds the
 * char device file, so the server's release, which ends every request it
 * had, waits for those buffers too.  Nothing in a buffer survives the
 * request, then, and no page reference is taken.  A server that keeps a
 * pipe full keeps its own requests: it must drain (or close) the pipe
 * before it commits.  Only root's devices have USER_COPY.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/pipe_fs_i.h>
#include <linux/refcount.h>
#include <linux/slab.h>
#include <linux/splice.h>
#include <linux/uio.h>

#include "ublk.h"

/*
 * Copies between the request's pages, from byte off of the request on, and
 * iter.  Returns the bytes copied; fewer than asked means a fault.  A single
 * user buffer (pread, pwrite, io_uring's READ and WRITE) takes the copy of
 * copy mode, ublk_copy_user(); other iterators (readv, writev, the pipe's
 * pages of a splice) copy_page_{to,from}_iter().
 */
static size_t ublk_copy_rq(struct request *rq, size_t off, struct iov_iter *iter, bool to_rq)
{
	struct req_iterator ri;
	struct bio_vec bv;
	size_t done = 0;

	if (iter_is_ubuf(iter)) {
		done = ublk_copy_user(rq, off, (u64)(uintptr_t)iter->ubuf + iter->iov_offset,
				      min_t(size_t, iov_iter_count(iter), blk_rq_bytes(rq) - off), to_rq);
		iov_iter_advance(iter, done);
		return done;
	}

	rq_for_each_segment(bv, rq, ri) {
		size_t n;

		if (off >= bv.bv_len) {
			off -= bv.bv_len;
			continue;
		}
		bv.bv_offset += off;
		bv.bv_len -= off;
		off = 0;
		if (to_rq)
			n = copy_page_from_iter(bv.bv_page, bv.bv_offset, bv.bv_len, iter);
		else
			n = copy_page_to_iter(bv.bv_page, bv.bv_offset, bv.bv_len, iter);
		done += n;
		if (n < bv.bv_len || !iov_iter_count(iter))
			break;
	}
	return done;
}

/*
 * USER_COPY: the server reads a write's data and writes a read's data with
 * pread/pwrite (or splice, below) at UBLKSRV_IO_BUF_OFFSET + (queue,
 * tag, byte offset).  The request is the server's between its dispatch and
 * its commit, and stays so while a copy runs (io->copiers, see the top of
 * io.c).  Returns the request and counts the caller in io->copiers;
 * ublk_user_copy_end() uncounts it.
 */
static struct request *ublk_user_copy_begin(struct ublk_device *ub, loff_t pos, enum req_op want,
					    struct ublk_queue **qp, u16 *tagp, size_t *offp)
{
	struct ublk_queue *q;
	struct ublk_io *io;
	struct request *rq;
	size_t off;
	u64 p;
	u16 q_id, tag;

	if (!ublk_user_copy(ub) || pos < UBLKSRV_IO_BUF_OFFSET)
		return ERR_PTR(-EACCES);
	p = pos - UBLKSRV_IO_BUF_OFFSET;
	if (p >= UBLKSRV_IO_BUF_TOTAL_SIZE)
		return ERR_PTR(-EINVAL);
	q_id = (p >> UBLK_QID_OFF) & UBLK_QID_BITS_MASK;
	tag = (p >> UBLK_TAG_OFF) & UBLK_TAG_BITS_MASK;
	off = p & UBLK_IO_BUF_BITS_MASK;
	if (q_id >= ub->info.nr_hw_queues)
		return ERR_PTR(-EINVAL);
	q = ub->queues[q_id];
	if (tag >= q->depth)
		return ERR_PTR(-EINVAL);
	io = &q->ios[tag];

	spin_lock(&q->lock);
	rq = io->req;
	/* not one whose dispatch is pending, which the server was not told of */
	if (!rq || io->cmd || io->dispatching || io->copying ||
	    req_op(rq) != want || off > blk_rq_bytes(rq))
		rq = ERR_PTR(-EINVAL);
	else
		io->copiers++;
	spin_unlock(&q->lock);
	*qp = q;
	*tagp = tag;
	*offp = off;
	return rq;
}

static void ublk_user_copy_end(struct ublk_queue *q, u16 tag)
{
	spin_lock(&q->lock);
	q->ios[tag].copiers--;
	spin_unlock(&q->lock);
}

static ssize_t ublk_user_copy_rq(struct ublk_device *ub, loff_t pos, struct iov_iter *iter,
				 enum req_op want)
{
	struct ublk_queue *q;
	struct request *rq;
	size_t off, done;
	u16 tag;

	rq = ublk_user_copy_begin(ub, pos, want, &q, &tag, &off);
	if (IS_ERR(rq))
		return PTR_ERR(rq);
	done = ublk_copy_rq(rq, off, iter, want == REQ_OP_READ);
	ublk_user_copy_end(q, tag);
	return done;
}

/* Both advance ki_pos like any file's, which iter_file_splice_write() relies on. */
ssize_t ublk_ch_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	ssize_t ret = ublk_user_copy_rq(iocb->ki_filp->private_data, iocb->ki_pos, to, REQ_OP_WRITE);

	if (ret > 0)
		iocb->ki_pos += ret;
	return ret;
}

ssize_t ublk_ch_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	ssize_t ret = ublk_user_copy_rq(iocb->ki_filp->private_data, iocb->ki_pos, from, REQ_OP_READ);

	if (ret > 0)
		iocb->ki_pos += ret;
	return ret;
}

static bool ublk_splice_on = true;
module_param_named(splice, ublk_splice_on, bool, 0444);
MODULE_PARM_DESC(splice,
		 "offer splice() on /dev/ublkcN to USER_COPY servers (a write's data without a copy); set at load (default Y)");

/* One splice from the device: what its pipe buffers share. */
struct ublk_splice_ref {
	refcount_t refs;	/* pipe buffers, and the splice while it builds them */
	struct file *file;
	struct ublk_queue *q;
	u16 tag;
};

static void ublk_splice_ref_put(struct ublk_splice_ref *ref)
{
	if (!refcount_dec_and_test(&ref->refs))
		return;
	ublk_user_copy_end(ref->q, ref->tag);
	fput(ref->file);
	kfree(ref);
}

static void ublk_pipe_buf_release(struct pipe_inode_info *pipe, struct pipe_buffer *buf)
{
	ublk_splice_ref_put((struct ublk_splice_ref *)buf->private);
}

static bool ublk_pipe_buf_get(struct pipe_inode_info *pipe, struct pipe_buffer *buf)
{
	refcount_inc(&((struct ublk_splice_ref *)buf->private)->refs);
	return true;
}

/* No try_steal: the pages stay the request's. */
static const struct pipe_buf_operations ublk_pipe_buf_ops = {
	.release	= ublk_pipe_buf_release,
	.get		= ublk_pipe_buf_get,
};

ssize_t ublk_ch_splice_read(struct file *file, loff_t *ppos, struct pipe_inode_info *pipe,
			    size_t len, unsigned int flags)
{
	struct ublk_splice_ref *ref;
	struct req_iterator ri;
	struct request *rq;
	struct bio_vec bv;
	ssize_t done = 0, ret = 0;
	size_t off;

	if (!ublk_splice_on)
		return -EINVAL;
	ref = kmalloc(sizeof(*ref), GFP_KERNEL);
	if (!ref)
		return -ENOMEM;
	rq = ublk_user_copy_begin(file->private_data, *ppos, REQ_OP_WRITE, &ref->q, &ref->tag, &off);
	if (IS_ERR(rq)) {
		kfree(ref);
		return PTR_ERR(rq);
	}
	refcount_set(&ref->refs, 1);
	ref->file = get_file(file);

	/* rq_for_each_segment() gives one page at most per step */
	rq_for_each_segment(bv, rq, ri) {
		struct pipe_buffer buf = { .page = bv.bv_page, .ops = &ublk_pipe_buf_ops,
					   .private = (unsigned long)ref };

		if (off >= bv.bv_len) {
			off -= bv.bv_len;
			continue;
		}
		buf.offset = bv.bv_offset + off;
		buf.len = min_t(size_t, bv.bv_len - off, len - done);
		off = 0;
		refcount_inc(&ref->refs);
		/* a full pipe (-EAGAIN) or no reader: it released buf */
		ret = add_to_pipe(pipe, &buf);
		if (ret < 0)
			break;
		done += ret;
		if (done >= len)
			break;
	}
	ublk_splice_ref_put(ref);
	if (!done)
		return ret;
	*ppos += done;
	return done;
}

/* A read's data: the pipe's pages go to write_iter, as with USER_COPY's pwrite. */
ssize_t ublk_ch_splice_write(struct pipe_inode_info *pipe, struct file *file, loff_t *ppos,
			     size_t len, unsigned int flags)
{
	if (!ublk_splice_on)
		return -EINVAL;
	return iter_file_splice_write(pipe, file, ppos, len, flags);
}
