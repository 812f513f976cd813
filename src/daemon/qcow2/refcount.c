/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Refcounts: entries of any width (refcount_order 0..6), the allocator, and the refcount sync.
 *
 * The allocator hands out one cluster at a time under img->lock: the first cluster at or after
 * free_hint whose refcount is 0 in memory gets refcount 1 in memory (its block is marked dirty).
 * Two tasks on two threads can never get the same cluster: the scan and the increment happen in
 * one locked section.  A range without a refcount block gets a new block placed at the first
 * cluster of that range (all of whose clusters are free, as no block counts them), counting
 * itself; its refcount table entry is set in memory and marked dirty.
 *
 * The refcount sync makes the in-memory refcount state durable in the order the format needs:
 * write the dirty blocks (snapshot copies), fsync, write the dirty refcount-table units, fsync.
 * One runs at a time; q2_rc_need() returns a generation that a sync started later covers, so
 * requests that allocated while one was running share the next one.  Its fsync also covers
 * every write completed before it started (new L2 tables wait on it before the L1 update).
 * Decrements are made in memory only by callers whose unlinking entry is already durable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "q2.h"

uint64_t q2_rb_get(const struct qcow2_image *img, const uint8_t *blk, uint32_t i)
{
        uint32_t bits = img->rb_bits;

        switch (bits) {
        case 64: return q2_be64(blk + 8 * (size_t) i);
        case 32: return q2_be32(blk + 4 * (size_t) i);
        case 16: return (uint64_t) blk[2 * (size_t) i] << 8 | blk[2 * (size_t) i + 1];
        case 8:  return blk[i];
        default: {
                uint32_t bit = i * bits;
                return (blk[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
        }
        }
}

void q2_rb_set(const struct qcow2_image *img, uint8_t *blk, uint32_t i, uint64_t v)
{
        uint32_t bits = img->rb_bits;

        switch (bits) {
        case 64: q2_put64(blk + 8 * (size_t) i, v); break;
        case 32: q2_put32(blk + 4 * (size_t) i, (uint32_t) v); break;
        case 16:
                blk[2 * (size_t) i] = (uint8_t) (v >> 8);
                blk[2 * (size_t) i + 1] = (uint8_t) v;
                break;
        case 8:  blk[i] = (uint8_t) v; break;
        default: {
                uint32_t bit = i * bits, mask = ((1u << bits) - 1) << (bit % 8);
                blk[bit / 8] = (uint8_t) ((blk[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        }
        }
}

static uint64_t rb_max(const struct qcow2_image *img)
{
        return img->rb_bits == 64 ? UINT64_MAX : (1ULL << img->rb_bits) - 1;
}

static uint64_t rt_get(const struct qcow2_image *img, uint64_t ti)
{
        return q2_be64(img->rt_disk + 8 * ti) & Q2_RTE_OFFSET;
}

static void rb_changed(struct qcow2_image *img, struct q2_centry *ce)
{
        ce->dirty = true;
        img->rc_gen++;
}

static void mark_used(struct qcow2_image *img, uint64_t c)
{
        uint64_t end = (c + 1) << img->cluster_bits;

        if (end > img->hw)
                img->hw = end;
}

int q2_alloc_cluster(struct qcow2_image *img, struct q2_task *t, uint64_t *off, bool *pristine)
{
        for (;;) {
                uint64_t c = img->free_hint, ti = c / img->rb_entries, rbo;
                struct q2_centry *ce;
                int r;

                if (ti >= img->rt_entries || (c << img->cluster_bits) >= Q2_L2E_OFFSET)
                        return -ENOSPC;
                rbo = rt_get(img, ti);
                if (!rbo) {
                        /* A new block, at the first cluster of the range it counts. */
                        uint64_t first = ti * img->rb_entries;
                        rbo = first << img->cluster_bits;
                        ce = q2_cache_new(img, rbo, Q2_CE_RB, NULL);
                        if (!ce)
                                return -ENOMEM;
                        q2_rb_set(img, ce->m.mem, 0, 1);
                        rb_changed(img, ce);
                        mark_used(img, first);
                        q2_put64(img->rt_disk + 8 * ti, rbo);
                        img->rt_dirty[8 * ti / 512] = true;
                        if (img->free_hint == first)
                                img->free_hint = first + 1;
                        continue;
                }
                r = q2_cache_get(img, rbo, Q2_CE_RB, t, &ce);
                if (r < 0)
                        return r;
                for (uint32_t i = (uint32_t) (c % img->rb_entries); i < img->rb_entries; i++)
                        if (q2_rb_get(img, ce->m.mem, i) == 0) {
                                q2_rb_set(img, ce->m.mem, i, 1);
                                rb_changed(img, ce);
                                c = ti * img->rb_entries + i;
                                img->free_hint = c + 1;
                                *off = c << img->cluster_bits;
                                if (pristine)
                                        *pristine = *off >= img->hw;
                                mark_used(img, c);
                                return 0;
                        }
                img->free_hint = (ti + 1) * img->rb_entries;
        }
}

int q2_refcount_update(struct qcow2_image *img, uint64_t off, int delta, struct q2_task *t)
{
        uint64_t c = off >> img->cluster_bits, ti = c / img->rb_entries, rbo, v;
        uint32_t i = (uint32_t) (c % img->rb_entries);
        struct q2_centry *ce;
        int r;

        if (ti >= img->rt_entries || !(rbo = rt_get(img, ti)))
                return -EIO;
        r = q2_cache_get(img, rbo, Q2_CE_RB, t, &ce);
        if (r < 0)
                return r;
        v = q2_rb_get(img, ce->m.mem, i);
        if ((delta < 0 && v < (uint64_t) -delta) || (delta > 0 && rb_max(img) - v < (uint64_t) delta))
                return -EIO;
        v += (uint64_t) (int64_t) delta;
        q2_rb_set(img, ce->m.mem, i, v);
        rb_changed(img, ce);
        if (v == 0) {
                q2_cache_drop(img, c << img->cluster_bits);
                if (c < img->free_hint)
                        img->free_hint = c;
        }
        return 0;
}

/* ---- the refcount sync ------------------------------------------------------------------- */
struct q2_rcsync {
        struct q2_task t;
        struct qcow2_image *img;
        int state;
        uint64_t gen;
        struct q2_hio *rt_writes;       /* prepared at the snapshot, submitted after the fsync */
};

static void rb_write_done(struct q2_hio *h, int res)
{
        struct qcow2_image *img = h->img;
        struct q2_centry *ce = h->arg;
        struct q2_task *t = &img->rcs->t;

        pthread_mutex_lock(&img->lock);
        ce->writing--;
        if (res < 0 && !t->err)
                t->err = res;
        if (--t->pending == 0)
                q2_wake(t);
        pthread_mutex_unlock(&img->lock);
}

static void rc_start(struct qcow2_image *img)
{
        struct q2_rcsync *s = img->rcs;

        img->rc_running = true;
        s->state = 0;
        s->t.q = q2_cur();
        s->t.err = 0;
        q2_wake(&s->t);
}

static void rcs_run(struct q2_task *t)
{
        struct q2_rcsync *s = (struct q2_rcsync *) t;
        struct qcow2_image *img = s->img;
        struct q2_hio *h;

        pthread_mutex_lock(&img->lock);
        if (t->err) {
                if (!img->broken)
                        img->broken = t->err;
                t->err = 0;
                while ((h = s->rt_writes)) {
                        s->rt_writes = h->next;
                        free(h->copy);
                        free(h);
                }
                s->state = 4;
        }
        switch (s->state) {
        case 0:
                s->gen = img->rc_gen;
                for (struct q2_centry *ce = img->lru_head; ce; ce = ce->lnext) {
                        void *copy;
                        if (ce->kind != Q2_CE_RB || !ce->dirty)
                                continue;
                        copy = q2_buf(img->cluster_size, false);
                        if (!copy)
                                abort();
                        memcpy(copy, ce->m.mem, img->cluster_size);
                        h = q2_hio_new(img, QCOW2_IO_WRITE, copy, img->cluster_size, ce->m.off);
                        h->copy = copy;
                        h->done = rb_write_done;
                        h->arg = ce;
                        ce->dirty = false;
                        ce->writing++;
                        t->pending++;
                        q2_hio_submit(h);
                }
                for (uint32_t u = 0; u < img->rt_units_n; u++) {
                        void *copy;
                        if (!img->rt_dirty[u])
                                continue;
                        img->rt_dirty[u] = false;
                        copy = q2_buf(512, false);
                        if (!copy)
                                abort();
                        memcpy(copy, img->rt_disk + 512 * (size_t) u, 512);
                        h = q2_hio_new(img, QCOW2_IO_WRITE, copy, 512,
                                       img->h.rt_offset + 512 * (uint64_t) u);
                        h->copy = copy;
                        h->next = s->rt_writes;
                        s->rt_writes = h;
                }
                s->state = 1;
                if (t->pending)
                        break;
                __attribute__((fallthrough));
        case 1:
                s->state = 2;
                q2_hio_task(h = q2_hio_new(img, QCOW2_IO_FSYNC, NULL, 0, 0), t);
                q2_hio_submit(h);
                break;
        case 2:
                if (s->rt_writes) {
                        while ((h = s->rt_writes)) {
                                s->rt_writes = h->next;
                                q2_hio_task(h, t);
                                q2_hio_submit(h);
                        }
                        s->state = 3;
                        break;
                }
                s->state = 4;
                goto done;
        case 3:
                s->state = 4;
                q2_hio_task(h = q2_hio_new(img, QCOW2_IO_FSYNC, NULL, 0, 0), t);
                q2_hio_submit(h);
                break;
        case 4:
        done:
                if (!img->broken && s->gen > img->rc_durable)
                        img->rc_durable = s->gen;
                img->rc_running = false;
                q2_wake_list(&img->rc_waiters);
                if (img->rc_want > img->rc_durable && !img->broken)
                        rc_start(img);
                q2_cache_evict(img);
                break;
        }
        pthread_mutex_unlock(&img->lock);
}

uint64_t q2_rc_need(struct qcow2_image *img)
{
        uint64_t need = ++img->rc_gen;

        if (!img->rcs) {
                img->rcs = calloc(1, sizeof(*img->rcs));
                if (!img->rcs)
                        abort();
                img->rcs->img = img;
                img->rcs->t.run = rcs_run;
        }
        if (need > img->rc_want)
                img->rc_want = need;
        if (!img->rc_running && !img->broken)
                rc_start(img);
        return need;
}

int q2_rc_wait(struct qcow2_image *img, uint64_t gen, struct q2_task *t)
{
        if (img->broken)
                return img->broken;
        if (img->rc_durable >= gen)
                return 0;
        q2_park(&img->rc_waiters, t);
        return -EAGAIN;
}

void q2_rc_free(struct qcow2_image *img)
{
        free(img->rcs);
        img->rcs = NULL;
}
