/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file con_host.h
 * @brief The host end of one bulkhead-console port: standard input and output,
 *        inherited descriptors, an append-only file, or a listening unix socket with
 *        one client at a time.
 *
 * **Never wait on a host peer.** Every descriptor is used without blocking, and
 * without changing the flags of an open file we share with another process:
 *  - sockets are read and written with MSG_DONTWAIT (and MSG_NOSIGNAL);
 *  - pipes, FIFOs and terminals we inherited are opened again through /proc/self/fd
 *    as files of our own, non-blocking (fd_nonblock.h), so a shell sharing the
 *    terminal keeps its blocking stdin;
 *  - regular files never wait for a reader and are used as they are.
 * The caller polls what con_host_write() reports as -EAGAIN for POLLOUT and reads
 * only after POLLIN.
 *
 * **Connected** is what the guest hears as the host side of PORT_OPEN: a unix end is
 * connected while a client is; standard I/O, descriptors and files always are (a
 * failure later only makes their output dropped); the end of a port without host
 * side (port 0 when bulkhead-console has no --console) never is.
 */
#ifndef BULKHEAD_BACKENDS_CONSOLE_CON_HOST_H
#define BULKHEAD_BACKENDS_CONSOLE_CON_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/** What a port's host end is. */
enum con_host_kind {
    CON_HOST_NONE,  /**< Nothing: output is dropped (counted), there is no input. */
    CON_HOST_STDIO, /**< Our standard input and output. */
    CON_HOST_FD,    /**< Descriptors inherited from the parent (bulkhead-vmm's console). */
    CON_HOST_FILE,  /**< Output appended to a file; no input. */
    CON_HOST_UNIX,  /**< A unix socket we listen on; one client at a time. */
};

/** A host end as the command line describes it; nothing is opened yet. */
struct con_host_spec {
    enum con_host_kind kind; /**< Which kind. */
    const char *path;        /**< CON_HOST_FILE, CON_HOST_UNIX: the path (not copied). */
    int in_fd;               /**< CON_HOST_FD: input descriptor. */
    int out_fd;              /**< CON_HOST_FD: output descriptor (may equal @c in_fd). */
};

/** An open host end. Members are read-only for the device code. */
struct con_host {
    enum con_host_kind kind; /**< Which kind. */
    const char *path;        /**< The file or socket path (the command line's string). */
    int listen_fd;           /**< CON_HOST_UNIX: the listening socket; -1 otherwise. */
    int in_fd;               /**< Where input is read, or -1 (unix: the client). */
    int out_fd;              /**< Where output is written, or -1 (unix: the client). */
    bool in_own;             /**< @c in_fd is ours to close. */
    bool out_own;            /**< @c out_fd is ours to close (and is not @c in_fd). */
    bool in_socket;          /**< @c in_fd is a socket: recv() with MSG_DONTWAIT. */
    bool out_socket;         /**< @c out_fd is a socket: send() with MSG_DONTWAIT. */
    bool out_pollable;       /**< Writes may return -EAGAIN: wait for POLLOUT. */
    bool in_eof;             /**< Standard input or the input descriptor ended. */
    bool out_failed;         /**< The output failed for good: output is dropped. */
    bool hup;                /**< The unix client hung up with input still unread. */
};

/**
 * Parse a host end: `stdio`, `fd:IN[,OUT]`, `file:PATH` or `unix:PATH`.
 * @param text the text (kept: @c spec->path points into it).
 * @param console true for --console (every kind); false for a named --port, which
 *        may only be `file:` or `unix:`.
 * @param spec receives the description.
 * @return 0; -EINVAL for anything else (an empty path, a descriptor that is not a
 *         number, a kind not allowed here).
 */
int con_host_parse(const char *text, bool console, struct con_host_spec *spec);

/**
 * Open a host end: listen on the socket (replacing a stale socket file, never another
 * file), open the file for appending (created 0600), or take over the descriptors.
 * @param h the host end.
 * @param spec what to open.
 * @return 0; a negative errno (the host end is then closed).
 */
int con_host_open(struct con_host *h, const struct con_host_spec *spec);

/**
 * Close whatever is open and remove the socket file of a unix end.
 * @param h the host end (also one whose open failed).
 */
void con_host_close(struct con_host *h);

/**
 * Whether the host side counts as connected (PORT_OPEN) (file comment).
 * @param h the host end.
 * @return true when connected.
 */
bool con_host_connected(const struct con_host *h);

/**
 * Whether output can be handed to the host end now, or must be dropped.
 * @param h the host end.
 * @return true when an output descriptor is there and has not failed.
 */
bool con_host_writable(const struct con_host *h);

/**
 * Whether input may still come from the host end.
 * @param h the host end.
 * @return true when an input descriptor is there and has not ended.
 */
bool con_host_readable(const struct con_host *h);

/**
 * Accept the next client of a unix end that has none.
 * @param h the host end.
 * @return 1 when a client was accepted; 0 when none was waiting (or it left at
 *         once); a negative errno otherwise.
 */
int con_host_accept(struct con_host *h);

/**
 * Read input without waiting.
 * @param h the host end; con_host_readable().
 * @param buf where to put it.
 * @param len room in @p buf, non-zero.
 * @return bytes read (> 0); 0 at the end of the input; -EAGAIN when nothing is there;
 *         another negative errno.
 */
ssize_t con_host_read(struct con_host *h, void *buf, size_t len);

/**
 * Write output without waiting.
 * @param h the host end; con_host_writable().
 * @param iov the bytes.
 * @param n entries of @p iov, 1 to IOV_MAX.
 * @return bytes written (possibly fewer than offered); -EAGAIN when none could be;
 *         another negative errno.
 */
ssize_t con_host_write(struct con_host *h, const struct iovec *iov, int n);

/**
 * The input ended or failed: a unix client is disconnected, other input is not read
 * again.
 * @param h the host end.
 */
void con_host_input_ended(struct con_host *h);

/**
 * The output failed: a unix client is disconnected, other output is dropped from now on.
 * @param h the host end.
 */
void con_host_output_failed(struct con_host *h);

/**
 * A unix client hung up while its input was not being read. When input is left
 * unread it stays until read (the client's last bytes are not lost): @c hup is set
 * and the descriptor should be polled only when input is wanted. Otherwise the
 * client is disconnected.
 * @param h the host end with a client.
 */
void con_host_hangup(struct con_host *h);

#endif
