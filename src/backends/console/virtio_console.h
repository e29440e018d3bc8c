/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file virtio_console.h
 * @brief The virtio-console device's wire formats (virtio 1.2 §5.3): feature bits,
 *        configuration space and the control messages of the multiport protocol.
 *
 * Everything here is little-endian in guest memory; fields are declared as plain
 * integers and converted with le16toh()/le32toh() by the code that reads them.
 */
#ifndef BULKHEAD_BACKENDS_CONSOLE_VIRTIO_CONSOLE_H
#define BULKHEAD_BACKENDS_CONSOLE_VIRTIO_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

/** Virtio device ID of a console. */
#define VIRTIO_ID_CONSOLE 3u

/** Feature: cols and rows of the configuration space are valid. */
#define VIRTIO_CONSOLE_F_SIZE 0
/** Feature: several ports, a control queue pair and max_nr_ports in the configuration. */
#define VIRTIO_CONSOLE_F_MULTIPORT 1
/** Feature: the driver may write characters through emerg_wr before the queues work. */
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/** Configuration space; every field is read-only for the driver except emerg_wr. */
struct virtio_console_config {
    uint16_t cols;         /**< Console width in columns (F_SIZE). */
    uint16_t rows;         /**< Console height in rows (F_SIZE). */
    uint32_t max_nr_ports; /**< Ports the device may announce, port 0 included (F_MULTIPORT). */
    uint32_t emerg_wr;     /**< Written by the driver: one output character for port 0. */
};

/** @cond LAYOUT_CHECKS */
_Static_assert(sizeof(struct virtio_console_config) == 12, "the spec's layout has no padding");
_Static_assert(offsetof(struct virtio_console_config, emerg_wr) == 8, "emerg_wr");
/** @endcond */

/** Offset of emerg_wr in the configuration space. */
#define VIRTIO_CONSOLE_CONFIG_EMERG_WR 8u

/**
 * Header of every control message, either direction. PORT_NAME carries the name's
 * bytes after it (no terminating NUL); every other message is the header alone.
 */
struct virtio_console_control {
    uint32_t id;    /**< Port number; ignored in DEVICE_READY. */
    uint16_t event; /**< One of enum virtio_console_event. */
    uint16_t value; /**< Event-specific; 0 or 1 for every event this device exchanges. */
};

/** @cond LAYOUT_CHECKS */
_Static_assert(sizeof(struct virtio_console_control) == 8, "8 bytes on the wire");
/** @endcond */

/** Control events. "Driver" marks the ones a driver sends, the rest come from the device. */
enum virtio_console_event {
    VIRTIO_CONSOLE_DEVICE_READY = 0,  /**< Driver: control queues set up (value 1) or failed. */
    VIRTIO_CONSOLE_DEVICE_ADD = 1,    /**< A port exists. */
    VIRTIO_CONSOLE_DEVICE_REMOVE = 2, /**< A port is gone. */
    VIRTIO_CONSOLE_PORT_READY = 3,    /**< Driver: the port is set up (value 1) or failed. */
    VIRTIO_CONSOLE_CONSOLE_PORT = 4,  /**< The port is a console (the guest's hvc). */
    VIRTIO_CONSOLE_RESIZE = 5,        /**< A console's size changed. */
    VIRTIO_CONSOLE_PORT_OPEN = 6,     /**< Both ways: that side has the port open (1) or not. */
    VIRTIO_CONSOLE_PORT_NAME = 7,     /**< The port's name follows the header. */
};

#endif
