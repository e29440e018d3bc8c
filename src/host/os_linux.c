/* SPDX-License-Identifier: BSD-2-Clause */
/* Linux implementation of core/os.h. */
#include "core/os.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

void os_log_write(const char *line, size_t len)
{
    /* One write(2) per line: the kernel keeps concurrent lines whole on pipes and files,
     * and a stderr that blocks cannot corrupt stdio state shared with other threads. */
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        line += n;
        len -= (size_t)n;
    }
}

uint64_t os_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *os_program_name(void)
{
    return program_invocation_short_name != NULL ? program_invocation_short_name : "bulkhead";
}
