/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * /etc/ublk/NAME.conf, the devices ublk@NAME.service creates at boot (ublk.conf(5)).
 *
 * One "key = value" per line; blank lines and lines starting with '#' are ignored; spaces
 * around key and value are not significant.  Keys are those of "ublkctl add":
 *   target (required), backing (a path, for loop), size, queues, depth,
 *   logical-block-size, read-only (yes/no), offset, direct-io and zero-copy (auto/on/off),
 *   recovery (reissue/fail-io/none); nbd's uri, connect-timeout, reconnect-timeout (seconds)
 *   and tls-psk-file (a path).
 * An unknown key, a key given twice, a bad value or an over-long line is an error naming the
 * file and line.  The file is read by ublkctl, as whoever runs it (root for the unit): ublkd
 * never sees the path, only the backing file's descriptor.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define UBLK_CONF_DIR "/etc/ublk"

struct ublk_conf {
        char *target;
        char *backing;          /* NULL if not given */
        uint64_t size;          /* 0: not given */
        uint32_t queues, depth, logical_block_size;     /* 0: not given */
        bool read_only;
        bool has_offset;
        uint64_t offset;
        char *direct_io;        /* "auto", "on", "off" or NULL */
        char *zero_copy;
        char *recovery;         /* "reissue", "fail-io", "none" or NULL */
        /* nbd's */
        char *nbd_uri, *nbd_tls_psk_file;
        bool has_nbd_connect_timeout, has_nbd_reconnect_timeout;
        uint32_t nbd_connect_timeout, nbd_reconnect_timeout;
};

/* Parses f (named fname in messages).  On error, returns a negative errno and puts one line
 * naming the file, the line and the fix in err. */
int ublk_conf_parse(FILE *f, const char *fname, struct ublk_conf *conf, char *err, size_t err_len);
void ublk_conf_free(struct ublk_conf *conf);
