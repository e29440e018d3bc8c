/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file fd_nonblock.h
 * @brief A private non-blocking descriptor for an inherited stdout or stderr.
 *
 * Setting O_NONBLOCK on an inherited descriptor would change it for every process that
 * shares the open file (the user's shell, on a terminal), and a blocking write on a pipe
 * nobody reads or a terminal held with Ctrl-S would stall the thread that writes. Opening
 * the same pipe or terminal again through /proc/self/fd gives the VMM a file of its own
 * whose flags it may set freely.
 */
#ifndef BULKHEAD_HOST_FD_NONBLOCK_H
#define BULKHEAD_HOST_FD_NONBLOCK_H

/**
 * Open the pipe, FIFO or character device behind @p fd again, write-only, non-blocking
 * and close-on-exec.
 * @param fd an open descriptor.
 * @return the new descriptor; -ENOTSUP when @p fd is a regular file or a socket (writes to
 *         a file do not wait for a reader; a socket takes MSG_DONTWAIT per call instead), or
 *         another negative errno when it cannot be reopened.
 */
int fd_reopen_nonblocking(int fd);

#endif
