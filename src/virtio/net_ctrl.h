/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file net_ctrl.h
 * @brief The virtio-net control queue, served by the VMM itself.
 *
 * Why here and not in the backend: vhost-user leaves the control queue to the frontend
 * (QEMU serves it too), and the one command that matters, the number of active queue
 * pairs, must be turned into SET_VRING_ENABLE messages that only the frontend can send.
 * The VMM offers VIRTIO_NET_F_CTRL_VQ and VIRTIO_NET_F_MQ only, so the driver may send
 * only VIRTIO_NET_CTRL_MQ / VQ_PAIRS_SET (virtio 1.2 §5.1.6.5.5); every other class or
 * command is answered VIRTIO_NET_ERR, which drivers report and survive.
 *
 * A command is one chain: device-readable bytes (class, command, data) then at least one
 * device-writable byte for the ack, which goes into the first writable byte (used
 * length 1). The command bytes are copied out once and parsed from the copy. A chain of the
 * wrong shape (no readable header, no writable byte, more than NET_CTRL_MAX_CMD command
 * bytes) is answered VIRTIO_NET_ERR when it has a writable byte and completed with
 * length 0 otherwise; a malformed ring breaks the queue (the caller asks for a reset).
 * Portable: only the virtqueue code and guest memory.
 */
#ifndef BULKHEAD_VIRTIO_NET_CTRL_H
#define BULKHEAD_VIRTIO_NET_CTRL_H

#include "virtio/virtqueue.h"

#include <stdbool.h>
#include <stdint.h>

/** Most command bytes (class, command and data) taken; longer commands are refused. */
#define NET_CTRL_MAX_CMD 64u
/** Most segments of one command chain. */
#define NET_CTRL_MAX_SEGS 8u

/** The control queue and the multi-queue state it commands. */
struct net_ctrl {
    struct vq vq;       /**< Device side of the guest's control queue. */
    uint16_t max_pairs; /**< max_virtqueue_pairs offered in the configuration. */
    uint16_t pairs;     /**< Active pairs: 1 after a reset (spec), then what the driver set. */
    uint64_t commands;  /**< Counter: commands answered. */
    uint64_t refused;   /**< Counter: commands answered VIRTIO_NET_ERR. */
    uint64_t notifies;  /**< Counter: used-buffer notifications asked for. */
};

/** What one net_ctrl_process() call did. */
struct net_ctrl_result {
    bool notify;        /**< The driver wants a used-buffer notification now. */
    bool pairs_changed; /**< ctrl->pairs changed: the rings' enable state must follow. */
};

/**
 * Prepare the state for a device reset: one active pair, queue disabled.
 * @param c the control queue.
 * @param max_pairs max_virtqueue_pairs offered (1 to 0x8000).
 */
void net_ctrl_reset(struct net_ctrl *c, uint16_t max_pairs);

/**
 * Start serving the queue the driver set up.
 * @param c the control queue.
 * @param mem guest memory.
 * @param cfg the ring as the driver programmed it, with the negotiated features.
 * @return 0, or what vq_enable() refuses a ring with.
 */
int net_ctrl_start(struct net_ctrl *c, const struct guest_mem *mem, const struct vq_config *cfg);

/**
 * Answer every command the driver made available.
 * @param c the control queue (started).
 * @param res receives what changed.
 * @return 0; -ENODEV when not started; a negative errno when the guest broke the ring
 *         (c->vq.broken_reason says how): the device needs a reset.
 */
int net_ctrl_process(struct net_ctrl *c, struct net_ctrl_result *res);

#endif
