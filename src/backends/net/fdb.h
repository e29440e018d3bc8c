/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file fdb.h
 * @brief bulkhead-net's forwarding database: which port each station (source MAC)
 *        was last seen on, and the forwarding decision of a learning switch.
 *
 * Pure logic: no I/O, no clock (the caller passes the time), no allocation (the table
 * is one fixed block, FDB_SETS x FDB_WAYS entries). Guests choose their source MACs,
 * so everything is bounded: a set-associative table indexed by a keyed hash (the key
 * chosen at start, so a guest cannot aim at one set), the oldest entry of a full set
 * evicted, and at most FDB_PORT_LIMIT stations per port, so one port spraying made-up
 * MACs cannot push out every other port's stations (which would turn their unicast
 * into floods that the spraying port receives).
 *
 * Entries age out after the table's age (300 s by default) without a frame from that
 * station; a station seen on another port moves there at once. Multicast, broadcast
 * and all-zero source addresses are never learned.
 */
#ifndef BULKHEAD_BACKENDS_NET_FDB_H
#define BULKHEAD_BACKENDS_NET_FDB_H

#include <stdbool.h>
#include <stdint.h>

/** Sets of the table (a power of two). */
#define FDB_SETS 4096u
/** Entries per set. */
#define FDB_WAYS 4u
/** Ports the table can tell apart (port numbers 0 to FDB_MAX_PORTS - 1). */
#define FDB_MAX_PORTS 64u
/** Stations one port may have in the table; a port at the limit learns nothing new. */
#define FDB_PORT_LIMIT 1024u
/** Default age of an entry: 300 s, the customary bridge ageing time (IEEE 802.1D). */
#define FDB_DEFAULT_AGE_NS (300ull * 1000000000ull)
/** Marks an unused entry. */
#define FDB_NO_PORT 0xffffu

/** One station. */
struct fdb_entry {
    uint8_t mac[6];   /**< The station's address. */
    uint16_t port;    /**< Where it was last seen, or FDB_NO_PORT. */
    uint64_t seen_ns; /**< When it was last seen. */
};

/** The table. Members are private; fdb_count() reads the per-port totals. */
struct fdb {
    struct fdb_entry e[FDB_SETS][FDB_WAYS]; /**< The entries, FDB_WAYS per set. */
    uint64_t key;                           /**< Hash key, secret from the guests. */
    uint64_t age_ns;                        /**< Lifetime of an entry without traffic. */
    uint64_t last_sweep_ns;                 /**< When expired entries were last removed. */
    unsigned per_port[FDB_MAX_PORTS];       /**< Entries (live or expired) per port. */
};

/** Outcome of fdb_forward(). */
enum fdb_verdict {
    FDB_FLOOD,   /**< Unknown unicast, broadcast or multicast: every other port. */
    FDB_UNICAST, /**< Known station on another port. */
    FDB_LOCAL,   /**< Known station behind the source port itself: filter the frame. */
};

/**
 * Empty the table.
 * @param t the table.
 * @param key hash key (random, so guests cannot predict sets).
 * @param age_ns entry lifetime; 0 for FDB_DEFAULT_AGE_NS.
 */
void fdb_init(struct fdb *t, uint64_t key, uint64_t age_ns);

/**
 * Record that @p mac sent a frame on @p port.
 * @param t the table.
 * @param mac the source address.
 * @param port the port it came from, below FDB_MAX_PORTS.
 * @param now_ns the current time.
 * @return 1 when the station is new or moved to @p port; 0 when only refreshed;
 *         -EINVAL for a multicast or zero address or a port out of range; -ENOSPC when
 *         @p port already has FDB_PORT_LIMIT stations.
 */
int fdb_learn(struct fdb *t, const uint8_t mac[6], unsigned port, uint64_t now_ns);

/**
 * Where a station is.
 * @param t the table.
 * @param mac the address.
 * @param now_ns the current time: expired entries are not found.
 * @return the port; -ENOENT when unknown (or expired).
 */
int fdb_lookup(struct fdb *t, const uint8_t mac[6], uint64_t now_ns);

/**
 * Forget every station of a port (its frontend went away).
 * @param t the table.
 * @param port the port.
 */
void fdb_forget_port(struct fdb *t, unsigned port);

/**
 * Entries the table holds for a port, expired ones not yet removed included.
 * @param t the table.
 * @param port the port.
 * @return the count; 0 for a port out of range.
 */
unsigned fdb_count(const struct fdb *t, unsigned port);

/**
 * The learning switch's decision for one frame: learn its source address on @p src,
 * then look its destination up.
 * @param t the table.
 * @param src the port the frame came from.
 * @param macs the frame's first 12 bytes (destination, then source address), private.
 * @param now_ns the current time.
 * @param dst receives the destination port for FDB_UNICAST.
 * @return the verdict.
 */
enum fdb_verdict fdb_forward(struct fdb *t, unsigned src, const uint8_t macs[12], uint64_t now_ns,
                             unsigned *dst);

/**
 * Whether an address is a group (multicast or broadcast) address.
 * @param mac the address.
 * @return true when its I/G bit is set.
 */
static inline bool fdb_is_group(const uint8_t mac[6])
{
    return (mac[0] & 1u) != 0;
}

#endif
