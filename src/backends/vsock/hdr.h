/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file hdr.h
 * @brief virtio-vsock packets (virtio 1.2, 5.10): the 44-byte header, its checks, and
 *        the scatter-gather helpers that move packets in and out of walked chains.
 *
 * Everything here is pure: no descriptor, no allocation. A packet header lives in
 * guest memory the guest may rewrite at any time, so a header is first copied out
 * into a local array (vsock_iov_gather()), decoded from that copy once, and only the
 * decoded copy is checked and used: a field cannot change between its check and its
 * use.
 */
#ifndef BULKHEAD_BACKENDS_VSOCK_HDR_H
#define BULKHEAD_BACKENDS_VSOCK_HDR_H

#include "virtio/virtqueue.h"

#include <stdint.h>

/** Virtio device ID of the socket device. */
#define VSOCK_DEVICE_ID 19u
/** Bytes of struct virtio_vsock_hdr on the wire; packed, little-endian. */
#define VSOCK_HDR_SIZE 44u
/** Well-known CID of the host: the only destination a guest packet may name here. */
#define VSOCK_HOST_CID 2u
/** Lowest CID a guest may have: 0, 1 and 2 are reserved (hypervisor, local, host). */
#define VSOCK_MIN_GUEST_CID 3u
/** Highest CID a guest may have: the upper 32 bits are reserved and U32_MAX means "any". */
#define VSOCK_MAX_GUEST_CID 0xfffffffeu
/**
 * Largest payload of one packet. A guest's driver never sends more in one packet
 * (Linux caps its packets at 64 KiB), and the bound keeps a single packet from
 * taking a whole connection buffer by itself.
 */
#define VSOCK_MAX_PAYLOAD (64u * 1024u)

/** Socket type of a stream connection, the only type this device offers. */
#define VSOCK_TYPE_STREAM 1u
/** Socket type of a seqpacket connection; refused (VIRTIO_VSOCK_F_SEQPACKET is not offered). */
#define VSOCK_TYPE_SEQPACKET 2u

/** Packet operations (the header's op field). */
enum vsock_op {
    VSOCK_OP_INVALID = 0,        /**< Never valid on the wire. */
    VSOCK_OP_REQUEST = 1,        /**< Open a connection to the destination port. */
    VSOCK_OP_RESPONSE = 2,       /**< The destination accepted a REQUEST. */
    VSOCK_OP_RST = 3,            /**< The connection is gone (or never existed); never answered. */
    VSOCK_OP_SHUTDOWN = 4,       /**< The sender stops receiving and/or sending (flags). */
    VSOCK_OP_RW = 5,             /**< Stream data: the only op with a payload. */
    VSOCK_OP_CREDIT_UPDATE = 6,  /**< Only the header's credit fields carry news. */
    VSOCK_OP_CREDIT_REQUEST = 7, /**< The peer asks for a CREDIT_UPDATE. */
};

/** SHUTDOWN flag: the sender will receive no more data. */
#define VSOCK_SHUTDOWN_RCV 1u
/** SHUTDOWN flag: the sender will send no more data (its EOF). */
#define VSOCK_SHUTDOWN_SEND 2u
/** Both SHUTDOWN flags: the sender is done with the connection. */
#define VSOCK_SHUTDOWN_BOTH (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/** Event ID of struct virtio_vsock_event: every connection of the transport is gone. */
#define VSOCK_EVENT_TRANSPORT_RESET 0u
/** Bytes of struct virtio_vsock_event (le32 id). */
#define VSOCK_EVENT_SIZE 4u

/** A header decoded into host byte order; only ever built from a private copy. */
struct vsock_hdr {
    uint64_t src_cid;   /**< Sender's CID. */
    uint64_t dst_cid;   /**< Receiver's CID. */
    uint32_t src_port;  /**< Sender's port. */
    uint32_t dst_port;  /**< Receiver's port. */
    uint32_t len;       /**< Payload bytes following the header. */
    uint16_t type;      /**< VSOCK_TYPE_STREAM or VSOCK_TYPE_SEQPACKET. */
    uint16_t op;        /**< An enum vsock_op value (unchecked until vsock_hdr_check()). */
    uint32_t flags;     /**< SHUTDOWN flags; zero for other stream ops. */
    uint32_t buf_alloc; /**< Sender's receive buffer for this connection, bytes. */
    uint32_t fwd_cnt;   /**< Bytes the sender has consumed from that buffer, mod 2^32. */
};

/**
 * Why a packet or a connection was given up. The counters of struct vsock_stats are
 * indexed by these; the first group are faults of a guest packet.
 */
enum vsock_reason {
    VSOCK_R_SHORT = 0,   /**< The tx chain is shorter than a header (dropped). */
    VSOCK_R_SRC_CID,     /**< src_cid is not the guest's CID (dropped: not ours to answer). */
    VSOCK_R_DST_CID,     /**< dst_cid is not the host's (dropped: nothing else is reachable). */
    VSOCK_R_TYPE,        /**< Not a stream packet (reset). */
    VSOCK_R_OP,          /**< Unknown op (reset). */
    VSOCK_R_LEN,         /**< len disagrees with the payload present, is above the bound, or is
                              non-zero on an op without payload (reset). */
    VSOCK_R_CREDIT,      /**< RW beyond the credit we advertised (the connection is reset). */
    VSOCK_R_NO_CONN,     /**< A packet for no connection we know (reset). */
    VSOCK_R_STATE,       /**< An op the connection's state does not allow (reset). */
    VSOCK_R_CHAIN,       /**< A chain with more segments than we keep (dropped, tx or rx). */
    VSOCK_R_RX_SMALL,    /**< An rx buffer smaller than a header (returned empty). */
    VSOCK_R_EVENT_SMALL, /**< An event buffer smaller than an event (returned empty). */
    VSOCK_R_RST_QUEUE,   /**< The queue of RSTs for unknown connections was full (RST lost). */
    VSOCK_R_FULL,        /**< --max-connections reached (connection refused). */
    VSOCK_R_LINE,        /**< A host client's CONNECT line was malformed or not finished. */
    VSOCK_R_TIMEOUT,     /**< A handshake or a final flush took too long. */
    VSOCK_R_NOMEM,       /**< No memory for a connection buffer (connection reset). */
    VSOCK_NR_REASONS     /**< Number of reasons. */
};

/** What to do with a guest packet after vsock_hdr_check(). */
enum vsock_verdict {
    VSOCK_ACCEPT = 0, /**< Well formed: hand it to its connection. */
    VSOCK_DROP,       /**< Ignore it and count it; no reply (we could not address one). */
    VSOCK_RESET,      /**< Count it and answer RST (unless it is an RST itself). */
};

/**
 * Decode a header from a private copy of the wire bytes.
 * @param raw the 44 bytes, little-endian; the caller's own memory, not guest memory.
 * @param h receives the fields in host byte order.
 */
void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);

/**
 * Encode a header into wire form.
 * @param h the fields.
 * @param raw receives the 44 little-endian bytes.
 */
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/**
 * Check a guest packet against the rules of the transport, in this order: the CIDs
 * (a packet that does not come from our guest to the host is dropped), then the type,
 * the op, and the length (each a reset).
 * @param h the decoded header.
 * @param guest_cid the guest's CID (configuration space).
 * @param payload_bytes bytes the chain actually holds after the header.
 * @param why receives the reason when the verdict is not VSOCK_ACCEPT.
 * @return the verdict.
 */
enum vsock_verdict vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid,
                                   uint64_t payload_bytes, enum vsock_reason *why);

/**
 * Short name of a reason, for the counter lines of the log.
 * @param r the reason.
 * @return a static string; "?" for a value out of range.
 */
const char *vsock_reason_name(enum vsock_reason r);

/**
 * Copy bytes out of a segment list, starting @p skip bytes in (the header out of a tx
 * chain, whatever its layout).
 * @param iov the segments.
 * @param n entries of @p iov.
 * @param skip bytes to pass over first.
 * @param dst destination.
 * @param len bytes to copy.
 * @return 0; -EFAULT when the segments hold fewer than @p skip + @p len bytes (nothing
 *         beyond them is touched, @p dst may be partly written).
 */
int vsock_iov_gather(const struct vq_iovec *iov, unsigned n, uint64_t skip, void *dst,
                     uint64_t len);

/**
 * Copy bytes into a segment list, starting @p skip bytes in (a header into an rx chain).
 * @param iov the segments.
 * @param n entries of @p iov.
 * @param skip bytes to pass over first.
 * @param src source.
 * @param len bytes to copy.
 * @return 0; -EFAULT when the segments hold fewer than @p skip + @p len bytes.
 */
int vsock_iov_scatter(const struct vq_iovec *iov, unsigned n, uint64_t skip, const void *src,
                      uint64_t len);

/**
 * Describe a window of a segment list as a segment list of its own: the payload of a
 * packet is the chain less its header, and at most as much as may be read or written.
 * @param iov the segments.
 * @param n entries of @p iov.
 * @param skip bytes to pass over first.
 * @param max most bytes the window may cover.
 * @param out receives the window's segments (never a zero-length one).
 * @param out_max entries of @p out; a window needing more is cut short.
 * @param bytes receives the bytes the window covers (at most @p max).
 * @return entries filled in @p out.
 */
unsigned vsock_iov_window(const struct vq_iovec *iov, unsigned n, uint64_t skip, uint64_t max,
                          struct vq_iovec *out, unsigned out_max, uint64_t *bytes);

#endif
