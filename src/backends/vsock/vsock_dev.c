/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/vsock/vsock_dev.h"

#include "core/log.h"
#include "virtio/virtio_ring.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BIT(n) (1ull << (n))

/* Whether the library would process the ring now: started, enabled, healthy. */
static bool ring_usable(const struct vhost_be *be, unsigned i)
{
    const struct vhost_be_queue *q = &be->queues[i];
    return q->started && (q->enabled || !be->protocol_negotiated) && q->vq.enabled && !q->vq.broken;
}

static int get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
    const struct vsock_dev *vd = opaque;
    uint64_t cid = htole64(vd->guest_cid);
    /* The library checked offset + len against config_size, i.e. sizeof(cid). */
    memcpy(buf, (const uint8_t *)&cid + offset, len);
    return 0;
}

/* Segment arrays as large as the Queue Size: no well-formed chain gets -ENOBUFS. */
static int ensure_iov(struct vsock_dev *vd, uint16_t size)
{
    if (size <= vd->iov_cap)
        return 0;
    struct vq_iovec *a = calloc(size, sizeof(*a));
    struct vq_iovec *b = calloc(size, sizeof(*b));
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        log_error("vsock: no memory for a ring of %u entries", size);
        return -ENOMEM;
    }
    free(vd->iov);
    free(vd->payload);
    vd->iov = a;
    vd->payload = b;
    vd->iov_cap = size;
    return 0;
}

/*
 * Stage a used entry, publishing first when a whole ring's worth is staged: a hostile
 * driver may make one head available many times, and a ring holds only so many.
 */
static int add_used(struct vq *vq, uint16_t head, uint32_t len, unsigned *staged)
{
    if (*staged >= vq->size) {
        int r = vq_publish_used(vq);
        if (r < 0)
            return r;
        *staged = 0;
    }
    int r = vq_add_used(vq, head, len);
    if (r == 0)
        (*staged)++;
    return r;
}

/*
 * The TRANSPORT_RESET owed since the frontend connected. Once the guest has it, it
 * drops every connection it had; ours go with them so both sides agree.
 */
static void deliver_event(struct vsock_dev *vd)
{
    struct vhost_be *be = vd->be;
    if (!vd->event_pending || be == NULL || !ring_usable(be, VSOCK_EVQ) ||
        ensure_iov(vd, be->queues[VSOCK_EVQ].size) < 0)
        return;
    struct vq *vq = &be->queues[VSOCK_EVQ].vq;
    bool added = false;
    unsigned staged = 0;
    while (vd->event_pending) {
        uint16_t head;
        int r = vq_pop_avail(vq, &head);
        if (r == 0) {
            /* No buffer yet: the driver's next one must be kicked for. */
            if (vq_avail_notify_enable(vq) == 1)
                continue;
            break;
        }
        if (r < 0)
            break;
        struct vq_chain chain;
        r = vq_walk_chain(vq, head, VQ_ACCESS_WRITABLE_ONLY, vd->iov, vd->iov_cap, &chain);
        if (r < 0 && r != -ENOBUFS)
            break; /* the ring broke: the library reports it */
        uint8_t ev[VSOCK_EVENT_SIZE];
        uint32_t id = htole32(VSOCK_EVENT_TRANSPORT_RESET);
        memcpy(ev, &id, sizeof(ev));
        uint32_t used = 0;
        if (r == 0 && vsock_iov_scatter(vd->iov, chain.nr_writable, 0, ev, sizeof(ev)) == 0) {
            used = sizeof(ev);
            vd->event_pending = false;
            vd->conns.stats.events++;
            vsock_conns_transport_reset(&vd->conns);
        } else {
            vsock_conns_count_drop(&vd->conns, r == 0 ? VSOCK_R_EVENT_SMALL : VSOCK_R_CHAIN);
        }
        if (add_used(vq, head, used, &staged) < 0)
            break;
        added = true;
    }
    if (added) {
        (void)vq_publish_used(vq);
        (void)vhost_be_queue_notify(be, VSOCK_EVQ);
    }
}

/*
 * Give the guest what the connections have for it, one rx buffer per packet, until
 * either runs out; one publish and at most one notification for the lot.
 */
static void pump_rx(struct vsock_dev *vd)
{
    struct vhost_be *be = vd->be;
    if (be == NULL || !ring_usable(be, VSOCK_RXQ) || ensure_iov(vd, be->queues[VSOCK_RXQ].size) < 0)
        return;
    struct vq *vq = &be->queues[VSOCK_RXQ].vq;
    bool added = false;
    unsigned staged = 0;
    while (vsock_conns_want_rx(&vd->conns)) {
        uint16_t head;
        if (vd->rx_held) {
            head = vd->rx_held_head;
            vd->rx_held = false;
        } else {
            int r = vq_pop_avail(vq, &head);
            if (r == 0) {
                /* Out of buffers with packets waiting: ask for a kick on the next one. */
                if (vq_avail_notify_enable(vq) == 1)
                    continue;
                break;
            }
            if (r < 0)
                break;
        }
        struct vq_chain chain;
        int r = vq_walk_chain(vq, head, VQ_ACCESS_WRITABLE_ONLY, vd->iov, vd->iov_cap, &chain);
        if (r < 0 && r != -ENOBUFS)
            break; /* the ring broke: the library reports it */
        uint32_t len = 0;
        if (r == -ENOBUFS || chain.writable_bytes < VSOCK_HDR_SIZE) {
            /* The driver drops a buffer returned shorter than a header. */
            vsock_conns_count_drop(&vd->conns, r == 0 ? VSOCK_R_RX_SMALL : VSOCK_R_CHAIN);
        } else {
            r = vsock_conns_fill(&vd->conns, vd->iov, chain.nr_writable, chain.writable_bytes,
                                 &len);
            if (r <= 0) {
                /* Nothing after all (a host socket was empty): keep the head, not the
                 * pointers, for the next packet. */
                vd->rx_held = true;
                vd->rx_held_head = head;
                break;
            }
        }
        if (add_used(vq, head, len, &staged) < 0)
            break;
        added = true;
    }
    if (added) {
        (void)vq_publish_used(vq);
        (void)vhost_be_queue_notify(be, VSOCK_RXQ);
    }
}

/* One tx chain: copy the header out of guest memory once, then hand it on. */
static void tx_packet(struct vsock_dev *vd, const struct vq_chain *chain, uint64_t now)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    if (chain->readable_bytes < VSOCK_HDR_SIZE ||
        vsock_iov_gather(vd->iov, chain->nr_readable, 0, raw, sizeof(raw)) < 0) {
        log_guest(LOG_WARN, "vsock: tx chain of %llu bytes is shorter than a header",
                  (unsigned long long)chain->readable_bytes);
        vd->conns.stats.pkts_from_guest++;
        vsock_conns_count_drop(&vd->conns, VSOCK_R_SHORT);
        return;
    }
    struct vsock_hdr h;
    vsock_hdr_decode(raw, &h);
    uint64_t payload = chain->readable_bytes - VSOCK_HDR_SIZE;
    uint64_t got;
    unsigned m = vsock_iov_window(vd->iov, chain->nr_readable, VSOCK_HDR_SIZE, payload, vd->payload,
                                  vd->iov_cap, &got);
    vsock_conns_guest_packet(&vd->conns, &h, payload, vd->payload, m, now);
}

/* Every chain the driver made available, one publish per pass (virtqueue.h's loop). */
static int handle_tx(struct vsock_dev *vd, struct vq *vq, uint16_t size)
{
    int r = ensure_iov(vd, size);
    if (r < 0)
        return r;
    uint64_t now = vsock_now_ns();
    unsigned staged = 0;
    for (;;) {
        r = vq_avail_notify_disable(vq);
        if (r < 0)
            return r;
        uint16_t head;
        while ((r = vq_pop_avail(vq, &head)) == 1) {
            struct vq_chain chain;
            r = vq_walk_chain(vq, head, VQ_ACCESS_READABLE_ONLY, vd->iov, vd->iov_cap, &chain);
            if (r == 0) {
                tx_packet(vd, &chain, now);
            } else if (r == -ENOBUFS) {
                vd->conns.stats.pkts_from_guest++;
                vsock_conns_count_drop(&vd->conns, VSOCK_R_CHAIN);
            } else {
                break;
            }
            r = add_used(vq, head, 0, &staged);
            if (r < 0)
                break;
        }
        int p = vq_publish_used(vq);
        staged = 0;
        if (r < 0)
            return r;
        if (p < 0)
            return p;
        r = vq_avail_notify_enable(vq);
        if (r <= 0)
            return r;
    }
}

static int process_queue(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    struct vsock_dev *vd = opaque;
    int r = 0;
    switch (index) {
    case VSOCK_TXQ:
        /* The reset first: a guest told of it after opening connections would lose them. */
        deliver_event(vd);
        r = handle_tx(vd, vq, be->queues[index].size);
        pump_rx(vd); /* answers (RESPONSE, RST, credit) in the same round */
        break;
    case VSOCK_RXQ:
        pump_rx(vd);
        break;
    default:
        deliver_event(vd);
        break;
    }
    return r;
}

/* The ring stops: a buffer we took and did not fill goes back, empty. */
static void stop_queue(void *opaque, struct vhost_be *be, unsigned index)
{
    struct vsock_dev *vd = opaque;
    if (index != VSOCK_RXQ || !vd->rx_held)
        return;
    vd->rx_held = false;
    struct vq *vq = &be->queues[index].vq;
    if (vq->enabled && !vq->broken && vq_push_used(vq, vd->rx_held_head, 0) == 0)
        (void)vhost_be_queue_notify(be, index);
}

int vsock_dev_init(struct vsock_dev *vd, const struct vsock_dev_opts *o)
{
    memset(vd, 0, sizeof(*vd));
    struct vsock_conns_opts co = {.guest_cid = o->guest_cid,
                                  .uds_path = o->uds_path,
                                  .buf_alloc = o->buf_alloc,
                                  .max_conns = o->max_conns,
                                  .listen_fd = o->listen_fd};
    int r = vsock_conns_init(&vd->conns, &co);
    if (r < 0)
        return r;
    vd->guest_cid = o->guest_cid;
    vd->dev = (struct vhost_be_device){
        .features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_EVENT_IDX),
        .nr_queues = VSOCK_NR_QUEUES,
        .config_size = sizeof(uint64_t),
        .opaque = vd,
        .get_config = get_config,
        .process_queue = process_queue,
        .stop_queue = stop_queue,
    };
    return 0;
}

void vsock_dev_fini(struct vsock_dev *vd)
{
    vsock_conns_fini(&vd->conns);
    free(vd->iov);
    free(vd->payload);
    vd->iov = vd->payload = NULL;
    vd->iov_cap = 0;
}

void vsock_dev_attach(struct vsock_dev *vd, struct vhost_be *be)
{
    vd->be = be;
    vd->rx_held = false;
    vd->event_pending = true;
    vd->nr_be_fds = vd->nr_own_fds = 0;
    vsock_conns_set_accepting(&vd->conns, true);
}

void vsock_dev_detach(struct vsock_dev *vd)
{
    if (vd->be == NULL)
        return;
    vhost_be_destroy(vd->be); /* stop_queue() returns a held rx buffer */
    vd->be = NULL;
    vd->rx_held = false;
    vd->event_pending = false;
    vsock_conns_set_accepting(&vd->conns, false);
    vsock_conns_reset_all(&vd->conns);
}

unsigned vsock_dev_max_pollfds(const struct vsock_dev *vd)
{
    return VHOST_BE_MAX_POLLFDS + vsock_conns_max_pollfds(&vd->conns);
}

unsigned vsock_dev_pollfds(struct vsock_dev *vd, struct pollfd *pfd, unsigned max)
{
    unsigned nb = vhost_be_pollfds(vd->be, pfd, max);
    unsigned no = vsock_conns_pollfds(&vd->conns, pfd + nb, max - nb);
    vd->nr_be_fds = nb;
    vd->nr_own_fds = no;
    return nb + no;
}

int vsock_dev_poll_timeout(const struct vsock_dev *vd)
{
    uint64_t d = vsock_conns_next_deadline(&vd->conns);
    if (d == 0)
        return -1;
    uint64_t now = vsock_now_ns();
    if (d <= now)
        return 0;
    uint64_t ms = (d - now + 999999u) / 1000000u;
    return ms > 60000 ? 60000 : (int)ms;
}

int vsock_dev_dispatch(struct vsock_dev *vd, const struct pollfd *pfd, unsigned n)
{
    unsigned nb = vd->nr_be_fds < n ? vd->nr_be_fds : n;
    int r = vhost_be_dispatch(vd->be, pfd, nb);
    if (r < 0)
        return r;
    uint64_t now = vsock_now_ns();
    if (n > nb)
        vsock_conns_poll_events(&vd->conns, pfd + nb, n - nb, now);
    vsock_conns_expire(&vd->conns, now);
    pump_rx(vd);
    deliver_event(vd);
    return 0;
}
