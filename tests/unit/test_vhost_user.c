/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * vhost-user: the codec over socketpairs (round trips with descriptors, and every
 * malformed message refused without leaking a descriptor), the frontend against
 * backends that stall, die or lie, the backend library against a hostile frontend,
 * and the frontend driving the backend library in another thread over a memfd that
 * the test uses as guest RAM, acting as the guest's driver while the backend echoes
 * the readable bytes of each chain into its writable ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/guest_mem.h"
#include "core/log.h"
#include "core/os.h"
#include "vhost/backend.h"
#include "vhost/frontend.h"
#include "vhost/vhost_user.h"
#include "vhost/vhost_user_msg.h"
#include "virtio/virtio_ring.h"
#include "virtio/virtqueue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB          (1024ull * 1024ull)
#define MS           1000000ull
#define PF_PROTOCOL  (1ull << VHOST_USER_F_PROTOCOL_FEATURES)
#define F_VERSION_1  (1ull << VIRTIO_F_VERSION_1)
#define F_EVENT_IDX  (1ull << VIRTIO_F_EVENT_IDX)
#define F_INDIRECT   (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_DEVICE_BIT (1ull << 5) /* a device-specific bit the VMM does not support */
#define RAM_NAME     "vhost-test-ram"

/* ---- helpers ---- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Bytes of the test's memfds mapped in this process (adjacent mappings may merge). */
static uint64_t ram_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    uint64_t total = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        if (strstr(line, RAM_NAME) != NULL && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            total += hi - lo;
    }
    fclose(f);
    return total;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static uint64_t soon(uint64_t ms)
{
    return vhost_user_deadline(ms * MS);
}

static int make_memfd(uint64_t size, bool seal)
{
    int fd = memfd_create(RAM_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    if (seal)
        assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    return fd;
}

/* Writes raw bytes with descriptors, bypassing the codec's own checks. */
static void raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned nr_fds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    assert_true(nr_fds <= 16);
    if (nr_fds > 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nr_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nr_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nr_fds);
    }
    assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* Sends header + payload as raw bytes: any size, any flags. */
static void raw_msg(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
                    const int *fds, unsigned nr_fds)
{
    uint8_t buf[12 + 4096];
    struct vhost_user_hdr h = {.request = request, .flags = flags, .size = size};
    assert_true(size <= 4096);
    memcpy(buf, &h, sizeof(h));
    if (size > 0)
        memcpy(buf + sizeof(h), payload, size);
    raw_send(sock, buf, sizeof(h) + size, fds, nr_fds);
}

static void send_ok(int sock, const struct vhost_user_msg *m)
{
    assert_int_equal(vhost_user_send(sock, m, soon(1000)), 0);
}

/* A reply with a u64 payload, as a backend sends it. */
static void stage_u64(int sock, uint32_t request, uint64_t value)
{
    struct vhost_user_msg m;
    vhost_user_msg_init(&m, request, sizeof(uint64_t));
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    m.payload.u64 = value;
    send_ok(sock, &m);
}

static bool nothing_to_read(int sock)
{
    char c;
    return recv(sock, &c, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

/* Reads and checks one request the frontend sent (it must be well-formed). */
static void expect_request(int sock, uint32_t request, struct vhost_user_msg *m)
{
    assert_int_equal(vhost_user_recv(sock, m, false, soon(1000)), 0);
    assert_int_equal(m->hdr.request, request);
}

/* ---- codec: round trips ---- */

static void roundtrip(struct vhost_user_msg *m, bool reply, struct vhost_user_msg *out)
{
    int sv[2];
    pair(sv);
    send_ok(sv[0], m);
    assert_int_equal(vhost_user_recv(sv[1], out, reply, soon(1000)), 0);
    assert_int_equal(out->hdr.request, m->hdr.request);
    assert_int_equal(out->hdr.flags, m->hdr.flags);
    assert_int_equal(out->hdr.size, m->hdr.size);
    assert_memory_equal(&out->payload, &m->payload, m->hdr.size);
    assert_int_equal(out->nr_fds, m->nr_fds);
    assert_true(nothing_to_read(sv[1]));
    close(sv[0]);
    close(sv[1]);
}

static void same_file(int a, int b)
{
    struct stat sa, sb;
    assert_int_equal(fstat(a, &sa), 0);
    assert_int_equal(fstat(b, &sb), 0);
    assert_true(sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev);
    assert_true(a != b);
}

static void test_codec_roundtrip(void **state)
{
    (void)state;
    int before = count_fds();
    struct vhost_user_msg m, out;

    vhost_user_msg_init(&m, VHOST_USER_GET_FEATURES, 0);
    roundtrip(&m, false, &out);

    vhost_user_msg_init(&m, VHOST_USER_SET_FEATURES, 8);
    m.payload.u64 = F_VERSION_1 | PF_PROTOCOL;
    m.hdr.flags |= VHOST_USER_FLAG_NEED_REPLY;
    roundtrip(&m, false, &out);

    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_NUM, 8);
    m.payload.state = (struct vhost_user_vring_state){.index = 3, .num = 256};
    roundtrip(&m, false, &out);

    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_user_vring_addr));
    m.payload.addr = (struct vhost_user_vring_addr){
        .index = 1, .desc = 0x100000001000ull, .used = 0x100000002000ull, .avail = 0x100000003000};
    roundtrip(&m, false, &out);

    int efd = eventfd(0, EFD_CLOEXEC);
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_KICK, 8);
    m.payload.u64 = 7;
    m.fds[0] = efd;
    m.nr_fds = 1;
    roundtrip(&m, false, &out);
    same_file(out.fds[0], efd);
    vhost_user_msg_close_fds(&out);

    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_CALL, 8);
    m.payload.u64 = 7 | VHOST_USER_VRING_NOFD;
    roundtrip(&m, false, &out);

    int mfd = make_memfd(MiB, true);
    vhost_user_msg_init(&m, VHOST_USER_SET_MEM_TABLE, 8 + 2 * 32);
    m.payload.mem.num_regions = 2;
    m.payload.mem.regions[0] = (struct vhost_user_mem_region){0, MiB / 2, 0x100000000000, 0};
    m.payload.mem.regions[1] =
        (struct vhost_user_mem_region){4ull << 30, MiB / 2, 0x100100000000, MiB / 2};
    m.fds[0] = mfd;
    m.fds[1] = efd;
    m.nr_fds = 2;
    roundtrip(&m, false, &out);
    same_file(out.fds[0], mfd);
    same_file(out.fds[1], efd);
    vhost_user_msg_close_fds(&out);

    vhost_user_msg_init(&m, VHOST_USER_SET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + 256);
    m.payload.config.offset = 0;
    m.payload.config.size = 256;
    for (unsigned i = 0; i < 256; i++)
        m.payload.config.data[i] = (uint8_t)i;
    roundtrip(&m, false, &out);

    /* Replies. */
    vhost_user_msg_init(&m, VHOST_USER_GET_VRING_BASE, 8);
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    m.payload.state = (struct vhost_user_vring_state){.index = 3, .num = 42};
    roundtrip(&m, true, &out);

    vhost_user_msg_init(&m, VHOST_USER_GET_CONFIG, 0); /* a refusal */
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    roundtrip(&m, true, &out);

    vhost_user_msg_init(&m, VHOST_USER_SET_MEM_TABLE, 8); /* REPLY_ACK */
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    m.payload.u64 = 1;
    roundtrip(&m, true, &out);

    close(mfd);
    close(efd);
    assert_int_equal(count_fds(), before);
}

/* ---- codec: malformed messages ---- */

/*
 * Sends one raw message followed by a good one: the bad one is refused with @p err,
 * its descriptors are closed, and the good one is read next (the stream is in step).
 */
static void expect_refused(uint32_t request, uint32_t flags, const void *payload, uint32_t size,
                           unsigned nr_fds, bool reply, int err)
{
    int sv[2];
    pair(sv);
    int fds[16];
    for (unsigned i = 0; i < nr_fds; i++)
        fds[i] = eventfd(0, EFD_CLOEXEC);
    int before = count_fds();

    raw_msg(sv[0], request, flags, payload, size, fds, nr_fds);
    struct vhost_user_msg good, out;
    vhost_user_msg_init(&good, VHOST_USER_GET_FEATURES, reply ? 8 : 0);
    if (reply)
        good.hdr.flags |= VHOST_USER_FLAG_REPLY;
    send_ok(sv[0], &good);

    assert_int_equal(vhost_user_recv(sv[1], &out, reply, soon(1000)), err);
    assert_int_equal(out.nr_fds, 0);
    assert_int_equal(out.hdr.request, request);
    assert_int_equal(count_fds(), before); /* every received copy was closed */
    assert_int_equal(vhost_user_recv(sv[1], &out, reply, soon(1000)), 0);
    assert_int_equal(out.hdr.request, VHOST_USER_GET_FEATURES);

    for (unsigned i = 0; i < nr_fds; i++)
        close(fds[i]);
    close(sv[0]);
    close(sv[1]);
}

static void test_codec_wrong_size(void **state)
{
    (void)state;
    const uint32_t v = VHOST_USER_VERSION;
    uint8_t p[300] = {0};
    expect_refused(VHOST_USER_GET_FEATURES, v, p, 8, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_FEATURES, v, p, 4, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_FEATURES, v, p, 16, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_VRING_NUM, v, p, 0, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_VRING_ADDR, v, p, 32, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_GET_VRING_BASE, v, p, 12, 0, false, -EBADMSG);

    /* Memory table: count 2 but room for 1; count 0; count 9; count 1 but size for 2. */
    struct vhost_user_mem_table t = {.num_regions = 2};
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 8 + 32, 2, false, -EBADMSG);
    t.num_regions = 0;
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 8, 0, false, -EBADMSG);
    t.num_regions = 9;
    memcpy(p, &t, 8);
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, p, 8 + 8 * 32, 8, false, -EBADMSG);
    t.num_regions = 1;
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 8 + 2 * 32, 1, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 4, 0, false, -EBADMSG);

    /* Config: size field disagrees with the payload, is 0, or is over 256. */
    struct vhost_user_config c = {.offset = 0, .size = 8};
    expect_refused(VHOST_USER_GET_CONFIG, v, &c, 12 + 4, 0, false, -EBADMSG);
    c.size = 0;
    expect_refused(VHOST_USER_SET_CONFIG, v, &c, 12, 0, false, -EBADMSG);
    uint32_t big[3] = {0, 257, 0};
    memcpy(p, big, sizeof(big));
    expect_refused(VHOST_USER_SET_CONFIG, v, p, 12 + 256, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_GET_CONFIG, v, p, 8, 0, false, -EBADMSG);

    /* Kick word with bits beyond index and NOFD. */
    uint64_t word = 1ull << 9 | VHOST_USER_VRING_NOFD;
    expect_refused(VHOST_USER_SET_VRING_KICK, v, &word, 8, 0, false, -EBADMSG);

    /* Replies: a features reply of 4 bytes, a vring base of 16, a config of 12 + 0. */
    const uint32_t r = v | VHOST_USER_FLAG_REPLY;
    expect_refused(VHOST_USER_GET_FEATURES, r, p, 4, 0, true, -EBADMSG);
    expect_refused(VHOST_USER_GET_VRING_BASE, r, p, 16, 0, true, -EBADMSG);
    memset(p, 0, sizeof(p));
    expect_refused(VHOST_USER_GET_CONFIG, r, p, 12, 0, true, -EBADMSG);
    expect_refused(VHOST_USER_SET_OWNER, r, p, 0, 0, true, -EBADMSG); /* an ack is a u64 */
}

static void test_codec_wrong_fd_count(void **state)
{
    (void)state;
    const uint32_t v = VHOST_USER_VERSION;
    uint8_t p[300] = {0};
    uint64_t word = 2;
    expect_refused(VHOST_USER_GET_FEATURES, v, p, 0, 1, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_VRING_CALL, v, &word, 8, 0, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_VRING_CALL, v, &word, 8, 2, false, -EBADMSG);
    word |= VHOST_USER_VRING_NOFD;
    expect_refused(VHOST_USER_SET_VRING_ERR, v, &word, 8, 1, false, -EBADMSG);
    struct vhost_user_mem_table t = {.num_regions = 2};
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 8 + 2 * 32, 1, false, -EBADMSG);
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, &t, 8 + 2 * 32, 3, false, -EBADMSG);
    /* More than the control buffer holds: the kernel truncates, we close what came. */
    t.num_regions = 8;
    memcpy(p, &t, 8);
    expect_refused(VHOST_USER_SET_MEM_TABLE, v, p, 8 + 8 * 32, 12, false, -EBADMSG);
    /* A reply never carries descriptors. */
    expect_refused(VHOST_USER_GET_FEATURES, v | VHOST_USER_FLAG_REPLY, p, 8, 1, true, -EBADMSG);
}

static void test_codec_bad_flags(void **state)
{
    (void)state;
    uint8_t p[8] = {0};
    const uint32_t v = VHOST_USER_VERSION;
    expect_refused(VHOST_USER_GET_FEATURES, 2, p, 0, 0, false, -EPROTO);
    expect_refused(VHOST_USER_GET_FEATURES, 0, p, 0, 0, false, -EPROTO);
    expect_refused(VHOST_USER_GET_FEATURES, v | 1u << 7, p, 0, 0, false, -EPROTO);
    expect_refused(VHOST_USER_GET_FEATURES, v | VHOST_USER_FLAG_REPLY, p, 0, 1, false, -EPROTO);
    expect_refused(VHOST_USER_GET_FEATURES, v, p, 8, 0, true, -EPROTO);
    expect_refused(VHOST_USER_GET_FEATURES, v | VHOST_USER_FLAG_REPLY | VHOST_USER_FLAG_NEED_REPLY,
                   p, 8, 0, true, -EPROTO);
}

static void test_codec_unknown_request(void **state)
{
    (void)state;
    uint8_t p[40] = {0};
    const uint32_t v = VHOST_USER_VERSION;
    expect_refused(0, v, p, 0, 0, false, -EOPNOTSUPP);
    expect_refused(99, v | VHOST_USER_FLAG_NEED_REPLY, p, 40, 1, false, -EOPNOTSUPP);
    expect_refused(VHOST_USER_SET_MEM_TABLE + 1, v, p, 8, 0, false, -EOPNOTSUPP); /* LOG_BASE */
    /* A reply to a request we do not know can only be an acknowledgement. */
    expect_refused(1000, v | VHOST_USER_FLAG_REPLY, p, 16, 0, true, -EBADMSG);
}

static void test_codec_oversize(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    int efd = eventfd(0, EFD_CLOEXEC);
    int before = count_fds();
    uint8_t p[4096] = {0};
    raw_msg(sv[0], VHOST_USER_SET_CONFIG, VHOST_USER_VERSION, p, VHOST_USER_PAYLOAD_MAX + 1, &efd,
            1);
    struct vhost_user_msg out;
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(1000)), -EMSGSIZE);
    assert_int_equal(out.nr_fds, 0);
    assert_int_equal(count_fds(), before);

    close(sv[0]);
    close(sv[1]);
    close(efd);

    /* A header claiming 4 GiB - 1: refused before any payload is read. */
    pair(sv);
    struct vhost_user_hdr h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, UINT32_MAX};
    raw_send(sv[0], &h, sizeof(h), NULL, 0);
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(1000)), -EMSGSIZE);
    assert_int_equal(out.hdr.size, UINT32_MAX);
    close(sv[0]);
    close(sv[1]);
}

static void test_codec_truncated(void **state)
{
    (void)state;
    int sv[2];
    struct vhost_user_msg out;
    struct vhost_user_hdr h = {VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8};

    /* Half a header, then nothing: the deadline ends the wait. */
    pair(sv);
    raw_send(sv[0], &h, 6, NULL, 0);
    uint64_t t0 = os_monotonic_ns();
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(100)), -ETIMEDOUT);
    uint64_t took = os_monotonic_ns() - t0;
    assert_true(took >= 90 * MS && took < 2000 * MS);
    /* Half a header, then the peer closes. */
    close(sv[0]);
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(1000)), -ECONNRESET);
    close(sv[1]);

    /* Header and half the payload with a descriptor, then the peer closes. */
    pair(sv);
    int efd = eventfd(0, EFD_CLOEXEC);
    int before = count_fds();
    uint8_t buf[16];
    uint64_t word = 1;
    memcpy(buf, &h, 12);
    memcpy(buf + 12, &word, 4);
    raw_send(sv[0], buf, 16, &efd, 1);
    close(sv[0]);
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(1000)), -ECONNRESET);
    assert_int_equal(out.nr_fds, 0);
    assert_int_equal(count_fds(), before - 1); /* sv[0] closed; the received fd too */
    close(sv[1]);
    close(efd);

    /* A peer that closes at a message boundary. */
    pair(sv);
    close(sv[0]);
    assert_int_equal(vhost_user_recv(sv[1], &out, false, soon(1000)), -ECONNRESET);
    close(sv[1]);
}

static void test_codec_send_checks_and_deadline(void **state)
{
    (void)state;
    int sv[2];
    pair(sv);
    struct vhost_user_msg m;

    /* We never put a malformed message on the wire. */
    vhost_user_msg_init(&m, VHOST_USER_SET_FEATURES, 4);
    assert_int_equal(vhost_user_send(sv[0], &m, soon(100)), -EINVAL);
    vhost_user_msg_init(&m, 77, 0);
    assert_int_equal(vhost_user_send(sv[0], &m, soon(100)), -EINVAL);
    vhost_user_msg_init(&m, VHOST_USER_SET_CONFIG, VHOST_USER_PAYLOAD_MAX + 1);
    assert_int_equal(vhost_user_send(sv[0], &m, soon(100)), -EINVAL);
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_KICK, 8); /* no fd, no NOFD */
    assert_int_equal(vhost_user_send(sv[0], &m, soon(100)), -EINVAL);
    assert_true(nothing_to_read(sv[1]));

    /* A peer that never reads: sends fail at the deadline instead of blocking. */
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    vhost_user_msg_init(&m, VHOST_USER_SET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + 256);
    m.payload.config.size = 256;
    int r = 0;
    uint64_t t0 = os_monotonic_ns();
    for (int i = 0; i < 100000 && r == 0; i++)
        r = vhost_user_send(sv[0], &m, soon(50));
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(os_monotonic_ns() - t0 < 5000 * MS);

    /* A peer that is gone: an error, not SIGPIPE. */
    close(sv[1]);
    vhost_user_msg_init(&m, VHOST_USER_GET_FEATURES, 0);
    assert_int_equal(vhost_user_send(sv[0], &m, soon(100)), -ECONNRESET);
    close(sv[0]);
}

/* ---- frontend against scripted backends ---- */

static struct vhost_frontend fe;

/* A frontend on sv[0]; the test plays the backend on sv[1] with pre-staged replies. */
static void fe_on(int sv[2])
{
    pair(sv);
    vhost_fe_init(&fe, sv[0]);
    vhost_fe_set_timeout(&fe, 200 * MS);
}

/* Handshake with a backend offering bit 30 and @p pf, and @p queues when F_MQ. */
static void staged_handshake(int be_sock, uint64_t pf, uint64_t queues)
{
    stage_u64(be_sock, VHOST_USER_GET_FEATURES, F_VERSION_1 | F_DEVICE_BIT | PF_PROTOCOL);
    stage_u64(be_sock, VHOST_USER_GET_PROTOCOL_FEATURES, pf);
    if (pf & (1ull << VHOST_USER_PROTOCOL_F_MQ))
        stage_u64(be_sock, VHOST_USER_GET_QUEUE_NUM, queues);
    if (pf & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK))
        stage_u64(be_sock, VHOST_USER_SET_OWNER, 0);
    assert_int_equal(vhost_fe_handshake(&fe), 0);
    struct vhost_user_msg m;
    expect_request(be_sock, VHOST_USER_GET_FEATURES, &m);
    expect_request(be_sock, VHOST_USER_GET_PROTOCOL_FEATURES, &m);
    expect_request(be_sock, VHOST_USER_SET_PROTOCOL_FEATURES, &m);
    assert_int_equal(m.payload.u64, pf & VHOST_FE_PROTOCOL_FEATURES);
    if (pf & (1ull << VHOST_USER_PROTOCOL_F_MQ))
        expect_request(be_sock, VHOST_USER_GET_QUEUE_NUM, &m);
    expect_request(be_sock, VHOST_USER_SET_OWNER, &m);
    assert_int_equal(!!(m.hdr.flags & VHOST_USER_FLAG_NEED_REPLY),
                     !!(pf & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)));
}

static void fe_off(int sv[2])
{
    vhost_fe_close(&fe);
    close(sv[1]);
}

static void test_fe_backend_never_replies(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    fe_on(sv);
    vhost_fe_set_timeout(&fe, 100 * MS);
    uint64_t t0 = os_monotonic_ns();
    assert_int_equal(vhost_fe_handshake(&fe), -ETIMEDOUT);
    uint64_t took = os_monotonic_ns() - t0;
    assert_true(took >= 90 * MS && took < 2000 * MS);
    assert_true(fe.dead);
    assert_int_equal(fe.error, -ETIMEDOUT);
    /* Dead for good, without touching the socket again. */
    assert_int_equal(vhost_fe_set_features(&fe, 0), -ENOTCONN);
    assert_int_equal(vhost_fe_check_idle(&fe), -ENOTCONN);
    fe_off(sv);
    assert_int_equal(count_fds(), before);
}

struct closer_args {
    int sock;
    int seen; /* requests read before closing */
};

/* A backend that answers GET_FEATURES (offering protocol features) and then dies. */
static void *closing_backend(void *arg)
{
    struct closer_args *a = arg;
    struct vhost_user_msg m;
    if (vhost_user_recv(a->sock, &m, false, soon(2000)) == 0) {
        a->seen++;
        stage_u64(a->sock, VHOST_USER_GET_FEATURES, F_VERSION_1 | PF_PROTOCOL);
        if (vhost_user_recv(a->sock, &m, false, soon(2000)) == 0)
            a->seen++;
    }
    close(a->sock);
    return NULL;
}

static void test_fe_backend_closes_mid_setup(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    fe_on(sv);
    vhost_fe_set_timeout(&fe, 2000 * MS);
    struct closer_args a = {.sock = sv[1]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, closing_backend, &a), 0);
    assert_int_equal(vhost_fe_handshake(&fe), -ECONNRESET);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.seen, 2);
    assert_true(fe.dead);
    vhost_fe_close(&fe);

    /* Half a reply, then the backend's end shuts. */
    fe_on(sv);
    struct vhost_user_hdr h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY,
                               8};
    raw_send(sv[1], &h, sizeof(h), NULL, 0);
    shutdown(sv[1], SHUT_WR);
    assert_int_equal(vhost_fe_handshake(&fe), -ECONNRESET);
    fe_off(sv);
    assert_int_equal(count_fds(), before);
}

static void test_fe_bad_replies(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    uint8_t p[8] = {0};

    /* An answer to another request. */
    fe_on(sv);
    stage_u64(sv[1], VHOST_USER_GET_PROTOCOL_FEATURES, 0);
    assert_int_equal(vhost_fe_handshake(&fe), -EPROTO);
    fe_off(sv);

    /* A reply without the REPLY flag. */
    fe_on(sv);
    raw_msg(sv[1], VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, p, 8, NULL, 0);
    assert_int_equal(vhost_fe_handshake(&fe), -EPROTO);
    fe_off(sv);

    /* A reply with a descriptor: refused, and the descriptor closed. */
    fe_on(sv);
    int efd = eventfd(0, EFD_CLOEXEC);
    raw_msg(sv[1], VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, p, 8, &efd,
            1);
    close(efd);
    assert_int_equal(vhost_fe_handshake(&fe), -EBADMSG);
    fe_off(sv);

    /* An oversized reply. */
    fe_on(sv);
    uint8_t big[1024] = {0};
    raw_msg(sv[1], VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, big,
            sizeof(big), NULL, 0);
    assert_int_equal(vhost_fe_handshake(&fe), -EMSGSIZE);
    fe_off(sv);

    /* Queue counts of 0 and 1000. */
    static const uint64_t counts[] = {0, 1000};
    for (unsigned i = 0; i < 2; i++) {
        fe_on(sv);
        stage_u64(sv[1], VHOST_USER_GET_FEATURES, PF_PROTOCOL);
        stage_u64(sv[1], VHOST_USER_GET_PROTOCOL_FEATURES, 1ull << VHOST_USER_PROTOCOL_F_MQ);
        stage_u64(sv[1], VHOST_USER_GET_QUEUE_NUM, counts[i]);
        assert_int_equal(vhost_fe_handshake(&fe), -EPROTO);
        fe_off(sv);
    }

    /* GET_VRING_BASE answered for another ring, or with an index above 65535. */
    static const struct vhost_user_vring_state bad_bases[] = {{1, 5}, {0, 70000}};
    for (unsigned i = 0; i < 2; i++) {
        fe_on(sv);
        staged_handshake(sv[1], 0, 0);
        struct vhost_user_msg m;
        vhost_user_msg_init(&m, VHOST_USER_GET_VRING_BASE, 8);
        m.hdr.flags |= VHOST_USER_FLAG_REPLY;
        m.payload.state = bad_bases[i];
        send_ok(sv[1], &m);
        uint16_t next = 0;
        assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), -EPROTO);
        assert_true(fe.dead);
        fe_off(sv);
    }
    assert_int_equal(count_fds(), before);
}

static void test_fe_nack_and_config(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    const uint64_t pf =
        (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ull << VHOST_USER_PROTOCOL_F_CONFIG);

    /* A refused SET_OWNER is an answer: the connection lives on. */
    fe_on(sv);
    stage_u64(sv[1], VHOST_USER_GET_FEATURES, F_VERSION_1 | PF_PROTOCOL);
    stage_u64(sv[1], VHOST_USER_GET_PROTOCOL_FEATURES, pf | (1ull << 40));
    stage_u64(sv[1], VHOST_USER_SET_OWNER, 1);
    assert_int_equal(vhost_fe_handshake(&fe), -EREMOTEIO);
    assert_false(fe.dead);
    assert_int_equal(fe.protocol_features, pf); /* bit 40 is not ours to use */
    stage_u64(sv[1], VHOST_USER_SET_FEATURES, 0);
    assert_int_equal(vhost_fe_set_features(&fe, F_VERSION_1), 0);
    assert_int_equal(fe.acked_features, F_VERSION_1);
    assert_int_equal(vhost_fe_set_features(&fe, 1ull << 20), -EINVAL); /* not offered */
    assert_int_equal(vhost_fe_set_features(&fe, PF_PROTOCOL), -EINVAL);
    fe_off(sv);

    /* GET_CONFIG: refused (empty), for the wrong range (dead). */
    fe_on(sv);
    staged_handshake(sv[1], pf, 0);
    struct vhost_user_msg m;
    vhost_user_msg_init(&m, VHOST_USER_GET_CONFIG, 0);
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    send_ok(sv[1], &m);
    assert_int_equal(vhost_fe_get_config(&fe, 8), -EREMOTEIO);
    assert_false(fe.dead);
    vhost_user_msg_init(&m, VHOST_USER_GET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + 8);
    m.hdr.flags |= VHOST_USER_FLAG_REPLY;
    m.payload.config.size = 8;
    memcpy(m.payload.config.data, "12345678", 8);
    send_ok(sv[1], &m);
    assert_int_equal(vhost_fe_get_config(&fe, 8), 0);
    assert_int_equal(fe.config_len, 8);
    assert_memory_equal(fe.config, "12345678", 8);
    stage_u64(sv[1], VHOST_USER_SET_CONFIG, 0);
    assert_int_equal(vhost_fe_set_config(&fe, 2, "ab", 2), 0);
    assert_memory_equal(fe.config, "12ab5678", 8);
    assert_int_equal(vhost_fe_set_config(&fe, 255, "ab", 2), -EINVAL);
    m.payload.config.size = 4;
    m.hdr.size = VHOST_USER_CONFIG_HDR_SIZE + 4;
    send_ok(sv[1], &m);
    assert_int_equal(vhost_fe_get_config(&fe, 8), -EPROTO);
    assert_true(fe.dead);
    fe_off(sv);
    assert_int_equal(count_fds(), before);
}

static void test_fe_check_idle(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    fe_on(sv);
    assert_int_equal(vhost_fe_check_idle(&fe), 0);
    stage_u64(sv[1], VHOST_USER_GET_FEATURES, 0); /* unsolicited */
    assert_int_equal(vhost_fe_check_idle(&fe), -EPROTO);
    assert_true(fe.dead);
    fe_off(sv);

    fe_on(sv);
    close(sv[1]);
    assert_int_equal(vhost_fe_check_idle(&fe), -ECONNRESET);
    vhost_fe_close(&fe);
    assert_int_equal(count_fds(), before);
}

static void test_fe_input_validation(void **state)
{
    (void)state;
    int before = count_fds();
    int sv[2];
    fe_on(sv);
    staged_handshake(sv[1], 0, 0); /* no REPLY_ACK: the table is synced by GET_FEATURES */
    int mfd = make_memfd(2 * MiB, true);
    struct vhost_fe_region r[2] = {{0, MiB, mfd, 0}, {MiB / 2, MiB, mfd, MiB}};

    assert_int_equal(vhost_fe_set_mem_table(&fe, r, 2), -EINVAL); /* overlap */
    assert_int_equal(vhost_fe_set_mem_table(&fe, r, 0), -EINVAL);
    assert_int_equal(vhost_fe_set_mem_table(&fe, r, 9), -EINVAL);
    struct vhost_fe_region bad = {UINT64_MAX - 10, 100, mfd, 0};
    assert_int_equal(vhost_fe_set_mem_table(&fe, &bad, 1), -EINVAL);
    bad = (struct vhost_fe_region){0, 0, mfd, 0};
    assert_int_equal(vhost_fe_set_mem_table(&fe, &bad, 1), -EINVAL);
    bad = (struct vhost_fe_region){0, MiB, -1, 0};
    assert_int_equal(vhost_fe_set_mem_table(&fe, &bad, 1), -EINVAL);
    assert_true(nothing_to_read(sv[1]));

    r[1].gpa = 4ull << 30;
    stage_u64(sv[1], VHOST_USER_GET_FEATURES, F_VERSION_1 | PF_PROTOCOL);
    assert_int_equal(vhost_fe_set_mem_table(&fe, r, 2), 0);
    struct vhost_user_msg m;
    expect_request(sv[1], VHOST_USER_SET_MEM_TABLE, &m);
    assert_int_equal(m.nr_fds, 2);
    assert_int_equal(m.payload.mem.num_regions, 2);
    for (unsigned i = 0; i < 2; i++) {
        const struct vhost_user_mem_region *w = &m.payload.mem.regions[i];
        assert_int_equal(w->guest_phys_addr, r[i].gpa);
        assert_int_equal(w->userspace_addr, fe.uaddr_base + r[i].gpa);
        assert_int_equal(w->mmap_offset, r[i].offset);
        same_file(m.fds[i], mfd);
    }
    vhost_user_msg_close_fds(&m);
    expect_request(sv[1], VHOST_USER_GET_FEATURES, &m);

    uint64_t ua;
    assert_int_equal(vhost_fe_translate(&fe, 0x1000, 16, &ua), 0);
    assert_int_equal(ua, fe.uaddr_base + 0x1000);
    assert_int_equal(vhost_fe_translate(&fe, MiB - 8, 16, &ua), -EFAULT); /* straddles the end */
    assert_int_equal(vhost_fe_translate(&fe, 2 * MiB, 1, &ua), -EFAULT);
    assert_int_equal(vhost_fe_translate(&fe, UINT64_MAX, 2, &ua), -EFAULT);

    int efd = eventfd(0, EFD_CLOEXEC);
    struct vhost_fe_vring ring = {.size = 8,
                                  .desc_gpa = 0x1000,
                                  .avail_gpa = 0x2000,
                                  .used_gpa = 0x3000,
                                  .kick_fd = efd,
                                  .call_fd = efd,
                                  .err_fd = -1};
    struct vhost_fe_vring b = ring;
    b.size = 6;
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EINVAL);
    b = ring;
    b.desc_gpa = 0x1008;
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EINVAL);
    b = ring;
    b.used_gpa = 0x3002;
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EINVAL);
    b = ring;
    b.kick_fd = -1;
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EINVAL);
    b = ring;
    b.used_gpa = MiB - 16; /* the used ring of 8 entries is 70 bytes */
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EFAULT);
    b = ring;
    b.avail_gpa = 3 * MiB;
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &b), -EFAULT);
    assert_int_equal(vhost_fe_vring_start(&fe, 256, &ring), -EINVAL);
    assert_int_equal(vhost_fe_get_config(&fe, 8), -EOPNOTSUPP); /* F_CONFIG not negotiated */
    assert_int_equal(vhost_fe_reset_device(&fe), -EOPNOTSUPP);
    assert_true(nothing_to_read(sv[1]));

    /* The good ring: NUM, BASE, ADDR (synthetic), CALL, KICK, ENABLE; no ERR. */
    assert_int_equal(vhost_fe_vring_start(&fe, 1, &ring), 0);
    expect_request(sv[1], VHOST_USER_SET_VRING_NUM, &m);
    assert_int_equal(m.payload.state.num, 8);
    expect_request(sv[1], VHOST_USER_SET_VRING_BASE, &m);
    expect_request(sv[1], VHOST_USER_SET_VRING_ADDR, &m);
    assert_int_equal(m.payload.addr.index, 1);
    assert_int_equal(m.payload.addr.desc, fe.uaddr_base + 0x1000);
    assert_int_equal(m.payload.addr.avail, fe.uaddr_base + 0x2000);
    assert_int_equal(m.payload.addr.used, fe.uaddr_base + 0x3000);
    expect_request(sv[1], VHOST_USER_SET_VRING_CALL, &m);
    vhost_user_msg_close_fds(&m);
    expect_request(sv[1], VHOST_USER_SET_VRING_KICK, &m);
    assert_int_equal(m.payload.u64, 1);
    assert_int_equal(m.nr_fds, 1);
    vhost_user_msg_close_fds(&m);
    expect_request(sv[1], VHOST_USER_SET_VRING_ENABLE, &m);
    assert_true(nothing_to_read(sv[1]));

    close(efd);
    close(mfd);
    fe_off(sv);
    assert_int_equal(count_fds(), before);
}

/* ---- the backend library against a hostile frontend ---- */

#define ECHO_QUEUES 2
static uint8_t echo_config[8];

static void reset_echo_config(void)
{
    static const uint8_t initial[8] = {'B', 'U', 'L', 'K', 'H', 'E', 'A', 'D'};
    memcpy(echo_config, initial, sizeof(echo_config));
}

static int echo_get_config(void *opaque, uint32_t offset, void *buf, uint32_t len)
{
    (void)opaque;
    memcpy(buf, echo_config + offset, len);
    return 0;
}

static int echo_set_config(void *opaque, uint32_t offset, const void *buf, uint32_t len)
{
    (void)opaque;
    memcpy(echo_config + offset, buf, len);
    return 0;
}

/* The echo device: copies each chain's readable bytes into its writable bytes. */
static int echo_process(void *opaque, struct vhost_be *be, unsigned index, struct vq *vq)
{
    (void)opaque;
    (void)be;
    (void)index;
    struct vq_iovec iov[16];
    struct vq_chain ch;
    uint8_t tmp[4096];
    for (;;) {
        uint16_t head;
        int r;
        vq_avail_notify_disable(vq);
        while ((r = vq_pop_avail(vq, &head)) == 1) {
            r = vq_walk_chain(vq, head, VQ_ACCESS_ANY, iov, 16, &ch);
            if (r < 0)
                return r;
            size_t n = 0;
            for (unsigned i = 0; i < ch.nr_readable; i++) {
                size_t take = iov[i].len < sizeof(tmp) - n ? iov[i].len : sizeof(tmp) - n;
                memcpy(tmp + n, iov[i].base, take);
                n += take;
            }
            size_t done = 0;
            for (unsigned i = ch.nr_readable; i < ch.nr_readable + ch.nr_writable && done < n;
                 i++) {
                size_t put = iov[i].len < n - done ? iov[i].len : n - done;
                memcpy(iov[i].base, tmp + done, put);
                done += put;
            }
            r = vq_push_used(vq, head, (uint32_t)done);
            if (r < 0)
                return r;
        }
        if (r < 0)
            return r;
        r = vq_avail_notify_enable(vq);
        if (r <= 0)
            return r;
    }
}

static const struct vhost_be_device echo_dev = {
    .features = F_VERSION_1 | F_EVENT_IDX | F_INDIRECT | F_DEVICE_BIT,
    .nr_queues = ECHO_QUEUES,
    .config_size = sizeof(echo_config),
    .get_config = echo_get_config,
    .set_config = echo_set_config,
    .process_queue = echo_process,
};

static struct vhost_be be;

/* The test as frontend on hs[0], the library on hs[1], in this thread. */
static void be_on(int hs[2], const struct vhost_be_device *dev)
{
    pair(hs);
    assert_int_equal(vhost_be_init(&be, hs[1], dev), 0);
}

/* One request with NEED_REPLY; the library handles it; returns the ack (0 = ok). */
static uint64_t be_ack(int hs[2], struct vhost_user_msg *m)
{
    struct vhost_user_msg reply;
    m->hdr.flags |= VHOST_USER_FLAG_NEED_REPLY;
    send_ok(hs[0], m);
    assert_int_equal(vhost_be_handle_message(&be), 0);
    assert_int_equal(vhost_user_recv(hs[0], &reply, true, soon(1000)), 0);
    assert_int_equal(reply.hdr.request, m->hdr.request);
    return reply.payload.u64;
}

static void be_get(int hs[2], uint32_t request, const struct vhost_user_msg *in,
                   struct vhost_user_msg *reply)
{
    struct vhost_user_msg m;
    if (in != NULL)
        m = *in;
    else
        vhost_user_msg_init(&m, request, 0);
    send_ok(hs[0], &m);
    assert_int_equal(vhost_be_handle_message(&be), 0);
    assert_int_equal(vhost_user_recv(hs[0], reply, true, soon(1000)), 0);
    assert_int_equal(reply->hdr.request, m.hdr.request);
}

static void mem_table(struct vhost_user_msg *m, unsigned n)
{
    vhost_user_msg_init(m, VHOST_USER_SET_MEM_TABLE, 8 + 32 * n);
    m->payload.mem.num_regions = n;
    m->nr_fds = n;
}

static void state_msg(struct vhost_user_msg *m, uint32_t request, uint32_t index, uint32_t num)
{
    vhost_user_msg_init(m, request, 8);
    m->payload.state = (struct vhost_user_vring_state){index, num};
}

static void test_be_negotiation(void **state)
{
    (void)state;
    int before = count_fds();
    int hs[2];
    be_on(hs, &echo_dev);
    struct vhost_user_msg m, reply;

    be_get(hs, VHOST_USER_GET_FEATURES, NULL, &reply);
    assert_int_equal(reply.payload.u64, echo_dev.features | PF_PROTOCOL);
    be_get(hs, VHOST_USER_GET_PROTOCOL_FEATURES, NULL, &reply);
    assert_int_equal(reply.payload.u64, (1ull << VHOST_USER_PROTOCOL_F_MQ) |
                                            (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                                            (1ull << VHOST_USER_PROTOCOL_F_CONFIG) |
                                            (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE));
    be_get(hs, VHOST_USER_GET_QUEUE_NUM, NULL, &reply);
    assert_int_equal(reply.payload.u64, ECHO_QUEUES);
    be_get(hs, VHOST_USER_GET_MAX_MEM_SLOTS, NULL, &reply);
    assert_int_equal(reply.payload.u64, 8);

    vhost_user_msg_init(&m, VHOST_USER_SET_PROTOCOL_FEATURES, 8);
    m.payload.u64 = 1ull << 1; /* LOG_SHMFD: not offered */
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.protocol_features, 0);
    m.payload.u64 = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK;
    assert_int_equal(be_ack(hs, &m), 0);

    vhost_user_msg_init(&m, VHOST_USER_SET_FEATURES, 8);
    m.payload.u64 = F_VERSION_1 | (1ull << 12);
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.features, 0);
    m.payload.u64 = F_VERSION_1 | F_EVENT_IDX | PF_PROTOCOL;
    assert_int_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.features, F_VERSION_1 | F_EVENT_IDX);
    assert_true(be.protocol_negotiated);

    /* Config: in range, beyond the device's 8 bytes (empty reply), writes. */
    reset_echo_config();
    vhost_user_msg_init(&m, VHOST_USER_GET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + 4);
    m.payload.config.offset = 4;
    m.payload.config.size = 4;
    be_get(hs, 0, &m, &reply);
    assert_int_equal(reply.hdr.size, VHOST_USER_CONFIG_HDR_SIZE + 4);
    assert_memory_equal(reply.payload.config.data, "HEAD", 4);
    m.payload.config.offset = 5;
    be_get(hs, 0, &m, &reply);
    assert_int_equal(reply.hdr.size, 0);
    m.payload.config.offset = UINT32_MAX;
    be_get(hs, 0, &m, &reply);
    assert_int_equal(reply.hdr.size, 0);
    vhost_user_msg_init(&m, VHOST_USER_SET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + 4);
    m.payload.config.offset = 0;
    m.payload.config.size = 4;
    memcpy(m.payload.config.data, "bulk", 4);
    assert_int_equal(be_ack(hs, &m), 0);
    assert_memory_equal(echo_config, "bulkHEAD", 8);
    m.payload.config.offset = 6;
    assert_int_not_equal(be_ack(hs, &m), 0);
    m.payload.config.offset = 0;
    m.payload.config.flags = 2;
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_memory_equal(echo_config, "bulkHEAD", 8);

    /* Ring messages for a ring that does not exist, or with bad values. */
    state_msg(&m, VHOST_USER_SET_VRING_NUM, ECHO_QUEUES, 8);
    assert_int_not_equal(be_ack(hs, &m), 0);
    state_msg(&m, VHOST_USER_SET_VRING_NUM, 0, 6);
    assert_int_not_equal(be_ack(hs, &m), 0);
    state_msg(&m, VHOST_USER_SET_VRING_NUM, 0, 65536);
    assert_int_not_equal(be_ack(hs, &m), 0);
    state_msg(&m, VHOST_USER_SET_VRING_BASE, 0, 65536);
    assert_int_not_equal(be_ack(hs, &m), 0);
    state_msg(&m, VHOST_USER_SET_VRING_ENABLE, 0, 2);
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.queues[0].size, 0);

    /* Unknown request: refused when an answer is wanted, the connection lives. */
    int efd = eventfd(0, EFD_CLOEXEC);
    uint64_t word = 0;
    raw_msg(hs[0], 60, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY, &word, 8, &efd, 1);
    assert_int_equal(vhost_be_handle_message(&be), 0);
    assert_int_equal(vhost_user_recv(hs[0], &reply, true, soon(1000)), 0);
    assert_int_equal(reply.hdr.request, 60);
    assert_int_not_equal(reply.payload.u64, 0);
    /* Polling mode is not offered: SET_VRING_KICK without a descriptor. */
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_KICK, 8);
    m.payload.u64 = VHOST_USER_VRING_NOFD;
    assert_int_not_equal(be_ack(hs, &m), 0);
    /* Without NEED_REPLY a refusal ends the connection. */
    state_msg(&m, VHOST_USER_SET_VRING_NUM, 0, 6);
    send_ok(hs[0], &m);
    assert_int_equal(vhost_be_handle_message(&be), -EINVAL);

    vhost_be_destroy(&be);
    close(hs[0]);
    close(efd);
    assert_int_equal(count_fds(), before);
}

static void test_be_malformed_ends_connection(void **state)
{
    (void)state;
    int before = count_fds();
    int hs[2];
    uint8_t p[16] = {0};

    be_on(hs, &echo_dev);
    raw_msg(hs[0], VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, p, 4, NULL, 0);
    assert_int_equal(vhost_be_handle_message(&be), -EBADMSG);
    vhost_be_destroy(&be);
    close(hs[0]);

    be_on(hs, &echo_dev);
    raw_msg(hs[0], 60, VHOST_USER_VERSION, p, 0, NULL, 0);
    assert_int_equal(vhost_be_handle_message(&be), -EOPNOTSUPP);
    vhost_be_destroy(&be);
    close(hs[0]);

    be_on(hs, &echo_dev);
    struct vhost_user_msg m;
    state_msg(&m, VHOST_USER_GET_VRING_BASE, 9, 0);
    send_ok(hs[0], &m);
    assert_int_equal(vhost_be_handle_message(&be), -EINVAL);
    vhost_be_destroy(&be);
    close(hs[0]);

    /* A frontend that sends half a message and stalls costs the deadline only. */
    be_on(hs, &echo_dev);
    be.timeout_ns = 100 * MS;
    raw_send(hs[0], p, 5, NULL, 0);
    assert_int_equal(vhost_be_handle_message(&be), -ETIMEDOUT);
    close(hs[0]);
    assert_int_equal(vhost_be_handle_message(&be), -ECONNRESET);
    vhost_be_destroy(&be);

    struct vhost_be_device bad = echo_dev;
    bad.nr_queues = VHOST_BE_MAX_QUEUES + 1;
    assert_int_equal(vhost_be_init(&be, 0, &bad), -EINVAL);
    bad = echo_dev;
    bad.features |= PF_PROTOCOL;
    assert_int_equal(vhost_be_init(&be, 0, &bad), -EINVAL);
    bad = echo_dev;
    bad.process_queue = NULL;
    assert_int_equal(vhost_be_init(&be, 0, &bad), -EINVAL);
    assert_int_equal(count_fds(), before);
}

/* One region of @p mfd into message slot @p i. */
static void region(struct vhost_user_msg *m, unsigned i, uint64_t gpa, uint64_t size,
                   uint64_t uaddr, uint64_t off, int mfd)
{
    m->payload.mem.regions[i] = (struct vhost_user_mem_region){gpa, size, uaddr, off};
    m->fds[i] = mfd;
}

static void test_be_hostile_memory_table(void **state)
{
    (void)state;
    int before = count_fds();
    uint64_t maps = ram_mapped();
    int hs[2];
    be_on(hs, &echo_dev);
    int mfd = make_memfd(MiB, true);
    int loose = make_memfd(MiB, false);
    int efd = eventfd(0, EFD_CLOEXEC);
    const uint64_t UA = 0x200000000000ull;
    struct vhost_user_msg m;

    /* Region beyond the end of the file. */
    mem_table(&m, 1);
    region(&m, 0, 0, MiB, UA, 4096, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 0, 0, 2 * MiB, UA, 0, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    /* Offset + size wrapping 2^64, gpa wrapping, user address wrapping, empty. */
    region(&m, 0, 0, 4096, UA, UINT64_MAX - 100, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 0, UINT64_MAX - 100, 4096, UA, 0, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 0, 0, 4096, UINT64_MAX - 100, 0, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 0, 0, 0, UA, 0, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    /* Not a regular file; a file not sealed against shrinking. */
    region(&m, 0, 0, 4096, UA, 0, efd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 0, 0, 4096, UA, 0, loose);
    assert_int_not_equal(be_ack(hs, &m), 0);
    /* Overlapping guest-physical ranges; overlapping user ranges. */
    mem_table(&m, 2);
    region(&m, 0, 0, MiB / 2, UA, 0, mfd);
    region(&m, 1, MiB / 4, MiB / 2, UA + MiB, MiB / 2, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    region(&m, 1, MiB, MiB / 2, UA + MiB / 4, MiB / 2, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.nr_regions, 0);
    assert_int_equal(ram_mapped(), maps);

    /* A good table: two regions, given highest address first. */
    region(&m, 0, 4ull << 30, MiB / 2, UA + (4ull << 30), MiB / 2, mfd);
    region(&m, 1, 0, MiB / 2, UA, 0, mfd);
    assert_int_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.nr_regions, 2);
    assert_int_equal(ram_mapped(), maps + MiB);
    const struct guest_mem *view = &be.mem[be.cur_mem];
    assert_int_equal(view->nr_regions, 2);
    assert_int_equal(view->regions[0].gpa, 0);
    assert_int_equal(view->regions[1].gpa, 4ull << 30);

    /* A bad table now leaves the good one in place. */
    mem_table(&m, 1);
    region(&m, 0, 0, 2 * MiB, UA, 0, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_int_equal(be.nr_regions, 2);
    assert_true(view == &be.mem[be.cur_mem]);
    assert_int_equal(ram_mapped(), maps + MiB);

    /* Ring addresses outside every region, and a ring crossing a region's end. */
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_user_vring_addr));
    m.payload.addr = (struct vhost_user_vring_addr){
        .index = 0, .desc = UA + MiB, .avail = UA + 0x2000, .used = UA + 0x3000};
    assert_int_not_equal(be_ack(hs, &m), 0);
    m.payload.addr.desc = 0x1000; /* a guest-physical address is not a user address */
    assert_int_not_equal(be_ack(hs, &m), 0);
    m.payload.addr.desc = UA + 0x1000;
    m.payload.addr.flags = 1; /* dirty logging is not offered */
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_false(be.queues[0].addr_set);
    m.payload.addr.flags = 0;
    m.payload.addr.used = UA + MiB / 2 - 16; /* starts inside, ends outside */
    assert_int_equal(be_ack(hs, &m), 0);
    state_msg(&m, VHOST_USER_SET_VRING_NUM, 0, 8);
    assert_int_equal(be_ack(hs, &m), 0);
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_KICK, 8);
    m.fds[0] = efd;
    m.nr_fds = 1;
    assert_int_not_equal(be_ack(hs, &m), 0); /* the whole used ring is not in a region */
    assert_false(be.queues[0].started);
    assert_int_equal(be.queues[0].kick_fd, -1);

    /* Fixed: the ring starts, its kick descriptor made non-blocking. */
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_ADDR, sizeof(struct vhost_user_vring_addr));
    m.payload.addr = (struct vhost_user_vring_addr){
        .index = 0, .desc = UA + 0x1000, .avail = UA + 0x2000, .used = UA + 0x3000};
    assert_int_equal(be_ack(hs, &m), 0);
    vhost_user_msg_init(&m, VHOST_USER_SET_VRING_KICK, 8);
    m.fds[0] = efd;
    m.nr_fds = 1;
    assert_int_equal(be_ack(hs, &m), 0);
    assert_true(be.queues[0].started);
    assert_true(fcntl(be.queues[0].kick_fd, F_GETFL) & O_NONBLOCK);
    /* A running ring cannot be re-addressed or re-sized. */
    state_msg(&m, VHOST_USER_SET_VRING_NUM, 0, 16);
    assert_int_not_equal(be_ack(hs, &m), 0);

    /* A new table that no longer holds the running ring is refused. */
    mem_table(&m, 1);
    region(&m, 0, 4ull << 30, MiB / 2, UA + (4ull << 30), MiB / 2, mfd);
    assert_int_not_equal(be_ack(hs, &m), 0);
    assert_true(be.queues[0].vq.mem == &be.mem[be.cur_mem]);
    /* One that holds it (other user addresses, other mapping) replaces the old. */
    region(&m, 0, 0, MiB, UA, 0, mfd);
    unsigned old = be.cur_mem;
    assert_int_equal(be_ack(hs, &m), 0);
    assert_int_not_equal(be.cur_mem, old);
    assert_true(be.queues[0].vq.enabled);
    assert_true(be.queues[0].vq.mem == &be.mem[be.cur_mem]);
    assert_int_equal(ram_mapped(), maps + MiB);

    /* GET_VRING_BASE stops the ring and reports where it stands. */
    struct vhost_user_msg reply;
    state_msg(&m, VHOST_USER_GET_VRING_BASE, 0, 0);
    be_get(hs, 0, &m, &reply);
    assert_int_equal(reply.payload.state.index, 0);
    assert_int_equal(reply.payload.state.num, 0);
    assert_false(be.queues[0].started);
    assert_int_equal(be.queues[0].kick_fd, -1);

    /* Memory slots are not offered: ADD_MEM_REG is refused, its fd closed. */
    vhost_user_msg_init(&m, VHOST_USER_ADD_MEM_REG, sizeof(struct vhost_user_mem_single));
    m.fds[0] = mfd;
    m.nr_fds = 1;
    assert_int_not_equal(be_ack(hs, &m), 0);

    /* Unsealed memory when the device accepts it. */
    vhost_be_destroy(&be);
    close(hs[0]);
    assert_int_equal(ram_mapped(), maps);
    struct vhost_be_device lax = echo_dev;
    lax.accept_unsealed_memory = true;
    be_on(hs, &lax);
    mem_table(&m, 1);
    region(&m, 0, 0, MiB, UA, 0, loose);
    assert_int_equal(be_ack(hs, &m), 0);
    vhost_be_destroy(&be);
    close(hs[0]);

    close(mfd);
    close(loose);
    close(efd);
    assert_int_equal(count_fds(), before);
    assert_int_equal(ram_mapped(), maps);
}

/* ---- frontend and backend library together ---- */

#define QSIZE    8
#define RAM_SIZE (2 * MiB)
#define HIGH_GPA (4ull << 30)
#define RING_GPA HIGH_GPA /* rings in the high region */
#define DATA_GPA 0x10000ull

struct rig {
    int memfd;
    uint8_t *map; /* the test's own mapping of guest RAM */
    struct guest_mem gm;
    int sv[2];
    pthread_t thread;
    int be_result;
    int kick, call, err;
    struct vq drv;
    struct vq_driver_slot slots[QSIZE];
    struct vq_config cfg;
    unsigned completed;
    unsigned calls;
};

static struct rig rig;

static void *backend_thread(void *arg)
{
    (void)arg;
    rig.be_result = vhost_be_run(&be);
    return NULL;
}

static void rig_up(void)
{
    memset(&rig, 0, sizeof(rig));
    reset_echo_config();
    rig.memfd = make_memfd(RAM_SIZE, true);
    rig.map = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, rig.memfd, 0);
    assert_true(rig.map != MAP_FAILED);
    assert_int_equal(guest_mem_add_region(&rig.gm, 0, MiB, rig.map), 0);
    assert_int_equal(guest_mem_add_region(&rig.gm, HIGH_GPA, MiB, rig.map + MiB), 0);

    pair(rig.sv);
    assert_int_equal(vhost_be_init(&be, rig.sv[1], &echo_dev), 0);
    assert_int_equal(pthread_create(&rig.thread, NULL, backend_thread, NULL), 0);
    vhost_fe_init(&fe, rig.sv[0]);

    assert_int_equal(vhost_fe_handshake(&fe), 0);
    assert_true(fe.protocol_features_ok);
    assert_int_equal(fe.protocol_features, VHOST_FE_PROTOCOL_FEATURES);
    assert_int_equal(fe.max_queues, ECHO_QUEUES);
    uint64_t offer = vhost_fe_offer(&fe, F_VERSION_1 | F_EVENT_IDX | PF_PROTOCOL | (1ull << 40));
    assert_int_equal(offer, F_VERSION_1 | F_EVENT_IDX);
    assert_int_equal(vhost_fe_set_features(&fe, offer), 0);

    struct vhost_fe_region regions[2] = {
        {.gpa = 0, .size = MiB, .fd = rig.memfd, .offset = 0},
        {.gpa = HIGH_GPA, .size = MiB, .fd = rig.memfd, .offset = MiB},
    };
    assert_int_equal(vhost_fe_set_mem_table(&fe, regions, 2), 0);
    assert_int_equal(vhost_fe_get_config(&fe, 8), 0);
    assert_memory_equal(fe.config, "BULKHEAD", 8);

    rig.cfg = (struct vq_config){.size = QSIZE,
                                 .features = F_EVENT_IDX,
                                 .desc_addr = RING_GPA,
                                 .avail_addr = RING_GPA + 0x1000,
                                 .used_addr = RING_GPA + 0x2000};
    assert_int_equal(vq_driver_enable(&rig.drv, &rig.gm, &rig.cfg, rig.slots, QSIZE), 0);
    rig.kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rig.call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rig.err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct vhost_fe_vring ring = {.size = QSIZE,
                                  .base = 0,
                                  .desc_gpa = rig.cfg.desc_addr,
                                  .avail_gpa = rig.cfg.avail_addr,
                                  .used_gpa = rig.cfg.used_addr,
                                  .kick_fd = rig.kick,
                                  .call_fd = rig.call,
                                  .err_fd = rig.err};
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &ring), 0);
}

static void rig_down(void)
{
    vhost_fe_close(&fe);
    assert_int_equal(pthread_join(rig.thread, NULL), 0);
    assert_int_equal(rig.be_result, 0); /* the frontend went away: a clean end */
    vhost_be_destroy(&be);
    close(rig.kick);
    close(rig.call);
    close(rig.err);
    munmap(rig.map, RAM_SIZE);
    close(rig.memfd);
}

static bool wait_fd(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    uint64_t v;
    return read(fd, &v, sizeof(v)) == sizeof(v);
}

/* One request through the echo device: @p len bytes out, the same bytes back. */
static void echo_once(unsigned seq, uint32_t len)
{
    uint64_t out = DATA_GPA + 0x1000ull * (seq % 16);
    uint64_t in = DATA_GPA + 0x20000 + 0x1000ull * (seq % 16);
    uint8_t *src = rig.map + out;
    for (uint32_t i = 0; i < len; i++)
        src[i] = (uint8_t)(seq * 7 + i);
    memset(rig.map + in, 0, 0x1000);
    /* Writable space split in two segments, to see the scatter. */
    struct vq_seg segs[3] = {{out, len}, {in, 5}, {in + 5, 0x1000 - 5}};
    uint16_t head;
    assert_int_equal(vq_driver_add(&rig.drv, segs, 1, 2, &head), 0);
    if (vq_driver_should_kick(&rig.drv)) {
        uint64_t one = 1;
        assert_int_equal(write(rig.kick, &one, sizeof(one)), sizeof(one));
    }
    uint16_t id;
    uint32_t got;
    for (;;) {
        int r = vq_driver_get_used(&rig.drv, &id, &got);
        assert_true(r >= 0);
        if (r == 1)
            break;
        if (vq_driver_used_notify_enable(&rig.drv) == 1)
            continue;
        assert_true(wait_fd(rig.call, 5000)); /* the backend's call eventfd fired */
        rig.calls++;
    }
    assert_int_equal(id, head);
    assert_int_equal(got, len);
    assert_memory_equal(rig.map + in, src, len);
    rig.completed++;
}

static void test_e2e_echo(void **state)
{
    (void)state;
    int before = count_fds();
    uint64_t maps = ram_mapped();
    rig_up();

    /* What the backend was told: synthetic user addresses, not our mapping. */
    assert_int_equal(be.nr_regions, 2);
    for (unsigned i = 0; i < be.nr_regions; i++) {
        uint64_t ua = be.regions[i].uaddr;
        uint64_t lo = (uint64_t)(uintptr_t)rig.map;
        assert_true(ua + be.regions[i].size <= lo || ua >= lo + RAM_SIZE);
        assert_int_equal(ua, fe.uaddr_base + be.regions[i].gpa);
        assert_true(be.regions[i].hva != rig.map && be.regions[i].hva != rig.map + MiB);
    }
    assert_true(be.queues[0].started);
    assert_true(be.queues[0].desc_uaddr == fe.uaddr_base + RING_GPA);

    /* The config cache, and a write through to the device. */
    assert_int_equal(vhost_fe_set_config(&fe, 0, "bulk", 4), 0);
    assert_memory_equal(fe.config, "bulkHEAD", 8);
    assert_memory_equal(echo_config, "bulkHEAD", 8);

    for (unsigned i = 0; i < 40; i++)
        echo_once(i, 1 + (i * 37) % 3000);
    assert_true(rig.calls > 0);

    /* Stop: the backend says where it stopped; kicks are no longer served. */
    uint16_t next = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), 0);
    assert_int_equal(next, rig.completed);
    assert_false(wait_fd(rig.err, 0));

    /* Restart from there, with a new memory table while it runs. */
    struct vhost_fe_vring ring = {.size = QSIZE,
                                  .base = next,
                                  .desc_gpa = rig.cfg.desc_addr,
                                  .avail_gpa = rig.cfg.avail_addr,
                                  .used_gpa = rig.cfg.used_addr,
                                  .kick_fd = rig.kick,
                                  .call_fd = rig.call,
                                  .err_fd = rig.err};
    assert_int_equal(vhost_fe_vring_start(&fe, 0, &ring), 0);
    echo_once(100, 64);
    struct vhost_fe_region regions[2] = {
        {.gpa = 0, .size = MiB, .fd = rig.memfd, .offset = 0},
        {.gpa = HIGH_GPA, .size = MiB, .fd = rig.memfd, .offset = MiB},
    };
    assert_int_equal(vhost_fe_set_mem_table(&fe, regions, 2), 0);
    for (unsigned i = 0; i < 10; i++)
        echo_once(200 + i, 100 + i);
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), 0);
    assert_int_equal(next, rig.completed);

    rig_down();
    assert_int_equal(count_fds(), before);
    assert_int_equal(ram_mapped(), maps);
}

static void test_e2e_broken_ring_signals_err(void **state)
{
    (void)state;
    int before = count_fds();
    rig_up();
    echo_once(0, 16);
    /* The guest publishes a head that is not a descriptor index. */
    uint8_t *avail = rig.map + MiB + (rig.cfg.avail_addr - HIGH_GPA);
    avail[4 + 2 * 1] = 200;
    avail[4 + 2 * 1 + 1] = 0;
    __atomic_store_n(&avail[2], 2, __ATOMIC_RELEASE);
    uint64_t one = 1;
    assert_int_equal(write(rig.kick, &one, sizeof(one)), sizeof(one));
    assert_true(wait_fd(rig.err, 5000));
    /* The backend is still answering: the ring stops cleanly, before the bad entry. */
    uint16_t next = 0;
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), 0);
    assert_int_equal(next, 1);
    rig_down();
    assert_int_equal(count_fds(), before);
}

static void test_e2e_backend_dies(void **state)
{
    (void)state;
    int before = count_fds();
    rig_up();
    echo_once(0, 16);
    /* The backend's end of the socket goes away: the frontend sees it at once. */
    shutdown(rig.sv[1], SHUT_RDWR);
    struct pollfd p = {.fd = fe.sock, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(vhost_fe_check_idle(&fe), -ECONNRESET);
    uint16_t next;
    assert_int_equal(vhost_fe_vring_stop(&fe, 0, &next), -ENOTCONN);
    rig_down();
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    log_set_level(LOG_ERROR); /* the hostile cases would fill the output with warnings */
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_codec_roundtrip),
        T(test_codec_wrong_size),
        T(test_codec_wrong_fd_count),
        T(test_codec_bad_flags),
        T(test_codec_unknown_request),
        T(test_codec_oversize),
        T(test_codec_truncated),
        T(test_codec_send_checks_and_deadline),
        T(test_fe_backend_never_replies),
        T(test_fe_backend_closes_mid_setup),
        T(test_fe_bad_replies),
        T(test_fe_nack_and_config),
        T(test_fe_check_idle),
        T(test_fe_input_validation),
        T(test_be_negotiation),
        T(test_be_malformed_ends_connection),
        T(test_be_hostile_memory_table),
        T(test_e2e_echo),
        T(test_e2e_broken_ring_signals_err),
        T(test_e2e_backend_dies),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
