/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "macro.h"
#include "nbd-conn.h"
#include "nbd-uri.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* What trim/zero requests may span: the protocol counts 32 bits, and a server may take long. */
#define NBD_MAX_TRIM_BYTES (UINT32_C(1) << 30)

enum nbd_link { NBD_CONNECTED, NBD_RECONNECTING, NBD_DISCONNECTED };

static const char *const link_names[] = {
        [NBD_CONNECTED] = "connected",
        [NBD_RECONNECTING] = "reconnecting",
        [NBD_DISCONNECTED] = "disconnected",
};

struct nbd_slot {
        struct nbd_handle *spare;       /* a handle for the queue to take */
        bool want;                      /* the queue has none and waits for one */
        bool fail;                      /* held IO must fail */
        int wake_fd;                    /* the queue's eventfd, -1 while it has no thread */
};

struct nbd_dev {
        struct ublk_dev *dev;
        struct nbd_uri uri;
        char *uri_text;
        int tls_psk_fd;                 /* a memfd copy of a passed key file, -1 if none; a user's
                                         * is closed after init (nobody reconnects for a user) */
        bool can_reconnect;             /* root's device: ublkd may connect to the URI again */
        uint32_t connect_timeout_s, reconnect_timeout_s;
        struct nbd_caps caps;
        char notice[128];

        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct nbd_slot *slots;
        unsigned n_slots;
        enum nbd_link link;
        bool stopping, exit;
        uint64_t lost_usec, next_try_usec;
        unsigned backoff_ms;
        pthread_t thread;
        bool thread_started;
};

void nbd_config_init(void *config)
{
        struct nbd_config *c = config;

        *c = (struct nbd_config) {
                .tls_psk_fd = -1,
                .connect_timeout_s = NBD_CONNECT_TIMEOUT_DEFAULT_S,
                .reconnect_timeout_s = NBD_RECONNECT_TIMEOUT_DEFAULT_S,
        };
}

int nbd_set_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v)
{
        struct nbd_config *c = config;

        if (strcmp(o->key, "uri") == 0) {
                if (strlen(v->s) >= sizeof(c->uri))
                        return -ENAMETOOLONG;
                strcpy(c->uri, v->s);
        } else if (strcmp(o->key, "sockets") == 0) {
                if (v->fds.n > NBD_SOCKETS_MAX)
                        return -E2BIG;
                nbd_config_release(c);
                /* The caller's fds stay the caller's (a message's): keep copies. */
                for (unsigned i = 0; i < v->fds.n; i++) {
                        c->sockets[i] = fcntl(v->fds.fds[i], F_DUPFD_CLOEXEC, 3);
                        if (c->sockets[i] < 0) {
                                int r = -errno;

                                c->n_sockets = i;
                                nbd_config_release(c);
                                return r;
                        }
                }
                c->n_sockets = v->fds.n;
        } else if (strcmp(o->key, "tls-psk-file") == 0) {
                int fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 3);

                if (fd < 0)
                        return -errno;
                safe_close(c->tls_psk_fd);
                c->tls_psk_fd = fd;
        } else if (strcmp(o->key, "connect-timeout") == 0)
                c->connect_timeout_s = (uint32_t) v->u;       /* range: nbd_conn_init() */
        else if (strcmp(o->key, "reconnect-timeout") == 0)
                c->reconnect_timeout_s = (uint32_t) v->u;
        else
                return -EINVAL;
        return 0;
}

int nbd_get_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret)
{
        const struct nbd_config *c = config;

        if (strcmp(o->key, "uri") == 0) {
                if (!c->uri[0])
                        return -ENOENT;
                ret->s = c->uri;
        } else if (strcmp(o->key, "sockets") == 0) {
                if (!c->n_sockets)
                        return -ENOENT;
                ret->fds.fds = c->sockets;
                ret->fds.n = c->n_sockets;
        } else if (strcmp(o->key, "tls-psk-file") == 0) {
                if (c->tls_psk_fd < 0)
                        return -ENOENT;
                ret->fd = c->tls_psk_fd;
        } else if (strcmp(o->key, "connect-timeout") == 0)
                ret->u = c->connect_timeout_s;
        else if (strcmp(o->key, "reconnect-timeout") == 0)
                ret->u = c->reconnect_timeout_s;
        else
                return -ENOENT;
        return 0;
}

void nbd_config_release(void *config)
{
        struct nbd_config *c = config;

        for (unsigned i = 0; i < c->n_sockets; i++)
                safe_close(c->sockets[i]);
        c->n_sockets = 0;
        c->tls_psk_fd = safe_close(c->tls_psk_fd);
}

static uint64_t now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* libnbd's last error on one line. */
static void nbd_error_text(char *buf, size_t len)
{
        const char *e = nbd_get_error();

        snprintf(buf, len, "%s", e ? e : "unknown error");
        for (char *p = buf; *p; p++)
                if (*p == '\n')
                        *p = ' ';
}

/*
 * A handle, handshake done, on sock (a caller's socket, which the handle then owns, or -1: to
 * the URI, root's devices only); NULL with the cause in err.  It waits connect_timeout_s at
 * most: nbd_poll() advances the handshake, which never blocks on its own.
 */
static struct nbd_handle *nbd_connect_one(struct nbd_dev *nd, int sock, char *err, size_t len)
{
        struct nbd_handle *h = nbd_create();
        uint64_t deadline = now_usec() + (uint64_t) nd->connect_timeout_s * 1000000;
        char psk[64];
        int r;

        if (!h) {
                nbd_error_text(err, len);
                safe_close(sock);
                return NULL;
        }
        r = 0;
        if (nd->tls_psk_fd >= 0) {
                /* A key file passed as an fd (a memfd copy): no path of the caller's is opened. */
                snprintf(psk, sizeof(psk), "/proc/self/fd/%d", nd->tls_psk_fd);
                r = nbd_set_tls_psk_file(h, psk);
        }
        if (sock >= 0) {
                if (r >= 0)
                        r = nbd_set_export_name(h, nd->uri.export_name);
                if (r >= 0 && nd->uri.tls)
                        r = nbd_set_tls(h, LIBNBD_TLS_REQUIRE);
                if (r >= 0 && nd->uri.tls_username[0])
                        r = nbd_set_tls_username(h, nd->uri.tls_username);
                if (r >= 0)
                        r = nbd_aio_connect_socket(h, sock);
                if (r < 0)
                        safe_close(sock);
        } else {
                if (r >= 0)
                        r = nbd_set_uri_allow_local_file(h, true);      /* root's tls-psk-file= */
                if (r >= 0)
                        r = nbd_set_uri_allow_transports(h, LIBNBD_ALLOW_TRANSPORT_TCP |
                                                         LIBNBD_ALLOW_TRANSPORT_UNIX);
                if (r >= 0)
                        r = nbd_aio_connect_uri(h, nd->uri_text);
        }
        while (r >= 0 && nbd_aio_is_connecting(h)) {
                uint64_t now = now_usec();

                if (now >= deadline) {
                        snprintf(err, len, "the NBD server did not complete the handshake within %u s "
                                 "(connect-timeout)", nd->connect_timeout_s);
                        nbd_close(h);
                        return NULL;
                }
                r = nbd_poll(h, (int) ((deadline - now + 999) / 1000));
        }
        if (r < 0 || !nbd_aio_is_ready(h)) {
                nbd_error_text(err, len);
                if (!*err || strcmp(err, "unknown error") == 0)
                        snprintf(err, len, "the NBD server closed the connection during the handshake");
                nbd_close(h);
                return NULL;
        }
        return h;
}

/* A device taken over after ublkd ended: its IO waits in the kernel, and its server may be
 * restarting too (a host's services come back in any order), so a refused or failed connection
 * is tried again, with backoff, until connect-timeout has passed. */
static struct nbd_handle *nbd_connect_adopted(struct nbd_dev *nd, char *err, size_t len)
{
        uint64_t deadline = now_usec() + (uint64_t) nd->connect_timeout_s * 1000000;
        unsigned delay_ms = 100;
        struct nbd_handle *h;

        while (!(h = nbd_connect_one(nd, -1, err, len)) && now_usec() < deadline) {
                if (delay_ms == 100)
                        log_notice("ublk device %u: cannot connect to the NBD server (%s); trying again "
                                   "for up to %u s (connect-timeout).", nd->dev->id, err, nd->connect_timeout_s);
                (void) usleep(delay_ms * 1000);
                if (delay_ms < 1000)
                        delay_ms *= 2;
        }
        return h;
}

static uint32_t block_size(struct nbd_handle *h, int which)
{
        int64_t v = nbd_get_block_size(h, which);

        return v > 0 && v <= UINT32_MAX ? (uint32_t) v : 0;
}

static void nbd_read_caps(struct nbd_handle *h, struct nbd_caps *c)
{
        int64_t size = nbd_get_size(h);

        *c = (struct nbd_caps) {
                .size = size > 0 ? (uint64_t) size : 0,
                .read_only = nbd_is_read_only(h) == 1,
                .can_flush = nbd_can_flush(h) == 1,
                .can_fua = nbd_can_fua(h) == 1,
                .can_trim = nbd_can_trim(h) == 1,
                .can_zero = nbd_can_zero(h) == 1,
                .multi_conn = nbd_can_multi_conn(h) == 1,
                .min_block = block_size(h, LIBNBD_SIZE_MINIMUM),
                .pref_block = block_size(h, LIBNBD_SIZE_PREFERRED),
                .max_block = block_size(h, LIBNBD_SIZE_MAXIMUM),
        };
}

static unsigned ilog2_u32(uint32_t v)
{
        unsigned r = 0;

        while (v >>= 1)
                r++;
        return r;
}

#define REASON(...) snprintf(reason->text, sizeof(reason->text), __VA_ARGS__)

/* Size, block sizes and what the device advertises, from what the server does. */
static int nbd_set_params(struct nbd_dev *nd, struct ublk_params *params, struct ublk_reason *reason)
{
        struct ublk_dev_config *c = &nd->dev->config;
        const struct nbd_caps *caps = &nd->caps;
        uint32_t min = caps->min_block ? caps->min_block : 1, lbs, pbs, max;

        if (min > 4096) {
                REASON("The NBD server's minimum block size is %u, more than the 4096 a ublk device takes", min);
                return -EOPNOTSUPP;
        }
        lbs = c->logical_block_size ? c->logical_block_size : (min > 512 ? min : 512);
        if (lbs < min) {
                REASON("The NBD server's minimum block size is %u: logical-block-size must be at least that", min);
                return -EINVAL;
        }
        c->logical_block_size = lbs;
        if (caps->size < lbs) {
                REASON("The NBD export is smaller than one block (%llu bytes)", (unsigned long long) caps->size);
                return -ENOSPC;
        }
        if (c->size > caps->size) {
                REASON("The NBD export has %llu bytes, less than the requested size %llu",
                       (unsigned long long) caps->size, (unsigned long long) c->size);
                return -ENOSPC;
        }
        if (c->size == 0)
                c->size = caps->size / lbs * lbs;
        if (caps->read_only)
                c->read_only = true;

        ublk_params_set_basic(nd->dev, params);
        pbs = caps->pref_block < lbs ? lbs : caps->pref_block > 4096 ? 4096 : caps->pref_block;
        params->basic.physical_bs_shift = (uint8_t) ilog2_u32(pbs);
        params->basic.io_min_shift = (uint8_t) ilog2_u32(pbs);
        max = caps->max_block ? caps->max_block / lbs * lbs : 0;
        if (max && max < (params->basic.max_sectors << 9))
                params->basic.max_sectors = max >> 9;
        if (caps->can_flush)
                params->basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
        if (caps->can_flush && caps->can_fua)
                params->basic.attrs |= UBLK_ATTR_FUA;
        if ((caps->can_trim || caps->can_zero) && !c->read_only) {
                params->types |= UBLK_PARAM_TYPE_DISCARD;
                params->discard = (struct ublk_param_discard) {
                        .discard_granularity = pbs,
                        .max_discard_sectors = caps->can_trim ? NBD_MAX_TRIM_BYTES >> 9 : 0,
                        .max_write_zeroes_sectors = caps->can_zero ? NBD_MAX_TRIM_BYTES >> 9 : 0,
                        .max_discard_segments = 1,
                };
        }
        return 0;
}

static void nbd_wake(struct nbd_slot *s)
{
        uint64_t one = 1;

        if (s->wake_fd >= 0)
                (void) !write(s->wake_fd, &one, sizeof(one));
}

/* Under the lock: a slot waiting for a handle, or -1. */
static int nbd_wanted(struct nbd_dev *nd)
{
        if (nd->stopping)
                return -1;
        for (unsigned i = 0; i < nd->n_slots; i++)
                if (nd->slots[i].want)
                        return (int) i;
        return -1;
}

static void timed_wait(struct nbd_dev *nd, uint64_t until_usec)
{
        struct timespec ts = {
                .tv_sec = (time_t) (until_usec / 1000000),
                .tv_nsec = (long) (until_usec % 1000000) * 1000,
        };

        (void) pthread_cond_timedwait(&nd->cond, &nd->lock, &ts);
}

/* Under the lock: past reconnect-timeout, the held IO of every waiting queue fails. */
static void nbd_check_give_up(struct nbd_dev *nd, uint64_t now)
{
        if (nd->link != NBD_RECONNECTING || nd->reconnect_timeout_s == 0 ||
            now < nd->lost_usec + (uint64_t) nd->reconnect_timeout_s * 1000000)
                return;
        nd->link = NBD_DISCONNECTED;
        log_warning("ublk device %u: no NBD connection for %u s (reconnect-timeout): its IO fails with EIO%s.",
                    nd->dev->id, nd->reconnect_timeout_s,
                    nd->can_reconnect ? " until ublkd reconnects" : "; nobody can reconnect a user's device");
        for (unsigned i = 0; i < nd->n_slots; i++)
                if (nd->slots[i].want) {
                        nd->slots[i].fail = true;
                        nbd_wake(&nd->slots[i]);
                }
}

static void *nbd_reconnector(void *arg)
{
        struct nbd_dev *nd = arg;
        char err[256];

        pthread_mutex_lock(&nd->lock);
        while (!nd->exit) {
                uint64_t now = now_usec(), until;
                struct nbd_handle *h;
                int i = nbd_wanted(nd);

                if (i < 0) {
                        pthread_cond_wait(&nd->cond, &nd->lock);
                        continue;
                }
                nbd_check_give_up(nd, now);
                until = nd->can_reconnect ? nd->next_try_usec : UINT64_MAX;
                if (nd->link == NBD_RECONNECTING && nd->reconnect_timeout_s) {
                        uint64_t give_up = nd->lost_usec + (uint64_t) nd->reconnect_timeout_s * 1000000;

                        if (give_up < until)
                                until = give_up;
                }
                if (now < until) {
                        if (until == UINT64_MAX)
                                pthread_cond_wait(&nd->cond, &nd->lock);
                        else
                                timed_wait(nd, until);
                        continue;
                }
                if (!nd->can_reconnect)
                        continue;

                pthread_mutex_unlock(&nd->lock);
                h = nbd_connect_one(nd, -1, err, sizeof(err));
                if (h && nbd_get_size(h) < (int64_t) nd->dev->config.size) {
                        snprintf(err, sizeof(err), "the export shrank below the device's size");
                        nbd_close(h);
                        h = NULL;
                }
                pthread_mutex_lock(&nd->lock);

                if (h && nd->slots[i].want && !nd->stopping && !nd->exit) {
                        nd->slots[i].spare = h;
                        nd->slots[i].want = false;
                        nd->slots[i].fail = false;
                        nbd_wake(&nd->slots[i]);
                        nd->backoff_ms = 0;
                        nd->next_try_usec = 0;
                        if (nbd_wanted(nd) < 0) {
                                log_info("ublk device %u: reconnected to the NBD server.", nd->dev->id);
                                nd->link = NBD_CONNECTED;
                        }
                        continue;
                }
                if (h) {
                        pthread_mutex_unlock(&nd->lock);
                        nbd_close(h);
                        pthread_mutex_lock(&nd->lock);
                        continue;
                }
                log_debug("ublk device %u: reconnecting to the NBD server failed: %s", nd->dev->id, err);
                nd->backoff_ms = nd->backoff_ms ? nd->backoff_ms * 2 : BACKOFF_MIN_MS;
                if (nd->backoff_ms > BACKOFF_MAX_MS)
                        nd->backoff_ms = BACKOFF_MAX_MS;
                nd->next_try_usec = now_usec() + (uint64_t) nd->backoff_ms * 1000;
        }
        pthread_mutex_unlock(&nd->lock);
        return NULL;
}

static void nbd_dev_free(struct nbd_dev *nd)
{
        if (!nd)
                return;
        if (nd->thread_started) {
                pthread_mutex_lock(&nd->lock);
                nd->exit = true;
                pthread_cond_broadcast(&nd->cond);
                pthread_mutex_unlock(&nd->lock);
                pthread_join(nd->thread, NULL);
        }
        for (unsigned i = 0; nd->slots && i < nd->n_slots; i++)
                nbd_close(nd->slots[i].spare);
        free(nd->slots);
        free(nd->uri_text);
        safe_close(nd->tls_psk_fd);
        pthread_mutex_destroy(&nd->lock);
        pthread_cond_destroy(&nd->cond);
        free(nd);
}

/* A socket a caller passed: connected, of a family libnbd speaks over. */
static int check_socket(int fd, struct ublk_reason *reason)
{
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        struct stat st;
        int type;

        if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                REASON("An fd passed as 'sockets' is not a socket");
                return -EBADF;
        }
        if (getpeername(fd, (struct sockaddr *) &sa, &len) < 0) {
                REASON("A socket passed as 'sockets' is not connected");
                return -ENOTCONN;
        }
        len = sizeof(type);
        if ((sa.ss_family != AF_UNIX && sa.ss_family != AF_INET && sa.ss_family != AF_INET6) ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
                REASON("A socket passed as 'sockets' is not a unix, IPv4 or IPv6 stream socket");
                return -EAFNOSUPPORT;
        }
        return 0;
}

#define PSK_FILE_MAX 65536

/*
 * A caller's PSK file, copied into a memfd that libnbd may open as /proc/self/fd/N: reopening
 * the caller's own fd there would be a new open by root (with access the caller's fd may not
 * have had, and a FIFO would hang it), so ublkd reads the fd it was given, once, with checks:
 * a regular file, opened for reading, not on FUSE (whose server may never answer), small.
 */
static int psk_to_memfd(int fd, struct ublk_reason *reason)
{
        _cleanup_close_ int mfd = -1;
        char type[64], *buf;
        struct stat st;
        ssize_t n;
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0)
                return -errno;
        if ((flags & O_PATH) || (flags & O_ACCMODE) == O_WRONLY) {
                REASON("The 'tls-psk-file' fd is not open for reading");
                return -EBADF;
        }
        if (target_backing_fs_type(fd, type, sizeof(type)) >= 0 &&
            (strcmp(type, "fuse") == 0 || strncmp(type, "fuse.", 5) == 0)) {
                REASON("The 'tls-psk-file' file is on FUSE: keep the key on a local file system");
                return -EPERM;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > PSK_FILE_MAX) {
                REASON("The 'tls-psk-file' fd is not a regular file of 1 to %d bytes", PSK_FILE_MAX);
                return -EINVAL;
        }
        buf = malloc((size_t) st.st_size);
        if (!buf)
                return -ENOMEM;
        n = pread(fd, buf, (size_t) st.st_size, 0);
        mfd = memfd_create("nbd-tls-psk", MFD_CLOEXEC);
        if (n > 0 && mfd >= 0 && write(mfd, buf, (size_t) n) != n)
                n = -1;
        explicit_bzero(buf, (size_t) st.st_size);
        free(buf);
        if (n <= 0 || mfd < 0)
                return n == 0 ? -EIO : -errno;
        return TAKE_FD(mfd);
}

int nbd_conn_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason)
{
        struct nbd_config *nc = dev->config.target_config;
        pthread_condattr_t ca;
        struct nbd_dev *nd;
        const char *why;
        char err[256];
        int r;

        if (!nc || !nc->uri[0]) {
                REASON("Target 'nbd' needs the export's URI: option 'uri' "
                       "(nbd://HOST[:PORT]/EXPORT, nbds://..., nbd+unix:///EXPORT?socket=PATH)");
                return -EINVAL;
        }
        nd = calloc(1, sizeof(*nd));
        if (!nd)
                return -ENOMEM;
        nd->dev = dev;
        nd->tls_psk_fd = -1;
        pthread_mutex_init(&nd->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&nd->cond, &ca);
        pthread_condattr_destroy(&ca);

        if (nbd_uri_parse(nc->uri, &nd->uri, &why) < 0) {
                REASON("Bad NBD URI: %s", why);
                r = -EINVAL;
                goto fail;
        }
        if (nc->connect_timeout_s < 1 || nc->connect_timeout_s > NBD_CONNECT_TIMEOUT_MAX_S) {
                REASON("connect-timeout must be 1 to %d seconds", NBD_CONNECT_TIMEOUT_MAX_S);
                r = -EINVAL;
                goto fail;
        }
        if (dev->unprivileged && nc->n_sockets == 0) {
                REASON("ublkd connects to NBD servers for root only: for your device, ublkctl connects as "
                       "you and passes the connected sockets (option 'sockets')");
                r = -EPERM;
                goto fail;
        }
        if (dev->unprivileged && nd->uri.tls_psk_file[0] && nc->tls_psk_fd < 0) {
                REASON("ublkd opens no key file for a user: pass the open PSK file as 'tls-psk-file' "
                       "(ublkctl --tls-psk-file FILE)");
                r = -EPERM;
                goto fail;
        }
        if (dev->unprivileged && nd->uri.tls_certificates[0]) {
                REASON("ublkd opens no certificate directory for a user: use a PSK (tls-psk-file)");
                r = -EPERM;
                goto fail;
        }
        if (nd->uri.tls && (nd->uri.tls_psk_file[0] || nc->tls_psk_fd >= 0) && !nd->uri.tls_username[0]) {
                /* libnbd would ask getlogin_r(), which a daemon has no answer to. */
                REASON("A PSK needs its identity as the URI's user: nbds://USER@HOST/EXPORT or "
                       "nbds+unix://USER@/EXPORT?socket=PATH");
                r = -EINVAL;
                goto fail;
        }
        if (nc->n_sockets && nc->n_sockets < dev->config.queues) {
                REASON("Pass one connected socket per queue ('sockets': %u for %u queues)", nc->n_sockets,
                       dev->config.queues);
                r = -EINVAL;
                goto fail;
        }
        for (unsigned i = 0; i < nc->n_sockets; i++) {
                r = check_socket(nc->sockets[i], reason);
                if (r < 0)
                        goto fail;
        }
        nd->uri_text = strdup(nc->uri);
        if (!nd->uri_text) {
                r = -ENOMEM;
                goto fail;
        }
        nd->can_reconnect = !dev->unprivileged;
        nd->connect_timeout_s = nc->connect_timeout_s;
        nd->reconnect_timeout_s = nc->reconnect_timeout_s;
        if (nc->tls_psk_fd >= 0) {
                nd->tls_psk_fd = psk_to_memfd(nc->tls_psk_fd, reason);
                if (nd->tls_psk_fd < 0) {
                        r = nd->tls_psk_fd;
                        nd->tls_psk_fd = -1;
                        goto fail;
                }
        }

        nd->slots = calloc(dev->config.queues, sizeof(*nd->slots));
        if (!nd->slots) {
                r = -ENOMEM;
                goto fail;
        }
        nd->n_slots = dev->config.queues;
        for (unsigned i = 0; i < nd->n_slots; i++)
                nd->slots[i].wake_fd = -1;

        for (unsigned i = 0; i < nd->n_slots; i++) {
                int sock = nc->n_sockets ? TAKE_FD(nc->sockets[i]) : -1;

                nd->slots[i].spare = sock < 0 && dev->adopting ? nbd_connect_adopted(nd, err, sizeof(err)) :
                                                                 nbd_connect_one(nd, sock, err, sizeof(err));
                if (!nd->slots[i].spare) {
                        REASON("Cannot connect to the NBD server: %.200s", err);
                        r = -EHOSTUNREACH;
                        goto fail;
                }
                if (i > 0)
                        continue;
                nbd_read_caps(nd->slots[0].spare, &nd->caps);
                if (nd->n_slots > 1 && !nd->caps.multi_conn) {
                        snprintf(nd->notice, sizeof(nd->notice), "1 queue: the server does not advertise "
                                 "multi-conn, so one connection serves all IO");
                        log_notice("ublk device: %u queues asked for, %s.", nd->n_slots, nd->notice);
                        dev->config.queues = nd->n_slots = 1;
                }
        }
        r = nbd_set_params(nd, params, reason);
        if (r < 0)
                goto fail;
        /* Once the handshakes are done: a user's key file is not kept. */
        if (!nd->can_reconnect)
                nd->tls_psk_fd = safe_close(nd->tls_psk_fd);
        r = -pthread_create(&nd->thread, NULL, nbd_reconnector, nd);
        if (r < 0)
                goto fail;
        nd->thread_started = true;
        dev->target_data = nd;
        return 0;
fail:
        nbd_dev_free(nd);
        return r;
}

void nbd_conn_deinit(struct ublk_dev *dev)
{
        nbd_dev_free(dev->target_data);
        dev->target_data = NULL;
}

void nbd_conn_stopping(struct ublk_dev *dev)
{
        struct nbd_dev *nd = dev->target_data;

        pthread_mutex_lock(&nd->lock);
        nd->stopping = true;
        for (unsigned i = 0; i < nd->n_slots; i++) {
                nd->slots[i].fail = true;
                nbd_wake(&nd->slots[i]);
        }
        pthread_mutex_unlock(&nd->lock);
}

void nbd_conn_status(struct ublk_dev *dev, char *buf, size_t len)
{
        struct nbd_dev *nd = dev->target_data;

        if (!nd) {
                snprintf(buf, len, "%s", "");
                return;
        }
        pthread_mutex_lock(&nd->lock);
        snprintf(buf, len, "%s%s%s", link_names[nd->link], nd->notice[0] ? "; " : "", nd->notice);
        pthread_mutex_unlock(&nd->lock);
}

/* Under the lock: queue i has no handle; the reconnector is told. */
static void nbd_want(struct nbd_dev *nd, unsigned i)
{
        nd->slots[i].want = true;
        if (nd->link == NBD_CONNECTED && !nd->can_reconnect) {
                /* Nobody may connect for a user: waiting would only run into the kernel's
                 * request timeout, which kills ublkd for an unprivileged device. */
                nd->link = NBD_DISCONNECTED;
                log_warning("ublk device %u (a user's) lost its NBD server: its IO fails with EIO; "
                            "remove it and add it again.", nd->dev->id);
        } else if (nd->link == NBD_CONNECTED) {
                nd->link = NBD_RECONNECTING;
                nd->lost_usec = now_usec();
                nd->next_try_usec = nd->lost_usec;
                nd->backoff_ms = 0;
        }
        nd->slots[i].fail = nd->link == NBD_DISCONNECTED || nd->stopping;
        pthread_cond_broadcast(&nd->cond);
}

void nbd_conn_queue_attach(struct nbd_dev *nd, unsigned q_id, int wake_fd, struct nbd_handle **ret,
                           struct nbd_caps *caps)
{
        struct nbd_slot *s = &nd->slots[q_id];

        pthread_mutex_lock(&nd->lock);
        nd->stopping = false;
        s->wake_fd = wake_fd;
        s->fail = false;
        *ret = TAKE_PTR(s->spare);
        if (!*ret)
                nbd_want(nd, q_id);
        *caps = nd->caps;
        pthread_mutex_unlock(&nd->lock);
}

void nbd_conn_queue_detach(struct nbd_dev *nd, unsigned q_id, struct nbd_handle *h)
{
        struct nbd_slot *s = &nd->slots[q_id];

        pthread_mutex_lock(&nd->lock);
        s->wake_fd = -1;
        s->want = false;
        if (h && !s->spare && !nbd_aio_is_dead(h) && !nbd_aio_is_closed(h))
                s->spare = TAKE_PTR(h);
        pthread_mutex_unlock(&nd->lock);
        nbd_close(h);
}

bool nbd_conn_lost(struct nbd_dev *nd, unsigned q_id)
{
        bool fail;

        pthread_mutex_lock(&nd->lock);
        nbd_want(nd, q_id);
        fail = nd->slots[q_id].fail;
        pthread_mutex_unlock(&nd->lock);
        return fail;
}

void nbd_conn_take(struct nbd_dev *nd, unsigned q_id, struct nbd_handle **ret, bool *ret_fail)
{
        struct nbd_slot *s = &nd->slots[q_id];

        pthread_mutex_lock(&nd->lock);
        *ret = TAKE_PTR(s->spare);
        *ret_fail = s->fail;
        pthread_mutex_unlock(&nd->lock);
}
