/* SPDX-License-Identifier: MIT */
/*
 * ublk-churn: adds, starts, stops and deletes ublk devices in a loop, talking to the driver
 * directly (no ublkd), to look for leaks and hangs in a ublk driver (t-churn, t-kmod-edge).
 *
 * usage: ublk-churn CYCLES [KILL_EVERY]
 *
 * Each cycle: ADD_DEV (1 queue, depth 4), SET_PARAMS (1 MiB), a forked server process opens
 * /dev/ublkcN and serves zeroes for reads, START_DEV (the partition scan is served), one O_DIRECT
 * read of the block device, then STOP_DEV and DEL_DEV.  Every KILL_EVERY-th cycle the server is
 * SIGKILLed instead of stopped, and DEL_DEV must still succeed.  Exits 1 at the first failure,
 * naming the step; prints the cycle count and the slowest cycle.
 *
 * usage: ublk-churn --lookups CYCLES PROBERS
 *
 * Lookups racing ADD_DEV and DEL_DEV: PROBERS processes send GET_DEV_INFO for one id without
 * pause while this one adds a device with that id and deletes it again, CYCLES times (no server,
 * no disk).  A driver that lets a lookup find a device that ADD_DEV has not finished setting up
 * takes a reference on it too early, which the kernel log shows (a kobject or refcount
 * warning).  Prints how many lookups found the device and how many did not: both must be many
 * for the run to have raced anything.
 *
 * usage: ublk-churn --reuse CYCLES
 *
 * An id taken again while DEL_DEV waits for it: each cycle this process adds a device with
 * one id and deletes it, while a second process tries to add a device with the same id over
 * and over, and keeps it once it has it until this DEL_DEV has returned.  DEL_DEV waits until
 * its own device is freed, not until the id is free: a DEL_DEV still waiting after 10 s
 * fails the run (once the taker has given the id back, it must return).  Prints in how many
 * cycles the second process took the id while DEL_DEV had not yet returned: t-kmod-edge wants
 * at least 5 (17 to 35 seen in 500 cycles).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ublk_cmd.h"
#include "ublk-test-ctrl.h"

#define DEPTH 4
#define MAX_IO (64 * 1024)
#define DEV_BYTES (1024 * 1024)

static int ctrl_fd;
static struct io_uring ctrl_ring;

static int ring_cmd(struct io_uring *ring, uint32_t op, uint32_t dev_id, void *addr, uint32_t len,
                    uint64_t data0)
{
        struct ublksrv_ctrl_cmd cmd = {
                .dev_id = dev_id,
                .queue_id = (uint16_t) -1,
                .addr = (uintptr_t) addr,
                .len = len,
                .data = { data0 },
        };

        return ublk_ctrl_send(ring, ctrl_fd, op, &cmd);
}

static int ctrl_cmd(uint32_t op, uint32_t dev_id, void *addr, uint32_t len, uint64_t data0)
{
        return ring_cmd(&ctrl_ring, op, dev_id, addr, len, data0);
}

/* ADD_DEV on RING of the device every mode uses (1 queue of DEPTH), id DEV_ID or any if -1. */
static int add_dev(struct io_uring *ring, uint32_t dev_id, struct ublksrv_ctrl_dev_info *info)
{
        *info = (struct ublksrv_ctrl_dev_info) {
                .nr_hw_queues = 1,
                .queue_depth = DEPTH,
                .max_io_buf_bytes = MAX_IO,
                .dev_id = dev_id,
                .flags = UBLK_F_CMD_IOCTL_ENCODE,
        };
        return ring_cmd(ring, UBLK_U_CMD_ADD_DEV, dev_id, info, sizeof(*info), 0);
}

/* The ring has room for every tag's command twice over: there is always an SQE. */
static void io_cmd(struct io_uring *ring, int fd, uint32_t op, uint16_t tag, int32_t res, void *buf)
{
        struct io_uring_sqe *sqe = ublk_cmd_sqe(ring, fd, op);
        struct ublksrv_io_cmd cmd = { .q_id = 0, .tag = tag, .result = res, .addr = (uintptr_t) buf };

        if (!sqe)
                abort();
        sqe->user_data = tag;
        memcpy(sqe->cmd, &cmd, sizeof(cmd));
}

/* The server: fetch every tag, answer reads with zeroes, until every command comes back aborted. */
static int serve(uint32_t dev_id)
{
        static char bufs[DEPTH][MAX_IO] __attribute__((aligned(4096)));
        size_t descs_len = ((DEPTH * sizeof(struct ublksrv_io_desc)) + 4095) & ~(size_t) 4095;
        const struct ublksrv_io_desc *descs;
        struct io_uring ring;
        char path[32];
        int fd, left = DEPTH;

        snprintf(path, sizeof(path), "/dev/ublkc%u", dev_id);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return perror(path), 1;
        descs = mmap(NULL, descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, UBLKSRV_CMD_BUF_OFFSET);
        if (descs == MAP_FAILED)
                return perror("mmap"), 1;
        if (io_uring_queue_init(2 * DEPTH, &ring, IORING_SETUP_SQE128) < 0)
                return fputs("io_uring_queue_init failed\n", stderr), 1;
        for (uint16_t t = 0; t < DEPTH; t++)
                io_cmd(&ring, fd, UBLK_U_IO_FETCH_REQ, t, 0, bufs[t]);
        io_uring_submit(&ring);

        while (left > 0) {
                struct io_uring_cqe *cqe;
                uint16_t tag;
                int res;

                if (io_uring_wait_cqe(&ring, &cqe) < 0)
                        return fputs("io_uring_wait_cqe failed\n", stderr), 1;
                tag = (uint16_t) cqe->user_data;
                res = cqe->res;
                io_uring_cqe_seen(&ring, cqe);
                if (res == UBLK_IO_RES_ABORT) {
                        left--;
                        continue;
                }
                if (res != UBLK_IO_RES_OK)
                        return fprintf(stderr, "tag %u: result %d\n", tag, res), 1;

                const struct ublksrv_io_desc *d = &descs[tag];
                uint32_t bytes = d->nr_sectors << 9;

                if (ublksrv_get_op(d) == UBLK_IO_OP_READ)
                        memset(bufs[tag], 0, bytes);
                else if (ublksrv_get_op(d) != UBLK_IO_OP_WRITE)
                        bytes = 0;
                io_cmd(&ring, fd, UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, (int32_t) bytes, bufs[tag]);
                io_uring_submit(&ring);
        }
        return 0;
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

#define FAIL(...) do { \
                fprintf(stderr, "ublk-churn: cycle %u: ", n); \
                fprintf(stderr, __VA_ARGS__); \
                fputc('\n', stderr); \
                return -1; \
        } while (0)

static int cycle(unsigned n, bool kill_server)
{
        struct ublksrv_ctrl_dev_info info;
        struct ublk_params params = {
                .len = sizeof(params),
                .types = UBLK_PARAM_TYPE_BASIC,
                .basic = {
                        .logical_bs_shift = 9,
                        .physical_bs_shift = 12,
                        .io_min_shift = 9,
                        .io_opt_shift = 12,
                        .max_sectors = MAX_IO >> 9,
                        .dev_sectors = DEV_BYTES >> 9,
                },
        };
        static char block[4096] __attribute__((aligned(4096)));
        char path[32];
        pid_t server;
        int r, status, fd;

        r = add_dev(&ctrl_ring, (uint32_t) -1, &info);
        if (r < 0)
                FAIL("ADD_DEV: %s", strerror(-r));
        r = ctrl_cmd(UBLK_U_CMD_SET_PARAMS, info.dev_id, &params, sizeof(params), 0);
        if (r < 0)
                FAIL("SET_PARAMS on %u: %s", info.dev_id, strerror(-r));

        server = fork();
        if (server < 0)
                FAIL("fork: %m");
        if (server == 0)
                _exit(serve(info.dev_id));

        r = ctrl_cmd(UBLK_U_CMD_START_DEV, info.dev_id, NULL, 0, (uint64_t) server);
        if (r < 0) {
                kill(server, SIGKILL);
                FAIL("START_DEV on %u: %s", info.dev_id, strerror(-r));
        }

        snprintf(path, sizeof(path), "/dev/ublkb%u", info.dev_id);
        fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (fd < 0)
                FAIL("open %s: %m", path);
        memset(block, 0xa5, sizeof(block));
        if (pread(fd, block, sizeof(block), DEV_BYTES - sizeof(block)) != (ssize_t) sizeof(block))
                FAIL("read %s: %m", path);
        close(fd);
        for (size_t i = 0; i < sizeof(block); i++)
                if (block[i])
                        FAIL("%s: byte %zu is %#x, the server sent zeroes", path, i, block[i]);

        if (kill_server) {
                if (kill(server, SIGKILL) < 0)
                        FAIL("kill: %m");
        } else {
                r = ctrl_cmd(UBLK_U_CMD_STOP_DEV, info.dev_id, NULL, 0, 0);
                if (r < 0)
                        FAIL("STOP_DEV on %u: %s", info.dev_id, strerror(-r));
        }
        if (waitpid(server, &status, 0) < 0)
                FAIL("waitpid: %m");
        if (!kill_server && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                FAIL("server of %u ended with status %#x", info.dev_id, status);

        r = ctrl_cmd(UBLK_U_CMD_DEL_DEV, info.dev_id, NULL, 0, 0);
        if (r < 0)
                FAIL("DEL_DEV on %u: %s", info.dev_id, strerror(-r));
        return 0;
}

/* What the probers of --lookups share with the process that adds and deletes. */
struct probe_counts {
        atomic_bool stop;
        atomic_ulong found, absent;
};

/* A prober: GET_DEV_INFO of dev_id until told to stop; anything but found or ENODEV is a failure. */
static int probe(uint32_t dev_id, struct probe_counts *pc)
{
        struct ublksrv_ctrl_dev_info info;
        struct io_uring ring;
        unsigned long found = 0, absent = 0;
        int r = ublk_ctrl_ring_init(&ring);

        if (r < 0)
                return fprintf(stderr, "prober: io_uring_queue_init: %s\n", strerror(-r)), 1;
        while (!atomic_load(&pc->stop)) {
                r = ring_cmd(&ring, UBLK_U_CMD_GET_DEV_INFO, dev_id, &info, sizeof(info), 0);
                if (r == 0 && info.dev_id == dev_id)
                        found++;
                else if (r == -ENODEV)
                        absent++;
                else
                        return fprintf(stderr, "prober: GET_DEV_INFO of %u: %d (dev_id %u)\n",
                                       dev_id, r, info.dev_id), 1;
        }
        atomic_fetch_add(&pc->found, found);
        atomic_fetch_add(&pc->absent, absent);
        return 0;
}

static int lookups(unsigned cycles, unsigned nr_probers)
{
        struct ublksrv_ctrl_dev_info info;
        struct probe_counts *pc;
        pid_t probers[16];
        uint32_t dev_id;
        unsigned n;
        int r, bad = 0;

        if (nr_probers < 1 || nr_probers > 16)
                return fputs("ublk-churn: 1 to 16 probers\n", stderr), 2;
        pc = mmap(NULL, sizeof(*pc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (pc == MAP_FAILED)
                return perror("mmap"), 1;
        /* The first device's id is the one every cycle asks for again. */
        r = add_dev(&ctrl_ring, (uint32_t) -1, &info);
        if (r < 0)
                return fprintf(stderr, "ublk-churn: ADD_DEV: %s\n", strerror(-r)), 1;
        dev_id = info.dev_id;
        for (unsigned i = 0; i < nr_probers; i++) {
                probers[i] = fork();
                if (probers[i] < 0)
                        return perror("fork"), 1;
                if (probers[i] == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        _exit(probe(dev_id, pc));
                }
        }
        for (n = 1; n <= cycles; n++) {
                r = ctrl_cmd(UBLK_U_CMD_DEL_DEV, dev_id, NULL, 0, 0);
                if (r < 0) {
                        fprintf(stderr, "ublk-churn: cycle %u: DEL_DEV on %u: %s\n", n, dev_id, strerror(-r));
                        break;
                }
                if (n == cycles)
                        break;
                r = add_dev(&ctrl_ring, dev_id, &info);
                if (r < 0) {
                        fprintf(stderr, "ublk-churn: cycle %u: ADD_DEV of id %u: %s\n", n, dev_id, strerror(-r));
                        break;
                }
        }
        atomic_store(&pc->stop, true);
        for (unsigned i = 0; i < nr_probers; i++) {
                int status;

                if (waitpid(probers[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
                        bad++;
        }
        if (r < 0 || bad)
                return fprintf(stderr, "ublk-churn: %u of %u probers failed\n", bad, nr_probers), 1;
        printf("cycles=%u probers=%u found=%lu absent=%lu\n", cycles, nr_probers,
               atomic_load(&pc->found), atomic_load(&pc->absent));
        return 0;
}

/*
 * --reuse: the deleter tells the taker on one pipe when its DEL_DEV begins ('D') and when it
 * has returned ('R'), and closes the pipe to stop it (read_byte() gives 'S'); the taker answers
 * on another once it has given the id back ('C').  Blocking reads, no spinning: a busy loop beside the driver's own work only
 * slows everything down under TCG.
 */
struct reuse_counts {
        atomic_bool in_del;             /* the deleter's DEL_DEV has not returned yet */
        atomic_ulong taken, raced;
};

static char read_byte(int fd)
{
        char c;

        return read(fd, &c, 1) == 1 ? c : 'S';
}

/* The taker: ADD_DEV of dev_id while the deleter deletes it, the device kept until it is done. */
static int take(uint32_t dev_id, struct reuse_counts *rc, int from_deleter, int to_deleter)
{
        struct io_uring ring;
        int r = ublk_ctrl_ring_init(&ring);

        if (r < 0)
                return fprintf(stderr, "taker: io_uring_queue_init: %s\n", strerror(-r)), 1;
        while (read_byte(from_deleter) == 'D') {
                bool took = false;

                while (atomic_load(&rc->in_del)) {
                        struct ublksrv_ctrl_dev_info info;

                        r = add_dev(&ring, dev_id, &info);
                        if (r == 0) {
                                took = true;
                                atomic_fetch_add(&rc->taken, 1);
                                if (atomic_load(&rc->in_del))
                                        atomic_fetch_add(&rc->raced, 1);
                                break;
                        }
                        if (r != -EEXIST)
                                return fprintf(stderr, "taker: ADD_DEV of id %u: %s\n", dev_id, strerror(-r)), 1;
                }
                /* Kept until the deleter's DEL_DEV has returned: giving it back earlier would hide a wait for it. */
                if (read_byte(from_deleter) != 'R')
                        return fputs("taker: the deleter went away\n", stderr), 1;
                if (took) {
                        r = ring_cmd(&ring, UBLK_U_CMD_DEL_DEV, dev_id, NULL, 0, 0);
                        if (r < 0)
                                return fprintf(stderr, "taker: DEL_DEV of id %u: %s\n", dev_id, strerror(-r)), 1;
                }
                if (write(to_deleter, "C", 1) != 1)
                        return 1;
        }
        return 0;
}

/*
 * DEL_DEV of dev_id on ctrl_ring, waiting at most BOUND_S seconds for it: -ETIME if it is still
 * waiting (it runs on in the driver; its completion is left on the ring, *pending set).
 */
static int del_bounded(uint32_t dev_id, unsigned bound_s, bool *pending)
{
        struct ublksrv_ctrl_cmd cmd = { .dev_id = dev_id, .queue_id = (uint16_t) -1 };
        struct io_uring_sqe *sqe = ublk_cmd_sqe(&ctrl_ring, ctrl_fd, UBLK_U_CMD_DEL_DEV);
        struct __kernel_timespec ts = { .tv_sec = bound_s };
        struct io_uring_cqe *cqe;
        int r;

        *pending = false;
        if (!sqe)
                return -EBUSY;
        memcpy(sqe->cmd, &cmd, sizeof(cmd));
        r = io_uring_submit(&ctrl_ring);
        if (r < 0)
                return r;
        r = io_uring_wait_cqe_timeout(&ctrl_ring, &cqe, &ts);
        *pending = r == -ETIME;
        if (r < 0)
                return r;
        r = cqe->res;
        io_uring_cqe_seen(&ctrl_ring, cqe);
        return r;
}

static int reuse(unsigned cycles)
{
        struct ublksrv_ctrl_dev_info info;
        int to_taker[2], from_taker[2];
        struct reuse_counts *rc;
        uint32_t dev_id;
        pid_t taker;
        bool pending = false;
        int r, status, failed = 0;

        rc = mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (rc == MAP_FAILED)
                return perror("mmap"), 1;
        if (pipe(to_taker) < 0 || pipe(from_taker) < 0)
                return perror("pipe"), 1;
        r = add_dev(&ctrl_ring, (uint32_t) -1, &info);
        if (r < 0)
                return fprintf(stderr, "ublk-churn: ADD_DEV: %s\n", strerror(-r)), 1;
        dev_id = info.dev_id;
        taker = fork();
        if (taker < 0)
                return perror("fork"), 1;
        if (taker == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(to_taker[1]);
                close(from_taker[0]);
                _exit(take(dev_id, rc, to_taker[0], from_taker[1]));
        }
        close(to_taker[0]);
        close(from_taker[1]);
        for (unsigned n = 1; n <= cycles && !failed; n++) {
                if (n > 1) {
                        r = add_dev(&ctrl_ring, dev_id, &info);
                        if (r < 0) {
                                fprintf(stderr, "ublk-churn: cycle %u: ADD_DEV of id %u: %s\n", n, dev_id, strerror(-r));
                                break;
                        }
                }
                atomic_store(&rc->in_del, true);
                if (write(to_taker[1], "D", 1) != 1)
                        return perror("write"), 1;
                r = del_bounded(dev_id, 10, &pending);
                atomic_store(&rc->in_del, false);
                if (r < 0) {
                        fprintf(stderr, "ublk-churn: cycle %u: DEL_DEV of id %u: %s\n", n, dev_id,
                                pending ? "still waiting after 10 s (for the device that has taken its id since?)"
                                        : strerror(-r));
                        failed = 1;
                }
                if (write(to_taker[1], "R", 1) != 1 || read_byte(from_taker[0]) != 'C')
                        failed = 1;
                /* The taker's device is gone now: a DEL_DEV that waited for it must return. */
                if (pending) {
                        struct io_uring_cqe *cqe;

                        if (io_uring_wait_cqe(&ctrl_ring, &cqe) == 0) {
                                fprintf(stderr, "ublk-churn: cycle %u: that DEL_DEV returned %d once the taker's device was deleted\n",
                                        n, cqe->res);
                                io_uring_cqe_seen(&ctrl_ring, cqe);
                        }
                }
        }
        close(to_taker[1]);
        if (waitpid(taker, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
                failed = 1;
        if (failed || r < 0)
                return 1;
        printf("cycles=%u taken=%lu raced=%lu\n", cycles, atomic_load(&rc->taken), atomic_load(&rc->raced));
        return 0;
}

int main(int argc, char **argv)
{
        unsigned cycles, kill_every, slowest_n = 0;
        uint64_t start, slowest = 0;
        bool lookup_mode = argc == 4 && !strcmp(argv[1], "--lookups");
        bool reuse_mode = argc == 3 && !strcmp(argv[1], "--reuse");

        if (!lookup_mode && !reuse_mode && (argc < 2 || argc > 3 || argv[1][0] == '-'))
                return fputs("usage: ublk-churn CYCLES [KILL_EVERY]\n"
                             "       ublk-churn --lookups CYCLES PROBERS\n"
                             "       ublk-churn --reuse CYCLES\n", stderr), 2;

        ctrl_fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
        if (ctrl_fd < 0)
                return perror("/dev/ublk-control"), 1;
        if (ublk_ctrl_ring_init(&ctrl_ring) < 0)
                return fputs("io_uring_queue_init failed\n", stderr), 1;
        if (lookup_mode)
                return lookups((unsigned) strtoul(argv[2], NULL, 10), (unsigned) strtoul(argv[3], NULL, 10));
        if (reuse_mode)
                return reuse((unsigned) strtoul(argv[2], NULL, 10));
        cycles = (unsigned) strtoul(argv[1], NULL, 10);
        kill_every = argc > 2 ? (unsigned) strtoul(argv[2], NULL, 10) : 0;

        start = now_ms();
        for (unsigned n = 1; n <= cycles; n++) {
                uint64_t t = now_ms();

                if (cycle(n, kill_every && n % kill_every == 0) < 0)
                        return 1;
                t = now_ms() - t;
                if (t > slowest) {
                        slowest = t;
                        slowest_n = n;
                }
        }
        printf("cycles=%u killed=%u total_ms=%llu slowest_ms=%llu slowest_cycle=%u\n", cycles,
               kill_every ? cycles / kill_every : 0, (unsigned long long) (now_ms() - start),
               (unsigned long long) slowest, slowest_n);
        return 0;
}
