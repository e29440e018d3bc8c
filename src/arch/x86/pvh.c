/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * ELF vmlinux loading through the PVH entry: PT_LOAD segments go to their physical
 * addresses, the PHYS32 entry note gives the 32-bit entry point, and an hvm_start_info
 * with the memory map and the initrd as module 0 is left at X86_PVH_INFO_GPA.
 *
 * The ELF header, program headers and notes are each read from the file once into the
 * loader's memory and decoded field by field from there (little-endian), so no host
 * alignment or layout assumption is involved; every offset, size and address is checked
 * against the file or guest RAM with overflow-safe arithmetic before use, and later steps
 * use the decoded, checked copies only. Segment contents go straight from the file into
 * guest RAM.
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
/* More program headers than any vmlinux has (it has about five); bounds the copy. */
#define ELF_MAX_PHDRS 64

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

/** The fields of an ELF64 program header the loader uses, decoded from its copy. */
struct elf_seg {
    uint32_t type;   /**< p_type. */
    uint64_t offset; /**< p_offset: where the bytes are in the file. */
    uint64_t paddr;  /**< p_paddr: guest-physical load address. */
    uint64_t filesz; /**< p_filesz: bytes copied from the file. */
    uint64_t memsz;  /**< p_memsz: bytes occupied in memory (the rest is zeroed). */
    uint64_t align;  /**< p_align. */
};

/** What the ELF file says, checked, before anything is written. */
struct pvh_plan {
    unsigned phnum;                    /**< Number of program headers. */
    struct elf_seg seg[ELF_MAX_PHDRS]; /**< The program headers, read once. */
    uint64_t entry;                    /**< 32-bit PVH entry point from the note. */
    uint64_t kernel_end;               /**< End of the highest loaded segment. */
    uint64_t initrd;                   /**< Initrd address, 0 when none. */
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

/* Check the ELF header (in ctx->head) and read the program headers into the plan. */
static int elf_read_headers(const struct x86_boot_ctx *ctx, struct pvh_plan *plan)
{
    const uint8_t *k = ctx->head;
    uint64_t size = ctx->kernel_size;

    _Static_assert(EHDR64_SIZE <= X86_BOOT_HEAD_LEN, "the ELF header is in the head copy");
    if (size < EI_DATA + 1) {
        log_error("boot: ELF kernel is truncated (%llu bytes) inside its header",
                  (unsigned long long)size);
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
        log_error("boot: ELF kernel is truncated (%llu bytes) inside its header",
                  (unsigned long long)size);
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
    uint64_t phoff = rd64(k + 32);
    uint16_t phentsize = rd16(k + 54);
    uint16_t phnum = rd16(k + 56);
    if (phentsize != PHDR64_SIZE || phnum == 0 || phnum == PN_XNUM) {
        log_error("boot: ELF kernel is malformed: %u program headers of %u bytes", phnum,
                  phentsize);
        return -EINVAL;
    }
    if (phnum > ELF_MAX_PHDRS) {
        log_error("boot: ELF kernel is malformed: %u program headers, more than the %d a "
                  "vmlinux could need",
                  phnum, ELF_MAX_PHDRS);
        return -EINVAL;
    }
    if (!range_within(phoff, (uint64_t)phnum * PHDR64_SIZE, 0, size)) {
        log_error("boot: ELF kernel is malformed: program headers at %#llx lie outside the "
                  "%llu-byte file",
                  (unsigned long long)phoff, (unsigned long long)size);
        return -EINVAL;
    }
    uint8_t ph[ELF_MAX_PHDRS * PHDR64_SIZE];
    int rc =
        x86_boot_read_kernel(ctx, phoff, ph, (size_t)phnum * PHDR64_SIZE, "ELF program headers");
    if (rc < 0)
        return rc;
    plan->phnum = phnum;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *p = ph + (size_t)i * PHDR64_SIZE;
        plan->seg[i] = (struct elf_seg){.type = rd32(p),
                                        .offset = rd64(p + 8),
                                        .paddr = rd64(p + 24),
                                        .filesz = rd64(p + 32),
                                        .memsz = rd64(p + 40),
                                        .align = rd64(p + 48)};
    }
    return 0;
}

/* Note records are padded to 4 bytes (8 when the segment says so). */
static bool note_pad(uint64_t len, uint64_t align, uint64_t *out)
{
    return checked_align_up(len, align, out);
}

/*
 * Look through one PT_NOTE segment (already checked to lie inside the file), reading each
 * note's header, and the name and value of a candidate, once; *found is set when the PVH
 * entry note is in it.
 */
static int scan_notes(const struct x86_boot_ctx *ctx, const struct elf_seg *seg, bool *found,
                      uint64_t *entry)
{
    uint64_t align = seg->align == 8 ? 8 : 4;
    uint64_t pos = 0;

    while (seg->filesz - pos >= NHDR_SIZE) {
        uint8_t n[NHDR_SIZE];
        int rc = x86_boot_read_kernel(ctx, seg->offset + pos, n, sizeof(n), "ELF note");
        if (rc < 0)
            return rc;
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
        if (type == PVH_NOTE_PHYS32_ENTRY && (namesz == 3 || namesz == 4)) {
            uint8_t name[4];
            rc = x86_boot_read_kernel(ctx, seg->offset + name_off, name, namesz, "ELF note");
            if (rc < 0)
                return rc;
            bool is_xen = memcmp(name, PVH_NOTE_NAME, namesz) == 0;
            if (is_xen && descsz != 4 && descsz != 8) {
                log_error("boot: ELF kernel is malformed: PVH entry note has a %u-byte value",
                          descsz);
                return -EINVAL;
            }
            if (is_xen) {
                uint8_t desc[8];
                rc = x86_boot_read_kernel(ctx, seg->offset + desc_off, desc, descsz,
                                          "PVH entry note");
                if (rc < 0)
                    return rc;
                uint64_t value = descsz == 4 ? rd32(desc) : rd64(desc);
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
        }
        pos = desc_off + desc_len;
    }
    return 0;
}

static int find_pvh_entry(const struct x86_boot_ctx *ctx, struct pvh_plan *plan)
{
    bool found = false;

    for (unsigned i = 0; i < plan->phnum && !found; i++) {
        const struct elf_seg *seg = &plan->seg[i];
        if (seg->type != PT_NOTE)
            continue;
        if (!range_within(seg->offset, seg->filesz, 0, ctx->kernel_size)) {
            log_error("boot: ELF kernel is malformed: PT_NOTE segment %u (offset %#llx, %llu "
                      "bytes) lies outside the %llu-byte file",
                      i, (unsigned long long)seg->offset, (unsigned long long)seg->filesz,
                      (unsigned long long)ctx->kernel_size);
            return -EINVAL;
        }
        int rc = scan_notes(ctx, seg, &found, &plan->entry);
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

/*
 * Every PT_LOAD must come from inside the file and land above the boot data, inside one
 * piece of ctx->ram so that it can be written whole: nothing is written before all pass.
 */
static int check_segments(const struct x86_boot_ctx *ctx, struct pvh_plan *plan)
{
    uint64_t size = ctx->kernel_size;
    unsigned loads = 0;
    bool entry_loaded = false;

    plan->kernel_end = 0;
    for (unsigned i = 0; i < plan->phnum; i++) {
        const struct elf_seg *seg = &plan->seg[i];
        uint64_t end;
        if (seg->type != PT_LOAD)
            continue;
        if (!range_within(seg->offset, seg->filesz, 0, size)) {
            log_error("boot: ELF kernel is malformed: segment %u (offset %#llx, %llu bytes) "
                      "lies outside the %llu-byte file",
                      i, (unsigned long long)seg->offset, (unsigned long long)seg->filesz,
                      (unsigned long long)size);
            return -EINVAL;
        }
        if (seg->filesz > seg->memsz || checked_add_u64(seg->paddr, seg->memsz, &end)) {
            log_error("boot: ELF kernel is malformed: segment %u has file size %#llx, memory "
                      "size %#llx at %#llx",
                      i, (unsigned long long)seg->filesz, (unsigned long long)seg->memsz,
                      (unsigned long long)seg->paddr);
            return -EINVAL;
        }
        if (seg->memsz == 0)
            continue;
        if (seg->paddr < E820_BIOS_AREA_END) {
            log_error("boot: ELF kernel is malformed: segment %u at %#llx is below 1 MiB, where "
                      "the boot data lives",
                      i, (unsigned long long)seg->paddr);
            return -EINVAL;
        }
        if (!e820_is_ram(&ctx->ram, seg->paddr, seg->memsz)) {
            log_error("boot: ELF kernel segment %u (%#llx-%#llx) does not fit in guest RAM "
                      "(one contiguous RAM region)",
                      i, (unsigned long long)seg->paddr, (unsigned long long)end);
            return -ENOMEM;
        }
        loads++;
        if (end > plan->kernel_end)
            plan->kernel_end = end;
        if (plan->entry >= seg->paddr && plan->entry < end)
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
    for (unsigned i = 0; i < plan->phnum; i++) {
        const struct elf_seg *seg = &plan->seg[i];
        if (seg->type != PT_LOAD || seg->memsz == 0)
            continue;
        int rc = x86_boot_load_payload(ctx, false, seg->offset, seg->filesz, seg->paddr,
                                       "kernel segment");
        if (rc < 0)
            return rc;
        /* The bss (memsz beyond filesz) must read as zero even if this RAM was used before. */
        uint64_t bss = seg->memsz - seg->filesz;
        if (bss > SIZE_MAX ||
            guest_mem_fill(ctx->mem, seg->paddr + seg->filesz, 0, (size_t)bss) < 0) {
            log_error("boot: cannot clear the bss of kernel segment %u", i);
            return -EFAULT;
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
    if (ctx->initrd_size != 0) {
        struct hvm_modlist_entry mod = {.paddr = plan->initrd, .size = ctx->initrd_size};
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
    struct pvh_plan plan;
    int rc;

    memset(&plan, 0, sizeof(plan));
    rc = elf_read_headers(ctx, &plan);
    if (rc < 0)
        return rc;
    rc = find_pvh_entry(ctx, &plan);
    if (rc < 0)
        return rc;
    rc = check_segments(ctx, &plan);
    if (rc < 0)
        return rc;
    /* PVH has no cmdline_size: only bulkhead's own buffer limit (already checked) applies. */
    rc = x86_boot_place_initrd(ctx, plan.kernel_end, X86_4G, &plan.initrd);
    if (rc < 0)
        return rc;

    log_debug("boot: ELF vmlinux, PVH entry %#llx, kernel up to %#llx, initrd %llu bytes at "
              "%#llx, command line %zu bytes",
              (unsigned long long)plan.entry, (unsigned long long)plan.kernel_end,
              (unsigned long long)ctx->initrd_size, (unsigned long long)plan.initrd,
              ctx->cmdline_len);

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
