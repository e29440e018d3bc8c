/* SPDX-License-Identifier: BSD-2-Clause */
#include "backends/common/backend_vq.h"

#include <errno.h>

int backend_add_used(struct vq *vq, uint16_t head, uint32_t len)
{
    int r = vq_add_used(vq, head, len);
    if (r == -ENOSPC) {
        r = vq_publish_used(vq);
        if (r == 0)
            r = vq_add_used(vq, head, len);
    }
    return r;
}

int backend_batch_end(struct vq *vq, int r)
{
    /* Entries staged before a failure still go to the driver. */
    int p = vq_publish_used(vq);
    if (r < 0)
        return r;
    if (p < 0)
        return p;
    return vq_avail_notify_enable(vq);
}
