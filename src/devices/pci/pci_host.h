/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file pci_host.h
 * @brief The PCI Express host bridge: one bus, ECAM and conf1 configuration access,
 *        BAR allocation and BAR dispatch.
 *
 * Configuration space is reached through ECAM (PCIe base spec 7.2: offset =
 * bus << 20 | device << 15 | function << 12 | register) and through the
 * configuration mechanism #1 (PCI 3.0 3.2.2.3.2: an address register and a
 * data window of four ports). Only function 0 of each slot of bus @c bus_first
 * is populated; everything else reads all-ones and ignores writes.
 *
 * BARs are not registered on the I/O buses: the host registers each whole
 * window once and, for every access inside it, finds the BAR that currently
 * decodes the address (COMMAND enable bit set and the guest-programmed address
 * covering the access). That keeps BAR reprogramming by the guest (which happens
 * from inside a bus callback) away from the bus table.
 *
 * Locking: one mutex per host guards the slot table, the conf1 address
 * register and the table of decoded BARs; every configuration access runs
 * under it (device hooks included). A BAR access looks its BAR up under the
 * mutex and calls the device's callback after releasing it, so BAR callbacks
 * may do anything, including configuration accesses through the host. Devices
 * are never removed while vCPUs run, which keeps the looked-up pointer valid.
 */
#ifndef BULKHEAD_DEVICES_PCI_PCI_HOST_H
#define BULKHEAD_DEVICES_PCI_PCI_HOST_H

#include "core/bus.h"
#include "devices/pci/pci_device.h"

#include "core/lock.h"
#include <stdbool.h>
#include <stdint.h>

/** Devices (slots) on a PCI bus. */
#define PCI_HOST_SLOTS 32u
/** Functions per device. */
#define PCI_HOST_FUNCTIONS 8u
/** Configuration space per bus in ECAM. */
#define PCI_ECAM_BUS_SIZE (1ULL << 20)
/** First port of the configuration mechanism #1 (address register; data at +4). */
#define PCI_CONF1_PORT 0xcf8u
/** Ports decoded for the configuration mechanism #1. */
#define PCI_CONF1_LEN 8u
/** conf1 address register: enable bit. */
#define PCI_CONF1_ENABLE 0x80000000u
/** Vendor ID of the host bridge. */
#define PCI_HOST_BRIDGE_VENDOR 0x8086u
/** Device ID of the host bridge (a generic host bridge id other VMMs also use). */
#define PCI_HOST_BRIDGE_DEVICE 0x0d57u
/** Class code of the host bridge. */
#define PCI_HOST_BRIDGE_CLASS 0x060000u

/** Where the host decodes what, and how INTx is wired; given to pci_host_init(). */
struct pci_host_config {
    /** Guest-physical address of bus_first's configuration space; the ECAM range is
     *  (bus_last - bus_first + 1) MiB from here (the MCFG base address field, which names
     *  bus 0, is therefore ecam_base - (bus_first << 20)). */
    uint64_t ecam_base;
    uint8_t bus_first;    /**< Bus number of the root bus (where devices sit). */
    uint8_t bus_last;     /**< Last bus number the ECAM range covers (>= bus_first). */
    uint64_t mmio32_base; /**< 32-bit memory window: 32-bit and (if no mmio64) 64-bit BARs. */
    uint64_t mmio32_size; /**< Its length (non-zero; base + size <= 4 GiB). */
    uint64_t mmio64_base; /**< 64-bit memory window for 64-bit BARs. */
    uint64_t mmio64_size; /**< Its length, 0 when there is no 64-bit window. */
    uint32_t io_base;     /**< I/O window for I/O BARs. */
    uint32_t io_size;     /**< Its length, 0 when there is none (or no port I/O bus). */
    /**
     * GSI that an INTx pin of a slot is wired to (the machine's routing, e.g. its _PRT).
     * NULL: INTx is not connected.
     * @param ctx the irq_ctx member.
     * @param slot device number on the bus.
     * @param pin 0 for INTA .. 3 for INTD.
     * @return the GSI.
     */
    uint32_t (*route_intx)(void *ctx, unsigned slot, unsigned pin);
    /**
     * Set the level of a GSI (the machine's interrupt controller). NULL: not connected.
     * Called with the device's mutex held; must not call back into PCI.
     * @param ctx the irq_ctx member.
     * @param gsi the line.
     * @param level true for asserted.
     */
    void (*set_irq)(void *ctx, uint32_t gsi, bool level);
    void *irq_ctx; /**< Passed to route_intx() and set_irq(). */
};

/** A window the host registered on a bus and routes to BARs. */
struct pci_host_window {
    struct pci_host *host; /**< Back pointer for the bus callbacks. */
    uint64_t base;         /**< First address. */
    uint64_t size;         /**< Length; 0 when the window does not exist. */
    bool io;               /**< Routes to I/O BARs (else memory BARs). */
    bool registered;       /**< Registered on its bus (to undo on destroy). */
    uint64_t next;         /**< Allocation cursor: first address not yet handed out. */
};

/** One BAR that currently decodes, in the host's lookup table. */
struct pci_host_decode {
    uint64_t base;             /**< Address the guest programmed. */
    uint64_t size;             /**< BAR length. */
    bool io;                   /**< I/O space (else memory space). */
    const struct bus_ops *ops; /**< The device's BAR callbacks. */
    void *opaque;              /**< Passed to @c ops. */
};

/** Last decoding state reported to a device's bar_map hook. */
struct pci_host_bar_state {
    bool decoding; /**< The BAR decoded. */
    uint64_t addr; /**< At this address. */
};

/** The host bridge and its bus. */
struct pci_host {
    struct pci_host_config cfg; /**< Copy of the configuration. */
    struct bus *mmio;           /**< Bus holding the ECAM range and the memory windows. */
    struct bus *pio;            /**< Bus holding conf1 and the I/O window, or NULL. */
    os_mutex lock;              /**< Guards everything below. */
    struct pci_device *slots[PCI_HOST_SLOTS]; /**< Function 0 of each slot, or NULL. */
    struct pci_device bridge;                 /**< The host bridge at 00.0. */
    uint32_t conf1_addr;                      /**< conf1 address register. */
    bool ecam_registered;                     /**< ECAM range registered on mmio. */
    bool conf1_registered;                    /**< conf1 ports registered on pio. */
    struct pci_host_window mmio32;            /**< 32-bit memory window. */
    struct pci_host_window mmio64;            /**< 64-bit memory window. */
    struct pci_host_window io;                /**< I/O window. */
    /** BARs that currently decode, in slot and BAR order (first match wins). */
    struct pci_host_decode decode[PCI_HOST_SLOTS * PCI_NUM_BARS];
    unsigned nr_decode; /**< Valid entries in @c decode. */
    /** What each device's bar_map hook was last told. */
    struct pci_host_bar_state bar_state[PCI_HOST_SLOTS][PCI_NUM_BARS];
};

/**
 * Create the host bridge at 00.0 and register the ECAM range and both memory windows
 * on @p mmio, and (when @p pio is not NULL) the conf1 ports and the I/O window on @p pio.
 * @param h the host (any prior content is discarded).
 * @param cfg windows and INTx routing; copied.
 * @param mmio memory bus.
 * @param pio port I/O bus, or NULL where there is none.
 * @return 0, -EINVAL for an inconsistent configuration (empty, wrapping, misplaced or
 *         overlapping windows), or the error of bus_register() (e.g. -EEXIST).
 */
int pci_host_init(struct pci_host *h, const struct pci_host_config *cfg, struct bus *mmio,
                  struct bus *pio);

/**
 * Unregister the host's ranges and free the host bridge. Devices added with
 * pci_host_add_device() belong to the caller; vCPUs must have stopped.
 * @param h the host.
 */
void pci_host_destroy(struct pci_host *h);

/**
 * Place a device on the bus: assign its BARs from the windows (naturally aligned; I/O
 * BARs from the I/O window, 32-bit memory BARs from mmio32, 64-bit memory BARs from
 * mmio64 when it exists, else mmio32), enable decoding in COMMAND as firmware would,
 * wire its INTx pin through route_intx()/set_irq() and write the GSI to the interrupt
 * line register. The device's hooks and BARs must be set up before.
 * @param h the host.
 * @param dev an initialised device that is on no host.
 * @param slot 1..31, or -1 for the first free slot.
 * @return 0, -EINVAL for a bad slot or a device that is already on a host, -EBUSY when the
 *         slot is taken or no slot is free, -ENOSPC when a window cannot hold a BAR.
 */
int pci_host_add_device(struct pci_host *h, struct pci_device *dev, int slot);

/**
 * The device in a slot (e.g. to describe it in firmware tables).
 * @param h the host.
 * @param slot 0..31.
 * @return the device, or NULL for an empty slot or an invalid number.
 */
struct pci_device *pci_host_device(struct pci_host *h, unsigned slot);

#endif
