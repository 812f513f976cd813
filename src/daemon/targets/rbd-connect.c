/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rbd target's way to its image (rbd.h): the image's name, the caller's ceph.conf and
 * keyring, librados's configuration, the connection.  See rbd.c for why it is done so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "rbd-conf.h"
#include "rbd.h"

/* A pool, namespace, image or snapshot name: no separator of the spec in it. */
static bool name_ok(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= RBD_NAME_MAX && !strpbrk(s, "/@");
}

int rbd_spec_parse(const char *text, struct rbd_spec *ret)
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
void rbd_reason(struct ublk_reason *reason, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason->text, sizeof(reason->text), fmt, ap);
        va_end(ap);
}

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

int rbd_connect(struct ublk_dev *dev, struct rbd_dev *rd, const struct rbd_spec *spec,
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
