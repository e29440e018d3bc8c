/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vhost_dev.h
 * @brief A virtio-pci device whose implementation is a vhost-user backend process.
 *
 * The guest sees a virtio-pci function (virtio/virtio_pci.h); behind it, a device I/O
 * thread of the VMM speaks vhost-user (vhost/frontend.h) to a backend that is either a
 * child the VMM started (the device type's own program, bulkhead-blk, bulkhead-net, ...,
 * over a socketpair) or a socket someone else serves. What differs between device types
 * is in vmm/vhost_kind.h.
 * In `shared` memory mode the backend receives the guest-RAM memfd and the guest's ring
 * addresses, and the VMM stays out of the data path: the guest's doorbells are
 * ioeventfds the backend reads, and the backend's call eventfds are irqfds on MSI routes
 * (or, while a vector is masked, watched by the device thread, which sets the pending
 * bit). In `isolated` memory mode (the default) the backend receives only the device's
 * bounce region (host/bounce.h, one sealed memfd described as one region at a made-up
 * address) and shadow rings inside it; the device thread serves the guest's rings with
 * virtio/isolated.h, copying each request in and its result out. The guest's doorbell
 * and the backend's call are then the device thread's: it kicks the backend through an
 * eventfd of its own and interrupts the guest through the queue's own interrupt eventfd,
 * an irqfd on the vector's MSI route as in shared mode (while the vector is masked the
 * device thread takes it and the transport sets the pending bit). A backend that dies
 * or breaks the protocol costs the guest I/O errors on this device only. vCPU threads
 * never wait on the backend: everything that talks to it runs on the device thread, and
 * the transport's hooks only hand work over.
 */
#ifndef BULKHEAD_VMM_VHOST_DEV_H
#define BULKHEAD_VMM_VHOST_DEV_H

#include "vmm/options.h"

struct vm;
struct vhost_dev;
struct pci_host;

/**
 * Connect to the backend, learn what it offers, and create the PCI function (not yet
 * placed on the bus). Runs on the main thread before the vCPUs start; each exchange with
 * the backend has a deadline.
 * @param vm the VM (guest RAM, platform, bus).
 * @param opt the device option it serves.
 * @param index the device's position among the VM's devices of its type, for its name.
 * @param out receives the device.
 * @return 0, or a negative errno (logged with the reason).
 */
int vhost_dev_create(struct vm *vm, const struct vmm_device *opt, unsigned index,
                     struct vhost_dev **out);

/**
 * Place the device on the PCI host and start its I/O thread.
 * @param d the device.
 * @param host the PCI host.
 * @return 0 or a negative errno.
 */
int vhost_dev_start(struct vhost_dev *d, struct pci_host *host);

struct control_reply;

/**
 * Append this device's counters to a control-socket reply: a line for the device
 * (mode, backend state, restarts) and one per queue. Isolated mode counts guest kicks,
 * guest interrupts, requests, bytes each way, failed and resubmitted requests and
 * backend kicks; shared mode only what passes through the VMM (interrupts it forwards
 * while a vector is masked), the rest going straight between KVM and the backend.
 * @param d the device.
 * @param reply the reply.
 */
void vhost_dev_counters(struct vhost_dev *d, struct control_reply *reply);

/**
 * Stop the I/O thread, the backend connection (and child) and free everything. The vCPU
 * threads must have stopped.
 * @param d the device (NULL is ignored).
 */
void vhost_dev_destroy(struct vhost_dev *d);

#endif
