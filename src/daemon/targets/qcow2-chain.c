/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The qcow2 target's control side (qcow2-target.h): its options, the chain of images it is
 * given as fds checked against what the images name and opened base first, and its status.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "macro.h"
#include "qcow2-target.h"
#include "target.h"

void qcow2_tconfig_init(void *config)
{
        struct qcow2_tconfig *c = config;

        *c = (struct qcow2_tconfig) { .image_fd = -1 };
}

static void release_chain(struct qcow2_tconfig *c)
{
        for (unsigned i = 0; i < c->n_chain; i++)
                safe_close(c->chain[i]);
        c->n_chain = 0;
}

int qcow2_tset_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v)
{
        struct qcow2_tconfig *c = config;

        if (strcmp(o->key, "image") == 0) {
                /* The caller's fd stays the caller's (a message's, the fd store's): keep a copy. */
                int fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 3);

                if (fd < 0)
                        return -errno;
                safe_close(c->image_fd);
                c->image_fd = fd;
        } else if (strcmp(o->key, "backing-chain") == 0) {
                if (v->fds.n > ELEMENTSOF(c->chain))
                        return -E2BIG;
                release_chain(c);
                for (unsigned i = 0; i < v->fds.n; i++) {
                        c->chain[i] = fcntl(v->fds.fds[i], F_DUPFD_CLOEXEC, 3);
                        if (c->chain[i] < 0) {
                                int r = -errno;

                                c->n_chain = i;
                                release_chain(c);
                                return r;
                        }
                }
                c->n_chain = v->fds.n;
        } else if (strcmp(o->key, "metadata-cache") == 0)
                c->cache_bytes = v->u;          /* range: qcow2_tinit() */
        else
                return -EINVAL;
        return 0;
}

int qcow2_tget_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret)
{
        const struct qcow2_tconfig *c = config;

        if (strcmp(o->key, "image") == 0) {
                if (c->image_fd < 0)
                        return -ENOENT;
                ret->fd = c->image_fd;
        } else if (strcmp(o->key, "backing-chain") == 0) {
                if (!c->n_chain)
                        return -ENOENT;
                ret->fds.fds = c->chain;
                ret->fds.n = c->n_chain;
        } else if (strcmp(o->key, "metadata-cache") == 0) {
                if (!c->cache_bytes)
                        return -ENOENT;
                ret->u = c->cache_bytes;
        } else
                return -ENOENT;
        return 0;
}

void qcow2_tconfig_release(void *config)
{
        struct qcow2_tconfig *c = config;

        c->image_fd = safe_close(c->image_fd);
        release_chain(c);
}

/* err, with reason->text (cut to fit: a file name may be long). */
_printf_(3, 4)
static int refuse(struct ublk_reason *reason, int err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason->text, sizeof(reason->text), fmt, ap);
        va_end(ap);
        return err;
}

/* What level i is called in messages: "the image", "backing file 2 ('base.qcow2')". */
static const char *level_name(unsigned i, const char *named, char *buf, size_t len)
{
        if (i == 0)
                snprintf(buf, len, "the image");
        else
                snprintf(buf, len, "backing file %u ('%.160s')", i, named);
        return buf;
}

static int file_size(int fd, uint64_t *ret)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISBLK(st.st_mode))
                return ioctl(fd, BLKGETSIZE64, ret) < 0 ? -errno : 0;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        *ret = (uint64_t) st.st_size;
        return 0;
}

/* The fd may serve as a level: readable (writable too for a writable image), a file. */
static int check_fd(int fd, unsigned i, const char *named, bool *read_only, struct ublk_reason *reason)
{
        char what[256];
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0)
                return -errno;
        level_name(i, named, what, sizeof(what));
        if (flags & O_PATH) {
                (void) refuse(reason, 0, "The fd of %s is an O_PATH descriptor: open the file for reading", what);
                return -EBADFD;
        }
        if ((flags & O_ACCMODE) == O_WRONLY) {
                (void) refuse(reason, 0, "The fd of %s is open write-only: open it for reading", what);
                return -EBADFD;
        }
        if (read_only && (flags & O_ACCMODE) == O_RDONLY)
                *read_only = true;
        return 0;
}

/* Level i's first bytes, parsed: whether it is qcow2 (*is_qcow2; else h is not filled),
 * and its size. */
static int probe_level(int fd, unsigned i, const char *named, bool *is_qcow2, struct qcow2_header_info *h,
                       uint64_t *size, struct ublk_reason *reason)
{
        _cleanup_free_ uint8_t *buf = NULL;
        char what[256], why[200];
        size_t len;
        ssize_t n;
        int r;

        level_name(i, named, what, sizeof(what));
        r = file_size(fd, size);
        if (r == -EBADFD) {
                (void) refuse(reason, 0, "%c%s is neither a regular file nor a block device", what[0] - 32, what + 1);
                return r;
        }
        if (r < 0)
                return r;
        /* The header, its extensions and the backing file name are in the first cluster. */
        len = *size < (2u << 20) ? (size_t) *size : (2u << 20);
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        n = pread(fd, buf, len, 0);
        if (n < 0)
                return -errno;
        *is_qcow2 = n >= 4 && memcmp(buf, "QFI\xfb", 4) == 0;
        if (!*is_qcow2)
                return 0;
        r = qcow2_parse_header(buf, (size_t) n, *size, h, why, sizeof(why));
        if (r < 0)
                (void) refuse(reason, 0, "%c%s: %s", what[0] - 32, what + 1, why);
        return r;
}

bool qcow2_tbusy(const struct qcow2_tdev *td)
{
        for (unsigned i = 0; i < td->n; i++)
                if (td->level[i] && qcow2_busy(td->level[i]))
                        return true;
        return false;
}

static void close_levels(struct qcow2_tdev *td)
{
        /* The image first: it reads through the levels below until it is closed. */
        for (unsigned i = 0; i < td->n; i++) {
                int r;

                if (!td->level[i])
                        continue;
                r = qcow2_close(td->level[i]);
                if (r < 0)
                        log_warning_errno(r, "Failed to close level %u of a qcow2 chain cleanly "
                                          "(qemu-img check may find leaked clusters): %m", i);
                td->level[i] = NULL;
        }
}

/* The chain as the images name it, checked against the fds passed; then opened, base first. */
static int open_chain(struct ublk_dev *dev, struct qcow2_tdev *td, struct ublk_reason *reason)
{
        const struct qcow2_tconfig *c = dev->config.target_config;
        struct qcow2_opts opts = { .cache_bytes = c->cache_bytes };
        static const char fix[] = "give ublkctl the image itself: it opens the chain the image names";
        bool raw[UBLK_FDSTORE_FDS_MAX + 1] = {};
        uint64_t size[UBLK_FDSTORE_FDS_MAX + 1];
        char named[UBLK_FDSTORE_FDS_MAX + 1][1024];
        char fmt[UBLK_FDSTORE_FDS_MAX + 1][64];        /* the format level i names for i + 1 */
        struct qcow2_header_info h;
        char what[256], why[256];
        int r;

        td->n = 1 + c->n_chain;
        td->fd[0] = c->image_fd;
        for (unsigned i = 0; i < c->n_chain; i++)
                td->fd[i + 1] = c->chain[i];
        named[0][0] = 0;

        for (unsigned i = 0; i < td->n; i++) {
                const char *want = NULL;        /* the format the level above named */
                bool is_qcow2 = false;

                r = check_fd(td->fd[i], i, named[i], i == 0 ? &dev->config.read_only : NULL, reason);
                if (r >= 0 && dev->unprivileged)
                        r = target_check_user_backing(td->fd[i], reason);
                if (r < 0)
                        return r;
                r = probe_level(td->fd[i], i, named[i], &is_qcow2, &h, &size[i], reason);
                if (r < 0)
                        return r;
                if (i == 0 && !is_qcow2)
                        return refuse(reason, -EINVAL, "The image is not a qcow2 image (no QFI\\xfb magic): serve a raw "
                                      "file with the loop target");
                /* Messages below start with it: "The image ...", "Backing file 2 (...) ...". */
                level_name(i, named[i], what, sizeof(what));
                what[0] = (char) (what[0] - 'a' + 'A');
                if (i > 0 && fmt[i - 1][0])
                        want = fmt[i - 1];
                if (want && strcmp(want, "raw") == 0)
                        is_qcow2 = false;
                else if (want && strcmp(want, "qcow2") != 0)
                        return refuse(reason, -EOPNOTSUPP, "%s is named as format '%s': only qcow2 and raw backing files are served",
                                      what, want);
                else if (want && !is_qcow2)
                        return refuse(reason, -EINVAL, "%s is named as a qcow2 image but is not one (no QFI\\xfb magic): %s",
                                      what, fix);
                raw[i] = !is_qcow2;
                fmt[i][0] = 0;
                if (raw[i] || h.backing_len == 0) {
                        if (i + 1 < td->n)
                                return refuse(reason, -EINVAL, "%s names no backing file, but %u more file(s) were passed as its "
                                              "backing chain: %s", what,
                                              td->n - i - 1, fix);
                        continue;
                }
                if (i + 1 >= td->n)
                        return refuse(reason, -EINVAL, "%s names the backing file '%.300s', which was not passed (backing-chain "
                                      "has %u file(s)): %s", what,
                                      h.backing_name, c->n_chain, fix);
                snprintf(named[i + 1], sizeof(named[i + 1]), "%s", h.backing_name);
                snprintf(fmt[i], sizeof(fmt[i]), "%s", h.backing_format);
        }

        for (unsigned k = td->n; k-- > 0;) {
                why[0] = 0;
                if (raw[k])
                        r = qcow2_open_raw(&td->level[k], td->fd[k], size[k], why, sizeof(why));
                else
                        r = qcow2_open(&td->level[k], td->fd[k], k > 0 || dev->config.read_only,
                                       k + 1 < td->n ? td->level[k + 1] : NULL, &opts, why, sizeof(why));
                if (r < 0) {
                        level_name(k, named[k], what, sizeof(what));
                        if (why[0])
                                (void) refuse(reason, 0, "%c%s: %s", what[0] - 32, what + 1, why);
                        return r;
                }
        }
        return 0;
}

int qcow2_tinit(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        struct ublk_dev_config *c = &dev->config;
        const struct qcow2_tconfig *tc = c->target_config;
        struct qcow2_tdev *td;
        uint32_t lbs, cs;
        uint64_t size;
        int r;

        if (tc->image_fd < 0)
                return refuse(reason, -EBADF, "Target 'qcow2' needs an image: pass an open fd as option 'image'");
        if (tc->cache_bytes && tc->cache_bytes < (64u << 10))
                return refuse(reason, -EINVAL, "metadata-cache must be at least 64K");
        td = calloc(1, sizeof(*td));
        if (!td)
                return -ENOMEM;
        r = open_chain(dev, td, reason);
        if (r < 0) {
                close_levels(td);
                free(td);
                return r;
        }

        lbs = c->logical_block_size ? c->logical_block_size : 512;
        c->logical_block_size = lbs;
        size = qcow2_size(td->level[0]) / lbs * lbs;
        if (c->size == 0)
                c->size = size;
        if (c->size == 0 || c->size > size) {
                if (c->size)
                        (void) refuse(reason, 0, "The image's virtual size is %" PRIu64 " bytes, less than the requested size "
                               "%" PRIu64 ": resize it with qemu-img resize, or ask for less", size, c->size);
                else
                        (void) refuse(reason, 0, "The image's virtual size is %" PRIu64 " bytes: less than a block", size);
                close_levels(td);
                free(td);
                return -ENOSPC;
        }
        dev->target_data = td;

        ublk_params_set_basic(dev, params);
        /* Writes are durable at a flush (QCOW2_FLUSH: a barrier for data and metadata); FUA
         * the block layer turns into a flush after the write. */
        params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
        if (!c->read_only) {
                cs = qcow2_cluster_size(td->level[0]);
                /* The engine frees whole clusters only: smaller discards do nothing. */
                params->types |= UBLK_PARAM_TYPE_DISCARD;
                params->discard = (struct ublk_param_discard) {
                        .discard_granularity = cs > lbs ? cs : lbs,
                        .max_discard_sectors = UINT32_MAX >> 9,
                        .max_write_zeroes_sectors = UINT32_MAX >> 9,
                        .max_discard_segments = 1,
                };
        }
        return 0;
}

void qcow2_tdeinit(struct ublk_dev *dev)
{
        struct qcow2_tdev *td = dev->target_data;

        if (!td)
                return;
        if (qcow2_tbusy(td)) {
                /* Cannot be (the queues end after the last host IO): closing now would free
                 * what that IO completes into.  Leaking is the safe way out. */
                log_error("ublk device %u: qcow2 host IO still in flight at teardown; not closing the image",
                          dev->id);
                dev->target_data = NULL;
                return;
        }
        close_levels(td);
        free(td);
        dev->target_data = NULL;
}

/* What "ublkctl show" says: "qcow2 v3, 64K clusters, zlib, 12.5M allocated; backing:
 * base.qcow2 (qcow2) <- ...". */
void qcow2_tstatus(struct ublk_dev *dev, char *buf, size_t len)
{
        const struct qcow2_tdev *td = dev->target_data;
        struct stat st;
        size_t pos;
        uint32_t cs;

        if (!td || !td->level[0]) {
                snprintf(buf, len, "not open");
                return;
        }
        cs = qcow2_cluster_size(td->level[0]);
        pos = (size_t) snprintf(buf, len, "qcow2 v%d, %" PRIu32 "%s clusters, %s", qcow2_version(td->level[0]),
                                cs >= (1u << 20) ? cs >> 20 : cs >= 1024 ? cs >> 10 : cs,
                                cs >= (1u << 20) ? "M" : cs >= 1024 ? "K" : " B", qcow2_compression(td->level[0]));
        if (pos < len && fstat(td->fd[0], &st) == 0)
                pos += (size_t) snprintf(buf + pos, len - pos, ", %" PRIu64 "K allocated",
                                         (uint64_t) st.st_blocks / 2);
        for (unsigned i = 0; i + 1 < td->n && pos < len; i++) {
                const char *name = qcow2_backing_name(td->level[i]);
                const char *fmt = qcow2_version(td->level[i + 1]) ? "qcow2" : "raw";

                pos += (size_t) snprintf(buf + pos, len - pos, "%s%s (%s)", i == 0 ? "; backing: " : " <- ",
                                         name ? name : "?", fmt);
        }
}
