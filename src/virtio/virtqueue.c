/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Split virtqueues, written from the virtio 1.2 specification (§2.7).
 *
 * The rule that shapes this file: a field the peer can write is loaded once,
 * into a local, through load16/32/64() or load_desc(), and only that local is
 * checked and used. Ring indices we own are kept in struct vq and never read
 * back from shared memory, since the peer could have rewritten them.
 */
#include "virtio/virtqueue.h"

#include <errno.h>
#include <string.h>

/* Rings are little-endian; these convert both ways. */
static inline uint16_t le16(uint16_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap16(v);
#else
    return v;
#endif
}

static inline uint32_t le32(uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap32(v);
#else
    return v;
#endif
}

static inline uint64_t le64(uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

/*
 * Loads of peer-written fields. Atomic (relaxed) so the compiler emits exactly
 * one load and cannot fetch the field again later; the pointer is aligned for
 * the field's size (checked at enable for rings and the descriptor table).
 */
static uint16_t load16(struct vq *vq, const uint8_t *p)
{
    vq->loads++;
    return le16(__atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED));
}

static uint32_t load32(struct vq *vq, const uint8_t *p)
{
    vq->loads++;
    return le32(__atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_RELAXED));
}

static uint64_t load64(struct vq *vq, const uint8_t *p)
{
    vq->loads++;
    return le64(__atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED));
}

/* Stores into fields we own; atomic so the peer never sees a torn index. */
static void store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, le16(v), __ATOMIC_RELAXED);
}

static void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, le32(v), __ATOMIC_RELAXED);
}

static void store64(uint8_t *p, uint64_t v)
{
    __atomic_store_n((uint64_t *)(void *)p, le64(v), __ATOMIC_RELAXED);
}

_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc is 16 bytes");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "virtq_used_elem is 8 bytes");

/** A descriptor as copied out of shared memory: the only copy the walker uses. */
struct desc {
    uint64_t addr;  /**< Buffer or indirect-table address, as loaded. */
    uint32_t len;   /**< Length, as loaded. */
    uint16_t flags; /**< VIRTQ_DESC_F_* bits, as loaded. */
    uint16_t next;  /**< Next index, as loaded (meaningful with NEXT). */
};

static void load_desc(struct vq *vq, const uint8_t *p, struct desc *d)
{
    if (((uintptr_t)p & 7u) == 0) {
        d->addr = load64(vq, p);
        d->len = load32(vq, p + 8);
        d->flags = load16(vq, p + 12);
        d->next = load16(vq, p + 14);
        return;
    }
    /* The spec gives indirect tables no alignment: read each byte once, assemble. */
    const volatile uint8_t *vp = p;
    uint8_t b[sizeof(struct virtq_desc)];
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = vp[i];
    vq->loads += 4;
    uint64_t addr = 0;
    for (unsigned i = 0; i < 8; i++)
        addr |= (uint64_t)b[i] << (8 * i);
    d->addr = addr;
    d->len = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    d->flags = (uint16_t)(b[12] | b[13] << 8);
    d->next = (uint16_t)(b[14] | b[15] << 8);
}

static int vq_break(struct vq *vq, int err, const char *reason)
{
    vq->broken = true;
    vq->broken_reason = reason;
    return err;
}

/* The common gate of every ring operation. */
static int check_side(const struct vq *vq, bool driver)
{
    if (!vq->enabled)
        return -ENODEV;
    if (vq->broken)
        return -EIO;
    if (vq->driver != driver)
        return -EINVAL;
    return 0;
}

static bool host_aligned(const void *p, uintptr_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* Validate the set-up and cache the rings' host addresses; the queue stays disabled. */
static int setup(struct vq *vq, const struct guest_mem *mem, const struct vq_config *cfg)
{
    *vq = (struct vq){0};
    uint32_t size = cfg->size;
    if (size == 0 || (size & (size - 1)) != 0 || size > VIRTQ_MAX_SIZE)
        return -EINVAL;
    if (cfg->desc_addr % VIRTQ_DESC_ALIGN != 0 || cfg->avail_addr % VIRTQ_AVAIL_ALIGN != 0 ||
        cfg->used_addr % VIRTQ_USED_ALIGN != 0)
        return -EINVAL;
    uint8_t *desc = guest_mem_ptr(mem, cfg->desc_addr, virtq_desc_table_bytes(size));
    uint8_t *avail = guest_mem_ptr(mem, cfg->avail_addr, virtq_avail_bytes(size));
    uint8_t *used = guest_mem_ptr(mem, cfg->used_addr, virtq_used_bytes(size));
    if (desc == NULL || avail == NULL || used == NULL)
        return -EFAULT;
    /* Our atomic loads need the host addresses aligned like the guest ones. */
    if (!host_aligned(desc, VIRTQ_DESC_ALIGN) || !host_aligned(avail, VIRTQ_AVAIL_ALIGN) ||
        !host_aligned(used, VIRTQ_USED_ALIGN))
        return -EINVAL;
    vq->mem = mem;
    vq->desc = desc;
    vq->avail = avail;
    vq->used = used;
    vq->size = (uint16_t)size;
    vq->event_idx = (cfg->features >> VIRTIO_F_EVENT_IDX) & 1u;
    vq->indirect = (cfg->features >> VIRTIO_F_INDIRECT_DESC) & 1u;
    return 0;
}

int vq_enable(struct vq *vq, const struct guest_mem *mem, const struct vq_config *cfg)
{
    int r = setup(vq, mem, cfg);
    if (r < 0)
        return r;
    vq->last_avail = cfg->last_avail_idx;
    vq->avail_shadow = cfg->last_avail_idx;
    vq->used_idx = cfg->used_idx;
    vq->signalled_used = cfg->used_idx;
    vq->enabled = true;
    return 0;
}

void vq_disable(struct vq *vq)
{
    vq->enabled = false;
}

static uint16_t ring_slot(const struct vq *vq, uint16_t idx)
{
    return idx & (uint16_t)(vq->size - 1u);
}

/*
 * Load avail idx once. Called only when every entry seen before is consumed
 * (last_avail == avail_shadow), so the index may move by at most the queue size
 * past last_avail: the ring cannot hold more heads. A decrement shows up as a
 * huge distance and is refused the same way. Returns whether entries are available.
 */
static int refresh_avail(struct vq *vq)
{
    uint16_t idx = load16(vq, vq->avail + VIRTQ_RING_IDX_OFF);
    if ((uint16_t)(idx - vq->last_avail) > vq->size)
        return vq_break(vq, -EPROTO, "avail idx ran more than the queue size ahead");
    vq->avail_shadow = idx;
    /* The ring entries and descriptors published by idx are read after it. */
    vq_barrier_acquire();
    return idx != vq->last_avail;
}

bool vq_avail_peek(struct vq *vq)
{
    if (check_side(vq, false) < 0)
        return false;
    if (vq->last_avail != vq->avail_shadow)
        return true;
    return load16(vq, vq->avail + VIRTQ_RING_IDX_OFF) != vq->last_avail;
}

int vq_pop_avail(struct vq *vq, uint16_t *head)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (vq->last_avail == vq->avail_shadow) {
        r = refresh_avail(vq);
        if (r <= 0)
            return r;
    }
    uint64_t off = VIRTQ_RING_ENTRIES_OFF + 2u * ring_slot(vq, vq->last_avail);
    uint16_t h = load16(vq, vq->avail + off);
    if (h >= vq->size)
        return vq_break(vq, -EBADMSG, "avail ring entry is not a descriptor index");
    vq->last_avail++;
    *head = h;
    return 1;
}

/** The state of one vq_walk_chain() call. */
struct walk {
    enum vq_access access;  /**< What the caller accepts. */
    struct vq_iovec *iov;   /**< The caller's segment array. */
    unsigned iov_max;       /**< Its capacity. */
    struct vq_chain *chain; /**< The result being built. */
    bool seen_writable;     /**< By flags, so zero-length descriptors count too. */
    bool overflow;          /**< A segment did not fit the caller's array. */
};

/* Per-buffer checks of vq_walk_chain(); records the segment when there is room. */
static int walk_buffer(struct vq *vq, const struct desc *d, struct walk *w)
{
    struct vq_chain *chain = w->chain;
    bool writable = (d->flags & VIRTQ_DESC_F_WRITE) != 0;
    if (writable && w->access == VQ_ACCESS_READABLE_ONLY)
        return vq_break(vq, -EACCES, "device-writable buffer where only readable ones are allowed");
    if (!writable && w->access == VQ_ACCESS_WRITABLE_ONLY)
        return vq_break(vq, -EACCES, "device-readable buffer where only writable ones are allowed");
    if (!writable && w->seen_writable)
        return vq_break(vq, -EBADMSG, "device-readable buffer after a device-writable one");
    w->seen_writable |= writable;
    if (d->len == 0)
        return 0; /* no byte to access: nothing to translate or record */
    void *p = guest_mem_ptr(vq->mem, d->addr, d->len);
    if (p == NULL)
        return vq_break(vq, -EFAULT, "buffer outside memory or wrapping 2^64");
    /* Each total stays <= 2^32, so this sum cannot wrap. */
    if (chain->readable_bytes + chain->writable_bytes + d->len > VIRTQ_MAX_CHAIN_BYTES)
        return vq_break(vq, -E2BIG, "chain longer than 2^32 bytes");
    if (writable)
        chain->writable_bytes += d->len;
    else
        chain->readable_bytes += d->len;
    unsigned n = chain->nr_readable + chain->nr_writable;
    if (n >= w->iov_max) {
        w->overflow = true; /* keep walking: the rest of the chain is still checked */
        return 0;
    }
    w->iov[n] = (struct vq_iovec){.base = p, .len = d->len};
    if (writable)
        chain->nr_writable++;
    else
        chain->nr_readable++;
    return 0;
}

/* Checks a descriptor that names an indirect table and translates the table. */
static int enter_indirect(struct vq *vq, const struct desc *d, bool in_indirect,
                          const uint8_t **table, uint32_t *table_len)
{
    if (!vq->indirect)
        return vq_break(vq, -EBADMSG, "INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC");
    if (in_indirect)
        return vq_break(vq, -EBADMSG, "INDIRECT descriptor inside an indirect table");
    if (d->flags & VIRTQ_DESC_F_NEXT)
        return vq_break(vq, -EBADMSG, "INDIRECT descriptor with NEXT");
    if (d->len == 0 || d->len % sizeof(struct virtq_desc) != 0)
        return vq_break(vq, -EBADMSG, "indirect table length is 0 or not a multiple of 16");
    uint32_t n = d->len / (uint32_t)sizeof(struct virtq_desc);
    if (n > vq->size)
        return vq_break(vq, -E2BIG, "indirect table longer than the queue");
    const uint8_t *t = guest_mem_ptr(vq->mem, d->addr, d->len);
    if (t == NULL)
        return vq_break(vq, -EFAULT, "indirect table outside memory or wrapping 2^64");
    *table = t;
    *table_len = n;
    return 0;
}

int vq_walk_chain(struct vq *vq, uint16_t head, enum vq_access access, struct vq_iovec *iov,
                  unsigned iov_max, struct vq_chain *chain)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (head >= vq->size)
        return -EINVAL;
    *chain = (struct vq_chain){0};
    const uint8_t *table = vq->desc;
    uint32_t table_len = vq->size; /* descriptors in the table being walked */
    uint32_t visited = 0;          /* descriptors visited in that table */
    bool in_indirect = false;
    struct walk w = {.access = access, .iov = iov, .iov_max = iov_max, .chain = chain};
    uint32_t i = head;
    for (;;) {
        /* More visits than the table has entries means one was visited twice. */
        if (++visited > table_len)
            return vq_break(vq, -ELOOP, "descriptor chain loops");
        struct desc d;
        load_desc(vq, table + (size_t)i * sizeof(struct virtq_desc), &d);
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            r = enter_indirect(vq, &d, in_indirect, &table, &table_len);
            if (r < 0)
                return r;
            in_indirect = true;
            visited = 0;
            i = 0;
            continue;
        }
        if (++chain->nr_desc > vq->size)
            return vq_break(vq, -E2BIG, "descriptor chain longer than the queue");
        r = walk_buffer(vq, &d, &w);
        if (r < 0)
            return r;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        if (d.next >= table_len)
            return vq_break(vq, -EBADMSG, "next descriptor index outside its table");
        i = d.next;
    }
    return w.overflow ? -ENOBUFS : 0;
}

int vq_add_used(struct vq *vq, uint16_t head, uint32_t len)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (head >= vq->size)
        return -EINVAL;
    if (vq->used_pending >= vq->size)
        return -ENOSPC;
    uint16_t slot = ring_slot(vq, (uint16_t)(vq->used_idx + vq->used_pending));
    uint8_t *e = vq->used + VIRTQ_RING_ENTRIES_OFF + (size_t)slot * sizeof(struct virtq_used_elem);
    store32(e, head);
    store32(e + 4, len);
    vq->used_pending++;
    return 0;
}

int vq_publish_used(struct vq *vq)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (vq->used_pending == 0)
        return 0;
    /* The entries (and the data written into the buffers) before the index. */
    vq_barrier_release();
    vq->used_idx = (uint16_t)(vq->used_idx + vq->used_pending);
    vq->used_pending = 0;
    store16(vq->used + VIRTQ_RING_IDX_OFF, vq->used_idx);
    return 0;
}

int vq_push_used(struct vq *vq, uint16_t head, uint32_t len)
{
    int r = vq_add_used(vq, head, len);
    if (r < 0)
        return r;
    return vq_publish_used(vq);
}

bool vq_should_notify(struct vq *vq)
{
    if (check_side(vq, false) < 0)
        return false;
    /* Our used idx store must be visible before we read the driver's threshold. */
    vq_barrier_full();
    uint16_t old = vq->signalled_used;
    uint16_t now = vq->used_idx;
    vq->signalled_used = now;
    if (vq->event_idx) {
        uint16_t event = load16(vq, vq->avail + virtq_used_event_off(vq->size));
        return virtq_need_event(event, now, old);
    }
    if (now == old)
        return false;
    return (load16(vq, vq->avail + VIRTQ_RING_FLAGS_OFF) & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
}

void vq_set_avail_event(struct vq *vq, uint16_t idx)
{
    if (check_side(vq, false) < 0 || !vq->event_idx)
        return;
    store16(vq->used + virtq_avail_event_off(vq->size), idx);
}

int vq_avail_notify_disable(struct vq *vq)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (!vq->event_idx)
        store16(vq->used + VIRTQ_RING_FLAGS_OFF, VIRTQ_USED_F_NO_NOTIFY);
    return 0;
}

int vq_avail_notify_enable(struct vq *vq)
{
    int r = check_side(vq, false);
    if (r < 0)
        return r;
    if (vq->event_idx)
        store16(vq->used + virtq_avail_event_off(vq->size), vq->avail_shadow);
    else
        store16(vq->used + VIRTQ_RING_FLAGS_OFF, 0);
    /* The request must be visible before we look at avail idx again. */
    vq_barrier_full();
    if (vq->last_avail != vq->avail_shadow)
        return 1;
    return refresh_avail(vq);
}

int vq_driver_enable(struct vq *vq, const struct guest_mem *mem, const struct vq_config *cfg,
                     struct vq_driver_slot *slots, size_t nr_slots)
{
    if (cfg->last_avail_idx != 0 || cfg->used_idx != 0 || slots == NULL || nr_slots < cfg->size)
        return -EINVAL;
    int r = setup(vq, mem, cfg);
    if (r < 0)
        return r;
    memset(vq->avail, 0, virtq_avail_bytes(vq->size));
    memset(vq->used, 0, virtq_used_bytes(vq->size));
    for (uint32_t i = 0; i < vq->size; i++)
        slots[i] = (struct vq_driver_slot){.next = (uint16_t)(i + 1u)};
    vq->slots = slots;
    vq->free_head = 0;
    vq->nr_free = vq->size;
    vq->driver = true;
    vq->enabled = true;
    return 0;
}

int vq_driver_add(struct vq *vq, const struct vq_seg *segs, unsigned nr_readable,
                  unsigned nr_writable, uint16_t *head)
{
    int r = check_side(vq, true);
    if (r < 0)
        return r;
    if (segs == NULL || nr_readable + (uint64_t)nr_writable == 0)
        return -EINVAL;
    if (nr_readable + (uint64_t)nr_writable > vq->nr_free)
        return -ENOSPC;
    unsigned n = nr_readable + nr_writable;
    uint64_t writable = 0;
    for (unsigned k = 0; k < n; k++) {
        if (segs[k].len != 0 && guest_mem_ptr(vq->mem, segs[k].addr, segs[k].len) == NULL)
            return -EFAULT;
        if (k >= nr_readable)
            writable += segs[k].len;
    }
    if (writable > UINT32_MAX)
        return -E2BIG;

    /* The chain is the first n descriptors of the private free list. */
    uint16_t h = vq->free_head;
    uint16_t d = h;
    for (unsigned k = 0; k < n; k++) {
        bool last = k + 1 == n;
        uint16_t flags = (uint16_t)((k >= nr_readable ? VIRTQ_DESC_F_WRITE : 0u) |
                                    (last ? 0u : VIRTQ_DESC_F_NEXT));
        uint8_t *p = vq->desc + (size_t)d * sizeof(struct virtq_desc);
        store64(p, segs[k].addr);
        store32(p + 8, segs[k].len);
        store16(p + 12, flags);
        store16(p + 14, last ? 0 : vq->slots[d].next);
        if (!last)
            d = vq->slots[d].next;
    }
    vq->free_head = vq->slots[d].next;
    vq->nr_free = (uint16_t)(vq->nr_free - n);
    vq->slots[h].count = (uint16_t)n;
    vq->slots[h].writable = (uint32_t)writable;
    vq->in_flight++;

    store16(vq->avail + VIRTQ_RING_ENTRIES_OFF + 2u * ring_slot(vq, vq->avail_idx), h);
    /* Descriptors and ring entry before the index that publishes them. */
    vq_barrier_release();
    vq->avail_idx++;
    store16(vq->avail + VIRTQ_RING_IDX_OFF, vq->avail_idx);
    *head = h;
    return 0;
}

bool vq_driver_should_kick(struct vq *vq)
{
    if (check_side(vq, true) < 0)
        return false;
    /* Our avail idx store must be visible before we read the device's threshold. */
    vq_barrier_full();
    uint16_t old = vq->kicked_avail;
    uint16_t now = vq->avail_idx;
    vq->kicked_avail = now;
    if (vq->event_idx) {
        uint16_t event = load16(vq, vq->used + virtq_avail_event_off(vq->size));
        return virtq_need_event(event, now, old);
    }
    if (now == old)
        return false;
    return (load16(vq, vq->used + VIRTQ_RING_FLAGS_OFF) & VIRTQ_USED_F_NO_NOTIFY) == 0;
}

/*
 * Load used idx once. Called only when every entry seen before is consumed
 * (last_used == used_shadow); each used entry completes one chain in flight, so
 * the index can move forward by at most the number of chains in flight.
 */
static int refresh_used(struct vq *vq)
{
    uint16_t idx = load16(vq, vq->used + VIRTQ_RING_IDX_OFF);
    if ((uint16_t)(idx - vq->last_used) > vq->in_flight)
        return vq_break(vq, -EPROTO, "used idx ran ahead of the chains in flight");
    vq->used_shadow = idx;
    /* The used entries published by idx are read after it. */
    vq_barrier_acquire();
    return idx != vq->last_used;
}

bool vq_driver_used_peek(struct vq *vq)
{
    if (check_side(vq, true) < 0)
        return false;
    if (vq->last_used != vq->used_shadow)
        return true;
    return load16(vq, vq->used + VIRTQ_RING_IDX_OFF) != vq->last_used;
}

int vq_driver_get_used(struct vq *vq, uint16_t *id, uint32_t *len)
{
    int r = check_side(vq, true);
    if (r < 0)
        return r;
    if (vq->last_used == vq->used_shadow) {
        r = refresh_used(vq);
        if (r <= 0)
            return r;
    }
    const uint8_t *e = vq->used + VIRTQ_RING_ENTRIES_OFF +
                       (size_t)ring_slot(vq, vq->last_used) * sizeof(struct virtq_used_elem);
    uint32_t eid = load32(vq, e);
    uint32_t elen = load32(vq, e + 4);
    if (eid >= vq->size)
        return vq_break(vq, -EBADMSG, "used id is not a descriptor index");
    struct vq_driver_slot *s = &vq->slots[eid];
    if (s->count == 0)
        return vq_break(vq, -EBADMSG, "used id is not a chain in flight");
    if (elen > s->writable)
        return vq_break(vq, -EMSGSIZE, "used len larger than the writable space offered");

    /* Give the chain's descriptors back, following our private links. */
    uint16_t last = (uint16_t)eid;
    for (unsigned k = 1; k < s->count; k++)
        last = vq->slots[last].next;
    vq->slots[last].next = vq->free_head;
    vq->free_head = (uint16_t)eid;
    vq->nr_free = (uint16_t)(vq->nr_free + s->count);
    s->count = 0;
    s->writable = 0;
    vq->in_flight--;
    vq->last_used++;
    *id = (uint16_t)eid;
    *len = elen;
    return 1;
}

int vq_driver_used_notify_disable(struct vq *vq)
{
    int r = check_side(vq, true);
    if (r < 0)
        return r;
    if (!vq->event_idx)
        store16(vq->avail + VIRTQ_RING_FLAGS_OFF, VIRTQ_AVAIL_F_NO_INTERRUPT);
    return 0;
}

int vq_driver_used_notify_enable(struct vq *vq)
{
    int r = check_side(vq, true);
    if (r < 0)
        return r;
    if (vq->event_idx)
        store16(vq->avail + virtq_used_event_off(vq->size), vq->used_shadow);
    else
        store16(vq->avail + VIRTQ_RING_FLAGS_OFF, 0);
    vq_barrier_full();
    if (vq->last_used != vq->used_shadow)
        return 1;
    return refresh_used(vq);
}
