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
#include <stdint.h>

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

/** First GSI handed out for MSI routes: 0-23 are the IOAPIC's pins (and 0-15 the PICs'). */
#define KVM_MSI_GSI_BASE 24u

/** Most MSI routes per VM (KVM itself may allow fewer; see KVM_CAP_IRQ_ROUTING). */
#define KVM_MSI_ROUTES_MAX 1024u

/** One MSI route of a VM: the message a GSI raises. */
struct kvm_msi_route {
    bool used;     /**< The GSI is allocated. */
    uint64_t addr; /**< MSI address. */
    uint32_t data; /**< MSI data. */
};

/** A KVM VM. */
struct plat_vm {
    int fd;                                         /**< The VM file descriptor. */
    unsigned nr_vcpus;                              /**< vCPUs announced at creation. */
    struct plat_vcpu *vcpus[KVM_MAX_VCPUS_TRACKED]; /**< Created vCPUs, by index. */
    /**
     * Guards the routing state below. KVM_SET_GSI_ROUTING replaces the whole table, so
     * every change rebuilds it from this copy, one change at a time.
     */
    pthread_mutex_t routes_lock;
    struct kvm_msi_route *msi_routes; /**< By GSI - KVM_MSI_GSI_BASE; NULL until first used. */
    unsigned nr_msi_routes;           /**< Entries in msi_routes. */
    struct kvm_irq_routing *routing;  /**< Buffer for KVM_SET_GSI_ROUTING, sized for all. */
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
