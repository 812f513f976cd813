/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * What both bus objects (manager-bus.h, device-bus.h) answer with: errnos as named D-Bus errors
 * whose message names the fix, and callers' strings made safe to put in a message.  Below both,
 * so that neither includes the other for these.
 */

#include <systemd/sd-bus.h>

/* Maps a kernel/daemon errno to a named D-Bus error with a message that names the fix. */
int bus_error_from_errno(sd_bus_error *error, int r, const char *what);
int bus_reply_errno(sd_bus_message *msg, int r, const char *what);

/* A caller's string fit for an error message: at most BUS_PRINTABLE_MAX characters of printable
 * ASCII, anything else as '?', "..." when cut; in buf, which it returns. */
#define BUS_PRINTABLE_MAX 64
const char *bus_printable(const char *s, char buf[static BUS_PRINTABLE_MAX + 4]);
