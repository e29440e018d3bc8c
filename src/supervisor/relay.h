/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file relay.h
 * @brief A serial link between two VMs: the supervisor copies bytes between two unix
 *        sockets, each a VM's COM2 or a virtio-console port, both of which listen.
 *
 * Nothing is dropped: each direction has a buffer, and while it holds bytes the other end
 * is not written to more and the source is not read, so a VM that stops reading slows
 * the other VM's writes on that line (its UART or port waits), never the supervisor and
 * never another link. When either end goes away (its VM stopped or restarted) both
 * connections are closed; relay_tick() connects again once both sockets are there.
 */
#ifndef BULKHEAD_SUPERVISOR_RELAY_H
#define BULKHEAD_SUPERVISOR_RELAY_H

#include "host/event_loop.h"
#include "supervisor/plan.h"

#include <stddef.h>
#include <stdint.h>

/** Bytes one direction holds while the receiving end does not take them. */
#define RELAY_BUF 16384

/** One end of a link: its connection and the bytes read from it, not yet delivered. */
struct relay_end {
    int fd;                 /**< The connection, or -1. */
    uint8_t buf[RELAY_BUF]; /**< Read from this end, for the other one. */
    size_t len;             /**< Bytes in @c buf. */
    size_t off;             /**< Bytes of @c buf already delivered. */
    uint64_t bytes;         /**< Counter: bytes read from this end and delivered. */
};

struct relay;

/** What an end's callback needs: its relay and which end it is. */
struct relay_cb {
    struct relay *r; /**< The relay. */
    unsigned side;   /**< 0 or 1. */
};

/** One serial link. */
struct relay {
    struct plan_link link;   /**< The two sockets and the link's name. */
    struct event_loop *loop; /**< The supervisor's loop. */
    struct relay_end end[2]; /**< Both ends. */
    struct relay_cb cb[2];   /**< Callback contexts. */
    bool connected;          /**< Both ends are connected. */
};

/**
 * Set up a link, not connected.
 * @param r the relay.
 * @param link the sockets (copied).
 * @param loop the loop its connections join.
 */
void relay_init(struct relay *r, const struct plan_link *link, struct event_loop *loop);

/**
 * Connect both ends when both sockets exist and the link is down.
 * @param r the relay.
 */
void relay_tick(struct relay *r);

/**
 * Close both connections.
 * @param r the relay.
 */
void relay_close(struct relay *r);

#endif
