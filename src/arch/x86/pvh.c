/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ELF vmlinux loading through the PVH entry: PT_LOAD segments go to their physical
 * addresses, the PHYS32 entry note gives the 32-bit entry point, and an hvm_start_info
 * with the memory map and the initrd as module 0 is left at X86_PVH_INFO_GPA.
 *
 * The ELF structures are decoded field by field from the file bytes (little-endian), so
 * no host alignment or layout assumption is involved, and every offset, size and address
 * is checked against the file or guest RAM with overflow-safe arithmetic before use.
 */
#include "arch/x86/bootparam.h"
#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"
#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

/* ELF64 identification and header (System V ABI). */
#define EI_CLASS    4
#define EI_DATA     5
#define ELFCLASS32  1
#define ELFCLASS64  2
#define ELFDATA2LSB 1
#define ET_EXEC     2
#define EM_X86_64   62
#define EHDR64_SIZE 64
#define PHDR64_SIZE 56
#define PN_XNUM     0xffff
#define PT_LOAD     1
#define PT_NOTE     4
#define NHDR_SIZE   12

/* Where the PVH structures go inside the page at X86_PVH_INFO_GPA. */
#define PVH_PAGE_SIZE      0x1000
#define PVH_MODLIST_OFFSET 0x40
#define PVH_MEMMAP_OFFSET  0x80

_Static_assert(sizeof(struct hvm_start_info) <= PVH_MODLIST_OFFSET, "start_info fits");
_Static_assert(PVH_MODLIST_OFFSET + sizeof(struct hvm_modlist_entry) <= PVH_MEMMAP_OFFSET,
               "module entry fits");
_Static_assert(PVH_MEMMAP_OFFSET + E820_MAX_ENTRIES * sizeof(struct hvm_memmap_table_entry) <=
                   PVH_PAGE_SIZE,
               "the whole memory map fits in the PVH page");
_Static_assert(X86_PVH_INFO_GPA + PVH_PAGE_SIZE <= X86_ZERO_PAGE_GPA,
               "the PVH page does not run into the zero page");

/** The fields of an ELF64 program header the loader uses. */
struct elf_seg {
    uint64_t offset; /**< p_offset: where the bytes are in the file. */
    uint64_t paddr;  /**< p_paddr: guest-physical load address. */
    uint64_t filesz; /**< p_filesz: bytes copied from the file. */
    uint64_t memsz;  /**< p_memsz: bytes occupied in memory (the rest is zeroed). */
};

/** What the ELF file says, checked, before anything is written. */
struct pvh_plan {
    uint64_t phoff;      /**< File offset of the program headers. */
    unsigned phnum;      /**< Number of program headers. */
    uint64_t entry;      /**< 32-bit PVH entry point from the note. */
    uint64_t kernel_end; /**< End of the highest loaded segment. */
    uint64_t initrd;     /**< Initrd address, 0 when none. */
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

static void read_phdr(const uint8_t *k, const struct pvh_plan *plan, unsigned i, uint32_t *type,
                      struct elf_seg *seg)
{
    const uint8_t *ph = k + plan->phoff + (uint64_t)i * PHDR64_SIZE;
    *type = rd32(ph);
    seg->offset = rd64(ph + 8);
    seg->paddr = rd64(ph + 24);
    seg->filesz = rd64(ph + 32);
    seg->memsz = rd64(ph + 40);
}

static int elf_check_header(const uint8_t *k, size_t size, struct pvh_plan *plan)
{
    if (size < EI_DATA + 1) {
        log_error("boot: ELF kernel is truncated (%zu bytes) inside its header", size);
        return -EINVAL;
    }
    if (k[EI_CLASS] == ELFCLASS32) {
        log_error("boot: kernel is a 32-bit ELF; bulkhead boots ELF64 x86-64 vmlinux (PVH)");
        return -ENOEXEC;
    }
    if (k[EI_CLASS] != ELFCLASS64) {
        log_error("boot: kernel is an ELF of unknown class %u", k[EI_CLASS]);
        return -ENOEXEC;
    }
    if (k[EI_DATA] != ELFDATA2LSB) {
        log_error("boot: kernel is a big-endian ELF, not an x86-64 vmlinux");
        return -ENOEXEC;
    }
    if (size < EHDR64_SIZE) {
        log_error("boot: ELF kernel is truncated (%zu bytes) inside its header", size);
        return -EINVAL;
    }
    uint16_t type = rd16(k + 16);
    uint16_t machine = rd16(k + 18);
    if (machine != EM_X86_64) {
        log_error("boot: kernel is an ELF for machine %u, not x86-64", machine);
        return -ENOEXEC;
    }
    if (type != ET_EXEC) {
        log_error("boot: kernel is an ELF of type %u, not an executable vmlinux", type);
        return -ENOEXEC;
    }
    plan->phoff = rd64(k + 32);
    uint16_t phentsize = rd16(k + 54);
    uint16_t phnum = rd16(k + 56);
    if (phentsize != PHDR64_SIZE || phnum == 0 || phnum == PN_XNUM) {
        log_error("boot: ELF kernel is malformed: %u program headers of %u bytes", phnum,
                  phentsize);
        return -EINVAL;
    }
    if (!range_within(plan->phoff, (uint64_t)phnum * PHDR64_SIZE, 0, size)) {
        log_error("boot: ELF kernel is malformed: program headers at %#llx lie outside the "
                  "%zu-byte file",
                  (unsigned long long)plan->phoff, size);
        return -EINVAL;
    }
    plan->phnum = phnum;
    return 0;
}

/* Note records are padded to 4 bytes (8 when the segment says so). */
static bool note_pad(uint64_t len, uint64_t align, uint64_t *out)
{
    return checked_align_up(len, align, out);
}

/* Look through one PT_NOTE segment; *found is set when the PVH entry note is in it. */
static int scan_notes(const uint8_t *k, const struct elf_seg *seg, uint64_t align, bool *found,
                      uint64_t *entry)
{
    uint64_t pos = 0;
    const uint8_t *base = k + seg->offset;

    while (seg->filesz - pos >= NHDR_SIZE) {
        const uint8_t *n = base + pos;
        uint32_t namesz = rd32(n);
        uint32_t descsz = rd32(n + 4);
        uint32_t type = rd32(n + 8);
        uint64_t name_len;
        uint64_t desc_len;
        uint64_t name_off = pos + NHDR_SIZE;
        uint64_t desc_off;
        if (note_pad(namesz, align, &name_len) || note_pad(descsz, align, &desc_len) ||
            checked_add_u64(name_off, name_len, &desc_off) ||
            !range_within(desc_off, desc_len, 0, seg->filesz)) {
            log_error("boot: ELF kernel is malformed: note at segment offset %#llx runs past "
                      "its PT_NOTE segment",
                      (unsigned long long)pos);
            return -EINVAL;
        }
        const uint8_t *name = base + name_off;
        bool is_xen = (namesz == 4 && memcmp(name, PVH_NOTE_NAME, 4) == 0) ||
                      (namesz == 3 && memcmp(name, PVH_NOTE_NAME, 3) == 0);
        if (is_xen && type == PVH_NOTE_PHYS32_ENTRY) {
            const uint8_t *desc = base + desc_off;
            uint64_t value;
            if (descsz == 4) {
                value = rd32(desc);
            } else if (descsz == 8) {
                value = rd64(desc);
            } else {
                log_error("boot: ELF kernel is malformed: PVH entry note has a %u-byte value",
                          descsz);
                return -EINVAL;
            }
            if (value > UINT32_MAX) {
                log_error("boot: ELF kernel is malformed: PVH entry %#llx is not a 32-bit "
                          "address",
                          (unsigned long long)value);
                return -EINVAL;
            }
            *found = true;
            *entry = value;
            return 0;
        }
        pos = desc_off + desc_len;
    }
    return 0;
}

static int find_pvh_entry(const uint8_t *k, size_t size, struct pvh_plan *plan)
{
    bool found = false;

    for (unsigned i = 0; i < plan->phnum && !found; i++) {
        uint32_t type;
        struct elf_seg seg;
        read_phdr(k, plan, i, &type, &seg);
        if (type != PT_NOTE)
            continue;
        if (!range_within(seg.offset, seg.filesz, 0, size)) {
            log_error("boot: ELF kernel is malformed: PT_NOTE segment %u (offset %#llx, %llu "
                      "bytes) lies outside the %zu-byte file",
                      i, (unsigned long long)seg.offset, (unsigned long long)seg.filesz, size);
            return -EINVAL;
        }
        uint64_t align = rd64(k + plan->phoff + (uint64_t)i * PHDR64_SIZE + 48) == 8 ? 8 : 4;
        int rc = scan_notes(k, &seg, align, &found, &plan->entry);
        if (rc < 0)
            return rc;
    }
    if (!found) {
        log_error("boot: ELF kernel without PVH entry note (Xen PHYS32_ENTRY): cannot enter it; "
                  "build it with CONFIG_PVH or boot the bzImage");
        return -ENOEXEC;
    }
    return 0;
}

/* Every PT_LOAD must come from inside the file and land in RAM above the boot data. */
static int check_segments(const struct x86_boot_ctx *ctx, struct pvh_plan *plan)
{
    const uint8_t *k = ctx->spec->kernel;
    size_t size = ctx->spec->kernel_size;
    unsigned loads = 0;
    bool entry_loaded = false;

    plan->kernel_end = 0;
    for (unsigned i = 0; i < plan->phnum; i++) {
        uint32_t type;
        struct elf_seg seg;
        uint64_t end;
        read_phdr(k, plan, i, &type, &seg);
        if (type != PT_LOAD)
            continue;
        if (!range_within(seg.offset, seg.filesz, 0, size)) {
            log_error("boot: ELF kernel is malformed: segment %u (offset %#llx, %llu bytes) "
                      "lies outside the %zu-byte file",
                      i, (unsigned long long)seg.offset, (unsigned long long)seg.filesz, size);
            return -EINVAL;
        }
        if (seg.filesz > seg.memsz || checked_add_u64(seg.paddr, seg.memsz, &end)) {
            log_error("boot: ELF kernel is malformed: segment %u has file size %#llx, memory "
                      "size %#llx at %#llx",
                      i, (unsigned long long)seg.filesz, (unsigned long long)seg.memsz,
                      (unsigned long long)seg.paddr);
            return -EINVAL;
        }
        if (seg.memsz == 0)
            continue;
        if (seg.paddr < E820_BIOS_AREA_END) {
            log_error("boot: ELF kernel is malformed: segment %u at %#llx is below 1 MiB, where "
                      "the boot data lives",
                      i, (unsigned long long)seg.paddr);
            return -EINVAL;
        }
        if (!e820_is_ram(&ctx->map, seg.paddr, seg.memsz)) {
            log_error("boot: ELF kernel segment %u (%#llx-%#llx) does not fit in guest RAM", i,
                      (unsigned long long)seg.paddr, (unsigned long long)end);
            return -ENOMEM;
        }
        loads++;
        if (end > plan->kernel_end)
            plan->kernel_end = end;
        if (plan->entry >= seg.paddr && plan->entry < end)
            entry_loaded = true;
    }
    if (loads == 0) {
        log_error("boot: ELF kernel is malformed: it has no loadable segment");
        return -EINVAL;
    }
    if (!entry_loaded) {
        log_error("boot: ELF kernel is malformed: PVH entry %#llx is outside its loaded "
                  "segments",
                  (unsigned long long)plan->entry);
        return -EINVAL;
    }
    return 0;
}

static int load_segments(const struct x86_boot_ctx *ctx, const struct pvh_plan *plan)
{
    const uint8_t *k = ctx->spec->kernel;

    for (unsigned i = 0; i < plan->phnum; i++) {
        uint32_t type;
        struct elf_seg seg;
        read_phdr(k, plan, i, &type, &seg);
        if (type != PT_LOAD || seg.memsz == 0)
            continue;
        int rc = x86_boot_write(ctx->mem, seg.paddr, k + seg.offset, seg.filesz, "kernel segment");
        if (rc < 0)
            return rc;
        /* The bss (memsz beyond filesz) must read as zero even if this RAM was used before. */
        rc = guest_mem_fill(ctx->mem, seg.paddr + seg.filesz, 0, seg.memsz - seg.filesz);
        if (rc < 0) {
            log_error("boot: cannot clear the bss of kernel segment %u", i);
            return rc;
        }
    }
    return 0;
}

static int write_start_info(const struct x86_boot_ctx *ctx, const struct pvh_plan *plan)
{
    uint8_t page[PVH_PAGE_SIZE];
    struct hvm_start_info info;

    memset(page, 0, sizeof(page));
    memset(&info, 0, sizeof(info));
    info.magic = PVH_START_MAGIC;
    info.version = PVH_START_VERSION;
    info.flags = 0;
    info.cmdline_paddr = X86_CMDLINE_GPA;
    info.rsdp_paddr = ctx->spec->rsdp_gpa;
    info.memmap_paddr = X86_PVH_INFO_GPA + PVH_MEMMAP_OFFSET;
    info.memmap_entries = ctx->map.nr;
    if (ctx->spec->initrd_size != 0) {
        struct hvm_modlist_entry mod = {.paddr = plan->initrd, .size = ctx->spec->initrd_size};
        info.nr_modules = 1;
        info.modlist_paddr = X86_PVH_INFO_GPA + PVH_MODLIST_OFFSET;
        memcpy(page + PVH_MODLIST_OFFSET, &mod, sizeof(mod));
    }
    memcpy(page, &info, sizeof(info));
    for (unsigned i = 0; i < ctx->map.nr && i < E820_MAX_ENTRIES; i++) {
        struct hvm_memmap_table_entry e = {.addr = ctx->map.entries[i].addr,
                                           .size = ctx->map.entries[i].size,
                                           .type = ctx->map.entries[i].type};
        memcpy(page + PVH_MEMMAP_OFFSET + i * sizeof(e), &e, sizeof(e));
    }
    return x86_boot_write(ctx->mem, X86_PVH_INFO_GPA, page, sizeof(page), "PVH start_info");
}

int x86_boot_pvh(const struct x86_boot_ctx *ctx, struct x86_boot_state *state)
{
    const struct x86_boot_spec *spec = ctx->spec;
    struct pvh_plan plan;
    int rc;

    memset(&plan, 0, sizeof(plan));
    rc = elf_check_header(spec->kernel, spec->kernel_size, &plan);
    if (rc < 0)
        return rc;
    rc = find_pvh_entry(spec->kernel, spec->kernel_size, &plan);
    if (rc < 0)
        return rc;
    rc = check_segments(ctx, &plan);
    if (rc < 0)
        return rc;
    /* PVH has no cmdline_size: only bulkhead's own buffer limit (already checked) applies. */
    rc = x86_boot_place_initrd(ctx, plan.kernel_end, X86_4G, &plan.initrd);
    if (rc < 0)
        return rc;

    log_debug("boot: ELF vmlinux, PVH entry %#llx, kernel up to %#llx, initrd %zu bytes at "
              "%#llx, command line %zu bytes",
              (unsigned long long)plan.entry, (unsigned long long)plan.kernel_end,
              spec->initrd_size, (unsigned long long)plan.initrd, ctx->cmdline_len);

    rc = load_segments(ctx, &plan);
    if (rc < 0)
        return rc;
    rc = x86_boot_write_cmdline_initrd(ctx, plan.initrd);
    if (rc < 0)
        return rc;
    rc = write_start_info(ctx, &plan);
    if (rc < 0)
        return rc;
    return x86_boot_cpu_protected_mode(ctx->mem, plan.entry, X86_PVH_INFO_GPA, state);
}
