/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file kvm_internal.h
 * @brief Private state of the KVM platform, shared by its source files only.
 */
#ifndef BULKHEAD_PLATFORM_KVM_INTERNAL_H
#define BULKHEAD_PLATFORM_KVM_INTERNAL_H

#include "platform/platform.h"

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

/** Signal used to interrupt KVM_RUN in a vCPU thread (plat_vcpu_kick()). */
#define KVM_KICK_SIGNAL (SIGRTMIN + 1)

/** Upper bound on vCPUs per VM this platform tracks. */
#define KVM_MAX_VCPUS_TRACKED 256

/** Process-wide KVM state. */
struct kvm_platform {
    int sys_fd;            /**< /dev/kvm, or -1 before plat_init(). */
    size_t vcpu_mmap_size; /**< Size of each vCPU's kvm_run mapping. */
    unsigned max_vcpus;    /**< vCPUs per VM allowed. */
};

/** The one instance of struct kvm_platform. */
extern struct kvm_platform kvm_platform;

/** A KVM VM. */
struct plat_vm {
    int fd;                                         /**< The VM file descriptor. */
    unsigned nr_vcpus;                              /**< vCPUs announced at creation. */
    struct plat_vcpu *vcpus[KVM_MAX_VCPUS_TRACKED]; /**< Created vCPUs, by index. */
};

/** A KVM vCPU. */
struct plat_vcpu {
    struct plat_vm *vm;   /**< Owning VM. */
    unsigned index;       /**< Index, also the APIC ID. */
    int fd;               /**< The vCPU file descriptor. */
    struct kvm_run *run;  /**< The shared kvm_run page(s). */
    pthread_t thread;     /**< Thread that runs it, valid when thread_known. */
    bool thread_known;    /**< Set on the first plat_vcpu_run(). */
    pthread_mutex_t lock; /**< Orders plat_vcpu_kick() against thread registration. */
};

/**
 * Release a vCPU's mapping, descriptor and memory.
 * @param vcpu the vCPU.
 */
void kvm_vcpu_free(struct plat_vcpu *vcpu);

#endif
