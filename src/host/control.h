/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file control.h
 * @brief A VMM's control socket: one text command per connection, one text reply.
 *
 * `--control PATH` makes bulkhead-vmm listen on a unix stream socket. A client connects,
 * writes one command line (at most CONTROL_LINE_MAX bytes with its newline), reads the
 * reply until the VMM closes the connection. The protocol is text so that `socat`, a
 * shell script or the supervisor can use it alike; replies are lines, the first one
 * `ok` or `error: REASON`. Everything runs on the VMM's main event loop and never
 * waits on a client: a client that sends no newline within CONTROL_LINE_MAX bytes,
 * or whose reply does not fit its socket buffer at once, is disconnected.
 */
#ifndef BULKHEAD_HOST_CONTROL_H
#define BULKHEAD_HOST_CONTROL_H

#include "host/event_loop.h"

#include <stddef.h>

/** Longest command line, newline included. */
#define CONTROL_LINE_MAX 256
/** Clients served at once; more wait in the listen backlog. */
#define CONTROL_MAX_CLIENTS 4
/** Largest reply. */
#define CONTROL_REPLY_MAX 16384

/** A reply being built by a command handler. */
struct control_reply {
    char buf[CONTROL_REPLY_MAX]; /**< The text. */
    size_t used;                 /**< Bytes in buf (a truncated reply ends in "..."). */
};

/**
 * Append formatted text to a reply; text that does not fit is cut.
 * @param r the reply.
 * @param fmt printf format.
 */
void control_printf(struct control_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * A command handler: fills @p reply for the command @p cmd (the line without its
 * newline, with surrounding blanks removed; possibly empty).
 */
typedef void (*control_handler)(void *ctx, const char *cmd, struct control_reply *reply);

struct control;

/** One connected client. */
struct control_client {
    struct control *owner;       /**< The control socket it came in on. */
    int fd;                      /**< The connection, -1 for a free slot. */
    char line[CONTROL_LINE_MAX]; /**< What it sent so far. */
    size_t used;                 /**< Bytes in line. */
};

/** A listening control socket. */
struct control {
    int fd;                                             /**< Listening socket, or -1. */
    char path[108];                                     /**< Its path, removed at close. */
    struct event_loop *loop;                            /**< Where it is watched. */
    control_handler handler;                            /**< Runs each command. */
    void *ctx;                                          /**< For the handler. */
    struct control_client clients[CONTROL_MAX_CLIENTS]; /**< Connections. */
    struct control_reply reply;                         /**< Scratch for one reply. */
};

/**
 * Listen on @p path (a stale socket there is replaced; any other file is refused) and
 * serve commands on @p loop.
 * @param c the control socket.
 * @param path the socket's path.
 * @param loop the event loop to watch it on.
 * @param handler runs each command.
 * @param ctx for the handler.
 * @return 0; -ENAMETOOLONG, -EEXIST (a file that is not a socket), or the errno of
 *         socket/bind/listen (logged with the path).
 */
int control_open(struct control *c, const char *path, struct event_loop *loop,
                 control_handler handler, void *ctx);

/**
 * Stop listening, drop clients, remove the socket file.
 * @param c the control socket (one never opened, fd -1, is ignored).
 */
void control_close(struct control *c);

#endif
