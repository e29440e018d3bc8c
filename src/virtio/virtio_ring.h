/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_ring.h
 * @brief Split-virtqueue layout and constants, from the virtio 1.2 specification (§2.7).
 *
 * Only what the split ring needs: descriptor flags, ring flags, the feature bits
 * that change the ring (indirect descriptors, event index), alignments and sizes.
 * Every multi-byte field in guest memory is little-endian (virtio 1.x); the
 * structures below describe the layout and are never dereferenced on shared
 * memory directly — src/virtio/virtqueue.c reads each field once through its
 * own accessors. Packed rings are not described.
 */
#ifndef BULKHEAD_VIRTIO_VIRTIO_RING_H
#define BULKHEAD_VIRTIO_VIRTIO_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Descriptor flag: the chain continues at @c next. */
#define VIRTQ_DESC_F_NEXT 1u
/** Descriptor flag: the buffer is device-writable (otherwise device-readable). */
#define VIRTQ_DESC_F_WRITE 2u
/** Descriptor flag: @c addr / @c len name a table of descriptors, not a buffer. */
#define VIRTQ_DESC_F_INDIRECT 4u

/** Available-ring flag: the driver asks for no used-buffer notifications (no EVENT_IDX). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1u
/** Used-ring flag: the device asks for no available-buffer notifications (no EVENT_IDX). */
#define VIRTQ_USED_F_NO_NOTIFY 1u

/** Feature bit: descriptors may carry VIRTQ_DESC_F_INDIRECT. */
#define VIRTIO_F_INDIRECT_DESC 28
/** Feature bit: notifications are suppressed with used_event / avail_event, not flags. */
#define VIRTIO_F_EVENT_IDX 29
/** Feature bit: the device is a virtio 1.x (non-legacy) device; rings are little-endian. */
#define VIRTIO_F_VERSION_1 32
/** Feature bit: packed virtqueues (not implemented by bulkhead). */
#define VIRTIO_F_RING_PACKED 34

/** Largest Queue Size of a split virtqueue; sizes are powers of two. */
#define VIRTQ_MAX_SIZE 32768u

/** Required guest-physical alignment of the descriptor table. */
#define VIRTQ_DESC_ALIGN 16u
/** Required guest-physical alignment of the available ring. */
#define VIRTQ_AVAIL_ALIGN 2u
/** Required guest-physical alignment of the used ring. */
#define VIRTQ_USED_ALIGN 4u

/**
 * Longest chain in bytes (readable and writable together) a driver may offer:
 * the spec forbids chains longer than 2^32 bytes in total.
 */
#define VIRTQ_MAX_CHAIN_BYTES (UINT64_C(1) << 32)

/** One descriptor, 16 bytes, little-endian; also the entry of an indirect table. */
struct virtq_desc {
    uint64_t addr;  /**< Guest-physical address of the buffer (or of the indirect table). */
    uint32_t len;   /**< Length in bytes of the buffer (or of the indirect table). */
    uint16_t flags; /**< VIRTQ_DESC_F_* bits. */
    uint16_t next;  /**< Index of the next descriptor when VIRTQ_DESC_F_NEXT is set. */
};

/** One entry of the used ring: which chain the device finished and how much it wrote. */
struct virtq_used_elem {
    uint32_t id;  /**< Head index of the chain (32 bits only for padding). */
    uint32_t len; /**< Bytes the device wrote into the chain's writable buffers. */
};

/*
 * The two rings have a variable-length array followed by one more field, which C
 * cannot express; they are described by offsets instead.
 *   available ring: le16 flags; le16 idx; le16 ring[size]; le16 used_event;
 *   used ring:      le16 flags; le16 idx; virtq_used_elem ring[size]; le16 avail_event;
 */

/** Offset of @c flags in either ring. */
#define VIRTQ_RING_FLAGS_OFF 0u
/** Offset of @c idx in either ring. */
#define VIRTQ_RING_IDX_OFF 2u
/** Offset of @c ring[0] in either ring. */
#define VIRTQ_RING_ENTRIES_OFF 4u

/**
 * Bytes of the descriptor table.
 * @param size Queue Size.
 * @return 16 * size.
 */
static inline uint64_t virtq_desc_table_bytes(uint32_t size)
{
    return (uint64_t)size * sizeof(struct virtq_desc);
}

/**
 * Bytes of the available ring, used_event included (it is part of the ring
 * whether or not EVENT_IDX is negotiated).
 * @param size Queue Size.
 * @return 6 + 2 * size.
 */
static inline uint64_t virtq_avail_bytes(uint32_t size)
{
    return 6u + 2u * (uint64_t)size;
}

/**
 * Bytes of the used ring, avail_event included.
 * @param size Queue Size.
 * @return 6 + 8 * size.
 */
static inline uint64_t virtq_used_bytes(uint32_t size)
{
    return 6u + (uint64_t)size * sizeof(struct virtq_used_elem);
}

/**
 * Offset of @c used_event (the driver's interrupt threshold) in the available ring.
 * @param size Queue Size.
 * @return 4 + 2 * size.
 */
static inline uint64_t virtq_used_event_off(uint32_t size)
{
    return 4u + 2u * (uint64_t)size;
}

/**
 * Offset of @c avail_event (the device's kick threshold) in the used ring.
 * @param size Queue Size.
 * @return 4 + 8 * size.
 */
static inline uint64_t virtq_avail_event_off(uint32_t size)
{
    return 4u + (uint64_t)size * sizeof(struct virtq_used_elem);
}

/**
 * The event-index rule (§2.7.7 and §2.7.10): having moved a ring index from
 * @p old_idx to @p new_idx, notify when the other side's event index lies in
 * [old_idx, new_idx), i.e. when this move wrote the entry it asked to hear about.
 * All arithmetic is modulo 2^16, so it stays right across index wrap-around.
 * @param event_idx the peer's used_event or avail_event.
 * @param new_idx the ring index just published.
 * @param old_idx the ring index when the last decision was taken.
 * @return true when a notification is needed.
 */
static inline bool virtq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    /* Distance past the event entry, compared with the distance moved. */
    return (uint16_t)(new_idx - event_idx - 1u) < (uint16_t)(new_idx - old_idx);
}

#endif
