/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The platform interface on Linux KVM (x86-64): vCPU calls, the run loop and the
 * x86-specific calls of platform_x86.h.
 */
#include "platform/kvm/kvm_internal.h"
#include "platform/platform_x86.h"

#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* MSRs a firmware leaves initialised and Linux expects sane. */
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MSR_IA32_TSC            0x10
#define MISC_ENABLE_FAST_STRING 1ull

int plat_vcpu_create(struct plat_vm *vm, unsigned index, struct plat_vcpu **out)
{
    if (index >= vm->nr_vcpus || index >= KVM_MAX_VCPUS_TRACKED || vm->vcpus[index] != NULL)
        return -EINVAL;
    struct plat_vcpu *vcpu = calloc(1, sizeof(*vcpu));
    if (vcpu == NULL)
        return -ENOMEM;
    vcpu->vm = vm;
    vcpu->index = index;
    pthread_mutex_init(&vcpu->lock, NULL);
    vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (vcpu->fd < 0) {
        int err = errno;
        log_error("KVM_CREATE_VCPU %u: %s", index, strerror(err));
        free(vcpu);
        return -err;
    }
    vcpu->run =
        mmap(NULL, kvm_platform.vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        int err = errno;
        close(vcpu->fd);
        free(vcpu);
        return -err;
    }
    vm->vcpus[index] = vcpu;
    *out = vcpu;
    return 0;
}

void kvm_vcpu_free(struct plat_vcpu *vcpu)
{
    munmap(vcpu->run, kvm_platform.vcpu_mmap_size);
    close(vcpu->fd);
    pthread_mutex_destroy(&vcpu->lock);
    free(vcpu);
}

void plat_vcpu_kick(struct plat_vcpu *vcpu)
{
    /* immediate_exit covers a kick that lands before KVM_RUN; the signal one inside it. */
    __atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&vcpu->lock);
    if (vcpu->thread_known)
        pthread_kill(vcpu->thread, KVM_KICK_SIGNAL);
    pthread_mutex_unlock(&vcpu->lock);
}

static void handle_pio(struct kvm_run *run, const struct plat_io_handler *io)
{
    uint8_t *base = (uint8_t *)run + run->io.data_offset;
    unsigned size = run->io.size;
    bool write = run->io.direction == KVM_EXIT_IO_OUT;
    /* String instructions (rep ins/outs) arrive as count elements; KVM bounds data_offset and
     * count to the kvm_run page, so no further check is needed here. */
    for (uint32_t i = 0; i < run->io.count; i++) {
        uint8_t *p = base + (size_t)i * size;
        uint64_t data = 0;
        if (write)
            memcpy(&data, p, size);
        io->pio(io->opaque, run->io.port, size, write, &data);
        if (!write)
            memcpy(p, &data, size);
    }
}

static void handle_mmio(struct kvm_run *run, const struct plat_io_handler *io)
{
    unsigned len = run->mmio.len;
    if (len == 0 || len > 8)
        return;
    uint64_t data = 0;
    if (run->mmio.is_write)
        memcpy(&data, run->mmio.data, len);
    io->mmio(io->opaque, run->mmio.phys_addr, len, run->mmio.is_write, &data);
    if (!run->mmio.is_write)
        memcpy(run->mmio.data, &data, len);
}

/* Each KVM system event is what it says: only SHUTDOWN is a clean power-off. A crash or an
 * SEV termination is a failed VM; WAKEUP and SUSPEND need support this VMM does not offer. */
static enum plat_exit_reason system_event_reason(uint32_t type)
{
    switch (type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        return PLAT_EXIT_SYSTEM_OFF;
    case KVM_SYSTEM_EVENT_RESET:
        return PLAT_EXIT_SYSTEM_RESET;
    case KVM_SYSTEM_EVENT_CRASH:
    case KVM_SYSTEM_EVENT_SEV_TERM:
        return PLAT_EXIT_GUEST_CRASH;
    default:
        return PLAT_EXIT_UNHANDLED;
    }
}

void plat_vcpu_thread_done(struct plat_vcpu *vcpu)
{
    pthread_mutex_lock(&vcpu->lock);
    vcpu->thread_known = false;
    pthread_mutex_unlock(&vcpu->lock);
}

static void register_thread(struct plat_vcpu *vcpu)
{
    if (vcpu->thread_known)
        return;
    pthread_mutex_lock(&vcpu->lock);
    vcpu->thread = pthread_self();
    vcpu->thread_known = true;
    pthread_mutex_unlock(&vcpu->lock);
}

int plat_vcpu_run(struct plat_vcpu *vcpu, const struct plat_io_handler *io, struct plat_exit *exit)
{
    struct kvm_run *run = vcpu->run;
    register_thread(vcpu);
    for (;;) {
        if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN) {
                __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                *exit = (struct plat_exit){.reason = PLAT_EXIT_KICKED};
                return 0;
            }
            log_error("KVM_RUN on vCPU %u: %s", vcpu->index, strerror(err));
            return -err;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            handle_pio(run, io);
            continue;
        case KVM_EXIT_MMIO:
            handle_mmio(run, io);
            continue;
        case KVM_EXIT_INTR:
            *exit = (struct plat_exit){.reason = PLAT_EXIT_KICKED};
            return 0;
        case KVM_EXIT_SHUTDOWN:
            *exit = (struct plat_exit){.reason = PLAT_EXIT_SHUTDOWN};
            return 0;
        case KVM_EXIT_SYSTEM_EVENT:
            *exit = (struct plat_exit){.reason = system_event_reason(run->system_event.type),
                                       .code = run->system_event.type};
            return 0;
        case KVM_EXIT_INTERNAL_ERROR:
            *exit =
                (struct plat_exit){.reason = PLAT_EXIT_INTERNAL_ERROR,
                                   .code = run->internal.suberror,
                                   .subcode = run->internal.ndata > 0 ? run->internal.data[0] : 0};
            return 0;
        case KVM_EXIT_FAIL_ENTRY:
            *exit = (struct plat_exit){.reason = PLAT_EXIT_FAIL_ENTRY,
                                       .code = run->fail_entry.hardware_entry_failure_reason,
                                       .subcode = run->fail_entry.cpu};
            return 0;
        default:
            *exit = (struct plat_exit){.reason = PLAT_EXIT_UNHANDLED, .code = run->exit_reason};
            return 0;
        }
    }
}

int plat_vcpu_dump(struct plat_vcpu *vcpu, char *buf, size_t len)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0)
        return -errno;
    int n =
        snprintf(buf, len,
                 "vcpu%u rip=%016llx rsp=%016llx rflags=%08llx rax=%016llx rbx=%016llx "
                 "rcx=%016llx rdx=%016llx rsi=%016llx rdi=%016llx rbp=%016llx "
                 "cr0=%08llx cr2=%016llx cr3=%016llx cr4=%08llx efer=%llx cs=%04x/%d",
                 vcpu->index, (unsigned long long)r.rip, (unsigned long long)r.rsp,
                 (unsigned long long)r.rflags, (unsigned long long)r.rax, (unsigned long long)r.rbx,
                 (unsigned long long)r.rcx, (unsigned long long)r.rdx, (unsigned long long)r.rsi,
                 (unsigned long long)r.rdi, (unsigned long long)r.rbp, (unsigned long long)s.cr0,
                 (unsigned long long)s.cr2, (unsigned long long)s.cr3, (unsigned long long)s.cr4,
                 (unsigned long long)s.efer, s.cs.selector, s.cs.l ? 64 : (s.cs.db ? 32 : 16));
    return n < 0 ? -EIO : n;
}

int plat_x86_supported_cpuid(struct x86_cpuid_entry *entries, unsigned max, unsigned *nr)
{
    size_t bytes = sizeof(struct kvm_cpuid2) + max * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = calloc(1, bytes);
    if (c == NULL)
        return -ENOMEM;
    c->nent = max;
    if (ioctl(kvm_platform.sys_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
        int err = errno;
        free(c);
        return -err;
    }
    for (unsigned i = 0; i < c->nent; i++) {
        const struct kvm_cpuid_entry2 *e = &c->entries[i];
        entries[i] = (struct x86_cpuid_entry){
            .function = e->function,
            .index = e->index,
            .flags =
                (e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ? X86_CPUID_FLAG_SIGNIFICANT_INDEX : 0,
            .eax = e->eax,
            .ebx = e->ebx,
            .ecx = e->ecx,
            .edx = e->edx,
        };
    }
    *nr = c->nent;
    free(c);
    /* The TSC-deadline timer bit is deliberately not added, although KVM could emulate it:
     * under nested virtualisation (our test host) deadline-timer wake-ups of a halted vCPU
     * were lost, stalling the guest for tens of seconds (RCU "timer wakeup didn't happen").
     * Linux then uses the LAPIC one-shot mode, which KVM handles in the kernel just as well. */
    return 0;
}

int plat_x86_vcpu_set_cpuid(struct plat_vcpu *vcpu, const struct x86_cpuid_entry *entries,
                            unsigned nr)
{
    size_t bytes = sizeof(struct kvm_cpuid2) + nr * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = calloc(1, bytes);
    if (c == NULL)
        return -ENOMEM;
    c->nent = nr;
    for (unsigned i = 0; i < nr; i++) {
        c->entries[i] = (struct kvm_cpuid_entry2){
            .function = entries[i].function,
            .index = entries[i].index,
            .flags = (entries[i].flags & X86_CPUID_FLAG_SIGNIFICANT_INDEX)
                         ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX
                         : 0,
            .eax = entries[i].eax,
            .ebx = entries[i].ebx,
            .ecx = entries[i].ecx,
            .edx = entries[i].edx,
        };
    }
    int ret = ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
    free(c);
    return ret;
}

static void to_kvm_segment(struct kvm_segment *k, const struct x86_segment *s)
{
    *k = (struct kvm_segment){
        .base = s->base,
        .limit = s->limit,
        .selector = s->selector,
        .type = s->type,
        .present = s->present,
        .dpl = s->dpl,
        .db = s->db,
        .s = s->s,
        .l = s->l,
        .g = s->g,
        .unusable = s->unusable,
    };
}

static int set_boot_msrs(struct plat_vcpu *vcpu)
{
    static const uint32_t indexes[] = {
        MSR_IA32_SYSENTER_CS,
        MSR_IA32_SYSENTER_ESP,
        MSR_IA32_SYSENTER_EIP,
        MSR_STAR,
        MSR_LSTAR,
        MSR_CSTAR,
        MSR_SYSCALL_MASK,
        MSR_KERNEL_GS_BASE,
        MSR_IA32_TSC,
        MSR_IA32_MISC_ENABLE,
    };
    enum { N = sizeof(indexes) / sizeof(indexes[0]) };
    /* struct kvm_msrs ends in a flexible array: build it in a suitably aligned buffer. */
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) + N * sizeof(struct kvm_msr_entry)];
    } msrs;
    memset(&msrs, 0, sizeof(msrs));
    msrs.hdr.nmsrs = N;
    for (unsigned i = 0; i < N; i++) {
        msrs.hdr.entries[i].index = indexes[i];
        msrs.hdr.entries[i].data = indexes[i] == MSR_IA32_MISC_ENABLE ? MISC_ENABLE_FAST_STRING : 0;
    }
    int r = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
    if (r < 0)
        return -errno;
    return r == N ? 0 : -EIO;
}

int plat_x86_vcpu_set_boot_state(struct plat_vcpu *vcpu, const struct x86_boot_state *state)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    to_kvm_segment(&sregs.cs, &state->cs);
    to_kvm_segment(&sregs.ds, &state->ds);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    to_kvm_segment(&sregs.tr, &state->tr);
    to_kvm_segment(&sregs.ldt, &state->ldt);
    sregs.gdt.base = state->gdt.base;
    sregs.gdt.limit = state->gdt.limit;
    sregs.idt.base = state->idt.base;
    sregs.idt.limit = state->idt.limit;
    sregs.cr0 = state->cr0;
    sregs.cr3 = state->cr3;
    sregs.cr4 = state->cr4;
    sregs.efer = state->efer;
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = state->rip;
    regs.rsp = state->rsp;
    regs.rsi = state->rsi;
    regs.rbx = state->rbx;
    regs.rflags = state->rflags | 2;
    if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
        return -errno;

    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    fpu.fcw = 0x37f;    /* x87 power-on control word: all exceptions masked */
    fpu.mxcsr = 0x1f80; /* SSE power-on value: all exceptions masked */
    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return -errno;
    return set_boot_msrs(vcpu);
}
