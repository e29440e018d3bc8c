/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file guest_mem.h
 * @brief The guest's physical RAM as the VMM sees it, and the one checked accessor.
 *
 * Every access the VMM makes on the guest's behalf (loading a kernel, building
 * tables, walking a virtqueue) goes through guest_mem_ptr(), guest_mem_read()
 * or guest_mem_write(). They refuse any range that is not entirely inside one
 * RAM region, so a guest-supplied address can never reach VMM memory. How the
 * RAM is allocated is a host service (host/guest_ram.h); this module only
 * describes and checks it, and so is portable.
 */
#ifndef BULKHEAD_CORE_GUEST_MEM_H
#define BULKHEAD_CORE_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

/**
 * Most regions a memory view can have. The VMM's x86 guests use two (below and above
 * the PCI hole); a vhost-user backend builds its view from a memory table of up to 8.
 */
#define GUEST_MEM_MAX_REGIONS 8

/** One contiguous range of guest-physical RAM backed by contiguous host memory. */
struct guest_region {
    uint64_t gpa;  /**< Guest-physical start. */
    uint64_t size; /**< Length in bytes (non-zero). */
    uint8_t *hva;  /**< Host address of gpa. */
};

/** The guest's RAM: regions sorted by gpa, non-overlapping. */
struct guest_mem {
    struct guest_region regions[GUEST_MEM_MAX_REGIONS]; /**< The regions, sorted by gpa. */
    unsigned nr_regions;                                /**< Number of valid entries. */
};

/**
 * Add a region. Regions must be added in increasing gpa order and must not overlap.
 * @param mem the memory map.
 * @param gpa guest-physical start.
 * @param size length, non-zero, gpa + size must not wrap.
 * @param hva host mapping of the region.
 * @return 0, -ENOSPC when full, -EINVAL on a bad, wrapping or overlapping region.
 */
int guest_mem_add_region(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva);

/**
 * Translate a guest-physical range to a host pointer.
 * @param mem the memory map.
 * @param gpa start of the range (guest-controlled).
 * @param len length of the range (guest-controlled); must be non-zero.
 * @return a host pointer to @p len contiguous bytes, or NULL when @p len is 0, the
 *         range wraps, or it is not entirely inside one RAM region.
 */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/**
 * Copy from guest RAM. A zero-length copy succeeds without touching anything.
 * @param mem the memory map.
 * @param gpa guest-physical source.
 * @param dst host destination.
 * @param len bytes to copy.
 * @return 0, or -EFAULT when the range is not RAM.
 */
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, size_t len);

/**
 * Copy into guest RAM. A zero-length copy succeeds without touching anything.
 * @param mem the memory map.
 * @param gpa guest-physical destination.
 * @param src host source.
 * @param len bytes to copy.
 * @return 0, or -EFAULT when the range is not RAM.
 */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, size_t len);

/**
 * Fill guest RAM with a byte.
 * @param mem the memory map.
 * @param gpa guest-physical destination.
 * @param byte value to store.
 * @param len bytes to fill.
 * @return 0, or -EFAULT when the range is not RAM.
 */
int guest_mem_fill(const struct guest_mem *mem, uint64_t gpa, uint8_t byte, size_t len);

/**
 * Total RAM in bytes.
 * @param mem the memory map.
 * @return the sum of all region sizes.
 */
uint64_t guest_mem_total(const struct guest_mem *mem);

#endif
