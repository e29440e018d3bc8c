/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file bootparam.h
 * @brief Layouts the x86 boot code shares with the guest kernel: Linux boot_params and PVH.
 *
 * These are bulkhead's own descriptions of two ABIs fixed by their specifications: the
 * Linux x86 boot protocol's "zero page" (struct boot_params with the setup header the
 * kernel image carries at file offset 0x1F1) and the Xen PVH start-of-day structure that
 * a kernel entered through its PHYS32 entry note reads from EBX. Fields bulkhead never
 * fills are kept as opaque byte arrays so that only the offsets that matter are spelled
 * out, and every offset is pinned by a _Static_assert: the guest reads these bytes, so a
 * silent layout change would be a boot failure far away from its cause.
 *
 * The structures are written to guest memory as they are in host memory, which is only
 * right on a little-endian host (x86 guests are little-endian).
 */
#ifndef BULKHEAD_ARCH_X86_BOOTPARAM_H
#define BULKHEAD_ARCH_X86_BOOTPARAM_H

#include <stddef.h>
#include <stdint.h>

/** @cond LAYOUT_CHECKS */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "boot structures are copied to the guest in host byte order");
/** @endcond */

/* ---- Linux boot protocol ---- */

/** File offset of the setup header in a bzImage (and its offset inside boot_params). */
#define BP_SETUP_HEADER_OFFSET 0x1f1
/** File offset of the "HdrS" signature. */
#define BP_HEADER_MAGIC_OFFSET 0x202
/** The "HdrS" signature, read as a little-endian 32-bit value. */
#define BP_HEADER_MAGIC 0x53726448u
/** Value of boot_flag in every bootable image. */
#define BP_BOOT_FLAG 0xaa55
/** Sector size the setup_sects field counts in. */
#define BP_SECTOR_SIZE 512
/** setup_sects value an image leaves at 0 means this many (for very old images). */
#define BP_DEFAULT_SETUP_SECTS 4
/** Oldest boot protocol bulkhead boots: 2.12 brings xloadflags and the 64-bit entry flag. */
#define BP_MIN_VERSION 0x020c
/** The 64-bit entry point sits this far into the loaded protected-mode kernel. */
#define BP_ENTRY64_OFFSET 0x200
/** type_of_loader value of a boot loader without an assigned ID. */
#define BP_LOADER_TYPE_UNDEFINED 0xff
/** vid_mode value asking the kernel not to change the video mode ("normal"). */
#define BP_VID_MODE_NORMAL 0xffff
/** heap_end_ptr value: the setup heap ends 0x200 below the 0x10000-byte real-mode segment. */
#define BP_HEAP_END_PTR 0xfe00

/** loadflags: the protected-mode code is loaded at 0x100000 (a bzImage, not a zImage). */
#define BP_LOADED_HIGH 0x01u
/** loadflags: heap_end_ptr is valid. */
#define BP_CAN_USE_HEAP 0x80u

/** xloadflags: the kernel has the 64-bit entry point at offset 0x200. */
#define BP_XLF_KERNEL_64 0x0001u
/** xloadflags: kernel, boot_params, command line and ramdisk may be above 4 GiB. */
#define BP_XLF_CAN_BE_LOADED_ABOVE_4G 0x0002u

/** Entries the zero page's e820_table holds. */
#define BP_E820_MAX_ENTRIES 128

#pragma pack(push, 1)

/** The setup header: offsets in comments are relative to the start of boot_params. */
struct bp_setup_header {
    uint8_t setup_sects;            /**< 0x1f1: size of the real-mode setup in sectors (0 = 4). */
    uint16_t root_flags;            /**< 0x1f2: root filesystem read-only (obsolete). */
    uint32_t syssize;               /**< 0x1f4: protected-mode code size in 16-byte paragraphs. */
    uint16_t ram_size;              /**< 0x1f8: obsolete. */
    uint16_t vid_mode;              /**< 0x1fa: video mode control. */
    uint16_t root_dev;              /**< 0x1fc: default root device (obsolete). */
    uint16_t boot_flag;             /**< 0x1fe: 0xAA55. */
    uint16_t jump;                  /**< 0x200: short jump; its second byte gives the header end. */
    uint32_t header;                /**< 0x202: "HdrS". */
    uint16_t version;               /**< 0x206: boot protocol version, major << 8 | minor. */
    uint32_t realmode_swtch;        /**< 0x208: real-mode loader hook (unused here). */
    uint16_t start_sys_seg;         /**< 0x20c: obsolete. */
    uint16_t kernel_version;        /**< 0x20e: offset of the version string, minus 0x200. */
    uint8_t type_of_loader;         /**< 0x210: boot loader identifier, written by the loader. */
    uint8_t loadflags;              /**< 0x211: BP_LOADED_HIGH, BP_CAN_USE_HEAP, ... */
    uint16_t setup_move_size;       /**< 0x212: obsolete. */
    uint32_t code32_start;          /**< 0x214: 32-bit entry point (unused by the 64-bit entry). */
    uint32_t ramdisk_image;         /**< 0x218: initrd address, low 32 bits. */
    uint32_t ramdisk_size;          /**< 0x21c: initrd size, low 32 bits. */
    uint32_t bootsect_kludge;       /**< 0x220: obsolete. */
    uint16_t heap_end_ptr;          /**< 0x224: end of the setup heap, relative to setup start. */
    uint8_t ext_loader_ver;         /**< 0x226: loader version extension. */
    uint8_t ext_loader_type;        /**< 0x227: loader type extension. */
    uint32_t cmd_line_ptr;          /**< 0x228: command line address, low 32 bits. */
    uint32_t initrd_addr_max;       /**< 0x22c: highest address the initrd may occupy. */
    uint32_t kernel_alignment;      /**< 0x230: alignment a relocatable kernel needs. */
    uint8_t relocatable_kernel;     /**< 0x234: non-zero when the kernel may be loaded anywhere. */
    uint8_t min_alignment;          /**< 0x235: log2 of the smallest alignment accepted. */
    uint16_t xloadflags;            /**< 0x236: BP_XLF_* capabilities. */
    uint32_t cmdline_size;          /**< 0x238: longest command line, without its NUL. */
    uint32_t hardware_subarch;      /**< 0x23c: 0 for a normal PC. */
    uint64_t hardware_subarch_data; /**< 0x240: sub-architecture data. */
    uint32_t payload_offset;        /**< 0x248: offset of the compressed kernel. */
    uint32_t payload_length;        /**< 0x24c: length of the compressed kernel. */
    uint64_t setup_data;            /**< 0x250: list of setup_data blocks (none here). */
    uint64_t pref_address;          /**< 0x258: preferred load address. */
    uint32_t init_size;             /**< 0x260: memory the kernel needs from its load address. */
    uint32_t handover_offset;       /**< 0x264: EFI handover entry offset. */
    uint32_t kernel_info_offset;    /**< 0x268: kernel_info offset (protocol 2.15). */
};

/** One memory-map entry as the zero page stores it. */
struct bp_e820_entry {
    uint64_t addr; /**< Start address. */
    uint64_t size; /**< Length in bytes. */
    uint32_t type; /**< E820_TYPE_* value. */
};

/** The zero page: what the kernel's 64-bit entry point finds at RSI. */
struct boot_params {
    uint8_t screen_info[0x40];       /**< 0x000: text/frame-buffer description (left zero). */
    uint8_t apm_bios_info[0x14];     /**< 0x040: APM BIOS data (left zero). */
    uint8_t pad_054[4];              /**< 0x054: unused. */
    uint64_t tboot_addr;             /**< 0x058: tboot shared page. */
    uint8_t ist_info[0x10];          /**< 0x060: SpeedStep BIOS data. */
    uint64_t acpi_rsdp_addr;         /**< 0x070: physical address of the ACPI RSDP. */
    uint8_t pad_078[8];              /**< 0x078: unused. */
    uint8_t hd0_info[0x10];          /**< 0x080: obsolete. */
    uint8_t hd1_info[0x10];          /**< 0x090: obsolete. */
    uint8_t sys_desc_table[0x10];    /**< 0x0a0: obsolete. */
    uint8_t olpc_ofw_header[0x10];   /**< 0x0b0: OLPC firmware data. */
    uint32_t ext_ramdisk_image;      /**< 0x0c0: initrd address, high 32 bits. */
    uint32_t ext_ramdisk_size;       /**< 0x0c4: initrd size, high 32 bits. */
    uint32_t ext_cmd_line_ptr;       /**< 0x0c8: command line address, high 32 bits. */
    uint8_t pad_0cc[0x70];           /**< 0x0cc: unused. */
    uint32_t cc_blob_address;        /**< 0x13c: confidential-computing blob. */
    uint8_t edid_info[0x80];         /**< 0x140: video EDID. */
    uint8_t efi_info[0x20];          /**< 0x1c0: EFI system table data (no EFI here). */
    uint32_t alt_mem_k;              /**< 0x1e0: alternative memory size in KiB. */
    uint32_t scratch;                /**< 0x1e4: scratch for the setup code. */
    uint8_t e820_entries;            /**< 0x1e8: valid entries in e820_table. */
    uint8_t eddbuf_entries;          /**< 0x1e9: valid entries in eddbuf. */
    uint8_t edd_mbr_sig_buf_entries; /**< 0x1ea: valid entries in edd_mbr_sig_buffer. */
    uint8_t kbd_status;              /**< 0x1eb: keyboard status. */
    uint8_t secure_boot;             /**< 0x1ec: secure-boot state. */
    uint8_t pad_1ed[2];              /**< 0x1ed: unused. */
    uint8_t sentinel;                /**< 0x1ef: non-zero when a loader did not clear the page. */
    uint8_t pad_1f0;                 /**< 0x1f0: unused. */
    struct bp_setup_header hdr;      /**< 0x1f1: the setup header, copied from the image. */
    uint8_t pad_26c[0x290 - 0x26c];  /**< 0x26c: room for future header fields. */
    uint32_t edd_mbr_sig_buffer[16]; /**< 0x290: disk signatures. */
    struct bp_e820_entry e820_table[BP_E820_MAX_ENTRIES]; /**< 0x2d0: the memory map. */
    uint8_t pad_cd0[0x30];                                /**< 0xcd0: unused. */
    uint8_t eddbuf[0x1ec];                                /**< 0xd00: EDD disk data. */
    uint8_t pad_eec[0x114];                               /**< 0xeec: unused. */
};

#pragma pack(pop)

/** @cond LAYOUT_CHECKS */
_Static_assert(sizeof(struct bp_e820_entry) == 20, "bp_e820_entry size");
_Static_assert(sizeof(struct bp_setup_header) == 0x26c - BP_SETUP_HEADER_OFFSET,
               "setup_header size");
_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_size) == 0x0c4, "ext_ramdisk_size");
_Static_assert(offsetof(struct boot_params, ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, cc_blob_address) == 0x13c, "cc_blob_address");
_Static_assert(offsetof(struct boot_params, alt_mem_k) == 0x1e0, "alt_mem_k");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct boot_params, hdr) == BP_SETUP_HEADER_OFFSET, "hdr");
_Static_assert(offsetof(struct boot_params, edd_mbr_sig_buffer) == 0x290, "edd_mbr_sig_buffer");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(offsetof(struct boot_params, eddbuf) == 0xd00, "eddbuf");

/** @endcond */

/**
 * Offset of a setup-header field inside boot_params (and inside the kernel file).
 * @param field a member of struct bp_setup_header.
 */
#define BP_HDR_OFFSET(field) (BP_SETUP_HEADER_OFFSET + offsetof(struct bp_setup_header, field))

/** @cond LAYOUT_CHECKS */
_Static_assert(BP_HDR_OFFSET(vid_mode) == 0x1fa, "vid_mode");
_Static_assert(BP_HDR_OFFSET(boot_flag) == 0x1fe, "boot_flag");
_Static_assert(BP_HDR_OFFSET(jump) == 0x200, "jump");
_Static_assert(BP_HDR_OFFSET(header) == BP_HEADER_MAGIC_OFFSET, "header");
_Static_assert(BP_HDR_OFFSET(version) == 0x206, "version");
_Static_assert(BP_HDR_OFFSET(type_of_loader) == 0x210, "type_of_loader");
_Static_assert(BP_HDR_OFFSET(loadflags) == 0x211, "loadflags");
_Static_assert(BP_HDR_OFFSET(ramdisk_image) == 0x218, "ramdisk_image");
_Static_assert(BP_HDR_OFFSET(ramdisk_size) == 0x21c, "ramdisk_size");
_Static_assert(BP_HDR_OFFSET(heap_end_ptr) == 0x224, "heap_end_ptr");
_Static_assert(BP_HDR_OFFSET(cmd_line_ptr) == 0x228, "cmd_line_ptr");
_Static_assert(BP_HDR_OFFSET(initrd_addr_max) == 0x22c, "initrd_addr_max");
_Static_assert(BP_HDR_OFFSET(kernel_alignment) == 0x230, "kernel_alignment");
_Static_assert(BP_HDR_OFFSET(relocatable_kernel) == 0x234, "relocatable_kernel");
_Static_assert(BP_HDR_OFFSET(xloadflags) == 0x236, "xloadflags");
_Static_assert(BP_HDR_OFFSET(cmdline_size) == 0x238, "cmdline_size");
_Static_assert(BP_HDR_OFFSET(hardware_subarch_data) == 0x240, "hardware_subarch_data");
_Static_assert(BP_HDR_OFFSET(setup_data) == 0x250, "setup_data");
_Static_assert(BP_HDR_OFFSET(pref_address) == 0x258, "pref_address");
_Static_assert(BP_HDR_OFFSET(init_size) == 0x260, "init_size");
_Static_assert(BP_HDR_OFFSET(handover_offset) == 0x264, "handover_offset");
_Static_assert(BP_HDR_OFFSET(kernel_info_offset) == 0x268, "kernel_info_offset");
/** @endcond */

/* ---- PVH (Xen HVM direct boot) ---- */

/** hvm_start_info.magic: "xEn3" with the top bit of the last byte set. */
#define PVH_START_MAGIC 0x336ec578u
/** Structure version bulkhead writes: version 1 adds the memory map. */
#define PVH_START_VERSION 1u
/** ELF note name of the PVH entry note. */
#define PVH_NOTE_NAME "Xen"
/** ELF note type XEN_ELFNOTE_PHYS32_ENTRY: 32-bit physical entry point. */
#define PVH_NOTE_PHYS32_ENTRY 18u

/** The start-of-day structure EBX points at. */
struct hvm_start_info {
    uint32_t magic;          /**< 0x00: PVH_START_MAGIC. */
    uint32_t version;        /**< 0x04: PVH_START_VERSION. */
    uint32_t flags;          /**< 0x08: SIF_* flags (none for an unprivileged guest). */
    uint32_t nr_modules;     /**< 0x0c: entries at modlist_paddr. */
    uint64_t modlist_paddr;  /**< 0x10: array of hvm_modlist_entry (0 when none). */
    uint64_t cmdline_paddr;  /**< 0x18: NUL-terminated command line (0 when none). */
    uint64_t rsdp_paddr;     /**< 0x20: ACPI RSDP (0 when the guest should search). */
    uint64_t memmap_paddr;   /**< 0x28: array of hvm_memmap_table_entry (version 1). */
    uint32_t memmap_entries; /**< 0x30: entries at memmap_paddr. */
    uint32_t reserved;       /**< 0x34: must be zero. */
};

/** One module (the initrd) handed to a PVH kernel. */
struct hvm_modlist_entry {
    uint64_t paddr;         /**< Physical address of the module. */
    uint64_t size;          /**< Size in bytes. */
    uint64_t cmdline_paddr; /**< Module command line (0 when none). */
    uint64_t reserved;      /**< Must be zero. */
};

/** One memory-map entry as PVH carries it; types are the e820 types. */
struct hvm_memmap_table_entry {
    uint64_t addr;     /**< Start address. */
    uint64_t size;     /**< Length in bytes. */
    uint32_t type;     /**< E820_TYPE_* value. */
    uint32_t reserved; /**< Must be zero. */
};

/** @cond LAYOUT_CHECKS */
_Static_assert(sizeof(struct hvm_start_info) == 0x38, "hvm_start_info size");
_Static_assert(offsetof(struct hvm_start_info, modlist_paddr) == 0x10, "modlist_paddr");
_Static_assert(offsetof(struct hvm_start_info, cmdline_paddr) == 0x18, "cmdline_paddr");
_Static_assert(offsetof(struct hvm_start_info, rsdp_paddr) == 0x20, "rsdp_paddr");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 0x28, "memmap_paddr");
_Static_assert(offsetof(struct hvm_start_info, memmap_entries) == 0x30, "memmap_entries");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry size");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry size");
_Static_assert(offsetof(struct hvm_memmap_table_entry, type) == 16, "memmap type");
/** @endcond */

#endif
