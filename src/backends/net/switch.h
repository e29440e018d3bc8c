/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file switch.h
 * @brief bulkhead-net's virtual switch: its ports (VM ports over vhost-user, tap
 *        uplinks), the forwarding between them, and the steps of the one poll() loop.
 *
 * A **VM port** is one vhost-user-net connection with net_switch_opts::queue_pairs queue
 * pairs: queue 2k is pair k's receiveq (device-writable buffers), 2k + 1 its transmitq
 * (virtio's numbering). The frontend starts the pairs it wants and enables those the
 * driver uses (SET_VRING_ENABLE); only started, enabled rings are served. It either
 * listens on a unix socket (one frontend at a time; the next is accepted when it leaves)
 * or serves one inherited connection. A **tap port** is a host tap interface (tap.h).
 *
 * **Multi-queue.** Every transmitq is served on its own kicks. A packet for a VM goes to
 * one of its running receiveqs, chosen by the packet's flow (net_flow_hash()), so one
 * flow stays in order on one queue; each receiveq has its own chains taken for later,
 * its own notification batching and its own waiting sources. A disabled receiveq is not
 * chosen and not touched: the chains taken from it before stay ours until it is enabled
 * again (they are used first then) or stopped (they are returned empty).
 *
 * **Forwarding.** Switch mode learns source addresses (fdb.h): known unicast goes to
 * its port, the rest is flooded to every other port; p2p mode sends every frame to the
 * other of exactly two ports. A frame never goes back to the port it came from. A
 * packet keeps its virtio-net header end to end (a 64 KiB TSO send arrives as one GSO
 * packet) when the destination negotiated the matching GUEST_ features; otherwise the
 * checksum is completed or the packet segmented in software (offload.h). Taps take
 * every offload.
 *
 * **Backpressure.** A unicast frame whose destination VM has no receive buffers is not
 * dropped: its source waits, for the one receiveq the frame was meant for. A VM source
 * keeps the transmit chain (its head and its transmitq; the chain is walked and checked
 * again when retried) and takes nothing more from any of its transmitqs;
 * a tap source keeps the packet and stops reading the tap. That receiveq's kicks are
 * armed meanwhile, and the source resumes when buffers come, or the receiveq stops or is
 * disabled (the frame then goes to another queue of the port, or is dropped). After
 * NET_PENDING_TIMEOUT_NS the frame is dropped and the receiveq marked *stalled*: frames
 * for it are then dropped at once while it has no buffers, so a VM that never posts any
 * cannot hold up the others for more than that. Flooded frames never wait: a port
 * without room misses them.
 *
 * **Batching.** Every available transmit chain is taken per kick (up to NET_TX_BUDGET
 * per round, then the loop comes back without a new kick), and each ring gets at most
 * one used-buffer notification per batch, after one publish of its used entries. With
 * a polling window (like bulkhead-blk's --poll) the rings are watched for a while after
 * work with kicks left off.
 *
 * **Memory.** Nothing from guest memory is kept across calls: chains are remembered by
 * their head and walked again, so a new memory table (which unmaps the old one) never
 * leaves a stale pointer behind.
 *
 * The program's loop, also what the tests run:
 * @code
 * net_switch_init(&sw, &opts);  net_switch_add_vm_fd(&sw, fd, "fd 3"); ...
 * for (;;) {
 *     n = net_switch_pollfds(&sw, pfd, max);
 *     poll(pfd, n, busy ? 0 : net_switch_timeout_ms(&sw));
 *     net_switch_dispatch(&sw, pfd, n);
 *     busy = net_switch_poll(&sw);
 *     if (net_switch_finished(&sw))
 *         break;
 * }
 * net_switch_destroy(&sw);
 * @endcode
 * Everything runs on the thread that runs this loop.
 */
#ifndef BULKHEAD_BACKENDS_NET_SWITCH_H
#define BULKHEAD_BACKENDS_NET_SWITCH_H

#include "backends/net/fdb.h"
#include "backends/net/offload.h"
#include "backends/net/virtio_net.h"
#include "vhost/backend.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/** Most ports of one switch (one bit each in a 64-bit mask, and FDB_MAX_PORTS). */
#define NET_MAX_PORTS 64u
/** Most queue pairs of a VM port (--queue-pairs): every ring of the library's. */
#define NET_MAX_QUEUE_PAIRS (VHOST_BE_MAX_QUEUES / 2u)
/** poll() entries a port may need: a VM port's socket and a kick eventfd per ring. */
#define NET_PORT_MAX_POLLFDS VHOST_BE_MAX_POLLFDS
/** poll() entries net_switch_pollfds() may fill. */
#define NET_MAX_POLLFDS (NET_MAX_PORTS * NET_PORT_MAX_POLLFDS)
/** Default --poll, microseconds (as bulkhead-blk). */
#define NET_DEFAULT_POLL_US 50u
/** Largest --poll, microseconds. */
#define NET_MAX_POLL_US 1000u
/** Default --queue-size: the Queue Size per-ring arrays are made for at first. */
#define NET_DEFAULT_QUEUE_SIZE 256u
/** How long a unicast frame may wait for the destination's receive buffers: 1 s. */
#define NET_PENDING_TIMEOUT_NS 1000000000ull
/** Transmit chains taken from one ring before the loop goes round (fairness). */
#define NET_TX_BUDGET 256u
/** Packets read from one tap before the loop goes round. */
#define NET_TAP_BUDGET 64u
/** Bytes of a tap's read buffer: header, the largest frame, and room to see a longer one. */
#define NET_TAP_BUF_SIZE (VIRTIO_NET_HDR_LEN + NET_FRAME_MAX + 64u)

/** How frames are forwarded. */
enum net_mode {
    NET_MODE_SWITCH, /**< Learning switch (fdb.h). */
    NET_MODE_P2P,    /**< Exactly two ports; every frame to the other one. */
};

/** What a port is. */
enum net_port_kind {
    NET_PORT_VM,  /**< A vhost-user-net connection. */
    NET_PORT_TAP, /**< A host tap interface. */
};

/**
 * Counters of one port. "in" is what the port sent into the switch (a VM's transmitq,
 * a tap's reads), "out" what the switch delivered to it (a VM's receiveq, tap writes).
 */
struct net_port_stats {
    uint64_t in_packets;  /**< Frames accepted from the port. */
    uint64_t in_bytes;    /**< Their bytes, virtio-net header excluded. */
    uint64_t out_packets; /**< Frames (segments count one each) delivered to the port. */
    uint64_t out_bytes;   /**< Their bytes, header excluded. */
    uint64_t tx_kicks;    /**< Kicks of the VM's transmitqs (all pairs). */
    uint64_t rx_kicks;    /**< Kicks of its receiveqs (buffers added while armed). */
    uint64_t tx_notifies; /**< Used-buffer notifications sent on its transmitqs. */
    uint64_t rx_notifies; /**< Used-buffer notifications sent on its receiveqs. */
    uint64_t csummed;     /**< Packets to this port whose checksum was completed here. */
    uint64_t segmented;   /**< GSO packets to this port cut into segments here. */
    uint64_t waits;       /**< Times a unicast frame had to wait for this port's buffers. */
    uint64_t drops[NET_DROP_COUNT]; /**< Dropped frames by reason, counted where it arose. */
};

/** A receive chain taken from the ring but not used yet, remembered by its head. */
struct net_rx_slot {
    uint16_t head; /**< Its head index. */
    uint32_t room; /**< Writable bytes when it was walked (checked again when used). */
};

/** Counters of one ring of a multi-queue port (the port's own count all of its rings). */
struct net_ring_stats {
    uint64_t kicks;    /**< Kicks that arrived on it. */
    uint64_t notifies; /**< Used-buffer notifications sent on it. */
};

/** A VM port's state for one receiveq. */
struct net_rxq {
    struct net_rx_slot *stash; /**< Chains taken from this ring and not used yet. */
    unsigned stash_n;          /**< Entries in @c stash. */
    unsigned stash_size;       /**< Room in @c stash: this ring's Queue Size. */
    struct net_ring_stats st;  /**< Its kicks and notifications. */
};

struct net_switch;

/** One port. Members are private to the switch; tests read @c st, @c rxq and @c txq_st. */
struct net_port {
    struct net_switch *sw;    /**< The switch it belongs to. */
    unsigned index;           /**< Its number: position on the command line. */
    enum net_port_kind kind;  /**< VM or tap. */
    char name[112];           /**< For log lines: the socket path, "fd N" or the tap name. */
    struct net_port_stats st; /**< Counters. */

    /* VM ports. */
    struct vhost_be_device dev; /**< Handed to vhost_be_init(); opaque is this port. */
    struct vhost_be be;         /**< The connection while @c connected. */
    bool connected;             /**< A frontend is being served. */
    int listen_fd;              /**< Listening socket (--port), or -1 (--fd). */
    bool closed;                /**< An inherited connection ended: the port is gone. */
    bool failed;                /**< ... and it ended with a protocol error. */
    unsigned nr_pairs;          /**< Queue pairs of its device (1 for a tap). */
    struct vq_iovec *tx_iov;    /**< Segments of a walked transmit chain. */
    struct vq_iovec *rx_iov;    /**< Segments of a walked receive chain. */
    unsigned iov_size;          /**< Entries of each: at least the largest Queue Size. */
    struct net_rxq rxq[NET_MAX_QUEUE_PAIRS];           /**< Pair k's receiveq. */
    struct net_ring_stats txq_st[NET_MAX_QUEUE_PAIRS]; /**< Pair k's transmitq counters. */
    uint16_t tx_head;    /**< The waiting transmit chain, when @c pending. */
    unsigned tx_ring;    /**< Its transmitq (ring index), when @c pending. */
    uint64_t tx_more;    /**< Transmitqs (bit per pair) that had more than a budget's worth. */
    uint64_t rx_touched; /**< Receiveqs (bit per pair) with entries published since the last
                              notification. */

    /* Tap ports. */
    int tap_fd;       /**< The tap, or -1 once it failed. */
    uint8_t *tap_buf; /**< NET_TAP_BUF_SIZE bytes: the packet read, kept while it waits. */
    uint32_t tap_len; /**< Bytes in @c tap_buf while @c pending. */

    /* As a source: a unicast frame waiting for its destination. */
    bool pending;          /**< A frame waits (tx_head or tap_buf). */
    unsigned blocked_on;   /**< The destination it waits for. */
    unsigned blocked_ring; /**< ... and the destination's receiveq (ring index) it needs. */
    uint64_t pending_ns;   /**< When it first had to wait. */
    uint32_t pending_len;  /**< Its frame's length, counted as "in" if it is given up. */
    /* As a destination, a bit per pair's receiveq. */
    uint64_t rx_stalled; /**< A frame for it timed out: no more waiting until it has room. */
    uint64_t rx_armed;   /**< Its receive kicks are on because a source waits. */

    unsigned pfd_first; /**< Where its entries are in the last net_switch_pollfds() array. */
    unsigned pfd_n;     /**< How many. */
};

/** The choices of the command line. */
struct net_switch_opts {
    enum net_mode mode;          /**< Switch or p2p. */
    unsigned poll_us;            /**< Polling window after work, microseconds; 0: never. */
    unsigned queue_size;         /**< Queue Size the per-ring arrays are first made for. */
    unsigned queue_pairs;        /**< Queue pairs of every VM port's device; 0: one. */
    uint64_t pending_timeout_ns; /**< How long a unicast frame may wait; 0: the default. */
    uint64_t fdb_age_ns;         /**< MAC entry lifetime; 0: FDB_DEFAULT_AGE_NS. */
};

/** The switch. Members are private; tests read ports' counters. */
struct net_switch {
    struct net_switch_opts opts;           /**< As given (defaults filled in). */
    struct net_port *ports[NET_MAX_PORTS]; /**< nr_ports are used. */
    unsigned nr_ports;                     /**< Ports added. */
    struct fdb *fdb;                       /**< MAC table (switch mode). */
    uint8_t *lin;                          /**< A frame copied out of guest memory. */
    bool lin_valid;                        /**< @c lin holds the frame being forwarded. */
    uint8_t *out;                          /**< A checksummed copy or one segment. */
    bool need_service;                     /**< Waiting sources must be looked at. */
    uint64_t flow_key;                     /**< Key of net_flow_hash(): random per run. */
    bool polling;                          /**< In a polling window. */
    bool poll_work;                        /**< The last dispatch did work. */
    uint64_t poll_last_ns;                 /**< When polling last found work. */
    uint64_t now_ns;                       /**< Time of the current step. */
};

/**
 * Set up an empty switch.
 * @param sw the switch.
 * @param opts mode and tuning (copied).
 * @return 0; -ENOMEM.
 */
int net_switch_init(struct net_switch *sw, const struct net_switch_opts *opts);

/**
 * End every connection (their rings stop, waiting chains are completed), close every
 * descriptor the switch owns (listening sockets, connections, taps) and free it all.
 * @param sw the switch.
 */
void net_switch_destroy(struct net_switch *sw);

/**
 * Add a VM port that accepts frontends on a listening unix socket.
 * @param sw the switch.
 * @param listen_fd listening socket, made non-blocking here; owned from now on.
 * @param name for log lines (the socket path).
 * @return the port number; -ENOSPC (NET_MAX_PORTS), -ENOMEM.
 */
int net_switch_add_vm_listen(struct net_switch *sw, int listen_fd, const char *name);

/**
 * Add a VM port on an already connected vhost-user socket; the port is gone when the
 * connection ends.
 * @param sw the switch.
 * @param fd the connection; owned from now on.
 * @param name for log lines.
 * @return the port number; -ENOSPC, -ENOMEM.
 */
int net_switch_add_vm_fd(struct net_switch *sw, int fd, const char *name);

/**
 * Add a tap port. Any descriptor with a tap's packet semantics works (one read, one
 * packet with its 12-byte header; one write, one packet), which tests use.
 * @param sw the switch.
 * @param fd the tap (tap_open()), non-blocking; owned from now on.
 * @param name for log lines.
 * @return the port number; -ENOSPC, -ENOMEM.
 */
int net_switch_add_tap(struct net_switch *sw, int fd, const char *name);

/**
 * Fill a poll array with every descriptor the switch waits on: per VM port its
 * listening socket, or its connection's socket and kick eventfds (vhost_be_pollfds());
 * per tap its descriptor, unless a packet from it waits.
 * @param sw the switch.
 * @param pfd receives the entries.
 * @param max room in @p pfd; NET_MAX_POLLFDS is always enough.
 * @return entries filled.
 */
unsigned net_switch_pollfds(struct net_switch *sw, struct pollfd *pfd, unsigned max);

/**
 * Act on poll() results for the array net_switch_pollfds() filled: accept frontends,
 * handle kicks and control messages (a connection that ends releases its port),
 * read taps; then resume waiting sources that can go on.
 * @param sw the switch.
 * @param pfd the array, as poll() left it.
 * @param n its entries.
 */
void net_switch_dispatch(struct net_switch *sw, const struct pollfd *pfd, unsigned n);

/**
 * After each dispatch: continue transmitqs that had more than a budget, resume or time
 * out waiting sources, and run the polling window (rings watched with kicks off for
 * poll_us after the last work, then kicks re-armed).
 * @param sw the switch.
 * @return true when the next poll() must not sleep.
 */
bool net_switch_poll(struct net_switch *sw);

/**
 * How long the next poll() may sleep: until the oldest waiting frame times out.
 * @param sw the switch.
 * @return milliseconds, or -1 when nothing waits.
 */
int net_switch_timeout_ms(struct net_switch *sw);

/**
 * Whether the program should end: it serves inherited connections only, and every one
 * of them has ended (a switch with a listening socket, or with taps only, never ends).
 * @param sw the switch.
 * @return true to exit.
 */
bool net_switch_finished(const struct net_switch *sw);

/**
 * Whether an inherited connection ended with a protocol error (exit status 1).
 * @param sw the switch.
 * @return true when one did.
 */
bool net_switch_failed(const struct net_switch *sw);

/**
 * Log every port's counters at info level, one line per port.
 * @param sw the switch.
 */
void net_switch_log_stats(const struct net_switch *sw);

/**
 * Forward one checked packet from @p src: learning and lookup (switch mode), delivery
 * with software offloads where a destination needs them, drops counted. The entry point
 * of both kinds of source (port.h).
 * @param sw the switch.
 * @param src the source port.
 * @param hdr the packet's checked header.
 * @param iov the frame's bytes (after the header): guest memory, or private memory
 *        when @p private_frame.
 * @param niov entries of @p iov.
 * @param len the frame's length.
 * @param private_frame @p iov is one segment of private memory (a tap's buffer).
 * @return 0 (delivered or dropped); -EAGAIN when the frame is unicast to a VM without
 *         receive buffers: the caller keeps it (src->blocked_on says for whom) and
 *         offers it again later.
 */
int net_switch_forward(struct net_switch *sw, struct net_port *src,
                       const struct virtio_net_hdr *hdr, const struct vq_iovec *iov, unsigned niov,
                       uint32_t len, bool private_frame);

#endif
