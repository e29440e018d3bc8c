/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/vsock/hdr.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

/* Wire offsets of struct virtio_vsock_hdr (packed). */
enum {
    OFF_SRC_CID = 0,
    OFF_DST_CID = 8,
    OFF_SRC_PORT = 16,
    OFF_DST_PORT = 20,
    OFF_LEN = 24,
    OFF_TYPE = 28,
    OFF_OP = 30,
    OFF_FLAGS = 32,
    OFF_BUF_ALLOC = 36,
    OFF_FWD_CNT = 40,
};

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static void put16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    h->src_cid = get64(raw + OFF_SRC_CID);
    h->dst_cid = get64(raw + OFF_DST_CID);
    h->src_port = get32(raw + OFF_SRC_PORT);
    h->dst_port = get32(raw + OFF_DST_PORT);
    h->len = get32(raw + OFF_LEN);
    h->type = get16(raw + OFF_TYPE);
    h->op = get16(raw + OFF_OP);
    h->flags = get32(raw + OFF_FLAGS);
    h->buf_alloc = get32(raw + OFF_BUF_ALLOC);
    h->fwd_cnt = get32(raw + OFF_FWD_CNT);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
    put64(raw + OFF_SRC_CID, h->src_cid);
    put64(raw + OFF_DST_CID, h->dst_cid);
    put32(raw + OFF_SRC_PORT, h->src_port);
    put32(raw + OFF_DST_PORT, h->dst_port);
    put32(raw + OFF_LEN, h->len);
    put16(raw + OFF_TYPE, h->type);
    put16(raw + OFF_OP, h->op);
    put32(raw + OFF_FLAGS, h->flags);
    put32(raw + OFF_BUF_ALLOC, h->buf_alloc);
    put32(raw + OFF_FWD_CNT, h->fwd_cnt);
}

enum vsock_verdict vsock_hdr_check(const struct vsock_hdr *h, uint64_t guest_cid,
                                   uint64_t payload_bytes, enum vsock_reason *why)
{
    /* A packet that is not from our guest to the host has nobody we could answer. */
    if (h->src_cid != guest_cid) {
        *why = VSOCK_R_SRC_CID;
        return VSOCK_DROP;
    }
    if (h->dst_cid != VSOCK_HOST_CID) {
        *why = VSOCK_R_DST_CID;
        return VSOCK_DROP;
    }
    if (h->type != VSOCK_TYPE_STREAM) {
        *why = VSOCK_R_TYPE;
        return VSOCK_RESET;
    }
    if (h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST) {
        *why = VSOCK_R_OP;
        return VSOCK_RESET;
    }
    /* The header's len must describe exactly what the chain carries, and only RW
     * carries anything: otherwise part of the stream would be lost or invented. */
    if ((uint64_t)h->len != payload_bytes || h->len > VSOCK_MAX_PAYLOAD ||
        (h->op != VSOCK_OP_RW && h->len != 0)) {
        *why = VSOCK_R_LEN;
        return VSOCK_RESET;
    }
    return VSOCK_ACCEPT;
}

const char *vsock_reason_name(enum vsock_reason r)
{
    static const char *const names[VSOCK_NR_REASONS] = {
        [VSOCK_R_SHORT] = "short",
        [VSOCK_R_SRC_CID] = "src-cid",
        [VSOCK_R_DST_CID] = "dst-cid",
        [VSOCK_R_TYPE] = "type",
        [VSOCK_R_OP] = "op",
        [VSOCK_R_LEN] = "len",
        [VSOCK_R_CREDIT] = "credit",
        [VSOCK_R_NO_CONN] = "no-conn",
        [VSOCK_R_STATE] = "state",
        [VSOCK_R_CHAIN] = "chain",
        [VSOCK_R_RX_SMALL] = "rx-small",
        [VSOCK_R_EVENT_SMALL] = "event-small",
        [VSOCK_R_RST_QUEUE] = "rst-queue",
        [VSOCK_R_FULL] = "full",
        [VSOCK_R_LINE] = "line",
        [VSOCK_R_TIMEOUT] = "timeout",
        [VSOCK_R_NOMEM] = "nomem",
    };
    if ((unsigned)r >= VSOCK_NR_REASONS)
        return "?";
    return names[r];
}

int vsock_iov_gather(const struct vq_iovec *iov, unsigned n, uint64_t skip, void *dst, uint64_t len)
{
    uint8_t *out = dst;
    for (unsigned i = 0; i < n && len > 0; i++) {
        uint64_t seg = iov[i].len;
        if (skip >= seg) {
            skip -= seg;
            continue;
        }
        uint64_t take = seg - skip;
        if (take > len)
            take = len;
        memcpy(out, (const uint8_t *)iov[i].base + skip, take);
        out += take;
        len -= take;
        skip = 0;
    }
    return len == 0 ? 0 : -EFAULT;
}

int vsock_iov_scatter(const struct vq_iovec *iov, unsigned n, uint64_t skip, const void *src,
                      uint64_t len)
{
    const uint8_t *in = src;
    for (unsigned i = 0; i < n && len > 0; i++) {
        uint64_t seg = iov[i].len;
        if (skip >= seg) {
            skip -= seg;
            continue;
        }
        uint64_t put = seg - skip;
        if (put > len)
            put = len;
        memcpy((uint8_t *)iov[i].base + skip, in, put);
        in += put;
        len -= put;
        skip = 0;
    }
    return len == 0 ? 0 : -EFAULT;
}

unsigned vsock_iov_window(const struct vq_iovec *iov, unsigned n, uint64_t skip, uint64_t max,
                          struct vq_iovec *out, unsigned out_max, uint64_t *bytes)
{
    unsigned k = 0;
    uint64_t total = 0;
    for (unsigned i = 0; i < n && k < out_max && total < max; i++) {
        uint64_t seg = iov[i].len;
        if (skip >= seg) {
            skip -= seg;
            continue;
        }
        uint64_t take = seg - skip;
        if (take > max - total)
            take = max - total;
        out[k].base = (uint8_t *)iov[i].base + skip;
        out[k].len = (size_t)take;
        k++;
        total += take;
        skip = 0;
    }
    *bytes = total;
    return k;
}
