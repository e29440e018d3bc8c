/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The virtio-over-PCI transport: capabilities, common configuration, notification
 * area, ISR, device-configuration window, MSI-X table and PBA, status and feature
 * negotiation, reset and DEVICE_NEEDS_RESET. Written from virtio 1.2 §4.1 and
 * PCI 3.0 §6.8.2.
 *
 * Every guest value arrives as the argument of a BAR or configuration-space access,
 * is checked there and then used from that local; stored registers are only ever
 * written by the guest through these checks, so for example a queue's vector is
 * always a valid table index or VIRTIO_MSI_NO_VECTOR.
 */
#include "virtio/virtio_pci.h"

#include "core/checked.h"
#include "core/log.h"
#include "virtio/virtio_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The one place the transport's lock is taken, so a lock-free design later changes only
 * these two (and the init/destroy pair). */
static void vp_lock(struct virtio_pci *vp)
{
    os_mutex_lock(&vp->lock);
}

static void vp_unlock(struct virtio_pci *vp)
{
    os_mutex_unlock(&vp->lock);
}

/* Status bits the driver owns; DEVICE_NEEDS_RESET belongs to the device and the two
 * undefined bits are dropped. */
#define DRIVER_STATUS_BITS                                                                         \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |                  \
     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED)

/* Transport features this transport does not implement: offering one would promise the
 * driver register semantics (or, for packed rings, ring layouts) it does not provide. */
#define UNSUPPORTED_FEATURES                                                                       \
    ((UINT64_C(1) << VIRTIO_F_RING_PACKED) | (UINT64_C(1) << VIRTIO_F_SR_IOV) |                    \
     (UINT64_C(1) << VIRTIO_F_NOTIFICATION_DATA) | (UINT64_C(1) << VIRTIO_F_NOTIF_CONFIG_DATA) |   \
     (UINT64_C(1) << VIRTIO_F_RING_RESET))

#define F_VERSION_1 (UINT64_C(1) << VIRTIO_F_VERSION_1)

static bool pow2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

static uint64_t get_le(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* All guest-triggered complaints share one rate limit: a guest can repeat them at will. */
static void protocol_error(const struct virtio_pci *vp, const char *what)
{
    log_guest(LOG_WARN, "virtio-pci %s: %s", vp->name, what);
}

/* ---- MSI-X and interrupts (caller holds the lock) ---- */

static bool pending(const struct virtio_pci *vp, unsigned v)
{
    return (vp->pba[v / 64] >> (v % 64)) & 1;
}

static void set_pending(struct virtio_pci *vp, unsigned v, bool on)
{
    uint64_t bit = UINT64_C(1) << (v % 64);
    if (on)
        vp->pba[v / 64] |= bit;
    else
        vp->pba[v / 64] &= ~bit;
}

/* Whether a message for vector v would leave the function now (PCI 3.0 §6.8.3.4). */
static bool vector_open(const struct virtio_pci *vp, unsigned v)
{
    return vp->msix_enabled && !vp->msix_masked && !vp->msix[v].masked;
}

static void send_locked(struct virtio_pci *vp, unsigned v)
{
    if (vp->mops == NULL || vp->mops->msi_send == NULL)
        return;
    int r = vp->mops->msi_send(vp->mctx, vp->msix[v].addr, vp->msix[v].data);
    if (r < 0)
        log_guest(LOG_WARN, "virtio-pci %s: MSI-X vector %u not delivered (%d)", vp->name, v, r);
}

/* Signal vector v (< nr_vectors) with MSI-X enabled: send it, or remember it while masked. */
static void signal_vector_locked(struct virtio_pci *vp, unsigned v)
{
    if (vector_open(vp, v))
        send_locked(vp, v);
    else
        set_pending(vp, v, true);
}

/* Deliver every pending vector that is no longer masked, clearing its bit first (a vector
 * that was pending and is delivered is no longer pending, §6.8.3.4). */
static void flush_pending_locked(struct virtio_pci *vp)
{
    for (unsigned v = 0; v < vp->nr_vectors; v++) {
        if (pending(vp, v) && vector_open(vp, v)) {
            set_pending(vp, v, false);
            send_locked(vp, v);
        }
    }
}

/* Tell the machine whether queue q's interrupts may bypass the transport, if that changed. */
static void route_queue_locked(struct virtio_pci *vp, unsigned q)
{
    struct virtio_pci_queue *vq = &vp->queues[q];
    bool direct = vq->vector != VIRTIO_MSI_NO_VECTOR && vector_open(vp, vq->vector);
    uint64_t addr = direct ? vp->msix[vq->vector].addr : 0;
    uint32_t data = direct ? vp->msix[vq->vector].data : 0;
    if (direct == vq->routed && addr == vq->route_addr && data == vq->route_data)
        return;
    vq->routed = direct;
    vq->route_addr = addr;
    vq->route_data = data;
    if (vp->mops != NULL && vp->mops->queue_route != NULL)
        vp->mops->queue_route(vp->mctx, (uint16_t)q, direct, addr, data);
}

static void route_all_locked(struct virtio_pci *vp)
{
    for (unsigned q = 0; q < vp->num_queues; q++)
        route_queue_locked(vp, q);
}

static void route_vector_locked(struct virtio_pci *vp, unsigned v)
{
    for (unsigned q = 0; q < vp->num_queues; q++) {
        if (vp->queues[q].vector == v)
            route_queue_locked(vp, q);
    }
}

/* A configuration change notification (§4.1.4.5): the ISR bit always, the config vector
 * when MSI-X is on. */
static void config_interrupt_locked(struct virtio_pci *vp)
{
    vp->isr |= VIRTIO_PCI_ISR_CONFIG;
    if (vp->msix_enabled && vp->config_vector != VIRTIO_MSI_NO_VECTOR)
        signal_vector_locked(vp, vp->config_vector);
}

static void needs_reset_locked(struct virtio_pci *vp, const char *reason)
{
    if (vp->reset_pending)
        return;
    log_guest(LOG_WARN, "virtio-pci %s: device needs reset: %s", vp->name, reason);
    if (vp->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return;
    vp->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
    config_interrupt_locked(vp);
}

/* A value written to a vector register: a table index, NO_VECTOR, or a failed mapping that
 * reads back as NO_VECTOR (§4.1.5.1.2.1). */
static uint16_t checked_vector(const struct virtio_pci *vp, uint16_t v)
{
    return v < vp->nr_vectors ? v : VIRTIO_MSI_NO_VECTOR;
}

/* ---- Status, features, reset (caller holds the lock) ---- */

static void reset_locked(struct virtio_pci *vp)
{
    uint8_t old = vp->status;
    int r = 0;
    if (vp->dev_ops != NULL && vp->dev_ops->reset != NULL)
        r = vp->dev_ops->reset(vp->dev_opaque);

    vp->status = 0;
    vp->driver_features = 0;
    vp->driver_features_high = false;
    vp->features = 0;
    vp->dfselect = 0;
    vp->gfselect = 0;
    vp->queue_select = 0;
    vp->config_vector = VIRTIO_MSI_NO_VECTOR;
    vp->isr = 0;
    for (unsigned q = 0; q < vp->num_queues; q++) {
        struct virtio_pci_queue *vq = &vp->queues[q];
        vq->size = vq->max_size;
        vq->vector = VIRTIO_MSI_NO_VECTOR;
        vq->enabled = false;
        vq->desc = vq->avail = vq->used = 0;
    }
    route_all_locked(vp);
    /* A device that was never started has nothing to stop: status 0 must read 0 at once. */
    if (r == VIRTIO_PCI_RESET_PENDING && old != 0) {
        vp->reset_pending = true;
        vp->reset_status = old;
    }
}

static bool negotiate_locked(struct virtio_pci *vp)
{
    uint64_t f = vp->driver_features;
    if (vp->driver_features_high || (f & ~vp->device_features) != 0) {
        protocol_error(vp, "driver accepted features the device did not offer");
        return false;
    }
    if (!(f & F_VERSION_1)) {
        protocol_error(vp, "driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are refused)");
        return false;
    }
    if (vp->dev_ops != NULL && vp->dev_ops->features_ok != NULL &&
        vp->dev_ops->features_ok(vp->dev_opaque, f) < 0)
        return false;
    vp->features = f;
    return true;
}

static void status_write_locked(struct virtio_pci *vp, uint8_t val)
{
    if (vp->reset_pending) {
        protocol_error(vp, "device_status written while a reset is in progress");
        return;
    }
    if (val == 0) {
        reset_locked(vp);
        return;
    }
    uint8_t old = vp->status;
    uint8_t want = val & DRIVER_STATUS_BITS;
    if (old & DRIVER_STATUS_BITS & ~want) {
        /* §2.1.2: the driver MUST NOT clear a status bit (other than by a reset). */
        needs_reset_locked(vp, "driver cleared a device_status bit");
        return;
    }
    uint8_t add = want & ~old;
    uint8_t now =
        old | (add & (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FAILED));
    if (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET) {
        /* A broken device negotiates nothing and starts nothing until it is reset. */
        vp->status = now;
        return;
    }
    if (add & VIRTIO_STATUS_FEATURES_OK) {
        /* A refusal is not an error: FEATURES_OK simply stays clear (§3.1.1 step 6). */
        if (negotiate_locked(vp))
            now |= VIRTIO_STATUS_FEATURES_OK;
    }
    vp->status = now;
    if (add & VIRTIO_STATUS_DRIVER_OK) {
        if (!(now & VIRTIO_STATUS_FEATURES_OK)) {
            needs_reset_locked(vp, "DRIVER_OK without FEATURES_OK");
            return;
        }
        int r = 0;
        if (vp->dev_ops != NULL && vp->dev_ops->start != NULL)
            r = vp->dev_ops->start(vp->dev_opaque, vp->features);
        if (r < 0) {
            needs_reset_locked(vp, "the device failed to start");
            return;
        }
        vp->status |= VIRTIO_STATUS_DRIVER_OK;
    }
}

static void driver_feature_write_locked(struct virtio_pci *vp, uint32_t val)
{
    uint64_t f = vp->driver_features;
    bool high = vp->driver_features_high;
    if (vp->gfselect == 0)
        f = (f & ~UINT64_C(0xffffffff)) | val;
    else if (vp->gfselect == 1)
        f = (f & UINT64_C(0xffffffff)) | (uint64_t)val << 32;
    else if (val != 0)
        high = true; /* nothing is offered above bit 63 */
    if (f == vp->driver_features && high == vp->driver_features_high)
        return;
    if (vp->status & VIRTIO_STATUS_FEATURES_OK) {
        /* §3.1.1: no new feature bits after FEATURES_OK. */
        needs_reset_locked(vp, "driver changed its features after FEATURES_OK");
        return;
    }
    vp->driver_features = f;
    vp->driver_features_high = high;
}

/* ---- Queues (caller holds the lock) ---- */

/* Whether a ring of len bytes at gpa, aligned to align, is acceptable guest memory. */
static bool ring_ok(const struct virtio_pci *vp, uint64_t gpa, uint64_t len, uint64_t align)
{
    uint64_t end;
    if ((gpa & (align - 1)) != 0 || checked_add_u64(gpa, len, &end))
        return false;
    return vp->mem == NULL || guest_mem_ptr(vp->mem, gpa, len) != NULL;
}

static void queue_enable_locked(struct virtio_pci *vp, unsigned q)
{
    struct virtio_pci_queue *vq = &vp->queues[q];
    if (vq->enabled)
        return;
    if (vp->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return;
    if (!(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
        needs_reset_locked(vp, "queue enabled before FEATURES_OK");
        return;
    }
    uint64_t n = vq->size;
    if (!pow2(n) || n > vq->max_size) {
        needs_reset_locked(vp, "queue enabled with a size that is 0, not a power of two or "
                               "above the maximum");
        return;
    }
    /* Sizes of virtio 1.2 §2.7, event fields included; n <= 32768 so nothing overflows. */
    if (!ring_ok(vp, vq->desc, 16 * n, VIRTQ_DESC_ALIGN) ||
        !ring_ok(vp, vq->avail, 6 + 2 * n, VIRTQ_AVAIL_ALIGN) ||
        !ring_ok(vp, vq->used, 6 + 8 * n, VIRTQ_USED_ALIGN)) {
        needs_reset_locked(vp, "queue enabled with a misaligned ring or one outside RAM");
        return;
    }
    struct vq_config cfg = {
        .size = (uint16_t)n,
        .desc_addr = vq->desc,
        .avail_addr = vq->avail,
        .used_addr = vq->used,
        .features = vp->features,
    };
    if (vp->dev_ops != NULL && vp->dev_ops->queue_enable != NULL &&
        vp->dev_ops->queue_enable(vp->dev_opaque, (uint16_t)q, &cfg) < 0) {
        needs_reset_locked(vp, "the device refused a queue");
        return;
    }
    vq->enabled = true;
}

/* The selected queue, or NULL when queue_select names none. */
static struct virtio_pci_queue *selected(struct virtio_pci *vp)
{
    return vp->queue_select < vp->num_queues ? &vp->queues[vp->queue_select] : NULL;
}

/* Stores into the low or high half of a 64-bit register, or all of it. */
static void set_u64_part(uint64_t *reg, unsigned part_off, unsigned size, uint64_t val)
{
    if (size == 8)
        *reg = val;
    else if (part_off == 0)
        *reg = (*reg & ~UINT64_C(0xffffffff)) | (val & 0xffffffffu);
    else
        *reg = (*reg & UINT64_C(0xffffffff)) | (val << 32);
}

/* ---- Common configuration (§4.1.4.3) ---- */

/* Is [off, off + size) a natural access of the field at base of width w (a 64-bit field
 * also as its two 32-bit halves, §4.1.3.1)? */
static bool field(uint64_t off, unsigned size, unsigned base, unsigned w)
{
    if (w == 8)
        return (off == base && (size == 8 || size == 4)) || (off == base + 4 && size == 4);
    return off == base && size == w;
}

/* The queue address register (desc, driver, device) an access names, and the offset of
 * its low half; NULL when the access names none or there is no queue. */
static uint64_t *queue_addr_reg(struct virtio_pci_queue *vq, uint64_t off, unsigned size,
                                unsigned *base)
{
    if (vq == NULL)
        return NULL;
    if (field(off, size, VIRTIO_PCI_COMMON_Q_DESCLO, 8)) {
        *base = VIRTIO_PCI_COMMON_Q_DESCLO;
        return &vq->desc;
    }
    if (field(off, size, VIRTIO_PCI_COMMON_Q_AVAILLO, 8)) {
        *base = VIRTIO_PCI_COMMON_Q_AVAILLO;
        return &vq->avail;
    }
    if (field(off, size, VIRTIO_PCI_COMMON_Q_USEDLO, 8)) {
        *base = VIRTIO_PCI_COMMON_Q_USEDLO;
        return &vq->used;
    }
    return NULL;
}

static uint64_t common_read_locked(struct virtio_pci *vp, uint64_t off, unsigned size)
{
    struct virtio_pci_queue *vq = selected(vp);
    if (field(off, size, VIRTIO_PCI_COMMON_DFSELECT, 4))
        return vp->dfselect;
    if (field(off, size, VIRTIO_PCI_COMMON_DF, 4))
        return vp->dfselect == 0   ? (uint32_t)vp->device_features
               : vp->dfselect == 1 ? (uint32_t)(vp->device_features >> 32)
                                   : 0;
    if (field(off, size, VIRTIO_PCI_COMMON_GFSELECT, 4))
        return vp->gfselect;
    if (field(off, size, VIRTIO_PCI_COMMON_GF, 4))
        return vp->gfselect == 0   ? (uint32_t)vp->driver_features
               : vp->gfselect == 1 ? (uint32_t)(vp->driver_features >> 32)
                                   : 0;
    if (field(off, size, VIRTIO_PCI_COMMON_MSIX, 2))
        return vp->config_vector;
    if (field(off, size, VIRTIO_PCI_COMMON_NUMQ, 2))
        return vp->num_queues;
    if (field(off, size, VIRTIO_PCI_COMMON_STATUS, 1))
        return vp->reset_pending ? vp->reset_status : vp->status;
    if (field(off, size, VIRTIO_PCI_COMMON_CFGGENERATION, 1))
        return vp->generation;
    if (field(off, size, VIRTIO_PCI_COMMON_Q_SELECT, 2))
        return vp->queue_select;
    /* A queue that does not exist reads as unavailable: size 0, no vector (§4.1.4.3). */
    if (field(off, size, VIRTIO_PCI_COMMON_Q_SIZE, 2))
        return vq != NULL ? vq->size : 0;
    if (field(off, size, VIRTIO_PCI_COMMON_Q_MSIX, 2))
        return vq != NULL ? vq->vector : VIRTIO_MSI_NO_VECTOR;
    if (field(off, size, VIRTIO_PCI_COMMON_Q_ENABLE, 2))
        return vq != NULL && vq->enabled;
    if (field(off, size, VIRTIO_PCI_COMMON_Q_NOFF, 2))
        return vq != NULL ? vp->queue_select : 0;

    unsigned base;
    uint64_t *reg = queue_addr_reg(vq, off, size, &base);
    if (reg == NULL)
        return 0; /* reserved bytes, not a natural access, or no such queue */
    if (size == 8)
        return *reg;
    return off == base ? (uint32_t)*reg : (uint32_t)(*reg >> 32);
}

static void common_write_locked(struct virtio_pci *vp, uint64_t off, unsigned size, uint64_t val)
{
    struct virtio_pci_queue *vq = selected(vp);
    if (field(off, size, VIRTIO_PCI_COMMON_DFSELECT, 4)) {
        vp->dfselect = (uint32_t)val;
    } else if (field(off, size, VIRTIO_PCI_COMMON_GFSELECT, 4)) {
        vp->gfselect = (uint32_t)val;
    } else if (field(off, size, VIRTIO_PCI_COMMON_GF, 4)) {
        driver_feature_write_locked(vp, (uint32_t)val);
    } else if (field(off, size, VIRTIO_PCI_COMMON_MSIX, 2)) {
        vp->config_vector = checked_vector(vp, (uint16_t)val);
    } else if (field(off, size, VIRTIO_PCI_COMMON_STATUS, 1)) {
        status_write_locked(vp, (uint8_t)val);
    } else if (field(off, size, VIRTIO_PCI_COMMON_Q_SELECT, 2)) {
        vp->queue_select = (uint16_t)val; /* checked on every use */
    } else if (vq == NULL) {
        if (off >= VIRTIO_PCI_COMMON_Q_SIZE && off < VIRTIO_PCI_COMMON_CFG_LEN)
            protocol_error(vp, "write to the registers of a queue that does not exist");
    } else if (field(off, size, VIRTIO_PCI_COMMON_Q_SIZE, 2)) {
        /* Stored as written and validated at enable, so that a size the device cannot
         * take ends in DEVICE_NEEDS_RESET instead of a ring of the wrong size. */
        if (vq->enabled)
            protocol_error(vp, "queue_size written while the queue is enabled: ignored");
        else
            vq->size = (uint16_t)val;
    } else if (field(off, size, VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
        vq->vector = checked_vector(vp, (uint16_t)val);
        route_queue_locked(vp, vp->queue_select);
    } else if (field(off, size, VIRTIO_PCI_COMMON_Q_ENABLE, 2)) {
        /* Without VIRTIO_F_RING_RESET the driver must not write 0 (§4.1.4.3.2). */
        if ((uint16_t)val == 1)
            queue_enable_locked(vp, vp->queue_select);
        else
            protocol_error(vp, "queue_enable written with a value other than 1: ignored");
    } else {
        unsigned base;
        uint64_t *reg = queue_addr_reg(vq, off, size, &base);
        if (reg == NULL)
            return; /* read-only, reserved, or not a natural access */
        if (vq->enabled) {
            protocol_error(vp, "ring address written while the queue is enabled: ignored");
            return;
        }
        set_u64_part(reg, (unsigned)(off - base), size, val);
    }
}

/* ---- MSI-X table and PBA (caller holds the lock) ---- */

static uint32_t msix_read32_locked(const struct virtio_pci *vp, uint64_t off)
{
    uint64_t e = off / PCI_MSIX_ENTRY_SIZE;
    if (e >= vp->nr_vectors)
        return 0;
    const struct virtio_pci_msix_entry *ent = &vp->msix[e];
    switch (off % PCI_MSIX_ENTRY_SIZE) {
    case PCI_MSIX_ENTRY_ADDR_LO:
        return (uint32_t)ent->addr;
    case PCI_MSIX_ENTRY_ADDR_HI:
        return (uint32_t)(ent->addr >> 32);
    case PCI_MSIX_ENTRY_DATA:
        return ent->data;
    default:
        return ent->masked ? PCI_MSIX_ENTRY_CTRL_MASKBIT : 0;
    }
}

static void msix_write32_locked(struct virtio_pci *vp, uint64_t off, uint32_t val)
{
    uint64_t e = off / PCI_MSIX_ENTRY_SIZE;
    if (e >= vp->nr_vectors)
        return;
    unsigned v = (unsigned)e;
    struct virtio_pci_msix_entry *ent = &vp->msix[v];
    switch (off % PCI_MSIX_ENTRY_SIZE) {
    case PCI_MSIX_ENTRY_ADDR_LO:
        /* Address bits 1:0 are DWORD alignment and read as zero. */
        ent->addr = (ent->addr & ~UINT64_C(0xffffffff)) | (val & ~3u);
        break;
    case PCI_MSIX_ENTRY_ADDR_HI:
        ent->addr = (ent->addr & UINT64_C(0xffffffff)) | (uint64_t)val << 32;
        break;
    case PCI_MSIX_ENTRY_DATA:
        ent->data = val;
        break;
    default: {
        bool masked = val & PCI_MSIX_ENTRY_CTRL_MASKBIT;
        if (masked == ent->masked)
            return;
        ent->masked = masked;
        if (!masked && pending(vp, v) && vector_open(vp, v)) {
            set_pending(vp, v, false);
            send_locked(vp, v);
        }
        break;
    }
    }
    /* A message changed while unmasked is undefined per PCI, but older guests do it: the
     * direct routes simply follow. */
    route_vector_locked(vp, v);
}

static uint64_t msix_table_read_locked(const struct virtio_pci *vp, uint64_t off, unsigned size)
{
    if ((size != 4 && size != 8) || off % size != 0)
        return 0; /* PCI 3.0 §6.8.2: aligned DWORD or QWORD only */
    uint64_t v = msix_read32_locked(vp, off);
    if (size == 8)
        v |= (uint64_t)msix_read32_locked(vp, off + 4) << 32;
    return v;
}

static void msix_table_write_locked(struct virtio_pci *vp, uint64_t off, unsigned size,
                                    uint64_t val)
{
    if ((size != 4 && size != 8) || off % size != 0)
        return;
    msix_write32_locked(vp, off, (uint32_t)val);
    if (size == 8)
        msix_write32_locked(vp, off + 4, (uint32_t)(val >> 32));
}

static uint64_t pba_read_locked(const struct virtio_pci *vp, uint64_t off, unsigned size)
{
    if ((size != 4 && size != 8) || off % size != 0)
        return 0;
    uint64_t word = off / 8;
    uint64_t words = (vp->nr_vectors + 63u) / 64u;
    if (word >= words)
        return 0;
    uint64_t v = vp->pba[word];
    if (size == 4)
        v = off % 8 == 0 ? (uint32_t)v : (uint32_t)(v >> 32);
    return v;
}

/* ---- BAR 0 ---- */

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *vp = opaque;
    if (size != 1 && size != 2 && size != 4 && size != 8)
        return 0;
    if (offset >= VIRTIO_PCI_BAR_SIZE || size > VIRTIO_PCI_BAR_SIZE - offset)
        return 0;
    uint64_t region = offset / VIRTIO_PCI_BAR_REGION * VIRTIO_PCI_BAR_REGION;
    uint64_t off = offset - region;
    uint64_t v = 0;

    vp_lock(vp);
    switch (region) {
    case VIRTIO_PCI_BAR_COMMON:
        v = common_read_locked(vp, off, size);
        break;
    case VIRTIO_PCI_BAR_ISR:
        /* Reading ISR status clears it (§4.1.4.5); only the byte itself is a read of it. */
        if (off == 0 && size == 1) {
            v = vp->isr;
            vp->isr = 0;
        }
        break;
    case VIRTIO_PCI_BAR_DEVICE:
        if (range_within(off, size, 0, vp->config_size))
            v = get_le(&vp->config[off], size);
        break;
    case VIRTIO_PCI_BAR_MSIX_TABLE:
        v = msix_table_read_locked(vp, off, size);
        break;
    case VIRTIO_PCI_BAR_MSIX_PBA:
        v = pba_read_locked(vp, off, size);
        break;
    default: /* notification area (write-only) and the unused pages */
        break;
    }
    vp_unlock(vp);
    return v;
}

static void bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *vp = opaque;
    if (size != 1 && size != 2 && size != 4 && size != 8)
        return;
    if (offset >= VIRTIO_PCI_BAR_SIZE || size > VIRTIO_PCI_BAR_SIZE - offset)
        return;
    uint64_t region = offset / VIRTIO_PCI_BAR_REGION * VIRTIO_PCI_BAR_REGION;
    uint64_t off = offset - region;
    /* Device callbacks that may call back into the transport run after the lock is dropped. */
    bool notify = false, config_write = false;

    vp_lock(vp);
    switch (region) {
    case VIRTIO_PCI_BAR_COMMON:
        common_write_locked(vp, off, size, value);
        break;
    case VIRTIO_PCI_BAR_DEVICE:
        if (!range_within(off, size, 0, vp->config_size))
            break;
        if (!(vp->status & VIRTIO_STATUS_FEATURES_OK) || vp->reset_pending)
            protocol_error(vp, "device configuration written before FEATURES_OK: ignored");
        else
            config_write = true;
        break;
    case VIRTIO_PCI_BAR_NOTIFY:
        /* The queue is named by the address; its value (the queue index) is not needed. */
        if (off % VIRTIO_PCI_NOTIFY_MULTIPLIER == 0 && size <= 4 &&
            off / VIRTIO_PCI_NOTIFY_MULTIPLIER < vp->num_queues) {
            const struct virtio_pci_queue *vq = &vp->queues[off / VIRTIO_PCI_NOTIFY_MULTIPLIER];
            notify = vq->enabled && (vp->status & VIRTIO_STATUS_DRIVER_OK) &&
                     !(vp->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        }
        break;
    case VIRTIO_PCI_BAR_MSIX_TABLE:
        msix_table_write_locked(vp, off, size, value);
        break;
    default: /* ISR and PBA are read-only; the rest is unused */
        break;
    }
    vp_unlock(vp);

    if (vp->dev_ops == NULL)
        return;
    if (notify && vp->dev_ops->queue_notify != NULL)
        vp->dev_ops->queue_notify(vp->dev_opaque, (uint16_t)(off / VIRTIO_PCI_NOTIFY_MULTIPLIER));
    if (config_write && vp->dev_ops->config_write != NULL)
        vp->dev_ops->config_write(vp->dev_opaque, (uint32_t)off, size, value);
}

static const struct bus_ops bar_ops = {.read = bar_read, .write = bar_write};

/* ---- Configuration-space hooks ---- */

/* The PCI_CFG capability's window (§4.1.4.9): the access it describes, if the driver set
 * up a valid one (BAR 0, 1, 2 or 4 bytes, aligned, inside the BAR). */
static bool cfg_window(struct virtio_pci *vp, uint64_t *off, unsigned *len)
{
    unsigned cap = vp->cfg_cap;
    uint32_t bar = pci_device_get(&vp->pci, cap + VIRTIO_PCI_CAP_BAR, 1);
    uint32_t o = pci_device_get(&vp->pci, cap + VIRTIO_PCI_CAP_OFFSET, 4);
    uint32_t l = pci_device_get(&vp->pci, cap + VIRTIO_PCI_CAP_LENGTH, 4);
    if (bar != VIRTIO_PCI_BAR || (l != 1 && l != 2 && l != 4) || o % l != 0 ||
        !range_within(o, l, 0, VIRTIO_PCI_BAR_SIZE))
        return false;
    *off = o;
    *len = l;
    return true;
}

static bool overlaps(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
    return a < b + blen && b < a + alen;
}

static void hook_cap_write(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                           unsigned size, uint32_t old_val, uint32_t new_val)
{
    struct virtio_pci *vp = opaque;
    (void)old_val;
    (void)new_val;
    if (cap == vp->msix_cap) {
        /* The stored register already went through the write mask: only Enable and
         * Function Mask can have changed. */
        uint16_t ctl = (uint16_t)pci_device_get(dev, cap + PCI_MSIX_FLAGS, 2);
        vp_lock(vp);
        bool en = ctl & PCI_MSIX_FLAGS_ENABLE, masked = ctl & PCI_MSIX_FLAGS_MASKALL;
        if (en != vp->msix_enabled || masked != vp->msix_masked) {
            vp->msix_enabled = en;
            vp->msix_masked = masked;
            flush_pending_locked(vp);
            route_all_locked(vp);
        }
        vp_unlock(vp);
    } else if (cap == vp->cfg_cap && overlaps(offset, size, cap + VIRTIO_PCI_CFG_CAP_DATA, 4)) {
        uint64_t off;
        unsigned len;
        if (cfg_window(vp, &off, &len))
            bar_write(vp, off, len, pci_device_get(dev, cap + VIRTIO_PCI_CFG_CAP_DATA, len));
    }
}

static uint32_t hook_cap_read(void *opaque, struct pci_device *dev, unsigned cap, unsigned offset,
                              unsigned size, uint32_t value)
{
    struct virtio_pci *vp = opaque;
    unsigned data = cap + VIRTIO_PCI_CFG_CAP_DATA;
    if (cap != vp->cfg_cap || !overlaps(offset, size, data, 4))
        return value;
    uint64_t off;
    unsigned len;
    if (!cfg_window(vp, &off, &len))
        return value;
    uint32_t got = (uint32_t)bar_read(vp, off, len);
    /* The result stays in pci_cfg_data (only its first len bytes change, §4.1.4.9). */
    uint32_t stored = pci_device_get(dev, data, 4);
    uint32_t keep = len == 4 ? 0 : ~((1u << (8 * len)) - 1);
    stored = (stored & keep) | (got & ~keep);
    pci_device_set(dev, data, 4, stored);
    uint32_t out = 0;
    for (unsigned i = 0; i < size; i++) {
        unsigned o = offset + i;
        uint32_t byte = o >= data && o < data + 4 ? (stored >> (8 * (o - data))) & 0xff
                                                  : (value >> (8 * i)) & 0xff;
        out |= byte << (8 * i);
    }
    return out;
}

static void doorbells_locked(struct virtio_pci *vp, bool mapped)
{
    if (vp->mops == NULL || vp->mops->doorbell == NULL)
        return;
    for (unsigned q = 0; q < vp->num_queues; q++)
        vp->mops->doorbell(vp->mctx, (uint16_t)q, mapped,
                           vp->bar_addr + VIRTIO_PCI_BAR_NOTIFY +
                               (uint64_t)q * VIRTIO_PCI_NOTIFY_MULTIPLIER);
}

static void hook_bar_map(void *opaque, struct pci_device *dev, unsigned bar, bool decoding,
                         uint64_t addr)
{
    struct virtio_pci *vp = opaque;
    (void)dev;
    if (bar != VIRTIO_PCI_BAR)
        return;
    vp_lock(vp);
    if (vp->bar_mapped && (!decoding || addr != vp->bar_addr)) {
        doorbells_locked(vp, false);
        vp->bar_mapped = false;
    }
    if (decoding && !vp->bar_mapped) {
        vp->bar_addr = addr;
        vp->bar_mapped = true;
        doorbells_locked(vp, true);
    }
    vp_unlock(vp);
}

static const struct pci_device_hooks pci_hooks = {
    .cap_write = hook_cap_write,
    .cap_read = hook_cap_read,
    .bar_map = hook_bar_map,
};

/* ---- Set-up ---- */

/* Fill the generic part of a virtio capability at cap. */
static void put_vcap(struct pci_device *dev, unsigned cap, unsigned len, unsigned type,
                     uint32_t offset, uint32_t length)
{
    pci_device_set(dev, cap + VIRTIO_PCI_CAP_LEN, 1, len);
    pci_device_set(dev, cap + VIRTIO_PCI_CAP_CFG_TYPE, 1, type);
    pci_device_set(dev, cap + VIRTIO_PCI_CAP_BAR, 1, VIRTIO_PCI_BAR);
    pci_device_set(dev, cap + VIRTIO_PCI_CAP_OFFSET, 4, offset);
    pci_device_set(dev, cap + VIRTIO_PCI_CAP_LENGTH, 4, length);
}

static int add_vcap(struct virtio_pci *vp, unsigned len, unsigned type, uint32_t offset,
                    uint32_t length)
{
    int cap = pci_device_add_capability(&vp->pci, PCI_CAP_ID_VNDR, len);
    if (cap >= 0)
        put_vcap(&vp->pci, (unsigned)cap, len, type, offset, length);
    return cap;
}

static int add_caps(struct virtio_pci *vp)
{
    int r;
    if ((r = add_vcap(vp, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_BAR_COMMON,
                      VIRTIO_PCI_COMMON_CFG_LEN)) < 0)
        return r;
    if ((r = add_vcap(vp, VIRTIO_PCI_NOTIFY_CAP_SIZE, VIRTIO_PCI_CAP_NOTIFY_CFG,
                      VIRTIO_PCI_BAR_NOTIFY,
                      (uint32_t)vp->num_queues * VIRTIO_PCI_NOTIFY_MULTIPLIER)) < 0)
        return r;
    pci_device_set(&vp->pci, (unsigned)r + VIRTIO_PCI_NOTIFY_CAP_MULT, 4,
                   VIRTIO_PCI_NOTIFY_MULTIPLIER);
    if ((r = add_vcap(vp, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_BAR_ISR, 1)) < 0)
        return r;
    if (vp->config_size > 0 && (r = add_vcap(vp, VIRTIO_PCI_CAP_SIZE, VIRTIO_PCI_CAP_DEVICE_CFG,
                                             VIRTIO_PCI_BAR_DEVICE, vp->config_size)) < 0)
        return r;
    /* The PCI_CFG window: bar, offset, length and data are the driver's to write. */
    if ((r = add_vcap(vp, VIRTIO_PCI_CFG_CAP_SIZE, VIRTIO_PCI_CAP_PCI_CFG, 0, 0)) < 0)
        return r;
    vp->cfg_cap = (unsigned)r;
    pci_device_set(&vp->pci, vp->cfg_cap + VIRTIO_PCI_CAP_BAR, 1, 0);
    pci_device_set_wmask(&vp->pci, vp->cfg_cap + VIRTIO_PCI_CAP_BAR, 1, 0xff);
    pci_device_set_wmask(&vp->pci, vp->cfg_cap + VIRTIO_PCI_CAP_OFFSET, 4, 0xffffffffu);
    pci_device_set_wmask(&vp->pci, vp->cfg_cap + VIRTIO_PCI_CAP_LENGTH, 4, 0xffffffffu);
    pci_device_set_wmask(&vp->pci, vp->cfg_cap + VIRTIO_PCI_CFG_CAP_DATA, 4, 0xffffffffu);

    if ((r = pci_device_add_capability(&vp->pci, PCI_CAP_ID_MSIX, PCI_MSIX_CAP_SIZE)) < 0)
        return r;
    vp->msix_cap = (unsigned)r;
    pci_device_set(&vp->pci, vp->msix_cap + PCI_MSIX_FLAGS, 2, vp->nr_vectors - 1u);
    pci_device_set_wmask(&vp->pci, vp->msix_cap + PCI_MSIX_FLAGS, 2,
                         PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    pci_device_set(&vp->pci, vp->msix_cap + PCI_MSIX_TABLE, 4,
                   VIRTIO_PCI_BAR_MSIX_TABLE | VIRTIO_PCI_BAR);
    pci_device_set(&vp->pci, vp->msix_cap + PCI_MSIX_PBA, 4,
                   VIRTIO_PCI_BAR_MSIX_PBA | VIRTIO_PCI_BAR);
    return 0;
}

static void free_arrays(struct virtio_pci *vp)
{
    free(vp->queues);
    free(vp->msix);
    free(vp->config);
    vp->queues = NULL;
    vp->msix = NULL;
    vp->config = NULL;
}

int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_config *cfg)
{
    if (cfg->num_queues == 0 || cfg->num_queues > VIRTIO_PCI_MAX_QUEUES ||
        !pow2(cfg->queue_max_size) || cfg->queue_max_size > VIRTQ_MAX_SIZE ||
        cfg->nr_vectors > VIRTIO_PCI_MAX_VECTORS || cfg->config_size > VIRTIO_PCI_MAX_CONFIG ||
        cfg->device_id > 0xffffu - VIRTIO_PCI_DEVICE_ID_BASE ||
        (cfg->device_features & UNSUPPORTED_FEATURES) != 0)
        return -EINVAL;

    memset(vp, 0, sizeof(*vp));
    vp->name = cfg->name != NULL ? cfg->name : "virtio";
    vp->dev_ops = cfg->dev_ops;
    vp->dev_opaque = cfg->dev_opaque;
    vp->mops = cfg->machine_ops;
    vp->mctx = cfg->machine_ctx;
    vp->mem = cfg->mem;
    vp->device_features = cfg->device_features | F_VERSION_1;
    vp->config_vector = VIRTIO_MSI_NO_VECTOR;
    vp->num_queues = cfg->num_queues;
    vp->nr_vectors = cfg->nr_vectors;
    if (vp->nr_vectors == 0)
        vp->nr_vectors = cfg->num_queues < VIRTIO_PCI_MAX_VECTORS ? cfg->num_queues + 1u
                                                                  : VIRTIO_PCI_MAX_VECTORS;
    vp->config_size = cfg->config_size;

    vp->queues = calloc(vp->num_queues, sizeof(*vp->queues));
    vp->msix = calloc(vp->nr_vectors, sizeof(*vp->msix));
    vp->config = calloc(vp->config_size > 0 ? vp->config_size : 1, 1);
    if (vp->queues == NULL || vp->msix == NULL || vp->config == NULL) {
        free_arrays(vp);
        return -ENOMEM;
    }
    for (unsigned q = 0; q < vp->num_queues; q++) {
        vp->queues[q].max_size = cfg->queue_max_size;
        vp->queues[q].size = cfg->queue_max_size;
        vp->queues[q].vector = VIRTIO_MSI_NO_VECTOR;
    }
    /* PCI 3.0 §6.8.2.9: every vector is masked after reset. */
    for (unsigned v = 0; v < vp->nr_vectors; v++)
        vp->msix[v].masked = true;
    if (cfg->config_init != NULL && vp->config_size > 0)
        memcpy(vp->config, cfg->config_init, vp->config_size);

    const struct pci_device_info info = {
        .vendor_id = VIRTIO_PCI_VENDOR_ID,
        .device_id = (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + cfg->device_id),
        .class_code = cfg->class_code,
        .revision = VIRTIO_PCI_REVISION,
        .subsys_vendor_id = VIRTIO_PCI_VENDOR_ID,
        .subsys_id = cfg->subsys_id != 0 ? cfg->subsys_id : VIRTIO_PCI_SUBSYS_ID_DEFAULT,
        .intx_pin = 0, /* MSI-X only: no legacy interrupt */
        .name = vp->name,
    };
    int r = pci_device_init(&vp->pci, &info);
    if (r < 0) {
        free_arrays(vp);
        return r;
    }
    r = os_mutex_init(&vp->lock);
    if (r < 0) {
        pci_device_destroy(&vp->pci);
        free_arrays(vp);
        return r;
    }
    if ((r = pci_device_set_bar(&vp->pci, VIRTIO_PCI_BAR, PCI_BAR_MEM64, VIRTIO_PCI_BAR_SIZE, false,
                                &bar_ops, vp)) < 0 ||
        (r = add_caps(vp)) < 0) {
        virtio_pci_destroy(vp);
        return r;
    }
    pci_device_set_hooks(&vp->pci, &pci_hooks, vp);
    return 0;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
    os_mutex_destroy(&vp->lock);
    pci_device_destroy(&vp->pci);
    free_arrays(vp);
}

/* ---- Device and machine side ---- */

int virtio_pci_queue_interrupt(struct virtio_pci *vp, uint16_t queue)
{
    if (queue >= vp->num_queues)
        return -EINVAL;
    int ret = 0;
    vp_lock(vp);
    if (!(vp->status & VIRTIO_STATUS_DRIVER_OK)) {
        ret = -ENODEV;
    } else if (!vp->msix_enabled) {
        vp->isr |= VIRTIO_PCI_ISR_QUEUE; /* no INTx: a polling driver still sees it */
    } else if (vp->queues[queue].vector != VIRTIO_MSI_NO_VECTOR) {
        signal_vector_locked(vp, vp->queues[queue].vector);
    }
    vp_unlock(vp);
    return ret;
}

int virtio_pci_config_update(struct virtio_pci *vp, uint32_t offset, const void *data, uint32_t len,
                             bool notify)
{
    if (!range_within(offset, len, 0, vp->config_size))
        return -EINVAL;
    if (len == 0)
        return 0;
    vp_lock(vp);
    if (memcmp(&vp->config[offset], data, len) != 0) {
        memcpy(&vp->config[offset], data, len);
        vp->generation++;
        if (notify && (vp->status & VIRTIO_STATUS_DRIVER_OK))
            config_interrupt_locked(vp);
    }
    vp_unlock(vp);
    return 0;
}

void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *reason)
{
    vp_lock(vp);
    needs_reset_locked(vp, reason);
    vp_unlock(vp);
}

void virtio_pci_reset_done(struct virtio_pci *vp)
{
    vp_lock(vp);
    vp->reset_pending = false;
    vp_unlock(vp);
}

int virtio_pci_doorbell_addr(struct virtio_pci *vp, uint16_t queue, uint64_t *gpa)
{
    if (queue >= vp->num_queues)
        return -EINVAL;
    int ret = 0;
    vp_lock(vp);
    if (vp->bar_mapped)
        *gpa =
            vp->bar_addr + VIRTIO_PCI_BAR_NOTIFY + (uint64_t)queue * VIRTIO_PCI_NOTIFY_MULTIPLIER;
    else
        ret = -ENODEV;
    vp_unlock(vp);
    return ret;
}
