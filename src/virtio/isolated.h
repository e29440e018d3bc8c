/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file isolated.h
 * @brief Isolated-mode data path: the guest's queue, a shadow queue in a bounce region, copies.
 *
 * In isolated mode a device backend maps only the device's **bounce region**, never
 * guest RAM. For each virtqueue of the device one struct iso_queue sits between the
 * two: it is the *device* of the guest's queue (over guest RAM) and the *driver* of a
 * shadow queue whose rings and buffers lie in the bounce region (over a struct
 * guest_mem that describes the bounce region as the VMM maps it). Both sides use
 * src/virtio/virtqueue.c, so every field the guest or the backend writes is loaded
 * once and checked there. All calls come from the device's I/O thread; nothing here
 * locks, allocates or calls the OS.
 *
 * **A request's life.** iso_guest_kick() pops a guest chain and walks it once
 * (VQ_ACCESS_ANY); the host pointers of its segments are kept, its descriptors are
 * never read again. It allocates bounce space for the whole chain, copies the
 * readable bytes in, and posts a shadow chain with the same segment structure (as many
 * readable and writable segments, of the same lengths, in the same order; zero-length
 * descriptors, which carry no byte, are left out), so a backend that expects a
 * particular framing sees it. When the backend returns the chain, iso_backend_call()
 * copies the @c len bytes it reported (checked by the driver side: at most the writable
 * space offered) from the bounce writable segments to the guest's writable segments,
 * in order, and completes the guest chain with that @c len. No other guest byte is
 * written, whatever the backend does to the bounce region.
 *
 * **Bounce allocator: a ring.** The data area is used as a circular buffer: each
 * request takes one contiguous run starting ISO_DATA_ALIGN-aligned (skipping to the
 * area's start when the end does not hold it), and space comes back in allocation
 * order. A request completed out of order is only marked done; its space returns when
 * every older request has returned too. That is O(1) per request and cannot hand out
 * overlapping space (the live space is always one circular interval), and when nothing
 * is in flight the ring restarts at offset 0, so any request that fits the area fits
 * then. The price: one request the backend holds for long keeps the space allocated
 * after it from being reused until the ring comes round to it. Only the backend can
 * cause that, and it stalls only its own device. Fixed-size slots were rejected: a
 * slot must hold the largest request (seg_max x size_max), which wastes most of the
 * area on typical small requests.
 *
 * **Alignment.** Inside a request's run each segment starts at an offset aligned to
 * 4096 when its length is a multiple of 4096, to 512 when it is a multiple of 512,
 * else to 64 (a cache line). Sector-sized data segments are therefore 512-aligned (or
 * page-aligned) in the bounce region, as O_DIRECT backends need, and every copy starts
 * on a cache line. The padding belongs to the request's run.
 *
 * **Running out.** A chain that needs more bounce space or more shadow descriptors
 * than are free stays *pending* (popped and walked, not yet posted), guest kicks are
 * suppressed, and the next completion resumes the queue. A chain that could never be
 * posted — more bounce space than the whole data area, more segments than the shadow
 * queue has descriptors, more than UINT32_MAX writable bytes, or no byte at all — is
 * completed at once through the device's fail hook (struct iso_params.fail), like
 * any request the device cannot serve; the queue goes on. That is a guest asking for
 * more than the device advertised (or a device set up with too small an area), not a
 * malformed ring, so it costs the guest that request only.
 *
 * **Backend failures.** A backend that breaks the shadow queue's protocol (used id not
 * in flight or returned twice, len over the writable space, used idx running ahead)
 * makes iso_backend_call() return -EREMOTEIO; from then on nothing is taken from that
 * shadow ring. The caller then either restarts the backend — iso_reset_shadow() on
 * fresh rings, then iso_resubmit_inflight() — or gives up with iso_fail_inflight(),
 * which completes every request in flight with the fail hook and fails every later
 * request too until the next iso_reset_shadow().
 *
 * **Resubmission copies the readable bytes again from guest RAM**, through the host
 * pointers walked at the first pop (the descriptors are not read again). The bounce
 * region was writable by the backend that went away, so its copy of the request is no
 * longer trusted; the guest's buffers are what it asked for. A guest that changes a
 * buffer it has made available sees its new contents used: the spec lets a device read
 * a readable buffer at any time until it is used, and the guest affects only its own
 * request. Without a restart, the backend sees only the copy made at the first pop.
 *
 * **Not checked:** a guest that makes the same head available again while it is in
 * flight gets two completions on the same (its own) buffers; the VMM's memory is not
 * at stake, so the queue does not track guest heads.
 */
#ifndef BULKHEAD_VIRTIO_ISOLATED_H
#define BULKHEAD_VIRTIO_ISOLATED_H

#include "core/guest_mem.h"
#include "virtio/virtqueue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Flag of the calls' @c flags output: signal the backend's kick eventfd. */
#define ISO_KICK_BACKEND 1u
/** Flag of the calls' @c flags output: send the guest queue's interrupt. */
#define ISO_NOTIFY_GUEST 2u

/**
 * Alignment of a queue's area in the bounce region, of its data area and of each
 * request's run in it: a page, so O_DIRECT backends can use any 512- or 4096-byte
 * aligned segment as it is.
 */
#define ISO_DATA_ALIGN 4096u
/**
 * Alignment of each shadow ring: a cache line, so the VMM's stores (avail ring) and
 * the backend's (used ring) never share one.
 */
#define ISO_RING_ALIGN 64u

/**
 * Where one queue's shadow rings and data area lie in the bounce region, as addresses
 * in the bounce region's memory view (what the vhost-user frontend describes as one
 * region). Computed by iso_compute_layout(); several queues of a device stack their
 * areas by starting each at the previous one's @c end.
 */
struct iso_layout {
    uint16_t queue_size; /**< Shadow Queue Size (descriptors), a power of two. */
    uint64_t desc_addr;  /**< Shadow descriptor table; also the area's start. */
    uint64_t avail_addr; /**< Shadow available ring (written by the VMM only). */
    uint64_t used_addr;  /**< Shadow used ring (written by the backend). */
    uint64_t data_addr;  /**< Start of the data area that bounce buffers come from. */
    uint64_t data_size;  /**< Bytes of the data area, a multiple of ISO_DATA_ALIGN. */
    uint64_t end;        /**< First byte after the area, ISO_DATA_ALIGN-aligned. */
};

/**
 * Lay out one queue's area: descriptor table at @p base, then the available and used
 * rings each on a new ISO_RING_ALIGN boundary, then the data area on a page boundary.
 * @param base start of the area in the bounce region's view, ISO_DATA_ALIGN-aligned.
 * @param queue_size shadow Queue Size: a power of two, 1 to VIRTQ_MAX_SIZE.
 * @param data_size bytes of bounce buffers: non-zero, a multiple of ISO_DATA_ALIGN.
 * @param out receives the layout.
 * @return 0; -EINVAL for a bad argument; -EOVERFLOW when the area would wrap 2^64.
 */
int iso_compute_layout(uint64_t base, uint16_t queue_size, uint64_t data_size,
                       struct iso_layout *out);

/**
 * Bytes of private storage (struct iso_params.storage) a queue needs: per-request and
 * per-segment bookkeeping for the shadow queue, the shadow queue's driver slots and
 * scratch room for one guest chain. It must not be in memory the backend or the guest
 * can reach.
 * @param guest_max_size largest guest Queue Size the queue will accept.
 * @param shadow_size shadow Queue Size.
 * @return the size; 0 when either size is 0 or above VIRTQ_MAX_SIZE.
 */
size_t iso_storage_bytes(uint16_t guest_max_size, uint16_t shadow_size);

/**
 * The device's way of failing a request it cannot serve (backend gone, request too
 * big): it writes the device's error status into the chain's writable buffers and
 * says how many bytes it wrote. For virtio-blk: VIRTIO_BLK_S_IOERR into the last
 * writable byte, return 1. Called on the device's I/O thread.
 * @param opaque struct iso_params.fail_opaque.
 * @param iov the guest chain's writable segments, in order (host pointers into guest
 *        RAM, as walked when the chain was popped); only valid during the call.
 * @param nr_iov entries in @p iov; 0 when the chain has no writable byte.
 * @param writable_bytes sum of their lengths.
 * @return the used length to report; values above @p writable_bytes are clamped.
 */
typedef uint32_t (*iso_fail_fn)(void *opaque, const struct vq_iovec *iov, unsigned nr_iov,
                                uint64_t writable_bytes);

/** Everything iso_queue_init() needs; the caller keeps each pointer valid while the queue lives. */
struct iso_params {
    const struct guest_mem *bounce; /**< The bounce region as the VMM maps it. */
    struct iso_layout layout;       /**< This queue's area, from iso_compute_layout(). */
    uint16_t guest_max_size;        /**< Largest guest Queue Size iso_guest_start() accepts. */
    iso_fail_fn fail;               /**< The device's error completion (required). */
    void *fail_opaque;              /**< Passed to @c fail. */
    void *storage;                  /**< Private storage, aligned for any type. */
    size_t storage_bytes; /**< At least iso_storage_bytes(guest_max_size, layout.queue_size). */
};

/** Counters of one queue, for statistics; the caller reads them, the queue only adds. */
struct iso_stats {
    uint64_t requests;         /**< Chains taken from the guest's ring (posted or failed). */
    uint64_t bytes_in;         /**< Readable bytes copied from guest RAM into the bounce region. */
    uint64_t bytes_out;        /**< Bytes copied from the bounce region into guest RAM. */
    uint64_t errors;           /**< Requests completed through the fail hook. */
    uint64_t resubmitted;      /**< Requests posted again after iso_reset_shadow(). */
    uint64_t backend_kicks;    /**< Times a call returned ISO_KICK_BACKEND. */
    uint64_t guest_interrupts; /**< Times a call returned ISO_NOTIFY_GUEST. */
};

struct iso_req;
struct iso_seg;

/**
 * One virtqueue in isolated mode. The caller owns the storage; members are private
 * apart from @c guest.broken / @c guest.broken_reason, @c shadow.broken /
 * @c shadow.broken_reason, @c failing and @c stats, which it may read.
 */
struct iso_queue {
    struct vq guest;                /**< Device side of the guest's queue, over guest RAM. */
    struct vq shadow;               /**< Driver side of the shadow queue, over the bounce region. */
    const struct guest_mem *bounce; /**< The bounce region's view. */
    struct iso_layout layout;       /**< This queue's area in it. */
    uint8_t *data;                  /**< Host address of the data area (checked at init). */
    iso_fail_fn fail;               /**< The device's error completion. */
    void *fail_opaque;              /**< Its argument. */
    uint16_t guest_max_size;        /**< Capacity of @c iov. */
    bool started;                   /**< iso_guest_start() succeeded, no iso_stop() since. */
    bool attached;                  /**< The shadow ring is enabled (iso_reset_shadow()). */
    bool failing;                   /**< The backend is gone for good: requests fail at once. */
    bool polling; /**< iso_set_polling(): both peers' notifications stay off after a pass. */

    /* Carved out of the caller's storage; each array has layout.queue_size entries
     * except iov (guest_max_size). */
    struct vq_driver_slot *slots; /**< The shadow driver's private slots. */
    struct iso_req *reqs;         /**< Request records. */
    struct iso_seg *segs;         /**< Segment records, linked per request. */
    struct vq_seg *post;          /**< Scratch: the shadow chain being posted. */
    uint16_t *order;              /**< Requests holding bounce space, oldest first (a ring). */
    uint16_t *by_head;            /**< Shadow head -> request, or 0xffff. */
    struct vq_iovec *iov;         /**< The pending chain's segments; scratch for the fail hook. */

    uint16_t free_req;    /**< First free request record. */
    uint16_t free_seg;    /**< First free segment record. */
    uint32_t nr_free_seg; /**< Free segment records (= free shadow descriptors while attached). */
    uint32_t order_first; /**< Index in @c order of the oldest request. */
    uint32_t order_count; /**< Requests in @c order. */
    uint32_t nr_inflight; /**< Requests sent to a backend and not yet completed. */
    uint64_t alloc_off;   /**< Ring allocator: offset where the newest run ends (< data_size). */
    uint64_t bounce_used; /**< Ring allocator: bytes of the live runs, padding included. */

    bool pending;                  /**< A walked guest chain waits for room (in @c iov). */
    uint16_t pending_head;         /**< Its guest head. */
    struct vq_chain pending_chain; /**< Its shape. */

    struct iso_stats stats; /**< Counters. */
};

/**
 * Set a queue up: checks the layout (it must be exactly what iso_compute_layout()
 * returns for its start, size and data size) and that the whole area lies in the
 * bounce view, carves the storage. Neither queue is enabled yet.
 * @param q the queue (any previous contents are discarded).
 * @param p parameters; copied, but the memory they point to must outlive @p q.
 * @return 0; -EINVAL for a bad layout, size, missing hook or too little storage;
 *         -EFAULT when the area is not inside the bounce view.
 */
int iso_queue_init(struct iso_queue *q, const struct iso_params *p);

/**
 * Enable the guest-facing queue (the guest set DRIVER_OK). Requests it makes available
 * wait in its ring until a shadow ring is attached, or fail at once while failing.
 * @param q the queue, initialised and stopped.
 * @param mem guest RAM; must outlive the started period.
 * @param cfg the guest's queue configuration (from the transport's queue_enable).
 * @return 0; -EINVAL when the size exceeds guest_max_size or the queue is started;
 *         errors of vq_enable().
 */
int iso_guest_start(struct iso_queue *q, const struct guest_mem *mem, const struct vq_config *cfg);

/**
 * The guest reset the device: forget every request without completing it and disable
 * both queues. The caller must first have stopped the backend's ring (it may still
 * write the bounce space of requests forgotten here); after a new iso_guest_start(),
 * iso_reset_shadow() attaches a shadow ring again. The failing state is kept: it is
 * about the backend, not the guest.
 * @param q the queue.
 */
void iso_stop(struct iso_queue *q);

/**
 * The backend went away and another may come: take nothing more from the shadow ring
 * and post nothing to it. Requests in flight are kept, unposted on no ring, for
 * iso_reset_shadow() and iso_resubmit_inflight(); guest requests wait in the guest's
 * ring meanwhile. The caller must make sure the old backend cannot signal completions
 * that are acted on (its call eventfd is no longer read).
 * @param q the queue.
 */
void iso_detach(struct iso_queue *q);

/**
 * Attach a fresh shadow ring for a (re)started backend: zero the ring area and enable
 * the driver side on it. Requests in flight are kept, unposted, for
 * iso_resubmit_inflight(); leaves the failing state. Tell the backend the rings with
 * base 0 (layout addresses) before or after, as the frontend prefers.
 * @param q the queue.
 * @param features the features negotiated with the backend (EVENT_IDX is used).
 * @return 0; errors of vq_driver_enable().
 */
int iso_reset_shadow(struct iso_queue *q, uint64_t features);

/**
 * Post again, oldest first, every request in flight that is not on the current shadow
 * ring, copying its readable bytes again from guest RAM (see the file comment), then
 * take new guest requests as iso_guest_kick() does.
 * @param q the queue, attached.
 * @param flags receives ISO_KICK_BACKEND / ISO_NOTIFY_GUEST, also on error.
 * @return 0; -ENODEV when not started or not attached; a guest error as
 *         iso_guest_kick().
 */
int iso_resubmit_inflight(struct iso_queue *q, unsigned *flags);

/**
 * The guest kicked: take every available chain, post it to the backend (or fail it
 * through the hook, see the file comment), until the guest ring is empty or room runs
 * out. Does nothing while no shadow ring is attached (unless failing).
 * @param q the queue.
 * @param flags receives ISO_KICK_BACKEND / ISO_NOTIFY_GUEST, also on error.
 * @return 0; -ENODEV when not started; otherwise a negative errno of the guest's
 *         queue (vq_pop_avail(), vq_walk_chain()): the guest's ring is malformed
 *         (@c guest.broken), the device needs a reset (DEVICE_NEEDS_RESET).
 */
int iso_guest_kick(struct iso_queue *q, unsigned *flags);

/**
 * The backend signalled used buffers: take every used element (checked by the driver
 * side), copy its data back to the guest, complete the guest chains (published once
 * per batch), then resume a stalled queue.
 * @param q the queue.
 * @param flags receives ISO_KICK_BACKEND / ISO_NOTIFY_GUEST, also on error.
 * @return 0, also when no shadow ring is attached (a stale signal); -ENODEV when not
 *         started; -EREMOTEIO when the backend broke the protocol (@c shadow.broken;
 *         completions taken before the bad element stand): drop the backend, then
 *         iso_reset_shadow() for a new one or iso_fail_inflight(); any other negative
 *         errno is the guest's, as for iso_guest_kick().
 */
int iso_backend_call(struct iso_queue *q, unsigned *flags);

/**
 * Polling mode on or off. While on, iso_guest_kick(), iso_backend_call() and iso_poll()
 * leave the guest's kicks and the backend's interrupts suppressed after they drain a
 * ring, so a caller that looks again within microseconds saves both sides a
 * notification and itself a wake-up. Turning it off does not re-arm them: the caller
 * then runs iso_guest_kick() and iso_backend_call() once, which re-arm and catch what
 * came in between.
 * @param q the queue.
 * @param on the new mode.
 */
void iso_set_polling(struct iso_queue *q, bool on);

/**
 * Whether iso_poll() would find work: completions on the shadow ring, or guest chains
 * that can be taken now. Loads one index of each ring, changes nothing.
 * @param q the queue.
 * @return true when there is work; false otherwise or when not started.
 */
bool iso_poll_ready(struct iso_queue *q);

/**
 * One polling pass: the backend's completions as iso_backend_call(), then the guest's
 * chains as iso_guest_kick().
 * @param q the queue.
 * @param flags receives ISO_KICK_BACKEND / ISO_NOTIFY_GUEST, also on error.
 * @return as iso_backend_call(); also a guest error of iso_guest_kick().
 */
int iso_poll(struct iso_queue *q, unsigned *flags);

/**
 * The backend is gone for good (or not trusted any more): complete every request in
 * flight, and the pending one, through the fail hook; detach the shadow ring; fail
 * every later guest request at once until iso_reset_shadow(). Then drains the guest
 * ring the same way, so the guest's driver never waits for a backend that will not come.
 * @param q the queue.
 * @param flags receives ISO_NOTIFY_GUEST when the guest should be interrupted.
 * @return 0; -ENODEV when not started; a guest error as iso_guest_kick() (every
 *         request in flight is completed first).
 */
int iso_fail_inflight(struct iso_queue *q, unsigned *flags);

/**
 * Requests in flight: sent to a backend, or waiting for a restarted one.
 * @param q the queue.
 * @return the count (the pending chain, not yet posted, is not included).
 */
unsigned iso_inflight(const struct iso_queue *q);

#endif
