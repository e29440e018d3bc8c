/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file port.h
 * @brief The rings and descriptors behind bulkhead-net's ports: a VM port's receiveqs
 *        and transmitqs (through the vhost-user backend library), a tap's reads and
 *        writes. Internal to bulkhead-net: switch.c drives these, they call back into
 *        net_switch_forward() and the few switch helpers declared here.
 *
 * **Receive side** (net_vm_put()): the packet goes into as many available receive
 * chains as it needs with MRG_RXBUF (num_buffers in the first one's header, one used
 * element per chain, one publish), into exactly one without. Chains taken from the ring
 * that turn out too few for the packet are kept (the port's stash, by head) for the next
 * packet, since the ring has no way to give them back. Each receiveq has its own stash.
 *
 * **Transmit side** (net_vm_tx()): every available chain is walked (device-readable
 * only), its header copied out and checked (offload.h), and the frame forwarded; a
 * bad one is dropped and counted and its chain still completed (used length 0).
 */
#ifndef BULKHEAD_BACKENDS_NET_PORT_H
#define BULKHEAD_BACKENDS_NET_PORT_H

#include "backends/net/switch.h"

#include <stddef.h>
#include <stdint.h>

/**
 * Describe a VM port's device (features, 2 * @p pairs queues, callbacks) and make its
 * per-ring arrays for @p queue_size entries (larger rings get larger arrays when they
 * start).
 * @param p the port (kind NET_PORT_VM).
 * @param queue_size expected Queue Size.
 * @param pairs queue pairs, 1 to NET_MAX_QUEUE_PAIRS.
 * @return 0; -ENOMEM; -EINVAL for a bad @p pairs.
 */
int net_vm_port_init(struct net_port *p, unsigned queue_size, unsigned pairs);

/**
 * The virtio features a VM port offers: ring features, MRG_RXBUF, and checksum and TSO
 * offloads both ways; with more than one pair also MQ (virtio_net.h says why). No control
 * queue and no configuration space: those are the frontend's.
 * @param pairs the port's queue pairs.
 * @return the feature bits (the library adds vhost-user's own bit 30).
 */
uint64_t net_vm_features(unsigned pairs);

/**
 * Free a port's arrays and buffers (not its descriptors).
 * @param p the port.
 */
void net_port_free_buffers(struct net_port *p);

/**
 * Whether a VM port's ring is started, enabled and usable.
 * @param p the port.
 * @param ring its index (VIRTIO_NET_RXQ_OF(), VIRTIO_NET_TXQ_OF()); any value is safe.
 * @return true when running.
 */
bool net_vm_ring_running(const struct net_port *p, unsigned ring);

/**
 * The receiveq a packet of flow @p flow goes to: one of the port's running receiveqs,
 * the same one for a flow as long as the set of running receiveqs stays the same.
 * @param p the destination, a VM port.
 * @param flow net_flow_hash() of the packet (anything with one pair).
 * @return the ring index; -ENODEV when no receiveq runs.
 */
int net_vm_rx_pick(const struct net_port *p, uint32_t flow);

/**
 * Deliver one packet into one of a VM's receiveqs (file comment). Publishes its used
 * entries and marks the ring for a notification (net_switch_flush()).
 * @param dst the destination, a VM port.
 * @param ring the receiveq, from net_vm_rx_pick().
 * @param hdr the header to deliver (num_buffers is filled in here).
 * @param iov the frame, after the header.
 * @param niov entries of @p iov.
 * @param len the frame's length.
 * @return 0; -EAGAIN when the ring has too few buffers now; -EMSGSIZE when the packet
 *         can never fit (no MRG_RXBUF and the next chain is too small, or every chain
 *         the ring holds is too little); -ENODEV when the receiveq is not running.
 */
int net_vm_put(struct net_port *dst, unsigned ring, const struct virtio_net_hdr *hdr,
               const struct vq_iovec *iov, unsigned niov, uint32_t len);

/**
 * Ask for a receiveq's kicks (a source waits for its buffers), then look again.
 * @param p the port.
 * @param ring the receiveq.
 * @return true when buffers are there already, or the ring cannot be used: the waiting
 *         source should be looked at again now.
 */
bool net_vm_rx_arm(struct net_port *p, unsigned ring);

/**
 * Stop a receiveq's kicks (nobody waits for it any more).
 * @param p the port.
 * @param ring the receiveq.
 */
void net_vm_rx_disarm(struct net_port *p, unsigned ring);

/**
 * Whether the driver published chains on a receiveq not yet taken (a hint).
 * @param p the port.
 * @param ring the receiveq.
 * @return true when there may be new buffers.
 */
bool net_vm_rx_ready(struct net_port *p, unsigned ring);

/**
 * Process one of a VM's transmitqs (its kick, the polling window, a ring that had more
 * than a budget): what is available, up to NET_TX_BUDGET; then publish, notify, and
 * re-arm kicks unless polling or waiting. While a frame of the port waits, nothing is
 * taken and the ring's kicks are turned off: net_vm_tx_resume() comes back to it.
 * @param p the port.
 * @param ring the transmitq.
 * @return 0, or a negative errno when the ring broke.
 */
int net_vm_tx(struct net_port *p, unsigned ring);

/**
 * Offer the port's waiting chain again, if there is one, and once none waits process
 * every transmitq (their kicks were ignored meanwhile), the waiting chain's first.
 * @param p the port.
 */
void net_vm_tx_resume(struct net_port *p);

/**
 * Give up the waiting transmit chain: complete it (used length 0), publish, notify.
 * @param p the port, with a waiting chain.
 */
void net_vm_drop_pending(struct net_port *p);

/**
 * Write one packet to a tap, header first, in one writev().
 * @param dst the tap port.
 * @param hdr the header (flags the kernel does not read are cleared).
 * @param iov the frame; at most NET_TAP_MAX_IOV entries.
 * @param niov entries of @p iov.
 * @param len the frame's length.
 * @return 0; -EAGAIN when the tap takes nothing now; -ENODEV when the tap is gone;
 *         -EIO for another write error.
 */
int net_tap_put(struct net_port *dst, const struct virtio_net_hdr *hdr, const struct vq_iovec *iov,
                unsigned niov, uint32_t len);

/** Most frame segments net_tap_put() takes; longer lists are copied into one first. */
#define NET_TAP_MAX_IOV 63u

/**
 * Read and forward up to NET_TAP_BUDGET packets from a tap, until it is empty or a
 * packet must wait.
 * @param p the tap port.
 */
void net_tap_rx(struct net_port *p);

/**
 * Offer a tap's waiting packet again.
 * @param p the tap port, with a waiting packet.
 */
void net_tap_retry(struct net_port *p);

/**
 * Copy the first @p n bytes of a segment list (the caller checked they exist).
 * @param iov the segments.
 * @param niov their count.
 * @param dst receives the bytes.
 * @param n how many.
 */
void net_iov_read(const struct vq_iovec *iov, unsigned niov, void *dst, size_t n);

/**
 * Count a dropped packet at a port; packets the sender got wrong are logged too
 * (rate-limited).
 * @param p the port where the reason arose.
 * @param why the reason.
 */
void net_port_drop(struct net_port *p, enum net_drop why);

/**
 * Send the receive-side notifications owed after a batch: one per receiveq that got used
 * entries, when its driver wants one.
 * @param sw the switch.
 */
void net_switch_flush(struct net_switch *sw);

#endif
