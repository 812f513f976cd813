/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * qcow2 image engine (issue 33): maps guest requests on a qcow2 image (version 2 or 3) to host
 * IO on its file, allocating, copying on write and keeping the refcounts crash-safe.  Written
 * from qemu's docs/interop/qcow2.txt; no code of qemu's.
 *
 * Contract:
 *  - The engine does no IO of its own on a queue: it asks for host reads, writes and fsyncs
 *    through the queue's qcow2_io_ops.submit() and continues when the caller hands the result
 *    back with qcow2_io_done().  Only qcow2_open()/qcow2_close()/qcow2_open_raw() read and write
 *    the file themselves (synchronously: they run on the control side).
 *  - A struct qcow2_queue is one thread's context (later: one ublk queue and its io_uring).  Every
 *    call naming a queue is made on that queue's thread; requests submitted on a queue complete
 *    there (req->complete), and every host IO the engine submits on a queue is completed there.
 *    submit() must not call qcow2_io_done() itself (queue the completion; call it later).
 *    A queue may serve requests on several images; several queues may use one image at once.
 *  - When work becomes ready on a queue because of another thread (a table it waited for was
 *    loaded, an allocation it waited behind finished), the engine calls ops->wake(ctx) from
 *    that other thread, with an engine lock held: wake() must only signal (an eventfd write) and
 *    never call into the engine; the owner thread then calls qcow2_queue_run().
 *  - Shared metadata (L1, L2 and refcount-block cache, allocator, dirty tables) is under one
 *    mutex per image, held for in-memory work only, never while a host IO is submitted.
 *  - Results are 0 or a negative errno.  qcow2_open() fills reason with a short sentence naming
 *    the problem ("image is encrypted (crypt_method 2, LUKS): not supported").
 *  - Crash safety (a kill or power loss at any point leaves no corruption, only leaks): refcount
 *    increments are written and fsync'd before an L1/L2 entry pointing at the cluster is
 *    written; an L2 entry is written after the data it points to (COW data included) is written
 *    and fsync'd (so that a power loss never leaves an entry pointing past the file's end); a new L2
 *    table is fsync'd before the L1 entry pointing at it; a cluster's refcount is decremented
 *    only after the entry that no longer points at it is written and fsync'd.  A guest write
 *    completes after its L2 update is written; QCOW2_FLUSH writes the dirty refcount blocks and
 *    fsyncs (a barrier for every write completed before it).
 *  - Images with the dirty bit (or the corrupt bit) open read-only only: the fix named is
 *    "qemu-img check -r all".  Lazy refcounts are never used.  Unknown autoclear bits are cleared
 *    when an image is opened for writing, as the spec asks.
 *  - The refcount table is grown, if needed, when an image is opened for writing, to cover
 *    every cluster the image could need (never while requests run); past that, writes that
 *    allocate fail with -ENOSPC and the image stays consistent.
 *  - Extended L2 entries (subclusters) are served read-only (reads, also as a backing level);
 *    opening such an image for writing is refused, naming the feature.
 *  - Not served: encryption, external data files, unknown incompatible features:
 *    qcow2_open() refuses them, naming the feature.
 *
 * Driving it from a ublk queue thread (what a qcow2 target does):
 *  - control side: open the chain base first (qcow2_open_raw for a raw base, qcow2_open with
 *    read_only=true for qcow2 levels, each given the level below), then the top; check each
 *    level's qcow2_backing_name()/qcow2_backing_format() against what the caller passed.
 *  - queue_init: q = qcow2_queue_new(&ops, ctx) with an eventfd on the ring for ops->wake.
 *  - queue_io: fill the tag's struct qcow2_req (op, off, len, buf = the tag's buffer,
 *    complete = commit the tag) and qcow2_submit(img, q, req).
 *  - ops->submit: one SQE (read / write / fsync of io->fd) with user_data naming io; its CQE:
 *    qcow2_io_done(q, io, cqe->res).  The eventfd's CQE: qcow2_queue_run(q).
 *  - teardown: when no request is in flight and qcow2_busy() is false: qcow2_close() (top
 *    first, then the levels below), qcow2_queue_free().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qcow2_image;
struct qcow2_queue;

enum qcow2_io_op {
        QCOW2_IO_READ,
        QCOW2_IO_WRITE,
        QCOW2_IO_FSYNC,
};

/* One host IO the engine asks for; its address is the continuation cookie. */
struct qcow2_io {
        enum qcow2_io_op op;
        int fd;                 /* the image's fd, or a backing level's */
        unsigned level;         /* 0: the image the request was submitted on; N: Nth backing */
        void *buf;
        size_t len;
        uint64_t off;
};

struct qcow2_io_ops {
        /* Start io; later call qcow2_io_done(q, io, result) on this queue's thread, result the
         * byte count (a short read is end of file: the engine zero-fills the rest) or -errno. */
        void (*submit)(void *ctx, struct qcow2_io *io);
        /* Work is ready on the queue: have its thread call qcow2_queue_run() soon. */
        void (*wake)(void *ctx);
};

struct qcow2_queue *qcow2_queue_new(const struct qcow2_io_ops *ops, void *ctx);
/* Only when nothing is in flight on the queue. */
void qcow2_queue_free(struct qcow2_queue *q);
/* Run the work other threads made ready (after ops->wake()). */
void qcow2_queue_run(struct qcow2_queue *q);
/* The result of a host IO submitted on q. */
void qcow2_io_done(struct qcow2_queue *q, struct qcow2_io *io, int result);

enum qcow2_req_op {
        QCOW2_READ,
        QCOW2_WRITE,
        QCOW2_FLUSH,
        QCOW2_DISCARD,          /* frees whole clusters; reads then give zeros (v3) or what
                                 * they gave before (v2 over a backing file, which could not
                                 * say "zero") */
        QCOW2_WRITE_ZEROES,
};

struct qcow2_req {
        enum qcow2_req_op op;
        uint64_t off;           /* guest bytes; 512-byte aligned */
        uint64_t len;
        void *buf;              /* READ/WRITE: len bytes */
        void (*complete)(struct qcow2_req *req, int result);
        void *priv;             /* the caller's */
        /* engine-private */
        struct qcow2_image *img_;
        struct qcow2_queue *q_;
        int pending_;
        int err_;
};

/* Submit req on queue q (this thread's).  req->complete() is called on this thread, possibly
 * before qcow2_submit() returns (a read of zeros needs no host IO).  Requests past the end of
 * the image complete with -EINVAL, writes on a read-only image with -EROFS. */
void qcow2_submit(struct qcow2_image *img, struct qcow2_queue *q, struct qcow2_req *req);

struct qcow2_opts {
        uint64_t cache_bytes;   /* L2 + refcount block cache; 0: default (see qcow2_open) */
};

/*
 * Open the qcow2 image on fd (the engine keeps using fd, never closes it).  backing: the image
 * its backing file name refers to, opened before (qcow2_open or qcow2_open_raw) and outliving
 * this one, or NULL: then unallocated clusters read as zeros (an image that names a backing
 * file must be given one: -EINVAL otherwise).  The default cache maps 32 GiB of guest space
 * (at least 16 tables, at most 32 MiB unless 16 tables need more).
 */
int qcow2_open(struct qcow2_image **out, int fd, bool read_only, struct qcow2_image *backing,
               const struct qcow2_opts *opts, char *reason, size_t reason_len);
/* A raw file as a backing level (read-only): size bytes, reads past the file's end are zeros. */
int qcow2_open_raw(struct qcow2_image **out, int fd, uint64_t size, char *reason, size_t reason_len);
/* Host IO of the image is in flight (a request's, or background metadata work that outlives
 * the requests: a refcount sync, a table write).  Wait for false (keep completing IO and
 * running woken queues) before qcow2_close(). */
bool qcow2_busy(const struct qcow2_image *img);
/* Only when no request is in flight and !qcow2_busy(): writes what is dirty (synchronously),
 * gives back the pool's clusters, frees.  0 or -errno. */
int qcow2_close(struct qcow2_image *img);

/* The backing file name stored in the image (NULL if none) and its format extension (NULL if
 * the image does not say: probe the file's magic). */
const char *qcow2_backing_name(const struct qcow2_image *img);
const char *qcow2_backing_format(const struct qcow2_image *img);
uint64_t qcow2_size(const struct qcow2_image *img);
uint32_t qcow2_cluster_size(const struct qcow2_image *img);     /* 0 for raw */
int qcow2_version(const struct qcow2_image *img);               /* 2, 3; 0 for raw */
const char *qcow2_compression(const struct qcow2_image *img);   /* "zlib" / "zstd" */

/*
 * The header check alone, on the first bytes of a file (the first cluster, or less if the file
 * is shorter) and the file's size: 0 or -errno with reason.  qcow2_open() starts with it; the
 * fuzz target calls it too.
 */
struct qcow2_header_info {
        int version;
        uint32_t cluster_bits;
        uint64_t size;
        uint32_t l1_size;
        uint64_t l1_offset;
        uint64_t rt_offset;
        uint32_t rt_clusters;
        uint32_t nb_snapshots;
        uint64_t snapshots_offset;
        uint64_t incompatible, compatible, autoclear;
        uint32_t refcount_order;
        uint32_t header_length;
        int compression;                /* 0 zlib, 1 zstd */
        uint64_t backing_offset;
        uint32_t backing_len;
        char backing_name[1024];
        char backing_format[64];
        bool dirty, corrupt;
        bool ext_l2;                    /* extended L2 entries (subclusters): read-only */
};
int qcow2_parse_header(const uint8_t *buf, size_t buf_len, uint64_t file_size,
                       struct qcow2_header_info *h, char *reason, size_t reason_len);
