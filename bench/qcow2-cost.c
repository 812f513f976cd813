/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench/qcow2-cost: the qcow2 engine's own user-space work per 4 KiB request, on the host,
 * without ublk or io_uring: one queue, DEPTH requests in flight, every host IO the engine asks
 * for done with pread/pwrite/fdatasync in submission order and handed back with
 * qcow2_io_done().  Counted with callgrind (bench/RESULTS.md, qcow2 section):
 *   cc -O2 -Isrc/daemon/qcow2 bench/qcow2-cost.c build/src/daemon/qcow2/libqcow2.a \
 *      -lz -lzstd -lpthread -o /tmp/qcow2-cost
 *   valgrind --tool=callgrind --toggle-collect=run /tmp/qcow2-cost IMG read|write N DEPTH
 *   callgrind_annotate --inclusive=yes callgrind.out.PID | grep -E 'qcow2_(submit|io_done)|host_io'
 * qcow2_submit + qcow2_io_done (inclusive) is the engine's cost: map, allocate, metadata
 * writes' bookkeeping, its mallocs and locks; host_io is the syscalls' user-space side.  It
 * also prints the host IOs the engine asked for, per request.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"

static struct qcow2_io *fifo[65536];
static unsigned head, tail;
static unsigned long n_rd, n_wr, n_fs, b_wr;

static void submit(void *ctx, struct qcow2_io *io)
{
        (void) ctx;
        fifo[tail++ % 65536] = io;
}

static void wake(void *ctx)
{
        (void) ctx;
}

static const struct qcow2_io_ops ops = { .submit = submit, .wake = wake };

static __attribute__((noinline)) int host_io(struct qcow2_io *io)
{
        switch (io->op) {
        case QCOW2_IO_READ:
                n_rd++;
                return (int) pread(io->fd, io->buf, io->len, (off_t) io->off);
        case QCOW2_IO_WRITE:
                n_wr++;
                b_wr += io->len;
                return (int) pwrite(io->fd, io->buf, io->len, (off_t) io->off);
        default:
                n_fs++;
                return fdatasync(io->fd) < 0 ? -1 : 0;
        }
}

static struct qcow2_image *img;
static struct qcow2_queue *q;
static unsigned long issued, done, n_req;
static uint64_t size;
static enum qcow2_req_op op;
static unsigned long long rnd = 88172645463325252ULL;

static void start(struct qcow2_req *r);

static void complete(struct qcow2_req *r, int res)
{
        if (res < 0) {
                fprintf(stderr, "request failed: %d\n", res);
                exit(1);
        }
        done++;
        if (issued < n_req)
                start(r);
}

static void start(struct qcow2_req *r)
{
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        r->op = op;
        r->off = (rnd % (size / 4096)) * 4096;
        r->len = 4096;
        r->complete = complete;
        issued++;
        qcow2_submit(img, q, r);
}

static __attribute__((noinline)) void run(struct qcow2_req *reqs, unsigned depth)
{
        for (unsigned i = 0; i < depth && issued < n_req; i++)
                start(&reqs[i]);
        while (done < n_req || head != tail) {
                struct qcow2_io *io;

                if (head == tail) {
                        fprintf(stderr, "stalled: %lu of %lu done\n", done, n_req);
                        exit(1);
                }
                io = fifo[head++ % 65536];
                qcow2_io_done(q, io, host_io(io));
        }
}

int main(int argc, char **argv)
{
        char why[256] = "";
        struct qcow2_req *reqs;
        unsigned depth;
        int fd, r;

        if (argc != 5) {
                fprintf(stderr, "usage: %s IMG read|write N DEPTH\n", argv[0]);
                return 2;
        }
        op = strcmp(argv[2], "read") == 0 ? QCOW2_READ : QCOW2_WRITE;
        n_req = strtoul(argv[3], NULL, 0);
        depth = (unsigned) strtoul(argv[4], NULL, 0);
        fd = open(argv[1], O_RDWR | O_CLOEXEC);
        if (fd < 0 || (r = qcow2_open(&img, fd, false, NULL, NULL, why, sizeof(why))) < 0) {
                fprintf(stderr, "%s: cannot open: %s\n", argv[1], why);
                return 1;
        }
        size = qcow2_size(img);
        q = qcow2_queue_new(&ops, NULL);
        reqs = calloc(depth, sizeof(*reqs));
        for (unsigned i = 0; i < depth; i++)
                if (posix_memalign(&reqs[i].buf, 4096, 4096))
                        return 1;
        run(reqs, depth);
        printf("%lu requests (%s, depth %u): host reads %.3f, writes %.3f (%.0f bytes), fsyncs %.3f per request\n",
               n_req, argv[2], depth, (double) n_rd / n_req, (double) n_wr / n_req, (double) b_wr / n_req,
               (double) n_fs / n_req);
        while (qcow2_busy(img)) {
                struct qcow2_io *io = fifo[head++ % 65536];
                qcow2_io_done(q, io, host_io(io));
        }
        r = qcow2_close(img);
        qcow2_queue_free(q);
        return r < 0;
}
