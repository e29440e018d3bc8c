/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file acpi.h
 * @brief The x86 machine's ACPI tables: RSDP, XSDT, FADT, FACS, DSDT, MADT, MCFG.
 *
 * The tables are generated from one description of the machine so that what the guest
 * is told (vCPUs, interrupt controllers, PM registers, PCI windows and INTx routing)
 * cannot drift from what the VMM emulates. The result is a byte image that the machine
 * copies to guest RAM; nothing here touches guest memory or the hypervisor.
 *
 * The platform described is a full (not hardware-reduced) ACPI 6.5 PC: fixed-feature
 * PM1a event/control blocks, a PM timer and a reset register in port I/O, no GPE blocks,
 * the machine permanently in ACPI mode (SMI_CMD = 0), one PCIe host bridge with ECAM.
 */
#ifndef BULKHEAD_ARCH_X86_ACPI_ACPI_H
#define BULKHEAD_ARCH_X86_ACPI_ACPI_H

#include <stddef.h>
#include <stdint.h>

/** Most vCPUs the MADT describes: xAPIC ids are 8 bits and 0xFF is the broadcast id. */
#define ACPI_MAX_CPUS 255

/** OEMID of every table (6 characters, space padded). */
#define ACPI_OEM_ID "BLKHD "
/** OEM Table ID of every table (8 characters). */
#define ACPI_OEM_TABLE_ID "BULKHEAD"
/** Creator ID of every table (4 characters). */
#define ACPI_CREATOR_ID "BLKH"
/** Hypervisor Vendor Identity in the FADT (8 characters). */
#define ACPI_HYPERVISOR_ID "BULKHEAD"

/** Everything the x86 ACPI tables describe. */
struct acpi_machine {
    unsigned nr_cpus;       /**< vCPUs, 1..ACPI_MAX_CPUS: LAPIC ids and processor UIDs 0..n-1. */
    uint64_t lapic_gpa;     /**< Local APIC register base (below 4 GiB). */
    uint64_t ioapic_gpa;    /**< IOAPIC register base (below 4 GiB). */
    uint8_t ioapic_id;      /**< IOAPIC id; must not collide with a LAPIC id (use nr_cpus). */
    uint64_t ecam_base;     /**< ECAM address of bus 0 (MCFG base), 1 MiB aligned. */
    uint8_t bus_first;      /**< First PCI bus number the host bridge decodes. */
    uint8_t bus_last;       /**< Last PCI bus number the host bridge decodes. */
    uint64_t mmio32_base;   /**< 32-bit PCI memory window start. */
    uint64_t mmio32_size;   /**< 32-bit PCI memory window length (non-zero, below 4 GiB). */
    uint64_t mmio64_base;   /**< 64-bit PCI memory window start. */
    uint64_t mmio64_size;   /**< 64-bit PCI memory window length; 0 when there is none. */
    uint32_t io_base;       /**< PCI I/O window for BARs; must lie above 0xCFF. */
    uint32_t io_size;       /**< Length of the PCI I/O window; must end at or below 0xFFFF. */
    uint16_t pm1a_evt_port; /**< PM1a event block (status + enable, 4 ports). */
    uint16_t pm1a_cnt_port; /**< PM1a control block (2 ports). */
    uint16_t pm_tmr_port;   /**< PM timer (4 ports, 24-bit counter). */
    uint16_t reset_port;    /**< Reset register (1 port). */
    uint8_t reset_value;    /**< Value that, written to reset_port, resets the machine. */
    uint8_t sci_irq;        /**< ISA IRQ (and GSI) of the SCI, 1..15, level-triggered high. */
    uint8_t s5_type;        /**< SLP_TYP value for S5 (soft off), 0..7. */
    uint16_t com1_port;     /**< COM1 base port (8 ports). */
    uint8_t com1_irq;       /**< COM1 ISA IRQ, 0..15. */
};

/**
 * Describe the machine of arch/x86/layout.h.
 * @param m receives the description.
 * @param nr_cpus number of vCPUs.
 * @param mmio64_base start of the 64-bit PCI window (above RAM, 1 GiB aligned); its size
 *        is X86_PCI_MMIO64_SIZE.
 */
void acpi_machine_from_layout(struct acpi_machine *m, unsigned nr_cpus, uint64_t mmio64_base);

/**
 * Lay out RSDP (at buf[0], which the guest sees at @p gpa), XSDT, FADT, FACS, DSDT, MADT
 * and MCFG into @p buf. All pointers inside the tables are guest-physical (gpa + offset).
 * Nothing is written when the tables do not fit.
 * @param m the machine to describe.
 * @param buf destination.
 * @param size bytes available at @p buf.
 * @param gpa guest-physical address of buf[0]; 16-byte aligned (RSDP scan), and the tables
 *        must end below 4 GiB (the FADT also carries 32-bit pointers).
 * @param used receives the number of bytes used on success.
 * @return 0, -ENOSPC when @p size is too small, -EINVAL for an inconsistent @p m or
 *         @p gpa, -ENOMEM when the DSDT could not be built.
 */
int acpi_build_tables(const struct acpi_machine *m, uint8_t *buf, size_t size, uint64_t gpa,
                      size_t *used);

#endif
