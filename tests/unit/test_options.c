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
    assert_int_equal(o.sched, HOST_SCHED_BATCH);

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
                  "debug",
                  "--sched",
                  "normal"};
    assert_int_equal(parse(ARGC(a2), a2, &o, err), OPTIONS_RUN);
    assert_int_equal(o.sched, HOST_SCHED_NORMAL);
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
                 "socket=/s,mode=shared,restarts=0",
                 "--control",
                 "/c"};
    assert_int_equal(parse(ARGC(a), a, &o, err), OPTIONS_RUN);
    assert_int_equal(o.nr_devices, 2);
    assert_string_equal(o.devices[0].path, "/i");
    assert_true(o.devices[0].readonly);
    assert_int_equal(o.devices[0].queues, 4);
    assert_int_equal(o.devices[0].timeout, 7);
    assert_int_equal(o.devices[0].mode, VMM_MEM_ISOLATED);
    assert_string_equal(o.devices[1].socket, "/s");
    assert_int_equal(o.devices[1].queues, 0);
    assert_int_equal(o.devices[1].timeout, VMM_DEFAULT_DISK_TIMEOUT);
    assert_int_equal(o.devices[1].mode, VMM_MEM_SHARED);
    assert_int_equal(o.devices[0].restarts, VMM_DEFAULT_RESTARTS);
    assert_int_equal(o.devices[1].restarts, 0);
    assert_string_equal(o.control, "/c");
    assert_null(o.serial2_path);
    char *b[] = {"vmm", "--kernel", "k", "--serial2", "unix:/tmp/com2"};
    assert_int_equal(parse(ARGC(b), b, &o, err), OPTIONS_RUN);
    assert_int_equal(o.serial2, SERIAL_UNIX);
    assert_string_equal(o.serial2_path, "/tmp/com2");
}

static void test_devices(void **state)
{
    (void)state;
    struct vmm_options o;
    char err[256];
    char *a[] = {"vmm",
                 "--kernel",
                 "k",
                 "--name",
                 "web",
                 "--net",
                 "tap=t0",
                 "--net",
                 "socket=/sw,mac=02:aa:bb:cc:dd:ee,mode=shared,poll=0",
                 "--vsock",
                 "cid=7,uds=/v",
                 "--console",
                 "out=stdio,port=data=unix:/p,port=log=file:/l",
                 "--rng",
                 "getrandom",
                 "--fs",
                 "socket=/f,tag=share"};
    assert_int_equal(parse(ARGC(a), a, &o, err), OPTIONS_RUN);
    assert_int_equal(o.nr_devices, 6);
    assert_string_equal(o.name, "web");
    const struct vmm_device *n0 = &o.devices[0], *n1 = &o.devices[1];
    assert_int_equal(n0->kind, VMM_DEV_NET);
    assert_string_equal(n0->tap, "t0");
    assert_int_equal(n0->poll_us, VMM_DEFAULT_POLL_US);
    assert_int_equal(n0->timeout, 0);
    /* The default MAC: locally administered, unicast, stable, per NIC. */
    assert_int_equal(n0->mac[0], 0x02);
    uint8_t again[6];
    options_default_mac("web", "t0", 0, again);
    assert_memory_equal(again, n0->mac, 6);
    options_default_mac("other", "t0", 0, again);
    assert_memory_not_equal(again, n0->mac, 6);
    options_default_mac("web", "t0", 1, again);
    assert_memory_not_equal(again, n0->mac, 6);
    static const uint8_t mac[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
    assert_memory_equal(n1->mac, mac, 6);
    assert_int_equal(n1->mode, VMM_MEM_SHARED);
    assert_int_equal(n1->poll_us, 0);
    assert_int_equal(o.devices[2].kind, VMM_DEV_VSOCK);
    assert_int_equal(o.devices[2].cid, 7);
    assert_string_equal(o.devices[2].uds, "/v");
    assert_int_equal(o.devices[3].kind, VMM_DEV_CONSOLE);
    assert_string_equal(o.devices[3].out, "stdio");
    assert_int_equal(o.devices[3].nr_ports, 2);
    assert_string_equal(o.devices[3].ports[0], "data=unix:/p");
    assert_string_equal(o.devices[3].ports[1], "log=file:/l");
    assert_int_equal(o.devices[4].kind, VMM_DEV_RNG);
    assert_null(o.devices[4].socket);
    assert_int_equal(o.devices[5].kind, VMM_DEV_FS);
    assert_string_equal(o.devices[5].tag, "share");
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
    char *sched[] = {"vmm", "--kernel", "k", "--sched", "fifo"};
    expect_error(sched, ARGC(sched), "--sched: 'fifo'");
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
    char *s2[] = {"vmm", "--kernel", "k", "--serial2", "stdio"};
    expect_error(s2, ARGC(s2), "--serial2");
    char *rx[] = {"vmm", "--kernel", "k", "--disk", "path=/i,restarts=many"};
    expect_error(rx, ARGC(rx), "restarts=many");
    char *t0[] = {"vmm", "--kernel", "k", "--disk", "path=/i,timeout=0"};
    expect_error(t0, ARGC(t0), "timeout=0");
    char *tx[] = {"vmm", "--kernel", "k", "--disk", "path=/i,timeout=5s"};
    expect_error(tx, ARGC(tx), "timeout=5s");
    char *nboth[] = {"vmm", "--kernel", "k", "--net", "tap=t,socket=/s"};
    expect_error(nboth, ARGC(nboth), "exactly one");
    char *nmac[] = {"vmm", "--kernel", "k", "--net", "tap=t,mac=01:00:00:00:00:01"};
    expect_error(nmac, ARGC(nmac), "mac=");
    char *nmac2[] = {"vmm", "--kernel", "k", "--net", "tap=t,mac=02:00:00:00:00"};
    expect_error(nmac2, ARGC(nmac2), "mac=");
    char *ntimeout[] = {"vmm", "--kernel", "k", "--net", "tap=t,timeout=3"};
    expect_error(ntimeout, ARGC(ntimeout), "timeout");
    char *vcid[] = {"vmm", "--kernel", "k", "--vsock", "cid=2,uds=/v"};
    expect_error(vcid, ARGC(vcid), "cid=2");
    char *vnouds[] = {"vmm", "--kernel", "k", "--vsock", "cid=5"};
    expect_error(vnouds, ARGC(vnouds), "uds=");
    char *cport[] = {"vmm", "--kernel", "k", "--console", "out=stdio,port=bad name=unix:/x"};
    expect_error(cport, ARGC(cport), "port=");
    char *cout[] = {"vmm", "--kernel", "k", "--console", "out=tcp:1"};
    expect_error(cout, ARGC(cout), "out=");
    char *rng[] = {"vmm", "--kernel", "k", "--rng", "on"};
    expect_error(rng, ARGC(rng), "--rng");
    char *fs[] = {"vmm", "--kernel", "k", "--fs", "socket=/f"};
    expect_error(fs, ARGC(fs), "tag=");
    char *fstag[] = {"vmm", "--kernel", "k", "--fs",
                     "socket=/f,tag=0123456789012345678901234567890123456"};
    expect_error(fstag, ARGC(fstag), "tag=");
    char *poll[] = {"vmm", "--kernel", "k", "--rng", "getrandom,poll=1001"};
    expect_error(poll, ARGC(poll), "poll=1001");
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
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
