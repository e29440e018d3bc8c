/* SPDX-License-Identifier: BSD-2-Clause */
#include "core/log.h"

#include "core/os.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

static enum log_level current_level = LOG_WARN;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

/* Longest line, newline included; longer messages are cut. */
#define LINE_MAX_LEN 1024
/* The program name comes from argv[0], which anyone starting the VMM chooses. */
#define NAME_MAX_LEN 64

/* Rate-limit state is tiny and touched rarely; a spin lock keeps the module free of any
 * OS lock API, so it stays portable. */
static int ratelimit_lock;

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

/* Add @p n (a snprintf result) to @p len without passing @p cap - 1: the result of a
 * truncated snprintf is the length it wanted, not what it wrote. */
static size_t clamp_add(size_t len, int n, size_t cap)
{
    if (n < 0)
        return len;
    size_t sum = len + (size_t)n;
    return sum > cap - 1 ? cap - 1 : sum;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (level > current_level || (unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return;
    /* Build the whole line first so concurrent vCPU threads never interleave within a line. */
    char line[LINE_MAX_LEN];
    size_t len = clamp_add(0,
                           snprintf(line, sizeof(line), "%.*s: %s: ", NAME_MAX_LEN,
                                    os_program_name(), level_names[level]),
                           sizeof(line));
    /* Leave room for the newline: the message may use at most sizeof(line) - len - 1 bytes
     * of text (vsnprintf's size counts its NUL, which the newline replaces). */
    len = clamp_add(len, vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap), sizeof(line) - 1);
    line[len++] = '\n';
    os_log_write(line, len);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
    uint64_t now = os_monotonic_ns();
    uint32_t dropped = 0;
    bool print;
    while (__atomic_exchange_n(&ratelimit_lock, 1, __ATOMIC_ACQUIRE) != 0)
        ;
    if (rl->window_start_ns == 0 || now - rl->window_start_ns >= LOG_RATELIMIT_INTERVAL_NS) {
        dropped = rl->suppressed;
        rl->window_start_ns = now;
        rl->printed = 0;
        rl->suppressed = 0;
    }
    print = rl->printed < LOG_RATELIMIT_BURST;
    if (print)
        rl->printed++;
    else
        rl->suppressed++;
    __atomic_store_n(&ratelimit_lock, 0, __ATOMIC_RELEASE);

    if (dropped != 0)
        log_msg(level, "(%u similar messages suppressed)", dropped);
    if (print) {
        va_list ap;
        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
    }
}
