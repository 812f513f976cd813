/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 engine (src/daemon/qcow2) on the host, with qemu's own tools as the judge:
 *  - reads: images made by qemu-img/qemu-io (v2, v3, 4K/64K/2M clusters, zero clusters,
 *    compressed zlib/zstd, an internal snapshot, a backing chain of depth 3 ending in a shorter
 *    raw file) read through the engine == "qemu-img convert -O raw";
 *  - writes: random writes, discards, write-zeroes and flushes from 1-4 threads, each with its
 *    own queue, through a backend that completes host IO in order or in a random order; then
 *    "qemu-img check" (no errors, no leaks) and "qemu-img compare" with a raw reference that
 *    got the same writes;
 *  - crashes: the same workload with the backend dropping every host IO after the Nth (as a
 *    kill -9 would), for many N: "qemu-img check" finds no corruption (leaks allowed);
 *  - bad images: each refused with the error that names the problem.
 * Needs qemu-img and qemu-io (skipped, exit 77, without them).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "qcow2.h"

/* A crash point abandons its image mid-flight, as a dying process would: LeakSanitizer (the
 * sanitized CI build runs with detect_leaks=1) must not count that memory, only the rest. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/lsan_interface.h>
#define LEAKS_IGNORED(on) do { if (on) __lsan_disable(); else __lsan_enable(); } while (0)
#else
#define LEAKS_IGNORED(on) do { } while (0)
#endif

static char dir[256];
static bool direct;                     /* open the images with O_DIRECT */

/* Guest buffers as ublk gives them: page-aligned (O_DIRECT needs it). */
static void *abuf(size_t len)
{
        void *p;

        if (posix_memalign(&p, 4096, len ? len : 1))
                abort();
        return p;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
        char cmd[2048];
        va_list ap;
        int r;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        r = system(cmd);
        return WIFEXITED(r) ? WEXITSTATUS(r) : 128;
}

static const char *path(const char *name)
{
        static char buf[8][512];
        static int i;

        i = (i + 1) % 8;
        snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
        return buf[i];
}

/* ---- the test backend: one per thread/queue ------------------------------------------- */
static atomic_long io_budget = -1;      /* >= 0: host IOs left before the "crash" */
static atomic_bool crashed;
static atomic_long n_ios, n_fsyncs, n_wbytes;  /* host IOs done, for the summary lines */

/* Power loss: writes not covered by a finished fsync stay in this log (reads see them); at the
 * "crash" a random half of them reach the file, in order.  An fsync covers the writes that
 * completed before it was submitted. */
static bool powerloss;
static pthread_mutex_t plock = PTHREAD_MUTEX_INITIALIZER;
struct ulog {
        uint64_t seq, off;
        int fd;
        size_t len;
        uint8_t *data;
};
static struct ulog *ulog;
static size_t ulog_n, ulog_cap;
static uint64_t useq;

static void ulog_write(int fd, const void *buf, size_t len, uint64_t off)
{
        pthread_mutex_lock(&plock);
        if (ulog_n == ulog_cap) {
                ulog_cap = ulog_cap ? 2 * ulog_cap : 256;
                ulog = realloc(ulog, ulog_cap * sizeof(*ulog));
        }
        ulog[ulog_n] = (struct ulog) { ++useq, off, fd, len, malloc(len) };
        memcpy(ulog[ulog_n++].data, buf, len);
        pthread_mutex_unlock(&plock);
}

static ssize_t ulog_read(int fd, void *buf, size_t len, uint64_t off)
{
        ssize_t r = pread(fd, buf, len, (off_t) off);
        size_t got;

        if (r < 0)
                return r;
        got = (size_t) r;
        memset((uint8_t *) buf + got, 0, len - got);
        pthread_mutex_lock(&plock);
        for (size_t i = 0; i < ulog_n; i++) {
                struct ulog *u = &ulog[i];
                uint64_t a = u->off > off ? u->off : off, b = u->off + u->len < off + len ? u->off + u->len : off + len;
                if (u->fd != fd || a >= b)
                        continue;
                memcpy((uint8_t *) buf + (a - off), u->data + (a - u->off), b - a);
                if (b - off > got)
                        got = b - off;
        }
        pthread_mutex_unlock(&plock);
        return (ssize_t) got;
}

/* Apply the log's entries up to seq (all: UINT64_MAX; keep_one_in: 1 all, 2 half) */
static void ulog_apply(int fd, uint64_t upto, unsigned keep_one_in, unsigned *seed)
{
        size_t j = 0;

        pthread_mutex_lock(&plock);
        for (size_t i = 0; i < ulog_n; i++) {
                struct ulog *u = &ulog[i];
                if ((fd >= 0 && u->fd != fd) || u->seq > upto) {
                        ulog[j++] = *u;
                        continue;
                }
                if (keep_one_in == 1 || rand_r(seed) % keep_one_in == 0)
                        if (pwrite(u->fd, u->data, u->len, (off_t) u->off) != (ssize_t) u->len)
                                abort();
                free(u->data);
        }
        ulog_n = j;
        pthread_mutex_unlock(&plock);
}

struct tq {
        struct qcow2_queue *q;
        struct qcow2_io **io;
        uint64_t *mark;                 /* fsync: the last write it covers (power loss) */
        size_t n, cap;
        bool random;
        unsigned seed;
        atomic_bool woken;
        int outstanding;                /* requests not completed */
};

static void tq_submit(void *ctx, struct qcow2_io *io)
{
        struct tq *t = ctx;

        if (t->n == t->cap) {
                t->cap = t->cap ? 2 * t->cap : 64;
                t->io = realloc(t->io, t->cap * sizeof(*t->io));
                t->mark = realloc(t->mark, t->cap * sizeof(*t->mark));
        }
        if (io->op == QCOW2_IO_FSYNC) {
                pthread_mutex_lock(&plock);
                t->mark[t->n] = useq;
                pthread_mutex_unlock(&plock);
        }
        t->io[t->n++] = io;
}

static void tq_wake(void *ctx)
{
        struct tq *t = ctx;
        atomic_store(&t->woken, true);
}

static const struct qcow2_io_ops tq_ops = { tq_submit, tq_wake };

static void tq_init(struct tq *t, bool random, unsigned seed)
{
        memset(t, 0, sizeof(*t));
        t->random = random;
        t->seed = seed;
        t->q = qcow2_queue_new(&tq_ops, t);
}

static void tq_fini(struct tq *t)
{
        qcow2_queue_free(t->q);
        free(t->io);
        free(t->mark);
}

/* Do one host IO (or run woken work): false when there was nothing to do. */
static bool tq_step(struct tq *t)
{
        struct qcow2_io *io;
        uint64_t mark;
        size_t i;
        ssize_t r;

        if (atomic_exchange(&t->woken, false)) {
                qcow2_queue_run(t->q);
                return true;
        }
        if (!t->n || atomic_load(&crashed))
                return false;
        i = t->random ? (size_t) rand_r(&t->seed) % t->n : 0;
        io = t->io[i];
        mark = t->mark[i];
        if (t->random) {
                t->io[i] = t->io[--t->n];
                t->mark[i] = t->mark[t->n];
        } else {
                memmove(t->io, t->io + 1, --t->n * sizeof(*t->io));
                memmove(t->mark, t->mark + 1, t->n * sizeof(*t->mark));
        }
        if (atomic_load(&io_budget) >= 0 && atomic_fetch_sub(&io_budget, 1) <= 0) {
                atomic_store(&crashed, true);
                return false;
        }
        atomic_fetch_add(&n_ios, 1);
        if (io->op == QCOW2_IO_FSYNC)
                atomic_fetch_add(&n_fsyncs, 1);
        if (io->op == QCOW2_IO_WRITE)
                atomic_fetch_add(&n_wbytes, (long) io->len);
        switch (io->op) {
        case QCOW2_IO_READ:
                r = powerloss ? ulog_read(io->fd, io->buf, io->len, io->off) :
                    pread(io->fd, io->buf, io->len, (off_t) io->off);
                break;
        case QCOW2_IO_WRITE:
                if (powerloss) {
                        ulog_write(io->fd, io->buf, io->len, io->off);
                        r = (ssize_t) io->len;
                } else
                        r = pwrite(io->fd, io->buf, io->len, (off_t) io->off);
                break;
        default:
                /* fdatasync: the page cache survives a kill (skipped for speed); with power
                 * loss, what it covers leaves the log for the file */
                if (powerloss)
                        ulog_apply(io->fd, mark, 1, NULL);
                r = 0;
                break;
        }
        qcow2_io_done(t->q, io, r < 0 ? -errno : (int) r);
        return true;
}

struct sreq {
        struct qcow2_req r;
        int result;
};

static void req_done(struct qcow2_req *req, int result)
{
        struct tq *t = req->priv;

        ((struct sreq *) req)->result = result;
        t->outstanding--;
}

/* One request, run to completion on t (the "synchronous" helper). */
static int run1(struct qcow2_image *img, struct tq *t, enum qcow2_req_op op, uint64_t off,
                uint64_t len, void *buf)
{
        struct sreq s = { .r = { .op = op, .off = off, .len = len, .buf = buf,
                                 .complete = req_done, .priv = t } };

        t->outstanding++;
        qcow2_submit(img, t->q, &s.r);
        while (t->outstanding)
                if (!tq_step(t)) {
                        if (atomic_load(&crashed))
                                return -EIO;
                        sched_yield();
                }
        return s.result;
}

/* ---- images --------------------------------------------------------------------------- */
struct chain {
        struct qcow2_image *img[4];
        int fd[4];
        int n;
};

static bool is_qcow2(int fd)
{
        unsigned char *m = abuf(512);
        bool yes = pread(fd, m, 512, 0) >= 4 && !memcmp(m, "QFI\xfb", 4);

        free(m);
        return yes;
}

/* Open name and its backing chain (names relative to dir). */
static int open_chain(struct chain *c, const char *name, bool ro, uint64_t cache)
{
        char names[4][1400], reason[256];
        struct qcow2_opts o = { .cache_bytes = cache };
        int n = 0, r;

        memset(c, 0, sizeof(*c));
        snprintf(names[0], sizeof(names[0]), "%s", path(name));
        for (;;) {
                int fd = open(names[n], ((n == 0 && !ro) ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0));
                struct qcow2_image *tmp;
                if (fd < 0)
                        return -errno;
                c->fd[n] = fd;
                if (!is_qcow2(fd))
                        break;
                r = qcow2_open(&tmp, fd, true, NULL, NULL, reason, sizeof(reason));
                if (r == -EINVAL && strstr(reason, "backing file")) {
                        /* find the name: parse the header alone */
                        uint8_t *hb = abuf(65536);
                        struct qcow2_header_info h;
                        ssize_t got = pread(fd, hb, 65536, 0);
                        struct stat st;
                        fstat(fd, &st);
                        r = got < 72 || qcow2_parse_header(hb, (size_t) got, (uint64_t) st.st_size, &h, reason, sizeof(reason));
                        free(hb);
                        if (r)
                                return -EINVAL;
                        if (h.backing_name[0] == '/')
                                snprintf(names[n + 1], sizeof(names[n + 1]), "%s", h.backing_name);
                        else
                                snprintf(names[n + 1], sizeof(names[n + 1]), "%s/%s", dir, h.backing_name);
                        n++;
                        continue;
                }
                if (r == 0)
                        qcow2_close(tmp);
                break;
        }
        c->n = n + 1;
        for (int i = n; i >= 0; i--) {
                struct qcow2_image *b = i < n ? c->img[i + 1] : NULL;
                if (!is_qcow2(c->fd[i])) {
                        struct stat st;
                        fstat(c->fd[i], &st);
                        r = qcow2_open_raw(&c->img[i], c->fd[i], (uint64_t) st.st_size, reason, sizeof(reason));
                } else
                        r = qcow2_open(&c->img[i], c->fd[i], i == 0 ? ro : true, b, &o, reason, sizeof(reason));
                if (r < 0) {
                        fprintf(stderr, "open %s: %s\n", names[i], reason);
                        return r;
                }
        }
        return 0;
}

static int close_chain(struct chain *c)
{
        int r = 0;

        for (int i = 0; i < c->n; i++) {
                int x = qcow2_close(c->img[i]);
                if (x && !r)
                        r = x;
                close(c->fd[i]);
        }
        return r;
}

static uint8_t *slurp(const char *p, size_t *len)
{
        int fd = open(p, O_RDONLY);
        struct stat st;
        uint8_t *b;

        if (fd < 0 || fstat(fd, &st) < 0)
                return NULL;
        b = malloc((size_t) st.st_size + 1);
        if (pread(fd, b, (size_t) st.st_size, 0) != st.st_size) {
                free(b);
                b = NULL;
        }
        *len = (size_t) st.st_size;
        close(fd);
        return b;
}

/* Read all of name through the engine in odd-sized requests; compare with qemu's raw. */
static void check_read(const char *name, uint64_t cache)
{
        struct chain c;
        struct tq t;
        size_t rawlen;
        uint8_t *raw, *buf;
        uint64_t size, off = 0;
        unsigned seed = 1;
        int bad = 0;

        CHECK(sh("qemu-img convert -O raw %s %s", path(name), path("ref.raw")) == 0, "convert %s", name);
        raw = slurp(path("ref.raw"), &rawlen);
        if (!raw || open_chain(&c, name, true, cache) < 0) {
                CHECK(0, "open %s", name);
                free(raw);
                return;
        }
        size = qcow2_size(c.img[0]);
        CHECK(size == rawlen, "%s: size %" PRIu64 " vs %zu", name, size, rawlen);
        buf = abuf(1 << 21);
        tq_init(&t, true, 7);
        while (off < size && off < rawlen) {
                uint64_t len = 512 * (1 + (uint64_t) rand_r(&seed) % 4096);
                if (len > size - off)
                        len = size - off;
                memset(buf, 0xee, len);
                int r = run1(c.img[0], &t, QCOW2_READ, off, len, buf);
                if (r || memcmp(buf, raw + off, len)) {
                        if (bad++ < 3)
                                fprintf(stderr, "%s: read at %" PRIu64 "+%" PRIu64 ": %d / differs\n", name, off, len, r);
                }
                off += len;
        }
        CHECK(bad == 0, "%s: %d reads differ from qemu-img convert", name, bad);
        tq_fini(&t);
        CHECK(close_chain(&c) == 0, "close %s", name);
        free(buf);
        free(raw);
}

static void test_reads(void)
{
        /* v3 64K: data, zero clusters, a discard, a partial cluster */
        sh("qemu-img create -q -f qcow2 -o cluster_size=64k %s 16M", path("a.qcow2"));
        sh("qemu-io -c 'write -P 0x11 0 200k' -c 'write -P 0x22 1M 64k' -c 'write -z 2M 128k' "
           "-c 'write -P 0x33 3M 4k' -c 'write -P 0x44 5M 1M' -c 'discard 5M 64k' -c 'write -P 0x55 16320k 64k' %s >/dev/null",
           path("a.qcow2"));
        check_read("a.qcow2", 0);
        /* the same with a tiny cache: loads and evictions all the time */
        check_read("a.qcow2", 1);
        /* v2 4K, 2M v3 with refcount_bits=1 */
        sh("qemu-img create -q -f qcow2 -o cluster_size=4k,compat=0.10 %s 8M", path("b.qcow2"));
        sh("qemu-io -c 'write -P 0x61 4k 12k' -c 'write -P 0x62 3M 1M' -c 'write -P 0x63 8188k 4k' %s >/dev/null", path("b.qcow2"));
        check_read("b.qcow2", 0);
        sh("qemu-img create -q -f qcow2 -o cluster_size=2M,refcount_bits=1 %s 12M", path("c.qcow2"));
        sh("qemu-io -c 'write -P 0x71 1M 2M' -c 'write -z 6M 2M' -c 'write -P 0x72 11M 512' %s >/dev/null", path("c.qcow2"));
        check_read("c.qcow2", 0);
        /* compressed, zlib and zstd, from a raw file of mixed content */
        sh("dd if=/dev/urandom of=%s bs=64k count=8 status=none && head -c 1M /dev/zero >> %s && "
           "yes qcow2 | head -c 3M >> %s", path("mix.raw"), path("mix.raw"), path("mix.raw"));
        sh("qemu-img convert -c -O qcow2 %s %s", path("mix.raw"), path("z.qcow2"));
        check_read("z.qcow2", 0);
        sh("qemu-img convert -c -O qcow2 -o cluster_size=4k %s %s", path("mix.raw"), path("z4.qcow2"));
        check_read("z4.qcow2", 0);
        if (sh("qemu-img convert -c -O qcow2 -o compression_type=zstd %s %s", path("mix.raw"), path("zs.qcow2")) == 0)
                check_read("zs.qcow2", 0);
        /* an internal snapshot, then writes over it */
        sh("qemu-img create -q -f qcow2 %s 4M && qemu-io -c 'write -P 0x81 0 1M' %s >/dev/null && "
           "qemu-img snapshot -c s1 %s && qemu-io -c 'write -P 0x82 512k 1M' %s >/dev/null",
           path("s.qcow2"), path("s.qcow2"), path("s.qcow2"), path("s.qcow2"));
        check_read("s.qcow2", 0);
        /* extended L2 entries (subclusters): data, zeros, unallocated over a backing file,
         * compressed, in subcluster pieces */
        sh("qemu-img create -q -f qcow2 %s 4M && qemu-io -c 'write -P 0xc1 0 4M' %s >/dev/null",
           path("xb.qcow2"), path("xb.qcow2"));
        sh("qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=64k -b xb.qcow2 -F qcow2 %s 6M && "
           "qemu-io -c 'write -P 0xc2 2k 3k' -c 'write -z 66k 10k' -c 'write -P 0xc3 130k 200k' "
           "-c 'write -z 1M 128k' -c 'discard 2M 64k' -c 'write -P 0xc4 4100k 1k' %s >/dev/null",
           path("xl.qcow2"), path("xl.qcow2"));
        check_read("xl.qcow2", 0);
        sh("qemu-img convert -c -O qcow2 -o extended_l2=on,cluster_size=16k %s %s", path("mix.raw"), path("xz.qcow2"));
        check_read("xz.qcow2", 0);
        /* a chain of depth 3 over a shorter raw base (of an odd size), also through O_DIRECT */
        sh("head -c 3001k /dev/urandom > %s && head -c 100 /dev/urandom >> %s", path("base.raw"), path("base.raw"));
        sh("qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw %s 8M", path("l1.qcow2"));
        sh("qemu-io -c 'write -P 0x91 1M 100k' -c 'write -P 0x92 4M 64k' %s >/dev/null", path("l1.qcow2"));
        sh("qemu-img create -q -f qcow2 -o compat=0.10 -b l1.qcow2 -F qcow2 %s 8M", path("l2.qcow2"));
        sh("qemu-io -c 'write -P 0xa1 1050k 300k' %s >/dev/null", path("l2.qcow2"));
        sh("qemu-img create -q -f qcow2 -o cluster_size=2M -b l2.qcow2 -F qcow2 %s 10M", path("l3.qcow2"));
        sh("qemu-io -c 'write -P 0xb1 2M 4k' -c 'write -z 6M 2M' %s >/dev/null", path("l3.qcow2"));
        check_read("l3.qcow2", 0);
        direct = true;
        check_read("l3.qcow2", 0);
        check_read("z.qcow2", 0);
        direct = false;
}

/* ---- random writes ---------------------------------------------------------------------- */
struct wl {                             /* one workload, shared by its threads */
        struct qcow2_image *img;
        int ref_fd;                     /* the raw reference */
        uint64_t size, cs;
        bool v3, backing;
        pthread_mutex_t lock;
        uint64_t busy_off[64], busy_len[64];    /* ranges in flight: never overlapping */
        int ops_left;
        unsigned seed;
        bool random_order;
        int failed;
        uint64_t max_len;
        atomic_int inflight;            /* requests of all threads not completed */
        bool discards;                  /* a workload of writes and discards, cluster-sized */
        bool crash;                     /* a crash point: its threads' memory is abandoned */
};

struct wreq {
        struct qcow2_req r;
        struct wl *w;
        int slot;
        uint8_t *buf;
};

static void wreq_done(struct qcow2_req *req, int result)
{
        struct wreq *x = (struct wreq *) req;
        struct tq *t = req->priv;
        struct wl *w = x->w;

        if (result) {
                if (!atomic_load(&crashed))
                        fprintf(stderr, "request %d at %" PRIu64 "+%" PRIu64 ": %d\n", req->op, req->off, req->len, result);
                w->failed++;
        }
        pthread_mutex_lock(&w->lock);
        w->busy_len[x->slot] = 0;
        pthread_mutex_unlock(&w->lock);
        t->outstanding--;
        atomic_fetch_sub(&w->inflight, 1);
        free(x->buf);
        free(x);
}

/* The reference's bytes for a request (what the engine promises reads give afterwards). */
static void ref_apply(struct wl *w, enum qcow2_req_op op, uint64_t off, uint64_t len, const uint8_t *buf)
{
        uint8_t *z;

        if (op == QCOW2_WRITE) {
                if (pwrite(w->ref_fd, buf, len, (off_t) off) != (ssize_t) len)
                        abort();
                return;
        }
        if (op != QCOW2_WRITE_ZEROES && op != QCOW2_DISCARD)
                return;
        z = calloc(1, len);
        for (uint64_t o = off; o < off + len;) {
                uint64_t cend = (o / w->cs + 1) * w->cs, n = (cend < off + len ? cend : off + len) - o;
                bool whole = o % w->cs == 0 && (n == w->cs || o + n == w->size);
                if (op == QCOW2_WRITE_ZEROES || (whole && (w->v3 || !w->backing)))
                        if (pwrite(w->ref_fd, z, n, (off_t) o) != (ssize_t) n)
                                abort();
                o += n;
        }
        free(z);
}

/* Start one random request on t if a non-overlapping range is found. */
static bool start_random(struct wl *w, struct tq *t)
{
        struct wreq *x;
        uint64_t off, len;
        int slot = -1, kind;
        enum qcow2_req_op op;

        pthread_mutex_lock(&w->lock);
        if (w->ops_left <= 0) {
                pthread_mutex_unlock(&w->lock);
                return false;
        }
        kind = rand_r(&w->seed) % 100;
        if (w->discards)
                op = kind < 50 ? QCOW2_WRITE : kind < 90 ? QCOW2_DISCARD : QCOW2_FLUSH;
        else
                op = kind < 70 ? QCOW2_WRITE : kind < 80 ? QCOW2_DISCARD : kind < 90 ? QCOW2_WRITE_ZEROES :
                     kind < 95 ? QCOW2_READ : QCOW2_FLUSH;
        len = 512 * (1 + (uint64_t) rand_r(&w->seed) % (w->max_len / 512));
        if (rand_r(&w->seed) % 3 == 0 || w->discards)
                len = w->cs * (1 + (uint64_t) rand_r(&w->seed) % 3);
        if (len > w->size)
                len = w->size;
        off = 512 * ((uint64_t) rand_r(&w->seed) % ((w->size - len) / 512 + 1));
        if (rand_r(&w->seed) % 3 == 0 || w->discards)
                off -= off % w->cs;
        if (off + len > w->size)
                len = w->size - off;
        for (int i = 0; i < 64; i++) {
                if (w->busy_len[i] && off < w->busy_off[i] + w->busy_len[i] && w->busy_off[i] < off + len) {
                        pthread_mutex_unlock(&w->lock);
                        return false;
                }
                if (!w->busy_len[i] && slot < 0)
                        slot = i;
        }
        if (slot < 0) {
                pthread_mutex_unlock(&w->lock);
                return false;
        }
        w->ops_left--;
        w->busy_off[slot] = off;
        w->busy_len[slot] = op == QCOW2_FLUSH ? 1 : len;
        x = calloc(1, sizeof(*x));
        x->w = w;
        x->slot = slot;
        x->buf = abuf(len);
        if (op == QCOW2_WRITE) {
                uint32_t v = (uint32_t) rand_r(&w->seed);
                for (uint64_t i = 0; i < len; i += 4) {
                        v = v * 1103515245u + 12345u;
                        memcpy(x->buf + i, &v, 4);
                }
        }
        /* The reference first: requests in flight never overlap, so order does not matter. */
        ref_apply(w, op, off, len, x->buf);
        pthread_mutex_unlock(&w->lock);
        x->r = (struct qcow2_req) { .op = op, .off = off, .len = op == QCOW2_FLUSH ? 0 : len,
                                    .buf = x->buf, .complete = wreq_done, .priv = t };
        t->outstanding++;
        atomic_fetch_add(&w->inflight, 1);
        qcow2_submit(w->img, t->q, &x->r);
        return true;
}

struct thr {
        pthread_t th;
        struct wl *w;
        struct tq t;
        int depth;
};

static void *thr_main(void *arg)
{
        struct thr *th = arg;
        struct wl *w = th->w;

        if (w->crash)
                LEAKS_IGNORED(true);    /* for this thread, to its end */
        for (;;) {
                bool did = false;
                while (th->t.outstanding < th->depth && start_random(w, &th->t))
                        did = true;
                if (tq_step(&th->t))
                        did = true;
                if (atomic_load(&crashed))
                        break;
                if (!did) {
                        bool left;
                        pthread_mutex_lock(&w->lock);
                        left = w->ops_left > 0;
                        pthread_mutex_unlock(&w->lock);
                        if (!left && atomic_load(&w->inflight) == 0 && th->t.n == 0 &&
                            !atomic_load(&th->t.woken))
                                break;
                        sched_yield();
                }
        }
        return NULL;
}

/* Other threads may still submit work to a queue (wakes) after its own requests are done:
 * every thread keeps stepping until all queues are idle. */
static void run_threads(struct wl *w, int nthreads, int depth)
{
        struct thr th[4];

        for (int i = 0; i < nthreads; i++) {
                th[i].w = w;
                th[i].depth = depth;
                tq_init(&th[i].t, w->random_order, 100 + (unsigned) i);
                pthread_create(&th[i].th, NULL, thr_main, &th[i]);
        }
        for (int i = 0; i < nthreads; i++)
                pthread_join(th[i].th, NULL);
        /* Work a thread's IO woke on another queue after that one left: drain serially. */
        for (bool more = true; more && !atomic_load(&crashed);) {
                more = false;
                for (int i = 0; i < nthreads; i++)
                        while (tq_step(&th[i].t))
                                more = true;
        }
        for (int i = 0; i < nthreads; i++)
                tq_fini(&th[i].t);
}

static int img_check(const char *name)
{
        return sh("qemu-img check -q %s >/dev/null 2>&1", path(name));
}

/* A fresh image: create opts, some preexisting data by qemu-io, then a random workload. */
/* QCOW2_TEST=word: only the tests whose label has it ("bad", "reads", "kill", "4k"...). */
static bool selected(const char *label)
{
        const char *only = getenv("QCOW2_TEST");
        return !only || strstr(label, only);
}

/* make: shell commands that make w.qcow2 (in dir) with some data; snapshot: its content
 * must not change. */
static void test_writes(const char *label, const char *make, const char *snapshot,
                        int ops, int nthreads, int depth, bool random_order, uint64_t cache)
{
        struct chain c;
        struct wl w;
        int r;

        if (!selected(label))
                return;
        CHECK(sh("cd %s && %s", dir, make) == 0, "%s: make the image", label);
        sh("qemu-img convert -O raw %s %s", path("w.qcow2"), path("wref.raw"));
        if (snapshot)
                sh("qemu-img convert -O raw -l snapshot.name=%s %s %s", snapshot, path("w.qcow2"), path("wsnap.raw"));
        if (open_chain(&c, "w.qcow2", false, cache) < 0) {
                CHECK(0, "%s: open", label);
                return;
        }
        memset(&w, 0, sizeof(w));
        pthread_mutex_init(&w.lock, NULL);
        w.img = c.img[0];
        w.ref_fd = open(path("wref.raw"), O_RDWR);
        w.size = qcow2_size(w.img);
        w.cs = qcow2_cluster_size(w.img);
        w.v3 = qcow2_version(w.img) == 3;
        w.backing = c.n > 1;
        w.ops_left = ops;
        w.seed = 42;
        w.random_order = random_order;
        w.max_len = 3 * w.cs > 256 * 1024 ? 256 * 1024 : 3 * w.cs;
        atomic_store(&n_ios, 0);
        atomic_store(&n_fsyncs, 0);
        atomic_store(&n_wbytes, 0);
        run_threads(&w, nthreads, depth);
        CHECK(w.failed == 0, "%s: %d requests failed", label, w.failed);
        CHECK(!qcow2_busy(w.img), "%s: host IO still in flight after the drain", label);
        r = close_chain(&c);
        CHECK(r == 0, "%s: close: %d", label, r);
        close(w.ref_fd);
        r = img_check("w.qcow2");
        CHECK(r == 0, "%s: qemu-img check exit %d", label, r);
        if (r)
                sh("qemu-img check %s | head -20 >&2", path("w.qcow2"));
        r = sh("qemu-img compare -q -f qcow2 -F raw %s %s", path("w.qcow2"), path("wref.raw"));
        CHECK(r == 0, "%s: qemu-img compare exit %d", label, r);
        if (snapshot) {
                int s = sh("qemu-img convert -O raw -l snapshot.name=%s %s %s && cmp -s %s %s", snapshot,
                           path("w.qcow2"), path("wsnap2.raw"), path("wsnap.raw"), path("wsnap2.raw"));
                CHECK(s == 0, "%s: the snapshot's content changed", label);
        }
        printf("%s: %d ops, %ld host IOs (%ld fsyncs, %.1f MiB written), check %s, compare %s\n", label, ops,
               atomic_load(&n_ios), atomic_load(&n_fsyncs), (double) atomic_load(&n_wbytes) / (1 << 20),
               r ? "-" : "ok", r ? "DIFFERS" : "equal");
}

static void copy_file(const char *from, const char *to)
{
        size_t len;
        uint8_t *b = slurp(from, &len);
        int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (!b || fd < 0 || write(fd, b, len) != (ssize_t) len)
                abort();
        close(fd);
        free(b);
}

/* Crash at host IO number n of a workload, for many n: no corruption ever. */
static void test_crash(const char *label, const char *create, uint64_t size, int ops,
                       int nthreads, int depth, int points, bool power, bool snapshot, bool discards)
{
        long total = 0;
        int corrupt = 0, leaks = 0, checked = 0;

        if (!selected(label))
                return;
        /* How many host IOs the whole workload does. */
        for (int k = -1; k < points; k++) {
                struct chain c;
                struct wl w;
                long budget;

                if (k < 0) {
                        sh("qemu-img create -q -f qcow2 %s %s %" PRIu64, create, path("c0.qcow2"), size);
                        sh("qemu-io -c 'write -P 0x5a 0 200k' %s >/dev/null", path("c0.qcow2"));
                        if (snapshot)
                                sh("qemu-img snapshot -c s1 %s && qemu-io -c 'write -P 0x5b 4M 300k' %s >/dev/null",
                                   path("c0.qcow2"), path("c0.qcow2"));
                        sh("head -c %" PRIu64 " /dev/zero > %s", size, path("cref.raw"));
                }
                copy_file(path("c0.qcow2"), path("c.qcow2"));
                if (k >= 0)
                        LEAKS_IGNORED(true);
                if (open_chain(&c, "c.qcow2", false, 0) < 0) {
                        CHECK(0, "%s: open", label);
                        return;
                }
                memset(&w, 0, sizeof(w));
                pthread_mutex_init(&w.lock, NULL);
                w.img = c.img[0];
                w.ref_fd = open(path("cref.raw"), O_RDWR);
                w.size = size;
                w.cs = qcow2_cluster_size(w.img);
                w.v3 = qcow2_version(w.img) == 3;
                w.ops_left = ops;
                w.seed = 7;
                w.random_order = true;
                w.discards = discards;
                w.crash = k >= 0;
                w.max_len = 3 * w.cs > 256 * 1024 ? 256 * 1024 : 3 * w.cs;
                atomic_store(&crashed, false);
                atomic_store(&io_budget, (long) 1 << 40);
                if (k >= 0) {
                        budget = 1 + (long) k * total / points;
                        atomic_store(&io_budget, budget);
                }
                powerloss = power;
                run_threads(&w, nthreads, depth);
                powerloss = false;
                if (k < 0) {
                        total = (1L << 40) - atomic_load(&io_budget);
                        ulog_apply(-1, UINT64_MAX, 1, NULL);
                        close_chain(&c);
                } else {
                        unsigned seed = (unsigned) k;
                        ulog_apply(-1, UINT64_MAX, 2, &seed);   /* half the unsynced writes */
                        /* the process died: nothing more is written, nothing freed */
                        for (int i = 0; i < c.n; i++)
                                close(c.fd[i]);
                }
                close(w.ref_fd);
                if (k >= 0)
                        LEAKS_IGNORED(false);
                atomic_store(&io_budget, -1);
                atomic_store(&crashed, false);
                int r = img_check("c.qcow2");
                if (k < 0)
                        CHECK(r == 0, "%s: without a crash, qemu-img check exit %d", label, r);
                if (k >= 0)
                        checked++;
                if (r == 3)
                        leaks++;
                else if (r != 0) {
                        corrupt++;
                        fprintf(stderr, "%s: crash after %ld of %ld host IOs: qemu-img check exit %d\n",
                                label, k < 0 ? total : 1 + (long) k * total / points, total, r);
                        sh("qemu-img check %s 2>&1 | head -8 >&2", path("c.qcow2"));
                }
        }
        CHECK(corrupt == 0, "%s: %d of %d crash points left a corrupt image", label, corrupt, checked);
        printf("%s: %ld host IOs, %d crash points, %d with leaks, %d corrupt\n", label, total, checked, leaks, corrupt);
}

/* ---- bad images ------------------------------------------------------------------------- */
static void poke(const char *name, uint64_t off, const void *bytes, size_t n)
{
        int fd = open(path(name), O_RDWR);
        if (fd < 0 || pwrite(fd, bytes, n, (off_t) off) != (ssize_t) n)
                abort();
        close(fd);
}

static void put_be32(uint8_t *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }
static void put_be64(uint8_t *b, uint64_t v) { put_be32(b, v >> 32); put_be32(b + 4, (uint32_t) v); }

static void expect_refused(const char *name, bool ro, const char *words)
{
        char reason[256] = "";
        struct qcow2_image *img = NULL;
        int fd = open(path(name), ro ? O_RDONLY : O_RDWR);
        int r = qcow2_open(&img, fd, ro, NULL, NULL, reason, sizeof(reason));

        if (getenv("QCOW2_VERBOSE"))
                printf("%s: %s\n", name, reason);
        CHECK(r < 0 && strstr(reason, words), "%s: expected an error with \"%s\", got %d \"%s\"",
              name, words, r, reason);
        if (r == 0)
                qcow2_close(img);
        close(fd);
}

static void test_bad(void)
{
        uint8_t b[8];
        struct qcow2_image *img;
        char reason[256];
        int fd;

        sh("qemu-img create -q -f qcow2 %s 64M", path("good.qcow2"));
#define BAD(name, off, val, words)                                                      \
        do {                                                                          \
                sh("cp %s %s", path("good.qcow2"), path(name));                       \
                put_be64(b, val);                                                     \
                poke(name, off, b, 8);                                                \
                expect_refused(name, true, words);                                    \
        } while (0)
        sh("head -c 50 %s > %s", path("good.qcow2"), path("trunc.qcow2"));
        expect_refused("trunc.qcow2", true, "too short");
        BAD("cbits.qcow2", 16, (uint64_t) 0 << 32 | 30, "cluster_bits 30");
        BAD("l1past.qcow2", 40, 1ULL << 30, "L1 table");
        BAD("l1past2.qcow2", 40, 1ULL << 30, "past the end");
        BAD("rtpast.qcow2", 48, 1ULL << 34, "refcount table");
        BAD("overlap.qcow2", 40, 0x10000, "overlap");    /* L1 onto the refcount table */
        BAD("rorder.qcow2", 96, (uint64_t) 7 << 32 | 112, "refcount_order 7");
        BAD("crypt.qcow2", 32, (uint64_t) 2 << 32 | 0x80, "encrypted");
        sh("cp %s %s", path("good.qcow2"), path("extl2.qcow2"));
        put_be64(b, 1ULL << 4);
        poke("extl2.qcow2", 72, b, 8);
        expect_refused("extl2.qcow2", false, "extended L2 entries");
        BAD("datafile.qcow2", 72, 1ULL << 2, "external data file");
        BAD("unknown.qcow2", 72, 1ULL << 9, "unknown incompatible feature");
        BAD("l1small.qcow2", 32, 0x0000000000000000ULL, "l1_size 0 too small");
        /* a refcount table entry naming the L1 table's cluster, and one naming a block twice */
        sh("cp %s %s", path("good.qcow2"), path("loop.qcow2"));
        put_be64(b, 0x10000);
        poke("loop.qcow2", 0x10000 + 8, b, 8);
        expect_refused("loop.qcow2", true, "points into");
        sh("cp %s %s", path("good.qcow2"), path("loop2.qcow2"));
        put_be64(b, 0x20000);
        poke("loop2.qcow2", 0x10000 + 8, b, 8);
        expect_refused("loop2.qcow2", true, "named twice");
        /* an L1 entry past the end of the file */
        sh("cp %s %s", path("good.qcow2"), path("l1e.qcow2"));
        put_be64(b, (1ULL << 63) | (1ULL << 40));
        poke("l1e.qcow2", 0x30000, b, 8);
        expect_refused("l1e.qcow2", true, "points past the end");
        /* a LUKS image made by qemu-img, when it can */
        int luks = sh("qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0 %s 1M 2>/dev/null", path("luks.qcow2"));
        if (luks == 0)
                expect_refused("luks.qcow2", true, "crypt_method 2, LUKS");
        if (sh("qemu-img create -q -f qcow2 -o extended_l2=on %s 1M 2>/dev/null", path("el2.qcow2")) == 0)
                expect_refused("el2.qcow2", false, "extended L2 entries (subclusters, incompatible feature bit 4): served read-only");
        /* the dirty bit: read-only is fine, writing is refused naming the fix */
        sh("cp %s %s", path("good.qcow2"), path("dirty.qcow2"));
        put_be64(b, 1);
        poke("dirty.qcow2", 72, b, 8);
        expect_refused("dirty.qcow2", false, "qemu-img check -r all");
        fd = open(path("dirty.qcow2"), O_RDONLY);
        CHECK(qcow2_open(&img, fd, true, NULL, NULL, reason, sizeof(reason)) == 0, "dirty read-only: %s", reason);
        qcow2_close(img);
        close(fd);
        /* an L2 entry (COPIED) pointing at the refcount table: a write there is refused, the
         * table stays as it is */
        sh("cp %s %s && qemu-io -c 'write -P 1 0 4k' %s >/dev/null", path("good.qcow2"), path("l2meta.qcow2"), path("l2meta.qcow2"));
        put_be64(b, (1ULL << 63) | 0x10000);
        poke("l2meta.qcow2", 0x40000, b, 8);
        fd = open(path("l2meta.qcow2"), O_RDWR);
        if (qcow2_open(&img, fd, false, NULL, NULL, reason, sizeof(reason)) == 0) {
                struct tq t;
                uint8_t data[4096], rt[8];
                memset(data, 0xab, sizeof(data));
                tq_init(&t, false, 1);
                CHECK(run1(img, &t, QCOW2_WRITE, 0, sizeof(data), data) == -EIO, "l2meta: a write onto the refcount table was not refused");
                CHECK(pread(fd, rt, 8, 0x10000) == 8 && rt[5] == 0x02 && rt[6] == 0 && rt[7] == 0, "l2meta: the refcount table changed");
                tq_fini(&t);
                qcow2_close(img);
        } else
                CHECK(0, "l2meta: open: %s", reason);
        close(fd);
        /* a backing file named but not given */
        sh("qemu-img create -q -f qcow2 -b good.qcow2 -F qcow2 %s", path("ovl.qcow2"));
        expect_refused("ovl.qcow2", true, "backing file \"good.qcow2\"");
#undef BAD
}

int main(void)
{
        struct timespec t0, t1;

        if (system("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") != 0) {
                printf("qemu-img / qemu-io missing: skipped\n");
                return 77;
        }
        snprintf(dir, sizeof(dir), "/tmp/test-qcow2.XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (selected("bad"))
                test_bad();
        if (selected("reads"))
                test_reads();
#define MK(opts, size) "qemu-img create -q -f qcow2 " opts " w.qcow2 " size " && " \
                "qemu-io -c 'write -P 0x5a 0 300k' -c 'write -P 0x5b 5M 100k' w.qcow2 >/dev/null"
        test_writes("v3-64k-1thread-inorder", MK("-o cluster_size=64k", "32M"), NULL, 300, 1, 1, false, 0);
        test_writes("v3-4k-4threads-random", MK("-o cluster_size=4k", "16M"), NULL, 600, 4, 8, true, 0);
        direct = true;  /* the same through O_DIRECT fds, and a compressed image */
        test_writes("v3-4k-3threads-direct", MK("-o cluster_size=4k", "16M"), NULL, 300, 3, 8, true, 0);
        test_writes("v3-compressed-direct", "yes | head -c 3M > m.raw && head -c 1000 /dev/urandom >> m.raw && "
                    "qemu-img convert -c -O qcow2 -o cluster_size=4k m.raw w.qcow2", NULL, 200, 2, 8, true, 0);
        direct = false;
        test_writes("v2-64k-2threads-random", MK("-o compat=0.10", "16M"), NULL, 300, 2, 8, true, 0);
        test_writes("v3-2M-rc1-2threads", MK("-o cluster_size=2M,refcount_bits=1", "24M"), NULL, 100, 2, 4, true, 0);
        test_writes("v3-4k-rc64-tinycache-3threads", MK("-o cluster_size=4k,refcount_bits=64", "16M"), NULL, 400, 3, 8, true, 1);
        /* the other refcount widths: 4 bits (sub-byte), 8, 32 */
        test_writes("v3-64k-rc4", MK("-o cluster_size=64k,refcount_bits=4", "8M"), NULL, 100, 1, 4, true, 0);
        test_writes("v3-4k-rc8", MK("-o cluster_size=4k,refcount_bits=8", "8M"), NULL, 100, 2, 4, true, 0);
        test_writes("v3-4k-rc32", MK("-o cluster_size=4k,refcount_bits=32", "8M"), NULL, 100, 2, 4, true, 0);
        test_writes("v3-512-grow-2threads", MK("-o cluster_size=512", "8M"), NULL, 300, 2, 8, true, 0);
#define BASE "qemu-img create -q -f qcow2 wbase.qcow2 12M && qemu-io -c 'write -P 0x3c 0 12M' wbase.qcow2 >/dev/null && "
        test_writes("v3-backing-3threads", BASE MK("-o cluster_size=4k -b wbase.qcow2 -F qcow2", "16M"), NULL, 300, 3, 8, true, 0);
        test_writes("v2-backing-2threads", BASE MK("-o compat=0.10,cluster_size=4k -b wbase.qcow2 -F qcow2", "16M"), NULL, 300, 2, 8, true, 0);
        /* writes over an internal snapshot (COW of L2 tables and data), v2 and v3 */
        test_writes("v3-snapshot-2threads", MK("-o cluster_size=4k", "8M") " && qemu-img snapshot -c s1 w.qcow2 && "
                    "qemu-io -c 'write -P 0x5c 1M 64k' w.qcow2 >/dev/null", "s1", 300, 2, 8, true, 0);
        test_writes("v2-snapshot-1thread", MK("-o compat=0.10", "8M") " && qemu-img snapshot -c s1 w.qcow2", "s1", 200, 1, 4, true, 0);
        /* writes over compressed clusters (COW decompressing), zlib and zstd */
        test_writes("v3-compressed-2threads", "dd if=/dev/urandom of=m.raw bs=64k count=8 status=none && yes | head -c 4M >> m.raw && "
                    "qemu-img convert -c -O qcow2 -o cluster_size=4k m.raw w.qcow2", NULL, 300, 2, 8, true, 0);
        test_writes("v3-zstd-1thread", "yes | head -c 4M > m.raw && qemu-img convert -c -O qcow2 -o compression_type=zstd m.raw w.qcow2",
                    NULL, 200, 1, 8, true, 0);
#undef MK
#undef BASE
        test_crash("kill-v3-4k", "-o cluster_size=4k", 2 << 20, 120, 2, 8, 80, false, false, false);
        test_crash("kill-v2-64k-snapshot", "-o compat=0.10", 8 << 20, 80, 1, 8, 25, false, true, false);
        test_crash("powerloss-v3-4k", "-o cluster_size=4k", 2 << 20, 120, 2, 8, 80, true, false, false);
        test_crash("powerloss-v3-64k-snapshot", "-o cluster_size=64k", 8 << 20, 80, 2, 8, 25, true, true, false);
        test_crash("powerloss-discards-v3-4k", "-o cluster_size=4k", 256 << 10, 60, 1, 1, 150, true, false, true);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%.1f s\n", (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
        sh("rm -rf %s", dir);
        return check_summary();
}
