/* SPDX-License-Identifier: BSD-2-Clause */
#include "vhost/frontend.h"

#include "core/checked.h"
#include "core/log.h"
#include "core/os.h"
#include "virtio/virtio_ring.h"
#include "vhost/vhost_user_msg.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Synthetic user addresses start at 16 TiB plus a random multiple of 1 GiB below
 * another 16 TiB: plausible user-space values, 1 GiB aligned so huge-page alignment
 * of guest-physical addresses carries over, and far from 2^64 so base + GPA of any
 * real guest cannot wrap (it is checked anyway).
 */
#define UADDR_MIN   (1ull << 44)
#define UADDR_SLOTS (1ull << 14)
#define UADDR_ALIGN (1ull << 30)

static uint64_t pick_uaddr_base(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* No entropy yet (early boot): mix the clock instead of failing the device. */
        r = os_monotonic_ns() * 0x9e3779b97f4a7c15ull;
        r ^= r >> 29;
    }
    return UADDR_MIN + (r % UADDR_SLOTS) * UADDR_ALIGN;
}

void vhost_fe_init(struct vhost_frontend *fe, int sock)
{
    memset(fe, 0, sizeof(*fe));
    fe->sock = sock;
    fe->timeout_ns = VHOST_FE_DEFAULT_TIMEOUT_NS;
    fe->uaddr_base = pick_uaddr_base();
}

void vhost_fe_set_timeout(struct vhost_frontend *fe, uint64_t timeout_ns)
{
    fe->timeout_ns = timeout_ns != 0 ? timeout_ns : VHOST_FE_DEFAULT_TIMEOUT_NS;
}

void vhost_fe_close(struct vhost_frontend *fe)
{
    if (fe->sock >= 0)
        close(fe->sock);
    fe->sock = -1;
    if (!fe->dead) {
        fe->dead = true;
        fe->error = -ENOTCONN;
    }
}

static bool has_pf(const struct vhost_frontend *fe, unsigned bit)
{
    return (fe->protocol_features >> bit) & 1u;
}

/* Marks the connection dead with its first reason and returns @p err. */
static int fail_at(struct vhost_frontend *fe, const char *what, int err)
{
    if (!fe->dead) {
        log_warn("vhost-user: backend connection lost (%s): %s", what, strerror(-err));
        fe->dead = true;
        fe->error = err;
    }
    return err;
}

static int fail(struct vhost_frontend *fe, uint32_t request, int err)
{
    return fail_at(fe, vhost_user_request_name(request), err);
}

/* Requests the backend answers with a payload of their own, REPLY_ACK or not. */
static bool has_own_reply(uint32_t request)
{
    switch (request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_GET_CONFIG:
    case VHOST_USER_GET_MAX_MEM_SLOTS:
        return true;
    default:
        return false;
    }
}

/*
 * Sends @p msg and, when there is an answer to wait for, receives it into @p reply
 * under one deadline. A reply must be the codec-valid answer to this very request.
 */
static int transact(struct vhost_frontend *fe, struct vhost_user_msg *msg,
                    struct vhost_user_msg *reply)
{
    uint32_t request = msg->hdr.request;
    memset(reply, 0, sizeof(*reply)); /* callers read it only after an answer, but never garbage */
    if (fe->dead)
        return -ENOTCONN;

    bool own = has_own_reply(request);
    /* SET_PROTOCOL_FEATURES itself is what turns REPLY_ACK on: no ack for it. */
    bool ack = !own && has_pf(fe, VHOST_USER_PROTOCOL_F_REPLY_ACK) &&
               request != VHOST_USER_SET_PROTOCOL_FEATURES;
    if (ack)
        msg->hdr.flags |= VHOST_USER_FLAG_NEED_REPLY;

    uint64_t deadline = vhost_user_deadline(fe->timeout_ns);
    int r = vhost_user_send(fe->sock, msg, deadline);
    if (r == -EINVAL)
        return r; /* our own malformed message; nothing went out */
    if (r < 0)
        return fail(fe, request, r);
    if (!own && !ack)
        return 0;

    r = vhost_user_recv(fe->sock, reply, true, deadline);
    if (r < 0)
        return fail(fe, request, r);
    if (reply->hdr.request != request)
        return fail(fe, request, -EPROTO);
    if (ack && reply->payload.u64 != 0) {
        log_warn("vhost-user: backend refused %s", vhost_user_request_name(request));
        return -EREMOTEIO;
    }
    return 0;
}

static int send_u64(struct vhost_frontend *fe, uint32_t request, uint64_t value)
{
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, request, sizeof(uint64_t));
    msg.payload.u64 = value;
    return transact(fe, &msg, &reply);
}

static int get_u64(struct vhost_frontend *fe, uint32_t request, uint64_t *value)
{
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, request, 0);
    int r = transact(fe, &msg, &reply);
    if (r == 0)
        *value = reply.payload.u64;
    return r;
}

static int send_state(struct vhost_frontend *fe, uint32_t request, unsigned index, uint32_t num)
{
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, request, sizeof(struct vhost_user_vring_state));
    msg.payload.state = (struct vhost_user_vring_state){.index = index, .num = num};
    return transact(fe, &msg, &reply);
}

static int send_vring_fd(struct vhost_frontend *fe, uint32_t request, unsigned index, int fd)
{
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, request, sizeof(uint64_t));
    msg.payload.u64 = index;
    if (fd >= 0) {
        msg.fds[0] = fd;
        msg.nr_fds = 1;
    } else {
        msg.payload.u64 |= VHOST_USER_VRING_NOFD;
    }
    return transact(fe, &msg, &reply);
}

int vhost_fe_handshake(struct vhost_frontend *fe)
{
    uint64_t features = 0;
    int r = get_u64(fe, VHOST_USER_GET_FEATURES, &features);
    if (r < 0)
        return r;
    fe->protocol_features_ok = (features >> VHOST_USER_F_PROTOCOL_FEATURES) & 1u;
    fe->backend_features = features & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    fe->protocol_features = 0;
    fe->max_queues = 0;

    if (fe->protocol_features_ok) {
        uint64_t offered = 0;
        r = get_u64(fe, VHOST_USER_GET_PROTOCOL_FEATURES, &offered);
        if (r < 0)
            return r;
        uint64_t use = offered & VHOST_FE_PROTOCOL_FEATURES;
        r = send_u64(fe, VHOST_USER_SET_PROTOCOL_FEATURES, use);
        if (r < 0)
            return r;
        fe->protocol_features = use;
    }
    if (has_pf(fe, VHOST_USER_PROTOCOL_F_MQ)) {
        uint64_t n = 0;
        r = get_u64(fe, VHOST_USER_GET_QUEUE_NUM, &n);
        if (r < 0)
            return r;
        if (n == 0 || n > VHOST_USER_MAX_QUEUES)
            return fail(fe, VHOST_USER_GET_QUEUE_NUM, -EPROTO);
        fe->max_queues = (unsigned)n;
    }
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_SET_OWNER, 0);
    r = transact(fe, &msg, &reply);
    if (r == 0)
        log_debug("vhost-user: backend features %#llx, protocol features %#llx, %u queues",
                  (unsigned long long)fe->backend_features,
                  (unsigned long long)fe->protocol_features, fe->max_queues);
    return r;
}

uint64_t vhost_fe_offer(const struct vhost_frontend *fe, uint64_t vmm_features)
{
    return fe->backend_features & vmm_features & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

int vhost_fe_set_features(struct vhost_frontend *fe, uint64_t features)
{
    if (features & ~fe->backend_features)
        return -EINVAL;
    uint64_t wire = features;
    if (fe->protocol_features_ok)
        wire |= 1ull << VHOST_USER_F_PROTOCOL_FEATURES;
    int r = send_u64(fe, VHOST_USER_SET_FEATURES, wire);
    if (r == 0)
        fe->acked_features = features;
    return r;
}

int vhost_fe_set_mem_table(struct vhost_frontend *fe, const struct vhost_fe_region *regions,
                           unsigned n)
{
    if (n == 0 || n > VHOST_USER_MAX_MEM_REGIONS || regions == NULL)
        return -EINVAL;
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_SET_MEM_TABLE,
                        (uint32_t)(offsetof(struct vhost_user_mem_table, regions) +
                                   n * sizeof(struct vhost_user_mem_region)));
    msg.payload.mem.num_regions = n;
    for (unsigned i = 0; i < n; i++) {
        const struct vhost_fe_region *g = &regions[i];
        uint64_t end, uaddr, uend, oend;
        if (g->size == 0 || g->fd < 0 || checked_add_u64(g->gpa, g->size, &end) ||
            checked_add_u64(g->offset, g->size, &oend) ||
            checked_add_u64(fe->uaddr_base, g->gpa, &uaddr) ||
            checked_add_u64(uaddr, g->size, &uend))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++) {
            /* Both ranges are known not to wrap: plain interval overlap. */
            if (g->gpa < regions[j].gpa + regions[j].size && regions[j].gpa < end)
                return -EINVAL;
        }
        msg.payload.mem.regions[i] = (struct vhost_user_mem_region){
            .guest_phys_addr = g->gpa,
            .memory_size = g->size,
            .userspace_addr = uaddr,
            .mmap_offset = g->offset,
        };
        msg.fds[i] = g->fd;
    }
    msg.nr_fds = n;

    int r = transact(fe, &msg, &reply);
    if (r == 0 && !has_pf(fe, VHOST_USER_PROTOCOL_F_REPLY_ACK)) {
        /* Without acks, an answered GET_FEATURES proves the table was processed. */
        uint64_t ignored = 0;
        r = get_u64(fe, VHOST_USER_GET_FEATURES, &ignored);
    }
    if (r < 0)
        return r;
    memcpy(fe->table, msg.payload.mem.regions, n * sizeof(fe->table[0]));
    fe->nr_regions = n;
    return 0;
}

int vhost_fe_translate(const struct vhost_frontend *fe, uint64_t gpa, uint64_t len, uint64_t *uaddr)
{
    if (len == 0)
        return -EFAULT;
    for (unsigned i = 0; i < fe->nr_regions && i < VHOST_USER_MAX_MEM_REGIONS; i++) {
        const struct vhost_user_mem_region *t = &fe->table[i];
        if (range_within(gpa, len, t->guest_phys_addr, t->memory_size)) {
            *uaddr = t->userspace_addr + (gpa - t->guest_phys_addr);
            return 0;
        }
    }
    return -EFAULT;
}

static bool index_ok(const struct vhost_frontend *fe, unsigned index)
{
    return index < VHOST_USER_MAX_QUEUES && (fe->max_queues == 0 || index < fe->max_queues);
}

int vhost_fe_vring_start(struct vhost_frontend *fe, unsigned index,
                         const struct vhost_fe_vring *ring)
{
    uint16_t size = ring->size;
    if (!index_ok(fe, index) || size == 0 || (size & (size - 1u)) != 0 || ring->kick_fd < 0)
        return -EINVAL;
    if ((ring->desc_gpa % VIRTQ_DESC_ALIGN) != 0 || (ring->avail_gpa % VIRTQ_AVAIL_ALIGN) != 0 ||
        (ring->used_gpa % VIRTQ_USED_ALIGN) != 0)
        return -EINVAL;

    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_user_vring_addr));
    struct vhost_user_vring_addr *a = &msg.payload.addr;
    a->index = index;
    if (vhost_fe_translate(fe, ring->desc_gpa, virtq_desc_table_bytes(size), &a->desc) < 0 ||
        vhost_fe_translate(fe, ring->avail_gpa, virtq_avail_bytes(size), &a->avail) < 0 ||
        vhost_fe_translate(fe, ring->used_gpa, virtq_used_bytes(size), &a->used) < 0)
        return -EFAULT;
    if (fe->dead)
        return -ENOTCONN;

    int r = send_state(fe, VHOST_USER_SET_VRING_NUM, index, size);
    if (r == 0)
        r = send_state(fe, VHOST_USER_SET_VRING_BASE, index, ring->base);
    if (r == 0)
        r = transact(fe, &msg, &reply);
    if (r == 0)
        r = send_vring_fd(fe, VHOST_USER_SET_VRING_CALL, index, ring->call_fd);
    if (r == 0 && ring->err_fd >= 0)
        r = send_vring_fd(fe, VHOST_USER_SET_VRING_ERR, index, ring->err_fd);
    if (r == 0)
        r = send_vring_fd(fe, VHOST_USER_SET_VRING_KICK, index, ring->kick_fd);
    if (r == 0 && fe->protocol_features_ok)
        r = send_state(fe, VHOST_USER_SET_VRING_ENABLE, index, 1);
    return r;
}

int vhost_fe_vring_set_call(struct vhost_frontend *fe, unsigned index, int call_fd)
{
    if (!index_ok(fe, index))
        return -EINVAL;
    return send_vring_fd(fe, VHOST_USER_SET_VRING_CALL, index, call_fd);
}

int vhost_fe_vring_enable(struct vhost_frontend *fe, unsigned index, bool enable)
{
    if (!index_ok(fe, index))
        return -EINVAL;
    if (!fe->protocol_features_ok)
        return fe->dead ? -ENOTCONN : -EOPNOTSUPP;
    return send_state(fe, VHOST_USER_SET_VRING_ENABLE, index, enable ? 1u : 0u);
}

int vhost_fe_vring_stop(struct vhost_frontend *fe, unsigned index, uint16_t *next_avail)
{
    if (!index_ok(fe, index))
        return -EINVAL;
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_GET_VRING_BASE, sizeof(struct vhost_user_vring_state));
    msg.payload.state.index = index;
    int r = transact(fe, &msg, &reply);
    if (r < 0)
        return r;
    if (reply.payload.state.index != index || reply.payload.state.num > UINT16_MAX)
        return fail(fe, VHOST_USER_GET_VRING_BASE, -EPROTO);
    *next_avail = (uint16_t)reply.payload.state.num;
    return 0;
}

int vhost_fe_get_config(struct vhost_frontend *fe, uint32_t len)
{
    if (len == 0 || len > VHOST_USER_CONFIG_MAX)
        return -EINVAL;
    if (fe->dead)
        return -ENOTCONN;
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_CONFIG))
        return -EOPNOTSUPP;
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_GET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + len);
    msg.payload.config.size = len;
    int r = transact(fe, &msg, &reply);
    if (r < 0)
        return r;
    if (reply.hdr.size == 0) {
        log_warn("vhost-user: backend refused GET_CONFIG of %u bytes", len);
        return -EREMOTEIO;
    }
    /* The codec checked hdr.size == 12 + config.size <= 268; the range must be ours. */
    if (reply.payload.config.offset != 0 || reply.payload.config.size != len)
        return fail(fe, VHOST_USER_GET_CONFIG, -EPROTO);
    memcpy(fe->config, reply.payload.config.data, len);
    fe->config_len = len;
    return 0;
}

int vhost_fe_set_config(struct vhost_frontend *fe, uint32_t offset, const void *data, uint32_t len)
{
    if (len == 0 || len > VHOST_USER_CONFIG_MAX || offset > VHOST_USER_CONFIG_MAX - len ||
        data == NULL)
        return -EINVAL;
    if (fe->dead)
        return -ENOTCONN;
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_CONFIG))
        return -EOPNOTSUPP;
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_SET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + len);
    msg.payload.config.offset = offset;
    msg.payload.config.size = len;
    memcpy(msg.payload.config.data, data, len);
    int r = transact(fe, &msg, &reply);
    if (r == 0 && offset < fe->config_len) {
        uint32_t n = fe->config_len - offset < len ? fe->config_len - offset : len;
        memcpy(fe->config + offset, data, n);
    }
    return r;
}

int vhost_fe_reset_device(struct vhost_frontend *fe)
{
    if (fe->dead)
        return -ENOTCONN;
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_RESET_DEVICE))
        return -EOPNOTSUPP;
    struct vhost_user_msg msg, reply;
    vhost_user_msg_init(&msg, VHOST_USER_RESET_DEVICE, 0);
    int r = transact(fe, &msg, &reply);
    if (r == 0)
        fe->acked_features = 0;
    return r;
}

int vhost_fe_check_idle(struct vhost_frontend *fe)
{
    if (fe->dead)
        return -ENOTCONN;
    char byte;
    ssize_t n = recv(fe->sock, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n > 0)
        return fail_at(fe, "unsolicited message", -EPROTO);
    return fail_at(fe, "idle", -ECONNRESET);
}
