/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * AML encoder. Opcode values and encodings are from the ACPI 6.5 specification:
 * chapter 20 (AML grammar: 20.2.2 name objects, 20.2.3 data objects, 20.2.4 package
 * length, 20.2.5 term objects) and section 6.4 (resource data types).
 */
#include "arch/x86/acpi/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Name and data prefixes (20.2.2, 20.2.3). */
#define AML_NULL_NAME          0x00
#define AML_ZERO_OP            0x00
#define AML_ONE_OP             0x01
#define AML_DUAL_NAME_PREFIX   0x2e
#define AML_MULTI_NAME_PREFIX  0x2f
#define AML_ROOT_CHAR          0x5c
#define AML_PARENT_PREFIX_CHAR 0x5e
#define AML_BYTE_PREFIX        0x0a
#define AML_WORD_PREFIX        0x0b
#define AML_DWORD_PREFIX       0x0c
#define AML_STRING_PREFIX      0x0d
#define AML_QWORD_PREFIX       0x0e
#define AML_ONES_OP            0xff

/* Named and type-2 opcodes that open a PkgLength (20.2.5). */
#define AML_NAME_OP    0x08
#define AML_SCOPE_OP   0x10
#define AML_BUFFER_OP  0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP  0x14
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE_OP  0x82 /* after AML_EXT_PREFIX */
#define AML_IF_OP      0xa0
#define AML_ELSE_OP    0xa1
#define AML_LOCAL0_OP  0x60
#define AML_ARG0_OP    0x68

/* Resource descriptor tags (6.4.2 small, 6.4.3 large). */
#define RD_IRQ_NOFLAGS      0x22 /* small item 0x4, length 2 */
#define RD_IO               0x47 /* small item 0x8, length 7 */
#define RD_END_TAG          0x79 /* small item 0xf, length 1 */
#define RD_MEMORY32_FIXED   0x86
#define RD_DWORD_ADDR_SPACE 0x87
#define RD_WORD_ADDR_SPACE  0x88
#define RD_EXT_IRQ          0x89
#define RD_QWORD_ADDR_SPACE 0x8a

/* Address-space descriptor fields (6.4.3.5). */
#define RD_SPACE_MEMORY    0
#define RD_SPACE_IO        1
#define RD_SPACE_BUS       2
#define RD_GFLAG_CONSUMER  (1u << 0)
#define RD_GFLAG_MIN_FIXED (1u << 2)
#define RD_GFLAG_MAX_FIXED (1u << 3)
#define RD_IO_RANGE_ENTIRE 3u
#define RD_MEM_RW          (1u << 0)

#define AML_NAMESEG_LEN 4

static void fail(struct aml_buf *b, int err)
{
    if (b->err == 0)
        b->err = err;
}

void aml_init(struct aml_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void aml_release(struct aml_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int aml_error(const struct aml_buf *b)
{
    return b->err;
}

int aml_finish(struct aml_buf *b)
{
    if (b->err == 0 && b->depth != 0)
        fail(b, -EINVAL);
    return b->err;
}

/* Make room for @p extra more bytes; false (with the error recorded) if impossible. */
static bool reserve(struct aml_buf *b, size_t extra)
{
    if (b->err != 0)
        return false;
    if (extra > AML_MAX_LEN - b->len) {
        fail(b, -E2BIG);
        return false;
    }
    size_t need = b->len + extra;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > AML_MAX_LEN)
        cap = AML_MAX_LEN;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        fail(b, -ENOMEM);
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void aml_bytes(struct aml_buf *b, const void *p, size_t n)
{
    if (n == 0 || !reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void aml_byte(struct aml_buf *b, uint8_t v)
{
    aml_bytes(b, &v, 1);
}

/* Insert @p n bytes at offset @p pos, shifting what follows. */
static void insert(struct aml_buf *b, size_t pos, const uint8_t *p, size_t n)
{
    if (!reserve(b, n))
        return;
    memmove(b->data + pos + n, b->data + pos, b->len - pos);
    memcpy(b->data + pos, p, n);
    b->len += n;
}

static void put_le(uint8_t *out, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static void emit_le(struct aml_buf *b, uint64_t v, unsigned n)
{
    uint8_t tmp[8];
    put_le(tmp, v, n);
    aml_bytes(b, tmp, n);
}

int aml_pkglen_encode(uint32_t value, uint8_t out[AML_PKGLEN_MAX_BYTES])
{
    if (value <= 0x3f) {
        out[0] = (uint8_t)value;
        return 1;
    }
    unsigned follow;
    if (value <= 0xfff)
        follow = 1;
    else if (value <= 0xfffff)
        follow = 2;
    else if (value <= AML_PKGLEN_MAX)
        follow = 3;
    else
        return -E2BIG;
    /* Lead byte: count of following bytes in bits 7-6, low nibble of the length in 3-0. */
    out[0] = (uint8_t)((follow << 6) | (value & 0xf));
    for (unsigned i = 1; i <= follow; i++)
        out[i] = (uint8_t)(value >> (4 + 8 * (i - 1)));
    return (int)follow + 1;
}

/*
 * A PkgLength counts its own bytes, so the encoded size depends on the total it yields:
 * pick the smallest size whose range holds body + size.
 */
static void insert_pkglen(struct aml_buf *b, size_t pos)
{
    size_t body = b->len - pos;
    static const uint32_t limit[AML_PKGLEN_MAX_BYTES] = {0x3f, 0xfff, 0xfffff, AML_PKGLEN_MAX};
    for (unsigned n = 1; n <= AML_PKGLEN_MAX_BYTES; n++) {
        if (body + n <= limit[n - 1]) {
            uint8_t enc[AML_PKGLEN_MAX_BYTES];
            int len = aml_pkglen_encode((uint32_t)(body + n), enc);
            if (len != (int)n) {
                fail(b, -EINVAL);
                return;
            }
            insert(b, pos, enc, n);
            return;
        }
    }
    fail(b, -E2BIG);
}

static void open_block(struct aml_buf *b, enum aml_block kind)
{
    if (b->err != 0)
        return;
    if (b->depth >= AML_MAX_DEPTH) {
        fail(b, -E2BIG);
        return;
    }
    b->open[b->depth].pos = b->len;
    b->open[b->depth].kind = kind;
    b->depth++;
}

/* Encode an integer constant into out (at most 9 bytes); returns its length. */
static size_t int_encode(uint64_t v, uint8_t out[9])
{
    if (v == 0) {
        out[0] = AML_ZERO_OP;
        return 1;
    }
    if (v == 1) {
        out[0] = AML_ONE_OP;
        return 1;
    }
    if (v == UINT64_MAX) {
        out[0] = AML_ONES_OP;
        return 1;
    }
    unsigned n;
    if (v <= UINT8_MAX) {
        out[0] = AML_BYTE_PREFIX;
        n = 1;
    } else if (v <= UINT16_MAX) {
        out[0] = AML_WORD_PREFIX;
        n = 2;
    } else if (v <= UINT32_MAX) {
        out[0] = AML_DWORD_PREFIX;
        n = 4;
    } else {
        out[0] = AML_QWORD_PREFIX;
        n = 8;
    }
    put_le(out + 1, v, n);
    return n + 1;
}

void aml_int(struct aml_buf *b, uint64_t v)
{
    uint8_t enc[9];
    size_t n = int_encode(v, enc);
    aml_bytes(b, enc, n);
}

void aml_end(struct aml_buf *b)
{
    if (b->err != 0)
        return;
    if (b->depth == 0) {
        fail(b, -EINVAL);
        return;
    }
    const struct aml_open_block *blk = &b->open[b->depth - 1];
    size_t pos = blk->pos;
    if (blk->kind == AML_BLOCK_RESOURCE_TEMPLATE) {
        /* End Tag; a zero checksum means "treat as valid" (6.4.2.9). */
        aml_byte(b, RD_END_TAG);
        aml_byte(b, 0);
    }
    if (blk->kind == AML_BLOCK_BUFFER || blk->kind == AML_BLOCK_RESOURCE_TEMPLATE) {
        uint8_t enc[9];
        size_t n = int_encode(b->len - pos, enc);
        insert(b, pos, enc, n);
    }
    insert_pkglen(b, pos);
    if (b->err == 0)
        b->depth--;
}

static bool is_lead_char(char c)
{
    return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_lead_char(c) || (c >= '0' && c <= '9');
}

void aml_namestring(struct aml_buf *b, const char *path)
{
    if (b->err != 0)
        return;
    if (path == NULL) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t prefix[256];
    size_t np = 0;
    if (*path == '\\') {
        prefix[np++] = AML_ROOT_CHAR;
        path++;
    } else {
        while (*path == '^') {
            if (np == sizeof(prefix)) {
                fail(b, -EINVAL);
                return;
            }
            prefix[np++] = AML_PARENT_PREFIX_CHAR;
            path++;
        }
    }

    /* Segments, padded to four characters; at most 255 (MultiNamePrefix count is a byte). */
    uint8_t segs[255 * AML_NAMESEG_LEN];
    size_t nsegs = 0;
    const char *p = path;
    while (*p != '\0') {
        if (nsegs == 255) {
            fail(b, -EINVAL);
            return;
        }
        uint8_t *seg = &segs[nsegs * AML_NAMESEG_LEN];
        size_t len = 0;
        while (*p != '\0' && *p != '.') {
            bool ok = len == 0 ? is_lead_char(*p) : is_name_char(*p);
            if (!ok || len == AML_NAMESEG_LEN) {
                fail(b, -EINVAL);
                return;
            }
            seg[len++] = (uint8_t)*p++;
        }
        if (len == 0) {
            fail(b, -EINVAL); /* empty segment: "A..B", ".A" or "A." */
            return;
        }
        memset(seg + len, '_', AML_NAMESEG_LEN - len);
        nsegs++;
        if (*p == '.') {
            p++;
            if (*p == '\0') {
                fail(b, -EINVAL);
                return;
            }
        }
    }

    aml_bytes(b, prefix, np);
    if (nsegs == 0) {
        aml_byte(b, AML_NULL_NAME);
    } else if (nsegs == 2) {
        aml_byte(b, AML_DUAL_NAME_PREFIX);
    } else if (nsegs > 2) {
        aml_byte(b, AML_MULTI_NAME_PREFIX);
        aml_byte(b, (uint8_t)nsegs);
    }
    aml_bytes(b, segs, nsegs * AML_NAMESEG_LEN);
}

void aml_string(struct aml_buf *b, const char *s)
{
    if (b->err != 0)
        return;
    if (s == NULL) {
        fail(b, -EINVAL);
        return;
    }
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] > 0x7f) {
            fail(b, -EINVAL);
            return;
        }
    }
    aml_byte(b, AML_STRING_PREFIX);
    aml_bytes(b, s, n + 1);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int aml_eisaid_value(const char *id, uint32_t *out)
{
    if (id == NULL || strlen(id) != 7)
        return -EINVAL;
    uint32_t letters = 0;
    for (unsigned i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return -EINVAL;
        /* Each letter is stored as 5 bits, 'A' = 1. */
        letters = (letters << 5) | (uint32_t)(id[i] - 'A' + 1);
    }
    uint32_t digits = 0;
    for (unsigned i = 3; i < 7; i++) {
        /* Upper case only, as the id is compared as text once decompressed. */
        if (id[i] >= 'a' && id[i] <= 'f')
            return -EINVAL;
        int h = hex_value(id[i]);
        if (h < 0)
            return -EINVAL;
        digits = (digits << 4) | (uint32_t)h;
    }
    /*
     * The compressed id is a big-endian bit string (0, 15 bits of letters, 16 bits of
     * product number) that AML stores as a little-endian DWord: swap the bytes.
     */
    uint32_t be = (letters << 16) | digits;
    *out = ((be >> 24) & 0xff) | ((be >> 8) & 0xff00) | ((be << 8) & 0xff0000) | (be << 24);
    return 0;
}

void aml_eisaid(struct aml_buf *b, const char *id)
{
    uint32_t v;
    int rc = aml_eisaid_value(id, &v);
    if (rc < 0) {
        fail(b, rc);
        return;
    }
    aml_byte(b, AML_DWORD_PREFIX);
    emit_le(b, v, 4);
}

void aml_uuid(struct aml_buf *b, const char *uuid)
{
    /* Group lengths in hex digits, and whether the group is stored little-endian. */
    static const unsigned group_len[5] = {8, 4, 4, 4, 12};
    static const bool group_le[5] = {true, true, true, false, false};
    uint8_t out[16];
    size_t o = 0;
    const char *p = uuid;
    if (b->err != 0)
        return;
    if (p == NULL) {
        fail(b, -EINVAL);
        return;
    }
    for (unsigned g = 0; g < 5; g++) {
        uint8_t grp[6];
        unsigned nbytes = group_len[g] / 2;
        for (unsigned i = 0; i < nbytes; i++) {
            int hi = hex_value(p[0]);
            int lo = hi < 0 ? -1 : hex_value(p[1]);
            if (lo < 0) {
                fail(b, -EINVAL);
                return;
            }
            grp[i] = (uint8_t)((hi << 4) | lo);
            p += 2;
        }
        if (g < 4 && *p++ != '-') {
            fail(b, -EINVAL);
            return;
        }
        for (unsigned i = 0; i < nbytes; i++)
            out[o++] = group_le[g] ? grp[nbytes - 1 - i] : grp[i];
    }
    if (*p != '\0') {
        fail(b, -EINVAL);
        return;
    }
    aml_buffer_begin(b);
    aml_bytes(b, out, sizeof(out));
    aml_end(b);
}

void aml_arg(struct aml_buf *b, unsigned n)
{
    if (n > 6) {
        fail(b, -EINVAL);
        return;
    }
    aml_byte(b, (uint8_t)(AML_ARG0_OP + n));
}

void aml_local(struct aml_buf *b, unsigned n)
{
    if (n > 7) {
        fail(b, -EINVAL);
        return;
    }
    aml_byte(b, (uint8_t)(AML_LOCAL0_OP + n));
}

void aml_op(struct aml_buf *b, enum aml_opcode op)
{
    aml_byte(b, (uint8_t)op);
}

void aml_null_target(struct aml_buf *b)
{
    aml_byte(b, AML_NULL_NAME);
}

void aml_name(struct aml_buf *b, const char *name)
{
    aml_byte(b, AML_NAME_OP);
    aml_namestring(b, name);
}

void aml_name_int(struct aml_buf *b, const char *name, uint64_t v)
{
    aml_name(b, name);
    aml_int(b, v);
}

void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id)
{
    aml_name(b, name);
    aml_eisaid(b, id);
}

void aml_name_string(struct aml_buf *b, const char *name, const char *s)
{
    aml_name(b, name);
    aml_string(b, s);
}

void aml_scope_begin(struct aml_buf *b, const char *path)
{
    aml_byte(b, AML_SCOPE_OP);
    open_block(b, AML_BLOCK_PKGLEN);
    aml_namestring(b, path);
}

void aml_device_begin(struct aml_buf *b, const char *path)
{
    aml_byte(b, AML_EXT_PREFIX);
    aml_byte(b, AML_DEVICE_OP);
    open_block(b, AML_BLOCK_PKGLEN);
    aml_namestring(b, path);
}

void aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs, bool serialized)
{
    if (nargs > 7) {
        fail(b, -EINVAL);
        return;
    }
    aml_byte(b, AML_METHOD_OP);
    open_block(b, AML_BLOCK_PKGLEN);
    aml_namestring(b, path);
    /* MethodFlags: bits 2-0 ArgCount, bit 3 SerializeFlag, bits 7-4 SyncLevel (0). */
    aml_byte(b, (uint8_t)(nargs | (serialized ? 0x08u : 0u)));
}

void aml_if_begin(struct aml_buf *b)
{
    aml_byte(b, AML_IF_OP);
    open_block(b, AML_BLOCK_PKGLEN);
}

void aml_else_begin(struct aml_buf *b)
{
    aml_byte(b, AML_ELSE_OP);
    open_block(b, AML_BLOCK_PKGLEN);
}

void aml_package_begin(struct aml_buf *b, unsigned nelems)
{
    if (nelems > UINT8_MAX) {
        fail(b, -EINVAL);
        return;
    }
    aml_byte(b, AML_PACKAGE_OP);
    open_block(b, AML_BLOCK_PKGLEN);
    aml_byte(b, (uint8_t)nelems);
}

void aml_buffer_begin(struct aml_buf *b)
{
    aml_byte(b, AML_BUFFER_OP);
    open_block(b, AML_BLOCK_BUFFER);
}

void aml_resource_template_begin(struct aml_buf *b)
{
    aml_byte(b, AML_BUFFER_OP);
    open_block(b, AML_BLOCK_RESOURCE_TEMPLATE);
}

void aml_method_return_int(struct aml_buf *b, const char *path, uint64_t v)
{
    aml_method_begin(b, path, 0, false);
    aml_op(b, AML_OP_RETURN);
    aml_int(b, v);
    aml_end(b);
}

void aml_rd_io(struct aml_buf *b, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    if (max < min) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t d[8] = {RD_IO, 0x01 /* Decode16 */};
    put_le(&d[2], min, 2);
    put_le(&d[4], max, 2);
    d[6] = align;
    d[7] = len;
    aml_bytes(b, d, sizeof(d));
}

void aml_rd_irq_noflags(struct aml_buf *b, unsigned irq)
{
    if (irq > 15) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t d[3] = {RD_IRQ_NOFLAGS};
    put_le(&d[1], 1u << irq, 2);
    aml_bytes(b, d, sizeof(d));
}

void aml_rd_ext_irq(struct aml_buf *b, unsigned flags, uint32_t irq)
{
    if ((flags & ~0x1fu) != 0) {
        fail(b, -EINVAL);
        return;
    }
    /* Length 6: flags, table length, one 32-bit interrupt number; no resource source. */
    uint8_t d[9] = {RD_EXT_IRQ, 6, 0, (uint8_t)flags, 1};
    put_le(&d[5], irq, 4);
    aml_bytes(b, d, sizeof(d));
}

void aml_rd_memory32_fixed(struct aml_buf *b, bool rw, uint32_t base, uint32_t len)
{
    if ((uint64_t)base + len > (1ull << 32)) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t d[12] = {RD_MEMORY32_FIXED, 9, 0, rw ? RD_MEM_RW : 0};
    put_le(&d[4], base, 4);
    put_le(&d[8], len, 4);
    aml_bytes(b, d, sizeof(d));
}

/*
 * Address-space descriptors of every width share one layout: tag, 16-bit length, resource
 * type, general flags, type-specific flags, then granularity, minimum, maximum,
 * translation offset and length, each @p width bytes. Windows are always fixed
 * (MinFixed, MaxFixed, positive decode), which requires granularity 0 and
 * length = max - min + 1 (6.4.3.5, table "valid combinations").
 */
static void addr_space(struct aml_buf *b, uint8_t tag, unsigned width, uint8_t type,
                       enum aml_rsrc_usage usage, uint8_t type_flags, uint64_t min, uint64_t max)
{
    /* The length field has the same width as the addresses: max - min + 1 must fit. */
    uint64_t len = max - min + 1;
    if (max < min || len == 0 || (width < 8 && (len >> (8 * width)) != 0)) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t d[3 + 3 + 5 * 8];
    size_t total = 6 + 5 * (size_t)width;
    d[0] = tag;
    put_le(&d[1], total - 3, 2);
    d[3] = type;
    d[4] = (uint8_t)(RD_GFLAG_MIN_FIXED | RD_GFLAG_MAX_FIXED |
                     (usage == AML_RSRC_CONSUMER ? RD_GFLAG_CONSUMER : 0));
    d[5] = type_flags;
    put_le(&d[6], 0, width);               /* granularity */
    put_le(&d[6 + width], min, width);     /* minimum */
    put_le(&d[6 + 2 * width], max, width); /* maximum */
    put_le(&d[6 + 3 * width], 0, width);   /* translation offset */
    put_le(&d[6 + 4 * width], len, width); /* length */
    aml_bytes(b, d, total);
}

void aml_rd_word_bus(struct aml_buf *b, enum aml_rsrc_usage usage, uint16_t min, uint16_t max)
{
    addr_space(b, RD_WORD_ADDR_SPACE, 2, RD_SPACE_BUS, usage, 0, min, max);
}

void aml_rd_word_io(struct aml_buf *b, enum aml_rsrc_usage usage, uint16_t min, uint16_t max)
{
    addr_space(b, RD_WORD_ADDR_SPACE, 2, RD_SPACE_IO, usage, RD_IO_RANGE_ENTIRE, min, max);
}

static uint8_t mem_flags(enum aml_mem_cache cache, bool rw)
{
    /* Bits 2-1 _MEM, bit 0 _RW; _MTP AddressRangeMemory and _TTP TypeStatic are 0. */
    return (uint8_t)(((unsigned)cache & 3u) << 1 | (rw ? RD_MEM_RW : 0u));
}

void aml_rd_dword_memory(struct aml_buf *b, enum aml_rsrc_usage usage, enum aml_mem_cache cache,
                         bool rw, uint32_t min, uint32_t max)
{
    addr_space(b, RD_DWORD_ADDR_SPACE, 4, RD_SPACE_MEMORY, usage, mem_flags(cache, rw), min, max);
}

void aml_rd_qword_memory(struct aml_buf *b, enum aml_rsrc_usage usage, enum aml_mem_cache cache,
                         bool rw, uint64_t min, uint64_t max)
{
    addr_space(b, RD_QWORD_ADDR_SPACE, 8, RD_SPACE_MEMORY, usage, mem_flags(cache, rw), min, max);
}
