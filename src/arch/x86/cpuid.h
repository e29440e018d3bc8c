/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file cpuid.h
 * @brief The CPUID policy: what each vCPU reports, derived from what the host can virtualise.
 */
#ifndef BULKHEAD_ARCH_X86_CPUID_H
#define BULKHEAD_ARCH_X86_CPUID_H

#include "arch/x86/cpu_state.h"

/**
 * Turn the host-supported leaves into the leaves one vCPU reports: its APIC ID and the
 * topology (one package, @p nr_vcpus cores, one thread each), the hypervisor bit, and the
 * KVM paravirtual leaves (so Linux uses kvm-clock and its pv-ops, REQ-007).
 * @param supported leaves the platform can virtualise (plat_x86_supported_cpuid()).
 * @param nr_supported number of entries in @p supported.
 * @param vcpu_index this vCPU's index (its APIC ID).
 * @param nr_vcpus total vCPUs.
 * @param out destination, X86_CPUID_MAX_ENTRIES entries.
 * @param nr_out receives the number of entries written.
 * @return 0, or -E2BIG when the result does not fit.
 */
int x86_cpuid_for_vcpu(const struct x86_cpuid_entry *supported, unsigned nr_supported,
                       unsigned vcpu_index, unsigned nr_vcpus, struct x86_cpuid_entry *out,
                       unsigned *nr_out);

/** KVM paravirtual feature bits in leaf 0x40000001 EAX, for documentation and tests. */
enum x86_kvm_feature {
    X86_KVM_FEATURE_CLOCKSOURCE = 0,  /**< kvm-clock, old MSRs. */
    X86_KVM_FEATURE_NOP_IO_DELAY = 1, /**< Port 0x80 delays are not needed. */
    X86_KVM_FEATURE_CLOCKSOURCE2 = 3, /**< kvm-clock, new MSRs. */
    X86_KVM_FEATURE_PV_EOI = 6,       /**< Paravirtual end of interrupt. */
    X86_KVM_FEATURE_PV_UNHALT = 7,    /**< Paravirtual spinlock kick. */
    X86_KVM_FEATURE_STABLE_TSC = 24,  /**< kvm-clock is stable (leaf 0x40000001 bit 24). */
};

#endif
