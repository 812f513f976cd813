/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the qcow2 engine's header and table parser (src/daemon/qcow2/header.c):
 * any bytes as an image file must give either an open image or an error with a reason, never a
 * crash, a leak or undefined behaviour (built with ASan+UBSan).  What opens is then read at a
 * few offsets through the engine (L2 tables, compressed clusters, a backing file named by the
 * image), and, for some inputs, opened for writing and written, discarded and flushed: every
 * request must complete (a request left waiting with no host IO to do is a lost wake-up).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fq {
        struct qcow2_queue *q;
        struct qcow2_io *io[256];
        int n;
        int woken;
};

static void fq_submit(void *ctx, struct qcow2_io *io)
{
        struct fq *f = ctx;

        if (f->n == 256)
                __builtin_trap();
        f->io[f->n++] = io;
}

static void fq_wake(void *ctx)
{
        ((struct fq *) ctx)->woken = 1;
}

static const struct qcow2_io_ops fq_ops = { fq_submit, fq_wake };

static void done(struct qcow2_req *req, int result)
{
        *(int *) req->priv = 1;
}

static void run(struct fq *f, struct qcow2_image *img, enum qcow2_req_op op, uint64_t off,
                uint64_t len, void *buf)
{
        int finished = 0;
        struct qcow2_req req = { .op = op, .off = off, .len = len, .buf = buf,
                                 .complete = done, .priv = &finished };

        qcow2_submit(img, f->q, &req);
        while (!finished) {
                struct qcow2_io *io;
                ssize_t r;

                if (f->woken) {
                        f->woken = 0;
                        qcow2_queue_run(f->q);
                        continue;
                }
                if (!f->n)
                        __builtin_trap();       /* waiting for nothing */
                io = f->io[0];
                memmove(f->io, f->io + 1, (size_t) --f->n * sizeof(*f->io));
                if (io->op == QCOW2_IO_READ)
                        r = pread(io->fd, io->buf, io->len, (off_t) io->off);
                else if (io->op == QCOW2_IO_WRITE)
                        r = pwrite(io->fd, io->buf, io->len, (off_t) io->off);
                else
                        r = 0;
                qcow2_io_done(f->q, io, r < 0 ? -5 : (int) r);
        }
        /* Background work (a refcount sync restarted for nobody) must end too. */
        while (f->n || f->woken) {
                struct qcow2_io *io;
                ssize_t r = 0;
                if (f->woken) {
                        f->woken = 0;
                        qcow2_queue_run(f->q);
                        continue;
                }
                io = f->io[0];
                memmove(f->io, f->io + 1, (size_t) --f->n * sizeof(*f->io));
                if (io->op == QCOW2_IO_READ)
                        r = pread(io->fd, io->buf, io->len, (off_t) io->off);
                else if (io->op == QCOW2_IO_WRITE)
                        r = pwrite(io->fd, io->buf, io->len, (off_t) io->off);
                qcow2_io_done(f->q, io, r < 0 ? -5 : (int) r);
        }
}

static void exercise(struct qcow2_image *img, int fd_unused, bool write)
{
        static uint8_t buf[1 << 17];
        struct fq f = { 0 };
        uint64_t size = qcow2_size(img);

        (void) fd_unused;
        f.q = qcow2_queue_new(&fq_ops, &f);
        for (int i = 0; i < 6 && size >= 512; i++) {
                uint64_t off = ((uint64_t) i * 0x9e3779b97f4a7c15ULL % (size / 512 + 1)) * 512;
                uint64_t len = i == 0 ? 4096 : sizeof(buf) >> i;
                if (off >= size)
                        off = 0;
                if (len > size - off)
                        len = (size - off) & ~511ULL;
                if (!len)
                        continue;
                if (write && i % 3 == 1) {
                        memset(buf, i, len);
                        run(&f, img, QCOW2_WRITE, off, len, buf);
                } else if (write && i % 3 == 2)
                        run(&f, img, i == 2 ? QCOW2_DISCARD : QCOW2_WRITE_ZEROES, off, len, NULL);
                else
                        run(&f, img, QCOW2_READ, off, len, buf);
        }
        if (write)
                run(&f, img, QCOW2_FLUSH, 0, 0, NULL);
        qcow2_queue_free(f.q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct qcow2_header_info h;
        struct qcow2_image *img = NULL, *backing = NULL;
        struct qcow2_opts opts = { .cache_bytes = 1 };
        char reason[256];
        int fd, bfd = -1;
        bool writable = size > 0 && (data[size - 1] & 1);

        reason[0] = 0;
        if (qcow2_parse_header(data, size, size, &h, reason, sizeof(reason)) < 0 &&
            (!reason[0] || !memchr(reason, 0, sizeof(reason))))
                __builtin_trap();
        fd = memfd_create("fuzz-qcow2", 0);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return 0;
        }
        if (h.backing_len) {
                static const uint8_t pattern[4096] = { 1, 2, 3 };
                bfd = memfd_create("fuzz-backing", 0);
                if (bfd >= 0 && write(bfd, pattern, sizeof(pattern)) == (ssize_t) sizeof(pattern))
                        qcow2_open_raw(&backing, bfd, 65536, reason, sizeof(reason));
        }
        reason[0] = 0;
        if (qcow2_open(&img, fd, !writable, backing, &opts, reason, sizeof(reason)) == 0) {
                exercise(img, fd, writable);
                qcow2_close(img);
        } else if (!reason[0])
                __builtin_trap();
        qcow2_close(backing);
        if (bfd >= 0)
                close(bfd);
        close(fd);
        return 0;
}
