/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vsock end to end, in one process: bulkhead's own vhost-user frontend drives
 * the device (vsock_dev.c) over a socketpair, a memfd is guest RAM, the test is the
 * guest's virtio-vsock driver (rx, tx and event rings, credit accounting), a thread
 * runs the program's poll loop, and the host side is real unix sockets in a temporary
 * directory. Covers the features and configuration, the TRANSPORT_RESET event (again
 * after a reconnect, which resets the connections), a guest connecting to a host
 * listener and a host client connecting to the guest with data both ways verified, a
 * host listener that never reads stalling only its own connection, RST for a port with
 * no listener, and malformed packets that are dropped or reset without harm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/vsock/conn.h"
#include "backends/vsock/hdr.h"
#include "backends/vsock/vsock_dev.h"
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MiB       (1024ull * 1024ull)
#define RAM_SIZE  (4 * MiB)
#define QSIZE     128
#define CID       33u
#define BUF_ALLOC (64u * 1024u) /* the device's --buffer-size */
#define GUEST_BUF (64u * 1024u) /* the guest's buf_alloc */
#define RING_BASE 0x10000ull    /* queue q at + 0x8000 q */
#define EV_GPA    0x40000ull    /* event buffer i at + 16 i */
#define NEV       4
#define RX_GPA    0x100000ull /* rx buffer i at + RX_STRIDE i */
#define RX_STRIDE 0x2000ull
#define RX_LEN    (VSOCK_HDR_SIZE + 4096u)
#define NRX       64
#define TX_GPA    0x200000ull /* tx slot i: header at + TX_STRIDE i, payload at + 0x100 */
#define TX_STRIDE 0x2000ull
#define TX_MAX    4096u
#define NTX       48

#define F(bit) (1ull << (bit))

/* ---- the backend: the device and the program's loop in a thread ---- */

static char dir[128];
static char base[200];
static int ulisten = -1;
static struct vsock_dev vd;
static struct vhost_be be;
static pthread_t loop;
static int loop_result;

static void *loop_thread(void *arg)
{
    (void)arg;
    unsigned max = vsock_dev_max_pollfds(&vd);
    struct pollfd *pfd = calloc(max, sizeof(*pfd));
    assert_non_null(pfd);
    for (;;) {
        unsigned n = vsock_dev_pollfds(&vd, pfd, max);
        if (poll(pfd, n, vsock_dev_poll_timeout(&vd)) < 0) {
            if (errno == EINTR)
                continue;
            loop_result = -errno;
            break;
        }
        int r = vsock_dev_dispatch(&vd, pfd, n);
        if (r < 0) {
            loop_result = r;
            break;
        }
    }
    vsock_dev_detach(&vd);
    free(pfd);
    return NULL;
}

/* ---- guest RAM, the frontend, the driver's rings ---- */

static struct vhost_frontend fe;
static struct fg_ram gr;
static struct fg_ring drv[VSOCK_NR_QUEUES];

static int rx_of_head[QSIZE]; /* rx buffer of a head in flight */
static int tx_of_head[QSIZE]; /* tx slot of a head in flight */
static int ev_of_head[QSIZE]; /* event buffer of a head in flight */
static int tx_free[NTX];
static unsigned nr_tx_free;
static unsigned events_seen;

static void kick(unsigned q)
{
    fg_kick(&drv[q]);
}

static void post_rx(int i)
{
    struct vq_seg s = {RX_GPA + RX_STRIDE * (uint64_t)i, RX_LEN};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv[VSOCK_RXQ].vq, &s, 0, 1, &head), 0);
    rx_of_head[head] = i;
}

static void post_event(int i)
{
    struct vq_seg s = {EV_GPA + 16ull * (uint64_t)i, 8};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv[VSOCK_EVQ].vq, &s, 0, 1, &head), 0);
    ev_of_head[head] = i;
}

static const uint64_t want = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX);

/* Frontend connected and negotiated; the device thread running. */
static void connect_frontend(void)
{
    int sv[2];
    fg_socketpair(sv);
    assert_int_equal(vhost_be_init(&be, sv[1], &vd.dev), 0);
    vsock_dev_attach(&vd, &be);
    loop_result = 0;
    assert_int_equal(pthread_create(&loop, NULL, loop_thread, NULL), 0);
    fg_frontend_up(&fe, sv[0]);
}

/* The driver starts: rings up, every rx and event buffer offered. */
static void driver_up(void)
{
    assert_int_equal(vhost_fe_set_features(&fe, vhost_fe_offer(&fe, want)), 0);
    fg_set_mem_table(&fe, &gr);
    for (unsigned q = 0; q < VSOCK_NR_QUEUES; q++)
        fg_ring_up(&drv[q], &fe, &gr, q, QSIZE, F(VIRTIO_F_EVENT_IDX), RING_BASE + q * 0x8000ull,
                   0x1000);
    for (int i = 0; i < NRX; i++)
        post_rx(i);
    for (int i = 0; i < NEV; i++)
        post_event(i);
    nr_tx_free = 0;
    for (int i = 0; i < NTX; i++)
        tx_free[nr_tx_free++] = i;
    events_seen = 0;
    kick(VSOCK_RXQ);
    kick(VSOCK_EVQ);
}

static void disconnect_frontend(void)
{
    vhost_fe_close(&fe);
    assert_int_equal(pthread_join(loop, NULL), 0);
    assert_int_equal(loop_result, -ECONNRESET);
    for (unsigned q = 0; q < VSOCK_NR_QUEUES; q++)
        fg_ring_close(&drv[q]);
}

static void set_path(struct sockaddr_un *sa, const char *p)
{
    assert_true(strlen(p) < sizeof(sa->sun_path));
    memcpy(sa->sun_path, p, strlen(p) + 1);
}

static int listen_path(const char *p, bool nonblock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    set_path(&sa, p);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    assert_true(fd >= 0);
    unlink(p);
    assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static void device_up(void)
{
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof(dir), "%s/test_vsock.XXXXXX", tmp);
    assert_non_null(mkdtemp(dir));
    snprintf(base, sizeof(base), "%s/v", dir);
    ulisten = listen_path(base, true);
    struct vsock_dev_opts o = {.guest_cid = CID,
                               .uds_path = base,
                               .buf_alloc = BUF_ALLOC,
                               .max_conns = 16,
                               .listen_fd = ulisten};
    assert_int_equal(vsock_dev_init(&vd, &o), 0);
    fg_ram_up(&gr, "vsock-test-ram", RAM_SIZE);
}

static void device_down(void)
{
    vsock_dev_fini(&vd);
    fg_ram_down(&gr);
    close(ulisten);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void up(void)
{
    device_up();
    connect_frontend();
    driver_up();
}

static void down(void)
{
    disconnect_frontend();
    device_down();
}

/* ---- the guest's vsock layer ---- */

struct gconn {
    bool used;
    uint32_t gport, hport;
    bool established, reset;
    uint32_t peer_shut;
    uint32_t peer_buf_alloc, peer_fwd_cnt; /* the device's credit for us */
    uint32_t tx_cnt;                       /* bytes we sent */
    uint32_t fwd_cnt, last_fwd_sent;       /* bytes we consumed, and last told */
    uint64_t rx_bytes;                     /* bytes received, checked against the pattern */
    uint8_t rx_seed;
};
static struct gconn gc[8];
static uint32_t guest_listen_port; /* REQUESTs to this port are accepted */

static uint8_t pattern(uint8_t seed, uint64_t i)
{
    return (uint8_t)(seed + i * 31 + (i >> 9));
}

static struct gconn *gfind(uint32_t gport, uint32_t hport)
{
    for (unsigned i = 0; i < 8; i++) {
        if (gc[i].used && gc[i].gport == gport && gc[i].hport == hport)
            return &gc[i];
    }
    return NULL;
}

static struct gconn *gnew(uint32_t gport, uint32_t hport, uint8_t rx_seed)
{
    for (unsigned i = 0; i < 8; i++) {
        if (!gc[i].used) {
            gc[i] =
                (struct gconn){.used = true, .gport = gport, .hport = hport, .rx_seed = rx_seed};
            return &gc[i];
        }
    }
    fail();
    return NULL;
}

static void reap_tx(void)
{
    uint16_t id;
    uint32_t len;
    int r;
    while ((r = vq_driver_get_used(&drv[VSOCK_TXQ].vq, &id, &len)) == 1) {
        assert_int_equal(len, 0);
        tx_free[nr_tx_free++] = tx_of_head[id];
    }
    assert_int_equal(r, 0);
}

static void pump(int ms);

/*
 * Send one packet: the header (split across two descriptors when asked, as a driver
 * may) and the payload.
 */
static void tx_raw(const struct vsock_hdr *h, const void *data, uint32_t len, bool split)
{
    for (int i = 0; i < 2000 && nr_tx_free == 0; i++)
        pump(5);
    assert_true(nr_tx_free > 0);
    int s = tx_free[--nr_tx_free];
    uint64_t g = TX_GPA + TX_STRIDE * (uint64_t)s;
    vsock_hdr_encode(h, gr.ram + g);
    if (len > 0)
        memcpy(gr.ram + g + 0x100, data, len);
    struct vq_seg segs[3];
    unsigned n = 0;
    if (split) {
        segs[n++] = (struct vq_seg){g, 20};
        segs[n++] = (struct vq_seg){g + 20, VSOCK_HDR_SIZE - 20};
    } else {
        segs[n++] = (struct vq_seg){g, VSOCK_HDR_SIZE};
    }
    if (len > 0)
        segs[n++] = (struct vq_seg){g + 0x100, len};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv[VSOCK_TXQ].vq, segs, n, 0, &head), 0);
    tx_of_head[head] = s;
    kick(VSOCK_TXQ);
}

static struct vsock_hdr ghdr(const struct gconn *c, uint16_t op)
{
    return (struct vsock_hdr){.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = c->gport,
                              .dst_port = c->hport,
                              .type = VSOCK_TYPE_STREAM,
                              .op = op,
                              .buf_alloc = GUEST_BUF,
                              .fwd_cnt = c->fwd_cnt};
}

static void gsend_op(struct gconn *c, uint16_t op, uint32_t flags)
{
    struct vsock_hdr h = ghdr(c, op);
    h.flags = flags;
    c->last_fwd_sent = c->fwd_cnt;
    tx_raw(&h, NULL, 0, op == VSOCK_OP_REQUEST);
}

static uint32_t gcredit(const struct gconn *c)
{
    return vsock_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
}

/* Send as much of @p len as the credit allows now; returns bytes sent. */
static uint32_t gsend_data(struct gconn *c, uint8_t seed, uint64_t off, uint32_t len)
{
    uint32_t sent = 0;
    static uint8_t chunk[TX_MAX];
    while (sent < len && gcredit(c) > 0 && !c->reset) {
        uint32_t n = len - sent;
        if (n > TX_MAX)
            n = TX_MAX;
        if (n > gcredit(c))
            n = gcredit(c);
        for (uint32_t i = 0; i < n; i++)
            chunk[i] = pattern(seed, off + sent + i);
        struct vsock_hdr h = ghdr(c, VSOCK_OP_RW);
        h.len = n;
        c->last_fwd_sent = c->fwd_cnt;
        tx_raw(&h, chunk, n, false);
        c->tx_cnt += n;
        sent += n;
    }
    return sent;
}

static void rx_packet(const uint8_t *buf, uint32_t len)
{
    struct vsock_hdr h;
    assert_true(len >= VSOCK_HDR_SIZE);
    vsock_hdr_decode(buf, &h);
    assert_int_equal(len, VSOCK_HDR_SIZE + h.len);
    assert_int_equal(h.src_cid, VSOCK_HOST_CID);
    assert_int_equal(h.dst_cid, CID);
    assert_int_equal(h.buf_alloc, BUF_ALLOC);
    struct gconn *c = gfind(h.dst_port, h.src_port);
    if (h.op == VSOCK_OP_REQUEST) {
        assert_null(c);
        c = gnew(h.dst_port, h.src_port, 0);
        c->peer_buf_alloc = h.buf_alloc;
        c->peer_fwd_cnt = h.fwd_cnt;
        if (h.dst_port == guest_listen_port) {
            c->established = true;
            gsend_op(c, VSOCK_OP_RESPONSE, 0);
        } else {
            gsend_op(c, VSOCK_OP_RST, 0);
            c->used = false;
        }
        return;
    }
    if (c == NULL) {
        assert_int_equal(h.op, VSOCK_OP_RST); /* an RST for something we never had */
        gnew(h.dst_port, h.src_port, 0)->reset = true;
        return;
    }
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
    switch (h.op) {
    case VSOCK_OP_RESPONSE:
        c->established = true;
        break;
    case VSOCK_OP_RST:
        c->reset = true;
        break;
    case VSOCK_OP_SHUTDOWN:
        c->peer_shut |= h.flags;
        break;
    case VSOCK_OP_RW:
        assert_true(c->established);
        /* The device never sends past the credit we gave. */
        assert_true(h.len <= GUEST_BUF);
        for (uint32_t i = 0; i < h.len; i++)
            assert_int_equal(buf[VSOCK_HDR_SIZE + i], pattern(c->rx_seed, c->rx_bytes + i));
        c->rx_bytes += h.len;
        c->fwd_cnt += h.len; /* the application read it at once */
        if (c->fwd_cnt - c->last_fwd_sent >= GUEST_BUF / 2)
            gsend_op(c, VSOCK_OP_CREDIT_UPDATE, 0);
        break;
    case VSOCK_OP_CREDIT_REQUEST:
        gsend_op(c, VSOCK_OP_CREDIT_UPDATE, 0);
        break;
    default:
        break;
    }
}

static void reap_events(void)
{
    uint16_t id;
    uint32_t len;
    int r;
    while ((r = vq_driver_get_used(&drv[VSOCK_EVQ].vq, &id, &len)) == 1) {
        assert_int_equal(len, VSOCK_EVENT_SIZE);
        int i = ev_of_head[id];
        uint32_t ev;
        memcpy(&ev, gr.ram + EV_GPA + 16ull * (uint64_t)i, sizeof(ev));
        assert_int_equal(le32toh(ev), VSOCK_EVENT_TRANSPORT_RESET);
        events_seen++;
        post_event(i);
        kick(VSOCK_EVQ);
    }
    assert_int_equal(r, 0);
}

/* The driver's interrupt handler: everything used on every ring, or wait up to @p ms. */
static void pump(int ms)
{
    bool got = false;
    for (;;) {
        uint16_t id;
        uint32_t len;
        int r;
        while ((r = vq_driver_get_used(&drv[VSOCK_RXQ].vq, &id, &len)) == 1) {
            int i = rx_of_head[id];
            rx_packet(gr.ram + RX_GPA + RX_STRIDE * (uint64_t)i, len);
            post_rx(i);
            got = true;
        }
        assert_int_equal(r, 0);
        kick(VSOCK_RXQ);
        reap_tx();
        reap_events();
        if (got || ms == 0)
            return;
        bool pending = false;
        for (unsigned q = 0; q < VSOCK_NR_QUEUES; q++)
            pending |= vq_driver_used_notify_enable(&drv[q].vq) == 1;
        if (pending)
            continue;
        struct pollfd p[VSOCK_NR_QUEUES];
        for (unsigned q = 0; q < VSOCK_NR_QUEUES; q++)
            p[q] = (struct pollfd){.fd = drv[q].call, .events = POLLIN};
        if (poll(p, VSOCK_NR_QUEUES, ms) <= 0)
            return;
        for (unsigned q = 0; q < VSOCK_NR_QUEUES; q++) {
            uint64_t v;
            if (p[q].revents != 0)
                assert_int_equal(read(drv[q].call, &v, sizeof(v)), sizeof(v));
        }
        ms = 0;
    }
}

static bool pump_until(bool (*cond)(void *), void *arg)
{
    for (int i = 0; i < 1000; i++) {
        if (cond(arg))
            return true;
        pump(10);
    }
    return cond(arg);
}

static bool is_established(void *arg)
{
    return ((struct gconn *)arg)->established;
}

static bool is_reset(void *arg)
{
    return ((struct gconn *)arg)->reset;
}

static bool has_events(void *arg)
{
    return events_seen >= *(unsigned *)arg;
}

/* ---- host side helpers ---- */

static int connect_path(const char *p)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    set_path(&sa, p);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int listen_port(uint32_t port)
{
    char p[256];
    snprintf(p, sizeof(p), "%s_%u", base, port);
    return listen_path(p, true);
}

static int accept_wait(int lfd)
{
    for (int i = 0; i < 1000; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0)
            return fd;
        pump(5);
    }
    fail();
    return -1;
}

/* Closed by the other end: EOF or ECONNRESET within a while (the guest pumping). */
static bool host_closed(int fd)
{
    for (int i = 0; i < 1000; i++) {
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r > 0)
            continue;
        pump(5);
    }
    return false;
}

/* Both directions at once: the guest sends @p n bytes, the host sends @p n bytes back. */
static void exchange(struct gconn *c, int fd, uint8_t g2h_seed, uint8_t h2g_seed, uint64_t n)
{
    static uint8_t buf[32768];
    uint64_t g_sent = 0, h_sent = 0, h_got = 0, h_start = c->rx_bytes;
    c->rx_seed = h2g_seed;
    uint64_t deadline = vsock_now_ns() + 20000000000ull;
    while (h_got < n || c->rx_bytes - h_start < n) {
        assert_true(vsock_now_ns() < deadline);
        if (g_sent < n) {
            uint32_t want_now = n - g_sent > 65536 ? 65536 : (uint32_t)(n - g_sent);
            g_sent += gsend_data(c, g2h_seed, g_sent, want_now);
        }
        if (h_sent < n) {
            size_t k = n - h_sent > sizeof(buf) ? sizeof(buf) : (size_t)(n - h_sent);
            for (size_t i = 0; i < k; i++)
                buf[i] = pattern(h2g_seed, h_sent + i);
            ssize_t w = send(fd, buf, k, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                h_sent += (uint64_t)w;
        }
        ssize_t r;
        while ((r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
            for (ssize_t i = 0; i < r; i++)
                assert_int_equal(buf[i], pattern(g2h_seed, h_got + (uint64_t)i));
            h_got += (uint64_t)r;
        }
        pump(1);
    }
    assert_int_equal(h_got, n);
    assert_int_equal(c->rx_bytes - h_start, n);
}

/* ---- tests ---- */

static void test_features_and_config(void **state)
{
    (void)state;
    device_up();
    connect_frontend();
    uint64_t f = fe.backend_features;
    assert_true(f & F(VIRTIO_F_VERSION_1));
    assert_true(f & F(VIRTIO_F_EVENT_IDX));
    assert_int_equal(f & ~(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_EVENT_IDX)), 0);
    assert_true(fe.protocol_features & F(VHOST_USER_PROTOCOL_F_CONFIG));
    assert_int_equal(fe.max_queues, VSOCK_NR_QUEUES);
    assert_int_equal(vhost_fe_get_config(&fe, 8), 0);
    uint64_t cid;
    memcpy(&cid, fe.config, sizeof(cid));
    assert_int_equal(le64toh(cid), CID);
    /* Part of it, as a frontend may read. */
    assert_int_equal(vhost_fe_get_config(&fe, 4), 0);
    assert_int_equal(fe.config_len, 4);
    disconnect_frontend();
    device_down();
}

static void test_transport_reset_and_reconnect(void **state)
{
    (void)state;
    up();
    unsigned one = 1;
    assert_true(pump_until(has_events, &one));
    /* A connection, then a new frontend (a restarted VM): the host's end is closed and
     * the guest told TRANSPORT_RESET again. */
    int lfd = listen_port(1000);
    struct gconn *c = gnew(7000, 1000, 0);
    gsend_op(c, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_established, c));
    int fd = accept_wait(lfd);
    disconnect_frontend();
    assert_true(host_closed(fd));
    memset(gc, 0, sizeof(gc));
    connect_frontend();
    driver_up();
    assert_true(pump_until(has_events, &one));
    assert_int_equal(events_seen, 1);
    pump(50);
    assert_int_equal(events_seen, 1); /* once per frontend */
    close(fd);
    close(lfd);
    down();
    assert_int_equal(vd.conns.stats.events, 2);
}

static void test_guest_connects_to_host(void **state)
{
    (void)state;
    up();
    int lfd = listen_port(1234);
    struct gconn *c = gnew(40000, 1234, 0);
    gsend_op(c, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_established, c));
    assert_int_equal(c->peer_buf_alloc, BUF_ALLOC);
    int fd = accept_wait(lfd);
    exchange(c, fd, 11, 22, 1 * MiB);
    /* The guest closes: RST, and the host's end sees EOF. */
    gsend_op(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH);
    assert_true(pump_until(is_reset, c));
    assert_true(host_closed(fd));
    close(fd);
    close(lfd);
    down();
    const struct vsock_stats *s = &vd.conns.stats;
    assert_int_equal(s->opened, 1);
    assert_int_equal(s->closed, 1);
    assert_int_equal(s->bytes_from_guest, 1 * MiB);
    assert_int_equal(s->bytes_to_guest, 1 * MiB);
}

static void test_host_connects_to_guest(void **state)
{
    (void)state;
    up();
    guest_listen_port = 5000;
    int cl = connect_path(base);
    assert_int_equal(write(cl, "CONNECT 5000\n", 13), 13);
    struct gconn *c = NULL;
    for (int i = 0; i < 1000 && c == NULL; i++) {
        pump(5);
        c = gfind(5000, VSOCK_FIRST_LOCAL_PORT);
    }
    assert_non_null(c);
    assert_true(c->established);
    char line[16] = {0};
    fcntl(cl, F_SETFL, O_NONBLOCK);
    size_t got = 0;
    for (int i = 0; i < 1000 && got < 8; i++) {
        ssize_t r = read(cl, line + got, 8 - got);
        if (r > 0)
            got += (size_t)r;
        else
            pump(5);
    }
    assert_string_equal(line, "OK 1024\n");
    exchange(c, cl, 33, 44, 512 * 1024);
    /* The host client hangs up: SHUTDOWN to the guest, RST once the guest is done. */
    close(cl);
    for (int i = 0; i < 1000 && c->peer_shut == 0; i++)
        pump(5);
    assert_int_equal(c->peer_shut, VSOCK_SHUTDOWN_SEND);
    gsend_op(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH);
    assert_true(pump_until(is_reset, c));
    guest_listen_port = 0;
    /* The guest refuses: the client is closed. */
    cl = connect_path(base);
    assert_int_equal(write(cl, "CONNECT 5001\n", 13), 13);
    assert_true(host_closed(cl));
    close(cl);
    down();
    assert_int_equal(vd.conns.stats.refused, 1);
}

/*
 * Two connections; the host end of the first never reads. Its guest runs out of
 * credit once the socket and the connection's buffer are full, while the second
 * connection moves data both ways; then the first's host reads and it moves again.
 */
static void test_stalled_host_stalls_only_its_connection(void **state)
{
    (void)state;
    up();
    int lfd = listen_port(2000);
    struct gconn *a = gnew(41000, 2000, 0);
    gsend_op(a, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_established, a));
    int fa = accept_wait(lfd);
    struct gconn *b = gnew(41001, 2000, 0);
    gsend_op(b, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_established, b));
    int fb = accept_wait(lfd);

    uint64_t a_sent = 0;
    for (int i = 0; i < 200; i++) {
        a_sent += gsend_data(a, 55, a_sent, 65536);
        pump(2);
    }
    assert_int_equal(gcredit(a), 0);
    assert_true(a_sent >= BUF_ALLOC);
    /* Meanwhile the other connection is not held up. */
    exchange(b, fb, 66, 77, 512 * 1024);
    pump(20);
    assert_int_equal(gcredit(a), 0); /* still stalled */
    assert_false(a->reset);

    /* The host reads now: all of it arrives, and the guest's credit comes back. */
    static uint8_t buf[65536];
    uint64_t got = 0;
    for (int i = 0; i < 2000 && got < a_sent; i++) {
        ssize_t r;
        while ((r = recv(fa, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
            for (ssize_t k = 0; k < r; k++)
                assert_int_equal(buf[k], pattern(55, got + (uint64_t)k));
            got += (uint64_t)r;
        }
        pump(2);
    }
    assert_int_equal(got, a_sent);
    for (int i = 0; i < 100 && gcredit(a) == 0; i++)
        pump(5);
    assert_true(gcredit(a) > 0);
    close(fa);
    close(fb);
    close(lfd);
    down();
    assert_int_equal(vd.conns.stats.drops[VSOCK_R_CREDIT], 0);
}

static void test_rst_without_listener(void **state)
{
    (void)state;
    up();
    struct gconn *c = gnew(42000, 4321, 0);
    gsend_op(c, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_reset, c));
    assert_false(c->established);
    down();
    assert_int_equal(vd.conns.stats.refused, 1);
}

static void test_malformed_packets(void **state)
{
    (void)state;
    up();
    /* A chain shorter than a header. */
    uint16_t head;
    int slot = tx_free[--nr_tx_free];
    struct vq_seg s = {TX_GPA + TX_STRIDE * (uint64_t)slot, 10};
    assert_int_equal(vq_driver_add(&drv[VSOCK_TXQ].vq, &s, 1, 0, &head), 0);
    tx_of_head[head] = slot;
    kick(VSOCK_TXQ);
    /* Not from our CID, not to the host: dropped without a word. */
    struct gconn x = {.gport = 43000, .hport = 1};
    struct vsock_hdr h = ghdr(&x, VSOCK_OP_REQUEST);
    h.src_cid = CID + 1;
    tx_raw(&h, NULL, 0, false);
    h = ghdr(&x, VSOCK_OP_REQUEST);
    h.dst_cid = 5;
    tx_raw(&h, NULL, 0, false);
    /* A length that lies: RST. */
    struct gconn *c = gnew(43001, 1, 0);
    h = ghdr(c, VSOCK_OP_RW);
    h.len = 100;
    tx_raw(&h, "fifty bytes of payload, not a hundred ...........", 50, false);
    assert_true(pump_until(is_reset, c));
    /* The device still works. */
    int lfd = listen_port(3000);
    struct gconn *d = gnew(43002, 3000, 0);
    gsend_op(d, VSOCK_OP_REQUEST, 0);
    assert_true(pump_until(is_established, d));
    int fd = accept_wait(lfd);
    exchange(d, fd, 1, 2, 64 * 1024);
    uint64_t v;
    assert_true(read(drv[VSOCK_TXQ].err, &v, sizeof(v)) < 0); /* the ring is not broken */
    close(fd);
    close(lfd);
    down();
    const struct vsock_stats *st = &vd.conns.stats;
    assert_int_equal(st->drops[VSOCK_R_SHORT], 1);
    assert_int_equal(st->drops[VSOCK_R_SRC_CID], 1);
    assert_int_equal(st->drops[VSOCK_R_DST_CID], 1);
    assert_int_equal(st->drops[VSOCK_R_LEN], 1);
}

static uint16_t used_idx(unsigned q)
{
    const uint8_t *p = gr.ram + drv[q].cfg.used_addr + 2;
    return (uint16_t)(__atomic_load_n(&p[0], __ATOMIC_ACQUIRE) |
                      __atomic_load_n(&p[1], __ATOMIC_ACQUIRE) << 8);
}

/*
 * A hostile driver: one tx head made available a whole ring's worth of times, twice.
 * Every entry is taken and completed (a ring holds only so many staged used entries),
 * and the ring stays healthy. Then a tx chain with a device-writable buffer breaks
 * the tx ring (the error eventfd says so), and nothing else: the process goes on.
 */
static void test_hostile_driver(void **state)
{
    (void)state;
    up();
    struct gconn x = {.gport = 44000, .hport = 1};
    struct vsock_hdr h = ghdr(&x, VSOCK_OP_CREDIT_UPDATE);
    h.dst_cid = 77; /* dropped quietly each time */
    int slot = tx_free[--nr_tx_free];
    uint64_t g = TX_GPA + TX_STRIDE * (uint64_t)slot;
    vsock_hdr_encode(&h, gr.ram + g);
    struct vq_seg seg = {g, VSOCK_HDR_SIZE};
    uint16_t head;
    assert_int_equal(vq_driver_add(&drv[VSOCK_TXQ].vq, &seg, 1, 0, &head), 0);
    uint8_t *avail = gr.ram + drv[VSOCK_TXQ].cfg.avail_addr;
    for (unsigned round = 1; round <= 2; round++) {
        for (unsigned i = 0; i < QSIZE; i++) {
            avail[4 + 2 * i] = (uint8_t)head;
            avail[5 + 2 * i] = (uint8_t)(head >> 8);
        }
        uint16_t idx = (uint16_t)(round * QSIZE);
        __atomic_store_n(&avail[2], (uint8_t)idx, __ATOMIC_RELEASE);
        __atomic_store_n(&avail[3], (uint8_t)(idx >> 8), __ATOMIC_RELEASE);
        uint64_t one = 1;
        assert_int_equal(write(drv[VSOCK_TXQ].kick, &one, sizeof(one)), sizeof(one));
        for (int i = 0; i < 1000 && used_idx(VSOCK_TXQ) != idx; i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(used_idx(VSOCK_TXQ), idx);
    }
    uint64_t v;
    assert_true(read(drv[VSOCK_TXQ].err, &v, sizeof(v)) < 0);

    /* The driver's own view is now out of step; a writable descriptor on tx. */
    struct vq_driver_slot fresh[QSIZE];
    struct vq_config cfg = drv[VSOCK_TXQ].cfg;
    struct vq txq;
    memset(gr.ram + cfg.desc_addr, 0, 0x3000);
    cfg.used_idx = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, VSOCK_TXQ, &(uint16_t){0}), 0);
    assert_int_equal(vq_driver_enable(&txq, &gr.gm, &cfg, fresh, QSIZE), 0);
    struct vhost_fe_vring r = {.size = QSIZE,
                               .desc_gpa = cfg.desc_addr,
                               .avail_gpa = cfg.avail_addr,
                               .used_gpa = cfg.used_addr,
                               .kick_fd = drv[VSOCK_TXQ].kick,
                               .call_fd = drv[VSOCK_TXQ].call,
                               .err_fd = drv[VSOCK_TXQ].err};
    assert_int_equal(vhost_fe_vring_start(&fe, VSOCK_TXQ, &r), 0);
    struct vq_seg segs[2] = {{g, VSOCK_HDR_SIZE}, {g + 0x100, 64}};
    assert_int_equal(vq_driver_add(&txq, segs, 1, 1, &head), 0);
    uint64_t one = 1;
    assert_int_equal(write(drv[VSOCK_TXQ].kick, &one, sizeof(one)), sizeof(one));
    struct pollfd p = {.fd = drv[VSOCK_TXQ].err, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    /* The frontend connection is still served. */
    assert_int_equal(vhost_fe_get_config(&fe, 8), 0);
    down();
    assert_int_equal(vd.conns.stats.drops[VSOCK_R_DST_CID], 2 * QSIZE);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_features_and_config),
        T(test_transport_reset_and_reconnect),
        T(test_guest_connects_to_host),
        T(test_host_connects_to_guest),
        T(test_stalled_host_stalls_only_its_connection),
        T(test_rst_without_listener),
        T(test_malformed_packets),
        T(test_hostile_driver),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
