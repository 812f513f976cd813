/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "rbd": a device backed by an image of a Ceph cluster, through librados and librbd (never the
 * protocol by hand).
 *
 * Connecting (rados_connect, rbd_open) blocks: init() runs in a work thread (device.h), and
 * every wait is bounded by options set from connect-timeout and io-timeout, so that a dead
 * cluster is a one-line error in bounded time.  The cluster is told nothing but what this file
 * sets: for a user other than root, ublkd, which is root, reads no path of the user's and lets
 * librados read none (no default ceph.conf or keyring): the user's ceph.conf and keyring come as
 * fds, copied into memfds that librados reads as /proc/self/fd/N, and only the keys of their
 * ceph.conf that name no file are taken (rbd-conf.h).  Ceph writes no log file and makes no
 * admin socket.  Keys stay in librados's memory: never in a log, a state file or a property.
 *
 * IO: one image handle per device, shared by its queues.  librbd's handles are thread-safe, and
 * the exclusive lock is a handle's: two handles of one device would take it from each other at
 * every write.  Each request is an rbd_aio_* call whose completion callback (a librbd thread)
 * puts it on its queue's list and, when that list was empty, signals the queue's eventfd.
 * Each queue keeps a read of its eventfd on its io_uring (UBLK_UD_KIND_QUEUE), so its thread
 * stays event-driven: the read's CQE makes it take the list and commit each request.
 * (rbd_set_image_notification() signals one fd per image, which would not say which queue a
 * completion belongs to.)  No request has a thread of its own.
 *
 * io-timeout is librados's rados_osd_op_timeout: an OSD op not answered within it fails,
 * librbd fails the request, and the device gets EIO; the device stays.  ublkd cannot fail a
 * request earlier itself: librbd may still write a READ's data into the tag's buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "macro.h"
#include "queue.h"
#include "rbd-conf.h"
#include "target.h"
#include "ublk_cmd.h"

#define RBD_NAME_MAX 255
#define RBD_DEFAULT_IO_TIMEOUT 30
#define RBD_DEFAULT_CONNECT_TIMEOUT 30
/* Longer would leave a caller waiting past ublkctl's bus timeout. */
#define RBD_MAX_TIMEOUT 3600
/* A ceph.conf or a keyring is a few hundred bytes. */
#define RBD_FILE_MAX (64 * 1024)

/* Strings inline: the configuration stays readable after config_release() (target.h). */
struct rbd_config {
        char image[4 * (RBD_NAME_MAX + 1)];     /* POOL/[NAMESPACE/]IMAGE[@SNAP]; "" if none */
        char ceph_id[RBD_NAME_MAX + 1];         /* "": admin */
        char mon_host[1024];
        int conf_fd;            /* owned, -1 if none */
        int keyring_fd;
        uint32_t io_timeout;    /* 0: the default */
        uint32_t connect_timeout;
};

static void rbd_config_init(void *config)
{
        *(struct rbd_config *) config = (struct rbd_config) { .conf_fd = -1, .keyring_fd = -1 };
}

static int set_string(char *field, size_t size, const char *s)
{
        if (!*s || strlen(s) >= size)
                return -EINVAL;
        strcpy(field, s);
        return 0;
}

static int set_fd(int *field, int fd)
{
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

        if (copy < 0)
                return -errno;
        safe_close(*field);
        *field = copy;
        return 0;
}

static int rbd_set_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v)
{
        struct rbd_config *rc = config;

        if (strcmp(o->key, "image") == 0)
                return set_string(rc->image, sizeof(rc->image), v->s);
        if (strcmp(o->key, "ceph-id") == 0)
                return set_string(rc->ceph_id, sizeof(rc->ceph_id), v->s);
        if (strcmp(o->key, "mon-host") == 0)
                return set_string(rc->mon_host, sizeof(rc->mon_host), v->s);
        if (strcmp(o->key, "ceph-conf") == 0)
                return set_fd(&rc->conf_fd, v->fd);
        if (strcmp(o->key, "keyring") == 0)
                return set_fd(&rc->keyring_fd, v->fd);
        if (strcmp(o->key, "io-timeout") == 0 || strcmp(o->key, "connect-timeout") == 0) {
                /* Its range is rbd_init()'s to check, with a message. */
                if (v->u == 0 || v->u > UINT32_MAX)
                        return -EINVAL;
                *(o->key[0] == 'i' ? &rc->io_timeout : &rc->connect_timeout) = (uint32_t) v->u;
                return 0;
        }
        return -EINVAL;
}

static int rbd_get_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret)
{
        const struct rbd_config *rc = config;
        const char *s = NULL;
        int fd = -1;
        uint32_t u = 0;

        if (strcmp(o->key, "image") == 0)
                s = rc->image[0] ? rc->image : NULL;
        else if (strcmp(o->key, "ceph-id") == 0)
                s = rc->ceph_id[0] ? rc->ceph_id : NULL;
        else if (strcmp(o->key, "mon-host") == 0)
                s = rc->mon_host[0] ? rc->mon_host : NULL;
        else if (strcmp(o->key, "ceph-conf") == 0)
                fd = rc->conf_fd;
        else if (strcmp(o->key, "keyring") == 0)
                fd = rc->keyring_fd;
        else if (strcmp(o->key, "io-timeout") == 0)
                u = rc->io_timeout;
        else if (strcmp(o->key, "connect-timeout") == 0)
                u = rc->connect_timeout;
        if (s)
                ret->s = s;
        else if (fd >= 0)
                ret->fd = fd;
        else if (u)
                ret->u = u;
        else
                return -ENOENT;
        return 0;
}

static void rbd_config_release(void *config)
{
        struct rbd_config *rc = config;

        rc->conf_fd = safe_close(rc->conf_fd);
        rc->keyring_fd = safe_close(rc->keyring_fd);
}

static struct rbd_config *rbd_config(const struct ublk_dev *dev)
{
        return dev->config.target_config;
}

/* POOL/[NAMESPACE/]IMAGE[@SNAP], split in place. */
struct rbd_spec {
        char buf[4 * (RBD_NAME_MAX + 1)];
        const char *pool, *ns, *image, *snap;   /* ns, snap: NULL if none */
};

static bool name_ok(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= RBD_NAME_MAX && !strpbrk(s, "/@");
}

static int rbd_spec_parse(const char *text, struct rbd_spec *ret)
{
        char *p, *at, *slash;

        *ret = (struct rbd_spec) {};
        if (strlen(text) >= sizeof(ret->buf))
                return -EINVAL;
        strcpy(ret->buf, text);
        p = ret->buf;
        at = strchr(p, '@');
        if (at) {
                *at = 0;
                ret->snap = at + 1;
        }
        slash = strchr(p, '/');
        if (!slash)
                return -EINVAL;
        *slash = 0;
        ret->pool = p;
        p = slash + 1;
        slash = strchr(p, '/');
        if (slash) {
                *slash = 0;
                ret->ns = p;
                p = slash + 1;
        }
        ret->image = p;
        if (!name_ok(ret->pool) || !name_ok(ret->image) || (ret->ns && !name_ok(ret->ns)) ||
            (ret->snap && !name_ok(ret->snap)))
                return -EINVAL;
        return 0;
}

/* Names and addresses are long: a reason cut at its size still says what to fix. */
__attribute__((format(printf, 2, 3)))
static void reason_set(struct ublk_reason *reason, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason->text, sizeof(reason->text), fmt, ap);
        va_end(ap);
}

#define REASON(...) reason_set(reason, __VA_ARGS__)

/*
 * A caller's small file (ceph.conf, keyring), read from its fd into memory.  Only a regular
 * file, not on FUSE (a user's process could keep the read waiting forever), of at most
 * RBD_FILE_MAX bytes.
 */
static int read_caller_file(int fd, const char *what, char **ret, struct ublk_reason *reason)
{
        _cleanup_free_ char *buf = NULL;
        char type[64];
        struct stat st;
        size_t len = 0;
        int flags;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if ((flags & O_PATH) || (flags & O_ACCMODE) == O_WRONLY) {
                REASON("The %s fd is not open for reading: open the file for reading", what);
                return -EBADF;
        }
        if (target_backing_fs_type(fd, type, sizeof(type)) == 0 &&
            (strcmp(type, "fuse") == 0 || strncmp(type, "fuse.", 5) == 0 || strcmp(type, "fuseblk") == 0)) {
                REASON("The %s is on %s, which a user's process serves: copy it to a disk file system", what, type);
                return -EPERM;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size > RBD_FILE_MAX) {
                REASON("The %s must be a regular file of at most %d bytes", what, RBD_FILE_MAX);
                return -EINVAL;
        }
        buf = malloc(RBD_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        while (len < RBD_FILE_MAX) {
                ssize_t n = pread(fd, buf + len, RBD_FILE_MAX - len, (off_t) len);

                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (memchr(buf, 0, len)) {
                REASON("The %s holds a NUL byte: it is no text file", what);
                return -EINVAL;
        }
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* text in a sealed memfd, for librados to read as /proc/self/fd/N. */
static int memfd_with(const char *name, const char *text)
{
        size_t len = strlen(text), done = 0;
        int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0)
                return -errno;
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);

                if (n <= 0) {
                        int r = n < 0 ? -errno : -EIO;

                        close(fd);
                        return r;
                }
                done += (size_t) n;
        }
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
        return fd;
}

struct rbd_dev {
        rados_t cluster;
        rados_ioctx_t ioctx;
        rbd_image_t image;
        bool read_only;
        /* The image's header watch (rbd_update_watch()), for resizes made elsewhere. */
        struct ublk_dev *dev;
        uint64_t watch_handle;
        bool watching;
        pthread_mutex_t resize_lock;    /* one resize at a time (librbd may call us concurrently) */
        uint64_t size;                  /* the device's, in bytes */
};

static void rbd_dev_free(struct rbd_dev *rd)
{
        if (!rd)
                return;
        /* Waits for a callback under way: none runs after this. */
        if (rd->watching)
                (void) rbd_update_unwatch(rd->image, rd->watch_handle);
        pthread_mutex_destroy(&rd->resize_lock);
        if (rd->image)
                (void) rbd_close(rd->image);    /* flushes librbd's cache */
        if (rd->ioctx)
                rados_ioctx_destroy(rd->ioctx);
        if (rd->cluster)
                rados_shutdown(rd->cluster);
        free(rd);
}

static int conf_set_cb(void *arg, const char *key, const char *value)
{
        return rados_conf_set(arg, key, value);
}

/* What librados reads: root's ceph.conf (its own, or the default), or a user's filtered. */
static int rbd_read_conf(struct ublk_dev *dev, rados_t cluster, const char *id, struct ublk_reason *reason)
{
        struct rbd_config *rc = rbd_config(dev);
        _cleanup_free_ char *text = NULL;
        char why[200], path[64];
        unsigned ignored;
        int fd, r;

        if (rc->conf_fd < 0) {
                if (dev->unprivileged)
                        return 0;       /* rbd_init() checked that mon-host is set */
                /* Root's own: /etc/ceph/ceph.conf and the like, as librados finds them. */
                r = rados_conf_read_file(cluster, NULL);
                if (r < 0 && !rc->mon_host[0]) {
                        REASON("Cannot read a ceph.conf (/etc/ceph/ceph.conf: %s): pass one with ceph-conf, "
                               "or the monitors with mon-host", strerror(-r));
                        return r;
                }
                return 0;
        }
        r = read_caller_file(rc->conf_fd, "ceph.conf", &text, reason);
        if (r < 0)
                return r;
        if (dev->unprivileged) {
                r = rbd_conf_parse_user(text, id, conf_set_cb, cluster, &ignored, why, sizeof(why));
                if (r < 0) {
                        REASON("Cannot use the ceph.conf given: %s", why);
                        return r;
                }
                if (ignored)
                        log_info("rbd: took the cluster's address and settings from uid %u's ceph.conf, "
                                 "ignored %u other key(s) (ublkd(8), rbd).", (unsigned) dev->config.owner_uid,
                                 ignored);
                return 0;
        }
        fd = memfd_with("ceph.conf", text);
        if (fd < 0)
                return fd;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        r = rados_conf_read_file(cluster, path);
        close(fd);
        if (r < 0)
                REASON("Cannot use the ceph.conf given: librados refuses it (%s)", strerror(-r));
        return r;
}

/* Our settings, over whatever the conf said. */
static int rbd_force_conf(rados_t cluster, unsigned connect_timeout, unsigned io_timeout)
{
        char ct[16], it[16];
        const char *const settings[][2] = {
                /* No files of Ceph's: logs stay in memory, no admin socket. */
                { "log_file", "" },
                { "log_to_file", "false" },
                { "log_to_stderr", "false" },
                { "err_to_stderr", "false" },
                { "log_to_syslog", "false" },
                { "err_to_syslog", "false" },
                { "admin_socket", "" },
                /* Bounded waits: a dead cluster is an error, not a hang. */
                { "client_mount_timeout", ct },
                { "rados_mon_op_timeout", ct },
                { "rados_osd_op_timeout", it },
        };
        int r;

        snprintf(ct, sizeof(ct), "%u", connect_timeout);
        snprintf(it, sizeof(it), "%u", io_timeout);
        for (size_t i = 0; i < ELEMENTSOF(settings); i++) {
                r = rados_conf_set(cluster, settings[i][0], settings[i][1]);
                /* log_to_file is newer than some librados: the empty log_file does it there. */
                if (r < 0 && r != -ENOENT)
                        return log_debug_errno(r, "rbd: librados refuses %s=%s: %m", settings[i][0], settings[i][1]);
        }
        return 0;
}

static int rbd_connect(struct ublk_dev *dev, struct rbd_dev *rd, const struct rbd_spec *spec,
                       struct ublk_reason *reason)
{
        struct rbd_config *rc = rbd_config(dev);
        const char *id = rc->ceph_id[0] ? rc->ceph_id : "admin";
        unsigned ct = rc->connect_timeout ? rc->connect_timeout : RBD_DEFAULT_CONNECT_TIMEOUT;
        unsigned it = rc->io_timeout ? rc->io_timeout : RBD_DEFAULT_IO_TIMEOUT;
        char name[300], path[64];
        int keyring = -1, r;

        snprintf(name, sizeof(name), "client.%s", id);
        r = rados_create2(&rd->cluster, "ceph", name, 0);
        if (r < 0) {
                rd->cluster = NULL;
                REASON("librados refuses the client name '%s' (%s)", name, strerror(-r));
                return r;
        }
        r = rbd_read_conf(dev, rd->cluster, id, reason);
        if (r < 0)
                return r;
        if (rc->mon_host[0]) {
                r = rados_conf_set(rd->cluster, "mon_host", rc->mon_host);
                if (r < 0) {
                        REASON("librados refuses mon-host '%s' (%s)", rc->mon_host, strerror(-r));
                        return r;
                }
        }
        if (rc->keyring_fd >= 0) {
                _cleanup_free_ char *text = NULL;

                r = read_caller_file(rc->keyring_fd, "keyring", &text, reason);
                if (r < 0)
                        return r;
                keyring = memfd_with("keyring", text);
                explicit_bzero(text, strlen(text));
                if (keyring < 0)
                        return keyring;
                snprintf(path, sizeof(path), "/proc/self/fd/%d", keyring);
                r = rados_conf_set(rd->cluster, "keyring", path);
        } else if (dev->unprivileged)
                /* Never librados's default keyring paths for a user: they are root's files. */
                r = rados_conf_set(rd->cluster, "keyring", "/dev/null");
        if (r >= 0)
                r = rbd_force_conf(rd->cluster, ct, it);
        if (r < 0) {
                safe_close(keyring);
                return r;
        }

        r = rados_connect(rd->cluster);
        /* librados has the key in memory now. */
        safe_close(keyring);
        if (r < 0) {
                if (r == -ETIMEDOUT || r == -ENOTCONN)
                        REASON("Cannot reach the Ceph cluster's monitors within %us (connect-timeout)", ct);
                else if (r == -EACCES || r == -EPERM)
                        REASON("The Ceph cluster refused %s: check ceph-id and the keyring", name);
                else if (r == -ENOENT)
                        REASON("No key for %s: pass its keyring with keyring (ceph-id names the client)", name);
                else
                        REASON("Connecting to the Ceph cluster as %s failed: %s", name, strerror(-r));
                return r;
        }

        r = rados_ioctx_create(rd->cluster, spec->pool, &rd->ioctx);
        if (r < 0) {
                rd->ioctx = NULL;
                if (r == -ENOENT)
                        REASON("The Ceph cluster has no pool '%s'", spec->pool);
                else
                        REASON("Cannot open pool '%s': %s", spec->pool, strerror(-r));
                return r;
        }
        if (spec->ns)
                rados_ioctx_set_namespace(rd->ioctx, spec->ns);

        rd->read_only = spec->snap || dev->config.read_only;
        if (rd->read_only)
                r = rbd_open_read_only(rd->ioctx, spec->image, &rd->image, spec->snap);
        else
                r = rbd_open(rd->ioctx, spec->image, &rd->image, NULL);
        if (r < 0) {
                rd->image = NULL;
                if (r == -ENOENT)
                        REASON("Pool '%s'%s%s has no image '%s'%s%s%s", spec->pool, spec->ns ? ", namespace " : "",
                               spec->ns ? spec->ns : "", spec->image, spec->snap ? ", or it has no snapshot '" : "",
                               spec->snap ? spec->snap : "", spec->snap ? "'" : "");
                else if (r == -ETIMEDOUT)
                        REASON("The Ceph cluster did not answer opening the image within %us (io-timeout)", it);
                else if (r == -EACCES || r == -EPERM)
                        REASON("%s may not open image '%s' (its caps)", name, spec->image);
                else
                        REASON("Cannot open image '%s': %s", spec->image, strerror(-r));
                return r;
        }
        return 0;
}

/*
 * In a librbd thread, when the image's header changed (a resize, a snapshot, a lock...): a
 * larger image grows the live device (UBLK_U_CMD_UPDATE_SIZE), where the kernel can.  A smaller
 * one does not shrink it (a file system on it would lose its end under its feet): IO past the
 * image's end then fails.
 */
static void rbd_header_changed(void *arg)
{
        struct rbd_dev *rd = arg;
        struct ublk_dev *dev = rd->dev;
        uint32_t lbs = dev->config.logical_block_size;
        uint64_t size;
        int r;

        if (rbd_get_size(rd->image, &size) < 0)
                return;
        size = size / lbs * lbs;
        pthread_mutex_lock(&rd->resize_lock);
        if (size == rd->size)
                goto out;
        if (size < rd->size) {
                log_warning("rbd: image %s of ublk device %u shrank to %llu bytes; the device keeps its %llu "
                            "(IO past the image's end fails).", rbd_config(dev)->image, dev->id,
                            (unsigned long long) size, (unsigned long long) rd->size);
                rd->size = size;        /* said once */
                goto out;
        }
        if (!dev->live)
                /* No disk to resize; the next change of the header once it is live tries again. */
                goto out;
        r = ublk_ctrl_update_size(dev->ctrl, dev->id, dev->unprivileged, size >> 9);
        if (r < 0) {
                log_warning_errno(r, "rbd: image %s of ublk device %u grew to %llu bytes, but the kernel cannot "
                                  "resize the device%s: %m", rbd_config(dev)->image, dev->id, (unsigned long long) size,
                                  r == -EOPNOTSUPP ? " (UBLK_F_UPDATE_SIZE, Linux 6.16 or later)" : "");
                rd->size = size;        /* said once */
                goto out;
        }
        log_info("rbd: image %s grew to %llu bytes: so did ublk device %u.", rbd_config(dev)->image,
                 (unsigned long long) size, dev->id);
        dev->params.basic.dev_sectors = size >> 9;
        dev->config.size = rd->size = size;
out:
        pthread_mutex_unlock(&rd->resize_lock);
}

static int rbd_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        struct ublk_dev_config *c = &dev->config;
        struct rbd_config *rc = rbd_config(dev);
        struct rbd_dev *rd = NULL;
        struct rbd_spec spec;
        uint64_t size;
        int r;

        if (!rc->image[0] || rbd_spec_parse(rc->image, &spec) < 0) {
                REASON("Target 'rbd' needs its image as POOL/[NAMESPACE/]IMAGE[@SNAP] (option 'image')");
                return -EINVAL;
        }
        if (rc->ceph_id[0] && (strpbrk(rc->ceph_id, " \t=[]") || strncmp(rc->ceph_id, "client.", 7) == 0)) {
                REASON("ceph-id is the client's id without \"client.\" (e.g. admin)");
                return -EINVAL;
        }
        if (rc->io_timeout > RBD_MAX_TIMEOUT || rc->connect_timeout > RBD_MAX_TIMEOUT) {
                REASON("io-timeout and connect-timeout are at most %ds", RBD_MAX_TIMEOUT);
                return -EINVAL;
        }
        if (dev->unprivileged && rc->keyring_fd < 0) {
                REASON("A user's rbd device needs the user's own key: pass their keyring (option 'keyring', "
                       "ublkctl add --keyring FILE); ublkd reads no key of root's for a user");
                return -EPERM;
        }
        if (dev->unprivileged && rc->conf_fd < 0 && !rc->mon_host[0]) {
                REASON("A user's rbd device needs the cluster's monitors: pass option 'mon-host' or a "
                       "ceph.conf in option 'ceph-conf' (ublkctl add --mon-host, --ceph-conf); ublkd reads "
                       "/etc/ceph for root only");
                return -EPERM;
        }
        if (spec.snap && !c->read_only)
                c->read_only = true;    /* a snapshot cannot be written */

        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        rd->dev = dev;
        pthread_mutex_init(&rd->resize_lock, NULL);
        r = rbd_connect(dev, rd, &spec, reason);
        if (r >= 0)
                r = rbd_get_size(rd->image, &size);
        if (r < 0)
                goto fail;

        if (c->logical_block_size == 0)
                c->logical_block_size = 512;
        size = size / c->logical_block_size * c->logical_block_size;
        if (c->size == 0)
                c->size = size;
        if (c->size == 0 || c->size > size) {
                REASON("Image '%s' has %llu bytes, %s", rc->image, (unsigned long long) size,
                       c->size == 0 ? "less than a block" : "less than the size asked for");
                r = -ENOSPC;
                goto fail;
        }

        ublk_params_set_basic(dev, params);
        /* librbd's cache (rbd_cache, writeback once flushed) needs our flushes; FUA the kernel
         * makes a write and a flush of. */
        params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
        if (!rd->read_only) {
                params->types |= UBLK_PARAM_TYPE_DISCARD;
                params->discard = (struct ublk_param_discard) {
                        .discard_granularity = 4096,
                        .max_discard_sectors = UINT32_MAX >> 9,
                        .max_write_zeroes_sectors = UINT32_MAX >> 9,
                        .max_discard_segments = 1,
                };
        }
        rd->size = c->size;
        /* A snapshot does not change.  A device added smaller than its image keeps its size. */
        if (!rd->read_only && c->size == size) {
                r = rbd_update_watch(rd->image, &rd->watch_handle, rbd_header_changed, rd);
                if (r < 0)
                        log_warning_errno(r, "rbd: cannot watch image %s: a resize will not reach the device: %m",
                                          rc->image);
                rd->watching = r >= 0;
        }
        dev->target_data = rd;
        return 0;
fail:
        rbd_dev_free(rd);
        return r;
}

static void rbd_deinit(struct ublk_dev *dev)
{
        rbd_dev_free(dev->target_data);
        dev->target_data = NULL;
}

/* A request in librbd's hands. */
struct rbd_req {
        struct rbd_queue *rq;
        unsigned tag;
        int result;             /* of a whole request: its bytes, or a negative errno */
        uint32_t len;
        unsigned op;
        struct rbd_req *next;
};

struct rbd_queue {
        int efd;                /* signalled by completions, read on the queue's ring */
        uint64_t ebuf;
        bool armed;
        pthread_mutex_t lock;
        struct rbd_req *done;   /* completed, for the queue's thread to commit */
        struct rbd_req reqs[];  /* one per tag */
};

static void rbd_queue_deinit(struct ublk_queue *q)
{
        struct rbd_queue *rq = q->target_data;

        if (!rq)
                return;
        safe_close(rq->efd);
        pthread_mutex_destroy(&rq->lock);
        free(rq);
        q->target_data = NULL;
}

static int rbd_queue_init(struct ublk_queue *q)
{
        struct rbd_queue *rq = calloc(1, sizeof(*rq) + q->depth * sizeof(struct rbd_req));

        if (!rq)
                return -ENOMEM;
        /* Blocking: io_uring then waits for it to be signalled (a non-blocking one answers EAGAIN). */
        rq->efd = eventfd(0, EFD_CLOEXEC);
        if (rq->efd < 0) {
                int r = -errno;

                free(rq);
                return r;
        }
        pthread_mutex_init(&rq->lock, NULL);
        for (unsigned tag = 0; tag < q->depth; tag++)
                rq->reqs[tag] = (struct rbd_req) { .rq = rq, .tag = tag };
        q->target_data = rq;
        return 0;
}

/* In a librbd thread. */
static void rbd_io_complete(rbd_completion_t c, void *arg)
{
        struct rbd_req *req = arg;
        struct rbd_queue *rq = req->rq;
        ssize_t r = rbd_aio_get_return_value(c);
        uint64_t one = 1;
        bool wake;

        rbd_aio_release(c);
        if (r < 0)
                /* The device gets EIO for what the cluster could not do (ETIMEDOUT: io-timeout). */
                req->result = r == -EROFS || r == -ENOSPC || r == -EOPNOTSUPP ? (int) r : -EIO;
        else
                req->result = req->op == UBLK_IO_OP_READ || req->op == UBLK_IO_OP_WRITE ? (int) req->len : 0;

        pthread_mutex_lock(&rq->lock);
        wake = !rq->done;
        req->next = rq->done;
        rq->done = req;
        pthread_mutex_unlock(&rq->lock);
        if (wake && write(rq->efd, &one, sizeof(one)) < 0)
                log_error_errno(-errno, "rbd: cannot signal a queue's eventfd: %m");
}

/* The read of the eventfd that wakes the queue when librbd completes something. */
static int rbd_arm(struct ublk_queue *q)
{
        struct rbd_queue *rq = q->target_data;
        struct io_uring_sqe *sqe;

        if (rq->armed)
                return 0;
        sqe = ublk_queue_get_sqe(q);
        if (!sqe)
                return -EAGAIN;
        io_uring_prep_read(sqe, rq->efd, &rq->ebuf, sizeof(rq->ebuf), 0);
        sqe->user_data = ublk_queue_user_data(0);
        rq->armed = true;
        return 0;
}

static void rbd_queue_event(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
        struct rbd_queue *rq = q->target_data;
        struct rbd_req *list;
        int r;

        rq->armed = false;
        if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN)
                log_error_errno(cqe->res, "Queue %u of ublk device %u: reading its eventfd failed: %m",
                                q->q_id, q->dev->id);

        pthread_mutex_lock(&rq->lock);
        list = rq->done;
        rq->done = NULL;
        pthread_mutex_unlock(&rq->lock);

        while (list) {
                struct rbd_req *req = list;

                list = req->next;
                q->ios[req->tag].target_inflight--;
                q->target_inflight--;
                ublk_queue_commit(q, req->tag, req->result);
        }
        r = rbd_arm(q);
        if (r < 0)
                log_error_errno(r, "Queue %u of ublk device %u: cannot wait for librbd: %m", q->q_id, q->dev->id);
}

static int rbd_queue_io(struct ublk_queue *q, unsigned tag, const struct ublksrv_io_desc *iod)
{
        struct rbd_dev *rd = q->dev->target_data;
        struct rbd_queue *rq = q->target_data;
        struct rbd_req *req = &rq->reqs[tag];
        unsigned op = ublksrv_get_op(iod);
        uint64_t off = iod->start_sector << 9;
        uint32_t len = iod->nr_sectors << 9;
        rbd_completion_t c;
        int r;

        switch (op) {
        case UBLK_IO_OP_READ:
        case UBLK_IO_OP_FLUSH:
                break;
        case UBLK_IO_OP_WRITE:
        case UBLK_IO_OP_DISCARD:
        case UBLK_IO_OP_WRITE_ZEROES:
                if (rd->read_only)
                        return -EROFS;
                break;
        default:
                return -EOPNOTSUPP;
        }
        r = rbd_arm(q);
        if (r < 0)
                return r;

        *req = (struct rbd_req) { .rq = rq, .tag = tag, .len = len, .op = op };
        r = rbd_aio_create_completion(req, rbd_io_complete, &c);
        if (r < 0)
                return r;
        switch (op) {
        case UBLK_IO_OP_READ:
                r = rbd_aio_read(rd->image, off, len, ublk_queue_io_buf(q, tag), c);
                break;
        case UBLK_IO_OP_WRITE:
                r = rbd_aio_write(rd->image, off, len, ublk_queue_io_buf(q, tag), c);
                break;
        case UBLK_IO_OP_FLUSH:
                r = rbd_aio_flush(rd->image, c);
                break;
        case UBLK_IO_OP_DISCARD:
                r = rbd_aio_discard(rd->image, off, len, c);
                break;
        case UBLK_IO_OP_WRITE_ZEROES:
                /* NOUNMAP: zeroes that stay allocated. */
                r = rbd_aio_write_zeroes(rd->image, off, len, c,
                                         (ublksrv_get_flags(iod) & UBLK_IO_F_NOUNMAP) ?
                                         RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0, 0);
                break;
        }
        if (r < 0) {
                rbd_aio_release(c);
                return r;
        }
        q->ios[tag].target_inflight++;
        q->target_inflight++;
        return UBLK_TARGET_QUEUED;
}

static int rbd_io_done(struct ublk_queue *q, unsigned tag, const struct io_uring_cqe *cqe)
{
        return -EIO;    /* no SQE of a tag's: its completions come through queue_event() */
}

const struct ublk_target_ops target_rbd_ops = {
        .name = "rbd",
        .desc = &ublk_target_rbd,
        .config_size = sizeof(struct rbd_config),
        .config_init = rbd_config_init,
        .set_option = rbd_set_option,
        .get_option = rbd_get_option,
        .config_release = rbd_config_release,
        .init = rbd_init,
        .deinit = rbd_deinit,
        .queue_init = rbd_queue_init,
        .queue_deinit = rbd_queue_deinit,
        .queue_io = rbd_queue_io,
        .io_done = rbd_io_done,
        .queue_event = rbd_queue_event,
};
