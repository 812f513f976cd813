/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * A text polkit agent for the length of one ublkctl run, as systemctl and udisksctl have: when
 * ublkctl runs on a terminal and not as root, polkit_agent_open() starts pkttyagent for this
 * process and waits (bounded) until it is registered, so that ublkd's polkit check can ask the
 * user for a password on this terminal.  It does nothing otherwise, or when pkttyagent is not
 * installed (the call is then refused, naming the polkit action).  polkit_agent_close() ends it.
 * Returns true if an agent runs.
 */

#include <stdbool.h>

bool polkit_agent_open(void);
void polkit_agent_close(void);
