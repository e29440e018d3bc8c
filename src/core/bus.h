/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file bus.h
 * @brief Address-range dispatch of guest I/O (port I/O or MMIO) to device models.
 *
 * A device registers the range it decodes with a pair of callbacks. An exit's
 * address is looked up here and the access handed to the device with the
 * offset into its range, so devices never see absolute addresses and never
 * see an access that straddles their range.
 *
 * Ranges are registered while the machine is assembled. They may also change
 * while vCPUs run, so the table is guarded by a reader-writer lock; callbacks
 * run with the read lock held and must not register or unregister ranges on
 * the same bus. (PCI BARs therefore do not live here: the PCI host registers
 * its whole windows once and routes accesses to BARs itself.)
 */
#ifndef BULKHEAD_CORE_BUS_H
#define BULKHEAD_CORE_BUS_H

#include "core/lock.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Callbacks of a device range. Sizes are 1, 2, 4 or 8 bytes. */
struct bus_ops {
    /**
     * Read @p size bytes at @p offset of the range.
     * @param opaque the device, as registered.
     * @param offset offset from the range base; offset + size <= range length.
     * @param size access width in bytes.
     * @return the value, zero-extended; devices return all-ones for unimplemented registers.
     */
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    /**
     * Write @p size bytes at @p offset of the range.
     * @param opaque the device, as registered.
     * @param offset offset from the range base; offset + size <= range length.
     * @param size access width in bytes.
     * @param value the value written, zero-extended.
     */
    void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
};

/** One registered range. */
struct bus_range {
    uint64_t base;             /**< First address decoded. */
    uint64_t len;              /**< Number of addresses decoded (non-zero). */
    const struct bus_ops *ops; /**< The device's callbacks. */
    void *opaque;              /**< Passed back to the callbacks. */
    const char *name;          /**< For logs. */
};

/** A set of non-overlapping ranges (one for port I/O, one for MMIO). */
struct bus {
    const char *name;         /**< "pio" or "mmio", for logs. */
    struct bus_range *ranges; /**< Sorted by base. */
    size_t nr_ranges;         /**< Valid entries in ranges. */
    size_t cap;               /**< Allocated entries. */
    os_rwlock lock;           /**< Guards the table. */
    uint64_t unhandled;       /**< Count of accesses that hit no range (statistic). */
};

/**
 * Initialise an empty bus.
 * @param bus the bus.
 * @param name short name for logs.
 * @return 0, or a negative errno from the lock initialisation.
 */
int bus_init(struct bus *bus, const char *name);

/**
 * Free the range table.
 * @param bus the bus.
 */
void bus_destroy(struct bus *bus);

/**
 * Register a device range.
 * @param bus the bus.
 * @param base first address.
 * @param len length, non-zero; base + len must not wrap.
 * @param ops callbacks (must outlive the registration).
 * @param opaque passed to the callbacks.
 * @param name for logs (must outlive the registration).
 * @return 0, -EINVAL for an empty or wrapping range, -EEXIST if it overlaps a registered range,
 *         -ENOMEM.
 */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
                 void *opaque, const char *name);

/**
 * Remove the range that starts at @p base and belongs to @p opaque.
 * @param bus the bus.
 * @param base the base it was registered with.
 * @param opaque the opaque it was registered with.
 * @return 0, or -ENOENT when no such range is registered.
 */
int bus_unregister(struct bus *bus, uint64_t base, void *opaque);

/**
 * Dispatch a read.
 * @param bus the bus.
 * @param addr address (guest-controlled).
 * @param size access width: 1, 2, 4 or 8.
 * @param value receives the value; all-ones when no device decodes the access.
 * @return 0 when a device handled it, -ENOENT when no range contains [addr, addr + size).
 */
int bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value);

/**
 * Dispatch a write.
 * @param bus the bus.
 * @param addr address (guest-controlled).
 * @param size access width: 1, 2, 4 or 8.
 * @param value the value written.
 * @return 0 when a device handled it, -ENOENT when no range contains [addr, addr + size).
 */
int bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

#endif
