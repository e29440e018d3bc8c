/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file offload.h
 * @brief virtio-net header checks and the software fallbacks of bulkhead-net: Internet
 *        checksums and TCP segmentation (TSO) for destinations that cannot take a
 *        packet's offloads.
 *
 * Everything here works on private memory only: a header decoded into a local struct,
 * and frames the caller copied out of guest memory first, so that a guest rewriting its
 * buffers meanwhile cannot change a value between its check and its use. Nothing here
 * allocates, logs or calls the OS; the caller counts and logs what is refused.
 *
 * **What a packet's header must satisfy** (net_hdr_check()), whoever sent it:
 *  - the frame (without the header) holds an Ethernet header and at most NET_FRAME_MAX
 *    bytes;
 *  - flags: NEEDS_CSUM only (a tap may also say DATA_VALID); NEEDS_CSUM only when the
 *    sender negotiated CSUM, with csum_start + csum_offset + 2 within the frame;
 *  - gso_type NONE, TCPV4 or TCPV6, the latter two possibly with the ECN bit, each only
 *    when the sender negotiated HOST_TSO4 / HOST_TSO6 / HOST_ECN; a GSO packet also has
 *    NEEDS_CSUM (virtio 1.2 §5.1.6.2) and a gso_size of at least NET_GSO_MIN_SIZE;
 *  - hdr_len within the frame.
 */
#ifndef BULKHEAD_BACKENDS_NET_OFFLOAD_H
#define BULKHEAD_BACKENDS_NET_OFFLOAD_H

#include "backends/net/virtio_net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Bytes of an Ethernet header without a VLAN tag: two MACs and the EtherType. */
#define NET_ETH_HLEN 14u
/**
 * Largest frame (Ethernet header onwards, virtio-net header excluded) accepted from
 * anyone: an Ethernet header with one VLAN tag around the largest IP packet. A GSO
 * packet is one frame too, so this also bounds what one TSO send may carry.
 */
#define NET_FRAME_MAX (NET_ETH_HLEN + 4u + 65535u)
/**
 * Smallest gso_size accepted. A tiny MSS would turn one packet into thousands of
 * segments for a destination that needs software segmentation; Linux never sends
 * segments this small (its smallest send MSS is 48 bytes with options).
 */
#define NET_GSO_MIN_SIZE 16u

/** Feature bits (sender side) net_hdr_check() looks at for a tap: the kernel may use all. */
#define NET_TAP_HOST_FEATURES                                                                      \
    ((1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_HOST_TSO4) |                              \
     (1ull << VIRTIO_NET_F_HOST_TSO6) | (1ull << VIRTIO_NET_F_HOST_ECN))

/**
 * Why a packet was dropped. The per-port counters are indexed by it (net_drop_name()
 * names each in logs); net_hdr_check() returns the header-related ones.
 */
enum net_drop {
    NET_DROP_NONE = 0,    /**< Not dropped. */
    NET_DROP_SHORT,       /**< Shorter than the virtio-net and Ethernet headers. */
    NET_DROP_LONG,        /**< Frame longer than NET_FRAME_MAX. */
    NET_DROP_FLAGS,       /**< A flag the sender may not set. */
    NET_DROP_CSUM,        /**< NEEDS_CSUM without CSUM, or its range outside the frame. */
    NET_DROP_GSO_TYPE,    /**< Unknown gso_type, or the ECN bit without GSO. */
    NET_DROP_GSO_FEATURE, /**< A GSO type the sender did not negotiate. */
    NET_DROP_GSO_NO_CSUM, /**< A GSO packet without NEEDS_CSUM. */
    NET_DROP_GSO_SIZE,    /**< gso_size below NET_GSO_MIN_SIZE for a GSO packet. */
    NET_DROP_HDR_LEN,     /**< hdr_len beyond the frame. */
    NET_DROP_BAD_CHAIN,   /**< A chain this device cannot use (more segments than it holds). */
    NET_DROP_GSO_PARSE,   /**< Software segmentation found no TCP/IP headers matching gso_type. */
    NET_DROP_LOCAL,       /**< Addressed to a station behind its own port: filtered. */
    NET_DROP_NO_ROOM,     /**< The destination had no receive buffers (flooded frame). */
    NET_DROP_TOO_BIG,     /**< The packet does not fit the destination's receive buffers. */
    NET_DROP_RX_BUFFER,   /**< An unusable receive buffer (no room at all), returned empty. */
    NET_DROP_TIMEOUT,     /**< A unicast frame waited too long for receive buffers. */
    NET_DROP_PORT_DOWN,   /**< The destination's receive queue was not running. */
    NET_DROP_STOPPED,     /**< Its own transmit queue stopped while the frame waited. */
    NET_DROP_TAP_IO,      /**< A tap refused the frame (write error). */
    NET_DROP_COUNT,       /**< Number of reasons (array size). */
};

/**
 * Short name of a drop reason for log lines ("gso-type").
 * @param d the reason.
 * @return a static string; "?" out of range.
 */
const char *net_drop_name(enum net_drop d);

/**
 * Decode the 12 little-endian header bytes, each field read once.
 * @param raw the bytes, in private memory.
 * @param h receives the fields in host order.
 */
void net_hdr_decode(const uint8_t raw[VIRTIO_NET_HDR_LEN], struct virtio_net_hdr *h);

/**
 * Encode a header into its 12 little-endian bytes.
 * @param h the fields.
 * @param raw receives the bytes.
 */
void net_hdr_encode(const struct virtio_net_hdr *h, uint8_t raw[VIRTIO_NET_HDR_LEN]);

/**
 * Check a received header against the frame it came with (file comment).
 * @param h the decoded header.
 * @param frame_len bytes of the frame after the header.
 * @param features the sender's negotiated virtio features (a tap:
 *        NET_TAP_HOST_FEATURES): only CSUM and the HOST_ bits matter.
 * @param from_tap the sender is the host kernel, which may set DATA_VALID.
 * @return NET_DROP_NONE, or the first reason found.
 */
enum net_drop net_hdr_check(const struct virtio_net_hdr *h, uint32_t frame_len, uint64_t features,
                            bool from_tap);

/** What a destination needs done to a packet before it can take it. */
enum net_out {
    NET_OUT_AS_IS,   /**< Deliver header and frame unchanged (flags it cannot read cleared). */
    NET_OUT_CSUM,    /**< Complete the partial checksum in software, deliver without flags. */
    NET_OUT_SEGMENT, /**< Cut the GSO packet into checksummed segments in software. */
};

/**
 * Decide what a packet with a checked header needs for a destination.
 * @param h the header (net_hdr_check() accepted it).
 * @param dst_features the destination's negotiated features: GUEST_CSUM, GUEST_TSO4,
 *        GUEST_TSO6 and GUEST_ECN matter.
 * @return the plan.
 */
enum net_out net_out_plan(const struct virtio_net_hdr *h, uint64_t dst_features);

/**
 * Ones' complement sum (RFC 1071) of @p data read as big-endian 16-bit words, an odd
 * last byte padded with zero, added to @p sum; folded to 16 bits, not complemented.
 * @param data the bytes (any alignment).
 * @param len their count.
 * @param sum a previous result to continue from (0 to start).
 * @return the folded sum.
 */
uint16_t net_csum(const void *data, size_t len, uint16_t sum);

/**
 * Complete a partial checksum as a device does for NEEDS_CSUM: sum the frame from
 * @p start to its end (the checksum field holds the sender's pseudo-header sum) and
 * store the complement, big-endian, at @p start + @p offset (0xffff rather than 0,
 * which means "no checksum" to UDP).
 * @param frame the frame, private and writable.
 * @param len its length.
 * @param start csum_start.
 * @param offset csum_offset.
 * @return 0; -EINVAL when start + offset + 2 exceeds @p len (nothing written).
 */
int net_csum_complete(uint8_t *frame, uint32_t len, uint16_t start, uint16_t offset);

/**
 * Software TCP segmentation of one GSO packet: the headers parsed once by
 * net_gso_init(), then one segment per net_gso_next() call. Members are private.
 */
struct net_gso {
    const uint8_t *frame; /**< The GSO packet (private memory). */
    uint32_t l3;          /**< Offset of the IP header. */
    uint32_t l4;          /**< Offset of the TCP header. */
    uint32_t hdrs;        /**< Offset of the payload: bytes copied into every segment. */
    uint32_t payload;     /**< Payload bytes in all. */
    uint32_t done;        /**< Payload bytes already cut. */
    uint32_t mss;         /**< Payload bytes per segment (gso_size). */
    uint32_t seq;         /**< Sequence number of the first payload byte. */
    uint16_t ip_id;       /**< IPv4 identification of the first segment. */
    bool ipv6;            /**< TCPv6 rather than TCPv4. */
    unsigned index;       /**< Segments produced. */
    unsigned count;       /**< Segments in all. */
};

/**
 * Parse a GSO packet's Ethernet (optionally one 802.1Q tag), IP and TCP headers. IPv4:
 * version 4, header length 20 to 60, protocol TCP, not a fragment; IPv6: version 6,
 * next header TCP (no extension headers); TCP: data offset 5 to 15; all within the
 * frame, and the largest segment's IP length within 16 bits.
 * @param g the state.
 * @param frame the packet, private memory; must stay unchanged until the last segment.
 * @param len its length.
 * @param h its checked header: gso_type TCPV4 or TCPV6, gso_size.
 * @return 0; -EINVAL when the headers do not match gso_type or do not parse.
 */
int net_gso_init(struct net_gso *g, const uint8_t *frame, uint32_t len,
                 const struct virtio_net_hdr *h);

/**
 * Produce the next segment: the headers with IPv4 total length, identification (one
 * more per segment) and header checksum, or IPv6 payload length; TCP sequence number
 * advanced by the payload before it, FIN and PSH only on the last segment, CWR only on
 * the first; the TCP checksum computed in full.
 * @param g the state from net_gso_init().
 * @param out receives the segment.
 * @param out_max room in @p out; @c g->hdrs + gso_size (or the whole packet, if
 *        smaller) is always enough.
 * @param out_len receives the segment's length.
 * @return 1 with a segment; 0 when every segment was produced; -ENOSPC when @p out is
 *         too small (nothing consumed).
 */
int net_gso_next(struct net_gso *g, uint8_t *out, uint32_t out_max, uint32_t *out_len);

/**
 * Bytes of a frame's start net_flow_hash() looks at: an Ethernet header with one VLAN
 * tag, the longest IPv4 header (60 bytes) and the two ports after it.
 */
#define NET_FLOW_HEAD 96u

/**
 * A keyed hash of the flow a frame belongs to, which picks the receive queue of a
 * multi-queue destination, so one flow keeps its order on one queue. Always the two MAC
 * addresses; for IPv4 and IPv6 (one 802.1Q tag understood) also the protocol and the
 * addresses; and for TCP and UDP the ports too, except in IPv4 fragments (the later
 * ones carry no ports: all of a datagram's fragments must land together) and behind
 * IPv6 extension headers (not walked). Truncated or malformed headers count as far as
 * they parse.
 * @param head the frame's first bytes, private memory.
 * @param n how many: the frame's length, or NET_FLOW_HEAD when it is longer; at least
 *        the 12 bytes of the addresses.
 * @param key the run's random key, so a sender cannot aim its flows at one queue.
 * @return the hash.
 */
uint32_t net_flow_hash(const uint8_t *head, uint32_t n, uint64_t key);

#endif
