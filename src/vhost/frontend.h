/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file frontend.h
 * @brief The VMM side of vhost-user: one connection to one device backend.
 *
 * The device code of bulkhead-vmm drives a backend through these calls, in this
 * order for a device start:
 * @code
 * vhost_fe_init(&fe, sock);
 * vhost_fe_handshake(&fe);                 // features, protocol features, queues, owner
 * offered = vhost_fe_offer(&fe, vmm_features);   // what the guest is offered
 * ... the guest acks `acked` (a subset of `offered`) ...
 * vhost_fe_set_features(&fe, acked);
 * vhost_fe_set_mem_table(&fe, regions, n); // guest RAM (shared) or bounce region
 * vhost_fe_get_config(&fe, config_len);    // fills fe.config for the vCPUs' reads
 * for each queue: vhost_fe_vring_start(&fe, i, &ring);
 * ... and to stop: vhost_fe_vring_stop(&fe, i, &next_avail) for each queue.
 * @endcode
 *
 * **Threads.** Every call sends a request and, when the request has a reply or
 * REPLY_ACK was negotiated, waits for the answer with poll() up to the connection's
 * timeout (5 s by default). Call them only from the device's I/O thread, never from
 * a vCPU thread; one thread at a time per connection.
 *
 * **A backend is not trusted.** Replies are read into bounded buffers and checked by
 * the codec (size, flags, no descriptors), then here (the reply answers the request
 * just sent, indices and counts in range, the config reply matches the request).
 * Any transport or protocol failure — EOF, hang-up, a missed deadline, a malformed or
 * unexpected reply — makes the connection *dead*: @c dead is set, @c error keeps the
 * first reason, and every later call returns -ENOTCONN. A negative acknowledgement
 * (REPLY_ACK with a non-zero value, or an empty GET_CONFIG reply) is an answer, not a
 * failure of the connection: that call returns -EREMOTEIO and the connection lives.
 *
 * **Synthetic user addresses.** vhost-user describes memory to the backend with the
 * frontend's own user addresses (each region's userspace_addr, and the vring
 * addresses). Real addresses would tell a backend where the VMM's mappings are and
 * defeat its ASLR, so this frontend never learns or sends them: each region's user
 * address is a per-connection random base plus its guest-physical address, and vring
 * addresses are translated into that same space (vhost_fe_translate()).
 */
#ifndef BULKHEAD_VHOST_FRONTEND_H
#define BULKHEAD_VHOST_FRONTEND_H

#include "vhost/vhost_user.h"

#include <stdbool.h>
#include <stdint.h>

/** How long a reply may take unless vhost_fe_set_timeout() says otherwise: 5 s. */
#define VHOST_FE_DEFAULT_TIMEOUT_NS 5000000000ull

/** Protocol features this frontend uses when the backend offers them. */
#define VHOST_FE_PROTOCOL_FEATURES                                                                 \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |              \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE))

/**
 * One memory region handed to the backend: a guest-physical range and where its
 * bytes are in a shareable file (the guest-RAM memfd, or a device's bounce region).
 */
struct vhost_fe_region {
    uint64_t gpa;    /**< Guest-physical start (in isolated mode: the bounce region's address). */
    uint64_t size;   /**< Bytes, non-zero. */
    int fd;          /**< The file; passed to the backend, stays the caller's. */
    uint64_t offset; /**< Offset of @c gpa in @c fd. */
};

/** One vring to start, as the guest (or the isolated-mode shadow driver) set it up. */
struct vhost_fe_vring {
    uint16_t size;      /**< Queue Size, a power of two up to 32768. */
    uint16_t base;      /**< Next avail index the backend consumes (0 for a fresh ring). */
    uint64_t desc_gpa;  /**< Descriptor table, guest-physical, 16-aligned. */
    uint64_t avail_gpa; /**< Available ring, guest-physical, 2-aligned. */
    uint64_t used_gpa;  /**< Used ring, guest-physical, 4-aligned. */
    int kick_fd;        /**< Eventfd the driver's notifications arrive on (required). */
    int call_fd;        /**< Eventfd the backend signals used buffers on, or -1. */
    int err_fd;         /**< Eventfd the backend signals ring errors on, or -1 (not sent). */
};

/**
 * One connection. Members are read-only for callers; @c config and @c config_len
 * are the cache vCPU-facing code copies from (under the device's own lock).
 */
struct vhost_frontend {
    int sock;                  /**< The unix stream socket, owned; -1 after close. */
    uint64_t timeout_ns;       /**< Deadline of each request and its reply. */
    bool dead;                 /**< The connection failed; every call returns -ENOTCONN. */
    int error;                 /**< Why it died (negative errno), 0 while alive. */
    bool protocol_features_ok; /**< The backend offered VHOST_USER_F_PROTOCOL_FEATURES. */
    uint64_t backend_features; /**< GET_FEATURES, without bit 30. */
    uint64_t
        protocol_features;   /**< Negotiated: the backend's offer & VHOST_FE_PROTOCOL_FEATURES. */
    uint64_t acked_features; /**< Last SET_FEATURES the backend accepted, without bit 30. */
    unsigned max_queues;     /**< GET_QUEUE_NUM (with F_MQ), else 0: unknown. */
    uint64_t uaddr_base;     /**< Synthetic user address of guest-physical 0. */
    struct vhost_user_mem_region table[VHOST_USER_MAX_MEM_REGIONS]; /**< Memory table in force. */
    unsigned nr_regions;                                            /**< Entries of @c table. */
    uint8_t config[VHOST_USER_CONFIG_MAX]; /**< Device configuration from GET_CONFIG. */
    uint32_t config_len;                   /**< Valid bytes of @c config (0: none fetched). */
};

/**
 * Start a connection object on a connected socket; sends nothing.
 * @param fe the connection.
 * @param sock unix stream socket to the backend; owned from now on (closed by
 *        vhost_fe_close()). Blocking or not: the calls never wait on it unbounded.
 */
void vhost_fe_init(struct vhost_frontend *fe, int sock);

/**
 * Change the deadline for each request and its reply (tests use milliseconds).
 * @param fe the connection.
 * @param timeout_ns nanoseconds, non-zero.
 */
void vhost_fe_set_timeout(struct vhost_frontend *fe, uint64_t timeout_ns);

/**
 * Close the socket. Descriptors passed in earlier calls were never owned here.
 * @param fe the connection; may be dead, or closed already.
 */
void vhost_fe_close(struct vhost_frontend *fe);

/**
 * First exchange on a new connection: GET_FEATURES; when the backend offers bit 30,
 * GET_PROTOCOL_FEATURES and SET_PROTOCOL_FEATURES with what both sides support, then
 * GET_QUEUE_NUM when F_MQ was negotiated; finally SET_OWNER.
 * @param fe the connection.
 * @return 0; -EREMOTEIO when the backend refuses SET_OWNER; -EPROTO for a queue
 *         count of 0 or above 256; a transport error (the connection is then dead).
 */
int vhost_fe_handshake(struct vhost_frontend *fe);

/**
 * The virtio features to offer the guest: those the backend offers and the VMM
 * supports. Bit 30 is vhost-user's own and never offered.
 * @param fe the connection, after vhost_fe_handshake().
 * @param vmm_features what the VMM's device model and transport support.
 * @return the intersection.
 */
uint64_t vhost_fe_offer(const struct vhost_frontend *fe, uint64_t vmm_features);

/**
 * SET_FEATURES with the features the guest accepted (plus bit 30 when the protocol
 * features are in use, as the protocol requires).
 * @param fe the connection.
 * @param features the guest's accepted features; must be a subset of the backend's.
 * @return 0; -EINVAL for a feature the backend did not offer or bit 30 (nothing is
 *         sent); -EREMOTEIO when refused; -ENOTCONN or a transport error.
 */
int vhost_fe_set_features(struct vhost_frontend *fe, uint64_t features);

/**
 * SET_MEM_TABLE. Each region's user address is synthetic (file comment). Without
 * REPLY_ACK a GET_FEATURES follows, so that on return the backend has mapped the new
 * table either way (its replies come in order). On success the table replaces the
 * previous one for vhost_fe_translate().
 * @param fe the connection.
 * @param regions 1 to 8 regions, non-empty, not overlapping in guest-physical space.
 * @param n number of regions.
 * @return 0; -EINVAL for a bad region list (nothing sent); -EREMOTEIO when refused
 *         (the backend keeps its old table); -ENOTCONN or a transport error.
 */
int vhost_fe_set_mem_table(struct vhost_frontend *fe, const struct vhost_fe_region *regions,
                           unsigned n);

/**
 * Translate a guest-physical range to the synthetic user address the backend knows
 * it by, through the memory table in force.
 * @param fe the connection.
 * @param gpa start of the range (guest-controlled).
 * @param len bytes, non-zero (guest-controlled).
 * @param uaddr receives the user address.
 * @return 0; -EFAULT when the range is not inside one region of the table.
 */
int vhost_fe_translate(const struct vhost_frontend *fe, uint64_t gpa, uint64_t len,
                       uint64_t *uaddr);

/**
 * Start a vring: SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL,
 * SET_VRING_ERR (when an err_fd is given), SET_VRING_KICK (which starts the ring on
 * the backend) and, with protocol features, SET_VRING_ENABLE 1. Everything the
 * guest controls (size, alignment, ring placement) is checked before the first
 * message; a failure in the middle leaves the ring configured but not started
 * unless the kick was already sent: stop it with vhost_fe_vring_stop().
 * @param fe the connection.
 * @param index vring index, below 256 and below the backend's queue count if known.
 * @param ring the ring.
 * @return 0; -EINVAL for a bad index, size, alignment or kick_fd; -EFAULT when a ring
 *         is outside the memory table; -EREMOTEIO when a step is refused; -ENOTCONN
 *         or a transport error.
 */
int vhost_fe_vring_start(struct vhost_frontend *fe, unsigned index,
                         const struct vhost_fe_vring *ring);

/**
 * Replace a vring's call eventfd (SET_VRING_CALL).
 * @param fe the connection.
 * @param index vring index.
 * @param call_fd the new eventfd, or -1 for none (the NOFD flag).
 * @return 0; -EINVAL; -EREMOTEIO; -ENOTCONN or a transport error.
 */
int vhost_fe_vring_set_call(struct vhost_frontend *fe, unsigned index, int call_fd);

/**
 * Enable or disable a started vring (SET_VRING_ENABLE); needs protocol features.
 * @param fe the connection.
 * @param index vring index.
 * @param enable true to let the backend process the ring.
 * @return 0; -EINVAL; -EOPNOTSUPP without protocol features; -EREMOTEIO; -ENOTCONN
 *         or a transport error.
 */
int vhost_fe_vring_enable(struct vhost_frontend *fe, unsigned index, bool enable);

/**
 * Stop a vring (GET_VRING_BASE: the way a vhost-user frontend stops a ring) and
 * learn where the backend stopped.
 * @param fe the connection.
 * @param index vring index.
 * @param next_avail receives the next avail index the backend would have consumed.
 * @return 0; -EINVAL; -EPROTO when the reply names another ring or an index above
 *         65535 (the connection is then dead); -ENOTCONN or a transport error.
 */
int vhost_fe_vring_stop(struct vhost_frontend *fe, unsigned index, uint16_t *next_avail);

/**
 * Fetch the device configuration space into the cache (GET_CONFIG from offset 0).
 * @param fe the connection; F_CONFIG must have been negotiated.
 * @param len bytes, 1 to 256 (the device type's config size).
 * @return 0 and @c config / @c config_len updated; -EINVAL; -EOPNOTSUPP without
 *         F_CONFIG; -EREMOTEIO for an empty (refusing) reply; -EPROTO when the reply
 *         is for another range (dead); -ENOTCONN or a transport error.
 */
int vhost_fe_get_config(struct vhost_frontend *fe, uint32_t len);

/**
 * Forward a guest's write to the device configuration space (SET_CONFIG). The cache
 * is updated only when the backend accepted (with REPLY_ACK) or was sent the write.
 * @param fe the connection; F_CONFIG must have been negotiated.
 * @param offset offset in the configuration space.
 * @param data the bytes.
 * @param len 1 to 256, offset + len at most 256.
 * @return 0; -EINVAL; -EOPNOTSUPP; -EREMOTEIO; -ENOTCONN or a transport error.
 */
int vhost_fe_set_config(struct vhost_frontend *fe, uint32_t offset, const void *data, uint32_t len);

/**
 * RESET_DEVICE: the backend stops every ring and forgets the features; the memory
 * table and the protocol features stay.
 * @param fe the connection.
 * @return 0; -EOPNOTSUPP when F_RESET_DEVICE was not negotiated; -EREMOTEIO;
 *         -ENOTCONN or a transport error.
 */
int vhost_fe_reset_device(struct vhost_frontend *fe);

/**
 * Handle readiness of the socket while no request is outstanding (the device thread
 * polls @c sock for POLLIN to see a backend die at once). A backend never speaks
 * first on this socket, so EOF, hang-up and unsolicited bytes all end the connection.
 * @param fe the connection.
 * @return 0 when nothing was there after all; -ECONNRESET (EOF or hang-up) or
 *         -EPROTO (unsolicited data), and the connection is dead; -ENOTCONN.
 */
int vhost_fe_check_idle(struct vhost_frontend *fe);

#endif
