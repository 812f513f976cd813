#!/bin/bash
# Our own ublk driver (src/kernel/module): it loads in place of the in-tree
# one, answers GET_FEATURES, serves a device to ublkd, survives the server
# being killed mid-IO (the IO ends, nothing hangs), moves data right in each
# copy mode ublkd does not use (NEED_GET_DATA, USER_COPY; a small RAM-disk
# server compiled here talks to the driver directly, and also serves one
# queue from two rings, whose requests the batched dispatch must keep apart),
# checks who may command unprivileged devices, the limit on their number and
# their request timeout (kmod-perm.c), refuses a server's answers for tags it
# was not given (and nothing hangs when that server is killed), recovers a
# device whose server was killed under a verifying fio
# (USER_RECOVERY_REISSUE, and FAIL_IO), and unloads, also with devices that
# wait for a server. Servers that stall, get stuck or race their own copies:
# t-kmod-edge.sh.
# Skips unless the run uses our module (vm-run --driver .../ublk_drv.ko).
# vm-timeout: 840
set -euo pipefail
. "$UBLKD_SRC/test/vm/lib.sh"

load_our_driver
[ -c /dev/ublk-control ] || fail "no /dev/ublk-control"
grep -q "ublk-char" /proc/devices || fail "no ublk-char major in /proc/devices"
install_ublkd
systemctl start ublkd
# whatever happens, the next test finds no device of ours
# (only while ublkd runs: a bus call would start it, and its unit modprobes ublk_drv)
defer "systemctl -q is-active ublkd && ublkctl del kmod >/dev/null 2>&1; systemctl stop ublkd"

features=$(ublkctl features)
echo "features: $features"
ublkctl --json features >/dev/null 2>&1 || true

# A device, written and read back through the page cache and O_DIRECT.
# Without recovery (ublkd's default is reissue): the server's death stops it.
dev=$(ublkctl add null --size 256M --name kmod --recovery none)
[[ $dev =~ ^/dev/ublkb([0-9]+)$ ]] || fail "ublkctl add printed '$dev'"
id=${BASH_REMATCH[1]}
[ "$(blockdev --getsize64 "$dev")" = 268435456 ] || fail "wrong size"
dd if="$dev" of=/dev/null bs=1M count=64 iflag=direct status=none || fail "direct read failed"
dd if=/dev/zero of="$dev" bs=1M count=16 oflag=direct status=none || fail "direct write failed"
# O_DIRECT needs only 4-byte aligned buffers, as with the in-tree driver (dma_alignment 3)
[ "$(cat /sys/block/ublkb$id/queue/dma_alignment)" = 3 ] ||
	fail "dma_alignment $(cat /sys/block/ublkb$id/queue/dma_alignment), in-tree has 3"
python3 - "$dev" <<'PY' || fail "O_DIRECT read into a buffer 4 bytes past a page failed"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 2 * 4096)
assert os.preadv(fd, [memoryview(buf)[4:4 + 4096]], 0) == 4096
PY

# The server dies with IO in flight: the reader must end, with or without an
# error, and the kernel must stop the disk.
fio --name=r --filename="$dev" --rw=randread --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 \
	--runtime=60 --time_based --output-format=json > fio.json 2>/dev/null &
fio_pid=$!
wait_until 30 sh -c "grep -q ublkb$id /proc/diskstats && [ \$(awk '\$3==\"ublkb$id\"{print \$4}' /proc/diskstats) -gt 100 ]" ||
	fail "fio did not get going"
pid=$(systemctl show -P MainPID ublkd)
kill -9 "$pid"
wait_until 30 exited "$fio_pid" || fail "fio still runs 30 s after the server died"
wait "$fio_pid" || true
echo "fio after the kill: error=$(jq '.jobs[0].error' fio.json 2>/dev/null || echo '?')"

# systemd restarts ublkd, which renews the device the kernel stopped; it
# serves again once started.
wait_until 30 sh -c "ublkctl --json list | jq -e '.[] | select(.name == \"kmod\")' >/dev/null" ||
	fail "ublkd did not come back with the device: $(ublkctl list 2>&1)"
ublkctl list
ublkctl start kmod >/dev/null 2>&1 || true
wait_until 30 sh -c "ublkctl --json list | jq -e '.[] | select(.name == \"kmod\" and .state == \"live\")' >/dev/null" ||
	fail "device not live again: $(ublkctl list 2>&1)"
wait_until 10 test -b "$dev" || fail "no $dev after the restart"
dd if="$dev" of=/dev/null bs=1M count=8 iflag=direct status=none || fail "read after restart failed"
ublkctl del kmod
wait_until 10 test ! -e "$dev" || fail "$dev still exists after del"
systemctl stop ublkd

# The driver's other copy modes, with a server of our own.
require_cmd gcc
cat > srv.c <<'SRC'
/* A minimal RAM-disk ublk server for the driver test: copy, get-data, user-copy or splice mode. */
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
static bool splicing, ucopy;

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

/* FETCH_REQ for tags first, first + step, ... on ring, sent. */
static int fetch(struct io_uring *ring, unsigned first, unsigned step)
{
	if (io_uring_queue_init(2 * DEPTH, ring, IORING_SETUP_SQE128) < 0)
		return -1;
	for (unsigned tag = first; tag < DEPTH; tag += step)
		queue_cmd(ring, fd, UBLK_U_IO_FETCH_REQ, tag, 0,
			  ucopy ? 0 : (__u64)(uintptr_t)TAG_BUF(tag), 0);
	return io_uring_submit(ring);
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
			const struct ublksrv_io_desc *d = &descs[tag];
			__u64 pos = UBLKSRV_IO_BUF_OFFSET + ((__u64)tag << UBLK_TAG_OFF);
			size_t off = d->start_sector << 9, len = (size_t)d->nr_sectors << 9;
			unsigned op = ublksrv_get_op(d);
			int res = 0;

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
			if (off + len > size)
				res = -EIO;
			else if (op == UBLK_IO_OP_READ) {
				if (splicing)
					res = splice_read_data(fd, tag, pos, ram + off, len);
				else if (ucopy)
					res = pwrite(fd, ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
				else {
					memcpy(buf, ram + off, len);
					res = len;
				}
			} else if (op == UBLK_IO_OP_WRITE) {
				if (splicing)
					res = splice_write_data(fd, tag, pos, ram + off, len);
				else if (ucopy)
					res = pread(fd, ram + off, len, pos) == (ssize_t)len ? (int)len : -EIO;
				else {
					memcpy(ram + off, buf, len);
					res = len;
				}
			} else if (op == UBLK_IO_OP_DISCARD || op == UBLK_IO_OP_WRITE_ZEROES)
				memset(ram + off, 0, len);
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
 * srv MODE SIZE_MB [RECOVERY RAMFILE]: add a device and serve it; RECOVERY is
 * none, plain, reissue or failio.  srv recover ID RAMFILE [die]: recover
 * device ID (copy mode); "die" exits between START and END_USER_RECOVERY.
 */
int main(int argc, char **argv)
{
	const char *mode = argv[1];
	/* tworings: copy mode, the odd tags fetched and served on a second ring (same task) */
	bool tworings = !strcmp(mode, "tworings");
	bool getdata = !strcmp(mode, "getdata");
	bool recover = !strcmp(mode, "recover");
	/* the modes serve() needs, set before info's flags are made of them */
	splicing = !strcmp(mode, "splice");
	ucopy = !strcmp(mode, "usercopy") || splicing;
	const char *rec = argc > 3 ? argv[3] : "none";
	__u64 recflags = !strcmp(rec, "plain") ? UBLK_F_USER_RECOVERY :
			 !strcmp(rec, "reissue") ? UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE :
			 !strcmp(rec, "failio") ? UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_FAIL_IO : 0;
	struct ublksrv_ctrl_cmd c = { .dev_id = ~0U, .queue_id = 0xffff };
	struct ublksrv_ctrl_dev_info info = {
		.nr_hw_queues = 1, .queue_depth = DEPTH, .max_io_buf_bytes = MAXIO,
		.flags = UBLK_F_CMD_IOCTL_ENCODE | (ucopy ? UBLK_F_USER_COPY : 0) |
			 (getdata ? UBLK_F_NEED_GET_DATA : 0) | recflags,
	};
	struct ublk_params par = { .len = sizeof(par), .types = UBLK_PARAM_TYPE_BASIC,
		.basic = { .logical_bs_shift = 9, .physical_bs_shift = 12, .io_min_shift = 9,
			   .io_opt_shift = 12, .max_sectors = MAXIO >> 9 } };
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
		c.queue_id = 0;
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
	ram = argc > (recover ? 3 : 4) ? map_ram(argv[recover ? 3 : 4], &size) : calloc(1, size);
	if (!ram)
		return perror("ram"), 1;
	bufs = aligned_alloc(4096, DEPTH * (MAXIO + 4096));
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
SRC
gcc -O2 -w -I"$UBLKD_SRC/src/kernel/uapi" -I"$UBLKD_SRC/test/vm" srv.c -o srv -luring -lpthread || fail "cannot build the test server"
head -c 8M /dev/urandom > pattern
for mode in copy getdata usercopy splice; do
	./srv $mode 64 > id.txt 2> srv.log &
	srv_pid=$!
	wait_until 20 test -s id.txt || fail "$mode: the server printed no id: $(cat srv.log)"
	id=$(cat id.txt)
	wait_until 20 test -b /dev/ublkb$id || fail "$mode: no /dev/ublkb$id: $(cat srv.log)"
	dd if=pattern of=/dev/ublkb$id bs=64k oflag=direct status=none || fail "$mode: direct write failed"
	dd if=pattern of=/dev/ublkb$id bs=1M seek=16 status=none conv=fsync || fail "$mode: buffered write failed"
	echo 3 > /proc/sys/vm/drop_caches
	cmp <(dd if=/dev/ublkb$id bs=128k count=64 iflag=direct status=none) pattern ||
		fail "$mode: direct read back differs"
	cmp <(dd if=/dev/ublkb$id bs=1M skip=16 count=8 status=none) pattern ||
		fail "$mode: buffered read back differs"
	if [ $mode = copy ]; then
		info=$(./srv info "$id") || fail "info commands failed: $info"
		echo "info: $info"
		want="id=$id/$id state=1/1 queues=1 depth=8 sectors=131072"
		want+=" disk=$((0x$(stat -c %t /dev/ublkb$id))):$((0x$(stat -c %T /dev/ublkb$id)))"
		want+=" char=$((0x$(stat -c %t /dev/ublkc$id))):$((0x$(stat -c %T /dev/ublkc$id))) cpus=$(nproc)"
		[ "$info" = "$want" ] || fail "info: expected '$want'"
	fi
	./srv del "$id" 2>>srv.log || fail "$mode: STOP/DEL failed: $(cat srv.log)"
	wait "$srv_pid" || fail "$mode: server exit status $?: $(cat srv.log)"
	grep -q "all tags aborted" srv.log || fail "$mode: server did not see its tags aborted: $(cat srv.log)"
	if [ $mode = splice ]; then
		grep -q "^splice: commit with the pipe full: -16$" srv.log ||
			fail "splice: a commit while a pipe held the write's pages was not refused with EBUSY: $(cat srv.log)"
		grep -q "^splice: commit with a tee'd copy: -16$" srv.log ||
			fail "splice: a commit while a tee() copy held the write's pages was not refused with EBUSY: $(cat srv.log)"
		grep "^splice:" srv.log
	fi
	echo "$mode: 16 MiB written and read back (direct and buffered)"
done

# One queue's tags fetched on two rings (even tags, odd tags) of one task. The driver hands a
# busy queue's requests over in batches, several on one task work; a request whose command
# came on the other ring must still complete there. A verifying fio at depth 16 (the device's
# is 8) keeps requests of both rings waiting at once.
./srv tworings 64 > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "tworings: the server printed no id: $(cat srv.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "tworings: no /dev/ublkb$id: $(cat srv.log)"
fio --name=v --filename=/dev/ublkb$id --rw=randwrite --bs=4k --iodepth=16 --ioengine=io_uring \
	--direct=1 --size=32M --verify=crc32c --verify_fatal=1 > fio-tworings.log 2>&1 &
fio_pid=$!
if ! wait_until 180 exited "$fio_pid"; then
	kill -9 "$srv_pid"
	fail "tworings: fio still runs after 180 s (requests lost between the rings?): $(cat srv.log)"
fi
wait "$fio_pid" || fail "tworings: verifying fio failed: $(tail -5 fio-tworings.log)"
./srv del "$id" 2>>srv.log || fail "tworings: STOP/DEL failed: $(cat srv.log)"
wait "$srv_pid" || fail "tworings: server exit status $?: $(cat srv.log)"
for first in 0 1; do
	n=$(sed -n "s/^ring of tags $first+2: \([0-9]*\) requests$/\1/p" srv.log)
	[ "${n:-0}" -gt 1000 ] || fail "tworings: the ring of tags $first+2 served '${n:-}' requests: $(cat srv.log)"
done
echo "tworings: 32 MiB written at depth 16 and verified; $(grep -c '^ring of tags' srv.log) rings served $(grep '^ring of tags' srv.log | tr '\n' ' ')"

# The server killed with reads in flight: they end, the disk goes, DEL works.
./srv copy 64 > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "kill: no id"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "kill: no /dev/ublkb$id"
fio --name=r --filename=/dev/ublkb$id --rw=randread --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
	--runtime=60 --time_based > /dev/null 2>&1 &
fio_pid=$!
wait_until 30 sh -c "[ \$(awk '\$3==\"ublkb$id\"{print \$4}' /proc/diskstats) -gt 100 ]" ||
	fail "kill: fio did not get going"
kill -9 "$srv_pid"
wait_until 30 exited "$fio_pid" || fail "kill: fio still runs 30 s after the server died"
wait "$fio_pid" || true
wait_until 10 test ! -e /dev/ublkb$id || fail "kill: /dev/ublkb$id stayed after the server died"
./srv del "$id" 2>>srv.log || fail "kill: DEL failed: $(cat srv.log)"
echo "kill: IO ended, disk removed, device deleted"

# Unprivileged devices (UBLK_F_UNPRIVILEGED_DEV): who may send which command. kmod-perm opens
# /dev/ublk-control as root, then drops to the uid given (as ublkd's user threads do) and prints
# the command's result (0 or -errno). Users ua, ub: numeric ids without accounts.
build_kmod_perm
ua=4201 ub=4202
EPERM=-1 ENOENT=-2 EACCES=-13 EINVAL=-22
add_as() { # UID [noflag|usercopy]: prints "ID FLAGS OWNER" or -errno
	./kmod-perm add "$@" || fail "kmod-perm add $*: exit $?"
}
# ublk-owner (udev) gives a user's nodes to the user
owned_by() { [ "$(stat -c %u "$1" 2>/dev/null)" = "$2" ]; }
(( features & 0x20 )) || fail "GET_FEATURES does not advertise UBLK_F_UNPRIVILEGED_DEV: $features"

read -r rid rflags _ <<< "$(add_as 0)"
[[ $rid =~ ^[0-9]+$ ]] || fail "root's ADD_DEV: $rid"
(( (rflags & 0x20) == 0 )) || fail "root asked for an unprivileged device and got one ($rflags)"
for op in info params stop del; do kmod_perm_expect $EPERM $ua $op "$rid"; done
kmod_perm_expect $EPERM $ua info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect 0 0 info2 "$rid" /dev/ublkc"$rid"
kmod_perm_expect $EINVAL 0 info2 "$rid"
kmod_perm_expect 0 0 info "$rid"
echo "root's device $rid: a user gets EPERM for info, info2 (with its path), params, stop, del"

# ADD_DEV negotiates flags as upstream does: those of newer kernels (AUTO_BUF_REG,
# PER_IO_DAEMON, bit 40) are cleared, not refused; CMD_IOCTL_ENCODE and URING_CMD_COMP_IN_TASK
# come back though not asked for; USER_COPY clears NEED_GET_DATA. 6.12's in-tree driver
# answers the same request with the same flags, 0xc2.
read -r nid nflags _ <<< "$(add_as 0 negotiate)"
[[ $nid =~ ^[0-9]+$ ]] || fail "ADD_DEV refused flags of newer kernels ($nid): the in-tree driver clears them"
[ "$nflags" = 0xc2 ] || fail "ADD_DEV negotiated flags $nflags, not 0xc2 (IOCTL_ENCODE, COMP_IN_TASK, USER_COPY)"
kmod_perm_expect 0 0 del "$nid"
echo "ADD_DEV with flags of newer kernels: cleared, device $nid has flags $nflags"

r=$(add_as $ua noflag); [ "$r" = $EPERM ] || fail "a user's ADD_DEV without UBLK_F_UNPRIVILEGED_DEV: $r"
r=$(add_as $ua usercopy); [ "$r" = $EINVAL ] || fail "a user's ADD_DEV with UBLK_F_USER_COPY: $r"
read -r a aflags aowner <<< "$(add_as $ua)"
[[ $a =~ ^[0-9]+$ ]] || fail "ua's ADD_DEV: $a"
(( aflags & 0x20 )) && [ "$aowner" = $ua ] || fail "ua's device: flags $aflags owner $aowner"
read -r a2 _ <<< "$(add_as $ua)"
read -r b _ <<< "$(add_as $ub)"
[[ $a2 =~ ^[0-9]+$ && $b =~ ^[0-9]+$ ]] || fail "more user devices: $a2 $b"
for d in "$a:$ua" "$a2:$ua" "$b:$ub"; do
	wait_until 10 owned_by /dev/ublkc"${d%:*}" "${d#*:}" || fail "/dev/ublkc${d%:*} not given to ${d#*:}"
done
kmod_perm_expect 0 $ua info "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua info2 "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua setparams "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ua params "$a" /dev/ublkc"$a"
# limits the block layer WARNs about (a user could make the kernel log a WARN at START_DEV)
kmod_perm_expect $EINVAL $ua setparams-small-io "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua setparams-dma-8k "$a" /dev/ublkc"$a"
kmod_perm_expect $EINVAL $ua info "$a"
kmod_perm_expect $EINVAL 0 stop "$a"
kmod_perm_expect 0 0 info "$a" /dev/ublkc"$a"
echo "ua's device $a: ua's commands carry its node's path; without one EINVAL, for root too; IO limits under a page refused"
for op in info stop del; do kmod_perm_expect $EACCES $ub $op "$a" /dev/ublkc"$a"; done
kmod_perm_expect $EPERM $ub del "$a" /dev/ublkc"$b"
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublkc"$a2"
kmod_perm_expect $EPERM $ua stop "$a" /dev/null
kmod_perm_expect $EPERM $ua stop "$a" /dev/ublk-control
kmod_perm_expect $ENOENT $ua stop "$a" /dev/ublkc-none
echo "ub on ua's device: EACCES through its node, EPERM through ub's own node; a path to another device EPERM"

limit=/sys/module/ublk_drv/parameters/unprivileged_ublks_max
old_limit=$(cat $limit)
echo 3 > $limit
defer "echo $old_limit > $limit"
r=$(add_as $ub); [ "$r" = $EACCES ] || fail "a fourth user device with unprivileged_ublks_max=3: $r"
read -r r2 _ <<< "$(add_as 0)"
[[ $r2 =~ ^[0-9]+$ ]] || fail "root's device refused at the user limit: $r2"
kmod_perm_expect 0 $ua del "$a2" /dev/ublkc"$a2"
read -r b2 _ <<< "$(add_as $ub)"
[[ $b2 =~ ^[0-9]+$ ]] || fail "a user device refused after one was deleted: $b2"
echo "unprivileged_ublks_max=3: the fourth EACCES, root's not counted, a delete makes room"
kmod_perm_expect 0 $ua del "$a" /dev/ublkc"$a"
kmod_perm_expect 0 $ub del "$b" /dev/ublkc"$b"
kmod_perm_expect 0 0 del "$b2" /dev/ublkc"$b2"
kmod_perm_expect 0 0 del "$rid"
kmod_perm_expect 0 0 del "$r2"

# A user's server that does not answer: the request fails after unprivileged_io_timeout,
# the server's late answer gives the tag back, and the device serves on every tag.
tmo=/sys/module/ublk_drv/parameters/unprivileged_io_timeout
old_tmo=$(cat $tmo)
echo 2 > $tmo
defer "echo $old_tmo > $tmo"
./kmod-perm stall $ua 64 100000 10 > id.txt 2> stall.log &
stall_pid=$!
wait_until 20 test -s id.txt || fail "stall: no id: $(cat stall.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "stall: no /dev/ublkb$id: $(cat stall.log)"
t0=$(date +%s%N)
if dd if=/dev/ublkb$id of=/dev/null bs=4k skip=12500 count=1 iflag=direct status=none 2> dd.err; then
	fail "stall: a read the server held succeeded"
fi
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "holding tag" stall.log || fail "stall: the server never saw the read: $(cat stall.log)"
(( ms >= 1500 && ms < 9000 )) || fail "stall: the held read failed after $ms ms (timeout 2 s, late answer at 10 s)"
echo "stall: the held read failed after $ms ms: $(cat dd.err)"
wait_until 20 grep -q "late commit" stall.log || fail "stall: no late commit: $(cat stall.log)"
dd if=pattern of=/dev/ublkb$id bs=2M oflag=direct status=none || fail "stall: write after the late commit failed"
cmp <(dd if=/dev/ublkb$id bs=2M count=4 iflag=direct status=none) pattern ||
	fail "stall: read back after the late commit differs"
./kmod-perm cmd 0 stop "$id" /dev/ublkc"$id" > /dev/null
kmod_perm_expect 0 0 del "$id" /dev/ublkc"$id"
wait "$stall_pid" || fail "stall: server exit status $?: $(cat stall.log)"
echo "stall: after the late answer 8 MiB written and read back in 2 MiB requests (4 x 512 KiB, depth 4)"

# A server that answers tags it was not given. Until a request's dispatch has run in the
# server's task the server has not been told of it; a COMMIT_AND_FETCH guessing its tag (with
# USER_COPY also pread/pwrite) must fail with EINVAL. Were the commit taken, the dispatch would
# then park the old command over the new one, which never completes: the server could not exit,
# nor its char device be released, nor DEL_DEV return. kmod-perm guess guesses every tag between
# its waits, from a DEFER_TASKRUN ring (the dispatches run only while it waits), under a direct
# randrw reader, until it has guessed 200 times at tags with a dispatch pending (requests in
# flight while it held none). Then it is killed: the reader's IO ends, the server exits, the
# disk goes, DEL_DEV returns, each within a bound. Once on a user's device (copy mode, 2 s
# request timeout from above), once on root's with USER_COPY.
guess_stat() { sed -n "s/^guess:.* $1=\([0-9]*\).*/\1/p" guess.log | tail -1; }
guess_enough() { grep -q ACCEPTED guess.log || [ "$(guess_stat pending)" -ge 200 ] 2> /dev/null; }
for how in "$ua copy" "0 usercopy"; do
	read -r uid mode <<< "$how"
	./kmod-perm guess "$uid" 64 "$mode" > id.txt 2> guess.log &
	guess_pid=$!
	wait_until 20 test -s id.txt || fail "guess ($mode): no id: $(cat guess.log)"
	id=$(cat id.txt)
	wait_until 20 test -b /dev/ublkb$id || fail "guess ($mode): no /dev/ublkb$id: $(cat guess.log)"
	path=
	[ "$uid" = 0 ] || path=/dev/ublkc$id
	fio --name=g --filename=/dev/ublkb$id --rw=randrw --bs=4k --iodepth=32 --ioengine=libaio \
		--direct=1 --runtime=120 --time_based > /dev/null 2>&1 &
	fio_pid=$!
	wait_until 60 guess_enough ||
		fail "guess ($mode): fewer than 200 guesses with a dispatch pending in 60 s: $(tail -3 guess.log)"
	exited "$guess_pid" && fail "guess ($mode): the server ended: $(tail -5 guess.log)"
	kill -9 "$guess_pid"
	problems=()
	if grep -q ACCEPTED guess.log; then
		problems+=("guesses were taken: $(grep -m 3 ACCEPTED guess.log | tr '\n' ' ')")
	else
		stat=$(grep '^guess:' guess.log | tail -1)
		[ "$(guess_stat early)" = "$(guess_stat refused)" ] || problems+=("not every guess got EINVAL: $stat")
	fi
	wait_until 30 exited "$guess_pid" || problems+=("the server did not exit within 30 s of SIGKILL")
	wait "$guess_pid" 2> /dev/null || true
	wait_until 30 exited "$fio_pid" || problems+=("the reader still ran 30 s after the server's death")
	wait "$fio_pid" || true
	wait_until 10 test ! -e /dev/ublkb$id || problems+=("/dev/ublkb$id stayed after the server's death")
	./kmod-perm cmd 0 del "$id" $path > del.out &
	del_pid=$!
	wait_until 30 exited "$del_pid" || problems+=("DEL_DEV did not return within 30 s")
	[ "$(cat del.out)" = 0 ] || problems+=("DEL_DEV: '$(cat del.out)'")
	(( ${#problems[@]} == 0 )) || fail "guess ($mode): ${problems[*]}"
	echo "guess ($mode): $stat; after SIGKILL the IO ended, the server exited, DEL_DEV returned"
done

# USER_RECOVERY_REISSUE: the server is SIGKILLed under a verifying fio. The disk stays,
# quiesced, and IO waits; a server that dies between START and END_USER_RECOVERY leaves it
# recoverable; the next one recovers it, fio ends with no error and the held read with the
# data. Then STOP/DEL of a quiesced device with a read waiting: the read fails, nothing hangs.
state() { ./srv info "$1" | sed -n 's/^id=[0-9/]* state=\([0-9]*\)\/.*/\1/p'; }
state_is() { [ "$(state "$1")" = "$2" ]; }
ram=/dev/shm/kmod-ram
rm -f $ram $ram.f $ram.p
defer "rm -f $ram $ram.f $ram.p"
./srv copy 64 reissue $ram > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "recovery: no id: $(cat srv.log)"
id=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$id || fail "recovery: no /dev/ublkb$id"
head -c 4096 /dev/urandom > block0
dd if=block0 of=/dev/ublkb$id bs=4k oflag=direct status=none
fio --name=v --filename=/dev/ublkb$id --offset=1M --size=32M --rw=randwrite --bsrange=4k-64k \
	--iodepth=16 --ioengine=libaio --direct=1 --verify=crc32c --verify_fatal=1 \
	--output-format=json --output=fio-rec.json > /dev/null 2>&1 &
fio_pid=$!
wait_until 30 sh -c "[ \$(awk '\$3==\"ublkb$id\"{print \$8}' /proc/diskstats) -gt 200 ]" ||
	fail "recovery: fio did not get going"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$id" 2 || fail "recovery: state $(state "$id"), not quiesced (2), after the kill"
[ -b /dev/ublkb$id ] || fail "recovery: /dev/ublkb$id went away with its server"
dd if=/dev/ublkb$id of=held.out bs=4k count=1 iflag=direct status=none &
held=$!
before=$(ios_done ublkb$id)
! wait_until 3 exited "$held" 2> /dev/null || fail "recovery: a read with no server did not wait"
exited "$fio_pid" && fail "recovery: fio ended while the device had no server: $(head -c 800 fio-rec.json)"
./srv recover "$id" $ram die 2> srv-die.log || fail "recovery: a server that dies: $(cat srv-die.log)"
wait_until 10 state_is "$id" 2 || fail "recovery: state $(state "$id") after a server died in recovery"
[ "$(ios_done ublkb$id)" = "$before" ] || fail "recovery: IO completed while no server served it"
./srv recover "$id" $ram > /dev/null 2> srv.log &
srv_pid=$!
wait_until 30 exited "$held" || fail "recovery: the held read still waits after the recovery: $(cat srv.log)"
wait "$held" || fail "recovery: the held read failed"
cmp held.out block0 || fail "recovery: the held read returned other data"
wait_until 120 exited "$fio_pid" || fail "recovery: fio still runs 120 s after the recovery"
wait "$fio_pid" || fail "recovery: fio failed: $(head -c 1500 fio-rec.json)"
sed -i '/^{/,$!d' fio-rec.json
jq -e '.jobs[0].error == 0 and .jobs[0].read.total_ios > 0' fio-rec.json > /dev/null ||
	fail "recovery: fio reported errors: $(head -c 1500 fio-rec.json)"
state_is "$id" 1 || fail "recovery: state $(state "$id") after END_USER_RECOVERY"
grep -q "END_USER_RECOVERY: 0" srv.log || fail "recovery: $(cat srv.log)"
echo "recovery: SIGKILL under fio --verify; IO waited; a server that died in recovery left it recoverable;" \
	"recovered: $(jq '.jobs[0].write.total_ios' fio-rec.json) writes verified, 0 errors"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$id" 2 || fail "recovery: not quiesced after the second kill"
dd if=/dev/ublkb$id of=/dev/null bs=4k count=1 iflag=direct status=none 2> /dev/null &
held=$!
./srv del "$id" 2> srv-del.log || fail "recovery: STOP/DEL of a quiesced device: $(cat srv-del.log)"
wait_until 10 exited "$held" || fail "recovery: a read held by a stopped device still waits"
wait "$held" && fail "recovery: a read held by a stopped device succeeded"
[ ! -e /dev/ublkb$id ] || fail "recovery: /dev/ublkb$id stayed after DEL"
echo "recovery: STOP/DEL of a quiesced device failed the waiting read"

# FAIL_IO: with no server IO fails at once, the device stays; a new server recovers it.
./srv copy 16 failio $ram.f > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "fail-io: no id: $(cat srv.log)"
fid=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$fid || fail "fail-io: no /dev/ublkb$fid"
dd if=block0 of=/dev/ublkb$fid bs=4k oflag=direct status=none
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$fid" 3 || fail "fail-io: state $(state "$fid"), not fail-io (3)"
timeout 10 dd if=/dev/ublkb$fid of=/dev/null bs=4k count=1 iflag=direct status=none 2> /dev/null &&
	fail "fail-io: a read with no server succeeded"
./srv recover "$fid" $ram.f > /dev/null 2> srv.log &
srv_pid=$!
wait_until 20 state_is "$fid" 1 || fail "fail-io: not live after recovery: $(cat srv.log)"
cmp <(dd if=/dev/ublkb$fid bs=4k count=1 iflag=direct status=none) block0 || fail "fail-io: data after recovery"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$fid" 3 || fail "fail-io: not fail-io after the second kill"
echo "fail-io: a read with no server failed, recovered, data kept"

# Plain USER_RECOVERY, idle: quiesced when its server dies. It and the fail-io device are
# left as they are for the unload below, which removes them.
./srv copy 16 plain $ram.p > id.txt 2> srv.log &
srv_pid=$!
wait_until 20 test -s id.txt || fail "plain: no id: $(cat srv.log)"
pdev=$(cat id.txt)
wait_until 20 test -b /dev/ublkb$pdev || fail "plain: no /dev/ublkb$pdev"
kill -9 "$srv_pid"
wait "$srv_pid" 2> /dev/null || true
wait_until 10 state_is "$pdev" 2 || fail "plain: state $(state "$pdev"), not quiesced (2)"

rmmod ublk_drv || fail "rmmod ublk_drv failed"
[ ! -e /dev/ublkb$pdev ] && [ ! -e /dev/ublkb$fid ] || fail "devices left after rmmod"
[ ! -e /dev/ublk-control ] || wait_until 10 test ! -e /dev/ublk-control || fail "/dev/ublk-control stayed"

# splice=0: ublkd sees no splice, and zero-copy=on is refused as on a kernel without zero copy.
insmod "$UBLK_DRIVER" splice=0 || fail "insmod splice=0 failed"
[ "$(cat /sys/module/ublk_drv/parameters/splice)" = N ] || fail "splice=0: the parameter reads $(cat /sys/module/ublk_drv/parameters/splice)"
truncate -s 64M zc.img
systemctl start ublkd
if out=$(ublkctl add loop zc.img --name zc --zero-copy on 2>&1); then fail "splice=0: zero-copy=on was accepted"; fi
[[ $out == *"or ublkd's own ublk driver (splice)"* ]] || fail "splice=0: unclear refusal: $out"
systemctl stop ublkd
rmmod ublk_drv || fail "rmmod after splice=0 failed"
echo "splice=0: zero-copy=on refused: $out"
# Leave it loaded for the tests after us, as load_ublk_driver left it.
insmod "$UBLK_DRIVER" || fail "insmod after rmmod failed"
wait_until 10 test -c /dev/ublk-control || fail "no /dev/ublk-control after the reload"

# Splice mode keeps a pipe per tag: a device whose pipes do not fit under ublkd's descriptor
# limit is refused with the numbers and the fix, and leaves nothing behind; one that fits works.
systemctl start ublkd
pid=$(ublkd_pid)
prlimit --pid "$pid" --nofile=1024:1024 || fail "prlimit on ublkd failed"
fds=$(fd_count "$pid")
if out=$(ublkctl add loop zc.img --name zcbig --zero-copy on --queues 1 --depth 1024 2>&1); then
	fail "splice mode: a device needing 2048 descriptors was accepted under a limit of 1024"
fi
[[ $out == *"need 2065 file descriptors"*"LimitNOFILE="* ]] || fail "splice mode, too many descriptors: unclear refusal: $out"
! ublkctl list | grep -q zcbig || fail "the refused device is listed: $(ublkctl list)"
! compgen -G "/dev/ublkb*" >/dev/null || fail "the refused device left $(ls /dev/ublkb*)"
[ "$(fd_count "$pid")" = "$fds" ] || fail "ublkd had $fds descriptors before the refused add, now $(fd_count "$pid")"
echo "splice mode, 2048 descriptors under a limit of 1024: $out"
zdev=$(ublkctl add loop zc.img --name zcfit --zero-copy on --queues 1 --depth 256) || fail "splice mode: a device that fits was refused"
ublkctl show --json zcfit | jq -e ".ZeroCopy == true" >/dev/null || fail "zcfit is not in splice mode: $(ublkctl show zcfit)"
dd if=/dev/urandom of=zc.data bs=64k count=16 status=none
dd if=zc.data of="$zdev" bs=64k oflag=direct status=none || fail "write to $zdev failed"
cmp zc.data <(dd if="$zdev" bs=64k count=16 iflag=direct status=none) || fail "$zdev read back other data"
ublkctl del zcfit || fail "ublkctl del zcfit failed"
systemctl stop ublkd
echo ok
