/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fault injection of the test build bulkhead-blk-faulty (faults.h says what each fault
 * does). Only that build links this file.
 */
#include "vhost/faults.h"

#include "core/log.h"
#include "vhost/vhost_user.h"
#include "virtio/virtio_ring.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/** The faults of faults.h, in FAULTS_KINDS order after FAULT_NONE. */
enum fault_kind {
    FAULT_NONE,
    FAULT_BAD_USED_ID,
    FAULT_USED_TWICE,
    FAULT_LEN_OVER,
    FAULT_IDX_JUMP,
    FAULT_NO_REPLY,
    FAULT_CLOSE_MID_REQUEST,
    FAULT_BAD_CONFIG_SIZE,
    FAULT_STALL,
    FAULT_FORBIDDEN_CALL,
};

static const char *const kind_names[] = {
    [FAULT_BAD_USED_ID] = "bad-used-id",
    [FAULT_USED_TWICE] = "used-twice",
    [FAULT_LEN_OVER] = "len-over",
    [FAULT_IDX_JUMP] = "idx-jump",
    [FAULT_NO_REPLY] = "no-reply",
    [FAULT_CLOSE_MID_REQUEST] = "close-mid-request",
    [FAULT_BAD_CONFIG_SIZE] = "bad-config-size",
    [FAULT_STALL] = "stall",
    [FAULT_FORBIDDEN_CALL] = "forbidden-call",
};

/** Where a connection's data-path fault stands. */
enum phase {
    PHASE_COUNTING, /**< Good completions so far: fewer than @c after. */
    PHASE_HOLDING,  /**< used-twice: the victim is held, waiting for the next completion. */
    PHASE_PUBLISH,  /**< The bad entries are written; the next publish of @c vq shows them. */
    PHASE_SPENT,    /**< Done: the used rings are left as the fault made them. */
};

/* The process's fault, and the state of the connection being served (one at a time). */
static enum fault_kind kind;
static unsigned after = FAULTS_DEFAULT_AFTER;
static enum phase phase;
static unsigned completions;
static const struct vq *fault_vq; /* the queue the fault is on (held or bad entries) */
static int conn_sock = -1;
static bool silent;

int faults_set(const char *name)
{
    for (unsigned k = 1; k < sizeof(kind_names) / sizeof(kind_names[0]); k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            kind = (enum fault_kind)k;
            return 0;
        }
    }
    return -EINVAL;
}

void faults_set_after(unsigned n)
{
    after = n;
}

void faults_connection(int sock)
{
    phase = PHASE_COUNTING;
    completions = 0;
    fault_vq = NULL;
    conn_sock = sock;
    silent = false;
}

/* Rewrite the used element just added (slot used_idx + used_pending - 1), as the peer sees it. */
static void patch_last_used(struct vq *vq, uint32_t id, uint32_t len)
{
    uint16_t slot = (uint16_t)(vq->used_idx + vq->used_pending - 1u) & (uint16_t)(vq->size - 1u);
    uint8_t *e = vq->used + VIRTQ_RING_ENTRIES_OFF + (size_t)slot * sizeof(struct virtq_used_elem);
    __atomic_store_n((uint32_t *)(void *)e, htole32(id), __ATOMIC_RELAXED);
    __atomic_store_n((uint32_t *)(void *)(e + 4), htole32(len), __ATOMIC_RELAXED);
}

/* The victim: the first completion after the good ones. */
static int strike(struct vq *vq, uint16_t head, uint32_t len)
{
    int r = 0;
    fault_vq = vq;
    switch (kind) {
    case FAULT_BAD_USED_ID:
        r = vq_add_used(vq, head, len);
        if (r == 0)
            patch_last_used(vq, (uint32_t)vq->size + head, len);
        log_warn("fault: head %u returned as used id %u", head, (unsigned)vq->size + head);
        phase = PHASE_PUBLISH;
        break;
    case FAULT_LEN_OVER:
        r = vq_add_used(vq, head, len + 1u);
        log_warn("fault: head %u returned with used len %u, one more than written", head, len + 1u);
        phase = PHASE_PUBLISH;
        break;
    case FAULT_IDX_JUMP:
        r = vq_add_used(vq, head, len);
        phase = PHASE_PUBLISH;
        break;
    case FAULT_USED_TWICE:
        log_warn("fault: head %u held back; the next completion is returned twice", head);
        phase = PHASE_HOLDING;
        break;
    case FAULT_CLOSE_MID_REQUEST:
        log_warn("fault: head %u never returned; shutting the connection down", head);
        if (conn_sock >= 0 && shutdown(conn_sock, SHUT_RDWR) != 0)
            log_warn("fault: shutdown: %s", strerror(errno));
        phase = PHASE_SPENT;
        break;
    case FAULT_STALL:
        log_warn("fault: head %u and every later request never returned; connection kept", head);
        phase = PHASE_SPENT;
        break;
    case FAULT_FORBIDDEN_CALL: {
        /* What a compromised backend might try: an internet socket. Under --sandbox the
         * call never runs and the process ends (the supervisor names the call); without
         * it, the socket is closed and the request completes. */
        log_warn("fault: opening an AF_INET socket, outside every backend's allowlist");
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0)
            close(fd);
        r = vq_add_used(vq, head, len);
        kind = FAULT_NONE; /* once: the rest is served as usual */
        break;
    }
    default:
        r = vq_add_used(vq, head, len);
        break;
    }
    return r;
}

int faults_add_used(struct vq *vq, uint16_t head, uint32_t len)
{
    switch (phase) {
    case PHASE_COUNTING:
        if (kind == FAULT_NONE || kind == FAULT_NO_REPLY || kind == FAULT_BAD_CONFIG_SIZE ||
            completions < after) {
            completions++;
            return vq_add_used(vq, head, len);
        }
        return strike(vq, head, len);
    case PHASE_HOLDING: {
        if (vq != fault_vq)
            return vq_add_used(vq, head, len);
        log_warn("fault: head %u returned twice", head);
        int r = vq_add_used(vq, head, len);
        if (r == 0)
            r = vq_add_used(vq, head, len);
        phase = PHASE_PUBLISH;
        return r;
    }
    case PHASE_PUBLISH:
        return vq == fault_vq ? 0 : vq_add_used(vq, head, len);
    default:
        return 0;
    }
}

int faults_publish_used(struct vq *vq)
{
    if (phase == PHASE_SPENT)
        return 0;
    if (phase != PHASE_PUBLISH || vq != fault_vq)
        return vq_publish_used(vq);
    int r = vq_publish_used(vq);
    if (r == 0 && kind == FAULT_IDX_JUMP) {
        /* After the real publish, so that the frontend is notified; it finds this value when
         * it reads the index for that notification, as nothing rewrites it any more. One more
         * than the Queue Size: ahead of anything a full ring could have in flight. */
        uint16_t jumped = (uint16_t)(vq->used_idx + vq->size + 1u);
        __atomic_store_n((uint16_t *)(void *)(vq->used + VIRTQ_RING_IDX_OFF), htole16(jumped),
                         __ATOMIC_RELEASE);
        log_warn("fault: used idx %u published as %u", vq->used_idx, jumped);
    }
    phase = PHASE_SPENT;
    return r;
}

bool faults_drop_message(uint32_t request)
{
    if (kind != FAULT_NO_REPLY)
        return false;
    if (!silent && request == VHOST_USER_SET_MEM_TABLE) {
        log_warn("fault: SET_MEM_TABLE and every later message go unanswered");
        silent = true;
    }
    return silent;
}

uint32_t faults_config_size(uint32_t size)
{
    if (kind != FAULT_BAD_CONFIG_SIZE)
        return size;
    uint32_t wrong = size > 4 ? size - 4 : size + 4;
    log_warn("fault: GET_CONFIG of %u bytes answered with %u", size, wrong);
    return wrong;
}
