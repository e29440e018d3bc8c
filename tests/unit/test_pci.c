/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests of the PCI configuration space model and the PCI host (ECAM, conf1, BARs). */
#include "core/bus.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/pci_host.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ECAM_BASE   0xe0000000ULL
#define MMIO32_BASE 0xc0000000ULL
#define MMIO32_SIZE 0x20000000ULL
#define MMIO64_BASE 0x8000000000ULL
#define MMIO64_SIZE 0x400000000ULL
#define IO_BASE     0x1000u
#define IO_SIZE     0xf000u

/* ---- A fake device whose BARs record every access ---- */

struct rec {
    unsigned reads, writes;
    uint64_t last_off;
    unsigned last_size;
    uint64_t last_val;
    uint64_t read_val;
};

static uint64_t rec_read(void *opaque, uint64_t offset, unsigned size)
{
    struct rec *r = opaque;
    __atomic_add_fetch(&r->reads, 1, __ATOMIC_RELAXED);
    r->last_off = offset;
    r->last_size = size;
    return r->read_val;
}

static void rec_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct rec *r = opaque;
    __atomic_add_fetch(&r->writes, 1, __ATOMIC_RELAXED);
    r->last_off = offset;
    r->last_size = size;
    r->last_val = value;
}

static const struct bus_ops rec_ops = {.read = rec_read, .write = rec_write};

struct fake {
    struct pci_device pci;
    struct rec bar[PCI_NUM_BARS];
    /* cap hook records */
    unsigned cap_writes;
    unsigned cw_cap, cw_off, cw_size;
    uint32_t cw_old, cw_new;
    unsigned cap_reads;
    uint32_t cap_read_override; /* 0: leave the value alone */
    /* bar_map hook records */
    unsigned maps;
    unsigned map_bar;
    bool map_on;
    uint64_t map_addr;
};

static void fake_cap_write(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                           unsigned size, uint32_t old_val, uint32_t new_val)
{
    struct fake *f = opaque;
    assert_ptr_equal(dev, &f->pci);
    f->cap_writes++;
    f->cw_cap = cap;
    f->cw_off = offset;
    f->cw_size = size;
    f->cw_old = old_val;
    f->cw_new = new_val;
}

static uint32_t fake_cap_read(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                              unsigned size, uint32_t value)
{
    struct fake *f = opaque;
    (void)dev;
    (void)cap;
    (void)offset;
    f->cap_reads++;
    if (f->cap_read_override == 0)
        return value;
    return size == 4 ? f->cap_read_override : f->cap_read_override & ((1u << (8 * size)) - 1);
}

static void fake_bar_map(void *opaque, struct pci_device *dev, unsigned bar, bool decoding,
                         uint64_t addr)
{
    struct fake *f = opaque;
    assert_ptr_equal(dev, &f->pci);
    f->maps++;
    f->map_bar = bar;
    f->map_on = decoding;
    f->map_addr = addr;
}

static const struct pci_device_hooks fake_hooks = {
    .cap_write = fake_cap_write, .cap_read = fake_cap_read, .bar_map = fake_bar_map};

static struct fake *fake_new(uint8_t pin)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    const struct pci_device_info info = {.vendor_id = 0x1af4,
                                         .device_id = 0x1041,
                                         .class_code = 0x020000,
                                         .revision = 0x01,
                                         .subsys_vendor_id = 0x1af4,
                                         .subsys_id = 0x0001,
                                         .intx_pin = pin,
                                         .name = "fake"};
    assert_int_equal(pci_device_init(&f->pci, &info), 0);
    pci_device_set_hooks(&f->pci, &fake_hooks, f);
    return f;
}

static void fake_free(struct fake *f)
{
    pci_device_destroy(&f->pci);
    free(f);
}

static void fake_bar(struct fake *f, unsigned i, enum pci_bar_type t, uint64_t size, bool pf)
{
    assert_int_equal(pci_device_set_bar(&f->pci, i, t, size, pf, &rec_ops, &f->bar[i]), 0);
}

/* ---- The machine under test ---- */

struct irq_rec {
    unsigned calls;
    uint32_t gsi;
    bool level;
    unsigned route_calls;
    unsigned route_slot, route_pin;
};

struct env {
    struct bus mmio, pio;
    struct pci_host host;
    struct irq_rec irq;
    struct pci_host_config cfg;
};

static uint32_t route(void *ctx, unsigned slot, unsigned pin)
{
    struct irq_rec *r = ctx;
    r->route_calls++;
    r->route_slot = slot;
    r->route_pin = pin;
    return 16 + ((slot + pin) & 7u);
}

static void set_irq(void *ctx, uint32_t gsi, bool level)
{
    struct irq_rec *r = ctx;
    r->calls++;
    r->gsi = gsi;
    r->level = level;
}

static struct pci_host_config default_cfg(struct env *e)
{
    return (struct pci_host_config){.ecam_base = ECAM_BASE,
                                    .bus_first = 0,
                                    .bus_last = 1,
                                    .mmio32_base = MMIO32_BASE,
                                    .mmio32_size = MMIO32_SIZE,
                                    .mmio64_base = MMIO64_BASE,
                                    .mmio64_size = MMIO64_SIZE,
                                    .io_base = IO_BASE,
                                    .io_size = IO_SIZE,
                                    .route_intx = route,
                                    .set_irq = set_irq,
                                    .irq_ctx = &e->irq};
}

static int env_setup_cfg(void **state, const struct pci_host_config *cfg)
{
    struct env *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    if (bus_init(&e->mmio, "mmio") || bus_init(&e->pio, "pio"))
        return -1;
    e->cfg = cfg != NULL ? *cfg : default_cfg(e);
    if (pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio) != 0)
        return -1;
    *state = e;
    return 0;
}

static int env_setup(void **state)
{
    return env_setup_cfg(state, NULL);
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    pci_host_destroy(&e->host);
    /* The host must have removed all its ranges. */
    assert_int_equal(e->mmio.nr_ranges, 0);
    assert_int_equal(e->pio.nr_ranges, 0);
    bus_destroy(&e->mmio);
    bus_destroy(&e->pio);
    free(e);
    return 0;
}

static uint64_t ecam_addr(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
    return ECAM_BASE + ((uint64_t)bus << 20) + ((uint64_t)dev << 15) + ((uint64_t)fn << 12) + reg;
}

static uint64_t ecam_rd(struct env *e, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                        unsigned size)
{
    uint64_t v = 0;
    assert_int_equal(bus_read(&e->mmio, ecam_addr(bus, dev, fn, reg), size, &v), 0);
    return v;
}

static void ecam_wr(struct env *e, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                    unsigned size, uint64_t v)
{
    assert_int_equal(bus_write(&e->mmio, ecam_addr(bus, dev, fn, reg), size, v), 0);
}

static uint32_t conf1_address(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
    return PCI_CONF1_ENABLE | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfcu);
}

static uint64_t conf1_rd(struct env *e, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                         unsigned size)
{
    uint64_t v = 0;
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, conf1_address(bus, dev, fn, reg)), 0);
    assert_int_equal(bus_read(&e->pio, 0xcfc + (reg & 3u), size, &v), 0);
    return v;
}

static void conf1_wr(struct env *e, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                     unsigned size, uint64_t v)
{
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, conf1_address(bus, dev, fn, reg)), 0);
    assert_int_equal(bus_write(&e->pio, 0xcfc + (reg & 3u), size, v), 0);
}

static uint64_t mem_rd(struct env *e, uint64_t addr, unsigned size)
{
    uint64_t v = 0;
    assert_int_equal(bus_read(&e->mmio, addr, size, &v), 0);
    return v;
}

static uint64_t bar_addr(struct fake *f, unsigned i)
{
    uint64_t a = 0;
    assert_int_equal(pci_device_bar_address(&f->pci, i, &a), 0);
    return a;
}

/* The host bridge's expected first 64 bytes. */
static void bridge_header(uint8_t h[64])
{
    memset(h, 0, 64);
    h[0] = 0x86;
    h[1] = 0x80;
    h[2] = 0x57;
    h[3] = 0x0d;
    h[0x0b] = 0x06; /* class 06 00 00 */
    h[0x3c] = 0;    /* interrupt line: never written for the bridge */
}

/* ---- Identification through ECAM and conf1 ---- */

static void test_ids_ecam(void **state)
{
    struct env *e = *state;
    uint8_t h[64];
    bridge_header(h);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 2), 0x8086);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 2, 2), 0x0d57);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 4), 0x0d578086);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 8, 4) >> 8, 0x060000);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0x0e, 1), 0x00);
    for (unsigned reg = 0; reg < 64; reg++) {
        for (unsigned size = 1; size <= 4; size *= 2) {
            if (reg + size > 64)
                continue;
            uint32_t want = 0;
            for (unsigned i = 0; i < size; i++)
                want |= (uint32_t)h[reg + i] << (8 * i);
            assert_int_equal(ecam_rd(e, 0, 0, 0, reg, size), want);
        }
    }
    /* An 8-byte access is two dwords. */
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 8),
                     ecam_rd(e, 0, 0, 0, 0, 4) | ecam_rd(e, 0, 0, 0, 4, 4) << 32);
}

static void test_ids_conf1(void **state)
{
    struct env *e = *state;
    uint8_t h[64];
    bridge_header(h);
    for (unsigned reg = 0; reg < 64; reg++) {
        for (unsigned size = 1; size <= 4; size *= 2) {
            if ((reg & 3u) + size > 4)
                continue; /* the data port is one dword */
            uint32_t want = 0;
            for (unsigned i = 0; i < size; i++)
                want |= (uint32_t)h[reg + i] << (8 * i);
            assert_int_equal(conf1_rd(e, 0, 0, 0, reg, size), want);
        }
    }
    /* The address register reads back (dword only). */
    uint64_t v;
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, 0x80001234), 0);
    assert_int_equal(bus_read(&e->pio, 0xcf8, 4, &v), 0);
    assert_int_equal(v, 0x80001234);
    /* Reserved bits 30:24 and 1:0 read as zero. */
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, 0xff00ff03), 0);
    assert_int_equal(bus_read(&e->pio, 0xcf8, 4, &v), 0);
    assert_int_equal(v, 0x8000ff00);
}

static void test_absent(void **state)
{
    struct env *e = *state;
    /* Empty slot, non-zero function, other bus: all-ones. */
    assert_int_equal(ecam_rd(e, 0, 5, 0, 0, 2), 0xffff);
    assert_int_equal(ecam_rd(e, 0, 5, 0, 0, 4), 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 31, 0, 0x3c, 1), 0xff);
    assert_int_equal(ecam_rd(e, 0, 0, 1, 0, 4), 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 0, 7, 0, 2), 0xffff);
    assert_int_equal(ecam_rd(e, 1, 0, 0, 0, 4), 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 5, 0, 0, 8), UINT64_MAX);
    assert_int_equal(conf1_rd(e, 0, 5, 0, 0, 2), 0xffff);
    assert_int_equal(conf1_rd(e, 0, 0, 3, 0, 4), 0xffffffff);
    assert_int_equal(conf1_rd(e, 1, 0, 0, 0, 4), 0xffffffff);
    assert_int_equal(conf1_rd(e, 200, 0, 0, 0, 4), 0xffffffff);
    /* conf1 with the enable bit clear reaches nothing. */
    uint64_t v;
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, 0x00000000), 0);
    assert_int_equal(bus_read(&e->pio, 0xcfc, 4, &v), 0);
    assert_int_equal(v, 0xffffffff);
    assert_int_equal(bus_write(&e->pio, 0xcfc, 2, 0x0007), 0);
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0);
    /* Writes to absent functions are ignored (and do not land on function 0). */
    ecam_wr(e, 0, 0, 1, PCI_CFG_COMMAND, 2, 0x0007);
    ecam_wr(e, 1, 0, 0, PCI_CFG_COMMAND, 2, 0x0007);
    conf1_wr(e, 1, 0, 0, PCI_CFG_COMMAND, 2, 0x0007);
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0);
    assert_int_equal(ecam_rd(e, 0, 5, 0, 0, 2), 0xffff);
}

/* ---- Register semantics ---- */

static void test_readonly(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(1);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 3), 0);
    uint32_t id = (uint32_t)ecam_rd(e, 0, 3, 0, 0, 4);
    uint32_t cls = (uint32_t)ecam_rd(e, 0, 3, 0, 8, 4);
    uint32_t sub = (uint32_t)ecam_rd(e, 0, 3, 0, PCI_CFG_SUBSYS_VENDOR, 4);
    assert_int_equal(id, 0x10411af4);
    assert_int_equal(cls, 0x02000001);
    ecam_wr(e, 0, 3, 0, 0, 4, 0x12345678);
    ecam_wr(e, 0, 3, 0, 8, 4, 0xffffffff);
    ecam_wr(e, 0, 3, 0, PCI_CFG_SUBSYS_VENDOR, 4, 0);
    conf1_wr(e, 0, 3, 0, PCI_CFG_HEADER_TYPE, 1, 0x80);
    conf1_wr(e, 0, 3, 0, PCI_CFG_INT_PIN, 1, 0x04);
    conf1_wr(e, 0, 3, 0, PCI_CFG_CAP_PTR, 1, 0x40);
    assert_int_equal(ecam_rd(e, 0, 3, 0, 0, 4), id);
    assert_int_equal(ecam_rd(e, 0, 3, 0, 8, 4), cls);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_SUBSYS_VENDOR, 4), sub);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_HEADER_TYPE, 1), 0);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_INT_PIN, 1), 1);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_CAP_PTR, 1), 0);
    /* The host bridge too. */
    ecam_wr(e, 0, 0, 0, 0, 4, 0);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 4), 0x0d578086);
    /* Interrupt line is read-write. */
    conf1_wr(e, 0, 3, 0, PCI_CFG_INT_LINE, 1, 0x5a);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_INT_LINE, 1), 0x5a);
    /* Expansion ROM is not implemented: sizing it reads 0. */
    ecam_wr(e, 0, 3, 0, PCI_CFG_ROM, 4, 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 3, 0, PCI_CFG_ROM, 4), 0);
    /* Reserved header bytes and the extended space read 0 and stay 0. */
    ecam_wr(e, 0, 3, 0, 0x38, 4, 0xffffffff);
    ecam_wr(e, 0, 3, 0, 0x100, 4, 0xffffffff);
    ecam_wr(e, 0, 3, 0, 0xffc, 4, 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 3, 0, 0x38, 4), 0);
    assert_int_equal(ecam_rd(e, 0, 3, 0, 0x100, 4), 0);
    assert_int_equal(ecam_rd(e, 0, 3, 0, 0xffc, 4), 0);
    pci_host_destroy(&e->host);
    assert_int_equal(f->pci.slot, -1);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_command(void **state)
{
    struct env *e = *state;
    ecam_wr(e, 0, 0, 0, PCI_CFG_COMMAND, 2, 0xffff);
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0x0507);
    assert_int_equal(PCI_COMMAND_WRITABLE, 0x0507);
    conf1_wr(e, 0, 0, 0, PCI_CFG_COMMAND, 2, 0x0000);
    assert_int_equal(conf1_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0);
    /* Byte write to the high byte only changes the high byte's writable bits. */
    conf1_wr(e, 0, 0, 0, PCI_CFG_COMMAND + 1, 1, 0xff);
    assert_int_equal(conf1_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0x0500);
    /* A dword write covering COMMAND and STATUS touches only COMMAND's writable bits. */
    conf1_wr(e, 0, 0, 0, PCI_CFG_COMMAND, 4, 0x00000002);
    assert_int_equal(conf1_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 4), 0x00000002);
}

static void test_status_w1c(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(0);
    assert_int_equal(pci_device_add_capability(&f->pci, PCI_CAP_ID_VNDR, 4), 0x40);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 2), 0);
    /* The device reports errors. */
    pci_device_set(&f->pci, PCI_CFG_STATUS, 2, PCI_STATUS_CAP_LIST | 0xf900);
    assert_int_equal(ecam_rd(e, 0, 2, 0, PCI_CFG_STATUS, 2), 0xf910);
    /* Writing 0 changes nothing; writing 1 clears exactly those bits. */
    ecam_wr(e, 0, 2, 0, PCI_CFG_STATUS, 2, 0);
    assert_int_equal(ecam_rd(e, 0, 2, 0, PCI_CFG_STATUS, 2), 0xf910);
    ecam_wr(e, 0, 2, 0, PCI_CFG_STATUS, 2, 0x2100);
    assert_int_equal(ecam_rd(e, 0, 2, 0, PCI_CFG_STATUS, 2), 0xd810);
    /* Read-only bits (capability list) do not clear. */
    conf1_wr(e, 0, 2, 0, PCI_CFG_STATUS, 2, 0xffff);
    assert_int_equal(conf1_rd(e, 0, 2, 0, PCI_CFG_STATUS, 2), 0x0010);
    /* Writing back what COMMAND/STATUS read (as OSes do) does not clear status by accident
     * when no error is pending, and keeps COMMAND. */
    uint32_t cs = (uint32_t)ecam_rd(e, 0, 2, 0, PCI_CFG_COMMAND, 4);
    ecam_wr(e, 0, 2, 0, PCI_CFG_COMMAND, 4, cs);
    assert_int_equal(ecam_rd(e, 0, 2, 0, PCI_CFG_COMMAND, 4), cs);
    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

/* ---- BAR sizing (device model alone, through the guest accessors) ---- */

static void test_bar_sizing(void **state)
{
    (void)state;
    struct fake *f = fake_new(0);
    fake_bar(f, 0, PCI_BAR_IO, 32, false);
    fake_bar(f, 1, PCI_BAR_MEM32, 4096, false);
    fake_bar(f, 2, PCI_BAR_MEM64, 16384, true);
    fake_bar(f, 4, PCI_BAR_MEM64, 8ULL << 30, false);
    struct pci_device *d = &f->pci;

    /* Flag bits before anything is written. */
    assert_int_equal(pci_device_config_read(d, 0x10, 4), 0x1);
    assert_int_equal(pci_device_config_read(d, 0x14, 4), 0x0);
    assert_int_equal(pci_device_config_read(d, 0x18, 4), 0xc);
    assert_int_equal(pci_device_config_read(d, 0x20, 4), 0x4);

    for (unsigned reg = 0x10; reg < 0x28; reg += 4)
        pci_device_config_write(d, reg, 4, 0xffffffff);
    assert_int_equal(pci_device_config_read(d, 0x10, 4), 0xffffffe1); /* I/O 32 bytes */
    assert_int_equal(pci_device_config_read(d, 0x14, 4), 0xfffff000); /* mem32 4 KiB */
    assert_int_equal(pci_device_config_read(d, 0x18, 4), 0xffffc00c); /* mem64 pf 16 KiB */
    assert_int_equal(pci_device_config_read(d, 0x1c, 4), 0xffffffff); /* its upper half */
    assert_int_equal(pci_device_config_read(d, 0x20, 4), 0x00000004); /* mem64 8 GiB */
    assert_int_equal(pci_device_config_read(d, 0x24, 4), 0xfffffffe);

    /* Restoring writes the address back; bits below the size read zero. */
    pci_device_config_write(d, 0x10, 4, 0x00001234);
    assert_int_equal(pci_device_config_read(d, 0x10, 4), 0x00001221);
    pci_device_config_write(d, 0x14, 4, 0xc0001fff);
    assert_int_equal(pci_device_config_read(d, 0x14, 4), 0xc0001000);
    pci_device_config_write(d, 0x18, 4, 0xc0004000);
    pci_device_config_write(d, 0x1c, 4, 0x00000080);
    assert_int_equal(bar_addr(f, 2), 0x80c0004000ULL);
    /* Byte-wise sizing of a BAR works the same way. */
    pci_device_config_write(d, 0x15, 1, 0xff);
    assert_int_equal(pci_device_config_read(d, 0x14, 4), 0xc000f000);
    /* The upper half of a pair is not a BAR of its own. */
    uint64_t a;
    assert_int_equal(pci_device_bar_address(d, 3, &a), -EINVAL);
    assert_int_equal(pci_device_bar_address(d, 5, &a), -EINVAL);
    fake_free(f);
}

static void test_bar_declare_errors(void **state)
{
    (void)state;
    struct fake *f = fake_new(0);
    struct pci_device *d = &f->pci;
    assert_int_equal(pci_device_set_bar(d, 6, PCI_BAR_MEM32, 4096, false, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM32, 4095, false, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM32, 8, false, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM32, 1ULL << 32, false, &rec_ops, NULL),
                     -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_IO, 512, false, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_IO, 16, true, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 5, PCI_BAR_MEM64, 4096, false, &rec_ops, NULL), -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM64_HIGH, 4096, false, &rec_ops, NULL),
                     -EINVAL);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM32, 4096, false, NULL, NULL), -EINVAL);
    fake_bar(f, 1, PCI_BAR_MEM32, 4096, false);
    assert_int_equal(pci_device_set_bar(d, 0, PCI_BAR_MEM64, 4096, false, &rec_ops, NULL), -EBUSY);
    assert_int_equal(pci_device_set_bar(d, 1, PCI_BAR_IO, 16, false, &rec_ops, NULL), -EBUSY);
    fake_free(f);
}

/* ---- BAR allocation and dispatch through the host ---- */

static void test_bar_dispatch_and_reprogram(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(0);
    fake_bar(f, 0, PCI_BAR_MEM32, 4096, false);
    fake_bar(f, 1, PCI_BAR_IO, 32, false);
    fake_bar(f, 2, PCI_BAR_MEM64, 16384, true);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, -1), 0);
    assert_int_equal(f->pci.slot, 1);
    assert_ptr_equal(pci_host_device(&e->host, 1), &f->pci);

    uint64_t m32 = bar_addr(f, 0), io = bar_addr(f, 1), m64 = bar_addr(f, 2);
    assert_true(m32 >= MMIO32_BASE && m32 + 4096 <= MMIO32_BASE + MMIO32_SIZE);
    assert_true(io >= IO_BASE && io + 32 <= IO_BASE + IO_SIZE);
    assert_true(m64 >= MMIO64_BASE && m64 + 16384 <= MMIO64_BASE + MMIO64_SIZE);
    assert_int_equal(ecam_rd(e, 0, 1, 0, PCI_CFG_COMMAND, 2) &
                         (PCI_COMMAND_IO | PCI_COMMAND_MEMORY),
                     PCI_COMMAND_IO | PCI_COMMAND_MEMORY);

    /* Accesses reach the BAR with the offset into it. */
    f->bar[0].read_val = 0xabcd;
    assert_int_equal(mem_rd(e, m32 + 0x10, 4), 0xabcd);
    assert_int_equal(f->bar[0].reads, 1);
    assert_int_equal(f->bar[0].last_off, 0x10);
    assert_int_equal(f->bar[0].last_size, 4);
    assert_int_equal(bus_write(&e->mmio, m64 + 0x3ff8, 8, 0x1122334455667788ULL), 0);
    assert_int_equal(f->bar[2].writes, 1);
    assert_int_equal(f->bar[2].last_off, 0x3ff8);
    assert_int_equal(f->bar[2].last_size, 8);
    assert_int_equal(f->bar[2].last_val, 0x1122334455667788ULL);
    assert_int_equal(bus_write(&e->pio, io + 3, 1, 0x42), 0);
    assert_int_equal(f->bar[1].writes, 1);
    assert_int_equal(f->bar[1].last_off, 3);
    /* An access that straddles the end of a BAR reaches nobody. */
    uint64_t v;
    assert_int_equal(bus_read(&e->mmio, m32 + 4094, 4, &v), 0);
    assert_int_equal(v, 0xffffffff);
    assert_int_equal(f->bar[0].reads, 1);
    /* The bar_map hook learnt the addresses at add time (the last one reported is BAR2). */
    assert_int_equal(f->maps, 3);

    /* Reprogram BAR0 as Linux does: decoding off, size, move, decoding on. */
    unsigned maps = f->maps;
    uint32_t cmd = (uint32_t)ecam_rd(e, 0, 1, 0, PCI_CFG_COMMAND, 2);
    ecam_wr(e, 0, 1, 0, PCI_CFG_COMMAND, 2, cmd & ~PCI_COMMAND_MEMORY);
    assert_int_equal(f->maps, maps + 2); /* BAR0 and BAR2 stopped */
    assert_false(f->map_on);
    ecam_wr(e, 0, 1, 0, 0x10, 4, 0xffffffff);
    assert_int_equal(ecam_rd(e, 0, 1, 0, 0x10, 4), 0xfffff000);
    uint64_t moved = MMIO32_BASE + 0x100000;
    ecam_wr(e, 0, 1, 0, 0x10, 4, moved);
    ecam_wr(e, 0, 1, 0, PCI_CFG_COMMAND, 2, cmd);
    assert_int_equal(f->maps, maps + 4);
    assert_true(f->map_on);
    assert_int_equal(bar_addr(f, 0), moved);

    unsigned reads = f->bar[0].reads;
    assert_int_equal(mem_rd(e, m32 + 0x10, 4), 0xffffffff);
    assert_int_equal(f->bar[0].reads, reads);
    assert_int_equal(mem_rd(e, moved + 0x20, 2), 0xabcd);
    assert_int_equal(f->bar[0].reads, reads + 1);
    assert_int_equal(f->bar[0].last_off, 0x20);

    /* Move the 64-bit BAR into the 32-bit window (allowed: it is a memory window). */
    ecam_wr(e, 0, 1, 0, 0x18, 4, MMIO32_BASE + 0x200000);
    ecam_wr(e, 0, 1, 0, 0x1c, 4, 0);
    assert_int_equal(bus_read(&e->mmio, MMIO32_BASE + 0x200004, 4, &v), 0);
    assert_int_equal(f->bar[2].reads, 1);
    assert_int_equal(f->bar[2].last_off, 4);
    assert_int_equal(mem_rd(e, m64, 4), 0xffffffff);
    assert_int_equal(f->bar[2].reads, 1);

    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_decode_disabled(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(0);
    fake_bar(f, 0, PCI_BAR_MEM32, 4096, false);
    fake_bar(f, 1, PCI_BAR_IO, 16, false);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 7), 0);
    uint64_t m = bar_addr(f, 0), io = bar_addr(f, 1), v;

    conf1_wr(e, 0, 7, 0, PCI_CFG_COMMAND, 2, PCI_COMMAND_IO);
    assert_int_equal(mem_rd(e, m, 4), 0xffffffff);
    assert_int_equal(bus_write(&e->mmio, m, 4, 1), 0);
    assert_int_equal(f->bar[0].reads + f->bar[0].writes, 0);
    assert_int_equal(bus_read(&e->pio, io, 2, &v), 0);
    assert_int_equal(f->bar[1].reads, 1);

    conf1_wr(e, 0, 7, 0, PCI_CFG_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(bus_read(&e->pio, io, 2, &v), 0);
    assert_int_equal(v, 0xffff);
    assert_int_equal(f->bar[1].reads, 1);
    mem_rd(e, m, 4);
    assert_int_equal(f->bar[0].reads, 1);

    /* Sizing with decoding left on: the all-ones address lies outside every window and
     * neither decodes nor shadows anything. */
    ecam_wr(e, 0, 7, 0, 0x10, 4, 0xffffffff);
    assert_int_equal(mem_rd(e, m, 4), 0xffffffff);
    assert_int_equal(f->bar[0].reads, 1);
    ecam_wr(e, 0, 7, 0, 0x10, 4, m);
    mem_rd(e, m, 4);
    assert_int_equal(f->bar[0].reads, 2);

    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static void test_allocation(void **state)
{
    struct env *e = *state;
    enum { N = 6 };
    struct fake *f[N];
    const uint64_t sizes[N] = {4096, 1 << 20, 16, 65536, 8192, 2 << 20};
    for (unsigned i = 0; i < N; i++) {
        f[i] = fake_new(0);
        fake_bar(f[i], 0, PCI_BAR_MEM32, sizes[i], i & 1);
        fake_bar(f[i], 1, PCI_BAR_IO, 4u << (i % 6), false);
        fake_bar(f[i], 2, PCI_BAR_MEM64, sizes[N - 1 - i] * 2, true);
        fake_bar(f[i], 4, PCI_BAR_MEM32, 4096, false);
        assert_int_equal(pci_host_add_device(&e->host, &f[i]->pci, -1), 0);
        assert_int_equal(f[i]->pci.slot, (int)i + 1);
    }
    struct {
        uint64_t a, len;
        bool io;
    } all[N * 4];
    unsigned n = 0;
    for (unsigned i = 0; i < N; i++) {
        for (unsigned b = 0; b < 5; b++) {
            if (b == 3)
                continue;
            uint64_t a = bar_addr(f[i], b), len = f[i]->pci.bars[b].size;
            assert_int_equal(a & (len - 1), 0); /* natural alignment */
            bool io = b == 1;
            if (io)
                assert_true(a >= IO_BASE && a + len <= IO_BASE + IO_SIZE);
            else if (b == 2)
                assert_true(a >= MMIO64_BASE && a + len <= MMIO64_BASE + MMIO64_SIZE);
            else
                assert_true(a >= MMIO32_BASE && a + len <= MMIO32_BASE + MMIO32_SIZE);
            all[n].a = a;
            all[n].len = len;
            all[n].io = io;
            n++;
        }
    }
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = i + 1; j < n; j++)
            if (all[i].io == all[j].io)
                assert_false(ranges_overlap(all[i].a, all[i].len, all[j].a, all[j].len));
    /* Every BAR answers at its own address only. */
    for (unsigned i = 0; i < N; i++) {
        mem_rd(e, bar_addr(f[i], 4), 4);
        for (unsigned k = 0; k < N; k++)
            assert_int_equal(f[k]->bar[4].reads, k == i ? 1 : 0);
        f[i]->bar[4].reads = 0;
    }

    /* Slot management. */
    assert_int_equal(pci_host_add_device(&e->host, &f[0]->pci, 20), -EINVAL); /* already on */
    struct fake *g = fake_new(0);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, 3), -EBUSY);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, 0), -EBUSY); /* host bridge */
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, 32), -EINVAL);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, -2), -EINVAL);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, 31), 0);
    /* A device on a host can no longer change its BARs or capabilities. */
    assert_int_equal(pci_device_set_bar(&g->pci, 0, PCI_BAR_MEM32, 4096, false, &rec_ops, NULL),
                     -EBUSY);
    assert_int_equal(pci_device_add_capability(&g->pci, PCI_CAP_ID_VNDR, 4), -EBUSY);

    pci_host_destroy(&e->host);
    for (unsigned i = 0; i < N; i++)
        fake_free(f[i]);
    fake_free(g);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_slots_full(void **state)
{
    struct env *e = *state;
    struct fake *f[PCI_HOST_SLOTS];
    for (unsigned i = 1; i < PCI_HOST_SLOTS; i++) {
        f[i] = fake_new(0);
        assert_int_equal(pci_host_add_device(&e->host, &f[i]->pci, -1), 0);
    }
    struct fake *g = fake_new(0);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, -1), -EBUSY);
    pci_host_destroy(&e->host);
    for (unsigned i = 1; i < PCI_HOST_SLOTS; i++)
        fake_free(f[i]);
    fake_free(g);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_window_exhaustion(void **state)
{
    struct env *e = *state;
    struct pci_host_config cfg = e->cfg;
    pci_host_destroy(&e->host);
    cfg.mmio32_size = 0x10000; /* 64 KiB */
    cfg.mmio64_size = 0;       /* 64-bit BARs come from mmio32 */
    cfg.io_size = 0x100;
    assert_int_equal(pci_host_init(&e->host, &cfg, &e->mmio, &e->pio), 0);

    struct fake *a = fake_new(0), *b = fake_new(0), *c = fake_new(0), *d = fake_new(0);
    fake_bar(a, 0, PCI_BAR_MEM64, 0x8000, false);
    fake_bar(a, 2, PCI_BAR_IO, 0x80, false);
    assert_int_equal(pci_host_add_device(&e->host, &a->pci, -1), 0);
    uint64_t a0 = bar_addr(a, 0);
    assert_true(a0 >= MMIO32_BASE && a0 + 0x8000 <= MMIO32_BASE + 0x10000);

    /* Fits in memory, not in I/O: refused as a whole, nothing consumed, slot stays free. */
    fake_bar(b, 0, PCI_BAR_MEM32, 0x4000, false);
    fake_bar(b, 1, PCI_BAR_IO, 0x100, false);
    assert_int_equal(pci_host_add_device(&e->host, &b->pci, -1), -ENOSPC);
    assert_int_equal(b->pci.slot, -1);
    assert_null(pci_host_device(&e->host, 2));
    assert_int_equal(ecam_rd(e, 0, 2, 0, 0, 2), 0xffff);

    fake_bar(c, 0, PCI_BAR_MEM32, 0x8000, false);
    assert_int_equal(pci_host_add_device(&e->host, &c->pci, -1), 0);
    assert_int_equal(c->pci.slot, 2);
    assert_false(ranges_overlap(a0, 0x8000, bar_addr(c, 0), 0x8000));

    /* Memory window now full. */
    fake_bar(d, 0, PCI_BAR_MEM32, 16, false);
    assert_int_equal(pci_host_add_device(&e->host, &d->pci, -1), -ENOSPC);

    pci_host_destroy(&e->host);
    fake_free(a);
    fake_free(b);
    fake_free(c);
    fake_free(d);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_no_io_window(void **state)
{
    struct env *e = *state;
    struct pci_host_config cfg = e->cfg;
    pci_host_destroy(&e->host);
    /* Without a port I/O bus (non-x86): no conf1, no I/O BARs, ECAM still works. */
    assert_int_equal(pci_host_init(&e->host, &cfg, &e->mmio, NULL), 0);
    assert_int_equal(e->pio.nr_ranges, 0);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 4), 0x0d578086);
    struct fake *f = fake_new(0);
    fake_bar(f, 0, PCI_BAR_IO, 16, false);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, -1), -ENOSPC);
    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_bad_config(void **state)
{
    struct env *e = *state;
    struct pci_host h2;
    struct pci_host_config cfg = e->cfg;
    cfg.bus_first = 2;
    cfg.bus_last = 1;
    assert_int_equal(pci_host_init(&h2, &cfg, &e->mmio, &e->pio), -EINVAL);
    cfg = e->cfg;
    cfg.mmio32_base = 0xfff00000;
    cfg.mmio32_size = 0x200000; /* crosses 4 GiB */
    assert_int_equal(pci_host_init(&h2, &cfg, &e->mmio, &e->pio), -EINVAL);
    cfg = e->cfg;
    cfg.mmio64_base = UINT64_MAX - 0xfff;
    assert_int_equal(pci_host_init(&h2, &cfg, &e->mmio, &e->pio), -EINVAL);
    /* Overlaps the running host: refused by the bus, and nothing is left registered. */
    size_t nm = e->mmio.nr_ranges, np = e->pio.nr_ranges;
    cfg = e->cfg;
    cfg.ecam_base = 0xd0000000; /* inside the running host's mmio32 window */
    assert_int_equal(pci_host_init(&h2, &cfg, &e->mmio, &e->pio), -EEXIST);
    assert_int_equal(e->mmio.nr_ranges, nm);
    cfg.ecam_base = 0xf0000000; /* free, but conf1 is taken: ECAM must be rolled back */
    cfg.mmio32_base = 0xa0000000;
    cfg.mmio32_size = 0x1000000;
    assert_int_equal(pci_host_init(&h2, &cfg, &e->mmio, &e->pio), -EEXIST);
    assert_int_equal(e->mmio.nr_ranges, nm);
    assert_int_equal(e->pio.nr_ranges, np);
}

/* ---- Capabilities ---- */

static void test_capabilities(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(0);
    struct pci_device *d = &f->pci;
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);

    int c1 = pci_device_add_capability(d, PCI_CAP_ID_VNDR, 14);
    int c2 = pci_device_add_capability(d, PCI_CAP_ID_MSIX, 12);
    int c3 = pci_device_add_capability(d, PCI_CAP_ID_VNDR, 3);
    assert_int_equal(c1, 0x40);
    assert_int_equal(c2, 0x50); /* 0x4e rounded up to a dword */
    assert_int_equal(c3, 0x5c);
    assert_int_equal(pci_device_add_capability(d, PCI_CAP_ID_VNDR, 1), -EINVAL);
    assert_int_equal(pci_device_add_capability(d, PCI_CAP_ID_VNDR, 200), -EINVAL);
    /* Fill up to the end of the 256-byte space. */
    int c4 = pci_device_add_capability(d, PCI_CAP_ID_VNDR, 0x100 - 0x60);
    assert_int_equal(c4, 0x60);
    assert_int_equal(pci_device_add_capability(d, PCI_CAP_ID_VNDR, 2), -ENOSPC);

    /* MSI-X-like control word: enable and function mask writable. */
    pci_device_set(d, (unsigned)c2 + 2, 2, 0x0003);
    pci_device_set_wmask(d, (unsigned)c2 + 2, 2, 0xc000);
    pci_device_set(d, (unsigned)c2 + 4, 4, 0x00002000);
    assert_int_equal(pci_host_add_device(&e->host, d, 4), 0);

    /* Walk the list as an OS would. */
    assert_int_equal(ecam_rd(e, 0, 4, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_CAP_LIST,
                     PCI_STATUS_CAP_LIST);
    unsigned ptr = (unsigned)conf1_rd(e, 0, 4, 0, PCI_CFG_CAP_PTR, 1);
    const unsigned want[] = {0x40, 0x50, 0x5c, 0x60};
    const unsigned ids[] = {PCI_CAP_ID_VNDR, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_CAP_ID_VNDR};
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(ptr, want[i]);
        assert_int_equal(ecam_rd(e, 0, 4, 0, ptr, 1), ids[i]);
        ptr = (unsigned)ecam_rd(e, 0, 4, 0, ptr + 1, 1);
    }
    assert_int_equal(ptr, 0);

    /* Header bytes are read-only; the hook sees writes inside the capability, post-mask. */
    ecam_wr(e, 0, 4, 0, (unsigned)c2, 2, 0xffff);
    assert_int_equal(ecam_rd(e, 0, 4, 0, (unsigned)c2, 2), 0x5c11);
    assert_int_equal(f->cap_writes, 1);
    assert_int_equal(f->cw_cap, 0x50);
    f->cap_writes = 0;
    ecam_wr(e, 0, 4, 0, (unsigned)c2 + 2, 2, 0xffff);
    assert_int_equal(ecam_rd(e, 0, 4, 0, (unsigned)c2 + 2, 2), 0xc003);
    assert_int_equal(f->cap_writes, 1);
    assert_int_equal(f->cw_cap, 0x50);
    assert_int_equal(f->cw_off, 0x52);
    assert_int_equal(f->cw_size, 2);
    assert_int_equal(f->cw_old, 0x0003);
    assert_int_equal(f->cw_new, 0xc003);
    /* Read-only body (table offset) unchanged. */
    ecam_wr(e, 0, 4, 0, (unsigned)c2 + 4, 4, 0);
    assert_int_equal(ecam_rd(e, 0, 4, 0, (unsigned)c2 + 4, 4), 0x2000);
    /* A write straddling two capabilities reaches the hook once per capability. */
    f->cap_writes = 0;
    ecam_wr(e, 0, 4, 0, 0x5a, 4, 0xffffffff);
    assert_int_equal(f->cap_writes, 2);
    assert_int_equal(f->cw_cap, 0x5c);
    assert_int_equal(f->cw_off, 0x5c);
    assert_int_equal(f->cw_size, 2);
    /* Writes outside capabilities do not call it. */
    f->cap_writes = 0;
    ecam_wr(e, 0, 4, 0, PCI_CFG_INT_LINE, 1, 9);
    ecam_wr(e, 0, 4, 0, 0x5f, 1, 9); /* gap between c3 (3 bytes) and c4 */
    assert_int_equal(f->cap_writes, 0);
    /* The read hook may supply values. */
    f->cap_read_override = 0x7777;
    assert_int_equal(ecam_rd(e, 0, 4, 0, 0x44, 2), 0x7777);
    assert_int_equal(ecam_rd(e, 0, 4, 0, 0x3c, 1), 9); /* not in a capability */
    f->cap_read_override = 0;
    assert_true(f->cap_reads > 0);

    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

/* ---- Odd accesses ---- */

static void test_unaligned(void **state)
{
    struct env *e = *state;
    /* Word at 0x03 straddles the device ID and COMMAND dwords. */
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0x01, 2), 0x5780);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0x03, 2), 0x000d);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0x02, 4), 0x00000d57);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0x01, 4), 0x000d5780);
    /* Unaligned write covering COMMAND's high byte and STATUS's low byte. */
    ecam_wr(e, 0, 0, 0, 0x05, 2, 0xffff);
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 4), 0x00000500);
    /* Unaligned write covering the high vendor byte and COMMAND. */
    ecam_wr(e, 0, 0, 0, 0x03, 2, 0x02ff);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 4), 0x0d578086);
    assert_int_equal(ecam_rd(e, 0, 0, 0, PCI_CFG_COMMAND, 2), 0x0502);
    /* A dword crossing into the next (absent) function: the missing half reads all-ones. */
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0xffe, 4), 0xffff0000);
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0xffc, 8), 0xffffffff00000000ULL);
    ecam_wr(e, 0, 0, 0, 0xffe, 4, 0xffffffff);
    /* Through conf1: byte and word lanes of the data port. */
    assert_int_equal(conf1_rd(e, 0, 0, 0, 0x01, 1), 0x80);
    assert_int_equal(conf1_rd(e, 0, 0, 0, 0x02, 1), 0x57);
    assert_int_equal(conf1_rd(e, 0, 0, 0, 0x03, 1), 0x0d);
    assert_int_equal(conf1_rd(e, 0, 0, 0, 0x01, 2), 0x5780); /* word at 0xcfd */
    uint64_t v;
    /* A dword at 0xcfa straddles address and data ports: not a config access. */
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, conf1_address(0, 0, 0, 0)), 0);
    assert_int_equal(bus_read(&e->pio, 0xcfa, 4, &v), 0);
    assert_int_equal(v, 0xffffffff);
    assert_int_equal(bus_write(&e->pio, 0xcfa, 4, 0), 0);
    assert_int_equal(bus_read(&e->pio, 0xcf8, 4, &v), 0);
    assert_int_equal(v, conf1_address(0, 0, 0, 0));
    ecam_wr(e, 0, 0, 0, PCI_CFG_COMMAND, 2, 0);
}

static void test_cf9(void **state)
{
    struct env *e = *state;
    uint32_t a = conf1_address(0, 0, 0, 0);
    uint64_t v;
    assert_int_equal(bus_write(&e->pio, 0xcf8, 4, a), 0);
    /* Reset control register style write, and other partial writes of the address port. */
    assert_int_equal(bus_write(&e->pio, 0xcf9, 1, 0x06), 0);
    assert_int_equal(bus_write(&e->pio, 0xcf8, 1, 0x00), 0);
    assert_int_equal(bus_write(&e->pio, 0xcf8, 2, 0x1234), 0);
    assert_int_equal(bus_write(&e->pio, 0xcfa, 2, 0x0000), 0);
    assert_int_equal(bus_write(&e->pio, 0xcfb, 1, 0x01), 0);
    assert_int_equal(bus_read(&e->pio, 0xcf8, 4, &v), 0);
    assert_int_equal(v, a);
    assert_int_equal(bus_read(&e->pio, 0xcfc, 4, &v), 0);
    assert_int_equal(v, 0x0d578086);
    /* Partial reads of the address port do not return pieces of it. */
    assert_int_equal(bus_read(&e->pio, 0xcf9, 1, &v), 0);
    assert_int_equal(v, 0xff);
}

static void test_garbage(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(1);
    fake_bar(f, 0, PCI_BAR_MEM32, 4096, false);
    fake_bar(f, 1, PCI_BAR_IO, 16, false);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 9), 0);
    struct pci_device *d = &f->pci;

    /* The device accessors refuse out-of-range requests. */
    uint8_t snap[PCI_CFG_SPACE_SIZE];
    memcpy(snap, d->cfg, sizeof(snap));
    const unsigned offs[] = {
        PCI_CFG_SPACE_SIZE, PCI_CFG_SPACE_SIZE - 1, PCI_CFG_SPACE_SIZE - 3, 0xffffffffu,
        0x80000000u,        UINT32_MAX - 2};
    const unsigned sizes[] = {0, 1, 2, 3, 4, 5, 8, 0xffffffffu};
    for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        for (unsigned j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
            unsigned o = offs[i], s = sizes[j];
            bool valid = s >= 1 && s <= 4 && o < PCI_CFG_SPACE_SIZE && o + s <= PCI_CFG_SPACE_SIZE;
            pci_device_config_write(d, o, s, 0xffffffff);
            pci_device_set(d, o, s, 0xffffffff);
            pci_device_set_wmask(d, o, s, 0xffffffff);
            pci_device_set_w1c(d, o, s, 0xffffffff);
            uint32_t r = pci_device_config_read(d, o, s);
            uint32_t g = pci_device_get(d, o, s);
            if (!valid) {
                assert_true(r == 0xffffffff || s < 4);
                assert_int_equal(r, g);
            }
        }
    }
    /* The valid ones only touched the last byte region (0xffc..0xfff). */
    assert_memory_equal(snap, d->cfg, PCI_CFG_SPACE_SIZE - 4);
    assert_int_equal(pci_device_set_bar_address(d, 0, 0x123), -EINVAL);      /* misaligned */
    assert_int_equal(pci_device_set_bar_address(d, 0, 1ULL << 32), -EINVAL); /* too high */
    assert_int_equal(pci_device_set_bar_address(d, 2, 0), -EINVAL);          /* unused */
    assert_int_equal(pci_device_set_bar_address(d, 99, 0), -EINVAL);

    /* Random configuration traffic through ECAM and conf1 never reaches a BAR callback.
     * Accesses to slot 9 keep away from COMMAND and its BARs so that decoding stays as it was.
     */
    uint64_t m = bar_addr(f, 0);
    srand(1234);
    for (unsigned n = 0; n < 200000; n++) {
        unsigned r = (unsigned)rand();
        unsigned size = 1u << (r % 4); /* 1, 2, 4, 8 */
        uint64_t off = ((uint64_t)rand() << 8 ^ (uint64_t)rand()) % (2ULL << 20);
        uint64_t v = ((uint64_t)rand() << 32) | (uint64_t)rand();
        if (((off >> 15) & 31) == 9 && (off & 0xfff) < 0x40)
            continue;
        if ((off >> 15 & 31) == 0 && (off & 0xfff) < 8)
            continue; /* keep the host bridge's COMMAND stable for the reads below */
        if (off + size > (2ULL << 20))
            continue;
        if (r & 0x10) {
            bus_write(&e->mmio, ECAM_BASE + off, size, v);
        } else {
            uint64_t x;
            bus_read(&e->mmio, ECAM_BASE + off, size, &x);
        }
        if (size <= 4) {
            uint32_t addr = (uint32_t)rand() << 1 ^ (uint32_t)rand();
            if (((addr >> 11) & 31) == 9 && (addr & 0xfc) < 0x40)
                addr &= ~PCI_CONF1_ENABLE;
            if (((addr >> 11) & 31) == 0 && (addr & 0xfc) < 8)
                addr &= ~PCI_CONF1_ENABLE;
            bus_write(&e->pio, 0xcf8, 4, addr);
            uint16_t port = (uint16_t)(0xcf8 + (r >> 8) % 8);
            if (r & 0x20) {
                bus_write(&e->pio, port, size, v);
            } else {
                uint64_t x;
                bus_read(&e->pio, port, size, &x);
            }
        }
    }
    for (unsigned b = 0; b < PCI_NUM_BARS; b++)
        assert_int_equal(f->bar[b].reads + f->bar[b].writes, 0);
    /* The functions still answer and the BAR still decodes where it was. */
    assert_int_equal(ecam_rd(e, 0, 0, 0, 0, 4), 0x0d578086);
    assert_int_equal(ecam_rd(e, 0, 9, 0, 0, 4), 0x10411af4);
    mem_rd(e, m, 4);
    assert_int_equal(f->bar[0].reads, 1);

    /* Window accesses outside any BAR, and beyond the windows, reach nobody. */
    uint64_t v;
    assert_int_equal(bus_read(&e->mmio, MMIO32_BASE + MMIO32_SIZE - 8, 8, &v), 0);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(bus_read(&e->mmio, MMIO64_BASE + MMIO64_SIZE - 1, 1, &v), 0);
    assert_int_equal(v, 0xff);
    assert_int_equal(bus_read(&e->mmio, UINT64_MAX - 3, 4, &v), -ENOENT);
    assert_int_equal(f->bar[0].reads, 1);

    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

/* ---- INTx ---- */

static void test_intx(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(2); /* INTB */
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 5), 0);
    assert_int_equal(e->irq.route_calls, 1);
    assert_int_equal(e->irq.route_slot, 5);
    assert_int_equal(e->irq.route_pin, 1);
    uint32_t gsi = 16 + ((5 + 1) & 7u);
    assert_int_equal(ecam_rd(e, 0, 5, 0, PCI_CFG_INT_LINE, 1), gsi);
    assert_int_equal(ecam_rd(e, 0, 5, 0, PCI_CFG_INT_PIN, 1), 2);

    pci_device_set_intx(&f->pci, true);
    assert_int_equal(e->irq.calls, 1);
    assert_int_equal(e->irq.gsi, gsi);
    assert_true(e->irq.level);
    assert_true(ecam_rd(e, 0, 5, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* Setting the same level again does not re-signal. */
    pci_device_set_intx(&f->pci, true);
    assert_int_equal(e->irq.calls, 1);

    /* INTx disable drops the line; STATUS.Interrupt still shows the pending interrupt. */
    uint32_t cmd = (uint32_t)ecam_rd(e, 0, 5, 0, PCI_CFG_COMMAND, 2);
    ecam_wr(e, 0, 5, 0, PCI_CFG_COMMAND, 2, cmd | PCI_COMMAND_INTX_DISABLE);
    assert_int_equal(e->irq.calls, 2);
    assert_false(e->irq.level);
    assert_true(ecam_rd(e, 0, 5, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* The guest cannot clear STATUS.Interrupt. */
    ecam_wr(e, 0, 5, 0, PCI_CFG_STATUS, 2, 0xffff);
    assert_true(ecam_rd(e, 0, 5, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_INTERRUPT);
    ecam_wr(e, 0, 5, 0, PCI_CFG_COMMAND, 2, cmd);
    assert_int_equal(e->irq.calls, 3);
    assert_true(e->irq.level);

    pci_device_set_intx(&f->pci, false);
    assert_int_equal(e->irq.calls, 4);
    assert_false(e->irq.level);
    assert_false(ecam_rd(e, 0, 5, 0, PCI_CFG_STATUS, 2) & PCI_STATUS_INTERRUPT);

    /* A device without a pin is not routed. */
    struct fake *g = fake_new(0);
    assert_int_equal(pci_host_add_device(&e->host, &g->pci, 6), 0);
    assert_int_equal(e->irq.route_calls, 1);
    assert_int_equal(ecam_rd(e, 0, 6, 0, PCI_CFG_INT_LINE, 1), 0xff);

    pci_host_destroy(&e->host);
    fake_free(f);
    fake_free(g);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

static void test_device_init_errors(void **state)
{
    (void)state;
    struct pci_device d;
    struct pci_device_info info = {.vendor_id = 0xffff};
    assert_int_equal(pci_device_init(&d, &info), -EINVAL);
    info.vendor_id = 0x1234;
    info.intx_pin = 5;
    assert_int_equal(pci_device_init(&d, &info), -EINVAL);
    info.intx_pin = 0;
    info.class_code = 0x1000000;
    assert_int_equal(pci_device_init(&d, &info), -EINVAL);
}

/* ---- Concurrency: BAR moves on one thread, BAR accesses on another ---- */

struct race {
    struct env *e;
    struct fake *f;
    uint64_t a1, a2;
    bool stop;
    unsigned bad;
};

static void *race_accessor(void *arg)
{
    struct race *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t v;
        for (unsigned i = 0; i < 2; i++) {
            bus_read(&r->e->mmio, (i ? r->a2 : r->a1) + 8, 4, &v);
            if (v != 0xffffffff && v != 0x5555)
                __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void test_concurrent_reprogram(void **state)
{
    struct env *e = *state;
    struct fake *f = fake_new(0);
    fake_bar(f, 0, PCI_BAR_MEM32, 4096, false);
    assert_int_equal(pci_host_add_device(&e->host, &f->pci, 1), 0);
    f->bar[0].read_val = 0x5555;
    struct race r = {.e = e, .f = f, .a1 = bar_addr(f, 0), .a2 = MMIO32_BASE + 0x800000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, race_accessor, &r), 0);
    for (unsigned i = 0; i < 20000; i++) {
        ecam_wr(e, 0, 1, 0, PCI_CFG_COMMAND, 2, 0);
        ecam_wr(e, 0, 1, 0, 0x10, 4, 0xffffffff);
        ecam_wr(e, 0, 1, 0, 0x10, 4, (i & 1) ? r.a2 : r.a1);
        ecam_wr(e, 0, 1, 0, PCI_CFG_COMMAND, 2, PCI_COMMAND_MEMORY);
    }
    __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    assert_int_equal(r.bad, 0);
    /* Every access that reached the device had a valid offset. */
    assert_int_equal(f->bar[0].last_off, 8);
    assert_true(f->bar[0].reads > 0);
    pci_host_destroy(&e->host);
    fake_free(f);
    assert_int_equal(pci_host_init(&e->host, &e->cfg, &e->mmio, &e->pio), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ids_ecam, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_ids_conf1, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_absent, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_readonly, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_command, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_status_w1c, env_setup, env_teardown),
        cmocka_unit_test(test_bar_sizing),
        cmocka_unit_test(test_bar_declare_errors),
        cmocka_unit_test_setup_teardown(test_bar_dispatch_and_reprogram, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_decode_disabled, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_allocation, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_slots_full, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_window_exhaustion, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_no_io_window, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_capabilities, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_unaligned, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_cf9, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_intx, env_setup, env_teardown),
        cmocka_unit_test(test_device_init_errors),
        cmocka_unit_test_setup_teardown(test_concurrent_reprogram, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
