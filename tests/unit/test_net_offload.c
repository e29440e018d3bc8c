/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-net's header checks and software offloads (src/backends/net/offload.c):
 * every kind of malformed header, the header codec, the plan per destination, the
 * Internet checksum against RFC 1071's example and a known IPv4 header, NEEDS_CSUM
 * completion, and TCP segmentation of IPv4 and IPv6 (behind a VLAN tag) GSO packets
 * against values computed independently for the same bytes (tools outside this
 * tree), each segment also verified here by a plain byte-wise recomputation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/net/offload.h"
#include "backends/net/virtio_net.h"

#include <errno.h>
#include <string.h>

#define F(bit) (1ull << (bit))

static const uint64_t host_all = F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) |
                                 F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_HOST_ECN);

/* ---- independent reference: byte by byte, big-endian words ---- */

static uint32_t ref_sum(const uint8_t *p, size_t len, uint32_t s)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return s;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint8_t pat(uint32_t i, uint8_t seed)
{
    return (uint8_t)(i * 7 + seed);
}

/* ---- header checks ---- */

static struct virtio_net_hdr gso4(void)
{
    return (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                   .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                   .hdr_len = 54,
                                   .gso_size = 1448,
                                   .csum_start = 34,
                                   .csum_offset = 16};
}

static void test_hdr_check_good(void **state)
{
    (void)state;
    struct virtio_net_hdr h = {0};
    assert_int_equal(net_hdr_check(&h, 14, 0, false), NET_DROP_NONE);
    assert_int_equal(net_hdr_check(&h, NET_FRAME_MAX, 0, false), NET_DROP_NONE);
    h = gso4();
    assert_int_equal(net_hdr_check(&h, 65000, host_all, false), NET_DROP_NONE);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN;
    assert_int_equal(net_hdr_check(&h, 65000, host_all, false), NET_DROP_NONE);
    /* Checksum field ending exactly at the frame's end. */
    h = (struct virtio_net_hdr){
        .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 6};
    assert_int_equal(net_hdr_check(&h, 42, F(VIRTIO_NET_F_CSUM), false), NET_DROP_NONE);
    /* The kernel behind a tap may say DATA_VALID. */
    h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_DATA_VALID};
    assert_int_equal(net_hdr_check(&h, 60, NET_TAP_HOST_FEATURES, true), NET_DROP_NONE);
    /* hdr_len equal to the frame: allowed. */
    h = (struct virtio_net_hdr){.hdr_len = 60};
    assert_int_equal(net_hdr_check(&h, 60, 0, false), NET_DROP_NONE);
}

static void test_hdr_check_malformed(void **state)
{
    (void)state;
    struct virtio_net_hdr h = {0};
    /* Lengths. */
    assert_int_equal(net_hdr_check(&h, 13, host_all, false), NET_DROP_SHORT);
    assert_int_equal(net_hdr_check(&h, 0, host_all, false), NET_DROP_SHORT);
    assert_int_equal(net_hdr_check(&h, NET_FRAME_MAX + 1, host_all, false), NET_DROP_LONG);
    assert_int_equal(net_hdr_check(&h, UINT32_MAX, host_all, false), NET_DROP_LONG);
    /* Flags a driver may not set, and unknown ones. */
    h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
    assert_int_equal(net_hdr_check(&h, 60, host_all, false), NET_DROP_FLAGS);
    h.flags = VIRTIO_NET_HDR_F_RSC_INFO;
    assert_int_equal(net_hdr_check(&h, 60, host_all, true), NET_DROP_FLAGS);
    h.flags = 0x80;
    assert_int_equal(net_hdr_check(&h, 60, host_all, false), NET_DROP_FLAGS);
    /* NEEDS_CSUM: feature, range, and 16-bit fields that would wrap. */
    h = (struct virtio_net_hdr){
        .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 6};
    assert_int_equal(net_hdr_check(&h, 60, host_all & ~F(VIRTIO_NET_F_CSUM), false), NET_DROP_CSUM);
    assert_int_equal(net_hdr_check(&h, 41, host_all, false), NET_DROP_CSUM);
    h.csum_start = 0xffff;
    h.csum_offset = 0xffff;
    assert_int_equal(net_hdr_check(&h, NET_FRAME_MAX, host_all, false), NET_DROP_CSUM);
    h.csum_start = 65530;
    h.csum_offset = 4;
    assert_int_equal(net_hdr_check(&h, 65535, host_all, false), NET_DROP_CSUM);
    /* gso_type values. */
    h = gso4();
    h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_TYPE);
    h.gso_type = 5; /* UDP_L4: not offered */
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_TYPE);
    h.gso_type = 0x7f;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_TYPE);
    h.gso_type = VIRTIO_NET_HDR_GSO_ECN; /* ECN without a GSO type */
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_TYPE);
    /* GSO types the sender did not negotiate. */
    h = gso4();
    assert_int_equal(net_hdr_check(&h, 9000, host_all & ~F(VIRTIO_NET_F_HOST_TSO4), false),
                     NET_DROP_GSO_FEATURE);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
    assert_int_equal(net_hdr_check(&h, 9000, host_all & ~F(VIRTIO_NET_F_HOST_TSO6), false),
                     NET_DROP_GSO_FEATURE);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
    assert_int_equal(net_hdr_check(&h, 9000, host_all & ~F(VIRTIO_NET_F_HOST_ECN), false),
                     NET_DROP_GSO_FEATURE);
    /* GSO without NEEDS_CSUM. */
    h = gso4();
    h.flags = 0;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_NO_CSUM);
    /* gso_size. */
    h = gso4();
    h.gso_size = 0;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_SIZE);
    h.gso_size = NET_GSO_MIN_SIZE - 1;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_GSO_SIZE);
    h.gso_size = NET_GSO_MIN_SIZE;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_NONE);
    /* hdr_len beyond the frame. */
    h = gso4();
    h.hdr_len = 9001;
    assert_int_equal(net_hdr_check(&h, 9000, host_all, false), NET_DROP_HDR_LEN);
    h = (struct virtio_net_hdr){.hdr_len = 61};
    assert_int_equal(net_hdr_check(&h, 60, 0, false), NET_DROP_HDR_LEN);
    /* Every reason has a name, and out of range is "?". */
    for (unsigned d = 0; d < NET_DROP_COUNT; d++)
        assert_true(strcmp(net_drop_name((enum net_drop)d), "?") != 0);
    assert_string_equal(net_drop_name(NET_DROP_COUNT), "?");
}

static void test_hdr_codec(void **state)
{
    (void)state;
    const uint8_t raw[12] = {0x01, 0x81, 0x36, 0x00, 0xa8, 0x05,
                             0x22, 0x00, 0x10, 0x00, 0x03, 0x00};
    struct virtio_net_hdr h;
    net_hdr_decode(raw, &h);
    assert_int_equal(h.flags, 1);
    assert_int_equal(h.gso_type, 0x81);
    assert_int_equal(h.hdr_len, 54);
    assert_int_equal(h.gso_size, 1448);
    assert_int_equal(h.csum_start, 34);
    assert_int_equal(h.csum_offset, 16);
    assert_int_equal(h.num_buffers, 3);
    uint8_t out[12];
    net_hdr_encode(&h, out);
    assert_memory_equal(out, raw, 12);
}

static void test_out_plan(void **state)
{
    (void)state;
    const uint64_t guest_all = F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) |
                               F(VIRTIO_NET_F_GUEST_TSO6) | F(VIRTIO_NET_F_GUEST_ECN);
    struct virtio_net_hdr h = gso4();
    assert_int_equal(net_out_plan(&h, guest_all), NET_OUT_AS_IS);
    assert_int_equal(net_out_plan(&h, guest_all & ~F(VIRTIO_NET_F_GUEST_TSO4)), NET_OUT_SEGMENT);
    assert_int_equal(net_out_plan(&h, guest_all & ~F(VIRTIO_NET_F_GUEST_CSUM)), NET_OUT_SEGMENT);
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN;
    assert_int_equal(net_out_plan(&h, guest_all), NET_OUT_AS_IS);
    assert_int_equal(net_out_plan(&h, guest_all & ~F(VIRTIO_NET_F_GUEST_ECN)), NET_OUT_SEGMENT);
    assert_int_equal(net_out_plan(&h, guest_all & ~F(VIRTIO_NET_F_GUEST_TSO6)), NET_OUT_SEGMENT);
    h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34};
    assert_int_equal(net_out_plan(&h, guest_all), NET_OUT_AS_IS);
    assert_int_equal(net_out_plan(&h, 0), NET_OUT_CSUM);
    h.flags = 0;
    assert_int_equal(net_out_plan(&h, 0), NET_OUT_AS_IS);
}

/* ---- checksums ---- */

static void test_csum_known_values(void **state)
{
    (void)state;
    /* RFC 1071 §3: these bytes sum to 0xddf2. */
    const uint8_t rfc[8] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    assert_int_equal(net_csum(rfc, sizeof(rfc), 0), 0xddf2);
    /* Split at an even offset and continued: the same sum. */
    assert_int_equal(net_csum(rfc + 4, 4, net_csum(rfc, 4, 0)), 0xddf2);
    /* A well-known IPv4 header whose checksum is 0xb861. */
    uint8_t ip[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                      0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    assert_int_equal((uint16_t)~net_csum(ip, sizeof(ip), 0), 0xb861);
    ip[10] = 0xb8;
    ip[11] = 0x61;
    assert_int_equal(net_csum(ip, sizeof(ip), 0), 0xffff);
    /* Odd lengths, every alignment, against the byte-wise reference. */
    static uint8_t buf[3000];
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = pat(i, 0x5a);
    for (unsigned off = 0; off < 9; off++) {
        for (unsigned len = 0; len < 80; len++)
            assert_int_equal(net_csum(buf + off, len, 0), ref_sum(buf + off, len, 0));
        assert_int_equal(net_csum(buf + off, 2991, 0x1234), ref_sum(buf + off, 2991, 0x1234));
    }
}

static void test_csum_complete_udp(void **state)
{
    (void)state;
    /* Ethernet, IPv4 10.0.0.1 -> 10.0.0.2 UDP, 1000 -> 2000, 101 bytes of payload; the
     * driver left the pseudo-header sum (0x1481) in the checksum field. */
    uint8_t f[14 + 20 + 8 + 101];
    memset(f, 0, sizeof(f));
    f[12] = 0x08;
    uint8_t *ip = f + 14, *udp = f + 34;
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + 101);
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, (uint8_t[]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
    put16(udp, 1000);
    put16(udp + 2, 2000);
    put16(udp + 4, 8 + 101);
    put16(udp + 6, 0x1481);
    for (unsigned i = 0; i < 101; i++)
        udp[8 + i] = pat(i, 5);
    assert_int_equal(net_csum_complete(f, sizeof(f), 34, 6), 0);
    assert_int_equal(be16(udp + 6), 0x0eec);
    /* Verified the receiver's way: pseudo header plus datagram sums to 0xffff. */
    uint8_t ph[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 8 + 101};
    assert_int_equal(ref_sum(udp, 8 + 101, ref_sum(ph, 12, 0)), 0xffff);
    /* A checksum field past the end is refused and nothing is written. */
    uint8_t copy[sizeof(f)];
    memcpy(copy, f, sizeof(f));
    assert_int_equal(net_csum_complete(f, sizeof(f), 34, (uint16_t)(sizeof(f) - 35)), -EINVAL);
    assert_memory_equal(copy, f, sizeof(f));
}

static void test_csum_complete_zero_is_ffff(void **state)
{
    (void)state;
    /* A range summing to 0xffff would give checksum 0, which UDP reads as "none". */
    uint8_t f[20] = {0};
    f[14] = 0xff;
    f[15] = 0xff;
    assert_int_equal(net_csum_complete(f, sizeof(f), 14, 4), 0);
    assert_int_equal(be16(f + 18), 0xffff);
}

/* ---- segmentation ---- */

static uint8_t frame[NET_FRAME_MAX];
static uint8_t seg[NET_FRAME_MAX];

/* Ethernet + IPv4 (id 0x1234, DF) + TCP (40000 -> 80, flags CWR|ACK|PSH|FIN) + payload. */
static uint32_t build_v4(uint32_t payload)
{
    memset(frame, 0, 54);
    memcpy(frame, (uint8_t[]){2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}, 14);
    uint8_t *ip = frame + 14, *tcp = frame + 34;
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + 20 + payload));
    put16(ip + 4, 0x1234);
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, (uint8_t[]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
    put16(tcp, 40000);
    put16(tcp + 2, 80);
    put32(tcp + 4, 0x01020304);
    put32(tcp + 8, 0x0a0b0c0d);
    tcp[12] = 0x50;
    tcp[13] = 0x99;
    put16(tcp + 14, 0xffff);
    put16(tcp + 16, 0xbeef); /* partial sum: must not matter */
    for (uint32_t i = 0; i < payload; i++)
        frame[54 + i] = pat(i, 3);
    return 54 + payload;
}

static void verify_tcp(const uint8_t *s, uint32_t len, uint32_t l3, bool v6)
{
    if (!v6) {
        const uint8_t *ip = s + l3;
        uint32_t ihl = (ip[0] & 15u) * 4u;
        assert_int_equal(ref_sum(ip, ihl, 0), 0xffff);
        assert_int_equal(be16(ip + 2), len - l3);
        uint32_t tl = len - l3 - ihl;
        uint8_t ph[12];
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = 6;
        put16(ph + 10, (uint16_t)tl);
        assert_int_equal(ref_sum(ip + ihl, tl, ref_sum(ph, 12, 0)), 0xffff);
    } else {
        const uint8_t *ip = s + l3;
        uint32_t tl = len - l3 - 40;
        assert_int_equal(be16(ip + 4), tl);
        uint8_t ph[40];
        memcpy(ph, ip + 8, 32);
        put32(ph + 32, tl);
        memcpy(ph + 36, (uint8_t[]){0, 0, 0, 6}, 4);
        assert_int_equal(ref_sum(ip + 40, tl, ref_sum(ph, 40, 0)), 0xffff);
    }
}

static void test_tso_v4(void **state)
{
    (void)state;
    uint32_t len = build_v4(2500);
    struct virtio_net_hdr h = gso4();
    h.gso_size = 1000;
    struct net_gso g;
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    /* Computed independently for these exact bytes. */
    static const uint32_t lens[3] = {1054, 1054, 554};
    static const uint16_t ip_csum[3] = {0x10b2, 0x10b1, 0x12a4};
    static const uint16_t tcp_csum[3] = {0xc9f6, 0xe3ac, 0x6b0f};
    static const uint8_t flags[3] = {0x90, 0x10, 0x19};
    uint32_t seg_len, payload_seen = 0;
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 1);
        assert_int_equal(seg_len, lens[i]);
        const uint8_t *ip = seg + 14, *tcp = seg + 34;
        assert_memory_equal(seg, frame, 14);
        assert_int_equal(be16(ip + 4), 0x1234 + i);
        assert_int_equal(be16(ip + 10), ip_csum[i]);
        assert_int_equal(be32(tcp + 4), 0x01020304u + 1000u * i);
        assert_int_equal(be32(tcp + 8), 0x0a0b0c0d);
        assert_int_equal(tcp[13], flags[i]);
        assert_int_equal(be16(tcp + 16), tcp_csum[i]);
        assert_memory_equal(seg + 54, frame + 54 + payload_seen, seg_len - 54);
        payload_seen += seg_len - 54;
        verify_tcp(seg, seg_len, 14, false);
    }
    assert_int_equal(payload_seen, 2500);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 0);
}

static void test_tso_v4_64k(void **state)
{
    (void)state;
    /* The largest TSO send: 65535-byte IP packet, MSS 1448. */
    uint32_t payload = 65535 - 40;
    uint32_t len = build_v4(payload);
    struct virtio_net_hdr h = gso4();
    struct net_gso g;
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    unsigned n = 0;
    uint32_t seg_len, total = 0;
    int r;
    while ((r = net_gso_next(&g, seg, 54 + 1448, &seg_len)) == 1) {
        assert_true(seg_len <= 54 + 1448);
        verify_tcp(seg, seg_len, 14, false);
        assert_int_equal(be32(seg + 34 + 4), 0x01020304u + total);
        total += seg_len - 54;
        n++;
    }
    assert_int_equal(r, 0);
    assert_int_equal(n, (payload + 1447) / 1448);
    assert_int_equal(total, payload);
    /* Too small an output buffer: refused, nothing consumed. */
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    assert_int_equal(net_gso_next(&g, seg, 100, &seg_len), -ENOSPC);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 1);
    assert_int_equal(seg_len, 54 + 1448);
}

/* Ethernet + 802.1Q + IPv6 fd00::1 -> fd00::2 + TCP with 12 bytes of options. */
static uint32_t build_v6(uint32_t payload)
{
    memset(frame, 0, 18 + 40 + 32);
    memcpy(frame,
           (uint8_t[]){2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x05, 0x86, 0xdd}, 18);
    uint8_t *ip = frame + 18, *tcp = frame + 58;
    ip[0] = 0x60;
    put16(ip + 4, (uint16_t)(32 + payload));
    ip[6] = 6;
    ip[7] = 64;
    ip[8] = 0xfd;
    ip[23] = 1;
    ip[24] = 0xfd;
    ip[39] = 2;
    put16(tcp, 5555);
    put16(tcp + 2, 443);
    put32(tcp + 4, 0xfffffc00);
    put32(tcp + 8, 7);
    tcp[12] = 0x80;
    tcp[13] = 0x18;
    put16(tcp + 14, 1000);
    memcpy(tcp + 20, (uint8_t[]){1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, 12);
    for (uint32_t i = 0; i < payload; i++)
        frame[90 + i] = pat(i, 11);
    return 90 + payload;
}

static void test_tso_v6_vlan(void **state)
{
    (void)state;
    uint32_t len = build_v6(3001);
    struct virtio_net_hdr h = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                               .gso_type = VIRTIO_NET_HDR_GSO_TCPV6,
                               .gso_size = 1200,
                               .csum_start = 58,
                               .csum_offset = 16};
    struct net_gso g;
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    static const uint32_t lens[3] = {1290, 1290, 691};
    static const uint32_t seqs[3] = {0xfffffc00u, 0xb0u, 0x560u}; /* wraps */
    static const uint16_t tcp_csum[3] = {0x16f4, 0x91c5, 0x8fab};
    static const uint8_t flags[3] = {0x10, 0x10, 0x18};
    uint32_t seg_len;
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 1);
        assert_int_equal(seg_len, lens[i]);
        assert_memory_equal(seg, frame, 18);
        assert_int_equal(be32(seg + 58 + 4), seqs[i]);
        assert_int_equal(seg[58 + 13], flags[i]);
        assert_int_equal(be16(seg + 58 + 16), tcp_csum[i]);
        assert_memory_equal(seg + 58 + 20, frame + 58 + 20, 12); /* options copied */
        verify_tcp(seg, seg_len, 18, true);
    }
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 0);
}

static void test_tso_single_segment(void **state)
{
    (void)state;
    /* Payload smaller than the MSS: one segment, checksummed; none at all: one too. */
    uint32_t len = build_v4(100);
    struct virtio_net_hdr h = gso4();
    struct net_gso g;
    uint32_t seg_len;
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 1);
    assert_int_equal(seg_len, len);
    assert_int_equal(seg[34 + 13], 0x99); /* first and last: every flag stays */
    verify_tcp(seg, seg_len, 14, false);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 0);
    len = build_v4(0);
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 1);
    assert_int_equal(seg_len, 54);
    verify_tcp(seg, seg_len, 14, false);
    assert_int_equal(net_gso_next(&g, seg, sizeof(seg), &seg_len), 0);
}

static void test_tso_bad_headers(void **state)
{
    (void)state;
    struct virtio_net_hdr h = gso4();
    struct net_gso g;
    uint32_t len = build_v4(3000);
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    /* gso_type says IPv6, the frame is IPv4. */
    h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    h = gso4();
    h.gso_type = VIRTIO_NET_HDR_GSO_NONE;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    h = gso4();
    /* Not IP at all. */
    frame[12] = 0x08;
    frame[13] = 0x06;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(3000);
    /* UDP, not TCP. */
    frame[14 + 9] = 17;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(3000);
    /* IHL below 5, version not 4. */
    frame[14] = 0x44;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    frame[14] = 0x65;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(3000);
    /* A fragment. */
    frame[14 + 6] = 0x20;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(3000);
    frame[14 + 7] = 0x01;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(3000);
    /* TCP data offset below 5, and beyond the frame. */
    frame[34 + 12] = 0x40;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    len = build_v4(0);
    frame[34 + 12] = 0xf0;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    /* IHL pointing past the frame. */
    len = build_v4(0);
    frame[14] = 0x4f;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    /* Truncated before the TCP header ends. */
    len = build_v4(0);
    assert_int_equal(net_gso_init(&g, frame, len - 1, &h), -EINVAL);
    assert_int_equal(net_gso_init(&g, frame, 13, &h), -EINVAL);
    /* A segment whose IP length would not fit 16 bits (one huge segment). */
    len = build_v4(NET_FRAME_MAX - 54);
    h.gso_size = 0xffff;
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    /* IPv6 with an extension header first. */
    len = build_v6(100);
    h = (struct virtio_net_hdr){.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = VIRTIO_NET_HDR_GSO_TCPV6,
                                .gso_size = 1200};
    assert_int_equal(net_gso_init(&g, frame, len, &h), 0);
    frame[18 + 6] = 0; /* hop-by-hop options */
    assert_int_equal(net_gso_init(&g, frame, len, &h), -EINVAL);
    /* A VLAN tag with nothing behind it. */
    assert_int_equal(net_gso_init(&g, frame, 16, &h), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_check_good),
        cmocka_unit_test(test_hdr_check_malformed),
        cmocka_unit_test(test_hdr_codec),
        cmocka_unit_test(test_out_plan),
        cmocka_unit_test(test_csum_known_values),
        cmocka_unit_test(test_csum_complete_udp),
        cmocka_unit_test(test_csum_complete_zero_is_ffff),
        cmocka_unit_test(test_tso_v4),
        cmocka_unit_test(test_tso_v4_64k),
        cmocka_unit_test(test_tso_v6_vlan),
        cmocka_unit_test(test_tso_single_segment),
        cmocka_unit_test(test_tso_bad_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
