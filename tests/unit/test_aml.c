/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The AML builder: every encoding checked byte by byte against the ACPI 6.5 grammar
 * (chapter 20) and resource descriptor layouts (6.4), then a stream using every construct
 * disassembled by iasl as an independent decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/acpi/aml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Build into a fresh stream with @p body, then compare with the expected bytes. */
#define EXPECT_BYTES(b, ...)                                                                       \
    do {                                                                                           \
        static const uint8_t want_[] = {__VA_ARGS__};                                              \
        assert_int_equal(aml_finish(b), 0);                                                        \
        assert_int_equal((b)->len, sizeof(want_));                                                 \
        assert_memory_equal((b)->data, want_, sizeof(want_));                                      \
    } while (0)

static int setup(void **state)
{
    struct aml_buf *b = malloc(sizeof(*b));
    if (b == NULL)
        return -1;
    aml_init(b);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct aml_buf *b = *state;
    aml_release(b);
    free(b);
    return 0;
}

/* Independent PkgLength decoder (20.2.4): returns the value and the bytes it took. */
static uint32_t decode_pkglen(const uint8_t *p, unsigned *nbytes)
{
    unsigned follow = p[0] >> 6;
    *nbytes = follow + 1;
    if (follow == 0)
        return p[0] & 0x3f;
    uint32_t v = p[0] & 0x0f;
    for (unsigned i = 0; i < follow; i++)
        v |= (uint32_t)p[1 + i] << (4 + 8 * i);
    return v;
}

static void check_pkglen(uint32_t value, unsigned nbytes, const uint8_t *want)
{
    uint8_t out[AML_PKGLEN_MAX_BYTES];
    memset(out, 0xee, sizeof(out));
    assert_int_equal(aml_pkglen_encode(value, out), (int)nbytes);
    assert_memory_equal(out, want, nbytes);
    unsigned n;
    assert_int_equal(decode_pkglen(out, &n), value);
    assert_int_equal(n, nbytes);
}

static void test_pkglen_encode_boundaries(void **state)
{
    (void)state;
    check_pkglen(0, 1, (const uint8_t[]){0x00});
    check_pkglen(63, 1, (const uint8_t[]){0x3f});
    check_pkglen(64, 2, (const uint8_t[]){0x40, 0x04});
    check_pkglen(0x123, 2, (const uint8_t[]){0x43, 0x12});
    check_pkglen(4095, 2, (const uint8_t[]){0x4f, 0xff});
    check_pkglen(4096, 3, (const uint8_t[]){0x80, 0x00, 0x01});
    check_pkglen(0xfffff, 3, (const uint8_t[]){0x8f, 0xff, 0xff});
    check_pkglen(0x100000, 4, (const uint8_t[]){0xc0, 0x00, 0x00, 0x01});
    check_pkglen(0x0fffffff, 4, (const uint8_t[]){0xcf, 0xff, 0xff, 0xff});
    uint8_t out[AML_PKGLEN_MAX_BYTES];
    assert_int_equal(aml_pkglen_encode(0x10000000, out), -E2BIG);
}

/*
 * A Scope whose body (NameString + filler) is @p body bytes: its PkgLength must cover
 * itself and the body, in the fewest bytes.
 */
static void scope_with_body(size_t body, unsigned want_bytes)
{
    struct aml_buf b;
    aml_init(&b);
    aml_scope_begin(&b, "ABCD");
    uint8_t *fill = calloc(1, body);
    assert_non_null(fill);
    aml_bytes(&b, fill, body - 4);
    free(fill);
    aml_end(&b);
    assert_int_equal(aml_finish(&b), 0);
    assert_int_equal(b.data[0], 0x10); /* ScopeOp */
    unsigned n;
    uint32_t v = decode_pkglen(&b.data[1], &n);
    assert_int_equal(n, want_bytes);
    assert_int_equal(v, body + n);
    assert_int_equal(b.len, 1 + n + body);
    assert_memory_equal(&b.data[1 + n], "ABCD", 4);
    aml_release(&b);
}

static void test_pkglen_backpatch_boundaries(void **state)
{
    (void)state;
    scope_with_body(4, 1);
    scope_with_body(62, 1);      /* 62 + 1 = 63: the largest one-byte length */
    scope_with_body(63, 2);      /* 63 + 1 = 64 does not fit one byte */
    scope_with_body(4093, 2);    /* 4093 + 2 = 4095 */
    scope_with_body(4094, 3);    /* 4094 + 2 = 4096 */
    scope_with_body(0xffffc, 3); /* 0xffffc + 3 = 0xfffff */
    scope_with_body(0xffffd, 4); /* 0xffffd + 3 = 0x100000 */
}

static void test_pkglen_nested(void **state)
{
    struct aml_buf *b = *state;
    /* Scope(\_SB) { Device(DEV0) { Name(_UID, One) } } */
    aml_scope_begin(b, "\\_SB");
    aml_device_begin(b, "DEV0");
    aml_name_int(b, "_UID", 1);
    aml_end(b);
    aml_end(b);
    EXPECT_BYTES(b, 0x10, 0x13, '\\', '_', 'S', 'B', '_', /* Scope */
                 0x5b, 0x82, 0x0b, 'D', 'E', 'V', '0',    /* Device */
                 0x08, '_', 'U', 'I', 'D', 0x01);         /* Name */
}

static void check_int(uint64_t v, const uint8_t *want, size_t n)
{
    struct aml_buf b;
    aml_init(&b);
    aml_int(&b, v);
    assert_int_equal(aml_finish(&b), 0);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    aml_release(&b);
}

static void test_integers(void **state)
{
    (void)state;
    check_int(0, (const uint8_t[]){0x00}, 1);
    check_int(1, (const uint8_t[]){0x01}, 1);
    check_int(2, (const uint8_t[]){0x0a, 0x02}, 2);
    check_int(0xff, (const uint8_t[]){0x0a, 0xff}, 2);
    check_int(0x100, (const uint8_t[]){0x0b, 0x00, 0x01}, 3);
    check_int(0xffff, (const uint8_t[]){0x0b, 0xff, 0xff}, 3);
    check_int(0x10000, (const uint8_t[]){0x0c, 0x00, 0x00, 0x01, 0x00}, 5);
    check_int(0xffffffff, (const uint8_t[]){0x0c, 0xff, 0xff, 0xff, 0xff}, 5);
    check_int(0x100000000, (const uint8_t[]){0x0e, 0, 0, 0, 0, 1, 0, 0, 0}, 9);
    check_int(0x0123456789abcdef,
              (const uint8_t[]){0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01}, 9);
    check_int(UINT64_MAX - 1,
              (const uint8_t[]){0x0e, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9);
    check_int(UINT64_MAX, (const uint8_t[]){0xff}, 1); /* Ones */
}

static void test_eisaid(void **state)
{
    struct aml_buf *b = *state;
    uint32_t v;
    assert_int_equal(aml_eisaid_value("PNP0A08", &v), 0);
    assert_int_equal(v, 0x080ad041);
    assert_int_equal(aml_eisaid_value("PNP0A03", &v), 0);
    assert_int_equal(v, 0x030ad041);
    assert_int_equal(aml_eisaid_value("PNP0C02", &v), 0);
    assert_int_equal(v, 0x020cd041);
    assert_int_equal(aml_eisaid_value("PNP0501", &v), 0);
    assert_int_equal(v, 0x0105d041);
    assert_int_equal(aml_eisaid_value("ABC0000", &v), 0); /* small value: still a DWord */
    assert_int_equal(v, 0x00004304);

    const char *bad[] = {"pnp0A08", "PNP0a08", "PNP0A0", "PNP0A088", "PNP0A0G", "P1P0A08", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(aml_eisaid_value(bad[i], &v), -EINVAL);
    assert_int_equal(aml_eisaid_value(NULL, &v), -EINVAL);

    aml_eisaid(b, "PNP0A08");
    aml_eisaid(b, "ABC0000");
    EXPECT_BYTES(b, 0x0c, 0x41, 0xd0, 0x0a, 0x08, 0x0c, 0x04, 0x43, 0x00, 0x00);
}

static void check_name(const char *path, const uint8_t *want, size_t n)
{
    struct aml_buf b;
    aml_init(&b);
    aml_namestring(&b, path);
    assert_int_equal(aml_finish(&b), 0);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    aml_release(&b);
}

static void test_namestrings(void **state)
{
    (void)state;
    check_name("_HID", (const uint8_t[]){'_', 'H', 'I', 'D'}, 4);
    check_name("S5", (const uint8_t[]){'S', '5', '_', '_'}, 4);
    check_name("\\_SB", (const uint8_t[]){'\\', '_', 'S', 'B', '_'}, 5);
    check_name("\\_SB.PCI0", (const uint8_t[]){'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'},
               10);
    check_name("\\_SB.PCI0.S08",
               (const uint8_t[]){'\\', 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'S', '0',
                                 '8', '_'},
               15);
    check_name("^^CDW1", (const uint8_t[]){'^', '^', 'C', 'D', 'W', '1'}, 6);
    check_name("^A.B", (const uint8_t[]){'^', 0x2e, 'A', '_', '_', '_', 'B', '_', '_', '_'}, 10);
    check_name("\\", (const uint8_t[]){'\\', 0x00}, 2);
    check_name("", (const uint8_t[]){0x00}, 1);

    const char *bad[] = {"1ABC", "ABCDE", "abc", "A..B", "A.", ".A", "\\^A", "A-B", "\\\\A"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct aml_buf b;
        aml_init(&b);
        aml_namestring(&b, bad[i]);
        assert_int_equal(aml_finish(&b), -EINVAL);
        assert_int_equal(b.len, 0);
        aml_release(&b);
    }
}

static void test_strings_and_names(void **state)
{
    struct aml_buf *b = *state;
    aml_name_string(b, "_DDN", "COM1");
    aml_name_eisaid(b, "_HID", "PNP0501");
    EXPECT_BYTES(b, 0x08, '_', 'D', 'D', 'N', 0x0d, 'C', 'O', 'M', '1', 0x00, /* Name string */
                 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01);     /* Name EISAID */

    struct aml_buf bad;
    aml_init(&bad);
    aml_string(&bad, "caf\xc3\xa9");
    assert_int_equal(aml_finish(&bad), -EINVAL);
    aml_release(&bad);
}

static void test_uuid(void **state)
{
    struct aml_buf *b = *state;
    aml_uuid(b, "33DB4D5B-1FF7-401C-9657-7441C03DD766");
    EXPECT_BYTES(b, 0x11, 0x13, 0x0a, 0x10, /* Buffer, PkgLength 19, BufferSize 16 */
                 0x5b, 0x4d, 0xdb, 0x33, 0xf7, 0x1f, 0x1c, 0x40, 0x96, 0x57, 0x74, 0x41, 0xc0, 0x3d,
                 0xd7, 0x66);

    const char *bad[] = {
        "33DB4D5B-1FF7-401C-9657-7441C03DD76", "33DB4D5B-1FF7-401C-9657-7441C03DD7666",
        "33DB4D5B1FF7-401C-9657-7441C03DD766-", "33DB4D5G-1FF7-401C-9657-7441C03DD766", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct aml_buf e;
        aml_init(&e);
        aml_uuid(&e, bad[i]);
        assert_int_equal(aml_finish(&e), -EINVAL);
        aml_release(&e);
    }
}

static void test_method_and_ops(void **state)
{
    struct aml_buf *b = *state;
    aml_method_return_int(b, "_STA", 0x0f);
    /* Method(TST, 2, Serialized) { If (LNotEqual(Arg1, Local7)) { Store(Arg0, Local0) } } */
    aml_method_begin(b, "TST", 2, true);
    aml_if_begin(b);
    aml_op(b, AML_OP_LNOT);
    aml_op(b, AML_OP_LEQUAL);
    aml_arg(b, 1);
    aml_local(b, 7);
    aml_op(b, AML_OP_STORE);
    aml_arg(b, 0);
    aml_local(b, 0);
    aml_end(b);
    aml_else_begin(b);
    aml_op(b, AML_OP_RETURN);
    aml_null_target(b);
    aml_end(b);
    aml_end(b);
    EXPECT_BYTES(b, 0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f, /* _STA */
                 0x14, 0x13, 'T', 'S', 'T', '_', 0x0a,                      /* Method, flags */
                 0xa0, 0x08, 0x92, 0x93, 0x69, 0x67, 0x70, 0x68, 0x60,      /* If */
                 0xa1, 0x03, 0xa4, 0x00);                                   /* Else */
}

static void test_package(void **state)
{
    struct aml_buf *b = *state;
    aml_name(b, "\\_S5");
    aml_package_begin(b, 4);
    aml_int(b, 5);
    aml_int(b, 5);
    aml_int(b, 0);
    aml_int(b, 0);
    aml_end(b);
    EXPECT_BYTES(b, 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00,
                 0x00);
}

static void test_buffer_size_backpatch(void **state)
{
    (void)state;
    /* The BufferSize integer grows from a byte to a word at 256 bytes of content. */
    for (size_t n = 250; n <= 260; n++) {
        struct aml_buf b;
        aml_init(&b);
        aml_buffer_begin(&b);
        for (size_t i = 0; i < n; i++)
            aml_byte(&b, (uint8_t)i);
        aml_end(&b);
        assert_int_equal(aml_finish(&b), 0);
        assert_int_equal(b.data[0], 0x11);
        unsigned np;
        uint32_t pkglen = decode_pkglen(&b.data[1], &np);
        assert_int_equal(pkglen, b.len - 1);
        const uint8_t *sz = &b.data[1 + np];
        size_t size_len = n <= 0xff ? 2 : 3;
        if (n <= 0xff) {
            assert_int_equal(sz[0], 0x0a);
            assert_int_equal(sz[1], n);
        } else {
            assert_int_equal(sz[0], 0x0b);
            assert_int_equal(sz[1] | sz[2] << 8, n);
        }
        assert_int_equal(b.len, 1 + np + size_len + n);
        assert_int_equal(sz[size_len], 0);
        assert_int_equal(sz[size_len + n - 1], (uint8_t)(n - 1));
        aml_release(&b);
    }
}

static void test_resource_descriptors(void **state)
{
    struct aml_buf *b = *state;
    aml_resource_template_begin(b);
    aml_rd_io(b, 0x3f8, 0x3f8, 1, 8);
    aml_rd_irq_noflags(b, 4);
    aml_end(b);
    EXPECT_BYTES(b, 0x11, 0x10, 0x0a, 0x0d,                      /* Buffer(13) */
                 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, /* IO */
                 0x22, 0x10, 0x00,                               /* IRQNoFlags {4} */
                 0x79, 0x00);                                    /* End Tag */
}

static void test_address_space_descriptors(void **state)
{
    struct aml_buf *b = *state;
    aml_rd_word_bus(b, AML_RSRC_PRODUCER, 0, 0x3f);
    aml_rd_word_io(b, AML_RSRC_PRODUCER, 0x1000, 0xffff);
    aml_rd_dword_memory(b, AML_RSRC_PRODUCER, AML_MEM_NON_CACHEABLE, true, 0xc0000000, 0xdfffffff);
    aml_rd_qword_memory(b, AML_RSRC_CONSUMER, AML_MEM_PREFETCHABLE, false, 0x1000000000,
                        0x13ffffffff);
    aml_rd_memory32_fixed(b, true, 0xe0000000, 0x100000);
    aml_rd_ext_irq(b, AML_EXT_IRQ_CONSUMER | AML_EXT_IRQ_ACTIVE_LOW | AML_EXT_IRQ_SHARED, 20);
    EXPECT_BYTES(b,
                 /* WordBusNumber: type 2, MinFixed|MaxFixed, gran, min, max, xlate, len */
                 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00,
                 0x40, 0x00,
                 /* WordIO: type 1, EntireRange */
                 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x10, 0xff, 0xff, 0x00, 0x00,
                 0x00, 0xf0,
                 /* DWordMemory: type 0, NonCacheable ReadWrite */
                 0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff,
                 0xff, 0xdf, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20,
                 /* QWordMemory: consumer, Prefetchable ReadOnly */
                 0x8a, 0x2b, 0x00, 0x00, 0x0d, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00,
                 0x10, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x13, 0x00, 0x00, 0x00, 0, 0, 0, 0,
                 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
                 /* Memory32Fixed */
                 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x10, 0x00,
                 /* Extended Interrupt: consumer, level, active low, shared; one GSI */
                 0x89, 0x06, 0x00, 0x0d, 0x01, 0x14, 0x00, 0x00, 0x00);
}

static void test_descriptor_argument_errors(void **state)
{
    (void)state;
    struct aml_buf b;

    aml_init(&b);
    aml_rd_word_io(&b, AML_RSRC_PRODUCER, 0, 0xffff); /* length 0x10000 needs 17 bits */
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_dword_memory(&b, AML_RSRC_PRODUCER, AML_MEM_CACHEABLE, true, 0x2000, 0x1fff);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_qword_memory(&b, AML_RSRC_PRODUCER, AML_MEM_CACHEABLE, true, 0, UINT64_MAX);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_irq_noflags(&b, 16);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_memory32_fixed(&b, true, 0xfff00000, 0x100001);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_ext_irq(&b, 0x20, 5);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_rd_io(&b, 0x100, 0xff, 1, 1);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);
}

static void test_structure_errors(void **state)
{
    (void)state;
    struct aml_buf b;

    aml_init(&b);
    aml_end(&b); /* nothing open */
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_scope_begin(&b, "\\_SB");
    assert_int_equal(aml_error(&b), 0);
    assert_int_equal(aml_finish(&b), -EINVAL); /* left open */
    aml_release(&b);

    aml_init(&b);
    for (unsigned i = 0; i < AML_MAX_DEPTH; i++)
        aml_package_begin(&b, 1);
    assert_int_equal(aml_error(&b), 0);
    aml_package_begin(&b, 1);
    assert_int_equal(aml_finish(&b), -E2BIG);
    aml_release(&b);

    aml_init(&b);
    aml_package_begin(&b, 256);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_arg(&b, 7);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_local(&b, 8);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);

    aml_init(&b);
    aml_method_begin(&b, "M", 8, false);
    assert_int_equal(aml_finish(&b), -EINVAL);
    aml_release(&b);
}

static void test_errors_are_sticky(void **state)
{
    struct aml_buf *b = *state;
    aml_int(b, 5);
    aml_namestring(b, "bad");
    size_t len = b->len;
    aml_int(b, 7);
    aml_scope_begin(b, "\\_SB");
    aml_end(b);
    assert_int_equal(b->len, len); /* nothing appended after the error */
    assert_int_equal(aml_error(b), -EINVAL);
    assert_int_equal(aml_finish(b), -EINVAL);
}

static void test_size_limit(void **state)
{
    struct aml_buf *b = *state;
    uint8_t *big = calloc(1, AML_MAX_LEN);
    assert_non_null(big);
    aml_bytes(b, big, AML_MAX_LEN);
    assert_int_equal(aml_error(b), 0);
    aml_byte(b, 0);
    assert_int_equal(aml_finish(b), -E2BIG);
    assert_int_equal(b->len, AML_MAX_LEN);
    free(big);
}

/* ---- iasl as an independent decoder ---- */

static void put32le(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Wrap AML in a DSDT header (ACPI 6.5, 5.2.6) with a valid checksum. */
static size_t wrap_dsdt(uint8_t *out, const struct aml_buf *b)
{
    static const uint8_t header[36] = {
        'D', 'S', 'D', 'T', 0,   0,   0, 0, 2, 0, 'B', 'L', 'K', 'H', 'D', ' ', 'B', 'U',
        'L', 'K', 'H', 'E', 'A', 'D', 1, 0, 0, 0, 'T', 'E', 'S', 'T', 1,   0,   0,   0,
    };
    memcpy(out, header, sizeof(header));
    put32le(out + 4, (uint32_t)(36 + b->len));
    memcpy(out + 36, b->data, b->len);
    uint8_t sum = 0;
    for (size_t i = 0; i < 36 + b->len; i++)
        sum = (uint8_t)(sum + out[i]);
    out[9] = (uint8_t)(0u - sum);
    return 36 + b->len;
}

/* Run a shell command; returns its exit status and its combined output in @p out. */
static int run(const char *cmd, char *out, size_t outsz)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void test_iasl_decodes_everything(void **state)
{
    struct aml_buf *b = *state;
    aml_scope_begin(b, "\\_SB");
    aml_device_begin(b, "DEV0");
    aml_name_eisaid(b, "_HID", "PNP0C02");
    aml_name_string(b, "SNAM", "bulkhead");
    aml_name(b, "_CRS");
    aml_resource_template_begin(b);
    aml_rd_io(b, 0x600, 0x600, 1, 16);
    aml_rd_irq_noflags(b, 9);
    aml_rd_ext_irq(b, AML_EXT_IRQ_CONSUMER | AML_EXT_IRQ_ACTIVE_LOW | AML_EXT_IRQ_SHARED, 20);
    aml_rd_memory32_fixed(b, true, 0xe0000000, 0x100000);
    aml_rd_word_bus(b, AML_RSRC_PRODUCER, 0, 0xff);
    aml_rd_word_io(b, AML_RSRC_PRODUCER, 0xd00, 0xffff);
    aml_rd_dword_memory(b, AML_RSRC_PRODUCER, AML_MEM_NON_CACHEABLE, true, 0xc0000000, 0xdfffffff);
    aml_rd_qword_memory(b, AML_RSRC_PRODUCER, AML_MEM_PREFETCHABLE, false, 0x800000000,
                        0xbffffffff);
    aml_end(b);
    aml_name_int(b, "VALQ", 0x123456789);
    aml_method_begin(b, "_OSC", 4, true);
    aml_op(b, AML_OP_CREATE_DWORD_FIELD);
    aml_arg(b, 3);
    aml_int(b, 0);
    aml_namestring(b, "CDW1");
    aml_if_begin(b);
    aml_op(b, AML_OP_LEQUAL);
    aml_arg(b, 0);
    aml_uuid(b, "33DB4D5B-1FF7-401C-9657-7441C03DD766");
    aml_op(b, AML_OP_AND);
    aml_namestring(b, "CDW1");
    aml_int(b, 0xfffffffe);
    aml_namestring(b, "CDW1");
    aml_end(b);
    aml_else_begin(b);
    aml_op(b, AML_OP_OR);
    aml_namestring(b, "CDW1");
    aml_int(b, 4);
    aml_namestring(b, "CDW1");
    aml_end(b);
    aml_op(b, AML_OP_RETURN);
    aml_arg(b, 3);
    aml_end(b);
    aml_end(b);
    aml_end(b);
    assert_int_equal(aml_finish(b), 0);

    char dir[] = "/tmp/test_aml.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[1024], out[8192];
    snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
    uint8_t *table = malloc(36 + b->len);
    assert_non_null(table);
    size_t len = wrap_dsdt(table, b);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(table, 1, len, f), len);
    fclose(f);
    free(table);

    snprintf(cmd, sizeof(cmd), "cd %s && iasl -d dsdt.dat 2>&1", dir);
    int rc = run(cmd, out, sizeof(out));
    if (rc != 0)
        fail_msg("iasl -d failed (%d; is acpica-tools installed?):\n%s", rc, out);
    if (strstr(out, "Error") != NULL || strstr(out, "Warning") != NULL)
        fail_msg("iasl reported problems:\n%s", out);

    snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
    const char *dsl = read_file(path);
    const char *want[] = {
        "Device (DEV0)",
        "EisaId (\"PNP0C02\")",
        "\"bulkhead\"",
        "IO (Decode16,",
        "0x0600,",
        "IRQNoFlags ()",
        "{9}",
        "Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, )",
        "0x00000014,",
        "Memory32Fixed (ReadWrite,",
        "0xE0000000,",
        "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
        "0x00FF,",
        "WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
        "0x0D00,",
        "0xF300,",
        "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,",
        "0xDFFFFFFF,",
        "QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Prefetchable, ReadOnly,",
        "0x0000000BFFFFFFFF,",
        "0x0000000400000000,",
        "Name (VALQ, 0x0000000123456789)",
        "Method (_OSC, 4, Serialized)",
        "CreateDWordField (Arg3, Zero, CDW1)",
        "ToUUID (\"33db4d5b-1ff7-401c-9657-7441c03dd766\")",
        "CDW1 &= 0xFFFFFFFE",
        "CDW1 |= 0x04",
        "Return (Arg3)",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(dsl, want[i]) == NULL)
            fail_msg("disassembly lacks '%s':\n%s", want[i], dsl);
    }

    /* The disassembly must compile back without errors or warnings. */
    snprintf(cmd, sizeof(cmd), "cd %s && iasl -p re dsdt.dsl 2>&1", dir);
    rc = run(cmd, out, sizeof(out));
    if (rc != 0 || strstr(out, "0 Errors, 0 Warnings") == NULL)
        fail_msg("recompiling the disassembly failed:\n%s", out);

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkglen_encode_boundaries),
        cmocka_unit_test(test_pkglen_backpatch_boundaries),
        cmocka_unit_test_setup_teardown(test_pkglen_nested, setup, teardown),
        cmocka_unit_test(test_integers),
        cmocka_unit_test_setup_teardown(test_eisaid, setup, teardown),
        cmocka_unit_test(test_namestrings),
        cmocka_unit_test_setup_teardown(test_strings_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_and_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_package, setup, teardown),
        cmocka_unit_test(test_buffer_size_backpatch),
        cmocka_unit_test_setup_teardown(test_resource_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_space_descriptors, setup, teardown),
        cmocka_unit_test(test_descriptor_argument_errors),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test_setup_teardown(test_errors_are_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iasl_decodes_everything, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
