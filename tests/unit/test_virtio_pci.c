/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The virtio-pci transport, driven the way Linux's virtio_pci_modern driver drives
 * it: the device sits on a real PCI host, configuration space is reached through
 * ECAM and BAR 0 through the memory bus, capabilities are found by walking the
 * list. Behind the transport are a fake device and a fake machine that record
 * every callback (no KVM).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/bus.h"
#include "core/guest_mem.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/pci_host.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ECAM_BASE   0xe0000000ULL
#define MMIO32_BASE 0xc0000000ULL
#define MMIO32_SIZE 0x20000000ULL
#define MMIO64_BASE 0x8000000000ULL
#define MMIO64_SIZE 0x400000000ULL
#define SLOT        3u
#define RAM_GPA     0x100000ULL
#define RAM_SIZE    0x100000ULL
#define RAM_END     (RAM_GPA + RAM_SIZE)
#define NQ          3u
#define QMAX        256u
#define NVEC        (NQ + 1u)
#define CFG_SIZE    12u
#define DEV_ID      2u /* block */
#define CLASS       0x018000u
#define F(bit)      (UINT64_C(1) << (bit))
#define F_V1        F(VIRTIO_F_VERSION_1)
#define F_DEV5      F(5) /* a device-specific bit (virtio-blk RO) */
#define OFFERED     (F(VIRTIO_F_INDIRECT_DESC) | F(VIRTIO_F_EVENT_IDX) | F_DEV5)
#define MSI_ADDR(v) (0xfee00000ULL + ((uint64_t)(v) << 12))
#define MSI_DATA(v) (0x4020u + (v))
#define MAX_MSI     64u

#define ST_ACK  VIRTIO_STATUS_ACKNOWLEDGE
#define ST_DRV  VIRTIO_STATUS_DRIVER
#define ST_FOK  VIRTIO_STATUS_FEATURES_OK
#define ST_DOK  VIRTIO_STATUS_DRIVER_OK
#define ST_NR   VIRTIO_STATUS_DEVICE_NEEDS_RESET
#define ST_FAIL VIRTIO_STATUS_FAILED

/* ---- Fakes ---- */

struct fake_dev {
    unsigned features_ok_calls;
    uint64_t features_ok_arg;
    int features_ok_ret;
    unsigned queue_enable_calls;
    uint16_t qe_queue;
    struct vq_config qe_cfg;
    int queue_enable_ret;
    unsigned start_calls;
    uint64_t start_features;
    int start_ret;
    unsigned reset_calls;
    int reset_ret;
    unsigned config_writes;
    uint32_t cw_off;
    unsigned cw_size;
    uint64_t cw_val;
    unsigned notifies[NQ];
};

struct fake_machine {
    unsigned seq; /* orders msi and route events */
    unsigned nr_msi;
    uint64_t msi_addr[MAX_MSI];
    uint32_t msi_data[MAX_MSI];
    unsigned msi_seq;
    unsigned route_calls[NQ];
    unsigned route_seq[NQ];
    bool direct[NQ];
    uint64_t raddr[NQ];
    uint32_t rdata[NQ];
    unsigned doorbell_calls;
    bool db_mapped[NQ];
    uint64_t db_gpa[NQ];
};

struct env {
    struct bus mmio;
    struct pci_host host;
    struct virtio_pci vp;
    struct fake_dev dev;
    struct fake_machine m;
    uint8_t *ram;
    struct guest_mem mem;
    uint8_t config_init[CFG_SIZE];
    /* Found by walking the capability list, as a driver does. */
    unsigned cap_common, cap_notify, cap_isr, cap_device, cap_pcicfg, cap_msix;
    uint64_t bar;
    uint64_t common, notify, isr, device, table, pba;
    uint32_t notify_mult;
};

static struct env *t;

static int dev_features_ok(void *opaque, uint64_t features)
{
    struct fake_dev *d = opaque;
    d->features_ok_calls++;
    d->features_ok_arg = features;
    return d->features_ok_ret;
}

static int dev_queue_enable(void *opaque, uint16_t queue, const struct vq_config *cfg)
{
    struct fake_dev *d = opaque;
    d->queue_enable_calls++;
    d->qe_queue = queue;
    d->qe_cfg = *cfg;
    return d->queue_enable_ret;
}

static int dev_start(void *opaque, uint64_t features)
{
    struct fake_dev *d = opaque;
    d->start_calls++;
    d->start_features = features;
    return d->start_ret;
}

static int dev_reset(void *opaque)
{
    struct fake_dev *d = opaque;
    d->reset_calls++;
    return d->reset_ret;
}

static void dev_config_write(void *opaque, uint32_t offset, unsigned size, uint64_t value)
{
    struct fake_dev *d = opaque;
    d->config_writes++;
    d->cw_off = offset;
    d->cw_size = size;
    d->cw_val = value;
}

static void dev_queue_notify(void *opaque, uint16_t queue)
{
    struct fake_dev *d = opaque;
    assert_true(queue < NQ);
    __atomic_add_fetch(&d->notifies[queue], 1, __ATOMIC_RELAXED);
}

static const struct virtio_device_ops dev_ops = {
    .features_ok = dev_features_ok,
    .queue_enable = dev_queue_enable,
    .start = dev_start,
    .reset = dev_reset,
    .config_write = dev_config_write,
    .queue_notify = dev_queue_notify,
};

static int m_msi_send(void *ctx, uint64_t addr, uint32_t data)
{
    struct fake_machine *m = ctx;
    m->msi_addr[m->nr_msi % MAX_MSI] = addr;
    m->msi_data[m->nr_msi % MAX_MSI] = data;
    m->nr_msi++;
    m->msi_seq = ++m->seq;
    return 0;
}

static void m_queue_route(void *ctx, uint16_t queue, bool direct, uint64_t addr, uint32_t data)
{
    struct fake_machine *m = ctx;
    assert_true(queue < NQ);
    /* Transitions only: a report never repeats the previous one. */
    if (m->route_calls[queue] > 0)
        assert_true(direct != m->direct[queue] || addr != m->raddr[queue] ||
                    data != m->rdata[queue]);
    if (!direct) {
        assert_int_equal(addr, 0);
        assert_int_equal(data, 0);
    }
    m->route_calls[queue]++;
    m->route_seq[queue] = ++m->seq;
    m->direct[queue] = direct;
    m->raddr[queue] = addr;
    m->rdata[queue] = data;
}

static void m_doorbell(void *ctx, uint16_t queue, bool mapped, uint64_t gpa)
{
    struct fake_machine *m = ctx;
    assert_true(queue < NQ);
    assert_true(mapped != m->db_mapped[queue]); /* transitions only */
    m->doorbell_calls++;
    m->db_mapped[queue] = mapped;
    m->db_gpa[queue] = gpa;
}

static const struct virtio_pci_machine_ops machine_ops = {
    .msi_send = m_msi_send,
    .queue_route = m_queue_route,
    .doorbell = m_doorbell,
};

/* ---- Access helpers ---- */

static uint64_t ecam(unsigned reg)
{
    return ECAM_BASE + ((uint64_t)SLOT << 15) + reg;
}

static uint32_t cfg_rd(unsigned reg, unsigned size)
{
    uint64_t v = 0;
    assert_int_equal(bus_read(&t->mmio, ecam(reg), size, &v), 0);
    return (uint32_t)v;
}

static void cfg_wr(unsigned reg, unsigned size, uint32_t v)
{
    assert_int_equal(bus_write(&t->mmio, ecam(reg), size, v), 0);
}

static uint64_t rd(uint64_t addr, unsigned size)
{
    uint64_t v = 0;
    assert_int_equal(bus_read(&t->mmio, addr, size, &v), 0);
    return v;
}

static void wr(uint64_t addr, unsigned size, uint64_t v)
{
    assert_int_equal(bus_write(&t->mmio, addr, size, v), 0);
}

static uint64_t common_rd(unsigned off, unsigned size)
{
    return rd(t->common + off, size);
}

static void common_wr(unsigned off, unsigned size, uint64_t v)
{
    wr(t->common + off, size, v);
}

static uint8_t status(void)
{
    return (uint8_t)common_rd(VIRTIO_PCI_COMMON_STATUS, 1);
}

static void set_status(uint8_t s)
{
    common_wr(VIRTIO_PCI_COMMON_STATUS, 1, s);
}

static void add_status(uint8_t s)
{
    set_status(status() | s);
}

/* Walks the capability list as vp_modern_probe() does and records where everything is. */
static void find_caps(void)
{
    unsigned seen = 0;
    for (unsigned p = cfg_rd(PCI_CFG_CAP_PTR, 1); p != 0; p = cfg_rd(p + 1, 1)) {
        assert_true(p >= PCI_CFG_CAP_START && p < PCI_CFG_SPACE_LEGACY && p % 4 == 0);
        assert_true(++seen < 48);
        unsigned id = cfg_rd(p, 1);
        if (id == PCI_CAP_ID_MSIX) {
            t->cap_msix = p;
            continue;
        }
        assert_int_equal(id, PCI_CAP_ID_VNDR);
        switch (cfg_rd(p + VIRTIO_PCI_CAP_CFG_TYPE, 1)) {
        case VIRTIO_PCI_CAP_COMMON_CFG:
            t->cap_common = p;
            break;
        case VIRTIO_PCI_CAP_NOTIFY_CFG:
            t->cap_notify = p;
            break;
        case VIRTIO_PCI_CAP_ISR_CFG:
            t->cap_isr = p;
            break;
        case VIRTIO_PCI_CAP_DEVICE_CFG:
            t->cap_device = p;
            break;
        case VIRTIO_PCI_CAP_PCI_CFG:
            t->cap_pcicfg = p;
            break;
        default:
            fail_msg("unexpected cfg_type at %#x", p);
        }
    }
    t->bar = (cfg_rd(PCI_CFG_BAR0, 4) & ~0xfu) | (uint64_t)cfg_rd(PCI_CFG_BAR0 + 4, 4) << 32;
    t->common = t->bar + cfg_rd(t->cap_common + VIRTIO_PCI_CAP_OFFSET, 4);
    t->notify = t->bar + cfg_rd(t->cap_notify + VIRTIO_PCI_CAP_OFFSET, 4);
    t->isr = t->bar + cfg_rd(t->cap_isr + VIRTIO_PCI_CAP_OFFSET, 4);
    t->device = t->bar + cfg_rd(t->cap_device + VIRTIO_PCI_CAP_OFFSET, 4);
    t->notify_mult = cfg_rd(t->cap_notify + VIRTIO_PCI_NOTIFY_CAP_MULT, 4);
    t->table = t->bar + (cfg_rd(t->cap_msix + PCI_MSIX_TABLE, 4) & ~PCI_MSIX_BIR_MASK);
    t->pba = t->bar + (cfg_rd(t->cap_msix + PCI_MSIX_PBA, 4) & ~PCI_MSIX_BIR_MASK);
}

static int env_setup_with(void **state, uint16_t nr_vectors)
{
    (void)state;
    t = calloc(1, sizeof(*t));
    if (t == NULL || bus_init(&t->mmio, "mmio") != 0)
        return -1;
    struct pci_host_config hc = {.ecam_base = ECAM_BASE,
                                 .bus_first = 0,
                                 .bus_last = 0,
                                 .mmio32_base = MMIO32_BASE,
                                 .mmio32_size = MMIO32_SIZE,
                                 .mmio64_base = MMIO64_BASE,
                                 .mmio64_size = MMIO64_SIZE};
    if (pci_host_init(&t->host, &hc, &t->mmio, NULL) != 0)
        return -1;
    t->ram = calloc(1, RAM_SIZE);
    if (t->ram == NULL || guest_mem_add_region(&t->mem, RAM_GPA, RAM_SIZE, t->ram) != 0)
        return -1;
    for (unsigned i = 0; i < CFG_SIZE; i++)
        t->config_init[i] = (uint8_t)(0x10 + i);
    struct virtio_pci_config vc = {.name = "vtest",
                                   .device_id = DEV_ID,
                                   .class_code = CLASS,
                                   .device_features = OFFERED,
                                   .num_queues = NQ,
                                   .queue_max_size = QMAX,
                                   .nr_vectors = nr_vectors,
                                   .config_size = CFG_SIZE,
                                   .config_init = t->config_init,
                                   .mem = &t->mem,
                                   .dev_ops = &dev_ops,
                                   .dev_opaque = &t->dev,
                                   .machine_ops = &machine_ops,
                                   .machine_ctx = &t->m};
    if (virtio_pci_init(&t->vp, &vc) != 0)
        return -1;
    if (pci_host_add_device(&t->host, &t->vp.pci, SLOT) != 0)
        return -1;
    find_caps();
    return 0;
}

static int env_setup(void **state)
{
    return env_setup_with(state, 0);
}

static int env_teardown(void **state)
{
    (void)state;
    pci_host_destroy(&t->host);
    virtio_pci_destroy(&t->vp);
    bus_destroy(&t->mmio);
    free(t->ram);
    free(t);
    t = NULL;
    return 0;
}

/* ---- The driver's steps (drivers/virtio/virtio_pci_modern*.c order) ---- */

static void reset_device(void)
{
    set_status(0);
    assert_int_equal(status(), 0); /* a driver polls until it reads 0 */
}

static uint64_t device_features(void)
{
    common_wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
    uint64_t f = common_rd(VIRTIO_PCI_COMMON_DF, 4);
    common_wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
    return f | common_rd(VIRTIO_PCI_COMMON_DF, 4) << 32;
}

static void write_driver_features(uint64_t f)
{
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    common_wr(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)f);
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    common_wr(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(f >> 32));
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns whether FEATURES_OK stuck. */
static bool negotiate(uint64_t features)
{
    reset_device();
    add_status(ST_ACK);
    add_status(ST_DRV);
    (void)device_features();
    write_driver_features(features);
    add_status(ST_FOK);
    return (status() & ST_FOK) != 0;
}

static void table_wr(unsigned v, unsigned field, uint32_t val)
{
    wr(t->table + (uint64_t)v * PCI_MSIX_ENTRY_SIZE + field, 4, val);
}

static void msix_ctl(uint16_t ctl)
{
    cfg_wr(t->cap_msix + PCI_MSIX_FLAGS, 2, ctl);
}

/* As pci_alloc_irq_vectors() + request_irq(): enable with the function masked, program
 * every entry, clear the function mask, unmask each vector. */
static void msix_setup(void)
{
    msix_ctl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    for (unsigned v = 0; v < NVEC; v++) {
        table_wr(v, PCI_MSIX_ENTRY_ADDR_LO, (uint32_t)MSI_ADDR(v));
        table_wr(v, PCI_MSIX_ENTRY_ADDR_HI, (uint32_t)(MSI_ADDR(v) >> 32));
        table_wr(v, PCI_MSIX_ENTRY_DATA, MSI_DATA(v));
    }
    msix_ctl(PCI_MSIX_FLAGS_ENABLE);
    for (unsigned v = 0; v < NVEC; v++)
        table_wr(v, PCI_MSIX_ENTRY_CTRL, 0);
}

static void set_config_vector(uint16_t v)
{
    common_wr(VIRTIO_PCI_COMMON_MSIX, 2, v);
}

static uint64_t desc_gpa(unsigned q)
{
    return RAM_GPA + q * 0x10000ULL;
}

static uint64_t avail_gpa(unsigned q)
{
    return desc_gpa(q) + 0x4000;
}

static uint64_t used_gpa(unsigned q)
{
    return desc_gpa(q) + 0x8000;
}

static void select_queue(uint16_t q)
{
    common_wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
}

/* Linux's vp_iowrite64_twopart(): low half, then high half. */
static void write64_twopart(unsigned lo, uint64_t v)
{
    common_wr(lo, 4, (uint32_t)v);
    common_wr(lo + 4, 4, (uint32_t)(v >> 32));
}

static uint64_t read64_twopart(unsigned lo)
{
    return common_rd(lo, 4) | common_rd(lo + 4, 4) << 32;
}

static void queue_addrs(uint64_t desc, uint64_t avail, uint64_t used)
{
    write64_twopart(VIRTIO_PCI_COMMON_Q_DESCLO, desc);
    write64_twopart(VIRTIO_PCI_COMMON_Q_AVAILLO, avail);
    write64_twopart(VIRTIO_PCI_COMMON_Q_USEDLO, used);
}

/* setup_vq(): size, vector (read back), rings, notify offset, enable. */
static void setup_queue(uint16_t q, uint16_t size, uint16_t vector)
{
    select_queue(q);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
    common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), vector);
    queue_addrs(desc_gpa(q), avail_gpa(q), used_gpa(q));
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_NOFF, 2), q);
    common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
}

/* The whole probe with per-queue vectors: config on vector 0, queue q on vector q + 1. */
static void bring_up(void)
{
    assert_true(negotiate(OFFERED | F_V1));
    msix_setup();
    set_config_vector(0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_MSIX, 2), 0);
    for (uint16_t q = 0; q < NQ; q++)
        setup_queue(q, QMAX, (uint16_t)(q + 1));
    add_status(ST_DOK);
    assert_int_equal(status(), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
}

static void assert_last_msi(unsigned v)
{
    assert_true(t->m.nr_msi > 0);
    unsigned i = (t->m.nr_msi - 1) % MAX_MSI;
    assert_int_equal(t->m.msi_addr[i], MSI_ADDR(v));
    assert_int_equal(t->m.msi_data[i], MSI_DATA(v));
}

static uint64_t pba(void)
{
    return rd(t->pba, 8);
}

/* DEVICE_NEEDS_RESET is set and a configuration interrupt (vector 0) went out after
 * @p msi_before messages. */
static void assert_needs_reset(unsigned msi_before)
{
    assert_true(status() & ST_NR);
    assert_int_equal(t->m.nr_msi, msi_before + 1);
    assert_last_msi(0);
}

/* ---- Tests ---- */

static void test_identity(void **state)
{
    (void)state;
    assert_int_equal(cfg_rd(PCI_CFG_VENDOR_ID, 2), VIRTIO_PCI_VENDOR_ID);
    assert_int_equal(cfg_rd(PCI_CFG_DEVICE_ID, 2), 0x1040 + DEV_ID);
    assert_int_equal(cfg_rd(PCI_CFG_REVISION, 1), 1);
    assert_int_equal(cfg_rd(PCI_CFG_CLASS_PROG, 1) | cfg_rd(PCI_CFG_CLASS_PROG + 1, 2) << 8, CLASS);
    assert_int_equal(cfg_rd(PCI_CFG_SUBSYS_VENDOR, 2), VIRTIO_PCI_VENDOR_ID);
    assert_true(cfg_rd(PCI_CFG_SUBSYS_ID, 2) >= 0x40);
    assert_int_equal(cfg_rd(PCI_CFG_HEADER_TYPE, 1), 0);
    assert_int_equal(cfg_rd(PCI_CFG_INT_PIN, 1), 0); /* MSI-X only */
    assert_true(cfg_rd(PCI_CFG_STATUS, 2) & PCI_STATUS_CAP_LIST);

    /* BAR 0: 64-bit memory, not prefetchable, 32 KiB; the host placed it in the 64-bit
     * window. Sizing as firmware does, with decoding off. */
    assert_true(t->bar >= MMIO64_BASE && t->bar < MMIO64_BASE + MMIO64_SIZE);
    uint32_t lo = cfg_rd(PCI_CFG_BAR0, 4), hi = cfg_rd(PCI_CFG_BAR0 + 4, 4);
    assert_int_equal(lo & 0xf, PCI_BAR_MEM_TYPE_64);
    cfg_wr(PCI_CFG_COMMAND, 2, 0);
    cfg_wr(PCI_CFG_BAR0, 4, 0xffffffffu);
    cfg_wr(PCI_CFG_BAR0 + 4, 4, 0xffffffffu);
    assert_int_equal(cfg_rd(PCI_CFG_BAR0, 4), (uint32_t) ~(VIRTIO_PCI_BAR_SIZE - 1u) | 0x4u);
    assert_int_equal(cfg_rd(PCI_CFG_BAR0 + 4, 4), 0xffffffffu);
    for (unsigned b = 2; b < PCI_NUM_BARS; b++)
        assert_int_equal(cfg_rd(PCI_CFG_BAR0 + 4 * b, 4), 0);
    cfg_wr(PCI_CFG_BAR0, 4, lo);
    cfg_wr(PCI_CFG_BAR0 + 4, 4, hi);
    cfg_wr(PCI_CFG_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
}

/* Every capability as §4.1.4 lays it out; every structure inside BAR 0; the MSI-X table
 * and PBA share no 4 KiB page with anything else. */
static void test_capabilities(void **state)
{
    (void)state;
    struct {
        unsigned cap, type, len, off, length;
    } want[] = {
        {t->cap_common, VIRTIO_PCI_CAP_COMMON_CFG, 16, VIRTIO_PCI_BAR_COMMON, 0x38},
        {t->cap_notify, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, VIRTIO_PCI_BAR_NOTIFY, 4 * NQ},
        {t->cap_isr, VIRTIO_PCI_CAP_ISR_CFG, 16, VIRTIO_PCI_BAR_ISR, 1},
        {t->cap_device, VIRTIO_PCI_CAP_DEVICE_CFG, 16, VIRTIO_PCI_BAR_DEVICE, CFG_SIZE},
    };
    uint64_t pages[8];
    unsigned np = 0;
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        unsigned c = want[i].cap;
        assert_int_not_equal(c, 0);
        assert_int_equal(cfg_rd(c + VIRTIO_PCI_CAP_LEN, 1), want[i].len);
        assert_int_equal(cfg_rd(c + VIRTIO_PCI_CAP_BAR, 1), 0);
        uint32_t off = cfg_rd(c + VIRTIO_PCI_CAP_OFFSET, 4);
        uint32_t len = cfg_rd(c + VIRTIO_PCI_CAP_LENGTH, 4);
        assert_int_equal(off, want[i].off);
        assert_int_equal(len, want[i].length);
        assert_true(off + len <= VIRTIO_PCI_BAR_SIZE);
        pages[np++] = off / 4096;
        /* Capabilities are read-only: a write changes nothing. */
        cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, 0x1234);
        assert_int_equal(cfg_rd(c + VIRTIO_PCI_CAP_OFFSET, 4), off);
    }
    assert_true(cfg_rd(t->cap_common + VIRTIO_PCI_CAP_LENGTH, 4) >= 0x38);
    assert_int_equal(t->notify_mult, VIRTIO_PCI_NOTIFY_MULTIPLIER);
    /* Each queue's doorbell is distinct and inside the notification structure. */
    uint32_t nlen = cfg_rd(t->cap_notify + VIRTIO_PCI_CAP_LENGTH, 4);
    for (uint16_t q = 0; q < NQ; q++) {
        select_queue(q);
        uint64_t noff = common_rd(VIRTIO_PCI_COMMON_Q_NOFF, 2) * t->notify_mult;
        assert_int_equal(noff, 4u * q);
        assert_true(noff + 2 <= nlen);
    }
    assert_int_equal(cfg_rd(t->cap_pcicfg + VIRTIO_PCI_CAP_LEN, 1), 20);

    /* MSI-X: table size, disabled and unmasked at reset, table and PBA in BAR 0. */
    uint16_t ctl = (uint16_t)cfg_rd(t->cap_msix + PCI_MSIX_FLAGS, 2);
    assert_int_equal(ctl & PCI_MSIX_FLAGS_QSIZE, NVEC - 1);
    assert_int_equal(ctl & (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL), 0);
    uint32_t tbl = cfg_rd(t->cap_msix + PCI_MSIX_TABLE, 4);
    uint32_t pb = cfg_rd(t->cap_msix + PCI_MSIX_PBA, 4);
    assert_int_equal(tbl & PCI_MSIX_BIR_MASK, 0);
    assert_int_equal(pb & PCI_MSIX_BIR_MASK, 0);
    uint32_t toff = tbl & ~PCI_MSIX_BIR_MASK, poff = pb & ~PCI_MSIX_BIR_MASK;
    assert_true(toff + NVEC * 16 <= VIRTIO_PCI_BAR_SIZE && poff + 8 <= VIRTIO_PCI_BAR_SIZE);
    for (unsigned i = 0; i < np; i++) {
        assert_int_not_equal(pages[i], toff / 4096);
        assert_int_not_equal(pages[i], poff / 4096);
    }
    assert_int_not_equal(toff / 4096, poff / 4096);
    /* Table size bits are read-only; only Enable and Function Mask are writable. */
    msix_ctl(0x3fff);
    assert_int_equal(cfg_rd(t->cap_msix + PCI_MSIX_FLAGS, 2), NVEC - 1);
    /* Every vector is masked at reset. */
    for (unsigned v = 0; v < NVEC; v++)
        assert_int_equal(rd(t->table + 16 * v + PCI_MSIX_ENTRY_CTRL, 4),
                         PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

/* A device without configuration space has no DEVICE capability. */
static void test_no_device_config(void **state)
{
    (void)state;
    struct virtio_pci vp;
    struct virtio_pci_config vc = {.device_id = 4, .num_queues = 1, .queue_max_size = 64};
    assert_int_equal(virtio_pci_init(&vp, &vc), 0);
    unsigned n = 0;
    for (unsigned p = pci_device_config_read(&vp.pci, PCI_CFG_CAP_PTR, 1); p != 0;
         p = pci_device_config_read(&vp.pci, p + 1, 1)) {
        if (pci_device_config_read(&vp.pci, p, 1) == PCI_CAP_ID_VNDR)
            assert_int_not_equal(pci_device_config_read(&vp.pci, p + VIRTIO_PCI_CAP_CFG_TYPE, 1),
                                 VIRTIO_PCI_CAP_DEVICE_CFG);
        n++;
    }
    assert_int_equal(n, 5); /* common, notify, isr, pci_cfg, msi-x */
    assert_int_equal(pci_device_config_read(&vp.pci, PCI_CFG_DEVICE_ID, 2), 0x1044);
    virtio_pci_destroy(&vp);
}

static void test_init_errors(void **state)
{
    (void)state;
    struct virtio_pci vp;
    const struct virtio_pci_config good = {.num_queues = 2, .queue_max_size = 128};
    struct virtio_pci_config c;

    c = good;
    c.num_queues = 0;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.num_queues = VIRTIO_PCI_MAX_QUEUES + 1;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.queue_max_size = 0;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.queue_max_size = 100;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.nr_vectors = VIRTIO_PCI_MAX_VECTORS + 1;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.config_size = VIRTIO_PCI_MAX_CONFIG + 1;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.device_features = F(VIRTIO_F_RING_PACKED);
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.device_features = F(VIRTIO_F_RING_RESET);
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);
    c = good;
    c.device_id = 0xffff;
    assert_int_equal(virtio_pci_init(&vp, &c), -EINVAL);

    /* Limits themselves are fine: the largest device still fits its BAR pages. */
    c = good;
    c.num_queues = VIRTIO_PCI_MAX_QUEUES;
    c.queue_max_size = VIRTQ_MAX_SIZE;
    c.config_size = VIRTIO_PCI_MAX_CONFIG;
    assert_int_equal(virtio_pci_init(&vp, &c), 0);
    assert_int_equal(vp.nr_vectors, VIRTIO_PCI_MAX_VECTORS);
    virtio_pci_destroy(&vp);
}

/* The probe sequence of Linux's virtio_pci_modern, end to end. */
static void test_linux_probe(void **state)
{
    (void)state;
    assert_int_equal(device_features(), OFFERED | F_V1);
    /* Before any driver, the doorbells already follow BAR 0. */
    for (unsigned q = 0; q < NQ; q++) {
        assert_true(t->m.db_mapped[q]);
        assert_int_equal(t->m.db_gpa[q], t->notify + 4u * q);
        uint64_t gpa;
        assert_int_equal(virtio_pci_doorbell_addr(&t->vp, (uint16_t)q, &gpa), 0);
        assert_int_equal(gpa, t->notify + 4u * q);
    }
    bring_up();
    assert_int_equal(t->dev.features_ok_calls, 1);
    assert_int_equal(t->dev.features_ok_arg, OFFERED | F_V1);
    assert_int_equal(t->dev.queue_enable_calls, NQ);
    assert_int_equal(t->dev.qe_queue, NQ - 1);
    assert_int_equal(t->dev.qe_cfg.size, QMAX);
    assert_int_equal(t->dev.qe_cfg.desc_addr, desc_gpa(NQ - 1));
    assert_int_equal(t->dev.qe_cfg.avail_addr, avail_gpa(NQ - 1));
    assert_int_equal(t->dev.qe_cfg.used_addr, used_gpa(NQ - 1));
    assert_int_equal(t->dev.qe_cfg.features, OFFERED | F_V1);
    assert_int_equal(t->dev.qe_cfg.last_avail_idx, 0);
    assert_int_equal(t->dev.start_calls, 1);
    assert_int_equal(t->dev.start_features, OFFERED | F_V1);
    /* The queues' vectors are unmasked: each queue may be delivered by irqfd. */
    for (unsigned q = 0; q < NQ; q++) {
        assert_true(t->m.direct[q]);
        assert_int_equal(t->m.raddr[q], MSI_ADDR(q + 1));
        assert_int_equal(t->m.rdata[q], MSI_DATA(q + 1));
        select_queue((uint16_t)q);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
        assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_DESCLO), desc_gpa(q));
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_AVAILLO, 8), avail_gpa(q));
    }
    assert_int_equal(t->m.nr_msi, 0);

    /* A kick that reaches the VMM (no ioeventfd) goes to the device. */
    wr(t->notify + 4 * 1, 2, 1);
    assert_int_equal(t->dev.notifies[1], 1);
    wr(t->notify + 4 * 2, 4, 2); /* another width still names the queue */
    assert_int_equal(t->dev.notifies[2], 1);
    /* Interrupts for queue q leave on vector q + 1. */
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 2), 0);
    assert_last_msi(3);
    assert_int_equal(pba(), 0);
}

static void test_features(void **state)
{
    (void)state;
    /* Without VERSION_1 (a legacy driver): FEATURES_OK is refused, nothing breaks. */
    assert_false(negotiate(OFFERED));
    assert_false(status() & ST_NR);
    assert_int_equal(t->dev.features_ok_calls, 0);
    /* The driver may then try again with other features. */
    write_driver_features(F_V1);
    add_status(ST_FOK);
    assert_true(status() & ST_FOK);
    assert_int_equal(t->dev.features_ok_arg, F_V1);

    /* A feature that was not offered. */
    assert_false(negotiate(F_V1 | F(0)));
    assert_false(negotiate(F_V1 | F(63)));
    /* A bit above 63 (driver_feature_select 2). */
    reset_device();
    write_driver_features(F_V1);
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 2);
    common_wr(VIRTIO_PCI_COMMON_GF, 4, 1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), 0);
    add_status(ST_FOK);
    assert_false(status() & ST_FOK);
    /* The device refuses the combination. */
    t->dev.features_ok_ret = -ENOTSUP;
    unsigned calls = t->dev.features_ok_calls;
    assert_false(negotiate(OFFERED | F_V1));
    assert_int_equal(t->dev.features_ok_calls, calls + 1);
    t->dev.features_ok_ret = 0;

    /* Feature windows beyond 64 bits read 0; the driver's window reads back. */
    common_wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_DF, 4), 0);
    common_wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 0xffffffffu);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_DF, 4), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_DFSELECT, 4), 0xffffffffu);
    /* device_feature is read-only. */
    common_wr(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
    common_wr(VIRTIO_PCI_COMMON_DF, 4, 0);
    assert_int_equal(device_features(), OFFERED | F_V1);

    assert_true(negotiate(F(VIRTIO_F_EVENT_IDX) | F_V1));
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), F(VIRTIO_F_EVENT_IDX));
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), 1);
}

/* After FEATURES_OK the features are fixed: rewriting the same value is harmless, a
 * change makes the device need a reset and raises a configuration interrupt. */
static void test_features_frozen(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    msix_setup();
    set_config_vector(0);
    write_driver_features(OFFERED | F_V1);
    assert_false(status() & ST_NR);
    assert_int_equal(t->m.nr_msi, 0);

    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    common_wr(VIRTIO_PCI_COMMON_GF, 4, 0);
    assert_needs_reset(0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), (uint32_t)OFFERED);
    /* A broken device does not start. */
    setup_queue(0, QMAX, 1);
    assert_int_equal(t->dev.queue_enable_calls, 0);
    add_status(ST_DOK);
    assert_false(status() & ST_DOK);
    assert_int_equal(t->dev.start_calls, 0);
    assert_int_equal(t->m.nr_msi, 1); /* one notification per failure */
    /* Reset cures it. */
    assert_true(negotiate(OFFERED | F_V1));
    assert_false(status() & ST_NR);
}

static void test_queue_size(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    msix_setup();
    set_config_vector(0);
    /* Shrinking to a smaller power of two is the driver's right. */
    select_queue(0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
    common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 64);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
    queue_addrs(desc_gpa(0), avail_gpa(0), used_gpa(0));
    common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    assert_int_equal(t->dev.qe_cfg.size, 64);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
    /* Not while enabled. */
    common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
    /* queue_enable = 0 is not a way back without RING_RESET. */
    common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
    assert_false(status() & ST_NR);
    assert_int_equal(t->m.nr_msi, 0);

    /* Growing, 0, and non-powers of two are refused when the queue is enabled. */
    static const uint16_t bad[] = {QMAX * 2, 0, 48, 0xffff};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(negotiate(OFFERED | F_V1));
        set_config_vector(0);
        unsigned msi = t->m.nr_msi, calls = t->dev.queue_enable_calls;
        select_queue(1);
        common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, bad[i]);
        queue_addrs(desc_gpa(1), avail_gpa(1), used_gpa(1));
        common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
        assert_needs_reset(msi);
        assert_int_equal(t->dev.queue_enable_calls, calls);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
    }
    /* Reset restores the maximum. */
    reset_device();
    select_queue(1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
}

/* Ring addresses are writable only while the queue is disabled, in every access form. */
static void test_queue_addr_locked_when_enabled(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    select_queue(0);
    /* One 64-bit access, and the two halves independently, both work while disabled. */
    common_wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, 0x1122334455667780ULL);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0x1122334455667780ULL);
    common_wr(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
    assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_DESCLO), 0x55667780ULL);
    setup_queue(0, 128, VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);

    common_wr(VIRTIO_PCI_COMMON_Q_DESCLO, 8, RAM_GPA + 0x80000);
    common_wr(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0);
    common_wr(VIRTIO_PCI_COMMON_Q_DESCHI, 4, 1);
    write64_twopart(VIRTIO_PCI_COMMON_Q_AVAILLO, RAM_GPA + 0x80000);
    write64_twopart(VIRTIO_PCI_COMMON_Q_USEDLO, RAM_GPA + 0x80000);
    assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_DESCLO), desc_gpa(0));
    assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_AVAILLO), avail_gpa(0));
    assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_USEDLO), used_gpa(0));
    assert_false(status() & ST_NR);
    /* Another queue is unaffected by the first being enabled. */
    select_queue(1);
    write64_twopart(VIRTIO_PCI_COMMON_Q_USEDLO, used_gpa(1));
    assert_int_equal(read64_twopart(VIRTIO_PCI_COMMON_Q_USEDLO), used_gpa(1));
}

/* Misaligned rings, rings outside RAM or wrapping, an enable before FEATURES_OK and a
 * queue the device refuses: DEVICE_NEEDS_RESET and a configuration interrupt, each. */
static void test_queue_enable_refused(void **state)
{
    (void)state;
    const struct {
        uint64_t desc, avail, used;
    } cases[] = {
        {RAM_GPA + 8, avail_gpa(0), used_gpa(0)},           /* desc not 16-aligned */
        {desc_gpa(0), RAM_GPA + 0x4001, used_gpa(0)},       /* avail odd */
        {desc_gpa(0), avail_gpa(0), RAM_GPA + 0x8002},      /* used not 4-aligned */
        {0x10000000ULL, avail_gpa(0), used_gpa(0)},         /* desc not RAM */
        {desc_gpa(0), avail_gpa(0), RAM_END - 8},           /* used runs off RAM */
        {desc_gpa(0), RAM_END - 0x100, used_gpa(0)},        /* avail runs off RAM */
        {0xfffffffffffff000ULL, avail_gpa(0), used_gpa(0)}, /* desc wraps 2^64 */
        {desc_gpa(0), avail_gpa(0), 0xfffffffffffffffcULL}, /* used wraps 2^64 */
    };
    msix_setup();
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_true(negotiate(OFFERED | F_V1));
        set_config_vector(0);
        unsigned msi = t->m.nr_msi;
        select_queue(0);
        queue_addrs(cases[i].desc, cases[i].avail, cases[i].used);
        common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
        assert_needs_reset(msi);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
    }
    assert_int_equal(t->dev.queue_enable_calls, 0);

    /* Enabled before FEATURES_OK (the features the ring depends on are unknown). */
    reset_device();
    add_status(ST_ACK | ST_DRV);
    set_config_vector(0);
    unsigned msi = t->m.nr_msi;
    select_queue(0);
    queue_addrs(desc_gpa(0), avail_gpa(0), used_gpa(0));
    common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    assert_needs_reset(msi);

    /* The device's own refusal. */
    t->dev.queue_enable_ret = -EINVAL;
    assert_true(negotiate(OFFERED | F_V1));
    set_config_vector(0);
    msi = t->m.nr_msi;
    select_queue(2);
    queue_addrs(desc_gpa(2), avail_gpa(2), used_gpa(2));
    common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    assert_needs_reset(msi);
    assert_int_equal(t->dev.queue_enable_calls, 1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
}

static void test_reset_clears(void **state)
{
    (void)state;
    bring_up();
    virtio_pci_config_update(&t->vp, 0, "\x55", 1, true);
    assert_int_equal(t->dev.reset_calls, 1); /* the probe's own reset */
    set_status(0);
    assert_int_equal(t->dev.reset_calls, 2);
    assert_int_equal(status(), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), 0);
    common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_GF, 4), 0);
    assert_int_equal(rd(t->isr, 1), 0);
    for (uint16_t q = 0; q < NQ; q++) {
        select_queue(q);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), QMAX);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_AVAILLO, 8), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_USEDLO, 8), 0);
        /* No vector any more: irqfds must come off. */
        assert_false(t->m.direct[q]);
    }
    common_wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
    /* Queue interrupts are dropped until the driver is back. */
    unsigned msi = t->m.nr_msi;
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0), -ENODEV);
    assert_int_equal(t->m.nr_msi, msi);
    /* MSI-X is PCI state, not virtio state: the table survives a virtio reset. */
    assert_int_equal(rd(t->table + 16 * 2 + PCI_MSIX_ENTRY_DATA, 4), MSI_DATA(2));
    assert_true(cfg_rd(t->cap_msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_ENABLE);
    /* And the device comes up again. */
    assert_true(negotiate(OFFERED | F_V1));
    setup_queue(0, QMAX, 1);
    add_status(ST_DOK);
    assert_true(status() & ST_DOK);
    assert_int_equal(t->dev.start_calls, 2);
}

/* A device that needs time to stop keeps device_status non-zero until it is done. */
static void test_reset_pending(void **state)
{
    (void)state;
    bring_up();
    uint8_t before = status();
    t->dev.reset_ret = VIRTIO_PCI_RESET_PENDING;
    set_status(0);
    assert_int_equal(status(), before);
    set_status(ST_ACK); /* the driver must wait; a write meanwhile is ignored */
    assert_int_equal(status(), before);
    /* Transport state is already reset. */
    select_queue(0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
    virtio_pci_set_needs_reset(&t->vp, "test"); /* moot during a reset */
    virtio_pci_reset_done(&t->vp);
    assert_int_equal(status(), 0);
    /* A reset of a device that was never started completes at once. */
    set_status(0);
    assert_int_equal(status(), 0);
    t->dev.reset_ret = 0;
    assert_true(negotiate(OFFERED | F_V1));
}

static void test_status_protocol(void **state)
{
    (void)state;
    msix_setup();
    /* DRIVER_OK without FEATURES_OK. */
    reset_device();
    set_config_vector(0);
    add_status(ST_ACK | ST_DRV);
    set_status(ST_ACK | ST_DRV | ST_DOK);
    assert_needs_reset(0);
    assert_false(status() & ST_DOK);
    assert_int_equal(t->dev.start_calls, 0);
    /* FEATURES_OK and DRIVER_OK in one write also works when negotiation succeeds. */
    reset_device();
    add_status(ST_ACK | ST_DRV);
    write_driver_features(F_V1);
    set_status(ST_ACK | ST_DRV | ST_FOK | ST_DOK);
    assert_int_equal(status(), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
    assert_int_equal(t->dev.start_calls, 1);
    /* Clearing a bit other than by a reset. */
    set_config_vector(0);
    unsigned msi = t->m.nr_msi;
    set_status(ST_ACK | ST_DRV | ST_FOK);
    assert_needs_reset(msi);
    assert_true(status() & ST_DOK);
    /* The device fails to start. */
    t->dev.start_ret = -EIO;
    assert_true(negotiate(OFFERED | F_V1));
    set_config_vector(0);
    msi = t->m.nr_msi;
    add_status(ST_DOK);
    assert_needs_reset(msi);
    assert_false(status() & ST_DOK);
    assert_int_equal(t->dev.start_calls, 2);
    t->dev.start_ret = 0;
    /* FAILED is the driver's to set; undefined bits and NEEDS_RESET from the driver are not. */
    reset_device();
    set_status(ST_ACK | 0x30 | ST_NR);
    assert_int_equal(status(), ST_ACK);
    add_status(ST_FAIL);
    assert_int_equal(status(), ST_ACK | ST_FAIL);
}

/* The device reports a failure (a malformed ring, a backend gone). */
static void test_device_needs_reset(void **state)
{
    (void)state;
    bring_up();
    virtio_pci_set_needs_reset(&t->vp, "test");
    assert_needs_reset(0);
    assert_int_equal(rd(t->isr, 1), VIRTIO_PCI_ISR_CONFIG);
    virtio_pci_set_needs_reset(&t->vp, "again");
    assert_int_equal(t->m.nr_msi, 1);
    /* Kicks reaching the VMM are no longer forwarded. */
    wr(t->notify, 2, 0);
    assert_int_equal(t->dev.notifies[0], 0);
    reset_device();
    assert_false(status() & ST_NR);
}

static void test_vectors(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    /* A vector beyond the table is a mapping failure and reads back NO_VECTOR. */
    set_config_vector(NVEC);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    set_config_vector(NVEC - 1);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_MSIX, 2), NVEC - 1);
    select_queue(0);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 0x7ff);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
}

/* Delivery through the transport: masked vectors pend, unmasking delivers, NO_VECTOR is
 * silence. */
static void test_msix_mask_pending(void **state)
{
    (void)state;
    bring_up();
    /* Mask queue 0's vector (1). */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT);
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0), 0);
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0), 0);
    assert_int_equal(t->m.nr_msi, 0);
    assert_int_equal(pba(), 1u << 1);
    assert_int_equal(rd(t->pba, 4), 1u << 1);
    wr(t->pba, 8, 0); /* the PBA is read-only */
    assert_int_equal(pba(), 1u << 1);
    /* Other vectors are unaffected. */
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 1), 0);
    assert_int_equal(t->m.nr_msi, 1);
    assert_last_msi(2);
    /* Unmasking delivers once and clears the bit. */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 0);
    assert_int_equal(t->m.nr_msi, 2);
    assert_last_msi(1);
    assert_int_equal(pba(), 0);
    /* Unmasked: straight out. */
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0), 0);
    assert_int_equal(t->m.nr_msi, 3);
    /* Masking and unmasking with nothing pending sends nothing. */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 1);
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 0);
    assert_int_equal(t->m.nr_msi, 3);
    /* NO_VECTOR: no message, no pending bit. */
    select_queue(2);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 2), 0);
    assert_int_equal(t->m.nr_msi, 3);
    assert_int_equal(pba(), 0);
    set_config_vector(VIRTIO_MSI_NO_VECTOR);
    virtio_pci_set_needs_reset(&t->vp, "test");
    assert_int_equal(t->m.nr_msi, 3);
    assert_int_equal(pba(), 0);
    /* Shared vectors: two queues on one vector pend once. */
    reset_device();
    assert_true(negotiate(OFFERED | F_V1));
    setup_queue(0, QMAX, 3);
    setup_queue(1, QMAX, 3);
    add_status(ST_DOK);
    table_wr(3, PCI_MSIX_ENTRY_CTRL, 1);
    virtio_pci_queue_interrupt(&t->vp, 0);
    virtio_pci_queue_interrupt(&t->vp, 1);
    assert_int_equal(pba(), 1u << 3);
    table_wr(3, PCI_MSIX_ENTRY_CTRL, 0);
    assert_int_equal(t->m.nr_msi, 4);
    assert_last_msi(3);
}

/* The function mask holds every vector; clearing it delivers what is pending, in vector
 * order, except vectors still masked on their own. */
static void test_msix_function_mask(void **state)
{
    (void)state;
    bring_up();
    msix_ctl(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    for (unsigned q = 0; q < NQ; q++)
        assert_false(t->m.direct[q]);
    virtio_pci_queue_interrupt(&t->vp, 0);
    virtio_pci_queue_interrupt(&t->vp, 2);
    virtio_pci_config_update(&t->vp, 0, "\x99", 1, true);
    assert_int_equal(t->m.nr_msi, 0);
    assert_int_equal(pba(), (1u << 0) | (1u << 1) | (1u << 3));
    table_wr(3, PCI_MSIX_ENTRY_CTRL, 1); /* still masked on its own */
    msix_ctl(PCI_MSIX_FLAGS_ENABLE);
    assert_int_equal(t->m.nr_msi, 2);
    assert_int_equal(t->m.msi_data[0], MSI_DATA(0));
    assert_int_equal(t->m.msi_data[1], MSI_DATA(1));
    assert_int_equal(pba(), 1u << 3);
    assert_true(t->m.direct[0] && t->m.direct[1]);
    assert_false(t->m.direct[2]);
    table_wr(3, PCI_MSIX_ENTRY_CTRL, 0);
    assert_int_equal(t->m.nr_msi, 3);
    assert_last_msi(3);
    assert_true(t->m.direct[2]);
    assert_int_equal(pba(), 0);
}

/* Delivery around the transport (irqfd): the machine is told per queue when direct
 * delivery is allowed and with which message; while it is not, the machine feeds the
 * backend's signals to virtio_pci_queue_interrupt(), which pends them. */
static void test_msix_irqfd_routes(void **state)
{
    (void)state;
    bring_up();
    for (unsigned q = 0; q < NQ; q++)
        assert_int_equal(t->m.route_calls[q], 1);
    /* Vector 1 masked: queue 0 loses its direct route, the others keep theirs. */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 1);
    assert_int_equal(t->m.route_calls[0], 2);
    assert_false(t->m.direct[0]);
    assert_int_equal(t->m.route_calls[1], 1);
    /* The backend signals while masked: the machine hands it to the transport. */
    virtio_pci_queue_interrupt(&t->vp, 0);
    assert_int_equal(pba(), 1u << 1);
    assert_int_equal(t->m.nr_msi, 0);
    /* Unmask: the pending interrupt goes out, then the direct route comes back. */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 0);
    assert_int_equal(t->m.nr_msi, 1);
    assert_last_msi(1);
    assert_true(t->m.direct[0]);
    assert_true(t->m.msi_seq < t->m.route_seq[0]);
    /* The guest moves the vector (Linux masks around it; older guests do not). */
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 1);
    table_wr(1, PCI_MSIX_ENTRY_DATA, 0x4099);
    assert_false(t->m.direct[0]);
    table_wr(1, PCI_MSIX_ENTRY_CTRL, 0);
    assert_true(t->m.direct[0]);
    assert_int_equal(t->m.rdata[0], 0x4099);
    unsigned calls = t->m.route_calls[0];
    table_wr(1, PCI_MSIX_ENTRY_ADDR_LO, 0xfee0f000u);
    assert_int_equal(t->m.route_calls[0], calls + 1);
    assert_int_equal(t->m.raddr[0], 0xfee0f000u);
    /* Writing the same message again is not a change. */
    table_wr(1, PCI_MSIX_ENTRY_ADDR_LO, 0xfee0f000u);
    assert_int_equal(t->m.route_calls[0], calls + 1);
    /* A queue moved to another vector follows it. */
    select_queue(0);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
    assert_int_equal(t->m.rdata[0], MSI_DATA(2));
    /* NO_VECTOR and MSI-X disable take all direct delivery away. */
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    assert_false(t->m.direct[0]);
    msix_ctl(0);
    for (unsigned q = 0; q < NQ; q++)
        assert_false(t->m.direct[q]);
    msix_ctl(PCI_MSIX_FLAGS_ENABLE);
    assert_false(t->m.direct[0]);
    assert_true(t->m.direct[1] && t->m.direct[2]);
    /* 64-bit table accesses work as two dwords; partial ones are ignored. */
    wr(t->table + 16 * 2, 8, 0x00000000fee0a000ULL);
    assert_int_equal(t->m.raddr[1], 0xfee0a000u);
    assert_int_equal(rd(t->table + 16 * 2, 8), 0xfee0a000u);
    wr(t->table + 16 * 2 + 8, 8, 0x0000000100004321ULL); /* data, then mask */
    assert_false(t->m.direct[1]);
    wr(t->table + 16 * 2 + 12, 2, 0);
    wr(t->table + 16 * 2 + 13, 1, 0);
    wr(t->table + 16 * 2 + 10, 4, 0);
    assert_false(t->m.direct[1]);
    assert_int_equal(rd(t->table + 16 * 2 + 12, 4), 1);
    assert_int_equal(rd(t->table + 16 * 2 + 12, 2), 0);
    assert_int_equal(rd(t->table + 16 * 2 + 4, 8), 0); /* not qword aligned */
    /* Address bits 1:0 read as zero. */
    table_wr(2, PCI_MSIX_ENTRY_ADDR_LO, 0xfee0a003u);
    assert_int_equal(rd(t->table + 16 * 2, 4), 0xfee0a000u);
}

/* Without MSI-X the driver learns why it was interrupted from ISR status, and reading
 * it clears it. */
static void test_isr(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    setup_queue(0, QMAX, VIRTIO_MSI_NO_VECTOR);
    add_status(ST_DOK);
    assert_int_equal(rd(t->isr, 1), 0);
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0), 0);
    assert_int_equal(rd(t->isr, 1), VIRTIO_PCI_ISR_QUEUE);
    assert_int_equal(rd(t->isr, 1), 0);
    uint8_t b = 0x42;
    assert_int_equal(virtio_pci_config_update(&t->vp, 3, &b, 1, true), 0);
    virtio_pci_queue_interrupt(&t->vp, 0);
    /* Accesses other than a byte read of the ISR byte neither read nor clear it. */
    assert_int_equal(rd(t->isr, 2), 0);
    assert_int_equal(rd(t->isr, 4), 0);
    assert_int_equal(rd(t->isr + 1, 1), 0);
    wr(t->isr, 1, 0);
    assert_int_equal(rd(t->isr, 1), VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG);
    assert_int_equal(rd(t->isr, 1), 0);
    assert_int_equal(t->m.nr_msi, 0);
    /* With MSI-X on, queue interrupts use vectors and leave ISR alone; configuration
     * changes still set their bit. */
    msix_setup();
    select_queue(0);
    common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
    set_config_vector(0);
    virtio_pci_queue_interrupt(&t->vp, 0);
    assert_int_equal(rd(t->isr, 1), 0);
    b = 0x43;
    virtio_pci_config_update(&t->vp, 3, &b, 1, true);
    assert_int_equal(rd(t->isr, 1), VIRTIO_PCI_ISR_CONFIG);
    assert_int_equal(t->m.nr_msi, 2);
}

static void test_device_config(void **state)
{
    (void)state;
    /* Readable before FEATURES_OK, every width. */
    assert_int_equal(rd(t->device, 1), 0x10);
    assert_int_equal(rd(t->device + 2, 2), 0x1312);
    assert_int_equal(rd(t->device + 4, 4), 0x17161514);
    assert_int_equal(rd(t->device + 4, 8), 0x1b1a191817161514ULL);
    assert_int_equal(rd(t->device + CFG_SIZE - 2, 4), 0); /* crosses the end */
    assert_int_equal(rd(t->device + CFG_SIZE, 1), 0);

    uint8_t g0 = (uint8_t)common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
    uint8_t v[2] = {0xaa, 0xbb};
    assert_int_equal(virtio_pci_config_update(&t->vp, 8, v, 2, true), 0);
    uint8_t g1 = (uint8_t)common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
    assert_int_not_equal(g0, g1);
    assert_int_equal(rd(t->device + 8, 2), 0xbbaa);
    /* The same bytes again are no change. */
    assert_int_equal(virtio_pci_config_update(&t->vp, 8, v, 2, true), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g1);
    /* config_generation is read-only. */
    common_wr(VIRTIO_PCI_COMMON_CFGGENERATION, 1, 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g1);
    /* Before DRIVER_OK nobody is told. */
    assert_int_equal(rd(t->isr, 1), 0);
    assert_int_equal(virtio_pci_config_update(&t->vp, CFG_SIZE - 1, v, 2, true), -EINVAL);
    assert_int_equal(virtio_pci_config_update(&t->vp, 0xffffffffu, v, 2, true), -EINVAL);
    assert_int_equal(virtio_pci_config_update(&t->vp, CFG_SIZE, v, 0, true), 0);

    /* Driver writes: dropped before FEATURES_OK, forwarded after. */
    wr(t->device + 4, 4, 0xdeadbeef);
    assert_int_equal(t->dev.config_writes, 0);
    assert_true(negotiate(OFFERED | F_V1));
    wr(t->device + 4, 4, 0xdeadbeef);
    assert_int_equal(t->dev.config_writes, 1);
    assert_int_equal(t->dev.cw_off, 4);
    assert_int_equal(t->dev.cw_size, 4);
    assert_int_equal(t->dev.cw_val, 0xdeadbeef);
    assert_int_equal(rd(t->device + 4, 4), 0x17161514); /* the device decides */
    wr(t->device + CFG_SIZE - 1, 2, 0);
    assert_int_equal(t->dev.config_writes, 1);

    /* After DRIVER_OK a change raises a configuration interrupt, if asked for. */
    msix_setup();
    set_config_vector(0);
    setup_queue(0, QMAX, 1);
    add_status(ST_DOK);
    v[0] = 1;
    virtio_pci_config_update(&t->vp, 0, v, 1, false);
    assert_int_equal(t->m.nr_msi, 0);
    v[0] = 2;
    uint8_t g2 = (uint8_t)common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
    virtio_pci_config_update(&t->vp, 0, v, 1, true);
    assert_int_equal(t->m.nr_msi, 1);
    assert_last_msi(0);
    assert_int_not_equal(common_rd(VIRTIO_PCI_COMMON_CFGGENERATION, 1), g2);
}

/* The PCI_CFG window reaches BAR 0 through configuration space only (§4.1.4.9). */
static void test_pci_cfg_window(void **state)
{
    (void)state;
    unsigned c = t->cap_pcicfg;
    cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, 0);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_COMMON + VIRTIO_PCI_COMMON_NUMQ);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4) & 0xffff, NQ);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 2), NQ);
    /* A write of status through the window. */
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_COMMON + VIRTIO_PCI_COMMON_STATUS);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
    cfg_wr(c + VIRTIO_PCI_CFG_CAP_DATA, 4, ST_ACK);
    assert_int_equal(status(), ST_ACK);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 1), ST_ACK);
    /* The device features, 4 bytes. */
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_COMMON + VIRTIO_PCI_COMMON_DF);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4), (uint32_t)OFFERED);
    /* Invalid windows do nothing: the data keeps its last value. */
    uint32_t last = cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 3);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4), last);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 2);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_COMMON + VIRTIO_PCI_COMMON_STATUS + 1);
    cfg_wr(c + VIRTIO_PCI_CFG_CAP_DATA, 4, 0);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4), 0);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_COMMON + VIRTIO_PCI_COMMON_STATUS);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
    cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, 2);
    cfg_wr(c + VIRTIO_PCI_CFG_CAP_DATA, 4, 0);
    assert_int_equal(status(), ST_ACK);
    cfg_wr(c + VIRTIO_PCI_CAP_BAR, 1, 0);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_SIZE);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4), 0);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, 0xfffffffcu);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 4), 0);
    assert_int_equal(status(), ST_ACK);
    /* A read of ISR through the window clears it, as a BAR read does. */
    assert_true(negotiate(OFFERED | F_V1));
    add_status(ST_DOK);
    virtio_pci_config_update(&t->vp, 0, "\x01", 1, true);
    cfg_wr(c + VIRTIO_PCI_CAP_OFFSET, 4, VIRTIO_PCI_BAR_ISR);
    cfg_wr(c + VIRTIO_PCI_CAP_LENGTH, 4, 1);
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CFG_CAP_DATA, 1), VIRTIO_PCI_ISR_CONFIG);
    assert_int_equal(rd(t->isr, 1), 0);
    /* Other bytes of the capability read normally in the same access. */
    assert_int_equal(cfg_rd(c + VIRTIO_PCI_CAP_LENGTH + 2, 4), 0);
}

/* Doorbells follow BAR 0 wherever the guest puts it, and vanish when it stops decoding. */
static void test_doorbells_follow_bar(void **state)
{
    (void)state;
    unsigned calls = t->m.doorbell_calls;
    assert_int_equal(calls, NQ);
    cfg_wr(PCI_CFG_COMMAND, 2, 0);
    assert_int_equal(t->m.doorbell_calls, 2 * NQ);
    for (unsigned q = 0; q < NQ; q++) {
        assert_false(t->m.db_mapped[q]);
        assert_int_equal(t->m.db_gpa[q], t->notify + 4u * q);
    }
    uint64_t gpa;
    assert_int_equal(virtio_pci_doorbell_addr(&t->vp, 0, &gpa), -ENODEV);
    assert_int_equal(virtio_pci_doorbell_addr(&t->vp, NQ, &gpa), -EINVAL);
    uint64_t nb = MMIO64_BASE + 0x100000;
    cfg_wr(PCI_CFG_BAR0, 4, (uint32_t)nb);
    cfg_wr(PCI_CFG_BAR0 + 4, 4, (uint32_t)(nb >> 32));
    assert_int_equal(t->m.doorbell_calls, 2 * NQ);
    cfg_wr(PCI_CFG_COMMAND, 2, PCI_COMMAND_MEMORY);
    for (unsigned q = 0; q < NQ; q++) {
        assert_true(t->m.db_mapped[q]);
        assert_int_equal(t->m.db_gpa[q], nb + VIRTIO_PCI_BAR_NOTIFY + 4u * q);
    }
    /* Moved while decoding: off at the old place, on at the new. */
    cfg_wr(PCI_CFG_BAR0, 4, (uint32_t)(nb + 0x8000));
    assert_int_equal(t->m.doorbell_calls, 5 * NQ);
    assert_int_equal(t->m.db_gpa[1], nb + 0x8000 + VIRTIO_PCI_BAR_NOTIFY + 4);
    assert_int_equal(virtio_pci_doorbell_addr(&t->vp, 2, &gpa), 0);
    assert_int_equal(gpa, nb + 0x8000 + VIRTIO_PCI_BAR_NOTIFY + 8);
    /* The registers answer at the new place. */
    assert_int_equal(rd(nb + 0x8000 + VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
}

/* Kicks that reach the VMM: only for enabled queues after DRIVER_OK, only at a doorbell. */
static void test_notify(void **state)
{
    (void)state;
    assert_true(negotiate(OFFERED | F_V1));
    setup_queue(0, QMAX, VIRTIO_MSI_NO_VECTOR);
    wr(t->notify, 2, 0);
    assert_int_equal(t->dev.notifies[0], 0); /* before DRIVER_OK */
    add_status(ST_DOK);
    wr(t->notify, 2, 0);
    assert_int_equal(t->dev.notifies[0], 1);
    wr(t->notify + 4, 2, 1); /* queue 1 is not enabled */
    assert_int_equal(t->dev.notifies[1], 0);
    wr(t->notify + 1, 1, 0);               /* inside a doorbell, not at it */
    wr(t->notify, 8, 0);                   /* wider than a doorbell */
    wr(t->notify + 4 * NQ, 2, 0);          /* beyond the last queue */
    wr(t->notify + 0xffe, 2, 0);           /* end of the page */
    assert_int_equal(rd(t->notify, 2), 0); /* write-only */
    assert_int_equal(t->dev.notifies[0], 1);
}

/* Accesses a driver must not make change nothing and read harmlessly. */
static void test_bad_accesses(void **state)
{
    (void)state;
    bring_up();
    unsigned msi = t->m.nr_msi;
    /* Wrong widths in the common configuration. */
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_NUMQ, 4), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_NUMQ, 1), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_STATUS, 2), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_DF, 8), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_DESCHI, 8), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE + 1, 1), 0);
    common_wr(VIRTIO_PCI_COMMON_STATUS, 2, 0); /* not a reset */
    common_wr(VIRTIO_PCI_COMMON_STATUS, 4, 0);
    common_wr(VIRTIO_PCI_COMMON_GF, 2, 0); /* not a feature change */
    common_wr(VIRTIO_PCI_COMMON_GF, 8, 0);
    common_wr(VIRTIO_PCI_COMMON_MSIX, 4, 0xffffffff);
    common_wr(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
    common_wr(VIRTIO_PCI_COMMON_NUMQ, 2, 100);  /* read-only */
    common_wr(VIRTIO_PCI_COMMON_Q_NOFF, 2, 7);  /* read-only */
    common_wr(VIRTIO_PCI_COMMON_CFG_LEN, 4, 1); /* reserved */
    common_wr(0xffc, 4, 1);
    assert_int_equal(common_rd(0xffc, 4), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_CFG_LEN, 2), 0);
    assert_int_equal(status(), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_MSIX, 2), 0);
    assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), NQ - 1);

    /* A queue_select beyond num_queues shows an unavailable queue and takes no writes. */
    static const uint16_t sel[] = {NQ, 0x7fff, 0xffff};
    for (unsigned i = 0; i < sizeof(sel) / sizeof(sel[0]); i++) {
        select_queue(sel[i]);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), sel[i]);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
        assert_int_equal(common_rd(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
        common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
        common_wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
        write64_twopart(VIRTIO_PCI_COMMON_Q_DESCLO, desc_gpa(0));
        common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    }
    assert_int_equal(t->dev.queue_enable_calls, NQ);
    assert_false(status() & ST_NR);

    /* MSI-X table: beyond the last entry, unaligned, byte-wide. */
    wr(t->table + 16 * NVEC, 4, 0x1234);
    assert_int_equal(rd(t->table + 16 * NVEC, 4), 0);
    wr(t->table + 0xffc, 4, 0);
    wr(t->table + 2, 4, 0);
    wr(t->table + 12, 1, 1);
    assert_int_equal(rd(t->table, 4), (uint32_t)MSI_ADDR(0));
    assert_int_equal(rd(t->table + 1, 4), 0);
    assert_int_equal(rd(t->table + 12, 4), 0);
    assert_int_equal(rd(t->pba + 8, 8), 0);
    assert_int_equal(rd(t->pba + 1, 4), 0);
    assert_int_equal(rd(t->pba, 2), 0);
    /* The unused pages and the ends of the BAR. */
    assert_int_equal(rd(t->bar + 0x6000, 4), 0);
    wr(t->bar + 0x6000, 4, 1);
    assert_int_equal(rd(t->bar + VIRTIO_PCI_BAR_SIZE - 8, 8), 0);
    wr(t->bar + VIRTIO_PCI_BAR_SIZE - 1, 1, 0xff);
    /* Nothing changed, nothing was sent. */
    assert_int_equal(status(), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
    assert_int_equal(t->m.nr_msi, msi);
    for (unsigned q = 0; q < NQ; q++)
        assert_true(t->m.direct[q]);
    /* Bad queue numbers from the device side. */
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, NQ), -EINVAL);
    assert_int_equal(virtio_pci_queue_interrupt(&t->vp, 0xffff), -EINVAL);
}

/* Random guest accesses anywhere in BAR 0 and configuration space: never a crash, and the
 * invariants the rest of the code relies on still hold. */
static void test_fuzz(void **state)
{
    (void)state;
    static const unsigned sizes[] = {1, 2, 4, 8};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    uint64_t bar = t->bar;
    for (unsigned i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned size = sizes[x & 3];
        uint64_t val = x >> 8;
        /* Mostly the interesting registers: common cfg and the MSI-X table. */
        uint64_t off;
        switch ((x >> 2) & 7) {
        case 0:
        case 1:
        case 2:
            off = (x >> 5) % 0x40;
            break;
        case 3:
            off = VIRTIO_PCI_BAR_MSIX_TABLE + (x >> 5) % (16 * NVEC + 16);
            break;
        case 4: {
            /* Configuration space after BAR 1, so that BAR 0 and COMMAND stay as they
             * are and the test's addresses remain valid. */
            unsigned reg = PCI_CFG_BAR0 + 8 + (unsigned)((x >> 5) % (0xfc - PCI_CFG_BAR0 - 8));
            uint64_t v;
            if (val & 1)
                bus_write(&t->mmio, ecam(reg), size > 4 ? 4 : size, val >> 1);
            else
                bus_read(&t->mmio, ecam(reg), size > 4 ? 4 : size, &v);
            continue;
        }
        case 5:
            virtio_pci_queue_interrupt(&t->vp, (uint16_t)((x >> 5) % (NQ + 1)));
            continue;
        default:
            off = (x >> 5) % VIRTIO_PCI_BAR_SIZE;
            break;
        }
        if (off + size > VIRTIO_PCI_BAR_SIZE)
            off = VIRTIO_PCI_BAR_SIZE - size;
        uint64_t v;
        if (val & 1)
            bus_write(&t->mmio, bar + off, size, val >> 1);
        else
            bus_read(&t->mmio, bar + off, size, &v);
    }
    for (unsigned q = 0; q < NQ; q++) {
        uint16_t vec = t->vp.queues[q].vector;
        assert_true(vec < NVEC || vec == VIRTIO_MSI_NO_VECTOR);
        assert_int_equal(t->vp.queues[q].max_size, QMAX);
    }
    assert_true(t->vp.config_vector < NVEC || t->vp.config_vector == VIRTIO_MSI_NO_VECTOR);
    assert_int_equal(t->vp.pba[0] >> NVEC, 0);
    assert_int_equal(cfg_rd(PCI_CFG_VENDOR_ID, 2), VIRTIO_PCI_VENDOR_ID);
    assert_int_equal(cfg_rd(t->cap_msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE, NVEC - 1);
    /* A reset still brings the device up. */
    msix_ctl(0);
    for (unsigned v = 0; v < NVEC; v++)
        table_wr(v, PCI_MSIX_ENTRY_CTRL, 1);
    t->dev.queue_enable_ret = t->dev.start_ret = t->dev.features_ok_ret = 0;
    bring_up();
}

struct storm {
    struct virtio_pci *vp;
    unsigned n;
};

static void *storm_thread(void *arg)
{
    struct storm *s = arg;
    for (unsigned i = 0; i < s->n; i++)
        virtio_pci_queue_interrupt(s->vp, 0);
    return NULL;
}

/* A device thread signalling while a vCPU masks and unmasks the vector: once unmasked at
 * the end, nothing is left pending (no interrupt lost in a masked window). */
static void test_mask_race(void **state)
{
    (void)state;
    bring_up();
    struct storm s = {.vp = &t->vp, .n = 200000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, storm_thread, &s), 0);
    for (unsigned i = 0; i < 20000; i++) {
        table_wr(1, PCI_MSIX_ENTRY_CTRL, 1);
        table_wr(1, PCI_MSIX_ENTRY_CTRL, 0);
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(pba(), 0);
    assert_true(t->m.nr_msi > 0 && t->m.nr_msi <= s.n);
    assert_true(t->m.direct[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_capabilities, env_setup, env_teardown),
        cmocka_unit_test(test_no_device_config),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test_setup_teardown(test_linux_probe, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_features, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_features_frozen, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_queue_size, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_queue_addr_locked_when_enabled, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_queue_enable_refused, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_reset_clears, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_reset_pending, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_status_protocol, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_device_needs_reset, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_vectors, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_msix_mask_pending, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_msix_function_mask, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_msix_irqfd_routes, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_isr, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_device_config, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_pci_cfg_window, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_doorbells_follow_bar, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_notify, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_bad_accesses, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_mask_race, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
