/* SPDX-License-Identifier: BSD-2-Clause */
/* The command line: every bad input gives OPTIONS_ERROR with a message naming the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vmm/options.h"

#include <string.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static enum options_result parse(int argc, char **argv, struct vmm_options *o, char *err)
{
    return options_parse(argc, argv, o, err, 256);
}

static void test_defaults_and_full(void **state)
{
    (void)state;
    struct vmm_options o;
    char err[256];
    char *a1[] = {"vmm", "--kernel", "k"};
    assert_int_equal(parse(ARGC(a1), a1, &o, err), OPTIONS_RUN);
    assert_string_equal(o.kernel, "k");
    assert_int_equal(o.mem_bytes, 256ull << 20);
    assert_int_equal(o.cpus, 1);
    assert_int_equal(o.serial, SERIAL_STDIO);
    assert_false(o.no_reboot);

    char *a2[] = {"vmm",
                  "--kernel",
                  "k",
                  "--initrd",
                  "i",
                  "--cmdline",
                  "console=ttyS0 quiet",
                  "--mem",
                  "2G",
                  "--cpus",
                  "4",
                  "--serial",
                  "unix:/tmp/s",
                  "--no-reboot",
                  "--log-level",
                  "debug"};
    assert_int_equal(parse(ARGC(a2), a2, &o, err), OPTIONS_RUN);
    assert_string_equal(o.initrd, "i");
    assert_string_equal(o.cmdline, "console=ttyS0 quiet");
    assert_int_equal(o.mem_bytes, 2ull << 30);
    assert_int_equal(o.cpus, 4);
    assert_int_equal(o.serial, SERIAL_UNIX);
    assert_string_equal(o.serial_path, "/tmp/s");
    assert_true(o.no_reboot);
    assert_int_equal(o.log_level, LOG_DEBUG);
}

static void test_disks(void **state)
{
    (void)state;
    struct vmm_options o;
    char err[256];
    char *a[] = {"vmm",
                 "--kernel",
                 "k",
                 "--disk",
                 "path=/i,readonly=on,queues=4,timeout=7",
                 "--disk",
                 "socket=/s,mode=shared",
                 "--control",
                 "/c"};
    assert_int_equal(parse(ARGC(a), a, &o, err), OPTIONS_RUN);
    assert_int_equal(o.nr_disks, 2);
    assert_string_equal(o.disks[0].path, "/i");
    assert_true(o.disks[0].readonly);
    assert_int_equal(o.disks[0].queues, 4);
    assert_int_equal(o.disks[0].timeout, 7);
    assert_int_equal(o.disks[0].mode, VMM_MEM_ISOLATED);
    assert_string_equal(o.disks[1].socket, "/s");
    assert_int_equal(o.disks[1].queues, 0);
    assert_int_equal(o.disks[1].timeout, VMM_DEFAULT_DISK_TIMEOUT);
    assert_int_equal(o.disks[1].mode, VMM_MEM_SHARED);
    assert_string_equal(o.control, "/c");
}

static void expect_error(char **argv, int argc, const char *needle)
{
    struct vmm_options o;
    char err[256];
    assert_int_equal(parse(argc, argv, &o, err), OPTIONS_ERROR);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_null(strchr(err, '\n')); /* one line */
}

static void test_errors(void **state)
{
    (void)state;
    char *no_kernel[] = {"vmm", "--mem", "1G"};
    expect_error(no_kernel, ARGC(no_kernel), "--kernel");
    char *mem0[] = {"vmm", "--kernel", "k", "--mem", "0"};
    expect_error(mem0, ARGC(mem0), "--mem");
    char *membad[] = {"vmm", "--kernel", "k", "--mem", "lots"};
    expect_error(membad, ARGC(membad), "lots");
    char *memhuge[] = {"vmm", "--kernel", "k", "--mem", "99999999999T"};
    expect_error(memhuge, ARGC(memhuge), "--mem");
    char *cpus0[] = {"vmm", "--kernel", "k", "--cpus", "0"};
    expect_error(cpus0, ARGC(cpus0), "--cpus");
    char *cpusmany[] = {"vmm", "--kernel", "k", "--cpus", "1000"};
    expect_error(cpusmany, ARGC(cpusmany), "--cpus");
    char *cpusneg[] = {"vmm", "--kernel", "k", "--cpus", "-1"};
    expect_error(cpusneg, ARGC(cpusneg), "--cpus");
    char *serial[] = {"vmm", "--kernel", "k", "--serial", "tcp:1"};
    expect_error(serial, ARGC(serial), "--serial");
    char *unknown[] = {"vmm", "--kernel", "k", "--frobnicate"};
    expect_error(unknown, ARGC(unknown), "--frobnicate");
    char *missing[] = {"vmm", "--kernel"};
    expect_error(missing, ARGC(missing), "--kernel");
    char *stray[] = {"vmm", "--kernel", "k", "extra"};
    expect_error(stray, ARGC(stray), "extra");
    char *level[] = {"vmm", "--kernel", "k", "--log-level", "loud"};
    expect_error(level, ARGC(level), "loud");
    char *control[] = {"vmm", "--kernel", "k", "--control", ""};
    expect_error(control, ARGC(control), "--control");
    char *q0[] = {"vmm", "--kernel", "k", "--disk", "path=/i,queues=0"};
    expect_error(q0, ARGC(q0), "queues=0");
    char *q17[] = {"vmm", "--kernel", "k", "--disk", "path=/i,queues=17"};
    expect_error(q17, ARGC(q17), "queues=17");
    char *qs[] = {"vmm", "--kernel", "k", "--disk", "socket=/s,queues=2"};
    expect_error(qs, ARGC(qs), "queues=");
    char *t0[] = {"vmm", "--kernel", "k", "--disk", "path=/i,timeout=0"};
    expect_error(t0, ARGC(t0), "timeout=0");
    char *tx[] = {"vmm", "--kernel", "k", "--disk", "path=/i,timeout=5s"};
    expect_error(tx, ARGC(tx), "timeout=5s");
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(options_parse_size("512", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(options_parse_size("4K", &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(options_parse_size("1GiB", &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(options_parse_size("3g", &v), 0);
    assert_int_equal(v, 3ull << 30);
    assert_int_equal(options_parse_size("", &v), -22);
    assert_int_equal(options_parse_size("-1G", &v), -22);
    assert_int_equal(options_parse_size("1Q", &v), -22);
    assert_int_equal(options_parse_size("18446744073709551615T", &v), -22);
    assert_int_equal(options_parse_size("16777216T", &v), -22); /* 2^64 bytes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_full),
        cmocka_unit_test(test_disks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
