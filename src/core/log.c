/* SPDX-License-Identifier: BSD-2-Clause */
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static enum log_level current_level = LOG_WARN;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

int log_parse_level(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (level > current_level)
        return;
    /* Build the whole line first so concurrent vCPU threads never interleave within a line. */
    char line[1024];
    int n =
        snprintf(line, sizeof(line), "%s: %s: ", program_invocation_short_name, level_names[level]);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
