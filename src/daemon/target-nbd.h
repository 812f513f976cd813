/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The options of the "nbd" target (target-nbd.c), as Add and the state file give them.
 * (Issue 31: until targets own their options through one schema, this struct hangs off
 * ublk_dev_config.nbd; every nbd option passes through here and bus-manager.c's
 * TARGET_OPT_NBD entries, state.c's NBD_* keys, and ublkctl's add_nbd_*.)
 */

#include <stdint.h>

#define NBD_CONNECT_TIMEOUT_DEFAULT_S 10
#define NBD_RECONNECT_TIMEOUT_DEFAULT_S 60

struct nbd_options {
        char *uri;                      /* never holds a secret: keys come as files (fds) */
        int *sockets;                   /* connected, not yet handshaken; owned */
        unsigned n_sockets;
        int tls_psk_fd;                 /* owned, -1 if none */
        uint32_t connect_timeout_s;     /* 0: the default */
        uint32_t reconnect_timeout_s;   /* IO waits this long for a new connection; 0: forever */
};

struct nbd_options *nbd_options_new(void);
void nbd_options_free(struct nbd_options *o);
