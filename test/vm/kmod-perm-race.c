/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * kmod-perm's servers that race our ublk driver on their own tags (kmod-perm guess, kmod-perm
 * ucrace; see kmod-perm.c for the commands, kmod-perm.h for what they share with it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "ublk_cmd.h"
#include "kmod-perm.h"

/*
 * The guessing server: a RAM disk that, besides answering what it is given, sends
 * COMMIT_AND_FETCH (with usercopy also pread and pwrite) for every tag it holds no request of.
 * Its ring has IORING_SETUP_DEFER_TASKRUN: the driver's dispatch of a request (task work) runs
 * only while the server waits for completions, so whenever the disk has requests in flight at
 * a guess, each of them is queued to a tag whose dispatch is pending, which the server has not
 * been told of.  Every guess must be refused: EINVAL, or EBUSY while the tag's fetch still
 * waits (as upstream).  Once a second stderr gets
 *   guess: early=N refused=N pending=N accepted=N served=N
 * (guesses sent, refused, guesses at tags with a dispatch pending, guesses taken,
 * requests answered); "ACCEPTED ..." at once when a guess is taken.  Serves until killed.
 */
#define GUESS_DEPTH 8
#define UD_EARLY (1ULL << 32)

/* requests of the disk in flight: started, not ended */
static long disk_inflight(const char *path)
{
	long r = -1, w = -1;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &r, &w) != 2)
			r = w = -1;
		fclose(f);
	}
	return r < 0 || w < 0 ? -1 : r + w;
}

struct guess {
	struct io_uring ring;
	int fd;
	bool ucopy;
	size_t size;
	char *ram, *bufs;
	struct ublksrv_io_desc *descs;
	unsigned long early, refused, pending, accepted, served;
	int aborted;
};

/* A completion: the tag's request is ours (answered at once), or the end. */
static void guess_cqe(struct guess *g, const struct io_uring_cqe *cqe)
{
	unsigned tag = cqe->user_data & 0xffff;
	const struct ublksrv_io_desc *d = &g->descs[tag];
	__u64 pos = UBLKSRV_IO_BUF_OFFSET + ((__u64)tag << UBLK_TAG_OFF);
	size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
	char *buf = g->bufs + tag * MAXIO;
	unsigned op = ublksrv_get_op(d);
	int res = len;

	if (cqe->user_data & UD_EARLY) {
		/* EBUSY: the tag's fetch still waits (upstream's answer when a command waits on it) */
		if (cqe->res == -EINVAL || cqe->res == -EBUSY) {
			g->refused++;
			return;
		}
		/* otherwise refused, or completed long after it was taken: counted as taken */
		fprintf(stderr, "guessed commit of tag %u: %d\n", tag, cqe->res);
		return;
	}
	if (cqe->res < 0) {
		if (cqe->res != UBLK_IO_RES_ABORT)
			fprintf(stderr, "tag %u: %d\n", tag, cqe->res);
		g->aborted++;
		return;
	}
	if (off + len > g->size)
		res = -EIO;
	else if (op == UBLK_IO_OP_READ && g->ucopy)
		res = pwrite(g->fd, g->ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
	else if (op == UBLK_IO_OP_READ)
		memcpy(buf, g->ram + off, len);
	else if (op == UBLK_IO_OP_WRITE && g->ucopy)
		res = pread(g->fd, g->ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
	else if (op == UBLK_IO_OP_WRITE)
		memcpy(g->ram + off, buf, len);
	g->served++;
	queue_cmd(&g->ring, g->fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res, g->ucopy ? NULL : buf);
}

static void guess_reap(struct guess *g)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&g->ring, head, cqe) {
		guess_cqe(g, cqe);
		n++;
	}
	io_uring_cq_advance(&g->ring, n);
}

/* One guess at every tag (the server holds none now).  Returns the disk's requests in flight. */
static long guess_all(struct guess *g, const char *inflight_path)
{
	long busy = disk_inflight(inflight_path);
	unsigned guesses = GUESS_DEPTH * (g->ucopy ? 3 : 1);
	unsigned long refused = g->refused;
	char tmp[512];

	for (unsigned tag = 0; tag < GUESS_DEPTH; tag++) {
		__u64 pos = UBLKSRV_IO_BUF_OFFSET + ((__u64)tag << UBLK_TAG_OFF);
		struct io_uring_sqe *sqe;

		if (g->ucopy) {
			g->early += 2;
			if (pread(g->fd, tmp, sizeof(tmp), pos) < 0 && errno == EINVAL)
				g->refused++;
			if (pwrite(g->fd, tmp, sizeof(tmp), pos) < 0 && errno == EINVAL)
				g->refused++;
		}
		sqe = queue_cmd(&g->ring, g->fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, 4096,
				g->ucopy ? NULL : g->bufs + tag * MAXIO);
		sqe->user_data |= UD_EARLY;
		g->early++;
	}
	/* no GETEVENTS: a refused command's CQE is posted before the call returns, dispatches wait */
	io_uring_submit(&g->ring);
	guess_reap(g);
	if (busy > 0)
		g->pending += busy;
	/* a guess that got no EINVAL was taken (an accepted commit gets no answer now) */
	if (g->refused - refused < guesses) {
		g->accepted += guesses - (g->refused - refused);
		fprintf(stderr, "ACCEPTED: %lu of %u guesses (%ld requests in flight)\n",
			guesses - (g->refused - refused), guesses, busy);
	}
	return busy;
}

int guess_server(unsigned uid, size_t size, bool ucopy)
{
	struct add_args a = { .uid = uid, .how = ucopy ? "usercopy" : NULL, .depth = GUESS_DEPTH };
	static struct guess g;
	char inflight_path[64];
	double report = now() + 1;
	pthread_t t;

	g.ucopy = ucopy;
	g.size = size;
	g.fd = setup_dev(&a, size, &g.descs);
	if (g.fd < 0)
		return 1;
	snprintf(inflight_path, sizeof(inflight_path), "/sys/block/ublkb%u/inflight", dev_id);
	g.ram = calloc(1, size);
	g.bufs = aligned_alloc(4096, GUESS_DEPTH * MAXIO);
	if (io_uring_queue_init(4 * GUESS_DEPTH, &g.ring, IORING_SETUP_SQE128 |
				IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) < 0)
		return fprintf(stderr, "no DEFER_TASKRUN ring\n"), 1;
	for (unsigned tag = 0; tag < GUESS_DEPTH; tag++)
		queue_cmd(&g.ring, g.fd, UBLK_U_IO_FETCH_REQ, tag, 0, ucopy ? NULL : g.bufs + tag * MAXIO);
	io_uring_submit(&g.ring);
	pthread_create(&t, NULL, start_thread, NULL);

	while (g.aborted < GUESS_DEPTH) {
		struct __kernel_timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
		struct io_uring_cqe *cqe;

		/* the only place the dispatches run: the server learns of its requests here */
		io_uring_submit_and_wait_timeout(&g.ring, &cqe, 1, &ts, NULL);
		guess_reap(&g);
		/* the answers free the tags; the reader's next requests go to them meanwhile */
		io_uring_submit(&g.ring);
		for (int i = 0; i < 20 && guess_all(&g, inflight_path) <= 0; i++)
			;
		if (now() >= report) {
			fprintf(stderr, "guess: early=%lu refused=%lu pending=%lu accepted=%lu served=%lu\n",
				g.early, g.refused, g.pending, g.accepted, g.served);
			report = now() + 1;
		}
	}
	fprintf(stderr, "all tags aborted\n");
	return 0;
}

/*
 * The racing USER_COPY server (root's device): a RAM disk whose second thread, the hammer,
 * preads (a write's data) or pwrites (a read's data, the same the server wrote) every tag the
 * server holds, over and over, while the server commits it.  A commit that finds a copy of the
 * tag in progress must fail with EBUSY, changing nothing; the server then sends it again.
 * Were it taken, the copy would touch the pages of a request that has ended.
 *
 * The hammer never copies into a request the server was not told of: it copies tag T only
 * while open[T] is set (from the request's arrival to just before its commit), and counts
 * itself in busy[T] around the check and the copy.  The ring has DEFER_TASKRUN, so the next
 * request's dispatch to T (task work) runs only while the server waits for completions, which
 * it does only once busy[T] is 0 after clearing open[T].  Every second and at the end stderr
 * gets "ucrace: served=N ebusy=N copies=N einval=N" (requests answered, commits refused with
 * EBUSY, hammer copies done, hammer copies refused with EINVAL).
 *
 * With SLOWDEV (a block device whose server holds a read of SECTOR for seconds): first, the
 * data of the first write is pread into a fresh shared mapping of SLOWDEV at SECTOR, so that
 * the copy waits for that read in a page fault.  Meanwhile the server commits the tag, and
 * logs "commit during a pread: RES" (taken: no answer), then "pread: N" once the copy ended
 * and "commit after the pread: RES" (0: taken, as it must be now).
 */
#define UC_DEPTH 8

struct ucrace {
	struct io_uring ring;
	int fd;
	size_t size;
	char *ram;
	struct ublksrv_io_desc *descs;
	atomic_int open[UC_DEPTH], busy[UC_DEPTH];
	atomic_ulong copies, einval;
	atomic_bool stop;
	int res[UC_DEPTH];
	unsigned long served, ebusy;
	int aborted;
};

static __u64 uc_pos(unsigned tag)
{
	return UBLKSRV_IO_BUF_OFFSET + ((__u64)tag << UBLK_TAG_OFF);
}

static void *uc_hammer(void *p)
{
	struct ucrace *u = p;
	char *scratch = aligned_alloc(4096, MAXIO);
	unsigned tag = 0;

	while (!atomic_load(&u->stop)) {
		tag = (tag + 1) % UC_DEPTH;
		atomic_fetch_add(&u->busy[tag], 1);
		if (atomic_load(&u->open[tag])) {
			const struct ublksrv_io_desc *d = &u->descs[tag];
			size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
			ssize_t r;

			if (ublksrv_get_op(d) == UBLK_IO_OP_READ)
				r = pwrite(u->fd, u->ram + off, len, uc_pos(tag));
			else
				r = pread(u->fd, scratch, len, uc_pos(tag));
			if (r < 0 && errno == EINVAL)
				atomic_fetch_add(&u->einval, 1);
			else
				atomic_fetch_add(&u->copies, 1);
		}
		atomic_fetch_sub(&u->busy[tag], 1);
	}
	return NULL;
}

struct uc_slow {
	int fd;
	char *map;
	unsigned tag;
	ssize_t r;
};

static void *uc_slow_pread(void *p)
{
	struct uc_slow *s = p;

	s->r = pread(s->fd, s->map, 4096, uc_pos(s->tag));
	return NULL;
}

/*
 * A commit, and its answer if it came at once (a refusal); 1 if it was taken.  Never enters
 * the ring to wait: no dispatch may run, whose completion would be taken for the answer.
 */
static int uc_commit_now(struct ucrace *u, unsigned tag, int res)
{
	struct io_uring_cqe *cqe;
	int r;

	queue_cmd(&u->ring, u->fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res, NULL);
	io_uring_submit(&u->ring);
	if (!io_uring_cq_ready(&u->ring) || io_uring_peek_cqe(&u->ring, &cqe) ||
	    (cqe->user_data & 0xffff) != tag || cqe->res >= 0)
		return 1;
	r = cqe->res;
	io_uring_cqe_seen(&u->ring, cqe);
	return r;
}

/* The deterministic check: a commit while a pread of the same tag waits in a page fault. */
static int uc_slow_check(struct ucrace *u, unsigned tag, const char *slowdev, __u64 sector)
{
	struct uc_slow s = { .fd = u->fd, .tag = tag };
	char inflight[128];
	pthread_t t;
	int sfd, i, r;

	snprintf(inflight, sizeof(inflight), "/sys/block/%s/inflight", strrchr(slowdev, '/') + 1);
	sfd = open(slowdev, O_RDWR);
	if (sfd < 0)
		return perror(slowdev), -1;
	s.map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, sector << 9);
	if (s.map == MAP_FAILED)
		return perror("mmap slowdev"), -1;
	madvise(s.map, 4096, MADV_RANDOM);
	pthread_create(&t, NULL, uc_slow_pread, &s);
	/* the only IO on SLOWDEV now is the page fault of the copy */
	for (i = 0; i < 1000 && disk_inflight(inflight) <= 0; i++)
		usleep(10000);
	if (disk_inflight(inflight) <= 0)
		return fprintf(stderr, "no read of %s within 10 s\n", slowdev), -1;
	r = uc_commit_now(u, tag, 4096);
	if (r == 1)
		fprintf(stderr, "commit during a pread: taken\n");
	else
		fprintf(stderr, "commit during a pread: %d\n", r);
	pthread_join(t, NULL);
	fprintf(stderr, "pread: %zd\n", s.r);
	munmap(s.map, 4096);
	close(sfd);
	if (r != -EBUSY)
		return 0;
	/* the write's data for the disk, then the commit that must be taken now */
	if (pread(u->fd, u->ram + (u->descs[tag].start_sector << 9), 4096, uc_pos(tag)) != 4096)
		fprintf(stderr, "pread after: %m\n");
	r = uc_commit_now(u, tag, 4096);
	fprintf(stderr, "commit after the pread: %d\n", r == 1 ? 0 : r);
	return 0;
}

static void uc_report(struct ucrace *u)
{
	fprintf(stderr, "ucrace: served=%lu ebusy=%lu copies=%lu einval=%lu\n", u->served, u->ebusy,
		atomic_load(&u->copies), atomic_load(&u->einval));
}

int ucrace_server(size_t size, const char *slowdev, __u64 sector)
{
	struct add_args a = { .uid = 0, .how = "usercopy", .depth = UC_DEPTH };
	static struct ucrace u;
	double report = now() + 1;
	pthread_t t, h;

	u.size = size;
	u.fd = setup_dev(&a, size, &u.descs);
	if (u.fd < 0)
		return 1;
	u.ram = calloc(1, size);
	if (io_uring_queue_init(4 * UC_DEPTH, &u.ring, IORING_SETUP_SQE128 |
				IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) < 0)
		return fprintf(stderr, "no DEFER_TASKRUN ring\n"), 1;
	for (unsigned tag = 0; tag < UC_DEPTH; tag++)
		queue_cmd(&u.ring, u.fd, UBLK_U_IO_FETCH_REQ, tag, 0, NULL);
	io_uring_submit(&u.ring);
	pthread_create(&t, NULL, start_thread, NULL);
	pthread_create(&h, NULL, uc_hammer, &u);

	while (u.aborted < UC_DEPTH) {
		struct __kernel_timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0, commit[UC_DEPTH], nc = 0;

		/* the only place the dispatches run */
		io_uring_submit_and_wait_timeout(&u.ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(&u.ring, head, cqe) {
			unsigned tag = cqe->user_data & 0xffff;
			const struct ublksrv_io_desc *d = &u.descs[tag];
			size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
			unsigned op = ublksrv_get_op(d);

			n++;
			if (cqe->res == -EBUSY) {
				/* a copy was in progress: the request is still ours, commit again */
				u.ebusy++;
				commit[nc++] = tag;
				continue;
			}
			if (cqe->res < 0) {
				if (cqe->res != UBLK_IO_RES_ABORT)
					fprintf(stderr, "tag %u: %d\n", tag, cqe->res);
				u.aborted++;
				continue;
			}
			u.res[tag] = len;
			if (off + len > size)
				u.res[tag] = -EIO;
			else if (op == UBLK_IO_OP_READ)
				u.res[tag] = pwrite(u.fd, u.ram + off, len, uc_pos(tag)) == (ssize_t)len ? (int)len : -EIO;
			else if (op == UBLK_IO_OP_WRITE && slowdev && len == 4096) {
				/* alone on the disk (the test settles it first): the CQEs are its own */
				io_uring_cq_advance(&u.ring, n);
				n = 0;
				if (uc_slow_check(&u, tag, slowdev, sector) < 0)
					return 1;
				slowdev = NULL;
				break;
			} else if (op == UBLK_IO_OP_WRITE)
				u.res[tag] = pread(u.fd, u.ram + off, len, uc_pos(tag)) == (ssize_t)len ? (int)len : -EIO;
			u.served++;
			if (op == UBLK_IO_OP_READ || op == UBLK_IO_OP_WRITE)
				atomic_store(&u.open[tag], 1);
			commit[nc++] = tag;
		}
		io_uring_cq_advance(&u.ring, n);
		if (!nc)
			goto next;
		/* give the hammer time to start copies of these tags, then commit under them */
		for (double until = now() + 0.0002; now() < until;)
			;
		for (unsigned i = 0; i < nc; i++) {
			atomic_store(&u.open[commit[i]], 0);
			queue_cmd(&u.ring, u.fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, commit[i],
				  u.res[commit[i]], NULL);
		}
		/* no GETEVENTS: no dispatch runs before the hammer is off these tags */
		io_uring_submit(&u.ring);
		for (unsigned i = 0; i < nc; i++)
			while (atomic_load(&u.busy[commit[i]]))
				sched_yield();
next:
		if (now() >= report) {
			uc_report(&u);
			report = now() + 1;
		}
	}
	atomic_store(&u.stop, true);
	pthread_join(h, NULL);
	uc_report(&u);
	fprintf(stderr, "all tags aborted\n");
	return 0;
}
