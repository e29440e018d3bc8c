/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file bounce.h
 * @brief A device's bounce region for isolated mode: one sealed memfd, mapped in the VMM.
 *
 * The region is the only memory an isolated-mode backend maps (docs/design.md, "The two
 * memory modes"). It is a memfd of its own, never part of guest RAM, sealed against
 * growing and shrinking as guest RAM is: backends refuse a memfd that could shrink under
 * them (a SIGBUS on access), and the VMM must not see it shrink either.
 */
#ifndef BULKHEAD_HOST_BOUNCE_H
#define BULKHEAD_HOST_BOUNCE_H

#include <stdint.h>

/** A bounce region. */
struct bounce_region {
    int fd;        /**< The memfd ("bulkhead-bounce"), or -1. */
    uint8_t *base; /**< Host address of byte 0, mapped shared, read-write. */
    uint64_t size; /**< Bytes. */
};

/**
 * Create, size, seal and map a bounce region.
 * @param b receives the region.
 * @param size bytes, a non-zero multiple of 4 KiB.
 * @return 0 or a negative errno (nothing is left allocated then).
 */
int bounce_create(struct bounce_region *b, uint64_t size);

/**
 * Give the region fresh, zeroed memory at the same host address, for a new backend: the
 * old memfd (which a backend that went away may still map and write) is closed and
 * replaced by a new one mapped over the old range in one step, so every pointer into
 * the region stays valid and no byte the old backend writes from now on is seen.
 * @param b the region.
 * @return 0, or a negative errno (the region is then unchanged).
 */
int bounce_renew(struct bounce_region *b);

/**
 * Unmap and close.
 * @param b the region (fd -1 is ignored).
 */
void bounce_destroy(struct bounce_region *b);

#endif
