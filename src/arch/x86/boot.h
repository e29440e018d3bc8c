/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file boot.h
 * @brief Direct kernel boot on x86-64: load a Linux kernel into guest RAM, no firmware.
 *
 * Two entry protocols are supported, chosen by the file's format:
 * - a bzImage with a 64-bit entry point (boot protocol 2.12 or later) is entered in long
 *   mode with paging on, RSI pointing at a boot_params "zero page";
 * - an ELF64 vmlinux with a Xen PVH entry note is entered in 32-bit protected mode with
 *   paging off, EBX pointing at an hvm_start_info.
 *
 * The loader writes everything the kernel reads at entry (kernel image, command line,
 * initrd, boot_params or start_info, the e820 map, GDT, IDT and page tables) at the fixed
 * addresses of arch/x86/layout.h and describes the vCPU state in a struct x86_boot_state,
 * which the platform loads into vCPU 0. The kernel file is untrusted input: every header
 * field is checked before it decides an address or a length.
 */
#ifndef BULKHEAD_ARCH_X86_BOOT_H
#define BULKHEAD_ARCH_X86_BOOT_H

#include "arch/x86/cpu_state.h"
#include "core/guest_mem.h"

#include <stddef.h>
#include <stdint.h>

/** Selector of the flat code segment (Linux's __BOOT_CS, which the boot protocol requires). */
#define X86_BOOT_CS_SELECTOR 0x10
/** Selector of the flat data segment (Linux's __BOOT_DS). */
#define X86_BOOT_DS_SELECTOR 0x18
/** Selector of the TSS descriptor the task register is loaded from. */
#define X86_BOOT_TSS_SELECTOR 0x08
/** Descriptors in the boot GDT: null, TSS, code, data. */
#define X86_BOOT_GDT_ENTRIES 4

/**
 * A boot file as the loader sees it: its size and a way to copy bytes out of it.
 *
 * The file is the user's and may be rewritten at any moment, so the loader never looks at
 * it in place: it copies each header it interprets into its own memory once, validates that
 * copy and uses only the copy; payload (kernel code, initrd) it copies straight into guest
 * RAM at destinations already validated. A file that changes during a load can then give
 * the guest a broken kernel, or fail the load, but can never steer the VMM.
 */
struct boot_image {
    /** Length in bytes when the load starts; every read the loader makes lies inside it. */
    uint64_t size;
    /**
     * Copy @p len bytes from offset @p offset of the file to @p dst.
     * @return 0, or a negative errno: -ENODATA when the file now ends before offset + len.
     */
    int (*read)(const void *ctx, uint64_t offset, void *dst, size_t len);
    /** What read() is called with: the file. */
    const void *ctx;
};

/** What to boot. */
struct x86_boot_spec {
    const struct guest_mem *mem; /**< Guest RAM; the kernel and boot data are written here. */
    struct boot_image kernel;    /**< The kernel file (bzImage or ELF vmlinux). */
    struct boot_image initrd;    /**< The initrd; no initrd when its read is NULL. */
    const char *cmdline;         /**< Kernel command line; may be "" (NULL is taken as ""). */
    uint64_t rsdp_gpa;           /**< Where the ACPI RSDP is, 0 to let the guest search. */
};

/**
 * Detect the kernel's format, load it and everything it reads at entry, and describe the
 * boot vCPU's initial state.
 *
 * Formats: a bzImage ("HdrS" header, boot flag 0xAA55) with boot protocol >= 2.12 and a
 * 64-bit entry point (XLF_KERNEL_64), or an ELF64 x86-64 executable with a PVH entry note
 * (name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment. The initrd is placed
 * page-aligned as high as the kernel allows, below the top of RAM under 4 GiB and above
 * the kernel. Every error is logged once with the reason.
 *
 * @param spec what to boot.
 * @param state receives the vCPU 0 state (only meaningful on success).
 * @return 0; -ENOEXEC when the file is not a kernel bulkhead can boot (not a bzImage or
 *         ELF, too old a boot protocol, no 64-bit entry, 32-bit ELF, ELF without PVH note);
 *         -E2BIG when the command line is longer than the kernel's cmdline_size or than
 *         X86_CMDLINE_MAX allows; -ENOMEM when the kernel or initrd does not fit in guest
 *         RAM; -EINVAL for a malformed file (truncated header or kernel, segments outside
 *         the file, sizes that overflow), an empty initrd, or an inconsistent @p spec; the
 *         read function's error when a file cannot be read (-ENODATA: it became shorter).
 */
int x86_boot_load(const struct x86_boot_spec *spec, struct x86_boot_state *state);

#endif
