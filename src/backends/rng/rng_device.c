/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/rng/rng_device.h"

#include "backends/common/backend_vq.h"
#include "core/log.h"
#include "virtio/virtio_ring.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define BIT(n) (1ull << (n))

/* getrandom() returns short counts for large requests and on signals: loop. */
static int fill_random(uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Fill the writable segments in order, up to the limit. On a getrandom() failure the
 * bytes written so far are still reported: they are random too.
 */
static int fill_chain(const struct rng_device *rd, const struct vq_chain *chain, uint32_t *done)
{
    const struct vq_iovec *iov = rd->iov + chain->nr_readable;
    uint32_t left = rd->max_request;
    *done = 0;
    for (unsigned i = 0; i < chain->nr_writable && left > 0; i++) {
        size_t n = iov[i].len < left ? iov[i].len : left;
        int r = fill_random(iov[i].base, n);
        if (r < 0)
            return r;
        *done += (uint32_t)n;
        left -= (uint32_t)n;
    }
    return 0;
}

/* One chain: its used length, or a negative errno that ends processing. */
static int serve_chain(struct rng_device *rd, struct vq *vq, uint16_t head, uint32_t *len)
{
    struct vq_chain chain;
    *len = 0;
    int r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, rd->iov, RNG_IOV_MAX, &chain);
    /* -ENOBUFS: a well-formed chain longer than our scratch; its first segments do. */
    if (r < 0 && r != -ENOBUFS)
        return r;
    if (chain.readable_bytes > 0 || chain.nr_readable > 0) {
        rd->counters.refused++;
        log_guest(LOG_WARN, "rng: request with %llu device-readable bytes refused",
                  (unsigned long long)chain.readable_bytes);
        return 0;
    }
    r = fill_chain(rd, &chain, len);
    rd->counters.requests++;
    rd->counters.bytes += *len;
    /* Each request of the guest would repeat it: rate-limited like guest doings. */
    if (r < 0)
        log_guest(LOG_ERROR, "rng: getrandom: %s", strerror(-r));
    return r;
}

/*
 * The device loop of backend_vq.h: every chain available is answered and the batch is
 * published at once; the library sends the one notification after we return.
 */
static int process_queue(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    struct rng_device *rd = opaque;
    (void)be;
    (void)index;
    for (;;) {
        int r = vq_avail_notify_disable(vq);
        uint16_t head;
        while (r == 0 && (r = vq_pop_avail(vq, &head)) == 1) {
            uint32_t len;
            int s = serve_chain(rd, vq, head, &len);
            if (s < 0 && vq->broken)
                return s;
            /* After a getrandom() failure the chain still goes back, then we stop. */
            r = backend_add_used(vq, head, len);
            if (r == 0 && s < 0)
                r = s;
        }
        r = backend_batch_end(vq, r);
        if (r <= 0)
            return r;
    }
}

int rng_device_init(struct rng_device *rd, uint32_t max_request)
{
    if (max_request == 0 || max_request > RNG_MAX_MAX_REQUEST)
        return -EINVAL;
    memset(rd, 0, sizeof(*rd));
    rd->max_request = max_request;
    rd->dev = (struct vhost_be_device){
        .features = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_F_EVENT_IDX),
        .nr_queues = 1,
        .opaque = rd,
        .process_queue = process_queue,
    };
    return 0;
}
