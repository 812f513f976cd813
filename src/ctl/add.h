/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ublkctl's add command, all of it from the table of add-options.h: its long options (one per
 * option but a target's positional argument; a UBLK_OPT_CLI_NEGATE bool as --no-KEY), its
 * help, and the Add call from the command line or from /etc/ublk/NAME.conf.  The functions
 * return an exit code (0, 1, 2 for a usage error) unless they say otherwise.
 */

#include <getopt.h>
#include <stddef.h>

#include "add-options.h"
#include "conf.h"

#define ADD_LONG_OPTIONS_MAX UBLK_CONF_OPTIONS_MAX

/* Puts add's long options in options (room for ADD_LONG_OPTIONS_MAX), each with the value
 * val_base + N; returns how many. */
size_t add_long_options(struct option *options, int val_base);
/* getopt_long gave option val_base + index, with arg (NULL for a flag). */
void add_option_given(int index, const char *arg);
/* The lines of add in "ublkctl --help": the commands and every option. */
void add_print_commands(void);
/* "ublkctl add --help" (argv[1] NULL) or "ublkctl add TARGET --help". */
int add_help(int argc, char *argv[]);
/* argv[0] is "add". */
int cmd_add(int argc, char *argv[]);
/* The device of NAME.conf, named name. */
int add_from_conf(const struct ublk_conf *conf, const char *name);
