/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * x86 direct kernel boot: synthetic bzImages and PVH ELF files built here, loaded into a
 * fake guest RAM, and everything the kernel would read at entry checked at its raw offset
 * (so the test does not trust bootparam.h's layout). Also the real Debian kernel when
 * build/guest/vmlinuz exists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB (1024ULL * 1024)
#define GiB (1024ULL * MiB)

static const char *exe_path;

/* ---- little-endian helpers ---- */

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/* ---- fake guest RAM: lazily allocated, so multi-GiB guests cost only what is touched ---- */

struct fake_guest {
    struct guest_mem mem;
    void *maps[2];
    size_t sizes[2];
};

static void *map_anon(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void guest_init(struct fake_guest *g, uint64_t ram)
{
    memset(g, 0, sizeof(*g));
    uint64_t low = ram < X86_LOW_RAM_END ? ram : X86_LOW_RAM_END;
    g->sizes[0] = low;
    g->maps[0] = map_anon(low);
    assert_int_equal(guest_mem_add_region(&g->mem, 0, low, g->maps[0]), 0);
    if (ram > low) {
        g->sizes[1] = ram - low;
        g->maps[1] = map_anon(g->sizes[1]);
        assert_int_equal(guest_mem_add_region(&g->mem, X86_HIGH_RAM_START, g->sizes[1], g->maps[1]),
                         0);
    }
}

static void guest_free(struct fake_guest *g)
{
    for (int i = 0; i < 2; i++)
        if (g->maps[i] != NULL)
            munmap(g->maps[i], g->sizes[i]);
}

static uint8_t *gp(const struct fake_guest *g, uint64_t gpa, uint64_t len)
{
    uint8_t *p = guest_mem_ptr(&g->mem, gpa, len);
    assert_non_null(p);
    return p;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* ---- stderr capture: every failure must be logged exactly once, with its reason ---- */

struct capture {
    FILE *tmp;
    int saved;
    char text[4096];
};

static void capture_start(struct capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->tmp), STDERR_FILENO) >= 0);
}

static void capture_end(struct capture *c)
{
    fflush(stderr);
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->tmp);
    c->text[n] = '\0';
    fclose(c->tmp);
}

static unsigned count_substr(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Load, expect @p rc, and check that exactly one error line mentioning @p reason was logged. */
static void expect_load_error(const struct x86_boot_spec *spec, int rc, const char *reason)
{
    struct capture c;
    struct x86_boot_state st;
    capture_start(&c);
    int got = x86_boot_load(spec, &st);
    capture_end(&c);
    if (got != rc || count_substr(c.text, ": error: ") != 1 || strstr(c.text, reason) == NULL)
        print_error("load returned %d (want %d), log was:\n%s(want one error about '%s')\n", got,
                    rc, c.text, reason);
    assert_int_equal(got, rc);
    assert_int_equal(count_substr(c.text, ": error: "), 1);
    assert_non_null(strstr(c.text, reason));
}

/* ---- synthetic bzImage ---- */

struct bz_opts {
    uint16_t version;
    uint8_t loadflags;
    uint16_t xloadflags;
    uint8_t setup_sects;
    uint8_t relocatable;
    uint32_t kernel_alignment;
    uint64_t pref_address;
    uint32_t init_size;
    uint32_t cmdline_size;
    uint32_t initrd_addr_max;
    size_t payload;
};

static struct bz_opts bz_defaults(void)
{
    return (struct bz_opts){.version = 0x020f,
                            .loadflags = 0x01,
                            .xloadflags = 0x03,
                            .setup_sects = 4,
                            .relocatable = 1,
                            .kernel_alignment = 0x200000,
                            .pref_address = 0x1000000,
                            .init_size = 0x800000,
                            .cmdline_size = 2047,
                            .initrd_addr_max = 0x7fffffff,
                            .payload = 0x10000};
}

static uint8_t payload_byte(size_t i)
{
    return (uint8_t)(i * 7 + 3 + (i >> 8));
}

/* Fields are written at their boot.rst offsets, independently of bootparam.h. */
static uint8_t *make_bzimage(const struct bz_opts *o, size_t *size)
{
    size_t setup = ((size_t)(o->setup_sects ? o->setup_sects : 4) + 1) * 512;
    *size = setup + o->payload;
    uint8_t *k = calloc(1, *size);
    assert_non_null(k);
    k[0] = 'M';
    k[1] = 'Z';
    k[0x1f1] = o->setup_sects;
    wr16(k + 0x1fe, 0xaa55);
    k[0x200] = 0xeb;
    k[0x201] = 0x6a; /* header ends at 0x26c */
    static const uint8_t hdrs[4] = {'H', 'd', 'r', 'S'};
    memcpy(k + 0x202, hdrs, sizeof(hdrs));
    wr16(k + 0x206, o->version);
    wr16(k + 0x20e, 0x1234); /* kernel_version: must survive into the zero page */
    k[0x211] = o->loadflags;
    wr32(k + 0x214, 0x100000);
    wr32(k + 0x22c, o->initrd_addr_max);
    wr32(k + 0x230, o->kernel_alignment);
    k[0x234] = o->relocatable;
    k[0x235] = 21;
    wr16(k + 0x236, o->xloadflags);
    wr32(k + 0x238, o->cmdline_size);
    wr32(k + 0x248, 0x3c0);
    wr64(k + 0x258, o->pref_address);
    wr32(k + 0x260, o->init_size);
    wr32(k + 0x264, 0x190);
    for (size_t i = 0; i < o->payload; i++)
        k[setup + i] = payload_byte(i);
    return k;
}

/* ---- boot files in memory: the reader is the file's bytes, the image its size ---- */

static int mem_read(const void *ctx, uint64_t offset, void *dst, size_t len)
{
    memcpy(dst, (const uint8_t *)ctx + offset, len);
    return 0;
}

static struct boot_image mem_image(const void *data, uint64_t size)
{
    return (struct boot_image){.size = size, .read = mem_read, .ctx = data};
}

static struct x86_boot_spec spec_for(const struct fake_guest *g, const uint8_t *k, size_t size)
{
    return (struct x86_boot_spec){.mem = &g->mem,
                                  .kernel = mem_image(k, size),
                                  .cmdline = "console=ttyS0",
                                  .rsdp_gpa = X86_ACPI_TABLES_GPA};
}

/* ---- GDT decoding and page-table walking, written from the SDM's descriptions ---- */

static struct x86_segment decode_descriptor(const uint8_t *gdt, uint16_t selector)
{
    uint64_t d = rd64(gdt + (selector & ~7u));
    struct x86_segment s;
    memset(&s, 0, sizeof(s));
    uint32_t limit = (uint32_t)((d & 0xffff) | (((d >> 48) & 0xf) << 16));
    s.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
    s.type = (uint8_t)((d >> 40) & 0xf);
    s.s = (uint8_t)((d >> 44) & 1);
    s.dpl = (uint8_t)((d >> 45) & 3);
    s.present = (uint8_t)((d >> 47) & 1);
    s.l = (uint8_t)((d >> 53) & 1);
    s.db = (uint8_t)((d >> 54) & 1);
    s.g = (uint8_t)((d >> 55) & 1);
    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    s.selector = selector;
    return s;
}

static void assert_segment_matches_gdt(const struct fake_guest *g, const struct x86_boot_state *st,
                                       const struct x86_segment *seg)
{
    assert_true(seg->selector / 8u < 4u);
    assert_true((unsigned)seg->selector + 8 <= (unsigned)st->gdt.limit + 1);
    struct x86_segment d = decode_descriptor(gp(g, st->gdt.base, 32), seg->selector);
    assert_int_equal(d.base, seg->base);
    assert_int_equal(d.limit, seg->limit);
    assert_int_equal(d.type, seg->type);
    assert_int_equal(d.s, seg->s);
    assert_int_equal(d.dpl, seg->dpl);
    assert_int_equal(d.present, seg->present);
    assert_int_equal(d.l, seg->l);
    assert_int_equal(d.db, seg->db);
    assert_int_equal(d.g, seg->g);
    assert_int_equal(seg->unusable, 0);
}

static void assert_descriptor_tables(const struct fake_guest *g, const struct x86_boot_state *st)
{
    assert_int_equal(st->gdt.base, X86_BOOT_GDT_GPA);
    assert_int_equal(st->gdt.limit, 31);
    assert_int_equal(rd64(gp(g, X86_BOOT_GDT_GPA, 8)), 0); /* null descriptor */
    assert_segment_matches_gdt(g, st, &st->cs);
    assert_segment_matches_gdt(g, st, &st->ds);
    assert_segment_matches_gdt(g, st, &st->tr);
    assert_int_equal(st->idt.base, X86_BOOT_IDT_GPA);
    assert_int_equal(st->idt.limit, 0); /* empty: no gate fits */
    assert_true(all_bytes(gp(g, X86_BOOT_IDT_GPA, 16), 16, 0));
    assert_int_equal(st->ldt.unusable, 1);
}

/* Translate through 4-level tables; returns false on a non-present entry. */
static bool walk(const struct fake_guest *g, uint64_t cr3, uint64_t va, uint64_t *pa)
{
    const uint64_t addr_mask = 0x000ffffffffff000ULL;
    uint64_t e = rd64(gp(g, (cr3 & addr_mask) + ((va >> 39) & 511) * 8, 8));
    if (!(e & 1))
        return false;
    e = rd64(gp(g, (e & addr_mask) + ((va >> 30) & 511) * 8, 8));
    if (!(e & 1))
        return false;
    if (e & 0x80) {
        *pa = (e & 0x000fffffc0000000ULL) | (va & 0x3fffffff);
        return true;
    }
    e = rd64(gp(g, (e & addr_mask) + ((va >> 21) & 511) * 8, 8));
    if (!(e & 1) || !(e & 0x80)) /* 2 MiB pages only */
        return false;
    *pa = (e & 0x000fffffffe00000ULL) | (va & 0x1fffff);
    return true;
}

/* ---- bzImage tests ---- */

static void assert_e820_in_zero_page(const struct fake_guest *g, const uint8_t *zp)
{
    struct e820_map want;
    assert_int_equal(x86_e820_build(&g->mem, &want), 0);
    assert_int_equal(zp[0x1e8], want.nr);
    for (unsigned i = 0; i < want.nr; i++) {
        const uint8_t *e = zp + 0x2d0 + 20 * i;
        assert_int_equal(rd64(e), want.entries[i].addr);
        assert_int_equal(rd64(e + 8), want.entries[i].size);
        assert_int_equal(rd32(e + 16), want.entries[i].type);
    }
    assert_true(all_bytes(zp + 0x2d0 + 20 * want.nr, 20, 0));
}

static void test_bzimage_loads(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    uint8_t initrd[3000];
    for (size_t i = 0; i < sizeof(initrd); i++)
        initrd[i] = (uint8_t)(i ^ 0x5a);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.initrd = mem_image(initrd, sizeof(initrd));
    spec.rsdp_gpa = 0xe0000;
    struct x86_boot_state st;

    assert_int_equal(x86_boot_load(&spec, &st), 0);

    /* The protected-mode part lands at pref_address. */
    const uint8_t *kern = gp(&g, 0x1000000, o.payload);
    for (size_t i = 0; i < o.payload; i++)
        assert_int_equal(kern[i], payload_byte(i));

    const uint8_t *zp = gp(&g, X86_ZERO_PAGE_GPA, 4096);
    /* Header copied from the image... */
    assert_memory_equal(zp + 0x1f1, k + 0x1f1, 0x1fa - 0x1f1);
    assert_int_equal(rd16(zp + 0x206), 0x020f);
    assert_int_equal(rd16(zp + 0x20e), 0x1234);
    assert_int_equal(rd64(zp + 0x258), 0x1000000);
    assert_int_equal(rd32(zp + 0x260), o.init_size);
    assert_int_equal(rd32(zp + 0x230), o.kernel_alignment);
    assert_int_equal(rd16(zp + 0x236), o.xloadflags);
    /* ...and completed by the loader. */
    assert_int_equal(zp[0x210], 0xff);           /* type_of_loader */
    assert_int_equal(zp[0x211], 0x81);           /* LOADED_HIGH | CAN_USE_HEAP */
    assert_int_equal(rd16(zp + 0x224), 0xfe00);  /* heap_end_ptr */
    assert_int_equal(rd16(zp + 0x1fa), 0xffff);  /* vid_mode */
    assert_int_equal(rd32(zp + 0x228), 0x20000); /* cmd_line_ptr */
    assert_int_equal(rd32(zp + 0x0c8), 0);       /* ext_cmd_line_ptr */
    assert_int_equal(rd32(zp + 0x21c), 3000);    /* ramdisk_size */
    assert_int_equal(rd32(zp + 0x0c0), 0);       /* ext_ramdisk_image */
    assert_int_equal(rd32(zp + 0x0c4), 0);       /* ext_ramdisk_size */
    assert_int_equal(rd64(zp + 0x070), 0xe0000); /* acpi_rsdp_addr */
    assert_int_equal(rd64(zp + 0x250), 0);       /* setup_data */
    assert_int_equal(zp[0x1ef], 0);              /* sentinel */
    assert_true(all_bytes(zp, 0x70, 0));         /* screen_info etc. cleared */
    assert_true(all_bytes(zp + 0x26c, 0x290 - 0x26c, 0));
    assert_e820_in_zero_page(&g, zp);

    /* initrd: page-aligned, as high as possible under 256 MiB, with the right bytes. */
    uint64_t rd = rd32(zp + 0x218);
    assert_int_equal(rd, (256 * MiB - 3000) & ~0xfffULL);
    assert_memory_equal(gp(&g, rd, sizeof(initrd)), initrd, sizeof(initrd));

    /* Command line with its NUL. */
    assert_string_equal((const char *)gp(&g, X86_CMDLINE_GPA, 14), "console=ttyS0");

    /* 64-bit boot protocol state. */
    assert_int_equal(st.rip, 0x1000200);
    assert_int_equal(st.rsi, X86_ZERO_PAGE_GPA);
    assert_int_equal(st.rsp, X86_BOOT_STACK_GPA);
    assert_int_equal(st.rflags, 2);
    assert_int_equal(st.cr0, 0x80000031);
    assert_int_equal(st.cr3, X86_BOOT_PML4_GPA);
    assert_int_equal(st.cr4, 0x20);
    assert_int_equal(st.efer, 0x500);
    assert_int_equal(st.cs.selector, 0x10);
    assert_int_equal(st.cs.l, 1);
    assert_int_equal(st.cs.db, 0);
    assert_int_equal(st.cs.type, 0xb);
    assert_int_equal(st.cs.base, 0);
    assert_int_equal(st.cs.limit, 0xffffffffu);
    assert_int_equal(st.ds.selector, 0x18);
    assert_int_equal(st.ds.type, 0x3);
    assert_int_equal(st.ds.db, 1);
    assert_int_equal(st.ds.limit, 0xffffffffu);
    assert_int_equal(st.tr.type, 0xb);
    assert_int_equal(st.tr.s, 0);
    assert_int_equal(st.tr.present, 1);
    assert_int_equal(st.tr.selector & 4, 0); /* GDT, not LDT */
    assert_descriptor_tables(&g, &st);

    free(k);
    guest_free(&g);
}

static void test_bzimage_future_header(void **unused)
{
    (void)unused;
    /* A header longer than this loader knows: its extra fields reach the kernel unchanged,
     * and nothing past the header's end is copied. */
    struct fake_guest g;
    guest_init(&g, 64 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    k[0x201] = 0x7e; /* header ends at 0x280 */
    k[0x27f] = 0x5a;
    k[0x280] = 0xa5;
    struct x86_boot_spec spec = spec_for(&g, k, size);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    const uint8_t *zp = gp(&g, X86_ZERO_PAGE_GPA, 4096);
    assert_int_equal(zp[0x27f], 0x5a);
    assert_int_equal(zp[0x280], 0);
    assert_int_equal(zp[0x210], 0xff);
    free(k);
    guest_free(&g);
}

static void test_bzimage_page_tables(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);

    const uint8_t *pml4 = gp(&g, st.cr3, 4096);
    assert_int_equal(rd64(pml4) & ~0xfffULL, X86_BOOT_PML4_GPA + 0x1000);
    assert_int_equal(rd64(pml4) & 0x3, 0x3); /* present, writable */
    assert_true(all_bytes(pml4 + 8, 4096 - 8, 0));
    const uint8_t *pdpt = gp(&g, X86_BOOT_PML4_GPA + 0x1000, 4096);
    for (unsigned i = 0; i < 4; i++) {
        uint64_t e = rd64(pdpt + 8 * i);
        assert_int_equal(e & ~0xfffULL, X86_BOOT_PML4_GPA + 0x2000 + 0x1000ULL * i);
        assert_int_equal(e & 0x83, 0x3); /* points to a PD, not a 1 GiB page */
    }
    assert_true(all_bytes(pdpt + 32, 4096 - 32, 0));
    for (unsigned i = 0; i < 4 * 512; i++) {
        uint64_t e = rd64(gp(&g, X86_BOOT_PML4_GPA + 0x2000 + 8ULL * i, 8));
        assert_int_equal(e, (uint64_t)i * 2 * MiB | 0x83);
    }
    /* Identity over the whole first 4 GiB, including the kernel, zero page and PCI hole. */
    const uint64_t probes[] = {0,          X86_ZERO_PAGE_GPA, X86_CMDLINE_GPA + 5, 0x1000200,
                               0xbfffffff, 0xe0000123,        0xfee00000,          0xffffffff};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        uint64_t pa = 0;
        assert_true(walk(&g, st.cr3, probes[i], &pa));
        assert_int_equal(pa, probes[i]);
    }
    uint64_t pa;
    assert_false(walk(&g, st.cr3, 0x100000000ULL, &pa)); /* nothing beyond 4 GiB */
    free(k);
    guest_free(&g);
}

static void test_bzimage_cmdline(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 64 * MiB);
    struct bz_opts o = bz_defaults();
    o.cmdline_size = 16;
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    struct x86_boot_state st;

    /* Exactly cmdline_size characters: accepted, NUL written after them. */
    memset(gp(&g, X86_CMDLINE_GPA, 64), 0xaa, 64);
    spec.cmdline = "0123456789abcdef";
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_memory_equal(gp(&g, X86_CMDLINE_GPA, 17), "0123456789abcdef", 17);
    assert_int_equal(gp(&g, X86_CMDLINE_GPA + 17, 1)[0], 0xaa);

    /* One more: refused, and nothing written to the guest. */
    memset(gp(&g, X86_ZERO_PAGE_GPA, 4096), 0, 4096);
    memset(gp(&g, X86_CMDLINE_GPA, 64), 0xaa, 64);
    spec.cmdline = "0123456789abcdefg";
    expect_load_error(&spec, -E2BIG, "command line");
    assert_true(all_bytes(gp(&g, X86_CMDLINE_GPA, 64), 64, 0xaa));
    assert_true(all_bytes(gp(&g, X86_ZERO_PAGE_GPA, 4096), 4096, 0));

    /* Empty and NULL command lines: a lone NUL. */
    spec.cmdline = "";
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(gp(&g, X86_CMDLINE_GPA, 1)[0], 0);
    memset(gp(&g, X86_CMDLINE_GPA, 64), 0xaa, 64);
    spec.cmdline = NULL;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(gp(&g, X86_CMDLINE_GPA, 1)[0], 0);
    free(k);

    /* A kernel that accepts anything is still limited by bulkhead's buffer. */
    o.cmdline_size = 0xffffffff;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    char *line = malloc(X86_CMDLINE_MAX + 1);
    assert_non_null(line);
    memset(line, 'x', X86_CMDLINE_MAX - 1);
    line[X86_CMDLINE_MAX - 1] = '\0';
    spec.cmdline = line;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(strlen((const char *)gp(&g, X86_CMDLINE_GPA, X86_CMDLINE_MAX)),
                     X86_CMDLINE_MAX - 1);
    line[X86_CMDLINE_MAX - 1] = 'x';
    line[X86_CMDLINE_MAX] = '\0';
    expect_load_error(&spec, -E2BIG, "command line");
    free(line);
    free(k);
    guest_free(&g);
}

static void check_initrd_placement(uint64_t ram, uint32_t initrd_addr_max, size_t initrd_size,
                                   uint64_t expect)
{
    struct fake_guest g;
    guest_init(&g, ram);
    struct bz_opts o = bz_defaults();
    o.initrd_addr_max = initrd_addr_max;
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    uint8_t *initrd = map_anon(initrd_size);
    initrd[0] = 0x11;
    initrd[initrd_size - 1] = 0x22;
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.initrd = mem_image(initrd, initrd_size);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);

    const uint8_t *zp = gp(&g, X86_ZERO_PAGE_GPA, 4096);
    uint64_t at = rd32(zp + 0x218) | ((uint64_t)rd32(zp + 0x0c0) << 32);
    uint64_t len = rd32(zp + 0x21c) | ((uint64_t)rd32(zp + 0x0c4) << 32);
    assert_int_equal(at, expect);
    assert_int_equal(len, initrd_size);
    assert_int_equal(at % 4096, 0);
    assert_true(at + len - 1 <= initrd_addr_max);
    assert_true(at >= 0x1000000 + o.init_size); /* clear of the kernel */
    struct e820_map map;
    assert_int_equal(x86_e820_build(&g.mem, &map), 0);
    assert_true(e820_is_ram(&map, at, len));
    assert_int_equal(gp(&g, at, 1)[0], 0x11);
    assert_int_equal(gp(&g, at + len - 1, 1)[0], 0x22);
    munmap(initrd, initrd_size);
    free(k);
    guest_free(&g);
}

static void test_bzimage_initrd_placement(void **unused)
{
    (void)unused;
    /* Top of RAM. */
    check_initrd_placement(256 * MiB, 0x7fffffff, MiB + 123, (256 * MiB - MiB - 123) & ~0xfffULL);
    /* The kernel's initrd_addr_max is lower than RAM. */
    check_initrd_placement(256 * MiB, 0x7ffffff, 5000, (128 * MiB - 5000) & ~0xfffULL);
    /* 4 GiB guest: below the PCI hole, not above 4 GiB, even with a 4 GiB initrd_addr_max. */
    check_initrd_placement(4 * GiB, 0xffffffff, 2 * MiB, X86_LOW_RAM_END - 2 * MiB);
    /* initrd_addr_max inside the hole changes nothing: RAM ends at 3 GiB. */
    check_initrd_placement(4 * GiB, 0xdfffffff, 4096, X86_LOW_RAM_END - 4096);
}

static void test_bzimage_initrd_too_big(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    /* 256 MiB minus the kernel's 16 + 8 MiB leaves 232 MiB. */
    size_t big = 233 * MiB;
    uint8_t *initrd = map_anon(big);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.initrd = mem_image(initrd, big);
    expect_load_error(&spec, -ENOMEM, "initrd");
    spec.initrd.size = 232 * MiB;
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(rd32(gp(&g, X86_ZERO_PAGE_GPA + 0x218, 4)), 24 * MiB);
    /* Inconsistent spec: a size without data. */
    spec.initrd.read = NULL;
    expect_load_error(&spec, -EINVAL, "initrd");
    /* An initrd file that is there but empty (it can become so between two boots). */
    spec.initrd = mem_image(initrd, 0);
    expect_load_error(&spec, -EINVAL, "initrd file is empty");
    munmap(initrd, big);
    free(k);
    guest_free(&g);
}

static void test_bzimage_placement(void **unused)
{
    (void)unused;
    struct fake_guest g;
    struct x86_boot_state st;
    size_t size;
    uint8_t *k;
    struct x86_boot_spec spec;
    struct bz_opts o;

    /* pref_address not aligned to kernel_alignment: lowest aligned address above 1 MiB. */
    guest_init(&g, 256 * MiB);
    o = bz_defaults();
    o.pref_address = 0x1000123;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x200200);
    assert_int_equal(gp(&g, 0x200000, 1)[0], payload_byte(0));
    free(k);

    /* pref_address beyond RAM: same fallback. */
    o.pref_address = 0x40000000;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x200200);
    free(k);

    /* Non-relocatable: loaded at 1 MiB. */
    o = bz_defaults();
    o.relocatable = 0;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x100200);
    assert_int_equal(gp(&g, 0x100000, 1)[0], payload_byte(0));
    free(k);

    /* Non-relocatable with a run address below 1 MiB: it would decompress over the zero
     * page, page tables and command line (the first two fit in the low RAM below the BIOS
     * area, so the RAM check alone does not catch them). Refused, and nothing written. */
    const uint64_t low_runs[] = {0x7000, 0x20000, 0xfffff};
    for (size_t i = 0; i < sizeof(low_runs) / sizeof(low_runs[0]); i++) {
        o = bz_defaults();
        o.relocatable = 0;
        o.init_size = 0x10000;
        o.pref_address = low_runs[i];
        k = make_bzimage(&o, &size);
        spec = spec_for(&g, k, size);
        memset(gp(&g, X86_ZERO_PAGE_GPA, 4096), 0, 4096);
        expect_load_error(&spec, -EINVAL, "below 1 MiB");
        assert_true(all_bytes(gp(&g, X86_ZERO_PAGE_GPA, 4096), 4096, 0));
        free(k);
    }
    /* ...while exactly 1 MiB is where such a kernel is loaded anyway. */
    o.pref_address = 0x100000;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x100200);
    free(k);

    /* Bad kernel_alignment on a relocatable kernel. */
    o = bz_defaults();
    o.kernel_alignment = 0x300000;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -EINVAL, "kernel_alignment");
    free(k);
    guest_free(&g);

    /* init_size larger than RAM: -ENOMEM. */
    guest_init(&g, 32 * MiB);
    o = bz_defaults();
    o.init_size = 0x2000000;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOMEM, "RAM");
    /* Just fits from 2 MiB. */
    o.init_size = 30 * MiB;
    free(k);
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x200200);
    free(k);
    guest_free(&g);
}

static void test_bzimage_rejects(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 64 * MiB);
    struct bz_opts o;
    size_t size;
    uint8_t *k;
    struct x86_boot_spec spec;

    /* Garbage. */
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 17);
    spec = spec_for(&g, junk, sizeof(junk));
    expect_load_error(&spec, -ENOEXEC, "not a bzImage or ELF");
    spec = spec_for(&g, (const uint8_t *)"hello", 5);
    expect_load_error(&spec, -ENOEXEC, "not a bzImage or ELF");
    spec = spec_for(&g, junk, 0);
    expect_load_error(&spec, -ENOEXEC, "empty");

    /* A short file that starts like a bzImage. */
    o = bz_defaults();
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, 0x100);
    expect_load_error(&spec, -EINVAL, "truncated");
    /* Cut inside the setup header. */
    spec = spec_for(&g, k, 0x220);
    expect_load_error(&spec, -EINVAL, "truncated");
    /* Cut right after the setup sectors: no protected-mode kernel. */
    spec = spec_for(&g, k, 5 * 512);
    expect_load_error(&spec, -EINVAL, "truncated");
    /* PE file without HdrS. */
    memset(k + 0x202, 0, 4);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOEXEC, "not a bzImage or ELF");
    free(k);

    /* Boot flag missing. */
    k = make_bzimage(&o, &size);
    wr16(k + 0x1fe, 0);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOEXEC, "boot flag");
    free(k);

    /* Protocol 2.11. */
    o = bz_defaults();
    o.version = 0x020b;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOEXEC, "protocol 2.11");
    free(k);

    /* No 64-bit entry. */
    o = bz_defaults();
    o.xloadflags = 0;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOEXEC, "64-bit entry");
    free(k);

    /* zImage. */
    o = bz_defaults();
    o.loadflags = 0;
    k = make_bzimage(&o, &size);
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -ENOEXEC, "zImage");
    free(k);

    /* setup_sects beyond the end of the file. */
    o = bz_defaults();
    k = make_bzimage(&o, &size);
    k[0x1f1] = 200;
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -EINVAL, "truncated");
    free(k);

    /* A header that claims to end before the 2.12 fields. */
    k = make_bzimage(&o, &size);
    k[0x201] = 0x20;
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -EINVAL, "malformed");
    free(k);

    /* A file cut short inside the kernel: syssize (16-byte units) says more than is there.
     * Exactly syssize bytes, or more (a signed kernel's signature), is fine. */
    k = make_bzimage(&o, &size);
    wr32(k + 0x1f4, (uint32_t)(o.payload / 16 + 1));
    spec = spec_for(&g, k, size);
    expect_load_error(&spec, -EINVAL, "truncated");
    struct x86_boot_state st;
    wr32(k + 0x1f4, (uint32_t)(o.payload / 16));
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    wr32(k + 0x1f4, (uint32_t)(o.payload / 16 - 10));
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    free(k);
    guest_free(&g);
}

static void test_guest_without_boot_area(void **unused)
{
    (void)unused;
    /* RAM that starts at 1 MiB cannot hold the zero page, GDT or page tables. */
    void *ram = map_anon(64 * MiB);
    struct guest_mem mem;
    memset(&mem, 0, sizeof(mem));
    assert_int_equal(guest_mem_add_region(&mem, MiB, 64 * MiB, ram), 0);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    struct x86_boot_spec spec = {.mem = &mem, .kernel = mem_image(k, size), .cmdline = ""};
    expect_load_error(&spec, -ENOMEM, "boot data");
    free(k);
    munmap(ram, 64 * MiB);
}

/* ---- synthetic PVH ELF ---- */

#define ELF_PH0        64        /* PT_LOAD */
#define ELF_PH1        (64 + 56) /* PT_NOTE */
#define ELF_NOTE       0xb0      /* the note record */
#define ELF_SEG_OFF    0x1000    /* PT_LOAD file offset */
#define ELF_SEG_FILESZ 0x2000
#define ELF_SEG_MEMSZ  0x5000
#define ELF_SEG_PADDR  0x1000000ULL
#define ELF_ENTRY      0x1000100ULL
#define ELF_SIZE       0x3000

static uint8_t *make_elf(unsigned desc_size)
{
    uint8_t *e = calloc(1, ELF_SIZE);
    assert_non_null(e);
    static const uint8_t magic[4] = {0x7f, 'E', 'L', 'F'};
    memcpy(e, magic, sizeof(magic));
    e[4] = 2;         /* ELFCLASS64 */
    e[5] = 1;         /* little-endian */
    e[6] = 1;         /* EV_CURRENT */
    wr16(e + 16, 2);  /* ET_EXEC */
    wr16(e + 18, 62); /* EM_X86_64 */
    wr32(e + 20, 1);
    wr64(e + 24, 0xffffffff81000000ULL);
    wr64(e + 32, ELF_PH0); /* e_phoff */
    wr16(e + 52, 64);      /* e_ehsize */
    wr16(e + 54, 56);      /* e_phentsize */
    wr16(e + 56, 2);       /* e_phnum */

    wr32(e + ELF_PH0, 1); /* PT_LOAD */
    wr32(e + ELF_PH0 + 4, 7);
    wr64(e + ELF_PH0 + 8, ELF_SEG_OFF);
    wr64(e + ELF_PH0 + 16, 0xffffffff81000000ULL);
    wr64(e + ELF_PH0 + 24, ELF_SEG_PADDR);
    wr64(e + ELF_PH0 + 32, ELF_SEG_FILESZ);
    wr64(e + ELF_PH0 + 40, ELF_SEG_MEMSZ);
    wr64(e + ELF_PH0 + 48, 0x1000);

    wr32(e + ELF_PH1, 4); /* PT_NOTE */
    wr32(e + ELF_PH1 + 4, 4);
    wr64(e + ELF_PH1 + 8, ELF_NOTE);
    wr64(e + ELF_PH1 + 32, 12 + 4 + desc_size);
    wr64(e + ELF_PH1 + 40, 12 + 4 + desc_size);
    wr64(e + ELF_PH1 + 48, 4);

    wr32(e + ELF_NOTE, 4);
    wr32(e + ELF_NOTE + 4, desc_size);
    wr32(e + ELF_NOTE + 8, 18);
    memcpy(e + ELF_NOTE + 12, "Xen", 4);
    if (desc_size == 8)
        wr64(e + ELF_NOTE + 16, ELF_ENTRY);
    else
        wr32(e + ELF_NOTE + 16, (uint32_t)ELF_ENTRY);

    for (size_t i = 0; i < ELF_SEG_FILESZ; i++)
        e[ELF_SEG_OFF + i] = payload_byte(i);
    return e;
}

static void test_pvh_loads(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    uint8_t *e = make_elf(8);
    uint8_t initrd[5000];
    memset(initrd, 0x3c, sizeof(initrd));
    struct x86_boot_spec spec = spec_for(&g, e, ELF_SIZE);
    spec.initrd = mem_image(initrd, sizeof(initrd));
    spec.rsdp_gpa = 0xe0000;
    spec.cmdline = "console=hvc0 quiet";
    /* Dirty RAM: the bss must come out zeroed, and nothing past memsz touched. */
    memset(gp(&g, ELF_SEG_PADDR, 0x6000), 0xcc, 0x6000);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);

    const uint8_t *seg = gp(&g, ELF_SEG_PADDR, 0x6000);
    for (size_t i = 0; i < ELF_SEG_FILESZ; i++)
        assert_int_equal(seg[i], payload_byte(i));
    assert_true(all_bytes(seg + ELF_SEG_FILESZ, ELF_SEG_MEMSZ - ELF_SEG_FILESZ, 0));
    assert_true(all_bytes(seg + ELF_SEG_MEMSZ, 0x6000 - ELF_SEG_MEMSZ, 0xcc));

    /* hvm_start_info at its raw offsets. */
    const uint8_t *si = gp(&g, X86_PVH_INFO_GPA, 0x38);
    assert_int_equal(rd32(si + 0x00), 0x336ec578);
    assert_int_equal(rd32(si + 0x04), 1);
    assert_int_equal(rd32(si + 0x08), 0);
    assert_int_equal(rd32(si + 0x0c), 1);
    uint64_t modlist = rd64(si + 0x10);
    assert_int_equal(rd64(si + 0x18), X86_CMDLINE_GPA);
    assert_int_equal(rd64(si + 0x20), 0xe0000);
    uint64_t memmap = rd64(si + 0x28);
    uint32_t nr = rd32(si + 0x30);
    assert_int_equal(rd32(si + 0x34), 0);
    assert_string_equal((const char *)gp(&g, X86_CMDLINE_GPA, 19), "console=hvc0 quiet");

    /* The memory map is the machine's e820 map. */
    struct e820_map want;
    assert_int_equal(x86_e820_build(&g.mem, &want), 0);
    assert_int_equal(nr, want.nr);
    assert_true(memmap % 8 == 0);
    const uint8_t *mm = gp(&g, memmap, 24ULL * nr);
    for (unsigned i = 0; i < nr; i++) {
        assert_int_equal(rd64(mm + 24 * i), want.entries[i].addr);
        assert_int_equal(rd64(mm + 24 * i + 8), want.entries[i].size);
        assert_int_equal(rd32(mm + 24 * i + 16), want.entries[i].type);
        assert_int_equal(rd32(mm + 24 * i + 20), 0);
    }
    /* Module 0 is the initrd, page-aligned at the top of RAM. */
    const uint8_t *mod = gp(&g, modlist, 32);
    uint64_t at = rd64(mod);
    assert_int_equal(at, (256 * MiB - sizeof(initrd)) & ~0xfffULL);
    assert_int_equal(rd64(mod + 8), sizeof(initrd));
    assert_int_equal(rd64(mod + 16), 0);
    assert_int_equal(rd64(mod + 24), 0);
    assert_memory_equal(gp(&g, at, sizeof(initrd)), initrd, sizeof(initrd));
    /* The structures do not overlap each other or the zero page. */
    assert_true(modlist >= X86_PVH_INFO_GPA + 0x38);
    assert_true(memmap >= modlist + 32);
    assert_true(memmap + 24ULL * nr <= X86_ZERO_PAGE_GPA);

    /* PVH entry state: 32-bit protected mode, paging off. */
    assert_int_equal(st.rip, ELF_ENTRY);
    assert_int_equal(st.rbx, X86_PVH_INFO_GPA);
    assert_int_equal(st.rflags, 2);
    assert_int_equal(st.cr0, 0x11);
    assert_int_equal(st.cr4, 0);
    assert_int_equal(st.efer, 0);
    assert_int_equal(st.cs.selector, 0x10);
    assert_int_equal(st.cs.type, 0xb);
    assert_int_equal(st.cs.db, 1);
    assert_int_equal(st.cs.l, 0);
    assert_int_equal(st.cs.g, 1);
    assert_int_equal(st.cs.limit, 0xffffffffu);
    assert_int_equal(st.ds.selector, 0x18);
    assert_int_equal(st.ds.type, 0x3);
    assert_int_equal(st.ds.db, 1);
    assert_int_equal(st.tr.type, 0xb);
    assert_int_equal(st.tr.base, 0);
    assert_int_equal(st.tr.limit, 0x67);
    assert_descriptor_tables(&g, &st);

    free(e);
    guest_free(&g);
}

static void test_pvh_variants(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 64 * MiB);
    struct x86_boot_state st;

    /* A 32-bit note value, no initrd. */
    uint8_t *e = make_elf(4);
    struct x86_boot_spec spec = spec_for(&g, e, ELF_SIZE);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, ELF_ENTRY);
    const uint8_t *si = gp(&g, X86_PVH_INFO_GPA, 0x38);
    assert_int_equal(rd32(si + 0x0c), 0);
    assert_int_equal(rd64(si + 0x10), 0);
    free(e);

    /* The PVH note after another note in the same segment, and a 3-byte name. */
    e = make_elf(8);
    uint8_t note[64];
    memset(note, 0, sizeof(note));
    wr32(note, 4);
    wr32(note + 4, 5); /* padded to 8 */
    wr32(note + 8, 3);
    memcpy(note + 12, "GNU", 4);
    wr32(note + 24, 3);
    wr32(note + 28, 4);
    wr32(note + 32, 18);
    note[36] = 'X';
    note[37] = 'e';
    note[38] = 'n';
    wr32(note + 40, 0x1000080);
    memcpy(e + ELF_NOTE, note, 44);
    wr64(e + ELF_PH1 + 32, 44);
    spec = spec_for(&g, e, ELF_SIZE);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(st.rip, 0x1000080);
    free(e);
    guest_free(&g);
}

static void test_pvh_rejects(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct x86_boot_spec spec;
    uint8_t *e;

#define REJECT(patch, rc, reason)                                                                  \
    do {                                                                                           \
        e = make_elf(8);                                                                           \
        spec = spec_for(&g, e, ELF_SIZE);                                                          \
        patch;                                                                                     \
        expect_load_error(&spec, rc, reason);                                                      \
        free(e);                                                                                   \
    } while (0)

    REJECT(e[4] = 1, -ENOEXEC, "32-bit ELF");
    REJECT(e[5] = 2, -ENOEXEC, "big-endian");
    REJECT(wr16(e + 18, 3), -ENOEXEC, "not x86-64");
    REJECT(spec.kernel.size = 40, -EINVAL, "truncated");
    /* Without the note, or with the note under another name or type. */
    REJECT(wr32(e + ELF_PH1, 6), -ENOEXEC, "without PVH entry note");
    REJECT(memcpy(e + ELF_NOTE + 12, "Xem", 4), -ENOEXEC, "without PVH entry note");
    REJECT(wr32(e + ELF_NOTE + 8, 17), -ENOEXEC, "without PVH entry note");
    /* Malformed notes. */
    REJECT(wr32(e + ELF_NOTE + 4, 2), -EINVAL, "PVH entry note");
    REJECT(wr32(e + ELF_NOTE, 0xfffffff0), -EINVAL, "note");
    REJECT(wr64(e + ELF_PH1 + 32, 20), -EINVAL, "note");
    REJECT(wr64(e + ELF_NOTE + 16, 0x100001000ULL), -EINVAL, "32-bit");
    REJECT(wr64(e + ELF_PH1 + 8, UINT64_MAX - 8), -EINVAL, "outside");
    /* Program headers outside the file / overflowing. */
    REJECT(wr64(e + 32, ELF_SIZE - 60), -EINVAL, "outside");
    REJECT(wr64(e + 32, UINT64_MAX - 100), -EINVAL, "outside");
    REJECT(wr16(e + 54, 32), -EINVAL, "malformed");
    REJECT(wr16(e + 56, 0), -EINVAL, "malformed");
    REJECT(wr16(e + 56, 65), -EINVAL, "program headers");
    /* Segment data outside the file, and offsets that overflow. */
    REJECT(wr64(e + ELF_PH0 + 32, ELF_SIZE), -EINVAL, "outside");
    REJECT(wr64(e + ELF_PH0 + 8, UINT64_MAX - 0xfff), -EINVAL, "outside");
    REJECT(wr64(e + ELF_PH0 + 40, 0x1000), -EINVAL, "malformed"); /* memsz < filesz */
    REJECT(wr64(e + ELF_PH0 + 24, UINT64_MAX - 0x1000), -EINVAL, "malformed");
    /* Segments outside RAM, or over the boot data. */
    REJECT(wr64(e + ELF_PH0 + 24, 0x20000000), -ENOMEM, "does not fit in guest RAM");
    REJECT(wr64(e + ELF_PH0 + 40, 0x10000000), -ENOMEM, "does not fit in guest RAM");
    REJECT(wr64(e + ELF_PH0 + 24, 0xfffe000), -ENOMEM, "does not fit in guest RAM");
    REJECT(wr64(e + ELF_PH0 + 24, 0x7000), -EINVAL, "below 1 MiB");
    /* Entry point outside what is loaded; no PT_LOAD at all. */
    REJECT(wr64(e + ELF_NOTE + 16, 0x2000000), -EINVAL, "outside its loaded");
    REJECT(wr32(e + ELF_PH0, 0), -EINVAL, "no loadable segment");
    /* Too big an initrd. */
    static uint8_t dummy;
    REJECT(spec.initrd = mem_image(&dummy, 255 * MiB), -ENOMEM, "initrd");
#undef REJECT
    guest_free(&g);
}

/* ---- boot files that change while they are loaded ---- */

/*
 * A file that is rewritten after every read: each byte read is inverted in place, so a
 * loader that read a header twice (once to check it, once to use it) would use different,
 * unchecked values. Every byte's reads are counted, and every read must lie in the file.
 */
struct changing_file {
    uint8_t *data;
    size_t size;
    uint8_t *reads;
};

static int changing_read(const void *ctx, uint64_t offset, void *dst, size_t len)
{
    const struct changing_file *f = ctx;
    assert_true(offset <= f->size && len <= f->size - offset);
    memcpy(dst, f->data + offset, len);
    for (size_t i = 0; i < len; i++) {
        f->data[offset + i] ^= 0xff;
        f->reads[offset + i]++;
    }
    return 0;
}

static struct boot_image changing_image(struct changing_file *f, uint8_t *data, size_t size)
{
    f->data = data;
    f->size = size;
    f->reads = calloc(1, size);
    assert_non_null(f->reads);
    return (struct boot_image){.size = size, .read = changing_read, .ctx = f};
}

static void assert_read_at_most_once(const struct changing_file *f)
{
    for (size_t i = 0; i < f->size; i++)
        if (f->reads[i] > 1)
            fail_msg("byte %#zx of the file was read %u times", i, f->reads[i]);
    free(f->reads);
}

static void test_changing_file_bzimage(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    wr32(k + 0x1f4, (uint32_t)(o.payload / 16)); /* syssize: checked against the file too */
    uint8_t initrd[5000];
    for (size_t i = 0; i < sizeof(initrd); i++)
        initrd[i] = (uint8_t)(i * 13);
    struct changing_file kf;
    struct changing_file rf;
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.kernel = changing_image(&kf, k, size);
    spec.initrd = changing_image(&rf, initrd, sizeof(initrd));
    struct x86_boot_state st;

    assert_int_equal(x86_boot_load(&spec, &st), 0);

    /* Everything the guest got is the file as it was at its first (only) read. */
    assert_read_at_most_once(&kf);
    assert_read_at_most_once(&rf);
    assert_int_equal(st.rip, 0x1000200);
    const uint8_t *kern = gp(&g, 0x1000000, o.payload);
    for (size_t i = 0; i < o.payload; i++)
        assert_int_equal(kern[i], payload_byte(i));
    const uint8_t *zp = gp(&g, X86_ZERO_PAGE_GPA, 4096);
    assert_int_equal(rd16(zp + 0x206), 0x020f);
    assert_int_equal(rd16(zp + 0x20e), 0x1234);
    assert_int_equal(rd64(zp + 0x258), 0x1000000);
    assert_int_equal(rd32(zp + 0x260), o.init_size);
    assert_int_equal(rd32(zp + 0x1f4), o.payload / 16);
    uint64_t rd = rd32(zp + 0x218);
    const uint8_t *got = gp(&g, rd, sizeof(initrd));
    for (size_t i = 0; i < sizeof(initrd); i++)
        assert_int_equal(got[i], (uint8_t)(i * 13));
    free(k);
    guest_free(&g);
}

static void test_changing_file_pvh(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    uint8_t *e = make_elf(8);
    struct changing_file kf;
    struct x86_boot_spec spec = spec_for(&g, e, ELF_SIZE);
    spec.kernel = changing_image(&kf, e, ELF_SIZE);
    memset(gp(&g, ELF_SEG_PADDR, 0x6000), 0xcc, 0x6000);
    struct x86_boot_state st;

    assert_int_equal(x86_boot_load(&spec, &st), 0);

    /* The ELF header, program headers and note were each read once; the segment too. */
    assert_read_at_most_once(&kf);
    assert_int_equal(st.rip, ELF_ENTRY);
    const uint8_t *seg = gp(&g, ELF_SEG_PADDR, 0x6000);
    for (size_t i = 0; i < ELF_SEG_FILESZ; i++)
        assert_int_equal(seg[i], payload_byte(i));
    assert_true(all_bytes(seg + ELF_SEG_FILESZ, ELF_SEG_MEMSZ - ELF_SEG_FILESZ, 0));
    assert_true(all_bytes(seg + ELF_SEG_MEMSZ, 0x6000 - ELF_SEG_MEMSZ, 0xcc));
    free(e);
    guest_free(&g);
}

/* A file that ends before the size the load started with (it shrank during the load). */
struct short_file {
    const uint8_t *data;
    size_t avail;
};

static int short_read(const void *ctx, uint64_t offset, void *dst, size_t len)
{
    const struct short_file *f = ctx;
    if (offset > f->avail || len > f->avail - offset)
        return -ENODATA;
    memcpy(dst, f->data + offset, len);
    return 0;
}

static void test_file_shrinks_during_load(void **unused)
{
    (void)unused;
    struct fake_guest g;
    guest_init(&g, 64 * MiB);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    struct short_file sf = {.data = k, .avail = size - 1};
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.kernel.read = short_read;
    spec.kernel.ctx = &sf;
    expect_load_error(&spec, -ENODATA, "now shorter");
    /* Shorter than even the header: the same, from the first read. */
    sf.avail = 100;
    expect_load_error(&spec, -ENODATA, "kernel header");
    free(k);
    guest_free(&g);
}

/* ---- RAM in two adjacent regions: one RAM range for the guest, two for the VMM ---- */

static void adjacent_guest_init(struct fake_guest *g)
{
    memset(g, 0, sizeof(*g));
    for (int i = 0; i < 2; i++) {
        g->sizes[i] = 64 * MiB;
        g->maps[i] = map_anon(64 * MiB);
        assert_int_equal(guest_mem_add_region(&g->mem, i * 64 * MiB, 64 * MiB, g->maps[i]), 0);
    }
}

static void test_pvh_segment_across_regions(void **unused)
{
    (void)unused;
    struct fake_guest g;
    adjacent_guest_init(&g);
    struct e820_map map;
    assert_int_equal(x86_e820_build(&g.mem, &map), 0);
    assert_true(e820_is_ram(&map, 64 * MiB - 0x1000, 0x5000)); /* the guest sees RAM there */

    /* A segment across the boundary: refused before anything is written. */
    uint8_t *e = make_elf(8);
    wr64(e + ELF_PH0 + 24, 64 * MiB - 0x1000);
    wr64(e + ELF_NOTE + 16, 64 * MiB - 0x1000 + 0x100);
    struct x86_boot_spec spec = spec_for(&g, e, ELF_SIZE);
    expect_load_error(&spec, -ENOMEM, "does not fit in guest RAM");
    assert_true(all_bytes(g.maps[0], X86_CMDLINE_GPA + X86_CMDLINE_MAX, 0));
    assert_true(all_bytes(gp(&g, 64 * MiB - 0x1000, 0x1000), 0x1000, 0));
    assert_true(all_bytes(gp(&g, 64 * MiB, 0x4000), 0x4000, 0));
    free(e);

    /* Wholly inside the upper region: loaded. */
    e = make_elf(8);
    wr64(e + ELF_PH0 + 24, 64 * MiB);
    wr64(e + ELF_NOTE + 16, 64 * MiB + 0x100);
    spec = spec_for(&g, e, ELF_SIZE);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    assert_int_equal(gp(&g, 64 * MiB, 1)[0], payload_byte(0));
    free(e);
    guest_free(&g);
}

static void test_initrd_across_regions(void **unused)
{
    (void)unused;
    struct fake_guest g;
    adjacent_guest_init(&g);
    struct bz_opts o = bz_defaults();
    size_t size;
    uint8_t *k = make_bzimage(&o, &size);
    uint8_t *initrd = map_anon(80 * MiB);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    struct x86_boot_state st;

    /* 80 MiB fits between the kernel (up to 24 MiB) and 128 MiB only across the boundary. */
    spec.initrd = mem_image(initrd, 80 * MiB);
    expect_load_error(&spec, -ENOMEM, "initrd");
    assert_true(all_bytes(gp(&g, X86_ZERO_PAGE_GPA, 4096), 4096, 0));
    /* 60 MiB goes at the top of the upper region. */
    initrd[0] = 0x77;
    spec.initrd = mem_image(initrd, 60 * MiB);
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    uint64_t at = rd32(gp(&g, X86_ZERO_PAGE_GPA + 0x218, 4));
    assert_int_equal(at, 68 * MiB);
    assert_int_equal(gp(&g, at, 1)[0], 0x77);
    munmap(initrd, 80 * MiB);
    free(k);
    guest_free(&g);
}

/* ---- the real Debian kernel ---- */

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return buf;
}

/* The image next to the test binary's build tree, else build/guest/ from the working dir. */
static uint8_t *find_guest_file(const char *env, const char *name, char *path, size_t path_len,
                                size_t *size)
{
    const char *override = getenv(env);
    if (override != NULL && *override != '\0') {
        snprintf(path, path_len, "%s", override);
        return read_file(path, size);
    }
    if (exe_path != NULL) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s", exe_path);
        snprintf(path, path_len, "%s/../guest/%s", dirname(tmp), name);
        uint8_t *buf = read_file(path, size);
        if (buf != NULL)
            return buf;
    }
    snprintf(path, path_len, "build/guest/%s", name);
    return read_file(path, size);
}

static bool require_guest(void)
{
    const char *v = getenv("BULKHEAD_REQUIRE_GUEST");
    return v != NULL && strcmp(v, "1") == 0;
}

static void test_real_debian_bzimage(void **unused)
{
    (void)unused;
    char path[4096];
    size_t size = 0;
    uint8_t *k = find_guest_file("BULKHEAD_GUEST_KERNEL", "vmlinuz", path, sizeof(path), &size);
    if (k == NULL) {
        print_message("[  NOTE    ] no guest kernel at %s (built by `make guest`): the real-kernel "
                      "boot test did not run\n",
                      path);
        if (require_guest())
            fail_msg("BULKHEAD_REQUIRE_GUEST=1 but %s is missing", path);
        skip();
    }
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    uint8_t initrd[8192];
    memset(initrd, 0x42, sizeof(initrd));
    struct x86_boot_spec spec = spec_for(&g, k, size);
    spec.cmdline = "console=ttyS0 panic=-1 quiet";
    spec.initrd = mem_image(initrd, sizeof(initrd));
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);

    const uint8_t *zp = gp(&g, X86_ZERO_PAGE_GPA, 4096);
    uint16_t version = rd16(zp + 0x206);
    print_message("[  INFO    ] %s: boot protocol %u.%u, entry %#llx\n", path, version >> 8,
                  version & 0xff, (unsigned long long)st.rip);
    assert_true(version >= 0x020c);
    assert_true(rd16(zp + 0x236) & 1); /* XLF_KERNEL_64 */
    assert_int_equal(zp[0x234], 1);    /* Debian kernels are relocatable */
    uint64_t load = st.rip - 0x200;
    assert_int_equal(load, rd64(zp + 0x258)); /* at pref_address */
    assert_int_equal(load % rd32(zp + 0x230), 0);
    size_t pm_off = ((size_t)(k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
    assert_memory_equal(gp(&g, load, size - pm_off), k + pm_off, size - pm_off);
    assert_int_equal(zp[0x210], 0xff);
    assert_true(rd32(zp + 0x218) >= load + rd32(zp + 0x260));
    assert_string_equal((const char *)gp(&g, X86_CMDLINE_GPA, 29), "console=ttyS0 panic=-1 quiet");
    assert_descriptor_tables(&g, &st);
    free(k);
    guest_free(&g);
}

static void test_real_debian_vmlinux_pvh(void **unused)
{
    (void)unused;
    char path[4096];
    size_t size = 0;
    uint8_t *k = find_guest_file("BULKHEAD_GUEST_VMLINUX", "vmlinux", path, sizeof(path), &size);
    if (k == NULL) {
        /* Optional: only some guest builds extract the ELF vmlinux. */
        print_message("[  NOTE    ] no ELF vmlinux at %s: the real-kernel PVH test did not run\n",
                      path);
        skip();
    }
    struct fake_guest g;
    guest_init(&g, 256 * MiB);
    struct x86_boot_spec spec = spec_for(&g, k, size);
    struct x86_boot_state st;
    assert_int_equal(x86_boot_load(&spec, &st), 0);
    print_message("[  INFO    ] %s: PVH entry %#llx\n", path, (unsigned long long)st.rip);
    assert_true(st.rip >= MiB && st.rip < 256 * MiB);
    assert_int_equal(rd32(gp(&g, X86_PVH_INFO_GPA, 4)), 0x336ec578);
    assert_descriptor_tables(&g, &st);
    free(k);
    guest_free(&g);
}

int main(int argc, char **argv)
{
    (void)argc;
    exe_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bzimage_loads),
        cmocka_unit_test(test_bzimage_future_header),
        cmocka_unit_test(test_bzimage_page_tables),
        cmocka_unit_test(test_bzimage_cmdline),
        cmocka_unit_test(test_bzimage_initrd_placement),
        cmocka_unit_test(test_bzimage_initrd_too_big),
        cmocka_unit_test(test_bzimage_placement),
        cmocka_unit_test(test_bzimage_rejects),
        cmocka_unit_test(test_guest_without_boot_area),
        cmocka_unit_test(test_pvh_loads),
        cmocka_unit_test(test_pvh_variants),
        cmocka_unit_test(test_pvh_rejects),
        cmocka_unit_test(test_changing_file_bzimage),
        cmocka_unit_test(test_changing_file_pvh),
        cmocka_unit_test(test_file_shrinks_during_load),
        cmocka_unit_test(test_pvh_segment_across_regions),
        cmocka_unit_test(test_initrd_across_regions),
        cmocka_unit_test(test_real_debian_bzimage),
        cmocka_unit_test(test_real_debian_vmlinux_pvh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
