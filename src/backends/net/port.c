/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/net/port.h"

#include "core/log.h"
#include "virtio/virtio_ring.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define BIT(n) (1ull << (n))

_Static_assert(sizeof(struct vq_iovec) == sizeof(struct iovec) &&
                   offsetof(struct vq_iovec, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(struct vq_iovec, len) == offsetof(struct iovec, iov_len),
               "a vq_iovec array can be handed to writev()");

uint64_t net_vm_features(unsigned pairs)
{
    uint64_t f =
        BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_EVENT_IDX) | BIT(VIRTIO_F_INDIRECT_DESC) |
        BIT(VIRTIO_NET_F_MRG_RXBUF) | BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) |
        BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) |
        BIT(VIRTIO_NET_F_GUEST_TSO4) | BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN);
    if (pairs > 1)
        f |= BIT(VIRTIO_NET_F_MQ);
    return f;
}

void net_iov_read(const struct vq_iovec *iov, unsigned niov, void *dst, size_t n)
{
    uint8_t *d = dst;
    for (unsigned i = 0; i < niov && n > 0; i++) {
        size_t k = iov[i].len < n ? iov[i].len : n;
        memcpy(d, iov[i].base, k);
        d += k;
        n -= k;
    }
}

bool net_vm_ring_running(const struct net_port *p, unsigned ring)
{
    if (p->kind != NET_PORT_VM || !p->connected || ring >= 2u * p->nr_pairs)
        return false;
    const struct vhost_be_queue *bq = &p->be.queues[ring];
    /* The library's rule: with protocol features a ring runs only once enabled. */
    return bq->started && (bq->enabled || !p->be.protocol_negotiated) && bq->vq.enabled &&
           !bq->vq.broken;
}

/* The arrays hold a walk of any chain the ring can have (the virtqueue code refuses
 * chains longer than the Queue Size) and, for a receiveq, as many stashed chains as the
 * ring holds. */
static int grow_arrays(struct net_port *p, unsigned ring, unsigned size)
{
    if (size > p->iov_size) {
        struct vq_iovec *t = realloc(p->tx_iov, size * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        p->tx_iov = t;
        struct vq_iovec *r = realloc(p->rx_iov, size * sizeof(*r));
        if (r == NULL)
            return -ENOMEM;
        p->rx_iov = r;
        p->iov_size = size;
    }
    struct net_rxq *rq = &p->rxq[ring / 2u];
    if (ring % 2u != 0 || size <= rq->stash_size)
        return 0;
    struct net_rx_slot *st = realloc(rq->stash, size * sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    rq->stash = st;
    rq->stash_size = size;
    return 0;
}

void net_port_free_buffers(struct net_port *p)
{
    free(p->tx_iov);
    free(p->rx_iov);
    free(p->tap_buf);
    p->tx_iov = NULL;
    p->rx_iov = NULL;
    p->tap_buf = NULL;
    p->iov_size = 0;
    for (unsigned k = 0; k < NET_MAX_QUEUE_PAIRS; k++) {
        free(p->rxq[k].stash);
        p->rxq[k].stash = NULL;
        p->rxq[k].stash_size = 0;
        p->rxq[k].stash_n = 0;
    }
}

/* Stage a used element; a full staging area is published first. */
static void add_used(struct vq *vq, uint16_t head, uint32_t len)
{
    if (vq_add_used(vq, head, len) == -ENOSPC) {
        (void)vq_publish_used(vq);
        (void)vq_add_used(vq, head, len);
    }
}

/* ---- receive side ---- */

/* A receive chain with no room at all cannot carry even the header: give it back. */
static void rx_unusable(struct net_port *p, unsigned ring, struct vq *vq, uint16_t head)
{
    add_used(vq, head, 0);
    p->rx_touched |= BIT(ring / 2u);
    net_port_drop(p, NET_DROP_RX_BUFFER);
}

/*
 * Find chains of one receiveq (stashed first, then from the ring) with room for @p need
 * bytes. On success the first @p nchains stash entries are the packet's. @p walked is
 * the stash entry whose segments rx_iov still holds (-1: none), with @p walked_nseg
 * segments.
 */
static int gather(struct net_port *p, unsigned ring, struct vq *vq, uint64_t need, bool mrg,
                  unsigned *nchains, int *walked, unsigned *walked_nseg)
{
    struct net_rxq *rq = &p->rxq[ring / 2u];
    uint64_t sum = 0;
    unsigned k = 0;
    *walked = -1;
    for (;;) {
        for (; k < rq->stash_n; k++) {
            if (!mrg) {
                /* The whole packet in one chain (virtio 1.2 §5.1.6.3.1). */
                if (rq->stash[0].room < need)
                    return -EMSGSIZE;
                *nchains = 1;
                return 0;
            }
            sum += rq->stash[k].room;
            if (sum >= need) {
                *nchains = k + 1;
                return 0;
            }
        }
        if (rq->stash_n >= rq->stash_size)
            return -EMSGSIZE; /* as many chains as the ring holds, and still too little */
        uint16_t head;
        int r = vq_pop_avail(vq, &head);
        if (r == 0)
            return -EAGAIN;
        if (r < 0)
            return -ENODEV;
        struct vq_chain ch;
        r = vq_walk_chain(vq, head, VQ_ACCESS_WRITABLE_ONLY, p->rx_iov, p->iov_size, &ch);
        if (r == -ENOBUFS || (r == 0 && ch.writable_bytes == 0)) {
            rx_unusable(p, ring, vq, head);
            continue;
        }
        if (r < 0)
            return -ENODEV; /* the ring broke */
        uint32_t room = ch.writable_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)ch.writable_bytes;
        *walked = (int)rq->stash_n;
        *walked_nseg = ch.nr_writable;
        rq->stash[rq->stash_n++] = (struct net_rx_slot){.head = head, .room = room};
    }
}

/* The driver broke a receiveq while a packet was being delivered (the library says so
 * only for rings it processes itself). The ring takes nothing more until it is reset. */
static void rx_broken(const struct net_port *p, unsigned ring, const struct vq *vq)
{
    if (vq->broken)
        log_guest(LOG_WARN, "net: port %u (%s): receive queue %u broken: %s", p->index, p->name,
                  ring, vq->broken_reason != NULL ? vq->broken_reason : "?");
}

/** Reads a packet's bytes in order: the header, then the frame's segments. */
struct cursor {
    struct vq_iovec hdr;        /**< The encoded header. */
    const struct vq_iovec *iov; /**< The frame. */
    unsigned n;                 /**< Entries of @c iov. */
    unsigned i;                 /**< Current segment: 0 is @c hdr, i > 0 is iov[i - 1]. */
    size_t off;                 /**< Bytes of the current segment consumed. */
};

static const struct vq_iovec *cursor_seg(const struct cursor *c)
{
    if (c->i == 0)
        return &c->hdr;
    return c->i <= c->n ? &c->iov[c->i - 1] : NULL;
}

/* Copy from the cursor into a chain's writable segments; returns the bytes written. */
static uint32_t cursor_copy(struct cursor *c, const struct vq_iovec *dst, unsigned ndst)
{
    uint64_t total = 0;
    for (unsigned d = 0; d < ndst; d++) {
        size_t doff = 0;
        const struct vq_iovec *s;
        while (doff < dst[d].len && (s = cursor_seg(c)) != NULL) {
            size_t k = s->len - c->off;
            if (k > dst[d].len - doff)
                k = dst[d].len - doff;
            memcpy((uint8_t *)dst[d].base + doff, (const uint8_t *)s->base + c->off, k);
            doff += k;
            c->off += k;
            total += k;
            if (c->off == s->len) {
                c->i++;
                c->off = 0;
            }
        }
        if (cursor_seg(c) == NULL)
            break;
    }
    return (uint32_t)total; /* at most the packet: 12 + NET_FRAME_MAX */
}

int net_vm_rx_pick(const struct net_port *p, uint32_t flow)
{
    if (p->nr_pairs == 1)
        return net_vm_ring_running(p, VIRTIO_NET_RXQ) ? (int)VIRTIO_NET_RXQ : -ENODEV;
    unsigned running[NET_MAX_QUEUE_PAIRS];
    unsigned n = 0;
    for (unsigned k = 0; k < p->nr_pairs && k < NET_MAX_QUEUE_PAIRS; k++) {
        if (net_vm_ring_running(p, VIRTIO_NET_RXQ_OF(k)))
            running[n++] = k;
    }
    if (n == 0)
        return -ENODEV;
    /* The hash scaled to [0, n): no modulo bias worth a thought, no division. */
    return (int)VIRTIO_NET_RXQ_OF(running[((uint64_t)flow * n) >> 32]);
}

int net_vm_put(struct net_port *dst, unsigned ring, const struct virtio_net_hdr *hdr,
               const struct vq_iovec *iov, unsigned niov, uint32_t len)
{
    if (ring % 2u != 0 || !net_vm_ring_running(dst, ring))
        return -ENODEV;
    struct net_rxq *rq = &dst->rxq[ring / 2u];
    struct vq *vq = &dst->be.queues[ring].vq;
    bool mrg = (dst->be.features & BIT(VIRTIO_NET_F_MRG_RXBUF)) != 0;
    unsigned nchains = 0, walked_nseg = 0;
    int walked;
    int r = gather(dst, ring, vq, (uint64_t)VIRTIO_NET_HDR_LEN + len, mrg, &nchains, &walked,
                   &walked_nseg);
    if (r == -ENODEV)
        rx_broken(dst, ring, vq);
    if (r < 0)
        return r;

    uint8_t raw[VIRTIO_NET_HDR_LEN];
    struct virtio_net_hdr h = *hdr;
    h.num_buffers = mrg ? (uint16_t)nchains : 1u; /* nchains <= Queue Size <= 32768 */
    net_hdr_encode(&h, raw);
    struct cursor c = {.hdr = {.base = raw, .len = sizeof(raw)}, .iov = iov, .n = niov};
    for (unsigned k = 0; k < nchains; k++) {
        const struct net_rx_slot *s = &rq->stash[k];
        unsigned nseg = walked_nseg;
        if (!(nchains == 1 && walked == 0)) {
            /* Walked again: segments are never kept beyond the call that walked them. */
            struct vq_chain ch;
            r = vq_walk_chain(vq, s->head, VQ_ACCESS_WRITABLE_ONLY, dst->rx_iov, dst->iov_size,
                              &ch);
            if (r < 0 && r != -ENOBUFS)
                break; /* the ring broke under us */
            nseg = ch.nr_writable;
        }
        add_used(vq, s->head, cursor_copy(&c, dst->rx_iov, nseg));
    }
    memmove(rq->stash, rq->stash + nchains, (rq->stash_n - nchains) * sizeof(*rq->stash));
    rq->stash_n -= nchains;
    (void)vq_publish_used(vq);
    dst->rx_touched |= BIT(ring / 2u);
    if (r < 0 && r != -ENOBUFS) {
        rx_broken(dst, ring, vq);
        return -ENODEV;
    }
    return 0;
}

bool net_vm_rx_arm(struct net_port *p, unsigned ring)
{
    if (ring % 2u != 0 || !net_vm_ring_running(p, ring))
        return true;
    p->rx_armed |= BIT(ring / 2u);
    return vq_avail_notify_enable(&p->be.queues[ring].vq) != 0;
}

void net_vm_rx_disarm(struct net_port *p, unsigned ring)
{
    p->rx_armed &= ~BIT(ring / 2u);
    if (ring % 2u == 0 && net_vm_ring_running(p, ring))
        (void)vq_avail_notify_disable(&p->be.queues[ring].vq);
}

bool net_vm_rx_ready(struct net_port *p, unsigned ring)
{
    return ring % 2u == 0 && net_vm_ring_running(p, ring) && vq_avail_peek(&p->be.queues[ring].vq);
}

/* ---- transmit side ---- */

/* Take one transmit chain: 0 when done with it (forwarded or dropped), -EAGAIN when its
 * frame must wait, another negative errno when the ring broke. */
static int tx_chain(struct net_port *p, struct vq *vq, uint16_t head)
{
    struct vq_chain ch;
    int r = vq_walk_chain(vq, head, VQ_ACCESS_READABLE_ONLY, p->tx_iov, p->iov_size, &ch);
    if (r == -ENOBUFS) {
        net_port_drop(p, NET_DROP_BAD_CHAIN);
        return 0;
    }
    if (r < 0)
        return r;
    if (ch.readable_bytes < VIRTIO_NET_HDR_LEN + NET_ETH_HLEN) {
        net_port_drop(p, NET_DROP_SHORT);
        return 0;
    }
    if (ch.readable_bytes > VIRTIO_NET_HDR_LEN + NET_FRAME_MAX) {
        net_port_drop(p, NET_DROP_LONG);
        return 0;
    }
    /* The header is copied out once; only the copy is checked and used. */
    uint8_t raw[VIRTIO_NET_HDR_LEN];
    net_iov_read(p->tx_iov, ch.nr_readable, raw, sizeof(raw));
    struct virtio_net_hdr h;
    net_hdr_decode(raw, &h);
    uint32_t len = (uint32_t)(ch.readable_bytes - VIRTIO_NET_HDR_LEN);
    enum net_drop d = net_hdr_check(&h, len, p->be.features, false);
    if (d != NET_DROP_NONE) {
        net_port_drop(p, d);
        return 0;
    }
    /* The frame: the segments after the header's 12 bytes. */
    unsigned i = 0;
    size_t skip = VIRTIO_NET_HDR_LEN;
    while (skip >= p->tx_iov[i].len) {
        skip -= p->tx_iov[i].len;
        i++;
    }
    p->tx_iov[i].base = (uint8_t *)p->tx_iov[i].base + skip;
    p->tx_iov[i].len -= skip;
    r = net_switch_forward(p->sw, p, &h, &p->tx_iov[i], ch.nr_readable - i, len, false);
    if (r < 0)
        return r;
    p->st.in_packets++;
    p->st.in_bytes += len;
    return 0;
}

/* End of a batch: one publish, at most one notification per ring touched. */
static void tx_batch_done(struct net_port *p, unsigned ring)
{
    (void)vq_publish_used(&p->be.queues[ring].vq);
    if (vhost_be_queue_notify(&p->be, ring) == 1) {
        p->st.tx_notifies++;
        p->txq_st[ring / 2u].notifies++;
    }
    net_switch_flush(p->sw);
}

void net_vm_drop_pending(struct net_port *p)
{
    p->pending = false;
    add_used(&p->be.queues[p->tx_ring].vq, p->tx_head, 0);
    tx_batch_done(p, p->tx_ring);
}

int net_vm_tx(struct net_port *p, unsigned ring)
{
    if (ring % 2u == 0 || !net_vm_ring_running(p, ring))
        return 0;
    struct vq *vq = &p->be.queues[ring].vq;
    uint64_t bit = BIT(ring / 2u);
    if (p->pending) {
        /* One frame of the port waits: its transmitqs all wait with it, kicks off, until
         * net_vm_tx_resume() takes them all up again. */
        (void)vq_avail_notify_disable(vq);
        return 0;
    }
    for (;;) {
        int r = vq_avail_notify_disable(vq);
        unsigned n = 0;
        while (r == 0 && n < NET_TX_BUDGET) {
            uint16_t head;
            r = vq_pop_avail(vq, &head);
            if (r <= 0)
                break;
            r = tx_chain(p, vq, head);
            if (r == -EAGAIN) {
                p->pending = true;
                p->tx_head = head;
                p->tx_ring = ring;
                break;
            }
            if (r < 0)
                break;
            add_used(vq, head, 0);
            n++;
        }
        tx_batch_done(p, ring);
        if (p->pending)
            return 0; /* kicks stay off: net_vm_tx_resume() comes back */
        if (r < 0)
            return r;
        if (n == NET_TX_BUDGET) {
            p->tx_more |= bit; /* kicks stay off: net_switch_poll() comes back */
            return 0;
        }
        p->tx_more &= ~bit;
        if (p->sw->polling)
            return 0;
        r = vq_avail_notify_enable(vq);
        if (r <= 0)
            return r;
    }
}

void net_vm_tx_resume(struct net_port *p)
{
    unsigned first = 0;
    if (p->pending) {
        unsigned ring = p->tx_ring;
        struct vhost_be_queue *bq = &p->be.queues[ring];
        /* Retried even if the ring was disabled since: the chain was taken while it ran,
         * and a disabled transmitq's chains may be processed and discarded (vhost-user). */
        if (p->connected && bq->started && bq->vq.enabled) {
            int r = tx_chain(p, &bq->vq, p->tx_head);
            if (r == -EAGAIN) {
                net_switch_flush(p->sw);
                return;
            }
            if (r == 0)
                add_used(&bq->vq, p->tx_head, 0);
            /* Published with the ring's batch below, or now if it does not run. */
            if (!net_vm_ring_running(p, ring))
                tx_batch_done(p, ring);
        }
        p->pending = false;
        first = ring / 2u;
    }
    /* The waiting chain's ring first, so its completion goes out in that batch. */
    for (unsigned i = 0; i < p->nr_pairs && !p->pending; i++)
        (void)net_vm_tx(p, VIRTIO_NET_TXQ_OF((first + i) % p->nr_pairs));
}

/* ---- the vhost-user device ---- */

static int process_queue(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    struct net_port *p = opaque;
    int r = grow_arrays(p, index, be->queues[index].size);
    if (r < 0)
        return r;
    if (index % 2u == 0) {
        /* New receive buffers: whoever waits for this ring looks again. Kicks for them
         * are wanted only while someone waits. */
        p->sw->need_service = true;
        if ((p->rx_armed & BIT(index / 2u)) == 0)
            (void)vq_avail_notify_disable(vq);
        return 0;
    }
    return net_vm_tx(p, index);
}

/* The ring stops (GET_VRING_BASE, reset, disconnect): what it holds is returned. */
static void stop_queue(void *opaque, struct vhost_be *be, unsigned index)
{
    struct net_port *p = opaque;
    struct vq *vq = &be->queues[index].vq;
    uint64_t bit = BIT(index / 2u);
    if (index % 2u != 0) {
        if (p->pending && p->tx_ring == index) {
            p->pending = false;
            add_used(vq, p->tx_head, 0);
            p->st.in_packets++; /* taken in, lost before it could go out */
            p->st.in_bytes += p->pending_len;
            net_port_drop(p, NET_DROP_STOPPED);
            p->sw->need_service = true; /* the port's other transmitqs go on */
        }
        p->tx_more &= ~bit;
    } else {
        /* Empty receive buffers, as a device returns them that has nothing for them. */
        struct net_rxq *rq = &p->rxq[index / 2u];
        for (unsigned i = 0; i < rq->stash_n; i++)
            add_used(vq, rq->stash[i].head, 0);
        rq->stash_n = 0;
        p->rx_armed &= ~bit;
        p->rx_stalled &= ~bit;
        p->rx_touched &= ~bit;
        p->sw->need_service = true; /* sources waiting for this ring look elsewhere */
    }
    (void)vq_publish_used(vq);
    (void)vhost_be_queue_notify(be, index);
}

int net_vm_port_init(struct net_port *p, unsigned queue_size, unsigned pairs)
{
    if (pairs == 0 || pairs > NET_MAX_QUEUE_PAIRS)
        return -EINVAL;
    p->nr_pairs = pairs;
    p->dev = (struct vhost_be_device){
        .features = net_vm_features(pairs),
        .nr_queues = 2u * pairs,
        .config_size = 0, /* the frontend owns MAC, status and max_virtqueue_pairs */
        .opaque = p,
        .process_queue = process_queue,
        .stop_queue = stop_queue,
    };
    for (unsigned k = 0; k < pairs; k++) {
        int r = grow_arrays(p, VIRTIO_NET_RXQ_OF(k), queue_size);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- taps ---- */

int net_tap_put(struct net_port *dst, const struct virtio_net_hdr *hdr, const struct vq_iovec *iov,
                unsigned niov, uint32_t len)
{
    if (dst->tap_fd < 0)
        return -ENODEV;
    if (niov > NET_TAP_MAX_IOV)
        return -EINVAL;
    struct virtio_net_hdr h = *hdr;
    h.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM; /* the kernel reads nothing else */
    h.num_buffers = 0;
    uint8_t raw[VIRTIO_NET_HDR_LEN];
    net_hdr_encode(&h, raw);
    struct iovec v[1 + NET_TAP_MAX_IOV];
    v[0] = (struct iovec){.iov_base = raw, .iov_len = sizeof(raw)};
    memcpy(&v[1], iov, niov * sizeof(*iov));
    ssize_t n = writev(dst->tap_fd, v, (int)(1 + niov));
    if (n == (ssize_t)(sizeof(raw) + len))
        return 0;
    if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
        return -EAGAIN;
    if (n < 0)
        log_guest(LOG_WARN, "net: port %u (%s): tap write: %s", dst->index, dst->name,
                  strerror(errno));
    return -EIO;
}

/* Forward the packet in tap_buf: 0 when done with it, -EAGAIN when it must wait. */
static int tap_packet(struct net_port *p)
{
    uint32_t n = p->tap_len;
    if (n < VIRTIO_NET_HDR_LEN + NET_ETH_HLEN) {
        net_port_drop(p, NET_DROP_SHORT);
        return 0;
    }
    if (n > VIRTIO_NET_HDR_LEN + NET_FRAME_MAX) {
        net_port_drop(p, NET_DROP_LONG);
        return 0;
    }
    struct virtio_net_hdr h;
    net_hdr_decode(p->tap_buf, &h);
    uint32_t len = n - VIRTIO_NET_HDR_LEN;
    /* The kernel is trusted more than a guest, but its header is checked all the same. */
    enum net_drop d = net_hdr_check(&h, len, NET_TAP_HOST_FEATURES, true);
    if (d != NET_DROP_NONE) {
        net_port_drop(p, d);
        return 0;
    }
    struct vq_iovec frame = {.base = p->tap_buf + VIRTIO_NET_HDR_LEN, .len = len};
    int r = net_switch_forward(p->sw, p, &h, &frame, 1, len, true);
    if (r < 0)
        return r;
    p->st.in_packets++;
    p->st.in_bytes += len;
    return 0;
}

void net_tap_rx(struct net_port *p)
{
    for (unsigned i = 0; i < NET_TAP_BUDGET && !p->pending && p->tap_fd >= 0; i++) {
        ssize_t n = read(p->tap_fd, p->tap_buf, NET_TAP_BUF_SIZE);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) {
            /* A tap that fails (its interface was deleted) would keep poll() busy. */
            log_error("net: port %u (tap %s): %s; the port is gone", p->index, p->name,
                      n == 0 ? "end of file" : strerror(errno));
            close(p->tap_fd);
            p->tap_fd = -1;
            break;
        }
        p->tap_len = (uint32_t)n;
        if (tap_packet(p) == -EAGAIN)
            p->pending = true;
    }
    net_switch_flush(p->sw);
}

void net_tap_retry(struct net_port *p)
{
    if (tap_packet(p) == 0)
        p->pending = false;
    net_switch_flush(p->sw);
}
