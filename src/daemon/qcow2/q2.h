/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The qcow2 engine's insides, shared by its files:
 *   header.c    header check, open (synchronous reads), refcount table growth at open, close
 *   task.c      queues, tasks (park / wake / run), host IO plumbing, fsync batching
 *   cache.c     L2 / refcount block cache (LRU, byte budget), metadata write-back (q2_meta)
 *   refcount.c  refcount entries, allocator, refcount sync (blocks, fsync, table, fsync)
 *   compress.c  compressed clusters (zlib raw deflate, zstd)
 *   request.c   requests cut into chunks; write/COW, discard, write-zeroes, flush
 *   read.c      the read chunks
 *
 * Rules: every field of struct qcow2_image below "under lock" is read and written with
 * img->lock held.  A task runs only on its queue's thread; it parks on one wait list at a time
 * (with img->lock held) and is run again from the start of its current state when woken.
 * Host IO is queued on the running thread's queue (q2_cur()) and submitted by the queue's pump
 * once no lock is held.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qcow2.h"

#define Q2_L1E_OFFSET   0x00fffffffffffe00ULL
#define Q2_L2E_OFFSET   0x00fffffffffffe00ULL
#define Q2_L2E_OFFSET_ALL 0x00ffffffffffffffULL     /* a compressed cluster's offset bits */
#define Q2_RTE_OFFSET   0xfffffffffffffe00ULL
#define Q2_COPIED       (1ULL << 63)
#define Q2_COMPRESSED   (1ULL << 62)
#define Q2_ZERO         1ULL

#define Q2_INCOMPAT_DIRTY       (1ULL << 0)
#define Q2_INCOMPAT_CORRUPT     (1ULL << 1)
#define Q2_INCOMPAT_DATA_FILE   (1ULL << 2)
#define Q2_INCOMPAT_COMPRESSION (1ULL << 3)
#define Q2_INCOMPAT_EXTL2       (1ULL << 4)

#define Q2_MAX_L1_BYTES (32u << 20)
#define Q2_MAX_RT_BYTES (8u << 20)

static inline uint64_t q2_be64(const void *p)
{
        const uint8_t *b = p;
        return (uint64_t) b[0] << 56 | (uint64_t) b[1] << 48 | (uint64_t) b[2] << 40 |
               (uint64_t) b[3] << 32 | (uint64_t) b[4] << 24 | (uint64_t) b[5] << 16 |
               (uint64_t) b[6] << 8 | b[7];
}
static inline uint32_t q2_be32(const void *p)
{
        const uint8_t *b = p;
        return (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3];
}
static inline void q2_put64(void *p, uint64_t v)
{
        uint8_t *b = p;
        for (int i = 7; i >= 0; i--, v >>= 8)
                b[i] = (uint8_t) v;
}
static inline void q2_put32(void *p, uint32_t v)
{
        uint8_t *b = p;
        for (int i = 3; i >= 0; i--, v >>= 8)
                b[i] = (uint8_t) v;
}

/* ---- tasks and queues (task.c) ---------------------------------------------------------- */
struct q2_task;
typedef void (*q2_run_fn)(struct q2_task *t);

struct q2_task {
        q2_run_fn run;
        struct qcow2_queue *q;          /* owner: runs only on its thread */
        struct q2_task *next;           /* on the ready list or on one wait list */
        int pending;                    /* host IOs and child requests not yet done */
        int err;                        /* first error of those */
        bool on_ready;
};

struct q2_hio {
        struct qcow2_io io;
        struct q2_hio *next;            /* the queue's outbox */
        struct qcow2_image *img;
        struct q2_task *task;           /* pending-- on completion, or: */
        void (*done)(struct q2_hio *h, int res);
        void *arg;
        uint64_t gen;                   /* for done(): what this write covers */
        void *copy;                     /* freed after done() */
};

struct qcow2_queue {
        const struct qcow2_io_ops *ops;
        void *ctx;
        pthread_mutex_t lock;           /* the ready list (pushed by any thread) */
        struct q2_task *ready_head, *ready_tail;
        struct q2_hio *out_head, *out_tail;     /* owner thread only */
        bool pumping;
};

struct qcow2_queue *q2_cur(void);
/* Make t ready on its queue (any thread; img->lock may be held). */
void q2_wake(struct q2_task *t);
void q2_wake_list(struct q2_task **list);
/* Park t on *list (img->lock held). */
void q2_park(struct q2_task **list, struct q2_task *t);
/* Queue a host IO on this thread's queue; submitted by the pump.  task: pending++ now,
 * pending-- (and run when 0) when done. */
struct q2_hio *q2_hio_new(struct qcow2_image *img, enum qcow2_io_op op, void *buf, size_t len,
                          uint64_t off);
void q2_hio_task(struct q2_hio *h, struct q2_task *t);
void q2_hio_submit(struct q2_hio *h);
/* Run ready tasks and submit queued host IO until there is none (no lock held). */
void q2_pump(struct qcow2_queue *q);

/* ---- metadata cache and write-back (cache.c) -------------------------------------------- */
/* A piece of metadata written as a whole from a snapshot copy: one write in flight at a time;
 * gen counts changes (image-wide counter), wgen is the gen the last finished write covered. */
struct q2_meta {
        uint64_t off;
        uint32_t len;
        uint8_t *mem;
        uint64_t gen, wgen;
        uint32_t dlo, dhi;              /* bytes changed since the last write started */
        bool writing;
        struct q2_task *waiters;
};

enum { Q2_CE_L2, Q2_CE_RB };
enum { Q2_CE_LOADING, Q2_CE_READY };

struct q2_centry {
        struct q2_meta m;               /* m.off: the table's host offset, m.mem: its cluster */
        int kind, state;
        bool dirty;                     /* refcount block: changed since the sync's snapshot */
        int writing;                    /* refcount block: sync writes in flight */
        struct q2_centry *hnext;
        struct q2_centry *lprev, *lnext;        /* LRU, most recent first */
};

struct q2_busy {
        uint64_t key;
        struct q2_task *waiters;
        struct q2_busy *next;
};

struct qcow2_image {
        int fd;
        bool raw, read_only;
        unsigned level;                 /* 0 for the top; set by qcow2_open on its backing */
        struct qcow2_image *backing;
        struct qcow2_header_info h;
        uint64_t size;
        uint32_t cluster_bits, cluster_size;
        uint32_t l2_entries;            /* per table */
        uint32_t rb_bits, rb_entries;   /* refcount width, entries per block */
        uint64_t csize_shift, csize_mask, coffset_mask;
        uint64_t file_size;             /* at open */

        _Atomic unsigned inflight;      /* host IOs submitted and not done (qcow2_busy) */

        pthread_mutex_t lock;
        /* under lock: */
        uint8_t *l1_disk;               /* the L1 table as on disk, rounded up to clusters */
        struct q2_meta *l1_units;       /* 512-byte units of l1_disk */
        uint32_t l1_units_n;
        uint8_t *rt_disk;               /* the refcount table as on disk */
        uint32_t rt_entries;
        bool *rt_dirty;                 /* per 512-byte unit of rt_disk */
        uint32_t rt_units_n;

        struct q2_centry **hash;
        uint32_t hash_n;
        struct q2_centry *lru_head, *lru_tail;
        uint64_t cache_bytes, cache_budget;
        uint64_t meta_gen;              /* q2_meta.gen counter */

        struct q2_busy **busy;          /* guest clusters / L1 slots being changed */
        uint32_t busy_n;

        uint64_t free_hint;             /* no free cluster below this one */
        /* Clusters whose refcount of 1 is durable and that lie inside the durable file end:
         * new data clusters taken from here need no refcount sync.  A write that finds it
         * empty reserves pool_k more and makes them durable with its own sync (refilling).
         * Bit 0 of an entry: the cluster is pristine (reads as zeros). */
        uint64_t *pool;
        uint32_t pool_n, pool_k;
        bool refilling;
        uint64_t ext_end;               /* the file is at least this long, durably */
        uint64_t hw;                    /* no cluster at or past it was ever written */
        /* The last compressed clusters read, decompressed (a 4 KiB read of a 64 KiB
         * compressed cluster need not inflate it again for the next 4 KiB). */
        struct q2_dcache {
                uint64_t key;           /* the L2 entry; 0: empty */
                uint64_t used;
                uint8_t *data;
        } dc[4];
        uint32_t dc_n;
        uint64_t dc_clock;
        int broken;                     /* a metadata write failed: no more writes */

        /* fsync batching */
        uint64_t fs_started, fs_done, fs_want;
        bool fs_running;
        struct q2_task *fs_waiters;
        /* refcount sync: dirty blocks, fsync, dirty table units, fsync */
        uint64_t rc_gen, rc_durable, rc_want;
        bool rc_running;
        struct q2_task *rc_waiters;
        struct q2_rcsync *rcs;
};

/* cache.c */
int q2_cache_init(struct qcow2_image *img, uint64_t budget);
void q2_cache_free(struct qcow2_image *img);
struct q2_centry *q2_cache_find(struct qcow2_image *img, uint64_t off);
/* The table at off, READY: 0 and *out; -EAGAIN: t parked until it is loaded (t NULL: the
 * load is started, nobody parks); <0: error. */
int q2_cache_get(struct qcow2_image *img, uint64_t off, int kind, struct q2_task *t,
                 struct q2_centry **out);
/* A table that is new (not on disk yet): READY with the given contents (NULL: zeros). */
struct q2_centry *q2_cache_new(struct qcow2_image *img, uint64_t off, int kind, const void *src);
void q2_cache_evict(struct qcow2_image *img);
/* The cluster at off was freed: forget the table it held (if clean). */
void q2_cache_drop(struct qcow2_image *img, uint64_t off);
/* Bytes [lo, hi) of m changed: a gen the caller waits for with q2_meta_wait (a write is
 * started if none is running; it writes the changed range, in 4 KiB-aligned pieces, or 512 B
 * for smaller clusters). */
uint64_t q2_meta_dirty(struct qcow2_image *img, struct q2_meta *m, uint32_t lo, uint32_t hi);
/* 0 when a write covering gen finished; -EAGAIN: t parked. */
int q2_meta_wait(struct qcow2_image *img, struct q2_meta *m, uint64_t gen, struct q2_task *t);
/* An fsync started after every write completed so far: the seq to wait for. */
uint64_t q2_fsync_need(struct qcow2_image *img);
int q2_fsync_wait(struct qcow2_image *img, uint64_t seq, struct q2_task *t);
/* Guest-cluster / L1-slot serialization: 0 acquired, -EAGAIN parked. */
int q2_busy_get(struct qcow2_image *img, uint64_t key, struct q2_task *t);
void q2_busy_put(struct qcow2_image *img, uint64_t key);

/* refcount.c */
uint64_t q2_rb_get(const struct qcow2_image *img, const uint8_t *blk, uint32_t i);
void q2_rb_set(const struct qcow2_image *img, uint8_t *blk, uint32_t i, uint64_t v);
/* Allocate one cluster (refcount 0 -> 1 in memory): 0 and *off, -EAGAIN parked (t NULL: not
 * parked), -ENOSPC.  *pristine (if not NULL): the cluster lies past everything the file held
 * at open and nothing was allocated there since, so it reads as zeros. */
int q2_alloc_cluster(struct qcow2_image *img, struct q2_task *t, uint64_t *off, bool *pristine);
/* Refcount of the cluster at host offset off += delta (in memory).  -EAGAIN parked. */
int q2_refcount_update(struct qcow2_image *img, uint64_t off, int delta, struct q2_task *t);
/* Everything in the refcount structures now, and every write completed now, durable: the gen
 * to wait for with q2_rc_wait. */
uint64_t q2_rc_need(struct qcow2_image *img);
int q2_rc_wait(struct qcow2_image *img, uint64_t gen, struct q2_task *t);
void q2_rc_free(struct qcow2_image *img);

/* compress.c */
int q2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len);


/* ---- guest request chunks (request.c, read.c) ------------------------------------------ */
enum { MODE_READ, MODE_DATA, MODE_SET, MODE_FLUSH, MODE_RAW };

/* One piece of a guest request: a task of its own. */
struct q2_chunk {
        struct q2_task t;
        struct qcow2_image *img;
        struct qcow2_req *req;
        int mode, state;
        uint64_t gcl;
        uint32_t coff, clen;
        uint8_t *gbuf;                  /* the guest's bytes; NULL: zeros */
        bool busy, l2busy;
        uint64_t newe;                  /* MODE_SET: the entry to set */
        uint64_t l2off, old, newh, newl2, oldl2, need, rc_need;
        uint8_t *cbuf, *zbuf;           /* COW cluster; compressed bytes (from zbuf + zskip) */
        size_t zlen, zskip;
        uint64_t free_next, free_end;   /* host clusters still to decrement */
        bool pooled;                    /* newh came from the pool: durable already */
        bool refill;                    /* this chunk refills the pool with res[] */
        bool detach;                    /* its request is completed; it frees the old cluster */
        uint64_t *res;
        uint32_t res_n;
        uint64_t rlen;                  /* MODE_READ: guest bytes from gcl/coff on */
};

void q2_chunk_done(struct q2_chunk *c, int err);
/* dst <- guest bytes [goff, goff+len) of the backing chain (zeros where it has none). */
void q2_read_backing(struct q2_chunk *c, uint8_t *dst, uint64_t goff, uint64_t len);
void q2_host_io(struct q2_chunk *c, enum qcow2_io_op op, void *buf, size_t len, uint64_t off);
/* Host offset of a normal entry, or -EIO if it cannot be one. */
int q2_entry_host(const struct qcow2_image *img, uint64_t e, uint64_t *host);
int q2_start_compressed_read(struct q2_chunk *c, uint64_t e);
void q2_read_run(struct q2_task *t);

/* request.c */
void q2_req_start(struct qcow2_image *img, struct qcow2_queue *q, struct qcow2_req *req);

/* task.c: every buffer the engine reads or writes through is 4096-aligned and a multiple of
 * 512 bytes long, and so is every host IO's offset: a file opened with O_DIRECT works where
 * 512-byte alignment is enough (the guest's buffers must be aligned too).  zero: cleared. */
void *q2_buf(size_t len, bool zero);

/* header.c: synchronous IO at open/close */
int q2_pread_full(int fd, void *buf, size_t len, uint64_t off);
int q2_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
