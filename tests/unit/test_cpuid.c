/* SPDX-License-Identifier: BSD-2-Clause */
/* CPUID policy: APIC IDs, topology, hypervisor bit and the KVM leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/cpuid.h"

#include <errno.h>

static const struct x86_cpuid_entry *find(const struct x86_cpuid_entry *e, unsigned n, uint32_t fn,
                                          uint32_t idx)
{
    for (unsigned i = 0; i < n; i++) {
        if (e[i].function == fn && e[i].index == idx)
            return &e[i];
    }
    return NULL;
}

static const struct x86_cpuid_entry host[] = {
    {.function = 0, .eax = 0xd},
    {.function = 1, .ebx = 0x00010800, .ecx = 0x7ed8320b, .edx = 0x178bfbff},
    {.function = 0xa, .eax = 0x07300403, .edx = 0x603},
    {.function = 0xb, .index = 0, .flags = X86_CPUID_FLAG_SIGNIFICANT_INDEX},
    {.function = 0xb, .index = 1, .flags = X86_CPUID_FLAG_SIGNIFICANT_INDEX},
    {.function = 0xb, .index = 2, .flags = X86_CPUID_FLAG_SIGNIFICANT_INDEX},
    {.function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b},
    {.function = 0x40000001, .eax = 0x01007afb},
    {.function = 0x80000008, .eax = 0x3030, .ecx = 0x0000f00f},
};
#define NHOST (sizeof(host) / sizeof(host[0]))

static void test_apic_ids_and_topology(void **state)
{
    (void)state;
    struct x86_cpuid_entry out[X86_CPUID_MAX_ENTRIES];
    unsigned n;
    assert_int_equal(x86_cpuid_for_vcpu(host, NHOST, 3, 4, out, &n), 0);
    assert_int_equal(n, NHOST);
    const struct x86_cpuid_entry *l1 = find(out, n, 1, 0);
    assert_int_equal(l1->ebx >> 24, 3);
    assert_int_equal((l1->ebx >> 16) & 0xff, 4);
    assert_int_equal(l1->ebx & 0xffff, 0x0800); /* CLFLUSH size kept */
    assert_true(l1->ecx & (1u << 31));          /* hypervisor present */
    assert_true(l1->edx & (1u << 28));          /* HTT with several CPUs */
    assert_int_equal(find(out, n, 0xb, 0)->edx, 3);
    assert_int_equal(find(out, n, 0xb, 1)->ebx, 4);
    assert_int_equal(find(out, n, 0xb, 1)->eax, 2);      /* log2(4) */
    assert_int_equal(find(out, n, 0xb, 2)->ecx >> 8, 0); /* invalid level */
    assert_int_equal(find(out, n, 0x80000008, 0)->ecx & 0xff, 3);
    assert_int_equal((find(out, n, 0x80000008, 0)->ecx >> 12) & 0xf, 2);
    assert_int_equal(find(out, n, 0xa, 0)->eax, 0); /* no PMU */
    /* The KVM pv leaves pass through, so Linux finds kvm-clock; async page faults
     * (bits 4, 10, 14) do not. */
    assert_int_equal(find(out, n, 0x40000001, 0)->eax, 0x01003aeb);
}

static void test_single_cpu(void **state)
{
    (void)state;
    struct x86_cpuid_entry out[X86_CPUID_MAX_ENTRIES];
    unsigned n;
    assert_int_equal(x86_cpuid_for_vcpu(host, NHOST, 0, 1, out, &n), 0);
    assert_false(find(out, n, 1, 0)->edx & (1u << 28));
    assert_int_equal(find(out, n, 1, 0)->ebx >> 24, 0);
    assert_int_equal(find(out, n, 0x80000008, 0)->ecx & 0xff, 0);
}

static void test_kvm_leaves_added(void **state)
{
    (void)state;
    struct x86_cpuid_entry out[X86_CPUID_MAX_ENTRIES];
    unsigned n;
    assert_int_equal(x86_cpuid_for_vcpu(host, 2, 0, 1, out, &n), 0);
    assert_int_equal(n, 4);
    const struct x86_cpuid_entry *sig = find(out, n, 0x40000000, 0);
    assert_non_null(sig);
    assert_int_equal(sig->ebx, 0x4b4d564b);
    assert_int_equal(sig->ecx, 0x564b4d56);
    assert_int_equal(sig->edx, 0x4d);
}

static void test_too_many(void **state)
{
    (void)state;
    static struct x86_cpuid_entry big[X86_CPUID_MAX_ENTRIES + 1];
    struct x86_cpuid_entry out[X86_CPUID_MAX_ENTRIES];
    unsigned n;
    assert_int_equal(x86_cpuid_for_vcpu(big, X86_CPUID_MAX_ENTRIES + 1, 0, 1, out, &n), -E2BIG);
    assert_int_equal(x86_cpuid_for_vcpu(big, X86_CPUID_MAX_ENTRIES - 1, 0, 1, out, &n), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apic_ids_and_topology),
        cmocka_unit_test(test_single_cpu),
        cmocka_unit_test(test_kvm_leaves_added),
        cmocka_unit_test(test_too_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
