/* SPDX-License-Identifier: BSD-2-Clause */
/* Address-range dispatch: overlap rules, straddling accesses, unhandled accesses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/bus.h"

#include <errno.h>

struct recorder {
    uint64_t last_offset;
    unsigned last_size;
    uint64_t last_value;
    unsigned reads, writes;
};

static uint64_t rec_read(void *opaque, uint64_t offset, unsigned size)
{
    struct recorder *r = opaque;
    r->reads++;
    r->last_offset = offset;
    r->last_size = size;
    return 0x1000 + offset;
}

static void rec_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct recorder *r = opaque;
    r->writes++;
    r->last_offset = offset;
    r->last_size = size;
    r->last_value = value;
}

static const struct bus_ops rec_ops = {.read = rec_read, .write = rec_write};

static void test_dispatch_offsets(void **state)
{
    (void)state;
    struct bus b;
    struct recorder a = {0}, c = {0};
    assert_int_equal(bus_init(&b, "t"), 0);
    assert_int_equal(bus_register(&b, 0x3f8, 8, &rec_ops, &a, "a"), 0);
    assert_int_equal(bus_register(&b, 0x100, 4, &rec_ops, &c, "c"), 0);
    uint64_t v;
    assert_int_equal(bus_read(&b, 0x3fd, 1, &v), 0);
    assert_int_equal(v, 0x1005);
    assert_int_equal(a.last_offset, 5);
    assert_int_equal(bus_write(&b, 0x102, 2, 0xbeef), 0);
    assert_int_equal(c.last_offset, 2);
    assert_int_equal(c.last_value, 0xbeef);
    assert_int_equal(c.last_size, 2);
    bus_destroy(&b);
}

static void test_overlap_refused(void **state)
{
    (void)state;
    struct bus b;
    struct recorder a = {0};
    assert_int_equal(bus_init(&b, "t"), 0);
    assert_int_equal(bus_register(&b, 0x1000, 0x100, &rec_ops, &a, "a"), 0);
    assert_int_equal(bus_register(&b, 0x10ff, 1, &rec_ops, &a, "b"), -EEXIST);
    assert_int_equal(bus_register(&b, 0xf00, 0x101, &rec_ops, &a, "b"), -EEXIST);
    assert_int_equal(bus_register(&b, 0xf00, 0x100, &rec_ops, &a, "b"), 0);
    assert_int_equal(bus_register(&b, 0x1100, 0x100, &rec_ops, &a, "b"), 0);
    assert_int_equal(bus_register(&b, 0, 0, &rec_ops, &a, "z"), -EINVAL);
    assert_int_equal(bus_register(&b, UINT64_MAX, 2, &rec_ops, &a, "w"), -EINVAL);
    assert_int_equal(bus_register(&b, UINT64_MAX, 1, &rec_ops, &a, "last"), 0);
    bus_destroy(&b);
}

static void test_straddle_and_unhandled(void **state)
{
    (void)state;
    struct bus b;
    struct recorder a = {0};
    assert_int_equal(bus_init(&b, "t"), 0);
    assert_int_equal(bus_register(&b, 0x10, 4, &rec_ops, &a, "a"), 0);
    uint64_t v = 0;
    assert_int_equal(bus_read(&b, 0x12, 4, &v), -ENOENT); /* crosses the end */
    assert_int_equal(v, 0xffffffffu);
    assert_int_equal(bus_read(&b, 0x0e, 4, &v), -ENOENT); /* starts before */
    assert_int_equal(bus_read(&b, 0x20, 8, &v), -ENOENT);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(bus_write(&b, 0x10, 3, 1), -ENOENT); /* odd width */
    assert_int_equal(a.reads + a.writes, 0);
    assert_int_equal(b.unhandled, 4);
    bus_destroy(&b);
}

static void test_unregister_and_many(void **state)
{
    (void)state;
    struct bus b;
    struct recorder r[40] = {0};
    assert_int_equal(bus_init(&b, "t"), 0);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(bus_register(&b, 0x1000 * (40 - i), 0x10, &rec_ops, &r[i], "x"), 0);
    uint64_t v;
    for (unsigned i = 0; i < 40; i++) {
        assert_int_equal(bus_read(&b, 0x1000 * (40 - i) + 4, 1, &v), 0);
        assert_int_equal(r[i].reads, 1);
    }
    assert_int_equal(bus_unregister(&b, 0x1000 * 40, &r[1]), -ENOENT);
    assert_int_equal(bus_unregister(&b, 0x1000 * 40, &r[0]), 0);
    assert_int_equal(bus_read(&b, 0x1000 * 40, 1, &v), -ENOENT);
    bus_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_offsets),
        cmocka_unit_test(test_overlap_refused),
        cmocka_unit_test(test_straddle_and_unhandled),
        cmocka_unit_test(test_unregister_and_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
