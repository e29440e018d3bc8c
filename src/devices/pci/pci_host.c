/* SPDX-License-Identifier: BSD-2-Clause */
#include "devices/pci/pci_host.h"

#include "core/checked.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

/* Register offset bits in a conf1 address (dword-aligned, first 256 bytes only). */
#define CONF1_REG_MASK 0xfcu
/* Bits of the conf1 address register that are stored; bits 30:24 and 1:0 read as zero
 * (PCI 3.0 3.2.2.3.2). */
#define CONF1_ADDR_MASK 0x80fffffcu
/* Offset of the data port from the address register. */
#define CONF1_DATA 4u

static uint64_t ones(unsigned size)
{
    return size >= 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

/* The device a configuration access names, or NULL when nothing answers it. Only
 * function 0 of the root bus is populated. Caller holds h->lock. */
static struct pci_device *cfg_target(struct pci_host *h, unsigned bus_index, unsigned slot,
                                     unsigned fn)
{
    if (bus_index != 0 || slot >= PCI_HOST_SLOTS || fn != 0)
        return NULL;
    return h->slots[slot];
}

/* Whether [addr, addr + size) lies in the window (and the window exists). */
static bool in_window(const struct pci_host_window *w, uint64_t addr, uint64_t size)
{
    return w->size != 0 && range_within(addr, size, w->base, w->size);
}

/* Rebuild the table of decoding BARs from the devices' COMMAND and BAR registers, and tell
 * devices whose BARs started, stopped or moved. A BAR decodes when its space is enabled and
 * it lies entirely inside a window of its kind: anything outside the windows can never reach
 * the host, and a half-sized BAR (all-ones during sizing) must not shadow a real one.
 * Caller holds h->lock. */
static void refresh_decode_locked(struct pci_host *h)
{
    h->nr_decode = 0;
    for (unsigned s = 0; s < PCI_HOST_SLOTS; s++) {
        struct pci_device *dev = h->slots[s];
        if (dev == NULL)
            continue;
        uint32_t cmd = pci_device_get(dev, PCI_CFG_COMMAND, 2);
        for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
            const struct pci_bar *bar = &dev->bars[i];
            uint64_t addr;
            if (pci_device_bar_address(dev, i, &addr) != 0)
                continue;
            bool io = bar->type == PCI_BAR_IO;
            bool on;
            if (io)
                on = (cmd & PCI_COMMAND_IO) && in_window(&h->io, addr, bar->size);
            else
                on = (cmd & PCI_COMMAND_MEMORY) && (in_window(&h->mmio32, addr, bar->size) ||
                                                    in_window(&h->mmio64, addr, bar->size));
            if (on) {
                h->decode[h->nr_decode++] = (struct pci_host_decode){.base = addr,
                                                                     .size = bar->size,
                                                                     .io = io,
                                                                     .ops = bar->ops,
                                                                     .opaque = bar->opaque};
            }

            struct pci_host_bar_state *st = &h->bar_state[s][i];
            if (on == st->decoding && (!on || addr == st->addr))
                continue;
            st->decoding = on;
            if (on)
                st->addr = addr;
            log_debug("pci %02x.0 %s: BAR%u %s %#llx", s, dev->name, i,
                      on ? "decodes at" : "stopped decoding at", (unsigned long long)st->addr);
            if (dev->hooks != NULL && dev->hooks->bar_map != NULL)
                dev->hooks->bar_map(dev->hooks_opaque, dev, i, on, st->addr);
        }
    }
}

/* One configuration read of 1..4 bytes that stays inside one function. Caller holds the lock. */
static uint32_t cfg_read_locked(struct pci_host *h, unsigned bus_index, unsigned slot, unsigned fn,
                                unsigned reg, unsigned size)
{
    struct pci_device *dev = cfg_target(h, bus_index, slot, fn);
    if (dev == NULL)
        return (uint32_t)ones(size);
    return pci_device_config_read(dev, reg, size);
}

/* One configuration write of 1..4 bytes that stays inside one function. Caller holds the
 * lock. */
static void cfg_write_locked(struct pci_host *h, unsigned bus_index, unsigned slot, unsigned fn,
                             unsigned reg, unsigned size, uint32_t value)
{
    struct pci_device *dev = cfg_target(h, bus_index, slot, fn);
    if (dev == NULL)
        return;
    pci_device_config_write(dev, reg, size, value);
    /* COMMAND (enable bits) or a BAR changed: what decodes where may have changed. */
    unsigned end = reg + size;
    if ((reg < PCI_CFG_COMMAND + 2 && end > PCI_CFG_COMMAND) ||
        (reg < PCI_CFG_BAR0 + 4 * PCI_NUM_BARS && end > PCI_CFG_BAR0))
        refresh_decode_locked(h);
}

/* ---- ECAM ---- */

/* Splits an access into pieces of at most 4 bytes that do not cross a function's 4 KiB
 * (an 8-byte access becomes two dwords; an unaligned one that crosses into the next
 * function reaches both). */
static uint64_t ecam_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_host *h = opaque;
    uint64_t v = 0;
    os_mutex_lock(&h->lock);
    for (unsigned done = 0; done < size && done < 8;) {
        uint64_t o = offset + done; /* offset + size <= ECAM length: cannot wrap */
        unsigned reg = (unsigned)(o & (PCI_CFG_SPACE_SIZE - 1));
        unsigned chunk = size - done;
        if (chunk > 4)
            chunk = 4;
        if (chunk > PCI_CFG_SPACE_SIZE - reg)
            chunk = PCI_CFG_SPACE_SIZE - reg;
        uint32_t part = cfg_read_locked(h, (unsigned)(o >> 20), (unsigned)(o >> 15) & 31u,
                                        (unsigned)(o >> 12) & 7u, reg, chunk);
        v |= (uint64_t)part << (8 * done);
        done += chunk;
    }
    os_mutex_unlock(&h->lock);
    return v;
}

static void ecam_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_host *h = opaque;
    os_mutex_lock(&h->lock);
    for (unsigned done = 0; done < size && done < 8;) {
        uint64_t o = offset + done;
        unsigned reg = (unsigned)(o & (PCI_CFG_SPACE_SIZE - 1));
        unsigned chunk = size - done;
        if (chunk > 4)
            chunk = 4;
        if (chunk > PCI_CFG_SPACE_SIZE - reg)
            chunk = PCI_CFG_SPACE_SIZE - reg;
        cfg_write_locked(h, (unsigned)(o >> 20), (unsigned)(o >> 15) & 31u,
                         (unsigned)(o >> 12) & 7u, reg, chunk, (uint32_t)(value >> (8 * done)));
        done += chunk;
    }
    os_mutex_unlock(&h->lock);
}

static const struct bus_ops ecam_ops = {.read = ecam_read, .write = ecam_write};

/* ---- Configuration mechanism #1 ---- */

/* Decode the conf1 address register for a data-port access at byte @p k of the data dword.
 * Returns false when the register is disabled or names another bus. */
static bool conf1_decode(const struct pci_host *h, unsigned k, unsigned *slot, unsigned *fn,
                         unsigned *reg)
{
    uint32_t a = h->conf1_addr;
    if (!(a & PCI_CONF1_ENABLE) || ((a >> 16) & 0xffu) != h->cfg.bus_first)
        return false;
    *slot = (a >> 11) & 31u;
    *fn = (a >> 8) & 7u;
    *reg = (a & CONF1_REG_MASK) + k;
    return true;
}

static uint64_t conf1_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_host *h = opaque;
    uint64_t v = ones(size);
    os_mutex_lock(&h->lock);
    if (offset == 0 && size == 4) {
        v = h->conf1_addr;
    } else if (offset >= CONF1_DATA && size <= 4 && offset - CONF1_DATA + size <= 4) {
        unsigned slot, fn, reg;
        if (conf1_decode(h, (unsigned)(offset - CONF1_DATA), &slot, &fn, &reg))
            v = cfg_read_locked(h, 0, slot, fn, reg, size);
    }
    /* Anything else (partial access to the address register, e.g. the reset control
     * register at 0xcf9 on some chipsets, or a dword straddling both) is not ours. */
    os_mutex_unlock(&h->lock);
    return v;
}

static void conf1_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_host *h = opaque;
    os_mutex_lock(&h->lock);
    if (offset == 0 && size == 4) {
        /* Only a dword write loads the address: byte writes to 0xcf9 are a reset control
         * register on PC chipsets, not part of the address. */
        h->conf1_addr = (uint32_t)value & CONF1_ADDR_MASK;
    } else if (offset >= CONF1_DATA && size <= 4 && offset - CONF1_DATA + size <= 4) {
        unsigned slot, fn, reg;
        if (conf1_decode(h, (unsigned)(offset - CONF1_DATA), &slot, &fn, &reg))
            cfg_write_locked(h, 0, slot, fn, reg, size, (uint32_t)value);
    }
    os_mutex_unlock(&h->lock);
}

static const struct bus_ops conf1_ops = {.read = conf1_read, .write = conf1_write};

/* ---- BAR windows ---- */

/* Find the BAR that decodes [addr, addr + size) in the window's space; copies what the call
 * needs so that it can be made without the lock. */
static bool window_lookup(struct pci_host_window *w, uint64_t offset, unsigned size,
                          const struct bus_ops **ops, void **dev_opaque, uint64_t *bar_offset)
{
    struct pci_host *h = w->host;
    uint64_t addr = w->base + offset; /* inside the registered window: cannot wrap */
    bool found = false;
    os_mutex_lock(&h->lock);
    for (unsigned i = 0; i < h->nr_decode; i++) {
        const struct pci_host_decode *d = &h->decode[i];
        if (d->io == w->io && range_within(addr, size, d->base, d->size)) {
            *ops = d->ops;
            *dev_opaque = d->opaque;
            *bar_offset = addr - d->base;
            found = true;
            break;
        }
    }
    os_mutex_unlock(&h->lock);
    return found;
}

static uint64_t window_read(void *opaque, uint64_t offset, unsigned size)
{
    const struct bus_ops *ops;
    void *dev_opaque;
    uint64_t off;
    if (!window_lookup(opaque, offset, size, &ops, &dev_opaque, &off) || ops->read == NULL)
        return ones(size);
    return ops->read(dev_opaque, off, size);
}

static void window_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    const struct bus_ops *ops;
    void *dev_opaque;
    uint64_t off;
    if (!window_lookup(opaque, offset, size, &ops, &dev_opaque, &off) || ops->write == NULL)
        return;
    ops->write(dev_opaque, off, size, value);
}

static const struct bus_ops window_ops = {.read = window_read, .write = window_write};

/* ---- Life cycle ---- */

static int register_window(struct pci_host_window *w, struct bus *bus, const char *name)
{
    if (w->size == 0)
        return 0;
    int ret = bus_register(bus, w->base, w->size, &window_ops, w, name);
    if (ret < 0) {
        log_error("pci: cannot register %s window [%#llx, +%#llx): %d", name,
                  (unsigned long long)w->base, (unsigned long long)w->size, ret);
        return ret;
    }
    w->registered = true;
    return 0;
}

static void unregister_all(struct pci_host *h)
{
    if (h->io.registered)
        bus_unregister(h->pio, h->io.base, &h->io);
    if (h->mmio64.registered)
        bus_unregister(h->mmio, h->mmio64.base, &h->mmio64);
    if (h->mmio32.registered)
        bus_unregister(h->mmio, h->mmio32.base, &h->mmio32);
    if (h->conf1_registered)
        bus_unregister(h->pio, PCI_CONF1_PORT, h);
    if (h->ecam_registered)
        bus_unregister(h->mmio, h->cfg.ecam_base, h);
    h->io.registered = h->mmio64.registered = h->mmio32.registered = false;
    h->conf1_registered = h->ecam_registered = false;
}

static bool config_valid(const struct pci_host_config *cfg, bool have_pio, uint64_t *ecam_size)
{
    uint64_t end;
    if (cfg->bus_last < cfg->bus_first)
        return false;
    *ecam_size = ((uint64_t)cfg->bus_last - cfg->bus_first + 1) * PCI_ECAM_BUS_SIZE;
    if (checked_add_u64(cfg->ecam_base, *ecam_size, &end) || (cfg->ecam_base & 0xfffff) != 0)
        return false;
    if (cfg->mmio32_size == 0 || !range_within(cfg->mmio32_base, cfg->mmio32_size, 0, 1ULL << 32))
        return false;
    if (cfg->mmio64_size != 0 && checked_add_u64(cfg->mmio64_base, cfg->mmio64_size, &end))
        return false;
    if (have_pio && cfg->io_size != 0 && !range_within(cfg->io_base, cfg->io_size, 0, 1ULL << 32))
        return false;
    return true;
}

int pci_host_init(struct pci_host *h, const struct pci_host_config *cfg, struct bus *mmio,
                  struct bus *pio)
{
    uint64_t ecam_size;
    memset(h, 0, sizeof(*h));
    if (mmio == NULL || !config_valid(cfg, pio != NULL, &ecam_size)) {
        log_error("pci: invalid host configuration");
        return -EINVAL;
    }
    h->cfg = *cfg;
    h->mmio = mmio;
    h->pio = pio;
    h->mmio32 = (struct pci_host_window){
        .host = h, .base = cfg->mmio32_base, .size = cfg->mmio32_size, .next = cfg->mmio32_base};
    h->mmio64 = (struct pci_host_window){
        .host = h, .base = cfg->mmio64_base, .size = cfg->mmio64_size, .next = cfg->mmio64_base};
    h->io = (struct pci_host_window){.host = h,
                                     .base = cfg->io_base,
                                     .size = pio != NULL ? cfg->io_size : 0,
                                     .io = true,
                                     .next = cfg->io_base};

    int ret = os_mutex_init(&h->lock);
    if (ret < 0)
        return ret;

    const struct pci_device_info bridge = {.vendor_id = PCI_HOST_BRIDGE_VENDOR,
                                           .device_id = PCI_HOST_BRIDGE_DEVICE,
                                           .class_code = PCI_HOST_BRIDGE_CLASS,
                                           .name = "host-bridge"};
    ret = pci_device_init(&h->bridge, &bridge);
    if (ret < 0) {
        os_mutex_destroy(&h->lock);
        return ret;
    }
    h->bridge.slot = 0;
    h->slots[0] = &h->bridge;

    ret = bus_register(mmio, cfg->ecam_base, ecam_size, &ecam_ops, h, "pci-ecam");
    if (ret < 0) {
        log_error("pci: cannot register ECAM at %#llx: %d", (unsigned long long)cfg->ecam_base,
                  ret);
        goto fail;
    }
    h->ecam_registered = true;
    if (pio != NULL) {
        ret = bus_register(pio, PCI_CONF1_PORT, PCI_CONF1_LEN, &conf1_ops, h, "pci-conf1");
        if (ret < 0) {
            log_error("pci: cannot register conf1 ports: %d", ret);
            goto fail;
        }
        h->conf1_registered = true;
    }
    ret = register_window(&h->mmio32, mmio, "pci-mmio32");
    if (ret == 0)
        ret = register_window(&h->mmio64, mmio, "pci-mmio64");
    if (ret == 0 && pio != NULL)
        ret = register_window(&h->io, pio, "pci-io");
    if (ret < 0)
        goto fail;
    return 0;

fail:
    unregister_all(h);
    pci_device_destroy(&h->bridge);
    os_mutex_destroy(&h->lock);
    return ret;
}

void pci_host_destroy(struct pci_host *h)
{
    unregister_all(h);
    for (unsigned s = 1; s < PCI_HOST_SLOTS; s++) {
        if (h->slots[s] != NULL) {
            h->slots[s]->slot = -1;
            h->slots[s] = NULL;
        }
    }
    h->slots[0] = NULL;
    pci_device_destroy(&h->bridge);
    os_mutex_destroy(&h->lock);
}

/* Assign addresses to the device's BARs, biggest first so that natural alignment wastes
 * little, from copies of the window cursors; the cursors move only if every BAR fits. */
static int allocate_bars(struct pci_host *h, struct pci_device *dev, uint64_t addrs[PCI_NUM_BARS])
{
    uint64_t next32 = h->mmio32.next, next64 = h->mmio64.next, next_io = h->io.next;
    bool done[PCI_NUM_BARS] = {false};

    for (;;) {
        int pick = -1;
        for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
            enum pci_bar_type t = dev->bars[i].type;
            if (done[i] || (t != PCI_BAR_IO && t != PCI_BAR_MEM32 && t != PCI_BAR_MEM64))
                continue;
            if (pick < 0 || dev->bars[i].size > dev->bars[pick].size)
                pick = (int)i;
        }
        if (pick < 0)
            break;
        const struct pci_bar *bar = &dev->bars[pick];
        done[pick] = true;

        const struct pci_host_window *w;
        uint64_t *cursor;
        if (bar->type == PCI_BAR_IO) {
            w = &h->io;
            cursor = &next_io;
        } else if (bar->type == PCI_BAR_MEM64 && h->mmio64.size != 0) {
            w = &h->mmio64;
            cursor = &next64;
        } else {
            w = &h->mmio32;
            cursor = &next32;
        }
        uint64_t addr;
        if (checked_align_up(*cursor, bar->size, &addr) || !in_window(w, addr, bar->size)) {
            log_error("pci %s: no room for BAR%d (%#llx bytes) in the %s window", dev->name, pick,
                      (unsigned long long)bar->size,
                      bar->type == PCI_BAR_IO ? "I/O"
                      : w == &h->mmio64       ? "64-bit memory"
                                              : "32-bit memory");
            return -ENOSPC;
        }
        addrs[pick] = addr;
        *cursor = addr + bar->size; /* in_window() proved this does not wrap */
    }
    h->mmio32.next = next32;
    h->mmio64.next = next64;
    h->io.next = next_io;
    return 0;
}

int pci_host_add_device(struct pci_host *h, struct pci_device *dev, int slot)
{
    if (dev == NULL || slot < -1 || slot >= (int)PCI_HOST_SLOTS)
        return -EINVAL;

    int ret = 0;
    os_mutex_lock(&h->lock);
    if (dev->slot >= 0) {
        ret = -EINVAL;
        goto out;
    }
    if (slot < 0) {
        for (unsigned s = 1; s < PCI_HOST_SLOTS && slot < 0; s++) {
            if (h->slots[s] == NULL)
                slot = (int)s;
        }
        if (slot < 0) {
            ret = -EBUSY;
            goto out;
        }
    } else if (h->slots[slot] != NULL) {
        ret = -EBUSY;
        goto out;
    }

    uint64_t addrs[PCI_NUM_BARS] = {0};
    ret = allocate_bars(h, dev, addrs);
    if (ret < 0)
        goto out;

    uint32_t cmd = pci_device_get(dev, PCI_CFG_COMMAND, 2);
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        enum pci_bar_type t = dev->bars[i].type;
        if (t != PCI_BAR_IO && t != PCI_BAR_MEM32 && t != PCI_BAR_MEM64)
            continue;
        ret = pci_device_set_bar_address(dev, i, addrs[i]);
        if (ret < 0)
            goto out; /* cannot happen: allocate_bars() aligned it inside its window */
        cmd |= t == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
    }

    unsigned pin = pci_device_get(dev, PCI_CFG_INT_PIN, 1);
    uint8_t line = 0xff; /* "unknown / not connected" */
    if (pin != 0 && h->cfg.route_intx != NULL) {
        uint32_t gsi = h->cfg.route_intx(h->cfg.irq_ctx, (unsigned)slot, pin - 1);
        os_mutex_lock(&dev->lock);
        dev->intx = (struct irq_line){.set = h->cfg.set_irq, .ctx = h->cfg.irq_ctx, .gsi = gsi};
        os_mutex_unlock(&dev->lock);
        if (gsi < 0xff)
            line = (uint8_t)gsi;
        log_debug("pci %02x.0 %s: INT%c -> GSI %u", (unsigned)slot, dev->name, 'A' + (int)pin - 1,
                  gsi);
    }
    pci_device_set(dev, PCI_CFG_INT_LINE, 1, line);
    pci_device_set(dev, PCI_CFG_COMMAND, 2, cmd);

    os_mutex_lock(&dev->lock);
    dev->slot = slot;
    os_mutex_unlock(&dev->lock);
    h->slots[slot] = dev;
    memset(h->bar_state[slot], 0, sizeof(h->bar_state[slot]));
    refresh_decode_locked(h);
    log_info("pci %02x.0: %s (%04x:%04x)", (unsigned)slot, dev->name,
             pci_device_get(dev, PCI_CFG_VENDOR_ID, 2), pci_device_get(dev, PCI_CFG_DEVICE_ID, 2));
out:
    os_mutex_unlock(&h->lock);
    return ret;
}

struct pci_device *pci_host_device(struct pci_host *h, unsigned slot)
{
    if (slot >= PCI_HOST_SLOTS)
        return NULL;
    os_mutex_lock(&h->lock);
    struct pci_device *dev = h->slots[slot];
    os_mutex_unlock(&h->lock);
    return dev;
}
