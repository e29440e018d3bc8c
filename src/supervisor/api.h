/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file api.h
 * @brief The supervisor's control socket: a JSON protocol (docs/api.md) that
 *        `bulkhead ctl`, `bulkhead down` and any script use alike.
 *
 * A unix stream socket, mode 0600, in the run directory. A client writes requests, one
 * JSON object per line (`{"cmd":"status","name":"web"}`), and reads one JSON object per
 * line back (`{"ok":true,...}` or `{"ok":false,"error":"..."}`), as many as it likes on
 * one connection. `console` turns the connection into the VM's serial console, raw bytes
 * both ways, after its reply line. Requests are handled on the supervisor's loop; a client
 * that sends more than API_LINE_MAX bytes without a newline is disconnected, and a reply
 * that does not fit the socket's buffer at once ends the connection, so no client can
 * stall the supervisor.
 */
#ifndef BULKHEAD_SUPERVISOR_API_H
#define BULKHEAD_SUPERVISOR_API_H

#include "supervisor/super.h"

/** Longest request line, newline included. */
#define API_LINE_MAX 8192
/** Clients connected at once. */
#define API_MAX_CLIENTS 16

struct api_client;

/** The control socket of one supervisor. */
struct api {
    struct api_client *clients[API_MAX_CLIENTS]; /**< Connected clients; NULL: free. */
    struct supervisor *s;                        /**< What it controls. */
    int listen_fd;                               /**< The listening socket. */
    char path[PLAN_PATH_MAX];                    /**< Its path (removed at the end). */
    char bin_dir[PLAN_PATH_MAX];                 /**< Where the programs are, for apply's plans. */
};

/**
 * Listen on RUN/control.sock (a stale socket of an ended supervisor is replaced; a live
 * one is not: -EADDRINUSE).
 * @param a the API.
 * @param s the supervisor (its run directory and loop).
 * @param bin_dir where bulkhead-vmm and the backends are, for `apply`.
 * @return 0 or a negative errno.
 */
int api_listen(struct api *a, struct supervisor *s, const char *bin_dir);

/**
 * Stop listening and remove the socket (connected clients are closed).
 * @param a the API.
 */
void api_close(struct api *a);

/**
 * The default run directory: /run/bulkhead for root, else $XDG_RUNTIME_DIR/bulkhead,
 * else /tmp/bulkhead-UID; $BULKHEAD_RUN_DIR overrides all of them.
 * @param buf receives the path.
 * @param len room in @p buf.
 */
void api_default_run_dir(char *buf, size_t len);

#endif
