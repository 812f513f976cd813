/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A ceph.conf that a user other than root passed to ublkd, which runs as root: librados must
 * not read it as it is, for its options name files librados would open, create or load as
 * root (keyring, log_file, admin_socket, plugin_dir, rbd_persistent_cache_path...).  Only the
 * keys of rbd_conf_user_keys, which name the cluster and how to talk to it, are taken; the
 * others are ignored (and counted).
 *
 * Contract: rbd_conf_parse_user() reads text as Ceph reads a conf ("[section]", "key = value",
 * '#' and ';' comments, keys with ' ', '-' or '_' alike), and for the sections [global],
 * [client] and [client.ID], in that order so that the later win, calls set() with each taken
 * key in its '_' form and its value.  It returns 0, set()'s negative errno, or -EINVAL with
 * why ("line 3: ...") for text that is no conf.  *ignored counts the keys it left out.
 */

#include <stddef.h>

extern const char *const rbd_conf_user_keys[];

int rbd_conf_parse_user(const char *text, const char *id,
                        int (*set)(void *arg, const char *key, const char *value), void *arg,
                        unsigned *ignored, char *why, size_t why_len);
