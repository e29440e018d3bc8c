/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file boot_priv.h
 * @brief Internal interface between the parts of the x86 boot loader (boot.c, bzimage.c,
 *        pvh.c, boot_cpu.c); not for use outside arch/x86.
 *
 * The format loaders validate their file completely before writing anything to guest RAM,
 * so that a rejected kernel leaves no half-written state; the helpers here follow the same
 * split (placement decisions first, writes last). Every header is validated on a copy in
 * the loader's own memory (see struct boot_image), never re-read from the file.
 */
#ifndef BULKHEAD_ARCH_X86_BOOT_PRIV_H
#define BULKHEAD_ARCH_X86_BOOT_PRIV_H

#include "arch/x86/boot.h"
#include "arch/x86/cpu_state.h"
#include "arch/x86/e820.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Alignment of the initrd: page-aligned, as both protocols expect. */
#define X86_INITRD_ALIGN 0x1000ULL
/** End of the 32-bit physical address space: initrd and boot data stay below it. */
#define X86_4G 0x100000000ULL

/**
 * Bytes at the start of the kernel file read before the format is known: enough for the
 * ELF header and for a bzImage's whole setup header (it ends by 0x202 + 255 at the latest).
 */
#define X86_BOOT_HEAD_LEN 1024

/** State shared by the common code and a format loader during one x86_boot_load(). */
struct x86_boot_ctx {
    const struct x86_boot_spec *spec; /**< What to boot. */
    const struct guest_mem *mem;      /**< Guest RAM (spec->mem). */
    const char *cmdline;              /**< The command line, never NULL. */
    size_t cmdline_len;               /**< strlen(cmdline), below X86_CMDLINE_MAX. */
    struct e820_map map;              /**< The guest's memory map, as the guest is told it. */
    /**
     * Where the loader may place things: the map's RAM cut at guest_mem region boundaries,
     * so that every range e820_is_ram() accepts here can also be written.
     */
    struct e820_map ram;
    uint64_t kernel_size;            /**< spec->kernel.size, read once. */
    uint64_t initrd_size;            /**< spec->initrd.size, read once (0: no initrd). */
    uint8_t head[X86_BOOT_HEAD_LEN]; /**< The kernel file's first bytes, read once. */
    size_t head_len;                 /**< Bytes in head: fewer when the file is shorter. */
};

/**
 * Copy bytes of the kernel file: those inside @ref x86_boot_ctx.head from there (so they
 * are read from the file only once), the rest from the file.
 * @param ctx the load in progress.
 * @param offset file offset; [offset, offset + len) must lie inside ctx->kernel_size.
 * @param dst destination.
 * @param len bytes.
 * @param what name for the log.
 * @return 0 or a negative errno (logged).
 */
int x86_boot_read_kernel(const struct x86_boot_ctx *ctx, uint64_t offset, void *dst, size_t len,
                         const char *what);

/**
 * Copy bytes of a boot file into guest RAM. The bytes are not interpreted, so nothing
 * about them needs checking; the destination must have been validated already (with
 * ctx->ram), and is checked once more here.
 * @param ctx the load in progress.
 * @param initrd true for the initrd, false for the kernel.
 * @param offset file offset; the range must lie inside the file's size for this load.
 * @param len bytes.
 * @param gpa destination.
 * @param what name for the log.
 * @return 0 or a negative errno (logged).
 */
int x86_boot_load_payload(const struct x86_boot_ctx *ctx, bool initrd, uint64_t offset,
                          uint64_t len, uint64_t gpa, const char *what);

/**
 * Load a bzImage (the caller saw no ELF magic; this also rejects what is not a bzImage).
 * @param ctx the load in progress.
 * @param state receives the long-mode vCPU state.
 * @return 0 or a negative errno as documented for x86_boot_load(), logged.
 */
int x86_boot_bzimage(const struct x86_boot_ctx *ctx, struct x86_boot_state *state);

/**
 * Load an ELF vmlinux through its PVH entry note.
 * @param ctx the load in progress.
 * @param state receives the 32-bit protected-mode vCPU state.
 * @return 0 or a negative errno as documented for x86_boot_load(), logged.
 */
int x86_boot_pvh(const struct x86_boot_ctx *ctx, struct x86_boot_state *state);

/**
 * Check the command line against the kernel's own limit.
 * @param ctx the load in progress.
 * @param kernel_max longest command line the kernel accepts, without the NUL.
 * @return 0, or -E2BIG (logged).
 */
int x86_boot_check_cmdline(const struct x86_boot_ctx *ctx, uint64_t kernel_max);

/**
 * Choose where the initrd goes: page-aligned, as high as possible, inside one entry of
 * ctx->ram.
 * @param ctx the load in progress.
 * @param floor lowest address it may use (the end of the kernel).
 * @param limit it must end at or below this address.
 * @param gpa receives the address, 0 when there is no initrd.
 * @return 0, or -ENOMEM (logged) when it does not fit.
 */
int x86_boot_place_initrd(const struct x86_boot_ctx *ctx, uint64_t floor, uint64_t limit,
                          uint64_t *gpa);

/**
 * Write the command line (with its NUL) at X86_CMDLINE_GPA and copy the initrd file to
 * @p initrd_gpa.
 * @param ctx the load in progress.
 * @param initrd_gpa from x86_boot_place_initrd().
 * @return 0 or a negative errno (logged).
 */
int x86_boot_write_cmdline_initrd(const struct x86_boot_ctx *ctx, uint64_t initrd_gpa);

/**
 * Copy bytes into guest RAM, logging a failure with what was being written.
 * @param mem guest RAM.
 * @param gpa destination.
 * @param src source.
 * @param len bytes.
 * @param what name for the log.
 * @return 0 or -EFAULT (logged).
 */
int x86_boot_write(const struct guest_mem *mem, uint64_t gpa, const void *src, size_t len,
                   const char *what);

/**
 * Write the boot GDT, empty IDT and identity-mapped page tables for the 64-bit boot
 * protocol, and fill @p state for a long-mode entry.
 * @param mem guest RAM.
 * @param entry 64-bit entry point.
 * @param zero_page address of boot_params, passed in RSI.
 * @param state receives the vCPU state.
 * @return 0 or a negative errno (logged).
 */
int x86_boot_cpu_long_mode(const struct guest_mem *mem, uint64_t entry, uint64_t zero_page,
                           struct x86_boot_state *state);

/**
 * Write the boot GDT and empty IDT for the PVH entry, and fill @p state for 32-bit
 * protected mode with paging off.
 * @param mem guest RAM.
 * @param entry 32-bit entry point.
 * @param start_info address of hvm_start_info, passed in EBX.
 * @param state receives the vCPU state.
 * @return 0 or a negative errno (logged).
 */
int x86_boot_cpu_protected_mode(const struct guest_mem *mem, uint64_t entry, uint64_t start_info,
                                struct x86_boot_state *state);

#endif
