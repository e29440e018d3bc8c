/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-net's MAC table (src/backends/net/fdb.c): learning, unicast and flood
 * decisions, frames for the source's own port, ageing, a station moving, a port's
 * stations forgotten, group and zero addresses never learned, the per-port limit, a
 * full set evicting an expired or else its least recently seen entry, and a table
 * offered more stations than it holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/net/fdb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000000ull

static struct fdb *t;

static int setup(void **state)
{
    (void)state;
    t = malloc(sizeof(*t));
    if (t == NULL)
        return -1;
    fdb_init(t, 0x0123456789abcdefull, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(t);
    return 0;
}

static void mac_of(uint32_t n, uint8_t mac[6])
{
    mac[0] = 0x02; /* locally administered unicast */
    mac[1] = 0;
    mac[2] = (uint8_t)(n >> 24);
    mac[3] = (uint8_t)(n >> 16);
    mac[4] = (uint8_t)(n >> 8);
    mac[5] = (uint8_t)n;
}

/* The 12 address bytes of a frame from @p src to @p dst. */
static void frame_macs(uint32_t dst, uint32_t src, uint8_t m[12])
{
    mac_of(dst, m);
    mac_of(src, m + 6);
}

static void test_learn_and_forward(void **state)
{
    (void)state;
    uint8_t m[12];
    unsigned dst = 99;
    /* A -> B, B unknown: flood; A learned on port 0. */
    frame_macs(2, 1, m);
    assert_int_equal(fdb_forward(t, 0, m, 10 * SEC, &dst), FDB_FLOOD);
    assert_int_equal(fdb_lookup(t, m + 6, 10 * SEC), 0);
    assert_int_equal(fdb_count(t, 0), 1);
    /* B -> A from port 1: A known on 0: unicast; B learned on 1. */
    frame_macs(1, 2, m);
    assert_int_equal(fdb_forward(t, 1, m, 11 * SEC, &dst), FDB_UNICAST);
    assert_int_equal(dst, 0);
    /* A -> B now unicast to 1. */
    frame_macs(2, 1, m);
    assert_int_equal(fdb_forward(t, 0, m, 12 * SEC, &dst), FDB_UNICAST);
    assert_int_equal(dst, 1);
    /* Broadcast and multicast are flooded even from known stations. */
    memset(m, 0xff, 6);
    assert_int_equal(fdb_forward(t, 0, m, 12 * SEC, &dst), FDB_FLOOD);
    memcpy(m, (uint8_t[]){0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, 6);
    assert_int_equal(fdb_forward(t, 0, m, 12 * SEC, &dst), FDB_FLOOD);
    memcpy(m, (uint8_t[]){0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, 6);
    assert_int_equal(fdb_forward(t, 0, m, 12 * SEC, &dst), FDB_FLOOD);
    /* A station on the source's own port: filtered. */
    frame_macs(1, 3, m); /* C, on port 0 too, talks to A */
    assert_int_equal(fdb_forward(t, 0, m, 13 * SEC, &dst), FDB_LOCAL);
    assert_int_equal(fdb_count(t, 0), 2);
    assert_int_equal(fdb_count(t, 1), 1);
}

static void test_refresh_and_age(void **state)
{
    (void)state;
    uint8_t a[6];
    mac_of(7, a);
    assert_int_equal(fdb_learn(t, a, 3, 100 * SEC), 1);
    assert_int_equal(fdb_learn(t, a, 3, 200 * SEC), 0); /* refreshed */
    /* 300 s after the last frame it is still there; a moment later it is gone. */
    assert_int_equal(fdb_lookup(t, a, 500 * SEC), 3);
    assert_int_equal(fdb_lookup(t, a, 500 * SEC + 1), -ENOENT);
    assert_int_equal(fdb_count(t, 3), 0); /* removed when found expired */
    /* Learned again after ageing out: new. */
    assert_int_equal(fdb_learn(t, a, 3, 600 * SEC), 1);
    assert_int_equal(fdb_lookup(t, a, 600 * SEC), 3);
    /* A table with a shorter age. */
    fdb_init(t, 1, 5 * SEC);
    assert_int_equal(fdb_learn(t, a, 1, 0), 1);
    assert_int_equal(fdb_lookup(t, a, 5 * SEC), 1);
    assert_int_equal(fdb_lookup(t, a, 6 * SEC), -ENOENT);
}

static void test_move(void **state)
{
    (void)state;
    uint8_t a[6], m[12];
    unsigned dst = 99;
    mac_of(42, a);
    assert_int_equal(fdb_learn(t, a, 0, SEC), 1);
    /* The VM migrated (or the address was taken over): it appears on port 2. */
    assert_int_equal(fdb_learn(t, a, 2, 2 * SEC), 1);
    assert_int_equal(fdb_lookup(t, a, 2 * SEC), 2);
    assert_int_equal(fdb_count(t, 0), 0);
    assert_int_equal(fdb_count(t, 2), 1);
    /* Frames for it from port 0 now go to port 2. */
    frame_macs(42, 43, m);
    assert_int_equal(fdb_forward(t, 0, m, 3 * SEC, &dst), FDB_UNICAST);
    assert_int_equal(dst, 2);
}

static void test_forget_port(void **state)
{
    (void)state;
    uint8_t a[6];
    for (uint32_t i = 0; i < 100; i++) {
        mac_of(1000 + i, a);
        assert_int_equal(fdb_learn(t, a, i % 2, SEC), 1);
    }
    assert_int_equal(fdb_count(t, 0), 50);
    assert_int_equal(fdb_count(t, 1), 50);
    fdb_forget_port(t, 1);
    assert_int_equal(fdb_count(t, 1), 0);
    for (uint32_t i = 0; i < 100; i++) {
        mac_of(1000 + i, a);
        assert_int_equal(fdb_lookup(t, a, 2 * SEC), i % 2 ? -ENOENT : 0);
    }
}

static void test_never_learned(void **state)
{
    (void)state;
    const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0x01, 0x02, 0x03};
    const uint8_t zero[6] = {0};
    uint8_t a[6];
    mac_of(1, a);
    assert_int_equal(fdb_learn(t, bcast, 0, SEC), -EINVAL);
    assert_int_equal(fdb_learn(t, mcast, 0, SEC), -EINVAL);
    assert_int_equal(fdb_learn(t, zero, 0, SEC), -EINVAL);
    assert_int_equal(fdb_learn(t, a, FDB_MAX_PORTS, SEC), -EINVAL);
    assert_int_equal(fdb_count(t, 0), 0);
    assert_int_equal(fdb_count(t, FDB_MAX_PORTS), 0);
    /* A frame with a group source address is still forwarded, but teaches nothing. */
    uint8_t m[12];
    unsigned dst;
    mac_of(2, m);
    memcpy(m + 6, mcast, 6);
    assert_int_equal(fdb_forward(t, 0, m, SEC, &dst), FDB_FLOOD);
    assert_int_equal(fdb_count(t, 0), 0);
}

static void test_port_limit(void **state)
{
    (void)state;
    uint8_t a[6];
    unsigned learned = 0;
    /* Port 5 sprays made-up addresses: it keeps at most FDB_PORT_LIMIT of them. */
    for (uint32_t i = 0; i < 3 * FDB_PORT_LIMIT; i++) {
        mac_of(0x100000 + i, a);
        int r = fdb_learn(t, a, 5, SEC);
        assert_true(r == 1 || r == -ENOSPC);
        learned += r == 1;
    }
    assert_true(fdb_count(t, 5) <= FDB_PORT_LIMIT);
    assert_true(learned >= FDB_PORT_LIMIT);
    /* Another port still learns. */
    mac_of(77, a);
    assert_int_equal(fdb_learn(t, a, 6, SEC), 1);
    assert_int_equal(fdb_lookup(t, a, SEC), 6);
    /* Once port 5's entries age out (and a sweep ran), it learns again. */
    mac_of(0x900000, a);
    assert_int_equal(fdb_learn(t, a, 5, 400 * SEC), 1);
    assert_int_equal(fdb_lookup(t, a, 400 * SEC), 5);
    assert_int_equal(fdb_count(t, 5), 1);
}

/* fdb.c's set index, repeated here to find addresses that share a set. */
static unsigned set_of(uint64_t key, const uint8_t mac[6])
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 6; i++)
        v = v << 8 | mac[i];
    v ^= key;
    v *= 0x9e3779b97f4a7c15ull;
    v ^= v >> 29;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 32;
    return (unsigned)(v & (FDB_SETS - 1u));
}

static void test_full_set_evicts_oldest(void **state)
{
    (void)state;
    const uint64_t key = 0x0123456789abcdefull;
    /* FDB_WAYS + 1 addresses of one set. */
    uint8_t same[FDB_WAYS + 1][6];
    unsigned found = 0, want = 0;
    mac_of(0x300000, same[0]);
    want = set_of(key, same[0]);
    found = 1;
    for (uint32_t i = 1; found < FDB_WAYS + 1; i++) {
        mac_of(0x300000 + i, same[found]);
        if (set_of(key, same[found]) == want)
            found++;
    }
    /* Fill the set at times 1..4, refresh the first, then a fifth arrives: the least
     * recently seen (the second) makes room. */
    for (unsigned i = 0; i < FDB_WAYS; i++)
        assert_int_equal(fdb_learn(t, same[i], i, SEC + i), 1);
    assert_int_equal(fdb_learn(t, same[0], 0, 10 * SEC), 0);
    assert_int_equal(fdb_learn(t, same[FDB_WAYS], 9, 11 * SEC), 1);
    assert_int_equal(fdb_lookup(t, same[1], 11 * SEC), -ENOENT);
    assert_int_equal(fdb_count(t, 1), 0);
    assert_int_equal(fdb_lookup(t, same[0], 11 * SEC), 0);
    for (unsigned i = 2; i < FDB_WAYS; i++)
        assert_int_equal(fdb_lookup(t, same[i], 11 * SEC), (int)i);
    assert_int_equal(fdb_lookup(t, same[FDB_WAYS], 11 * SEC), 9);
    /* An expired entry is taken before a live one. */
    fdb_init(t, key, 5 * SEC);
    assert_int_equal(fdb_learn(t, same[0], 0, 0), 1);
    for (unsigned i = 1; i < FDB_WAYS; i++)
        assert_int_equal(fdb_learn(t, same[i], i, 4 * SEC), 1);
    assert_int_equal(fdb_learn(t, same[FDB_WAYS], 9, 6 * SEC), 1);
    for (unsigned i = 1; i < FDB_WAYS; i++)
        assert_int_equal(fdb_lookup(t, same[i], 6 * SEC), (int)i);
    assert_int_equal(fdb_lookup(t, same[0], 6 * SEC), -ENOENT);
}

static void test_capacity(void **state)
{
    (void)state;
    /* Many more stations than entries: the table keeps at most its capacity, and every
     * entry it keeps is found on the right port. */
    uint8_t a[6];
    const unsigned n = FDB_SETS * FDB_WAYS * 2;
    for (uint32_t i = 0; i < n; i++) {
        mac_of(0x200000 + i, a);
        assert_int_equal(fdb_learn(t, a, i % FDB_MAX_PORTS, SEC + i), 1);
    }
    unsigned total = 0, found = 0;
    for (unsigned p = 0; p < FDB_MAX_PORTS; p++)
        total += fdb_count(t, p);
    assert_true(total <= FDB_SETS * FDB_WAYS);
    assert_true(total > FDB_SETS * FDB_WAYS * 9 / 10);
    for (uint32_t i = 0; i < n; i++) {
        mac_of(0x200000 + i, a);
        int p = fdb_lookup(t, a, SEC + n);
        if (p >= 0) {
            assert_int_equal(p, i % FDB_MAX_PORTS);
            found++;
        }
    }
    assert_int_equal(found, total);
    mac_of(0x200000 + n - 1, a);
    assert_int_equal(fdb_lookup(t, a, SEC + n), (int)((n - 1) % FDB_MAX_PORTS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_learn_and_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_and_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_learned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_set_evicts_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
