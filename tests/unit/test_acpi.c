/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The x86 ACPI tables: every table's header, checksum and the fields Linux relies on,
 * read back at the offsets the ACPI 6.5 specification gives (independently of the
 * builder's own constants); then each table disassembled (and recompiled) by iasl, and the
 * DSDT's _OSC executed by acpiexec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/acpi/acpi.h"
#include "arch/x86/layout.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define TABLES_GPA  X86_ACPI_TABLES_GPA
#define MMIO64_BASE 0x1000000000ULL

static uint8_t buf[X86_ACPI_TABLES_SIZE];

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return s;
}

/* The tables of one build, located by following the pointers from the RSDP. */
struct tables {
    uint64_t gpa;
    size_t used;
    const uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt, *mcfg;
};

/* Pointer to the table at guest address @p addr, which must lie inside the image. */
static const uint8_t *at(const struct tables *t, uint64_t addr, size_t min_len)
{
    assert_true(addr >= t->gpa);
    assert_true(addr - t->gpa + min_len <= t->used);
    const uint8_t *p = buf + (addr - t->gpa);
    if (memcmp(p, "FACS", 4) != 0 && memcmp(p, "RSD ", 4) != 0)
        assert_true(addr - t->gpa + rd32(p + 4) <= t->used);
    return p;
}

/* Common header checks (5.2.6): signature, length, revision, checksum, OEM/creator ids. */
static void check_header(const uint8_t *p, const char *sig, uint8_t rev)
{
    assert_memory_equal(p, sig, 4);
    uint32_t len = rd32(p + 4);
    assert_true(len >= 36);
    assert_int_equal(p[8], rev);
    assert_int_equal(sum8(p, len), 0);
    assert_memory_equal(p + 10, "BLKHD ", 6);
    assert_memory_equal(p + 16, "BULKHEAD", 8);
    assert_memory_equal(p + 28, "BLKH", 4);
}

static void default_machine(struct acpi_machine *m, unsigned nr_cpus)
{
    acpi_machine_from_layout(m, nr_cpus, MMIO64_BASE);
}

static void build(const struct acpi_machine *m, uint64_t gpa, struct tables *t)
{
    memset(t, 0, sizeof(*t));
    memset(buf, 0xa5, sizeof(buf));
    t->gpa = gpa;
    assert_int_equal(acpi_build_tables(m, buf, sizeof(buf), gpa, &t->used), 0);
    assert_true(t->used > 0 && t->used <= sizeof(buf));

    /* RSDP (5.2.5.3): at the start, both checksums, revision 2, XSDT pointer. */
    t->rsdp = buf;
    assert_memory_equal(buf, "RSD PTR ", 8);
    assert_int_equal(sum8(buf, 20), 0);
    assert_int_equal(sum8(buf, 36), 0);
    assert_memory_equal(buf + 9, "BLKHD ", 6);
    assert_int_equal(buf[15], 2);
    assert_int_equal(rd32(buf + 20), 36);

    t->xsdt = at(t, rd64(buf + 24), 36);
    check_header(t->xsdt, "XSDT", 1);
    uint32_t xlen = rd32(t->xsdt + 4);
    assert_int_equal(xlen, 36 + 3 * 8);
    t->fadt = at(t, rd64(t->xsdt + 36), 36);
    t->madt = at(t, rd64(t->xsdt + 44), 36);
    t->mcfg = at(t, rd64(t->xsdt + 52), 36);
    check_header(t->fadt, "FACP", 6);
    check_header(t->madt, "APIC", 6);
    check_header(t->mcfg, "MCFG", 1);

    /*
     * FADT pointers: the FACS only in FIRMWARE_CTRL (X_FIRMWARE_CTRL must then be zero,
     * table 5.9); the DSDT in both forms, which must agree.
     */
    uint64_t facs = rd32(t->fadt + 36);
    assert_int_not_equal(facs, 0);
    assert_int_equal(rd64(t->fadt + 132), 0);
    uint64_t dsdt = rd64(t->fadt + 140);
    assert_int_equal(rd32(t->fadt + 40), dsdt);
    t->facs = at(t, facs, 64);
    t->dsdt = at(t, dsdt, 36);
    check_header(t->dsdt, "DSDT", 2);
}

/* ---- RSDP / XSDT / layout ---- */

static void test_tables_are_disjoint_and_inside(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 4);
    build(&m, TABLES_GPA, &t);

    const uint8_t *tab[] = {t.rsdp, t.xsdt, t.fadt, t.facs, t.dsdt, t.madt, t.mcfg};
    size_t len[7];
    len[0] = 36;
    for (unsigned i = 1; i < 7; i++)
        len[i] = rd32(tab[i] + 4);
    assert_int_equal(len[3], 64); /* FACS */
    for (unsigned i = 0; i < 7; i++) {
        assert_true((size_t)(tab[i] - buf) + len[i] <= t.used);
        assert_int_equal((t.gpa + (size_t)(tab[i] - buf)) % 16, 0);
        for (unsigned j = i + 1; j < 7; j++) {
            size_t a = (size_t)(tab[i] - buf), b = (size_t)(tab[j] - buf);
            assert_true(a + len[i] <= b || b + len[j] <= a);
        }
    }
    /* Nothing past the image was touched. */
    for (size_t i = t.used; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xa5);
}

static void test_pointers_are_guest_physical(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables a, b;
    default_machine(&m, 2);
    build(&m, TABLES_GPA, &a);
    size_t off_fadt = (size_t)(a.fadt - buf), off_dsdt = (size_t)(a.dsdt - buf);
    assert_int_equal(rd64(a.fadt + 140), TABLES_GPA + off_dsdt);

    /* 16-byte but not 64-byte aligned: the FACS must still land on a 64-byte boundary. */
    const uint64_t gpa = 0x7ff00010;
    build(&m, gpa, &b);
    assert_int_equal(rd64(b.rsdp + 24), gpa + (size_t)(b.xsdt - buf));
    assert_int_equal(rd64(b.xsdt + 36), gpa + (size_t)(b.fadt - buf));
    assert_int_equal(rd32(b.fadt + 36) % 64, 0);
    assert_int_equal(rd64(b.fadt + 140), gpa + (size_t)(b.dsdt - buf));
    assert_int_equal(rd64(b.xsdt + 52), gpa + (size_t)(b.mcfg - buf));
    /* Before the FACS the layout does not depend on the gpa; after it, it may. */
    assert_int_equal((size_t)(b.fadt - buf), off_fadt);
}

/* ---- FADT / FACS ---- */

static void check_gas_io(const uint8_t *g, uint8_t bits, uint8_t access, uint64_t port)
{
    assert_int_equal(g[0], 1); /* SystemIO */
    assert_int_equal(g[1], bits);
    assert_int_equal(g[2], 0);
    assert_int_equal(g[3], access);
    assert_int_equal(rd64(g + 4), port);
}

static void check_gas_empty(const uint8_t *g)
{
    static const uint8_t zero[12];
    assert_memory_equal(g, zero, 12);
}

static void test_fadt(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 4);
    build(&m, TABLES_GPA, &t);
    const uint8_t *f = t.fadt;

    assert_int_equal(rd32(f + 4), 276); /* full ACPI 6.x length */
    assert_int_equal(f[131], 5);        /* minor version: 6.5 */
    assert_int_equal(rd16(f + 46), X86_ACPI_SCI_IRQ);
    assert_int_equal(rd32(f + 48), 0); /* SMI_CMD: always in ACPI mode */
    assert_int_equal(f[52], 0);
    assert_int_equal(f[53], 0);

    /* PM blocks, 32-bit form. */
    assert_int_equal(rd32(f + 56), X86_ACPI_PM1A_EVT_PORT);
    assert_int_equal(rd32(f + 60), 0);
    assert_int_equal(rd32(f + 64), X86_ACPI_PM1A_CNT_PORT);
    assert_int_equal(rd32(f + 68), 0);
    assert_int_equal(rd32(f + 72), 0);
    assert_int_equal(rd32(f + 76), X86_ACPI_PM_TMR_PORT);
    assert_int_equal(rd32(f + 80), 0); /* no GPE0 */
    assert_int_equal(rd32(f + 84), 0); /* no GPE1 */
    assert_int_equal(f[88], 4);
    assert_int_equal(f[89], 2);
    assert_int_equal(f[90], 0);
    assert_int_equal(f[91], 4);
    assert_int_equal(f[92], 0);
    assert_int_equal(f[93], 0);

    /* No C2/C3. */
    assert_true(rd16(f + 96) > 100);
    assert_true(rd16(f + 98) > 1000);

    /* IAPC_BOOT_ARCH: no VGA (2), no CMOS RTC (5), no 8042 (1 clear), MSI ok (3 clear). */
    uint16_t boot = rd16(f + 109);
    assert_true(boot & (1u << 2));
    assert_true(boot & (1u << 5));
    assert_false(boot & (1u << 1));
    assert_false(boot & (1u << 3));
    assert_true(boot & (1u << 0)); /* LEGACY_DEVICES: COM1 */

    uint32_t flags = rd32(f + 112);
    assert_true(flags & (1u << 0));   /* WBINVD */
    assert_true(flags & (1u << 2));   /* PROC_C1 */
    assert_false(flags & (1u << 4));  /* PWR_BUTTON clear: fixed-feature button */
    assert_true(flags & (1u << 5));   /* SLP_BUTTON: none */
    assert_true(flags & (1u << 6));   /* FIX_RTC: no RTC wake status */
    assert_false(flags & (1u << 8));  /* TMR_VAL_EXT: 24-bit timer */
    assert_true(flags & (1u << 10));  /* RESET_REG_SUP */
    assert_false(flags & (1u << 20)); /* not HW_REDUCED */

    check_gas_io(f + 116, 8, 1, X86_ACPI_RESET_PORT);
    assert_int_equal(f[128], X86_ACPI_RESET_VALUE);

    /* X_ blocks match the 32-bit ones; the rest are empty. */
    check_gas_io(f + 148, 32, 2, X86_ACPI_PM1A_EVT_PORT);
    check_gas_empty(f + 160);
    check_gas_io(f + 172, 16, 2, X86_ACPI_PM1A_CNT_PORT);
    check_gas_empty(f + 184);
    check_gas_empty(f + 196);
    check_gas_io(f + 208, 32, 3, X86_ACPI_PM_TMR_PORT);
    check_gas_empty(f + 220);
    check_gas_empty(f + 232);
    check_gas_empty(f + 244);
    check_gas_empty(f + 256);
    assert_memory_equal(f + 268, "BULKHEAD", 8);
}

static void test_facs(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 1);
    build(&m, TABLES_GPA, &t);
    assert_memory_equal(t.facs, "FACS", 4);
    assert_int_equal(rd32(t.facs + 4), 64);
    assert_int_equal(rd32(t.facs + 16), 0); /* global lock free */
    assert_int_equal(t.facs[32], 2);        /* version */
    assert_int_equal(rd32(t.fadt + 36) % 64, 0);
}

/* ---- MADT ---- */

static void check_madt(unsigned n)
{
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, n);
    build(&m, TABLES_GPA, &t);
    const uint8_t *p = t.madt;
    uint32_t len = rd32(p + 4);

    assert_int_equal(rd32(p + 36), X86_LAPIC_GPA);
    assert_int_equal(rd32(p + 40), 1); /* PCAT_COMPAT */

    unsigned lapics = 0, ioapics = 0, isos = 0, nmis = 0, entries = 0;
    bool seen[256] = {false};
    size_t off = 44;
    while (off < len) {
        const uint8_t *e = p + off;
        assert_true(e[1] >= 2);
        assert_true(off + e[1] <= len);
        entries++;
        switch (e[0]) {
        case 0: /* Processor Local APIC */
            assert_int_equal(e[1], 8);
            assert_int_equal(e[2], e[3]); /* UID = APIC id */
            assert_true(e[3] < n);
            assert_false(seen[e[3]]);
            seen[e[3]] = true;
            assert_int_equal(rd32(e + 4), 1); /* enabled */
            lapics++;
            break;
        case 1: /* I/O APIC */
            assert_int_equal(e[1], 12);
            assert_int_equal(e[2], n); /* id after the LAPIC ids */
            assert_int_equal(rd32(e + 4), X86_IOAPIC_GPA);
            assert_int_equal(rd32(e + 8), 0);
            ioapics++;
            break;
        case 2: /* Interrupt Source Override */
            assert_int_equal(e[1], 10);
            assert_int_equal(e[2], 0); /* ISA */
            if (e[3] == 0) {
                assert_int_equal(rd32(e + 4), 2);
                assert_int_equal(rd16(e + 8), 0); /* conforming */
            } else {
                assert_int_equal(e[3], X86_ACPI_SCI_IRQ);
                assert_int_equal(rd32(e + 4), X86_ACPI_SCI_IRQ);
                assert_int_equal(rd16(e + 8), 0x0d); /* active high, level */
            }
            isos++;
            break;
        case 4: /* Local APIC NMI */
            assert_int_equal(e[1], 6);
            assert_int_equal(e[2], 0xff);
            assert_int_equal(e[5], 1); /* LINT1 */
            nmis++;
            break;
        default:
            fail_msg("unexpected MADT entry type %u", e[0]);
        }
        off += e[1];
    }
    assert_int_equal(off, len);
    assert_int_equal(lapics, n);
    assert_int_equal(ioapics, 1);
    assert_int_equal(isos, 2);
    assert_int_equal(nmis, 1);
    assert_int_equal(entries, n + 4);
}

static void test_madt_cpu_counts(void **state)
{
    (void)state;
    check_madt(1);
    check_madt(2);
    check_madt(64);
    check_madt(254);
    check_madt(ACPI_MAX_CPUS);
}

/* ---- MCFG ---- */

static void test_mcfg(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 1);
    build(&m, TABLES_GPA, &t);
    assert_int_equal(rd32(t.mcfg + 4), 60);
    assert_int_equal(rd64(t.mcfg + 36), 0);
    assert_int_equal(rd64(t.mcfg + 44), X86_PCI_ECAM_BASE);
    assert_int_equal(rd16(t.mcfg + 52), 0);
    assert_int_equal(t.mcfg[54], X86_PCI_BUS_FIRST);
    assert_int_equal(t.mcfg[55], X86_PCI_BUS_LAST);

    m.bus_first = 0;
    m.bus_last = 15;
    build(&m, TABLES_GPA, &t);
    assert_int_equal(t.mcfg[54], 0);
    assert_int_equal(t.mcfg[55], 15);
}

/* ---- DSDT _PRT, decoded from the AML ---- */

static size_t decode_pkglen(const uint8_t *p, uint32_t *len)
{
    unsigned follow = p[0] >> 6;
    if (follow == 0) {
        *len = p[0] & 0x3f;
        return 1;
    }
    *len = p[0] & 0x0f;
    for (unsigned i = 0; i < follow; i++)
        *len |= (uint32_t)p[1 + i] << (4 + 8 * i);
    return follow + 1;
}

static size_t decode_int(const uint8_t *p, uint64_t *v)
{
    unsigned n;
    *v = 0;
    switch (p[0]) {
    case 0x00:
        *v = 0;
        return 1;
    case 0x01:
        *v = 1;
        return 1;
    case 0xff:
        *v = UINT64_MAX;
        return 1;
    case 0x0a:
        n = 1;
        break;
    case 0x0b:
        n = 2;
        break;
    case 0x0c:
        n = 4;
        break;
    case 0x0e:
        n = 8;
        break;
    default:
        fail_msg("not an integer: opcode 0x%02x", p[0]);
        return 0;
    }
    *v = 0;
    for (unsigned i = 0; i < n; i++)
        *v |= (uint64_t)p[1 + i] << (8 * i);
    return n + 1;
}

static void test_dsdt_prt(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 2);
    build(&m, TABLES_GPA, &t);
    const uint8_t *aml = t.dsdt + 36;
    size_t len = rd32(t.dsdt + 4) - 36;

    const uint8_t *p = NULL;
    for (size_t i = 0; i + 6 < len; i++) {
        if (aml[i] == 0x08 && memcmp(&aml[i + 1], "_PRT", 4) == 0 && aml[i + 5] == 0x12) {
            assert_null(p); /* exactly one */
            p = &aml[i + 6];
        }
    }
    if (p == NULL) {
        fail_msg("no Name(_PRT, Package) in the DSDT");
        return;
    }
    uint32_t pkglen;
    size_t n = decode_pkglen(p, &pkglen);
    const uint8_t *end = p + pkglen;
    p += n;
    assert_int_equal(*p++, 128);
    for (unsigned slot = 0; slot < 32; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            assert_int_equal(*p++, 0x12);
            uint32_t elen;
            size_t en = decode_pkglen(p, &elen);
            const uint8_t *eend = p + elen;
            p += en;
            assert_int_equal(*p++, 4);
            uint64_t v;
            p += decode_int(p, &v);
            assert_int_equal(v, ((uint64_t)slot << 16) | 0xffff);
            p += decode_int(p, &v);
            assert_int_equal(v, pin);
            p += decode_int(p, &v);
            assert_int_equal(v, 0); /* Source: global interrupt */
            p += decode_int(p, &v);
            assert_int_equal(v, X86_PCI_INTX_GSI(slot, pin));
            assert_ptr_equal(p, eend);
        }
    }
    assert_ptr_equal(p, end);
}

/* ---- errors ---- */

static void test_enospc_writes_nothing(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 8);
    build(&m, TABLES_GPA, &t);
    size_t need = t.used;
    for (size_t size = 0; size < need; size++) {
        memset(buf, 0x5a, need);
        size_t used = 12345;
        assert_int_equal(acpi_build_tables(&m, buf, size, TABLES_GPA, &used), -ENOSPC);
        assert_int_equal(used, 12345);
        for (size_t i = 0; i < need; i++)
            assert_int_equal(buf[i], 0x5a);
    }
    size_t used = 0;
    assert_int_equal(acpi_build_tables(&m, buf, need, TABLES_GPA, &used), 0);
    assert_int_equal(used, need);
}

static void expect_einval_at(const struct acpi_machine *m, uint64_t gpa, int line)
{
    size_t used = 777;
    int rc = acpi_build_tables(m, buf, sizeof(buf), gpa, &used);
    if (rc != -EINVAL || used != 777)
        fail_msg("case at line %d: got %d, want -EINVAL", line, rc);
}

#define expect_einval(m, gpa) expect_einval_at((m), (gpa), __LINE__)

static void test_einval(void **state)
{
    (void)state;
    struct acpi_machine ok, m;
    size_t used;
    default_machine(&ok, 4);

    assert_int_equal(acpi_build_tables(NULL, buf, sizeof(buf), TABLES_GPA, &used), -EINVAL);
    assert_int_equal(acpi_build_tables(&ok, NULL, sizeof(buf), TABLES_GPA, &used), -EINVAL);
    assert_int_equal(acpi_build_tables(&ok, buf, sizeof(buf), TABLES_GPA, NULL), -EINVAL);
    expect_einval(&ok, TABLES_GPA + 8);  /* RSDP must be 16-byte aligned */
    expect_einval(&ok, 0xffffff00);      /* would cross 4 GiB */
    expect_einval(&ok, UINT64_MAX - 15); /* wraps */

    default_machine(&m, 0);
    expect_einval(&m, TABLES_GPA);
    default_machine(&m, ACPI_MAX_CPUS + 1);
    expect_einval(&m, TABLES_GPA);

    m = ok;
    m.ioapic_id = 3; /* a LAPIC id */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.lapic_gpa = 0x100000000;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.bus_first = 2;
    m.bus_last = 1;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.ecam_base = 0xe0000800; /* not 1 MiB aligned */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.ecam_base = UINT64_MAX & ~0xfffffULL; /* bus range wraps */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.mmio32_size = 0;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.mmio32_base = 0xf0000000;
    m.mmio32_size = 0x20000000; /* crosses 4 GiB */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.mmio64_base = UINT64_MAX - 0xfff;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.io_base = 0xc00; /* overlaps the legacy window and the config ports */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.io_size = 0x10000; /* past 0xFFFF */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.io_size = 0;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.pm1a_evt_port = 0xfffe; /* 4 ports do not fit */
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.pm_tmr_port = 0;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.sci_irq = 0;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.sci_irq = 2;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.sci_irq = 16;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.com1_irq = 16;
    expect_einval(&m, TABLES_GPA);
    m = ok;
    m.s5_type = 8;
    expect_einval(&m, TABLES_GPA);

    /* Control: the same machine fits when it ends just below 4 GiB. */
    assert_int_equal(acpi_build_tables(&ok, buf, sizeof(buf), 0x100000000 - 0x4000, &used), 0);
}

/* ---- iasl and acpiexec ---- */

static int run(const char *cmd, char *out, size_t outsz)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    static char data[1 << 18];
    size_t n = fread(data, 1, sizeof(data) - 1, f);
    data[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = n;
    return data;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static const char *const problems[] = {"Error",   "Warning", "Incorrect",
                                       "Invalid", "Unknown", "Exception"};

static void assert_clean_text(const char *what, const char *text)
{
    for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++) {
        if (strstr(text, problems[i]) != NULL)
            fail_msg("%s mentions '%s':\n%s", what, problems[i], text);
    }
}

/*
 * Disassemble one table with iasl, check that iasl and its output report nothing wrong,
 * and compile the output back: the result must be error- and warning-free and, for data
 * tables, identical to the input but for the checksum and the compiler id/revision that
 * iasl substitutes. Returns the disassembly.
 */
static char *iasl_roundtrip(const char *dir, const char *name, const uint8_t *table)
{
    char path[512], cmd[1024], out[16384];
    size_t len = rd32(table + 4);
    snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
    write_file(path, table, len);

    snprintf(cmd, sizeof(cmd), "cd '%s' && iasl -d %s.dat 2>&1", dir, name);
    int rc = run(cmd, out, sizeof(out));
    if (rc != 0)
        fail_msg("iasl -d %s exited with %d (is acpica-tools installed?):\n%s", name, rc, out);
    assert_clean_text("iasl -d", out);

    snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
    char *dsl = strdup(slurp(path, NULL));
    assert_non_null(dsl);
    assert_clean_text(path, dsl);

    snprintf(cmd, sizeof(cmd), "cd '%s' && iasl -p re_%s %s.dsl 2>&1", dir, name, name);
    rc = run(cmd, out, sizeof(out));
    if (rc != 0 || strstr(out, "0 Errors, 0 Warnings") == NULL)
        fail_msg("recompiling %s.dsl failed (%d):\n%s", name, rc, out);

    if (strcmp(name, "DSDT") != 0) {
        size_t relen;
        snprintf(path, sizeof(path), "%s/re_%s.aml", dir, name);
        const uint8_t *re = (const uint8_t *)slurp(path, &relen);
        assert_int_equal(relen, len);
        for (size_t i = 0; i < len; i++) {
            bool substituted = i == 9 || (i >= 28 && i < 36);
            if (!substituted && re[i] != table[i])
                fail_msg("%s byte %zu: 0x%02x, iasl re-encodes 0x%02x", name, i, table[i], re[i]);
        }
    }
    return dsl;
}

static void assert_contains(const char *text, const char *what)
{
    if (strstr(text, what) == NULL)
        fail_msg("disassembly lacks '%s':\n%s", what, text);
}

static void iasl_check_all(const struct acpi_machine *m)
{
    struct tables t;
    build(m, TABLES_GPA, &t);
    char dir[] = "/tmp/test_acpi.XXXXXX";
    assert_non_null(mkdtemp(dir));

    /* The RSDP has no table header; iasl cannot take it as a file (checked in build()). */
    free(iasl_roundtrip(dir, "XSDT", t.xsdt));
    free(iasl_roundtrip(dir, "FACP", t.fadt));
    free(iasl_roundtrip(dir, "APIC", t.madt));
    free(iasl_roundtrip(dir, "MCFG", t.mcfg));
    /* The FACS has no checksum or compiler fields, so it round-trips exactly. */
    {
        char path[512], cmd[1024], out[8192];
        snprintf(path, sizeof(path), "%s/FACS.dat", dir);
        write_file(path, t.facs, 64);
        snprintf(cmd, sizeof(cmd), "cd '%s' && iasl -d FACS.dat 2>&1", dir);
        int rc = run(cmd, out, sizeof(out));
        if (rc != 0)
            fail_msg("iasl -d FACS exited with %d:\n%s", rc, out);
        assert_clean_text("iasl -d FACS", out);
    }

    char *dsl = iasl_roundtrip(dir, "DSDT", t.dsdt);
    const char *want[] = {
        "Scope (\\_SB)",
        "Device (PCI0)",
        "Name (_HID, EisaId (\"PNP0A08\")",
        "Name (_CID, EisaId (\"PNP0A03\")",
        "Name (_SEG, Zero)",
        "Name (_BBN, Zero)",
        "Name (_PRT, Package (0x80)",
        "Method (_OSC, 4, Serialized)",
        "ToUUID (\"33db4d5b-1ff7-401c-9657-7441c03dd766\")",
        "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
        "0x0CF8,             // Range Minimum",
        "0x0CF7,             // Range Maximum",
        "0xF000,             // Length",
        "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
        "0xDFFFFFFF,         // Range Maximum",
        "Device (MRES)",
        "Name (_HID, EisaId (\"PNP0C02\")",
        "Memory32Fixed (ReadWrite,",
        "0xE0000000,         // Address Base",
        "0x00100000,         // Address Length",
        "Device (COM1)",
        "Name (_HID, EisaId (\"PNP0501\")",
        "Name (_UID, One)",
        "Method (_STA, 0, NotSerialized)",
        "Return (0x0F)",
        "0x03F8,             // Range Minimum",
        "IRQNoFlags ()",
        "{4}",
        "Name (\\_S5, Package (0x04)",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_contains(dsl, want[i]);
    if (m->mmio64_size != 0)
        assert_contains(dsl, "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, "
                             "NonCacheable, ReadWrite,");
    else
        assert_null(strstr(dsl, "QWordMemory (ResourceProducer"));
    /* No _ADR beside _HID (iasl warns about that on recompilation). */
    assert_null(strstr(dsl, "_ADR"));
    free(dsl);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_iasl_disassembles_all_tables(void **state)
{
    (void)state;
    struct acpi_machine m;
    default_machine(&m, 1);
    iasl_check_all(&m);
    default_machine(&m, 64);
    iasl_check_all(&m);
    default_machine(&m, ACPI_MAX_CPUS);
    iasl_check_all(&m);
}

static void test_without_mmio64_window(void **state)
{
    (void)state;
    struct acpi_machine m;
    default_machine(&m, 2);
    m.mmio64_size = 0;
    iasl_check_all(&m);
}

static void test_ecam_above_4g(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 2);
    m.ecam_base = 0x2000000000ULL;
    m.bus_last = 3;
    build(&m, TABLES_GPA, &t);
    char dir[] = "/tmp/test_acpi.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *dsl = iasl_roundtrip(dir, "DSDT", t.dsdt);
    /* MRES claims the ECAM of buses 0..3 with a 64-bit descriptor. */
    assert_contains(dsl, "QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed, "
                         "NonCacheable, ReadWrite,");
    assert_contains(dsl, "0x0000002000000000, // Range Minimum");
    assert_contains(dsl, "0x00000020003FFFFF, // Range Maximum");
    assert_null(strstr(dsl, "Memory32Fixed"));
    free(dsl);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Execute _OSC as Linux calls it, with acpiexec (ACPICA's own interpreter). */
static void test_osc_executes(void **state)
{
    (void)state;
    struct acpi_machine m;
    struct tables t;
    default_machine(&m, 2);
    build(&m, TABLES_GPA, &t);
    char dir[] = "/tmp/test_acpi.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
    write_file(path, t.dsdt, rd32(t.dsdt + 4));

    static const char uuid[] = "(5b 4d db 33 f7 1f 1c 40 96 57 74 41 c0 3d d7 66)";
    static const char other[] = "(5b 4d db 33 f7 1f 1c 40 96 57 74 41 c0 3d d7 67)";
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && timeout 60 acpiexec -b '"
             /* Query asking for everything (hot plug included): hot plug is masked. */
             "execute \\_SB.PCI0._OSC %s 1 3 (01 00 00 00 1f 00 00 00 ff 00 00 00);"
             /* Commit of exactly what was granted: no error bits. */
             "execute \\_SB.PCI0._OSC %s 1 3 (00 00 00 00 1f 00 00 00 bc 00 00 00);"
             /* Unknown UUID and unknown revision. */
             "execute \\_SB.PCI0._OSC %s 1 3 (00 00 00 00 1f 00 00 00 bc 00 00 00);"
             "execute \\_SB.PCI0._OSC %s 2 3 (00 00 00 00 1f 00 00 00 1c 00 00 00)"
             "' dsdt.dat 2>&1",
             dir, uuid, uuid, other, uuid);
    static char out[1 << 16];
    int rc = run(cmd, out, sizeof(out));
    if (rc != 0)
        fail_msg("acpiexec exited with %d:\n%s", rc, out);
    const char *want[] = {
        "11 00 00 00 1F 00 00 00 BC 00 00 00", /* query bit kept, masked bit set */
        "00 00 00 00 1F 00 00 00 BC 00 00 00",
        "04 00 00 00 1F 00 00 00 BC 00 00 00", /* unrecognised UUID */
        "08 00 00 00 1F 00 00 00 1C 00 00 00", /* unrecognised revision */
    };
    const char *p = out;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        p = strstr(p, want[i]);
        if (p == NULL) {
            fail_msg("acpiexec output lacks '%s' (in order):\n%s", want[i], out);
            return;
        }
    }
    assert_null(strstr(out, "ACPI Error"));
    assert_null(strstr(out, "ACPI Warning"));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_are_disjoint_and_inside),
        cmocka_unit_test(test_pointers_are_guest_physical),
        cmocka_unit_test(test_fadt),
        cmocka_unit_test(test_facs),
        cmocka_unit_test(test_madt_cpu_counts),
        cmocka_unit_test(test_mcfg),
        cmocka_unit_test(test_dsdt_prt),
        cmocka_unit_test(test_enospc_writes_nothing),
        cmocka_unit_test(test_einval),
        cmocka_unit_test(test_iasl_disassembles_all_tables),
        cmocka_unit_test(test_without_mmio64_window),
        cmocka_unit_test(test_ecam_above_4g),
        cmocka_unit_test(test_osc_executes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
