/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_net.h
 * @brief The parts of the virtio-net device (virtio 1.2 §5.1) bulkhead-net uses: feature
 *        bits, the per-packet header and its flag and GSO values, the queue indices.
 *
 * Only what a device without a control queue or configuration space of its own needs:
 * the frontend (bulkhead-vmm, or QEMU) owns the MAC address, the link status and, with
 * multi-queue, the control queue that sets how many queue pairs are in use.
 */
#ifndef BULKHEAD_BACKENDS_NET_VIRTIO_NET_H
#define BULKHEAD_BACKENDS_NET_VIRTIO_NET_H

#include <stdint.h>

/** The device takes packets with a partial checksum from the driver (host side). */
#define VIRTIO_NET_F_CSUM 0
/** The driver takes packets with a partial checksum (guest side). */
#define VIRTIO_NET_F_GUEST_CSUM 1
/** The driver takes TCP over IPv4 GSO packets. */
#define VIRTIO_NET_F_GUEST_TSO4 7
/** The driver takes TCP over IPv6 GSO packets. */
#define VIRTIO_NET_F_GUEST_TSO6 8
/** The driver takes GSO packets marked with the ECN bit (CWR set on the first segment). */
#define VIRTIO_NET_F_GUEST_ECN 9
/** The device takes TCP over IPv4 GSO packets from the driver. */
#define VIRTIO_NET_F_HOST_TSO4 11
/** The device takes TCP over IPv6 GSO packets from the driver. */
#define VIRTIO_NET_F_HOST_TSO6 12
/** The device takes GSO packets with the ECN bit from the driver. */
#define VIRTIO_NET_F_HOST_ECN 13
/** Receive packets may span several receive chains; num_buffers says how many. */
#define VIRTIO_NET_F_MRG_RXBUF 15

/**
 * Several queue pairs (max_virtqueue_pairs). Offered by a port with more than one pair
 * only because a vhost-user frontend such as QEMU hides the feature from the guest
 * unless the backend offers it; the backend itself needs nothing negotiated, since the
 * control queue that chooses the active pairs is the frontend's.
 */
#define VIRTIO_NET_F_MQ 22

/** Queue index of receiveq1, the first pair's receive queue (device-writable buffers). */
#define VIRTIO_NET_RXQ 0u
/** Queue index of transmitq1, the first pair's transmit queue (device-readable buffers). */
#define VIRTIO_NET_TXQ 1u
/** Queue index of the receive queue of pair @p k (from 0): receiveqs are the even ones. */
#define VIRTIO_NET_RXQ_OF(k) (2u * (k))
/** Queue index of the transmit queue of pair @p k (from 0): transmitqs are the odd ones. */
#define VIRTIO_NET_TXQ_OF(k) (2u * (k) + 1u)

/** Header flag: the checksum at csum_start + csum_offset must still be completed. */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1u
/** Header flag, device to driver only: the checksum was verified. */
#define VIRTIO_NET_HDR_F_DATA_VALID 2u
/** Header flag, device to driver only: coalescing information in the header (unused). */
#define VIRTIO_NET_HDR_F_RSC_INFO 4u

/** gso_type: not a GSO packet. */
#define VIRTIO_NET_HDR_GSO_NONE 0u
/** gso_type: TCP over IPv4, to be cut into gso_size segments. */
#define VIRTIO_NET_HDR_GSO_TCPV4 1u
/** gso_type: UDP fragmentation (not offered). */
#define VIRTIO_NET_HDR_GSO_UDP 3u
/** gso_type: TCP over IPv6, to be cut into gso_size segments. */
#define VIRTIO_NET_HDR_GSO_TCPV6 4u
/** gso_type bit: the packet needs ECN handling (CWR only on the first segment). */
#define VIRTIO_NET_HDR_GSO_ECN 0x80u

/** Bytes of the header with VERSION_1 (struct virtio_net_hdr_v1), in front of every packet. */
#define VIRTIO_NET_HDR_LEN 12u

/**
 * The header in host byte order, decoded from its 12 little-endian bytes
 * (net_hdr_decode()); never laid over shared memory.
 */
struct virtio_net_hdr {
    uint8_t flags;        /**< VIRTIO_NET_HDR_F_*. */
    uint8_t gso_type;     /**< VIRTIO_NET_HDR_GSO_*, possibly with the ECN bit. */
    uint16_t hdr_len;     /**< Bytes of the protocol headers (a hint). */
    uint16_t gso_size;    /**< Payload bytes per segment (the MSS) of a GSO packet. */
    uint16_t csum_start;  /**< Where the checksummed range starts, from the frame's start. */
    uint16_t csum_offset; /**< Where the checksum is stored, from csum_start. */
    uint16_t num_buffers; /**< Receive chains the packet uses (MRG_RXBUF), else 1. */
};

#endif
