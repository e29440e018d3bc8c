/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/vsock/conn.h"

#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct vq_iovec) == sizeof(struct iovec) &&
                   offsetof(struct vq_iovec, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(struct vq_iovec, len) == offsetof(struct iovec, iov_len),
               "vq_iovec arrays are handed to readv() and sendmsg()");

#define NIL (-1)

#ifdef IOV_MAX
#define MAX_IOV IOV_MAX
#else
#define MAX_IOV 1024
#endif

/* Segments of one rx payload read; Linux's rx buffers are one segment. */
#define RX_WINDOW_SEGS 64u
/* Host clients accepted per poll round, so a flood of them cannot hold the loop. */
#define ACCEPTS_PER_ROUND 16u
/* Smallest allocation of a connection buffer. */
#define OBUF_MIN 4096u

uint64_t vsock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- connection buffer (guest -> host) ---- */

static void obuf_free(struct vsock_obuf *b)
{
    free(b->data);
    *b = (struct vsock_obuf){0};
}

/* Room for @p need bytes in all; the caller checked need <= limit. */
static int obuf_reserve(struct vsock_obuf *b, uint32_t need, uint32_t limit)
{
    if (need <= b->cap)
        return 0;
    uint64_t cap = b->cap != 0 ? b->cap : OBUF_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = limit;
    uint8_t *d = malloc(cap);
    if (d == NULL)
        return -ENOMEM;
    /* Linearise: the oldest byte goes to offset 0. */
    uint32_t first = b->len;
    if (b->cap != 0 && first > b->cap - b->head)
        first = b->cap - b->head;
    if (b->len > 0) {
        memcpy(d, b->data + b->head, first);
        memcpy(d + first, b->data, b->len - first);
    }
    free(b->data);
    b->data = d;
    b->cap = (uint32_t)cap;
    b->head = 0;
    return 0;
}

/* Append @p len bytes of a segment list (guest memory) after @p skip bytes. */
static int obuf_append(struct vsock_obuf *b, const struct vq_iovec *iov, unsigned n, uint64_t skip,
                       uint32_t len, uint32_t limit)
{
    int r = obuf_reserve(b, b->len + len, limit);
    if (r < 0)
        return r;
    uint32_t tail = (uint32_t)(((uint64_t)b->head + b->len) % b->cap);
    uint32_t first = b->cap - tail;
    if (first > len)
        first = len;
    if (vsock_iov_gather(iov, n, skip, b->data + tail, first) < 0 ||
        vsock_iov_gather(iov, n, skip + first, b->data, len - first) < 0)
        return -EFAULT;
    b->len += len;
    return 0;
}

/* Hand buffered bytes to the socket; bytes written, or a negative errno. */
static ssize_t obuf_flush(int fd, struct vsock_obuf *b)
{
    if (b->len == 0)
        return 0;
    struct iovec v[2];
    uint32_t first = b->cap - b->head;
    if (first > b->len)
        first = b->len;
    v[0] = (struct iovec){.iov_base = b->data + b->head, .iov_len = first};
    v[1] = (struct iovec){.iov_base = b->data, .iov_len = b->len - first};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = b->len > first ? 2 : 1};
    ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    b->head = (uint32_t)(((uint64_t)b->head + (uint64_t)w) % b->cap);
    b->len -= (uint32_t)w;
    if (b->len == 0)
        obuf_free(b); /* an idle connection holds no buffer */
    return w;
}

/* ---- table bookkeeping ---- */

static struct vsock_conn *slot(struct vsock_conns *t, int i)
{
    return &t->conns[i];
}

static int index_of(const struct vsock_conns *t, const struct vsock_conn *c)
{
    return (int)(c - t->conns);
}

static unsigned bucket_of(const struct vsock_conns *t, uint32_t host_port, uint32_t guest_port)
{
    uint32_t h = host_port * 0x9e3779b1u ^ (guest_port + 0x7f4a7c15u) * 0x85ebca77u;
    return (h ^ (h >> 15)) & t->bucket_mask;
}

static struct vsock_conn *lookup(struct vsock_conns *t, uint32_t host_port, uint32_t guest_port)
{
    for (int i = t->buckets[bucket_of(t, host_port, guest_port)]; i != NIL;
         i = slot(t, i)->hash_next) {
        struct vsock_conn *c = slot(t, i);
        if (c->host_port == host_port && c->guest_port == guest_port)
            return c;
    }
    return NULL;
}

static void hash_insert(struct vsock_conns *t, struct vsock_conn *c)
{
    unsigned b = bucket_of(t, c->host_port, c->guest_port);
    c->hash_next = t->buckets[b];
    t->buckets[b] = index_of(t, c);
    c->hashed = true;
}

static void hash_remove(struct vsock_conns *t, struct vsock_conn *c)
{
    if (!c->hashed)
        return;
    int *p = &t->buckets[bucket_of(t, c->host_port, c->guest_port)];
    int me = index_of(t, c);
    while (*p != NIL && *p != me)
        p = &slot(t, *p)->hash_next;
    if (*p == me)
        *p = c->hash_next;
    c->hashed = false;
}

static void work_remove(struct vsock_conns *t, struct vsock_conn *c)
{
    if (!c->in_work)
        return;
    if (c->work_prev != NIL)
        slot(t, c->work_prev)->work_next = c->work_next;
    else
        t->work_head = c->work_next;
    if (c->work_next != NIL)
        slot(t, c->work_next)->work_prev = c->work_prev;
    else
        t->work_tail = c->work_prev;
    c->work_prev = c->work_next = NIL;
    c->in_work = false;
}

static void work_append(struct vsock_conns *t, struct vsock_conn *c)
{
    int me = index_of(t, c);
    c->work_prev = t->work_tail;
    c->work_next = NIL;
    if (t->work_tail != NIL)
        slot(t, t->work_tail)->work_next = me;
    else
        t->work_head = me;
    t->work_tail = me;
    c->in_work = true;
}

static uint32_t credit_of(const struct vsock_conn *c)
{
    return vsock_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->tx_cnt);
}

/* Whether the host socket should be read for the guest, credit aside. */
static bool wants_read(const struct vsock_conn *c)
{
    return c->state == VSOCK_CONN_ESTABLISHED && c->fd >= 0 && !c->host_eof &&
           (c->guest_shut & VSOCK_SHUTDOWN_RCV) == 0;
}

static bool has_work(const struct vsock_conns *t, const struct vsock_conn *c)
{
    switch (c->state) {
    case VSOCK_CONN_CLOSING:
        return true;
    case VSOCK_CONN_REQUEST:
        return !c->request_sent;
    case VSOCK_CONN_ESTABLISHED:
        return c->send_response || c->credit_requested ||
               (c->readable && wants_read(c) && credit_of(c) > 0) ||
               vsock_credit_update_due(t->buf_alloc, c->fwd_cnt, c->last_adv_fwd, c->out.len);
    default:
        return false;
    }
}

/* After any change to a connection: keep its place in the work list right. */
static void touch(struct vsock_conns *t, struct vsock_conn *c)
{
    bool w = has_work(t, c);
    if (w && !c->in_work)
        work_append(t, c);
    else if (!w && c->in_work)
        work_remove(t, c);
}

static struct vsock_conn *conn_alloc(struct vsock_conns *t)
{
    if (t->free_head == NIL)
        return NULL;
    int i = t->free_head;
    struct vsock_conn *c = slot(t, i);
    t->free_head = c->work_next;
    uint32_t gen = ++t->next_gen;
    *c = (struct vsock_conn){
        .fd = -1, .gen = gen, .hash_next = NIL, .work_prev = NIL, .work_next = NIL};
    t->used++;
    return c;
}

static void close_host(struct vsock_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->readable = false;
    obuf_free(&c->out);
}

static void conn_free(struct vsock_conns *t, struct vsock_conn *c)
{
    if (c->established_once)
        t->stats.closed++;
    close_host(c);
    hash_remove(t, c);
    work_remove(t, c);
    uint32_t gen = c->gen;
    *c = (struct vsock_conn){.state = VSOCK_CONN_FREE, .fd = -1, .gen = gen, .hash_next = NIL};
    c->work_prev = NIL;
    c->work_next = t->free_head;
    t->free_head = index_of(t, c);
    t->used--;
}

/*
 * The host side is gone or the guest broke the rules: close the host socket and owe
 * the guest an RST. A connection the guest never heard of is simply freed.
 */
static void conn_reset(struct vsock_conns *t, struct vsock_conn *c)
{
    if (c->state == VSOCK_CONN_LINE || (c->state == VSOCK_CONN_REQUEST && !c->request_sent)) {
        conn_free(t, c);
        return;
    }
    close_host(c);
    c->state = VSOCK_CONN_CLOSING;
    c->deadline_ns = 0;
    touch(t, c);
}

static void count_drop(struct vsock_conns *t, enum vsock_reason why)
{
    t->stats.drops[why]++;
}

void vsock_conns_count_drop(struct vsock_conns *t, enum vsock_reason why)
{
    if ((unsigned)why < VSOCK_NR_REASONS)
        count_drop(t, why);
}

/* An RST for a packet of no connection (never for an RST: two peers would ping-pong). */
static void queue_rst(struct vsock_conns *t, const struct vsock_hdr *h)
{
    if (h->op == VSOCK_OP_RST)
        return;
    if (t->rst_len == VSOCK_RST_QUEUE) {
        count_drop(t, VSOCK_R_RST_QUEUE);
        return;
    }
    t->rsts[(t->rst_head + t->rst_len) % VSOCK_RST_QUEUE] =
        (struct vsock_rst){.src_port = h->dst_port, .dst_port = h->src_port, .type = h->type};
    t->rst_len++;
}

/* ---- set-up ---- */

int vsock_conns_init(struct vsock_conns *t, const struct vsock_conns_opts *o)
{
    if (o->max_conns == 0 || o->max_conns > VSOCK_MAX_CONNS || o->buf_alloc < VSOCK_MIN_BUF_ALLOC ||
        o->buf_alloc > VSOCK_MAX_BUF_ALLOC || o->uds_path == NULL ||
        o->guest_cid < VSOCK_MIN_GUEST_CID || o->guest_cid > VSOCK_MAX_GUEST_CID)
        return -EINVAL;
    memset(t, 0, sizeof(*t));
    t->guest_cid = o->guest_cid;
    t->uds_path = o->uds_path;
    t->buf_alloc = o->buf_alloc;
    t->max = o->max_conns;
    t->listen_fd = o->listen_fd;
    unsigned nb = 16;
    while (nb < 2 * t->max)
        nb *= 2;
    t->bucket_mask = nb - 1;
    t->conns = calloc(t->max, sizeof(*t->conns));
    t->buckets = malloc(nb * sizeof(*t->buckets));
    t->poll_slot = calloc(t->max + 1, sizeof(*t->poll_slot));
    t->poll_gen = calloc(t->max + 1, sizeof(*t->poll_gen));
    if (t->conns == NULL || t->buckets == NULL || t->poll_slot == NULL || t->poll_gen == NULL) {
        free(t->conns);
        free(t->buckets);
        free(t->poll_slot);
        free(t->poll_gen);
        memset(t, 0, sizeof(*t));
        return -ENOMEM;
    }
    for (unsigned i = 0; i < nb; i++)
        t->buckets[i] = NIL;
    for (unsigned i = 0; i < t->max; i++) {
        t->conns[i] = (struct vsock_conn){.fd = -1, .hash_next = NIL, .work_prev = NIL};
        t->conns[i].work_next = i + 1 < t->max ? (int)(i + 1) : NIL;
    }
    t->free_head = 0;
    t->work_head = t->work_tail = NIL;
    t->next_port = VSOCK_FIRST_LOCAL_PORT;
    return 0;
}

void vsock_conns_reset_all(struct vsock_conns *t)
{
    for (unsigned i = 0; i < t->max; i++) {
        if (t->conns[i].state != VSOCK_CONN_FREE)
            conn_free(t, &t->conns[i]);
    }
    t->rst_head = t->rst_len = 0;
    t->poll_n = 0;
}

void vsock_conns_transport_reset(struct vsock_conns *t)
{
    for (unsigned i = 0; i < t->max; i++) {
        struct vsock_conn *c = &t->conns[i];
        if (c->state == VSOCK_CONN_FREE || c->state == VSOCK_CONN_LINE ||
            (c->state == VSOCK_CONN_REQUEST && !c->request_sent))
            continue;
        conn_free(t, c);
    }
    t->rst_head = t->rst_len = 0;
}

void vsock_conns_fini(struct vsock_conns *t)
{
    if (t->conns == NULL)
        return;
    vsock_conns_reset_all(t);
    free(t->conns);
    free(t->buckets);
    free(t->poll_slot);
    free(t->poll_gen);
    t->conns = NULL;
}

void vsock_conns_set_accepting(struct vsock_conns *t, bool on)
{
    t->accepting = on;
}

/* ---- the guest's side ---- */

static void established(struct vsock_conns *t, struct vsock_conn *c)
{
    c->state = VSOCK_CONN_ESTABLISHED;
    c->deadline_ns = 0;
    c->established_once = true;
    t->stats.opened++;
}

/*
 * Both directions are finished: the guest sent its last byte and the host took it, and
 * the host sent its last byte or the guest will read no more. Then the RST ends it.
 */
static void check_done(struct vsock_conns *t, struct vsock_conn *c)
{
    if (c->state != VSOCK_CONN_ESTABLISHED)
        return;
    bool guest_done = (c->guest_shut & VSOCK_SHUTDOWN_SEND) != 0 && c->out.len == 0;
    bool host_done =
        (c->local_shut & VSOCK_SHUTDOWN_SEND) != 0 || (c->guest_shut & VSOCK_SHUTDOWN_RCV) != 0;
    if (guest_done && host_done) {
        conn_reset(t, c);
        return;
    }
    /* Closed by the guest with bytes still buffered: they get a little while. */
    if (c->guest_shut == VSOCK_SHUTDOWN_BOTH && c->deadline_ns == 0)
        c->deadline_ns = t->now + VSOCK_LINGER_NS;
}

/* The host socket failed (reset, broken pipe): the guest learns it by RST. */
static void host_failed(struct vsock_conns *t, struct vsock_conn *c, int err)
{
    log_debug("vsock: host %u <-> guest %u: host socket: %s", c->host_port, c->guest_port,
              strerror(err));
    conn_reset(t, c);
}

/* Guest bytes are out of our hands: count them as forwarded, maybe finish the shutdown. */
static void forwarded(struct vsock_conns *t, struct vsock_conn *c, uint32_t n)
{
    c->fwd_cnt += n;
    if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) != 0 && c->out.len == 0 && !c->host_wr_shut &&
        c->fd >= 0) {
        (void)shutdown(c->fd, SHUT_WR); /* the host program reads EOF */
        c->host_wr_shut = true;
    }
    check_done(t, c);
}

static void flush_host(struct vsock_conns *t, struct vsock_conn *c)
{
    if (c->fd < 0 || c->out.len == 0)
        return;
    ssize_t w = obuf_flush(c->fd, &c->out);
    if (w < 0) {
        host_failed(t, c, (int)-w);
        return;
    }
    forwarded(t, c, (uint32_t)w);
}

static void guest_data(struct vsock_conns *t, struct vsock_conn *c, const struct vq_iovec *iov,
                       unsigned n, uint32_t len)
{
    if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) != 0) {
        count_drop(t, VSOCK_R_STATE); /* data after its own EOF */
        conn_reset(t, c);
        return;
    }
    /* What we hold plus this packet must fit the buffer the guest was promised. */
    if ((uint64_t)c->out.len + len > t->buf_alloc) {
        log_guest(LOG_WARN, "vsock: guest port %u sent beyond its credit: reset", c->guest_port);
        count_drop(t, VSOCK_R_CREDIT);
        conn_reset(t, c);
        return;
    }
    t->stats.bytes_from_guest += len;
    uint32_t done = 0;
    if (c->out.len == 0) {
        /* sendmsg() only reads the array; msg_iov is not const for recvmsg()'s sake. */
        struct msghdr m = {.msg_iov = (struct iovec *)(void *)iov,
                           .msg_iovlen = n < MAX_IOV ? n : MAX_IOV};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            host_failed(t, c, errno);
            return;
        }
        done = w > 0 ? (uint32_t)w : 0;
    }
    if (done < len && obuf_append(&c->out, iov, n, done, len - done, t->buf_alloc) < 0) {
        log_guest(LOG_WARN, "vsock: no memory for a connection buffer: reset");
        count_drop(t, VSOCK_R_NOMEM);
        conn_reset(t, c);
        return;
    }
    forwarded(t, c, done);
}

static void guest_shutdown(struct vsock_conns *t, struct vsock_conn *c, uint32_t flags)
{
    flags &= VSOCK_SHUTDOWN_BOTH;
    uint32_t news = flags & ~c->guest_shut;
    c->guest_shut |= flags;
    /* It reads no more: the host program's writes fail instead of filling a socket. */
    if ((news & VSOCK_SHUTDOWN_RCV) != 0 && c->fd >= 0)
        (void)shutdown(c->fd, SHUT_RD);
    forwarded(t, c, 0); /* SEND with nothing buffered: EOF to the host now */
}

/* Guest REQUEST to host port P: connect to PATH_P. */
static void guest_connect(struct vsock_conns *t, const struct vsock_hdr *h)
{
    if (t->used >= t->max) {
        log_guest(LOG_WARN, "vsock: %u connections already: guest port %u refused", t->max,
                  h->src_port);
        count_drop(t, VSOCK_R_FULL);
        t->stats.refused++;
        queue_rst(t, h);
        return;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int plen = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", t->uds_path, h->dst_port);
    int fd = -1, r = -1, err = ENAMETOOLONG; /* main() checked the length; be sure anyway */
    if (plen > 0 && (size_t)plen < sizeof(sa.sun_path)) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        r = fd >= 0 ? connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) : -1;
        err = r < 0 ? errno : 0;
    }
    /* Unix sockets connect at once or fail (EAGAIN: the listener's backlog is full). */
    struct vsock_conn *c = fd >= 0 && (r == 0 || err == EINPROGRESS) ? conn_alloc(t) : NULL;
    if (c == NULL) {
        log_debug("vsock: guest port %u -> host port %u: %s", h->src_port, h->dst_port,
                  strerror(err));
        if (fd >= 0)
            close(fd);
        t->stats.refused++;
        queue_rst(t, h);
        return;
    }
    c->fd = fd;
    c->host_port = h->dst_port;
    c->guest_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    hash_insert(t, c);
    if (r == 0) {
        established(t, c);
        c->send_response = true;
    } else {
        c->state = VSOCK_CONN_CONNECTING;
        c->deadline_ns = t->now + VSOCK_HANDSHAKE_NS;
    }
    touch(t, c);
}

/* The guest accepted our REQUEST: tell the host client which port it got. */
static void host_request_accepted(struct vsock_conns *t, struct vsock_conn *c)
{
    char ok[24];
    int n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
    /* A fresh socket's buffer is empty: the line fits, or the socket is broken. */
    ssize_t w = send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    established(t, c);
    if (w != n)
        host_failed(t, c, w < 0 ? errno : EAGAIN);
}

/* A packet the connection's state does not allow. */
static void violation(struct vsock_conns *t, struct vsock_conn *c, const struct vsock_hdr *h)
{
    log_guest(LOG_WARN, "vsock: guest port %u: op %u not allowed now: reset", h->src_port, h->op);
    count_drop(t, VSOCK_R_STATE);
    if (c->state == VSOCK_CONN_REQUEST)
        t->stats.refused++;
    conn_reset(t, c);
}

void vsock_conns_guest_packet(struct vsock_conns *t, const struct vsock_hdr *h,
                              uint64_t payload_bytes, const struct vq_iovec *payload, unsigned n,
                              uint64_t now)
{
    t->now = now;
    t->stats.pkts_from_guest++;
    enum vsock_reason why = VSOCK_R_SHORT;
    enum vsock_verdict v = vsock_hdr_check(h, t->guest_cid, payload_bytes, &why);
    if (v == VSOCK_DROP) {
        log_guest(LOG_WARN, "vsock: packet dropped (%s)", vsock_reason_name(why));
        count_drop(t, why);
        return;
    }
    struct vsock_conn *c = lookup(t, h->dst_port, h->src_port);
    if (v == VSOCK_RESET) {
        log_guest(LOG_WARN, "vsock: bad packet from guest port %u (%s): reset", h->src_port,
                  vsock_reason_name(why));
        count_drop(t, why);
        if (c == NULL)
            queue_rst(t, h);
        else if (h->op == VSOCK_OP_RST)
            conn_free(t, c);
        else
            conn_reset(t, c);
        return;
    }
    if (h->op == VSOCK_OP_REQUEST) {
        /* The guest reuses the pair: whatever we had under it is stale. */
        if (c != NULL)
            conn_free(t, c);
        guest_connect(t, h);
        return;
    }
    if (c == NULL) {
        if (h->op != VSOCK_OP_RST) {
            count_drop(t, VSOCK_R_NO_CONN);
            queue_rst(t, h);
        }
        return;
    }
    if (h->op == VSOCK_OP_RST) {
        if (c->state == VSOCK_CONN_REQUEST)
            t->stats.refused++; /* the guest has nothing listening on that port */
        conn_free(t, c);
        return;
    }
    if (c->state == VSOCK_CONN_CLOSING)
        return; /* it crossed our RST */
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    switch (c->state) {
    case VSOCK_CONN_REQUEST:
        if (h->op == VSOCK_OP_RESPONSE && c->request_sent)
            host_request_accepted(t, c);
        else
            violation(t, c, h);
        break;
    case VSOCK_CONN_ESTABLISHED:
        if (h->op == VSOCK_OP_RW)
            guest_data(t, c, payload, n, h->len);
        else if (h->op == VSOCK_OP_SHUTDOWN)
            guest_shutdown(t, c, h->flags);
        else if (h->op == VSOCK_OP_CREDIT_REQUEST)
            c->credit_requested = true;
        else if (h->op != VSOCK_OP_CREDIT_UPDATE)
            violation(t, c, h);
        break;
    default: /* CONNECTING: the guest must wait for our RESPONSE */
        violation(t, c, h);
        break;
    }
    if (c->state != VSOCK_CONN_FREE)
        touch(t, c);
}

/* ---- towards the guest ---- */

bool vsock_conns_want_rx(const struct vsock_conns *t)
{
    return t->rst_len > 0 || t->work_head != NIL;
}

static void base_hdr(const struct vsock_conns *t, struct vsock_hdr *h, uint32_t src_port,
                     uint32_t dst_port)
{
    *h = (struct vsock_hdr){.src_cid = VSOCK_HOST_CID,
                            .dst_cid = t->guest_cid,
                            .src_port = src_port,
                            .dst_port = dst_port,
                            .type = VSOCK_TYPE_STREAM,
                            .buf_alloc = t->buf_alloc};
}

static int put_hdr(struct vsock_conns *t, const struct vsock_hdr *h, const struct vq_iovec *iov,
                   unsigned n, uint32_t *len)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(h, raw);
    if (vsock_iov_scatter(iov, n, 0, raw, sizeof(raw)) < 0)
        return -EINVAL;
    *len = VSOCK_HDR_SIZE + h->len;
    t->stats.pkts_to_guest++;
    return 1;
}

/* Read host bytes straight into the rx buffer after the header. */
static ssize_t read_host(struct vsock_conn *c, const struct vq_iovec *iov, unsigned n,
                         uint64_t room, uint32_t credit, uint32_t *asked)
{
    uint64_t max = room;
    if (max > credit)
        max = credit;
    if (max > VSOCK_MAX_PAYLOAD)
        max = VSOCK_MAX_PAYLOAD;
    struct vq_iovec win[RX_WINDOW_SEGS];
    uint64_t bytes;
    unsigned k = vsock_iov_window(iov, n, VSOCK_HDR_SIZE, max, win, RX_WINDOW_SEGS, &bytes);
    *asked = (uint32_t)bytes;
    ssize_t r = readv(c->fd, (const struct iovec *)(const void *)win, (int)k);
    return r < 0 ? -errno : r;
}

/*
 * The connection's next packet, most urgent first: the end (RST), the handshake,
 * data (or the EOF found while reading), then a credit update. Returns 1 with a
 * packet, 0 when the connection had nothing after all.
 */
static int emit(struct vsock_conns *t, struct vsock_conn *c, const struct vq_iovec *iov, unsigned n,
                uint64_t bytes, uint32_t *len)
{
    struct vsock_hdr h;
    base_hdr(t, &h, c->host_port, c->guest_port);
    h.fwd_cnt = c->fwd_cnt;
    if (c->state == VSOCK_CONN_CLOSING) {
        h.op = VSOCK_OP_RST;
        conn_free(t, c);
        return put_hdr(t, &h, iov, n, len);
    }
    if (c->state == VSOCK_CONN_REQUEST && !c->request_sent) {
        h.op = VSOCK_OP_REQUEST;
        c->request_sent = true;
    } else if (c->send_response) {
        h.op = VSOCK_OP_RESPONSE;
        c->send_response = false;
    }
    uint32_t credit = credit_of(c);
    /* A buffer with room for a header only carries no data (a read of 0 bytes would
     * look like EOF); the connection keeps its turn for the next one. */
    if (h.op == VSOCK_OP_INVALID && c->readable && wants_read(c) && credit > 0 &&
        bytes > VSOCK_HDR_SIZE) {
        uint32_t asked = 0;
        ssize_t r = read_host(c, iov, n, bytes - VSOCK_HDR_SIZE, credit, &asked);
        if (r > 0) {
            h.op = VSOCK_OP_RW;
            h.len = (uint32_t)r;
            c->tx_cnt += (uint32_t)r;
            t->stats.bytes_to_guest += (uint64_t)r;
            /* Short: the socket is empty now, poll it again. One that hung up is never
             * polled again, so it stays readable: the next read returns its EOF. */
            if ((uint32_t)r < asked && !c->host_hup)
                c->readable = false;
        } else if (r == 0) {
            c->host_eof = true;
            c->readable = false;
            c->local_shut |= VSOCK_SHUTDOWN_SEND;
            h.op = VSOCK_OP_SHUTDOWN;
            h.flags = VSOCK_SHUTDOWN_SEND;
            check_done(t, c); /* the RST may follow at once */
        } else if (r == -EAGAIN || r == -EWOULDBLOCK || r == -EINTR) {
            c->readable = false;
        } else {
            host_failed(t, c, (int)-r);
            h.op = VSOCK_OP_RST;
            conn_free(t, c);
            return put_hdr(t, &h, iov, n, len);
        }
    }
    if (h.op == VSOCK_OP_INVALID &&
        (c->credit_requested ||
         vsock_credit_update_due(t->buf_alloc, c->fwd_cnt, c->last_adv_fwd, c->out.len)))
        h.op = VSOCK_OP_CREDIT_UPDATE;
    if (h.op == VSOCK_OP_INVALID)
        return 0;
    /* Every header carries our credit: it is an update in itself. */
    c->last_adv_fwd = c->fwd_cnt;
    c->credit_requested = false;
    return put_hdr(t, &h, iov, n, len);
}

int vsock_conns_fill(struct vsock_conns *t, const struct vq_iovec *iov, unsigned n, uint64_t bytes,
                     uint32_t *len)
{
    if (bytes < VSOCK_HDR_SIZE)
        return -EINVAL;
    if (t->rst_len > 0) {
        const struct vsock_rst *r = &t->rsts[t->rst_head];
        struct vsock_hdr h;
        base_hdr(t, &h, r->src_port, r->dst_port);
        h.type = r->type;
        h.op = VSOCK_OP_RST;
        t->rst_head = (t->rst_head + 1) % VSOCK_RST_QUEUE;
        t->rst_len--;
        return put_hdr(t, &h, iov, n, len);
    }
    /*
     * Each connection goes to the tail after its turn if it has more. One that found
     * nothing after all (an empty socket) has nothing left; one that could not use this
     * buffer (too small for data) keeps its work, so the tries are bounded.
     */
    for (unsigned tries = 0; tries < t->max && t->work_head != NIL; tries++) {
        struct vsock_conn *c = slot(t, t->work_head);
        work_remove(t, c);
        int r = emit(t, c, iov, n, bytes, len);
        if (c->state != VSOCK_CONN_FREE)
            touch(t, c);
        if (r != 0)
            return r;
    }
    return 0;
}

/* ---- the host's side ---- */

int vsock_parse_connect(const char *s, uint32_t len, uint32_t *port)
{
    static const char word[] = "CONNECT ";
    const uint32_t wl = sizeof(word) - 1;
    if (len <= wl || len > wl + 10 || memcmp(s, word, wl) != 0)
        return -EINVAL;
    uint64_t v = 0;
    for (uint32_t i = wl; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -EINVAL;
    *port = (uint32_t)v;
    return 0;
}

/* A free host port for a connection to guest port @p guest_port. */
static int pick_port(struct vsock_conns *t, uint32_t guest_port, uint32_t *out)
{
    /* Each taken candidate is a connection: more tries than connections cannot fail. */
    for (unsigned tries = 0; tries <= t->used; tries++) {
        uint32_t p = t->next_port;
        t->next_port = p >= UINT32_MAX - 1 ? VSOCK_FIRST_LOCAL_PORT : p + 1;
        if (lookup(t, p, guest_port) == NULL) {
            *out = p;
            return 0;
        }
    }
    return -EADDRINUSE;
}

static void bad_line(struct vsock_conns *t, struct vsock_conn *c, const char *why)
{
    log_guest(LOG_WARN, "vsock: host client on %s: %s", t->uds_path, why);
    count_drop(t, VSOCK_R_LINE);
    conn_free(t, c);
}

/*
 * Take the CONNECT line, never a byte past its newline: what follows is the stream.
 * Bytes are peeked and only the line's own consumed, so nothing is lost and the
 * socket does not stay readable for ever with half a line in it.
 */
static void line_readable(struct vsock_conns *t, struct vsock_conn *c)
{
    char buf[VSOCK_LINE_MAX];
    uint32_t room = VSOCK_LINE_MAX - c->line_len;
    ssize_t r = recv(c->fd, buf, room, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        bad_line(t, c, r == 0 ? "closed before its CONNECT line" : "read failed");
        return;
    }
    const char *nl = memchr(buf, '\n', (size_t)r);
    size_t take = nl != NULL ? (size_t)(nl - buf) + 1 : (size_t)r;
    if (recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT) != (ssize_t)take) {
        bad_line(t, c, "read failed");
        return;
    }
    c->line_len += (uint32_t)take;
    if (nl == NULL) {
        if (c->line_len == VSOCK_LINE_MAX)
            bad_line(t, c, "CONNECT line too long");
        return;
    }
    uint32_t port;
    if (vsock_parse_connect(c->line, c->line_len - 1, &port) < 0) {
        bad_line(t, c, "malformed CONNECT line");
        return;
    }
    uint32_t local;
    if (pick_port(t, port, &local) < 0) {
        bad_line(t, c, "no free host port");
        return;
    }
    c->state = VSOCK_CONN_REQUEST;
    c->host_port = local;
    c->guest_port = port;
    c->deadline_ns = t->now + VSOCK_HANDSHAKE_NS;
    hash_insert(t, c);
    touch(t, c);
}

static void accept_clients(struct vsock_conns *t)
{
    for (unsigned i = 0; i < ACCEPTS_PER_ROUND; i++) {
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                log_guest(LOG_WARN, "vsock: accept on %s: %s", t->uds_path, strerror(errno));
            return;
        }
        struct vsock_conn *c = conn_alloc(t);
        if (c == NULL) {
            /* Closing at once tells the client more than a backlog that never moves. */
            log_guest(LOG_WARN, "vsock: %u connections already: host client refused", t->max);
            count_drop(t, VSOCK_R_FULL);
            t->stats.refused++;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->state = VSOCK_CONN_LINE;
        c->deadline_ns = t->now + VSOCK_HANDSHAKE_NS;
    }
}

unsigned vsock_conns_max_pollfds(const struct vsock_conns *t)
{
    return t->max + 1;
}

static short events_of(const struct vsock_conn *c)
{
    if (c->fd < 0 || c->host_hup)
        return 0;
    switch (c->state) {
    case VSOCK_CONN_LINE:
        return POLLIN;
    case VSOCK_CONN_CONNECTING:
        return POLLOUT;
    case VSOCK_CONN_ESTABLISHED: {
        short ev = 0;
        if (!c->readable && wants_read(c) && credit_of(c) > 0)
            ev |= POLLIN;
        if (c->out.len > 0)
            ev |= POLLOUT;
        return ev;
    }
    default:
        return 0;
    }
}

unsigned vsock_conns_pollfds(struct vsock_conns *t, struct pollfd *pfd, unsigned max)
{
    unsigned k = 0;
    if (t->accepting && t->listen_fd >= 0 && k < max) {
        pfd[k] = (struct pollfd){.fd = t->listen_fd, .events = POLLIN};
        t->poll_slot[k] = NIL;
        t->poll_gen[k] = 0;
        k++;
    }
    for (unsigned i = 0; i < t->max && k < max; i++) {
        const struct vsock_conn *c = &t->conns[i];
        short ev = c->state != VSOCK_CONN_FREE ? events_of(c) : 0;
        if (ev == 0)
            continue; /* POLLHUP would be reported for ever otherwise */
        pfd[k] = (struct pollfd){.fd = c->fd, .events = ev};
        t->poll_slot[k] = (int)i;
        t->poll_gen[k] = c->gen;
        k++;
    }
    t->poll_n = k;
    return k;
}

static void connect_done(struct vsock_conns *t, struct vsock_conn *c)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        err = errno;
    if (err != 0) {
        log_debug("vsock: guest port %u -> host port %u: %s", c->guest_port, c->host_port,
                  strerror(err));
        t->stats.refused++;
        conn_reset(t, c);
        return;
    }
    established(t, c);
    c->send_response = true;
}

static void established_event(struct vsock_conns *t, struct vsock_conn *c, short re)
{
    /* A peer that closed with bytes of ours unread (a client that never read its "OK"
     * line) leaves ECONNRESET, yet what it wrote before is still queued for us: reading
     * returns those bytes first and the error after them, which then ends the
     * connection. Guest bytes waiting for it can never be delivered: reset now. */
    if ((re & POLLERR) && wants_read(c) && c->out.len == 0) {
        c->readable = true;
        if (re & POLLHUP)
            c->host_hup = true;
        return;
    }
    if (re & POLLERR) {
        int err = 0;
        socklen_t l = sizeof(err);
        (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        host_failed(t, c, err != 0 ? err : EIO);
        return;
    }
    if (re & (POLLIN | POLLHUP))
        c->readable = true; /* bytes, or the EOF read() will report */
    if (re & POLLHUP)
        c->host_hup = true;
    if (re & (POLLOUT | POLLHUP))
        flush_host(t, c); /* after a hang-up this fails and resets */
}

void vsock_conns_poll_events(struct vsock_conns *t, const struct pollfd *pfd, unsigned n,
                             uint64_t now)
{
    t->now = now;
    if (n > t->poll_n)
        n = t->poll_n;
    for (unsigned k = 0; k < n; k++) {
        short re = pfd[k].revents;
        if (re == 0)
            continue;
        if (t->poll_slot[k] == NIL) {
            if (t->accepting && pfd[k].fd == t->listen_fd)
                accept_clients(t);
            continue;
        }
        struct vsock_conn *c = slot(t, t->poll_slot[k]);
        /* Closed meanwhile, maybe reused with the same descriptor number. */
        if (c->gen != t->poll_gen[k] || c->fd != pfd[k].fd || c->state == VSOCK_CONN_FREE)
            continue;
        switch (c->state) {
        case VSOCK_CONN_LINE:
            line_readable(t, c);
            break;
        case VSOCK_CONN_CONNECTING:
            connect_done(t, c);
            break;
        case VSOCK_CONN_ESTABLISHED:
            established_event(t, c, re);
            break;
        default:
            break;
        }
        if (c->state != VSOCK_CONN_FREE)
            touch(t, c);
    }
}

uint64_t vsock_conns_next_deadline(const struct vsock_conns *t)
{
    uint64_t next = 0;
    for (unsigned i = 0; i < t->max; i++) {
        const struct vsock_conn *c = &t->conns[i];
        if (c->state != VSOCK_CONN_FREE && c->deadline_ns != 0 &&
            (next == 0 || c->deadline_ns < next))
            next = c->deadline_ns;
    }
    return next;
}

void vsock_conns_expire(struct vsock_conns *t, uint64_t now)
{
    t->now = now;
    for (unsigned i = 0; i < t->max; i++) {
        struct vsock_conn *c = &t->conns[i];
        if (c->state == VSOCK_CONN_FREE || c->deadline_ns == 0 || c->deadline_ns > now)
            continue;
        c->deadline_ns = 0;
        count_drop(t, VSOCK_R_TIMEOUT);
        switch (c->state) {
        case VSOCK_CONN_LINE:
            log_guest(LOG_WARN, "vsock: host client on %s sent no CONNECT line in time",
                      t->uds_path);
            conn_free(t, c);
            break;
        case VSOCK_CONN_REQUEST:
        case VSOCK_CONN_CONNECTING:
            log_guest(LOG_WARN, "vsock: host port %u <-> guest port %u: no answer in time",
                      c->host_port, c->guest_port);
            t->stats.refused++;
            conn_reset(t, c);
            break;
        default: /* the guest closed; the host did not take the last bytes in time */
            log_guest(LOG_WARN, "vsock: host port %u: %u bytes never taken by the host",
                      c->host_port, c->out.len);
            conn_reset(t, c);
            break;
        }
    }
}

void vsock_conns_log_stats(const struct vsock_conns *t, const char *when)
{
    const struct vsock_stats *s = &t->stats;
    log_info("vsock (%s): from guest %llu packets %llu bytes, to guest %llu packets %llu bytes; "
             "connections %u open, %llu opened, %llu closed, %llu refused; %llu events",
             when, (unsigned long long)s->pkts_from_guest, (unsigned long long)s->bytes_from_guest,
             (unsigned long long)s->pkts_to_guest, (unsigned long long)s->bytes_to_guest, t->used,
             (unsigned long long)s->opened, (unsigned long long)s->closed,
             (unsigned long long)s->refused, (unsigned long long)s->events);
    char line[512];
    size_t off = 0;
    for (unsigned r = 0; r < VSOCK_NR_REASONS; r++) {
        if (s->drops[r] == 0 || off >= sizeof(line))
            continue;
        int k = snprintf(line + off, sizeof(line) - off, " %s=%llu",
                         vsock_reason_name((enum vsock_reason)r), (unsigned long long)s->drops[r]);
        if (k > 0)
            off += (size_t)k;
    }
    log_info("vsock (%s): given up:%s", when, off > 0 ? line : " nothing");
}
