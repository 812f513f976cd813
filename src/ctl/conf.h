/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * /etc/ublk/NAME.conf, the devices ublk@NAME.service creates at boot (ublk.conf(5)).
 *
 * One "key = value" per line; blank lines and lines starting with '#' are ignored; spaces
 * around key and value are not significant.  Keys are "target" (required) and the options of
 * add-options.h but those flagged UBLK_OPT_NO_CONF (name, start), each value in its text form;
 * an FD option's value (loop's backing) is an absolute path, which ublkctl opens.  Whether the
 * target takes them is ublkd's to say, as for "ublkctl add".
 * An unknown key, a key given twice, a bad value or an over-long line is an error naming the
 * file and line.  The file is read by ublkctl, as whoever runs it (root for the unit): ublkd
 * never sees the path, only the backing file's descriptor.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "add-options.h"

#define UBLK_CONF_DIR "/etc/ublk"

#define UBLK_CONF_OPTIONS_MAX 64

struct ublk_conf {
        char *target;
        /* By the option's index in ublk_options[]: its value as the file has it (checked with
         * ublk_option_parse()), NULL if not given. */
        char *values[UBLK_CONF_OPTIONS_MAX];
};

/* Parses f (named fname in messages).  On error, returns a negative errno and puts one line
 * naming the file, the line and the fix in err. */
int ublk_conf_parse(FILE *f, const char *fname, struct ublk_conf *conf, char *err, size_t err_len);
void ublk_conf_free(struct ublk_conf *conf);
/* The value of option key, NULL when not given. */
const char *ublk_conf_get(const struct ublk_conf *conf, const char *key);
