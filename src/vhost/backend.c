/* SPDX-License-Identifier: BSD-2-Clause */
#include "vhost/backend.h"

#include "core/checked.h"
#include "core/log.h"
#include "vhost/vhost_user_msg.h"
#include "virtio/virtio_ring.h"
#ifdef BULKHEAD_FAULTS
#include "vhost/faults.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(VHOST_BE_MAX_QUEUES <= 64, "process_pending has one bit per queue");
_Static_assert(VHOST_BE_MAX_QUEUES <= VHOST_USER_MAX_QUEUES, "queue index fits the protocol");
_Static_assert(GUEST_MEM_MAX_REGIONS >= VHOST_USER_MAX_MEM_REGIONS,
               "a guest_mem view holds a whole memory table");

#define BIT(n) (1ull << (n))

static uint64_t offered_features(const struct vhost_be *be)
{
    return be->dev->features | BIT(VHOST_USER_F_PROTOCOL_FEATURES);
}

static uint64_t offered_protocol(const struct vhost_be *be)
{
    uint64_t pf = BIT(VHOST_USER_PROTOCOL_F_MQ) | BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                  BIT(VHOST_USER_PROTOCOL_F_RESET_DEVICE);
    if (be->dev->get_config != NULL)
        pf |= BIT(VHOST_USER_PROTOCOL_F_CONFIG);
    return pf;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Eventfd write that never waits: a full counter already means "notified". */
static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_guest(LOG_WARN, "vhost-user backend: eventfd write: %s", strerror(errno));
}

/* The frontend shares these descriptors' open files; only non-blocking use is safe. */
static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int vhost_be_init(struct vhost_be *be, int sock, const struct vhost_be_device *dev)
{
    if (dev == NULL || dev->process_queue == NULL || dev->nr_queues == 0 ||
        dev->nr_queues > VHOST_BE_MAX_QUEUES || dev->config_size > VHOST_USER_CONFIG_MAX ||
        (dev->features & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) != 0 || sock < 0)
        return -EINVAL;
    memset(be, 0, sizeof(*be));
    be->sock = sock;
    be->dev = dev;
    be->timeout_ns = VHOST_BE_DEFAULT_TIMEOUT_NS;
    for (unsigned i = 0; i < VHOST_BE_MAX_QUEUES; i++) {
        be->queues[i].kick_fd = -1;
        be->queues[i].call_fd = -1;
        be->queues[i].err_fd = -1;
    }
#ifdef BULKHEAD_FAULTS
    faults_connection(sock);
#endif
    return 0;
}

static bool ring_enabled(const struct vhost_be *be, const struct vhost_be_queue *q)
{
    return q->enabled || !be->protocol_negotiated;
}

static void process(struct vhost_be *be, unsigned index)
{
    struct vhost_be_queue *q = &be->queues[index];
    if (!q->started || !ring_enabled(be, q) || !q->vq.enabled || q->vq.broken)
        return;
    int r = be->dev->process_queue(be->dev->opaque, be, index, &q->vq);
    if (r < 0 && !q->vq.broken)
        log_guest(LOG_WARN, "vhost-user backend: queue %u: %s", index, strerror(-r));
    (void)vhost_be_queue_notify(be, index);
    if (q->vq.broken && !q->err_signalled) {
        log_guest(LOG_WARN, "vhost-user backend: queue %u broken: %s", index,
                  q->vq.broken_reason != NULL ? q->vq.broken_reason : "?");
        signal_fd(q->err_fd);
        q->err_signalled = true;
    }
}

bool vhost_be_ring_ready(struct vhost_be *be, unsigned index)
{
    if (index >= be->dev->nr_queues)
        return false;
    struct vhost_be_queue *q = &be->queues[index];
    return q->started && ring_enabled(be, q) && vq_avail_peek(&q->vq);
}

int vhost_be_process(struct vhost_be *be, unsigned index)
{
    if (index >= be->dev->nr_queues)
        return -EINVAL;
    process(be, index);
    return 0;
}

int vhost_be_queue_notify(struct vhost_be *be, unsigned index)
{
    if (index >= be->dev->nr_queues)
        return -EINVAL;
    struct vhost_be_queue *q = &be->queues[index];
    if (q->call_fd < 0 || !vq_should_notify(&q->vq))
        return 0;
    signal_fd(q->call_fd);
    return 1;
}

/* GET_VRING_BASE semantics: the program finishes its work, the ring remembers where. */
static void queue_stop(struct vhost_be *be, unsigned index)
{
    struct vhost_be_queue *q = &be->queues[index];
    if (!q->started)
        return;
    if (be->dev->stop_queue != NULL)
        be->dev->stop_queue(be->dev->opaque, be, index);
    if (q->vq.enabled)
        q->base = q->vq.last_avail;
    vq_disable(&q->vq);
    q->started = false;
    close_fd(&q->kick_fd);
}

static void queue_reset(struct vhost_be *be, unsigned index)
{
    struct vhost_be_queue *q = &be->queues[index];
    queue_stop(be, index);
    close_fd(&q->call_fd);
    close_fd(&q->err_fd);
    q->size = 0;
    q->base = 0;
    q->addr_set = false;
    q->enabled = false;
    q->err_signalled = false;
}

static void unmap_regions(struct vhost_be_region *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (r[i].map != NULL)
            munmap(r[i].map, r[i].map_len);
        r[i].map = NULL;
    }
}

void vhost_be_destroy(struct vhost_be *be)
{
    if (be->dev == NULL)
        return;
    for (unsigned i = 0; i < be->dev->nr_queues; i++)
        queue_reset(be, i);
    unmap_regions(be->regions, be->nr_regions);
    be->nr_regions = 0;
    memset(be->mem, 0, sizeof(be->mem));
    close_fd(&be->sock);
    be->dev = NULL;
}

/* Frontend user address range -> guest-physical, when it lies inside one region. */
static int uaddr_to_gpa(const struct vhost_be_region *regions, unsigned n, uint64_t uaddr,
                        uint64_t len, uint64_t *gpa)
{
    for (unsigned i = 0; i < n; i++) {
        if (range_within(uaddr, len, regions[i].uaddr, regions[i].size)) {
            *gpa = regions[i].gpa + (uaddr - regions[i].uaddr);
            return 0;
        }
    }
    return -EFAULT;
}

/* The vq_config of a ring whose size and addresses are set, against a given table. */
static int ring_config(const struct vhost_be *be, const struct vhost_be_region *regions, unsigned n,
                       const struct vhost_be_queue *q, struct vq_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = q->size;
    cfg->features = be->features;
    cfg->last_avail_idx = q->base;
    if (uaddr_to_gpa(regions, n, q->desc_uaddr, virtq_desc_table_bytes(q->size), &cfg->desc_addr) <
            0 ||
        uaddr_to_gpa(regions, n, q->avail_uaddr, virtq_avail_bytes(q->size), &cfg->avail_addr) <
            0 ||
        uaddr_to_gpa(regions, n, q->used_uaddr, virtq_used_bytes(q->size), &cfg->used_addr) < 0)
        return -EFAULT;
    return 0;
}

static int queue_start(struct vhost_be *be, unsigned index)
{
    struct vhost_be_queue *q = &be->queues[index];
    const struct guest_mem *mem = &be->mem[be->cur_mem];
    struct vq_config cfg;
    if (q->size == 0 || !q->addr_set || be->nr_regions == 0)
        return -EINVAL;
    int r = ring_config(be, be->regions, be->nr_regions, q, &cfg);
    if (r < 0)
        return r;
    /* Continue the used index the ring shows (read once): a resumed ring keeps its
     * completions, a fresh one starts from the driver's zero. Any value is safe. */
    const uint8_t *p = guest_mem_ptr(mem, cfg.used_addr + VIRTQ_RING_IDX_OFF, 2);
    if (p == NULL)
        return -EFAULT;
    uint8_t lo = __atomic_load_n(&p[0], __ATOMIC_RELAXED);
    uint8_t hi = __atomic_load_n(&p[1], __ATOMIC_RELAXED);
    cfg.used_idx = (uint16_t)(lo | hi << 8);
    r = vq_enable(&q->vq, mem, &cfg);
    if (r < 0)
        return r;
    q->started = true;
    q->err_signalled = false;
    return 0;
}

/* Does the file hold [0, end) for good: a regular file at least that long, sealed. */
static int check_file(const struct vhost_be *be, int fd, uint64_t end)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < end)
        return -EINVAL;
    if (!be->dev->accept_unsealed_memory) {
        int seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
            return -EPERM;
    }
    return 0;
}

static bool overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len)
{
    /* Callers checked that neither range wraps. */
    return a < b + b_len && b < a + a_len;
}

static int map_region(const struct vhost_user_mem_region *w, int fd, struct vhost_be_region *out)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t aligned = w->mmap_offset & ~(page - 1);
    uint64_t delta = w->mmap_offset - aligned;
    /* delta + size <= mmap_offset + size, which the caller checked does not wrap. */
    uint64_t len = delta + w->memory_size;
    if (len > SIZE_MAX || aligned > (uint64_t)INT64_MAX)
        return -ENOMEM;
    void *m = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                   (off_t)aligned);
    if (m == MAP_FAILED)
        return -errno;
    *out = (struct vhost_be_region){
        .gpa = w->guest_phys_addr,
        .size = w->memory_size,
        .uaddr = w->userspace_addr,
        .hva = (uint8_t *)m + delta,
        .map = m,
        .map_len = (size_t)len,
    };
    return 0;
}

/*
 * SET_MEM_TABLE: check every region, map them all, build the new view, check that
 * every running ring still lies in it; only then switch the rings over and unmap
 * the old table. Any failure before the switch leaves everything as it was.
 */
static int set_mem_table(struct vhost_be *be, const struct vhost_user_msg *msg)
{
    const struct vhost_user_mem_table *t = &msg->payload.mem;
    unsigned n = t->num_regions; /* 1 to 8, one fd each: the codec checked */
    struct vhost_be_region next[VHOST_USER_MAX_MEM_REGIONS];
    struct vq_config cfgs[VHOST_BE_MAX_QUEUES];
    memset(next, 0, sizeof(next));
    memset(cfgs, 0, sizeof(cfgs));

    for (unsigned i = 0; i < n; i++) {
        const struct vhost_user_mem_region *w = &t->regions[i];
        uint64_t gpa_end, uaddr_end, file_end;
        if (w->memory_size == 0 || checked_add_u64(w->guest_phys_addr, w->memory_size, &gpa_end) ||
            checked_add_u64(w->userspace_addr, w->memory_size, &uaddr_end) ||
            checked_add_u64(w->mmap_offset, w->memory_size, &file_end))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++) {
            const struct vhost_user_mem_region *o = &t->regions[j];
            if (overlap(w->guest_phys_addr, w->memory_size, o->guest_phys_addr, o->memory_size) ||
                overlap(w->userspace_addr, w->memory_size, o->userspace_addr, o->memory_size))
                return -EINVAL;
        }
        int r = check_file(be, msg->fds[i], file_end);
        if (r < 0)
            return r;
    }

    int r = 0;
    unsigned mapped = 0;
    for (; mapped < n && r == 0; mapped++) {
        r = map_region(&t->regions[mapped], msg->fds[mapped], &next[mapped]);
        if (r < 0)
            break;
    }
    struct guest_mem *view = &be->mem[1u - be->cur_mem];
    memset(view, 0, sizeof(*view));
    /* guest_mem wants increasing addresses: add the regions smallest first. */
    bool added[VHOST_USER_MAX_MEM_REGIONS] = {false};
    for (unsigned k = 0; k < n && r == 0; k++) {
        unsigned best = n;
        for (unsigned i = 0; i < n; i++) {
            if (!added[i] && (best == n || next[i].gpa < next[best].gpa))
                best = i;
        }
        added[best] = true;
        r = guest_mem_add_region(view, next[best].gpa, next[best].size, next[best].hva);
    }
    for (unsigned i = 0; i < be->dev->nr_queues && r == 0; i++) {
        struct vhost_be_queue *q = &be->queues[i];
        if (!q->started || !q->vq.enabled || q->vq.broken)
            continue;
        struct vq scratch;
        r = ring_config(be, next, n, q, &cfgs[i]);
        cfgs[i].last_avail_idx = q->vq.last_avail;
        cfgs[i].used_idx = q->vq.used_idx;
        if (r == 0)
            r = vq_enable(&scratch, view, &cfgs[i]);
        if (r < 0)
            log_guest(LOG_WARN, "vhost-user backend: queue %u is not in the new memory table", i);
    }
    if (r < 0) {
        unmap_regions(next, mapped);
        memset(view, 0, sizeof(*view));
        return r;
    }

    for (unsigned i = 0; i < be->dev->nr_queues; i++) {
        struct vhost_be_queue *q = &be->queues[i];
        if (!q->started)
            continue;
        if (q->vq.enabled && !q->vq.broken) {
            (void)vq_enable(&q->vq, view, &cfgs[i]); /* succeeded on the scratch queue */
        } else {
            /* A broken ring must not keep a pointer into memory about to go. */
            if (q->vq.enabled)
                q->base = q->vq.last_avail;
            vq_disable(&q->vq);
        }
    }
    unmap_regions(be->regions, be->nr_regions);
    memcpy(be->regions, next, sizeof(next));
    be->nr_regions = n;
    be->cur_mem = 1u - be->cur_mem;
    log_debug("vhost-user backend: memory table of %u regions mapped", n);
    return 0;
}

static int queue_index(struct vhost_be *be, uint64_t index, struct vhost_be_queue **q)
{
    if (index >= be->dev->nr_queues)
        return -EINVAL;
    *q = &be->queues[index];
    return 0;
}

static int set_vring_addr(struct vhost_be *be, const struct vhost_user_vring_addr *a)
{
    struct vhost_be_queue *q;
    uint64_t gpa;
    if (queue_index(be, a->index, &q) < 0 || a->flags != 0 || be->nr_regions == 0)
        return -EINVAL;
    if (q->started)
        return -EBUSY;
    /* Whole rings are checked when the ring starts and its size is final. */
    if (uaddr_to_gpa(be->regions, be->nr_regions, a->desc, 1, &gpa) < 0 ||
        uaddr_to_gpa(be->regions, be->nr_regions, a->avail, 1, &gpa) < 0 ||
        uaddr_to_gpa(be->regions, be->nr_regions, a->used, 1, &gpa) < 0)
        return -EFAULT;
    q->desc_uaddr = a->desc;
    q->avail_uaddr = a->avail;
    q->used_uaddr = a->used;
    q->addr_set = true;
    return 0;
}

static int set_vring_fd(struct vhost_be *be, struct vhost_user_msg *msg)
{
    struct vhost_be_queue *q;
    uint64_t v = msg->payload.u64;
    unsigned index = (unsigned)(v & VHOST_USER_VRING_IDX_MASK);
    bool nofd = (v & VHOST_USER_VRING_NOFD) != 0;
    if (queue_index(be, index, &q) < 0)
        return -EINVAL;
    int fd = nofd ? -1 : msg->fds[0];
    if (fd >= 0) {
        int r = set_nonblock(fd);
        if (r < 0)
            return r;
    }

    switch (msg->hdr.request) {
    case VHOST_USER_SET_VRING_KICK:
        if (nofd)
            return -EOPNOTSUPP; /* polling mode is not offered */
        if (!q->started) {
            int r = queue_start(be, index);
            if (r < 0)
                return r;
        }
        close_fd(&q->kick_fd);
        q->kick_fd = fd;
        be->process_pending |= BIT(index);
        break;
    case VHOST_USER_SET_VRING_CALL:
        close_fd(&q->call_fd);
        q->call_fd = fd;
        break;
    default:
        close_fd(&q->err_fd);
        q->err_fd = fd;
        break;
    }
    if (fd >= 0)
        msg->fds[0] = -1; /* kept */
    return 0;
}

static int get_config(struct vhost_be *be, const struct vhost_user_config *c,
                      struct vhost_user_msg *reply)
{
    const struct vhost_be_device *dev = be->dev;
    /* size is 1 to 256 (codec); an empty reply is the protocol's refusal. */
    if (dev->get_config == NULL || c->offset > dev->config_size ||
        c->size > dev->config_size - c->offset)
        return -EINVAL;
    struct vhost_user_config *out = &reply->payload.config;
    int r = dev->get_config(dev->opaque, c->offset, out->data, c->size);
    if (r < 0)
        return r;
    out->offset = c->offset;
    out->size = c->size;
    out->flags = c->flags;
    reply->hdr.size = VHOST_USER_CONFIG_HDR_SIZE + c->size;
#ifdef BULKHEAD_FAULTS
    out->size = faults_config_size(c->size); /* bytes past c->size are the reply's zeros */
    reply->hdr.size = VHOST_USER_CONFIG_HDR_SIZE + out->size;
#endif
    return 0;
}

static int set_config(struct vhost_be *be, const struct vhost_user_config *c)
{
    const struct vhost_be_device *dev = be->dev;
    if ((c->flags & ~VHOST_USER_CONFIG_F_MIGRATION) != 0 || c->offset > dev->config_size ||
        c->size > dev->config_size - c->offset)
        return -EINVAL;
    if (dev->set_config == NULL)
        return -EOPNOTSUPP;
    return dev->set_config(dev->opaque, c->offset, c->data, c->size);
}

/*
 * One request. Requests with a reply of their own fill @p reply and set @p own; a
 * negative return refuses the request, after which nothing of it has been applied.
 */
static int handle(struct vhost_be *be, struct vhost_user_msg *msg, struct vhost_user_msg *reply,
                  bool *own)
{
    const struct vhost_user_vring_state *st = &msg->payload.state;
    struct vhost_be_queue *q;
    uint64_t v = msg->payload.u64;

    *own = false;
    switch (msg->hdr.request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_GET_MAX_MEM_SLOTS:
        *own = true;
        reply->hdr.size = sizeof(uint64_t);
        if (msg->hdr.request == VHOST_USER_GET_FEATURES)
            reply->payload.u64 = offered_features(be);
        else if (msg->hdr.request == VHOST_USER_GET_PROTOCOL_FEATURES)
            reply->payload.u64 = offered_protocol(be);
        else if (msg->hdr.request == VHOST_USER_GET_QUEUE_NUM)
            reply->payload.u64 = be->dev->nr_queues;
        else
            reply->payload.u64 = VHOST_USER_MAX_MEM_REGIONS;
        return 0;
    case VHOST_USER_SET_FEATURES:
        if (v & ~offered_features(be))
            return -EINVAL;
        /* QEMU's vhost-user-net repeats the same SET_FEATURES for every queue pair, after
         * the first pair's rings started: a repeat that changes nothing is harmless. */
        if ((v & ~BIT(VHOST_USER_F_PROTOCOL_FEATURES)) == be->features &&
            ((v & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) != 0) == be->protocol_negotiated)
            return 0;
        for (unsigned i = 0; i < be->dev->nr_queues; i++) {
            if (be->queues[i].started)
                return -EBUSY; /* running rings were enabled with the old features */
        }
        be->features = v & ~BIT(VHOST_USER_F_PROTOCOL_FEATURES);
        be->protocol_negotiated = (v & BIT(VHOST_USER_F_PROTOCOL_FEATURES)) != 0;
        return 0;
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        if (v & ~offered_protocol(be))
            return -EINVAL;
        be->protocol_features = v;
        return 0;
    case VHOST_USER_SET_OWNER:
        be->owned = true;
        return 0;
    case VHOST_USER_RESET_OWNER:
        /* Deprecated; the spec's advice: only stop the rings. */
        for (unsigned i = 0; i < be->dev->nr_queues; i++)
            queue_stop(be, i);
        return 0;
    case VHOST_USER_RESET_DEVICE:
        for (unsigned i = 0; i < be->dev->nr_queues; i++)
            queue_reset(be, i);
        be->features = 0;
        be->protocol_negotiated = false;
        return 0;
    case VHOST_USER_SET_MEM_TABLE:
        return set_mem_table(be, msg);
    case VHOST_USER_SET_VRING_NUM:
        if (queue_index(be, st->index, &q) < 0 || st->num == 0 || st->num > VIRTQ_MAX_SIZE ||
            (st->num & (st->num - 1u)) != 0)
            return -EINVAL;
        if (q->started)
            return -EBUSY;
        q->size = (uint16_t)st->num;
        return 0;
    case VHOST_USER_SET_VRING_BASE:
        if (queue_index(be, st->index, &q) < 0 || st->num > UINT16_MAX)
            return -EINVAL;
        if (q->started)
            return -EBUSY;
        q->base = (uint16_t)st->num;
        return 0;
    case VHOST_USER_SET_VRING_ADDR:
        return set_vring_addr(be, &msg->payload.addr);
    case VHOST_USER_GET_VRING_BASE:
        *own = true;
        if (queue_index(be, st->index, &q) < 0)
            return -EINVAL;
        queue_stop(be, st->index);
        reply->hdr.size = sizeof(struct vhost_user_vring_state);
        reply->payload.state = (struct vhost_user_vring_state){.index = st->index, .num = q->base};
        return 0;
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        return set_vring_fd(be, msg);
    case VHOST_USER_SET_VRING_ENABLE:
        if (queue_index(be, st->index, &q) < 0 || st->num > 1)
            return -EINVAL;
        q->enabled = st->num == 1;
        if (q->enabled)
            be->process_pending |= BIT(st->index);
        return 0;
    case VHOST_USER_GET_CONFIG:
        *own = true;
        if (get_config(be, &msg->payload.config, reply) < 0)
            reply->hdr.size = 0;
        return 0;
    case VHOST_USER_SET_CONFIG:
        return set_config(be, &msg->payload.config);
    default:
        /* ADD/REM_MEM_REG: CONFIGURE_MEM_SLOTS is not offered. */
        return -EOPNOTSUPP;
    }
}

static int send_ack(struct vhost_be *be, uint32_t request, bool ok)
{
    struct vhost_user_msg ack;
    vhost_user_msg_init(&ack, request, sizeof(uint64_t));
    ack.hdr.flags |= VHOST_USER_FLAG_REPLY;
    ack.payload.u64 = ok ? 0 : 1;
    return vhost_user_send(be->sock, &ack, vhost_user_deadline(be->timeout_ns));
}

int vhost_be_handle_message(struct vhost_be *be)
{
    struct vhost_user_msg msg, reply;
    int r = vhost_user_recv(be->sock, &msg, false, vhost_user_deadline(be->timeout_ns));
    if (r == -ECONNRESET)
        return r;
    if (r < 0) {
        log_guest(LOG_WARN, "vhost-user backend: bad message (request %u, %s): %s", msg.hdr.request,
                  vhost_user_request_name(msg.hdr.request), strerror(-r));
        /* An unknown request was read whole: the stream is in step, say no if asked. */
        if (r == -EOPNOTSUPP && (msg.hdr.flags & VHOST_USER_FLAG_NEED_REPLY))
            return send_ack(be, msg.hdr.request, false);
        return r;
    }
#ifdef BULKHEAD_FAULTS
    if (faults_drop_message(msg.hdr.request)) {
        vhost_user_msg_close_fds(&msg);
        return 0;
    }
#endif

    bool need_reply = (msg.hdr.flags & VHOST_USER_FLAG_NEED_REPLY) != 0;
    bool own = false;
    vhost_user_msg_init(&reply, msg.hdr.request, 0);
    reply.hdr.flags |= VHOST_USER_FLAG_REPLY;
    be->process_pending = 0;
    r = handle(be, &msg, &reply, &own);
    vhost_user_msg_close_fds(&msg);
    if (r < 0)
        log_guest(LOG_WARN, "vhost-user backend: %s refused: %s",
                  vhost_user_request_name(msg.hdr.request), strerror(-r));

    int s;
    if (own && r == 0)
        s = vhost_user_send(be->sock, &reply, vhost_user_deadline(be->timeout_ns));
    else if (!own && need_reply)
        s = send_ack(be, msg.hdr.request, r == 0);
    else
        s = r; /* a refusal we cannot report ends the connection */
    if (s < 0)
        return s;

    for (unsigned i = 0; i < be->dev->nr_queues; i++) {
        if (be->process_pending & BIT(i))
            process(be, i);
    }
    be->process_pending = 0;
    return 0;
}

int vhost_be_handle_kick(struct vhost_be *be, unsigned index)
{
    if (index >= be->dev->nr_queues)
        return -EINVAL;
    struct vhost_be_queue *q = &be->queues[index];
    if (q->kick_fd < 0)
        return 0;
    uint64_t count;
    ssize_t n = read(q->kick_fd, &count, sizeof(count));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        /* A kick source at EOF or in error would keep poll() busy for ever. */
        log_guest(LOG_WARN, "vhost-user backend: queue %u: kick descriptor unusable", index);
        close_fd(&q->kick_fd);
        return 0;
    }
    process(be, index);
    return 0;
}

unsigned vhost_be_pollfds(const struct vhost_be *be, struct pollfd *pfd, unsigned max)
{
    unsigned n = 0;
    if (n < max)
        pfd[n++] = (struct pollfd){.fd = be->sock, .events = POLLIN};
    for (unsigned i = 0; i < be->dev->nr_queues && n < max; i++) {
        const struct vhost_be_queue *q = &be->queues[i];
        if (q->started && q->kick_fd >= 0)
            pfd[n++] = (struct pollfd){.fd = q->kick_fd, .events = POLLIN};
    }
    return n;
}

int vhost_be_dispatch(struct vhost_be *be, const struct pollfd *pfd, unsigned n)
{
    bool message = false;
    for (unsigned i = 0; i < n; i++) {
        if (pfd[i].fd < 0 || pfd[i].revents == 0)
            continue;
        if (pfd[i].fd == be->sock) {
            message = true;
            continue;
        }
        for (unsigned q = 0; q < be->dev->nr_queues; q++) {
            if (be->queues[q].kick_fd == pfd[i].fd) {
                (void)vhost_be_handle_kick(be, q);
                break;
            }
        }
    }
    return message ? vhost_be_handle_message(be) : 0;
}

int vhost_be_run(struct vhost_be *be)
{
    for (;;) {
        struct pollfd pfd[VHOST_BE_MAX_POLLFDS];
        unsigned n = vhost_be_pollfds(be, pfd, VHOST_BE_MAX_POLLFDS);
        if (poll(pfd, n, -1) < 0)
            return errno == EINTR ? -EINTR : -errno;
        int r = vhost_be_dispatch(be, pfd, n);
        if (r == -ECONNRESET)
            return 0;
        if (r < 0)
            return r;
    }
}
