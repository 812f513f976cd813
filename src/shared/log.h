/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Logging to stderr.  When stderr is connected to the journal (JOURNAL_STREAM
 * matches), each line carries a "<N>" syslog priority prefix so journald keeps
 * the level; otherwise lines are prefixed with the program name.
 *
 * log_*_errno(r, ...) sets errno to -r for "%m" and returns -|r|, so callers can
 * write "return log_error_errno(r, "Failed to ...: %m");" where the error is
 * handled, and nowhere else.
 */

#include <syslog.h>

#include "macro.h"

void log_setup(const char *program_name);
void log_set_max_level(int level);
int log_get_max_level(void);

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) _printf_(5, 6);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)
