/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vsock's connection table (src/backends/vsock/conn.c) without any ring: the
 * test plays the guest by calling vsock_conns_guest_packet() and vsock_conns_fill()
 * itself, and the host with real unix sockets in a temporary directory. Covers the
 * credit arithmetic (wrap-around included), the sender never going past the guest's
 * credit, credit updates, a guest that overruns its credit, both handshakes, refusals,
 * the shutdown sequences, lingering, deadlines, round-robin, and limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/vsock/conn.h"
#include "backends/vsock/hdr.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CID   42u
#define GPORT 50000u /* the guest's ephemeral port */

static char dir[128];
static char base[200];
static struct vsock_conns t;
static int ulisten = -1; /* the table's listener on base (host-initiated tests) */

/* ---- host side helpers ---- */

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

static int listen_port(uint32_t port)
{
    char p[256];
    snprintf(p, sizeof(p), "%s_%u", base, port);
    return listen_path(p, false);
}

static int connect_path(const char *p)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    set_path(&sa, p);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int accept_one(int lfd)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* One round of the host side: poll the table's sockets (up to @p ms), act on them. */
static void host_round(int ms)
{
    struct pollfd pfd[64];
    unsigned n = vsock_conns_pollfds(&t, pfd, 64);
    if (n > 0)
        assert_true(poll(pfd, n, ms) >= 0);
    vsock_conns_poll_events(&t, pfd, n, vsock_now_ns());
}

/* Read exactly @p len bytes from a host socket (with a deadline). */
static void host_read(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        struct pollfd q = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&q, 1, 2000), 1);
        ssize_t r = read(fd, p, len);
        assert_true(r > 0);
        p += r;
        len -= (size_t)r;
    }
}

static bool host_sees_eof(int fd)
{
    char c;
    struct pollfd q = {.fd = fd, .events = POLLIN};
    if (poll(&q, 1, 2000) != 1)
        return false;
    return read(fd, &c, 1) == 0;
}

/* Closed by the other end: EOF, or ECONNRESET when it closed with our bytes unread. */
static bool host_sees_close(int fd)
{
    char c;
    struct pollfd q = {.fd = fd, .events = POLLIN};
    if (poll(&q, 1, 2000) != 1)
        return false;
    ssize_t r = read(fd, &c, 1);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* ---- guest side helpers ---- */

static struct vsock_hdr ghdr(uint16_t op, uint32_t gport, uint32_t hport)
{
    return (struct vsock_hdr){.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = gport,
                              .dst_port = hport,
                              .type = VSOCK_TYPE_STREAM,
                              .op = op,
                              .buf_alloc = 1u << 20};
}

static void gsend_hdr(const struct vsock_hdr *h, const void *data, uint32_t len)
{
    struct vq_iovec iov = {(void *)data, len};
    vsock_conns_guest_packet(&t, h, len, &iov, len > 0 ? 1 : 0, vsock_now_ns());
}

static void gsend(uint16_t op, uint32_t gport, uint32_t hport, const void *data, uint32_t len)
{
    struct vsock_hdr h = ghdr(op, gport, hport);
    h.len = len;
    gsend_hdr(&h, data, len);
}

static uint8_t rxbuf[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD];

/* The next packet for the guest, into a buffer with @p room payload bytes. */
static int grecv_room(struct vsock_hdr *h, uint8_t **data, uint32_t room)
{
    *h = (struct vsock_hdr){0};
    if (data != NULL)
        *data = rxbuf + VSOCK_HDR_SIZE;
    struct vq_iovec iov = {rxbuf, VSOCK_HDR_SIZE + room};
    uint32_t len = 0;
    int r = vsock_conns_fill(&t, &iov, 1, VSOCK_HDR_SIZE + room, &len);
    if (r != 1)
        return r;
    vsock_hdr_decode(rxbuf, h);
    assert_int_equal(len, VSOCK_HDR_SIZE + h->len);
    assert_int_equal(h->src_cid, VSOCK_HOST_CID);
    assert_int_equal(h->dst_cid, CID);
    assert_int_equal(h->buf_alloc, t.buf_alloc);
    return 1;
}

static int grecv(struct vsock_hdr *h, uint8_t **data)
{
    return grecv_room(h, data, 4096);
}

/* Expect a packet with this op between these ports (host port first). */
static struct vsock_hdr expect(uint16_t op, uint32_t hport, uint32_t gport)
{
    struct vsock_hdr h = {0};
    assert_int_equal(grecv(&h, NULL), 1);
    assert_int_equal(h.type, VSOCK_TYPE_STREAM);
    assert_int_equal(h.op, op);
    assert_int_equal(h.src_port, hport);
    assert_int_equal(h.dst_port, gport);
    return h;
}

static void expect_nothing(void)
{
    struct vsock_hdr h = {0};
    assert_int_equal(grecv(&h, NULL), 0);
    assert_false(vsock_conns_want_rx(&t));
}

static struct vsock_conn *find(uint32_t hport, uint32_t gport)
{
    for (unsigned i = 0; i < t.max; i++) {
        struct vsock_conn *c = &t.conns[i];
        if (c->state != VSOCK_CONN_FREE && c->host_port == hport && c->guest_port == gport)
            return c;
    }
    return NULL;
}

/* ---- set-up ---- */

static void table_up(uint32_t buf_alloc, unsigned max, bool with_listener)
{
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof(dir), "%s/test_vsock_conn.XXXXXX", tmp);
    assert_non_null(mkdtemp(dir));
    snprintf(base, sizeof(base), "%s/v", dir);
    ulisten = with_listener ? listen_path(base, true) : -1;
    struct vsock_conns_opts o = {.guest_cid = CID,
                                 .uds_path = base,
                                 .buf_alloc = buf_alloc,
                                 .max_conns = max,
                                 .listen_fd = ulisten};
    assert_int_equal(vsock_conns_init(&t, &o), 0);
    vsock_conns_set_accepting(&t, with_listener);
}

static void table_down(void)
{
    vsock_conns_fini(&t);
    if (ulisten >= 0)
        close(ulisten);
    ulisten = -1;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Guest port @p gport connects to host port @p hport; returns the host's end. */
static int open_from_guest(int lfd, uint32_t gport, uint32_t hport)
{
    gsend(VSOCK_OP_REQUEST, gport, hport, NULL, 0);
    int fd = accept_one(lfd);
    expect(VSOCK_OP_RESPONSE, hport, gport);
    return fd;
}

/* ---- tests ---- */

static void test_credit_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(vsock_credit(1000, 0, 0), 1000);
    assert_int_equal(vsock_credit(1000, 0, 600), 400);
    assert_int_equal(vsock_credit(1000, 0, 1000), 0);
    assert_int_equal(vsock_credit(1000, 0, 1001), 0); /* the guest shrank its buffer */
    assert_int_equal(vsock_credit(1000, 500, 1200), 300);
    /* Counters that wrapped: 32 bytes in flight across 2^32. */
    assert_int_equal(vsock_credit(1000, 0xfffffff0u, 0x10u), 968);
    assert_int_equal(vsock_credit(0xffffffffu, 0xfffffff0u, 0x10u), 0xffffffffu - 32);
    /* A peer claiming to have consumed more than we sent gets nothing, not 4 GiB. */
    assert_int_equal(vsock_credit(1000, 10, 5), 0);
    assert_int_equal(vsock_credit(1000, 0x10u, 0xfffffff0u), 0);
    assert_int_equal(vsock_credit(0, 0, 0), 0);

    const uint32_t B = 256 * 1024;
    assert_false(vsock_credit_update_due(B, 100, 100, 0)); /* nothing freed */
    assert_false(vsock_credit_update_due(B, 64 * 1024, 0, 0));
    assert_false(vsock_credit_update_due(B, 192 * 1024, 0, 0)); /* it still sees 64 KiB */
    assert_true(vsock_credit_update_due(B, 192 * 1024 + 1, 0, 0));
    assert_true(vsock_credit_update_due(B, 1, 0, B - 1)); /* it sees a full buffer */
    assert_false(vsock_credit_update_due(B, 1, 0, 0));
    /* Across the wrap: 512 bytes freed, the guest believes only 88 bytes are free. */
    assert_true(vsock_credit_update_due(B, 0x100u, 0xffffff00u, B - 600));
    assert_false(vsock_credit_update_due(B, 0x100u, 0xffffff00u, 0));
    /* Small buffers: half of it is the threshold. */
    assert_false(vsock_credit_update_due(4096, 2048, 0, 0));
    assert_true(vsock_credit_update_due(4096, 2049, 0, 0));
}

static void test_init_checks(void **state)
{
    (void)state;
    struct vsock_conns x;
    struct vsock_conns_opts o = {.guest_cid = CID,
                                 .uds_path = "/tmp/x",
                                 .buf_alloc = 65536,
                                 .max_conns = 4,
                                 .listen_fd = -1};
    struct vsock_conns_opts b = o;
    b.guest_cid = 2;
    assert_int_equal(vsock_conns_init(&x, &b), -EINVAL);
    b = o;
    b.guest_cid = 0xffffffffull;
    assert_int_equal(vsock_conns_init(&x, &b), -EINVAL);
    b = o;
    b.max_conns = 0;
    assert_int_equal(vsock_conns_init(&x, &b), -EINVAL);
    b = o;
    b.buf_alloc = 100;
    assert_int_equal(vsock_conns_init(&x, &b), -EINVAL);
    b = o;
    b.uds_path = NULL;
    assert_int_equal(vsock_conns_init(&x, &b), -EINVAL);
    assert_int_equal(vsock_conns_init(&x, &o), 0);
    vsock_conns_fini(&x);
}

static void test_guest_connects_and_data_flows(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(1234);
    int fd = open_from_guest(lfd, GPORT, 1234);
    assert_int_equal(t.stats.opened, 1);

    /* Guest to host, split over two segments. */
    static const char msg[] = "hello, host";
    struct vsock_hdr h = ghdr(VSOCK_OP_RW, GPORT, 1234);
    h.len = sizeof(msg);
    struct vq_iovec two[2] = {{(void *)msg, 5}, {(void *)(msg + 5), sizeof(msg) - 5}};
    vsock_conns_guest_packet(&t, &h, sizeof(msg), two, 2, vsock_now_ns());
    char got[64];
    host_read(fd, got, sizeof(msg));
    assert_memory_equal(got, msg, sizeof(msg));
    assert_int_equal(find(1234, GPORT)->fwd_cnt, sizeof(msg));
    assert_int_equal(t.stats.bytes_from_guest, sizeof(msg));

    /* Host to guest: read only once poll says so, straight into the rx buffer. */
    assert_int_equal(write(fd, "world", 5), 5);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    uint8_t *data;
    assert_int_equal(grecv(&h, &data), 1);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(data, "world", 5);
    assert_int_equal(h.fwd_cnt, sizeof(msg)); /* our credit rides along */
    assert_int_equal(t.stats.bytes_to_guest, 5);
    expect_nothing();

    /* A credit request is answered. */
    gsend(VSOCK_OP_CREDIT_REQUEST, GPORT, 1234, NULL, 0);
    h = expect(VSOCK_OP_CREDIT_UPDATE, 1234, GPORT);
    assert_int_equal(h.fwd_cnt, sizeof(msg));
    expect_nothing();
    close(fd);
    close(lfd);
    table_down();
}

static void test_sender_never_past_credit(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(7);
    gsend(VSOCK_OP_REQUEST, GPORT, 7, NULL, 0);
    int fd = accept_one(lfd);
    struct vsock_conn *c = find(7, GPORT);
    /* Start both counters just below the wrap, so it happens in the middle. */
    c->tx_cnt = c->peer_fwd_cnt = 0xfffff000u;
    struct vsock_hdr h = expect(VSOCK_OP_RESPONSE, 7, GPORT);

    static uint8_t src[256 * 1024];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 7 + (i >> 11));
    const uint32_t guest_buf = 10000;
    uint32_t guest_fwd = 0xfffff000u, sent_total = 0, written = 0;
    static uint8_t seen[sizeof(src)];
    /* The guest announces a small buffer and consumes everything only when asked. */
    struct vsock_hdr up = ghdr(VSOCK_OP_CREDIT_UPDATE, GPORT, 7);
    up.buf_alloc = guest_buf;
    up.fwd_cnt = guest_fwd;
    gsend_hdr(&up, NULL, 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (sent_total < sizeof(src)) {
        if (written < sizeof(src)) {
            ssize_t w = write(fd, src + written, sizeof(src) - written);
            if (w > 0)
                written += (uint32_t)w;
        }
        host_round(5);
        uint32_t in_flight = 0;
        uint8_t *data;
        while (grecv(&h, &data) == 1) {
            assert_int_equal(h.op, VSOCK_OP_RW);
            memcpy(seen + sent_total, data, h.len);
            sent_total += h.len;
            in_flight += h.len;
            /* Never more than the credit the guest gave. */
            assert_true(in_flight <= guest_buf);
        }
        assert_int_equal(c->tx_cnt - guest_fwd, in_flight);
        /* The guest consumes what it got and says so. */
        guest_fwd += in_flight;
        up.fwd_cnt = guest_fwd;
        gsend_hdr(&up, NULL, 0);
    }
    assert_memory_equal(seen, src, sizeof(src));
    assert_true(c->tx_cnt < 0xfffff000u); /* it wrapped */
    close(fd);
    close(lfd);
    table_down();
}

/* Guest data the host takes at once frees credit: an update goes out once it matters. */
static void test_credit_update_when_freed(void **state)
{
    (void)state;
    table_up(8192, 8, false);
    int lfd = listen_port(9);
    int fd = open_from_guest(lfd, GPORT, 9);
    struct vsock_conn *c = find(9, GPORT);
    c->fwd_cnt = c->last_adv_fwd = 0xffffff00u; /* wraps below */
    static uint8_t buf[8192];
    memset(buf, 'x', sizeof(buf));
    gsend(VSOCK_OP_RW, GPORT, 9, buf, 2048);
    expect_nothing(); /* the guest still sees 6 KiB free */
    gsend(VSOCK_OP_RW, GPORT, 9, buf, 4096);
    struct vsock_hdr h = expect(VSOCK_OP_CREDIT_UPDATE, 9, GPORT);
    assert_int_equal(h.fwd_cnt, (uint32_t)(0xffffff00u + 6144));
    expect_nothing();
    static uint8_t got[6144];
    host_read(fd, got, sizeof(got));
    close(fd);
    close(lfd);
    table_down();
}

/*
 * A host peer that never reads: the kernel's socket buffer fills, then the
 * connection's own buffer up to buf_alloc; a guest that sends past it is reset.
 */
static void test_guest_over_credit_is_reset(void **state)
{
    (void)state;
    table_up(16384, 8, false);
    int lfd = listen_port(11);
    int fd = open_from_guest(lfd, GPORT, 11);
    struct vsock_conn *c = find(11, GPORT);
    static uint8_t buf[4096];
    memset(buf, 'y', sizeof(buf));
    /* Fill the kernel's buffer (direct writes), granting ourselves credit as we go. */
    for (int i = 0; i < 10000 && c->out.len == 0; i++)
        gsend(VSOCK_OP_RW, GPORT, 11, buf, sizeof(buf));
    assert_true(c->out.len > 0);
    assert_int_equal(c->state, VSOCK_CONN_ESTABLISHED);
    /* Exactly up to the promise is fine. */
    uint32_t left = t.buf_alloc - c->out.len;
    while (left > 0) {
        uint32_t n = left < sizeof(buf) ? left : (uint32_t)sizeof(buf);
        gsend(VSOCK_OP_RW, GPORT, 11, buf, n);
        left -= n;
    }
    assert_int_equal(c->out.len, t.buf_alloc);
    assert_true(c->out.cap <= t.buf_alloc);
    assert_int_equal(t.stats.drops[VSOCK_R_CREDIT], 0);
    /* One byte more is not. */
    gsend(VSOCK_OP_RW, GPORT, 11, buf, 1);
    assert_int_equal(t.stats.drops[VSOCK_R_CREDIT], 1);
    struct vsock_hdr h;
    while (grecv(&h, NULL) == 1 && h.op == VSOCK_OP_CREDIT_UPDATE)
        ;
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_null(find(11, GPORT));
    /* The host's end sees the bytes that did get through, then EOF. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    static uint8_t sink[1 << 16];
    while (read(fd, sink, sizeof(sink)) > 0)
        ;
    assert_true(host_sees_eof(fd));
    assert_int_equal(t.stats.closed, 1);
    close(fd);
    close(lfd);
    table_down();
}

/* An rx buffer with room for a header only: no data in it, no false EOF either. */
static void test_header_only_rx_buffer(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(12);
    int fd = open_from_guest(lfd, GPORT, 12);
    assert_int_equal(write(fd, "data", 4), 4);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    struct vsock_hdr h;
    for (int i = 0; i < 3; i++)
        assert_int_equal(grecv_room(&h, NULL, 0), 0);
    assert_true(vsock_conns_want_rx(&t)); /* still waiting for a real buffer */
    uint8_t *data;
    assert_int_equal(grecv(&h, &data), 1);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 4);
    assert_memory_equal(data, "data", 4);
    assert_false(find(12, GPORT)->host_eof);
    expect_nothing();
    close(fd);
    close(lfd);
    table_down();
}

static void test_refused_without_listener(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    gsend(VSOCK_OP_REQUEST, GPORT, 9999, NULL, 0);
    expect(VSOCK_OP_RST, 9999, GPORT);
    expect_nothing();
    assert_int_equal(t.stats.refused, 1);
    assert_int_equal(t.used, 0);
    /* A socket file nobody listens on any more: refused too. */
    int lfd = listen_port(77);
    close(lfd);
    gsend(VSOCK_OP_REQUEST, GPORT + 1, 77, NULL, 0);
    expect(VSOCK_OP_RST, 77, GPORT + 1);
    assert_int_equal(t.stats.refused, 2);
    table_down();
}

static void test_unknown_connections(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    gsend(VSOCK_OP_RW, GPORT, 5, "abc", 3);
    expect(VSOCK_OP_RST, 5, GPORT);
    gsend(VSOCK_OP_SHUTDOWN, GPORT, 5, NULL, 0);
    expect(VSOCK_OP_RST, 5, GPORT);
    gsend(VSOCK_OP_RESPONSE, GPORT, 5, NULL, 0);
    expect(VSOCK_OP_RST, 5, GPORT);
    /* RST is never answered. */
    gsend(VSOCK_OP_RST, GPORT, 5, NULL, 0);
    expect_nothing();
    assert_int_equal(t.stats.drops[VSOCK_R_NO_CONN], 3);
    /* Bad packets from the guest: RST echoing their type, or nothing. */
    struct vsock_hdr h = ghdr(VSOCK_OP_REQUEST, GPORT, 5);
    h.type = VSOCK_TYPE_SEQPACKET;
    gsend_hdr(&h, NULL, 0);
    struct vsock_hdr r;
    assert_int_equal(grecv(&r, NULL), 1);
    assert_int_equal(r.op, VSOCK_OP_RST);
    assert_int_equal(r.type, VSOCK_TYPE_SEQPACKET);
    h = ghdr(VSOCK_OP_REQUEST, GPORT, 5);
    h.dst_cid = 9;
    gsend_hdr(&h, NULL, 0);
    expect_nothing();
    assert_int_equal(t.stats.drops[VSOCK_R_DST_CID], 1);
    /* A flood of them fills the RST queue; the rest are counted, not queued. */
    for (unsigned i = 0; i < VSOCK_RST_QUEUE + 10; i++)
        gsend(VSOCK_OP_RW, GPORT + i, 5, NULL, 0);
    unsigned n = 0;
    while (grecv(&r, NULL) == 1)
        n++;
    assert_int_equal(n, VSOCK_RST_QUEUE);
    assert_int_equal(t.stats.drops[VSOCK_R_RST_QUEUE], 10);
    assert_int_equal(t.stats.pkts_from_guest, 6 + VSOCK_RST_QUEUE + 10);
    table_down();
}

static void test_host_client_connects(void **state)
{
    (void)state;
    table_up(65536, 8, true);
    int cl = connect_path(base);
    /* The line in two pieces, with stream bytes right behind the newline. */
    assert_int_equal(write(cl, "CONN", 4), 4);
    host_round(100);
    assert_false(vsock_conns_want_rx(&t));
    assert_int_equal(write(cl, "ECT 52\nearly", 12), 12);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    struct vsock_hdr h = expect(VSOCK_OP_REQUEST, VSOCK_FIRST_LOCAL_PORT, 52);
    expect_nothing();
    /* The guest accepts. */
    gsend(VSOCK_OP_RESPONSE, 52, VSOCK_FIRST_LOCAL_PORT, NULL, 0);
    char line[16] = {0};
    host_read(cl, line, 8);
    assert_string_equal(line, "OK 1024\n");
    assert_int_equal(t.stats.opened, 1);
    /* The early bytes were kept for the stream. */
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    uint8_t *data;
    assert_int_equal(grecv(&h, &data), 1);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(data, "early", 5);
    gsend(VSOCK_OP_RW, 52, VSOCK_FIRST_LOCAL_PORT, "hi", 2);
    host_read(cl, line, 2);
    assert_memory_equal(line, "hi", 2);

    /* A second client gets the next port. */
    int cl2 = connect_path(base);
    assert_int_equal(write(cl2, "CONNECT 52\n", 11), 11);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    expect(VSOCK_OP_REQUEST, VSOCK_FIRST_LOCAL_PORT + 1, 52);
    /* The guest refuses this one: the client is closed. */
    gsend(VSOCK_OP_RST, 52, VSOCK_FIRST_LOCAL_PORT + 1, NULL, 0);
    assert_true(host_sees_eof(cl2));
    assert_int_equal(t.stats.refused, 1);
    close(cl2);
    close(cl);
    table_down();
}

static void test_bad_lines(void **state)
{
    (void)state;
    table_up(65536, 8, true);
    int a = connect_path(base);
    assert_int_equal(write(a, "HELLO 52\n", 9), 9);
    int b = connect_path(base);
    static const char longline[] = "CONNECT 0000000000000000000000000052\n";
    assert_int_equal(write(b, longline, sizeof(longline) - 1), (ssize_t)sizeof(longline) - 1);
    int c = connect_path(base);
    assert_int_equal(write(c, "CONNECT 5", 9), 9); /* never finished */
    int d = connect_path(base);
    close(d); /* gone before a line */
    for (int i = 0; i < 20; i++)
        host_round(10);
    assert_true(host_sees_close(a));
    assert_true(host_sees_close(b)); /* its last bytes were never read */
    assert_int_equal(t.stats.drops[VSOCK_R_LINE], 3);
    assert_int_equal(t.used, 1);
    assert_true(vsock_conns_next_deadline(&t) != 0);
    vsock_conns_expire(&t, vsock_now_ns() + VSOCK_HANDSHAKE_NS + 1);
    assert_true(host_sees_eof(c));
    assert_int_equal(t.stats.drops[VSOCK_R_TIMEOUT], 1);
    assert_int_equal(t.used, 0);
    assert_int_equal(vsock_conns_next_deadline(&t), 0);
    expect_nothing();
    close(a);
    close(b);
    close(c);
    table_down();
}

/* The guest never answers a REQUEST: the client is closed, the guest told RST. */
static void test_request_timeout(void **state)
{
    (void)state;
    table_up(65536, 8, true);
    int cl = connect_path(base);
    assert_int_equal(write(cl, "CONNECT 60\n", 11), 11);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    expect(VSOCK_OP_REQUEST, VSOCK_FIRST_LOCAL_PORT, 60);
    vsock_conns_expire(&t, vsock_now_ns() + VSOCK_HANDSHAKE_NS + 1);
    assert_true(host_sees_eof(cl));
    expect(VSOCK_OP_RST, VSOCK_FIRST_LOCAL_PORT, 60);
    assert_int_equal(t.stats.refused, 1);
    assert_int_equal(t.used, 0);
    close(cl);
    table_down();
}

static void test_shutdown_host_first(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(21);
    int fd = open_from_guest(lfd, GPORT, 21);
    assert_int_equal(write(fd, "bye", 3), 3);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    uint8_t *data;
    struct vsock_hdr h;
    assert_int_equal(grecv(&h, &data), 1);
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_memory_equal(data, "bye", 3);
    /* The socket may have looked empty after the data: poll again for the EOF. */
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    h = expect(VSOCK_OP_SHUTDOWN, 21, GPORT);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    expect_nothing();
    /* The guest still sends; the host still reads. */
    gsend(VSOCK_OP_RW, GPORT, 21, "more", 4);
    char got[4];
    host_read(fd, got, 4);
    assert_memory_equal(got, "more", 4);
    /* The guest is done too: RST, and the host's end is closed. */
    struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, GPORT, 21);
    s.flags = VSOCK_SHUTDOWN_SEND;
    gsend_hdr(&s, NULL, 0);
    expect(VSOCK_OP_RST, 21, GPORT);
    assert_true(host_sees_eof(fd));
    assert_int_equal(t.used, 0);
    assert_int_equal(t.stats.closed, 1);
    close(fd);
    close(lfd);
    table_down();
}

static void test_shutdown_guest_first(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(22);
    int fd = open_from_guest(lfd, GPORT, 22);
    gsend(VSOCK_OP_RW, GPORT, 22, "last", 4);
    struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, GPORT, 22);
    s.flags = VSOCK_SHUTDOWN_SEND;
    gsend_hdr(&s, NULL, 0);
    /* The host reads the bytes, then EOF; it can still answer. */
    char got[4];
    host_read(fd, got, 4);
    assert_memory_equal(got, "last", 4);
    assert_true(host_sees_eof(fd));
    expect_nothing();
    /* Data after the guest's own EOF breaks the rules. */
    assert_int_equal(write(fd, "ans", 3), 3);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    uint8_t *data;
    struct vsock_hdr h;
    assert_int_equal(grecv(&h, &data), 1);
    assert_memory_equal(data, "ans", 3);
    close(fd); /* the host is done: SHUTDOWN, then RST at once */
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    h = expect(VSOCK_OP_SHUTDOWN, 22, GPORT);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    expect(VSOCK_OP_RST, 22, GPORT);
    expect_nothing();
    assert_int_equal(t.used, 0);
    close(lfd);
    table_down();
}

/* Pull every packet the host side has for the guest (RW bytes into @p got, appended at
 * @p *n), polling as the program's loop would, until one that is not RW comes. */
static struct vsock_hdr drain_rw(uint8_t *got, size_t cap, size_t *n)
{
    struct vsock_hdr h = {0};
    for (int i = 0; i < 200; i++) {
        if (!vsock_conns_want_rx(&t)) {
            host_round(10);
            continue;
        }
        uint8_t *data;
        if (grecv(&h, &data) != 1)
            continue;
        if (h.op != VSOCK_OP_RW)
            return h;
        assert_true(*n + h.len <= cap);
        memcpy(got + *n, data, h.len);
        *n += h.len;
    }
    return (struct vsock_hdr){0};
}

/*
 * The host program writes and closes at once: the hang-up is seen while its bytes still
 * wait in the socket, and the last read of them is short (less than the rx buffer
 * holds). A hung-up socket is never polled again, so the EOF must still be read: the
 * guest gets every byte, then SHUTDOWN.
 */
static void test_host_hangs_up_with_bytes_queued(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(24);
    int fd = open_from_guest(lfd, GPORT, 24);
    static uint8_t buf[6000], got[6000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7);
    assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(fd); /* everything read that we sent: a plain hang-up */
    host_round(100);
    struct vsock_conn *c = find(24, GPORT);
    assert_non_null(c);
    assert_true(c->host_hup);
    size_t n = 0;
    struct vsock_hdr h = drain_rw(got, sizeof(got), &n);
    assert_int_equal(n, sizeof(buf));
    assert_memory_equal(got, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    /* The guest reads its EOF and closes: RST, and the connection is gone. */
    struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, GPORT, 24);
    s.flags = VSOCK_SHUTDOWN_BOTH;
    gsend_hdr(&s, NULL, 0);
    expect(VSOCK_OP_RST, 24, GPORT);
    expect_nothing();
    assert_int_equal(t.used, 0);
    close(lfd);
    table_down();
}

/*
 * A host client writes its CONNECT line and its bytes and closes without reading "OK":
 * its socket reports ECONNRESET, yet what it wrote is still queued and reaches the
 * guest, followed by the end (RST: it reads nothing more either).
 */
static void test_host_client_closes_without_reading_ok(void **state)
{
    (void)state;
    table_up(65536, 8, true);
    int cl = connect_path(base);
    assert_int_equal(write(cl, "CONNECT 53\n", 11), 11);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    expect(VSOCK_OP_REQUEST, VSOCK_FIRST_LOCAL_PORT, 53);
    gsend(VSOCK_OP_RESPONSE, 53, VSOCK_FIRST_LOCAL_PORT, NULL, 0);
    static uint8_t buf[6000], got[6000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 13);
    assert_int_equal(write(cl, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(cl); /* "OK 1024\n" unread */
    size_t n = 0;
    struct vsock_hdr h = drain_rw(got, sizeof(got), &n);
    assert_int_equal(n, sizeof(buf));
    assert_memory_equal(got, buf, sizeof(buf));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.src_port, VSOCK_FIRST_LOCAL_PORT);
    assert_int_equal(h.dst_port, 53);
    expect_nothing();
    assert_int_equal(t.used, 0);
    table_down();
}

/* The guest closes with bytes the host has not taken: they get the linger time. */
static void test_linger(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(23);
    int fd = open_from_guest(lfd, GPORT, 23);
    struct vsock_conn *c = find(23, GPORT);
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    uint64_t sent = 0;
    for (int i = 0; i < 10000 && c->out.len == 0; i++) {
        gsend(VSOCK_OP_RW, GPORT, 23, buf, sizeof(buf));
        sent += sizeof(buf);
    }
    assert_true(c->out.len > 0);
    struct vsock_hdr h;
    while (grecv(&h, NULL) == 1)
        assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    struct vsock_hdr s = ghdr(VSOCK_OP_SHUTDOWN, GPORT, 23);
    s.flags = VSOCK_SHUTDOWN_BOTH;
    gsend_hdr(&s, NULL, 0);
    expect_nothing(); /* not yet: bytes wait */
    assert_true(c->deadline_ns != 0);
    /* The host drains everything: then the RST. */
    static uint8_t sink[1 << 16];
    uint64_t got = 0;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 1000 && !vsock_conns_want_rx(&t); i++) {
        ssize_t r = read(fd, sink, sizeof(sink));
        if (r > 0)
            got += (uint64_t)r;
        host_round(5);
    }
    expect(VSOCK_OP_RST, 23, GPORT);
    for (ssize_t r; (r = read(fd, sink, sizeof(sink))) > 0;)
        got += (uint64_t)r;
    assert_int_equal(got, sent); /* every byte reached the host before the RST */
    assert_int_equal(t.used, 0);
    close(fd);

    /* Again, with a host that never drains: the deadline ends it. */
    fd = open_from_guest(lfd, GPORT + 1, 23);
    c = find(23, GPORT + 1);
    for (int i = 0; i < 10000 && c->out.len == 0; i++)
        gsend(VSOCK_OP_RW, GPORT + 1, 23, buf, sizeof(buf));
    while (grecv(&h, NULL) == 1)
        assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    s.src_port = GPORT + 1;
    gsend_hdr(&s, NULL, 0);
    expect_nothing();
    vsock_conns_expire(&t, vsock_now_ns() + VSOCK_LINGER_NS + 1);
    expect(VSOCK_OP_RST, 23, GPORT + 1);
    assert_int_equal(t.stats.drops[VSOCK_R_TIMEOUT], 1);
    close(fd);
    close(lfd);
    table_down();
}

static void test_round_robin(void **state)
{
    (void)state;
    table_up(65536, 8, false);
    int lfd = listen_port(30);
    int a = open_from_guest(lfd, 1, 30);
    int b = open_from_guest(lfd, 2, 30);
    int c = open_from_guest(lfd, 3, 30);
    static uint8_t buf[32768];
    memset(buf, 'r', sizeof(buf));
    assert_int_equal(write(a, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    assert_int_equal(write(b, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    assert_int_equal(write(c, buf, 100), 100);
    for (int i = 0; i < 5; i++)
        host_round(10);
    /* Small rx buffers: each connection gets one in turn. */
    unsigned order[12], n = 0;
    struct vsock_hdr h;
    while (n < 12 && grecv_room(&h, NULL, 1000) == 1) {
        assert_int_equal(h.op, VSOCK_OP_RW);
        order[n++] = h.dst_port;
    }
    assert_true(n >= 7);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(order[i], i + 1);
    /* Connection 3 had one packet's worth; 1 and 2 alternate from then on. */
    for (unsigned i = 3; i + 1 < n; i++)
        assert_int_not_equal(order[i], order[i + 1]);
    close(a);
    close(b);
    close(c);
    close(lfd);
    table_down();
}

static void test_limits_and_reuse(void **state)
{
    (void)state;
    table_up(65536, 2, false);
    int lfd = listen_port(40);
    int a = open_from_guest(lfd, 1, 40);
    int b = open_from_guest(lfd, 2, 40);
    /* Full: refused with RST. */
    gsend(VSOCK_OP_REQUEST, 3, 40, NULL, 0);
    expect(VSOCK_OP_RST, 40, 3);
    assert_int_equal(t.stats.drops[VSOCK_R_FULL], 1);
    /* The guest reuses a pair: the old host connection is dropped, a new one made. */
    gsend(VSOCK_OP_REQUEST, 1, 40, NULL, 0);
    assert_true(host_sees_eof(a));
    int a2 = accept_one(lfd);
    expect(VSOCK_OP_RESPONSE, 40, 1);
    assert_int_equal(t.used, 2);
    /* Ops that do not belong in ESTABLISHED: RST. */
    gsend(VSOCK_OP_RESPONSE, 2, 40, NULL, 0);
    expect(VSOCK_OP_RST, 40, 2);
    assert_true(host_sees_eof(b));
    assert_int_equal(t.stats.drops[VSOCK_R_STATE], 1);
    /* A malformed packet on a live connection resets it. */
    struct vsock_hdr h = ghdr(VSOCK_OP_RW, 1, 40);
    h.len = 10;
    uint8_t x[4] = {0};
    struct vq_iovec iov = {x, sizeof(x)};
    vsock_conns_guest_packet(&t, &h, sizeof(x), &iov, 1, vsock_now_ns());
    expect(VSOCK_OP_RST, 40, 1);
    assert_true(host_sees_eof(a2));
    assert_int_equal(t.stats.drops[VSOCK_R_LEN], 1);
    assert_int_equal(t.used, 0);
    close(a);
    close(a2);
    close(b);
    close(lfd);
    table_down();
}

/* A transport reset forgets what the guest knew, keeps host clients it did not. */
static void test_transport_reset(void **state)
{
    (void)state;
    table_up(65536, 8, true);
    int lfd = listen_port(50);
    int a = open_from_guest(lfd, 1, 50);
    int cl = connect_path(base);
    assert_int_equal(write(cl, "CONNECT 8", 9), 9);
    host_round(50);
    assert_int_equal(t.used, 2);
    gsend(VSOCK_OP_RW, 99, 99, NULL, 0); /* an RST waits */
    vsock_conns_transport_reset(&t);
    assert_true(host_sees_eof(a));
    assert_int_equal(t.used, 1);
    expect_nothing();
    assert_int_equal(write(cl, "\n", 1), 1);
    for (int i = 0; i < 100 && !vsock_conns_want_rx(&t); i++)
        host_round(10);
    expect(VSOCK_OP_REQUEST, VSOCK_FIRST_LOCAL_PORT, 8);
    vsock_conns_reset_all(&t);
    assert_true(host_sees_eof(cl));
    assert_int_equal(t.used, 0);
    close(a);
    close(cl);
    close(lfd);
    table_down();
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_credit_arithmetic),
        T(test_init_checks),
        T(test_guest_connects_and_data_flows),
        T(test_sender_never_past_credit),
        T(test_credit_update_when_freed),
        T(test_guest_over_credit_is_reset),
        T(test_header_only_rx_buffer),
        T(test_refused_without_listener),
        T(test_unknown_connections),
        T(test_host_client_connects),
        T(test_bad_lines),
        T(test_request_timeout),
        T(test_shutdown_host_first),
        T(test_shutdown_guest_first),
        T(test_host_hangs_up_with_bytes_queued),
        T(test_host_client_closes_without_reading_ok),
        T(test_linger),
        T(test_round_robin),
        T(test_limits_and_reuse),
        T(test_transport_reset),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
