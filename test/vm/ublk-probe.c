/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublk-probe: every command our ublk driver accepts, sent as upstream servers send
 * them (ublksrv, the kernel's selftests: ioctl-encoded opcodes, queue_id = -1 except where the
 * command names a queue, the queue of GET_QUEUE_AFFINITY in data[0], a 128-byte SQE), with
 * good and bad input.  One line per case: the case, the result (0 or the errno's name) and
 * what the driver wrote back that a server reads.  t-kmod-abi.sh runs it against 6.12's
 * in-tree driver and against ours in one boot and wants the two tables equal.
 *
 * Nothing printed may depend on the driver beyond its answers: device ids are fixed
 * (PROBE_ID and on), majors are printed as "matches sysfs", buffers are filled with a byte
 * pattern first so that what a command wrote or cleared shows.  No device may exist when it
 * starts (ublkd stopped); it deletes every device it added.
 *
 * usage: ublk-probe [UID]   UID: also the cases of a user (uid = gid = UID) without
 *                           CAP_SYS_ADMIN (a child drops to it after opening the control node)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ublk_cmd.h"
#include "ublk-probe.h"
#include "ublk-test-ctrl.h"

int ctrl_fd;
static unsigned ncpus;

static const char *err_name(int r)
{
	static char b[32];
	const char *n;

	if (r >= 0) {
		snprintf(b, sizeof(b), "%d", r);
		return b;
	}
	n = strerrorname_np(-r);
	if (n)
		return n;
	snprintf(b, sizeof(b), "%d", r);
	return b;
}

void row(const char *name, int r, const char *fmt, ...)
{
	va_list ap;

	printf("%-34s %-10s", name, err_name(r));
	if (fmt) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

struct ublksrv_ctrl_cmd cmd(unsigned id, void *buf, unsigned len)
{
	return (struct ublksrv_ctrl_cmd){ .dev_id = id, .queue_id = (__u16)-1,
					  .addr = (__u64)(uintptr_t)buf, .len = len };
}

/* bytes of P[0..N) still FILL: what the driver left alone */
static unsigned untouched(const void *p, size_t n)
{
	const unsigned char *c = p;
	unsigned k = 0;

	for (size_t i = 0; i < n; i++)
		k += c[i] == FILL;
	return k;
}

static void hex(char *out, const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", c[i]);
}

/* "MAJ:MIN" of /sys/class/ublk-char/ublkcID/dev, or "" */
static void sysfs_dev(unsigned id, unsigned *maj, unsigned *min)
{
	char path[64];
	FILE *f;

	*maj = *min = ~0U;
	snprintf(path, sizeof(path), "/sys/class/ublk-char/ublkc%u/dev", id);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fscanf(f, "%u:%u", maj, min) != 2)
		*maj = *min = ~0U;
	fclose(f);
}

static const char *info_str(const struct ublksrv_ctrl_dev_info *i)
{
	static char b[256];

	snprintf(b, sizeof(b), "id=%u queues=%u depth=%u state=%u max_io=%u flags=%#llx pid=%d owner=%u:%u desc=%u",
		 i->dev_id, i->nr_hw_queues, i->queue_depth, i->state, i->max_io_buf_bytes,
		 (unsigned long long)i->flags, i->ublksrv_pid, i->owner_uid, i->owner_gid,
		 i->io_desc_size);
	return b;
}

int add_dev(const char *name, struct ublksrv_ctrl_dev_info *info, unsigned hid, bool show)
{
	struct ublksrv_ctrl_cmd c = cmd(hid, info, sizeof(*info));
	int r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_ADD_DEV, &c);

	row(name, r, "%s", r == 0 && show ? info_str(info) : "");
	return r;
}

struct ublksrv_ctrl_dev_info dev_info(unsigned id, unsigned queues, unsigned depth, __u64 flags)
{
	return (struct ublksrv_ctrl_dev_info){ .nr_hw_queues = queues, .queue_depth = depth,
		.max_io_buf_bytes = 512 * 1024, .dev_id = id, .ublksrv_pid = -1, .flags = flags };
}

int del_dev(const char *name, unsigned id)
{
	struct ublksrv_ctrl_cmd c = cmd(id, NULL, 0);
	int r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_DEL_DEV, &c);

	if (name)
		row(name, r, NULL);
	return r;
}

static void probe_features(void)
{
	unsigned char b[16];
	struct ublksrv_ctrl_cmd c;
	__u64 f;
	int r;

	memset(b, FILL, sizeof(b));
	c = cmd(0, b, 8);
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_FEATURES, &c);
	memcpy(&f, b, 8);
	row("GET_FEATURES", r, "features=%#llx", (unsigned long long)f);
	c = cmd(0, b, 16);
	row("GET_FEATURES len=16", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_FEATURES, &c), NULL);
	c = cmd(0, b, 4);
	row("GET_FEATURES len=4", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_FEATURES, &c), NULL);
	c = cmd(0, NULL, 8);
	row("GET_FEATURES addr=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_FEATURES, &c), NULL);
	/* its command number without the ioctl encoding: no such legacy opcode */
	c = cmd(NOSUCH_ID, b, 8);
	row("GET_FEATURES legacy nr, no dev", ublk_ctrl(ctrl_fd, _IOC_NR(UBLK_U_CMD_GET_FEATURES), &c), NULL);
}

static void probe_add(void)
{
	struct ublksrv_ctrl_dev_info i;
	struct ublksrv_ctrl_cmd c;
	unsigned char small[sizeof(i)];
	struct io_uring ring;
	int r;

	/* the device the later cases use: 4 queues where the VM has 4 CPUs */
	i = dev_info(PROBE_ID, 4, 64, UBLK_F_CMD_IOCTL_ENCODE);
	i.max_io_buf_bytes = 512 * 1024 + 100;
	add_dev("ADD_DEV", &i, PROBE_ID, true);
	i = dev_info(PROBE_ID, 1, 8, 0);
	add_dev("ADD_DEV id taken", &i, PROBE_ID, false);

	i = dev_info(PROBE_ID + 2, 1, 8, 0);
	add_dev("ADD_DEV header id != info id", &i, PROBE_ID + 1, false);
	i = dev_info(PROBE_ID + 1, 1, 8, 0);
	c = cmd(PROBE_ID + 1, &i, sizeof(i));
	c.queue_id = 0;
	row("ADD_DEV queue_id=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_ADD_DEV, &c), NULL);
	c = cmd(PROBE_ID + 1, small, sizeof(i) - 1);
	memcpy(small, &i, sizeof(small));
	row("ADD_DEV len short", ublk_ctrl(ctrl_fd, UBLK_U_CMD_ADD_DEV, &c), NULL);
	c = cmd(PROBE_ID + 1, NULL, sizeof(i));
	row("ADD_DEV addr=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_ADD_DEV, &c), NULL);
	i = dev_info(PROBE_ID + 1, 1, 0, 0);
	add_dev("ADD_DEV depth=0", &i, PROBE_ID + 1, false);
	i = dev_info(PROBE_ID + 1, 1, UBLK_MAX_QUEUE_DEPTH + 1, 0);
	add_dev("ADD_DEV depth=4097", &i, PROBE_ID + 1, false);
	i = dev_info(PROBE_ID + 1, 0, 8, 0);
	add_dev("ADD_DEV queues=0", &i, PROBE_ID + 1, false);
	i = dev_info(PROBE_ID + 1, UBLK_MAX_NR_QUEUES + 1, 8, 0);
	add_dev("ADD_DEV queues=4097", &i, PROBE_ID + 1, false);
	i = dev_info(1U << 20, 1, 8, 0);
	add_dev("ADD_DEV id=1<<20", &i, 1U << 20, false);

	/* accepted, and what comes back: each deleted again */
	i = dev_info(PROBE_ID + 1, 64, UBLK_MAX_QUEUE_DEPTH, 0);
	if (add_dev("ADD_DEV queues=64 depth=4096", &i, PROBE_ID + 1, true) == 0)
		del_dev(NULL, PROBE_ID + 1);
	i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_USER_COPY | UBLK_F_NEED_GET_DATA |
		     UBLK_F_UNPRIVILEGED_DEV | (1ULL << 40) | (1ULL << 63));
	if (add_dev("ADD_DEV flags negotiated", &i, PROBE_ID + 1, true) == 0)
		del_dev(NULL, PROBE_ID + 1);
	i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE);
	if (add_dev("ADD_DEV recovery reissue", &i, PROBE_ID + 1, true) == 0)
		del_dev(NULL, PROBE_ID + 1);
	i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_USER_RECOVERY_REISSUE);
	if (add_dev("ADD_DEV reissue without recovery", &i, PROBE_ID + 1, true) == 0)
		del_dev(NULL, PROBE_ID + 1);
	i = dev_info(PROBE_ID + 1, 1, 8, 0);
	i.max_io_buf_bytes = 4096 + 4095;
	if (add_dev("ADD_DEV max_io=8191", &i, PROBE_ID + 1, true) == 0)
		del_dev(NULL, PROBE_ID + 1);
	/*
	 * Fields the caller does not set.  Not state: upstream 6.12 keeps what the caller sent
	 * there, and its DEL_DEV of a device added with state LIVE (1) or any other but DEAD
	 * calls del_gendisk() on no disk (a NULL pointer oops, seen here); ours starts DEAD.
	 */
	i = dev_info(~0U, 1, 8, 0);
	i.ublksrv_pid = 1234;
	i.owner_uid = i.owner_gid = 4321;
	if (add_dev("ADD_DEV any id, owner and pid set", &i, ~0U, true) == 0)
		del_dev(NULL, i.dev_id);

	/* a ring without 128-byte SQEs cannot carry the command */
	i = dev_info(PROBE_ID + 1, 1, 8, 0);
	r = io_uring_queue_init(2, &ring, 0);
	if (r == 0) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;

		if (!sqe)
			abort();	/* a fresh ring has free SQEs */
		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_URING_CMD;
		sqe->fd = ctrl_fd;
		sqe->cmd_op = UBLK_U_CMD_ADD_DEV;
		io_uring_submit_and_wait(&ring, 1);
		r = io_uring_wait_cqe(&ring, &cqe);
		if (r == 0) {
			r = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
		io_uring_queue_exit(&ring);
	}
	row("ADD_DEV 64-byte SQE", r, NULL);
}

static void probe_info(void)
{
	struct ublksrv_ctrl_dev_info i;
	unsigned char big[256];
	struct { char path[16]; struct ublksrv_ctrl_dev_info info; } __attribute__((packed)) b;
	static char longpath[PATH_MAX + 64];
	struct ublksrv_ctrl_cmd c;
	int n, r;

	memset(&i, FILL, sizeof(i));
	c = cmd(PROBE_ID, &i, sizeof(i));
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c);
	row("GET_DEV_INFO", r, "%s", r == 0 ? info_str(&i) : "");
	memset(&i, FILL, sizeof(i));
	r = ublk_ctrl(ctrl_fd, UBLK_CMD_GET_DEV_INFO, &c);
	row("GET_DEV_INFO legacy opcode", r, "%s", r == 0 ? info_str(&i) : "");
	memset(big, FILL, sizeof(big));
	c = cmd(PROBE_ID, big, sizeof(big));
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c);
	row("GET_DEV_INFO len=256", r, "untouched past the info=%u", untouched(big + sizeof(i), sizeof(big) - sizeof(i)));
	c = cmd(PROBE_ID, &i, sizeof(i) - 1);
	row("GET_DEV_INFO len short", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c), NULL);
	c = cmd(PROBE_ID, NULL, sizeof(i));
	row("GET_DEV_INFO addr=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c), NULL);
	c = cmd(NOSUCH_ID, &i, sizeof(i));
	row("GET_DEV_INFO no such dev", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c), NULL);

	/* GET_DEV_INFO2: the char device's path first, on every device */
	memset(&b, FILL, sizeof(b));
	n = snprintf(b.path, sizeof(b.path), "/dev/ublkc%u", PROBE_ID);
	c = cmd(PROBE_ID, &b, n + sizeof(i));
	c.dev_path_len = n;
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c);
	memcpy(&i, b.path + n, sizeof(i));
	row("GET_DEV_INFO2", r, "%s", r == 0 ? info_str(&i) : "");
	c.dev_path_len = 0;
	row("GET_DEV_INFO2 no path", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	c.dev_path_len = n;
	c.len = n - 1;
	row("GET_DEV_INFO2 path_len > len", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	c.len = n + sizeof(i) - 1;
	row("GET_DEV_INFO2 len short", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	strcpy(b.path, "/dev/null");
	c = cmd(PROBE_ID, &b, 9 + sizeof(i));
	c.dev_path_len = 9;
	row("GET_DEV_INFO2 path /dev/null", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	strcpy(b.path, "/dev/ublkcX");
	c = cmd(PROBE_ID, &b, 11 + sizeof(i));
	c.dev_path_len = 11;
	row("GET_DEV_INFO2 path missing", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	/* a path of PATH_MAX bytes (no room for its NUL), and one byte more */
	memset(longpath, '/', sizeof(longpath));
	n = snprintf(NULL, 0, "dev/ublkc%u", PROBE_ID);
	snprintf(longpath + PATH_MAX - n, 64, "dev/ublkc%u", PROBE_ID);
	c = cmd(PROBE_ID, longpath, PATH_MAX + 1);
	c.dev_path_len = PATH_MAX;
	row("GET_DEV_INFO2 path_len=PATH_MAX", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
	c.dev_path_len = PATH_MAX + 1;
	c.len = PATH_MAX + 1;
	row("GET_DEV_INFO2 path_len=PATH_MAX+1", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO2, &c), NULL);
}

static const char *params_str(const struct ublk_params *p, unsigned id)
{
	static char b[384];
	unsigned maj, min;

	sysfs_dev(id, &maj, &min);
	snprintf(b, sizeof(b),
		 "len=%u types=%#x bs=%u/%u io=%u/%u max_sectors=%u chunk=%u sectors=%llu attrs=%#x vb=%#llx"
		 " discard=%u/%u/%u/%u/%u char=%s:%u disk=%u:%u",
		 p->len, p->types, p->basic.logical_bs_shift, p->basic.physical_bs_shift,
		 p->basic.io_min_shift, p->basic.io_opt_shift, p->basic.max_sectors,
		 p->basic.chunk_sectors, (unsigned long long)p->basic.dev_sectors, p->basic.attrs,
		 (unsigned long long)p->basic.virt_boundary_mask, p->discard.discard_alignment,
		 p->discard.discard_granularity, p->discard.max_discard_sectors,
		 p->discard.max_write_zeroes_sectors, p->discard.max_discard_segments,
		 p->devt.char_major == maj ? "sysfs" : "other", p->devt.char_minor,
		 p->devt.disk_major, p->devt.disk_minor);
	return b;
}

static int get_params(const char *name, unsigned id)
{
	struct ublk_params p;
	struct ublksrv_ctrl_cmd c = cmd(id, &p, sizeof(p));
	int r;

	memset(&p, 0, sizeof(p));
	p.len = sizeof(p);
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c);
	row(name, r, "%s", r == 0 ? params_str(&p, id) : "");
	return r;
}

struct ublk_params good_params(void)
{
	return (struct ublk_params){ .len = sizeof(struct ublk_params),
		.types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD,
		.basic = { .attrs = UBLK_ATTR_VOLATILE_CACHE, .logical_bs_shift = 9,
			   .physical_bs_shift = 12, .io_opt_shift = 12, .io_min_shift = 9,
			   .max_sectors = 1024, .dev_sectors = 1 << 20 },
		.discard = { .discard_granularity = 4096, .max_discard_sectors = 1 << 16,
			     .max_write_zeroes_sectors = 1 << 16, .max_discard_segments = 1 } };
}

static void set_params(const char *name, struct ublk_params *p, unsigned len)
{
	struct ublksrv_ctrl_cmd c = cmd(PROBE_ID, p, len);

	row(name, ublk_ctrl(ctrl_fd, UBLK_U_CMD_SET_PARAMS, &c), NULL);
}

static void probe_params(void)
{
	struct { struct ublk_params p; unsigned char more[64]; } big;
	struct ublk_params p;
	struct ublksrv_ctrl_cmd c;
	unsigned char b[32];
	char h[80];
	int r;

	get_params("GET_PARAMS before SET_PARAMS", PROBE_ID);
	p = good_params();
	set_params("SET_PARAMS", &p, sizeof(p));
	get_params("GET_PARAMS", PROBE_ID);

	p = good_params();
	set_params("SET_PARAMS len=8", &p, 8);
	p.len = sizeof(p) + 8;
	set_params("SET_PARAMS params.len > len", &p, sizeof(p));
	p.len = 0;
	set_params("SET_PARAMS params.len=0", &p, sizeof(p));
	p = good_params();
	c = cmd(PROBE_ID, NULL, sizeof(p));
	row("SET_PARAMS addr=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_SET_PARAMS, &c), NULL);
	p.types = 0;
	set_params("SET_PARAMS types=0", &p, sizeof(p));
	p.types = UBLK_PARAM_TYPE_DISCARD;
	set_params("SET_PARAMS no BASIC", &p, sizeof(p));
	p = good_params();
	p.types |= UBLK_PARAM_TYPE_DEVT;
	set_params("SET_PARAMS with DEVT", &p, sizeof(p));
	p = good_params();
	p.types |= UBLK_PARAM_TYPE_ZONED;
	set_params("SET_PARAMS with ZONED", &p, sizeof(p));
	p = good_params();
	p.basic.logical_bs_shift = 8;
	set_params("SET_PARAMS logical_bs_shift=8", &p, sizeof(p));
	p.basic.logical_bs_shift = 13;
	p.basic.physical_bs_shift = 13;
	set_params("SET_PARAMS logical_bs_shift=13", &p, sizeof(p));
	p = good_params();
	p.basic.physical_bs_shift = 8;
	set_params("SET_PARAMS physical < logical", &p, sizeof(p));
	p = good_params();
	p.basic.max_sectors = 1025;
	set_params("SET_PARAMS max_sectors > max_io", &p, sizeof(p));
	p = good_params();
	p.discard.max_discard_segments = 2;
	set_params("SET_PARAMS discard segments=2", &p, sizeof(p));
	p = good_params();
	p.discard.discard_granularity = 0;
	set_params("SET_PARAMS discard granularity=0", &p, sizeof(p));
	/* a failed SET_PARAMS: what the device's params are after it */
	get_params("GET_PARAMS after a failed SET", PROBE_ID);

	/* a type this ABI does not know is ignored; a longer struct (newer user space) is cut */
	p = good_params();
	p.types |= 1U << 30;
	set_params("SET_PARAMS unknown type", &p, sizeof(p));
	get_params("GET_PARAMS after unknown type", PROBE_ID);
	memset(&big, 0, sizeof(big));
	big.p = good_params();
	big.p.len = sizeof(big);
	big.p.basic.dev_sectors = 1 << 21;
	set_params("SET_PARAMS params.len=len > struct", &big.p, sizeof(big));
	get_params("GET_PARAMS after the longer SET", PROBE_ID);
	/* an older, shorter struct: basic only */
	p = good_params();
	p.types = UBLK_PARAM_TYPE_BASIC;
	p.len = offsetof(struct ublk_params, discard);
	p.basic.dev_sectors = 1 << 19;
	set_params("SET_PARAMS basic only, short len", &p, p.len);
	get_params("GET_PARAMS after the short SET", PROBE_ID);

	memset(b, FILL, sizeof(b));
	memset(b, 0, 8);
	b[0] = 24;	/* params.len: the header and the first 16 bytes of basic */
	c = cmd(PROBE_ID, b, sizeof(b));
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c);
	hex(h, b, sizeof(b));
	row("GET_PARAMS params.len=24", r, "buf=%s", h);
	memset(&p, 0, sizeof(p));
	p.len = sizeof(p);
	c = cmd(PROBE_ID, &p, 8);
	row("GET_PARAMS len=8", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c), NULL);
	c = cmd(PROBE_ID, &p, 16);
	row("GET_PARAMS params.len > len", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c), NULL);
	p.len = 0;
	c = cmd(PROBE_ID, &p, sizeof(p));
	row("GET_PARAMS params.len=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c), NULL);
	c = cmd(PROBE_ID, NULL, sizeof(p));
	row("GET_PARAMS addr=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_PARAMS, &c), NULL);
	get_params("GET_PARAMS no such dev", NOSUCH_ID);

	/* the device keeps good params for the cases after */
	p = good_params();
	set_params("SET_PARAMS again", &p, sizeof(p));
}

static void affinity(const char *name, __u16 queue_id, __u64 queue, unsigned len, bool null)
{
	unsigned char m[128];
	struct ublksrv_ctrl_cmd c = cmd(PROBE_ID, null ? NULL : m, len);
	unsigned bits = 0, zero = 0;
	char h[2 * 8 + 1];
	int r;

	memset(m, FILL, sizeof(m));
	c.queue_id = queue_id;
	c.data[0] = queue;
	r = ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_QUEUE_AFFINITY, &c);
	if (r) {
		row(name, r, NULL);
		return;
	}
	/* the CPUs of the mask (the VM's are 0..ncpus-1), then what the rest of the buffer holds */
	for (unsigned k = 0; k < ncpus && k < 64; k++)
		bits += !!(m[k / 8] & (1 << (k % 8)));
	for (unsigned k = 8; k < len; k++)
		zero += !m[k];
	hex(h, m, 8);
	row(name, r, "cpus=%u first8=%s zero past 8=%u untouched=%u", bits, h, zero, untouched(m, sizeof(m)));
}

static void probe_affinity(void)
{
	/* the VM has 4 CPUs and the device 4 queues: one CPU each */
	affinity("GET_QUEUE_AFFINITY q0", (__u16)-1, 0, 8, false);
	affinity("GET_QUEUE_AFFINITY q3", (__u16)-1, 3, 8, false);
	affinity("GET_QUEUE_AFFINITY len=64", (__u16)-1, 1, 64, false);
	affinity("GET_QUEUE_AFFINITY queue_id=1 q0", 1, 0, 8, false);
	affinity("GET_QUEUE_AFFINITY q4", (__u16)-1, 4, 8, false);
	affinity("GET_QUEUE_AFFINITY q=1<<32", (__u16)-1, 1ULL << 32, 8, false);
	affinity("GET_QUEUE_AFFINITY len=0", (__u16)-1, 0, 0, false);
	affinity("GET_QUEUE_AFFINITY len=4", (__u16)-1, 0, 4, false);
	affinity("GET_QUEUE_AFFINITY len=12", (__u16)-1, 0, 12, false);
	affinity("GET_QUEUE_AFFINITY addr=0", (__u16)-1, 0, 8, true);
}

static void probe_start_stop(void)
{
	struct ublksrv_ctrl_dev_info i;
	struct ublksrv_ctrl_cmd c = cmd(PROBE_ID, NULL, 0);

	c.data[0] = 0;
	row("START_DEV pid=0", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_DEV, &c), NULL);
	c.data[0] = (__u64)-1;
	row("START_DEV pid=-1", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_DEV, &c), NULL);
	c = cmd(NOSUCH_ID, NULL, 0);
	c.data[0] = getpid();
	row("START_DEV no such dev", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_DEV, &c), NULL);
	/* without params: refused before waiting for a server */
	i = dev_info(PROBE_ID + 1, 1, 8, 0);
	if (add_dev("ADD_DEV (for START_DEV)", &i, PROBE_ID + 1, false) == 0) {
		c = cmd(PROBE_ID + 1, NULL, 0);
		c.data[0] = getpid();
		row("START_DEV without params", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_DEV, &c), NULL);
		del_dev(NULL, PROBE_ID + 1);
	}
	c = cmd(PROBE_ID, NULL, 0);
	row("STOP_DEV not started", ublk_ctrl(ctrl_fd, UBLK_U_CMD_STOP_DEV, &c), NULL);
	row("STOP_DEV legacy opcode", ublk_ctrl(ctrl_fd, UBLK_CMD_STOP_DEV, &c), NULL);
	c = cmd(NOSUCH_ID, NULL, 0);
	row("STOP_DEV no such dev", ublk_ctrl(ctrl_fd, UBLK_U_CMD_STOP_DEV, &c), NULL);

	/*
	 * START_USER_RECOVERY of a device that never had a server; END_USER_RECOVERY is not
	 * sent: upstream waits for every queue's server before it looks at anything.
	 */
	c = cmd(PROBE_ID, NULL, 0);
	row("START_USER_RECOVERY no recovery", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_USER_RECOVERY, &c), NULL);
	i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_USER_RECOVERY);
	if (add_dev("ADD_DEV (for recovery)", &i, PROBE_ID + 1, false) == 0) {
		c = cmd(PROBE_ID + 1, NULL, 0);
		row("START_USER_RECOVERY never served", ublk_ctrl(ctrl_fd, UBLK_U_CMD_START_USER_RECOVERY, &c), NULL);
		del_dev(NULL, PROBE_ID + 1);
	}
}

static void probe_unknown(void)
{
	struct ublksrv_ctrl_cmd c = cmd(PROBE_ID, NULL, 0);

	row("op 'u' nr 0x30", ublk_ctrl(ctrl_fd, _IOWR('u', 0x30, struct ublksrv_ctrl_cmd), &c), NULL);
	row("op legacy nr 0x30", ublk_ctrl(ctrl_fd, 0x30, &c), NULL);
	row("op 'v' GET_DEV_INFO nr", ublk_ctrl(ctrl_fd, _IOR('v', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd), &c), NULL);
	c = cmd(NOSUCH_ID, NULL, 0);
	row("op 'u' nr 0x30 no such dev", ublk_ctrl(ctrl_fd, _IOWR('u', 0x30, struct ublksrv_ctrl_cmd), &c), NULL);
	row("op legacy nr 0x30 no such dev", ublk_ctrl(ctrl_fd, 0x30, &c), NULL);
}

static void probe_user(unsigned uid)
{
	struct ublksrv_ctrl_dev_info i;
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return;
	if (pid == 0) {
		if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
			_exit(1);
		i = dev_info(PROBE_ID + 1, 1, 8, 0);
		add_dev("user ADD_DEV without UNPRIVILEGED", &i, PROBE_ID + 1, false);
		i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_UNPRIVILEGED_DEV | UBLK_F_USER_COPY);
		add_dev("user ADD_DEV with USER_COPY", &i, PROBE_ID + 1, false);
		i = dev_info(PROBE_ID + 1, 1, 8, UBLK_F_UNPRIVILEGED_DEV | UBLK_F_USER_RECOVERY |
			     UBLK_F_USER_RECOVERY_REISSUE | UBLK_F_NEED_GET_DATA);
		add_dev("user ADD_DEV recovery dropped", &i, PROBE_ID + 1, true);
		{
			struct ublksrv_ctrl_cmd c = cmd(PROBE_ID + 1, &i, sizeof(i));

			row("user GET_DEV_INFO without path", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c), NULL);
			c = cmd(PROBE_ID, &i, sizeof(i));
			row("user GET_DEV_INFO root's dev", ublk_ctrl(ctrl_fd, UBLK_U_CMD_GET_DEV_INFO, &c), NULL);
		}
		_exit(0);
	}
	waitpid(pid, &st, 0);
	/* root deletes the user's device: through its char device's path */
	{
		struct { char path[16]; } b;
		struct ublksrv_ctrl_cmd c;
		int n = snprintf(b.path, sizeof(b.path), "/dev/ublkc%u", PROBE_ID + 1);
		struct stat s;

		for (int k = 0; k < 500 && stat(b.path, &s); k++)
			usleep(10000);
		c = cmd(PROBE_ID + 1, &b, n);
		c.dev_path_len = n;
		row("DEL_DEV user's dev, path", ublk_ctrl(ctrl_fd, UBLK_U_CMD_DEL_DEV, &c), NULL);
	}
}

int main(int argc, char **argv)
{
	ncpus = sysconf(_SC_NPROCESSORS_CONF);
	ctrl_fd = open("/dev/ublk-control", O_RDWR);
	if (ctrl_fd < 0)
		return perror("/dev/ublk-control"), 1;
	probe_features();
	probe_add();
	probe_info();
	probe_params();
	probe_affinity();
	probe_start_stop();
	probe_unknown();
	probe_io();
	if (argc > 1)
		probe_user(atoi(argv[1]));
	del_dev("DEL_DEV", PROBE_ID);
	del_dev("DEL_DEV again", PROBE_ID);
	del_dev("DEL_DEV no such dev", NOSUCH_ID);
	return 0;
}
