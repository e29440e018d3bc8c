/* SPDX-License-Identifier: BSD-2-Clause */
#include "arch/x86/e820.h"

#include "arch/x86/layout.h"
#include "core/checked.h"

#include <errno.h>
#include <stdlib.h>

/* Which type owns an address covered by several ranges: RAM only where nothing else is. */
static unsigned type_rank(uint32_t type)
{
    switch (type) {
    case E820_TYPE_RAM:
        return 1;
    case E820_TYPE_ACPI:
        return 2;
    case E820_TYPE_NVS:
        return 3;
    case E820_TYPE_UNUSABLE:
        return 4;
    default:
        /* Reserved, and any type we do not know: never let the guest use it. */
        return 5;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int e820_normalize(const struct e820_entry *in, unsigned nr_in, struct e820_map *out)
{
    /* Every range contributes its two ends; the map only changes type at these points. */
    uint64_t bounds[2 * E820_MAX_ENTRIES];
    unsigned nr_bounds = 0;

    out->nr = 0;
    if (nr_in > E820_MAX_ENTRIES)
        return -EINVAL;
    for (unsigned i = 0; i < nr_in; i++) {
        uint64_t end;
        if (in[i].size == 0)
            continue;
        if (checked_add_u64(in[i].addr, in[i].size, &end))
            return -EINVAL;
        bounds[nr_bounds++] = in[i].addr;
        bounds[nr_bounds++] = end;
    }
    if (nr_bounds == 0)
        return 0;
    qsort(bounds, nr_bounds, sizeof(bounds[0]), cmp_u64);

    for (unsigned b = 0; b + 1 < nr_bounds; b++) {
        uint64_t lo = bounds[b];
        uint64_t hi = bounds[b + 1];
        if (lo == hi)
            continue;
        /* [lo, hi) lies wholly inside or wholly outside each input range. */
        uint32_t type = 0;
        unsigned rank = 0;
        for (unsigned i = 0; i < nr_in; i++) {
            if (in[i].size == 0 || lo < in[i].addr || lo - in[i].addr >= in[i].size)
                continue;
            if (type_rank(in[i].type) > rank) {
                rank = type_rank(in[i].type);
                type = in[i].type;
            }
        }
        if (rank == 0)
            continue;
        if (out->nr > 0) {
            struct e820_entry *last = &out->entries[out->nr - 1];
            if (last->type == type && last->addr + last->size == lo) {
                last->size += hi - lo;
                continue;
            }
        }
        if (out->nr == E820_MAX_ENTRIES) {
            out->nr = 0;
            return -ENOSPC;
        }
        out->entries[out->nr++] = (struct e820_entry){.addr = lo, .size = hi - lo, .type = type};
    }
    return 0;
}

int x86_e820_build(const struct guest_mem *mem, struct e820_map *out)
{
    struct e820_entry in[GUEST_MEM_MAX_REGIONS + 3];
    unsigned n = 0;

    for (unsigned i = 0; i < mem->nr_regions && i < GUEST_MEM_MAX_REGIONS; i++)
        in[n++] = (struct e820_entry){
            .addr = mem->regions[i].gpa, .size = mem->regions[i].size, .type = E820_TYPE_RAM};
    in[n++] = (struct e820_entry){.addr = X86_BIOS_AREA_START,
                                  .size = E820_BIOS_AREA_END - X86_BIOS_AREA_START,
                                  .type = E820_TYPE_RESERVED};
    in[n++] = (struct e820_entry){
        .addr = X86_PCI_ECAM_BASE, .size = X86_PCI_ECAM_SIZE, .type = E820_TYPE_RESERVED};
    in[n++] = (struct e820_entry){
        .addr = X86_HV_PRIVATE_GPA, .size = X86_HV_PRIVATE_SIZE, .type = E820_TYPE_RESERVED};
    return e820_normalize(in, n, out);
}

/* Last address of a range, clamped: a caller-made map might claim to reach past 2^64. */
static uint64_t last_addr(uint64_t addr, uint64_t size)
{
    return size - 1 > UINT64_MAX - addr ? UINT64_MAX : addr + (size - 1);
}

int e820_split_at_regions(const struct e820_map *map, const struct guest_mem *mem,
                          struct e820_map *out)
{
    out->nr = 0;
    for (unsigned i = 0; i < map->nr && i < E820_MAX_ENTRIES; i++) {
        const struct e820_entry *e = &map->entries[i];
        if (e->type != E820_TYPE_RAM || e->size == 0)
            continue;
        uint64_t e_last = last_addr(e->addr, e->size);
        for (unsigned r = 0; r < mem->nr_regions && r < GUEST_MEM_MAX_REGIONS; r++) {
            const struct guest_region *g = &mem->regions[r];
            if (g->size == 0)
                continue;
            uint64_t g_last = last_addr(g->gpa, g->size);
            uint64_t lo = e->addr > g->gpa ? e->addr : g->gpa;
            uint64_t hi = e_last < g_last ? e_last : g_last;
            /* Inclusive ends cannot overflow; only a piece of all 2^64 bytes has no size. */
            if (lo > hi || hi - lo == UINT64_MAX)
                continue;
            if (out->nr == E820_MAX_ENTRIES) {
                out->nr = 0;
                return -ENOSPC;
            }
            out->entries[out->nr++] =
                (struct e820_entry){.addr = lo, .size = hi - lo + 1, .type = E820_TYPE_RAM};
        }
    }
    return 0;
}

bool e820_is_ram(const struct e820_map *map, uint64_t addr, uint64_t len)
{
    for (unsigned i = 0; i < map->nr; i++) {
        const struct e820_entry *e = &map->entries[i];
        if (e->type == E820_TYPE_RAM && range_within(addr, len, e->addr, e->size))
            return true;
    }
    return false;
}

int e820_find_highest(const struct e820_map *map, uint64_t size, uint64_t align, uint64_t floor,
                      uint64_t limit, uint64_t *out)
{
    if (size == 0 || align == 0 || (align & (align - 1)) != 0)
        return -EINVAL;
    for (unsigned i = map->nr; i-- > 0;) {
        const struct e820_entry *e = &map->entries[i];
        if (e->type != E820_TYPE_RAM)
            continue;
        /* A built map never wraps, but a caller-made one might: clamp instead of adding. */
        uint64_t end = e->size > UINT64_MAX - e->addr ? UINT64_MAX : e->addr + e->size;
        if (end > limit)
            end = limit;
        if (end < size)
            continue;
        uint64_t start = (end - size) & ~(align - 1);
        if (start >= e->addr && start >= floor) {
            *out = start;
            return 0;
        }
    }
    return -ENOMEM;
}
