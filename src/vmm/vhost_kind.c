/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmm/vhost_kind.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Virtio device IDs (virtio 1.2 §5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_VSOCK   19
#define VIRTIO_ID_FS      26

/* PCI class codes, the ones QEMU gives the same devices, so guests' tools name them. */
#define PCI_CLASS_NETWORK_ETHERNET  0x020000
#define PCI_CLASS_STORAGE_OTHER     0x018000
#define PCI_CLASS_COMMUNICATION_OTH 0x078000
#define PCI_CLASS_OTHERS            0xff0000

/* virtio-blk: several queues, their count in num_queues (le16 at 34). */
#define VIRTIO_BLK_F_MQ              12
#define VIRTIO_BLK_CONFIG_NUM_QUEUES 34
#define VIRTIO_BLK_S_IOERR           1

/* virtio-net: bits this VMM provides or withholds. MAC and STATUS come from the command
 * line. The control queue is the VMM's (virtio/net_ctrl.h) and offered with MQ only, when
 * the NIC has several queue pairs; what else would need it (guest offload switching, RX
 * mode, VLAN filter, announce, MAC setting) is not offered, nor MTU (no mtu field). */
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU                 3
#define VIRTIO_NET_F_MAC                 5
#define VIRTIO_NET_F_STATUS              16
#define VIRTIO_NET_F_CTRL_VQ             17
#define VIRTIO_NET_F_CTRL_RX             18
#define VIRTIO_NET_F_CTRL_VLAN           19
#define VIRTIO_NET_F_CTRL_RX_EXTRA       20
#define VIRTIO_NET_F_GUEST_ANNOUNCE      21
#define VIRTIO_NET_F_MQ                  22
#define VIRTIO_NET_F_CTRL_MAC_ADDR       23
#define VIRTIO_NET_S_LINK_UP             1
/* Offset of max_virtqueue_pairs (le16) in struct virtio_net_config. */
#define VIRTIO_NET_CONFIG_MAX_PAIRS 8

/* virtio-console: several ports (max_nr_ports, le32 at 4). */
#define VIRTIO_CONSOLE_F_MULTIPORT         1
#define VIRTIO_CONSOLE_CONFIG_MAX_NR_PORTS 4

/* virtio-fs: the notification queue is not provided. */
#define VIRTIO_FS_F_NOTIFICATION 0

#define BIT(n)     (1ull << (n))
#define ALL_DEVICE ((1ull << 24) - 1)
#define NET_WITHHELD                                                                               \
    (BIT(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) | BIT(VIRTIO_NET_F_MTU) | BIT(VIRTIO_NET_F_CTRL_VQ) |   \
     BIT(VIRTIO_NET_F_CTRL_RX) | BIT(VIRTIO_NET_F_CTRL_VLAN) | BIT(VIRTIO_NET_F_CTRL_RX_EXTRA) |   \
     BIT(VIRTIO_NET_F_GUEST_ANNOUNCE) | BIT(VIRTIO_NET_F_MQ) | BIT(VIRTIO_NET_F_CTRL_MAC_ADDR) |   \
     BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS))

/* virtio-blk: a request the device cannot serve ends with IOERR in its status byte, the
 * last writable byte of the chain (virtio 1.2 §5.2.6). */
static uint32_t fail_blk(void *opaque, const struct vq_iovec *iov, unsigned nr_iov,
                         uint64_t writable_bytes)
{
    (void)opaque;
    (void)writable_bytes;
    if (nr_iov == 0)
        return 0;
    const struct vq_iovec *last = &iov[nr_iov - 1];
    ((uint8_t *)last->base)[last->len - 1] = VIRTIO_BLK_S_IOERR;
    return 1;
}

/* Every other type: a buffer returned with nothing written. A transmitted packet or a
 * console write is then lost, a receive buffer comes back empty (drivers repost it), a
 * shared-folder request gets no reply, which the guest's FUSE layer reports as an error. */
static uint32_t fail_empty(void *opaque, const struct vq_iovec *iov, unsigned nr_iov,
                           uint64_t writable_bytes)
{
    (void)opaque;
    (void)iov;
    (void)nr_iov;
    (void)writable_bytes;
    return 0;
}

/* Bounce bytes per queue. A disk keeps eight 1 MiB requests in flight (each run also holds
 * its header and padding, and the ring allocator cannot split a run at its end, so a little
 * more than 8 MiB). A NIC's receive queue holds the guest's posted buffers (mergeable ones
 * are a page or a few each), its transmit queue 64 KiB segments. A shared folder moves
 * FUSE requests of up to 1 MiB. Console, vsock and entropy requests are small. */
static const struct vhost_kind kinds[] = {
    [VMM_DEV_BLK] = {.name = "disk",
                     .program = "bulkhead-blk",
                     .virtio_id = VIRTIO_ID_BLOCK,
                     .class_code = PCI_CLASS_STORAGE_OTHER,
                     .config_size = 60,
                     .backend_config = true,
                     .device_mask = ALL_DEVICE,
                     .data_bytes = 12ull << 20,
                     .fail = fail_blk,
                     .request_timeout = true},
    [VMM_DEV_NET] = {.name = "net",
                     .program = "bulkhead-net",
                     .virtio_id = VIRTIO_ID_NET,
                     .class_code = PCI_CLASS_NETWORK_ETHERNET,
                     .config_size = 12,
                     .backend_config = false,
                     .device_mask = ALL_DEVICE & ~NET_WITHHELD,
                     .data_bytes = 4ull << 20,
                     .fail = fail_empty},
    [VMM_DEV_VSOCK] = {.name = "vsock",
                       .program = "bulkhead-vsock",
                       .virtio_id = VIRTIO_ID_VSOCK,
                       .class_code = PCI_CLASS_COMMUNICATION_OTH,
                       .config_size = 8,
                       .backend_config = true,
                       .device_mask = ALL_DEVICE,
                       .data_bytes = 2ull << 20,
                       .fail = fail_empty},
    [VMM_DEV_CONSOLE] = {.name = "console",
                         .program = "bulkhead-console",
                         .virtio_id = VIRTIO_ID_CONSOLE,
                         .class_code = PCI_CLASS_COMMUNICATION_OTH,
                         .config_size = 12,
                         .backend_config = true,
                         .device_mask = ALL_DEVICE,
                         .data_bytes = 256ull << 10,
                         .fail = fail_empty},
    [VMM_DEV_RNG] = {.name = "rng",
                     .program = "bulkhead-rng",
                     .virtio_id = VIRTIO_ID_RNG,
                     .class_code = PCI_CLASS_OTHERS,
                     .config_size = 0,
                     .backend_config = false,
                     .device_mask = 0,
                     .data_bytes = 256ull << 10,
                     .fail = fail_empty},
    [VMM_DEV_FS] = {.name = "fs",
                    .program = NULL,
                    .virtio_id = VIRTIO_ID_FS,
                    .class_code = PCI_CLASS_STORAGE_OTHER,
                    .config_size = 40,
                    .backend_config = false,
                    .device_mask = ALL_DEVICE & ~BIT(VIRTIO_FS_F_NOTIFICATION),
                    .data_bytes = 4ull << 20,
                    .fail = fail_empty},
};

const struct vhost_kind *vhost_kind_get(enum vmm_dev_kind kind)
{
    return &kinds[kind];
}

static uint32_t le_at(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, unsigned n, uint32_t v)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

unsigned vhost_kind_queues(enum vmm_dev_kind kind, uint64_t features, uint8_t *config, unsigned max)
{
    unsigned nq = 1;
    switch (kind) {
    case VMM_DEV_BLK:
        if (features & BIT(VIRTIO_BLK_F_MQ))
            nq = le_at(config + VIRTIO_BLK_CONFIG_NUM_QUEUES, 2);
        break;
    case VMM_DEV_NET:
        /* A receive and a transmit queue per pair; the control queue is the VMM's and not
         * counted here. */
        nq = 2;
        if (features & BIT(VIRTIO_NET_F_MQ))
            nq = 2 * le_at(config + VIRTIO_NET_CONFIG_MAX_PAIRS, 2);
        break;
    case VMM_DEV_VSOCK:
        nq = 3; /* receive, transmit, event */
        break;
    case VMM_DEV_CONSOLE:
        nq = 2;
        if (features & BIT(VIRTIO_CONSOLE_F_MULTIPORT)) {
            /* Port 0's pair, the control pair, and a pair per further port. */
            uint32_t ports = le_at(config + VIRTIO_CONSOLE_CONFIG_MAX_NR_PORTS, 4);
            uint32_t fit = max / 2 - 1;
            if (ports == 0 || ports > fit) {
                ports = ports == 0 ? 1 : fit;
                put_le(config + VIRTIO_CONSOLE_CONFIG_MAX_NR_PORTS, 4, ports);
            }
            nq = 2 * (ports + 1);
        }
        break;
    case VMM_DEV_RNG:
        nq = 1;
        break;
    case VMM_DEV_FS:
        nq = 2; /* hiprio and one request queue (num_request_queues 1, vhost_kind_make_config) */
        break;
    }
    if (nq == 0)
        nq = 1;
    return nq < max ? nq : max;
}

void vhost_kind_make_config(const struct vmm_device *opt, unsigned queue_pairs, uint8_t *config,
                            uint64_t *vmm_features)
{
    *vmm_features = 0;
    memset(config, 0, kinds[opt->kind].config_size);
    if (opt->kind == VMM_DEV_NET) {
        memcpy(config, opt->mac, 6);
        put_le(config + 6, 2, VIRTIO_NET_S_LINK_UP);
        put_le(config + VIRTIO_NET_CONFIG_MAX_PAIRS, 2, queue_pairs > 1 ? queue_pairs : 1);
        *vmm_features = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS);
        if (queue_pairs > 1)
            *vmm_features |= BIT(VIRTIO_NET_F_CTRL_VQ) | BIT(VIRTIO_NET_F_MQ);
    } else if (opt->kind == VMM_DEV_FS) {
        if (opt->tag != NULL) {
            size_t n = strlen(opt->tag);
            memcpy(config, opt->tag, n < VMM_FS_TAG_MAX ? n : VMM_FS_TAG_MAX);
        }
        put_le(config + VMM_FS_TAG_MAX, 4, 1); /* num_request_queues */
    }
}

int vhost_kind_argv(const struct vmm_device *opt, const char *exe, const char *log_level,
                    const char *sched, struct vhost_kind_argbuf *buf,
                    const char *argv[VHOST_KIND_MAX_ARGS])
{
    unsigned n = 0;
    argv[n++] = exe;
    argv[n++] = "--fd";
    argv[n++] = "3";
    argv[n++] = "--log-level";
    argv[n++] = log_level;
    argv[n++] = "--sched";
    argv[n++] = sched;
    /* Shared mode: the backend serves the guest's rings and polls them after work, as
     * QEMU's I/O threads do. Isolated mode: the VMM's device thread polls both the guest's
     * rings and the shadow rings; a second poller would only take CPU time from the
     * guest's vCPUs and from the backend's own work (measured: small-request IOPS fell). */
    snprintf(buf->nums[1], sizeof(buf->nums[1]), "%u",
             opt->mode == VMM_MEM_SHARED ? opt->poll_us : 0);
    switch (opt->kind) {
    case VMM_DEV_BLK:
        snprintf(buf->nums[0], sizeof(buf->nums[0]), "%u", opt->queues != 0 ? opt->queues : 1);
        argv[n++] = "--image";
        argv[n++] = opt->path;
        argv[n++] = "--queues";
        argv[n++] = buf->nums[0];
        argv[n++] = "--poll";
        argv[n++] = buf->nums[1];
        /* Isolated mode: completions in bounded batches, so that the device thread copies
         * one request back while the backend reads the next (blk_device_opts.batch_kib). */
        argv[n++] = "--batch";
        argv[n++] = opt->mode == VMM_MEM_SHARED ? "0" : VHOST_KIND_ISO_BLK_BATCH_KIB;
        if (opt->readonly)
            argv[n++] = "--readonly";
        break;
    case VMM_DEV_NET:
        /* The VM and the tap are the two ends of a point-to-point link. */
        snprintf(buf->nums[0], sizeof(buf->nums[0]), "%u", opt->queues != 0 ? opt->queues : 1);
        argv[n++] = "--mode";
        argv[n++] = "p2p";
        argv[n++] = "--tap";
        argv[n++] = opt->tap;
        argv[n++] = "--queue-pairs";
        argv[n++] = buf->nums[0];
        argv[n++] = "--poll";
        argv[n++] = buf->nums[1];
        break;
    case VMM_DEV_VSOCK:
        snprintf(buf->nums[0], sizeof(buf->nums[0]), "%llu", (unsigned long long)opt->cid);
        argv[n++] = "--guest-cid";
        argv[n++] = buf->nums[0];
        argv[n++] = "--uds-path";
        argv[n++] = opt->uds;
        break;
    case VMM_DEV_CONSOLE:
        argv[n++] = "--console";
        argv[n++] = opt->out;
        for (unsigned i = 0; i < opt->nr_ports; i++) {
            argv[n++] = "--port";
            argv[n++] = opt->ports[i];
        }
        break;
    case VMM_DEV_RNG:
        break;
    case VMM_DEV_FS:
        return -EINVAL;
    }
    argv[n] = NULL;
    return 0;
}
