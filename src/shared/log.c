/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

static const char *program = "ublkd";
static int max_level = LOG_INFO;
static int to_journal;

static int stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(const char *program_name)
{
        const char *e;

        program = program_name;
        to_journal = stderr_is_journal();
        e = getenv("UBLKD_LOG_LEVEL");
        if (e && strcmp(e, "debug") == 0)
                max_level = LOG_DEBUG;
}

void log_set_max_level(int level)
{
        max_level = level;
}

int log_get_max_level(void)
{
        return max_level;
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
{
        char buf[2048];
        va_list ap;
        int saved = errno;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        errno = error;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);

        if (to_journal)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else if (max_level >= LOG_DEBUG)
                fprintf(stderr, "%s: %s:%d: %s\n", program, file, line, buf);
        else
                fprintf(stderr, "%s: %s\n", program, buf);

        errno = saved;
        return -error;
}
