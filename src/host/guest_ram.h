/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file guest_ram.h
 * @brief Allocation of the guest's RAM: one memfd, mapped once, with guard pages around it.
 */
#ifndef BULKHEAD_HOST_GUEST_RAM_H
#define BULKHEAD_HOST_GUEST_RAM_H

#include <stddef.h>
#include <stdint.h>

/** The host side of guest RAM. */
struct guest_ram {
    int fd;              /**< The memfd holding all of guest RAM, or -1. */
    uint8_t *base;       /**< Host address of byte 0 of the memfd. */
    uint64_t size;       /**< Bytes of RAM. */
    uint8_t *reserved;   /**< Start of the whole reservation, guards included. */
    size_t reserved_len; /**< Length of the reservation. */
};

/**
 * Create the memfd and map it between two inaccessible guard areas, 2 MiB aligned and
 * advised for transparent huge pages (they decide boot time under nested paging).
 * @param ram receives the allocation.
 * @param size bytes of RAM, a non-zero multiple of 4 KiB.
 * @return 0 or a negative errno.
 */
int guest_ram_create(struct guest_ram *ram, uint64_t size);

/**
 * Unmap and close.
 * @param ram the allocation (fd -1 is ignored).
 */
void guest_ram_destroy(struct guest_ram *ram);

#endif
