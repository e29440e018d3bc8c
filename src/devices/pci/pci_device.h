/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file pci_device.h
 * @brief The configuration space of one PCI function (type 0 header, 4 KiB).
 *
 * The space is modelled as bytes with two masks: a byte-wise write mask (bits
 * the guest may change) and a write-1-to-clear mask (status bits). Every guest
 * write goes through them one byte at a time, which makes unaligned and
 * cross-dword accesses, read-only registers and BAR sizing (address bits below
 * the BAR size are simply not writable) fall out of the same rule instead of
 * needing per-register code.
 *
 * Two kinds of callers use a device:
 *  - the guest, through the host bridge: pci_device_config_read() and
 *    pci_device_config_write() apply the masks and call the device's hooks;
 *  - the device model itself: pci_device_get() and pci_device_set() read and
 *    write raw bytes (used to build capabilities and to reflect device state).
 *
 * Locking: each device has a mutex that guards its bytes and its INTx state,
 * so a device thread may call pci_device_get(), pci_device_set() and
 * pci_device_set_intx() while a vCPU accesses the configuration space. Guest
 * accesses to one device must be serialised by the caller (the PCI host does
 * it with its lock); the hooks are called with the device mutex released but
 * that serialisation still held, so a hook may use the pci_device_* accessors
 * but must not access configuration space through the host.
 */
#ifndef BULKHEAD_DEVICES_PCI_PCI_DEVICE_H
#define BULKHEAD_DEVICES_PCI_PCI_DEVICE_H

#include "core/bus.h"
#include "core/irq.h"

#include "core/lock.h"
#include <stdbool.h>
#include <stdint.h>

/** Size of a PCI Express function's configuration space. */
#define PCI_CFG_SPACE_SIZE 4096u
/** Size of the conventional PCI part of it (where the capability list lives). */
#define PCI_CFG_SPACE_LEGACY 256u
/** Number of Base Address Registers in a type 0 header. */
#define PCI_NUM_BARS 6u
/** Most capabilities one device may add with pci_device_add_capability(). */
#define PCI_MAX_CAPS 24u

/** Vendor ID register (16 bits, read-only). */
#define PCI_CFG_VENDOR_ID 0x00u
/** Device ID register (16 bits, read-only). */
#define PCI_CFG_DEVICE_ID 0x02u
/** Command register (16 bits). */
#define PCI_CFG_COMMAND 0x04u
/** Status register (16 bits). */
#define PCI_CFG_STATUS 0x06u
/** Revision ID register (8 bits, read-only). */
#define PCI_CFG_REVISION 0x08u
/** Class code: programming interface, subclass, base class (24 bits from here, read-only). */
#define PCI_CFG_CLASS_PROG 0x09u
/** Cache line size register (8 bits, read-write, no effect). */
#define PCI_CFG_CACHE_LINE 0x0cu
/** Header type register (8 bits, read-only). */
#define PCI_CFG_HEADER_TYPE 0x0eu
/** First Base Address Register; BAR n is at PCI_CFG_BAR0 + 4 * n. */
#define PCI_CFG_BAR0 0x10u
/** Subsystem vendor ID register (16 bits, read-only). */
#define PCI_CFG_SUBSYS_VENDOR 0x2cu
/** Subsystem ID register (16 bits, read-only). */
#define PCI_CFG_SUBSYS_ID 0x2eu
/** Expansion ROM base address register (not implemented: reads 0). */
#define PCI_CFG_ROM 0x30u
/** Capabilities pointer (8 bits, read-only). */
#define PCI_CFG_CAP_PTR 0x34u
/** Interrupt line register (8 bits, read-write, for the OS's bookkeeping). */
#define PCI_CFG_INT_LINE 0x3cu
/** Interrupt pin register (8 bits, read-only: 0 none, 1..4 INTA..INTD). */
#define PCI_CFG_INT_PIN 0x3du
/** First offset available to capabilities (end of the type 0 header). */
#define PCI_CFG_CAP_START 0x40u

/** COMMAND: respond to I/O space accesses. */
#define PCI_COMMAND_IO 0x0001u
/** COMMAND: respond to memory space accesses. */
#define PCI_COMMAND_MEMORY 0x0002u
/** COMMAND: the device may issue DMA and MSIs. */
#define PCI_COMMAND_MASTER 0x0004u
/** COMMAND: SERR# reporting enable. */
#define PCI_COMMAND_SERR 0x0100u
/** COMMAND: the device must not assert INTx. */
#define PCI_COMMAND_INTX_DISABLE 0x0400u
/** The COMMAND bits a guest can change; all others read as zero. */
#define PCI_COMMAND_WRITABLE                                                                       \
    (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR |                 \
     PCI_COMMAND_INTX_DISABLE)

/** STATUS: INTx is asserted by the function (regardless of INTx disable). */
#define PCI_STATUS_INTERRUPT 0x0008u
/** STATUS: the capabilities pointer is valid. */
#define PCI_STATUS_CAP_LIST 0x0010u
/** STATUS error bits, cleared by writing 1 (parity, target/master aborts, SERR). */
#define PCI_STATUS_W1C 0xf900u

/** Header type 0 (a function that is not a bridge). */
#define PCI_HEADER_TYPE_NORMAL 0x00u

/** BAR bit 0: the BAR decodes I/O space. */
#define PCI_BAR_SPACE_IO 0x1u
/** Memory BAR type field value for a 64-bit BAR (bits 2:1). */
#define PCI_BAR_MEM_TYPE_64 0x4u
/** Memory BAR bit 3: prefetchable. */
#define PCI_BAR_MEM_PREFETCH 0x8u
/** Low bits of an I/O BAR that are not address bits. */
#define PCI_BAR_IO_FLAGS 0x3u
/** Low bits of a memory BAR that are not address bits. */
#define PCI_BAR_MEM_FLAGS 0xfu

/** Capability ID of power management. */
#define PCI_CAP_ID_PM 0x01u
/** Capability ID of MSI. */
#define PCI_CAP_ID_MSI 0x05u
/** Capability ID of a vendor-specific capability (virtio uses it). */
#define PCI_CAP_ID_VNDR 0x09u
/** Capability ID of PCI Express. */
#define PCI_CAP_ID_EXP 0x10u
/** Capability ID of MSI-X. */
#define PCI_CAP_ID_MSIX 0x11u

/** Vendor ID that an absent function returns (with every other byte all-ones). */
#define PCI_VENDOR_ID_NONE 0xffffu

/** Kind of a Base Address Register. */
enum pci_bar_type {
    PCI_BAR_UNUSED = 0, /**< Not implemented: reads 0, ignores writes. */
    PCI_BAR_IO,         /**< I/O space BAR. */
    PCI_BAR_MEM32,      /**< 32-bit memory BAR. */
    PCI_BAR_MEM64,      /**< 64-bit memory BAR: this register and the next form the pair. */
    PCI_BAR_MEM64_HIGH, /**< Upper half of the pair that starts at the previous index. */
};

/** One BAR as the device model declared it. */
struct pci_bar {
    enum pci_bar_type type;    /**< Kind of BAR. */
    bool prefetchable;         /**< Memory BARs only: advertised as prefetchable. */
    uint64_t size;             /**< Decoded length, a power of two (0 for unused). */
    const struct bus_ops *ops; /**< Called with the offset into the BAR. */
    void *opaque;              /**< Passed to @c ops. */
};

struct pci_device;

/**
 * Callbacks through which a device model follows what the guest does to its
 * configuration space. Every member may be NULL. They are called with the
 * caller's serialisation held (the PCI host's lock) and the device mutex
 * released; they must not access configuration space through the host.
 */
struct pci_device_hooks {
    /**
     * A guest write touched bytes of a capability added with
     * pci_device_add_capability(). Called after the masks were applied, once per
     * capability the access overlaps, with the overlapping part only.
     * @param opaque as given to pci_device_set_hooks().
     * @param dev the device.
     * @param cap offset of the capability (its ID byte).
     * @param offset configuration space offset of the first byte written inside it.
     * @param size number of bytes written inside it (1..4).
     * @param old_val those bytes before the write (little-endian, zero-extended).
     * @param new_val those bytes after the write.
     */
    void (*cap_write)(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                      unsigned size, uint32_t old_val, uint32_t new_val);
    /**
     * A guest read touched bytes of a capability: lets the device supply values
     * computed on demand. Same argument conventions as @c cap_write.
     * @param opaque as given to pci_device_set_hooks().
     * @param dev the device.
     * @param cap offset of the capability (its ID byte).
     * @param offset configuration space offset of the first byte read inside it.
     * @param size number of bytes read inside it (1..4).
     * @param value the stored bytes.
     * @return the bytes to return to the guest.
     */
    uint32_t (*cap_read)(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                         unsigned size, uint32_t value);
    /**
     * Whether and where a BAR decodes changed (COMMAND enable bit or guest-programmed
     * address). Called by the PCI host, e.g. so that doorbells can follow the BAR.
     * @param opaque as given to pci_device_set_hooks().
     * @param dev the device.
     * @param bar BAR index (the low index of a 64-bit pair).
     * @param decoding true when the BAR now decodes accesses at @p addr.
     * @param addr the BAR's address when @p decoding, else the last address it decoded at.
     */
    void (*bar_map)(void *opaque, struct pci_device *dev, unsigned bar, bool decoding,
                    uint64_t addr);
};

/** Identity and fixed registers of a function, given at initialisation. */
struct pci_device_info {
    uint16_t vendor_id;        /**< Vendor ID (not 0xffff). */
    uint16_t device_id;        /**< Device ID. */
    uint32_t class_code;       /**< Base class << 16 | subclass << 8 | programming interface. */
    uint8_t revision;          /**< Revision ID. */
    uint16_t subsys_vendor_id; /**< Subsystem vendor ID. */
    uint16_t subsys_id;        /**< Subsystem ID. */
    uint8_t intx_pin;          /**< Interrupt pin: 0 none, 1..4 INTA..INTD. */
    const char *name;          /**< For logs (must outlive the device). */
};

/** A capability added with pci_device_add_capability(). */
struct pci_cap {
    uint8_t offset; /**< Offset of its ID byte. */
    uint8_t len;    /**< Length including the ID and next bytes. */
};

/** One PCI function. Members are private to pci_device.c and pci_host.c. */
struct pci_device {
    uint8_t cfg[PCI_CFG_SPACE_SIZE];      /**< Register contents. */
    uint8_t wmask[PCI_CFG_SPACE_SIZE];    /**< Per bit: 1 where a guest write stores the bit. */
    uint8_t w1c[PCI_CFG_SPACE_SIZE];      /**< Per bit: 1 where a guest write of 1 clears it. */
    struct pci_bar bars[PCI_NUM_BARS];    /**< BARs as declared by the device model. */
    struct pci_cap caps[PCI_MAX_CAPS];    /**< Capabilities in list order. */
    unsigned nr_caps;                     /**< Valid entries in @c caps. */
    unsigned cap_end;                     /**< First free byte after the last capability. */
    const struct pci_device_hooks *hooks; /**< Device callbacks, or NULL. */
    void *hooks_opaque;                   /**< Passed to @c hooks. */
    struct irq_line intx;                 /**< Where INTx goes; wired by the host. */
    bool intx_level;                      /**< Level the device model drives on its pin. */
    bool intx_out;                        /**< Level currently driven on @c intx. */
    int slot;                             /**< Slot on the bus, -1 until added to a host. */
    const char *name;                     /**< For logs. */
    os_mutex lock;                        /**< Guards cfg, the masks and the INTx state. */
};

/**
 * Initialise a function's configuration space with its identity and the
 * standard writable registers (COMMAND, STATUS W1C bits, cache line size,
 * interrupt line). No BARs, no capabilities.
 * @param dev the device (any prior content is discarded).
 * @param info identity and fixed registers.
 * @return 0, -EINVAL for vendor 0xffff or an interrupt pin above 4, or a negative errno
 *         from the mutex initialisation.
 */
int pci_device_init(struct pci_device *dev, const struct pci_device_info *info);

/**
 * Release what pci_device_init() acquired. The device must not be on a host any more
 * (or the host must have been destroyed).
 * @param dev the device.
 */
void pci_device_destroy(struct pci_device *dev);

/**
 * Declare a BAR. Must be called before the device is added to a host, which
 * assigns its address.
 * @param dev the device.
 * @param index BAR index 0..5; a 64-bit BAR also takes index + 1.
 * @param type PCI_BAR_IO, PCI_BAR_MEM32 or PCI_BAR_MEM64.
 * @param size length, a power of two: 4..256 for I/O, at least 16 for memory, at most
 *        2 GiB for a 32-bit memory BAR.
 * @param prefetchable memory BARs only: advertise prefetchable.
 * @param ops callbacks receiving the offset into the BAR (must outlive the device).
 * @param opaque passed to @p ops.
 * @return 0, -EINVAL for a bad index, type, size or flag, -EBUSY if the register (or the
 *         upper half of a 64-bit pair) is already used or the device is already on a host.
 */
int pci_device_set_bar(struct pci_device *dev, unsigned index, enum pci_bar_type type,
                       uint64_t size, bool prefetchable, const struct bus_ops *ops, void *opaque);

/**
 * Append a capability to the capability list (in the first 256 bytes, dword aligned).
 * The ID and next bytes are filled in and read-only; the body is zero and read-only
 * until the device sets its content with pci_device_set() and its writable bits with
 * pci_device_set_wmask().
 * @param dev the device.
 * @param id capability ID (PCI_CAP_ID_*).
 * @param len capability length in bytes including the two header bytes (2..192).
 * @return the offset of the capability (>= 0x40), -EINVAL for a bad length, -ENOSPC when
 *         it does not fit or the device has PCI_MAX_CAPS capabilities, -EBUSY if the device
 *         is already on a host.
 */
int pci_device_add_capability(struct pci_device *dev, uint8_t id, unsigned len);

/**
 * Install the device's hooks (before the device is added to a host).
 * @param dev the device.
 * @param hooks callbacks (must outlive the device), or NULL for none.
 * @param opaque passed to the callbacks.
 */
void pci_device_set_hooks(struct pci_device *dev, const struct pci_device_hooks *hooks,
                          void *opaque);

/**
 * Read raw configuration bytes (device-model side: no hooks).
 * @param dev the device.
 * @param offset offset in the configuration space.
 * @param size 1, 2 or 4; offset + size must not exceed PCI_CFG_SPACE_SIZE.
 * @return the bytes, little-endian; all-ones for an out-of-range request.
 */
uint32_t pci_device_get(struct pci_device *dev, unsigned offset, unsigned size);

/**
 * Write raw configuration bytes, ignoring the write masks (device-model side:
 * capability contents, status bits). Out-of-range requests are ignored.
 * @param dev the device.
 * @param offset offset in the configuration space.
 * @param size 1, 2 or 4; offset + size must not exceed PCI_CFG_SPACE_SIZE.
 * @param value the bytes, little-endian.
 */
void pci_device_set(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value);

/**
 * Set which bits of a range the guest may write. Out-of-range requests are ignored.
 * @param dev the device.
 * @param offset offset in the configuration space.
 * @param size 1, 2 or 4; offset + size must not exceed PCI_CFG_SPACE_SIZE.
 * @param mask 1 bits are writable, 0 bits read-only.
 */
void pci_device_set_wmask(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask);

/**
 * Set which bits of a range the guest clears by writing 1 (they should not be in the
 * write mask). Out-of-range requests are ignored.
 * @param dev the device.
 * @param offset offset in the configuration space.
 * @param size 1, 2 or 4; offset + size must not exceed PCI_CFG_SPACE_SIZE.
 * @param mask 1 bits are write-1-to-clear.
 */
void pci_device_set_w1c(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask);

/**
 * Guest read of the configuration space: any alignment, any size up to 4 bytes.
 * @param dev the device.
 * @param offset offset (guest-controlled).
 * @param size 1..4 (guest-controlled).
 * @return the bytes, little-endian; all-ones for an out-of-range request.
 */
uint32_t pci_device_config_read(struct pci_device *dev, unsigned offset, unsigned size);

/**
 * Guest write of the configuration space: any alignment, any size up to 4 bytes,
 * applied byte by byte through the write and write-1-to-clear masks. Out-of-range
 * requests are ignored.
 * @param dev the device.
 * @param offset offset (guest-controlled).
 * @param size 1..4 (guest-controlled).
 * @param value the bytes, little-endian.
 */
void pci_device_config_write(struct pci_device *dev, unsigned offset, unsigned size,
                             uint32_t value);

/**
 * The address a BAR currently holds (as programmed by the guest or the host).
 * @param dev the device.
 * @param index BAR index (the low index of a 64-bit pair).
 * @param addr receives the address with the flag bits removed.
 * @return 0, or -EINVAL when @p index is not an implemented BAR (or is an upper half).
 */
int pci_device_bar_address(struct pci_device *dev, unsigned index, uint64_t *addr);

/**
 * Program a BAR's address as firmware would (the flag bits are kept).
 * @param dev the device.
 * @param index BAR index (the low index of a 64-bit pair).
 * @param addr the address, aligned to the BAR size.
 * @return 0, or -EINVAL for a bad index, a misaligned address or one that a 32-bit BAR
 *         cannot hold.
 */
int pci_device_set_bar_address(struct pci_device *dev, unsigned index, uint64_t addr);

/**
 * Drive the device's INTx pin. The line is asserted only while the level is high and
 * COMMAND.INTx-disable is clear; STATUS.Interrupt follows the level. The wired
 * irq_line's setter is called with the device mutex held and must not call back into
 * this device.
 * @param dev the device.
 * @param level true to assert.
 */
void pci_device_set_intx(struct pci_device *dev, bool level);

#endif
