/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtqueue.h
 * @brief The one split-virtqueue implementation: device side and a small driver side.
 *
 * Used by the VMM's virtio devices (device side, on guest RAM), by its isolated-mode
 * shadow queues (driver side, on a bounce region facing an untrusted backend) and
 * by every backend process (device side, on whatever memory it was given). It is
 * portable: no OS call, no allocation; the caller provides every piece of storage.
 *
 * **Trust.** Whatever the other side writes into shared memory is hostile input.
 * Each such field (avail idx and ring entries, descriptor addr/len/flags/next,
 * used_event; on the driver side used idx, used entries, avail_event, used flags)
 * is loaded exactly once with an atomic load into a local, then checked, then
 * used, so a concurrent rewrite cannot change a value between its check and its
 * use. Every address range is translated through guest_mem_ptr(), which refuses
 * ranges outside the memory view or wrapping 2^64; nothing outside the view is
 * ever touched. Our own ring indices are kept privately and never read back.
 *
 * **Errors** are negative errno values. Malformed input from the other side
 * marks the queue *broken* (vq.broken, with a reason in vq.broken_reason); every
 * later call on it returns -EIO until vq_enable() is called again. The caller
 * turns broken into DEVICE_NEEDS_RESET (or, for a shadow queue, into I/O errors).
 *  - -EFAULT   an address range outside the memory view or wrapping 2^64
 *              (buffer or indirect table).
 *  - -ELOOP    a descriptor chain visits a descriptor twice (it walked more
 *              descriptors than its table holds).
 *  - -E2BIG    a chain longer than the Queue Size (counting buffer descriptors,
 *              direct and indirect), an indirect table with more entries than
 *              the Queue Size, or a chain of more than 2^32 bytes.
 *  - -EBADMSG  a malformed descriptor or ring entry: avail ring head >= size,
 *              next index out of its table, INDIRECT together with NEXT, INDIRECT
 *              inside an indirect table, INDIRECT without VIRTIO_F_INDIRECT_DESC,
 *              indirect table length 0 or not a multiple of 16, a device-readable
 *              descriptor after a device-writable one; driver side: a used id >=
 *              size, or not a head in flight (includes an id returned twice).
 *  - -EACCES   a device-writable descriptor in a chain the caller said must be
 *              readable only, or a readable one where writable only is allowed.
 *  - -EPROTO   an index that runs ahead: avail idx more than Queue Size ahead of
 *              the last consumed entry; driver side: used idx ahead of the chains
 *              in flight.
 *  - -EMSGSIZE driver side: a used len larger than the writable space offered.
 *
 * Errors that are not the other side's fault leave the queue usable:
 *  - -ENOBUFS  the caller's iovec array is too small for a well-formed chain.
 *  - -ENOSPC   driver side: not enough free descriptors; device side: more used
 *              entries staged than the ring holds.
 *  - -EINVAL   bad arguments or set-up (size, alignment, wrong side).
 *  - -ENODEV   the queue is not enabled.
 *  - -EIO      the queue is broken.
 *
 * **Zero-length descriptors** are accepted: the spec does not forbid them. They
 * count towards the chain length and obey the readable-before-writable rule, but
 * produce no iovec and their address is not translated (no byte is accessed).
 *
 * **Device loop.** With EVENT_IDX a driver kicks only when it passes avail_event,
 * so the device must re-arm (vq_avail_notify_enable()) before it waits, and
 * process again when that finds new buffers:
 * @code
 * for (;;) {
 *     vq_avail_notify_disable(vq);
 *     while ((r = vq_pop_avail(vq, &head)) == 1) {
 *         r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, iov, n, &chain);
 *         ... process, then vq_push_used(vq, head, written);
 *     }
 *     if (vq_should_notify(vq))
 *         ... send the used-buffer notification (irqfd / call fd);
 *     if (vq_avail_notify_enable(vq) <= 0)
 *         break;  // wait for the next kick (or handle the error)
 * }
 * @endcode
 *
 * **Threads.** A struct vq is not locked: one thread at a time per queue. The
 * memory view must stay valid and unchanged while the queue is enabled; after a
 * change of the memory map, call vq_enable() again.
 */
#ifndef BULKHEAD_VIRTIO_VIRTQUEUE_H
#define BULKHEAD_VIRTIO_VIRTQUEUE_H

#include "core/guest_mem.h"
#include "virtio/virtio_ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Full barrier: orders earlier loads and stores before later ones. Needed where a
 * store (an index we publish, or an event threshold we arm) must be visible
 * before we load the peer's notification-suppression field or index.
 */
#define vq_barrier_full() __atomic_thread_fence(__ATOMIC_SEQ_CST)
/** Acquire barrier: a peer's index is loaded before the entries it publishes. */
#define vq_barrier_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
/** Release barrier: ring entries and descriptors are stored before the index that publishes them.
 */
#define vq_barrier_release() __atomic_thread_fence(__ATOMIC_RELEASE)

/**
 * One host buffer segment. Same members, in the same order, as POSIX struct
 * iovec, so host code may hand an array of these to readv() or io_uring after
 * asserting the layouts match (this header cannot include <sys/uio.h>).
 */
struct vq_iovec {
    void *base; /**< Host address of the segment, inside the memory view. */
    size_t len; /**< Length in bytes, never 0. */
};

/** What a device accepts in a chain, checked by vq_walk_chain(). */
enum vq_access {
    VQ_ACCESS_ANY = 0,       /**< Readable buffers, then writable buffers. */
    VQ_ACCESS_READABLE_ONLY, /**< Only device-readable buffers (e.g. a transmit queue). */
    VQ_ACCESS_WRITABLE_ONLY, /**< Only device-writable buffers (e.g. a receive queue). */
};

/** The shape of a walked chain. The segments are in the caller's iovec array. */
struct vq_chain {
    unsigned nr_readable;    /**< iov[0 .. nr_readable) are device-readable (stored ones only). */
    unsigned nr_writable;    /**< The next nr_writable entries are device-writable (stored). */
    uint64_t readable_bytes; /**< Sum of readable lengths (the whole chain, even on -ENOBUFS). */
    uint64_t writable_bytes; /**< Sum of writable lengths (the whole chain, even on -ENOBUFS). */
    unsigned nr_desc;        /**< Buffer descriptors walked, zero-length ones included. */
};

/** Where a queue lives and what was negotiated; the input of vq_enable(). */
struct vq_config {
    uint16_t size;           /**< Queue Size: a power of two, 1 to VIRTQ_MAX_SIZE. */
    uint64_t desc_addr;      /**< Descriptor table address in the memory view, 16-aligned. */
    uint64_t avail_addr;     /**< Available ring address, 2-aligned. */
    uint64_t used_addr;      /**< Used ring address, 4-aligned. */
    uint64_t features;       /**< Negotiated feature bits; INDIRECT_DESC and EVENT_IDX are used. */
    uint16_t last_avail_idx; /**< Device side: next avail entry to consume (vhost-user base). */
    uint16_t used_idx;       /**< Device side: used idx to continue from. */
};

/**
 * Private per-descriptor state of a driver-side queue. The caller allocates an
 * array of Queue Size of these (they must not live in shared memory: the peer
 * could rewrite them) and does not touch them.
 */
struct vq_driver_slot {
    uint32_t writable; /**< For a head in flight: device-writable bytes offered. */
    uint16_t next;     /**< Next descriptor of the chain, or of the free list. */
    uint16_t count;    /**< For a head in flight: descriptors in its chain; 0 otherwise. */
};

/**
 * A split virtqueue, device side or driver side. The caller owns the storage;
 * the members are private apart from @c broken, @c broken_reason and @c loads.
 */
struct vq {
    const struct guest_mem *mem; /**< The only memory the queue may touch. */
    uint8_t *desc;               /**< Host address of the descriptor table. */
    uint8_t *avail;              /**< Host address of the available ring. */
    uint8_t *used;               /**< Host address of the used ring. */
    uint16_t size;               /**< Queue Size (32768 fits in 16 bits). */
    bool enabled;                /**< vq_enable() or vq_driver_enable() succeeded. */
    bool driver;                 /**< We are the driver of this queue. */
    bool event_idx;              /**< VIRTIO_F_EVENT_IDX negotiated. */
    bool indirect;               /**< VIRTIO_F_INDIRECT_DESC negotiated. */
    bool broken;                 /**< The peer broke the protocol; the queue refuses work. */
    const char *broken_reason;   /**< Static text saying what was malformed, for a log line. */
    uint64_t loads;              /**< Loads of peer-written fields, for tests and statistics. */

    /* Device side. */
    uint16_t last_avail;     /**< Next avail ring entry to consume. */
    uint16_t avail_shadow;   /**< The avail idx as last loaded (and checked). */
    uint16_t used_idx;       /**< The used idx we last published. */
    uint16_t used_pending;   /**< Used entries written but not yet published. */
    uint16_t signalled_used; /**< used_idx when vq_should_notify() last decided. */

    /* Driver side. */
    struct vq_driver_slot *slots; /**< Caller's array of @c size private slots. */
    uint16_t avail_idx;           /**< The avail idx we last published. */
    uint16_t kicked_avail;        /**< avail_idx when vq_driver_should_kick() last decided. */
    uint16_t last_used;           /**< Next used entry to consume. */
    uint16_t used_shadow;         /**< The used idx as last loaded (and checked). */
    uint16_t free_head;           /**< First free descriptor. */
    uint16_t nr_free;             /**< Free descriptors. */
    uint16_t in_flight;           /**< Chains made available and not yet returned. */
};

/**
 * Enable a queue on the device side. Validates the set-up once: size a power of
 * two <= 32768, each ring aligned as the spec requires and wholly inside one
 * region of @p mem; then caches the rings' host addresses. Resets the queue's
 * state, including a previous broken flag. Writes nothing to the rings.
 * @param vq the queue (any previous state is discarded).
 * @param mem memory view; must outlive the queue's enabled period.
 * @param cfg addresses, size, negotiated features, indices to resume from.
 * @return 0; -EINVAL for a bad size or a misaligned ring (guest or host address);
 *         -EFAULT when a ring is not inside the memory view. On error the queue
 *         stays disabled (not broken): the caller decides what the guest sees.
 */
int vq_enable(struct vq *vq, const struct guest_mem *mem, const struct vq_config *cfg);

/**
 * Disable a queue: every later call returns -ENODEV. Touches no ring memory.
 * @param vq the queue.
 */
void vq_disable(struct vq *vq);

/**
 * Device side: take the next available chain head. Loads avail idx only when
 * the entries seen before are used up, so each ring entry and each idx value
 * is read once.
 * @param vq the queue.
 * @param head receives the head index (< size) when 1 is returned.
 * @return 1 with a head, 0 when nothing is available, -EPROTO (avail idx ran
 *         more than size ahead) or -EBADMSG (head >= size), which break the
 *         queue; -EIO, -ENODEV, -EINVAL (driver-side queue).
 */
int vq_pop_avail(struct vq *vq, uint16_t *head);

/**
 * Device side: walk a chain, direct or through one indirect table (possibly
 * after direct descriptors), into host segments: the readable ones first, then
 * the writable ones. The WRITE flag of a descriptor naming an indirect table is
 * ignored (spec). On -ENOBUFS the walk still validates the whole chain, so a
 * malformed chain is reported as such whatever the caller's storage.
 * @param vq the queue.
 * @param head the head from vq_pop_avail().
 * @param access which directions the device accepts.
 * @param iov caller storage for the segments.
 * @param iov_max entries in @p iov.
 * @param chain receives the counts and totals (also on -ENOBUFS).
 * @return 0; -EFAULT, -ELOOP, -E2BIG, -EBADMSG, -EACCES (see the file comment),
 *         which break the queue; -ENOBUFS when @p iov_max is too small (the first
 *         @p iov_max segments are filled, the queue stays usable; the caller
 *         should complete the chain with an error); -EINVAL (head >= size or a
 *         driver-side queue), -EIO, -ENODEV.
 */
int vq_walk_chain(struct vq *vq, uint16_t head, enum vq_access access, struct vq_iovec *iov,
                  unsigned iov_max, struct vq_chain *chain);

/**
 * Device side: write a used entry without publishing it, to publish a batch with
 * one barrier through vq_publish_used().
 * @param vq the queue.
 * @param head the chain's head index, as popped.
 * @param len bytes the device wrote into the chain's writable buffers.
 * @return 0; -ENOSPC when a whole ring of entries is already staged; -EINVAL for
 *         head >= size or a driver-side queue; -EIO, -ENODEV.
 */
int vq_add_used(struct vq *vq, uint16_t head, uint32_t len);

/**
 * Device side: make the staged used entries visible: release barrier, then the
 * new used idx.
 * @param vq the queue.
 * @return 0; -EINVAL (driver-side queue), -EIO, -ENODEV.
 */
int vq_publish_used(struct vq *vq);

/**
 * Device side: vq_add_used() and vq_publish_used() in one.
 * @param vq the queue.
 * @param head the chain's head index.
 * @param len bytes written into the chain.
 * @return as vq_add_used().
 */
int vq_push_used(struct vq *vq, uint16_t head, uint32_t len);

/**
 * Device side: whether the driver wants a used-buffer notification for what was
 * published since the previous call. With EVENT_IDX, loads used_event once and
 * applies virtq_need_event(); otherwise honours VIRTQ_AVAIL_F_NO_INTERRUPT.
 * Starts with a full barrier so the published used idx is visible before the
 * driver's threshold is read (otherwise a notification could be lost).
 * @param vq the queue.
 * @return true to notify; false when suppressed, nothing new was published, or
 *         the queue is broken, disabled or driver-side.
 */
bool vq_should_notify(struct vq *vq);

/**
 * Device side, EVENT_IDX: ask the driver to kick once it publishes the avail
 * entry with index @p idx (store of avail_event). A no-op without EVENT_IDX or
 * on a queue that is broken, disabled or driver-side.
 * @param vq the queue.
 * @param idx the avail index the device wants to hear about.
 */
void vq_set_avail_event(struct vq *vq, uint16_t idx);

/**
 * Device side: ask the driver not to kick (while the device is polling the ring
 * anyway). Without EVENT_IDX sets VIRTQ_USED_F_NO_NOTIFY; with it, does nothing:
 * a stale avail_event already suppresses kicks.
 * @param vq the queue.
 * @return 0; -EINVAL (driver-side queue), -EIO, -ENODEV.
 */
int vq_avail_notify_disable(struct vq *vq);

/**
 * Device side: ask for kicks again, then re-check the ring. Buffers the driver
 * added before it saw the request would otherwise never be kicked for, so the
 * caller must keep processing when this returns 1.
 * @param vq the queue.
 * @return 1 when buffers are available, 0 when none; -EPROTO (avail idx jumped,
 *         breaks the queue); -EINVAL (driver-side queue), -EIO, -ENODEV.
 */
int vq_avail_notify_enable(struct vq *vq);

/**
 * Enable a queue on the driver side (bulkhead drives it, the peer is the device)
 * on memory it owns. Validates as vq_enable() (cfg->last_avail_idx and
 * cfg->used_idx must be 0), then initialises both rings to zero and builds the
 * free list in @p slots.
 * @param vq the queue.
 * @param mem memory view holding the rings and every buffer to be offered.
 * @param cfg addresses, size and negotiated features.
 * @param slots caller storage for private per-descriptor state.
 * @param nr_slots entries in @p slots, at least cfg->size.
 * @return 0; -EINVAL, -EFAULT as vq_enable().
 */
int vq_driver_enable(struct vq *vq, const struct guest_mem *mem, const struct vq_config *cfg,
                     struct vq_driver_slot *slots, size_t nr_slots);

/** One buffer offered by the driver side, in the queue's memory view. */
struct vq_seg {
    uint64_t addr; /**< Address in the memory view. */
    uint32_t len;  /**< Length in bytes; 0 is allowed and not translated. */
};

/**
 * Driver side: offer a chain of direct descriptors (readable segments first) and
 * publish it. Everything is checked before anything is written.
 * @param vq the queue.
 * @param segs @p nr_readable device-readable then @p nr_writable device-writable segments.
 * @param nr_readable number of readable segments.
 * @param nr_writable number of writable segments.
 * @param head receives the chain's head index, which vq_driver_get_used() returns.
 * @return 0; -ENOSPC when fewer descriptors are free; -EFAULT when a segment is
 *         outside the memory view; -E2BIG when the writable total exceeds
 *         UINT32_MAX (a used len could not describe it); -EINVAL for no segment
 *         or a device-side queue; -EIO, -ENODEV.
 */
int vq_driver_add(struct vq *vq, const struct vq_seg *segs, unsigned nr_readable,
                  unsigned nr_writable, uint16_t *head);

/**
 * Device side, for a polling device: whether the driver has published entries not yet
 * consumed. A hint only: the index is loaded once and not kept, so the next
 * vq_pop_avail() validates it as always; a malformed index reads as "work" and breaks
 * the queue there.
 * @param vq the queue.
 * @return true when there may be work; false when none, or the queue is unusable.
 */
bool vq_avail_peek(struct vq *vq);

/**
 * Driver side, for a polling driver: whether the device has published used entries
 * not yet consumed. A hint, as vq_avail_peek().
 * @param vq the queue.
 * @return true when there may be completions; false when none, or the queue is unusable.
 */
bool vq_driver_used_peek(struct vq *vq);

/**
 * Driver side: whether the device wants a kick for the chains published since
 * the previous call (avail_event with EVENT_IDX, else VIRTQ_USED_F_NO_NOTIFY),
 * after a full barrier.
 * @param vq the queue.
 * @return true to kick; false when suppressed, nothing new, or the queue is
 *         broken, disabled or device-side.
 */
bool vq_driver_should_kick(struct vq *vq);

/**
 * Driver side: take the next used entry from the (untrusted) device. Checks that
 * used idx does not run ahead of the chains in flight, that the id is a head in
 * flight (so never one returned twice) and that len fits the writable space
 * offered; then frees the chain's descriptors.
 * @param vq the queue.
 * @param id receives the head index when 1 is returned.
 * @param len receives the bytes the device says it wrote (<= writable offered).
 * @return 1 with an entry, 0 when none; -EPROTO, -EBADMSG, -EMSGSIZE, which break
 *         the queue; -EINVAL (device-side queue), -EIO, -ENODEV.
 */
int vq_driver_get_used(struct vq *vq, uint16_t *id, uint32_t *len);

/**
 * Driver side: ask for no used-buffer notifications (VIRTQ_AVAIL_F_NO_INTERRUPT
 * without EVENT_IDX; nothing with it, a stale used_event suppresses them).
 * @param vq the queue.
 * @return 0; -EINVAL (device-side queue), -EIO, -ENODEV.
 */
int vq_driver_used_notify_disable(struct vq *vq);

/**
 * Driver side: ask for a used-buffer notification at the next used entry, then
 * re-check the used ring, as vq_avail_notify_enable() does for the device.
 * @param vq the queue.
 * @return 1 when used entries are pending, 0 when none; -EPROTO (breaks the
 *         queue); -EINVAL (device-side queue), -EIO, -ENODEV.
 */
int vq_driver_used_notify_enable(struct vq *vq);

#endif
