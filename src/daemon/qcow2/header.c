/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The header check (qcow2_parse_header: every field against the spec and the file's size, with
 * a sentence naming what is wrong), opening (synchronous reads of the header, L1 and refcount
 * tables, whose entries are checked too: inside the file, cluster-aligned, clear of the header
 * and of each other), the refcount table's growth at open, and close.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "q2.h"

#define Q2_MAGIC 0x514649fbu

static int fail(char *reason, size_t len, int err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail(char *reason, size_t len, int err, const char *fmt, ...)
{
        va_list ap;

        if (reason && len) {
                va_start(ap, fmt);
                vsnprintf(reason, len, fmt, ap);
                va_end(ap);
        }
        return err;
}

int q2_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
        size_t done = 0;

        while (done < len) {
                ssize_t r = pread(fd, (uint8_t *) buf + done, len - done, (off_t) (off + done));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t) r;
                if (done < len) {       /* end of file (a read is short only there) */
                        memset((uint8_t *) buf + done, 0, len - done);
                        break;
                }
        }
        return 0;
}

/* Change n bytes of the header at off: the whole first sector is written (O_DIRECT). */
static int header_patch(int fd, uint64_t off, const void *bytes, size_t n)
{
        uint8_t *s = q2_buf(512, false);
        int r;

        if (!s)
                return -ENOMEM;
        if ((r = q2_pread_full(fd, s, 512, 0)) == 0) {
                memcpy(s + off, bytes, n);
                r = q2_pwrite_full(fd, s, 512, 0);
        }
        free(s);
        return r;
}

int q2_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
        size_t done = 0;

        while (done < len) {
                ssize_t r = pwrite(fd, (const uint8_t *) buf + done, len - done, (off_t) (off + done));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -EIO;
                done += (size_t) r;
        }
        return 0;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
        return a < b + blen && b < a + alen;
}

static const char *feature_name(const uint8_t *tbl, uint32_t tbl_len, int type, int bit,
                                char *out, size_t out_len)
{
        for (uint32_t i = 0; tbl && i + 48 <= tbl_len; i += 48)
                if (tbl[i] == type && tbl[i + 1] == bit) {
                        size_t n = strnlen((const char *) tbl + i + 2, 46);
                        if (n >= out_len)
                                n = out_len - 1;
                        for (size_t j = 0; j < n; j++) {
                                char ch = (char) tbl[i + 2 + j];
                                out[j] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
                        }
                        out[n] = 0;
                        return out;
                }
        return NULL;
}

int qcow2_parse_header(const uint8_t *buf, size_t buf_len, uint64_t file_size,
                       struct qcow2_header_info *h, char *reason, size_t rlen)
{
        uint64_t cs, vclusters, l1_need, l1_bytes, rt_bytes, known, l2e;
        const uint8_t *ftbl = NULL;
        uint32_t ftbl_len = 0;
        size_t end, off;

        memset(h, 0, sizeof(*h));
        if (buf_len < 72 || file_size < 72)
                return fail(reason, rlen, -EINVAL, "file too short for a qcow2 header (%" PRIu64 " bytes)", file_size);
        if (q2_be32(buf) != Q2_MAGIC)
                return fail(reason, rlen, -EINVAL, "not a qcow2 image (no QFI\\xfb magic)");
        h->version = (int) q2_be32(buf + 4);
        if (h->version != 2 && h->version != 3)
                return fail(reason, rlen, -EINVAL, "qcow2 version %u: only 2 and 3 are known", q2_be32(buf + 4));
        h->backing_offset = q2_be64(buf + 8);
        h->backing_len = q2_be32(buf + 16);
        h->cluster_bits = q2_be32(buf + 20);
        h->size = q2_be64(buf + 24);
        if (h->cluster_bits < 9 || h->cluster_bits > 21)
                return fail(reason, rlen, -EINVAL, "cluster_bits %u out of range (9 to 21)", h->cluster_bits);
        cs = 1ULL << h->cluster_bits;
        switch (q2_be32(buf + 32)) {
        case 0: break;
        case 1: return fail(reason, rlen, -EOPNOTSUPP, "image is encrypted (crypt_method 1, AES): not supported");
        case 2: return fail(reason, rlen, -EOPNOTSUPP, "image is encrypted (crypt_method 2, LUKS): not supported");
        default: return fail(reason, rlen, -EOPNOTSUPP, "image is encrypted (unknown crypt_method %u): not supported", q2_be32(buf + 32));
        }
        h->l1_size = q2_be32(buf + 36);
        h->l1_offset = q2_be64(buf + 40);
        h->rt_offset = q2_be64(buf + 48);
        h->rt_clusters = q2_be32(buf + 56);
        h->nb_snapshots = q2_be32(buf + 60);
        h->snapshots_offset = q2_be64(buf + 64);
        h->refcount_order = 4;
        h->header_length = 72;
        if (h->version == 3) {
                if (buf_len < 104)
                        return fail(reason, rlen, -EINVAL, "file too short for a version 3 header");
                h->incompatible = q2_be64(buf + 72);
                h->compatible = q2_be64(buf + 80);
                h->autoclear = q2_be64(buf + 88);
                h->refcount_order = q2_be32(buf + 96);
                h->header_length = q2_be32(buf + 100);
                if (h->header_length < 104 || h->header_length % 8 || h->header_length > cs ||
                    h->header_length > buf_len)
                        return fail(reason, rlen, -EINVAL, "header_length %u invalid (a multiple of 8, 104 to the cluster size)", h->header_length);
                if (h->refcount_order > 6)
                        return fail(reason, rlen, -EINVAL, "refcount_order %u out of range (0 to 6)", h->refcount_order);
                if (h->header_length > 104)
                        h->compression = buf[104];
        }
        end = buf_len < cs ? buf_len : (size_t) cs;

        /* Header extensions, up to the end of the first cluster or the backing file name
         * (stored after them: an old image may have no end marker before it). */
        for (off = h->header_length;;) {
                size_t ext_end = h->backing_offset > h->header_length && h->backing_offset < end ?
                                 (size_t) h->backing_offset : end;
                uint32_t type, len;
                if (off + 8 > ext_end)
                        break;  /* v2 images may end the area at the cluster's end */
                type = q2_be32(buf + off);
                len = q2_be32(buf + off + 4);
                if (type == 0)
                        break;
                if (len > ext_end - off - 8)
                        return fail(reason, rlen, -EINVAL, "header extension 0x%08x at byte %zu runs past the first cluster or into the backing file name", type, off);
                if (type == 0xe2792acau) {
                        if (len >= sizeof(h->backing_format))
                                return fail(reason, rlen, -EINVAL, "backing format name too long (%u bytes)", len);
                        memcpy(h->backing_format, buf + off + 8, len);
                        h->backing_format[len] = 0;
                        if (strlen(h->backing_format) != len)
                                return fail(reason, rlen, -EINVAL, "backing format name contains a NUL byte");
                } else if (type == 0x6803f857u) {
                        ftbl = buf + off + 8;
                        ftbl_len = len;
                }
                off += 8 + (((size_t) len + 7) & ~(size_t) 7);
        }

        known = Q2_INCOMPAT_DIRTY | Q2_INCOMPAT_CORRUPT | Q2_INCOMPAT_DATA_FILE |
                Q2_INCOMPAT_COMPRESSION | Q2_INCOMPAT_EXTL2;
        if (h->incompatible & ~known) {
                int bit = __builtin_ctzll(h->incompatible & ~known);
                char name[48];
                if (feature_name(ftbl, ftbl_len, 0, bit, name, sizeof(name)))
                        return fail(reason, rlen, -EOPNOTSUPP, "image uses the unknown incompatible feature \"%s\" (bit %d): not supported", name, bit);
                return fail(reason, rlen, -EOPNOTSUPP, "image uses an unknown incompatible feature (bit %d): not supported", bit);
        }
        if (h->incompatible & Q2_INCOMPAT_DATA_FILE)
                return fail(reason, rlen, -EOPNOTSUPP, "image uses an external data file (incompatible feature bit 2): not supported");
        if (h->incompatible & Q2_INCOMPAT_EXTL2) {
                h->ext_l2 = true;
                if (h->cluster_bits < 14)
                        return fail(reason, rlen, -EINVAL, "extended L2 entries with cluster_bits %u (at least 14)", h->cluster_bits);
        }
        if (h->incompatible & Q2_INCOMPAT_COMPRESSION) {
                if (h->compression == 0)
                        return fail(reason, rlen, -EINVAL, "compression type bit set but compression_type is zlib (0)");
        } else if (h->compression != 0)
                return fail(reason, rlen, -EINVAL, "compression_type %d without the compression type bit", h->compression);
        if (h->compression > 1)
                return fail(reason, rlen, -EOPNOTSUPP, "unknown compression_type %d: not supported", h->compression);
#ifndef HAVE_ZSTD
        if (h->compression == 1)
                return fail(reason, rlen, -EOPNOTSUPP, "image is compressed with zstd: built without libzstd");
#endif
        h->dirty = h->incompatible & Q2_INCOMPAT_DIRTY;
        h->corrupt = h->incompatible & Q2_INCOMPAT_CORRUPT;

        if (h->backing_offset) {
                if (h->backing_len == 0 || h->backing_len > 1023)
                        return fail(reason, rlen, -EINVAL, "backing file name length %u out of range (1 to 1023)", h->backing_len);
                if (h->backing_offset > end || h->backing_len > end - h->backing_offset)
                        return fail(reason, rlen, -EINVAL, "backing file name (byte %" PRIu64 ", %u bytes) lies outside the first cluster", h->backing_offset, h->backing_len);
                memcpy(h->backing_name, buf + h->backing_offset, h->backing_len);
                h->backing_name[h->backing_len] = 0;
                if (strlen(h->backing_name) != h->backing_len)
                        return fail(reason, rlen, -EINVAL, "backing file name contains a NUL byte");
        } else
                h->backing_len = 0;

        /* Sizes and tables. */
        vclusters = (h->size >> h->cluster_bits) + ((h->size & (cs - 1)) != 0);
        l2e = cs / (h->ext_l2 ? 16 : 8);
        l1_need = vclusters / l2e + (vclusters % l2e != 0);
        if (h->size > (1ULL << 62))
                return fail(reason, rlen, -EINVAL, "virtual size %" PRIu64 " too large", h->size);
        if ((uint64_t) h->l1_size * 8 > Q2_MAX_L1_BYTES)
                return fail(reason, rlen, -EINVAL, "L1 table of %u entries too large (at most %u bytes)", h->l1_size, Q2_MAX_L1_BYTES);
        if (h->l1_size < l1_need)
                return fail(reason, rlen, -EINVAL, "l1_size %u too small for the virtual size %" PRIu64 " (needs %" PRIu64 ")", h->l1_size, h->size, l1_need);
        l1_bytes = (uint64_t) h->l1_size * 8;
        l1_bytes = (l1_bytes + cs - 1) & ~(cs - 1);
        if (h->l1_size) {
                if (h->l1_offset & (cs - 1))
                        return fail(reason, rlen, -EINVAL, "L1 table offset %#" PRIx64 " not aligned to a cluster", h->l1_offset);
                if (h->l1_offset < cs)
                        return fail(reason, rlen, -EINVAL, "L1 table overlaps the header");
                if (h->l1_offset > file_size || (uint64_t) h->l1_size * 8 > file_size - h->l1_offset)
                        return fail(reason, rlen, -EINVAL, "L1 table (offset %#" PRIx64 ", %u entries) lies past the end of the file (%" PRIu64 " bytes)", h->l1_offset, h->l1_size, file_size);
        }
        if (h->rt_offset & (cs - 1))
                return fail(reason, rlen, -EINVAL, "refcount table offset %#" PRIx64 " not aligned to a cluster", h->rt_offset);
        rt_bytes = (uint64_t) h->rt_clusters << h->cluster_bits;
        if (h->rt_clusters == 0 || rt_bytes > Q2_MAX_RT_BYTES)
                return fail(reason, rlen, -EINVAL, "refcount_table_clusters %u out of range (1 to %u bytes)", h->rt_clusters, Q2_MAX_RT_BYTES);
        if (h->rt_offset < cs)
                return fail(reason, rlen, -EINVAL, "refcount table overlaps the header");
        if (h->rt_offset > file_size || rt_bytes > file_size - h->rt_offset)
                return fail(reason, rlen, -EINVAL, "refcount table (offset %#" PRIx64 ", %u clusters) lies past the end of the file (%" PRIu64 " bytes)", h->rt_offset, h->rt_clusters, file_size);
        if (h->l1_size && overlaps(h->l1_offset, l1_bytes, h->rt_offset, rt_bytes))
                return fail(reason, rlen, -EINVAL, "L1 table and refcount table overlap");
        if (h->nb_snapshots) {
                if (h->snapshots_offset & (cs - 1) || h->snapshots_offset < cs ||
                    h->snapshots_offset >= file_size)
                        return fail(reason, rlen, -EINVAL, "snapshot table offset %#" PRIx64 " invalid", h->snapshots_offset);
        }
        return 0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* Every L1 and refcount table entry: aligned, inside the file, clear of the header and the two
 * tables, and no cluster named twice (an L2 table that is also a refcount block would have
 * writes to one corrupt the other). */
static int check_tables(struct qcow2_image *img, char *reason, size_t rlen)
{
        const struct qcow2_header_info *h = &img->h;
        uint64_t cs = img->cluster_size, l1_bytes = img->l1_units_n * 512ULL;
        uint64_t rt_bytes = (uint64_t) h->rt_clusters * cs, n = 0, *all;
        int r = 0;

        all = malloc(((size_t) h->l1_size + img->rt_entries + 1) * sizeof(*all));
        if (!all)
                return -ENOMEM;
        for (uint64_t i = 0; i < (uint64_t) h->l1_size + img->rt_entries && !r; i++) {
                bool l1 = i < h->l1_size;
                uint64_t idx = l1 ? i : i - h->l1_size;
                uint64_t e = q2_be64(l1 ? img->l1_disk + 8 * idx : img->rt_disk + 8 * idx);
                uint64_t mask = l1 ? Q2_L1E_OFFSET : Q2_RTE_OFFSET;
                uint64_t o = e & mask;
                const char *what = l1 ? "L1" : "refcount table";
                if (l1 && (e & ~(Q2_L1E_OFFSET | Q2_COPIED)))
                        r = fail(reason, rlen, -EINVAL, "L1 entry %" PRIu64 " has reserved bits set (%#" PRIx64 ")", idx, e);
                else if (!l1 && (e & 0x1ff))
                        r = fail(reason, rlen, -EINVAL, "refcount table entry %" PRIu64 " has reserved bits set (%#" PRIx64 ")", idx, e);
                if (r || !o)
                        continue;
                if (o & (cs - 1))
                        r = fail(reason, rlen, -EINVAL, "%s entry %" PRIu64 " (%#" PRIx64 ") is not cluster aligned", what, idx, o);
                else if (o > img->file_size - cs || o + cs > img->file_size)
                        r = fail(reason, rlen, -EINVAL, "%s entry %" PRIu64 " points past the end of the file (%#" PRIx64 ")", what, idx, o);
                else if (o < cs || (h->l1_size && overlaps(o, cs, h->l1_offset, l1_bytes)) ||
                         overlaps(o, cs, h->rt_offset, rt_bytes))
                        r = fail(reason, rlen, -EINVAL, "%s entry %" PRIu64 " (%#" PRIx64 ") points into the header, the L1 table or the refcount table", what, idx, o);
                else
                        all[n++] = o;
        }
        if (!r) {
                qsort(all, n, sizeof(*all), cmp_u64);
                for (uint64_t i = 1; i < n && !r; i++)
                        if (all[i] == all[i - 1])
                                r = fail(reason, rlen, -EINVAL, "cluster %#" PRIx64 " is named twice by the L1 and refcount tables (a loop)", all[i]);
        }
        free(all);
        return r;
}

/* Refcount table growth, at open only (synchronous): a new, larger table after the end of the
 * file, new refcount blocks after it for the ranges nothing counted yet, all of it counted;
 * then (fsync'd at every step) the header points at the new table and the old one is freed.  A
 * crash between steps leaks clusters, never more. */
static int rb_rmw(struct qcow2_image *img, uint64_t blk_off, bool fresh, uint64_t c0, uint64_t c1,
                  int delta)
{
        uint8_t *b = q2_buf(img->cluster_size, false);
        uint64_t first = (c0 / img->rb_entries) * img->rb_entries;
        int r;

        if (!b)
                return -ENOMEM;
        if (fresh)
                memset(b, 0, img->cluster_size);
        else if ((r = q2_pread_full(img->fd, b, img->cluster_size, blk_off)) < 0)
                goto out;
        for (uint64_t c = c0; c < c1; c++) {
                uint32_t i = (uint32_t) (c - first);
                uint64_t v = q2_rb_get(img, b, i);
                q2_rb_set(img, b, i, delta > 0 ? 1 : (v ? v - 1 : 0));
        }
        r = q2_pwrite_full(img->fd, b, img->cluster_size, blk_off);
out:
        free(b);
        return r;
}

static int grow_rt(struct qcow2_image *img, char *reason, size_t rlen)
{
        uint64_t cs = img->cluster_size, rbe = img->rb_entries;
        uint64_t hostc = (img->file_size + cs - 1) / cs;
        uint64_t vclusters = (img->size + cs - 1) / cs;
        uint64_t need = hostc + vclusters + vclusters / img->l2_entries + 16;
        uint64_t want, cap = Q2_MAX_RT_BYTES / 8, n, e, end, k = 0, old_off, old_n;
        uint64_t new_entries;
        uint8_t *nt, hdr[12];
        int r;

        need = 2 * (need + need / rbe + 1);
        want = (need + rbe - 1) / rbe;
        if (want > cap)
                want = cap;
        if (want <= img->rt_entries)
                return 0;
        n = (want * 8 + cs - 1) / cs;
        new_entries = n * cs / 8;
        nt = q2_buf(n * cs, true);
        if (!nt)
                return -ENOMEM;
        memcpy(nt, img->rt_disk, (size_t) img->h.rt_clusters * cs);
        e = hostc;
        for (;;) {      /* how many new blocks: they count themselves too */
                uint64_t m = 0;
                end = e + n + k;
                for (uint64_t ti = e / rbe; ti <= (end - 1) / rbe; ti++)
                        if (!(q2_be64(nt + 8 * ti) & Q2_RTE_OFFSET))
                                m++;
                if (m == k)
                        break;
                k = m;
        }
        if ((end - 1) / rbe >= new_entries) {
                free(nt);
                return fail(reason, rlen, -ENOSPC, "refcount table cannot grow to cover the image");
        }
        {
                uint64_t j = 0;
                for (uint64_t ti = e / rbe; ti <= (end - 1) / rbe; ti++)
                        if (!(q2_be64(nt + 8 * ti) & Q2_RTE_OFFSET))
                                q2_put64(nt + 8 * ti, (e + n + j++) * cs);
        }
        /* Count [e, end) in their blocks (new ones start zeroed). */
        for (uint64_t ti = e / rbe; ti <= (end - 1) / rbe; ti++) {
                uint64_t bo = q2_be64(nt + 8 * ti) & Q2_RTE_OFFSET;
                uint64_t c0 = ti * rbe > e ? ti * rbe : e, c1 = (ti + 1) * rbe < end ? (ti + 1) * rbe : end;
                bool fresh = bo >= (e + n) * cs;
                if ((r = rb_rmw(img, bo, fresh, c0, c1, 1)) < 0)
                        goto out;
        }
        if ((r = fdatasync(img->fd) < 0 ? -errno : 0) < 0 ||
            (r = q2_pwrite_full(img->fd, nt, n * cs, e * cs)) < 0 ||
            (r = fdatasync(img->fd) < 0 ? -errno : 0) < 0)
                goto out;
        q2_put64(hdr, e * cs);
        q2_put32(hdr + 8, (uint32_t) n);
        if ((r = header_patch(img->fd, 48, hdr, 12)) < 0 || (r = fdatasync(img->fd) < 0 ? -errno : 0) < 0)
                goto out;
        old_off = img->h.rt_offset;
        old_n = img->h.rt_clusters;
        free(img->rt_disk);
        img->rt_disk = nt;
        nt = NULL;
        img->h.rt_offset = e * cs;
        img->h.rt_clusters = (uint32_t) n;
        img->rt_entries = (uint32_t) new_entries;
        img->rt_units_n = (uint32_t) (n * cs / 512);
        img->file_size = end * cs;
        /* Free the old table (a crash before this point leaks it). */
        for (uint64_t c = old_off / cs; c < old_off / cs + old_n; c++) {
                uint64_t bo = q2_be64(img->rt_disk + 8 * (c / rbe)) & Q2_RTE_OFFSET;
                if (bo && (r = rb_rmw(img, bo, false, c, c + 1, -1)) < 0)
                        goto out;
        }
        r = fdatasync(img->fd) < 0 ? -errno : 0;
out:
        free(nt);
        if (r < 0 && reason && !reason[0])
                fail(reason, rlen, r, "growing the refcount table failed: %s", strerror(-r));
        return r;
}

static void image_free(struct qcow2_image *img)
{
        if (!img)
                return;
        if (img->hash)
                q2_cache_free(img);
        q2_rc_free(img);
        free(img->l1_disk);
        free(img->l1_units);
        free(img->rt_disk);
        free(img->rt_dirty);
        free(img->pool);
        for (unsigned i = 0; i < 4; i++)
                free(img->dc[i].data);
        pthread_mutex_destroy(&img->lock);
        free(img);
}

static int file_size_of(int fd, uint64_t *size)
{
        struct stat st;
        off_t end;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                *size = (uint64_t) st.st_size;
                return 0;
        }
        end = lseek(fd, 0, SEEK_END);
        if (end < 0)
                return -errno;
        *size = (uint64_t) end;
        return 0;
}

int qcow2_open(struct qcow2_image **out, int fd, bool read_only, struct qcow2_image *backing,
               const struct qcow2_opts *opts, char *reason, size_t rlen)
{
        struct qcow2_image *img;
        uint64_t fsize, cs, budget, l1_bytes;
        uint8_t *buf;
        size_t blen;
        int r;

        if (reason && rlen)
                reason[0] = 0;
        *out = NULL;
        if ((r = file_size_of(fd, &fsize)) < 0)
                return fail(reason, rlen, r, "cannot size the image: %s", strerror(-r));
        blen = fsize < (2u << 20) ? (size_t) fsize : (2u << 20);
        blen = (blen + 511) & ~(size_t) 511;     /* whole sectors; zeros past the end */
        buf = q2_buf(blen ? blen : 512, false);
        img = calloc(1, sizeof(*img));
        if (!buf || !img) {
                free(buf);
                free(img);
                return -ENOMEM;
        }
        pthread_mutex_init(&img->lock, NULL);
        img->fd = fd;
        img->read_only = read_only;
        img->file_size = fsize;
        if ((r = q2_pread_full(fd, buf, blen, 0)) < 0) {
                fail(reason, rlen, r, "cannot read the header: %s", strerror(-r));
                goto err;
        }
        r = qcow2_parse_header(buf, blen, fsize, &img->h, reason, rlen);
        free(buf);
        buf = NULL;
        if (r < 0)
                goto err;
        if (!read_only && img->h.dirty) {
                r = fail(reason, rlen, -EROFS, "image has the dirty bit set (refcounts may be stale): repair it with 'qemu-img check -r all', or open it read-only");
                goto err;
        }
        if (!read_only && img->h.ext_l2) {
                r = fail(reason, rlen, -EOPNOTSUPP, "image uses extended L2 entries (subclusters, incompatible feature bit 4): served read-only only");
                goto err;
        }
        if (!read_only && img->h.corrupt) {
                r = fail(reason, rlen, -EROFS, "image is marked corrupt: repair it with 'qemu-img check -r all', or open it read-only");
                goto err;
        }
        if (img->h.backing_len && !backing) {
                r = fail(reason, rlen, -EINVAL, "image has the backing file \"%s\": it must be opened and given too", img->h.backing_name);
                goto err;
        }
        if (!img->h.backing_len && backing) {
                r = fail(reason, rlen, -EINVAL, "image has no backing file, but one was given");
                goto err;
        }
        img->backing = backing;
        img->size = img->h.size;
        img->cluster_bits = img->h.cluster_bits;
        cs = img->cluster_size = 1u << img->cluster_bits;
        img->l2_entries = img->cluster_size / (img->h.ext_l2 ? 16 : 8);
        img->rb_bits = 1u << img->h.refcount_order;
        img->rb_entries = img->cluster_size * 8 / img->rb_bits;
        img->csize_shift = 62 - (img->cluster_bits - 8);
        img->csize_mask = (1ULL << (img->cluster_bits - 8)) - 1;
        img->coffset_mask = (1ULL << img->csize_shift) - 1;

        l1_bytes = ((uint64_t) img->h.l1_size * 8 + cs - 1) & ~(cs - 1);
        img->l1_disk = q2_buf(l1_bytes ? l1_bytes : 512, true);
        img->l1_units_n = (uint32_t) (l1_bytes / 512);
        img->l1_units = calloc(img->l1_units_n ? img->l1_units_n : 1, sizeof(*img->l1_units));
        img->rt_entries = (uint32_t) (((uint64_t) img->h.rt_clusters << img->cluster_bits) / 8);
        img->rt_disk = q2_buf((size_t) img->h.rt_clusters << img->cluster_bits, false);
        if (!img->l1_disk || !img->l1_units || !img->rt_disk) {
                r = -ENOMEM;
                goto err;
        }
        if ((img->h.l1_size && (r = q2_pread_full(fd, img->l1_disk, l1_bytes, img->h.l1_offset)) < 0) ||
            (r = q2_pread_full(fd, img->rt_disk, (size_t) img->h.rt_clusters << img->cluster_bits, img->h.rt_offset)) < 0) {
                fail(reason, rlen, r, "cannot read the L1 or refcount table: %s", strerror(-r));
                goto err;
        }
        if ((r = check_tables(img, reason, rlen)) < 0)
                goto err;
        if (!read_only) {
                if (img->h.version == 3 && img->h.autoclear) {
                        uint8_t zero[8] = { 0 };
                        if ((r = header_patch(fd, 88, zero, 8)) < 0 ||
                            (r = fdatasync(fd) < 0 ? -errno : 0) < 0) {
                                fail(reason, rlen, r, "cannot clear the autoclear features: %s", strerror(-r));
                                goto err;
                        }
                        img->h.autoclear = 0;
                }
                if ((r = grow_rt(img, reason, rlen)) < 0)
                        goto err;
        }
        img->rt_units_n = (uint32_t) (((uint64_t) img->h.rt_clusters << img->cluster_bits) / 512);
        img->rt_dirty = calloc(img->rt_units_n, sizeof(bool));
        if (!img->rt_dirty) {
                r = -ENOMEM;
                goto err;
        }
        for (uint32_t u = 0; u < img->l1_units_n; u++) {
                struct q2_meta *m = &img->l1_units[u];
                m->off = img->h.l1_offset + 512ULL * u;
                m->len = 512;
                m->mem = img->l1_disk + 512 * (size_t) u;
        }
        budget = opts && opts->cache_bytes ? opts->cache_bytes : 0;
        if (!budget) {
                budget = ((32ULL << 30) >> img->cluster_bits) * 8;
                if (budget > (32u << 20))
                        budget = 32u << 20;
        }
        if (budget < 16 * cs)
                budget = 16 * cs;
        if ((r = q2_cache_init(img, budget)) < 0)
                goto err;
        img->dc_n = cs <= 65536 ? 4 : 1;
        img->ext_end = img->file_size;
        img->hw = (img->file_size + cs - 1) & ~(cs - 1);
        if (!read_only) {
                uint64_t vclusters = (img->size + cs - 1) / cs;
                img->pool_k = (uint32_t) ((4u << 20) / cs);
                if (img->pool_k < 2)
                        img->pool_k = 2;
                if (img->pool_k > vclusters / 8 + 1)
                        img->pool_k = (uint32_t) (vclusters / 8 + 1);
                img->pool = malloc(img->pool_k * sizeof(*img->pool));
                if (!img->pool) {
                        r = -ENOMEM;
                        goto err;
                }
        }
        for (unsigned lvl = 1; backing; backing = backing->backing, lvl++)
                backing->level = lvl;
        *out = img;
        return 0;
err:
        free(buf);
        image_free(img);
        return r;
}

int qcow2_open_raw(struct qcow2_image **out, int fd, uint64_t size, char *reason, size_t rlen)
{
        struct qcow2_image *img = calloc(1, sizeof(*img));
        int r;

        *out = NULL;
        if (!img)
                return -ENOMEM;
        if ((r = file_size_of(fd, &img->file_size)) < 0) {
                free(img);
                return fail(reason, rlen, r, "cannot size the raw file: %s", strerror(-r));
        }
        pthread_mutex_init(&img->lock, NULL);
        img->fd = fd;
        img->raw = img->read_only = true;
        img->size = size;
        *out = img;
        return 0;
}

int qcow2_close(struct qcow2_image *img)
{
        int r = 0;

        if (!img)
                return 0;
        if (!img->raw && !img->read_only && !img->broken && img->hash) {
                /* The pool's clusters go back (nothing points at them). */
                while (img->pool_n && !r) {
                        uint64_t c = (img->pool[--img->pool_n] & ~1ULL) >> img->cluster_bits;
                        uint64_t rbo = q2_be64(img->rt_disk + 8 * (c / img->rb_entries)) & Q2_RTE_OFFSET;
                        struct q2_centry *ce = rbo ? q2_cache_find(img, rbo) : NULL;
                        uint32_t i = (uint32_t) (c % img->rb_entries);
                        if (ce && ce->state == Q2_CE_READY) {
                                uint64_t v = q2_rb_get(img, ce->m.mem, i);
                                q2_rb_set(img, ce->m.mem, i, v ? v - 1 : 0);
                                ce->dirty = true;
                        } else if (rbo)
                                r = rb_rmw(img, rbo, false, c, c + 1, -1);
                }
                for (struct q2_centry *ce = img->lru_head; ce && !r; ce = ce->lnext)
                        if (ce->kind == Q2_CE_RB && ce->dirty) {
                                r = q2_pwrite_full(img->fd, ce->m.mem, img->cluster_size, ce->m.off);
                                ce->dirty = false;
                        }
                if (!r && fdatasync(img->fd) < 0)
                        r = -errno;
                for (uint32_t u = 0; u < img->rt_units_n && !r; u++)
                        if (img->rt_dirty[u])
                                r = q2_pwrite_full(img->fd, img->rt_disk + 512 * (size_t) u, 512,
                                                   img->h.rt_offset + 512ULL * u);
                if (!r && fdatasync(img->fd) < 0)
                        r = -errno;
        }
        if (!r && img->broken)
                r = img->broken;
        image_free(img);
        return r;
}

const char *qcow2_backing_name(const struct qcow2_image *img)
{
        return !img->raw && img->h.backing_len ? img->h.backing_name : NULL;
}

const char *qcow2_backing_format(const struct qcow2_image *img)
{
        return !img->raw && img->h.backing_format[0] ? img->h.backing_format : NULL;
}

uint64_t qcow2_size(const struct qcow2_image *img)
{
        return img->size;
}

uint32_t qcow2_cluster_size(const struct qcow2_image *img)
{
        return img->raw ? 0 : img->cluster_size;
}

int qcow2_version(const struct qcow2_image *img)
{
        return img->raw ? 0 : img->h.version;
}

const char *qcow2_compression(const struct qcow2_image *img)
{
        return img->h.compression == 1 ? "zstd" : "zlib";
}
