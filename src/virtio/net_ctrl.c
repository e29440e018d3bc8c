/* SPDX-License-Identifier: BSD-2-Clause */
#include "virtio/net_ctrl.h"

#include <errno.h>
#include <string.h>

/* virtio 1.2 §5.1.6.5: the ack values, and the one class this device implements. */
#define VIRTIO_NET_OK                   0
#define VIRTIO_NET_ERR                  1
#define VIRTIO_NET_CTRL_MQ              4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0

void net_ctrl_reset(struct net_ctrl *c, uint16_t max_pairs)
{
    vq_disable(&c->vq);
    c->max_pairs = max_pairs;
    c->pairs = 1;
}

int net_ctrl_start(struct net_ctrl *c, const struct guest_mem *mem, const struct vq_config *cfg)
{
    return vq_enable(&c->vq, mem, cfg);
}

/* The command's verdict; @p changed is set when the active pairs move. */
static uint8_t execute(struct net_ctrl *c, const uint8_t *cmd, uint64_t n, bool *changed)
{
    if (n < 2 || cmd[0] != VIRTIO_NET_CTRL_MQ || cmd[1] != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET)
        return VIRTIO_NET_ERR;
    if (n != 4) /* the class, the command and one le16 */
        return VIRTIO_NET_ERR;
    uint16_t pairs = (uint16_t)(cmd[2] | cmd[3] << 8);
    if (pairs < 1 || pairs > c->max_pairs)
        return VIRTIO_NET_ERR;
    if (pairs != c->pairs) {
        c->pairs = pairs;
        *changed = true;
    }
    return VIRTIO_NET_OK;
}

/* One chain: copy the command out, execute it, write the ack. Returns the used length,
 * or a negative errno when the ring is malformed. */
static int serve(struct net_ctrl *c, uint16_t head, bool *changed)
{
    struct vq_iovec iov[NET_CTRL_MAX_SEGS];
    struct vq_chain ch;
    int r = vq_walk_chain(&c->vq, head, VQ_ACCESS_ANY, iov, NET_CTRL_MAX_SEGS, &ch);
    if (r != 0 && r != -ENOBUFS)
        return r;
    uint8_t verdict = VIRTIO_NET_ERR;
    if (r == 0 && ch.nr_writable > 0 && ch.readable_bytes <= NET_CTRL_MAX_CMD) {
        uint8_t cmd[NET_CTRL_MAX_CMD];
        uint64_t n = 0;
        for (unsigned i = 0; i < ch.nr_readable; i++) {
            memcpy(cmd + n, iov[i].base, iov[i].len);
            n += iov[i].len;
        }
        verdict = execute(c, cmd, n, changed);
    }
    c->commands++;
    if (verdict != VIRTIO_NET_OK)
        c->refused++;
    if (r != 0 || ch.nr_writable == 0)
        return 0; /* no room for an ack we could reach: completed empty */
    /* The ack is the first writable byte, and the used length says one byte. */
    *(volatile uint8_t *)iov[ch.nr_readable].base = verdict;
    return 1;
}

int net_ctrl_process(struct net_ctrl *c, struct net_ctrl_result *res)
{
    *res = (struct net_ctrl_result){0};
    if (!c->vq.enabled)
        return -ENODEV;
    uint16_t head;
    int r;
    bool done = false;
    for (;;) {
        while ((r = vq_pop_avail(&c->vq, &head)) == 1) {
            int len = serve(c, head, &res->pairs_changed);
            if (len < 0)
                return len;
            if ((r = vq_push_used(&c->vq, head, (uint32_t)len)) != 0)
                return r;
            done = true;
        }
        if (r < 0)
            return r;
        /* Kicks back on (EVENT_IDX: avail_event moves up), then one more look for what
         * came in before the driver could see that. */
        if ((r = vq_avail_notify_enable(&c->vq)) != 1)
            break;
    }
    if (r < 0)
        return r;
    /* One notification for the batch (the driver usually waits for one command). */
    if (done && vq_should_notify(&c->vq)) {
        res->notify = true;
        c->notifies++;
    }
    return 0;
}
