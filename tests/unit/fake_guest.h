/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file fake_guest.h
 * @brief The guest side of the unit tests that drive a vhost-user backend in process:
 *        guest RAM (a sealed memfd, mapped and described as a struct guest_mem),
 *        bulkhead's own vhost-user frontend (vhost/frontend.h) on one end of a
 *        socketpair, and the driver's rings in that RAM with their eventfds.
 *
 * Each test keeps its own layout (where rings and buffers lie), its backend's loop
 * thread and its driver logic; what every such test did the same way is here. The
 * helpers fail the running cmocka test on any error.
 *
 * Header-only (static inline): the Makefile builds each unit test from its one .c file.
 */
#ifndef BULKHEAD_TESTS_UNIT_FAKE_GUEST_H
#define BULKHEAD_TESTS_UNIT_FAKE_GUEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/guest_mem.h"
#include "vhost/frontend.h"
#include "virtio/virtqueue.h"

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/** Largest Queue Size a struct fg_ring holds driver state for. */
#define FG_MAX_QSIZE 256u

/** Guest RAM shared with the backend: one region at guest-physical 0. */
struct fg_ram {
    int memfd;           /**< The memory file, sealed against shrinking as the backend requires. */
    uint8_t *ram;        /**< Our mapping of it. */
    size_t size;         /**< Bytes. */
    struct guest_mem gm; /**< The driver's view: guest-physical 0 is @c ram. */
};

/**
 * Create guest RAM of @p size zero bytes.
 * @param m receives it.
 * @param name the memfd's name, for /proc/PID/fd when a test hangs.
 * @param size bytes.
 */
static inline void fg_ram_up(struct fg_ram *m, const char *name, size_t size)
{
    memset(m, 0, sizeof(*m));
    m->size = size;
    m->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(m->memfd >= 0);
    assert_int_equal(ftruncate(m->memfd, (off_t)size), 0);
    assert_int_equal(fcntl(m->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    m->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
    assert_true(m->ram != MAP_FAILED);
    assert_int_equal(guest_mem_add_region(&m->gm, 0, size, m->ram), 0);
}

/**
 * Unmap and close guest RAM (the backend may keep its own mapping until it lets go).
 * @param m the RAM; its memfd becomes -1.
 */
static inline void fg_ram_down(struct fg_ram *m)
{
    munmap(m->ram, m->size);
    close(m->memfd);
    m->memfd = -1;
    m->ram = NULL;
}

/**
 * The frontend's end of a new connection: vhost_fe_init() and the handshake.
 * @param fe the frontend.
 * @param sock our end of the socketpair; owned by @p fe from now on.
 */
static inline void fg_frontend_up(struct vhost_frontend *fe, int sock)
{
    vhost_fe_init(fe, sock);
    assert_int_equal(vhost_fe_handshake(fe), 0);
}

/**
 * Send the memory table: all of @p m as one region at guest-physical 0.
 * @param fe the frontend, after the features.
 * @param m the RAM.
 */
static inline void fg_set_mem_table(struct vhost_frontend *fe, const struct fg_ram *m)
{
    struct vhost_fe_region r = {.gpa = 0, .size = m->size, .fd = m->memfd, .offset = 0};
    assert_int_equal(vhost_fe_set_mem_table(fe, &r, 1), 0);
}

/**
 * A connected stream socketpair, close-on-exec: [0] the frontend's end, [1] the
 * backend's.
 * @param sv receives the two descriptors.
 */
static inline void fg_socketpair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/** One ring as the driver sees it, and the eventfds the frontend hands the backend. */
struct fg_ring {
    struct vq vq;                              /**< Driver side of the ring. */
    struct vq_driver_slot slots[FG_MAX_QSIZE]; /**< Its per-descriptor state. */
    struct vq_config cfg;                      /**< Size, features and addresses. */
    int kick;                                  /**< We write it when the device must look. */
    int call;                                  /**< The device writes it for a used entry. */
    int err;                                   /**< The device writes it for a broken ring. */
};

/**
 * The ring as SET_VRING_* describes it.
 * @param d the ring.
 * @param base the index the device starts at (SET_VRING_BASE).
 * @return the description for vhost_fe_vring_start().
 */
static inline struct vhost_fe_vring fg_ring_vring(const struct fg_ring *d, uint16_t base)
{
    return (struct vhost_fe_vring){.size = (uint16_t)d->cfg.size,
                                   .base = base,
                                   .desc_gpa = d->cfg.desc_addr,
                                   .avail_gpa = d->cfg.avail_addr,
                                   .used_gpa = d->cfg.used_addr,
                                   .kick_fd = d->kick,
                                   .call_fd = d->call,
                                   .err_fd = d->err};
}

/**
 * Set a ring up in guest RAM and start it on the device: the descriptor table at
 * @p gpa, the available ring @p stride after it and the used ring 2 @p stride after
 * it, all zeroed first; new eventfds; then SET_VRING_* from index 0.
 * @param d the ring; overwritten.
 * @param fe the frontend, with the memory table sent.
 * @param m the RAM the ring lies in.
 * @param q the queue index on the device.
 * @param size Queue Size, at most FG_MAX_QSIZE.
 * @param features the ring features in force (VIRTIO_F_EVENT_IDX or none).
 * @param gpa where the ring starts.
 * @param stride distance between its three parts.
 */
static inline void fg_ring_up(struct fg_ring *d, struct vhost_frontend *fe, const struct fg_ram *m,
                              unsigned q, uint16_t size, uint64_t features, uint64_t gpa,
                              uint64_t stride)
{
    assert_true(size <= FG_MAX_QSIZE && gpa + 3 * stride <= m->size);
    memset(d, 0, sizeof(*d));
    memset(m->ram + gpa, 0, 3 * stride);
    d->cfg = (struct vq_config){.size = size,
                                .features = features,
                                .desc_addr = gpa,
                                .avail_addr = gpa + stride,
                                .used_addr = gpa + 2 * stride};
    assert_int_equal(vq_driver_enable(&d->vq, &m->gm, &d->cfg, d->slots, FG_MAX_QSIZE), 0);
    d->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    d->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    d->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(d->kick >= 0 && d->call >= 0 && d->err >= 0);
    struct vhost_fe_vring r = fg_ring_vring(d, 0);
    assert_int_equal(vhost_fe_vring_start(fe, q, &r), 0);
}

/**
 * Close the ring's eventfds (after the frontend closed: the backend holds its own).
 * @param d the ring.
 */
static inline void fg_ring_close(struct fg_ring *d)
{
    close(d->kick);
    close(d->call);
    close(d->err);
}

/**
 * Kick the device, unless it asked not to be (VIRTIO_F_EVENT_IDX, or polling).
 * @param d the ring, after vq_driver_add().
 */
static inline void fg_kick(struct fg_ring *d)
{
    if (vq_driver_should_kick(&d->vq)) {
        uint64_t one = 1;
        assert_int_equal(write(d->kick, &one, sizeof(one)), sizeof(one));
    }
}

/**
 * Wait for an eventfd to be signalled and consume its count.
 * @param fd the eventfd (non-blocking).
 * @param ms how long at most; 0 only looks.
 * @return whether it was signalled.
 */
static inline bool fg_wait_fd(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    uint64_t v;
    return read(fd, &v, sizeof(v)) == sizeof(v);
}

#endif
