/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vsock_dev.h
 * @brief bulkhead-vsock's device: the vhost-user backend library (backend.h) glued to
 *        the connection table (conn.h) through the three rings of a virtio-vsock device.
 *
 * Queue 0 (rx) carries packets to the guest, queue 1 (tx) packets from it, queue 2
 * (event) TRANSPORT_RESET events. The configuration space is the guest's CID (le64),
 * offered through get_config so that the frontend negotiates the CONFIG protocol
 * feature and reads it, as QEMU's vhost-user-vsock-pci does.
 *
 * A program serves a connection like this (one thread, one poll()):
 * @code
 * vsock_dev_init(&vd, &opts);
 * vhost_be_init(&be, sock, &vd.dev);
 * vsock_dev_attach(&vd, &be);
 * for (;;) {
 *     n = vsock_dev_pollfds(&vd, pfd, max);     // library, listener, host sockets
 *     poll(pfd, n, vsock_dev_poll_timeout(&vd));
 *     if (vsock_dev_dispatch(&vd, pfd, n) < 0)
 *         break;                                 // frontend gone or protocol error
 * }
 * vsock_dev_detach(&vd);                         // resets every connection
 * @endcode
 *
 * **Batches.** A tx kick takes every chain the driver made available, publishes the
 * used entries once and notifies once. Packets for the guest are built only when an
 * rx buffer is at hand (the table's pull interface); the buffers of one round are
 * published once and notified once.
 *
 * **Memory.** No pointer into guest memory outlives the call that walked its chain:
 * an rx buffer taken from the ring but not filled (a host socket had nothing after
 * all) is kept as a head index only and walked again when it is used, so a new memory
 * table cannot leave a stale pointer behind. A stopping rx ring gets such a buffer
 * back, empty.
 */
#ifndef BULKHEAD_BACKENDS_VSOCK_VSOCK_DEV_H
#define BULKHEAD_BACKENDS_VSOCK_VSOCK_DEV_H

#include "backends/vsock/conn.h"
#include "vhost/backend.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/** Index of the rx queue (device-writable: host to guest). */
#define VSOCK_RXQ 0u
/** Index of the tx queue (device-readable: guest to host). */
#define VSOCK_TXQ 1u
/** Index of the event queue (device-writable). */
#define VSOCK_EVQ 2u
/** Queues of a virtio-vsock device. */
#define VSOCK_NR_QUEUES 3u

/** What the device is for. */
struct vsock_dev_opts {
    uint64_t guest_cid;   /**< The guest's CID, 3 to VSOCK_MAX_GUEST_CID. */
    const char *uds_path; /**< Base path of the host's unix sockets; must outlive the device. */
    uint32_t buf_alloc;   /**< buf_alloc per connection. */
    unsigned max_conns;   /**< Connections at once. */
    int listen_fd;        /**< Listening socket on @c uds_path (non-blocking), or -1; not owned. */
};

/** The device of one bulkhead-vsock process; serves one frontend at a time. */
struct vsock_dev {
    /** Handed to vhost_be_init(); its callbacks take the vsock_dev as opaque. */
    struct vhost_be_device dev;
    struct vsock_conns conns; /**< Every connection; outlives frontends (reset between). */
    struct vhost_be *be;      /**< The frontend served, NULL between frontends. */
    uint64_t guest_cid;       /**< The configuration space. */
    struct vq_iovec *iov;     /**< Segments of the chain being handled (any queue). */
    unsigned iov_cap;         /**< Entries of @c iov: the largest Queue Size seen. */
    struct vq_iovec *payload; /**< A tx packet's payload segments, @c iov_cap entries. */
    bool rx_held;             /**< An rx head was taken and not used yet. */
    uint16_t rx_held_head;    /**< That head. */
    bool event_pending;       /**< A TRANSPORT_RESET waits for an event buffer. */
    unsigned nr_be_fds;       /**< Library entries at the start of the last poll array. */
    unsigned nr_own_fds;      /**< Table entries after them. */
};

/**
 * Describe the device and set up its (empty) connection table.
 * @param vd the device.
 * @param o what it is for.
 * @return 0; -EINVAL for options out of range; -ENOMEM.
 */
int vsock_dev_init(struct vsock_dev *vd, const struct vsock_dev_opts *o);

/**
 * Free what vsock_dev_init() allocated; call after vsock_dev_detach().
 * @param vd the device.
 */
void vsock_dev_fini(struct vsock_dev *vd);

/**
 * Start serving a frontend that vhost_be_init() set up with @c vd->dev. Host clients
 * are accepted from now on, and a TRANSPORT_RESET is queued for the first event
 * buffer: this process cannot know whether the guest had connections through an
 * earlier backend (a restarted VM, or a replaced backend), and for a guest that had
 * none the event costs nothing.
 * @param vd the device, not attached.
 * @param be the frontend's connection; stays the caller's until vsock_dev_detach().
 */
void vsock_dev_attach(struct vsock_dev *vd, struct vhost_be *be);

/**
 * End the frontend: every connection is reset (host sockets closed), host clients
 * are left in the listener's backlog, and vhost_be_destroy() ends the connection.
 * @param vd the device (one with no frontend is left as it is).
 */
void vsock_dev_detach(struct vsock_dev *vd);

/**
 * Entries vsock_dev_pollfds() may fill.
 * @param vd the device.
 * @return the count.
 */
unsigned vsock_dev_max_pollfds(const struct vsock_dev *vd);

/**
 * Fill a poll array: the library's descriptors (socket, kicks), then the listener and
 * the host sockets that wait for something.
 * @param vd the device, attached.
 * @param pfd receives the entries.
 * @param max room; vsock_dev_max_pollfds() is always enough.
 * @return entries filled.
 */
unsigned vsock_dev_pollfds(struct vsock_dev *vd, struct pollfd *pfd, unsigned max);

/**
 * The timeout for the next poll(): until the nearest connection deadline.
 * @param vd the device.
 * @return milliseconds, or -1 for none.
 */
int vsock_dev_poll_timeout(const struct vsock_dev *vd);

/**
 * Act on poll() results over the array vsock_dev_pollfds() filled: kicks and one
 * control message (the library), then the host sockets, then deadlines; finally fill
 * rx buffers with whatever the connections have for the guest, and deliver a pending
 * event.
 * @param vd the device, attached.
 * @param pfd the array given to poll().
 * @param n its entries.
 * @return 0; -ECONNRESET when the frontend went away; another negative errno when
 *         the connection must end (protocol error).
 */
int vsock_dev_dispatch(struct vsock_dev *vd, const struct pollfd *pfd, unsigned n);

#endif
