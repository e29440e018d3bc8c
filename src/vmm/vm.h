/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vm.h
 * @brief One virtual machine's lifetime: RAM, buses, vCPU threads, and why it stopped.
 *
 * The generic part of the VMM. The machine model (machine.h) populates a VM with its
 * devices, tables and boot state; this module runs it and turns every way a VM can end
 * (power-off, reset, a fault, a signal) into one stop reason that the caller acts on.
 */
#ifndef BULKHEAD_VMM_VM_H
#define BULKHEAD_VMM_VM_H

#include "core/bus.h"
#include "core/guest_mem.h"
#include "host/boot_file.h"
#include "host/console.h"
#include "host/guest_ram.h"
#include "platform/platform.h"
#include "vmm/options.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

/** Why a VM stopped; the first reason reported wins. */
enum vm_stop {
    VM_STOP_NONE = 0, /**< Still running. */
    VM_STOP_POWEROFF, /**< The guest powered off (ACPI S5). */
    VM_STOP_RESET,    /**< The guest asked for a reset. */
    VM_STOP_ERROR,    /**< A fault the VM cannot continue from (stop_message says which). */
    VM_STOP_SIGNAL,   /**< The VMM was told to stop by a signal. */
    VM_STOP_QUIT,     /**< The user quit from the console. */
};

struct vm;
struct machine;

/** One vCPU and its thread. */
struct vm_vcpu {
    struct vm *vm;          /**< Owning VM. */
    struct plat_vcpu *plat; /**< Platform vCPU. */
    unsigned index;         /**< Index (APIC ID). */
    pthread_t thread;       /**< Its thread, valid when started. */
    bool started;           /**< The thread was created. */
};

/** Files the VM boots from: open for the whole process, read and validated again at each boot. */
struct boot_files {
    const struct boot_file *kernel; /**< The kernel file, its size refreshed for this boot. */
    const struct boot_file *initrd; /**< The initrd file, or NULL when there is none. */
};

/** A virtual machine. */
struct vm {
    const struct vmm_options *opts; /**< Configuration. */
    struct console *console;        /**< Host end of COM1. */
    struct console *console2;       /**< Host end of COM2, or NULL (no COM2). */
    struct plat_vm *plat;           /**< Platform VM. */
    struct guest_ram ram;           /**< Host allocation of RAM. */
    struct guest_mem mem;           /**< Guest-physical view of RAM. */
    struct bus pio;                 /**< Port I/O devices. */
    struct bus mmio;                /**< MMIO devices. */
    struct vm_vcpu *vcpus;          /**< vCPUs, opts->cpus of them. */
    struct machine *machine;        /**< The machine model's devices. */
    int stop_reason;                /**< enum vm_stop, written atomically. */
    int stop_fd;                    /**< eventfd signalled when a stop is requested. */
    int signal;                     /**< Signal number for VM_STOP_SIGNAL. */
    char stop_message[768];         /**< One line saying why it stopped. */
    pthread_mutex_t stop_lock;      /**< Serialises the first stop request. */
};

/**
 * Allocate RAM, create the platform VM and buses, and let the machine model build the
 * machine and load the guest.
 * @param vm the VM to initialise.
 * @param opts configuration.
 * @param files kernel and initrd.
 * @param console host end of the serial console.
 * @param console2 host end of COM2 (--serial2), or NULL for a machine without COM2.
 * @return 0 or a negative errno (-ENOEXEC, -E2BIG and -ENOMEM from loading the kernel mean
 *         the user's input is unusable).
 */
int vm_create(struct vm *vm, const struct vmm_options *opts, const struct boot_files *files,
              struct console *console, struct console *console2);

/**
 * Start one thread per vCPU.
 * @param vm the VM.
 * @return 0 or a negative errno (threads already started are stopped again).
 */
int vm_start(struct vm *vm);

/**
 * Record why the VM must stop (the first call wins) and kick every vCPU. Safe from any thread.
 * @param vm the VM.
 * @param reason the reason.
 * @param fmt printf-style one-line explanation.
 */
void vm_request_stop(struct vm *vm, enum vm_stop reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Current stop reason.
 * @param vm the VM.
 * @return VM_STOP_NONE while running.
 */
enum vm_stop vm_stop_reason(struct vm *vm);

/**
 * Wait for every vCPU thread to finish (after vm_request_stop()).
 * @param vm the VM.
 */
void vm_join(struct vm *vm);

/**
 * Record when the process started, so that the first vCPU entry can log the start-up time
 * (a figure the boot benchmark reports).
 * @param monotonic_ns CLOCK_MONOTONIC at the start of main(), in nanoseconds.
 */
void vm_set_process_start(uint64_t monotonic_ns);

/**
 * Milliseconds since the process started (see vm_set_process_start()), for start-up logs.
 * @return elapsed wall time in milliseconds.
 */
double vm_ms_since_start(void);

/**
 * Free everything vm_create() made.
 * @param vm the VM.
 */
void vm_destroy(struct vm *vm);

#endif
