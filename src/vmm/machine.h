/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file machine.h
 * @brief The machine model: what an architecture puts into a VM.
 *
 * vm.c is architecture-neutral; it calls these to lay out guest-physical RAM, add the
 * devices, build the firmware tables, load the kernel and prepare each vCPU.
 * machine_x86.c implements them for the x86-64 PC.
 */
#ifndef BULKHEAD_VMM_MACHINE_H
#define BULKHEAD_VMM_MACHINE_H

#include "vmm/vm.h"

/**
 * Split RAM into guest-physical regions (host memory is already allocated) and map them.
 * @param vm the VM (ram, plat allocated).
 * @return 0 or a negative errno.
 */
int machine_map_ram(struct vm *vm);

/**
 * Create the devices, firmware tables and boot state, and load the guest.
 * @param vm the VM (RAM mapped, buses ready).
 * @param files kernel and initrd.
 * @return 0 or a negative errno (-ENOEXEC, -E2BIG, -ENOMEM: unusable kernel or initrd).
 */
int machine_build(struct vm *vm, const struct boot_files *files);

/**
 * Prepare a vCPU before its thread starts (CPUID; the boot vCPU also gets its registers).
 * @param vm the VM.
 * @param vcpu the vCPU.
 * @return 0 or a negative errno.
 */
int machine_setup_vcpu(struct vm *vm, struct vm_vcpu *vcpu);

/**
 * Connect the console input to the machine's serial port.
 * @param vm the VM.
 * @param loop the host event loop.
 * @return 0 or a negative errno.
 */
int machine_attach_console(struct vm *vm, struct event_loop *loop);

/**
 * Ask the guest to shut down cleanly (press the power button).
 * @param vm the VM.
 */
void machine_request_shutdown(struct vm *vm);

struct control_reply;

/**
 * Append the devices' counters to a control-socket reply, one line per device and per
 * queue (`NAME key=value ...`). Runs on the main thread while the devices work: each
 * counter is read once, so a line is a near-instant snapshot, not an atomic one.
 * @param vm the VM.
 * @param reply the reply.
 */
void machine_counters(struct vm *vm, struct control_reply *reply);

/**
 * Free the devices.
 * @param vm the VM.
 */
void machine_destroy(struct vm *vm);

#endif
