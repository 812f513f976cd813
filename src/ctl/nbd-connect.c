/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "nbd-connect.h"
#include "nbd-uri.h"

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A non-blocking connect() finished by poll() before deadline; the fd, or a negative errno. */
static int connect_until(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
        _cleanup_close_ int fd = -1;
        struct pollfd p;
        socklen_t elen = sizeof(int);
        int e = 0, r;

        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, sa, len) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                p = (struct pollfd) { .fd = fd, .events = POLLOUT };
                do {
                        int64_t left = deadline - now_ms();

                        if (left <= 0)
                                return -ETIMEDOUT;
                        r = poll(&p, 1, (int) left);
                } while (r < 0 && errno == EINTR);
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -ETIMEDOUT;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
                        return -errno;
                if (e)
                        return -e;
        }
        /* libnbd in ublkd wants it as it would make it: blocking mode is its own business. */
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int connect_one(const struct nbd_uri *u, uint32_t timeout_s, char *err, size_t err_len)
{
        int64_t deadline = now_ms() + (int64_t) timeout_s * 1000;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
        int r, fd = -ENOENT;

        if (u->unix_socket) {
                struct sockaddr_un sun = { .sun_family = AF_UNIX };

                if (strlen(u->socket) >= sizeof(sun.sun_path)) {
                        snprintf(err, err_len, "socket path too long: %.80s", u->socket);
                        return -ENAMETOOLONG;
                }
                strcpy(sun.sun_path, u->socket);
                fd = connect_until(AF_UNIX, (struct sockaddr *) &sun, sizeof(sun), deadline);
                if (fd < 0)
                        snprintf(err, err_len, "cannot connect to %.200s: %s", u->socket,
                                 fd == -ETIMEDOUT ? "no answer within the connect-timeout" : strerror(-fd));
                return fd;
        }
        r = getaddrinfo(u->host, u->port, &hints, &res);
        if (r != 0) {
                snprintf(err, err_len, "cannot resolve %.200s: %s", u->host, gai_strerror(r));
                return -EHOSTUNREACH;
        }
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                fd = connect_until(a->ai_family, a->ai_addr, a->ai_addrlen, deadline);
                if (fd >= 0 || fd == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(res);
        if (fd < 0)
                snprintf(err, err_len, "cannot connect to %.200s port %s: %s", u->host, u->port,
                         fd == -ETIMEDOUT ? "no answer within the connect-timeout" : strerror(-fd));
        return fd;
}

int nbd_connect_sockets(const char *uri, unsigned n, uint32_t timeout_s, int *fds, char *err, size_t err_len)
{
        struct nbd_uri u;
        const char *why;

        if (nbd_uri_parse(uri, &u, &why) < 0) {
                snprintf(err, err_len, "bad NBD URI: %s", why);
                return -EINVAL;
        }
        for (unsigned i = 0; i < n; i++) {
                fds[i] = connect_one(&u, timeout_s, err, err_len);
                if (fds[i] < 0) {
                        int r = fds[i];

                        while (i > 0)
                                safe_close(fds[--i]);
                        return r;
                }
        }
        return 0;
}
