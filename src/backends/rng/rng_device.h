/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file rng_device.h
 * @brief bulkhead-rng's device: virtio-rng (entropy device, virtio device ID 4) on
 *        the vhost-user backend library.
 *
 * One queue, the requestq. The driver offers device-writable buffers and the device
 * fills them with bytes from getrandom(2), the kernel's CSPRNG, and returns how many
 * it wrote. A chain is filled up to a per-request limit, so one request cannot make
 * the process spend unbounded time in the kernel; the driver asks again for more.
 *
 * **Hostile driver.** A chain with a device-readable buffer is not a request this
 * device understands: it is completed with a used length of 0, counted and logged
 * (rate-limited), and the device goes on. Malformed chains (loops, addresses outside
 * memory) break the ring through the virtqueue code, as for every device.
 */
#ifndef BULKHEAD_BACKENDS_RNG_RNG_DEVICE_H
#define BULKHEAD_BACKENDS_RNG_RNG_DEVICE_H

#include "vhost/backend.h"

#include <stdint.h>

/** Default bytes given per request (--max-request). */
#define RNG_DEFAULT_MAX_REQUEST (64u * 1024u)
/** Largest --max-request: one request costs at most this much getrandom() work. */
#define RNG_MAX_MAX_REQUEST (1024u * 1024u)
/**
 * Segments of one chain the device looks at; a chain with more is filled through its
 * first RNG_IOV_MAX writable segments only (a shorter answer, which the driver allows).
 */
#define RNG_IOV_MAX 256u

/** What the device did, over every connection; logged at exit. */
struct rng_counters {
    uint64_t requests; /**< Chains filled (a request of 0 writable bytes counts too). */
    uint64_t bytes;    /**< Random bytes written into guest buffers. */
    uint64_t refused;  /**< Chains with a device-readable buffer, completed empty. */
};

/** The device of one bulkhead-rng process. */
struct rng_device {
    /** Handed to vhost_be_init(); its callbacks take the rng_device as opaque. */
    struct vhost_be_device dev;
    uint32_t max_request;             /**< Bytes given per chain at most. */
    struct rng_counters counters;     /**< Since start. */
    struct vq_iovec iov[RNG_IOV_MAX]; /**< Scratch for one chain's segments. */
};

/**
 * Describe the device.
 * @param rd the device.
 * @param max_request bytes per request, 1 to RNG_MAX_MAX_REQUEST.
 * @return 0; -EINVAL for @p max_request out of range.
 */
int rng_device_init(struct rng_device *rd, uint32_t max_request);

#endif
