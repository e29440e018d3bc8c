/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/net/switch.h"

#include "backends/net/port.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIT(n) (1ull << (n))

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int net_switch_init(struct net_switch *sw, const struct net_switch_opts *opts)
{
    memset(sw, 0, sizeof(*sw));
    sw->opts = *opts;
    if (sw->opts.queue_size == 0)
        sw->opts.queue_size = NET_DEFAULT_QUEUE_SIZE;
    if (sw->opts.pending_timeout_ns == 0)
        sw->opts.pending_timeout_ns = NET_PENDING_TIMEOUT_NS;
    if (sw->opts.queue_pairs == 0)
        sw->opts.queue_pairs = 1;
    sw->fdb = malloc(sizeof(*sw->fdb));
    sw->lin = malloc(NET_FRAME_MAX);
    sw->out = malloc(NET_FRAME_MAX);
    if (sw->fdb == NULL || sw->lin == NULL || sw->out == NULL) {
        net_switch_destroy(sw);
        return -ENOMEM;
    }
    /* The hash keys keep guests from choosing which table set their addresses fill, and
     * which receive queue of another guest their flows land on. */
    uint64_t key[2];
    if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        key[0] = clock_ns() ^ ((uint64_t)getpid() << 32);
        key[1] = ~key[0] * 0x9e3779b97f4a7c15ull;
    }
    fdb_init(sw->fdb, key[0], sw->opts.fdb_age_ns);
    sw->flow_key = key[1];
    sw->now_ns = clock_ns();
    return 0;
}

void net_switch_destroy(struct net_switch *sw)
{
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        if (p->connected)
            vhost_be_destroy(&p->be); /* stop_queue() returns what the rings hold */
        p->connected = false;
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        if (p->tap_fd >= 0)
            close(p->tap_fd);
        net_port_free_buffers(p);
        free(p);
        sw->ports[i] = NULL;
    }
    sw->nr_ports = 0;
    free(sw->fdb);
    free(sw->lin);
    free(sw->out);
    sw->fdb = NULL;
    sw->lin = NULL;
    sw->out = NULL;
}

static struct net_port *port_new(struct net_switch *sw, enum net_port_kind kind, const char *name)
{
    if (sw->nr_ports >= NET_MAX_PORTS)
        return NULL;
    struct net_port *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->sw = sw;
    p->index = sw->nr_ports;
    p->kind = kind;
    p->listen_fd = -1;
    p->tap_fd = -1;
    p->nr_pairs = 1;
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

static int port_add(struct net_switch *sw, struct net_port *p)
{
    sw->ports[sw->nr_ports++] = p;
    return (int)p->index;
}

static struct net_port *vm_port_new(struct net_switch *sw, const char *name)
{
    struct net_port *p = port_new(sw, NET_PORT_VM, name);
    if (p != NULL && net_vm_port_init(p, sw->opts.queue_size, sw->opts.queue_pairs) < 0) {
        net_port_free_buffers(p);
        free(p);
        return NULL;
    }
    return p;
}

int net_switch_add_vm_listen(struct net_switch *sw, int listen_fd, const char *name)
{
    if (sw->nr_ports >= NET_MAX_PORTS)
        return -ENOSPC;
    struct net_port *p = vm_port_new(sw, name);
    if (p == NULL)
        return -ENOMEM;
    /* accept() must never wait: the peer may give up between poll() and accept(). */
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
    p->listen_fd = listen_fd;
    return port_add(sw, p);
}

int net_switch_add_vm_fd(struct net_switch *sw, int fd, const char *name)
{
    if (sw->nr_ports >= NET_MAX_PORTS)
        return -ENOSPC;
    struct net_port *p = vm_port_new(sw, name);
    if (p == NULL)
        return -ENOMEM;
    int r = vhost_be_init(&p->be, fd, &p->dev);
    if (r < 0) {
        net_port_free_buffers(p);
        free(p);
        return r;
    }
    p->connected = true;
    return port_add(sw, p);
}

int net_switch_add_tap(struct net_switch *sw, int fd, const char *name)
{
    if (sw->nr_ports >= NET_MAX_PORTS)
        return -ENOSPC;
    struct net_port *p = port_new(sw, NET_PORT_TAP, name);
    if (p == NULL)
        return -ENOMEM;
    p->tap_buf = malloc(NET_TAP_BUF_SIZE);
    if (p->tap_buf == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->tap_fd = fd;
    return port_add(sw, p);
}

/* ---- counting ---- */

void net_port_drop(struct net_port *p, enum net_drop why)
{
    p->st.drops[why]++;
    /* What the sender got wrong is worth a (rate-limited) line; the rest is traffic. */
    if (why <= NET_DROP_BAD_CHAIN || why == NET_DROP_GSO_PARSE)
        log_guest(LOG_WARN, "net: port %u (%s): dropped a malformed packet: %s", p->index, p->name,
                  net_drop_name(why));
    else
        log_trace("net: port %u (%s): dropped a packet: %s", p->index, p->name, net_drop_name(why));
}

void net_switch_flush(struct net_switch *sw)
{
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        uint64_t touched = p->rx_touched;
        p->rx_touched = 0;
        for (unsigned k = 0; touched != 0 && k < p->nr_pairs; k++) {
            if ((touched & BIT(k)) == 0)
                continue;
            touched &= ~BIT(k);
            if (p->connected && vhost_be_queue_notify(&p->be, VIRTIO_NET_RXQ_OF(k)) == 1) {
                p->st.rx_notifies++;
                p->rxq[k].st.notifies++;
            }
        }
    }
}

/* ---- forwarding ---- */

/* Whether a port can take frames at all now (floods skip the others silently). */
static bool port_present(const struct net_port *p)
{
    return p->kind == NET_PORT_VM ? p->connected : p->tap_fd >= 0;
}

/* The frame in private memory: copied out of guest memory once per forwarded frame, so
 * the software offloads parse and read bytes that cannot change under them. */
static const uint8_t *linear(struct net_switch *sw, const struct vq_iovec *iov, unsigned niov,
                             uint32_t len, bool private_frame)
{
    if (private_frame)
        return iov[0].base;
    if (!sw->lin_valid) {
        net_iov_read(iov, niov, sw->lin, len);
        sw->lin_valid = true;
    }
    return sw->lin;
}

/* @p ring is the VM's receiveq (net_vm_rx_pick()); taps have one queue. */
static int put(struct net_port *dst, unsigned ring, const struct virtio_net_hdr *h,
               const struct vq_iovec *iov, unsigned niov, uint32_t len)
{
    if (dst->kind == NET_PORT_VM)
        return net_vm_put(dst, ring, h, iov, niov, len);
    return net_tap_put(dst, h, iov, niov, len);
}

static void delivered(struct net_port *dst, unsigned ring, uint32_t len)
{
    dst->st.out_packets++;
    dst->st.out_bytes += len;
    dst->rx_stalled &= ~BIT(ring / 2u);
}

/* The source must wait for buffers on @p dst's receiveq @p ring: remember which, arm its
 * kicks. */
static void wait_for(struct net_switch *sw, struct net_port *src, struct net_port *dst,
                     unsigned ring)
{
    if (!src->pending) {
        src->pending_ns = sw->now_ns;
        dst->st.waits++;
    }
    src->blocked_on = dst->index;
    src->blocked_ring = ring;
    /* Armed at every wait: a kick that came for too few buffers used the request up. */
    if (net_vm_rx_arm(dst, ring))
        sw->need_service = true;
}

/* What a failed put() means: wait (unicast to a VM receiveq that is not stalled), else a
 * drop. */
static int settle(struct net_switch *sw, struct net_port *src, struct net_port *dst, unsigned ring,
                  int r, bool may_wait)
{
    switch (r) {
    case 0:
        return 0;
    case -EAGAIN:
        if (may_wait && dst->kind == NET_PORT_VM && (dst->rx_stalled & BIT(ring / 2u)) == 0) {
            wait_for(sw, src, dst, ring);
            return -EAGAIN;
        }
        net_port_drop(dst, NET_DROP_NO_ROOM);
        return 0;
    case -EMSGSIZE:
        net_port_drop(dst, NET_DROP_TOO_BIG);
        return 0;
    case -ENODEV:
        net_port_drop(dst, NET_DROP_PORT_DOWN);
        return 0;
    default:
        net_port_drop(dst, NET_DROP_TAP_IO);
        return 0;
    }
}

/* Cut a GSO packet for a destination without the matching GUEST_ offloads. */
static int segment(struct net_switch *sw, struct net_port *src, struct net_port *dst, unsigned ring,
                   const struct virtio_net_hdr *hdr, const uint8_t *frame, uint32_t len,
                   bool may_wait)
{
    struct net_gso g;
    if (net_gso_init(&g, frame, len, hdr) < 0) {
        net_port_drop(src, NET_DROP_GSO_PARSE);
        return 0;
    }
    const struct virtio_net_hdr none = {.num_buffers = 0};
    bool any = false;
    uint32_t seg_len;
    while (net_gso_next(&g, sw->out, NET_FRAME_MAX, &seg_len) == 1) {
        struct vq_iovec o = {.base = sw->out, .len = seg_len};
        int r = put(dst, ring, &none, &o, 1, seg_len);
        if (r == 0) {
            delivered(dst, ring, seg_len);
            any = true;
            continue;
        }
        if (!any)
            return settle(sw, src, dst, ring, r, may_wait); /* nothing sent yet: it may wait */
        /* Part of it went: the rest is lost, as on a congested link (TCP sends again). */
        (void)settle(sw, src, dst, ring, r, false);
        break;
    }
    if (any)
        dst->st.segmented++;
    return 0;
}

/* One packet to one destination; @p flow picks a VM's receiveq. */
static int deliver(struct net_switch *sw, struct net_port *src, struct net_port *dst, uint32_t flow,
                   const struct virtio_net_hdr *hdr, const struct vq_iovec *iov, unsigned niov,
                   uint32_t len, bool private_frame, bool may_wait)
{
    unsigned ring = 0;
    if (dst->kind == NET_PORT_VM) {
        int q = net_vm_rx_pick(dst, flow);
        if (q < 0)
            return settle(sw, src, dst, 0, q, may_wait);
        ring = (unsigned)q;
    }
    uint64_t features = dst->kind == NET_PORT_VM ? dst->be.features : ~0ull;
    enum net_out plan = dst->kind == NET_PORT_TAP ? NET_OUT_AS_IS : net_out_plan(hdr, features);
    int r;
    if (plan == NET_OUT_SEGMENT)
        return segment(sw, src, dst, ring, hdr, linear(sw, iov, niov, len, private_frame), len,
                       may_wait);
    if (plan == NET_OUT_CSUM) {
        memcpy(sw->out, linear(sw, iov, niov, len, private_frame), len);
        /* net_hdr_check() put the checksum's place inside the frame. */
        (void)net_csum_complete(sw->out, len, hdr->csum_start, hdr->csum_offset);
        const struct virtio_net_hdr none = {.num_buffers = 0};
        struct vq_iovec o = {.base = sw->out, .len = len};
        r = put(dst, ring, &none, &o, 1, len);
        if (r == 0) {
            delivered(dst, ring, len);
            dst->st.csummed++;
        }
        return settle(sw, src, dst, ring, r, may_wait);
    }
    struct virtio_net_hdr h = *hdr;
    if ((features & BIT(VIRTIO_NET_F_GUEST_CSUM)) == 0)
        h.flags &= (uint8_t)~VIRTIO_NET_HDR_F_DATA_VALID;
    if (dst->kind == NET_PORT_TAP && niov > NET_TAP_MAX_IOV) {
        struct vq_iovec one = {.base = (void *)linear(sw, iov, niov, len, private_frame),
                               .len = len};
        r = put(dst, ring, &h, &one, 1, len);
    } else {
        r = put(dst, ring, &h, iov, niov, len);
    }
    if (r == 0)
        delivered(dst, ring, len);
    return settle(sw, src, dst, ring, r, may_wait);
}

int net_switch_forward(struct net_switch *sw, struct net_port *src,
                       const struct virtio_net_hdr *hdr, const struct vq_iovec *iov, unsigned niov,
                       uint32_t len, bool private_frame)
{
    sw->lin_valid = false;
    /* The addresses (and for the flow the headers after them) are read once, into private
     * memory, before anything depends on them. The frame holds at least the 12 bytes. */
    uint8_t head[NET_FLOW_HEAD];
    uint32_t n = len < sizeof(head) ? len : (uint32_t)sizeof(head);
    net_iov_read(iov, niov, head, sw->opts.queue_pairs > 1 ? n : 12u);
    uint32_t flow = sw->opts.queue_pairs > 1 ? net_flow_hash(head, n, sw->flow_key) : 0;
    if (sw->opts.mode == NET_MODE_P2P) {
        for (unsigned i = 0; i < sw->nr_ports; i++) {
            struct net_port *d = sw->ports[i];
            if (d != src) {
                src->pending_len = len;
                return deliver(sw, src, d, flow, hdr, iov, niov, len, private_frame, true);
            }
        }
        return 0;
    }
    unsigned to = 0;
    switch (fdb_forward(sw->fdb, src->index, head, sw->now_ns, &to)) {
    case FDB_UNICAST:
        if (to < sw->nr_ports) {
            src->pending_len = len;
            return deliver(sw, src, sw->ports[to], flow, hdr, iov, niov, len, private_frame, true);
        }
        return 0;
    case FDB_LOCAL:
        net_port_drop(src, NET_DROP_LOCAL);
        return 0;
    case FDB_FLOOD:
        break;
    }
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *d = sw->ports[i];
        if (d != src && port_present(d))
            (void)deliver(sw, src, d, flow, hdr, iov, niov, len, private_frame, false);
    }
    return 0;
}

/* ---- waiting sources ---- */

static void resume(struct net_port *p)
{
    if (p->kind == NET_PORT_VM)
        net_vm_tx_resume(p);
    else
        net_tap_retry(p);
}

/* Let waiting sources go on where their receiveq has buffers again, or is gone or
 * disabled (the frame may then go to another of the port's queues); drop what waited too
 * long; turn receive kicks off where nobody waits any more. */
static void service(struct net_switch *sw)
{
    sw->need_service = false;
    uint64_t waited_on[NET_MAX_PORTS] = {0}; /* per destination, a bit per receiveq */
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        if (!p->pending)
            continue;
        struct net_port *d = sw->ports[p->blocked_on];
        unsigned ring = p->blocked_ring;
        bool go = !net_vm_ring_running(d, ring) || net_vm_rx_ready(d, ring);
        if (!go && sw->now_ns - p->pending_ns >= sw->opts.pending_timeout_ns) {
            net_port_drop(d, NET_DROP_TIMEOUT);
            if ((d->rx_stalled & BIT(ring / 2u)) == 0)
                log_guest(LOG_WARN,
                          "net: port %u (%s) has had no buffers on receive queue %u for %llu "
                          "ms: frames for it are dropped until it posts some",
                          d->index, d->name, ring,
                          (unsigned long long)(sw->opts.pending_timeout_ns / 1000000u));
            d->rx_stalled |= BIT(ring / 2u);
            p->st.in_packets++; /* it was taken in, and lost on the way out */
            p->st.in_bytes += p->pending_len;
            if (p->kind == NET_PORT_VM) {
                net_vm_drop_pending(p); /* completes the chain; the rings go on */
                net_vm_tx_resume(p);
            } else {
                p->pending = false; /* the packet is gone; the tap is read again */
            }
        } else if (go) {
            resume(p);
        }
        if (p->pending)
            waited_on[p->blocked_on] |= BIT(p->blocked_ring / 2u);
    }
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *d = sw->ports[i];
        uint64_t idle = d->rx_armed & ~waited_on[i];
        for (unsigned k = 0; idle != 0 && k < d->nr_pairs; k++) {
            if (idle & BIT(k)) {
                idle &= ~BIT(k);
                net_vm_rx_disarm(d, VIRTIO_NET_RXQ_OF(k));
            }
        }
    }
}

/* ---- the loop's steps ---- */

unsigned net_switch_pollfds(struct net_switch *sw, struct pollfd *pfd, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        p->pfd_first = n;
        if (p->kind == NET_PORT_VM && p->connected) {
            unsigned room = max - n < NET_PORT_MAX_POLLFDS ? max - n : NET_PORT_MAX_POLLFDS;
            n += vhost_be_pollfds(&p->be, pfd + n, room);
        } else if (p->kind == NET_PORT_VM && p->listen_fd >= 0 && n < max) {
            pfd[n++] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        } else if (p->kind == NET_PORT_TAP && p->tap_fd >= 0 && !p->pending && n < max) {
            /* A tap whose packet waits is not read: the kernel queues, then drops. */
            pfd[n++] = (struct pollfd){.fd = p->tap_fd, .events = POLLIN};
        }
        p->pfd_n = n - p->pfd_first;
    }
    return n;
}

static void vm_accept(struct net_port *p)
{
    int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warn("net: port %u (%s): accept: %s", p->index, p->name, strerror(errno));
        return;
    }
    if (vhost_be_init(&p->be, c, &p->dev) < 0) {
        close(c);
        return;
    }
    p->connected = true;
    log_info("net: port %u (%s): frontend connected", p->index, p->name);
}

static void vm_disconnect(struct net_switch *sw, struct net_port *p, int why)
{
    if (why == -ECONNRESET)
        log_info("net: port %u (%s): the frontend closed the connection", p->index, p->name);
    else
        log_warn("net: port %u (%s): connection ended: %s", p->index, p->name, strerror(-why));
    vhost_be_destroy(&p->be); /* stop_queue() returns the rings' chains */
    p->connected = false;
    p->pending = false;
    p->tx_more = 0;
    for (unsigned k = 0; k < NET_MAX_QUEUE_PAIRS; k++)
        p->rxq[k].stash_n = 0;
    p->rx_armed = 0;
    p->rx_stalled = 0;
    p->rx_touched = 0;
    fdb_forget_port(sw->fdb, p->index);
    if (p->listen_fd < 0) {
        p->closed = true;
        p->failed = why != -ECONNRESET;
    }
    sw->need_service = true;
}

static void vm_dispatch(struct net_switch *sw, struct net_port *p, const struct pollfd *e,
                        unsigned n)
{
    bool message = false;
    for (unsigned k = 0; k < n; k++) {
        if (e[k].revents == 0)
            continue;
        if (e[k].fd == p->be.sock) {
            message = true;
            continue;
        }
        for (unsigned q = 0; q < 2u * p->nr_pairs; q++) {
            if (p->be.queues[q].kick_fd != e[k].fd)
                continue;
            if (q % 2u != 0) {
                p->st.tx_kicks++;
                p->txq_st[q / 2u].kicks++;
            } else {
                p->st.rx_kicks++;
                p->rxq[q / 2u].st.kicks++;
            }
            sw->poll_work = true;
            (void)vhost_be_handle_kick(&p->be, q);
            break;
        }
    }
    if (message) {
        int r = vhost_be_handle_message(&p->be);
        if (r < 0)
            vm_disconnect(sw, p, r);
    }
}

void net_switch_dispatch(struct net_switch *sw, const struct pollfd *pfd, unsigned n)
{
    sw->now_ns = clock_ns();
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        if (p->pfd_n == 0 || p->pfd_first + p->pfd_n > n)
            continue;
        const struct pollfd *e = pfd + p->pfd_first;
        if (p->kind == NET_PORT_TAP) {
            if (e[0].fd == p->tap_fd && e[0].revents != 0) {
                sw->poll_work = true;
                net_tap_rx(p);
            }
        } else if (p->connected && e[0].fd == p->be.sock) {
            vm_dispatch(sw, p, e, p->pfd_n);
        } else if (!p->connected && e[0].fd == p->listen_fd && e[0].revents != 0) {
            vm_accept(p);
        }
    }
    service(sw);
}

static bool any_pending(const struct net_switch *sw)
{
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        if (sw->ports[i]->pending)
            return true;
    }
    return false;
}

/* Process a port's transmitqs through the library as a kick would: those with chains
 * waiting, or (@p all) every one, which re-arms their kicks. */
static bool process_tx(struct net_port *p, bool all)
{
    bool found = false;
    for (unsigned k = 0; k < p->nr_pairs && !p->pending; k++) {
        unsigned ring = VIRTIO_NET_TXQ_OF(k);
        if (!all && !vhost_be_ring_ready(&p->be, ring))
            continue;
        (void)vhost_be_process(&p->be, ring);
        found = true;
    }
    return found;
}

bool net_switch_poll(struct net_switch *sw)
{
    sw->now_ns = clock_ns();
    bool more = false;
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        struct net_port *p = sw->ports[i];
        for (unsigned k = 0; p->tx_more != 0 && !p->pending && k < p->nr_pairs; k++) {
            if (p->tx_more & BIT(k)) {
                (void)net_vm_tx(p, VIRTIO_NET_TXQ_OF(k));
                sw->poll_work = true;
            }
        }
    }
    if (sw->need_service || any_pending(sw))
        service(sw);
    if (sw->opts.poll_us == 0) {
        sw->poll_work = false;
    } else {
        if (sw->poll_work) {
            sw->poll_work = false;
            sw->poll_last_ns = sw->now_ns;
            sw->polling = true;
        }
        if (sw->polling) {
            for (unsigned i = 0; i < sw->nr_ports; i++) {
                struct net_port *p = sw->ports[i];
                if (p->connected && process_tx(p, false))
                    sw->poll_last_ns = sw->now_ns;
            }
            if (sw->now_ns - sw->poll_last_ns > (uint64_t)sw->opts.poll_us * 1000u) {
                /* Kicks back on: a pass with polling off re-arms them and takes what came. */
                sw->polling = false;
                for (unsigned i = 0; i < sw->nr_ports; i++) {
                    struct net_port *p = sw->ports[i];
                    if (p->connected)
                        (void)process_tx(p, true);
                }
            }
        }
    }
    for (unsigned i = 0; i < sw->nr_ports; i++)
        more |= sw->ports[i]->tx_more != 0 && !sw->ports[i]->pending;
    return sw->polling || sw->need_service || more;
}

int net_switch_timeout_ms(struct net_switch *sw)
{
    uint64_t now = clock_ns();
    int ms = -1;
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        const struct net_port *p = sw->ports[i];
        if (!p->pending)
            continue;
        uint64_t end = p->pending_ns + sw->opts.pending_timeout_ns;
        uint64_t left = end > now ? end - now : 0;
        int m = (int)((left + 999999u) / 1000000u);
        if (ms < 0 || m < ms)
            ms = m;
    }
    return ms;
}

bool net_switch_finished(const struct net_switch *sw)
{
    bool fd_ports = false;
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        const struct net_port *p = sw->ports[i];
        if (p->kind != NET_PORT_VM)
            continue;
        if (p->listen_fd >= 0 || !p->closed)
            return false;
        fd_ports = true;
    }
    return fd_ports;
}

bool net_switch_failed(const struct net_switch *sw)
{
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        if (sw->ports[i]->failed)
            return true;
    }
    return false;
}

/* A multi-queue port's per-ring counters, " pairs: K tx A/B rx C/D, ..." (kicks /
 * notifications); empty for one pair, whose counters are the port's. */
static void ring_stats(const struct net_port *p, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    if (p->kind != NET_PORT_VM || p->nr_pairs < 2)
        return;
    for (unsigned k = 0; k < p->nr_pairs && used < size; k++) {
        const struct net_ring_stats *t = &p->txq_st[k], *r = &p->rxq[k].st;
        int w = snprintf(buf + used, size - used, "%s %u tx %llu/%llu rx %llu/%llu",
                         k == 0 ? ", per pair (kicks/notifications):" : ",", k,
                         (unsigned long long)t->kicks, (unsigned long long)t->notifies,
                         (unsigned long long)r->kicks, (unsigned long long)r->notifies);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

void net_switch_log_stats(const struct net_switch *sw)
{
    for (unsigned i = 0; i < sw->nr_ports; i++) {
        const struct net_port *p = sw->ports[i];
        const struct net_port_stats *s = &p->st;
        char drops[512];
        size_t used = 0;
        drops[0] = '\0';
        for (unsigned d = 1; d < NET_DROP_COUNT && used < sizeof(drops); d++) {
            if (s->drops[d] == 0)
                continue;
            int w = snprintf(drops + used, sizeof(drops) - used, " %s %llu",
                             net_drop_name((enum net_drop)d), (unsigned long long)s->drops[d]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        char rings[NET_MAX_QUEUE_PAIRS * 64];
        ring_stats(p, rings, sizeof(rings));
        log_info("net: port %u (%s %s): in %llu packets %llu bytes, out %llu packets %llu "
                 "bytes, kicks tx %llu rx %llu, notifications tx %llu rx %llu, waits %llu, "
                 "software csum %llu segmented %llu, drops:%s%s",
                 p->index, p->kind == NET_PORT_VM ? "vm" : "tap", p->name,
                 (unsigned long long)s->in_packets, (unsigned long long)s->in_bytes,
                 (unsigned long long)s->out_packets, (unsigned long long)s->out_bytes,
                 (unsigned long long)s->tx_kicks, (unsigned long long)s->rx_kicks,
                 (unsigned long long)s->tx_notifies, (unsigned long long)s->rx_notifies,
                 (unsigned long long)s->waits, (unsigned long long)s->csummed,
                 (unsigned long long)s->segmented, used == 0 ? " none" : drops, rings);
    }
}
