/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file irq.h
 * @brief An interrupt line as a device model sees it.
 *
 * Devices raise and lower a line without knowing who implements it: the
 * machine wires the line to the platform (plat_irq_set()), unit tests wire it
 * to a recorder.
 */
#ifndef BULKHEAD_CORE_IRQ_H
#define BULKHEAD_CORE_IRQ_H

#include <stdbool.h>
#include <stdint.h>

/** A wired interrupt line. */
struct irq_line {
    /**
     * Set the line's level.
     * @param ctx the ctx member.
     * @param gsi the gsi member.
     * @param level true for asserted.
     */
    void (*set)(void *ctx, uint32_t gsi, bool level);
    void *ctx;    /**< Passed to set(). */
    uint32_t gsi; /**< Line number in the interrupt controller. */
};

/**
 * Set the level of a line; a line without a set() callback is not connected and ignores it.
 * @param line the line.
 * @param level true for asserted.
 */
static inline void irq_line_set(const struct irq_line *line, bool level)
{
    if (line->set != NULL)
        line->set(line->ctx, line->gsi, level);
}

#endif
