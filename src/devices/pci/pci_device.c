/* SPDX-License-Identifier: BSD-2-Clause */
#include "devices/pci/pci_device.h"

#include "core/log.h"

#include <errno.h>
#include <string.h>

/* Whether [offset, offset + size) is a valid 1..4 byte access of the configuration space.
 * Written so that no sum of guest-controlled values can wrap. */
static bool cfg_access_ok(unsigned offset, unsigned size)
{
    return size >= 1 && size <= 4 && offset < PCI_CFG_SPACE_SIZE &&
           size <= PCI_CFG_SPACE_SIZE - offset;
}

static uint32_t get_bytes(const uint8_t *a, unsigned offset, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)a[offset + i] << (8 * i);
    return v;
}

static void put_bytes(uint8_t *a, unsigned offset, unsigned size, uint32_t v)
{
    for (unsigned i = 0; i < size; i++)
        a[offset + i] = (uint8_t)(v >> (8 * i));
}

static uint32_t all_ones(unsigned size)
{
    return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
}

/* Recompute STATUS.Interrupt and the level driven on the wired line; caller holds the lock.
 * The line follows the pin unless COMMAND.INTx-disable is set (PCI 3.0 6.2.2). */
static void update_intx_locked(struct pci_device *dev)
{
    uint16_t cmd = (uint16_t)get_bytes(dev->cfg, PCI_CFG_COMMAND, 2);
    uint16_t status = (uint16_t)get_bytes(dev->cfg, PCI_CFG_STATUS, 2);
    if (dev->intx_level)
        status |= PCI_STATUS_INTERRUPT;
    else
        status &= (uint16_t)~PCI_STATUS_INTERRUPT;
    put_bytes(dev->cfg, PCI_CFG_STATUS, 2, status);

    bool out = dev->intx_level && !(cmd & PCI_COMMAND_INTX_DISABLE);
    if (out != dev->intx_out) {
        dev->intx_out = out;
        irq_line_set(&dev->intx, out);
    }
}

int pci_device_init(struct pci_device *dev, const struct pci_device_info *info)
{
    if (info->vendor_id == PCI_VENDOR_ID_NONE || info->intx_pin > 4 || info->class_code > 0xffffffu)
        return -EINVAL;

    memset(dev, 0, sizeof(*dev));
    dev->slot = -1;
    dev->name = info->name != NULL ? info->name : "pci";
    dev->cap_end = PCI_CFG_CAP_START;

    put_bytes(dev->cfg, PCI_CFG_VENDOR_ID, 2, info->vendor_id);
    put_bytes(dev->cfg, PCI_CFG_DEVICE_ID, 2, info->device_id);
    dev->cfg[PCI_CFG_REVISION] = info->revision;
    put_bytes(dev->cfg, PCI_CFG_CLASS_PROG, 3, info->class_code);
    dev->cfg[PCI_CFG_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
    put_bytes(dev->cfg, PCI_CFG_SUBSYS_VENDOR, 2, info->subsys_vendor_id);
    put_bytes(dev->cfg, PCI_CFG_SUBSYS_ID, 2, info->subsys_id);
    dev->cfg[PCI_CFG_INT_PIN] = info->intx_pin;

    put_bytes(dev->wmask, PCI_CFG_COMMAND, 2, PCI_COMMAND_WRITABLE);
    put_bytes(dev->w1c, PCI_CFG_STATUS, 2, PCI_STATUS_W1C);
    /* Cache line size is read-write by definition; it has no effect on an emulated device. */
    dev->wmask[PCI_CFG_CACHE_LINE] = 0xff;
    /* Interrupt line is scratch storage for the OS. */
    dev->wmask[PCI_CFG_INT_LINE] = 0xff;

    return os_mutex_init(&dev->lock);
}

void pci_device_destroy(struct pci_device *dev)
{
    os_mutex_destroy(&dev->lock);
}

static bool pow2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

int pci_device_set_bar(struct pci_device *dev, unsigned index, enum pci_bar_type type,
                       uint64_t size, bool prefetchable, const struct bus_ops *ops, void *opaque)
{
    if (index >= PCI_NUM_BARS || ops == NULL || !pow2(size))
        return -EINVAL;
    switch (type) {
    case PCI_BAR_IO:
        /* PCI 3.0 6.2.5.1: an I/O BAR decodes at most 256 bytes. */
        if (size < 4 || size > 256 || prefetchable)
            return -EINVAL;
        break;
    case PCI_BAR_MEM32:
        if (size < 16 || size > 0x80000000ULL)
            return -EINVAL;
        break;
    case PCI_BAR_MEM64:
        if (size < 16 || index + 1 >= PCI_NUM_BARS)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }

    int ret = 0;
    os_mutex_lock(&dev->lock);
    if (dev->slot >= 0 || dev->bars[index].type != PCI_BAR_UNUSED ||
        (type == PCI_BAR_MEM64 && dev->bars[index + 1].type != PCI_BAR_UNUSED)) {
        ret = -EBUSY;
        goto out;
    }

    unsigned reg = PCI_CFG_BAR0 + 4 * index;
    uint64_t addr_mask = ~(size - 1);
    uint32_t flags;
    uint32_t low_mask;
    if (type == PCI_BAR_IO) {
        flags = PCI_BAR_SPACE_IO;
        low_mask = (uint32_t)addr_mask & ~PCI_BAR_IO_FLAGS;
    } else {
        flags = (type == PCI_BAR_MEM64 ? PCI_BAR_MEM_TYPE_64 : 0) |
                (prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
        low_mask = (uint32_t)addr_mask & ~PCI_BAR_MEM_FLAGS;
    }
    /* The address bits below the size are not in the write mask, so writing all-ones
     * reads back the size mask with the flag bits (PCI 3.0 6.2.5.1). */
    put_bytes(dev->cfg, reg, 4, flags);
    put_bytes(dev->wmask, reg, 4, low_mask);
    dev->bars[index] = (struct pci_bar){
        .type = type, .prefetchable = prefetchable, .size = size, .ops = ops, .opaque = opaque};
    if (type == PCI_BAR_MEM64) {
        put_bytes(dev->cfg, reg + 4, 4, 0);
        put_bytes(dev->wmask, reg + 4, 4, (uint32_t)(addr_mask >> 32));
        dev->bars[index + 1] = (struct pci_bar){.type = PCI_BAR_MEM64_HIGH};
    }
out:
    os_mutex_unlock(&dev->lock);
    return ret;
}

int pci_device_add_capability(struct pci_device *dev, uint8_t id, unsigned len)
{
    if (len < 2 || len > PCI_CFG_SPACE_LEGACY - PCI_CFG_CAP_START)
        return -EINVAL;

    int ret;
    os_mutex_lock(&dev->lock);
    /* The low two bits of every capability pointer are reserved: dword-align. */
    unsigned off = (dev->cap_end + 3u) & ~3u;
    if (dev->slot >= 0) {
        ret = -EBUSY;
    } else if (dev->nr_caps >= PCI_MAX_CAPS || off > PCI_CFG_SPACE_LEGACY ||
               len > PCI_CFG_SPACE_LEGACY - off) {
        ret = -ENOSPC;
    } else {
        memset(&dev->cfg[off], 0, len);
        memset(&dev->wmask[off], 0, len);
        memset(&dev->w1c[off], 0, len);
        dev->cfg[off] = id;
        dev->cfg[off + 1] = 0;
        if (dev->nr_caps == 0) {
            dev->cfg[PCI_CFG_CAP_PTR] = (uint8_t)off;
            uint16_t status = (uint16_t)get_bytes(dev->cfg, PCI_CFG_STATUS, 2);
            put_bytes(dev->cfg, PCI_CFG_STATUS, 2, status | PCI_STATUS_CAP_LIST);
        } else {
            dev->cfg[dev->caps[dev->nr_caps - 1].offset + 1u] = (uint8_t)off;
        }
        dev->caps[dev->nr_caps++] = (struct pci_cap){.offset = (uint8_t)off, .len = (uint8_t)len};
        dev->cap_end = off + len;
        ret = (int)off;
    }
    os_mutex_unlock(&dev->lock);
    return ret;
}

void pci_device_set_hooks(struct pci_device *dev, const struct pci_device_hooks *hooks,
                          void *opaque)
{
    dev->hooks = hooks;
    dev->hooks_opaque = opaque;
}

uint32_t pci_device_get(struct pci_device *dev, unsigned offset, unsigned size)
{
    if (!cfg_access_ok(offset, size))
        return all_ones(size > 4 ? 4 : size);
    os_mutex_lock(&dev->lock);
    uint32_t v = get_bytes(dev->cfg, offset, size);
    os_mutex_unlock(&dev->lock);
    return v;
}

static bool overlaps(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
    return a < b + blen && b < a + alen;
}

void pci_device_set(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value)
{
    if (!cfg_access_ok(offset, size))
        return;
    os_mutex_lock(&dev->lock);
    put_bytes(dev->cfg, offset, size, value);
    if (overlaps(offset, size, PCI_CFG_COMMAND, 4))
        update_intx_locked(dev);
    os_mutex_unlock(&dev->lock);
}

void pci_device_set_wmask(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask)
{
    if (!cfg_access_ok(offset, size))
        return;
    os_mutex_lock(&dev->lock);
    put_bytes(dev->wmask, offset, size, mask);
    os_mutex_unlock(&dev->lock);
}

void pci_device_set_w1c(struct pci_device *dev, unsigned offset, unsigned size, uint32_t mask)
{
    if (!cfg_access_ok(offset, size))
        return;
    os_mutex_lock(&dev->lock);
    put_bytes(dev->w1c, offset, size, mask);
    os_mutex_unlock(&dev->lock);
}

/* Sub-range of bytes [offset, offset + size) selected by [start, end), as a value. */
static uint32_t sub_bytes(const uint8_t *bytes, unsigned offset, unsigned start, unsigned end)
{
    uint32_t v = 0;
    for (unsigned i = start; i < end; i++)
        v |= (uint32_t)bytes[i - offset] << (8 * (i - start));
    return v;
}

uint32_t pci_device_config_read(struct pci_device *dev, unsigned offset, unsigned size)
{
    if (!cfg_access_ok(offset, size))
        return all_ones(size > 4 ? 4 : size);

    uint8_t bytes[4];
    os_mutex_lock(&dev->lock);
    memcpy(bytes, &dev->cfg[offset], size);
    os_mutex_unlock(&dev->lock);

    if (dev->hooks != NULL && dev->hooks->cap_read != NULL) {
        for (unsigned c = 0; c < dev->nr_caps; c++) {
            unsigned cs = dev->caps[c].offset, ce = cs + dev->caps[c].len;
            unsigned start = offset > cs ? offset : cs;
            unsigned end = offset + size < ce ? offset + size : ce;
            if (start >= end)
                continue;
            uint32_t v = dev->hooks->cap_read(dev->hooks_opaque, dev, cs, start, end - start,
                                              sub_bytes(bytes, offset, start, end));
            for (unsigned i = start; i < end; i++)
                bytes[i - offset] = (uint8_t)(v >> (8 * (i - start)));
        }
    }
    return get_bytes(bytes, 0, size);
}

void pci_device_config_write(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value)
{
    if (!cfg_access_ok(offset, size))
        return;

    uint8_t old[4], now[4];
    os_mutex_lock(&dev->lock);
    for (unsigned i = 0; i < size; i++) {
        unsigned o = offset + i;
        uint8_t b = (uint8_t)(value >> (8 * i));
        old[i] = dev->cfg[o];
        uint8_t v = (uint8_t)((old[i] & ~dev->wmask[o]) | (b & dev->wmask[o]));
        v &= (uint8_t) ~(b & dev->w1c[o]);
        dev->cfg[o] = v;
        now[i] = v;
    }
    if (overlaps(offset, size, PCI_CFG_COMMAND, 4))
        update_intx_locked(dev);
    os_mutex_unlock(&dev->lock);

    if (dev->hooks == NULL || dev->hooks->cap_write == NULL)
        return;
    for (unsigned c = 0; c < dev->nr_caps; c++) {
        unsigned cs = dev->caps[c].offset, ce = cs + dev->caps[c].len;
        unsigned start = offset > cs ? offset : cs;
        unsigned end = offset + size < ce ? offset + size : ce;
        if (start >= end)
            continue;
        dev->hooks->cap_write(dev->hooks_opaque, dev, cs, start, end - start,
                              sub_bytes(old, offset, start, end),
                              sub_bytes(now, offset, start, end));
    }
}

int pci_device_bar_address(struct pci_device *dev, unsigned index, uint64_t *addr)
{
    if (index >= PCI_NUM_BARS)
        return -EINVAL;
    int ret = 0;
    unsigned reg = PCI_CFG_BAR0 + 4 * index;
    os_mutex_lock(&dev->lock);
    uint32_t low = get_bytes(dev->cfg, reg, 4);
    switch (dev->bars[index].type) {
    case PCI_BAR_IO:
        *addr = low & ~PCI_BAR_IO_FLAGS;
        break;
    case PCI_BAR_MEM32:
        *addr = low & ~PCI_BAR_MEM_FLAGS;
        break;
    case PCI_BAR_MEM64:
        *addr = (uint64_t)(low & ~PCI_BAR_MEM_FLAGS) | (uint64_t)get_bytes(dev->cfg, reg + 4, 4)
                                                           << 32;
        break;
    default:
        ret = -EINVAL;
        break;
    }
    os_mutex_unlock(&dev->lock);
    return ret;
}

int pci_device_set_bar_address(struct pci_device *dev, unsigned index, uint64_t addr)
{
    if (index >= PCI_NUM_BARS)
        return -EINVAL;
    const struct pci_bar *bar = &dev->bars[index];
    if (bar->type != PCI_BAR_IO && bar->type != PCI_BAR_MEM32 && bar->type != PCI_BAR_MEM64)
        return -EINVAL;
    if ((addr & (bar->size - 1)) != 0 || (bar->type != PCI_BAR_MEM64 && addr > 0xffffffffULL))
        return -EINVAL;

    unsigned reg = PCI_CFG_BAR0 + 4 * index;
    uint32_t flag_mask = bar->type == PCI_BAR_IO ? PCI_BAR_IO_FLAGS : PCI_BAR_MEM_FLAGS;
    os_mutex_lock(&dev->lock);
    uint32_t flags = get_bytes(dev->cfg, reg, 4) & flag_mask;
    put_bytes(dev->cfg, reg, 4, (uint32_t)addr | flags);
    if (bar->type == PCI_BAR_MEM64)
        put_bytes(dev->cfg, reg + 4, 4, (uint32_t)(addr >> 32));
    os_mutex_unlock(&dev->lock);
    log_guest(LOG_DEBUG, "pci %s: BAR%u at %#llx", dev->name, index, (unsigned long long)addr);
    return 0;
}

void pci_device_set_intx(struct pci_device *dev, bool level)
{
    os_mutex_lock(&dev->lock);
    dev->intx_level = level;
    update_intx_locked(dev);
    os_mutex_unlock(&dev->lock);
}
