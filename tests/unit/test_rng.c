/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-rng's device (rng_device.c) behind the backends' common serving loop
 * (backend_prog.c): bulkhead's own vhost-user frontend drives it over a socketpair, a
 * memfd is guest RAM, the test is the guest's virtio-rng driver and a thread runs
 * backend_serve_connection(), the loop the program runs. Covers the features
 * offered, random bytes arriving (bounded by the request limit, not all zero,
 * different each time), a batch answered with one notification, and a chain with a
 * device-readable buffer refused without harm to the next requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/common/backend_prog.h"
#include "backends/rng/rng_device.h"
#include "core/guest_mem.h"
#include "core/log.h"
#include "fake_guest.h"
#include "vhost/frontend.h"
#include "vhost/vhost_user.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define RAM_SIZE  (1u << 20)
#define QSIZE     32
#define RING_GPA  0x1000ull
#define DATA_GPA  0x10000ull /* slot i: 16 KiB at + 16 KiB * i */
#define SLOT_SIZE 0x4000u
#define F(bit)    (1ull << (bit))

static struct rng_device rd;
static pthread_t loop;
static enum backend_end loop_end;
static int be_sock; /* the backend's end of the socketpair, for the loop thread */

static struct vhost_frontend fe;
static struct fg_ram gr;
static struct fg_ring rq; /* the request queue */

static void *loop_thread(void *arg)
{
    (void)arg;
    const struct backend_hooks hooks = {.opaque = &rd};
    loop_end = backend_serve_connection(be_sock, &rd.dev, &hooks, -1);
    return NULL;
}

/* Guest RAM, the backend's loop, a negotiated connection and the request queue. */
static void up(uint32_t max_request)
{
    assert_int_equal(rng_device_init(&rd, max_request), 0);
    fg_ram_up(&gr, "rng-test-ram", RAM_SIZE);

    int sv[2];
    fg_socketpair(sv);
    be_sock = sv[1];
    assert_int_equal(pthread_create(&loop, NULL, loop_thread, NULL), 0);
    fg_frontend_up(&fe, sv[0]);
    uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX);
    assert_int_equal(vhost_fe_offer(&fe, ~0ull), want);
    assert_int_equal(vhost_fe_set_features(&fe, want), 0);
    fg_set_mem_table(&fe, &gr);
    fg_ring_up(&rq, &fe, &gr, 0, QSIZE, F(VIRTIO_F_EVENT_IDX), RING_GPA, 0x400);
}

/* Disconnect: the loop ends as it does when a frontend leaves. */
static void down(void)
{
    vhost_fe_close(&fe);
    assert_int_equal(pthread_join(loop, NULL), 0);
    assert_int_equal(loop_end, BACKEND_END_CLOSED);
    fg_ring_close(&rq);
    fg_ram_down(&gr);
}

static uint8_t *slot(unsigned i)
{
    return gr.ram + DATA_GPA + (uint64_t)SLOT_SIZE * i;
}

/* A request of @p nw writable segments of @p seg bytes each, in slot @p s. */
static uint16_t post(unsigned s, unsigned nr, unsigned nw, uint32_t seg)
{
    struct vq_seg segs[8];
    for (unsigned i = 0; i < nr + nw; i++)
        segs[i] = (struct vq_seg){DATA_GPA + (uint64_t)SLOT_SIZE * s + (uint64_t)seg * i, seg};
    uint16_t head;
    assert_int_equal(vq_driver_add(&rq.vq, segs, nr, nw, &head), 0);
    return head;
}

static void kick(void)
{
    fg_kick(&rq);
}

/* Wait for the call eventfd; its count says how many notifications came. */
static uint64_t wait_call(int ms)
{
    struct pollfd p = {.fd = rq.call, .events = POLLIN};
    uint64_t v = 0;
    if (poll(&p, 1, ms) == 1)
        assert_int_equal(read(rq.call, &v, sizeof(v)), sizeof(v));
    return v;
}

static void reap(unsigned n, uint16_t *ids, uint32_t *lens)
{
    for (unsigned got = 0; got < n;) {
        int r = vq_driver_get_used(&rq.vq, &ids[got], &lens[got]);
        assert_true(r >= 0);
        if (r == 1) {
            got++;
            continue;
        }
        if (vq_driver_used_notify_enable(&rq.vq) == 1)
            continue;
        assert_true(wait_call(5000) > 0);
    }
}

static uint32_t one_request(unsigned s, unsigned nw, uint32_t seg)
{
    uint16_t head = post(s, 0, nw, seg), id;
    uint32_t len;
    kick();
    reap(1, &id, &len);
    assert_int_equal(id, head);
    return len;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

static void test_features(void **state)
{
    (void)state;
    up(RNG_DEFAULT_MAX_REQUEST);
    assert_int_equal(fe.backend_features, F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX));
    assert_int_equal(fe.max_queues, 1);
    /* No configuration space: the frontend is not offered F_CONFIG. */
    assert_false(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_CONFIG));
    down();
    assert_int_equal(rng_device_init(&rd, 0), -EINVAL);
    assert_int_equal(rng_device_init(&rd, RNG_MAX_MAX_REQUEST + 1), -EINVAL);
    assert_int_equal(rng_device_init(&rd, RNG_MAX_MAX_REQUEST), 0);
}

static void test_random_bytes(void **state)
{
    (void)state;
    up(RNG_DEFAULT_MAX_REQUEST);
    memset(slot(0), 0, 2 * SLOT_SIZE);
    /* Two segments of 4 KiB: both filled. */
    assert_int_equal(one_request(0, 2, 4096), 8192);
    assert_false(all_zero(slot(0), 4096));
    assert_false(all_zero(slot(0) + 4096, 4096));
    assert_memory_not_equal(slot(0), slot(0) + 4096, 4096);
    /* A second request differs from the first. */
    uint8_t first[8192];
    memcpy(first, slot(0), sizeof(first));
    assert_int_equal(one_request(0, 2, 4096), 8192);
    assert_memory_not_equal(first, slot(0), sizeof(first));
    down();
    assert_int_equal(rd.counters.requests, 2);
    assert_int_equal(rd.counters.bytes, 16384);
    assert_int_equal(rd.counters.refused, 0);
}

static void test_max_request_bounds(void **state)
{
    (void)state;
    up(1000);
    memset(slot(1), 0xa5, SLOT_SIZE);
    /* 3 x 512 writable bytes, 1000 given: the rest of the chain is untouched. */
    assert_int_equal(one_request(1, 3, 512), 1000);
    assert_false(all_zero(slot(1), 1000));
    for (unsigned i = 1000; i < 1536; i++)
        assert_int_equal(slot(1)[i], 0xa5);
    /* Smaller than the limit: all of it. */
    assert_int_equal(one_request(2, 1, 100), 100);
    down();
    assert_int_equal(rd.counters.bytes, 1100);
}

static void test_batch_one_notification(void **state)
{
    (void)state;
    up(RNG_DEFAULT_MAX_REQUEST);
    uint16_t heads[16], ids[16];
    uint32_t lens[16];
    for (unsigned i = 0; i < 16; i++)
        heads[i] = post(i, 0, 1, 64);
    kick();
    /* Every request of the kick is in the used ring behind a single notification. */
    uint64_t calls = wait_call(5000);
    assert_int_equal(calls, 1);
    for (unsigned i = 0; i < 16; i++) {
        assert_int_equal(vq_driver_get_used(&rq.vq, &ids[i], &lens[i]), 1);
        assert_int_equal(ids[i], heads[i]);
        assert_int_equal(lens[i], 64);
    }
    assert_int_equal(wait_call(50), 0);
    down();
}

static void test_readable_refused(void **state)
{
    (void)state;
    up(RNG_DEFAULT_MAX_REQUEST);
    memset(slot(3), 0x5a, SLOT_SIZE);
    /* One device-readable then one writable segment: refused, nothing written. */
    uint16_t head = post(3, 1, 1, 256), id;
    uint32_t len;
    kick();
    reap(1, &id, &len);
    assert_int_equal(id, head);
    assert_int_equal(len, 0);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(slot(3)[i], 0x5a);
    /* A readable-only chain too. */
    (void)post(3, 1, 0, 16);
    kick();
    reap(1, &id, &len);
    assert_int_equal(len, 0);
    /* The ring did not break and the device goes on. */
    struct pollfd p = {.fd = rq.err, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(one_request(4, 1, 256), 256);
    assert_false(all_zero(slot(4), 256));
    down();
    assert_int_equal(rd.counters.refused, 2);
    assert_int_equal(rd.counters.requests, 1);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_features),           T(test_random_bytes),
        T(test_max_request_bounds), T(test_batch_one_notification),
        T(test_readable_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
