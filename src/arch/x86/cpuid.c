/* SPDX-License-Identifier: BSD-2-Clause */
#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdbool.h>

#define LEAF_FEATURES        0x1u
#define LEAF_CACHE_PARAMS    0x4u
#define LEAF_PMU             0xau
#define LEAF_EXT_TOPOLOGY    0xbu
#define LEAF_V2_EXT_TOPOLOGY 0x1fu
#define LEAF_KVM_SIGNATURE   0x40000000u
#define LEAF_KVM_FEATURES    0x40000001u
#define LEAF_AMD_ADDR_SIZES  0x80000008u

/* KVM paravirtual features (leaf 0x40000001 EAX) this VMM does not offer: asynchronous
 * page faults, in all three forms (#PF-based, the VM-exit variant, interrupt-based
 * "page ready"). */
#define KVM_FEATURE_ASYNC_PF        (1u << 4)
#define KVM_FEATURE_ASYNC_PF_VMEXIT (1u << 10)
#define KVM_FEATURE_ASYNC_PF_INT    (1u << 14)

#define ECX_HYPERVISOR (1u << 31)
#define EDX_HTT        (1u << 28)

/* Number of bits needed to number n things (n >= 1). */
static unsigned bits_for(unsigned n)
{
    unsigned bits = 0;
    while ((1u << bits) < n)
        bits++;
    return bits;
}

static void adjust(struct x86_cpuid_entry *e, unsigned apic_id, unsigned nr_vcpus)
{
    unsigned core_bits = bits_for(nr_vcpus);
    switch (e->function) {
    case LEAF_FEATURES:
        /* EBX: APIC ID in 31:24, addressable logical processors in 23:16, CLFLUSH size kept. */
        e->ebx = (e->ebx & 0xffffu) | ((nr_vcpus & 0xffu) << 16) | (apic_id << 24);
        e->ecx |= ECX_HYPERVISOR;
        if (nr_vcpus > 1)
            e->edx |= EDX_HTT;
        else
            e->edx &= ~EDX_HTT;
        break;
    case LEAF_CACHE_PARAMS:
        /* EAX 31:26: cores per package - 1; 25:14: logical processors sharing the cache - 1,
         * each core has its own caches here, one thread per core. */
        if ((e->eax & 0x1fu) != 0)
            e->eax = (e->eax & 0x3fffu) | ((nr_vcpus - 1u) << 26);
        break;
    case LEAF_KVM_FEATURES:
        /* Async page faults let the host inject page faults (and "page ready" interrupts)
         * into the guest at any moment while it resolves one of its own, so a guest task
         * can sleep meanwhile. They pay off only when the host swaps or migrates guest
         * RAM, which bulkhead's locked-down memfd RAM does not plan for, and they are a
         * known source of trouble: cloud-hypervisor and libkrun turn them off, Firecracker
         * did on AMD. In the 2-CPU test hosts (whose emulation is fragile under
         * cross-CPU memory traffic, docs/testing.md "Hangs"), 4-vCPU guests with them
         * triple-faulted in one 60 s serial stress run in three, and in none of 19
         * without them. Every other paravirtual feature stays. */
        e->eax &= ~(KVM_FEATURE_ASYNC_PF | KVM_FEATURE_ASYNC_PF_VMEXIT | KVM_FEATURE_ASYNC_PF_INT);
        break;
    case LEAF_PMU:
        /* No virtual PMU: the guest must not program counters the VMM does not save. */
        e->eax = e->ebx = e->ecx = e->edx = 0;
        break;
    case LEAF_EXT_TOPOLOGY:
    case LEAF_V2_EXT_TOPOLOGY:
        /* Level 0: SMT (1 thread); level 1: core (nr_vcpus); then invalid. */
        if (e->index == 0) {
            e->eax = 0;
            e->ebx = 1;
            e->ecx = (1u << 8) | e->index;
        } else if (e->index == 1) {
            e->eax = core_bits;
            e->ebx = nr_vcpus;
            e->ecx = (2u << 8) | e->index;
        } else {
            e->eax = e->ebx = 0;
            e->ecx = e->index;
        }
        e->edx = apic_id;
        break;
    case LEAF_AMD_ADDR_SIZES:
        /* ECX 7:0: cores - 1; 15:12: APIC ID bits for the core number. */
        e->ecx = (e->ecx & ~0xf0ffu) | ((nr_vcpus - 1u) & 0xffu) | (core_bits << 12);
        break;
    default:
        break;
    }
}

int x86_cpuid_for_vcpu(const struct x86_cpuid_entry *supported, unsigned nr_supported,
                       unsigned vcpu_index, unsigned nr_vcpus, struct x86_cpuid_entry *out,
                       unsigned *nr_out)
{
    unsigned n = 0;
    bool have_kvm_sig = false;
    for (unsigned i = 0; i < nr_supported; i++) {
        if (n >= X86_CPUID_MAX_ENTRIES)
            return -E2BIG;
        out[n] = supported[i];
        if (out[n].function == LEAF_KVM_SIGNATURE)
            have_kvm_sig = true;
        adjust(&out[n], vcpu_index, nr_vcpus);
        n++;
    }
    if (!have_kvm_sig) {
        /* The host did not list the KVM leaves; report the signature with no pv features so
         * the guest still recognises the hypervisor. */
        if (n + 2 > X86_CPUID_MAX_ENTRIES)
            return -E2BIG;
        out[n++] = (struct x86_cpuid_entry){.function = LEAF_KVM_SIGNATURE,
                                            .eax = LEAF_KVM_FEATURES,
                                            .ebx = 0x4b4d564bu, /* "KVMK" */
                                            .ecx = 0x564b4d56u, /* "VMKV" */
                                            .edx = 0x0000004du /* "M\0\0\0" */};
        out[n++] = (struct x86_cpuid_entry){.function = LEAF_KVM_FEATURES};
    }
    *nr_out = n;
    return 0;
}
