/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/net/offload.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#define BIT(n) (1ull << (n))

#define ETH_P_IPV4   0x0800u
#define ETH_P_IPV6   0x86ddu
#define ETH_P_8021Q  0x8100u
#define IPPROTO_TCP_ 6u
#define IPV6_HLEN    40u
#define IPPROTO_UDP_ 17u
#define TCP_FIN      0x01u
#define TCP_PSH      0x08u
#define TCP_CWR      0x80u

static const char *const drop_names[NET_DROP_COUNT] = {
    [NET_DROP_NONE] = "none",
    [NET_DROP_SHORT] = "short",
    [NET_DROP_LONG] = "long",
    [NET_DROP_FLAGS] = "flags",
    [NET_DROP_CSUM] = "csum",
    [NET_DROP_GSO_TYPE] = "gso-type",
    [NET_DROP_GSO_FEATURE] = "gso-feature",
    [NET_DROP_GSO_NO_CSUM] = "gso-no-csum",
    [NET_DROP_GSO_SIZE] = "gso-size",
    [NET_DROP_HDR_LEN] = "hdr-len",
    [NET_DROP_BAD_CHAIN] = "bad-chain",
    [NET_DROP_GSO_PARSE] = "gso-parse",
    [NET_DROP_LOCAL] = "local",
    [NET_DROP_NO_ROOM] = "no-room",
    [NET_DROP_TOO_BIG] = "too-big",
    [NET_DROP_RX_BUFFER] = "rx-buffer",
    [NET_DROP_TIMEOUT] = "timeout",
    [NET_DROP_PORT_DOWN] = "port-down",
    [NET_DROP_STOPPED] = "stopped",
    [NET_DROP_TAP_IO] = "tap-io",
};

const char *net_drop_name(enum net_drop d)
{
    if ((unsigned)d >= NET_DROP_COUNT)
        return "?";
    return drop_names[d];
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void net_hdr_decode(const uint8_t raw[VIRTIO_NET_HDR_LEN], struct virtio_net_hdr *h)
{
    h->flags = raw[0];
    h->gso_type = raw[1];
    h->hdr_len = get_le16(raw + 2);
    h->gso_size = get_le16(raw + 4);
    h->csum_start = get_le16(raw + 6);
    h->csum_offset = get_le16(raw + 8);
    h->num_buffers = get_le16(raw + 10);
}

void net_hdr_encode(const struct virtio_net_hdr *h, uint8_t raw[VIRTIO_NET_HDR_LEN])
{
    raw[0] = h->flags;
    raw[1] = h->gso_type;
    put_le16(raw + 2, h->hdr_len);
    put_le16(raw + 4, h->gso_size);
    put_le16(raw + 6, h->csum_start);
    put_le16(raw + 8, h->csum_offset);
    put_le16(raw + 10, h->num_buffers);
}

enum net_drop net_hdr_check(const struct virtio_net_hdr *h, uint32_t frame_len, uint64_t features,
                            bool from_tap)
{
    if (frame_len < NET_ETH_HLEN)
        return NET_DROP_SHORT;
    if (frame_len > NET_FRAME_MAX)
        return NET_DROP_LONG;
    /* DATA_VALID and RSC_INFO are the device's to set (virtio 1.2 §5.1.6.2.1); the
     * kernel behind a tap is in the device's place. */
    unsigned allowed = VIRTIO_NET_HDR_F_NEEDS_CSUM | (from_tap ? VIRTIO_NET_HDR_F_DATA_VALID : 0u);
    if ((h->flags & ~allowed) != 0)
        return NET_DROP_FLAGS;
    bool needs_csum = (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0;
    if (needs_csum) {
        /* Both are 16-bit: the sum cannot wrap in 32 bits. */
        uint32_t end = (uint32_t)h->csum_start + h->csum_offset + 2u;
        if ((features & BIT(VIRTIO_NET_F_CSUM)) == 0 || end > frame_len)
            return NET_DROP_CSUM;
    }
    bool ecn = (h->gso_type & VIRTIO_NET_HDR_GSO_ECN) != 0;
    unsigned gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
    uint64_t need;
    switch (gso) {
    case VIRTIO_NET_HDR_GSO_NONE:
        if (ecn)
            return NET_DROP_GSO_TYPE;
        need = 0;
        break;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        need = BIT(VIRTIO_NET_F_HOST_TSO4);
        break;
    case VIRTIO_NET_HDR_GSO_TCPV6:
        need = BIT(VIRTIO_NET_F_HOST_TSO6);
        break;
    default:
        return NET_DROP_GSO_TYPE;
    }
    if (need != 0) {
        if (ecn)
            need |= BIT(VIRTIO_NET_F_HOST_ECN);
        if ((features & need) != need)
            return NET_DROP_GSO_FEATURE;
        if (!needs_csum)
            return NET_DROP_GSO_NO_CSUM;
        if (h->gso_size < NET_GSO_MIN_SIZE)
            return NET_DROP_GSO_SIZE;
    }
    if (h->hdr_len > frame_len)
        return NET_DROP_HDR_LEN;
    return NET_DROP_NONE;
}

enum net_out net_out_plan(const struct virtio_net_hdr *h, uint64_t dst_features)
{
    unsigned gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
    if (gso != VIRTIO_NET_HDR_GSO_NONE) {
        uint64_t need = BIT(VIRTIO_NET_F_GUEST_CSUM);
        need |= gso == VIRTIO_NET_HDR_GSO_TCPV4 ? BIT(VIRTIO_NET_F_GUEST_TSO4)
                                                : BIT(VIRTIO_NET_F_GUEST_TSO6);
        if (h->gso_type & VIRTIO_NET_HDR_GSO_ECN)
            need |= BIT(VIRTIO_NET_F_GUEST_ECN);
        return (dst_features & need) == need ? NET_OUT_AS_IS : NET_OUT_SEGMENT;
    }
    if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0 &&
        (dst_features & BIT(VIRTIO_NET_F_GUEST_CSUM)) == 0)
        return NET_OUT_CSUM;
    return NET_OUT_AS_IS;
}

static uint32_t fold32(uint64_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffffu) + (acc >> 16);
    return (uint32_t)acc;
}

uint16_t net_csum(const void *data, size_t len, uint16_t sum)
{
    /*
     * Sum native-order words and swap once at the end: the ones' complement sum does not
     * depend on byte order (RFC 1071 §2(B)), and 32-bit words sum to the same value as
     * their two 16-bit halves, modulo 2^16 - 1.
     */
    const uint8_t *p = data;
    uint64_t acc = 0;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        acc += (w & 0xffffffffu) + (w >> 32);
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        acc += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        acc += w;
        p += 2;
        len -= 2;
    }
    if (len == 1) {
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        acc += w;
    }
    uint16_t native = (uint16_t)fold32(acc);
    uint16_t be = be16toh(native);
    return (uint16_t)fold32((uint64_t)be + sum);
}

int net_csum_complete(uint8_t *frame, uint32_t len, uint16_t start, uint16_t offset)
{
    uint32_t at = (uint32_t)start + offset;
    if (at + 2u > len)
        return -EINVAL;
    uint16_t c = (uint16_t)~net_csum(frame + start, len - start, 0);
    put_be16(frame + at, c == 0 ? 0xffffu : c);
    return 0;
}

int net_gso_init(struct net_gso *g, const uint8_t *frame, uint32_t len,
                 const struct virtio_net_hdr *h)
{
    unsigned gso = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
    if ((gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6) || h->gso_size == 0 ||
        len < NET_ETH_HLEN || len > NET_FRAME_MAX)
        return -EINVAL;
    memset(g, 0, sizeof(*g));
    g->frame = frame;
    g->ipv6 = gso == VIRTIO_NET_HDR_GSO_TCPV6;
    g->mss = h->gso_size;

    uint32_t l3 = NET_ETH_HLEN;
    uint16_t type = get_be16(frame + 12);
    if (type == ETH_P_8021Q) {
        if (len < NET_ETH_HLEN + 4u)
            return -EINVAL;
        type = get_be16(frame + 16);
        l3 += 4;
    }
    uint32_t l4;
    if (!g->ipv6) {
        if (type != ETH_P_IPV4 || len < l3 + 20u)
            return -EINVAL;
        const uint8_t *ip = frame + l3;
        uint32_t ihl = (ip[0] & 0x0fu) * 4u;
        /* A fragment has MF or an offset; TSO output is never fragmented. */
        if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != IPPROTO_TCP_ ||
            (get_be16(ip + 6) & 0x3fffu) != 0)
            return -EINVAL;
        l4 = l3 + ihl;
        g->ip_id = get_be16(ip + 4);
    } else {
        if (type != ETH_P_IPV6 || len < l3 + IPV6_HLEN)
            return -EINVAL;
        const uint8_t *ip = frame + l3;
        if ((ip[0] >> 4) != 6 || ip[6] != IPPROTO_TCP_)
            return -EINVAL;
        l4 = l3 + IPV6_HLEN;
    }
    if (len < l4 + 20u)
        return -EINVAL;
    uint32_t doff = (uint32_t)(frame[l4 + 12] >> 4) * 4u;
    if (doff < 20 || len < l4 + doff)
        return -EINVAL;
    g->l3 = l3;
    g->l4 = l4;
    g->hdrs = l4 + doff;
    g->payload = len - g->hdrs;
    g->seq = get_be32(frame + l4 + 4);
    g->count = g->payload == 0 ? 1u : (g->payload + g->mss - 1u) / g->mss;
    /* The IP length field of the largest segment must fit 16 bits. */
    uint32_t biggest = g->payload < g->mss ? g->payload : g->mss;
    uint32_t ip_len = g->hdrs - l3 + biggest - (g->ipv6 ? IPV6_HLEN : 0u);
    if (ip_len > 0xffffu)
        return -EINVAL;
    return 0;
}

int net_gso_next(struct net_gso *g, uint8_t *out, uint32_t out_max, uint32_t *out_len)
{
    if (g->index >= g->count)
        return 0;
    uint32_t left = g->payload - g->done;
    uint32_t chunk = left < g->mss ? left : g->mss;
    uint32_t seg_len = g->hdrs + chunk;
    if (seg_len > out_max)
        return -ENOSPC;
    memcpy(out, g->frame, g->hdrs);
    memcpy(out + g->hdrs, g->frame + g->hdrs + g->done, chunk);
    bool first = g->index == 0, last = g->index + 1 == g->count;
    uint8_t *ip = out + g->l3;
    uint8_t *tcp = out + g->l4;
    uint32_t tcp_len = seg_len - g->l4;
    uint16_t pseudo;
    if (!g->ipv6) {
        uint32_t ihl = g->l4 - g->l3;
        put_be16(ip + 2, (uint16_t)(seg_len - g->l3));
        put_be16(ip + 4, (uint16_t)(g->ip_id + g->index));
        put_be16(ip + 10, 0);
        put_be16(ip + 10, (uint16_t)~net_csum(ip, ihl, 0));
        uint8_t ph[4] = {0, IPPROTO_TCP_, (uint8_t)(tcp_len >> 8), (uint8_t)tcp_len};
        pseudo = net_csum(ip + 12, 8, net_csum(ph, sizeof(ph), 0));
    } else {
        put_be16(ip + 4, (uint16_t)(seg_len - g->l3 - IPV6_HLEN));
        uint8_t ph[8] = {0, 0, (uint8_t)(tcp_len >> 8), (uint8_t)tcp_len, 0, 0, 0, IPPROTO_TCP_};
        pseudo = net_csum(ip + 8, 32, net_csum(ph, sizeof(ph), 0));
    }
    put_be32(tcp + 4, g->seq + g->done);
    uint8_t flags = tcp[13];
    if (!last)
        flags &= (uint8_t) ~(TCP_FIN | TCP_PSH);
    if (!first)
        flags &= (uint8_t)~TCP_CWR;
    tcp[13] = flags;
    put_be16(tcp + 16, 0);
    uint16_t c = (uint16_t)~net_csum(tcp, tcp_len, pseudo);
    put_be16(tcp + 16, c == 0 ? 0xffffu : c);
    g->done += chunk;
    g->index++;
    *out_len = seg_len;
    return 1;
}

/* One step of a keyed mix (not a cryptographic MAC, as the MAC table's): enough that
 * without the key a sender cannot tell which queue its flows land on. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* Up to 8 bytes as one big-endian word, for mix(). */
static uint64_t word(const uint8_t *p, unsigned len)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < len; i++)
        v = v << 8 | p[i];
    return v;
}

uint32_t net_flow_hash(const uint8_t *head, uint32_t n, uint64_t key)
{
    uint64_t h = mix(key, word(head, 6));
    h = mix(h, word(head + 6, 6));
    uint32_t l3 = NET_ETH_HLEN;
    uint16_t type = n >= NET_ETH_HLEN ? get_be16(head + 12) : 0;
    if (type == ETH_P_8021Q && n >= NET_ETH_HLEN + 4u) {
        type = get_be16(head + 16);
        l3 += 4;
    }
    uint32_t l4 = 0;
    unsigned proto = 0;
    if (type == ETH_P_IPV4 && n >= l3 + 20u && (head[l3] >> 4) == 4) {
        const uint8_t *ip = head + l3;
        proto = ip[9];
        h = mix(h, proto);
        h = mix(h, word(ip + 12, 8));
        uint32_t ihl = (ip[0] & 0x0fu) * 4u;
        /* MF or an offset: a fragment, hashed by its addresses only. */
        if (ihl >= 20 && (get_be16(ip + 6) & 0x3fffu) == 0)
            l4 = l3 + ihl;
    } else if (type == ETH_P_IPV6 && n >= l3 + IPV6_HLEN && (head[l3] >> 4) == 6) {
        const uint8_t *ip = head + l3;
        proto = ip[6];
        h = mix(h, proto);
        for (unsigned i = 8; i < IPV6_HLEN; i += 8)
            h = mix(h, word(ip + i, 8));
        l4 = l3 + IPV6_HLEN;
    }
    if (l4 != 0 && (proto == IPPROTO_TCP_ || proto == IPPROTO_UDP_) && n >= l4 + 4u)
        h = mix(h, word(head + l4, 4));
    h *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(h >> 32);
}
