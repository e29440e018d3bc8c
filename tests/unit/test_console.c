/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-console's device (con_device.c, con_host.c) behind the backends' common
 * serving loop (backend_prog.c): bulkhead's own vhost-user frontend drives it over a
 * socketpair, a memfd is guest RAM, the test is the guest's virtio-console driver,
 * and a thread runs backend_serve_connection(), the loop the program runs. The host
 * ends are real unix sockets in a temporary directory: port 0 is the console, ports
 * 1 and 2 are named. Covers the configuration space, the control handshake, data both
 * ways with checksums, input held while the guest has a port closed, a host reader
 * that stops reading (it stalls its own port only, also across a new memory table),
 * malformed control messages, data chains in the wrong direction, output without a
 * host client, the emergency write, a driver without multiport, and a chain held for
 * the host returned when its ring stops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/common/backend_prog.h"
#include "backends/console/con_device.h"
#include "backends/console/con_host.h"
#include "backends/console/virtio_console.h"
#include "fake_guest.h"
#include "core/guest_mem.h"
#include "core/log.h"
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NPORTS    3
#define NQUEUES   (2 + 2 * NPORTS)
#define QSIZE     64
#define SLOT      4096u
#define RAM_SIZE  (4u << 20)
#define RING_BASE 0x100000ull /* queue q: desc +0, avail +0x400, used +0x800 of 0x1000 q */
#define DATA_BASE 0x200000ull /* queue q: QSIZE slots of SLOT bytes at + 0x40000 q */
#define CTRL_RX   2u
#define CTRL_TX   3u
#define NAME1     "org.bulkhead.one"
#define NAME2     "two"
#define COLS      132
#define ROWS      43
#define F(bit)    (1ull << (bit))

static const uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX) |
                             F(VIRTIO_CONSOLE_F_MULTIPORT) | F(VIRTIO_CONSOLE_F_EMERG_WRITE) |
                             F(VIRTIO_CONSOLE_F_SIZE);

/* ---- the backend: device, host sockets, the program's loop in a thread ---- */

static char dir[32];
static char texts[NPORTS][64];    /* "unix:PATH": the host ends keep pointing into them */
static const char *paths[NPORTS]; /* the PATH part */
static struct con_device cd;
static pthread_t loop;
static enum backend_end loop_end;
static int be_sock; /* the backend's end of the socketpair, for the loop thread */

static void *loop_thread(void *arg)
{
    (void)arg;
    const struct backend_hooks hooks = con_device_hooks(&cd);
    loop_end = backend_serve_connection(be_sock, &cd.dev, &hooks, -1);
    return NULL;
}

static void device_up(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_console.XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *files[NPORTS] = {"con.sock", "one.sock", "two.sock"};
    const char *names[NPORTS] = {NULL, NAME1, NAME2};
    const struct con_device_opts o = {.size = true, .cols = COLS, .rows = ROWS};
    con_device_init(&cd, &o);
    for (unsigned i = 0; i < NPORTS; i++) {
        snprintf(texts[i], sizeof(texts[i]), "unix:%.24s/%s", dir, files[i]);
        paths[i] = texts[i] + 5;
        struct con_host_spec spec;
        assert_int_equal(con_host_parse(texts[i], i == 0, &spec), 0);
        assert_int_equal(con_device_add_port(&cd, names[i], &spec), 0);
    }
    assert_int_equal(cd.dev.nr_queues, NQUEUES);
}

/* ---- the frontend and the guest's driver ---- */

static struct vhost_frontend fe;
static struct fg_ram gr;

struct drvq {
    struct fg_ring r;
    uint16_t slot_of[QSIZE]; /* head -> data slot */
    bool busy[QSIZE];        /* data slot in flight */
    unsigned in_flight;
};
static struct drvq dq[NQUEUES];

static void connect_frontend(uint64_t features)
{
    fg_ram_up(&gr, "console-test-ram", RAM_SIZE);
    int sv[2];
    fg_socketpair(sv);
    be_sock = sv[1];
    assert_int_equal(pthread_create(&loop, NULL, loop_thread, NULL), 0);
    fg_frontend_up(&fe, sv[0]);
    assert_int_equal(vhost_fe_set_features(&fe, features), 0);
    fg_set_mem_table(&fe, &gr);
}

static void queue_up(unsigned q)
{
    memset(&dq[q], 0, sizeof(dq[q]));
    fg_ring_up(&dq[q].r, &fe, &gr, q, QSIZE, F(VIRTIO_F_EVENT_IDX), RING_BASE + 0x1000ull * q,
               0x400);
}

static uint64_t slot_gpa(unsigned q, unsigned s)
{
    return DATA_BASE + 0x40000ull * q + (uint64_t)SLOT * s;
}

/* A transmit buffer takes two descriptors: half the ring's worth of buffers at most. */
static bool has_free_slot(unsigned q)
{
    return dq[q].in_flight < QSIZE / 2;
}

/*
 * Offer one buffer of @p len bytes in a free slot: device-readable holding @p data
 * (split in two descriptors when long enough), or device-writable.
 */
static uint16_t post(unsigned q, bool writable, const void *data, uint32_t len)
{
    struct drvq *d = &dq[q];
    unsigned s = 0;
    while (d->busy[s])
        s++;
    assert_true(s < QSIZE && len <= SLOT);
    uint64_t gpa = slot_gpa(q, s);
    if (!writable)
        memcpy(gr.ram + gpa, data, len);
    struct vq_seg segs[2] = {{gpa, len}};
    unsigned n = 1;
    if (!writable && len > 100) {
        segs[0].len = 100;
        segs[1] = (struct vq_seg){gpa + 100, len - 100};
        n = 2;
    }
    uint16_t head;
    assert_int_equal(vq_driver_add(&d->r.vq, segs, writable ? 0 : n, writable ? n : 0, &head), 0);
    d->busy[s] = true;
    d->slot_of[head] = (uint16_t)s;
    d->in_flight++;
    return head;
}

static void kick(unsigned q)
{
    fg_kick(&dq[q].r);
}

/* Take one used entry, waiting up to @p ms; its bytes stay readable until the next post. */
static bool reap(unsigned q, int ms, uint8_t **data, uint32_t *len)
{
    struct drvq *d = &dq[q];
    for (;;) {
        uint16_t id;
        int r = vq_driver_get_used(&d->r.vq, &id, len);
        assert_true(r >= 0);
        if (r == 1) {
            unsigned s = d->slot_of[id];
            assert_true(d->busy[s]);
            d->busy[s] = false;
            d->in_flight--;
            if (data != NULL)
                *data = gr.ram + slot_gpa(q, s);
            return true;
        }
        if (vq_driver_used_notify_enable(&d->r.vq) == 1)
            continue;
        struct pollfd p = {.fd = d->r.call, .events = POLLIN};
        if (poll(&p, 1, ms) != 1)
            return false;
        uint64_t v;
        assert_int_equal(read(d->r.call, &v, sizeof(v)), sizeof(v));
    }
}

static void ctl_send_raw(const void *msg, uint32_t len)
{
    uint16_t head = post(CTRL_TX, false, msg, len);
    (void)head;
    kick(CTRL_TX);
    uint32_t used;
    assert_true(reap(CTRL_TX, 5000, NULL, &used));
    assert_int_equal(used, 0);
}

static void ctl_send(uint32_t id, uint16_t event, uint16_t value)
{
    struct virtio_console_control m = {htole32(id), htole16(event), htole16(value)};
    ctl_send_raw(&m, sizeof(m));
}

/* The next control message from the device; the buffer is offered again. */
static bool ctl_recv(int ms, struct virtio_console_control *m, char *extra, uint32_t *extra_len)
{
    uint8_t *data;
    uint32_t len;
    if (!reap(CTRL_RX, ms, &data, &len))
        return false;
    assert_true(len >= sizeof(*m) && len < sizeof(*m) + 128);
    memcpy(m, data, sizeof(*m));
    m->id = le32toh(m->id);
    m->event = le16toh(m->event);
    m->value = le16toh(m->value);
    *extra_len = len - (uint32_t)sizeof(*m);
    memcpy(extra, data + sizeof(*m), *extra_len);
    extra[*extra_len] = '\0';
    post(CTRL_RX, true, NULL, 256);
    kick(CTRL_RX);
    return true;
}

static void expect_ctl(uint32_t id, uint16_t event, uint16_t value, const char *name)
{
    struct virtio_console_control m = {0};
    char extra[160] = "";
    uint32_t n = 0;
    assert_true(ctl_recv(5000, &m, extra, &n));
    assert_int_equal(m.id, id);
    assert_int_equal(m.event, event);
    assert_int_equal(m.value, value);
    if (name != NULL)
        assert_string_equal(extra, name);
    else
        assert_int_equal(n, 0);
}

static void expect_no_ctl(void)
{
    struct virtio_console_control m;
    char extra[160];
    uint32_t n;
    assert_false(ctl_recv(100, &m, extra, &n));
}

/* The whole device up: loop, frontend, every queue, 32 control buffers offered. */
static void up_with(uint64_t features)
{
    device_up();
    connect_frontend(features);
    unsigned nq = (features & F(VIRTIO_CONSOLE_F_MULTIPORT)) ? NQUEUES : 2;
    for (unsigned q = 0; q < nq; q++)
        queue_up(q);
    if (nq > 2) {
        for (unsigned i = 0; i < 32; i++)
            post(CTRL_RX, true, NULL, 256);
        kick(CTRL_RX);
    }
}

/* DEVICE_READY, then every port announced, made ready and described. */
static void handshake(void)
{
    ctl_send(0xffffffffu, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (uint32_t i = 0; i < NPORTS; i++)
        expect_ctl(i, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
    ctl_send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    expect_ctl(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL);
    ctl_send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    expect_ctl(1, VIRTIO_CONSOLE_PORT_NAME, 0, NAME1);
    ctl_send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    expect_ctl(2, VIRTIO_CONSOLE_PORT_NAME, 0, NAME2);
    /* No host client yet: no PORT_OPEN. */
    expect_no_ctl();
}

static void down(void)
{
    vhost_fe_close(&fe);
    assert_int_equal(pthread_join(loop, NULL), 0);
    assert_int_equal(loop_end, BACKEND_END_CLOSED);
    for (unsigned q = 0; q < NQUEUES; q++) {
        if (dq[q].r.kick > 0)
            fg_ring_close(&dq[q].r);
    }
    memset(dq, 0, sizeof(dq));
    fg_ram_down(&gr);
    con_device_destroy(&cd);
    for (unsigned i = 0; i < NPORTS; i++)
        assert_int_equal(access(paths[i], F_OK), -1); /* sockets removed */
    assert_int_equal(rmdir(dir), 0);
}

/* ---- host clients and payloads ---- */

static int client(unsigned port)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, paths[port], strlen(paths[port]) + 1);
    assert_int_equal(connect(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* A client connects; the guest hears PORT_OPEN 1 for the port. */
static int client_open(unsigned port)
{
    int fd = client(port);
    expect_ctl(port, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL);
    return fd;
}

/* The byte at @p off of stream @p seed. */
static uint8_t pattern(uint64_t off, unsigned seed)
{
    uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull + seed;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return (uint8_t)(x >> 32);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_START 0xcbf29ce484222325ull

/* A stream in progress: what was produced and consumed, with checksums. */
struct stream {
    unsigned seed;
    uint64_t total, sent, recv;
    uint64_t sent_sum, recv_sum;
};

static struct stream stream(unsigned seed, uint64_t total)
{
    return (struct stream){seed, total, 0, 0, FNV_START, FNV_START};
}

static uint32_t produce(struct stream *s, uint8_t *buf, uint32_t max)
{
    uint32_t n = s->total - s->sent < max ? (uint32_t)(s->total - s->sent) : max;
    for (uint32_t i = 0; i < n; i++)
        buf[i] = pattern(s->sent + i, s->seed);
    return n;
}

static void produced(struct stream *s, const uint8_t *buf, uint32_t n)
{
    s->sent_sum = fnv(s->sent_sum, buf, n);
    s->sent += n;
}

static void consumed(struct stream *s, const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf[i], pattern(s->recv + i, s->seed));
    s->recv_sum = fnv(s->recv_sum, buf, n);
    s->recv += n;
}

/* Take what the client has, without waiting; false at EOF. */
static void client_drain(int fd, struct stream *s)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
            assert_true(errno == EAGAIN);
            return;
        }
        assert_true(n > 0);
        consumed(s, buf, (size_t)n);
    }
}

/* Guest output of @p s on @p port's transmitq, read by @p fd until it all arrived. */
static void guest_to_host(unsigned port, int fd, struct stream *s)
{
    unsigned q = port == 0 ? 1 : 3 + 2 * port;
    uint8_t buf[SLOT];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (s->recv < s->total || dq[q].in_flight > 0) {
        while (s->sent < s->total && has_free_slot(q)) {
            uint32_t n = produce(s, buf, SLOT);
            post(q, false, buf, n);
            produced(s, buf, n);
        }
        kick(q);
        client_drain(fd, s);
        uint32_t len;
        while (reap(q, 0, NULL, &len))
            assert_int_equal(len, 0);
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = dq[q].r.call, .events = POLLIN}};
        (void)poll(p, 2, 100);
        clock_gettime(CLOCK_MONOTONIC, &t);
        assert_true(t.tv_sec - t0.tv_sec < 20);
    }
    assert_int_equal(s->recv, s->total);
    assert_true(s->recv_sum == s->sent_sum);
}

/* Host input of @p s written by @p fd, taken by the guest from @p port's receiveq. */
static void host_to_guest(unsigned port, int fd, struct stream *s)
{
    unsigned q = port == 0 ? 0 : 2 + 2 * port;
    uint8_t buf[SLOT];
    while (has_free_slot(q))
        post(q, true, NULL, SLOT);
    kick(q);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (s->recv < s->total) {
        while (s->sent < s->total) {
            uint32_t n = produce(s, buf, SLOT);
            ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0) {
                assert_true(errno == EAGAIN);
                break;
            }
            produced(s, buf, (uint32_t)w);
        }
        uint8_t *data;
        uint32_t len;
        while (reap(q, 0, &data, &len)) {
            consumed(s, data, len);
            post(q, true, NULL, SLOT);
        }
        kick(q);
        struct pollfd p[2] = {{.fd = fd, .events = s->sent < s->total ? POLLOUT : 0},
                              {.fd = dq[q].r.call, .events = POLLIN}};
        (void)poll(p, 2, 100);
        clock_gettime(CLOCK_MONOTONIC, &t);
        assert_true(t.tv_sec - t0.tv_sec < 20);
    }
    assert_int_equal(s->recv, s->total);
    assert_true(s->recv_sum == s->sent_sum);
}

/* ---- tests ---- */

static void test_config_and_features(void **state)
{
    (void)state;
    up_with(want);
    assert_int_equal(fe.backend_features, want | F(VIRTIO_F_INDIRECT_DESC));
    assert_int_equal(fe.max_queues, NQUEUES);
    assert_true(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_CONFIG));
    struct virtio_console_config cfg;
    assert_int_equal(vhost_fe_get_config(&fe, sizeof(cfg)), 0);
    memcpy(&cfg, fe.config, sizeof(cfg));
    assert_int_equal(le16toh(cfg.cols), COLS);
    assert_int_equal(le16toh(cfg.rows), ROWS);
    assert_int_equal(le32toh(cfg.max_nr_ports), NPORTS);
    assert_int_equal(cfg.emerg_wr, 0);
    /* The read-only fields cannot be written. */
    uint16_t cols = 1;
    assert_int_equal(vhost_fe_set_config(&fe, 0, &cols, sizeof(cols)), -EREMOTEIO);
    down();

    /* Without --cols/--rows F_SIZE is not offered and the size reads 0. */
    const struct con_device_opts o = {0};
    con_device_init(&cd, &o);
    assert_false(cd.dev.features & F(VIRTIO_CONSOLE_F_SIZE));
    assert_true(cd.dev.features & F(VIRTIO_CONSOLE_F_MULTIPORT));
    struct con_host_spec none = {.kind = CON_HOST_NONE, .in_fd = -1, .out_fd = -1};
    assert_int_equal(con_device_add_port(&cd, "x", &none), -EINVAL); /* port 0 has no name */
    assert_int_equal(con_device_add_port(&cd, NULL, &none), 0);
    assert_int_equal(con_device_add_port(&cd, "bad/name", &none), -EINVAL);
    assert_int_equal(con_device_add_port(&cd, "", &none), -EINVAL);
    assert_int_equal(con_device_add_port(&cd, "ok-1.a_b", &none), 0);
    assert_int_equal(con_device_add_port(&cd, "ok-1.a_b", &none), -EINVAL); /* twice */
    assert_false(cd.ports[0].console);
    con_device_destroy(&cd);
}

static void test_handshake(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    /* A client on a named port: PORT_OPEN 1; it leaves: PORT_OPEN 0. */
    int c1 = client_open(1);
    close(c1);
    expect_ctl(1, VIRTIO_CONSOLE_PORT_OPEN, 0, NULL);
    int c0 = client_open(0);
    /* A driver that starts again is told everything again, the open port included. */
    ctl_send(0xffffffffu, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (uint32_t i = 0; i < NPORTS; i++)
        expect_ctl(i, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
    ctl_send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    expect_ctl(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL);
    expect_ctl(0, VIRTIO_CONSOLE_PORT_OPEN, 1, NULL);
    close(c0);
    expect_ctl(0, VIRTIO_CONSOLE_PORT_OPEN, 0, NULL);
    down();
    assert_int_equal(cd.ports[0].c.host_connects, 1);
    assert_int_equal(cd.ports[1].c.host_connects, 1);
}

/* Control messages wait for buffers: none offered, then some. */
static void test_control_waits_for_buffers(void **state)
{
    (void)state;
    device_up();
    connect_frontend(want);
    for (unsigned q = 0; q < NQUEUES; q++)
        queue_up(q);
    ctl_send(0xffffffffu, VIRTIO_CONSOLE_DEVICE_READY, 1);
    expect_no_ctl();
    post(CTRL_RX, true, NULL, 256);
    kick(CTRL_RX);
    expect_ctl(0, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL); /* ctl_recv offers one more */
    expect_ctl(1, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
    expect_ctl(2, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
    down();
}

static void test_data_both_ways(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    int c0 = client_open(0);
    int c1 = client_open(1);

    /* Input sent while the guest has the port closed is held, then delivered. */
    struct stream early = stream(7, 1000);
    uint8_t buf[1000];
    produce(&early, buf, sizeof(buf));
    assert_int_equal(send(c1, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    produced(&early, buf, sizeof(buf));
    post(4, true, NULL, SLOT);
    kick(4);
    uint8_t *data;
    uint32_t len;
    assert_false(reap(4, 200, &data, &len));
    ctl_send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    while (early.recv < early.total) {
        assert_true(reap(4, 5000, &data, &len));
        consumed(&early, data, len);
        post(4, true, NULL, SLOT);
        kick(4);
    }
    assert_true(early.recv_sum == early.sent_sum);

    ctl_send(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    struct stream s;
    s = stream(1, 300 * 1024 + 17);
    guest_to_host(0, c0, &s);
    s = stream(2, 300 * 1024 + 5);
    host_to_guest(0, c0, &s);
    s = stream(3, 320 * 1024 + 1);
    guest_to_host(1, c1, &s);
    s = stream(4, 280 * 1024 + 3);
    host_to_guest(1, c1, &s);
    close(c0);
    close(c1);
    down();
    assert_int_equal(cd.ports[0].c.to_host, 300 * 1024 + 17);
    assert_int_equal(cd.ports[0].c.to_guest, 300 * 1024 + 5);
    assert_int_equal(cd.ports[1].c.to_host, 320 * 1024 + 1);
    assert_int_equal(cd.ports[1].c.to_guest, 280 * 1024 + 3 + 1000);
    assert_int_equal(cd.ports[1].c.guest_opens, 1);
}

/*
 * Offer port @p port's transmitq 4 KiB buffers until the device keeps them: no
 * completion for half a second while the host client @p fd, which does not read, has a
 * socket buffer's worth waiting. Returns the chains the device holds back.
 */
static unsigned fill_until_stalled(unsigned port, int fd, struct stream *s)
{
    unsigned q = 3 + 2 * port;
    uint8_t buf[SLOT];
    for (unsigned round = 0; round < 20000; round++) {
        while (has_free_slot(q)) {
            uint32_t n = produce(s, buf, SLOT);
            post(q, false, buf, n);
            produced(s, buf, n);
        }
        kick(q);
        uint32_t len;
        bool none = !reap(q, 500, NULL, &len);
        while (reap(q, 0, NULL, &len))
            none = false;
        int unread = 0;
        assert_int_equal(ioctl(fd, FIONREAD, &unread), 0);
        if (none && unread >= 64 * 1024)
            return dq[q].in_flight;
    }
    fail_msg("the device never held port %u's output back", port);
    return 0;
}

/* Port 1's client stops reading: port 1 stalls, port 2 keeps moving. */
static void test_stalled_reader(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    int c1 = client_open(1);
    int c2 = client_open(2);
    const unsigned q1 = 5;

    /* Fill port 1 until the host end takes no more and chains stay with the device. */
    struct stream s1 = stream(11, UINT64_MAX);
    unsigned held = fill_until_stalled(1, c1, &s1);
    assert_true(held > 0);

    /* Port 2 moves, both ways, while port 1 is stuck. */
    struct stream s2 = stream(12, 200 * 1024);
    guest_to_host(2, c2, &s2);
    ctl_send(2, VIRTIO_CONSOLE_PORT_OPEN, 1);
    s2 = stream(13, 100 * 1024);
    host_to_guest(2, c2, &s2);
    uint32_t len;
    assert_false(reap(q1, 0, NULL, &len));
    assert_int_equal(dq[q1].in_flight, held);

    /*
     * A new memory table while the chain is held: the old mapping goes away, so the
     * device must not have kept pointers into it. Then the reader comes back, and
     * everything port 1 was given arrives, in order.
     */
    fg_set_mem_table(&fe, &gr);
    s1.total = s1.sent;
    guest_to_host(1, c1, &s1);
    close(c1);
    close(c2);
    down();
    assert_int_equal(cd.ports[1].c.to_host, s1.total);
    assert_int_equal(cd.ports[1].c.dropped, 0);
}

static void test_bad_control(void **state)
{
    (void)state;
    up_with(want);
    ctl_send(0xffffffffu, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (uint32_t i = 0; i < NPORTS; i++)
        expect_ctl(i, VIRTIO_CONSOLE_DEVICE_ADD, 0, NULL);
    /* Too short. */
    uint8_t shortmsg[4] = {1, 0, 0, 0};
    ctl_send_raw(shortmsg, sizeof(shortmsg));
    /* No such port. */
    ctl_send(NPORTS, VIRTIO_CONSOLE_PORT_READY, 1);
    ctl_send(0x80000000u, VIRTIO_CONSOLE_PORT_OPEN, 1);
    /* Unknown event, a device-to-driver event, a value out of range. */
    ctl_send(1, 42, 1);
    ctl_send(1, VIRTIO_CONSOLE_PORT_OPEN, 7);
    ctl_send(2, VIRTIO_CONSOLE_DEVICE_ADD, 0);
    /* A device-writable part in a control message. */
    struct virtio_console_control m = {htole32(1), htole16(VIRTIO_CONSOLE_PORT_READY), htole16(1)};
    memcpy(gr.ram + slot_gpa(CTRL_TX, 60), &m, sizeof(m));
    struct vq_seg segs[2] = {{slot_gpa(CTRL_TX, 60), 8}, {slot_gpa(CTRL_TX, 60) + 8, 8}};
    uint16_t head;
    assert_int_equal(vq_driver_add(&dq[CTRL_TX].r.vq, segs, 1, 1, &head), 0);
    kick(CTRL_TX);
    uint16_t id;
    uint32_t len;
    for (unsigned t = 0; t < 500 && vq_driver_get_used(&dq[CTRL_TX].r.vq, &id, &len) == 0; t++)
        usleep(10000);
    assert_int_equal(id, head);
    assert_int_equal(len, 0);
    /* None of them did anything, and the device goes on. */
    expect_no_ctl();
    ctl_send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    expect_ctl(2, VIRTIO_CONSOLE_PORT_NAME, 0, NAME2);
    assert_int_equal(poll(&(struct pollfd){.fd = dq[CTRL_TX].r.err, .events = POLLIN}, 1, 0), 0);
    down();
    assert_int_equal(cd.bad_control, 4);
    assert_int_equal(cd.ports[1].c.bad_control, 2);
    assert_int_equal(cd.ports[2].c.bad_control, 1);
    assert_int_equal(cd.ports[0].c.bad_control, 0);
}

/* Data chains in the wrong direction are returned empty and counted; the port goes on. */
static void test_bad_data_chains(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    int c1 = client_open(1);
    ctl_send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    /* A transmit chain with a device-writable part: nothing reaches the host. */
    uint64_t gpa = slot_gpa(5, 50);
    static const uint8_t secret[6] = {'s', 'e', 'c', 'r', 'e', 't'};
    memcpy(gr.ram + gpa, secret, sizeof(secret));
    struct vq_seg segs[2] = {{gpa, 6}, {gpa + 64, 64}};
    uint16_t head, id;
    uint32_t len;
    assert_int_equal(vq_driver_add(&dq[5].r.vq, segs, 1, 1, &head), 0);
    kick(5);
    for (unsigned t = 0; t < 500 && vq_driver_get_used(&dq[5].r.vq, &id, &len) == 0; t++)
        usleep(10000);
    assert_int_equal(id, head);
    assert_int_equal(len, 0);
    /* A receive chain with a device-readable part gets no input; the next one does. */
    gpa = slot_gpa(4, 50);
    memset(gr.ram + gpa, 0x11, 128);
    struct vq_seg rx[2] = {{gpa, 8}, {gpa + 64, 64}};
    assert_int_equal(vq_driver_add(&dq[4].r.vq, rx, 1, 1, &head), 0);
    kick(4);
    assert_int_equal(send(c1, "hello", 5, 0), 5);
    for (unsigned t = 0; t < 500 && vq_driver_get_used(&dq[4].r.vq, &id, &len) == 0; t++)
        usleep(10000);
    assert_int_equal(id, head);
    assert_int_equal(len, 0);
    assert_int_equal(gr.ram[gpa + 64], 0x11);
    post(4, true, NULL, SLOT);
    kick(4);
    uint8_t *data;
    assert_true(reap(4, 5000, &data, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    /* Port 1 still carries output. */
    struct stream s = stream(42, 10000);
    guest_to_host(1, c1, &s);
    char junk[16];
    assert_int_equal(recv(c1, junk, sizeof(junk), MSG_DONTWAIT), -1); /* "secret" never came */
    close(c1);
    down();
    assert_int_equal(cd.ports[1].c.bad_chains, 2);
    assert_int_equal(cd.ports[1].c.to_host, 10000);
    assert_int_equal(cd.ports[1].c.to_guest, 5);
}

/* Output with no host client is dropped and counted; the emergency write arrives. */
static void test_no_client_and_emergency_write(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    uint8_t buf[SLOT];
    memset(buf, 'x', sizeof(buf));
    for (unsigned i = 0; i < 3; i++)
        post(7, false, buf, 1000);
    kick(7);
    uint32_t len;
    for (unsigned i = 0; i < 3; i++)
        assert_true(reap(7, 5000, NULL, &len));

    int c0 = client_open(0);
    const char msg[] = "EMERG";
    for (unsigned i = 0; i < sizeof(msg) - 1; i++) {
        uint32_t v = htole32((uint32_t)(uint8_t)msg[i]);
        assert_int_equal(vhost_fe_set_config(&fe, VIRTIO_CONSOLE_CONFIG_EMERG_WR, &v, 4), 0);
    }
    char got[8] = {0};
    size_t have = 0;
    while (have < sizeof(msg) - 1) {
        struct pollfd p = {.fd = c0, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t n = recv(c0, got + have, sizeof(got) - 1 - have, 0);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_string_equal(got, msg);
    close(c0);
    down();
    assert_int_equal(cd.ports[2].c.dropped, 3000);
    assert_int_equal(cd.ports[2].c.to_host, 0);
    assert_int_equal(cd.ports[0].c.to_host, sizeof(msg) - 1);
}

/* A driver without F_MULTIPORT: port 0 alone, open from the start, no control queues. */
static void test_without_multiport(void **state)
{
    (void)state;
    up_with(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX));
    int c0 = client(0);
    struct stream s = stream(21, 64 * 1024);
    host_to_guest(0, c0, &s);
    s = stream(22, 64 * 1024);
    guest_to_host(0, c0, &s);
    close(c0);
    down();
}

/* A frontend that goes away while a transmit chain waits for the host: it is returned. */
static void test_disconnect_with_held_chain(void **state)
{
    (void)state;
    up_with(want);
    handshake();
    int c1 = client_open(1);
    const unsigned q1 = 5;
    struct stream s1 = stream(31, UINT64_MAX);
    assert_true(fill_until_stalled(1, c1, &s1) > 0);
    /* GET_VRING_BASE: the held chain comes back before the reply. */
    uint16_t next = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, q1, &next), 0);
    uint16_t id;
    uint32_t len;
    unsigned back = 0;
    while (vq_driver_get_used(&dq[q1].r.vq, &id, &len) == 1)
        back++;
    assert_int_equal(back, 1);
    close(c1);
    down();
    assert_true(cd.ports[1].c.dropped > 0);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_config_and_features),
        T(test_handshake),
        T(test_control_waits_for_buffers),
        T(test_data_both_ways),
        T(test_stalled_reader),
        T(test_bad_control),
        T(test_bad_data_chains),
        T(test_no_client_and_emergency_write),
        T(test_without_multiport),
        T(test_disconnect_with_held_chain),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
