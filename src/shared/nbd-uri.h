/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The NBD URIs the nbd target takes, as far as anyone but libnbd needs them: ublkctl connects
 * the sockets of a user's device itself (it needs where), and ublkd runs libnbd on those sockets
 * (it needs the export name and whether TLS is asked for).  Forms (the NBD URI specification):
 *   nbd://HOST[:PORT][/EXPORT]       nbds://[USER@]...  (TLS required)
 *   nbd+unix:///[EXPORT]?socket=PATH nbds+unix://[USER@]/[EXPORT]?socket=PATH
 * HOST may be [IPv6]; USER is the TLS (PSK) identity, as libnbd takes it.  %XX escapes are
 * decoded in USER, EXPORT and query values.  The query keys libnbd knows are kept (socket,
 * tls-psk-file, tls-certificates); others are refused, so that a typo is no silent change.  nbd_uri_parse() returns 0, or -EINVAL with *reason naming what is wrong.
 */

#include <stdbool.h>

#define NBD_URI_DEFAULT_PORT "10809"
#define NBD_EXPORT_NAME_MAX 4096        /* the protocol's limit */

struct nbd_uri {
        bool tls;
        bool unix_socket;
        char host[256];
        char port[8];
        char socket[108];               /* sun_path */
        char export_name[NBD_EXPORT_NAME_MAX + 1];
        char tls_psk_file[4096];        /* "" when not given */
        char tls_certificates[4096];
        char tls_username[256];         /* USER@ */
};

int nbd_uri_parse(const char *uri, struct nbd_uri *ret, const char **reason);
