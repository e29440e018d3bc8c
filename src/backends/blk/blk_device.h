/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file blk_device.h
 * @brief bulkhead-blk's device: the vhost-user backend library (backend.h) glued to
 *        the request engine (blk_engine.h), one engine per queue.
 *
 * The library knows rings and messages, the engine knows requests and io_uring;
 * this module owns what lies between: the device description handed to
 * vhost_be_init() (features, configuration space, callbacks), one engine per
 * started ring, and the poll-loop steps that route the engines' eventfds next to
 * the library's descriptors. A program serves a connection like this:
 * @code
 * blk_device_init(&bd, img, &opts);
 * vhost_be_init(&be, sock, &bd.dev);
 * blk_device_attach(&bd, &be);
 * for (;;) {
 *     n = vhost_be_pollfds(&be, pfd, VHOST_BE_MAX_POLLFDS);
 *     n += blk_device_pollfds(&bd, pfd + n, max - n);
 *     poll(pfd, n, -1);
 *     if (blk_device_dispatch(&bd, pfd, n) < 0)
 *         break;                            // frontend gone or protocol error
 * }
 * blk_device_detach(&bd);                   // drains, then vhost_be_destroy()
 * @endcode
 *
 * **One thread.** Every queue is served by the thread that runs the loop:
 * multiqueue works (each queue has its own ring, engine and io_uring, and many
 * requests of every queue are in flight at once), but the queues' CPU work is not
 * spread over threads.
 *
 * **Memory lifetime.** The engine keeps host pointers into guest memory until a
 * request completes, while the library unmaps the old memory table when a new one
 * arrives. So every engine is drained (its completions still reach the used ring
 * and the driver is notified) before any control message is handled, and a
 * stopping ring's engine is drained and destroyed in the library's stop_queue()
 * callback.
 */
#ifndef BULKHEAD_BACKENDS_BLK_BLK_DEVICE_H
#define BULKHEAD_BACKENDS_BLK_BLK_DEVICE_H

#include "backends/blk/blk_engine.h"
#include "vhost/backend.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

/** Queue Size the frontend is assumed to use when the program is not told (QEMU's default). */
#define BLK_DEVICE_DEFAULT_QUEUE_SIZE 128u

/** Choices of the device that are not the image's. */
struct blk_device_opts {
    /** Request queues offered (GET_QUEUE_NUM and the num_queues field), 1 to VHOST_BE_MAX_QUEUES.
     */
    unsigned nr_queues;
    /**
     * The smallest Queue Size the frontend will set, for a warning only: seg_max (an
     * image option) must leave room for the header and status descriptors in a chain
     * no longer than the Queue Size. 0: BLK_DEVICE_DEFAULT_QUEUE_SIZE.
     */
    unsigned queue_size;
    /**
     * Microseconds the serving loop keeps polling the rings and completions after the
     * last work before it sleeps and turns kicks back on (blk_device_poll()); 0: never.
     */
    unsigned poll_us;
    /**
     * KiB of requests after which a queue's submissions go out and what finished is
     * completed before more are taken from the ring; 0: everything at hand in one
     * submission. Reads of cached data complete inside the submitting call, so one
     * submission of a ring of large reads holds every completion back until the last
     * copy is done: a frontend with work of its own per completion (isolated mode's copy)
     * idles meanwhile, and gains from a bound. A frontend that completes straight to the
     * guest gains little and pays an interrupt per batch, hence the default.
     */
    unsigned batch_kib;
};

/** Default --poll of bulkhead-blk, microseconds (blk_device_opts.poll_us). */
#define BLK_DEFAULT_POLL_US 50u
/** Largest --poll, microseconds. */
#define BLK_MAX_POLL_US 1000u
/** Largest --batch, KiB (blk_device_opts.batch_kib). */
#define BLK_MAX_BATCH_KIB (64u * 1024u)

/** The engine side of one ring. Members are private. */
struct blk_device_queue {
    struct blk_device *bd;     /**< Back pointer for the engine's callback. */
    unsigned index;            /**< Ring index. */
    struct blk_engine *engine; /**< Created when the ring first runs; NULL while stopped. */
    struct vq *vq;             /**< The library's ring the completions go to. */
    struct vq_iovec *iov;      /**< Queue Size entries: no well-formed chain gets -ENOBUFS. */
    uint8_t *heads;            /**< Queue Size bytes; &heads[h] is the engine cookie of head h. */
    uint16_t size;             /**< Queue Size the engine and @c iov were made for. */
    bool starved;              /**< Ran out of slots with chains waiting: resume on completion. */
    uint64_t requests;         /**< Chains taken since the ring started (log line). */
};

/** The device of one bulkhead-blk process; serves one connection at a time. */
struct blk_device {
    /** Handed to vhost_be_init(); its callbacks take the blk_device as opaque. */
    struct vhost_be_device dev;
    struct blk_image *img;     /**< The disk, shared by every queue's engine. */
    unsigned queue_size;       /**< Expected smallest Queue Size (for the warning). */
    struct vhost_be *be;       /**< The connection served, NULL between connections. */
    uint64_t applied_features; /**< What blk_image_set_features() was last given. */
    bool features_applied;     /**< @c applied_features is valid for this connection. */
    int error;                 /**< First engine failure of this connection, or 0. */
    unsigned poll_us;          /**< blk_device_opts.poll_us. */
    uint64_t batch_bytes;      /**< blk_device_opts.batch_kib in bytes; 0: unbounded. */
    bool polling;              /**< In a polling window: kicks stay off after a pump. */
    bool poll_work;            /**< blk_device_dispatch() handled a kick or completion. */
    uint64_t poll_last_ns;     /**< When polling last found work. */
    struct blk_device_queue queues[VHOST_BE_MAX_QUEUES]; /**< dev.nr_queues are used. */
};

/**
 * Describe the device for an open image. Nothing is allocated: engines come when
 * rings start.
 * @param bd the device.
 * @param img the image; must outlive @p bd.
 * @param opts queue count and expected Queue Size.
 * @return 0; -EINVAL for a queue count out of range.
 */
int blk_device_init(struct blk_device *bd, struct blk_image *img,
                    const struct blk_device_opts *opts);

/**
 * Start serving a connection that vhost_be_init() set up with @c bd->dev. The
 * image goes back to writethrough until this connection negotiates FLUSH.
 * @param bd the device, not attached to another connection.
 * @param be the connection; stays owned by the caller until blk_device_detach().
 */
void blk_device_attach(struct blk_device *bd, struct vhost_be *be);

/**
 * End the connection: complete every request in flight (used entries and
 * notifications still go to the frontend), vhost_be_destroy() it, free the engines.
 * @param bd the device (a device with no connection is left as it is).
 */
void blk_device_detach(struct blk_device *bd);

/**
 * Add the engines' eventfds to a poll array, after the library's own entries.
 * @param bd the device.
 * @param pfd receives up to @p max entries (events POLLIN).
 * @param max room in @p pfd; VHOST_BE_MAX_QUEUES is always enough.
 * @return entries filled.
 */
unsigned blk_device_pollfds(const struct blk_device *bd, struct pollfd *pfd, unsigned max);

/**
 * Act on poll() results over the library's and the engines' descriptors: finish
 * completed requests (used ring, notification), let the library handle the kicks,
 * then, when a control message is waiting, complete every request in flight before
 * the library reads it; finally take more chains on rings that had run out of
 * request slots.
 * @param bd the device, attached.
 * @param pfd the array given to poll() (other descriptors in it are ignored).
 * @param n its entries.
 * @return 0; -ECONNRESET when the frontend went away; another negative errno when
 *         the connection must end (protocol error, or an io_uring failure).
 */
int blk_device_dispatch(struct blk_device *bd, const struct pollfd *pfd, unsigned n);

/**
 * After each round of the serving loop: start, continue or end a polling window.
 * While one is open, the loop should poll() with a zero timeout; this call then takes
 * completions and newly published chains itself, with the frontend's kicks left off,
 * so a request that arrives within poll_us of the last one costs the frontend no kick
 * and this process no wake-up. At the end kicks are re-armed (and what came in between
 * taken). An idle device never polls.
 * @param bd the device, attached.
 * @return true while polling: the next poll() must not block.
 */
bool blk_device_poll(struct blk_device *bd);

/**
 * Complete every request in flight on every queue and hand the completions to the
 * frontend, without waiting for anything else (a stop signal, a control message).
 * @param bd the device.
 * @return 0, or the first engine failure (requests may then still be in flight).
 */
int blk_device_drain(struct blk_device *bd);

#endif
