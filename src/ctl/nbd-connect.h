/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ublkctl's side of a user's nbd device: ublkd never connects for anyone but root, so ublkctl
 * connects as its caller (plain connect(), the caller's own rights: a unix socket the caller
 * may not reach stays unreachable) and passes the sockets.  No NBD is spoken here: ublkd runs
 * libnbd's handshake on them.
 *
 * nbd_connect_sockets() opens n connections to where uri points (unix socket or TCP host:port),
 * each within timeout_s; returns 0 with the fds in fds[], or a negative errno with one line
 * naming the cause in err (and no fd left open).
 */

#include <stddef.h>
#include <stdint.h>

#define NBD_CONNECT_DEFAULT_S 10        /* ublkd's default connect-timeout too */
#define NBD_CONNECT_SOCKETS_MAX 64      /* ublkd takes no more */

int nbd_connect_sockets(const char *uri, unsigned n, uint32_t timeout_s, int *fds, char *err, size_t err_len);
