/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the /etc/ublk/NAME.conf parser (src/ctl/conf.c): any bytes must give
 * either a parsed configuration or an error message, never a crash, a leak or undefined
 * behaviour (built with ASan+UBSan).  Run by tools/test for a bounded time (suite "fuzz").
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct ublk_conf conf;
        char err[256];
        FILE *f;

        if (size == 0)
                return 0;
        f = fmemopen((void *) data, size, "r");
        if (!f)
                return 0;
        if (ublk_conf_parse(f, "fuzz.conf", &conf, err, sizeof(err)) == 0) {
                /* What a successful parse promises: a target, and paths (FD options) absolute. */
                if (!conf.target)
                        __builtin_trap();
                for (size_t i = 0; ublk_options[i] && i < UBLK_CONF_OPTIONS_MAX; i++)
                        if (conf.values[i] && ublk_options[i]->kind == UBLK_OPT_FD && conf.values[i][0] != '/')
                                __builtin_trap();
                ublk_conf_free(&conf);
        } else if (memchr(err, 0, sizeof(err)) == NULL || strncmp(err, "fuzz.conf", 9) != 0)
                __builtin_trap();
        fclose(f);
        return 0;
}
