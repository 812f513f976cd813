/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host unit test of the daemon's checks on a device configuration, before any kernel call. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "target.h"

static unsigned passed, failed;

static void expect(const char *what, int got, int want, const char *reason)
{
        if ((got < 0) == (want < 0)) {
                passed++;
                return;
        }
        failed++;
        fprintf(stderr, "FAILED: %s: got %d (%s), want %s\n", what, got, reason ? reason : "", want < 0 ? "refusal" : "ok");
}

static int validate(struct ublk_dev_config *c, const char **reason)
{
        *reason = NULL;
        return ublk_dev_config_validate(c, reason);
}

int main(void)
{
        struct ublk_dev_config c;
        const char *reason;
        long cpus = sysconf(_SC_NPROCESSORS_CONF);

        ublk_dev_config_init(&c);
        c.target = target_find("null");
        c.size = 1 << 30;
        expect("defaults", validate(&c, &reason), 0, reason);
        if (c.queues != 1 || c.depth != 128 || c.target_config || c.logical_block_size != 0) {
                failed++;
                fprintf(stderr, "FAILED: unexpected defaults\n");
        } else
                passed++;

        c.queues = 0;
        expect("queues 0", validate(&c, &reason), -1, reason);
        c.queues = 1u << 20;
        expect("queues 2^20", validate(&c, &reason), -1, reason);
        if (reason && !strstr(reason, "queues must be between 1 and")) {
                failed++;
                fprintf(stderr, "FAILED: reason does not name the range: %s\n", reason);
        }
        c.queues = (uint32_t) (cpus > 0 ? cpus : 1);
        expect("queues = CPUs", validate(&c, &reason), 0, reason);
        c.queues = 1;

        c.depth = 0;
        expect("depth 0", validate(&c, &reason), -1, reason);
        c.depth = UBLK_MAX_QUEUE_DEPTH;
        expect("depth max", validate(&c, &reason), 0, reason);
        c.depth = UBLK_MAX_QUEUE_DEPTH + 1;
        expect("depth max+1", validate(&c, &reason), -1, reason);
        c.depth = 128;

        for (uint32_t lbs = 256; lbs <= 8192; lbs *= 2) {
                char what[32];

                c.logical_block_size = lbs;
                snprintf(what, sizeof(what), "lbs %u", lbs);
                expect(what, validate(&c, &reason), lbs >= 512 && lbs <= 4096 ? 0 : -1, reason);
        }
        c.logical_block_size = 1000;
        expect("lbs 1000", validate(&c, &reason), -1, reason);
        c.logical_block_size = 4096;
        c.size = 4096 * 3 + 512;
        expect("size not a multiple of lbs", validate(&c, &reason), -1, reason);
        c.size = UINT64_MAX - 4095;
        expect("size 16 EiB", validate(&c, &reason), -1, reason);
        c.logical_block_size = 0;
        c.size = 1 << 30;

        expect("null target known", target_find("null") ? 0 : -1, 0, NULL);
        expect("loop target known", target_find("loop") ? 0 : -1, 0, NULL);
#if HAVE_NBD
        expect("nbd target known", target_find("nbd") ? 0 : -1, 0, NULL);
#endif
        expect("no such target", target_find("iscsi") ? 0 : -1, -1, NULL);
        expect("empty target name", target_find("") ? 0 : -1, -1, NULL);

        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
