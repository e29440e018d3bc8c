/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file uart16550.h
 * @brief A 16550A UART (PC COM port) that Linux's 8250 driver detects and drives with interrupts.
 *
 * The model covers what a driver can observe of a PC16550D: the eight registers (DLAB
 * banking, FIFO control, loopback with modem-status feedback, scratch), a 16-byte receive
 * FIFO, a 16-byte transmit FIFO and the datasheet's interrupt priorities. While the host
 * takes output, transmission is instantaneous: a THR write hands the byte to the host at
 * once, so THRE and TEMT stay set and a driver never polls LSR in vain (each guest port
 * access is a costly VM exit). When the host cannot take more (its console buffer is full:
 * nobody reads the output), bytes wait in the transmit FIFO and THRE/TEMT read clear, so
 * the guest's driver waits for the transmitter the way it would on a slow line, instead of
 * the VMM blocking a vCPU; uart16550_tx_ready() resumes transmission.
 *
 * The interrupt output follows the PC wiring: the line is asserted while an enabled
 * interrupt is pending and MCR.OUT2 is set (OUT2 gates the ISA IRQ driver on a PC). Only
 * changes of that level are passed to the line, so an edge-triggered ISA pin sees exactly
 * one rising edge per assertion.
 *
 * Locking: all state is guarded by the device's mutex, because the bus callbacks run on
 * vCPU threads while uart16550_receive() runs on the host's event-loop thread.
 * - The irq line setter is called WITH the mutex held, so that two threads can never
 *   deliver line levels out of order. It must not call back into this device.
 * - The tx callback is called WITH the mutex held, so that bytes reach the host in the
 *   order the transmit FIFO holds them whichever thread drains it; it must not call back
 *   into this device and must not block.
 * - The rx-ready callback is called WITHOUT the mutex held; it may call any function of
 *   this device (it may call uart16550_receive() directly).
 */
#ifndef BULKHEAD_DEVICES_UART16550_H
#define BULKHEAD_DEVICES_UART16550_H

#include "core/bus.h"
#include "core/irq.h"

#include "core/lock.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Number of consecutive ports the UART decodes (register the range with this length). */
#define UART16550_NR_PORTS 8

/** Depth of the receive FIFO in FIFO mode (in 16450 mode the receiver holds one byte). */
#define UART16550_FIFO_SIZE 16

/**
 * State of one UART. Embed it in the machine; initialise with uart16550_init(). The members
 * are private to uart16550.c and guarded by @c lock.
 */
struct uart16550 {
    os_mutex lock;       /**< Guards every other member except the constant callbacks. */
    struct irq_line irq; /**< Interrupt output, a copy of the line given at init. */
    /** Host output; called for each byte the guest transmits (outside loopback). Returns
     * false when the host has no room: the byte stays in the transmit FIFO until
     * uart16550_tx_ready(). */
    bool (*tx)(void *ctx, uint8_t byte);
    void *tx_ctx; /**< Passed to tx(). */
    /** Host input wake-up: called when input refused earlier can be offered again. */
    void (*rx_ready)(void *ctx);
    void *rx_ready_ctx;                   /**< Passed to rx_ready(). */
    uint8_t rx_fifo[UART16550_FIFO_SIZE]; /**< Receive FIFO storage (a ring). */
    uint8_t rx_head;                      /**< Index of the oldest received byte. */
    uint8_t rx_count;                     /**< Bytes held in the receive FIFO. */
    uint8_t tx_fifo[UART16550_FIFO_SIZE]; /**< Transmit FIFO storage (a ring). */
    uint8_t tx_head;                      /**< Index of the oldest byte to transmit. */
    uint8_t tx_count;                     /**< Bytes waiting for the host. */
    uint8_t ier;                          /**< Interrupt enable register (bits 0-3). */
    uint8_t lcr;                          /**< Line control register; bit 7 is DLAB. */
    uint8_t mcr;                          /**< Modem control register (bits 0-4). */
    uint8_t msr;                          /**< Modem status: current lines (bits 4-7). */
    uint8_t msr_delta;                    /**< Modem status change bits (bits 0-3). */
    uint8_t scr;                          /**< Scratch register. */
    uint8_t dll;                          /**< Divisor latch, low byte. */
    uint8_t dlm;                          /**< Divisor latch, high byte. */
    bool overrun;                         /**< LSR.OE latched until LSR is read. */
    bool fifo_enabled;                    /**< FCR bit 0: FIFO mode rather than 16450 mode. */
    bool thre_pending;                    /**< THR-empty interrupt raised and not yet cleared. */
    bool rx_blocked;  /**< Host input was refused; rx_ready() is owed once there is room. */
    bool irq_level;   /**< Level last driven on the line. */
    uint64_t rx_lost; /**< Bytes lost to overruns in loopback (statistic). */
    uint64_t tx_lost; /**< Bytes written to a full transmit FIFO, hence lost (statistic). */
};

/**
 * Initialise a UART in its reset state, with the interrupt line deasserted.
 * @param u the UART.
 * @param irq interrupt line (copied; COM1 uses ISA IRQ 4).
 * @param tx host output callback, or NULL to discard output.
 * @param tx_ctx passed to @p tx.
 * @return 0, or a negative errno from the mutex initialisation.
 */
int uart16550_init(struct uart16550 *u, const struct irq_line *irq,
                   bool (*tx)(void *ctx, uint8_t byte), void *tx_ctx);

/**
 * Release the UART's resources. No thread may be using it any more.
 * @param u the UART.
 */
void uart16550_destroy(struct uart16550 *u);

/**
 * Return the UART to its power-on state (machine reset): registers reset, FIFO emptied,
 * line lowered. The scratch register and divisor latch keep their values, as on the chip.
 * @param u the UART.
 */
void uart16550_reset(struct uart16550 *u);

/**
 * Register the callback that tells the host input side to offer input again after
 * uart16550_receive() accepted less than it was given. It is called once per refusal, as
 * soon as the receive FIFO has drained to half its depth (or to empty in 16450 mode), so
 * the host can refill while the guest is still reading. Called without the device lock,
 * from whichever thread drained the FIFO (usually a vCPU thread).
 * @param u the UART.
 * @param cb the callback, or NULL for none.
 * @param ctx passed to @p cb.
 */
void uart16550_set_rx_ready_cb(struct uart16550 *u, void (*cb)(void *ctx), void *ctx);

/**
 * Offer host input to the receiver. Nothing is accepted while the UART is in loopback mode
 * (its receiver is disconnected from the line then).
 * @param u the UART.
 * @param buf the bytes.
 * @param len number of bytes in @p buf.
 * @return how many leading bytes of @p buf were accepted; the caller keeps the rest and
 *         offers them again after the rx-ready callback (or later).
 */
size_t uart16550_receive(struct uart16550 *u, const uint8_t *buf, size_t len);

/**
 * The host has room for output again (after tx returned false): transmit what waits in
 * the FIFO and, once it is empty, report THRE to the guest. Safe from any thread.
 * @param u the UART.
 */
void uart16550_tx_ready(struct uart16550 *u);

/**
 * Bus callbacks for the UART's range of UART16550_NR_PORTS ports; the opaque is the
 * struct uart16550. Registers are 8 bits wide: other access widths read all-ones and
 * writes of them are ignored.
 */
extern const struct bus_ops uart16550_ops;

#endif
