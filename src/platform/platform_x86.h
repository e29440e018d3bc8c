/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file platform_x86.h
 * @brief The x86-specific part of the platform interface.
 */
#ifndef BULKHEAD_PLATFORM_PLATFORM_X86_H
#define BULKHEAD_PLATFORM_PLATFORM_X86_H

#include "arch/x86/cpu_state.h"
#include "platform/platform.h"

/**
 * CPUID leaves the hypervisor can virtualise on this host, before any VMM policy.
 * @param entries destination array.
 * @param max capacity of @p entries.
 * @param nr receives the number of entries.
 * @return 0 or a negative errno.
 */
int plat_x86_supported_cpuid(struct x86_cpuid_entry *entries, unsigned max, unsigned *nr);

/**
 * Set the CPUID a vCPU reports.
 * @param vcpu the vCPU.
 * @param entries the leaves.
 * @param nr number of leaves.
 * @return 0 or a negative errno.
 */
int plat_x86_vcpu_set_cpuid(struct plat_vcpu *vcpu, const struct x86_cpuid_entry *entries,
                            unsigned nr);

/**
 * Load the boot register state into a vCPU (registers, segments, control registers, EFER),
 * and the MSR defaults a firmware would leave.
 * @param vcpu the vCPU.
 * @param state the state.
 * @return 0 or a negative errno.
 */
int plat_x86_vcpu_set_boot_state(struct plat_vcpu *vcpu, const struct x86_boot_state *state);

#endif
