/* SPDX-License-Identifier: MIT */
/*
 * ublk-churn: adds, starts, stops and deletes ublk devices in a loop, talking to the driver
 * directly (no ublkd), to look for leaks and hangs in a ublk driver (t-kmod-churn).
 *
 * usage: ublk-churn CYCLES [KILL_EVERY]
 *
 * Each cycle: ADD_DEV (1 queue, depth 4), SET_PARAMS (1 MiB), a forked server process opens
 * /dev/ublkcN and serves zeroes for reads, START_DEV (the partition scan is served), one O_DIRECT
 * read of the block device, then STOP_DEV and DEL_DEV.  Every KILL_EVERY-th cycle the server is
 * SIGKILLed instead of stopped, and DEL_DEV must still succeed.  Exits 1 at the first failure,
 * naming the step; prints the cycle count and the slowest cycle.
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
#include <sys/mman.h>
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

static int ctrl_cmd(uint32_t op, uint32_t dev_id, void *addr, uint32_t len, uint64_t data0)
{
        struct ublksrv_ctrl_cmd cmd = {
                .dev_id = dev_id,
                .queue_id = (uint16_t) -1,
                .addr = (uintptr_t) addr,
                .len = len,
                .data = { data0 },
        };

        return ublk_ctrl_send(&ctrl_ring, ctrl_fd, op, &cmd);
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
        struct ublksrv_ctrl_dev_info info = {
                .nr_hw_queues = 1,
                .queue_depth = DEPTH,
                .max_io_buf_bytes = MAX_IO,
                .dev_id = (uint32_t) -1,
                .flags = UBLK_F_CMD_IOCTL_ENCODE,
        };
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

        r = ctrl_cmd(UBLK_U_CMD_ADD_DEV, (uint32_t) -1, &info, sizeof(info), 0);
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

int main(int argc, char **argv)
{
        unsigned cycles, kill_every, slowest_n = 0;
        uint64_t start, slowest = 0;

        if (argc < 2 || argc > 3)
                return fputs("usage: ublk-churn CYCLES [KILL_EVERY]\n", stderr), 2;
        cycles = (unsigned) strtoul(argv[1], NULL, 10);
        kill_every = argc > 2 ? (unsigned) strtoul(argv[2], NULL, 10) : 0;

        ctrl_fd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
        if (ctrl_fd < 0)
                return perror("/dev/ublk-control"), 1;
        if (ublk_ctrl_ring_init(&ctrl_ring) < 0)
                return fputs("io_uring_queue_init failed\n", stderr), 1;

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
