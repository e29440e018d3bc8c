/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file unix_sock.h
 * @brief Connecting to a unix stream socket by path: the one helper for it, used by
 *        bulkhead-vmm (socket= backends) and the supervisor (ctl, the serial-link relays,
 *        the VMMs' control sockets). A path too long for sun_path is refused, not cut.
 */
#ifndef BULKHEAD_HOST_UNIX_SOCK_H
#define BULKHEAD_HOST_UNIX_SOCK_H

/**
 * Connect to the unix stream socket at @p path (close-on-exec).
 * @param path the socket's path; longer than sun_path allows is -ENAMETOOLONG.
 * @param nonblock make the connection non-blocking (for an event loop).
 * @return the connected descriptor, or a negative errno.
 */
int unix_connect(const char *path, int nonblock);

#endif
