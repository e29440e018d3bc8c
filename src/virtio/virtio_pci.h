/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_pci.h
 * @brief The virtio-over-PCI transport (virtio 1.2 §4.1), modern devices only, with MSI-X.
 *
 * A struct virtio_pci is a PCI function (it embeds a struct pci_device that the
 * machine places on its PCI host) that shows the guest's virtio_pci driver:
 *  - vendor 0x1af4, device 0x1040 + the virtio device ID, revision 1;
 *  - one 64-bit memory BAR (BAR 0, 32 KiB, not prefetchable: ISR reads have a side
 *    effect) with one 4 KiB page per structure: common configuration, ISR status,
 *    device-specific configuration, notification area, MSI-X table, MSI-X PBA
 *    (offsets in virtio_pci_regs.h). One BAR keeps the seL4 port to one
 *    region to fault on and the guest to one allocation; separate pages keep
 *    the MSI-X structures away from other registers as PCI requires;
 *  - vendor-specific capabilities of cfg_type COMMON, NOTIFY, ISR, DEVICE (when the
 *    device has configuration space) and PCI_CFG (the window firmware uses to reach
 *    a BAR above 4 GiB), then the MSI-X capability.
 *
 * The device behind the transport is abstract (struct virtio_device_ops): the
 * transport does feature negotiation (VERSION_1 always offered and required), the
 * status sequence, reset, queue configuration, DEVICE_NEEDS_RESET, the
 * configuration-space cache and all of MSI-X; the device sees validated queue
 * configurations, DRIVER_OK and reset.
 *
 * **Notifications, guest to device.** Queue q's doorbell is BAR 0 +
 * VIRTIO_PCI_BAR_NOTIFY + 4 * q (notify_off_multiplier 4, queue_notify_off = q),
 * so every queue has its own address and can have its own doorbell object
 * (ioeventfd). The transport tells the machine where each doorbell is through
 * virtio_pci_machine_ops.doorbell whenever BAR 0 starts, stops or moves decoding;
 * the machine registers plat_doorbell_add() for the queues it wants kicked that
 * way. A doorbell write that still reaches the VMM (none registered, another
 * width, or through the PCI_CFG window) ends in virtio_device_ops.queue_notify.
 *
 * **Interrupts, device to guest.** Two paths, both with MSI-X semantics:
 *  - through the transport: virtio_pci_queue_interrupt() and configuration changes.
 *    The transport sends the vector's message with virtio_pci_machine_ops.msi_send,
 *    or sets the vector's pending bit while it is masked (per vector or
 *    function-wide), or drops it for VIRTIO_MSI_NO_VECTOR, or (MSI-X disabled) sets
 *    the ISR bit. Unmasking a vector whose pending bit is set sends it and clears
 *    the bit;
 *  - directly (irqfd): virtio_pci_machine_ops.queue_route tells the machine, per
 *    queue, whether the queue's interrupt may currently bypass the transport and
 *    with which (address, data): only while MSI-X is enabled, the function and the
 *    queue's vector are unmasked and a vector is assigned. When it may not, the
 *    machine detaches the irqfd and feeds the backend's signals to
 *    virtio_pci_queue_interrupt() instead, which sets the pending bit; the
 *    transport then delivers it on unmask. The hook reports transitions only.
 *
 * **Threads and locking.** vCPU threads make every register access (BAR 0 and
 * configuration space); device threads call virtio_pci_queue_interrupt(),
 * virtio_pci_config_update(), virtio_pci_set_needs_reset() and
 * virtio_pci_reset_done(). One mutex per transport guards its state; every path
 * under it is O(1) except a reset and MSI-X configuration changes, which walk the
 * queues (route bookkeeping) or the vectors (pending bits). The machine hooks and
 * the device's features_ok, queue_enable, start and reset run with that mutex
 * held, synchronously with the guest's access (so an irqfd is detached before the
 * guest's mask write completes): they must not call back into this transport and
 * must not wait for a thread that does. config_write and queue_notify run without
 * it and may call back; reached through the PCI_CFG window they run under the PCI
 * host's lock, so they must not access configuration space.
 *
 * Not modelled: INTx (the function has no interrupt pin; without MSI-X a driver
 * can only poll ISR status) and COMMAND.MASTER (a guest that clears bus mastering
 * still receives its MSIs).
 */
#ifndef BULKHEAD_VIRTIO_VIRTIO_PCI_H
#define BULKHEAD_VIRTIO_VIRTIO_PCI_H

#include "core/guest_mem.h"
#include "devices/pci/pci_device.h"
#include "virtio/virtio_pci_regs.h"
#include "virtio/virtqueue.h"

#include "core/lock.h"
#include <stdbool.h>
#include <stdint.h>

/** virtio_device_ops.reset return value: the device finishes later with virtio_pci_reset_done(). */
#define VIRTIO_PCI_RESET_PENDING 1

/**
 * The device behind the transport. Every member may be NULL (the transport then
 * accepts, or does nothing). @c opaque is virtio_pci_config.dev_opaque.
 */
struct virtio_device_ops {
    /**
     * The driver sets FEATURES_OK. The transport has already checked that @p features
     * contains VIRTIO_F_VERSION_1 and nothing the device did not offer; the device may
     * refuse combinations it cannot serve. Called with the transport's mutex held.
     * @param opaque the device.
     * @param features the driver's accepted feature bits.
     * @return 0 to accept, a negative errno to refuse (FEATURES_OK stays clear).
     */
    int (*features_ok)(void *opaque, uint64_t features);
    /**
     * The driver enabled a queue. Size and alignment are checked, and the three rings
     * lie in guest RAM when virtio_pci_config.mem was given. May come before start()
     * (the usual order) or after it; the device must not touch the rings before
     * start(). The configuration suits vq_enable() as it is. Mutex held.
     * @param opaque the device.
     * @param queue the queue index.
     * @param cfg size, ring addresses and the negotiated features.
     * @return 0, or a negative errno: the device refuses the queue and the transport
     *         sets DEVICE_NEEDS_RESET.
     */
    int (*queue_enable)(void *opaque, uint16_t queue, const struct vq_config *cfg);
    /**
     * The driver set DRIVER_OK: the device may now process its enabled queues,
     * including buffers made available before this (their kicks were not forwarded).
     * Mutex held: hand the work to the device's thread, do not wait for it.
     * @param opaque the device.
     * @param features the negotiated features.
     * @return 0, or a negative errno: DRIVER_OK stays clear and DEVICE_NEEDS_RESET is set.
     */
    int (*start)(void *opaque, uint64_t features);
    /**
     * The driver wrote 0 to device_status: stop using every queue and forget the
     * negotiated state. The transport's own state is reset already. Mutex held.
     * @param opaque the device.
     * @return 0 when the device has stopped touching guest memory, or
     *         VIRTIO_PCI_RESET_PENDING when it will say so with virtio_pci_reset_done();
     *         until then device_status reads non-zero, which is how a driver waits for a
     *         reset to complete (§2.4.2).
     */
    int (*reset)(void *opaque);
    /**
     * The driver wrote the device-specific configuration (after FEATURES_OK; earlier
     * writes are dropped as §3.1.1 forbids them). The cache is not changed: the device
     * calls virtio_pci_config_update() with what the field now holds. Mutex not held.
     * @param opaque the device.
     * @param offset offset in the configuration space; offset + size <= its size.
     * @param size 1, 2, 4 or 8.
     * @param value the bytes written, little-endian.
     */
    void (*config_write)(void *opaque, uint32_t offset, unsigned size, uint64_t value);
    /**
     * A doorbell write reached the VMM for an enabled queue after DRIVER_OK (not via a
     * registered doorbell object). Mutex not held; called on a vCPU thread, and may race
     * with a reset on another vCPU (a device that is not started ignores it).
     * @param opaque the device.
     * @param queue the queue index.
     */
    void (*queue_notify)(void *opaque, uint16_t queue);
};

/**
 * How the transport reaches the machine: interrupt delivery and the doorbell and
 * irqfd bookkeeping. Every member may be NULL. Called with the transport's mutex
 * held; @c ctx is virtio_pci_config.machine_ctx.
 */
struct virtio_pci_machine_ops {
    /**
     * Send one MSI now (KVM: plat_msi_send()).
     * @param ctx the machine's context.
     * @param addr message address as the guest programmed it.
     * @param data message data as the guest programmed it.
     * @return 0 or a negative errno (logged, the interrupt is lost).
     */
    int (*msi_send)(void *ctx, uint64_t addr, uint32_t data);
    /**
     * Whether queue @p queue's interrupts may now be delivered without the transport
     * (irqfd on an MSI route) changed. @p direct true: as the message (@p addr,
     * @p data) — set or update the route and attach the irqfd. false: detach the irqfd
     * and pass the queue's signals to virtio_pci_queue_interrupt(), which sets the
     * pending bit while masked. Reported on transitions and on message changes only.
     * @param ctx the machine's context.
     * @param queue the queue index.
     * @param direct whether direct delivery is allowed now.
     * @param addr message address when @p direct, else 0.
     * @param data message data when @p direct, else 0.
     */
    void (*queue_route)(void *ctx, uint16_t queue, bool direct, uint64_t addr, uint32_t data);
    /**
     * Queue @p queue's doorbell started (@p mapped) or stopped decoding at guest-physical
     * @p gpa; the machine moves its doorbell object (plat_doorbell_add() with length
     * VIRTIO_PCI_NOTIFY_WIDTH). Called for every queue when BAR 0 starts, stops or moves.
     * @param ctx the machine's context.
     * @param queue the queue index.
     * @param mapped true when the doorbell now decodes at @p gpa.
     * @param gpa where it decodes (when @p mapped) or decoded until now.
     */
    void (*doorbell)(void *ctx, uint16_t queue, bool mapped, uint64_t gpa);
};

/** Everything virtio_pci_init() needs; copied where noted, pointers must outlive the transport. */
struct virtio_pci_config {
    const char *name;         /**< For logs and the PCI device (must outlive it). */
    uint16_t device_id;       /**< Virtio device ID (1 net, 2 block, ...); PCI ID is 0x1040 + it. */
    uint32_t class_code;      /**< PCI class code (base << 16 | sub << 8 | prog-if). */
    uint16_t subsys_id;       /**< PCI subsystem ID; 0 means VIRTIO_PCI_SUBSYS_ID_DEFAULT. */
    uint64_t device_features; /**< Offered features; VIRTIO_F_VERSION_1 is added. Transport
                                   features this transport lacks (packed rings, notification
                                   data, per-queue reset, SR-IOV) are refused. */
    uint16_t num_queues;      /**< Queues, 1..VIRTIO_PCI_MAX_QUEUES. */
    uint16_t queue_max_size;  /**< Largest Queue Size of every queue: power of two <= 32768. */
    uint16_t nr_vectors;      /**< MSI-X table size, 1..VIRTIO_PCI_MAX_VECTORS; 0 means one
                                   per queue plus one for configuration changes (capped). */
    uint32_t config_size;     /**< Device-specific configuration bytes, 0..VIRTIO_PCI_MAX_CONFIG. */
    const void *config_init;  /**< Its initial contents (copied), or NULL for zeros. */
    const struct guest_mem *mem; /**< Guest RAM, to refuse rings outside it at queue_enable;
                                      NULL leaves that check to the device. */
    const struct virtio_device_ops *dev_ops;          /**< The device, or NULL. */
    void *dev_opaque;                                 /**< Passed to @c dev_ops. */
    const struct virtio_pci_machine_ops *machine_ops; /**< The machine, or NULL. */
    void *machine_ctx;                                /**< Passed to @c machine_ops. */
};

/** One queue's registers as the driver programmed them, and what the machine was told. */
struct virtio_pci_queue {
    uint16_t max_size;   /**< Device maximum (queue_size after reset). */
    uint16_t size;       /**< queue_size as written (validated at enable). */
    uint16_t vector;     /**< queue_msix_vector: < nr_vectors or VIRTIO_MSI_NO_VECTOR. */
    bool enabled;        /**< queue_enable accepted. */
    uint64_t desc;       /**< queue_desc. */
    uint64_t avail;      /**< queue_driver (available ring). */
    uint64_t used;       /**< queue_device (used ring). */
    bool routed;         /**< Last queue_route report: direct delivery allowed. */
    uint64_t route_addr; /**< Message address last reported with @c routed. */
    uint32_t route_data; /**< Message data last reported with @c routed. */
};

/** One MSI-X table entry. */
struct virtio_pci_msix_entry {
    uint64_t addr; /**< Message address (bits 1:0 always zero). */
    uint32_t data; /**< Message data. */
    bool masked;   /**< Vector Control mask bit (set at initialisation). */
};

/**
 * A virtio PCI function. Members are private to virtio_pci.c except @c pci, which the
 * machine passes to pci_host_add_device().
 */
struct virtio_pci {
    struct pci_device pci;                     /**< The PCI function the guest sees. */
    const char *name;                          /**< For logs. */
    const struct virtio_device_ops *dev_ops;   /**< The device. */
    void *dev_opaque;                          /**< Passed to @c dev_ops. */
    const struct virtio_pci_machine_ops *mops; /**< The machine. */
    void *mctx;                                /**< Passed to @c mops. */
    const struct guest_mem *mem;               /**< For ring checks, or NULL. */
    uint64_t device_features;                  /**< Offered, VERSION_1 included. */
    uint64_t driver_features;                  /**< Accepted so far by the driver. */
    bool driver_features_high;                 /**< The driver accepted a bit above 63. */
    uint64_t features;                         /**< Negotiated (valid with FEATURES_OK). */
    uint32_t dfselect;                         /**< device_feature_select. */
    uint32_t gfselect;                         /**< driver_feature_select. */
    uint16_t config_vector;                    /**< config_msix_vector. */
    uint16_t queue_select;                     /**< queue_select as written (checked on use). */
    uint8_t status;                            /**< device_status. */
    uint8_t generation;                        /**< config_generation. */
    uint8_t isr;                               /**< ISR status bits. */
    bool reset_pending;                        /**< The device has not finished a reset. */
    uint8_t reset_status;                      /**< device_status shown until it has. */
    uint16_t num_queues;                       /**< Queues (fixed). */
    struct virtio_pci_queue *queues;           /**< num_queues entries. */
    uint16_t nr_vectors;                       /**< MSI-X table size (fixed). */
    struct virtio_pci_msix_entry *msix;        /**< nr_vectors entries. */
    uint64_t pba[VIRTIO_PCI_MAX_VECTORS / 64]; /**< Pending bits. */
    bool msix_enabled;                         /**< Message Control: MSI-X Enable. */
    bool msix_masked;                          /**< Message Control: Function Mask. */
    unsigned msix_cap;                         /**< Offset of the MSI-X capability. */
    unsigned cfg_cap;                          /**< Offset of the PCI_CFG capability. */
    uint8_t *config;                           /**< Device-specific configuration cache. */
    uint32_t config_size;                      /**< Its size. */
    bool bar_mapped;                           /**< BAR 0 decodes (doorbells reported mapped). */
    uint64_t bar_addr;                         /**< Where BAR 0 decodes, when @c bar_mapped. */
    os_mutex lock;                             /**< Guards everything above but @c pci. */
};

/**
 * Build the PCI function: identity, BAR 0, capabilities, hooks. The caller then adds
 * @c vp->pci to a PCI host.
 * @param vp the transport (any prior content is discarded).
 * @param cfg what the device is; pointers in it must outlive @p vp.
 * @return 0; -EINVAL for a configuration out of the documented ranges or offering a
 *         transport feature this transport lacks; -ENOMEM; or the error of the PCI or
 *         mutex initialisation.
 */
int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_config *cfg);

/**
 * Release what virtio_pci_init() acquired; the PCI host must be gone or never had it.
 * @param vp the transport.
 */
void virtio_pci_destroy(struct virtio_pci *vp);

/**
 * A used-buffer notification for @p queue, from the device or from a backend's signal
 * that the machine is watching (irqfd detached): per MSI-X rules it is sent now, or
 * marked pending while the vector or the function is masked, or dropped for
 * VIRTIO_MSI_NO_VECTOR; with MSI-X disabled it sets the ISR queue bit.
 * @param vp the transport.
 * @param queue the queue index.
 * @return 0; -EINVAL for a queue that does not exist; -ENODEV before DRIVER_OK (dropped:
 *         a device must not notify before it).
 */
int virtio_pci_queue_interrupt(struct virtio_pci *vp, uint16_t queue);

/**
 * Change the device-specific configuration the driver reads. When bytes change,
 * config_generation moves on, so a driver reading a multi-field value sees the change
 * and re-reads; with @p notify and DRIVER_OK set, a configuration change
 * notification (ISR bit and config vector) follows.
 * @param vp the transport.
 * @param offset first byte.
 * @param data the new bytes.
 * @param len their number.
 * @param notify whether the driver must be told (false to reflect the driver's own write).
 * @return 0, or -EINVAL when [offset, offset + len) is outside the configuration space.
 */
int virtio_pci_config_update(struct virtio_pci *vp, uint32_t offset, const void *data, uint32_t len,
                             bool notify);

/**
 * The device failed in a way only a reset cures (e.g. a malformed ring): set
 * DEVICE_NEEDS_RESET and send a configuration change notification (§2.1.2). Ignored while
 * a reset is in progress, which clears the condition anyway.
 * @param vp the transport.
 * @param reason static text for the (rate-limited) log line.
 */
void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *reason);

/**
 * The device has finished a reset it answered with VIRTIO_PCI_RESET_PENDING: from now on
 * device_status reads 0.
 * @param vp the transport.
 */
void virtio_pci_reset_done(struct virtio_pci *vp);

/**
 * Where a queue's doorbell decodes right now (for a machine that attaches a doorbell
 * object after BAR 0 was mapped; later moves come through the doorbell hook).
 * @param vp the transport.
 * @param queue the queue index.
 * @param gpa receives the guest-physical address of the doorbell.
 * @return 0; -EINVAL for a queue that does not exist; -ENODEV while BAR 0 does not decode.
 */
int virtio_pci_doorbell_addr(struct virtio_pci *vp, uint16_t queue, uint64_t *gpa);

#endif
