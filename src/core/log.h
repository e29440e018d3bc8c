/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file log.h
 * @brief The one logging module of bulkhead: levelled messages to stderr.
 *
 * Every component logs through here so that a single --log-level flag governs
 * the whole process and every line carries the same "bulkhead: LEVEL:" prefix.
 */
#ifndef BULKHEAD_CORE_LOG_H
#define BULKHEAD_CORE_LOG_H

#include <stdarg.h>
#include <stdint.h>

/** Severity of a log message; a message is printed when its level <= the current level. */
enum log_level {
    LOG_ERROR = 0, /**< The operation or the VM failed. */
    LOG_WARN,      /**< Something is wrong but the VM goes on (e.g. a misbehaving guest). */
    LOG_INFO,      /**< Lifecycle events: start, reset, shutdown. */
    LOG_DEBUG,     /**< Device-level detail useful when debugging a guest. */
    LOG_TRACE,     /**< Per-exit detail; slow. */
};

/**
 * Set the process-wide log level.
 * @param level messages above this level are dropped.
 */
void log_set_level(enum log_level level);

/**
 * Current process-wide log level.
 * @return the level set by log_set_level(), LOG_WARN by default.
 */
enum log_level log_get_level(void);

/**
 * Parse a level name ("error", "warn", "info", "debug", "trace").
 * @param name the name, case-sensitive.
 * @param out receives the level on success.
 * @return 0 on success, -EINVAL if the name is unknown.
 */
int log_parse_level(const char *name, enum log_level *out);

/**
 * Print one message if @p level is enabled. A trailing newline is added.
 * @param level severity of the message.
 * @param fmt printf-style format.
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * va_list variant of log_msg().
 * @param level severity of the message.
 * @param fmt printf-style format.
 * @param ap arguments for @p fmt.
 */
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/** Log at LOG_ERROR. */
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
/** Log at LOG_WARN. */
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
/** Log at LOG_INFO. */
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
/** Log at LOG_DEBUG; the level test is inlined so disabled messages cost one compare. */
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)
/**
 * State of one rate-limited call site: at most LOG_RATELIMIT_BURST lines per
 * LOG_RATELIMIT_INTERVAL_NS, then one line saying how many were suppressed. A guest can
 * trigger some messages at will (a register write, a bad descriptor); without a limit it
 * could fill the host's disk or slow the VMM down with log output.
 */
struct log_ratelimit {
    uint64_t window_start_ns; /**< Start of the current interval. */
    uint32_t printed;         /**< Lines printed in the current interval. */
    uint32_t suppressed;      /**< Lines dropped in the current interval. */
};

/** Lines a rate-limited site may print per interval. */
#define LOG_RATELIMIT_BURST 10
/** Length of a rate-limit interval: 5 s. */
#define LOG_RATELIMIT_INTERVAL_NS 5000000000ull

/**
 * log_msg() through a rate limit. Thread-safe: the state is updated under the logging
 * module's own lock.
 * @param rl the call site's state (zero-initialised).
 * @param level severity of the message.
 * @param fmt printf-style format.
 */
void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Log a guest-triggered message through a per-call-site rate limit. */
#define log_guest(level, ...)                                                                      \
    do {                                                                                           \
        static struct log_ratelimit log_rl_;                                                       \
        if (log_get_level() >= (level))                                                            \
            log_msg_ratelimited(&log_rl_, (level), __VA_ARGS__);                                   \
    } while (0)

/** Log at LOG_TRACE; as log_debug(). */
#define log_trace(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_TRACE)                                                          \
            log_msg(LOG_TRACE, __VA_ARGS__);                                                       \
    } while (0)

#endif
