/* SPDX-License-Identifier: BSD-2-Clause */
#include "vmm/vhost_dev.h"

#include "core/log.h"
#include "core/os.h"
#include "devices/pci/pci_host.h"
#include "host/bounce.h"
#include "host/control.h"
#include "host/event_loop.h"
#include "host/sched.h"
#include "host/unix_sock.h"
#include "platform/platform.h"
#include "vhost/frontend.h"
#include "virtio/isolated.h"
#include "virtio/net_ctrl.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtio_ring.h"
#include "vmm/vhost_kind.h"
#include "vmm/vm.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Queues a device may have: a disk's (bulkhead-blk and qemu-storage-daemon offer a few),
 * a console's port pairs, a NIC's queue pairs and its control queue. */
#define VHOST_DEV_MAX_QUEUES (2 * VMM_MAX_NET_PAIRS + 1)
_Static_assert(VHOST_DEV_MAX_QUEUES >= VMM_MAX_DISK_QUEUES, "a disk's queues must fit");
/* Queue Size offered to the guest. */
#define VHOST_DEV_QUEUE_SIZE 256
/* virtio-blk: size_max and seg_max in the configuration are valid (virtio 1.2 §5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
/* Offsets of size_max and seg_max (le32) in struct virtio_blk_config. */
#define VIRTIO_BLK_CONFIG_SIZE_MAX 8
#define VIRTIO_BLK_CONFIG_SEG_MAX  12

/* Restarting a backend that failed. At most restarts= (default 5) new backends (children
 * started, or connections made) in a row none of which lasted RESTART_WINDOW_NS: a backend
 * that fails every time, at once or after a while (hostile, broken, hung), is given up on
 * instead of being restarted for ever; one that served for a minute starts the count
 * afresh. restarts=0 never gives up: a supervisor that restarts the backend by its own
 * policy (bulkhead up) decides, and the VMM reconnects whenever it is back. The first
 * retry comes after RETRY_FIRST_MS, each next one after twice as long, at most
 * RETRY_MAX_MS. */
#define RESTART_WINDOW_NS (60ull * 1000000000ull)
#define RETRY_FIRST_MS    50u
#define RETRY_MAX_MS      1000u
/* socket=: a backend that is not back after this long has its requests failed with I/O
 * errors (isolated mode), so the guest does not wait for ever; the VMM keeps trying to
 * reconnect and the device works again when it is back. */
#define ABSENT_FAIL_NS (10ull * 1000000000ull)

/* virtio-net: a NIC with several queue pairs has a control queue, which the VMM serves. */
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_MQ      22

/* Isolated mode. The bounce region sits at this address of the backend's memory view:
 * any made-up base would do (the backend never learns a guest address), and one away
 * from 0 keeps a ring from ever lying at address 0. */
#define ISO_BOUNCE_GPA (1ull << 30)
/* Largest data segment offered to the guest in isolated mode (size_max). */
#define ISO_SIZE_MAX (128u << 10)

/* Feature bits a backend may offer through this VMM: the device-specific ones and the ring
 * features the transport and virtqueue code implement. Anything else (packed rings,
 * notification data, access-platform) is not passed to the guest. */
#define PASSABLE_FEATURES                                                                          \
    (((1ull << 24) - 1) | 1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX |            \
     1ull << VIRTIO_F_VERSION_1)

/** Work the transport's hooks hand to the device thread. */
enum cmd_bits {
    CMD_START = 1u << 0,  /**< DRIVER_OK: give the backend the memory table and the rings. */
    CMD_RESET = 1u << 1,  /**< The driver reset the device: stop the rings, then report. */
    CMD_WATCH = 1u << 2,  /**< A queue's irqfd was attached or detached: (un)watch its call. */
    CMD_QUIT = 1u << 3,   /**< The VM is going away. */
    CMD_CONFIG = 1u << 4, /**< The driver wrote the device configuration: pass it on. */
};

/** One queue's host side. */
struct vdq {
    struct vhost_dev *dev; /**< Owner, for the loop's callbacks. */
    uint16_t index;        /**< Queue index. */
    int kick_fd;           /**< Guest doorbell (ioeventfd): the backend's kick when shared,
                                the device thread's when isolated. */
    int call_fd;           /**< Backend's call: irqfd while routed (shared); always the
                                device thread's (isolated). */
    int bkick_fd;          /**< Isolated: the backend's kick, written by the device thread. */
    int irq_fd;            /**< The queue's interrupt: an irqfd on its MSI route while the
                                vector is open, else watched by the device thread. Shared:
                                call_fd itself; isolated: written by the device thread. */
    int err_fd;            /**< Backend reports a broken ring. */
    bool doorbell;         /**< kick_fd is registered as the doorbell at doorbell_gpa. */
    uint64_t doorbell_gpa; /**< Where. */
    bool has_route;        /**< gsi holds an MSI route. */
    uint32_t gsi;          /**< Its GSI. */
    bool irqfd;            /**< call_fd is attached to gsi. */
    bool watch_call;       /**< Set under the transport lock: the thread must watch call_fd. */
    bool watched;          /**< Device thread: call_fd is in its loop. */
    bool enabled;          /**< The driver enabled it (cfg valid). */
    bool running;          /**< Device thread: the backend has the ring. */
    struct vq_config cfg;  /**< As the driver programmed it. */
    bool iso_started;      /**< Device thread: iso_guest_start() done, no iso_stop() since. */
    bool guest_broken;     /**< Device thread: the guest's ring was reported malformed. */
    struct iso_queue iso;  /**< Isolated: the guest's queue and its shadow queue. */
    void *iso_storage;     /**< Its private storage (VMM heap, out of everyone's reach). */
    uint16_t base;         /**< Shared: where a backend starts in the avail ring. */
    uint64_t progress_ns;  /**< Isolated: last time the backend completed a request, or had
                                none to complete. */
    uint64_t guest_kicks;  /**< Counter (isolated): guest doorbell writes taken. */
    uint64_t forwarded;    /**< Counter (shared): backend calls delivered by the VMM. */
};

/** A vhost-user virtio-pci device. */
struct vhost_dev {
    struct vm *vm;                      /**< Guest RAM and platform. */
    char name[32];                      /**< "disk0". */
    struct virtio_pci vp;               /**< What the guest sees. */
    bool vp_ready;                      /**< vp initialised. */
    struct vhost_frontend fe;           /**< The backend connection. */
    pid_t child;                        /**< bulkhead-blk we started, or 0. */
    uint16_t nq;                        /**< Queues the backend serves. */
    uint16_t nq_all;                    /**< Queues the guest sees: nq, and the control queue
                                             (index nq) when has_ctrl. */
    bool has_ctrl;                      /**< A NIC with several pairs: the VMM serves its
                                             control queue (virtio/net_ctrl.h). */
    struct net_ctrl ctrl;               /**< Device thread: that control queue. */
    struct vdq q[VHOST_DEV_MAX_QUEUES]; /**< The first nq are in use. */
    uint64_t features;                  /**< Negotiated at DRIVER_OK. */
    unsigned cmd;                       /**< enum cmd_bits, atomic. */
    int cmd_fd;                         /**< Eventfd: cmd has bits. */
    struct event_loop loop;             /**< The device thread's. */
    bool loop_ready;                    /**< Loop initialised. */
    pthread_t thread;                   /**< The device thread. */
    bool thread_started;                /**< It was created. */
    bool broken;                        /**< Given up on the backend for good. */
    const struct vmm_device *opt;       /**< The device option: how to reach a backend. */
    const struct vhost_kind *kind;      /**< What its device type needs. */
    bool connected;                     /**< fe is a live connection (else: reconnecting). */
    bool driver_ok;                     /**< Device thread: started by the driver, not reset. */
    bool rings_lost;                    /**< Shared: a lost backend held the guest's rings. */
    uint64_t offered;                   /**< Device features offered to the guest. */
    int retry_fd;                       /**< Timerfd: next restart attempt. */
    int watch_fd;                       /**< Timerfd, isolated: each second, look for a
                                             backend that holds requests and completes none. */
    unsigned retry_ms;                  /**< Delay of the next attempt. */
    uint64_t connected_ns;              /**< When the current backend was reached. */
    unsigned failures;                  /**< New backends in a row that did not last. */
    uint64_t lost_ns;                   /**< When the connection was lost. */
    bool absent_failed;                 /**< Requests are being failed while it is absent. */
    uint64_t restarts;                  /**< Counter: backends brought back. */
    bool isolated;                      /**< mode=isolated: the backend sees the bounce region. */
    bool polling;                       /**< Device thread: in a polling window (poll_rings()). */
    bool poll_work;                     /**< Device thread: a kick or call was just handled. */
    uint64_t poll_last_ns;              /**< Device thread: when polling last found work. */
    struct bounce_region bounce;        /**< Isolated: the region the backend maps. */
    struct guest_mem bounce_mem;        /**< Isolated: its view at ISO_BOUNCE_GPA. */
    uint64_t guest_only_features;       /**< Offered to the guest, not asked of the backend. */
    pthread_mutex_t cfg_lock;           /**< Guards cfg_written and cfg_dirty. */
    uint8_t cfg_written[VHOST_KIND_CONFIG_MAX]; /**< Bytes the driver wrote, not yet sent. */
    uint8_t config[VHOST_KIND_CONFIG_MAX];      /**< The configuration the guest starts with. */
    uint64_t cfg_dirty;                         /**< Bit i: byte i of cfg_written is waiting. */
};

/* --- the backend's process or socket ------------------------------------------------ */

/* The backend programs live beside bulkhead-vmm (all are built into build/). */
static int backend_path(const char *program, char *buf, size_t len)
{
    /* $BULKHEAD_BIN_DIR first: in a sandbox whose root was built from bind mounts,
     * /proc/self/exe names the program by a path of the mount it came from, which need not
     * exist in the new root (bulkhead up sets it to the directory it binds). */
    const char *dir = getenv("BULKHEAD_BIN_DIR");
    ssize_t n;
    if (dir != NULL && dir[0] == '/') {
        n = snprintf(buf, len, "%s/", dir);
        if (n < 0 || (size_t)n >= len)
            return -ENAMETOOLONG;
    } else {
        n = readlink("/proc/self/exe", buf, len - 1);
        if (n <= 0)
            return -errno;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    size_t need = strlen(program) + 2;
    if (slash == NULL || (size_t)(slash - buf) + need > len)
        return -ENAMETOOLONG;
    snprintf(slash, need, "/%s", program);
    return access(buf, X_OK) == 0 ? 0 : -errno;
}

/* Start the device's own backend program on one end of a socketpair; the other end is
 * the frontend's. */
static int spawn_child(struct vhost_dev *d, int *sock)
{
    char exe[PATH_MAX];
    int r = backend_path(d->kind->program, exe, sizeof(exe));
    if (r != 0) {
        log_error("%s: cannot find the %s program beside bulkhead-vmm: %s", d->name,
                  d->kind->program, strerror(-r));
        return r;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    const char *level = log_get_level() >= LOG_DEBUG  ? "debug"
                        : log_get_level() >= LOG_INFO ? "info"
                                                      : "warn";
    /* The child gets its end as descriptor 3 (dup2 clears close-on-exec there only). */
    struct vhost_kind_argbuf buf;
    const char *argv[VHOST_KIND_MAX_ARGS];
    if ((r = vhost_kind_argv(d->opt, exe, level, host_sched_name(host_sched_current()), &buf,
                             argv)) != 0) {
        close(sv[0]);
        close(sv[1]);
        return r;
    }
    /* posix_spawn, not fork: the VMM is multi-threaded (other devices' threads already
     * run), and a vfork-style spawn copies no page tables of the VMM and runs nothing of
     * it in the child before exec. */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = -1;
    r = posix_spawn_file_actions_init(&fa);
    if (r == 0) {
        r = posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        if (r == 0 && (r = posix_spawnattr_init(&attr)) == 0) {
            r = posix_spawnattr_setsigmask(&attr, &none);
            /* A process group of its own: a Ctrl-C or SIGTERM meant for the VMM's group
             * must not take the disk away from a guest that is being shut down. The
             * child still ends with the VMM: its socket closes. */
            if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
            if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
            if (r == 0)
                r = posix_spawn(&pid, exe, &fa, &attr, (char *const *)argv, environ);
            posix_spawnattr_destroy(&attr);
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    if (r != 0) {
        close(sv[0]);
        close(sv[1]);
        return -r;
    }
    close(sv[1]);
    d->child = pid;
    *sock = sv[0];
    return 0;
}

/* Connect to a backend listening at @p path (socket=PATH). */
static int connect_socket(const char *path, int *sock)
{
    int fd = unix_connect(path, 0);
    if (fd < 0)
        return fd;
    *sock = fd;
    return 0;
}

/* --- hooks of the transport (vCPU threads, transport lock held: hand over, never wait) - */

static void post(struct vhost_dev *d, unsigned bits)
{
    __atomic_or_fetch(&d->cmd, bits, __ATOMIC_ACQ_REL);
    uint64_t one = 1;
    if (write(d->cmd_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("%s: cannot wake the device thread: %s", d->name, strerror(errno));
}

static int dev_features_ok(void *opaque, uint64_t features)
{
    struct vhost_dev *d = opaque;
    /* The control queue is at index 2 * max_virtqueue_pairs only with MQ; without it, it
     * would be at index 2, which this device gives the backend. A driver takes both or
     * neither (MQ needs CTRL_VQ). */
    const uint64_t ctrl_mq = 1ull << VIRTIO_NET_F_CTRL_VQ | 1ull << VIRTIO_NET_F_MQ;
    if (d->has_ctrl && (features & ctrl_mq) != 0 && (features & ctrl_mq) != ctrl_mq)
        return -EINVAL;
    /* The transport checked that these were offered; the backend offered them too (or
     * the VMM implements them itself: isolated mode's request-size limits). */
    return (features & ~(d->fe.backend_features | d->guest_only_features)) == 0 ? 0 : -EINVAL;
}

static int dev_queue_enable(void *opaque, uint16_t queue, const struct vq_config *cfg)
{
    struct vhost_dev *d = opaque;
    if (queue >= d->nq_all)
        return -EINVAL;
    d->q[queue].cfg = *cfg;
    d->q[queue].enabled = true;
    return 0;
}

static int dev_start(void *opaque, uint64_t features)
{
    struct vhost_dev *d = opaque;
    /* An isolated device whose backend is gone still starts: its queues fail each request
     * with an I/O error, which is how the guest learns (do_start_isolated()). */
    if (d->broken && !d->isolated)
        return -EIO;
    d->features = features;
    post(d, CMD_START);
    return 0;
}

static int dev_reset(void *opaque)
{
    struct vhost_dev *d = opaque;
    for (unsigned i = 0; i < d->nq_all; i++)
        d->q[i].enabled = false;
    post(d, CMD_RESET);
    return VIRTIO_PCI_RESET_PENDING;
}

/* vCPU thread: note the bytes and let the device thread send them (SET_CONFIG waits for
 * the backend's reply, which a vCPU must never do). virtio-blk's writable field is
 * `writeback` (VIRTIO_BLK_F_CONFIG_WCE): the guest switching the cache mode must reach
 * the backend, or its flushes would not mean what it thinks. */
static void dev_config_write(void *opaque, uint32_t offset, unsigned size, uint64_t value)
{
    struct vhost_dev *d = opaque;
    uint32_t csize = d->kind->config_size;
    /* A configuration the VMM made has no writable field a backend must hear of. */
    if (!d->kind->backend_config || offset >= csize || size > csize - offset)
        return;
    pthread_mutex_lock(&d->cfg_lock);
    for (unsigned i = 0; i < size; i++) {
        d->cfg_written[offset + i] = (uint8_t)(value >> (8 * i));
        d->cfg_dirty |= 1ull << (offset + i);
    }
    pthread_mutex_unlock(&d->cfg_lock);
    post(d, CMD_CONFIG);
}

static void dev_queue_notify(void *opaque, uint16_t queue)
{
    struct vhost_dev *d = opaque;
    /* A kick that missed the ioeventfd (another access width): pass it on by hand. */
    uint64_t one = 1;
    if (queue < d->nq_all && write(d->q[queue].kick_fd, &one, sizeof(one)) < 0)
        log_guest(LOG_DEBUG, "%s: forwarding a kick: %s", d->name, strerror(errno));
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
    struct vhost_dev *d = ctx;
    return plat_msi_send(d->vm->plat, addr, data);
}

static void m_queue_route(void *ctx, uint16_t queue, bool direct, uint64_t addr, uint32_t data)
{
    struct vhost_dev *d = ctx;
    /* Both modes: the queue's interrupt eventfd becomes an irqfd while the vector is open,
     * so KVM delivers it without a VMM thread (shared: the backend writes it; isolated: the
     * device thread). While masked, the device thread takes it and sets the pending bit. */
    if (queue >= d->nq_all)
        return;
    struct vdq *q = &d->q[queue];
    int r = 0;
    if (direct) {
        if (!q->has_route) {
            r = plat_msi_route_add(d->vm->plat, addr, data, &q->gsi);
            q->has_route = r == 0;
        } else {
            r = plat_msi_route_update(d->vm->plat, q->gsi, addr, data);
        }
        if (r == 0 && !q->irqfd) {
            r = plat_irq_notification_add(d->vm->plat, q->gsi, q->irq_fd);
            q->irqfd = r == 0;
        }
    } else if (q->irqfd) {
        r = plat_irq_notification_remove(d->vm->plat, q->gsi, q->irq_fd);
        q->irqfd = false;
    }
    if (r != 0)
        log_warn("%s: queue %u: interrupt route: %s; the VMM forwards its interrupts", d->name,
                 queue, strerror(-r));
    /* Whatever KVM does not deliver, the device thread does (and sets pending bits). */
    __atomic_store_n(&q->watch_call, !q->irqfd, __ATOMIC_RELEASE);
    post(d, CMD_WATCH);
}

static void m_doorbell(void *ctx, uint16_t queue, bool mapped, uint64_t gpa)
{
    struct vhost_dev *d = ctx;
    if (queue >= d->nq_all)
        return;
    struct vdq *q = &d->q[queue];
    if (q->doorbell) {
        plat_doorbell_remove(d->vm->plat, PLAT_SPACE_MMIO, q->doorbell_gpa, VIRTIO_PCI_NOTIFY_WIDTH,
                             q->kick_fd);
        q->doorbell = false;
    }
    if (mapped) {
        int r = plat_doorbell_add(d->vm->plat, PLAT_SPACE_MMIO, gpa, VIRTIO_PCI_NOTIFY_WIDTH,
                                  q->kick_fd);
        if (r == 0) {
            q->doorbell = true;
            q->doorbell_gpa = gpa;
        } else {
            log_warn("%s: queue %u: no doorbell object (%s); kicks take the slow path", d->name,
                     queue, strerror(-r));
        }
    }
}

static const struct virtio_pci_machine_ops machine_ops = {
    .msi_send = m_msi_send,
    .queue_route = m_queue_route,
    .doorbell = m_doorbell,
};

/* --- the device thread ------------------------------------------------------------- */

/* Isolated mode: act on what an iso_* call asks for. */
static void iso_apply(struct vdq *q, unsigned flags)
{
    if (flags & ISO_KICK_BACKEND) {
        uint64_t one = 1;
        if (write(q->bkick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("%s: queue %u: cannot kick the backend: %s", q->dev->name, q->index,
                     strerror(errno));
    }
    if (flags & ISO_NOTIFY_GUEST) {
        /* Through the queue's irqfd (or, while masked, on_call() and the transport). */
        uint64_t one = 1;
        if (write(q->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("%s: queue %u: cannot interrupt the guest: %s", q->dev->name, q->index,
                     strerror(errno));
    }
}

/* The guest's own ring is malformed: only a reset of this device cures that. */
static void iso_guest_error(struct vdq *q, int err)
{
    if (q->guest_broken)
        return;
    q->guest_broken = true;
    const char *why = q->iso.guest.broken_reason;
    log_guest(LOG_WARN, "%s: queue %u: malformed guest ring (%s: %s); the device needs a reset",
              q->dev->name, q->index, why != NULL ? why : "?", strerror(-err));
    virtio_pci_set_needs_reset(&q->dev->vp, "malformed ring");
}

/* Run one step of isolated mode on a started queue and act on its outcome: the
 * notifications it asks for, and a malformed guest ring. */
static void iso_step(struct vdq *q, int (*step)(struct iso_queue *, unsigned *))
{
    if (!q->iso_started)
        return;
    unsigned flags = 0;
    int r = step(&q->iso, &flags);
    iso_apply(q, flags);
    if (r < 0 && r != -ENODEV)
        iso_guest_error(q, r);
}

/* Complete what the backend holds, and everything the guest sends from now on, with
 * I/O errors. */
static void iso_fail_queue(struct vdq *q)
{
    iso_step(q, iso_fail_inflight);
}

static void disconnect(struct vhost_dev *d);
static void backend_lost(struct vhost_dev *d, const char *what, int err);
static void on_socket(void *opaque, uint32_t events);
static int make_eventfd(int *fd);

/* Give up on the backend for good (it failed too often, or cannot be replaced). Shared:
 * the guest's driver is told through DEVICE_NEEDS_RESET. Isolated: the VMM knows every
 * request in flight and completes each with an I/O error, so the guest never waits for
 * a backend that is gone. Nothing else of the VM is affected either way. */
static void fail_backend(struct vhost_dev *d, const char *what, int err)
{
    if (d->broken)
        return;
    d->broken = true;
    if (d->connected)
        disconnect(d);
    struct itimerspec off = {0};
    (void)timerfd_settime(d->retry_fd, 0, &off, NULL);
    if (!d->isolated) {
        log_error("%s: backend %s: %s; the device needs a reset", d->name, what, strerror(-err));
        virtio_pci_set_needs_reset(&d->vp, "backend failed");
        return;
    }
    log_error("%s: backend %s: %s; the device's requests fail with I/O errors", d->name, what,
              strerror(-err));
    for (unsigned i = 0; i < d->nq; i++)
        iso_fail_queue(&d->q[i]);
}

/* Isolated mode: take what the guest made available (also kicks that came before the
 * start, which nothing forwarded). */
static void iso_process_kick(struct vdq *q)
{
    iso_step(q, iso_guest_kick);
}

/* Take a queue's doorbell eventfd, counting the guest's writes since the last read;
 * false when there was none. */
static bool take_kicks(struct vdq *q)
{
    uint64_t v;
    if (read(q->kick_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return false;
    __atomic_store_n(&q->guest_kicks, q->guest_kicks + v, __ATOMIC_RELAXED);
    return true;
}

static void on_iso_kick(void *opaque, uint32_t events)
{
    struct vdq *q = opaque;
    (void)events;
    if (!take_kicks(q))
        return;
    q->dev->poll_work = true;
    iso_process_kick(q);
}

/* Isolated mode: a step that takes the backend's completions (iso_backend_call() or
 * iso_poll()), with what follows from a backend that broke the shadow ring. */
static void iso_backend_step(struct vdq *q, int (*step)(struct iso_queue *, unsigned *))
{
    if (!q->iso_started)
        return;
    unsigned flags = 0;
    unsigned before = iso_inflight(&q->iso);
    int r = step(&q->iso, &flags);
    if (iso_inflight(&q->iso) < before)
        q->progress_ns = os_monotonic_ns();
    iso_apply(q, flags);
    if (r == -EREMOTEIO) {
        const char *why = q->iso.shadow.broken_reason;
        log_error("%s: queue %u: backend broke the shadow ring: %s", q->dev->name, q->index,
                  why != NULL ? why : "?");
        backend_lost(q->dev, "broke the protocol", r);
    } else if (r < 0 && r != -ENODEV) {
        iso_guest_error(q, r);
    }
}

static void on_iso_call(void *opaque, uint32_t events)
{
    struct vdq *q = opaque;
    uint64_t v;
    (void)events;
    if (read(q->call_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return;
    q->dev->poll_work = true;
    iso_backend_step(q, iso_backend_call);
}

/*
 * Isolated mode's polling (poll=): after work, the device thread keeps looking at the
 * rings instead of sleeping, with the guest's kicks and the backend's interrupts left
 * off, until poll_us pass without work. In the test host a thread's wake-up costs more
 * than a request, so a request that completes within the window costs neither side a
 * notification; an idle VM costs nothing, since polling starts only after work.
 */
static void poll_mode(struct vhost_dev *d, bool on)
{
    d->polling = on;
    for (unsigned i = 0; i < d->nq; i++)
        iso_set_polling(&d->q[i].iso, on);
    if (on)
        return;
    /* Notifications back on, and whatever came in between taken. */
    for (unsigned i = 0; i < d->nq; i++) {
        iso_step(&d->q[i], iso_guest_kick);
        iso_backend_step(&d->q[i], iso_backend_call);
    }
}

/* After a round of the loop: start, continue or end a polling window. */
static void poll_rings(struct vhost_dev *d)
{
    uint64_t now = os_monotonic_ns();
    if (d->poll_work) {
        d->poll_work = false;
        d->poll_last_ns = now;
        if (!d->polling)
            poll_mode(d, true);
    }
    if (!d->polling)
        return;
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (q->iso_started && iso_poll_ready(&q->iso)) {
            iso_backend_step(q, iso_poll);
            d->poll_last_ns = now;
        }
    }
    if (now - d->poll_last_ns > (uint64_t)d->opt->poll_us * 1000u)
        poll_mode(d, false);
}

/* --- a NIC's control queue --------------------------------------------------------- */

/* Tell the backend which queue pairs are active: SET_VRING_ENABLE 1 for the rings of the
 * first ctrl.pairs pairs, 0 for the others (vhost-user's rule for multi-queue NICs: a
 * backend delivers received packets only to enabled rings). */
static int apply_pairs(struct vhost_dev *d)
{
    if (!d->has_ctrl || !d->connected || d->broken)
        return 0;
    uint16_t pairs = d->ctrl.pairs;
    for (unsigned i = 0; i < d->nq; i++) {
        if (!d->q[i].running)
            continue;
        int r = vhost_fe_vring_enable(&d->fe, i, i / 2 < pairs);
        if (r != 0)
            return r;
    }
    return 0;
}

/* Answer the driver's commands and act on them. */
static void ctrl_process(struct vhost_dev *d)
{
    struct net_ctrl_result res;
    int r = net_ctrl_process(&d->ctrl, &res);
    if (r == -ENODEV)
        return;
    if (r < 0) {
        /* The queue stays broken (and quiet) until the driver resets the device. */
        const char *why = d->ctrl.vq.broken_reason;
        log_guest(LOG_WARN, "%s: malformed control queue (%s: %s); the device needs a reset",
                  d->name, why != NULL ? why : "?", strerror(-r));
        net_ctrl_reset(&d->ctrl, d->ctrl.max_pairs);
        virtio_pci_set_needs_reset(&d->vp, "malformed control queue");
        return;
    }
    if (res.pairs_changed) {
        log_info("%s: the driver uses %u of %u queue pairs", d->name, d->ctrl.pairs,
                 d->ctrl.max_pairs);
        if ((r = apply_pairs(d)) != 0)
            backend_lost(d, "refused a ring's enable state", r);
    }
    if (res.notify) {
        uint64_t one = 1;
        if (write(d->q[d->nq].irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("%s: cannot interrupt the guest: %s", d->name, strerror(errno));
    }
}

static void on_ctrl_kick(void *opaque, uint32_t events)
{
    struct vdq *q = opaque;
    (void)events;
    if (take_kicks(q))
        ctrl_process(q->dev);
}

/* DRIVER_OK: one active pair (the spec's default) until the driver says otherwise. */
static void start_ctrl(struct vhost_dev *d)
{
    if (!d->has_ctrl)
        return;
    struct vdq *q = &d->q[d->nq];
    net_ctrl_reset(&d->ctrl, (uint16_t)(d->nq / 2));
    int r = apply_pairs(d);
    if (r != 0) {
        backend_lost(d, "refused a ring's enable state", r);
        return;
    }
    if (!q->enabled)
        return; /* a driver without the control queue uses one pair */
    struct vq_config cfg = q->cfg;
    cfg.features = d->features;
    if ((r = net_ctrl_start(&d->ctrl, &d->vm->mem, &cfg)) != 0) {
        log_guest(LOG_WARN,
                  "%s: the control queue's rings are unusable (%s); the device needs a "
                  "reset",
                  d->name, strerror(-r));
        virtio_pci_set_needs_reset(&d->vp, "bad control queue");
        return;
    }
    ctrl_process(d);
}

/* Shared mode: the backend gets guest RAM, one region per RAM region of the VM. */
static int send_mem_table(struct vhost_dev *d)
{
    const struct guest_mem *mem = &d->vm->mem;
    struct vhost_fe_region regions[GUEST_MEM_MAX_REGIONS];
    unsigned n = 0;
    for (unsigned i = 0; i < mem->nr_regions && n < GUEST_MEM_MAX_REGIONS; i++) {
        const struct guest_region *g = &mem->regions[i];
        regions[n++] = (struct vhost_fe_region){
            .gpa = g->gpa,
            .size = g->size,
            .fd = d->vm->ram.fd,
            .offset = (uint64_t)((const uint8_t *)g->hva - d->vm->ram.base),
        };
    }
    return vhost_fe_set_mem_table(&d->fe, regions, n);
}

/* Isolated mode: a fresh shadow ring for queue @p q, handed to the backend at base 0. */
static int start_shadow(struct vhost_dev *d, struct vdq *q, uint64_t backend_features)
{
    int r = iso_reset_shadow(&q->iso, backend_features);
    if (r != 0)
        return r;
    const struct iso_layout *l = &q->iso.layout;
    struct vhost_fe_vring ring = {
        .size = l->queue_size,
        .base = 0,
        .desc_gpa = l->desc_addr,
        .avail_gpa = l->avail_addr,
        .used_gpa = l->used_addr,
        .kick_fd = q->bkick_fd,
        .call_fd = q->call_fd,
        .err_fd = q->err_fd,
    };
    r = vhost_fe_vring_start(&d->fe, q->index, &ring);
    q->running = r == 0;
    return r;
}

/* Isolated mode: the backend gets the bounce region and shadow rings in it; the guest's
 * queues are served by the device thread. */
static void do_start_isolated(struct vhost_dev *d)
{
    /* The shadow side negotiates with the backend only what it offered; the request-size
     * limits the guest may have accepted are the VMM's own. */
    uint64_t bf = d->features & d->fe.backend_features;
    int r = 0;
    d->driver_ok = true;
    if (!d->broken && d->connected) {
        r = vhost_fe_set_features(&d->fe, bf);
        struct vhost_fe_region region = {
            .gpa = ISO_BOUNCE_GPA, .size = d->bounce.size, .fd = d->bounce.fd, .offset = 0};
        if (r == 0)
            r = vhost_fe_set_mem_table(&d->fe, &region, 1);
    }
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!q->enabled || q->iso_started)
            continue;
        struct vq_config cfg = q->cfg;
        cfg.features = d->features;
        int g = iso_guest_start(&q->iso, &d->vm->mem, &cfg);
        if (g != 0) {
            iso_guest_error(q, g);
            continue;
        }
        q->iso_started = true;
        q->guest_broken = false;
        if (d->broken || !d->connected || r != 0)
            continue;
        r = start_shadow(d, q, bf);
    }
    if (r != 0)
        backend_lost(d, "refused the device's start", r);
    for (unsigned i = 0; i < d->nq; i++) {
        if (d->broken)
            iso_fail_queue(&d->q[i]);
        else
            iso_process_kick(&d->q[i]);
    }
}

/* Shared mode: hand the backend guest RAM and the guest's rings. */
static void start_shared(struct vhost_dev *d)
{
    /* Bits the VMM provides itself (a NIC's MAC and status) are not the backend's. */
    int r = vhost_fe_set_features(&d->fe, d->features & ~d->guest_only_features);
    if (r == 0)
        r = send_mem_table(d);
    for (unsigned i = 0; r == 0 && i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!q->enabled || q->running)
            continue;
        struct vhost_fe_vring ring = {
            .size = q->cfg.size,
            .base = q->base,
            .desc_gpa = q->cfg.desc_addr,
            .avail_gpa = q->cfg.avail_addr,
            .used_gpa = q->cfg.used_addr,
            .kick_fd = q->kick_fd,
            .call_fd = q->call_fd,
            .err_fd = q->err_fd,
        };
        r = vhost_fe_vring_start(&d->fe, i, &ring);
        q->running = r == 0;
    }
    if (r != 0)
        backend_lost(d, "refused the device's start", r);
}

static void do_start(struct vhost_dev *d)
{
    if (d->isolated) {
        do_start_isolated(d);
        start_ctrl(d);
        return;
    }
    for (unsigned i = 0; i < d->nq; i++)
        d->q[i].base = 0;
    d->driver_ok = true;
    /* Without a backend now, the rings start when one is back (reattach()). */
    if (d->connected)
        start_shared(d);
    start_ctrl(d);
}

static void do_reset(struct vhost_dev *d)
{
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!q->running)
            continue;
        uint16_t next;
        int r = vhost_fe_vring_stop(&d->fe, i, &next);
        q->running = false;
        if (r != 0)
            backend_lost(d, "did not stop a ring", r);
    }
    d->driver_ok = false;
    d->rings_lost = false;
    if (d->has_ctrl) {
        uint64_t v;
        net_ctrl_reset(&d->ctrl, d->ctrl.max_pairs);
        (void)!read(d->q[d->nq].kick_fd, &v, sizeof(v));
        (void)!read(d->q[d->nq].irq_fd, &v, sizeof(v));
    }
    /* Only now, with the backend off the shadow rings, may their requests be forgotten:
     * it could still have written their bounce space. */
    for (unsigned i = 0; i < d->nq; i++) {
        if (d->q[i].iso_started) {
            iso_stop(&d->q[i].iso);
            d->q[i].iso_started = false;
        }
    }
    /* Signals of the old rings must not reach the new ones. */
    for (unsigned i = 0; i < d->nq; i++) {
        uint64_t v;
        if (read(d->q[i].kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            log_debug("%s: draining a kick: %s", d->name, strerror(errno));
        if (d->isolated) {
            (void)!read(d->q[i].call_fd, &v, sizeof(v));
            (void)!read(d->q[i].bkick_fd, &v, sizeof(v));
            (void)!read(d->q[i].irq_fd, &v, sizeof(v));
        }
    }
    virtio_pci_reset_done(&d->vp);
}

/* The backend signalled a queue while its interrupt cannot go straight to the guest (MSI-X
 * off, vector masked): the transport delivers it or sets the pending bit. */
static void on_call(void *opaque, uint32_t events)
{
    struct vdq *q = opaque;
    uint64_t v;
    (void)events;
    if (read(q->irq_fd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
        __atomic_store_n(&q->forwarded, q->forwarded + 1, __ATOMIC_RELAXED);
        virtio_pci_queue_interrupt(&q->dev->vp, q->index);
    }
}

static void on_err(void *opaque, uint32_t events)
{
    struct vdq *q = opaque;
    uint64_t v;
    (void)events;
    if (read(q->err_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        backend_lost(q->dev, "reported a broken ring", -EIO);
}

/* Bring the loop's watch of each call eventfd in line with what the routes need. */
static void update_watches(struct vhost_dev *d)
{
    for (unsigned i = 0; i < d->nq_all; i++) {
        struct vdq *q = &d->q[i];
        bool want = __atomic_load_n(&q->watch_call, __ATOMIC_ACQUIRE);
        if (want && !q->watched)
            q->watched = event_loop_add(&d->loop, q->irq_fd, EVENT_IN, on_call, q) == 0;
        else if (!want && q->watched)
            q->watched = event_loop_remove(&d->loop, q->irq_fd) != 0;
    }
}

/* Send the driver's configuration writes to the backend, a run of bytes at a time; the
 * guest sees a value once the backend has taken it (a refused write leaves the old one). */
static void do_config(struct vhost_dev *d)
{
    uint8_t bytes[VHOST_KIND_CONFIG_MAX];
    const unsigned csize = d->kind->config_size;
    pthread_mutex_lock(&d->cfg_lock);
    uint64_t dirty = d->cfg_dirty;
    memcpy(bytes, d->cfg_written, sizeof(bytes));
    d->cfg_dirty = 0;
    pthread_mutex_unlock(&d->cfg_lock);
    for (unsigned i = 0; i < csize && d->connected && !d->broken;) {
        if (!(dirty & (1ull << i))) {
            i++;
            continue;
        }
        unsigned n = 1;
        while (i + n < csize && (dirty & (1ull << (i + n))))
            n++;
        int r = vhost_fe_set_config(&d->fe, i, bytes + i, n);
        if (r == 0)
            virtio_pci_config_update(&d->vp, i, bytes + i, n, false);
        else
            log_guest(LOG_WARN,
                      "%s: the backend refused a configuration write (%u bytes at %u): %s", d->name,
                      n, i, strerror(-r));
        if (r != 0 && r != -EOPNOTSUPP && r != -EREMOTEIO && r != -EINVAL) {
            backend_lost(d, "failed a configuration write", r);
            return;
        }
        i += n;
    }
}

static void on_cmd(void *opaque, uint32_t events)
{
    struct vhost_dev *d = opaque;
    uint64_t v;
    (void)events;
    if (read(d->cmd_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    /* CMD_QUIT stays set: the thread's loop condition reads it. */
    unsigned bits = __atomic_fetch_and(&d->cmd, CMD_QUIT, __ATOMIC_ACQ_REL);
    if (bits & CMD_WATCH)
        update_watches(d);
    if (bits & CMD_RESET)
        do_reset(d);
    if ((bits & CMD_START) && (!d->broken || d->isolated))
        do_start(d);
    if (bits & CMD_CONFIG)
        do_config(d);
}

/* --- losing a backend and bringing one back (device thread) ------------------------ */

static void arm_retry(struct vhost_dev *d, unsigned ms)
{
    struct itimerspec t = {
        .it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000}};
    if (timerfd_settime(d->retry_fd, 0, &t, NULL) != 0)
        log_error("%s: cannot arm the restart timer: %s", d->name, strerror(errno));
}

/* The child we started is not left running or as a zombie: a backend that stopped
 * answering is killed, one that died is reaped. */
static void reap_child(struct vhost_dev *d)
{
    if (d->child <= 0)
        return;
    int status = 0;
    pid_t r = waitpid(d->child, &status, WNOHANG);
    if (r == 0) {
        kill(d->child, SIGKILL);
        r = waitpid(d->child, &status, 0);
    }
    if (r == d->child && WIFSIGNALED(status))
        log_info("%s: bulkhead-blk %d ended by signal %d", d->name, (int)d->child,
                 WTERMSIG(status));
    else if (r == d->child)
        log_info("%s: bulkhead-blk %d exited with status %d", d->name, (int)d->child,
                 WEXITSTATUS(status));
    d->child = 0;
}

/* Isolated mode: the eventfds a backend held are replaced, so one that went away (but may
 * live on, with socket=) can no longer signal this device. */
static int renew_backend_fds(struct vdq *q)
{
    struct vhost_dev *d = q->dev;
    event_loop_remove(&d->loop, q->call_fd);
    event_loop_remove(&d->loop, q->err_fd);
    close(q->call_fd);
    close(q->err_fd);
    close(q->bkick_fd);
    q->call_fd = q->err_fd = q->bkick_fd = -1;
    int r;
    if ((r = make_eventfd(&q->call_fd)) != 0 || (r = make_eventfd(&q->err_fd)) != 0 ||
        (r = make_eventfd(&q->bkick_fd)) != 0)
        return r;
    if ((r = event_loop_add(&d->loop, q->call_fd, EVENT_IN, on_iso_call, q)) != 0)
        return r;
    return event_loop_add(&d->loop, q->err_fd, EVENT_IN, on_err, q);
}

/* Shared mode, a backend just lost: if every request the guest made available on this
 * ring has been completed (used idx == avail idx, a virtio-blk request completes exactly
 * once), nothing was lost with the backend and a new one can take the ring over from
 * there. Otherwise which requests it held is known only to it. A request the guest
 * adds meanwhile lies past that index, and its kick waits in the eventfd. */
static bool shared_ring_idle(struct vhost_dev *d, struct vdq *q)
{
    const volatile uint8_t *avail = guest_mem_ptr(&d->vm->mem, q->cfg.avail_addr + 2, 2);
    const volatile uint8_t *used = guest_mem_ptr(&d->vm->mem, q->cfg.used_addr + 2, 2);
    if (avail == NULL || used == NULL)
        return false;
    uint16_t u = (uint16_t)(used[0] | used[1] << 8);
    uint16_t a = (uint16_t)(avail[0] | avail[1] << 8);
    if (a != u) {
        log_warn("%s: queue %u: the lost backend held %u request(s) (avail idx %u, used idx %u)",
                 d->name, q->index, (unsigned)(uint16_t)(a - u), a, u);
        return false;
    }
    q->base = u;
    return true;
}

/* Drop the connection (and the child). Isolated: requests in flight are kept for the
 * next backend. */
static void disconnect(struct vhost_dev *d)
{
    event_loop_remove(&d->loop, d->fe.sock);
    vhost_fe_close(&d->fe);
    d->connected = false;
    reap_child(d);
    bool renew_failed = false;
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!d->isolated && q->running && d->driver_ok && !shared_ring_idle(d, q))
            d->rings_lost = true;
        q->running = false;
        if (!d->isolated)
            continue;
        if (q->iso_started)
            iso_detach(&q->iso);
        if (renew_backend_fds(q) != 0)
            renew_failed = true;
    }
    if (renew_failed)
        fail_backend(d, "cannot be replaced (no eventfds)", -EMFILE);
}

/* The backend died, stopped answering or broke the protocol: drop it and try a new one
 * (path=: start bulkhead-blk again; socket=: reconnect). Isolated: its requests wait
 * for the next backend, which gets them again. Shared: requests the backend held are
 * lost with it, so a running device needs a reset by the guest's driver. */
static void backend_lost(struct vhost_dev *d, const char *what, int err)
{
    if (d->broken || !d->connected)
        return;
    log_warn("%s: backend %s: %s; %s", d->name, what, strerror(-err),
             d->opt->socket == NULL ? "starting it again" : "reconnecting");
    if (os_monotonic_ns() - d->connected_ns >= RESTART_WINDOW_NS)
        d->failures = 0;
    disconnect(d);
    if (d->broken)
        return;
    if (d->rings_lost)
        virtio_pci_set_needs_reset(&d->vp, "backend lost");
    d->lost_ns = os_monotonic_ns();
    d->absent_failed = false;
    arm_retry(d, d->retry_ms);
}

/* Isolated mode, a new backend: fresh bounce memory and shadow rings, and every request
 * in flight posted again. */
static int resume_isolated(struct vhost_dev *d)
{
    uint64_t bf = d->features & d->fe.backend_features;
    int r = vhost_fe_set_features(&d->fe, bf);
    if (r == 0 && (r = bounce_renew(&d->bounce)) != 0)
        log_error("%s: cannot renew the bounce region: %s", d->name, strerror(-r));
    struct vhost_fe_region region = {
        .gpa = ISO_BOUNCE_GPA, .size = d->bounce.size, .fd = d->bounce.fd, .offset = 0};
    if (r == 0)
        r = vhost_fe_set_mem_table(&d->fe, &region, 1);
    unsigned resent = 0;
    for (unsigned i = 0; r == 0 && i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!q->iso_started)
            continue;
        uint64_t before = q->iso.stats.resubmitted;
        if ((r = start_shadow(d, q, bf)) != 0)
            break;
        q->progress_ns = os_monotonic_ns();
        unsigned flags = 0;
        int g = iso_resubmit_inflight(&q->iso, &flags);
        iso_apply(q, flags);
        if (g < 0 && g != -ENODEV)
            iso_guest_error(q, g);
        resent += (unsigned)(q->iso.stats.resubmitted - before);
    }
    if (r == 0)
        log_info("%s: %u request(s) in flight sent to the new backend", d->name, resent);
    return r;
}

/* Reach a new backend and bring it to where the device is. *reached: a backend was
 * started or connected (it counts against the restart limit). */
static int reattach(struct vhost_dev *d, bool *reached)
{
    int sock = -1;
    int r = d->opt->socket == NULL ? spawn_child(d, &sock) : connect_socket(d->opt->socket, &sock);
    *reached = r == 0;
    if (r != 0)
        return r;
    vhost_fe_init(&d->fe, sock);
    d->connected = true;
    d->connected_ns = os_monotonic_ns();
    r = vhost_fe_handshake(&d->fe);
    if (r == 0) {
        /* The guest was offered features and queues; a new backend must serve them all. */
        uint64_t need = d->offered & ~d->guest_only_features;
        uint64_t have = vhost_fe_offer(&d->fe, PASSABLE_FEATURES);
        if ((need & ~have) != 0) {
            log_error("%s: the new backend lacks features %#llx the guest was offered", d->name,
                      (unsigned long long)(need & ~have));
            r = -ENOTSUP;
        } else if (d->fe.max_queues != 0 && d->fe.max_queues < d->nq) {
            log_error("%s: the new backend has %u queues, the device %u", d->name, d->fe.max_queues,
                      d->nq);
            r = -ENOTSUP;
        } else if (d->kind->backend_config &&
                   (r = vhost_fe_get_config(&d->fe, d->kind->config_size)) != 0) {
            log_error("%s: the new backend gave no device configuration: %s", d->name,
                      strerror(-r));
        } else if (d->opt->kind == VMM_DEV_BLK) {
            /* The image may have been resized while the backend was away: the guest
             * learns through a configuration-change interrupt, as on a live resize. The
             * rest of the configuration (limits, clamped here) stays as the guest has it. */
            r = virtio_pci_config_update(&d->vp, 0, d->fe.config, 8, true);
        }
    }
    if (r == 0)
        r = event_loop_add(&d->loop, d->fe.sock, EVENT_IN, on_socket, d);
    if (r == 0 && d->driver_ok && d->isolated)
        r = resume_isolated(d);
    if (r == 0 && d->driver_ok && !d->isolated && !d->rings_lost)
        start_shared(d);
    /* The new backend started every ring enabled; the driver's pair count holds. */
    if (r == 0 && d->driver_ok && d->connected)
        r = apply_pairs(d);
    if (r != 0 && d->connected)
        disconnect(d);
    return r;
}

/* Isolated mode: a backend that keeps requests and completes none for --disk timeout=
 * seconds has hung (on its storage, or on purpose); it is lost like one that died, so
 * its requests go to a new backend or, in the end, fail. Without this, a backend that
 * answers every message but never a request would hang the guest's I/O for ever. */
static void on_watch(void *opaque, uint32_t events)
{
    struct vhost_dev *d = opaque;
    uint64_t v;
    (void)events;
    if (read(d->watch_fd, &v, sizeof(v)) < 0 || d->broken || !d->connected)
        return;
    uint64_t now = os_monotonic_ns();
    uint64_t limit = (uint64_t)d->opt->timeout * 1000000000ull;
    if (limit == 0)
        return; /* requests of this type may wait for ever (receive buffers, a FUSE lock) */
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!q->running || iso_inflight(&q->iso) == 0) {
            q->progress_ns = now;
            continue;
        }
        if (now - q->progress_ns >= limit) {
            log_error("%s: queue %u: the backend holds %u request(s) and completed none in %u s",
                      d->name, i, iso_inflight(&q->iso), d->opt->timeout);
            backend_lost(d, "stopped completing requests", -ETIMEDOUT);
            return;
        }
    }
}

static void on_retry(void *opaque, uint32_t events)
{
    struct vhost_dev *d = opaque;
    uint64_t v;
    (void)events;
    if (read(d->retry_fd, &v, sizeof(v)) < 0 || d->broken || d->connected)
        return;
    uint64_t now = os_monotonic_ns();
    if (d->opt->restarts != 0 && d->failures >= d->opt->restarts) {
        log_error("%s: %u new backends in a row failed within %llu s; giving up on it", d->name,
                  d->failures, RESTART_WINDOW_NS / 1000000000ull);
        fail_backend(d, "failed too often", -EIO);
        return;
    }
    bool reached = false;
    int r = reattach(d, &reached);
    if (reached)
        d->failures++; /* until it lasts: backend_lost() */
    if (r == 0 && d->connected) {
        d->restarts++;
        d->retry_ms = RETRY_FIRST_MS;
        d->absent_failed = false;
        log_warn("%s: backend back (restart %llu)", d->name, (unsigned long long)d->restarts);
        return;
    }
    if (d->broken)
        return;
    if (reached)
        log_warn("%s: the new backend failed: %s", d->name, strerror(-r));
    else
        log_debug("%s: backend not reachable yet: %s", d->name, strerror(-r));
    /* Gone for a while: the guest's requests fail until it is back (isolated). */
    if (d->isolated && !d->absent_failed && now - d->lost_ns >= ABSENT_FAIL_NS) {
        d->absent_failed = true;
        log_error("%s: no working backend for %llu s; requests fail with I/O errors until one "
                  "is back",
                  d->name, ABSENT_FAIL_NS / 1000000000ull);
        for (unsigned i = 0; i < d->nq; i++)
            iso_fail_queue(&d->q[i]);
    }
    d->retry_ms = d->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : d->retry_ms * 2;
    arm_retry(d, d->retry_ms);
}

/* The socket is readable or hung up between requests: a backend speaks only when asked, so
 * this is its end (or a protocol violation). */
static void on_socket(void *opaque, uint32_t events)
{
    struct vhost_dev *d = opaque;
    (void)events;
    int r = vhost_fe_check_idle(&d->fe);
    if (r != 0)
        backend_lost(d, "connection lost", r);
}

static void *device_thread(void *arg)
{
    struct vhost_dev *d = arg;
    char name[16];
    snprintf(name, sizeof(name), "io-%.12s", d->name);
    pthread_setname_np(pthread_self(), name);
    bool may_poll = d->isolated && d->opt->poll_us > 0;
    while (!(__atomic_load_n(&d->cmd, __ATOMIC_ACQUIRE) & CMD_QUIT)) {
        /* A polling window spins; where the vCPUs and the backend share its CPU, it must
         * let them run (under SCHED_BATCH a woken thread never preempts it). */
        if (d->polling)
            sched_yield();
        if (event_loop_run_once(&d->loop, d->polling ? 0 : -1) < 0)
            break;
        if (may_poll)
            poll_rings(d);
    }
    return NULL;
}

/* --- life cycle ---------------------------------------------------------------------- */

static int make_eventfd(int *fd)
{
    *fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return *fd < 0 ? -errno : 0;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Isolated mode: every request must fit one queue's data area, or it fails. Offer the
 * guest size_max and seg_max (the VMM enforces them whether the backend knows them or
 * not) no larger than the backend's and small enough that the largest request fits:
 * each data segment may cost up to ISO_DATA_ALIGN - 1 bytes of alignment padding, and
 * the header and status take a cache line each (two pages is ample for them). */
static void clamp_blk_limits(struct vhost_dev *d, uint64_t *features)
{
    uint8_t *cfg = d->config;
    uint32_t size_max = ISO_SIZE_MAX;
    if (*features & (1ull << VIRTIO_BLK_F_SIZE_MAX)) {
        uint32_t v = get_le32(cfg + VIRTIO_BLK_CONFIG_SIZE_MAX);
        if (v != 0 && v < size_max)
            size_max = v;
    }
    uint64_t seg_max =
        (d->kind->data_bytes - 2 * ISO_DATA_ALIGN) / ((uint64_t)size_max + ISO_DATA_ALIGN);
    if (*features & (1ull << VIRTIO_BLK_F_SEG_MAX)) {
        uint32_t v = get_le32(cfg + VIRTIO_BLK_CONFIG_SEG_MAX);
        if (v != 0 && v < seg_max)
            seg_max = v;
    }
    /* A request's shadow chain holds its segments plus header and status. */
    if (seg_max > VHOST_DEV_QUEUE_SIZE - 2)
        seg_max = VHOST_DEV_QUEUE_SIZE - 2;
    put_le32(cfg + VIRTIO_BLK_CONFIG_SIZE_MAX, size_max);
    put_le32(cfg + VIRTIO_BLK_CONFIG_SEG_MAX, (uint32_t)seg_max);
    uint64_t limits = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX;
    d->guest_only_features = limits & ~d->fe.backend_features;
    *features |= limits;
}

/* Isolated mode: one bounce region for the device, each queue's shadow rings and data
 * area stacked in it, and each queue's private bookkeeping. */
static int setup_isolated(struct vhost_dev *d)
{
    struct iso_layout layouts[VHOST_DEV_MAX_QUEUES];
    uint64_t base = ISO_BOUNCE_GPA;
    int r;
    for (unsigned i = 0; i < d->nq; i++) {
        if ((r = iso_compute_layout(base, VHOST_DEV_QUEUE_SIZE, d->kind->data_bytes,
                                    &layouts[i])) != 0)
            return r;
        base = layouts[i].end;
    }
    if ((r = bounce_create(&d->bounce, base - ISO_BOUNCE_GPA)) != 0) {
        log_error("%s: cannot create the bounce region: %s", d->name, strerror(-r));
        return r;
    }
    if ((r = guest_mem_add_region(&d->bounce_mem, ISO_BOUNCE_GPA, d->bounce.size,
                                  d->bounce.base)) != 0)
        return r;
    size_t bytes = iso_storage_bytes(VHOST_DEV_QUEUE_SIZE, VHOST_DEV_QUEUE_SIZE);
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if ((q->iso_storage = calloc(1, bytes)) == NULL)
            return -ENOMEM;
        struct iso_params p = {
            .bounce = &d->bounce_mem,
            .layout = layouts[i],
            .guest_max_size = VHOST_DEV_QUEUE_SIZE,
            .fail = d->kind->fail,
            .fail_opaque = q,
            .storage = q->iso_storage,
            .storage_bytes = bytes,
        };
        if ((r = iso_queue_init(&q->iso, &p)) != 0) {
            log_error("%s: queue %u: isolated-mode setup: %s", d->name, i, strerror(-r));
            return r;
        }
    }
    return 0;
}

int vhost_dev_create(struct vm *vm, const struct vmm_device *opt, unsigned index,
                     struct vhost_dev **out)
{
    struct vhost_dev *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    *out = d;
    d->vm = vm;
    d->cmd_fd = -1;
    d->retry_fd = -1;
    d->watch_fd = -1;
    d->bounce.fd = -1;
    d->opt = opt;
    d->kind = vhost_kind_get(opt->kind);
    d->retry_ms = RETRY_FIRST_MS;
    pthread_mutex_init(&d->cfg_lock, NULL);
    d->isolated = opt->mode == VMM_MEM_ISOLATED;
    snprintf(d->name, sizeof(d->name), "%s%u", d->kind->name, index);
    for (unsigned i = 0; i < VHOST_DEV_MAX_QUEUES; i++)
        d->q[i] = (struct vdq){.dev = d,
                               .index = (uint16_t)i,
                               .kick_fd = -1,
                               .call_fd = -1,
                               .irq_fd = -1,
                               .bkick_fd = -1,
                               .err_fd = -1};
    vhost_fe_init(&d->fe, -1);

    int sock = -1, r;
    r = opt->socket == NULL ? spawn_child(d, &sock) : connect_socket(opt->socket, &sock);
    if (r != 0) {
        log_error("%s: cannot reach the backend %s: %s", d->name,
                  opt->socket == NULL ? d->kind->program : opt->socket, strerror(-r));
        return r;
    }
    vhost_fe_init(&d->fe, sock);
    d->connected = true;
    d->connected_ns = os_monotonic_ns();
    if ((r = vhost_fe_handshake(&d->fe)) != 0) {
        log_error("%s: the backend did not complete the vhost-user handshake: %s", d->name,
                  strerror(-r));
        return r;
    }
    uint64_t features = vhost_fe_offer(&d->fe, PASSABLE_FEATURES);
    if (!(features & (1ull << VIRTIO_F_VERSION_1))) {
        log_error("%s: the backend does not offer VIRTIO_F_VERSION_1", d->name);
        return -ENOTSUP;
    }
    /* Device bits whose queues or fields this VMM does not provide stay with the backend. */
    features &= d->kind->device_mask | ~((1ull << 24) - 1);
    const uint32_t csize = d->kind->config_size;
    if (d->kind->backend_config) {
        if ((r = vhost_fe_get_config(&d->fe, csize)) != 0) {
            log_error("%s: the backend gave no device configuration: %s", d->name, strerror(-r));
            return r;
        }
        memcpy(d->config, d->fe.config, csize);
    } else {
        uint64_t own = 0;
        unsigned pairs = 1;
        if (opt->kind == VMM_DEV_NET && opt->queues > 1) {
            /* Two queues per pair from the backend (GET_QUEUE_NUM; none said: one pair). */
            unsigned be_pairs = d->fe.max_queues / 2;
            pairs = opt->queues;
            if (be_pairs < pairs) {
                log_info("%s: the backend serves %u queue pair(s) of the %u asked for", d->name,
                         be_pairs > 0 ? be_pairs : 1, pairs);
                pairs = be_pairs > 0 ? be_pairs : 1;
            }
        }
        d->has_ctrl = pairs > 1;
        vhost_kind_make_config(opt, pairs, d->config, &own);
        d->guest_only_features = own & ~d->fe.backend_features;
        features |= own;
    }
    /* Queues: what the device type and its configuration say, bounded by what the backend
     * and this VMM handle. */
    unsigned max = VHOST_DEV_MAX_QUEUES;
    if (d->fe.max_queues != 0 && d->fe.max_queues < max)
        max = d->fe.max_queues;
    unsigned nq = vhost_kind_queues(opt->kind, features, d->config, max);
    d->nq = (uint16_t)nq;
    d->nq_all = (uint16_t)(nq + d->has_ctrl);
    if (d->isolated) {
        if (opt->kind == VMM_DEV_BLK)
            clamp_blk_limits(d, &features);
        if ((r = setup_isolated(d)) != 0)
            return r;
    }

    d->offered = features;
    if ((r = make_eventfd(&d->cmd_fd)) != 0)
        return r;
    d->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (d->retry_fd < 0)
        return -errno;
    if (d->isolated) {
        d->watch_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct itimerspec each = {.it_interval = {.tv_sec = 1}, .it_value = {.tv_sec = 1}};
        if (d->watch_fd < 0 || timerfd_settime(d->watch_fd, 0, &each, NULL) != 0)
            return -errno;
    }
    for (unsigned i = 0; i < nq; i++) {
        if ((r = make_eventfd(&d->q[i].kick_fd)) != 0 ||
            (r = make_eventfd(&d->q[i].call_fd)) != 0 || (r = make_eventfd(&d->q[i].err_fd)) != 0)
            return r;
        if (d->isolated && ((r = make_eventfd(&d->q[i].bkick_fd)) != 0 ||
                            (r = make_eventfd(&d->q[i].irq_fd)) != 0))
            return r;
        if (!d->isolated)
            d->q[i].irq_fd = d->q[i].call_fd;
        /* No route yet, so the device thread forwards the interrupts. */
        d->q[i].watch_call = true;
    }
    if (d->has_ctrl) {
        /* The control queue: only the guest's doorbell and interrupt, both the device
         * thread's. */
        struct vdq *c = &d->q[nq];
        if ((r = make_eventfd(&c->kick_fd)) != 0 || (r = make_eventfd(&c->irq_fd)) != 0)
            return r;
        c->watch_call = true;
        net_ctrl_reset(&d->ctrl, (uint16_t)(nq / 2));
    }
    struct virtio_pci_config cfg = {
        .name = d->name,
        .device_id = d->kind->virtio_id,
        .class_code = d->kind->class_code,
        .device_features = features,
        .num_queues = d->nq_all,
        .queue_max_size = VHOST_DEV_QUEUE_SIZE,
        .config_size = csize,
        .config_init = d->config,
        .mem = &vm->mem,
        .dev_ops = &dev_ops,
        .dev_opaque = d,
        .machine_ops = &machine_ops,
        .machine_ctx = d,
    };
    if ((r = virtio_pci_init(&d->vp, &cfg)) != 0) {
        log_error("%s: cannot create the PCI function: %s", d->name, strerror(-r));
        return r;
    }
    d->vp_ready = true;
    if ((r = event_loop_init(&d->loop)) != 0)
        return r;
    d->loop_ready = true;
    if ((r = event_loop_add(&d->loop, d->cmd_fd, EVENT_IN, on_cmd, d)) != 0 ||
        (r = event_loop_add(&d->loop, d->retry_fd, EVENT_IN, on_retry, d)) != 0 ||
        (d->isolated && (r = event_loop_add(&d->loop, d->watch_fd, EVENT_IN, on_watch, d)) != 0) ||
        (r = event_loop_add(&d->loop, d->fe.sock, EVENT_IN, on_socket, d)) != 0)
        return r;
    for (unsigned i = 0; i < nq; i++) {
        if ((r = event_loop_add(&d->loop, d->q[i].err_fd, EVENT_IN, on_err, &d->q[i])) != 0)
            return r;
        if (d->isolated &&
            ((r = event_loop_add(&d->loop, d->q[i].kick_fd, EVENT_IN, on_iso_kick, &d->q[i])) !=
                 0 ||
             (r = event_loop_add(&d->loop, d->q[i].call_fd, EVENT_IN, on_iso_call, &d->q[i])) != 0))
            return r;
    }
    if (d->has_ctrl &&
        (r = event_loop_add(&d->loop, d->q[nq].kick_fd, EVENT_IN, on_ctrl_kick, &d->q[nq])) != 0)
        return r;
    update_watches(d);
    const char *backend = opt->socket != NULL ? opt->socket : d->kind->program;
    if (d->isolated)
        log_info("%s: vhost-user backend %s, isolated memory (bounce region %llu MiB), %u "
                 "queue(s), features %#llx",
                 d->name, backend, (unsigned long long)(d->bounce.size >> 20), nq,
                 (unsigned long long)features);
    else
        log_info("%s: vhost-user backend %s, shared memory, %u queue(s), features %#llx", d->name,
                 backend, nq, (unsigned long long)features);
    return 0;
}

int vhost_dev_start(struct vhost_dev *d, struct pci_host *host)
{
    int r = pci_host_add_device(host, &d->vp.pci, -1);
    if (r != 0) {
        log_error("%s: cannot place the device on the PCI bus: %s", d->name, strerror(-r));
        return r;
    }
    /* The device thread takes no signal: the main thread handles them, vCPUs are kicked. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSYS); /* --sandbox=trap reports a refused call through it */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = -pthread_create(&d->thread, NULL, device_thread, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    d->thread_started = r == 0;
    return r;
}

/* A counter the device thread updates, read from another thread (each read once). */
#define LOAD(x) ((unsigned long long)__atomic_load_n(&(x), __ATOMIC_RELAXED))

void vhost_dev_counters(struct vhost_dev *d, struct control_reply *reply)
{
    bool broken = __atomic_load_n(&d->broken, __ATOMIC_RELAXED);
    bool connected = __atomic_load_n(&d->connected, __ATOMIC_RELAXED);
    control_printf(reply, "%s mode=%s backend=%s restarts=%llu queues=%u\n", d->name,
                   d->isolated ? "isolated" : "shared",
                   broken      ? "failed"
                   : connected ? "connected"
                               : "reconnecting",
                   LOAD(d->restarts), d->nq);
    for (unsigned i = 0; i < d->nq; i++) {
        struct vdq *q = &d->q[i];
        if (!d->isolated) {
            control_printf(reply, "%s.q%u forwarded_interrupts=%llu\n", d->name, i,
                           LOAD(q->forwarded));
            continue;
        }
        struct iso_stats *st = &q->iso.stats;
        control_printf(reply,
                       "%s.q%u guest_kicks=%llu guest_interrupts=%llu requests=%llu "
                       "bytes_in=%llu bytes_out=%llu errors=%llu resubmitted=%llu "
                       "backend_kicks=%llu\n",
                       d->name, i, LOAD(q->guest_kicks), LOAD(st->guest_interrupts),
                       LOAD(st->requests), LOAD(st->bytes_in), LOAD(st->bytes_out),
                       LOAD(st->errors), LOAD(st->resubmitted), LOAD(st->backend_kicks));
    }
    if (d->has_ctrl)
        control_printf(reply, "%s.ctrl guest_kicks=%llu commands=%llu refused=%llu pairs=%u/%u\n",
                       d->name, LOAD(d->q[d->nq].guest_kicks), LOAD(d->ctrl.commands),
                       LOAD(d->ctrl.refused),
                       (unsigned)__atomic_load_n(&d->ctrl.pairs, __ATOMIC_RELAXED),
                       (unsigned)d->ctrl.max_pairs);
}

void vhost_dev_destroy(struct vhost_dev *d)
{
    if (d == NULL)
        return;
    if (d->thread_started) {
        post(d, CMD_QUIT);
        pthread_join(d->thread, NULL);
    }
    for (unsigned i = 0; i < d->nq_all; i++) {
        struct vdq *q = &d->q[i];
        if (q->irqfd)
            plat_irq_notification_remove(d->vm->plat, q->gsi, q->irq_fd);
        if (q->has_route)
            plat_msi_route_remove(d->vm->plat, q->gsi);
        if (q->doorbell)
            plat_doorbell_remove(d->vm->plat, PLAT_SPACE_MMIO, q->doorbell_gpa,
                                 VIRTIO_PCI_NOTIFY_WIDTH, q->kick_fd);
    }
    if (d->loop_ready)
        event_loop_destroy(&d->loop);
    vhost_fe_close(&d->fe);
    if (d->child > 0) {
        /* The backend sees its socket close and exits; do not leave a zombie or a stray. */
        int status;
        for (int i = 0; i < 100 && waitpid(d->child, &status, WNOHANG) == 0; i++)
            usleep(10000);
        if (waitpid(d->child, &status, WNOHANG) == 0) {
            kill(d->child, SIGKILL);
            waitpid(d->child, &status, 0);
        }
    }
    if (d->restarts > 0 || d->broken)
        log_info("%s: backend restarts: %llu%s", d->name, (unsigned long long)d->restarts,
                 d->broken ? " (then given up on)" : "");
    if (d->vp_ready)
        virtio_pci_destroy(&d->vp);
    for (unsigned i = 0; d->isolated && i < d->nq; i++) {
        const struct iso_stats *st = &d->q[i].iso.stats;
        const struct vdq *q = &d->q[i];
        if (d->q[i].iso_storage != NULL)
            log_info("%s: queue %u: %llu requests, %llu bytes in, %llu bytes out, %llu failed, "
                     "%llu resubmitted, %llu guest kicks, %llu backend kicks, %llu guest "
                     "interrupts",
                     d->name, i, (unsigned long long)st->requests, (unsigned long long)st->bytes_in,
                     (unsigned long long)st->bytes_out, (unsigned long long)st->errors,
                     (unsigned long long)st->resubmitted, (unsigned long long)q->guest_kicks,
                     (unsigned long long)st->backend_kicks,
                     (unsigned long long)st->guest_interrupts);
        free(d->q[i].iso_storage);
    }
    bounce_destroy(&d->bounce);
    for (unsigned i = 0; i < VHOST_DEV_MAX_QUEUES; i++) {
        if (d->q[i].bkick_fd >= 0)
            close(d->q[i].bkick_fd);
        if (d->q[i].kick_fd >= 0)
            close(d->q[i].kick_fd);
        if (d->q[i].call_fd >= 0)
            close(d->q[i].call_fd);
        /* Shared mode: a backend queue's interrupt eventfd is its call eventfd. */
        if (d->q[i].irq_fd >= 0 && d->q[i].irq_fd != d->q[i].call_fd)
            close(d->q[i].irq_fd);
        if (d->q[i].err_fd >= 0)
            close(d->q[i].err_fd);
    }
    if (d->cmd_fd >= 0)
        close(d->cmd_fd);
    if (d->retry_fd >= 0)
        close(d->retry_fd);
    if (d->watch_fd >= 0)
        close(d->watch_fd);
    pthread_mutex_destroy(&d->cfg_lock);
    free(d);
}
