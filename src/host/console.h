/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file console.h
 * @brief Host end of the guest's serial console: stdio, a log file, or a unix socket.
 *
 * Output arrives byte by byte from vCPU threads (the UART's transmit callback) and never
 * blocks one: it is written without waiting, and what the host end cannot take at once
 * (a pipe nobody drains, a terminal held with Ctrl-S, a slow socket client) waits in a
 * buffer that the event loop writes out when the descriptor is ready. When that buffer
 * is full, console_write() refuses the byte and the UART holds it, so the guest's driver
 * waits on the UART's line status instead of the VMM waiting on the host; the tx-ready
 * callback tells the UART when there is room again. Input is read by the event loop and
 * offered to the UART until its FIFO is full, then reading pauses until the UART reports
 * room again (console_rx_ready()), so no input is lost.
 */
#ifndef BULKHEAD_HOST_CONSOLE_H
#define BULKHEAD_HOST_CONSOLE_H

#include "host/event_loop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

/** Where the console is connected. */
enum serial_kind {
    SERIAL_STDIO,  /**< Output to stdout, input from stdin. */
    SERIAL_FILE,   /**< Output appended to a file; no input. */
    SERIAL_UNIX,   /**< A listening unix socket; one client at a time. */
    SERIAL_STDOUT, /**< Output to stdout, no input: stdin belongs to a virtio console. */
};

/**
 * Hands input bytes to the guest.
 * @param ctx as given to console_attach().
 * @param buf bytes.
 * @param len number of bytes.
 * @return how many were accepted; the rest are offered again after console_rx_ready().
 */
typedef size_t (*console_deliver_fn)(void *ctx, const uint8_t *buf, size_t len);

/**
 * The output buffer has room again after console_write() refused a byte. Called on the
 * event-loop thread with no console lock held.
 * @param ctx as given to console_attach().
 */
typedef void (*console_tx_ready_fn)(void *ctx);

/**
 * The user asked to quit (Ctrl-A x on a terminal).
 * @param ctx as given to console_attach().
 */
typedef void (*console_quit_fn)(void *ctx);

/** Bytes of guest output held while the host end cannot take them. */
#define CONSOLE_OUT_BUF_SIZE 65536

/** What the console calls back into (the machine's UART, on the VM side). */
struct console_sink {
    console_deliver_fn deliver;   /**< Input sink. */
    console_tx_ready_fn tx_ready; /**< Output room again. */
    console_quit_fn quit;         /**< Quit request sink. */
    void *ctx;                    /**< Passed to all three. */
};

/** A console connection. */
struct console {
    enum serial_kind kind;    /**< Connection kind. */
    int in_fd;                /**< Input descriptor, -1 when none. */
    int out_fd;               /**< Output descriptor, -1 when none (unix: the client). */
    bool out_own;             /**< out_fd is a private non-blocking reopening of stdout. */
    bool out_pollable;        /**< out_fd can be watched (not a regular file). */
    bool out_watched;         /**< out_fd is registered with the loop on its own. */
    bool out_blocked;         /**< A byte was refused; the sink is owed tx_ready. */
    bool out_failed;          /**< The host end failed for good; output is dropped. */
    bool out_lossy;           /**< Drop output that does not fit (see console_set_lossy()). */
    bool out_socket;          /**< out_fd is a socket: written with MSG_DONTWAIT. */
    bool in_watched;          /**< in_fd is registered with the loop. */
    uint8_t *out_buf;         /**< Ring of CONSOLE_OUT_BUF_SIZE bytes not yet written. */
    size_t out_head;          /**< Oldest unwritten byte in out_buf. */
    size_t out_len;           /**< Unwritten bytes in out_buf. */
    uint64_t out_dropped;     /**< Bytes discarded because the host end failed. */
    int listen_fd;            /**< Unix socket listener, or -1. */
    int wake_fd;              /**< eventfd: the UART has room again. */
    bool tty;                 /**< stdin is a terminal in raw mode. */
    bool escape;              /**< Ctrl-A was the last key. */
    struct termios saved_tty; /**< Terminal settings to restore. */
    pthread_mutex_t out_lock; /**< Serialises output against client changes. */
    struct event_loop *loop;  /**< Loop it is attached to, or NULL. */
    struct console_sink sink; /**< Where input, room and quit requests go. */
    uint8_t pending[512];     /**< Input read but not yet accepted. */
    size_t pending_off;       /**< First unaccepted byte in pending. */
    size_t pending_len;       /**< End of valid bytes in pending. */
    char *path;               /**< Socket path to unlink on close. */
};

/**
 * Open the host end.
 * @param c the console.
 * @param kind connection kind.
 * @param path file or socket path (ignored for stdio).
 * @return 0, or a negative errno (the reason is logged).
 */
int console_open(struct console *c, enum serial_kind kind, const char *path);

/**
 * Start serving input and buffered output through an event loop.
 * @param c the console.
 * @param loop the loop.
 * @param sink the callbacks (copied).
 * @return 0 or a negative errno.
 */
int console_attach(struct console *c, struct event_loop *loop, const struct console_sink *sink);

/**
 * Stop serving input (before the sink goes away, e.g. across a VM reset).
 * @param c the console.
 */
void console_detach(struct console *c);

/**
 * Write one byte of guest output without blocking. Safe from any thread.
 * @param c the console.
 * @param byte the byte.
 * @return true when the byte was taken (written, buffered, or dropped because the host end
 *         is gone); false when the buffer is full: keep it and retry after tx_ready.
 */
bool console_write(struct console *c, uint8_t byte);

/**
 * From now on, drop guest output that does not fit in the buffer instead of making the
 * guest wait. Used once the VM has been asked to shut down: a stalled reader must not slow
 * the guest's shutdown to the pace of its serial driver's timeouts (Linux polls the line
 * status up to 10 ms for each byte it prints at power-off). Call on the event-loop thread.
 * @param c the console.
 */
void console_set_lossy(struct console *c);

/**
 * Write out buffered output before the process exits, waiting for the host end at most
 * until it has made no progress for @p stall_ms (a reader that went away must not hold up
 * the exit).
 * @param c the console.
 * @param stall_ms longest wait without progress, in milliseconds.
 */
void console_flush(struct console *c, int stall_ms);

/**
 * The input sink has room again. Safe from any thread.
 * @param c the console.
 */
void console_rx_ready(struct console *c);

/**
 * Flush what can be flushed (console_flush() with a short limit), restore the terminal and
 * close everything.
 * @param c the console.
 */
void console_close(struct console *c);

#endif
