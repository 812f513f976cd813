// SPDX-License-Identifier: GPL-2.0
/*
 * Copy mode's buffers stay pinned between IOs.
 *
 * In copy mode the server names a buffer per tag (FETCH_REQ,
 * COMMIT_AND_FETCH_REQ, NEED_GET_DATA), and a server like ublkd names the
 * same one for every IO of the tag.  Pinning its pages for each copy and
 * unpinning them after costs a page-table walk and atomics on every page of
 * every IO; the in-tree driver pays that (bench/RESULTS.md).  So a tag of a
 * root's device keeps the pages it copied through pinned long-term, for
 * writing those it wrote to (a fork() then leaves them with the server,
 * pin_user_pages.rst case 5), and copies through them again while the
 * server's mapping of that range stays as it was.
 *
 * The mapping is watched by an mmu interval notifier over the tag's window
 * (from the buffer's first page, as many pages as the device's largest IO
 * may span, at most UBLK_PINS_PAGES).  Anything that changes the range's
 * page tables (munmap, a new mapping over it, madvise(MADV_DONTNEED), a
 * fork's write protection, the first write to a page never written) moves
 * its sequence, and the next copy unpins and pins afresh.  A change racing
 * with a copy is the server's own race, as it is with pins per IO.
 *
 * Pins per IO (ublk_copy_user()) remain for: users' devices, whose pinned
 * pages nothing would count against RLIMIT_MEMLOCK; an IO that does not fit
 * the window; a tag whose buffer moved since its last copy (a server that
 * alternates buffers would otherwise pay a notifier per IO); a window with
 * a page that cannot be kept (see ublk_page_keepable()), until its mapping
 * changes; and the module parameter pin_cache=N.  Only pages a copy
 * touches are pinned.
 *
 * Only the tag's copier touches io->pins: the copy paths own the tag (see
 * io.c), one at a time.  The pins go when the tag's buffer moves (another
 * address, another mm: a recovering server) and when the server releases
 * the char device (ublk_server_gone()), after which nobody copies.
 */
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "ublk.h"

/* at most, from the buffer's first page; fewer for a device whose IOs are smaller */
#define UBLK_PINS_PAGES 64

struct ublk_pins {
	struct mmu_interval_notifier watch;	/* watch.mm: the server's */
	unsigned long start;			/* user address of pages[0] */
	unsigned long seq;			/* watch's sequence the pages are good for */
	unsigned int npages;			/* the window watched */
	unsigned int nr;			/* pages[] entries pinned */
	u64 writable;				/* pages[] pinned for writing, by bit */
	/* a page of the window could not be kept: pin per IO until the mapping changes */
	bool refused;
	struct page *pages[UBLK_PINS_PAGES];
};

static bool ublk_pin_cache = true;
module_param_named(pin_cache, ublk_pin_cache, bool, 0644);
MODULE_PARM_DESC(pin_cache, "Keep copy mode's buffers pinned between IOs (root's devices; default Y)");

static bool ublk_pins_invalidate(struct mmu_interval_notifier *watch,
				 const struct mmu_notifier_range *range, unsigned long cur_seq)
{
	/* the next copy sees the sequence moved; the pins keep the old pages alive */
	mmu_interval_set_seq(watch, cur_seq);
	return true;
}

static const struct mmu_interval_notifier_ops ublk_pins_ops = {
	.invalidate = ublk_pins_invalidate,
};

static void ublk_pins_unpin_one(struct ublk_pins *p, unsigned int i)
{
	/* copies to the server wrote only what was pinned for writing */
	unpin_user_pages_dirty_lock(&p->pages[i], 1, p->writable & BIT_ULL(i));
	p->pages[i] = NULL;
	p->writable &= ~BIT_ULL(i);
	p->nr--;
}

static void ublk_pins_unpin(struct ublk_pins *p)
{
	unsigned int i;

	for (i = 0; p->nr && i < p->npages; i++)
		if (p->pages[i])
			ublk_pins_unpin_one(p, i);
	p->refused = false;
}

void ublk_pins_drop(struct ublk_io *io)
{
	struct ublk_pins *p = io->pins;

	io->pins_start = 0;
	if (!p)
		return;
	io->pins = NULL;
	ublk_pins_unpin(p);
	mmu_interval_notifier_remove(&p->watch);
	kfree(p);
}

/*
 * Only the server's anonymous memory (or shmem) is kept: a file's page kept
 * pinned could be written back, cleaned and stripped of its buffers under
 * the pin, and dirtied at the unpin without the file system knowing (6.12
 * refuses such long-term pins itself, 6.1 does not).  The zero page is what
 * a read pin of a buffer never written finds (a null target's reads).
 */
static bool ublk_page_keepable(struct page *page)
{
	struct folio *folio = page_folio(page);

	return folio_test_anon(folio) || folio_test_swapbacked(folio) ||
	       is_zero_pfn(page_to_pfn(page));
}

/* The tag's pins holding all of [addr, addr + len), or NULL: pin per IO. */
static struct ublk_pins *ublk_pins_get(struct ublk_queue *q, struct ublk_io *io,
				       unsigned long addr, size_t len, bool write)
{
	unsigned long start = addr & PAGE_MASK;
	unsigned long last = (offset_in_page(addr) + len - 1) >> PAGE_SHIFT;
	/*
	 * What the largest IO may span from any offset in the first page: the
	 * window must not depend on the offset, which a server may change
	 * while the buffer stays in that page (and the pins stay).
	 */
	unsigned long window = min_t(unsigned long, UBLK_PINS_PAGES,
				     DIV_ROUND_UP(PAGE_SIZE - 1 + q->ub->info.max_io_buf_bytes,
						  PAGE_SIZE));
	struct ublk_pins *p = io->pins;
	unsigned int i;

	if (!len || last >= window || !current->mm)
		return NULL;
	/* pages past the watch's window would be neither watched nor unpinned */
	if (p && (p->watch.mm != current->mm || p->start != start || p->npages != window))
		ublk_pins_drop(io);
	p = io->pins;
	if (!p) {
		/* a buffer is worth watching once the tag names it twice in a row */
		if (io->pins_start != start) {
			io->pins_start = start;
			return NULL;
		}
		p = kzalloc(sizeof(*p), GFP_KERNEL);
		if (!p)
			return NULL;
		if (mmu_interval_notifier_insert(&p->watch, current->mm, start, window * PAGE_SIZE,
						 &ublk_pins_ops)) {
			kfree(p);
			return NULL;
		}
		p->start = start;
		p->npages = window;
		p->seq = mmu_interval_read_begin(&p->watch);
		io->pins = p;
	} else if (mmu_interval_check_retry(&p->watch, p->seq)) {
		ublk_pins_unpin(p);
		p->seq = mmu_interval_read_begin(&p->watch);
	}
	if (p->refused)
		return NULL;
	for (i = 0; i <= last; i++) {
		struct page *page;

		if (p->pages[i] && (!write || (p->writable & BIT_ULL(i))))
			continue;
		/* pinned for reading, now written to: a write pin may need a page of its own */
		if (p->pages[i])
			ublk_pins_unpin_one(p, i);
		if (pin_user_pages_fast(start + i * PAGE_SIZE, 1,
					FOLL_LONGTERM | (write ? FOLL_WRITE : 0), &page) != 1) {
			p->refused = true;
			return NULL;
		}
		if (!ublk_page_keepable(page)) {
			unpin_user_page(page);
			p->refused = true;
			return NULL;
		}
		p->pages[i] = page;
		p->nr++;
		if (write)
			p->writable |= BIT_ULL(i);
	}
	return p;
}

/*
 * Copy mode's copy of a request's data, from its start, and len bytes of the
 * tag's buffer at addr: through the pins the tag keeps where it can, else
 * as ublk_copy_user().  Returns the bytes copied; fewer than len: a fault.
 */
size_t ublk_copy_io(struct ublk_queue *q, struct ublk_io *io, struct request *rq, u64 addr,
		    size_t len, bool to_rq)
{
	struct ublk_pins *p = NULL;
	struct req_iterator ri;
	struct bio_vec bv;
	size_t done = 0;

	if (!ublk_unprivileged(q->ub) && READ_ONCE(ublk_pin_cache) && addr == (unsigned long)addr)
		p = ublk_pins_get(q, io, addr, len, !to_rq);
	if (!p)
		return ublk_copy_user(rq, 0, addr, len, to_rq);

	rq_for_each_segment(bv, rq, ri) {
		size_t seg = 0;

		while (seg < bv.bv_len && done < len) {
			unsigned long uaddr = addr + done;
			size_t uoff = offset_in_page(uaddr);
			size_t n = min3((size_t)bv.bv_len - seg, PAGE_SIZE - uoff, len - done);

			ublk_copy_page(&bv, seg, p->pages[(uaddr - p->start) >> PAGE_SHIFT], uoff, n,
				       to_rq);
			seg += n;
			done += n;
		}
		if (done >= len)
			break;
	}
	return done;
}
