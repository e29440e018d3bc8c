/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file platform.h
 * @brief The platform interface: everything the portable VMM needs from a hypervisor.
 *
 * The machine model, devices, ACPI, PCI and boot code reach the hypervisor only
 * through these calls. platform/kvm implements them with Linux KVM; an seL4
 * implementation would map them onto VCPU objects, seL4_VMEnter, EPT objects
 * and notifications (see docs/design.md for the table). Nothing here names a
 * Linux or KVM type.
 *
 * Concurrency: plat_vcpu_run() is called only by the vCPU's own thread;
 * plat_irq_set(), plat_msi_send() and plat_vcpu_kick() may be called from any thread.
 */
#ifndef BULKHEAD_PLATFORM_PLATFORM_H
#define BULKHEAD_PLATFORM_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plat_vm;
struct plat_vcpu;

/** Parameters fixed when a VM is created. */
struct plat_vm_params {
    unsigned nr_vcpus; /**< vCPUs that will be created (1..plat_max_vcpus()). */
};

/**
 * Open the hypervisor and check that it offers what bulkhead needs.
 * @return 0, or a negative errno with the reason logged (e.g. -ENODEV: no /dev/kvm).
 */
int plat_init(void);

/**
 * Largest vCPU count a VM may have on this host.
 * @return the limit (at least 1 after a successful plat_init()).
 */
unsigned plat_max_vcpus(void);

/**
 * Create an empty VM with its interrupt controllers (x86: LAPIC, IOAPIC, PIC, PIT).
 * @param params creation parameters.
 * @param out receives the VM.
 * @return 0 or a negative errno.
 */
int plat_vm_create(const struct plat_vm_params *params, struct plat_vm **out);

/**
 * Destroy a VM and all its vCPUs. vCPU threads must have stopped.
 * @param vm the VM (NULL is ignored).
 */
void plat_vm_destroy(struct plat_vm *vm);

/**
 * Make host memory visible to the guest as RAM.
 * @param vm the VM.
 * @param slot a small integer naming the mapping, unique per VM.
 * @param gpa guest-physical base, page-aligned.
 * @param hva host address, page-aligned.
 * @param size length, a multiple of the page size.
 * @return 0 or a negative errno.
 */
int plat_vm_map_ram(struct plat_vm *vm, unsigned slot, uint64_t gpa, void *hva, uint64_t size);

/**
 * Set the level of an interrupt line (x86: a GSI of the IOAPIC, and the PIC for 0-15).
 * Edge-triggered lines see an edge on a 0 -> 1 transition.
 * @param vm the VM.
 * @param gsi the line.
 * @param level true for asserted.
 * @return 0 or a negative errno.
 */
int plat_irq_set(struct plat_vm *vm, uint32_t gsi, bool level);

/**
 * Deliver a message-signalled interrupt.
 * @param vm the VM.
 * @param addr MSI address as programmed by the guest.
 * @param data MSI data as programmed by the guest.
 * @return 0, or a negative errno (the interrupt was not delivered).
 */
int plat_msi_send(struct plat_vm *vm, uint64_t addr, uint32_t data);

/** Address space of a doorbell. */
enum plat_space {
    PLAT_SPACE_PIO,  /**< x86 port I/O. */
    PLAT_SPACE_MMIO, /**< Guest-physical memory-mapped I/O. */
};

/**
 * Have guest writes to an address signal a host notification without a VM exit to the
 * VMM (KVM: ioeventfd; seL4: a notification bound to the fault handler).
 * @param vm the VM.
 * @param space address space of @p addr.
 * @param addr the doorbell address.
 * @param len access width that triggers it (1, 2, 4 or 8).
 * @param notify_fd the notification object (an eventfd on Linux).
 * @return 0 or a negative errno.
 */
int plat_doorbell_add(struct plat_vm *vm, enum plat_space space, uint64_t addr, unsigned len,
                      int notify_fd);

/**
 * Undo plat_doorbell_add().
 * @param vm the VM.
 * @param space as given to plat_doorbell_add().
 * @param addr as given to plat_doorbell_add().
 * @param len as given to plat_doorbell_add().
 * @param notify_fd as given to plat_doorbell_add().
 * @return 0 or a negative errno.
 */
int plat_doorbell_remove(struct plat_vm *vm, enum plat_space space, uint64_t addr, unsigned len,
                         int notify_fd);

/**
 * Have a signal of a host notification raise an interrupt line without involving a VMM
 * thread (KVM: irqfd).
 * @param vm the VM.
 * @param gsi the interrupt line (or the GSI of an MSI route).
 * @param notify_fd the notification object (an eventfd on Linux).
 * @return 0 or a negative errno.
 */
int plat_irq_notification_add(struct plat_vm *vm, uint32_t gsi, int notify_fd);

/**
 * Undo plat_irq_notification_add(): signals of the notification no longer raise the
 * interrupt (e.g. while the MSI-X vector behind it is masked, when the VMM watches the
 * notification itself and records a pending bit instead).
 * @param vm the VM.
 * @param gsi as given to plat_irq_notification_add().
 * @param notify_fd as given to plat_irq_notification_add().
 * @return 0 or a negative errno.
 */
int plat_irq_notification_remove(struct plat_vm *vm, uint32_t gsi, int notify_fd);

/**
 * Allocate an interrupt line that raises the MSI (@p addr, @p data) when signalled, so
 * that plat_irq_notification_add() can bind a notification to an MSI. The line numbers
 * never collide with the interrupt-controller lines of plat_irq_set(). Thread-safe.
 * (KVM: a GSI routed by KVM_SET_GSI_ROUTING. seL4: the VMM's own table of line ->
 * message, consulted by its interrupt-controller model when the bound notification
 * fires.)
 * @param vm the VM.
 * @param addr MSI address as programmed by the guest.
 * @param data MSI data as programmed by the guest.
 * @param gsi receives the line.
 * @return 0; -ENOSPC when every MSI line is in use; another negative errno from the
 *         hypervisor.
 */
int plat_msi_route_add(struct plat_vm *vm, uint64_t addr, uint32_t data, uint32_t *gsi);

/**
 * Change the message an MSI line raises (the guest reprogrammed the vector); bindings
 * made with plat_irq_notification_add() stay. Thread-safe.
 * @param vm the VM.
 * @param gsi a line from plat_msi_route_add().
 * @param addr new MSI address.
 * @param data new MSI data.
 * @return 0; -ENOENT when @p gsi is not an allocated MSI line; another negative errno
 *         from the hypervisor (the previous message then stays in force).
 */
int plat_msi_route_update(struct plat_vm *vm, uint32_t gsi, uint64_t addr, uint32_t data);

/**
 * Free an MSI line. Remove the notifications bound to it first: a signal on a line
 * without a route raises nothing. Thread-safe.
 * @param vm the VM.
 * @param gsi a line from plat_msi_route_add().
 * @return 0; -ENOENT when @p gsi is not an allocated MSI line; another negative errno
 *         from the hypervisor (the line then stays allocated).
 */
int plat_msi_route_remove(struct plat_vm *vm, uint32_t gsi);

/**
 * Create a vCPU. vCPU 0 is the bootstrap processor; the others wait for INIT/SIPI.
 * @param vm the VM.
 * @param index 0-based index; also the APIC ID.
 * @param out receives the vCPU.
 * @return 0 or a negative errno.
 */
int plat_vcpu_create(struct plat_vm *vm, unsigned index, struct plat_vcpu **out);

/** Callbacks through which plat_vcpu_run() hands guest I/O to the machine model. */
struct plat_io_handler {
    /**
     * Port I/O (x86). Called once per element of a string instruction.
     * @param opaque as in the handler.
     * @param port the port.
     * @param size 1, 2 or 4.
     * @param write true for OUT.
     * @param data the value written, or where to store the value read.
     */
    void (*pio)(void *opaque, uint16_t port, unsigned size, bool write, uint64_t *data);
    /**
     * MMIO outside RAM.
     * @param opaque as in the handler.
     * @param gpa guest-physical address.
     * @param size 1, 2, 4 or 8.
     * @param write true for a store.
     * @param data the value written, or where to store the value read.
     */
    void (*mmio)(void *opaque, uint64_t gpa, unsigned size, bool write, uint64_t *data);
    void *opaque; /**< Passed to both callbacks. */
};

/** Why plat_vcpu_run() returned. */
enum plat_exit_reason {
    PLAT_EXIT_KICKED,         /**< plat_vcpu_kick() was called (or a signal arrived). */
    PLAT_EXIT_SHUTDOWN,       /**< Triple fault: the vCPU cannot continue. */
    PLAT_EXIT_SYSTEM_RESET,   /**< The platform saw a reset request (e.g. PSCI). */
    PLAT_EXIT_SYSTEM_OFF,     /**< The platform saw a power-off request (e.g. PSCI). */
    PLAT_EXIT_GUEST_CRASH,    /**< The guest reported a crash through the hypervisor (e.g. a
                                   Hyper-V crash MSR, an SEV-ES termination request). */
    PLAT_EXIT_INTERNAL_ERROR, /**< The hypervisor could not emulate something. */
    PLAT_EXIT_FAIL_ENTRY,     /**< The hardware refused to enter the guest. */
    PLAT_EXIT_UNHANDLED,      /**< An exit the VMM does not handle. */
};

/** Result of plat_vcpu_run(). */
struct plat_exit {
    enum plat_exit_reason reason; /**< Why the run returned. */
    uint64_t code;                /**< Hypervisor-specific detail (exit or error code). */
    uint64_t subcode;             /**< More detail (suberror, hardware reason). */
};

/**
 * Run the vCPU until an exit that the machine model must decide on. Port I/O and MMIO
 * are completed through @p io inside this call and do not return.
 * @param vcpu the vCPU; only its own thread calls this.
 * @param io the I/O callbacks.
 * @param exit receives the reason on success.
 * @return 0 with @p exit filled, or a negative errno when the run itself failed.
 */
int plat_vcpu_run(struct plat_vcpu *vcpu, const struct plat_io_handler *io, struct plat_exit *exit);

/**
 * Make a running (or about to run) plat_vcpu_run() return PLAT_EXIT_KICKED soon.
 * Safe from any thread.
 * @param vcpu the vCPU.
 */
void plat_vcpu_kick(struct plat_vcpu *vcpu);

/**
 * The vCPU's thread is about to end: plat_vcpu_kick() must no longer signal it. Called by
 * that thread as its last use of the vCPU, so that a later kick (a stop requested after a
 * failed start, say) never targets a thread that has been joined.
 * @param vcpu the vCPU.
 */
void plat_vcpu_thread_done(struct plat_vcpu *vcpu);

/**
 * Format the vCPU's registers for a log line (general and control registers).
 * @param vcpu the vCPU.
 * @param buf destination.
 * @param len size of @p buf.
 * @return number of characters written (excluding NUL), or a negative errno.
 */
int plat_vcpu_dump(struct plat_vcpu *vcpu, char *buf, size_t len);

#endif
