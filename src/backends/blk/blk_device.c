/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/blk/blk_device.h"

#include "core/log.h"
#include "virtio/virtio_ring.h"
#ifdef BULKHEAD_FAULTS
#include "vhost/faults.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BIT(n) (1ull << (n))

/* The library only stores the negotiated bits; the image must hear about FLUSH. */
static void sync_features(struct blk_device *bd)
{
    if (bd->be == NULL || (bd->features_applied && bd->applied_features == bd->be->features))
        return;
    bd->applied_features = bd->be->features;
    bd->features_applied = true;
    blk_image_set_features(bd->img, bd->applied_features);
    log_debug("blk: features 0x%llx negotiated, %s", (unsigned long long)bd->applied_features,
              (bd->applied_features & BIT(VIRTIO_BLK_F_FLUSH)) ? "writeback" : "writethrough");
}

static int get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
    struct blk_device *bd = opaque;
    struct virtio_blk_config cfg;
    /* The library checked offset + len against config_size, i.e. sizeof(cfg). */
    blk_image_config(bd->img, (uint16_t)bd->dev.nr_queues, &cfg);
    memcpy(buf, (const uint8_t *)&cfg + offset, len);
    return 0;
}

/* Engine callback: one request finished; its status byte is already in the chain. */
static void request_done(void *opaque, void *cookie, uint32_t used_len, uint8_t status)
{
    struct blk_device_queue *q = opaque;
    (void)status;
    /* A broken or stopped ring refuses the entry; the driver must reset it anyway. */
#ifdef BULKHEAD_FAULTS
    (void)faults_add_used(q->vq, (uint16_t)((uint8_t *)cookie - q->heads), used_len);
#else
    (void)vq_add_used(q->vq, (uint16_t)((uint8_t *)cookie - q->heads), used_len);
#endif
}

/* Hand what completed to the driver: one publish and at most one notification. */
static void flush_used(struct blk_device_queue *q)
{
    struct blk_device *bd = q->bd;
    if (q->vq == NULL || bd->be == NULL)
        return;
#ifdef BULKHEAD_FAULTS
    (void)faults_publish_used(q->vq);
#else
    (void)vq_publish_used(q->vq);
#endif
    (void)vhost_be_queue_notify(bd->be, q->index);
}

static void engine_failed(struct blk_device *bd, unsigned index, int err)
{
    log_error("blk: queue %u: io_uring failed: %s", index, strerror(-err));
    if (bd->error == 0)
        bd->error = err;
}

static int queue_drain(struct blk_device_queue *q)
{
    if (q->engine == NULL || blk_engine_in_flight(q->engine) == 0)
        return 0;
    int r = blk_engine_drain(q->engine);
    flush_used(q);
    if (r < 0)
        engine_failed(q->bd, q->index, r);
    return r;
}

static void queue_release(struct blk_device_queue *q)
{
    blk_engine_destroy(q->engine);
    q->engine = NULL;
    free(q->iov);
    q->iov = NULL;
    free(q->heads);
    q->heads = NULL;
    q->size = 0;
    q->vq = NULL;
    q->starved = false;
    q->requests = 0;
}

/* The ring is about to stop (GET_VRING_BASE, reset, disconnect). */
static void stop_queue(void *opaque, struct vhost_be *be, unsigned index)
{
    struct blk_device *bd = opaque;
    struct blk_device_queue *q = &bd->queues[index];
    (void)be;
    (void)queue_drain(q);
    if (q->engine != NULL)
        log_info("blk: queue %u stopped after %llu requests", index,
                 (unsigned long long)q->requests);
    queue_release(q);
}

static int queue_setup(struct blk_device *bd, struct blk_device_queue *q, uint16_t size)
{
    if (q->engine != NULL && q->size == size)
        return 0;
    (void)queue_drain(q);
    queue_release(q);
    q->iov = calloc(size, sizeof(*q->iov));
    q->heads = malloc(size);
    if (q->iov == NULL || q->heads == NULL) {
        queue_release(q);
        return -ENOMEM;
    }
    int r = blk_engine_create(&q->engine, bd->img, size, request_done, q);
    if (r < 0) {
        /* The frontend chooses when and how large: rate-limited like its other doings. */
        log_guest(LOG_ERROR, "blk: queue %u: cannot create its request engine: %s", q->index,
                  strerror(-r));
        queue_release(q);
        return r;
    }
    q->size = size;
    if (size < bd->queue_size)
        log_guest(LOG_WARN,
                  "blk: queue %u has %u entries, fewer than the %u expected: a request with "
                  "every data segment the device allows does not fit in it",
                  q->index, size, bd->queue_size);
    log_debug("blk: queue %u started with %u entries", q->index, size);
    return 0;
}

static void on_engine(struct blk_device_queue *q);

/* Submits what was queued and, when @p reap, completes what finished meanwhile. */
static int submit_batch(struct blk_device_queue *q, bool reap)
{
    int s = blk_engine_submit(q->engine);
    if (s < 0) {
        engine_failed(q->bd, q->index, s);
        return s;
    }
    if (reap)
        on_engine(q);
    return q->bd->error;
}

/*
 * Take chains while the engine has slots: the device loop of virtqueue.h with the
 * engine doing the work asynchronously. When the slots run out the ring is left
 * with kicks suppressed; the completion path comes back here, because a driver
 * does not kick again for entries that are already available.
 * With a batch bound (blk_device_opts.batch_kib), submissions go out every so many
 * bytes, each followed by a reap, so that completions flow while later requests are
 * still being copied.
 */
static int pump(struct blk_device_queue *q)
{
    struct vq *vq = q->vq;
    for (;;) {
        int r = vq_avail_notify_disable(vq);
        if (r < 0)
            return r;
        unsigned taken = 0;
        uint64_t batch_bytes = 0;
        while (blk_engine_free_slots(q->engine) > 0) {
            uint16_t head;
            struct vq_chain chain;
            r = vq_pop_avail(vq, &head);
            if (r <= 0)
                break;
            r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, q->iov, q->size, &chain);
            if (r == -ENOBUFS) {
                /* Cannot happen with Queue Size entries; never lose the head if it does. */
                r = vq_push_used(vq, head, 0);
                if (r < 0)
                    break;
                continue;
            }
            if (r < 0)
                break;
            r = blk_engine_queue(q->engine, q->iov, chain.nr_readable, chain.nr_writable,
                                 &q->heads[head]);
            if (r < 0)
                break;
            taken++;
            /* Each sum is at most 2^32 per chain (the walker's bound): no overflow. */
            batch_bytes += chain.readable_bytes + chain.writable_bytes;
            if (q->bd->batch_bytes != 0 && batch_bytes >= q->bd->batch_bytes) {
                batch_bytes = 0;
                int s = submit_batch(q, true);
                if (s < 0)
                    return s;
            }
        }
        q->requests += taken;
        if (batch_bytes > 0) {
            int s = submit_batch(q, false);
            if (s < 0)
                return s;
        }
        if (r < 0)
            return r; /* the ring broke: the library reports it */
        if (blk_engine_free_slots(q->engine) == 0) {
            q->starved = true;
            return 0;
        }
        q->starved = false;
        if (q->bd->polling)
            return 0; /* blk_device_poll() looks again; kicks stay off meanwhile */
        r = vq_avail_notify_enable(vq);
        if (r <= 0)
            return r;
    }
}

static int process_queue(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    struct blk_device *bd = opaque;
    struct blk_device_queue *q = &bd->queues[index];
    if (bd->error != 0)
        return bd->error;
    sync_features(bd);
    int r = queue_setup(bd, q, be->queues[index].size);
    if (r < 0)
        return r;
    q->vq = vq;
    return pump(q);
}

int blk_device_init(struct blk_device *bd, struct blk_image *img,
                    const struct blk_device_opts *opts)
{
    if (opts->nr_queues == 0 || opts->nr_queues > VHOST_BE_MAX_QUEUES)
        return -EINVAL;
    memset(bd, 0, sizeof(*bd));
    bd->img = img;
    bd->queue_size = opts->queue_size != 0 ? opts->queue_size : BLK_DEVICE_DEFAULT_QUEUE_SIZE;
    bd->poll_us = opts->poll_us;
    bd->batch_bytes = (uint64_t)opts->batch_kib * 1024u;
    bd->dev = (struct vhost_be_device){
        .features = blk_image_features(img) | BIT(VIRTIO_F_VERSION_1) |
                    BIT(VIRTIO_F_INDIRECT_DESC) | BIT(VIRTIO_F_EVENT_IDX),
        .nr_queues = opts->nr_queues,
        .config_size = sizeof(struct virtio_blk_config),
        .opaque = bd,
        .get_config = get_config,
        .process_queue = process_queue,
        .stop_queue = stop_queue,
    };
    for (unsigned i = 0; i < VHOST_BE_MAX_QUEUES; i++)
        bd->queues[i] = (struct blk_device_queue){.bd = bd, .index = i};
    return 0;
}

void blk_device_attach(struct blk_device *bd, struct vhost_be *be)
{
    bd->be = be;
    bd->error = 0;
    bd->features_applied = false;
    sync_features(bd);
}

int blk_device_drain(struct blk_device *bd)
{
    int first = 0;
    for (unsigned i = 0; i < bd->dev.nr_queues; i++) {
        int r = queue_drain(&bd->queues[i]);
        if (r < 0 && first == 0)
            first = r;
    }
    return first;
}

void blk_device_detach(struct blk_device *bd)
{
    if (bd->be == NULL)
        return;
    (void)blk_device_drain(bd);
    vhost_be_destroy(bd->be); /* stop_queue() releases the engines of started rings */
    for (unsigned i = 0; i < bd->dev.nr_queues; i++)
        queue_release(&bd->queues[i]);
    bd->be = NULL;
}

unsigned blk_device_pollfds(const struct blk_device *bd, struct pollfd *pfd, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < bd->dev.nr_queues && n < max; i++) {
        if (bd->queues[i].engine != NULL)
            pfd[n++] =
                (struct pollfd){.fd = blk_engine_eventfd(bd->queues[i].engine), .events = POLLIN};
    }
    return n;
}

static void on_engine(struct blk_device_queue *q)
{
    int r = blk_engine_poll(q->engine);
    flush_used(q);
    if (r < 0)
        engine_failed(q->bd, q->index, r);
}

int blk_device_dispatch(struct blk_device *bd, const struct pollfd *pfd, unsigned n)
{
    struct vhost_be *be = bd->be;
    bool message = false;
    /* Completions first: they free slots and end requests before anything else. */
    for (unsigned i = 0; i < n; i++) {
        if (pfd[i].fd < 0 || pfd[i].revents == 0)
            continue;
        if (pfd[i].fd == be->sock) {
            message = true;
            continue;
        }
        for (unsigned k = 0; k < bd->dev.nr_queues; k++) {
            struct blk_device_queue *q = &bd->queues[k];
            if (q->engine != NULL && blk_engine_eventfd(q->engine) == pfd[i].fd) {
                bd->poll_work = true;
                on_engine(q);
                break;
            }
        }
    }
    if (bd->error != 0)
        return bd->error;
    /*
     * Kicks, then the message, as vhost_be_dispatch() would, but with a drain in
     * between: the kicks start requests, and a message may replace the memory table
     * they point into.
     */
    for (unsigned i = 0; i < n; i++) {
        if (pfd[i].fd < 0 || pfd[i].revents == 0 || pfd[i].fd == be->sock)
            continue;
        for (unsigned k = 0; k < bd->dev.nr_queues; k++) {
            if (be->queues[k].kick_fd == pfd[i].fd) {
                bd->poll_work = true;
                (void)vhost_be_handle_kick(be, k);
                break;
            }
        }
    }
    if (message) {
        (void)blk_device_drain(bd);
        if (bd->error != 0)
            return bd->error;
        int r = vhost_be_handle_message(be);
        if (r < 0)
            return r;
        sync_features(bd);
    }
    /* Rings that ran out of slots: their waiting chains will not be kicked again. */
    for (unsigned i = 0; i < bd->dev.nr_queues; i++) {
        struct blk_device_queue *q = &bd->queues[i];
        if (q->starved && q->engine != NULL && blk_engine_free_slots(q->engine) > 0)
            (void)vhost_be_handle_kick(be, i);
    }
    return bd->error;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool blk_device_poll(struct blk_device *bd)
{
    struct vhost_be *be = bd->be;
    if (bd->poll_us == 0 || be == NULL || bd->error != 0)
        return false;
    uint64_t now = now_ns();
    if (bd->poll_work) {
        bd->poll_work = false;
        bd->poll_last_ns = now;
        bd->polling = true;
    }
    if (!bd->polling)
        return false;
    for (unsigned i = 0; i < bd->dev.nr_queues; i++) {
        struct blk_device_queue *q = &bd->queues[i];
        if (q->engine != NULL && blk_engine_ready(q->engine)) {
            on_engine(q);
            bd->poll_last_ns = now;
        }
        if ((q->engine == NULL || blk_engine_free_slots(q->engine) > 0) &&
            vhost_be_ring_ready(be, i)) {
            (void)vhost_be_process(be, i);
            bd->poll_last_ns = now;
        }
    }
    if (now - bd->poll_last_ns <= (uint64_t)bd->poll_us * 1000u)
        return bd->error == 0;
    /* Kicks back on: a pump with polling off re-arms them and takes what came since. */
    bd->polling = false;
    for (unsigned i = 0; i < bd->dev.nr_queues; i++)
        (void)vhost_be_process(be, i);
    return false;
}
