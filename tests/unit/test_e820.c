/* SPDX-License-Identifier: BSD-2-Clause */
/* The x86 memory map: RAM sizes around the PCI hole, reservations, normalisation rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

#include <errno.h>
#include <string.h>

#define MiB (1024ULL * 1024)
#define GiB (1024ULL * MiB)

/* e820 never touches the host memory: any non-NULL hva will do. */
static uint8_t dummy_hva;

static void make_mem(struct guest_mem *mem, uint64_t ram)
{
    memset(mem, 0, sizeof(*mem));
    uint64_t low = ram < X86_LOW_RAM_END ? ram : X86_LOW_RAM_END;
    assert_int_equal(guest_mem_add_region(mem, 0, low, &dummy_hva), 0);
    if (ram > low)
        assert_int_equal(guest_mem_add_region(mem, X86_HIGH_RAM_START, ram - low, &dummy_hva), 0);
}

/* Invariants every built map must hold. */
static void assert_clean(const struct e820_map *m)
{
    assert_true(m->nr > 0);
    for (unsigned i = 0; i < m->nr; i++) {
        assert_true(m->entries[i].size > 0);
        if (i == 0)
            continue;
        const struct e820_entry *p = &m->entries[i - 1];
        const struct e820_entry *e = &m->entries[i];
        assert_true(p->addr + p->size <= e->addr); /* sorted, no overlap */
        if (p->addr + p->size == e->addr)
            assert_int_not_equal(p->type, e->type); /* merged */
    }
}

static void assert_entry(const struct e820_map *m, unsigned i, uint64_t addr, uint64_t size,
                         uint32_t type)
{
    assert_true(i < m->nr);
    assert_int_equal(m->entries[i].addr, addr);
    assert_int_equal(m->entries[i].size, size);
    assert_int_equal(m->entries[i].type, type);
}

/* The reservations that follow RAM in every map of this machine. */
static unsigned assert_reserved_tail(const struct e820_map *m, unsigned i)
{
    assert_entry(m, i++, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, E820_TYPE_RESERVED);
    assert_entry(m, i++, X86_HV_PRIVATE_GPA, X86_HV_PRIVATE_SIZE, E820_TYPE_RESERVED);
    return i;
}

static void test_256mib(void **state)
{
    (void)state;
    struct guest_mem mem;
    struct e820_map m;
    make_mem(&mem, 256 * MiB);
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_clean(&m);
    assert_entry(&m, 0, 0, X86_BIOS_AREA_START, E820_TYPE_RAM);
    assert_entry(&m, 1, X86_BIOS_AREA_START, 0x100000 - X86_BIOS_AREA_START, E820_TYPE_RESERVED);
    assert_entry(&m, 2, 0x100000, 256 * MiB - 0x100000, E820_TYPE_RAM);
    assert_int_equal(assert_reserved_tail(&m, 3), m.nr);
    assert_int_equal(m.nr, 5);
}

static void test_exactly_3gib(void **state)
{
    (void)state;
    struct guest_mem mem;
    struct e820_map m;
    make_mem(&mem, 3 * GiB);
    assert_int_equal(mem.nr_regions, 1);
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_clean(&m);
    assert_entry(&m, 2, 0x100000, X86_LOW_RAM_END - 0x100000, E820_TYPE_RAM);
    assert_int_equal(assert_reserved_tail(&m, 3), m.nr);
    /* Nothing above 4 GiB. */
    assert_true(m.entries[m.nr - 1].addr < X86_HIGH_RAM_START);
}

static void test_4gib_split_around_hole(void **state)
{
    (void)state;
    struct guest_mem mem;
    struct e820_map m;
    make_mem(&mem, 4 * GiB);
    assert_int_equal(mem.nr_regions, 2);
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_clean(&m);
    assert_entry(&m, 0, 0, X86_BIOS_AREA_START, E820_TYPE_RAM);
    assert_entry(&m, 2, 0x100000, X86_LOW_RAM_END - 0x100000, E820_TYPE_RAM);
    unsigned i = assert_reserved_tail(&m, 3);
    assert_entry(&m, i, X86_HIGH_RAM_START, 1 * GiB, E820_TYPE_RAM);
    assert_int_equal(m.nr, i + 1);
    /* The PCI hole is not RAM; the total RAM reported is what the guest has, minus the BIOS
     * area. */
    assert_false(e820_is_ram(&m, X86_PCI_MMIO32_BASE, 1));
    uint64_t total = 0;
    for (unsigned k = 0; k < m.nr; k++)
        if (m.entries[k].type == E820_TYPE_RAM)
            total += m.entries[k].size;
    assert_int_equal(total, 4 * GiB - (0x100000 - X86_BIOS_AREA_START));
}

static void test_reserved_punches_ram(void **state)
{
    (void)state;
    /* A RAM region that covers the ECAM window (unusual layout) must still lose it. */
    struct e820_entry in[] = {
        {.addr = 0xd0000000, .size = 0x20000000, .type = E820_TYPE_RAM},
        {.addr = X86_PCI_ECAM_BASE, .size = X86_PCI_ECAM_SIZE, .type = E820_TYPE_RESERVED},
    };
    struct e820_map m;
    assert_int_equal(e820_normalize(in, 2, &m), 0);
    assert_clean(&m);
    assert_int_equal(m.nr, 3);
    assert_entry(&m, 0, 0xd0000000, X86_PCI_ECAM_BASE - 0xd0000000, E820_TYPE_RAM);
    assert_entry(&m, 1, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, E820_TYPE_RESERVED);
    assert_entry(&m, 2, X86_PCI_ECAM_BASE + X86_PCI_ECAM_SIZE,
                 0xf0000000 - X86_PCI_ECAM_BASE - X86_PCI_ECAM_SIZE, E820_TYPE_RAM);
    assert_false(e820_is_ram(&m, X86_PCI_ECAM_BASE - 1, 2));
    assert_true(e820_is_ram(&m, 0xd0000000, X86_PCI_ECAM_BASE - 0xd0000000));
}

static void test_unsorted_overlapping_merged(void **state)
{
    (void)state;
    struct e820_entry in[] = {
        {.addr = 0x3000, .size = 0x1000, .type = E820_TYPE_RAM},
        {.addr = 0x1000, .size = 0x1000, .type = E820_TYPE_RAM},
        {.addr = 0x1800, .size = 0x2000, .type = E820_TYPE_RAM}, /* overlaps both */
        {.addr = 0x9000, .size = 0, .type = E820_TYPE_RESERVED}, /* ignored */
        {.addr = 0x5000, .size = 0x1000, .type = E820_TYPE_ACPI},
        {.addr = 0x5800, .size = 0x1000, .type = E820_TYPE_RESERVED},
        {.addr = 0x4000, .size = 0x3000, .type = E820_TYPE_RAM},
    };
    struct e820_map m;
    assert_int_equal(e820_normalize(in, sizeof(in) / sizeof(in[0]), &m), 0);
    assert_clean(&m);
    assert_int_equal(m.nr, 4);
    assert_entry(&m, 0, 0x1000, 0x4000, E820_TYPE_RAM);
    assert_entry(&m, 1, 0x5000, 0x800, E820_TYPE_ACPI);      /* ACPI beats RAM */
    assert_entry(&m, 2, 0x5800, 0x1000, E820_TYPE_RESERVED); /* reserved beats ACPI */
    assert_entry(&m, 3, 0x6800, 0x800, E820_TYPE_RAM);
}

static void test_wrapping_and_limits(void **state)
{
    (void)state;
    struct e820_map m;
    struct e820_entry wrap = {.addr = UINT64_MAX - 0xfff, .size = 0x2000, .type = E820_TYPE_RAM};
    assert_int_equal(e820_normalize(&wrap, 1, &m), -EINVAL);
    /* An end of exactly 2^64 is not representable either. */
    struct e820_entry top = {.addr = UINT64_MAX - 0xfff, .size = 0x1000, .type = E820_TYPE_RAM};
    assert_int_equal(e820_normalize(&top, 1, &m), -EINVAL);
    top.addr -= 0x1000;
    assert_int_equal(e820_normalize(&top, 1, &m), 0);
    assert_int_equal(m.nr, 1);
    assert_entry(&m, 0, UINT64_MAX - 0x1fff, 0x1000, E820_TYPE_RAM);

    static struct e820_entry many[E820_MAX_ENTRIES + 1];
    assert_int_equal(e820_normalize(many, E820_MAX_ENTRIES + 1, &m), -EINVAL);
    /* 128 separated ranges of alternating type with reserved holes in between: more output
     * entries than the map holds. */
    for (unsigned i = 0; i < E820_MAX_ENTRIES; i++)
        many[i] = (struct e820_entry){.addr = i * 0x2000ULL, .size = 0x1000, .type = 1 + i % 2};
    assert_int_equal(e820_normalize(many, E820_MAX_ENTRIES, &m), 0);
    assert_int_equal(m.nr, E820_MAX_ENTRIES);
    many[E820_MAX_ENTRIES - 1].size = 0x1800; /* now overlaps nothing, still fits */
    assert_int_equal(e820_normalize(many, E820_MAX_ENTRIES, &m), 0);
    /* Split one range into 3 by nesting a reservation: 129 entries needed. */
    many[0] = (struct e820_entry){.addr = 0, .size = 0x1000, .type = E820_TYPE_RAM};
    many[1] = (struct e820_entry){.addr = 0x400, .size = 0x100, .type = E820_TYPE_RESERVED};
    assert_int_equal(e820_normalize(many, E820_MAX_ENTRIES, &m), -ENOSPC);
    assert_int_equal(m.nr, 0);
}

static void test_find_highest(void **state)
{
    (void)state;
    struct guest_mem mem;
    struct e820_map m;
    uint64_t at;
    make_mem(&mem, 4 * GiB);
    assert_int_equal(x86_e820_build(&mem, &m), 0);

    /* Below 4 GiB the top of RAM is the start of the PCI hole. */
    assert_int_equal(e820_find_highest(&m, 0x1234, 0x1000, 0x100000, 1ULL << 32, &at), 0);
    assert_int_equal(at, X86_LOW_RAM_END - 0x2000);
    assert_true(e820_is_ram(&m, at, 0x1234));
    /* A limit inside RAM is honoured (end <= limit). */
    assert_int_equal(e820_find_highest(&m, 0x1000, 0x1000, 0, 0x10000000, &at), 0);
    assert_int_equal(at, 0x10000000 - 0x1000);
    /* Without a limit the high region is used. */
    assert_int_equal(e820_find_highest(&m, 0x1000, 0x1000, 0, UINT64_MAX, &at), 0);
    assert_int_equal(at, X86_HIGH_RAM_START + GiB - 0x1000);
    /* Too big for any RAM entry under the limit, or above the floor. */
    assert_int_equal(e820_find_highest(&m, 3 * GiB, 0x1000, 0, 1ULL << 32, &at), -ENOMEM);
    assert_int_equal(
        e820_find_highest(&m, 0x2000, 0x1000, X86_LOW_RAM_END - 0x1000, 1ULL << 32, &at), -ENOMEM);
    /* Does not fall into the BIOS hole: a block too big for [0, 0x9fc00) but placed with a
     * limit just above the hole start. */
    assert_int_equal(e820_find_highest(&m, 0x1000, 0x1000, 0, 0xa0000, &at), 0);
    assert_int_equal(at, 0x9e000);
    assert_int_equal(e820_find_highest(&m, 0, 0x1000, 0, 1ULL << 32, &at), -EINVAL);
    assert_int_equal(e820_find_highest(&m, 1, 3, 0, 1ULL << 32, &at), -EINVAL);
}

static void test_is_ram_edges(void **state)
{
    (void)state;
    struct guest_mem mem;
    struct e820_map m;
    make_mem(&mem, 256 * MiB);
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_true(e820_is_ram(&m, 0x100000, 255 * MiB));
    assert_false(e820_is_ram(&m, 0x100000, 255 * MiB + 1));
    assert_false(e820_is_ram(&m, 0x9f000, 0x1000)); /* crosses into the BIOS area */
    assert_false(e820_is_ram(&m, 0x100000, UINT64_MAX));
    assert_false(e820_is_ram(&m, UINT64_MAX, 2));
}

static void test_split_at_regions(void **state)
{
    (void)state;
    /* Two adjacent regions: the guest is told one RAM range, the loader gets two. */
    struct guest_mem mem;
    memset(&mem, 0, sizeof(mem));
    assert_int_equal(guest_mem_add_region(&mem, 0, 64 * MiB, &dummy_hva), 0);
    assert_int_equal(guest_mem_add_region(&mem, 64 * MiB, 64 * MiB, &dummy_hva), 0);
    struct e820_map m;
    struct e820_map r;
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_clean(&m);
    assert_entry(&m, 2, 0x100000, 128 * MiB - 0x100000, E820_TYPE_RAM);
    assert_int_equal(e820_split_at_regions(&m, &mem, &r), 0);
    assert_int_equal(r.nr, 3);
    assert_entry(&r, 0, 0, X86_BIOS_AREA_START, E820_TYPE_RAM);
    assert_entry(&r, 1, 0x100000, 63 * MiB, E820_TYPE_RAM);
    assert_entry(&r, 2, 64 * MiB, 64 * MiB, E820_TYPE_RAM);
    assert_true(e820_is_ram(&m, 64 * MiB - 1, 2));
    assert_false(e820_is_ram(&r, 64 * MiB - 1, 2));
    assert_true(e820_is_ram(&r, 64 * MiB, 64 * MiB));
    /* Placement keeps to one piece: 70 MiB only fits across the boundary. */
    uint64_t at;
    assert_int_equal(e820_find_highest(&m, 70 * MiB, 0x1000, 0, 1ULL << 32, &at), 0);
    assert_int_equal(e820_find_highest(&r, 70 * MiB, 0x1000, 0, 1ULL << 32, &at), -ENOMEM);

    /* Regions around the PCI hole: the pieces are exactly the map's RAM entries. */
    make_mem(&mem, 4 * GiB);
    assert_int_equal(x86_e820_build(&mem, &m), 0);
    assert_int_equal(e820_split_at_regions(&m, &mem, &r), 0);
    unsigned n = 0;
    for (unsigned i = 0; i < m.nr; i++) {
        if (m.entries[i].type != E820_TYPE_RAM)
            continue;
        assert_true(n < r.nr);
        assert_entry(&r, n++, m.entries[i].addr, m.entries[i].size, E820_TYPE_RAM);
    }
    assert_int_equal(r.nr, n);

    /* A caller-made entry that claims to reach past 2^64 is clamped, not wrapped. */
    m.nr = 1;
    m.entries[0] = (struct e820_entry){.addr = 16, .size = UINT64_MAX, .type = E820_TYPE_RAM};
    assert_int_equal(e820_split_at_regions(&m, &mem, &r), 0);
    assert_int_equal(r.nr, 2);
    assert_entry(&r, 0, 16, X86_LOW_RAM_END - 16, E820_TYPE_RAM);
    assert_entry(&r, 1, X86_HIGH_RAM_START, 1 * GiB, E820_TYPE_RAM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_256mib),
        cmocka_unit_test(test_exactly_3gib),
        cmocka_unit_test(test_4gib_split_around_hole),
        cmocka_unit_test(test_reserved_punches_ram),
        cmocka_unit_test(test_unsorted_overlapping_merged),
        cmocka_unit_test(test_wrapping_and_limits),
        cmocka_unit_test(test_find_highest),
        cmocka_unit_test(test_is_ram_edges),
        cmocka_unit_test(test_split_at_regions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
