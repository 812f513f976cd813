/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Who may do what, for callers on the bus.
 *
 * bus_caller_uid() is the caller's effective uid as the bus daemon has it from the caller's
 * socket; never read from /proc, which a caller could race.
 *
 * bus_authorize() decides one action for one call by the caller with uid (from bus_caller_uid(),
 * a round trip to the bus daemon: callers look it up once).  Root is never asked.  Anyone else is
 * checked with polkit (org.freedesktop.PolicyKit1.Authority.CheckAuthorization, the caller's
 * unique bus name as subject), without blocking the event loop:
 *   > 0  root: authorized now, nothing else happens;
 *   0    the check is under way: cb() runs once, on the event loop, with the verdict;
 *   < 0  refused now (error set), as when too many checks are pending.
 * cb() gets r > 0 when authorized; otherwise error says why (AccessDenied, naming the action;
 * InteractiveAuthorizationRequired when polkit would ask for a password and the call did not
 * allow interaction).  Interaction is asked for only when the call allows it.  If polkit is not
 * running, the answer is no.  At exit, checks still pending get cb() with -ESHUTDOWN.
 */

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

struct manager;

#define POLKIT_ACTION_ADD_DEVICE        "org.ublk.ublkd1.add-device"
#define POLKIT_ACTION_MANAGE_OTHER      "org.ublk.ublkd1.manage-other-devices"
/* Unprivileged callers cannot keep more checks than this pending at a time (all callers), and
 * one uid no more than the second, so that one user cannot take every slot (an interactive
 * check may wait 300 s for a password). */
#define POLKIT_MAX_PENDING 64
#define POLKIT_MAX_PENDING_PER_UID 4

typedef void (*bus_authorize_cb_t)(sd_bus_message *call, int r, const sd_bus_error *error, void *userdata);

int bus_caller_uid(sd_bus_message *msg, uid_t *ret, sd_bus_error *error);
/* what: for messages, "add devices", "remove device 3"; detail_device: "" or the device's id. */
int bus_authorize(struct manager *m, sd_bus_message *call, uid_t uid, const char *action,
                  const char *what, const char *detail_device, bus_authorize_cb_t cb, void *userdata,
                  sd_bus_error *error);
/* At exit: every pending check ends with -ESHUTDOWN. */
void bus_authorize_cancel_all(struct manager *m);
