/* SPDX-License-Identifier: BSD-2-Clause */
/* The system description: good descriptions parse into the expected structs, and every
 * kind of mistake is reported at its line and column, all of them in one run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "supervisor/desc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Paths containing "missing" do not exist; everything else does. */
static int fake_check_path(const char *path, enum desc_path_kind kind, void *ctx)
{
    (void)kind;
    unsigned *calls = ctx;
    if (calls != NULL)
        (*calls)++;
    return strstr(path, "missing") != NULL ? -ENOENT : 0;
}

static unsigned path_calls;

/* A host with 4 GiB and 4 CPUs. */
static const struct desc_host host = {
    .mem_bytes = 4ull << 30,
    .cpus = 4,
    .check_path = fake_check_path,
    .ctx = &path_calls,
};

static struct desc *parse_ok(const char *text)
{
    struct desc *d = NULL;
    int r = desc_parse("sys/test.yaml", text, strlen(text), &host, &d);
    if (r != 0 && d != NULL)
        desc_print_errors(d, stderr);
    assert_int_equal(r, 0);
    assert_non_null(d);
    return d;
}

static struct desc *parse_bad(const char *text)
{
    struct desc *d = NULL;
    assert_int_equal(desc_parse("sys/test.yaml", text, strlen(text), &host, &d), -EINVAL);
    assert_non_null(d);
    assert_true(d->nr_errors > 0);
    return d;
}

/* An error at @p line:@p col whose message contains @p text. */
static void expect_error(const struct desc *d, unsigned line, unsigned col, const char *text)
{
    for (unsigned i = 0; i < d->nr_errors; i++)
        if (d->errors[i].pos.line == line && d->errors[i].pos.col == col &&
            strstr(d->errors[i].msg, text) != NULL)
            return;
    desc_print_errors(d, stderr);
    fail_msg("no error at %u:%u containing '%s'", line, col, text);
}

/* The description has exactly one error, there, saying that. */
static void expect_only_error(const char *yaml, unsigned line, unsigned col, const char *text)
{
    struct desc *d = parse_bad(yaml);
    expect_error(d, line, col, text);
    if (d->nr_errors != 1) {
        desc_print_errors(d, stderr);
        fail_msg("%u errors, expected 1", d->nr_errors);
    }
    desc_free(d);
}

static int find_vm(const struct desc *d, const char *name)
{
    for (unsigned i = 0; i < d->nr_vms; i++)
        if (strcmp(d->vms[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int find_backend(const struct desc *d, const char *name)
{
    for (unsigned i = 0; i < d->nr_backends; i++)
        if (strcmp(d->backends[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const char chain[] = "vms:\n"                    /* 1 */
                            "  vm1:\n"                  /* 2 */
                            "    kernel: k\n"           /* 3 */
                            "    nics: [{link: l12}]\n" /* 4 */
                            "  vm2:\n"                  /* 5 */
                            "    kernel: /abs/k\n"      /* 6 */
                            "    initrd: i\n"           /* 7 */
                            "    cmdline: \"console=ttyS0 quiet\"\n"
                            "    memory: 1G\n"                  /* 9 */
                            "    vcpus: 2\n"                    /* 10 */
                            "    nics:\n"                       /* 11 */
                            "      - link: l12\n"               /* 12 */
                            "      - link: l23\n"               /* 13 */
                            "        mode: shared\n"            /* 14 */
                            "    console:\n"                    /* 15 */
                            "      ports: {to-vm3: }\n"         /* 16 */
                            "  vm3:\n"                          /* 17 */
                            "    kernel: k\n"                   /* 18 */
                            "    nics: [{link: l23}]\n"         /* 19 */
                            "    console:\n"                    /* 20 */
                            "      ports:\n"                    /* 21 */
                            "        from-vm2:\n"               /* 22 */
                            "        agent: {socket: a.sock}\n" /* 23 */
                            "backends:\n"                       /* 24 */
                            "  l12: {type: p2p}\n"              /* 25 */
                            "  l23: {type: p2p}\n"              /* 26 */
                            "serial-links:\n"                   /* 27 */
                            "  - [vm1:com2, vm2:com2]\n"        /* 28 */
                            "  - [vm2:to-vm3, vm3:from-vm2]\n"; /* 29 */

static void test_chain(void **state)
{
    (void)state;
    struct desc *d = parse_ok(chain);
    assert_int_equal(d->nr_vms, 3);
    assert_int_equal(d->nr_backends, 2);
    assert_int_equal(d->nr_serial_links, 2);
    /* 4 NICs + 2 consoles + 2 serial links */
    assert_int_equal(d->nr_links, 8);

    const struct desc_vm *vm1 = &d->vms[find_vm(d, "vm1")];
    const struct desc_vm *vm2 = &d->vms[find_vm(d, "vm2")];
    const struct desc_vm *vm3 = &d->vms[find_vm(d, "vm3")];
    int l12 = find_backend(d, "l12"), l23 = find_backend(d, "l23");
    assert_int_equal(d->backends[l12].type, DESC_BACKEND_P2P);
    assert_int_equal(d->backends[l12].nr_users, 2);
    assert_int_equal(d->backends[l23].nr_users, 2);

    /* Defaults, and relative paths start at the description's directory. */
    assert_string_equal(vm1->kernel, "sys/k");
    assert_null(vm1->initrd);
    assert_string_equal(vm1->cmdline, "console=ttyS0");
    assert_int_equal(vm1->mem_bytes, 256ull << 20);
    assert_int_equal(vm1->vcpus, 1);
    assert_int_equal(vm1->cpu_weight, 100);
    assert_int_equal(vm1->cpu_max_milli, 0);
    assert_false(vm1->host_cpus_given);
    assert_int_equal(vm1->restart.policy, DESC_RESTART_ON_FAILURE);
    assert_int_equal(vm1->restart.backoff_ms, DESC_DEFAULT_BACKOFF_MS);
    assert_true(vm1->serial.input);
    assert_null(vm1->serial.log);
    assert_int_equal(vm1->pos.line, 2);
    assert_int_equal(vm1->pos.col, 3);

    assert_string_equal(vm2->kernel, "/abs/k");
    assert_string_equal(vm2->initrd, "sys/i");
    assert_string_equal(vm2->cmdline, "console=ttyS0 quiet");
    assert_int_equal(vm2->mem_bytes, 1ull << 30);
    assert_int_equal(vm2->vcpus, 2);

    assert_int_equal(vm1->nr_devices, 1);
    assert_int_equal(vm1->devices[0].kind, DESC_DEV_NIC);
    assert_int_equal(vm1->devices[0].backend, l12);
    assert_int_equal(vm1->devices[0].port, 0);
    assert_int_equal(vm1->devices[0].mode, DESC_MEM_ISOLATED);
    assert_int_equal(vm1->devices[0].poll_us, 50);

    assert_int_equal(vm2->nr_devices, 3);
    assert_int_equal(vm2->devices[0].backend, l12);
    assert_int_equal(vm2->devices[0].port, 1);
    assert_int_equal(vm2->devices[1].backend, l23);
    assert_int_equal(vm2->devices[1].port, 0);
    assert_int_equal(vm2->devices[1].mode, DESC_MEM_SHARED);
    assert_int_equal(vm2->devices[1].pos.line, 13);
    assert_int_equal(vm2->devices[1].backend_pos.line, 13);
    assert_int_equal(vm2->devices[1].backend_pos.col, 15);
    const struct desc_device *con2 = &vm2->devices[2];
    assert_int_equal(con2->kind, DESC_DEV_CONSOLE);
    assert_int_equal(con2->backend, -1);
    assert_int_equal(con2->nr_ports, 1);
    assert_string_equal(con2->ports[0].name, "to-vm3");
    assert_int_equal(con2->ports[0].kind, DESC_PORT_LINK);
    assert_int_equal(con2->ports[0].link, 1);

    const struct desc_device *con3 = &vm3->devices[1];
    assert_int_equal(con3->nr_ports, 2);
    assert_int_equal(con3->ports[0].link, 1);
    assert_int_equal(con3->ports[1].kind, DESC_PORT_SOCKET);
    assert_string_equal(con3->ports[1].path, "sys/a.sock");
    assert_int_equal(con3->ports[1].link, -1);

    /* COM2 of vm1 and vm2 are the first link; nobody else has a COM2. */
    assert_int_equal(vm1->com2_link, 0);
    assert_int_equal(vm2->com2_link, 0);
    assert_int_equal(vm3->com2_link, -1);
    const struct desc_serial_link *s0 = &d->serial_links[0], *s1 = &d->serial_links[1];
    assert_int_equal(s0->ends[0].vm, find_vm(d, "vm1"));
    assert_int_equal(s0->ends[0].port, -1);
    assert_int_equal(s0->ends[1].vm, find_vm(d, "vm2"));
    assert_int_equal(s1->ends[0].vm, find_vm(d, "vm2"));
    assert_int_equal(s1->ends[0].device, 2);
    assert_int_equal(s1->ends[0].port, 0);
    assert_int_equal(s1->ends[1].vm, find_vm(d, "vm3"));
    assert_int_equal(s1->ends[1].device, 1);
    assert_int_equal(s1->ends[1].port, 0);
    assert_int_equal(s1->pos.line, 29);
    desc_free(d);
}

static const char switch3[] = "version: 1\n"
                              "backends:\n"
                              "  lan:\n"
                              "    type: switch\n"
                              "    taps: [tap0]\n"
                              "    restart: always\n"
                              "vms:\n"
                              "  web:\n"
                              "    kernel: k\n"
                              "    memory: 512\n"
                              "    vcpus: 2\n"
                              "    host-cpus: \"0-1, 3\"\n"
                              "    cpu-max: 150%\n"
                              "    nics: [{link: lan, mac: \"02:00:00:00:00:01\"}]\n"
                              "    serial: {log: logs/web.log, input: false}\n"
                              "    rng: true\n"
                              "  db:\n"
                              "    kernel: k\n"
                              "    host-cpus: [2, \"0-1\"]\n"
                              "    cpu-max: 0.25\n"
                              "    cpu-weight: 200\n"
                              "    nics: [{link: lan, mac: \"02:00:00:00:00:02\", poll: 0}]\n"
                              "    restart:\n"
                              "      policy: always\n"
                              "      backoff: 500ms\n"
                              "      backoff-max: 2m\n"
                              "      limit: 0\n"
                              "  cache:\n"
                              "    kernel: k\n"
                              "    shutdown-timeout: 5\n"
                              "    nics: [{link: lan}]\n"
                              "    restart: never\n";

static void test_switch_of_three(void **state)
{
    (void)state;
    struct desc *d = parse_ok(switch3);
    assert_int_equal(d->nr_vms, 3);
    assert_int_equal(d->nr_backends, 1);
    assert_int_equal(d->nr_links, 4); /* three NICs and an rng */
    const struct desc_backend *lan = &d->backends[0];
    assert_int_equal(lan->type, DESC_BACKEND_SWITCH);
    assert_int_equal(lan->nr_users, 3);
    assert_int_equal(lan->nr_taps, 1);
    assert_string_equal(lan->taps[0], "tap0");
    assert_int_equal(lan->restart.policy, DESC_RESTART_ALWAYS);
    assert_int_equal(lan->restart.limit, DESC_DEFAULT_RESTART_LIMIT);

    const struct desc_vm *web = &d->vms[0], *db = &d->vms[1], *cache = &d->vms[2];
    assert_string_equal(web->name, "web");
    assert_int_equal(web->mem_bytes, 512ull << 20); /* a bare number is MiB */
    assert_true(web->host_cpus_given);
    assert_int_equal(web->host_cpus[0], 0xb); /* 0, 1, 3 */
    assert_int_equal(web->cpu_max_milli, 1500);
    assert_string_equal(web->serial.log, "sys/logs/web.log");
    assert_false(web->serial.input);
    assert_int_equal(web->nr_devices, 2);
    assert_int_equal(web->devices[0].port, 0);
    assert_true(web->devices[0].mac_given);
    assert_int_equal(web->devices[0].mac[5], 1);
    assert_int_equal(web->devices[1].kind, DESC_DEV_RNG);
    assert_int_equal(web->devices[1].backend, -1);

    assert_int_equal(db->host_cpus[0], 0x7);
    assert_int_equal(db->cpu_max_milli, 250);
    assert_int_equal(db->cpu_weight, 200);
    assert_int_equal(db->devices[0].port, 1);
    assert_int_equal(db->devices[0].poll_us, 0);
    assert_int_equal(db->restart.policy, DESC_RESTART_ALWAYS);
    assert_int_equal(db->restart.backoff_ms, 500);
    assert_int_equal(db->restart.backoff_max_ms, 120000);
    assert_int_equal(db->restart.limit, 0);

    assert_int_equal(cache->devices[0].port, 2);
    assert_false(cache->devices[0].mac_given);
    assert_int_equal(cache->shutdown_timeout, 5);
    assert_int_equal(cache->restart.policy, DESC_RESTART_NEVER);
    desc_free(d);
}

static const char disk_peer[] = "vms:\n"
                                "  storage:\n"
                                "    kernel: k\n"
                                "    disks:\n"
                                "      - backend: data\n"
                                "        timeout: 60\n"
                                "    nics: [{link: export}]\n"
                                "    fs: [{backend: share, tag: share}]\n"
                                "    vsock: {cid: 3, uds: v.sock}\n"
                                "  app:\n"
                                "    kernel: k\n"
                                "    nics: [{link: export}]\n"
                                "backends:\n"
                                "  data:\n"
                                "    type: blk\n"
                                "    image: missing-data.img\n"
                                "    readonly: true\n"
                                "    queues: 4\n"
                                "    create: 64M\n"
                                "  export: {type: p2p}\n"
                                "  share:\n"
                                "    type: external\n"
                                "    device: fs\n"
                                "    command: [/usr/lib/qemu/virtiofsd, "
                                "\"--socket-path={socket}\", --shared-dir, /srv]\n";

static void test_disk_to_one_peer(void **state)
{
    (void)state;
    struct desc *d = parse_ok(disk_peer);
    int data = find_backend(d, "data"), export = find_backend(d, "export"),
        share = find_backend(d, "share");
    const struct desc_backend *b = &d->backends[data];
    assert_int_equal(b->type, DESC_BACKEND_BLK);
    /* create: lets the image be missing; its directory must exist (the fake says it does) */
    assert_string_equal(b->image, "sys/missing-data.img");
    assert_true(b->readonly);
    assert_int_equal(b->queues, 4);
    assert_int_equal(b->create_bytes, 64ull << 20);
    assert_int_equal(b->nr_users, 1);
    assert_int_equal(d->backends[export].nr_users, 2);

    const struct desc_backend *e = &d->backends[share];
    assert_int_equal(e->type, DESC_BACKEND_EXTERNAL);
    assert_int_equal(e->device, DESC_DEV_FS);
    assert_int_equal(e->argc, 4);
    assert_string_equal(e->argv[0], "/usr/lib/qemu/virtiofsd");
    assert_string_equal(e->argv[1], "--socket-path={socket}");
    assert_null(e->argv[4]);

    const struct desc_vm *st = &d->vms[find_vm(d, "storage")];
    assert_int_equal(st->nr_devices, 4);
    assert_int_equal(st->devices[0].kind, DESC_DEV_DISK);
    assert_int_equal(st->devices[0].backend, data);
    assert_int_equal(st->devices[0].timeout, 60);
    assert_int_equal(st->devices[1].backend, export);
    assert_int_equal(st->devices[2].kind, DESC_DEV_FS);
    assert_int_equal(st->devices[2].backend, share);
    assert_string_equal(st->devices[2].tag, "share");
    assert_int_equal(st->devices[3].kind, DESC_DEV_VSOCK);
    assert_int_equal(st->devices[3].cid, 3);
    assert_string_equal(st->devices[3].uds, "sys/v.sock");
    assert_int_equal(d->vms[find_vm(d, "app")].nr_devices, 1);
    desc_free(d);
}

static void test_unknown_key(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    memroy: 1G\n", 4, 5,
                      "vms.a: unknown key 'memroy' (expected kernel, initrd");
    expect_only_error("vms: {a: {kernel: k}}\nbackend: {}\n", 2, 1, "unknown key 'backend'");
    expect_only_error("vms:\n  a:\n    kernel: k\n    disks:\n      - backend: b\n        "
                      "mod: shared\nbackends: {b: {type: blk, image: i}}\n",
                      6, 9, "vms.a.disks[0]: unknown key 'mod'");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    vcpus: [2]\n", 4, 12,
                      "vms.a.vcpus: expected a number from 1 to 254, got a list");
    expect_only_error("vms:\n  a:\n    kernel: k\n    vcpus: two\n", 4, 12, "got 'two'");
    expect_only_error("vms:\n  a:\n    kernel: k\n    nics: {link: x}\n", 4, 11,
                      "vms.a.nics: expected a list, got a mapping");
    expect_only_error("vms:\n  a:\n    kernel:\n", 3, 12, "expected a path, got nothing");
    expect_only_error("vms:\n  a:\n    kernel: k\n    rng: yes\n", 4, 10, "true or false");
    expect_only_error("vms: [a]\n", 1, 6, "expected a mapping of names, got a list");
}

static void test_dangling_reference(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    disks: [{backend: store}]\n", 4, 23,
                      "vms.a.disks[0].backend: no backend named 'store'");
    /* A name of the wrong kind of thing is no better (and leaves the switch unused). */
    struct desc *d = parse_bad("vms:\n  a:\n    kernel: k\n    disks: [{backend: lan}]\n"
                               "backends: {lan: {type: switch, taps: [t0]}}\n");
    expect_error(d, 4, 23, "backend 'lan' is a switch; a disk needs a blk backend");
    expect_error(d, 5, 12, "backends.lan: no VM uses this backend");
    assert_int_equal(d->nr_errors, 2);
    desc_free(d);
    expect_only_error("serial-links: [[a:com2, b:com2]]\nvms:\n  a: {kernel: k}\n", 1, 25,
                      "no VM named 'b'");
}

static void test_p2p_with_three_ends(void **state)
{
    (void)state;
    struct desc *d = parse_bad("vms:\n"
                               "  a: {kernel: k, nics: [{link: p}]}\n"
                               "  b: {kernel: k, nics: [{link: p}]}\n"
                               "  c: {kernel: k, nics: [{link: p}]}\n"
                               "backends: {p: {type: p2p}}\n");
    expect_error(d, 4, 32,
                 "p2p link 'p' already has two ends, vms.a.nics[0] (line 2) and "
                 "vms.b.nics[0] (line 3)");
    assert_int_equal(d->nr_errors, 1);
    desc_free(d);
    /* A tap is an end too; and one end alone is not a link. */
    expect_only_error("vms:\n  a: {kernel: k, nics: [{link: p}]}\n"
                      "  b: {kernel: k, nics: [{link: p}]}\n"
                      "backends: {p: {type: p2p, taps: [t0]}}\n",
                      3, 32, "already has two ends (1 of them taps)");
    expect_only_error("vms:\n  a: {kernel: k, nics: [{link: p}]}\nbackends:\n  p: {type: p2p}\n", 4,
                      3, "backends.p: a p2p link has exactly two ends");
}

static void test_linked_twice(void **state)
{
    (void)state;
    /* One blk backend for two disks. */
    expect_only_error("vms:\n"
                      "  a: {kernel: k, disks: [{backend: d}]}\n"
                      "  b: {kernel: k, disks: [{backend: d}]}\n"
                      "backends: {d: {type: blk, image: i}}\n",
                      3, 36, "backend 'd' already serves vms.a.disks[0] (line 2, column 36)");
    /* One serial port in two links. */
    expect_only_error("vms:\n  a: {kernel: k}\n  b: {kernel: k}\n  c: {kernel: k}\n"
                      "serial-links:\n  - [a:com2, b:com2]\n  - [c:com2, a:com2]\n",
                      7, 14, "a:com2 is already linked (line 6, column 5)");
    /* An external backend serves one device too. */
    expect_only_error("vms:\n"
                      "  a: {kernel: k, fs: [{backend: v, tag: t}, {backend: v, tag: u}]}\n"
                      "backends: {v: {type: external, device: fs, command: [vfs, '{socket}']}}\n",
                      2, 55,
                      "backend 'v' already serves vms.a.fs[0] (line 2, column 33); an "
                      "external backend serves one device");
}

static void test_duplicate_name(void **state)
{
    (void)state;
    /* Backends are read first, but the error is at the later of the two in the file. */
    expect_only_error("vms:\n  web: {kernel: k}\n  db: {kernel: k}\n"
                      "backends:\n  web: {type: switch}\n",
                      5, 3, "the name 'web' is used twice (first at line 2, column 3)");
    expect_only_error("vms:\n  web: {kernel: k}\n  web: {kernel: k}\n", 3, 3,
                      "the name 'web' is used twice");
    expect_only_error("vms:\n  Web: {kernel: k}\n  ok: {kernel: k}\n", 2, 3,
                      "'Web' is not a valid name");
    /* The later one is left out: here the VM, whose backend reference then dangles not. */
    struct desc *d = parse_bad("backends:\n  n: {type: switch}\nvms:\n"
                               "  a: {kernel: k, nics: [{link: n}]}\n  n: {kernel: k}\n");
    expect_error(d, 5, 3, "the name 'n' is used twice (first at line 2, column 3)");
    assert_int_equal(d->nr_errors, 1);
    assert_int_equal(d->nr_vms, 1);
    assert_int_equal(d->nr_backends, 1);
    desc_free(d);
}

static void test_memory_over_host(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    memory: 8G\n", 4, 13,
                      "8G (8192 MiB) is more than the host's memory (4096 MiB)");
    /* Each fits, together they do not: reported at vms:. */
    expect_only_error("vms:\n  a: {kernel: k, memory: 3G}\n  b: {kernel: k, memory: 2G}\n", 1, 1,
                      "the VMs' memory adds up to 5120 MiB, more than the host's 4096 MiB");
    expect_only_error("vms:\n  a: {kernel: k, memory: 8M}\n", 2, 26, "out of range (16M to 1T)");
}

static void test_vcpus_over_host(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    vcpus: 8\n", 4, 12,
                      "8 vCPUs are more than the host's 4 CPUs");
    expect_only_error("vms:\n  a:\n    kernel: k\n    host-cpus: 2-5\n", 4, 16,
                      "host CPU 5 does not exist: the host has 4 CPUs (0 to 3)");
    expect_only_error("vms:\n  a:\n    kernel: k\n    cpu-max: 5\n", 4, 14,
                      "5 is more than the host's 4 CPUs");
}

static void test_bad_memory_unit(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: k\n    memory: 256X\n", 4, 13,
                      "'256X' is not a size: expected a number of MiB or a number with K, M, G "
                      "or T");
    expect_only_error("vms:\n  a:\n    kernel: k\n    memory: 1.5G\n", 4, 13, "is not a size");
}

static void test_invalid_yaml(void **state)
{
    (void)state;
    /* libyaml's own position and words. */
    expect_only_error("vms:\n  a: [1\n", 3, 1,
                      "invalid YAML: did not find expected ',' or ']' (while parsing a flow "
                      "sequence at line 2, column 6)");
    expect_only_error("vms:\n  a:\n\tkernel: k\n", 3, 1,
                      "invalid YAML: found character that cannot start any token");
    expect_only_error("vms:\n  a: &x {kernel: k}\n  b: *x\n", 3, 6, "aliases (*x) are not");
    expect_only_error("vms: {a: {kernel: k}}\n---\nvms: {}\n", 2, 1,
                      "only one YAML document per file");
    expect_only_error("", 1, 1, "the description is empty");
}

static void test_missing_files(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a:\n    kernel: missing-k\n", 3, 13,
                      "kernel 'sys/missing-k': no such file");
    expect_only_error("vms:\n  a: {kernel: k, disks: [{backend: d}]}\n"
                      "backends:\n  d:\n    type: blk\n    image: /srv/missing.img\n",
                      6, 12, "image '/srv/missing.img': no such file");
    expect_only_error("vms:\n  a: {kernel: k, fs: [{backend: v, tag: t}]}\n"
                      "backends: {v: {type: external, device: fs, command: [missing-vfs, "
                      "'{socket}']}}\n",
                      3, 54, "program 'missing-vfs': no such file");
}

static void test_more_errors(void **state)
{
    (void)state;
    expect_only_error("vms:\n  a: {kernel: k, fs: [{backend: v, tag: t}]}\n"
                      "backends: {v: {type: external, device: fs, command: [vfs, --x]}}\n",
                      3, 53, "no word contains {socket}");
    expect_only_error("vms:\n  a: {kernel: k, console: {ports: {p: }}}\n", 2, 36,
                      "a port without socket: or file: must be in a serial link");
    expect_only_error("vms:\n  a: {kernel: k, vsock: {cid: 3}}\n", 2, 25,
                      "give cid: and uds:, or backend: alone");
    expect_only_error("vms:\n  a: {kernel: k, restart: {policy: always, backoff: 2m, "
                      "backoff-max: 1m}}\n",
                      2, 27, "backoff (120000 ms) is longer than backoff-max (60000 ms)");
    expect_only_error("vms:\n  a: {kernel: k, restart: sometimes}\n", 2, 27,
                      "expected never, on-failure or always");
    expect_only_error("vms:\n  a: {kernel: k}\nbackends: {x: {type: wat}}\n", 3, 22,
                      "expected blk, switch, p2p or external, got 'wat'");
    expect_only_error("vms:\n  a: {kernel: k}\nbackends: {x: {type: switch, taps: [t0]}}\n", 3, 12,
                      "backends.x: no VM uses this backend");
    expect_only_error("vms:\n  a: {kernel: k, console: {log: x.log}, serial: {log: x.log}}\n", 2,
                      55, "log 'sys/x.log' is already used at line 2, column 33");
    expect_only_error("vms:\n  a: {nics: [{link: n, mac: '02:00:00:00:00:01'}], kernel: k}\n"
                      "  b: {nics: [{link: n, mac: '02:00:00:00:00:01'}], kernel: k}\n"
                      "backends: {n: {type: switch}}\n",
                      3, 14, "the MAC address 02:00:00:00:00:01 is already used by a NIC of 'a'");
    expect_only_error("vms:\n  a: {kernel: k, cpu-max: 0.5%}\n", 2, 27, "is not a CPU share");
    expect_only_error("version: 2\nvms: {a: {kernel: k}}\n", 1, 10, "only 1");
    expect_only_error("backends: {}\n", 1, 1, "'vms' is required");
}

/* One file, many mistakes: every one is reported, in the order of the file. */
static void test_all_errors_reported(void **state)
{
    (void)state;
    struct desc *d = parse_bad("vms:\n"
                               "  a:\n"
                               "    kernel: k\n"
                               "    memory: lots\n"          /* 4: bad size */
                               "    vcpus: 99\n"             /* 5: over the host */
                               "    colour: blue\n"          /* 6: unknown key */
                               "    disks: [{backend: x}]\n" /* 7: dangling */
                               "  b:\n"
                               "    cmdline: [1]\n"); /* 9: wrong type; 8: no kernel */
    assert_int_equal(d->nr_errors, 6);
    expect_error(d, 4, 13, "'lots' is not a size");
    expect_error(d, 5, 12, "99 vCPUs");
    expect_error(d, 6, 5, "unknown key 'colour'");
    expect_error(d, 7, 23, "no backend named 'x'");
    expect_error(d, 9, 5, "'kernel' is required");
    expect_error(d, 9, 14, "expected a kernel command line, got a list");
    for (unsigned i = 1; i < d->nr_errors; i++)
        assert_true(d->errors[i - 1].pos.line <= d->errors[i].pos.line);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    desc_print_errors(d, f);
    fclose(f);
    assert_non_null(strstr(buf, "sys/test.yaml:4:13: error: vms.a.memory: 'lots' is not a size"));
    free(buf);
    desc_free(d);
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(desc_parse_size("256", &v), 0);
    assert_int_equal(v, 256ull << 20);
    assert_int_equal(desc_parse_size("256M", &v), 0);
    assert_int_equal(v, 256ull << 20);
    assert_int_equal(desc_parse_size("1G", &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(desc_parse_size("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(desc_parse_size("512k", &v), 0);
    assert_int_equal(v, 512ull << 10);
    assert_int_equal(desc_parse_size("1T", &v), 0);
    assert_int_equal(v, 1ull << 40);
    assert_int_equal(desc_parse_size("", &v), -EINVAL);
    assert_int_equal(desc_parse_size("G", &v), -EINVAL);
    assert_int_equal(desc_parse_size("1Q", &v), -EINVAL);
    assert_int_equal(desc_parse_size("1GG", &v), -EINVAL);
    assert_int_equal(desc_parse_size("99999999999999999999", &v), -EINVAL);
    assert_int_equal(desc_parse_size("17179869184T", &v), -EINVAL);
}

/* Relative paths start at the file's directory, and the check goes to the host's hook. */
static void test_paths(void **state)
{
    (void)state;
    struct desc *d = NULL;
    path_calls = 0;
    const char *t = "vms: {a: {kernel: k, initrd: /i}}\n";
    assert_int_equal(desc_parse("t.yaml", t, strlen(t), &host, &d), 0);
    assert_string_equal(d->vms[0].kernel, "k");
    assert_string_equal(d->vms[0].initrd, "/i");
    assert_int_equal(path_calls, 2);
    desc_free(d);
    assert_int_equal(desc_parse("/etc/bulkhead/t.yaml", t, strlen(t), &host, &d), 0);
    assert_string_equal(d->vms[0].kernel, "/etc/bulkhead/k");
    desc_free(d);
    /* With no host facts nothing of the host is checked. */
    const char *big = "vms: {a: {kernel: missing, memory: 1T, vcpus: 254}}\n";
    assert_int_equal(desc_parse("t.yaml", big, strlen(big), NULL, &d), 0);
    desc_free(d);
}

/* The shipped examples are valid (the images they name are not needed here). */
static void test_examples(void **state)
{
    (void)state;
    static const char *const files[] = {"examples/chain.yaml", "examples/switch.yaml",
                                        "examples/disk-peer.yaml"};
    static const unsigned vms[] = {3, 3, 2};
    static const unsigned backends[] = {2, 1, 2};
    for (unsigned i = 0; i < 3; i++) {
        struct desc *d = NULL;
        int r = desc_load(files[i], &host, &d);
        if (r == -ENOENT)
            fail_msg("%s not found: run the unit tests from the repository's top", files[i]);
        if (r != 0 && d != NULL)
            desc_print_errors(d, stderr);
        assert_int_equal(r, 0);
        if (d == NULL) {
            fail();
            return;
        }
        assert_int_equal(d->nr_vms, vms[i]);
        assert_int_equal(d->nr_backends, backends[i]);
        assert_string_equal(d->vms[0].kernel, "examples/../build/guest/vmlinuz");
        assert_string_equal(d->vms[0].initrd, "examples/../build/guest/initrd.cpio.gz");
        desc_free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_switch_of_three),
        cmocka_unit_test(test_disk_to_one_peer),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_dangling_reference),
        cmocka_unit_test(test_p2p_with_three_ends),
        cmocka_unit_test(test_linked_twice),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_memory_over_host),
        cmocka_unit_test(test_vcpus_over_host),
        cmocka_unit_test(test_bad_memory_unit),
        cmocka_unit_test(test_invalid_yaml),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_more_errors),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
