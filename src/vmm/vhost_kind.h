/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vhost_kind.h
 * @brief What differs between the vhost-user device types bulkhead-vmm offers.
 *
 * Every device option (--disk, --net, --vsock, --console, --rng, --fs) becomes the same
 * thing in the VMM: a virtio-pci function whose implementation is a vhost-user backend
 * (vmm/vhost_dev.h), in either memory mode. Only a few facts depend on the device type:
 * its virtio and PCI identity, who provides its configuration space (the backend through
 * GET_CONFIG, or the VMM from the command line), how many queues it has, which device
 * feature bits may pass from the backend to the guest, how a request the VMM must fail
 * is completed, how much bounce space a queue gets in isolated mode, and which of the
 * project's backend programs serves it with which arguments. They live here, in one
 * table, so the frontend has one code path for all of them.
 */
#ifndef BULKHEAD_VMM_VHOST_KIND_H
#define BULKHEAD_VMM_VHOST_KIND_H

#include "virtio/isolated.h"
#include "vmm/options.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most configuration bytes of any type here: a 64-bit mask tracks the driver's writes. */
#define VHOST_KIND_CONFIG_MAX 64

/** The fixed facts of one device type. */
struct vhost_kind {
    const char *name;     /**< Device names are this plus a number: "disk0", "net1". */
    const char *program;  /**< The project's backend program, or NULL (an external one). */
    uint16_t virtio_id;   /**< Virtio device ID (virtio 1.2 §5). */
    uint32_t class_code;  /**< PCI class code. */
    uint32_t config_size; /**< Bytes of the device configuration space. */
    bool backend_config;  /**< The backend provides it (GET_CONFIG); else the VMM does. */
    uint64_t device_mask; /**< Device-specific feature bits (0-23) a backend may pass on:
                               ones whose queues or fields this VMM does not provide (a
                               control queue, say) are withheld from the guest. */
    uint64_t data_bytes;  /**< Isolated mode: bounce bytes per queue for request data. */
    iso_fail_fn fail;     /**< Isolated mode: completes a request the VMM must fail. */
    bool request_timeout; /**< Requests complete on their own (a disk), so one held too
                               long means a hung backend; not so for receive buffers. */
};

/**
 * The facts of one device type.
 * @param kind the option's kind.
 * @return the entry (never NULL for a valid kind).
 */
const struct vhost_kind *vhost_kind_get(enum vmm_dev_kind kind);

/**
 * How many queues the device has: its type's fixed count, or what its configuration and
 * features say (multi-queue disks, console ports), at most @p max. Adjusts the
 * configuration when it had to cut (console ports beyond what fits).
 * @param kind the device type.
 * @param features the features offered to the guest.
 * @param config the configuration space, config_size bytes.
 * @param max most queues the VMM and the backend handle.
 * @return the count, at least 1.
 */
unsigned vhost_kind_queues(enum vmm_dev_kind kind, uint64_t features, uint8_t *config,
                           unsigned max);

/**
 * Build a configuration space the VMM provides (types without backend_config): a NIC's
 * MAC address and link state, a shared folder's tag. Adds the feature bits that announce
 * those fields to @p vmm_features; the guest is offered them, the backend is not asked.
 * A NIC with more than one queue pair also gets the control queue and multi-queue
 * (VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ), which the VMM serves itself.
 * @param opt the device option.
 * @param queue_pairs a NIC's queue pairs, as many as both the option and the backend
 *        allow; ignored for other types.
 * @param config receives config_size bytes.
 * @param vmm_features receives the feature bits the VMM provides itself.
 */
void vhost_kind_make_config(const struct vmm_device *opt, unsigned queue_pairs, uint8_t *config,
                            uint64_t *vmm_features);

/**
 * bulkhead-blk's --batch for an isolated disk, KiB: a quarter of the largest request the
 * guest sends (1 MiB), small enough that the copy back of one request overlaps the read
 * of the next, and 64 small requests still share one submission. Measured in the test
 * host: 1 MiB reads at depth 8 went from 964 to 1327 MiB/s.
 */
#define VHOST_KIND_ISO_BLK_BATCH_KIB "256"

/** Room for the arguments of any backend program's command line. */
#define VHOST_KIND_MAX_ARGS (18 + 2 * VMM_MAX_CONSOLE_PORTS)

/** Storage for the numbers and words a command line holds. */
struct vhost_kind_argbuf {
    char nums[4][24]; /**< Decimal numbers printed for the arguments. */
};

/**
 * The command line of the program that serves @p opt (the type's own backend), with the
 * connection as descriptor 3.
 * @param opt the device option (not socket=).
 * @param exe the program's path.
 * @param log_level "warn", "info" or "debug".
 * @param sched its --sched, "batch" or "normal" (the VMM's own class).
 * @param buf storage the arguments may point into; must outlive @p argv.
 * @param argv receives the arguments and a terminating NULL.
 * @return 0; -EINVAL when the type has no program of its own.
 */
int vhost_kind_argv(const struct vmm_device *opt, const char *exe, const char *log_level,
                    const char *sched, struct vhost_kind_argbuf *buf,
                    const char *argv[VHOST_KIND_MAX_ARGS]);

#endif
