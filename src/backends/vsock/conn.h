/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file conn.h
 * @brief bulkhead-vsock's connections: the table, each connection's state machine,
 *        credit-based flow control, and the host side (unix sockets).
 *
 * The table knows nothing of virtqueues. The device hands it each guest packet
 * (vsock_conns_guest_packet(), header decoded from a private copy, payload as
 * segments) and asks it to fill an rx buffer with the next packet for the guest
 * (vsock_conns_fill(): a pull, so a packet is only built when the guest gave room for
 * it). The host side goes through the caller's poll() loop: vsock_conns_pollfds(),
 * vsock_conns_poll_events(), vsock_conns_expire().
 *
 * **Host-side convention** (that of Firecracker and cloud-hypervisor), where PATH is
 * the table's uds_path:
 *  - a guest connecting to host port P gets a connection to the unix socket PATH_P
 *    (PATH, "_", P in decimal), answered RESPONSE, or RST when nothing accepts there;
 *  - a host program connects to the unix socket PATH itself and writes "CONNECT P\n";
 *    the table picks a free host port H, sends the guest REQUEST H -> P, and on the
 *    guest's RESPONSE writes "OK H\n" back, after which bytes flow; the guest's RST
 *    closes the program's socket.
 *
 * **Flow control** (virtio 1.2, 5.10.6.3). Towards the guest, a connection never sends
 * more than the credit the guest's last header allowed (vsock_credit()); it reads its
 * host socket only while there is credit, so a guest that does not read only stops its
 * own connection. From the guest, data the host socket does not take at once waits in
 * the connection's buffer, which is never larger than the buf_alloc we advertise: a
 * guest that sends beyond its credit gets RST. A host program that never reads
 * therefore fills its own connection's buffer, after which the guest has no credit
 * for it; nothing else is held up.
 *
 * **Fairness.** Connections with something to send wait in one round-robin list; each
 * rx buffer goes to the next one in turn, so one busy connection cannot take every
 * buffer the guest gives.
 */
#ifndef BULKHEAD_BACKENDS_VSOCK_CONN_H
#define BULKHEAD_BACKENDS_VSOCK_CONN_H

#include "backends/vsock/hdr.h"
#include "virtio/virtqueue.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/** Default --buffer-size: the buf_alloc each connection advertises, 256 KiB. */
#define VSOCK_DEFAULT_BUF_ALLOC (256u * 1024u)
/** Smallest --buffer-size: below one page the header traffic outweighs the data. */
#define VSOCK_MIN_BUF_ALLOC 4096u
/** Largest --buffer-size; each connection may hold this much for a slow host peer. */
#define VSOCK_MAX_BUF_ALLOC (64u * 1024u * 1024u)
/** Default --max-connections, host clients still writing their CONNECT line included. */
#define VSOCK_DEFAULT_MAX_CONNS 256u
/** Largest --max-connections; each is a descriptor of this process. */
#define VSOCK_MAX_CONNS 4096u
/** Longest CONNECT line, newline included; longer is malformed. */
#define VSOCK_LINE_MAX 32u
/** How long a host client may take to write its line, and the guest to answer it. */
#define VSOCK_HANDSHAKE_NS 5000000000ull
/**
 * How long a connection the guest has closed may take to hand its last buffered bytes
 * to a slow host peer. Less than the 8 s a Linux guest waits for our RST.
 */
#define VSOCK_LINGER_NS 5000000000ull
/** First host port handed to host-initiated connections; lower ones look privileged. */
#define VSOCK_FIRST_LOCAL_PORT 1024u
/** RSTs for packets of no connection that may wait for an rx buffer; more are dropped. */
#define VSOCK_RST_QUEUE 64u

/**
 * Credit a peer has left: its buffer less what we sent that it has not consumed yet.
 * The counters wrap at 2^32 (the spec's arithmetic). A peer whose fwd_cnt runs ahead of
 * what we sent, or whose buffer shrank below what is in flight, gets no credit: that
 * direction is the safe one.
 * @param peer_buf_alloc the peer's last buf_alloc.
 * @param peer_fwd_cnt the peer's last fwd_cnt.
 * @param tx_cnt payload bytes we sent it so far, mod 2^32.
 * @return bytes we may send now.
 */
static inline uint32_t vsock_credit(uint32_t peer_buf_alloc, uint32_t peer_fwd_cnt, uint32_t tx_cnt)
{
    uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
}

/**
 * Whether to tell the guest about space we freed. The guest believes what we forwarded
 * since our last header is still taken; once the free space it believes in drops below
 * half the buffer (at most one packet's worth), it may be about to stall, so the
 * update is due. Earlier updates would cost a packet per packet.
 * @param buf_alloc our buffer.
 * @param fwd_cnt bytes we forwarded to the host, mod 2^32.
 * @param last_adv_fwd fwd_cnt in the last header we sent.
 * @param buffered bytes we hold that the host has not taken.
 * @return true when a CREDIT_UPDATE should go out.
 */
static inline bool vsock_credit_update_due(uint32_t buf_alloc, uint32_t fwd_cnt,
                                           uint32_t last_adv_fwd, uint32_t buffered)
{
    uint32_t freed = fwd_cnt - last_adv_fwd;
    if (freed == 0)
        return false;
    uint64_t taken = (uint64_t)buffered + freed;
    uint64_t seen_free = taken >= buf_alloc ? 0 : buf_alloc - taken;
    uint32_t low = buf_alloc / 2 < VSOCK_MAX_PAYLOAD ? buf_alloc / 2 : VSOCK_MAX_PAYLOAD;
    return seen_free < low;
}

/** Where a connection is in its life. */
enum vsock_conn_state {
    VSOCK_CONN_FREE = 0, /**< The slot is unused. */
    VSOCK_CONN_LINE,     /**< A host client was accepted; its CONNECT line is awaited. */
    VSOCK_CONN_REQUEST,  /**< Host-initiated: REQUEST queued or sent, the guest's answer awaited. */
    VSOCK_CONN_CONNECTING,  /**< Guest-initiated: connect() to "PATH_P" (the uds_path, "_" and P in
                               decimal) in progress. */
    VSOCK_CONN_ESTABLISHED, /**< Data flows (one direction may be shut down). */
    VSOCK_CONN_CLOSING,     /**< The host socket is closed; an RST is owed to the guest. */
};

/** Guest-to-host bytes the host socket has not taken yet: a ring, grown on demand. */
struct vsock_obuf {
    uint8_t *data; /**< Storage, NULL while empty. */
    uint32_t cap;  /**< Bytes of @c data; never above the table's buf_alloc. */
    uint32_t head; /**< Offset of the oldest byte. */
    uint32_t len;  /**< Bytes held. */
};

/** One connection. Members are private to conn.c; tests read them. */
struct vsock_conn {
    enum vsock_conn_state state; /**< Where it is. */
    int fd;                      /**< The host socket (non-blocking), or -1. */
    uint32_t gen;                /**< Changes at every reuse of the slot (poll bookkeeping). */
    uint32_t host_port;          /**< Port on the host side (CID 2). */
    uint32_t guest_port;         /**< Port on the guest side. */
    uint64_t deadline_ns;        /**< When the handshake or the final flush gives up; 0: none. */
    bool hashed;                 /**< In the lookup table (the ports are set). */
    bool established_once;       /**< Counted as opened; counted as closed when freed. */
    bool request_sent;           /**< Host-initiated: the guest has the REQUEST. */
    bool send_response;          /**< Guest-initiated: RESPONSE owed. */
    bool credit_requested;       /**< The guest sent CREDIT_REQUEST: an update is owed. */
    bool readable;               /**< The host socket has bytes or EOF for us. */
    bool host_eof;               /**< The host peer sent its last byte (read 0). */
    bool host_hup;               /**< The host socket hung up: it is not polled any more. */
    bool host_wr_shut;           /**< We shut down writing to the host (guest's SEND). */
    uint32_t guest_shut;         /**< SHUTDOWN flags the guest sent. */
    uint32_t local_shut;         /**< SHUTDOWN flags we sent. */
    uint32_t fwd_cnt;            /**< Guest bytes we handed to the host socket, mod 2^32. */
    uint32_t last_adv_fwd;       /**< fwd_cnt in our last header. */
    uint32_t tx_cnt;             /**< Bytes we sent the guest, mod 2^32. */
    uint32_t peer_buf_alloc;     /**< The guest's buf_alloc, from its last header. */
    uint32_t peer_fwd_cnt;       /**< The guest's fwd_cnt, from its last header. */
    struct vsock_obuf out;       /**< Guest bytes waiting for the host socket. */
    char line[VSOCK_LINE_MAX];   /**< LINE: bytes of the CONNECT line so far. */
    uint32_t line_len;           /**< LINE: valid bytes of @c line. */
    int hash_next;               /**< Next slot in the same hash bucket, or -1. */
    int work_prev;               /**< Previous slot in the work list, or -1. */
    int work_next;               /**< Next slot in the work list, or -1 (also the free list). */
    bool in_work;                /**< In the work list. */
};

/** Counters of the device, logged at exit and on SIGUSR1. */
struct vsock_stats {
    uint64_t pkts_from_guest;  /**< Packets taken from the tx queue, malformed ones included. */
    uint64_t bytes_from_guest; /**< Payload bytes accepted from the guest. */
    uint64_t pkts_to_guest;    /**< Packets put in rx buffers. */
    uint64_t bytes_to_guest;   /**< Payload bytes put in rx buffers. */
    uint64_t opened;           /**< Connections that reached ESTABLISHED. */
    uint64_t closed;           /**< Established connections that ended. */
    uint64_t refused;          /**< Connections that never got established (either way). */
    uint64_t events;           /**< TRANSPORT_RESET events delivered. */
    uint64_t drops[VSOCK_NR_REASONS]; /**< Packets, buffers and connections given up, by why. */
};

/** What the table is for. */
struct vsock_conns_opts {
    uint64_t guest_cid;   /**< The guest's CID; packets from any other are dropped. */
    const char *uds_path; /**< Base path of the host's unix sockets; must outlive the table. */
    uint32_t buf_alloc;   /**< buf_alloc advertised per connection (VSOCK_MIN/MAX_BUF_ALLOC). */
    unsigned max_conns;   /**< Connections at once, host clients in LINE included. */
    int listen_fd;        /**< Listening socket on uds_path (non-blocking), or -1; not owned. */
};

/** An RST for a packet that has no connection, waiting for an rx buffer. */
struct vsock_rst {
    uint32_t src_port; /**< Our port: the packet's dst_port. */
    uint32_t dst_port; /**< The guest's port: the packet's src_port. */
    uint16_t type;     /**< The packet's type, echoed so the guest can match it. */
};

/** The connection table. Members are private to conn.c; tests read them. */
struct vsock_conns {
    uint64_t guest_cid;       /**< vsock_conns_opts.guest_cid. */
    const char *uds_path;     /**< vsock_conns_opts.uds_path. */
    uint32_t buf_alloc;       /**< vsock_conns_opts.buf_alloc. */
    unsigned max;             /**< Slots of @c conns. */
    int listen_fd;            /**< vsock_conns_opts.listen_fd. */
    bool accepting;           /**< Host clients are accepted (a guest is there to ask). */
    struct vsock_conn *conns; /**< @c max slots. */
    int *buckets;             /**< Hash buckets: first slot, or -1. */
    unsigned bucket_mask;     /**< Buckets less one (a power of two less one). */
    unsigned used;            /**< Slots in use. */
    int free_head;            /**< First free slot (linked through work_next), or -1. */
    int work_head;            /**< First connection with something for the guest, or -1. */
    int work_tail;            /**< Last one, or -1. */
    struct vsock_rst rsts[VSOCK_RST_QUEUE]; /**< RSTs for packets of no connection. */
    unsigned rst_head;                      /**< Oldest entry of @c rsts. */
    unsigned rst_len;                       /**< Entries of @c rsts. */
    uint32_t next_port;                     /**< Next host port to try for a host client. */
    uint32_t next_gen;                      /**< Source of vsock_conn.gen. */
    uint64_t now;                           /**< Time of the last call that gave one. */
    int *poll_slot;           /**< Per entry of the last vsock_conns_pollfds(): slot, or -1 for the
                                   listener. */
    uint32_t *poll_gen;       /**< Per entry: the slot's gen then. */
    unsigned poll_n;          /**< Entries of the last vsock_conns_pollfds(). */
    struct vsock_stats stats; /**< Counters. */
};

/**
 * Monotonic clock for deadlines.
 * @return nanoseconds.
 */
uint64_t vsock_now_ns(void);

/**
 * Set up an empty table.
 * @param t the table.
 * @param o what it is for.
 * @return 0; -EINVAL for options out of range; -ENOMEM.
 */
int vsock_conns_init(struct vsock_conns *t, const struct vsock_conns_opts *o);

/**
 * Close every connection (as vsock_conns_reset_all()) and free the table. The
 * listening socket stays open: it is the caller's.
 * @param t the table.
 */
void vsock_conns_fini(struct vsock_conns *t);

/**
 * Forget every connection at once, telling the guest nothing: its driver is gone
 * (the frontend left) or is being told by a TRANSPORT_RESET event. Host sockets are
 * closed, so their programs see EOF.
 * @param t the table.
 */
void vsock_conns_reset_all(struct vsock_conns *t);

/**
 * The guest was told TRANSPORT_RESET: forget every connection it knew of, telling it
 * nothing (it drops its own). Host clients it has not heard of yet (still writing
 * their line, or whose REQUEST is not delivered) are kept: they go on as if the reset
 * came before them.
 * @param t the table.
 */
void vsock_conns_transport_reset(struct vsock_conns *t);

/**
 * Accept host clients on the listening socket, or leave them waiting in its backlog
 * (while no guest is there to connect them to).
 * @param t the table.
 * @param on whether to accept.
 */
void vsock_conns_set_accepting(struct vsock_conns *t, bool on);

/**
 * Handle one packet from the guest's tx queue: check it (vsock_hdr_check()), then act
 * on it in its connection's state. Malformed packets are counted and dropped or
 * answered with RST; nothing the guest sends ends the table.
 * @param t the table.
 * @param h the header, decoded from a private copy.
 * @param payload_bytes bytes the chain holds after the header.
 * @param payload those bytes (guest memory: copied or written out, never trusted).
 * @param n entries of @p payload.
 * @param now vsock_now_ns().
 */
void vsock_conns_guest_packet(struct vsock_conns *t, const struct vsock_hdr *h,
                              uint64_t payload_bytes, const struct vq_iovec *payload, unsigned n,
                              uint64_t now);

/**
 * Count something the device gave up (a short chain, an rx buffer too small, ...).
 * @param t the table.
 * @param why the reason.
 */
void vsock_conns_count_drop(struct vsock_conns *t, enum vsock_reason why);

/**
 * Whether a packet waits for the guest (an RST, a connection's control packet, or
 * host bytes the guest has credit for). A hint: vsock_conns_fill() may still find
 * nothing when a host socket turns out to be empty.
 * @param t the table.
 * @return true when an rx buffer would be used.
 */
bool vsock_conns_want_rx(const struct vsock_conns *t);

/**
 * Write the next packet for the guest into an rx buffer: first RSTs for unknown
 * connections, then one packet of the next connection in the round-robin order
 * (its control packet, or bytes read from its host socket straight into the buffer,
 * as many as the buffer, the credit and VSOCK_MAX_PAYLOAD allow).
 * @param t the table.
 * @param iov the buffer's device-writable segments.
 * @param n entries of @p iov.
 * @param bytes their total, at least VSOCK_HDR_SIZE.
 * @param len receives the bytes written (header and payload) when 1 is returned.
 * @return 1 when a packet was written; 0 when there was nothing to send; -EINVAL
 *         for a buffer smaller than a header.
 */
int vsock_conns_fill(struct vsock_conns *t, const struct vq_iovec *iov, unsigned n, uint64_t bytes,
                     uint32_t *len);

/**
 * Entries the table may add to a poll array: the listener and every slot.
 * @param t the table.
 * @return the count.
 */
unsigned vsock_conns_max_pollfds(const struct vsock_conns *t);

/**
 * Add the host sockets to a poll array: the listener while accepting, then every
 * connection that waits for something (POLLIN only when it wants to read, POLLOUT only
 * while bytes wait). The table remembers which entry is which until the next call.
 * @param t the table.
 * @param pfd receives the entries.
 * @param max room in @p pfd; vsock_conns_max_pollfds() is always enough.
 * @return entries filled.
 */
unsigned vsock_conns_pollfds(struct vsock_conns *t, struct pollfd *pfd, unsigned max);

/**
 * Act on poll() results for the entries vsock_conns_pollfds() filled (same array, same
 * order). Entries of connections that changed since (closed, the slot reused) are
 * ignored.
 * @param t the table.
 * @param pfd the entries.
 * @param n their count.
 * @param now vsock_now_ns().
 */
void vsock_conns_poll_events(struct vsock_conns *t, const struct pollfd *pfd, unsigned n,
                             uint64_t now);

/**
 * The nearest deadline of any connection.
 * @param t the table.
 * @return nanoseconds (vsock_now_ns() time), or 0 when none.
 */
uint64_t vsock_conns_next_deadline(const struct vsock_conns *t);

/**
 * Give up what has passed its deadline: a CONNECT line not finished, a guest that did
 * not answer a REQUEST, a host connect() that did not complete, a closed connection's
 * last bytes that the host did not take.
 * @param t the table.
 * @param now vsock_now_ns().
 */
void vsock_conns_expire(struct vsock_conns *t, uint64_t now);

/**
 * Log the counters at info level.
 * @param t the table.
 * @param when what prompted it ("exit", "SIGUSR1").
 */
void vsock_conns_log_stats(const struct vsock_conns *t, const char *when);

/**
 * Parse a host client's CONNECT line (without its newline): "CONNECT " and a decimal
 * port of at most 10 digits that fits 32 bits, nothing else.
 * @param s the line.
 * @param len its bytes.
 * @param port receives the port.
 * @return 0; -EINVAL when malformed.
 */
int vsock_parse_connect(const char *s, uint32_t len, uint32_t *port);

#endif
