/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file os.h
 * @brief The few services the portable code needs from the host OS, behind one interface.
 *
 * The core, the device models and the architecture code must build for seL4 or a bare
 * event loop unchanged, so they never call libc extensions or system calls themselves:
 * they call these, and each host provides one implementation (src/host/os_linux.c on
 * Linux). Keep this list short; every entry is a porting cost.
 */
#ifndef BULKHEAD_CORE_OS_H
#define BULKHEAD_CORE_OS_H

#include <stddef.h>
#include <stdint.h>

/**
 * Emit one finished log line (it already ends in a newline) to the diagnostic stream.
 * Must be safe from any thread and must not interleave with another line.
 * @param line the bytes.
 * @param len their number.
 */
void os_log_write(const char *line, size_t len);

/**
 * A clock that never goes backwards (CLOCK_MONOTONIC on Linux), for rate limits and
 * start-up figures; its origin is arbitrary.
 * @return nanoseconds.
 */
uint64_t os_monotonic_ns(void);

/**
 * Short name of the running program, for the prefix of log lines. It comes from the
 * outside world (argv[0]) and may be of any length: callers bound what they print.
 * @return a NUL-terminated string, never NULL.
 */
const char *os_program_name(void);

#endif
