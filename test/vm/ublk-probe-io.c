/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublk-probe's IO side: what a server does on /dev/ublkcN, sent as upstream servers send it
 * (io commands in the SQE's command area, the descriptor array mapped read-only), with good
 * and bad input:
 *  - on PROBE_ID (never started): opening the node twice, mmap of each queue's descriptors
 *    with good and bad offsets, sizes and protections, and IO commands naming a bad queue, tag
 *    or buffer, an unknown opcode, a commit of a tag never fetched, a fetch of a tag fetched;
 *  - a device served by a thread here (NEED_GET_DATA): START_DEV, a read, a write (asked for
 *    its buffer first), a flush, each descriptor as the server sees it, the data both ways,
 *    then STOP_DEV with the fetches outstanding;
 *  - a device with USER_RECOVERY: END_USER_RECOVERY of a live device, its server leaving,
 *    START_USER_RECOVERY, a new server, END_USER_RECOVERY, IO again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ublk-probe.h"
#include "ublk-test-ctrl.h"

#define IO_DEPTH 4
#define IO_BUF (64 * 1024)
#define READ_SECTOR 1024		/* what the probe reads; the device has 2048 sectors */
#define WRITE_SECTOR (READ_SECTOR + 8)
#define READ_BYTE 0x5a			/* the server fills reads with it */
#define WRITE_BYTE 0xc3			/* the probe writes it */

#define UD(q, tag) (((__u64)(q) << 16) | (tag))

static size_t round_page(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

/* upstream's layout: each queue's descriptors at a stride of the largest queue's array */
static off_t iod_offset(unsigned q)
{
	return UBLKSRV_CMD_BUF_OFFSET + (off_t)q * round_page(UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc));
}

static int io_submit(struct io_uring *ring, int ch, __u32 op, unsigned q, unsigned tag, __u64 addr, int result)
{
	struct io_uring_sqe *sqe = ublk_cmd_sqe(ring, ch, op);
	struct ublksrv_io_cmd *c;

	if (!sqe)
		return -EBUSY;
	c = (struct ublksrv_io_cmd *)sqe->cmd;
	c->q_id = q;
	c->tag = tag;
	c->result = result;
	c->addr = addr;
	sqe->user_data = UD(q, tag);
	return io_uring_submit(ring);
}

/* The command's result, or 1: still pending after 300 ms (a fetch waiting for a request). */
static int io_cmd(struct io_uring *ring, int ch, __u32 op, unsigned q, unsigned tag, __u64 addr)
{
	struct __kernel_timespec ts = { .tv_nsec = 300 * 1000 * 1000 };
	struct io_uring_cqe *cqe;
	int r = io_submit(ring, ch, op, q, tag, addr, 0);

	if (r < 0)
		return r;
	r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (r == -ETIME)
		return 1;
	if (r < 0)
		return r;
	r = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return r;
}

static void io_row(const char *name, int r)
{
	if (r == 1)
		row(name, 0, "queued");
	else
		row(name, r, NULL);
}

static int map_row(const char *name, int ch, size_t len, int prot, off_t off)
{
	void *p = mmap(NULL, len, prot, MAP_SHARED, ch, off);
	int r = p == MAP_FAILED ? -errno : 0;

	row(name, r, NULL);
	if (!r)
		munmap(p, len);
	return r;
}

static void probe_io_bad(void)
{
	size_t qsz = round_page(64 * sizeof(struct ublksrv_io_desc));
	static unsigned char buf[IO_BUF];
	struct ublksrv_ctrl_dev_info i;
	struct ublksrv_ctrl_cmd c;
	struct io_uring ring;
	char path[32];
	int ch, ch2, r;

	snprintf(path, sizeof(path), "/dev/ublkc%u", PROBE_ID);
	ch = open(path, O_RDWR);
	row("ch open", ch < 0 ? -errno : 0, NULL);
	if (ch < 0)
		return;
	ch2 = open(path, O_RDWR);
	row("ch open twice", ch2 < 0 ? -errno : 0, NULL);
	if (ch2 >= 0)
		close(ch2);

	map_row("mmap q0", ch, qsz, PROT_READ, iod_offset(0));
	map_row("mmap q3", ch, qsz, PROT_READ, iod_offset(3));
	map_row("mmap q4", ch, qsz, PROT_READ, iod_offset(4));
	map_row("mmap q0 twice the size", ch, 2 * qsz, PROT_READ, iod_offset(0));
	map_row("mmap q0 writable", ch, qsz, PROT_READ | PROT_WRITE, iod_offset(0));
	map_row("mmap q4 writable", ch, qsz, PROT_READ | PROT_WRITE, iod_offset(4));
	map_row("mmap q0 second page", ch, qsz, PROT_READ, iod_offset(0) + (off_t)qsz);
	map_row("mmap io buffer offset", ch, qsz, PROT_READ, UBLKSRV_IO_BUF_OFFSET);

	if (io_uring_queue_init(128, &ring, IORING_SETUP_SQE128) < 0) {
		close(ch);
		return;
	}
	io_row("FETCH q=4", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 4, 0, (__u64)(uintptr_t)buf));
	io_row("FETCH tag=64", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, 64, (__u64)(uintptr_t)buf));
	io_row("FETCH addr=0", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, 0, 0));
	io_row("IO op type 'v'", io_cmd(&ring, ch, _IOWR('v', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd), 0, 0,
				       (__u64)(uintptr_t)buf));
	io_row("IO op nr 0x30", io_cmd(&ring, ch, _IOWR('u', 0x30, struct ublksrv_io_cmd), 0, 0, (__u64)(uintptr_t)buf));
	io_row("COMMIT_AND_FETCH never fetched", io_cmd(&ring, ch, UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0, 1,
						       (__u64)(uintptr_t)buf));
	io_row("NEED_GET_DATA not asked", io_cmd(&ring, ch, UBLK_U_IO_NEED_GET_DATA, 0, 2, (__u64)(uintptr_t)buf));
	io_row("FETCH q0 tag0", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, 0, (__u64)(uintptr_t)buf));
	io_row("FETCH q0 tag0 again", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, 0, (__u64)(uintptr_t)buf));
	io_row("COMMIT_AND_FETCH fetched, no request", io_cmd(&ring, ch, UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0, 0,
							      (__u64)(uintptr_t)buf));
	io_row("NEED_GET_DATA fetched", io_cmd(&ring, ch, UBLK_U_IO_NEED_GET_DATA, 0, 0, (__u64)(uintptr_t)buf));
	/*
	 * The rest of q0, so that the queue is set up: 6.12's in-tree driver WARNs when a server
	 * leaves a queue partly fetched (its cancel finds no queue task), which the kernel log
	 * check would take for a failure.
	 */
	for (unsigned t = 1; t < 64; t++)
		io_submit(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, t, (__u64)(uintptr_t)buf, 0);
	{
		struct __kernel_timespec ts = { .tv_nsec = 300 * 1000 * 1000 };
		struct io_uring_cqe *cqe;

		r = 63;
		while (!io_uring_wait_cqe_timeout(&ring, &cqe, &ts)) {
			r--;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	row("FETCH q0 tags 1-63", 0, "queued=%d", r);
	io_row("FETCH q0 set up", io_cmd(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, 5, (__u64)(uintptr_t)buf));
	/* the server leaves with its fetches outstanding, before the device ever started */
	io_uring_queue_exit(&ring);
	close(ch);
	memset(&i, 0, sizeof(i));
	c = cmd(PROBE_ID, &i, sizeof(i));
	for (int k = 0; k < 50; k++) {
		r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c);
		if (r || i.state != UBLK_S_DEV_LIVE)
			break;
		usleep(20000);
	}
	row("GET_DEV_INFO after the server left", r, "state=%u", i.state);
}

/* ---- a server thread for one queue ---- */

struct server {
	unsigned id;
	pthread_t thread;
	atomic_bool fetched, stop;
	int setup_result;
	/* what it saw, read once it is joined (or, for the counters, while it runs) */
	struct ublksrv_io_desc read_iod, write_iod;
	atomic_uint reads, writes, flushes, need_get_data, aborts, others;
	bool write_data_ok;
};

static void *serve(void *p)
{
	struct server *s = p;
	size_t qsz = round_page(IO_DEPTH * sizeof(struct ublksrv_io_desc));
	static unsigned char bufs[2][IO_DEPTH][IO_BUF];
	unsigned char (*buf)[IO_BUF] = bufs[s->id & 1];
	const struct ublksrv_io_desc *iods;
	struct io_uring ring;
	char path[32];
	time_t end = time(NULL) + 60;
	int ch;

	snprintf(path, sizeof(path), "/dev/ublkc%u", s->id);
	ch = open(path, O_RDWR);
	if (ch < 0) {
		s->setup_result = -errno;
		s->fetched = true;
		return NULL;
	}
	iods = mmap(NULL, qsz, PROT_READ, MAP_SHARED | MAP_POPULATE, ch, iod_offset(0));
	if (iods == MAP_FAILED || io_uring_queue_init(2 * IO_DEPTH, &ring, IORING_SETUP_SQE128) < 0) {
		s->setup_result = -EIO;
		s->fetched = true;
		close(ch);
		return NULL;
	}
	for (unsigned t = 0; t < IO_DEPTH; t++)
		io_submit(&ring, ch, UBLK_U_IO_FETCH_REQ, 0, t, (__u64)(uintptr_t)buf[t], 0);
	s->fetched = true;

	while (!s->stop && time(NULL) < end) {
		struct __kernel_timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		const struct ublksrv_io_desc *iod;
		unsigned tag;
		int res, result = 0;

		if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts))
			continue;
		tag = cqe->user_data & 0xffff;
		res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		if (res == UBLK_IO_RES_ABORT) {
			s->aborts++;
			continue;
		}
		if (res == UBLK_IO_RES_NEED_GET_DATA) {
			s->need_get_data++;
			io_submit(&ring, ch, UBLK_U_IO_NEED_GET_DATA, 0, tag, (__u64)(uintptr_t)buf[tag], 0);
			continue;
		}
		if (res != UBLK_IO_RES_OK || tag >= IO_DEPTH) {
			s->others++;
			continue;
		}
		iod = &iods[tag];
		switch (ublksrv_get_op(iod)) {
		case UBLK_IO_OP_READ:
			s->reads++;
			if (iod->start_sector == READ_SECTOR)
				s->read_iod = *iod;
			result = (int)iod->nr_sectors << 9;
			memset(buf[tag], READ_BYTE, (size_t)result);
			break;
		case UBLK_IO_OP_WRITE:
			s->writes++;
			result = (int)iod->nr_sectors << 9;
			if (iod->start_sector == WRITE_SECTOR) {
				s->write_iod = *iod;
				s->write_data_ok = true;
				for (int k = 0; k < result; k++)
					s->write_data_ok &= buf[tag][k] == WRITE_BYTE;
			}
			break;
		case UBLK_IO_OP_FLUSH:
			s->flushes++;
			break;
		default:
			s->others++;
			result = -EOPNOTSUPP;
		}
		io_submit(&ring, ch, UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0, tag, (__u64)(uintptr_t)buf[tag], result);
	}
	io_uring_queue_exit(&ring);
	munmap((void *)iods, qsz);
	close(ch);
	return NULL;
}

static int server_start(struct server *s, unsigned id)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	if (pthread_create(&s->thread, NULL, serve, s))
		return -EAGAIN;
	while (!s->fetched)
		usleep(1000);
	if (s->setup_result) {
		pthread_join(s->thread, NULL);
		return s->setup_result;
	}
	return 0;
}

static void server_stop(struct server *s)
{
	s->stop = true;
	pthread_join(s->thread, NULL);
}

static const char *iod_str(const struct ublksrv_io_desc *iod)
{
	static char b[96];

	snprintf(b, sizeof(b), "op=%u flags=%#x sectors=%u start=%llu", ublksrv_get_op(iod),
		 ublksrv_get_flags(iod), iod->nr_sectors, (unsigned long long)iod->start_sector);
	return b;
}

static int add_served_dev(const char *name, unsigned id, __u64 flags)
{
	struct ublksrv_ctrl_dev_info i = dev_info(id, 1, IO_DEPTH, UBLK_F_CMD_IOCTL_ENCODE | flags);
	struct ublk_params p = good_params();
	struct ublksrv_ctrl_cmd c;
	int r;

	i.max_io_buf_bytes = IO_BUF;
	r = add_dev(name, &i, id, true);
	if (r)
		return r;
	p.basic.max_sectors = IO_BUF >> 9;
	p.basic.dev_sectors = 2048;
	c = cmd(id, &p, sizeof(p));
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_SET_PARAMS, &c);
	if (r)
		del_dev(NULL, id);
	return r;
}

static int start_dev(const char *name, unsigned id, __u32 op)
{
	struct ublksrv_ctrl_cmd c = cmd(id, NULL, 0);
	int r;

	c.data[0] = getpid();
	r = ublk_ctrl(ctrl_fd, op, &c);
	row(name, r, NULL);
	return r;
}

static int dev_state(unsigned id, unsigned *pid_ours)
{
	struct ublksrv_ctrl_dev_info i;
	struct ublksrv_ctrl_cmd c = cmd(id, &i, sizeof(i));
	int r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c);

	if (pid_ours)
		*pid_ours = i.ublksrv_pid == getpid();
	return r ? r : (int)i.state;
}

/* O_DIRECT read of READ_SECTOR: the number of bytes that came back as READ_BYTE, or -errno */
static int read_back(unsigned id)
{
	char path[32];
	void *b;
	int fd, r;

	snprintf(path, sizeof(path), "/dev/ublkb%u", id);
	for (int k = 0; k < 500 && access(path, F_OK); k++)
		usleep(10000);
	fd = open(path, O_RDONLY | O_DIRECT);
	if (fd < 0)
		return -errno;
	if (posix_memalign(&b, 4096, 4096)) {
		close(fd);
		return -ENOMEM;
	}
	r = (int)pread(fd, b, 4096, (off_t)READ_SECTOR << 9);
	if (r < 0)
		r = -errno;
	else {
		int same = 0;

		for (int k = 0; k < r; k++)
			same += ((unsigned char *)b)[k] == READ_BYTE;
		r = same;
	}
	free(b);
	close(fd);
	return r;
}

static int write_sync(unsigned id)
{
	char path[32];
	void *b;
	int fd, r;

	snprintf(path, sizeof(path), "/dev/ublkb%u", id);
	fd = open(path, O_WRONLY | O_DIRECT);
	if (fd < 0)
		return -errno;
	if (posix_memalign(&b, 4096, 4096)) {
		close(fd);
		return -ENOMEM;
	}
	memset(b, WRITE_BYTE, 4096);
	r = (int)pwrite(fd, b, 4096, (off_t)WRITE_SECTOR << 9);
	r = r < 0 ? -errno : fdatasync(fd) ? -errno : r;
	free(b);
	close(fd);
	return r;
}

static void probe_io_served(void)
{
	unsigned id = PROBE_ID + 3;
	struct server s;
	int r;

	if (add_served_dev("ADD_DEV (served, NEED_GET_DATA)", id, UBLK_F_NEED_GET_DATA))
		return;
	r = server_start(&s, id);
	if (r) {
		row("server setup", r, NULL);
		del_dev(NULL, id);
		return;
	}
	if (start_dev("START_DEV served", id, UBLK_U_CMD_START_DEV) == 0) {
		r = read_back(id);
		row("IO read", r < 0 ? r : 0, "bytes from the server=%d %s", r, iod_str(&s.read_iod));
		r = write_sync(id);
		row("IO write + fdatasync", r < 0 ? r : 0, "need_get_data=%s data=%s flushes=%s %s",
		    s.need_get_data ? "yes" : "no", s.write_data_ok ? "same" : "differs",
		    s.flushes ? "yes" : "no", iod_str(&s.write_iod));
		row("GET_DEV_INFO served", 0, "state=%d", dev_state(id, NULL));
		start_dev("STOP_DEV served", id, UBLK_U_CMD_STOP_DEV);
		for (int k = 0; k < 100 && s.aborts < IO_DEPTH; k++)
			usleep(20000);
		row("fetches after STOP_DEV", 0, "aborted=%u of %u", s.aborts, IO_DEPTH);
	}
	server_stop(&s);
	row("unexpected completions", 0, "%u", s.others);
	del_dev("DEL_DEV served", id);
}

static void probe_io_recovery(void)
{
	unsigned id = PROBE_ID + 4, ours = 0;
	struct server s;
	int st = -1;

	if (add_served_dev("ADD_DEV (served, USER_RECOVERY)", id, UBLK_F_USER_RECOVERY))
		return;
	if (server_start(&s, id)) {
		del_dev(NULL, id);
		return;
	}
	if (start_dev("START_DEV recovery", id, UBLK_U_CMD_START_DEV)) {
		server_stop(&s);
		del_dev(NULL, id);
		return;
	}
	start_dev("END_USER_RECOVERY live dev", id, UBLK_U_CMD_END_USER_RECOVERY);
	start_dev("START_USER_RECOVERY live dev", id, UBLK_U_CMD_START_USER_RECOVERY);
	/* the server goes: its ring and char device are closed, its fetches cancelled */
	server_stop(&s);
	for (int k = 0; k < 250; k++) {
		st = dev_state(id, NULL);
		if (st == UBLK_S_DEV_QUIESCED || st < 0)
			break;
		usleep(20000);
	}
	row("GET_DEV_INFO server gone", st < 0 ? st : 0, "state=%d", st);
	start_dev("START_USER_RECOVERY", id, UBLK_U_CMD_START_USER_RECOVERY);
	start_dev("START_USER_RECOVERY again", id, UBLK_U_CMD_START_USER_RECOVERY);
	if (server_start(&s, id) == 0) {
		int r;

		start_dev("END_USER_RECOVERY", id, UBLK_U_CMD_END_USER_RECOVERY);
		st = dev_state(id, &ours);
		row("GET_DEV_INFO recovered", st < 0 ? st : 0, "state=%d pid=%s", st, ours ? "ours" : "other");
		r = read_back(id);
		row("IO read recovered", r < 0 ? r : 0, "bytes from the server=%d", r);
		start_dev("STOP_DEV recovered", id, UBLK_U_CMD_STOP_DEV);
		server_stop(&s);
	}
	del_dev("DEL_DEV recovery", id);
}

void probe_io(void)
{
	probe_io_bad();
	probe_io_served();
	probe_io_recovery();
}
