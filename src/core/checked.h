/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file checked.h
 * @brief Overflow-safe arithmetic for guest-controlled values.
 *
 * Every address or length that comes from the guest is combined through these
 * helpers, never with a bare '+', so that a wrap-around is an error instead of
 * an access somewhere else.
 */
#ifndef BULKHEAD_CORE_CHECKED_H
#define BULKHEAD_CORE_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/**
 * Add two 64-bit values, detecting wrap-around.
 * @param a first operand.
 * @param b second operand.
 * @param out receives a + b when no overflow happens.
 * @return true when a + b overflowed (and @p out is unspecified).
 */
static inline bool checked_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/**
 * Multiply two 64-bit values, detecting wrap-around.
 * @param a first operand.
 * @param b second operand.
 * @param out receives a * b when no overflow happens.
 * @return true when a * b overflowed.
 */
static inline bool checked_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

/**
 * Whether [addr, addr + len) lies entirely inside [base, base + size).
 * Safe for any inputs: no intermediate sum can wrap.
 * @param addr start of the inner range.
 * @param len length of the inner range (0 is inside iff addr is within [base, base + size]).
 * @param base start of the outer range.
 * @param size length of the outer range.
 * @return true when the inner range is contained.
 */
static inline bool range_within(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
    if (addr < base)
        return false;
    uint64_t off = addr - base;
    return off <= size && len <= size - off;
}

/**
 * Round @p v up to a power-of-two @p align, detecting wrap-around.
 * @param v value to round.
 * @param align alignment, a power of two.
 * @param out receives the rounded value.
 * @return true on overflow.
 */
static inline bool checked_align_up(uint64_t v, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (checked_add_u64(v, align - 1, &t))
        return true;
    *out = t & ~(align - 1);
    return false;
}

#endif
