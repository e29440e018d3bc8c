/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Isolated mode: guest queue <-> shadow queue in a bounce region, with copies.
 *
 * Everything the backend can reach (rings and data area) is only written by this
 * file, or read through the checked driver side of virtqueue.c; the bookkeeping that
 * says where a request's bytes are in the data area and in guest RAM lives in the
 * caller's private storage. So a backend that rewrites the bounce region can change
 * the bytes of its own requests, and nothing else: each copy's source, destination
 * and length come from private records, never from the bounce region.
 */
#include "virtio/isolated.h"

#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <stdalign.h>
#include <string.h>

/** "No record" in the 16-bit links and in by_head (indices stay below 32768). */
#define NONE 0xffffu

/** Where a request record is in its life. */
enum req_state {
    REQ_FREE = 0, /**< On the free list. */
    REQ_INFLIGHT, /**< Taken from the guest, not yet completed; holds segments and bounce space. */
    REQ_DONE,     /**< Completed; holds bounce space until every older request is done. */
};

/** One guest chain handed to the backend: the private record of where its bytes are. */
struct iso_req {
    uint64_t total;       /**< Bytes of its run in the data area, padding included. */
    uint64_t writable;    /**< Writable bytes of the guest chain (= of the shadow chain). */
    uint16_t guest_head;  /**< Head of the guest chain, for its used element. */
    uint16_t shadow_head; /**< Head of the shadow chain while @c posted. */
    uint16_t first_seg;   /**< First of its segment records (readable ones first). */
    uint16_t nr_readable; /**< Readable segments. */
    uint16_t nr_writable; /**< Writable segments, after the readable ones. */
    uint16_t link;        /**< Next free record while REQ_FREE. */
    uint8_t state;        /**< An enum req_state. */
    bool posted;          /**< On the current shadow ring (false from a reset to the resubmit). */
};

/** One segment of a request: the guest buffer as walked and its place in the data area. */
struct iso_seg {
    uint8_t *guest; /**< Host address in guest RAM, from vq_walk_chain() at the pop. */
    uint64_t off;   /**< Offset in the data area. */
    uint32_t len;   /**< Bytes, non-zero. */
    uint16_t next;  /**< Next segment of the request, or of the free list. */
};

/** Offsets of each array in the caller's storage, and its total size. */
struct storage_map {
    size_t slots;   /**< struct vq_driver_slot[shadow]. */
    size_t reqs;    /**< struct iso_req[shadow]. */
    size_t segs;    /**< struct iso_seg[shadow]. */
    size_t post;    /**< struct vq_seg[shadow]. */
    size_t iov;     /**< struct vq_iovec[guest_max]. */
    size_t order;   /**< uint16_t[shadow]. */
    size_t by_head; /**< uint16_t[shadow]. */
    size_t total;   /**< Bytes in all. */
};

static size_t store_align(size_t v)
{
    const size_t a = alignof(max_align_t);
    return (v + a - 1) & ~(a - 1);
}

/* Sizes are at most 32768, so no product or sum here can come near SIZE_MAX. */
static void map_storage(uint16_t guest_max, uint16_t n, struct storage_map *m)
{
    size_t off = 0;
    m->slots = off;
    off = store_align(off + (size_t)n * sizeof(struct vq_driver_slot));
    m->reqs = off;
    off = store_align(off + (size_t)n * sizeof(struct iso_req));
    m->segs = off;
    off = store_align(off + (size_t)n * sizeof(struct iso_seg));
    m->post = off;
    off = store_align(off + (size_t)n * sizeof(struct vq_seg));
    m->iov = off;
    off = store_align(off + (size_t)guest_max * sizeof(struct vq_iovec));
    m->order = off;
    off = store_align(off + (size_t)n * sizeof(uint16_t));
    m->by_head = off;
    off = store_align(off + (size_t)n * sizeof(uint16_t));
    m->total = off;
}

static bool queue_size_ok(uint32_t size)
{
    return size != 0 && (size & (size - 1)) == 0 && size <= VIRTQ_MAX_SIZE;
}

size_t iso_storage_bytes(uint16_t guest_max_size, uint16_t shadow_size)
{
    if (guest_max_size == 0 || guest_max_size > VIRTQ_MAX_SIZE || !queue_size_ok(shadow_size))
        return 0;
    struct storage_map m;
    map_storage(guest_max_size, shadow_size, &m);
    return m.total;
}

int iso_compute_layout(uint64_t base, uint16_t queue_size, uint64_t data_size,
                       struct iso_layout *out)
{
    if (out == NULL || base % ISO_DATA_ALIGN != 0 || !queue_size_ok(queue_size) || data_size == 0 ||
        data_size % ISO_DATA_ALIGN != 0)
        return -EINVAL;
    struct iso_layout l = {.queue_size = queue_size, .desc_addr = base, .data_size = data_size};
    uint64_t v;
    if (checked_add_u64(base, virtq_desc_table_bytes(queue_size), &v) ||
        checked_align_up(v, ISO_RING_ALIGN, &l.avail_addr) ||
        checked_add_u64(l.avail_addr, virtq_avail_bytes(queue_size), &v) ||
        checked_align_up(v, ISO_RING_ALIGN, &l.used_addr) ||
        checked_add_u64(l.used_addr, virtq_used_bytes(queue_size), &v) ||
        checked_align_up(v, ISO_DATA_ALIGN, &l.data_addr) ||
        checked_add_u64(l.data_addr, data_size, &l.end))
        return -EOVERFLOW;
    *out = l;
    return 0;
}

/* ---- free lists, the allocation order and the bounce ring ---- */

/* Every record free, nothing in flight, the ring empty; keeps the failing state. */
static void forget_all(struct iso_queue *q)
{
    uint16_t n = q->layout.queue_size;
    for (uint32_t i = 0; i < n; i++) {
        q->reqs[i] = (struct iso_req){.link = (uint16_t)(i + 1u < n ? i + 1u : NONE)};
        q->segs[i] = (struct iso_seg){.next = (uint16_t)(i + 1u < n ? i + 1u : NONE)};
        q->by_head[i] = NONE;
    }
    q->free_req = 0;
    q->free_seg = 0;
    q->nr_free_seg = n;
    q->order_first = 0;
    q->order_count = 0;
    q->nr_inflight = 0;
    q->alloc_off = 0;
    q->bounce_used = 0;
    q->pending = false;
}

/* Takes @p k (>= 1, <= nr_free_seg) segment records, linked in order; returns the first. */
static uint16_t take_segs(struct iso_queue *q, unsigned k)
{
    uint16_t first = q->free_seg;
    uint16_t last = first;
    for (unsigned i = 1; i < k; i++)
        last = q->segs[last].next;
    q->free_seg = q->segs[last].next;
    q->segs[last].next = NONE;
    q->nr_free_seg -= k;
    return first;
}

static void give_segs(struct iso_queue *q, uint16_t first, unsigned k)
{
    uint16_t last = first;
    for (unsigned i = 1; i < k; i++)
        last = q->segs[last].next;
    q->segs[last].next = q->free_seg;
    q->free_seg = first;
    q->nr_free_seg += k;
}

static uint32_t seg_align(uint32_t len)
{
    if (len % 4096u == 0)
        return 4096u;
    if (len % 512u == 0)
        return 512u;
    return 64u;
}

/*
 * Bytes of a run holding segments iov[0..k) one after the other, each at the
 * alignment seg_align() gives it, when the run starts ISO_DATA_ALIGN-aligned. At
 * most 2^32 bytes of data plus under 4096 per segment: no overflow in 64 bits.
 */
static uint64_t run_bytes(const struct vq_iovec *iov, unsigned k)
{
    uint64_t off = 0;
    for (unsigned i = 0; i < k; i++) {
        uint32_t a = seg_align((uint32_t)iov[i].len);
        off = ((off + a - 1) & ~(uint64_t)(a - 1)) + iov[i].len;
    }
    return off;
}

/*
 * Finds room for a run of @p need bytes (0 < need <= data_size) after the newest run,
 * ISO_DATA_ALIGN-aligned, at the area's start when it does not fit before the end.
 * The padding (or the tail skipped) is charged to the run, so the live runs always
 * form one circular interval of bounce_used bytes ending at alloc_off, and a run
 * fits only when that interval plus the run stays within the area: no overlap.
 * Commits nothing; returns false when there is no room yet.
 */
static bool ring_fit(const struct iso_queue *q, uint64_t need, uint64_t *start, uint64_t *total)
{
    uint64_t cap = q->layout.data_size; /* a multiple of ISO_DATA_ALIGN */
    uint64_t off = q->alloc_off;        /* < cap */
    uint64_t at = (off + ISO_DATA_ALIGN - 1) & ~(uint64_t)(ISO_DATA_ALIGN - 1); /* <= cap */
    if (at > cap - need)
        at = cap; /* skip the tail: the run starts at 0 */
    uint64_t t = at - off + need;
    if (t > cap - q->bounce_used)
        return false;
    *start = at == cap ? 0 : at;
    *total = t;
    return true;
}

/*
 * The request is finished with: its segment records return at once, its bounce
 * space when every older request is finished too (the ring frees oldest first).
 */
static void req_finish(struct iso_queue *q, uint16_t r)
{
    struct iso_req *rq = &q->reqs[r];
    give_segs(q, rq->first_seg, (unsigned)rq->nr_readable + rq->nr_writable);
    if (rq->posted)
        q->by_head[rq->shadow_head] = NONE;
    rq->posted = false;
    rq->state = REQ_DONE;
    q->nr_inflight--;
    uint16_t n = q->layout.queue_size;
    while (q->order_count > 0) {
        uint16_t o = q->order[q->order_first];
        struct iso_req *oq = &q->reqs[o];
        if (oq->state != REQ_DONE)
            break;
        q->bounce_used -= oq->total;
        oq->state = REQ_FREE;
        oq->link = q->free_req;
        q->free_req = o;
        q->order_first = (q->order_first + 1u) % n;
        q->order_count--;
    }
    if (q->order_count == 0) {
        /* Empty: restart at 0 so the next run may use the whole area. */
        q->order_first = 0;
        q->alloc_off = 0;
    }
}

/* ---- the guest side ---- */

static int guest_error(struct iso_queue *q, int r)
{
    if (r != -EIO && r != -ENODEV)
        log_guest(LOG_WARN, "isolated queue: guest ring refused (%d): %s", r,
                  q->guest.broken_reason != NULL ? q->guest.broken_reason : "no reason given");
    return r;
}

/* Stages a used element; publishes the batch so far when the ring holds no more. */
static int guest_complete(struct iso_queue *q, uint16_t head, uint32_t len)
{
    int r = vq_add_used(&q->guest, head, len);
    if (r == -ENOSPC) {
        r = vq_publish_used(&q->guest);
        if (r == 0)
            r = vq_add_used(&q->guest, head, len);
    }
    return r;
}

static uint32_t call_fail(struct iso_queue *q, const struct vq_iovec *iov, unsigned nr,
                          uint64_t writable)
{
    uint32_t len = q->fail(q->fail_opaque, iov, nr, writable);
    q->stats.errors++;
    return len > writable ? (uint32_t)writable : len;
}

/* Completes the pending chain through the fail hook: 1, or a guest queue error. */
static int fail_pending(struct iso_queue *q)
{
    const struct vq_chain *c = &q->pending_chain;
    uint32_t len = call_fail(q, q->iov + c->nr_readable, c->nr_writable, c->writable_bytes);
    q->pending = false;
    int r = guest_complete(q, q->pending_head, len);
    return r < 0 ? r : 1;
}

static bool shadow_usable(const struct iso_queue *q)
{
    return q->attached && !q->shadow.broken;
}

/* Builds the shadow chain of request @p r in q->post from its segment records. */
static void build_post(struct iso_queue *q, const struct iso_req *rq)
{
    unsigned k = (unsigned)rq->nr_readable + rq->nr_writable;
    uint16_t s = rq->first_seg;
    for (unsigned i = 0; i < k; i++) {
        const struct iso_seg *sg = &q->segs[s];
        q->post[i] = (struct vq_seg){.addr = q->layout.data_addr + sg->off, .len = sg->len};
        s = sg->next;
    }
}

static int post_req(struct iso_queue *q, uint16_t r)
{
    struct iso_req *rq = &q->reqs[r];
    build_post(q, rq);
    uint16_t head;
    int e = vq_driver_add(&q->shadow, q->post, rq->nr_readable, rq->nr_writable, &head);
    if (e < 0)
        return e;
    rq->posted = true;
    rq->shadow_head = head;
    q->by_head[head] = r;
    return 0;
}

/*
 * Hands the pending chain to the backend, or fails it when it can never be posted.
 * Returns 1 when the chain is dealt with, 0 when it must wait for room (or for a
 * shadow ring), or a negative errno of the guest's queue.
 */
static int dispatch_pending(struct iso_queue *q)
{
    const struct vq_chain *c = &q->pending_chain;
    unsigned nr = c->nr_readable;
    unsigned k = nr + c->nr_writable;
    if (q->failing)
        return fail_pending(q);
    uint64_t need = run_bytes(q->iov, k);
    if (k == 0 || k > q->layout.queue_size || c->writable_bytes > UINT32_MAX ||
        need > q->layout.data_size) {
        log_guest(LOG_WARN,
                  "isolated queue: request of %u segments, %llu bytes cannot be posted "
                  "(%u descriptors, %llu bounce bytes): failed",
                  k, (unsigned long long)need, (unsigned)q->layout.queue_size,
                  (unsigned long long)q->layout.data_size);
        return fail_pending(q);
    }
    uint64_t start;
    uint64_t total;
    if (!shadow_usable(q) || k > q->nr_free_seg || q->free_req == NONE ||
        !ring_fit(q, need, &start, &total))
        return 0;

    /* Place the segments and copy the readable ones: the only read of their bytes. */
    uint64_t off = start;
    for (unsigned i = 0; i < k; i++) {
        uint32_t len = (uint32_t)q->iov[i].len;
        uint32_t a = seg_align(len);
        off = (off + a - 1) & ~(uint64_t)(a - 1);
        q->post[i] = (struct vq_seg){.addr = q->layout.data_addr + off, .len = len};
        if (i < nr)
            memcpy(q->data + off, q->iov[i].base, len);
        off += len;
    }
    uint16_t head;
    int e = vq_driver_add(&q->shadow, q->post, nr, c->nr_writable, &head);
    if (e < 0) {
        /* Cannot happen: room and segments were checked. Keep the chain pending. */
        log_guest(LOG_ERROR, "isolated queue: posting to the shadow ring failed (%d)", e);
        return 0;
    }

    uint16_t r = q->free_req;
    struct iso_req *rq = &q->reqs[r];
    q->free_req = rq->link;
    uint16_t first = take_segs(q, k);
    uint16_t s = first;
    for (unsigned i = 0; i < k; i++) {
        struct iso_seg *sg = &q->segs[s];
        sg->guest = q->iov[i].base;
        sg->off = q->post[i].addr - q->layout.data_addr;
        sg->len = q->post[i].len;
        s = sg->next;
    }
    *rq = (struct iso_req){
        .total = total,
        .writable = c->writable_bytes,
        .guest_head = q->pending_head,
        .shadow_head = head,
        .first_seg = first,
        .nr_readable = (uint16_t)nr,
        .nr_writable = (uint16_t)c->nr_writable,
        .link = NONE,
        .state = REQ_INFLIGHT,
        .posted = true,
    };
    q->by_head[head] = r;
    q->order[(q->order_first + q->order_count) % q->layout.queue_size] = r;
    q->order_count++;
    q->alloc_off = start + need == q->layout.data_size ? 0 : start + need;
    q->bounce_used += total;
    q->nr_inflight++;
    q->stats.bytes_in += c->readable_bytes;
    q->pending = false;
    return 1;
}

/*
 * The device loop of virtqueue.h on the guest's queue: take chains until the ring is
 * empty with kicks re-armed, or until one must wait for room; guest kicks then stay
 * suppressed, since the next completion resumes the queue anyway.
 */
static int take_guest(struct iso_queue *q)
{
    if (!q->failing && !shadow_usable(q))
        return 0; /* requests wait in the guest's ring for a backend */
    int r = vq_avail_notify_disable(&q->guest);
    if (r < 0)
        return guest_error(q, r);
    for (;;) {
        for (;;) {
            if (!q->pending) {
                r = vq_pop_avail(&q->guest, &q->pending_head);
                if (r < 0)
                    return guest_error(q, r);
                if (r == 0)
                    break;
                /* iov holds guest_max_size >= Queue Size segments: no -ENOBUFS. */
                r = vq_walk_chain(&q->guest, q->pending_head, VQ_ACCESS_ANY, q->iov,
                                  q->guest_max_size, &q->pending_chain);
                if (r < 0)
                    return guest_error(q, r);
                q->pending = true;
                q->stats.requests++;
            }
            r = dispatch_pending(q);
            if (r < 0)
                return guest_error(q, r);
            if (r == 0)
                return 0;
        }
        if (q->polling)
            return 0; /* the caller looks again soon; kicks stay off meanwhile */
        r = vq_avail_notify_enable(&q->guest);
        if (r < 0)
            return guest_error(q, r);
        if (r == 0)
            return 0;
    }
}

/* Publishes the guest's used batch and decides both notifications, once per call. */
static void finish(struct iso_queue *q, unsigned *flags)
{
    if (q->started) {
        (void)vq_publish_used(&q->guest); /* fails only on a broken guest queue */
        if (vq_should_notify(&q->guest)) {
            *flags |= ISO_NOTIFY_GUEST;
            q->stats.guest_interrupts++;
        }
    }
    if (shadow_usable(q) && vq_driver_should_kick(&q->shadow)) {
        *flags |= ISO_KICK_BACKEND;
        q->stats.backend_kicks++;
    }
}

/* ---- the backend side ---- */

/*
 * Copies back what the backend reported for shadow head @p id and completes the guest
 * chain. @p len was checked against the writable space offered, which is the sum of
 * the writable segment records, so the copy ends inside them.
 */
static int complete_req(struct iso_queue *q, uint16_t id, uint32_t len)
{
    uint16_t r = q->by_head[id];
    if (r == NONE)
        return -EREMOTEIO; /* cannot happen: the driver side tracks the same heads */
    struct iso_req *rq = &q->reqs[r];
    uint32_t left = len;
    uint16_t s = rq->first_seg;
    for (unsigned i = 0; i < rq->nr_readable; i++)
        s = q->segs[s].next;
    for (unsigned i = 0; i < rq->nr_writable && left > 0; i++) {
        const struct iso_seg *sg = &q->segs[s];
        uint32_t n = left < sg->len ? left : sg->len;
        memcpy(sg->guest, q->data + sg->off, n);
        left -= n;
        s = sg->next;
    }
    q->stats.bytes_out += len;
    uint16_t head = rq->guest_head;
    req_finish(q, r);
    /* A broken guest queue takes no completion; it is reset as a whole anyway. */
    (void)guest_complete(q, head, len);
    return 0;
}

/* The driver loop on the shadow queue: drain, re-arm, drain what came meanwhile. */
static int drain_used(struct iso_queue *q)
{
    int r = vq_driver_used_notify_disable(&q->shadow);
    if (r < 0)
        return r;
    for (;;) {
        uint16_t id;
        uint32_t len;
        while ((r = vq_driver_get_used(&q->shadow, &id, &len)) == 1) {
            r = complete_req(q, id, len);
            if (r < 0)
                return r;
        }
        if (r < 0)
            return r;
        if (q->polling)
            return 0;
        r = vq_driver_used_notify_enable(&q->shadow);
        if (r <= 0)
            return r;
    }
}

/* ---- the API ---- */

/* Field by field: the structure has padding, which memcmp() would compare too. */
static bool same_layout(const struct iso_layout *a, const struct iso_layout *b)
{
    return a->queue_size == b->queue_size && a->desc_addr == b->desc_addr &&
           a->avail_addr == b->avail_addr && a->used_addr == b->used_addr &&
           a->data_addr == b->data_addr && a->data_size == b->data_size && a->end == b->end;
}

int iso_queue_init(struct iso_queue *q, const struct iso_params *p)
{
    memset(q, 0, sizeof(*q));
    const struct iso_layout *l = &p->layout;
    struct iso_layout want;
    if (p->bounce == NULL || p->fail == NULL || p->storage == NULL || p->guest_max_size == 0 ||
        p->guest_max_size > VIRTQ_MAX_SIZE || (uintptr_t)p->storage % alignof(max_align_t) != 0 ||
        iso_compute_layout(l->desc_addr, l->queue_size, l->data_size, &want) < 0 ||
        !same_layout(&want, l))
        return -EINVAL;
    struct storage_map m;
    map_storage(p->guest_max_size, l->queue_size, &m);
    if (p->storage_bytes < m.total)
        return -EINVAL;
    uint8_t *area = guest_mem_ptr(p->bounce, l->desc_addr, l->end - l->desc_addr);
    if (area == NULL)
        return -EFAULT;

    q->bounce = p->bounce;
    q->layout = *l;
    q->data = area + (l->data_addr - l->desc_addr);
    q->fail = p->fail;
    q->fail_opaque = p->fail_opaque;
    q->guest_max_size = p->guest_max_size;
    uint8_t *st = p->storage;
    q->slots = (struct vq_driver_slot *)(void *)(st + m.slots);
    q->reqs = (struct iso_req *)(void *)(st + m.reqs);
    q->segs = (struct iso_seg *)(void *)(st + m.segs);
    q->post = (struct vq_seg *)(void *)(st + m.post);
    q->iov = (struct vq_iovec *)(void *)(st + m.iov);
    q->order = (uint16_t *)(void *)(st + m.order);
    q->by_head = (uint16_t *)(void *)(st + m.by_head);
    forget_all(q);
    return 0;
}

int iso_guest_start(struct iso_queue *q, const struct guest_mem *mem, const struct vq_config *cfg)
{
    if (q->started || cfg->size > q->guest_max_size)
        return -EINVAL;
    int r = vq_enable(&q->guest, mem, cfg);
    if (r < 0)
        return r;
    q->started = true;
    return 0;
}

void iso_stop(struct iso_queue *q)
{
    vq_disable(&q->guest);
    vq_disable(&q->shadow);
    q->started = false;
    q->attached = false;
    forget_all(q);
}

void iso_detach(struct iso_queue *q)
{
    vq_disable(&q->shadow);
    q->attached = false;
}

int iso_reset_shadow(struct iso_queue *q, uint64_t features)
{
    const struct iso_layout *l = &q->layout;
    struct vq_config cfg = {
        .size = l->queue_size,
        .desc_addr = l->desc_addr,
        .avail_addr = l->avail_addr,
        .used_addr = l->used_addr,
        .features = features,
    };
    q->attached = false;
    /* No stale descriptor for the new backend to look at; the rings are zeroed below. */
    memset(q->data - (l->data_addr - l->desc_addr), 0, virtq_desc_table_bytes(l->queue_size));
    int r = vq_driver_enable(&q->shadow, q->bounce, &cfg, q->slots, l->queue_size);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < l->queue_size; i++) {
        q->by_head[i] = NONE;
        q->reqs[i].posted = false;
    }
    q->attached = true;
    q->failing = false;
    return 0;
}

int iso_resubmit_inflight(struct iso_queue *q, unsigned *flags)
{
    *flags = 0;
    if (!q->started || !shadow_usable(q))
        return -ENODEV;
    int r = 0;
    for (uint32_t j = 0; j < q->order_count && r == 0; j++) {
        uint16_t id = q->order[(q->order_first + j) % q->layout.queue_size];
        struct iso_req *rq = &q->reqs[id];
        if (rq->state != REQ_INFLIGHT || rq->posted)
            continue;
        /* Readable bytes again from the guest's buffers as walked at the pop. */
        uint16_t s = rq->first_seg;
        for (unsigned i = 0; i < rq->nr_readable; i++) {
            const struct iso_seg *sg = &q->segs[s];
            memcpy(q->data + sg->off, sg->guest, sg->len);
            q->stats.bytes_in += sg->len;
            s = sg->next;
        }
        /* A fresh ring has a descriptor for each segment record: no -ENOSPC. */
        r = post_req(q, id);
        if (r == 0)
            q->stats.resubmitted++;
    }
    if (r == 0)
        r = take_guest(q);
    finish(q, flags);
    return r;
}

int iso_guest_kick(struct iso_queue *q, unsigned *flags)
{
    *flags = 0;
    if (!q->started)
        return -ENODEV;
    int r = take_guest(q);
    finish(q, flags);
    return r;
}

/* Takes the backend's completions; -EREMOTEIO when it broke the shadow ring. */
static int backend_side(struct iso_queue *q)
{
    if (q->shadow.broken)
        return -EREMOTEIO;
    int r = drain_used(q);
    if (r < 0) {
        log_guest(LOG_WARN, "isolated queue: backend broke the shadow ring (%d): %s", r,
                  q->shadow.broken_reason != NULL ? q->shadow.broken_reason : "unknown head");
        return -EREMOTEIO;
    }
    return 0;
}

int iso_backend_call(struct iso_queue *q, unsigned *flags)
{
    *flags = 0;
    if (!q->started)
        return -ENODEV;
    if (!q->attached)
        return 0;
    int r = backend_side(q);
    if (r == 0 && q->pending)
        r = take_guest(q);
    finish(q, flags);
    return r;
}

void iso_set_polling(struct iso_queue *q, bool on)
{
    q->polling = on;
}

bool iso_poll_ready(struct iso_queue *q)
{
    if (!q->started)
        return false;
    if (q->attached && vq_driver_used_peek(&q->shadow))
        return true;
    /* A pending chain waits for a completion, which the line above sees first. */
    return !q->pending && (q->failing || shadow_usable(q)) && vq_avail_peek(&q->guest);
}

int iso_poll(struct iso_queue *q, unsigned *flags)
{
    *flags = 0;
    if (!q->started)
        return -ENODEV;
    int r = q->attached ? backend_side(q) : 0;
    if (r == 0)
        r = take_guest(q);
    finish(q, flags);
    return r;
}

int iso_fail_inflight(struct iso_queue *q, unsigned *flags)
{
    *flags = 0;
    if (!q->started)
        return -ENODEV;
    /* The pending chain first: its segments are in iov, which the others need next. */
    if (q->pending)
        (void)fail_pending(q);
    /* The oldest request is always in flight: finished ones leave the front at once. */
    while (q->order_count > 0) {
        uint16_t r = q->order[q->order_first];
        struct iso_req *rq = &q->reqs[r];
        uint16_t s = rq->first_seg;
        for (unsigned i = 0; i < rq->nr_readable; i++)
            s = q->segs[s].next;
        for (unsigned i = 0; i < rq->nr_writable; i++) {
            q->iov[i] = (struct vq_iovec){.base = q->segs[s].guest, .len = q->segs[s].len};
            s = q->segs[s].next;
        }
        uint32_t len = call_fail(q, q->iov, rq->nr_writable, rq->writable);
        uint16_t head = rq->guest_head;
        req_finish(q, r);
        (void)guest_complete(q, head, len);
    }
    vq_disable(&q->shadow);
    q->attached = false;
    q->failing = true;
    int r = take_guest(q);
    finish(q, flags);
    return r;
}

unsigned iso_inflight(const struct iso_queue *q)
{
    return q->nr_inflight;
}
