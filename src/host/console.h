/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file console.h
 * @brief Host end of the guest's serial console: stdio, a log file, or a unix socket.
 *
 * Output arrives byte by byte from vCPU threads (the UART's transmit callback); input is
 * read by the event loop and offered to the UART until its FIFO is full, then reading
 * pauses until the UART reports room again (console_rx_ready()), so no input is lost.
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
    SERIAL_STDIO, /**< Output to stdout, input from stdin. */
    SERIAL_FILE,  /**< Output appended to a file; no input. */
    SERIAL_UNIX,  /**< A listening unix socket; one client at a time. */
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
 * The user asked to quit (Ctrl-A x on a terminal).
 * @param ctx as given to console_attach().
 */
typedef void (*console_quit_fn)(void *ctx);

/** A console connection. */
struct console {
    enum serial_kind kind;      /**< Connection kind. */
    int in_fd;                  /**< Input descriptor, -1 when none. */
    int out_fd;                 /**< Output descriptor, -1 when none (unix: the client). */
    int listen_fd;              /**< Unix socket listener, or -1. */
    int wake_fd;                /**< eventfd: the UART has room again. */
    bool tty;                   /**< stdin is a terminal in raw mode. */
    bool escape;                /**< Ctrl-A was the last key. */
    struct termios saved_tty;   /**< Terminal settings to restore. */
    pthread_mutex_t out_lock;   /**< Serialises output against client changes. */
    struct event_loop *loop;    /**< Loop it is attached to, or NULL. */
    console_deliver_fn deliver; /**< Input sink. */
    console_quit_fn quit;       /**< Quit request sink. */
    void *ctx;                  /**< Passed to deliver and quit. */
    uint8_t pending[512];       /**< Input read but not yet accepted. */
    size_t pending_off;         /**< First unaccepted byte in pending. */
    size_t pending_len;         /**< End of valid bytes in pending. */
    char *path;                 /**< Socket path to unlink on close. */
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
 * Start serving input through an event loop.
 * @param c the console.
 * @param loop the loop.
 * @param deliver input sink.
 * @param quit quit-request sink.
 * @param ctx passed to both.
 * @return 0 or a negative errno.
 */
int console_attach(struct console *c, struct event_loop *loop, console_deliver_fn deliver,
                   console_quit_fn quit, void *ctx);

/**
 * Stop serving input (before the sink goes away, e.g. across a VM reset).
 * @param c the console.
 */
void console_detach(struct console *c);

/**
 * Write guest output. Safe from any thread.
 * @param c the console.
 * @param byte the byte.
 */
void console_write(struct console *c, uint8_t byte);

/**
 * The input sink has room again. Safe from any thread.
 * @param c the console.
 */
void console_rx_ready(struct console *c);

/**
 * Restore the terminal and close everything.
 * @param c the console.
 */
void console_close(struct console *c);

#endif
