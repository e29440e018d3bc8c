/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Isolated mode: a test guest driver (driver side of virtqueue.c on "guest RAM")
 * talks to an iso_queue, which drives a test backend (device side on the "bounce
 * region"). Both memories are separate mappings between PROT_NONE guards; the bounce
 * view ends exactly at the queue's area, so any access outside either faults.
 *
 * Guest RAM starts filled with a canary pattern and the test keeps an image of what
 * every byte must hold: what the test itself wrote, plus, after each completion, what
 * the request's writable buffers must hold. check_ram() compares every byte outside
 * the guest's rings, so any write by the queue outside a completed chain's first
 * @c len writable bytes fails the test.
 *
 * The test backend echoes: writable byte j = readable byte j ^ 0xA5, for
 * j < min(readable, writable), and reports that many bytes. Readable content is a
 * pattern of a per-request seed, so the expected output is known without keeping a
 * copy of what was submitted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/blk/virtio_blk.h"
#include "core/guest_mem.h"
#include "virtio/isolated.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GRAM_GPA    0x100000ull
#define GRAM_SIZE   0x100000ull
#define G_DESC      (GRAM_GPA)
#define G_AVAIL     (GRAM_GPA + 0x1000)
#define G_USED      (GRAM_GPA + 0x2000)
#define G_TABLE     (GRAM_GPA + 0x4000) /* indirect tables, up to G_TABLE_END */
#define G_TABLE_END (GRAM_GPA + 0x8000)
#define G_DATA      (GRAM_GPA + 0x10000)
#define G_DATA_END  (GRAM_GPA + GRAM_SIZE)
#define BNC_GPA     0x40000000ull
#define BNC_MAX     0x400000ull
#define GUARD       0x10000ull
#define MAX_GQ      256
#define MAX_SQ      256
#define MAX_SEGS    16
#define N_IOV       64
#define F_INDIR     (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT     (1ull << VIRTIO_F_EVENT_IDX)
#define ECHO_XOR    0xA5u
#define AREA_SIZE   0x4000ull /* guest buffers of one request in submit_area() */
#define NR_AREAS    32

static uint8_t *gram;      /* guest RAM, guarded */
static uint8_t *bnc;       /* bounce region, guarded; RW up to lay.end */
static uint8_t *expect;    /* what guest RAM must hold */
static uint8_t *ring_mask; /* 1: a guest ring byte, not compared */
static size_t bnc_rw;      /* bytes of bnc currently read-write */
static struct guest_mem gmem;
static struct guest_mem bmem;
static struct vq gdrv; /* the test guest's driver */
static struct vq_driver_slot gslots[MAX_GQ];
static struct vq_config gcfg;
static struct vq bdev; /* the test backend */
static struct iso_layout lay;
static struct iso_queue q;
static void *storage;
static size_t storage_bytes;
static uint64_t gnext;      /* guest buffer bump allocator */
static unsigned fail_calls; /* calls of the fail hook */
static uint64_t rng = 88172645463325252ull;

/* ---- small helpers ---- */

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint8_t *gp(uint64_t gpa)
{
    assert_true(gpa >= GRAM_GPA && gpa < GRAM_GPA + GRAM_SIZE);
    return gram + (gpa - GRAM_GPA);
}

static uint8_t *bp(uint64_t addr)
{
    assert_true(addr >= BNC_GPA && addr < BNC_GPA + bnc_rw);
    return bnc + (addr - BNC_GPA);
}

static void w16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void w32(uint8_t *p, uint32_t v)
{
    w16(p, (uint16_t)v);
    w16(p + 2, (uint16_t)(v >> 16));
}

static void w64(uint8_t *p, uint64_t v)
{
    w32(p, (uint32_t)v);
    w32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t r16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t r32(const uint8_t *p)
{
    return r16(p) | (uint32_t)r16(p + 2) << 16;
}

static uint8_t canary(size_t i)
{
    return (uint8_t)(i * 151u + (i >> 11) + 0x3b);
}

static uint8_t pat(uint32_t seed, uint64_t j)
{
    return (uint8_t)(seed * 131u + j * 7u + (j >> 9) + 1u);
}

/* Writes into guest RAM as the guest does, keeping the image in step. */
static void gput_byte(uint64_t gpa, uint8_t v)
{
    *gp(gpa) = v;
    expect[gpa - GRAM_GPA] = v;
}

static void mark_ring(uint64_t gpa, uint64_t len)
{
    memset(ring_mask + (gpa - GRAM_GPA), 1, len);
}

/* Every guest byte that is not a ring byte holds what the test expects. */
static void check_ram(void)
{
    for (size_t i = 0; i < GRAM_SIZE; i++) {
        if (!ring_mask[i] && gram[i] != expect[i])
            fail_msg("guest byte at 0x%llx changed: 0x%02x, expected 0x%02x",
                     (unsigned long long)(GRAM_GPA + i), gram[i], expect[i]);
    }
}

static uint64_t gbuf(uint32_t len, uint32_t align)
{
    gnext = (gnext + align - 1) & ~(uint64_t)(align - 1);
    if (gnext + len > G_DATA_END)
        gnext = G_DATA;
    uint64_t a = gnext;
    gnext += len;
    return a;
}

/* ---- the fail hook: virtio-blk's IOERR in the last writable byte ---- */

static uint32_t blk_fail(void *opaque, const struct vq_iovec *iov, unsigned nr, uint64_t bytes)
{
    assert_ptr_equal(opaque, &fail_calls);
    fail_calls++;
    uint64_t sum = 0;
    for (unsigned i = 0; i < nr; i++)
        sum += iov[i].len;
    assert_int_equal(sum, bytes);
    if (nr == 0)
        return 0;
    ((uint8_t *)iov[nr - 1].base)[iov[nr - 1].len - 1] = VIRTIO_BLK_S_IOERR;
    return 1;
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    uint8_t *m =
        mmap(NULL, GUARD + GRAM_SIZE + GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *b = mmap(NULL, GUARD + BNC_MAX + GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || b == MAP_FAILED)
        return -1;
    gram = m + GUARD;
    bnc = b + GUARD;
    if (mprotect(gram, GRAM_SIZE, PROT_READ | PROT_WRITE) != 0)
        return -1;
    expect = malloc(GRAM_SIZE);
    ring_mask = malloc(GRAM_SIZE);
    storage_bytes = iso_storage_bytes(MAX_GQ, MAX_SQ);
    storage = malloc(storage_bytes);
    return expect == NULL || ring_mask == NULL || storage == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    munmap(gram - GUARD, GUARD + GRAM_SIZE + GUARD);
    munmap(bnc - GUARD, GUARD + BNC_MAX + GUARD);
    free(expect);
    free(ring_mask);
    free(storage);
    return 0;
}

/* Makes exactly [0, len) of the bounce reservation accessible. */
static void bounce_map(size_t len)
{
    assert_true(len <= BNC_MAX);
    assert_int_equal(mprotect(bnc, BNC_MAX, PROT_NONE), 0);
    if (len > 0)
        assert_int_equal(mprotect(bnc, len, PROT_READ | PROT_WRITE), 0);
    bnc_rw = len;
    bmem = (struct guest_mem){0};
    if (len > 0)
        assert_int_equal(guest_mem_add_region(&bmem, BNC_GPA, len, bnc), 0);
}

/* ---- the test guest's requests ---- */

enum want { WANT_ECHO, WANT_FAIL, WANT_ANY };

struct greq {
    bool live;
    enum want want;
    int area; /* submit_area()'s area, or -1 */
    uint32_t seed;
    unsigned nr, nw;
    uint64_t gpa[MAX_SEGS];
    uint32_t len[MAX_SEGS];
    uint64_t rbytes, wbytes;
};

static struct greq reqs[MAX_GQ]; /* by guest head */
static bool area_busy[NR_AREAS];
static unsigned completed; /* chains reaped by the test guest */
static uint32_t seed_next = 1;

/* Fills the readable buffers of @p r with the pattern of @p seed. */
static void fill_readable(const struct greq *r, uint32_t seed)
{
    uint64_t j = 0;
    for (unsigned i = 0; i < r->nr; i++)
        for (uint32_t k = 0; k < r->len[i]; k++)
            gput_byte(r->gpa[i] + k, pat(seed, j++));
}

/* The guest offers a chain of buffers of the given lengths (readable ones first). */
static uint16_t submit_at(unsigned nr, unsigned nw, const uint32_t *lens, const uint64_t *gpas)
{
    struct vq_seg segs[MAX_SEGS];
    struct greq r = {
        .live = true, .want = WANT_ECHO, .area = -1, .seed = seed_next++, .nr = nr, .nw = nw};
    assert_true(nr + nw <= MAX_SEGS);
    for (unsigned i = 0; i < nr + nw; i++) {
        r.len[i] = lens[i];
        r.gpa[i] = gpas != NULL ? gpas[i] : gbuf(lens[i], 64);
        segs[i] = (struct vq_seg){.addr = r.gpa[i], .len = lens[i]};
        if (i < nr)
            r.rbytes += lens[i];
        else
            r.wbytes += lens[i];
    }
    fill_readable(&r, r.seed);
    uint16_t head;
    assert_int_equal(vq_driver_add(&gdrv, segs, nr, nw, &head), 0);
    assert_false(reqs[head].live);
    reqs[head] = r;
    return head;
}

static uint16_t submit(unsigned nr, unsigned nw, const uint32_t *lens)
{
    return submit_at(nr, nw, lens, NULL);
}

/* As submit(), with the buffers in an area no live request uses. */
static uint16_t submit_area(unsigned nr, unsigned nw, const uint32_t *lens)
{
    int a = 0;
    while (a < NR_AREAS && area_busy[a])
        a++;
    assert_true(a < NR_AREAS);
    uint64_t at = G_DATA + AREA_SIZE * (unsigned)a;
    uint64_t gpas[MAX_SEGS];
    for (unsigned i = 0; i < nr + nw; i++) {
        at = (at + 63) & ~63ull;
        gpas[i] = at;
        at += lens[i];
    }
    assert_true(at <= G_DATA + AREA_SIZE * (unsigned)(a + 1));
    uint16_t h = submit_at(nr, nw, lens, gpas);
    reqs[h].area = a;
    area_busy[a] = true;
    return h;
}

/* Sets what the test expects in the first @p len writable bytes of @p r. */
static void expect_written(const struct greq *r, uint32_t len, bool echo)
{
    uint64_t j = 0;
    for (unsigned i = r->nr; i < r->nr + r->nw && j < len; i++)
        for (uint32_t k = 0; k < r->len[i] && j < len; k++, j++) {
            size_t off = r->gpa[i] + k - GRAM_GPA;
            expect[off] = echo ? (uint8_t)(pat(r->seed, j) ^ ECHO_XOR) : gram[off];
        }
}

static void verify(struct greq *r, uint32_t len)
{
    switch (r->want) {
    case WANT_ECHO:
        assert_int_equal(len, r->rbytes < r->wbytes ? r->rbytes : r->wbytes);
        expect_written(r, len, true);
        break;
    case WANT_FAIL:
        assert_int_equal(len, r->wbytes > 0 ? 1 : 0);
        if (r->wbytes > 0) {
            unsigned last = r->nr + r->nw - 1;
            expect[r->gpa[last] + r->len[last] - 1 - GRAM_GPA] = VIRTIO_BLK_S_IOERR;
        }
        break;
    case WANT_ANY:
        /* Any bytes, but only in the first len writable bytes. */
        assert_true(len <= r->wbytes);
        expect_written(r, len, false);
        break;
    }
    if (r->area >= 0)
        area_busy[r->area] = false;
    r->live = false;
    completed++;
}

/* The guest takes every used element; each is checked against its request. */
static unsigned reap(void)
{
    unsigned n = 0;
    uint16_t id;
    uint32_t len;
    int r;
    while ((r = vq_driver_get_used(&gdrv, &id, &len)) == 1) {
        assert_true(reqs[id].live);
        verify(&reqs[id], len);
        n++;
    }
    assert_int_equal(r, 0);
    check_ram();
    return n;
}

static void want_all(enum want w)
{
    for (unsigned i = 0; i < MAX_GQ; i++)
        if (reqs[i].live)
            reqs[i].want = w;
}

static unsigned live_reqs(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < MAX_GQ; i++)
        n += reqs[i].live;
    return n;
}

/* ---- the test backend ---- */

struct bchain {
    uint16_t head;
    struct vq_iovec iov[N_IOV];
    struct vq_chain ch;
};

static struct bchain bq[MAX_SQ]; /* popped, not completed, oldest first */
static unsigned bq_n;
static bool check_structure; /* compare each popped chain with the next submitted one */
static uint16_t sub_order[4096];
static unsigned sub_first, sub_count;

static void expect_posted(uint16_t head)
{
    sub_order[(sub_first + sub_count++) % 4096] = head;
}

static bool ranges_overlap(const struct vq_iovec *a, const struct vq_iovec *b)
{
    uintptr_t a0 = (uintptr_t)a->base;
    uintptr_t b0 = (uintptr_t)b->base;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

static void backend_attach(uint64_t features)
{
    struct vq_config c = {.size = lay.queue_size,
                          .desc_addr = lay.desc_addr,
                          .avail_addr = lay.avail_addr,
                          .used_addr = lay.used_addr,
                          .features = features};
    assert_int_equal(vq_enable(&bdev, &bmem, &c), 0);
    bq_n = 0;
}

/* Checks one popped shadow chain: inside the data area, aligned, apart from the others. */
static void check_bchain(const struct bchain *b)
{
    unsigned k = b->ch.nr_readable + b->ch.nr_writable;
    const uint8_t *data = bp(lay.data_addr);
    for (unsigned i = 0; i < k; i++) {
        const struct vq_iovec *v = &b->iov[i];
        assert_true((const uint8_t *)v->base >= data);
        assert_true((const uint8_t *)v->base + v->len <= data + lay.data_size);
        uintptr_t a = (uintptr_t)v->base;
        if (v->len % 4096 == 0)
            assert_int_equal(a % 4096, 0);
        else if (v->len % 512 == 0)
            assert_int_equal(a % 512, 0);
        else
            assert_int_equal(a % 64, 0);
        for (unsigned j = 0; j < i; j++)
            assert_false(ranges_overlap(v, &b->iov[j]));
        for (unsigned c = 0; c < bq_n; c++) {
            const struct bchain *o = &bq[c];
            if (o == b)
                continue;
            for (unsigned j = 0; j < o->ch.nr_readable + o->ch.nr_writable; j++)
                assert_false(ranges_overlap(v, &o->iov[j]));
        }
    }
    if (!check_structure)
        return;
    assert_true(sub_count > 0);
    const struct greq *r = &reqs[sub_order[sub_first]];
    sub_first = (sub_first + 1) % 4096;
    sub_count--;
    unsigned nz_r = 0;
    unsigned nz_w = 0;
    for (unsigned i = 0; i < r->nr + r->nw; i++) {
        if (r->len[i] == 0)
            continue;
        unsigned idx = nz_r + nz_w;
        assert_true(idx < k);
        assert_int_equal(b->iov[idx].len, r->len[i]);
        if (i < r->nr)
            nz_r++;
        else
            nz_w++;
    }
    assert_int_equal(b->ch.nr_readable, nz_r);
    assert_int_equal(b->ch.nr_writable, nz_w);
}

/* The backend takes every available shadow chain (without processing it yet). */
static unsigned backend_pop(void)
{
    unsigned n = 0;
    uint16_t h;
    int r;
    while ((r = vq_pop_avail(&bdev, &h)) == 1) {
        assert_true(bq_n < MAX_SQ);
        struct bchain *b = &bq[bq_n++];
        b->head = h;
        assert_int_equal(vq_walk_chain(&bdev, h, VQ_ACCESS_ANY, b->iov, N_IOV, &b->ch), 0);
        check_bchain(b);
        n++;
    }
    assert_int_equal(r, 0);
    return n;
}

/* Processes popped chain @p i now (echo) and returns it; keeps the others in order. */
static void backend_complete(unsigned i)
{
    assert_true(i < bq_n);
    struct bchain *b = &bq[i];
    uint64_t n =
        b->ch.readable_bytes < b->ch.writable_bytes ? b->ch.readable_bytes : b->ch.writable_bytes;
    unsigned ri = 0;
    unsigned wi = b->ch.nr_readable;
    size_t ro = 0;
    size_t wo = 0;
    for (uint64_t j = 0; j < n; j++) {
        while (ro == b->iov[ri].len) {
            ri++;
            ro = 0;
        }
        while (wo == b->iov[wi].len) {
            wi++;
            wo = 0;
        }
        ((uint8_t *)b->iov[wi].base)[wo++] =
            (uint8_t)(((const uint8_t *)b->iov[ri].base)[ro++] ^ ECHO_XOR);
    }
    assert_int_equal(vq_push_used(&bdev, b->head, (uint32_t)n), 0);
    memmove(&bq[i], &bq[i + 1], (bq_n - i - 1) * sizeof(bq[0]));
    bq_n--;
}

static void backend_complete_all(void)
{
    while (bq_n > 0)
        backend_complete(0);
}

/* ---- iso_queue set-up ---- */

static void setup_queues(uint16_t gsize, uint64_t gfeat, uint16_t ssize, uint64_t sfeat,
                         uint64_t data_size)
{
    gcfg = (struct vq_config){.size = gsize,
                              .desc_addr = G_DESC,
                              .avail_addr = G_AVAIL,
                              .used_addr = G_USED,
                              .features = gfeat};
    assert_int_equal(vq_driver_enable(&gdrv, &gmem, &gcfg, gslots, gsize), 0);
    assert_int_equal(iso_compute_layout(BNC_GPA, ssize, data_size, &lay), 0);
    bounce_map(lay.end - BNC_GPA);
    struct iso_params p = {.bounce = &bmem,
                           .layout = lay,
                           .guest_max_size = MAX_GQ,
                           .fail = blk_fail,
                           .fail_opaque = &fail_calls,
                           .storage = storage,
                           .storage_bytes = storage_bytes};
    memset(storage, 0x6b, storage_bytes); /* init must not depend on prior contents */
    assert_int_equal(iso_queue_init(&q, &p), 0);
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), 0);
    assert_int_equal(iso_reset_shadow(&q, sfeat), 0);
    backend_attach(sfeat);
}

static int test_setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < GRAM_SIZE; i++)
        gram[i] = canary(i);
    memcpy(expect, gram, GRAM_SIZE);
    memset(ring_mask, 0, GRAM_SIZE);
    mark_ring(G_DESC, 16ull * MAX_GQ);
    mark_ring(G_AVAIL, virtq_avail_bytes(MAX_GQ));
    mark_ring(G_USED, virtq_used_bytes(MAX_GQ));
    mark_ring(G_TABLE, G_TABLE_END - G_TABLE);
    gmem = (struct guest_mem){0};
    assert_int_equal(guest_mem_add_region(&gmem, GRAM_GPA, GRAM_SIZE, gram), 0);
    memset(reqs, 0, sizeof(reqs));
    memset(area_busy, 0, sizeof(area_busy));
    gnext = G_DATA;
    fail_calls = 0;
    completed = 0;
    bq_n = 0;
    check_structure = false;
    sub_first = sub_count = 0;
    rng = 88172645463325252ull;
    return 0;
}

static unsigned kick(void)
{
    unsigned f = 0xdead;
    assert_int_equal(iso_guest_kick(&q, &f), 0);
    assert_true((f & ~(ISO_KICK_BACKEND | ISO_NOTIFY_GUEST)) == 0);
    return f;
}

static unsigned call(void)
{
    unsigned f = 0xdead;
    assert_int_equal(iso_backend_call(&q, &f), 0);
    assert_true((f & ~(ISO_KICK_BACKEND | ISO_NOTIFY_GUEST)) == 0);
    return f;
}

/* Runs everything to completion: backend serves in order, guest reaps. */
static void run_all(void)
{
    for (unsigned guard = 0; guard < 10000 && live_reqs() > 0; guard++) {
        kick();
        backend_pop();
        backend_complete_all();
        call();
        reap();
    }
    assert_int_equal(live_reqs(), 0);
    assert_int_equal(iso_inflight(&q), 0);
}

/* ---- layout and set-up ---- */

static void test_layout(void **state)
{
    (void)state;
    struct iso_layout l;
    assert_int_equal(iso_compute_layout(0x10000, 256, 0x20000, &l), 0);
    assert_int_equal(l.queue_size, 256);
    assert_int_equal(l.desc_addr, 0x10000);
    assert_int_equal(l.avail_addr % ISO_RING_ALIGN, 0);
    assert_int_equal(l.used_addr % ISO_RING_ALIGN, 0);
    assert_int_equal(l.data_addr % ISO_DATA_ALIGN, 0);
    assert_true(l.avail_addr >= l.desc_addr + virtq_desc_table_bytes(256));
    assert_true(l.used_addr >= l.avail_addr + virtq_avail_bytes(256));
    assert_true(l.data_addr >= l.used_addr + virtq_used_bytes(256));
    assert_int_equal(l.end, l.data_addr + 0x20000);
    assert_int_equal(l.end % ISO_DATA_ALIGN, 0);
    /* A second queue's area starts where the first ends. */
    struct iso_layout l2;
    assert_int_equal(iso_compute_layout(l.end, 1, 0x1000, &l2), 0);
    assert_int_equal(l2.desc_addr, l.end);

    assert_int_equal(iso_compute_layout(0x10001, 256, 0x1000, &l), -EINVAL);
    assert_int_equal(iso_compute_layout(0, 0, 0x1000, &l), -EINVAL);
    assert_int_equal(iso_compute_layout(0, 96, 0x1000, &l), -EINVAL);
    assert_int_equal(iso_compute_layout(0, 256, 0, &l), -EINVAL);
    assert_int_equal(iso_compute_layout(0, 256, 0x1001, &l), -EINVAL);
    assert_int_equal(iso_compute_layout(0, 256, 0x1000, NULL), -EINVAL);
    assert_int_equal(iso_compute_layout(UINT64_MAX - 0xfff, 256, 0x1000, &l), -EOVERFLOW);
    assert_int_equal(iso_compute_layout(0x1000, 256, UINT64_MAX & ~0xfffull, &l), -EOVERFLOW);

    assert_int_equal(iso_storage_bytes(0, 8), 0);
    assert_int_equal(iso_storage_bytes(8, 0), 0);
    assert_int_equal(iso_storage_bytes(8, 12), 0);
    assert_true(iso_storage_bytes(8, 8) > 0);
    assert_true(iso_storage_bytes(8, 16) > iso_storage_bytes(8, 8));
    assert_true(iso_storage_bytes(16, 8) > iso_storage_bytes(8, 8));
}

static void test_init_validation(void **state)
{
    (void)state;
    assert_int_equal(iso_compute_layout(BNC_GPA, 16, 0x4000, &lay), 0);
    bounce_map(lay.end - BNC_GPA);
    struct iso_params good = {.bounce = &bmem,
                              .layout = lay,
                              .guest_max_size = 16,
                              .fail = blk_fail,
                              .fail_opaque = &fail_calls,
                              .storage = storage,
                              .storage_bytes = iso_storage_bytes(16, 16)};
    struct iso_params p = good;
    assert_int_equal(iso_queue_init(&q, &p), 0);

    p.fail = NULL;
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.storage_bytes--;
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.storage = (uint8_t *)storage + 1;
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.guest_max_size = 0;
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.layout.data_addr -= 0x1000; /* data over the rings */
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.layout.data_size += 0x1000; /* end no longer matches */
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    p = good;
    p.layout.used_addr = p.layout.avail_addr;
    assert_int_equal(iso_queue_init(&q, &p), -EINVAL);
    /* The area must lie in the bounce view: one byte short. */
    bounce_map(lay.end - BNC_GPA - 0x1000);
    p = good;
    assert_int_equal(iso_queue_init(&q, &p), -EFAULT);
    bounce_map(lay.end - BNC_GPA);

    /* The guest's queue may not be larger than the storage allows. */
    assert_int_equal(iso_queue_init(&q, &good), 0);
    gcfg = (struct vq_config){
        .size = 32, .desc_addr = G_DESC, .avail_addr = G_AVAIL, .used_addr = G_USED};
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), -EINVAL);
    gcfg.size = 16;
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), 0);
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), -EINVAL); /* already started */

    /* Not started: the data path refuses. */
    unsigned f;
    iso_stop(&q);
    assert_int_equal(iso_guest_kick(&q, &f), -ENODEV);
    assert_int_equal(iso_backend_call(&q, &f), -ENODEV);
    assert_int_equal(iso_fail_inflight(&q, &f), -ENODEV);
    assert_int_equal(iso_resubmit_inflight(&q, &f), -ENODEV);
    assert_int_equal(f, 0);
}

/* ---- good paths ---- */

static uint32_t rand_len(void)
{
    switch (rnd() % 6) {
    case 0:
        return 512u * (uint32_t)(1 + rnd() % 4);
    case 1:
        return 4096;
    case 2:
        return 1;
    default:
        return (uint32_t)(1 + rnd() % 900);
    }
}

static void test_round_trip_many_segments(void **state)
{
    (void)state;
    setup_queues(64, 0, 64, 0, 0x100000);
    check_structure = true;
    for (unsigned round = 0; round < 200; round++) {
        unsigned batch = 1 + round % 4;
        for (unsigned b = 0; b < batch; b++) {
            unsigned nr = 1 + (unsigned)(rnd() % 8);
            unsigned nw = (unsigned)(rnd() % 9);
            uint32_t lens[MAX_SEGS];
            for (unsigned i = 0; i < nr + nw; i++)
                lens[i] = rand_len();
            expect_posted(submit(nr, nw, lens));
        }
        assert_true(vq_driver_should_kick(&gdrv));
        assert_int_equal(kick(), ISO_KICK_BACKEND);
        assert_int_equal(iso_inflight(&q), batch);
        assert_int_equal(backend_pop(), batch);
        backend_complete_all();
        assert_true(vq_should_notify(&bdev));
        assert_int_equal(call(), ISO_NOTIFY_GUEST);
        assert_int_equal(reap(), batch);
        assert_int_equal(iso_inflight(&q), 0);
    }
    assert_false(q.guest.broken);
    assert_false(q.shadow.broken);
    assert_int_equal(q.stats.requests, completed);
    assert_int_equal(q.stats.errors, 0);
    assert_int_equal(fail_calls, 0);
    assert_int_equal(q.stats.backend_kicks, 200);
    assert_int_equal(q.stats.guest_interrupts, 200);
    assert_true(q.stats.bytes_in > 0 && q.stats.bytes_out > 0);
}

/* The guest's own ring written by hand, for indirect and malformed chains. */
static uint16_t man_avail;

static void man_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t *d = gp(table + 16ull * i);
    w64(d, addr);
    w32(d + 8, len);
    w16(d + 12, flags);
    w16(d + 14, next);
}

static void man_offer(uint16_t head)
{
    w16(gp(G_AVAIL + 4 + 2ull * (man_avail % gcfg.size)), head);
    man_avail++;
    w16(gp(G_AVAIL + 2), man_avail);
}

static void test_indirect_chain(void **state)
{
    (void)state;
    setup_queues(16, F_INDIR, 16, 0, 0x10000);
    man_avail = 0;
    /* head 0: a direct 16-byte header, then an indirect table of five buffers, one of
     * them zero-length (dropped from the shadow chain: it has no byte). */
    struct greq r = {.live = true, .want = WANT_ECHO, .seed = 77, .nr = 3, .nw = 2};
    static const uint32_t lens[] = {16, 700, 512, 1024, 3};
    for (unsigned i = 0; i < 5; i++) {
        r.len[i] = lens[i];
        r.gpa[i] = gbuf(lens[i], i == 2 ? 512 : 8);
    }
    r.rbytes = 16 + 700 + 512;
    r.wbytes = 1024 + 3;
    fill_readable(&r, r.seed);
    man_desc(G_DESC, 0, r.gpa[0], 16, VIRTQ_DESC_F_NEXT, 5);
    man_desc(G_DESC, 5, G_TABLE, 16 * 5, VIRTQ_DESC_F_INDIRECT, 0);
    man_desc(G_TABLE, 0, r.gpa[1], 700, VIRTQ_DESC_F_NEXT, 1);
    man_desc(G_TABLE, 1, r.gpa[1], 0, VIRTQ_DESC_F_NEXT, 2);
    man_desc(G_TABLE, 2, r.gpa[2], 512, VIRTQ_DESC_F_NEXT, 3);
    man_desc(G_TABLE, 3, r.gpa[3], 1024, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
    man_desc(G_TABLE, 4, r.gpa[4], 3, VIRTQ_DESC_F_WRITE, 0);
    reqs[0] = r;
    /* head 7: an indirect table alone, writable only. */
    struct greq r2 = {.live = true, .want = WANT_ECHO, .seed = 78, .nr = 0, .nw = 2};
    r2.len[0] = 4096;
    r2.len[1] = 100;
    r2.gpa[0] = gbuf(4096, 4096);
    r2.gpa[1] = gbuf(100, 64);
    r2.wbytes = 4196;
    man_desc(G_DESC, 7, G_TABLE + 0x100, 32, VIRTQ_DESC_F_INDIRECT, 0);
    man_desc(G_TABLE + 0x100, 0, r2.gpa[0], 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    man_desc(G_TABLE + 0x100, 1, r2.gpa[1], 100, VIRTQ_DESC_F_WRITE, 0);
    reqs[7] = r2;
    man_offer(0);
    man_offer(7);

    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 2);
    assert_int_equal(bq[0].ch.nr_readable, 3);
    assert_int_equal(bq[0].ch.nr_writable, 2);
    static const uint32_t want[] = {16, 700, 512, 1024, 3};
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(bq[0].iov[i].len, want[i]);
    assert_int_equal(bq[1].ch.nr_readable, 0);
    assert_int_equal(bq[1].ch.nr_writable, 2);
    assert_int_equal(bq[1].iov[0].len, 4096);
    /* The backend writes something recognisable into the writable-only chain. */
    memset(bq[1].iov[0].base, 0x11, 4096);
    memset(bq[1].iov[1].base, 0x22, 100);
    assert_int_equal(vq_push_used(&bdev, bq[1].head, 4150), 0);
    bq_n = 1;
    backend_complete(0);
    assert_int_equal(call(), ISO_NOTIFY_GUEST);

    /* Read the guest's used ring by hand: head 7 first, then head 0. */
    assert_int_equal(r16(gp(G_USED + 2)), 2);
    assert_int_equal(r32(gp(G_USED + 4)), 7);
    assert_int_equal(r32(gp(G_USED + 8)), 4150);
    assert_int_equal(r32(gp(G_USED + 12)), 0);
    assert_int_equal(r32(gp(G_USED + 16)), 1027);
    memset(expect + (r2.gpa[0] - GRAM_GPA), 0x11, 4096);
    memset(expect + (r2.gpa[1] - GRAM_GPA), 0x22, 54);
    verify(&reqs[0], 1027);
    check_ram();
}

static void test_zero_length_chain_fails(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x10000);
    /* Only zero-length buffers: nothing to post, failed through the hook. */
    static const uint32_t zero[] = {0, 0};
    uint16_t h = submit(1, 1, zero);
    reqs[h].want = WANT_FAIL;
    assert_int_equal(kick(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    assert_int_equal(fail_calls, 1);
    assert_int_equal(q.stats.errors, 1);
    assert_int_equal(backend_pop(), 0);
    /* Zero-length buffers among others are dropped from the shadow chain. */
    static const uint32_t mixed[] = {0, 40, 0, 30, 0};
    uint64_t gpas[] = {gbuf(8, 8), gbuf(40, 64), gbuf(8, 8), gbuf(30, 64), gbuf(8, 8)};
    submit_at(2, 3, mixed, gpas);
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 1);
    assert_int_equal(bq[0].ch.nr_readable, 1);
    assert_int_equal(bq[0].ch.nr_writable, 1);
    backend_complete_all();
    call();
    assert_int_equal(reap(), 1);
}

static void test_out_of_order_random(void **state)
{
    (void)state;
    /* A small data area (lots of waiting and wrapping), completions in random order,
     * the backend reading its requests only when it completes them: space handed out
     * twice would show as wrong data, and check_bchain() checks for overlap directly. */
    setup_queues(32, 0, 32, 0, 0x10000);
    unsigned submitted = 0;
    for (unsigned it = 0; it < 4000; it++) {
        unsigned nr = 1 + (unsigned)(rnd() % 4);
        unsigned nw = (unsigned)(rnd() % 4);
        if (gdrv.nr_free >= nr + nw && submitted < 3000 && rnd() % 3 != 0) {
            uint32_t lens[MAX_SEGS];
            for (unsigned i = 0; i < nr + nw; i++)
                lens[i] = (i == 0 && rnd() % 4 == 0) ? 4096 : (uint32_t)(1 + rnd() % 1536);
            (void)submit_area(nr, nw, lens);
            submitted++;
            kick();
            continue;
        }
        backend_pop();
        /* Complete a random subset in random order. */
        unsigned n = bq_n == 0 ? 0 : (unsigned)(rnd() % (bq_n + 1));
        for (unsigned i = 0; i < n; i++)
            backend_complete((unsigned)(rnd() % bq_n));
        call();
        reap();
    }
    run_all();
    assert_int_equal(completed, submitted);
    assert_int_equal(q.stats.errors, 0);
    assert_false(q.shadow.broken);
}

static void test_bounce_exhaustion_and_resume(void **state)
{
    (void)state;
    /* 16 KiB of bounce; each request needs 8 KiB (4 KiB in, 4 KiB out). */
    setup_queues(16, 0, 16, 0, 0x4000);
    static const uint32_t lens[] = {4096, 4096};
    for (unsigned i = 0; i < 6; i++) {
        uint64_t gpas[] = {gbuf(4096, 4096), gbuf(4096, 4096)};
        expect_posted(submit_at(1, 1, lens, gpas));
    }
    check_structure = true;
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(iso_inflight(&q), 2);
    assert_true(q.pending);
    /* While it waits for room the guest is asked not to kick. */
    static const uint32_t small[] = {8, 8};
    uint16_t h = submit(1, 1, small);
    expect_posted(h);
    assert_false(vq_driver_should_kick(&gdrv));
    assert_int_equal(kick(), 0); /* a kick anyway changes nothing */
    assert_int_equal(iso_inflight(&q), 2);

    /* Each completion makes room for the next one, posted by the same call. */
    unsigned total = 0;
    for (unsigned round = 0; round < 10 && live_reqs() > 0; round++) {
        backend_pop();
        assert_true(bq_n > 0);
        backend_complete(0);
        bool was_pending = q.pending;
        unsigned f = call();
        assert_true(f & ISO_NOTIFY_GUEST);
        total += reap();
        if (was_pending)
            assert_true(f & ISO_KICK_BACKEND);
    }
    assert_int_equal(total, 7);
    assert_false(q.pending);
    /* Drained: the guest's kicks are wanted again. */
    submit(1, 1, small);
    assert_true(vq_driver_should_kick(&gdrv));
    check_structure = false;
    run_all();
}

static void test_descriptor_exhaustion(void **state)
{
    (void)state;
    /* Shadow queue of 4 descriptors: a 3-segment chain at a time; a 5-segment chain
     * can never be posted and fails at once, without holding the queue up. */
    setup_queues(16, 0, 4, 0, 0x10000);
    static const uint32_t three[] = {10, 20, 30};
    static const uint32_t five[] = {1, 2, 3, 4, 5};
    uint16_t a = submit(2, 1, three);
    uint16_t b = submit(2, 1, three);
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(iso_inflight(&q), 1);
    assert_true(q.pending);
    assert_int_equal(backend_pop(), 1);
    backend_complete(0);
    assert_int_equal(call(), ISO_NOTIFY_GUEST | ISO_KICK_BACKEND);
    assert_int_equal(reap(), 1);
    assert_false(reqs[a].live);
    assert_true(reqs[b].live);
    assert_int_equal(backend_pop(), 1);
    backend_complete(0);
    call();
    assert_int_equal(reap(), 1);

    uint16_t c = submit(3, 2, five);
    reqs[c].want = WANT_FAIL;
    assert_int_equal(kick(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    assert_int_equal(fail_calls, 1);
    run_all();
}

static void test_too_large_fails(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x2000);
    /* 8 KiB of data plus a status byte: more than the whole 8 KiB area. */
    static const uint32_t big[] = {16, 8192, 1};
    uint16_t h = submit(2, 1, big);
    reqs[h].want = WANT_FAIL;
    static const uint32_t ok[] = {16, 512, 1};
    uint16_t h2 = submit(1, 2, ok);
    assert_int_equal(kick(), ISO_NOTIFY_GUEST | ISO_KICK_BACKEND);
    assert_int_equal(reap(), 1);
    assert_false(reqs[h].live);
    assert_int_equal(q.stats.errors, 1);
    assert_true(reqs[h2].live);
    run_all();
    /* Exactly the area (after alignment) still fits. */
    static const uint32_t exact[] = {4096, 4096};
    submit(1, 1, exact);
    run_all();
    assert_int_equal(q.stats.errors, 1);
}

static void test_index_wraparound(void **state)
{
    (void)state;
    /* More than 2^16 chains through small queues: both rings' 16-bit indices wrap
     * and the bounce ring goes round its area thousands of times. */
    setup_queues(8, 0, 8, 0, 0x2000);
    static const uint32_t lens[] = {100, 700, 60};
    /* Two requests in flight most of the time, either one completed first: the bounce
     * ring rarely empties, so its runs wrap round the area instead of restarting, and
     * a younger run completed first waits for the older one (the queue stalls). */
    unsigned submitted = 0;
    unsigned stalls = 0;
    while (completed < 70000) {
        if (submitted < 70000 && gdrv.nr_free >= 3) {
            submit_area(1, 2, lens);
            submitted++;
        }
        kick();
        stalls += q.pending;
        backend_pop();
        if (bq_n > 0 && (bq_n == 2 || gdrv.nr_free < 3 || submitted == 70000))
            backend_complete((unsigned)(rnd() % bq_n));
        call();
        uint16_t id;
        uint32_t len;
        while (vq_driver_get_used(&gdrv, &id, &len) == 1)
            verify(&reqs[id], len);
        if (completed % 4096 == 0)
            check_ram();
    }
    assert_true(stalls > 0);
    run_all();
    assert_int_equal(completed, 70000);
    assert_true(q.stats.bytes_in > 65536ull * 100);
    assert_false(q.guest.broken);
    assert_false(q.shadow.broken);
}

static void test_event_idx_guest(void **state)
{
    (void)state;
    setup_queues(16, F_EVENT, 16, 0, 0x10000);
    static const uint32_t lens[] = {32, 32};
    /* used_event starts at 0: the first completion interrupts. */
    submit(1, 1, lens);
    assert_true(vq_driver_should_kick(&gdrv)); /* avail_event 0 */
    kick();
    backend_pop();
    backend_complete_all();
    assert_int_equal(call(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    /* The guest does not move used_event: no interrupt for the next one. */
    submit(1, 1, lens);
    assert_true(vq_driver_should_kick(&gdrv)); /* iso re-armed avail_event */
    kick();
    backend_pop();
    backend_complete_all();
    assert_int_equal(call(), 0);
    assert_int_equal(reap(), 1);
    /* Re-armed: interrupted again. */
    assert_int_equal(vq_driver_used_notify_enable(&gdrv), 0);
    submit(1, 1, lens);
    kick();
    backend_pop();
    backend_complete_all();
    assert_int_equal(call(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    assert_int_equal(q.stats.guest_interrupts, 2);
}

static void test_event_idx_shadow(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, F_EVENT, 0x10000);
    static const uint32_t lens[] = {32, 32};
    /* avail_event starts at 0: the first post kicks, the second does not. */
    submit(1, 1, lens);
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    submit(1, 1, lens);
    assert_int_equal(kick(), 0);
    assert_int_equal(backend_pop(), 2);
    assert_int_equal(vq_avail_notify_enable(&bdev), 0); /* the backend re-arms */
    submit(1, 1, lens);
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 1);
    assert_int_equal(q.stats.backend_kicks, 2);
    /* The backend's call: used_event 0 wants the first completion only ... */
    backend_complete(0);
    assert_true(vq_should_notify(&bdev));
    backend_complete(0);
    assert_false(vq_should_notify(&bdev));
    assert_int_equal(call(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 2);
    /* ... and after draining, iso re-armed it for the next one. */
    backend_complete(0);
    assert_true(vq_should_notify(&bdev));
    call();
    assert_int_equal(reap(), 1);

    /* Without EVENT_IDX: the backend's NO_NOTIFY flag suppresses kicks. */
    test_setup(NULL);
    setup_queues(16, 0, 16, 0, 0x10000);
    assert_int_equal(vq_avail_notify_disable(&bdev), 0);
    submit(1, 1, lens);
    assert_int_equal(kick(), 0);
    assert_int_equal(vq_avail_notify_enable(&bdev), 1);
    submit(1, 1, lens);
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    run_all();
}

/* Polling mode: after a pass, neither the guest's kicks nor the backend's interrupts
 * are re-armed; iso_poll_ready() sees the work instead; turning polling off and running
 * both entry points once re-arms them. */
static void test_polling(void **state)
{
    (void)state;
    setup_queues(16, F_EVENT, 16, F_EVENT, 0x10000);
    static const uint32_t lens[] = {32, 32};
    iso_set_polling(&q, true);
    assert_false(iso_poll_ready(&q));
    submit(1, 1, lens);
    assert_true(vq_driver_should_kick(&gdrv)); /* avail_event 0 */
    assert_true(iso_poll_ready(&q));
    unsigned f = 0;
    assert_int_equal(iso_poll(&q, &f), 0);
    assert_int_equal(f, ISO_KICK_BACKEND); /* the backend does not poll */
    assert_false(iso_poll_ready(&q));
    assert_int_equal(backend_pop(), 1);
    assert_int_equal(vq_avail_notify_enable(&bdev), 0);
    backend_complete_all();
    assert_true(vq_should_notify(&bdev)); /* used_event 0 */
    assert_true(iso_poll_ready(&q));
    assert_int_equal(iso_poll(&q, &f), 0);
    assert_int_equal(f, ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    assert_int_equal(vq_driver_used_notify_enable(&gdrv), 0);

    /* Still polling: the next request costs the guest no kick, its completion the
     * backend no interrupt. */
    submit(1, 1, lens);
    assert_false(vq_driver_should_kick(&gdrv));
    assert_true(iso_poll_ready(&q));
    assert_int_equal(iso_poll(&q, &f), 0);
    assert_int_equal(f, ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 1);
    assert_int_equal(vq_avail_notify_enable(&bdev), 0);
    backend_complete_all();
    assert_false(vq_should_notify(&bdev));
    assert_true(iso_poll_ready(&q));
    assert_int_equal(iso_poll(&q, &f), 0);
    assert_int_equal(f, ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);

    /* Off: the two entry points re-arm both sides. */
    iso_set_polling(&q, false);
    assert_int_equal(kick(), 0);
    assert_int_equal(call(), 0);
    assert_int_equal(vq_driver_used_notify_enable(&gdrv), 0);
    submit(1, 1, lens);
    assert_true(vq_driver_should_kick(&gdrv));
    assert_int_equal(kick(), ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 1);
    backend_complete_all();
    assert_true(vq_should_notify(&bdev));
    assert_int_equal(call(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    assert_false(q.guest.broken);
    assert_false(q.shadow.broken);
}

static void test_readable_copied_once(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x10000);
    static const uint32_t lens[] = {300, 512, 900};
    uint16_t h = submit(2, 1, lens);
    kick();
    /* The guest rewrites its readable buffers after the kick: the backend still sees
     * what was there when the chain was taken. */
    struct greq changed = reqs[h];
    fill_readable(&changed, 999);
    backend_pop();
    backend_complete_all();
    call();
    assert_int_equal(reap(), 1);
}

static void test_shadow_not_attached(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x10000);
    /* A fresh queue with no shadow ring yet: requests wait in the guest's ring. */
    iso_stop(&q);
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), 0);
    static const uint32_t lens[] = {64, 64};
    submit(1, 1, lens);
    submit(1, 1, lens);
    assert_int_equal(kick(), 0);
    assert_int_equal(iso_inflight(&q), 0);
    assert_int_equal(call(), 0); /* a stale signal */
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    backend_attach(0);
    unsigned f;
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_int_equal(f, ISO_KICK_BACKEND);
    assert_int_equal(iso_inflight(&q), 2);
    run_all();
}

static void test_stop_forgets(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x10000);
    static const uint32_t lens[] = {64, 64};
    submit(1, 1, lens);
    kick();
    backend_pop();
    /* The guest resets its device: the request is abandoned, never completed. */
    iso_stop(&q);
    assert_int_equal(iso_inflight(&q), 0);
    memset(reqs, 0, sizeof(reqs));
    assert_int_equal(vq_driver_enable(&gdrv, &gmem, &gcfg, gslots, gcfg.size), 0);
    assert_int_equal(iso_guest_start(&q, &gmem, &gcfg), 0);
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    backend_attach(0);
    submit(1, 1, lens);
    run_all();
    check_ram();
}

/* ---- a hostile guest ---- */

static void test_malformed_guest_chain(void **state)
{
    (void)state;
    setup_queues(16, 0, 16, 0, 0x10000);
    static const uint32_t lens[] = {64, 64};
    uint16_t h0 = submit(1, 1, lens); /* a good one first, in flight */
    kick();
    /* Then a chain that loops: descriptor 9 -> 9. */
    man_avail = 1;
    man_desc(G_DESC, 9, G_DATA, 16, VIRTQ_DESC_F_NEXT, 9);
    man_offer(9);
    unsigned f = 0xdead;
    assert_int_equal(iso_guest_kick(&q, &f), -ELOOP);
    assert_true(q.guest.broken);
    assert_int_equal(f, 0);
    assert_int_equal(iso_guest_kick(&q, &f), -EIO); /* until the device is reset */
    assert_int_equal(iso_inflight(&q), 1);
    /* The backend's completion is taken; the broken guest queue gets nothing. */
    backend_pop();
    backend_complete_all();
    assert_int_equal(iso_backend_call(&q, &f), 0);
    assert_int_equal(iso_inflight(&q), 0);
    expect_written(&reqs[h0], 64, true); /* copied, but the used entry cannot be published */
    check_ram();
    /* An avail entry that names no descriptor. */
    test_setup(NULL);
    setup_queues(16, 0, 16, 0, 0x10000);
    man_avail = 0;
    man_offer(16);
    assert_int_equal(iso_guest_kick(&q, &f), -EBADMSG);
    check_ram();
}

static void test_guest_reoffers_head_in_flight(void **state)
{
    (void)state;
    /* Not checked, documented: a guest offering a head again while it is in flight
     * gets one completion per offer, on its own buffers. Here 8 offers of head 0 on a
     * queue of 4: more used elements in one batch than the guest's ring holds, which
     * are published in two steps. */
    setup_queues(4, 0, 16, 0, 0x10000);
    struct greq r = {.live = true, .want = WANT_ECHO, .area = -1, .seed = 5, .nr = 1, .nw = 1};
    r.len[0] = 8;
    r.len[1] = 8;
    r.gpa[0] = gbuf(8, 64);
    r.gpa[1] = gbuf(8, 64);
    r.rbytes = r.wbytes = 8;
    fill_readable(&r, r.seed);
    man_desc(G_DESC, 0, r.gpa[0], 8, VIRTQ_DESC_F_NEXT, 1);
    man_desc(G_DESC, 1, r.gpa[1], 8, VIRTQ_DESC_F_WRITE, 0);
    man_avail = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 4; i++)
            man_offer(0);
        kick();
    }
    assert_int_equal(iso_inflight(&q), 8);
    assert_int_equal(backend_pop(), 8);
    backend_complete_all();
    assert_int_equal(call(), ISO_NOTIFY_GUEST);
    assert_int_equal(r16(gp(G_USED + 2)), 8);
    for (unsigned i = 0; i < 4; i++) { /* the last four overwrote the first four */
        assert_int_equal(r32(gp(G_USED + 4 + 8 * i)), 0);
        assert_int_equal(r32(gp(G_USED + 8 + 8 * i)), 8);
    }
    verify(&r, 8);
    check_ram();
}

/* ---- a hostile backend ---- */

/* Three requests in flight, all popped by the backend. */
static void three_in_flight(void)
{
    setup_queues(16, 0, 16, 0, 0x10000);
    static const uint32_t lens[] = {16, 1024, 1};
    for (int i = 0; i < 3; i++)
        submit(2, 1, lens);
    kick();
    assert_int_equal(backend_pop(), 3);
}

/* Appends a raw used element to the shadow used ring and publishes it. */
static void raw_used(uint32_t id, uint32_t len)
{
    uint8_t *used = bp(lay.used_addr);
    uint16_t idx = r16(used + 2);
    uint8_t *e = used + 4 + 8u * (idx % lay.queue_size);
    w32(e, id);
    w32(e + 4, len);
    w16(used + 2, (uint16_t)(idx + 1));
}

/* The backend broke the protocol: it is refused, and then the requests fail cleanly. */
static void expect_backend_refused(unsigned good_before)
{
    unsigned f = 0xdead;
    assert_int_equal(iso_backend_call(&q, &f), -EREMOTEIO);
    assert_true(q.shadow.broken);
    assert_non_null(q.shadow.broken_reason);
    assert_int_equal(reap(), good_before); /* what came before the garbage stands */
    assert_int_equal(iso_backend_call(&q, &f), -EREMOTEIO);
    assert_int_equal(f, 0);

    /* Nothing more is posted to that backend: new requests wait in the guest's ring. */
    static const uint32_t lens[] = {16, 100, 1};
    uint16_t h = submit(2, 1, lens);
    unsigned inflight = iso_inflight(&q);
    assert_int_equal(kick(), 0);
    assert_int_equal(iso_inflight(&q), inflight);

    /* Given up: every request completes with IOERR, the waiting one too. */
    want_all(WANT_FAIL);
    assert_int_equal(iso_fail_inflight(&q, &f), 0);
    assert_int_equal(f, ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), inflight + 1);
    assert_false(reqs[h].live);
    assert_int_equal(iso_inflight(&q), 0);
    assert_int_equal(fail_calls, inflight + 1);
    assert_true(q.failing);
    check_ram();
}

static void test_backend_id_not_in_flight(void **state)
{
    (void)state;
    three_in_flight();
    raw_used(9, 1); /* descriptor 9 is not a head in flight */
    expect_backend_refused(0);
}

static void test_backend_id_out_of_range(void **state)
{
    (void)state;
    three_in_flight();
    raw_used(0x10000, 1);
    expect_backend_refused(0);
}

static void test_backend_id_twice(void **state)
{
    (void)state;
    three_in_flight();
    uint16_t first = bq[0].head;
    backend_complete(0);
    raw_used(first, 1);
    expect_backend_refused(1);
}

static void test_backend_len_over_offered(void **state)
{
    (void)state;
    three_in_flight();
    raw_used(bq[1].head, 2); /* one writable byte was offered */
    expect_backend_refused(0);
}

static void test_backend_used_idx_jump(void **state)
{
    (void)state;
    three_in_flight();
    backend_complete(2);
    uint8_t *used = bp(lay.used_addr);
    w16(used + 2, (uint16_t)(r16(used + 2) + lay.queue_size + 5));
    expect_backend_refused(0);
}

static void test_backend_never_completes(void **state)
{
    (void)state;
    /* Two requests fit the bounce area, a third waits; the backend takes one and then
     * hangs. Giving up completes all three with IOERR. */
    setup_queues(16, 0, 16, 0, 0x2000);
    static const uint32_t lens[] = {16, 2048, 1};
    for (int i = 0; i < 3; i++)
        submit(2, 1, lens);
    kick();
    assert_int_equal(iso_inflight(&q), 2);
    assert_true(q.pending);
    backend_pop();
    want_all(WANT_FAIL);
    unsigned f;
    assert_int_equal(iso_fail_inflight(&q, &f), 0);
    assert_int_equal(f, ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 3);
    assert_int_equal(fail_calls, 3);
    assert_int_equal(q.stats.errors, 3);

    /* From now on requests fail at once; a late completion is ignored. */
    uint16_t h = submit(2, 1, lens);
    reqs[h].want = WANT_FAIL;
    assert_int_equal(kick(), ISO_NOTIFY_GUEST);
    assert_int_equal(reap(), 1);
    backend_complete(0);
    assert_int_equal(call(), 0);
    assert_int_equal(reap(), 0);

    /* A new backend brings the queue back. */
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    assert_false(q.failing);
    backend_attach(0);
    submit(2, 1, lens);
    run_all();
    check_ram();
}

static void scribble(uint64_t addr, uint64_t len)
{
    uint8_t *p = bp(addr);
    for (uint64_t i = 0; i < len; i++)
        p[i] = (uint8_t)rnd();
}

static void test_backend_scribbles_random(void **state)
{
    (void)state;
    /* A backend that writes random bytes over its rings and data between calls: the
     * queue may accept entries that happen to be valid or refuse the ring, but it
     * never writes a guest byte outside a completed chain's first len writable bytes
     * and never touches memory outside the two views (the guards would fault). */
    unsigned refused = 0;
    for (unsigned iter = 0; iter < 300; iter++) {
        test_setup(NULL);
        rng = 0x9e3779b97f4a7c15ull * (iter + 1);
        setup_queues(16, iter % 2 ? F_EVENT : 0, 8, iter % 3 ? F_EVENT : 0, 0x8000);
        for (int i = 0; i < 5; i++) {
            uint32_t lens[] = {(uint32_t)(1 + rnd() % 2000), (uint32_t)(1 + rnd() % 3000), 1};
            submit(2, 1, lens);
        }
        kick();
        backend_pop();
        if (bq_n > 0)
            backend_complete(0);
        want_all(WANT_ANY);
        switch (iter % 4) {
        case 0: /* everything */
            scribble(lay.desc_addr, lay.end - lay.desc_addr);
            break;
        case 1: /* the used ring */
            scribble(lay.used_addr, virtq_used_bytes(lay.queue_size));
            break;
        case 2: { /* plausible entries: ids and lengths near the real ones */
            uint8_t *used = bp(lay.used_addr);
            uint16_t idx = r16(used + 2);
            for (unsigned i = 0; i < 4; i++) {
                uint8_t *e = used + 4 + 8u * ((idx + i) % lay.queue_size);
                w32(e, (uint32_t)(rnd() % (lay.queue_size + 2)));
                w32(e + 4, (uint32_t)(rnd() % 4000));
            }
            w16(used + 2, (uint16_t)(idx + rnd() % 5));
            break;
        }
        default: /* the data area only: the rings stay valid */
            scribble(lay.data_addr, lay.data_size);
            backend_complete_all();
            break;
        }
        unsigned f;
        int r = iso_backend_call(&q, &f);
        assert_true(r == 0 || r == -EREMOTEIO);
        refused += r < 0;
        reap();
        assert_int_equal(iso_fail_inflight(&q, &f), 0);
        reap();
        assert_int_equal(live_reqs(), 0);
        assert_int_equal(iso_inflight(&q), 0);
        check_ram();
    }
    assert_true(refused > 0);
}

static void test_backend_scribbles_desc_and_avail(void **state)
{
    (void)state;
    /* The queue never reads back the descriptors or the avail ring it wrote: a backend
     * that rewrites them after taking its chains still gets exact copies back. */
    three_in_flight();
    memset(bp(lay.desc_addr), 0xff, virtq_desc_table_bytes(lay.queue_size));
    memset(bp(lay.avail_addr), 0xff, virtq_avail_bytes(lay.queue_size));
    backend_complete(1);
    backend_complete(0);
    backend_complete(0);
    unsigned f;
    assert_int_equal(iso_backend_call(&q, &f), 0);
    assert_int_equal(reap(), 3);
}

/* ---- a restarted backend ---- */

static void test_resubmit_after_reset(void **state)
{
    (void)state;
    /* 8 KiB of bounce, requests of 4 KiB: two in flight at a time. */
    setup_queues(16, 0, 16, 0, 0x2000);
    static const uint32_t lens[] = {2048, 2048};
    uint16_t r0 = submit(1, 1, lens);
    uint16_t r1 = submit(1, 1, lens);
    kick();
    backend_pop();
    backend_complete(0); /* r0 done before the crash */
    call();
    assert_int_equal(reap(), 1);
    assert_false(reqs[r0].live);
    uint16_t r2 = submit(1, 1, lens);
    uint16_t r3 = submit(1, 1, lens);
    kick();
    assert_int_equal(iso_inflight(&q), 2); /* r1, r2; r3 waits */
    assert_true(q.pending);
    backend_pop();

    /* The backend dies after scribbling over everything it could reach. */
    memset(bp(lay.desc_addr), 0xee, lay.end - lay.desc_addr);
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    assert_int_equal(r16(bp(lay.avail_addr + 2)), 0);
    assert_int_equal(r16(bp(lay.used_addr + 2)), 0);
    backend_attach(0);
    expect_posted(r1);
    expect_posted(r2);
    expect_posted(r3);
    check_structure = true;
    unsigned f;
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_int_equal(f, ISO_KICK_BACKEND);
    assert_int_equal(q.stats.resubmitted, 2);
    /* The new backend sees the guest's bytes, oldest first, not the scribbles. */
    assert_int_equal(backend_pop(), 2);
    backend_complete_all();
    f = call();
    assert_true(f & ISO_NOTIFY_GUEST);
    assert_true(f & ISO_KICK_BACKEND); /* r3 went out in the same call */
    assert_int_equal(reap(), 2);
    assert_false(reqs[r1].live);
    assert_false(reqs[r2].live);
    assert_int_equal(backend_pop(), 1);
    backend_complete_all();
    call();
    assert_int_equal(reap(), 1);
    assert_false(reqs[r3].live);
    assert_int_equal(q.stats.errors, 0);
}

static void test_resubmit_after_broken_backend(void **state)
{
    (void)state;
    /* A backend refused for garbage is replaced; the requests survive. */
    three_in_flight();
    raw_used(0x7777, 0);
    unsigned f;
    assert_int_equal(iso_backend_call(&q, &f), -EREMOTEIO);
    scribble(lay.data_addr, lay.data_size);
    assert_int_equal(iso_reset_shadow(&q, F_EVENT), 0);
    assert_false(q.shadow.broken);
    backend_attach(F_EVENT);
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_int_equal(f, ISO_KICK_BACKEND);
    assert_int_equal(backend_pop(), 3);
    backend_complete_all();
    call();
    assert_int_equal(reap(), 3);
}

static void test_detach_holds_requests(void **state)
{
    (void)state;
    /* The backend's connection is gone; it completed requests it may still signal. */
    three_in_flight();
    backend_complete_all();
    iso_detach(&q);
    unsigned f;
    /* Nothing is taken from the old ring, nothing new is posted; the guest waits. */
    assert_int_equal(iso_backend_call(&q, &f), 0);
    assert_int_equal(f, 0u);
    assert_int_equal(reap(), 0);
    assert_int_equal(iso_inflight(&q), 3);
    static const uint32_t lens[] = {512, 512};
    uint16_t r = submit(1, 1, lens);
    assert_int_equal(iso_guest_kick(&q, &f), 0);
    assert_int_equal(f, 0u);
    assert_int_equal(iso_inflight(&q), 3);
    /* A new backend gets the three again, then the one that waited. */
    assert_int_equal(iso_reset_shadow(&q, F_EVENT), 0);
    backend_attach(F_EVENT);
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_true(f & ISO_KICK_BACKEND);
    assert_int_equal(q.stats.resubmitted, 3);
    assert_int_equal(backend_pop(), 4);
    backend_complete_all();
    call();
    assert_int_equal(reap(), 4);
    assert_false(reqs[r].live);
    assert_int_equal(q.stats.errors, 0);
}

static void test_resubmit_skips_done_and_posted(void **state)
{
    (void)state;
    /* The middle request completed before the crash still holds its bounce space
     * (an older one is in flight) but is not posted again; a second resubmission
     * posts nothing. */
    three_in_flight();
    backend_complete(1);
    call();
    assert_int_equal(reap(), 1);
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    backend_attach(0);
    unsigned f;
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_int_equal(q.stats.resubmitted, 2);
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    assert_int_equal(q.stats.resubmitted, 2);
    assert_int_equal(f, 0);
    assert_int_equal(backend_pop(), 2);
    backend_complete_all();
    call();
    assert_int_equal(reap(), 2);
    assert_int_equal(iso_inflight(&q), 0);
}

static void test_resubmit_reads_guest_again(void **state)
{
    (void)state;
    /* Documented choice: a resubmission copies from the guest's buffers again (the
     * old backend could have rewritten the bounce copy), so a guest that changed a
     * buffer it had made available gets its new contents used. */
    setup_queues(16, 0, 16, 0, 0x10000);
    static const uint32_t lens[] = {700, 700};
    uint16_t h = submit(1, 1, lens);
    kick();
    backend_pop();
    reqs[h].seed = 4242;
    fill_readable(&reqs[h], 4242);
    assert_int_equal(iso_reset_shadow(&q, 0), 0);
    backend_attach(0);
    unsigned f;
    assert_int_equal(iso_resubmit_inflight(&q, &f), 0);
    backend_pop();
    backend_complete_all();
    call();
    assert_int_equal(reap(), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, NULL)
    const struct CMUnitTest tests[] = {
        T(test_layout),
        T(test_init_validation),
        T(test_round_trip_many_segments),
        T(test_indirect_chain),
        T(test_zero_length_chain_fails),
        T(test_out_of_order_random),
        T(test_bounce_exhaustion_and_resume),
        T(test_descriptor_exhaustion),
        T(test_too_large_fails),
        T(test_index_wraparound),
        T(test_event_idx_guest),
        T(test_event_idx_shadow),
        T(test_polling),
        T(test_readable_copied_once),
        T(test_shadow_not_attached),
        T(test_stop_forgets),
        T(test_malformed_guest_chain),
        T(test_guest_reoffers_head_in_flight),
        T(test_backend_id_not_in_flight),
        T(test_backend_id_out_of_range),
        T(test_backend_id_twice),
        T(test_backend_len_over_offered),
        T(test_backend_used_idx_jump),
        T(test_backend_never_completes),
        T(test_backend_scribbles_random),
        T(test_backend_scribbles_desc_and_avail),
        T(test_resubmit_after_reset),
        T(test_resubmit_after_broken_backend),
        T(test_detach_holds_requests),
        T(test_resubmit_skips_done_and_posted),
        T(test_resubmit_reads_guest_again),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
