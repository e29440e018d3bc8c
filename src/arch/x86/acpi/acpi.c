/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ACPI table builder. Layouts are from the ACPI 6.5 specification: 5.2.5 RSDP, 5.2.6
 * table header, 5.2.8 XSDT, 5.2.9 FADT, 5.2.10 FACS, 5.2.12 MADT; and from the PCI
 * Firmware specification (MCFG, host bridge _OSC). Tables are written byte by byte in
 * little-endian order at fixed offsets, so the image does not depend on the host's
 * struct layout or byte order.
 */
#include "arch/x86/acpi/acpi.h"

#include "arch/x86/acpi/aml.h"
#include "arch/x86/layout.h"
#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Revisions implemented (ACPI 6.5; MCFG from the PCI Firmware spec 3.3). */
#define RSDP_REVISION      2 /* ACPI 2.0+ RSDP with XSDT */
#define XSDT_REVISION      1
#define FADT_REVISION      6
#define FADT_MINOR_VERSION 5
#define FACS_VERSION       2
#define DSDT_REVISION      2 /* 64-bit AML integers */
#define MADT_REVISION      6
#define MCFG_REVISION      1
#define OEM_REVISION       1
#define CREATOR_REVISION   1

#define HDR_LEN      36 /* system description table header */
#define RSDP_LEN     36
#define RSDP_V1_LEN  20 /* part covered by the first checksum */
#define XSDT_ENTRIES 3  /* FADT, MADT, MCFG */
#define XSDT_LEN     (HDR_LEN + 8 * XSDT_ENTRIES)
#define FADT_LEN     276
#define FACS_LEN     64
#define MCFG_LEN     (HDR_LEN + 8 + 16)

/* Header field offsets (5.2.6). */
#define HDR_SIGNATURE  0
#define HDR_LENGTH     4
#define HDR_REVISION   8
#define HDR_CHECKSUM   9
#define HDR_OEMID      10
#define HDR_OEM_TABLE  16
#define HDR_OEM_REV    24
#define HDR_CREATOR    28
#define HDR_CREATOR_RV 32

/* RSDP field offsets (5.2.5.3). */
#define RSDP_CHECKSUM     8
#define RSDP_OEMID        9
#define RSDP_REV          15
#define RSDP_RSDT         16
#define RSDP_LENGTH       20
#define RSDP_XSDT         24
#define RSDP_EXT_CHECKSUM 32

/* FADT field offsets (5.2.9, table 5.9). */
#define FADT_FIRMWARE_CTRL   36
#define FADT_DSDT            40
#define FADT_PM_PROFILE      45
#define FADT_SCI_INT         46
#define FADT_SMI_CMD         48
#define FADT_PM1A_EVT_BLK    56
#define FADT_PM1A_CNT_BLK    64
#define FADT_PM_TMR_BLK      76
#define FADT_PM1_EVT_LEN     88
#define FADT_PM1_CNT_LEN     89
#define FADT_PM_TMR_LEN      91
#define FADT_P_LVL2_LAT      96
#define FADT_P_LVL3_LAT      98
#define FADT_IAPC_BOOT_ARCH  109
#define FADT_FLAGS           112
#define FADT_RESET_REG       116
#define FADT_RESET_VALUE     128
#define FADT_MINOR           131
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT          140
#define FADT_X_PM1A_EVT_BLK  148
#define FADT_X_PM1A_CNT_BLK  172
#define FADT_X_PM_TMR_BLK    208
#define FADT_HYPERVISOR_ID   268

/* FADT Flags (table 5.10). */
#define FADT_F_WBINVD        (1u << 0)
#define FADT_F_PROC_C1       (1u << 2)
#define FADT_F_PWR_BUTTON    (1u << 4) /* set: no fixed-feature power button */
#define FADT_F_SLP_BUTTON    (1u << 5) /* set: no fixed-feature sleep button */
#define FADT_F_FIX_RTC       (1u << 6) /* set: no RTC wake status in the PM1 block */
#define FADT_F_TMR_VAL_EXT   (1u << 8)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED    (1u << 20)

/* IA-PC boot architecture flags (table 5.11). */
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_8042           (1u << 1)
#define BOOT_ARCH_NO_VGA         (1u << 2)
#define BOOT_ARCH_NO_MSI         (1u << 3)
#define BOOT_ARCH_NO_CMOS_RTC    (1u << 5)

/* Generic Address Structure (5.2.3.2). */
#define GAS_LEN          12
#define GAS_SYSTEM_IO    1
#define GAS_ACCESS_BYTE  1
#define GAS_ACCESS_WORD  2
#define GAS_ACCESS_DWORD 3

/* C-state latencies above these mean "C2/C3 not supported" (5.2.9). */
#define P_LVL2_LAT_NONE 101
#define P_LVL3_LAT_NONE 1001

/* FACS field offsets (5.2.10). */
#define FACS_LENGTH      4
#define FACS_VERSION_OFF 32
#define FACS_ALIGN       64

/* MADT (5.2.12). */
#define MADT_LAPIC_ADDR    36
#define MADT_FLAGS         40
#define MADT_PCAT_COMPAT   (1u << 0)
#define MADT_T_LAPIC       0
#define MADT_T_IOAPIC      1
#define MADT_T_ISO         2
#define MADT_T_LAPIC_NMI   4
#define MADT_LAPIC_LEN     8
#define MADT_IOAPIC_LEN    12
#define MADT_ISO_LEN       10
#define MADT_LAPIC_NMI_LEN 6
#define MADT_NR_ISO        2
#define MADT_LAPIC_ENABLED (1u << 0)
#define MPS_ACTIVE_HIGH    0x1u
#define MPS_LEVEL          (0x3u << 2)
#define ACPI_ALL_CPUS      0xff

/* PM block lengths (ports). */
#define PM1_EVT_LEN 4
#define PM1_CNT_LEN 2
#define PM_TMR_LEN  4

#define ECAM_BUS_SHIFT 20
#define PCI_CONF1_LEN  8
#define LEGACY_IO_END  0xcf7 /* last port of the low I/O window, below the 0xCF8 config ports */
#define PCI_NR_SLOTS   32
#define PCI_NR_PINS    4

/* PCI host bridge _OSC (PCI Firmware spec 3.3, 4.5). */
#define PCI_OSC_UUID          "33DB4D5B-1FF7-401C-9657-7441C03DD766"
#define OSC_CDW1_BAD_UUID     0x04u
#define OSC_CDW1_BAD_REVISION 0x08u
#define OSC_CDW1_MASKED       0x10u
/*
 * Control the OS may have: PME (bit 2), AER (3), PCIe capability structure (4), LTR (5)
 * and DPC (7). The machine has no firmware-first error handling or power management to
 * keep for itself. Native PCIe and SHPC hot plug (bits 0, 1) are withheld: there are no
 * hot-plug slots.
 */
#define OSC_GRANTED 0xbcu

_Static_assert(X86_PCI_INTX_GSI(PCI_NR_SLOTS - 1, PCI_NR_PINS - 1) < X86_IOAPIC_PINS,
               "PCI INTx routing must stay within the IOAPIC's pins");

static void put8(uint8_t *p, size_t off, uint8_t v)
{
    p[off] = v;
}

static void put16(uint8_t *p, size_t off, uint16_t v)
{
    p[off] = (uint8_t)v;
    p[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[off + i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[off + i] = (uint8_t)(v >> (8 * i));
}

static void put_chars(uint8_t *p, size_t off, const char *s, size_t n)
{
    memcpy(p + off, s, n);
}

/* The value that makes the bytes sum to zero modulo 256. */
static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0u - sum);
}

static void put_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
    put_chars(t, HDR_SIGNATURE, sig, 4);
    put32(t, HDR_LENGTH, len);
    put8(t, HDR_REVISION, rev);
    put_chars(t, HDR_OEMID, ACPI_OEM_ID, 6);
    put_chars(t, HDR_OEM_TABLE, ACPI_OEM_TABLE_ID, 8);
    put32(t, HDR_OEM_REV, OEM_REVISION);
    put_chars(t, HDR_CREATOR, ACPI_CREATOR_ID, 4);
    put32(t, HDR_CREATOR_RV, CREATOR_REVISION);
}

/* Fill the checksum once every other byte of the table is final. */
static void seal(uint8_t *t, size_t len)
{
    t[HDR_CHECKSUM] = 0;
    t[HDR_CHECKSUM] = checksum(t, len);
}

static void put_gas_io(uint8_t *p, size_t off, uint8_t bits, uint8_t access, uint16_t port)
{
    put8(p, off, GAS_SYSTEM_IO);
    put8(p, off + 1, bits);
    put8(p, off + 2, 0); /* bit offset */
    put8(p, off + 3, access);
    put64(p, off + 4, port);
}

void acpi_machine_from_layout(struct acpi_machine *m, unsigned nr_cpus, uint64_t mmio64_base)
{
    memset(m, 0, sizeof(*m));
    m->nr_cpus = nr_cpus;
    m->lapic_gpa = X86_LAPIC_GPA;
    m->ioapic_gpa = X86_IOAPIC_GPA;
    m->ioapic_id = (uint8_t)nr_cpus;
    m->ecam_base = X86_PCI_ECAM_BASE;
    m->bus_first = X86_PCI_BUS_FIRST;
    m->bus_last = X86_PCI_BUS_LAST;
    m->mmio32_base = X86_PCI_MMIO32_BASE;
    m->mmio32_size = X86_PCI_MMIO32_SIZE;
    m->mmio64_base = mmio64_base;
    m->mmio64_size = X86_PCI_MMIO64_SIZE;
    m->io_base = X86_PCI_IO_BASE;
    m->io_size = X86_PCI_IO_SIZE;
    m->pm1a_evt_port = X86_ACPI_PM1A_EVT_PORT;
    m->pm1a_cnt_port = X86_ACPI_PM1A_CNT_PORT;
    m->pm_tmr_port = X86_ACPI_PM_TMR_PORT;
    m->reset_port = X86_ACPI_RESET_PORT;
    m->reset_value = X86_ACPI_RESET_VALUE;
    m->sci_irq = X86_ACPI_SCI_IRQ;
    m->s5_type = X86_ACPI_S5_TYPE;
    m->com1_port = X86_COM1_PORT;
    m->com1_irq = X86_COM1_IRQ;
}

static bool ports_ok(uint16_t port, uint32_t len)
{
    return port != 0 && range_within(port, len, 0, 0x10000);
}

static int check_machine(const struct acpi_machine *m)
{
    const uint64_t four_gib = 1ull << 32;
    uint64_t end;

    if (m->nr_cpus == 0 || m->nr_cpus > ACPI_MAX_CPUS) {
        log_error("acpi: %u vCPUs, the MADT describes 1..%u", m->nr_cpus, ACPI_MAX_CPUS);
        return -EINVAL;
    }
    if (m->ioapic_id < m->nr_cpus) {
        log_error("acpi: IOAPIC id %u collides with a LAPIC id", m->ioapic_id);
        return -EINVAL;
    }
    if (m->lapic_gpa >= four_gib || m->ioapic_gpa >= four_gib) {
        log_error("acpi: LAPIC/IOAPIC must lie below 4 GiB");
        return -EINVAL;
    }
    if (m->bus_first > m->bus_last || (m->ecam_base & ((1ull << ECAM_BUS_SHIFT) - 1)) != 0 ||
        checked_add_u64(m->ecam_base, ((uint64_t)m->bus_last + 1) << ECAM_BUS_SHIFT, &end)) {
        log_error("acpi: bad ECAM 0x%llx for buses %u..%u", (unsigned long long)m->ecam_base,
                  m->bus_first, m->bus_last);
        return -EINVAL;
    }
    if (m->mmio32_size == 0 || !range_within(m->mmio32_base, m->mmio32_size, 0, four_gib)) {
        log_error("acpi: bad 32-bit PCI window");
        return -EINVAL;
    }
    if (m->mmio64_size != 0 && checked_add_u64(m->mmio64_base, m->mmio64_size - 1, &end)) {
        log_error("acpi: bad 64-bit PCI window");
        return -EINVAL;
    }
    /* The window must not reach the ports below 0xD00 (legacy devices, config ports). */
    if (m->io_size == 0 || m->io_base <= LEGACY_IO_END + PCI_CONF1_LEN ||
        !range_within(m->io_base, m->io_size, 0, 0x10000)) {
        log_error("acpi: bad PCI I/O window 0x%x+0x%x", m->io_base, m->io_size);
        return -EINVAL;
    }
    if (!ports_ok(m->pm1a_evt_port, PM1_EVT_LEN) || !ports_ok(m->pm1a_cnt_port, PM1_CNT_LEN) ||
        !ports_ok(m->pm_tmr_port, PM_TMR_LEN) || !ports_ok(m->reset_port, 1) ||
        !ports_ok(m->com1_port, 8)) {
        log_error("acpi: bad PM, reset or COM1 port");
        return -EINVAL;
    }
    /* IRQ 0 and 2 are the timer and its override target; SCI needs its own line. */
    if (m->sci_irq == 0 || m->sci_irq == 2 || m->sci_irq > 15 || m->com1_irq > 15) {
        log_error("acpi: bad SCI (%u) or COM1 (%u) IRQ", m->sci_irq, m->com1_irq);
        return -EINVAL;
    }
    if (m->s5_type > 7) {
        log_error("acpi: S5 sleep type %u does not fit SLP_TYP", m->s5_type);
        return -EINVAL;
    }
    return 0;
}

/*
 * Method (_OSC, 4, Serialized)            // PCI Firmware spec 3.3, 4.5
 * {
 *     CreateDWordField (Arg3, 0, CDW1)
 *     If (Arg0 == ToUUID (PCI_OSC_UUID)) {
 *         CreateDWordField (Arg3, 8, CDW3)
 *         If (Arg1 != One) {
 *             CDW1 |= OSC_CDW1_BAD_REVISION
 *         } Else {
 *             Local0 = CDW3 & OSC_GRANTED
 *             If (Local0 != CDW3) { CDW1 |= OSC_CDW1_MASKED }
 *             CDW3 = Local0
 *         }
 *     } Else {
 *         CDW1 |= OSC_CDW1_BAD_UUID
 *     }
 *     Return (Arg3)
 * }
 * Serialized because it creates named fields. The support DWORD (CDW2) is not needed:
 * nothing granted depends on what the OS supports. The query flag needs no special case:
 * granting has no side effect to skip.
 */
static void build_pci_osc(struct aml_buf *b)
{
    aml_method_begin(b, "_OSC", 4, true);
    aml_op(b, AML_OP_CREATE_DWORD_FIELD);
    aml_arg(b, 3);
    aml_int(b, 0);
    aml_namestring(b, "CDW1");

    aml_if_begin(b);
    aml_op(b, AML_OP_LEQUAL);
    aml_arg(b, 0);
    aml_uuid(b, PCI_OSC_UUID);
    aml_op(b, AML_OP_CREATE_DWORD_FIELD);
    aml_arg(b, 3);
    aml_int(b, 8);
    aml_namestring(b, "CDW3");

    aml_if_begin(b);
    aml_op(b, AML_OP_LNOT);
    aml_op(b, AML_OP_LEQUAL);
    aml_arg(b, 1);
    aml_int(b, 1);
    aml_op(b, AML_OP_OR);
    aml_namestring(b, "CDW1");
    aml_int(b, OSC_CDW1_BAD_REVISION);
    aml_namestring(b, "CDW1");
    aml_end(b);
    aml_else_begin(b);
    aml_op(b, AML_OP_AND);
    aml_namestring(b, "CDW3");
    aml_int(b, OSC_GRANTED);
    aml_local(b, 0);
    aml_if_begin(b);
    aml_op(b, AML_OP_LNOT);
    aml_op(b, AML_OP_LEQUAL);
    aml_local(b, 0);
    aml_namestring(b, "CDW3");
    aml_op(b, AML_OP_OR);
    aml_namestring(b, "CDW1");
    aml_int(b, OSC_CDW1_MASKED);
    aml_namestring(b, "CDW1");
    aml_end(b);
    aml_op(b, AML_OP_STORE);
    aml_local(b, 0);
    aml_namestring(b, "CDW3");
    aml_end(b); /* Else */

    aml_end(b); /* If UUID */
    aml_else_begin(b);
    aml_op(b, AML_OP_OR);
    aml_namestring(b, "CDW1");
    aml_int(b, OSC_CDW1_BAD_UUID);
    aml_namestring(b, "CDW1");
    aml_end(b);

    aml_op(b, AML_OP_RETURN);
    aml_arg(b, 3);
    aml_end(b); /* Method */
}

static void build_pci0(struct aml_buf *b, const struct acpi_machine *m)
{
    /*
     * No _ADR: the bridge is identified by _HID, and the spec (6.1) says a device should
     * not have both.
     */
    aml_device_begin(b, "PCI0");
    aml_name_eisaid(b, "_HID", "PNP0A08"); /* PCI Express root bridge */
    aml_name_eisaid(b, "_CID", "PNP0A03"); /* compatible: PCI root bridge */
    aml_name_int(b, "_SEG", 0);
    aml_name_int(b, "_BBN", m->bus_first);
    aml_name_int(b, "_UID", 0);

    aml_name(b, "_CRS");
    aml_resource_template_begin(b);
    aml_rd_word_bus(b, AML_RSRC_PRODUCER, m->bus_first, m->bus_last);
    /* The configuration mechanism #1 ports are the bridge's own registers. */
    aml_rd_io(b, X86_PCI_CONF1_PORT, X86_PCI_CONF1_PORT, 1, PCI_CONF1_LEN);
    /*
     * Two I/O windows around the config ports: the legacy ports (where the PM block, COM1
     * and the PIC/PIT live, which Linux reserves itself and nests below this window), and
     * the BAR window.
     */
    aml_rd_word_io(b, AML_RSRC_PRODUCER, 0, LEGACY_IO_END);
    aml_rd_word_io(b, AML_RSRC_PRODUCER, (uint16_t)m->io_base,
                   (uint16_t)(m->io_base + m->io_size - 1));
    aml_rd_dword_memory(b, AML_RSRC_PRODUCER, AML_MEM_NON_CACHEABLE, true, (uint32_t)m->mmio32_base,
                        (uint32_t)(m->mmio32_base + m->mmio32_size - 1));
    if (m->mmio64_size != 0)
        aml_rd_qword_memory(b, AML_RSRC_PRODUCER, AML_MEM_NON_CACHEABLE, true, m->mmio64_base,
                            m->mmio64_base + m->mmio64_size - 1);
    aml_end(b);

    /*
     * _PRT: every slot's INTA..INTD goes straight to an IOAPIC pin (Source Zero = the
     * Source Index is a GSI), as the machine wires them.
     */
    aml_name(b, "_PRT");
    aml_package_begin(b, PCI_NR_SLOTS * PCI_NR_PINS);
    for (unsigned slot = 0; slot < PCI_NR_SLOTS; slot++) {
        for (unsigned pin = 0; pin < PCI_NR_PINS; pin++) {
            aml_package_begin(b, 4);
            aml_int(b, ((uint64_t)slot << 16) | 0xffff); /* any function of the slot */
            aml_int(b, pin);
            aml_int(b, 0);
            aml_int(b, X86_PCI_INTX_GSI(slot, pin));
            aml_end(b);
        }
    }
    aml_end(b);

    build_pci_osc(b);
    aml_end(b);
}

static void build_mres(struct aml_buf *b, const struct acpi_machine *m)
{
    /*
     * Motherboard resources: Linux uses MMCONFIG only when the ECAM range is claimed by a
     * PNP0C01/PNP0C02 device.
     */
    uint64_t start = m->ecam_base + ((uint64_t)m->bus_first << ECAM_BUS_SHIFT);
    uint64_t len = ((uint64_t)m->bus_last - m->bus_first + 1) << ECAM_BUS_SHIFT;

    aml_device_begin(b, "MRES");
    aml_name_eisaid(b, "_HID", "PNP0C02");
    aml_name_int(b, "_UID", 0);
    aml_name(b, "_CRS");
    aml_resource_template_begin(b);
    if (start + len <= (1ull << 32))
        aml_rd_memory32_fixed(b, true, (uint32_t)start, (uint32_t)len);
    else
        aml_rd_qword_memory(b, AML_RSRC_CONSUMER, AML_MEM_NON_CACHEABLE, true, start,
                            start + len - 1);
    aml_end(b);
    aml_end(b);
}

static void build_com1(struct aml_buf *b, const struct acpi_machine *m)
{
    aml_device_begin(b, "COM1");
    aml_name_eisaid(b, "_HID", "PNP0501"); /* 16550A-compatible UART */
    aml_name_int(b, "_UID", 1);
    aml_method_return_int(b, "_STA", 0x0f); /* present, enabled, shown, functioning */
    aml_name(b, "_CRS");
    aml_resource_template_begin(b);
    aml_rd_io(b, m->com1_port, m->com1_port, 1, 8);
    aml_rd_irq_noflags(b, m->com1_irq);
    aml_end(b);
    aml_end(b);
}

/*
 * The DSDT's AML. There is no power-button device (PNP0C0C): the FADT declares the
 * fixed-feature power button (PWR_BUTTON clear), whose PWRBTN_STS/EN bits live in the PM1
 * event block and which OSPM enumerates by itself; a control-method button would need a
 * GPE to signal it, and the machine has no GPE block.
 */
static int build_dsdt_aml(struct aml_buf *b, const struct acpi_machine *m)
{
    aml_scope_begin(b, "\\_SB");
    build_pci0(b, m);
    build_mres(b, m);
    build_com1(b, m);
    aml_end(b);

    /* \_S5: SLP_TYPa, SLP_TYPb, two reserved. Only S5 is offered (no S1-S4). */
    aml_name(b, "\\_S5");
    aml_package_begin(b, 4);
    aml_int(b, m->s5_type);
    aml_int(b, m->s5_type);
    aml_int(b, 0);
    aml_int(b, 0);
    aml_end(b);
    return aml_finish(b);
}

static size_t madt_len(unsigned nr_cpus)
{
    return HDR_LEN + 8 + (size_t)nr_cpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN +
           MADT_NR_ISO * MADT_ISO_LEN + MADT_LAPIC_NMI_LEN;
}

static size_t put_iso(uint8_t *t, size_t off, uint8_t irq, uint32_t gsi, uint16_t flags)
{
    put8(t, off, MADT_T_ISO);
    put8(t, off + 1, MADT_ISO_LEN);
    put8(t, off + 2, 0); /* bus: ISA */
    put8(t, off + 3, irq);
    put32(t, off + 4, gsi);
    put16(t, off + 8, flags);
    return off + MADT_ISO_LEN;
}

static void build_madt(uint8_t *t, const struct acpi_machine *m)
{
    size_t len = madt_len(m->nr_cpus);
    put_header(t, "APIC", (uint32_t)len, MADT_REVISION);
    put32(t, MADT_LAPIC_ADDR, (uint32_t)m->lapic_gpa);
    put32(t, MADT_FLAGS, MADT_PCAT_COMPAT); /* the 8259 pair exists (and is masked by Linux) */

    size_t off = HDR_LEN + 8;
    for (unsigned i = 0; i < m->nr_cpus; i++) {
        put8(t, off, MADT_T_LAPIC);
        put8(t, off + 1, MADT_LAPIC_LEN);
        put8(t, off + 2, (uint8_t)i); /* ACPI processor UID */
        put8(t, off + 3, (uint8_t)i); /* APIC id */
        put32(t, off + 4, MADT_LAPIC_ENABLED);
        off += MADT_LAPIC_LEN;
    }

    put8(t, off, MADT_T_IOAPIC);
    put8(t, off + 1, MADT_IOAPIC_LEN);
    put8(t, off + 2, m->ioapic_id);
    put32(t, off + 4, (uint32_t)m->ioapic_gpa);
    put32(t, off + 8, 0); /* GSI base */
    off += MADT_IOAPIC_LEN;

    /* The PIT's IRQ 0 is wired to IOAPIC pin 2; the SCI is level-triggered, active high. */
    off = put_iso(t, off, 0, 2, 0);
    off = put_iso(t, off, m->sci_irq, m->sci_irq, MPS_ACTIVE_HIGH | MPS_LEVEL);

    /* LINT1 of every LAPIC is the NMI input (polarity and trigger per the bus). */
    put8(t, off, MADT_T_LAPIC_NMI);
    put8(t, off + 1, MADT_LAPIC_NMI_LEN);
    put8(t, off + 2, ACPI_ALL_CPUS);
    put16(t, off + 3, 0);
    put8(t, off + 5, 1);
    seal(t, len);
}

static void build_fadt(uint8_t *t, const struct acpi_machine *m, uint64_t facs, uint64_t dsdt)
{
    put_header(t, "FACP", FADT_LEN, FADT_REVISION);
    put32(t, FADT_FIRMWARE_CTRL, (uint32_t)facs);
    put32(t, FADT_DSDT, (uint32_t)dsdt);
    put8(t, FADT_PM_PROFILE, 0); /* unspecified */
    put16(t, FADT_SCI_INT, m->sci_irq);
    /* SMI_CMD 0: no SMM, the PM device is always in ACPI mode (SCI_EN reads 1). */
    put32(t, FADT_SMI_CMD, 0);
    put32(t, FADT_PM1A_EVT_BLK, m->pm1a_evt_port);
    put32(t, FADT_PM1A_CNT_BLK, m->pm1a_cnt_port);
    put32(t, FADT_PM_TMR_BLK, m->pm_tmr_port);
    put8(t, FADT_PM1_EVT_LEN, PM1_EVT_LEN);
    put8(t, FADT_PM1_CNT_LEN, PM1_CNT_LEN);
    put8(t, FADT_PM_TMR_LEN, PM_TMR_LEN);
    put16(t, FADT_P_LVL2_LAT, P_LVL2_LAT_NONE);
    put16(t, FADT_P_LVL3_LAT, P_LVL3_LAT_NONE);
    /*
     * COM1 is a user-visible ISA-style device; no VGA, no CMOS RTC (kvm-clock gives wall
     * time), no i8042; MSI works (the NO_MSI bit stays clear).
     */
    put16(t, FADT_IAPC_BOOT_ARCH,
          BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS_RTC);
    /*
     * PWR_BUTTON clear: the fixed-feature power button exists. TMR_VAL_EXT clear: 24-bit
     * timer. HW_REDUCED clear. FIX_RTC: the PM1 block has no RTC wake status.
     */
    put32(t, FADT_FLAGS,
          FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON | FADT_F_FIX_RTC |
              FADT_F_RESET_REG_SUP);
    put_gas_io(t, FADT_RESET_REG, 8, GAS_ACCESS_BYTE, m->reset_port);
    put8(t, FADT_RESET_VALUE, m->reset_value);
    put8(t, FADT_MINOR, FADT_MINOR_VERSION);
    /*
     * The FACS is given once, in FIRMWARE_CTRL: the spec (5.2.9, table 5.9) requires
     * X_FIRMWARE_CTRL to be zero when FIRMWARE_CTRL is set, and ACPICA prefers the 32-bit
     * FACS address anyway. The DSDT may be (and is) given in both forms.
     */
    put64(t, FADT_X_FIRMWARE_CTRL, 0);
    put64(t, FADT_X_DSDT, dsdt);
    /* The X_ blocks repeat the 32-bit ones exactly: ACPICA warns on any mismatch. */
    put_gas_io(t, FADT_X_PM1A_EVT_BLK, PM1_EVT_LEN * 8, GAS_ACCESS_WORD, m->pm1a_evt_port);
    put_gas_io(t, FADT_X_PM1A_CNT_BLK, PM1_CNT_LEN * 8, GAS_ACCESS_WORD, m->pm1a_cnt_port);
    put_gas_io(t, FADT_X_PM_TMR_BLK, PM_TMR_LEN * 8, GAS_ACCESS_DWORD, m->pm_tmr_port);
    put_chars(t, FADT_HYPERVISOR_ID, ACPI_HYPERVISOR_ID, 8);
    seal(t, FADT_LEN);
}

static void build_facs(uint8_t *t)
{
    /* No checksum; waking vectors stay 0 (no S3/S4), no global lock owner. */
    put_chars(t, 0, "FACS", 4);
    put32(t, FACS_LENGTH, FACS_LEN);
    put8(t, FACS_VERSION_OFF, FACS_VERSION);
}

static void build_mcfg(uint8_t *t, const struct acpi_machine *m)
{
    put_header(t, "MCFG", MCFG_LEN, MCFG_REVISION);
    size_t off = HDR_LEN + 8; /* 8 reserved bytes */
    put64(t, off, m->ecam_base);
    put16(t, off + 8, 0); /* PCI segment group */
    put8(t, off + 10, m->bus_first);
    put8(t, off + 11, m->bus_last);
    seal(t, MCFG_LEN);
}

static void build_xsdt(uint8_t *t, const uint64_t entries[XSDT_ENTRIES])
{
    put_header(t, "XSDT", XSDT_LEN, XSDT_REVISION);
    for (unsigned i = 0; i < XSDT_ENTRIES; i++)
        put64(t, HDR_LEN + 8 * (size_t)i, entries[i]);
    seal(t, XSDT_LEN);
}

static void build_rsdp(uint8_t *t, uint64_t xsdt)
{
    put_chars(t, 0, "RSD PTR ", 8);
    put_chars(t, RSDP_OEMID, ACPI_OEM_ID, 6);
    put8(t, RSDP_REV, RSDP_REVISION);
    put32(t, RSDP_RSDT, 0); /* no RSDT: every consumer since ACPI 2.0 uses the XSDT */
    put32(t, RSDP_LENGTH, RSDP_LEN);
    put64(t, RSDP_XSDT, xsdt);
    t[RSDP_CHECKSUM] = checksum(t, RSDP_V1_LEN);
    t[RSDP_EXT_CHECKSUM] = checksum(t, RSDP_LEN);
}

/** Where each table goes: offsets into the output buffer. */
struct acpi_layout {
    size_t rsdp; /**< Root System Description Pointer (always 0). */
    size_t xsdt; /**< Extended System Description Table. */
    size_t fadt; /**< Fixed ACPI Description Table. */
    size_t facs; /**< Firmware ACPI Control Structure (64-byte aligned in the guest). */
    size_t dsdt; /**< Differentiated System Description Table. */
    size_t madt; /**< Multiple APIC Description Table. */
    size_t mcfg; /**< PCI Express memory-mapped configuration table. */
    size_t end;  /**< First byte after the last table. */
};

/* Reserve @p len bytes at the next guest address aligned to @p align. */
static int place(size_t *cur, uint64_t gpa, size_t len, uint64_t align, size_t *off)
{
    uint64_t addr;
    uint64_t aligned;
    if (checked_add_u64(gpa, *cur, &addr) || checked_align_up(addr, align, &aligned))
        return -EINVAL;
    *off = (size_t)(aligned - gpa);
    if (checked_add_u64(*off, len, &addr))
        return -EINVAL;
    *cur = (size_t)addr;
    return 0;
}

static int plan(struct acpi_layout *l, uint64_t gpa, size_t dsdt_len, size_t madt)
{
    size_t cur = 0;
    if (place(&cur, gpa, RSDP_LEN, 16, &l->rsdp) < 0 ||
        place(&cur, gpa, XSDT_LEN, 16, &l->xsdt) < 0 ||
        place(&cur, gpa, FADT_LEN, 16, &l->fadt) < 0 ||
        place(&cur, gpa, FACS_LEN, FACS_ALIGN, &l->facs) < 0 ||
        place(&cur, gpa, dsdt_len, 16, &l->dsdt) < 0 || place(&cur, gpa, madt, 16, &l->madt) < 0 ||
        place(&cur, gpa, MCFG_LEN, 16, &l->mcfg) < 0)
        return -EINVAL;
    l->end = cur;
    return 0;
}

int acpi_build_tables(const struct acpi_machine *m, uint8_t *buf, size_t size, uint64_t gpa,
                      size_t *used)
{
    if (m == NULL || buf == NULL || used == NULL || (gpa & 15) != 0)
        return -EINVAL;
    int rc = check_machine(m);
    if (rc < 0)
        return rc;

    struct aml_buf aml;
    aml_init(&aml);
    rc = build_dsdt_aml(&aml, m);
    if (rc < 0) {
        log_error("acpi: building the DSDT failed (%d)", rc);
        aml_release(&aml);
        return rc;
    }

    struct acpi_layout l;
    size_t dsdt_len = HDR_LEN + aml.len;
    rc = plan(&l, gpa, dsdt_len, madt_len(m->nr_cpus));
    if (rc == 0 && !range_within(gpa, l.end, 0, 1ull << 32)) {
        log_error("acpi: tables at 0x%llx must end below 4 GiB", (unsigned long long)gpa);
        rc = -EINVAL;
    }
    if (rc == 0 && l.end > size)
        rc = -ENOSPC;
    if (rc < 0) {
        aml_release(&aml);
        return rc;
    }

    memset(buf, 0, l.end);
    put_header(buf + l.dsdt, "DSDT", (uint32_t)dsdt_len, DSDT_REVISION);
    memcpy(buf + l.dsdt + HDR_LEN, aml.data, aml.len);
    seal(buf + l.dsdt, dsdt_len);
    aml_release(&aml);

    build_facs(buf + l.facs);
    build_fadt(buf + l.fadt, m, gpa + l.facs, gpa + l.dsdt);
    build_madt(buf + l.madt, m);
    build_mcfg(buf + l.mcfg, m);
    const uint64_t entries[XSDT_ENTRIES] = {gpa + l.fadt, gpa + l.madt, gpa + l.mcfg};
    build_xsdt(buf + l.xsdt, entries);
    build_rsdp(buf + l.rsdp, gpa + l.xsdt);

    *used = l.end;
    return 0;
}
