/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file con_device.h
 * @brief bulkhead-console's device: virtio-console (device ID 3) with the multiport
 *        protocol, on the vhost-user backend library, with one host end per port.
 *
 * **Queues.** Port 0's receiveq and transmitq are queues 0 and 1, the control
 * receiveq and transmitq 2 and 3, port N's (N >= 1) 2 + 2N and 3 + 2N. A driver that
 * does not accept F_MULTIPORT uses queues 0 and 1 only and sees port 0 alone, always
 * open.
 *
 * **Control protocol** (virtio 1.2 §5.3.6.2). After the driver's DEVICE_READY the
 * device announces every port (DEVICE_ADD); after the driver's PORT_READY for a port
 * it says what the port is (CONSOLE_PORT for port 0 when it is the console, PORT_NAME
 * for a named port) and, when the host side is connected, PORT_OPEN 1; a host client
 * coming or going later is another PORT_OPEN. What the device has to say waits as a
 * per-port set of pending messages (bounded by construction, repeated changes
 * coalesce) until the driver offers control-receiveq buffers. Each message from the
 * driver is copied out of guest memory into a local before any field is looked at;
 * one that is short, names no port, or carries an unknown event or value is dropped
 * and counted.
 *
 * **Data.** Guest output (a transmitq chain) goes to the host end without waiting;
 * what the host end does not take stays pending: the chain is kept (its head and how
 * far it was written, never host pointers, which a new memory table would leave
 * dangling: the chain is walked again each time), the transmitq is not read further
 * and the host descriptor is polled for POLLOUT. A stalled reader so stalls its own
 * port only. Guest input is read from the host end only while the guest has the port
 * open and its receiveq has buffers; what was read and does not fit waits in a
 * per-port buffer, and nothing more is read until it is delivered. Input for a port
 * the guest has closed is held, not dropped.
 *
 * **One thread.** Everything runs on the thread of the serving loop
 * (backends/common/backend_prog.h); con_device_hooks() gives the loop's hooks.
 */
#ifndef BULKHEAD_BACKENDS_CONSOLE_CON_DEVICE_H
#define BULKHEAD_BACKENDS_CONSOLE_CON_DEVICE_H

#include "backends/common/backend_prog.h"
#include "backends/console/con_host.h"
#include "vhost/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most ports: port 0 plus 30 named ports use all VHOST_BE_MAX_QUEUES queues. */
#define CON_MAX_PORTS ((VHOST_BE_MAX_QUEUES - 2u) / 2u)
/** Longest port name, bytes (the guest's /sys/class/virtio-ports/.../name). */
#define CON_NAME_MAX 64u
/**
 * Segments of one chain the device handles; longer data chains are refused (completed
 * empty and counted), longer receive chains are filled through their first segments.
 */
#define CON_IOV_MAX 256u
/** Bytes of host input read at once per port, and held until the guest takes them. */
#define CON_INPUT_BUF 16384u

/** Counters of one port; logged at exit. */
struct con_port_counters {
    uint64_t to_host;       /**< Guest output bytes the host end took. */
    uint64_t to_guest;      /**< Host input bytes delivered into the guest's buffers. */
    uint64_t dropped;       /**< Guest output bytes dropped: no host side, or it failed. */
    uint64_t bad_control;   /**< Malformed control messages that named this port. */
    uint64_t bad_chains;    /**< Data chains of the wrong direction or too many segments. */
    uint64_t guest_opens;   /**< PORT_OPEN messages from the driver. */
    uint64_t host_connects; /**< Clients accepted on a unix host end. */
};

/** One port: its host end and what the current driver said about it. */
struct con_port {
    char name[CON_NAME_MAX + 1]; /**< Named ports: the name; port 0: empty. */
    bool console;                /**< Port 0 with a --console: the guest's hvc console. */
    struct con_host host;        /**< The host end. */
    bool added;                  /**< DEVICE_ADD was queued for the current driver. */
    bool ready;                  /**< The driver said PORT_READY 1. */
    bool guest_open;             /**< The driver said PORT_OPEN 1 (last word). */
    uint8_t ctl;                 /**< Control messages to send (CON_CTL_* bits, private). */
    bool rx_avail;               /**< The receiveq had buffers when last looked at. */
    bool tx_held;                /**< A transmit chain is being written out. */
    uint16_t tx_head;            /**< Its head. */
    uint64_t tx_off;             /**< Its bytes already written. */
    uint8_t *in_buf;             /**< CON_INPUT_BUF bytes of host input. */
    size_t in_off;               /**< First byte of @c in_buf not yet delivered. */
    size_t in_len;               /**< End of the bytes held in @c in_buf. */
    struct con_port_counters c;  /**< Since start. */
};

/** The role of one poll entry of the device (private). */
struct con_pollent {
    uint8_t port; /**< Port index. */
    uint8_t role; /**< Listening socket, input or output. */
};

/** Choices of the device that are not the ports'. */
struct con_device_opts {
    bool size;     /**< Offer F_SIZE with @c cols and @c rows. */
    uint16_t cols; /**< Columns of the console. */
    uint16_t rows; /**< Rows of the console. */
};

/** The device of one bulkhead-console process; serves one connection at a time. */
struct con_device {
    /** Handed to vhost_be_init(); its callbacks take the con_device as opaque. */
    struct vhost_be_device dev;
    struct con_device_opts opts;          /**< As given. */
    struct vhost_be *be;                  /**< The connection served, NULL between them. */
    unsigned nr_ports;                    /**< Ports added, port 0 first. */
    struct con_port ports[CON_MAX_PORTS]; /**< nr_ports are used. */
    bool driver_ready;                    /**< DEVICE_READY 1 from the current driver. */
    uint64_t bad_control;                 /**< Malformed control messages naming no port. */
    uint64_t control_dropped;             /**< Our messages that did not fit a buffer. */
    uint64_t bad_chains;                  /**< Control chains of the wrong direction. */
    struct vq_iovec iov[CON_IOV_MAX];     /**< Scratch for one chain's segments. */
    struct con_pollent pollents[BACKEND_MAX_PROG_POLLFDS]; /**< Roles of the last pollfds. */
    unsigned nr_pollents;                                  /**< Entries of @c pollents. */
};

/**
 * Describe the device, with no port yet.
 * @param cd the device.
 * @param opts the console size, if any.
 */
void con_device_init(struct con_device *cd, const struct con_device_opts *opts);

/**
 * Add the next port and open its host end: the first call makes port 0 (the
 * console, or a port without host side for CON_HOST_NONE), the next ones named ports.
 * @param cd the device, not serving a connection yet.
 * @param name port 0: NULL; else 1 to CON_NAME_MAX bytes of [A-Za-z0-9._-].
 * @param spec the host end.
 * @return 0; -EINVAL for a bad name or a name given twice; -ENOSPC beyond
 *         CON_MAX_PORTS; -ENOMEM; the host end's open error.
 */
int con_device_add_port(struct con_device *cd, const char *name, const struct con_host_spec *spec);

/**
 * Whether a port name is acceptable (the characters a guest's udev rule may meet).
 * @param name the name.
 * @return true for 1 to CON_NAME_MAX bytes of [A-Za-z0-9._-].
 */
bool con_port_name_valid(const char *name);

/**
 * Close every host end and free the buffers.
 * @param cd the device, serving no connection.
 */
void con_device_destroy(struct con_device *cd);

/**
 * Log the counters of every port, at info level.
 * @param cd the device.
 */
void con_device_log_counters(const struct con_device *cd);

/**
 * The serving loop's hooks for this device.
 * @param cd the device; must outlive the loop.
 * @return hooks whose opaque is @p cd.
 */
struct backend_hooks con_device_hooks(struct con_device *cd);

#endif
