/* SPDX-License-Identifier: BSD-2-Clause */
/* The checked guest-memory accessor: every edge a guest-supplied range can hit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/checked.h"
#include "core/guest_mem.h"

#include <errno.h>
#include <string.h>

static uint8_t low[4096];
static uint8_t high[8192];
#define HIGH_GPA 0x100000000ull

static struct guest_mem make_mem(void)
{
    struct guest_mem m = {0};
    assert_int_equal(guest_mem_add_region(&m, 0, sizeof(low), low), 0);
    assert_int_equal(guest_mem_add_region(&m, HIGH_GPA, sizeof(high), high), 0);
    return m;
}

static void test_ptr_inside(void **state)
{
    (void)state;
    struct guest_mem m = make_mem();
    assert_ptr_equal(guest_mem_ptr(&m, 0, 1), low);
    assert_ptr_equal(guest_mem_ptr(&m, 0, sizeof(low)), low);
    assert_ptr_equal(guest_mem_ptr(&m, 100, 10), low + 100);
    assert_ptr_equal(guest_mem_ptr(&m, HIGH_GPA + 8191, 1), high + 8191);
}

static void test_last_byte_and_one_past(void **state)
{
    (void)state;
    struct guest_mem m = make_mem();
    assert_ptr_equal(guest_mem_ptr(&m, sizeof(low) - 1, 1), low + sizeof(low) - 1);
    assert_null(guest_mem_ptr(&m, sizeof(low), 1));     /* one past the end */
    assert_null(guest_mem_ptr(&m, sizeof(low) - 1, 2)); /* straddles the end */
    assert_null(guest_mem_ptr(&m, HIGH_GPA + sizeof(high), 1));
    assert_null(guest_mem_ptr(&m, HIGH_GPA - 1, 2)); /* starts in the hole */
}

static void test_zero_length(void **state)
{
    (void)state;
    struct guest_mem m = make_mem();
    uint8_t buf[1] = {0x5a};
    assert_null(guest_mem_ptr(&m, 0, 0));
    /* A zero-length copy is a no-op wherever it points. */
    assert_int_equal(guest_mem_read(&m, UINT64_MAX, buf, 0), 0);
    assert_int_equal(guest_mem_write(&m, 0xdead0000, buf, 0), 0);
    assert_int_equal(buf[0], 0x5a);
}

static void test_wraparound(void **state)
{
    (void)state;
    struct guest_mem m = make_mem();
    assert_null(guest_mem_ptr(&m, UINT64_MAX, 2));
    assert_null(guest_mem_ptr(&m, 16, UINT64_MAX));
    assert_null(guest_mem_ptr(&m, HIGH_GPA + 16, UINT64_MAX - HIGH_GPA));
    assert_null(guest_mem_ptr(&m, UINT64_MAX - 4095, 4096 + 100)); /* wraps onto gpa 0..99 */
    assert_null(guest_mem_ptr(&m, 1, UINT64_MAX));
}

static void test_spanning_regions_refused(void **state)
{
    (void)state;
    struct guest_mem m = {0};
    /* Two adjacent regions backed by unrelated host memory: no access may cross. */
    assert_int_equal(guest_mem_add_region(&m, 0, sizeof(low), low), 0);
    assert_int_equal(guest_mem_add_region(&m, sizeof(low), sizeof(high), high), 0);
    assert_null(guest_mem_ptr(&m, sizeof(low) - 4, 8));
    assert_ptr_equal(guest_mem_ptr(&m, sizeof(low), 8), high);
}

static void test_read_write_fill(void **state)
{
    (void)state;
    struct guest_mem m = make_mem();
    const char msg[] = "bulkhead";
    assert_int_equal(guest_mem_write(&m, HIGH_GPA + 10, msg, sizeof(msg)), 0);
    assert_memory_equal(high + 10, msg, sizeof(msg));
    char back[sizeof(msg)];
    assert_int_equal(guest_mem_read(&m, HIGH_GPA + 10, back, sizeof(back)), 0);
    assert_memory_equal(back, msg, sizeof(msg));
    assert_int_equal(guest_mem_fill(&m, 8, 0xab, 4), 0);
    assert_int_equal(low[8], 0xab);
    assert_int_equal(low[11], 0xab);
    assert_int_equal(guest_mem_write(&m, sizeof(low) - 2, msg, 4), -EFAULT);
    assert_int_equal(guest_mem_read(&m, UINT64_MAX - 1, back, 4), -EFAULT);
    assert_int_equal(guest_mem_fill(&m, HIGH_GPA + sizeof(high) - 1, 0, 2), -EFAULT);
}

static void test_add_region_validation(void **state)
{
    (void)state;
    struct guest_mem m = {0};
    assert_int_equal(guest_mem_add_region(&m, 0, 0, low), -EINVAL);
    assert_int_equal(guest_mem_add_region(&m, UINT64_MAX - 10, 100, low), -EINVAL);
    assert_int_equal(guest_mem_add_region(&m, 4096, 4096, low), 0);
    assert_int_equal(guest_mem_add_region(&m, 0, 4096, low), -EINVAL);    /* out of order */
    assert_int_equal(guest_mem_add_region(&m, 6000, 4096, low), -EINVAL); /* overlaps */
    for (unsigned i = 1; i < GUEST_MEM_MAX_REGIONS; i++)
        assert_int_equal(guest_mem_add_region(&m, 0x10000ull * (i + 1), 16, low), 0);
    assert_int_equal(guest_mem_add_region(&m, 0x1000000, 16, low), -ENOSPC);
    assert_int_equal(guest_mem_total(&m), 4096 + 16 * (GUEST_MEM_MAX_REGIONS - 1));
}

static void test_range_within(void **state)
{
    (void)state;
    assert_true(range_within(0, 0, 0, 0));
    assert_true(range_within(10, 0, 0, 10));  /* empty range at the end */
    assert_false(range_within(11, 0, 0, 10)); /* past the end */
    assert_false(range_within(5, 6, 0, 10));
    assert_true(range_within(5, 5, 0, 10));
    assert_false(range_within(UINT64_MAX, 1, 0, UINT64_MAX));
    assert_true(range_within(UINT64_MAX - 1, 1, 0, UINT64_MAX));
    uint64_t out;
    assert_true(checked_add_u64(UINT64_MAX, 1, &out));
    assert_false(checked_add_u64(UINT64_MAX - 1, 1, &out));
    assert_true(checked_align_up(UINT64_MAX - 2, 4096, &out));
    assert_false(checked_align_up(4097, 4096, &out));
    assert_int_equal(out, 8192);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ptr_inside),
        cmocka_unit_test(test_last_byte_and_one_past),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_wraparound),
        cmocka_unit_test(test_spanning_regions_refused),
        cmocka_unit_test(test_read_write_fill),
        cmocka_unit_test(test_add_region_validation),
        cmocka_unit_test(test_range_within),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
