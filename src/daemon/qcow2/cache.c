/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The metadata cache (L2 tables and refcount blocks, one cluster each) with its byte budget and
 * LRU; one load per table, other tasks park on it.  An entry is evicted only when it is READY
 * and clean (nothing changed that is not written, no write in flight); the cache may run over
 * its budget while every entry is busy.  Also: q2_meta write-back (one write in flight per
 * piece, from a snapshot copy), fsync batching, and the busy set that serializes changes to one
 * guest cluster or one L1 slot.  Everything here runs with img->lock held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "q2.h"

static uint32_t hash_of(const struct qcow2_image *img, uint64_t off)
{
        uint64_t k = (off >> img->cluster_bits) * 0x9e3779b97f4a7c15ULL;
        return (uint32_t) (k >> 32) % img->hash_n;
}

int q2_cache_init(struct qcow2_image *img, uint64_t budget)
{
        uint64_t n = budget / img->cluster_size;

        img->cache_budget = budget;
        img->hash_n = (uint32_t) (n < 64 ? 64 : n > (1u << 20) ? (1u << 20) : n);
        img->hash = calloc(img->hash_n, sizeof(*img->hash));
        img->busy_n = 1024;
        img->busy = calloc(img->busy_n, sizeof(*img->busy));
        return img->hash && img->busy ? 0 : -ENOMEM;
}

static void lru_unlink(struct qcow2_image *img, struct q2_centry *ce)
{
        if (ce->lprev)
                ce->lprev->lnext = ce->lnext;
        else if (img->lru_head == ce)
                img->lru_head = ce->lnext;
        if (ce->lnext)
                ce->lnext->lprev = ce->lprev;
        else if (img->lru_tail == ce)
                img->lru_tail = ce->lprev;
        ce->lprev = ce->lnext = NULL;
}

static void lru_front(struct qcow2_image *img, struct q2_centry *ce)
{
        lru_unlink(img, ce);
        ce->lnext = img->lru_head;
        if (img->lru_head)
                img->lru_head->lprev = ce;
        img->lru_head = ce;
        if (!img->lru_tail)
                img->lru_tail = ce;
}

static void hash_remove(struct qcow2_image *img, struct q2_centry *ce)
{
        struct q2_centry **pp = &img->hash[hash_of(img, ce->m.off)];

        while (*pp && *pp != ce)
                pp = &(*pp)->hnext;
        if (*pp)
                *pp = ce->hnext;
}

static void centry_free(struct qcow2_image *img, struct q2_centry *ce)
{
        img->cache_bytes -= img->cluster_size;
        free(ce->m.mem);
        free(ce);
}

void q2_cache_free(struct qcow2_image *img)
{
        for (uint32_t i = 0; img->hash && i < img->hash_n; i++)
                for (struct q2_centry *ce = img->hash[i], *next; ce; ce = next) {
                        next = ce->hnext;
                        centry_free(img, ce);
                }
        free(img->hash);
        img->hash = NULL;
        for (uint32_t i = 0; img->busy && i < img->busy_n; i++)
                for (struct q2_busy *b = img->busy[i], *next; b; b = next) {
                        next = b->next;
                        free(b);
                }
        free(img->busy);
        img->busy = NULL;
}

struct q2_centry *q2_cache_find(struct qcow2_image *img, uint64_t off)
{
        struct q2_centry *ce = img->hash[hash_of(img, off)];

        while (ce && ce->m.off != off)
                ce = ce->hnext;
        return ce;
}

static bool evictable(const struct q2_centry *ce)
{
        return ce->state == Q2_CE_READY && !ce->dirty && !ce->writing && !ce->m.writing &&
               ce->m.gen <= ce->m.wgen && !ce->m.waiters;
}

void q2_cache_evict(struct qcow2_image *img)
{
        struct q2_centry *ce = img->lru_tail;
        bool dirty = false;

        while (ce && img->cache_bytes > img->cache_budget) {
                struct q2_centry *prev = ce->lprev;
                if (evictable(ce)) {
                        lru_unlink(img, ce);
                        hash_remove(img, ce);
                        centry_free(img, ce);
                } else if (ce->dirty)
                        dirty = true;
                ce = prev;
        }
        /* Refcount blocks stay dirty until a refcount sync writes them (decrements start
         * none): start one in the background when they keep the cache over its budget. */
        if (dirty && img->cache_bytes > img->cache_budget && !img->rc_running && !img->broken &&
            q2_cur())
                q2_rc_need(img);
}

static struct q2_centry *centry_new(struct qcow2_image *img, uint64_t off, int kind)
{
        struct q2_centry *ce = calloc(1, sizeof(*ce));
        uint32_t hi;

        if (!ce)
                return NULL;
        ce->m.mem = q2_buf(img->cluster_size, false);
        if (!ce->m.mem) {
                free(ce);
                return NULL;
        }
        ce->m.off = off;
        ce->m.len = img->cluster_size;
        ce->m.gen = ce->m.wgen = img->meta_gen;
        ce->kind = kind;
        hi = hash_of(img, off);
        ce->hnext = img->hash[hi];
        img->hash[hi] = ce;
        img->cache_bytes += img->cluster_size;
        return ce;
}

static void load_done(struct q2_hio *h, int res)
{
        struct qcow2_image *img = h->img;
        struct q2_centry *ce = h->arg;

        pthread_mutex_lock(&img->lock);
        if (res < 0) {
                for (struct q2_task *t = ce->m.waiters; t; t = t->next)
                        if (!t->err)
                                t->err = res;
                q2_wake_list(&ce->m.waiters);
                hash_remove(img, ce);
                centry_free(img, ce);
        } else {
                ce->state = Q2_CE_READY;
                lru_front(img, ce);
                q2_wake_list(&ce->m.waiters);
        }
        pthread_mutex_unlock(&img->lock);
}

int q2_cache_get(struct qcow2_image *img, uint64_t off, int kind, struct q2_task *t,
                 struct q2_centry **out)
{
        struct q2_centry *ce = q2_cache_find(img, off);
        struct q2_hio *h;

        if (ce) {
                if (ce->kind != kind)
                        return -EIO;    /* one cluster used as an L2 table and a refcount block */
                if (ce->state == Q2_CE_LOADING) {
                        if (t)
                                q2_park(&ce->m.waiters, t);
                        return -EAGAIN;
                }
                lru_front(img, ce);
                *out = ce;
                return 0;
        }
        if (!off || (off & (img->cluster_size - 1)) || off > Q2_L2E_OFFSET)
                return -EIO;    /* a corrupt L1 / refcount table entry */
        q2_cache_evict(img);
        ce = centry_new(img, off, kind);
        if (!ce)
                return -ENOMEM;
        ce->state = Q2_CE_LOADING;
        h = q2_hio_new(img, QCOW2_IO_READ, ce->m.mem, img->cluster_size, off);
        h->done = load_done;
        h->arg = ce;
        q2_hio_submit(h);
        if (t)
                q2_park(&ce->m.waiters, t);
        return -EAGAIN;
}

void q2_cache_drop(struct qcow2_image *img, uint64_t off)
{
        struct q2_centry *ce = q2_cache_find(img, off);

        if (ce && evictable(ce)) {
                lru_unlink(img, ce);
                hash_remove(img, ce);
                centry_free(img, ce);
        }
}

/* Not evicting here: src may be another entry's table, and the new entry is clean until the
 * caller marks it dirty. */
struct q2_centry *q2_cache_new(struct qcow2_image *img, uint64_t off, int kind, const void *src)
{
        struct q2_centry *old = q2_cache_find(img, off), *ce;

        /* A freed table's cluster, allocated again: the old contents are stale.  (On a corrupt
         * image, where a table's cluster has refcount 0, it may be src itself: copy first.) */
        if (old && !evictable(old))
                return NULL;
        ce = centry_new(img, off, kind);
        if (!ce)
                return NULL;
        if (src)
                memcpy(ce->m.mem, src, img->cluster_size);
        else
                memset(ce->m.mem, 0, img->cluster_size);
        if (old) {
                lru_unlink(img, old);
                hash_remove(img, old);
                centry_free(img, old);
        }
        ce->state = Q2_CE_READY;
        lru_front(img, ce);
        return ce;
}

/* ---- write-back ---------------------------------------------------------------------------- */
static void meta_start(struct qcow2_image *img, struct q2_meta *m);

static void meta_done(struct q2_hio *h, int res)
{
        struct qcow2_image *img = h->img;
        struct q2_meta *m = h->arg;

        pthread_mutex_lock(&img->lock);
        m->writing = false;
        if (res < 0) {
                if (!img->broken)
                        img->broken = res;
        } else if (h->gen > m->wgen)
                m->wgen = h->gen;
        q2_wake_list(&m->waiters);
        if (m->gen > m->wgen && !img->broken)
                meta_start(img, m);
        q2_cache_evict(img);
        pthread_mutex_unlock(&img->lock);
}

static void meta_start(struct qcow2_image *img, struct q2_meta *m)
{
        uint32_t align = m->len < 4096 ? m->len : 4096, lo, hi;
        struct q2_hio *h;
        void *copy;

        if (img->cluster_size < 4096)
                align = 512;
        lo = m->dlo & ~(align - 1);
        hi = (m->dhi + align - 1) & ~(align - 1);
        if (hi > m->len || hi <= lo) {
                lo = 0;
                hi = m->len;
        }
        copy = q2_buf(hi - lo, false);
        if (!copy)
                abort();
        memcpy(copy, m->mem + lo, hi - lo);
        h = q2_hio_new(img, QCOW2_IO_WRITE, copy, hi - lo, m->off + lo);
        h->copy = copy;
        h->done = meta_done;
        h->arg = m;
        h->gen = m->gen;
        m->writing = true;
        m->dlo = m->len;
        m->dhi = 0;
        q2_hio_submit(h);
}

uint64_t q2_meta_dirty(struct qcow2_image *img, struct q2_meta *m, uint32_t lo, uint32_t hi)
{
        if (m->dhi <= m->dlo) {
                m->dlo = lo;
                m->dhi = hi;
        } else {
                if (lo < m->dlo)
                        m->dlo = lo;
                if (hi > m->dhi)
                        m->dhi = hi;
        }
        m->gen = ++img->meta_gen;
        if (!m->writing)
                meta_start(img, m);
        return m->gen;
}

int q2_meta_wait(struct qcow2_image *img, struct q2_meta *m, uint64_t gen, struct q2_task *t)
{
        if (img->broken)
                return img->broken;
        if (m->wgen >= gen)
                return 0;
        q2_park(&m->waiters, t);
        return -EAGAIN;
}

/* ---- fsync batching -------------------------------------------------------------------- */
static void fs_start(struct qcow2_image *img);

static void fs_done(struct q2_hio *h, int res)
{
        struct qcow2_image *img = h->img;

        pthread_mutex_lock(&img->lock);
        img->fs_running = false;
        if (res < 0 && !img->broken)
                img->broken = res;
        if (h->gen > img->fs_done)
                img->fs_done = h->gen;
        q2_wake_list(&img->fs_waiters);
        if (img->fs_want > img->fs_done && !img->broken)
                fs_start(img);
        pthread_mutex_unlock(&img->lock);
}

static void fs_start(struct qcow2_image *img)
{
        struct q2_hio *h = q2_hio_new(img, QCOW2_IO_FSYNC, NULL, 0, 0);

        img->fs_running = true;
        h->gen = ++img->fs_started;
        h->done = fs_done;
        q2_hio_submit(h);
}

uint64_t q2_fsync_need(struct qcow2_image *img)
{
        uint64_t need = img->fs_started + 1;

        if (!img->fs_running && !img->broken)
                fs_start(img);
        else if (need > img->fs_want)
                img->fs_want = need;
        return need;
}

int q2_fsync_wait(struct qcow2_image *img, uint64_t seq, struct q2_task *t)
{
        if (img->broken)
                return img->broken;
        if (img->fs_done >= seq)
                return 0;
        q2_park(&img->fs_waiters, t);
        return -EAGAIN;
}

/* ---- busy set ------------------------------------------------------------------------------ */
int q2_busy_get(struct qcow2_image *img, uint64_t key, struct q2_task *t)
{
        uint32_t i = (uint32_t) ((key * 0x9e3779b97f4a7c15ULL) >> 40) % img->busy_n;
        struct q2_busy *b;

        for (b = img->busy[i]; b; b = b->next)
                if (b->key == key) {
                        q2_park(&b->waiters, t);
                        return -EAGAIN;
                }
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->key = key;
        b->next = img->busy[i];
        img->busy[i] = b;
        return 0;
}

void q2_busy_put(struct qcow2_image *img, uint64_t key)
{
        uint32_t i = (uint32_t) ((key * 0x9e3779b97f4a7c15ULL) >> 40) % img->busy_n;

        for (struct q2_busy **pp = &img->busy[i]; *pp; pp = &(*pp)->next)
                if ((*pp)->key == key) {
                        struct q2_busy *b = *pp;
                        *pp = b->next;
                        q2_wake_list(&b->waiters);
                        free(b);
                        return;
                }
}
