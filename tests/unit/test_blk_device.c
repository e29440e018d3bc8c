/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-blk's device glue (blk_device.c) between the vhost-user backend library
 * and the request engine: bulkhead's own vhost-user frontend drives it over a
 * socketpair, a memfd is guest RAM, the test is the guest's virtio-blk driver, and
 * a thread runs the program's poll loop (library descriptors plus engine eventfds)
 * on a real image file and a real io_uring. Covers the offered features and the
 * configuration space, I/O on two queues, many requests in flight, a ring stopped
 * and a memory table replaced while requests are in flight, a driver that makes
 * more chains available than the engine has slots, reconnection, and read-only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/blk/blk_device.h"
#include "backends/blk/blk_engine.h"
#include "backends/blk/virtio_blk.h"
#include "fake_guest.h"
#include "core/guest_mem.h"
#include "core/log.h"
#include "vhost/backend.h"
#include "vhost/frontend.h"
#include "vhost/vhost_user.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MiB       (1024ull * 1024ull)
#define IMG_SIZE  (1u << 20)
#define RAM_SIZE  (2 * MiB)
#define QSIZE     64
#define NQUEUES   2
#define HDR_GPA   0x1000ull  /* slot i: header at +32 i, status byte at +32 i + 16 */
#define DATA_GPA  0x10000ull /* slot i: 4 KiB at +4 KiB i */
#define RING_BASE 0x100000ull
#define SERIAL    "unit-serial"

#define F(bit) (1ull << (bit))

/* ---- the backend side: image, device, and the program's poll loop in a thread ---- */

static char path[256];
static struct blk_image *img;
static struct blk_device bd;
static struct vhost_be be;
static pthread_t loop;
static int loop_result;
static unsigned batch_kib; /* blk_device_opts.batch_kib of the next open_image() */

static void *loop_thread(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd pfd[VHOST_BE_MAX_POLLFDS + VHOST_BE_MAX_QUEUES];
        unsigned n = vhost_be_pollfds(&be, pfd, VHOST_BE_MAX_POLLFDS);
        n += blk_device_pollfds(&bd, pfd + n, VHOST_BE_MAX_QUEUES);
        if (poll(pfd, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            loop_result = -errno;
            break;
        }
        int r = blk_device_dispatch(&bd, pfd, n);
        if (r < 0) {
            loop_result = r;
            break;
        }
    }
    blk_device_detach(&bd);
    return NULL;
}

static uint8_t file_pattern(uint64_t off)
{
    return (uint8_t)(off * 13 + (off >> 9));
}

static void open_image(bool ro)
{
    const char *dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof(path), "%s/test_blk_device.XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static uint8_t buf[IMG_SIZE];
    for (uint64_t i = 0; i < IMG_SIZE; i++)
        buf[i] = file_pattern(i);
    assert_int_equal(pwrite(fd, buf, IMG_SIZE, 0), IMG_SIZE);
    close(fd);
    struct blk_image_opts o = {.path = path, .read_only = ro, .serial = SERIAL, .seg_max = 8};
    assert_int_equal(blk_image_open(&img, &o), 0);
    struct blk_device_opts d = {.nr_queues = NQUEUES, .queue_size = 8, .batch_kib = batch_kib};
    assert_int_equal(blk_device_init(&bd, img, &d), 0);
}

static void close_image(void)
{
    blk_image_close(img);
    img = NULL;
    unlink(path);
}

static void read_image(uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* ---- the frontend and the guest's driver ---- */

static struct vhost_frontend fe;
static struct fg_ram gr;
static struct fg_ring drv[NQUEUES];

/* Connect, handshake and negotiate @p features (of what is offered); no ring yet. */
static void connect_only(void)
{
    int sv[2];
    fg_socketpair(sv);
    assert_int_equal(vhost_be_init(&be, sv[1], &bd.dev), 0);
    blk_device_attach(&bd, &be);
    loop_result = 0;
    assert_int_equal(pthread_create(&loop, NULL, loop_thread, NULL), 0);
    fg_frontend_up(&fe, sv[0]);
}

static void connect_with(uint64_t features)
{
    connect_only();
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, features)), 0);
    fg_set_mem_table(&fe, &gr);
}

static void disconnect(void)
{
    vhost_fe_close(&fe);
    assert_int_equal(pthread_join(loop, NULL), 0);
    assert_int_equal(loop_result, -ECONNRESET);
}

static void queue_up(unsigned q, uint16_t size)
{
    fg_ring_up(&drv[q], &fe, &gr, q, size, F(VIRTIO_F_EVENT_IDX), RING_BASE + q * 0x8000ull,
               0x2000);
}

static const uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX) |
                             F(VIRTIO_F_INDIRECT_DESC) | F(VIRTIO_BLK_F_FLUSH) |
                             F(VIRTIO_BLK_F_SEG_MAX) | F(VIRTIO_BLK_F_BLK_SIZE) |
                             F(VIRTIO_BLK_F_MQ) | F(VIRTIO_BLK_F_RO) | F(VIRTIO_BLK_F_WRITE_ZEROES);

static void up(bool ro)
{
    open_image(ro);
    fg_ram_up(&gr, "blk-test-ram", RAM_SIZE);
    connect_with(want);
    for (unsigned q = 0; q < NQUEUES; q++)
        queue_up(q, QSIZE);
}

static void down(void)
{
    disconnect();
    for (unsigned q = 0; q < NQUEUES; q++)
        fg_ring_close(&drv[q]);
    fg_ram_down(&gr);
    close_image();
}

static uint8_t *data_of(unsigned slot)
{
    return gr.ram + DATA_GPA + 0x1000ull * slot;
}

static uint8_t status_of(unsigned slot)
{
    return __atomic_load_n(&gr.ram[HDR_GPA + 32ull * slot + 16], __ATOMIC_ACQUIRE);
}

/* Post one request using slot @p slot's header, status byte and 4 KiB of data. */
static uint16_t post(unsigned q, unsigned slot, uint32_t type, uint64_t sector, uint32_t len)
{
    uint64_t hdr = HDR_GPA + 32ull * slot;
    uint8_t h[16];
    uint32_t t = htole32(type);
    uint64_t s = htole64(sector);
    memset(h, 0, sizeof(h));
    memcpy(h, &t, 4);
    memcpy(h + 8, &s, 8);
    memcpy(gr.ram + hdr, h, sizeof(h));
    gr.ram[hdr + 16] = 0xee;
    bool device_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
    struct vq_seg segs[3];
    unsigned nr = 0, nw = 0;
    segs[nr++] = (struct vq_seg){hdr, 16};
    if (len > 0 && !device_writes)
        segs[nr++] = (struct vq_seg){DATA_GPA + 0x1000ull * slot, len};
    if (len > 0 && device_writes)
        segs[nr + nw++] = (struct vq_seg){DATA_GPA + 0x1000ull * slot, len};
    segs[nr + nw++] = (struct vq_seg){hdr + 16, 1};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv[q].vq, segs, nr, nw, &head), 0);
    return head;
}

static void kick(unsigned q)
{
    fg_kick(&drv[q]);
}

/* Take @p n used entries of queue @p q, waiting for the call eventfd as a driver does. */
static void reap(unsigned q, unsigned n, uint16_t *ids, uint32_t *lens)
{
    for (unsigned got = 0; got < n;) {
        int r = vq_driver_get_used(&drv[q].vq, &ids[got], &lens[got]);
        assert_true(r >= 0);
        if (r == 1) {
            got++;
            continue;
        }
        if (vq_driver_used_notify_enable(&drv[q].vq) == 1)
            continue;
        assert_true(fg_wait_fd(drv[q].call, 5000));
    }
}

/* One request, waited for; returns its status byte and used length. */
static uint8_t one(unsigned q, unsigned slot, uint32_t type, uint64_t sector, uint32_t len,
                   uint32_t *used)
{
    uint16_t head = post(q, slot, type, sector, len), id;
    kick(q);
    reap(q, 1, &id, used);
    assert_int_equal(id, head);
    return status_of(slot);
}

static void fill(unsigned slot, uint8_t seed, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        data_of(slot)[i] = (uint8_t)(seed + i * 7);
}

static void assert_image_holds(uint64_t sector, uint8_t seed, uint32_t len)
{
    static uint8_t buf[4096];
    read_image(sector * 512, buf, len);
    for (uint32_t i = 0; i < len; i++)
        assert_int_equal(buf[i], (uint8_t)(seed + i * 7));
}

static uint16_t used_idx(unsigned q)
{
    const uint8_t *p = gr.ram + drv[q].cfg.used_addr + 2;
    return (uint16_t)(__atomic_load_n(&p[0], __ATOMIC_ACQUIRE) |
                      __atomic_load_n(&p[1], __ATOMIC_ACQUIRE) << 8);
}

/* ---- tests ---- */

static void test_features_and_config(void **state)
{
    (void)state;
    open_image(false);
    fg_ram_up(&gr, "blk-test-ram", RAM_SIZE);
    connect_only();
    uint64_t f = fe.backend_features;
    assert_true(f & F(VIRTIO_F_VERSION_1));
    assert_true(f & F(VIRTIO_F_EVENT_IDX));
    assert_true(f & F(VIRTIO_F_INDIRECT_DESC));
    assert_int_equal(
        f & ~(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX) | F(VIRTIO_F_INDIRECT_DESC)),
        blk_image_features(img));
    assert_true(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_CONFIG));
    assert_true(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_MQ));
    assert_true(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_REPLY_ACK));
    assert_int_equal(fe.max_queues, NQUEUES);

    /* Before FLUSH is negotiated the device is writethrough, and says so. */
    struct virtio_blk_config cfg;
    assert_int_equal(vhost_fe_get_config(&fe, sizeof(cfg)), 0);
    memcpy(&cfg, fe.config, sizeof(cfg));
    assert_int_equal(le64toh(cfg.capacity), IMG_SIZE / 512);
    assert_int_equal(le16toh(cfg.num_queues), NQUEUES);
    assert_int_equal(le32toh(cfg.seg_max), 8);
    assert_int_equal(cfg.writeback, 0);
    /* A shorter read, as a frontend built for an older layout makes. */
    assert_int_equal(vhost_fe_get_config(&fe, 36), 0);
    assert_int_equal(fe.config_len, 36);

    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want)), 0);
    assert_int_equal(vhost_fe_get_config(&fe, sizeof(cfg)), 0);
    memcpy(&cfg, fe.config, sizeof(cfg));
    assert_int_equal(cfg.writeback, 1);
    /* Without FLUSH: writethrough again. */
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want & ~F(VIRTIO_BLK_F_FLUSH))),
                     0);
    assert_int_equal(vhost_fe_get_config(&fe, sizeof(cfg)), 0);
    assert_int_equal(((struct virtio_blk_config *)fe.config)->writeback, 0);
    disconnect();
    fg_ram_down(&gr);
    close_image();
}

static void test_io_on_two_queues(void **state)
{
    (void)state;
    up(false);
    uint32_t used;
    fill(0, 1, 4096);
    assert_int_equal(one(0, 0, VIRTIO_BLK_T_OUT, 8, 4096, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 1);
    fill(1, 99, 2048);
    assert_int_equal(one(1, 1, VIRTIO_BLK_T_OUT, 100, 2048, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(one(0, 2, VIRTIO_BLK_T_FLUSH, 0, 0, &used), VIRTIO_BLK_S_OK);
    assert_image_holds(8, 1, 4096);
    assert_image_holds(100, 99, 2048);

    /* What queue 0 wrote, queue 1 reads. */
    memset(data_of(3), 0, 4096);
    assert_int_equal(one(1, 3, VIRTIO_BLK_T_IN, 8, 4096, &used), VIRTIO_BLK_S_OK);
    assert_int_equal(used, 4097);
    for (uint32_t i = 0; i < 4096; i++)
        assert_int_equal(data_of(3)[i], (uint8_t)(1 + i * 7));
    /* Untouched sectors read back as the file was. */
    assert_int_equal(one(0, 4, VIRTIO_BLK_T_IN, 1000, 512, &used), VIRTIO_BLK_S_OK);
    for (uint32_t i = 0; i < 512; i++)
        assert_int_equal(data_of(4)[i], file_pattern(1000 * 512 + i));

    memset(data_of(5), 0, VIRTIO_BLK_ID_BYTES);
    assert_int_equal(one(1, 5, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, &used),
                     VIRTIO_BLK_S_OK);
    assert_memory_equal(data_of(5), SERIAL, sizeof(SERIAL));

    /* Beyond the capacity: an error for the guest, not for the connection. */
    assert_int_equal(one(0, 6, VIRTIO_BLK_T_IN, IMG_SIZE / 512, 512, &used), VIRTIO_BLK_S_IOERR);
    assert_int_equal(one(0, 7, 77, 0, 0, &used), VIRTIO_BLK_S_UNSUPP);
    down();
}

static void test_many_in_flight(void **state)
{
    (void)state;
    up(false);
    /* A chain is 3 descriptors: QSIZE / 3 requests fill the ring. */
    const unsigned n = QSIZE / 3;
    uint16_t heads[QSIZE], ids[QSIZE];
    uint32_t lens[QSIZE];
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned i = 0; i < n; i++) {
            fill(i, (uint8_t)(round * 31 + i), 4096);
            heads[i] = post(round % 2, i, VIRTIO_BLK_T_OUT, 8ull * (i + round * n), 4096);
        }
        kick(round % 2);
        reap(round % 2, n, ids, lens);
        for (unsigned i = 0; i < n; i++) {
            unsigned k = 0;
            while (k < n && heads[k] != ids[i])
                k++;
            assert_true(k < n);
            assert_int_equal(status_of(k), VIRTIO_BLK_S_OK);
            assert_int_equal(lens[i], 1);
        }
        for (unsigned i = 0; i < n; i++)
            assert_image_holds(8ull * (i + round * n), (uint8_t)(round * 31 + i), 4096);
    }
    down();
}

/*
 * A batch bound of 4 KiB: every request goes out, and what finished is completed, before
 * the next one is taken from the ring. Writes then reads of a full ring: every request
 * completes once, with the right data, whatever batch its completion came in.
 */
static void test_bounded_batches(void **state)
{
    (void)state;
    batch_kib = 4;
    up(false);
    batch_kib = 0;
    const unsigned n = QSIZE / 3;
    uint16_t heads[QSIZE], ids[QSIZE];
    uint32_t lens[QSIZE];
    for (unsigned pass = 0; pass < 2; pass++) {
        uint32_t type = pass == 0 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
        for (unsigned i = 0; i < n; i++) {
            if (pass == 0)
                fill(i, (uint8_t)(17 + i), 4096);
            else
                memset(data_of(i), 0, 4096);
            heads[i] = post(0, i, type, 8ull * i, 4096);
        }
        uint16_t before = used_idx(0);
        kick(0);
        reap(0, n, ids, lens);
        assert_int_equal((uint16_t)(used_idx(0) - before), n);
        bool seen[QSIZE] = {false};
        for (unsigned i = 0; i < n; i++) {
            unsigned k = 0;
            while (k < n && heads[k] != ids[i])
                k++;
            assert_true(k < n);
            assert_false(seen[k]);
            seen[k] = true;
            assert_int_equal(status_of(k), VIRTIO_BLK_S_OK);
            assert_int_equal(lens[i], pass == 0 ? 1 : 4097);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        assert_image_holds(8ull * i, (uint8_t)(17 + i), 4096);
        for (uint32_t b = 0; b < 4096; b++)
            assert_int_equal(data_of(i)[b], (uint8_t)(17 + i + b * 7));
    }
    down();
}

/* GET_VRING_BASE and SET_MEM_TABLE with requests in flight: they complete first. */
static void test_stop_and_remap_in_flight(void **state)
{
    (void)state;
    up(false);
    const unsigned n = QSIZE / 3;
    for (unsigned i = 0; i < n; i++) {
        fill(i, (uint8_t)(i + 5), 4096);
        post(0, i, VIRTIO_BLK_T_OUT, 8ull * i, 4096);
    }
    kick(0);
    uint16_t next = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), 0);
    /* The reply came after every request had completed into the used ring. */
    assert_int_equal(next, n);
    assert_int_equal(used_idx(0), n);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(status_of(i), VIRTIO_BLK_S_OK);
        assert_image_holds(8ull * i, (uint8_t)(i + 5), 4096);
    }
    uint16_t ids[QSIZE];
    uint32_t lens[QSIZE];
    reap(0, n, ids, lens);

    /* The ring resumes where it stopped; a new table arrives with reads in flight. */
    struct vhost_fe_vring r = fg_ring_vring(&drv[0], next);
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &r), 0);
    for (unsigned i = 0; i < n; i++) {
        memset(data_of(i), 0, 4096);
        post(0, i, VIRTIO_BLK_T_IN, 8ull * i, 4096);
    }
    kick(0);
    fg_set_mem_table(&fe, &gr);
    reap(0, n, ids, lens);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(status_of(i), VIRTIO_BLK_S_OK);
        for (uint32_t b = 0; b < 4096; b++)
            assert_int_equal(data_of(i)[b], (uint8_t)(i + 5 + b * 7));
    }
    /* And it still works on the new table. */
    uint32_t used;
    assert_int_equal(one(0, 0, VIRTIO_BLK_T_FLUSH, 0, 0, &used), VIRTIO_BLK_S_OK);
    down();
}

/*
 * A driver may make more chains available than the engine has slots (here one head
 * published 16 times on a ring of 8): the backend takes 8 and stops taking chains
 * with kicks still suppressed, so an EVENT_IDX driver does not kick for the next 8;
 * the backend must come back to the ring by itself once slots are free. To catch
 * it in that state, the backend is held in control messages sent in pieces: it
 * handles kicks before a message, drains the engine before reading one, and
 * resumes rings that ran out of slots only after it.
 */
static void test_more_chains_than_slots(void **state)
{
    (void)state;
    open_image(false);
    fg_ram_up(&gr, "blk-test-ram", RAM_SIZE);
    connect_with(want);
    queue_up(0, 8);
    uint16_t head = post(0, 0, VIRTIO_BLK_T_IN, 0, 4096);
    uint8_t *avail = gr.ram + drv[0].cfg.avail_addr;
    for (unsigned i = 1; i < 8; i++) {
        avail[4 + 2 * i] = (uint8_t)head;
        avail[5 + 2 * i] = 0;
    }
    __atomic_store_n(&avail[2], 8, __ATOMIC_RELEASE);
    /* Two SET_OWNER messages (harmless, no reply) as 4 + (8 + 4) + 8 bytes. */
    struct vhost_user_hdr owner[2] = {
        {.request = VHOST_USER_SET_OWNER, .flags = VHOST_USER_VERSION},
        {.request = VHOST_USER_SET_OWNER, .flags = VHOST_USER_VERSION},
    };
    const uint8_t *bytes = (const uint8_t *)owner;
    assert_int_equal(write(fe.sock, bytes, 4), 4);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL); /* the backend now waits for the rest of the first message */
    uint64_t one_ = 1;
    assert_int_equal(write(drv[0].kick, &one_, sizeof(one_)), sizeof(one_));
    /* Its next round sees the kick (takes 8: no slot left) and the second message. */
    assert_int_equal(write(fe.sock, bytes + 4, 12), 12);

    /* It drained before reading the message: all 8 completed, none more taken. */
    ts.tv_nsec = 1000000;
    for (unsigned t = 0; used_idx(0) != 8 && t < 5000; t++)
        nanosleep(&ts, NULL);
    assert_int_equal(used_idx(0), 8);
    for (unsigned i = 8; i < 16; i++) {
        avail[4 + 2 * (i % 8)] = (uint8_t)head;
        avail[5 + 2 * (i % 8)] = 0;
    }
    __atomic_store_n(&avail[2], 16, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    const uint8_t *ev = gr.ram + drv[0].cfg.used_addr + 4 + 8 * 8;
    uint16_t event = (uint16_t)(__atomic_load_n(&ev[0], __ATOMIC_ACQUIRE) |
                                __atomic_load_n(&ev[1], __ATOMIC_ACQUIRE) << 8);
    if ((uint16_t)(16 - event - 1) < (uint16_t)(16 - 8))
        assert_int_equal(write(drv[0].kick, &one_, sizeof(one_)), sizeof(one_));
    assert_int_equal(write(fe.sock, bytes + 16, 8), 8);

    for (unsigned t = 0; used_idx(0) != 16 && t < 5000; t++)
        nanosleep(&ts, NULL);
    assert_int_equal(used_idx(0), 16);
    const uint8_t *used = gr.ram + drv[0].cfg.used_addr;
    for (unsigned i = 0; i < 8; i++) {
        uint32_t id, len;
        memcpy(&id, used + 4 + 8 * i, 4);
        memcpy(&len, used + 8 + 8 * i, 4);
        assert_int_equal(le32toh(id), head);
        assert_int_equal(le32toh(len), 4097);
    }
    assert_false(fg_wait_fd(drv[0].err, 0));
    uint16_t next = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), 0);
    assert_int_equal(next, 16);
    disconnect();
    fg_ring_close(&drv[0]);
    fg_ram_down(&gr);
    close_image();
}

/* The device outlives connections: a second frontend starts from scratch. */
static void test_reconnect(void **state)
{
    (void)state;
    up(false);
    uint32_t used;
    fill(0, 42, 4096);
    assert_int_equal(one(0, 0, VIRTIO_BLK_T_OUT, 16, 4096, &used), VIRTIO_BLK_S_OK);
    disconnect();
    for (unsigned q = 0; q < NQUEUES; q++)
        fg_ring_close(&drv[q]);

    connect_only();
    struct virtio_blk_config cfg;
    assert_int_equal(vhost_fe_get_config(&fe, sizeof(cfg)), 0);
    assert_int_equal(((struct virtio_blk_config *)fe.config)->writeback, 0);
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want)), 0);
    fg_set_mem_table(&fe, &gr);
    for (unsigned q = 0; q < NQUEUES; q++)
        queue_up(q, QSIZE);
    memset(data_of(1), 0, 4096);
    assert_int_equal(one(1, 1, VIRTIO_BLK_T_IN, 16, 4096, &used), VIRTIO_BLK_S_OK);
    for (uint32_t i = 0; i < 4096; i++)
        assert_int_equal(data_of(1)[i], (uint8_t)(42 + i * 7));
    down();
}

static void test_read_only(void **state)
{
    (void)state;
    up(true);
    assert_true(fe.backend_features & F(VIRTIO_BLK_F_RO));
    assert_true(fe.acked_features & F(VIRTIO_BLK_F_RO));
    uint32_t used;
    fill(0, 3, 4096);
    assert_int_equal(one(0, 0, VIRTIO_BLK_T_OUT, 0, 4096, &used), VIRTIO_BLK_S_IOERR);
    uint8_t buf[4096];
    read_image(0, buf, sizeof(buf));
    for (uint32_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], file_pattern(i));
    assert_int_equal(one(1, 1, VIRTIO_BLK_T_IN, 0, 4096, &used), VIRTIO_BLK_S_OK);
    assert_memory_equal(data_of(1), buf, sizeof(buf));
    down();
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_features_and_config),
        T(test_io_on_two_queues),
        T(test_many_in_flight),
        T(test_bounded_batches),
        T(test_stop_and_remap_in_flight),
        T(test_more_chains_than_slots),
        T(test_reconnect),
        T(test_read_only),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
