/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Control commands as another user, for t-kmod-perm's checks of unprivileged devices
 * (UBLK_F_UNPRIVILEGED_DEV) in our ublk driver.  /dev/ublk-control is opened as root,
 * then the process drops to uid=gid=UID (0: stays root) before it sends anything.
 *
 *   kmod-perm add UID [noflag|usercopy|getdata|negotiate]
 *                                        ADD_DEV; prints "ID FLAGS OWNER_UID" or the -errno
 *   kmod-perm cmd UID OP ID [PATH]       OP on device ID (info info2 params setparams stop del),
 *                                        PATH first in the buffer if given; prints 0 or -errno
 *   kmod-perm stall UID MB SECTOR SECS [getdata]
 *                                        a RAM-disk server (as root) for a device added as UID
 *                                        (unprivileged unless 0); a read at SECTOR is answered
 *                                        only SECS seconds later.  getdata: NEED_GET_DATA, and a
 *                                        write at SECTOR is what waits: its NEED_GET_DATA is sent
 *                                        SECS seconds late.  Prints the id, serves until aborted.
 *   kmod-perm ucrace MB [SLOWDEV SECTOR] a USER_COPY RAM-disk server for root whose second thread
 *                                        copies the tags it holds while it commits them: see
 *                                        ucrace_server() in kmod-perm-race.c.
 *   kmod-perm guess UID MB [usercopy]    a RAM-disk server (as root) for a device added as UID
 *                                        (usercopy: UID 0, USER_COPY) that also answers tags it
 *                                        was not given: see guess_server() in kmod-perm-race.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "ublk_cmd.h"
#include "ublk-test-ctrl.h"
#include "kmod-perm.h"

static int ctrl_fd;
static const char *dev_path;	/* prefixed to the buffer of every device command */

/* Control command OP with LEN bytes of DATA (read back after), dev_path first if set. */
static int ctrl(unsigned op, struct ublksrv_ctrl_cmd *c, void *data, unsigned len)
{
	char buf[4096 + 512];
	size_t n = dev_path ? strlen(dev_path) : 0;
	int r;

	if (n + len > sizeof(buf))
		return -E2BIG;
	memcpy(buf, dev_path ? dev_path : "", n);
	if (len)
		memcpy(buf + n, data, len);
	c->dev_path_len = n;
	c->addr = (__u64)(uintptr_t)(n || len ? buf : NULL);
	c->len = n + len;
	r = ublk_ctrl(ctrl_fd, op, c);
	if (len)
		memcpy(data, buf + n, len);
	return r;
}

static void become(unsigned uid)
{
	if (!uid)
		return;
	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
		perror("setresuid");
		exit(2);
	}
}

static int add_dev(const char *how, unsigned depth, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd c = { .dev_id = ~0U, .queue_id = 0xffff };

	*info = (struct ublksrv_ctrl_dev_info){
		.nr_hw_queues = 1, .queue_depth = depth, .max_io_buf_bytes = 512 * 1024,
		.dev_id = ~0U, .flags = UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_UNPRIVILEGED_DEV,
	};
	if (how && !strcmp(how, "noflag"))
		info->flags &= ~UBLK_F_UNPRIVILEGED_DEV;
	if (how && !strcmp(how, "usercopy"))
		info->flags |= UBLK_F_USER_COPY;
	if (how && !strcmp(how, "getdata"))
		info->flags |= UBLK_F_NEED_GET_DATA;
	/* flags of newer kernels (AUTO_BUF_REG, PER_IO_DAEMON, bit 40) and USER_COPY with
	 * NEED_GET_DATA, but not CMD_IOCTL_ENCODE: what comes back is the negotiation */
	if (how && !strcmp(how, "negotiate"))
		info->flags = UBLK_F_USER_COPY | UBLK_F_NEED_GET_DATA | UBLK_F_AUTO_BUF_REG |
			      1ULL << 13 | 1ULL << 40;
	return ctrl(UBLK_U_CMD_ADD_DEV, &c, info, sizeof(*info));
}

static struct ublk_params params(size_t bytes)
{
	return (struct ublk_params){ .len = sizeof(struct ublk_params), .types = UBLK_PARAM_TYPE_BASIC,
		.basic = { .logical_bs_shift = 9, .physical_bs_shift = 12, .io_min_shift = 9,
			   .io_opt_shift = 12, .max_sectors = 1024, .dev_sectors = bytes >> 9 } };
}

static int dev_cmd(const char *op, unsigned id)
{
	struct ublksrv_ctrl_cmd c = { .dev_id = id, .queue_id = 0xffff };
	struct ublksrv_ctrl_dev_info info = { 0 };
	struct ublk_params p = params(16 << 20);

	if (!strcmp(op, "info"))
		return ctrl(UBLK_U_CMD_GET_DEV_INFO, &c, &info, sizeof(info));
	if (!strcmp(op, "info2"))
		return ctrl(UBLK_U_CMD_GET_DEV_INFO2, &c, &info, sizeof(info));
	if (!strcmp(op, "params"))
		return ctrl(UBLK_U_CMD_GET_PARAMS, &c, &p, sizeof(p));
	if (!strcmp(op, "setparams"))
		return ctrl(UBLK_U_CMD_SET_PARAMS, &c, &p, sizeof(p));
	/* limits the block layer would WARN about at START_DEV: SET_PARAMS must refuse them */
	if (!strcmp(op, "setparams-small-io")) {
		p.basic.max_sectors = 4;
		return ctrl(UBLK_U_CMD_SET_PARAMS, &c, &p, sizeof(p));
	}
	if (!strcmp(op, "setparams-dma-8k")) {
		p.types |= UBLK_PARAM_TYPE_DMA_ALIGN;
		p.dma.alignment = 8191;
		return ctrl(UBLK_U_CMD_SET_PARAMS, &c, &p, sizeof(p));
	}
	if (!strcmp(op, "stop"))
		return ctrl(UBLK_U_CMD_STOP_DEV, &c, NULL, 0);
	if (!strcmp(op, "del"))
		return ctrl(UBLK_U_CMD_DEL_DEV, &c, NULL, 0);
	return -ENOSYS;
}

/* The stalling server */
#define DEPTH 4

unsigned dev_id;

void *start_thread(void *p)
{
	struct ublksrv_ctrl_cmd c = { .dev_id = dev_id, .queue_id = 0xffff };
	int r;

	(void)p;
	c.data[0] = getpid();
	r = ctrl(UBLK_U_CMD_START_DEV, &c, NULL, 0);
	fprintf(stderr, "START_DEV: %d\n", r);
	if (r < 0)
		exit(1);
	return NULL;
}

struct io_uring_sqe *queue_cmd(struct io_uring *ring, int fd, unsigned op, unsigned tag,
			       int res, void *buf)
{
	struct io_uring_sqe *sqe = ublk_cmd_sqe(ring, fd, op);
	struct ublksrv_io_cmd *cmd = (void *)sqe->cmd;

	sqe->user_data = tag;
	cmd->q_id = 0;
	cmd->tag = tag;
	cmd->result = res;
	cmd->addr = (__u64)(uintptr_t)buf;
	return sqe;
}

double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The device is added by a thread that is UID (as ublkd does); everything else runs as root. */
static void *add_thread(void *p)
{
	struct add_args *a = p;

	/* raw syscalls: glibc's would change every thread's ids */
	if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setresgid, a->uid, a->uid, a->uid) ||
	    syscall(SYS_setresuid, a->uid, a->uid, a->uid)) {
		a->r = -errno;
		return NULL;
	}
	a->r = add_dev(a->how, a->depth, &a->info);
	return NULL;
}

/*
 * Adds a device as a->uid (a->how, a->depth), sets its parameters, prints its id, opens its char
 * device and maps the descriptors.  Returns the char device's fd or -1.
 */
int setup_dev(struct add_args *a, size_t size, struct ublksrv_io_desc **descs)
{
	static char path[64];
	struct ublksrv_ctrl_cmd c;
	struct ublk_params p = params(size);
	pthread_t t;
	int fd, r;

	pthread_create(&t, NULL, add_thread, a);
	pthread_join(t, NULL);
	if (a->r < 0)
		return fprintf(stderr, "ADD_DEV: %d\n", a->r), -1;
	dev_id = a->info.dev_id;
	snprintf(path, sizeof(path), "/dev/ublkc%u", dev_id);
	/* only an unprivileged device's commands carry the path (perm.c) */
	if (a->info.flags & UBLK_F_UNPRIVILEGED_DEV)
		dev_path = path;
	c = (struct ublksrv_ctrl_cmd){ .dev_id = dev_id, .queue_id = 0xffff };
	for (int i = 0; (r = ctrl(UBLK_U_CMD_SET_PARAMS, &c, &p, sizeof(p))) == -ENOENT && i < 500; i++)
		usleep(10000);	/* the node is devtmpfs's to make */
	if (r < 0)
		return fprintf(stderr, "SET_PARAMS: %d\n", r), -1;
	printf("%u\n", dev_id);
	fflush(stdout);

	for (int i = 0; (fd = open(path, O_RDWR)) < 0 && errno == ENOENT && i < 500; i++)
		usleep(10000);
	if (fd < 0)
		return perror(path), -1;
	*descs = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, UBLKSRV_CMD_BUF_OFFSET);
	if (*descs == MAP_FAILED)
		return perror("mmap"), -1;
	return fd;
}

#define UD_GETDATA (1ULL << 32)
#define UD_LATE (1ULL << 33)

/*
 * With getdata, a write at stall_sector gets its NEED_GET_DATA hold seconds late; the driver
 * must refuse it with ETIMEDOUT once the write timed out, and the commit that follows gives
 * the tag back.  Logged: "late NEED_GET_DATA of tag T: RES".
 */
static int stall_server(unsigned uid, size_t size, __u64 stall_sector, int hold, bool getdata)
{
	struct add_args a = { .uid = uid, .depth = DEPTH, .how = getdata ? "getdata" : NULL };
	struct ublksrv_io_desc *descs;
	struct io_uring ring;
	char *ram, *bufs;
	double due[DEPTH] = { 0 };
	int fd, aborted = 0;
	pthread_t t;

	fd = setup_dev(&a, size, &descs);
	if (fd < 0)
		return 1;
	ram = calloc(1, size);
	bufs = aligned_alloc(4096, DEPTH * MAXIO);
	if (io_uring_queue_init(2 * DEPTH, &ring, IORING_SETUP_SQE128) < 0)
		return 1;
	for (unsigned tag = 0; tag < DEPTH; tag++)
		queue_cmd(&ring, fd, UBLK_U_IO_FETCH_REQ, tag, 0, bufs + tag * MAXIO);
	io_uring_submit(&ring);
	pthread_create(&t, NULL, start_thread, NULL);

	while (aborted < DEPTH) {
		struct __kernel_timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		for (unsigned tag = 0; tag < DEPTH; tag++) {
			const struct ublksrv_io_desc *d = &descs[tag];

			if (!due[tag] || now() < due[tag])
				continue;
			due[tag] = 0;
			if (getdata) {
				/* the write's data, long after the kernel gave up on it */
				queue_cmd(&ring, fd, UBLK_U_IO_NEED_GET_DATA, tag, 0,
					  bufs + tag * MAXIO)->user_data |= UD_GETDATA | UD_LATE;
				continue;
			}
			/* the read's data, long after the kernel gave up on it */
			memcpy(bufs + tag * MAXIO, ram + (d->start_sector << 9), d->nr_sectors << 9);
			queue_cmd(&ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, d->nr_sectors << 9,
				  bufs + tag * MAXIO);
			fprintf(stderr, "late commit of tag %u\n", tag);
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			unsigned tag = cqe->user_data & 0xffff;
			char *buf = bufs + tag * MAXIO;
			const struct ublksrv_io_desc *d = &descs[tag];
			size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
			unsigned op = ublksrv_get_op(d);
			int res = len;

			n++;
			if (cqe->user_data & UD_LATE) {
				fprintf(stderr, "late NEED_GET_DATA of tag %u: %d\n", tag, cqe->res);
				queue_cmd(&ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, len, buf);
				fprintf(stderr, "late commit of tag %u\n", tag);
				continue;
			}
			if (cqe->user_data & UD_GETDATA) {
				if (cqe->res < 0)
					fprintf(stderr, "NEED_GET_DATA of tag %u: %d\n", tag, cqe->res);
				else if (off + len <= size)
					memcpy(ram + off, buf, len);
				queue_cmd(&ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag,
					  cqe->res < 0 || off + len > size ? -EIO : res, buf);
				continue;
			}
			if (cqe->res == UBLK_IO_RES_NEED_GET_DATA) {
				if (d->start_sector == stall_sector) {
					due[tag] = now() + hold;
					fprintf(stderr, "holding tag %u (write of sector %llu)\n", tag,
						(unsigned long long)stall_sector);
					continue;
				}
				queue_cmd(&ring, fd, UBLK_U_IO_NEED_GET_DATA, tag, 0, buf)->user_data |= UD_GETDATA;
				continue;
			}
			if (cqe->res < 0) {
				if (cqe->res != UBLK_IO_RES_ABORT)
					fprintf(stderr, "tag %u: %d\n", tag, cqe->res);
				aborted++;
				continue;
			}
			if (!getdata && op == UBLK_IO_OP_READ && d->start_sector == stall_sector) {
				due[tag] = now() + hold;
				fprintf(stderr, "holding tag %u (read of sector %llu)\n", tag,
					(unsigned long long)stall_sector);
				continue;
			}
			if (off + len > size)
				res = -EIO;
			else if (op == UBLK_IO_OP_READ)
				memcpy(buf, ram + off, len);
			else if (op == UBLK_IO_OP_WRITE)
				memcpy(ram + off, buf, len);
			else if (op == UBLK_IO_OP_DISCARD || op == UBLK_IO_OP_WRITE_ZEROES)
				memset(ram + off, 0, len);
			queue_cmd(&ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, res, buf);
		}
		io_uring_cq_advance(&ring, n);
	}
	fprintf(stderr, "all tags aborted\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct ublksrv_ctrl_dev_info info;
	int r;

	if (argc < 3)
		return 2;
	ctrl_fd = open("/dev/ublk-control", O_RDWR);
	if (ctrl_fd < 0)
		return perror("/dev/ublk-control"), 2;
	if (!strcmp(argv[1], "add")) {
		become(atoi(argv[2]));
		r = add_dev(argc > 3 ? argv[3] : NULL, 8, &info);
		if (r < 0)
			printf("%d\n", r);
		else
			printf("%u %#llx %u\n", info.dev_id, (unsigned long long)info.flags, info.owner_uid);
		return 0;
	}
	if (!strcmp(argv[1], "cmd") && argc > 4) {
		become(atoi(argv[2]));
		dev_path = argc > 5 ? argv[5] : NULL;
		printf("%d\n", dev_cmd(argv[3], atoi(argv[4])));
		return 0;
	}
	if (!strcmp(argv[1], "guess") && argc > 3)
		return guess_server(atoi(argv[2]), (size_t)atoi(argv[3]) << 20,
				    argc > 4 && !strcmp(argv[4], "usercopy"));
	if (!strcmp(argv[1], "stall") && argc > 5)
		return stall_server(atoi(argv[2]), (size_t)atoi(argv[3]) << 20, strtoull(argv[4], NULL, 0),
				    atoi(argv[5]), argc > 6 && !strcmp(argv[6], "getdata"));
	if (!strcmp(argv[1], "ucrace"))
		return ucrace_server((size_t)atoi(argv[2]) << 20, argc > 4 ? argv[3] : NULL,
				     argc > 4 ? strtoull(argv[4], NULL, 0) : 0);
	return 2;
}
