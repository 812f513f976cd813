/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest requests.  A request is cut into chunks, each a task that runs its state machine and
 * parks where it must wait: one chunk per guest cluster for writes, discards and
 * write-zeroes; reads take as many clusters as map alike (read.c).  Changes to one guest
 * cluster are serialized by the busy set, and so is the allocation of the L2 table of one L1
 * slot; reads are not (a read racing a write of the same bytes may see either, as on a disk).
 *
 * Write, discard, write-zeroes:
 *   busy(cluster) -> L2 table writable?  (no table, or one without COPIED: a new table, a copy
 *         of the old one or zeros; written; refcount sync (its fsync covers that write); L1
 *         entry set and written; the old table's refcount decremented after an fsync)
 *   -> entry:  a normal cluster with COPIED is written in place;  otherwise a new cluster is
 *         taken from the pool (refcount durable already) or allocated, filled (old data,
 *         backing data, decompressed data or zeros, then the guest's bytes; only the guest's
 *         bytes into a pristine pool cluster when the rest must be zeros), written; an
 *         allocated one then waits for a refcount sync (its fsync covers the allocation and
 *         the data); then the L2 entry is set and written.  Discard / write-zeroes of a whole
 *         cluster set the entry to 0 or ZERO instead.
 *   -> a replaced cluster (old data, compressed) is decremented after an fsync that follows
 *         the L2 write.
 * Flush: a refcount sync (dirty refcount blocks, fsync, table, fsync).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "q2.h"

enum {
        M_BUSY, M_L2, M_L2NEW_W, M_L2NEW_RC, M_L1W, M_L1FS, M_L1FREE, M_ENTRY, M_INPLACE,
        M_FILL, M_DATA, M_L2W, M_FREE_FS, M_FREE,
};
#define L2KEY(l1i) ((1ULL << 63) | (l1i))

void q2_chunk_done(struct q2_chunk *c, int err)
{
        struct qcow2_image *img = c->img;
        struct qcow2_req *req = c->req;

        if (c->busy || c->l2busy || c->refill) {
                pthread_mutex_lock(&img->lock);
                if (c->refill)
                        img->refilling = false; /* failed: res[] leak, as after a crash */
                if (c->busy)
                        q2_busy_put(img, c->gcl);
                if (c->l2busy)
                        q2_busy_put(img, L2KEY(c->gcl / img->l2_entries));
                pthread_mutex_unlock(&img->lock);
        }
        free(c->cbuf);
        free(c->zbuf);
        free(c->res);
        free(c);
        if (!req)
                return;         /* detached: its request completed already */
        if (err && !req->err_)
                req->err_ = err;
        if (--req->pending_ == 0)
                req->complete(req, req->err_);
}

/* The guest's part is done (the L2 entry that no longer names the old cluster is written):
 * complete it now; the chunk goes on alone to free the old cluster. */
static void detach(struct q2_chunk *c)
{
        struct qcow2_req *req = c->req;

        c->req = NULL;
        if (--req->pending_ == 0)
                req->complete(req, req->err_);
}

static void child_done(struct qcow2_req *child, int res)
{
        struct q2_task *t = child->priv;

        if (res < 0 && !t->err)
                t->err = res;
        free(child);
        if (--t->pending == 0)
                q2_wake(t);
}

/* dst <- guest bytes [goff, goff+len) of the backing chain (zeros where it has none). */
void q2_read_backing(struct q2_chunk *c, uint8_t *dst, uint64_t goff, uint64_t len)
{
        struct qcow2_image *b = c->img->backing;
        struct qcow2_req *child;
        uint64_t n = 0;

        if (b && goff < b->size)
                n = b->size - goff < len ? b->size - goff : len;
        if (n < len)
                memset(dst + n, 0, len - n);
        if (!n)
                return;
        if (b->raw) {   /* whole sectors (O_DIRECT); past the file's end reads zeros */
                n = (n + 511) & ~511ULL;
                if (n > len)
                        n = len;
        }
        child = calloc(1, sizeof(*child));
        if (!child)
                abort();
        child->op = QCOW2_READ;
        child->off = goff;
        child->len = n;
        child->buf = dst;
        child->complete = child_done;
        child->priv = &c->t;
        c->t.pending++;
        q2_req_start(b, c->t.q, child);
}

void q2_host_io(struct q2_chunk *c, enum qcow2_io_op op, void *buf, size_t len, uint64_t off)
{
        struct q2_hio *h = q2_hio_new(c->img, op, buf, len, off);

        q2_hio_task(h, &c->t);
        q2_hio_submit(h);
}

/* Host offset of a normal entry, or 0 with -EIO if it cannot be one. */
int q2_entry_host(const struct qcow2_image *img, uint64_t e, uint64_t *host)
{
        uint64_t o = e & Q2_L2E_OFFSET;

        if (o & (img->cluster_size - 1) || o < img->cluster_size)
                return -EIO;
        *host = o;
        return 0;
}

/* A data cluster written in place must not be metadata (a corrupt L2 entry would have the
 * write destroy a table): the L1 and refcount tables, and every table in the cache.  Lock
 * held. */
static bool is_metadata(struct qcow2_image *img, uint64_t host)
{
        uint64_t cs = img->cluster_size;
        uint64_t l1_end = img->h.l1_offset + img->l1_units_n * 512ULL;
        uint64_t rt_end = img->h.rt_offset + ((uint64_t) img->h.rt_clusters << img->cluster_bits);

        return (img->l1_units_n && host < l1_end && img->h.l1_offset < host + cs) ||
               (host < rt_end && img->h.rt_offset < host + cs) || q2_cache_find(img, host);
}

int q2_start_compressed_read(struct q2_chunk *c, uint64_t e)
{
        struct qcow2_image *img = c->img;
        uint64_t off = e & img->coffset_mask & Q2_L2E_OFFSET_ALL;
        uint64_t nsec = ((e >> img->csize_shift) & img->csize_mask) + 1;

        /* whole sectors, for O_DIRECT */
        c->zskip = off & 511;
        c->zlen = (size_t) (nsec * 512) - c->zskip;
        c->zbuf = q2_buf(nsec * 512, false);
        if (!c->zbuf)
                return -ENOMEM;
        q2_host_io(c, QCOW2_IO_READ, c->zbuf, nsec * 512, off & ~511ULL);
        return 0;
}

/* The pool is empty: reserve up to pool_k clusters (without waiting for refcount blocks to
 * load: fewer then) to become durable with this chunk's refcount sync, and grow the file to
 * hold them (a 512-byte write at the end of the last one, which nobody else writes yet).
 * Lock held. */
static void refill(struct q2_chunk *c)
{
        struct qcow2_image *img = c->img;
        uint64_t end = 0, off;

        if (img->refilling || !img->pool_k)
                return;
        c->res = malloc(img->pool_k * sizeof(*c->res));
        if (!c->res)
                return;
        bool pristine;

        while (c->res_n < img->pool_k && q2_alloc_cluster(img, NULL, &off, &pristine) == 0) {
                c->res[c->res_n++] = off | pristine;
                if (off + img->cluster_size > end)
                        end = off + img->cluster_size;
        }
        if (!c->res_n)
                return;
        c->refill = true;
        img->refilling = true;
        if (end > img->ext_end) {
                static uint8_t zeros[512] __attribute__((aligned(4096)));       /* only written from */
                q2_host_io(c, QCOW2_IO_WRITE, zeros, 512, end - 512);
        }
}

static bool needs_free(uint64_t e)
{
        return (e & Q2_COMPRESSED) || (e & Q2_L2E_OFFSET);
}

/* One pass of the mutating state machine with img->lock held: 1 to run on, 0 when parked or
 * waiting for IO (or done: *done set). */
static int mut_step(struct q2_chunk *c, int *done)
{
        struct qcow2_image *img = c->img;
        struct q2_task *t = &c->t;
        uint64_t cs = img->cluster_size, l1i = c->gcl / img->l2_entries;
        uint64_t l2i = c->gcl % img->l2_entries, l1e, e, host;
        struct q2_centry *ce;
        struct q2_meta *unit = &img->l1_units[8 * l1i / 512];
        bool pristine = false, compressed, zero, zeros;
        int r;

#define PARK_OR_FAIL(expr) do { r = (expr); if (r == -EAGAIN) return 0; if (r < 0) { *done = r; return 0; } } while (0)
        if (img->broken) {
                *done = img->broken;
                return 0;
        }
        switch (c->state) {
        case M_BUSY:
                PARK_OR_FAIL(q2_busy_get(img, c->gcl, t));
                c->busy = true;
                c->state = M_L2;
                return 1;
        case M_L2:
                l1e = q2_be64(img->l1_disk + 8 * l1i);
                if ((l1e & Q2_COPIED) && (l1e & Q2_L1E_OFFSET)) {
                        if (c->l2busy) {        /* the last owner made it */
                                q2_busy_put(img, L2KEY(l1i));
                                c->l2busy = false;
                        }
                        c->l2off = l1e & Q2_L1E_OFFSET;
                        c->state = M_ENTRY;
                        return 1;
                }
                if (c->mode == MODE_SET && c->newe == 0 && !(l1e & Q2_L1E_OFFSET)) {
                        *done = 1;
                        return 0;
                }
                if (!c->l2busy) {
                        PARK_OR_FAIL(q2_busy_get(img, L2KEY(l1i), t));
                        c->l2busy = true;
                        return 1;       /* look again: the last owner may have made it */
                }
                c->oldl2 = l1e & Q2_L1E_OFFSET;
                {
                        const void *src = NULL;
                        struct q2_centry *nce;
                        if (c->oldl2) {
                                PARK_OR_FAIL(q2_cache_get(img, c->oldl2, Q2_CE_L2, t, &ce));
                                src = ce->m.mem;
                        }
                        PARK_OR_FAIL(q2_alloc_cluster(img, t, &c->newl2, NULL));
                        nce = q2_cache_new(img, c->newl2, Q2_CE_L2, src);
                        if (!nce) {
                                *done = -EIO;
                                return 0;
                        }
                        c->need = q2_meta_dirty(img, &nce->m, 0, img->cluster_size);
                }
                c->state = M_L2NEW_W;
                return 1;
        case M_L2NEW_W:
                if ((ce = q2_cache_find(img, c->newl2)))
                        PARK_OR_FAIL(q2_meta_wait(img, &ce->m, c->need, t));
                c->rc_need = q2_rc_need(img);
                c->state = M_L2NEW_RC;
                return 1;
        case M_L2NEW_RC:
                PARK_OR_FAIL(q2_rc_wait(img, c->rc_need, t));
                q2_put64(img->l1_disk + 8 * l1i, c->newl2 | Q2_COPIED);
                c->need = q2_meta_dirty(img, unit, 0, 512);
                c->state = M_L1W;
                return 1;
        case M_L1W:
                PARK_OR_FAIL(q2_meta_wait(img, unit, c->need, t));
                if (c->oldl2) {
                        c->need = q2_fsync_need(img);
                        c->state = M_L1FS;
                        return 1;
                }
                c->state = M_L1FREE;
                return 1;
        case M_L1FS:
                PARK_OR_FAIL(q2_fsync_wait(img, c->need, t));
                c->state = M_L1FREE;
                return 1;
        case M_L1FREE:
                if (c->oldl2) {
                        PARK_OR_FAIL(q2_refcount_update(img, c->oldl2, -1, t));
                        c->oldl2 = 0;
                }
                q2_busy_put(img, L2KEY(l1i));
                c->l2busy = false;
                c->l2off = c->newl2;
                c->state = M_ENTRY;
                return 1;
        case M_ENTRY:
                PARK_OR_FAIL(q2_cache_get(img, c->l2off, Q2_CE_L2, t, &ce));
                e = q2_be64(ce->m.mem + 8 * l2i);
                if (img->h.version == 2 && (e & Q2_ZERO) && !(e & Q2_COMPRESSED)) {
                        *done = -EIO;   /* reserved in version 2 */
                        return 0;
                }
                c->old = e;
                if (c->mode == MODE_SET) {
                        if (e == c->newe || (c->newe == 0 && !needs_free(e) && !(e & Q2_ZERO))) {
                                *done = 1;
                                return 0;
                        }
                        q2_put64(ce->m.mem + 8 * l2i, c->newe);
                        c->need = q2_meta_dirty(img, &ce->m, (uint32_t) (8 * l2i), (uint32_t) (8 * l2i + 8));
                        c->state = M_L2W;
                        return 1;
                }
                if (!(e & Q2_COMPRESSED) && (e & Q2_COPIED) && !(e & Q2_ZERO) && (e & Q2_L2E_OFFSET)) {
                        if (q2_entry_host(img, e, &host) < 0 || is_metadata(img, host)) {
                                *done = -EIO;
                                return 0;
                        }
                        if (!c->gbuf && !(c->cbuf = q2_buf(c->clen, true))) {
                                *done = -ENOMEM;
                                return 0;
                        }
                        c->state = M_INPLACE;
                        q2_host_io(c, QCOW2_IO_WRITE, c->gbuf ? c->gbuf : c->cbuf, c->clen, host + c->coff);
                        return 0;
                }
                if (img->pool_n) {
                        c->newh = img->pool[--img->pool_n];
                        c->pooled = true;
                        pristine = c->newh & 1;
                        c->newh &= ~1ULL;
                } else {
                        PARK_OR_FAIL(q2_alloc_cluster(img, t, &c->newh, NULL));
                        refill(c);
                }
                if (c->clen == cs && c->gbuf) {
                        c->state = M_DATA;
                        q2_host_io(c, QCOW2_IO_WRITE, c->gbuf, cs, c->newh);
                        return 0;
                }
                /* What the rest of the cluster must hold: zeros, or old data. */
                compressed = e & Q2_COMPRESSED;
                zero = !compressed && (e & Q2_ZERO);    /* v3 only: checked above */
                zeros = c->clen == cs || zero ||
                        (!compressed && !(e & Q2_L2E_OFFSET) && !img->backing);
                if (pristine && zeros) {
                        /* Inside the durable file end, never written: zeros already. */
                        c->state = M_DATA;
                        if (c->gbuf)
                                q2_host_io(c, QCOW2_IO_WRITE, c->gbuf, c->clen, c->newh + c->coff);
                        return t->pending ? 0 : 1;
                }
                c->cbuf = q2_buf(cs, false);
                if (!c->cbuf) {
                        *done = -ENOMEM;
                        return 0;
                }
                c->state = M_FILL;
                if (zeros)
                        memset(c->cbuf, 0, cs);
                else if (compressed)
                        PARK_OR_FAIL(q2_start_compressed_read(c, e));
                else if (e & Q2_L2E_OFFSET) {
                        if (q2_entry_host(img, e, &host) < 0) {
                                *done = -EIO;
                                return 0;
                        }
                        q2_host_io(c, QCOW2_IO_READ, c->cbuf, cs, host);
                } else
                        c->state = -M_FILL;     /* the backing read: after unlocking */
                return t->pending ? 0 : 1;
        case M_INPLACE:
                *done = 1;
                return 0;
        case M_FILL:
                if (c->zbuf) {
                        r = q2_decompress(img->h.compression, c->zbuf + c->zskip, c->zlen, c->cbuf, cs);
                        if (r < 0) {
                                *done = r;
                                return 0;
                        }
                }
                if (c->gbuf)
                        memcpy(c->cbuf + c->coff, c->gbuf, c->clen);
                else
                        memset(c->cbuf + c->coff, 0, c->clen);
                c->state = M_DATA;
                q2_host_io(c, QCOW2_IO_WRITE, c->cbuf, cs, c->newh);
                return 0;
        case M_DATA:
                /* The sync's fsync covers the data write too: after a power loss, no entry
                 * points at a cluster whose data (or the file's growth to hold it) is lost.
                 * A pooled cluster is inside the durable file end already. */
                if (!c->pooled) {
                        if (!c->rc_need)
                                c->rc_need = q2_rc_need(img);
                        PARK_OR_FAIL(q2_rc_wait(img, c->rc_need, t));
                }
                if (c->refill) {
                        for (uint32_t i = 0; i < c->res_n; i++) {
                                img->pool[img->pool_n++] = c->res[i];
                                if ((c->res[i] & ~1ULL) + cs > img->ext_end)
                                        img->ext_end = (c->res[i] & ~1ULL) + cs;
                        }
                        c->res_n = 0;
                        c->refill = false;
                        img->refilling = false;
                }
                PARK_OR_FAIL(q2_cache_get(img, c->l2off, Q2_CE_L2, t, &ce));
                if (q2_be64(ce->m.mem + 8 * l2i) != c->old) {
                        *done = -EIO;   /* cannot happen: the cluster is ours (busy) */
                        return 0;
                }
                q2_put64(ce->m.mem + 8 * l2i, c->newh | Q2_COPIED);
                c->need = q2_meta_dirty(img, &ce->m, (uint32_t) (8 * l2i), (uint32_t) (8 * l2i + 8));
                c->state = M_L2W;
                return 1;
        case M_L2W:
                if ((ce = q2_cache_find(img, c->l2off)))
                        PARK_OR_FAIL(q2_meta_wait(img, &ce->m, c->need, t));
                if (!needs_free(c->old)) {
                        *done = 1;
                        return 0;
                }
                if (c->old & Q2_COMPRESSED) {
                        uint64_t off = c->old & img->coffset_mask & Q2_L2E_OFFSET_ALL;
                        uint64_t nsec = ((c->old >> img->csize_shift) & img->csize_mask) + 1;
                        uint64_t end = (off & ~511ULL) + nsec * 512;
                        c->free_next = off >> img->cluster_bits;
                        c->free_end = ((end - 1) >> img->cluster_bits) + 1;
                } else {
                        c->free_next = (c->old & Q2_L2E_OFFSET) >> img->cluster_bits;
                        c->free_end = c->free_next + 1;
                }
                c->need = q2_fsync_need(img);
                c->state = M_FREE_FS;
                q2_busy_put(img, c->gcl);       /* the next change to the cluster may start */
                c->busy = false;
                c->detach = true;
                return 1;
        case M_FREE_FS:
                PARK_OR_FAIL(q2_fsync_wait(img, c->need, t));
                c->state = M_FREE;
                return 1;
        case M_FREE:
                while (c->free_next < c->free_end) {
                        PARK_OR_FAIL(q2_refcount_update(img, c->free_next << img->cluster_bits, -1, t));
                        c->free_next++;
                }
                *done = 1;
                return 0;
        }
        *done = -EINVAL;
        return 0;
#undef PARK_OR_FAIL
}

static void mut_run(struct q2_task *t)
{
        struct q2_chunk *c = (struct q2_chunk *) t;
        struct qcow2_image *img = c->img;
        int done = 0;

        if (t->err)
                return q2_chunk_done(c, t->err);
        pthread_mutex_lock(&img->lock);
        while (mut_step(c, &done))
                if (c->state == -M_FILL)
                        break;
        pthread_mutex_unlock(&img->lock);
        if (c->detach && c->req)
                detach(c);
        if (c->state == -M_FILL) {
                c->state = M_FILL;
                q2_read_backing(c, c->cbuf, c->gcl << img->cluster_bits, img->cluster_size);
                if (!t->pending)
                        q2_wake(t);
                return;
        }
        if (done)
                q2_chunk_done(c, done < 0 ? done : 0);
}

static void flush_run(struct q2_task *t)
{
        struct q2_chunk *c = (struct q2_chunk *) t;
        struct qcow2_image *img = c->img;
        int r;

        if (t->err)
                return q2_chunk_done(c, t->err);
        pthread_mutex_lock(&img->lock);
        if (c->state == 0) {
                c->rc_need = q2_rc_need(img);
                c->state = 1;
        }
        r = q2_rc_wait(img, c->rc_need, t);
        pthread_mutex_unlock(&img->lock);
        if (r != -EAGAIN)
                q2_chunk_done(c, r);
}

static void raw_run(struct q2_task *t)
{
        struct q2_chunk *c = (struct q2_chunk *) t;

        if (t->err || c->state)
                return q2_chunk_done(c, t->err);
        c->state = 1;
        q2_host_io(c, QCOW2_IO_READ, c->gbuf, c->req->len, c->req->off);
}

static struct q2_chunk *chunk_new(struct qcow2_image *img, struct qcow2_queue *q,
                                  struct qcow2_req *req, int mode)
{
        struct q2_chunk *c = calloc(1, sizeof(*c));

        if (!c)
                abort();
        c->img = img;
        c->req = req;
        c->mode = mode;
        c->t.q = q;
        c->t.run = mode == MODE_READ ? q2_read_run : mode == MODE_FLUSH ? flush_run :
                   mode == MODE_RAW ? raw_run : mut_run;
        req->pending_++;
        return c;
}

static void fail_now(struct qcow2_req *req, int err)
{
        req->complete(req, err);
}

void q2_req_start(struct qcow2_image *img, struct qcow2_queue *q, struct qcow2_req *req)
{
        uint64_t cs = img->cluster_size, off = req->off, end = req->off + req->len;
        bool v3 = img->h.version == 3, backing = img->backing != NULL;
        struct q2_chunk *first = NULL, **tail = &first;

        req->img_ = img;
        req->q_ = q;
        req->pending_ = 1;      /* held until every chunk is queued */
        req->err_ = 0;
        if (req->op != QCOW2_FLUSH &&
            (end < off || end > (img->raw ? (img->size + 511) & ~511ULL : img->size)))
                return fail_now(req, -EINVAL);
        if (req->op != QCOW2_READ && req->op != QCOW2_FLUSH && (img->read_only || img->raw))
                return fail_now(req, -EROFS);
        if (img->raw) {
                if (req->op == QCOW2_READ && req->len) {
                        struct q2_chunk *c = chunk_new(img, q, req, MODE_RAW);
                        c->gbuf = req->buf;
                        *tail = c;
                }
        } else if (req->op == QCOW2_READ) {
                if (req->len) {
                        struct q2_chunk *c = chunk_new(img, q, req, MODE_READ);
                        c->gcl = off >> img->cluster_bits;
                        c->coff = (uint32_t) (off & (cs - 1));
                        c->rlen = req->len;
                        c->gbuf = req->buf;
                        *tail = c;
                }
        } else if (req->op == QCOW2_FLUSH) {
                if (!img->read_only)
                        *tail = chunk_new(img, q, req, MODE_FLUSH);
        } else {
                while (off < end) {
                        uint64_t gcl = off >> img->cluster_bits;
                        uint32_t coff = (uint32_t) (off & (cs - 1));
                        uint32_t clen = (uint32_t) (end - off < cs - coff ? end - off : cs - coff);
                        bool whole = coff == 0 && (clen == cs || off + clen == img->size);
                        int mode = MODE_READ;
                        uint64_t newe = 0;

                        switch (req->op) {
                        case QCOW2_READ:
                                break;
                        case QCOW2_WRITE:
                                mode = MODE_DATA;
                                break;
                        case QCOW2_DISCARD:
                                mode = whole && (v3 || !backing) ? MODE_SET : -1;
                                newe = v3 && backing ? Q2_ZERO : 0;
                                break;
                        case QCOW2_WRITE_ZEROES:
                                mode = whole && (v3 || !backing) ? MODE_SET : MODE_DATA;
                                newe = v3 && backing ? Q2_ZERO : 0;
                                break;
                        default:
                                return fail_now(req, -EOPNOTSUPP);
                        }
                        if (mode >= 0) {
                                struct q2_chunk *c = chunk_new(img, q, req, mode);
                                c->gcl = gcl;
                                c->coff = coff;
                                c->clen = clen;
                                c->newe = newe;
                                if (req->op == QCOW2_READ || req->op == QCOW2_WRITE)
                                        c->gbuf = (uint8_t *) req->buf + (off - req->off);
                                *tail = c;
                                tail = (struct q2_chunk **) &c->t.next;
                        }
                        off += clen;
                }
        }
        for (struct q2_chunk *c = first, *next; c; c = next) {
                next = (struct q2_chunk *) c->t.next;
                c->t.next = NULL;
                q2_wake(&c->t);
        }
        if (--req->pending_ == 0)
                req->complete(req, req->err_);
}
