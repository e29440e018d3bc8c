/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file cpu_state.h
 * @brief Portable descriptions of x86 vCPU state the boot code hands to the platform.
 *
 * The boot code decides how a vCPU starts (which mode, which registers) and
 * what CPUID it reports; the platform only applies these structures.
 */
#ifndef BULKHEAD_ARCH_X86_CPU_STATE_H
#define BULKHEAD_ARCH_X86_CPU_STATE_H

#include <stdint.h>

/** One segment register in its hidden (descriptor cache) form. */
struct x86_segment {
    uint64_t base;     /**< Linear base. */
    uint32_t limit;    /**< Limit in bytes (already scaled when g is set). */
    uint16_t selector; /**< Selector. */
    uint8_t type;      /**< Descriptor type field. */
    uint8_t present;   /**< P bit. */
    uint8_t dpl;       /**< Privilege level. */
    uint8_t db;        /**< D/B (32-bit default size). */
    uint8_t s;         /**< S (code/data rather than system). */
    uint8_t l;         /**< L (64-bit code). */
    uint8_t g;         /**< G (4 KiB granularity). */
    uint8_t unusable;  /**< Segment unusable (null). */
};

/** A descriptor-table register (GDTR/IDTR). */
struct x86_dtable {
    uint64_t base;  /**< Linear base. */
    uint16_t limit; /**< Limit in bytes. */
};

/** Complete register state the boot vCPU starts with. */
struct x86_boot_state {
    uint64_t rip;           /**< Entry point. */
    uint64_t rsp;           /**< Stack pointer. */
    uint64_t rsi;           /**< Linux 64-bit boot protocol: boot_params address. */
    uint64_t rbx;           /**< PVH: hvm_start_info address. */
    uint64_t rflags;        /**< Flags (bit 1 always set). */
    uint64_t cr0;           /**< CR0. */
    uint64_t cr3;           /**< CR3 (page-table root) when paging is on. */
    uint64_t cr4;           /**< CR4. */
    uint64_t efer;          /**< EFER MSR. */
    struct x86_segment cs;  /**< Code segment. */
    struct x86_segment ds;  /**< Data segments: ds, es, fs, gs and ss all use this. */
    struct x86_segment tr;  /**< Task register. */
    struct x86_segment ldt; /**< LDT register. */
    struct x86_dtable gdt;  /**< GDTR. */
    struct x86_dtable idt;  /**< IDTR. */
};

/** One CPUID leaf as reported to the guest. */
struct x86_cpuid_entry {
    uint32_t function; /**< EAX input. */
    uint32_t index;    /**< ECX input (sub-leaf), when significant. */
    uint32_t flags;    /**< X86_CPUID_FLAG_* */
    uint32_t eax;      /**< Output EAX. */
    uint32_t ebx;      /**< Output EBX. */
    uint32_t ecx;      /**< Output ECX. */
    uint32_t edx;      /**< Output EDX. */
};

/** The entry's index (sub-leaf) is significant. */
#define X86_CPUID_FLAG_SIGNIFICANT_INDEX 1u

/** Most CPUID entries a vCPU carries. */
#define X86_CPUID_MAX_ENTRIES 256

#endif
