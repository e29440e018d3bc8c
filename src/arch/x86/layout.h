/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file layout.h
 * @brief The x86-64 machine's fixed guest-physical and port-I/O map.
 *
 * One place for every address the boot code, ACPI tables and devices must agree
 * on. RAM fills [0, min(mem, LOW_RAM_END)) and continues at 4 GiB. The 640 KiB
 * hole holds the legacy BIOS area; ACPI tables live at ACPI_TABLES_GPA so the
 * RSDP is found by the legacy scan as well as through boot_params/start_info.
 */
#ifndef BULKHEAD_ARCH_X86_LAYOUT_H
#define BULKHEAD_ARCH_X86_LAYOUT_H

/* ---- Guest-physical memory map ---- */

/** Top of conventional memory reported to the guest (EBDA starts here). */
#define X86_LOWMEM_TOP 0x9fc00ULL
/** Initial GDT used by the boot vCPU. */
#define X86_BOOT_GDT_GPA 0x500ULL
/** Initial IDT (empty) used by the boot vCPU. */
#define X86_BOOT_IDT_GPA 0x520ULL
/** PVH hvm_start_info and its memory map. */
#define X86_PVH_INFO_GPA 0x6000ULL
/** Boot page tables (PML4, PDPT, 4 PDs: identity map of the first 4 GiB with 2 MiB pages). */
#define X86_BOOT_PML4_GPA 0x9000ULL
/** Linux boot_params ("zero page"). */
#define X86_ZERO_PAGE_GPA 0x7000ULL
/** Initial stack pointer for the boot vCPU (grows down, below the zero page). */
#define X86_BOOT_STACK_GPA 0x8ff0ULL
/** Kernel command line. */
#define X86_CMDLINE_GPA 0x20000ULL
/** Longest command line accepted, including the NUL. */
#define X86_CMDLINE_MAX 4096
/** ACPI tables (RSDP first); inside the legacy BIOS area the RSDP scan looks at. */
#define X86_ACPI_TABLES_GPA 0xe0000ULL
/** Room for the ACPI tables. */
#define X86_ACPI_TABLES_SIZE 0x20000ULL
/** Start of the BIOS area reported as reserved (EBDA up to 1 MiB). */
#define X86_BIOS_AREA_START 0x9fc00ULL
/** Default load address of a protected-mode kernel. */
#define X86_KERNEL_LOAD_GPA 0x1000000ULL
/** RAM below 4 GiB ends here at most; the PCI hole follows. */
#define X86_LOW_RAM_END 0xc0000000ULL
/** Start of RAM above 4 GiB. */
#define X86_HIGH_RAM_START 0x100000000ULL

/** 32-bit PCI memory window (BARs below 4 GiB). */
#define X86_PCI_MMIO32_BASE 0xc0000000ULL
/** Size of the 32-bit PCI memory window. */
#define X86_PCI_MMIO32_SIZE 0x20000000ULL
/** PCIe ECAM (MMCONFIG) base: 1 MiB per bus. */
#define X86_PCI_ECAM_BASE 0xe0000000ULL
/** First bus number decoded. */
#define X86_PCI_BUS_FIRST 0
/** Last bus number decoded. */
#define X86_PCI_BUS_LAST 0
/** ECAM size for the decoded buses. */
#define X86_PCI_ECAM_SIZE (((X86_PCI_BUS_LAST) - (X86_PCI_BUS_FIRST) + 1ULL) << 20)
/** Size of the 64-bit PCI memory window, placed above RAM at a 1 GiB boundary. */
#define X86_PCI_MMIO64_SIZE 0x400000000ULL
/** IOAPIC registers. */
#define X86_IOAPIC_GPA 0xfec00000ULL
/** LAPIC registers. */
#define X86_LAPIC_GPA 0xfee00000ULL
/** Where KVM on Intel keeps its TSS and identity page table (3 pages + 1 page); reserved. */
#define X86_HV_PRIVATE_GPA 0xfeffc000ULL
/** Size of the hypervisor-private area. */
#define X86_HV_PRIVATE_SIZE 0x4000ULL

/* ---- Port I/O map ---- */

/** COM1 base port. */
#define X86_COM1_PORT 0x3f8
/** COM1 ISA interrupt. */
#define X86_COM1_IRQ 4
/** COM2 base port (the second UART, --serial2: a serial link to another VM). */
#define X86_COM2_PORT 0x2f8
/** COM2 ISA interrupt. */
#define X86_COM2_IRQ 3
/** i8042 data port (reads only). */
#define X86_I8042_DATA_PORT 0x60
/** i8042 command/status port: 0xfe written here pulses the CPU reset line. */
#define X86_I8042_CMD_PORT 0x64
/** ACPI PM1a event block (status + enable, 4 bytes). */
#define X86_ACPI_PM1A_EVT_PORT 0x600
/** ACPI PM1a control block (2 bytes). */
#define X86_ACPI_PM1A_CNT_PORT 0x604
/** ACPI PM timer (4 bytes, 24-bit counter at 3.579545 MHz). */
#define X86_ACPI_PM_TMR_PORT 0x608
/** ACPI reset register (1 byte). */
#define X86_ACPI_RESET_PORT 0x60c
/** Value written to the reset register to reset the machine. */
#define X86_ACPI_RESET_VALUE 0x01
/** Length of the whole ACPI PM I/O block. */
#define X86_ACPI_PM_LEN 0x10
/** ACPI SCI interrupt (ISA IRQ, level-triggered, active high). */
#define X86_ACPI_SCI_IRQ 9
/** S5 (soft-off) sleep type value written to SLP_TYP. */
#define X86_ACPI_S5_TYPE 5
/** PCI configuration mechanism #1 (0xcf8 address, 0xcfc data). */
#define X86_PCI_CONF1_PORT 0xcf8
/** PCI I/O window for BARs. */
#define X86_PCI_IO_BASE 0x1000
/** Size of the PCI I/O window. */
#define X86_PCI_IO_SIZE 0xf000

/** First IOAPIC pin used for PCI INTx. */
#define X86_PCI_INTX_GSI_BASE 16
/**
 * GSI that INTx pin @p pin (0 = INTA) of PCI slot @p slot is wired to: the eight pins 16..23
 * are shared round-robin, as the DSDT's _PRT says.
 */
#define X86_PCI_INTX_GSI(slot, pin) (X86_PCI_INTX_GSI_BASE + (((slot) + (pin)) & 7u))

/** Number of IOAPIC pins (GSIs 0..23). */
#define X86_IOAPIC_PINS 24

#endif
