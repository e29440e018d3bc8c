/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The virtio-net control queue the VMM serves (virtio/net_ctrl.h): the test plays the
 * driver on a queue in private memory and checks each answer, the active pair count,
 * and that malformed commands and rings are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/guest_mem.h"
#include "virtio/net_ctrl.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define RAM_GPA  0x10000ull
#define RAM_SIZE 0x20000ull
#define QSIZE    16u
#define DESC     RAM_GPA
#define AVAIL    (RAM_GPA + 0x1000)
#define USED     (RAM_GPA + 0x2000)
#define DATA     (RAM_GPA + 0x8000)
#define F_EVENT  (1ull << VIRTIO_F_EVENT_IDX)

static uint8_t *ram;
static struct guest_mem mem;
static struct vq drv;
static struct vq_driver_slot slots[QSIZE];
static struct net_ctrl ctrl;

static uint8_t *hp(uint64_t gpa)
{
    return ram + (gpa - RAM_GPA);
}

static int setup(void **state)
{
    (void)state;
    ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED)
        return -1;
    mem = (struct guest_mem){0};
    if (guest_mem_add_region(&mem, RAM_GPA, RAM_SIZE, ram) != 0)
        return -1;
    struct vq_config cfg = {
        .size = QSIZE, .desc_addr = DESC, .avail_addr = AVAIL, .used_addr = USED, .features = 0};
    if (vq_driver_enable(&drv, &mem, &cfg, slots, QSIZE) != 0)
        return -1;
    memset(&ctrl, 0, sizeof(ctrl));
    net_ctrl_reset(&ctrl, 4);
    return net_ctrl_start(&ctrl, &mem, &cfg);
}

static int teardown(void **state)
{
    (void)state;
    return munmap(ram, RAM_SIZE);
}

/* Post a command: its bytes split into @p nsplit readable segments, then a one-byte
 * writable ack (unless @p no_ack). Returns the head. */
static uint16_t post(const uint8_t *cmd, unsigned n, unsigned nsplit, bool no_ack, uint64_t at)
{
    struct vq_seg segs[8];
    unsigned ns = 0, off = 0;
    memcpy(hp(at), cmd, n);
    for (unsigned i = 0; i < nsplit; i++) {
        unsigned part = i + 1 == nsplit ? n - off : n / nsplit;
        segs[ns++] = (struct vq_seg){.addr = at + off, .len = part};
        off += part;
    }
    hp(at + 0x100)[0] = 0xee; /* the ack byte, so a missing write shows */
    unsigned nw = 0;
    if (!no_ack) {
        segs[ns + nw++] = (struct vq_seg){.addr = at + 0x100, .len = 1};
    }
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv, segs, ns, nw, &head), 0);
    return head;
}

static void expect_used(uint16_t head, uint32_t len)
{
    uint16_t id;
    uint32_t got;
    assert_int_equal(vq_driver_get_used(&drv, &id, &got), 1);
    assert_int_equal(id, head);
    assert_int_equal(got, len);
}

static const uint8_t set3[] = {4, 0, 3, 0}; /* VIRTIO_NET_CTRL_MQ, VQ_PAIRS_SET, 3 */

static void test_pairs_set(void **state)
{
    (void)state;
    uint16_t h = post(set3, sizeof(set3), 1, false, DATA);
    struct net_ctrl_result res;
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    assert_true(res.pairs_changed);
    assert_true(res.notify);
    assert_int_equal(ctrl.pairs, 3);
    expect_used(h, 1);
    assert_int_equal(hp(DATA + 0x100)[0], 0); /* VIRTIO_NET_OK */
    /* The same count again: answered, nothing changes. */
    h = post(set3, sizeof(set3), 2, false, DATA);
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    assert_false(res.pairs_changed);
    expect_used(h, 1);
    assert_int_equal(hp(DATA + 0x100)[0], 0);
    assert_int_equal(ctrl.commands, 2);
    assert_int_equal(ctrl.refused, 0);
}

static void test_refused(void **state)
{
    (void)state;
    static const uint8_t zero[] = {4, 0, 0, 0};
    static const uint8_t five[] = {4, 0, 5, 0};       /* more than max_virtqueue_pairs */
    static const uint8_t rx_promisc[] = {0, 0, 1};    /* VIRTIO_NET_CTRL_RX: not offered */
    static const uint8_t short_mq[] = {4, 0, 2};      /* the le16 cut short */
    static const uint8_t long_mq[] = {4, 0, 2, 0, 0}; /* one byte too many */
    const struct {
        const uint8_t *cmd;
        unsigned n;
    } bad[] = {{zero, 4}, {five, 4}, {rx_promisc, 3}, {short_mq, 3}, {long_mq, 5}};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint16_t h = post(bad[i].cmd, bad[i].n, 1, false, DATA + i * 0x200);
        struct net_ctrl_result res;
        assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
        assert_false(res.pairs_changed);
        expect_used(h, 1);
        assert_int_equal(hp(DATA + i * 0x200 + 0x100)[0], 1); /* VIRTIO_NET_ERR */
    }
    assert_int_equal(ctrl.pairs, 1);
    assert_int_equal(ctrl.refused, 5);
}

static void test_shapes(void **state)
{
    (void)state;
    struct net_ctrl_result res;
    /* No writable byte: nothing to answer into, completed empty. */
    uint16_t h = post(set3, sizeof(set3), 1, true, DATA);
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    expect_used(h, 0);
    assert_int_equal(ctrl.pairs, 1);
    /* Longer than NET_CTRL_MAX_CMD: refused, never copied. */
    uint8_t big[NET_CTRL_MAX_CMD + 1] = {4, 0, 2, 0};
    h = post(big, sizeof(big), 1, false, DATA);
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    expect_used(h, 1);
    assert_int_equal(hp(DATA + 0x100)[0], 1);
    assert_int_equal(ctrl.pairs, 1);
    /* Split into header and data segments: accepted. */
    h = post(set3, sizeof(set3), 3, false, DATA);
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    expect_used(h, 1);
    assert_int_equal(ctrl.pairs, 3);
}

static void test_batch_and_reset(void **state)
{
    (void)state;
    static const uint8_t set2[] = {4, 0, 2, 0};
    uint16_t a = post(set3, sizeof(set3), 1, false, DATA);
    uint16_t b = post(set2, sizeof(set2), 1, false, DATA + 0x200);
    struct net_ctrl_result res;
    assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
    assert_true(res.pairs_changed);
    assert_int_equal(ctrl.notifies, 1); /* one notification for both */
    expect_used(a, 1);
    expect_used(b, 1);
    assert_int_equal(ctrl.pairs, 2);
    net_ctrl_reset(&ctrl, 4);
    assert_int_equal(ctrl.pairs, 1);
    assert_int_equal(net_ctrl_process(&ctrl, &res), -ENODEV);
}

static void test_malformed_ring(void **state)
{
    (void)state;
    uint16_t h = post(set3, sizeof(set3), 1, false, DATA);
    /* The driver rewrites the descriptor to point outside guest memory. */
    uint8_t *d = hp(DESC) + 16u * h;
    uint64_t outside = RAM_GPA + RAM_SIZE + 0x1000;
    memcpy(d, &outside, sizeof(outside));
    struct net_ctrl_result res;
    assert_true(net_ctrl_process(&ctrl, &res) < 0);
    assert_true(ctrl.vq.broken);
    assert_int_equal(ctrl.pairs, 1);
}

static void test_event_idx(void **state)
{
    (void)state;
    /* With EVENT_IDX the device must move avail_event, or the driver never kicks again. */
    struct vq_config cfg = {.size = QSIZE,
                            .desc_addr = DESC,
                            .avail_addr = AVAIL,
                            .used_addr = USED,
                            .features = F_EVENT};
    assert_int_equal(vq_driver_enable(&drv, &mem, &cfg, slots, QSIZE), 0);
    assert_int_equal(net_ctrl_start(&ctrl, &mem, &cfg), 0);
    for (unsigned i = 0; i < 3; i++) {
        uint16_t h = post(set3, sizeof(set3), 1, false, DATA);
        assert_true(vq_driver_should_kick(&drv));
        struct net_ctrl_result res;
        assert_int_equal(net_ctrl_process(&ctrl, &res), 0);
        expect_used(h, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pairs_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
