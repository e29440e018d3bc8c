/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/console/con_device.h"

#include "backends/common/backend_vq.h"
#include "backends/console/virtio_console.h"
#include "core/log.h"
#include "virtio/virtio_ring.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define BIT(n) (1ull << (n))

_Static_assert(2u + 2u * CON_MAX_PORTS <= VHOST_BE_MAX_QUEUES, "every port's queues exist");
_Static_assert(CON_MAX_PORTS <= UINT8_MAX, "a poll entry names its port in a byte");

/* Pending control messages of a port, sent in this order. */
enum {
    CON_CTL_ADD = 1u << 0,
    CON_CTL_CONSOLE = 1u << 1,
    CON_CTL_NAME = 1u << 2,
    CON_CTL_OPEN = 1u << 3,
};

/* Roles of the device's poll entries. */
enum {
    ROLE_LISTEN,
    ROLE_IN,
    ROLE_OUT,
};

#define CTRL_RX 2u
#define CTRL_TX 3u

static unsigned rx_queue(unsigned port)
{
    return port == 0 ? 0 : 2 + 2 * port;
}

static unsigned tx_queue(unsigned port)
{
    return rx_queue(port) + 1;
}

static bool multiport(const struct con_device *cd)
{
    return cd->be != NULL && (cd->be->features & BIT(VIRTIO_CONSOLE_F_MULTIPORT)) != 0;
}

/* Without F_MULTIPORT port 0 is a plain console, open from the start. */
static bool guest_receives(const struct con_device *cd, unsigned port)
{
    return multiport(cd) ? cd->ports[port].guest_open : port == 0;
}

/*
 * Process a ring now, as a kick would. vhost_be_handle_kick() reads the ring's kick
 * eventfd without waiting first, which only takes a kick we are about to honour.
 */
static void run_queue(struct con_device *cd, unsigned index)
{
    if (cd->be != NULL && index < cd->dev.nr_queues)
        (void)vhost_be_handle_kick(cd->be, index);
}

/* ---- control messages ---- */

static void queue_control(struct con_device *cd, struct con_port *p, unsigned bits)
{
    p->ctl |= (uint8_t)bits;
    run_queue(cd, CTRL_RX);
}

/* The host side came or went: the driver hears it once it knows the port. */
static void host_changed(struct con_device *cd, struct con_port *p)
{
    log_info("console: port %u: host side %s", (unsigned)(p - cd->ports),
             con_host_connected(&p->host) ? "connected" : "disconnected");
    if (multiport(cd) && p->ready)
        queue_control(cd, p, CON_CTL_OPEN);
}

/* As host_changed(), from outside the transmit path: a chain held for it is dropped now. */
static void host_left(struct con_device *cd, struct con_port *p)
{
    host_changed(cd, p);
    if (p->tx_held)
        run_queue(cd, tx_queue((unsigned)(p - cd->ports)));
}

static bool control_pending(const struct con_device *cd)
{
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        if (cd->ports[i].ctl != 0)
            return true;
    }
    return false;
}

/* The next pending message into @p buf; its length, or 0 when nothing is pending. */
static size_t next_control(struct con_device *cd, uint8_t *buf, unsigned *port, unsigned *bit)
{
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        struct con_port *p = &cd->ports[i];
        if (p->ctl == 0)
            continue;
        unsigned b = (unsigned)p->ctl & (0u - (unsigned)p->ctl); /* lowest bit first */
        struct virtio_console_control m = {.id = htole32(i)};
        size_t extra = 0;
        switch (b) {
        case CON_CTL_ADD:
            m.event = htole16(VIRTIO_CONSOLE_DEVICE_ADD);
            break;
        case CON_CTL_CONSOLE:
            m.event = htole16(VIRTIO_CONSOLE_CONSOLE_PORT);
            m.value = htole16(1);
            break;
        case CON_CTL_NAME:
            m.event = htole16(VIRTIO_CONSOLE_PORT_NAME);
            extra = strlen(p->name);
            memcpy(buf + sizeof(m), p->name, extra);
            break;
        default:
            m.event = htole16(VIRTIO_CONSOLE_PORT_OPEN);
            m.value = htole16(con_host_connected(&p->host) ? 1 : 0);
            break;
        }
        memcpy(buf, &m, sizeof(m));
        *port = i;
        *bit = b;
        return sizeof(m) + extra;
    }
    return 0;
}

/* Copy @p len bytes into the writable segments iov[0 .. n); they hold at least that. */
static void scatter(const struct vq_iovec *iov, unsigned n, const uint8_t *src, size_t len)
{
    for (unsigned i = 0; i < n && len > 0; i++) {
        size_t k = iov[i].len < len ? iov[i].len : len;
        memcpy(iov[i].base, src, k);
        src += k;
        len -= k;
    }
}

/*
 * One control-receiveq chain for the pending message in @p msg: 1 when the message is
 * done with (sent, or dropped because the buffer is too small), 0 when the chain was
 * refused and the message still waits, or a negative errno.
 */
static int send_control(struct con_device *cd, struct vq *vq, uint16_t head, const uint8_t *msg,
                        size_t len)
{
    struct vq_chain chain;
    int r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, cd->iov, CON_IOV_MAX, &chain);
    if (r < 0 && r != -ENOBUFS)
        return r;
    if (chain.readable_bytes > 0 || chain.nr_readable > 0) {
        cd->bad_chains++;
        log_guest(LOG_WARN, "console: control receive buffer with device-readable parts");
        r = backend_add_used(vq, head, 0);
        return r < 0 ? r : 0;
    }
    uint64_t room = 0;
    for (unsigned i = 0; i < chain.nr_writable; i++)
        room += cd->iov[i].len;
    if (room < len) {
        /* A name cut short would be a wrong name: drop the message, keep the buffer use. */
        cd->control_dropped++;
        log_guest(LOG_WARN, "console: control buffer of %llu bytes cannot hold a %zu-byte message",
                  (unsigned long long)room, len);
        r = backend_add_used(vq, head, 0);
        return r < 0 ? r : 1;
    }
    scatter(cd->iov, chain.nr_writable, msg, len);
    r = backend_add_used(vq, head, (uint32_t)len);
    return r < 0 ? r : 1;
}

/* Control receiveq: hand pending messages to the driver while it has buffers. */
static int control_flush(struct con_device *cd, struct vq *vq)
{
    uint8_t msg[sizeof(struct virtio_console_control) + CON_NAME_MAX];
    for (;;) {
        int r = 0;
        unsigned port, bit;
        size_t len;
        while ((len = next_control(cd, msg, &port, &bit)) > 0) {
            uint16_t head;
            r = vq_pop_avail(vq, &head);
            if (r <= 0)
                break;
            r = send_control(cd, vq, head, msg, len);
            if (r < 0)
                break;
            if (r == 1)
                cd->ports[port].ctl &= (uint8_t)~bit;
        }
        r = backend_batch_end(vq, r < 0 ? r : 0);
        if (r <= 0 || !control_pending(cd))
            return r < 0 ? r : 0;
    }
}

static void driver_ready(struct con_device *cd, uint16_t value)
{
    if (value != 1) {
        log_guest(LOG_WARN, "console: the driver could not set the device up");
        return;
    }
    /* A driver that starts again (a reset guest) is told everything again. */
    cd->driver_ready = true;
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        struct con_port *p = &cd->ports[i];
        p->added = true;
        p->ready = false;
        p->guest_open = false;
        p->ctl = CON_CTL_ADD;
    }
    log_info("console: driver ready, announcing %u port%s", cd->nr_ports,
             cd->nr_ports == 1 ? "" : "s");
}

static void port_ready(struct con_device *cd, struct con_port *p, uint16_t value)
{
    unsigned id = (unsigned)(p - cd->ports);
    if (value == 0) {
        log_guest(LOG_WARN, "console: the driver could not set port %u up", id);
        p->ready = false;
        return;
    }
    p->ready = true;
    unsigned bits = 0;
    if (p->console)
        bits |= CON_CTL_CONSOLE;
    if (p->name[0] != '\0')
        bits |= CON_CTL_NAME;
    if (con_host_connected(&p->host))
        bits |= CON_CTL_OPEN;
    p->ctl |= (uint8_t)bits;
}

static void port_open(struct con_device *cd, struct con_port *p, uint16_t value)
{
    unsigned id = (unsigned)(p - cd->ports);
    p->c.guest_opens++;
    p->guest_open = value == 1;
    log_guest(LOG_INFO, "console: port %u %s by the guest", id, value ? "opened" : "closed");
    /* Input held while it was closed goes now. */
    if (p->guest_open && p->in_off < p->in_len)
        run_queue(cd, rx_queue(id));
}

/* One message from the driver, already copied out of guest memory. */
static void handle_control(struct con_device *cd, const struct virtio_console_control *m)
{
    uint32_t id = le32toh(m->id);
    uint16_t event = le16toh(m->event);
    uint16_t value = le16toh(m->value);
    if (event == VIRTIO_CONSOLE_DEVICE_READY && value <= 1) {
        driver_ready(cd, value); /* the id of DEVICE_READY means nothing */
        return;
    }
    if (id >= cd->nr_ports) {
        cd->bad_control++;
        log_guest(LOG_WARN, "console: control message %u for port %u of %u dropped", event, id,
                  cd->nr_ports);
        return;
    }
    struct con_port *p = &cd->ports[id];
    bool known = event == VIRTIO_CONSOLE_PORT_READY || event == VIRTIO_CONSOLE_PORT_OPEN;
    if (!known || value > 1 || !p->added) {
        p->c.bad_control++;
        log_guest(LOG_WARN, "console: control message %u (value %u) for port %u dropped", event,
                  value, id);
        return;
    }
    if (event == VIRTIO_CONSOLE_PORT_READY)
        port_ready(cd, p, value);
    else
        port_open(cd, p, value);
}

/* Gather the first sizeof(*m) readable bytes of the chain; false when it has fewer. */
static bool copy_control(const struct con_device *cd, const struct vq_chain *chain,
                         struct virtio_console_control *m)
{
    uint8_t buf[sizeof(*m)];
    size_t got = 0;
    for (unsigned i = 0; i < chain->nr_readable && got < sizeof(buf); i++) {
        size_t k = cd->iov[i].len < sizeof(buf) - got ? cd->iov[i].len : sizeof(buf) - got;
        memcpy(buf + got, cd->iov[i].base, k);
        got += k;
    }
    if (got < sizeof(buf))
        return false;
    memcpy(m, buf, sizeof(*m));
    return true;
}

/* Control transmitq: messages from the driver. */
static int control_receive(struct con_device *cd, struct vq *vq)
{
    for (;;) {
        int r = vq_avail_notify_disable(vq);
        uint16_t head;
        while (r == 0 && (r = vq_pop_avail(vq, &head)) == 1) {
            struct vq_chain chain;
            struct virtio_console_control m;
            r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, cd->iov, CON_IOV_MAX, &chain);
            if (r < 0 && r != -ENOBUFS)
                return r;
            bool ok = r == 0 && chain.writable_bytes == 0 && chain.nr_writable == 0 &&
                      copy_control(cd, &chain, &m);
            r = backend_add_used(vq, head, 0);
            if (!ok) {
                cd->bad_control++;
                log_guest(LOG_WARN, "console: malformed control message (%llu bytes) dropped",
                          (unsigned long long)chain.readable_bytes);
                continue;
            }
            handle_control(cd, &m);
        }
        r = backend_batch_end(vq, r);
        if (r < 0)
            return r;
        if (r == 0)
            break;
    }
    /* Answers (DEVICE_ADD, PORT_NAME, ...) go out at once if the driver has buffers. */
    if (control_pending(cd))
        run_queue(cd, CTRL_RX);
    return 0;
}

/* ---- data: guest to host ---- */

/* Write what is left of the held chain: 0 done with it, 1 the host end is full, or -errno. */
static int tx_continue(struct con_device *cd, struct con_port *p, struct vq *vq)
{
    struct vq_chain chain;
    int r = vq_walk_chain(vq, p->tx_head, VQ_ACCESS_ANY, cd->iov, CON_IOV_MAX, &chain);
    if (r < 0 && r != -ENOBUFS) {
        p->tx_held = false; /* the ring is broken: the driver must reset it */
        return r;
    }
    if (r == -ENOBUFS || chain.writable_bytes > 0 || chain.nr_writable > 0) {
        p->c.bad_chains++;
        log_guest(LOG_WARN, "console: port %u: transmit chain of %u descriptors refused",
                  (unsigned)(p - cd->ports), chain.nr_desc);
    } else {
        while (p->tx_off < chain.readable_bytes && con_host_writable(&p->host)) {
            struct iovec out[CON_IOV_MAX];
            int n = 0;
            uint64_t skip = p->tx_off;
            for (unsigned i = 0; i < chain.nr_readable; i++) {
                if (skip >= cd->iov[i].len) {
                    skip -= cd->iov[i].len;
                    continue;
                }
                out[n++] = (struct iovec){.iov_base = (uint8_t *)cd->iov[i].base + skip,
                                          .iov_len = cd->iov[i].len - skip};
                skip = 0;
            }
            ssize_t w = con_host_write(&p->host, out, n);
            if (w == -EAGAIN)
                return 1;
            if (w <= 0) {
                log_warn("console: port %u: host output failed: %s", (unsigned)(p - cd->ports),
                         w == 0 ? "nothing written" : strerror((int)-w));
                con_host_output_failed(&p->host);
                if (!con_host_connected(&p->host))
                    host_changed(cd, p);
                break;
            }
            p->tx_off += (uint64_t)w;
            p->c.to_host += (uint64_t)w;
        }
        if (p->tx_off < chain.readable_bytes)
            p->c.dropped += chain.readable_bytes - p->tx_off;
    }
    p->tx_held = false;
    return backend_add_used(vq, p->tx_head, 0);
}

static int transmit(struct con_device *cd, struct con_port *p, struct vq *vq)
{
    for (;;) {
        int r = vq_avail_notify_disable(vq);
        if (r == 0 && p->tx_held)
            r = tx_continue(cd, p, vq);
        uint16_t head;
        while (r == 0 && (r = vq_pop_avail(vq, &head)) == 1) {
            p->tx_held = true;
            p->tx_head = head;
            p->tx_off = 0;
            r = tx_continue(cd, p, vq);
        }
        if (r == 1)
            return vq_publish_used(vq); /* host end full: kicks stay off, POLLOUT resumes */
        r = backend_batch_end(vq, r);
        if (r <= 0)
            return r;
    }
}

/* ---- data: host to guest ---- */

/* One receive chain filled from the held input. */
static int rx_fill(struct con_device *cd, struct con_port *p, struct vq *vq, uint16_t head)
{
    struct vq_chain chain;
    int r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, cd->iov, CON_IOV_MAX, &chain);
    /* -ENOBUFS: a well-formed chain longer than our scratch; its first segments do. */
    if (r < 0 && r != -ENOBUFS)
        return r;
    uint32_t done = 0;
    if (chain.readable_bytes > 0 || chain.nr_readable > 0) {
        p->c.bad_chains++;
        log_guest(LOG_WARN, "console: port %u: receive chain with device-readable parts",
                  (unsigned)(p - cd->ports));
    } else {
        for (unsigned i = 0; i < chain.nr_writable && p->in_off < p->in_len; i++) {
            size_t k = p->in_len - p->in_off;
            if (k > cd->iov[i].len)
                k = cd->iov[i].len;
            memcpy(cd->iov[i].base, p->in_buf + p->in_off, k);
            p->in_off += k;
            done += (uint32_t)k; /* at most CON_INPUT_BUF */
        }
        p->c.to_guest += done;
        if (p->in_off == p->in_len)
            p->in_off = p->in_len = 0;
    }
    return backend_add_used(vq, head, done);
}

/* Receiveq: deliver held input, and learn whether buffers are left for more. */
static int deliver(struct con_device *cd, unsigned port, struct vq *vq)
{
    struct con_port *p = &cd->ports[port];
    for (;;) {
        int r = 0;
        if (guest_receives(cd, port)) {
            uint16_t head;
            while (p->in_off < p->in_len && (r = vq_pop_avail(vq, &head)) == 1) {
                r = rx_fill(cd, p, vq, head);
                if (r < 0)
                    break;
            }
        }
        /* Receive kicks are never turned off; this re-arms EVENT_IDX and looks again. */
        r = backend_batch_end(vq, r);
        if (r < 0)
            return r;
        p->rx_avail = r == 1;
        if (r == 0 || p->in_off == p->in_len || !guest_receives(cd, port))
            return 0;
    }
}

/* ---- the library's callbacks ---- */

static int process_queue(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    struct con_device *cd = opaque;
    cd->be = be;
    if (index == CTRL_RX)
        return control_flush(cd, vq);
    if (index == CTRL_TX)
        return control_receive(cd, vq);
    unsigned port = index < 2 ? 0 : (index - 2) / 2;
    if (port >= cd->nr_ports)
        return -EINVAL; /* nr_queues follows nr_ports: cannot happen */
    if (index & 1u)
        return transmit(cd, &cd->ports[port], vq);
    return deliver(cd, port, vq);
}

/* The ring stops (GET_VRING_BASE, reset, disconnect): a chain we hold goes back now. */
static void stop_queue(void *opaque, struct vhost_be *be, unsigned index)
{
    struct con_device *cd = opaque;
    if (index == CTRL_RX || index == CTRL_TX)
        return;
    unsigned port = index < 2 ? 0 : (index - 2) / 2;
    if (port >= cd->nr_ports)
        return;
    struct con_port *p = &cd->ports[port];
    if ((index & 1u) == 0) {
        p->rx_avail = false;
        return;
    }
    if (!p->tx_held)
        return;
    struct vq *vq = &be->queues[index].vq;
    struct vq_chain chain;
    if (vq_walk_chain(vq, p->tx_head, VQ_ACCESS_ANY, cd->iov, CON_IOV_MAX, &chain) == 0 &&
        chain.readable_bytes > p->tx_off)
        p->c.dropped += chain.readable_bytes - p->tx_off;
    p->tx_held = false;
    if (backend_add_used(vq, p->tx_head, 0) == 0 && vq_publish_used(vq) == 0)
        (void)vhost_be_queue_notify(be, index);
}

static int get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
    const struct con_device *cd = opaque;
    struct virtio_console_config cfg = {
        .cols = htole16(cd->opts.size ? cd->opts.cols : 0),
        .rows = htole16(cd->opts.size ? cd->opts.rows : 0),
        .max_nr_ports = htole32(cd->nr_ports),
    };
    /* The library checked offset + len against config_size, i.e. sizeof(cfg). */
    memcpy(buf, (const uint8_t *)&cfg + offset, len);
    return 0;
}

/* Only emerg_wr is writable: its low byte is one character of port 0's output. */
static int set_config(void *opaque, uint32_t offset, const void *buf, uint32_t len)
{
    struct con_device *cd = opaque;
    if (offset < VIRTIO_CONSOLE_CONFIG_EMERG_WR)
        return -EPERM;
    if (offset != VIRTIO_CONSOLE_CONFIG_EMERG_WR || len == 0)
        return 0; /* the upper bytes of emerg_wr, written alone: no character */
    struct con_port *p = &cd->ports[0];
    uint8_t ch;
    memcpy(&ch, buf, 1);
    struct iovec iov = {.iov_base = &ch, .iov_len = 1};
    if (!con_host_writable(&p->host) || con_host_write(&p->host, &iov, 1) != 1)
        p->c.dropped++; /* an emergency write never waits */
    else
        p->c.to_host++;
    return 0;
}

/* ---- the serving loop's hooks ---- */

static void attach(void *opaque, struct vhost_be *be)
{
    struct con_device *cd = opaque;
    cd->be = be;
}

/* A new connection is a new driver: it starts from DEVICE_READY. */
static void detach(void *opaque, struct vhost_be *be)
{
    struct con_device *cd = opaque;
    (void)be;
    cd->be = NULL;
    cd->driver_ready = false;
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        struct con_port *p = &cd->ports[i];
        p->added = false;
        p->ready = false;
        p->guest_open = false;
        p->ctl = 0;
        p->rx_avail = false; /* held chains go back in stop_queue(), which follows */
    }
}

static void add_pollent(struct con_device *cd, struct pollfd *pfd, unsigned max, unsigned port,
                        unsigned role, int fd, short events)
{
    if (cd->nr_pollents >= max)
        return;
    pfd[cd->nr_pollents] = (struct pollfd){.fd = fd, .events = events};
    cd->pollents[cd->nr_pollents++] = (struct con_pollent){(uint8_t)port, (uint8_t)role};
}

static unsigned pollfds(void *opaque, struct vhost_be *be, struct pollfd *pfd, unsigned max)
{
    struct con_device *cd = opaque;
    cd->be = be;
    cd->nr_pollents = 0;
    if (max > BACKEND_MAX_PROG_POLLFDS)
        max = BACKEND_MAX_PROG_POLLFDS;
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        struct con_port *p = &cd->ports[i];
        struct con_host *h = &p->host;
        bool want_in = be != NULL && guest_receives(cd, i) && p->in_off == p->in_len &&
                       p->rx_avail && con_host_readable(h);
        if (h->kind == CON_HOST_UNIX && !con_host_connected(h)) {
            add_pollent(cd, pfd, max, i, ROLE_LISTEN, h->listen_fd, POLLIN);
        } else if (h->kind == CON_HOST_UNIX) {
            /* Always polled while connected, to see a hang-up; read only when wanted. */
            if (want_in || !h->hup)
                add_pollent(cd, pfd, max, i, ROLE_IN, h->in_fd, want_in ? POLLIN : 0);
        } else if (want_in) {
            add_pollent(cd, pfd, max, i, ROLE_IN, h->in_fd, POLLIN);
        }
        if (p->tx_held && h->out_pollable && con_host_writable(h))
            add_pollent(cd, pfd, max, i, ROLE_OUT, h->out_fd, POLLOUT);
    }
    return cd->nr_pollents;
}

static void host_input(struct con_device *cd, struct con_port *p)
{
    unsigned id = (unsigned)(p - cd->ports);
    ssize_t n = con_host_read(&p->host, p->in_buf, CON_INPUT_BUF);
    if (n == -EAGAIN)
        return;
    if (n > 0) {
        p->in_off = 0;
        p->in_len = (size_t)n;
        run_queue(cd, rx_queue(id));
        return;
    }
    if (n < 0)
        log_warn("console: port %u: host input failed: %s", id, strerror((int)-n));
    else
        log_debug("console: port %u: end of host input", id);
    con_host_input_ended(&p->host);
    if (!con_host_connected(&p->host))
        host_left(cd, p);
}

static void host_event(struct con_device *cd, const struct pollfd *e, unsigned port, unsigned role)
{
    struct con_port *p = &cd->ports[port];
    struct con_host *h = &p->host;
    switch (role) {
    case ROLE_LISTEN: {
        if (e->fd != h->listen_fd)
            return;
        int r = con_host_accept(h);
        if (r < 0)
            log_warn("console: port %u: accept: %s", port, strerror(-r));
        if (r == 1) {
            p->c.host_connects++;
            host_changed(cd, p);
        }
        return;
    }
    case ROLE_IN:
        if (e->fd != h->in_fd)
            return; /* that client left while this round was handled */
        if (e->events & POLLIN) {
            host_input(cd, p);
        } else {
            con_host_hangup(h);
            if (!con_host_connected(h))
                host_left(cd, p);
        }
        return;
    default:
        if (e->fd == h->out_fd && p->tx_held)
            run_queue(cd, tx_queue(port));
        return;
    }
}

static int dispatch(void *opaque, struct vhost_be *be, const struct pollfd *pfd, unsigned n)
{
    struct con_device *cd = opaque;
    cd->be = be;
    for (unsigned i = 0; i < n && i < cd->nr_pollents; i++) {
        if (pfd[i].revents != 0)
            host_event(cd, &pfd[i], cd->pollents[i].port, cd->pollents[i].role);
    }
    return 0;
}

struct backend_hooks con_device_hooks(struct con_device *cd)
{
    return (struct backend_hooks){
        .opaque = cd, .attach = attach, .detach = detach, .pollfds = pollfds, .dispatch = dispatch};
}

/* ---- set-up ---- */

void con_device_init(struct con_device *cd, const struct con_device_opts *opts)
{
    memset(cd, 0, sizeof(*cd));
    cd->opts = *opts;
    uint64_t features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_EVENT_IDX) |
                        BIT(VIRTIO_F_INDIRECT_DESC) | BIT(VIRTIO_CONSOLE_F_MULTIPORT) |
                        BIT(VIRTIO_CONSOLE_F_EMERG_WRITE);
    if (opts->size)
        features |= BIT(VIRTIO_CONSOLE_F_SIZE);
    cd->dev = (struct vhost_be_device){
        .features = features,
        .nr_queues = 4,
        .config_size = sizeof(struct virtio_console_config),
        .opaque = cd,
        .get_config = get_config,
        .set_config = set_config,
        .process_queue = process_queue,
        .stop_queue = stop_queue,
    };
}

bool con_port_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CON_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int con_device_add_port(struct con_device *cd, const char *name, const struct con_host_spec *spec)
{
    if (cd->nr_ports == CON_MAX_PORTS)
        return -ENOSPC;
    if ((cd->nr_ports == 0) != (name == NULL) || (name != NULL && !con_port_name_valid(name)))
        return -EINVAL;
    for (unsigned i = 1; name != NULL && i < cd->nr_ports; i++) {
        if (strcmp(cd->ports[i].name, name) == 0)
            return -EINVAL;
    }
    struct con_port *p = &cd->ports[cd->nr_ports];
    memset(p, 0, sizeof(*p));
    p->in_buf = malloc(CON_INPUT_BUF);
    if (p->in_buf == NULL)
        return -ENOMEM;
    int r = con_host_open(&p->host, spec);
    if (r < 0) {
        free(p->in_buf);
        p->in_buf = NULL;
        return r;
    }
    if (name != NULL)
        memcpy(p->name, name, strlen(name) + 1);
    p->console = name == NULL && spec->kind != CON_HOST_NONE;
    cd->nr_ports++;
    cd->dev.nr_queues = 2 + 2 * cd->nr_ports;
    return 0;
}

void con_device_destroy(struct con_device *cd)
{
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        con_host_close(&cd->ports[i].host);
        free(cd->ports[i].in_buf);
        cd->ports[i].in_buf = NULL;
    }
    cd->nr_ports = 0;
}

void con_device_log_counters(const struct con_device *cd)
{
    for (unsigned i = 0; i < cd->nr_ports; i++) {
        const struct con_port *p = &cd->ports[i];
        const struct con_port_counters *c = &p->c;
        log_info("console: port %u%s%s: %llu bytes to the host, %llu to the guest, %llu "
                 "dropped; %llu bad control messages, %llu bad chains; opened %llu times by "
                 "the guest, %llu host clients",
                 i, i == 0 ? (p->console ? " (console)" : "") : " ", p->name,
                 (unsigned long long)c->to_host, (unsigned long long)c->to_guest,
                 (unsigned long long)c->dropped, (unsigned long long)c->bad_control,
                 (unsigned long long)c->bad_chains, (unsigned long long)c->guest_opens,
                 (unsigned long long)c->host_connects);
    }
    log_info("console: %llu control messages naming no port, %llu bad control chains, %llu "
             "messages that did not fit a buffer",
             (unsigned long long)cd->bad_control, (unsigned long long)cd->bad_chains,
             (unsigned long long)cd->control_dropped);
}
