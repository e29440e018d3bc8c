/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file i8042.h
 * @brief The part of a PS/2 keyboard controller a keyboard-less machine needs: the reset line.
 *
 * Linux's keyboard-controller reboot (and other OSes' last-resort reboot) waits for the
 * controller's input buffer to drain, then writes command 0xfe ("pulse output port bit 0",
 * the CPU reset line) to port 0x64. This model answers exactly that:
 * - port 0x64 reads 0 (output buffer empty, input buffer empty), so no wait loop ever waits;
 * - writing 0xfe to port 0x64 calls the reset callback; every other command is ignored;
 * - port 0x60 reads 0 and ignores writes.
 *
 * The two ports are decoded as two bus ranges of one port each (i8042_data_ops at
 * X86_I8042_DATA_PORT, i8042_cmd_ops at X86_I8042_CMD_PORT), which leaves the ports in
 * between (0x61: NMI status and speaker gate) to other devices. i8042_register() does both.
 *
 * The FADT should not advertise an 8042 (IAPC_BOOT_ARCH bit 1 clear) and the DSDT should not
 * describe one, so Linux does not probe the controller: a probe would wait for command
 * responses that never come.
 *
 * The device has no mutable state and takes no lock; the reset callback runs on the writing
 * vCPU's thread inside a bus callback, so it must not register or unregister ranges of the
 * I/O bus (a machine records the request and kicks its vCPUs).
 */
#ifndef BULKHEAD_DEVICES_I8042_H
#define BULKHEAD_DEVICES_I8042_H

#include "core/bus.h"

/** Controller command that pulses the CPU reset line. */
#define I8042_CMD_RESET 0xfe

/** The controller: only its connection to the machine's reset. */
struct i8042 {
    /**
     * The guest pulsed the reset line.
     * @param ctx the ctx member.
     */
    void (*reset)(void *ctx);
    void *ctx; /**< Passed to reset(). */
};

/**
 * Initialise the controller.
 * @param k the controller.
 * @param reset reset callback, or NULL to log and ignore reset requests.
 * @param ctx passed to @p reset.
 */
void i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx);

/**
 * Register both ports on the port-I/O bus (X86_I8042_DATA_PORT and X86_I8042_CMD_PORT).
 * @param k the controller (must outlive the registration).
 * @param pio the port-I/O bus.
 * @return 0, or the negative errno of bus_register() (nothing stays registered then).
 */
int i8042_register(struct i8042 *k, struct bus *pio);

/** Bus callbacks for the one-port data range (0x60); the opaque is the struct i8042. */
extern const struct bus_ops i8042_data_ops;

/** Bus callbacks for the one-port command/status range (0x64); the opaque is the struct i8042. */
extern const struct bus_ops i8042_cmd_ops;

#endif
