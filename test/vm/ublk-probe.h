/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublk-probe's parts (ublk-probe.c: control commands; ublk-probe-io.c: the commands and mmap
 * of /dev/ublkcN a server uses).  Every case prints one row: its name, the result (0 or the
 * errno's name) and what came back that a server reads; nothing printed may depend on the
 * driver beyond its answers (t-kmod-abi.sh compares the in-tree driver's table with ours).
 */
#ifndef UBLK_PROBE_H
#define UBLK_PROBE_H

#include <stdbool.h>
#include "ublk_cmd.h"

#define PROBE_ID 10	/* the main device: 4 queues, depth 64, params set, never started */
#define NOSUCH_ID 999	/* never added */
#define FILL 0xa5

extern int ctrl_fd;

void row(const char *name, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
struct ublksrv_ctrl_cmd cmd(unsigned id, void *buf, unsigned len);
struct ublksrv_ctrl_dev_info dev_info(unsigned id, unsigned queues, unsigned depth, __u64 flags);
/* ADD_DEV of INFO with the header's dev_id HID (normally INFO's own) */
int add_dev(const char *name, struct ublksrv_ctrl_dev_info *info, unsigned hid, bool show);
/* NAME NULL: no row */
int del_dev(const char *name, unsigned id);
struct ublk_params good_params(void);

/* The IO side: on PROBE_ID (bad input), then on devices of their own that it starts, serves,
 * stops, recovers and deletes. */
void probe_io(void);

#endif
