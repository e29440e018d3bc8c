/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bzImage loading through the Linux x86 64-bit boot protocol: the protected-mode part of
 * the file goes to a 2 MiB-aligned address (pref_address when possible), a zero page
 * carries a copy of the image's setup header completed with what the loader decided.
 *
 * The header is parsed from the copy of the file's first bytes that x86_boot_load() read
 * (struct x86_boot_ctx.head), which is also what the zero page receives: the kernel is told
 * exactly the header that was validated, whatever the file holds by then.
 */
#include "arch/x86/bootparam.h"
#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"
#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

/* The setup header fields bulkhead reads run up to handover_offset (protocol 2.11+). */
#define HDR_MIN_END (BP_HDR_OFFSET(handover_offset) + sizeof(uint32_t))
/* Where the header would end if it had every field this loader knows. */
#define HDR_MAX_END (BP_SETUP_HEADER_OFFSET + sizeof(struct bp_setup_header))
/* Room the zero page leaves for the header: later protocols' fields are copied blindly. */
#define HDR_ROOM_END offsetof(struct boot_params, edd_mbr_sig_buffer)

/** What the header says and where the pieces go, decided before anything is written. */
struct bz_plan {
    struct bp_setup_header hdr; /**< The image's header (fields past its end are zero). */
    size_t hdr_len;             /**< Bytes of the header present in the image (known part). */
    size_t hdr_copy;            /**< Bytes of the header copied to the zero page. */
    uint64_t pm_offset;         /**< File offset of the protected-mode kernel. */
    uint64_t pm_size;           /**< Its size. */
    uint64_t load;              /**< Where it is loaded. */
    uint64_t kernel_end;        /**< End of the memory the kernel uses before reading e820. */
    uint64_t initrd;            /**< Initrd address, 0 when none. */
};

static uint16_t le16_at(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/*
 * Recognise the image and copy its header; every rejection names what was found. @p k holds
 * the file's first bytes, at least min(size, X86_BOOT_HEAD_LEN), which covers every offset
 * read here once @p size has been checked.
 */
static int bz_parse_header(const uint8_t *k, uint64_t size, struct bz_plan *plan)
{
    _Static_assert(BP_HDR_OFFSET(header) + 255 <= X86_BOOT_HEAD_LEN, "the longest header");

    bool has_magic = size >= BP_HEADER_MAGIC_OFFSET + 4 &&
                     le32_at(k + BP_HEADER_MAGIC_OFFSET) == BP_HEADER_MAGIC;
    if (!has_magic) {
        bool mz = size >= 2 && k[0] == 'M' && k[1] == 'Z';
        if (mz && size < BP_HEADER_MAGIC_OFFSET + 4) {
            log_error("boot: kernel file is truncated (%llu bytes): too short for a bzImage "
                      "header",
                      (unsigned long long)size);
            return -EINVAL;
        }
        log_error("boot: kernel file is not a bzImage or ELF%s",
                  mz ? " (a PE/MZ file without the Linux \"HdrS\" boot header)" : "");
        return -ENOEXEC;
    }
    if (size < BP_HDR_OFFSET(version) + sizeof(uint16_t)) {
        log_error("boot: bzImage is truncated (%llu bytes) inside its setup header",
                  (unsigned long long)size);
        return -EINVAL;
    }
    uint16_t version = le16_at(k + BP_HDR_OFFSET(version));
    if (le16_at(k + BP_HDR_OFFSET(boot_flag)) != BP_BOOT_FLAG) {
        log_error("boot: kernel file has a \"HdrS\" header but no 0xAA55 boot flag: not a "
                  "bzImage");
        return -ENOEXEC;
    }
    if (version < BP_MIN_VERSION) {
        log_error("boot: bzImage too old (protocol %u.%u); bulkhead needs 2.12 or later for "
                  "the 64-bit entry",
                  version >> 8, version & 0xff);
        return -ENOEXEC;
    }
    /* The header ends where its leading short jump lands (boot protocol rule). */
    size_t hdr_end = BP_HDR_OFFSET(header) + (size_t)k[BP_HDR_OFFSET(jump) + 1];
    if (hdr_end < HDR_MIN_END) {
        log_error("boot: bzImage setup header is malformed: it ends at %#zx, before the "
                  "fields protocol %u.%u has",
                  hdr_end, version >> 8, version & 0xff);
        return -EINVAL;
    }
    if (size < hdr_end) {
        log_error("boot: bzImage is truncated (%llu bytes) inside its setup header",
                  (unsigned long long)size);
        return -EINVAL;
    }
    plan->hdr_copy = (hdr_end < HDR_ROOM_END ? hdr_end : HDR_ROOM_END) - BP_SETUP_HEADER_OFFSET;
    if (hdr_end > HDR_MAX_END)
        hdr_end = HDR_MAX_END;
    memset(&plan->hdr, 0, sizeof(plan->hdr));
    plan->hdr_len = hdr_end - BP_SETUP_HEADER_OFFSET;
    memcpy(&plan->hdr, k + BP_SETUP_HEADER_OFFSET, plan->hdr_len);

    if (!(plan->hdr.loadflags & BP_LOADED_HIGH)) {
        log_error("boot: kernel is a zImage (not loaded high); bulkhead boots bzImages only");
        return -ENOEXEC;
    }
    if (!(plan->hdr.xloadflags & BP_XLF_KERNEL_64)) {
        log_error("boot: bzImage (protocol %u.%u) has no 64-bit entry point", version >> 8,
                  version & 0xff);
        return -ENOEXEC;
    }

    unsigned sects = plan->hdr.setup_sects ? plan->hdr.setup_sects : BP_DEFAULT_SETUP_SECTS;
    plan->pm_offset = ((uint64_t)sects + 1) * BP_SECTOR_SIZE;
    if (plan->pm_offset >= size) {
        log_error("boot: bzImage is truncated: %llu bytes, but its %u setup sectors end at "
                  "%#llx",
                  (unsigned long long)size, sects, (unsigned long long)plan->pm_offset);
        return -EINVAL;
    }
    plan->pm_size = size - plan->pm_offset;
    /*
     * syssize is reliable from protocol 2.04 on; a file cut short (a copy still in progress,
     * say) would otherwise be loaded and fail in the guest's decompressor, silently. Signed
     * kernels carry more than syssize (the signature), so only a shortfall is an error.
     */
    uint64_t syssize_bytes = (uint64_t)plan->hdr.syssize * 16;
    if (syssize_bytes > plan->pm_size) {
        log_error("boot: bzImage is truncated: its header says the kernel has %llu bytes after "
                  "the setup sectors, the file has %llu",
                  (unsigned long long)syssize_bytes, (unsigned long long)plan->pm_size);
        return -EINVAL;
    }
    return 0;
}

/* Choose the load address: pref_address when it is usable, else the lowest aligned spot. */
static int bz_place_kernel(const struct x86_boot_ctx *ctx, struct bz_plan *plan)
{
    const struct bp_setup_header *h = &plan->hdr;
    uint64_t need = h->init_size > plan->pm_size ? h->init_size : plan->pm_size;
    uint64_t end;

    if (!h->relocatable_kernel) {
        /*
         * A fixed-address kernel is loaded at 1 MiB and runs (decompresses into) its
         * pref_address: both ranges must be RAM, and the run area must not reach down into
         * the boot data (zero page, page tables, command line) it still has to read.
         */
        uint64_t run = h->pref_address != 0 ? h->pref_address : E820_BIOS_AREA_END;
        if (run < E820_BIOS_AREA_END) {
            log_error("boot: non-relocatable kernel runs at %#llx, below 1 MiB where the boot "
                      "data lives",
                      (unsigned long long)run);
            return -EINVAL;
        }
        if (!e820_is_ram(&ctx->ram, E820_BIOS_AREA_END, plan->pm_size) ||
            !e820_is_ram(&ctx->ram, run, h->init_size)) {
            log_error("boot: non-relocatable kernel (%llu bytes, runs at %#llx with %u bytes) "
                      "does not fit in guest RAM",
                      (unsigned long long)plan->pm_size, (unsigned long long)run, h->init_size);
            return -ENOMEM;
        }
        plan->load = E820_BIOS_AREA_END;
        uint64_t load_end = plan->load + plan->pm_size;
        uint64_t run_end = run + h->init_size;
        plan->kernel_end = load_end > run_end ? load_end : run_end;
        return 0;
    }

    uint64_t align = h->kernel_alignment;
    if (align == 0 || (align & (align - 1)) != 0) {
        log_error("boot: bzImage header is malformed: kernel_alignment %#llx is not a power "
                  "of two",
                  (unsigned long long)align);
        return -EINVAL;
    }
    uint64_t pref = h->pref_address;
    if (pref >= E820_BIOS_AREA_END && (pref & (align - 1)) == 0 &&
        e820_is_ram(&ctx->ram, pref, need)) {
        plan->load = pref;
    } else {
        uint64_t low;
        if (checked_align_up(E820_BIOS_AREA_END, align, &low) ||
            !e820_is_ram(&ctx->ram, low, need)) {
            log_error("boot: kernel needs %llu bytes of RAM from a %#llx-aligned address; "
                      "guest RAM has no room for it",
                      (unsigned long long)need, (unsigned long long)align);
            return -ENOMEM;
        }
        if (pref != 0)
            log_debug("boot: pref_address %#llx unusable, loading the kernel at %#llx",
                      (unsigned long long)pref, (unsigned long long)low);
        plan->load = low;
    }
    if (checked_add_u64(plan->load, need, &end))
        return -EINVAL; /* unreachable: e820_is_ram() accepted the range */
    plan->kernel_end = end;
    return 0;
}

static void bz_fill_zero_page(const struct x86_boot_ctx *ctx, const struct bz_plan *plan,
                              struct boot_params *bp)
{
    uint64_t cmdline = X86_CMDLINE_GPA;
    uint64_t initrd_size = ctx->initrd_size;

    /* The whole header as the image has it (fields newer than this loader included)... */
    memset(bp, 0, sizeof(*bp));
    memcpy((uint8_t *)bp + BP_SETUP_HEADER_OFFSET, ctx->head + BP_SETUP_HEADER_OFFSET,
           plan->hdr_copy);
    /* ...then what the loader decides. */
    bp->hdr.type_of_loader = BP_LOADER_TYPE_UNDEFINED;
    bp->hdr.loadflags = (uint8_t)(bp->hdr.loadflags | BP_LOADED_HIGH | BP_CAN_USE_HEAP);
    bp->hdr.heap_end_ptr = BP_HEAP_END_PTR;
    bp->hdr.vid_mode = BP_VID_MODE_NORMAL;
    bp->hdr.cmd_line_ptr = (uint32_t)cmdline;
    bp->ext_cmd_line_ptr = (uint32_t)(cmdline >> 32);
    bp->hdr.ramdisk_image = (uint32_t)plan->initrd;
    bp->ext_ramdisk_image = (uint32_t)(plan->initrd >> 32);
    bp->hdr.ramdisk_size = (uint32_t)initrd_size;
    bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
    bp->hdr.setup_data = 0;
    bp->acpi_rsdp_addr = ctx->spec->rsdp_gpa;

    bp->e820_entries = (uint8_t)ctx->map.nr;
    for (unsigned i = 0; i < ctx->map.nr && i < BP_E820_MAX_ENTRIES; i++) {
        bp->e820_table[i].addr = ctx->map.entries[i].addr;
        bp->e820_table[i].size = ctx->map.entries[i].size;
        bp->e820_table[i].type = ctx->map.entries[i].type;
    }
}

int x86_boot_bzimage(const struct x86_boot_ctx *ctx, struct x86_boot_state *state)
{
    struct bz_plan plan;
    struct boot_params bp;
    int rc;

    _Static_assert(BP_E820_MAX_ENTRIES >= E820_MAX_ENTRIES, "zero page holds the whole map");
    _Static_assert(X86_CMDLINE_GPA + X86_CMDLINE_MAX <= X86_4G, "cmd_line_ptr below 4 GiB");

    memset(&plan, 0, sizeof(plan));
    rc = bz_parse_header(ctx->head, ctx->kernel_size, &plan);
    if (rc < 0)
        return rc;
    rc = x86_boot_check_cmdline(ctx, plan.hdr.cmdline_size);
    if (rc < 0)
        return rc;
    rc = bz_place_kernel(ctx, &plan);
    if (rc < 0)
        return rc;
    /* initrd_addr_max is the last byte the initrd may occupy. */
    uint64_t initrd_limit = (uint64_t)plan.hdr.initrd_addr_max + 1;
    if (initrd_limit > X86_4G)
        initrd_limit = X86_4G;
    rc = x86_boot_place_initrd(ctx, plan.kernel_end, initrd_limit, &plan.initrd);
    if (rc < 0)
        return rc;

    log_debug("boot: bzImage protocol %u.%u, %llu bytes at %#llx (needs up to %#llx), initrd "
              "%llu bytes at %#llx, command line %zu bytes",
              plan.hdr.version >> 8, plan.hdr.version & 0xff, (unsigned long long)plan.pm_size,
              (unsigned long long)plan.load, (unsigned long long)plan.kernel_end,
              (unsigned long long)ctx->initrd_size, (unsigned long long)plan.initrd,
              ctx->cmdline_len);

    rc = x86_boot_load_payload(ctx, false, plan.pm_offset, plan.pm_size, plan.load, "kernel");
    if (rc < 0)
        return rc;
    rc = x86_boot_write_cmdline_initrd(ctx, plan.initrd);
    if (rc < 0)
        return rc;
    bz_fill_zero_page(ctx, &plan, &bp);
    rc = x86_boot_write(ctx->mem, X86_ZERO_PAGE_GPA, &bp, sizeof(bp), "zero page");
    if (rc < 0)
        return rc;
    return x86_boot_cpu_long_mode(ctx->mem, plan.load + BP_ENTRY64_OFFSET, X86_ZERO_PAGE_GPA,
                                  state);
}
