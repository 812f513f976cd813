/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The connections of an nbd device (target-nbd.c), made and remade off the queue threads.
 *
 * Who connects: for root's devices ublkd connects to the URI itself (and again after a loss);
 * for a user's device it never does: ublkctl connects as the user and passes one connected,
 * not yet handshaken socket per queue, and ublkd runs libnbd's handshake on those (the export
 * name and TLS from the URI; a PSK file only as an fd the user opened, given to libnbd as
 * /proc/self/fd/N).  Handshakes are bounded by connect-timeout.
 *
 * Contract:
 *  - nbd_conn_init()/deinit() are the target's init/deinit (control side, a work thread):
 *    init connects one handle per queue (queues lowered to 1 when the server does not
 *    advertise multi-conn: without it, a flush on one connection need not cover writes made
 *    on another) and fills the ublk params from what the server advertises.
 *  - A queue thread calls nbd_conn_queue_attach() (at queue_init, before its thread runs) to
 *    get its handle, nbd_conn_lost() when that handle died (true: fail IO now), and
 *    nbd_conn_take() when its wake_fd fired: a new handle (or NULL), and whether held IO must
 *    fail (the reconnect-timeout passed, or the device is stopping).  nbd_conn_queue_detach()
 *    gives a live handle back for the next start.
 *  - A device-owned thread reconnects lost queues with backoff (100 ms doubling to 5 s).
 */

#include <libnbd.h>
#include <stdbool.h>
#include <stdint.h>

#include "target.h"

#define NBD_CONNECT_TIMEOUT_DEFAULT_S 10
#define NBD_CONNECT_TIMEOUT_MAX_S 300
#define NBD_RECONNECT_TIMEOUT_DEFAULT_S 60
#define NBD_SOCKETS_MAX 64
#define NBD_URI_MAX 4608

/* nbd's options (add-options.h), hung off ublk_dev_config.target_config. */
struct nbd_config {
        char uri[NBD_URI_MAX];          /* never holds a secret: keys come as files */
        int sockets[NBD_SOCKETS_MAX];   /* connected, not yet handshaken; owned */
        unsigned n_sockets;
        int tls_psk_fd;                 /* owned, -1 if none */
        uint32_t connect_timeout_s;
        uint32_t reconnect_timeout_s;   /* 0: IO waits forever */
};

void nbd_config_init(void *config);
int nbd_set_option(void *config, const struct ublk_option *o, const union ublk_opt_value *v);
int nbd_get_option(const void *config, const struct ublk_option *o, union ublk_opt_value *ret);
void nbd_config_release(void *config);

struct nbd_dev;

/* What the server advertised, read once after the first handshake. */
struct nbd_caps {
        uint64_t size;
        bool read_only, can_flush, can_fua, can_trim, can_zero, multi_conn;
        uint32_t min_block, pref_block, max_block;      /* 0: not advertised */
};

int nbd_conn_init(struct ublk_dev *dev, struct ublk_params *params, struct ublk_reason *reason);
void nbd_conn_deinit(struct ublk_dev *dev);
void nbd_conn_stopping(struct ublk_dev *dev);
void nbd_conn_status(struct ublk_dev *dev, char *buf, size_t len);

void nbd_conn_queue_attach(struct nbd_dev *nd, unsigned q_id, int wake_fd, struct nbd_handle **ret,
                           struct nbd_caps *caps);
void nbd_conn_queue_detach(struct nbd_dev *nd, unsigned q_id, struct nbd_handle *h);
bool nbd_conn_lost(struct nbd_dev *nd, unsigned q_id);
void nbd_conn_take(struct nbd_dev *nd, unsigned q_id, struct nbd_handle **ret, bool *ret_fail);
