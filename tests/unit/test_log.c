/* SPDX-License-Identifier: BSD-2-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Captures what the log module writes to stderr. */
static int saved_stderr = -1;
static int pipe_rd = -1;

static int setup(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    pipe_rd = p[0];
    log_set_level(LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(pipe_rd);
    return 0;
}

/* Everything logged so far, NUL-terminated. */
static size_t drain(char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pipe_rd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* A program name of any length (argv[0] is the caller's choice) cannot overflow the line:
 * with 1015+ characters the unclamped prefix used to push the message past the buffer. */
static void test_long_program_name(void **state)
{
    (void)state;
    static char name[4096];
    memset(name, 'x', sizeof(name) - 1);
    char *saved = program_invocation_short_name;
    program_invocation_short_name = name;
    static char msg[3000];
    memset(msg, 'm', sizeof(msg) - 1);
    log_error("%s", msg);
    program_invocation_short_name = saved;

    static char out[8192];
    size_t len = drain(out, sizeof(out));
    assert_true(len > 0 && len <= 1024);
    assert_int_equal(out[len - 1], '\n');
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, ": error: m"));
}

static void test_long_message_cut(void **state)
{
    (void)state;
    static char msg[5000];
    memset(msg, 'a', sizeof(msg) - 1);
    log_warn("%s", msg);
    static char out[8192];
    size_t len = drain(out, sizeof(out));
    assert_int_equal(len, 1023); /* the buffer, less the NUL vsnprintf needs */
    assert_int_equal(out[len - 1], '\n');
}

static void test_level_filter(void **state)
{
    (void)state;
    log_debug("hidden %d", 1);
    log_info("shown %d", 2);
    char out[256];
    drain(out, sizeof(out));
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "shown 2"));
}

/* A guest that triggers a message in a loop gets LOG_RATELIMIT_BURST lines, then silence,
 * then one line saying how many were dropped once the interval has passed. */
static void test_ratelimit(void **state)
{
    (void)state;
    struct log_ratelimit rl = {0};
    for (int i = 0; i < 1000; i++)
        log_msg_ratelimited(&rl, LOG_WARN, "guest did %d", i);
    static char out[65536];
    drain(out, sizeof(out));
    assert_int_equal(count_lines(out), LOG_RATELIMIT_BURST);
    assert_non_null(strstr(out, "guest did 9\n"));
    assert_null(strstr(out, "guest did 10\n"));

    /* Pretend the interval is over. */
    rl.window_start_ns -= LOG_RATELIMIT_INTERVAL_NS;
    log_msg_ratelimited(&rl, LOG_WARN, "guest did %d", 1000);
    drain(out, sizeof(out));
    assert_non_null(strstr(out, "(990 similar messages suppressed)"));
    assert_non_null(strstr(out, "guest did 1000"));

    /* The log_guest() macro keeps one state per call site. */
    for (int i = 0; i < 50; i++)
        log_guest(LOG_WARN, "site %d", i);
    drain(out, sizeof(out));
    assert_int_equal(count_lines(out), LOG_RATELIMIT_BURST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_long_program_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
