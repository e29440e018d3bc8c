/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file backend_vq.h
 * @brief Steps of the device loop (virtqueue.h) that every small backend repeats:
 *        staging a used entry when a whole ring is already staged, and ending a batch.
 *
 * A backend answers the chains of one kick as a batch: it stages a used entry per
 * chain, publishes them all with one barrier and lets the library send one
 * notification. Before it waits for the next kick it must ask for kicks again and
 * look once more, because with EVENT_IDX a driver does not kick for chains it added
 * before it saw the request:
 * @code
 * for (;;) {
 *     int r = vq_avail_notify_disable(vq);
 *     while (r == 0 && (r = vq_pop_avail(vq, &head)) == 1)
 *         r = ... serve the chain, then backend_add_used(vq, head, len);
 *     r = backend_batch_end(vq, r);
 *     if (r <= 0)
 *         return r;                  // wait for the next kick, or the error
 * }
 * @endcode
 */
#ifndef BULKHEAD_BACKENDS_COMMON_BACKEND_VQ_H
#define BULKHEAD_BACKENDS_COMMON_BACKEND_VQ_H

#include "virtio/virtqueue.h"

#include <stdint.h>

/**
 * vq_add_used(), but when a whole ring of entries is staged already (a driver that
 * keeps adding while the batch runs) the staged ones are published first to make room.
 * @param vq the queue.
 * @param head the chain's head.
 * @param len bytes written into the chain.
 * @return 0, or a negative errno as vq_add_used() and vq_publish_used().
 */
int backend_add_used(struct vq *vq, uint16_t head, uint32_t len);

/**
 * End a batch: publish what was staged, then, unless the batch failed, ask for kicks
 * again and look for chains that came meanwhile.
 * @param vq the queue.
 * @param r how the batch ended: 0, or a negative errno (returned as it is, after the
 *        staged entries are published).
 * @return 1 when chains are waiting (serve another batch); 0 to wait for a kick; a
 *         negative errno (the batch's, or one of publishing or re-arming).
 */
int backend_batch_end(struct vq *vq, int r);

#endif
