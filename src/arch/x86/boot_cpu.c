/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Initial vCPU state for the two entry protocols, and the in-memory tables that back it.
 *
 * The GDT descriptors are encoded from the very x86_segment values handed to the platform,
 * so the hidden segment state and the GDT cannot disagree. The GDT has room for four
 * 8-byte descriptors before the IDT (layout.h): null, TSS (0x08), code (0x10 = __BOOT_CS)
 * and data (0x18 = __BOOT_DS). For the 32-bit PVH entry that is a complete, valid table.
 * For long mode a TSS descriptor would be 16 bytes, which does not fit before the code
 * descriptor; only its low half is stored. The CPU reads a TSS descriptor only on LTR or a
 * task switch (none in long mode), and Linux loads its own GDT and TR before either, so
 * the hidden TR state (a busy 64-bit TSS, which VM entry requires) is all that matters.
 */
#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"
#include "core/log.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define CR0_PE          0x00000001ULL
#define CR0_ET          0x00000010ULL
#define CR0_NE          0x00000020ULL
#define CR0_PG          0x80000000ULL
#define CR4_PAE         0x00000020ULL
#define EFER_LME        0x00000100ULL
#define EFER_LMA        0x00000400ULL
#define RFLAGS_RESERVED 0x2ULL

/* Descriptor types (S=1: code/data; S=0: system). */
#define SEG_TYPE_CODE_XRA 0xb /* execute/read, accessed */
#define SEG_TYPE_DATA_RWA 0x3 /* read/write, accessed */
#define SEG_TYPE_TSS_BUSY 0xb /* busy TSS: 32-bit, or 64-bit in long mode */
#define SEG_TYPE_LDT      0x2
#define TSS_LIMIT         0x67 /* the smallest TSS: 104 bytes */

/* Page-table entry bits, and the tables' places: PML4, PDPT, then one PD per GiB. */
#define PTE_P      0x1ULL
#define PTE_RW     0x2ULL
#define PTE_PS     0x80ULL
#define PAGE_SIZE  0x1000ULL
#define PT_ENTRIES 512
#define PDPT_GPA   (X86_BOOT_PML4_GPA + PAGE_SIZE)
#define PD_GPA     (X86_BOOT_PML4_GPA + 2 * PAGE_SIZE)
#define NR_PDS     4 /* 4 GiB of 1 GiB each */
#define HUGE_2M    0x200000ULL

#define GDT_SIZE  (X86_BOOT_GDT_ENTRIES * 8)
#define IDT_CLEAR 16 /* one (non-present) 64-bit gate */

_Static_assert(X86_BOOT_GDT_GPA + GDT_SIZE <= X86_BOOT_IDT_GPA, "GDT ends before the IDT");
_Static_assert(X86_BOOT_CS_SELECTOR / 8 < X86_BOOT_GDT_ENTRIES, "code descriptor in the GDT");
_Static_assert(X86_BOOT_DS_SELECTOR / 8 < X86_BOOT_GDT_ENTRIES, "data descriptor in the GDT");
_Static_assert(X86_BOOT_TSS_SELECTOR / 8 < X86_BOOT_GDT_ENTRIES, "TSS descriptor in the GDT");
_Static_assert(X86_BOOT_PML4_GPA % PAGE_SIZE == 0, "page tables page-aligned");
_Static_assert(X86_BOOT_PML4_GPA + (2 + NR_PDS) * PAGE_SIZE <= X86_CMDLINE_GPA,
               "page tables below the command line");
_Static_assert(X86_ZERO_PAGE_GPA + PAGE_SIZE <= X86_BOOT_PML4_GPA,
               "zero page below the page tables");
_Static_assert(X86_BOOT_STACK_GPA > X86_ZERO_PAGE_GPA + PAGE_SIZE - 1 &&
                   X86_BOOT_STACK_GPA <= X86_BOOT_PML4_GPA,
               "boot stack between the zero page and the page tables");

static uint64_t gdt_encode(const struct x86_segment *s)
{
    uint64_t limit = s->g ? (uint64_t)s->limit >> 12 : s->limit;
    uint64_t d = 0;

    d |= limit & 0xffff;
    d |= (s->base & 0xffffffULL) << 16;
    d |= (uint64_t)(s->type & 0xf) << 40;
    d |= (uint64_t)(s->s & 1) << 44;
    d |= (uint64_t)(s->dpl & 3) << 45;
    d |= (uint64_t)(s->present & 1) << 47;
    d |= ((limit >> 16) & 0xf) << 48;
    d |= (uint64_t)(s->l & 1) << 53;
    d |= (uint64_t)(s->db & 1) << 54;
    d |= (uint64_t)(s->g & 1) << 55;
    d |= ((s->base >> 24) & 0xff) << 56;
    return d;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static struct x86_segment flat_segment(uint16_t selector, uint8_t type, uint8_t db, uint8_t l)
{
    return (struct x86_segment){.base = 0,
                                .limit = 0xffffffffu,
                                .selector = selector,
                                .type = type,
                                .present = 1,
                                .dpl = 0,
                                .db = db,
                                .s = 1,
                                .l = l,
                                .g = 1,
                                .unusable = 0};
}

/* Segments and descriptor tables common to both entries; GDT and IDT written to RAM. */
static int setup_segments(const struct guest_mem *mem, bool long_mode, struct x86_boot_state *state)
{
    uint8_t gdt[GDT_SIZE];
    uint8_t idt[IDT_CLEAR];

    /* A 64-bit code segment must have D clear; the 32-bit one is a D=1 segment. */
    state->cs =
        flat_segment(X86_BOOT_CS_SELECTOR, SEG_TYPE_CODE_XRA, long_mode ? 0 : 1, long_mode ? 1 : 0);
    state->ds = flat_segment(X86_BOOT_DS_SELECTOR, SEG_TYPE_DATA_RWA, 1, 0);
    state->tr = (struct x86_segment){.base = 0,
                                     .limit = TSS_LIMIT,
                                     .selector = X86_BOOT_TSS_SELECTOR,
                                     .type = SEG_TYPE_TSS_BUSY,
                                     .present = 1};
    state->ldt = (struct x86_segment){.type = SEG_TYPE_LDT, .unusable = 1};

    memset(gdt, 0, sizeof(gdt));
    put_u64(gdt + X86_BOOT_TSS_SELECTOR, gdt_encode(&state->tr));
    put_u64(gdt + X86_BOOT_CS_SELECTOR, gdt_encode(&state->cs));
    put_u64(gdt + X86_BOOT_DS_SELECTOR, gdt_encode(&state->ds));
    state->gdt = (struct x86_dtable){.base = X86_BOOT_GDT_GPA, .limit = GDT_SIZE - 1};

    /* Empty IDT: limit 0 admits no gate, so any exception escalates to a clean shutdown. */
    memset(idt, 0, sizeof(idt));
    state->idt = (struct x86_dtable){.base = X86_BOOT_IDT_GPA, .limit = 0};

    int rc = x86_boot_write(mem, X86_BOOT_GDT_GPA, gdt, sizeof(gdt), "boot GDT");
    if (rc < 0)
        return rc;
    return x86_boot_write(mem, X86_BOOT_IDT_GPA, idt, sizeof(idt), "boot IDT");
}

/* Identity map of [0, 4 GiB) with 2 MiB pages: what the 64-bit protocol promises. */
static int write_page_tables(const struct guest_mem *mem)
{
    uint8_t *pt = guest_mem_ptr(mem, X86_BOOT_PML4_GPA, (2 + NR_PDS) * PAGE_SIZE);
    if (pt == NULL) {
        log_error("boot: boot page tables at %#llx are not in guest RAM",
                  (unsigned long long)X86_BOOT_PML4_GPA);
        return -EFAULT;
    }
    memset(pt, 0, (2 + NR_PDS) * PAGE_SIZE);
    put_u64(pt, PDPT_GPA | PTE_P | PTE_RW);
    for (unsigned i = 0; i < NR_PDS; i++) {
        put_u64(pt + PAGE_SIZE + 8 * i, (PD_GPA + i * PAGE_SIZE) | PTE_P | PTE_RW);
        uint8_t *pd = pt + (2 + i) * PAGE_SIZE;
        for (unsigned j = 0; j < PT_ENTRIES; j++) {
            uint64_t addr = ((uint64_t)i * PT_ENTRIES + j) * HUGE_2M;
            put_u64(pd + 8 * j, addr | PTE_P | PTE_RW | PTE_PS);
        }
    }
    return 0;
}

int x86_boot_cpu_long_mode(const struct guest_mem *mem, uint64_t entry, uint64_t zero_page,
                           struct x86_boot_state *state)
{
    memset(state, 0, sizeof(*state));
    int rc = setup_segments(mem, true, state);
    if (rc < 0)
        return rc;
    rc = write_page_tables(mem);
    if (rc < 0)
        return rc;
    state->rip = entry;
    state->rsp = X86_BOOT_STACK_GPA;
    state->rsi = zero_page;
    state->rflags = RFLAGS_RESERVED;
    state->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    state->cr3 = X86_BOOT_PML4_GPA;
    state->cr4 = CR4_PAE;
    state->efer = EFER_LME | EFER_LMA;
    return 0;
}

int x86_boot_cpu_protected_mode(const struct guest_mem *mem, uint64_t entry, uint64_t start_info,
                                struct x86_boot_state *state)
{
    memset(state, 0, sizeof(*state));
    int rc = setup_segments(mem, false, state);
    if (rc < 0)
        return rc;
    state->rip = entry;
    state->rsp = X86_BOOT_STACK_GPA;
    state->rbx = start_info;
    state->rflags = RFLAGS_RESERVED;
    state->cr0 = CR0_PE | CR0_ET;
    return 0;
}
