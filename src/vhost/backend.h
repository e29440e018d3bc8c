/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file backend.h
 * @brief Server side of vhost-user for backend programs (bulkhead-blk and later ones).
 *
 * A backend program describes its device (struct vhost_be_device: features, queue
 * count, configuration space, and what to do when a queue is kicked) and hands one
 * connected socket to vhost_be_init(). The library answers the frontend, maps the
 * memory table, builds the struct guest_mem view the virtqueue code works on, starts
 * a device-side struct vq per ring (virtqueue.h) and watches the kick eventfds. The
 * program either calls vhost_be_run(), or polls vhost_be_pollfds() together with its
 * own descriptors and calls vhost_be_dispatch().
 *
 * **The frontend is not trusted either.** A misbehaving frontend must not crash the
 * backend, make it touch memory outside what it was given, or block it for ever:
 *  - messages go through the codec (vhost_user_msg.h): sizes, descriptor counts and
 *    flags are checked before any field is used, extra descriptors are closed, every
 *    read and write has a deadline (5 s by default);
 *  - each request is validated whole before anything changes, so a refused request
 *    leaves no trace (a refused memory table leaves the old one mapped and in use);
 *  - memory regions are mapped only after checking them all: non-empty, no wrap of
 *    guest-physical, user or file ranges, no two regions overlapping in guest-physical
 *    or in user address space, mmap_offset + memory_size within the file (fstat), and
 *    the file sealed against shrinking (F_SEAL_SHRINK) so it cannot be truncated
 *    under the mapping and raise SIGBUS, unless the device allows unsealed memory;
 *  - vring addresses are frontend user addresses; each must lie in a region of the
 *    table (checked at SET_VRING_ADDR) and each whole ring in one region (checked,
 *    translated to guest-physical and handed to vq_enable() when the ring starts);
 *  - kick, call and error descriptors are made non-blocking, so a frontend that
 *    drains or floods them cannot stall the backend.
 * A refused request is answered with a non-zero acknowledgement when the frontend
 * asked for one (NEED_REPLY); otherwise the library cannot report it and the
 * connection is ended (vhost_be_dispatch() returns the error).
 *
 * **Ring life cycle** (vhost-user "Ring states"): a ring starts when SET_VRING_KICK
 * arrives after SET_VRING_NUM and SET_VRING_ADDR (SET_VRING_BASE optional), and stops
 * on GET_VRING_BASE, RESET_OWNER or RESET_DEVICE. When VHOST_USER_F_PROTOCOL_FEATURES
 * was negotiated a ring is processed only while SET_VRING_ENABLE 1 is in force;
 * otherwise a started ring is enabled. Kicks on a disabled ring are drained and the
 * ring is processed once when it becomes enabled.
 *
 * **Threads.** Everything, callbacks included, runs on the thread that calls
 * vhost_be_dispatch() / vhost_be_run(). A new memory table replaces the struct
 * guest_mem the queues use and unmaps the old regions: a program that keeps host
 * pointers from a walked chain beyond the process_queue() call (asynchronous I/O)
 * must finish those requests in its stop_queue() callback or before the next
 * dispatch.
 */
#ifndef BULKHEAD_VHOST_BACKEND_H
#define BULKHEAD_VHOST_BACKEND_H

#include "core/guest_mem.h"
#include "vhost/vhost_user.h"
#include "virtio/virtqueue.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most queues a backend built on this library may have. */
#define VHOST_BE_MAX_QUEUES 64u
/** Deadline for the rest of a message once its first byte arrived, and for a reply. */
#define VHOST_BE_DEFAULT_TIMEOUT_NS 5000000000ull
/** Entries vhost_be_pollfds() may fill: the socket and one kick per queue. */
#define VHOST_BE_MAX_POLLFDS (1u + VHOST_BE_MAX_QUEUES)

struct vhost_be;

/** What the backend program is: its device's features, queues, config and work. */
struct vhost_be_device {
    /** Virtio features offered (VERSION_1, ring and device bits); bit 30 is added here. */
    uint64_t features;
    /** Queues of the device, 1 to VHOST_BE_MAX_QUEUES (GET_QUEUE_NUM). */
    unsigned nr_queues;
    /** Bytes of the device configuration space, at most 256; 0 for none. */
    uint32_t config_size;
    /**
     * Accept memory files without F_SEAL_SHRINK (e.g. hugetlbfs files of another
     * frontend). Such a file truncated by the frontend makes our accesses fault.
     */
    bool accept_unsealed_memory;
    /** Opaque pointer passed to every callback. */
    void *opaque;

    /**
     * Read @p len bytes of configuration at @p offset; the range was checked against
     * @c config_size. Optional: without it F_CONFIG is not offered.
     * @return 0 or a negative errno (the frontend then gets an empty reply).
     */
    int (*get_config)(void *opaque, uint32_t offset, void *buf, uint32_t len);
    /**
     * The driver wrote configuration (range checked). Optional: without it every
     * SET_CONFIG is refused.
     * @return 0 or a negative errno (refused).
     */
    int (*set_config)(void *opaque, uint32_t offset, const void *buf, uint32_t len);
    /**
     * A started, enabled ring was kicked (or just started or enabled): process what
     * is available (the device loop of virtqueue.h). The library sends the used
     * buffer notification afterwards when vq_should_notify() says so, and signals
     * the ring's error eventfd if the ring broke. Required.
     * @return 0 or a negative errno (logged).
     */
    int (*process_queue)(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq);
    /**
     * The ring is about to stop (GET_VRING_BASE, reset, disconnect): complete every
     * request in flight on it now. Optional.
     */
    void (*stop_queue)(void *opaque, struct vhost_be *be, unsigned index);
};

/** The library's state of one ring; members are read-only for the program. */
struct vhost_be_queue {
    struct vq vq;  /**< The device-side queue, enabled while started. */
    uint16_t size; /**< SET_VRING_NUM; 0 until set. */
    uint16_t base; /**< Next avail index to start from (SET_VRING_BASE, or where it stopped). */
    bool addr_set; /**< SET_VRING_ADDR was accepted. */
    uint64_t desc_uaddr;  /**< Descriptor table, frontend user address. */
    uint64_t avail_uaddr; /**< Available ring, frontend user address. */
    uint64_t used_uaddr;  /**< Used ring, frontend user address. */
    int kick_fd;          /**< Kick eventfd (non-blocking), or -1. */
    int call_fd;          /**< Call eventfd (non-blocking), or -1. */
    int err_fd;           /**< Error eventfd (non-blocking), or -1. */
    bool started;         /**< Between SET_VRING_KICK and GET_VRING_BASE. */
    bool enabled;         /**< SET_VRING_ENABLE state. */
    bool err_signalled;   /**< The error eventfd was signalled for the current break. */
};

/** One mapped region of the memory table. */
struct vhost_be_region {
    uint64_t gpa;   /**< Guest-physical start. */
    uint64_t size;  /**< Bytes. */
    uint64_t uaddr; /**< The frontend's user address for @c gpa (never dereferenced). */
    uint8_t *hva;   /**< Our mapping of @c gpa. */
    void *map;      /**< Start of the mmap() (page-aligned, may precede @c hva). */
    size_t map_len; /**< Length of the mmap(). */
};

/** One connection to a frontend. The program reads members, never writes them. */
struct vhost_be {
    int sock;                          /**< The connection, owned. */
    const struct vhost_be_device *dev; /**< The program's device description. */
    uint64_t timeout_ns;               /**< Deadline for a message's rest and for replies. */
    uint64_t features;                 /**< Negotiated virtio features, without bit 30. */
    bool protocol_negotiated;          /**< Bit 30 was in SET_FEATURES: rings need enabling. */
    uint64_t protocol_features;        /**< Negotiated protocol features. */
    bool owned;                        /**< SET_OWNER was received. */
    struct vhost_be_region regions[VHOST_USER_MAX_MEM_REGIONS]; /**< Mapped memory table. */
    unsigned nr_regions;                                        /**< Entries of @c regions. */
    struct guest_mem mem[2]; /**< Current view and the one a new table is built in. */
    unsigned cur_mem;        /**< Which of @c mem the queues use. */
    struct vhost_be_queue queues[VHOST_BE_MAX_QUEUES]; /**< dev->nr_queues are used. */
    uint64_t process_pending; /**< Rings (bit per index) to process once a message is answered. */
};

/**
 * Start serving one frontend connection; sends nothing (the frontend speaks first).
 * @param be the connection state.
 * @param sock connected unix stream socket; owned from now on.
 * @param dev the device; must outlive @p be.
 * @return 0; -EINVAL for a bad device description (nr_queues, config_size, bit 30 in
 *         features, no process_queue); @p sock is not taken then.
 */
int vhost_be_init(struct vhost_be *be, int sock, const struct vhost_be_device *dev);

/**
 * Stop every ring (stop_queue() callbacks), unmap the memory table, close every
 * descriptor and the socket.
 * @param be the connection state.
 */
void vhost_be_destroy(struct vhost_be *be);

/**
 * The descriptors to poll: the socket first, then the kick eventfd of each started
 * ring. Valid until the next dispatch.
 * @param be the connection state.
 * @param pfd receives up to @p max entries (events POLLIN).
 * @param max entries in @p pfd; VHOST_BE_MAX_POLLFDS is always enough.
 * @return entries filled.
 */
unsigned vhost_be_pollfds(const struct vhost_be *be, struct pollfd *pfd, unsigned max);

/**
 * Act on poll() results: kicks first, then at most one message from the socket.
 * Entries for descriptors that are not the library's are ignored, so a program may
 * poll its own descriptors in the same array.
 * @param be the connection state.
 * @param pfd the array given to poll().
 * @param n its entries.
 * @return 0; -ECONNRESET when the frontend went away; another negative errno when
 *         the connection must be ended (protocol violation, refused request without
 *         NEED_REPLY, missed deadline).
 */
int vhost_be_dispatch(struct vhost_be *be, const struct pollfd *pfd, unsigned n);

/**
 * Read and handle one message (waiting for it up to the deadline).
 * @param be the connection state.
 * @return as vhost_be_dispatch().
 */
int vhost_be_handle_message(struct vhost_be *be);

/**
 * Drain a ring's kick eventfd and, when the ring is started and enabled, process it.
 * @param be the connection state.
 * @param index ring index.
 * @return 0; -EINVAL for an index out of range.
 */
int vhost_be_handle_kick(struct vhost_be *be, unsigned index);

/**
 * For a polling program: whether a ring is started and enabled and its driver has
 * published chains not yet taken (vq_avail_peek(), a hint).
 * @param be the connection state.
 * @param index ring index.
 * @return true when vhost_be_process() would find work; false otherwise.
 */
bool vhost_be_ring_ready(struct vhost_be *be, unsigned index);

/**
 * Process a ring as a kick would, without reading its kick eventfd: for a program
 * that polls rings, and for re-arming kicks when it stops polling.
 * @param be the connection state.
 * @param index ring index.
 * @return 0; -EINVAL for an index out of range.
 */
int vhost_be_process(struct vhost_be *be, unsigned index);

/**
 * Signal a ring's call eventfd if vq_should_notify() says the driver wants it. For
 * programs that complete requests outside process_queue().
 * @param be the connection state.
 * @param index ring index.
 * @return 1 when signalled, 0 when not needed; -EINVAL for an index out of range.
 */
int vhost_be_queue_notify(struct vhost_be *be, unsigned index);

/**
 * Serve the connection until the frontend goes away: poll the socket and the kicks,
 * dispatch.
 * @param be the connection state.
 * @return 0 when the frontend closed the connection; -EINTR when a signal arrived
 *         (call again to go on); another negative errno as vhost_be_dispatch().
 */
int vhost_be_run(struct vhost_be *be);

#endif
