/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest reads (the read side of request.c's chunks): a read chunk maps its first cluster, or
 * subcluster with extended L2 entries, and takes in the following ones of the same L2 table
 * that map alike (host-contiguous data, zeros, or unallocated: one host read, one memset, or
 * one child request on the backing image, zeros past its end), up to 8 MiB; a new chunk takes
 * the rest.  Compressed clusters are read and inflated whole; the last few stay decompressed
 * (keyed by their L2 entry: compressed clusters are never written, and a freed one is named by
 * no entry any more, so a kept one cannot go stale).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "q2.h"

/* The L2 entry of the chunk's cluster (0 if no table): 0, -EAGAIN (parked), <0.  *tbl: the
 * L2 table (NULL if none), valid while the lock is held.  Lock held. */
static int lookup(struct q2_chunk *c, uint64_t *e, const uint8_t **tbl)
{
        struct qcow2_image *img = c->img;
        uint64_t l1i = c->gcl / img->l2_entries;
        uint64_t l2o = q2_be64(img->l1_disk + 8 * l1i) & Q2_L1E_OFFSET;
        struct q2_centry *ce;
        int r;

        *e = 0;
        if (tbl)
                *tbl = NULL;
        if (!l2o)
                return 0;
        r = q2_cache_get(img, l2o, Q2_CE_L2, &c->t, &ce);
        if (r < 0)
                return r;
        *e = q2_be64(ce->m.mem + (img->h.ext_l2 ? 16 : 8) * (c->gcl % img->l2_entries));
        if (tbl)
                *tbl = ce->m.mem;
        return 0;
}

enum { K_UNALLOC, K_ZERO, K_NORMAL, K_COMPRESSED };

static int kind_of(const struct qcow2_image *img, uint64_t e)
{
        if (e & Q2_COMPRESSED)
                return K_COMPRESSED;
        if (img->h.version == 3 && (e & Q2_ZERO))
                return K_ZERO;
        return e & Q2_L2E_OFFSET ? K_NORMAL : K_UNALLOC;
}

/* What guest unit u (a cluster; with extended L2 entries a subcluster) reads from, in the L2
 * table tbl (NULL: none): a K_*, and for K_NORMAL the unit's host offset. */
static int unit_kind(const struct qcow2_image *img, const uint8_t *tbl, uint64_t u, uint64_t *host)
{
        uint64_t cl = img->h.ext_l2 ? u >> 5 : u, l2i = cl % img->l2_entries, e, bm;
        unsigned sc = (unsigned) (u & 31);
        int k;

        if (!img->h.ext_l2) {
                e = tbl ? q2_be64(tbl + 8 * l2i) : 0;
                k = kind_of(img, e);
                *host = e & Q2_L2E_OFFSET;
                return k;
        }
        e = tbl ? q2_be64(tbl + 16 * l2i) : 0;
        bm = tbl ? q2_be64(tbl + 16 * l2i + 8) : 0;
        if (e & Q2_COMPRESSED)
                return K_COMPRESSED;
        if (bm >> sc & 1) {
                *host = (e & Q2_L2E_OFFSET) + ((uint64_t) sc << (img->cluster_bits - 5));
                return K_NORMAL;
        }
        return bm >> (32 + sc) & 1 ? K_ZERO : K_UNALLOC;
}

static struct q2_dcache *dc_find(struct qcow2_image *img, uint64_t e)
{
        for (uint32_t i = 0; i < img->dc_n; i++)
                if (img->dc[i].key == e && img->dc[i].data) {
                        img->dc[i].used = ++img->dc_clock;
                        return &img->dc[i];
                }
        return NULL;
}

static void dc_put(struct qcow2_image *img, uint64_t e, const uint8_t *data)
{
        struct q2_dcache *d = &img->dc[0];

        for (uint32_t i = 1; i < img->dc_n; i++)
                if (img->dc[i].used < d->used)
                        d = &img->dc[i];
        if (!d->data && !(d->data = malloc(img->cluster_size)))
                return;
        memcpy(d->data, data, img->cluster_size);
        d->key = e;
        d->used = ++img->dc_clock;
}

/*
 * A read chunk covers [gcl/coff, +rlen): it maps its first cluster and as many after it as
 * map the same way (host-contiguous data, zeros, or unallocated: one host read, one memset, one
 * backing read) within the L2 table and 8 MiB; a new chunk takes the rest.
 */
void q2_read_run(struct q2_task *t)
{
        struct q2_chunk *c = (struct q2_chunk *) t;
        struct qcow2_image *img = c->img;
        uint64_t cs = img->cluster_size, e, host = 0, h0, covered, goff, u;
        unsigned ubits = img->cluster_bits - (img->h.ext_l2 ? 5 : 0);
        uint64_t us = 1ULL << ubits;
        const uint8_t *tbl;
        struct q2_dcache *d;
        int r, kind;

        if (t->err)
                return q2_chunk_done(c, t->err);
        if (c->state == 1)
                return q2_chunk_done(c, 0);
        if (c->state == 2) {
                c->cbuf = q2_buf(cs, false);
                if (!c->cbuf)
                        return q2_chunk_done(c, -ENOMEM);
                r = q2_decompress(img->h.compression, c->zbuf + c->zskip, c->zlen, c->cbuf, cs);
                if (r == 0) {
                        memcpy(c->gbuf, c->cbuf + c->coff, c->rlen);
                        pthread_mutex_lock(&img->lock);
                        dc_put(img, c->old, c->cbuf);
                        pthread_mutex_unlock(&img->lock);
                }
                return q2_chunk_done(c, r);
        }
        pthread_mutex_lock(&img->lock);
        r = lookup(c, &e, &tbl);
        if (r < 0) {
                pthread_mutex_unlock(&img->lock);
                if (r != -EAGAIN)
                        q2_chunk_done(c, r);
                return;
        }
        goff = (c->gcl << img->cluster_bits) + c->coff;
        u = goff >> ubits;
        kind = unit_kind(img, tbl, u, &host);
        if (kind == K_COMPRESSED)
                us = cs;        /* a compressed cluster has no subclusters */
        covered = us - (goff & (us - 1));
        if (covered > c->rlen)
                covered = c->rlen;
        d = kind == K_COMPRESSED ? dc_find(img, e) : NULL;
        if (d)
                memcpy(c->gbuf, d->data + c->coff, covered);
        for (uint64_t k = 1; kind != K_COMPRESSED && covered < c->rlen && covered < (8u << 20) &&
             ((u + k) >> (img->cluster_bits - ubits)) / img->l2_entries ==
             (u >> (img->cluster_bits - ubits)) / img->l2_entries; k++) {
                uint64_t h2;
                if (unit_kind(img, tbl, u + k, &h2) != kind || (kind == K_NORMAL && h2 != host + k * us))
                        break;
                covered += c->rlen - covered < us ? c->rlen - covered : us;
        }
        pthread_mutex_unlock(&img->lock);
        if (covered < c->rlen) {
                struct q2_chunk *rest = calloc(1, sizeof(*rest));
                uint64_t next = goff + covered;
                if (!rest)
                        abort();
                *rest = (struct q2_chunk) { .t = { .run = q2_read_run, .q = t->q }, .img = img,
                                            .req = c->req, .mode = MODE_READ,
                                            .gcl = next >> img->cluster_bits,
                                            .coff = (uint32_t) (next & (cs - 1)),
                                            .gbuf = c->gbuf + covered, .rlen = c->rlen - covered };
                c->req->pending_++;
                q2_wake(&rest->t);
        }
        c->rlen = covered;
        switch (kind) {
        case K_COMPRESSED:
                if (d)
                        return q2_chunk_done(c, 0);
                c->state = 2;
                c->old = e;
                if ((r = q2_start_compressed_read(c, e)) < 0)
                        return q2_chunk_done(c, r);
                break;
        case K_ZERO:
                memset(c->gbuf, 0, covered);
                return q2_chunk_done(c, 0);
        case K_NORMAL:
                if ((r = q2_entry_host(img, e, &h0)) < 0)
                        return q2_chunk_done(c, r);
                c->state = 1;
                q2_host_io(c, QCOW2_IO_READ, c->gbuf, covered, host + (goff & (us - 1)));
                break;
        default:
                c->state = 1;
                q2_read_backing(c, c->gbuf, (c->gcl << img->cluster_bits) + c->coff, covered);
                if (!t->pending)
                        return q2_chunk_done(c, 0);
        }
}

