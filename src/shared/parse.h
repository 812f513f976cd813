/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Strict parsers for user-given numbers.  They accept the whole string or
 * nothing: no leading/trailing junk, no sign, no overflow.  Return 0 or -EINVAL
 * (malformed) / -ERANGE (does not fit).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "4096", "512K", "1M", "10G", "1T" (binary units, optional "iB"/"B"). */
int parse_size(const char *s, uint64_t *ret);
int parse_uint32(const char *s, uint32_t *ret);

/* "auto" -> 0, "on" -> 1, "off" -> 2 (the order of the daemon's AUTO/ON/OFF enums); -EINVAL. */
int parse_auto_on_off(const char *s);

/* Formats a byte count for humans ("1G", "1.5G", "512M", "4096"); returns buf. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* A device name, at most 64 bytes.  Root's (Add's "name" from root, /etc/ublk/NAME.conf):
 * A-Z a-z 0-9 - _ ., not starting with '-' or '.'.  A user's: USER:NAME, USER their user name
 * (which ':' can never be part of) and NAME as root's; so no user's name is root's or another
 * user's.  Safe as a file name, a udev value and a symlink. */
#define DEVICE_NAME_MAX 64
bool device_name_is_valid(const char *s);
/* The length of the USER of a user's name; 0 for a name of root's. */
size_t device_name_user_len(const char *s);
