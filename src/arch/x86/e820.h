/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file e820.h
 * @brief The guest's physical memory map as x86 firmware interfaces report it (e820).
 *
 * Both boot paths hand the kernel the same map (boot_params.e820_table for a bzImage,
 * the hvm_start_info memmap for PVH), and the loaders place the kernel and initrd by
 * it, so it is built once here: usable RAM from the guest_mem regions, minus the
 * ranges that must stay reserved (the legacy BIOS area, the PCIe ECAM window Linux
 * only accepts for MMCONFIG when the map reserves it, and the pages the hypervisor
 * keeps for itself). The map is sorted, free of overlaps, and has adjacent entries of
 * the same type merged, which is what Linux would otherwise have to sanitise itself.
 */
#ifndef BULKHEAD_ARCH_X86_E820_H
#define BULKHEAD_ARCH_X86_E820_H

#include "core/guest_mem.h"

#include <stdbool.h>
#include <stdint.h>

/** Range types, as numbered by the ACPI address-range descriptors. */
enum e820_type {
    E820_TYPE_RAM = 1,      /**< Usable RAM. */
    E820_TYPE_RESERVED = 2, /**< Not to be used by the OS. */
    E820_TYPE_ACPI = 3,     /**< ACPI tables: reclaimable once read. */
    E820_TYPE_NVS = 4,      /**< ACPI non-volatile storage. */
    E820_TYPE_UNUSABLE = 5, /**< RAM with errors. */
};

/** Most entries a map holds: what the zero page can carry. */
#define E820_MAX_ENTRIES 128

/** End of the legacy BIOS area (X86_BIOS_AREA_START up to here is reserved). */
#define E820_BIOS_AREA_END 0x100000ULL

/** One range of the map. */
struct e820_entry {
    uint64_t addr; /**< First address. */
    uint64_t size; /**< Length in bytes (non-zero in a built map). */
    uint32_t type; /**< An enum e820_type value. */
};

/** A memory map: entries sorted by address, non-overlapping, same-type neighbours merged. */
struct e820_map {
    struct e820_entry entries[E820_MAX_ENTRIES]; /**< The entries, sorted by addr. */
    unsigned nr;                                 /**< Number of valid entries. */
};

/**
 * Turn an arbitrary list of typed ranges into a clean map. Where ranges overlap, any
 * non-RAM type wins over RAM (a reservation always punches a hole in RAM) and, among
 * non-RAM types, reserved wins over the others; uncovered addresses stay out of the map.
 * @param in the ranges, in any order; zero-length ones are ignored.
 * @param nr_in number of ranges, at most E820_MAX_ENTRIES.
 * @param out receives the map.
 * @return 0, -EINVAL when a range reaches or wraps past 2^64 or nr_in is too large, -ENOSPC when
 * the result needs more than E820_MAX_ENTRIES entries.
 */
int e820_normalize(const struct e820_entry *in, unsigned nr_in, struct e820_map *out);

/**
 * Build the map of this machine: RAM from @p mem, with the BIOS area, the PCIe ECAM window
 * and the hypervisor-private pages reserved (the latter two whether or not RAM is there).
 * @param mem the guest's RAM regions.
 * @param out receives the map.
 * @return 0 or a negative errno from e820_normalize().
 */
int x86_e820_build(const struct guest_mem *mem, struct e820_map *out);

/**
 * The RAM of @p map cut where guest_mem regions end, for placing the kernel and initrd. The
 * map merges adjacent regions into one RAM entry (the guest sees one range), but the VMM
 * writes through guest_mem_ptr(), which needs a range inside one region: a range inside
 * one entry of the result is both RAM for the guest and writable by the VMM.
 * @param map a map, as from x86_e820_build().
 * @param mem the guest's RAM regions.
 * @param out receives the RAM pieces (E820_TYPE_RAM only), sorted.
 * @return 0, or -ENOSPC when there are more than E820_MAX_ENTRIES pieces.
 */
int e820_split_at_regions(const struct e820_map *map, const struct guest_mem *mem,
                          struct e820_map *out);

/**
 * Whether a range is usable RAM, entirely inside one RAM entry.
 * @param map the map.
 * @param addr start of the range.
 * @param len length of the range; may be anything (overflow-safe).
 * @return true when [addr, addr + len) is inside one E820_TYPE_RAM entry.
 */
bool e820_is_ram(const struct e820_map *map, uint64_t addr, uint64_t len);

/**
 * Find the highest aligned place for a block of RAM, as loaders want for an initrd (as far
 * as possible from the kernel, which decompresses upwards).
 * @param map the map.
 * @param size bytes needed, non-zero.
 * @param align alignment of the start, a power of two.
 * @param floor the block must start at or above this address.
 * @param limit the block must end at or below this address.
 * @param out receives the start address.
 * @return 0, -EINVAL for a zero size or a bad alignment, -ENOMEM when no RAM entry has room.
 */
int e820_find_highest(const struct e820_map *map, uint64_t size, uint64_t align, uint64_t floor,
                      uint64_t limit, uint64_t *out);

#endif
