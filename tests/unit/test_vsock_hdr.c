/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead-vsock's packet module (src/backends/vsock/hdr.c): the wire layout of the
 * header, every rule vsock_hdr_check() enforces and the order it applies them in, the
 * scatter-gather helpers on segment lists of any shape, and the CONNECT line parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends/vsock/conn.h"
#include "backends/vsock/hdr.h"

#include <errno.h>
#include <string.h>

#define CID 7u

static struct vsock_hdr good(uint16_t op, uint32_t len)
{
    return (struct vsock_hdr){.src_cid = CID,
                              .dst_cid = VSOCK_HOST_CID,
                              .src_port = 5000,
                              .dst_port = 1234,
                              .len = len,
                              .type = VSOCK_TYPE_STREAM,
                              .op = op,
                              .buf_alloc = 65536,
                              .fwd_cnt = 17};
}

static void test_wire_layout(void **state)
{
    (void)state;
    struct vsock_hdr h = {.src_cid = 0x0102030405060708ull,
                          .dst_cid = 0x1112131415161718ull,
                          .src_port = 0x21222324,
                          .dst_port = 0x31323334,
                          .len = 0x41424344,
                          .type = 0x5152,
                          .op = 0x6162,
                          .flags = 0x71727374,
                          .buf_alloc = 0x81828384,
                          .fwd_cnt = 0x91929394};
    uint8_t raw[VSOCK_HDR_SIZE];
    memset(raw, 0xee, sizeof(raw));
    vsock_hdr_encode(&h, raw);
    /* Little-endian, packed, in the spec's order. */
    static const uint8_t want[VSOCK_HDR_SIZE] = {
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12,
        0x11, 0x24, 0x23, 0x22, 0x21, 0x34, 0x33, 0x32, 0x31, 0x44, 0x43, 0x42, 0x41, 0x52, 0x51,
        0x62, 0x61, 0x74, 0x73, 0x72, 0x71, 0x84, 0x83, 0x82, 0x81, 0x94, 0x93, 0x92, 0x91};
    assert_memory_equal(raw, want, sizeof(want));
    struct vsock_hdr back;
    vsock_hdr_decode(raw, &back);
    /* Field by field: the struct has tail padding. */
    assert_int_equal(back.src_cid, h.src_cid);
    assert_int_equal(back.dst_cid, h.dst_cid);
    assert_int_equal(back.src_port, h.src_port);
    assert_int_equal(back.dst_port, h.dst_port);
    assert_int_equal(back.len, h.len);
    assert_int_equal(back.type, h.type);
    assert_int_equal(back.op, h.op);
    assert_int_equal(back.flags, h.flags);
    assert_int_equal(back.buf_alloc, h.buf_alloc);
    assert_int_equal(back.fwd_cnt, h.fwd_cnt);
}

static enum vsock_verdict check(const struct vsock_hdr *h, uint64_t payload, enum vsock_reason *why)
{
    *why = VSOCK_NR_REASONS;
    return vsock_hdr_check(h, CID, payload, why);
}

static void test_accepts_well_formed(void **state)
{
    (void)state;
    enum vsock_reason why;
    for (unsigned op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
        struct vsock_hdr h = good((uint16_t)op, 0);
        assert_int_equal(check(&h, 0, &why), VSOCK_ACCEPT);
    }
    struct vsock_hdr h = good(VSOCK_OP_RW, 100);
    assert_int_equal(check(&h, 100, &why), VSOCK_ACCEPT);
    h = good(VSOCK_OP_RW, VSOCK_MAX_PAYLOAD);
    assert_int_equal(check(&h, VSOCK_MAX_PAYLOAD, &why), VSOCK_ACCEPT);
    /* Flags are the SHUTDOWN's business; ports any value. */
    h = good(VSOCK_OP_SHUTDOWN, 0);
    h.flags = 0xffffffffu;
    h.src_port = h.dst_port = 0xffffffffu;
    assert_int_equal(check(&h, 0, &why), VSOCK_ACCEPT);
}

static void test_wrong_cids_are_dropped(void **state)
{
    (void)state;
    enum vsock_reason why;
    struct vsock_hdr h = good(VSOCK_OP_REQUEST, 0);
    h.src_cid = CID + 1;
    assert_int_equal(check(&h, 0, &why), VSOCK_DROP);
    assert_int_equal(why, VSOCK_R_SRC_CID);
    h.src_cid = CID | (1ull << 32); /* the reserved upper half counts */
    assert_int_equal(check(&h, 0, &why), VSOCK_DROP);
    assert_int_equal(why, VSOCK_R_SRC_CID);
    h = good(VSOCK_OP_RW, 4);
    h.dst_cid = 3;
    assert_int_equal(check(&h, 4, &why), VSOCK_DROP);
    assert_int_equal(why, VSOCK_R_DST_CID);
    h.dst_cid = VSOCK_HOST_CID | (1ull << 40);
    assert_int_equal(check(&h, 4, &why), VSOCK_DROP);
    assert_int_equal(why, VSOCK_R_DST_CID);
    h.dst_cid = 1; /* local loopback */
    assert_int_equal(check(&h, 4, &why), VSOCK_DROP);
    /* CIDs are checked before anything else: nobody to answer. */
    h = good(0, 5);
    h.type = 9;
    h.src_cid = 0;
    assert_int_equal(check(&h, 0, &why), VSOCK_DROP);
    assert_int_equal(why, VSOCK_R_SRC_CID);
}

static void test_bad_type_and_op_reset(void **state)
{
    (void)state;
    enum vsock_reason why;
    struct vsock_hdr h = good(VSOCK_OP_REQUEST, 0);
    h.type = VSOCK_TYPE_SEQPACKET;
    assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_TYPE);
    h.type = 0;
    assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_TYPE);
    h.type = 0xffff;
    assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
    static const uint16_t bad_ops[] = {VSOCK_OP_INVALID, 8, 9, 0x100, 0xffff};
    for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
        h = good(bad_ops[i], 0);
        assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
        assert_int_equal(why, VSOCK_R_OP);
    }
    /* The type is judged before the op. */
    h = good(0x77, 0);
    h.type = 3;
    assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_TYPE);
}

static void test_bad_lengths_reset(void **state)
{
    (void)state;
    enum vsock_reason why;
    /* More claimed than present, less claimed than present. */
    struct vsock_hdr h = good(VSOCK_OP_RW, 100);
    assert_int_equal(check(&h, 99, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_LEN);
    assert_int_equal(check(&h, 101, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_LEN);
    assert_int_equal(check(&h, 0, &why), VSOCK_RESET);
    /* A 64-bit payload that agrees in its low 32 bits is still a mismatch. */
    assert_int_equal(check(&h, 100 + (1ull << 32), &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_LEN);
    /* Above the bound, even when it agrees. */
    h = good(VSOCK_OP_RW, VSOCK_MAX_PAYLOAD + 1);
    assert_int_equal(check(&h, VSOCK_MAX_PAYLOAD + 1, &why), VSOCK_RESET);
    assert_int_equal(why, VSOCK_R_LEN);
    h = good(VSOCK_OP_RW, 0xffffffffu);
    assert_int_equal(check(&h, 0xffffffffu, &why), VSOCK_RESET);
    /* Payload on an op that has none, claimed or only present. */
    static const uint16_t ops[] = {VSOCK_OP_REQUEST,       VSOCK_OP_RESPONSE,
                                   VSOCK_OP_RST,           VSOCK_OP_SHUTDOWN,
                                   VSOCK_OP_CREDIT_UPDATE, VSOCK_OP_CREDIT_REQUEST};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        h = good(ops[i], 8);
        assert_int_equal(check(&h, 8, &why), VSOCK_RESET);
        assert_int_equal(why, VSOCK_R_LEN);
        h = good(ops[i], 0);
        assert_int_equal(check(&h, 8, &why), VSOCK_RESET);
        assert_int_equal(why, VSOCK_R_LEN);
    }
    /* An empty RW is harmless. */
    h = good(VSOCK_OP_RW, 0);
    assert_int_equal(check(&h, 0, &why), VSOCK_ACCEPT);
}

static void test_reason_names(void **state)
{
    (void)state;
    for (unsigned r = 0; r < VSOCK_NR_REASONS; r++) {
        const char *n = vsock_reason_name((enum vsock_reason)r);
        assert_non_null(n);
        assert_string_not_equal(n, "?");
        for (unsigned k = 0; k < r; k++)
            assert_string_not_equal(n, vsock_reason_name((enum vsock_reason)k));
    }
    assert_string_equal(vsock_reason_name(VSOCK_NR_REASONS), "?");
}

/* A header split across segments of every size, as a driver may lay it out. */
static void test_gather_scatter_any_layout(void **state)
{
    (void)state;
    uint8_t src[100], dst[100], back[100];
    for (unsigned i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 3 + 1);
    for (unsigned first = 1; first < 60; first += 7) {
        for (unsigned second = 1; second < 30; second += 5) {
            memset(dst, 0, sizeof(dst));
            struct vq_iovec iov[3] = {{dst, first},
                                      {dst + first, second},
                                      {dst + first + second, sizeof(dst) - first - second}};
            assert_int_equal(vsock_iov_scatter(iov, 3, 0, src, VSOCK_HDR_SIZE), 0);
            assert_memory_equal(dst, src, VSOCK_HDR_SIZE);
            assert_int_equal(dst[VSOCK_HDR_SIZE], 0);
            memset(back, 0, sizeof(back));
            assert_int_equal(vsock_iov_gather(iov, 3, 0, back, VSOCK_HDR_SIZE), 0);
            assert_memory_equal(back, src, VSOCK_HDR_SIZE);
            /* With an offset: the payload after the header. */
            assert_int_equal(vsock_iov_scatter(iov, 3, VSOCK_HDR_SIZE, src, 56), 0);
            assert_memory_equal(dst + VSOCK_HDR_SIZE, src, 56);
            assert_int_equal(vsock_iov_gather(iov, 3, VSOCK_HDR_SIZE, back, 56), 0);
            assert_memory_equal(back, src, 56);
        }
    }
}

static void test_gather_scatter_short(void **state)
{
    (void)state;
    uint8_t a[10], b[20], out[64];
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    struct vq_iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
    assert_int_equal(vsock_iov_gather(iov, 2, 0, out, 31), -EFAULT);
    assert_int_equal(vsock_iov_gather(iov, 2, 25, out, 6), -EFAULT);
    assert_int_equal(vsock_iov_gather(iov, 2, 30, out, 1), -EFAULT);
    assert_int_equal(vsock_iov_gather(iov, 2, 30, out, 0), 0);
    assert_int_equal(vsock_iov_gather(iov, 0, 0, out, 1), -EFAULT);
    uint8_t big[40];
    memset(big, 9, sizeof(big));
    assert_int_equal(vsock_iov_scatter(iov, 2, 0, big, 40), -EFAULT);
    /* What fits was written, nothing past the segments (they are exactly a and b). */
    assert_int_equal(a[9], 9);
    assert_int_equal(b[19], 9);
}

static void test_window(void **state)
{
    (void)state;
    uint8_t m[64];
    struct vq_iovec iov[3] = {{m, 10}, {m + 10, 20}, {m + 30, 30}};
    struct vq_iovec out[3];
    uint64_t bytes;
    /* Skip into the second segment, cut in the third. */
    unsigned k = vsock_iov_window(iov, 3, 15, 30, out, 3, &bytes);
    assert_int_equal(k, 2);
    assert_int_equal(bytes, 30);
    assert_ptr_equal(out[0].base, m + 15);
    assert_int_equal(out[0].len, 15);
    assert_ptr_equal(out[1].base, m + 30);
    assert_int_equal(out[1].len, 15);
    /* Skip exactly a segment: no zero-length entry. */
    k = vsock_iov_window(iov, 3, 10, 1000, out, 3, &bytes);
    assert_int_equal(k, 2);
    assert_int_equal(bytes, 50);
    assert_ptr_equal(out[0].base, m + 10);
    /* Out of room: cut short, bytes says how much. */
    k = vsock_iov_window(iov, 3, 0, 1000, out, 1, &bytes);
    assert_int_equal(k, 1);
    assert_int_equal(bytes, 10);
    /* Nothing left, or nothing asked. */
    assert_int_equal(vsock_iov_window(iov, 3, 60, 5, out, 3, &bytes), 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(vsock_iov_window(iov, 3, 0, 0, out, 3, &bytes), 0);
    assert_int_equal(bytes, 0);
}

static void test_parse_connect(void **state)
{
    (void)state;
    uint32_t p = 0;
#define OK(s, v)                                                                                   \
    do {                                                                                           \
        assert_int_equal(vsock_parse_connect(s, (uint32_t)strlen(s), &p), 0);                      \
        assert_int_equal(p, v);                                                                    \
    } while (0)
#define BAD(s) assert_int_equal(vsock_parse_connect(s, (uint32_t)strlen(s), &p), -EINVAL)
    OK("CONNECT 52", 52);
    OK("CONNECT 0", 0);
    OK("CONNECT 4294967295", 4294967295u);
    OK("CONNECT 0000000001", 1);
    BAD("CONNECT 4294967296");
    BAD("CONNECT 99999999999");
    BAD("CONNECT ");
    BAD("CONNECT");
    BAD("connect 52");
    BAD("CONNECT  52");
    BAD("CONNECT 52 ");
    BAD("CONNECT +52");
    BAD("CONNECT -1");
    BAD("CONNECT 5x");
    BAD("CONNECT 52\r");
    BAD("CONNECTX52");
    BAD("");
#undef OK
#undef BAD
    /* An embedded NUL is not the end of the line. */
    assert_int_equal(vsock_parse_connect("CONNECT 5\0"
                                         "2",
                                         11, &p),
                     -EINVAL);
}

int main(void)
{
#define T(f) cmocka_unit_test(f)
    const struct CMUnitTest tests[] = {
        T(test_wire_layout),
        T(test_accepts_well_formed),
        T(test_wrong_cids_are_dropped),
        T(test_bad_type_and_op_reset),
        T(test_bad_lengths_reset),
        T(test_reason_names),
        T(test_gather_scatter_any_layout),
        T(test_gather_scatter_short),
        T(test_window),
        T(test_parse_connect),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
