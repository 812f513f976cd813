// SPDX-License-Identifier: GPL-2.0
/*
 * splice() on /dev/ublkcN, for USER_COPY servers, at the offsets of pread
 * and pwrite (UBLKSRV_IO_BUF_OFFSET + queue, tag, byte offset).  Our
 * extension: the in-tree driver has no splice, and a server learns that we
 * do from the module parameter "splice" (Y).
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

#include "ublk.h"

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
