/* SPDX-License-Identifier: BSD-2-Clause */
#include "vhost/vhost_user_msg.h"

#include "core/os.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The structures are copied to and from the wire as bytes: their layout is the wire's. */
_Static_assert(sizeof(struct vhost_user_hdr) == 12, "vhost-user header is 12 bytes");
_Static_assert(sizeof(struct vhost_user_vring_state) == 8, "vring state is 8 bytes");
_Static_assert(sizeof(struct vhost_user_vring_addr) == 40, "vring address is 40 bytes");
_Static_assert(sizeof(struct vhost_user_mem_region) == 32, "memory region is 32 bytes");
_Static_assert(offsetof(struct vhost_user_mem_table, regions) == 8, "memory table header");
_Static_assert(sizeof(struct vhost_user_mem_single) == 40, "single region is 40 bytes");
_Static_assert(offsetof(struct vhost_user_config, data) == VHOST_USER_CONFIG_HDR_SIZE,
               "config header is 12 bytes");
_Static_assert(sizeof(union vhost_user_payload) >= VHOST_USER_PAYLOAD_MAX,
               "the payload buffer holds the largest payload");
_Static_assert(sizeof(struct vhost_user_mem_table) <= VHOST_USER_PAYLOAD_MAX,
               "a full memory table is accepted");

/* Payload size of a memory table with @p n regions. */
#define MEM_TABLE_SIZE(n)                                                                          \
    ((uint32_t)offsetof(struct vhost_user_mem_table, regions) +                                    \
     (uint32_t)(n) * (uint32_t)sizeof(struct vhost_user_mem_region))

void vhost_user_msg_init(struct vhost_user_msg *msg, uint32_t request, uint32_t size)
{
    memset(msg, 0, sizeof(*msg));
    msg->hdr.request = request;
    msg->hdr.flags = VHOST_USER_VERSION;
    msg->hdr.size = size;
}

void vhost_user_msg_close_fds(struct vhost_user_msg *msg)
{
    for (unsigned i = 0; i < msg->nr_fds && i < VHOST_USER_MAX_FDS; i++) {
        if (msg->fds[i] >= 0)
            close(msg->fds[i]);
        msg->fds[i] = -1;
    }
    msg->nr_fds = 0;
}

uint64_t vhost_user_deadline(uint64_t timeout_ns)
{
    uint64_t now = os_monotonic_ns();
    return timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
}

const char *vhost_user_request_name(uint32_t request)
{
    switch (request) {
    case VHOST_USER_GET_FEATURES:
        return "GET_FEATURES";
    case VHOST_USER_SET_FEATURES:
        return "SET_FEATURES";
    case VHOST_USER_SET_OWNER:
        return "SET_OWNER";
    case VHOST_USER_RESET_OWNER:
        return "RESET_OWNER";
    case VHOST_USER_SET_MEM_TABLE:
        return "SET_MEM_TABLE";
    case VHOST_USER_SET_VRING_NUM:
        return "SET_VRING_NUM";
    case VHOST_USER_SET_VRING_ADDR:
        return "SET_VRING_ADDR";
    case VHOST_USER_SET_VRING_BASE:
        return "SET_VRING_BASE";
    case VHOST_USER_GET_VRING_BASE:
        return "GET_VRING_BASE";
    case VHOST_USER_SET_VRING_KICK:
        return "SET_VRING_KICK";
    case VHOST_USER_SET_VRING_CALL:
        return "SET_VRING_CALL";
    case VHOST_USER_SET_VRING_ERR:
        return "SET_VRING_ERR";
    case VHOST_USER_GET_PROTOCOL_FEATURES:
        return "GET_PROTOCOL_FEATURES";
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        return "SET_PROTOCOL_FEATURES";
    case VHOST_USER_GET_QUEUE_NUM:
        return "GET_QUEUE_NUM";
    case VHOST_USER_SET_VRING_ENABLE:
        return "SET_VRING_ENABLE";
    case VHOST_USER_GET_CONFIG:
        return "GET_CONFIG";
    case VHOST_USER_SET_CONFIG:
        return "SET_CONFIG";
    case VHOST_USER_RESET_DEVICE:
        return "RESET_DEVICE";
    case VHOST_USER_GET_MAX_MEM_SLOTS:
        return "GET_MAX_MEM_SLOTS";
    case VHOST_USER_ADD_MEM_REG:
        return "ADD_MEM_REG";
    case VHOST_USER_REM_MEM_REG:
        return "REM_MEM_REG";
    default:
        return "unknown";
    }
}

/* A payload of exactly @p size bytes and exactly @p fds descriptors. */
static int exact(const struct vhost_user_msg *msg, uint32_t size, unsigned fds)
{
    return msg->hdr.size == size && msg->nr_fds == fds ? 0 : -EBADMSG;
}

/* Config payload: 12 bytes, then as many bytes as its own size field says (1 to 256). */
static int config_size_ok(const struct vhost_user_msg *msg)
{
    if (msg->hdr.size < VHOST_USER_CONFIG_HDR_SIZE || msg->nr_fds != 0)
        return -EBADMSG;
    uint32_t n = msg->payload.config.size;
    if (n == 0 || n > VHOST_USER_CONFIG_MAX || msg->hdr.size != VHOST_USER_CONFIG_HDR_SIZE + n)
        return -EBADMSG;
    return 0;
}

static int check_request(const struct vhost_user_msg *msg)
{
    const uint32_t u64 = sizeof(uint64_t);
    switch (msg->hdr.request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_SET_OWNER:
    case VHOST_USER_RESET_OWNER:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_RESET_DEVICE:
    case VHOST_USER_GET_MAX_MEM_SLOTS:
        return exact(msg, 0, 0);
    case VHOST_USER_SET_FEATURES:
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        return exact(msg, u64, 0);
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE:
        return exact(msg, sizeof(struct vhost_user_vring_state), 0);
    case VHOST_USER_SET_VRING_ADDR:
        return exact(msg, sizeof(struct vhost_user_vring_addr), 0);
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR: {
        if (msg->hdr.size != u64)
            return -EBADMSG;
        uint64_t v = msg->payload.u64;
        if (v & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD))
            return -EBADMSG;
        return exact(msg, u64, (v & VHOST_USER_VRING_NOFD) ? 0 : 1);
    }
    case VHOST_USER_SET_MEM_TABLE: {
        if (msg->hdr.size < MEM_TABLE_SIZE(0))
            return -EBADMSG;
        uint32_t n = msg->payload.mem.num_regions;
        if (n == 0 || n > VHOST_USER_MAX_MEM_REGIONS)
            return -EBADMSG;
        return exact(msg, MEM_TABLE_SIZE(n), n);
    }
    case VHOST_USER_GET_CONFIG:
    case VHOST_USER_SET_CONFIG:
        return config_size_ok(msg);
    case VHOST_USER_ADD_MEM_REG:
        return exact(msg, sizeof(struct vhost_user_mem_single), 1);
    case VHOST_USER_REM_MEM_REG:
        /* The spec lets a backend accept (and close) one stray descriptor here. */
        if (msg->nr_fds > 1)
            return -EBADMSG;
        return exact(msg, sizeof(struct vhost_user_mem_single), msg->nr_fds);
    default:
        return -EOPNOTSUPP;
    }
}

static int check_reply(const struct vhost_user_msg *msg)
{
    if (msg->nr_fds != 0)
        return -EBADMSG;
    switch (msg->hdr.request) {
    case VHOST_USER_GET_CONFIG:
        /* A backend answers a config request it cannot serve with an empty payload. */
        return msg->hdr.size == 0 ? 0 : config_size_ok(msg);
    case VHOST_USER_GET_VRING_BASE:
        return exact(msg, sizeof(struct vhost_user_vring_state), 0);
    default:
        /*
         * Feature words, counts and REPLY_ACK acknowledgements are all one u64. A
         * request the codec does not know can still be refused with an ack, so such a
         * reply is accepted here; a frontend matches every reply to its own request.
         */
        return exact(msg, sizeof(uint64_t), 0);
    }
}

int vhost_user_msg_check(const struct vhost_user_msg *msg, bool reply)
{
    const uint32_t known =
        VHOST_USER_VERSION_MASK | VHOST_USER_FLAG_REPLY | VHOST_USER_FLAG_NEED_REPLY;
    uint32_t flags = msg->hdr.flags;

    if (msg->hdr.size > VHOST_USER_PAYLOAD_MAX || msg->nr_fds > VHOST_USER_MAX_FDS)
        return msg->hdr.size > VHOST_USER_PAYLOAD_MAX ? -EMSGSIZE : -EBADMSG;
    if ((flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION || (flags & ~known) != 0)
        return -EPROTO;
    if (reply != ((flags & VHOST_USER_FLAG_REPLY) != 0))
        return -EPROTO;
    if (reply && (flags & VHOST_USER_FLAG_NEED_REPLY))
        return -EPROTO;
    return reply ? check_reply(msg) : check_request(msg);
}

/* Waits until @p fd is ready for @p events, or the deadline passes. */
static int wait_ready(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = os_monotonic_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        uint64_t left = deadline_ns - now;
        uint64_t ms = left / 1000000u + (left % 1000000u != 0);
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r > 0)
            return (p.revents & POLLNVAL) ? -EBADF : 0;
        /* r == 0: poll rounded the wait; the clock decides. */
    }
}

/*
 * Moves the descriptors of every SCM_RIGHTS message into @p msg. Anything beyond
 * VHOST_USER_MAX_FDS is closed at once and marks the message bad, as does any other
 * kind of control message or a control buffer the kernel had to truncate.
 */
static void take_fds(struct msghdr *mh, struct vhost_user_msg *msg, bool *bad)
{
    if (mh->msg_flags & MSG_CTRUNC)
        *bad = true;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0)) {
            *bad = true;
            continue;
        }
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(fd));
            if (msg->nr_fds < VHOST_USER_MAX_FDS) {
                msg->fds[msg->nr_fds++] = fd;
            } else {
                close(fd);
                *bad = true;
            }
        }
    }
}

/* Reads exactly @p len bytes into @p buf, collecting any descriptors on the way. */
static int recv_exact(int sock, void *buf, size_t len, struct vhost_user_msg *msg, bool *bad,
                      uint64_t deadline_ns)
{
    size_t got = 0;
    while (got < len) {
        union {
            char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = (char *)buf + got, .iov_len = len - got};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.buf,
                            .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_ready(sock, POLLIN, deadline_ns);
                if (r < 0)
                    return r;
                continue;
            }
            return errno == ECONNRESET || errno == EPIPE ? -ECONNRESET : -errno;
        }
        take_fds(&mh, msg, bad);
        if (n == 0)
            return -ECONNRESET;
        got += (size_t)n;
    }
    return 0;
}

int vhost_user_recv(int sock, struct vhost_user_msg *msg, bool reply, uint64_t deadline_ns)
{
    bool bad = false;
    memset(msg, 0, sizeof(*msg));

    int r = recv_exact(sock, &msg->hdr, sizeof(msg->hdr), msg, &bad, deadline_ns);
    if (r == 0 && msg->hdr.size > VHOST_USER_PAYLOAD_MAX)
        r = -EMSGSIZE;
    if (r == 0)
        r = recv_exact(sock, &msg->payload, msg->hdr.size, msg, &bad, deadline_ns);
    if (r == 0)
        r = vhost_user_msg_check(msg, reply);
    if (r == 0 && bad)
        r = -EBADMSG;
    if (r < 0)
        vhost_user_msg_close_fds(msg);
    return r;
}

int vhost_user_send(int sock, const struct vhost_user_msg *msg, uint64_t deadline_ns)
{
    if (vhost_user_msg_check(msg, (msg->hdr.flags & VHOST_USER_FLAG_REPLY) != 0) < 0)
        return -EINVAL;

    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov[2] = {
        {.iov_base = (void *)&msg->hdr, .iov_len = sizeof(msg->hdr)},
        {.iov_base = (void *)&msg->payload, .iov_len = msg->hdr.size},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = msg->hdr.size > 0 ? 2 : 1};
    if (msg->nr_fds > 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * msg->nr_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * msg->nr_fds);
        memcpy(CMSG_DATA(c), msg->fds, sizeof(int) * msg->nr_fds);
    }

    size_t left = sizeof(msg->hdr) + msg->hdr.size;
    while (left > 0) {
        ssize_t n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_ready(sock, POLLOUT, deadline_ns);
                if (r < 0)
                    return r;
                continue;
            }
            return errno == ECONNRESET || errno == EPIPE ? -ECONNRESET : -errno;
        }
        /* The descriptors went with the first byte; the rest is plain data. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        left -= (size_t)n;
        size_t done = (size_t)n;
        while (done > 0 && mh.msg_iovlen > 0) {
            if (done < mh.msg_iov->iov_len) {
                mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + done;
                mh.msg_iov->iov_len -= done;
                done = 0;
            } else {
                done -= mh.msg_iov->iov_len;
                mh.msg_iov++;
                mh.msg_iovlen--;
            }
        }
    }
    return 0;
}
