/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The split virtqueue: good paths on both sides, and every malformed ring the
 * walker must refuse. Guest RAM is 1 MiB mapped between two PROT_NONE guard
 * areas, with the descriptor table at its first byte and the available ring
 * ending at its last byte, so any access outside the memory view faults and
 * fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/guest_mem.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define RAM_GPA   0x100000ull
#define RAM_SIZE  0x100000ull
#define RAM_END   (RAM_GPA + RAM_SIZE)
#define GUARD     0x10000ull
#define TABLE     (RAM_GPA + 0x30000) /* indirect tables */
#define DATA      (RAM_GPA + 0x40000) /* buffers */
#define F_INDIR   (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT   (1ull << VIRTIO_F_EVENT_IDX)
#define N_IOV     64
#define BIG_QUEUE 8192

static uint8_t *ram; /* host address of RAM_GPA; guards on both sides */
static struct guest_mem mem;
static struct vq vq;  /* device side */
static struct vq drv; /* driver side, for the driver tests */
static struct vq_driver_slot slots[VIRTQ_MAX_SIZE];
static struct vq_config cfg;
static uint16_t drv_avail; /* the test's own avail idx when it plays the driver */
static struct vq_iovec iov[N_IOV];
static struct vq_chain chain;

static int group_setup(void **state)
{
    (void)state;
    uint8_t *map =
        mmap(NULL, GUARD + RAM_SIZE + GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -1;
    ram = map + GUARD;
    return mprotect(ram, RAM_SIZE, PROT_READ | PROT_WRITE);
}

static int group_teardown(void **state)
{
    (void)state;
    return munmap(ram - GUARD, GUARD + RAM_SIZE + GUARD);
}

static int test_setup(void **state)
{
    (void)state;
    memset(ram, 0, RAM_SIZE);
    mem = (struct guest_mem){0};
    drv_avail = 0;
    memset(&vq, 0x5a, sizeof(vq)); /* vq_enable must not depend on prior contents */
    memset(&chain, 0, sizeof(chain));
    return guest_mem_add_region(&mem, RAM_GPA, RAM_SIZE, ram);
}

static uint8_t *hp(uint64_t gpa)
{
    assert_true(gpa >= RAM_GPA && gpa < RAM_END);
    return ram + (gpa - RAM_GPA);
}

static void w16(uint64_t gpa, uint16_t v)
{
    uint8_t *p = hp(gpa);
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void w32(uint64_t gpa, uint32_t v)
{
    w16(gpa, (uint16_t)v);
    w16(gpa + 2, (uint16_t)(v >> 16));
}

static void w64(uint64_t gpa, uint64_t v)
{
    w32(gpa, (uint32_t)v);
    w32(gpa + 4, (uint32_t)(v >> 32));
}

static uint16_t r16(uint64_t gpa)
{
    const uint8_t *p = hp(gpa);
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t r32(uint64_t gpa)
{
    return r16(gpa) | (uint32_t)r16(gpa + 2) << 16;
}

/* Writes descriptor i of the table at gpa @p table. */
static void desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next)
{
    uint64_t d = table + 16ull * i;
    w64(d, addr);
    w32(d + 8, len);
    w16(d + 12, flags);
    w16(d + 14, next);
}

static void put_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    desc_at(cfg.desc_addr, i, addr, len, flags, next);
}

/* Plays the driver: appends @p head to the available ring and publishes it. */
static void offer(uint16_t head)
{
    w16(cfg.avail_addr + 4 + 2ull * (drv_avail % cfg.size), head);
    drv_avail++;
    w16(cfg.avail_addr + 2, drv_avail);
}

/* Descriptor table at the first byte of RAM, avail ring ending at its last byte. */
static void layout(uint16_t size, uint64_t features)
{
    cfg = (struct vq_config){.size = size, .features = features, .desc_addr = RAM_GPA};
    cfg.avail_addr = RAM_END - virtq_avail_bytes(size);
    cfg.used_addr = (cfg.avail_addr - virtq_used_bytes(size)) & ~3ull;
}

static void enable(uint16_t size, uint64_t features)
{
    layout(size, features);
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
}

static int walk(uint16_t head, enum vq_access access)
{
    return vq_walk_chain(&vq, head, access, iov, N_IOV, &chain);
}

/* Offers @p head, pops it back and walks it. */
static int offer_walk(uint16_t head, enum vq_access access)
{
    uint16_t h = 0xffff;
    offer(head);
    int r = vq_pop_avail(&vq, &h);
    if (r != 1)
        return r < 0 ? r : -1000;
    assert_int_equal(h, head);
    return walk(h, access);
}

/* A refused ring: the error, the broken flag, and every later call refused. */
static void assert_broken(int r, int expected)
{
    uint16_t h;
    assert_int_equal(r, expected);
    assert_true(vq.broken);
    assert_non_null(vq.broken_reason);
    assert_int_equal(vq_pop_avail(&vq, &h), -EIO);
    assert_int_equal(walk(0, VQ_ACCESS_ANY), -EIO);
    assert_int_equal(vq_push_used(&vq, 0, 0), -EIO);
    assert_false(vq_should_notify(&vq));
}

static void expect_malformed(uint16_t head, enum vq_access access, int expected)
{
    assert_broken(offer_walk(head, access), expected);
}

/* ---- set-up ---- */

static void test_enable_validation(void **state)
{
    (void)state;
    layout(8, 0);
    static const uint16_t bad_sizes[] = {0, 3, 6, 100, 65535};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        struct vq_config c = cfg;
        c.size = bad_sizes[i];
        assert_int_equal(vq_enable(&vq, &mem, &c), -EINVAL);
    }
    struct vq_config c = cfg;
    c.desc_addr += 8; /* 16-byte alignment */
    assert_int_equal(vq_enable(&vq, &mem, &c), -EINVAL);
    c = cfg;
    c.avail_addr -= 1;
    assert_int_equal(vq_enable(&vq, &mem, &c), -EINVAL);
    c = cfg;
    c.used_addr += 2;
    assert_int_equal(vq_enable(&vq, &mem, &c), -EINVAL);
    c = cfg;
    c.desc_addr = RAM_GPA - 16; /* starts in front of RAM */
    assert_int_equal(vq_enable(&vq, &mem, &c), -EFAULT);
    c = cfg;
    c.avail_addr += 2; /* one entry past the end of RAM */
    assert_int_equal(vq_enable(&vq, &mem, &c), -EFAULT);
    c = cfg;
    c.used_addr = RAM_END - 68; /* aligned, but the last two bytes are past RAM */
    assert_int_equal(vq_enable(&vq, &mem, &c), -EFAULT);
    c = cfg;
    c.desc_addr = UINT64_MAX - 15; /* aligned, wraps 2^64 */
    assert_int_equal(vq_enable(&vq, &mem, &c), -EFAULT);
    c = cfg;
    c.used_addr = UINT64_MAX - 3;
    assert_int_equal(vq_enable(&vq, &mem, &c), -EFAULT);

    /* A refused set-up leaves the queue disabled. */
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), -ENODEV);
    assert_int_equal(walk(0, VQ_ACCESS_ANY), -ENODEV);

    /* Exactly at both edges is fine. */
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    vq_disable(&vq);
    assert_int_equal(vq_pop_avail(&vq, &h), -ENODEV);
}

static void test_enable_sizes(void **state)
{
    (void)state;
    cfg = (struct vq_config){.size = VIRTQ_MAX_SIZE, .desc_addr = RAM_GPA};
    cfg.avail_addr = RAM_GPA + virtq_desc_table_bytes(VIRTQ_MAX_SIZE);
    cfg.used_addr = (cfg.avail_addr + virtq_avail_bytes(VIRTQ_MAX_SIZE) + 3) & ~3ull;
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    enable(1, 0);
    put_desc(0, DATA, 4, 0, 0);
    assert_int_equal(offer_walk(0, VQ_ACCESS_ANY), 0);
    assert_int_equal(chain.nr_readable, 1);
}

static void test_enable_host_misaligned(void **state)
{
    (void)state;
    /* The same guest addresses, but a memory view whose host side is off by one. */
    struct guest_mem odd = {0};
    assert_int_equal(guest_mem_add_region(&odd, RAM_GPA, RAM_SIZE - 1, ram + 1), 0);
    layout(8, 0);
    cfg.avail_addr -= 2;
    cfg.used_addr -= 4;
    assert_int_equal(vq_enable(&vq, &odd, &cfg), -EINVAL);
}

/* ---- device side, good paths ---- */

static void test_pop_order_and_empty(void **state)
{
    (void)state;
    enable(8, 0);
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    offer(5);
    offer(2);
    offer(7);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(h, 5);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(h, 2);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(h, 7);
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    assert_false(vq.broken);
}

static void test_direct_chain(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(3, DATA, 16, VIRTQ_DESC_F_NEXT, 6);
    put_desc(6, DATA + 0x100, 100, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA + 0x1000, 200, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 7);
    put_desc(7, RAM_END - 1, 1, VIRTQ_DESC_F_WRITE, 0); /* the last byte of RAM */
    assert_int_equal(offer_walk(3, VQ_ACCESS_ANY), 0);
    assert_int_equal(chain.nr_readable, 2);
    assert_int_equal(chain.nr_writable, 2);
    assert_int_equal(chain.readable_bytes, 116);
    assert_int_equal(chain.writable_bytes, 201);
    assert_int_equal(chain.nr_desc, 4);
    assert_ptr_equal(iov[0].base, hp(DATA));
    assert_int_equal(iov[0].len, 16);
    assert_ptr_equal(iov[1].base, hp(DATA + 0x100));
    assert_int_equal(iov[1].len, 100);
    assert_ptr_equal(iov[2].base, hp(DATA + 0x1000));
    assert_int_equal(iov[2].len, 200);
    assert_ptr_equal(iov[3].base, hp(RAM_END - 1));
    assert_int_equal(iov[3].len, 1);
    assert_false(vq.broken);
}

static void test_indirect_chain(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    desc_at(TABLE, 0, DATA, 12, VIRTQ_DESC_F_NEXT, 2);
    desc_at(TABLE, 2, DATA + 0x200, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    desc_at(TABLE, 1, DATA + 0x800, 1, VIRTQ_DESC_F_WRITE, 0);
    /* The WRITE flag of the descriptor naming the table must be ignored. */
    put_desc(4, TABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    assert_int_equal(offer_walk(4, VQ_ACCESS_ANY), 0);
    assert_int_equal(chain.nr_readable, 1);
    assert_int_equal(chain.nr_writable, 2);
    assert_int_equal(chain.readable_bytes, 12);
    assert_int_equal(chain.writable_bytes, 513);
    assert_int_equal(chain.nr_desc, 3);
    assert_ptr_equal(iov[0].base, hp(DATA));
    assert_ptr_equal(iov[1].base, hp(DATA + 0x200));
    assert_ptr_equal(iov[2].base, hp(DATA + 0x800));
}

static void test_direct_then_indirect(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    /* Spec: zero or more direct descriptors followed by one indirect one is valid. */
    put_desc(0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    desc_at(TABLE, 0, DATA + 0x10, 8, VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, DATA + 0x20, 64, VIRTQ_DESC_F_WRITE, 0);
    assert_int_equal(offer_walk(0, VQ_ACCESS_ANY), 0);
    assert_int_equal(chain.nr_readable, 2);
    assert_int_equal(chain.nr_writable, 1);
    assert_int_equal(chain.nr_desc, 3);
    assert_ptr_equal(iov[1].base, hp(DATA + 0x10));
    assert_ptr_equal(iov[2].base, hp(DATA + 0x20));
}

static void test_unaligned_indirect_table(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    const uint64_t t = TABLE + 3; /* the spec gives indirect tables no alignment */
    desc_at(t, 0, DATA + 0x40, 40, VIRTQ_DESC_F_NEXT, 1);
    desc_at(t, 1, DATA + 0x80, 24, VIRTQ_DESC_F_WRITE, 0);
    put_desc(2, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
    uint64_t before = vq.loads;
    assert_int_equal(offer_walk(2, VQ_ACCESS_ANY), 0);
    assert_int_equal(vq.loads - before, 2 + 3 * 4); /* idx, entry; 3 descriptors */
    assert_ptr_equal(iov[0].base, hp(DATA + 0x40));
    assert_int_equal(iov[0].len, 40);
    assert_ptr_equal(iov[1].base, hp(DATA + 0x80));
    assert_int_equal(iov[1].len, 24);
}

static void test_zero_length_descriptors(void **state)
{
    (void)state;
    enable(8, 0);
    /* Zero-length: accepted, not translated (the address is nonsense), no segment. */
    put_desc(0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 8, VIRTQ_DESC_F_NEXT, 2);
    put_desc(2, 0, 0, VIRTQ_DESC_F_WRITE, 0);
    assert_int_equal(offer_walk(0, VQ_ACCESS_ANY), 0);
    assert_int_equal(chain.nr_readable, 1);
    assert_int_equal(chain.nr_writable, 0);
    assert_int_equal(chain.nr_desc, 3);
    assert_int_equal(chain.readable_bytes, 8);
    assert_false(vq.broken);
}

static void test_chain_of_queue_size(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    for (unsigned i = 0; i < 8; i++)
        put_desc(i, DATA + 16ull * i, 16, i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    assert_int_equal(offer_walk(0, VQ_ACCESS_READABLE_ONLY), 0);
    assert_int_equal(chain.nr_desc, 8);
    assert_int_equal(chain.readable_bytes, 128);
    /* An indirect table of exactly the queue size. */
    for (unsigned i = 0; i < 8; i++)
        desc_at(TABLE, i, DATA, 1, VIRTQ_DESC_F_WRITE | (i < 7 ? VIRTQ_DESC_F_NEXT : 0),
                (uint16_t)(i + 1));
    put_desc(0, TABLE, 8 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    assert_int_equal(offer_walk(0, VQ_ACCESS_WRITABLE_ONLY), 0);
    assert_int_equal(chain.nr_writable, 8);
}

static void test_enobufs(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 10, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA + 0x10, 20, VIRTQ_DESC_F_NEXT, 2);
    put_desc(2, DATA + 0x20, 30, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
    put_desc(3, DATA + 0x40, 40, VIRTQ_DESC_F_WRITE, 0);
    offer(0);
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    struct vq_iovec small[2];
    assert_int_equal(vq_walk_chain(&vq, h, VQ_ACCESS_ANY, small, 2, &chain), -ENOBUFS);
    assert_false(vq.broken); /* our storage, not the guest's fault */
    assert_int_equal(chain.nr_readable, 2);
    assert_int_equal(chain.nr_writable, 0);
    assert_int_equal(chain.readable_bytes, 30); /* totals cover the whole chain */
    assert_int_equal(chain.writable_bytes, 70);
    assert_int_equal(chain.nr_desc, 4);
    assert_ptr_equal(small[1].base, hp(DATA + 0x10));
    assert_int_equal(vq_walk_chain(&vq, h, VQ_ACCESS_ANY, NULL, 0, &chain), -ENOBUFS);
    assert_int_equal(vq_push_used(&vq, h, 0), 0);
    /* The queue goes on. */
    assert_int_equal(offer_walk(0, VQ_ACCESS_ANY), 0);
}

static void test_enobufs_does_not_hide_malformation(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 10, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 10, VIRTQ_DESC_F_NEXT, 0);
    offer(0);
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    struct vq_iovec one[1];
    assert_broken(vq_walk_chain(&vq, h, VQ_ACCESS_ANY, one, 1, &chain), -ELOOP);
}

static void test_index_wraparound(void **state)
{
    (void)state;
    layout(8, 0);
    cfg.last_avail_idx = 65534;
    cfg.used_idx = 65534;
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    drv_avail = 65534;
    for (uint16_t i = 0; i < 4; i++) {
        put_desc(i, DATA + 0x100ull * i, 0x10, VIRTQ_DESC_F_WRITE, 0);
        offer(i);
    }
    assert_int_equal(r16(cfg.avail_addr + 2), 2);
    for (uint16_t i = 0; i < 4; i++) {
        uint16_t h;
        assert_int_equal(vq_pop_avail(&vq, &h), 1);
        assert_int_equal(h, i);
        assert_int_equal(walk(h, VQ_ACCESS_WRITABLE_ONLY), 0);
        assert_ptr_equal(iov[0].base, hp(DATA + 0x100ull * i));
        assert_int_equal(vq_push_used(&vq, h, 0x10 - i), 0);
    }
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    assert_int_equal(r16(cfg.used_addr + 2), 2);
    /* Entries went to ring slots 6, 7, 0, 1. */
    static const unsigned slot[4] = {6, 7, 0, 1};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(r32(cfg.used_addr + 4 + 8ull * slot[i]), i);
        assert_int_equal(r32(cfg.used_addr + 8 + 8ull * slot[i]), 0x10 - i);
    }
}

static void test_push_used_batch(void **state)
{
    (void)state;
    enable(8, 0);
    uint8_t before[64];
    memcpy(before, hp(cfg.used_addr - sizeof(before)), sizeof(before));
    assert_int_equal(vq_add_used(&vq, 1, 100), 0);
    assert_int_equal(vq_add_used(&vq, 2, 200), 0);
    assert_int_equal(r16(cfg.used_addr + 2), 0); /* not published yet */
    assert_int_equal(vq_publish_used(&vq), 0);
    assert_int_equal(r16(cfg.used_addr + 2), 2);
    assert_int_equal(r32(cfg.used_addr + 4), 1);
    assert_int_equal(r32(cfg.used_addr + 8), 100);
    assert_int_equal(r32(cfg.used_addr + 12), 2);
    assert_int_equal(r32(cfg.used_addr + 16), 200);
    assert_int_equal(vq_add_used(&vq, 8, 0), -EINVAL); /* caller bug, not the guest's */
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(vq_add_used(&vq, 0, 0), 0);
    assert_int_equal(vq_add_used(&vq, 0, 0), -ENOSPC);
    assert_false(vq.broken);
    assert_int_equal(vq_publish_used(&vq), 0);
    assert_int_equal(r16(cfg.used_addr + 2), 10);
    /* Nothing written in front of the used ring; the device never writes flags here. */
    assert_memory_equal(before, hp(cfg.used_addr - sizeof(before)), sizeof(before));
    assert_int_equal(r16(cfg.used_addr), 0);
}

/* ---- notification suppression ---- */

static void test_need_event_math(void **state)
{
    (void)state;
    assert_true(virtq_need_event(0, 1, 0)); /* used_event 0: after the first buffer */
    assert_false(virtq_need_event(0, 0, 0));
    assert_true(virtq_need_event(5, 10, 5));
    assert_true(virtq_need_event(9, 10, 5));
    assert_false(virtq_need_event(4, 10, 5));  /* already passed before */
    assert_false(virtq_need_event(10, 10, 5)); /* entry 10 not written yet */
    /* Across the 16-bit wrap. */
    assert_true(virtq_need_event(65535, 1, 65534));
    assert_true(virtq_need_event(0, 1, 65535));
    assert_false(virtq_need_event(1, 1, 65535));
    assert_false(virtq_need_event(65533, 2, 65534));
    assert_true(virtq_need_event(65534, 2, 65534));
}

static void test_should_notify_event_idx(void **state)
{
    (void)state;
    enable(8, F_EVENT);
    const uint64_t used_event = cfg.avail_addr + virtq_used_event_off(8);
    w16(cfg.avail_addr, VIRTQ_AVAIL_F_NO_INTERRUPT); /* must be ignored with EVENT_IDX */
    w16(used_event, 2);                              /* "tell me when entry 2 is used" */
    assert_false(vq_should_notify(&vq));             /* nothing published */
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_false(vq_should_notify(&vq)); /* idx 1 */
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_false(vq_should_notify(&vq)); /* idx 2 */
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    uint64_t loads = vq.loads;
    assert_true(vq_should_notify(&vq)); /* idx 3: entry 2 written */
    assert_int_equal(vq.loads - loads, 1);
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_false(vq_should_notify(&vq));
    /* A batch that passes the event entry notifies once. */
    w16(used_event, 5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_true(vq_should_notify(&vq)); /* idx 4 -> 7 */
    assert_false(vq_should_notify(&vq));

    /* Wrap-around of the used idx. */
    layout(8, F_EVENT);
    cfg.used_idx = 65534;
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    w16(used_event, 65535);
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_false(vq_should_notify(&vq)); /* idx 65535 */
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_true(vq_should_notify(&vq)); /* idx 0 */
}

static void test_should_notify_flags(void **state)
{
    (void)state;
    enable(8, 0);
    w16(cfg.avail_addr + virtq_used_event_off(8), 100); /* ignored without EVENT_IDX */
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_true(vq_should_notify(&vq));
    assert_false(vq_should_notify(&vq)); /* nothing new */
    w16(cfg.avail_addr, VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_false(vq_should_notify(&vq));
    w16(cfg.avail_addr, 0);
    assert_int_equal(vq_push_used(&vq, 0, 0), 0);
    assert_true(vq_should_notify(&vq));
}

static void test_avail_notify_flags(void **state)
{
    (void)state;
    enable(8, 0);
    assert_int_equal(vq_avail_notify_disable(&vq), 0);
    assert_int_equal(r16(cfg.used_addr), VIRTQ_USED_F_NO_NOTIFY);
    assert_int_equal(vq_avail_notify_enable(&vq), 0); /* nothing there */
    assert_int_equal(r16(cfg.used_addr), 0);
    vq_set_avail_event(&vq, 7); /* no EVENT_IDX: no-op */
    assert_int_equal(r16(cfg.used_addr + virtq_avail_event_off(8)), 0);
    put_desc(0, DATA, 1, 0, 0);
    offer(0);
    assert_int_equal(vq_avail_notify_enable(&vq), 1); /* a buffer arrived meanwhile */
}

static void test_avail_notify_event_idx(void **state)
{
    (void)state;
    enable(8, F_EVENT);
    const uint64_t avail_event = cfg.used_addr + virtq_avail_event_off(8);
    put_desc(0, DATA, 1, 0, 0);
    offer(0);
    offer(0);
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_avail_notify_disable(&vq), 0);
    assert_int_equal(r16(cfg.used_addr), 0);          /* flags stay 0 with EVENT_IDX */
    assert_int_equal(vq_avail_notify_enable(&vq), 1); /* one still unconsumed */
    assert_int_equal(r16(avail_event), 2);            /* next new entry */
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_avail_notify_enable(&vq), 0);
    vq_set_avail_event(&vq, 0x1234);
    assert_int_equal(r16(avail_event), 0x1234);
    assert_int_equal(r16(cfg.used_addr), 0);
}

/* ---- device side, malformed rings ---- */

static void test_bad_head(void **state)
{
    (void)state;
    enable(8, 0);
    uint16_t h;
    offer(8);
    assert_broken(vq_pop_avail(&vq, &h), -EBADMSG);
    enable(8, 0);
    drv_avail = 0;
    offer(0xffff);
    assert_broken(vq_pop_avail(&vq, &h), -EBADMSG);
}

static void test_avail_idx_jump(void **state)
{
    (void)state;
    enable(8, 0);
    uint16_t h;
    w16(cfg.avail_addr + 2, 8); /* exactly a full ring: fine */
    for (int i = 0; i < 8; i++)
        assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    w16(cfg.avail_addr + 2, 8 + 9); /* nine more than the ring holds */
    assert_broken(vq_pop_avail(&vq, &h), -EPROTO);
    /* Going backwards is a jump of almost 2^16. */
    enable(8, 0);
    w16(cfg.avail_addr + 2, 2);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    w16(cfg.avail_addr + 2, 1);
    assert_broken(vq_pop_avail(&vq, &h), -EPROTO);
    /* Also when the re-check comes from vq_avail_notify_enable(). */
    enable(8, 0);
    w16(cfg.avail_addr + 2, 200);
    assert_broken(vq_avail_notify_enable(&vq), -EPROTO);
}

static void test_next_out_of_range(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 8);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
    enable(8, 0);
    drv_avail = 0;
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 0xffff);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_loops(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 0); /* itself */
    expect_malformed(0, VQ_ACCESS_ANY, -ELOOP);

    enable(8, 0);
    drv_avail = 0;
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, VIRTQ_DESC_F_NEXT, 2);
    put_desc(2, DATA, 4, VIRTQ_DESC_F_NEXT, 1); /* a loop not through the head */
    expect_malformed(0, VQ_ACCESS_ANY, -ELOOP);

    enable(8, 0);
    drv_avail = 0;
    put_desc(0, 0, 0, VIRTQ_DESC_F_NEXT, 0); /* zero-length loops too */
    expect_malformed(0, VQ_ACCESS_ANY, -ELOOP);
}

static void test_indirect_loop(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    desc_at(TABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
    put_desc(0, TABLE, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -ELOOP);
}

static void test_indirect_next_outside_table(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    desc_at(TABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 2); /* < queue size, but >= table size */
    put_desc(0, TABLE, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_chain_longer_than_queue(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    /* 5 direct buffers, then an indirect table of 4: 9 buffers in a queue of 8. */
    for (unsigned i = 0; i < 5; i++)
        put_desc(i, DATA, 4, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    put_desc(5, TABLE, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    for (unsigned i = 0; i < 4; i++)
        desc_at(TABLE, i, DATA, 4, i < 3 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    expect_malformed(0, VQ_ACCESS_ANY, -E2BIG);
}

static void test_indirect_table_too_long(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    put_desc(0, TABLE, 9 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -E2BIG);
}

static void test_indirect_bad_length(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 8, 24, 17, 0xfffffff0u + 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        enable(8, F_INDIR);
        drv_avail = 0;
        put_desc(0, TABLE, lens[i], VIRTQ_DESC_F_INDIRECT, 0);
        expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
    }
}

static void test_nested_indirect(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    desc_at(TABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
    desc_at(TABLE + 0x100, 0, DATA, 4, 0, 0);
    put_desc(0, TABLE, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_indirect_with_next(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    desc_at(TABLE, 0, DATA, 4, 0, 0);
    put_desc(0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, 0, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_indirect_not_negotiated(void **state)
{
    (void)state;
    enable(8, 0);
    desc_at(TABLE, 0, DATA, 4, 0, 0);
    put_desc(0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_buffer_outside_memory(void **state)
{
    (void)state;
    static const struct {
        uint64_t addr;
        uint32_t len;
    } bad[] = {
        {RAM_END - 4, 8},           /* straddles the end */
        {RAM_END, 1},               /* one past the end */
        {RAM_GPA - 1, 2},           /* straddles the start */
        {0, 16},                    /* below RAM */
        {RAM_GPA, 0xffffffffu},     /* too long */
        {UINT64_MAX - 3, 16},       /* wraps 2^64 onto low addresses */
        {UINT64_MAX, 1},            /* the last byte of the address space */
        {RAM_END - 1, 0xfffffff0u}, /* the end, long */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enable(8, 0);
        drv_avail = 0;
        put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
        put_desc(1, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE, 0);
        expect_malformed(0, VQ_ACCESS_ANY, -EFAULT);
    }
}

static void test_indirect_table_outside_memory(void **state)
{
    (void)state;
    static const uint64_t bad[] = {RAM_END - 16, RAM_GPA - 16, UINT64_MAX - 15, 0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enable(8, F_INDIR);
        drv_avail = 0;
        put_desc(0, bad[i], 32, VIRTQ_DESC_F_INDIRECT, 0);
        expect_malformed(0, VQ_ACCESS_ANY, -EFAULT);
    }
}

static void test_readable_after_writable(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, 0, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);

    enable(8, F_INDIR); /* inside an indirect table */
    drv_avail = 0;
    desc_at(TABLE, 0, DATA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, DATA, 4, 0, 0);
    put_desc(0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);

    enable(8, F_INDIR); /* a zero-length writable one counts too */
    drv_avail = 0;
    put_desc(0, 0, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, 0, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -EBADMSG);
}

static void test_access_violations(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, VIRTQ_DESC_F_WRITE, 0);
    expect_malformed(0, VQ_ACCESS_READABLE_ONLY, -EACCES);
    enable(8, 0);
    drv_avail = 0;
    expect_malformed(0, VQ_ACCESS_WRITABLE_ONLY, -EACCES);
}

static void test_chain_over_4gib(void **state)
{
    (void)state;
    /* 4097 descriptors of 1 MiB each (all the same RAM): one byte-count over 2^32. */
    cfg = (struct vq_config){.size = BIG_QUEUE, .desc_addr = RAM_GPA};
    cfg.avail_addr = RAM_GPA + virtq_desc_table_bytes(BIG_QUEUE);
    cfg.used_addr = (cfg.avail_addr + virtq_avail_bytes(BIG_QUEUE) + 3) & ~3ull;
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    for (unsigned i = 0; i < 4096; i++)
        put_desc(i, RAM_GPA, (uint32_t)RAM_SIZE, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
    put_desc(4096, RAM_GPA, 0, 0, 0);
    assert_int_equal(offer_walk(0, VQ_ACCESS_ANY), -ENOBUFS); /* exactly 2^32: allowed */
    assert_int_equal(chain.readable_bytes, VIRTQ_MAX_CHAIN_BYTES);
    assert_false(vq.broken);
    put_desc(4096, RAM_GPA, 1, 0, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -E2BIG);
}

static void test_broken_until_reenabled(void **state)
{
    (void)state;
    enable(8, 0);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
    expect_malformed(0, VQ_ACCESS_ANY, -ELOOP);
    assert_int_equal(vq_avail_notify_enable(&vq), -EIO);
    assert_int_equal(vq_avail_notify_disable(&vq), -EIO);
    assert_int_equal(vq_publish_used(&vq), -EIO);
    enable(8, 0);
    assert_false(vq.broken);
    assert_null(vq.broken_reason);
    put_desc(1, DATA, 4, 0, 0);
    drv_avail = 0;
    assert_int_equal(offer_walk(1, VQ_ACCESS_ANY), 0);
}

/* ---- no double fetch ---- */

static void test_each_field_loaded_once(void **state)
{
    (void)state;
    enable(8, F_INDIR);
    put_desc(0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    put_desc(1, DATA, 4, VIRTQ_DESC_F_NEXT, 2);
    put_desc(2, DATA, 4, VIRTQ_DESC_F_WRITE, 0);
    desc_at(TABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
    desc_at(TABLE, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 2);
    desc_at(TABLE, 2, DATA, 4, 0, 0);
    put_desc(5, TABLE, 48, VIRTQ_DESC_F_INDIRECT, 0);
    offer(0);
    offer(5);
    uint16_t h;
    uint64_t l = vq.loads;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq.loads - l, 2); /* avail idx, one ring entry */
    l = vq.loads;
    assert_int_equal(walk(h, VQ_ACCESS_ANY), 0);
    assert_int_equal(vq.loads - l, 3 * 4); /* 4 fields of each of 3 descriptors */
    l = vq.loads;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq.loads - l, 1); /* idx already known: only the entry */
    l = vq.loads;
    assert_int_equal(walk(h, VQ_ACCESS_ANY), 0);
    assert_int_equal(vq.loads - l, 4 * 4); /* the table descriptor and 3 entries */
    l = vq.loads;
    assert_int_equal(vq_pop_avail(&vq, &h), 0);
    assert_int_equal(vq.loads - l, 1); /* idx */
}

static void test_avail_idx_used_as_loaded(void **state)
{
    (void)state;
    enable(8, 0);
    offer(1);
    offer(2);
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    /* The driver now publishes a nonsense idx: the second pop still works from the
     * idx loaded before, and the new one is checked when it is loaded. */
    w16(cfg.avail_addr + 2, 0x4000);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(h, 2);
    assert_broken(vq_pop_avail(&vq, &h), -EPROTO);
}

static int race_stop;

/* Rewrites the length of descriptor 0 as fast as it can: valid, then far too long. */
static void *race_writer(void *arg)
{
    uint32_t *len = (uint32_t *)(void *)((uint8_t *)arg + 8);
    while (!__atomic_load_n(&race_stop, __ATOMIC_RELAXED)) {
        __atomic_store_n(len, 0x7fff0000u, __ATOMIC_RELAXED);
        __atomic_store_n(len, 64u, __ATOMIC_RELAXED);
    }
    return NULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_concurrent_rewrite(void **state)
{
    (void)state;
    /* A driver rewriting a descriptor while it is walked: the walker may accept the
     * valid form or refuse the invalid one, but never accept a length it did not
     * check (a double fetch would let 0x7fff0000 through). Runs until both outcomes
     * were seen often, so the writer really overlapped the walks, or 2 s passed. */
    enable(8, 0);
    put_desc(0, DATA, 64, 0, 0);
    pthread_t t;
    __atomic_store_n(&race_stop, 0, __ATOMIC_RELAXED);
    assert_int_equal(pthread_create(&t, NULL, race_writer, hp(cfg.desc_addr)), 0);
    unsigned long ok = 0;
    unsigned long refused = 0;
    const uint64_t deadline = now_ns() + 2000000000u;
    for (unsigned long i = 0; ok < 1000000 || refused < 1000000; i++) {
        if ((i & 1023) == 0 && now_ns() > deadline)
            break;
        int r = walk(0, VQ_ACCESS_ANY);
        if (r == 0) {
            ok++;
            assert_int_equal(chain.nr_readable, 1);
            assert_ptr_equal(iov[0].base, hp(DATA));
            assert_int_equal(iov[0].len, 64);
            continue;
        }
        assert_int_equal(r, -EFAULT);
        refused++;
        assert_int_equal(vq_enable(&vq, &mem, &cfg), 0);
    }
    __atomic_store_n(&race_stop, 1, __ATOMIC_RELAXED);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- driver side ---- */

static void driver_enable(uint16_t size, uint64_t features)
{
    layout(size, features);
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, slots, size), 0);
    assert_int_equal(vq_enable(&vq, &mem, &cfg), 0); /* the peer, on the same rings */
}

static void test_driver_enable_validation(void **state)
{
    (void)state;
    layout(8, 0);
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, slots, 7), -EINVAL);
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, NULL, 8), -EINVAL);
    struct vq_config c = cfg;
    c.last_avail_idx = 3;
    assert_int_equal(vq_driver_enable(&drv, &mem, &c, slots, 8), -EINVAL);
    c = cfg;
    c.used_addr = RAM_END;
    assert_int_equal(vq_driver_enable(&drv, &mem, &c, slots, 8), -EFAULT);
    /* It initialises the rings it owns. */
    memset(hp(cfg.avail_addr), 0xee, virtq_avail_bytes(8));
    memset(hp(cfg.used_addr), 0xee, virtq_used_bytes(8));
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, slots, 8), 0);
    assert_int_equal(r16(cfg.avail_addr + 2), 0);
    assert_int_equal(r16(cfg.used_addr + 2), 0);
    assert_int_equal(r16(cfg.avail_addr + virtq_used_event_off(8)), 0);
}

static void test_driver_loopback(void **state)
{
    (void)state;
    driver_enable(8, 0);
    /* Many rounds with chains of varying length: wraps the indices, reuses descriptors. */
    for (unsigned round = 0; round < 100; round++) {
        unsigned nr = 1 + round % 3;
        unsigned nw = round % 4;
        struct vq_seg segs[7];
        for (unsigned k = 0; k < nr + nw; k++)
            segs[k] = (struct vq_seg){.addr = DATA + 0x1000ull * k, .len = 100 + k};
        uint16_t head;
        assert_int_equal(vq_driver_add(&drv, segs, nr, nw, &head), 0);
        assert_true(vq_driver_should_kick(&drv));
        assert_false(vq_driver_should_kick(&drv)); /* nothing new since */

        uint16_t h;
        assert_int_equal(vq_pop_avail(&vq, &h), 1);
        assert_int_equal(h, head);
        assert_int_equal(walk(h, VQ_ACCESS_ANY), 0);
        assert_int_equal(chain.nr_readable, nr);
        assert_int_equal(chain.nr_writable, nw);
        for (unsigned k = 0; k < nr + nw; k++) {
            assert_ptr_equal(iov[k].base, hp(DATA + 0x1000ull * k));
            assert_int_equal(iov[k].len, 100 + k);
        }
        uint32_t wrote = (uint32_t)chain.writable_bytes;
        assert_int_equal(vq_push_used(&vq, h, wrote), 0);
        assert_true(vq_should_notify(&vq));

        uint16_t id;
        uint32_t len;
        assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
        assert_int_equal(id, head);
        assert_int_equal(len, wrote);
        assert_int_equal(vq_driver_get_used(&drv, &id, &len), 0);
        assert_int_equal(drv.nr_free, 8);
    }
    assert_false(drv.broken);
    assert_false(vq.broken);

    /* Fill the ring completely, drain it out of order. */
    uint16_t heads[8];
    struct vq_seg s = {.addr = DATA, .len = 8};
    for (int i = 0; i < 8; i++)
        assert_int_equal(vq_driver_add(&drv, &s, 0, 1, &heads[i]), 0);
    assert_int_equal(vq_driver_add(&drv, &s, 0, 1, &heads[0]), -ENOSPC);
    for (int i = 7; i >= 0; i--) {
        uint16_t h;
        assert_int_equal(vq_pop_avail(&vq, &h), 1);
        (void)h;
        assert_int_equal(vq_push_used(&vq, heads[i], 8), 0);
    }
    for (int i = 7; i >= 0; i--) {
        uint16_t id;
        uint32_t len;
        assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
        assert_int_equal(id, heads[i]);
    }
    assert_int_equal(drv.nr_free, 8);
    assert_int_equal(drv.in_flight, 0);
}

static void test_driver_kick_suppression(void **state)
{
    (void)state;
    struct vq_seg s = {.addr = DATA, .len = 8};
    uint16_t head;
    driver_enable(8, 0);
    assert_int_equal(vq_avail_notify_disable(&vq), 0); /* device: NO_NOTIFY */
    assert_int_equal(vq_driver_add(&drv, &s, 1, 0, &head), 0);
    assert_false(vq_driver_should_kick(&drv));

    driver_enable(8, F_EVENT);
    assert_int_equal(vq_avail_notify_enable(&vq), 0); /* avail_event = 0 */
    assert_int_equal(vq_driver_add(&drv, &s, 1, 0, &head), 0);
    assert_true(vq_driver_should_kick(&drv)); /* entry 0 published */
    assert_int_equal(vq_driver_add(&drv, &s, 1, 0, &head), 0);
    assert_false(vq_driver_should_kick(&drv)); /* device did not ask again */
    uint16_t h;
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_avail_notify_enable(&vq), 0); /* avail_event = 2 */
    assert_int_equal(vq_driver_add(&drv, &s, 1, 0, &head), 0);
    assert_true(vq_driver_should_kick(&drv));
}

static void test_driver_used_notify(void **state)
{
    (void)state;
    struct vq_seg s = {.addr = DATA, .len = 8};
    uint16_t head;
    uint16_t h;
    driver_enable(8, 0);
    assert_int_equal(vq_driver_used_notify_disable(&drv), 0);
    assert_int_equal(r16(cfg.avail_addr), VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert_int_equal(vq_driver_add(&drv, &s, 0, 1, &head), 0);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_push_used(&vq, h, 1), 0);
    assert_false(vq_should_notify(&vq));
    assert_int_equal(vq_driver_used_notify_enable(&drv), 1); /* one pending already */
    assert_int_equal(r16(cfg.avail_addr), 0);

    driver_enable(8, F_EVENT);
    assert_int_equal(vq_driver_add(&drv, &s, 0, 1, &head), 0);
    assert_int_equal(vq_driver_add(&drv, &s, 0, 1, &head), 0);
    w16(cfg.avail_addr + virtq_used_event_off(8), 0x8000); /* "not for a long time" */
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_push_used(&vq, h, 1), 0);
    assert_false(vq_should_notify(&vq));
    uint16_t id;
    uint32_t len;
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
    assert_int_equal(vq_driver_used_notify_enable(&drv), 0); /* used_event = 1 */
    assert_int_equal(r16(cfg.avail_addr + virtq_used_event_off(8)), 1);
    assert_int_equal(vq_pop_avail(&vq, &h), 1);
    assert_int_equal(vq_push_used(&vq, h, 1), 0);
    assert_true(vq_should_notify(&vq));
}

static void test_driver_add_errors(void **state)
{
    (void)state;
    driver_enable(8, 0);
    uint16_t head;
    struct vq_seg segs[9];
    for (int i = 0; i < 9; i++)
        segs[i] = (struct vq_seg){.addr = DATA, .len = 4};
    assert_int_equal(vq_driver_add(&drv, segs, 0, 0, &head), -EINVAL);
    assert_int_equal(vq_driver_add(&drv, NULL, 1, 0, &head), -EINVAL);
    assert_int_equal(vq_driver_add(&drv, segs, 5, 4, &head), -ENOSPC);
    assert_int_equal(vq_driver_add(&drv, segs, UINT32_MAX, 2, &head), -ENOSPC);
    segs[2].addr = RAM_END - 2;
    assert_int_equal(vq_driver_add(&drv, segs, 2, 1, &head), -EFAULT);
    segs[2].len = 0; /* zero-length: not translated */
    assert_int_equal(vq_driver_add(&drv, segs, 2, 1, &head), 0);
    assert_false(drv.broken);
    assert_int_equal(drv.nr_free, 5);
    assert_int_equal(r16(cfg.avail_addr + 2), 1); /* only the good chain was published */
    /* Each side's calls refuse the other side's queue. */
    uint16_t h;
    uint32_t len;
    assert_int_equal(vq_pop_avail(&drv, &h), -EINVAL);
    assert_int_equal(vq_push_used(&drv, 0, 0), -EINVAL);
    assert_int_equal(vq_driver_add(&vq, segs, 1, 0, &head), -EINVAL);
    assert_int_equal(vq_driver_get_used(&vq, &h, &len), -EINVAL);
    assert_false(vq_driver_should_kick(&vq));
    assert_false(vq_should_notify(&drv));
}

static void test_driver_writable_over_4gib(void **state)
{
    (void)state;
    cfg = (struct vq_config){.size = BIG_QUEUE, .desc_addr = RAM_GPA};
    cfg.avail_addr = RAM_GPA + virtq_desc_table_bytes(BIG_QUEUE);
    cfg.used_addr = (cfg.avail_addr + virtq_avail_bytes(BIG_QUEUE) + 3) & ~3ull;
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, slots, BIG_QUEUE), 0);
    static struct vq_seg segs[4096];
    for (int i = 0; i < 4096; i++)
        segs[i] = (struct vq_seg){.addr = RAM_GPA, .len = (uint32_t)RAM_SIZE};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv, segs, 0, 4096, &head), -E2BIG);
    assert_int_equal(vq_driver_add(&drv, segs, 1, 4095, &head), 0);
}

/* Makes two chains available; the test then plays a hostile device. */
static void driver_two_in_flight(uint16_t *h0, uint16_t *h1)
{
    driver_enable(8, 0);
    struct vq_seg segs[2] = {{.addr = DATA, .len = 16}, {.addr = DATA + 0x100, .len = 32}};
    assert_int_equal(vq_driver_add(&drv, segs, 1, 1, h0), 0); /* 32 writable */
    assert_int_equal(vq_driver_add(&drv, segs, 2, 0, h1), 0); /* nothing writable */
}

static void used_entry(unsigned slot, uint32_t id, uint32_t len)
{
    w32(cfg.used_addr + 4 + 8ull * slot, id);
    w32(cfg.used_addr + 8 + 8ull * slot, len);
}

static void assert_driver_broken(int r, int expected)
{
    uint16_t id;
    uint32_t len;
    struct vq_seg s = {.addr = DATA, .len = 1};
    assert_int_equal(r, expected);
    assert_true(drv.broken);
    assert_non_null(drv.broken_reason);
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), -EIO);
    assert_int_equal(vq_driver_add(&drv, &s, 1, 0, &id), -EIO);
    assert_false(vq_driver_should_kick(&drv));
}

static void test_driver_used_idx_ahead(void **state)
{
    (void)state;
    uint16_t h0;
    uint16_t h1;
    uint16_t id;
    uint32_t len;
    driver_two_in_flight(&h0, &h1);
    used_entry(0, h0, 0);
    used_entry(1, h1, 0);
    used_entry(2, h1, 0);
    w16(cfg.used_addr + 2, 3); /* three used, two in flight */
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EPROTO);

    driver_two_in_flight(&h0, &h1);
    w16(cfg.used_addr + 2, 0xffff); /* backwards */
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EPROTO);

    driver_two_in_flight(&h0, &h1);
    w16(cfg.used_addr + 2, 100);
    assert_driver_broken(vq_driver_used_notify_enable(&drv), -EPROTO);
}

static void test_driver_used_bad_id(void **state)
{
    (void)state;
    uint16_t h0;
    uint16_t h1;
    uint16_t id;
    uint32_t len;
    static const uint32_t bad[] = {8, 0xffffffffu, 0x10000, 5 /* free descriptor */};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        driver_two_in_flight(&h0, &h1);
        used_entry(0, bad[i], 0);
        w16(cfg.used_addr + 2, 1);
        assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EBADMSG);
    }
    /* The second descriptor of a chain in flight is not a head. */
    driver_two_in_flight(&h0, &h1);
    assert_int_equal(drv.slots[h0].count, 2);
    used_entry(0, drv.slots[h0].next, 0);
    w16(cfg.used_addr + 2, 1);
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EBADMSG);
}

static void test_driver_used_twice(void **state)
{
    (void)state;
    uint16_t h0;
    uint16_t h1;
    uint16_t id;
    uint32_t len;
    driver_two_in_flight(&h0, &h1);
    used_entry(0, h0, 4);
    used_entry(1, h0, 4);
    w16(cfg.used_addr + 2, 2);
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
    assert_int_equal(id, h0);
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EBADMSG);
}

static void test_driver_used_len_too_big(void **state)
{
    (void)state;
    uint16_t h0;
    uint16_t h1;
    uint16_t id;
    uint32_t len;
    driver_two_in_flight(&h0, &h1);
    used_entry(0, h0, 32); /* exactly what was offered */
    used_entry(1, h1, 1);  /* nothing writable was offered */
    w16(cfg.used_addr + 2, 2);
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
    assert_int_equal(len, 32);
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EMSGSIZE);

    driver_two_in_flight(&h0, &h1);
    used_entry(0, h0, 33);
    w16(cfg.used_addr + 2, 1);
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EMSGSIZE);
}

static void test_driver_loads_once(void **state)
{
    (void)state;
    uint16_t h0;
    uint16_t h1;
    uint16_t id;
    uint32_t len;
    driver_two_in_flight(&h0, &h1);
    used_entry(0, h1, 0);
    used_entry(1, h0, 7);
    w16(cfg.used_addr + 2, 2);
    uint64_t l = drv.loads;
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
    assert_int_equal(drv.loads - l, 3); /* used idx, id, len */
    /* Rewriting the already-seen idx changes nothing until it is loaded again. */
    w16(cfg.used_addr + 2, 0x7777);
    l = drv.loads;
    assert_int_equal(vq_driver_get_used(&drv, &id, &len), 1);
    assert_int_equal(drv.loads - l, 2);
    assert_int_equal(id, h0);
    assert_int_equal(len, 7);
    assert_driver_broken(vq_driver_get_used(&drv, &id, &len), -EPROTO);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, NULL)
    const struct CMUnitTest tests[] = {
        T(test_enable_validation),
        T(test_enable_sizes),
        T(test_enable_host_misaligned),
        T(test_pop_order_and_empty),
        T(test_direct_chain),
        T(test_indirect_chain),
        T(test_direct_then_indirect),
        T(test_unaligned_indirect_table),
        T(test_zero_length_descriptors),
        T(test_chain_of_queue_size),
        T(test_enobufs),
        T(test_enobufs_does_not_hide_malformation),
        T(test_index_wraparound),
        T(test_push_used_batch),
        T(test_need_event_math),
        T(test_should_notify_event_idx),
        T(test_should_notify_flags),
        T(test_avail_notify_flags),
        T(test_avail_notify_event_idx),
        T(test_bad_head),
        T(test_avail_idx_jump),
        T(test_next_out_of_range),
        T(test_loops),
        T(test_indirect_loop),
        T(test_indirect_next_outside_table),
        T(test_chain_longer_than_queue),
        T(test_indirect_table_too_long),
        T(test_indirect_bad_length),
        T(test_nested_indirect),
        T(test_indirect_with_next),
        T(test_indirect_not_negotiated),
        T(test_buffer_outside_memory),
        T(test_indirect_table_outside_memory),
        T(test_readable_after_writable),
        T(test_access_violations),
        T(test_chain_over_4gib),
        T(test_broken_until_reenabled),
        T(test_each_field_loaded_once),
        T(test_avail_idx_used_as_loaded),
        T(test_concurrent_rewrite),
        T(test_driver_enable_validation),
        T(test_driver_loopback),
        T(test_driver_kick_suppression),
        T(test_driver_used_notify),
        T(test_driver_add_errors),
        T(test_driver_writable_over_4gib),
        T(test_driver_used_idx_ahead),
        T(test_driver_used_bad_id),
        T(test_driver_used_twice),
        T(test_driver_used_len_too_big),
        T(test_driver_loads_once),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
