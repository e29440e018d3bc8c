/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file event_loop.h
 * @brief The VMM's host event loop: file-descriptor readiness dispatched to callbacks.
 *
 * One thread (the main thread) runs the loop; it serves console input, signals and
 * notifications from vCPU threads and, in later issues, backend channels. Callbacks run
 * on the loop thread only, so state touched only from callbacks needs no lock.
 */
#ifndef BULKHEAD_HOST_EVENT_LOOP_H
#define BULKHEAD_HOST_EVENT_LOOP_H

#include <stdint.h>

/** Readiness bits, as passed to and from callbacks. */
enum event_bits {
    EVENT_IN = 1u << 0,  /**< Readable. */
    EVENT_OUT = 1u << 1, /**< Writable. */
    EVENT_ERR = 1u << 2, /**< Error or hang-up. */
};

/**
 * Callback for a ready file descriptor.
 * @param opaque as registered.
 * @param events the EVENT_* bits that are ready.
 */
typedef void (*event_cb)(void *opaque, uint32_t events);

/** Most descriptors one loop watches: a 16-queue isolated disk's device thread watches
 * four per queue (kick, backend call, error, interrupt while masked) and four more; the
 * supervisor watches a pidfd and a console per component of a system (up to 192), and its
 * control clients. */
#define EVENT_LOOP_MAX 512

/** One watched descriptor. */
struct event_source {
    int fd;       /**< The descriptor, -1 for a free slot. */
    event_cb cb;  /**< Its callback. */
    void *opaque; /**< Passed to cb. */
};

/** An event loop. */
struct event_loop {
    int epfd;                                    /**< The epoll instance. */
    struct event_source sources[EVENT_LOOP_MAX]; /**< Registered descriptors. */
};

/**
 * Create an empty loop.
 * @param loop the loop.
 * @return 0 or a negative errno.
 */
int event_loop_init(struct event_loop *loop);

/**
 * Close the loop (not the watched descriptors).
 * @param loop the loop.
 */
void event_loop_destroy(struct event_loop *loop);

/**
 * Watch a descriptor.
 * @param loop the loop.
 * @param fd the descriptor.
 * @param events EVENT_IN and/or EVENT_OUT.
 * @param cb callback.
 * @param opaque passed to @p cb.
 * @return 0, -ENOSPC when the loop is full, or a negative errno from epoll.
 */
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_cb cb, void *opaque);

/**
 * Change the events watched on a descriptor.
 * @param loop the loop.
 * @param fd a watched descriptor.
 * @param events EVENT_IN and/or EVENT_OUT; 0 pauses it.
 * @return 0 or a negative errno.
 */
int event_loop_modify(struct event_loop *loop, int fd, uint32_t events);

/**
 * Stop watching a descriptor.
 * @param loop the loop.
 * @param fd the descriptor.
 * @return 0 or -ENOENT.
 */
int event_loop_remove(struct event_loop *loop, int fd);

/**
 * Wait for events and run their callbacks once.
 * @param loop the loop.
 * @param timeout_ms maximum wait, -1 for none.
 * @return number of callbacks run, or a negative errno (-EINTR is returned as 0).
 */
int event_loop_run_once(struct event_loop *loop, int timeout_ms);

#endif
