/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A minimal RAM-disk ublk server for the t-kmod-*.sh tests, talking to the driver directly
 * (no ublkd): copy, get-data, user-copy or splice mode (or copy mode with each buffer mapped
 * anew), one queue of DEPTH tags; also one queue's tags served from two rings of one task
 * (tworings) or by two processes on one ring (twotasks), and recovery of a device whose server
 * died.  Usage above main().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ublk_cmd.h"
#include "ublk-test-ctrl.h"

#define DEPTH 8
#define MAXIO (512 * 1024)
/* Buffers start mid-page, as nothing forbids: the driver's copy must not assume page alignment. */
#define BUF_SKEW 100
#define TAG_BUF(tag) (bufs + (tag) * (MAXIO + 4096) + BUF_SKEW)
#define UD_GETDATA (1ULL << 32)

static int ctrl_fd;

static unsigned dev_id;

/* What the queue loops (serve()) share: set up by main() before they start. */
static int fd;
static struct ublksrv_io_desc *descs;
static char *ram, *bufs;
static size_t size;
static bool splicing, ucopy, remapping, shifting;
/* requests each tag has served (shift mode) */
static unsigned nreq[DEPTH];

/* The RAM disk lives in a file so that a recovering server finds the data. */
static char *map_ram(const char *path, size_t *size)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	struct stat st;
	char *p;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	if (*size && ftruncate(fd, *size) < 0)
		return NULL;
	if (!*size)
		*size = st.st_size;
	p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/*
 * START_DEV, or END_USER_RECOVERY when recovering: each waits in the kernel until every tag is
 * fetched, so it is sent from a thread beside the queue loop.
 */
static void *server_ready_thread(void *p)
{
	bool recover = p != NULL;
	struct ublksrv_ctrl_cmd c = { .dev_id = dev_id, .queue_id = 0xffff };
	int r;

	c.data[0] = getpid();
	r = ublk_ctrl(ctrl_fd, recover ? UBLK_U_CMD_END_USER_RECOVERY : UBLK_U_CMD_START_DEV, &c);
	fprintf(stderr, "%s: %d\n", recover ? "END_USER_RECOVERY" : "START_DEV", r);
	if (r < 0)
		exit(1);
	return NULL;
}

static void queue_cmd(struct io_uring *ring, int fd, unsigned op, unsigned tag, int res, __u64 addr, __u64 ud)
{
	struct io_uring_sqe *sqe = ublk_cmd_sqe(ring, fd, op);
	struct ublksrv_io_cmd *cmd = (void *)sqe->cmd;

	sqe->user_data = ud | tag;
	cmd->q_id = 0;
	cmd->tag = tag;
	cmd->result = res;
	cmd->addr = addr;
}

/*
 * Splice mode (USER_COPY, our driver's splice on /dev/ublkcN): a write's data goes from the
 * char device into the tag's pipe, then is read from there; a read's data is written into the
 * pipe, then spliced into the char device.  For the first write, while its pages are in the
 * pipe, commits are sent on a second ring (so that their answer is the only CQE there): with
 * the pipe full, and with the pipe drained but a tee() copy of its buffers in another pipe,
 * both must be refused with EBUSY.  Logged as "splice: commit with ...: RES" (1: taken).
 */
static int splice_pipe[DEPTH][2];
static bool splice_probed;

static int probe_commit(int fd, unsigned tag, int res)
{
	static struct io_uring probe;
	static bool ready;
	struct io_uring_cqe *cqe;
	int r;

	if (!ready && io_uring_queue_init(4, &probe, IORING_SETUP_SQE128) < 0)
		return -ENOMEM;
	ready = true;
	queue_cmd(&probe, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res, 0, 0);
	io_uring_submit(&probe);
	/* a refusal completes at once; a commit taken waits for the tag's next request */
	if (io_uring_peek_cqe(&probe, &cqe))
		return 1;
	r = cqe->res;
	io_uring_cqe_seen(&probe, cqe);
	return r;
}

static int read_full(int fd, char *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int splice_write_data(int fd, unsigned tag, __u64 pos, char *dst, size_t len)
{
	int *p = splice_pipe[tag];
	size_t moved = 0;

	while (moved < len) {
		loff_t at = pos + moved;
		ssize_t n = splice(fd, &at, p[1], NULL, len - moved, 0);

		if (n <= 0)
			return fprintf(stderr, "splice from the device: %zd %m\n", n), -EIO;
		if (!splice_probed) {
			int q[2], r;

			splice_probed = true;
			fprintf(stderr, "splice: commit with the pipe full: %d\n", probe_commit(fd, tag, len));
			if (pipe(q) < 0 || tee(p[0], q[1], n, 0) != n)
				return fprintf(stderr, "tee: %m\n"), -EIO;
			if (read_full(p[0], dst + moved, n))
				return -EIO;
			r = probe_commit(fd, tag, len);
			fprintf(stderr, "splice: commit with a tee'd copy: %d\n", r);
			/* the copy holds the same data */
			if (read_full(q[0], dst + moved, n))
				return -EIO;
			close(q[0]);
			close(q[1]);
		} else if (read_full(p[0], dst + moved, n))
			return -EIO;
		moved += n;
	}
	return len;
}

static int splice_read_data(int fd, unsigned tag, __u64 pos, const char *src, size_t len)
{
	int *p = splice_pipe[tag];
	size_t moved = 0;

	while (moved < len) {
		size_t chunk = len - moved < MAXIO ? len - moved : MAXIO;
		loff_t at = pos + moved;
		ssize_t n;

		if (write(p[1], src + moved, chunk) != (ssize_t)chunk)
			return fprintf(stderr, "write to the pipe: %m\n"), -EIO;
		for (size_t done = 0; done < chunk; done += n) {
			n = splice(p[0], NULL, fd, &at, chunk - done, 0);
			if (n <= 0)
				return fprintf(stderr, "splice into the device: %zd %m\n", n), -EIO;
		}
		moved += chunk;
	}
	return len;
}

/*
 * remap: the tag's buffer gets fresh pages at the same address (a new mapping over the old),
 * which a driver keeping the old pages pinned must notice: before a read's data goes in, and
 * after a write's came out (the tag's next write lands in the new pages).
 */
static void remap_buf(unsigned tag)
{
	char *base = bufs + tag * (MAXIO + 4096);

	if (mmap(base, MAXIO + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		 -1, 0) != base) {
		perror("remap");
		exit(1);
	}
}

/*
 * shift: copy mode on a device whose IOs are at most SHIFT_MAXIO, where a tag's buffer starts
 * page-aligned for its first two requests (enough for our driver to keep its pages pinned),
 * then BUF_SKEW bytes further into the same page: a full-size IO then spans one page more.
 * The driver must neither keep that page pinned past the device nor copy through it unwatched.
 */
#define SHIFT_MAXIO (16 * 1024)
static char *shift_buf(unsigned tag, unsigned k)
{
	return bufs + tag * (MAXIO + 4096) + (k < 2 ? 0 : BUF_SKEW);
}

/*
 * The buffer the tag's next command names (FETCH_REQ: none served yet; COMMIT_AND_FETCH_REQ:
 * after do_request()).  A commit's buffer holds its read's data, and the next request's.
 */
static char *next_buf(unsigned tag)
{
	return shifting ? shift_buf(tag, nreq[tag]) : TAG_BUF(tag);
}

/* The tag's request done on the RAM disk: the result its COMMIT_AND_FETCH_REQ carries. */
static int do_request(unsigned tag)
{
	/* a write's data is in the buffer the last command named; a read's goes to the next */
	char *buf = shifting ? shift_buf(tag, nreq[tag] + (ublksrv_get_op(&descs[tag]) == UBLK_IO_OP_READ))
			     : TAG_BUF(tag);
	const struct ublksrv_io_desc *d = &descs[tag];
	__u64 pos = UBLKSRV_IO_BUF_OFFSET + ((__u64)tag << UBLK_TAG_OFF);
	size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
	unsigned op = ublksrv_get_op(d);

	if (off + len > size)
		return -EIO;
	if (op == UBLK_IO_OP_READ) {
		if (splicing)
			return splice_read_data(fd, tag, pos, ram + off, len);
		if (ucopy)
			return pwrite(fd, ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
		if (remapping)
			remap_buf(tag);
		memcpy(buf, ram + off, len);
		return len;
	}
	if (op == UBLK_IO_OP_WRITE) {
		if (splicing)
			return splice_write_data(fd, tag, pos, ram + off, len);
		if (ucopy)
			return pread(fd, ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
		memcpy(ram + off, buf, len);
		if (remapping)
			remap_buf(tag);
		return len;
	}
	if (op == UBLK_IO_OP_DISCARD || op == UBLK_IO_OP_WRITE_ZEROES)
		memset(ram + off, 0, len);
	return 0;
}

/* FETCH_REQ for tags first, first + step, ... on the set-up ring, sent: how many. */
static int send_fetches(struct io_uring *ring, unsigned first, unsigned step)
{
	for (unsigned tag = first; tag < DEPTH; tag += step)
		queue_cmd(ring, fd, UBLK_U_IO_FETCH_REQ, tag, 0,
			  ucopy ? 0 : (__u64)(uintptr_t)next_buf(tag), 0);
	return io_uring_submit(ring);
}

/* A new ring, and FETCH_REQ for tags first, first + step, ... on it. */
static int fetch(struct io_uring *ring, unsigned first, unsigned step)
{
	if (io_uring_queue_init(2 * DEPTH, ring, IORING_SETUP_SQE128) < 0)
		return -1;
	return send_fetches(ring, first, step);
}

/*
 * Serves the tags fetched on rings[0] (tags 0, nr, 2 * nr, ...) to rings[nr - 1] until all
 * DEPTH commands are aborted, in this one task (6.1 takes a queue's commands from one task
 * only).  With one ring it waits on it; with more it polls them in turn.
 */
static void serve(struct io_uring **rings, unsigned nr)
{
	unsigned aborted = 0, served[2] = { 0 }, idle = 0;

	for (unsigned turn = 0; aborted < DEPTH; turn++) {
		struct io_uring *ring = rings[turn % nr];
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		if (nr == 1)
			io_uring_submit_and_wait(ring, 1);
		else
			io_uring_submit(ring);
		io_uring_for_each_cqe(ring, head, cqe) {
			unsigned tag = cqe->user_data & 0xffff;
			char *buf = TAG_BUF(tag);
			int res;

			n++;
			if (cqe->res == UBLK_IO_RES_NEED_GET_DATA) {
				queue_cmd(ring, fd, UBLK_U_IO_NEED_GET_DATA, tag, 0, (__u64)(uintptr_t)buf, UD_GETDATA);
				continue;
			}
			if (cqe->res < 0) {
				if (cqe->res != UBLK_IO_RES_ABORT)
					fprintf(stderr, "tag %u: %d\n", tag, cqe->res);
				aborted++;
				continue;
			}
			res = do_request(tag);
			if (shifting) {
				nreq[tag]++;
				buf = next_buf(tag);
			}
			queue_cmd(ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res,
				  ucopy ? 0 : (__u64)(uintptr_t)buf, 0);
			served[turn % nr]++;
		}
		io_uring_cq_advance(ring, n);
		/* polling: a nap once no ring had anything for a whole round */
		idle = n ? 0 : idle + 1;
		if (idle >= nr)
			usleep(50);
	}
	for (unsigned i = 0; nr > 1 && i < nr; i++)
		fprintf(stderr, "ring of tags %u+%u: %u requests\n", i, nr, served[i]);
}

/*
 * twotasks: one ring shared with a forked child, which fetches and serves the odd tags in its
 * own mm while the parent serves the even ones.  liburing's view of the ring and a lock live in
 * memory both map; each task queues and submits its commands in one locked step, so every
 * command is its own task's, and a CQE goes to the task whose tag it is through a mailbox.
 */
struct shared_ring {
	pthread_mutex_t lock;
	struct io_uring ring;
	int res[DEPTH];
	bool posted[DEPTH];
	bool refused;
};

static void fetch_shared(struct shared_ring *s, unsigned first)
{
	pthread_mutex_lock(&s->lock);
	if (send_fetches(&s->ring, first, 2) != DEPTH / 2)
		fprintf(stderr, "task of tags %u+2: FETCH_REQ not submitted\n", first);
	pthread_mutex_unlock(&s->lock);
}

/* Returns 3 once a command of the tags was refused (EINVAL: 6.1's one task per queue). */
static int serve_shared(struct shared_ring *s, unsigned first)
{
	unsigned aborted = 0, served = 0;

	while (aborted < DEPTH / 2 && !__atomic_load_n(&s->refused, __ATOMIC_RELAXED)) {
		unsigned tags[DEPTH], nr = 0, commits = 0, head, n = 0;
		int res[DEPTH];
		struct io_uring_cqe *cqe;

		pthread_mutex_lock(&s->lock);
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			s->res[cqe->user_data & 0xffff] = cqe->res;
			s->posted[cqe->user_data & 0xffff] = true;
			n++;
		}
		io_uring_cq_advance(&s->ring, n);
		for (unsigned tag = first; tag < DEPTH; tag += 2)
			if (s->posted[tag]) {
				s->posted[tag] = false;
				res[nr] = s->res[tag];
				tags[nr++] = tag;
			}
		pthread_mutex_unlock(&s->lock);
		for (unsigned i = 0; i < nr; i++) {
			if (res[i] < 0) {
				if (res[i] != UBLK_IO_RES_ABORT)
					fprintf(stderr, "task of tags %u+2: tag %u: %d\n", first, tags[i], res[i]);
				if (res[i] == -EINVAL)
					__atomic_store_n(&s->refused, true, __ATOMIC_RELAXED);
				aborted++;
				continue;
			}
			tags[commits] = tags[i];
			res[commits++] = do_request(tags[i]);
		}
		if (!commits) {
			/* the task's own task work runs when the nap ends */
			usleep(50);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		for (unsigned i = 0; i < commits; i++)
			queue_cmd(&s->ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tags[i], res[i],
				  (__u64)(uintptr_t)TAG_BUF(tags[i]), 0);
		io_uring_submit(&s->ring);
		pthread_mutex_unlock(&s->lock);
		served += commits;
	}
	fprintf(stderr, "task of tags %u+2: %u requests\n", first, served);
	return __atomic_load_n(&s->refused, __ATOMIC_RELAXED) ? 3 : 0;
}

static int serve_two_tasks(void)
{
	struct shared_ring *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_t attr;
	pthread_t t;
	pid_t child;
	int r, status;

	if (s == MAP_FAILED)
		return perror("mmap"), 1;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&s->lock, &attr);
	if (io_uring_queue_init(2 * DEPTH, &s->ring, IORING_SETUP_SQE128) < 0)
		return perror("io_uring"), 1;
	/* the parent's commands first: on 6.1 it is the queue's task, and the child's are refused */
	fetch_shared(s, 0);
	child = fork();
	if (child < 0)
		return perror("fork"), 1;
	if (child == 0) {
		fetch_shared(s, 1);
		_exit(serve_shared(s, 1));
	}
	pthread_create(&t, NULL, server_ready_thread, NULL);
	r = serve_shared(s, 0);
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status))
		return fprintf(stderr, "the child did not exit\n"), 1;
	if (r || WEXITSTATUS(status))
		return r ? r : WEXITSTATUS(status);
	fprintf(stderr, "all tags aborted\n");
	return 0;
}

/*
 * srv MODE SIZE_MB [RECOVERY RAMFILE]: add a device, print its id, serve it until its
 * commands are aborted; MODE is copy, getdata, usercopy, splice, remap (copy mode, each
 * request's buffer mapped anew, see remap_buf()), shift (copy mode, a tag's buffer moved
 * within its first page, see shift_buf()), tworings or twotasks,
 * RECOVERY none, plain, reissue or failio.  Exit 3: twotasks' second task was refused.
 * srv recover ID RAMFILE [die]: recover device ID (copy mode); "die" exits between START and
 * END_USER_RECOVERY.  srv info ID: the info commands' answers on one line.  srv del ID:
 * STOP_DEV, then DEL_DEV.
 */
int main(int argc, char **argv)
{
	const char *mode = argv[1];
	/* tworings: copy mode, the odd tags fetched and served on a second ring (same task) */
	bool tworings = !strcmp(mode, "tworings");
	/* twotasks: copy mode, the odd tags fetched and served by a forked child on the same ring */
	bool twotasks = !strcmp(mode, "twotasks");
	bool getdata = !strcmp(mode, "getdata");
	bool recover = !strcmp(mode, "recover");
	remapping = !strcmp(mode, "remap");
	shifting = !strcmp(mode, "shift");
	/* the modes serve() needs, set before info's flags are made of them */
	splicing = !strcmp(mode, "splice");
	ucopy = !strcmp(mode, "usercopy") || splicing;
	const char *rec = argc > 3 ? argv[3] : "none";
	__u64 recflags = !strcmp(rec, "plain") ? UBLK_F_USER_RECOVERY :
			 !strcmp(rec, "reissue") ? UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE :
			 !strcmp(rec, "failio") ? UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_FAIL_IO : 0;
	struct ublksrv_ctrl_cmd c = { .dev_id = ~0U, .queue_id = 0xffff };
	struct ublksrv_ctrl_dev_info info = {
		/* the header's dev_id and the info's must be the same (upstream checks) */
		.dev_id = ~0U,
		.nr_hw_queues = 1, .queue_depth = DEPTH, .max_io_buf_bytes = shifting ? SHIFT_MAXIO : MAXIO,
		.flags = UBLK_F_CMD_IOCTL_ENCODE | (ucopy ? UBLK_F_USER_COPY : 0) |
			 (getdata ? UBLK_F_NEED_GET_DATA : 0) | recflags,
	};
	struct ublk_params par = { .len = sizeof(par), .types = UBLK_PARAM_TYPE_BASIC,
		.basic = { .logical_bs_shift = 9, .physical_bs_shift = 12, .io_min_shift = 9,
			   .io_opt_shift = 12, .max_sectors = (shifting ? SHIFT_MAXIO : MAXIO) >> 9 } };
	struct io_uring ring, ring2, *rings[] = { &ring, &ring2 };
	char path[64];
	pthread_t t;
	int r;

	size = recover ? 0 : (size_t)atoi(argv[2]) << 20;

	if (argc > 2 && !strcmp(argv[1], "info")) {
		/* GET_DEV_INFO (legacy opcode), GET_DEV_INFO2 (path first), GET_PARAMS, affinity */
		struct ublksrv_ctrl_dev_info i1 = {0}, i2 = {0};
		struct { char path[16]; struct ublksrv_ctrl_dev_info info; } __attribute__((packed)) b = {0};
		unsigned char mask[128] = {0};
		int n, bits = 0;

		ctrl_fd = open("/dev/ublk-control", O_RDWR);
		c.dev_id = atoi(argv[2]);
		c.addr = (__u64)(uintptr_t)&i1;
		c.len = sizeof(i1);
		if ((r = ublk_ctrl(ctrl_fd, UBLK_CMD_GET_DEV_INFO, &c)) < 0)
			return fprintf(stderr, "GET_DEV_INFO: %d\n", r), 1;
		n = snprintf(b.path, sizeof(b.path), "/dev/ublkc%u", c.dev_id);
		c.dev_path_len = n;
		c.addr = (__u64)(uintptr_t)&b;
		c.len = n + sizeof(i2);
		memmove(b.path + n, &i2, 0);
		if ((r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c)) < 0)
			return fprintf(stderr, "GET_DEV_INFO2: %d\n", r), 1;
		memcpy(&i2, b.path + n, sizeof(i2));
		c.dev_path_len = 0;
		par.len = sizeof(par);
		par.types = 0;
		c.addr = (__u64)(uintptr_t)&par;
		c.len = sizeof(par);
		if ((r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c)) < 0)
			return fprintf(stderr, "GET_PARAMS: %d\n", r), 1;
		/* as upstream servers send it: the queue in data[0], queue_id -1 */
		c.data[0] = 0;
		c.addr = (__u64)(uintptr_t)mask;
		c.len = sizeof(mask);
		if ((r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_QUEUE_AFFINITY, &c)) < 0)
			return fprintf(stderr, "GET_QUEUE_AFFINITY: %d\n", r), 1;
		for (unsigned k = 0; k < sizeof(mask) * 8; k++)
			bits += !!(mask[k / 8] & (1 << (k % 8)));
		printf("id=%u/%u state=%u/%u queues=%u depth=%u sectors=%llu disk=%u:%u char=%u:%u cpus=%d\n",
		       i1.dev_id, i2.dev_id, i1.state, i2.state, i2.nr_hw_queues, i2.queue_depth,
		       (unsigned long long)par.basic.dev_sectors, par.devt.disk_major, par.devt.disk_minor,
		       par.devt.char_major, par.devt.char_minor, bits);
		return 0;
	}
	if (argc > 2 && !strcmp(argv[1], "del")) {
		ctrl_fd = open("/dev/ublk-control", O_RDWR);
		c.dev_id = atoi(argv[2]);
		r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_STOP_DEV, &c);
		fprintf(stderr, "STOP_DEV: %d\n", r);
		r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_DEL_DEV, &c);
		fprintf(stderr, "DEL_DEV: %d\n", r);
		return r < 0;
	}
	ctrl_fd = open("/dev/ublk-control", O_RDWR);
	if (ctrl_fd < 0)
		return perror("ublk-control"), 1;
	if (recover) {
		/* EBUSY until the old server's char device is released */
		dev_id = atoi(argv[2]);
		c.dev_id = dev_id;
		for (int i = 0; (r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_USER_RECOVERY, &c)) == -EBUSY &&
				i < 1000; i++)
			usleep(10000);
		fprintf(stderr, "START_USER_RECOVERY: %d\n", r);
		if (r < 0)
			return 1;
		goto serve;
	}
	c.addr = (__u64)(uintptr_t)&info;
	c.len = sizeof(info);
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_ADD_DEV, &c);
	if (r < 0)
		return fprintf(stderr, "ADD_DEV: %d\n", r), 1;
	dev_id = info.dev_id;
	par.basic.dev_sectors = size >> 9;
	c = (struct ublksrv_ctrl_cmd){ .dev_id = dev_id, .queue_id = 0xffff,
		.addr = (__u64)(uintptr_t)&par, .len = sizeof(par) };
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_SET_PARAMS, &c);
	if (r < 0)
		return fprintf(stderr, "SET_PARAMS: %d\n", r), 1;
	printf("%u\n", dev_id);
	fflush(stdout);

serve:
	snprintf(path, sizeof(path), "/dev/ublkc%u", dev_id);
	for (int i = 0; (fd = open(path, O_RDWR)) < 0 && i < 500; i++)
		usleep(10000);
	if (fd < 0)
		return perror(path), 1;
	descs = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, UBLKSRV_CMD_BUF_OFFSET);
	if (descs == MAP_FAILED)
		return perror("mmap"), 1;
	if (argc > (recover ? 3 : 4))
		ram = map_ram(argv[recover ? 3 : 4], &size);
	else
		ram = twotasks ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) :
				 calloc(1, size);
	if (!ram || ram == MAP_FAILED)
		return perror("ram"), 1;
	bufs = aligned_alloc(4096, DEPTH * (MAXIO + 4096));
	if (twotasks)
		return serve_two_tasks();
	for (unsigned tag = 0; splicing && tag < DEPTH; tag++)
		if (pipe(splice_pipe[tag]) < 0 || fcntl(splice_pipe[tag][0], F_SETPIPE_SZ, MAXIO) < 0)
			return perror("pipe"), 1;
	if (fetch(&ring, 0, tworings ? 2 : 1) < 0 || (tworings && fetch(&ring2, 1, 2) < 0))
		return 1;
	if (recover && argc > 4 && !strcmp(argv[4], "die")) {
		fprintf(stderr, "exiting before END_USER_RECOVERY\n");
		_exit(0);
	}
	pthread_create(&t, NULL, server_ready_thread, recover ? &recover : NULL);

	serve(rings, tworings ? 2 : 1);
	fprintf(stderr, "all tags aborted\n");
	io_uring_queue_exit(&ring);
	if (tworings)
		io_uring_queue_exit(&ring2);
	munmap(descs, 4096);
	close(fd);
	return 0;
}
