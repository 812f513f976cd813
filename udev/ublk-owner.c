/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ublk-owner: for udev (IMPORT{program}), the owner of a ublk device as the kernel has it.
 *
 *   ublk-owner ublkb3 | ublkc3
 *
 * prints UBLK_UNPRIVILEGED=0 for a privileged device, and for an unprivileged one
 *   UBLK_UNPRIVILEGED=1
 *   UBLK_OWNER_UID=<uid>
 *   UBLK_OWNER_GID=<gid>
 * from GET_DEV_INFO2 on /dev/ublk-control: the kernel's record, not ublkd's word, so the rules
 * (60-ublk.rules) give the block device to whoever the kernel lets open the disk, and to no one
 * else.  (The rules ask about block devices only: char devices stay root's.)
 * Exits non-zero, printing nothing, when the kernel cannot say: the node then stays root's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl.h"
#include "log.h"
#include "parse.h"

#if defined(__SANITIZE_ADDRESS__)
/*
 * In a sanitized build (tools/test runs one): udevd's system-call filter forbids ptrace, which
 * LeakSanitizer needs at exit, and its failure would make udev drop this helper's answer.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
        return "detect_leaks=0";
}
#endif

int main(int argc, char *argv[])
{
        struct ublksrv_ctrl_dev_info info = {};
        struct ublk_ctrl ctrl;
        uint32_t id;
        int r;

        log_setup("ublk-owner");
        if (argc != 2 || (strncmp(argv[1], "ublkb", 5) != 0 && strncmp(argv[1], "ublkc", 5) != 0) ||
            parse_uint32(argv[1] + 5, &id) < 0) {
                log_error("Usage: ublk-owner ublkbN|ublkcN");
                return 2;
        }
        r = ublk_ctrl_open(&ctrl);
        if (r < 0) {
                log_error_errno(r, "Cannot open /dev/ublk-control: %m");
                return 1;
        }
        r = ublk_ctrl_get_dev_info2(&ctrl, id, &info);
        ublk_ctrl_close(&ctrl);
        if (r < 0) {
                log_error_errno(r, "GET_DEV_INFO2 for ublk device %u failed: %m", id);
                return 1;
        }
        if (!(info.flags & UBLK_F_UNPRIVILEGED_DEV)) {
                printf("UBLK_UNPRIVILEGED=0\n");
                return 0;
        }
        printf("UBLK_UNPRIVILEGED=1\nUBLK_OWNER_UID=%u\nUBLK_OWNER_GID=%u\n", info.owner_uid, info.owner_gid);
        return 0;
}
