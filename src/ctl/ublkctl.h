/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * What ublkctl's commands share (ublkctl.c): usage errors that name the command, a bus
 * connection that lets polkit ask on the terminal, and failures as one line naming the fix.
 * Exit codes: 0 success, 1 (EXIT_FAILURE) the operation failed, EXIT_USAGE a usage error.
 */

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "macro.h"

#define EXIT_USAGE 2

/* How long an operation's call may take (longer once polkit may ask for a password). */
extern uint64_t op_timeout_usec;

/* "ublkctl VERB: what is wrong", then where to read more; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) _printf_(1, 2);
/* Prints one line naming the fix; returns EXIT_FAILURE. */
int bus_failure(const sd_bus_error *error, int r, const char *what);
/* 0, or minus an exit code after saying why. */
int connect_bus_for_change(sd_bus **ret);
